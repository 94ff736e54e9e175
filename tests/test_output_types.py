"""The smaller embedding / output matrix types, Q6_K and Q4_0 (issue 13 item 5), end to end.

- bitedge's numpy port of ggml's Q6_K quantizer (bitedge.formats.float_quants) writes ggml's layout: gguf-py's own
  dequantizer (an independent implementation) reads back exactly the values a block can hold, and random weights
  within Q6_K's error; Q4_0 comes from gguf-py itself.
- a converted file carries the ggml type in its tensor table (read by gguf's GGUFReader) and bitedge.embed_type;
- bitedge-run generates the reference's greedy tokens from such a file, under the exact lossless check
  (bitedge.lossless), with this CPU's best table and the scalar one, and under qemu-aarch64 for the NEON path;
- a bad type name is one line and exit 2, with no file written.
The C kernels of both types against the scalar twin and gguf's dequantization: tests/test_c_kernels.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, quants

from _runtime_helpers import generate_checked, qemu_runner, session_runtime
from bitedge.cli import main
from bitedge.convert.gguf_writer import write_gguf
from bitedge.errors import BitedgeError
from bitedge.formats import float_quants
from bitedge.gguf_read import read_model
from bitedge.model import ModelConfig
from bitedge.reference import Reference

Q6_K, Q4_0 = GGMLQuantizationType.Q6_K, GGMLQuantizationType.Q4_0
CONFIGS = {
    # hidden 256: one Q6_K block per row; tied output, relu2, sub-norms
    "q6_k": ModelConfig(vocab_size=600, hidden_size=256, intermediate_size=384, num_layers=2, num_heads=4,
                        num_kv_heads=2, head_dim=64, context_length=128, tie_embeddings=True, ffn_act="relu2",
                        sub_norms=True, name="q6k"),
    # hidden 160: five Q4_0 blocks per row (not a multiple of 256); untied output, silu, no sub-norms
    "q4_0": ModelConfig(vocab_size=500, hidden_size=160, intermediate_size=320, num_layers=2, num_heads=5,
                        num_kv_heads=1, head_dim=32, context_length=128, tie_embeddings=False, ffn_act="silu",
                        sub_norms=False, rope_theta=500000.0, name="q40"),
}
PROMPT = [(i * 37 + 11) % 500 for i in range(40)]  # > batch 32: a gemm chunk and a gemv tail
N_GEN = 8


# ------------------------------------------------------------------------------------------------ the quantizer


def test_q6_k_layout_round_trips_exactly_through_gguf():
    """Weights a Q6_K block holds exactly (levels -32..31 times a power of two, each group reaching -32) come back
    bit for bit from gguf-py's dequantizer: every level, group scale and bit position of ggml's layout is right."""
    rng = np.random.default_rng(5)
    levels = rng.integers(-32, 32, size=(6, 512)).astype(np.float32)
    levels.reshape(-1, 16)[:, 3] = -32  # every 16-weight group has its extreme at -32: scale exactly 1/16 of d * -128
    x = levels * np.float32(2.0**-4)
    x[5, 256:] = 0  # an all-zero block: ggml's all-zero bytes
    packed = float_quants.quantize(x, Q6_K)
    assert packed.shape == (6, 2 * 210) and packed.dtype == np.uint8
    assert not packed[5, 210:].any()
    np.testing.assert_array_equal(quants.dequantize(packed, Q6_K), x)


def test_q6_k_error_between_q8_0_and_q4_0():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 1024)).astype(np.float32)
    err = {}
    for name in ("q8_0", "q6_k", "q4_0"):
        qtype = float_quants.EMBED_TYPES[name]
        back = quants.dequantize(float_quants.quantize(x, qtype), qtype)
        err[name] = float(np.sqrt(np.mean((back - x) ** 2)))
    assert err["q8_0"] < err["q6_k"] < err["q4_0"], err
    assert err["q6_k"] < 0.03  # 6 bits per weight with a scale per 16: ~2% of sigma for a Gaussian


# ------------------------------------------------------------------------------------------------ files and runs


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return session_runtime(tmp_path_factory)


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory):
    """embed type -> (gguf path, Reference of the model read back from that file)"""
    d = tmp_path_factory.mktemp("outtypes")
    out = {}
    for i, (embed_type, cfg) in enumerate(CONFIGS.items()):
        path = d / f"{embed_type}.gguf"
        write_gguf(tiny_model(cfg, seed=40 + i, draw="scaled", tokenizer=None), path, packing="i2_s",
                   embed_type=embed_type)
        out[embed_type] = (path, Reference(read_model(path)))
    return out


@pytest.mark.parametrize("embed_type", list(CONFIGS))
def test_file_has_the_ggml_type(models, embed_type):
    path, _ = models[embed_type]
    reader = GGUFReader(path)
    types = {t.name: t.tensor_type for t in reader.tensors}
    want = float_quants.EMBED_TYPES[embed_type]
    assert types["token_embd.weight"] == want
    if not CONFIGS[embed_type].tie_embeddings:
        assert types["output.weight"] == want
    field = reader.get_field("bitedge.embed_type")
    assert bytes(field.parts[field.data[0]]).decode() == embed_type


@pytest.mark.parametrize("kernels", [None, "scalar"], ids=["best", "scalar"])
@pytest.mark.parametrize("embed_type", list(CONFIGS))
def test_greedy_matches_reference(binary, models, tmp_path, embed_type, kernels):
    path, reference = models[embed_type]
    tokens, _, result, _ = generate_checked(binary, path, reference, PROMPT, tmp_path, f"{embed_type}-{kernels}",
                                            n=N_GEN, kernels=kernels, threads=2)
    assert len(tokens) == N_GEN


@pytest.mark.qemu
def test_neon_under_qemu_matches_reference(models, tmp_path_factory, tmp_path):
    """The NEON float gemv of both types (Cortex-A72: the plain "neon" table), built as a user builds it."""
    from bitedge.builder.compile import build_runtime
    from bitedge.targets import get_target

    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-aarch64 is not installed")
    exe = build_runtime(get_target("rpi4-qemu"), out_dir=tmp_path_factory.mktemp("rpi4"), extra_cflags=("-Werror",)).binary
    for embed_type in CONFIGS:
        path, reference = models[embed_type]
        _, _, result, _ = generate_checked(exe, path, reference, PROMPT, tmp_path, f"a72-{embed_type}", n=N_GEN,
                                           runner=qemu_runner("cortex-a72"))
        assert result["kernels"] == "neon"


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_type_name_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "m.gguf"
    assert main(["dummy", "--preset", "test", "-o", str(out), "--embed-type", "q5_k", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "q5_k" in err[0] and "q6_k" in err[0] and "q4_0" in err[0], err
    assert not out.exists()


def test_q6_k_needs_rows_of_256(tiny_model, tmp_path):
    """Hidden 160 holds Q4_0 blocks but not Q6_K's 256: refused in one line before a byte is written."""
    with pytest.raises(BitedgeError, match=r"q6_k.*256"):
        write_gguf(tiny_model(CONFIGS["q4_0"], seed=1), tmp_path / "x.gguf", embed_type="q6_k")
    assert not (tmp_path / "x.gguf").exists()
