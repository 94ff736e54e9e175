/* For tests only: a third instantiation of kernels/runtime/kernels_vnni_i2s.h, the I2_S gemv and gemm the
 * avx-vnni and avx512-vnni tables compile, with vpdpbusd done by exact AVX2 instructions and the tile of the
 * avx-vnni table (BE_VNNI_REGS16). The avx-vnni table itself runs on no CPU the project has (Zen 3: no VNNI;
 * Zen 4: only the EVEX form; qemu TCG up to 10.0 lacks AVX-VNNI), so this is how its source (tiles, tails,
 * indexing, the sum(q) correction) is run bit-exactly against the naive product on any AVX2 CPU; the one
 * instruction substituted is checked on Zen 4 through the avx512-vnni table.
 *
 * test_kernels.c finds the table through a weak reference: linked in, its self-test runs test_i2s on it. */
#include "cpu_features.h"
#include "kernels.h"

#if BE_HAVE_AVX2_KERNELS

#include <immintrin.h>

#define BE_VNNI_TARGET "avx2,fma,f16c"
#define BE_VNNI __attribute__((target(BE_VNNI_TARGET)))
#define BE_VNNI_INLINE static inline __attribute__((target(BE_VNNI_TARGET), always_inline))

/* vpdpbusd: acc + per int32 lane the sum of its four u8 x s8 byte products. Even and odd bytes widened to int16
 * (u8 zero-, s8 sign-extended), products of at most 255 * 128 in magnitude, madd adds the two of a lane's even
 * bytes and the two of its odd bytes in int32: exact, no saturation (as vpdpbusd). */
BE_VNNI_INLINE __m256i dpbusd_emulated(__m256i acc, __m256i u8, __m256i s8) {
    const __m256i u_even = _mm256_and_si256(u8, _mm256_set1_epi16(0x00ff)), u_odd = _mm256_srli_epi16(u8, 8);
    const __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s8, 8), 8), s_odd = _mm256_srai_epi16(s8, 8);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even),
                                                  _mm256_madd_epi16(u_odd, s_odd)));
}

#define BE_VNNI_REGS16 1
#define BE_VNNI_DPBUSD256 dpbusd_emulated
#define BE_VNNI_SUFFIX vnni_emulated
#include "kernels_vnni_i2s.h"

const be_kernels be_kernels_vnni_emulated = {"vnni-emulated", i2s_gemv_vnni_emulated, i2s_gemm_vnni_emulated,
                                             be_float_gemv_avx2, be_quantize_row_i8_avx2, be_q8_0_i16_gemv_avx2};

#else
typedef int be_kernels_vnni_emulated_unused; /* ISO C wants a declaration in every translation unit */
#endif
