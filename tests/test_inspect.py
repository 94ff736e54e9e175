"""inspect_file / format_inspect on a bitedge file, a llama.cpp TQ2_0 file and a bitnet.cpp I2_S (type 36) file."""

from __future__ import annotations

import json

import pytest
from conftest import FOREIGN, tiny_weights
from _foreign_helpers import write_bitnet_cpp_i2s_gguf, write_llama_cpp_gguf

from bitedge.errors import BitedgeError
from bitedge.inspect import format_inspect, inspect_file
from bitedge.model import ModelSource, TokenizerData

WEIGHTS = tiny_weights(FOREIGN, seed=7, draw="uniform")
N_TERNARY = 7 * FOREIGN.num_layers
TERNARY_PARAMS = sum(w.values.size for w in WEIGHTS.values() if hasattr(w, "values"))


def rows(d: dict) -> dict:
    return {r["name"]: r for r in d["tensors"]}


@pytest.mark.parametrize("packing,bpw", [("i2_s", 2.0), ("tl2", None)])
def test_bitedge_file(tmp_path, packing, bpw):
    from bitedge.convert.gguf_writer import write_gguf

    tokenizer = TokenizerData(model="gpt2", tokens=["a", "b", "c"], token_types=[1, 1, 1], bos_id=0, eos_id=1)
    source = ModelSource(FOREIGN, {k: (lambda v=v: v) for k, v in WEIGHTS.items()}, tokenizer, source="random")
    path = tmp_path / f"bitedge-{packing}.gguf"
    write_gguf(source, path, packing=packing, embed_type="f16")
    d = inspect_file(path)
    json.dumps(d)  # JSON-friendly
    assert d["dialect"] == "bitedge" and d["architecture"] == "bitnet"
    assert d["bitedge"]["bitedge.weight_packing"] == packing
    assert d["dims"]["embedding_length"] == FOREIGN.hidden_size and d["dims"]["attention.head_count_kv"] == 2
    t = rows(d)
    q = t["blk.0.attn_q.weight"]
    assert q["type"] == "I8" and q["logical_shape"] == [FOREIGN.q_dim, FOREIGN.hidden_size] and q["shape"] != q["logical_shape"]
    down = t["blk.1.ffn_down.weight"]
    assert down["logical_shape"] == [FOREIGN.hidden_size, FOREIGN.intermediate_size]
    assert d["ternary"]["tensors"] == N_TERNARY and d["ternary"]["params"] == TERNARY_PARAMS
    if bpw is not None:
        assert q["bits_per_weight"] == bpw and d["ternary"]["bits_per_weight"] == bpw
    else:  # TL2: 20 bytes per 3 columns of 32 rows, K padded to a multiple of 3: a bit over 5/3
        assert 1.66 < q["bits_per_weight"] < 1.7
    assert t["blk.0.attn_q.scale"]["type"] == "F32"
    assert d["tokenizer"]["vocab_size"] == FOREIGN.vocab_size and d["tokenizer"]["bos_id"] == 0
    text = format_inspect(d)
    assert "bitedge.weight_packing" in text and "blk.0.attn_q.weight" in text and "(packed)" in text


def test_llama_cpp_tq2_file(tmp_path):
    path = tmp_path / "tq2.gguf"
    write_llama_cpp_gguf(path, WEIGHTS, ternary_type="TQ2_0", hidden_activation="relu2")
    d = inspect_file(path)
    assert d["dialect"] == "llama.cpp" and d["architecture"] == "bitnet" and d["bitedge"] == {}
    assert d["dims"]["hidden_activation"] == "relu2" and d["dims"]["rope.freq_base"] == 500000.0
    q = rows(d)["blk.0.attn_q.weight"]
    assert q["type"] == "TQ2_0" and q["logical_shape"] == [FOREIGN.q_dim, FOREIGN.hidden_size]
    assert q["bits_per_weight"] == 66 * 8 / 256
    assert d["ternary"]["params"] == TERNARY_PARAMS
    tok = d["tokenizer"]
    assert (tok["model"], tok["pre"], tok["eos_id"], tok["has_chat_template"], tok["merges"]) == ("gpt2", "llama-bpe", 1, True, 2)
    assert d["notes"] == []
    text = format_inspect(d)
    assert "TQ2_0" in text and "chat template: yes" in text


def test_bitnet_cpp_i2s_file(tmp_path):
    path = tmp_path / "ggml-model-i2_s.gguf"
    write_bitnet_cpp_i2s_gguf(path, WEIGHTS)
    d = inspect_file(path)
    assert d["dialect"] == "bitnet.cpp" and d["architecture"] == "bitnet-25"
    q = rows(d)["blk.0.attn_q.weight"]
    n = FOREIGN.q_dim * FOREIGN.hidden_size
    assert (q["type"], q["type_id"], q["bytes"]) == ("I2_S", 36, n // 4 + 32)
    assert q["bits_per_weight"] == round(8 * (n // 4 + 32) / n, 4)
    assert rows(d)["token_embd.weight"]["type"] == "F16"
    assert d["tensor_bytes"] <= d["file_bytes"]
    assert any("I2_S" in note and "llama.cpp" in note for note in d["notes"])
    assert "I2_S" in format_inspect(d)


def test_corrupt_file_is_one_error(tmp_path):
    path = tmp_path / "m.gguf"
    write_bitnet_cpp_i2s_gguf(path, WEIGHTS)
    data = path.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 1000])
    with pytest.raises(BitedgeError, match="truncated"):
        inspect_file(tmp_path / "cut.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(BitedgeError, match="corrupt|truncated"):
        inspect_file(tmp_path / "junk.gguf")
    with pytest.raises(BitedgeError, match="not a GGUF file"):
        inspect_file(__file__)


def test_non_ternary_types_are_not_called_ternary(tmp_path):
    path = tmp_path / "q4.gguf"
    write_llama_cpp_gguf(path, WEIGHTS, ternary_type="Q4_0")
    d = inspect_file(path)
    assert rows(d)["blk.0.attn_q.weight"]["type"] == "Q4_0"
    assert d["ternary"]["tensors"] == 0 and d["ternary"]["params"] == 0
    assert any("not ternary" in n and f"{N_TERNARY} Q4_0" in n for n in d["notes"])
    assert "ternary     " not in format_inspect(d)


def test_a_dimension_that_overflows_is_one_error(tmp_path):
    path = tmp_path / "m.gguf"
    write_llama_cpp_gguf(path, WEIGHTS)
    data = bytearray(path.read_bytes())
    name = b"token_embd.weight"
    at = data.index(name) + len(name) + 4  # after the name: n_dims (u32), then the dims (u64 each)
    data[at + 7] = 0x10  # the first dimension's top byte: the element count wraps int64
    path.write_bytes(bytes(data))
    with pytest.raises(BitedgeError, match="element count overflows"):
        inspect_file(path)
