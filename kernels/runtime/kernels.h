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
 */
#ifndef BITEDGE_KERNELS_H
#define BITEDGE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Per-token int8 quantization of x[0..k) into q[0..kp), zero-filling q[k..kp). Returns a (see above). */
float be_quantize_row_i8(const float *x, int8_t *q, int k, int kp);

/* I2_S: w points at the packed matrix (N rows of kp/4 bytes, docs/format.md); kp % 128 == 0.
 * gemv: writes acc[n] (absolute row index) for n in [n0, n1).
 * gemm: nb tokens; q is [nb][kp], acc is [nb][ldacc], rows [n0, n1). */
typedef void (*be_i2s_gemv_fn)(const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1, int kp);
typedef void (*be_i2s_gemm_fn)(const uint8_t *w, const int8_t *q, int32_t *acc, int ldacc, int n0, int n1, int kp, int nb);

/* Float-weight matrix-vector products for embeddings / output matrix:
 * y[n] = sum_k W[n][k] * x[k] for n in [n0, n1); W row-major [N][k] in the given ggml type. */
enum be_float_type { BE_F32 = 0, BE_F16 = 1, BE_Q8_0 = 8 };
typedef void (*be_float_gemv_fn)(const void *w, int type, const float *x, float *y, int n0, int n1, int k);
/* Dequantize one row of W (any be_float_type) to float: used for embedding look-up. */
void be_dequantize_row(const void *w, int type, int row, int k, float *out);

typedef struct {
    const char *name;           /* e.g. "avx2", "neon-dotprod", "neon", "scalar" */
    be_i2s_gemv_fn i2s_gemv;
    be_i2s_gemm_fn i2s_gemm;
    be_float_gemv_fn float_gemv;
} be_kernels;

extern const be_kernels be_kernels_scalar;
/* The best table this build and this CPU support (checks CPU features at run time). */
const be_kernels *be_kernels_select(void);
/* The table by name, or NULL if not compiled in or not supported by this CPU. */
const be_kernels *be_kernels_by_name(const char *name);

#endif
