"""TL1: two weights -> one 4-bit index, rows in tiles of 32 (docs/format.md).

Pair p of a row (columns 2p, 2p+1) has index 3*(T[2p]+1) + (T[2p+1]+1) in 0..8 (4 = both zero). For tile t
and pair p there are 16 bytes: byte b holds row 32t+b in its low nibble and row 32t+16+b in its high nibble.
"""

from __future__ import annotations

import numpy as np

from bitedge.formats.packing._base import TiledPacking, pad_to
from bitedge.errors import BitedgeError

TILE_ROWS = 32
GROUP_K = 2  # weights per index
GROUP_BYTES = 16  # bytes per (tile, pair)
MAX_INDEX = 8


class TL1(TiledPacking):
    name = "tl1"
    tile_rows, group_k, group_bytes = TILE_ROWS, GROUP_K, GROUP_BYTES

    def c_constants(self) -> dict[str, int]:
        return {"TL1_TILE_ROWS": TILE_ROWS, "TL1_GROUP_K": GROUP_K, "TL1_GROUP_BYTES": GROUP_BYTES}

    def _pack(self, values: np.ndarray, what: str) -> np.ndarray:
        np_, kp = self.padded(*values.shape)
        t = pad_to(values, np_, kp) + np.int8(1)  # 0..2
        index = (t[:, 0::2] * np.int8(3) + t[:, 1::2]).view(np.uint8)  # [Np, P]
        return nibble_tiles(index)

    def _unpack(self, packed: np.ndarray, n: int, k: int, what: str) -> np.ndarray:
        np_, kp = self.padded(n, k)
        index = tile_nibbles(packed, np_, kp // GROUP_K)  # [Np, P]
        if (index > MAX_INDEX).any():
            raise BitedgeError(f"{what}: tl1 data holds an index above {MAX_INDEX}")
        values = np.empty((np_, kp), dtype=np.int8)
        values[:, 0::2] = (index // 3).view(np.int8) - np.int8(1)
        values[:, 1::2] = (index % 3).view(np.int8) - np.int8(1)
        return np.ascontiguousarray(values[:n, :k])


def nibble_tiles(index: np.ndarray) -> np.ndarray:
    """[Np, G] 4-bit indices -> [Np/32, G*16] bytes: per (tile, group), byte b = row b | row 16+b << 4."""
    np_, groups = index.shape
    halves = index.reshape(np_ // TILE_ROWS, 2, TILE_ROWS // 2, groups)  # [tile, half, b, group]
    tile_bytes = halves[:, 0] | (halves[:, 1] << np.uint8(4))  # [tile, b, group]
    return np.ascontiguousarray(tile_bytes.transpose(0, 2, 1)).reshape(np_ // TILE_ROWS, groups * 16)


def tile_nibbles(packed: np.ndarray, np_: int, groups: int) -> np.ndarray:
    """Inverse of nibble_tiles: [Np/32, G*16] bytes (or [Np/32, G, 16]) -> [Np, G] indices."""
    tile_bytes = packed.reshape(np_ // TILE_ROWS, groups, 16).transpose(0, 2, 1)  # [tile, b, group]
    halves = np.stack([tile_bytes & np.uint8(15), tile_bytes >> np.uint8(4)], axis=1)  # [tile, half, b, group]
    return halves.reshape(np_, groups)
