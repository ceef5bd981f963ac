/*
 * node_view.h -- a node as the public API shows it (value and gradient with
 * their types, info, name), to check that a failed call changed nothing.
 * Shared by the C tests (test_handles.c) and the fuzz harness.
 */
#ifndef AG_TEST_NODE_VIEW_H
#define AG_TEST_NODE_VIEW_H

#include <complex.h>
#include <string.h>
#include "autograd_c.h"

typedef struct {
    int64_t h;               /* -1: no node viewed */
    double _Complex data, grad;
    int info_status;         /* ag_node_info's status */
    ag_node info;
    int64_t name_len;
    char name[64];
} node_view;

static inline node_view node_view_of(ag_ctx *c, int64_t h) {
    node_view v;
    memset(&v, 0, sizeof v);
    v.h = h;
    if (h < 0) return v;
    v.data = ag_read(c, h, AG_READ_DATA);
    v.grad = ag_read(c, h, AG_READ_GRAD);
    v.info_status = ag_node_info(c, h, &v.info);
    v.name_len = ag_node_name(c, h, v.name, sizeof v.name);
    return v;
}

static inline int node_view_same_bits(double x, double y) {
    return memcmp(&x, &y, sizeof x) == 0;
}

/* The node of was->h looks now as it did then, bit for bit. */
static inline int node_view_unchanged(ag_ctx *c, const node_view *was) {
    if (was->h < 0) return 1;
    node_view now = node_view_of(c, was->h);
    return node_view_same_bits(creal(now.data), creal(was->data)) &&
           cimag(now.data) == cimag(was->data) &&
           node_view_same_bits(creal(now.grad), creal(was->grad)) &&
           cimag(now.grad) == cimag(was->grad) &&
           now.info_status == was->info_status &&
           now.info.op == was->info.op && now.info.a == was->info.a &&
           now.info.b == was->info.b &&
           node_view_same_bits(now.info.k, was->info.k) &&
           now.info.flags == was->info.flags &&
           now.name_len == was->name_len && strcmp(now.name, was->name) == 0;
}

#endif /* AG_TEST_NODE_VIEW_H */
