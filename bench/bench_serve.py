#!/usr/bin/env python3
"""bitedge-run serve under concurrent clients: aggregate tokens/s and tokens per CPU-second, with and without
continuous batching, and llama.cpp's llama-server on the same weights.

For each client count C and engine (bitedge-run serve --slots C --decode-batch 1, i.e. slots taking turns one step
at a time; bitedge-run serve --slots C, the decode steps of all busy slots batched; llama-server -np C, if asked):
start the server on a random ternary model of a preset's shape (tied output, Q8_0 embeddings: the same weights as
I2_S for bitedge and TQ2_0 for llama.cpp, as bench/bench_runtime.py), warm it up, then
  - time to first token: C requests of max_tokens 1 (a 16-token prompt each) sent at once; each one's latency;
  - throughput: C completions of N tokens (different 8-token prompts, ignore_eos) sent at once; aggregate tokens/s
    is all generated tokens (usage) over the wall time from the first request to the last answer, and tokens per
    CPU-second divides them by the server's user + system CPU time over the same span (the machine may be shared:
    this figure does not depend on what else runs);
and the server's peak RSS (VmHWM). Prompts are token ids, so both engines see the same tokens. Rounds interleave the
engines (order reversed every other round); the table gives mean ± sd over rounds. Writes JSON.

    python3 bench/bench_serve.py --preset 700M --clients 1,2,4,8 -n 64 -t 1 --rounds 3 --llama-server \\
        -o build/bench/serve.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bitedge.board import host_target_id  # noqa: E402
from bitedge.targets import get_target  # noqa: E402
from bitedge.builder.compile import build_runtime  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    """Start a server and wait (bounded) until /health answers 200."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{cmd[0]} did not come up: {log.read_text()[-2000:]}")


def one_client(port: int, prompt: list[int], n: int, out: dict) -> None:
    body = json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=3600) as r:
        out["tokens"] = json.loads(r.read())["usage"]["completion_tokens"]
    out["end"] = time.perf_counter()
    out["latency"] = out["end"] - t0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def at_once(port: int, prompts: list[list[int]], n: int, pid: int) -> tuple[list[dict], float, float]:
    results = [{} for _ in prompts]
    threads = [threading.Thread(target=one_client, args=(port, p, n, r)) for p, r in zip(prompts, results)]
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = cpu_seconds(pid) - cpu0
    if any("tokens" not in r for r in results):
        raise SystemExit("a request failed")
    return results, max(r["end"] for r in results) - t0, cpu


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(engine: str, cmd: list[str], port: int, clients: int, n: int, vocab: int, work: Path) -> dict:
    proc = start(cmd, port, work / f"{engine.replace(' ', '_')}-{clients}.log")
    try:
        one_client(port, [1, 2, 3], 2, {})
        first, _, _ = at_once(port, [[(100 + 17 * i + j) % vocab for j in range(16)] for i in range(clients)], 1,
                              proc.pid)
        results, wall, cpu = at_once(port, [[(7 + 31 * i + 5 * j) % vocab for j in range(8)] for i in range(clients)],
                                     n, proc.pid)
        tokens = sum(r["tokens"] for r in results)
        health = {}
        if engine.startswith("bitedge"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
                health = json.loads(r.read())
        return {"engine": engine, "clients": clients, "tokens": tokens, "wall_s": wall, "cpu_s": cpu,
                "aggregate_tps": tokens / wall, "tokens_per_cpu_s": tokens / cpu if cpu > 0 else float("nan"),
                "ttft_ms_median": 1e3 * statistics.median(r["latency"] for r in first),
                "peak_rss_mb": peak_rss_mb(proc.pid), "largest_batch": health.get("largest_batch")}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def mean_sd(xs: list[float]) -> str:
    xs = [x for x in xs if x == x]  # no NaN (a run too short for the CPU clock's ticks)
    if not xs:
        return "n/a"
    m = statistics.mean(xs)
    return f"{m:.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{m:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="700M")
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("-n", type=int, default=64, help="tokens per client")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-c", "--ctx", type=int, default=256, help="context per slot")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-server", action="store_true",
                    help="also llama.cpp's llama-server (built by bench/llamacpp.py --tool llama-server)")
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()
    from bench_runtime import model_files

    from bitedge.convert.dummy import preset_config

    work = ROOT / "build" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    i2s, tq2 = model_files(args.preset, work / "models", "q8_0",
                           packings=("i2_s", "tq2_0") if args.llama_server else ("i2_s",))
    binary = build_runtime(get_target(host_target_id()), model=str(i2s)).binary
    llama = None
    if args.llama_server:
        from llamacpp import build_llama_bench

        llama = build_llama_bench(tool="llama-server")
    counts = [int(x) for x in args.clients.split(",")]
    vocab = min(preset_config(args.preset).vocab_size, 30000)  # prompt token ids below it
    rows = []
    for rnd in range(args.rounds):
        for c in counts:
            port = free_port()
            common = ["serve", "-m", str(i2s), "--host", "127.0.0.1", "--port", str(port), "--slots", str(c), "-t",
                      str(args.threads), "-c", str(args.ctx), "--queue", "0"]
            engines = [("bitedge turns", [str(binary), *common, "--decode-batch", "1"]),
                       ("bitedge batched", [str(binary), *common])]
            if llama:
                engines.append(("llama-server", [str(llama), "-m", str(tq2), "--host", "127.0.0.1", "--port", str(port),
                                                 "-np", str(c), "-c", str(args.ctx * c), "-t", str(args.threads),
                                                 "-tb", str(args.threads), "--no-warmup"]))
            if rnd % 2:
                engines.reverse()
            for engine, cmd in engines:
                row = measure(engine, cmd, port, c, args.n, vocab, work)
                row["round"] = rnd
                rows.append(row)
                print(f"round {rnd} {engine:16s} clients {c}: {row['aggregate_tps']:.1f} t/s, "
                      f"{row['tokens_per_cpu_s']:.1f} t/CPU-s, largest batch {row['largest_batch']}", flush=True)
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{args.preset}, {args.threads} thread(s), {args.n} tokens per client, {args.rounds} rounds, {when}, "
          f"{platform.processor() or platform.machine()}\n")
    print("| clients | engine | aggregate t/s | vs turns | t per CPU-s | vs turns | TTFT median (ms) | peak RSS (MiB) |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|")

    def mean_of(c, e, key):
        xs = [r[key] for r in rows if r["clients"] == c and r["engine"] == e and r[key] == r[key]]
        return statistics.mean(xs) if xs else float("nan")

    for c in counts:
        for e in engines:
            sel = [r for r in rows if r["clients"] == c and r["engine"] == e]
            wall = mean_of(c, e, "aggregate_tps") / mean_of(c, "bitedge turns", "aggregate_tps")
            cpu = mean_of(c, e, "tokens_per_cpu_s") / mean_of(c, "bitedge turns", "tokens_per_cpu_s")
            print(f"| {c} | {e} | {mean_sd([r['aggregate_tps'] for r in sel])} | {wall:.2f}x | "
                  f"{mean_sd([r['tokens_per_cpu_s'] for r in sel])} | {cpu:.2f}x | "
                  f"{statistics.mean(r['ttft_ms_median'] for r in sel):.0f} | {max(r['peak_rss_mb'] for r in sel):.0f} |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"preset": args.preset, "n": args.n, "ctx": args.ctx, "threads": args.threads,
                                           "date": when, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
