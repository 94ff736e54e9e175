/* The helpers every x86 kernel file shares, compiled by each for its own instruction set: define BE_X86_INLINE as
 * that file's "static inline __attribute__((target(...), always_inline))" before including this. */
#ifndef BITEDGE_KERNELS_X86_HELPERS_H
#define BITEDGE_KERNELS_X86_HELPERS_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* Generation streams every weight from DRAM once per token. The hardware prefetcher alone kept one thread at
 * 60-80% of the read bandwidth here; asking for the lines 4 KiB ahead of the row being read keeps more misses in
 * flight (bench_kernels cold: +25-30% GB/s on the 2B-4T shapes; 1 KiB did nothing, 8 KiB was noisier). A
 * prefetch never faults, so running past the end of the matrix is harmless. */
#ifndef BE_PREFETCH_AHEAD
#define BE_PREFETCH_AHEAD 4096
#endif

BE_X86_INLINE void prefetch_ahead(const uint8_t *p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + BE_PREFETCH_AHEAD + o, _MM_HINT_T0);
}

BE_X86_INLINE int32_t hsum_ymm_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

#endif
