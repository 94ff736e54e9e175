#!/usr/bin/env python3
"""bitedge-run serve under concurrent clients: aggregate generation tokens/s, time to first token, memory.

For each client count C: start `bitedge-run serve --slots C` on a random ternary model of a preset's shape, then
  - time to first token: C requests of max_tokens 1 (a 16-word prompt each) sent at once; each one's latency;
  - throughput: C completions of N tokens (different prompts, ignore_eos) sent at once; aggregate tokens/s is
    all generated tokens (usage) over the wall time from the first request to the last answer;
and the server's peak RSS (VmHWM) afterwards. (A random model's tokens are mostly empty pieces, so streamed text
cannot show the first token: hence the 1-token requests.) Prints a markdown table and writes JSON.

    python3 bench/bench_serve.py --preset 700M --clients 1,2,4,8 -n 64 -t 1 -o build/bench/serve.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitedge.board import host_target_id  # noqa: E402
from bitedge.targets import get_target  # noqa: E402
from bitedge.build.compile import build_runtime  # noqa: E402
from bitedge.convert.dummy import dummy_source  # noqa: E402
from bitedge.convert.gguf_writer import write_gguf  # noqa: E402


def start(binary: Path, model: Path, slots: int, threads: int, ctx: int):
    proc = subprocess.Popen([str(binary), "serve", "-m", str(model), "--port", "0", "--slots", str(slots), "-t",
                             str(threads), "-c", str(ctx), "--queue", "0"], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # bounded by the server's start-up output
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, int(m.group(1))
    raise SystemExit(f"server did not start (exit {proc.wait()})")


def one_client(port: int, prompt: str, n: int, out: dict) -> None:
    body = json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=3600) as r:
        out["tokens"] = json.loads(r.read())["usage"]["completion_tokens"]
    out["end"] = time.perf_counter()
    out["latency"] = out["end"] - t0


def at_once(port: int, prompts: list[str], n: int) -> tuple[list[dict], float]:
    results = [{} for _ in prompts]
    threads = [threading.Thread(target=one_client, args=(port, p, n, r)) for p, r in zip(prompts, results)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, max(r["end"] for r in results) - t0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="700M")
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("-n", type=int, default=64, help="tokens per client")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-c", "--ctx", type=int, default=256)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()
    work = ROOT / "build" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    model = work / f"serve-{args.preset}.gguf"
    if not model.exists():
        write_gguf(dummy_source(args.preset, seed=1), model, packing="i2_s", embed_type="f16")
    built = build_runtime(get_target(host_target_id()), model=str(model))
    rows = []
    for c in [int(x) for x in args.clients.split(",")]:
        proc, port = start(built.binary, model, c, args.threads, args.ctx)
        try:
            one_client(port, "warm up", 2, {})
            first, _ = at_once(port, [" ".join(f"word{i}x{j}" for j in range(16)) for i in range(c)], 1)
            results, wall = at_once(port, [f"prompt number {i}" for i in range(c)], args.n)
            tokens = sum(r["tokens"] for r in results)
            rows.append({"clients": c, "slots": c, "threads": args.threads, "tokens": tokens, "wall_s": wall,
                         "aggregate_tps": tokens / wall, "per_client_tps": tokens / wall / c,
                         "ttft_ms_median": 1e3 * statistics.median(r["latency"] for r in first),
                         "ttft_ms_max": 1e3 * max(r["latency"] for r in first), "peak_rss_mb": peak_rss_mb(proc.pid)})
        finally:
            proc.terminate()
            proc.wait(30)
    print("| clients (= slots) | aggregate t/s | per client t/s | TTFT median / max (ms) | peak RSS (MiB) |\n"
          "|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['clients']} | {r['aggregate_tps']:.1f} | {r['per_client_tps']:.1f} | "
              f"{r['ttft_ms_median']:.0f} / {r['ttft_ms_max']:.0f} | {r['peak_rss_mb']:.0f} |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"preset": args.preset, "n": args.n, "ctx": args.ctx, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
