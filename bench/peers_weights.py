"""The same `bitedge dummy` weights for every peer, and checks that they are the same.

One F32 GGUF per preset is written here in the layout bitnet.cpp's and ik_llama.cpp's loaders read (arch `bitnet`,
tied embedding, sub-norms; every ternary matrix stored as values x scale, exactly representable in F32), and each
peer's own llama-quantize turns it into its type with `--token-embedding-type q8_0`:
  bitnet.cpp    I2_S       (quantize_i2_s: scale = max|W| = the tensor's scale, codes from the signs)
  ik_llama.cpp  IQ2_BN, IQ2_BN_R4  (per-row max = the tensor's scale, codes from |W| >= max/2)
Their converters (convert-hf-to-gguf-bitnet.py, convert_hf_to_gguf.py) are not used: they want torch and a
sentencepiece tokenizer, and their output would be the same F16/F32 matrices (peers.md).

Checks (peer_checks): bitnet.cpp's I2_S tensors are compared byte for byte with bitedge's own I2_S file (codes,
scale, the q8_0 embedding, the norms); ik_llama.cpp's IQ2_BN tensors are decoded here (row scale + 2-bit codes,
iqk_quantize.cpp's layouts, IQ2_BN_R4 with rows interleaved by 4) and compared with the dummy's ternary values and
scales; every file is checked for its tensor names, types and shapes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from bitedge.convert.dummy import dummy_source
from bitedge.convert.gguf_writer import add_tokenizer_keys, write_tensor_chunks
from bitedge.gguf_read import open_gguf
from bitedge.model import ModelSource, Ternary, is_ternary

ARCH = "bitnet"
ROWS_PER_CHUNK = 4096
# ggml type ids of the forks (the gguf package knows neither)
I2_S, IQ2_BN, IQ2_BN_R4 = 36, 135, 335
PEER_TYPES = {"bitnet.cpp": ["I2_S"], "ik_llama.cpp": ["IQ2_BN", "IQ2_BN_R4"]}
TYPE_IDS = {"I2_S": I2_S, "IQ2_BN": IQ2_BN, "IQ2_BN_R4": IQ2_BN_R4}
Q8_0 = 8


def tied_source(preset: str) -> ModelSource:
    """The dummy with a tied embedding (the peers' `bitnet` graph always computes logits with token_embd)."""
    from dataclasses import replace

    source = dummy_source(preset, seed=0)
    if source.config.tie_embeddings:
        return source
    tensors = {k: v for k, v in source.tensors.items() if k != "output.weight"}
    return replace(source, config=replace(source.config, tie_embeddings=True), tensors=tensors)


def add_peer_keys(w: GGUFWriter, source: ModelSource) -> None:
    c = source.config
    w.add_string("general.name", c.name)
    w.add_uint32("general.file_type", 0)  # all F32
    w.add_uint32(f"{ARCH}.vocab_size", c.vocab_size)
    w.add_uint32(f"{ARCH}.context_length", c.context_length)
    w.add_uint32(f"{ARCH}.embedding_length", c.hidden_size)
    w.add_uint32(f"{ARCH}.block_count", c.num_layers)
    w.add_uint32(f"{ARCH}.feed_forward_length", c.intermediate_size)
    w.add_uint32(f"{ARCH}.attention.head_count", c.num_heads)
    w.add_uint32(f"{ARCH}.attention.head_count_kv", c.num_kv_heads)
    w.add_float32(f"{ARCH}.attention.layer_norm_rms_epsilon", c.rms_norm_eps)
    w.add_float32(f"{ARCH}.rope.freq_base", c.rope_theta)
    w.add_uint32(f"{ARCH}.rope.dimension_count", c.head_dim)


def float_rows(name: str, value) -> np.ndarray:
    """A tensor as the F32 the peers' quantizers read: ternary values x scale (exact in F32), floats as they are."""
    if isinstance(value, Ternary):
        return value.values.astype(np.float32) * np.float32(value.scale)
    return np.asarray(value, dtype=np.float32)


def write_peer_source(preset: str, path: Path) -> Path:
    """The preset's dummy weights as an F32 GGUF for the peers' llama-quantize (written to a partial, renamed)."""
    if path.exists():
        return path
    source = tied_source(preset)
    shapes = source.config.tensor_shapes()
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    w = GGUFWriter(None, ARCH)
    add_peer_keys(w, source)
    add_tokenizer_keys(w, source.tokenizer, source.config.vocab_size)
    for name, shape in shapes.items():
        w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
    try:
        w.write_header_to_file(partial)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for name in shapes:
            value = source.tensors[name]()
            if isinstance(value, Ternary):
                chunks = [float_rows(name, value)]
            else:  # the embedding is a lazy strided view: convert it a block of rows at a time
                arr = np.asarray(value)
                flat = arr.reshape(arr.shape[0] if arr.ndim > 1 else 1, -1)
                chunks = (np.ascontiguousarray(flat[r:r + ROWS_PER_CHUNK], dtype=np.float32)
                          for r in range(0, flat.shape[0], ROWS_PER_CHUNK))
            write_tensor_chunks(w, name, chunks, None)
        w.close()
        os.replace(partial, path)
    except BaseException:
        w.close()
        partial.unlink(missing_ok=True)
        raise
    return path


def quantize(llama_quantize: Path, src: Path, dst: Path, qtype: str, threads: int = 2) -> Path:
    """The peer's llama-quantize, q8_0 embedding; I2_S with one thread (its scale is one per tensor)."""
    if dst.exists():
        return dst
    partial = dst.with_name(dst.name + f".partial-{os.getpid()}")
    cmd = [str(llama_quantize), "--token-embedding-type", "q8_0", str(src), str(partial), qtype,
           str(1 if qtype == "I2_S" else threads)]
    r = subprocess.run(["nice", "-n", "10", *cmd], capture_output=True, text=True)
    if r.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise SystemExit(f"{llama_quantize} {qtype} failed ({r.returncode}): {(r.stderr or r.stdout)[-1500:]}")
    os.replace(partial, dst)
    return dst


def peer_models(preset: str, models_dir: Path, bins: dict[str, Path]) -> dict[str, Path]:
    """{"bitnet.cpp I2_S": path, "ik_llama.cpp IQ2_BN": path, ...} for the engines whose bin/ is given."""
    models_dir.mkdir(parents=True, exist_ok=True)
    wanted = {(engine, qtype): models_dir / f"{preset}-{engine}-{qtype.lower()}-q8_0.gguf"
              for engine in bins for qtype in PEER_TYPES[engine]}
    src = models_dir / f"{preset}-peer-f32.gguf"
    if not all(p.exists() for p in wanted.values()):
        write_peer_source(preset, src)
    out = {f"{engine} {qtype}": quantize(bins[engine] / "llama-quantize", src, path, qtype)
           for (engine, qtype), path in wanted.items()}
    every_peer = [models_dir / f"{preset}-{e}-{q.lower()}-q8_0.gguf" for e, qs in PEER_TYPES.items() for q in qs]
    if all(p.exists() for p in every_peer):  # 4 bytes a weight (10 GB for 2.4B): kept until every peer has its file
        src.unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------------------------------- checks


def decode_iq2_bn(raw: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """IQ2_BN rows -> (ternary int8 [n, k], row scales f32 [n]): each row is an f32 scale then k/64 blocks of 16
    bytes; byte j of a block holds the codes (value + 1) of elements j, j+16, j+32, j+48 in bits 0-1, 2-3, 4-5, 6-7."""
    rows = raw.reshape(n, 4 + k // 4)
    scales = rows[:, :4].copy().view(np.float32).reshape(n)
    qs = rows[:, 4:].reshape(n, k // 64, 16)
    codes = np.stack([(qs >> s) & 3 for s in (0, 2, 4, 6)], axis=2)  # [n, block, quarter, j]
    return codes.reshape(n, k).astype(np.int8) - 1, scales


def decode_iq2_bn_r4(raw: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """IQ2_BN_R4 (rows interleaved by 4, iqk_quantize.cpp repack_iq2_bn): per group of 4 rows, their 4 f32 scales,
    then per 64 columns 64 bytes; byte 16*l + 4*r + i holds row r's codes of columns 16*l + i + {0, 4, 8, 12} in
    bits 0-1, 2-3, 4-5, 6-7."""
    groups = raw.reshape(n // 4, 16 + k)
    scales = groups[:, :16].copy().view(np.float32).reshape(n)
    qx = groups[:, 16:].reshape(n // 4, k // 64, 4, 4, 4)  # [group, block, l, row, i]
    codes = np.stack([(qx >> s) & 3 for s in (0, 2, 4, 6)], axis=-1)  # [..., i, m]: column 16*l + 4*m + i
    values = codes.transpose(0, 3, 1, 2, 5, 4).reshape(n, k)  # [group, row, block, l, m, i]
    return values.astype(np.int8) - 1, scales


def tensor_types(path: Path) -> dict[str, tuple[int, tuple[int, ...]]]:
    g = open_gguf(path)
    return {t.name: (int(t.ggml_type), t.shape) for t in g.tensors}


def check_layout(path: Path, preset: str, qtype: str) -> list[str]:
    """Every tensor of the tied dummy present with its shape; ternary matrices of qtype, the embedding q8_0."""
    shapes = tied_source(preset).config.tensor_shapes()
    have = tensor_types(path)
    problems = []
    if set(have) != set(shapes):
        problems.append(f"tensors differ: missing {sorted(set(shapes) - set(have))[:3]}, extra {sorted(set(have) - set(shapes))[:3]}")
    for name, shape in shapes.items():
        if name not in have:
            continue
        type_id, got = have[name]
        want = TYPE_IDS[qtype] if is_ternary(name) else Q8_0 if name == "token_embd.weight" else 0
        if type_id != want or tuple(got) != tuple(shape):
            problems.append(f"{name}: type {type_id} shape {got}, expected type {want} shape {shape}")
    return problems


def check_i2s_identical(peer: Path, ours: Path) -> list[str]:
    """bitnet.cpp's I2_S file against bitedge's own: codes, scale, embedding and norms byte for byte."""
    a, b = open_gguf(peer), open_gguf(ours)
    problems = []
    for t in a.tensors:
        u = b.by_name.get(t.name)
        if u is None:
            problems.append(f"{t.name}: not in {ours.name}")
            continue
        if int(t.ggml_type) == I2_S:
            n_codes = t.n_elements // 4
            mine = b.raw(u)
            scale = b.array(b.by_name[t.name.removesuffix(".weight") + ".scale"])[0]
            theirs = a.raw(t, n_codes + 4)
            if mine.size != n_codes or not np.array_equal(theirs[:n_codes], mine):
                problems.append(f"{t.name}: I2_S codes differ")
            if theirs[n_codes:].view(np.float32)[0] != scale:
                problems.append(f"{t.name}: scale {theirs[n_codes:].view(np.float32)[0]} != {scale}")
        elif not np.array_equal(a.raw(t), b.raw(u)):
            problems.append(f"{t.name}: {t.type_name} bytes differ")
    return problems


def check_iq2bn_values(peer: Path, preset: str, names: list[str] | None = None) -> list[str]:
    """ik_llama.cpp's IQ2_BN / IQ2_BN_R4 tensors decoded and compared with the dummy's ternary values and scales."""
    source = tied_source(preset)
    g = open_gguf(peer)
    problems = []
    for t in g.tensors:
        if int(t.ggml_type) not in (IQ2_BN, IQ2_BN_R4) or (names and t.name not in names):
            continue
        n, k = t.shape
        decode = decode_iq2_bn if int(t.ggml_type) == IQ2_BN else decode_iq2_bn_r4
        values, scales = decode(g.raw(t, n * (4 + k // 4)), n, k)
        want = source.tensors[t.name]()
        if not np.array_equal(values, want.values):
            problems.append(f"{t.name}: {t.type_name} values differ from the dummy's")
        if not np.all(scales == np.float32(want.scale)):
            problems.append(f"{t.name}: row scales differ from the dummy's {want.scale}")
    return problems


def peer_checks(preset: str, models: dict[str, Path], bitedge_i2s: Path, all_tensors: bool = True) -> dict[str, str]:
    """What was checked per peer file and the result ("ok: ..." or the first problems)."""
    shapes = tied_source(preset).config.tensor_shapes()
    sample = None if all_tensors else [n for n in shapes if is_ternary(n)][:7]
    out = {}
    for label, path in models.items():
        qtype = label.split()[-1]
        problems = check_layout(path, preset, qtype)
        what = "tensor names, types, shapes"
        if qtype == "I2_S":
            problems += check_i2s_identical(path, bitedge_i2s)
            what += "; every tensor byte-identical to bitedge's I2_S file (codes, scales, q8_0 embedding, norms)"
        else:
            problems += check_iq2bn_values(path, preset, sample)
            what += f"; {qtype} decoded = the dummy's ternary values and scales" + (" (all matrices)" if sample is None else " (layer 0)")
        out[label] = ("ok: " + what) if not problems else "MISMATCH: " + "; ".join(problems[:4])
    return out
