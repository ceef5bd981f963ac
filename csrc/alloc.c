/*
 * alloc.c -- the engine's allocator: the C library's, or one installed by
 * ag_set_allocator (a program's own, or a test's that fails the n-th
 * allocation to walk every out-of-memory path).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "alloc.h"
#include "autograd_c.h"

static void *libc_malloc(size_t size, void *user) {
    (void)user;
    return malloc(size);
}

static void *libc_realloc(void *p, size_t size, void *user) {
    (void)user;
    return realloc(p, size);
}

static void libc_free(void *p, void *user) {
    (void)user;
    free(p);
}

static const ag_allocator libc_allocator = {libc_malloc, libc_realloc,
                                            libc_free, NULL};
static ag_allocator current = {libc_malloc, libc_realloc, libc_free, NULL};

int ag_set_allocator(const ag_allocator *a) {
    if (a && (!a->malloc || !a->realloc || !a->free)) return AG_ERR_ARG;
    current = a ? *a : libc_allocator;
    return AG_OK;
}

void *ag__malloc(size_t size) {
    return current.malloc(size ? size : 1, current.user);
}

void *ag__calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = ag__malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void *ag__realloc(void *p, size_t size) {
    return current.realloc(p, size ? size : 1, current.user);
}

void ag__free(void *p) {
    if (p) current.free(p, current.user);
}
