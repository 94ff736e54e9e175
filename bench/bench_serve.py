#!/usr/bin/env python3
"""bitedge-run serve under concurrent clients, side by side with llama.cpp's llama-server on the same weights.

Engines (--engines): `batched` is bitedge-run serve --slots C (the decode steps of all busy slots run as one batch),
`turns` the same with --decode-batch 1 (the slots take turns one step at a time), `llama-server` llama.cpp's server
with -np C (built by bench/llamacpp.py --tool llama-server from the llama-cpp-python sdist). The model is random
ternary weights of a preset's shape (tied output, Q8_0 embeddings), written once as I2_S for bitedge and as TQ2_0 for
llama.cpp from the same tensors (bench/bench_runtime.py `model_files`). Every server gets the same slots (C), threads
(-t, also llama-server's -tb), context per slot (-c; llama-server's -c is the total, C × that), no prompt cache.

For each client count C and engine, one fresh server, a warm-up request, then (all requests streamed over plain HTTP,
greedy, the same token-id prompts for both engines):
  - time to first token: C requests with max_tokens 1 (16-token prompts) sent at once; each one's latency until its
    stream ends (the prompt's prefill and one sampled token, nothing else);
  - throughput: C requests of N tokens (8-token prompts, ignore_eos) sent at once; aggregate tokens/s is all generated
    tokens (`usage.completion_tokens`) over the wall time from the first request to the last [DONE], and tokens per
    CPU-second divides them by the server process's user + system CPU time over the same span (the figure that does
    not depend on what else runs on a shared machine);
  - the server's peak RSS (VmHWM) after both. Memory per slot is (VmHWM with the most slots - VmHWM with 1 slot) /
    (slots - 1), per round: measured, so it counts only the memory the server touched (a KV cache allocated but not
    yet written is not in it); the KV cache each engine allocates per slot is printed next to it: 2 × layers × ctx ×
    kv_dim values, f32 in bitedge, f16 in llama-server (its default cache type; its log's `llama_kv_cache` size /
    slots instead when the log shows it).
Every request must generate exactly N (or 1) tokens, or the run stops: the engines then did the same work.
Rounds interleave the engines (order reversed every other round); the table gives mean ± sd over rounds, and each
engine's ratio to the baseline (llama-server when it runs, else turns) computed per round. Writes JSON.

    python3 bench/bench_serve.py --preset 700M --clients 1,2,4,8 -n 64 -t 1 --rounds 3 \\
        --engines batched,turns,llama-server -o build/bench/serve.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CLK_TCK = os.sysconf("SC_CLK_TCK")
ENGINES = ("batched", "turns", "llama-server")


# --- parsing and aggregation (no server needed; tests/test_bench_scripts.py) ---

def sse_events(lines: Iterable[bytes]) -> Iterable[dict]:
    """The JSON events of a server-sent event stream, up to `data: [DONE]` (other lines are skipped)."""
    for raw in lines:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise RuntimeError(f"server error in stream: {event['error']}")
        yield event


def stream_summary(events: Iterable[dict]) -> dict:
    """Text, token counts and finish reason of a streamed completion. Both servers put `usage` in a last event
    (bitedge with stream_options.include_usage, llama-server always); the last one seen counts."""
    text, usage, finish = [], None, None
    for e in events:
        for choice in e.get("choices") or []:
            text.append(choice.get("text") or "")
            finish = choice.get("finish_reason") or finish
        if e.get("usage"):
            usage = e["usage"]
    if usage is None:
        raise RuntimeError("the stream carried no usage")
    return {"text": "".join(text), "tokens": usage["completion_tokens"], "prompt_tokens": usage["prompt_tokens"],
            "finish_reason": finish}


def percentile(xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def mean_sd(xs: list[float], fmt: str = ".1f") -> str:
    xs = [x for x in xs if x == x]  # no NaN (a run too short for the CPU clock's ticks)
    if not xs:
        return "n/a"
    m = statistics.mean(xs)
    return f"{m:{fmt}} ± {statistics.stdev(xs):{fmt}}" if len(xs) > 1 else f"{m:{fmt}}"


def length_problems(rows: list[dict], n: int) -> list[str]:
    """Why the engines did not do the same work, if they did not: every throughput request must generate n tokens
    and every first-token request 1, and a prompt must count as many tokens in every engine."""
    out = []
    for r in rows:
        where = f"{r['engine']}, {r['clients']} clients, round {r['round']}"
        if any(t != n for t in r["tokens_each"]):
            out.append(f"{where}: requests generated {r['tokens_each']} tokens, not {n} each")
        if any(t != 1 for t in r["ttft_tokens_each"]):
            out.append(f"{where}: first-token requests generated {r['ttft_tokens_each']} tokens, not 1")
    for c in sorted({r["clients"] for r in rows}):
        prompts = {tuple(r["prompt_tokens_each"]) for r in rows if r["clients"] == c}
        if len(prompts) > 1:
            out.append(f"{c} clients: the engines counted different prompt lengths: {sorted(prompts)}")
    return out


def per_slot_mib(rows: list[dict], engine: str) -> list[float]:
    """(VmHWM with the most slots - VmHWM with 1 slot) / (slots - 1), one value per round that has both."""
    mine = [r for r in rows if r["engine"] == engine]
    if not mine:
        return []
    top = max(r["clients"] for r in mine)
    out = []
    for rnd in sorted({r["round"] for r in mine}):
        one = [r["peak_rss_mib"] for r in mine if r["round"] == rnd and r["clients"] == 1]
        most = [r["peak_rss_mib"] for r in mine if r["round"] == rnd and r["clients"] == top]
        if one and most and top > 1:
            out.append((most[0] - one[0]) / (top - 1))
    return out


def ratios(rows: list[dict], engine: str, baseline: str, clients: int, key: str) -> list[float]:
    """engine / baseline of `key`, per round (the two ran next to each other)."""
    out = []
    for rnd in sorted({r["round"] for r in rows}):
        a = [r[key] for r in rows if (r["engine"], r["clients"], r["round"]) == (engine, clients, rnd)]
        b = [r[key] for r in rows if (r["engine"], r["clients"], r["round"]) == (baseline, clients, rnd)]
        if a and b and b[0] == b[0] and b[0] > 0:
            out.append(a[0] / b[0])
    return out


def table(rows: list[dict], baseline: str) -> str:
    counts = sorted({r["clients"] for r in rows})
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    lines = [f"| clients | engine | aggregate t/s (wall) | vs {baseline} | tokens per CPU-s | vs {baseline} | "
             "TTFT median (ms) | TTFT p90 (ms) | peak RSS (MiB) | largest batch |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in counts:
        for e in engines:
            sel = [r for r in rows if r["clients"] == c and r["engine"] == e]
            if not sel:
                continue
            vs = (lambda key: "" if e == baseline else f"{mean_sd(ratios(rows, e, baseline, c, key), '.2f')}×".replace("n/a×", "n/a"))
            ttft = [1e3 * x for r in sel for x in r["ttft_s_each"]]  # pooled over rounds
            batch = {r["largest_batch"] for r in sel} - {None}
            lines.append(f"| {c} | {e} | {mean_sd([r['aggregate_tps'] for r in sel])} | {vs('aggregate_tps')} | "
                         f"{mean_sd([r['tokens_per_cpu_s'] for r in sel])} | {vs('tokens_per_cpu_s')} | "
                         f"{statistics.median(ttft):.0f} | {percentile(ttft, 0.9):.0f} | "
                         f"{statistics.mean(r['peak_rss_mib'] for r in sel):.0f} | "
                         f"{max(batch) if batch else ''} |")
    return "\n".join(lines)


def memory_table(rows: list[dict], kv_per_slot_mib: dict[str, float]) -> str:
    lines = ["| engine | memory per slot, measured (MiB) | KV cache allocated per slot (MiB) |", "|---|---:|---:|"]
    for e in dict.fromkeys(r["engine"] for r in rows):
        kv = kv_per_slot_mib.get(e)
        lines.append(f"| {e} | {mean_sd(per_slot_mib(rows, e))} | {'' if kv is None else f'{kv:.1f}'} |")
    return "\n".join(lines)


def llama_kv_mib(log: str) -> float | None:
    """The KV cache size llama.cpp prints at start-up (`llama_kv_cache: size = 72.00 MiB (...)`)."""
    m = re.findall(r"llama_kv_cache:\s+size\s*=\s*([0-9.]+)\s*MiB", log)
    return float(m[-1]) if m else None


# --- servers and clients ---

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    """Start a server and wait (bounded) until /health answers 200."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    for _ in range(1200):
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
    """A streamed greedy completion; out gets tokens, prompt_tokens, latency (to [DONE]) and end."""
    body = json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}, "cache_prompt": False}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=3600) as r:
            out.update(stream_summary(sse_events(r)))
    except (OSError, RuntimeError, ValueError) as e:
        out["error"] = str(e)
        return
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
    failed = [r.get("error", "no answer") for r in results if "tokens" not in r]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(results)} requests failed: {failed[0]}")
    return results, max(r["end"] for r in results) - t0, cpu


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(engine: str, cmd: list[str], port: int, clients: int, n: int, vocab: int, log: Path) -> dict:
    proc = start(cmd, port, log)
    try:
        one_client(port, [1, 2, 3], 2, {})
        first, _, _ = at_once(port, [[(100 + 17 * i + j) % vocab for j in range(16)] for i in range(clients)], 1,
                              proc.pid)
        results, wall, cpu = at_once(port, [[(7 + 31 * i + 5 * j) % vocab for j in range(8)] for i in range(clients)],
                                     n, proc.pid)
        tokens = sum(r["tokens"] for r in results)
        health = {}
        if engine != "llama-server":
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
                health = json.loads(r.read())
        return {"engine": engine, "clients": clients, "tokens": tokens, "wall_s": wall, "cpu_s": cpu,
                "aggregate_tps": tokens / wall, "tokens_per_cpu_s": tokens / cpu if cpu > 0 else float("nan"),
                "tokens_each": [r["tokens"] for r in results],
                "prompt_tokens_each": [r["prompt_tokens"] for r in results],
                "ttft_s_each": [r["latency"] for r in first], "ttft_tokens_each": [r["tokens"] for r in first],
                "peak_rss_mib": peak_rss_mib(proc.pid), "largest_batch": health.get("largest_batch"),
                "texts": [r["text"] for r in results]}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def commands(engines: list[str], binary: Path, llama: Path | None, i2s: Path, tq2: Path | None, port: int,
             clients: int, threads: int, ctx: int) -> dict[str, list[str]]:
    common = [str(binary), "serve", "-m", str(i2s), "--host", "127.0.0.1", "--port", str(port), "--slots",
              str(clients), "-t", str(threads), "-c", str(ctx), "--queue", "0"]
    cmds = {"batched": common, "turns": [*common, "--decode-batch", "1"]}
    if llama:
        cmds["llama-server"] = [str(llama), "-m", str(tq2), "--host", "127.0.0.1", "--port", str(port), "-np",
                                str(clients), "-c", str(ctx * clients), "-t", str(threads), "-tb", str(threads),
                                "--no-warmup", "--cache-ram", "0", "--no-cache-prompt", "--no-webui"]
    return {e: cmds[e] for e in engines}


def cpu_name() -> str:
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return f"{info.get('model name', '')} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="700M")
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("-n", type=int, default=64, help="tokens per client")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-c", "--ctx", type=int, default=256, help="context per slot")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines", default="batched,turns", help=f"comma-separated, of {', '.join(ENGINES)}")
    ap.add_argument("--llama-server", action="store_true", help="add llama-server to --engines")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench" / "models")
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()
    engines = list(dict.fromkeys(args.engines.split(",") + (["llama-server"] if args.llama_server else [])))
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise SystemExit(f"unknown engine {bad[0]!r} (choose from {', '.join(ENGINES)})")
    try:
        counts = sorted({int(x) for x in args.clients.split(",")})
    except ValueError:
        raise SystemExit(f"--clients: not a comma-separated list of integers: {args.clients!r}") from None
    if not counts or counts[0] < 1 or args.n < 1 or args.rounds < 1 or args.n + 16 > args.ctx:
        raise SystemExit("--clients, -n and --rounds must be >= 1, and -n + 16 <= --ctx")

    from bench_runtime import model_files

    from bitedge.board import host_target_id
    from bitedge.builder.compile import build_runtime
    from bitedge.convert.dummy import preset_config
    from bitedge.targets import get_target

    work = ROOT / "build" / "bench" / "serve-logs"
    work.mkdir(parents=True, exist_ok=True)
    llama_on = "llama-server" in engines
    i2s, tq2 = model_files(args.preset, args.models_dir, "q8_0", packings=("i2_s", "tq2_0") if llama_on else ("i2_s",))
    binary = build_runtime(get_target(host_target_id()), model=str(i2s)).binary
    llama = None
    if llama_on:
        from llamacpp import build_llama_bench

        llama = build_llama_bench(tool="llama-server")
    config = preset_config(args.preset)
    vocab = min(config.vocab_size, 30000)  # prompt token ids below it
    kv_dim = config.num_kv_heads * config.head_dim
    # bytes per cached value: bitedge keeps f32, llama-server f16 (its default --cache-type-k/v); its log's size
    # replaces the estimate when the log shows it
    kv_mib = {e: 2 * config.num_layers * args.ctx * kv_dim * (2 if e == "llama-server" else 4) / 2**20 for e in engines}
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    rows = []
    for rnd in range(args.rounds):
        for c in counts:
            port = free_port()
            order = list(commands(engines, binary, llama, i2s, tq2, port, c, args.threads, args.ctx).items())
            if rnd % 2:
                order.reverse()
            for engine, cmd in order:
                log = work / f"{engine}-{c}.log"
                row = measure(engine, cmd, port, c, args.n, vocab, log)
                row["round"] = rnd
                rows.append(row)
                problems = length_problems(rows, args.n)
                if problems:
                    raise SystemExit(f"not the same work: {problems[0]} (server log: {log})")
                if engine == "llama-server" and (kv := llama_kv_mib(log.read_text())) is not None:
                    kv_mib[engine] = kv / c
                print(f"round {rnd} {engine:12s} clients {c}: {row['aggregate_tps']:.1f} t/s, "
                      f"{row['tokens_per_cpu_s']:.1f} t/CPU-s, TTFT median {1e3 * statistics.median(row['ttft_s_each']):.0f} ms, "
                      f"peak RSS {row['peak_rss_mib']:.0f} MiB, largest batch {row['largest_batch']}", flush=True)
    baseline = "llama-server" if llama_on else engines[-1] if len(engines) > 1 else engines[0]
    ended = datetime.datetime.now(datetime.timezone.utc)
    load1 = os.getloadavg()
    print(f"\n{args.preset}, {args.threads} thread(s), -c {args.ctx} per slot, {args.n} tokens per client, "
          f"{args.rounds} rounds, {started:%Y-%m-%d %H:%M}–{ended:%H:%M} UTC, {cpu_name()}, {os.cpu_count()} CPUs, "
          f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end\n")
    print(table(rows, baseline))
    print()
    print(memory_table(rows, kv_mib))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"preset": args.preset, "n": args.n, "ctx": args.ctx, "threads": args.threads,
                                           "engines": engines, "started": f"{started:%Y-%m-%d %H:%M} UTC",
                                           "ended": f"{ended:%Y-%m-%d %H:%M} UTC", "load": [load0, load1],
                                           "cpu": cpu_name(), "kv_per_slot_mib": kv_mib, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
