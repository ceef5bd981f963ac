/*
 * test_handles.c -- node handles (autograd_c.h) through the public API only:
 * a handle whose node was freed is stale for every entry point that takes
 * one (AG_ERR_STALE, nothing changed -- above all not the node that took
 * its slot since), a number that is no handle is AG_ERR_ARG; ag_read's two
 * numbers; the names of opaque nodes (ag_node_name), freed with their node
 * (`make valgrind` / `make asan-c` see a leak).  No Python.  Run by
 * `make ctest`.
 */
#include <limits.h>
#include "check.h"
#include "node_view.h"

/* ---- what a failed call must leave alone --------------------------------- */

typedef node_view watch;

static watch watch_node(ag_ctx *c, int64_t h) {
    watch w = node_view_of(c, h);
    if (h >= 0) CHECK_EQ(w.info_status, AG_OK);
    return w;
}

static int unchanged(ag_ctx *c, const watch *was) {
    return node_view_unchanged(c, was);
}

/* A context, the bad handle under test, and what must stay as it is: the
 * live count, `other` (a live leaf the calls also get), `keep` (the node
 * now in the bad handle's slot, or -1) and `lone`, a leaf that holds one
 * reference (so a batch that wrongly released it would free it); g, a
 * graph of other (and of keep, when there is one), made before, so that
 * the calls under test allocate nothing. */
typedef struct {
    ag_ctx *c;
    int64_t bad, want;      /* the bad handle, the status it must give */
    int64_t other, keep, lone;
    ag_graph *g;
    watch w_other, w_keep, w_lone;
    int64_t live;
    const char *label;
} scene;

static scene scene_new(ag_ctx *c, int64_t bad, int64_t want, int64_t other,
                       int64_t keep, int64_t lone, ag_graph *g,
                       const char *label) {
    scene s = {c, bad, want, other, keep, lone, g, watch_node(c, other),
               watch_node(c, keep), watch_node(c, lone), live(c), label};
    return s;
}

/* A graph of `other + keep` (keep >= 0) or `relu(other)`, holding its root
 * alone. */
static ag_graph *graph_of(ag_ctx *c, int64_t other, int64_t keep) {
    int64_t r = keep >= 0 ? apply2(c, AG_ADD, other, keep)
                          : apply1(c, AG_RELU, other);
    ag_graph *g = NULL;
    CHECK_EQ(ag_graph_new(c, r, &g), AG_OK);
    CHECK_EQ(ag_release(c, r), AG_OK);
    if (!g) exit(1);
    return g;
}

/* got == want, and nothing changed. */
static void expect_at(const scene *s, int64_t got, int64_t want,
                      const char *call, int line) {
    char what[128];
    snprintf(what, sizeof what, "%s (bad handle %lld): %s", s->label,
             (long long)s->bad, call);
    check_i64_at(got, want, what, __FILE__, line);
    char also[192];
    snprintf(also, sizeof also, "%s: live count unchanged", what);
    check_i64_at(live(s->c), s->live, also, __FILE__, line);
    snprintf(also, sizeof also, "%s: `other` unchanged", what);
    check_at(unchanged(s->c, &s->w_other), also, __FILE__, line);
    snprintf(also, sizeof also, "%s: the slot's node unchanged", what);
    check_at(unchanged(s->c, &s->w_keep), also, __FILE__, line);
    snprintf(also, sizeof also, "%s: `lone` unchanged", what);
    check_at(unchanged(s->c, &s->w_lone), also, __FILE__, line);
}

#define EXPECT(s, call, want) expect_at((s), (call), (want), #call, __LINE__)

/* Every entry point that takes a handle, given s->bad: each must fail with
 * s->want and change nothing. */
static void bad_handle_everywhere(const scene *s) {
    ag_ctx *c = s->c;
    const int64_t h = s->bad, want = s->want, other = s->other, keep = s->keep;
    const int64_t lone = s->lone;

    EXPECT(s, ag_retain(c, h), want);
    EXPECT(s, ag_release(c, h), want);
    /* a batch with one bad handle releases none of the good ones */
    EXPECT(s, ag_release_many(c, &h, 1), want);
    const int64_t pair[2] = {lone, h}, rpair[2] = {h, lone};
    const int64_t trio[3] = {other, lone, h};
    EXPECT(s, ag_release_many(c, pair, 2), want);
    EXPECT(s, ag_release_many(c, rpair, 2), want);
    EXPECT(s, ag_release_many(c, trio, 3), want);
    if (keep >= 0) {
        const int64_t kpair[2] = {keep, h};
        EXPECT(s, ag_release_many(c, kpair, 2), want);
    }

    for (int what = AG_READ_DATA; what <= AG_READ_GRAD; what++) {
        double _Complex r = ag_read(c, h, what);
        EXPECT(s, (int64_t)cimag(r), want);
        EXPECT(s, creal(r) == 0.0 && !signbit(creal(r)), 1);
    }
    EXPECT(s, ag_set_data(c, h, 99.5, 0), want);
    EXPECT(s, ag_set_data(c, h, 99, 1), want);
    EXPECT(s, ag_set_grad(c, h, -99.5, 0), want);
    EXPECT(s, ag_set_grad(c, h, 0, 1), want);

    ag_node n = {123, 456, 789, 1.5, 77, 55};
    EXPECT(s, ag_node_info(c, h, &n), want);
    EXPECT(s, ag_copy_node(c, h, -1, -1), want);
    EXPECT(s, ag_backprop_node(c, h), want);
    EXPECT(s, ag_set_user_rule(c, h), want);
    EXPECT(s, n.op == 123 && n.a == 456 && n.b == 789 && n.k == 1.5 &&
                  n.flags == 77 && n.refs == 55, 1);             /* *out not written */
    char buf[16] = "untouched";
    EXPECT(s, ag_node_name(c, h, buf, sizeof buf), want);
    EXPECT(s, strcmp(buf, "untouched"), 0);
    EXPECT(s, ag_node_name(c, h, NULL, 0), want);

    EXPECT(s, ag_apply(c, AG_ADD, h, other, 0, 0), want);
    EXPECT(s, ag_apply(c, AG_MUL, other, h, 0, 0), want);
    EXPECT(s, ag_apply(c, AG_POW, h, h, 0, 0), want);
    EXPECT(s, ag_apply(c, AG_TANH, h, -1, 0, 0), want);
    EXPECT(s, ag_apply(c, AG_POW_CONST, h, -1, 2, 1), want);
    if (keep >= 0) {
        EXPECT(s, ag_apply(c, AG_ADD, keep, h, 0, 0), want);
        EXPECT(s, ag_apply(c, AG_MUL, h, keep, 0, 0), want);
    }
    EXPECT(s, ag_apply_const(c, AG_ADD, h, 2, 1, 0), want);
    EXPECT(s, ag_apply_const(c, AG_MUL, h, 0.5, 0, 1), want);

    if (h != -1) {                               /* -1: no child, for opaque */
        EXPECT(s, ag_opaque(c, 1, 1, h, -1, NULL), want);
        EXPECT(s, ag_opaque(c, 1, 1, -1, h, NULL), want);
        EXPECT(s, ag_opaque(c, 1.5, 0, h, other, "named"), want);  /* no leak */
        EXPECT(s, ag_opaque(c, 1.5, 0, other, h, "named too"), want);
    }

    EXPECT(s, ag_backward(c, h), want);

    /* ag_layer, one neuron of one input: the bad handle as w, b, or x */
    for (int pos = 0; pos < 3; pos++) {
        int64_t w = pos == 0 ? h : other, b = pos == 1 ? h : other;
        int64_t x = pos == 2 ? h : keep >= 0 ? keep : other, out = -7;
        EXPECT(s, ag_layer(c, &w, &b, &x, 1, 1, pos & 1, &out), want);
    }

    const int64_t v_pair[3] = {other, lone, h};
    const double v[3] = {0.125, -3.0, 8.0};
    EXPECT(s, ag_zero_grads(c, v_pair, 3), want);
    EXPECT(s, ag_add_grads(c, v_pair, 3, v), want);
    EXPECT(s, ag_sgd(c, v_pair, 3, 0.5), want);
    EXPECT(s, ag_zero_grads(c, &h, 1), want);
    EXPECT(s, ag_add_grads(c, &h, 1, v), want);
    EXPECT(s, ag_sgd(c, &h, 1, 0.5), want);
    if (keep >= 0) {
        const int64_t k_pair[2] = {keep, h};
        EXPECT(s, ag_zero_grads(c, k_pair, 2), want);
        EXPECT(s, ag_add_grads(c, k_pair, 2, v), want);
        EXPECT(s, ag_sgd(c, k_pair, 2, 0.5), want);
    }

    ag_graph *g = (ag_graph *)&n;                /* anything but NULL */
    EXPECT(s, ag_graph_new(c, h, &g), want);
    EXPECT(s, g == NULL, 1);

    /* s->g, a graph of other (and keep): h is none of its nodes, even
     * where h's slot is keep's */
    g = s->g;
    if (keep >= 0) CHECK(ag_graph_position(g, keep) >= 0);
    CHECK(ag_graph_position(g, other) >= 0);
    EXPECT(s, ag_graph_position(g, h), -1);
    double rows[2] = {0.25, -0.5}, out[2] = {7, 7}, sums[2] = {7, 7};
    const int64_t bad_in[2] = {other, h}, bad_grads[2] = {other, h};
    EXPECT(s, ag_graph_run(g, bad_in, 2, rows, 1, 2, NULL, 0, out, NULL, 1),
           want);
    EXPECT(s, ag_graph_run(g, &h, 1, rows, 1, 1, NULL, 0, out, NULL, 1),
           want);
    EXPECT(s, ag_graph_run(g, &other, 1, rows, 1, 1, bad_grads, 2, out, sums,
                           1), want);
    EXPECT(s, out[0] == 7 && out[1] == 7 && sums[0] == 7 && sums[1] == 7, 1);
    EXPECT(s, ag_graph_run(g, &other, 1, rows, 1, 1, &other, 1, out, sums, 1),
           AG_OK);                               /* the good handle works */
    EXPECT(s, out[0] != 7 && sums[0] != 7, 1);
}

/* ---- stale handles ------------------------------------------------------- */

/* The node h holds exactly one reference: releasing it frees it (and
 * nothing else), its handle then stale. */
static void release_last_at(ag_ctx *c, int64_t h, const char *file, int line) {
    int64_t before = live(c);
    check_i64_at(ag_release(c, h), AG_OK, "release", file, line);
    check_i64_at(live(c), before - 1, "one node freed by its release", file,
                 line);
    check_i64_at(ag_retain(c, h), AG_ERR_STALE, "freed", file, line);
}

#define RELEASE_LAST(c, h) release_last_at((c), (h), __FILE__, __LINE__)

/* A released handle, while its slot is free, then after the slot holds a
 * new node (the lowest free slot is reused), and a third one: stale every
 * time, for every entry point, and the slot's node never touched.  At the
 * end each node still holds exactly the one reference the test owns. */
static void test_stale_handle_every_entry_point(void) {
    ag_ctx *c = ctx_new();
    int64_t other = leaf(c, 1.5, 0), lone = leaf(c, -1, 1);
    CHECK_EQ(ag_set_grad(c, other, 0.25, 0), AG_OK);
    CHECK_EQ(ag_set_grad(c, lone, 0.5, 0), AG_OK);
    ag_graph *g = graph_of(c, other, -1);
    int64_t old = leaf(c, 3, 1);
    CHECK_EQ(ag_set_grad(c, old, 2.5, 0), AG_OK);
    CHECK_EQ(ag_release(c, old), AG_OK);
    CHECK_EQ(live(c), 3);                        /* other, lone, g's root */
    scene s = scene_new(c, old, AG_ERR_STALE, other, -1, lone, g, "slot free");
    bad_handle_everywhere(&s);
    ag_graph *g1 = g;                            /* kept: its root's slot
                                                  * stays taken */

    int64_t fresh = leaf(c, 7, 1);
    CHECK_EQ(slot_of(fresh), slot_of(old));      /* the slot, reused */
    CHECK(fresh != old);
    CHECK_EQ(ag_set_grad(c, fresh, -0.5, 0), AG_OK);
    g = graph_of(c, other, fresh);
    s = scene_new(c, old, AG_ERR_STALE, other, fresh, lone, g,
                  "slot reused by a leaf");
    bad_handle_everywhere(&s);
    ag_graph_free(g);
    CHECK_SAME(data_of(c, fresh), 7.0);
    CHECK_SAME(grad_of(c, fresh), -0.5);
    CHECK_EQ(flags_of(c, fresh), AG_DATA_INT);
    RELEASE_LAST(c, fresh);                      /* the lowest free slot */

    /* a third node in the slot: both earlier handles are stale */
    int64_t third = must(ag_opaque(c, 9.5, 0, other, -1, "third"), "opaque");
    CHECK_EQ(slot_of(third), slot_of(old));
    CHECK(third != old && third != fresh);
    g = graph_of(c, other, third);
    s = scene_new(c, old, AG_ERR_STALE, other, third, lone, g,
                  "third node, 1st handle");
    bad_handle_everywhere(&s);
    s = scene_new(c, fresh, AG_ERR_STALE, other, third, lone, g,
                  "third node, 2nd handle");
    bad_handle_everywhere(&s);
    ag_graph_free(g);
    RELEASE_LAST(c, third);                      /* other lives on */
    ag_graph_free(g1);
    RELEASE_LAST(c, other);
    RELEASE_LAST(c, lone);
    ctx_done(c);
}

/* A handle of the slot's live node with another generation -- one not
 * handed out yet, or the largest -- is stale too: the generation, not only
 * the slot, names the node. */
/* The end of a test of scenes: free the graph, give back the last
 * reference of each watched node (each one release frees it: its count
 * never moved), and the context must be empty. */
static void end_scenes(ag_ctx *c, ag_graph *g, int64_t keep, int64_t other,
                       int64_t lone) {
    ag_graph_free(g);
    RELEASE_LAST(c, keep);
    RELEASE_LAST(c, other);
    RELEASE_LAST(c, lone);
    ctx_done(c);
}

static void test_other_generation_is_stale(void) {
    ag_ctx *c = ctx_new();
    int64_t other = leaf(c, -2.0, 0), keep = pow_const(c, other, 3, 1);
    int64_t lone = leaf(c, 0.5, 0);
    ag_graph *g = graph_of(c, other, keep);
    const int64_t gens[] = {1, 2, 0x7fffffff};
    for (size_t i = 0; i < sizeof gens / sizeof gens[0]; i++) {
        int64_t bad = (int64_t)slot_of(keep) | gens[i] << 32;
        CHECK(bad != keep && bad >= 0);
        scene s = scene_new(c, bad, AG_ERR_STALE, other, keep, lone, g,
                            "another generation");
        bad_handle_everywhere(&s);
    }
    end_scenes(c, g, keep, other, lone);
}

/* ag_release_many checks every handle first: one stale handle anywhere in
 * the batch, and none is released; without it, all are. */
static void test_release_many_checks_all_first(void) {
    ag_ctx *c = ctx_new();
    int64_t hs[5];
    for (int i = 0; i < 5; i++) hs[i] = leaf(c, i, 1);
    int64_t dead = leaf(c, 0.5, 0);
    CHECK_EQ(ag_release(c, dead), AG_OK);
    for (int at = 0; at < 5; at++) {
        int64_t batch[5];
        memcpy(batch, hs, sizeof batch);
        batch[at] = dead;
        CHECK_EQ(ag_release_many(c, batch, 5), AG_ERR_STALE);
        CHECK_EQ(live(c), 5);
        batch[at] = -3;
        CHECK_EQ(ag_release_many(c, batch, 5), AG_ERR_ARG);
        CHECK_EQ(live(c), 5);
    }
    for (int i = 0; i < 5; i++) CHECK_SAME(data_of(c, hs[i]), (double)i);
    CHECK_EQ(ag_release_many(c, hs, 5), AG_OK);
    CHECK_EQ(live(c), 0);
    CHECK_EQ(ag_release_many(c, hs, 5), AG_ERR_STALE);  /* all stale now */
    ctx_done(c);
}

/* A whole graph freed by its root's release: every handle into it is stale,
 * children freed iteratively included; a retained child outlives it. */
static void test_freed_graph_handles_stale(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 2, 1);
    int64_t sq = apply2(c, AG_MUL, x, x);
    int64_t t = apply1(c, AG_TANH, sq);
    int64_t top = must(ag_apply_const(c, AG_ADD, t, 1, 1, 0), "const");
    ag_node n;
    CHECK_EQ(ag_node_info(c, top, &n), AG_OK);
    int64_t konst = n.b;                         /* a child handle, from info */
    CHECK_SAME(data_of(c, konst), 1.0);
    CHECK_EQ(ag_release(c, sq), AG_OK);
    CHECK_EQ(ag_release(c, t), AG_OK);
    CHECK_EQ(live(c), 5);
    CHECK_EQ(ag_release(c, top), AG_OK);         /* frees top, const, t, sq */
    CHECK_EQ(live(c), 1);
    const int64_t gone[] = {top, konst, t, sq};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(cimag(ag_read(c, gone[i], AG_READ_DATA)), AG_ERR_STALE);
        CHECK_EQ(ag_node_info(c, gone[i], &n), AG_ERR_STALE);
    }
    CHECK_SAME(data_of(c, x), 2.0);              /* the caller's x lives */
    CHECK_EQ(ag_release(c, x), AG_OK);
    ctx_done(c);
}

/* ---- numbers that are no handle ------------------------------------------ */

/* Negative numbers and slots beyond those ever used: AG_ERR_ARG everywhere
 * (whatever the generation bits). */
static void test_no_handle_numbers_every_entry_point(void) {
    ag_ctx *c = ctx_new();
    int64_t other = leaf(c, 0.75, 0), keep = leaf(c, -4, 1);
    int64_t lone = leaf(c, 2, 1);
    CHECK_EQ(ag_set_grad(c, keep, 1.25, 0), AG_OK);
    ag_graph *g = graph_of(c, other, keep);      /* its root: slot 3 */
    const int64_t numbers[] = {
        -1, -2, -7, INT64_MIN, INT64_MIN + 1,
        4,                                   /* the first slot never used */
        (int64_t)3 << 32 | 4,                /* ... with a generation     */
        5, 1 << 30, (int64_t)UINT32_MAX, INT64_MAX,
    };
    CHECK_EQ(live(c), 4);
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        scene s = scene_new(c, numbers[i], AG_ERR_ARG, other, keep, lone, g,
                            "no handle");
        bad_handle_everywhere(&s);
    }
    end_scenes(c, g, keep, other, lone);
}

/* ---- ag_read ------------------------------------------------------------- */

static void test_read_value_and_type(void) {
    ag_ctx *c = ctx_new();
    int64_t i = leaf(c, 7, 1), f = leaf(c, -0.0, 0);
    double _Complex r = ag_read(c, i, AG_READ_DATA);
    CHECK_SAME(creal(r), 7.0);
    CHECK_SAME(cimag(r), 1.0);                   /* a Python int */
    r = ag_read(c, i, AG_READ_GRAD);
    CHECK_SAME(creal(r), 0.0);                   /* a new node's grad: int 0 */
    CHECK_SAME(cimag(r), 1.0);
    r = ag_read(c, f, AG_READ_DATA);
    CHECK(creal(r) == 0.0 && signbit(creal(r))); /* -0.0 kept */
    CHECK_SAME(cimag(r), 0.0);                   /* a float */
    CHECK_EQ(ag_set_grad(c, f, 2.5, 0), AG_OK);
    r = ag_read(c, f, AG_READ_GRAD);
    CHECK(creal(r) == 2.5 && cimag(r) == 0.0);
    CHECK_EQ(ag_set_data(c, i, -3, 1), AG_OK);
    r = ag_read(c, i, AG_READ_DATA);
    CHECK(creal(r) == -3.0 && cimag(r) == 1.0);
    CHECK_EQ(ag_set_data(c, f, NAN, 0), AG_OK);
    CHECK(isnan(creal(ag_read(c, f, AG_READ_DATA))));
    /* the imaginary part agrees with ag_node_info's flags */
    int64_t m = apply2(c, AG_MUL, i, i);
    CHECK_EQ(ag_backward(c, m), AG_OK);
    const int64_t all[] = {i, f, m};
    for (int k = 0; k < 3; k++) {
        int fl = flags_of(c, all[k]);
        CHECK_EQ(cimag(ag_read(c, all[k], AG_READ_DATA)),
                 (fl & AG_DATA_INT) != 0);
        CHECK_EQ(cimag(ag_read(c, all[k], AG_READ_GRAD)),
                 (fl & AG_GRAD_INT) != 0);
    }
    CHECK(grad_of(c, i) == -6.0 && grad_int(c, i));
    /* a `what` that is neither: AG_ERR_ARG, real part 0 */
    const int bad_what[] = {2, -1, 100, INT_MAX, INT_MIN};
    for (size_t k = 0; k < sizeof bad_what / sizeof bad_what[0]; k++) {
        r = ag_read(c, i, bad_what[k]);
        CHECK_EQ(cimag(r), AG_ERR_ARG);
        CHECK_SAME(creal(r), 0.0);
    }
    CHECK_SAME(data_of(c, i), -3.0);             /* nothing changed */
    int64_t hs[] = {m, i, f};
    CHECK_EQ(ag_release_many(c, hs, 3), AG_OK);
    /* stale and negative handles (whatever `what`): a status, real part 0 */
    r = ag_read(c, i, AG_READ_DATA);
    CHECK(cimag(r) == AG_ERR_STALE && creal(r) == 0.0);
    r = ag_read(c, i, 5);
    CHECK(cimag(r) < 0 && creal(r) == 0.0);
    r = ag_read(c, -1, AG_READ_GRAD);
    CHECK(cimag(r) == AG_ERR_ARG && creal(r) == 0.0);
    ctx_done(c);
}

/* ---- the facade's context: the short calls equal the full ones ---------- */

/* Two nodes are alike: op, data and their types (ag_node_info, ag_read). */
static int same_node(ag_ctx *c, int64_t x, int64_t y) {
    ag_node nx, ny;
    if (ag_node_info(c, x, &nx) || ag_node_info(c, y, &ny)) return 0;
    double _Complex rx = ag_read(c, x, AG_READ_DATA), ry = ag_read(c, y, AG_READ_DATA);
    return nx.op == ny.op && nx.flags == ny.flags &&
           memcmp(&rx, &ry, sizeof rx) == 0;
}

static void test_facade_context_calls(void) {
    double _Complex r = ag_read_data(0);      /* no context named yet */
    CHECK_EQ(cimag(r), AG_ERR_ARG);
    CHECK_EQ(ag_float_leaf(1.0), AG_ERR_ARG);
    CHECK_EQ(ag_apply2(AG_ADD, 0, 0), AG_ERR_ARG);
    CHECK_EQ(ag_eager_mul(0, 0), AG_ERR_ARG);
    CHECK_EQ(ag_eager_relu(0), AG_ERR_ARG);
    CHECK_EQ(ag_set_float_data(0, 1.0), AG_ERR_ARG);
    ag_ctx *c = ctx_new();
    ag_set_facade_ctx(c);
    int64_t a = ag_float_leaf(1.5), n = ag_int_leaf(3), a2 = leaf(c, 1.5, 0);
    CHECK(same_node(c, a, a2));
    CHECK_SAME(ag_float_data(a), 1.5);
    CHECK(isnan(ag_float_data(n)));            /* an int: the typed read */
    r = ag_read_data(n);
    CHECK(creal(r) == 3.0 && cimag(r) == 1.0);
    CHECK(isnan(ag_float_grad(n)) && cimag(ag_read_grad(n)) == 1.0);  /* int 0 */
    int64_t made[20], want[20];
    int k = 0;
    made[k] = ag_apply1(AG_TANH, a);           want[k++] = apply1(c, AG_TANH, a2);
    made[k] = ag_apply2(AG_MUL, a, n);         want[k++] = apply2(c, AG_MUL, a2, n);
    /* one function per op: the same nodes as ag_apply's */
    made[k] = ag_eager_add(a, n);              want[k++] = apply2(c, AG_ADD, a2, n);
    made[k] = ag_eager_mul(n, a);              want[k++] = apply2(c, AG_MUL, n, a2);
    made[k] = ag_eager_pow(a, n);              want[k++] = apply2(c, AG_POW, a2, n);
    made[k] = ag_eager_relu(a);                want[k++] = apply1(c, AG_RELU, a2);
    made[k] = ag_eager_tanh(a);                want[k++] = apply1(c, AG_TANH, a2);
    made[k] = ag_eager_exp(n);                 want[k++] = apply1(c, AG_EXP, n);
    made[k] = ag_eager_log(a);                 want[k++] = apply1(c, AG_LOG, a2);
    made[k] = ag_eager_sigmoid(a);             want[k++] = apply1(c, AG_SIGMOID, a2);
    made[k] = ag_eager_abs(n);                 want[k++] = apply1(c, AG_ABS, n);
    made[k] = ag_apply_k(AG_ADD | AG_K_IS_INT, n, 2);
    want[k++] = ag_apply_const(c, AG_ADD, n, 2, 1, 0);
    made[k] = ag_apply_k(AG_POW | AG_K_FIRST, a, 2.0);
    want[k++] = ag_apply_const(c, AG_POW, a2, 2.0, 0, 1);
    for (int j = 0; j < k; j++) {
        CHECK(made[j] >= 0 && want[j] >= 0);
        CHECK(same_node(c, made[j], want[j]));
    }
    CHECK_EQ(ag_set_float_data(a2, 2.5), AG_OK);      /* the setters */
    CHECK_EQ(ag_set_data(c, a, 2.5, 0), AG_OK);
    CHECK_EQ(ag_set_float_grad(a, -1.0), AG_OK);
    CHECK_EQ(ag_set_grad(c, a2, -1.0, 0), AG_OK);
    CHECK(same_node(c, a, a2));
    CHECK(ag_float_grad(a) == -1.0 && ag_float_grad(a2) == -1.0);
    CHECK_EQ(ag_apply_k(AG_LOG, a, 1.0), AG_ERR_ARG);  /* not a binary op */
    CHECK_EQ(ag_apply2(AG_ADD, a, -5), AG_ERR_ARG);
    CHECK_EQ(ag_eager_add(a, -5), AG_ERR_ARG);
    int64_t z = ag_float_leaf(0.0);
    CHECK_EQ(ag_apply_k(AG_POW, z, -1.0), AG_ERR_ZERODIV);  /* errors as ag_apply */
    CHECK_EQ(ag_eager_log(z), AG_ERR_DOMAIN);
    CHECK_EQ(ag_release(c, z), AG_OK);
    int64_t after = ag_float_leaf(0.0);         /* the context is still usable */
    CHECK(after >= 0);
    CHECK_EQ(ag_release(c, after), AG_OK);
    int64_t hs[] = {a, n, a2};
    CHECK_EQ(ag_release_many(c, hs, 3), AG_OK);
    CHECK_EQ(ag_release_many(c, made, k), AG_OK);
    CHECK_EQ(ag_release_many(c, want, k), AG_OK);
    CHECK_EQ(cimag(ag_read_data(a)), AG_ERR_STALE);
    CHECK_EQ(ag_eager_relu(a), AG_ERR_STALE);
    CHECK_EQ(ag_eager_mul(n, a2), AG_ERR_STALE);
    ag_set_facade_ctx(NULL);
    ctx_done(c);
}

/* ---- names --------------------------------------------------------------- */

static void check_name_at(ag_ctx *c, int64_t h, const char *want,
                          const char *file, int line) {
    char buf[64];
    memset(buf, 'x', sizeof buf);
    int64_t n = ag_node_name(c, h, buf, sizeof buf);
    check_i64_at(n, (int64_t)strlen(want), "ag_node_name's length", file, line);
    check_at(strcmp(buf, want) == 0, "ag_node_name's text", file, line);
}

#define CHECK_NAME(c, h, want) \
    check_name_at((c), (h), (want), __FILE__, __LINE__)

static void test_node_name_round_trip(void) {
    ag_ctx *c = ctx_new();
    char src[] = "relu'd sum";
    const int64_t len = (int64_t)strlen(src);
    int64_t a = leaf(c, 1, 1);
    int64_t o = must(ag_opaque(c, 2.5, 0, a, -1, src), "opaque");
    memset(src, '?', strlen(src));               /* the name is a copy */
    CHECK_NAME(c, o, "relu'd sum");
    /* too little room: a cut copy, NUL terminated, and the full length */
    char buf[16];
    for (size_t cap = 0; cap <= (size_t)len + 2; cap++) {
        memset(buf, '#', sizeof buf);
        CHECK_EQ(ag_node_name(c, o, buf, cap), len);
        if (cap == 0) {
            CHECK(buf[0] == '#');                /* nothing written */
            continue;
        }
        size_t n = cap <= (size_t)len ? cap - 1 : (size_t)len;
        CHECK(memcmp(buf, "relu'd sum", n) == 0 && buf[n] == '\0');
        CHECK(buf[n + 1] == '#');                /* nothing past the NUL */
    }
    CHECK_EQ(ag_node_name(c, o, NULL, 0), len);  /* the length alone */
    /* the name changes nothing else of the node */
    ag_node n;
    CHECK_EQ(ag_node_info(c, o, &n), AG_OK);
    CHECK(n.op == AG_OPAQUE && n.a == a && n.b == -1 && n.flags == AG_GRAD_INT);
    CHECK_SAME(data_of(c, o), 2.5);
    /* no name: "" -- NULL or "" for an opaque node, and every other node */
    int64_t none = must(ag_opaque(c, 1, 1, -1, -1, NULL), "opaque");
    int64_t empty = must(ag_opaque(c, 1, 1, a, a, ""), "opaque");
    int64_t sum = apply2(c, AG_ADD, o, a);
    int64_t konst = must(ag_apply_const(c, AG_MUL, a, 3, 1, 0), "const");
    const int64_t nameless[] = {none, empty, sum, konst, a};
    for (int i = 0; i < 5; i++) CHECK_NAME(c, nameless[i], "");
    CHECK_EQ(ag_node_name(c, none, NULL, 0), 0);
    /* a graph's replay leaves names alone */
    ag_graph *g;
    CHECK_EQ(ag_graph_new(c, sum, &g), AG_OK);
    CHECK_EQ(ag_graph_forward(g), AG_OK);
    CHECK_EQ(ag_graph_backward(g), AG_OK);
    ag_graph_free(g);
    CHECK_NAME(c, o, "relu'd sum");
    int64_t hs[] = {o, none, empty, sum, konst, a};
    CHECK_EQ(ag_release_many(c, hs, 6), AG_OK);
    ctx_done(c);
}

/* A name far longer than any buffer: the full length comes back, and a
 * buffer that size gets all of it. */
static void test_long_node_name(void) {
    ag_ctx *c = ctx_new();
    enum { LONG = 100000 };
    char *name = malloc(LONG + 1), *buf = malloc(LONG + 1);
    if (!name || !buf) { printf("FATAL: out of memory\n"); exit(1); }
    for (int i = 0; i < LONG; i++) name[i] = (char)('a' + i % 26);
    name[LONG] = '\0';
    int64_t o = must(ag_opaque(c, 0, 1, -1, -1, name), "opaque");
    char small[8];
    CHECK_EQ(ag_node_name(c, o, small, sizeof small), LONG);
    CHECK(memcmp(small, name, 7) == 0 && small[7] == '\0');
    memset(buf, 0, LONG + 1);
    CHECK_EQ(ag_node_name(c, o, buf, LONG + 1), LONG);
    CHECK(strcmp(buf, name) == 0);
    CHECK_EQ(ag_node_name(c, o, buf, LONG), LONG);  /* one short: cut */
    CHECK(buf[LONG - 1] == '\0' && memcmp(buf, name, LONG - 1) == 0);
    CHECK_EQ(ag_release(c, o), AG_OK);
    free(name);
    free(buf);
    ctx_done(c);
}

/* Names go with their node: freed with it (directly, as a child freed
 * iteratively, or by ag_ctx_free while it lives -- valgrind and ASan see a
 * leak), never inherited by the next node in the slot, never made by a
 * failed ag_opaque. */
static void test_names_freed_with_node(void) {
    ag_ctx *c = ctx_new();
    /* a chain of named opaque nodes, each the child of the next */
    enum { CHAIN = 2000 };
    int64_t h = -1;
    for (int i = 0; i < CHAIN; i++) {
        char name[32];
        snprintf(name, sizeof name, "link %d", i);
        int64_t next = must(ag_opaque(c, i, 1, h, -1, name), "opaque");
        if (h >= 0) CHECK_EQ(ag_release(c, h), AG_OK);
        h = next;
    }
    CHECK_EQ(live(c), CHAIN);
    CHECK_NAME(c, h, "link 1999");
    ag_node n;
    CHECK_EQ(ag_node_info(c, h, &n), AG_OK);
    CHECK_NAME(c, n.a, "link 1998");
    CHECK_EQ(ag_release(c, h), AG_OK);           /* frees all, names too */
    CHECK_EQ(live(c), 0);
    /* the slots come back nameless */
    for (int i = 0; i < 3; i++) {
        int64_t l = leaf(c, i, 1);
        int64_t u = must(ag_opaque(c, i, 1, l, -1, NULL), "opaque");
        CHECK_NAME(c, l, "");
        CHECK_NAME(c, u, "");
        int64_t hs[] = {u, l};
        CHECK_EQ(ag_release_many(c, hs, 2), AG_OK);
    }
    /* a named node in a freed slot's place, then an unnamed one */
    int64_t a = must(ag_opaque(c, 1, 1, -1, -1, "first"), "opaque");
    CHECK_EQ(ag_release(c, a), AG_OK);
    int64_t b = must(ag_opaque(c, 1, 1, -1, -1, NULL), "opaque");
    CHECK_EQ(slot_of(b), slot_of(a));
    CHECK_NAME(c, b, "");
    CHECK_EQ(ag_node_name(c, a, NULL, 0), AG_ERR_STALE);
    /* failed ag_opaque calls keep no copy */
    ag_set_limit(c, 1);
    CHECK_EQ(ag_opaque(c, 1, 1, b, -1, "over the limit"), AG_ERR_LIMIT);
    ag_set_limit(c, 0);
    CHECK_EQ(ag_opaque(c, 1, 1, a, -1, "stale child"), AG_ERR_STALE);
    CHECK_EQ(ag_opaque(c, 1, 1, b, -5, "bad child"), AG_ERR_ARG);
    CHECK_EQ(live(c), 1);
    CHECK_EQ(ag_release(c, b), AG_OK);
    ctx_done(c);
    /* named nodes still alive when the context goes: ag_ctx_free frees
     * their names (no ctx_done: the nodes are left alive on purpose) */
    ag_ctx *d = ctx_new();
    int64_t x = must(ag_opaque(d, 1, 1, -1, -1, "alive at the end"), "opaque");
    int64_t y = must(ag_opaque(d, 2, 1, x, x, "its parent"), "opaque");
    CHECK_EQ(ag_release(d, x), AG_OK);           /* y keeps x */
    CHECK_EQ(live(d), 2);
    CHECK_NAME(d, y, "its parent");
    ag_ctx_free(d);
}

/* ---- handles and slots --------------------------------------------------- */

/* A handle is its slot in the low 32 bits and the slot's generation above:
 * the first nodes take slots 0, 1, ...; a freed slot comes back (lowest
 * first) under a new generation; children come back from ag_node_info as
 * the handles their constructors returned. */
static void test_handle_is_slot_and_generation(void) {
    ag_ctx *c = ctx_new();
    int64_t h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = leaf(c, i, 1);
        CHECK_EQ(slot_of(h[i]), i);
        CHECK_EQ(h[i] >> 32, 0);                 /* a fresh slot's first */
    }
    CHECK_EQ(ag_release(c, h[2]), AG_OK);
    CHECK_EQ(ag_release(c, h[1]), AG_OK);
    int64_t p = apply2(c, AG_ADD, h[0], h[3]);   /* slot 1: lowest free */
    int64_t q = leaf(c, 9, 1);                   /* slot 2 */
    CHECK_EQ(slot_of(p), 1);
    CHECK_EQ(slot_of(q), 2);
    CHECK(p >> 32 != h[1] >> 32 && q >> 32 != h[2] >> 32);
    CHECK(p >= 0 && q >= 0);
    ag_node n;
    CHECK_EQ(ag_node_info(c, p, &n), AG_OK);
    CHECK(n.a == h[0] && n.b == h[3]);
    CHECK_SAME(data_of(c, p), 3.0);
    /* a slot used and freed many times: every old handle stays stale */
    int64_t olds[50];
    for (int i = 0; i < 50; i++) {
        olds[i] = leaf(c, i, 1);
        CHECK_EQ(slot_of(olds[i]), 4);
        CHECK_EQ(ag_release(c, olds[i]), AG_OK);
    }
    for (int i = 0; i < 50; i++) {
        CHECK_EQ(ag_retain(c, olds[i]), AG_ERR_STALE);
        for (int j = 0; j < i; j++) CHECK(olds[i] != olds[j]);
    }
    int64_t hs[] = {p, q, h[0], h[3]};
    CHECK_EQ(ag_release_many(c, hs, 4), AG_OK);
    ctx_done(c);
}

static const test_case tests[] = {
    {"stale_handle_every_entry_point", test_stale_handle_every_entry_point},
    {"other_generation_is_stale", test_other_generation_is_stale},
    {"release_many_checks_all_first", test_release_many_checks_all_first},
    {"freed_graph_handles_stale", test_freed_graph_handles_stale},
    {"no_handle_numbers_every_entry_point",
     test_no_handle_numbers_every_entry_point},
    {"read_value_and_type", test_read_value_and_type},
    {"facade_context_calls", test_facade_context_calls},
    {"node_name_round_trip", test_node_name_round_trip},
    {"long_node_name", test_long_node_name},
    {"names_freed_with_node", test_names_freed_with_node},
    {"handle_is_slot_and_generation", test_handle_is_slot_and_generation},
};

int main(void) {
    return run_tests(tests, (int)(sizeof tests / sizeof tests[0]));
}
