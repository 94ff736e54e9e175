"""Read bitedge GGUF files back: ``read_model`` (a lazy ModelSource) and ``read_metadata`` (keys + tensor table).

The header is parsed here (``GGUFFile``) and tensor data is memory-mapped; each tensor loader copies and
unpacks one tensor when called. gguf's GGUFReader is not used for reading because it builds a numpy object
per string: it needs 17 s for the 128k-token vocabulary of a 2B model, this parser 0.2 s. (The tests check
this parser against GGUFReader.) ``read_model`` reads bitedge's files only: files without
``bitedge.format_version`` (llama.cpp / bitnet.cpp GGUFs) are the importer's (``bitedge.convert.gguf_foreign``,
through ``bitedge.convert.sources.open_source``), which parses them with ``open_gguf`` too.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, quants

from bitedge.formats import gguf_keys as K
from bitedge.formats.packing import get_packing
from bitedge.errors import BitedgeError
from bitedge.model import ModelConfig, ModelSource, Ternary, TokenizerData, is_ternary

SUPPORTED_FORMAT_VERSION = K.FORMAT_VERSION
ARCH = K.ARCH
FLOAT_TYPES = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q6_K,
               GGMLQuantizationType.Q4_0)  # the embed types of bitedge.formats.float_quants
DEFAULT_ALIGNMENT = 32
SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
PLAIN_DTYPES = {  # ggml types whose data is a plain numpy array
    GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16, GGMLQuantizationType.F64: np.float64,
    GGMLQuantizationType.I8: np.int8, GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
    GGMLQuantizationType.I64: np.int64,
}


class CorruptFile(Exception):
    """Raised inside the parser; open_gguf turns it into a one-line BitedgeError."""


@dataclass
class TensorInfo:
    name: str
    ggml_type: "GGMLQuantizationType | int"  # an int for types this gguf package does not know (fork dialects)
    shape: tuple[int, ...]  # numpy order (the file stores it reversed)
    n_elements: int
    nbytes: int | None  # None when the type is unknown or its block does not divide the row
    offset: int  # absolute file offset of the data

    @property
    def type_name(self) -> str:
        return self.ggml_type.name if isinstance(self.ggml_type, GGMLQuantizationType) else f"type{self.ggml_type}"


class GGUFFile:
    """A parsed GGUF header plus a read-only memory map of the file (little-endian GGUF v2/v3)."""

    def __init__(self, path: str):
        self.path = path
        self.size = os.path.getsize(path)
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.pos = 0
        magic, self.version = self.unpack("<4sI")
        if magic != b"GGUF":
            raise CorruptFile(f"not a GGUF file (magic {magic!r})")
        if self.version not in (2, 3):
            raise CorruptFile(f"unsupported GGUF version {self.version} (big-endian files are not supported)")
        n_tensors, n_kv = self.unpack("<QQ")
        if n_tensors > self.size or n_kv > self.size:
            raise CorruptFile(f"header claims {n_tensors} tensors and {n_kv} keys")
        self.kv: dict[str, object] = {}
        self.kv_types: dict[str, GGUFValueType] = {}
        for _ in range(n_kv):
            key = self.string()
            vtype = self.value_type()
            self.kv[key] = self.value(vtype)
            self.kv_types[key] = vtype
        infos = [self.tensor_info() for _ in range(n_tensors)]
        alignment = int(self.kv.get(K.ALIGNMENT_KEY, DEFAULT_ALIGNMENT))
        if alignment <= 0 or alignment & (alignment - 1):
            raise CorruptFile(f"general.alignment {alignment} is not a power of two")
        self.alignment = alignment
        self.data_start = -(-self.pos // alignment) * alignment
        self.tensors: list[TensorInfo] = []
        for name, ggml_type, shape, n, rel in infos:
            nbytes = None
            if isinstance(ggml_type, GGMLQuantizationType):
                block, type_size = GGML_QUANT_SIZES[ggml_type]
                if not shape or shape[-1] % block == 0:  # else a fork reusing the id (bitnet.cpp TL2 = MXFP4's 39)
                    nbytes = n // block * type_size
            self.tensors.append(TensorInfo(name, ggml_type, shape, n, nbytes, self.data_start + rel))
        self.by_name = {t.name: t for t in self.tensors}

    # header primitives -------------------------------------------------------------------------------
    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > self.size:
            raise CorruptFile(f"header runs past the end of the file (at byte {self.pos})")
        values = struct.unpack_from(fmt, self.map, self.pos)
        self.pos += size
        return values

    def string(self) -> str:
        (n,) = self.unpack("<Q")
        if self.pos + n > self.size:
            raise CorruptFile(f"a string of {n} bytes runs past the end of the file (at byte {self.pos})")
        raw = self.map[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value_type(self) -> GGUFValueType:
        (t,) = self.unpack("<I")
        try:
            return GGUFValueType(t)
        except ValueError:
            raise CorruptFile(f"unknown value type {t} at byte {self.pos - 4}") from None

    def value(self, vtype: GGUFValueType):
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            sub = self.value_type()
            (n,) = self.unpack("<Q")
            if n > self.size - self.pos:
                raise CorruptFile(f"an array of {n} items runs past the end of the file")
            if sub in SCALAR_FORMATS:
                fmt = SCALAR_FORMATS[sub]
                size = struct.calcsize(fmt) * n
                if self.pos + size > self.size:
                    raise CorruptFile("an array runs past the end of the file")
                arr = np.frombuffer(self.map, dtype=np.dtype(fmt), count=n, offset=self.pos)
                self.pos += size
                return arr.tolist()
            return [self.value(sub) for _ in range(n)]
        (v,) = self.unpack(SCALAR_FORMATS[vtype])
        return v

    def tensor_info(self):
        name = self.string()
        (n_dims,) = self.unpack("<I")
        if n_dims > 8:
            raise CorruptFile(f"tensor {name} has {n_dims} dimensions")
        dims = self.unpack(f"<{n_dims}Q")
        ggml_type, rel = self.unpack("<IQ")
        try:
            ggml_type = GGMLQuantizationType(ggml_type)
        except ValueError:
            pass  # a fork's type id (bitnet.cpp I2_S/TL1/TL2, ik's IQ*_BN): left to the foreign importer
        n = 1
        for d in dims:  # Python ints: a corrupt dimension must not wrap around int64 into a plausible count
            n *= int(d)
        if n >= 1 << 60:
            raise CorruptFile(f"tensor {name}: element count overflows (dimensions {list(dims)})")
        return name, ggml_type, tuple(int(d) for d in reversed(dims)), n, rel

    # tensor data -------------------------------------------------------------------------------------
    def raw(self, t: TensorInfo, nbytes: int | None = None) -> np.ndarray:
        """The tensor's bytes (read-only uint8 view of the map)."""
        nbytes = t.nbytes if nbytes is None else nbytes
        return np.frombuffer(self.map, dtype=np.uint8, count=nbytes, offset=t.offset)

    def array(self, t: TensorInfo) -> np.ndarray:
        """Plain types as typed arrays in numpy shape; block-quantized types as uint8 [rows, bytes per row]."""
        data = self.raw(t)
        if t.ggml_type in PLAIN_DTYPES:
            return data.view(PLAIN_DTYPES[t.ggml_type]).reshape(t.shape)
        rows = t.n_elements // t.shape[-1] if t.shape else 1
        return data.reshape(rows, -1)


def open_gguf(path) -> GGUFFile:
    """Parse ``path``'s header, with every way a file can be bad turned into one BitedgeError line."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BitedgeError(f"{path}: no such file")
    if os.path.isdir(path):
        raise BitedgeError(f"{path}: is a directory, expected a .gguf file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise BitedgeError(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    try:
        gguf_file = GGUFFile(path)
    except CorruptFile as e:
        raise BitedgeError(f"{path}: corrupt or truncated GGUF file: {e}") from None
    except (OSError, ValueError, OverflowError, struct.error) as e:
        raise BitedgeError(f"{path}: corrupt or truncated GGUF file ({type(e).__name__}: {e})") from None
    # Sizes are only certain for bitedge's own files: forks reuse upstream type ids for other layouts
    # (bitnet.cpp's TL2 is 39, upstream's MXFP4), so gguf_foreign checks foreign files from the offsets.
    own = K.FORMAT_VERSION_KEY in gguf_file.kv
    for t in gguf_file.tensors if own else ():
        if t.nbytes is None:
            raise BitedgeError(f"{path}: tensor {t.name} has type {t.type_name} with shape {t.shape}, not valid in a bitedge file")
        if t.offset + t.nbytes > gguf_file.size:
            raise BitedgeError(
                f"{path}: truncated: tensor {t.name} ends at byte {t.offset + t.nbytes}, the file has {gguf_file.size} bytes"
            )
    return gguf_file


def read_metadata(path) -> dict:
    """{"path", "version", "kv": {key: value}, "kv_types": {key: type name}, "tensors": [{"name", "type",
    "shape", "nbytes", "offset"}]}.  Shapes are numpy order (GGUF stores them reversed); ``nbytes`` is the
    tensor's size in the file (None for a type this gguf package does not know), ``offset`` is absolute."""
    g = open_gguf(path)
    tensors = [
        {"name": t.name, "type": t.type_name, "shape": t.shape, "nbytes": t.nbytes, "offset": t.offset}
        for t in g.tensors
    ]
    return {
        "path": os.fspath(path),
        "version": g.version,
        "kv": dict(g.kv),
        "kv_types": {k: v.name for k, v in g.kv_types.items()},
        "tensors": tensors,
        "alignment": g.alignment,
        "bytes": g.size,
    }


# ---------------------------------------------------------------------------------------------- model


def f32_value(x) -> float:
    """An f32 key as the shortest decimal that rounds to it (1e-5 stays 1e-5, not 9.99999974e-06)."""
    return float(str(np.float32(x)))


def config_from_kv(kv: dict, path: str) -> ModelConfig:
    def need(key):
        if key not in kv:
            raise BitedgeError(f"{path}: missing key {key}")
        return kv[key]

    return ModelConfig(
        vocab_size=int(need(K.VOCAB_SIZE)),
        hidden_size=int(need(K.EMBEDDING_LENGTH)),
        intermediate_size=int(need(K.FEED_FORWARD_LENGTH)),
        num_layers=int(need(K.BLOCK_COUNT)),
        num_heads=int(need(K.HEAD_COUNT)),
        num_kv_heads=int(need(K.HEAD_COUNT_KV)),
        head_dim=int(need(K.KEY_LENGTH)),
        rms_norm_eps=f32_value(need(K.RMS_EPS)),
        rope_theta=f32_value(need(K.ROPE_FREQ_BASE)),
        context_length=int(need(K.CONTEXT_LENGTH)),
        tie_embeddings=bool(need(K.TIE_EMBEDDINGS)),
        ffn_act=str(need(K.FFN_ACTIVATION)),
        sub_norms=bool(need(K.SUB_NORMS)),
        name=str(kv.get(K.NAME, "bitnet")),
    ).validate()


def tokenizer_from_kv(kv: dict) -> TokenizerData | None:
    if K.TOKENIZER_MODEL not in kv:
        return None
    return TokenizerData(
        model=kv[K.TOKENIZER_MODEL],
        tokens=list(kv.get(K.TOKENS, [])),
        token_types=[int(t) for t in kv.get(K.TOKEN_TYPE, [])],
        scores=[float(s) for s in kv[K.SCORES]] if K.SCORES in kv else None,
        merges=list(kv[K.MERGES]) if K.MERGES in kv else None,
        pre=kv.get(K.TOKENIZER_PRE),
        bos_id=kv.get(K.BOS_ID),
        eos_id=kv.get(K.EOS_ID),
        unk_id=kv.get(K.UNKNOWN_ID),
        pad_id=kv.get(K.PADDING_ID),
        add_bos=bool(kv.get(K.ADD_BOS, False)),
        add_eos=bool(kv.get(K.ADD_EOS, False)),
        add_space_prefix=kv.get(K.ADD_SPACE_PREFIX),
        chat_template=kv.get(K.CHAT_TEMPLATE),
    )


def float_tensor(g: GGUFFile, t: TensorInfo) -> np.ndarray:
    """A float tensor of the file (F32 / F16 / Q8_0 / Q6_K / Q4_0) as a new float32 array in numpy order (gguf-py's
    dequantization: the reference's weights, which the runtime's be_dequantize_row reproduces bit for bit)."""
    if t.ggml_type == GGMLQuantizationType.F32:
        return np.array(g.array(t), dtype=np.float32)
    if t.ggml_type == GGMLQuantizationType.F16:
        return g.array(t).astype(np.float32)
    return quants.dequantize(g.array(t), t.ggml_type).astype(np.float32, copy=False).reshape(t.shape)


def read_model(path) -> ModelSource:
    """A lazy ModelSource for a bitedge GGUF file. Another GGUF (llama.cpp, bitnet.cpp) is refused in one line: the
    importer (bitedge.convert.sources.open_source, bitedge convert) reads those."""
    g = open_gguf(path)
    path = os.fspath(path)
    if K.FORMAT_VERSION_KEY not in g.kv:
        arch = g.kv.get(K.ARCHITECTURE, "?")
        raise BitedgeError(f"{path}: not a bitedge GGUF file (no {K.FORMAT_VERSION_KEY}; architecture {arch}): "
                           f"import it with bitedge convert {path} -o MODEL.gguf")
    kv = g.kv
    version = int(kv[K.FORMAT_VERSION_KEY])
    if version > SUPPORTED_FORMAT_VERSION:
        raise BitedgeError(f"{path}: bitedge format version {version} is newer than this bitedge supports ({SUPPORTED_FORMAT_VERSION})")
    if kv.get(K.ARCHITECTURE) != ARCH:
        raise BitedgeError(f"{path}: {K.ARCHITECTURE} is {kv.get(K.ARCHITECTURE)!r}, expected {ARCH!r}")
    config = config_from_kv(kv, path)
    packing = get_packing(str(kv.get(K.WEIGHT_PACKING, "")))
    by_name = g.by_name

    def need_tensor(name: str):
        if name not in by_name:
            raise BitedgeError(f"{path}: missing tensor {name}")
        return by_name[name]

    tensors = {}
    for name, shape in config.tensor_shapes().items():
        t = need_tensor(name)
        if is_ternary(name):
            n, k = shape
            if packing.name == "tq2_0":
                if t.ggml_type != GGMLQuantizationType.TQ2_0 or t.shape != (n, k):
                    raise BitedgeError(f"{path}: tensor {name} is {t.type_name} {t.shape}, expected TQ2_0 {shape}")
                tensors[name] = tq2_loader(g, packing, t, n, k, name)
                continue
            if t.ggml_type != GGMLQuantizationType.I8:
                raise BitedgeError(f"{path}: tensor {name} is {t.type_name}, expected I8 (packed {packing.name})")
            if t.nbytes != packing.nbytes(n, k):
                raise BitedgeError(
                    f"{path}: tensor {name} has {t.nbytes} bytes, {packing.name} of shape {shape} needs {packing.nbytes(n, k)}"
                )
            scale = need_tensor(name.removesuffix(".weight") + ".scale")
            if scale.ggml_type != GGMLQuantizationType.F32 or scale.n_elements != 1:
                raise BitedgeError(f"{path}: tensor {scale.name} must be one F32 value")
            tensors[name] = packed_loader(g, packing, t, scale, n, k, name)
        else:
            if t.ggml_type not in FLOAT_TYPES:
                raise BitedgeError(f"{path}: tensor {name} has unsupported type {t.type_name}")
            if t.shape != tuple(shape):
                raise BitedgeError(f"{path}: tensor {name} has shape {t.shape}, the config implies {shape}")
            tensors[name] = float_loader(g, t)

    return ModelSource(
        config=config,
        tensors=tensors,
        tokenizer=tokenizer_from_kv(kv),
        source=str(kv.get(K.SOURCE, "")) or path,
        source_sha256=kv.get(K.SOURCE_SHA256),
        metadata={
            "gguf.path": path,
            K.WEIGHT_PACKING: packing.name,
            K.EMBED_TYPE: kv.get(K.EMBED_TYPE),
            K.FORMAT_VERSION_KEY: version,
            K.CONVERTER_VERSION: kv.get(K.CONVERTER_VERSION),
        },
    )


def packed_loader(g: GGUFFile, packing, t: TensorInfo, scale_t: TensorInfo, n: int, k: int, name: str):
    def load() -> Ternary:
        values = packing.unpack(g.raw(t), n, k, name)
        return Ternary(values, float(g.array(scale_t).reshape(-1)[0]))

    return load


def tq2_loader(g: GGUFFile, packing, t: TensorInfo, n: int, k: int, name: str):
    def load() -> Ternary:
        data = g.raw(t)
        return Ternary(packing.unpack(data, n, k, name), packing.scale(data, n, k, name))

    return load


def float_loader(g: GGUFFile, t: TensorInfo):
    return lambda: float_tensor(g, t)
