"""The ggml block types of the embedding / output matrix (``bitedge.embed_type``): names, sizes, and quantization.

Q8_0 and Q4_0 are quantized by gguf-py (``gguf.quants``, bit-exact with ggml's ``quantize_row_q8_0_ref`` /
``quantize_row_q4_0_ref``). gguf-py dequantizes Q6_K but cannot quantize it, so ``quantize_q6_k`` below is ggml's
reference quantizer (``quantize_row_q6_K_ref`` with ``make_qx_quants(16, 32, x, L, rmse_type=1, NULL)``,
ggml/src/ggml-quants.c) in numpy, fp32 op for op. Whatever the quantizer, the file is the ground truth: the
reference (gguf.quants.dequantize) and the C runtime (be_dequantize_row, kernels/runtime/kernels.c) read the
same weights from the same bytes, so lossless-against-the-file holds for every type here.

Layouts (ggml's, docs/format.md), per block:
  Q8_0  32 weights, 34 bytes: f16 d, int8 q[32];                                   w = d * q
  Q4_0  32 weights, 18 bytes: f16 d, qs[16] (low nibble: weight j, high: j + 16);   w = d * (nibble - 8)
  Q6_K 256 weights, 210 bytes: ql[128], qh[64], int8 scales[16], f16 d;            w = (d * scale) * (q6 - 32)
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType, quants

F32 = np.float32
QK_K = 256
GROUP_MAX_EPS = F32(1e-15)

# bitedge.embed_type name -> ggml type; the float types first, then the block types smallest-loss first
EMBED_TYPES = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "q8_0": GGMLQuantizationType.Q8_0,
    "q6_k": GGMLQuantizationType.Q6_K,
    "q4_0": GGMLQuantizationType.Q4_0,
}
# ggml block types among them: (weights per block, bytes per block)
BLOCK_TYPES = {
    GGMLQuantizationType.Q8_0: (32, 34),
    GGMLQuantizationType.Q6_K: (QK_K, 210),
    GGMLQuantizationType.Q4_0: (32, 18),
}


def quantize(rows: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """rows [..., k] float32 -> the ggml blocks as uint8 [..., k / block * bytes] (k a multiple of the block)."""
    rows = np.asarray(rows, dtype=F32)
    if qtype == GGMLQuantizationType.Q6_K:
        flat = rows.reshape(-1, rows.shape[-1])
        return quantize_q6_k(flat).reshape(*rows.shape[:-1], -1)
    return quants.quantize(rows, qtype)


# ---------------------------------------------------------------------------------------------- Q6_K


def _seq_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the first axis in index order, in fp32 (ggml's loop: the order decides near-ties of the search)."""
    s = a[0].copy()
    for i in range(1, a.shape[0]):
        s += a[i]
    return s


def _levels(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """ggml's nearest_int (the +1.5*2^23 trick: round half to even, like np.rint in fp32), clamped to [lo, hi]."""
    v = np.rint(v)
    return np.clip(v, F32(lo), F32(hi), out=v)


def _make_qx_quants(x: np.ndarray, nmax: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """ggml's make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL) for every row of x [S, n] at once.

    Returns (scale [S] fp32, L [S, n] uint8 = level + nmax). Works on x transposed ([n, S]: each of ggml's
    per-element steps is one contiguous row)."""
    xt = np.ascontiguousarray(x.T)
    cols = np.arange(xt.shape[1])
    ax = np.abs(xt)
    first_max = ax.argmax(axis=0)  # ggml keeps the first of equal maxima (strict >)
    amax, mx = ax[first_max, cols], xt[first_max, cols]
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, F32(1), mx)
    wx = (xt * xt) * xt  # rmse_type 1: weight w = x^2; ggml's w*x[i]*l is (w * x) * l
    w = xt * xt

    def trial(iscale: np.ndarray):
        lv = _levels(iscale[None, :] * xt, -nmax, nmax - 1)
        return lv, _seq_sum(wx * lv), _seq_sum((w * lv) * lv)

    def ratio(num, den):
        return np.where(den != 0, num / np.where(den != 0, den, F32(1)), F32(0)).astype(F32)

    lv, sumlx, suml2 = trial(F32(-nmax) / mx)
    levels, scale = lv, ratio(sumlx, suml2)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        lv, sumlx, suml2 = trial(-(F32(nmax) + F32(0.1) * F32(step)) / mx)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        np.copyto(levels, lv, where=better[None, :])
        scale = np.where(better, ratio(sumlx, suml2), scale)
        best = np.where(better, scale * sumlx, best)
    scale = np.where(zero, F32(0), scale).astype(F32)
    levels[:, zero] = F32(-nmax)
    return scale, (levels + F32(nmax)).astype(np.uint8).T


def quantize_q6_k(rows: np.ndarray) -> np.ndarray:
    """ggml's quantize_row_q6_K_ref: rows [R, k] float32, k % 256 == 0 -> uint8 [R, k / 256 * 210]."""
    rows = np.asarray(rows, dtype=F32)
    n_rows, k = rows.shape
    if k % QK_K:
        raise ValueError(f"Q6_K needs rows of a multiple of {QK_K} values, got {k}")
    x = rows.reshape(-1, QK_K)  # one block per row
    nb = x.shape[0]
    sub = x.reshape(-1, 16)
    sub_scale, sub_levels = _make_qx_quants(sub)
    scales = sub_scale.reshape(nb, 16)
    levels = sub_levels.reshape(nb, 16, 16)

    abs_scales = np.abs(scales)
    first_max = abs_scales.argmax(axis=1)
    max_scale = scales[np.arange(nb), first_max]
    zero = abs_scales[np.arange(nb), first_max] < GROUP_MAX_EPS
    iscale = F32(-128) / np.where(zero, F32(1), max_scale)
    d16 = (F32(1) / iscale).astype(np.float16)
    sc = np.minimum(F32(127), np.rint(iscale[:, None] * scales)).astype(np.int8)
    d = d16.astype(F32)[:, None] * sc.astype(F32)  # [nb, 16]
    nonzero = d != 0
    requant = _levels(x.reshape(nb, 16, 16) / np.where(nonzero, d, F32(1))[..., None], -32, 31) + F32(32)
    levels = np.where(nonzero[..., None], requant.astype(np.uint8), levels).reshape(nb, QK_K)

    # ql: for each half of 128, bytes l and l + 32 of 64 hold the low nibbles of weights (l, l + 64), (l + 32, l + 96);
    # qh: byte l of 32 holds the high two bits of weights l, l + 32, l + 64, l + 96 in bits 0-1, 2-3, 4-5, 6-7
    q = levels.reshape(nb, 2, 4, 32)
    lo, hi = q & np.uint8(0x0F), q >> np.uint8(4)
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << np.uint8(4)), lo[:, :, 1] | (lo[:, :, 3] << np.uint8(4))], axis=2)
    qh = hi[:, :, 0] | (hi[:, :, 1] << np.uint8(2)) | (hi[:, :, 2] << np.uint8(4)) | (hi[:, :, 3] << np.uint8(6))
    blocks = np.concatenate([ql.reshape(nb, 128), qh.reshape(nb, 64), sc.view(np.uint8), d16.reshape(nb, 1).view(np.uint8)],
                            axis=1)
    blocks[zero] = 0  # ggml: memset of the whole block, d = +0
    return blocks.reshape(n_rows, k // QK_K * 210)
