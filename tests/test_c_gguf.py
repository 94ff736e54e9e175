"""The C runtime's GGUF loader (kernels/runtime/gguf.c) and model builder (model.c), on files written by gguf-py
and by a hand-rolled writer that can also write what gguf-py refuses to (bad counts, duplicates, bad alignment),
then fuzzed through kernels/tests/fuzz_gguf.c built with ASan + UBSan."""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests._c_build import (RUNTIME, CToolMissing, compile_c, have_tool, run_binary, sanitizer_report)

GT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType
SOURCES = (*sorted(RUNTIME.glob("gguf*.c")), *sorted(RUNTIME.glob("model*.c")), RUNTIME.parent / "tests" / "fuzz_gguf.c")

# ----------------------------------------------------------------------------------------------------------
# a tiny bitedge model written with gguf-py


@dataclass(frozen=True)
class Tiny:
    vocab: int = 40
    hidden: int = 64
    ffn: int = 96
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    ctx: int = 64
    packing: str = "i2_s"
    embed: str = "f32"
    tie: bool = True
    sub_norms: bool = True
    act: str = "relu2"
    n_tokens: int = 36  # tokenizer tokens <= vocab (padded embedding rows)


def packed_shape(packing: str, n: int, k: int) -> tuple[int, int]:
    """numpy shape of a packed matrix (docs/format.md)."""
    up = lambda x, m: (x + m - 1) // m * m  # noqa: E731
    if packing == "i2_s":
        return n, up(k, 128) // 4
    if packing == "tl1":
        return up(n, 32) // 32, up(k, 2) // 2 * 16
    if packing == "tl2":
        return up(n, 32) // 32, up(k, 3) // 3 * 20
    raise ValueError(packing)


def ternary_shapes(t: Tiny) -> dict[str, tuple[int, int]]:
    q, kv = t.heads * t.head_dim, t.kv_heads * t.head_dim
    return {"attn_q": (q, t.hidden), "attn_k": (kv, t.hidden), "attn_v": (kv, t.hidden), "attn_output": (t.hidden, q),
            "ffn_gate": (t.ffn, t.hidden), "ffn_up": (t.ffn, t.hidden), "ffn_down": (t.hidden, t.ffn)}


def model_keys(t: Tiny) -> dict[str, tuple]:
    """key -> (value, GGUFValueType[, sub type]) in file order."""
    tokens = [f"tok{i}" for i in range(t.n_tokens - 4)] + ["<s>", "</s>", "\u0120h\u00e9", ""]
    return {
        "general.name": ("tiny-bitnet", GT.STRING),
        "general.quantization_version": (2, GT.UINT32),
        "bitnet.vocab_size": (t.vocab, GT.UINT32),
        "bitnet.context_length": (t.ctx, GT.UINT32),
        "bitnet.embedding_length": (t.hidden, GT.UINT32),
        "bitnet.block_count": (t.layers, GT.UINT32),
        "bitnet.feed_forward_length": (t.ffn, GT.UINT32),
        "bitnet.attention.head_count": (t.heads, GT.UINT32),
        "bitnet.attention.head_count_kv": (t.kv_heads, GT.UINT32),
        "bitnet.attention.key_length": (t.head_dim, GT.UINT32),
        "bitnet.attention.value_length": (t.head_dim, GT.UINT32),
        "bitnet.attention.layer_norm_rms_epsilon": (1e-5, GT.FLOAT32),
        "bitnet.rope.freq_base": (500000.0, GT.FLOAT32),
        "bitnet.rope.dimension_count": (t.head_dim, GT.UINT32),
        "bitedge.format_version": (1, GT.UINT32),
        "bitedge.weight_packing": (t.packing, GT.STRING),
        "bitedge.ffn_activation": (t.act, GT.STRING),
        "bitedge.sub_norms": (t.sub_norms, GT.BOOL),
        "bitedge.tie_embeddings": (t.tie, GT.BOOL),
        "bitedge.embed_type": (t.embed, GT.STRING),
        "bitedge.source": ("random:tiny", GT.STRING),
        "tokenizer.ggml.model": ("gpt2", GT.STRING),
        "tokenizer.ggml.pre": ("llama-bpe", GT.STRING),
        "tokenizer.ggml.tokens": (tokens, GT.ARRAY, GT.STRING),
        "tokenizer.ggml.token_type": ([1] * (t.n_tokens - 4) + [3, 3, 1, 1], GT.ARRAY, GT.INT32),
        "tokenizer.ggml.scores": ([float(-i) for i in range(t.n_tokens)], GT.ARRAY, GT.FLOAT32),
        "tokenizer.ggml.merges": (["t o", "to k", "tok 1"], GT.ARRAY, GT.STRING),
        "tokenizer.ggml.bos_token_id": (t.n_tokens - 4, GT.UINT32),
        "tokenizer.ggml.eos_token_id": (t.n_tokens - 3, GT.UINT32),
        "tokenizer.ggml.add_bos_token": (True, GT.BOOL),
        "tokenizer.chat_template": ("{% for m in messages %}{{ m.content }}{% endfor %}", GT.STRING),
        # every other value type, so the parser sees them all
        "test.u8": (200, GT.UINT8), "test.i8": (-100, GT.INT8), "test.u16": (60000, GT.UINT16),
        "test.i16": (-30000, GT.INT16), "test.i32": (-7, GT.INT32), "test.u64": (1 << 40, GT.UINT64),
        "test.i64": (-(1 << 40), GT.INT64), "test.f64": (0.25, GT.FLOAT64),
        "test.nested": ([[1, 2, 3], [4]], GT.ARRAY, GT.ARRAY),
    }


def model_tensors(t: Tiny, seed: int = 0) -> dict[str, tuple[np.ndarray, QT | None]]:
    """name -> (array, raw dtype or None) in file order."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[np.ndarray, QT | None]] = {}

    def embedding():
        e = rng.standard_normal((t.vocab, t.hidden)).astype(np.float32)
        if t.embed == "f16":
            return e.astype(np.float16), None
        if t.embed == "q8_0":
            return gguf.quants.quantize(e, QT.Q8_0), QT.Q8_0
        return e, None

    out["token_embd.weight"] = embedding()
    for i in range(t.layers):
        p = f"blk.{i}."
        norm = lambda n: (rng.uniform(0.5, 1.5, n).astype(np.float32), None)  # noqa: E731
        shapes = ternary_shapes(t)
        for role in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_sub_norm", "attn_output", "ffn_norm",
                     "ffn_gate", "ffn_up", "ffn_sub_norm", "ffn_down"):
            if role.endswith("norm"):
                if "sub" in role and not t.sub_norms:
                    continue
                n = {"attn_sub_norm": t.heads * t.head_dim, "ffn_sub_norm": t.ffn}.get(role, t.hidden)
                out[p + role + ".weight"] = norm(n)
                continue
            n, k = shapes[role]
            scale = np.float32(rng.uniform(0.01, 0.1))
            if t.packing == "tq2_0":
                values = rng.integers(-1, 2, (n, k)).astype(np.float32) * scale
                out[p + role + ".weight"] = (gguf.quants.quantize(values, QT.TQ2_0), QT.TQ2_0)
            else:
                out[p + role + ".weight"] = (rng.integers(0, 256, packed_shape(t.packing, n, k), dtype=np.uint8)
                                             .view(np.int8), None)
                out[p + role + ".scale"] = (np.array([scale], np.float32), None)
    out["output_norm.weight"] = (rng.uniform(0.5, 1.5, t.hidden).astype(np.float32), None)
    if not t.tie:
        e, raw = embedding()
        out["output.weight"] = (e, raw)
    return out


def write_gguf(path: Path, keys: dict, tensors: dict, arch: str = "bitnet") -> Path:
    w = gguf.GGUFWriter(str(path), arch)
    for key, spec in keys.items():
        w.add_key_value(key, spec[0], spec[1], spec[2] if len(spec) > 2 else None)
    for name, (arr, raw) in tensors.items():
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_model(path: Path, t: Tiny = Tiny(), *, drop_keys=(), set_keys=None, drop_tensors=(), set_tensors=None,
                arch: str = "bitnet", seed: int = 0) -> Path:
    keys = {k: v for k, v in model_keys(t).items() if k not in drop_keys}
    keys.update(set_keys or {})
    tensors = {k: v for k, v in model_tensors(t, seed).items() if k not in drop_tensors}
    tensors.update(set_tensors or {})
    return write_gguf(path, keys, tensors, arch)


def fnv1a(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


# ----------------------------------------------------------------------------------------------------------
# a raw GGUF writer: any counts, types, offsets and alignment, including wrong ones


def _str(s: bytes | str) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def raw_gguf(kvs: list[tuple[str, int, bytes]], tensors: list[tuple[str, list[int], int, bytes]], *, version=3,
             alignment=32, n_kv=None, n_tensors=None, offsets=None) -> bytes:
    """kvs: (key, gguf type id, encoded value); tensors: (name, ne in ggml order, ggml type, data)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                len(kvs) if n_kv is None else n_kv)
    for key, vtype, value in kvs:
        out += _str(key) + struct.pack("<I", vtype) + value
    pos = 0
    offs = []
    for i, (name, ne, gtype, data) in enumerate(tensors):
        off = offsets[i] if offsets else pos
        offs.append(off)
        out += _str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", gtype, off)
        pos += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    base = len(out)
    blob = bytearray()
    for (_, _, _, data), off in zip(tensors, offs):
        if off > 1 << 24:  # an absurd offset under test: nothing to place
            continue
        end = off + len(data)
        if len(blob) < end:
            blob += b"\0" * (end - len(blob))
        blob[off:end] = data
    blob += b"\0" * (-len(blob) % alignment)
    return out + bytes(blob)


def u32(v): return struct.pack("<I", v)


# ----------------------------------------------------------------------------------------------------------
# the driver


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    """fuzz_gguf with ASan + UBSan (gcc): also checks gguf.c / model.c compile cleanly under -Wall -Wextra -Werror."""
    out = tmp_path_factory.mktemp("fuzz") / "fuzz_gguf"
    try:
        return compile_c(SOURCES, out, sanitize=True)
    except CToolMissing as e:
        pytest.skip(str(e))


def run_driver(driver: Path, *args, timeout=120) -> list[str]:
    proc = run_binary(driver, args, timeout=timeout)
    report = sanitizer_report(proc)
    assert report is None, f"sanitizer: {report}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
    return proc.stdout.splitlines()


def dump(driver: Path, path: Path) -> dict:
    """Parse `fuzz_gguf --dump` into {"kv": {key: (type, text)}, "tensors": {...}, "model": {...}, ...}."""
    d: dict = {"kv": {}, "tensors": {}, "lines": run_driver(driver, "--dump", path)}
    for line in d["lines"]:
        tag, _, rest = line.partition(" ")
        if tag == "KV":
            key, vtype, value = rest.split(" ", 2)
            d["kv"][key] = (vtype, value)
        elif tag == "T":
            parts = rest.split(" ")
            name, gtype, n_dims = parts[0], parts[1], int(parts[2])
            ne = [int(x) for x in parts[3:3 + n_dims]]
            tail = dict(zip(parts[3 + n_dims::2], parts[4 + n_dims::2]))
            d["tensors"][name] = dict(type=gtype, ne=ne, offset=int(tail["offset"]), nbytes=int(tail["nbytes"]),
                                      fnv=int(tail["fnv"], 16))
        elif tag == "MODEL":
            d["model"] = dict(kv.split("=", 1) for kv in rest.split(" "))
        elif tag in ("MODEL-ERR", "ERR", "RUNTIME-ERR"):
            d[tag] = rest
        elif tag == "VOCAB":
            d["vocab"] = dict(kv.split("=", 1) for kv in rest.split(" "))
        elif tag == "SCALES":
            d["scales"] = [float(x) for x in rest.split()]
        elif tag in ("VERSION", "ALIGNMENT", "DATA_OFFSET"):
            d[tag] = int(rest)
    return d


def load_error(driver: Path, path: Path) -> str | None:
    """The loader's or model builder's message, or None when the file loads and builds (all packings allowed)."""
    d = dump(driver, path)
    return d.get("ERR") or d.get("MODEL-ERR")


def hexs(s: str) -> str:
    return s.encode().hex() or "-"


# ----------------------------------------------------------------------------------------------------------
# positive: what Python wrote is what C reads


def test_keys_and_tensors_read_back(driver, tmp_path):
    t = Tiny()
    path = write_model(tmp_path / "m.gguf", t)
    d = dump(driver, path)
    assert "ERR" not in d and "MODEL-ERR" not in d, d
    assert d["VERSION"] == 3 and d["ALIGNMENT"] == 32
    keys = model_keys(t)
    kv = d["kv"]
    assert kv["general.architecture"] == ("str", hexs("bitnet"))
    for key, spec in keys.items():
        value, vtype = spec[0], spec[1]
        got_type, got = kv[key]
        if vtype == GT.STRING:
            assert (got_type, got) == ("str", hexs(value)), key
        elif vtype == GT.FLOAT32 or vtype == GT.FLOAT64:
            assert float(got) == pytest.approx(float(np.float32(value)), rel=1e-7), key
        elif vtype == GT.BOOL:
            assert int(got) == int(value), key
        elif vtype == GT.ARRAY:
            parts = got.split(" ")
            assert got_type == "arr" and int(parts[1]) == len(value), key
            if spec[2] == GT.STRING:
                assert parts == ["str", str(len(value)), *[hexs(s) for s in value]], key
            elif spec[2] == GT.INT32:
                assert [int(x) for x in parts[2:]] == value, key
            elif spec[2] == GT.FLOAT32:
                assert [np.float32(x) for x in parts[2:]] == [np.float32(x) for x in value], key
        else:
            assert int(got) == value, key
    tensors = model_tensors(t)
    assert list(d["tensors"]) == list(tensors)  # file order kept
    reader = gguf.GGUFReader(str(path))
    for rt in reader.tensors:
        got = d["tensors"][rt.name]
        arr, _ = tensors[rt.name]
        assert got["ne"] == [int(x) for x in rt.shape], rt.name
        assert got["type"] == rt.tensor_type.name, rt.name
        assert got["nbytes"] == int(rt.n_bytes) == arr.nbytes, rt.name
        assert got["offset"] + d["DATA_OFFSET"] == int(rt.data_offset), rt.name
        assert got["fnv"] == fnv1a(arr.tobytes()), rt.name


def test_model_config_read_back(driver, tmp_path):
    t = Tiny(act="silu", tie=False, embed="f16")
    d = dump(driver, write_model(tmp_path / "m.gguf", t))
    m = d["model"]
    assert m["name"] == "tiny-bitnet"
    assert [int(m[k]) for k in ("vocab", "ctx", "hidden", "ffn", "layers", "heads", "kv_heads", "head_dim")] == [
        t.vocab, t.ctx, t.hidden, t.ffn, t.layers, t.heads, t.kv_heads, t.head_dim]
    assert np.float32(m["eps"]) == np.float32(1e-5) and float(m["theta"]) == 500000.0
    assert (m["act"], m["sub_norms"], m["tie"], m["embed"], m["packing"]) == ("1", "1", "0", "f16", "i2_s")
    q, kv = t.heads * t.head_dim, t.kv_heads * t.head_dim
    per_layer = 2 * t.hidden + t.hidden * (2 * q + 2 * kv) + 3 * t.hidden * t.ffn + q + t.ffn
    assert int(m["params"]) == 2 * t.vocab * t.hidden + t.hidden + t.layers * per_layer
    tensors = model_tensors(t)
    want = [np.float32(tensors[f"blk.{i}.{r}.scale"][0][0]) for i in range(t.layers)
            for r in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
    assert [np.float32(x) for x in d["scales"]] == want
    v = d["vocab"]
    assert (int(v["n_tokens"]), int(v["n_merges"]), int(v["bos"]), int(v["eos"])) == (t.n_tokens, 3, t.n_tokens - 4,
                                                                                    t.n_tokens - 3)
    assert (v["add_bos"], v["add_eos"], v["token_type"], v["scores"]) == ("1", "-1", "1", "1")


@pytest.mark.parametrize("packing", ["i2_s", "tl1", "tl2"])
@pytest.mark.parametrize("embed", ["f32", "f16", "q8_0"])
def test_every_packing_and_embedding_type_builds(driver, tmp_path, packing, embed):
    # odd shapes: rows not a multiple of 32, columns not a multiple of 128 / 3
    t = Tiny(hidden=96, ffn=100, heads=3, kv_heads=1, head_dim=18, packing=packing, embed=embed, sub_norms=False)
    d = dump(driver, write_model(tmp_path / "m.gguf", t))
    assert "MODEL-ERR" not in d, d.get("MODEL-ERR")
    assert (d["model"]["packing"], d["model"]["embed"], d["model"]["sub_norms"]) == (packing, embed, "0")


def test_runtime_accepts_every_bitedge_packing(driver, tmp_path):
    # build_model (what bitedge-run calls) takes i2_s, tl1 and tl2: one runtime runs every packing bitedge writes
    for packing in ("i2_s", "tl1", "tl2"):
        d = dump(driver, write_model(tmp_path / f"{packing}.gguf", Tiny(packing=packing)))
        assert "RUNTIME-ERR" not in d, (packing, d.get("RUNTIME-ERR"))


def test_tq2_0_is_refused_with_a_hint(driver, tmp_path):
    t = Tiny(hidden=256, ffn=256, heads=4, kv_heads=4, head_dim=64, packing="tq2_0")
    d = dump(driver, write_model(tmp_path / "m.gguf", t))
    assert "MODEL-ERR" not in d, d.get("MODEL-ERR")  # sizes are right: build_model_ex accepts it
    assert d["RUNTIME-ERR"] == "packing tq2_0 is for llama.cpp; convert with --type i2_s"


def test_mmap_path(driver, tmp_path):
    path = write_model(tmp_path / "m.gguf", Tiny())
    assert run_driver(driver, "--mmap", path) == [f"OK {path}"]
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:len(data) - 100])
    (line,) = run_driver(driver, "--mmap", cut)
    assert line.startswith(f"ERR {cut}: tensor 'output_norm.weight': data [offset ") and "extends past end of file" \
        in line
    (line,) = run_driver(driver, "--mmap", tmp_path / "missing.gguf")
    assert line.startswith("ERR") and "cannot open" in line


# ----------------------------------------------------------------------------------------------------------
# negative: each problem named


SHAPES = ternary_shapes(Tiny())


@pytest.mark.parametrize("change, message", [
    (dict(drop_keys=["bitnet.embedding_length"]), "missing key 'bitnet.embedding_length'"),
    (dict(set_keys={"bitnet.attention.head_count_kv": (3, GT.UINT32)}),
     "bitnet.attention.head_count 4 is not a multiple of head_count_kv 3"),
    (dict(set_keys={"bitnet.attention.key_length": (15, GT.UINT32)}), "head_dim 15 must be even"),
    (dict(set_keys={"bitnet.block_count": (0, GT.UINT32)}), "key 'bitnet.block_count' = 0 is out of range"),
    (dict(set_keys={"bitnet.context_length": (1 << 40, GT.UINT64)}), "key 'bitnet.context_length' = 1099511627776 is "
                                                                      "out of range"),
    (dict(set_keys={"bitnet.embedding_length": ("64", GT.STRING)}), "key 'bitnet.embedding_length' has type str"),
    (dict(set_keys={"bitnet.rope.freq_base": (-1.0, GT.FLOAT32)}), "key 'bitnet.rope.freq_base' = -1 must be"),
    (dict(set_keys={"bitnet.rope.dimension_count": (8, GT.UINT32)}), "partial RoPE is not supported"),
    (dict(set_keys={"bitedge.weight_packing": ("i3_z", GT.STRING)}), "unknown bitedge.weight_packing 'i3_z'"),
    (dict(set_keys={"bitedge.format_version": (2, GT.UINT32)}), "bitedge.format_version 2 is not supported"),
    (dict(drop_keys=["bitedge.format_version"]), "not a bitedge file"),
    (dict(arch="llama"), "architecture 'llama' is not supported"),
    (dict(drop_tensors=["blk.1.ffn_up.weight"]), "missing tensor 'blk.1.ffn_up.weight'"),
    (dict(drop_tensors=["blk.0.attn_k.scale"]), "missing tensor 'blk.0.attn_k.scale'"),
    (dict(drop_tensors=["blk.1.ffn_sub_norm.weight"]), "missing tensor 'blk.1.ffn_sub_norm.weight'"),
    (dict(set_tensors={"blk.0.attn_q.weight": (np.zeros((63, 32), np.int8), None)}),
     "tensor 'blk.0.attn_q.weight' is 2016 bytes (2048 expected from the config)"),
    (dict(set_tensors={"blk.0.attn_norm.weight": (np.ones(64, np.float16), None)}),
     "tensor 'blk.0.attn_norm.weight' has type F16 (F32 expected)"),
    (dict(set_tensors={"blk.0.ffn_down.scale": (np.array([np.inf], np.float32), None)}),
     "tensor 'blk.0.ffn_down.scale' = inf is not a finite scale"),
    (dict(set_tensors={"output.weight": (np.zeros((40, 64), np.float32), None)}),
     "tensor 'output.weight' is present but bitedge.tie_embeddings is true"),
    (dict(set_keys={"bitnet.vocab_size": (30, GT.UINT32)}), "tensor 'token_embd.weight' is 10240 bytes (7680 expected"),
    (dict(set_tensors={"token_embd.weight": (np.zeros((80, 32), np.float32), None)}),
     "tensor 'token_embd.weight' has shape [32, 80] (ggml order; [64, 40] expected)"),
    (dict(set_keys={"tokenizer.ggml.scores": ([0.0] * 5, GT.ARRAY, GT.FLOAT32)}),
     "key 'tokenizer.ggml.scores' has 5 entries but tokenizer.ggml.tokens has 36"),
    (dict(set_keys={"tokenizer.ggml.token_type": ([1.0] * 36, GT.ARRAY, GT.FLOAT32)}),
     "key 'tokenizer.ggml.token_type' is not an array of i32"),
    (dict(set_keys={"tokenizer.ggml.tokens": ([f"t{i}" for i in range(41)], GT.ARRAY, GT.STRING)}),
     "tokenizer.ggml.tokens has 41 tokens but the embedding has only 40 rows"),
])
def test_model_errors_name_the_problem(driver, tmp_path, change, message):
    err = load_error(driver, write_model(tmp_path / "m.gguf", **change))
    assert err is not None and message in err, err


def test_q8_0_embedding_needs_whole_blocks(driver, tmp_path):
    # hidden 48 is not a multiple of Q8_0's 32: the writer cannot even produce the tensor, the key alone says so
    t = Tiny(embed="q8_0")
    err = load_error(driver, write_model(tmp_path / "m.gguf", t, set_keys={"bitnet.embedding_length": (48, GT.UINT32)}))
    assert "embedding_length 48 is not a multiple of the Q8_0 block" in err


def _f32(n):
    return np.arange(n, dtype=np.float32).tobytes()


@pytest.mark.parametrize("build, message", [
    (lambda: b"GGUF", "not a GGUF file: 4 bytes is shorter than a GGUF header"),
    (lambda: b"GGML" + bytes(40), "not a GGUF file: bad magic"),
    (lambda: raw_gguf([], [], version=1), "GGUF version 1 is not supported"),
    (lambda: raw_gguf([], [], version=7), "unsupported GGUF version 7"),
    (lambda: raw_gguf([], [], version=3 << 24), "big-endian GGUF files are not supported"),
    (lambda: raw_gguf([], [], n_kv=1 << 60), "header claims 1152921504606846976 key/value pairs"),
    (lambda: raw_gguf([], [], n_tensors=1 << 62), "header claims 4611686018427387904 tensors"),
    (lambda: raw_gguf([("a", 8, struct.pack("<Q", 1 << 50))], []), "key 'a'"),
    (lambda: raw_gguf([("a", 13, u32(0))], []), "key 'a': unknown value type 13"),
    (lambda: raw_gguf([("a", 9, u32(4) + struct.pack("<Q", 1 << 61))], []), "array of 2305843009213693952 u32"),
    (lambda: raw_gguf([("a", 9, u32(8) + struct.pack("<Q", 1 << 40))], []), "array of 1099511627776 strings"),
    (lambda: raw_gguf([("a", 9, u32(9) + struct.pack("<Q", 1) + (u32(9) + struct.pack("<Q", 1)) * 8)], []),
     "arrays nested deeper than 4"),
    (lambda: raw_gguf([("a", 4, u32(1)), ("a", 4, u32(2))], []), "duplicate key 'a'"),
    (lambda: raw_gguf([("", 4, u32(1))], []), "empty key"),
    (lambda: raw_gguf([("general.alignment", 4, u32(48))], []), "general.alignment 48 is not a power of two"),
    (lambda: raw_gguf([("general.alignment", 5, u32(32))], []), "general.alignment has type i32"),
    (lambda: raw_gguf([], [("w", [4], 0, _f32(4)), ("w", [4], 0, _f32(4))]), "duplicate tensor name 'w'"),
    (lambda: raw_gguf([], [("", [4], 0, _f32(4))]), "empty tensor name"),
    (lambda: raw_gguf([], [("w", [4, 1, 1, 1, 1], 0, _f32(4))]), "tensor 'w': 5 dimensions"),
    (lambda: raw_gguf([], [("w", [4, 0], 0, b"")]), "tensor 'w': dimension 1 is 0"),
    (lambda: raw_gguf([], [("w", [1 << 62, 1 << 62], 0, b"")]), "tensor 'w': element count overflows"),
    (lambda: raw_gguf([], [("w", [1 << 61], 0, b"")]), "tensor 'w': byte size overflows"),
    (lambda: raw_gguf([], [("w", [4], 17, _f32(4))]), "tensor 'w': unknown ggml type 17"),
    (lambda: raw_gguf([], [("w", [4], 38, bytes(4))]), "tensor 'w': ggml type 38 is bitnet.cpp's TL1"),
    (lambda: raw_gguf([], [("w", [40], 8, bytes(34))]), "row length 40 is not a multiple of the Q8_0 block size 32"),
    (lambda: raw_gguf([], [("w", [4], 0, _f32(4))], offsets=[4]), "tensor 'w': data offset 4 is not a multiple"),
    (lambda: raw_gguf([], [("blk.0.attn_q.weight", [1234], 0, _f32(4))]),
     "tensor 'blk.0.attn_q.weight': data [offset 96, 4936 bytes] extends past end of file (128 bytes"),
    (lambda: raw_gguf([], [("w", [4], 0, _f32(4))], offsets=[1 << 63]), "extends past end of file"),
    (lambda: raw_gguf([], [("w\0x", [4], 0, _f32(4))]), "contains a NUL byte"),
    (lambda: raw_gguf([], [("w" * 300, [4], 0, _f32(4))]), "is 300 bytes long"),
])
def test_container_errors_name_the_problem(driver, tmp_path, build, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(build())
    d = dump(driver, path)
    assert "ERR" in d and message in d["ERR"], d.get("ERR", d["lines"])


def test_raw_writer_matches_gguf_py(driver, tmp_path):
    # the hand-rolled writer used above makes files gguf-py reads the same way: the negative tests test real GGUF
    kvs = [("general.alignment", 4, u32(64)), ("s", 8, _str("h\u00e9"))]
    tensors = [("a", [4], 0, _f32(4)), ("b", [32, 2], 8, bytes(68)), ("c", [3, 2], 30, bytes(12)),
               ("d", [256], 35, bytes(66)), ("e", [256], 34, bytes(54))]
    path = tmp_path / "ok.gguf"
    path.write_bytes(raw_gguf(kvs, tensors, alignment=64))
    d = dump(driver, path)
    assert d["ALIGNMENT"] == 64 and d["kv"]["s"] == ("str", hexs("h\u00e9"))
    got = {n: (t["type"], t["nbytes"], t["offset"] + d["DATA_OFFSET"]) for n, t in d["tensors"].items()}
    reader = gguf.GGUFReader(str(path))
    assert got == {t.name: (t.tensor_type.name, int(t.n_bytes), int(t.data_offset)) for t in reader.tensors}
    assert [v[:2] for v in got.values()] == [("F32", 16), ("Q8_0", 68), ("BF16", 12), ("TQ2_0", 66), ("TQ1_0", 54)]
    # bitnet.cpp's I2_S (id 36, unknown to gguf-py) is sized as bitnet.cpp does: 4 weights a byte + 32 bytes
    path.write_bytes(raw_gguf(kvs, [*tensors, ("f", [8], 36, bytes(34))], alignment=64))
    assert dump(driver, path)["tensors"]["f"]["type"] == "I2_S" and dump(driver, path)["tensors"]["f"]["nbytes"] == 34


# ----------------------------------------------------------------------------------------------------------
# fuzzing


def _fields(data: bytes) -> list[tuple[int, int, str]]:
    """(offset, width, kind) of every structural field of a valid GGUF: what the mutations below aim at."""
    fields = [(4, 4, "version"), (8, 8, "count"), (16, 8, "count")]
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def value(vtype: int, pos: int) -> int:
        sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
        if vtype in sizes:
            return pos + sizes[vtype]
        if vtype == 8:
            fields.append((pos, 8, "len"))
            return pos + 8 + struct.unpack_from("<Q", data, pos)[0]
        fields.append((pos, 4, "type"))
        fields.append((pos + 4, 8, "len"))
        etype, n = struct.unpack_from("<IQ", data, pos)
        pos += 12
        for i in range(n):
            if etype in sizes:
                return pos + n * sizes[etype]
            if i >= 3 and etype == 8:  # the first few elements are enough targets
                for _ in range(n - i):
                    pos += 8 + struct.unpack_from("<Q", data, pos)[0]
                return pos
            pos = value(etype, pos)
        return pos

    for _ in range(n_kv):
        fields.append((pos, 8, "len"))
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        fields.append((pos, 4, "type"))
        vtype = struct.unpack_from("<I", data, pos)[0]
        if vtype in (4, 5, 10, 11):  # integer values: the config's dims and counts
            fields.append((pos + 4, 4 if vtype in (4, 5) else 8, "value"))
        pos = value(vtype, pos + 4)
    for _ in range(n_tensors):
        fields.append((pos, 8, "len"))
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        fields.append((pos, 4, "ndims"))
        n_dims = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        for _ in range(n_dims):
            fields.append((pos, 8, "dim"))
            pos += 8
        fields.append((pos, 4, "type"))
        fields.append((pos + 4, 8, "offset"))
        pos += 12
    return fields


def _variants(kind: str, width: int, old: int) -> list[int]:
    top = (1 << (8 * width)) - 1
    common = [0, 1, top, top >> 1, old + 1, max(old - 1, 0), old * 2 + 1]
    if kind == "type":
        return sorted(set(common + list(range(0, 14)) + [24, 26, 30, 34, 35, 36, 37, 99]))
    if kind == "ndims":
        return [0, 1, 2, 3, 4, 5, 64, top]
    if kind == "value":
        common += [2, 3, 7, 31, 32, 33, 127, 128, 129, 255, 256, 1 << 16, 1 << 22, (1 << 22) + 1, 1 << 31,
                   (1 << 31) - 1, 1 << 32]
    if width == 8:
        common += [1 << 32, 1 << 62, 1 << 63, top - 7, 0xFFFFFFFF]
    return sorted({v & top for v in common})


def structured_mutations(data: bytes) -> list[bytes]:
    out = []
    for off, width, kind in _fields(data):
        old = int.from_bytes(data[off:off + width], "little")
        for v in _variants(kind, width, old):
            if v != old:
                out.append(data[:off] + v.to_bytes(width, "little") + data[off + width:])
    return out


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory) -> Path:
    """A small but complete model: every tensor kind, a tokenizer, every value type, nested arrays; Q8_0 output."""
    t = Tiny(vocab=20, hidden=32, ffn=40, layers=1, heads=2, kv_heads=1, head_dim=16, n_tokens=12, embed="q8_0",
             tie=False)
    return write_model(tmp_path_factory.mktemp("base") / "base.gguf", t)


def _summary(lines: list[str]) -> dict[str, int]:
    parts = lines[-1].split()
    assert parts[0] == "files", lines[-1]
    return {parts[i]: int(parts[i + 1]) for i in range(0, len(parts), 2)}


@pytest.mark.parametrize("size", [0, 1, 100, 4096])
def test_fuzz_harness_catches_an_overread(driver, size):
    # the driver's input copies end exactly at the input's last byte for ASan, whatever the alignment slack
    proc = run_binary(driver, ["--overread-selftest", size])
    assert proc.returncode != 0 and sanitizer_report(proc) is not None, proc.stdout


def test_fuzz_base_file_loads(driver, fuzz_base):
    assert run_driver(driver, fuzz_base)[0] == f"OK {fuzz_base}"


def test_fuzz_every_truncation(driver, fuzz_base):
    size = fuzz_base.stat().st_size
    d = dump(driver, fuzz_base)
    data_end = d["DATA_OFFSET"] + max(t["offset"] + t["nbytes"] for t in d["tensors"].values())
    lines = run_driver(driver, "--truncate", fuzz_base)
    s = _summary(lines)
    # every prefix that cuts into the data is refused; the ones that only lose trailing padding load
    assert s == {"files": size + 1, "ok": size - data_end + 1, "err": data_end, "bugs": 0}, lines[-5:]
    assert lines[0] == f"LOADED-PREFIX {data_end}" if data_end < size else True


def test_fuzz_structured_mutations(driver, fuzz_base, tmp_path):
    data = fuzz_base.read_bytes()
    mutants = structured_mutations(data)
    assert len(mutants) > 1000
    paths = []
    for i, m in enumerate(mutants):
        p = tmp_path / f"m{i:05d}.gguf"
        p.write_bytes(m)
        paths.append(str(p))
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    lines = run_driver(driver, "--list", listing, timeout=300)
    s = _summary(lines)
    assert s["files"] == len(mutants) and s["bugs"] == 0
    assert all(line.startswith(("OK ", "ERR ")) for line in lines[:-1])
    assert s["err"] > len(mutants) // 2  # most of these break the file, and each refusal carried a message


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_random_mutations(driver, fuzz_base, seed):
    s = _summary(run_driver(driver, "--mutate", fuzz_base, seed, 15000, timeout=300))
    assert s["files"] == 15000 and s["bugs"] == 0 and s["err"] > 3000


def test_fuzz_mutations_of_a_raw_file(driver, tmp_path):
    # a second base: alignment 64, every ggml type this loader sizes, strings with odd bytes
    path = tmp_path / "raw.gguf"
    path.write_bytes(raw_gguf([("general.alignment", 4, u32(64)), ("s", 8, _str(b"\xff\x00x")),
                               ("arr", 9, u32(8) + struct.pack("<Q", 2) + _str("ab") + _str(""))],
                              [("a", [4], 0, _f32(4)), ("b", [32, 2], 8, bytes(68)), ("d", [256], 35, bytes(66)),
                               ("f", [8], 36, bytes(34))], alignment=64))
    s = _summary(run_driver(driver, "--mutate", path, 7, 4000, timeout=300))
    assert s["bugs"] == 0 and s["files"] == 4000


# ----------------------------------------------------------------------------------------------------------
# other compilers and targets (also exercises tests/_c_build.py for everyone using it)


def test_clang_builds_without_warnings(tmp_path):
    if not have_tool("clang"):
        pytest.skip("clang is not installed")
    exe = compile_c(SOURCES, tmp_path / "fuzz_clang", cc="clang", sanitize=True)
    assert run_binary(exe, ["--truncate", "/dev/null"]).returncode == 0


def test_libfuzzer_target_builds(tmp_path):
    if not have_tool("clang"):
        pytest.skip("clang is not installed")
    exe = compile_c(SOURCES, tmp_path / "libfuzz", cc="clang", flags=("-fsanitize=fuzzer",), sanitize=True,
                    defines=("BE_LIBFUZZER",))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_model(corpus / "seed.gguf", Tiny(vocab=20, hidden=32, ffn=40, layers=1, heads=2, kv_heads=1, head_dim=16,
                                            n_tokens=12))
    proc = run_binary(exe, ["-runs=3000", "-seed=1", str(corpus)], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_aarch64_reads_the_same(driver, tmp_path):
    if not (have_tool("aarch64-linux-gnu-gcc") and have_tool("qemu-aarch64")):
        pytest.skip("no aarch64 cross toolchain / qemu-user")
    exe = compile_c(SOURCES, tmp_path / "fuzz_a64", target="aarch64", opt="-O2")
    path = write_model(tmp_path / "m.gguf", Tiny(embed="q8_0", tie=False))
    proc = run_binary(exe, ["--dump", path], target="aarch64", qemu_cpu="cortex-a53")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == dump(driver, path)["lines"]


# ----------------------------------------------------------------------------------------------------------
# files written by bitedge's own writer (bitedge/convert/gguf_writer.py)


def _bitedge_file(tmp_path: Path, config, packing: str, embed: str, tokenizer: bool) -> Path:
    writer = pytest.importorskip("bitedge.convert.gguf_writer")
    dummy = pytest.importorskip("bitedge.convert.dummy")
    from bitedge.model import ModelSource

    tensors = {name: dummy.tensor_loader(3, name, shape) for name, shape in config.tensor_shapes().items()}
    source = ModelSource(config=config, tensors=tensors, source="test",
                         tokenizer=dummy.dummy_tokenizer(config.vocab_size) if tokenizer else None)
    path = tmp_path / f"{packing}-{embed}.gguf"
    writer.write_gguf(source, path, packing=packing, embed_type=embed)
    return path


def _check_config(model: dict, c) -> None:
    assert [int(model[k]) for k in ("vocab", "ctx", "hidden", "ffn", "layers", "heads", "kv_heads", "head_dim")] == [
        c.vocab_size, c.context_length, c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads,
        c.num_kv_heads, c.head_dim]
    assert (model["act"], model["sub_norms"], model["tie"]) == (str(int(c.ffn_act == "silu")), str(int(c.sub_norms)),
                                                              str(int(c.tie_embeddings)))
    assert np.float32(model["eps"]) == np.float32(c.rms_norm_eps)
    assert np.float32(model["theta"]) == np.float32(c.rope_theta)


@pytest.mark.parametrize("packing, embed", [("i2_s", "f16"), ("i2_s", "q8_0"), ("tl1", "f32"), ("tl2", "f16"),
                                            ("tq2_0", "f16")])
def test_bitedge_writer_files_build(driver, tmp_path, packing, embed):
    dummy = pytest.importorskip("bitedge.convert.dummy")
    config = dummy.preset_config("test")
    d = dump(driver, _bitedge_file(tmp_path, config, packing, embed, tokenizer=True))
    assert "MODEL-ERR" not in d, d.get("MODEL-ERR")
    _check_config(d["model"], config)
    assert (d["model"]["packing"], d["model"]["embed"]) == (packing, embed)
    assert int(d["vocab"]["n_tokens"]) <= config.vocab_size and d["vocab"]["add_bos"] == "1"
    if packing == "tq2_0":  # llama.cpp's type: bitedge-run refuses it with a hint
        assert "convert with --type i2_s" in d["RUNTIME-ERR"]
    else:  # one runtime runs i2_s, tl1 and tl2
        assert "RUNTIME-ERR" not in d, d.get("RUNTIME-ERR")


@pytest.mark.parametrize("packing", ["i2_s", "tl1", "tl2"])
def test_bitedge_writer_odd_shapes_agree_on_packed_sizes(driver, tmp_path, packing):
    # rows and columns that every layout has to pad: the C sizes must equal the Python packers' sizes
    from bitedge.model import ModelConfig

    config = ModelConfig(vocab_size=50, hidden_size=100, intermediate_size=70, num_layers=1, num_heads=5,
                         num_kv_heads=1, head_dim=14, context_length=32, tie_embeddings=False, ffn_act="silu",
                         sub_norms=False, name="odd").validate()
    d = dump(driver, _bitedge_file(tmp_path, config, packing, "f32", tokenizer=False))
    assert "MODEL-ERR" not in d, d.get("MODEL-ERR")
    _check_config(d["model"], config)
    assert d["vocab"]["n_tokens"] == "0"


def test_claimed_counts_do_not_drive_allocation(tmp_path):
    # 48 MB of zero bytes after a header claiming as many key/values (and tensors) as could fit: the loader must
    # find the garbage by parsing, within a 120 MB address-space limit (a calloc sized from the claim would need
    # ~170 MB and report "out of memory" instead)
    import resource
    import subprocess

    exe = compile_c(SOURCES, tmp_path / "fuzz_plain", opt="-O2")
    size = 48 << 20
    n_kv = (size - 24) // 14
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv) + _str("a") + u32(4) + u32(1)
    path = tmp_path / "big.gguf"
    with open(path, "wb") as fp:
        fp.write(header)
        fp.truncate(size)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (120 << 20, 120 << 20))

    proc = subprocess.run([str(exe), "--mmap", str(path)], capture_output=True, text=True, preexec_fn=limit,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"ERR {path}: key/value 1: empty key"), proc.stdout


def test_fuzz_through_the_tokenizer(tmp_path):
    # the whole load path of bitedge-run: loader, model builder, then tokenizer.c on a real byte-level BPE vocab
    dummy = pytest.importorskip("bitedge.convert.dummy")
    exe = compile_c([*SOURCES, *sorted(RUNTIME.glob("tokenizer*.c"))], tmp_path / "fuzz_tok", sanitize=True,
                    defines=("BE_FUZZ_TOKENIZER",))
    config = replace(dummy.preset_config("test"), num_layers=1)
    path = _bitedge_file(tmp_path, config, "i2_s", "f16", tokenizer=True)
    assert run_driver(exe, path)[0] == f"OK {path}"
    s = _summary(run_driver(exe, "--mutate", path, 11, 4000, timeout=300))
    assert s["bugs"] == 0 and s["files"] == 4000 and s["ok"] > 0
