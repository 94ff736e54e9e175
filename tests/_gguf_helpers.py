"""Tiny ModelSources for the packing / GGUF writer / reader tests (random ternary weights, no files needed)."""

from __future__ import annotations

import numpy as np

from bitedge.convert.dummy import dummy_tokenizer
from bitedge.model import ModelConfig, ModelSource, Ternary, is_ternary

# Every row length a multiple of 256: all packings (TQ2_0 included) and q8_0 apply.
ALIGNED = ModelConfig(
    vocab_size=320, hidden_size=256, intermediate_size=512, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=64,
    tie_embeddings=True, ffn_act="relu2", sub_norms=True, name="tiny-aligned",
)
# Odd shapes: K not a multiple of any block (96, 200), rows not multiples of 32 (96, 200, 32+...), 3 heads,
# GQA 3:1, untied output, silu, vocab not a multiple of 32.
ODD = ModelConfig(
    vocab_size=301, hidden_size=96, intermediate_size=200, num_layers=2, num_heads=3, num_kv_heads=1, head_dim=32,
    tie_embeddings=False, ffn_act="silu", sub_norms=True, rope_theta=500000.0, name="tiny-odd",
)
# No sub-norms (llama-style 1.58-bit checkpoints)
PLAIN = ModelConfig(
    vocab_size=300, hidden_size=64, intermediate_size=160, num_layers=1, num_heads=2, num_kv_heads=2, head_dim=32,
    tie_embeddings=False, ffn_act="silu", sub_norms=False, name="tiny-plain",
)


def random_ternary(rng: np.random.Generator, shape, p_zero: float = 0.4) -> np.ndarray:
    t = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=shape, p=[(1 - p_zero) / 2, p_zero, (1 - p_zero) / 2])
    return t.astype(np.int8)


def tiny_source(config: ModelConfig = ALIGNED, seed: int = 0, with_tokenizer: bool = True) -> ModelSource:
    """All tensors generated now (small) and served by loaders that return copies."""
    rng = np.random.default_rng(seed)
    values: dict[str, object] = {}
    for name, shape in config.tensor_shapes().items():
        if is_ternary(name):
            values[name] = Ternary(random_ternary(rng, shape), float(np.float32(rng.uniform(0.01, 0.2))))
        elif len(shape) == 1:
            values[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            values[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)

    def loader(name):
        v = values[name]
        return lambda: Ternary(v.values.copy(), v.scale) if isinstance(v, Ternary) else v.copy()

    return ModelSource(
        config=config,
        tensors={name: loader(name) for name in values},
        tokenizer=dummy_tokenizer(config.vocab_size) if with_tokenizer else None,
        source=f"test:{config.name}",
        source_sha256="0" * 64,
    )
