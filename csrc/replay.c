/*
 * replay.c -- captured graphs: what a root reaches, copied once into a flat
 * program (op codes and operand positions in topological order) and replayed
 * in C without the Python objects:
 *
 *   ag_graph_forward   recompute every op node from the sources (leaves and
 *                      opaque nodes) with the eager rules (ag__eval: Python's
 *                      int/float types and errors), all or nothing;
 *   ag_graph_backward  the eager backward over the captured order
 *                      (ag__backward_order): bit-identical to ag_backward;
 *   ag_graph_run       many input rows at once in plain doubles: blocks of
 *                      rows laid out node-major (v[p * B + r]) so each op is
 *                      one loop over the rows of a block, which gcc -O3
 *                      vectorises; optionally split over threads.
 *
 * The program is fixed at capture: a node's op, children and exponent never
 * change while it lives, and the graph's reference on the root keeps every
 * captured node alive.  Only data and grads move, and they are read from and
 * written to the arena under its lock: a single-row forward or backward
 * holds it throughout; a batched run copies the sources under it, then
 * evaluates on the graph's own arrays without it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "arena.h"

/* Rows per block of a batched run: up to AG_BLOCK_ROWS, halved while a
 * thread's value + gradient blocks (16 bytes per node and row) would exceed
 * AG_SCRATCH_BYTES, so big graphs stay within reach of the caches. */
#define AG_BLOCK_ROWS 64
#define AG_MIN_BLOCK_ROWS 8
#define AG_SCRATCH_BYTES ((size_t)4 << 20)
/* Node-rows of work a thread of a batched run gets at least (~0.1 ms):
 * starting a thread costs tens of microseconds, so a small run stays on the
 * calling thread, whatever `threads` asks. */
#define AG_MIN_THREAD_WORK ((int64_t)1 << 18)

/* The batched kernels are compiled for AVX-512 and AVX2 as well as the
 * baseline, picked at load time (gcc's function multiversioning). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__)
#define AG_SIMD_CLONES \
    __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AG_SIMD_CLONES
#endif

/* One thread's scratch for batched runs; kept by the graph between runs. */
typedef struct ag_scratch {
    double *v;      /* n * B: v[p * B + r], value of node p in block row r  */
    double *g;      /* n * B: its gradient.  Rows of op nodes are all zero
                     * between blocks; rows of sources accumulate over a run */
    double *acc;    /* acc_cap * B: per-row grad sums of requested op nodes */
    size_t acc_cap; /* rows of acc allocated                                */
} ag_scratch;

/* An op node of the program, as forward evaluation reads it. */
typedef struct ag_instr {
    int32_t p;              /* its position                                 */
    int32_t a, b;           /* operand positions, b = -1 when absent        */
    uint8_t op;             /* ag_op                                        */
    uint8_t k_int;          /* POW_CONST exponent g->k[p] is a Python int   */
} ag_instr;

struct ag_graph {
    ag_ctx *ctx;            /* borrowed: contexts outlive their graphs      */
    int32_t root;           /* arena id of the root; the graph holds a ref  */
    int32_t n;              /* program length; position n - 1 is the root   */
    /* The program, n entries each, indexed by position p (children first). */
    int32_t *id;            /* arena id of position p                       */
    double *k;              /* POW_CONST exponent                           */
    uint8_t *op;            /* ag_op                                        */
    /* Sources: positions of LEAF and OPAQUE nodes, read from the arena.    */
    int32_t *src;
    int32_t n_src;
    /* The other nodes (op nodes), in program order, with their operands.   */
    ag_instr *ins;
    int32_t n_ins;
    int32_t *ins_id;        /* n_ins: arena id of each, the backward order   */
    /* Scratch, n each, indexed by position: a source's value and "is int"
     * (read_sources, for batched runs); an op node's old data and flags
     * (ag_graph_forward's undo log).                                        */
    double *val;
    uint8_t *val_int;
    /* Arena id -> position: open addressing, 2**hbits slots, key -1 empty. */
    int32_t *hkey, *hpos;
    int hbits;
    /* Batched runs. */
    int32_t *slot;          /* n: acc row of a requested op node, else -1   */
    int rows_per_block;     /* B                                            */
    ag_scratch *scratch;    /* n_scratch per-thread scratches               */
    int n_scratch;
    pthread_mutex_t lock;   /* one forward or run at a time on this graph   */
};

static int is_source(int op) { return op == AG_LEAF || op == AG_OPAQUE; }

/* ---- capture ------------------------------------------------------------ */

static uint32_t hash_slot(int32_t id, int bits) {
    return (uint32_t)((uint32_t)id * 2654435761u) >> (32 - bits);
}

int32_t ag_graph_position(const ag_graph *g, int32_t id) {
    if (id < 0) return -1;
    uint32_t mask = (uint32_t)(((uint64_t)1 << g->hbits) - 1);
    for (uint32_t h = hash_slot(id, g->hbits); g->hkey[h] != -1;
         h = (h + 1) & mask)
        if (g->hkey[h] == id) return g->hpos[h];
    return -1;
}

int32_t ag_graph_size(const ag_graph *g) { return g->n; }

static void free_arrays(ag_graph *g) {
    free(g->id); free(g->k); free(g->op); free(g->src); free(g->ins);
    free(g->ins_id);
    free(g->val); free(g->val_int);
    free(g->hkey); free(g->hpos); free(g->slot);
    for (int t = 0; t < g->n_scratch; t++) {
        free(g->scratch[t].v); free(g->scratch[t].g); free(g->scratch[t].acc);
    }
    free(g->scratch);
}

/* Allocate the program arrays for n nodes.  AG_OK or AG_ERR_NOMEM (then
 * free_arrays releases what was allocated). */
static int alloc_program(ag_graph *g, size_t n) {
    g->hbits = 1;
    while (((size_t)1 << g->hbits) < 2 * n) g->hbits++;
    size_t h = (size_t)1 << g->hbits;
    g->id = malloc(n * sizeof *g->id);
    g->k = malloc(n * sizeof *g->k);
    g->op = malloc(n);
    g->src = malloc(n * sizeof *g->src);
    g->ins = malloc(n * sizeof *g->ins);
    g->ins_id = malloc(n * sizeof *g->ins_id);
    g->val = malloc(n * sizeof *g->val);
    g->val_int = malloc(n);
    g->slot = malloc(n * sizeof *g->slot);
    g->hkey = malloc(h * sizeof *g->hkey);
    g->hpos = malloc(h * sizeof *g->hpos);
    if (!g->id || !g->k || !g->op || !g->src || !g->ins || !g->ins_id ||
        !g->val || !g->val_int || !g->slot || !g->hkey || !g->hpos)
        return AG_ERR_NOMEM;
    return AG_OK;
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
        if (is_source(g->op[p]))
            g->src[g->n_src++] = (int32_t)p;
        else {
            g->ins_id[g->n_ins] = id;
            g->ins[g->n_ins++] = (ag_instr){
                (int32_t)p, c->stack[a], b == AG_NONE ? -1 : c->stack[b],
                g->op[p], (c->flags[id] & AG_K_INT) != 0};
        }
    }
}

static void build_index(ag_graph *g) {
    size_t h = (size_t)1 << g->hbits;
    uint32_t mask = (uint32_t)h - 1;
    memset(g->hkey, 0xff, h * sizeof *g->hkey);          /* all -1 */
    for (int32_t p = 0; p < g->n; p++) {
        uint32_t s = hash_slot(g->id[p], g->hbits);
        while (g->hkey[s] != -1) s = (s + 1) & mask;
        g->hkey[s] = g->id[p];
        g->hpos[s] = p;
    }
}

ag_graph *ag_graph_new(ag_ctx *c, int32_t root, int *status) {
    ag_graph *g = calloc(1, sizeof *g);
    if (!g || pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g);
        *status = AG_ERR_NOMEM;
        return NULL;
    }
    g->ctx = c;
    g->root = root;
    AG_LOCK(c);
    int st = ag__is_live(c, root) ? AG_OK : AG_ERR_ARG;
    if (st == AG_OK) {
        size_t n = ag__topo(c, root);
        st = alloc_program(g, n);
        if (st == AG_OK) {
            g->n = (int32_t)n;
            copy_program(g, c, n);
            c->refs[root]++;                  /* keeps the program alive */
        }
    }
    AG_UNLOCK(c);
    if (st != AG_OK) {
        free_arrays(g);
        pthread_mutex_destroy(&g->lock);
        free(g);
        *status = st;
        return NULL;
    }
    build_index(g);
    int B = AG_BLOCK_ROWS;
    while (B > AG_MIN_BLOCK_ROWS &&
           (size_t)g->n * (size_t)B * 2 * sizeof(double) > AG_SCRATCH_BYTES)
        B /= 2;
    g->rows_per_block = B;
    *status = AG_OK;
    return g;
}

void ag_graph_free(ag_graph *g) {
    if (!g) return;
    ag_release(g->ctx, g->root);
    free_arrays(g);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* ---- single-row replay: the eager rules --------------------------------- */

/* Read every source's data and type from the arena into val / val_int. */
static void read_sources(ag_graph *g) {
    ag_ctx *c = g->ctx;
    AG_LOCK(c);
    for (int32_t i = 0; i < g->n_src; i++) {
        int32_t p = g->src[i], id = g->id[p];
        g->val[p] = c->data[id];
        g->val_int[p] = (c->flags[id] & AG_DATA_INT) != 0;
    }
    AG_UNLOCK(c);
}

/* Evaluate every op node in program order straight from the arena and
 * write it back at once, grad reset to int 0 (the AG_GRAD_ZERO flag: no
 * grad store).  Op node p's old data and flags go to val[p] / val_int[p]
 * first, so a failure puts back all that was written before it: all or
 * nothing.  One pass over the instructions, sources read where they are.
 * Locked (the arena's lock). */
static int forward_in_place(ag_graph *g, ag_ctx *c) {
    const ag_instr *ins = g->ins;
    const int32_t *pos_id = g->id, *ins_id = g->ins_id;
    const double *kp = g->k;
    double *data = c->data, *undo = g->val;
    uint8_t *flags = c->flags, *undo_flags = g->val_int;
    const int32_t n_ins = g->n_ins;
    for (int32_t i = 0; i < n_ins; i++) {
        int32_t p = ins[i].p, id = ins_id[i], a = pos_id[ins[i].a];
        int32_t b = ins[i].b >= 0 ? pos_id[ins[i].b] : AG_NONE;
        double y = 0.0, k = 0.0, r;
        int y_int = 0, r_int;
        if (b != AG_NONE) {
            y = data[b];
            y_int = (flags[b] & AG_DATA_INT) != 0;
        }
        if (ins[i].op == AG_POW_CONST) k = kp[p];
        int st = ag__eval(ins[i].op, data[a], (flags[a] & AG_DATA_INT) != 0,
                          y, y_int, k, ins[i].k_int, &r, &r_int);
        if (st != AG_OK) {
            while (i-- > 0) {                /* put back what was written */
                data[ins_id[i]] = undo[ins[i].p];
                flags[ins_id[i]] = undo_flags[ins[i].p];
            }
            return st;
        }
        uint8_t f = flags[id];
        undo[p] = data[id];
        undo_flags[p] = f;
        data[id] = r;
        flags[id] = (uint8_t)((f & ~AG_DATA_INT) | AG_GRAD_INT | AG_GRAD_ZERO |
                              (r_int ? AG_DATA_INT : 0));
    }
    return AG_OK;
}

int ag_graph_forward(ag_graph *g) {
    ag_ctx *c = g->ctx;
    pthread_mutex_lock(&g->lock);            /* val: this call's undo log */
    AG_LOCK(c);
    int st = forward_in_place(g, c);
    AG_UNLOCK(c);
    pthread_mutex_unlock(&g->lock);
    return st;
}

int ag_graph_backward(ag_graph *g) {
    ag_ctx *c = g->ctx;
    AG_LOCK(c);
    /* the op nodes only: sources have no rule (as in ag_backward's order) */
    ag__backward_order(c, g->root, g->ins_id, (size_t)g->n_ins);
    AG_UNLOCK(c);
    return AG_OK;
}

/* ---- batched replay: plain doubles, vectorised over the rows of a block --- */

/* o[r] = op(x[r], y[r]) for r < nr (y == x for one-operand ops). */
static inline void forward_rows(int op, double *restrict o, const double *restrict x,
                         const double *restrict y, double k, int nr) {
    switch (op) {
    case AG_ADD: for (int r = 0; r < nr; r++) o[r] = x[r] + y[r]; break;
    case AG_MUL: for (int r = 0; r < nr; r++) o[r] = x[r] * y[r]; break;
    case AG_POW_CONST: for (int r = 0; r < nr; r++) o[r] = pow(x[r], k); break;
    case AG_POW: for (int r = 0; r < nr; r++) o[r] = pow(x[r], y[r]); break;
    case AG_RELU: for (int r = 0; r < nr; r++) o[r] = ag__relu(x[r]); break;
    case AG_TANH: for (int r = 0; r < nr; r++) o[r] = tanh(x[r]); break;
    case AG_EXP: for (int r = 0; r < nr; r++) o[r] = exp(x[r]); break;
    case AG_LOG: for (int r = 0; r < nr; r++) o[r] = log(x[r]); break;
    case AG_SIGMOID:
        for (int r = 0; r < nr; r++) o[r] = ag__sigmoid(x[r]);
        break;
    default: break;                           /* sources: already in place */
    }
}

/* One child's share of the backward rule of out = op(x, y):
 * gc[r] += d out / d child * gp[r], child = y when second, else x.  The same
 * expressions, in the same order, as the eager rules (backprop_g, ops.c). */
static inline void backward_rows(int op, int second, double *restrict gc,
                          const double *restrict gp, const double *restrict x,
                          const double *restrict y, const double *restrict o,
                          double k, int nr) {
    switch (op) {
    case AG_ADD: for (int r = 0; r < nr; r++) gc[r] += gp[r]; break;
    case AG_MUL: {
        const double *restrict other = second ? x : y;
        for (int r = 0; r < nr; r++) gc[r] += other[r] * gp[r];
        break;
    }
    case AG_POW_CONST:
        for (int r = 0; r < nr; r++) gc[r] += k * pow(x[r], k - 1.0) * gp[r];
        break;
    case AG_POW:
        if (second)
            for (int r = 0; r < nr; r++)
                gc[r] += ag__dpow_exponent(x[r], y[r], o[r]) * gp[r];
        else
            for (int r = 0; r < nr; r++)
                gc[r] += y[r] * pow(x[r], y[r] - 1.0) * gp[r];
        break;
    case AG_RELU:
        for (int r = 0; r < nr; r++) gc[r] += ag__drelu(o[r]) * gp[r];
        break;
    case AG_TANH:
        for (int r = 0; r < nr; r++) gc[r] += ag__dtanh(o[r]) * gp[r];
        break;
    case AG_EXP: for (int r = 0; r < nr; r++) gc[r] += o[r] * gp[r]; break;
    case AG_LOG: for (int r = 0; r < nr; r++) gc[r] += gp[r] / x[r]; break;
    case AG_SIGMOID:
        for (int r = 0; r < nr; r++) gc[r] += ag__dsigmoid(o[r]) * gp[r];
        break;
    default: break;
    }
}

/* The work of one thread in ag_graph_run. */
typedef struct run_job {
    const ag_graph *g;
    const int32_t *in_pos;  /* n_in input positions (rows' columns)     */
    int32_t n_in;
    const double *rows;     /* row r, column i: rows[r * stride + i]     */
    int64_t stride;
    double *out;            /* n_rows outputs, or NULL                  */
    int backward;           /* gradients requested                      */
    int32_t n_acc;          /* acc rows in use                          */
    int64_t r0, r1;         /* this thread's rows [r0, r1)              */
    ag_scratch *s;
} run_job;

/* Forward and (if asked) backward of rows [r0, r0 + nr) of the job; node p's
 * row r is at v[p * B + r] (B = rows_per_block, passed in so that a full
 * block can be compiled with constant trip counts). */
static AG_ALWAYS_INLINE void block_rows(const run_job *j, int64_t r0, int nr,
                                        size_t B) {
    const ag_graph *g = j->g;
    const ag_instr *ins = g->ins;
    double *v = j->s->v, *gr = j->s->g, *acc = j->s->acc;
    for (int32_t i = 0; i < j->n_in; i++) {
        double *vi = v + (size_t)j->in_pos[i] * B;
        const double *col = j->rows + r0 * j->stride + i;
        for (int r = 0; r < nr; r++) vi[r] = col[r * j->stride];
    }
    for (int32_t i = 0; i < g->n_ins; i++) {
        const double *x = v + (size_t)ins[i].a * B;
        const double *y = ins[i].b < 0 ? x : v + (size_t)ins[i].b * B;
        forward_rows(ins[i].op, v + (size_t)ins[i].p * B, x, y,
                     g->k[ins[i].p], nr);
    }
    const double *root = v + (size_t)(g->n - 1) * B;
    if (j->out) memcpy(j->out + r0, root, (size_t)nr * sizeof(double));
    if (!j->backward) return;
    double *groot = gr + (size_t)(g->n - 1) * B;
    for (int r = 0; r < nr; r++) groot[r] += 1.0;
    for (int32_t i = g->n_ins - 1; i >= 0; i--) {   /* sources keep their sums */
        int32_t p = ins[i].p, a = ins[i].a, b = ins[i].b;
        double *gp = gr + (size_t)p * B;
        const double *x = v + (size_t)a * B, *o = v + (size_t)p * B;
        const double *y = b < 0 ? x : v + (size_t)b * B;
        backward_rows(ins[i].op, 0, gr + (size_t)a * B, gp, x, y, o, g->k[p],
                      nr);
        if (b >= 0)
            backward_rows(ins[i].op, 1, gr + (size_t)b * B, gp, x, y, o,
                          g->k[p], nr);
        if (g->slot[p] >= 0) {
            double *sum = acc + (size_t)g->slot[p] * B;
            for (int r = 0; r < nr; r++) sum[r] += gp[r];
        }
        memset(gp, 0, (size_t)nr * sizeof(double));   /* ready for the next */
    }
}

AG_SIMD_CLONES static void run_block(const run_job *j, int64_t r0, int nr) {
    size_t B = (size_t)j->g->rows_per_block;
    if (B == AG_BLOCK_ROWS && nr == AG_BLOCK_ROWS)
        block_rows(j, r0, AG_BLOCK_ROWS, AG_BLOCK_ROWS);
    else
        block_rows(j, r0, nr, B);
}

static void *run_rows(void *arg) {
    const run_job *j = arg;
    const ag_graph *g = j->g;
    const size_t B = (size_t)g->rows_per_block;
    ag_scratch *s = j->s;
    for (int32_t i = 0; i < g->n_src; i++) {   /* sources: the same each row */
        int32_t p = g->src[i];
        double *vp = s->v + (size_t)p * B, *gp = s->g + (size_t)p * B;
        for (size_t r = 0; r < B; r++) vp[r] = g->val[p];
        memset(gp, 0, B * sizeof(double));
    }
    if (j->n_acc)                              /* acc is NULL until needed */
        memset(s->acc, 0, (size_t)j->n_acc * B * sizeof(double));
    for (int64_t r = j->r0; r < j->r1; r += (int64_t)B) {
        int64_t nr = j->r1 - r < (int64_t)B ? j->r1 - r : (int64_t)B;
        run_block(j, r, (int)nr);
    }
    return NULL;
}

/* Make scratch for `threads` threads with n_acc acc rows each.  Op-node
 * gradient rows start zeroed (calloc) and are kept zero by run_block. */
static int ensure_scratch(ag_graph *g, int threads, int32_t n_acc) {
    size_t nb = (size_t)g->n * (size_t)g->rows_per_block;
    if (threads > g->n_scratch) {
        ag_scratch *s = realloc(g->scratch, (size_t)threads * sizeof *s);
        if (!s) return AG_ERR_NOMEM;
        g->scratch = s;
        for (; g->n_scratch < threads; g->n_scratch++) {
            ag_scratch *t = &s[g->n_scratch];
            t->v = malloc(nb * sizeof(double));
            t->g = calloc(nb, sizeof(double));
            t->acc = NULL;
            t->acc_cap = 0;
            if (!t->v || !t->g) {
                free(t->v); free(t->g);
                return AG_ERR_NOMEM;
            }
        }
    }
    for (int t = 0; t < threads; t++) {
        ag_scratch *s = &g->scratch[t];
        if ((size_t)n_acc <= s->acc_cap) continue;
        double *acc = realloc(s->acc, (size_t)n_acc *
                                      (size_t)g->rows_per_block * sizeof *acc);
        if (!acc) return AG_ERR_NOMEM;
        s->acc = acc;
        s->acc_cap = (size_t)n_acc;
    }
    return AG_OK;
}

/* Positions of the inputs (distinct leaves) and grads (any node) into
 * pos[0..n_in) and pos[n_in..n_in+n_grads).  AG_OK or a status. */
static int find_positions(ag_graph *g, const int32_t *inputs, int32_t n_in,
                          const int32_t *grads, int32_t n_grads,
                          int32_t *pos) {
    int st = AG_OK;
    int32_t i = 0;
    for (; i < n_in && st == AG_OK; i++) {    /* mark inputs with slot -2 */
        int32_t p = ag_graph_position(g, inputs[i]);
        if (p < 0 || !is_source(g->op[p])) st = AG_ERR_NOT_LEAF;
        else if (g->slot[p] == -2) st = AG_ERR_ARG;
        else { g->slot[p] = -2; pos[i] = p; }
    }
    if (st != AG_OK) i--;                     /* pos[i] was not set */
    while (i-- > 0) g->slot[pos[i]] = -1;
    for (int32_t j = 0; j < n_grads && st == AG_OK; j++) {
        pos[n_in + j] = ag_graph_position(g, grads[j]);
        if (pos[n_in + j] < 0) st = AG_ERR_ARG;
    }
    return st;
}

/* A thread of a run: its job, and whether it was started in the background. */
typedef struct run_worker {
    run_job job;
    pthread_t tid;
    int started;
} run_worker;

/* Run the jobs, jobs 1.. on background threads (one that cannot be started
 * runs on this thread after job 0). */
static void run_workers(run_worker *w, int threads) {
    for (int t = 1; t < threads; t++)
        w[t].started = pthread_create(&w[t].tid, NULL, run_rows, &w[t].job) == 0;
    run_rows(&w[0].job);
    for (int t = 1; t < threads; t++) {
        if (w[t].started) pthread_join(w[t].tid, NULL);
        else run_rows(&w[t].job);
    }
}

/* grad_out[j]: the lanes of node grad_pos[j]'s sum rows, thread by thread,
 * in AG_SUM_WAYS interleaved partial sums (B is a multiple of it). */
#define AG_SUM_WAYS 8
static void sum_grads(const ag_graph *g, int threads, const int32_t *grad_pos,
                      int32_t n_grads, double *grad_out) {
    const size_t B = (size_t)g->rows_per_block;
    for (int32_t j = 0; j < n_grads; j++) {
        int32_t p = grad_pos[j];
        double part[AG_SUM_WAYS] = {0.0}, sum = 0.0;
        for (int t = 0; t < threads; t++) {
            const ag_scratch *s = &g->scratch[t];
            const double *lanes = is_source(g->op[p])
                                      ? s->g + (size_t)p * B
                                      : s->acc + (size_t)g->slot[p] * B;
            for (size_t r = 0; r < B; r += AG_SUM_WAYS)
                for (int w = 0; w < AG_SUM_WAYS; w++) part[w] += lanes[r + w];
        }
        for (int w = 0; w < AG_SUM_WAYS; w++) sum += part[w];
        grad_out[j] = sum;
    }
}

int ag_graph_run(ag_graph *g, const int32_t *inputs, int32_t n_inputs,
                 const double *rows, int64_t n_rows, int64_t row_stride,
                 const int32_t *grads, int32_t n_grads, double *out,
                 double *grad_out, int threads) {
    if (n_inputs < 0 || n_grads < 0 || n_rows < 0 || threads < 1 ||
        row_stride < n_inputs || (n_inputs && !inputs) ||
        (n_grads && (!grads || !grad_out)) || (n_rows && n_inputs && !rows))
        return AG_ERR_ARG;
    int64_t B = g->rows_per_block, blocks = (n_rows + B - 1) / B;
    int64_t by_work = (int64_t)g->n * n_rows / AG_MIN_THREAD_WORK;
    if (threads > blocks) threads = blocks > 0 ? (int)blocks : 1;
    if (threads > by_work) threads = by_work > 0 ? (int)by_work : 1;
    /* pos: input positions, then grad positions */
    int32_t *pos = malloc(((size_t)n_inputs + (size_t)n_grads + 1) *
                          sizeof *pos);
    run_worker *w = malloc((size_t)threads * sizeof *w);
    if (!pos || !w) {
        free(pos);
        free(w);
        return AG_ERR_NOMEM;
    }
    pthread_mutex_lock(&g->lock);
    int st = find_positions(g, inputs, n_inputs, grads, n_grads, pos);
    const int32_t *grad_pos = pos + n_inputs;
    if (st == AG_OK) {
        int32_t n_acc = 0;                    /* acc rows: requested op nodes */
        for (int32_t j = 0; j < n_grads; j++) {
            int32_t p = grad_pos[j];
            if (!is_source(g->op[p]) && g->slot[p] < 0) g->slot[p] = n_acc++;
        }
        st = ensure_scratch(g, threads, n_acc);
        if (st == AG_OK) {
            read_sources(g);
            for (int t = 0; t < threads; t++)
                w[t].job = (run_job){g, pos, n_inputs, rows, row_stride, out,
                                     n_grads > 0, n_acc, n_rows * t / threads,
                                     n_rows * (t + 1) / threads,
                                     &g->scratch[t]};
            run_workers(w, threads);
            sum_grads(g, threads, grad_pos, n_grads, grad_out);
        }
        for (int32_t j = 0; j < n_grads; j++) g->slot[grad_pos[j]] = -1;
    }
    pthread_mutex_unlock(&g->lock);
    free(w);
    free(pos);
    return st;
}

/* ---- bulk parameter updates --------------------------------------------- */

static int all_live(const ag_ctx *c, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!ag__is_live(c, ids[i])) return 0;
    return 1;
}

int ag_zero_grads(ag_ctx *c, const int32_t *ids, size_t n) {
    AG_LOCK(c);
    int ok = all_live(c, ids, n);
    for (size_t i = 0; ok && i < n; i++) {
        c->flags[ids[i]] |= AG_GRAD_INT | AG_GRAD_ZERO;
    }
    AG_UNLOCK(c);
    return ok ? AG_OK : AG_ERR_ARG;
}

int ag_add_grads(ag_ctx *c, const int32_t *ids, size_t n, const double *v) {
    AG_LOCK(c);
    int ok = all_live(c, ids, n);
    for (size_t i = 0; ok && i < n; i++) {
        c->grad[ids[i]] = ag__grad(c->grad, c->flags, ids[i]) + v[i];
        c->flags[ids[i]] &= (uint8_t)~(AG_GRAD_INT | AG_GRAD_ZERO);
    }
    AG_UNLOCK(c);
    return ok ? AG_OK : AG_ERR_ARG;
}

int ag_sgd(ag_ctx *c, const int32_t *ids, size_t n, double lr) {
    AG_LOCK(c);
    int ok = all_live(c, ids, n);
    for (size_t i = 0; ok && i < n; i++) {
        c->data[ids[i]] -= lr * ag__grad(c->grad, c->flags, ids[i]);
        c->flags[ids[i]] &= (uint8_t)~AG_DATA_INT;
    }
    AG_UNLOCK(c);
    return ok ? AG_OK : AG_ERR_ARG;
}
