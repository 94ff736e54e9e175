"""Helpers for the bitedge-run tests: build the program (native, scalar-forced, aarch64 static), make small
random BitNet models of odd shapes, and compare the runtime's logits with the numpy reference."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _c_build import compile_c, require_tool
from bitedge.model import ModelConfig, ModelSource, Ternary

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "kernels" / "runtime"
RUNTIME_SOURCES = ("main.c", "forward.c", "sampler.c", "model.c", "gguf.c", "tokenizer.c", "kernels.c",
                   "kernels_avx2.c", "kernels_avx512vnni.c", "kernels_neon.c", "cpu_features.c", "threadpool.c")
EXTRA_FLAGS = ("-ffp-contract=off", "-pthread")  # as the Makefile; _c_build adds -std=c11 -Wall -Wextra -Werror

# Logit agreement, relative to max |reference logit| of the run. Float summation order and libm rounding give
# ~1e-6; a different rounding of ONE int8 activation (x * a landing on the other side of .5 after a last-bit
# difference upstream) shifts a whole step's logits by up to ~0.5 %. So: every step within LOGIT_RTOL, and a
# step beyond FLIP_RTOL counts as a rounding-flip step (reported; at most a quarter of the steps).
LOGIT_RTOL = 1e-2
FLIP_RTOL = 1e-4
# The tie rule: the runtime may pick a different greedy token than the reference only at a step where the
# reference's top-2 margin is below TIE_RTOL * max |logit| (the size of one rounding flip).
TIE_RTOL = 5e-3


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


@dataclass
class Agreement:
    steps: int
    ties: int              # steps where the greedy tokens differ inside the tie margin
    flips: int             # steps whose logits differ by more than FLIP_RTOL (an activation rounding flip)
    max_abs_diff: float    # logits, over every step
    logit_range: float     # max |reference logit|

    @property
    def rel_diff(self) -> float:
        return self.max_abs_diff / max(self.logit_range, 1e-30)

    def check(self) -> "Agreement":
        assert self.rel_diff <= LOGIT_RTOL, f"logits differ by {self.max_abs_diff:.3g} (range {self.logit_range:.3g})"
        assert self.flips <= max(1, self.steps // 4), f"{self.flips} of {self.steps} steps differ beyond {FLIP_RTOL}"
        return self


def compare_greedy(reference, prompt: list[int], native_tokens: list[int], native_logits: np.ndarray) -> Agreement:
    """Check a native greedy run against the reference evaluated on the SAME token sequence.

    native_logits[i] are the logits the runtime sampled token i from. The reference runs the prompt plus the
    native tokens once; row len(prompt)-1+i is its view of step i. A step whose native token is not the
    reference's argmax is accepted only if the reference's top-2 margin there is below TIE_RTOL of the range."""
    steps = len(native_tokens)
    assert native_logits.shape[0] == steps
    ref = np.asarray(reference.forward(list(prompt) + list(native_tokens[:-1])), dtype=np.float32)
    ref = ref[len(prompt) - 1:]
    logit_range = float(np.max(np.abs(ref)))
    ties = 0
    for i, token in enumerate(native_tokens):
        row = ref[i]
        best = int(np.argmax(row))
        if token != best:
            top2 = np.sort(row)[-2:]
            margin = float(top2[1] - top2[0])
            assert row[token] >= top2[0] and margin < TIE_RTOL * logit_range, (
                f"step {i}: runtime chose {token} (ref logit {row[token]:.6f}), reference argmax {best} "
                f"({row[best]:.6f}); margin {margin:.3g} is not a tie")
            ties += 1
    step_diff = np.max(np.abs(native_logits - ref), axis=1)
    flips = int(np.sum(step_diff > FLIP_RTOL * logit_range))
    return Agreement(steps, ties, flips, float(step_diff.max()), logit_range)
