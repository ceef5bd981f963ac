/*
 * graph.h -- a captured graph as replay.c makes it and batch.c runs it (not
 * public).
 *
 * The program is fixed at capture: a node's op, children and exponent never
 * change while it lives, and the graph's reference on the root keeps every
 * captured node alive.  Only data and grads move: the single-row replay
 * keeps them in the graph's own arrays and the arena only for the nodes
 * others can see (compiled.c); the batched runs in per-thread scratch.
 */
#ifndef AG_GRAPH_H
#define AG_GRAPH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "arena.h"
#include "rules.h"

/* One thread's scratch for batched runs; kept by the graph between runs. */
typedef struct ag_scratch {
    double *v;      /* n * B: v[p * B + r], value of node p in block row r  */
    double *g;      /* n * B: its gradient.  Rows of op nodes are all zero
                     * between blocks; rows of sources accumulate over a run */
    double *acc;    /* acc_cap * B: per-row grad sums of requested op nodes
                     * (and sources, when per-row grads are asked for)      */
    double *rowg;   /* acc_cap * B: a block's grad rows of the same, for
                     * per-row grads                                        */
    size_t acc_cap; /* rows of acc and rowg allocated                       */
} ag_scratch;

/* An op node of the program, as forward evaluation reads it. */
typedef struct ag_instr {
    int32_t p;              /* its position                                 */
    int32_t a, b;           /* operand positions, b = -1 when absent        */
    uint8_t op;             /* ag_op                                        */
    uint8_t k_int;          /* POW_CONST exponent g->k[p] is a Python int   */
} ag_instr;

/* An op node of the compiled single-row program (compiled.c). */
typedef struct ag_cins {
    int32_t p;              /* its position                                 */
    int32_t a, b;           /* operand positions, b = -1 when absent        */
    uint8_t op;             /* ag_op                                        */
    uint8_t k_int;          /* POW_CONST exponent is a Python int           */
    uint8_t typed;          /* AG_TYPED_*: where Python's int types matter  */
} ag_cins;

/* A member of a run (compiled.c): its position p, operand positions a,
 * b; the top bit of a set for a product, clear for a sum. */
typedef struct ag_link {
    int32_t p;
    uint32_t a;
    int32_t b;
} ag_link;

/* A step of a batched run (batch.c): instructions ins[i0 .. i0 + len),
 * one (len 1) or a dot chain of len / 2 (MUL, ADD) pairs. */
typedef struct ag_bstep {
    int32_t i0, len;
} ag_bstep;

/* ag_cins.op of a run step: members links[a .. a + b); of a dot chain
 * step: b (MUL, ADD) pairs at dot_wx / dot_ms[a + 1 .. a + b] after a
 * header at [a] (analysis.c). */
enum { AG_RUN = 255, AG_DOT = 254, AG_SOFTPLUS = 253, AG_SOFTMAX = 252 };

/* ag_graph.role, by instruction (patterns.c): in no pattern; a member of
 * one whose step sits elsewhere; where a softplus's or a softmax's step
 * sits (its members at pat[pat_at[i]]).  Softmaxes of up to
 * AG_SOFTMAX_MAX terms are found. */
enum { AG_ROLE_PLAIN, AG_ROLE_INSIDE, AG_ROLE_SOFTPLUS, AG_ROLE_SOFTMAX };
enum { AG_SOFTMAX_MAX = 64 };

/* Two positions: a dot chain's pair's operands w, x (dot_wx) and product
 * and sum m, s (dot_ms); its header's c (the first sum's other operand)
 * and -1 (dot_wx), -1 and the last sum (dot_ms). */
typedef struct ag_pos2 {
    int32_t a, b;
} ag_pos2;

/* ag_graph.inner_grads: where the grads of fused steps' inner members
 * (member_of) are -- in gd / gi (STORED); an int 0 each, not stored (FRESH:
 * a forward, no backward since); after one backward since the forward
 * (ONE_PASS), a dot chain's 0 + dot_g of its step, not stored, and a
 * softplus's or softmax's in gd, floats (their kernels store them). */
enum { AG_INNER_STORED, AG_INNER_FRESH, AG_INNER_ONE_PASS };

/* ag_cins.typed: the parts of a node's rules that must follow the int
 * types (the others run float kernels: the same bits for float numbers). */
enum {
    AG_TYPED_FORWARD = 1,   /* its value may be an int                     */
    AG_TYPED_BACKWARD = 2,  /* its grad, a child's grad or (for a power)
                             * an operand may be an int                    */
    AG_TYPED_OWN_GRAD = 4   /* its grad may be an int at its turn          */
};

struct ag_graph {
    ag_ctx *ctx;            /* borrowed: contexts outlive their graphs      */
    int32_t root;           /* arena slot of the root; the graph holds a ref */
    int32_t n;              /* program length; position n - 1 is the root   */
    /* The program, n entries each, indexed by position p (children first). */
    int32_t *id;            /* arena slot of position p                     */
    double *k;              /* POW_CONST exponent                           */
    uint8_t *op;            /* ag_op                                        */
    /* Sources: positions of LEAF and OPAQUE nodes, read from the arena.    */
    int32_t *src;
    int32_t n_src;
    /* The other nodes (op nodes), in program order, with their operands.   */
    ag_instr *ins;
    int32_t n_ins;
    /* Batched runs' copy of the sources, n each, indexed by position: a
     * source's value and "is int" (batch.c: read_sources).                 */
    double *val;
    uint8_t *val_int;
    /* Node handle -> position: open addressing, 2**hbits slots.            */
    int64_t *hkey;          /* the node's handle, -1 for an empty slot      */
    int32_t *hpos;
    int hbits;
    /* The compiled single-row program (compiled.c): a node's state by
     * position, current while the graph is its context's private owner
     * (arena.h: AG_PRIVATE), for every node whose state the arena does not
     * keep, and between passes for the others too.                         */
    ag_cins *cins;          /* n_ins, program order                         */
    double *v, *nv;         /* n: values -- committed, the next forward's   */
    uint8_t *di, *ndi;      /* n: "value is an int", the same two ways      */
    double *gd, *ngd;       /* n: grads -- committed, the next forward's
                             * (op nodes' fresh zeros, set as it computes)  */
    uint8_t *gi, *ngi;      /* n: "grad is an int", the same two ways       */
    uint8_t *gkeep;         /* n: 0xff where backward follows gi[p]; 0 where
                             * the grad is a float after every backward     */
    uint8_t *may_int;       /* n: the value may be an int (analysis)        */
    int32_t *vis;           /* positions of the op nodes the arena keeps: the
                             * root's (every other op node is private)      */
    uint32_t *inrefs;       /* n: references from inside the graph          */
    uint32_t *uses;         /* n: operand references from the op nodes      */
    uint8_t *visible;       /* n: made visible (make_visible) while owning:
                             * no dot chain keeps it inside                  */
    int32_t *vsrc;          /* indices in src of the sources read every pass:
                             * those referenced from outside (a handle, a
                             * node or graph elsewhere)                      */
    int32_t n_vsrc;
    int32_t *psrc;          /* the other sources' (constants nobody holds),
                             * private: read at acquire, grads written back
                             * by ag__flush_private                         */
    int32_t n_psrc;

    int32_t n_vis;
    uint8_t *src_int;       /* n_src: the sources' types analysed for       */
    int analysed;           /* may_int, gkeep, typed hold for src_int        */
    int typed_ok;           /* the committed types agree with the analysis  */
    int may_fail;           /* some node's forward may fail (analysis): the
                             * forward computes into the next arrays        */
    int options;            /* AG_GRAPH_INEXACT | AG_GRAPH_UNFUSED           */
    /* The kernels' program (analysis.c): cins with each run of float sums
     * and products made one AG_RUN step.                                   */
    ag_cins *steps;         /* n_steps <= n_ins                             */
    int32_t n_steps;
    ag_link *links;         /* the runs' members, in order                  */
    /* The grads of the dot chains' inner members (every member but the
     * last sum) are not stored by a backward right after a forward: each
     * is 0 + the chain's last sum's grad at that backward, kept per step.  */
    ag_pos2 *dot_wx;        /* n: the dot chains' operands, and ...        */
    ag_pos2 *dot_ms;        /* n: ... their members, chain by chain (AG_DOT):
                             * a backward reads 8 bytes a pair              */
    int32_t *member_of;     /* n: the fused step (AG_DOT, AG_SOFTPLUS,
                             * AG_SOFTMAX) p is an inner member of, else -1:
                             * a member no other step reads, neither its
                             * last sum nor a pattern's output             */
    uint8_t *role;          /* n_ins: AG_ROLE_* (patterns.c)                */
    int32_t *pat_at;        /* n_ins: a pattern step's offset in pat        */
    int32_t *pat;           /* the patterns' members (instruction indices)  */
    double *pat_g;          /* pat_cap: at a softmax step's offset, its
                             * outputs' grads at a backward from fresh
                             * zeros (its inner members' are found from
                             * them when asked: inner_grads ONE_PASS)       */
    int32_t n_pat, pat_cap;
    double *dot_g;          /* by step: its last sum's grad at that backward */
    int inner_grads;        /* AG_INNER_*: where the inner members'
                             * grads are                                    */
    int inner_types_stale;  /* the inner members' types (di, ndi) may not be
                             * floats yet: set at the next forward          */
    /* Batched runs (batch.c). */
    int32_t *slot;          /* n: acc row of a requested op node, else -1   */
    ag_bstep *bsteps;       /* n_ins: a run's program, ins made steps: one
                             * instruction, or a dot chain (batch.c)        */
    int32_t n_bsteps;
    int rows_per_block;     /* B, chosen at the first run (0 before)        */
    ag_scratch *scratch;    /* n_scratch per-thread scratches               */
    int n_scratch;
    pthread_mutex_t lock;   /* one forward or run at a time on this graph   */
    ag_graph *fork_next, *fork_prev;  /* its context's graphs (fork.c)      */
    int owning;             /* holds private nodes: on ctx->private_owner's
                             * list, through next_owner (compiled.c)       */
    ag_graph *next_owner;
};

/* A source (LEAF, OPAQUE): read from the arena, never computed. */
static inline int ag__is_source(int op) { return ag__arity(op) == 0; }

static inline uint32_t ag__hash_slot(int32_t id, int bits) {
    return (uint32_t)((uint32_t)id * 2654435761u) >> (32 - bits);
}

/* Program position of node handle h, or -1 when h is not a node of the
 * graph (a stale handle is none: its generation differs). */
static inline int32_t ag__graph_position(const ag_graph *g, int64_t h) {
    if (h < 0) return -1;
    uint32_t mask = (uint32_t)(((uint64_t)1 << g->hbits) - 1);
    for (uint32_t s = ag__hash_slot((int32_t)(uint32_t)h, g->hbits);
         g->hkey[s] != -1; s = (s + 1) & mask)
        if (g->hkey[s] == h) return g->hpos[s];
    return -1;
}

/* Whether ins[i], ins[i + 1] have the shape of a dot chain's pair after
 * the pair whose sum is at position prev (-1: the chain's first pair):
 * m = MUL(w, x), s = ADD(prev, m) -- ADD(c, m), any c, for the first --
 * with m, and prev, used by s alone.  A neuron's sum(w_i * x_i, b) is such
 * a chain (ag_layer's, micrograd's).  The batched run (batch.c) and the
 * compiled replay (analysis.c) fuse chains of one pair or more. */
static inline int ag__dot_pair(const ag_graph *g, int32_t i, int32_t prev) {
    if (i + 1 >= g->n_ins) return 0;
    const ag_instr *m = &g->ins[i], *s = &g->ins[i + 1];
    if (m->op != AG_MUL || s->op != AG_ADD || s->b != m->p || s->a == m->p ||
        g->uses[m->p] != 1)
        return 0;
    return prev < 0 || (s->a == prev && g->uses[prev] == 1);
}

/* The compiled single-row program (compiled.c).  Allocate its arrays for
 * n nodes (AG_OK or AG_ERR_NOMEM; free them with ag__compiled_free either
 * way); fill them at capture from c->order / c->stack (locked); run a
 * forward (AG_OK or the first failing node's status, nothing changed) or a
 * backward (locked, under the graph's lock). */
int ag__compiled_alloc(ag_graph *g, size_t n);
/* analysis.c: may_int, gkeep, each cins' typed bits and the steps for the
 * sources' types in src_int; the steps alone (after an option change, a
 * node made visible).  Either remakes member_of: the caller first has the
 * inner members' grads stored (inner_grads STORED). */
void ag__analyse(ag_graph *g);
void ag__build_steps(ag_graph *g);
/* patterns.c: role, pat_at and pat for the options and the typed bits (by
 * ag__build_steps); the kernels of a pattern's step at pat (v, di, gd, gi:
 * the arrays the pass works on; forward: AG_OK or the first failing
 * member's status, the outputs' fresh grads set; backward: every member's
 * grad, from fresh zeros when `fresh` -- inner_grads FRESH). */
void ag__find_patterns(ag_graph *g);
int ag__softplus_forward(const ag_graph *g, const int32_t *pat, double *v,
                         uint8_t *di, double *gd, uint8_t *gi);
void ag__softplus_backward(const ag_graph *g, const int32_t *pat,
                           const double *v, double *gd, int fresh);
int ag__softmax_forward(const ag_graph *g, const int32_t *pat, double *v,
                        uint8_t *di, double *gd, uint8_t *gi);
void ag__softmax_backward(const ag_graph *g, const int32_t *pat,
                          const double *v, double *gd, double *saved, int fresh);
/* A softmax's inner members' grads into gd, from its outputs' grads kept
 * by its last backward from fresh zeros (`saved`: pat_g at its offset). */
void ag__softmax_inner_grads(const ag_graph *g, const int32_t *pat,
                             const double *saved, double *gd);
/* The inner members of pattern step steps[k] into member_of. */
void ag__mark_inner(ag_graph *g, int32_t k);
void ag__compiled_free(ag_graph *g);
void ag__compiled_capture(ag_graph *g);
int ag__compiled_forward(ag_graph *g);
void ag__compiled_backward(ag_graph *g);

/* Free the batched runs' scratch (batch.c); the graph must not be in use. */
void ag__batch_free(ag_graph *g);

#endif /* AG_GRAPH_H */
