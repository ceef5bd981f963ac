/*
 * context.c -- a context's life: made with an empty arena and registered
 * for fork() (fork.c), freed with everything in it.
 */
#include "alloc.h"
#include "arena.h"
#include "fork.h"

ag_ctx *ag_ctx_new_opt(int options) {
    if (options & ~AG_CTX_ONE_THREAD) return NULL;
    ag_ctx *c = ag__calloc(1, sizeof *c);
    if (!c) return NULL;
    atomic_init(&c->lock, 0);
    c->one_thread = (options & AG_CTX_ONE_THREAD) != 0;
    if (ag__fork_track_ctx(c) != AG_OK) {
        ag__free(c);
        return NULL;
    }
    return c;
}

ag_ctx *ag_ctx_new(void) { return ag_ctx_new_opt(0); }

void ag_ctx_free(ag_ctx *c) {
    if (!c) return;
    ag__fork_untrack_ctx(c);
    ag__arena_free(c);
    ag__free(c);
}
