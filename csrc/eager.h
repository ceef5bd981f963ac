/*
 * eager.h -- what replay.c takes from the eager engine (not public): the
 * topological order and backward over a given order.
 */
#ifndef AG_EAGER_H
#define AG_EAGER_H

#include <stddef.h>
#include <stdint.h>
#include "arena.h"

/* Topological order of what root reaches, children first, into c->order;
 * returns the count.  Clears its marks before returning.  Locked. */
size_t ag__topo(ag_ctx *c, int32_t root);

/* micrograd's backward over a given topological order (children first;
 * childless nodes, which have no rule, may be left out): root's grad = int
 * 1, then each node's contributions from order[n-1] down to order[0].
 * ag_backward passes its depth-first order without childless nodes, a
 * captured graph (replay.c) the op nodes of the order it copied at capture,
 * which contribute in the same order.  Clears AG_MARK on the nodes.
 * Locked. */
void ag__backward_order(ag_ctx *c, int32_t root, const int32_t *order,
                        size_t n);

/* Whether one of the n nodes of order has the caller's own backward rule
 * (AG_USER_RULE); looked at only while such nodes exist.  Locked. */
int ag__reaches_user_rule(const ag_ctx *c, const int32_t *order, size_t n);

#endif /* AG_EAGER_H */
