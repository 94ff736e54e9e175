#!/usr/bin/env python3
"""bitedge-run vs llama.cpp TQ2_0 on the same weights, with a memory-bandwidth roofline, in one run.

For each model shape (from `bitedge dummy`): write an I2_S file for bitedge and a TQ2_0 file for llama.cpp
from the same random ternary weights, then measure pp<P> and tg<N> tokens/s at 1 and 2 threads with
`bitedge-run bench` and `llama-bench`, interleaved, repeated; and the single-thread read bandwidth with
bench/stream.c. Prints a markdown table and writes JSON (for docs/performance.md).

    python3 bench/bench_runtime.py --presets 700M,2.4B --threads 1,2 -r 5 -o build/bench/runtime.json

--kernels A,B,... compares bitedge-run's own kernel tables instead (BITEDGE_KERNELS=A, B, ...: the same binary and
I2_S file; llama.cpp is neither built nor run), interleaved round by round with the order reversed every other
round so that drift on a shared machine hits every table alike; ratios are against the first table:

    python3 bench/bench_runtime.py --kernels avx2,avx512-vnni --presets 700M --threads 1,2 -r 3 --rounds 4

--greedy-output compares, the same way, generation with every logit computed (BITEDGE_GREEDY_FULL=1, the
baseline) against the greedy output (kernels/runtime/output_greedy.c: exact logits only where the argmax can be):

    python3 bench/bench_runtime.py --greedy-output --presets 700M,2.4B --threads 1,2 -p 0 -r 3 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bitedge.convert.dummy import dummy_source  # noqa: E402
from bitedge.convert.gguf_writer import write_gguf  # noqa: E402
from bitedge.output import last_json  # noqa: E402


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def stream_read_gbs(threads: int, mib: int = 512) -> float:
    exe = ROOT / "build" / "bench" / "stream"
    exe.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-O3", "-march=native", "-std=c11", "-pthread", "-o", str(exe), str(ROOT / "bench" / "stream.c")], check=True)
    return json.loads(subprocess.run([str(exe), str(threads), str(mib)], capture_output=True, text=True, check=True).stdout)["read_gbs"]


def tied(source):
    """llama.cpp's bitnet graph always computes logits with token_embd, so both engines get a tied model."""
    if source.config.tie_embeddings:
        return source
    tensors = {k: v for k, v in source.tensors.items() if k != "output.weight"}
    return replace(source, config=replace(source.config, tie_embeddings=True), tensors=tensors)


def model_files(preset: str, out: Path, embed_type: str, packings=("i2_s", "tq2_0")) -> tuple[Path, Path | None]:
    """The same random ternary weights as an I2_S file (bitedge) and a TQ2_0 file (llama.cpp)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"tq2_0": None}
    for packing in packings:
        path = out / f"{preset}-{packing}-{embed_type}.gguf"
        if not path.exists():
            write_gguf(tied(dummy_source(preset, seed=0)), path, packing=packing, embed_type=embed_type)
        files[packing] = path
    return files["i2_s"], files["tq2_0"]


def run_json(cmd: list[str], timeout: float = 7200, env: dict | None = None) -> object:
    """The last JSON value cmd prints; a failure, a timeout or no JSON is one line (SystemExit)."""
    name = Path(cmd[0]).name
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{name} took more than {timeout:.0f} s: {' '.join(cmd)}") from None
    if r.returncode != 0:
        raise SystemExit(f"{name} failed ({r.returncode}): {r.stderr[-2000:]}")
    data = last_json(r.stdout)
    if data is None:
        raise SystemExit(f"{name} printed no JSON: {r.stdout[-500:]} {r.stderr[-500:]}")
    return data


def rows_of(result) -> list[dict]:
    return result["results"] if isinstance(result, dict) else result


def test_name(row: dict) -> str:
    """pp<N> or tg<N>: the test of one llama-bench style result row."""
    return f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="700M,2.4B")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-p", "--n-prompt", type=int, default=128)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of (bitedge, llama.cpp)")
    ap.add_argument("--embed-type", default="q8_0")
    ap.add_argument("--models-dir", default=str(ROOT / "build" / "bench" / "models"))
    ap.add_argument("-o", "--output", default=str(ROOT / "build" / "bench" / "runtime.json"))
    ap.add_argument("--kernels", help="compare these bitedge-run kernel tables (BITEDGE_KERNELS, comma-separated; "
                                      "the first is the baseline) instead of llama.cpp")
    ap.add_argument("--greedy-output", action="store_true",
                    help="compare the full output (BITEDGE_GREEDY_FULL=1, baseline) with the greedy output")
    a = ap.parse_args()

    from bitedge.builder.compile import build_runtime
    from bitedge.targets import get_target

    bitedge_run = build_runtime(get_target("x86-64-avx2")).binary
    report = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")},
              "stream_read_gbs": {str(t): stream_read_gbs(int(t)) for t in a.threads.split(",")}, "models": []}
    if a.kernels or a.greedy_output:
        # (label, environment, the kernel table bitedge-run must report or None)
        variants = ([(t, {"BITEDGE_KERNELS": t}, t) for t in a.kernels.split(",")] if a.kernels else
                    [("full output", {"BITEDGE_GREEDY_FULL": "1"}, None),
                     ("greedy output", {"BITEDGE_GREEDY_FULL": "0"}, None)])
        report["method"] = (f"bitedge-run bench -p {a.n_prompt} -n {a.n_gen} -t {a.threads} -r {a.reps}, "
                            f"{a.rounds} interleaved rounds per variant, order reversed every other round")
        for preset in a.presets.split(","):
            report["models"].append(compare_tables(a, preset, bitedge_run, variants, report))
        write_report(a.output, report)
        return

    from llamacpp import build_llama_bench

    llama_bench = build_llama_bench()
    for preset in a.presets.split(","):
        i2s, tq2 = model_files(preset, Path(a.models_dir), a.embed_type)
        samples: dict[tuple, list[float]] = {}
        rss: dict[int, float] = {}
        for _ in range(a.rounds):
            ours = rows_of(run_json([str(bitedge_run), "bench", "-m", str(i2s), "-p", str(a.n_prompt), "-n", str(a.n_gen),
                                     "-t", a.threads, "-r", str(a.reps), "--json"]))
            theirs = rows_of(run_json([str(llama_bench), "-m", str(tq2), "-p", str(a.n_prompt), "-n", str(a.n_gen),
                                       "-t", a.threads, "-r", str(a.reps), "-o", "json"]))
            for r in ours:
                rss[int(r["n_threads"])] = max(rss.get(int(r["n_threads"]), 0.0), float(r.get("peak_rss_mb") or 0.0))
            for engine, rows in (("bitedge i2_s", ours), ("llama.cpp tq2_0", theirs)):
                for r in rows:
                    test = test_name(r)
                    samples.setdefault((engine, int(r["n_threads"]), test), []).extend(r["samples_ts"])
        # generation streams every weight once per token (the tied embedding doubles as the output matrix):
        # bytes per token ~ the file's tensor bytes; the roofline is read bandwidth / that
        bytes_per_token = i2s.stat().st_size
        entry = {"preset": preset, "i2_s_bytes": i2s.stat().st_size, "tq2_0_bytes": tq2.stat().st_size,
                 "bytes_per_token": bytes_per_token, "peak_rss_mb": rss, "rows": []}
        for (engine, threads, test), ts in sorted(samples.items()):
            row = {"engine": engine, "threads": threads, "test": test,
                   "mean_ts": statistics.mean(ts), "sd_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0}
            bw = report["stream_read_gbs"].get(str(threads))
            if test.startswith("tg") and bw:
                row["roofline_ts"] = bw * 1e9 / (i2s.stat().st_size if engine.startswith("bitedge") else tq2.stat().st_size)
                row["fraction_of_roofline"] = row["mean_ts"] / row["roofline_ts"]
            entry["rows"].append(row)
        for threads in {r["threads"] for r in entry["rows"]}:
            for test in {r["test"] for r in entry["rows"]}:
                ours_ = [r for r in entry["rows"] if r["threads"] == threads and r["test"] == test and r["engine"].startswith("bitedge")]
                base = [r for r in entry["rows"] if r["threads"] == threads and r["test"] == test and r["engine"].startswith("llama")]
                if ours_ and base:
                    ours_[0]["speedup_vs_llama_cpp"] = ours_[0]["mean_ts"] / base[0]["mean_ts"]
        report["models"].append(entry)
    write_report(a.output, report)


def write_report(output: str, report: dict) -> None:
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def compare_tables(a, preset: str, bitedge_run: Path, variants: list[tuple], report: dict) -> dict:
    """bitedge-run bench of one I2_S file under each variant (label, environment, expected kernel table or None),
    interleaved; rows as main's, the ratio against the first variant in "speedup_vs_baseline"."""
    tables = [label for label, _, _ in variants]
    env_of = {label: (env, want) for label, env, want in variants}
    i2s, _ = model_files(preset, Path(a.models_dir), a.embed_type, packings=("i2_s",))
    samples: dict[tuple, list[float]] = {}
    per_round: dict[tuple, list[float]] = {}  # (table, threads, test) -> the mean of each round
    rss: dict[int, float] = {}
    for rnd in range(a.rounds):
        for table in tables if rnd % 2 == 0 else tables[::-1]:
            rows = rows_of(run_json([str(bitedge_run), "bench", "-m", str(i2s), "-p", str(a.n_prompt), "-n",
                                     str(a.n_gen), "-t", a.threads, "-r", str(a.reps), "--json"],
                                    env=env_of[table][0]))
            for r in rows:
                want = env_of[table][1]
                if want and r.get("kernels") != want:
                    raise SystemExit(f"BITEDGE_KERNELS={want} but bitedge-run ran {r.get('kernels')!r}")
                rss[int(r["n_threads"])] = max(rss.get(int(r["n_threads"]), 0.0), float(r.get("peak_rss_mb") or 0.0))
                test = test_name(r)
                samples.setdefault((table, int(r["n_threads"]), test), []).extend(r["samples_ts"])
                per_round.setdefault((table, int(r["n_threads"]), test), []).append(statistics.mean(r["samples_ts"]))
    entry = {"preset": preset, "i2_s_bytes": i2s.stat().st_size, "tq2_0_bytes": None,
             "bytes_per_token": i2s.stat().st_size, "peak_rss_mb": rss, "baseline": f"bitedge i2_s {tables[0]}",
             "rows": []}
    for table in tables:
        for (t, threads, test), ts in sorted(samples.items()):
            if t != table:
                continue
            row = {"engine": f"bitedge i2_s {table}", "threads": threads, "test": test,
                   "mean_ts": statistics.mean(ts), "sd_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0,
                   "n_samples": len(ts)}
            bw = report["stream_read_gbs"].get(str(threads))
            if test.startswith("tg") and bw:
                row["roofline_ts"] = bw * 1e9 / i2s.stat().st_size
                row["fraction_of_roofline"] = row["mean_ts"] / row["roofline_ts"]
            base = samples.get((tables[0], threads, test))
            if table != tables[0] and base:
                row["speedup_vs_baseline"] = row["mean_ts"] / statistics.mean(base)
                # paired by round (the two ran minutes apart, under the same load): steadier than the ratio of means
                # when the machine's load drifts between rounds
                ratios = [x / y for x, y in zip(per_round[table, threads, test], per_round[tables[0], threads, test])]
                row["paired_ratios"] = ratios
                row["median_paired_ratio"] = statistics.median(ratios)
            entry["rows"].append(row)
    return entry


def markdown(report: dict) -> str:
    baseline = "llama.cpp" if not report["models"] or "baseline" not in report["models"][0] else \
        report["models"][0]["baseline"].removeprefix("bitedge i2_s ")
    lines = [f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, {report['machine']['date']}; "
             f"STREAM read GB/s: {report['stream_read_gbs']}" + (f"; {report['method']}" if "method" in report else ""),
             "", f"| model | engine | threads | test | t/s (mean ± sd) | vs {baseline} | roofline t/s | of roofline |"
             + (" paired by round: median (min-max) |" if "method" in report else ""),
             "|---|---|---:|---|---:|---:|---:|---:|" + ("---:|" if "method" in report else "")]
    for m in report["models"]:
        for r in m["rows"]:
            ratio = r.get("speedup_vs_llama_cpp", r.get("speedup_vs_baseline", 0))
            lines.append(f"| {m['preset']} | {r['engine']} | {r['threads']} | {r['test']} | {r['mean_ts']:.2f} ± {r['sd_ts']:.2f} | "
                         f"{ratio and format(ratio, '.2f') + 'x' or ''} | "
                         f"{format(r['roofline_ts'], '.1f') if 'roofline_ts' in r else ''} | "
                         f"{format(r['fraction_of_roofline'], '.0%') if 'fraction_of_roofline' in r else ''} |"
                         + ((f" {r['median_paired_ratio']:.2f}x ({min(r['paired_ratios']):.2f}-{max(r['paired_ratios']):.2f}) |"
                             if "paired_ratios" in r else " |") if "method" in report else ""))
        tq2 = f", {m['tq2_0_bytes'] / 1e6:.0f} MB (tq2_0)" if m.get("tq2_0_bytes") else ""
        lines.append(f"| {m['preset']} | file {m['i2_s_bytes'] / 1e6:.0f} MB (i2_s){tq2}; "
                     f"bitedge peak RSS MB by threads {m['peak_rss_mb']} | | | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
