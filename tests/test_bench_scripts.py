"""The benchmark scripts still run (tiny shapes, one round): a speed number is only as good as the script that
makes it, and nothing else in the suite calls them. Timings are not checked, only that every method got one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("tokens", [1, 3])
def test_bench_kernels_runs_and_reports_every_method(tmp_path, tokens):
    out = tmp_path / "kernels.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_kernels.py"), "--shapes", "64x96,40x128",
                           "--rounds", "1", "--reps", "2", "--tokens", str(tokens), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["matrix"] for r in rows} == {"64x96", "40x128"}
    for matrix in ("64x96", "40x128"):
        methods = {r["method"].split()[0] for r in rows if r["matrix"] == matrix}
        assert {"i2_s-runtime", "tl1", "tl2"} <= methods, (matrix, methods)
    assert all(r["mean_us"] > 0 for r in rows)


def test_bench_runtime_compares_kernel_tables(tmp_path):
    """bench_runtime.py --kernels: every table gets pp and tg rows at every thread count, ratios against the first."""
    from tests._c_build import host_has_avx2

    if not host_has_avx2():
        pytest.skip("needs an x86 CPU with AVX2 (the script builds the x86-64-avx2 runtime)")
    out = tmp_path / "tables.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_runtime.py"), "--kernels", "scalar,avx2",
                           "--presets", "test", "-p", "8", "-n", "4", "-r", "1", "--rounds", "2", "--threads", "1,2",
                           "--models-dir", str(tmp_path / "models"), "-o", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["models"][0]["rows"]
    assert {(r["engine"], r["threads"], r["test"]) for r in rows} == {
        (f"bitedge i2_s {k}", t, test) for k in ("scalar", "avx2") for t in (1, 2) for test in ("pp8", "tg4")}
    assert all(r["n_samples"] == 2 and r["mean_ts"] > 0 for r in rows)
    assert all("speedup_vs_baseline" in r for r in rows if r["engine"].endswith("avx2"))
    assert "vs scalar" in proc.stdout


# --- bench/bench_serve.py: the parsing and aggregation behind the serve table (no server, no llama.cpp build) ---

# A real bitedge-run serve stream (test preset, 3 greedy tokens of byte pieces, held back until they form text).
BITEDGE_STREAM = b"""data: {"id": "cmpl-1", "object": "text_completion", "created": 1796668030, "model": "test-i2_s-q8_0.gguf", "choices": [{"index": 0, "text": "\\ufffdP", "logprobs": null, "finish_reason": "length"}]}

data: {"id": "cmpl-1", "object": "text_completion", "created": 1796668030, "model": "test-i2_s-q8_0.gguf", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}

data: [DONE]

"""

# A real llama-server stream (llama-cpp-python 0.3.36 sdist, the 700M TQ2_0 file, 2 greedy tokens): one event per
# token, `usage` (and `timings`) in the last choice event, no empty-choices event.
LLAMA_SERVER_STREAM = b"""data: {"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":null}],"created":1796670127,"model":"build/bench/models/700M-tq2_0-q8_0.gguf","system_fingerprint":"b1-0c1e570","object":"text_completion","id":"chatcmpl-d4HwkMhNhjE7GZzqLorKpGskQiFW9Ia1"}

data: {"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":null}],"created":1796670127,"model":"build/bench/models/700M-tq2_0-q8_0.gguf","system_fingerprint":"b1-0c1e570","object":"text_completion","id":"chatcmpl-d4HwkMhNhjE7GZzqLorKpGskQiFW9Ia1"}

data: {"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}],"created":1796670127,"model":"build/bench/models/700M-tq2_0-q8_0.gguf","system_fingerprint":"b1-0c1e570","object":"text_completion","usage":{"completion_tokens":2,"prompt_tokens":3,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0}},"id":"chatcmpl-d4HwkMhNhjE7GZzqLorKpGskQiFW9Ia1","timings":{"cache_n":0,"prompt_n":3,"prompt_ms":52.379,"prompt_per_token_ms":17.459666666666667,"prompt_per_second":57.27486206304053,"predicted_n":2,"predicted_ms":22.506,"predicted_per_token_ms":22.506,"predicted_per_second":44.43259575224385}}

data: [DONE]

"""


def _bench_serve():
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_serve

    return bench_serve


def test_bench_serve_reads_both_servers_streams():
    bs = _bench_serve()
    mine = bs.stream_summary(bs.sse_events(BITEDGE_STREAM.splitlines(keepends=True)))
    assert mine == {"text": "\ufffdP", "tokens": 3, "prompt_tokens": 3, "finish_reason": "length"}
    theirs = bs.stream_summary(bs.sse_events(LLAMA_SERVER_STREAM.splitlines(keepends=True)))
    assert theirs == {"text": "", "tokens": 2, "prompt_tokens": 3, "finish_reason": "length"}
    # events after [DONE] are not read; a stream without usage or with an error event is refused
    assert bs.stream_summary(bs.sse_events(BITEDGE_STREAM.splitlines() + [b'data: {"usage": 5}']))["tokens"] == 3
    with pytest.raises(RuntimeError, match="no usage"):
        bs.stream_summary(bs.sse_events(LLAMA_SERVER_STREAM.splitlines()[:3]))
    with pytest.raises(RuntimeError, match="server error"):
        list(bs.sse_events([b'data: {"error": {"message": "context full"}}']))


def _row(engine, clients, rnd, tps, cpu, rss, ttft, tokens=4, prompt=8):
    return {"engine": engine, "clients": clients, "round": rnd, "aggregate_tps": tps, "tokens_per_cpu_s": cpu,
            "peak_rss_mib": rss, "ttft_s_each": ttft, "tokens_each": [tokens] * clients,
            "ttft_tokens_each": [1] * clients, "prompt_tokens_each": [prompt] * clients, "largest_batch": None}


def test_bench_serve_aggregates_rounds_ratios_and_memory_per_slot():
    bs = _bench_serve()
    rows = [_row("batched", 1, 0, 10.0, 40.0, 300.0, [0.1]), _row("llama-server", 1, 0, 20.0, 50.0, 400.0, [0.2]),
            _row("batched", 4, 0, 30.0, 90.0, 360.0, [0.1, 0.2, 0.3, 0.4]),
            _row("llama-server", 4, 0, 30.0, 60.0, 520.0, [0.5, 0.5, 0.5, 0.5]),
            _row("llama-server", 1, 1, 10.0, 50.0, 400.0, [0.2]), _row("batched", 1, 1, 10.0, 40.0, 306.0, [0.3]),
            _row("llama-server", 4, 1, 30.0, 60.0, 550.0, [0.5, 0.5, 0.5, 0.5]),
            _row("batched", 4, 1, 60.0, 90.0, 366.0, [0.1, 0.2, 0.3, 0.4])]
    rows[0]["largest_batch"], rows[2]["largest_batch"] = 1, 4
    assert bs.percentile([1, 2, 3, 4], 0.9) == pytest.approx(3.7)
    assert bs.percentile([5], 0.9) == 5
    assert bs.mean_sd([1.0, 3.0]) == "2.0 ± 1.4" and bs.mean_sd([float("nan")]) == "n/a"
    assert bs.per_slot_mib(rows, "batched") == [20.0, 20.0]  # (360 - 300) / 3, (366 - 306) / 3
    assert bs.per_slot_mib(rows, "llama-server") == [40.0, 50.0]
    assert bs.ratios(rows, "batched", "llama-server", 1, "aggregate_tps") == [0.5, 1.0]  # per round, paired
    assert bs.ratios(rows, "batched", "llama-server", 4, "aggregate_tps") == [1.0, 2.0]
    table = bs.table(rows, "llama-server").splitlines()
    assert table[0].startswith("| clients | engine | aggregate t/s (wall) | vs llama-server |")
    # 4 clients, batched: t/s mean ± sd of 30 and 60, ratio 1.5 ± 0.71, TTFT pooled over both rounds (8 values)
    assert "| 4 | batched | 45.0 ± 21.2 | 1.50 ± 0.71× | 90.0 ± 0.0 | 1.50 ± 0.00× | 250 | 400 | 363 | 4 |" in table
    assert "| 1 | llama-server | 15.0 ± 7.1 |  | 50.0 ± 0.0 |  | 200 | 200 | 400 |  |" in table
    memory = bs.memory_table(rows, {"batched": 18.0, "llama-server": 9.0})
    assert "| batched | 20.0 ± 0.0 | 18.0 |" in memory and "| llama-server | 45.0 ± 7.1 | 9.0 |" in memory
    assert bs.length_problems(rows, 4) == []
    rows.append(_row("llama-server", 4, 2, 30.0, 60.0, 550.0, [0.5] * 4, tokens=3, prompt=9))
    problems = bs.length_problems(rows, 4)
    assert len(problems) == 2 and "not 4 each" in problems[0] and "different prompt lengths" in problems[1]
    log = "llama_kv_cache:        CPU KV buffer size =   144.00 MiB\nllama_kv_cache: size =  144.00 MiB (  1024 cells,  24 layers,  4/4 seqs), K (f16):   72.00 MiB, V (f16):   72.00 MiB\n"
    assert bs.llama_kv_mib(log) == 144.0 and bs.llama_kv_mib("nothing") is None


@pytest.mark.parametrize("args, message", [(["--engines", "batched,vllm"], "unknown engine 'vllm'"),
                                           (["--clients", "1,x"], "--clients: not a comma-separated list"),
                                           (["-n", "300", "-c", "256"], "-n + 16 <= --ctx")])
def test_bench_serve_refuses_bad_options_in_one_line(args, message):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_serve.py"), *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
