"""Lazy, checked reading of Hugging Face weight files (safetensors, and pytorch_model.bin if we must).

A safetensors file is an 8-byte little-endian header length, a JSON header mapping tensor names to
{dtype, shape, data_offsets: [begin, end]} (relative to the end of the header), then the data.  We parse the
header ourselves so that a truncated download is reported before anything is converted ("the header
says X bytes, the file has Y"), and read each tensor with one seek + read of its byte range, so a 2B
model converts one tensor at a time.  bf16 becomes fp32 exactly by shifting its 16 bits into the high
half of a uint32.
"""

from __future__ import annotations

import json
import os
import sys
import struct
from dataclasses import dataclass

import numpy as np

from bitedge.errors import BitedgeError

DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened to fp32 by read_bf16_as_f32
    "U8": np.uint8,
    "I8": np.int8,
    "I16": np.int16,
    "I32": np.int32,
    "I64": np.int64,
    "BOOL": np.bool_,
}
MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class TensorEntry:
    path: str
    dtype: str  # safetensors dtype string, e.g. "BF16"
    shape: tuple[int, ...]
    begin: int  # absolute file offsets
    end: int

    @property
    def is_float(self) -> bool:
        return self.dtype in ("F64", "F32", "F16", "BF16")


def read_header(path: str) -> dict[str, TensorEntry]:
    """Tensor entries of one safetensors file, after checking the file holds every byte the header names."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise BitedgeError(f"{name}: truncated safetensors file ({size} bytes, no header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise BitedgeError(f"{name}: truncated or corrupt safetensors file (header of {n} bytes, file has {size} bytes)")
            header = json.loads(f.read(n))
    except OSError as e:
        raise BitedgeError(f"{name}: cannot read safetensors file: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError):
        raise BitedgeError(f"{name}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise BitedgeError(f"{name}: corrupt safetensors header")
    base = 8 + n
    entries: dict[str, TensorEntry] = {}
    data_end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            dtype, shape = str(info["dtype"]), tuple(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError):
            raise BitedgeError(f"{name}: corrupt safetensors header entry for {key}") from None
        if dtype not in DTYPES:
            raise BitedgeError(f"{name}: tensor {key} has unsupported dtype {dtype}")
        want = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype]).itemsize
        if end - begin != want:
            raise BitedgeError(f"{name}: tensor {key} has {end - begin} bytes, its shape {shape} needs {want}")
        entries[key] = TensorEntry(path, dtype, shape, base + begin, base + end)
        data_end = max(data_end, base + end)
    if data_end > size:
        raise BitedgeError(f"{name}: truncated safetensors file: the header says {data_end} bytes, the file has {size} bytes")
    return entries


READ_CHUNK = 1 << 24  # elements per read when widening bf16: bounds the extra memory to 32 MiB


def read_bf16_as_f32(entry: TensorEntry) -> np.ndarray:
    """A bf16 tensor as float32 without a second full-size copy: each chunk of the file goes straight into the
    high halves of the float32 words (a 2B-4T embedding is 656 MB of bf16 and 1.3 GB of float32)."""
    count = (entry.end - entry.begin) // 2
    out = np.zeros(count, dtype=np.uint32)
    high = out.view(np.uint16)[1::2] if sys.byteorder == "little" else out.view(np.uint16)[0::2]
    with open(entry.path, "rb") as f:
        f.seek(entry.begin)
        for i in range(0, count, READ_CHUNK):
            want = min(READ_CHUNK, count - i)
            data = f.read(want * 2)
            if len(data) != want * 2:
                raise BitedgeError(f"{os.path.basename(entry.path)}: truncated while reading a tensor")
            high[i:i + want] = np.frombuffer(data, dtype="<u2")
    return out.view(np.float32).reshape(entry.shape)


def read_tensor(entry: TensorEntry) -> np.ndarray:
    """One tensor as numpy: float types become float32, integer types keep theirs."""
    if entry.dtype == "BF16":
        return read_bf16_as_f32(entry)
    with open(entry.path, "rb") as f:
        f.seek(entry.begin)
        data = f.read(entry.end - entry.begin)
    if len(data) != entry.end - entry.begin:
        raise BitedgeError(f"{os.path.basename(entry.path)}: truncated while reading a tensor")
    raw = np.frombuffer(data, dtype=DTYPES[entry.dtype]).reshape(entry.shape)
    if entry.is_float:
        return raw.astype(np.float32)
    return raw.copy()


def index_safetensors(paths: list[str]) -> dict[str, TensorEntry]:
    entries: dict[str, TensorEntry] = {}
    for path in paths:
        for key, entry in read_header(path).items():
            if key in entries:
                raise BitedgeError(f"tensor {key} is stored twice ({os.path.basename(entries[key].path)}, {os.path.basename(path)})")
            entries[key] = entry
    return entries


def torch_bin_tensors(path: str) -> dict[str, "callable"]:
    """Loaders for a legacy pytorch_model.bin (memory-mapped, weights_only: never runs pickled code)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the workstation side
        raise BitedgeError(f"{os.path.basename(path)}: reading pytorch_model.bin needs torch; convert to safetensors first") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises many types for a bad pickle
        raise BitedgeError(f"{os.path.basename(path)}: cannot read PyTorch checkpoint ({type(e).__name__})") from None

    def loader(key):
        def load():
            t = state[key]
            return t.float().numpy() if t.is_floating_point() else t.numpy().copy()

        return load

    return {key: loader(key) for key in state}
