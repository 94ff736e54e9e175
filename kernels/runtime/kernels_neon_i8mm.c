/* I2_S gemm with the int8 matrix-multiply extension (FEAT_I8MM, Armv8.6-A: Apple M2 and later, Neoverse V1/N2,
 * Cortex-A710/X2 ...): the "neon-i8mm" table's prompt-processing kernel (its gemv is neon-dotprod's; kernels_neon.c
 * holds the table). vmmlaq_s32 (smmla) multiplies a 2x8 int8 matrix by an 8x2 one into 2x2 int32: here 2 weight
 * rows by 2 tokens over 8 columns, 32 products per instruction where sdot does 16.
 *
 * Layout for smmla: one 128-bit operand holds 8 columns of two rows (or two tokens), row after row. Zipping the
 * 64-bit halves of two rows' raw I2_S bytes (vzip1q_u64 / vzip2q_u64) does this for the weights before unpacking:
 * byte j of a 32-byte block carries columns j, j+32, j+64, j+96 (docs/format.md), so the unpacked slots of the
 * zipped bytes are already in smmla's order. The activations of a tile's token pairs are interleaved the same way
 * once per chunk of columns into a buffer on the stack and reused by every row pair.
 *
 * Arithmetic: on the codes c = t + 1 in {0, 1, 2} as kernels_neon.c's gemv (sum t*q = sum c*q - sum q): three
 * slots are masked in place (4c, 16c: their own accumulators, shifted back exactly), the top one shifted down.
 * A lane of the scale-16 accumulator adds 8 products |16c q| <= 4096 per 128-column block: exact in int32 for any
 * kp < 2^16 * 128.
 *
 * GCC: a target attribute (arm_neon.h wraps vmmlaq_s32 in target("arch=armv8.2-a+i8mm")), so every aarch64 build
 * holds it and be_kernels_select() offers it only when the CPU reports I8MM (HWCAP2_I8MM / FEAT_I8MM); clang: only
 * when the whole build targets i8mm (BE_HAVE_I8MM_KERNELS in cpu_features.h). */
#include "cpu_features.h"
#include "kernels.h"

#include <string.h>

#if BE_HAVE_I8MM_KERNELS

#include <arm_neon.h>

#if !defined(__ARM_FEATURE_MATMUL_INT8)
#define BE_I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#else
#define BE_I8MM
#endif

#define TILE_TOKENS 8    /* tokens per tile: four token pairs */
#define TILE_PAIRS (TILE_TOKENS / 2)
#define CHUNK_COLS 1024  /* columns interleaved at a time: TILE_TOKENS * CHUNK_COLS = 8 KiB of stack */

static int32_t sum_q(const int8_t *q, int kp) {
    int32x4_t s = vdupq_n_s32(0);
    for (int i = 0; i < kp; i += 16) s = vpadalq_s16(s, vpaddlq_s8(vld1q_s8(q + i)));
    return vaddvq_s32(s);
}

/* buf[p][g] (16 bytes) = columns 8g..8g+7 of token 2p, then the same of token 2p+1 (zeros for a missing token),
 * for the cols columns from k0 of the tile's tokens */
static void interleave_tokens(const int8_t *q, int kp, int ntok, int k0, int cols, int8_t *buf) {
    for (int p = 0; p < (ntok + 1) / 2; p++) {
        const int8_t *a = q + (size_t)(2 * p) * kp + k0;
        const int8_t *b = 2 * p + 1 < ntok ? a + kp : NULL;
        int8_t *out = buf + (size_t)p * cols * 2;
        for (int g = 0; g < cols / 8; g++) {
            memcpy(out + 16 * g, a + 8 * g, 8);
            if (b) memcpy(out + 16 * g + 8, b + 8 * g, 8);
            else memset(out + 16 * g + 8, 0, 8);
        }
    }
}

/* rows r0 and r1 (r1 may repeat r0) against npairs (1..TILE_PAIRS) interleaved token pairs over cols columns:
 * out[p] = the 2x2 sums of c*q (row-major: r0 t0, r0 t1, r1 t0, r1 t1), added to what is there */
static inline __attribute__((always_inline)) BE_I8MM void tile_rows(const uint8_t *r0, const uint8_t *r1,
                                                                    const int8_t *buf, int cols, int npairs,
                                                                    int32x4_t out[TILE_PAIRS]) {
    const uint8x16_t m1 = vdupq_n_u8(0x03), m4 = vdupq_n_u8(0x0c), m16 = vdupq_n_u8(0x30);
    int32x4_t a1[TILE_PAIRS], a4[TILE_PAIRS], a16[TILE_PAIRS];
    for (int p = 0; p < npairs; p++) a1[p] = a4[p] = a16[p] = vdupq_n_s32(0);
    for (int b = 0; b < cols / 128; b++) {
        const uint8_t *w0 = r0 + 32 * b, *w1 = r1 + 32 * b;
        for (int j = 0; j < 4; j++) {  /* bytes 8j..8j+7 of both rows: columns 32s + 8j + (0..7) of slot s */
            const uint64x2_t x = vreinterpretq_u64_u8(vld1q_u8(w0 + 16 * (j / 2)));
            const uint64x2_t y = vreinterpretq_u64_u8(vld1q_u8(w1 + 16 * (j / 2)));
            const uint8x16_t z = vreinterpretq_u8_u64(j % 2 ? vzip2q_u64(x, y) : vzip1q_u64(x, y));
            const int8x16_t c3 = vreinterpretq_s8_u8(vshrq_n_u8(z, 6));    /* slot 0: columns 8j + .. */
            const int8x16_t c2 = vreinterpretq_s8_u8(vandq_u8(z, m16));   /* slot 1: +32, scale 16 */
            const int8x16_t c1 = vreinterpretq_s8_u8(vandq_u8(z, m4));    /* slot 2: +64, scale 4 */
            const int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(z, m1));    /* slot 3: +96 */
            const int g = 16 * b + j;  /* the 8-column group of slot 0; slot s is g + 4s */
            for (int p = 0; p < npairs; p++) {
                const int8_t *tp = buf + (size_t)p * cols * 2;
                a1[p] = vmmlaq_s32(a1[p], c3, vld1q_s8(tp + 16 * g));
                a16[p] = vmmlaq_s32(a16[p], c2, vld1q_s8(tp + 16 * (g + 4)));
                a4[p] = vmmlaq_s32(a4[p], c1, vld1q_s8(tp + 16 * (g + 8)));
                a1[p] = vmmlaq_s32(a1[p], c0, vld1q_s8(tp + 16 * (g + 12)));
            }
        }
    }
    for (int p = 0; p < npairs; p++) out[p] = vaddq_s32(out[p], vsraq_n_s32(vsraq_n_s32(a1[p], a4[p], 2), a16[p], 4));
}

static BE_I8MM void tile_rows_n(const uint8_t *r0, const uint8_t *r1, const int8_t *buf, int cols, int npairs,
                                int32x4_t out[TILE_PAIRS]) {
    switch (npairs) {  /* constant pair counts: the loops over p unroll and the accumulators stay in registers */
    case 4: tile_rows(r0, r1, buf, cols, 4, out); break;
    case 3: tile_rows(r0, r1, buf, cols, 3, out); break;
    case 2: tile_rows(r0, r1, buf, cols, 2, out); break;
    default: tile_rows(r0, r1, buf, cols, 1, out); break;
    }
}

/* be_i2s_gemm_fn: tiles of 2 rows x TILE_TOKENS tokens; an odd last row is paired with itself, an odd last token
 * with zeros (their results are not stored). Per tile, chunk by chunk of columns: the chunk's activations are
 * interleaved once, then every row pair adds its partial sums into acc (the first chunk stores them, minus sum q). */
BE_I8MM void be_i2s_gemm_neon_i8mm(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1,
                                   int kp, int nb) {
    const size_t row_bytes = (size_t)kp / 4;
    int8_t buf[TILE_TOKENS * CHUNK_COLS] __attribute__((aligned(16)));
    for (int t0 = 0; t0 < nb; t0 += TILE_TOKENS) {
        const int ntok = nb - t0 < TILE_TOKENS ? nb - t0 : TILE_TOKENS, npairs = (ntok + 1) / 2;
        const int8_t *qt = q + (size_t)t0 * kp;
        int32_t sq[TILE_TOKENS] = {0};
        for (int t = 0; t < ntok; t++) sq[t] = sum_q(qt + (size_t)t * kp, kp);
        for (int k0 = 0; k0 < kp; k0 += CHUNK_COLS) {
            const int cols = kp - k0 < CHUNK_COLS ? kp - k0 : CHUNK_COLS;
            interleave_tokens(qt, kp, ntok, k0, cols, buf);
            for (int n = n0; n < n1; n += 2) {
                const uint8_t *r0 = w + (size_t)n * row_bytes + k0 / 4;
                const uint8_t *r1 = n + 1 < n1 ? r0 + row_bytes : r0;
                int32x4_t sums[TILE_PAIRS];
                for (int p = 0; p < TILE_PAIRS; p++) sums[p] = vdupq_n_s32(0);
                tile_rows_n(r0, r1, buf, cols, npairs, sums);
                for (int p = 0; p < npairs; p++) {
                    int32_t s[4];
                    vst1q_s32(s, sums[p]);
                    for (int i = 0; i < 2 && 2 * p + i < ntok; i++) {
                        int32_t *out = acc + (size_t)(t0 + 2 * p + i) * ldacc + n;
                        const int32_t base0 = k0 ? out[0] : -sq[2 * p + i];
                        out[0] = base0 + s[i];
                        if (n + 1 < n1) out[1] = (k0 ? out[1] : -sq[2 * p + i]) + s[2 + i];
                    }
                }
            }
        }
    }
}

#else
typedef int be_kernels_neon_i8mm_unused; /* ISO C wants a declaration in every translation unit */
#endif
