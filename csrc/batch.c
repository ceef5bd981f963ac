/*
 * batch.c -- a captured graph run over many input rows at once, in plain
 * doubles (ag_graph_run): blocks of rows laid out node-major (v[p * B + r])
 * so each op is one loop over the rows of a block, which gcc -O3
 * vectorises; optionally split over threads.  The op rules are rules.h's,
 * called with every int flag 0.  The arena's lock is held only to copy the
 * sources; the rows are evaluated on the graph's own arrays without it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "alloc.h"
#include "graph.h"

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

/* Rows per block for a graph of n nodes (see AG_BLOCK_ROWS). */
static int rows_per_block(int32_t n) {
    int B = AG_BLOCK_ROWS;
    while (B > AG_MIN_BLOCK_ROWS &&
           (size_t)n * (size_t)B * 2 * sizeof(double) > AG_SCRATCH_BYTES)
        B /= 2;
    return B;
}

/* The batched kernels are compiled for AVX-512 and AVX2 as well as the
 * baseline, picked at load time (gcc's function multiversioning). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__)
#define AG_SIMD_CLONES \
    __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AG_SIMD_CLONES
#endif

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

/* ---- batched replay: plain doubles, vectorised over the rows of a block --- */

/* o[r] = op(x[r], y[r]) for r < nr (y == x for one-operand ops): the op's
 * R_value.  Sources are already in place. */
static inline void forward_rows(int op, double *restrict o,
                                const double *restrict x,
                                const double *restrict y, double k, int nr) {
#define ROW(code, rule, name, arity) FWD_##arity(code, rule)
#define FWD_0(code, rule) case AG_##code: break;
#define FWD_1(code, rule)                                              \
    case AG_##code:                                                    \
        for (int r = 0; r < nr; r++) o[r] = rule##_value(x[r], y[r], k); \
        break;
#define FWD_2 FWD_1
    switch ((ag_op)op) {
    AG_OP_LIST(ROW)
    }
#undef ROW
}

/* One child's share of the backward rule of out = op(x, y): gc[r] +=
 * R_grad_a (R_grad_b when second) of gp[r], every int flag 0 -- the eager
 * backward's float expressions. */
static AG_ALWAYS_INLINE void backward_rows(int op, int second, double *restrict gc,
                                 const double *restrict gp,
                                 const double *restrict x,
                                 const double *restrict y,
                                 const double *restrict o, double k, int nr) {
#define ROW(code, rule, name, arity) BACK_##arity(code, rule)
#define BACK_0(code, rule) case AG_##code: break;
#define BACK_ROWS(grad)                                                \
    for (int r = 0; r < nr; r++) {                                     \
        ag_operands v = {x[r], y[r], k, o[r], 0, 0, 0};                \
        int c_int;                               /* 0: no int flags */ \
        gc[r] += grad(&v, gp[r], 0, &c_int);                           \
    }
#define BACK_1(code, rule)                                             \
    case AG_##code: BACK_ROWS(rule##_grad_a) break;
#define BACK_2(code, rule)                                             \
    case AG_##code:                                                    \
        if (second) BACK_ROWS(rule##_grad_b)                           \
        else BACK_ROWS(rule##_grad_a)                                  \
        break;
    switch ((ag_op)op) {
    AG_OP_LIST(ROW)
    }
#undef ROW
#undef BACK_ROWS
}

/* Both children's shares at once, for a two-child op whose children are
 * distinct (ga, gb: their grad rows), and gp cleared for the next block:
 * one pass over the rows instead of three.  Per row the same terms in the
 * same order as backward_rows for a, then for b. */
static AG_ALWAYS_INLINE void backward2_rows(int op, double *restrict ga,
                                  double *restrict gb, double *restrict gp,
                                  const double *restrict x,
                                  const double *restrict y,
                                  const double *restrict o, double k, int nr) {
#define ROW(code, rule, name, arity) BACK2_##arity(code, rule)
#define BACK2_0(code, rule) case AG_##code: break;
#define BACK2_1 BACK2_0
#define BACK2_2(code, rule)                                            \
    case AG_##code:                                                    \
        for (int r = 0; r < nr; r++) {                                 \
            ag_operands v = {x[r], y[r], k, o[r], 0, 0, 0};            \
            int c_int;                           /* 0: no int flags */ \
            ga[r] += rule##_grad_a(&v, gp[r], 0, &c_int);              \
            gb[r] += rule##_grad_b(&v, gp[r], 0, &c_int);              \
            gp[r] = 0.0;                                               \
        }                                                              \
        break;
    switch ((ag_op)op) {
    AG_OP_LIST(ROW)
    }
#undef ROW
}

/* ---- dot chains: a neuron's sum(w_i * x_i, c) as one step ---------------- */

/* A dot chain is a run of consecutive instruction pairs m_i = MUL(w_i, x_i),
 * s_i = ADD(s_(i-1), m_i) (s_(-1) = c, any node), one pair or more, whose
 * m_i and s_i (but the last s) have one use each (ag__dot_pair) and are
 * not requested.  Its intermediate values and grads are never stored -- nothing else
 * reads them -- so a neuron of n inputs moves n rows of w and x through
 * the caches, not 2n nodes' values and grads.  Per row it computes the
 * members' expressions in their order, and its terms reach each node
 * outside it in the order the members' own steps would give them: the same
 * bits. */

/* Whether ins[i], ins[i + 1] are a chain's pair after a pair whose sum is
 * at position prev (-1: the chain's first pair): graph.h's shape, and
 * neither node requested. */
static int chain_pair(const ag_graph *g, int32_t i, int32_t prev) {
    return ag__dot_pair(g, i, prev) && g->slot[g->ins[i].p] < 0 &&
           (prev < 0 || g->slot[prev] < 0);
}

/* g->bsteps for this run's requested nodes (g->slot): chains where they
 * can be (not with AG_GRAPH_UNFUSED), single instructions elsewhere.
 * AG_OK or AG_ERR_NOMEM (the first time, when bsteps is made). */
static int plan_steps(ag_graph *g) {
    if (!g->bsteps) {
        g->bsteps = ag__malloc(((size_t)g->n_ins + 1) * sizeof *g->bsteps);
        if (!g->bsteps) return AG_ERR_NOMEM;
    }
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_ins;) {
        int32_t len = 0;
        if (!(g->options & AG_GRAPH_UNFUSED))
            while (chain_pair(g, i + len, len ? g->ins[i + len - 1].p : -1))
                len += 2;
        if (len < 2) len = 1;                 /* no pair: one instruction */
        g->bsteps[n++] = (ag_bstep){i, len};
        i += len;
    }
    g->n_bsteps = n;
    return AG_OK;
}

/* A chain's values: its last sum's row, every member's expression in turn
 * (v: node-major rows, B per node). */
static AG_ALWAYS_INLINE void chain_forward(const ag_instr *in, int32_t len,
                                           double *v, size_t B, int nr) {
    double *restrict out = v + (size_t)in[len - 1].p * B;
    const double *c = v + (size_t)in[1].a * B;
    for (int r = 0; r < nr; r++) out[r] = c[r];
    for (int32_t k = 0; k < len; k += 2) {
        const double *w = v + (size_t)in[k].a * B, *x = v + (size_t)in[k].b * B;
        for (int r = 0; r < nr; r++)
            out[r] = add_value(out[r], mul_value(w[r], x[r], 0), 0);
    }
}

/* A chain's terms to the nodes outside it from its last sum's grad rows gp
 * (then cleared), in the members' reverse order: w_i and x_i of each
 * product, c just before w_0 and x_0.  Every member's grad would be 0 + gp
 * (an add passes its grad on into a fresh zero); gp itself differs from
 * that only for gp = -0.0, whose terms are zeros added into sums that start
 * at +0.0 and so never hold a -0.0: the same bits. */
static AG_ALWAYS_INLINE void chain_backward(const ag_instr *in, int32_t len,
                                            const double *v, double *gr,
                                            double *restrict gp, size_t B,
                                            int nr) {
    for (int32_t k = len - 2; k >= 0; k -= 2) {
        if (k == 0) {
            double *gc = gr + (size_t)in[1].a * B;
            for (int r = 0; r < nr; r++) {
                int c_int;
                gc[r] += add_grad_a(NULL, gp[r], 0, &c_int);
            }
        }
        const double *w = v + (size_t)in[k].a * B, *x = v + (size_t)in[k].b * B;
        double *gw = gr + (size_t)in[k].a * B, *gx = gr + (size_t)in[k].b * B;
        for (int r = 0; r < nr; r++) {
            ag_operands o = {w[r], x[r], 0.0, 0.0, 0, 0, 0};
            int c_int;
            gw[r] += mul_grad_a(&o, gp[r], 0, &c_int);
            gx[r] += mul_grad_b(&o, gp[r], 0, &c_int);
        }
    }
    memset(gp, 0, (size_t)nr * sizeof(double));
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
    const int32_t *grad_pos;  /* n_grads positions of the requested grads */
    int32_t n_grads;
    double *row_grads;      /* per-row grads (row r, grad j: [r * n_grads
                             * + j]), or NULL                           */
    int64_t r0, r1;         /* this thread's rows [r0, r1)              */
    ag_scratch *s;
} run_job;

/* For per-row grads: a block's grad rows gp of the node with acc row
 * `slot`, kept in s->rowg until write_row_grads.  Out of line: runs
 * without per-row grads do not pay for it in their loop. */
static __attribute__((noinline)) void keep_rows(const run_job *j, int32_t slot,
                                               const double *gp, int nr,
                                               size_t B) {
    memcpy(j->s->rowg + (size_t)slot * B, gp, (size_t)nr * sizeof(double));
}

/* The end of a block with per-row grads: requested sources' rows into
 * their acc and rowg rows (then cleared, so that each block's rows start
 * from zero), and every requested node's rows from s->rowg into
 * j->row_grads. */
static __attribute__((noinline)) void write_row_grads(const run_job *j,
                                                     int64_t r0, int nr,
                                                     size_t B) {
    const ag_graph *g = j->g;
    for (int32_t i = 0; i < g->n_src; i++) {
        int32_t p = g->src[i];
        if (g->slot[p] < 0) continue;
        double *gs = j->s->g + (size_t)p * B;
        double *sum = j->s->acc + (size_t)g->slot[p] * B;
        for (int r = 0; r < nr; r++) sum[r] += gs[r];
        keep_rows(j, g->slot[p], gs, nr, B);
        memset(gs, 0, (size_t)nr * sizeof(double));
    }
    for (int32_t i = 0; i < j->n_grads; i++) {
        const double *rows = j->s->rowg + (size_t)g->slot[j->grad_pos[i]] * B;
        double *out = j->row_grads + r0 * j->n_grads + i;
        for (int r = 0; r < nr; r++) out[(int64_t)r * j->n_grads] = rows[r];
    }
}

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
    for (int32_t t = 0; t < g->n_bsteps; t++) {
        int32_t i = g->bsteps[t].i0;
        if (g->bsteps[t].len > 1) {
            chain_forward(ins + i, g->bsteps[t].len, v, B, nr);
            continue;
        }
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
    for (int32_t t = g->n_bsteps - 1; t >= 0; t--) {  /* sources keep sums */
        int32_t i = g->bsteps[t].i0 + g->bsteps[t].len - 1;
        int32_t p = ins[i].p, a = ins[i].a, b = ins[i].b;
        double *gp = gr + (size_t)p * B;
        const double *x = v + (size_t)a * B, *o = v + (size_t)p * B;
        const double *y = b < 0 ? x : v + (size_t)b * B;
        if (g->slot[p] >= 0) {
            double *sum = acc + (size_t)g->slot[p] * B;
            for (int r = 0; r < nr; r++) sum[r] += gp[r];
            if (j->row_grads) keep_rows(j, g->slot[p], gp, nr, B);
        }
        if (g->bsteps[t].len > 1) {         /* gp cleared: ready for the next */
            chain_backward(ins + g->bsteps[t].i0, g->bsteps[t].len, v, gr, gp, B,
                           nr);
            continue;
        }
        if (b >= 0 && b != a) {
            backward2_rows(ins[i].op, gr + (size_t)a * B, gr + (size_t)b * B,
                           gp, x, y, o, g->k[p], nr);
            continue;
        }
        backward_rows(ins[i].op, 0, gr + (size_t)a * B, gp, x, y, o, g->k[p],
                      nr);
        if (b >= 0)
            backward_rows(ins[i].op, 1, gr + (size_t)b * B, gp, x, y, o,
                          g->k[p], nr);
        memset(gp, 0, (size_t)nr * sizeof(double));   /* ready for the next */
    }
    if (j->row_grads) write_row_grads(j, r0, nr, B);
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
        ag_scratch *s = ag__realloc(g->scratch, (size_t)threads * sizeof *s);
        if (!s) return AG_ERR_NOMEM;
        g->scratch = s;
        for (; g->n_scratch < threads; g->n_scratch++) {
            ag_scratch *t = &s[g->n_scratch];
            t->v = ag__malloc(nb * sizeof(double));
            t->g = ag__calloc(nb, sizeof(double));
            t->acc = t->rowg = NULL;
            t->acc_cap = 0;
            if (!t->v || !t->g) {
                ag__free(t->v); ag__free(t->g);
                return AG_ERR_NOMEM;
            }
        }
    }
    size_t bytes = (size_t)n_acc * (size_t)g->rows_per_block * sizeof(double);
    for (int t = 0; t < threads; t++) {
        ag_scratch *s = &g->scratch[t];
        if ((size_t)n_acc <= s->acc_cap) continue;
        double *acc = ag__realloc(s->acc, bytes);
        if (!acc) return AG_ERR_NOMEM;
        s->acc = acc;
        double *rowg = ag__realloc(s->rowg, bytes);
        if (!rowg) return AG_ERR_NOMEM;
        s->rowg = rowg;
        s->acc_cap = (size_t)n_acc;
    }
    return AG_OK;
}

/* The status for handle h, which is no node of graph g: that of a stale
 * or bad handle when it is one (AG_ERR_STALE, AG_ERR_ARG), else
 * not_in_graph. */
static int not_in_graph(ag_graph *g, int64_t h, int not_in_graph) {
    ag_ctx *c = g->ctx;
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    AG_UNLOCK(c);
    return id < 0 ? (int)id : not_in_graph;
}

/* Positions of the inputs (distinct leaves) and grads (any node) into
 * pos[0..n_in) and pos[n_in..n_in+n_grads).  AG_OK or a status. */
static int find_positions(ag_graph *g, const int64_t *inputs, int32_t n_in,
                          const int64_t *grads, int32_t n_grads,
                          int32_t *pos) {
    int st = AG_OK;
    int32_t i = 0;
    for (; i < n_in && st == AG_OK; i++) {    /* mark inputs with slot -2 */
        int32_t p = ag__graph_position(g, inputs[i]);
        if (p < 0) st = not_in_graph(g, inputs[i], AG_ERR_NOT_LEAF);
        else if (!ag__is_source(g->op[p])) st = AG_ERR_NOT_LEAF;
        else if (g->slot[p] == -2) st = AG_ERR_ARG;
        else { g->slot[p] = -2; pos[i] = p; }
    }
    if (st != AG_OK) i--;                     /* pos[i] was not set */
    while (i-- > 0) g->slot[pos[i]] = -1;
    for (int32_t j = 0; j < n_grads && st == AG_OK; j++) {
        pos[n_in + j] = ag__graph_position(g, grads[j]);
        if (pos[n_in + j] < 0) st = not_in_graph(g, grads[j], AG_ERR_ARG);
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
            const double *lanes = g->slot[p] < 0
                                      ? s->g + (size_t)p * B
                                      : s->acc + (size_t)g->slot[p] * B;
            for (size_t r = 0; r < B; r += AG_SUM_WAYS)
                for (int w = 0; w < AG_SUM_WAYS; w++) part[w] += lanes[r + w];
        }
        for (int w = 0; w < AG_SUM_WAYS; w++) sum += part[w];
        grad_out[j] = sum;
    }
}

int ag_graph_run(ag_graph *g, const int64_t *inputs, int32_t n_inputs,
                 const double *rows, int64_t n_rows, int64_t row_stride,
                 const int64_t *grads, int32_t n_grads, double *out,
                 double *grad_out, int threads) {
    return ag_graph_run_rows(g, inputs, n_inputs, rows, n_rows, row_stride,
                             grads, n_grads, out, grad_out, NULL, threads);
}

int ag_graph_run_rows(ag_graph *g, const int64_t *inputs, int32_t n_inputs,
                      const double *rows, int64_t n_rows, int64_t row_stride,
                      const int64_t *grads, int32_t n_grads, double *out,
                      double *grad_out, double *row_grads, int threads) {
    if (n_inputs < 0 || n_grads < 0 || n_rows < 0 || threads < 1 ||
        row_stride < n_inputs || (n_inputs && !inputs) ||
        (n_grads && (!grads || !grad_out)) || (n_rows && n_inputs && !rows))
        return AG_ERR_ARG;
    pthread_mutex_lock(&g->lock);
    if (!g->rows_per_block) g->rows_per_block = rows_per_block(g->n);
    int64_t B = g->rows_per_block, blocks = (n_rows + B - 1) / B;
    int64_t by_work = (int64_t)g->n * n_rows / AG_MIN_THREAD_WORK;
    if (threads > blocks) threads = blocks > 0 ? (int)blocks : 1;
    if (threads > by_work) threads = by_work > 0 ? (int)by_work : 1;
    /* pos: input positions, then grad positions */
    int32_t *pos = ag__malloc(((size_t)n_inputs + (size_t)n_grads + 1) *
                          sizeof *pos);
    run_worker *w = ag__malloc((size_t)threads * sizeof *w);
    if (!pos || !w) {
        pthread_mutex_unlock(&g->lock);
        ag__free(pos);
        ag__free(w);
        return AG_ERR_NOMEM;
    }
    int st = find_positions(g, inputs, n_inputs, grads, n_grads, pos);
    const int32_t *grad_pos = pos + n_inputs;
    if (st == AG_OK) {
        int32_t n_acc = 0;   /* acc rows: requested op nodes (and sources,
                              * for per-row grads) */
        for (int32_t j = 0; j < n_grads; j++) {
            int32_t p = grad_pos[j];
            if ((row_grads || !ag__is_source(g->op[p])) && g->slot[p] < 0)
                g->slot[p] = n_acc++;
        }
        st = ensure_scratch(g, threads, n_acc);
        if (st == AG_OK) st = plan_steps(g);
        if (st == AG_OK) {
            read_sources(g);
            for (int t = 0; t < threads; t++)
                w[t].job = (run_job){g, pos, n_inputs, rows, row_stride, out,
                                     n_grads > 0, n_acc, grad_pos, n_grads,
                                     n_grads ? row_grads : NULL,
                                     n_rows * t / threads,
                                     n_rows * (t + 1) / threads,
                                     &g->scratch[t]};
            run_workers(w, threads);
            sum_grads(g, threads, grad_pos, n_grads, grad_out);
        }
        for (int32_t j = 0; j < n_grads; j++) g->slot[grad_pos[j]] = -1;
    }
    pthread_mutex_unlock(&g->lock);
    ag__free(w);
    ag__free(pos);
    return st;
}

void ag__batch_free(ag_graph *g) {
    for (int t = 0; t < g->n_scratch; t++) {
        ag__free(g->scratch[t].v); ag__free(g->scratch[t].g); ag__free(g->scratch[t].acc);
        ag__free(g->scratch[t].rowg);
    }
    ag__free(g->scratch);
    ag__free(g->bsteps);
}
