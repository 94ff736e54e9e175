"""The model description every importer yields and every writer consumes.

A model is a ModelConfig, an optional TokenizerData and an ordered mapping from canonical tensor names
(llama.cpp's GGUF names, e.g. ``blk.0.attn_q.weight``) to zero-argument loaders, so a 100B model can be
converted one tensor at a time.  A loader returns either a float32 ndarray (embeddings, norms, an untied
output matrix) or a Ternary (values in {-1, 0, 1} and one fp32 scale: W_eff = values * scale).
All shapes are numpy order (rows = out_features, cols = in_features); GGUF stores them reversed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from bitedge.errors import BitedgeError

# The seven linear layers of each block that BitNet b1.58 ternarizes; everything else stays float.
TERNARY_ROLES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
FFN_ACTIVATIONS = ("relu2", "silu")


# What bitedge-run loads (kernels/runtime/model.h BE_MAX_*): a converted file beyond these would be refused on the board.
RUNTIME_LIMITS = {"vocab_size": 1 << 22, "hidden_size": 1 << 16, "intermediate_size": 1 << 18, "num_layers": 1024,
                  "num_heads": 1024, "num_kv_heads": 1024, "head_dim": 1024, "context_length": 1 << 22}


_HF_NAMES = {"context_length": "max_position_embeddings", "num_layers": "num_hidden_layers",
             "num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads"}


def _named(key: str) -> str:
    """A config field with the config.json name a user would look for."""
    return f"{key} ({_HF_NAMES[key]})" if key in _HF_NAMES else key


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    context_length: int = 2048
    tie_embeddings: bool = True
    ffn_act: str = "relu2"  # "relu2" (2B-4T family) or "silu" (llama-style 1.58-bit checkpoints)
    sub_norms: bool = True  # attn_sub_norm / ffn_sub_norm before o_proj / down_proj
    name: str = "bitnet"

    def validate(self) -> "ModelConfig":
        for key, limit in RUNTIME_LIMITS.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise BitedgeError(f"model config: {_named(key)} must be a positive integer, got {value!r}")
            if value > limit:
                raise BitedgeError(f"model config: {_named(key)} {value} is above what bitedge-run loads ({limit})")
        if self.num_heads % self.num_kv_heads:
            raise BitedgeError(
                f"model config: num_attention_heads {self.num_heads} is not a multiple of num_key_value_heads {self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise BitedgeError(f"model config: head_dim {self.head_dim} must be even for RoPE")
        if self.ffn_act not in FFN_ACTIVATIONS:
            raise BitedgeError(f"model config: unsupported FFN activation {self.ffn_act!r} (supported: relu2, silu)")
        if not (self.rms_norm_eps > 0 and self.rope_theta > 0):
            raise BitedgeError("model config: rms_norm_eps and rope_theta must be positive")
        return self

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical tensor names in file order, with their logical numpy shapes."""
        h, f, v = self.hidden_size, self.intermediate_size, self.vocab_size
        shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (v, h)}
        for i in range(self.num_layers):
            p = f"blk.{i}."
            shapes[p + "attn_norm.weight"] = (h,)
            shapes[p + "attn_q.weight"] = (self.q_dim, h)
            shapes[p + "attn_k.weight"] = (self.kv_dim, h)
            shapes[p + "attn_v.weight"] = (self.kv_dim, h)
            if self.sub_norms:
                shapes[p + "attn_sub_norm.weight"] = (self.q_dim,)
            shapes[p + "attn_output.weight"] = (h, self.q_dim)
            shapes[p + "ffn_norm.weight"] = (h,)
            shapes[p + "ffn_gate.weight"] = (f, h)
            shapes[p + "ffn_up.weight"] = (f, h)
            if self.sub_norms:
                shapes[p + "ffn_sub_norm.weight"] = (f,)
            shapes[p + "ffn_down.weight"] = (h, f)
        shapes["output_norm.weight"] = (h,)
        if not self.tie_embeddings:
            shapes["output.weight"] = (v, h)
        return shapes

    def n_params(self) -> int:
        return sum(int(np.prod(s)) for s in self.tensor_shapes().values())


def tensor_role(name: str) -> str:
    """'blk.3.attn_q.weight' -> 'attn_q'; 'token_embd.weight' -> 'token_embd'."""
    parts = name.split(".")
    return parts[2] if parts[0] == "blk" else parts[0]


def is_ternary(name: str) -> bool:
    return name.startswith("blk.") and tensor_role(name) in TERNARY_ROLES and name.endswith(".weight")


# llama.cpp's token types (tokenizer.ggml.token_type)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class TokenizerData:
    """The tokenizer as GGUF carries it (tokenizer.ggml.*)."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    pre: str | None = None  # "llama-bpe" for the Llama-3 pre-tokenizer, "gpt2", "default"
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None


@dataclass
class Ternary:
    """A ternarized weight: W_eff = values * scale (values int8 in {-1, 0, 1}, scale fp32)."""

    values: np.ndarray
    scale: float

    def dequantize(self) -> np.ndarray:
        return self.values.astype(np.float32) * np.float32(self.scale)


TensorLoader = Callable[[], "np.ndarray | Ternary"]


@dataclass
class ModelSource:
    config: ModelConfig
    tensors: dict[str, TensorLoader]
    tokenizer: TokenizerData | None = None
    source: str = ""
    source_sha256: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)

    def check_complete(self) -> None:
        """Every tensor the config implies is present, and nothing else."""
        want = self.config.tensor_shapes()
        missing = [n for n in want if n not in self.tensors]
        if missing:
            raise BitedgeError(f"{self.source or 'model'}: missing tensor {missing[0]} ({len(missing)} missing in all)")
        extra = [n for n in self.tensors if n not in want]
        if extra:
            raise BitedgeError(f"{self.source or 'model'}: unexpected tensor {extra[0]}")

    def iter_tensors(self) -> Iterator[tuple[str, "np.ndarray | Ternary"]]:
        """Load tensors one at a time in canonical order, checking each shape."""
        for name, shape in self.config.tensor_shapes().items():
            value = self.tensors[name]()
            got = value.values.shape if isinstance(value, Ternary) else value.shape
            if tuple(got) != tuple(shape):
                raise BitedgeError(f"{self.source or 'model'}: tensor {name} has shape {tuple(got)}, expected {shape}")
            yield name, value


def sha256_file(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# The Llama-3 pre-tokenizer split (tokenizer.json's Split regex); the importer recognises it, bitedge.tokenizer and the
# C tokenizer apply it.
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
