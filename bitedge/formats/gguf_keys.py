"""bitedge's GGUF metadata: every key bitedge writes or reads in its own files (docs/format.md), defined once.

The Python writer (convert/gguf_writer.py) and reader (gguf_read.py) use these names; bitedge.render renders them
(``c_defines``) into bitedge_gguf_keys.h, which the C runtime's model loader (model_config.c, model_vocab.c) uses
instead of string literals. A key renamed here is renamed in the writer, the reader and the runtime at once.
"""

from __future__ import annotations

ARCH = "bitnet"  # general.architecture, and the prefix of the model's dimensions
FORMAT_VERSION = 1  # bitedge.format_version this bitedge writes (and the newest it reads)
ALIGNMENT = 32  # general.alignment: the runtime's SIMD loads and float pointers rely on it
QUANTIZATION_VERSION = 2

# general.*
ARCHITECTURE = "general.architecture"
NAME = "general.name"
ALIGNMENT_KEY = "general.alignment"
QUANTIZATION_VERSION_KEY = "general.quantization_version"

# <ARCH>.*: the model's dimensions
VOCAB_SIZE = f"{ARCH}.vocab_size"
CONTEXT_LENGTH = f"{ARCH}.context_length"
EMBEDDING_LENGTH = f"{ARCH}.embedding_length"
BLOCK_COUNT = f"{ARCH}.block_count"
FEED_FORWARD_LENGTH = f"{ARCH}.feed_forward_length"
HEAD_COUNT = f"{ARCH}.attention.head_count"
HEAD_COUNT_KV = f"{ARCH}.attention.head_count_kv"
KEY_LENGTH = f"{ARCH}.attention.key_length"
VALUE_LENGTH = f"{ARCH}.attention.value_length"
RMS_EPS = f"{ARCH}.attention.layer_norm_rms_epsilon"
ROPE_FREQ_BASE = f"{ARCH}.rope.freq_base"
ROPE_DIMENSION_COUNT = f"{ARCH}.rope.dimension_count"

# bitedge.*: what llama.cpp's keys do not say
FORMAT_VERSION_KEY = "bitedge.format_version"
WEIGHT_PACKING = "bitedge.weight_packing"
FFN_ACTIVATION = "bitedge.ffn_activation"
SUB_NORMS = "bitedge.sub_norms"
TIE_EMBEDDINGS = "bitedge.tie_embeddings"
EMBED_TYPE = "bitedge.embed_type"
SOURCE = "bitedge.source"
SOURCE_SHA256 = "bitedge.source_sha256"
CONVERTER_VERSION = "bitedge.converter_version"

# tokenizer.*: llama.cpp's names
TOKENIZER_MODEL = "tokenizer.ggml.model"
TOKENIZER_PRE = "tokenizer.ggml.pre"
TOKENS = "tokenizer.ggml.tokens"
TOKEN_TYPE = "tokenizer.ggml.token_type"
SCORES = "tokenizer.ggml.scores"
MERGES = "tokenizer.ggml.merges"
BOS_ID = "tokenizer.ggml.bos_token_id"
EOS_ID = "tokenizer.ggml.eos_token_id"
UNKNOWN_ID = "tokenizer.ggml.unknown_token_id"
PADDING_ID = "tokenizer.ggml.padding_token_id"
ADD_BOS = "tokenizer.ggml.add_bos_token"
ADD_EOS = "tokenizer.ggml.add_eos_token"
ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix"
CHAT_TEMPLATE = "tokenizer.chat_template"

# the keys under their C names (BE_KEY_<name>), in this order in bitedge_gguf_keys.h
_C_KEYS = (
    "ARCHITECTURE", "NAME", "VOCAB_SIZE", "CONTEXT_LENGTH", "EMBEDDING_LENGTH", "BLOCK_COUNT", "FEED_FORWARD_LENGTH",
    "HEAD_COUNT", "HEAD_COUNT_KV", "KEY_LENGTH", "VALUE_LENGTH", "RMS_EPS", "ROPE_FREQ_BASE", "ROPE_DIMENSION_COUNT",
    "FORMAT_VERSION_KEY", "WEIGHT_PACKING", "FFN_ACTIVATION", "SUB_NORMS", "TIE_EMBEDDINGS", "EMBED_TYPE",
    "TOKENIZER_MODEL", "TOKENIZER_PRE", "TOKENS", "TOKEN_TYPE", "SCORES", "MERGES", "BOS_ID", "EOS_ID", "UNKNOWN_ID",
    "PADDING_ID", "ADD_BOS", "ADD_EOS", "ADD_SPACE_PREFIX", "CHAT_TEMPLATE",
)


def c_defines() -> dict[str, str]:
    """C macro name -> C literal, for rendering bitedge_gguf_keys.h (strings quoted as C string literals)."""
    g = globals()
    out = {"BE_GGUF_ARCH": _c_string(ARCH), "BE_GGUF_FORMAT_VERSION": str(FORMAT_VERSION),
           "BE_GGUF_ALIGNMENT": str(ALIGNMENT)}
    for name in _C_KEYS:
        out["BE_KEY_" + name.removesuffix("_KEY")] = _c_string(g[name])
    return out


def _c_string(s: str) -> str:
    if any(c in s for c in '"\\') or not s.isprintable():
        raise ValueError(f"GGUF key {s!r} needs escaping in C")
    return f'"{s}"'
