/*
 * eager.c -- the eager engine: node constructors (values computed by the
 * rules of rules.h), the per-thread recording switch, topological sort and
 * micrograd's backward.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "alloc.h"
#include "eager.h"
#include "rules.h"

#define DATA_IS_INT(c, i) (((c)->flags[i] & AG_DATA_INT) != 0)

static _Thread_local int grad_disabled;  /* 0: recording (the default) */

int ag_set_grad_enabled(int enabled) {
    int was = !grad_disabled;
    grad_disabled = !enabled;
    return was;
}

int ag_is_grad_enabled(void) { return !grad_disabled; }

/* The arena's node arrays, as the backward rules use them: a local copy of
 * the pointers lets the compiler keep them in registers (a store to flags[],
 * unsigned char, could otherwise change the ag_ctx fields). */
typedef struct nodes {
    double *data, *grad;
    const double *k;
    const int32_t *a, *b;
    const uint8_t *op;
    uint8_t *flags;
} nodes;

static nodes nodes_of(ag_ctx *c) {
    return (nodes){c->data, c->grad, c->k, c->a, c->b, c->op, c->flags};
}

/* grad[ch] += v, with Python's int/float rule for the sum.  An int sum that
 * overflows a double becomes a float (inf). */
static inline void accumulate(const nodes *c, int32_t ch, double v,
                              int v_int) {
    uint8_t f = c->flags[ch];              /* read once: the double store
                                             * below could alias it */
    double old = (f & AG_GRAD_ZERO) ? 0.0 : c->grad[ch];
    int is_int;
    c->grad[ch] = ag__grad_sum(old, (f & AG_GRAD_INT) != 0, v, v_int, &is_int);
    f &= (uint8_t)~(AG_GRAD_INT | AG_GRAD_ZERO);
    c->flags[ch] = (uint8_t)(is_int ? f | AG_GRAD_INT : f);
}

/* What a rule that reads `reads` (AG_READS_*) sees of node id (flags f,
 * children a, b): its children's values and types and its exponent.  Only
 * those are loaded, as each op's case asks: loads the compiler could share
 * between cases would be made for every op.  (The node's own value, out,
 * is loaded by backprop_g for every op.) */
static AG_ALWAYS_INLINE ag_operands operands_of(const nodes *c, int32_t id,
                                                uint8_t f, int32_t a,
                                                int32_t b, int reads) {
    ag_operands o = {0.0, 0.0, 0.0, 0.0, 0, 0, (f & AG_K_INT) != 0};
    if (reads & AG_READS_X) {
        o.x = c->data[a];
        o.x_int = DATA_IS_INT(c, a);
    }
    if (reads & AG_READS_Y) {
        o.y = c->data[b];
        o.y_int = DATA_IS_INT(c, b);
    }
    if (reads & AG_READS_K) o.k = c->k[id];  /* written for POW_CONST only */
    return o;
}

/* The rules for node id (flags f) whose grad g has the type g_int: each
 * child, a first, receives what the op's rules say. */
static AG_ALWAYS_INLINE void backprop_g(const nodes *c, int32_t id, uint8_t f,
                                        double g, int g_int) {
    int32_t a = c->a[id], b = c->b[id];
    double out = c->data[id];  /* for every op: the backward pass then reads
                                * data[] in its order, which runs faster
                                * than reading it for some ops only */
    ag_operands o;
    double v;
    int v_int;
#define ROW(code, rule, name, arity) BACK_##arity(code, rule)
#define BACK_0(code, rule) case AG_##code: break;  /* sources: no rule */
#define TO_CHILD_A(rule)                                    \
        o = operands_of(c, id, f, a, b, rule##_reads);      \
        o.out = out;                                        \
        v = rule##_grad_a(&o, g, g_int, &v_int);            \
        accumulate(c, a, v, v_int);
#define BACK_1(code, rule)                                  \
    case AG_##code:                                         \
        TO_CHILD_A(rule)                                    \
        break;
#define BACK_2(code, rule)                                  \
    case AG_##code:                                         \
        TO_CHILD_A(rule)                                    \
        v = rule##_grad_b(&o, g, g_int, &v_int);            \
        accumulate(c, b, v, v_int);                         \
        break;
    switch ((ag_op)c->op[id]) {
    AG_OP_LIST(ROW)
    }
#undef ROW
#undef TO_CHILD_A
#undef BACK_0
#undef BACK_1
#undef BACK_2
}

/* Inlined twice so that the compiler specialises the common float grad (all
 * contributions float: no int bookkeeping) apart from the int one. */
static inline void backprop(const nodes *c, int32_t id) {
    uint8_t f = c->flags[id];
    c->flags[id] = f & (uint8_t)~AG_MARK;   /* set by topo_marked, if any */
    double g = (f & AG_GRAD_ZERO) ? 0.0 : c->grad[id];
    if (f & AG_GRAD_INT)
        backprop_g(c, id, f, g, 1);
    else
        backprop_g(c, id, f, g, 0);
}

/* ag__topo, leaving AG_MARK set on the n nodes of c->order; with_leaves 0
 * leaves out the nodes without children (leaves, childless opaque nodes),
 * which have no backward rule: backward passes them by at no cost.  The
 * arrays are read through local pointers: a store to flags[] (unsigned
 * char, which may alias anything) would otherwise make the compiler reload
 * every c->field after it. */
static AG_ALWAYS_INLINE size_t topo_marked(ag_ctx *c, int32_t root,
                                           int with_leaves) {
    const int32_t *A = c->a, *B = c->b;
    uint8_t *flags = c->flags;
    int32_t *stack = c->stack, *order = c->order;
    size_t n = 0, sp = 0;
    stack[sp++] = root;
    flags[root] |= AG_MARK;
    while (sp) {                             /* post-order DFS, a before b */
        int32_t x = stack[sp - 1], kid[2] = {A[x], B[x]};
        int j = 0;
        for (; j < 2; j++) {
            int32_t ch = kid[j];
            if (ch == AG_NONE || (flags[ch] & AG_MARK)) continue;
            int32_t ca = A[ch];
            if (ca == AG_NONE) {             /* childless: finished at once */
                if (with_leaves) {
                    flags[ch] |= AG_MARK;
                    order[n++] = ch;
                }
                continue;
            }
            int32_t cb = B[ch];
            flags[ch] |= AG_MARK;
            if ((A[ca] == AG_NONE || (flags[ca] & AG_MARK)) &&
                (cb == AG_NONE || A[cb] == AG_NONE || (flags[cb] & AG_MARK))) {
                /* nothing to visit below ch but childless children: finish
                 * it here, as visiting it would (saves a push and a pop) */
                if (with_leaves && !(flags[ca] & AG_MARK)) {
                    flags[ca] |= AG_MARK;
                    order[n++] = ca;
                }
                if (with_leaves && cb != AG_NONE && !(flags[cb] & AG_MARK)) {
                    flags[cb] |= AG_MARK;
                    order[n++] = cb;
                }
                order[n++] = ch;
                continue;
            }
            stack[sp++] = ch;
            break;
        }
        if (j == 2) {                        /* both children finished */
            order[n++] = x;
            sp--;
        }
    }
    return n;
}

size_t ag__topo(ag_ctx *c, int32_t root) {
    size_t n = topo_marked(c, root, 1);
    for (size_t i = 0; i < n; i++) c->flags[c->order[i]] &= ~AG_MARK;
    return n;
}

void ag__backward_order(ag_ctx *c, int32_t root, const int32_t *order,
                        size_t n) {
    nodes v = nodes_of(c);
    c->grad[root] = 1.0;
    c->flags[root] = (c->flags[root] & (uint8_t)~AG_GRAD_ZERO) | AG_GRAD_INT;
    enum { AHEAD = 16 };  /* prefetch distance: an order's ids jump (DFS) */
    for (size_t i = n; i-- > 0;) {
        if (i >= AHEAD) {
            int32_t f = order[i - AHEAD];
            __builtin_prefetch(&v.flags[f], 1);
            __builtin_prefetch(&v.a[f]);
            __builtin_prefetch(&v.b[f]);
            __builtin_prefetch(&v.grad[f], 1);
        }
        backprop(&v, order[i]);
    }
}

/* AG_ERR_USER_RULE when one of the n nodes of order has the caller's own
 * rule (then the marks topo_marked left are cleared), else AG_OK.  Only
 * looked at while such nodes exist. */
static int check_user_rules(ag_ctx *c, const int32_t *order, size_t n) {
    if (!ag__reaches_user_rule(c, order, n)) return AG_OK;
    for (size_t i = 0; i < n; i++) c->flags[order[i]] &= (uint8_t)~AG_MARK;
    return AG_ERR_USER_RULE;
}

int ag__reaches_user_rule(const ag_ctx *c, const int32_t *order, size_t n) {
    if (!c->user_rules) return 0;
    for (size_t i = 0; i < n; i++)
        if (c->flags[order[i]] & AG_USER_RULE) return 1;
    return 0;
}

int ag_set_user_rule(ag_ctx *c, int64_t h) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    if (id >= 0 && !(c->flags[id] & AG_USER_RULE)) {
        c->flags[id] |= AG_USER_RULE;
        c->user_rules++;
    }
    AG_UNLOCK(c);
    return id < 0 ? (int)id : AG_OK;
}

/* Node x or a child of it is private to a graph (its state stale here). */
static int private_near(const ag_ctx *c, int32_t x) {
    return ((c->flags[x] | (c->a[x] != AG_NONE ? c->flags[c->a[x]] : 0) |
             (c->b[x] != AG_NONE ? c->flags[c->b[x]] : 0)) & AG_PRIVATE) != 0;
}

/* Write graphs' private nodes back if a pass over order[0..n) (and the
 * children its rules add into) would touch one.  Locked. */
static void flush_if_reached(ag_ctx *c, const int32_t *order, size_t n) {
    if (!c->private_owner) return;
    for (size_t i = 0; i < n; i++)
        if (private_near(c, order[i])) {
            ag__flush_private(c);
            return;
        }
}

int ag_backprop_node(ag_ctx *c, int64_t h) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    if (id >= 0) {
        int32_t x = (int32_t)id;
        flush_if_reached(c, &x, 1);           /* its children's data */
        nodes v = nodes_of(c);
        backprop(&v, (int32_t)id);
    }
    AG_UNLOCK(c);
    return id < 0 ? (int)id : AG_OK;
}

int ag_backward(ag_ctx *c, int64_t h) {
    AG_LOCK(c);
    int64_t root = ag__slot(c, h);
    int st = root < 0 ? (int)root : AG_OK;
    if (root >= 0) {
        size_t n = topo_marked(c, (int32_t)root, 0);  /* no leaves: no rule */
        flush_if_reached(c, c->order, n);  /* the pass reads what root reaches */
        st = check_user_rules(c, c->order, n);
        if (st == AG_OK)
            ag__backward_order(c, (int32_t)root, c->order, n);  /* clears marks */
    }
    AG_UNLOCK(c);
    return st;
}

/* op(a, b) as a new node with refs = 0 -- or, while recording is off, a
 * leaf with its value.  Room must be reserved.  Returns id or a status.
 * Inlined into each constructor, where op is often a constant. */
static AG_ALWAYS_INLINE int64_t make_node(ag_ctx *c, int op, int32_t a,
                                          int32_t b, double k, int k_int) {
    ag_operands o = {c->data[a], 0.0, k, 0.0, DATA_IS_INT(c, a), 0, k_int};
    if (b != AG_NONE) {
        o.y = c->data[b];
        o.y_int = DATA_IS_INT(c, b);
    }
    double r;
    int r_int;
    int st = ag__eval(op, &o, &r, &r_int);
    if (st != AG_OK) return st;
    int flags = r_int ? AG_DATA_INT : 0;
    if (grad_disabled)
        return ag__alloc(c, AG_LEAF, r, flags, AG_NONE, AG_NONE);
    int32_t id = ag__alloc(c, op, r, flags | (k_int ? AG_K_INT : 0), a, b);
    if (op == AG_POW_CONST) c->k[id] = k;
    return id;
}

/* A new node's handle for the caller (refs = 1), or its status. */
static inline int64_t handed_out(ag_ctx *c, int64_t id) {
    if (id < 0) return id;
    c->refs[id] = 1;
    return ag__handle(c, (int32_t)id);
}

/* ag_apply, inlined where op is a constant (the facade's ag_eager_*): the
 * switches over ops fold away. */
static AG_ALWAYS_INLINE int64_t apply(ag_ctx *c, int op, int64_t ha,
                                      int64_t hb, double k, int k_int) {
    AG_LOCK(c);
    int n = ag__arity(op);
    int64_t a = ag__slot(c, ha), b = n == 2 ? ag__slot(c, hb) : AG_NONE;
    int64_t r = n <= 0 ? AG_ERR_ARG : a < 0 ? a : n == 2 && b < 0 ? b
                                                 : ag__reserve(c, 1);
    if (r == AG_OK)
        r = handed_out(c, make_node(c, op, (int32_t)a, (int32_t)b, k, k_int));
    AG_UNLOCK(c);
    return r;
}

int64_t ag_apply(ag_ctx *c, int op, int64_t ha, int64_t hb, double k,
                 int k_int) {
    return apply(c, op, ha, hb, k, k_int);
}

int64_t ag_apply_const(ag_ctx *c, int op, int64_t ha, double v, int v_int,
                       int const_first) {
    AG_LOCK(c);
    int64_t a = ag__slot(c, ha);
    int64_t r = ag__arity(op) != 2 ? AG_ERR_ARG : a < 0 ? a : ag__reserve(c, 2);
    if (r == AG_OK) {
        int32_t leaf = ag__alloc(c, AG_LEAF, v_int ? v + 0.0 : v,  /* no int -0 */
                                 v_int ? AG_DATA_INT : 0, AG_NONE, AG_NONE);
        c->refs[leaf] = 1;                   /* held while building */
        r = handed_out(c, const_first ? make_node(c, op, leaf, (int32_t)a, 0.0, 0)
                                      : make_node(c, op, (int32_t)a, leaf, 0.0, 0));
        ag__unref(c, leaf);                  /* the node's link keeps it */
    }
    AG_UNLOCK(c);
    return r;
}

int64_t ag_float_leaf(double v) {
    ag_ctx *c = ag__facade_ctx();
    return c ? ag_leaf(c, v, 0) : AG_ERR_ARG;
}

int64_t ag_int_leaf(double v) {
    ag_ctx *c = ag__facade_ctx();
    return c ? ag_leaf(c, v, 1) : AG_ERR_ARG;
}

int64_t ag_apply1(int op, int64_t a) { return ag_apply2(op, a, -1); }

int64_t ag_apply2(int op, int64_t a, int64_t b) {
    ag_ctx *c = ag__facade_ctx();
    return c ? ag_apply(c, op, a, b, 0.0, 0) : AG_ERR_ARG;
}

/* ag_eager_<rule>: the header's list, each op's function from one macro. */
static AG_ALWAYS_INLINE int64_t eager(int op, int64_t a, int64_t b) {
    ag_ctx *c = ag__facade_ctx();
    return c ? apply(c, op, a, b, 0.0, 0) : AG_ERR_ARG;
}
#define EAGER_UNARY(rule, code) \
    int64_t ag_eager_##rule(int64_t a) { return eager(code, a, -1); }
#define EAGER_BINARY(rule, code) \
    int64_t ag_eager_##rule(int64_t a, int64_t b) { return eager(code, a, b); }
EAGER_BINARY(add, AG_ADD)
EAGER_BINARY(mul, AG_MUL)
EAGER_BINARY(pow, AG_POW)
EAGER_UNARY(relu, AG_RELU)
EAGER_UNARY(tanh, AG_TANH)
EAGER_UNARY(exp, AG_EXP)
EAGER_UNARY(log, AG_LOG)
EAGER_UNARY(sigmoid, AG_SIGMOID)
EAGER_UNARY(abs, AG_ABS)
#undef EAGER_UNARY
#undef EAGER_BINARY

int64_t ag_apply_k(int code, int64_t a, double v) {
    ag_ctx *c = ag__facade_ctx();
    return c ? ag_apply_const(c, code & AG_K_OP, a, v, (code & AG_K_IS_INT) != 0,
                              (code & AG_K_FIRST) != 0)
             : AG_ERR_ARG;
}

/* Replace the held node *acc by op(*acc, b): the new node is held, the old
 * hold given back.  Returns AG_OK or a status (then *acc is unchanged). */
static int fold(ag_ctx *c, int op, int32_t *acc, int32_t b) {
    int64_t id = make_node(c, op, *acc, b, 0.0, 0);
    if (id < 0) return (int)id;
    c->refs[id]++;
    ag__unref(c, *acc);
    *acc = (int32_t)id;
    return AG_OK;
}

int ag_layer(ag_ctx *c, const int64_t *w, const int64_t *b, const int64_t *x,
             int32_t n_in, int32_t n_out, int nonlin, int64_t *out) {
    AG_LOCK(c);
    int st = n_in < 0 || n_out < 0 ? AG_ERR_ARG : AG_OK;
    int32_t j = 0;
    if (st == AG_OK) st = ag__all_live(c, x, (size_t)n_in);
    if (st == AG_OK) st = ag__all_live(c, w, (size_t)n_out * (size_t)n_in);
    if (st == AG_OK) st = ag__all_live(c, b, (size_t)n_out);
    if (st == AG_OK)
        st = ag__reserve(c, (size_t)n_out * (2 * (size_t)n_in + 1));
    for (; st == AG_OK && j < n_out; j++) {
        int32_t acc = (int32_t)ag__slot(c, b[j]);  /* sum((w*x ...), b) */
        c->refs[acc]++;
        for (int32_t i = 0; st == AG_OK && i < n_in; i++) {
            int64_t prod = make_node(c, AG_MUL,
                                     (int32_t)ag__slot(c, w[j * n_in + i]),
                                     (int32_t)ag__slot(c, x[i]), 0.0, 0);
            if (prod < 0) { st = (int)prod; break; }
            c->refs[prod]++;
            st = fold(c, AG_ADD, &acc, (int32_t)prod);
            ag__unref(c, (int32_t)prod);     /* the sum's link keeps it */
        }
        if (st == AG_OK && nonlin) st = fold(c, AG_RELU, &acc, AG_NONE);
        if (st != AG_OK) { ag__unref(c, acc); break; }
        out[j] = ag__handle(c, acc);         /* the hold becomes the caller's */
    }
    if (st != AG_OK)
        while (j-- > 0) ag__unref(c, (int32_t)ag__slot(c, out[j]));
    AG_UNLOCK(c);
    return st;
}

int64_t ag_leaf(ag_ctx *c, double v, int is_int) {
    AG_LOCK(c);
    int64_t r = ag__reserve(c, 1);
    if (r == AG_OK)
        r = handed_out(c, ag__alloc(c, AG_LEAF, is_int ? v + 0.0 : v,  /* no */
                                    is_int ? AG_DATA_INT : 0,  /* int -0 */
                                    AG_NONE, AG_NONE));
    AG_UNLOCK(c);
    return r;
}

/* The slot of an optional child handle of ag_opaque (-1: AG_NONE), or its
 * status. */
static int64_t child_slot(ag_ctx *c, int64_t h) {
    return h == -1 ? AG_NONE : ag__slot(c, h);
}

int64_t ag_opaque(ag_ctx *c, double v, int is_int, int64_t ha, int64_t hb,
                  const char *name) {
    AG_LOCK(c);
    int64_t a = child_slot(c, ha), b = child_slot(c, hb);
    int64_t r = a < AG_NONE ? a : b < AG_NONE ? b
              : a == AG_NONE && b != AG_NONE ? AG_ERR_ARG  /* b, but no a */
              : ag__reserve(c, 1);
    char *copy = NULL;
    if (r == AG_OK && name && name[0]) {
        size_t len = strlen(name) + 1;
        copy = ag__malloc(len);
        if (copy) memcpy(copy, name, len);
        else r = AG_ERR_NOMEM;
    }
    if (r == AG_OK) {
        int32_t id = ag__alloc(c, AG_OPAQUE, is_int ? v + 0.0 : v,
                               (is_int ? AG_DATA_INT : 0) | (copy ? AG_NAMED : 0),
                               (int32_t)a, (int32_t)b);
        if (copy) c->names[id] = copy;
        r = handed_out(c, id);
    }
    AG_UNLOCK(c);
    return r;
}

/* The slot for child handle h of a copy of a node whose child slot is
 * `has` (AG_NONE: none): -1 for none, else a live slot; or a status. */
static int64_t copy_child(ag_ctx *c, int32_t has, int64_t h) {
    if ((has == AG_NONE) != (h == -1)) return AG_ERR_ARG;
    return h == -1 ? AG_NONE : ag__slot(c, h);
}

int64_t ag_copy_node(ag_ctx *c, int64_t h, int64_t ha, int64_t hb) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h), a = AG_NONE, b = AG_NONE, r = id;
    if (id >= 0) {
        a = copy_child(c, c->a[id], ha);
        b = copy_child(c, c->b[id], hb);
        r = a < AG_NONE ? a : b < AG_NONE ? b : ag__reserve(c, 1);
    }
    char *name = NULL;
    if (r == AG_OK && (c->flags[id] & AG_NAMED)) {
        size_t len = strlen(c->names[id]) + 1;
        name = ag__malloc(len);
        if (name) memcpy(name, c->names[id], len);
        else r = AG_ERR_NOMEM;
    }
    if (r == AG_OK) {
        uint8_t f = c->flags[id] & (uint8_t)(AG_DATA_INT | AG_K_INT | AG_NAMED);
        int32_t n = ag__alloc(c, c->op[id], c->data[id], f, (int32_t)a,
                              (int32_t)b);
        uint8_t g = c->flags[id] & (uint8_t)(AG_GRAD_INT | AG_GRAD_ZERO);
        c->flags[n] = (uint8_t)((c->flags[n] & ~(AG_GRAD_INT | AG_GRAD_ZERO)) | g);
        if (!(g & AG_GRAD_ZERO)) c->grad[n] = c->grad[id];
        if (c->op[id] == AG_POW_CONST) c->k[n] = c->k[id];
        if (name) c->names[n] = name;
        r = handed_out(c, n);
    }
    AG_UNLOCK(c);
    return r;
}

int ag_node_info(ag_ctx *c, int64_t h, ag_node *out) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    if (id >= 0) {
        int32_t a = c->a[id], b = c->b[id];
        out->op = c->op[id];
        out->a = a == AG_NONE ? -1 : ag__handle(c, a);
        out->b = b == AG_NONE ? -1 : ag__handle(c, b);
        out->k = out->op == AG_POW_CONST ? c->k[id] : 0.0;
        out->flags = c->flags[id] & (AG_DATA_INT | AG_GRAD_INT | AG_K_INT);
        out->refs = c->refs[id];
    }
    AG_UNLOCK(c);
    return id < 0 ? (int)id : AG_OK;
}
