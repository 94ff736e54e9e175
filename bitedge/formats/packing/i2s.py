"""I2_S: 2 bits a weight, bitnet.cpp's x86 order (docs/format.md).

Code c = T + 1. K is zero-padded to a multiple of 128. Each row is Kp/128 blocks of 32 bytes; byte j of the
block at column k0 holds columns k0+j, k0+j+32, k0+j+64, k0+j+96 in bits 7-6, 5-4, 3-2, 1-0.
"""

from __future__ import annotations

import numpy as np

from bitedge.formats.packing._base import Packing, pad_to, round_up
from bitedge.errors import BitedgeError

BLOCK_K = 128  # weights per block
BLOCK_BYTES = 32  # bytes per block
SHIFTS = np.array([6, 4, 2, 0], dtype=np.uint8)  # bit position of quarter q of a block


class I2S(Packing):
    name = "i2_s"
    group_k, group_bytes = BLOCK_K, BLOCK_BYTES

    def padded_k(self, k: int) -> int:
        return round_up(k, BLOCK_K)

    def packed_shape(self, n: int, k: int) -> tuple[int, int]:
        return n, self.padded_k(k) // 4

    def c_constants(self) -> dict[str, int]:
        return {"I2S_BLOCK_K": BLOCK_K, "I2S_BLOCK_BYTES": BLOCK_BYTES}

    def _pack(self, values: np.ndarray, what: str) -> np.ndarray:
        n, k = values.shape
        kp = self.padded_k(k)
        codes = (pad_to(values, n, kp) + np.int8(1)).view(np.uint8)
        quarters = codes.reshape(n, kp // BLOCK_K, 4, BLOCK_BYTES)  # [row, block, quarter, byte]
        out = quarters[:, :, 0] << SHIFTS[0]
        for q in (1, 2, 3):
            out |= quarters[:, :, q] << SHIFTS[q]
        return out.reshape(n, kp // 4)

    def _unpack(self, packed: np.ndarray, n: int, k: int, what: str) -> np.ndarray:
        kp = self.padded_k(k)
        blocks = packed.reshape(n, kp // BLOCK_K, 1, BLOCK_BYTES)
        codes = (blocks >> SHIFTS.reshape(1, 1, 4, 1)) & np.uint8(3)  # [row, block, quarter, byte]
        if (codes == 3).any():
            raise BitedgeError(f"{what}: i2_s data holds the invalid 2-bit code 3")
        values = codes.reshape(n, kp).view(np.int8) - np.int8(1)
        return np.ascontiguousarray(values[:, :k])
