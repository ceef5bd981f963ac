/*
 * check.h -- the C tests' harness (tests/c/test_*.c, one binary each): the
 * CHECK macros, which count and report failures, helpers over the public
 * API, and run_tests() for main.  Each test makes its own context and
 * leaves it empty (live count 0) before freeing it (ctx_done), so a run is
 * also clean under valgrind.
 */
#ifndef AG_TEST_CHECK_H
#define AG_TEST_CHECK_H

#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd_c.h"

/* ---- harness -------------------------------------------------------------
 * CHECK* count and report failures; call them from one thread at a time. */

static int n_checks, n_failed;
static const char *current_test = "";

static inline void check_at(int ok, const char *what, const char *file, int line) {
    n_checks++;
    if (ok) return;
    n_failed++;
    printf("  FAIL %s (%s:%d): %s\n", current_test, file, line, what);
}

/* got == want exactly (inf, nan included) or within rel * max(1, |want|). */
static inline void check_near_at(double got, double want, double rel,
                          const char *what, const char *file, int line) {
    int ok = got == want || (isnan(got) && isnan(want)) ||
             fabs(got - want) <= rel * fmax(1.0, fabs(want));
    char msg[256];
    snprintf(msg, sizeof msg, "%s: got %.17g, want %.17g", what, got, want);
    check_at(ok, msg, file, line);
}

static inline void check_i64_at(int64_t got, int64_t want, const char *what,
                         const char *file, int line) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: got %lld, want %lld", what, (long long)got,
             (long long)want);
    check_at(got == want, msg, file, line);
}

#define CHECK(cond) check_at((cond), #cond, __FILE__, __LINE__)
#define CHECK_EQ(got, want) \
    check_i64_at((got), (want), #got, __FILE__, __LINE__)
#define CHECK_NEAR(got, want) \
    check_near_at((got), (want), 1e-12, #got, __FILE__, __LINE__)
#define CHECK_SAME(got, want) \
    check_near_at((got), (want), 0.0, #got, __FILE__, __LINE__)

/* ---- helpers over the public API ---------------------------------------- */

/* A constructor's handle, or the end of the run: later calls would use it. */
static inline int64_t must(int64_t h, const char *what) {
    if (h < 0) {
        printf("  FATAL %s: %s returned %lld (%s)\n", current_test, what,
               (long long)h, ag_status_str((int)h));
        exit(1);
    }
    return h;
}

static ag_ctx *ctx_new(void) {
    ag_ctx *c = ag_ctx_new();
    if (!c) { printf("FATAL: ag_ctx_new returned NULL\n"); exit(1); }
    return c;
}

static inline ag_stats stats(ag_ctx *c) {
    ag_stats s;
    ag_get_stats(c, &s);
    return s;
}

static inline int64_t live(ag_ctx *c) { return (int64_t)stats(c).live_nodes; }

/* Every test ends here: nothing may be left alive. */
static inline void ctx_done(ag_ctx *c) {
    CHECK_EQ(live(c), 0);
    ag_ctx_free(c);
}

static inline int64_t leaf(ag_ctx *c, double v, int is_int) {
    return must(ag_leaf(c, v, is_int), "ag_leaf");
}

static inline int64_t apply2(ag_ctx *c, int op, int64_t a, int64_t b) {
    return must(ag_apply(c, op, a, b, 0.0, 0), "ag_apply");
}

static inline int64_t apply1(ag_ctx *c, int op, int64_t a) {
    return must(ag_apply(c, op, a, -1, 0.0, 0), "ag_apply");
}

static inline int64_t pow_const(ag_ctx *c, int64_t a, double k, int k_int) {
    return must(ag_apply(c, AG_POW_CONST, a, -1, k, k_int), "ag_apply pow");
}

/* terms[0] + terms[1] + ... + terms[n-1], added left to right: a new
 * handle for the caller (the terms stay the caller's too). */
static inline int64_t sum_of(ag_ctx *c, const int64_t *terms, int n) {
    int64_t t = terms[0];
    ag_retain(c, t);
    for (int i = 1; i < n; i++) {
        int64_t s = apply2(c, AG_ADD, t, terms[i]);
        ag_release(c, t);
        t = s;
    }
    return t;
}

static inline int is_binary(int op) { return ag_op_arity(op) == 2; }

/* The slot a handle names (its low 32 bits). */
static inline uint32_t slot_of(int64_t h) { return (uint32_t)h; }

/* A node's value / gradient (ag_read's real part).  The node must be live:
 * a failed read is a failed check (and reads 0).  These helpers (and
 * flags_of, data_int, grad_int) count as checks: one thread at a time. */
static inline double read_at(ag_ctx *c, int64_t h, int what, const char *file,
                             int line) {
    double _Complex r = ag_read(c, h, what);
    check_at(cimag(r) == 0.0 || cimag(r) == 1.0, "ag_read of a live node",
             file, line);
    return creal(r);
}

#define data_of(c, h) read_at((c), (h), AG_READ_DATA, __FILE__, __LINE__)
#define grad_of(c, h) read_at((c), (h), AG_READ_GRAD, __FILE__, __LINE__)

/* AG_DATA_INT | AG_GRAD_INT | AG_K_INT of a live node (ag_node_info). */
static inline int flags_at(ag_ctx *c, int64_t h, const char *file, int line) {
    ag_node n;
    int st = ag_node_info(c, h, &n);
    check_at(st == AG_OK, "ag_node_info of a live node", file, line);
    return st == AG_OK ? n.flags : 0;
}

#define flags_of(c, h) flags_at((c), (h), __FILE__, __LINE__)

static inline int data_int(ag_ctx *c, int64_t h) {
    return (flags_of(c, h) & AG_DATA_INT) != 0;
}

static inline int grad_int(ag_ctx *c, int64_t h) {
    return (flags_of(c, h) & AG_GRAD_INT) != 0;
}

typedef struct { const char *name; void (*fn)(void); } test_case;

/* Run the tests in order, print one line each and the totals; returns the
 * process's exit status (1 when a check failed). */
static inline int run_tests(const test_case *tests, int n) {
    int failed_tests = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);         /* lines show up as they come */
    for (int i = 0; i < n; i++) {
        int before = n_failed;
        current_test = tests[i].name;
        tests[i].fn();
        int bad = n_failed > before;
        failed_tests += bad;
        printf("%-34s %s\n", tests[i].name, bad ? "FAILED" : "ok");
    }
    printf("%d checks, %d failed checks\n", n_checks, n_failed);
    printf("ctest: %d passed, %d failed\n", n - failed_tests, failed_tests);
    return failed_tests ? 1 : 0;
}

#endif /* AG_TEST_CHECK_H */
