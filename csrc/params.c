/*
 * params.c -- bulk parameter updates: one lock for n nodes (zero_grad, the
 * summed gradients of a batched run, micrograd's SGD step).
 */
#include "arena.h"

static int all_live(const ag_ctx *c, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!ag__is_live(c, ids[i])) return 0;
    return 1;
}

int ag_zero_grads(ag_ctx *c, const int32_t *ids, size_t n) {
    AG_LOCK(c);
    int ok = all_live(c, ids, n);
    for (size_t i = 0; ok && i < n; i++) {
        c->flags[ids[i]] |= AG_GRAD_INT | AG_GRAD_ZERO;
    }
    AG_UNLOCK(c);
    return ok ? AG_OK : AG_ERR_ARG;
}

int ag_add_grads(ag_ctx *c, const int32_t *ids, size_t n, const double *v) {
    AG_LOCK(c);
    int ok = all_live(c, ids, n);
    for (size_t i = 0; ok && i < n; i++) {
        c->grad[ids[i]] = ag__grad(c->grad, c->flags, ids[i]) + v[i];
        c->flags[ids[i]] &= (uint8_t)~(AG_GRAD_INT | AG_GRAD_ZERO);
    }
    AG_UNLOCK(c);
    return ok ? AG_OK : AG_ERR_ARG;
}

int ag_sgd(ag_ctx *c, const int32_t *ids, size_t n, double lr) {
    AG_LOCK(c);
    int ok = all_live(c, ids, n);
    for (size_t i = 0; ok && i < n; i++) {
        c->data[ids[i]] -= lr * ag__grad(c->grad, c->flags, ids[i]);
        c->flags[ids[i]] &= (uint8_t)~AG_DATA_INT;
    }
    AG_UNLOCK(c);
    return ok ? AG_OK : AG_ERR_ARG;
}
