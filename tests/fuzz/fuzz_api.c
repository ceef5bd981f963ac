/*
 * fuzz_api.c -- a coverage-guided fuzzer (libFuzzer) for the public C API.
 *
 * The input bytes are a program: each step reads an opcode byte, then the
 * step's arguments, from the input.  The program works on one context and a
 * small pool of handles; it keeps its own count of the references it holds,
 * so it only releases what it holds (releasing a reference one does not own
 * is no error the API can see), while other calls also get handles of freed
 * nodes (AG_ERR_STALE), numbers that are no handle and bad op codes
 * (AG_ERR_ARG).  A node is named by its handle, slot and generation; the
 * program learns every live node's handle from a walk (below) and predicts
 * each call's status from it: OK for a live node's handle; AG_ERR_ARG for a
 * negative number; AG_ERR_STALE for a slot known to have been handed out
 * that does not hold the handle's node; AG_ERR_ARG for a slot beyond the
 * capacity; either of the two in between (slots the arena may have used
 * for nodes the program never saw).
 *
 * After every step it checks invariants:
 *   - statuses are in range and as predicted, a failed constructor changes
 *     nothing;
 *   - stats: live nodes == nodes reachable from the held handles (walked
 *     through ag_node_info), live <= capacity, live <= limit after a
 *     successful constructor;
 *   - node_info of held nodes is well formed, one handle per slot; ag_read's
 *     types agree with the flags; only opaque nodes have names;
 * and at the end, after releasing every handle, live_nodes == 0.
 * A failed check aborts, which libFuzzer (or replay_corpus.c) reports.
 *
 * Adding a step: write `static void step_x(fz *f)` and add it at the end
 * of STEPS[] -- nothing else changes, and old corpus files keep their
 * meaning (the opcode indexes a fixed-size table).
 */
#include <complex.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd_c.h"
#include "../c/node_view.h"
#include "../c/saved_graph.h"

#define POOL 16        /* handle slots of the program        */
#define GRAPHS 3       /* captured graphs held at once       */
#define MAX_STEPS 512  /* steps per input, whatever its size */
#define GRAVE 8        /* handles given back, kept to use stale */

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz_api: check failed: %s (%s:%d)\n", #cond, \
                    __FILE__, __LINE__);                                   \
            abort();                                                       \
        }                                                                  \
    } while (0)

typedef struct {
    int64_t id;      /* node handle, -1 when the entry is empty */
    uint32_t held;   /* references the program owns on it      */
} slot;

typedef struct {
    const uint8_t *p;
    size_t n;
    ag_ctx *ctx;
    slot pool[POOL];
    ag_graph *graph[GRAPHS];  /* each holds a reference on its root */
    int64_t graph_root[GRAPHS];
    int64_t grave[GRAVE];     /* handles whose last held reference went */
    unsigned grave_next;
    /* What the last walk (check_invariants) saw, indexed by arena slot: */
    uint8_t *seen;   /* reached: a live node ...                    */
    int64_t *cur;    /* ... whose handle this is                    */
    int64_t *stack;  /* DFS stack, POOL + GRAPHS + 2 * cap          */
    size_t cap;      /* scratch size (slots)                        */
    size_t capacity; /* ag_stats.capacity at the last walk          */
    size_t hi;       /* 1 + the highest slot ever seen: every slot
                      * below was handed out (< the arena's used)  */
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

/* A handle for an argument: a held one, an empty entry's -1, or any int32
 * (a negative, or a slot with generation 0). */
static int64_t any_id(fz *f) {
    uint8_t sel = u8(f);
    if (sel < 0xE0) return f->pool[sel % POOL].id;
    if (sel < 0xF0) return (int64_t)(sel - 0xF0);     /* small negatives */
    return (int32_t)u32(f);
}

static uint32_t slot_of(int64_t h) { return (uint32_t)h; }

static void seen_slot(fz *f, int64_t h) {
    if (slot_of(h) >= f->hi) f->hi = (size_t)slot_of(h) + 1;
}

static void bury(fz *f, int64_t h) {
    f->grave[f->grave_next++ % GRAVE] = h;
}

/* Take ownership of one new reference on id. */
static void hold(fz *f, int64_t id) {
    slot *empty = NULL;
    for (int i = 0; i < POOL; i++) {
        if (f->pool[i].id == id) { f->pool[i].held++; return; }
        if (!empty && f->pool[i].id < 0) empty = &f->pool[i];
    }
    if (!empty) {                                  /* pool full: give back */
        CHECK(ag_release(f->ctx, id) == AG_OK);
        bury(f, id);
        return;
    }
    empty->id = id;
    empty->held = 1;
}

static void drop(fz *f, slot *s) {
    if (s->id < 0) return;
    CHECK(ag_release(f->ctx, s->id) == AG_OK);
    if (--s->held == 0) {
        bury(f, s->id);
        s->id = -1;
    }
}

/* ---- invariants ------------------------------------------------------------- */

static ag_stats stats(fz *f) {
    ag_stats s;
    ag_get_stats(f->ctx, &s);
    CHECK(s.live_nodes <= s.capacity);
    return s;
}

static void check_status(int64_t st) {
    CHECK(st <= AG_ERR_NOMEM && st >= AG_ERR_STALE);
    CHECK(ag_status_str((int)st) != NULL);
}

/* A live node's value / gradient / flags: the reads must succeed. */
static double read_of(fz *f, int64_t h, int what) {
    double _Complex r = ag_read(f->ctx, h, what);
    CHECK(cimag(r) == 0.0 || cimag(r) == 1.0);
    return creal(r);
}

static double data_of(fz *f, int64_t h) { return read_of(f, h, AG_READ_DATA); }
static double grad_of(fz *f, int64_t h) { return read_of(f, h, AG_READ_GRAD); }

static int flags_of(fz *f, int64_t h) {
    ag_node n;
    CHECK(ag_node_info(f->ctx, h, &n) == AG_OK);
    return n.flags;
}

/* Nodes reachable from the held handles, walked through ag_node_info;
 * records each one's handle by slot (seen[], cur[]). */
static size_t reachable(fz *f, size_t cap) {
    if (cap > f->cap) {
        free(f->seen);
        free(f->cur);
        free(f->stack);
        f->seen = malloc(cap);
        f->cur = malloc(cap * sizeof *f->cur);
        f->stack = malloc((POOL + GRAPHS + 2 * cap) * sizeof *f->stack);
        CHECK(f->seen != NULL && f->cur != NULL && f->stack != NULL);
        f->cap = cap;
    }
    f->capacity = cap;
    if (cap) memset(f->seen, 0, cap);
    int64_t *stack = f->stack;
    size_t sp = 0, count = 0;
    for (int i = 0; i < POOL + GRAPHS; i++) {
        int64_t id = i < POOL ? f->pool[i].id
                   : f->graph[i - POOL] ? f->graph_root[i - POOL] : -1;
        if (id >= 0) {
            CHECK(slot_of(id) < cap);
            stack[sp++] = id;
        }
    }
    while (sp) {
        int64_t x = stack[--sp];
        uint32_t s = slot_of(x);
        CHECK(x >= 0 && s < cap);
        if (f->seen[s]) {                     /* one handle per live slot */
            CHECK(f->cur[s] == x);
            continue;
        }
        f->seen[s] = 1;
        f->cur[s] = x;
        seen_slot(f, x);
        count++;
        ag_node n;
        CHECK(ag_node_info(f->ctx, x, &n) == AG_OK);
        CHECK(n.op >= 0 && n.op < AG_OP_COUNT);
        CHECK((n.flags & ~(AG_DATA_INT | AG_GRAD_INT | AG_K_INT)) == 0);
        double _Complex d = ag_read(f->ctx, x, AG_READ_DATA);
        double _Complex g = ag_read(f->ctx, x, AG_READ_GRAD);
        CHECK(cimag(d) == ((n.flags & AG_DATA_INT) ? 1.0 : 0.0));
        CHECK(cimag(g) == ((n.flags & AG_GRAD_INT) ? 1.0 : 0.0));
        int64_t name_len = ag_node_name(f->ctx, x, NULL, 0);
        CHECK(name_len >= 0 && (n.op == AG_OPAQUE || name_len == 0));
        int64_t kids[2] = {n.a, n.b};
        for (int k = 0; k < 2; k++) {
            CHECK(kids[k] >= -1 && (kids[k] < 0 || slot_of(kids[k]) < cap));
            if (kids[k] >= 0) {
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
        CHECK(slot_of(r) < s.capacity);
        CHECK(s.limit == 0 || s.live_nodes <= s.limit);
        seen_slot(f, r);
        hold(f, r);
    } else {
        check_status(r);
        CHECK(s.live_nodes == live_before);
    }
}

static int is_int_value(double v) { return isfinite(v) && v == floor(v); }

/* Whether h is a live node's handle: the last invariant check walked them
 * all (its slot's node, of h's generation). */
static int live(const fz *f, int64_t h) {
    return h >= 0 && slot_of(h) < f->cap && f->seen[slot_of(h)] &&
           f->cur[slot_of(h)] == h;
}

/* Either AG_ERR_STALE or AG_ERR_ARG: a slot that the arena may or may not
 * have handed out (the program did not see every node, e.g. a failed
 * ag_layer's partial neurons). */
#define STALE_OR_ARG 1

/* The status a call must give for argument h, from the last walk: AG_OK,
 * AG_ERR_STALE, AG_ERR_ARG or STALE_OR_ARG.  ag_node_info must agree. */
static int expect(fz *f, int64_t h) {
    int want = h < 0 ? AG_ERR_ARG
             : live(f, h) ? AG_OK
             : slot_of(h) < f->hi ? AG_ERR_STALE
             : slot_of(h) >= f->capacity ? AG_ERR_ARG
                                         : STALE_OR_ARG;
    ag_node n;
    int st = ag_node_info(f->ctx, h, &n);
    CHECK(st == want || (want == STALE_OR_ARG &&
                         (st == AG_ERR_STALE || st == AG_ERR_ARG)));
    return want;
}

/* The first failing of two expectations, in the order a call checks. */
static int then(int first, int second) { return first != AG_OK ? first : second; }

static int binary(int op) { return ag_op_arity(op) == 2; }

static int unary(int op) { return ag_op_arity(op) == 1; }

/* The status r of a call whose arguments give want (expect()): a bad
 * argument's status, or for good ones never AG_ERR_ARG, AG_ERR_NOT_LEAF,
 * AG_ERR_STALE. */
static void check_args_status(int64_t r, int want) {
    if (want == STALE_OR_ARG) CHECK(r == AG_ERR_STALE || r == AG_ERR_ARG);
    else if (want != AG_OK) CHECK(r == want);
    else CHECK(r >= 0 || (r != AG_ERR_ARG && r != AG_ERR_NOT_LEAF &&
                          r != AG_ERR_STALE));
}

/* ---- the steps ---------------------------------------------------------------- */

static void step_leaf(fz *f) {
    double v = number(f);
    int is_int = u8(f) & 1;
    if (is_int && !is_int_value(v) && (u8(f) & 1)) v = floor(v);
    size_t before = stats(f).live_nodes;
    int64_t r = ag_leaf(f->ctx, v, is_int);
    if (r >= 0) {              /* before constructed(), which may release r */
        CHECK(flags_of(f, r) == (is_int ? AG_DATA_INT : 0) + AG_GRAD_INT);
        CHECK(grad_of(f, r) == 0.0);
    }
    constructed(f, r, before);
}

/* A held node's int flag, and whether it really is an int value. */
static int proper_int(fz *f, int64_t id) {
    return (flags_of(f, id) & AG_DATA_INT) && is_int_value(data_of(f, id));
}

static int held(fz *f, int64_t id) {
    for (int i = 0; i < POOL; i++)
        if (id >= 0 && f->pool[i].id == id) return 1;
    return 0;
}

/* An int result of int operands must be an int value (or INT_RANGE). */
static void check_int_result(fz *f, int64_t r, int op, int ints) {
    if (r < 0 || !ints) return;
    int flags = flags_of(f, r);
    if (op == AG_ADD || op == AG_MUL || op == AG_RELU) CHECK(flags & AG_DATA_INT);
    if (flags & AG_DATA_INT) CHECK(is_int_value(data_of(f, r)));
}

static void step_apply(fz *f) {
    int op = (int8_t)u8(f) % (AG_OP_COUNT + 3);
    int64_t a = any_id(f), b = any_id(f);
    double k = number(f);
    int k_int = u8(f) & 1;
    int ints = held(f, a) && proper_int(f, a) && (op != AG_POW_CONST || (k_int && is_int_value(k))) &&
               (op != AG_ADD && op != AG_MUL && op != AG_POW ? 1 : held(f, b) && proper_int(f, b));
    int want = !unary(op) && !binary(op) ? AG_ERR_ARG
             : then(expect(f, a), binary(op) ? expect(f, b) : AG_OK);
    size_t before = stats(f).live_nodes;
    int64_t r = ag_apply(f->ctx, op, a, b, k, k_int);
    check_args_status(r, want);
    check_int_result(f, r, op, ints);   /* before constructed() may release r */
    constructed(f, r, before);
}

static void step_apply_const(fz *f) {
    int op = (int8_t)u8(f) % (AG_OP_COUNT + 3);
    int64_t a = any_id(f);
    double v = number(f);
    int v_int = u8(f) & 1, first = u8(f) & 1;
    int ints = held(f, a) && proper_int(f, a) && v_int && is_int_value(v);
    int want = binary(op) ? expect(f, a) : AG_ERR_ARG;
    size_t before = stats(f).live_nodes;
    int64_t r = ag_apply_const(f->ctx, op, a, v, v_int, first);
    check_args_status(r, want);
    check_int_result(f, r, op, ints);   /* before constructed() may release r */
    constructed(f, r, before);
}

/* The name of an opaque node, from the byte whose low bit was its is_int
 * flag (so that older inputs read the same bytes): none (NULL) or "" for
 * half of the bytes, else up to 1000 bytes of any value but 0. */
static const char *opaque_name(uint8_t sel, char *buf, size_t cap) {
    unsigned k = sel >> 1;
    if (k < 48) return k < 32 ? NULL : "";
    size_t len = k == 127 ? 1000 : (size_t)(k - 48) * 3;
    if (len >= cap) len = cap - 1;
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)(1 + (i * 37 + k * 11) % 255);
    buf[len] = '\0';
    return buf;
}

/* The name came back whole, or cut in a smaller buffer. */
static void check_name(fz *f, int64_t h, const char *name, uint8_t sel) {
    char got[1100];
    size_t len = name ? strlen(name) : 0;
    memset(got, 'x', sizeof got);
    CHECK(ag_node_name(f->ctx, h, got, sizeof got) == (int64_t)len);
    CHECK(memcmp(got, name ? name : "", len + 1) == 0);
    size_t cap = sel % 8;                     /* 0: the length alone */
    memset(got, 'x', sizeof got);
    CHECK(ag_node_name(f->ctx, h, cap ? got : NULL, cap) == (int64_t)len);
    if (cap) {
        size_t n = len < cap ? len : cap - 1;
        CHECK(memcmp(got, name ? name : "", n) == 0 && got[n] == '\0');
    }
}

static void step_opaque(fz *f) {
    double v = number(f);
    uint8_t sel = u8(f);
    int is_int = sel & 1;
    int64_t a = any_id(f), b = any_id(f);
    char buf[1024];
    const char *name = opaque_name(sel, buf, sizeof buf);
    int want = then(then(a == -1 ? AG_OK : expect(f, a), b == -1 ? AG_OK : expect(f, b)),
                    a == -1 && b != -1 ? AG_ERR_ARG : AG_OK);   /* b without a */
    size_t before = stats(f).live_nodes;
    int64_t r = ag_opaque(f->ctx, v, is_int, a, b, name);
    check_args_status(r, want);
    if (r >= 0) check_name(f, r, name, sel);  /* before constructed() */
    constructed(f, r, before);
}

static void step_retain(fz *f) {
    slot *s = pick(f);
    if (s->id < 0) return;
    CHECK(ag_retain(f->ctx, s->id) == AG_OK);
    s->held++;
}

static void step_release(fz *f) { drop(f, pick(f)); }

/* Give back up to 4 held handles in one ag_release_many. */
static void step_release_many(fz *f) {
    int64_t ids[4];
    size_t n = 0, want = u8(f) % 5;
    for (size_t i = 0; i < want; i++) {
        slot *s = pick(f);
        if (s->id < 0) continue;
        ids[n++] = s->id;
        if (--s->held == 0) {
            bury(f, s->id);
            s->id = -1;
        }
    }
    CHECK(ag_release_many(f->ctx, ids, n) == AG_OK);
}

/* Retain a child of a held node (as Value._prev does) and hold it. */
static void step_take_child(fz *f) {
    slot *s = pick(f);
    if (s->id < 0) return;
    ag_node n;
    CHECK(ag_node_info(f->ctx, s->id, &n) == AG_OK);
    int64_t child = (u8(f) & 1) ? n.b : n.a;
    if (child < 0) return;
    CHECK(ag_retain(f->ctx, child) == AG_OK);
    hold(f, child);
}

/* Backward from a held handle (or a bad one: its status). */
static void step_backward(fz *f) {
    int64_t root = any_id(f);
    int want = expect(f, root);
    int st = ag_backward(f->ctx, root);
    check_args_status(st, want);
    if (want == AG_OK) CHECK(st == AG_OK);
    if (st != AG_OK) return;
    CHECK(grad_of(f, root) == 1.0);
    CHECK(flags_of(f, root) & AG_GRAD_INT);
}

static void step_set(fz *f) {
    slot *s = pick(f);
    int which = u8(f) & 1;
    double v = number(f);
    int is_int = u8(f) & 1;
    if (s->id < 0) return;
    if (is_int && !is_int_value(v)) v = 0;    /* ints are finite integers */
    int st = which ? ag_set_grad(f->ctx, s->id, v, is_int)
                   : ag_set_data(f->ctx, s->id, v, is_int);
    CHECK(st == AG_OK);
    double _Complex r = ag_read(f->ctx, s->id, which ? AG_READ_GRAD : AG_READ_DATA);
    double got = creal(r);
    CHECK(got == v || (isnan(got) && isnan(v)));
    CHECK(cimag(r) == (is_int ? 1.0 : 0.0));
    int flag = which ? AG_GRAD_INT : AG_DATA_INT;
    CHECK(!(flags_of(f, s->id) & flag) == !is_int);
}

/* ag_layer on handles from the pool (sometimes bad), shapes up to 3 x 3. */
static void step_layer(fz *f) {
    int32_t n_in = u8(f) % 4, n_out = u8(f) % 4;
    int64_t w[9], b[3], x[3], out[3];
    int nonlin = u8(f) & 1;
    if (u8(f) == 0xFF) n_in = -1;             /* a bad shape */
    for (int i = 0; i < 9; i++) w[i] = any_id(f);
    for (int i = 0; i < 3; i++) b[i] = any_id(f), x[i] = any_id(f), out[i] = -7;
    int want = n_in >= 0 ? AG_OK : AG_ERR_ARG;  /* checked: x, w, b */
    for (int i = 0; i < n_in; i++) want = then(want, expect(f, x[i]));
    for (int i = 0; i < n_in * n_out; i++) want = then(want, expect(f, w[i]));
    for (int i = 0; i < n_out; i++) want = then(want, expect(f, b[i]));
    size_t before = stats(f).live_nodes;
    int st = ag_layer(f->ctx, w, b, x, n_in, n_out, nonlin, out);
    check_args_status(st, want);
    if (st != AG_OK) {
        check_status(st);
        CHECK(stats(f).live_nodes == before);
        return;
    }
    ag_stats s = stats(f);
    CHECK(s.limit == 0 || s.live_nodes <= s.limit);
    for (int j = 0; j < n_out; j++) {
        CHECK(out[j] >= 0 && slot_of(out[j]) < s.capacity);
        seen_slot(f, out[j]);
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
static void graph_run(fz *f, ag_graph *g, int64_t root) {
    int32_t n_in = u8(f) % 4, n_grads = u8(f) % 4;
    int64_t inputs[3], grads[3];
    int64_t n_rows = u8(f) % MAX_ROWS;
    int threads = 1 + u8(f) % 3;
    double rows[3 * MAX_ROWS], out[MAX_ROWS], grad_out[3];
    for (int i = 0; i < 3; i++) inputs[i] = any_id(f), grads[i] = any_id(f);
    for (int i = 0; i < 3 * MAX_ROWS; i++) rows[i] = i < 12 ? number(f) : rows[i - 12] + 1.0;
    double data = data_of(f, root), grad = grad_of(f, root);
    int st = ag_graph_run(g, inputs, n_in, rows, n_rows, 3, grads, n_grads, out,
                          grad_out, threads);
    CHECK(st == AG_OK || st == AG_ERR_NOT_LEAF || st == AG_ERR_ARG || st == AG_ERR_STALE ||
          st == AG_ERR_NOMEM);
    if (st == AG_ERR_STALE) {  /* then an input or grads handle names no live node */
        int any_dead = 0;
        for (int i = 0; i < n_in; i++) any_dead |= !live(f, inputs[i]);
        for (int i = 0; i < n_grads; i++) any_dead |= !live(f, grads[i]);
        CHECK(any_dead);
    }
    CHECK(same_bits(data_of(f, root), data) && same_bits(grad_of(f, root), grad));
}

static void step_graph(fz *f) {
    int k = u8(f) % GRAPHS, what = u8(f) % 6;
    ag_graph *g = f->graph[k];
    if (what == 0 || !g) {                    /* capture (replacing slot k) */
        int64_t root = any_id(f);
        int st = -1;
        ag_graph_free(g);
        f->graph[k] = NULL;
        check_invariants(f);                  /* freeing may free nodes */
        int want = expect(f, root);
        st = ag_graph_new(f->ctx, root, &g);
        CHECK((g != NULL) == (want == AG_OK) || (!g && st == AG_ERR_NOMEM));
        if (!g) {
            if (st != AG_ERR_NOMEM) check_args_status(st, want);
            return;
        }
        CHECK(ag_graph_size(g) >= 1);
        CHECK(ag_graph_position(g, root) == ag_graph_size(g) - 1);
        f->graph[k] = g;
        f->graph_root[k] = root;
    } else if (what == 1) {
        int64_t root = f->graph_root[k];
        double data = data_of(f, root);
        int st = ag_graph_forward(g);
        CHECK(replay_status(st));
        if (st != AG_OK) CHECK(same_bits(data_of(f, root), data));  /* unchanged */
    } else if (what == 2) {
        CHECK(ag_graph_backward(g) == AG_OK);
        CHECK(grad_of(f, f->graph_root[k]) == 1.0);
    } else if (what == 3) {
        graph_run(f, g, f->graph_root[k]);
    } else if (what == 4) {
        int64_t id = any_id(f);
        int32_t p = ag_graph_position(g, id);
        CHECK(p >= -1 && p < ag_graph_size(g));
        CHECK(p == -1 || live(f, id));        /* never a stale handle */
    } else {
        ag_graph_free(g);
        f->graph[k] = NULL;
    }
}

/* ag_zero_grads / ag_add_grads / ag_sgd on up to 4 handles (sometimes bad:
 * then the first bad one's status and nothing changes). */
static void step_bulk(fz *f) {
    int what = u8(f) % 3;
    size_t n = u8(f) % 5;
    int64_t ids[4];
    double v[4], data[4], grad[4];
    int want = AG_OK;
    for (size_t i = 0; i < n; i++) {
        ids[i] = any_id(f);
        v[i] = number(f);
        want = then(want, expect(f, ids[i]));
    }
    int ok = want == AG_OK;
    for (size_t i = 0; ok && i < n; i++)
        data[i] = data_of(f, ids[i]), grad[i] = grad_of(f, ids[i]);
    int st = what == 0 ? ag_zero_grads(f->ctx, ids, n)
           : what == 1 ? ag_add_grads(f->ctx, ids, n, v)
                       : ag_sgd(f->ctx, ids, n, v[0]);
    check_args_status(st, want);
    if (ok) CHECK(st == AG_OK);
    for (size_t i = 0; ok && i < n; i++) {
        int flags = flags_of(f, ids[i]);
        if (what == 0) CHECK(grad_of(f, ids[i]) == 0.0 && (flags & AG_GRAD_INT));
        if (what == 1) CHECK(!(flags & AG_GRAD_INT));
        if (what == 2) CHECK(!(flags & AG_DATA_INT));
        if (what != 2) CHECK(same_bits(data_of(f, ids[i]), data[i]));
        if (what == 2 && n == 1)  /* micrograd's p.data -= lr * p.grad */
            CHECK(same_number(data_of(f, ids[0]), data[0] - v[0] * grad[0]));
    }
}

/* ---- replay against eager ------------------------------------------------ */

#define REBUILD_MAX 128   /* nodes of a graph replayed against eager */

static int index_of(const int64_t *hs, int n, int64_t h) {
    for (int i = 0; i < n; i++)
        if (hs[i] == h) return i;
    return -1;
}

/* What root reaches, children first, child a before b (ag_graph_new's
 * order; a node below the root without child a counts as childless, as
 * there): its
 * length, or -1 beyond cap. */
static int program_order(fz *f, int64_t root, int64_t *order, int cap) {
    struct { int64_t h; int next; } fr[REBUILD_MAX + 1];
    int sp = 0, n = 0;
    fr[sp++].h = root;
    fr[0].next = 0;
    while (sp) {
        ag_node nd;
        CHECK(ag_node_info(f->ctx, fr[sp - 1].h, &nd) == AG_OK);
        int64_t kids[2] = {nd.a, nd.a >= 0 || sp == 1 ? nd.b : -1};
        if (fr[sp - 1].next < 2) {
            int64_t ch = kids[fr[sp - 1].next++];
            if (ch >= 0 && index_of(order, n, ch) < 0) {
                if (sp > REBUILD_MAX) return -1;
                fr[sp].h = ch;
                fr[sp++].next = 0;
            }
            continue;
        }
        if (n >= cap) return -1;
        order[n++] = fr[--sp].h;
    }
    return n;
}

/* The same program built anew by the eager constructors from copies of its
 * leaves (opaque nodes copied with the copies of their children):
 * copy[i] for order[i], -1 past a failure.  Returns AG_OK, the
 * first failing node's replay status, or another status (no room: then
 * the comparison is off). */
static int rebuild(fz *f, const int64_t *order, int n, int64_t *copy) {
    int was = ag_set_grad_enabled(1);
    int st = AG_OK;
    for (int i = 0; i < n; i++) copy[i] = -1;
    for (int i = 0; i < n && st == AG_OK; i++) {
        ag_node nd;
        CHECK(ag_node_info(f->ctx, order[i], &nd) == AG_OK);
        double _Complex d = ag_read(f->ctx, order[i], AG_READ_DATA);
        int64_t r;
        int a = index_of(order, i, nd.a), b = index_of(order, i, nd.b);
        if (nd.op == AG_LEAF) {
            r = ag_leaf(f->ctx, creal(d), cimag(d) != 0.0);
        } else if (nd.op == AG_OPAQUE) {        /* children not walked: none */
            r = ag_opaque(f->ctx, creal(d), cimag(d) != 0.0,
                          a >= 0 ? copy[a] : -1, b >= 0 ? copy[b] : -1, NULL);
        } else {
            CHECK(a >= 0 && (nd.b < 0 || b >= 0));
            r = ag_apply(f->ctx, nd.op, copy[a], b >= 0 ? copy[b] : -1, nd.k,
                         (nd.flags & AG_K_INT) != 0);
        }
        if (r < 0) st = (int)r;
        else copy[i] = r;
    }
    ag_set_grad_enabled(was);
    return st;
}

/* Same bits and type of a node's data / grad and its rebuilt copy's. */
static int same_read(fz *f, int64_t x, int64_t y, int what) {
    double _Complex a = ag_read(f->ctx, x, what), b = ag_read(f->ctx, y, what);
    return same_number(creal(a), creal(b)) && cimag(a) == cimag(b);
}

/* After a successful forward of g: the sources' grads copied to the
 * rebuilt ones, ag_graph_backward and the rebuild's ag_backward; then every
 * node reads as its copy. */
static void compare_passes(fz *f, ag_graph *g, const int64_t *order,
                           const int64_t *copy, int n) {
    for (int i = 0; i < n; i++) {
        ag_node nd;
        CHECK(ag_node_info(f->ctx, order[i], &nd) == AG_OK);
        if (ag_op_arity(nd.op) != 0) continue;      /* op nodes: fresh */
        double _Complex gr = ag_read(f->ctx, order[i], AG_READ_GRAD);
        CHECK(ag_set_grad(f->ctx, copy[i], creal(gr), cimag(gr) != 0.0) == AG_OK);
    }
    CHECK(ag_graph_backward(g) == AG_OK);
    CHECK(ag_backward(f->ctx, copy[n - 1]) == AG_OK);
    for (int i = 0; i < n; i++) {
        CHECK(same_read(f, order[i], copy[i], AG_READ_DATA));
        CHECK(same_read(f, order[i], copy[i], AG_READ_GRAD));
    }
}

/* A graph of a held root replayed against an eager rebuild: after
 * ag_graph_forward (the first failing node's status) and
 * ag_graph_backward -- which keep the nodes no handle holds in the graph --
 * every node reads as its rebuilt copy does after ag_backward: data, grad
 * and their types.  Sources' grads are copied first (backward adds to
 * them). */
static void step_replay_vs_eager(fz *f) {
    int64_t root = f->pool[u8(f) % POOL].id, order[REBUILD_MAX], copy[REBUILD_MAX];
    ag_graph *g;
    if (root < 0 || ag_graph_new(f->ctx, root, &g) != AG_OK) return;
    int n = program_order(f, root, order, REBUILD_MAX);
    if (n > 0) {
        CHECK(n == ag_graph_size(g));
        for (int i = 0; i < n; i++) CHECK(ag_graph_position(g, order[i]) == i);
        int st = rebuild(f, order, n, copy);
        if (replay_status(st)) {
            CHECK(ag_graph_forward(g) == st);
            if (st == AG_OK) compare_passes(f, g, order, copy, n);
        }
        for (int i = 0; i < n; i++)
            if (copy[i] >= 0) CHECK(ag_release(f->ctx, copy[i]) == AG_OK);
    }
    ag_graph_free(g);
}

/* ---- the compiler's options ------------------------------------------------ */

/* A script run over a captured graph and over a reference: forward (maybe
 * a first one with the default options before the options are set), up to
 * three looks at nodes between forward and backward, backward, and maybe
 * up to three more looks and a second backward.  A look reads a node's
 * data or grad, or sets one (which the graph takes from then on): a node
 * named through a handle is written back and kept visible, which may break
 * a dot chain and rebuild the steps. */
enum {
    PLAN_PRE = 1,     /* a forward with the default options first */
    PLAN_LOOK1 = 2,   /* looks between forward and backward       */
    PLAN_TWICE = 4,   /* a second backward                        */
    PLAN_LOOK2 = 8,   /* looks between the two backwards          */
    PLAN_TOGGLE = 16, /* AG_GRAPH_UNFUSED flipped before backward  */
    PLAN_TOGGLE2 = 32 /* ... and back before the second one        */
};
#define LOOKS 3

typedef struct {
    uint8_t idx, what;  /* node idx % n; AG_READ_DATA/GRAD, 2/3: set them */
    double v;
    int v_int;
} look_at_node;

typedef struct {
    int opts;           /* of the graph under test */
    uint8_t plan;
    int n_look[2];
    look_at_node look[2][LOOKS];
} script;

static script script_of(fz *f) {
    script s;
    s.opts = u8(f) % 4;  /* 0, INEXACT, UNFUSED, both */
    s.plan = u8(f);
    for (int k = 0; k < 2; k++) {
        s.n_look[k] = u8(f) % (LOOKS + 1);
        for (int j = 0; j < s.n_look[k]; j++) {
            look_at_node *l = &s.look[k][j];
            l->idx = u8(f);
            l->what = u8(f);
            l->v = 0.0;
            l->v_int = 0;
            if (l->what % 4 >= 2) {
                l->v = number(f);
                l->v_int = (l->what >> 2) & 1;
                if (l->v_int && !is_int_value(l->v)) l->v = 0.0;
            }
        }
    }
    return s;
}

/* The looks of group k at nodes h[0..n-1]: what each read gave, in seen. */
static void looks(fz *f, const script *s, int k, const int64_t *h, int n,
                  double _Complex *seen) {
    for (int j = 0; j < s->n_look[k]; j++) {
        const look_at_node *l = &s->look[k][j];
        int64_t x = h[l->idx % n];
        switch (l->what % 4) {
        case 2: CHECK(ag_set_data(f->ctx, x, l->v, l->v_int) == AG_OK); break;
        case 3: CHECK(ag_set_grad(f->ctx, x, l->v, l->v_int) == AG_OK); break;
        }
        seen[j] = ag_read(f->ctx, x, l->what % 2);
        CHECK(cimag(seen[j]) == 0.0 || cimag(seen[j]) == 1.0);
    }
}

/* The script over graph g (opts; flipping AG_GRAPH_UNFUSED where the plan
 * says when `toggles`), or over the eager copies h when g is NULL (their
 * forward was the rebuild: ag_backward for the graph's backward).  Returns
 * the forward's status; the looks' reads go to seen[0..5]. */
static int script_run(fz *f, const script *s, ag_graph *g, int opts, int toggles,
                      const int64_t *h, int n, double _Complex seen[2][LOOKS]) {
    if (g) {
        if (s->plan & PLAN_PRE) CHECK(replay_status(ag_graph_forward(g)));
        CHECK(ag_graph_set_options(g, opts) == AG_OK);
        int st = ag_graph_forward(g);
        CHECK(replay_status(st));
        if (st != AG_OK) return st;
    }
    if (s->plan & PLAN_LOOK1) looks(f, s, 0, h, n, seen[0]);
    if (g && toggles && (s->plan & PLAN_TOGGLE)) {
        opts ^= AG_GRAPH_UNFUSED;
        CHECK(ag_graph_set_options(g, opts) == AG_OK);
    }
    CHECK((g ? ag_graph_backward(g) : ag_backward(f->ctx, h[n - 1])) == AG_OK);
    if (s->plan & PLAN_TWICE) {
        if (s->plan & PLAN_LOOK2) looks(f, s, 1, h, n, seen[1]);
        if (g && toggles && (s->plan & PLAN_TOGGLE2)) {
            opts ^= AG_GRAPH_UNFUSED;
            CHECK(ag_graph_set_options(g, opts) == AG_OK);
        }
        CHECK((g ? ag_graph_backward(g) : ag_backward(f->ctx, h[n - 1])) == AG_OK);
    }
    return AG_OK;
}

/* Whether look j of group k ran (after a successful forward). */
static int looked(const script *s, int k, int j) {
    int need = k ? PLAN_TWICE | PLAN_LOOK2 : PLAN_LOOK1;
    return (s->plan & need) == need && j < s->n_look[k];
}

/* Every node's data and grad (with their types) after a script. */
static void snapshot(fz *f, const int64_t *h, int n, double _Complex *data,
                     double _Complex *grad) {
    for (int i = 0; i < n; i++) {
        data[i] = ag_read(f->ctx, h[i], AG_READ_DATA);
        grad[i] = ag_read(f->ctx, h[i], AG_READ_GRAD);
    }
}

static int same_complex(double _Complex x, double _Complex y) {
    return same_number(creal(x), creal(y)) && cimag(x) == cimag(y);
}

/* The largest finite magnitude of data and grads: how big the terms of a
 * reassociated sum may be. */
static double magnitude(const double _Complex *data, const double _Complex *grad,
                        int n) {
    double dm = 1.0, gm = 0.0;
    for (int i = 0; i < n; i++) {
        double d = fabs(creal(data[i])), g = fabs(creal(grad[i]));
        if (isfinite(d) && d > dm) dm = d;
        if (isfinite(g) && g > gm) gm = g;
    }
    return dm * gm;
}

/* Two grads of an inexact replay, fused and unfused: the fused softmax
 * gives its terms to the x_j elsewhere in the reverse order (and from fresh
 * zeros by the textbook y_j * (g_j - sum g_k y_k)), so they are equal
 * within 1e-9 relative + 1e-12 absolute -- or, as terms may cancel, within
 * 1e-10 of the scale of the terms (scale: the largest |data| * |grad| of
 * the graph; a mismatch of a non-finite one only when that scale may
 * overflow). */
static int close_grad(double _Complex x, double _Complex y, double scale) {
    if (cimag(x) != cimag(y)) return 0;
    double a = creal(x), b = creal(y);
    if (same_number(a, b)) return 1;
    if (!isfinite(a) || !isfinite(b)) return !(scale < 1e150);
    double d = fabs(a - b);
    return d <= 1e-9 * fmax(fabs(a), fabs(b)) + 1e-12 || d <= 1e-10 * scale;
}

/* The graph of a held root under a script with options from the input:
 * without AG_GRAPH_INEXACT every node reads (data, grad, their types) as
 * its eager rebuild's after the same script, bit for bit, and so did every
 * look; with it, the forward's status is the eager one's, and every node
 * reads as in a second graph of the root with AG_GRAPH_INEXACT |
 * AG_GRAPH_UNFUSED after the script: data bit for bit, grads close
 * (close_grad).  The two graphs share the nodes: the sources' data and
 * grads are put back between the runs (the eager copies get them first). */
static void step_compiled(fz *f) {
    int64_t root = f->pool[u8(f) % POOL].id, order[REBUILD_MAX], copy[REBUILD_MAX];
    script s = script_of(f);
    ag_graph *g;
    if (root < 0) return;
    int n = program_order(f, root, order, REBUILD_MAX);
    if (n <= 0 || ag_graph_new(f->ctx, root, &g) != AG_OK) return;
    CHECK(n == ag_graph_size(g));
    static double _Complex src_data[REBUILD_MAX], src_grad[REBUILD_MAX];
    static double _Complex data[2][REBUILD_MAX], grad[2][REBUILD_MAX];
    double _Complex seen[2][2][LOOKS];
    int is_src[REBUILD_MAX];
    for (int i = 0; i < n; i++) {
        ag_node nd;
        CHECK(ag_node_info(f->ctx, order[i], &nd) == AG_OK);
        is_src[i] = ag_op_arity(nd.op) == 0;
        src_data[i] = ag_read(f->ctx, order[i], AG_READ_DATA);
        src_grad[i] = ag_read(f->ctx, order[i], AG_READ_GRAD);
    }
    int eager_st = rebuild(f, order, n, copy);
    int eager = replay_status(eager_st);      /* else no room: no comparison */
    int inexact = s.opts & AG_GRAPH_INEXACT;
    int st = script_run(f, &s, g, s.opts, 1, order, n, seen[0]);
    if (eager) CHECK(st == eager_st);
    if (st == AG_OK) snapshot(f, order, n, data[0], grad[0]);
    ag_graph_free(g);
    if (eager && st == AG_OK && !inexact) {   /* against the eager copies */
        for (int i = 0; i < n; i++)
            if (is_src[i])
                CHECK(ag_set_grad(f->ctx, copy[i], creal(src_grad[i]),
                                  cimag(src_grad[i]) != 0.0) == AG_OK);
        CHECK(script_run(f, &s, NULL, 0, 0, copy, n, seen[1]) == AG_OK);
        snapshot(f, copy, n, data[1], grad[1]);
        for (int i = 0; i < n; i++)
            CHECK(same_complex(data[0][i], data[1][i]) &&
                  same_complex(grad[0][i], grad[1][i]));
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < LOOKS; j++)
                if (looked(&s, k, j))
                    CHECK(same_complex(seen[0][k][j], seen[1][k][j]));
    }
    if (inexact && ag_graph_new(f->ctx, root, &g) == AG_OK) {  /* unfused */
        int restored = 1;
        for (int i = 0; i < n; i++)
            if (is_src[i]) {
                CHECK(ag_set_data(f->ctx, order[i], creal(src_data[i]),
                                  cimag(src_data[i]) != 0.0) == AG_OK);
                CHECK(ag_set_grad(f->ctx, order[i], creal(src_grad[i]),
                                  cimag(src_grad[i]) != 0.0) == AG_OK);
                /* ag_leaf keeps an int -0.0, ag_set_data makes it +0.0 */
                restored &= same_complex(ag_read(f->ctx, order[i], AG_READ_DATA),
                                         src_data[i]);
            }
        script plain = s;
        plain.plan &= (uint8_t)~PLAN_PRE;
        int st2 = script_run(f, &plain, g, AG_GRAPH_INEXACT | AG_GRAPH_UNFUSED, 0,
                             order, n, seen[1]);
        CHECK(st2 == st || !restored);        /* not the same start: no compare */
        if (st == AG_OK && restored) {
            snapshot(f, order, n, data[1], grad[1]);
            double scale = fmax(magnitude(data[0], grad[0], n),
                                magnitude(data[1], grad[1], n));
            for (int i = 0; i < n; i++)
                CHECK(same_complex(data[0][i], data[1][i]) &&
                      close_grad(grad[0][i], grad[1][i], scale));
            for (int k = 0; k < 2; k++)
                for (int j = 0; j < LOOKS; j++)
                    if (looked(&s, k, j))
                        CHECK(s.look[k][j].what % 2 == AG_READ_DATA
                                  ? same_complex(seen[0][k][j], seen[1][k][j])
                                  : close_grad(seen[0][k][j], seen[1][k][j], scale));
        }
        ag_graph_free(g);
    }
    for (int i = 0; i < n; i++)
        if (copy[i] >= 0) CHECK(ag_release(f->ctx, copy[i]) == AG_OK);
}

/* ---- stale handles ------------------------------------------------------ */

typedef node_view look;

static look look_at(fz *f, int64_t h) {
    look l = node_view_of(f->ctx, h);
    CHECK(h < 0 || l.info_status == AG_OK);
    return l;
}

static int same_look(fz *f, const look *was) {
    return node_view_unchanged(f->ctx, was);
}

/* A stale handle -- a held one right after its last reference went (when
 * that freed it), one given back earlier, or a held one with another
 * generation -- given to every entry point that takes a handle: each must
 * fail with AG_ERR_STALE (the graph calls, which see no context: -1,
 * AG_ERR_NOT_LEAF, AG_ERR_ARG as for any node not in the graph) and change
 * nothing: the live count, the node now in the handle's slot (if any) and
 * a held node the calls also get. */
static void step_stale(fz *f) {
    uint8_t how = u8(f) % 3, sel = u8(f);
    int64_t h = -1;
    if (how == 0) {
        slot *s = pick(f);
        if (s->id < 0) return;
        h = s->id;
        while (s->id >= 0) drop(f, s);
        check_invariants(f);
        if (live(f, h)) return;               /* reached through a parent */
    } else if (how == 1) {
        h = f->grave[sel % GRAVE];
        if (h < 0 || live(f, h)) return;      /* -1: an empty grave */
    } else {
        slot *s = pick(f);
        if (s->id < 0) return;
        uint32_t gen = (uint32_t)(s->id >> 32) + 1u + sel;
        h = (int64_t)(gen & 0x7fffffffu) << 32 | slot_of(s->id);
    }
    CHECK(expect(f, h) == AG_ERR_STALE);
    int64_t other = -1;                       /* a held node, if any */
    for (int i = 0; i < POOL && other < 0; i++)
        other = f->pool[(i + sel) % POOL].id;
    int64_t in_slot = slot_of(h) < f->cap && f->seen[slot_of(h)]
                          ? f->cur[slot_of(h)] : -1;
    look w_other = look_at(f, other), w_slot = look_at(f, in_slot);
    size_t before = stats(f).live_nodes;
#define STALE(call, want)                                          \
    do {                                                           \
        CHECK((call) == (want));                                   \
        CHECK(stats(f).live_nodes == before);                      \
        CHECK(same_look(f, &w_other) && same_look(f, &w_slot));    \
    } while (0)
    int64_t o = other >= 0 ? other : h;       /* a good partner, if any */
    const int64_t pair[2] = {o, h};
    STALE(ag_retain(f->ctx, h), AG_ERR_STALE);
    STALE(ag_release(f->ctx, h), AG_ERR_STALE);
    STALE(ag_release_many(f->ctx, pair, 2), AG_ERR_STALE);
    for (int what = AG_READ_DATA; what <= AG_READ_GRAD; what++) {
        double _Complex r = ag_read(f->ctx, h, what);
        STALE(cimag(r), AG_ERR_STALE);
        CHECK(creal(r) == 0.0);
    }
    STALE(ag_set_data(f->ctx, h, 1.0, sel & 1), AG_ERR_STALE);
    STALE(ag_set_grad(f->ctx, h, 1.0, sel & 1), AG_ERR_STALE);
    ag_node n;
    STALE(ag_node_info(f->ctx, h, &n), AG_ERR_STALE);
    char buf[8] = "";
    STALE(ag_node_name(f->ctx, h, buf, sizeof buf), AG_ERR_STALE);
    int op = AG_ADD + sel % (AG_OP_COUNT - 1);  /* an op with children */
    if (op == AG_OPAQUE) op = AG_MUL;
    STALE(ag_apply(f->ctx, op, h, o, 2.0, 1), AG_ERR_STALE);
    if (binary(op)) STALE(ag_apply(f->ctx, op, o, h, 0, 0), AG_ERR_STALE);
    STALE(ag_apply_const(f->ctx, AG_ADD, h, 1.0, 1, sel & 1), AG_ERR_STALE);
    STALE(ag_opaque(f->ctx, 1.0, 0, h, -1, "stale"), AG_ERR_STALE);
    STALE(ag_opaque(f->ctx, 1.0, 0, other, h, sel & 1 ? NULL : "x"), AG_ERR_STALE);
    STALE(ag_backward(f->ctx, h), AG_ERR_STALE);
    int64_t w = sel % 3 == 0 ? h : o, b = sel % 3 == 1 ? h : o;
    int64_t x = sel % 3 == 2 ? h : o, out = -7;
    STALE(ag_layer(f->ctx, &w, &b, &x, 1, 1, sel & 1, &out), AG_ERR_STALE);
    ag_graph *g = NULL;
    STALE(ag_graph_new(f->ctx, h, &g), AG_ERR_STALE);
    CHECK(g == NULL);
    for (int k = 0; k < GRAPHS; k++) {
        if (!f->graph[k]) continue;
        double row = 0.5, res = 7, sum = 7;
        STALE(ag_graph_position(f->graph[k], h), -1);
        STALE(ag_graph_run(f->graph[k], &h, 1, &row, 1, 1, NULL, 0, &res, NULL, 1),
              AG_ERR_STALE);
        STALE(ag_graph_run(f->graph[k], NULL, 0, &row, 1, 1, &h, 1, &res, &sum, 1),
              AG_ERR_STALE);
        CHECK(res == 7 && sum == 7);
    }
    const double v[2] = {0.5, 0.25};
    STALE(ag_zero_grads(f->ctx, pair, 2), AG_ERR_STALE);
    STALE(ag_add_grads(f->ctx, pair, 2, v), AG_ERR_STALE);
    STALE(ag_sgd(f->ctx, pair, 2, v[0]), AG_ERR_STALE);
#undef STALE
}

/* ---- copies and one node's backward --------------------------------------- */

/* ag_copy_node of a held node over its own children (copy.copy), or over
 * any handles (then the status says whether they fit); ag_backprop_node of
 * any handle.  A copy keeps value, grad, types and name. */
static void step_copy(fz *f) {
    slot *s = pick(f);
    int how = u8(f) % 3;
    if (how == 2) {                            /* one node's rule, any handle */
        int64_t h = any_id(f);
        int st = ag_backprop_node(f->ctx, h);
        CHECK(st == AG_OK || st == AG_ERR_STALE || st == AG_ERR_ARG);
        CHECK((st == AG_OK) == live(f, h));
        return;
    }
    if (s->id < 0) return;
    ag_node n;
    CHECK(ag_node_info(f->ctx, s->id, &n) == AG_OK);
    int64_t a = how == 0 ? n.a : any_id(f), b = how == 0 ? n.b : -1;
    size_t before = stats(f).live_nodes;
    double _Complex data = ag_read(f->ctx, s->id, AG_READ_DATA);
    double _Complex grad = ag_read(f->ctx, s->id, AG_READ_GRAD);
    char name[64], copied[64];
    int64_t len = ag_node_name(f->ctx, s->id, name, sizeof name);
    int64_t r = ag_copy_node(f->ctx, s->id, a, b);
    if (how == 0) CHECK(r >= 0 || r == AG_ERR_NOMEM || r == AG_ERR_LIMIT);
    if (r >= 0) {                   /* before constructed(), which may release r */
        double _Complex d2 = ag_read(f->ctx, r, AG_READ_DATA);
        double _Complex g2 = ag_read(f->ctx, r, AG_READ_GRAD);
        CHECK(same_bits(creal(d2), creal(data)) && cimag(d2) == cimag(data));
        CHECK(same_bits(creal(g2), creal(grad)) && cimag(g2) == cimag(grad));
        CHECK(ag_node_name(f->ctx, r, copied, sizeof copied) == len);
        CHECK(strcmp(copied, name) == 0);
    }
    constructed(f, r, before);
}

/* ---- saved graphs ------------------------------------------------------------ */

/* What loading may answer: OK, bytes that are no saved graph, memory, the
 * node limit, or what building the nodes from the saved data raises. */
static int load_status_ok(int st) {
    return replay_status(st) || st == AG_ERR_FORMAT || st == AG_ERR_NOMEM ||
           st == AG_ERR_LIMIT;
}

/* Load len bytes: a failure leaves every node as it was; a loaded graph
 * holds exactly its own nodes, whose sources come back as live handles,
 * and saves to the same bytes when they were a save's (`saved`); freeing
 * it gives every node back. */
static void load_bytes(fz *f, const uint8_t *blob, size_t len, int saved) {
    size_t before = stats(f).live_nodes;
    ag_graph *g = NULL;
    int st = ag_graph_load(f->ctx, blob, len, &g);
    CHECK(load_status_ok(st) && (st == AG_OK) == (g != NULL));
    if (saved) CHECK(st != AG_ERR_FORMAT);
    if (st != AG_OK) {
        CHECK(stats(f).live_nodes == before);
        return;
    }
    int32_t n = ag_graph_size(g);
    CHECK(ag_graph_check(blob, len, NULL) == n);
    CHECK(stats(f).live_nodes == before + (size_t)n);
    int32_t pos[8];
    int32_t n_src = ag_graph_sources(g, pos, 8);
    CHECK(n_src >= 0 && n_src <= n);
    int64_t h[8];
    size_t k = n_src < 8 ? (size_t)n_src : 8;
    CHECK(ag_graph_handles(g, pos, k, h) == AG_OK);
    for (size_t i = 0; i < k; i++) {
        ag_node info;
        CHECK(ag_node_info(f->ctx, h[i], &info) == AG_OK);
        CHECK(info.op == AG_LEAF || info.op == AG_OPAQUE);
        CHECK(ag_graph_position(g, h[i]) == pos[i]);
    }
    CHECK(ag_release_many(f->ctx, h, k) == AG_OK);
    if (saved) {                              /* the same program and sources */
        uint8_t *again = malloc(len);
        CHECK(again && ag_graph_save(g, again, len) == (int64_t)len);
        CHECK(memcmp(again, blob, len) == 0);
        free(again);
    }
    ag_graph_free(g);
    CHECK(stats(f).live_nodes == before);
}

/* A held graph saved and loaded back; or bytes of the input loaded, raw or
 * behind a version-1 header for 1..8 nodes, with a right checksum or not. */
static void step_saved(fz *f) {
    uint8_t how = u8(f);
    if (how & 1) {
        ag_graph *g = f->graph[(how >> 1) % GRAPHS];
        if (!g) return;
        int64_t size = ag_graph_save(g, NULL, 0);
        if (size == AG_ERR_ARG) return;      /* a fake int the program made */
        CHECK(size >= SG_HEADER);
        uint8_t *blob = malloc((size_t)size);
        CHECK(blob && ag_graph_save(g, blob, (size_t)size) == size);
        load_bytes(f, blob, (size_t)size, 1);
        free(blob);
        return;
    }
    uint8_t blob[SG_HEADER + 255];
    size_t at = how & 2 ? SG_HEADER : 0, len = at + u8(f) % 256;
    if (at) sg_header(blob, 1u + (how >> 4) % 8);
    for (size_t i = at; i < len; i++) blob[i] = u8(f);
    if ((how & 4) && len >= SG_HEADER) sg_reseal(blob, len);
    load_bytes(f, blob, len, 0);
}

/* ---- out of memory: the n-th allocation of a step fails --------------------- */

/* The harness's allocator: the C library's, but the allocation that brings
 * oom_countdown to 0 fails.  Installed for every input (fuzz_allocator). */
static long oom_countdown;  /* 0: no failure armed */

static void *oom_malloc(size_t size, void *user) {
    (void)user;
    if (oom_countdown && --oom_countdown == 0) return NULL;
    return malloc(size);
}

static void *oom_realloc(void *p, size_t size, void *user) {
    (void)user;
    if (oom_countdown && --oom_countdown == 0) return NULL;
    return realloc(p, size);
}

static void oom_free(void *p, void *user) {
    (void)user;
    free(p);
}

static const ag_allocator fuzz_allocator = {oom_malloc, oom_realloc, oom_free,
                                            NULL};

static void step_any(fz *f);

/* The next step runs with its n-th allocation failing (n from the input):
 * every check of that step still holds -- a failed call is AG_ERR_NOMEM
 * and changes nothing (the invariants after the step are checked too). */
static void step_oom(fz *f) {
    oom_countdown = 1 + u8(f) % 16;
    step_any(f);
    oom_countdown = 0;
}

/* The opcode byte picks STEPS[byte % STEP_SLOTS]; unassigned slots do
 * nothing, so adding a step changes no existing input's meaning. */
#define STEP_SLOTS 32
typedef void (*step_fn)(fz *f);
static const step_fn STEPS[STEP_SLOTS] = {
    step_leaf, step_apply, step_apply_const, step_opaque, step_retain,
    step_release, step_release_many, step_take_child, step_backward,
    step_set, step_layer, step_limit, step_grad_mode, step_status_str,
    step_graph, step_bulk, step_stale, step_oom, step_copy, step_saved,
    step_replay_vs_eager, step_compiled,
    /* new steps go here, at the end */
};

static void step_any(fz *f) {
    step_fn step = STEPS[u8(f) % STEP_SLOTS];
    if (step && step != step_oom) step(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz f = {.p = data, .n = size};
    for (int i = 0; i < POOL; i++) f.pool[i].id = -1;
    for (int i = 0; i < GRAVE; i++) f.grave[i] = -1;
    /* odd-sized inputs run without the lock: the same calls, one thread */
    CHECK(ag_set_allocator(&fuzz_allocator) == AG_OK);
    f.ctx = ag_ctx_new_opt(size % 2 ? AG_CTX_ONE_THREAD : 0);
    CHECK(f.ctx != NULL);
    for (int i = 0; f.n && i < MAX_STEPS; i++) {
        step_any(&f);
        check_invariants(&f);
    }
    for (int i = 0; i < GRAPHS; i++) ag_graph_free(f.graph[i]);
    for (int i = 0; i < POOL; i++)
        while (f.pool[i].id >= 0) drop(&f, &f.pool[i]);
    CHECK(stats(&f).live_nodes == 0);
    ag_set_grad_enabled(1);                   /* per thread: reset it */
    ag_ctx_free(f.ctx);
    free(f.seen);
    free(f.cur);
    free(f.stack);
    return 0;
}
