/*
 * fork.c -- a child of fork() gets a working engine.  A fork copies only the
 * forking thread; a lock another thread held at that moment would stay
 * held in the child for good, and the arena it guards could be half
 * changed.  So pthread_atfork handlers take every lock of every context and
 * graph before the fork -- the graphs' first, the order in which the engine
 * takes them (a graph's, then its context's) -- and give them all back
 * after it, in the parent and in the child.  The fork waits for calls in
 * progress in other threads to finish; the child sees every arena whole.
 */
#include <pthread.h>
#include "fork.h"
#include "graph.h"

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static ag_ctx *contexts;          /* registered contexts, via fork_next      */
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;
static int handlers_status = AG_OK;

static void before_fork(void) {
    pthread_mutex_lock(&registry);
    for (ag_ctx *c = contexts; c; c = c->fork_next)
        for (ag_graph *g = c->graphs; g; g = g->fork_next)
            pthread_mutex_lock(&g->lock);
    for (ag_ctx *c = contexts; c; c = c->fork_next) AG_LOCK(c);
}

static void after_fork(void) {       /* in the parent and in the child */
    for (ag_ctx *c = contexts; c; c = c->fork_next) {
        AG_UNLOCK(c);
        for (ag_graph *g = c->graphs; g; g = g->fork_next)
            pthread_mutex_unlock(&g->lock);
    }
    pthread_mutex_unlock(&registry);
}

static void set_handlers(void) {
    if (pthread_atfork(before_fork, after_fork, after_fork) != 0)
        handlers_status = AG_ERR_NOMEM;
}

int ag__fork_track_ctx(ag_ctx *c) {
    pthread_once(&handlers_once, set_handlers);
    if (handlers_status != AG_OK) return handlers_status;
    pthread_mutex_lock(&registry);
    c->fork_prev = NULL;
    c->fork_next = contexts;
    if (contexts) contexts->fork_prev = c;
    contexts = c;
    pthread_mutex_unlock(&registry);
    return AG_OK;
}

void ag__fork_untrack_ctx(ag_ctx *c) {
    pthread_mutex_lock(&registry);
    if (c->fork_prev) c->fork_prev->fork_next = c->fork_next;
    else contexts = c->fork_next;
    if (c->fork_next) c->fork_next->fork_prev = c->fork_prev;
    pthread_mutex_unlock(&registry);
}

void ag__fork_track_graph(ag_graph *g) {
    ag_ctx *c = g->ctx;
    pthread_mutex_lock(&registry);
    g->fork_prev = NULL;
    g->fork_next = c->graphs;
    if (c->graphs) c->graphs->fork_prev = g;
    c->graphs = g;
    pthread_mutex_unlock(&registry);
}

void ag__fork_untrack_graph(ag_graph *g) {
    ag_ctx *c = g->ctx;
    pthread_mutex_lock(&registry);
    if (g->fork_prev) g->fork_prev->fork_next = g->fork_next;
    else c->graphs = g->fork_next;
    if (g->fork_next) g->fork_next->fork_prev = g->fork_prev;
    pthread_mutex_unlock(&registry);
}
