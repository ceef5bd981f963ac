/*
 * test_graph_run.c -- unit tests of the batched replay, ag_graph_run, through
 * the public API only: its outputs and summed gradients against the
 * single-row replay and eager backward of the same graph, row by row; its
 * block and thread splits; its argument checks (nothing written on error).
 * No Python.  Run by `make ctest`.
 */
#include "check.h"

/* A graph over inputs x, y (float leaves) and a parameter w that uses every
 * op with children, so each op's batched rules meet its eager ones:
 *   t = relu(x*w + y) + tanh(x) + exp(y*0.5) + sigmoid(x - y) + |x - 1|
 *       + log(x*x + 1) + (y*y + 2) ** 0.75 + (x*x + 1) ** (w*0.5)
 * x and y are inputs in column order; ids[] gets (x, y, w, t).  The caller
 * holds one handle on each. */
static void build(ag_ctx *c, int64_t ids[4]) {
    int64_t x = leaf(c, 0.5, 0), y = leaf(c, -0.25, 0), w = leaf(c, 1.5, 0);
    int64_t one = leaf(c, 1.0, 0), two = leaf(c, 2.0, 0);
    int64_t half = leaf(c, 0.5, 0), minus1 = leaf(c, -1.0, 0);
    int64_t xx = apply2(c, AG_MUL, x, x), yy = apply2(c, AG_MUL, y, y);
    int64_t neg_y = apply2(c, AG_MUL, y, minus1);
    int64_t terms[8];
    int64_t xw = apply2(c, AG_MUL, x, w);
    int64_t xwy = apply2(c, AG_ADD, xw, y);
    terms[0] = apply1(c, AG_RELU, xwy);
    terms[1] = apply1(c, AG_TANH, x);
    int64_t yh = apply2(c, AG_MUL, y, half);
    terms[2] = apply1(c, AG_EXP, yh);
    int64_t d = apply2(c, AG_ADD, x, neg_y);
    terms[3] = apply1(c, AG_SIGMOID, d);
    int64_t xm1 = apply2(c, AG_ADD, x, minus1);
    terms[4] = apply1(c, AG_ABS, xm1);
    int64_t xx1 = apply2(c, AG_ADD, xx, one);
    terms[5] = apply1(c, AG_LOG, xx1);
    int64_t yy2 = apply2(c, AG_ADD, yy, two);
    terms[6] = pow_const(c, yy2, 0.75, 0);
    int64_t wh = apply2(c, AG_MUL, w, half);
    terms[7] = apply2(c, AG_POW, xx1, wh);
    int64_t t = sum_of(c, terms, 8);
    int64_t temps[] = {one, two, half, minus1, xx, yy, neg_y, xw, xwy, yh, d,
                       xm1, xx1, yy2, wh};
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++)
        ag_release(c, temps[i]);
    for (int i = 0; i < 8; i++) ag_release(c, terms[i]);
    ids[0] = x, ids[1] = y, ids[2] = w, ids[3] = t;
}

/* A context holding build()'s graph, captured. */
typedef struct {
    ag_ctx *c;
    int64_t id[4];  /* x, y, w, t as build() makes them */
    ag_graph *g;    /* the graph of t */
} captured;

static captured capture(void) {
    captured k = {ctx_new(), {0}, NULL};
    build(k.c, k.id);
    CHECK_EQ(ag_graph_new(k.c, k.id[3], &k.g), AG_OK);
    return k;
}

/* Free the graph and the handles; the context must then be empty. */
static void release(captured *k) {
    ag_graph_free(k->g);
    for (int i = 0; i < 4; i++) ag_release(k->c, k->id[i]);
    ctx_done(k->c);
}

enum { ROWS = 150 };  /* two full blocks of 64 and a partial one */

static void fill_rows(double *rows, int n) {
    for (int r = 0; r < n; r++) {
        rows[2 * r] = -1.5 + 3.0 * r / n;          /* x: both signs */
        rows[2 * r + 1] = 1.0 - 2.5 * (r % 7) / 7; /* y */
    }
}

/* Each row's output is the single-row forward's root value, bit for bit;
 * the summed gradients equal the eager backward's summed over the rows
 * (up to the order of the additions). */
static void test_run_matches_single_row_replay(void) {
    captured k = capture();
    ag_ctx *c = k.c;
    ag_graph *g = k.g;
    const int64_t *id = k.id;
    double rows[2 * ROWS], out[ROWS], sums[3];
    fill_rows(rows, ROWS);
    const int64_t inputs[2] = {id[0], id[1]}, grads[3] = {id[0], id[1], id[2]};
    CHECK_EQ(ag_graph_run(g, inputs, 2, rows, ROWS, 2, grads, 3, out, sums, 1),
             AG_OK);
    double want[3] = {0, 0, 0};
    int same_bits = 1;
    for (int r = 0; r < ROWS; r++) {
        CHECK_EQ(ag_set_data(c, id[0], rows[2 * r], 0), AG_OK);
        CHECK_EQ(ag_set_data(c, id[1], rows[2 * r + 1], 0), AG_OK);
        CHECK_EQ(ag_graph_forward(g), AG_OK);
        same_bits &= memcmp(&out[r], &(double){data_of(c, id[3])}, 8) == 0;
        for (int j = 0; j < 3; j++) ag_set_grad(c, grads[j], 0.0, 0);
        CHECK_EQ(ag_graph_backward(g), AG_OK);
        for (int j = 0; j < 3; j++) want[j] += grad_of(c, grads[j]);
    }
    CHECK(same_bits);
    for (int j = 0; j < 3; j++) check_near_at(sums[j], want[j], 1e-12,
                                              "summed grad", __FILE__, __LINE__);
    release(&k);
}

/* ag_graph_run_rows: row r's gradients are those of a run of row r alone,
 * bit for bit (sources, an input, an op node -- the root); their sums are
 * ag_graph_run's up to the order of the additions; NULL row_grads is
 * ag_graph_run. */
static void test_run_rows_gives_one_row_runs(void) {
    captured k = capture();
    ag_graph *g = k.g;
    const int64_t *id = k.id;
    double rows[2 * ROWS], out[ROWS], sums[4], per_row[ROWS * 4], plain[4];
    fill_rows(rows, ROWS);
    const int64_t inputs[2] = {id[0], id[1]};
    const int64_t grads[4] = {id[2], id[0], id[3], id[2]};   /* w twice */
    CHECK_EQ(ag_graph_run_rows(g, inputs, 2, rows, ROWS, 2, grads, 4, out,
                               sums, per_row, 1), AG_OK);
    int same_bits = 1;
    for (int r = 0; r < ROWS; r++) {
        double one_out, one[4];
        CHECK_EQ(ag_graph_run_rows(g, inputs, 2, rows + 2 * r, 1, 2, grads, 4,
                                   &one_out, sums, one, 1), AG_OK);
        same_bits &= memcmp(one, per_row + 4 * r, sizeof one) == 0;
        same_bits &= memcmp(&one_out, &out[r], 8) == 0;
    }
    CHECK(same_bits);
    CHECK_EQ(ag_graph_run_rows(g, inputs, 2, rows, ROWS, 2, grads, 4, out,
                               sums, per_row, 1), AG_OK);
    CHECK_EQ(ag_graph_run_rows(g, inputs, 2, rows, ROWS, 2, grads, 4, out,
                               plain, NULL, 1), AG_OK);
    for (int j = 0; j < 4; j++) {
        double total = 0.0;
        for (int r = 0; r < ROWS; r++) total += per_row[4 * r + j];
        check_near_at(sums[j], total, 1e-12, "sum of rows", __FILE__, __LINE__);
        check_near_at(plain[j], sums[j], 1e-12, "run's sum", __FILE__, __LINE__);
    }
    release(&k);
}

/* No node's data or grad changes; sources not among the inputs keep their
 * data for every row; out may be NULL; no grads means forward only. */
static void test_run_changes_no_node(void) {
    captured k = capture();
    ag_ctx *c = k.c;
    ag_graph *g = k.g;
    const int64_t *id = k.id;
    CHECK_EQ(ag_backward(c, id[3]), AG_OK);
    double before[4][2];
    for (int i = 0; i < 4; i++)
        before[i][0] = data_of(c, id[i]), before[i][1] = grad_of(c, id[i]);
    double rows[2 * ROWS], out[ROWS], sums[1];
    fill_rows(rows, ROWS);
    const int64_t inputs[2] = {id[0], id[1]};
    CHECK_EQ(ag_graph_run(g, inputs, 2, rows, ROWS, 2, id + 2, 1, NULL, sums, 1),
             AG_OK);
    CHECK_EQ(ag_graph_run(g, inputs, 2, rows, ROWS, 2, NULL, 0, out, NULL, 1),
             AG_OK);
    for (int i = 0; i < 4; i++) {
        CHECK(data_of(c, id[i]) == before[i][0]);
        CHECK(grad_of(c, id[i]) == before[i][1]);
    }
    /* w (1.5) is not an input: a row equal to the current x, y reproduces
     * the current root value */
    double row[2] = {before[0][0], before[1][0]}, one;
    CHECK_EQ(ag_graph_run(g, inputs, 2, row, 1, 2, NULL, 0, &one, NULL, 1),
             AG_OK);
    CHECK(one == before[3][0]);
    release(&k);
}

/* A row stride wider than the inputs reads only the first columns; the
 * same rows split over threads give the same outputs, and the same sums up
 * to reassociation. */
static void test_run_stride_and_threads(void) {
    captured k = capture();
    ag_graph *g = k.g;
    const int64_t *id = k.id;
    enum { N = 40000 };  /* enough node-rows for a second thread */
    double *rows = malloc(sizeof(double) * 2 * N);
    double *wide = malloc(sizeof(double) * 3 * N);
    double *out1 = malloc(sizeof(double) * N), *out2 = malloc(sizeof(double) * N);
    double *out3 = malloc(sizeof(double) * N);
    if (!rows || !wide || !out1 || !out2 || !out3) {
        printf("FATAL: out of memory\n");
        exit(1);
    }
    fill_rows(rows, N);
    for (int r = 0; r < N; r++) {
        wide[3 * r] = rows[2 * r];
        wide[3 * r + 1] = rows[2 * r + 1];
        wide[3 * r + 2] = NAN;                 /* never read */
    }
    const int64_t inputs[2] = {id[0], id[1]};
    double s1[3], s2[3], s3[3];
    const int64_t grads[3] = {id[2], id[0], id[3]};  /* any nodes: root too */
    CHECK_EQ(ag_graph_run(g, inputs, 2, rows, N, 2, grads, 3, out1, s1, 1), AG_OK);
    CHECK_EQ(ag_graph_run(g, inputs, 2, rows, N, 2, grads, 3, out2, s2, 2), AG_OK);
    CHECK_EQ(ag_graph_run(g, inputs, 2, wide, N, 3, grads, 3, out3, s3, 1), AG_OK);
    CHECK(memcmp(out1, out2, sizeof(double) * N) == 0);
    CHECK(memcmp(out1, out3, sizeof(double) * N) == 0);
    for (int j = 0; j < 3; j++) {
        CHECK_NEAR(s2[j], s1[j]);
        CHECK(s3[j] == s1[j]);
    }
    CHECK(s1[2] == (double)N);                 /* d root / d root, per row 1 */
    free(rows); free(wide); free(out1); free(out2); free(out3);
    release(&k);
}

/* Bad arguments return their status and write nothing. */
static void test_run_errors_write_nothing(void) {
    captured k = capture();
    ag_ctx *c = k.c;
    ag_graph *g = k.g;
    const int64_t *id = k.id;
    int64_t stranger = leaf(c, 1.0, 0);        /* not in the graph */
    double rows[4] = {0.1, 0.2, 0.3, 0.4}, out[2] = {7, 7}, sums[2] = {7, 7};
    const int64_t ok_in[2] = {id[0], id[1]}, op_in[2] = {id[0], id[3]};
    const int64_t twice[2] = {id[0], id[0]}, out_in[2] = {id[0], stranger};
    const int64_t bad_grads[2] = {id[2], stranger};
    const struct { const int64_t *in; int32_t n_in; int64_t n_rows, stride;
                   const int64_t *grads; int32_t n_grads; int threads;
                   int status; } cases[] = {
        {op_in, 2, 2, 2, NULL, 0, 1, AG_ERR_NOT_LEAF},   /* an op node */
        {out_in, 2, 2, 2, NULL, 0, 1, AG_ERR_NOT_LEAF},  /* not in the graph */
        {twice, 2, 2, 2, NULL, 0, 1, AG_ERR_ARG},        /* repeated input */
        {ok_in, 2, 2, 2, bad_grads, 2, 1, AG_ERR_ARG},   /* grad not in graph */
        {ok_in, -1, 2, 2, NULL, 0, 1, AG_ERR_ARG},
        {ok_in, 2, -1, 2, NULL, 0, 1, AG_ERR_ARG},
        {ok_in, 2, 2, 1, NULL, 0, 1, AG_ERR_ARG},        /* stride < inputs */
        {ok_in, 2, 2, 2, NULL, -1, 1, AG_ERR_ARG},
        {ok_in, 2, 2, 2, NULL, 0, 0, AG_ERR_ARG},        /* threads < 1 */
        {ok_in, 2, 2, 2, NULL, 1, 1, AG_ERR_ARG},        /* NULL grads */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "error case %zu", i);
        int st = ag_graph_run(g, cases[i].in, cases[i].n_in, rows,
                              cases[i].n_rows, cases[i].stride, cases[i].grads,
                              cases[i].n_grads, out, sums, cases[i].threads);
        check_i64_at(st, cases[i].status, what, __FILE__, __LINE__);
        check_at(out[0] == 7 && out[1] == 7 && sums[0] == 7 && sums[1] == 7,
                 what, __FILE__, __LINE__);
    }
    /* a failed run leaves the graph usable: the next good one works */
    CHECK_EQ(ag_graph_run(g, ok_in, 2, rows, 2, 2, id + 2, 1, out, sums, 1),
             AG_OK);
    CHECK(out[0] != 7 && sums[0] != 7);
    /* zero rows: nothing to do, sums are 0 */
    CHECK_EQ(ag_graph_run(g, ok_in, 2, NULL, 0, 2, id + 2, 1, NULL, sums, 1),
             AG_OK);
    CHECK(sums[0] == 0.0);
    ag_release(c, stranger);
    release(&k);
}

/* Plain doubles: log of a negative input is nan, exp overflow inf -- no
 * error, where the single-row replay raises Python's. */
static void test_run_has_no_python_errors(void) {
    ag_ctx *c = ctx_new();
    int64_t x = leaf(c, 1.0, 0);
    int64_t lx = apply1(c, AG_LOG, x), ex = apply1(c, AG_EXP, x);
    int64_t t = apply2(c, AG_ADD, lx, ex);
    ag_graph *g;
    CHECK_EQ(ag_graph_new(c, t, &g), AG_OK);
    double rows[3] = {-1.0, 1000.0, 0.0}, out[3];
    CHECK_EQ(ag_graph_run(g, &x, 1, rows, 3, 1, NULL, 0, out, NULL, 1), AG_OK);
    CHECK(isnan(out[0]));
    CHECK(isinf(out[1]) && out[1] > 0);
    CHECK(isinf(out[2]) && out[2] < 0);          /* log(0) + 1 */
    ag_set_data(c, x, -1.0, 0);
    CHECK_EQ(ag_graph_forward(g), AG_ERR_DOMAIN);
    ag_graph_free(g);
    int64_t ids[] = {x, lx, ex, t};
    for (int i = 0; i < 4; i++) ag_release(c, ids[i]);
    ctx_done(c);
}

static const test_case tests[] = {
    {"run_matches_single_row_replay", test_run_matches_single_row_replay},
    {"run_rows_gives_one_row_runs", test_run_rows_gives_one_row_runs},
    {"run_changes_no_node", test_run_changes_no_node},
    {"run_stride_and_threads", test_run_stride_and_threads},
    {"run_errors_write_nothing", test_run_errors_write_nothing},
    {"run_has_no_python_errors", test_run_has_no_python_errors},
};

int main(void) {
    return run_tests(tests, (int)(sizeof tests / sizeof tests[0]));
}
