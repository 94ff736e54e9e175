"""What every packed ternary layout provides, and the input checks they share."""

from __future__ import annotations

import numpy as np

from bitedge.errors import BitedgeError


def round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


class Packing:
    """A packed layout for a ternary matrix T [N, K] (values in {-1, 0, 1}).

    Subclasses set ``name`` and implement ``packed_shape``, ``_pack`` and ``_unpack``; this class checks
    inputs so that every layout fails the same way on bad data.
    """

    name: str = ""
    ggml_type: str = "I8"  # how the packed bytes are typed in the GGUF file

    def packed_shape(self, n: int, k: int) -> tuple[int, int]:
        raise NotImplementedError

    def nbytes(self, n: int, k: int) -> int:
        rows, cols = self.packed_shape(n, k)
        return rows * cols

    def bits_per_weight(self, n: int, k: int) -> float:
        return 8.0 * self.nbytes(n, k) / (n * k)

    def c_constants(self) -> dict[str, int]:
        return {}

    # The byte geometry every layout has: rows in tiles of row_tile, K in groups of group_k weights (zero-padded to
    # whole groups, or required whole with k_exact), group_bytes per (tile, group). nbytes follows from it, and so
    # does the C runtime's be_packed_nbytes (rendered into bitedge_layouts.h from c_layout).
    row_tile: int = 1
    group_k: int
    group_bytes: int
    k_exact: bool = False

    def c_layout(self) -> dict:
        """The layout's geometry for bitedge_layouts.h: its enum name and the numbers of its byte size."""
        return {"name": self.name, "enum": "BE_PACK_" + self.name.upper(), "row_tile": self.row_tile,
                "group_k": self.group_k, "group_bytes": self.group_bytes, "k_exact": self.k_exact}

    def geometry_nbytes(self, n: int, k: int) -> int | None:
        """Bytes of an N x K matrix from the geometry alone (None when k_exact and K is not whole groups)."""
        if self.k_exact and k % self.group_k:
            return None
        return -(-n // self.row_tile) * -(-k // self.group_k) * self.group_bytes

    def pack(self, values: np.ndarray, what: str = "tensor") -> np.ndarray:
        values = check_ternary(values, what)
        return self._pack(values, what)

    def unpack(self, packed: np.ndarray, n: int, k: int, what: str = "tensor") -> np.ndarray:
        packed = np.asarray(packed)
        want = self.packed_shape(n, k)
        if packed.size != want[0] * want[1]:
            raise BitedgeError(
                f"{what}: {self.name} data has {packed.size} bytes, expected {want[0] * want[1]} for shape ({n}, {k})"
            )
        packed = packed.view(np.uint8).reshape(want)
        return self._unpack(packed, n, k, what)

    def _pack(self, values: np.ndarray, what: str) -> np.ndarray:
        raise NotImplementedError

    def _unpack(self, packed: np.ndarray, n: int, k: int, what: str) -> np.ndarray:
        raise NotImplementedError


class TiledPacking(Packing):
    """A table-lookup layout: rows in tiles of tile_rows, K in groups of group_k weights, group_bytes per
    (tile, group). Rows and K are zero-padded to whole tiles and groups (docs/format.md)."""

    tile_rows: int
    group_k: int
    group_bytes: int

    @property
    def row_tile(self) -> int:
        return self.tile_rows

    def padded(self, n: int, k: int) -> tuple[int, int]:
        return round_up(n, self.tile_rows), round_up(k, self.group_k)

    def packed_shape(self, n: int, k: int) -> tuple[int, int]:
        np_, kp = self.padded(n, k)
        return np_ // self.tile_rows, (kp // self.group_k) * self.group_bytes


def check_ternary(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise BitedgeError(f"{what}: a ternary matrix must be 2-D and non-empty, got shape {values.shape}")
    if values.dtype != np.int8:
        if not np.issubdtype(values.dtype, np.integer):
            raise BitedgeError(f"{what}: ternary values must be integers, got {values.dtype}")
        values = values.astype(np.int8)
    lo, hi = int(values.min()), int(values.max())
    if lo < -1 or hi > 1:
        raise BitedgeError(f"{what}: ternary values must be in {{-1, 0, 1}}, found {lo if lo < -1 else hi}")
    return values


def pad_to(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Zero-pad a [N, K] int8 matrix to [rows, cols] (a no-op copy-free view when nothing to pad)."""
    n, k = values.shape
    if (n, k) == (rows, cols):
        return values
    out = np.zeros((rows, cols), dtype=np.int8)
    out[:n, :k] = values
    return out
