/* AVX-512 VNNI kernels (x86-64: AMD Zen 4 and later, Intel Ice Lake / Sapphire Rapids servers and later).
 *
 * Every function carries a target attribute (AVX-512 F/BW/VL/VNNI plus AVX2/FMA/F16C), so a default build (no
 * -mavx512...) contains this table and still runs on an AVX2-only CPU: kernels.c offers the table only when
 * cpu_features reports all of these and the OS saves the ZMM state (XCR0).
 *
 * I2_S: the gemv and gemm live in kernels_vnni_i2s.h (the arithmetic is explained there), written once and
 * instantiated here with the EVEX vpdpbusd (_mm256_dpbusd_epi32 / _mm512_dpbusd_epi32) and in kernels_avxvnni.c
 * with the VEX one (AVX-VNNI): Zen 4 runs this instantiation, so the tests that run it there also test the
 * kernel source the avx-vnni table compiles.
 *
 * Vector width of the gemm (prompt batches): BE_VNNI_ZMM = 1 (default) works on 512-bit vectors, BE_VNNI_ZMM = 0
 * on 256-bit ones (AVX512VL; the EVEX encoding still gives 32 vector registers). On Zen 4 a 512-bit op is executed
 * as two 256-bit halves ("double-pumped"), so zmm saves instructions (half the unpacking: one broadcast block
 * feeds two slots), not arithmetic. Measured on Zen 4 with kernels/tests/bench_kernels.c (docs/kernels.md
 * "AVX-512 VNNI"): zmm was 3-9% faster in the gemm, and slower in the gemv from DRAM, so the gemv is ymm always.
 * Both widths give the same bits (tests build both). */
#include "cpu_features.h"
#include "kernels.h"

#if BE_HAVE_AVX512VNNI_KERNELS

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define BE_VNNI_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#define BE_VNNI __attribute__((target(BE_VNNI_TARGET)))
#define BE_VNNI_INLINE static inline __attribute__((target(BE_VNNI_TARGET), always_inline))

#ifndef BE_VNNI_ZMM
#define BE_VNNI_ZMM 1
#endif

/* the ymm gemv and the gemm (kernels_vnni_i2s.h, shared with the avx-vnni table) through the EVEX vpdpbusd */
#define BE_VNNI_DPBUSD256 _mm256_dpbusd_epi32
#define BE_VNNI_SUFFIX avx512vnni

#if BE_VNNI_ZMM
/* the gemm on 512-bit vectors: the block's 32 bytes are broadcast to both halves of a zmm; code vector s shifts
 * each half by its own count (vpsrlvw): the low half gives slot 2s, the high half slot 2s + 1, which is the order
 * of the activations q[32 * slot ..] in memory, so each code vector meets one contiguous 64-byte activation load */
#define BE_VNNI_VEC_DEFINED 1
typedef __m512i vec;
#define VBYTES 64
#define VPB 2 /* code vectors per block: slots {0, 1} and {2, 3} */

BE_VNNI_INLINE vec load_block(const uint8_t *blk) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)blk));
}
BE_VNNI_INLINE vec block_codes(vec v, int s) {
    const __m512i shift = s == 0 ? _mm512_inserti64x4(_mm512_set1_epi16(6), _mm256_set1_epi16(4), 1)
                                 : _mm512_inserti64x4(_mm512_set1_epi16(2), _mm256_set1_epi16(0), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(v, shift), _mm512_set1_epi8(3));
}
BE_VNNI_INLINE vec vzero(void) { return _mm512_setzero_si512(); }
BE_VNNI_INLINE vec vload(const int8_t *p) { return _mm512_loadu_si512((const void *)p); }
BE_VNNI_INLINE vec vdot(vec acc, vec codes, vec q) { return _mm512_dpbusd_epi32(acc, codes, q); }
BE_VNNI_INLINE vec vadd(vec a, vec b) { return _mm512_add_epi32(a, b); }
BE_VNNI_INLINE int32_t vhsum(vec v) { return _mm512_reduce_add_epi32(v); }
BE_VNNI_INLINE vec vones8(void) { return _mm512_set1_epi8(1); }
#endif

#include "kernels_vnni_i2s.h"

/* ----------------------------------------------------------------------------------------------------------
 * float gemv (embeddings / output matrix): float activations, always (the lossless contract: only the ternary
 * matrices' activations are quantized). Weights are widened to fp32 and multiplied with FMA in 16 lanes, four
 * independent accumulators; the contract is kernels_avx2.c's (|y - exact| <= 1e-5 * sum |w x|), only the
 * summation order differs. Tails use masked loads (zeros past k). */

BE_VNNI_INLINE float dot_f32(const float *w, const float *x, int k) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= k; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i < k; i += 16) {
        const __mmask16 m = k - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - i)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, x + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

BE_VNNI_INLINE __m512 load_f16x16(__mmask16 m, const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const void *)p));
}

BE_VNNI_INLINE float dot_f16(const uint8_t *w, const float *x, int k) {
    const __mmask16 all = 0xffff;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= k; i += 64) {
        a0 = _mm512_fmadd_ps(load_f16x16(all, w + 2 * i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_f16x16(all, w + 2 * (i + 16)), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_f16x16(all, w + 2 * (i + 32)), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_f16x16(all, w + 2 * (i + 48)), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i < k; i += 16) {
        const __mmask16 m = k - i >= 16 ? all : (__mmask16)((1u << (k - i)) - 1);
        a0 = _mm512_fmadd_ps(load_f16x16(m, w + 2 * i), _mm512_maskz_loadu_ps(m, x + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

BE_VNNI_INLINE __m512 load_i8x16_ps(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

/* per block: d * (q . x), the block's 32 products in 16 lanes, d applied by one FMA per block; two blocks in
 * flight so that consecutive blocks do not wait on one accumulator */
BE_VNNI_INLINE float dot_q8_0(const uint8_t *w, const float *x, int k) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const int nblk = k / BE_Q8_0_BLOCK;
    int b = 0;
    for (; b < nblk; b++) {
        const uint8_t *blk = w + (size_t)b * BE_Q8_0_BYTES;
        const int8_t *qs = (const int8_t *)(blk + 2);
        const float *xb = x + b * BE_Q8_0_BLOCK;
        __m512 s = _mm512_mul_ps(load_i8x16_ps(qs), _mm512_loadu_ps(xb));
        s = _mm512_fmadd_ps(load_i8x16_ps(qs + 16), _mm512_loadu_ps(xb + 16), s);
        const __m512 d = _mm512_set1_ps(_cvtsh_ss((unsigned short)(blk[0] | (blk[1] << 8))));  /* exact, F16C */
        if (b & 1) acc1 = _mm512_fmadd_ps(d, s, acc1);
        else acc0 = _mm512_fmadd_ps(d, s, acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

static BE_VNNI void float_gemv_avx512vnni(const void *w, int type, const float *x, float *y, int n0, int n1, int k) {
    const size_t row_bytes = be_float_row_bytes(type, k);
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)n * row_bytes;
        prefetch_ahead(row, row_bytes);
        switch (type) {
        case BE_F32: y[n] = dot_f32((const float *)row, x, k); break;
        case BE_F16: y[n] = dot_f16(row, x, k); break;
        case BE_Q8_0: y[n] = dot_q8_0(row, x, k); break;
        /* Q4_0 and Q6_K: the AVX2 table's code as it is (kernels_avx2.c); a 512-bit variant waits for a machine with
         * AVX-512 to measure it on */
        case BE_Q4_0: y[n] = be_dot_q4_0_avx2(row, x, k); break;
        case BE_Q6_K: y[n] = be_dot_q6_k_avx2(row, x, k); break;
        default: y[n] = 0.0f; break;
        }
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * activation quantization, bit-identical to the scalar twin for finite x (the argument of kernels_avx2.c):
 * max is exact in any order, a is the same scalar expression, x * a one fp32 multiply, roundscale with
 * _MM_FROUND_TO_NEAREST_INT is rintf's round-half-to-even, the clamp exact; vpmovsdb narrows 16 int32 already in
 * [-128, 127] to bytes in order (no lane shuffles as with AVX2's packs). */

static BE_VNNI float quantize_row_i8_avx512vnni(const float *x, int8_t *q, int k, int kp) {
    __m512 m = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= k; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    float amax = _mm512_reduce_max_ps(m);
    for (; i < k; i++) {
        const float v = x[i] < 0 ? -x[i] : x[i];
        if (v > amax) amax = v;
    }
    const float a = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
    const __m512 va = _mm512_set1_ps(a), lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
    i = 0;
    for (; i + 16 <= k; i += 16) {
        __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), va),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    for (; i < k; i++) {
        float v = rintf(x[i] * a);  /* the scalar twin's expression (no NaN here for finite x) */
        v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)v;
    }
    if (kp > k) memset(q + k, 0, (size_t)(kp - k));
    return a;
}

const be_kernels be_kernels_avx512vnni = {"avx512-vnni", i2s_gemv_avx512vnni, i2s_gemm_avx512vnni,
                                          float_gemv_avx512vnni, quantize_row_i8_avx512vnni,
                                          be_q8_0_i16_gemv_avx2};

#else
typedef int be_kernels_avx512vnni_unused; /* ISO C wants a declaration in every translation unit */
#endif
