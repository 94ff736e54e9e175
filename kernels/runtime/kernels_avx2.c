/* AVX2 kernels (x86-64). Every function carries target("avx2,fma,f16c"), so a default build (no -mavx2)
 * contains this table and be_kernels_select() only picks it when cpu_features reports AVX2, FMA and F16C.
 *
 * I2_S: the 2-bit codes c = T + 1 (0..2) are unpacked with shifts and a mask and multiplied by the int8
 * activations with _mm256_maddubs_epi16 (unsigned codes x signed activations); the ternary product is then
 * sum(c * q) - sum(q), exact in int32. */
#include "cpu_features.h"
#include "kernels.h"

#if BE_HAVE_AVX2_KERNELS

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define BE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define BE_AVX2_INLINE static inline __attribute__((target("avx2,fma,f16c"), always_inline))

/* tokens sharing one unpacked weight block in the gemm (4: the accumulators of 4 tokens and the 4 code vectors of a
 * block fit the 16 ymm registers; 1 row x 4 tokens measured faster than 2 x 4, 2 x 3, 4 x 2 and 1 x 8 with gcc and
 * clang: with the activations in L1 a second row saves nothing) */
#define GEMM_TOKENS 4  /* i2s_gemm_avx2's switch has a case per token count up to it */
/* Saturation bound: one _mm256_maddubs_epi16 lane is c_a*q_a + c_b*q_b with c in 0..2 and q in -128..127, so it
 * lies in [-512, 508]; I2S_CHUNK = 16 blocks of 128 columns add 64 of them, [-32768, 32512], inside int16, before
 * they are widened to int32 with madd (and vpaddw wraps, so a partial sum past the range still ends exact) */
#ifndef I2S_CHUNK
#define I2S_CHUNK 16
#endif
/* GCC keeps the gemm's per-token accumulators in registers only when the token loops are unrolled; clang does
 * it unasked and the pragma makes its code slower (measured with bench_kernels: gcc 189 -> 210, clang 253 ->
 * 155 GOPS) */
#if defined(__clang__)
#define BE_UNROLL
#else
#define BE_UNROLL _Pragma("GCC unroll 8")
#endif

#define BE_X86_INLINE BE_AVX2_INLINE
#include "kernels_x86_helpers.h"

BE_AVX2_INLINE float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* sum of q[0..kp), kp % 128 == 0 (maddubs by ones: pair sums in [-256, 254], no saturation) */
BE_AVX2_INLINE int32_t sum_q(const int8_t *q, int kp) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < kp; k += 32) {
        __m256i p = _mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(q + k)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones16));
    }
    return hsum_ymm_i32(acc);
}

/* the four code vectors of one 32-byte block: columns j, j+32, j+64, j+96 of byte j */
BE_AVX2_INLINE void unpack_block(const uint8_t *blk, __m256i c[4]) {
    const __m256i mask = _mm256_set1_epi8(3);
    const __m256i v = _mm256_loadu_si256((const __m256i *)blk);
    c[0] = _mm256_and_si256(_mm256_srli_epi16(v, 6), mask);
    c[1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
    c[2] = _mm256_and_si256(_mm256_srli_epi16(v, 2), mask);
    c[3] = _mm256_and_si256(v, mask);
}

/* acc16 += sum over the block of c * q (int16 lanes, see the saturation bound) */
BE_AVX2_INLINE __m256i block_dot16(const __m256i c[4], const int8_t *qb, __m256i acc16) {
    __m256i p0 = _mm256_maddubs_epi16(c[0], _mm256_loadu_si256((const __m256i *)(qb + 0)));
    __m256i p1 = _mm256_maddubs_epi16(c[1], _mm256_loadu_si256((const __m256i *)(qb + 32)));
    __m256i p2 = _mm256_maddubs_epi16(c[2], _mm256_loadu_si256((const __m256i *)(qb + 64)));
    __m256i p3 = _mm256_maddubs_epi16(c[3], _mm256_loadu_si256((const __m256i *)(qb + 96)));
    return _mm256_add_epi16(acc16, _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3)));
}

/* the four int32 sums of a[0..3], in one vector (lane i = sum of a[i]) */
BE_AVX2_INLINE __m128i hsum4_i32(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/* one row times T tokens (T a constant after inlining, 1..GEMM_TOKENS), each 32-byte weight block unpacked once for
 * the T tokens; out[t] = sum_k c * q_t (the codes, not yet minus the activation sums) */
BE_AVX2_INLINE void row_tokens_codes_dot(const uint8_t *row, const int8_t *q, int kp, const int T, int32_t *out) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256i acc32[GEMM_TOKENS];
    BE_UNROLL
    for (int t = 0; t < T; t++) acc32[t] = _mm256_setzero_si256();
    const int nblk = kp / 128;
    for (int b0 = 0; b0 < nblk; b0 += I2S_CHUNK) {
        const int b1 = b0 + I2S_CHUNK < nblk ? b0 + I2S_CHUNK : nblk;
        __m256i acc16[GEMM_TOKENS];
        BE_UNROLL
        for (int t = 0; t < T; t++) acc16[t] = _mm256_setzero_si256();
        for (int b = b0; b < b1; b++) {
            __m256i c[4];
            unpack_block(row + (size_t)b * 32, c);
            BE_UNROLL
            for (int t = 0; t < T; t++) acc16[t] = block_dot16(c, q + (size_t)t * kp + (size_t)b * 128, acc16[t]);
        }
        BE_UNROLL
        for (int t = 0; t < T; t++) acc32[t] = _mm256_add_epi32(acc32[t], _mm256_madd_epi16(acc16[t], ones16));
    }
    if (T == 4) {
        _mm_storeu_si128((__m128i *)out, hsum4_i32(acc32[0], acc32[1], acc32[2], acc32[3]));
    } else {
        BE_UNROLL
        for (int t = 0; t < T; t++) out[t] = hsum_ymm_i32(acc32[t]);
    }
}

/* gemv: one row at a time. Interleaving 2-8 rows (sharing the activation loads) measured slower here, warm and
 * cold (register spills, more concurrent streams): see kernels/tests/bench_kernels.c. */
static BE_AVX2 void i2s_gemv_avx2(const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1, int kp) {
    const size_t row_bytes = (size_t)kp / 4;
    const int32_t qsum = sum_q(q, kp);
    for (int n = n0; n < n1; n++) {
        int32_t s[1];
        prefetch_ahead(w + (size_t)n * row_bytes, row_bytes);
        row_tokens_codes_dot(w + (size_t)n * row_bytes, q, kp, 1, s);
        acc[n] = s[0] - qsum;
    }
}

/* T tokens (q: T rows of kp) against rows [n0, n1): acc[i * ldacc + n] = dot - qsum[i] */
BE_AVX2_INLINE void gemm_tokens(const uint8_t *w, size_t row_bytes, const int8_t *q, int32_t *acc, int ldacc,
                                const int32_t *qsum, int n0, int n1, int kp, int prefetch, const int T) {
    for (int n = n0; n < n1; n++) {
        int32_t s[GEMM_TOKENS];
        if (prefetch) prefetch_ahead(w + (size_t)n * row_bytes, row_bytes);
        row_tokens_codes_dot(w + (size_t)n * row_bytes, q, kp, T, s);
        for (int i = 0; i < T; i++) acc[(size_t)i * ldacc + n] = s[i] - qsum[i];
    }
}

/* Loop order: a group of GEMM_TOKENS tokens (their activations, GEMM_TOKENS * kp bytes, stay in L1) meets every
 * row of the range before the next group; the weights stream from L2/L3, 32 bytes per GEMM_TOKENS * 4 multiplies
 * a row. (Rows outer and tokens inner re-read the activations from L2 for every row: one 32-byte L2 load per
 * vpmaddubsw, which held the kernel at the speed of the gemv: 1.2-1.5x slower with clang, bench/bench_kernels.py.) */
static BE_AVX2 void i2s_gemm_avx2(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1,
                                  int kp, int nb) {
    const size_t row_bytes = (size_t)kp / 4;
    /* a decode batch of a few tokens streams the weights from DRAM like a gemv: prefetch as it does */
    const int prefetch = nb <= 2 * GEMM_TOKENS;
    int32_t qsum[GEMM_TOKENS];
    for (int t = 0; t < nb; t += GEMM_TOKENS) {
        const int T = nb - t < GEMM_TOKENS ? nb - t : GEMM_TOKENS;
        const int8_t *qt = q + (size_t)t * kp;
        int32_t *acc_t = acc + (size_t)t * ldacc;
        for (int i = 0; i < T; i++) qsum[i] = sum_q(qt + (size_t)i * kp, kp);
        /* a constant T in each call, so that the accumulators stay in registers */
        switch (T) {
        case 4: gemm_tokens(w, row_bytes, qt, acc_t, ldacc, qsum, n0, n1, kp, prefetch, 4); break;
        case 3: gemm_tokens(w, row_bytes, qt, acc_t, ldacc, qsum, n0, n1, kp, prefetch, 3); break;
        case 2: gemm_tokens(w, row_bytes, qt, acc_t, ldacc, qsum, n0, n1, kp, prefetch, 2); break;
        default: gemm_tokens(w, row_bytes, qt, acc_t, ldacc, qsum, n0, n1, kp, prefetch, 1); break;
        }
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * float gemv: 8-wide FMA, four independent accumulators; tails in scalar */

BE_AVX2_INLINE float dot_f32(const float *w, const float *x, int k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= k; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum_f32(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < k; i++) s += w[i] * x[i];
    return s;
}

/* one IEEE half at p (little-endian) as a float: F16C, exact like be_f16_to_f32 */
BE_AVX2_INLINE float f16_load(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8))); }

BE_AVX2_INLINE __m256 load_f16x8(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

BE_AVX2_INLINE float dot_f16(const uint8_t *w, const float *x, int k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= k; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(w + 2 * (i + 8)), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(w + 2 * (i + 16)), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(w + 2 * (i + 24)), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum_f32(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < k; i++) s += f16_load(w + 2 * i) * x[i];
    return s;
}

BE_AVX2_INLINE __m256 load_i8x8_ps(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* sum over 32 int8 levels q and floats x, in 8 lanes (4 products per lane, in this order) */
BE_AVX2_INLINE __m256 dot32_levels(const int8_t *q, const float *x) {
    __m256 s = _mm256_mul_ps(load_i8x8_ps(q), _mm256_loadu_ps(x));
    s = _mm256_fmadd_ps(load_i8x8_ps(q + 8), _mm256_loadu_ps(x + 8), s);
    s = _mm256_fmadd_ps(load_i8x8_ps(q + 16), _mm256_loadu_ps(x + 16), s);
    return _mm256_fmadd_ps(load_i8x8_ps(q + 24), _mm256_loadu_ps(x + 24), s);
}

/* per block: d * (q . x), with the block dot product in 8 lanes and d applied by one FMA */
BE_AVX2_INLINE float dot_q8_0(const uint8_t *w, const float *x, int k) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < k / BE_Q8_0_BLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * BE_Q8_0_BYTES;
        const int8_t *qs = (const int8_t *)(blk + 2);
        const float *xb = x + b * BE_Q8_0_BLOCK;
        const __m256 s = dot32_levels(qs, xb);
        const float d = f16_load(blk);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
    }
    return hsum_f32(acc);
}

BE_AVX2_INLINE __m256 f16_set1(const uint8_t *p) { return _mm256_set1_ps(f16_load(p)); }

/* Q4_0 in two passes over chunks of a row, like Q6_K below: the nibbles of each block unpacked to int8 q - 8
 * (low: weights 0..15, high: 16..31) into a buffer, with the block's d; then per block d * (q . x) reading the
 * buffer as Q8_0's kernel reads its blocks; two accumulators */
#define Q4_0_ROW_CHUNK 64  /* blocks per pass: 2 KiB of levels */
BE_AVX2 float be_dot_q4_0_avx2(const uint8_t *w, const float *x, int k) {
    const __m128i m4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    _Alignas(32) int8_t q[Q4_0_ROW_CHUNK * BE_Q4_0_BLOCK];
    float ds[Q4_0_ROW_CHUNK];
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int nblk = k / BE_Q4_0_BLOCK;
    for (int b0 = 0; b0 < nblk; b0 += Q4_0_ROW_CHUNK) {
        const int nb = nblk - b0 < Q4_0_ROW_CHUNK ? nblk - b0 : Q4_0_ROW_CHUNK;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + (size_t)(b0 + b) * BE_Q4_0_BYTES;
            const __m128i v = _mm_loadu_si128((const __m128i *)(blk + 2));
            _mm_store_si128((__m128i *)(q + 32 * b), _mm_sub_epi8(_mm_and_si128(v, m4), eight));
            _mm_store_si128((__m128i *)(q + 32 * b + 16), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), eight));
            ds[b] = f16_load(blk);
        }
        const float *xc = x + (size_t)b0 * BE_Q4_0_BLOCK;
        int b = 0;
        for (; b + 2 <= nb; b += 2) {
            const int8_t *qb = q + 32 * b;
            const float *xb = xc + 32 * b;
            const __m256 s0 = dot32_levels(qb, xb), s1 = dot32_levels(qb + 32, xb + 32);
            acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(ds + b), s0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(ds + b + 1), s1, acc1);
        }
        if (b < nb) {
            const int8_t *qb = q + 32 * b;
            const float *xb = xc + 32 * b;
            acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(ds + b), dot32_levels(qb, xb), acc0);
        }
    }
    return hsum_f32(_mm256_add_ps(acc0, acc1));
}

/* Q6_K in two passes over each chunk of a row: first every block's 256 levels are unpacked to int8 (u - 32) with
 * 32-byte vector ops and stored to a buffer, with each 16-weight group's d * scale (fp32, as the scalar twin
 * computes it); then the dot product reads that buffer as Q8_0's reads its blocks (vpmovsxbd m64: one shuffle per
 * 8 weights; widening the unpacked registers directly takes two more, and was 35% slower). Unpacking and using one
 * block at a time measured the same as these chunks. Two accumulators. */
#define Q6_K_ROW_CHUNK 16  /* blocks per pass: 4 KiB of levels, in L1 */
BE_AVX2 float be_dot_q6_k_avx2(const uint8_t *w, const float *x, int k) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    _Alignas(32) int8_t q[Q6_K_ROW_CHUNK * BE_Q6_K_BLOCK];
    _Alignas(32) float ds[Q6_K_ROW_CHUNK * 16];
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int nblk = k / BE_Q6_K_BLOCK;
    for (int b0 = 0; b0 < nblk; b0 += Q6_K_ROW_CHUNK) {
        const int nb = nblk - b0 < Q6_K_ROW_CHUNK ? nblk - b0 : Q6_K_ROW_CHUNK;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + (size_t)(b0 + b) * BE_Q6_K_BYTES;
            const __m256 d = f16_set1(blk + 208);
            _mm256_store_ps(ds + 16 * b, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                   _mm_loadl_epi64((const __m128i *)(blk + 192))))));
            _mm256_store_ps(ds + 16 * b + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                       _mm_loadl_epi64((const __m128i *)(blk + 200))))));
            for (int h = 0; h < 2; h++) {
                const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
                __m256i *o = (__m256i *)(q + BE_Q6_K_BLOCK * b + 128 * h);
                _mm256_store_si256(o, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(ql0, m4),
                                                      _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)), k32));
                _mm256_store_si256(o + 1, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4)), k32));
                _mm256_store_si256(o + 2, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4)), k32));
                _mm256_store_si256(o + 3, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4)), k32));
            }
        }
        const float *xc = x + (size_t)b0 * BE_Q6_K_BLOCK;
        for (int g = 0; g < 16 * nb; g += 2) {
            const int8_t *qg = q + 16 * g;
            const float *xg = xc + 16 * g;
            __m256 sa = _mm256_mul_ps(load_i8x8_ps(qg), _mm256_loadu_ps(xg));
            sa = _mm256_fmadd_ps(load_i8x8_ps(qg + 8), _mm256_loadu_ps(xg + 8), sa);
            __m256 sb = _mm256_mul_ps(load_i8x8_ps(qg + 16), _mm256_loadu_ps(xg + 16));
            sb = _mm256_fmadd_ps(load_i8x8_ps(qg + 24), _mm256_loadu_ps(xg + 24), sb);
            acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(ds + g), sa, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(ds + g + 1), sb, acc1);
        }
    }
    return hsum_f32(_mm256_add_ps(acc0, acc1));
}

BE_AVX2 void be_float_gemv_avx2(const void *w, int type, const float *x, float *y, int n0, int n1, int k) {
    const size_t row_bytes = be_float_row_bytes(type, k);
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)n * row_bytes;
        prefetch_ahead(row, row_bytes);
        switch (type) {
        case BE_F32: y[n] = dot_f32((const float *)row, x, k); break;
        case BE_F16: y[n] = dot_f16(row, x, k); break;
        case BE_Q8_0: y[n] = dot_q8_0(row, x, k); break;
        case BE_Q4_0: y[n] = be_dot_q4_0_avx2(row, x, k); break;
        case BE_Q6_K: y[n] = be_dot_q6_k_avx2(row, x, k); break;
        default: y[n] = 0.0f; break;
        }
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * activation quantization, bit-identical to the scalar twin for finite x: max is exact in any order, a is
 * computed by the same scalar expression, x * a is one fp32 multiply, _mm256_round_ps with
 * _MM_FROUND_TO_NEAREST_INT is rintf's round-half-to-even, and the clamp and conversions are exact. */

BE_AVX2 float be_quantize_row_i8_avx2(const float *x, int8_t *q, int k, int kp) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= k; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    for (; i < k; i++) {
        const float v = x[i] < 0 ? -x[i] : x[i];
        if (v > amax) amax = v;
    }
    const float a = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
    const __m256 va = _mm256_set1_ps(a), lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
    i = 0;
    for (; i + 32 <= k; i += 32) {
        __m256i r[4];
        for (int j = 0; j < 4; j++) {
            __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), va),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
        }
        /* packs work within 128-bit lanes: 32-bit lanes end up in the order 0 4 1 5 2 6 3 7, undone below */
        __m256i w16 = _mm256_packs_epi32(r[0], r[1]), w16b = _mm256_packs_epi32(r[2], r[3]);
        __m256i b8 = _mm256_packs_epi16(w16, w16b);
        b8 = _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), b8);
    }
    for (; i < k; i++) {
        float v = rintf(x[i] * a);  /* the scalar twin's expression (no NaN here for finite x) */
        v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)v;
    }
    if (kp > k) memset(q + k, 0, (size_t)(kp - k));
    return a;
}

/* ----------------------------------------------------------------------------------------------------------
 * Q8_0 times int16 activations (the greedy output's fast pass): per block, the 32 levels sign-extended to int16
 * (vpmovsxbw) and multiplied by x with vpmaddwd; each int32 lane then holds 4 products, |sum| <= 4 * 127 * 32767
 * < 2^24, so its conversion to float is exact; d_b applied by one FMA per block into two accumulators. About 9
 * instructions per block against the float dot's 19: near the read bandwidth where the float dot is not. */
BE_AVX2_INLINE __m256 q8_0_i16_block(const uint8_t *blk, const int16_t *x) {
    const __m256i lo = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 2)));
    const __m256i hi = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 18)));
    const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256((const __m256i *)x)),
                                       _mm256_madd_epi16(hi, _mm256_loadu_si256((const __m256i *)(x + 16))));
    return _mm256_cvtepi32_ps(s);
}

BE_AVX2 void be_q8_0_i16_gemv_avx2(const uint8_t *w, const int16_t *x, float *y, int n0, int n1, int k) {
    const size_t row_bytes = be_float_row_bytes(BE_Q8_0, k);
    const int nblk = k / BE_Q8_0_BLOCK;
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = w + (size_t)n * row_bytes;
        prefetch_ahead(row, row_bytes);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int b = 0;
        for (; b + 2 <= nblk; b += 2) {
            const uint8_t *b0 = row + (size_t)b * BE_Q8_0_BYTES, *b1 = b0 + BE_Q8_0_BYTES;
            acc0 = _mm256_fmadd_ps(f16_set1(b0), q8_0_i16_block(b0, x + b * BE_Q8_0_BLOCK), acc0);
            acc1 = _mm256_fmadd_ps(f16_set1(b1), q8_0_i16_block(b1, x + (b + 1) * BE_Q8_0_BLOCK), acc1);
        }
        if (b < nblk) {
            const uint8_t *b0 = row + (size_t)b * BE_Q8_0_BYTES;
            acc0 = _mm256_fmadd_ps(f16_set1(b0), q8_0_i16_block(b0, x + b * BE_Q8_0_BLOCK), acc0);
        }
        y[n] = hsum_f32(_mm256_add_ps(acc0, acc1));
    }
}

const be_kernels be_kernels_avx2 = {"avx2", i2s_gemv_avx2, i2s_gemm_avx2, be_float_gemv_avx2,
                                    be_quantize_row_i8_avx2, be_q8_0_i16_gemv_avx2};

#else
typedef int be_kernels_avx2_unused; /* ISO C wants a declaration in every translation unit */
#endif
