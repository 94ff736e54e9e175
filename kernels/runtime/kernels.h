/* Ternary and float kernels of the bitedge runtime.
 *
 * Every SIMD kernel has a scalar twin with the same signature; a dispatch table (be_kernels) picks one
 * per CPU at start-up. Integer kernels are bit-exact against their scalar twin: tests demand equality.
 *
 * Arithmetic contract (identical to bitedge/reference.py, see docs/conversion.md):
 *   activation quantization, per token (row of K floats):
 *     amax = max_k |x[k]|;  a = 127.0f / fmaxf(amax, 1e-5f);  q[k] = clamp(rintf(x[k] * a), -128, 127)
 *   ternary product:  acc[n] = sum_k T[n][k] * q[k]   (int32, exact)
 *   output:           y[n]   = (float)acc[n] * (s / a)   with (s / a) computed once in fp32, s = tensor scale
 *
 * Tables (cpu_features.h says which a build holds), best first: "avx512-vnni" (kernels_avx512vnni.c: EVEX
 * vpdpbusd), "avx-vnni" (kernels_avxvnni.c: the VEX vpdpbusd of client CPUs without AVX-512, the same I2_S source
 * kernels_vnni_i2s.h; float gemv and quantize are avx2's; never run on real AVX-VNNI hardware by this project
 * yet, see docs/kernels.md) and "avx2" (kernels_avx2.c), all with target attributes, so in every x86-64 GCC/clang
 * build (avx-vnni: GCC 11 / clang 12 and later); "neon-i8mm" (its gemm in kernels_neon_i8mm.c), "neon-dotprod"
 * and "neon"
 * (kernels_neon.c, aarch64), "scalar" (kernels.c, everywhere).
 * Integer results (i2s_gemv, i2s_gemm, quantize_row_i8) are identical across tables. float_gemv differs only
 * in summation order and FMA use: |y - exact| <= 1e-5 * sum_k |W[n][k] * x[k]| (tests/test_c_kernels.py).
 */
#ifndef BITEDGE_KERNELS_H
#define BITEDGE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Per-token int8 quantization of x[0..k) into q[0..kp), zero-filling q[k..kp). Returns a (see above).
 * be_quantize_row_i8 uses the best table's quantize_row_i8; all give bit-identical results for finite x
 * (non-finite x give defined but meaningless q). Thread-safe. */
typedef float (*be_quantize_fn)(const float *x, int8_t *q, int k, int kp);
float be_quantize_row_i8(const float *x, int8_t *q, int k, int kp);
float be_quantize_row_i8_scalar(const float *x, int8_t *q, int k, int kp);  /* the portable twin */

/* I2_S: w points at the packed matrix (N rows of kp/4 bytes, docs/format.md); kp % 128 == 0.
 * gemv: writes acc[n] (absolute row index) for n in [n0, n1).
 * gemm: nb tokens; q is [nb][kp], acc is [nb][ldacc], rows [n0, n1). */
typedef void (*be_i2s_gemv_fn)(const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1, int kp);
typedef void (*be_i2s_gemm_fn)(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1, int kp, int nb);

/* Float-weight matrix-vector products for embeddings / output matrix:
 * y[n] = sum_k W[n][k] * x[k] for n in [n0, n1); W row-major [N][k] in the given ggml type. */
enum be_float_type { BE_F32 = 0, BE_F16 = 1, BE_Q4_0 = 2, BE_Q8_0 = 8, BE_Q6_K = 14 };  /* = the ggml type ids */
/* ggml Q8_0: blocks of 32 weights, each an IEEE half d then 32 int8 q (34 bytes); w = d * q. k % 32 == 0. */
#define BE_Q8_0_BLOCK 32
#define BE_Q8_0_BYTES 34
/* ggml Q4_0: blocks of 32 weights, an IEEE half d then 16 bytes; byte j holds weight j in its low nibble and weight
 * j + 16 in its high nibble (u, 0..15); w = d * (float)(u - 8). k % 32 == 0. */
#define BE_Q4_0_BLOCK 32
#define BE_Q4_0_BYTES 18
/* ggml Q6_K: blocks of 256 weights (210 bytes): ql[128], qh[64], int8 scales[16], IEEE half d. In each half h of
 * 128 weights (ql + 64h, qh + 32h), weight 128h + 32m + l (m 0..3, l 0..31) has the 6-bit level u = low | high << 4
 * with low the nibble of ql[l + 32 (m & 1)] (low nibble for m < 2, high for m >= 2) and high bits 2m..2m+1 of qh[l];
 * w = (d * (float)scales[i / 16]) * (float)(u - 32) for weight i of the block, (d * scale) rounded first, as ggml's
 * dequantize_row_q6_K and gguf-py compute it. k % 256 == 0. */
#define BE_Q6_K_BLOCK 256
#define BE_Q6_K_BYTES 210
typedef void (*be_float_gemv_fn)(const void *w, int type, const float *x, float *y, int n0, int n1, int k);
/* Q8_0 rows times int16 activations, the fast pass of the greedy output (output_greedy.c):
 * y[n] = sum over blocks b of d_b * (sum_j q_j * x_j) for n in [n0, n1). Each block's integer sum is exact
 * (|sum| <= 32 * 127 * 32767 < 2^27); the conversions to float and the sum over blocks round, each term at most
 * nb + 8 times (nb = k / 32 blocks), in any order: output_greedy.c's bound assumes no more. */
typedef void (*be_q8_0_i16_gemv_fn)(const uint8_t *w, const int16_t *x, float *y, int n0, int n1, int k);
/* The greedy output's pieces its tests check (output_greedy.c): x rounded to int16, X_j = rint(x_j * 32767 / m),
 * returning m = max|x_j| (X untouched when m is 0 or not finite); and the bound's factor: for a Q8_0 row w of k
 * weights, |s * q8_0_i16_gemv(w, X) - float_gemv(w, x)| <= W * be_greedy_bound_per_w(m, k) on every table, with
 * s = m / 32767 (rounded to float) and W = sum_j |w_j|. */
float be_greedy_quantize_x(const float *x, int16_t *X, int k);
double be_greedy_bound_per_w(float max_x, int k);
/* Dequantize one row of W (any be_float_type) to float: used for embedding look-up. */
void be_dequantize_row(const void *w, int type, int row, int k, float *out);
/* Bytes of one row of k weights of the given type (0 for an unknown type). */
size_t be_float_row_bytes(int type, int k);
/* The 256 levels u - 32 (-32..31) of one Q6_K block in weight order (the scalar twin's unpacking). */
void be_q6_k_levels(const uint8_t *blk, int8_t q[BE_Q6_K_BLOCK]);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* AVX2 (+FMA, F16C) kernels of kernels_avx2.c that other x86 tables use as they are: the dot products of one Q4_0 /
 * Q6_K row with x (the avx512-vnni float_gemv), and the whole float gemv and quantization (the avx-vnni table and
 * the tests' emulated-VNNI one). Call only where the CPU has AVX2, FMA and F16C. */
float be_dot_q4_0_avx2(const uint8_t *row, const float *x, int k);
float be_dot_q6_k_avx2(const uint8_t *row, const float *x, int k);
void be_float_gemv_avx2(const void *w, int type, const float *x, float *y, int n0, int n1, int k);
float be_quantize_row_i8_avx2(const float *x, int8_t *q, int k, int kp);
void be_q8_0_i16_gemv_avx2(const uint8_t *w, const int16_t *x, float *y, int n0, int n1, int k);
#endif
/* IEEE binary16 -> binary32, exact (subnormals, inf, NaN). */
float be_f16_to_f32(uint16_t h);

typedef struct {
    const char *name;           /* "avx512-vnni", "avx-vnni", "avx2", "neon-i8mm", "neon-dotprod", "neon", "scalar" */
    be_i2s_gemv_fn i2s_gemv;
    be_i2s_gemm_fn i2s_gemm;
    be_float_gemv_fn float_gemv;
    be_quantize_fn quantize_row_i8;  /* same contract as be_quantize_row_i8 */
    be_q8_0_i16_gemv_fn q8_0_i16_gemv;  /* NULL where the table has none (NEON): the greedy output then computes
                                         * every logit with float_gemv */
} be_kernels;

extern const be_kernels be_kernels_scalar;
/* the ISA tables, defined in kernels_<isa>.c where the build has them (BE_HAVE_*_KERNELS, cpu_features.h) */
extern const be_kernels be_kernels_avx2, be_kernels_avxvnni, be_kernels_avx512vnni, be_kernels_neon,
    be_kernels_neon_dotprod, be_kernels_neon_i8mm;
/* The best table this build and this CPU support (checks CPU features at run time: a table whose instructions
 * the CPU lacks, e.g. neon-dotprod on a Cortex-A72, is never returned by these three functions). */
const be_kernels *be_kernels_select(void);
/* The table a run uses: the one BITEDGE_KERNELS names when set and this CPU runs it, else be_kernels_select(). */
const be_kernels *be_kernels_active(void);
/* The table by name, or NULL if not compiled in or not supported by this CPU. */
const be_kernels *be_kernels_by_name(const char *name);
/* For a table this build holds but this CPU cannot run: what the CPU lacks (e.g. "AVX512-VNNI"), for the
 * message of a refused BITEDGE_KERNELS; NULL when the CPU can run it or the build holds no such table. */
const char *be_kernels_cpu_lacks(const char *name);
/* The tables this build contains and this CPU can run, best first (scalar last); returns how many (<= cap). */
int be_kernels_list(const be_kernels **out, int cap);

#endif
