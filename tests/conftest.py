"""Shared test fixtures: the tiny models every layer is tested on, and the loopback sshd lab the deploy tests use.

A tiny model is a ModelSource of random ternary weights (no files): `tiny_model` (fixture) is the factory
make_tiny_model; module-level constants may import make_tiny_model / tiny_weights directly. `draw` names how the
values are drawn, because tests rely on their own statistics (the runtime tests on layers that outweigh the
embedding, the foreign-file tests on every ternary value being equally likely):
- "sparse":  40% zeros, scales 0.01-0.2, one generator for the whole model (the GGUF writer/reader tests)
- "scaled":  35/30/35 ternary, scale ~1/sqrt(K), one generator per tensor (the runtime's lossless runs)
- "uniform": -1/0/1 equally likely, scales 0.005-0.05 (the foreign GGUF importer tests)

The lab (`lab`, module scope) is one real sshd on loopback (tests/_sshd.py) with an inventory of loopback boards
and a model: the module says which with LAB_BOARDS (name -> target profile) and lab_model(path) (writes the model,
returns its path). `sshd` (module scope) is the bare server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from _sshd import SshServer, make_sshd, write_board_inventory
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
# The shape the foreign-GGUF tests write as llama.cpp / bitnet.cpp would (BitNet 2B's structure, small)
FOREIGN = ModelConfig(
    vocab_size=320, hidden_size=256, intermediate_size=512, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=64,
    rms_norm_eps=1e-5, rope_theta=500000.0, context_length=128, tie_embeddings=True, ffn_act="relu2",
    sub_norms=True, name="tiny-foreign",
)


def random_ternary(rng: np.random.Generator, shape, p_zero: float = 0.4) -> np.ndarray:
    t = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=shape, p=[(1 - p_zero) / 2, p_zero, (1 - p_zero) / 2])
    return t.astype(np.int8)


def _sparse(config: ModelConfig, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    values: dict[str, object] = {}
    for name, shape in config.tensor_shapes().items():
        if is_ternary(name):
            values[name] = Ternary(random_ternary(rng, shape), float(np.float32(rng.uniform(0.01, 0.2))))
        elif len(shape) == 1:
            values[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            values[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    return values


def _uniform(config: ModelConfig, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    out: dict[str, object] = {}
    for name, shape in config.tensor_shapes().items():
        if is_ternary(name):
            values = rng.integers(-1, 2, size=shape).astype(np.int8)
            out[name] = Ternary(values, float(np.float32(rng.uniform(0.005, 0.05))))
        elif len(shape) == 1:
            out[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    return out


def _scaled_tensor(name: str, shape: tuple[int, ...], seed: int, index: int):
    rng = np.random.default_rng([seed, index])
    if name.endswith("norm.weight"):
        return (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
    if name in ("token_embd.weight", "output.weight"):
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)  # layers outweigh the embedding
    values = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=shape, p=[0.35, 0.3, 0.35])
    return Ternary(values, float(np.float32(rng.uniform(0.5, 2.0) / np.sqrt(shape[1]))))


def tiny_weights(config: ModelConfig, seed: int = 0, draw: str = "uniform") -> dict[str, object]:
    """Canonical name -> Ternary (the seven linears) or float32 array, drawn now."""
    if draw == "scaled":
        return {n: _scaled_tensor(n, s, seed, i) for i, (n, s) in enumerate(config.tensor_shapes().items())}
    return {"sparse": _sparse, "uniform": _uniform}[draw](config, seed)


def make_tiny_model(config: ModelConfig = ALIGNED, seed: int = 0, *, draw: str = "sparse",
                    tokenizer="dummy") -> ModelSource:
    """A random ternary ModelSource whose loaders return fresh copies; tokenizer "dummy" (dummy_tokenizer of the
    vocabulary), None, or a TokenizerData. "scaled" draws each tensor lazily when loaded (large configs stay cheap)."""
    config.validate()
    if tokenizer == "dummy":
        tokenizer = dummy_tokenizer(config.vocab_size)
    if draw == "scaled":
        shapes = config.tensor_shapes()
        tensors = {n: (lambda n=n, s=s, i=i: _scaled_tensor(n, s, seed, i)) for i, (n, s) in enumerate(shapes.items())}
        return ModelSource(config=config, tensors=tensors, tokenizer=tokenizer, source=f"random:{config.name}:{seed}")
    values = tiny_weights(config, seed, draw)

    def loader(name):
        v = values[name]
        return lambda: Ternary(v.values.copy(), v.scale) if isinstance(v, Ternary) else v.copy()

    return ModelSource(config=config, tensors={name: loader(name) for name in values}, tokenizer=tokenizer,
                       source=f"test:{config.name}", source_sha256="0" * 64)


@pytest.fixture(scope="session")
def tiny_model():
    """The factory make_tiny_model(config, seed, draw=..., tokenizer=...)."""
    return make_tiny_model


# ---------------------------------------------------------------------------------------------- the sshd lab


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on loopback with one alias, 'board' (tests/_sshd.py)."""
    server = make_sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@dataclass
class Lab:
    root: Path
    server: SshServer
    model: Path
    inventory: Path

    def ssh_args(self) -> list[str]:
        """The CLI options that reach the lab's boards."""
        return ["--inventory", str(self.inventory), "--ssh-config", str(self.server.ssh_config),
                "--known-hosts", str(self.server.known_hosts), "--connect-timeout", "5"]


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    """One sshd, the module's model (lab_model(path)) and an inventory of its boards (LAB_BOARDS), for the module."""
    root = tmp_path_factory.mktemp("lab")
    server = make_sshd(root / "sshd").start()
    try:
        model = request.module.lab_model(root)
        inventory = write_board_inventory(root / "boards.toml", server, request.module.LAB_BOARDS)
        yield Lab(root, server, model, inventory)
    finally:
        server.stop()
