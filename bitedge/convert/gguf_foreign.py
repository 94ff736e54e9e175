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
  39 for MXFP4), so gguf's GGUFReader refuses such files.  ``open_gguf_any`` (gguf_foreign_tensors) tables them on
  bitedge.gguf_read's fast header parser.  Type 39 data too small
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

import numpy as np

from bitedge.convert.gguf_foreign_tensors import (
    GGML_TYPE_IDS,
    I2S_LAYOUTS,
    GGUFTensor,
    check_ternary_type,
    checked_ternary,
    decode_ternary,
    dequantize_float,
    open_gguf_any,
    unpermute_rows,
)
from bitedge.errors import BitedgeError
from bitedge.formats import gguf_keys as K
from bitedge.gguf_read import f32_value, read_model, tokenizer_from_kv
from bitedge.model import TOKEN_NORMAL, ModelConfig, ModelSource, Ternary, TokenizerData, is_ternary, sha256_file, tensor_role

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


def tokenizer_from_keys(kv: dict) -> TokenizerData | None:
    """llama.cpp's tokenizer keys are bitedge's (bitedge.gguf_read.tokenizer_from_kv); a foreign file may have
    none ("no_vocab") and may leave out the token types (all normal then)."""
    model, tokens = kv.get(K.TOKENIZER_MODEL), kv.get(K.TOKENS)
    if not model or model == "no_vocab" or not tokens:
        return None
    if not kv.get(K.TOKEN_TYPE):
        kv = {**kv, K.TOKEN_TYPE: [TOKEN_NORMAL] * len(tokens)}
    return tokenizer_from_kv(kv)


# ---------------------------------------------------------------------------------------------- entry point


def read_foreign(path, *, i2s_layout: str = "x86", hash_file: bool = True) -> ModelSource:
    """A lazy ModelSource for a llama.cpp or bitnet.cpp GGUF file (see the module docstring for what is read)."""
    if i2s_layout not in I2S_LAYOUTS:
        raise BitedgeError(f"unknown I2_S layout {i2s_layout!r} (choose from {', '.join(I2S_LAYOUTS)})")
    path = os.fspath(path)
    reader = open_gguf_any(path)
    kv = reader.kv
    if K.FORMAT_VERSION_KEY in kv:  # our own format: its reader knows the packed layouts
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
