"""TL2: three weights -> a sign bit and a 4-bit index, 1.67 bits a weight (docs/format.md).

Triple g of a row has v = 9*(T0+1) + 3*(T1+1) + (T2+1) in 0..26 (13 = all zero). v > 13 is stored negated:
sign 1, index 26 - v; else sign 0, index v. Per tile t (32 rows) and triple g: 16 bytes of index nibbles
arranged as TL1's, then a little-endian uint32 whose bit r is the sign of row 32t+r.
"""

from __future__ import annotations

import numpy as np

from bitedge.formats.packing._base import TiledPacking, pad_to
from bitedge.formats.packing.tl1 import nibble_tiles, tile_nibbles
from bitedge.errors import BitedgeError

TILE_ROWS = 32
GROUP_K = 3  # weights per (sign, index)
INDEX_BYTES = 16
SIGN_BYTES = 4
GROUP_BYTES = INDEX_BYTES + SIGN_BYTES
ZERO = 13  # v of (0, 0, 0): the centre of 0..26, so -combo(i) = combo(26 - i)


class TL2(TiledPacking):
    name = "tl2"
    tile_rows, group_k, group_bytes = TILE_ROWS, GROUP_K, GROUP_BYTES

    def c_constants(self) -> dict[str, int]:
        return {
            "TL2_TILE_ROWS": TILE_ROWS,
            "TL2_GROUP_K": GROUP_K,
            "TL2_INDEX_BYTES": INDEX_BYTES,
            "TL2_SIGN_BYTES": SIGN_BYTES,
            "TL2_GROUP_BYTES": GROUP_BYTES,
        }

    def _pack(self, values: np.ndarray, what: str) -> np.ndarray:
        np_, kp = self.padded(*values.shape)
        t = pad_to(values, np_, kp) + np.int8(1)  # 0..2
        v = (t[:, 0::3] * np.int8(9) + t[:, 1::3] * np.int8(3) + t[:, 2::3]).view(np.uint8)  # [Np, G]
        sign = v > ZERO
        index = np.where(sign, np.uint8(2 * ZERO) - v, v)
        tiles, groups = np_ // TILE_ROWS, kp // GROUP_K
        index_bytes = nibble_tiles(index).reshape(tiles, groups, INDEX_BYTES)
        sign_rows = sign.reshape(tiles, TILE_ROWS, groups).transpose(0, 2, 1)  # [tile, group, row]
        sign_bytes = np.packbits(sign_rows, axis=-1, bitorder="little")  # [tile, group, 4]: LE uint32
        return np.concatenate([index_bytes, sign_bytes], axis=-1).reshape(tiles, groups * GROUP_BYTES)

    def _unpack(self, packed: np.ndarray, n: int, k: int, what: str) -> np.ndarray:
        np_, kp = self.padded(n, k)
        tiles, groups = np_ // TILE_ROWS, kp // GROUP_K
        blocks = packed.reshape(tiles, groups, GROUP_BYTES)
        index = tile_nibbles(np.ascontiguousarray(blocks[:, :, :INDEX_BYTES]), np_, groups)  # [Np, G]
        if (index > ZERO).any():
            raise BitedgeError(f"{what}: tl2 data holds an index above {ZERO}")
        sign_rows = np.unpackbits(blocks[:, :, INDEX_BYTES:], axis=-1, bitorder="little")  # [tile, group, row]
        sign = sign_rows.transpose(0, 2, 1).reshape(np_, groups).astype(bool)
        v = np.where(sign, np.uint8(2 * ZERO) - index, index)
        values = np.empty((np_, kp), dtype=np.int8)
        values[:, 0::3] = (v // 9).view(np.int8) - np.int8(1)
        values[:, 1::3] = (v // 3 % 3).view(np.int8) - np.int8(1)
        values[:, 2::3] = (v % 3).view(np.int8) - np.int8(1)
        return np.ascontiguousarray(values[:n, :k])
