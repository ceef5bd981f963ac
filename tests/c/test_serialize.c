/*
 * test_serialize.c -- saved graphs (ag_graph_save / ag_graph_check /
 * ag_graph_load, csrc/serialize.c) through the public API: a graph with
 * every op, int and float numbers and a named opaque node goes to bytes and
 * back into another context, node for node, and replays to the same bits;
 * bytes cut at every length, every bit flipped and made-up programs are
 * refused with AG_ERR_FORMAT and leave no node behind; every allocation of
 * a load failing in turn gives AG_ERR_NOMEM and changes nothing.  No
 * Python.  Run by `make ctest`.
 */
#include "check.h"
#include "saved_graph.h"

/* A root over three leaves x, w (float) and i (int) that uses every op and
 * a named opaque node with children: the caller holds the root only. */
static int64_t build(ag_ctx *c) {
    int64_t x = leaf(c, 0.75, 0), w = leaf(c, -1.25, 0), i = leaf(c, 3, 1);
    int64_t xw = apply2(c, AG_MUL, x, w), s = apply2(c, AG_ADD, xw, i);
    int64_t t[8];
    t[0] = apply1(c, AG_RELU, s);
    t[1] = apply1(c, AG_TANH, xw);
    t[2] = apply1(c, AG_EXP, x);
    t[3] = apply1(c, AG_SIGMOID, w);
    t[4] = apply1(c, AG_ABS, w);
    t[5] = apply1(c, AG_LOG, t[2]);
    t[6] = pow_const(c, i, 2, 1);                        /* int ** int: int */
    int64_t o = must(ag_opaque(c, 2.5, 0, x, i, "op\xc3\xa9"), "ag_opaque");
    ag_set_grad(c, o, 0.125, 0);
    ag_set_grad(c, i, 7, 1);
    t[7] = apply2(c, AG_POW, o, x);
    int64_t r = sum_of(c, t, 8);
    int64_t root = pow_const(c, r, 0.5, 0);
    int64_t drop[] = {r, x, w, i, xw, s, t[0], t[1], t[2], t[3], t[4], t[5],
                      t[6], t[7], o};
    CHECK_EQ(ag_release_many(c, drop, sizeof drop / sizeof *drop), AG_OK);
    return root;
}

/* The bytes of g, malloc'ed; *len their size. */
static uint8_t *saved(ag_graph *g, size_t *len) {
    int64_t n = ag_graph_save(g, NULL, 0);
    CHECK(n > SG_HEADER);
    uint8_t *blob = malloc((size_t)n);
    CHECK_EQ(ag_graph_save(g, blob, (size_t)n - 1), n);   /* too small: no write */
    CHECK_EQ(ag_graph_save(g, blob, (size_t)n), n);
    *len = (size_t)n;
    return blob;
}

/* Handles of every position of g (one reference each): malloc'ed. */
static int64_t *all_nodes(ag_graph *g) {
    int32_t n = ag_graph_size(g);
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    int64_t *h = malloc((size_t)n * sizeof *h);
    for (int32_t p = 0; p < n; p++) pos[p] = p;
    CHECK_EQ(ag_graph_handles(g, pos, (size_t)n, h), AG_OK);
    free(pos);
    return h;
}

static int same_bits(double x, double y) { return memcmp(&x, &y, sizeof x) == 0; }

/* Position by position: the same op, exponent, flags, data and grad. */
static void check_same_nodes(ag_ctx *c1, ag_graph *g1, ag_ctx *c2, ag_graph *g2) {
    int32_t n = ag_graph_size(g1);
    CHECK_EQ(ag_graph_size(g2), n);
    int64_t *h1 = all_nodes(g1), *h2 = all_nodes(g2);
    for (int32_t p = 0; p < n; p++) {
        ag_node a, b;
        CHECK_EQ(ag_node_info(c1, h1[p], &a), AG_OK);
        CHECK_EQ(ag_node_info(c2, h2[p], &b), AG_OK);
        CHECK_EQ(a.op, b.op);
        CHECK_EQ(a.flags, b.flags);
        CHECK(same_bits(a.k, b.k));
        CHECK(same_bits(data_of(c1, h1[p]), data_of(c2, h2[p])));
        CHECK(same_bits(grad_of(c1, h1[p]), grad_of(c2, h2[p])));
        char n1[16], n2[16];
        CHECK_EQ(ag_node_name(c1, h1[p], n1, sizeof n1),
                 ag_node_name(c2, h2[p], n2, sizeof n2));
        CHECK(strcmp(n1, n2) == 0);
        CHECK((a.a < 0) == (b.a < 0) && (a.b < 0) == (b.b < 0));
        if (a.a >= 0) CHECK_EQ(ag_graph_position(g1, a.a), ag_graph_position(g2, b.a));
        if (a.b >= 0) CHECK_EQ(ag_graph_position(g1, a.b), ag_graph_position(g2, b.b));
    }
    CHECK_EQ(ag_release_many(c1, h1, (size_t)n), AG_OK);
    CHECK_EQ(ag_release_many(c2, h2, (size_t)n), AG_OK);
    free(h1);
    free(h2);
}

static void test_round_trip_is_node_for_node_and_replays_the_same(void) {
    ag_ctx *c1 = ctx_new(), *c2 = ctx_new();
    int64_t r = build(c1);
    ag_graph *g1, *g2;
    CHECK_EQ(ag_graph_new(c1, r, &g1), AG_OK);
    CHECK_EQ(ag_graph_forward(g1), AG_OK);   /* op nodes as loading makes them */
    size_t len;
    uint8_t *blob = saved(g1, &len);
    CHECK_EQ(ag_graph_check(blob, len, NULL), ag_graph_size(g1));
    int was = ag_set_grad_enabled(0);        /* loading records all the same */
    CHECK_EQ(ag_graph_load(c2, blob, len, &g2), AG_OK);
    ag_set_grad_enabled(was);
    CHECK_EQ(live(c2), ag_graph_size(g2));
    check_same_nodes(c1, g1, c2, g2);
    CHECK_EQ(ag_graph_backward(g1), AG_OK);
    CHECK_EQ(ag_graph_backward(g2), AG_OK);
    check_same_nodes(c1, g1, c2, g2);
    int32_t src1[8], src2[8];
    CHECK_EQ(ag_graph_sources(g1, src1, 8), 4);   /* x, w, i, o */
    CHECK_EQ(ag_graph_sources(g2, src2, 8), 4);
    CHECK(memcmp(src1, src2, sizeof(int32_t) * 4) == 0);
    int64_t in1[2], in2[2];
    CHECK_EQ(ag_graph_handles(g1, src1, 2, in1), AG_OK);
    CHECK_EQ(ag_graph_handles(g2, src2, 2, in2), AG_OK);
    double rows[6] = {0.5, -1.0, 1.5, 2.0, -0.25, 0.125}, out1[3], out2[3], s1[2], s2[2];
    CHECK_EQ(ag_graph_run(g1, in1, 2, rows, 3, 2, in1, 2, out1, s1, 1), AG_OK);
    CHECK_EQ(ag_graph_run(g2, in2, 2, rows, 3, 2, in2, 2, out2, s2, 1), AG_OK);
    CHECK(memcmp(out1, out2, sizeof out1) == 0 && memcmp(s1, s2, sizeof s1) == 0);
    size_t len2;
    uint8_t *again = saved(g2, &len2);        /* after backward: grads differ */
    CHECK_EQ(len2, len);
    ag_release_many(c1, in1, 2);
    ag_release_many(c2, in2, 2);
    free(blob);
    free(again);
    ag_graph_free(g2);
    ag_graph_free(g1);
    ag_release(c1, r);
    ctx_done(c1);
    ctx_done(c2);
}

/* Every cut length, every flipped bit: AG_ERR_FORMAT, nothing made. */
static void test_cut_or_changed_bytes_are_refused(void) {
    ag_ctx *c = ctx_new();
    int64_t r = build(c);
    ag_graph *g, *bad = NULL;
    CHECK_EQ(ag_graph_new(c, r, &g), AG_OK);
    size_t len;
    uint8_t *blob = saved(g, &len);
    int64_t before = live(c);
    int refused = 1;
    for (size_t cut = 0; cut < len; cut++) {
        const char *why = NULL;
        refused &= ag_graph_check(blob, cut, &why) == AG_ERR_FORMAT && why && why[0];
        refused &= ag_graph_load(c, blob, cut, &bad) == AG_ERR_FORMAT && !bad;
    }
    for (size_t bit = 0; bit < 8 * len; bit++) {
        blob[bit / 8] ^= (uint8_t)(1u << bit % 8);
        refused &= ag_graph_load(c, blob, len, &bad) == AG_ERR_FORMAT && !bad;
        blob[bit / 8] ^= (uint8_t)(1u << bit % 8);
    }
    CHECK(refused);
    CHECK_EQ(live(c), before);
    CHECK_EQ(ag_graph_check(blob, len, NULL), ag_graph_size(g));  /* intact again */
    free(blob);
    ag_graph_free(g);
    ag_release(c, r);
    ctx_done(c);
}

/* ---- made-up programs, with a right checksum ------------------------------ */

typedef struct { uint8_t b[256]; size_t n; } made;

static void put8(made *m, uint8_t v) { m->b[m->n++] = v; }
static void put32(made *m, uint32_t v) { sg_put32(m->b + m->n, v); m->n += 4; }
static void putd(made *m, double d) { sg_put64(m->b + m->n, d); m->n += 8; }

static void begin(made *m, uint32_t n) { sg_header(m->b, n); m->n = SG_HEADER; }

static void put_leaf(made *m, double v, int flags) {
    put8(m, AG_LEAF); put8(m, (uint8_t)flags); putd(m, v); putd(m, 0.0);
}

/* The status of loading m (sealed), after checking that a failure leaves
 * no node and a success one graph of live nodes. */
static int load_status(ag_ctx *c, made *m) {
    sg_reseal(m->b, m->n);
    int64_t before = live(c);
    ag_graph *g = NULL;
    int st = ag_graph_load(c, m->b, m->n, &g);
    CHECK((st == AG_OK) == (g != NULL));
    if (st != AG_OK) CHECK_EQ(live(c), before);
    ag_graph_free(g);
    CHECK_EQ(live(c), before);
    int64_t checked = ag_graph_check(m->b, m->n, NULL);
    CHECK(st == AG_ERR_FORMAT ? checked == AG_ERR_FORMAT || checked > 0 : checked > 0);
    return st;
}

static void test_made_up_programs_are_checked(void) {
    ag_ctx *c = ctx_new();
    made m;
    begin(&m, 2); put_leaf(&m, 2.0, 0); put8(&m, AG_TANH); put32(&m, 0);
    CHECK_EQ(load_status(c, &m), AG_OK);               /* the well-formed one */
    begin(&m, 2); put_leaf(&m, 2.0, 0); put8(&m, AG_OP_COUNT); put32(&m, 0);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* unknown op code */
    begin(&m, 2); put_leaf(&m, 2.0, 0); put8(&m, AG_TANH); put32(&m, 1);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* itself as operand */
    begin(&m, 3); put_leaf(&m, 2.0, 0); put8(&m, AG_ADD); put32(&m, 0); put32(&m, 2);
    put8(&m, AG_TANH); put32(&m, 1);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* forward reference */
    begin(&m, 0x7fffffff); put_leaf(&m, 2.0, 0);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* huge count */
    begin(&m, 2); put_leaf(&m, 2.0, 0); put8(&m, AG_TANH); put32(&m, 0); put8(&m, 0);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* a byte too many */
    begin(&m, 1); put_leaf(&m, NAN, 1);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* an int that is NaN */
    begin(&m, 1); put_leaf(&m, 0.5, 1);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* an int with a fraction */
    begin(&m, 1); put_leaf(&m, 1.0, 4);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* unknown flag */
    begin(&m, 2); put_leaf(&m, 2.0, 0); put8(&m, AG_POW_CONST); put32(&m, 0);
    putd(&m, INFINITY); put8(&m, 1);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* an int exponent inf */
    begin(&m, 2); put_leaf(&m, 2.0, 0); put_leaf(&m, 3.0, 0);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* a node the root misses */
    begin(&m, 3); put_leaf(&m, 2.0, 0); put_leaf(&m, 3.0, 0);
    put8(&m, AG_ADD); put32(&m, 1); put32(&m, 0);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* not capture's order */
    begin(&m, 2); put_leaf(&m, -1.0, 0); put8(&m, AG_LOG); put32(&m, 0);
    CHECK_EQ(load_status(c, &m), AG_ERR_DOMAIN);       /* what building raises */
    begin(&m, 1); put8(&m, AG_OPAQUE); put8(&m, 0); put8(&m, 3);
    putd(&m, 1.0); putd(&m, 0.0); put32(&m, 0);
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);       /* three children */
    const char *names[] = {"ok", "a\0b", "\xc0\xaf", "\xe0\x80\x80", "\xed\xa0\x80",
                           "\xf4\x90\x80\x80", "\xc3"};
    const size_t lens[] = {2, 3, 2, 3, 3, 4, 1};
    const int good[] = {1, 0, 0, 0, 1, 0, 0};          /* a lone surrogate is fine */
    for (int i = 0; i < 7; i++) {
        begin(&m, 1); put8(&m, AG_OPAQUE); put8(&m, 0); put8(&m, 0);
        putd(&m, 1.0); putd(&m, 0.0); put32(&m, (uint32_t)lens[i]);
        memcpy(m.b + m.n, names[i], lens[i]); m.n += lens[i];
        CHECK_EQ(load_status(c, &m), good[i] ? AG_OK : AG_ERR_FORMAT);
    }
    begin(&m, 1); put_leaf(&m, 1.0, 0);
    m.b[4] = 2;                                        /* another version */
    CHECK_EQ(load_status(c, &m), AG_ERR_FORMAT);
    ctx_done(c);
}

/* A number flagged int that is none (only C makes one) is not saved. */
static void test_save_refuses_a_fake_int(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 0.5, 1);
    ag_graph *g;
    CHECK_EQ(ag_graph_new(c, x, &g), AG_OK);
    CHECK_EQ(ag_graph_save(g, NULL, 0), AG_ERR_ARG);
    int32_t p = 1;
    int64_t h = 0;
    CHECK_EQ(ag_graph_handles(g, &p, 1, &h), AG_ERR_ARG);   /* no position 1 */
    ag_graph_free(g);
    ag_release(c, x);
    ctx_done(c);
}

/* ---- out of memory ------------------------------------------------------------ */

static long alloc_count, fail_at;

static void *test_malloc(size_t size, void *user) {
    (void)user;
    return ++alloc_count == fail_at ? NULL : malloc(size);
}

static void *test_realloc(void *p, size_t size, void *user) {
    (void)user;
    return ++alloc_count == fail_at ? NULL : realloc(p, size);
}

static void test_free(void *p, void *user) {
    (void)user;
    free(p);
}

static void test_every_allocation_of_a_load_may_fail(void) {
    ag_ctx *src = ctx_new();
    int64_t r = build(src);
    ag_graph *g;
    CHECK_EQ(ag_graph_new(src, r, &g), AG_OK);
    size_t len;
    uint8_t *blob = saved(g, &len);
    ag_graph_free(g);
    ag_release(src, r);
    ctx_done(src);
    ag_allocator a = {test_malloc, test_realloc, test_free, NULL};
    CHECK_EQ(ag_set_allocator(&a), AG_OK);
    int st = AG_ERR_NOMEM, nomem_only = 1;
    long n = 0;
    while (st != AG_OK) {
        alloc_count = 0, fail_at = ++n;
        ag_ctx *c = ag_ctx_new();
        if (!c) continue;                    /* the context's own allocation */
        ag_graph *out = NULL;
        st = ag_graph_load(c, blob, len, &out);
        nomem_only &= st == AG_OK || (st == AG_ERR_NOMEM && !out && live(c) == 0);
        ag_graph_free(out);
        fail_at = 0;
        ctx_done(c);
    }
    CHECK(nomem_only);
    CHECK(n > 5);
    printf("  %ld allocations of a load failed in turn\n", n - 1);
    CHECK_EQ(ag_set_allocator(NULL), AG_OK);
    free(blob);
}

static const test_case tests[] = {
    {"round_trip_node_for_node", test_round_trip_is_node_for_node_and_replays_the_same},
    {"cut_or_changed_bytes_refused", test_cut_or_changed_bytes_are_refused},
    {"made_up_programs_are_checked", test_made_up_programs_are_checked},
    {"save_refuses_a_fake_int", test_save_refuses_a_fake_int},
    {"every_allocation_of_a_load", test_every_allocation_of_a_load_may_fail},
};

int main(void) {
    return run_tests(tests, (int)(sizeof tests / sizeof tests[0]));
}
