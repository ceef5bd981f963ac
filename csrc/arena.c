/*
 * arena.c -- the node arena: context life, growth, allocation, reference
 * counting, iterative freeing, the value accessors and statistics.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <assert.h>
#include "alloc.h"
#include "arena.h"

#define AG_INITIAL_CAP 4096
#define AG_MAX_CAP ((size_t)INT32_MAX)
/* Arenas that grew above this many slots give memory back by themselves
 * once fewer than an eighth of their slots are live, again and again as
 * nodes go (a graph freed in pieces, by many releases), until they are at
 * most AG_TRIM_TO slots (ag_trim does it at any size). */
#define AG_TRIM_FROM ((size_t)1 << 20)
#define AG_TRIM_TO ((size_t)1 << 16)

/* Bytes of all per-node arrays for one slot. */
static size_t bytes_per_slot(void) {
    return 3 * sizeof(double) + 4 * sizeof(int32_t) + 2 * sizeof(uint32_t) +
           sizeof(char *) + 2;
}

/* Words of the free bitmaps for cap slots. */
static size_t map_words(size_t cap) { return (cap + 63) / 64; }
static size_t sum_words(size_t cap) { return (map_words(cap) + 63) / 64; }

void ag__arena_free(ag_ctx *c) {
    ag__free(c->data); ag__free(c->grad); ag__free(c->k); ag__free(c->a); ag__free(c->b);
    for (size_t i = 0; i < c->used; i++)
        if (c->op[i] != AG_FREE_OP && (c->flags[i] & AG_NAMED))
            ag__free(c->names[i]);
    ag__free(c->refs); ag__free(c->op); ag__free(c->flags); ag__free(c->gen); ag__free(c->names);
    ag__free(c->order);
    ag__free(c->stack); ag__free(c->freemap); ag__free(c->freesum);
}

/* realloc *p to n elements of size sz; on failure *p stays as it was. */
static int grow_array(void **p, size_t n, size_t sz) {
    void *q = ag__realloc(*p, n * sz);
    if (!q) return 0;
    *p = q;
    return 1;
}

/* Grow every array to new_cap slots.  Arrays that grew before a failure
 * keep their larger size; cap only moves once all have. */
static int grow(ag_ctx *c, size_t new_cap) {
    if (!grow_array((void **)&c->data, new_cap, sizeof(double)) ||
        !grow_array((void **)&c->grad, new_cap, sizeof(double)) ||
        !grow_array((void **)&c->k, new_cap, sizeof(double)) ||
        !grow_array((void **)&c->a, new_cap, sizeof(int32_t)) ||
        !grow_array((void **)&c->b, new_cap, sizeof(int32_t)) ||
        !grow_array((void **)&c->refs, new_cap, sizeof(uint32_t)) ||
        !grow_array((void **)&c->op, new_cap, 1) ||
        !grow_array((void **)&c->flags, new_cap, 1) ||
        !grow_array((void **)&c->gen, new_cap, sizeof(uint32_t)) ||
        !grow_array((void **)&c->names, new_cap, sizeof(char *)) ||
        !grow_array((void **)&c->order, new_cap, sizeof(int32_t)) ||
        !grow_array((void **)&c->stack, new_cap, sizeof(int32_t)) ||
        !grow_array((void **)&c->freemap, map_words(new_cap), 8) ||
        !grow_array((void **)&c->freesum, sum_words(new_cap), 8))
        return AG_ERR_NOMEM;
    /* new slots start at the floor generation; they are not free yet
     * (they are beyond `used`) */
    for (size_t i = c->cap; i < new_cap; i++) c->gen[i] = c->gen_floor;
    memset(c->freemap + map_words(c->cap), 0,
           (map_words(new_cap) - map_words(c->cap)) * 8);
    memset(c->freesum + sum_words(c->cap), 0,
           (sum_words(new_cap) - sum_words(c->cap)) * 8);
    c->cap = new_cap;
    c->trim_below = new_cap / 8;
    if (new_cap > AG_TRIM_FROM) c->shrinking = 1;
    return AG_OK;
}

/* The highest live slot + 1 (0 when none is live), from the free bitmap. */
static size_t live_end(const ag_ctx *c) {
    for (size_t w = map_words(c->used); w-- > 0;) {
        uint64_t in_use = ~c->freemap[w];
        size_t top = c->used - (w << 6);      /* slots of this word in use */
        if (top < 64) in_use &= (1ull << top) - 1;
        if (in_use) return (w << 6) + 64 - (size_t)__builtin_clzll(in_use);
    }
    return 0;
}

/* realloc *p down to n elements of size sz (n > 0); where that fails the
 * larger block stays, which is still big enough. */
static void shrink_array(void **p, size_t n, size_t sz) {
    void *q = ag__realloc(*p, n * sz);
    if (q) *p = q;
}

/* Shrink the arena to the smallest capacity (a power of two, at least the
 * initial one) that holds its highest live slot; returns the bytes given
 * back.  Locked. */
static size_t trim(ag_ctx *c) {
    size_t end = live_end(c), new_cap = AG_INITIAL_CAP;
    while (new_cap < end) new_cap *= 2;
    if (new_cap >= c->cap) return 0;
    for (size_t i = end; i < c->used; i++)    /* dropped slots: all free */
        if (((c->gen[i] + 1) & AG_GEN_MASK) > c->gen_floor)
            c->gen_floor = (c->gen[i] + 1) & AG_GEN_MASK;
    size_t before = c->cap;
    c->used = end;
    size_t words = map_words(end);
    if (end & 63) c->freemap[words - 1] &= (1ull << (end & 63)) - 1;
    memset(c->freesum, 0, sum_words(new_cap) * 8);
    for (size_t w = 0; w < words; w++)
        if (c->freemap[w]) c->freesum[w >> 6] |= 1ull << (w & 63);
    memset(c->freemap + words, 0, (map_words(new_cap) - words) * 8);
    if (c->free_from >= words) c->free_from = words ? words - 1 : 0;
    shrink_array((void **)&c->data, new_cap, sizeof(double));
    shrink_array((void **)&c->grad, new_cap, sizeof(double));
    shrink_array((void **)&c->k, new_cap, sizeof(double));
    shrink_array((void **)&c->a, new_cap, sizeof(int32_t));
    shrink_array((void **)&c->b, new_cap, sizeof(int32_t));
    shrink_array((void **)&c->refs, new_cap, sizeof(uint32_t));
    shrink_array((void **)&c->op, new_cap, 1);
    shrink_array((void **)&c->flags, new_cap, 1);
    shrink_array((void **)&c->gen, new_cap, sizeof(uint32_t));
    shrink_array((void **)&c->names, new_cap, sizeof(char *));
    shrink_array((void **)&c->order, new_cap, sizeof(int32_t));
    shrink_array((void **)&c->stack, new_cap, sizeof(int32_t));
    shrink_array((void **)&c->freemap, map_words(new_cap), 8);
    shrink_array((void **)&c->freesum, sum_words(new_cap), 8);
    c->cap = new_cap;
    c->trim_below = new_cap / 8;
    return (before - new_cap) * bytes_per_slot() +
           (map_words(before) + sum_words(before) - map_words(new_cap) -
            sum_words(new_cap)) * 8;
}

size_t ag_trim(ag_ctx *c) {
    AG_LOCK(c);
    size_t freed = c->cap ? trim(c) : 0;
    AG_UNLOCK(c);
    return freed;
}

int ag__reserve_grow(ag_ctx *c, size_t n) {
    if (c->limit && c->live + n > c->limit) return AG_ERR_LIMIT;
    if (c->live + n <= c->cap) return AG_OK;  /* free + fresh slots */
    size_t need = c->used + n;
    if (need > AG_MAX_CAP) return AG_ERR_NOMEM;
    size_t new_cap = c->cap ? c->cap : AG_INITIAL_CAP;
    while (new_cap < need) new_cap *= 2;
    if (new_cap > AG_MAX_CAP) new_cap = AG_MAX_CAP;
    return grow(c, new_cap);
}

/* Mark slot x free. */
static void put_free(ag_ctx *c, int32_t x) {
    size_t w = (size_t)x >> 6;
    c->freemap[w] |= 1ull << (x & 63);
    c->freesum[w >> 6] |= 1ull << (w & 63);
    if (w < c->free_from) c->free_from = w;
}

/* Freed nodes wait on a "dying" list threaded through refs[] (which is 0
 * for them and so free to reuse); each is then marked free and its
 * children lose one reference.  No recursion, no allocation. */
void ag__free_from(ag_ctx *c, int32_t id) {
    assert(c->refs[id] == 0 && c->op[id] != AG_FREE_OP);
    uint32_t top = (uint32_t)id;
    c->refs[id] = AG_REFS_END;
    while (top != AG_REFS_END) {
        int32_t x = (int32_t)top;
        top = c->refs[x];
        int32_t kids[2] = {c->a[x], c->b[x]};
        c->refs[x] = 0;
        c->op[x] = AG_FREE_OP;
        c->gen[x] = (c->gen[x] + 1) & AG_GEN_MASK;  /* its handles go stale */
        uint8_t fx = c->flags[x];
        if (fx & AG_NAMED) ag__free(c->names[x]);
        if (fx & AG_USER_RULE) c->user_rules--;
        put_free(c, x);
        c->live--;
        for (int i = 0; i < 2; i++) {
            int32_t ch = kids[i];
            if (ch != AG_NONE && --c->refs[ch] == 0) {
                c->refs[ch] = top;
                top = (uint32_t)ch;
            }
        }
    }
    /* a mostly empty big arena gives memory back (looked at again only
     * when live has halved since) */
    if (c->live < c->trim_below && c->shrinking) {
        trim(c);
        if (c->live < c->trim_below) c->trim_below = c->live / 2;
        if (c->cap <= AG_TRIM_TO) c->shrinking = 0;
    }
}

void ag_set_limit(ag_ctx *c, size_t max_nodes) {
    AG_LOCK(c);
    c->limit = max_nodes;
    AG_UNLOCK(c);
}

void ag_get_stats(ag_ctx *c, ag_stats *out) {
    AG_LOCK(c);
    out->live_nodes = c->live;
    out->capacity = c->cap;
    out->bytes = c->cap * bytes_per_slot() +
                 (map_words(c->cap) + sum_words(c->cap)) * 8;
    out->limit = c->limit;
    AG_UNLOCK(c);
}

int ag_retain(ag_ctx *c, int64_t h) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    if (id >= 0) c->refs[id]++;
    AG_UNLOCK(c);
    return id < 0 ? (int)id : AG_OK;
}

int ag_release(ag_ctx *c, int64_t h) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    if (id >= 0) ag__unref(c, (int32_t)id);
    AG_UNLOCK(c);
    return id < 0 ? (int)id : AG_OK;
}

/* Every handle is checked first, so a bad one releases none.  A node named
 * twice must hold as many references as it is named: the caller's to know
 * (a release that frees it makes the next one stale). */
int ag_release_many(ag_ctx *c, const int64_t *hs, size_t n) {
    AG_LOCK(c);
    int st = AG_OK;
    for (size_t i = 0; i < n && st == AG_OK; i++) {
        int64_t id = ag__slot(c, hs[i]);
        if (id < 0) st = (int)id;
    }
    for (size_t i = 0; st == AG_OK && i < n; i++) {
        int64_t id = ag__slot(c, hs[i]);
        if (id >= 0) ag__unref(c, (int32_t)id);
    }
    AG_UNLOCK(c);
    return st;
}

int ag_release_once(ag_ctx *c, const int64_t *hs, size_t n, int *done) {
    AG_LOCK(c);
    int st = AG_OK;
    if (!*done) {
        for (size_t i = 0; i < n; i++) {
            int64_t id = ag__slot(c, hs[i]);
            if (id >= 0) ag__unref(c, (int32_t)id);
            else st = (int)id;
        }
        *done = 1;
    }
    AG_UNLOCK(c);
    return st;
}

int64_t ag_held_refs(ag_ctx *c, int64_t *handles, uint32_t *counts,
                     size_t cap) {
    AG_LOCK(c);
    int64_t n = 0;
    uint32_t *links = ag__calloc(c->used ? c->used : 1, sizeof *links);
    if (!links) n = AG_ERR_NOMEM;
    for (size_t i = 0; links && i < c->used; i++) {
        if (c->op[i] == AG_FREE_OP) continue;
        if (c->a[i] != AG_NONE) links[c->a[i]]++;
        if (c->b[i] != AG_NONE) links[c->b[i]]++;
    }
    for (size_t i = 0; links && i < c->used; i++) {
        if (c->op[i] == AG_FREE_OP || c->refs[i] <= links[i]) continue;
        if ((size_t)n < cap) {
            handles[n] = ag__handle(c, (int32_t)i);
            counts[n] = c->refs[i] - links[i];
        }
        n++;
    }
    ag__free(links);
    AG_UNLOCK(c);
    return n;
}

double _Complex ag_read(ag_ctx *c, int64_t h, int what) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    double v = 0.0, type = (double)id;
    if (id >= 0) {
        uint8_t f = c->flags[id];
        if (what == AG_READ_DATA) {
            v = c->data[id];
            type = (f & AG_DATA_INT) ? 1.0 : 0.0;
        } else if (what == AG_READ_GRAD) {
            v = ag__grad(c->grad, c->flags, (int32_t)id);
            type = (f & AG_GRAD_INT) ? 1.0 : 0.0;
        } else {
            type = AG_ERR_ARG;
        }
    }
    AG_UNLOCK(c);
    double _Complex r;                   /* v + type * I, without <complex.h> */
    ((double *)&r)[0] = v;
    ((double *)&r)[1] = type;
    return r;
}

static ag_ctx *_Atomic facade_ctx;  /* ag_set_facade_ctx's */

void ag_set_facade_ctx(ag_ctx *c) { atomic_store(&facade_ctx, c); }

ag_ctx *ag__facade_ctx(void) { return atomic_load(&facade_ctx); }

/* ag_read on the facade's context. */
static double _Complex read_on_facade_ctx(int64_t h, int what) {
    ag_ctx *c = atomic_load(&facade_ctx);
    if (c) return ag_read(c, h, what);
    double _Complex r;
    ((double *)&r)[0] = 0.0;
    ((double *)&r)[1] = AG_ERR_ARG;
    return r;
}

int ag_set_float_data(int64_t h, double v) {
    ag_ctx *c = atomic_load(&facade_ctx);
    return c ? ag_set_data(c, h, v, 0) : AG_ERR_ARG;
}

int ag_set_float_grad(int64_t h, double v) {
    ag_ctx *c = atomic_load(&facade_ctx);
    return c ? ag_set_grad(c, h, v, 0) : AG_ERR_ARG;
}

double _Complex ag_read_data(int64_t h) { return read_on_facade_ctx(h, AG_READ_DATA); }
double _Complex ag_read_grad(int64_t h) { return read_on_facade_ctx(h, AG_READ_GRAD); }

static double float_or_nan(double _Complex r) {
    return ((double *)&r)[1] == 0.0 ? ((double *)&r)[0] : (double)NAN;
}

double ag_float_data(int64_t h) { return float_or_nan(ag_read_data(h)); }
double ag_float_grad(int64_t h) { return float_or_nan(ag_read_grad(h)); }

/* Ints are stored with +0.0 for zero (Python's int 0 has no sign). */
int ag_set_data(ag_ctx *c, int64_t h, double v, int is_int) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    if (id >= 0) {
        c->data[id] = is_int ? v + 0.0 : v;
        c->flags[id] = (uint8_t)((c->flags[id] & ~AG_DATA_INT) |
                                 (is_int ? AG_DATA_INT : 0));
    }
    AG_UNLOCK(c);
    return id < 0 ? (int)id : AG_OK;
}

int ag_set_grad(ag_ctx *c, int64_t h, double v, int is_int) {
    AG_LOCK(c);
    int64_t id = ag__slot(c, h);
    if (id >= 0) {
        c->grad[id] = is_int ? v + 0.0 : v;
        c->flags[id] = (uint8_t)((c->flags[id] &
                                  ~(AG_GRAD_INT | AG_GRAD_ZERO)) |
                                 (is_int ? AG_GRAD_INT : 0));
    }
    AG_UNLOCK(c);
    return id < 0 ? (int)id : AG_OK;
}

int64_t ag_node_name(ag_ctx *c, int64_t h, char *buf, size_t cap) {
    AG_LOCK(c);
    int64_t r = ag__slot(c, h);
    if (r >= 0) {
        const char *name = (c->flags[r] & AG_NAMED) ? c->names[r] : "";
        size_t len = strlen(name);
        if (cap) {
            size_t n = len < cap ? len : cap - 1;
            memcpy(buf, name, n);
            buf[n] = '\0';
        }
        r = (int64_t)len;
    }
    AG_UNLOCK(c);
    return r;
}
