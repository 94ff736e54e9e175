/* test_kernels, part: the float output matrix (F32, F16, Q8_0, Q6_K, Q4_0) through every table's float_gemv,
 * against a float64 product of the rows as be_dequantize_row gives them */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_kernels.h"

/* ----------------------------------------------------------------------------------------------------------
 * float gemv: every table against a float64 product of the dequantized rows.
 * Tolerance: |y - exact| <= 1e-5 * sum_k |w_k x_k| + 1e-30 (float32 summation of k <= 4096 terms in any order
 * stays orders of magnitude below this for random data). */

static uint16_t f32_to_f16_trunc(float f) {
    /* only for test data: values in (-2, 2) with |f| >= 2^-14 or 0, mantissa truncated */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint32_t sign = (bits >> 16) & 0x8000u;
    const int exp = (int)((bits >> 23) & 0xff) - 127 + 15;
    if (exp <= 0) return (uint16_t)sign;
    return (uint16_t)(sign | ((uint32_t)exp << 10) | ((bits >> 13) & 0x3ffu));
}

static void make_float_matrix(int type, int n, int k, uint8_t *w) {
    const size_t row_bytes = be_float_row_bytes(type, k);
    for (int r = 0; r < n; r++) {
        uint8_t *row = w + (size_t)r * row_bytes;
        for (int i = 0; i < k; i++) {
            if (type == BE_F32) {
                float f = rng_float();
                memcpy(row + 4 * i, &f, 4);
            } else if (type == BE_F16) {
                uint16_t h = f32_to_f16_trunc(rng_float());
                row[2 * i] = (uint8_t)h;
                row[2 * i + 1] = (uint8_t)(h >> 8);
            }
        }
        if (type == BE_Q8_0)
            for (int b = 0; b < k / BE_Q8_0_BLOCK; b++) {
                uint8_t *blk = row + (size_t)b * BE_Q8_0_BYTES;
                uint16_t d = f32_to_f16_trunc(0.01f + 0.02f * (rng_float() + 1.0f));
                blk[0] = (uint8_t)d;
                blk[1] = (uint8_t)(d >> 8);
                for (int j = 0; j < BE_Q8_0_BLOCK; j++) blk[2 + j] = (uint8_t)(int8_t)rng_int(-127, 127);
            }
        if (type == BE_Q4_0 || type == BE_Q6_K) {  /* random bytes, then a finite half d (of either sign) per block */
            const int blk_w = type == BE_Q4_0 ? BE_Q4_0_BLOCK : BE_Q6_K_BLOCK;
            const int blk_b = type == BE_Q4_0 ? BE_Q4_0_BYTES : BE_Q6_K_BYTES, d_at = type == BE_Q4_0 ? 0 : 208;
            for (size_t i = 0; i < row_bytes; i++) row[i] = (uint8_t)rng_int(0, 255);
            for (int b = 0; b < k / blk_w; b++) {
                uint16_t d = f32_to_f16_trunc(rng_float() * 0.05f);
                row[(size_t)b * blk_b + d_at] = (uint8_t)d;
                row[(size_t)b * blk_b + d_at + 1] = (uint8_t)(d >> 8);
            }
        }
    }
}

static void check_float_case(const be_kernels *const *tables, int n_tables, int type, int n, int k) {
    uint8_t *w = xmalloc(be_float_row_bytes(type, k) * (size_t)n);
    float *x = xmalloc((size_t)k * sizeof(float));
    float *row = xmalloc((size_t)k * sizeof(float));
    double *exact = xmalloc((size_t)n * sizeof(double)), *mag = xmalloc((size_t)n * sizeof(double));
    float *y = xmalloc((size_t)(n + 1) * sizeof(float));
    make_float_matrix(type, n, k, w);
    for (int i = 0; i < k; i++) x[i] = rng_float() * 3.0f;
    for (int r = 0; r < n; r++) {
        be_dequantize_row(w, type, r, k, row);
        exact[r] = mag[r] = 0.0;
        for (int i = 0; i < k; i++) {
            exact[r] += (double)row[i] * x[i];
            mag[r] += fabs((double)row[i] * x[i]);
        }
    }
    const int n0 = rng_int(0, n - 1), n1 = rng_int(n0 + 1, n);
    for (int ti = 0; ti < n_tables; ti++) {
        for (int r = 0; r <= n; r++) y[r] = -12345.0f;
        tables[ti]->float_gemv(w, type, x, y, n0, n1, k);
        for (int r = 0; r <= n; r++) {
            if (r >= n0 && r < n1) {
                const double err = fabs((double)y[r] - exact[r]);
                CHECK(err <= 1e-5 * mag[r] + 1e-30, "%s float_gemv type %d n=%d k=%d row %d: %.9g, want %.9g",
                      tables[ti]->name, type, n, k, r, y[r], exact[r]);
            } else {
                CHECK(y[r] == -12345.0f, "%s float_gemv wrote row %d outside [%d, %d)", tables[ti]->name, r, n0, n1);
            }
        }
    }
    free(w);
    free(x);
    free(row);
    free(exact);
    free(mag);
    free(y);
}

void test_float(const be_kernels *const *tables, int n_tables) {
    for (int rep = 0; rep < 20; rep++) {
        int n = rng_int(1, 40), k = rng_int(1, 700);
        check_float_case(tables, n_tables, BE_F32, n, k);
        n = rng_int(1, 40), k = rng_int(1, 700);
        check_float_case(tables, n_tables, BE_F16, n, k);
        n = rng_int(1, 40), k = 32 * rng_int(1, 24);
        check_float_case(tables, n_tables, BE_Q8_0, n, k);
        n = rng_int(1, 40), k = 32 * rng_int(1, 24);
        check_float_case(tables, n_tables, BE_Q4_0, n, k);
        n = rng_int(1, 12), k = 256 * rng_int(1, 20);  /* past the AVX2 kernel's 16-block chunk */
        check_float_case(tables, n_tables, BE_Q6_K, n, k);
    }
    check_float_case(tables, n_tables, BE_F16, 3, 2560);

    /* be_dequantize_row against the definition: Q8_0 row = d * q, F16 row = the halves */
    uint8_t blk[2 * BE_Q8_0_BYTES];
    for (int b = 0; b < 2; b++) {
        blk[b * BE_Q8_0_BYTES] = 0x00;
        blk[b * BE_Q8_0_BYTES + 1] = b ? 0xb8 : 0x38;  /* 0x3800 = 0.5, 0xb800 = -0.5 */
        for (int j = 0; j < 32; j++) blk[b * BE_Q8_0_BYTES + 2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    }
    float out[64];
    be_dequantize_row(blk, BE_Q8_0, 0, 64, out);
    for (int i = 0; i < 64; i++) {
        const float want = (i < 32 ? 0.5f : -0.5f) * (float)((i % 32) * 8 - 128);
        CHECK(out[i] == want, "dequantize q8_0 [%d] = %g, want %g", i, out[i], want);
    }
    const uint8_t h[] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x00};  /* 1, -2, 0 */
    be_dequantize_row(h, BE_F16, 0, 3, out);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.0f, "dequantize f16");
    CHECK(be_float_row_bytes(BE_F32, 10) == 40 && be_float_row_bytes(BE_F16, 10) == 20 &&
          be_float_row_bytes(BE_Q8_0, 64) == 68 && be_float_row_bytes(BE_Q4_0, 64) == 36 &&
          be_float_row_bytes(BE_Q6_K, 512) == 420, "be_float_row_bytes");
}
