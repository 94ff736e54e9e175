"""Autotuning of kernel tiles: time candidate (bm, bk) per method and model shape where the target runs, keep the
fastest in a JSON tuning cache keyed by CPU model, target, method and shape.

    results = tune(get_target("x86-64-avx2"), model_shapes(config), ["tl1", "tl2"])
    tiles = tuned_tiles(target, "tl1", shapes)          # -> render_kernels(target, shapes, "tl1", tiles, out)

Measurements run natively when the target is this machine's architecture and has no runner, else under the
profile's runner (qemu: the numbers only rank candidates for an emulator, never for a board; entries say
"emulated": true). Boards over SSH are not supported yet (run `bitedge tune` on the board itself).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from bitedge.build.targets import Target, get_target
from bitedge.convert.packing import get_packing
from bitedge.errors import BitedgeError

CACHE_VERSION = 1
from bitedge._shipped import RUNTIME_DIR  # noqa: E402
# the runtime's hand-written I2_S kernels and what they need (linked into the driver for method i2_s)
I2S_SOURCES = ("kernels.c", "kernels_avx2.c", "kernels_neon.c", "cpu_features.c")
CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-D_POSIX_C_SOURCE=200809L")
DEFAULT_CANDIDATES = {
    "i2_s": [{"rows": 4, "bk": 1024}, {"rows": 2, "bk": 1024}, {"rows": 1, "bk": 1920}, {"rows": 4, "bk": 1920},
             {"rows": 4, "bk": 512}],
    "tl1": [{"bm": 32, "bk": 128, "bn": 256}, {"bm": 64, "bk": 128, "bn": 256}, {"bm": 32, "bk": 252, "bn": 256},
            {"bm": 32, "bk": 64, "bn": 128}, {"bm": 32, "bk": 128, "bn": 32}, {"bm": 96, "bk": 128, "bn": 768}],
    "tl2": [{"bm": 32, "bk": 96, "bn": 256}, {"bm": 64, "bk": 96, "bn": 256}, {"bm": 32, "bk": 252, "bn": 256},
            {"bm": 32, "bk": 48, "bn": 128}, {"bm": 32, "bk": 96, "bn": 32}, {"bm": 96, "bk": 96, "bn": 768}],
}


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bitedge" / "tuning.json"


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def cpu_model(target: Target | None = None) -> str:
    """The CPU the measurements run on: this machine's model name, or the emulated CPU of the target's runner."""
    if target is not None and target.runner:
        return f"emulated:{' '.join(target.runner)}"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "CPU part") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cache_key(cpu: str, target: Target, method: str, shape: tuple[int, int]) -> str:
    return f"{cpu}|{target.id}|{method}|{shape[0]}x{shape[1]}"


def load_cache(path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path is not None else default_cache_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"version": CACHE_VERSION, "entries": {}}
    except (OSError, ValueError) as e:
        raise BitedgeError(f"{path}: unreadable tuning cache ({e}); delete it to start over") from None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        raise BitedgeError(f"{path}: not a version {CACHE_VERSION} bitedge tuning cache; delete it to start over")
    return data


def save_cache(data: dict, path: str | os.PathLike | None = None) -> Path:
    from bitedge.render import write_if_changed

    path = Path(path) if path is not None else default_cache_path()
    return write_if_changed(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def tuned_tiles(target: Target | str, method: str, shapes: Iterable[tuple[int, int]],
                cache_path: str | os.PathLike | None = None) -> dict[tuple[int, int], dict[str, int]] | None:
    """Tiles per shape from the tuning cache for this CPU (None when nothing is cached: use the defaults)."""
    target = get_target(target)
    entries = load_cache(cache_path)["entries"]
    cpu = cpu_model(target)
    found = {}
    for shape in shapes:
        entry = entries.get(cache_key(cpu, target, method, tuple(shape)))
        if entry:
            found[tuple(shape)] = dict(entry["tiles"])
    return found or None


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
                           "run `bitedge tune` on the board itself")
    return ()


def compile_driver(target: Target, sources: Iterable[Path], include_dir: Path, out: Path) -> Path:
    """Compile rendered sources (and the runtime's I2_S kernels when the driver uses them) for target."""
    cross = target.arch != host_arch()
    cc = "aarch64-linux-gnu-gcc" if cross and target.arch == "aarch64" else "gcc"
    if not shutil.which(cc):
        raise BitedgeError(f"{cc} is not installed (needed to build kernels for {target.id})")
    srcs = [str(s) for s in sources]
    if any(Path(s).name == "bitedge_kernel_driver.c" and '#include "kernels.h"' in Path(s).read_text() for s in srcs):
        srcs += [str(RUNTIME_DIR / s) for s in I2S_SOURCES]
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, *CFLAGS, target.optimize, *target.cpu_flags, f"-I{include_dir}", f"-I{RUNTIME_DIR}", "-o", str(out),
           *srcs, *(["-static"] if cross else []), "-lm", "-pthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200])
        raise BitedgeError(f"building the kernel driver failed: {first}")
    return out


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


def time_kernel(exe: Path, runner: tuple[str, ...], method: str, isa: str, w: Path, q: Path, n: int, kp: int,
                reps: int) -> dict[str, float]:
    """One driver run in time mode: mean / sd / min nanoseconds of prepare + gemv over all n rows."""
    cmd = [*runner, str(exe), "time", method, isa, str(w), str(q), str(n), str(kp), str(reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise BitedgeError(f"kernel timing failed for {method}/{isa}: {proc.stderr.strip().splitlines()[-1:]}")
    mean, sd, best = (float(x) for x in proc.stdout.split()[:3])
    return {"mean_ns": mean, "sd_ns": sd, "min_ns": best}


def tune(target: Target | str, shapes: Iterable[tuple[int, int]], methods: Iterable[str] = ("tl1", "tl2"),
         candidates: Mapping[str, list[dict]] | None = None, cache_path: str | os.PathLike | None = None,
         reps: int = 20, rounds: int = 3, work_dir: str | os.PathLike | None = None,
         progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Measure every candidate tile of every method on every shape; the fastest (lowest median over rounds of the
    mean per call) is stored in the tuning cache. Returns {"<method>/<N>x<K>": {"tiles", "mean_ns", "sd_ns",
    "candidates": [{"tiles", "mean_ns", "sd_ns"}...], "emulated"}}."""
    from bitedge.render import c_sources, check_method, check_tiles, render_driver, render_kernels, target_isas

    target = get_target(target)
    say = progress or (lambda msg: None)
    shapes = sorted({(int(n), int(k)) for n, k in shapes})
    methods = [check_method(m) for m in methods]
    runner = runner_for(target)
    cpu = cpu_model(target)
    cache = load_cache(cache_path)
    results: dict[str, dict] = {}
    tmp = tempfile.TemporaryDirectory(prefix="bitedge-tune-") if work_dir is None else None
    work = Path(tmp.name if tmp else work_dir)
    try:
        for method in methods:
            isa = target_isas(target, method)[0].replace("_", "-")  # neon_dotprod -> the table name neon-dotprod
            cands = [check_tiles(method, c) for c in (candidates or DEFAULT_CANDIDATES).get(method, [])]
            if not cands:
                raise BitedgeError(f"no candidate tiles given for {method}")
            exes = []
            for i, tiles in enumerate(cands):
                src = work / method / f"cand{i}"
                paths = render_kernels(target, shapes, method, tiles, src) + [render_driver([method], src)]
                exes.append(compile_driver(target, c_sources(paths), src, src / "driver"))
            cases = {shape: write_case(method, shape, work / "data") for shape in shapes}
            for shape in shapes:
                w, q, kp = cases[shape]
                runs: list[list[dict]] = [[] for _ in cands]
                for _ in range(rounds):  # interleaved rounds: drift (turbo, other load) hits every candidate alike
                    for i, exe in enumerate(exes):
                        runs[i].append(time_kernel(exe, runner, method, isa, w, q, shape[0], kp, reps))
                summary = []
                for tiles, r in zip(cands, runs):
                    means = [x["mean_ns"] for x in r]
                    summary.append({"tiles": tiles, "mean_ns": statistics.median(means),
                                    "sd_ns": statistics.stdev(means) if len(means) > 1 else r[0]["sd_ns"]})
                best = min(summary, key=lambda s: s["mean_ns"])
                say(f"{method} {shape[0]}x{shape[1]}: best {' '.join(f'{k}={v}' for k, v in best['tiles'].items())} "
                    f"{best['mean_ns'] / 1e3:.1f} us")
                entry = {"tiles": best["tiles"], "mean_ns": best["mean_ns"], "sd_ns": best["sd_ns"], "isa": isa,
                         "emulated": bool(target.runner), "cpu": cpu,
                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                cache["entries"][cache_key(cpu, target, method, shape)] = entry
                results[f"{method}/{shape[0]}x{shape[1]}"] = {**entry, "candidates": summary}
        save_cache(cache, cache_path)
    finally:
        if tmp:
            tmp.cleanup()
    return results
