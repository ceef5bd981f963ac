/*
 * arena.h -- the node arena and the context lock (not public): memory,
 * reference counts, freeing.  It knows nothing of what ops compute.
 *
 * The arena is a struct-of-arrays: node i is data[i], grad[i], op[i], ...
 * Every array has `cap` slots and moves as a whole when the arena grows
 * (realloc, doubling), so code keeps slots, never pointers, across a call
 * that may allocate.  Free slots below `used` are bits of a two-level
 * bitmap, and a new node takes the lowest free slot, so nodes built one
 * after another get nearby slots (backward then walks memory nearly in
 * order).  Inside the engine a node is its slot (int32_t); outside it is a
 * handle (int64_t, autograd_c.h): the slot and the slot's generation, which
 * freeing the node advances.
 */
#ifndef AG_ARENA_H
#define AG_ARENA_H

#include <assert.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include "autograd_c.h"
#include "compiler.h"


#define AG_NONE (-1)
#define AG_FREE_OP 255          /* op[] of a free slot                    */
#define AG_MARK 128             /* flags[] bit: visited by a traversal    */
#define AG_GRAD_ZERO 64         /* flags[] bit: grad is int 0, grad[] is
                                 * stale (not written, so a new node costs
                                 * no grad store); implies AG_GRAD_INT    */
#define AG_NAMED 8              /* flags[] bit: names[] holds a malloc'ed
                                 * name, freed with the node              */
#define AG_USER_RULE 16         /* flags[] bit: the caller's own backward
                                 * rule (ag_set_user_rule)                */
#define AG_PRIVATE 32           /* flags[] bit: data, grad and their types
                                 * are stale here; the context's private
                                 * owner (a graph, compiled.c) holds them
                                 * until ag__flush_private writes them back */
#define AG_GEN_MASK 0x7fffffffu /* generations: 31 bits, handles >= 0     */
#define AG_REFS_END UINT32_MAX  /* end of the dying list threaded in refs */

struct ag_ctx {
    atomic_int lock;    /* AG_LOCK / AG_UNLOCK: held by every public call */
    int one_thread;     /* AG_CTX_ONE_THREAD: the lock is skipped         */
    /* node arrays, cap slots each */
    double *data;       /* value                                        */
    double *grad;       /* gradient                                     */
    double *k;          /* exponent of a POW_CONST node (else unwritten)  */
    int32_t *a, *b;     /* children (AG_NONE if absent)                 */
    uint32_t *refs;     /* handles + parent links                       */
    uint8_t *op;        /* ag_op, AG_FREE_OP when free                  */
    uint8_t *flags;     /* AG_DATA_INT | AG_GRAD_INT | AG_K_INT |
                         * AG_NAMED | AG_GRAD_ZERO | AG_MARK            */
    uint32_t *gen;      /* generation of the slot: advanced when its node
                         * is freed (all slots, 0 when first handed out) */
    char **names;       /* a node's name where AG_NAMED (else unwritten) */
    /* traversal scratch, cap slots each, so traversals never allocate */
    int32_t *order;     /* topological order (children first)           */
    int32_t *stack;     /* DFS stack                                    */
    size_t cap;         /* slots allocated                              */
    size_t used;        /* slots handed out (high-water mark since the
                         * last trim)                                    */
    size_t ever_used;   /* the most `used` has ever been                */
    size_t live;        /* slots in use                                 */
    size_t limit;       /* max live nodes, 0 = none                     */
    uint64_t *freemap;  /* bit i: slot i (< used) is free; cap/64 words  */
    uint64_t *freesum;  /* bit w: freemap[w] != 0; cap/4096 words        */
    size_t free_from;   /* no free slot below word free_from of freemap  */
    uint32_t gen_floor; /* generation of slots the arena adds: above that of
                         * every slot a trim dropped, so that handles of
                         * those can never name a later node              */
    size_t trim_below;  /* free_from looks for a trim when live drops below */
    uint8_t shrinking;  /* grew past AG_TRIM_FROM slots: trims itself as its
                         * live nodes go, until small again              */
    size_t user_rules;  /* live nodes with AG_USER_RULE                   */
    /* fork.c's registry: the list of contexts, and this one's graphs    */
    ag_ctx *fork_next, *fork_prev;
    ag_graph *graphs;
    ag_graph *private_owner;  /* the graphs whose AG_PRIVATE nodes' state
                               * they hold (compiled.c; a list through
                               * their next_owner), or NULL              */
    void (*write_back)(ag_ctx *c);  /* the owners': writes that state back,
                                     * clears the bits and the list      */
    void (*write_back_one)(ag_ctx *c, int32_t id);  /* one node's, which its
                                     * owner keeps in the arena from then on */
};

/* Free every array of the arena and the names of its nodes (the context
 * itself stays: context.c frees it). */
void ag__arena_free(ag_ctx *c);
/* The context ag_set_facade_ctx named, or NULL. */
ag_ctx *ag__facade_ctx(void);

/* ag__reserve's slow path: check the limit, grow if needed.  Locked. */
int ag__reserve_grow(ag_ctx *c, size_t n);
/* Free id (refs just reached 0) and what nothing reaches any more.  Locked. */
void ag__free_from(ag_ctx *c, int32_t id);
/* The handle of live slot id. */
static inline int64_t ag__handle(const ag_ctx *c, int32_t id) {
    return (int64_t)c->gen[id] << 32 | (int64_t)(uint32_t)id;
}

/* Write back the state of every AG_PRIVATE node from the graphs that hold
 * them (c->private_owner, through write_back: the arena calls no graph
 * code by name) and clear the bits: the arena is then whole again.
 * Nothing when there is no owner.  Locked. */
static inline void ag__flush_private(ag_ctx *c) {
    if (c->private_owner) c->write_back(c);
}

/* The slot that handle h names, or its status: AG_ERR_ARG for a number
 * that is no handle of c (negative, beyond the slots ever used),
 * AG_ERR_STALE for a node freed since (its slot free, or holding a newer
 * node).  A node named by a handle is made whole first (an AG_PRIVATE one
 * is written back, and its graph keeps it in the arena from then on), so
 * whoever names a node sees its current state.  Locked. */
static inline int64_t ag__slot(ag_ctx *c, int64_t h) {
    if (h < 0) return AG_ERR_ARG;
    if ((uint64_t)(uint32_t)h >= c->used)    /* beyond a trim, or never used */
        return (uint64_t)(uint32_t)h < c->ever_used ? AG_ERR_STALE : AG_ERR_ARG;
    int32_t id = (int32_t)(uint32_t)h;
    if (c->op[id] == AG_FREE_OP || c->gen[id] != (uint32_t)(h >> 32))
        return AG_ERR_STALE;
    if (c->flags[id] & AG_PRIVATE) c->write_back_one(c, id);
    return id;
}

/* AG_OK when each of the n handles names a live node, else the first bad
 * one's status.  Locked. */
static inline int ag__all_live(ag_ctx *c, const int64_t *hs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int64_t id = ag__slot(c, hs[i]);
        if (id < 0) return (int)id;
    }
    return AG_OK;
}

/* Make room for n more nodes (grow and/or check the limit).  Locked. */
static inline int ag__reserve(ag_ctx *c, size_t n) {
    if (!c->limit && c->live + n <= c->cap) return AG_OK;
    return ag__reserve_grow(c, n);
}

/* The lowest free slot below `used` (there is one: live < used), taken
 * off the bitmaps.  The search starts at word free_from and skips full
 * words 64 at a time through freesum. */
static inline int32_t ag__take_lowest_free(ag_ctx *c) {
    size_t w = c->free_from;
    if (!c->freemap[w]) {
        size_t sw = w >> 6;
        uint64_t bits = c->freesum[sw] & (~0ull << (w & 63));
        while (!bits) bits = c->freesum[++sw];
        w = (sw << 6) + (size_t)__builtin_ctzll(bits);
    }
    assert(c->freemap[w]);
    int32_t id = (int32_t)((w << 6) + (size_t)__builtin_ctzll(c->freemap[w]));
    c->freemap[w] &= c->freemap[w] - 1;
    if (!c->freemap[w]) c->freesum[w >> 6] &= ~(1ull << (w & 63));
    c->free_from = w;
    return id;
}

/* Take a slot (room reserved) with refs = 0; link a, b (AG_NONE if absent).
 * Locked. */
static AG_ALWAYS_INLINE int32_t ag__alloc(ag_ctx *c, int op, double v, int flags,
                                int32_t a, int32_t b) {
    int32_t id;
    if (c->live < c->used) {
        id = ag__take_lowest_free(c);
    } else {
        assert(c->used < c->cap);
        id = (int32_t)c->used++;
        if (c->used > c->ever_used) c->ever_used = c->used;
    }
    c->live++;
    c->data[id] = v;                    /* grad[] and k[] are left unwritten */
    c->a[id] = a;
    c->b[id] = b;
    c->refs[id] = 0;
    c->op[id] = (uint8_t)op;
    c->flags[id] = (uint8_t)(flags | AG_GRAD_INT | AG_GRAD_ZERO);  /* int 0 */
    if (a != AG_NONE) c->refs[a]++;
    if (b != AG_NONE) c->refs[b]++;
    return id;
}

/* Drop one reference; frees what nothing reaches any more.  Locked. */
static inline void ag__unref(ag_ctx *c, int32_t id) {
    assert(c->refs[id] > 0 && c->op[id] != AG_FREE_OP);
    if (--c->refs[id] == 0) ag__free_from(c, id);
}


/* Node id's gradient as a double (0.0 while it is AG_GRAD_ZERO). */
static inline double ag__grad(const double *grad, const uint8_t *flags,
                              int32_t id) {
    return (flags[id] & AG_GRAD_ZERO) ? 0.0 : grad[id];
}

/* The context lock: a test-and-set spin lock that yields the CPU while
 * another thread holds it.  Nearly every hold is one node operation (tens
 * of ns), where a pthread mutex pair costs ~50 instructions more. */
static inline void ag__lock(atomic_int *lock) {
    while (atomic_exchange_explicit(lock, 1, memory_order_acquire)) {
        for (int spin = 0; spin < 64; spin++) {
            if (!atomic_load_explicit(lock, memory_order_relaxed)) break;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        if (atomic_load_explicit(lock, memory_order_relaxed)) sched_yield();
    }
}

static inline void ag__unlock(atomic_int *lock) {
    atomic_store_explicit(lock, 0, memory_order_release);
}

#define AG_LOCK(c) \
    do { if (!(c)->one_thread) ag__lock(&(c)->lock); } while (0)
#define AG_UNLOCK(c) \
    do { if (!(c)->one_thread) ag__unlock(&(c)->lock); } while (0)

#endif /* AG_ARENA_H */
