"""Autotuning of kernel tiles: time candidate tiles per method and model shape where the target runs, keep the
fastest in the tuning cache (bitedge.render.tune: keyed by CPU model, target, method and shape).

    results = tune(get_target("x86-64-avx2"), model_shapes(config), ["tl1", "tl2"])
    tiles = tuned_tiles(target, "tl1", shapes)          # -> render_kernels(target, shapes, "tl1", tiles, out)

Where the driver runs is a timer: LocalTimer runs it on this machine, natively when the target is this machine's
architecture and has no runner, else under the profile's runner (qemu: the numbers only rank candidates for an
emulator, never for a board; entries say "emulated": true). bitedge.deploy.remote.BoardTimer runs it on a board
over SSH (`bitedge tune --host pi5`): the candidates are cross-built here, uploaded and timed there, and the
entries are keyed by the board's CPU.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from bitedge._shipped import RUNTIME_DIR
from bitedge.builder.compile import build_runtime
from bitedge.builder.toolchains import host_arch
from bitedge.errors import BitedgeError
from bitedge.formats.packing import get_packing
from bitedge.render.tune import DEFAULT_CANDIDATES, cache_key, cpu_model, load_cache, save_cache
from bitedge.targets import Target

# the runtime's hand-written I2_S kernels and what they need (linked into the driver for method i2_s)
I2S_SOURCES = ("kernels.c", "kernels_avx2.c", "kernels_avxvnni.c", "kernels_avx512vnni.c", "kernels_neon.c",
               "kernels_neon_i8mm.c", "cpu_features.c", "cpu_build_isa.c")  # the CPU check (cpu_features.c, built for the baseline) reads what the build used


# ---------------------------------------------------------------------------------------------------------
# building and timing the driver


def runner_for(target: Target) -> tuple[str, ...]:
    """argv prefix that runs a binary for target here (empty = natively), or BitedgeError."""
    if target.runner:
        if not shutil.which(target.runner[0]):
            raise BitedgeError(f"target {target.id}: runner {target.runner[0]} is not installed")
        return tuple(target.runner)
    if target.arch != host_arch() or target.os != "linux":
        raise BitedgeError(f"target {target.id} ({target.arch}) cannot run on this {host_arch()} machine: "
                           "tune on the board over SSH (bitedge tune --host BOARD) or run `bitedge tune` there")
    return ()


class LocalTimer:
    """Runs kernel drivers on this machine: natively, or under the target profile's runner."""

    def __init__(self, target: Target):
        self.prefix = runner_for(target)
        self.cpu = cpu_model(target)
        self.emulated = bool(target.runner)
        self.where = "this machine" + (f" under {self.prefix[0]}" if self.prefix else "")

    def stage(self, path: Path, name: str) -> str:
        """Where the driver finds a local file (here: the file itself)."""
        return str(path)

    def run(self, argv: list[str], timeout: float) -> str:
        """stdout of one command, or BitedgeError naming the failure."""
        try:
            proc = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BitedgeError(f"kernel driver timed out after {timeout:g} s") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise BitedgeError(f"kernel driver failed: {last}")
        return proc.stdout

    def close(self) -> None:
        pass


def compile_driver(target: Target, sources: Iterable[Path], include_dir: Path, out_dir: Path) -> Path:
    """Build rendered sources (and the runtime's I2_S kernels when the driver uses them) for target with the
    toolchain the profile prefers, as the runtime is built (static on Linux, so a board can run it as is)."""

    srcs = [Path(s) for s in sources]
    if any(s.name == "bitedge_kernel_driver.c" and '#include "kernels.h"' in s.read_text() for s in srcs):
        srcs += [RUNTIME_DIR / s for s in I2S_SOURCES]
    # a private build cache: candidates are throw-away builds that must not crowd the runtime's cache
    result = build_runtime(target, out_dir=out_dir, sources=srcs, extra_include_dirs=[include_dir],
                           cache_dir=out_dir / ".cache")
    return result.binary


def write_case(method: str, shape: tuple[int, int], folder: Path, seed: int = 0) -> tuple[Path, Path, int]:
    """Random ternary matrix of shape packed by method, and a random activation vector; returns (w, q, kp)."""
    n, k = shape
    rng = np.random.default_rng(seed)
    method = method.removesuffix("-runtime")  # i2_s-runtime: the same I2_S bytes
    packing = get_packing(method)
    kp = packing.padded_k(k) if method == "i2_s" else packing.padded(n, k)[1]
    packed = packing.pack(rng.integers(-1, 2, size=(n, k), dtype=np.int8))
    q = np.zeros(kp, dtype=np.int8)
    q[:k] = rng.integers(-127, 128, size=k).astype(np.int8)
    folder.mkdir(parents=True, exist_ok=True)
    wf, qf = folder / f"{method}_{n}x{k}.w", folder / f"{method}_{n}x{k}.q"
    wf.write_bytes(packed.tobytes())
    qf.write_bytes(q.tobytes())
    return wf, qf, kp


def time_kernel(timer, exe: str, method: str, isa: str, w: str, q: str, n: int, kp: int,
                reps: int) -> dict[str, float]:
    """One driver run in time mode: mean / sd / min nanoseconds of prepare + gemv over all n rows."""
    try:
        out = timer.run([exe, "time", method, isa, w, q, str(n), str(kp), str(reps)], timeout=600)
        mean, sd, best = (float(x) for x in out.split()[:3])
    except BitedgeError as e:
        raise BitedgeError(f"timing {method}/{isa} on {timer.where}: {e}") from None
    except ValueError:
        raise BitedgeError(f"timing {method}/{isa} on {timer.where}: unexpected driver output {out[:80]!r}") from None
    return {"mean_ns": mean, "sd_ns": sd, "min_ns": best}


def planned_steps(methods: Iterable[str], n_shapes: int, rounds: int,
                  candidates: Mapping[str, list[dict]] | None = None) -> int:
    """How many builds and timing runs tune() makes (the length of its progress bar)."""
    cands = candidates or DEFAULT_CANDIDATES
    return sum((1 if m == "i2_s" else len(cands.get(m, []))) * (1 + rounds * n_shapes) for m in methods)


def fastest_method(results: Mapping[str, dict], shape_counts: Mapping[tuple[int, int], int]) -> dict:
    """Per method, the tuned time of one token's ternary matmuls (each shape's best time x how many matrices have
    that shape), and the fastest method. Methods missing a shape are left out."""
    per_method: dict[str, float] = {}
    for method in sorted({key.split("/")[0] for key in results}):
        total = 0.0
        for (n, k), count in shape_counts.items():
            r = results.get(f"{method}/{n}x{k}")
            if r is None:
                break
            total += r["mean_ns"] * count
        else:
            per_method[method] = total
    best = min(per_method, key=per_method.get) if per_method else None
    return {"method": best, "token_ns": per_method}


def tune(target: Target, shapes: Iterable[tuple[int, int]], methods: Iterable[str] = ("tl1", "tl2"),
         candidates: Mapping[str, list[dict]] | None = None, cache_path: str | os.PathLike | None = None,
         reps: int = 20, rounds: int = 3, work_dir: str | os.PathLike | None = None,
         progress: Callable[[str], None] | None = None, timer=None,
         advance: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Measure every candidate tile of every method on every shape; the fastest (lowest median over rounds of the
    mean per call) is stored in the tuning cache. timer: where the drivers run (default LocalTimer(target); a
    bitedge.deploy.remote.BoardTimer runs them on a board). advance(1) is called after every build and every
    timing run (planned_steps of them: a progress bar). Returns {"<method>/<N>x<K>": {"tiles", "mean_ns",
    "sd_ns", "candidates": [{"tiles", "mean_ns", "sd_ns"}...], "emulated", "cpu"}}."""
    from bitedge.render import c_sources, check_method, check_tiles, render_driver, render_kernels, target_isas

    say = progress or (lambda msg: None)
    step = advance or (lambda n=1: None)
    shapes = sorted({(int(n), int(k)) for n, k in shapes})
    methods = [check_method(m) for m in methods]
    timer = timer if timer is not None else LocalTimer(target)
    cache = load_cache(cache_path)
    results: dict[str, dict] = {}
    tmp = tempfile.TemporaryDirectory(prefix="bitedge-tune-") if work_dir is None else None
    work = Path(tmp.name if tmp else work_dir)
    try:
        for method in methods:
            isa = target_isas(target, method)[0].replace("_", "-")  # neon_dotprod -> the table name neon-dotprod
            # i2_s: the runtime's hand-written kernels (driver method i2_s-runtime), one candidate without tiles
            runtime = method == "i2_s"
            cands = [{}] if runtime else [check_tiles(method, c)
                                          for c in (candidates or DEFAULT_CANDIDATES).get(method, [])]
            if not cands:
                raise BitedgeError(f"no candidate tiles given for {method}")
            exes = []
            for i, tiles in enumerate(cands):
                say(f"{method}: build candidate {i + 1}/{len(cands)} for {target.id}")
                src = work / method / f"cand{i}"
                paths = ([render_driver([], src, runtime_i2s=True)] if runtime
                         else render_kernels(target, shapes, method, tiles, src) + [render_driver([method], src)])
                exe = compile_driver(target, c_sources(paths), src, src / "build")
                exes.append(timer.stage(exe, f"{method}-cand{i}"))
                step(1)
            cases = {}
            for shape in shapes:
                w, q, kp = write_case(method, shape, work / "data")
                cases[shape] = (timer.stage(w, w.name), timer.stage(q, q.name), kp)
            for shape in shapes:
                w, q, kp = cases[shape]
                runs: list[list[dict]] = [[] for _ in cands]
                for _ in range(rounds):  # interleaved rounds: drift (turbo, other load) hits every candidate alike
                    for i, exe in enumerate(exes):
                        runs[i].append(time_kernel(timer, exe, "i2_s-runtime" if runtime else method, isa, w, q,
                                                   shape[0], kp, reps))
                        step(1)
                summary = []
                for tiles, r in zip(cands, runs):
                    means = [x["mean_ns"] for x in r]
                    summary.append({"tiles": tiles, "mean_ns": statistics.median(means),
                                    "sd_ns": statistics.stdev(means) if len(means) > 1 else r[0]["sd_ns"]})
                best = min(summary, key=lambda s: s["mean_ns"])
                say(f"{method} {shape[0]}x{shape[1]}: best {' '.join(f'{k}={v}' for k, v in best['tiles'].items())} "
                    f"{best['mean_ns'] / 1e3:.1f} us")
                entry = {"tiles": best["tiles"], "mean_ns": best["mean_ns"], "sd_ns": best["sd_ns"], "isa": isa,
                         "emulated": timer.emulated, "cpu": timer.cpu, "where": timer.where,
                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                cache["entries"][cache_key(timer.cpu, target, method, shape)] = entry
                results[f"{method}/{shape[0]}x{shape[1]}"] = {**entry, "candidates": summary}
        save_cache(cache, cache_path)
    finally:
        if tmp:
            tmp.cleanup()
    return results
