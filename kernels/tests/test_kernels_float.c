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

/* q8_0_i16_gemv (the greedy output's fast pass) against the exact sum over blocks of d * (q . x): within the
 * rounding kernels.h allows, gamma(nb + 8) * sum_b |d_b * S_b|, for random levels and int16 x up to both ends */
static void check_i16_case(const be_kernels *const *tables, int n_tables, int n, int k, int extreme) {
    const size_t row_bytes = be_float_row_bytes(BE_Q8_0, k);
    uint8_t *w = xmalloc(row_bytes * (size_t)n);
    int16_t *x = xmalloc((size_t)k * sizeof(int16_t));
    double *exact = xmalloc((size_t)n * sizeof(double)), *mag = xmalloc((size_t)n * sizeof(double));
    float *y = xmalloc((size_t)(n + 1) * sizeof(float));
    make_float_matrix(BE_Q8_0, n, k, w);
    for (int i = 0; i < k; i++) x[i] = (int16_t)(extreme ? (rng_int(0, 1) ? 32767 : -32767) : rng_int(-32767, 32767));
    if (extreme)  /* every level at -128 or 127: the largest block sums */
        for (int r = 0; r < n; r++)
            for (int b = 0; b < k / BE_Q8_0_BLOCK; b++)
                for (int j = 0; j < BE_Q8_0_BLOCK; j++)
                    w[r * row_bytes + (size_t)b * BE_Q8_0_BYTES + 2 + j] = (uint8_t)(x[b * 32 + j] > 0 ? 127 : 128);
    const int nb = k / BE_Q8_0_BLOCK;
    for (int r = 0; r < n; r++) {
        exact[r] = mag[r] = 0.0;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + r * row_bytes + (size_t)b * BE_Q8_0_BYTES;
            long long sb = 0;
            for (int j = 0; j < 32; j++) sb += (long long)(int8_t)blk[2 + j] * x[b * 32 + j];
            const double d = be_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
            exact[r] += d * (double)sb;
            mag[r] += fabs(d * (double)sb);
        }
    }
    const double gamma = (nb + 8) * 0x1p-24 / (1.0 - (nb + 8) * 0x1p-24);
    const int n0 = rng_int(0, n - 1), n1 = rng_int(n0 + 1, n);
    for (int ti = 0; ti < n_tables; ti++) {
        if (!tables[ti]->q8_0_i16_gemv) continue;
        for (int r = 0; r <= n; r++) y[r] = -12345.0f;
        tables[ti]->q8_0_i16_gemv(w, x, y, n0, n1, k);
        for (int r = 0; r <= n; r++) {
            if (r >= n0 && r < n1)
                CHECK(fabs((double)y[r] - exact[r]) <= gamma * mag[r], "%s q8_0_i16_gemv n=%d k=%d row %d: %.9g, want %.9g",
                      tables[ti]->name, n, k, r, y[r], exact[r]);
            else
                CHECK(y[r] == -12345.0f, "%s q8_0_i16_gemv wrote row %d outside [%d, %d)", tables[ti]->name, r, n0, n1);
        }
    }
    free(w);
    free(x);
    free(exact);
    free(mag);
    free(y);
}

/* The greedy output's bound (output_greedy.c) holds on every table: |s * q8_0_i16_gemv(X) - float_gemv(x)| <=
 * W * be_greedy_bound_per_w(m, k), for x with outliers, elements near zero (the int16 rounding's worst relative
 * error) and both signs. Too small a bound lets the greedy step miss the argmax: this is where it would show. */
static void check_greedy_bound_case(const be_kernels *const *tables, int n_tables, int n, int k) {
    const size_t row_bytes = be_float_row_bytes(BE_Q8_0, k);
    uint8_t *w = xmalloc(row_bytes * (size_t)n);
    float *x = xmalloc((size_t)k * sizeof(float)), *row = xmalloc((size_t)k * sizeof(float));
    int16_t *X = xmalloc((size_t)k * sizeof(int16_t));
    double *abs_w = xmalloc((size_t)n * sizeof(double));
    float *yi = xmalloc((size_t)n * sizeof(float)), *yf = xmalloc((size_t)n * sizeof(float));
    make_float_matrix(BE_Q8_0, n, k, w);
    for (int i = 0; i < k; i++) {
        const int kind = rng_int(0, 9);
        x[i] = kind == 0 ? rng_float() * 40.0f : kind < 4 ? rng_float() * 1e-4f : rng_float() * 2.0f;
    }
    for (int r = 0; r < n; r++) {
        be_dequantize_row(w, BE_Q8_0, r, k, row);
        abs_w[r] = 0.0;
        for (int i = 0; i < k; i++) abs_w[r] += fabs((double)row[i]);
    }
    const float m = be_greedy_quantize_x(x, X, k), s = m / 32767.0f;
    const double per_w = be_greedy_bound_per_w(m, k);
    for (int ti = 0; ti < n_tables; ti++) {
        if (!tables[ti]->q8_0_i16_gemv) continue;
        tables[ti]->q8_0_i16_gemv(w, X, yi, 0, n, k);
        tables[ti]->float_gemv(w, BE_Q8_0, x, yf, 0, n, k);
        for (int r = 0; r < n; r++) {
            const float approx = yi[r] * s;
            CHECK(fabs((double)approx - (double)yf[r]) <= abs_w[r] * per_w,
                  "%s greedy bound k=%d row %d: fast %.9g, exact %.9g, bound %.3g", tables[ti]->name, k, r, approx,
                  yf[r], abs_w[r] * per_w);
        }
    }
    free(w);
    free(x);
    free(row);
    free(X);
    free(abs_w);
    free(yi);
    free(yf);
}

void test_float(const be_kernels *const *tables, int n_tables) {
    for (int rep = 0; rep < 10; rep++) check_greedy_bound_case(tables, n_tables, rng_int(1, 64), 32 * rng_int(1, 90));
    CHECK(be_kernels_scalar.q8_0_i16_gemv != NULL, "the scalar table has no q8_0_i16_gemv");
    for (int rep = 0; rep < 20; rep++)
        check_i16_case(tables, n_tables, rng_int(1, 40), 32 * rng_int(1, 100), rep % 4 == 0);
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
