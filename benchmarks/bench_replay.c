/*
 * bench_replay.c -- captured-graph replay speed, in C alone (no Python).
 *
 * Build with every C file of csrc/ (`make bench`, or by hand from the project
 * root: gcc -std=c11 -O3 -Icsrc benchmarks/bench_replay.c csrc/<all>.c -lm
 * -lpthread), then run: ./a.out [points]
 *
 * 1. Single-row replay: micrograd's moons loss over `points` data points
 *    (MLP(2, [16, 16, 1]) built as micrograd builds it, SVM hinge loss, mean,
 *    L2 term): about 10**6 nodes for the default 1541 points.  Times
 *    ag_graph_forward and ag_graph_backward (the eager rules: Python number
 *    types and errors, bit-identical to building anew) and, for reference,
 *    ag_backward (topological sort + the same pass).  Reports ns per node.
 *    The same for the 10**6-node chain h = h*1.0001 + 0.001 of
 *    bench_engine.c, half of whose nodes are constant leaves (read, not
 *    computed): the moons loss, nearly all op nodes, is the harder case.
 *    And the op mix (opmix): 100 inputs x_i = i/100, then 10,000 ops
 *    cycling over softplus log(exp(x) + 1), a 4-term sum, a product and a
 *    4-way softmax (each output a node), backward from the last node; reports
 *    us per forward+backward pass as well.
 * `./bench_replay PART` runs one part only (moons, chain, opmix, batched),
 * for an interleaved comparison with another build (benchmarks/vs_base.py).
 * 2. Batched replay: the one-point hinge graph (inputs x0, x1, y) run over
 *    many rows by ag_graph_run with the gradients of all 337 parameters
 *    summed over rows (plain doubles).  Reports ns per node and row, for 1
 *    and 2 threads, and for a wider MLP(2, [64, 64, 1]).
 * Every figure is the median of several repeats.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <complex.h>
#include "autograd_c.h"
#include "opmix_by_hand.h"

#define REPEATS 7

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static uint64_t rng = 1337;
static double uniform(double lo, double hi) {         /* xorshift64* */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return lo + (hi - lo) * (double)((rng * 2685821657736338717ull) >> 11) /
                    9007199254740992.0;
}

/* Exit on a failed status: the benchmark has no recovery to offer. */
static int64_t check(int64_t r, const char *what) {
    if (r < 0) {
        fprintf(stderr, "bench_replay: %s: %s\n", what, ag_status_str((int)r));
        exit(1);
    }
    return r;
}

/* An MLP's parameters: per layer, w (n_out * n_in handles) and b (n_out). */
typedef struct mlp {
    int n_layers;
    int32_t sizes[4];       /* n_in, hidden..., n_out              */
    int64_t *w[3], *b[3];
    int32_t n_params;
    int64_t *params;        /* all handles, micrograd's order       */
} mlp;

static void mlp_init(ag_ctx *c, mlp *m, int32_t hidden) {
    int32_t sizes[4] = {2, hidden, hidden, 1};
    m->n_layers = 3;
    memcpy(m->sizes, sizes, sizeof sizes);
    m->n_params = 0;
    m->params = malloc(sizeof(int64_t) * (size_t)(3 * hidden * hidden + 10 * hidden + 10));
    for (int l = 0; l < 3; l++) {
        int32_t nin = sizes[l], nout = sizes[l + 1];
        m->w[l] = malloc(sizeof(int64_t) * (size_t)(nin * nout));
        m->b[l] = malloc(sizeof(int64_t) * (size_t)nout);
        for (int32_t j = 0; j < nout; j++) {
            for (int32_t i = 0; i < nin; i++) {
                m->w[l][j * nin + i] = check(ag_leaf(c, uniform(-1, 1), 0), "leaf");
                m->params[m->n_params++] = m->w[l][j * nin + i];
            }
            m->b[l][j] = check(ag_leaf(c, 0.0, 1), "leaf");   /* Value(0) */
            m->params[m->n_params++] = m->b[l][j];
        }
    }
}

/* score = mlp(x) (x: 2 handles); the caller owns the returned handle. */
static int64_t mlp_apply(ag_ctx *c, const mlp *m, const int64_t *x) {
    int64_t buf[2][64], *in = (int64_t *)x, *out = buf[0];
    for (int l = 0; l < m->n_layers; l++) {
        out = buf[l % 2];
        int st = ag_layer(c, m->w[l], m->b[l], in, m->sizes[l], m->sizes[l + 1],
                          l < m->n_layers - 1, out);
        check(st, "layer");
        if (in != x) ag_release_many(c, in, (size_t)m->sizes[l]);
        in = out;
    }
    return out[0];
}

/* (1 + -y * score).relu() with y a node, as micrograd builds it. */
static int64_t hinge(ag_ctx *c, int64_t y, int64_t score) {
    int64_t ny = check(ag_apply_const(c, AG_MUL, y, -1, 1, 0), "neg");
    int64_t t = check(ag_apply(c, AG_MUL, ny, score, 0, 0), "mul");
    int64_t u = check(ag_apply_const(c, AG_ADD, t, 1, 1, 0), "add");
    int64_t h = check(ag_apply(c, AG_RELU, u, -1, 0, 0), "relu");
    ag_release(c, ny); ag_release(c, t); ag_release(c, u);
    return h;
}

/* acc + x, replacing the handle acc by the sum's. */
static int64_t add_into(ag_ctx *c, int64_t acc, int64_t x) {
    int64_t s = check(ag_apply(c, AG_ADD, acc, x, 0, 0), "add");
    ag_release(c, acc);
    return s;
}

/* micrograd's moons loss over n points: mean hinge + 1e-4 * sum(p * p). */
static int64_t moons_loss(ag_ctx *c, const mlp *m, int n) {
    int64_t data = check(ag_leaf(c, 0, 1), "leaf");   /* sum(...) */
    for (int i = 0; i < n; i++) {
        int64_t x[2] = {check(ag_leaf(c, uniform(-1, 2), 0), "leaf"),
                        check(ag_leaf(c, uniform(-1, 1), 0), "leaf")};
        int64_t y = check(ag_leaf(c, i % 2 ? 1 : -1, 1), "leaf");
        int64_t score = mlp_apply(c, m, x);
        data = add_into(c, data, hinge(c, y, score));
        ag_release(c, score); ag_release(c, x[0]); ag_release(c, x[1]);
        ag_release(c, y);
    }
    int64_t mean = check(ag_apply_const(c, AG_MUL, data, 1.0 / n, 0, 0), "mul");
    int64_t reg = check(ag_leaf(c, 0, 1), "leaf");
    for (int32_t i = 0; i < m->n_params; i++) {
        int64_t sq = check(ag_apply(c, AG_MUL, m->params[i], m->params[i], 0, 0), "mul");
        reg = add_into(c, reg, sq);
        ag_release(c, sq);
    }
    int64_t l2 = check(ag_apply_const(c, AG_MUL, reg, 1e-4, 0, 1), "mul");
    int64_t total = check(ag_apply(c, AG_ADD, mean, l2, 0, 0), "add");
    ag_release(c, data); ag_release(c, mean); ag_release(c, reg); ag_release(c, l2);
    return total;
}

/* h = h * 1.0001 + 0.001 from a leaf, `steps` times: 4 nodes a step, half
 * of them constant leaves (which a replay reads, not computes). */
static int64_t chain(ag_ctx *c, long steps) {
    int64_t h = check(ag_leaf(c, 1.0, 0), "leaf");
    for (long i = 0; i < steps; i++) {
        int64_t m = check(ag_apply_const(c, AG_MUL, h, 1.0001, 0, 0), "mul");
        ag_release(c, h);
        h = check(ag_apply_const(c, AG_ADD, m, 0.001, 0, 0), "add");
        ag_release(c, m);
    }
    return h;
}

/* The op mix: n starts with x_i = i/100 (i < 100); op k (k % 4)
 * appends 0: (n[-10].exp() + 1).log(); 1: a + b + c + d for n[-30:-10:5];
 * 2: n[-20] * n[-10]; 3: the softmax of n[-4:] (e_j = exp, inv = (e0 + e1 +
 * e2 + e3) ** -1, four outputs e_j * inv).  Returns the last node and
 * the 100 inputs in `inputs` (the caller's); every other handle is
 * released. */
static int64_t opmix(ag_ctx *c, int ops, int64_t inputs[HAND_INPUTS]) {
    int64_t *n = malloc(sizeof(int64_t) * (size_t)(100 + 4 * ops));
    int len = 0;
    for (int i = 0; i < 100; i++) n[len++] = check(ag_leaf(c, i / 100.0, 0), "leaf");
    for (int k = 0; k < ops; k++) {
        int64_t t, u, e[4], s, inv;
        switch (k % 4) {
        case 0:
            t = check(ag_apply(c, AG_EXP, n[len - 10], -1, 0, 0), "exp");
            u = check(ag_apply_const(c, AG_ADD, t, 1, 1, 0), "add");
            n[len++] = check(ag_apply(c, AG_LOG, u, -1, 0, 0), "log");
            ag_release(c, t); ag_release(c, u);
            break;
        case 1:
            t = check(ag_apply(c, AG_ADD, n[len - 30], n[len - 25], 0, 0), "add");
            u = check(ag_apply(c, AG_ADD, t, n[len - 20], 0, 0), "add");
            n[len] = check(ag_apply(c, AG_ADD, u, n[len - 15], 0, 0), "add");
            len++;
            ag_release(c, t); ag_release(c, u);
            break;
        case 2:
            n[len] = check(ag_apply(c, AG_MUL, n[len - 20], n[len - 10], 0, 0), "mul");
            len++;
            break;
        default:
            for (int j = 0; j < 4; j++)
                e[j] = check(ag_apply(c, AG_EXP, n[len - 4 + j], -1, 0, 0), "exp");
            s = check(ag_apply(c, AG_ADD, e[0], e[1], 0, 0), "add");
            for (int j = 2; j < 4; j++) s = add_into(c, s, e[j]);
            inv = check(ag_apply(c, AG_POW_CONST, s, -1, -1, 1), "pow");
            for (int j = 0; j < 4; j++) {
                n[len + j] = check(ag_apply(c, AG_MUL, e[j], inv, 0, 0), "mul");
                ag_release(c, e[j]);
            }
            len += 4;
            ag_release(c, s); ag_release(c, inv);
        }
    }
    int64_t root = n[len - 1];
    memcpy(inputs, n, sizeof(int64_t) * HAND_INPUTS);  /* the caller's */
    ag_release_many(c, n + HAND_INPUTS, (size_t)len - 1 - HAND_INPUTS);
    free(n);
    return root;
}

/* Median seconds of `passes` calls of pass(arg): one forward+backward. */
static double median_time(void (*pass)(void *), void *arg, int passes) {
    double *t = malloc(sizeof(double) * (size_t)passes);
    for (int r = 0; r < passes; r++) {
        double t0 = now();
        pass(arg);
        t[r] = now() - t0;
    }
    double med = median(t, passes);
    free(t);
    return med;
}

/* The passes median_time times: a captured graph's, the hand-written
 * tape's, the bare loop's (opmix_by_hand.h). */
static void graph_pass(void *g) {
    check(ag_graph_forward(g), "forward");
    ag_graph_backward(g);
}
static void hand_pass(void *t) { hand_tape_pass(t); }
static void bare_loop_pass(void *b) { bare_pass(b); }

/* Median seconds of `passes` forward+backward passes of g. */
static double pass_time(ag_graph *g, int passes) {
    return median_time(graph_pass, g, passes);
}

/* The replay's root value and input grads agree with the hand-written
 * tape's to 1e-9 (relative): the two compute the same thing. */
static void check_against_hand(ag_ctx *c, int64_t root, const int64_t *inputs,
                               const hand_tape *t) {
    double worst = fabs(creal(ag_read(c, root, AG_READ_DATA)) - t->v[t->n_values - 1]);
    for (int i = 0; i < HAND_INPUTS; i++) {
        double ours = creal(ag_read(c, inputs[i], AG_READ_GRAD)), hand = t->g[i];
        double err = fabs(ours - hand) / fmax(1.0, fabs(hand));
        if (err > worst) worst = err;
    }
    if (!(worst <= 1e-9)) {
        fprintf(stderr, "op mix: replay and hand-written tape disagree (%g)\n", worst);
        exit(1);
    }
}

/* The op mix's forward+backward, `passes` times: prints the median us per
 * pass and ns per node (one line each, read by benchmarks/vs_base.py), with
 * AG_GRAPH_INEXACT, and the same computation written by hand in C
 * (opmix_by_hand.h), interleaved pass set by pass set. */
static void bench_opmix(int passes) {
    ag_ctx *c = ag_ctx_new();
    int64_t inputs[HAND_INPUTS];
    int64_t root = opmix(c, 10000, inputs);
    hand_tape *t = hand_tape_new(10000);
    if (!t) { fprintf(stderr, "out of memory\n"); exit(1); }
    ag_graph *g;
    check(ag_graph_new(c, root, &g), "capture");
    int32_t n = ag_graph_size(g);
    bare_program *bare = bare_new(c, g);
    if (!bare) { fprintf(stderr, "op mix: reading the program back failed\n"); exit(1); }
    enum { ROUNDS = 5 };
    double exact[ROUNDS], inexact[ROUNDS], hand[ROUNDS], bare_t[ROUNDS];
    int per = passes / ROUNDS > 1 ? passes / ROUNDS : 1;
    for (int r = 0; r < ROUNDS; r++) {
        ag_graph_set_options(g, 0);
        ag_zero_grads(c, inputs, HAND_INPUTS);
        exact[r] = pass_time(g, 1);               /* one pass of summed grads */
        hand_tape_pass(t);
        check_against_hand(c, root, inputs, t);
        exact[r] = pass_time(g, per);
        ag_graph_set_options(g, AG_GRAPH_INEXACT);
        inexact[r] = pass_time(g, per);
        hand[r] = median_time(hand_pass, t, per);
        bare_t[r] = median_time(bare_loop_pass, bare, per);
    }
    if (!(fabs(bare->v[bare->n - 1] - t->v[t->n_values - 1]) <=
          1e-9 * fmax(1.0, fabs(t->v[t->n_values - 1])))) {
        fprintf(stderr, "op mix: the bare loop computes something else\n");
        exit(1);
    }
    double me = median(exact, ROUNDS), mi = median(inexact, ROUNDS),
           mh = median(hand, ROUNDS);
    printf("op mix (issue 12): %d nodes, forward+backward %8.1f us/pass %6.2f ns/node\n",
           n, me * 1e6, me * 1e9 / n);
    printf("op mix, inexact (cheaper powers): forward+backward %8.1f us/pass %6.2f ns/node\n",
           mi * 1e6, mi * 1e9 / n);
    printf("op mix by hand (C tape, %d ops): forward+backward %8.1f us/pass\n",
           t->n_ops, mh * 1e6);
    printf("  replay / hand-written: exact %.2fx, inexact %.2fx the time\n", me / mh,
           mi / mh);
    double mb = median(bare_t, ROUNDS);
    printf("op mix, a bare loop over the same program (no types, checks or arena): "
           "forward+backward %8.1f us/pass\n", mb * 1e6);
    bare_free(bare);
    hand_tape_free(t);
    ag_graph_free(g);
    ag_release_many(c, inputs, HAND_INPUTS);
    ag_release(c, root);
    ag_ctx_free(c);
}

/* Time ag_graph_forward + ag_graph_backward on the graph of root (c's),
 * and ag_backward for reference; print ns per node (against `target` when
 * it is > 0); free c. */
static void bench_single_row(const char *what, ag_ctx *c, int64_t root,
                             double target) {
    ag_graph *g;
    check(ag_graph_new(c, root, &g), "capture");
    int32_t n = ag_graph_size(g);
    double fwd[REPEATS], bwd[REPEATS], both[REPEATS], eager[REPEATS];
    for (int r = 0; r < REPEATS; r++) {    /* replay passes back to back */
        double t0 = now();
        check(ag_graph_forward(g), "forward");
        double t1 = now();
        ag_graph_backward(g);
        double t2 = now();
        fwd[r] = (t1 - t0) * 1e9 / n;
        bwd[r] = (t2 - t1) * 1e9 / n;
        both[r] = (t2 - t0) * 1e9 / n;
    }
    for (int r = 0; r < REPEATS; r++) {    /* then the eager reference */
        double t0 = now();
        ag_backward(c, root);
        eager[r] = (now() - t0) * 1e9 / n;
    }
    printf("single-row replay, %s: %d nodes\n", what, n);
    printf("  forward           %6.2f ns/node\n", median(fwd, REPEATS));
    printf("  backward          %6.2f ns/node\n", median(bwd, REPEATS));
    double fb = median(both, REPEATS);
    if (target > 0)
        printf("  forward+backward  %6.2f ns/node   (target <= %g: %s)\n", fb, target,
               fb <= target ? "ok" : "MISS");
    else
        printf("  forward+backward  %6.2f ns/node\n", fb);
    printf("  for reference, ag_backward (topological sort + pass): %.2f ns/node\n",
           median(eager, REPEATS));
    ag_graph_free(g);
    ag_release(c, root);
    ag_ctx_free(c);
}

static void bench_batched(int32_t hidden, int64_t rows) {
    ag_ctx *c = ag_ctx_new();
    mlp m;
    mlp_init(c, &m, hidden);
    int64_t in[3] = {check(ag_leaf(c, 0.0, 0), "leaf"),
                     check(ag_leaf(c, 0.0, 0), "leaf"),
                     check(ag_leaf(c, 0.0, 0), "leaf")};
    int64_t score = mlp_apply(c, &m, in);
    int64_t loss = hinge(c, in[2], score);
    ag_graph *g;
    check(ag_graph_new(c, loss, &g), "capture");
    int32_t n = ag_graph_size(g);
    double *x = malloc(sizeof(double) * (size_t)(3 * rows));
    double *out = malloc(sizeof(double) * (size_t)rows);
    double *sums = malloc(sizeof(double) * (size_t)m.n_params);
    for (int64_t r = 0; r < rows; r++) {
        x[3 * r] = uniform(-1, 2);
        x[3 * r + 1] = uniform(-1, 1);
        x[3 * r + 2] = r % 2 ? 1.0 : -1.0;
    }
    printf("batched replay, one-point hinge graph of MLP(2, [%d, %d, 1]): %d nodes, "
           "%lld rows, grads of %d parameters\n", hidden, hidden, n, (long long)rows,
           m.n_params);
    for (int threads = 1; threads <= 2; threads++) {
        double t[REPEATS];
        for (int r = 0; r < REPEATS; r++) {
            double t0 = now();
            check(ag_graph_run(g, in, 3, x, rows, 3, m.params, m.n_params, out,
                               sums, threads), "run");
            t[r] = (now() - t0) * 1e9 / ((double)n * (double)rows);
        }
        double med = median(t, REPEATS);
        printf("  threads=%d: forward+backward %6.3f ns per node-row   (target <= 0.3 "
               "on one thread: %s)\n", threads, med, med <= 0.3 ? "ok" : "MISS");
    }
    free(x); free(out); free(sums);
    ag_graph_free(g);
    ag_ctx_free(c);
}

/* ./bench_replay [points] runs everything; ./bench_replay PART [n] one part
 * (moons [points], chain, opmix [passes], batched), for an interleaved
 * comparison of two builds (benchmarks/vs_base.py). */
int main(int argc, char **argv) {
    const char *part = argc > 1 && !isdigit((unsigned char)argv[1][0]) ? argv[1] : "all";
    int all = strcmp(part, "all") == 0, arg = all ? 1 : 2;
    int n = argc > arg ? atoi(argv[arg]) : 0;
    if (all || strcmp(part, "moons") == 0) {
        int points = n > 0 ? n : 1541;
        ag_ctx *c = ag_ctx_new();
        mlp m;
        mlp_init(c, &m, 16);
        char what[64];
        snprintf(what, sizeof what, "moons loss over %d points", points);
        bench_single_row(what, c, moons_loss(c, &m, points), 4.0);  /* issue 12 */
    }
    if (all || strcmp(part, "chain") == 0) {
        ag_ctx *c = ag_ctx_new();
        bench_single_row("chain h*1.0001+0.001", c, chain(c, 250000), 0.0);
    }
    if (all || strcmp(part, "opmix") == 0) bench_opmix(!all && n > 0 ? n : 51);
    if (all || strcmp(part, "batched") == 0) {
        bench_batched(16, 100000);
        bench_batched(64, 20000);
    }
    return 0;
}
