"""Dummy BitNet b1.58 models at the sizes of the bitnet.cpp paper, for measuring conversion and kernels.

Shapes (hidden, FFN, layers, heads) come from:

- bitnet.cpp's ``utils/generate-dummy-bitnet-model.py`` (its ``model_config`` table, used for the paper's
  125M ... 100B speed tables): 125M, 350M, 3.8B, 7B, 13B, 30B, 70B, 100B.  That script writes a
  1bitLLM-style model: llama layout with sub-norms, silu FFN, vocab 32002, kv heads = heads, no lm_head (tied).
  (Its 125M really has 11 layers; kept as published.)
- 700M: 1bitLLM/bitnet_b1_58-large (hidden 1536, FFN 4096, 24 layers, 16 heads, vocab 32002, silu,
  sub-norms, untied lm_head), which bitnet.cpp ships preset kernels for.
- 1.3B: 1bitLLM/bitnet_b1_58-xl (hidden 2048, FFN 5460, 24 layers, 32 heads, vocab 32002, untied; from that
  checkpoint's config.json as published on the hub, not re-checked offline); FFN 5460 is not a multiple of
  128 or 256, so this preset also exercises padding (and TQ2_0's refusal).
- 2.4B: microsoft/bitnet-b1.58-2B-4T (hidden 2560, FFN 6912, 30 layers, 20 heads, 5 kv heads, vocab 128256,
  relu2, sub-norms, tied, rope theta 500000, context 4096).
- test: a tiny model whose every row length is a multiple of 256, so all packings and q8_0 apply.

Weights are random but deterministic per (seed, tensor name): ternary values uniform in {-1, 0, 1} with
scale ~ 1/sqrt(K), norms ~ 1, embeddings ~ N(0, 0.02).  Embeddings are Hankel matrices E[r, c] = base[r + c] over one
random sequence (a read-only strided view): rows are distinct, and a 128k-row embedding costs no memory
until a consumer copies it.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from bitedge.errors import BitedgeError
from bitedge.model import TOKEN_CONTROL, TOKEN_NORMAL, ModelConfig, ModelSource, Ternary, TokenizerData, is_ternary


def _llama_style(name, hidden, ffn, layers, heads, *, vocab=32002, tied=True) -> ModelConfig:
    """A bitnet.cpp dummy / 1bitLLM shape: silu FFN, sub-norms, multi-head attention, llama RoPE."""
    return ModelConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_layers=layers, num_heads=heads,
        num_kv_heads=heads, head_dim=hidden // heads, rms_norm_eps=1e-5, rope_theta=10000.0, context_length=2048,
        tie_embeddings=tied, ffn_act="silu", sub_norms=True, name=f"dummy-{name}",
    )


PRESETS: dict[str, ModelConfig] = {
    "test": ModelConfig(
        vocab_size=384, hidden_size=256, intermediate_size=512, num_layers=2, num_heads=4, num_kv_heads=2,
        head_dim=64, rms_norm_eps=1e-5, rope_theta=10000.0, context_length=256, tie_embeddings=True,
        ffn_act="relu2", sub_norms=True, name="dummy-test",
    ),
    "125M": _llama_style("125M", 768, 3072, 11, 12),
    "350M": _llama_style("350M", 1024, 3072, 24, 16),
    "700M": _llama_style("700M", 1536, 4096, 24, 16, tied=False),
    "1.3B": _llama_style("1.3B", 2048, 5460, 24, 32, tied=False),
    "2.4B": ModelConfig(
        vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_layers=30, num_heads=20, num_kv_heads=5,
        head_dim=128, rms_norm_eps=1e-5, rope_theta=500000.0, context_length=4096, tie_embeddings=True,
        ffn_act="relu2", sub_norms=True, name="dummy-2.4B",
    ),
    "3.8B": _llama_style("3.8B", 3840, 8192, 24, 32),
    "7B": _llama_style("7B", 4096, 12032, 32, 32),
    "13B": _llama_style("13B", 5120, 13824, 40, 40),
    "30B": _llama_style("30B", 6656, 16384, 60, 52),
    "70B": _llama_style("70B", 8192, 24576, 80, 64),
    "100B": _llama_style("100B", 8192, 45568, 72, 64),
}
ALIASES = {"2B": "2.4B", "2b-4t": "2.4B", "large": "700M", "xl": "1.3B"}


def preset_config(preset: str) -> ModelConfig:
    key = ALIASES.get(preset, preset)
    for name, config in PRESETS.items():
        if name.lower() == str(key).lower():
            return config.validate()
    raise BitedgeError(f"unknown dummy preset {preset!r} (choose from {', '.join(PRESETS)})")


# ---------------------------------------------------------------------------------------------- tensors


def tensor_rng(seed: int, name: str, part: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, tensor name, part): order of loading does not matter."""
    digest = hashlib.sha256(f"{seed}:{name}:{part}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def ternary_tensor(seed: int, name: str, shape: tuple[int, int]) -> Ternary:
    rng = tensor_rng(seed, name)
    values = rng.integers(-1, 2, size=shape, dtype=np.int8)
    scale = float(np.float32(rng.uniform(0.5, 1.5) / math.sqrt(shape[1])))
    return Ternary(values, scale)


def norm_tensor(seed: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    return (1.0 + 0.1 * tensor_rng(seed, name).standard_normal(shape)).astype(np.float32)


def embedding_tensor(seed: int, name: str, shape: tuple[int, int]) -> np.ndarray:
    """E[r, c] = base[r + c] for one random sequence ``base``: a read-only strided view (a Hankel matrix), so
    every row is distinct but a 128256 x 2560 embedding costs 0.5 MB instead of 1.3 GB."""
    rows, cols = shape
    base = (0.02 * tensor_rng(seed, name).standard_normal(rows + cols - 1, dtype=np.float32)).astype(np.float32)
    return np.lib.stride_tricks.as_strided(base, shape=(rows, cols), strides=(base.itemsize, base.itemsize), writeable=False)


def tensor_loader(seed: int, name: str, shape: tuple[int, ...]):
    if is_ternary(name):
        return lambda: ternary_tensor(seed, name, shape)
    if len(shape) == 2:
        return lambda: embedding_tensor(seed, name, shape)
    return lambda: norm_tensor(seed, name, shape)


# ---------------------------------------------------------------------------------------------- tokenizer

# A few English merges so the byte-level tokenizer is a real BPE (parts must be tokens by the time they merge).
MERGES = [
    ("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġ", "a"), ("r", "e"), ("o", "n"), ("Ġt", "he"), ("e", "r"),
    ("a", "t"), ("Ġ", "s"), ("e", "n"), ("o", "r"), ("Ġ", "w"), ("Ġ", "o"), ("i", "t"), ("e", "s"),
    ("Ġ", "c"), ("a", "n"), ("i", "s"), ("Ġ", "b"), ("a", "r"), ("Ġ", "f"), ("n", "g"), ("in", "g"),
    ("Ġ", "p"), ("a", "l"), ("Ġ", "m"), ("e", "d"), ("Ġa", "n"), ("Ġan", "d"), ("o", "u"), ("l", "e"),
]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def dummy_tokenizer(vocab_size: int) -> TokenizerData:
    """A small Llama-3-style byte-level BPE: 256 byte tokens, up to 32 merges, BOS/EOS control tokens."""
    n_merges = max(0, min(len(MERGES), vocab_size - 256 - len(SPECIALS)))
    if vocab_size < 256 + len(SPECIALS):
        raise BitedgeError(f"dummy tokenizer needs a vocab of at least {256 + len(SPECIALS)}, got {vocab_size}")
    tokens = [byte_to_unicode()[b] for b in range(256)]
    merges = []
    for a, b in MERGES[:n_merges]:
        merges.append(f"{a} {b}")
        tokens.append(a + b)
    bos = len(tokens)
    tokens += SPECIALS
    types = [TOKEN_NORMAL] * (len(tokens) - len(SPECIALS)) + [TOKEN_CONTROL] * len(SPECIALS)
    return TokenizerData(
        model="gpt2", tokens=tokens, token_types=types, merges=merges, pre="llama-bpe",
        bos_id=bos, eos_id=bos + 1, add_bos=True, add_eos=False,
    )


def dummy_source(preset: str, seed: int = 0) -> ModelSource:
    """A lazy ModelSource of random ternary weights with a preset's shape (nothing is generated until loaded)."""
    config = preset_config(preset)
    tensors = {name: tensor_loader(seed, name, shape) for name, shape in config.tensor_shapes().items()}
    return ModelSource(
        config=config,
        tensors=tensors,
        tokenizer=dummy_tokenizer(config.vocab_size),
        source=f"dummy:{preset}:seed={seed}",
        # the weights are a function of (preset, seed): their identity, shared by every packing written from them
        source_sha256=hashlib.sha256(f"dummy:{preset}:seed={seed}".encode()).hexdigest(),
        metadata={"dummy.preset": preset, "dummy.seed": seed},
    )
