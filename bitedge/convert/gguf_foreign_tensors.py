"""The tensors of GGUF files written by other tools (llama.cpp, bitnet.cpp): the tensor table, including the type
ids of bitnet.cpp's ggml fork that upstream gguf does not know, and the decoding of each stored ternary matrix into
a Ternary. The layouts and where they were verified: bitedge.convert.gguf_foreign's docstring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quants

from bitedge.errors import BitedgeError
from bitedge.formats.ternary import ternary_distance
from bitedge.gguf_read import open_gguf
from bitedge.model import Ternary

# ggml type ids of bitnet.cpp's ggml fork that upstream gguf does not know (36-38) or reuses (39 = MXFP4 upstream)
I2_S = 36
FORK_TYPE_NAMES = {36: "I2_S", 37: "I8_S", 38: "TL1", 39: "TL2"}
IK_TYPE_NAMES = {134: "IQ1_BN", 135: "IQ2_BN", 335: "IQ2_BN_R4"}  # ik_llama.cpp's BitNet types (named in errors only)
I2S_TAIL_BYTES = 32  # ggml_nbytes(I2_S) = n / 4 + 32: the f32 scale, then padding
I2S_LAYOUTS = {"x86": (128, 32), "arm": (64, 16)}  # values per block, bytes per block

FLOAT_TYPES = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)
TERNARY_QUANT_TYPES = (GGMLQuantizationType.TQ1_0, GGMLQuantizationType.TQ2_0)


# ---------------------------------------------------------------------------------------------- reading GGUF


@dataclass
class GGUFTensor:
    """One entry of a GGUF tensor table (shape in numpy order: rows first)."""

    name: str
    type_id: int
    type_name: str
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int
    data_offset: int
    data: np.ndarray  # memory-mapped: typed for F32/F16/I8, raw uint8 bytes otherwise


GGML_TYPE_IDS = {int(t) for t in GGMLQuantizationType}
TYPED_VIEWS = {
    int(GGMLQuantizationType.F32): np.float32,
    int(GGMLQuantizationType.F16): np.float16,
    int(GGMLQuantizationType.I8): np.int8,
}


def type_name(type_id: int) -> str:
    if type_id in FORK_TYPE_NAMES and type_id not in GGML_TYPE_IDS:
        return FORK_TYPE_NAMES[type_id]
    if type_id in GGML_TYPE_IDS:
        return GGMLQuantizationType(type_id).name
    return IK_TYPE_NAMES.get(type_id, f"type{type_id}")


def type_nbytes(type_id: int, n_elements: int) -> int | None:
    """Bytes of a tensor of this type, or None when the type's size is not known here."""
    if type_id in (I2_S, 38):  # bitnet.cpp's ggml_nbytes: I2_S and TL1 are n / 4 + 32
        return n_elements // 4 + I2S_TAIL_BYTES
    if type_id in GGML_TYPE_IDS:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
        return n_elements * size // block
    return None


@dataclass
class ForeignFile:
    """A GGUF file's header: keys and a tensor table that includes types upstream gguf does not know."""

    path: str
    version: int
    alignment: int
    size: int
    kv: dict[str, object]
    tensors: list[GGUFTensor]


def tensor_table(path: str, size: int, raw_entries) -> list[GGUFTensor]:
    """GGUFTensor rows from (name, type_id, shape, n_elements, offset, read(offset, dtype, count)) entries."""
    entries = list(raw_entries)
    starts = sorted({e[4] for e in entries} | {size})
    tensors = []
    for name, type_id, shape, n_elements, offset, read in entries:
        if offset > size:
            raise BitedgeError(f"{path}: truncated: tensor {name} starts at byte {offset}, the file has {size} bytes")
        n_bytes = type_nbytes(type_id, n_elements)
        gap = next(s for s in starts if s > offset) - offset if offset < size else 0
        name_of_type = type_name(type_id)
        if n_bytes is None:  # unknown size: up to the next tensor (or the end of the file)
            n_bytes = gap
        elif type_id == 39 and n_bytes > gap:  # does not fit as upstream's MXFP4: bitnet.cpp's TL2 (same id)
            n_bytes, name_of_type = gap, "TL2"
        if offset + n_bytes > size:
            raise BitedgeError(f"{path}: truncated: tensor {name} ends at byte {offset + n_bytes}, the file has {size} bytes")
        view = TYPED_VIEWS.get(type_id)
        data = read(offset, view, n_elements).reshape(shape) if view is not None else read(offset, np.uint8, n_bytes)
        tensors.append(GGUFTensor(name, type_id, name_of_type, shape, n_elements, n_bytes, offset, data))
    return tensors


def open_gguf_any(path) -> ForeignFile:
    """Open any GGUF file (upstream, bitnet.cpp or bitedge), with every way it can be bad as one BitedgeError.

    The header is parsed by bitedge.gguf_read's parser (gguf's GGUFReader needs ~45 s for a 128k-token
    vocabulary with its merges; this takes ~1 s); tests/test_gguf_foreign.py checks it against a GGUFReader.
    """
    path = os.fspath(path)
    g = open_gguf(path)

    def read(offset: int, dtype, count: int) -> np.ndarray:
        return np.frombuffer(g.map, dtype=dtype, count=count, offset=offset)

    entries = (
        (t.name, int(t.ggml_type), tuple(t.shape), int(t.n_elements), int(t.offset), read) for t in g.tensors
    )
    return ForeignFile(path, int(g.version), int(g.alignment), int(g.size), dict(g.kv), tensor_table(path, g.size, entries))


# ---------------------------------------------------------------------------------------------- decoding tensors


def dequantize_float(t: GGUFTensor) -> np.ndarray:
    """A float tensor of any type gguf.quants can decode, as float32 in numpy shape."""
    if t.type_id == GGMLQuantizationType.F32:
        return np.array(t.data, dtype=np.float32)
    if t.type_id == GGMLQuantizationType.F16:
        return t.data.astype(np.float32)
    if t.type_id not in GGML_TYPE_IDS:
        raise BitedgeError(f"tensor {t.name}: unsupported type {t.type_name} (id {t.type_id}) for a float tensor")
    qtype = GGMLQuantizationType(t.type_id)
    block, size = GGML_QUANT_SIZES[qtype]
    if t.shape[-1] % block:
        raise BitedgeError(f"tensor {t.name}: rows of {t.shape[-1]} are not a multiple of the {qtype.name} block {block}")
    try:
        raw = np.asarray(t.data).reshape(*t.shape[:-1], t.shape[-1] // block * size)
        return quants.dequantize(raw, qtype).astype(np.float32, copy=False).reshape(t.shape)
    except NotImplementedError:
        raise BitedgeError(f"tensor {t.name}: cannot decode type {qtype.name}") from None


def unpack_i2s(t: GGUFTensor, layout: str = "x86") -> Ternary:
    """bitnet.cpp's I2_S tensor -> Ternary (see the module docstring for the layout)."""
    if len(t.shape) != 2:
        raise BitedgeError(f"tensor {t.name}: an I2_S tensor must be 2-D, got shape {t.shape}")
    block, block_bytes = I2S_LAYOUTS[layout]
    n = t.n_elements
    if n % block:
        raise BitedgeError(f"tensor {t.name}: {n} weights are not a whole number of I2_S blocks of {block}")
    raw = np.asarray(t.data, dtype=np.uint8)
    if raw.size < n // 4 + 4:
        raise BitedgeError(f"tensor {t.name}: I2_S data has {raw.size} bytes, expected {n // 4 + I2S_TAIL_BYTES}")
    shifts = (6 - 2 * np.arange(4, dtype=np.uint8)).reshape(1, 4, 1)
    packed = raw[: n // 4].reshape(-1, 1, block_bytes)
    codes = (packed >> shifts) & np.uint8(3)  # [block, quarter, byte]: value quarter*block_bytes + byte
    if (codes == 3).any():
        raise BitedgeError(f"tensor {t.name}: I2_S data holds the invalid 2-bit code 3 (not an I2_S tensor, or a different layout)")
    values = (codes.reshape(t.shape).view(np.int8) - np.int8(1)).astype(np.int8)
    scale = float(raw[n // 4 : n // 4 + 4].view("<f4")[0])
    return checked_ternary(t.name, values, scale)


def ternary_from_floats(name: str, w: np.ndarray, what: str) -> Ternary:
    """Float values that must be T * c with one magnitude c: exact, or a BitedgeError saying how far off."""
    a = np.abs(w)
    c = a.max(initial=0.0)
    if np.all((a == c) | (a == 0)):  # one pass; np.unique (a sort) only on the error path
        return checked_ternary(name, np.sign(w).astype(np.int8), float(c) if c else 1.0)
    magnitudes = np.unique(a)
    magnitudes = magnitudes[magnitudes != 0]
    if what.startswith("TQ"):
        raise BitedgeError(
            f"tensor {name}: its {what} blocks have {len(magnitudes)} different scales "
            f"({float(magnitudes.min()):.6g} .. {float(magnitudes.max()):.6g}); bitedge needs one scale per tensor"
        )
    d = ternary_distance(w)
    raise BitedgeError(
        f"tensor {name}: {what} values are not ternary times one scale ({d.distinct_abs} distinct |values|, "
        f"max relative error {d.max_rel_error:.3g} of the best ternary fit)"
    )


def checked_ternary(name: str, values: np.ndarray, scale: float) -> Ternary:
    if not np.isfinite(scale):
        raise BitedgeError(f"tensor {name}: scale is {scale}")
    if scale == 0:  # an all-zero tensor (or a zero scale): W_eff is zero either way
        return Ternary(np.zeros_like(values), 1.0)
    if scale < 0:
        return Ternary(-values, -scale)
    return Ternary(values, scale)


def check_ternary_type(t: GGUFTensor) -> None:
    """Refuse, naming the tensor and its type, a ternary matrix stored in a type we cannot decode."""
    if t.type_id == I2_S or t.type_id in FLOAT_TYPES or t.type_id in TERNARY_QUANT_TYPES:
        return
    if t.type_name in ("I8_S", "TL1", "TL2"):
        raise BitedgeError(
            f"tensor {t.name}: unsupported type {t.type_name} (bitnet.cpp type id {t.type_id}; "
            "its layout depends on bitnet.cpp's generated kernels): re-quantize the model to I2_S"
        )
    what = "MXFP4 (id 39; TL2 in bitnet.cpp's fork)" if t.type_id == 39 else f"{t.type_name} (id {t.type_id})"
    raise BitedgeError(
        f"tensor {t.name}: unsupported type {what} for a ternary matrix (supported: F32, F16, BF16, TQ1_0, TQ2_0, I2_S)"
    )


def decode_ternary(t: GGUFTensor, i2s_layout: str) -> Ternary:
    check_ternary_type(t)
    if t.type_id == I2_S:
        return unpack_i2s(t, i2s_layout)
    return ternary_from_floats(t.name, dequantize_float(t), t.type_name)


def unpermute_rows(values: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's LlamaModel.permute (interleaved-RoPE row order) to Hugging Face's half-split order.

    permute: w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2); this is its inverse.
    """
    rows = values.shape[0]
    return values.reshape(n_head, rows // n_head // 2, 2, *values.shape[1:]).swapaxes(1, 2).reshape(values.shape)
