"""The benchmark scripts still run (tiny shapes, one round): a speed number is only as good as the script that
makes it, and nothing else in the suite calls them. Timings are not checked, only that every method got one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def run_bench_runtime_variants(tmp_path, *variant_args):
    """bench_runtime.py comparing variants of bitedge-run on the 'test' preset: (process, the model's rows)"""
    out = tmp_path / "variants.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_runtime.py"), *variant_args,
                           "--presets", "test", "-p", "8", "-n", "4", "-r", "1", "--rounds", "2", "--threads", "1,2",
                           "--models-dir", str(tmp_path / "models"), "-o", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(out.read_text())["models"][0]["rows"]


def test_bench_runtime_compares_kernel_tables(tmp_path):
    """bench_runtime.py --kernels: every table gets pp and tg rows at every thread count, ratios against the first."""
    from tests._c_build import host_has_avx2

    if not host_has_avx2():
        pytest.skip("needs an x86 CPU with AVX2 (the script builds the x86-64-avx2 runtime)")
    proc, rows = run_bench_runtime_variants(tmp_path, "--kernels", "scalar,avx2")
    assert {(r["engine"], r["threads"], r["test"]) for r in rows} == {
        (f"bitedge i2_s {k}", t, test) for k in ("scalar", "avx2") for t in (1, 2) for test in ("pp8", "tg4")}
    assert all(r["n_samples"] == 2 and r["mean_ts"] > 0 for r in rows)
    assert all("speedup_vs_baseline" in r for r in rows if r["engine"].endswith("avx2"))
    assert "vs scalar" in proc.stdout


def test_bench_runtime_compares_greedy_output(tmp_path):
    """bench_runtime.py --greedy-output: the full output (baseline) and the greedy one, pp and tg at each thread
    count, ratios against the full output."""
    from tests._c_build import host_has_avx2

    if not host_has_avx2():
        pytest.skip("needs an x86 CPU with AVX2 (the script builds the x86-64-avx2 runtime)")
    proc, rows = run_bench_runtime_variants(tmp_path, "--greedy-output")
    assert {(r["engine"], r["threads"], r["test"]) for r in rows} == {
        (f"bitedge i2_s {v}", t, test) for v in ("full output", "greedy output") for t in (1, 2)
        for test in ("pp8", "tg4")}
    assert all("speedup_vs_baseline" in r for r in rows if r["engine"].endswith("greedy output"))
    assert "vs full output" in proc.stdout


def test_bench_output_types_compares_types(tmp_path):
    """bench_output_types.py: pp and tg rows for every output type, sizes shrinking with the type, paired ratios
    against the first type."""
    from tests._c_build import host_has_avx2

    if not host_has_avx2():
        pytest.skip("needs an x86 CPU with AVX2 (the script builds the x86-64-avx2 runtime)")
    out = tmp_path / "types.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_output_types.py"), "--preset", "test",
                           "--types", "q8_0,q6_k,q4_0", "-p", "8", "-n", "4", "-r", "1", "--rounds", "2",
                           "--models-dir", str(tmp_path / "models"), "-o", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["type"], r["test"]) for r in rows} == {(t, x) for t in ("q8_0", "q6_k", "q4_0") for x in ("pp8", "tg4")}
    assert all(r["n_samples"] == 2 and r["mean_ts"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    size = {r["type"]: r["output_matrix_bytes"] for r in rows}
    assert size["q8_0"] > size["q6_k"] > size["q4_0"]
    assert all(len(r["paired_ratios_vs_q8_0"]) == 2 for r in rows if r["type"] != "q8_0")
    assert "vs q8_0" in proc.stdout


# ------------------------------------------------------------------ bench_peers.py: weights and table, no peer built


def _bench_module(name: str):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _write_raw_gguf(path: Path, tensors: list[tuple[str, int, tuple[int, ...], bytes]]) -> None:
    """A GGUF with no keys and tensors of any ggml type id (the forks' I2_S = 36, IQ2_BN = 135 that the gguf
    package cannot write): (name, type id, numpy shape, data bytes)."""
    import struct

    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 0)
    offset, table, datas = 0, b"", []
    for name, type_id, shape, data in tensors:
        raw = name.encode()
        table += struct.pack("<Q", len(raw)) + raw + struct.pack("<I", len(shape))
        table += struct.pack(f"<{len(shape)}Q", *reversed(shape)) + struct.pack("<IQ", type_id, offset)
        padded = data + b"\0" * (-len(data) % 32)
        datas.append(padded)
        offset += len(padded)
    head = header + table
    path.write_bytes(head + b"\0" * (-len(head) % 32) + b"".join(datas))


def _iq2_bn_rows(values: np.ndarray, scale: float) -> bytes:
    """ik_llama.cpp's IQ2_BN encoding of ternary rows (iqk_quantize.cpp quantize_one_row_2bn): per row an f32
    scale, then per 64 values 16 bytes, byte j = codes of j, j+16, j+32, j+48 in bits 0-1, 2-3, 4-5, 6-7."""
    n, k = values.shape
    codes = (values.astype(np.int16) + 1).astype(np.uint8).reshape(n, k // 64, 4, 16)
    packed = codes[:, :, 0] | (codes[:, :, 1] << 2) | (codes[:, :, 2] << 4) | (codes[:, :, 3] << 6)
    rows = np.concatenate([np.full((n, 1), scale, np.float32).view(np.uint8), packed.reshape(n, k // 4)], axis=1)
    return rows.tobytes()


def _iq2_bn_r4_rows(values: np.ndarray, scale: float) -> bytes:
    """IQ2_BN_R4 (iqk_quantize.cpp repack_iq2_bn), written from its description independently of the decoder:
    per 4 rows 4 f32 scales, then per 64 columns byte 16*l + 4*r + i = row r's codes of 16*l + i + 4*m at bits 2*m."""
    n, k = values.shape
    codes = (values.astype(np.int16) + 1).astype(np.uint8)
    out = bytearray()
    for g in range(n // 4):
        out += np.full(4, scale, np.float32).tobytes()
        for ib in range(k // 64):
            block = bytearray(64)
            for l in range(4):
                for r in range(4):
                    for i in range(4):
                        block[16 * l + 4 * r + i] = sum(int(codes[4 * g + r, 64 * ib + 16 * l + i + 4 * m]) << (2 * m)
                                                        for m in range(4))
            out += block
    return bytes(out)


def test_peer_source_gguf_holds_the_dummy_weights_as_f32(tmp_path):
    """The F32 file the peers' llama-quantize reads: every tensor of the tied dummy, ternary ones = values x scale."""
    weights = _bench_module("peers_weights")
    from bitedge.gguf_read import open_gguf

    path = weights.write_peer_source("test", tmp_path / "test-peer-f32.gguf")
    g = open_gguf(path)
    source = weights.tied_source("test")
    assert [t.name for t in g.tensors] == list(source.config.tensor_shapes())
    assert all(t.type_name == "F32" for t in g.tensors)
    assert g.kv["general.architecture"] == "bitnet" and g.kv["bitnet.block_count"] == source.config.num_layers
    assert len(g.kv["tokenizer.ggml.tokens"]) == source.config.vocab_size
    q = source.tensors["blk.1.ffn_down.weight"]()
    got = g.array(g.by_name["blk.1.ffn_down.weight"])
    assert np.array_equal(got, q.values.astype(np.float32) * np.float32(q.scale))
    # what quantize_i2_s and quantize_iq2_bn compute from it: max|W| is the scale, signs are the values
    assert np.abs(got).max() == np.float32(q.scale)
    assert np.array_equal(np.sign(got).astype(np.int8), q.values)


def test_peer_checks_accept_the_same_weights_and_catch_a_changed_byte(tmp_path):
    """check_i2s_identical against bitedge's own I2_S file and the IQ2_BN decoder against the dummy, on files
    laid out as bitnet.cpp's and ik_llama.cpp's llama-quantize write them."""
    weights = _bench_module("peers_weights")
    model_files = _bench_module("bench_runtime").model_files
    from bitedge.gguf_read import open_gguf
    from bitedge.model import is_ternary

    ours, _ = model_files("test", tmp_path, "q8_0", packings=("i2_s",))
    g = open_gguf(ours)
    source = weights.tied_source("test")
    i2s, iq2, r4 = [], [], []
    for name, shape in source.config.tensor_shapes().items():
        t = g.by_name[name]
        if is_ternary(name):
            scale = g.array(g.by_name[name.removesuffix(".weight") + ".scale"]).tobytes()
            i2s.append((name, weights.I2_S, shape, g.raw(t).tobytes() + scale + b"\0" * 28))
            q = source.tensors[name]()
            iq2.append((name, weights.IQ2_BN, shape, _iq2_bn_rows(q.values, q.scale)))
            r4.append((name, weights.IQ2_BN_R4, shape, _iq2_bn_r4_rows(q.values, q.scale)))
        else:
            for rows in (i2s, iq2, r4):
                rows.append((name, int(t.ggml_type), shape, g.raw(t).tobytes()))
    bitnet, ik, ik_r4 = tmp_path / "i2s.gguf", tmp_path / "iq2bn.gguf", tmp_path / "iq2bn_r4.gguf"
    _write_raw_gguf(bitnet, i2s)
    _write_raw_gguf(ik, iq2)
    _write_raw_gguf(ik_r4, r4)
    files = {"bitnet.cpp I2_S": bitnet, "ik_llama.cpp IQ2_BN": ik, "ik_llama.cpp IQ2_BN_R4": ik_r4}
    checks = weights.peer_checks("test", files, ours)
    assert all(v.startswith("ok: ") for v in checks.values()), checks

    # one weight changed in each: both checks must notice
    name = "blk.0.ffn_up.weight"
    for rows, path in ((i2s, bitnet), (iq2, ik), (r4, ik_r4)):
        i = [r[0] for r in rows].index(name)
        data = bytearray(rows[i][3])
        data[37] ^= 0x03 if path is bitnet else 0x0c  # a 2-bit code: 0 <-> 3 or 1 <-> 2 (past IQ2_BN*'s scales)
        rows[i] = (*rows[i][:3], bytes(data))
        _write_raw_gguf(path, rows)
    checks = weights.peer_checks("test", files, ours)
    assert all(v.startswith("MISMATCH") and name in v for v in checks.values()), checks


def test_peers_table_ratios_and_roofline_from_fake_samples(tmp_path):
    """summarize: bitedge against the best peer of each cell, generation against STREAM / file bytes; markdown has
    one row per shape x threads and a column per engine; the plot is written (or skipped with a message)."""
    report_mod = _bench_module("peers_report")
    engines = ["bitedge i2_s", "llama.cpp TQ2_0", "ik_llama.cpp IQ2_BN"]
    samples = {}
    for engine, pp, tg in (("bitedge i2_s", 100.0, 40.0), ("llama.cpp TQ2_0", 80.0, 50.0), ("ik_llama.cpp IQ2_BN", 125.0, 20.0)):
        for threads in (1, 2):
            samples[("700M", engine, threads, "pp128")] = [pp * threads - 1, pp * threads + 1]
            samples[("700M", engine, threads, "tg128")] = [tg * threads] * 3
    files = {("700M", e): 200_000_000 for e in engines}
    rss = {("700M", e): 250.0 for e in engines}
    models = report_mod.summarize(samples, files, rss, {1: 10.0, 2: 16.0}, ["700M"], engines)
    ratios = {(r["threads"], r["test"]): (r["best_peer"], r["ratio"]) for r in models[0]["ratios"]}
    assert ratios[(1, "pp128")] == ("ik_llama.cpp IQ2_BN", pytest.approx(100 / 125))
    assert ratios[(2, "tg128")] == ("llama.cpp TQ2_0", pytest.approx(80 / 100))
    row = [r for r in models[0]["rows"] if r["engine"] == "bitedge i2_s" and r["threads"] == 2 and r["test"] == "tg128"][0]
    assert row["roofline_ts"] == pytest.approx(16e9 / 2e8) and row["fraction_of_roofline"] == pytest.approx(80 / 80)
    assert row["sd_ts"] == 0 and row["n_samples"] == 3
    report = {"machine": {"cpu": "test cpu", "cores": 2, "date": "2026-12-07"}, "method": "fake",
              "stream_read_gbs": {"1": 10.0, "2": 16.0}, "engines": engines, "n_prompt": 128, "n_gen": 128,
              "models": models}
    text = report_mod.markdown(report)
    assert "| 700M, 1 | 100.0 ± 1.4 / 40.0 ± 0.0 | 80.0 ± 1.4 / 50.0 ± 0.0 | 125.0 ± 1.4 / 20.0 ± 0.0 |" in text
    assert "0.80× (ik_llama.cpp IQ2_BN) · 0.80× (llama.cpp TQ2_0)" in text
    msg = report_mod.plot(report, tmp_path / "peers.png")
    assert (tmp_path / "peers.png").exists() or msg.startswith("matplotlib is not installed")


@pytest.mark.parametrize("args, message", [
    (["--engines", "foo"], "--engines: unknown engine 'foo'"),
    (["--presets", "9Q"], "unknown dummy preset '9Q'"),
    (["--presets", "700M:x"], "thread counts must be integers"),
])
def test_bench_peers_refuses_bad_arguments_in_one_line(args, message):
    """Before building or writing anything: one line naming the problem, a non-zero exit."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_peers.py"), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


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


# ------------------------------------------------ bench_sizes.py: cost as models grow (issue 13 item 6), tiny presets


def _bench_sizes(tmp_path, *args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "bench_sizes.py"), "--models-dir", str(tmp_path / "models"),
                           "-o", str(tmp_path / "sizes.json"), *args], capture_output=True, text=True, timeout=timeout)


def test_bench_sizes_measures_writes_and_reuses_models(tmp_path):
    """Two tiny presets, 1 and 2 threads, few tokens, a small STREAM array: every preset gets its pp and tg rows,
    the tg rows their roofline, the file and RSS figures, the table and the plot; a second run reuses the cached
    files (it is told only 1 byte is free, so writing anything would be refused)."""
    from tests._c_build import host_has_avx2

    if not host_has_avx2():
        pytest.skip("needs an x86 CPU with AVX2 (the script builds the x86-64-avx2 runtime)")
    common = ["--presets", "test,125M", "--tokens", "4,2", "-r", "1", "--threads", "1,2", "--stream-mib", "16"]
    proc = _bench_sizes(tmp_path, *common, "--plot", str(tmp_path / "sizes.png"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "sizes.json").read_text())
    assert [m["preset"] for m in report["models"]] == ["test", "125M"]
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_sizes
    finally:
        sys.path.remove(str(ROOT / "bench"))
    for m in report["models"]:
        path = tmp_path / "models" / f"{m['preset']}-i2_s-q8_0-seed0.gguf"
        assert m["path"] == str(path) and m["file_bytes"] == path.stat().st_size
        planned, per_token = bench_sizes.planned_bytes(m["preset"])
        assert planned < m["file_bytes"] and per_token == m["bytes_per_token"] == planned  # both presets are tied
        assert {(r["threads"], r["test"]) for r in m["rows"]} == {(t, x) for t in (1, 2) for x in ("pp4", "tg2")}
        for r in m["rows"]:
            assert r["mean_ts"] > 0 and r["n_samples"] == 1
            if r["test"] == "tg2":
                bw = report["stream_read_gbs"][str(r["threads"])]
                assert r["roofline_ts"] == pytest.approx(bw * 1e9 / per_token)
                assert r["fraction_of_roofline"] == pytest.approx(r["mean_ts"] / r["roofline_ts"])
        assert m["peak_rss_mb"] > 0 and m["load_ms"] >= 0 and m["first_token_ms"] > 0 and m["fits_in_ram"]
        assert m["write_seconds"] > 0 and m["write_peak_rss_mb"] > 0 and m["kernels"] == "avx2"
    assert "| 125M | 128M | 0.053 |" in proc.stdout and "| | | | | | | | tg2 |" in proc.stdout
    assert (tmp_path / "sizes.png").stat().st_size > 10_000
    assert not list((tmp_path / "models").glob("*partial*"))
    again = _bench_sizes(tmp_path, *common, "--assume-free-bytes", "1")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "writing" not in again.stderr


def test_bench_sizes_refuses_what_does_not_fit_in_one_line(tmp_path):
    """Not enough disk (a fake free-space figure, --assume-free-bytes): one line, nothing written; 100B only with
    --with-100b; an unknown preset."""
    proc = _bench_sizes(tmp_path, "--presets", "125M,350M", "--assume-free-bytes", "100000000")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "not enough disk space" in proc.stderr and "125M, 350M" in proc.stderr and "0.1 GB is free" in proc.stderr
    assert list((tmp_path / "models").iterdir()) == []
    for args, message in ((["--presets", "70B,100B"], "pass --with-100b"), (["--presets", "9Q"], "unknown dummy preset"),
                          (["--threads", "0"], "at least 1"), (["--tokens", "4"], "PP,TG")):
        proc = _bench_sizes(tmp_path, *args, timeout=120)
        assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1


def test_sizes_table_marks_a_model_beyond_ram():
    """A model larger than the memory available (100B here) is labelled in its row and explained under the table;
    it ran at one thread count only, so the other column says so ("–")."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import sizes_report
    finally:
        sys.path.remove(str(ROOT / "bench"))

    def model(preset, fits, rows):
        return {"preset": preset, "n_params": 7e10 if fits else 1e11, "file_bytes": 17.7e9 if fits else 25.3e9,
                "bytes_per_token": 17.7e9 if fits else 25.3e9, "mem_available_bytes": 24.6e9, "fits_in_ram": fits,
                "load_ms": 5.0, "first_token_ms": 2500.0, "peak_rss_mb": 16000.0, "rows": rows}

    tg = lambda t, ts: {"threads": t, "test": "tg4", "mean_ts": ts, "sd_ts": 0.01, "roofline_ts": 1.0,  # noqa: E731
                        "fraction_of_roofline": ts}
    report = {"machine": {"cpu": "cpu", "cores": 2, "mem_total_bytes": 25.2e9, "date": "d"}, "load_avg_start": [1, 1, 1],
              "load_avg_end": [2, 2, 2], "stream_read_gbs": {"1": 15.0, "2": 16.0},
              "models": [model("70B", True, [tg(1, 0.5), tg(2, 0.7)]), model("100B", False, [tg(1, 0.06)])]}
    text = sizes_report.markdown(report)
    assert "| 70B | 70.0B | 17.700 | 17.700 | 5 | 2.50 | 16.78 (0.95) | tg4 | 0.50 ± 0.01 | 0.70 ± 0.01 | 50% of 1.00 | 70% of 1.00 |" in text
    assert "| 100B (beyond RAM) | 100.0B |" in text and "| 0.06 ± 0.01 | – | 6% of 1.00 | – |" in text
    assert "100B: the file (25.3 GB) was larger than the memory available (24.6 GB): mmap read it from disk" in text
