/*
 * opmix_by_hand.h -- issue 12's op mix written by hand in C, the way a
 * person would without an autograd engine: a tape of 10,000 ops over
 * 17,600 values, softplus and softmax fused into one op each with their
 * textbook derivatives (softmax's backward y_j * (g_j - sum_k g_k y_k)).
 * The reference bench_replay.c times the captured graph against ("as fast
 * as hand-written C").  It is not bit-identical to the engine (it computes
 * 1 / s where micrograd computes s ** -1, and sums gradients in another
 * order): bench_replay.c checks it against the replay to 1e-9.
 *
 * Included by bench_replay.c only (static functions, no public names).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { HAND_INPUTS = 100 };

typedef enum { HAND_SOFTPLUS, HAND_SUM4, HAND_MUL, HAND_SOFTMAX } hand_kind;

/* One tape op: its inputs' value indices, its first output's (softmax has
 * four, out .. out + 3). */
typedef struct hand_op {
    hand_kind kind;
    int32_t in[4];
    int32_t out;
} hand_op;

typedef struct hand_tape {
    hand_op *ops;
    int n_ops, n_values;
    double *v, *g;     /* n_values each: values and grads */
    double *aux;       /* n_values: softplus's sigmoid(x) at its output */
} hand_tape;

/* The tape of the op mix of `ops` ops (bench_replay.c's opmix, same
 * inputs and operands); NULL when out of memory. */
static hand_tape *hand_tape_new(int ops) {
    hand_tape *t = calloc(1, sizeof *t);
    int cap = HAND_INPUTS + 4 * ops;
    if (!t) return NULL;
    t->ops = malloc(sizeof *t->ops * (size_t)ops);
    t->v = malloc(sizeof(double) * (size_t)cap);
    t->g = malloc(sizeof(double) * (size_t)cap);
    t->aux = malloc(sizeof(double) * (size_t)cap);
    if (!t->ops || !t->v || !t->g || !t->aux) return NULL;
    int len = HAND_INPUTS;
    for (int i = 0; i < HAND_INPUTS; i++) t->v[i] = i / 100.0;
    for (int k = 0; k < ops; k++) {
        hand_op *o = &t->ops[k];
        o->kind = (hand_kind)(k % 4);
        switch (o->kind) {
        case HAND_SOFTPLUS: o->in[0] = len - 10; o->out = len++; break;
        case HAND_SUM4:
            for (int j = 0; j < 4; j++) o->in[j] = len - 30 + 5 * j;
            o->out = len++;
            break;
        case HAND_MUL: o->in[0] = len - 20; o->in[1] = len - 10; o->out = len++; break;
        case HAND_SOFTMAX:
            for (int j = 0; j < 4; j++) o->in[j] = len - 4 + j;
            o->out = len;
            len += 4;
            break;
        }
    }
    t->n_ops = ops;
    t->n_values = len;
    return t;
}

static void hand_tape_free(hand_tape *t) {
    if (!t) return;
    free(t->ops); free(t->v); free(t->g); free(t->aux); free(t);
}

/* Forward over the tape, then backward from the last value (grad 1). */
static void hand_tape_pass(hand_tape *t) {
    double *restrict v = t->v, *restrict g = t->g, *restrict aux = t->aux;
    for (int k = 0; k < t->n_ops; k++) {
        const hand_op *o = &t->ops[k];
        switch (o->kind) {
        case HAND_SOFTPLUS: {
            double e = exp(v[o->in[0]]);
            v[o->out] = log1p(e);
            aux[o->out] = e / (1.0 + e);
            break;
        }
        case HAND_SUM4:
            v[o->out] = v[o->in[0]] + v[o->in[1]] + v[o->in[2]] + v[o->in[3]];
            break;
        case HAND_MUL: v[o->out] = v[o->in[0]] * v[o->in[1]]; break;
        case HAND_SOFTMAX: {
            double e[4], s = 0.0;
            for (int j = 0; j < 4; j++) s += e[j] = exp(v[o->in[j]]);
            double inv = 1.0 / s;
            for (int j = 0; j < 4; j++) v[o->out + j] = e[j] * inv;
            break;
        }
        }
    }
    memset(g, 0, sizeof(double) * (size_t)t->n_values);
    g[t->n_values - 1] = 1.0;
    for (int k = t->n_ops; k-- > 0;) {
        const hand_op *o = &t->ops[k];
        double go = g[o->out];
        switch (o->kind) {
        case HAND_SOFTPLUS: g[o->in[0]] += go * aux[o->out]; break;
        case HAND_SUM4:
            for (int j = 0; j < 4; j++) g[o->in[j]] += go;
            break;
        case HAND_MUL:
            g[o->in[0]] += go * v[o->in[1]];
            g[o->in[1]] += go * v[o->in[0]];
            break;
        case HAND_SOFTMAX: {
            const double *y = v + o->out, *gy = g + o->out;
            double dot = 0.0;
            for (int j = 0; j < 4; j++) dot += gy[j] * y[j];
            for (int j = 0; j < 4; j++) g[o->in[j]] += y[j] * (gy[j] - dot);
            break;
        }
        }
    }
}

/* ---- a bare loop over the captured program ------------------------------- */

/* The replay's own program (read back through the public API: positions,
 * ops, operand positions, exponents), run by the barest loop there is:
 * doubles only, no Python types, no error checks, no arena, exact=True's
 * operations (pow for powers).  What node-by-node replay of this program
 * could cost at best: the floor under bench_replay's op-mix figure. */
typedef struct bare_program {
    int32_t n;
    uint8_t *op;
    int32_t *a, *b;
    double *k, *v, *g;
} bare_program;

static void bare_free(bare_program *b) {
    if (!b) return;
    free(b->op); free(b->a); free(b->b); free(b->k); free(b->v); free(b->g); free(b);
}

/* g's program, sources' values from the arena; NULL on failure. */
static bare_program *bare_new(ag_ctx *c, ag_graph *gr) {
    bare_program *b = calloc(1, sizeof *b);
    int32_t n = ag_graph_size(gr);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
    int64_t *h = malloc(sizeof(int64_t) * (size_t)n);
    if (!b || !pos || !h) return NULL;
    b->n = n;
    b->op = malloc((size_t)n);
    b->a = malloc(sizeof(int32_t) * (size_t)n);
    b->b = malloc(sizeof(int32_t) * (size_t)n);
    b->k = malloc(sizeof(double) * (size_t)n);
    b->v = malloc(sizeof(double) * (size_t)n);
    b->g = malloc(sizeof(double) * (size_t)n);
    if (!b->op || !b->a || !b->b || !b->k || !b->v || !b->g) return NULL;
    for (int32_t p = 0; p < n; p++) pos[p] = p;
    if (ag_graph_handles(gr, pos, (size_t)n, h) != AG_OK) return NULL;
    for (int32_t p = 0; p < n; p++) {
        ag_node node;
        if (ag_node_info(c, h[p], &node) != AG_OK) return NULL;
        b->op[p] = (uint8_t)node.op;
        b->a[p] = node.a >= 0 ? ag_graph_position(gr, node.a) : -1;
        b->b[p] = node.b >= 0 ? ag_graph_position(gr, node.b) : -1;
        b->k[p] = node.k;
        b->v[p] = creal(ag_read(c, h[p], AG_READ_DATA));
    }
    ag_release_many(c, h, (size_t)n);
    free(pos);
    free(h);
    return b;
}

/* Forward over the program, then backward from its last node. */
static void bare_pass(bare_program *b) {
    double *restrict v = b->v, *restrict g = b->g;
    for (int32_t p = 0; p < b->n; p++) {
        double x = b->a[p] >= 0 ? v[b->a[p]] : 0.0, y = b->b[p] >= 0 ? v[b->b[p]] : 0.0;
        switch (b->op[p]) {
        case AG_ADD: v[p] = x + y; break;
        case AG_MUL: v[p] = x * y; break;
        case AG_EXP: v[p] = exp(x); break;
        case AG_LOG: v[p] = log(x); break;
        case AG_POW_CONST: v[p] = pow(x, b->k[p]); break;
        default: break;                       /* sources keep their values */
        }
        g[p] = 0.0;
    }
    g[b->n - 1] = 1.0;
    for (int32_t p = b->n; p-- > 0;) {
        int32_t a = b->a[p], c = b->b[p];
        double gp = g[p];
        switch (b->op[p]) {
        case AG_ADD: g[a] += gp; g[c] += gp; break;
        case AG_MUL: g[a] += v[c] * gp; g[c] += v[a] * gp; break;
        case AG_EXP: g[a] += v[p] * gp; break;
        case AG_LOG: g[a] += gp / v[a]; break;
        case AG_POW_CONST: g[a] += b->k[p] * pow(v[a], b->k[p] - 1.0) * gp; break;
        default: break;
        }
    }
}
