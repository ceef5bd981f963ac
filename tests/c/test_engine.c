/*
 * test_engine.c -- unit tests of the eager engine (values, types, errors,
 * backward, arena, threads) through the public API only (autograd_c.h).
 * No Python.  Run by `make ctest`; exits non-zero when any check fails.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

/* ---- values, int flags and errors of single ops -------------------------- */

/* op(x, y); for POW_CONST y is the exponent k, for unary ops it is unused.
 * status != 0: the call must fail with it and create nothing. */
typedef struct {
    int op;
    double x; int x_int;
    double y; int y_int;
    int status;
    double want; int want_int;
} apply_case;

static const apply_case apply_cases[] = {
    {AG_ADD, 2, 1, 3, 1, 0, 5, 1},
    {AG_ADD, 2, 1, 0.5, 0, 0, 2.5, 0},
    {AG_MUL, 3, 1, -4, 1, 0, -12, 1},
    {AG_MUL, -1, 1, 0, 1, 0, 0, 1},          /* int 0 is +0.0 */
    {AG_MUL, 2, 1, 1.5, 0, 0, 3.0, 0},
    {AG_MUL, 1e200, 0, 1e200, 0, 0, INFINITY, 0},  /* float * is no error */
    {AG_RELU, -2.5, 0, 0, 0, 0, 0, 1},       /* micrograd: int 0 */
    {AG_RELU, 2.5, 0, 0, 0, 0, 2.5, 0},
    {AG_RELU, 3, 1, 0, 0, 0, 3, 1},
    {AG_RELU, -3, 1, 0, 0, 0, 0, 1},
    {AG_POW_CONST, 2, 1, 3, 1, 0, 8, 1},
    {AG_POW_CONST, 2, 1, 0, 1, 0, 1, 1},
    {AG_POW_CONST, -3, 1, 3, 1, 0, -27, 1},
    {AG_POW_CONST, 2, 1, -1, 1, 0, 0.5, 0},  /* int ** -1 is float */
    {AG_POW_CONST, 2, 1, 2.0, 0, 0, 4.0, 0},
    {AG_POW_CONST, 2.0, 0, 3, 1, 0, 8.0, 0},
    {AG_POW_CONST, 4.0, 0, 0.5, 0, 0, 2.0, 0},
    {AG_POW, 2, 1, 10, 1, 0, 1024, 1},
    {AG_POW, -2.0, 0, 3, 1, 0, -8.0, 0},
    {AG_TANH, 0, 1, 0, 0, 0, 0.0, 0},
    {AG_EXP, 0, 1, 0, 0, 0, 1.0, 0},
    {AG_LOG, 1, 1, 0, 0, 0, 0.0, 0},
    {AG_SIGMOID, 0, 1, 0, 0, 0, 0.5, 0},
    {AG_ABS, -3, 1, 0, 0, 0, 3, 1},          /* abs(int) is an int */
    {AG_ABS, 0, 1, 0, 0, 0, 0, 1},
    {AG_ABS, -2.5, 0, 0, 0, 0, 2.5, 0},
    {AG_ABS, -0.0, 0, 0, 0, 0, 0.0, 0},
    {AG_ABS, -INFINITY, 0, 0, 0, 0, INFINITY, 0},
    /* errors */
    {AG_POW_CONST, 0.0, 0, -1, 1, AG_ERR_ZERODIV, 0, 0},
    {AG_POW_CONST, 0, 1, -2, 1, AG_ERR_ZERODIV, 0, 0},
    {AG_POW, 0.0, 0, -1.0, 0, AG_ERR_ZERODIV, 0, 0},
    {AG_EXP, 1000.0, 0, 0, 0, AG_ERR_OVERFLOW, 0, 0},
    {AG_POW_CONST, 10.0, 0, 400, 1, AG_ERR_OVERFLOW, 0, 0},
    {AG_POW, 10.0, 0, 400.0, 0, AG_ERR_OVERFLOW, 0, 0},
    {AG_LOG, 0.0, 0, 0, 0, AG_ERR_DOMAIN, 0, 0},
    {AG_LOG, -1, 1, 0, 0, AG_ERR_DOMAIN, 0, 0},
    {AG_POW_CONST, -8.0, 0, 0.5, 0, AG_ERR_COMPLEX, 0, 0},
    {AG_POW, -8.0, 0, 0.25, 0, AG_ERR_COMPLEX, 0, 0},
    {AG_MUL, 1e200, 1, 1e200, 1, AG_ERR_INT_RANGE, 0, 0},
    {AG_ADD, 1e308, 1, 1e308, 1, AG_ERR_INT_RANGE, 0, 0},
    {AG_POW_CONST, 10, 1, 400, 1, AG_ERR_INT_RANGE, 0, 0},
    {AG_POW_CONST, 2, 1, 5000, 1, AG_ERR_INT_RANGE, 0, 0},
};

/* One case by ag_apply (y a leaf), or, when by_const and the op is binary,
 * by ag_apply_const (y a constant: two nodes on success). */
static void run_apply_case(ag_ctx *c, int i, int by_const) {
    const apply_case *t = &apply_cases[i];
    char what[96];
    snprintf(what, sizeof what, "apply case %d (op %d)%s", i, t->op,
             by_const ? " by ag_apply_const" : "");
    int64_t x = leaf(c, t->x, t->x_int);
    int64_t y = is_binary(t->op) && !by_const ? leaf(c, t->y, t->y_int) : -1;
    int64_t before = live(c);
    int64_t id = by_const ? ag_apply_const(c, t->op, x, t->y, t->y_int, 0)
                          : ag_apply(c, t->op, x, y, t->y, t->y_int);
    if (t->status) {
        check_i64_at(id, t->status, what, __FILE__, __LINE__);
        check_i64_at(live(c), before, what, __FILE__, __LINE__);
    } else {
        int64_t z = must(id, what);
        check_i64_at(live(c), before + (by_const ? 2 : 1), what, __FILE__,
                     __LINE__);
        check_near_at(data_of(c, z), t->want, 0.0, what, __FILE__, __LINE__);
        check_i64_at(data_int(c, z), t->want_int, what, __FILE__, __LINE__);
        if (t->want_int && t->want == 0)
            check_at(!signbit(data_of(c, z)), what, __FILE__, __LINE__);
        ag_release(c, z);
    }
    ag_release(c, x);
    if (y >= 0) ag_release(c, y);
}

static void test_apply_values_and_errors(void) {
    ag_ctx *c = ctx_new();
    int n = (int)(sizeof apply_cases / sizeof apply_cases[0]);
    for (int i = 0; i < n; i++) {
        run_apply_case(c, i, 0);
        if (is_binary(apply_cases[i].op)) run_apply_case(c, i, 1);
    }
    ctx_done(c);
}

static void test_leaf_flags(void) {
    ag_ctx *c = ctx_new();
    int64_t i = leaf(c, 7, 1), f = leaf(c, 7.0, 0);
    CHECK_EQ(flags_of(c, i), AG_DATA_INT | AG_GRAD_INT);  /* grad: int 0 */
    CHECK_EQ(flags_of(c, f), AG_GRAD_INT);
    CHECK_SAME(data_of(c, i), 7.0);
    CHECK_SAME(grad_of(c, f), 0.0);
    ag_node node;
    ag_node_info(c, f, &node);
    CHECK(node.op == AG_LEAF && node.a == -1 && node.b == -1);
    ag_set_data(c, f, 2.5, 0);
    ag_set_grad(c, f, 3, 1);
    CHECK_SAME(data_of(c, f), 2.5);
    CHECK_EQ(flags_of(c, f), AG_GRAD_INT);
    ag_set_grad(c, i, 0.25, 0);
    CHECK_EQ(flags_of(c, i), AG_DATA_INT);
    ag_release(c, i);
    ag_release(c, f);
    ctx_done(c);
}

/* a + 2 and 2 + a as micrograd builds them: a const leaf as the other child. */
static void test_apply_const_children(void) {
    ag_ctx *c = ctx_new();
    int64_t a = leaf(c, 3, 1);
    for (int first = 0; first < 2; first++) {
        int64_t z = must(ag_apply_const(c, AG_POW, a, 2, 1, first), "const");
        ag_node n;
        ag_node_info(c, z, &n);
        int64_t k = first ? n.a : n.b;
        CHECK(n.op == AG_POW && (first ? n.b : n.a) == a);
        CHECK_SAME(data_of(c, k), 2.0);
        CHECK(data_int(c, k));
        CHECK_SAME(data_of(c, z), first ? 8.0 : 9.0);  /* 2**3, 3**2 */
        ag_release(c, z);
        CHECK_EQ(live(c), 1);                 /* the const went with z */
    }
    ag_release(c, a);
    ctx_done(c);
}

static void test_bad_arguments(void) {
    ag_ctx *c = ctx_new();
    int64_t a = leaf(c, 1.0, 0), dead = leaf(c, 2.0, 0);
    ag_release(c, dead);
    int64_t before = live(c);
    const int bad_ops[] = {AG_LEAF, AG_OPAQUE, AG_OP_COUNT, -1, 99};
    for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
        CHECK_EQ(ag_apply(c, bad_ops[i], a, a, 2.0, 1), AG_ERR_ARG);
        CHECK_EQ(ag_apply_const(c, bad_ops[i], a, 2.0, 1, 0), AG_ERR_ARG);
    }
    /* a released handle is stale; numbers that are no handle are bad */
    const int64_t bad_ids[] = {dead, -1, -7, 1 << 30};
    const int want[] = {AG_ERR_STALE, AG_ERR_ARG, AG_ERR_ARG, AG_ERR_ARG};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        CHECK_EQ(ag_apply(c, AG_TANH, bad_ids[i], -1, 0, 0), want[i]);
        CHECK_EQ(ag_apply(c, AG_ADD, a, bad_ids[i], 0, 0), want[i]);
        CHECK_EQ(ag_apply(c, AG_MUL, bad_ids[i], a, 0, 0), want[i]);
        CHECK_EQ(ag_apply_const(c, AG_ADD, bad_ids[i], 1, 1, 0), want[i]);
        CHECK_EQ(ag_backward(c, bad_ids[i]), want[i]);
    }
    CHECK_EQ(grad_of(c, a), 0.0);                /* backward changed nothing */
    CHECK_EQ(ag_apply_const(c, AG_RELU, a, 1, 1, 0), AG_ERR_ARG);  /* unary */
    CHECK_EQ(ag_opaque(c, 1.0, 0, a, dead, NULL), AG_ERR_STALE);
    CHECK_EQ(ag_opaque(c, 1.0, 0, 1 << 30, -1, NULL), AG_ERR_ARG);
    CHECK_EQ(ag_opaque(c, 1.0, 0, -1, a, NULL), AG_ERR_ARG);  /* b without a */
    int64_t zero = must(ag_leaf(c, -0.0, 1), "leaf"), opq;   /* no int -0 */
    CHECK(!signbit(data_of(c, zero)));
    opq = must(ag_opaque(c, -0.0, 1, zero, -1, NULL), "opaque");
    CHECK(!signbit(data_of(c, opq)));
    ag_release(c, opq);                   /* x * -0: the constant is 0 */
    opq = must(ag_apply_const(c, AG_MUL, zero, -0.0, 1, 0), "apply_const");
    ag_node constant;
    CHECK(ag_node_info(c, opq, &constant) == AG_OK);
    CHECK(!signbit(data_of(c, constant.b)));
    ag_release(c, opq);
    ag_release(c, zero);
    CHECK_EQ(live(c), before);
    ag_release(c, a);
    ctx_done(c);
}

static void test_status_strings(void) {
    const char *unknown = ag_status_str(12345);
    CHECK(unknown != NULL);
    CHECK(strcmp(ag_status_str(AG_OK), "ok") == 0);
    for (int s = AG_OK; s >= AG_ERR_FORMAT; s--) {
        const char *text = ag_status_str(s);
        check_at(text && text[0] && strcmp(text, unknown) != 0,
                 "a known status has its own text", __FILE__, __LINE__);
        for (int t = AG_OK; t > s; t--)
            check_at(strcmp(text, ag_status_str(t)) != 0,
                     "status texts are distinct", __FILE__, __LINE__);
    }
    const int outside[] = {1, AG_ERR_FORMAT - 1, -1000};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++)
        CHECK(strcmp(ag_status_str(outside[i]), unknown) == 0);
}

/* ---- backward ------------------------------------------------------------ */

/* z = op(x, y) on floats; hand-computed dz/dx and dz/dy (y: exponent of
 * POW_CONST, unused by unary ops). */
typedef struct {
    int op;
    double x, y; int y_int;
    double gx, gy;
} grad_case;

static const grad_case grad_cases[] = {
    {AG_MUL, 3.0, -2.0, 0, -2.0, 3.0},
    {AG_ADD, 3.0, -2.0, 0, 1.0, 1.0},
    {AG_POW, 2.0, 3.0, 0, 12.0, 5.545177444479562},  /* 8 ln 2 */
    {AG_POW_CONST, 2.0, 3, 1, 12.0, 0},
    {AG_POW_CONST, 2.0, -1, 1, -0.25, 0},
    {AG_POW_CONST, 4.0, 0.5, 0, 0.25, 0},
    {AG_RELU, 1.5, 0, 0, 1.0, 0},
    {AG_RELU, -1.5, 0, 0, 0.0, 0},
    {AG_TANH, 0.5, 0, 0, 0.7864477329659274, 0},     /* 1 - tanh^2 */
    {AG_EXP, 0.5, 0, 0, 1.6487212707001282, 0},
    {AG_LOG, 0.5, 0, 0, 2.0, 0},
    {AG_SIGMOID, 0.5, 0, 0, 0.2350037122015945, 0},  /* s (1 - s) */
    {AG_ABS, -1.5, 0, 0, -1.0, 0},                   /* sign(x) */
    {AG_ABS, 2.0, 0, 0, 1.0, 0},
    {AG_ABS, 0.0, 0, 0, 0.0, 0},                     /* 0 at 0 */
};

static void test_grads_of_ops(void) {
    ag_ctx *c = ctx_new();
    for (size_t i = 0; i < sizeof grad_cases / sizeof grad_cases[0]; i++) {
        const grad_case *t = &grad_cases[i];
        int64_t x = leaf(c, t->x, 0);
        int64_t y = is_binary(t->op) ? leaf(c, t->y, t->y_int) : -1;
        int64_t z = must(ag_apply(c, t->op, x, y, t->y, t->y_int), "op");
        CHECK_EQ(ag_backward(c, z), AG_OK);
        char what[64];
        snprintf(what, sizeof what, "grad case %zu: dz/dx", i);
        check_near_at(grad_of(c, x), t->gx, 1e-12, what, __FILE__, __LINE__);
        if (y >= 0) {
            snprintf(what, sizeof what, "grad case %zu: dz/dy", i);
            check_near_at(grad_of(c, y), t->gy, 1e-12, what, __FILE__,
                          __LINE__);
            ag_release(c, y);
        }
        CHECK(grad_of(c, z) == 1.0 && grad_int(c, z));
        ag_release(c, z);
        ag_release(c, x);
    }
    ctx_done(c);
}

/* micrograd keeps int grads int: d(x*y)/dx = y, (x**2)' = 2x, relu' = bool. */
static void test_grad_int_flags(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 3, 1), y = leaf(c, 4, 1);
    int64_t m = apply2(c, AG_MUL, x, y);
    ag_backward(c, m);
    CHECK(grad_of(c, x) == 4 && grad_int(c, x));
    CHECK(grad_of(c, y) == 3 && grad_int(c, y));
    const struct { int op; double k; int k_int; double g; int g_int; } r[] = {
        {AG_POW_CONST, 2, 1, 6, 1},
        {AG_POW_CONST, -1, 1, -1.0 / 9, 0},
        {AG_RELU, 0, 0, 1, 1},
        {AG_TANH, 0, 0, 1 - tanh(3.0) * tanh(3.0), 0},
        {AG_ABS, 0, 0, 1, 1},                /* sign(3) * int 1: an int */
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        int64_t u = leaf(c, 3, 1);
        int64_t z = must(ag_apply(c, r[i].op, u, -1, r[i].k, r[i].k_int), "op");
        ag_backward(c, z);
        CHECK_NEAR(grad_of(c, u), r[i].g);
        CHECK_EQ(grad_int(c, u), r[i].g_int);
        ag_release(c, z);
        ag_release(c, u);
    }
    ag_release(c, m);
    ag_release(c, x);
    ag_release(c, y);
    ctx_done(c);
}

/* f = (a*b + b**2) * a: a and b each reach f by two paths. */
static void test_shared_nodes(void) {
    ag_ctx *c = ctx_new();
    int64_t a = leaf(c, 2.0, 0), b = leaf(c, -3.0, 0);
    int64_t ab = apply2(c, AG_MUL, a, b), bb = pow_const(c, b, 2, 1);
    int64_t e = apply2(c, AG_ADD, ab, bb), f = apply2(c, AG_MUL, e, a);
    ag_backward(c, f);
    CHECK_SAME(data_of(c, f), 6.0);
    CHECK_SAME(grad_of(c, a), -3.0);          /* 2ab + b^2 */
    CHECK_SAME(grad_of(c, b), -8.0);          /* a^2 + 2ab */
    CHECK_SAME(grad_of(c, e), 2.0);
    int64_t ids[] = {f, e, bb, ab, b, a};
    ag_release_many(c, ids, 6);
    /* one child twice: x*x and x+x */
    int64_t x = leaf(c, 5.0, 0);
    int64_t sq = apply2(c, AG_MUL, x, x), twice = apply2(c, AG_ADD, x, x);
    ag_backward(c, sq);
    CHECK_SAME(grad_of(c, x), 10.0);
    ag_set_grad(c, x, 0, 1);
    ag_backward(c, twice);
    CHECK_SAME(grad_of(c, x), 2.0);
    int64_t ids2[] = {sq, twice, x};
    ag_release_many(c, ids2, 3);
    ctx_done(c);
}

/* Grads are never zeroed: z = x*y + x, twice (values as micrograd gives). */
/* Contributions to one node are summed in reverse depth-first post-order
 * (first operand first), whatever order the nodes were made in: x gets
 * x*c3's share, then x*c2's, then x*c1's.  With c1 = 1, c2 = 1e16,
 * c3 = -1e16 that order gives 1; the order of making (c3 first) gives 0. */
static void test_backward_sums_in_depth_first_order(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 2.0, 0);
    int64_t p3 = must(ag_apply_const(c, AG_MUL, x, -1e16, 0, 0), "p3");
    int64_t p1 = must(ag_apply_const(c, AG_MUL, x, 1.0, 0, 0), "p1");
    int64_t p2 = must(ag_apply_const(c, AG_MUL, x, 1e16, 0, 0), "p2");
    int64_t s = apply2(c, AG_ADD, p1, p2);
    int64_t root = apply2(c, AG_ADD, s, p3);
    CHECK_EQ(ag_backward(c, root), AG_OK);
    CHECK_SAME(grad_of(c, x), 1.0);
    ag_graph *g;
    CHECK_EQ(ag_graph_new(c, root, &g), AG_OK);  /* replay: the same order */
    CHECK_EQ(ag_graph_forward(g), AG_OK);    /* op nodes' grads: int 0 */
    ag_set_grad(c, x, 0.0, 1);
    CHECK_EQ(ag_graph_backward(g), AG_OK);
    CHECK_SAME(grad_of(c, x), 1.0);
    ag_graph_free(g);
    int64_t ids[] = {p3, p1, p2, s, root, x};
    ag_release_many(c, ids, 6);
    ctx_done(c);
}

static void test_backward_twice_accumulates(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 3, 1), y = leaf(c, 4, 1);
    int64_t m = apply2(c, AG_MUL, x, y), z = apply2(c, AG_ADD, m, x);
    ag_backward(c, z);
    CHECK(grad_of(c, x) == 5 && grad_of(c, y) == 3);
    ag_backward(c, z);
    CHECK(grad_of(c, x) == 14 && grad_of(c, y) == 9 && grad_of(c, m) == 2);
    CHECK(grad_of(c, z) == 1 && grad_int(c, x));
    int64_t ids[] = {z, m, x, y};
    ag_release_many(c, ids, 4);
    ctx_done(c);
}

/* ag_copy_node: a node like h over the children given -- nothing computed,
 * value, gradient, types, exponent and name kept; child counts must match. */
static void test_copy_node(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 3, 1), y = leaf(c, 2.5, 0);
    int64_t p = pow_const(c, x, 2, 1);              /* int 9 */
    CHECK_EQ(ag_set_grad(c, p, 4, 1), AG_OK);
    int64_t q = must(ag_copy_node(c, p, y, -1), "copy over another child");
    CHECK_SAME(data_of(c, q), 9.0);                 /* kept, not recomputed */
    CHECK_EQ(flags_of(c, q), AG_DATA_INT | AG_GRAD_INT | AG_K_INT);
    CHECK_SAME(grad_of(c, q), 4.0);
    ag_node n;
    CHECK_EQ(ag_node_info(c, q, &n), AG_OK);
    CHECK(n.op == AG_POW_CONST && n.k == 2.0 && n.a == y && n.b == -1);
    CHECK_EQ(ag_backward(c, q), AG_OK);             /* its rule, on its child */
    CHECK_SAME(grad_of(c, y), 5.0);                 /* 2 * 2.5 * 1 */
    int64_t o = must(ag_opaque(c, 1.0, 0, x, -1, "mine"), "opaque");
    int64_t o2 = must(ag_copy_node(c, o, y, -1), "copy of a named node");
    char name[8];
    CHECK_EQ(ag_node_name(c, o2, name, sizeof name), 4);
    CHECK(strcmp(name, "mine") == 0);
    int64_t l2 = must(ag_copy_node(c, x, -1, -1), "copy of a leaf");
    CHECK_SAME(data_of(c, l2), 3.0);
    CHECK_EQ(grad_int(c, l2), 1);
    int64_t before = live(c);
    CHECK_EQ(ag_copy_node(c, p, -1, -1), AG_ERR_ARG);   /* a child missing */
    CHECK_EQ(ag_copy_node(c, x, y, -1), AG_ERR_ARG);    /* a leaf has none */
    CHECK_EQ(ag_copy_node(c, p, y, y), AG_ERR_ARG);     /* one too many */
    int64_t ids[] = {q, o2, l2, p, o, y};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) ag_release(c, ids[i]);
    CHECK_EQ(ag_copy_node(c, p, x, -1), AG_ERR_STALE);
    CHECK_EQ(live(c), before - 6);              /* x alone is left */
    ag_release(c, x);
    ctx_done(c);
}

/* ag_backprop_node over the nodes in reverse topological order, root grad
 * int 1 first, is ag_backward: the same grads, ints kept ints. */
static void test_backprop_node_is_one_step_of_backward(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 3, 1), y = leaf(c, 2.5, 0);
    int64_t m = apply2(c, AG_MUL, x, y), t = apply1(c, AG_TANH, m);
    int64_t z = apply2(c, AG_ADD, t, x);
    CHECK_EQ(ag_set_grad(c, z, 1, 1), AG_OK);
    const int64_t reverse_topo[] = {z, t, m, y, x};
    for (int i = 0; i < 5; i++) CHECK_EQ(ag_backprop_node(c, reverse_topo[i]), AG_OK);
    double gx = grad_of(c, x), gy = grad_of(c, y);
    int x_int = grad_int(c, x);
    const int64_t all[] = {x, y, m, t, z};
    for (int i = 0; i < 5; i++) ag_set_grad(c, all[i], 0, 1);
    CHECK_EQ(ag_backward(c, z), AG_OK);
    CHECK_SAME(gx, grad_of(c, x));
    CHECK_SAME(gy, grad_of(c, y));
    CHECK_EQ(x_int, grad_int(c, x));
    double before = grad_of(c, x);
    CHECK_EQ(ag_backprop_node(c, x), AG_OK);        /* a leaf: nothing */
    CHECK_SAME(grad_of(c, x), before);
    for (int i = 0; i < 5; i++) ag_release(c, all[i]);
    CHECK_EQ(ag_backprop_node(c, z), AG_ERR_STALE);
    ctx_done(c);
}

/* A node with the caller's own rule: ag_backward and ag_graph_new refuse a
 * graph that reaches it (AG_ERR_USER_RULE), changing nothing; graphs that
 * do not reach it, and the same graph once the node is gone, work. */
static void test_user_rule_nodes_are_refused(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 2.0, 0);
    int64_t u = must(ag_opaque(c, 5.0, 0, x, -1, "mine"), "opaque");
    int64_t y = apply2(c, AG_MUL, u, x), other = apply2(c, AG_ADD, x, x);
    CHECK_EQ(ag_set_user_rule(c, u), AG_OK);
    CHECK_EQ(ag_set_user_rule(c, u), AG_OK);              /* once is enough */
    CHECK_EQ(ag_backward(c, y), AG_ERR_USER_RULE);
    CHECK_SAME(grad_of(c, x), 0.0);                       /* nothing ran */
    CHECK_SAME(grad_of(c, y), 0.0);
    ag_graph *g = (ag_graph *)&g;
    CHECK_EQ(ag_graph_new(c, y, &g), AG_ERR_USER_RULE);
    CHECK(g == NULL);
    CHECK_EQ(ag_backward(c, other), AG_OK);               /* marks were cleared */
    CHECK_SAME(grad_of(c, x), 2.0);
    CHECK_EQ(ag_backward(c, u), AG_ERR_USER_RULE);
    ag_release(c, y);
    ag_release(c, u);                                     /* the node goes */
    int64_t z = apply2(c, AG_MUL, x, x);
    CHECK_EQ(ag_backward(c, z), AG_OK);
    CHECK_EQ(ag_set_user_rule(c, u), AG_ERR_STALE);
    ag_release(c, z);
    ag_release(c, other);
    ag_release(c, x);
    ctx_done(c);
}

static void test_opaque_blocks_gradient(void) {
    ag_ctx *c = ctx_new();
    int64_t a = leaf(c, 2.0, 0), b = leaf(c, 3.0, 0);
    int64_t o = must(ag_opaque(c, 7, 1, a, b, NULL), "ag_opaque");
    ag_node n;
    ag_node_info(c, o, &n);
    CHECK(n.op == AG_OPAQUE && n.a == a && n.b == b);
    CHECK(data_of(c, o) == 7 && data_int(c, o));
    int64_t y = apply2(c, AG_MUL, o, a);
    ag_backward(c, y);
    CHECK_SAME(grad_of(c, o), 2.0);
    CHECK_SAME(grad_of(c, a), 7.0);           /* only the direct path */
    CHECK_SAME(grad_of(c, b), 0.0);
    ag_release(c, a);
    ag_release(c, b);
    ag_release(c, y);
    CHECK_EQ(live(c), 3);                     /* o keeps its children */
    ag_release(c, o);
    int64_t lone = must(ag_opaque(c, 1.5, 0, -1, -1, NULL), "ag_opaque");
    ag_node_info(c, lone, &n);
    CHECK(n.op == AG_OPAQUE && n.a == -1 && n.b == -1);
    ag_release(c, lone);
    ctx_done(c);
}

/* ---- memory: depth, slot reuse, limit ------------------------------------ */

enum { DEEP_NODES = 1000000 };

/* x -> x*1.000001 -> ... (DEEP_NODES nodes, consts included), on a thread
 * with a 256 KiB stack: recursion over the depth could not fit. */
static void *deep_chain(void *arg) {
    ag_ctx *c = arg;
    const double r = 1.000001;
    int64_t x = leaf(c, 1.0, 0), h = x;
    ag_retain(c, x);                          /* h holds a handle too */
    for (int i = 0; i < DEEP_NODES / 2; i++) {
        int64_t next = must(ag_apply_const(c, AG_MUL, h, r, 0, 0), "step");
        ag_release(c, h);
        h = next;
    }
    CHECK_EQ(live(c), DEEP_NODES + 1);
    CHECK_EQ(ag_backward(c, h), AG_OK);
    CHECK(fabs(grad_of(c, x) / pow(r, DEEP_NODES / 2) - 1) < 1e-9);
    CHECK(fabs(data_of(c, h) / pow(r, DEEP_NODES / 2) - 1) < 1e-9);
    ag_release(c, h);
    CHECK_EQ(live(c), 1);
    ag_release(c, x);
    return NULL;
}

static void run_on_small_stack(void *(*fn)(void *), void *arg) {
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    CHECK(pthread_create(&t, &attr, fn, arg) == 0);
    pthread_join(t, NULL);
    pthread_attr_destroy(&attr);
}

static void test_deep_chain(void) {
    ag_ctx *c = ctx_new();
    run_on_small_stack(deep_chain, c);
    ctx_done(c);
}

/* A sum of n squares: n leaves, n squares, n-1 adds.  Returns the root. */
static int64_t sum_of_squares(ag_ctx *c, int n) {
    int64_t acc = -1;
    for (int i = 0; i < n; i++) {
        int64_t x = leaf(c, i * 0.5, 0), sq = apply2(c, AG_MUL, x, x);
        ag_release(c, x);
        if (acc < 0) { acc = sq; continue; }
        int64_t s = apply2(c, AG_ADD, acc, sq);
        ag_release(c, acc);
        ag_release(c, sq);
        acc = s;
    }
    return acc;
}

static void test_free_slots_reused(void) {
    ag_ctx *c = ctx_new();
    ag_stats first = {0};
    for (int round = 0; round < 6; round++) {
        int64_t root = sum_of_squares(c, 20000);
        CHECK_EQ(live(c), 3 * 20000 - 1);
        ag_backward(c, root);
        ag_release(c, root);
        CHECK_EQ(live(c), 0);
        ag_stats s = stats(c);
        if (round == 0) first = s;
        CHECK(s.capacity == first.capacity && s.bytes == first.bytes);
    }
    CHECK(first.capacity >= 3 * 20000 - 1);
    ctx_done(c);
}

/* A slot freed with a float grad and a POW_CONST exponent, then taken by a
 * new node: the new node's grad is int 0 (grad[] is not rewritten for a new
 * node, the AG_GRAD_ZERO flag stands for it) and it reports no exponent. */
static void test_reused_slot_starts_clean(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 3.0, 0);
    int64_t p = must(ag_apply(c, AG_POW_CONST, x, -1, 2.5, 0), "pow");
    CHECK_EQ(ag_backward(c, p), AG_OK);
    CHECK(grad_of(c, x) != 0.0);
    ag_release(c, p);
    ag_release(c, x);                         /* both slots free again */
    int64_t y = leaf(c, 1.0, 0);
    int64_t r = must(ag_apply(c, AG_RELU, y, -1, 0.0, 0), "relu");
    /* the freed slots, reused -- under new handles */
    CHECK(slot_of(y) == slot_of(x) || slot_of(y) == slot_of(p));
    CHECK(slot_of(r) == slot_of(x) || slot_of(r) == slot_of(p));
    CHECK(y != x && y != p && r != x && r != p);
    ag_node node;
    ag_node_info(c, r, &node);
    CHECK_SAME(node.k, 0.0);
    CHECK_SAME(grad_of(c, y), 0.0);
    CHECK_SAME(grad_of(c, r), 0.0);
    CHECK_EQ(flags_of(c, y) & AG_GRAD_INT, AG_GRAD_INT);
    CHECK_EQ(flags_of(c, r) & AG_GRAD_INT, AG_GRAD_INT);
    CHECK_EQ(ag_backward(c, r), AG_OK);       /* 0 + 1 * (1 > 0): int 1 */
    CHECK_SAME(grad_of(c, y), 1.0);
    CHECK_EQ(flags_of(c, y) & AG_GRAD_INT, AG_GRAD_INT);
    ag_release(c, r);
    ag_release(c, y);
    ctx_done(c);
}

/* A context made with AG_CTX_ONE_THREAD (no lock) computes what a locked one
 * does: the same graph, backward and replay give the same bits. */
static void one_thread_work(ag_ctx *c, double out[4]) {
    int64_t root = sum_of_squares(c, 3000);   /* about 2.2e9 */
    int64_t s = must(ag_apply_const(c, AG_MUL, root, 1e-10, 0, 0), "scale");
    int64_t t = must(ag_apply(c, AG_TANH, s, -1, 0.0, 0), "tanh");
    ag_release(c, s);
    CHECK_EQ(ag_backward(c, t), AG_OK);
    out[0] = data_of(c, t);
    out[1] = grad_of(c, root);
    ag_graph *g;
    CHECK_EQ(ag_graph_new(c, t, &g), AG_OK);
    CHECK_EQ(ag_graph_forward(g), AG_OK);
    CHECK_EQ(ag_graph_backward(g), AG_OK);
    out[2] = data_of(c, t);
    out[3] = grad_of(c, root);
    ag_graph_free(g);
    ag_release(c, t);
    ag_release(c, root);
    CHECK_EQ(live(c), 0);
}

static void test_one_thread_context(void) {
    CHECK(ag_ctx_new_opt(2) == NULL);         /* unknown option bit */
    ag_ctx *locked = ctx_new();
    ag_ctx *plain = ag_ctx_new_opt(AG_CTX_ONE_THREAD);
    CHECK(plain != NULL);
    double want[4], got[4];
    one_thread_work(locked, want);
    one_thread_work(plain, got);
    for (int i = 0; i < 4; i++) CHECK_SAME(got[i], want[i]);
    CHECK(want[1] > 0.0 && want[1] < 1e-10);  /* tanh not saturated */
    CHECK_SAME(want[3], want[1]);             /* forward reset op grads */
    ctx_done(locked);
    ctx_done(plain);
}

static void test_node_limit(void) {
    ag_ctx *c = ctx_new();
    ag_set_limit(c, 5);
    CHECK(stats(c).limit == 5);
    int64_t ids[5];
    for (int i = 0; i < 5; i++) ids[i] = leaf(c, i, 1);
    CHECK_EQ(ag_leaf(c, 1.0, 0), AG_ERR_LIMIT);
    CHECK_EQ(ag_apply(c, AG_ADD, ids[0], ids[1], 0, 0), AG_ERR_LIMIT);
    CHECK_EQ(ag_opaque(c, 1.0, 0, ids[0], -1, NULL), AG_ERR_LIMIT);
    CHECK_EQ(live(c), 5);
    ag_release(c, ids[4]);
    CHECK_EQ(ag_apply_const(c, AG_ADD, ids[0], 1, 1, 0), AG_ERR_LIMIT);
    ids[4] = apply2(c, AG_ADD, ids[0], ids[1]);  /* one free slot: fits */
    CHECK(data_of(c, ids[4]) == 1);
    CHECK_EQ(live(c), 5);
    ag_release_many(c, ids, 5);
    CHECK_EQ(live(c), 0);
    int64_t root = sum_of_squares(c, 2);      /* 5 nodes */
    CHECK_SAME(data_of(c, root), 0.25);
    ag_release(c, root);
    ag_set_limit(c, 0);
    root = sum_of_squares(c, 1000);
    ag_release(c, root);
    ctx_done(c);
}

/* ---- ag_layer ------------------------------------------------------------ */

enum { N_IN = 3, N_OUT = 4 };

typedef struct { int64_t w[N_OUT * N_IN], b[N_OUT], x[N_IN]; } layer_leaves;

/* Weights with outputs of both signs; int biases as micrograd's Value(0). */
static void make_layer_leaves(ag_ctx *c, layer_leaves *L) {
    for (int i = 0; i < N_OUT * N_IN; i++)
        L->w[i] = leaf(c, ((i * 7) % 11 - 5) / 4.0, 0);
    for (int j = 0; j < N_OUT; j++) L->b[j] = leaf(c, j - 1, 1);
    for (int i = 0; i < N_IN; i++) L->x[i] = leaf(c, 1.0 - 0.75 * i, 0);
}

static void release_layer_leaves(ag_ctx *c, const layer_leaves *L) {
    ag_release_many(c, L->w, N_OUT * N_IN);
    ag_release_many(c, L->b, N_OUT);
    ag_release_many(c, L->x, N_IN);
}

/* micrograd's Neuron by ag_apply: b + w0*x0 + w1*x1 + ..., then relu. */
static void layer_by_apply(ag_ctx *c, const layer_leaves *L, int nonlin,
                           int64_t *out) {
    for (int j = 0; j < N_OUT; j++) {
        int64_t acc = L->b[j];
        ag_retain(c, acc);
        for (int i = 0; i < N_IN; i++) {
            int64_t p = apply2(c, AG_MUL, L->w[j * N_IN + i], L->x[i]);
            int64_t s = apply2(c, AG_ADD, acc, p);
            ag_release(c, p);
            ag_release(c, acc);
            acc = s;
        }
        if (nonlin) {
            int64_t r = apply1(c, AG_RELU, acc);
            ag_release(c, acc);
            acc = r;
        }
        out[j] = acc;
    }
}

/* The sum of the outputs, backpropagated; consumes the output handles. */
static void backward_sum(ag_ctx *c, int64_t *out) {
    int64_t acc = out[0];
    for (int j = 1; j < N_OUT; j++) {
        int64_t s = apply2(c, AG_ADD, acc, out[j]);
        ag_release(c, acc);
        ag_release(c, out[j]);
        acc = s;
    }
    ag_backward(c, acc);
    ag_release(c, acc);
}

static void check_same_node(ag_ctx *c, int64_t p, int64_t q) {
    CHECK_SAME(data_of(c, p), data_of(c, q));
    CHECK_SAME(grad_of(c, p), grad_of(c, q));
    CHECK_EQ(flags_of(c, p), flags_of(c, q));
}

static void test_layer_matches_apply(void) {
    ag_ctx *c = ctx_new();
    for (int nonlin = 0; nonlin < 2; nonlin++) {
        layer_leaves A, B;
        make_layer_leaves(c, &A);
        make_layer_leaves(c, &B);
        int64_t out_a[N_OUT], out_b[N_OUT];
        int64_t before = live(c);
        CHECK_EQ(ag_layer(c, A.w, A.b, A.x, N_IN, N_OUT, nonlin, out_a), AG_OK);
        CHECK_EQ(live(c) - before, N_OUT * (2 * N_IN + nonlin));
        layer_by_apply(c, &B, nonlin, out_b);
        int positive = 0, negative = 0;
        for (int j = 0; j < N_OUT; j++) {
            ag_node na, nb;
            ag_node_info(c, out_a[j], &na);
            ag_node_info(c, out_b[j], &nb);
            CHECK_EQ(na.op, nb.op);
            check_same_node(c, out_a[j], out_b[j]);
            positive += data_of(c, out_a[j]) > 0;
            negative += data_of(c, out_a[j]) < 0;
        }
        CHECK(positive > 0 && (nonlin || negative > 0));
        backward_sum(c, out_a);
        backward_sum(c, out_b);
        for (int i = 0; i < N_OUT * N_IN; i++)
            check_same_node(c, A.w[i], B.w[i]);
        for (int j = 0; j < N_OUT; j++) check_same_node(c, A.b[j], B.b[j]);
        for (int i = 0; i < N_IN; i++) check_same_node(c, A.x[i], B.x[i]);
        CHECK(grad_of(c, A.x[0]) != 0);
        release_layer_leaves(c, &A);
        release_layer_leaves(c, &B);
    }
    ctx_done(c);
}

static void test_layer_errors_create_nothing(void) {
    ag_ctx *c = ctx_new();
    layer_leaves L;
    make_layer_leaves(c, &L);
    int64_t out[N_OUT], saved = L.x[1];
    int64_t before = live(c);
    int64_t dead = leaf(c, 0, 1);
    ag_release(c, dead);
    L.x[1] = dead;
    CHECK_EQ(ag_layer(c, L.w, L.b, L.x, N_IN, N_OUT, 1, out), AG_ERR_STALE);
    L.x[1] = saved;
    CHECK_EQ(ag_layer(c, L.w, L.b, L.x, -1, N_OUT, 1, out), AG_ERR_ARG);
    /* int overflow in the last neuron, after others were built */
    int64_t big = leaf(c, 1e300, 1), saved_w = L.w[N_OUT * N_IN - 1];
    ag_set_data(c, L.x[N_IN - 1], 1e300, 1);
    L.w[N_OUT * N_IN - 1] = big;
    CHECK_EQ(ag_layer(c, L.w, L.b, L.x, N_IN, N_OUT, 1, out), AG_ERR_INT_RANGE);
    L.w[N_OUT * N_IN - 1] = saved_w;
    ag_release(c, big);
    ag_set_data(c, L.x[N_IN - 1], 1.0, 0);
    ag_set_limit(c, (size_t)before + 5);
    CHECK_EQ(ag_layer(c, L.w, L.b, L.x, N_IN, N_OUT, 1, out), AG_ERR_LIMIT);
    CHECK_EQ(live(c), before);
    ag_set_limit(c, 0);
    release_layer_leaves(c, &L);
    ctx_done(c);
}

/* ---- no_grad ------------------------------------------------------------- */

static void *read_grad_enabled(void *arg) {
    *(int *)arg = ag_is_grad_enabled();
    return NULL;
}

static void test_no_grad_makes_leaves(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 2.0, 0);
    CHECK(ag_is_grad_enabled());
    CHECK_EQ(ag_set_grad_enabled(0), 1);
    CHECK(!ag_is_grad_enabled());
    int64_t y = apply2(c, AG_MUL, x, x);
    int64_t z = must(ag_apply_const(c, AG_ADD, x, 1, 1, 0), "const");
    CHECK_EQ(live(c), 3);                     /* the const did not stay */
    ag_node n;
    int64_t made[] = {y, z};
    for (int i = 0; i < 2; i++) {
        ag_node_info(c, made[i], &n);
        CHECK(n.op == AG_LEAF && n.a == -1 && n.b == -1);
    }
    CHECK(data_of(c, y) == 4.0 && data_of(c, z) == 3.0);
    layer_leaves L;
    make_layer_leaves(c, &L);
    int64_t out[N_OUT];
    CHECK_EQ(ag_layer(c, L.w, L.b, L.x, N_IN, N_OUT, 1, out), AG_OK);
    ag_node_info(c, out[0], &n);
    CHECK(n.op == AG_LEAF);
    ag_release_many(c, out, N_OUT);
    int other_thread = -1;
    pthread_t t;
    pthread_create(&t, NULL, read_grad_enabled, &other_thread);
    pthread_join(t, NULL);
    CHECK_EQ(other_thread, 1);                /* the switch is per thread */
    CHECK_EQ(ag_set_grad_enabled(1), 0);
    ag_backward(c, y);
    CHECK_SAME(grad_of(c, x), 0.0);
    int64_t ids[] = {x, y, z};
    ag_release_many(c, ids, 3);
    release_layer_leaves(c, &L);
    ctx_done(c);
}

/* ---- threads ------------------------------------------------------------- */

enum { N_THREADS = 4, ROUNDS = 10, CHAIN = 3000, BACKWARDS = 8 };

typedef struct {
    ag_ctx *c;
    int64_t shared;     /* one leaf every worker's graphs use */
    int seed;
    double out[ROUNDS][3];  /* per round: chain value, its w's grad, a layer
                               input's grad */
} worker;

/* Rounds of: build h = tanh(h*w + shared) CHAIN times, backprop it
 * BACKWARDS times; build a layer, backprop; read the results, free.  Only
 * grads of the worker's own leaves are read (shared's depend on timing). */
static void *work(void *arg) {
    worker *wk = arg;
    ag_ctx *c = wk->c;
    for (int r = 0; r < ROUNDS; r++) {
        int64_t w = leaf(c, 0.5 + 0.01 * wk->seed + 0.001 * r, 0);
        int64_t h = leaf(c, 0.1 * wk->seed, 0);
        for (int i = 0; i < CHAIN; i++) {
            int64_t m = apply2(c, AG_MUL, h, w);
            int64_t s = apply2(c, AG_ADD, m, wk->shared);
            int64_t t = apply1(c, AG_TANH, s);
            int64_t drop[] = {h, m, s};
            ag_release_many(c, drop, 3);
            h = t;
        }
        for (int k = 0; k < BACKWARDS; k++) ag_backward(c, h);
        /* plain reads: CHECKs (data_of, ...) are for one thread at a time */
        wk->out[r][0] = creal(ag_read(c, h, AG_READ_DATA));
        wk->out[r][1] = creal(ag_read(c, w, AG_READ_GRAD));
        ag_release(c, h);
        ag_release(c, w);
        layer_leaves L;
        make_layer_leaves(c, &L);
        int64_t out[N_OUT];
        if (ag_layer(c, L.w, L.b, L.x, N_IN, N_OUT, 1, out) != AG_OK) {
            wk->out[r][2] = NAN;
        } else {
            backward_sum(c, out);
            wk->out[r][2] = creal(ag_read(c, L.x[wk->seed % N_IN],
                                          AG_READ_GRAD));
        }
        release_layer_leaves(c, &L);
    }
    return NULL;
}

static void test_threads_match_serial(void) {
    ag_ctx *c = ctx_new();
    int64_t shared = leaf(c, 0.25, 0);
    worker serial[N_THREADS], par[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        serial[i] = (worker){.c = c, .shared = shared, .seed = i};
        par[i] = serial[i];
        work(&serial[i]);
    }
    CHECK_EQ(live(c), 1);
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, work, &par[i]) == 0);
    for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < N_THREADS; i++)
        CHECK(memcmp(serial[i].out, par[i].out, sizeof serial[i].out) == 0);
    CHECK(serial[0].out[0][1] != 0);         /* workers compute something, */
    CHECK(serial[1].out[0][0] != serial[2].out[0][0]);  /* and not the same */
    CHECK_EQ(live(c), 1);                     /* only `shared` is left */
    ag_release(c, shared);
    ctx_done(c);
}

/* ---- main ---------------------------------------------------------------- */

static const test_case tests[] = {
    {"leaf_flags", test_leaf_flags},
    {"apply_values_and_errors", test_apply_values_and_errors},
    {"apply_const_children", test_apply_const_children},
    {"bad_arguments", test_bad_arguments},
    {"status_strings", test_status_strings},
    {"grads_of_ops", test_grads_of_ops},
    {"grad_int_flags", test_grad_int_flags},
    {"shared_nodes", test_shared_nodes},
    {"backward_twice_accumulates", test_backward_twice_accumulates},
    {"opaque_blocks_gradient", test_opaque_blocks_gradient},
    {"copy_node", test_copy_node},
    {"user_rule_nodes_are_refused", test_user_rule_nodes_are_refused},
    {"backprop_node_is_one_step", test_backprop_node_is_one_step_of_backward},
    {"deep_chain", test_deep_chain},
    {"free_slots_reused", test_free_slots_reused},
    {"reused_slot_starts_clean", test_reused_slot_starts_clean},
    {"backward_sums_in_depth_first_order",
     test_backward_sums_in_depth_first_order},
    {"one_thread_context", test_one_thread_context},
    {"node_limit", test_node_limit},
    {"layer_matches_apply", test_layer_matches_apply},
    {"layer_errors_create_nothing", test_layer_errors_create_nothing},
    {"no_grad_makes_leaves", test_no_grad_makes_leaves},
    {"threads_match_serial", test_threads_match_serial},
};

int main(void) {
    return run_tests(tests, (int)(sizeof tests / sizeof tests[0]));
}
