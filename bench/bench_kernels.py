#!/usr/bin/env python3
"""I2_S vs TL1 vs TL2 matrix-vector throughput on this machine, single thread, in one run.

i2_s-runtime is the runtime's hand-written kernel (kernels/runtime/kernels_avx2.c via its be_kernels table, the
baseline of every ratio); i2_s, tl1 and tl2 are the kernels rendered by bitedge.render for the target (tiles from the tuning cache with --tuned, else the
defaults). Each call is one token: TL kernels include building that token's tables (prepare), as the forward
pass must. Methods are interleaved round by round so drift hits all alike; prints mean +- sd over rounds of the
per-call mean, the fastest call, weights per second and the ratio to I2_S (>1 = faster than I2_S) by mean and by
fastest call (the robust one on a loaded machine). Never run this under qemu:
emulation says nothing about speed.

    python3 bench/bench_kernels.py                      # the BitNet b1.58 2B-4T shapes
    python3 bench/bench_kernels.py --shapes 2560x2560 --rounds 9 --json build/bench/kernels.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitedge.build.targets import get_target  # noqa: E402
from bitedge.render import c_sources, render_driver, render_kernels, target_isas  # noqa: E402
from bitedge.render.tune import (compile_driver, cpu_model, runner_for, time_kernel, tuned_tiles,  # noqa: E402
                                 write_case)

# BitNet b1.58 2B-4T: hidden 2560, FFN 6912, 20 heads / 5 KV heads of 128
SHAPES_2B4T = {"attn_q/attn_output": (2560, 2560), "attn_k/attn_v": (640, 2560), "ffn_gate/ffn_up": (6912, 2560),
               "ffn_down": (2560, 6912)}
METHODS = ("i2_s-runtime", "i2_s", "tl1", "tl2")
RENDERED = ("i2_s", "tl1", "tl2")


def parse_shapes(text: str) -> dict[str, tuple[int, int]]:
    out = {}
    for item in text.split(","):
        n, _, k = item.strip().partition("x")
        out[item.strip()] = (int(n), int(k))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="x86-64-avx2", help="a native target profile (default x86-64-avx2)")
    ap.add_argument("--shapes", help="NxK,NxK,... (default: the 2B-4T matrices)")
    ap.add_argument("--reps", type=int, default=30, help="calls per timing (default 30)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--tuned", action="store_true", help="use tiles from the tuning cache (bitedge tune)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    target = get_target(args.target)
    if target.runner:
        ap.error(f"{target.id} runs under an emulator: no speed numbers from qemu")
    runner = runner_for(target)
    shapes = parse_shapes(args.shapes) if args.shapes else SHAPES_2B4T
    isa = target_isas(target)[0]  # avx2 on x86-64 (the name of the runtime's table as well)
    with tempfile.TemporaryDirectory(prefix="bitedge-bench-") as tmp:
        src = Path(tmp) / "src"
        paths = []
        for method in RENDERED:
            tiles = tuned_tiles(target, method, shapes.values()) if args.tuned else None
            paths += render_kernels(target, shapes.values(), method, tiles, src)
        paths.append(render_driver(RENDERED, src, runtime_i2s=True))
        exe = compile_driver(target, sorted(set(c_sources(paths))), src, Path(tmp) / "driver")
        rows = []
        for label, (n, k) in shapes.items():
            cases = {m: write_case(m, (n, k), Path(tmp) / "data", seed=1) for m in METHODS}
            per_round = {m: [] for m in METHODS}
            best = {m: float("inf") for m in METHODS}
            for _ in range(args.rounds):
                for m in METHODS:
                    w, q, kp = cases[m]
                    t = time_kernel(exe, runner, m, isa, w, q, n, kp, args.reps)
                    per_round[m].append(t["mean_ns"])
                    best[m] = min(best[m], t["min_ns"])
            base, base_min = statistics.mean(per_round["i2_s-runtime"]), best["i2_s-runtime"]
            for m in METHODS:
                mean = statistics.mean(per_round[m])
                sd = statistics.stdev(per_round[m]) if args.rounds > 1 else 0.0
                rows.append({"matrix": label, "n": n, "k": k, "method": m, "isa": isa, "mean_us": mean / 1e3,
                             "sd_us": sd / 1e3, "min_us": best[m] / 1e3, "gweights_per_s": n * k / mean, "speed_vs_i2s": base / mean,
                             "speed_vs_i2s_min": base_min / best[m]})
    print(f"# single-thread ternary matrix-vector, {cpu_model()} ({isa}), {args.rounds} rounds x {args.reps} calls")
    print("| matrix | N x K | method | us / call (mean +- sd) | min us | Gweights/s (mean) | vs I2_S (mean) | vs I2_S (min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['matrix']} | {r['n']} x {r['k']} | {r['method']} | {r['mean_us']:.1f} +- {r['sd_us']:.1f} | "
              f"{r['min_us']:.1f} | {r['gweights_per_s']:.2f} | {r['speed_vs_i2s']:.2f} | {r['speed_vs_i2s_min']:.2f} |")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"cpu": cpu_model(), "isa": isa, "rounds": args.rounds, "reps": args.reps,
                                   "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
