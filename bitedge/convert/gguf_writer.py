"""Write a ModelSource as one bitedge GGUF file (docs/format.md), streaming one tensor at a time.

The gguf package's GGUFWriter is used in its streaming mode: every tensor's info (name, shape, type, size) is
computed from the config and the packing before anything is written, then header, key/values and the tensor
table go out, then each tensor is loaded, packed, written and dropped. Peak memory is one tensor (and float
tensors are converted in row chunks), so a 100B model converts in a few GB of RAM.

The file is written as ``<path>.partial-<pid>`` in the destination directory and renamed when complete; on any
failure (including KeyboardInterrupt) the partial file is removed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.gguf_writer import WriterState

import bitedge
from bitedge.formats import float_quants
from bitedge.formats import gguf_keys as K
from bitedge.formats.float_quants import BLOCK_TYPES, EMBED_TYPES
from bitedge.formats.packing import get_packing
from bitedge.errors import BitedgeError
from bitedge.output import replaced_atomically
from bitedge.model import ModelConfig, ModelSource, Ternary, TokenizerData, TOKEN_UNUSED, is_ternary

ARCH, FORMAT_VERSION, ALIGNMENT, QUANTIZATION_VERSION = K.ARCH, K.FORMAT_VERSION, K.ALIGNMENT, K.QUANTIZATION_VERSION
EMBED_ROLES = ("token_embd.weight", "output.weight")
CHUNK_ELEMENTS = 1 << 24  # float tensors are converted and written in row chunks of about this many values


@dataclass
class TensorPlan:
    """One tensor of the file: what to write and how large it is, known before any data is loaded."""

    name: str  # GGUF tensor name
    source: str  # ModelSource tensor name it comes from
    kind: str  # "ternary", "scale", "float", "embed"
    shape: tuple[int, ...]  # logical numpy shape of the source tensor
    stored_shape: tuple[int, ...]  # numpy shape handed to add_tensor_info (bytes for quantized types)
    np_dtype: type  # dtype handed to add_tensor_info
    ggml_type: GGMLQuantizationType | None  # raw ggml type, or None to infer from np_dtype
    nbytes: int


def plan_tensors(config: ModelConfig, packing_name: str, embed_type: str) -> list[TensorPlan]:
    """The file's tensors in order, with sizes, from the config alone (nothing is loaded)."""
    packing = get_packing(packing_name)
    embed = EMBED_TYPES[embed_type]
    plans: list[TensorPlan] = []
    for name, shape in config.tensor_shapes().items():
        if is_ternary(name):
            n, k = shape
            if packing.name == "tq2_0":
                packing.check_k(n, k, name)
                stored = packing.packed_shape(n, k)
                plans.append(TensorPlan(name, name, "ternary", shape, stored, np.uint8, GGMLQuantizationType.TQ2_0, stored[0] * stored[1]))
                continue
            stored = packing.packed_shape(n, k)
            plans.append(TensorPlan(name, name, "ternary", shape, stored, np.int8, None, stored[0] * stored[1]))
            scale = name.removesuffix(".weight") + ".scale"
            plans.append(TensorPlan(scale, name, "scale", (1,), (1,), np.float32, None, 4))
        elif name in EMBED_ROLES:
            rows, cols = shape
            if embed in BLOCK_TYPES:
                block, block_bytes = BLOCK_TYPES[embed]
                if cols % block:
                    raise BitedgeError(f"{name}: shape {shape} cannot be stored as {embed_type}: rows of {cols} are not a "
                                       f"multiple of {block}")
                stored = (rows, cols // block * block_bytes)
                plans.append(TensorPlan(name, name, "embed", shape, stored, np.uint8, embed, rows * stored[1]))
            else:
                dtype = np.float16 if embed == GGMLQuantizationType.F16 else np.float32
                plans.append(TensorPlan(name, name, "embed", shape, shape, dtype, None, rows * cols * np.dtype(dtype).itemsize))
        else:
            plans.append(TensorPlan(name, name, "float", shape, shape, np.float32, None, int(np.prod(shape)) * 4))
    return plans


# ---------------------------------------------------------------------------------------------- key/values


def add_model_keys(w: GGUFWriter, source: ModelSource, packing: str, embed_type: str) -> None:
    c = source.config
    w.add_string(K.NAME, c.name)
    w.add_uint32(K.QUANTIZATION_VERSION_KEY, QUANTIZATION_VERSION)
    w.add_custom_alignment(ALIGNMENT)
    w.add_uint32(K.VOCAB_SIZE, c.vocab_size)
    w.add_uint32(K.CONTEXT_LENGTH, c.context_length)
    w.add_uint32(K.EMBEDDING_LENGTH, c.hidden_size)
    w.add_uint32(K.BLOCK_COUNT, c.num_layers)
    w.add_uint32(K.FEED_FORWARD_LENGTH, c.intermediate_size)
    w.add_uint32(K.HEAD_COUNT, c.num_heads)
    w.add_uint32(K.HEAD_COUNT_KV, c.num_kv_heads)
    w.add_uint32(K.KEY_LENGTH, c.head_dim)
    w.add_uint32(K.VALUE_LENGTH, c.head_dim)
    w.add_float32(K.RMS_EPS, c.rms_norm_eps)
    w.add_float32(K.ROPE_FREQ_BASE, c.rope_theta)
    w.add_uint32(K.ROPE_DIMENSION_COUNT, c.head_dim)

    w.add_uint32(K.FORMAT_VERSION_KEY, FORMAT_VERSION)
    w.add_string(K.WEIGHT_PACKING, packing)
    w.add_string(K.FFN_ACTIVATION, c.ffn_act)
    w.add_bool(K.SUB_NORMS, c.sub_norms)
    w.add_bool(K.TIE_EMBEDDINGS, c.tie_embeddings)
    w.add_string(K.EMBED_TYPE, embed_type)
    w.add_string(K.SOURCE, source.source or "")
    if source.source_sha256:
        w.add_string(K.SOURCE_SHA256, source.source_sha256)
    w.add_string(K.CONVERTER_VERSION, bitedge.__version__)


def add_tokenizer_keys(w: GGUFWriter, td: TokenizerData, vocab_size: int) -> None:
    tokens, types = list(td.tokens), [int(t) for t in td.token_types]
    if len(types) != len(tokens):
        raise BitedgeError(f"tokenizer: {len(tokens)} tokens but {len(types)} token types")
    if len(tokens) > vocab_size:
        raise BitedgeError(f"tokenizer has {len(tokens)} tokens, more than the model's vocab_size {vocab_size}")
    scores = None if td.scores is None else [float(s) for s in td.scores]
    if scores is not None and len(scores) != len(tokens):
        raise BitedgeError(f"tokenizer: {len(tokens)} tokens but {len(scores)} scores")
    # llama.cpp needs exactly vocab_size tokens: pad ids the tokenizer never produces, as its converter does
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]")
        types.append(TOKEN_UNUSED)
        if scores is not None:
            scores.append(0.0)
    w.add_string(K.TOKENIZER_MODEL, td.model)
    if td.pre is not None:
        w.add_string(K.TOKENIZER_PRE, td.pre)
    w.add_array(K.TOKENS, tokens)
    w.add_array(K.TOKEN_TYPE, types)
    if scores is not None:
        w.add_array(K.SCORES, scores)
    if td.merges:
        w.add_array(K.MERGES, list(td.merges))
    for key, value in ((K.BOS_ID, td.bos_id), (K.EOS_ID, td.eos_id), (K.UNKNOWN_ID, td.unk_id), (K.PADDING_ID, td.pad_id)):
        if value is not None:
            w.add_uint32(key, int(value))
    w.add_bool(K.ADD_BOS, bool(td.add_bos))
    w.add_bool(K.ADD_EOS, bool(td.add_eos))
    if td.add_space_prefix is not None:
        w.add_bool(K.ADD_SPACE_PREFIX, bool(td.add_space_prefix))
    if td.chat_template:
        w.add_string(K.CHAT_TEMPLATE, td.chat_template)


# ---------------------------------------------------------------------------------------------- tensor data


def ternary_value(name: str, value, shape: tuple[int, ...]) -> Ternary:
    if not isinstance(value, Ternary):
        raise BitedgeError(f"{name}: expected a ternary tensor, the importer gave {type(value).__name__}")
    if tuple(value.values.shape) != tuple(shape):
        raise BitedgeError(f"{name}: ternary values have shape {tuple(value.values.shape)}, expected {shape}")
    scale = float(value.scale)
    if not np.isfinite(scale) or scale == 0:
        raise BitedgeError(f"{name}: ternary scale must be finite and nonzero, got {scale}")
    return value


def float_value(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(value, Ternary):
        raise BitedgeError(f"{name}: expected a float tensor, the importer gave a ternary one")
    value = np.asarray(value)
    if tuple(value.shape) != tuple(shape):
        raise BitedgeError(f"{name}: has shape {tuple(value.shape)}, expected {shape}")
    if not np.issubdtype(value.dtype, np.floating):
        raise BitedgeError(f"{name}: expected a float tensor, got {value.dtype}")
    return value


def float_chunks(name: str, value: np.ndarray, plan: TensorPlan) -> Iterator[np.ndarray]:
    """The tensor converted to its file type, a block of rows at a time."""
    rows = value.shape[0] if value.ndim > 1 else 1
    flat = value.reshape(rows, -1)
    step = max(1, CHUNK_ELEMENTS // max(1, flat.shape[1]))
    for r0 in range(0, rows, step):
        chunk = np.asarray(flat[r0 : r0 + step], dtype=np.float32)
        if not np.isfinite(chunk).all():
            raise BitedgeError(f"{name}: holds NaN or infinite values")
        if plan.ggml_type in BLOCK_TYPES:
            yield float_quants.quantize(chunk, plan.ggml_type)
        else:
            yield np.ascontiguousarray(chunk, dtype=plan.np_dtype)


def write_tensor_chunks(w: GGUFWriter, name: str, chunks, progress) -> int:
    """Like GGUFWriter.write_tensor_data, for a tensor given as consecutive pieces (same padding rules)."""
    if w.state not in (WriterState.TI_DATA, WriterState.WEIGHTS) or w.fout is None:
        raise RuntimeError(f"GGUF writer is in state {w.state}, cannot write tensor data")
    fout = w.fout[0]
    expected_name, info = next(iter(w.tensors[0].items()))
    if expected_name != name:
        raise RuntimeError(f"tensor data out of order: writing {name}, the table expects {expected_name}")
    w.write_padding(fout, fout.tell())
    written = 0
    for chunk in chunks:
        chunk.tofile(fout)
        written += chunk.nbytes
        if progress is not None:
            progress(chunk.nbytes)
    if written != info.nbytes:
        raise RuntimeError(f"{name}: wrote {written} bytes, the tensor table says {info.nbytes}")
    w.write_padding(fout, written)
    del w.tensors[0][name]
    w.state = WriterState.WEIGHTS
    return written


# ---------------------------------------------------------------------------------------------- main entry


def check_destination(path: Path, force: bool) -> None:
    if path.is_dir():
        raise BitedgeError(f"{path}: is a directory (give a .gguf file name)")
    if path.exists() and not force:
        raise BitedgeError(f"{path}: already exists (use --force to overwrite)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BitedgeError(f"{parent}: output directory does not exist")
    if not os.access(parent, os.W_OK):
        raise BitedgeError(f"{parent}: output directory is not writable")


def write_gguf(
    source: ModelSource,
    path,
    *,
    packing: str = "i2_s",
    embed_type: str = "f16",
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write ``source`` to ``path``; returns a summary (sizes, counts, timing). Raises BitedgeError."""
    t0 = time.perf_counter()
    packer = get_packing(packing)
    if embed_type not in EMBED_TYPES:
        raise BitedgeError(f"unknown embedding type {embed_type!r} (choose from {', '.join(EMBED_TYPES)})")
    config = source.config.validate()
    source.check_complete()
    path = Path(path)
    check_destination(path, force)
    plans = plan_tensors(config, packer.name, embed_type)

    w = GGUFWriter(None, ARCH)
    add_model_keys(w, source, packer.name, embed_type)
    if source.tokenizer is not None:
        add_tokenizer_keys(w, source.tokenizer, config.vocab_size)
    for p in plans:
        w.add_tensor_info(p.name, p.stored_shape, np.dtype(p.np_dtype), p.nbytes, raw_dtype=p.ggml_type)

    totals = {"ternary": 0, "scale": 0, "float": 0, "embed": 0}
    with replaced_atomically(path, hidden=False) as partial:
        try:
            w.write_header_to_file(partial)
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            pending_scale: dict[str, float] = {}
            for p in plans:
                if p.kind == "scale":
                    data = np.array([pending_scale.pop(p.source)], dtype=np.float32)
                    totals["scale"] += write_tensor_chunks(w, p.name, [data], progress)
                    continue
                value = source.tensors[p.source]()
                if p.kind == "ternary":
                    t = ternary_value(p.name, value, p.shape)
                    if packer.name == "tq2_0":
                        packed = packer.pack(t.values, p.name, scale=t.scale)
                    else:
                        packed = packer.pack(t.values, p.name)
                        pending_scale[p.source] = float(np.float32(t.scale))
                    del value, t
                    totals["ternary"] += write_tensor_chunks(w, p.name, [packed], progress)
                    del packed
                else:
                    arr = float_value(p.name, value, p.shape)
                    del value
                    totals[p.kind] += write_tensor_chunks(w, p.name, float_chunks(p.name, arr, p), progress)
                    del arr
        finally:
            w.close()

    ternary_params = sum(int(np.prod(p.shape)) for p in plans if p.kind == "ternary")
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "tensors": len(plans),
        "packing": packer.name,
        "embed_type": embed_type,
        "n_params": config.n_params(),
        "ternary_params": ternary_params,
        "ternary_bytes": totals["ternary"],
        "float_bytes": totals["float"] + totals["embed"] + totals["scale"],
        "embed_bytes": totals["embed"],
        "bits_per_ternary_weight": 8.0 * totals["ternary"] / ternary_params if ternary_params else 0.0,
        "seconds": time.perf_counter() - t0,
    }
