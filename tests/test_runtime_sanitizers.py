"""The whole runtime under AddressSanitizer + UndefinedBehaviorSanitizer, and warning-free with clang.

Every bitedge-run command runs on real models (odd shapes, all three embedding types, 2 threads): a
sanitizer report or a non-zero exit fails the test. The loader's own fuzzing is in test_c_gguf.py.
"""

from __future__ import annotations

import json

import pytest

from _c_build import require_tool, run_binary, sanitizer_report
from _runtime_helpers import build_runtime
from bitedge.convert.gguf_writer import write_gguf
from bitedge.model import ModelConfig

ODD = ModelConfig(vocab_size=777, hidden_size=160, intermediate_size=344, num_layers=2, num_heads=5,
                  num_kv_heads=1, head_dim=24, tie_embeddings=False, ffn_act="silu", sub_norms=True)


@pytest.fixture(scope="module")
def asan_runtime(tmp_path_factory):
    return build_runtime(tmp_path_factory.mktemp("asan") / "bitedge-run-asan", sanitize=True)


@pytest.mark.parametrize("embed_type", ["f32", "f16", "q8_0", "q4_0"])  # Q6_K: ODD's rows of 96 hold no 256-block
def test_every_command_is_sanitizer_clean(tiny_model, asan_runtime, tmp_path, embed_type):
    model = tmp_path / f"odd-{embed_type}.gguf"
    write_gguf(tiny_model(ODD, seed=5, draw="scaled"), model, packing="i2_s", embed_type=embed_type)
    text = tmp_path / "text.txt"
    text.write_text("In the beginning was the word. " * 20 + "Ünïcödé ✓ 你好\n")
    runs = [
        ["generate", "-m", model, "-p", "hello there", "-n", "12", "-t", "2", "--json"],
        ["generate", "-m", model, "--tokens", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35",
         "-n", "4", "--temp", "0.9", "--top-k", "20", "--top-p", "0.9", "--seed", "7", "--json"],
        ["generate", "-m", model, "-p", "hi", "-n", "3", "--chat", "--json"],
        ["bench", "-m", model, "-p", "16", "-n", "4", "-t", "1,2", "-r", "1", "--json"],
        ["perplexity", "-m", model, "-f", text, "-c", "32", "--json"],
        ["info", "-m", model, "--json"],
    ]
    for args in runs:
        proc = run_binary(asan_runtime, args, timeout=300)
        report = sanitizer_report(proc)
        assert report is None, f"{args[0]}: {report}"
        assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}: {proc.stderr[-500:]}"
        json.loads(proc.stdout[proc.stdout.rfind("\n{") + 1 if not proc.stdout.lstrip().startswith(("{", "[")) else 0:])


def test_bad_inputs_are_sanitizer_clean_one_line_errors(tiny_model, asan_runtime, tmp_path):
    truncated = tmp_path / "t.gguf"
    full = tmp_path / "full.gguf"
    write_gguf(tiny_model(ODD, seed=1, draw="scaled", tokenizer=None), full, packing="i2_s", embed_type="f16")
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    for args in (["generate", "-m", truncated, "-p", "x", "-n", "2"], ["generate", "-m", full, "-n", "-3", "-p", "x"],
                 ["bench", "-m", full, "-t", "0"], ["nonsense"], ["generate", "-m", tmp_path / "missing.gguf", "-p", "x"]):
        proc = run_binary(asan_runtime, args, timeout=120)
        assert sanitizer_report(proc) is None
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("system_info")]
        assert lines and lines[-1].startswith("bitedge-run: error:"), proc.stderr


def test_clang_builds_the_runtime_without_warnings(tmp_path):
    require_tool("clang")
    exe = build_runtime(tmp_path / "bitedge-run-clang", cc="clang")  # -Wall -Wextra -Werror
    proc = run_binary(exe, ["--help"], timeout=60)
    assert proc.returncode == 0 and "generate" in proc.stdout + proc.stderr
