/*
 * test_oom.c -- every out-of-memory path of the public API, as SQLite tests
 * them: an allocator (ag_set_allocator) that fails the n-th allocation, for
 * n = 1, 2, ... until a whole scripted session runs without reaching it.
 * The session touches every allocating call (context, arena growth, node
 * names, layers, capture, batched runs with threads, held-reference scans,
 * trim).  The call that meets the failure must return AG_ERR_NOMEM (NULL
 * for ag_ctx_new) and change nothing -- live count, capacity, every value
 * and grad -- and the same call made again must then succeed; the session
 * must end with the numbers of a session without failure.  (ag_trim only
 * shrinks: where that fails it keeps the bigger block and reports nothing.)
 */
#include "check.h"

/* ---- an allocator that fails the n-th allocation ------------------------- */

static long alloc_count, fail_at;  /* fail_at: 0 never */
static int failed;                 /* set when it has failed, once */
static int in_trim, failed_in_trim;  /* ag_trim's shrinking may fail: it
                                      * then keeps the bigger block */

static void *test_malloc(size_t size, void *user) {
    (void)user;
    if (++alloc_count == fail_at) {
        failed = 1;
        return NULL;
    }
    return malloc(size);
}

static void *test_realloc(void *p, size_t size, void *user) {
    (void)user;
    if (++alloc_count == fail_at) {
        failed = 1;
        failed_in_trim = in_trim;
        return NULL;
    }
    return realloc(p, size);
}

static void test_free(void *p, void *user) {
    (void)user;
    free(p);
}

/* ---- the session ------------------------------------------------------------- */

/* What a session ends with, to compare against the run without failures. */
typedef struct {
    double values[8];
    int64_t live_after_build;
    int steps_failed;          /* calls that met the failure */
} outcome;

/* Everything observable about the nodes of hs: data, grad, live count. */
typedef struct {
    double data[16], grad[16];
    int64_t live;
    size_t capacity;
} snapshot;

static snapshot snap(ag_ctx *c, const int64_t *hs, int n) {
    snapshot s = {{0}, {0}, live(c), stats(c).capacity};
    for (int i = 0; i < n && i < 16; i++) {
        s.data[i] = data_of(c, hs[i]);
        s.grad[i] = grad_of(c, hs[i]);
    }
    return s;
}

static int same(const snapshot *a, const snapshot *b, int n) {
    if (a->live != b->live || a->capacity != b->capacity) return 0;
    for (int i = 0; i < n && i < 16; i++)
        if (memcmp(&a->data[i], &b->data[i], 8) || memcmp(&a->grad[i], &b->grad[i], 8))
            return 0;
    return 1;
}

/* Run one step: if it meets the failure it must return AG_ERR_NOMEM with
 * nothing changed (the nodes hs[0..n) watched); then it is run again, and
 * must succeed.  A macro, as steps have many shapes. */
#define STEP(call)                                                          \
    do {                                                                    \
        snapshot before_ = snap(c, watch, n_watch);                         \
        int was_ = failed;                                                  \
        int64_t st_ = (call);                                               \
        if (failed && !was_) {                                              \
            out->steps_failed++;                                            \
            check_i64_at(st_, AG_ERR_NOMEM, #call, __FILE__, __LINE__);     \
            snapshot after_ = snap(c, watch, n_watch);                      \
            check_at(same(&before_, &after_, n_watch),                      \
                     "a failed " #call " changed nothing", __FILE__,        \
                     __LINE__);                                             \
            st_ = (call);                                                   \
        }                                                                   \
        check_at(st_ >= 0, #call " succeeds", __FILE__, __LINE__);         \
    } while (0)

static void session(outcome *out) {
    ag_ctx *c = ag_ctx_new();
    if (!c) {                      /* the failure met the context itself */
        out->steps_failed++;
        c = ag_ctx_new();
        if (!c) { check_at(0, "ag_ctx_new again", __FILE__, __LINE__); return; }
    }
    int64_t watch[16] = {0};
    int n_watch = 0;
    int64_t h;
    STEP(h = ag_leaf(c, 0.5, 0));
    int64_t x = h;
    watch[n_watch++] = x;
    STEP(h = ag_leaf(c, -1.5, 0));
    int64_t w = h;
    watch[n_watch++] = w;
    /* a chain long enough to make the arena grow twice */
    int64_t t;
    STEP(t = ag_apply(c, AG_MUL, x, w, 0, 0));
    for (int i = 0; i < 9000; i++) {
        STEP(h = ag_apply_const(c, AG_ADD, t, 0.001, 0, i % 2));
        ag_release(c, t);
        t = h;
    }
    watch[n_watch++] = t;
    int64_t named;
    STEP(named = ag_opaque(c, 2.0, 0, x, t, "a user op with a name"));
    watch[n_watch++] = named;
    int64_t ws[6], bs[2], xs[3] = {x, w, t}, outs[2];
    for (int i = 0; i < 6; i++) STEP(ws[i] = ag_leaf(c, 0.1 * (i + 1), 0));
    for (int i = 0; i < 2; i++) STEP(bs[i] = ag_leaf(c, 0.0, 0));
    STEP(ag_layer(c, ws, bs, xs, 3, 2, 1, outs));
    int64_t root;
    STEP(root = ag_apply(c, AG_ADD, outs[0], outs[1], 0, 0));
    watch[n_watch++] = root;
    STEP(ag_backward(c, root));
    out->live_after_build = live(c);
    ag_graph *g = NULL;
    STEP(ag_graph_new(c, root, &g));
    STEP(ag_graph_forward(g));
    STEP(ag_graph_backward(g));
    enum { ROWS = 600 };
    double rows[ROWS], run_out[ROWS], sums[2];
    for (int r = 0; r < ROWS; r++) rows[r] = r * 0.01;
    int64_t grads[2] = {w, ws[0]};
    STEP(ag_graph_run(g, &x, 1, rows, ROWS, 1, grads, 2, run_out, sums, 2));
    STEP(ag_graph_run(g, &x, 1, rows, ROWS, 1, grads, 2, run_out, sums, 1));
    int64_t held[64];
    uint32_t counts[64];
    STEP(ag_held_refs(c, held, counts, 64));
    char name[64];
    STEP(ag_node_name(c, named, name, sizeof name));
    out->values[0] = data_of(c, root);
    out->values[1] = grad_of(c, w);
    out->values[2] = run_out[ROWS - 1];
    out->values[3] = sums[0];
    out->values[4] = data_of(c, t);
    out->values[5] = (double)strlen(name);
    ag_graph_free(g);
    int64_t all[] = {x, w, t, named, bs[0], bs[1], outs[0], outs[1], root};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ag_release(c, all[i]);
    for (int i = 0; i < 6; i++) ag_release(c, ws[i]);
    in_trim = 1;
    ag_trim(c);
    in_trim = 0;
    out->values[6] = (double)live(c);
    ctx_done(c);
}

/* The session with the n-th allocation failing, for every n. */
static void test_every_allocation_failure_is_nomem_and_changes_nothing(void) {
    ag_allocator a = {test_malloc, test_realloc, test_free, NULL};
    CHECK_EQ(ag_set_allocator(&a), AG_OK);
    outcome clean = {{0}, 0, 0};
    alloc_count = 0, fail_at = 0, failed = 0;
    session(&clean);
    long total = alloc_count;
    CHECK(total > 50);
    CHECK_EQ(clean.steps_failed, 0);
    for (long n = 1; n <= total; n++) {
        outcome o = {{0}, 0, 0};
        alloc_count = 0, fail_at = n, failed = 0, failed_in_trim = 0;
        session(&o);
        char what[64];
        snprintf(what, sizeof what, "allocation %ld failed", n);
        check_at(failed && o.steps_failed == !failed_in_trim, what, __FILE__,
                 __LINE__);
        check_at(memcmp(o.values, clean.values, sizeof o.values) == 0 &&
                     o.live_after_build == clean.live_after_build,
                 what, __FILE__, __LINE__);
    }
    printf("  %ld allocation sites of one session failed in turn\n", total);
    CHECK_EQ(ag_set_allocator(NULL), AG_OK);
}

static void test_allocator_must_be_whole(void) {
    ag_allocator a = {test_malloc, NULL, test_free, NULL};
    CHECK_EQ(ag_set_allocator(&a), AG_ERR_ARG);
    ag_ctx *c = ctx_new();          /* the C library's is still in use */
    int64_t x = leaf(c, 1.0, 0);
    ag_release(c, x);
    ctx_done(c);
}

static const test_case tests[] = {
    {"every_allocation_failure_is_nomem", test_every_allocation_failure_is_nomem_and_changes_nothing},
    {"allocator_must_be_whole", test_allocator_must_be_whole},
};

int main(void) {
    return run_tests(tests, (int)(sizeof tests / sizeof tests[0]));
}
