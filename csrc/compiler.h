/*
 * compiler.h -- what the engine's C files ask of the compiler (not public).
 */
#ifndef AG_COMPILER_H
#define AG_COMPILER_H

/* For the few functions whose inlining decides a hot loop's speed. */
#if defined(__GNUC__)
#define AG_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define AG_ALWAYS_INLINE inline
#endif

#endif /* AG_COMPILER_H */
