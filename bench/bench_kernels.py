#!/usr/bin/env python3
"""I2_S vs TL1 vs TL2 matrix-vector throughput on this machine, single thread, in one run.

i2_s-runtime is the runtime's hand-written kernel (kernels/runtime/kernels_avx2.c via its be_kernels table, the
baseline of every ratio: I2_S's one implementation, none is rendered); tl1 and tl2 are the kernels rendered by
bitedge.render for the target (tiles from the tuning cache with --tuned, else the defaults). Each call is one token: TL kernels include building that token's tables (prepare), as the forward
pass must. Methods are interleaved round by round so drift hits all alike; prints mean +- sd over rounds of the
per-call mean, the fastest call, weights per second and the ratio to I2_S (>1 = faster than I2_S) by mean and by
fastest call (the robust one on a loaded machine). Never run this under qemu:
emulation says nothing about speed.

    python3 bench/bench_kernels.py                      # the BitNet b1.58 2B-4T shapes
    python3 bench/bench_kernels.py --shapes 2560x2560 --rounds 9 --json build/bench/kernels.json
    python3 bench/bench_kernels.py --tokens 32          # several tokens per call: gemm vs gemv per token

--tokens N (N > 1) times, per call, N tokens' tables + the product two ways for I2_S (the runtime's) and the
rendered TL1 / TL2: "gemv/token" (one gemv per token: the TL path before the gemm) and "gemm"; times are per token.

--e2e measures end to end instead: `bitedge-run bench` (pp<P> and tg<N> tokens/s, 1 thread) on one random model
(`bitedge dummy` preset, default 700M) written as i2_s, tl1 and tl2, with the runtime as shipped (TL kernels
specialised to the model's shapes). Runs are interleaved round by round; prints mean +- sd over every sample.

    python3 bench/bench_kernels.py --e2e --preset 700M -p 32 -n 16 --rounds 4 --reps 3
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

from bitedge.targets import get_target  # noqa: E402
from bitedge.render import c_sources, render_driver, render_kernels, target_isas  # noqa: E402
from bitedge.builder.tuner import LocalTimer, compile_driver, time_kernel, write_case  # noqa: E402
from bitedge.render.tune import cpu_model, tuned_tiles  # noqa: E402

# BitNet b1.58 2B-4T: hidden 2560, FFN 6912, 20 heads / 5 KV heads of 128
SHAPES_2B4T = {"attn_q/attn_output": (2560, 2560), "attn_k/attn_v": (640, 2560), "ffn_gate/ffn_up": (6912, 2560),
               "ffn_down": (2560, 6912)}
METHODS = ("i2_s-runtime", "tl1", "tl2")
RENDERED = ("tl1", "tl2")


def kernel_runs(tokens: int) -> list[tuple[str, str, str]]:
    """(label, driver method, driver mode) per timed variant; the first is the baseline of the ratios."""
    if tokens <= 1:
        return [(m, m, "time") for m in METHODS]
    return [(f"{m} {how}", m, mode) for m in ("i2_s-runtime", "tl1", "tl2")
            for how, mode in (("gemm", "time-gemm"), ("gemv/token", "time-tokens"))]


def write_tokens(q_one: Path, k: int, kp: int, tokens: int, seed: int = 2) -> Path:
    """q_one's row followed by tokens - 1 random int8 rows (zero past K, as write_case's)."""
    import numpy as np

    q = np.zeros((tokens, kp), dtype=np.int8)
    q[0] = np.fromfile(q_one, dtype=np.int8)
    q[1:, :k] = np.random.default_rng(seed).integers(-127, 128, size=(tokens - 1, k)).astype(np.int8)
    out = q_one.with_suffix(f".q{tokens}")
    out.write_bytes(q.tobytes())
    return out


def time_call(timer, exe, method, mode, isa, w, q, n, kp, reps, tokens) -> dict[str, float]:
    """One driver timing (timer: bitedge.builder.tuner.LocalTimer); for several tokens the per-token share of each call."""
    if mode == "time":
        return time_kernel(timer, str(exe), method, isa, str(w), str(q), n, kp, reps)
    out = timer.run([str(exe), mode, method, isa, str(w), str(q), str(n), str(kp), str(reps), str(tokens)], timeout=600)
    mean, sd, best = (float(x) / tokens for x in out.split()[:3])
    return {"mean_ns": mean, "sd_ns": sd, "min_ns": best}


def parse_shapes(text: str) -> dict[str, tuple[int, int]]:
    out = {}
    for item in text.split(","):
        n, _, k = item.strip().partition("x")
        out[item.strip()] = (int(n), int(k))
    return out


E2E_RUNS = ("i2_s", "tl1", "tl2")


def run_e2e(args, target) -> int:
    import subprocess

    from bitedge.convert.dummy import dummy_source
    from bitedge.convert.gguf_writer import write_gguf
    from bitedge.output import last_json

    models_dir = Path(args.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    source = dummy_source(args.preset, seed=0)
    models = {}
    for packing in ("i2_s", "tl1", "tl2"):  # the same random weights in each layout
        models[packing] = models_dir / f"{args.preset}-{packing}-{args.embed_type}.gguf"
        if not models[packing].exists():
            print(f"# writing {models[packing]}", file=sys.stderr)
            write_gguf(source, models[packing], packing=packing, embed_type=args.embed_type)
    from bitedge.builder.compile import build_runtime

    binary = build_runtime(target, model=models["tl1"], out_dir=Path(args.build_dir)).binary
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label in E2E_RUNS:
            cmd = [str(binary), "bench", "-m", str(models[label]), "-p", str(args.n_prompt), "-n",
                   str(args.n_gen), "-t", "1", "-r", str(args.reps), "--json"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            if proc.returncode != 0:
                raise SystemExit(f"{label}: bitedge-run bench failed: {proc.stderr.strip()[-300:]}")
            result = last_json(proc.stdout)
            for row in result["results"] if isinstance(result, dict) else result:
                samples.setdefault((label, row["test"]), []).extend(row["samples_ts"])
    tests = sorted({t for _, t in samples}, key=lambda t: (t[:2] != "pp", t))
    rows = []
    for label in E2E_RUNS:
        row = {"run": label}
        for test in tests:
            ts = samples[label, test]
            row[test] = {"mean_ts": statistics.mean(ts), "sd_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0,
                         "samples": len(ts)}
        rows.append(row)
    print(f"# end to end, {args.preset} (embeddings {args.embed_type}), 1 thread, {cpu_model()}, "
          f"{args.rounds} rounds x {args.reps} reps (tokens/s, mean +- sd)")
    print("| run | " + " | ".join(tests) + " |")
    print("|---|" + "---:|" * len(tests))
    for row in rows:
        print(f"| {row['run']} | " + " | ".join(f"{row[t]['mean_ts']:.1f} +- {row[t]['sd_ts']:.1f}" for t in tests) + " |")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"cpu": cpu_model(), "preset": args.preset, "embed_type": args.embed_type,
                                   "rounds": args.rounds, "reps": args.reps, "rows": rows}, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="x86-64-avx2", help="a native target profile (default x86-64-avx2)")
    ap.add_argument("--shapes", help="NxK,NxK,... (default: the 2B-4T matrices)")
    ap.add_argument("--reps", type=int, help="calls per timing (default 30; --e2e: bench repetitions, default 3)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 7; --e2e: 3)")
    ap.add_argument("--tuned", action="store_true", help="use tiles from the tuning cache (bitedge tune)")
    ap.add_argument("--tokens", type=int, default=1, help="tokens per call (> 1: gemm vs gemv per token)")
    ap.add_argument("--json", help="also write the results here")
    e2e = ap.add_argument_group("end to end (--e2e)")
    e2e.add_argument("--e2e", action="store_true", help="bitedge-run bench of i2_s vs tl1 vs tl2, TL gemm vs gemv/token")
    e2e.add_argument("--preset", default="700M", help="bitedge dummy preset (default 700M)")
    e2e.add_argument("--embed-type", default="q8_0", help="embedding / output type of the files (default q8_0)")
    e2e.add_argument("-p", "--n-prompt", type=int, default=32, help="prompt tokens (default 32)")
    e2e.add_argument("-n", "--n-gen", type=int, default=16, help="generated tokens (default 16)")
    e2e.add_argument("--models-dir", default=str(ROOT / "build" / "bench" / "models"))
    e2e.add_argument("--build-dir", default=str(ROOT / "build" / "bench" / "tl-e2e"))
    args = ap.parse_args(argv)

    target = get_target(args.target)
    if target.runner:
        ap.error(f"{target.id} runs under an emulator: no speed numbers from qemu")
    if args.e2e:
        args.reps, args.rounds = args.reps or 3, args.rounds or 3
        return run_e2e(args, target)
    args.reps, args.rounds = args.reps or 30, args.rounds or 7
    timer = LocalTimer(target)
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
        runs = kernel_runs(args.tokens)
        for label, (n, k) in shapes.items():
            cases = {m: write_case(m, (n, k), Path(tmp) / "data", seed=1) for m in METHODS}
            if args.tokens > 1:
                cases = {m: (w, write_tokens(q, k, kp, args.tokens), kp) for m, (w, q, kp) in cases.items()}
            per_round = {r[0]: [] for r in runs}
            best = {r[0]: float("inf") for r in runs}
            for _ in range(args.rounds):
                for run, m, mode in runs:
                    w, q, kp = cases[m]
                    t = time_call(timer, exe, m, mode, isa, w, q, n, kp, args.reps, args.tokens)
                    per_round[run].append(t["mean_ns"])
                    best[run] = min(best[run], t["min_ns"])
            base, base_min = statistics.mean(per_round[runs[0][0]]), best[runs[0][0]]
            for run, _, _ in runs:
                mean = statistics.mean(per_round[run])
                sd = statistics.stdev(per_round[run]) if args.rounds > 1 else 0.0
                rows.append({"matrix": label, "n": n, "k": k, "method": run, "isa": isa, "mean_us": mean / 1e3,
                             "sd_us": sd / 1e3, "min_us": best[run] / 1e3, "gweights_per_s": n * k / mean, "speed_vs_i2s": base / mean,
                             "speed_vs_i2s_min": base_min / best[run]})
    what = "matrix-vector" if args.tokens <= 1 else f"{args.tokens} tokens per call, times per token"
    print(f"# single-thread ternary {what}, {cpu_model()} ({isa}), {args.rounds} rounds x {args.reps} calls; "
          f"ratios against {runs[0][0]}")
    per = "call" if args.tokens <= 1 else "token"
    print(f"| matrix | N x K | method | us / {per} (mean +- sd) | min us | Gweights/s (mean) | vs I2_S (mean) | vs I2_S (min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['matrix']} | {r['n']} x {r['k']} | {r['method']} | {r['mean_us']:.1f} +- {r['sd_us']:.1f} | "
              f"{r['min_us']:.1f} | {r['gweights_per_s']:.2f} | {r['speed_vs_i2s']:.2f} | {r['speed_vs_i2s_min']:.2f} |")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"cpu": cpu_model(), "isa": isa, "rounds": args.rounds, "reps": args.reps,
                                   "tokens": args.tokens, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
