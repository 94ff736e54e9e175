/* ternary_ops.h: one table of ternary matrix operations per packing and ISA, chosen once per run.
 *
 * The forward pass multiplies the quantized activations xq ([nb][kp] int8, kp = act_row_bytes(k)) by a packed
 * ternary matrix through one of these tables and never looks at the packing itself:
 *     prepare(xq_b, kp, act_b)                          once per token and shared input (NULL: none)
 *     gemv(w, act, acc, n0, n1, kp)                     one token:  acc[r] = sum_k T[r][k] * q[k], r in [n0, n1)
 *     gemm(w, act, act_stride, acc, n, n0, n1, kp, nb)  nb tokens:  acc[b * n + r], bit-identical to gemv per token
 * act is what prepare made (TL1 / TL2: look-up tables, table_bytes(kp) per token, act_stride apart), or the
 * quantized rows themselves when prepare is NULL (I2_S: act = xq, act_stride = kp). Row ranges handed to different
 * threads start on multiples of row_block (a kernel tile is never shared).
 *
 * The tables wrap the kernels of kernels.h (I2_S, hand-written per ISA) and of the rendered bitedge_tl<m>_kernels.h
 * (TL1 / TL2, every build); be_ternary_ops_for picks the one of a packing matching a be_kernels table (the CPU's,
 * or the one BITEDGE_KERNELS forces). */
#ifndef BITEDGE_TERNARY_OPS_H
#define BITEDGE_TERNARY_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

typedef struct {
    const char *name;                    /* "<packing>/<be_kernels name>", e.g. "tl2/avx2", "i2_s/scalar" */
    int row_block;                       /* row ranges split on multiples of this */
    int (*act_row_bytes)(int k);         /* kp: padded length of one quantized activation row */
    size_t (*table_bytes)(int kp);       /* bytes of one token's prepared activations; 0 when prepare is NULL */
    void (*prepare)(const int8_t *q, int kp, void *act);
    void (*gemv)(const uint8_t *w, const void *act, int32_t *acc, int n0, int n1, int kp);
    void (*gemm)(const uint8_t *w, const void *act, size_t act_stride, int32_t *acc, int n, int n0, int n1, int kp,
                 int nb);
} be_ternary_ops;

/* The table for a packing (enum be_packing, model.h) matching the be_kernels table kern; NULL for a packing the
 * forward pass does not run (TQ2_0). */
const be_ternary_ops *be_ternary_ops_for(int packing, const be_kernels *kern);

#endif
