/*
 * alloc.h -- every allocation of the engine goes through these (not
 * public): the allocator ag_set_allocator installed, or the C library's.
 */
#ifndef AG_ALLOC_H
#define AG_ALLOC_H

#include <stddef.h>

void *ag__malloc(size_t size);
void *ag__calloc(size_t n, size_t size);   /* zeroed; NULL on overflow too */
void *ag__realloc(void *p, size_t size);
void ag__free(void *p);

#endif /* AG_ALLOC_H */
