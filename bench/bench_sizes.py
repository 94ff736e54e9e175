#!/usr/bin/env python3
"""Cost as models grow: bitedge-run from 125M to 70B parameters against the read-bandwidth roofline (issue 13 item 6).

    python3 bench/bench_sizes.py -o build/bench/sizes.json --plot docs/img/sizes-zen3.png
    python3 bench/bench_sizes.py --with-100b ...          # also 100B: larger than this machine's RAM

For each `bitedge dummy` preset (seed 0, I2_S, Q8_0 embedding; written as `bitedge dummy` writes it, tied or not):
the file size, a short pp and a tg at 1 and 2 threads (`bitedge-run bench`, fewer tokens for the big ones), the
peak RSS that run reports, the load time and the first token of a fresh process (`bitedge-run generate`), and the
roofline: STREAM read GB/s (bench/stream.c, measured in the same run before and after the models, the higher
kept) / the bytes one generated token reads (every tensor of the file, except the token embedding of an untied
model, of which one row is read). Prints a markdown table, writes JSON and, with --plot, a PNG.

Models are cached in --models-dir (default ~/.cache/bitedge/sizes) and reused; a missing one is written by
`bitedge dummy` (under a temporary name, renamed when complete) after checking that every missing file fits on
the disk with a margin: if not, one line says so and nothing is written. All files are written before the first
measurement, so the measurements run in one window.

100B (25 GB at I2_S) is larger than the 24 GiB of RAM here: mmap then reads from disk for every token, so it runs
only with --with-100b: at the first thread count only, one repetition of 2 generated tokens (after a warm-up of 2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_peers import bench_cmd  # noqa: E402
from bench_runtime import cpu_name, rows_of, run_json, stream_read_gbs, test_name  # noqa: E402

PRESETS = ["125M", "350M", "700M", "1.3B", "2.4B", "3.8B", "7B", "13B", "30B", "70B"]
BEYOND_RAM = "100B"
SEED, PACKING, EMBED = 0, "i2_s", "q8_0"
DISK_MARGIN = 1 << 30  # left free after the missing files are written
DEFAULT_MODELS_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bitedge" / "sizes"


def tokens_for(n_params: int) -> tuple[int, int]:
    """(pp tokens, tg tokens): fewer for big models, so that a 70B stays within minutes on 2 cores."""
    if n_params < 4e9:
        return 32, 32
    if n_params < 14e9:
        return 16, 16
    if n_params < 40e9:
        return 8, 8
    if n_params < 80e9:
        return 4, 4
    return 0, 2  # beyond RAM: generation only, each token read from disk


def model_path(models_dir: Path, preset: str) -> Path:
    return models_dir / f"{preset}-{PACKING}-{EMBED}-seed{SEED}.gguf"


def planned_bytes(preset: str) -> tuple[int, int]:
    """(file bytes of the tensors, bytes one generated token reads), from the config alone (nothing is written)."""
    from bitedge.convert.dummy import preset_config
    from bitedge.convert.gguf_writer import plan_tensors

    config = preset_config(preset)
    plans = plan_tensors(config, PACKING, EMBED)
    total = sum(p.nbytes for p in plans)
    per_token = total
    if not config.tie_embeddings:  # the embedding is only looked up: one row per token
        embd = next(p for p in plans if p.name == "token_embd.weight")
        per_token -= embd.nbytes - embd.nbytes // embd.shape[0]
    return total, per_token


def check_disk(models_dir: Path, missing: list[str], free_bytes: int | None = None) -> None:
    """SystemExit (one line) unless every missing file fits in models_dir with DISK_MARGIN to spare."""
    if not missing:
        return
    need = sum(planned_bytes(p)[0] for p in missing) + (64 << 20) * len(missing)  # + headers, tokenizer, padding
    free = shutil.disk_usage(models_dir).free if free_bytes is None else free_bytes
    if need + DISK_MARGIN > free:
        raise SystemExit(f"not enough disk space in {models_dir}: the {', '.join(missing)} file(s) need "
                         f"{need / 1e9:.1f} GB plus a {DISK_MARGIN / 1e9:.1f} GB margin, {free / 1e9:.1f} GB is free "
                         f"(free some space, pass fewer --presets or another --models-dir)")


def run_measured(cmd: list[str], timeout: float = 7200) -> dict:
    """Run cmd; its stdout, wall seconds and peak RSS (MB, from wait4: this child alone). Failure: SystemExit."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        try:
            deadline = t0 + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    os.wait4(proc.pid, 0)
                    raise SystemExit(f"{Path(cmd[0]).name} took more than {timeout:.0f} s: {' '.join(cmd)}")
                time.sleep(0.05)
        except KeyboardInterrupt:
            proc.kill()
            raise
        code = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise SystemExit(f"{Path(cmd[0]).name} failed ({code}): {stderr.strip()[-1500:]}")
    return {"stdout": stdout, "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def write_model(preset: str, path: Path) -> dict:
    """`bitedge dummy` in a process of its own (so its time and peak RSS are its own)."""
    cmd = [sys.executable, "-c", "import sys; from bitedge.cli import main; sys.argv[0] = 'bitedge'; main()",
           "dummy", "--preset", preset, "--type", PACKING, "--embed-type", EMBED, "--seed", str(SEED),
           "-o", str(path), "--no-progress", "--json"]
    r = run_measured(cmd)
    return {"write_seconds": r["seconds"], "write_peak_rss_mb": r["peak_rss_mb"]}


def load_and_first_token(exe: Path, model: Path) -> dict:
    """A fresh bitedge-run process: its load time (open, map, parse) and its first token (every weight is paged in
    by it), from `generate --json`; wall seconds of the whole process too."""
    r = run_measured([str(exe), "generate", "-m", str(model), "--tokens", "1", "-n", "1", "-t", "1", "--json"])
    timings = json.loads(r["stdout"].strip().splitlines()[-1])["timings"]
    return {"load_ms": timings["load_ms"], "first_token_ms": timings["prompt_ms"], "process_seconds": r["seconds"]}


def cpu_id() -> str:
    """Family, model and the widest x86 vector ISA, which name the CPU better than "AMD EPYC" does."""
    fields: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    isa = "AVX-512" + (" VNNI" if "avx512_vnni" in flags else "") if "avx512f" in flags else \
        "AVX2" if "avx2" in flags else "no AVX2"
    return f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {isa}"


def meminfo_bytes(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(exe: Path, preset: str, path: Path, threads: list[int], reps: int, tokens: tuple[int, int] | None) -> dict:
    """One preset: bench rows (pp and tg per thread count), peak RSS, load time."""
    from bitedge.convert.dummy import preset_config

    config = preset_config(preset)
    n_prompt, n_gen = tokens or tokens_for(config.n_params())
    if preset == BEYOND_RAM:  # every pass reads the file from disk: one thread count, one repetition
        threads, reps = threads[:1], 1
    _, per_token = planned_bytes(preset)  # the header and tokenizer are not read per token
    entry = {"preset": preset, "n_params": config.n_params(), "tied": config.tie_embeddings,
             "file_bytes": path.stat().st_size, "bytes_per_token": per_token,
             "mem_available_bytes": meminfo_bytes("MemAvailable"), "n_prompt": n_prompt, "n_gen": n_gen,
             "load_avg_before": os.getloadavg(), "rows": []}
    # against what is available now (page cache included, the model's own cached pages too): what the kernel can keep
    entry["fits_in_ram"] = path.stat().st_size < entry["mem_available_bytes"]
    if not entry["fits_in_ram"]:
        print(f"{preset}: the file ({path.stat().st_size / 1e9:.1f} GB) is larger than the memory available "
              f"({entry['mem_available_bytes'] / 1e9:.1f} GB): mmap reads it from disk for every token",
              file=sys.stderr, flush=True)
    entry.update(load_and_first_token(exe, path))
    a = argparse.Namespace(n_prompt=n_prompt, n_gen=n_gen, reps=reps)
    samples: dict[tuple, list[float]] = {}
    rss = 0.0
    for r in rows_of(run_json(bench_cmd("bitedge", exe, path, a, threads), timeout=7200)):
        samples.setdefault((int(r["n_threads"]), test_name(r)), []).extend(r["samples_ts"])
        rss = max(rss, float(r.get("peak_rss_mb") or 0.0))
        entry["kernels"] = r.get("kernels")
    entry["peak_rss_mb"] = rss
    for (t, test), ts in sorted(samples.items()):
        entry["rows"].append({"threads": t, "test": test, "mean_ts": statistics.mean(ts),
                              "sd_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0, "n_samples": len(ts)})
    entry["load_avg_after"] = os.getloadavg()
    return entry


def add_roofline(report: dict) -> None:
    for m in report["models"]:
        for r in m["rows"]:
            bw = report["stream_read_gbs"].get(str(r["threads"]))
            if r["test"].startswith("tg") and bw:
                r["roofline_ts"] = bw * 1e9 / m["bytes_per_token"]
                r["fraction_of_roofline"] = r["mean_ts"] / r["roofline_ts"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated `bitedge dummy` presets")
    ap.add_argument("--with-100b", action="store_true", help="also 100B, which does not fit in RAM here (read from disk)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-r", "--reps", type=int, default=2, help="repetitions per test (after bitedge-run's warm-up)")
    ap.add_argument("--tokens", help="PP,TG for every preset instead of the size-dependent defaults (e.g. 8,4)")
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    ap.add_argument("--stream-mib", type=int, default=512, help="MiB per STREAM array (keep it well above the caches)")
    ap.add_argument("--assume-free-bytes", type=int,
                    help="take this as the free disk space instead of asking the file system (for tests)")
    ap.add_argument("--write-only", action="store_true", help="write the missing model files and stop (so that the "
                                                                "measurements can later run in one quiet window)")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "build" / "bench" / "sizes.json")
    ap.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    a = ap.parse_args(argv)
    from bitedge.convert.dummy import preset_config
    from bitedge.errors import BitedgeError

    try:  # canonical names ("2b" -> "2.4B"), so file names and the 100B rule do not depend on spelling
        a.preset_list = [preset_config(p.strip()).name.removeprefix("dummy-") for p in a.presets.split(",") if p.strip()]
    except BitedgeError as e:
        raise SystemExit(f"--presets: {e}") from None
    if not a.preset_list:
        raise SystemExit("--presets: no preset given")
    if BEYOND_RAM in a.preset_list and not a.with_100b:
        raise SystemExit("--presets 100B: 100B does not fit in this machine's RAM (mmap reads it from disk for every "
                         "token); pass --with-100b to measure it anyway")
    if a.with_100b and BEYOND_RAM not in a.preset_list:
        a.preset_list.append(BEYOND_RAM)
    try:
        a.thread_list = [int(t) for t in a.threads.split(",")]
        a.token_pair = tuple(int(x) for x in a.tokens.split(",")) if a.tokens else None
    except ValueError:
        raise SystemExit("--threads and --tokens take comma-separated integers") from None
    if not a.thread_list or min(a.thread_list) < 1 or a.reps < 1:
        raise SystemExit("--threads and --reps must be at least 1")
    if a.token_pair is not None and (len(a.token_pair) != 2 or min(a.token_pair) < 0 or a.token_pair[1] < 1):
        raise SystemExit("--tokens must be PP,TG with PP >= 0 and TG >= 1")
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    import sizes_report

    a.models_dir.mkdir(parents=True, exist_ok=True)
    paths = {p: model_path(a.models_dir, p) for p in a.preset_list}
    missing = [p for p, path in paths.items() if not path.exists()]
    check_disk(a.models_dir, missing, a.assume_free_bytes)
    written = {}
    for p in missing:
        print(f"writing {paths[p]} (bitedge dummy --preset {p})", file=sys.stderr, flush=True)
        written[p] = write_model(p, paths[p])
        print(f"  {written[p]['write_seconds']:.0f} s, peak RSS {written[p]['write_peak_rss_mb']:.0f} MB", file=sys.stderr)
    if a.write_only:
        print(json.dumps({p: {"path": str(paths[p]), **written.get(p, {})} for p in a.preset_list}, indent=2))
        return

    from bitedge.builder.compile import build_runtime
    from bitedge.targets import get_target

    exe = build_runtime(get_target("x86-64-avx2")).binary
    t0 = time.time()
    report = {"machine": {"cpu": f"{cpu_name()} ({cpu_id()})", "cores": os.cpu_count(), "mem_total_bytes": meminfo_bytes("MemTotal"),
                          "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC"},
              "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
              "method": f"bitedge-run bench -t {a.threads} -r {a.reps} (after its warm-up) per preset; pp/tg tokens "
                        "by size unless --tokens", "load_avg_start": os.getloadavg(), "models": []}
    before = {t: stream_read_gbs(t, a.stream_mib) for t in a.thread_list}
    for p in a.preset_list:
        print(f"{p}: measuring ({time.time() - t0:.0f} s; load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        entry = measure(exe, p, paths[p], a.thread_list, a.reps, a.token_pair)
        entry["path"] = str(paths[p])
        entry.update(written.get(p, {}))
        report["models"].append(entry)
    after = {t: stream_read_gbs(t, a.stream_mib) for t in a.thread_list}
    report["stream_read_gbs"] = {str(t): max(before[t], after[t]) for t in a.thread_list}
    report["stream_read_gbs_before_after"] = {str(t): [before[t], after[t]] for t in a.thread_list}
    report["load_avg_end"] = os.getloadavg()
    report["seconds"] = time.time() - t0
    add_roofline(report)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(report, indent=2) + "\n")
    print(sizes_report.markdown(report))
    if a.plot:
        print(sizes_report.plot(report, a.plot), file=sys.stderr)


if __name__ == "__main__":
    main()
