"""bitedge-run as users drive it: text prompts through the C tokenizer, --json, bench rows, perplexity, info,
and one-line errors with exit status 2 for bad input (3 for a build the CPU cannot run)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from _c_build import host_has_avx2, host_has_avx512_vnni, host_has_avx_vnni
from _runtime_helpers import build_runtime, generate_checked, qemu_runner, session_runtime
from bitedge.errors import BitedgeError
from bitedge.model import ModelConfig


reference_mod = pytest.importorskip("bitedge.reference")
writer_mod = pytest.importorskip("bitedge.convert.gguf_writer")
dummy_mod = pytest.importorskip("bitedge.convert.dummy")
from bitedge.native import run_bench, run_generate, run_info, run_perplexity, run_program  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog. Ünïcödé, 数字 123, emoji 🙂!\n" * 3


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return session_runtime(tmp_path_factory)


@pytest.fixture(scope="module")
def dummy(tmp_path_factory):
    """The dummy 'test' preset (with its byte-level tokenizer) as GGUF, and its reference."""
    path = tmp_path_factory.mktemp("dummy") / "test.gguf"
    writer_mod.write_gguf(dummy_mod.dummy_source("test", seed=3), path, packing="i2_s", embed_type="f32")
    return path, dummy_mod.dummy_source("test", seed=3)


@pytest.fixture(scope="module")
def reference(dummy):
    return reference_mod.Reference(dummy[1])


def encode(source, text):
    from bitedge.tokenizer import encode as py_encode

    return list(py_encode(source.tokenizer, text))


def test_text_prompt_generates_reference_tokens(binary, dummy, reference, tmp_path):
    path, source = dummy
    result = run_generate(binary, path, prompt="Hello, tiny model", n=6)
    assert result["prompt_tokens"] == encode(source, "Hello, tiny model")
    # the same prompt as tokens, by the exact lossless check, gives the same run
    checked = generate_checked(binary, path, reference, result["prompt_tokens"], tmp_path, "hello", n=6)
    assert result["tokens"] == checked[0]
    assert "system_info:" in result["stderr"] and "eval time =" in result["stderr"]
    assert set(result["timings"]) >= {"load_ms", "prompt_ms", "gen_ms", "pp_tps", "tg_tps"}
    assert result["kernels"] and result["system_info"]


def test_chat_without_template_uses_the_plain_format(binary, dummy):
    path, source = dummy
    assert source.tokenizer.chat_template is None
    result = run_generate(binary, path, prompt="Hi there", n=2, chat=True)
    assert result["prompt_tokens"] == encode(source, "User: Hi there\nAssistant:")


def test_plain_output_streams_text(binary, dummy):
    path, source = dummy
    proc = run_program(binary, ["generate", "-m", path, "-p", "abc", "-n", "5", "--temp", "0", "--ignore-eos"])
    assert proc.returncode == 0, proc.stderr
    as_json = run_generate(binary, path, prompt="abc", n=5)
    assert proc.stdout.rstrip("\n") == as_json["text"] or "\ufffd" in as_json["text"]


def test_bench_rows(binary, dummy):
    path, _ = dummy
    out = run_bench(binary, path, n_prompt=16, n_gen=8, threads=(1, 2), reps=2)
    rows = out["rows"]
    assert [(r["n_threads"], r["n_prompt"], r["n_gen"]) for r in rows] == [(1, 16, 0), (1, 0, 8), (2, 16, 0), (2, 0, 8)]
    for r in rows:
        for key in ("build_commit", "test_time", "model_type", "model_size", "n_threads", "n_prompt", "n_gen", "avg_ns", "stddev_ns", "avg_ts",
                    "stddev_ts", "samples_ns", "samples_ts", "cpu_info", "kernels", "peak_rss_bytes", "peak_rss_mb"):
            assert key in r, key
        assert len(r["samples_ns"]) == 2 and r["avg_ts"] > 0 and r["peak_rss_bytes"] > 0
        n = r["n_prompt"] + r["n_gen"]
        assert r["avg_ts"] == pytest.approx(np.mean([1e9 * n / s for s in r["samples_ns"]]), rel=1e-3)
    assert out["system_info"]


def test_perplexity_matches_reference(binary, dummy, reference, tmp_path):
    path, source = dummy
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT)
    ctx = 32
    got = run_perplexity(binary, path, text_file, ctx=ctx)
    tokens = encode(source, TEXT)
    assert got["n_tokens"] == len(tokens)
    nll, scored = 0.0, 0
    for start in range(0, len(tokens) - 1, ctx):
        chunk = tokens[start:start + ctx]
        if len(chunk) < 2:
            break
        logits = np.asarray(reference.forward(chunk), dtype=np.float64)
        for i in range(len(chunk) - 1):
            row = logits[i]
            nll += math.log(np.exp(row - row.max()).sum()) + row.max() - row[chunk[i + 1]]
            scored += 1
    assert got["n_scored"] == scored
    assert got["perplexity"] == pytest.approx(math.exp(nll / scored), rel=1e-3)


def test_info(binary, dummy):
    path, source = dummy
    info = run_info(binary, path)
    cfg = source.config
    assert (info["vocab_size"], info["hidden_size"], info["num_layers"], info["num_heads"], info["num_kv_heads"]) == (
        cfg.vocab_size, cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads)
    assert info["packing"] == "i2_s" and info["tokenizer"] is True


def one_line_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bitedge-run: error: "), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_bad_input_is_one_line_and_exit_2(binary, dummy, tmp_path):
    path, _ = dummy
    one_line_error(run_program(binary, ["frobnicate"]), "frobnicate")
    one_line_error(run_program(binary, ["generate", "-m", tmp_path / "nope.gguf", "-p", "x"]), "nope.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    one_line_error(run_program(binary, ["generate", "-m", junk, "-p", "x"]), "junk.gguf")
    one_line_error(run_program(binary, ["generate", "-m", path, "--tokens", "1,2,999999"]), "--tokens")
    one_line_error(run_program(binary, ["generate", "-m", path, "-p", "x", "-n", "many"]), "-n")
    one_line_error(run_program(binary, ["generate", "-m", path, "-p", "x", "--bogus"]), "--bogus")
    one_line_error(run_program(binary, ["generate", "-m", path]), "-p")
    one_line_error(run_program(binary, ["generate", "-m", path, "-p", "x", "-n", "100000"]), "context")
    one_line_error(run_program(binary, ["perplexity", "-m", path, "-f", tmp_path / "missing.txt"]), "missing.txt")
    one_line_error(run_program(binary, ["info", "-m", path], kernels="no-such-table"), "no-such-table")
    usage = run_program(binary, [])
    assert usage.returncode == 2 and "usage" in usage.stderr
    with pytest.raises(BitedgeError, match="nope.gguf"):
        run_generate(binary, tmp_path / "nope.gguf", prompt="x")


def test_dump_logits_is_never_half_written(binary, dummy, tmp_path):
    path, _ = dummy
    dump = tmp_path / "logits.f32"
    proc = run_program(binary, ["generate", "-m", path, "--tokens", "1,2", "-n", "100000", "--dump-logits", dump])
    assert proc.returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_dotprod_build_on_cpu_without_dotprod_exits_3(tmp_path, dummy):
    if not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")):
        pytest.skip("aarch64 cross compiler or qemu-aarch64 not installed")
    binary = build_runtime(tmp_path / "bitedge-run-dotprod", target="aarch64",
                           extra=("-march=armv8.2-a+dotprod",))
    proc = run_program(binary, ["info", "-m", dummy[0]], runner=qemu_runner("cortex-a72"))
    assert proc.returncode == 3, proc.stderr
    message = proc.stderr.lower()
    assert "dotprod" in message and ("lacks" in message or "does not have" in message), proc.stderr
    ok = run_program(binary, ["info", "-m", dummy[0]], runner=qemu_runner("cortex-a76"))
    assert ok.returncode == 0, ok.stderr


def test_forced_table_the_cpu_lacks_exits_3(binary, dummy):
    """BITEDGE_KERNELS naming a table this build holds but this CPU cannot run: exit 3 with what is missing, as
    for a -march mismatch (never SIGILL). Natively for avx512-vnni on an AVX2-only CPU; anywhere qemu-aarch64
    runs for neon-dotprod on a Cortex-A72 (the same code path)."""
    if host_has_avx512_vnni():
        pytest.skip("this CPU has AVX512-VNNI: the native refusal needs an AVX2-only CPU (the aarch64 case below "
                    "covers the code path)")
    proc = run_program(binary, ["info", "-m", dummy[0]], kernels="avx512-vnni")
    assert proc.returncode == 3, proc.stderr
    assert "AVX" in proc.stderr and "does not have" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_forced_avx_vnni_table_the_cpu_lacks_exits_3(binary, dummy):
    """BITEDGE_KERNELS=avx-vnni on an AVX2 CPU without AVX-VNNI (Zen 3; Zen 4 too, which has only the EVEX form):
    exit 3 with one line naming AVX-VNNI, for a run with a model and for `check` alike; the default choice and
    `check` without the variable never pick it here."""
    if host_has_avx_vnni() or not host_has_avx2():
        pytest.skip("needs an AVX2 CPU without AVX-VNNI (this one " + ("has it)" if host_has_avx2() else "lacks AVX2)"))
    for args in (["info", "-m", dummy[0]], ["check"]):
        proc = run_program(binary, args, kernels="avx-vnni")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 3, proc.stderr
        assert len(lines) == 1 and "AVX-VNNI" in lines[0] and "does not have" in lines[0], proc.stderr
    ok = run_program(binary, ["check", "--json"])
    assert ok.returncode == 0 and json.loads(ok.stdout)["kernels"] != "avx-vnni", ok.stdout + ok.stderr


def test_forced_dotprod_table_on_cortex_a72_exits_3(tmp_path_factory, dummy):
    if not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")):
        pytest.skip("aarch64 cross compiler or qemu-aarch64 not installed")
    binary = session_runtime(tmp_path_factory, target="aarch64")
    proc = run_program(binary, ["info", "-m", dummy[0]], runner=qemu_runner("cortex-a72"), kernels="neon-dotprod")
    assert proc.returncode == 3, proc.stderr
    assert "DOTPROD" in proc.stderr and "does not have" in proc.stderr, proc.stderr
    ok = run_program(binary, ["info", "-m", dummy[0]], runner=qemu_runner("cortex-a76"), kernels="neon-dotprod")
    assert ok.returncode == 0, ok.stderr


def test_avx512_vnni_table_gives_the_avx2_tokens(binary, dummy):
    """The avx512-vnni table is picked by default where the CPU has it, and forced or not it generates the tokens
    of the avx2 and scalar tables (integer kernels exact; the float gemv within the shared tolerance)."""
    if not host_has_avx512_vnni():
        pytest.skip("needs a CPU with AVX-512 F/BW/VL and AVX512-VNNI (this one has AVX2 at most)")
    path, _ = dummy
    best = run_generate(binary, path, prompt="Hello, tiny model", n=8)
    assert best["kernels"] == "avx512-vnni"
    runs = {k: run_generate(binary, path, prompt="Hello, tiny model", n=8, kernels=k)
            for k in ("avx512-vnni", "avx2", "scalar")}
    assert runs["avx512-vnni"]["kernels"] == "avx512-vnni"
    for k, result in runs.items():
        assert result["tokens"] == best["tokens"], k


def test_avx_vnni_table_gives_the_avx2_tokens(binary, dummy):
    """Where the CPU has AVX-VNNI, the avx-vnni table is picked by default (unless avx512-vnni is there too) and,
    forced, generates the avx2 and scalar tables' tokens. No CPU this project has run on has AVX-VNNI (Zen 3, Zen 4):
    docs/kernels.md "AVX-VNNI" says what stands in for this test there."""
    if not host_has_avx_vnni():
        pytest.skip("needs a CPU with AVX-VNNI (Alder Lake or later client cores, Zen 5); this one lacks it")
    path, _ = dummy
    best = run_generate(binary, path, prompt="Hello, tiny model", n=8)
    assert best["kernels"] == ("avx512-vnni" if host_has_avx512_vnni() else "avx-vnni")
    runs = {k: run_generate(binary, path, prompt="Hello, tiny model", n=8, kernels=k)
            for k in ("avx-vnni", "avx2", "scalar")}
    assert runs["avx-vnni"]["kernels"] == "avx-vnni"
    for k, result in runs.items():
        assert result["tokens"] == best["tokens"], k


def test_json_text_is_valid_utf8(binary, dummy):
    """Random byte-level tokens split UTF-8 characters: --json must still print strictly valid UTF-8 JSON."""
    path, _ = dummy
    for seed in range(3):
        proc = subprocess.run([binary, "generate", "-m", path, "-p", "é🙂", "-n", "48", "--temp", "3", "--top-k", "0",
                               "--top-p", "1", "--seed", str(seed), "--ignore-eos", "--json"], capture_output=True)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.decode("utf-8"))  # strict: U+FFFD is fine, an invalid byte is not
        assert len(result["tokens"]) == 48


def test_model_without_tokenizer_runs_from_ids(tiny_model, binary, tmp_path):
    """A model without a tokenizer still runs from token ids; its JSON text is empty, not broken."""
    cfg = ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=1, num_heads=2,
                      num_kv_heads=1, head_dim=32, context_length=64, name="notok")
    path = tmp_path / "notok.gguf"
    writer_mod.write_gguf(tiny_model(cfg, seed=5, draw="scaled", tokenizer=None), path, packing="i2_s", embed_type="f32")
    proc = run_program(binary, ["generate", "-m", path, "--tokens", "1,2,3", "-n", "4", "--temp", "0", "--json"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["tokens"]) == 4 and result["text"] == ""
    one_line_error(run_program(binary, ["generate", "-m", path, "-p", "hello"]), "tokenizer")


def test_clang_build_is_warning_free(tmp_path, dummy):
    binary = build_runtime(tmp_path / "bitedge-run-clang", cc="clang")  # -Wall -Wextra -Werror
    assert run_program(binary, ["info", "-m", dummy[0]]).returncode == 0


@pytest.fixture(scope="module")
def sampler_lib(tmp_path_factory):
    """sampler.c as a shared library, driven through ctypes."""
    import ctypes

    from _runtime_helpers import RUNTIME

    out = tmp_path_factory.mktemp("sampler") / "libsampler.so"
    proc = subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", out,
                           RUNTIME / "sampler.c", "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(out))

    class Params(ctypes.Structure):
        _fields_ = [("temperature", ctypes.c_float), ("top_k", ctypes.c_int), ("top_p", ctypes.c_float),
                    ("seed", ctypes.c_uint64)]

    class Sampler(ctypes.Structure):
        _fields_ = [("params", Params), ("vocab_size", ctypes.c_int), ("rng_state", ctypes.c_uint64),
                    ("candidates", ctypes.c_void_p)]

    lib.build_sampler.argtypes = [ctypes.POINTER(Sampler), ctypes.c_int, Params]
    lib.be_sample.argtypes = [ctypes.POINTER(Sampler), ctypes.POINTER(ctypes.c_float)]
    lib.free_sampler.argtypes = [ctypes.POINTER(Sampler)]

    def draw(logits, n, temperature=1.0, top_k=0, top_p=1.0, seed=1):
        s = Sampler()
        assert lib.build_sampler(ctypes.byref(s), len(logits), Params(temperature, top_k, top_p, seed)) == 0
        arr = (ctypes.c_float * len(logits))(*logits)
        counts = np.zeros(len(logits), dtype=np.int64)
        for _ in range(n):
            counts[lib.be_sample(ctypes.byref(s), arr)] += 1
        lib.free_sampler(ctypes.byref(s))
        return counts

    return draw


def expected_probs(logits, temperature, top_k, top_p):
    z = np.asarray(logits, dtype=np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))
    keep = order[:top_k] if top_k else order
    if top_p < 1:
        cum, kept = 0.0, []
        for i in keep:
            kept.append(i)
            cum += p[i]
            if cum >= top_p:
                break
        keep = kept
    q = np.zeros_like(p)
    q[keep] = p[keep]
    return q / q.sum()


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 3, 1.0), (1.3, 0, 0.8), (2.0, 4, 0.9)])
def test_sampler_follows_the_distribution(sampler_lib, temperature, top_k, top_p):
    logits = [2.0, 1.5, 1.5, 0.3, -0.5, -1.0, 0.9, 0.0]
    n = 20000
    counts = sampler_lib(logits, n, temperature, top_k, top_p)
    p = expected_probs(logits, temperature, top_k, top_p)
    assert np.all(counts[p == 0] == 0)  # nothing outside top-k / the nucleus
    # every probability within 5 standard errors
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * se + 1e-12), (counts / n, p)
    assert np.array_equal(counts, sampler_lib(logits, n, temperature, top_k, top_p))  # same seed, same draws


def test_peak_rss_is_the_runtimes_own_not_the_parents(binary, dummy):
    """ru_maxrss survives exec on Linux: a parent holding 400 MB made a 0.2 MB model report 400 MB. The runtime
    must report its own peak (VmHWM)."""
    path, _ = dummy
    script = ("import subprocess, sys, json\n"
              "ballast = bytearray(400 << 20)\n"
              "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
              "out = subprocess.run([sys.argv[1], 'bench', '-m', sys.argv[2], '-p', '4', '-n', '2', '-r', '1', '--json'],"
              " capture_output=True, text=True, check=True).stdout\n"
              "print(json.loads(out)[0]['peak_rss_bytes'])\n")
    proc = subprocess.run(["python3", "-c", script, str(binary), str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    peak = int(proc.stdout.strip().splitlines()[-1])
    assert 0 < peak < 100 << 20, f"peak RSS {peak / 2**20:.0f} MiB is the parent's, not bitedge-run's"
