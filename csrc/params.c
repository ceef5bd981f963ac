/*
 * params.c -- bulk parameter updates: one lock for n nodes (zero_grad, the
 * summed gradients of a batched run, micrograd's SGD step).  Every handle
 * is checked before anything changes.
 */
#include "arena.h"

int ag_zero_grads(ag_ctx *c, const int64_t *hs, size_t n) {
    AG_LOCK(c);
    int st = ag__all_live(c, hs, n);
    for (size_t i = 0; st == AG_OK && i < n; i++) {
        int32_t id = (int32_t)ag__slot(c, hs[i]);
        c->flags[id] |= AG_GRAD_INT | AG_GRAD_ZERO;
    }
    AG_UNLOCK(c);
    return st;
}

int ag_add_grads(ag_ctx *c, const int64_t *hs, size_t n, const double *v) {
    AG_LOCK(c);
    int st = ag__all_live(c, hs, n);
    for (size_t i = 0; st == AG_OK && i < n; i++) {
        int32_t id = (int32_t)ag__slot(c, hs[i]);
        c->grad[id] = ag__grad(c->grad, c->flags, id) + v[i];
        c->flags[id] &= (uint8_t)~(AG_GRAD_INT | AG_GRAD_ZERO);
    }
    AG_UNLOCK(c);
    return st;
}

int ag_sgd(ag_ctx *c, const int64_t *hs, size_t n, double lr) {
    AG_LOCK(c);
    int st = ag__all_live(c, hs, n);
    for (size_t i = 0; st == AG_OK && i < n; i++) {
        int32_t id = (int32_t)ag__slot(c, hs[i]);
        c->data[id] -= lr * ag__grad(c->grad, c->flags, id);
        c->flags[id] &= (uint8_t)~AG_DATA_INT;
    }
    AG_UNLOCK(c);
    return st;
}
