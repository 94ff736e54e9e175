/* The I2_S gemv and gemm of the VNNI kernel tables, written once and instantiated per instruction encoding:
 *   kernels_avx512vnni.c: EVEX vpdpbusd (_mm256_dpbusd_epi32, AVX512-VNNI + VL; 32 vector registers), gemm in
 *                         ymm or zmm (BE_VNNI_ZMM: that file defines the zmm vector ops below before including);
 *   kernels_avxvnni.c:    VEX vpdpbusd (_mm256_dpbusd_avx_epi32, AVX-VNNI: Alder Lake and later, Zen 5; 16
 *                         vector registers, no AVX-512 at all), ymm only.
 * Not a public header: it defines static functions. The includer defines first:
 *   BE_VNNI, BE_VNNI_INLINE  the function attributes (target(...) of the table)
 *   BE_VNNI_DPBUSD256(acc, u8, s8)  the 256-bit vpdpbusd of that encoding
 *   BE_VNNI_SUFFIX          the name suffix of the two exported kernels (i2s_gemv_<suffix>, i2s_gemm_<suffix>)
 *   BE_VNNI_REGS16          when the encoding has 16 vector registers (VEX), not 32: a smaller gemm tile
 *   optionally, for a wider vector, BE_VNNI_VEC_DEFINED with vec, VBYTES, VPB and the vector ops (load_block,
 *   block_codes, vzero, vload, vdot, vadd, vhsum, vones8).
 * kernels/tests/vnni_emulated.c instantiates it a third time, for tests only, with vpdpbusd done by exact AVX2
 * instructions, so that this source runs on any AVX2 CPU.
 *
 * Arithmetic: the 2-bit codes c = T + 1 (0..2) are unsigned and the activations q signed, and the ternary
 * product is sum(c * q) - sum(q). vpdpbusd multiplies unsigned by signed bytes and adds each group of four
 * products straight into an int32 lane, without saturation: one instruction instead of AVX2's maddubs + add
 * (+ a madd every 8 blocks to widen int16), and no int16 bound to respect. A lane gains at most
 * 4 * 2 * 128 = 1024 in magnitude per instruction, so int32 sums are exact for any real K. The VEX and EVEX
 * forms compute the same function; only the encoding (and so the CPUs that decode it) differs. */
#ifndef BE_VNNI_SUFFIX
#error "kernels_vnni_i2s.h: define BE_VNNI, BE_VNNI_INLINE, BE_VNNI_DPBUSD256 and BE_VNNI_SUFFIX first"
#endif

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define BE_VNNI_CAT2(a, b) a##_##b
#define BE_VNNI_CAT(a, b) BE_VNNI_CAT2(a, b)
#define BE_VNNI_FN(name) BE_VNNI_CAT(name, BE_VNNI_SUFFIX)

/* gemm tile: GEMM_ROWS rows x GEMM_TOKENS tokens of int32 accumulators. Each unpacked code vector feeds
 * GEMM_TOKENS tokens and each activation load GEMM_ROWS rows, so a code vector's columns cost GEMM_ROWS unpacks
 * + GEMM_TOKENS loads for GEMM_ROWS * GEMM_TOKENS vpdpbusd.
 * 32 registers (EVEX): 4 x 4 measured faster than 2 x 8, 8 x 2 and 3 x 4 (avx512-vnni on Zen 4, bench_kernels,
 * 32 tokens). 16 registers (VEX): 4 x 4 would spill (16 accumulators before the code vectors and the activation);
 * 2 x 4 holds 8 accumulators, 2 packed rows, 2 code vectors, 1 activation and the mask, 14 registers. Chosen by
 * that count and by the disassembly (clang 14 -O2: no vector spill in the tile loop; gcc 12: two stores and no
 * reload per block), not measured: no AVX-VNNI CPU was available. */
#ifndef GEMM_ROWS
#ifdef BE_VNNI_REGS16
#define GEMM_ROWS 2
#else
#define GEMM_ROWS 4
#endif
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

#define BE_X86_INLINE BE_VNNI_INLINE
#include "kernels_x86_helpers.h"

/* ----------------------------------------------------------------------------------------------------------
 * one 128-column I2_S block as VPB code vectors of VBYTES bytes each, and the activations that go with them.
 * Byte j of a block holds columns j, j+32, j+64, j+96 in bits 7-6, 5-4, 3-2, 1-0 (slots 0..3). */

#ifndef BE_VNNI_VEC_DEFINED
typedef __m256i vec;
#define VBYTES 32
#define VPB 4 /* code vectors per block: one per slot */

BE_VNNI_INLINE vec load_block(const uint8_t *blk) { return _mm256_loadu_si256((const __m256i *)blk); }
BE_VNNI_INLINE vec block_codes(vec v, int s) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 6 - 2 * s), _mm256_set1_epi8(3));
}
BE_VNNI_INLINE vec vzero(void) { return _mm256_setzero_si256(); }
BE_VNNI_INLINE vec vload(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
BE_VNNI_INLINE vec vdot(vec acc, vec codes, vec q) { return BE_VNNI_DPBUSD256(acc, codes, q); }
BE_VNNI_INLINE vec vadd(vec a, vec b) { return _mm256_add_epi32(a, b); }
BE_VNNI_INLINE int32_t vhsum(vec v) { return hsum_ymm_i32(v); }
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
        a0 = BE_VNNI_DPBUSD256(a0, _mm256_and_si256(_mm256_srli_epi16(v, 6), mask),
                               _mm256_loadu_si256((const __m256i *)qb));
        a1 = BE_VNNI_DPBUSD256(a1, _mm256_and_si256(_mm256_srli_epi16(v, 4), mask),
                               _mm256_loadu_si256((const __m256i *)(qb + 32)));
        a2 = BE_VNNI_DPBUSD256(a2, _mm256_and_si256(_mm256_srli_epi16(v, 2), mask),
                               _mm256_loadu_si256((const __m256i *)(qb + 64)));
        a3 = BE_VNNI_DPBUSD256(a3, _mm256_and_si256(v, mask), _mm256_loadu_si256((const __m256i *)(qb + 96)));
    }
    return hsum_ymm_i32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)));
}

static BE_VNNI void BE_VNNI_FN(i2s_gemv)(const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1, int kp) {
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
static BE_VNNI void BE_VNNI_FN(i2s_gemm)(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1,
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
             * 2 tokens, avx512-vnni on Zen 4). Batches of 32 tokens are compute-bound and gain little. */
            prefetch_ahead(w + (size_t)n * row_bytes, GEMM_ROWS * row_bytes);
            i2s_rows_tokens(w + (size_t)n * row_bytes, row_bytes, q, kp, GEMM_ROWS, t0, t1, qsum, acc, ldacc, n);
        }
        for (; n < n1; n++)
            i2s_rows_tokens(w + (size_t)n * row_bytes, row_bytes, q, kp, 1, t0, t1, qsum, acc, ldacc, n);
    }
}
