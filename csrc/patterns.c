/*
 * patterns.c -- softplus and softmax, found in a compiled replay's program
 * (analysis.c: ag__build_steps) and each run as one step (compiled.c).
 *
 * softplus  log(exp(x) + c): three consecutive float instructions, an exp
 *           and a sum used once each.  Its step does what theirs would, in
 *           their order (forward and backward): the same bits, in every mode.
 * softmax   y_j = e_j * (e_0 + e_1 + ... + e_(n-1)) ** -1 with e_j = exp(x_j):
 *           the exps used by the sum and their product alone, the sums once,
 *           the power by the n products alone.  Only in an inexact replay
 *           (AG_GRAPH_INEXACT): its step sits at its first product, so its
 *           backward gives its terms to the x_j at that point of the reverse
 *           order, not at each exp's; from fresh zeros (right after a
 *           forward) they are y_j * (g_j - sum_k g_k y_k), the textbook
 *           form of the same derivative, and the outputs' grads g_j are
 *           kept (pat_g) to work out the inner members' when asked (where
 *           the power's own derivative, -1 / s^2, overflows or underflows,
 *           the members' grads do, but the x_j's stay finite and right).
 *           The values are the inexact replay's own, bit for bit.
 * Every member's value is stored, as its own step would, and its grad
 * after a backward (but a softmax's inner ones' from fresh zeros); the
 * inner ones' fresh grads (int zeros) are not (compiled.c: inner_grads).
 * No inner member is visible: one looked at leaves its pattern (the steps
 * are remade).  A step's members' positions are in g->pat, its entry in
 * g->steps naming its offset there (ag_cins.a): compact, so that a step
 * reads no instruction.
 */
#include <stdlib.h>
#include <string.h>
#include "alloc.h"
#include "graph.h"

/* ---- finding them --------------------------------------------------------- */

/* Whether cins[i] is a float instruction of op `op` no pattern has yet. */
static int free_as(const ag_graph *g, int32_t i, int op) {
    return i >= 0 && i < g->n_ins && g->cins[i].op == op && !g->cins[i].typed &&
           g->role[i] == AG_ROLE_PLAIN;
}

/* Append x to g->pat (grown as needed); 0 when out of memory. */
static int put(ag_graph *g, int32_t x) {
    if (g->n_pat == g->pat_cap) {
        size_t cap = g->pat_cap ? 2 * (size_t)g->pat_cap : 256;
        int32_t *pat = ag__realloc(g->pat, cap * sizeof *pat);
        if (pat) g->pat = pat;
        double *saved = ag__realloc(g->pat_g, cap * sizeof *saved);
        if (saved) g->pat_g = saved;
        if (!pat || !saved) return 0;
        g->pat_cap = (int32_t)cap;
    }
    g->pat[g->n_pat++] = x;
    return 1;
}

/* softplus at cins[i]: exp, then a sum of it, then the log of that. */
static int softplus_at(ag_graph *g, int32_t i) {
    if (!free_as(g, i, AG_EXP) || !free_as(g, i + 1, AG_ADD) ||
        !free_as(g, i + 2, AG_LOG))
        return 0;
    const ag_cins *e = &g->cins[i], *s = &g->cins[i + 1], *l = &g->cins[i + 2];
    if ((s->a != e->p) == (s->b != e->p) || l->a != s->p ||
        g->uses[e->p] != 1 || g->uses[s->p] != 1 || g->visible[e->p] ||
        g->visible[s->p])
        return 0;
    int32_t at = g->n_pat, e_first = s->a == e->p;  /* positions: see SP */
    if (!put(g, e->a) || !put(g, e->p) || !put(g, e_first ? s->b : s->a) ||
        !put(g, s->p) || !put(g, l->p) || !put(g, e_first))
        return 0;
    g->role[i] = AG_ROLE_SOFTPLUS;
    g->role[i + 1] = g->role[i + 2] = AG_ROLE_INSIDE;
    g->pat_at[i] = at;
    return 1;
}

/* softmax whose power is cins[i]; ins_at: position -> instruction index;
 * first_use / next_use: the products whose operand b a position is.  The
 * products of some terms may be missing (not in the graph): y_j -1. */
static int softmax_at(ag_graph *g, int32_t i, const int32_t *ins_at,
                      const int32_t *first_use, const int32_t *next_use) {
    if (!free_as(g, i, AG_POW_CONST) || g->k[g->cins[i].p] != -1.0 ||
        g->visible[g->cins[i].p])
        return 0;
    int32_t pw = g->cins[i].p;
    int32_t rev_e[AG_SOFTMAX_MAX], rev_s[AG_SOFTMAX_MAX], n = 0;
    int32_t cur = g->cins[i].a;    /* the sum chain, from its last sum down */
    while (free_as(g, ins_at[cur], AG_ADD) && g->uses[cur] == 1 &&
           !g->visible[cur]) {
        const ag_cins *s = &g->cins[ins_at[cur]];
        if (n == AG_SOFTMAX_MAX - 1) return 0;
        rev_s[n] = ins_at[cur];
        rev_e[n++] = ins_at[s->b];
        cur = s->a;
    }
    if (n < 1) return 0;
    rev_e[n++] = ins_at[cur];      /* e_0 */
    int32_t e[AG_SOFTMAX_MAX], y[AG_SOFTMAX_MAX], sums[AG_SOFTMAX_MAX];
    for (int32_t j = 0; j < n; j++) {
        e[j] = rev_e[n - 1 - j];
        y[j] = -1;
        if (!free_as(g, e[j], AG_EXP) || g->visible[g->cins[e[j]].p]) return 0;
        for (int32_t t = 0; t < j; t++) if (e[t] == e[j]) return 0;
    }
    for (int32_t j = 1; j < n; j++) sums[j] = rev_s[n - 1 - j];
    uint32_t found = 0;            /* the products e_j * power */
    for (int32_t u = first_use[pw]; u >= 0; u = next_use[u]) {
        int32_t j = 0;
        while (j < n && g->cins[e[j]].p != g->cins[u].a) j++;
        if (j == n || y[j] >= 0 || !free_as(g, u, AG_MUL)) return 0;
        y[j] = u;
        found++;
    }
    if (found == 0 || found != g->uses[pw]) return 0;
    int32_t head = -1;
    for (int32_t j = 0; j < n; j++) {
        if (g->uses[g->cins[e[j]].p] != 1u + (y[j] >= 0)) return 0;
        if (y[j] >= 0 && (head < 0 || y[j] < head)) head = y[j];
    }
    int32_t at = g->n_pat;       /* positions: see TERM */
    const ag_cins *ci = g->cins;
    if (!put(g, n) || !put(g, pw)) return 0;
    for (int32_t j = 0; j < n; j++)
        if (!put(g, ci[e[j]].a) || !put(g, ci[e[j]].p) ||
            !put(g, y[j] >= 0 ? ci[y[j]].p : -1) || !put(g, j ? ci[sums[j]].p : -1))
            return 0;
    g->role[i] = AG_ROLE_INSIDE;
    for (int32_t j = 0; j < n; j++) {
        g->role[e[j]] = AG_ROLE_INSIDE;
        if (y[j] >= 0) g->role[y[j]] = AG_ROLE_INSIDE;
    }
    for (int32_t j = 1; j < n; j++) g->role[sums[j]] = AG_ROLE_INSIDE;
    g->role[head] = AG_ROLE_SOFTMAX;
    g->pat_at[head] = at;
    return 1;
}

void ag__find_patterns(ag_graph *g) {
    memset(g->role, AG_ROLE_PLAIN, (size_t)g->n_ins);
    g->n_pat = 0;
    if (g->options & AG_GRAPH_UNFUSED) return;
    for (int32_t i = 0; i < g->n_ins; i++) softplus_at(g, i);
    if (!(g->options & AG_GRAPH_INEXACT)) return;
    int32_t *ins_at = ag__malloc((size_t)g->n * sizeof *ins_at);
    int32_t *first_use = ag__malloc((size_t)g->n * sizeof *first_use);
    int32_t *next_use = ag__malloc((size_t)g->n_ins * sizeof *next_use);
    if (ins_at && first_use && next_use) {  /* out of memory: no softmax */
        for (int32_t p = 0; p < g->n; p++) ins_at[p] = first_use[p] = -1;
        for (int32_t i = 0; i < g->n_ins; i++) ins_at[g->cins[i].p] = i;
        for (int32_t i = g->n_ins; i-- > 0;) {  /* uses as operand b, in order */
            int32_t b = g->cins[i].b;
            next_use[i] = -1;
            if (b >= 0 && g->cins[i].op == AG_MUL) {
                next_use[i] = first_use[b];
                first_use[b] = i;
            }
        }
        for (int32_t i = 0; i < g->n_ins; i++)
            if (g->cins[i].op == AG_POW_CONST) {
                int32_t mark = g->n_pat;
                if (!softmax_at(g, i, ins_at, first_use, next_use)) g->n_pat = mark;
            }
    }
    ag__free(ins_at);
    ag__free(first_use);
    ag__free(next_use);
}

/* ---- their steps ----------------------------------------------------------- */

/* A softmax's pat (positions): n, the power, then n terms of TERM: x_j,
 * e_j = exp(x_j), y_j = e_j * power (-1: not in the graph) and the sum
 * s_j = s_(j-1) + e_j (none for j = 0: s_0 is e_0), the power's operand
 * s_(n-1).  Its power is an inexact replay's (softmaxes are found in no
 * other). */
enum { TERM_X, TERM_E, TERM_Y, TERM_S, TERM };

/* A softplus's pat: the positions of x, e = exp(x), c, s = e + c (or c +
 * e), l = log(s), then whether e is the sum's operand a. */
enum { SP_X, SP_E, SP_C, SP_S, SP_L, SP_E_FIRST };

/* Mark the inner members of the pattern step steps[k] (member_of): every
 * member but its outputs (softplus: the log; softmax: the products). */
void ag__mark_inner(ag_graph *g, int32_t k) {
    const ag_cins *st = &g->steps[k];
    const int32_t *pat = g->pat + st->a;
    if (st->op == AG_SOFTPLUS) {
        g->member_of[pat[SP_E]] = g->member_of[pat[SP_S]] = k;
        return;
    }
    int32_t n = pat[0];                 /* softmax: see TERM */
    g->member_of[pat[1]] = k;
    for (int32_t j = 0; j < n; j++) {
        const int32_t *t = pat + 2 + TERM * j;
        g->member_of[t[TERM_E]] = k;
        if (j) g->member_of[t[TERM_S]] = k;
    }
}

/* The kernels keep the members' values and grads in registers from one
 * member to the next (each is used by the next alone), in the same
 * operations as the members' own steps: the rules' own float expressions.
 * A forward stores every member's value and its outputs' types and fresh
 * grads; the inner members' grads are fresh zeros it does not store
 * (inner_grads FRESH), their types floats' (compiled.c sets them once:
 * inner_types_stale).  A backward stores every
 * member's grad: from zeros when `fresh`, else adding to the stored ones
 * (a second backward). */

/* Position p: value r (float), fresh grad. */
static void set_fresh(int32_t p, double r, double *v, uint8_t *di, double *gd,
                      uint8_t *gi) {
    v[p] = r;
    di[p] = 0;
    gd[p] = 0.0;
    gi[p] = 1;
}

/* exp(x) as the exp rule: AG_OK or its overflow. */
static int exp_of(double x, double *r) {
    ag_operands o = {x, 0.0, 0.0, 0.0, 0, 0, 0};
    int r_int;
    return exp_eval(&o, r, &r_int);
}

int ag__softplus_forward(const ag_graph *g, const int32_t *pat, double *v,
                         uint8_t *di, double *gd, uint8_t *gi) {
    (void)g;
    double ev, lv, c = v[pat[SP_C]];
    int st = exp_of(v[pat[SP_X]], &ev), r_int;
    if (st != AG_OK) return st;
    double sv = pat[SP_E_FIRST] ? add_value(ev, c, 0) : add_value(c, ev, 0);
    ag_operands o = {sv, 0.0, 0.0, 0.0, 0, 0, 0};
    st = log_eval(&o, &lv, &r_int);
    if (st != AG_OK) return st;
    v[pat[SP_E]] = ev;
    v[pat[SP_S]] = sv;
    set_fresh(pat[SP_L], lv, v, di, gd, gi);
    return AG_OK;
}

void ag__softplus_backward(const ag_graph *g, const int32_t *pat,
                           const double *v, double *gd, int fresh) {
    (void)g;
    const int32_t e = pat[SP_E], s = pat[SP_S], c = pat[SP_C];
    int t_int;
    ag_operands o = {v[s], 0.0, 0.0, v[e], 0, 0, 0};
    double gs = (fresh ? 0.0 : gd[s]) + log_grad_a(&o, gd[pat[SP_L]], 0, &t_int);
    gd[s] = gs;
    double ge = fresh ? 0.0 : gd[e];
    if (pat[SP_E_FIRST]) {                    /* the sum's: a, then b */
        ge += add_grad_a(&o, gs, 0, &t_int);
        gd[c] += add_grad_b(&o, gs, 0, &t_int);
    } else {
        gd[c] += add_grad_a(&o, gs, 0, &t_int);
        ge += add_grad_b(&o, gs, 0, &t_int);
    }
    gd[e] = ge;
    gd[pat[SP_X]] += exp_grad_a(&o, ge, 0, &t_int);  /* the exp's: out * g */
}

int ag__softmax_forward(const ag_graph *g, const int32_t *pat, double *v,
                        uint8_t *di, double *gd, uint8_t *gi) {
    const int32_t n = pat[0], pw = pat[1], *t = pat + 2;
    double ev[AG_SOFTMAX_MAX], sum = 0.0;
    for (int32_t j = 0; j < n; j++, t += TERM) {
        double e = exp_value(v[t[TERM_X]], 0, 0);
        ev[j] = v[t[TERM_E]] = e;
        if (j) sum = v[t[TERM_S]] = add_value(sum, e, 0);
        else sum = e;
    }
    double inv = 1.0 / sum;         /* sum ** -1 as ag__pow_inexact: 1 / sum */
    if (!(isfinite(sum) && sum != 0.0 && isfinite(inv))) {  /* Python's cases */
        t = pat + 2;
        for (int32_t j = 0; j < n; j++, t += TERM) {        /* exp's overflow */
            int st = exp_of(v[t[TERM_X]], &ev[j]);
            if (st != AG_OK) return st;
        }
        int st = ag__float_pow(sum, g->k[pw], ag__pow_inexact, &inv);
        if (st != AG_OK) return st;
    }
    v[pw] = inv;
    t = pat + 2;
    for (int32_t j = 0; j < n; j++, t += TERM)
        if (t[TERM_Y] >= 0) set_fresh(t[TERM_Y], mul_value(ev[j], inv, 0), v, di, gd, gi);
    return AG_OK;
}

/* The grads of a softmax's inner members from its outputs' grads gy[j]
 * (none where y_j is missing), each in its own step's operations and
 * order, added to its grad in gd (from a fresh zero when `fresh`); e_j's
 * into ge[j] too. */
static void softmax_inner(const ag_graph *g, const int32_t *pat,
                          const double *v, double *gd, const double *gy,
                          int fresh, double *ge) {
    const int32_t n = pat[0], pw = pat[1], *t = pat + 2 + TERM * n;
    double inv = v[pw], gp = fresh ? 0.0 : gd[pw];
    for (int32_t j = n; j-- > 0;) {   /* the products, e_j's term then power's */
        t -= TERM;                    /* (mul_grad_a, mul_grad_b: y * g, x * g) */
        double gj = fresh ? 0.0 : gd[t[TERM_E]];
        if (t[TERM_Y] >= 0) {
            gj += inv * gy[j];
            gp += v[t[TERM_E]] * gy[j];
        }
        ge[j] = gj;
    }
    gd[pw] = gp;
    t = pat + 2 + TERM * (n - 1);
    double x = v[t[TERM_S]];        /* the power's term: ag__grad_power_by's */
    double gs = (fresh ? 0.0 : gd[t[TERM_S]]) +
                g->k[pw] * (1.0 / (x * x)) * gp;  /* k = -1 */
    for (int32_t j = n - 1; j >= 1; j--, t -= TERM) {  /* s_j = s_(j-1) + e_j */
        gd[t[TERM_S]] = gs;
        ge[j] += gs;                                /* (a's term first: */
        if (j > 1) gs = (fresh ? 0.0 : gd[t[TERM_S - TERM]]) + gs;  /* another */
        else ge[0] += gs;                           /* node) */
    }
    t = pat + 2;
    for (int32_t j = 0; j < n; j++, t += TERM) gd[t[TERM_E]] = ge[j];
}

void ag__softmax_backward(const ag_graph *g, const int32_t *pat,
                          const double *v, double *gd, double *saved, int fresh) {
    const int32_t n = pat[0], *t = pat + 2;
    const double inv = v[pat[1]];
    if (fresh) {      /* x_j's: y_j * (gy_j - sum_k gy_k y_k), the inner */
        double dot = 0.0;                   /* members' kept for later    */
        for (int32_t j = 0; j < n; j++, t += TERM) {
            double gy = t[TERM_Y] >= 0 ? gd[t[TERM_Y]] : 0.0;
            saved[j] = gy;
            dot += gy * (v[t[TERM_E]] * inv);
        }
        t = pat + 2;
        for (int32_t j = 0; j < n; j++, t += TERM) {
            double y = v[t[TERM_E]] * inv;
            gd[t[TERM_X]] += y * (saved[j] - dot);
        }
        return;
    }
    double ge[AG_SOFTMAX_MAX];        /* (saved: scratch here) */
    for (int32_t j = 0; j < n; j++, t += TERM)
        saved[j] = t[TERM_Y] >= 0 ? gd[t[TERM_Y]] : 0.0;
    softmax_inner(g, pat, v, gd, saved, 0, ge);
    for (int32_t j = n; j-- > 0;) {   /* the exps: out * g */
        t -= TERM;
        gd[t[TERM_X]] += v[t[TERM_E]] * ge[j];
    }
}

void ag__softmax_inner_grads(const ag_graph *g, const int32_t *pat,
                             const double *saved, double *gd) {
    double ge[AG_SOFTMAX_MAX];
    softmax_inner(g, pat, g->v, gd, saved, 1, ge);
}
