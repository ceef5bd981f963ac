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
