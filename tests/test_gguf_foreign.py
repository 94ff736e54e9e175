"""read_foreign on GGUF files built the way llama.cpp and bitnet.cpp write them, from random ternary models."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FOREIGN, tiny_weights
from _foreign_helpers import (
    bf16_round,
    open_with_gguf_reader,
    write_bitnet_cpp_i2s_gguf,
    write_llama_cpp_gguf,
)
from gguf import GGMLQuantizationType, quants

from bitedge.convert.gguf_foreign import read_foreign
from bitedge.convert.gguf_foreign_tensors import open_gguf_any
from bitedge.errors import BitedgeError
from bitedge.model import Ternary

WEIGHTS = tiny_weights(FOREIGN, seed=3, draw="uniform")

ROUND_SCALE = {
    "F32": lambda s: float(np.float32(s)),
    "F16": lambda s: float(np.float16(s)),
    "BF16": bf16_round,
    "TQ2_0": lambda s: float(np.float16(s)),  # one f16 scale per block of 256
    "TQ1_0": lambda s: float(np.float16(s)),
}


def assert_same_model(source, weights, round_scale=float, embed_round=lambda a: a.astype(np.float16).astype(np.float32)):
    source.check_complete()
    n = 0
    for name, value in source.iter_tensors():
        want = weights[name]
        if isinstance(want, Ternary):
            assert isinstance(value, Ternary), name
            assert value.values.dtype == np.int8
            np.testing.assert_array_equal(value.values, want.values, err_msg=name)
            assert value.scale == round_scale(want.scale), name
        elif name == "token_embd.weight":
            np.testing.assert_array_equal(value, embed_round(want), err_msg=name)
        else:
            np.testing.assert_array_equal(value, want, err_msg=name)
        n += 1
    assert n == len(weights)


@pytest.mark.parametrize("ternary_type", ["F32", "F16", "BF16", "TQ2_0", "TQ1_0"])
def test_llama_cpp_bitnet_types_round_trip(tmp_path, ternary_type):
    path = tmp_path / f"bitnet-{ternary_type}.gguf"
    write_llama_cpp_gguf(path, WEIGHTS, ternary_type=ternary_type, hidden_activation="relu2")
    source = read_foreign(path)
    assert source.config == FOREIGN
    assert source.metadata["gguf.dialect"] == "llama.cpp"
    assert_same_model(source, WEIGHTS, ROUND_SCALE[ternary_type])


def test_upstream_bitnet_defaults_to_silu_and_reads_hidden_activation(tmp_path):
    write_llama_cpp_gguf(tmp_path / "a.gguf", WEIGHTS)
    assert read_foreign(tmp_path / "a.gguf").config.ffn_act == "silu"  # llama.cpp's default for "bitnet" (1bitLLM 3B)
    write_llama_cpp_gguf(tmp_path / "b.gguf", WEIGHTS, hidden_activation="relu2")
    assert read_foreign(tmp_path / "b.gguf").config.ffn_act == "relu2"


def test_scale_tensors_multiply_the_weights(tmp_path):
    path = tmp_path / "scaled.gguf"
    write_llama_cpp_gguf(path, WEIGHTS, ternary_type="F16", scale_tensors=True, hidden_activation="relu2")
    assert_same_model(read_foreign(path), WEIGHTS)  # T stored exactly in F16, s in F32 blk.N.<role>.scale


def test_untied_output_is_read(tmp_path):
    config = FOREIGN.__class__(**{**FOREIGN.__dict__, "tie_embeddings": False})
    weights = tiny_weights(config, seed=4, draw="uniform")
    path = tmp_path / "untied.gguf"
    write_llama_cpp_gguf(path, weights, config, ternary_type="TQ2_0", hidden_activation="relu2", embed_type="F32")
    source = read_foreign(path)
    assert not source.config.tie_embeddings
    np.testing.assert_array_equal(source.tensors["output.weight"](), weights["output.weight"])


@pytest.mark.parametrize("arch", ["bitnet-25", "bitnet-b1.58"])
def test_bitnet_cpp_i2s_round_trip(tmp_path, arch):
    path = tmp_path / "ggml-model-i2_s.gguf"
    write_bitnet_cpp_i2s_gguf(path, WEIGHTS, arch=arch)
    source = read_foreign(path)
    assert source.config.ffn_act == "relu2" and source.config.sub_norms and source.config.tie_embeddings
    assert source.config.num_kv_heads == 2 and source.config.rope_theta == 500000.0
    assert source.metadata["gguf.dialect"] == "bitnet.cpp"
    assert source.metadata["gguf.tensor_types"]["I2_S"] == 7 * FOREIGN.num_layers
    assert_same_model(source, WEIGHTS)  # the I2_S tail holds the f32 scale exactly
    tok = source.tokenizer
    assert tok.model == "gpt2" and tok.pre == "llama-bpe" and len(tok.tokens) == FOREIGN.vocab_size
    assert (tok.bos_id, tok.eos_id, tok.add_bos, tok.chat_template) == (0, 1, True, "{{ bos_token }}")
    assert tok.merges == ["t o", "to k"] and tok.token_types[:3] == [3, 3, 1]
    assert source.source_sha256 and len(source.source_sha256) == 64


def test_i2s_arm_layout(tmp_path):
    path = tmp_path / "arm.gguf"
    write_bitnet_cpp_i2s_gguf(path, WEIGHTS, layout="arm")
    assert_same_model(read_foreign(path, i2s_layout="arm"), WEIGHTS)
    # read with the wrong layout the values differ (the file does not say which layout it has)
    wrong = read_foreign(path).tensors["blk.0.attn_q.weight"]()
    assert not np.array_equal(wrong.values, WEIGHTS["blk.0.attn_q.weight"].values)


def test_llama_arch_ternary_unpermutes_q_and_k(tmp_path):
    config = FOREIGN.__class__(**{**FOREIGN.__dict__, "sub_norms": False, "ffn_act": "silu"})
    weights = tiny_weights(config, seed=5, draw="uniform")
    path = tmp_path / "llama-tq2.gguf"
    write_llama_cpp_gguf(path, weights, config, arch="llama", ternary_type="TQ2_0", permute_qk=True)
    source = read_foreign(path)
    assert not source.config.sub_norms and source.config.ffn_act == "silu"
    assert_same_model(source, weights, ROUND_SCALE["TQ2_0"])


# ---------------------------------------------------------------------------------------------- errors


def test_tq2_blocks_with_different_scales_are_reported(tmp_path):
    path = tmp_path / "blocky.gguf"
    write_llama_cpp_gguf(path, WEIGHTS, ternary_type="TQ2_0")
    # rewrite one tensor's block scales: a per-block model is not "ternary times one scale"
    t = next(t for t in open_gguf_any(path).tensors if t.name == "blk.1.ffn_up.weight")
    n, k = t.shape
    rng = np.random.default_rng(0)
    dense = WEIGHTS["blk.1.ffn_up.weight"].values.astype(np.float32) * rng.uniform(0.01, 0.02, size=(n, k // 256, 1)).repeat(256, axis=2).reshape(n, k).astype(np.float32)
    raw = quants.quantize(dense, GGMLQuantizationType.TQ2_0)
    with open(path, "r+b") as f:
        f.seek(t.data_offset)
        f.write(raw.tobytes())
    source = read_foreign(path)
    with pytest.raises(BitedgeError, match=r"blk\.1\.ffn_up\.weight: its TQ2_0 blocks have \d+ different scales"):
        source.tensors["blk.1.ffn_up.weight"]()


def test_non_ternary_float_weights_are_refused(tmp_path):
    weights = dict(WEIGHTS)
    rng = np.random.default_rng(1)
    path = tmp_path / "dense.gguf"
    write_llama_cpp_gguf(path, weights, ternary_type="F32")
    t = next(t for t in open_gguf_any(path).tensors if t.name == "blk.0.attn_v.weight")
    with open(path, "r+b") as f:
        f.seek(t.data_offset)
        f.write(rng.standard_normal(t.shape).astype(np.float32).tobytes())
    with pytest.raises(BitedgeError, match=r"blk\.0\.attn_v\.weight: F32 values are not ternary"):
        read_foreign(path).tensors["blk.0.attn_v.weight"]()


def test_plain_llama_file_is_refused_when_opened(tmp_path):
    config = FOREIGN.__class__(**{**FOREIGN.__dict__, "sub_norms": False, "ffn_act": "silu"})
    rng = np.random.default_rng(2)
    dense = {
        k: (0.02 * rng.standard_normal(v.values.shape)).astype(np.float32) if isinstance(v, Ternary) else v
        for k, v in tiny_weights(config, seed=2, draw="uniform").items()
    }
    path = tmp_path / "llama-f32.gguf"
    write_llama_cpp_gguf(path, dense, config, arch="llama")
    with pytest.raises(BitedgeError, match=r"blk\.0\.attn_q\.weight: F32 values are not ternary times one scale"):
        read_foreign(path)


def test_unknown_architecture(tmp_path):
    path = tmp_path / "gpt2.gguf"
    write_llama_cpp_gguf(path, WEIGHTS, arch="gpt2")
    with pytest.raises(BitedgeError, match="unsupported architecture 'gpt2'"):
        read_foreign(path)


def test_unsupported_ternary_type_names_tensor_and_type(tmp_path):
    path = tmp_path / "q4.gguf"
    write_llama_cpp_gguf(path, WEIGHTS, ternary_type="Q4_0")
    with pytest.raises(BitedgeError, match=r"tensor blk\.0\.attn_q\.weight: unsupported type Q4_0"):
        read_foreign(path).tensors["blk.0.attn_q.weight"]()


def test_bitnet_cpp_tl1_is_refused_by_name(tmp_path):
    path = tmp_path / "tl1.gguf"
    write_bitnet_cpp_i2s_gguf(path, WEIGHTS, type_id=38)  # same byte size as I2_S, TL1's type id
    with pytest.raises(BitedgeError, match=r"blk\.0\.attn_q\.weight: unsupported type TL1 \(bitnet.cpp type id 38"):
        read_foreign(path)  # refused when opened, before any tensor is converted


def test_bitnet_cpp_tl2_is_told_apart_from_mxfp4(tmp_path):
    """Type id 39 is MXFP4 upstream and TL2 in bitnet.cpp: data smaller than MXFP4 needs is the fork's TL2."""
    path = tmp_path / "tl2.gguf"
    write_bitnet_cpp_i2s_gguf(path, WEIGHTS, type_id=39)
    table = {t.name: t for t in open_gguf_any(path).tensors}
    assert table["blk.1.ffn_down.weight"].type_name == "TL2"
    with pytest.raises(BitedgeError, match=r"blk\.0\.attn_q\.weight: unsupported type TL2 \(bitnet.cpp type id 39"):
        read_foreign(path)


def test_missing_tensor_and_bad_shape(tmp_path):
    weights = {k: v for k, v in WEIGHTS.items() if k != "blk.1.ffn_sub_norm.weight"}
    write_llama_cpp_gguf(tmp_path / "missing.gguf", weights)
    with pytest.raises(BitedgeError, match=r"missing tensor blk\.1\.ffn_sub_norm\.weight"):
        read_foreign(tmp_path / "missing.gguf")
    weights = dict(WEIGHTS, **{"output_norm.weight": np.ones(7, dtype=np.float32)})
    write_llama_cpp_gguf(tmp_path / "shape.gguf", weights)
    with pytest.raises(BitedgeError, match=r"output_norm\.weight has shape \(7,\)"):
        read_foreign(tmp_path / "shape.gguf")


def test_corrupt_files(tmp_path):
    path = tmp_path / "m.gguf"
    write_bitnet_cpp_i2s_gguf(path, WEIGHTS)
    data = path.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(BitedgeError, match="truncated"):
        read_foreign(tmp_path / "cut.gguf")
    (tmp_path / "head.gguf").write_bytes(data[:40])
    with pytest.raises(BitedgeError, match="corrupt or truncated"):
        read_foreign(tmp_path / "head.gguf")
    (tmp_path / "x.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(BitedgeError, match="not a GGUF file"):
        read_foreign(tmp_path / "x.gguf")
    with pytest.raises(BitedgeError, match="no such file"):
        read_foreign(tmp_path / "absent.gguf")
    # cut inside the last I2_S tensor (a size only this module knows): still one line
    last = open_gguf_any(path).tensors[-2]
    assert last.type_name == "I2_S"
    (tmp_path / "cut2.gguf").write_bytes(data[: last.data_offset + 10])
    with pytest.raises(BitedgeError, match="truncated"):
        read_foreign(tmp_path / "cut2.gguf")


def test_gguf_reader_route_gives_the_same_table(tmp_path):
    """ForeignGGUFReader (gguf's GGUFReader taught type 36) and the fast parser agree on an I2_S file."""
    path = tmp_path / "m.gguf"
    write_bitnet_cpp_i2s_gguf(path, WEIGHTS)
    fast, slow = open_gguf_any(path), open_with_gguf_reader(path)
    assert (fast.version, fast.alignment, fast.size) == (slow.version, slow.alignment, slow.size)
    assert fast.kv == slow.kv
    assert len(fast.tensors) == len(slow.tensors)
    for a, b in zip(fast.tensors, slow.tensors):
        assert (a.name, a.type_id, a.type_name, a.shape, a.n_bytes, a.data_offset) == (b.name, b.type_id, b.type_name, b.shape, b.n_bytes, b.data_offset)
        np.testing.assert_array_equal(a.data, b.data)


# ---------------------------------------------------------------------------------------------- integration


@pytest.mark.parametrize("packing", ["i2_s", "tq2_0"])
def test_bitnet_cpp_file_converts_to_bitedge_and_reads_back(tmp_path, packing):
    """bitnet.cpp I2_S file -> read_foreign -> bitedge writer -> bitedge reader: the same T and scales."""
    from bitedge.convert.gguf_writer import write_gguf
    from bitedge.gguf_read import read_model

    src_path = tmp_path / "ggml-model-i2_s.gguf"
    write_bitnet_cpp_i2s_gguf(src_path, WEIGHTS)
    out = tmp_path / f"bitedge-{packing}.gguf"
    write_gguf(read_foreign(src_path), out, packing=packing, embed_type="f16")
    again = read_model(out)
    assert again.config == read_foreign(src_path).config
    round_scale = ROUND_SCALE["TQ2_0"] if packing == "tq2_0" else float
    assert_same_model(again, WEIGHTS, round_scale)
    assert read_foreign(out).config == again.config  # read_foreign hands bitedge files to the bitedge reader


@pytest.mark.parametrize("arch,ternary_type", [("bitnet-25", "F32"), ("bitnet-b1.58", "F16")])
def test_bitnet_cpp_float_files(tmp_path, arch, ternary_type):
    """convert-ms-to-gguf-bitnet.py's F32 file (before llama-quantize I2_S): T * s in floats, relu2 by arch."""
    path = tmp_path / "ggml-model-f32-bitnet.gguf"
    write_llama_cpp_gguf(path, WEIGHTS, arch=arch, ternary_type=ternary_type, embed_type="F32")
    source = read_foreign(path)
    assert source.config.ffn_act == "relu2" and source.metadata["gguf.dialect"] == "bitnet.cpp"
    assert_same_model(source, WEIGHTS, ROUND_SCALE[ternary_type], embed_round=lambda a: a)
