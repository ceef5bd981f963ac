/*
 * analysis.c -- what the compiled replay (compiled.c) works out about a
 * captured program for the sources' current types: where Python's ints can
 * occur (a value, a grad), so that every other node runs a float kernel,
 * and which float sums and products run fused.
 */
#include <string.h>
#include "graph.h"

enum { KEEP = 0xff };   /* gkeep[p]: backward follows gi[p] */

/* ---- the rules, by op code ----------------------------------------------- */

/* The AG_READS_* bits of op's rules (0 for a source). */
static int reads_of(int op) {
#define ROW(code, rule, name, arity) READS_##arity(code, rule)
#define READS_0(code, rule) case AG_##code: return 0;
#define READS_1(code, rule) case AG_##code: return rule##_reads;
#define READS_2 READS_1
    switch ((ag_op)op) {
    AG_OP_LIST(ROW)
    }
    return 0;
#undef ROW
}

/* What child `second` (0: a, 1: b) of an op receives from grad g: the
 * op's R_grad_a / R_grad_b. */
static double grad_term(int op, int second, const ag_operands *o, double g,
                        int g_int, int *c_int) {
#define ROW(code, rule, name, arity) TERM_##arity(code, rule)
#define TERM_0(code, rule) case AG_##code: break;
#define TERM_1(code, rule) \
    case AG_##code: return rule##_grad_a(o, g, g_int, c_int);
#define TERM_2(code, rule)                                              \
    case AG_##code:                                                     \
        return second ? rule##_grad_b(o, g, g_int, c_int)               \
                      : rule##_grad_a(o, g, g_int, c_int);
    switch ((ag_op)op) {
    AG_OP_LIST(ROW)
    }
    *c_int = 0;
    return 0.0;
#undef ROW
}

/* ---- the analysis: where ints can occur --------------------------------- */

/* In these rules a result's int type depends on a value only through a
 * sign (relu's x < 0, a power's exponent >= 0), so a rule asked at x = -1
 * and at x = 2 (y = 1, the node's own exponent) with "may be int" operand
 * types tells whether its result may be an int. */
static const double probe_x[2] = {-1.0, 2.0};

static double exponent(const ag_graph *g, const ag_cins *in) {
    return in->op == AG_POW_CONST ? g->k[in->p] : 0.0;
}

static int value_may_be_int(const ag_graph *g, const ag_cins *in) {
    const uint8_t *mi = g->may_int;
    for (int s = 0; s < 2; s++) {
        ag_operands o = {probe_x[s], 1.0, exponent(g, in), 0.0, mi[in->a],
                         in->b >= 0 ? mi[in->b] : 0, in->k_int};
        double r;
        int r_int = 0;
        (void)ag__eval(in->op, &o, &r, &r_int);
        if (r_int) return 1;
    }
    return 0;
}

/* Whether child `second` may receive an int from an int grad. */
static int term_may_be_int(const ag_graph *g, const ag_cins *in, int second) {
    const uint8_t *mi = g->may_int;
    for (int s = 0; s < 2; s++) {
        ag_operands o = {probe_x[s], 1.0, exponent(g, in), 1.0, mi[in->a],
                         in->b >= 0 ? mi[in->b] : 0, in->k_int};
        int c_int = 0;
        (void)grad_term(in->op, second, &o, 1.0, 1, &c_int);
        if (c_int) return 1;
    }
    return 0;
}

/* gkeep[p] from the bits collected in it: 1 = some child term reaches p, 2
 * = one may be an int.  A grad stays as typed as it starts (the root's int
 * 1, a node no term reaches) or as its terms; one float term makes it a
 * float for good. */
static uint8_t keep_of(const ag_graph *g, int32_t p) {
    uint8_t bits = g->gkeep[p];
    return p == g->n - 1 || (bits & 2) || !(bits & 1) ? KEEP : 0;
}

void ag__analyse(ag_graph *g) {
    uint8_t *mi = g->may_int, *keep = g->gkeep;
    for (int32_t i = 0; i < g->n_src; i++) mi[g->src[i]] = g->src_int[i];
    for (int32_t i = 0; i < g->n_ins; i++)
        mi[g->cins[i].p] = (uint8_t)value_may_be_int(g, &g->cins[i]);
    memset(keep, 0, (size_t)g->n);
    for (int32_t i = g->n_ins; i-- > 0;) {  /* parents before children */
        const ag_cins *in = &g->cins[i];
        keep[in->p] = keep_of(g, in->p);
        for (int second = 0; second <= (in->b >= 0); second++) {
            int32_t ch = second ? in->b : in->a;
            keep[ch] |= (uint8_t)(1 | (keep[in->p] && term_may_be_int(g, in, second)
                                           ? 2 : 0));
        }
    }
    for (int32_t i = 0; i < g->n_src; i++)
        keep[g->src[i]] = keep_of(g, g->src[i]);
    for (int32_t i = 0; i < g->n_ins; i++) {
        ag_cins *in = &g->cins[i];
        int typed_operand = mi[in->a] || (in->b >= 0 && mi[in->b]);
        uint8_t t = mi[in->p] ? AG_TYPED_FORWARD : 0;
        if (keep[in->p]) t |= AG_TYPED_OWN_GRAD | AG_TYPED_BACKWARD;
        if (keep[in->a] || (in->b >= 0 && keep[in->b]) ||
            ((reads_of(in->op) & AG_READS_TYPES) && typed_operand))
            t |= AG_TYPED_BACKWARD;
        in->typed = t;
    }
    g->may_fail = 0;    /* an int may overflow; exp, log and powers may fail */
    for (int32_t i = 0; i < g->n_ins; i++)
        if ((g->cins[i].typed & AG_TYPED_FORWARD) ||
            (reads_of(g->cins[i].op) & AG_FLOAT_MAY_FAIL))
            g->may_fail = 1;
    ag__build_steps(g);
}

/* ---- fusion: runs of float sums and products, dot chains ---------------- */

/* Whether instruction i can be a member of a run: a float (untyped) sum
 * or product in no pattern. */
static int runnable(const ag_graph *g, int32_t i) {
    const ag_cins *in = &g->cins[i];
    return (in->op == AG_ADD || in->op == AG_MUL) && !in->typed &&
           g->role[i] == AG_ROLE_PLAIN;
}

/* The number of instructions of the dot chain of float pairs starting at
 * cins[i] (graph.h: ag__dot_pair), 0 when none starts there. */
static int32_t dot_length(const ag_graph *g, int32_t i) {
    int32_t len = 0;
    while (ag__dot_pair(g, i + len, len ? g->cins[i + len - 1].p : -1) &&
           !g->cins[i + len].typed && !g->cins[i + len + 1].typed &&
           g->role[i + len] == AG_ROLE_PLAIN && g->role[i + len + 1] == AG_ROLE_PLAIN &&
           !g->visible[g->cins[i + len].p] &&            /* inner members: */
           !(len && g->visible[g->cins[i + len - 1].p])) /* none visible   */
        len += 2;
    return len >= 2 ? len : 0;
}

/* Each softplus and softmax (patterns.c) becomes one step where its role
 * says, each dot chain one AG_DOT step (its positions in dot_wx and
 * dot_ms: a header and a pair each, at most n_ins in all), each run
 * of at least two other consecutive runnable instructions one AG_RUN step
 * (their members in links), the others stay as they are.  A fused step
 * does what its members' steps would, in their order: the same bits, one
 * dispatch; a run keeps 12 bytes per member, a chain its sum and grad in
 * registers from pair to pair. */
void ag__build_steps(ag_graph *g) {
    int32_t n_steps = 0, n_links = 0, n_pairs = 0;
    const int fuse = !(g->options & AG_GRAPH_UNFUSED);
    for (int32_t p = 0; p < g->n; p++) g->member_of[p] = -1;
    ag__find_patterns(g);
    for (int32_t i = 0; i < g->n_ins;) {
        if (g->role[i] != AG_ROLE_PLAIN) {      /* patterns.c */
            if (g->role[i] == AG_ROLE_SOFTPLUS)
                g->steps[n_steps] = (ag_cins){g->cins[i + 2].p, g->pat_at[i], 3,
                                              AG_SOFTPLUS, 0, 0};
            else if (g->role[i] == AG_ROLE_SOFTMAX)
                g->steps[n_steps] = (ag_cins){g->cins[i].p, g->pat_at[i],
                                              g->pat[g->pat_at[i]], AG_SOFTMAX, 0, 0};
            if (g->role[i] != AG_ROLE_INSIDE) ag__mark_inner(g, n_steps++);
            i++;
            continue;
        }
        int32_t len = fuse ? dot_length(g, i) : 0;
        if (len) {
            const ag_cins *in = &g->cins[i];
            g->steps[n_steps] = (ag_cins){in[len - 1].p, n_pairs, len / 2, AG_DOT, 0, 0};
            g->dot_wx[n_pairs] = (ag_pos2){in[1].a, -1};        /* the header */
            g->dot_ms[n_pairs++] = (ag_pos2){-1, in[len - 1].p};
            for (int32_t k = 0; k < len; k += 2) {
                g->dot_wx[n_pairs] = (ag_pos2){in[k].a, in[k].b};
                g->dot_ms[n_pairs++] = (ag_pos2){in[k].p, in[k + 1].p};
            }
            for (int32_t k = 0; k < len - 1; k++) g->member_of[in[k].p] = n_steps;
            n_steps++;
            i += len;
            continue;
        }
        if (fuse)
            while (i + len < g->n_ins && runnable(g, i + len) &&
                   !(len && dot_length(g, i + len)))
                len++;
        if (len < 2) {
            g->steps[n_steps++] = g->cins[i++];
            continue;
        }
        g->steps[n_steps++] = (ag_cins){g->cins[i].p, n_links, len, AG_RUN, 0, 0};
        for (int32_t j = 0; j < len; j++, i++)
            g->links[n_links++] = (ag_link){
                g->cins[i].p, (uint32_t)g->cins[i].a |
                    (g->cins[i].op == AG_MUL ? UINT32_C(1) << 31 : 0),
                g->cins[i].b};
    }
    g->n_steps = n_steps;
    g->inner_types_stale = 1;   /* new inner members: their types at the
                                 * next forward (compiled.c) */
}
