/* NEON kernels (aarch64), three tables:
 *   "neon"          baseline ARMv8-A Advanced SIMD (Cortex-A53/A72 ...): widening multiply-accumulate
 *                   (vmull_s8 / vmlal_high_s8) of the ternary values t = c - 1 by the int8 activations;
 *   "neon-dotprod"  ARMv8.2-A dot product (Cortex-A55/A76 ...): vdotq_s32 of t by the activations;
 *   "neon-i8mm"     Armv8.6-A int8 matrix multiply (Apple M2+, Neoverse V1/N2): the dotprod gemv and the smmla
 *                   gemm of kernels_neon_i8mm.c.
 * The dotprod functions carry __attribute__((target("arch=armv8.2-a+dotprod"))) under GCC (the target that
 * GCC's arm_neon.h wraps vdotq_s32 in; every CPU with dotprod is ARMv8.2-A or later), so one aarch64 build
 * holds both tables and be_kernels_select() picks dotprod only when the CPU reports it (HWCAP_ASIMDDP /
 * FEAT_DotProd).
 * With clang the dotprod table is compiled only when the whole build targets it (-march=armv8.2-a+dotprod),
 * because clang's arm_neon.h hides vdotq_s32 otherwise (see BE_HAVE_DOTPROD_KERNELS in cpu_features.h).
 *
 * All work on the unsigned codes c = t + 1 (sum T*q = sum c*q - sum q, see code_block): gemv with four rows per
 * activation load, gemm with four tokens per unpacked row. */
#include "cpu_features.h"
#include "kernels.h"

#if BE_HAVE_NEON_KERNELS

#include <arm_neon.h>

#if BE_HAVE_DOTPROD_KERNELS && !defined(__ARM_FEATURE_DOTPROD)
#define BE_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#else
#define BE_DOTPROD
#endif

#define GEMM_TOKENS 4  /* tokens per row pass of the gemm: the row's codes are unpacked once for all */
#define GEMM_CHUNK 64  /* tokens whose sum q is kept on the stack at a time */

/* ----------------------------------------------------------------------------------------------------------
 * gemv on the unsigned codes c = t + 1 in {0, 1, 2}: sum t*q = sum c*q - sum q, the correction sum q computed
 * once per call. No "- 1" per weight, and three of a block's four 2-bit slots are taken by a mask alone, left
 * in place: v & 0x03 = c, v & 0x0c = 4c, v & 0x30 = 16c (v >> 6 = c for the top slot). Each scaled slot has its
 * own accumulator, whose every product (and so every lane sum) is a multiple of its scale: shifting it back
 * right is exact. GEMV_ROWS rows share each activation load. */

#define GEMV_ROWS 4

/* sum of q[0..kp) (the correction above) */
static int32_t sum_q(const int8_t *q, int kp) {
    int32x4_t s = vdupq_n_s32(0);
    for (int i = 0; i < kp; i += 16) s = vpadalq_s16(s, vpaddlq_s8(vld1q_s8(q + i)));
    return vaddvq_s32(s);
}

/* the slots of one 32-byte block, c[2*s + h] for columns 32*s + 16*h + (0..15), at the scales above:
 * c[0..1] = c, c[2..3] = 16c, c[4..5] = 4c, c[6..7] = c */
static inline void code_block(const uint8_t *blk, int8x16_t c[8]) {
    const uint8x16_t m1 = vdupq_n_u8(0x03), m4 = vdupq_n_u8(0x0c), m16 = vdupq_n_u8(0x30);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t v = vld1q_u8(blk + 16 * h);
        c[0 + h] = vreinterpretq_s8_u8(vshrq_n_u8(v, 6));
        c[2 + h] = vreinterpretq_s8_u8(vandq_u8(v, m16));
        c[4 + h] = vreinterpretq_s8_u8(vandq_u8(v, m4));
        c[6 + h] = vreinterpretq_s8_u8(vandq_u8(v, m1));
    }
}

/* Baseline, nrows (1..GEMV_ROWS) rows: per block and row three int16 sums (scales 1, 4, 16); a lane of each adds
 * 4 products of |16c * q| <= 4096 (scale 16), 4 of |4c q| <= 1024, 8 of |c q| <= 256: all < 32768. The scaled
 * sums are shifted back (exact, multiples) into the scale-1 sum (|sum| <= 2048 + 1024 + 1024) and pairwise-added
 * into int32 once per block. */
static inline __attribute__((always_inline)) void rows_codes_neon(const uint8_t *w, size_t row_bytes,
                                                                   const int8_t *q, int kp, int nrows, int32_t sq,
                                                                   int32_t *out) {
    int32x4_t acc[GEMV_ROWS];
    for (int r = 0; r < nrows; r++) acc[r] = vdupq_n_s32(0);
    /* the rows are unrolled, the blocks are not: the rows' multiply chains interleave (in-order cores, A53 / A510,
     * wait out each latency), and the 1-row tail stays a short loop */
#pragma GCC unroll 1
    for (int k0 = 0; k0 < kp; k0 += 128) {
        int8x16_t qv[8];
        for (int i = 0; i < 8; i++) qv[i] = vld1q_s8(q + k0 + 16 * i);
#pragma GCC unroll 4
        for (int r = 0; r < nrows; r++) {
            int8x16_t c[8];
            code_block(w + (size_t)r * row_bytes + k0 / 4, c);
            int16x8_t s1 = vmull_s8(vget_low_s8(c[0]), vget_low_s8(qv[0]));
            s1 = vmlal_high_s8(s1, c[0], qv[0]);
            s1 = vmlal_s8(s1, vget_low_s8(c[1]), vget_low_s8(qv[1]));
            s1 = vmlal_high_s8(s1, c[1], qv[1]);
            s1 = vmlal_s8(s1, vget_low_s8(c[6]), vget_low_s8(qv[6]));
            s1 = vmlal_high_s8(s1, c[6], qv[6]);
            s1 = vmlal_s8(s1, vget_low_s8(c[7]), vget_low_s8(qv[7]));
            s1 = vmlal_high_s8(s1, c[7], qv[7]);
            int16x8_t s16 = vmull_s8(vget_low_s8(c[2]), vget_low_s8(qv[2]));
            s16 = vmlal_high_s8(s16, c[2], qv[2]);
            s16 = vmlal_s8(s16, vget_low_s8(c[3]), vget_low_s8(qv[3]));
            s16 = vmlal_high_s8(s16, c[3], qv[3]);
            int16x8_t s4 = vmull_s8(vget_low_s8(c[4]), vget_low_s8(qv[4]));
            s4 = vmlal_high_s8(s4, c[4], qv[4]);
            s4 = vmlal_s8(s4, vget_low_s8(c[5]), vget_low_s8(qv[5]));
            s4 = vmlal_high_s8(s4, c[5], qv[5]);
            s1 = vsraq_n_s16(vsraq_n_s16(s1, s4, 2), s16, 4);
            acc[r] = vpadalq_s16(acc[r], s1);
        }
    }
    for (int r = 0; r < nrows; r++) out[r] = vaddvq_s32(acc[r]) - sq;
}

static void i2s_gemv_neon(const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1, int kp) {
    const size_t row_bytes = (size_t)kp / 4;
    const int32_t sq = sum_q(q, kp);
    int n = n0;
    for (; n + GEMV_ROWS <= n1; n += GEMV_ROWS)
        rows_codes_neon(w + (size_t)n * row_bytes, row_bytes, q, kp, GEMV_ROWS, sq, acc + n);
    for (; n < n1; n++) rows_codes_neon(w + (size_t)n * row_bytes, row_bytes, q, kp, 1, sq, acc + n);
}

/* gemm: one row against ntok (1..GEMM_TOKENS) tokens (q: ntok vectors of kp), its codes unpacked once per block
 * for all of them; int16 sums and their bounds as rows_codes_neon */
static inline __attribute__((always_inline)) void tokens_codes_neon(const uint8_t *row, const int8_t *q, int kp,
                                                                     int ntok, const int32_t *sq, int32_t *out) {
    int32x4_t acc[GEMM_TOKENS];
    for (int t = 0; t < ntok; t++) acc[t] = vdupq_n_s32(0);
#pragma GCC unroll 1
    for (int k0 = 0; k0 < kp; k0 += 128) {
        int8x16_t c[8];
        code_block(row + k0 / 4, c);
#pragma GCC unroll 4
        for (int t = 0; t < ntok; t++) {
            const int8_t *qb = q + (size_t)t * kp + k0;
            int16x8_t s[3];  /* scales 1, 16, 4: slots (0, 3), 1, 2 */
            for (int j = 0; j < 3; j++) s[j] = vdupq_n_s16(0);
            for (int i = 0; i < 8; i++) {
                const int8x16_t qv = vld1q_s8(qb + 16 * i);
                const int j = i < 2 || i >= 6 ? 0 : (i < 4 ? 1 : 2);
                s[j] = vmlal_s8(s[j], vget_low_s8(c[i]), vget_low_s8(qv));
                s[j] = vmlal_high_s8(s[j], c[i], qv);
            }
            acc[t] = vpadalq_s16(acc[t], vsraq_n_s16(vsraq_n_s16(s[0], s[2], 2), s[1], 4));
        }
    }
    for (int t = 0; t < ntok; t++) out[t] = vaddvq_s32(acc[t]) - sq[t];
}

/* the gemm of every table on the codes: per chunk of GEMM_CHUNK tokens their sums q, then every row against
 * GEMM_TOKENS tokens at a time (the row stays in L1 between passes) */
#define I2S_GEMM_CODES(name, tokens_fn, attr)                                                                     \
    static attr void name(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1, int kp,     \
                          int nb) {                                                                               \
        const size_t row_bytes = (size_t)kp / 4;                                                                  \
        for (int c0 = 0; c0 < nb; c0 += GEMM_CHUNK) {                                                             \
            const int cn = nb - c0 < GEMM_CHUNK ? nb - c0 : GEMM_CHUNK;                                           \
            const int8_t *qc = q + (size_t)c0 * kp;                                                               \
            int32_t sq[GEMM_CHUNK];                                                                               \
            for (int t = 0; t < cn; t++) sq[t] = sum_q(qc + (size_t)t * kp, kp);                                  \
            for (int n = n0; n < n1; n++) {                                                                       \
                const uint8_t *row = w + (size_t)n * row_bytes;                                                   \
                int32_t s[GEMM_TOKENS];                                                                           \
                int t = 0;                                                                                        \
                for (; t + GEMM_TOKENS <= cn; t += GEMM_TOKENS) {                                                 \
                    tokens_fn(row, qc + (size_t)t * kp, kp, GEMM_TOKENS, sq + t, s);                              \
                    for (int i = 0; i < GEMM_TOKENS; i++) acc[(size_t)(c0 + t + i) * ldacc + n] = s[i];           \
                }                                                                                                 \
                for (; t < cn; t++) {                                                                             \
                    tokens_fn(row, qc + (size_t)t * kp, kp, 1, sq + t, s);                                        \
                    acc[(size_t)(c0 + t) * ldacc + n] = s[0];                                                     \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
    }

I2S_GEMM_CODES(i2s_gemm_neon, tokens_codes_neon, )

/* ----------------------------------------------------------------------------------------------------------
 * dot product extension */

#if BE_HAVE_DOTPROD_KERNELS
/* nrows (1..GEMV_ROWS) rows on the codes (see code_block): three int32 accumulators per row (scales 1, 4, 16);
 * a lane of the scale-16 one adds 8 products |16c q| <= 4096 per block, so int32 holds any kp < 2^16 * 128 */
static inline __attribute__((always_inline)) BE_DOTPROD void rows_codes_dotprod(const uint8_t *w, size_t row_bytes,
                                                                                const int8_t *q, int kp, int nrows,
                                                                                int32_t sq, int32_t *out) {
    int32x4_t a1[GEMV_ROWS], a4[GEMV_ROWS], a16[GEMV_ROWS];
    for (int r = 0; r < nrows; r++) a1[r] = a4[r] = a16[r] = vdupq_n_s32(0);
    for (int k0 = 0; k0 < kp; k0 += 128) {
        int8x16_t qv[8];
        for (int i = 0; i < 8; i++) qv[i] = vld1q_s8(q + k0 + 16 * i);
        for (int r = 0; r < nrows; r++) {
            int8x16_t c[8];
            code_block(w + (size_t)r * row_bytes + k0 / 4, c);
            a1[r] = vdotq_s32(vdotq_s32(a1[r], c[0], qv[0]), c[1], qv[1]);
            a16[r] = vdotq_s32(vdotq_s32(a16[r], c[2], qv[2]), c[3], qv[3]);
            a4[r] = vdotq_s32(vdotq_s32(a4[r], c[4], qv[4]), c[5], qv[5]);
            a1[r] = vdotq_s32(vdotq_s32(a1[r], c[6], qv[6]), c[7], qv[7]);
        }
    }
    for (int r = 0; r < nrows; r++)
        out[r] = vaddvq_s32(vsraq_n_s32(vsraq_n_s32(a1[r], a4[r], 2), a16[r], 4)) - sq;
}

static BE_DOTPROD void i2s_gemv_dotprod(const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1, int kp) {
    const size_t row_bytes = (size_t)kp / 4;
    const int32_t sq = sum_q(q, kp);
    int n = n0;
    for (; n + GEMV_ROWS <= n1; n += GEMV_ROWS)
        rows_codes_dotprod(w + (size_t)n * row_bytes, row_bytes, q, kp, GEMV_ROWS, sq, acc + n);
    for (; n < n1; n++) rows_codes_dotprod(w + (size_t)n * row_bytes, row_bytes, q, kp, 1, sq, acc + n);
}

/* gemm: one row against ntok (1..GEMM_TOKENS) tokens, accumulators as rows_codes_dotprod */
static inline __attribute__((always_inline)) BE_DOTPROD void tokens_codes_dotprod(const uint8_t *row, const int8_t *q,
                                                                                  int kp, int ntok, const int32_t *sq,
                                                                                  int32_t *out) {
    int32x4_t a1[GEMM_TOKENS], a4[GEMM_TOKENS], a16[GEMM_TOKENS];
    for (int t = 0; t < ntok; t++) a1[t] = a4[t] = a16[t] = vdupq_n_s32(0);
#pragma GCC unroll 1
    for (int k0 = 0; k0 < kp; k0 += 128) {
        int8x16_t c[8];
        code_block(row + k0 / 4, c);
#pragma GCC unroll 4
        for (int t = 0; t < ntok; t++) {
            const int8_t *qb = q + (size_t)t * kp + k0;
            a1[t] = vdotq_s32(vdotq_s32(a1[t], c[0], vld1q_s8(qb)), c[1], vld1q_s8(qb + 16));
            a16[t] = vdotq_s32(vdotq_s32(a16[t], c[2], vld1q_s8(qb + 32)), c[3], vld1q_s8(qb + 48));
            a4[t] = vdotq_s32(vdotq_s32(a4[t], c[4], vld1q_s8(qb + 64)), c[5], vld1q_s8(qb + 80));
            a1[t] = vdotq_s32(vdotq_s32(a1[t], c[6], vld1q_s8(qb + 96)), c[7], vld1q_s8(qb + 112));
        }
    }
    for (int t = 0; t < ntok; t++)
        out[t] = vaddvq_s32(vsraq_n_s32(vsraq_n_s32(a1[t], a4[t], 2), a16[t], 4)) - sq[t];
}

I2S_GEMM_CODES(i2s_gemm_dotprod, tokens_codes_dotprod, BE_DOTPROD)
#endif

/* ----------------------------------------------------------------------------------------------------------
 * float gemv: 4-wide FMA, four independent accumulators; tails in scalar. F16 via fcvtl (baseline). */

static float dot_f32(const float *w, const float *x, int k) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0), a2 = vdupq_n_f32(0), a3 = vdupq_n_f32(0);
    int i = 0;
    for (; i + 16 <= k; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(w + i + 8), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(w + i + 12), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= k; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < k; i++) s += w[i] * x[i];
    return s;
}

static inline float32x4_t load_f16x4(const uint8_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)p)));
}

static float dot_f16(const uint8_t *w, const float *x, int k) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0), a2 = vdupq_n_f32(0), a3 = vdupq_n_f32(0);
    int i = 0;
    for (; i + 16 <= k; i += 16) {
        a0 = vfmaq_f32(a0, load_f16x4(w + 2 * i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, load_f16x4(w + 2 * (i + 4)), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, load_f16x4(w + 2 * (i + 8)), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, load_f16x4(w + 2 * (i + 12)), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= k; i += 4) a0 = vfmaq_f32(a0, load_f16x4(w + 2 * i), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < k; i++) s += be_f16_to_f32((uint16_t)(w[2 * i] | (w[2 * i + 1] << 8))) * x[i];
    return s;
}

/* the f16 block scale, converted inline (fcvtl; exact, like be_f16_to_f32) and broadcast to four lanes */
static inline float32x4_t load_f16_dup(const uint8_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16((uint16_t)(p[0] | (p[1] << 8)))));
}

/* Q8_0 x float: per block d * sum(q * x) like the scalar twin, the block's 32 products split over four
 * independent chains (lanes 4j..4j+3 and 16+4j..16+4j+3 go to chain j), each scaled by d into its own row
 * accumulator; the four accumulators are summed at the end in a fixed order */
static float dot_q8_0(const uint8_t *w, const float *x, int k) {
    float32x4_t a[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int b = 0; b < k / BE_Q8_0_BLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * BE_Q8_0_BYTES;
        const int8_t *qs = (const int8_t *)(blk + 2);
        const float *xb = x + b * BE_Q8_0_BLOCK;
        float32x4_t q[8];
        for (int h = 0; h < 2; h++) {
            const int8x16_t qv = vld1q_s8(qs + 16 * h);
            const int16x8_t lo = vmovl_s8(vget_low_s8(qv)), hi = vmovl_high_s8(qv);
            q[4 * h + 0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
            q[4 * h + 1] = vcvtq_f32_s32(vmovl_high_s16(lo));
            q[4 * h + 2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
            q[4 * h + 3] = vcvtq_f32_s32(vmovl_high_s16(hi));
        }
        const float32x4_t d = load_f16_dup(blk);
        for (int j = 0; j < 4; j++) {
            const float32x4_t s = vfmaq_f32(vmulq_f32(q[j], vld1q_f32(xb + 4 * j)), q[4 + j], vld1q_f32(xb + 16 + 4 * j));
            a[j] = vfmaq_f32(a[j], s, d);
        }
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])));
}

/* 16 int8 weights times x[0..16) in four lanes: lane i holds the sum of q[4j + i] x[4j + i] over j */
static inline float32x4_t i8x16_dot(int8x16_t q, const float *x) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    float32x4_t s = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vld1q_f32(x));
    s = vfmaq_f32(s, vcvtq_f32_s32(vmovl_high_s16(lo)), vld1q_f32(x + 4));
    s = vfmaq_f32(s, vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vld1q_f32(x + 8));
    return vfmaq_f32(s, vcvtq_f32_s32(vmovl_high_s16(hi)), vld1q_f32(x + 12));
}

/* Q4_0: per block d * (q . x), the nibbles unpacked to int8 q - 8 (low: weights 0..15, high: 16..31), two
 * accumulators for alternate blocks */
static float dot_q4_0(const uint8_t *w, const float *x, int k) {
    const uint8x16_t m4 = vdupq_n_u8(15);
    const int8x16_t eight = vdupq_n_s8(8);
    float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int b = 0; b < k / BE_Q4_0_BLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * BE_Q4_0_BYTES;
        const float *xb = x + b * BE_Q4_0_BLOCK;
        const uint8x16_t v = vld1q_u8(blk + 2);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), eight);
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
        const float32x4_t s = vaddq_f32(i8x16_dot(lo, xb), i8x16_dot(hi, xb + 16));
        acc[b & 1] = vfmaq_f32(acc[b & 1], s, load_f16_dup(blk));
    }
    return vaddvq_f32(vaddq_f32(acc[0], acc[1]));
}

/* Q6_K: per half block, the 128 levels unpacked to int8 (u - 32) 16 at a time, one vector per 16-weight group,
 * each group's q . x scaled by its d * scale (fp32, as the scalar twin computes it) into one of two accumulators */
static float dot_q6_k(const uint8_t *w, const float *x, int k) {
    const uint8x16_t m4 = vdupq_n_u8(15), m3 = vdupq_n_u8(3);
    const int8x16_t k32 = vdupq_n_s8(32);
    float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int b = 0; b < k / BE_Q6_K_BLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * BE_Q6_K_BYTES;
        const float *xb = x + b * BE_Q6_K_BLOCK;
        const float d = be_f16_to_f32((uint16_t)(blk[208] | (blk[209] << 8)));
        const int8_t *sc = (const int8_t *)(blk + 192);
        for (int h = 0; h < 2; h++) {
            for (int half = 0; half < 2; half++) {  /* bytes l = 16 half .. 16 half + 15 of the 32 */
                const uint8x16_t ql0 = vld1q_u8(blk + 64 * h + 16 * half);
                const uint8x16_t ql1 = vld1q_u8(blk + 64 * h + 32 + 16 * half);
                const uint8x16_t qh = vld1q_u8(blk + 128 + 32 * h + 16 * half);
                uint8x16_t u[4];
                u[0] = vorrq_u8(vandq_u8(ql0, m4), vshlq_n_u8(vandq_u8(qh, m3), 4));
                u[1] = vorrq_u8(vandq_u8(ql1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), m3), 4));
                u[2] = vorrq_u8(vshrq_n_u8(ql0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), m3), 4));
                u[3] = vorrq_u8(vshrq_n_u8(ql1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4));
                for (int m = 0; m < 4; m++) {
                    const int g = 8 * h + 2 * m + half;  /* weights 128h + 32m + 16 half .. + 15 */
                    const float32x4_t s = i8x16_dot(vsubq_s8(vreinterpretq_s8_u8(u[m]), k32), xb + 16 * g);
                    acc[m & 1] = vfmaq_f32(acc[m & 1], s, vdupq_n_f32(d * (float)sc[g]));
                }
            }
        }
    }
    return vaddvq_f32(vaddq_f32(acc[0], acc[1]));
}

static void float_gemv_neon(const void *w, int type, const float *x, float *y, int n0, int n1, int k) {
    const size_t row_bytes = be_float_row_bytes(type, k);
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)n * row_bytes;
        switch (type) {
        case BE_F32: y[n] = dot_f32((const float *)(const void *)row, x, k); break;
        case BE_F16: y[n] = dot_f16(row, x, k); break;
        case BE_Q8_0: y[n] = dot_q8_0(row, x, k); break;
        case BE_Q4_0: y[n] = dot_q4_0(row, x, k); break;
        case BE_Q6_K: y[n] = dot_q6_k(row, x, k); break;
        default: y[n] = 0.0f; break;
        }
    }
}

/* quantization: the scalar code (rintf is one frintx instruction on aarch64, and the loops are O(K)) */
const be_kernels be_kernels_neon = {"neon", i2s_gemv_neon, i2s_gemm_neon, float_gemv_neon,
                                    be_quantize_row_i8_scalar, NULL};  /* no int16 output pass on NEON yet */
#if BE_HAVE_DOTPROD_KERNELS
const be_kernels be_kernels_neon_dotprod = {"neon-dotprod", i2s_gemv_dotprod, i2s_gemm_dotprod, float_gemv_neon,
                                            be_quantize_row_i8_scalar, NULL};
#endif
#if BE_HAVE_I8MM_KERNELS
/* Armv8.6 (i8mm implies dotprod): the smmla gemm of kernels_neon_i8mm.c for prompts, the dotprod gemv */
void be_i2s_gemm_neon_i8mm(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1, int kp, int nb);
const be_kernels be_kernels_neon_i8mm = {"neon-i8mm", i2s_gemv_dotprod, be_i2s_gemm_neon_i8mm, float_gemv_neon,
                                         be_quantize_row_i8_scalar, NULL};
#endif

#else
typedef int be_kernels_neon_unused; /* ISO C wants a declaration in every translation unit */
#endif
