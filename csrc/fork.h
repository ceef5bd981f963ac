/*
 * fork.h -- keeping the engine usable in the child of a fork() (not
 * public): every context and graph is registered, so that handlers run by
 * fork() can take all their locks first (fork.c).
 */
#ifndef AG_FORK_H
#define AG_FORK_H

#include "autograd_c.h"

/* Register / unregister a context (ag_ctx_new_opt, ag_ctx_free) and a
 * graph of a registered context (ag_graph_new, ag_graph_free).  Register
 * returns AG_OK or AG_ERR_NOMEM (the fork handlers could not be set). */
int ag__fork_track_ctx(ag_ctx *c);
void ag__fork_untrack_ctx(ag_ctx *c);
void ag__fork_track_graph(ag_graph *g);
void ag__fork_untrack_graph(ag_graph *g);

#endif /* AG_FORK_H */
