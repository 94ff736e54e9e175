/* AVX-512 VNNI kernels (x86-64: AMD Zen 4 and later, Intel Ice Lake / Sapphire Rapids servers and later).
 *
 * Every function carries a target attribute (AVX-512 F/BW/VL/VNNI plus AVX2/FMA/F16C), so a default build (no
 * -mavx512...) contains this table and still runs on an AVX2-only CPU: kernels.c offers the table only when
 * cpu_features reports all of these and the OS saves the ZMM state (XCR0).
 *
 * I2_S: as on AVX2, the 2-bit codes c = T + 1 (0..2) are unsigned and the activations q signed, and the ternary
 * product is sum(c * q) - sum(q). vpdpbusd (_mm256_dpbusd_epi32) multiplies unsigned by signed bytes and adds
 * each group of four products straight into an int32 lane, without saturation: one instruction instead of
 * AVX2's maddubs + add (+ a madd every 8 blocks to widen int16), and no int16 bound to respect. A lane gains at
 * most 4 * 2 * 128 = 1024 in magnitude per instruction, so int32 sums are exact for any real K.
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

/* gemm tile: GEMM_ROWS rows x GEMM_TOKENS tokens of int32 accumulators (16 registers). Each unpacked code
 * vector feeds GEMM_TOKENS tokens and each activation load GEMM_ROWS rows, so a code vector's columns cost
 * GEMM_ROWS unpacks + GEMM_TOKENS loads for GEMM_ROWS * GEMM_TOKENS vpdpbusd. 4 x 4 measured faster than
 * 2 x 8, 8 x 2 and 3 x 4 (bench_kernels, 32 tokens). */
#ifndef GEMM_ROWS
#define GEMM_ROWS 4
#endif
#ifndef GEMM_TOKENS
#define GEMM_TOKENS 4
#endif
#define GEMM_QSUM_BATCH 64

/* GCC keeps arrays of vectors in registers only when the loops over them are unrolled; clang unrolls these
 * constant-trip loops unasked (as in kernels_avx2.c) */
#if defined(__clang__)
#define BE_UNROLL
#else
#define BE_UNROLL _Pragma("GCC unroll 16")
#endif

/* software prefetch 4 KiB ahead of the rows being read: see kernels_avx2.c (generation streams the weights) */
#ifndef BE_PREFETCH_AHEAD
#define BE_PREFETCH_AHEAD 4096
#endif

BE_VNNI_INLINE void prefetch_ahead(const uint8_t *p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + BE_PREFETCH_AHEAD + o, _MM_HINT_T0);
}

/* ----------------------------------------------------------------------------------------------------------
 * one 128-column I2_S block as VPB code vectors of VBYTES bytes each, and the activations that go with them.
 * Byte j of a block holds columns j, j+32, j+64, j+96 in bits 7-6, 5-4, 3-2, 1-0 (slots 0..3). */

#if BE_VNNI_ZMM
typedef __m512i vec;
#define VBYTES 64
#define VPB 2 /* code vectors per block: slots {0, 1} and {2, 3} */

/* The block's 32 bytes are broadcast to both halves of a zmm; code vector s shifts each half by its own count
 * (vpsrlvw): the low half gives slot 2s, the high half slot 2s + 1, which is the order of the activations
 * q[32 * slot ..] in memory, so each code vector meets one contiguous 64-byte activation load. */
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
#else
typedef __m256i vec;
#define VBYTES 32
#define VPB 4 /* code vectors per block: one per slot */

BE_VNNI_INLINE vec load_block(const uint8_t *blk) { return _mm256_loadu_si256((const __m256i *)blk); }
BE_VNNI_INLINE vec block_codes(vec v, int s) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 6 - 2 * s), _mm256_set1_epi8(3));
}
BE_VNNI_INLINE vec vzero(void) { return _mm256_setzero_si256(); }
BE_VNNI_INLINE vec vload(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
BE_VNNI_INLINE vec vdot(vec acc, vec codes, vec q) { return _mm256_dpbusd_epi32(acc, codes, q); }
BE_VNNI_INLINE vec vadd(vec a, vec b) { return _mm256_add_epi32(a, b); }
BE_VNNI_INLINE int32_t vhsum(vec v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}
BE_VNNI_INLINE vec vones8(void) { return _mm256_set1_epi8(1); }
#endif

/* sum of q[0..kp), kp % 128 == 0: vpdpbusd of all-ones bytes with q (int32 lanes, exact); 2 * VBYTES divides
 * 128 for both widths */
BE_VNNI_INLINE int32_t sum_q(const int8_t *q, int kp) {
    const vec ones = vones8();
    vec a0 = vzero(), a1 = vzero();
    for (int k = 0; k < kp; k += 2 * VBYTES) {
        a0 = vdot(a0, ones, vload(q + k));
        a1 = vdot(a1, ones, vload(q + k + VBYTES));
    }
    return vhsum(vadd(a0, a1));
}

/* ----------------------------------------------------------------------------------------------------------
 * I2_S gemm tile: R rows (consecutive, row_bytes apart) x T tokens (q rows kp apart), R and T compile-time
 * constants after inlining. out[r * T + t] = sum_k c[r][k] * q_t[k] (codes, not yet minus sum(q)).
 * Per block: R weight loads; then per code vector: R unpacks, and T activation loads each feeding R vpdpbusd. */

BE_VNNI_INLINE void i2s_tile(const uint8_t *row0, size_t row_bytes, const int8_t *q, int kp, int R, int T,
                             int32_t *out) {
    vec acc[GEMM_ROWS * GEMM_TOKENS];
    BE_UNROLL
    for (int i = 0; i < R * T; i++) acc[i] = vzero();
    for (int b = 0; b < kp / 128; b++) {
        vec v[GEMM_ROWS];  /* the rows' packed bytes; codes are cut from them one slot at a time (registers) */
        BE_UNROLL
        for (int r = 0; r < R; r++) v[r] = load_block(row0 + (size_t)r * row_bytes + (size_t)b * 32);
        BE_UNROLL
        for (int s = 0; s < VPB; s++) {
            vec c[GEMM_ROWS];
            BE_UNROLL
            for (int r = 0; r < R; r++) c[r] = block_codes(v[r], s);
            BE_UNROLL
            for (int t = 0; t < T; t++) {
                const vec qv = vload(q + (size_t)t * kp + (size_t)b * 128 + s * VBYTES);
                BE_UNROLL
                for (int r = 0; r < R; r++) acc[r * T + t] = vdot(acc[r * T + t], c[r], qv);
            }
        }
    }
    BE_UNROLL
    for (int i = 0; i < R * T; i++) out[i] = vhsum(acc[i]);
}

/* gemv: 256-bit vectors whatever BE_VNNI_ZMM says, one row at a time, one accumulator per slot (vpdpbusd has a
 * latency of several cycles: one chain would wait on itself). Measured from DRAM on Zen 4 (bench_kernels cold,
 * interleaved runs): at K = 4096 (1 KiB rows, the 700M shape's down projection) the zmm gemv read 9.9-10.6 GB/s
 * against 13.5-16.0 for ymm and 11.3-15.5 for avx2; on the other shapes ymm and zmm were within noise. Rows
 * interleaved 2 or 4 at a time (sharing each activation load) measured slower still (7-10 GB/s against 12.6-18):
 * several row streams a row apart suit the prefetchers worse than one, as in kernels_avx2.c. */
BE_VNNI_INLINE int32_t i2s_row_dot_ymm(const uint8_t *row, const int8_t *q, int kp) {
    const __m256i mask = _mm256_set1_epi8(3);
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    __m256i a2 = _mm256_setzero_si256(), a3 = _mm256_setzero_si256();
    for (int b = 0; b < kp / 128; b++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(row + (size_t)b * 32));
        const int8_t *qb = q + (size_t)b * 128;
        a0 = _mm256_dpbusd_epi32(a0, _mm256_and_si256(_mm256_srli_epi16(v, 6), mask),
                                 _mm256_loadu_si256((const __m256i *)qb));
        a1 = _mm256_dpbusd_epi32(a1, _mm256_and_si256(_mm256_srli_epi16(v, 4), mask),
                                 _mm256_loadu_si256((const __m256i *)(qb + 32)));
        a2 = _mm256_dpbusd_epi32(a2, _mm256_and_si256(_mm256_srli_epi16(v, 2), mask),
                                 _mm256_loadu_si256((const __m256i *)(qb + 64)));
        a3 = _mm256_dpbusd_epi32(a3, _mm256_and_si256(v, mask), _mm256_loadu_si256((const __m256i *)(qb + 96)));
    }
    const __m256i a = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static BE_VNNI void i2s_gemv_avx512vnni(const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1, int kp) {
    const size_t row_bytes = (size_t)kp / 4;
    const int32_t qsum = sum_q(q, kp);
    for (int n = n0; n < n1; n++) {
        prefetch_ahead(w + (size_t)n * row_bytes, row_bytes);
        acc[n] = i2s_row_dot_ymm(w + (size_t)n * row_bytes, q, kp) - qsum;
    }
}

/* one group of R rows against tokens [t0, t1): full tiles of GEMM_TOKENS tokens, then the rest one by one
 * (a literal T in each call, so every tile is compiled with its loops unrolled) */
BE_VNNI_INLINE void i2s_rows_tokens(const uint8_t *row0, size_t row_bytes, const int8_t *q, int kp, int R, int t0,
                                    int t1, const int32_t *qsum, int32_t *acc, int ldacc, int n) {
    int t = t0;
    for (; t + GEMM_TOKENS <= t1; t += GEMM_TOKENS) {
        int32_t s[GEMM_ROWS * GEMM_TOKENS];
        i2s_tile(row0, row_bytes, q + (size_t)t * kp, kp, R, GEMM_TOKENS, s);
        for (int r = 0; r < R; r++)
            for (int i = 0; i < GEMM_TOKENS; i++)
                acc[(size_t)(t + i) * ldacc + n + r] = s[r * GEMM_TOKENS + i] - qsum[t + i - t0];
    }
    for (; t < t1; t++) {
        int32_t s[GEMM_ROWS];
        i2s_tile(row0, row_bytes, q + (size_t)t * kp, kp, R, 1, s);
        for (int r = 0; r < R; r++) acc[(size_t)t * ldacc + n + r] = s[r] - qsum[t - t0];
    }
}

/* gemm: rows outer, tokens inner: a group of GEMM_ROWS rows (4 KiB at K = 4096) stays in L1 while every token
 * tile of the batch passes over it; the activations come from L2. Each weight block is unpacked once per tile
 * of GEMM_TOKENS tokens (the AVX2 gemm: once per 4 tokens, one row at a time). */
static BE_VNNI void i2s_gemm_avx512vnni(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1,
                                        int kp, int nb) {
    const size_t row_bytes = (size_t)kp / 4;
    int32_t qsum[GEMM_QSUM_BATCH];
    for (int t0 = 0; t0 < nb; t0 += GEMM_QSUM_BATCH) {
        const int t1 = t0 + GEMM_QSUM_BATCH < nb ? t0 + GEMM_QSUM_BATCH : nb;
        for (int t = t0; t < t1; t++) qsum[t - t0] = sum_q(q + (size_t)t * kp, kp);
        int n = n0;
        for (; n + GEMM_ROWS <= n1; n += GEMM_ROWS) {
            /* as in the gemv: without it, a batch of 2 tokens read its weights from DRAM at 5 GB/s (4 row streams
             * a row apart), with it at 9-12 on the K = 2560 shapes (K = 6912: 5-6 either way; bench_kernels cold,
             * 2 tokens). Batches of 32 tokens are compute-bound and gain little. */
            prefetch_ahead(w + (size_t)n * row_bytes, GEMM_ROWS * row_bytes);
            i2s_rows_tokens(w + (size_t)n * row_bytes, row_bytes, q, kp, GEMM_ROWS, t0, t1, qsum, acc, ldacc, n);
        }
        for (; n < n1; n++)
            i2s_rows_tokens(w + (size_t)n * row_bytes, row_bytes, q, kp, 1, t0, t1, qsum, acc, ldacc, n);
    }
}

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
                                          float_gemv_avx512vnni, quantize_row_i8_avx512vnni};

#else
typedef int be_kernels_avx512vnni_unused; /* ISO C wants a declaration in every translation unit */
#endif
