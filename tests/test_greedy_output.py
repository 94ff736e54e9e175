"""The greedy output (kernels/runtime/output_greedy.c): a greedy decode step computes exact logits only for the
output rows an int16 pass and its error bound cannot rule out, and must pick the token the full float output picks,
bit for bit, on every kernel table. Compared here against the same binary forced to the full output
(BITEDGE_GREEDY_FULL=1): tokens, the exact logits of the last step, and that the fast pass really ran. One case
makes an exact tie the bound cannot separate (two identical output rows): the argmax must be the lower id, as
be_argmax's. The pass is for Q8_0 output matrices; the others take the full output, which is checked too; so do
the NEON tables (q8_0_i16_gemv NULL, kernels.h), whose self-test under qemu skips the int16 case."""

from __future__ import annotations

import numpy as np
import pytest

from _runtime_helpers import session_runtime
from bitedge.model import ModelConfig
from bitedge.native import _check, _json_from, run_program

writer_mod = pytest.importorskip("bitedge.convert.gguf_writer")
gguf = pytest.importorskip("gguf")

CONFIG = ModelConfig(vocab_size=3000, hidden_size=256, intermediate_size=512, num_layers=2, num_heads=4,
                     num_kv_heads=2, head_dim=64, context_length=128, tie_embeddings=True, ffn_act="relu2",
                     sub_norms=True, name="greedy")
PROMPT = [(i * 37 + 11) % 2900 for i in range(40)]  # 40 > batch 32: the prompt takes two chunks
N_GEN = 24


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return session_runtime(tmp_path_factory)


@pytest.fixture(scope="module")
def model_file(tiny_model, tmp_path_factory):
    def write(embed_type: str):
        path = tmp_path_factory.mktemp("greedy") / f"greedy-{embed_type}.gguf"
        writer_mod.write_gguf(tiny_model(CONFIG, seed=7, draw="scaled", tokenizer=None), path, packing="i2_s",
                              embed_type=embed_type)
        return path
    return write


def generate(binary, model, *, full: bool, threads: int = 1, kernels: str | None = None, prompt=PROMPT,
             n=N_GEN) -> dict:
    args = ["generate", "-m", str(model), "--tokens", ",".join(map(str, prompt)), "-n", str(n), "-t", str(threads),
            "--temp", "0", "--ignore-eos", "--json"]
    env = {"BITEDGE_GREEDY_FULL": "1" if full else "0"}
    return _json_from(_check(run_program(binary, args, kernels=kernels, env=env)))


def assert_same_run(fast: dict, full: dict, *, fast_steps: int):
    assert fast["tokens"] == full["tokens"]
    # the last step's logits are recomputed in full for --json: every bit equal
    np.testing.assert_array_equal(np.asarray(fast["logits_last"], np.float32),
                                  np.asarray(full["logits_last"], np.float32))
    assert full["greedy_fast_steps"] == 0
    assert fast["greedy_fast_steps"] == fast_steps and fast["decode_steps"] == N_GEN - 1


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kernels", [None, "scalar"], ids=["best", "scalar"])
def test_fast_greedy_equals_full_output(binary, model_file, kernels, threads):
    model = model_file("q8_0")
    fast = generate(binary, model, full=False, threads=threads, kernels=kernels)
    full = generate(binary, model, full=True, threads=threads, kernels=kernels)
    assert_same_run(fast, full, fast_steps=N_GEN - 1)
    print(f"{fast['kernels']}: {fast['tokens']}")


def test_exact_tie_goes_to_the_lower_id(binary, model_file, tmp_path):
    """Copy the row of the token the full output picks at the first decode step into a lower row: the two logits
    are equal to the last bit, so no bound separates them and both become candidates; be_argmax takes the lower."""
    source = model_file("q8_0")
    first = generate(binary, source, full=True, n=2)
    winner = first["tokens"][1]  # argmax of the first decode step's logits
    lower = next(t for t in range(winner) if t not in PROMPT and t not in first["tokens"])
    model = tmp_path / "tie.gguf"
    model.write_bytes(source.read_bytes())
    reader = gguf.GGUFReader(str(model))
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    row_bytes = CONFIG.hidden_size // 32 * 34
    with open(model, "r+b") as f:  # token_embd is tied (the output matrix) and neither id is ever fed
        f.seek(embd.data_offset + winner * row_bytes)
        row = f.read(row_bytes)
        f.seek(embd.data_offset + lower * row_bytes)
        f.write(row)
    full = generate(binary, model, full=True, n=2)
    fast = generate(binary, model, full=False, n=2)
    assert full["tokens"][1] == lower, "the full output should pick the lower of two equal rows"
    assert fast["tokens"] == full["tokens"] and fast["greedy_fast_steps"] == 1


@pytest.mark.parametrize("embed_type", ["f16", "q6_k"])
def test_other_output_types_take_the_full_output(binary, model_file, embed_type):
    model = model_file(embed_type)
    fast = generate(binary, model, full=False)
    full = generate(binary, model, full=True)
    assert fast["tokens"] == full["tokens"] and fast["greedy_fast_steps"] == 0
