"""`bitedge demo`: the whole flow on the bundled tiny model, offline, in about a minute.

Convert the bundled checkpoint (bitedge/data/tiny-kjv, trained by scripts/train_tiny.py) to I2_S, build the
runtime for this machine and for an emulated Raspberry Pi 5 (qemu-aarch64 -cpu cortex-a76), generate the same
greedy text on both and with the numpy reference, prove each runtime run lossless with the exact check
(bitedge.lossless: its int8 codes at every quantization against the reference's), show the tokens, benchmark here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bitedge.errors import BitedgeError

BUNDLED = Path(__file__).resolve().parent / "data" / "tiny-kjv"
EMULATED_BOARD = "rpi5-qemu"


@dataclass
class DemoResult:
    model: str
    gguf: str
    prompt: str
    runs: dict = field(default_factory=dict)  # engine label -> {"tokens", "text", "seconds"}
    identical: bool = False  # the same greedy tokens on every engine
    lossless: dict = field(default_factory=dict)  # runtime label -> the exact check's summary (raises if it fails)
    bench: list = field(default_factory=list)
    steps: list = field(default_factory=list)  # (step, seconds)


def run_demo(*, model: str | Path | None = None, workdir: str | Path = "build/demo", prompt: str = "And God said",
             n_tokens: int = 40, threads: int = 1, bench_reps: int = 3,
             step: Callable[[str], object] | None = None) -> DemoResult:
    """step(description) is a context-manager factory for progress display (a no-op if None)."""
    from contextlib import nullcontext

    from bitedge.builder.compile import build_runtime
    from bitedge.board import host_target_id
    from bitedge.targets import get_target
    from bitedge.convert.gguf_writer import write_gguf
    from bitedge.convert.sources import open_source
    from bitedge.gguf_read import read_model
    from bitedge.lossless import check_lossless
    from bitedge.native import read_activations, run_bench, run_generate
    from bitedge.reference import Reference
    from bitedge.tokenizer import decode, encode

    step = step or (lambda _desc: nullcontext())
    source = Path(model) if model else BUNDLED
    if not source.exists():
        raise BitedgeError(f"{source}: the demo model is missing (reinstall bitedge, or pass --model)")
    opened = open_source(str(source))  # a model that cannot be read fails here, before anything is written
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    gguf = work / f"{source.name.removesuffix('.gguf')}-i2_s.gguf"
    result = DemoResult(model=str(source), gguf=str(gguf), prompt=prompt)

    def timed(desc, fn):
        t0 = time.perf_counter()
        with step(desc):
            value = fn()
        result.steps.append((desc, time.perf_counter() - t0))
        return value

    timed("convert the bundled model to I2_S", lambda: write_gguf(opened, gguf, packing="i2_s", force=True))
    host = get_target(host_target_id())
    board = get_target(EMULATED_BOARD)
    builds = {}
    for target in (host, board):
        builds[target.id] = timed(f"build bitedge-run for {target.id}", lambda t=target: build_runtime(t, out_dir=work / t.id))

    src = read_model(gguf)
    prompt_tokens = encode(src.tokenizer, prompt)

    def reference():
        tokens, _ = Reference(src).generate(prompt_tokens, n_tokens, greedy=True)
        return [int(t) for t in tokens]

    ref_tokens = timed("generate with the numpy reference", reference)
    result.runs["reference (numpy)"] = {"tokens": ref_tokens, "text": decode(src.tokenizer, ref_tokens)}
    for target in (host, board):
        runner = list(target.runner) if target.emulated else None
        label = f"{target.id}" + (" (qemu)" if target.emulated else " (native)")
        dumps = work / f"{target.id}.logits", work / f"{target.id}.acts"
        out = timed(f"generate on {label}", lambda t=target, r=runner: run_generate(
            builds[t.id].binary, gguf, tokens=prompt_tokens, n=n_tokens, greedy=True, threads=threads, runner=r,
            dump_logits=dumps[0], dump_activations=dumps[1]))
        result.runs[label] = {"tokens": out["tokens"], "text": out["text"]}
        report = timed(f"check {label} against the reference, activation by activation", lambda o=out: check_lossless(
            Reference(src), prompt_tokens, o["tokens"], o["logits"], *read_activations(dumps[1])))
        result.lossless[label] = report.summary()
    result.identical = all(run["tokens"] == ref_tokens for run in result.runs.values())
    bench = timed(f"benchmark on {host.id}", lambda: run_bench(builds[host.id].binary, gguf, 64, 32, [threads], bench_reps))
    result.bench = bench["rows"]
    return result
