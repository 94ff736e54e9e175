"""The C runtime is lossless: bitedge-run's greedy runs against the numpy reference (bitedge.reference), on random
BitNet models of odd shapes written to GGUF (I2_S; f32, f16 and q8_0 embeddings), for every kernel table (the best
one on this CPU, forced scalar, aarch64 NEON under qemu with and without dotprod), batch sizes and thread counts.

Every comparison with the reference goes through the exact lossless check (bitedge.lossless, docs/conversion.md):
the runtime's int8 codes at every quantization, the reference re-run with those codes forced, differences allowed
only at rounding boundaries and within stated float-noise bounds. No allowance depends on the CPU's luck: the same
check passes on an AVX2-only machine, an AVX-512 one, and ARM under qemu, and it fails on every deliberately broken
build (tests/test_lossless_check.py)."""

from __future__ import annotations

import dataclasses
import platform
import shutil

import numpy as np
import pytest

from _runtime_helpers import generate_checked, qemu_runner, session_runtime
from bitedge.model import ModelConfig


reference_mod = pytest.importorskip("bitedge.reference")
writer_mod = pytest.importorskip("bitedge.convert.gguf_writer")
gguf_read = pytest.importorskip("bitedge.gguf_read")
from bitedge.native import read_logits, run_generate  # noqa: E402

CONFIGS = {
    # 6 heads, GQA 6:2, vocab 1000, ffn 344 (not a multiple of 128: padded K for ffn_down), relu2, tied, sub-norms
    "gqa6-relu2-tied": ModelConfig(vocab_size=1000, hidden_size=192, intermediate_size=344, num_layers=2, num_heads=6,
                                   num_kv_heads=2, head_dim=32, context_length=128, tie_embeddings=True,
                                   ffn_act="relu2", sub_norms=True, name="gqa6"),
    # llama-style: silu, no sub-norms, untied output, MHA, rope theta 500000
    "mha-silu-untied": ModelConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4,
                                   num_kv_heads=4, head_dim=32, context_length=128, tie_embeddings=False,
                                   ffn_act="silu", sub_norms=False, rope_theta=500000.0, name="silu"),
    # q_dim (5*24 = 120) != hidden 160, MQA (1 kv head), three layers
    "mqa-odd": ModelConfig(vocab_size=777, hidden_size=160, intermediate_size=200, num_layers=3, num_heads=5,
                           num_kv_heads=1, head_dim=24, context_length=128, tie_embeddings=True,
                           ffn_act="relu2", sub_norms=True, name="mqa"),
}
EMBED_TYPES = {"gqa6-relu2-tied": "f32", "mha-silu-untied": "f16", "mqa-odd": "q8_0"}

# 45 > batch 32: two prompt chunks (gemm), positions past 32; the mqa-odd model on this 45-token prompt is the one
# whose position-38 activation sits at a rounding boundary for numpy's AVX-512 path (issue #11)
PROMPTS = [[1], [5, 17, 300, 2, 99], [(i * 37 + 11) % 500 for i in range(45)]]
N_GEN = 8


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return session_runtime(tmp_path_factory)


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory):
    """name -> (gguf path, Reference of the model read back from that file: f16 embeddings as the runtime sees them)"""
    out = {}
    d = tmp_path_factory.mktemp("models")
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        source = tiny_model(cfg, seed=100 + i, draw="scaled", tokenizer=None)
        path = d / f"{name}.gguf"
        writer_mod.write_gguf(source, path, packing="i2_s", embed_type=EMBED_TYPES[name])
        out[name] = (path, reference_mod.Reference(gguf_read.read_model(path)))
    return out


def generate(binary, path, prompt, tmp_path, tag, **kw):
    dump = tmp_path / f"{tag}.f32"
    result = run_generate(binary, path, tokens=prompt, n=N_GEN, dump_logits=dump, **kw)
    return result["tokens"], read_logits(dump, result["vocab_size"]), result


@pytest.mark.parametrize("kernels", [None, "scalar"], ids=["best", "scalar"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_matches_reference(binary, models, tmp_path, name, kernels):
    path, reference = models[name]
    flipped = 0
    for j, prompt in enumerate(PROMPTS):
        tokens, logits, result, report = generate_checked(binary, path, reference, prompt, tmp_path, f"p{j}", n=N_GEN,
                                                          kernels=kernels)
        assert len(tokens) == N_GEN
        if kernels:
            assert result["kernels"] == kernels
        flipped += report.flipped_codes
        np.testing.assert_array_equal(np.asarray(result["logits_last"], dtype=np.float32), logits[-1])
    print(f"{name} [{kernels or 'best'}]: {flipped} int8 codes flipped at a rounding boundary")


@pytest.mark.parametrize("threads, batch", [(2, None), (2, 1), (1, 7)])
def test_threads_and_batches_are_lossless(binary, models, tmp_path, threads, batch):
    """The exact check for every thread count and prompt chunking (batch 1: gemv only; 7: uneven gemm chunks)."""
    for name in ("gqa6-relu2-tied", "mqa-odd"):
        path, reference = models[name]
        generate_checked(binary, path, reference, PROMPTS[2], tmp_path, f"{name}-t{threads}-b{batch}", n=N_GEN,
                         threads=threads, batch=batch)


def test_best_kernels_agree_with_scalar(binary, models, tmp_path):
    """Integer kernels are exact, so the best table and scalar quantize every activation to the same codes; the
    logits differ only through the float gemv of the output matrix (SIMD partial sums), the last operation: within
    the check's float-noise bound, and a different greedy token only inside it."""
    from bitedge.lossless import LOGIT_RTOL

    path, _ = models["mqa-odd"]
    prompt = PROMPTS[2]
    best_tokens, best, _ = generate(binary, path, prompt, tmp_path, "best")
    scalar_tokens, scalar, _ = generate(binary, path, prompt, tmp_path, "scalar", kernels="scalar")
    for step, (a, b) in enumerate(zip(best_tokens, scalar_tokens)):
        scale = float(np.abs(scalar[step]).max())
        np.testing.assert_allclose(best[step], scalar[step], rtol=0, atol=LOGIT_RTOL * scale)
        if a != b:  # a tie within float noise; the sequences then differ and the rest is not comparable
            assert scalar[step][b] - scalar[step][a] <= 2 * LOGIT_RTOL * scale, f"step {step}"
            break


@pytest.mark.parametrize("name", ["gqa6-relu2-tied", "mqa-odd"])
def test_threads_and_batch_do_not_change_results(binary, models, tmp_path, name):
    """-t 2 equals -t 1 bit for bit, and so does the prompt run token by token (gemv) vs in batches (gemm)."""
    path, _ = models[name]
    prompt = PROMPTS[2]
    t1, l1, _ = generate(binary, path, prompt, tmp_path, "t1", threads=1)
    t2, l2, _ = generate(binary, path, prompt, tmp_path, "t2", threads=2)
    b1, lb, _ = generate(binary, path, prompt, tmp_path, "b1", threads=2, batch=1)
    b7, l7, _ = generate(binary, path, prompt, tmp_path, "b7", batch=7)
    assert t1 == t2 == b1 == b7
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(l1, lb)
    np.testing.assert_array_equal(l1, l7)


def test_sampling_is_deterministic_per_seed(binary, models):
    path, _ = models["gqa6-relu2-tied"]
    a = run_generate(binary, path, tokens=[3, 4, 5], n=12, greedy=False, temp=1.5, seed=7)["tokens"]
    b = run_generate(binary, path, tokens=[3, 4, 5], n=12, greedy=False, temp=1.5, seed=7)["tokens"]
    c = run_generate(binary, path, tokens=[3, 4, 5], n=12, greedy=False, temp=1.5, seed=8)["tokens"]
    assert a == b
    assert a != c  # 12 draws at temperature 1.5 over 1000 tokens: equal only by a freak coincidence
    k1 = run_generate(binary, path, tokens=[3, 4, 5], n=12, greedy=False, temp=5.0, top_k=1, seed=9)["tokens"]
    g = run_generate(binary, path, tokens=[3, 4, 5], n=12)["tokens"]
    assert k1 == g  # top-k 1 is greedy whatever the temperature
    p0 = run_generate(binary, path, tokens=[3, 4, 5], n=12, greedy=False, temp=0.7, top_k=0, top_p=1e-6, seed=9)
    assert p0["tokens"] == g  # a nucleus this small holds only the most likely token


# the emulated board each qemu CPU stands for: its target profile, built as a user builds it
QEMU_PROFILES = {"cortex-a72": "rpi4-qemu", "cortex-a76": "rpi5-qemu", "max": "aarch64-max-qemu"}


@pytest.fixture(scope="module")
def aarch64_binaries(tmp_path_factory):
    """bitedge-run for an emulated board as a user builds and ships it: the product's build (bitedge.builder.compile,
    the profile's first toolchain that works here: zig, as on a user's machine) with -Werror added; one per
    profile, built on first use."""
    from bitedge.builder.compile import build_runtime
    from bitedge.targets import get_target

    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-aarch64 is not installed")
    built = {}

    def binary(profile: str):
        if profile not in built:
            result = build_runtime(get_target(profile), out_dir=tmp_path_factory.mktemp(profile),
                                   extra_cflags=("-Werror",))
            print(f"{profile} built with {result.toolchain.id}")
            built[profile] = result.binary
        return built[profile]

    return binary


@pytest.mark.qemu
@pytest.mark.parametrize("cpu", ["cortex-a72", "cortex-a76", "max"])
def test_aarch64_under_qemu_matches_reference(aarch64_binaries, models, tmp_path, cpu):
    runner = qemu_runner(cpu)
    aarch64_binary = aarch64_binaries(QEMU_PROFILES[cpu])
    for name in ("gqa6-relu2-tied", "mha-silu-untied"):
        path, reference = models[name]
        prompt = PROMPTS[2]
        tokens, logits, result, _ = generate_checked(aarch64_binary, path, reference, prompt, tmp_path,
                                                     f"{cpu}-{name}", n=N_GEN, runner=runner, threads=2)
        # cortex-a72 has no dotprod: plain NEON; cortex-a76 has it: the dotprod table is the one tested; max has
        # i8mm: its smmla gemm runs the prompt (and the matmuls run that table's I2_S, not a fallback)
        table = {"cortex-a72": "neon", "cortex-a76": "neon-dotprod", "max": "neon-i8mm"}[cpu]
        assert result["kernels"] == table
        assert result["ternary_ops"] == "i2_s/" + table.replace("-", "_")
        generate_checked(aarch64_binary, path, reference, prompt, tmp_path, f"{cpu}-{name}-s", n=N_GEN, runner=runner,
                         kernels="scalar")


@pytest.mark.qemu
def test_avx2_only_cpu_under_qemu_x86_is_lossless(binary, models, tmp_path):
    """This machine's build on an emulated AVX2-only CPU (qemu-x86_64 -cpu Haswell: TCG emulates AVX2, not
    AVX-512), as on a Zen 3 host: the kernel table chosen there passes the same exact check."""
    if shutil.which("qemu-x86_64") is None or platform.machine() != "x86_64":
        pytest.skip("needs an x86-64 host with qemu-x86_64 (qemu-user)")
    runner = ["qemu-x86_64", "-cpu", "Haswell"]
    for name in ("gqa6-relu2-tied", "mqa-odd"):
        path, reference = models[name]
        _, _, result, _ = generate_checked(binary, path, reference, PROMPTS[2], tmp_path, f"haswell-{name}", n=N_GEN,
                                           runner=runner, threads=2)
        assert result["kernels"] == "avx2" and result["ternary_ops"] == "i2_s/avx2"


def test_realistic_shape_is_lossless(tiny_model, binary, tmp_path):
    """At a real model's width (hidden 768, 12 heads, ffn 3072: the 125M shape, 4 layers) thousands of int8
    activations per token make rounding flips routine; the exact check holds there too, with the same bounds."""
    from bitedge.convert.dummy import PRESETS

    cfg = dataclasses.replace(PRESETS["125M"], num_layers=4, vocab_size=2000, context_length=64, name="wide")
    path = tmp_path / "wide.gguf"
    writer_mod.write_gguf(tiny_model(cfg, seed=7, draw="scaled", tokenizer=None), path, packing="i2_s", embed_type="f16")
    prompt = [(i * 101 + 7) % 2000 for i in range(40)]  # 40 > batch 32
    reference = reference_mod.Reference(gguf_read.read_model(path))
    generate_checked(binary, path, reference, prompt, tmp_path, "wide", n=N_GEN, threads=2)
