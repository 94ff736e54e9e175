"""Helpers for the bitedge-run tests: build the program (native, scalar-forced, aarch64 static), make small
random BitNet models of odd shapes, and check a run against the numpy reference with the exact lossless check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from _c_build import compile_c, require_tool
from bitedge.lossless import check_lossless
from bitedge.model import ModelConfig, ModelSource, Ternary
from bitedge.native import read_activations, run_generate

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "kernels" / "runtime"
RUNTIME_SOURCES = ("main.c", "forward.c", "sampler.c", "model.c", "gguf.c", "tokenizer.c", "kernels.c",
                   "kernels_avx2.c", "kernels_neon.c", "cpu_features.c", "threadpool.c")
EXTRA_FLAGS = ("-ffp-contract=off", "-pthread")  # as the Makefile; _c_build adds -std=c11 -Wall -Wextra -Werror

def missing_runtime_sources() -> list[str]:
    return [s for s in RUNTIME_SOURCES if not (RUNTIME / s).exists()]


def build_runtime(out: Path, *, cc: str = "gcc", target: str = "native", extra: tuple[str, ...] = (),
                  sanitize: bool = False) -> Path:
    """Compile bitedge-run from the Makefile's sources and flags (with -Werror); skips if the compiler is missing."""
    if target == "aarch64" and cc == "gcc":
        require_tool("aarch64-linux-gnu-gcc")
        require_tool("qemu-aarch64")
    else:
        require_tool(cc)
    return compile_c([RUNTIME / s for s in RUNTIME_SOURCES], out, cc=cc, flags=(*EXTRA_FLAGS, *extra),
                     target=target, sanitize=sanitize, opt="-O2")


def session_runtime(tmp_path_factory, **kw) -> Path:
    """build_runtime once per test session and set of options (both runtime test modules share the binaries)."""
    digest = hashlib.sha256(repr(sorted(kw.items())).encode())
    for path in sorted(RUNTIME.glob("*.[ch]")):
        digest.update(path.name.encode() + path.read_bytes())
    out = tmp_path_factory.getbasetemp() / f"bitedge-run-{digest.hexdigest()[:16]}"
    return out if out.exists() else build_runtime(out, **kw)


def qemu_runner(cpu: str) -> list[str]:
    return ["qemu-aarch64", "-cpu", cpu]


def random_source(config: ModelConfig, seed: int = 0, tokenizer=None) -> ModelSource:
    """A random ternary model: every tensor drawn from its own seeded generator, loaded lazily."""
    config.validate()

    def loader(name: str, shape: tuple[int, ...], index: int):
        def load():
            rng = np.random.default_rng([seed, index])
            if name.endswith("norm.weight"):
                return (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
            if name in ("token_embd.weight", "output.weight"):
                return (0.3 * rng.standard_normal(shape)).astype(np.float32)  # layers outweigh the embedding
            values = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=shape, p=[0.35, 0.3, 0.35])
            scale = float(np.float32(rng.uniform(0.5, 2.0) / np.sqrt(shape[1])))
            return Ternary(values, scale)

        return load

    shapes = config.tensor_shapes()
    tensors = {name: loader(name, shape, i) for i, (name, shape) in enumerate(shapes.items())}
    return ModelSource(config=config, tensors=tensors, tokenizer=tokenizer, source=f"random:{config.name}:{seed}")


def generate_checked(binary, model, reference, prompt: list[int], workdir: Path, tag: str, n: int = 8, **kw):
    """A greedy run of bitedge-run with its logits and activation dump, checked against the reference by the exact
    lossless check (bitedge.lossless). Returns (tokens, logits [n, vocab], bitedge-run's JSON, LosslessReport)."""
    logits_file, acts_file = workdir / f"{tag}.f32", workdir / f"{tag}.acts"
    result = run_generate(binary, model, tokens=prompt, n=n, dump_logits=logits_file, dump_activations=acts_file, **kw)
    assert result["prompt_tokens"] == list(prompt)
    n_layers, records = read_activations(acts_file)
    report = check_lossless(reference, prompt, result["tokens"], result["logits"], n_layers, records)
    print(f"{tag}: {report.summary()}")
    return result["tokens"], result["logits"], result, report
