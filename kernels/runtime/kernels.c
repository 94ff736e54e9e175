/* Portable kernels (the scalar twin of every SIMD kernel), activation quantization, float dequantization and
 * the run-time choice of a kernel table. The SIMD tables live in kernels_avx2.c, kernels_avxvnni.c,
 * kernels_avx512vnni.c, kernels_neon.c and kernels_neon_i8mm.c; which of them a build contains is decided by
 * cpu_features.h (BE_HAVE_*_KERNELS), which one runs by the CPU. */
#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"

/* ----------------------------------------------------------------------------------------------------------
 * activation quantization (the arithmetic contract of kernels.h, all in fp32) */

float be_quantize_row_i8_scalar(const float *x, int8_t *q, int k, int kp) {
    float amax = 0.0f;
    for (int i = 0; i < k; i++) {
        float v = fabsf(x[i]);
        if (v > amax) amax = v;
    }
    const float a = 127.0f / fmaxf(amax, 1e-5f);
    for (int i = 0; i < k; i++) {
        /* x * a is rounded to fp32 before rintf (no contraction: there is nothing to fuse with) */
        float v = rintf(x[i] * a);
        if (v != v) v = 0.0f;  /* NaN (non-finite input): a defined value instead of an undefined conversion */
        v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)v;
    }
    if (kp > k) memset(q + k, 0, (size_t)(kp - k));
    return a;
}

/* ----------------------------------------------------------------------------------------------------------
 * IEEE half -> float, exact for every input (subnormals, infinities, NaN payloads) */

float be_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);             /* inf / NaN */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);    /* normal: rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;                                         /* +-0 */
    } else {
        /* subnormal half: man * 2^-24, normalized for fp32 */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

size_t be_float_row_bytes(int type, int k) {
    switch (type) {
    case BE_F32: return (size_t)k * 4;
    case BE_F16: return (size_t)k * 2;
    case BE_Q8_0: return (size_t)(k / BE_Q8_0_BLOCK) * BE_Q8_0_BYTES;
    case BE_Q4_0: return (size_t)(k / BE_Q4_0_BLOCK) * BE_Q4_0_BYTES;
    case BE_Q6_K: return (size_t)(k / BE_Q6_K_BLOCK) * BE_Q6_K_BYTES;
    default: return 0;
    }
}

void be_q6_k_levels(const uint8_t *blk, int8_t q[BE_Q6_K_BLOCK]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) << 4)) - 32);
        }
    }
}

/* the scale of each 16-weight group of a Q6_K block: d * scale in fp32, as ggml and gguf-py round it */
static void q6_k_group_scales(const uint8_t *blk, float ds[16]) {
    const float d = be_f16_to_f32(load_u16(blk + 208));
    const int8_t *sc = (const int8_t *)(blk + 192);
    for (int j = 0; j < 16; j++) ds[j] = d * (float)sc[j];
}

void be_dequantize_row(const void *w, int type, int row, int k, float *out) {
    const uint8_t *r = (const uint8_t *)w + (size_t)row * be_float_row_bytes(type, k);
    switch (type) {
    case BE_F32:
        memcpy(out, r, (size_t)k * sizeof(float));
        break;
    case BE_F16:
        for (int i = 0; i < k; i++) out[i] = be_f16_to_f32(load_u16(r + 2 * i));
        break;
    case BE_Q8_0:
        for (int b = 0; b < k / BE_Q8_0_BLOCK; b++) {
            const uint8_t *blk = r + (size_t)b * BE_Q8_0_BYTES;
            const float d = be_f16_to_f32(load_u16(blk));
            const int8_t *qs = (const int8_t *)(blk + 2);
            for (int j = 0; j < BE_Q8_0_BLOCK; j++) out[b * BE_Q8_0_BLOCK + j] = d * (float)qs[j];
        }
        break;
    case BE_Q4_0:
        for (int b = 0; b < k / BE_Q4_0_BLOCK; b++) {
            const uint8_t *blk = r + (size_t)b * BE_Q4_0_BYTES;
            const float d = be_f16_to_f32(load_u16(blk));
            float *o = out + b * BE_Q4_0_BLOCK;
            for (int j = 0; j < 16; j++) {
                o[j] = d * (float)((blk[2 + j] & 15) - 8);
                o[j + 16] = d * (float)((blk[2 + j] >> 4) - 8);
            }
        }
        break;
    case BE_Q6_K:
        for (int b = 0; b < k / BE_Q6_K_BLOCK; b++) {
            const uint8_t *blk = r + (size_t)b * BE_Q6_K_BYTES;
            int8_t q[BE_Q6_K_BLOCK];
            float ds[16];
            be_q6_k_levels(blk, q);
            q6_k_group_scales(blk, ds);
            for (int i = 0; i < BE_Q6_K_BLOCK; i++) out[b * BE_Q6_K_BLOCK + i] = ds[i / 16] * (float)q[i];
        }
        break;
    default:
        memset(out, 0, (size_t)k * sizeof(float));  /* model.c refuses other types before we get here */
        break;
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * scalar I2_S: byte j of a 32-byte block holds columns j, j+32, j+64, j+96 in bits 7-6, 5-4, 3-2, 1-0 and
 * code c = T + 1. The sum of c*q minus the sum of q equals sum T*q exactly (int32; |acc| <= 128 * kp). */

static int32_t i2s_dot_row(const uint8_t *row, const int8_t *q, int kp) {
    int32_t acc = 0;
    for (int k0 = 0; k0 < kp; k0 += 128) {
        const uint8_t *blk = row + k0 / 4;
        const int8_t *qb = q + k0;
        for (int j = 0; j < 32; j++) {
            const uint8_t b = blk[j];
            acc += ((b >> 6) - 1) * qb[j];
            acc += (((b >> 4) & 3) - 1) * qb[j + 32];
            acc += (((b >> 2) & 3) - 1) * qb[j + 64];
            acc += ((b & 3) - 1) * qb[j + 96];
        }
    }
    return acc;
}

static void i2s_gemv_scalar(const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1, int kp) {
    const size_t row_bytes = (size_t)kp / 4;
    for (int n = n0; n < n1; n++) acc[n] = i2s_dot_row(w + (size_t)n * row_bytes, q, kp);
}

static void i2s_gemm_scalar(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1, int kp,
                            int nb) {
    const size_t row_bytes = (size_t)kp / 4;
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = w + (size_t)n * row_bytes;
        for (int b = 0; b < nb; b++) acc[(size_t)b * ldacc + n] = i2s_dot_row(row, q + (size_t)b * kp, kp);
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * scalar float gemv: y[n] = sum_k W[n][k] * x[k], summed in order (Q8_0, Q4_0: per block d * sum(q * x); Q6_K: per
 * 16-weight group (d * scale) * sum(q * x)) */

static float dot_f32(const float *w, const float *x, int k) {
    float s = 0.0f;
    for (int i = 0; i < k; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16(const uint8_t *w, const float *x, int k) {
    float s = 0.0f;
    for (int i = 0; i < k; i++) s += be_f16_to_f32(load_u16(w + 2 * i)) * x[i];
    return s;
}

static float dot_q8_0(const uint8_t *w, const float *x, int k) {
    float s = 0.0f;
    for (int b = 0; b < k / BE_Q8_0_BLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * BE_Q8_0_BYTES;
        const int8_t *qs = (const int8_t *)(blk + 2);
        const float *xb = x + b * BE_Q8_0_BLOCK;
        float sb = 0.0f;
        for (int j = 0; j < BE_Q8_0_BLOCK; j++) sb += (float)qs[j] * xb[j];
        s += be_f16_to_f32(load_u16(blk)) * sb;
    }
    return s;
}

/* Q4_0: per block d * sum(q * x), weights 0..15 (low nibbles) then 16..31 (high nibbles) */
static float dot_q4_0(const uint8_t *w, const float *x, int k) {
    float s = 0.0f;
    for (int b = 0; b < k / BE_Q4_0_BLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * BE_Q4_0_BYTES;
        const float *xb = x + b * BE_Q4_0_BLOCK;
        float sb = 0.0f;
        for (int j = 0; j < 16; j++) sb += (float)((blk[2 + j] & 15) - 8) * xb[j];
        for (int j = 0; j < 16; j++) sb += (float)((blk[2 + j] >> 4) - 8) * xb[j + 16];
        s += be_f16_to_f32(load_u16(blk)) * sb;
    }
    return s;
}

/* Q6_K: per 16-weight group (d * scale) * sum(q * x) */
static float dot_q6_k(const uint8_t *w, const float *x, int k) {
    float s = 0.0f;
    for (int b = 0; b < k / BE_Q6_K_BLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * BE_Q6_K_BYTES;
        const float *xb = x + b * BE_Q6_K_BLOCK;
        int8_t q[BE_Q6_K_BLOCK];
        float ds[16];
        be_q6_k_levels(blk, q);
        q6_k_group_scales(blk, ds);
        for (int g = 0; g < 16; g++) {
            float sg = 0.0f;
            for (int j = 0; j < 16; j++) sg += (float)q[16 * g + j] * xb[16 * g + j];
            s += ds[g] * sg;
        }
    }
    return s;
}

static void float_gemv_scalar(const void *w, int type, const float *x, float *y, int n0, int n1, int k) {
    const size_t row_bytes = be_float_row_bytes(type, k);
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)n * row_bytes;
        switch (type) {
        case BE_F32: y[n] = dot_f32((const float *)row, x, k); break;
        case BE_F16: y[n] = dot_f16(row, x, k); break;
        case BE_Q8_0: y[n] = dot_q8_0(row, x, k); break;
        case BE_Q4_0: y[n] = dot_q4_0(row, x, k); break;
        case BE_Q6_K: y[n] = dot_q6_k(row, x, k); break;
        default: y[n] = 0.0f; break;
        }
    }
}

/* the blocks' exact integer sums, each converted once, scaled by d and added in block order: nb + 2 roundings */
static void q8_0_i16_gemv_scalar(const uint8_t *w, const int16_t *x, float *y, int n0, int n1, int k) {
    const size_t row_bytes = be_float_row_bytes(BE_Q8_0, k);
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = w + (size_t)n * row_bytes;
        float s = 0.0f;
        for (int b = 0; b < k / BE_Q8_0_BLOCK; b++) {
            const uint8_t *blk = row + (size_t)b * BE_Q8_0_BYTES;
            const int8_t *qs = (const int8_t *)(blk + 2);
            int32_t sb = 0;
            for (int j = 0; j < BE_Q8_0_BLOCK; j++) sb += (int32_t)qs[j] * x[b * BE_Q8_0_BLOCK + j];
            s += be_f16_to_f32(load_u16(blk)) * (float)sb;
        }
        y[n] = s;
    }
}

const be_kernels be_kernels_scalar = {"scalar", i2s_gemv_scalar, i2s_gemm_scalar, float_gemv_scalar,
                                      be_quantize_row_i8_scalar, q8_0_i16_gemv_scalar};

/* ----------------------------------------------------------------------------------------------------------
 * dispatch: tables in order of preference, each with the CPU features it needs */

/* The features a table needs that this CPU lacks ("" when it has them all). avx512-vnni's float and quantize
 * kernels also use AVX2/FMA/F16C instructions, and avx-vnni's are the avx2 table's; every AVX-512 flag is 0
 * unless the OS saves the ZMM state. */
static const char *table_lacks(const be_kernels *k) {
    const be_cpu_features *f = be_cpu_get();
    if (!strcmp(k->name, "avx2") || !strcmp(k->name, "avx-vnni") || !strcmp(k->name, "avx512-vnni")) {
        if (!f->avx2 || !f->fma || !f->f16c) return "AVX2, FMA and F16C";
    }
    if (!strcmp(k->name, "avx-vnni") && !f->avx_vnni) return "AVX-VNNI (the VEX vpdpbusd)";
    if (!strcmp(k->name, "avx512-vnni")) {
        if (!f->avx512f || !f->avx512bw || !f->avx512vl) return "AVX-512 F/BW/VL (with the OS saving ZMM state)";
        if (!f->avx512_vnni) return "AVX512-VNNI";
    }
    if (!strcmp(k->name, "neon") && !f->neon) return "NEON";
    if (!strcmp(k->name, "neon-dotprod") && !(f->neon && f->dotprod)) return "the dot-product extension (DOTPROD)";
    if (!strcmp(k->name, "neon-i8mm") && !(f->neon && f->dotprod && f->i8mm))
        return "the int8 matrix-multiply extension (I8MM) with DOTPROD";
    return "";  /* scalar runs everywhere */
}

static int table_supported(const be_kernels *k) { return table_lacks(k)[0] == '\0'; }

/* every table this build holds, best first, whatever the CPU */
static const be_kernels *const compiled_tables[] = {
#if BE_HAVE_AVX512VNNI_KERNELS
    &be_kernels_avx512vnni,
#endif
#if BE_HAVE_AVXVNNI_KERNELS
    &be_kernels_avxvnni,
#endif
#if BE_HAVE_AVX2_KERNELS
    &be_kernels_avx2,
#endif
#if BE_HAVE_I8MM_KERNELS
    &be_kernels_neon_i8mm,
#endif
#if BE_HAVE_DOTPROD_KERNELS
    &be_kernels_neon_dotprod,
#endif
#if BE_HAVE_NEON_KERNELS
    &be_kernels_neon,
#endif
    &be_kernels_scalar,
};
#define N_COMPILED_TABLES (sizeof(compiled_tables) / sizeof(compiled_tables[0]))

int be_kernels_list(const be_kernels **out, int cap) {
    int n = 0;
    for (size_t i = 0; i < N_COMPILED_TABLES; i++)
        if (table_supported(compiled_tables[i]) && n < cap) out[n++] = compiled_tables[i];
    return n;
}

const char *be_kernels_cpu_lacks(const char *name) {
    for (size_t i = 0; i < N_COMPILED_TABLES; i++)
        if (!strcmp(compiled_tables[i]->name, name) && !table_supported(compiled_tables[i]))
            return table_lacks(compiled_tables[i]);
    return NULL;
}

const be_kernels *be_kernels_select(void) {
    const be_kernels *best[1] = {&be_kernels_scalar};
    return be_kernels_list(best, 1) == 1 ? best[0] : &be_kernels_scalar;
}

const be_kernels *be_kernels_active(void) {
    const char *forced = getenv("BITEDGE_KERNELS");
    const be_kernels *k = forced && *forced ? be_kernels_by_name(forced) : NULL;
    return k ? k : be_kernels_select();
}

static const be_kernels *best_table;
static pthread_once_t best_once = PTHREAD_ONCE_INIT;
static void find_best_table(void) { best_table = be_kernels_select(); }

float be_quantize_row_i8(const float *x, int8_t *q, int k, int kp) {
    pthread_once(&best_once, find_best_table);
    return best_table->quantize_row_i8(x, q, k, kp);
}

const be_kernels *be_kernels_by_name(const char *name) {
    const be_kernels *all[8];
    int n = be_kernels_list(all, 8);
    for (int i = 0; i < n; i++)
        if (!strcmp(all[i]->name, name)) return all[i];
    return NULL;
}
