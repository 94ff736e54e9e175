"""Build GGUF files the way llama.cpp and bitnet.cpp write them, from random ternary models (tests only).

The I2_S packer here is written from bitnet.cpp's quantize_i2_s loop (flat index i: block i // 128, byte
32 * block + i % 32, shift 6 - 2 * ((i % 128) // 32)), element by element with index arrays, independently of
the vectorized unpacker under test.
"""

from __future__ import annotations

import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, quants

from conftest import FOREIGN
from bitedge.convert.gguf_foreign_tensors import ForeignFile, tensor_table
from bitedge.errors import BitedgeError
from bitedge.model import ModelConfig, Ternary

def tokenizer_tokens(n: int) -> list[str]:
    return ["<s>", "</s>"] + [f"tok{i}" for i in range(2, n)]


def add_tokenizer(w: GGUFWriter, n_vocab: int, chat_template: str | None = "{{ bos_token }}") -> None:
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "llama-bpe")
    w.add_array("tokenizer.ggml.tokens", tokenizer_tokens(n_vocab))
    w.add_array("tokenizer.ggml.token_type", [3, 3] + [1] * (n_vocab - 2))
    w.add_array("tokenizer.ggml.merges", ["t o", "to k"])
    w.add_uint32("tokenizer.ggml.bos_token_id", 0)
    w.add_uint32("tokenizer.ggml.eos_token_id", 1)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    if chat_template:
        w.add_string("tokenizer.chat_template", chat_template)


def add_arch_keys(w: GGUFWriter, arch: str, c: ModelConfig, hidden_activation: str | None = None) -> None:
    w.add_string("general.name", c.name)
    w.add_uint32(f"{arch}.vocab_size", c.vocab_size)
    w.add_uint32(f"{arch}.context_length", c.context_length)
    w.add_uint32(f"{arch}.embedding_length", c.hidden_size)
    w.add_uint32(f"{arch}.block_count", c.num_layers)
    w.add_uint32(f"{arch}.feed_forward_length", c.intermediate_size)
    w.add_uint32(f"{arch}.rope.dimension_count", c.head_dim)
    w.add_uint32(f"{arch}.attention.head_count", c.num_heads)
    w.add_uint32(f"{arch}.attention.head_count_kv", c.num_kv_heads)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", c.rms_norm_eps)
    w.add_float32(f"{arch}.rope.freq_base", c.rope_theta)
    if arch == "bitnet":  # llama.cpp's BitnetModel.set_gguf_parameters
        w.add_string(f"{arch}.rope.scaling.type", "linear")
        w.add_float32(f"{arch}.rope.scaling.factor", 1.0)
    if hidden_activation:
        w.add_string(f"{arch}.hidden_activation", hidden_activation)


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute (convert_hf_to_gguf.py) of Q/K rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def float_data(values: np.ndarray, type_name: str) -> tuple[np.ndarray, GGMLQuantizationType | None]:
    """(array to hand GGUFWriter.add_tensor, raw_dtype) for a float tensor stored as type_name."""
    if type_name == "F32":
        return np.ascontiguousarray(values, dtype=np.float32), None
    if type_name == "F16":
        return values.astype(np.float16), None
    qtype = GGMLQuantizationType[type_name]
    return quants.quantize(np.ascontiguousarray(values, dtype=np.float32), qtype), qtype


def write_llama_cpp_gguf(
    path,
    weights: dict[str, object],
    config: ModelConfig = FOREIGN,
    *,
    arch: str = "bitnet",
    ternary_type: str = "F32",
    embed_type: str = "F16",
    hidden_activation: str | None = None,
    scale_tensors: bool = False,
    permute_qk: bool = False,
    extra_tensors: dict[str, np.ndarray] | None = None,
) -> None:
    """A GGUF as llama.cpp's convert_hf_to_gguf / llama-quantize writes it: ternary matrices hold T * s.

    scale_tensors: store T (values in {-1, 0, 1}) in the weight and s in ``blk.N.<role>.scale`` (llama.cpp's optional
    per-matmul scale).  permute_qk: apply llama.cpp's Q/K row permutation (arch "llama").
    """
    w = GGUFWriter(str(path), arch)
    add_arch_keys(w, arch, config, hidden_activation)
    add_tokenizer(w, config.vocab_size)
    for name, value in weights.items():
        if isinstance(value, Ternary):
            values = value.values
            if permute_qk and ".attn_q." in name:
                values = llama_permute(values, config.num_heads)
            elif permute_qk and ".attn_k." in name:
                values = llama_permute(values, config.num_kv_heads)
            if scale_tensors:
                dense = values.astype(np.float32)
            else:
                dense = values.astype(np.float32) * np.float32(value.scale)
            data, raw = float_data(dense, ternary_type)
            w.add_tensor(name, data, raw_dtype=raw)
            if scale_tensors:
                w.add_tensor(name.removesuffix(".weight") + ".scale", np.array([value.scale], dtype=np.float32))
        elif name in ("token_embd.weight", "output.weight"):
            data, raw = float_data(value, embed_type)
            w.add_tensor(name, data, raw_dtype=raw)
        else:
            w.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))
    for name, value in (extra_tensors or {}).items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def pack_i2s(values: np.ndarray, scale: float, layout: str = "x86") -> np.ndarray:
    """bitnet.cpp's quantize_i2_s of T * scale: n / 4 code bytes, the f32 scale, padding to n / 4 + 32 bytes."""
    block, block_bytes = {"x86": (128, 32), "arm": (64, 16)}[layout]
    flat = values.reshape(-1).astype(np.int64) + 1  # codes 0, 1, 2
    n = flat.size
    assert n % block == 0
    i = np.arange(n)
    byte = (i // block) * block_bytes + (i % block) % block_bytes
    shift = 6 - 2 * ((i % block) // block_bytes)
    out = np.zeros(n // 4 + 32, dtype=np.uint8)
    np.bitwise_or.at(out, byte, (flat << shift).astype(np.uint8))
    out[n // 4 : n // 4 + 4] = np.frombuffer(np.float32(scale).tobytes(), dtype=np.uint8)
    return out


def write_bitnet_cpp_i2s_gguf(
    path,
    weights: dict[str, object],
    config: ModelConfig = FOREIGN,
    *,
    arch: str = "bitnet-25",
    layout: str = "x86",
    embed_type: str = "F16",
    type_id: int = 36,
) -> None:
    """A GGUF as bitnet.cpp's llama-quantize ... I2_S writes it: ternary matrices are ggml type 36 (I2_S).

    GGUFWriter only knows upstream types, so the I2_S tensor info is added with the raw type id and the
    explicit byte size (bitnet.cpp's ggml_nbytes: n / 4 + 32), and the packed bytes are written as they are.
    """
    w = GGUFWriter(str(path), arch)
    add_arch_keys(w, arch, config)
    add_tokenizer(w, config.vocab_size)
    data: list[np.ndarray] = []
    for name, value in weights.items():
        if isinstance(value, Ternary):
            packed = pack_i2s(value.values, value.scale, layout)
            # tensor_dtype float32 (not uint8) keeps GGUFWriter from converting the shape as a byte shape
            w.add_tensor_info(name, value.values.shape, np.dtype(np.float32), packed.nbytes, raw_dtype=type_id)
            data.append(packed)
        elif name in ("token_embd.weight", "output.weight"):
            arr, raw = float_data(value, embed_type)
            w.add_tensor_info(name, arr.shape, arr.dtype, arr.nbytes, raw_dtype=raw)
            data.append(arr)
        else:
            arr = np.ascontiguousarray(value, dtype=np.float32)
            w.add_tensor_info(name, arr.shape, arr.dtype, arr.nbytes)
            data.append(arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for arr in data:
        w.write_tensor_data(arr)
    w.close()


def bf16_round(x: float) -> float:
    """x rounded to bfloat16 as gguf.quants does (round to nearest even on the upper 16 bits)."""
    q = quants.quantize(np.array([x], dtype=np.float32), GGMLQuantizationType.BF16)
    return float(quants.dequantize(q, GGMLQuantizationType.BF16)[0])


# ---- the fast parser's cross-check: gguf's own GGUFReader, taught the fork's type ids -----------------------------


class ForeignGGUFReader(GGUFReader):
    """GGUFReader that also tables tensors of types the gguf package does not know (bitnet.cpp's I2_S = 36).

    ``tensors`` holds GGUFTensor entries.  A tensor of a type whose size is unknown gets the bytes up to the next
    tensor's data (or the end of the file), so the table is complete even if such a tensor cannot be decoded.
    """

    def _build_tensors(self, start_offs: int, fields) -> None:
        entries = []
        seen = set()
        for field in fields:
            _name_len, name_data, _n_dims, dims, raw_dtype, offset_tensor = field.parts
            name = bytes(name_data).decode("utf-8", errors="replace")
            if name in seen:
                raise ValueError(f"duplicated tensor name {name}")
            seen.add(name)
            shape = tuple(int(d) for d in reversed(dims.tolist()))
            n_elements = int(np.prod(shape, dtype=np.int64)) if shape else 1
            offset = int(start_offs + int(offset_tensor[0]))
            entries.append((name, int(raw_dtype[0]), shape, n_elements, offset, self._get))
        self.tensors = tensor_table(os.fspath(self.data.filename), int(self.data.shape[0]), entries)


def open_with_gguf_reader(path) -> ForeignFile:
    """The same table through gguf's GGUFReader (ForeignGGUFReader): slow on big vocabularies, used to cross-check."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BitedgeError(f"{path}: no such file")
    try:
        reader = ForeignGGUFReader(path, "r")
    except BitedgeError:
        raise
    except Exception as e:  # ValueError, IndexError, OverflowError, UnicodeDecodeError, MemoryError on damaged files
        detail = str(e).splitlines()[0] if str(e) else ""
        raise BitedgeError(f"{path}: corrupt or truncated GGUF file ({type(e).__name__}: {detail})") from None
    version = int(reader.fields["GGUF.version"].parts[-1][0])
    return ForeignFile(path, version, int(reader.alignment), int(reader.data.shape[0]), read_keys(reader), reader.tensors)


def field_value(field):
    """A GGUFReader key's value as a python value (str, int, float, bool or list)."""
    main = field.types[0]
    if main == GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        if sub == GGUFValueType.ARRAY:
            return None  # nested arrays: nothing BitNet needs
        return [field.parts[i][0].item() for i in field.data]
    if main == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    value = field.parts[field.data[0]][0]
    if main == GGUFValueType.BOOL:
        return bool(value)
    return value.item()


def read_keys(reader: GGUFReader) -> dict[str, object]:
    return {name: field_value(f) for name, f in reader.fields.items() if not name.startswith("GGUF.")}
