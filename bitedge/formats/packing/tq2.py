"""TQ2_0: ggml's 2-bit ternary type (256 weights in 66 bytes), packed by gguf.quants so the bytes are
llama.cpp's. Unlike the bitedge layouts it holds T * s (an f16 scale in every block), and it cannot pad:
llama.cpp would read padding as real columns, so K must be a multiple of 256.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType, quants

from bitedge.formats.packing._base import Packing, check_ternary
from bitedge.errors import BitedgeError

BLOCK_K = 256
QS_BYTES = 64  # 2-bit codes; then an f16 scale
BLOCK_BYTES = QS_BYTES + 2
SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8)


class TQ2(Packing):
    name = "tq2_0"
    group_k, group_bytes, k_exact = BLOCK_K, BLOCK_BYTES, True
    ggml_type = "TQ2_0"

    def check_k(self, n: int, k: int, what: str) -> None:
        if k % BLOCK_K:
            raise BitedgeError(
                f"{what}: shape ({n}, {k}) cannot be stored as tq2_0: rows of {k} weights are not a multiple of {BLOCK_K} "
                "(use --type i2_s, tl1 or tl2)"
            )

    def packed_shape(self, n: int, k: int) -> tuple[int, int]:
        self.check_k(n, k, "tensor")
        return n, k // BLOCK_K * BLOCK_BYTES

    def c_constants(self) -> dict[str, int]:
        return {"TQ2_0_BLOCK_K": BLOCK_K, "TQ2_0_BLOCK_BYTES": BLOCK_BYTES}

    def pack(self, values: np.ndarray, what: str = "tensor", scale: float = 1.0) -> np.ndarray:
        values = check_ternary(values, what)
        self.check_k(*values.shape, what)
        weights = values.astype(np.float32) * np.float32(scale)
        return quants.quantize(weights, GGMLQuantizationType.TQ2_0)

    def unpack(self, packed: np.ndarray, n: int, k: int, what: str = "tensor") -> np.ndarray:
        codes, _ = self._split(packed, n, k, what)
        if (codes == 3).any():
            raise BitedgeError(f"{what}: tq2_0 data holds the invalid 2-bit code 3")
        return codes.reshape(n, k).view(np.int8) - np.int8(1)

    def block_scales(self, packed: np.ndarray, n: int, k: int, what: str = "tensor") -> np.ndarray:
        """The f16 scale of every block, as float32 [n, k/256]."""
        _, d = self._split(packed, n, k, what)
        return d.reshape(n, k // BLOCK_K)

    def scale(self, packed: np.ndarray, n: int, k: int, what: str = "tensor") -> float:
        """The one tensor scale s of T * s: the largest block scale (all-zero blocks store 0)."""
        return float(self.block_scales(packed, n, k, what).max(initial=0.0))

    def _split(self, packed: np.ndarray, n: int, k: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        self.check_k(n, k, what)
        want = n * (k // BLOCK_K) * BLOCK_BYTES
        packed = np.asarray(packed)
        if packed.size != want:
            raise BitedgeError(f"{what}: tq2_0 data has {packed.size} bytes, expected {want} for shape ({n}, {k})")
        blocks = packed.view(np.uint8).reshape(-1, BLOCK_BYTES)
        qs = blocks[:, :QS_BYTES].reshape(-1, 2, 1, 32)
        codes = (qs >> SHIFTS.reshape(1, 1, 4, 1)) & np.uint8(3)  # [block, half, shift, byte]
        d = np.ascontiguousarray(blocks[:, QS_BYTES:]).view(np.float16).astype(np.float32)
        return codes.reshape(-1, BLOCK_K), d
