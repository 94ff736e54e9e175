"""Packed layouts of ternary matrices (docs/format.md), the single source of truth for the C kernels.

``PACKINGS[name]`` is a Packing with ``pack(values int8 [N, K]) -> uint8 [rows, bytes]``,
``unpack(packed, N, K) -> int8 [N, K]``, ``packed_shape(N, K)``, ``nbytes(N, K)`` and ``bits_per_weight(N, K)``.
"""

from __future__ import annotations

from bitedge.formats.packing._base import Packing
from bitedge.formats.packing.i2s import I2S
from bitedge.formats.packing.tl1 import TL1
from bitedge.formats.packing.tl2 import TL2
from bitedge.formats.packing.tq2 import TQ2
from bitedge.errors import BitedgeError

PACKINGS: dict[str, Packing] = {p.name: p for p in (I2S(), TL1(), TL2(), TQ2())}


def get_packing(name: str) -> Packing:
    try:
        return PACKINGS[str(name).lower()]
    except KeyError:
        raise BitedgeError(f"unknown weight packing {name!r} (choose from {', '.join(PACKINGS)})") from None


def layout_constants() -> dict[str, int]:
    """Block sizes, bytes per block and tile rows of every layout, for rendering bitedge_layouts.h."""
    constants: dict[str, int] = {}
    for packing in PACKINGS.values():
        constants.update(packing.c_constants())
    return constants


def c_layouts() -> list[dict]:
    """Every packing's geometry (Packing.c_layout), in the order of the C enum be_packing (PACKINGS' order)."""
    return [p.c_layout() for p in PACKINGS.values()]


__all__ = ["PACKINGS", "Packing", "c_layouts", "get_packing", "layout_constants"]
