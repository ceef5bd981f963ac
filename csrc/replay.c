/*
 * replay.c -- captured graphs: what a root reaches, copied once into a flat
 * program (op codes and operand positions in topological order, graph.h)
 * and replayed in C without the Python objects, one row at a time:
 *
 *   ag_graph_forward   recompute every op node from the sources (leaves and
 *                      opaque nodes) with the eager rules (ag__eval: Python's
 *                      int/float types and errors), all or nothing;
 *   ag_graph_backward  the eager backward over the captured order:
 *                      bit-identical to ag_backward.
 *
 * Both run the compiled program (compiled.c) and hold the arena's lock
 * throughout.  Many rows at once: batch.c.
 */
#include <stdlib.h>
#include <string.h>
#include "alloc.h"
#include "eager.h"
#include "fork.h"
#include "graph.h"

/* ---- capture ------------------------------------------------------------ */

int32_t ag_graph_position(const ag_graph *g, int64_t h) {
    return ag__graph_position(g, h);
}

int32_t ag_graph_size(const ag_graph *g) { return g->n; }

static void free_arrays(ag_graph *g) {
    ag__free(g->id); ag__free(g->k); ag__free(g->op); ag__free(g->src); ag__free(g->ins);
    ag__free(g->val); ag__free(g->val_int);
    ag__free(g->hkey); ag__free(g->hpos); ag__free(g->slot);
    ag__batch_free(g);
    ag__compiled_free(g);
}

/* Allocate the program arrays for n nodes.  AG_OK or AG_ERR_NOMEM (then
 * free_arrays releases what was allocated). */
static int alloc_program(ag_graph *g, size_t n) {
    g->hbits = 1;
    while (((size_t)1 << g->hbits) < 2 * n) g->hbits++;
    size_t h = (size_t)1 << g->hbits;
    g->id = ag__malloc(n * sizeof *g->id);
    g->k = ag__malloc(n * sizeof *g->k);
    g->op = ag__malloc(n);
    g->src = ag__malloc(n * sizeof *g->src);
    g->ins = ag__malloc(n * sizeof *g->ins);
    g->val = ag__malloc(n * sizeof *g->val);
    g->val_int = ag__malloc(n);
    g->slot = ag__malloc(n * sizeof *g->slot);
    g->hkey = ag__malloc(h * sizeof *g->hkey);
    g->hpos = ag__malloc(h * sizeof *g->hpos);
    if (!g->id || !g->k || !g->op || !g->src || !g->ins || !g->val ||
        !g->val_int || !g->slot || !g->hkey || !g->hpos)
        return AG_ERR_NOMEM;
    return ag__compiled_alloc(g, n);
}

/* Copy the program from c->order[0..n) (ag__topo's output).  c->stack, free
 * after ag__topo, maps arena id -> position for the ids in the order. */
static void copy_program(ag_graph *g, ag_ctx *c, size_t n) {
    for (size_t p = 0; p < n; p++) c->stack[c->order[p]] = (int32_t)p;
    g->n_src = g->n_ins = 0;
    for (size_t p = 0; p < n; p++) {
        int32_t id = c->order[p], a = c->a[id], b = c->b[id];
        g->id[p] = id;
        g->op[p] = c->op[id];
        g->k[p] = g->op[p] == AG_POW_CONST ? c->k[id] : 0.0;
        g->slot[p] = -1;
        if (ag__is_source(g->op[p]))
            g->src[g->n_src++] = (int32_t)p;
        else {
            g->ins[g->n_ins++] = (ag_instr){
                (int32_t)p, c->stack[a], b == AG_NONE ? -1 : c->stack[b],
                g->op[p], (c->flags[id] & AG_K_INT) != 0};
        }
    }
}

/* The handle -> position index (the arena's generations: locked). */
static void build_index(ag_graph *g, const ag_ctx *c) {
    size_t h = (size_t)1 << g->hbits;
    uint32_t mask = (uint32_t)h - 1;
    memset(g->hkey, 0xff, h * sizeof *g->hkey);          /* all -1 */
    for (int32_t p = 0; p < g->n; p++) {
        uint32_t s = ag__hash_slot(g->id[p], g->hbits);
        while (g->hkey[s] != -1) s = (s + 1) & mask;
        g->hkey[s] = ag__handle(c, g->id[p]);
        g->hpos[s] = p;
    }
}

int ag_graph_new(ag_ctx *c, int64_t h, ag_graph **out) {
    *out = NULL;
    ag_graph *g = ag__calloc(1, sizeof *g);
    if (!g || pthread_mutex_init(&g->lock, NULL) != 0) {
        ag__free(g);
        return AG_ERR_NOMEM;
    }
    g->ctx = c;
    AG_LOCK(c);
    int64_t root = ag__slot(c, h);
    int st = root < 0 ? (int)root : AG_OK;
    if (st == AG_OK) {
        size_t n = ag__topo(c, (int32_t)root);
        st = ag__reaches_user_rule(c, c->order, n) ? AG_ERR_USER_RULE
                                                   : alloc_program(g, n);
        if (st == AG_OK) {
            g->root = (int32_t)root;
            g->n = (int32_t)n;
            copy_program(g, c, n);
            ag__compiled_capture(g);
            build_index(g, c);
            c->refs[root]++;                  /* keeps the program alive */
        }
    }
    AG_UNLOCK(c);
    if (st == AG_OK) ag__fork_track_graph(g);
    if (st != AG_OK) {
        free_arrays(g);
        pthread_mutex_destroy(&g->lock);
        ag__free(g);
        return st;
    }
    *out = g;
    return AG_OK;
}

void ag_graph_free(ag_graph *g) {
    if (!g) return;
    ag__fork_untrack_graph(g);
    ag_ctx *c = g->ctx;
    AG_LOCK(c);
    if (g->owning) ag__flush_private(c);
    ag__unref(c, g->root);
    AG_UNLOCK(c);
    free_arrays(g);
    pthread_mutex_destroy(&g->lock);
    ag__free(g);
}

/* ---- single-row replay: the compiled program (compiled.c) --------------- */

int ag_graph_forward(ag_graph *g) {
    ag_ctx *c = g->ctx;
    pthread_mutex_lock(&g->lock);            /* the graph's own arrays */
    AG_LOCK(c);
    int st = ag__compiled_forward(g);
    AG_UNLOCK(c);
    pthread_mutex_unlock(&g->lock);
    return st;
}

int ag_graph_backward(ag_graph *g) {
    ag_ctx *c = g->ctx;
    pthread_mutex_lock(&g->lock);
    AG_LOCK(c);
    ag__compiled_backward(g);
    AG_UNLOCK(c);
    pthread_mutex_unlock(&g->lock);
    return AG_OK;
}
