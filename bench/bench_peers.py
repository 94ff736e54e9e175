#!/usr/bin/env python3
"""bitedge-run against every peer on the same weights: llama.cpp TQ2_0, bitnet.cpp I2_S, ik_llama.cpp IQ2_BN and
IQ2_BN_R4, with the read-bandwidth roofline, in one run; prints the markdown table and writes JSON and a plot.

    python3 bench/bench_peers.py --presets 700M,2.4B --threads 1,2 --rounds 3 -o build/bench/peers.json

Per model shape (`bitedge dummy`, seed 0, tied embedding, q8_0 embedding in every engine): bitedge's I2_S file and
llama.cpp's TQ2_0 file are written by bitedge (bench_runtime.model_files); bitnet.cpp's and ik_llama.cpp's files by
their own llama-quantize from one F32 GGUF of the same tensors (bench/peers_weights.py), then checked against the
dummy (bitnet.cpp's I2_S must be byte-identical to bitedge's). Each round runs every engine once (bitedge-run bench
and each llama-bench with -p/-n/-t/-r), the order reversed every other round, so that load drifting on a shared
machine hits every engine alike; mean ± sd over all samples of all rounds. STREAM read bandwidth (bench/stream.c)
is measured in the same run, before the first and after the last round.

A preset may carry its own thread counts: `--presets 700M,2.4B:1` (2.4B at 1 thread only; `2.4B:1/2` for both).

Peers (bench/peers_build.py builds them, cached in ~/.cache/bitedge/peers, ~10 and ~30 min on 2 cores):
--bitnet-src / --ik-src a git directory or folder (default: the `fetch` mirrors under /work/.mirror, see
peers_build.py). --engines picks a subset; --no-build uses only peers already built (and says which are missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import peers_build  # noqa: E402
import peers_report  # noqa: E402
import peers_weights  # noqa: E402
from bench_runtime import cpu_name, model_files, run_json, stream_read_gbs, test_name  # noqa: E402

ENGINES = ["bitedge i2_s", "llama.cpp TQ2_0", "bitnet.cpp I2_S", "ik_llama.cpp IQ2_BN", "ik_llama.cpp IQ2_BN_R4"]


def parse_presets(text: str, threads: str) -> list[tuple[str, list[int]]]:
    out = []
    for item in filter(None, text.split(",")):
        preset, _, own = item.partition(":")
        try:
            out.append((preset, [int(t) for t in (own.split("/") if own else threads.split(","))]))
        except ValueError:
            raise SystemExit(f"--presets {item!r}: thread counts must be integers (e.g. 2.4B:1/2)") from None
    return out


def bench_cmd(engine: str, exe: Path, model: Path, a, threads: list[int]) -> list[str]:
    common = ["-m", str(model), "-p", str(a.n_prompt), "-n", str(a.n_gen), "-t", ",".join(map(str, threads)),
              "-r", str(a.reps)]
    if engine.startswith("bitedge"):
        return [str(exe), "bench", *common, "--json"]
    return [str(exe), *common, "-o", "json"]


def rss_of_one(cmd: list[str]) -> float:
    """Peak RSS (MB) of one run in its own process (RUSAGE_CHILDREN is a maximum over all children so far)."""
    code = ("import resource,subprocess,sys; subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,"
            "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
    return float(r.stdout.strip() or 0) / 1024


def resolve_engines(a) -> dict[str, Path]:
    """Engine label -> benchmark executable, for the engines asked for and available."""
    from bitedge.builder.compile import build_runtime
    from bitedge.targets import get_target

    asked = [x.strip() for x in (a.engines or "").split(",") if x.strip()]
    for x in asked:
        if not any(e.startswith(x) for e in ENGINES):
            raise SystemExit(f"--engines: unknown engine {x!r} (choose from {', '.join(ENGINES)})")
    wanted = [e for e in ENGINES if not asked or any(e.startswith(x) for x in asked)]
    exes: dict[str, Path] = {}
    for engine in wanted:
        if engine.startswith("bitedge"):
            exes[engine] = build_runtime(get_target("x86-64-avx2")).binary
        elif engine.startswith("llama.cpp"):
            from llamacpp import build_llama_bench

            exes[engine] = build_llama_bench()
        else:
            name = engine.split()[0]
            src = a.bitnet_src if name == "bitnet.cpp" else a.ik_src
            if a.no_build:
                bin_dir = peers_build.built(name, src)
                if bin_dir is None:
                    print(f"{engine}: not built yet (bench/peers_build.py --engine {name}); left out", file=sys.stderr)
                    continue
            else:
                bin_dir = peers_build.build(name, src, a.jobs, ik_src=a.ik_src)
            exes[engine] = bin_dir / "llama-bench"
    return exes


def model_paths(preset: str, models_dir: Path, exes: dict[str, Path], embed_type: str) -> dict[str, Path]:
    i2s, tq2 = model_files(preset, models_dir, embed_type)
    paths = {"bitedge i2_s": i2s, "llama.cpp TQ2_0": tq2}
    bins = {e.split()[0]: exes[e].parent for e in exes if e.split()[0] in peers_weights.PEER_TYPES}
    paths.update(peers_weights.peer_models(preset, models_dir, bins))
    return {e: p for e, p in paths.items() if e in exes}



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="700M,2.4B")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-p", "--n-prompt", type=int, default=128)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=1, help="repetitions per engine per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines", help=f"comma-separated subset of: {', '.join(ENGINES)} (a prefix picks several)")
    ap.add_argument("--bitnet-src", type=Path, default=peers_build.DEFAULT_SRC["bitnet.cpp"])
    ap.add_argument("--ik-src", type=Path, default=peers_build.DEFAULT_SRC["ik_llama.cpp"])
    ap.add_argument("--no-build", action="store_true", help="use only peers already built")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="build jobs for the peers")
    ap.add_argument("--embed-type", default="q8_0")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench" / "models")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "build" / "bench" / "peers.json",
                    help="JSON report; the plot goes next to it as .png")
    a = ap.parse_args()
    if a.rounds < 1 or a.reps < 1:
        raise SystemExit("--rounds and --reps must be at least 1")
    presets = parse_presets(a.presets, a.threads)
    from bitedge.convert.dummy import preset_config
    from bitedge.errors import BitedgeError

    try:
        for preset, threads in presets:
            preset_config(preset)
            if not threads or min(threads) < 1:
                raise BitedgeError(f"--threads for {preset}: thread counts must be at least 1")
    except BitedgeError as e:
        raise SystemExit(str(e)) from None

    exes = resolve_engines(a)
    if not exes:
        raise SystemExit("no engine to run")
    engines = [e for e in ENGINES if e in exes]
    all_threads = sorted({t for _, ts in presets for t in ts})
    stream_before = {t: stream_read_gbs(t) for t in all_threads}
    samples: dict[tuple, list[float]] = {}
    files: dict[tuple, int] = {}
    rss: dict[tuple, float] = {}
    kernels: dict[str, str] = {}
    models = []
    t0 = time.time()
    for preset, threads in presets:
        paths = model_paths(preset, a.models_dir, exes, a.embed_type)
        checks = peers_weights.peer_checks(preset, {e: p for e, p in paths.items() if e.split()[0] in peers_weights.PEER_TYPES},
                                           paths["bitedge i2_s"]) if "bitedge i2_s" in paths else {}
        for label, result in checks.items():
            print(f"{preset} {label}: {result}", file=sys.stderr)
        models.append(checks)
        for e, p in paths.items():
            files[(preset, e)] = p.stat().st_size
        for rnd in range(a.rounds):
            order = engines if rnd % 2 == 0 else engines[::-1]
            print(f"{preset} round {rnd + 1}/{a.rounds}: {', '.join(order)} ({time.time() - t0:.0f} s; "
                  f"load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
            for engine in order:
                data = run_json(bench_cmd(engine, exes[engine], paths[engine], a, threads), timeout=3600)
                for r in data["results"] if isinstance(data, dict) else data:
                    if r.get("kernels"):
                        kernels[engine] = r["kernels"]
                    samples.setdefault((preset, engine, int(r["n_threads"]), test_name(r)), []).extend(r["samples_ts"])
        # peak RSS: one short generation-only run per engine in a process of its own (RUSAGE_CHILDREN is a maximum
        # over every child so far); the weights are all read by the first token, so 16 tokens are enough
        short = argparse.Namespace(**{**vars(a), "n_prompt": 0, "n_gen": 16, "reps": 1})
        for engine in engines:
            rss[(preset, engine)] = rss_of_one(bench_cmd(engine, exes[engine], paths[engine], short, [max(threads)]))
        done = [p for p, _ in presets][:len(models)]
        if len(done) < len(presets):  # what is measured so far, in case the run is cut short
            write_report(a, make_report(a, engines, exes, kernels, stream_before, stream_before, samples, files, rss,
                                        done, models), final=False)
    stream_after = {t: stream_read_gbs(t) for t in all_threads}
    report = make_report(a, engines, exes, kernels, stream_before, stream_after, samples, files, rss,
                         [p for p, _ in presets], models)
    write_report(a, report, final=True)


def make_report(a, engines, exes, kernels, stream_before, stream_after, samples, files, rss, presets, checks) -> dict:
    stream = {t: max(stream_before[t], stream_after[t]) for t in stream_before}
    report = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                          "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC"},
              "method": (f"-p {a.n_prompt} -n {a.n_gen} -r {a.reps} per round, {a.rounds} interleaved rounds "
                         f"(order reversed every other round), mean ± sd over every sample"),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "n_prompt": a.n_prompt, "n_gen": a.n_gen, "engines": engines,
              "executables": {e: str(p) for e, p in exes.items()}, "bitedge_kernels": kernels,
              "stream_read_gbs": {str(t): v for t, v in stream.items()},
              "stream_read_gbs_before_after": {str(t): [stream_before[t], stream_after[t]] for t in stream_before},
              "models": peers_report.summarize(samples, files, rss, stream, presets, engines)}
    for m, c in zip(report["models"], checks):
        m["checks"] = c
    return report


def write_report(a, report: dict, final: bool) -> None:
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(report, indent=2) + "\n")
    if final:
        print(peers_report.markdown(report))
        print(peers_report.plot(report, a.output.with_suffix(".png")), file=sys.stderr)
    else:
        print(f"(partial report so far in {a.output})", file=sys.stderr)


if __name__ == "__main__":
    main()
