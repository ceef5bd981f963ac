/*
 * compiled.c -- the single-row replay of a captured graph (ag_graph_forward,
 * ag_graph_backward) as a compiled program: every node's value, grad and
 * Python types live in the graph's own arrays, indexed by program position,
 * so the passes read them in order and never go through arena ids.
 *
 * The arena is written only as far as someone looks.  Every op node but
 * the root is private: its state lives only here and its arena slot is
 * marked AG_PRIVATE (stale).  The root (read after every pass) and the
 * sources are read from the arena before a pass and written back after it.
 * A graph keeps private nodes only while it is one of its context's
 * private owners.  A handle naming one (ag__slot: every read, write, op
 * and release) has that node written back and kept visible from then on
 * (write_back_node: the graph learns what is looked at); an eager backward
 * reaching one, or another graph's pass over one, has them all written
 * back (ag__flush_private), and the graph's next pass takes ownership
 * anew.  So Values held on interior nodes cost nothing until they are
 * read, and every result is the eager engine's.
 *
 * Python's int types are followed only where they can occur: an analysis
 * for the sources' current types (analysis.c, redone when they change)
 * finds the nodes whose value may be an int and those whose grad may be;
 * every other node runs a float kernel, which gives the same bits.  Fused
 * steps do what their members' steps would, in their order: runs of float
 * sums and products, a neuron's dot chain (analysis.c: its sum and grad in
 * registers), softplus and, in an inexact replay, softmax (patterns.c);
 * the fused steps' inner members' grads are not stored by a forward, nor
 * by the backward right after it for a dot chain or a softmax: each is
 * worked out when something reads it (ag_graph.inner_grads).  Forward
 * computes into a second set of arrays and commits them only when every
 * node succeeded: all or nothing, no undo log -- or, in a graph none of
 * whose nodes can fail (float sums, products, relu...: analysis.c), in
 * place.
 */
#include <stdlib.h>
#include <string.h>
#include "alloc.h"
#include "graph.h"

int ag__compiled_alloc(ag_graph *g, size_t n) {
    g->cins = ag__malloc(n * sizeof *g->cins);
    g->v = ag__malloc(n * sizeof *g->v);
    g->nv = ag__malloc(n * sizeof *g->nv);
    g->gd = ag__malloc(n * sizeof *g->gd);
    g->ngd = ag__malloc(n * sizeof *g->ngd);
    g->ngi = ag__malloc(n);
    g->di = ag__malloc(n);
    g->ndi = ag__malloc(n);
    g->gi = ag__malloc(n);
    g->gkeep = ag__calloc(n, 1);      /* set by the analysis; read before it: 0 */
    g->may_int = ag__calloc(n, 1);
    g->src_int = ag__calloc(n, 1);
    g->vis = ag__malloc(n * sizeof *g->vis);
    g->inrefs = ag__calloc(n, sizeof *g->inrefs);
    g->uses = ag__calloc(n, sizeof *g->uses);
    g->visible = ag__calloc(n, 1);
    g->member_of = ag__malloc(n * sizeof *g->member_of);
    g->dot_g = ag__malloc(n * sizeof *g->dot_g);
    g->dot_wx = ag__malloc(n * sizeof *g->dot_wx);
    g->dot_ms = ag__malloc(n * sizeof *g->dot_ms);
    g->role = ag__calloc(n, 1);
    g->pat_at = ag__malloc(n * sizeof *g->pat_at);
    g->vsrc = ag__malloc(n * sizeof *g->vsrc);
    g->psrc = ag__malloc(n * sizeof *g->psrc);
    g->steps = ag__malloc(n * sizeof *g->steps);
    g->links = ag__malloc(n * sizeof *g->links);
    if (!g->steps || !g->links || !g->cins || !g->v || !g->nv || !g->gd ||
        !g->ngd || !g->ngi || !g->di || !g->ndi ||
        !g->gi || !g->gkeep || !g->may_int || !g->src_int ||
        !g->vis || !g->inrefs || !g->uses || !g->vsrc || !g->psrc ||
        !g->visible || !g->member_of || !g->dot_g || !g->dot_wx || !g->dot_ms ||
        !g->role || !g->pat_at)
        return AG_ERR_NOMEM;
    return AG_OK;
}

void ag__compiled_free(ag_graph *g) {
    ag__free(g->cins); ag__free(g->v); ag__free(g->nv); ag__free(g->gd);
    ag__free(g->ngd); ag__free(g->ngi);
    ag__free(g->di); ag__free(g->ndi); ag__free(g->gi); ag__free(g->gkeep);
    ag__free(g->may_int); ag__free(g->src_int);
    ag__free(g->vis); ag__free(g->steps); ag__free(g->links);
    ag__free(g->inrefs); ag__free(g->uses); ag__free(g->vsrc); ag__free(g->psrc);
    ag__free(g->visible); ag__free(g->member_of); ag__free(g->dot_g);
    ag__free(g->dot_wx); ag__free(g->dot_ms);
    ag__free(g->role); ag__free(g->pat_at); ag__free(g->pat); ag__free(g->pat_g);
}

void ag__compiled_capture(ag_graph *g) {
    for (int32_t i = 0; i < g->n_ins; i++) {
        const ag_instr *in = &g->ins[i];
        g->cins[i] = (ag_cins){in->p, in->a, in->b, in->op, in->k_int,
                               AG_TYPED_FORWARD | AG_TYPED_BACKWARD |
                                   AG_TYPED_OWN_GRAD};
    }
    for (int32_t i = 0; i < g->n_ins; i++) {  /* the sources' parents here */
        const ag_instr *in = &g->ins[i];
        if (ag__is_source(g->op[in->a])) g->inrefs[in->a]++;
        if (in->b >= 0 && ag__is_source(g->op[in->b])) g->inrefs[in->b]++;
        g->uses[in->a]++;
        if (in->b >= 0) g->uses[in->b]++;
    }
    if (ag__is_source(g->op[g->n - 1])) g->inrefs[g->n - 1]++;  /* the graph's */
    g->analysed = g->typed_ok = 0;
    g->options = 0;
    for (int32_t p = 0; p < g->n; p++) g->member_of[p] = -1;  /* no steps yet */
    g->n_steps = 0;
    g->inner_grads = AG_INNER_STORED;
}

/* The grad of position p, wherever it is held (ag_graph.inner_grads), and
 * its type in *is_int -- but a softmax's inner members' after a backward,
 * found from what the step kept (store_inner_grads first). */
static double grad_at(const ag_graph *g, int32_t p, uint8_t *is_int) {
    int32_t step = g->member_of[p];
    if (step < 0 || g->inner_grads == AG_INNER_STORED) {
        *is_int = g->gi[p];
        return g->gd[p];
    }
    if (g->inner_grads == AG_INNER_FRESH) {
        *is_int = 1;
        return 0.0;
    }
    *is_int = 0;                        /* ONE_PASS */
    return g->steps[step].op == AG_DOT ? g->dot_g[step] + 0.0 : g->gd[p];
}

/* Every inner member's grad into gd / gi (inner_grads STORED): before the
 * steps change, and before a pass that reads them. */
static void store_inner_grads(ag_graph *g) {
    if (g->inner_grads == AG_INNER_STORED) return;
    for (int32_t p = 0; p < g->n; p++)
        if (g->member_of[p] >= 0) g->gd[p] = grad_at(g, p, &g->gi[p]);
    if (g->inner_grads == AG_INNER_ONE_PASS)
        for (int32_t s = 0; s < g->n_steps; s++)
            if (g->steps[s].op == AG_SOFTMAX)
                ag__softmax_inner_grads(g, g->pat + g->steps[s].a,
                                        g->pat_g + g->steps[s].a, g->gd);
    g->inner_grads = AG_INNER_STORED;
}

int ag_graph_set_options(ag_graph *g, int options) {
    if (options & ~(AG_GRAPH_INEXACT | AG_GRAPH_UNFUSED)) return AG_ERR_ARG;
    pthread_mutex_lock(&g->lock);
    AG_LOCK(g->ctx);                    /* write_back_node reads the steps */
    g->options = options;
    if (g->analysed) {
        store_inner_grads(g);
        ag__build_steps(g);
    }
    AG_UNLOCK(g->ctx);
    pthread_mutex_unlock(&g->lock);
    return AG_OK;
}

/* ---- the kernels ---------------------------------------------------------- */

/* The graph's arrays as the kernels use them: local copies of the
 * pointers, so that a store through one (uint8_t may alias anything) does
 * not make the compiler reload the others from the graph. */
typedef struct prog {
    const ag_cins *ci;
    const double *k;
    double *v, *gd;
    uint8_t *di, *gi;
    const uint8_t *gkeep;
} prog;

static prog prog_of(const ag_graph *g) {
    return (prog){g->cins, g->k, g->v, g->gd, g->di, g->gi, g->gkeep};
}

static AG_ALWAYS_INLINE double exponent_of(const prog *q, const ag_cins *in) {
    return in->op == AG_POW_CONST ? q->k[in->p] : 0.0;
}

/* A run's members' values (floats). */
static AG_ALWAYS_INLINE void run_forward(const prog *q, const ag_link *link,
                                         int32_t len) {
    double *v = q->v;
    uint8_t *di = q->di;
    for (int32_t j = 0; j < len; j++) {
        double x = v[link[j].a & INT32_MAX], y = v[link[j].b];
        v[link[j].p] = link[j].a >> 31 ? mul_value(x, y, 0.0) : add_value(x, y, 0.0);
        di[link[j].p] = 0;
        q->gd[link[j].p] = 0.0;
        q->gi[link[j].p] = 1;
    }
}

/* A run's members' terms, last first: mul_grad_a / _b and add_grad_a / _b
 * of a float grad (y * g, x * g; g), child a before b. */
static AG_ALWAYS_INLINE void run_backward(const prog *q, const ag_link *link,
                                          int32_t len) {
    double *gd = q->gd;
    const double *v = q->v;
    for (int32_t j = len; j-- > 0;) {
        double g = gd[link[j].p];
        uint32_t a = link[j].a & INT32_MAX;
        int32_t b = link[j].b;
        if (link[j].a >> 31) {
            double x = v[a], y = v[b];
            gd[a] += y * g;
            gd[b] += x * g;
        } else {
            gd[a] += g;
            gd[b] += g;
        }
    }
}

/* A dot chain's values (floats): each pair's product and sum, the sum
 * carried to the next pair in a register; the last sum's type and fresh
 * grad (the inner members': clear_inner_types, inner_grads FRESH).  Its
 * `pairs` pairs follow the header at wx / ms (analysis.c). */
static AG_ALWAYS_INLINE void dot_forward(const prog *q, const ag_pos2 *wx,
                                         const ag_pos2 *ms, int32_t pairs) {
    double *v = q->v;
    double s = v[wx[0].a];
    for (int32_t i = 1; i <= pairs; i++) {
        double m = mul_value(v[wx[i].a], v[wx[i].b], 0.0);
        s = add_value(s, m, 0.0);
        v[ms[i].a] = m;
        v[ms[i].b] = s;
    }
    q->di[ms[0].b] = 0;
    q->gd[ms[0].b] = 0.0;
    q->gi[ms[0].b] = 1;
}

/* A dot chain's terms, last pair first, each pair's sum's and then its
 * product's, a before b (float grads): add_grad_* and mul_grad_* of the
 * members' own steps.  The previous sum's grad (used by this pair's sum
 * alone) goes to the next pair in a register.  `fresh`: the inner members'
 * grads are fresh zeros (inner_grads FRESH), so each becomes 0 + the last
 * sum's grad G, the same for all (0 + (0 + G) is 0 + G): the terms come
 * from that alone, nothing is stored, only w and x are read, and G is kept
 * in *g_last. */
static AG_ALWAYS_INLINE void dot_backward(const prog *q, const ag_pos2 *wx,
                                          const ag_pos2 *ms, int32_t pairs,
                                          int fresh, double *g_last) {
    double *gd = q->gd;
    const double *v = q->v;
    double gs = gd[ms[0].b];
    if (fresh) {
        double gz = gs + 0.0;   /* every inner member's grad: 0 + G */
        *g_last = gs;
        for (int32_t i = pairs; i >= 1; i--) {
            int32_t w = wx[i].a, x = wx[i].b;
            if (i == 1) gd[wx[0].a] += pairs == 1 ? gs : gz;  /* c: s_0's grad */
            double vw = v[w], vx = v[x];
            gd[w] += vx * gz;
            gd[x] += vw * gz;
        }
        return;
    }
    for (int32_t i = pairs; i >= 1; i--) {
        int32_t prev = i > 1 ? ms[i - 1].b : wx[0].a, m = ms[i].a;
        double g_prev = gd[prev] + gs;
        gd[prev] = g_prev;
        double gm = gd[m] + gs;
        gd[m] = gm;
        int32_t w = wx[i].a, x = wx[i].b;
        double vw = v[w], vx = v[x];
        gd[w] += vx * gm;
        gd[x] += vw * gm;
        gs = g_prev;
    }
}

/* Every op node from the sources, by `steps` (g->steps, or the plain
 * program g->cins), and its fresh grad (an int 0): in the next arrays (nv,
 * ndi, ngd, ngi) when `buffered`, else in place (a graph none of whose
 * nodes can fail: g->may_fail 0).  AG_OK, or the first failing step's
 * status. */
static int forward_pass(const ag_graph *g, int buffered, const ag_cins *steps,
                        int32_t n_steps) {
    prog q = prog_of(g);
    if (buffered) {
        q.v = g->nv;
        q.di = g->ndi;
        q.gd = g->ngd;
        q.gi = g->ngi;
    }
    for (int32_t i = 0; i < n_steps; i++) {
        const ag_cins *in = &steps[i];
        if (in->op == AG_RUN) {
            run_forward(&q, g->links + in->a, in->b);
            continue;
        }
        if (in->op == AG_DOT) {
            dot_forward(&q, g->dot_wx + in->a, g->dot_ms + in->a, in->b);
            continue;
        }
        if (in->op == AG_SOFTPLUS || in->op == AG_SOFTMAX) {
            int st = (in->op == AG_SOFTPLUS ? ag__softplus_forward
                                            : ag__softmax_forward)(
                g, g->pat + in->a, q.v, q.di, q.gd, q.gi);
            if (st != AG_OK) return st;
            continue;
        }
        double y = in->b >= 0 ? q.v[in->b] : 0.0, r;
        int r_int, st;
        if (!(in->typed & AG_TYPED_FORWARD)) {     /* floats: types 0 */
            ag_operands o = {q.v[in->a], y, exponent_of(&q, in), 0.0, 0, 0,
                             in->k_int};
            if ((g->options & AG_GRAPH_INEXACT) && in->op == AG_POW_CONST) {
                st = ag__float_pow(o.x, o.k, ag__pow_inexact, &r);
                r_int = 0;
            } else {
                st = ag__eval(in->op, &o, &r, &r_int);
            }
        } else {
            ag_operands o = {q.v[in->a], y, exponent_of(&q, in), 0.0,
                             q.di[in->a], in->b >= 0 ? q.di[in->b] : 0,
                             in->k_int};
            st = ag__eval(in->op, &o, &r, &r_int);
        }
        if (st != AG_OK) return st;
        q.v[in->p] = r;
        q.di[in->p] = (uint8_t)r_int;
        q.gd[in->p] = 0.0;
        q.gi[in->p] = 1;
    }
    return AG_OK;
}

/* grad[ch] += t: with Python's types where `typed` and backward follows
 * ch's type (all_typed: everywhere), else as floats. */
static AG_ALWAYS_INLINE void add_term(const prog *q, int32_t ch, double t,
                                      int t_int, int typed, int all_typed) {
    if (typed && (all_typed || q->gkeep[ch])) {
        int r_int;
        q->gd[ch] = ag__grad_sum(q->gd[ch], q->gi[ch], t, t_int, &r_int);
        q->gi[ch] = (uint8_t)r_int;
    } else {
        q->gd[ch] += t;
    }
}

/* What rule `reads` (AG_READS_*) sees of node in: its operands' values
 * (types when typed), exponent and own value -- only those it reads, as
 * each case asks: a load of an operand far back in the program may miss
 * the caches. */
static AG_ALWAYS_INLINE ag_operands operands_at(const prog *q,
                                                const ag_cins *in, int reads,
                                                int typed) {
    ag_operands o = {0.0, 0.0, 0.0, 0.0, 0, 0, in->k_int};
    if (reads & AG_READS_X) {
        o.x = q->v[in->a];
        if (typed) o.x_int = q->di[in->a];
    }
    if (reads & AG_READS_Y) {
        o.y = q->v[in->b];
        if (typed) o.y_int = q->di[in->b];
    }
    if (reads & AG_READS_K) o.k = q->k[in->p];
    if (reads & AG_READS_OUT) o.out = q->v[in->p];
    return o;
}

/* Node in's terms from its grad gr (type g_int) to its children, a first. */
static AG_ALWAYS_INLINE void backprop_pos(const prog *q, const ag_cins *in,
                                          double gr, int g_int, int typed,
                                          int all_typed) {
    ag_operands o;
    double t;
    int t_int;
#define ROW(code, rule, name, arity) BP_##arity(code, rule)
#define BP_0(code, rule) case AG_##code: break;
#define BP_A(rule)                                                      \
        o = operands_at(q, in, rule##_reads, typed);                    \
        t = rule##_grad_a(&o, gr, g_int, &t_int);                       \
        add_term(q, in->a, t, t_int, typed, all_typed);
#define BP_1(code, rule)                                                \
    case AG_##code:                                                     \
        BP_A(rule)                                                      \
        break;
#define BP_2(code, rule)                                                \
    case AG_##code:                                                     \
        BP_A(rule)                                                      \
        t = rule##_grad_b(&o, gr, g_int, &t_int);                       \
        add_term(q, in->b, t, t_int, typed, all_typed);                 \
        break;
    switch ((ag_op)in->op) {
    AG_OP_LIST(ROW)
    }
#undef ROW
#undef BP_A
}

/* The eager backward over the program: root grad int 1, then each op node's
 * terms in reverse order.  all_typed: follow every type (the committed
 * types may differ from the analysis's). */
static void backward_pass(ag_graph *g, int all_typed) {
    int fresh = !all_typed && g->inner_grads == AG_INNER_FRESH;
    if (!fresh) store_inner_grads(g);
    const prog q = prog_of(g);
    q.gd[g->n - 1] = 1.0;
    q.gi[g->n - 1] = 1;
    const ag_cins *steps = all_typed ? q.ci : g->steps;  /* typed: no runs */
    for (int32_t i = all_typed ? g->n_ins : g->n_steps; i-- > 0;) {
        const ag_cins *in = &steps[i];
        if (in->op == AG_RUN) {
            run_backward(&q, g->links + in->a, in->b);
            continue;
        }
        if (in->op == AG_DOT) {
            dot_backward(&q, g->dot_wx + in->a, g->dot_ms + in->a, in->b, fresh,
                         &g->dot_g[i]);
            continue;
        }
        if (in->op == AG_SOFTPLUS) {
            ag__softplus_backward(g, g->pat + in->a, q.v, q.gd, fresh);
            continue;
        }
        if (in->op == AG_SOFTMAX) {
            ag__softmax_backward(g, g->pat + in->a, q.v, q.gd, g->pat_g + in->a,
                                 fresh);
            continue;
        }
        double gr = q.gd[in->p];
        if (!all_typed && !(in->typed & AG_TYPED_BACKWARD)) {
            if ((g->options & AG_GRAPH_INEXACT) && in->op == AG_POW_CONST) {
                int t_int;
                q.gd[in->a] += ag__grad_power_by(ag__pow_inexact, q.v[in->a], 0,
                                                 q.k[in->p], in->k_int, gr, 0,
                                                 &t_int);
            } else {
                backprop_pos(&q, in, gr, 0, 0, 0);
            }
        } else {
            int g_int = all_typed || (in->typed & AG_TYPED_OWN_GRAD)
                            ? q.gi[in->p] : 0;
            backprop_pos(&q, in, gr, g_int, 1, all_typed);
        }
    }
    if (!all_typed) {     /* untracked grads got a float term: floats now */
        uint8_t *restrict gi = q.gi;
        const uint8_t *restrict keep = q.gkeep;
        for (int32_t p = 0, n = g->n; p < n; p++) gi[p] &= keep[p];
    }
    g->inner_grads = fresh ? AG_INNER_ONE_PASS : AG_INNER_STORED;
}

/* ---- the arena's side: ownership, reading and writing back -------------- */

/* Node p's state from the arena into v, di, gd, gi. */
static void load_node(ag_graph *g, const ag_ctx *c, int32_t p) {
    int32_t id = g->id[p];
    uint8_t f = c->flags[id];
    g->v[p] = c->data[id];
    g->di[p] = (f & AG_DATA_INT) != 0;
    g->gd[p] = ag__grad(c->grad, c->flags, id);
    g->gi[p] = (f & AG_GRAD_INT) != 0;
}

/* Node p's grad and its type into the arena. */
static void store_grad(const ag_graph *g, ag_ctx *c, int32_t p) {
    int32_t id = g->id[p];
    c->grad[id] = g->gd[p];
    c->flags[id] = (uint8_t)((c->flags[id] & ~(AG_GRAD_INT | AG_GRAD_ZERO)) |
                             (g->gi[p] ? AG_GRAD_INT : 0));
}

/* Node p's state from the graph into the arena, if it is private there. */
static void write_back(const ag_graph *g, ag_ctx *c, int32_t p) {
    int32_t id = g->id[p];
    uint8_t f = c->flags[id];
    if (!(f & AG_PRIVATE)) return;
    uint8_t grad_int;
    c->data[id] = g->v[p];
    c->grad[id] = grad_at(g, p, &grad_int);
    c->flags[id] = (uint8_t)((f & ~(AG_PRIVATE | AG_DATA_INT | AG_GRAD_INT |
                                    AG_GRAD_ZERO)) |
                             (g->di[p] ? AG_DATA_INT : 0) |
                             (grad_int ? AG_GRAD_INT : 0));
}

/* ag_ctx.write_back of a compiled graph's context: every owner's nodes. */
static void write_back_all(ag_ctx *c) {
    ag_graph *next;
    for (ag_graph *g = c->private_owner; g; g = next) {
        store_inner_grads(g);
        for (int32_t i = 0; i < g->n_ins; i++) write_back(g, c, g->cins[i].p);
        for (int32_t i = 0; i < g->n_psrc; i++) write_back(g, c, g->psrc[i]);
        next = g->next_owner;
        g->next_owner = NULL;
        g->owning = 0;
    }
    c->private_owner = NULL;
}

/* Position p of g is kept in the arena from now on: an op node joins the
 * ones written after every pass (vis) -- and leaves its dot chain or
 * pattern, if it was inside one -- a source the ones read (vsrc). */
static void make_visible(ag_graph *g, int32_t p) {
    if (!ag__is_source(g->op[p])) {
        g->vis[g->n_vis++] = p;
        g->visible[p] = 1;
        if (g->member_of[p] >= 0) {   /* a fused step's inner member: out */
            store_inner_grads(g);
            ag__build_steps(g);
        }
        return;
    }
    for (int32_t k = 0; k < g->n_psrc; k++)
        if (g->psrc[k] == p) {
            g->psrc[k] = g->psrc[--g->n_psrc];
            break;
        }
    for (int32_t i = 0; i < g->n_src; i++)
        if (g->src[i] == p) {
            g->vsrc[g->n_vsrc++] = i;
            break;
        }
}

/* ag_ctx.write_back_one: node id, private to one of the owners (ag__slot
 * saw its AG_PRIVATE bit), is named by a handle (someone looks at it, maybe
 * every step): write it back and keep it visible, the other private nodes
 * staying as they are. */
static void write_back_node(ag_ctx *c, int32_t id) {
    int64_t h = ag__handle(c, id);
    for (ag_graph *g = c->private_owner; g; g = g->next_owner) {
        int32_t p = ag__graph_position(g, h);
        if (p < 0) continue;
        make_visible(g, p);   /* first: out of its fused step, grads stored */
        write_back(g, c, p);
        return;
    }
    ag__flush_private(c);  /* no owner has it: make the arena whole anyway */
}

/* Some node of g is private to another graph (they share it). */
static int overlaps_an_owner(const ag_graph *g, const ag_ctx *c) {
    for (int32_t p = 0; p < g->n; p++)
        if (c->flags[g->id[p]] & AG_PRIVATE) return 1;
    return 0;
}

/* Make g one of its context's private owners -- graphs of disjoint nodes
 * own theirs side by side; one that shares a node with an owner has every
 * owner write back first -- mark its private nodes (op nodes but the root,
 * and sources nothing outside the graph references: constants) and read
 * every node's state.  Nothing when g owns them already.  Locked. */
static void acquire(ag_graph *g, ag_ctx *c) {
    if (g->owning) return;
    if (c->private_owner && overlaps_an_owner(g, c)) ag__flush_private(c);
    g->n_vis = 0;
    for (int32_t i = 0; i < g->n_ins; i++) {
        int32_t p = g->cins[i].p, id = g->id[p];
        if (p == g->n - 1) g->vis[g->n_vis++] = p;
        else c->flags[id] |= AG_PRIVATE;
    }
    g->n_vsrc = g->n_psrc = 0;
    for (int32_t i = 0; i < g->n_src; i++) {
        int32_t p = g->src[i], id = g->id[p];
        if (c->refs[id] != g->inrefs[p]) {
            g->vsrc[g->n_vsrc++] = i;
            continue;
        }
        g->psrc[g->n_psrc++] = p;
        uint8_t t = (c->flags[id] & AG_DATA_INT) != 0;
        if (t != g->src_int[i]) g->analysed = 0;  /* the forward analyses */
        g->src_int[i] = t;
        c->flags[id] |= AG_PRIVATE;
    }
    for (int32_t p = 0; p < g->n; p++) load_node(g, c, p);
    memcpy(g->ndi, g->di, (size_t)g->n);  /* both arrays the arena's types */
    g->inner_grads = AG_INNER_STORED;
    g->inner_types_stale = 1;
    for (int32_t i = 0; i < g->n_psrc; i++) {  /* the same in both arrays */
        int32_t p = g->psrc[i];
        g->nv[p] = g->v[p];
        g->ndi[p] = g->di[p];
    }
    g->typed_ok = 0;
    g->owning = 1;
    g->next_owner = c->private_owner;
    c->private_owner = g;
    c->write_back = write_back_all;
    c->write_back_one = write_back_node;
}

/* The fused steps' inner members' types, floats after every forward (their
 * kernels do not write them): once after a forward that follows new steps
 * or values read from the arena (inner_types_stale), in both arrays. */
static void clear_inner_types(ag_graph *g) {
    for (int32_t p = 0; p < g->n; p++)
        if (g->member_of[p] >= 0) g->di[p] = g->ndi[p] = 0;
    g->inner_types_stale = 0;
}

int ag__compiled_forward(ag_graph *g) {
    ag_ctx *c = g->ctx;
    acquire(g, c);
    int retyped = !g->analysed;
    for (int32_t k = 0; k < g->n_vsrc; k++) {   /* into both sets of arrays */
        int32_t i = g->vsrc[k], p = g->src[i], id = g->id[p];  /* (private:  */
        uint8_t t = (c->flags[id] & AG_DATA_INT) != 0;         /* set there) */
        g->v[p] = g->nv[p] = c->data[id];
        g->di[p] = g->ndi[p] = t;
        if (t != g->src_int[i]) retyped = 1;
        g->src_int[i] = t;
    }
    if (retyped) {
        store_inner_grads(g);
        ag__analyse(g);
        g->analysed = 1;
        g->typed_ok = 0;
    }
    if (!g->may_fail) {                 /* cannot fail: in place, no commit */
        forward_pass(g, 0, g->steps, g->n_steps);
    } else {
        int st = forward_pass(g, 1, g->steps, g->n_steps);
        if (st != AG_OK && g->n_pat)    /* a softmax runs its members late: */
            st = forward_pass(g, 1, g->cins, g->n_ins);  /* the program's */
        if (st != AG_OK) return st;     /* first failure; nothing committed */
        for (int32_t i = 0; i < g->n_src; i++) {  /* commit: sources' grads */
            int32_t p = g->src[i];                /* stay, then swap (fresh  */
            g->ngd[p] = g->gd[p];                 /* op nodes: grad int 0)   */
            g->ngi[p] = g->gi[p];
        }
        double *v = g->v, *gd = g->gd;
        uint8_t *di = g->di, *gi = g->gi;
        g->v = g->nv; g->nv = v;
        g->di = g->ndi; g->ndi = di;
        g->gd = g->ngd; g->ngd = gd;
        g->gi = g->ngi; g->ngi = gi;
    }
    if (g->inner_types_stale) clear_inner_types(g);
    g->inner_grads = AG_INNER_FRESH;
    for (int32_t i = 0; i < g->n_vis; i++) {
        int32_t p = g->vis[i], id = g->id[p];
        c->data[id] = g->v[p];
        c->flags[id] = (uint8_t)((c->flags[id] & ~AG_DATA_INT) | AG_GRAD_INT |
                                 AG_GRAD_ZERO | (g->di[p] ? AG_DATA_INT : 0));
    }
    g->typed_ok = 1;
    return AG_OK;
}

void ag__compiled_backward(ag_graph *g) {
    ag_ctx *c = g->ctx;
    acquire(g, c);
    int all_typed = !g->typed_ok;
    for (int32_t k = 0; k < g->n_vsrc; k++) {
        int32_t i = g->vsrc[k], p = g->src[i];
        load_node(g, c, p);
        if (g->di[p] != g->src_int[i]) all_typed = 1;
    }
    for (int32_t i = 0; i < g->n_vis; i++) {  /* set from outside, maybe */
        load_node(g, c, g->vis[i]);
        if (g->di[g->vis[i]] && !g->may_int[g->vis[i]]) all_typed = 1;
    }
    backward_pass(g, all_typed);
    for (int32_t k = 0; k < g->n_vsrc; k++) store_grad(g, c, g->src[g->vsrc[k]]);
    for (int32_t i = 0; i < g->n_vis; i++) store_grad(g, c, g->vis[i]);
}
