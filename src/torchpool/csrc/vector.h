/* torchpool: what the C kernels share. A block of LANES float32 lanes as a GCC vector (the compiler
 * lowers it to AVX-512, AVX2 or SSE as the CPU has), its loads and stores, a select, the max
 * instruction where AVX-512 has one, and each OpenMP thread's share of the work. The loader
 * (torchpool/_native.py) hashes this header with each kernel, so a change rebuilds them all. */
#ifndef TORCHPOOL_VECTOR_H
#define TORCHPOOL_VECTOR_H

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <omp.h>
#include <stdint.h>
#include <string.h>

#define LANES 16
#define INLINE static inline __attribute__((always_inline))

typedef float vfloat __attribute__((vector_size(4 * LANES)));
typedef int32_t vint __attribute__((vector_size(4 * LANES)));

INLINE vfloat splat(float a) { return (vfloat){0} + a; }
INLINE vfloat choose(vint mask, vfloat a, vfloat b) { return (vfloat)(((vint)a & mask) | ((vint)b & ~mask)); }
INLINE vfloat load(const float *p) {
    vfloat r;
    memcpy(&r, p, sizeof r);
    return r;
}
INLINE void store(float *p, vfloat a) { memcpy(p, &a, sizeof a); }

/* a > b ? a : b (so b where a is NaN), and the integer max: one instruction each with AVX-512 */
#if defined(__AVX512F__)
INLINE vfloat larger(vfloat a, vfloat b) { return (vfloat)_mm512_max_ps((__m512)a, (__m512)b); }
INLINE vint larger_int(vint a, vint b) { return (vint)_mm512_max_epi32((__m512i)a, (__m512i)b); }
#else
INLINE vfloat larger(vfloat a, vfloat b) { return choose(a > b, a, b); }
INLINE vint larger_int(vint a, vint b) {
    const vint first = a > b;
    return (a & first) | (b & ~first);
}
#endif

/* this OpenMP thread's share [*first, *end) of `count` items */
static inline void share(int64_t count, int64_t *first, int64_t *end) {
    int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    *first = count * id / threads;
    *end = count * (id + 1) / threads;
}

#endif
