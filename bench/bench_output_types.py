#!/usr/bin/env python3
"""bitedge-run with the output (embedding) matrix in Q8_0, Q6_K and Q4_0 on the same ternary weights (issue 13 item 5).

The output matrix is ~40% of the bytes read per generated token on the 2B-4T shape at Q8_0 (128,256 x 2,560). For
each type, one I2_S file of the same `bitedge dummy` weights (seed 0, tied embedding) is written; bitedge-run bench
measures pp<P> / tg<N> with each, interleaved round by round (order reversed every other round), and reports
mean ± sd over all samples, the per-round ratio against the first type (paired: the same minute, the same load),
file and output-matrix sizes, peak RSS, the single-thread read-bandwidth roofline, and the load average.
--llama also runs llama.cpp's llama-bench on a TQ2_0 file of the same weights with token_embd in the same type
(written by bitedge's writer, as bench_runtime.py does for q8_0), so bitedge / llama.cpp compares like with like.

    python3 bench/bench_output_types.py --preset 2.4B --types q8_0,q6_k,q4_0 -t 1 -r 2 --rounds 3 [--llama]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_runtime import cpu_name, model_files, rows_of, run_json, stream_read_gbs, test_name  # noqa: E402
from bitedge.gguf_read import open_gguf  # noqa: E402



def output_matrix_bytes(path: Path) -> int:
    g = open_gguf(path)
    return sum(g.by_name[n].nbytes for n in ("token_embd.weight", "output.weight") if n in g.by_name)


def measure(a, bitedge_run: Path, files: dict, llama_bench: Path | None) -> tuple[dict, dict, dict]:
    """samples[(engine, type, test)] -> t/s samples, per_round[...] -> the mean of each round, rss[type] -> MB"""
    samples: dict[tuple, list[float]] = {}
    per_round: dict[tuple, list[float]] = {}
    rss: dict[str, float] = {}
    types = list(files)
    for rnd in range(a.rounds):
        for et in types if rnd % 2 == 0 else types[::-1]:
            i2s, tq2 = files[et]
            runs = [("bitedge i2_s", run_json([str(bitedge_run), "bench", "-m", str(i2s), "-p", str(a.n_prompt), "-n",
                                               str(a.n_gen), "-t", str(a.threads), "-r", str(a.reps), "--json"]))]
            if llama_bench is not None:
                runs.append(("llama.cpp tq2_0", run_json([str(llama_bench), "-m", str(tq2), "-p", str(a.n_prompt), "-n",
                                                          str(a.n_gen), "-t", str(a.threads), "-r", str(a.reps), "-o",
                                                          "json"])))
            for engine, result in runs:
                for r in rows_of(result):
                    key = (engine, et, test_name(r))
                    samples.setdefault(key, []).extend(r["samples_ts"])
                    per_round.setdefault(key, []).append(statistics.mean(r["samples_ts"]))
                    if engine.startswith("bitedge"):
                        rss[et] = max(rss.get(et, 0.0), float(r.get("peak_rss_mb") or 0.0))
        print(f"round {rnd + 1}/{a.rounds} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return samples, per_round, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="2.4B")
    ap.add_argument("--types", default="q8_0,q6_k,q4_0", help="output matrix types; the first is the baseline")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-p", "--n-prompt", type=int, default=128)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=2, help="repetitions per bench call (one call per type per round)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama", action="store_true", help="also llama.cpp TQ2_0 with token_embd in the same type")
    ap.add_argument("--models-dir", default=str(ROOT / "build" / "bench" / "models"))
    ap.add_argument("-o", "--output", default=str(ROOT / "build" / "bench" / "output_types.json"))
    a = ap.parse_args()

    from bitedge.builder.compile import build_runtime
    from bitedge.targets import get_target

    types = a.types.split(",")
    bitedge_run = build_runtime(get_target("x86-64-avx2")).binary
    llama_bench = None
    if a.llama:
        from llamacpp import build_llama_bench

        llama_bench = build_llama_bench()
    packings = ("i2_s", "tq2_0") if a.llama else ("i2_s",)
    files = {et: model_files(a.preset, Path(a.models_dir), et, packings=packings) for et in types}
    load_before = os.getloadavg()
    bw = stream_read_gbs(a.threads)
    samples, per_round, rss = measure(a, bitedge_run, files, llama_bench)
    report = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()},
              "method": f"bitedge-run bench -p {a.n_prompt} -n {a.n_gen} -t {a.threads} -r {a.reps}, {a.rounds} rounds "
                        f"interleaved by type (order reversed every other round)" + ("; llama-bench likewise" if a.llama else ""),
              "preset": a.preset, "threads": a.threads, "stream_read_gbs": bw, "rows": []}
    base = types[0]
    for (engine, et, test), ts in sorted(samples.items(), key=lambda kv: (kv[0][0], types.index(kv[0][1]), kv[0][2])):
        i2s, tq2 = files[et]
        path = i2s if engine.startswith("bitedge") else tq2
        row = {"engine": engine, "type": et, "test": test, "mean_ts": statistics.mean(ts),
               "sd_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0, "n_samples": len(ts),
               "file_bytes": path.stat().st_size, "output_matrix_bytes": output_matrix_bytes(path)}
        if engine.startswith("bitedge"):
            row["peak_rss_mb"] = rss.get(et)
        if test.startswith("tg"):
            row["roofline_ts"] = bw * 1e9 / row["file_bytes"]  # generation reads every tensor once per token
        if et != base and (engine, base, test) in per_round:
            ratios = [x / y for x, y in zip(per_round[engine, et, test], per_round[engine, base, test])]
            row["paired_ratios_vs_" + base] = ratios
            row["median_ratio_vs_" + base] = statistics.median(ratios)
        if engine.startswith("bitedge") and ("llama.cpp tq2_0", et, test) in per_round:
            ratios = [x / y for x, y in zip(per_round[engine, et, test], per_round["llama.cpp tq2_0", et, test])]
            row["median_ratio_vs_llama_cpp"] = statistics.median(ratios)
        report["rows"].append(row)
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report, base))


def markdown(report: dict, base: str) -> str:
    m = report["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, {m['date']}, load average {m['load_average_before'][0]:.2f} before / "
             f"{m['load_average_after'][0]:.2f} after; {report['method']}; read bandwidth {report['stream_read_gbs']:.1f} GB/s "
             f"at {report['threads']} thread(s)", "",
             f"| engine | output type | file MB | output matrix MB | test | t/s (mean ± sd) | vs {base} (median of rounds) "
             "| roofline t/s | vs llama.cpp (same type) | peak RSS MB |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        ratio = r.get("median_ratio_vs_" + base)
        lines.append(f"| {r['engine']} | {r['type']} | {r['file_bytes'] / 1e6:.0f} | {r['output_matrix_bytes'] / 1e6:.0f} | "
                     f"{r['test']} | {r['mean_ts']:.2f} ± {r['sd_ts']:.2f} | {format(ratio, '.2f') + 'x' if ratio else ''} | "
                     f"{format(r['roofline_ts'], '.1f') if 'roofline_ts' in r else ''} | "
                     f"{format(r['median_ratio_vs_llama_cpp'], '.2f') + 'x' if 'median_ratio_vs_llama_cpp' in r else ''} | "
                     f"{format(r['peak_rss_mb'], '.0f') if r.get('peak_rss_mb') else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
