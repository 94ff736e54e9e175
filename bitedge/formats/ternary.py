"""BitNet b1.58 weight ternarization and per-token int8 activation quantization, in numpy.

Both follow transformers' BitNet code (integrations/bitnet.py: WeightQuant, ActQuant, BitLinear) op for
op in float32; docs/conversion.md states the arithmetic.

The stored scale.  transformers computes W_eff = T / s with s = fp32(1 / mean|W|).  We store the
multiplicative scale fp32(1 / s), computed from that same fp32 s: for T in {-1, 0, 1}, T * fp32(1/s) is
bit-for-bit the fp32 value T / s that transformers feeds to F.linear, so W_eff is reproduced exactly
(storing mean|W| instead would differ from 1/s by up to an ulp).  The one place we cannot promise bit
equality is mean|W| itself: we sum in float64 and round once (deterministic, correctly rounded), torch sums
in fp32 in a thread- and SIMD-dependent order, so the two may differ by an ulp of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitedge.model import Ternary

ABSMEAN_FLOOR = np.float32(1e-5)  # WeightQuant: mean(|W|).clamp(min=1e-5)
ABSMAX_FLOOR = np.float32(1e-5)  # ActQuant: max(|x|).clamp(min=1e-5)
Q_MAX = np.float32(127.0)


def absmean_inverse(w: np.ndarray) -> np.float32:
    """s = 1 / max(mean(|W|), 1e-5) in fp32 (the mean is accumulated in float64, rounded once)."""
    w = np.asarray(w, dtype=np.float32)
    mean = np.float32(np.abs(w).mean(dtype=np.float64))
    return np.float32(1.0) / np.maximum(mean, ABSMEAN_FLOOR)


def ternarize(w: np.ndarray) -> Ternary:
    """Absmean ternarization of one tensor: T = clip(round_half_even(W * s), -1, 1), scale = fp32(1 / s)."""
    w = np.asarray(w, dtype=np.float32)
    s = absmean_inverse(w)
    values = np.clip(np.rint(w * s), -1, 1).astype(np.int8)
    return Ternary(values, float(np.float32(1.0) / s))


def exact_ternary(w: np.ndarray) -> Ternary | None:
    """W already is T * c (one magnitude c besides zero): Ternary(sign(W), c) exactly, else None."""
    w = np.asarray(w, dtype=np.float32)
    magnitudes = np.unique(np.abs(w))
    magnitudes = magnitudes[magnitudes != 0]
    if len(magnitudes) > 1:
        return None
    c = float(magnitudes[0]) if len(magnitudes) else 1.0
    return Ternary(np.sign(w).astype(np.int8), c)


def quantize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token (last axis) absmax int8 quantization, all fp32.

    a = 127 / max(max|x|, 1e-5);  q = clip(rint(x * a), -128, 127).  Returns (q int8, a float32 with the
    last axis kept as 1) so that x ~= q / a.
    """
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=-1, keepdims=True)
    a = Q_MAX / np.maximum(amax, ABSMAX_FLOOR)
    q = np.clip(np.rint(x * a), -128, 127).astype(np.int8)
    return q, a.astype(np.float32)


@dataclass(frozen=True)
class TernaryDistance:
    """How far a float tensor is from "ternary values times one scale"."""

    distinct_abs: int  # distinct nonzero |values|: 1 for an exactly ternary tensor
    max_rel_error: float  # max |W - c*T| / max |W| for the best fit (absmean T, least-squares c)
    rms_rel_error: float  # ||W - c*T|| / ||W||

    @property
    def is_ternary(self) -> bool:
        return self.distinct_abs <= 1


def ternary_distance(w: np.ndarray) -> TernaryDistance:
    w = np.asarray(w, dtype=np.float32)
    magnitudes = np.abs(w)
    distinct = int(np.count_nonzero(np.unique(magnitudes)))
    t = ternarize(w).values.astype(np.float64)
    w64 = w.astype(np.float64)
    tt = float((t * t).sum())
    c = float((w64 * t).sum()) / tt if tt else 0.0  # least-squares scale for this T
    residual = w64 - c * t
    wmax = float(magnitudes.max()) if w.size else 0.0
    wnorm = float(np.sqrt((w64 * w64).sum()))
    max_rel = float(np.abs(residual).max()) / wmax if wmax else 0.0
    rms_rel = float(np.sqrt((residual * residual).sum())) / wnorm if wnorm else 0.0
    return TernaryDistance(distinct, max_rel, rms_rel)
