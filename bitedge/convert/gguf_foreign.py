"""Import GGUF files written by other tools (llama.cpp, bitnet.cpp) as a ModelSource.

What users already have, and how each stores a ternary matrix W_eff = T * s:

- llama.cpp's ``convert_hf_to_gguf.py`` (``BitnetModel``, general.architecture ``bitnet``): F32/F16/BF16 tensors
  holding T * s.  Its ``weight_quant`` computes ``(W * iscale).round().clamp(-1, 1) / iscale`` with
  iscale = 1 / mean|W| (or, for the packed 2B-4T checkpoint, ``unpacked * weight_scale``), so every nonzero value
  of a tensor has the same magnitude s: we recover T = sign(W), s = |W| and check that this is exact.
  Upstream's graph (src/models/bitnet.cpp, llama_model_bitnet) requires ``attn_sub_norm`` / ``ffn_sub_norm``,
  takes the FFN activation from ``bitnet.hidden_activation`` (default SiLU, the 1bitLLM 3B models), never reads
  ``output.weight`` (logits use token_embd) and multiplies each ternary matmul by an optional one-element tensor
  ``blk.N.<role>.scale`` (``wq_s`` ... ``ffn_down_s``, TENSOR_NOT_REQUIRED): W_eff = W * scale.  RoPE for
  LLM_ARCH_BITNET is NEOX (half-split), as in transformers, so Q/K rows are in Hugging Face order.
- ``llama-quantize`` / ``--outtype tq1_0|tq2_0``: ggml TQ1_0 / TQ2_0 blocks of 256 with an f16 scale each
  (d = max|block|).  All blocks of a BitNet tensor carry the same d; a tensor whose blocks disagree is not
  "ternary times one scale" and is refused with the number of distinct block scales.
- bitnet.cpp (microsoft/BitNet): ``utils/convert-helper-bitnet.py`` runs ``preprocess-huggingface-bitnet.py``
  (``(w * s).round().clamp(-1, 1) / s`` with s = 1 / mean|w|), ``convert-ms-to-gguf-bitnet.py`` (ARCH =
  MODEL_ARCH.BITNET_25, i.e. ``bitnet-25``; F32; its Q/K ``permute`` calls are commented out, so rows stay in
  Hugging Face order) and ``llama-quantize ... I2_S``.  The official ``ggml-model-i2_s.gguf`` of
  bitnet-b1.58-2B-4T is that file: relu2 FFN, GQA, sub-norms, tied embeddings.  Newer BitNet converters write
  ``bitnet-b1.58`` (MODEL_ARCH.BITNET_B158), the same model family.
- I2_S is ggml type id 36 in bitnet.cpp's ggml fork (I8_S 37, TL1 38, TL2 39; upstream has no 36-38 and uses
  39 for MXFP4), so gguf's GGUFReader refuses such files.  ``open_gguf_any`` tables them (on bitedge.gguf_read's
  fast header parser); ``ForeignGGUFReader`` is the same table as a GGUFReader subclass.  Type 39 data too small
  for MXFP4 is taken to be the fork's TL2.
  Layout, verified in BitNet's src/ggml-bitnet-mad.cpp ``quantize_i2_s`` (x86 / ``QK_I2_S 128``): codes
  q = T + 1 over the tensor flattened row-major; block i of 128 values is bytes [32 i, 32 i + 32); value j of
  the block goes to byte j % 32 at bit shift 6 - 2 (j / 32).  After the n / 4 code bytes comes the f32 scale
  ``i2_scale = max|W|`` (then padding: ggml_nbytes for I2_S is ``n / 4 + 32``).  W_eff = (q - 1) * i2_scale.
  The ARM build of the same function uses blocks of 64 in 16 bytes (shift 6 - 2 (j / 16)); a file quantized on
  ARM needs ``i2s_layout="arm"`` (the file does not record which).

Also accepted: general.architecture ``llama`` files whose seven linear layers are ternary (e.g. the TQ2_0
Llama3-8B-1.58 conversions): SiLU, no sub-norms, and llama.cpp's converter permutes Q/K rows for its
interleaved RoPE, which we undo to get the canonical (Hugging Face, NeoX RoPE) order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType, quants

from bitedge.formats.gguf_keys import FORMAT_VERSION_KEY
from bitedge.formats.ternary import ternary_distance
from bitedge.gguf_read import open_gguf, read_model
from bitedge.errors import BitedgeError
from bitedge.model import (
    TOKEN_NORMAL,
    ModelConfig,
    ModelSource,
    Ternary,
    TokenizerData,
    is_ternary,
    sha256_file,
    tensor_role,
)

# ggml type ids of bitnet.cpp's ggml fork that upstream gguf does not know (36-38) or reuses (39 = MXFP4 upstream)
I2_S = 36
FORK_TYPE_NAMES = {36: "I2_S", 37: "I8_S", 38: "TL1", 39: "TL2"}
IK_TYPE_NAMES = {134: "IQ1_BN", 135: "IQ2_BN", 335: "IQ2_BN_R4"}  # ik_llama.cpp's BitNet types (named in errors only)
I2S_TAIL_BYTES = 32  # ggml_nbytes(I2_S) = n / 4 + 32: the f32 scale, then padding
I2S_LAYOUTS = {"x86": (128, 32), "arm": (64, 16)}  # values per block, bytes per block

FLOAT_TYPES = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)
TERNARY_QUANT_TYPES = (GGMLQuantizationType.TQ1_0, GGMLQuantizationType.TQ2_0)

# FFN activation and Q/K row order per architecture: (default ffn_act, q/k rows permuted by the converter)
ARCHITECTURES = {
    "bitnet": ("silu", False),  # upstream llama.cpp; bitnet.hidden_activation may say relu2
    "bitnet-25": ("relu2", False),  # bitnet.cpp, official 2B-4T i2_s file
    "bitnet-b1.58": ("relu2", False),  # bitnet.cpp HEAD converter
    "llama": ("silu", True),  # ternary Llama conversions (TQ1_0/TQ2_0/F16)
}
ACTIVATION_NAMES = {
    "relu2": "relu2", "relu_sqr": "relu2", "relu_squared": "relu2", "squared_relu": "relu2", "relu-sqr": "relu2",
    "silu": "silu", "swiglu": "silu", "swish": "silu",
}
DIALECT = {"bitnet": "llama.cpp", "llama": "llama.cpp", "bitnet-25": "bitnet.cpp", "bitnet-b1.58": "bitnet.cpp"}


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


class ForeignGGUFReader(GGUFReader):
    """GGUFReader that also tables tensors of types the gguf package does not know (bitnet.cpp's I2_S = 36).

    ``tensors`` holds GGUFTensor entries.  A tensor of a type whose size is unknown gets the bytes up to the next
    tensor's data (or the end of the file), so the table is complete even if such a tensor cannot be decoded.
    """

    def _build_tensors(self, start_offs: int, fields) -> None:
        entries = []
        seen = set()
        for field in fields:
            _name_len, name_data, _n_dims, dims, raw_dtype, offset_tensor = field.parts
            name = bytes(name_data).decode("utf-8", errors="replace")
            if name in seen:
                raise ValueError(f"duplicated tensor name {name}")
            seen.add(name)
            shape = tuple(int(d) for d in reversed(dims.tolist()))
            n_elements = int(np.prod(shape, dtype=np.int64)) if shape else 1
            offset = int(start_offs + int(offset_tensor[0]))
            entries.append((name, int(raw_dtype[0]), shape, n_elements, offset, self._get))
        self.tensors = tensor_table(os.fspath(self.data.filename), int(self.data.shape[0]), entries)


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
    vocabulary with its merges; this takes ~1 s); ``open_with_gguf_reader`` is the GGUFReader route.
    """
    path = os.fspath(path)
    g = open_gguf(path)

    def read(offset: int, dtype, count: int) -> np.ndarray:
        return np.frombuffer(g.map, dtype=dtype, count=count, offset=offset)

    entries = (
        (t.name, int(t.ggml_type), tuple(t.shape), int(t.n_elements), int(t.offset), read) for t in g.tensors
    )
    return ForeignFile(path, int(g.version), int(g.alignment), int(g.size), dict(g.kv), tensor_table(path, g.size, entries))


def open_with_gguf_reader(path) -> ForeignFile:
    """The same table through gguf's GGUFReader (ForeignGGUFReader): slow on big vocabularies, used to cross-check."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BitedgeError(f"{path}: no such file")
    try:
        reader = ForeignGGUFReader(path, "r")
    except BitedgeError:
        raise
    except Exception as e:  # ValueError, IndexError, OverflowError, UnicodeDecodeError, MemoryError on damaged files
        detail = str(e).splitlines()[0] if str(e) else ""
        raise BitedgeError(f"{path}: corrupt or truncated GGUF file ({type(e).__name__}: {detail})") from None
    version = int(reader.fields["GGUF.version"].parts[-1][0])
    return ForeignFile(path, version, int(reader.alignment), int(reader.data.shape[0]), read_keys(reader), reader.tensors)


def field_value(field):
    """A GGUFReader key's value as a python value (str, int, float, bool or list)."""
    main = field.types[0]
    if main == GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        if sub == GGUFValueType.ARRAY:
            return None  # nested arrays: nothing BitNet needs
        return [field.parts[i][0].item() for i in field.data]
    if main == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    value = field.parts[field.data[0]][0]
    if main == GGUFValueType.BOOL:
        return bool(value)
    return value.item()


def read_keys(reader: GGUFReader) -> dict[str, object]:
    return {name: field_value(f) for name, f in reader.fields.items() if not name.startswith("GGUF.")}


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


# ---------------------------------------------------------------------------------------------- config and tokenizer


def config_from_keys(kv: dict, tensors: dict[str, GGUFTensor], path: str) -> ModelConfig:
    arch = kv.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise BitedgeError(
            f"{path}: unsupported architecture {arch!r} (supported: {', '.join(ARCHITECTURES)})"
        )
    default_act, _ = ARCHITECTURES[arch]
    p = f"{arch}."

    def need(key: str):
        if p + key not in kv:
            raise BitedgeError(f"{path}: missing key {p + key}")
        return kv[p + key]

    def one(key: str, value):
        if isinstance(value, list):  # per-layer arrays (a few archs): BitNet needs them uniform
            if not value or len(set(value)) != 1:
                raise BitedgeError(f"{path}: {p + key} differs between layers, not supported")
            value = value[0]
        return int(value)

    hidden = one("embedding_length", need("embedding_length"))
    heads = one("attention.head_count", need("attention.head_count"))
    kv_heads = one("attention.head_count_kv", kv.get(p + "attention.head_count_kv", heads))
    head_dim = kv.get(p + "attention.key_length") or kv.get(p + "rope.dimension_count") or hidden // heads
    if "token_embd.weight" not in tensors:
        raise BitedgeError(f"{path}: missing tensor token_embd.weight")
    vocab = kv.get(p + "vocab_size") or tensors["token_embd.weight"].shape[0]
    act = kv.get(p + "hidden_activation", kv.get(p + "hidden_act", default_act))
    if str(act).lower() not in ACTIVATION_NAMES:
        raise BitedgeError(f"{path}: unsupported FFN activation {act!r} in {p}hidden_activation (supported: relu2, silu)")
    scaling = str(kv.get(p + "rope.scaling.type", "none")).lower()
    factor = float(kv.get(p + "rope.scaling.factor", 1.0) or 1.0)
    if scaling not in ("none", "linear") or (scaling == "linear" and factor != 1.0) or "rope_freqs.weight" in tensors:
        raise BitedgeError(f"{path}: RoPE scaling ({scaling}, factor {factor}) is not supported, only plain NeoX RoPE")
    return ModelConfig(
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=one("feed_forward_length", need("feed_forward_length")),
        num_layers=one("block_count", need("block_count")),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=int(head_dim),
        rms_norm_eps=f32_value(kv.get(p + "attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=f32_value(kv.get(p + "rope.freq_base", 10000.0)),
        context_length=int(kv.get(p + "context_length", 2048)),
        tie_embeddings="output.weight" not in tensors,
        ffn_act=ACTIVATION_NAMES[str(act).lower()],
        sub_norms="blk.0.attn_sub_norm.weight" in tensors,
        name=str(kv.get("general.name") or arch),
    ).validate()


def f32_value(x) -> float:
    """An f32 key as the shortest decimal that rounds to it (1e-5 stays 1e-5), as bitedge.gguf_read does."""
    return float(str(np.float32(x)))


def tokenizer_from_keys(kv: dict) -> TokenizerData | None:
    model = kv.get("tokenizer.ggml.model")
    tokens = kv.get("tokenizer.ggml.tokens")
    if not model or model == "no_vocab" or not tokens:
        return None
    types = kv.get("tokenizer.ggml.token_type") or [TOKEN_NORMAL] * len(tokens)

    def token_id(key: str) -> int | None:
        value = kv.get(f"tokenizer.ggml.{key}_token_id")
        return None if value is None else int(value)

    return TokenizerData(
        model=str(model),
        tokens=list(tokens),
        token_types=[int(x) for x in types],
        scores=None if kv.get("tokenizer.ggml.scores") is None else [float(s) for s in kv["tokenizer.ggml.scores"]],
        merges=kv.get("tokenizer.ggml.merges"),
        pre=kv.get("tokenizer.ggml.pre"),
        bos_id=token_id("bos"),
        eos_id=token_id("eos"),
        unk_id=token_id("unknown"),
        pad_id=token_id("padding"),
        add_bos=bool(kv.get("tokenizer.ggml.add_bos_token", False)),
        add_eos=bool(kv.get("tokenizer.ggml.add_eos_token", False)),
        add_space_prefix=kv.get("tokenizer.ggml.add_space_prefix"),
        chat_template=kv.get("tokenizer.chat_template"),
    )


# ---------------------------------------------------------------------------------------------- entry point


def read_foreign(path, *, i2s_layout: str = "x86", hash_file: bool = True) -> ModelSource:
    """A lazy ModelSource for a llama.cpp or bitnet.cpp GGUF file (see the module docstring for what is read)."""
    if i2s_layout not in I2S_LAYOUTS:
        raise BitedgeError(f"unknown I2_S layout {i2s_layout!r} (choose from {', '.join(I2S_LAYOUTS)})")
    path = os.fspath(path)
    reader = open_gguf_any(path)
    kv = reader.kv
    if FORMAT_VERSION_KEY in kv:  # our own format: its reader knows the packed layouts
        return read_model(path)
    tensors = {t.name: t for t in reader.tensors}
    config = config_from_keys(kv, tensors, path)
    arch = str(kv["general.architecture"])
    permuted_qk = ARCHITECTURES[arch][1]

    want = config.tensor_shapes()
    scales = {n for n in tensors if n.endswith(".scale") and is_ternary(n.removesuffix(".scale") + ".weight")}
    extra = [n for n in tensors if n not in want and n not in scales]
    if extra:
        raise BitedgeError(f"{path}: unexpected tensor {extra[0]} for a {arch} model")
    loaders: dict[str, Callable] = {}
    for name, shape in want.items():
        t = tensors.get(name)
        if t is None:
            raise BitedgeError(f"{path}: missing tensor {name}")
        if tuple(t.shape) != tuple(shape):
            raise BitedgeError(f"{path}: tensor {name} has shape {t.shape}, expected {shape} from the model keys")
        if is_ternary(name):
            check_ternary_type(t)
            heads = 0
            if permuted_qk and tensor_role(name) in ("attn_q", "attn_k"):
                heads = config.num_heads if tensor_role(name) == "attn_q" else config.num_kv_heads
            loaders[name] = ternary_loader(t, tensors.get(name.removesuffix(".weight") + ".scale"), heads, i2s_layout)
        else:
            if t.type_id not in GGML_TYPE_IDS:
                raise BitedgeError(f"{path}: tensor {name}: unsupported type {t.type_name} (id {t.type_id})")
            loaders[name] = float_loader(t)

    if arch == "llama":  # most llama files are not ternary at all: say so now, not half-way through a conversion
        loaders["blk.0.attn_q.weight"]()
    type_counts: dict[str, int] = {}
    for t in reader.tensors:
        type_counts[t.type_name] = type_counts.get(t.type_name, 0) + 1
    notes = []
    if arch == "bitnet" and not config.tie_embeddings:
        notes.append("output.weight is used for the logits; upstream llama.cpp ignores it for arch bitnet (uses token_embd)")
    if scales:
        notes.append(f"{len(scales)} llama.cpp .scale tensors folded into the ternary scales")
    if type_counts.get("I2_S"):
        notes.append(f"I2_S unpacked with bitnet.cpp's {i2s_layout} layout (the file does not record which)")
    return ModelSource(
        config=config,
        tensors=loaders,
        tokenizer=tokenizer_from_keys(kv),
        source=path,
        source_sha256=sha256_file(path) if hash_file else None,
        metadata={
            "gguf.architecture": arch,
            "gguf.dialect": DIALECT[arch],
            "gguf.tensor_types": type_counts,
            "gguf.i2s_layout": i2s_layout if type_counts.get("I2_S") else None,
            "gguf.name": kv.get("general.name"),
            "gguf.notes": notes,
        },
    )


def ternary_loader(t: GGUFTensor, scale_tensor: GGUFTensor | None, heads: int, i2s_layout: str):
    def load() -> Ternary:
        ternary = decode_ternary(t, i2s_layout)
        values, scale = ternary.values, ternary.scale
        if heads:
            values = unpermute_rows(values, heads)
        if scale_tensor is not None:  # llama.cpp's optional per-matmul scale: W_eff = W * scale
            s = dequantize_float(scale_tensor).reshape(-1)
            if s.size != 1:
                raise BitedgeError(f"tensor {scale_tensor.name}: expected one value, got {s.size}")
            scale = float(np.float32(scale) * np.float32(s[0]))
        return checked_ternary(t.name, values, scale)

    return load


def float_loader(t: GGUFTensor):
    return lambda: dequantize_float(t)
