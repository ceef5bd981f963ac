/*
 * bench_engine.c -- ns per node to build, backpropagate and free a graph of
 * about 10^6 nodes through the public C API.  Run by `make cbench`.
 *
 *   bench_engine [repeats [nodes]]      defaults: 7 repeats, 1000000 nodes
 *
 * Each graph gets its own context and one untimed warm-up run (which grows
 * the arena), then `repeats` timed runs; the table shows medians.  "build"
 * counts every call that makes the graph, handle releases included, as a
 * caller would make them; "free" is the one ag_release of the root that
 * frees the whole graph.  Targets: build <= 10 ns/node, backward <= 5.
 * Each graph runs in a locked context (ag_ctx_new: what the Python facade
 * uses) and in an AG_CTX_ONE_THREAD one (no lock: a single-threaded C
 * caller's choice).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "autograd_c.h"

enum { DEFAULT_REPEATS = 7, DEFAULT_NODES = 1000000, MAX_REPEATS = 101 };
#define TARGET_BUILD_NS 10.0
#define TARGET_BACKWARD_NS 5.0

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int64_t must(int64_t h) {
    if (h < 0) {
        fprintf(stderr, "bench_engine: %s\n", ag_status_str((int)h));
        exit(1);
    }
    return h;
}

/* h = h * 1.0001 + 0.001 from a leaf: 4 nodes a step (2 consts). */
static int64_t build_chain(ag_ctx *c, long nodes) {
    int64_t h = must(ag_leaf(c, 1.0, 0));
    for (long i = 0; i < (nodes - 1) / 4; i++) {
        int64_t m = must(ag_apply_const(c, AG_MUL, h, 1.0001, 0, 0));
        ag_release(c, h);
        h = must(ag_apply_const(c, AG_ADD, m, 0.001, 0, 0));
        ag_release(c, m);
    }
    return h;
}

/* x0*x0 + x1*x1 + ...: 3 nodes a term (leaf, square, sum). */
static int64_t build_sum_of_squares(ag_ctx *c, long nodes) {
    int64_t acc = must(ag_leaf(c, 0, 1));
    for (long i = 0; i < (nodes - 1) / 3; i++) {
        int64_t x = must(ag_leaf(c, 0.001 * (double)i, 0));
        int64_t sq = must(ag_apply(c, AG_MUL, x, x, 0.0, 0));
        ag_release(c, x);
        int64_t s = must(ag_apply(c, AG_ADD, acc, sq, 0.0, 0));
        ag_release(c, acc);
        ag_release(c, sq);
        acc = s;
    }
    return acc;
}

typedef struct {
    const char *name;
    int64_t (*build)(ag_ctx *, long);
} graph;

typedef struct { double build, backward, free; } per_node;  /* ns */

static per_node run_once(ag_ctx *c, const graph *g, long nodes, long *made) {
    double t0 = now_ns();
    int64_t root = g->build(c, nodes);
    double t1 = now_ns();
    ag_backward(c, root);
    double t2 = now_ns();
    ag_stats s;
    ag_get_stats(c, &s);
    *made = (long)s.live_nodes;
    double t3 = now_ns();
    ag_release(c, root);
    double t4 = now_ns();
    double n = (double)*made;
    return (per_node){(t1 - t0) / n, (t2 - t1) / n, (t4 - t3) / n};
}

static int cmp_double(const void *p, const void *q) {
    double a = *(const double *)p, b = *(const double *)q;
    return (a > b) - (a < b);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* After a median: a blank when it meets its target, "!" when it misses. */
static const char *mark(double value, double target) {
    return value <= target ? " " : "!";
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : DEFAULT_REPEATS;
    long nodes = argc > 2 ? atol(argv[2]) : DEFAULT_NODES;
    if (repeats < 1 || repeats > MAX_REPEATS || nodes < 4) {
        fprintf(stderr, "usage: bench_engine [repeats 1..%d [nodes >= 4]]\n",
                MAX_REPEATS);
        return 2;
    }
    const graph graphs[] = {
        {"chain h*1.0001+0.001", build_chain},
        {"sum of squares", build_sum_of_squares},
    };
    const struct { const char *name; int options; } contexts[] = {
        {"locked", 0},
        {"one-thread", AG_CTX_ONE_THREAD},
    };
    printf("autograd_c C engine: ns per node, median of %d runs "
           "(after 1 warm-up), ~%ld-node graphs\n\n", repeats, nodes);
    printf("%-22s %-11s %8s %9s %9s %8s\n", "graph", "context", "nodes",
           "build", "backward", "free");
    int missed = 0;
    const size_t n_contexts = sizeof contexts / sizeof contexts[0];
    const size_t runs = n_contexts * (sizeof graphs / sizeof graphs[0]);
    for (size_t run = 0; run < runs; run++) {
        size_t gi = run / n_contexts, ci = run % n_contexts;
        ag_ctx *c = ag_ctx_new_opt(contexts[ci].options);
        if (!c) { fprintf(stderr, "bench_engine: no memory\n"); return 1; }
        long made;
        run_once(c, &graphs[gi], nodes, &made);  /* warm-up: grows the arena */
        double build[MAX_REPEATS], back[MAX_REPEATS], freeing[MAX_REPEATS];
        for (int r = 0; r < repeats; r++) {
            per_node t = run_once(c, &graphs[gi], nodes, &made);
            build[r] = t.build;
            back[r] = t.backward;
            freeing[r] = t.free;
        }
        ag_ctx_free(c);
        double mb = median(build, repeats), mk = median(back, repeats);
        printf("%-22s %-11s %8ld %8.2f%s %8.2f%s %8.2f\n", graphs[gi].name,
               contexts[ci].name, made, mb, mark(mb, TARGET_BUILD_NS), mk,
               mark(mk, TARGET_BACKWARD_NS), median(freeing, repeats));
        missed += mb > TARGET_BUILD_NS || mk > TARGET_BACKWARD_NS;
    }
    printf("\ntargets: build <= %.0f ns/node, backward <= %.0f ns/node: %s\n",
           TARGET_BUILD_NS, TARGET_BACKWARD_NS,
           missed ? "missed where marked !" : "met");
    return 0;
}
