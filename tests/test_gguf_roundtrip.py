"""write_gguf -> gguf's GGUFReader / read_metadata / read_model: keys, tensor table, identical weights, and
the file-safety rules (no partial files, no silent overwrite, one-line errors on damaged files)."""

import dataclasses
import os
import sys
import types

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter, quants

from bitedge.convert.gguf_writer import write_gguf
from bitedge.formats import float_quants
from bitedge.formats.packing import PACKINGS
from bitedge.errors import BitedgeError
from bitedge.gguf_read import read_metadata, read_model
from bitedge.model import TOKEN_UNUSED, Ternary, is_ternary
from conftest import ALIGNED, ODD, PLAIN

EMBED_TYPES = ["f32", "f16", "q8_0", "q6_k", "q4_0"]


def expected_embedding(values: np.ndarray, embed_type: str) -> np.ndarray:
    if embed_type == "f32":
        return values
    if embed_type == "f16":
        return values.astype(np.float16).astype(np.float32)
    qtype = float_quants.EMBED_TYPES[embed_type]
    return quants.dequantize(float_quants.quantize(values, qtype), qtype)


def padded_tokenizer(td, vocab_size):
    """What a file holds: the tokenizer padded to vocab_size with unused [PADi] tokens, as llama.cpp needs."""
    extra = range(len(td.tokens), vocab_size)
    return dataclasses.replace(
        td, tokens=td.tokens + [f"[PAD{i}]" for i in extra], token_types=td.token_types + [TOKEN_UNUSED] * len(extra)
    )


def check_same_model(src, back, packing, embed_type):
    assert back.config == src.config
    assert set(back.tensors) == set(src.tensors)
    for name, load in src.tensors.items():
        a, b = load(), back.tensors[name]()
        if is_ternary(name):
            assert isinstance(b, Ternary)
            np.testing.assert_array_equal(b.values, a.values, err_msg=name)
            if packing == "tq2_0":  # llama.cpp's type keeps an f16 scale per block
                assert b.scale == float(np.float16(a.scale)), name
            else:
                assert np.float32(b.scale) == np.float32(a.scale), name
        elif name in ("token_embd.weight", "output.weight"):
            np.testing.assert_array_equal(b, expected_embedding(a, embed_type), err_msg=name)
        else:
            assert b.dtype == np.float32
            np.testing.assert_array_equal(b, a, err_msg=name)


@pytest.mark.parametrize("packing", list(PACKINGS))
@pytest.mark.parametrize("embed_type", EMBED_TYPES)
def test_round_trip_aligned(tiny_model, tmp_path, packing, embed_type):
    src = tiny_model(ALIGNED, seed=3)
    out = tmp_path / "m.gguf"
    summary = write_gguf(src, out, packing=packing, embed_type=embed_type)
    assert summary["bytes"] == out.stat().st_size
    assert summary["packing"] == packing
    back = read_model(out)
    check_same_model(src, back, packing, embed_type)
    assert back.tokenizer == padded_tokenizer(src.tokenizer, src.config.vocab_size)
    assert back.source_sha256 == src.source_sha256 and back.source == src.source
    assert os.listdir(tmp_path) == ["m.gguf"]


@pytest.mark.parametrize("packing", ["i2_s", "tl1", "tl2"])
@pytest.mark.parametrize("config", [ODD, PLAIN], ids=["odd", "plain"])
def test_round_trip_odd_shapes(tiny_model, tmp_path, packing, config):
    src = tiny_model(config, seed=5)
    out = tmp_path / "m.gguf"
    write_gguf(src, out, packing=packing, embed_type="f16")
    check_same_model(src, read_model(out), packing, "f16")


def test_keys_and_tensor_table_with_gguf_reader(tiny_model, tmp_path):
    src = tiny_model(ODD, seed=1)
    out = tmp_path / "m.gguf"
    write_gguf(src, out, packing="tl2", embed_type="f16")
    reader = GGUFReader(out)
    kv = read_metadata(out)["kv"]
    c = ODD
    assert kv["general.architecture"] == "bitnet" and kv["general.name"] == "tiny-odd"
    assert kv["general.alignment"] == 32 and kv["general.quantization_version"] == 2
    expected = {
        "bitnet.vocab_size": c.vocab_size, "bitnet.context_length": c.context_length,
        "bitnet.embedding_length": c.hidden_size, "bitnet.block_count": c.num_layers,
        "bitnet.feed_forward_length": c.intermediate_size, "bitnet.attention.head_count": c.num_heads,
        "bitnet.attention.head_count_kv": c.num_kv_heads, "bitnet.attention.key_length": c.head_dim,
        "bitnet.attention.value_length": c.head_dim, "bitnet.rope.dimension_count": c.head_dim,
        "bitedge.format_version": 1, "bitedge.weight_packing": "tl2", "bitedge.ffn_activation": "silu",
        "bitedge.sub_norms": True, "bitedge.tie_embeddings": False, "bitedge.embed_type": "f16",
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
    }
    for key, value in expected.items():
        assert kv[key] == value, key
    assert np.float32(kv["bitnet.rope.freq_base"]) == np.float32(500000.0)
    assert np.float32(kv["bitnet.attention.layer_norm_rms_epsilon"]) == np.float32(1e-5)
    assert kv["bitedge.converter_version"]
    # llama.cpp wants exactly vocab_size tokens: the 290-token dummy tokenizer is padded with unused tokens
    assert len(kv["tokenizer.ggml.tokens"]) == c.vocab_size
    assert kv["tokenizer.ggml.token_type"][-1] == 5 and kv["tokenizer.ggml.tokens"][-1] == f"[PAD{c.vocab_size - 1}]"
    assert reader.fields["bitnet.block_count"].types[0].name == "UINT32"
    assert reader.fields["bitnet.rope.freq_base"].types[0].name == "FLOAT32"
    assert reader.fields["bitedge.sub_norms"].types[0].name == "BOOL"

    tensors = {t.name: t for t in reader.tensors}
    names = [t.name for t in reader.tensors]
    assert names[0] == "token_embd.weight" and names[-1] == "output.weight"
    assert names.index("blk.0.attn_q.scale") == names.index("blk.0.attn_q.weight") + 1
    table = {t["name"]: t for t in read_metadata(out)["tensors"]}
    tl2 = PACKINGS["tl2"]
    for name, shape in c.tensor_shapes().items():
        t = tensors[name]
        if is_ternary(name):
            assert t.tensor_type == GGMLQuantizationType.I8
            assert table[name]["shape"] == tl2.packed_shape(*shape)
            assert int(t.n_bytes) == tl2.nbytes(*shape)
            scale = tensors[name.removesuffix(".weight") + ".scale"]
            assert scale.tensor_type == GGMLQuantizationType.F32 and table[scale.name]["shape"] == (1,)
        elif len(shape) == 1:
            assert t.tensor_type == GGMLQuantizationType.F32 and table[name]["shape"] == shape
        else:
            assert t.tensor_type == GGMLQuantizationType.F16 and table[name]["shape"] == shape
        assert int(t.data_offset) % 32 == 0
    assert len(reader.tensors) == len(c.tensor_shapes()) + 7 * c.num_layers  # + one .scale per ternary matrix


def test_tq2_file_uses_llama_types(tiny_model, tmp_path):
    src = tiny_model(ALIGNED)
    out = tmp_path / "m.gguf"
    write_gguf(src, out, packing="tq2_0", embed_type="q8_0")
    table = {t["name"]: t for t in read_metadata(out)["tensors"]}
    assert table["blk.1.ffn_down.weight"]["type"] == "TQ2_0"
    assert table["blk.1.ffn_down.weight"]["shape"] == (256, 512)
    assert table["token_embd.weight"]["type"] == "Q8_0"
    assert not any(name.endswith(".scale") for name in table)
    # gguf's own dequantizer reads the TQ2_0 bytes as T * s
    reader = GGUFReader(out)
    t = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    w = src.tensors["blk.0.attn_q.weight"]()
    deq = quants.dequantize(np.asarray(t.data), GGMLQuantizationType.TQ2_0)
    np.testing.assert_array_equal(deq, w.values * np.float32(np.float16(w.scale)))


def test_tq2_refuses_unaligned_model_and_leaves_nothing(tiny_model, tmp_path):
    with pytest.raises(BitedgeError, match=r"blk\.0\.attn_q\.weight: shape \(96, 96\)"):
        write_gguf(tiny_model(ODD), tmp_path / "m.gguf", packing="tq2_0")
    assert os.listdir(tmp_path) == []


def test_progress_reports_every_byte(tiny_model, tmp_path):
    seen = []
    out = tmp_path / "m.gguf"
    write_gguf(tiny_model(ODD), out, progress=seen.append)
    total = sum(t["nbytes"] for t in read_metadata(out)["tensors"])
    assert sum(seen) == total and len(seen) >= len(read_metadata(out)["tensors"])


# ---------------------------------------------------------------------------------------------- file safety


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_failing_loader_leaves_no_partial_file(tiny_model, tmp_path, exc):
    src = tiny_model(ALIGNED)
    written = []

    def failing():
        written.append(sorted(os.listdir(tmp_path)))  # the partial file exists while writing
        raise exc("disk on fire")

    src.tensors["blk.1.ffn_up.weight"] = failing
    with pytest.raises(exc):
        write_gguf(src, tmp_path / "m.gguf")
    assert written and written[0][0].startswith("m.gguf.partial-")
    assert os.listdir(tmp_path) == []


def test_bad_tensor_is_one_line_error_and_no_file(tiny_model, tmp_path):
    src = tiny_model(ALIGNED)
    src.tensors["blk.0.attn_k.weight"] = lambda: Ternary(np.zeros((3, 3), np.int8), 1.0)
    with pytest.raises(BitedgeError, match=r"blk\.0\.attn_k\.weight.*shape"):
        write_gguf(src, tmp_path / "m.gguf")
    src = tiny_model(ALIGNED)
    src.tensors["blk.0.attn_norm.weight"] = lambda: np.full((256,), np.nan, np.float32)
    with pytest.raises(BitedgeError, match="NaN"):
        write_gguf(src, tmp_path / "m.gguf")
    src = tiny_model(ALIGNED)
    src.tensors["blk.0.attn_k.weight"] = lambda: np.zeros((128, 256), np.float32)
    with pytest.raises(BitedgeError, match="expected a ternary tensor"):
        write_gguf(src, tmp_path / "m.gguf")
    assert os.listdir(tmp_path) == []


def test_existing_output_refused_unless_force(tiny_model, tmp_path):
    out = tmp_path / "m.gguf"
    out.write_bytes(b"precious")
    with pytest.raises(BitedgeError, match="already exists.*--force"):
        write_gguf(tiny_model(ALIGNED), out)
    assert out.read_bytes() == b"precious"
    write_gguf(tiny_model(ALIGNED), out, force=True)
    assert read_model(out).config == ALIGNED


def test_argument_errors(tiny_model, tmp_path):
    with pytest.raises(BitedgeError, match="unknown weight packing"):
        write_gguf(tiny_model(ALIGNED), tmp_path / "m.gguf", packing="q4_k")
    with pytest.raises(BitedgeError, match="unknown embedding type"):
        write_gguf(tiny_model(ALIGNED), tmp_path / "m.gguf", embed_type="bf16")
    narrow = dataclasses.replace(PLAIN, hidden_size=48, num_heads=1, num_kv_heads=1, head_dim=48)
    with pytest.raises(BitedgeError, match=r"token_embd\.weight.*q8_0.*48"):
        write_gguf(tiny_model(narrow), tmp_path / "m.gguf", embed_type="q8_0")
    with pytest.raises(BitedgeError, match="does not exist"):
        write_gguf(tiny_model(ALIGNED), tmp_path / "nope" / "m.gguf")
    src = tiny_model(ALIGNED)
    del src.tensors["output_norm.weight"]
    with pytest.raises(BitedgeError, match="missing tensor output_norm.weight"):
        write_gguf(src, tmp_path / "m.gguf")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------- damaged files


@pytest.fixture
def good_file(tiny_model, tmp_path):
    out = tmp_path / "good.gguf"
    write_gguf(tiny_model(ALIGNED), out)
    return out


def test_truncated_file(tmp_path, good_file):
    data = good_file.read_bytes()
    for cut in (len(data) - 100, len(data) // 2, 2000, 30, 5):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        for fn in (read_model, read_metadata):
            with pytest.raises(BitedgeError) as e:
                fn(bad)
            assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_wrong_magic_and_garbage(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(BitedgeError, match="not a GGUF file"):
        read_model(bad)
    bad.write_bytes(b"GGUF" + np.random.default_rng(0).bytes(4000))
    with pytest.raises(BitedgeError, match="corrupt or truncated"):
        read_metadata(bad)
    with pytest.raises(BitedgeError, match="no such file"):
        read_model(tmp_path / "missing.gguf")


def test_packed_size_mismatch_detected(tiny_model, tmp_path):
    """A bitedge file whose packing key disagrees with the stored bytes is refused, not misread."""
    src = tiny_model(ALIGNED)
    out = tmp_path / "m.gguf"
    write_gguf(src, out, packing="tl2")
    data = bytearray(out.read_bytes())
    key = b"bitedge.weight_packing"
    at = data.index(key) + len(key) + 4 + 8  # value type u32, string length u64
    assert data[at : at + 3] == b"tl2"
    data[at : at + 3] = b"tl1"
    out.write_bytes(bytes(data))
    with pytest.raises(BitedgeError, match=r"blk\.0\.attn_q\.weight has \d+ bytes, tl1"):
        read_model(out)


def test_foreign_gguf_is_refused_by_the_reader_and_read_by_the_importer(tmp_path, monkeypatch):
    """read_model reads bitedge's files only (one line naming bitedge convert for another GGUF); open_source, the
    importer's entry, hands a foreign GGUF to gguf_foreign."""
    out = tmp_path / "llama.gguf"
    w = GGUFWriter(out, "llama")
    w.add_uint32("llama.block_count", 1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(BitedgeError, match=r"not a bitedge GGUF file .*architecture llama.*bitedge convert") as e:
        read_model(out)
    assert "\n" not in str(e.value)
    calls = []
    fake = types.ModuleType("bitedge.convert.gguf_foreign")
    fake.read_foreign = lambda path: calls.append(path) or "foreign-source"
    monkeypatch.setitem(sys.modules, "bitedge.convert.gguf_foreign", fake)
    from bitedge.convert.sources import open_source

    assert open_source(str(out)) == "foreign-source" and calls == [out]
    meta = read_metadata(out)
    assert meta["kv"]["llama.block_count"] == 1 and meta["tensors"][0]["shape"] == (4, 8)


def test_header_parser_agrees_with_gguf_reader(tiny_model, tmp_path):
    out = tmp_path / "m.gguf"
    write_gguf(tiny_model(ODD), out, packing="i2_s", embed_type="q8_0")
    mine = read_metadata(out)
    reader = GGUFReader(out)
    theirs = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    assert set(mine["kv"]) == set(theirs)
    for key, value in theirs.items():
        assert mine["kv"][key] == value, key
        assert mine["kv_types"][key] == reader.fields[key].types[0].name
    assert [t["name"] for t in mine["tensors"]] == [t.name for t in reader.tensors]
    for t, r in zip(mine["tensors"], reader.tensors):
        assert t["type"] == r.tensor_type.name
        assert t["shape"] == tuple(int(d) for d in reversed(r.shape.tolist()))
        assert (t["nbytes"], t["offset"]) == (int(r.n_bytes), int(r.data_offset))
