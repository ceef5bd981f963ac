/*
 * fuzz_api.c -- a coverage-guided fuzzer (libFuzzer) for the public C API.
 *
 * The input bytes are a program: each step reads an opcode byte, then the
 * step's arguments, from the input.  The program works on one context and a
 * small pool of handles; it keeps its own count of the handles it holds, so
 * it only releases what it holds (the API has no status for releasing what
 * one does not own), while constructors also get invalid ids and op codes,
 * where the API promises AG_ERR_ARG.
 *
 * After every step it checks invariants:
 *   - statuses are in range, a failed constructor changes nothing;
 *   - stats: live nodes == nodes reachable from the held handles (walked
 *     through ag_node_info), live <= capacity, live <= limit after a
 *     successful constructor;
 *   - node_info of held nodes is well formed;
 * and at the end, after releasing every handle, live_nodes == 0.
 * A failed check aborts, which libFuzzer (or replay_corpus.c) reports.
 *
 * Adding a step: write `static void step_x(fz *f)` and add it at the end
 * of STEPS[] -- nothing else changes, and old corpus files keep their
 * meaning (the opcode indexes a fixed-size table).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd_c.h"

#define POOL 16        /* handle slots of the program        */
#define GRAPHS 3       /* captured graphs held at once       */
#define MAX_STEPS 512  /* steps per input, whatever its size */

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz_api: check failed: %s (%s:%d)\n", #cond, \
                    __FILE__, __LINE__);                                   \
            abort();                                                       \
        }                                                                  \
    } while (0)

typedef struct {
    int32_t id;      /* node id, -1 when the slot is empty   */
    uint32_t held;   /* handles the program owns on it       */
} slot;

typedef struct {
    const uint8_t *p;
    size_t n;
    ag_ctx *ctx;
    slot pool[POOL];
    ag_graph *graph[GRAPHS];  /* each holds a reference on its root */
    int32_t graph_root[GRAPHS];
    uint8_t *seen;   /* reachability scratch: cap flags ...    */
    int32_t *stack;  /* ... and a DFS stack, POOL + GRAPHS + 2 * cap */
    size_t cap;
} fz;

/* ---- reading the input ---------------------------------------------------- */

static uint8_t u8(fz *f) {
    if (!f->n) return 0;
    f->n--;
    return *f->p++;
}

static uint32_t u32(fz *f) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | u8(f);
    return v;
}

/* A number: mostly the awkward ones, sometimes any bit pattern. */
static double number(fz *f) {
    static const double special[] = {
        0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, 1e308, -1e308,
        5e-324, 9007199254740992.0 /* 2**53 */, 9007199254740994.0,
        1.7976931348623157e308, 709.0, 710.0, -745.0, 1e-300, 4096.0,
        4097.0, 1e16, NAN, INFINITY, -INFINITY, 0.1, -3.0, 100.0};
    uint8_t sel = u8(f);
    size_t n = sizeof special / sizeof *special;
    if (sel < n) return special[sel];
    if (sel < 200) return (double)((int)sel - 128);   /* small ints */
    uint64_t bits = (uint64_t)u32(f) << 32 | u32(f);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* ---- the handle pool ------------------------------------------------------ */

static slot *pick(fz *f) { return &f->pool[u8(f) % POOL]; }

/* An id for an argument: a held one, an empty slot's -1, or any int. */
static int32_t any_id(fz *f) {
    uint8_t sel = u8(f);
    if (sel < 0xE0) return f->pool[sel % POOL].id;
    if (sel < 0xF0) return (int32_t)(sel - 0xF0);     /* small negatives */
    return (int32_t)u32(f);
}

/* Take ownership of one new handle on id. */
static void hold(fz *f, int32_t id) {
    slot *empty = NULL;
    for (int i = 0; i < POOL; i++) {
        if (f->pool[i].id == id) { f->pool[i].held++; return; }
        if (!empty && f->pool[i].id < 0) empty = &f->pool[i];
    }
    if (!empty) { ag_release(f->ctx, id); return; }  /* pool full: give back */
    empty->id = id;
    empty->held = 1;
}

static void drop(fz *f, slot *s) {
    if (s->id < 0) return;
    ag_release(f->ctx, s->id);
    if (--s->held == 0) s->id = -1;
}

/* ---- invariants ------------------------------------------------------------- */

static ag_stats stats(fz *f) {
    ag_stats s;
    ag_get_stats(f->ctx, &s);
    CHECK(s.live_nodes <= s.capacity);
    return s;
}

static void check_status(int64_t st) {
    CHECK(st <= AG_ERR_NOMEM && st >= AG_ERR_NOT_LEAF);
    CHECK(ag_status_str((int)st) != NULL);
}

/* Nodes reachable from the held handles, walked through ag_node_info. */
static size_t reachable(fz *f, size_t cap) {
    if (cap > f->cap) {
        free(f->seen);
        free(f->stack);
        f->seen = malloc(cap);
        f->stack = malloc((POOL + GRAPHS + 2 * cap) * sizeof *f->stack);
        CHECK(f->seen != NULL && f->stack != NULL);
        f->cap = cap;
    }
    if (cap) memset(f->seen, 0, cap);
    int32_t *stack = f->stack;
    size_t sp = 0, count = 0;
    for (int i = 0; i < POOL + GRAPHS; i++) {
        int32_t id = i < POOL ? f->pool[i].id
                   : f->graph[i - POOL] ? f->graph_root[i - POOL] : -1;
        if (id >= 0) {
            CHECK((size_t)id < cap);
            stack[sp++] = id;
        }
    }
    while (sp) {
        int32_t x = stack[--sp];
        CHECK(x >= 0 && (size_t)x < cap);
        if (f->seen[x]) continue;
        f->seen[x] = 1;
        count++;
        ag_node n;
        ag_node_info(f->ctx, x, &n);
        CHECK(n.op >= 0 && n.op < AG_OP_COUNT);
        CHECK((n.flags & ~(AG_DATA_INT | AG_GRAD_INT | AG_K_INT)) == 0);
        int32_t kids[2] = {n.a, n.b};
        for (int k = 0; k < 2; k++) {
            CHECK(kids[k] >= -1 && (kids[k] < 0 || (size_t)kids[k] < cap));
            if (kids[k] >= 0 && !f->seen[kids[k]]) {
                CHECK(sp < POOL + GRAPHS + 2 * cap);
                stack[sp++] = kids[k];
            }
        }
    }
    return count;
}

static void check_invariants(fz *f) {
    ag_stats s = stats(f);
    CHECK(reachable(f, s.capacity) == s.live_nodes);
}

/* The result of a constructor: on success hold it (and respect the limit),
 * on failure a status in range and no node created. */
static void constructed(fz *f, int64_t r, size_t live_before) {
    ag_stats s = stats(f);
    if (r >= 0) {
        CHECK((size_t)r < s.capacity);
        CHECK(s.limit == 0 || s.live_nodes <= s.limit);
        hold(f, (int32_t)r);
    } else {
        check_status(r);
        CHECK(s.live_nodes == live_before);
    }
}

static int is_int_value(double v) { return isfinite(v) && v == floor(v); }

/* Whether id is a live node: the last invariant check walked them all. */
static int live(const fz *f, int32_t id) {
    return id >= 0 && (size_t)id < f->cap && f->seen[id];
}

static int binary(int op) { return ag_op_arity(op) == 2; }

static int unary(int op) { return ag_op_arity(op) == 1; }

/* The status of a constructor whose arguments were valid (args_ok) or not:
 * bad arguments give AG_ERR_ARG, good ones never do. */
static void check_args_status(int64_t r, int args_ok) {
    if (!args_ok) CHECK(r == AG_ERR_ARG);
    else CHECK(r >= 0 || (r != AG_ERR_ARG && r != AG_ERR_NOT_LEAF));
}

/* ---- the steps ---------------------------------------------------------------- */

static void step_leaf(fz *f) {
    double v = number(f);
    int is_int = u8(f) & 1;
    if (is_int && !is_int_value(v) && (u8(f) & 1)) v = floor(v);
    size_t before = stats(f).live_nodes;
    int64_t r = ag_leaf(f->ctx, v, is_int);
    if (r >= 0) {              /* before constructed(), which may release r */
        CHECK(ag_flags(f->ctx, (int32_t)r) == (is_int ? AG_DATA_INT : 0) + AG_GRAD_INT);
        CHECK(ag_grad(f->ctx, (int32_t)r) == 0.0);
    }
    constructed(f, r, before);
}

/* A held node's int flag, and whether it really is an int value. */
static int proper_int(fz *f, int32_t id) {
    return (ag_flags(f->ctx, id) & AG_DATA_INT) && is_int_value(ag_data(f->ctx, id));
}

static int held(fz *f, int32_t id) {
    for (int i = 0; i < POOL; i++)
        if (id >= 0 && f->pool[i].id == id) return 1;
    return 0;
}

/* An int result of int operands must be an int value (or INT_RANGE). */
static void check_int_result(fz *f, int64_t r, int op, int ints) {
    if (r < 0 || !ints) return;
    int flags = ag_flags(f->ctx, (int32_t)r);
    if (op == AG_ADD || op == AG_MUL || op == AG_RELU) CHECK(flags & AG_DATA_INT);
    if (flags & AG_DATA_INT) CHECK(is_int_value(ag_data(f->ctx, (int32_t)r)));
}

static void step_apply(fz *f) {
    int op = (int8_t)u8(f) % (AG_OP_COUNT + 3);
    int32_t a = any_id(f), b = any_id(f);
    double k = number(f);
    int k_int = u8(f) & 1;
    int ints = held(f, a) && proper_int(f, a) && (op != AG_POW_CONST || (k_int && is_int_value(k))) &&
               (op != AG_ADD && op != AG_MUL && op != AG_POW ? 1 : held(f, b) && proper_int(f, b));
    int args_ok = live(f, a) && (unary(op) || (binary(op) && live(f, b)));
    size_t before = stats(f).live_nodes;
    int64_t r = ag_apply(f->ctx, op, a, b, k, k_int);
    check_args_status(r, args_ok);
    check_int_result(f, r, op, ints);   /* before constructed() may release r */
    constructed(f, r, before);
}

static void step_apply_const(fz *f) {
    int op = (int8_t)u8(f) % (AG_OP_COUNT + 3);
    int32_t a = any_id(f);
    double v = number(f);
    int v_int = u8(f) & 1, first = u8(f) & 1;
    int ints = held(f, a) && proper_int(f, a) && v_int && is_int_value(v);
    size_t before = stats(f).live_nodes;
    int64_t r = ag_apply_const(f->ctx, op, a, v, v_int, first);
    check_args_status(r, binary(op) && live(f, a));
    check_int_result(f, r, op, ints);   /* before constructed() may release r */
    constructed(f, r, before);
}

static void step_opaque(fz *f) {
    double v = number(f);
    int is_int = u8(f) & 1;
    int32_t a = any_id(f), b = any_id(f);
    size_t before = stats(f).live_nodes;
    int64_t r = ag_opaque(f->ctx, v, is_int, a, b);
    check_args_status(r, (a == -1 || live(f, a)) && (b == -1 || live(f, b)));
    constructed(f, r, before);
}

static void step_retain(fz *f) {
    slot *s = pick(f);
    if (s->id < 0) return;
    ag_retain(f->ctx, s->id);
    s->held++;
}

static void step_release(fz *f) { drop(f, pick(f)); }

/* Give back up to 4 held handles in one ag_release_many. */
static void step_release_many(fz *f) {
    int32_t ids[4];
    size_t n = 0, want = u8(f) % 5;
    for (size_t i = 0; i < want; i++) {
        slot *s = pick(f);
        if (s->id < 0) continue;
        ids[n++] = s->id;
        if (--s->held == 0) s->id = -1;
    }
    ag_release_many(f->ctx, ids, n);
}

/* Retain a child of a held node (as Value._prev does) and hold it. */
static void step_take_child(fz *f) {
    slot *s = pick(f);
    if (s->id < 0) return;
    ag_node n;
    ag_node_info(f->ctx, s->id, &n);
    int32_t child = (u8(f) & 1) ? n.b : n.a;
    if (child < 0) return;
    ag_retain(f->ctx, child);
    hold(f, child);
}

/* Backward from a held id (or an invalid one: AG_ERR_ARG). */
static void step_backward(fz *f) {
    int32_t root = any_id(f);
    int st = ag_backward(f->ctx, root);
    CHECK(st == (live(f, root) ? AG_OK : AG_ERR_ARG));
    if (st != AG_OK) return;
    CHECK(ag_grad(f->ctx, root) == 1.0);
    CHECK(ag_flags(f->ctx, root) & AG_GRAD_INT);
}

static void step_set(fz *f) {
    slot *s = pick(f);
    int which = u8(f) & 1;
    double v = number(f);
    int is_int = u8(f) & 1;
    if (s->id < 0) return;
    if (is_int && !is_int_value(v)) v = 0;    /* ints are finite integers */
    if (which) ag_set_grad(f->ctx, s->id, v, is_int);
    else ag_set_data(f->ctx, s->id, v, is_int);
    double got = which ? ag_grad(f->ctx, s->id) : ag_data(f->ctx, s->id);
    CHECK(got == v || (isnan(got) && isnan(v)));
    int flag = which ? AG_GRAD_INT : AG_DATA_INT;
    CHECK(!(ag_flags(f->ctx, s->id) & flag) == !is_int);
}

/* ag_layer on ids from the pool (sometimes invalid), shapes up to 3 x 3. */
static void step_layer(fz *f) {
    int32_t n_in = u8(f) % 4, n_out = u8(f) % 4, w[9], b[3], x[3], out[3];
    int nonlin = u8(f) & 1;
    if (u8(f) == 0xFF) n_in = -1;             /* a bad shape */
    for (int i = 0; i < 9; i++) w[i] = any_id(f);
    for (int i = 0; i < 3; i++) b[i] = any_id(f), x[i] = any_id(f), out[i] = -7;
    int args_ok = n_in >= 0;
    for (int i = 0; i < n_in * n_out; i++) args_ok &= live(f, w[i]);
    for (int i = 0; i < n_out; i++) args_ok &= live(f, b[i]);
    for (int i = 0; i < n_in; i++) args_ok &= live(f, x[i]);
    size_t before = stats(f).live_nodes;
    int st = ag_layer(f->ctx, w, b, x, n_in, n_out, nonlin, out);
    check_args_status(st, args_ok);
    if (st != AG_OK) {
        check_status(st);
        CHECK(stats(f).live_nodes == before);
        return;
    }
    ag_stats s = stats(f);
    CHECK(s.limit == 0 || s.live_nodes <= s.limit);
    for (int j = 0; j < n_out; j++) {
        CHECK(out[j] >= 0 && (size_t)out[j] < s.capacity);
        hold(f, out[j]);
    }
}

static void step_limit(fz *f) {
    uint8_t sel = u8(f);
    size_t n_live = stats(f).live_nodes;
    size_t limit = sel < 128 ? 0 : sel < 192 ? n_live + sel % 8 : (size_t)sel % 32;
    ag_set_limit(f->ctx, limit);
    CHECK(stats(f).limit == limit);
}

static void step_grad_mode(fz *f) {
    int on = u8(f) & 1;
    int was = ag_is_grad_enabled();
    CHECK(ag_set_grad_enabled(on) == was);
    CHECK(ag_is_grad_enabled() == on);
}

static void step_status_str(fz *f) {
    CHECK(ag_status_str((int)u32(f)) != NULL);
}

/* Captured graphs (ag_graph_*): capture, forward, backward, batched run,
 * position lookups and free, on ids from the pool (sometimes invalid). */
static int replay_status(int st) {
    return st == AG_OK || st == AG_ERR_ZERODIV || st == AG_ERR_OVERFLOW ||
           st == AG_ERR_INT_RANGE || st == AG_ERR_DOMAIN || st == AG_ERR_COMPLEX;
}

static int same_bits(double x, double y) { return memcmp(&x, &y, sizeof x) == 0; }

/* Equal as Python shows floats: same bits, or both NaN (any sign/payload). */
static int same_number(double x, double y) { return same_bits(x, y) || (isnan(x) && isnan(y)); }

/* ag_graph_run over up to MAX_ROWS rows (several blocks, threads) of up to
 * 3 inputs; it changes no node. */
#define MAX_ROWS 200
static void graph_run(fz *f, ag_graph *g, int32_t root) {
    int32_t n_in = u8(f) % 4, n_grads = u8(f) % 4, inputs[3], grads[3];
    int64_t n_rows = u8(f) % MAX_ROWS;
    int threads = 1 + u8(f) % 3;
    double rows[3 * MAX_ROWS], out[MAX_ROWS], grad_out[3];
    for (int i = 0; i < 3; i++) inputs[i] = any_id(f), grads[i] = any_id(f);
    for (int i = 0; i < 3 * MAX_ROWS; i++) rows[i] = i < 12 ? number(f) : rows[i - 12] + 1.0;
    double data = ag_data(f->ctx, root), grad = ag_grad(f->ctx, root);
    int st = ag_graph_run(g, inputs, n_in, rows, n_rows, 3, grads, n_grads, out,
                          grad_out, threads);
    CHECK(st == AG_OK || st == AG_ERR_NOT_LEAF || st == AG_ERR_ARG || st == AG_ERR_NOMEM);
    CHECK(same_bits(ag_data(f->ctx, root), data) && same_bits(ag_grad(f->ctx, root), grad));
}

static void step_graph(fz *f) {
    int k = u8(f) % GRAPHS, what = u8(f) % 6;
    ag_graph *g = f->graph[k];
    if (what == 0 || !g) {                    /* capture (replacing slot k) */
        int32_t root = any_id(f);
        int st = -1;
        ag_graph_free(g);
        f->graph[k] = NULL;
        check_invariants(f);                  /* freeing may free nodes */
        int ok = live(f, root);
        st = ag_graph_new(f->ctx, root, &g);
        CHECK((g != NULL) == ok || (!g && st == AG_ERR_NOMEM));
        if (!g) { CHECK(st == AG_ERR_ARG || st == AG_ERR_NOMEM); return; }
        CHECK(ag_graph_size(g) >= 1);
        CHECK(ag_graph_position(g, root) == ag_graph_size(g) - 1);
        f->graph[k] = g;
        f->graph_root[k] = root;
    } else if (what == 1) {
        int32_t root = f->graph_root[k];
        double data = ag_data(f->ctx, root);
        int st = ag_graph_forward(g);
        CHECK(replay_status(st));
        if (st != AG_OK) CHECK(same_bits(ag_data(f->ctx, root), data));  /* unchanged */
    } else if (what == 2) {
        CHECK(ag_graph_backward(g) == AG_OK);
        CHECK(ag_grad(f->ctx, f->graph_root[k]) == 1.0);
    } else if (what == 3) {
        graph_run(f, g, f->graph_root[k]);
    } else if (what == 4) {
        int32_t id = any_id(f), p = ag_graph_position(g, id);
        CHECK(p >= -1 && p < ag_graph_size(g));
    } else {
        ag_graph_free(g);
        f->graph[k] = NULL;
    }
}

/* ag_zero_grads / ag_add_grads / ag_sgd on up to 4 ids (sometimes invalid:
 * then AG_ERR_ARG and nothing changes). */
static void step_bulk(fz *f) {
    int what = u8(f) % 3;
    size_t n = u8(f) % 5;
    int32_t ids[4];
    double v[4], data[4], grad[4];
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        ids[i] = any_id(f);
        v[i] = number(f);
        ok &= live(f, ids[i]);
    }
    for (size_t i = 0; ok && i < n; i++)
        data[i] = ag_data(f->ctx, ids[i]), grad[i] = ag_grad(f->ctx, ids[i]);
    int st = what == 0 ? ag_zero_grads(f->ctx, ids, n)
           : what == 1 ? ag_add_grads(f->ctx, ids, n, v)
                       : ag_sgd(f->ctx, ids, n, v[0]);
    CHECK(st == (ok ? AG_OK : AG_ERR_ARG));
    for (size_t i = 0; ok && i < n; i++) {
        int flags = ag_flags(f->ctx, ids[i]);
        if (what == 0) CHECK(ag_grad(f->ctx, ids[i]) == 0.0 && (flags & AG_GRAD_INT));
        if (what == 1) CHECK(!(flags & AG_GRAD_INT));
        if (what == 2) CHECK(!(flags & AG_DATA_INT));
        if (what != 2) CHECK(same_bits(ag_data(f->ctx, ids[i]), data[i]));
        if (what == 2 && n == 1)  /* micrograd's p.data -= lr * p.grad */
            CHECK(same_number(ag_data(f->ctx, ids[0]), data[0] - v[0] * grad[0]));
    }
}

/* The opcode byte picks STEPS[byte % STEP_SLOTS]; unassigned slots do
 * nothing, so adding a step changes no existing input's meaning. */
#define STEP_SLOTS 32
typedef void (*step_fn)(fz *f);
static const step_fn STEPS[STEP_SLOTS] = {
    step_leaf, step_apply, step_apply_const, step_opaque, step_retain,
    step_release, step_release_many, step_take_child, step_backward,
    step_set, step_layer, step_limit, step_grad_mode, step_status_str,
    step_graph, step_bulk,
    /* new steps go here, at the end */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz f = {.p = data, .n = size};
    for (int i = 0; i < POOL; i++) f.pool[i].id = -1;
    /* odd-sized inputs run without the lock: the same calls, one thread */
    f.ctx = ag_ctx_new_opt(size % 2 ? AG_CTX_ONE_THREAD : 0);
    CHECK(f.ctx != NULL);
    for (int i = 0; f.n && i < MAX_STEPS; i++) {
        step_fn step = STEPS[u8(&f) % STEP_SLOTS];
        if (step) step(&f);
        check_invariants(&f);
    }
    for (int i = 0; i < GRAPHS; i++) ag_graph_free(f.graph[i]);
    for (int i = 0; i < POOL; i++)
        while (f.pool[i].id >= 0) drop(&f, &f.pool[i]);
    CHECK(stats(&f).live_nodes == 0);
    ag_set_grad_enabled(1);                   /* per thread: reset it */
    ag_ctx_free(f.ctx);
    free(f.seen);
    free(f.stack);
    return 0;
}
