"""``bitedge inspect``: what is in any GGUF file (bitedge, llama.cpp, bitnet.cpp), without loading tensor data.

``inspect_file(path)`` returns a JSON-friendly dict; ``format_inspect(d)`` renders it for humans.  Bits per weight
of bitedge's packed ternary tensors (GGML type I8, raw bytes) are computed from the logical shape the config
implies (docs/format.md: q/k/v/gate/up have K = hidden size, attn_output K = heads * head_dim, ffn_down K = FFN
width), not from the byte count.
"""

from __future__ import annotations

import os

from bitedge.convert.gguf_foreign_tensors import I2_S, open_gguf_any
from bitedge.model import TERNARY_ROLES, tensor_role

BITNET_CPP_ARCHS = ("bitnet-25", "bitnet-b1.58")
FORK_ONLY_TYPES = ("I2_S", "I8_S", "TL1", "TL2")


def ternary_logical_shape(name: str, dims: dict) -> tuple[int, int] | None:
    """(N, K) of a bitedge ternary matrix from the architecture keys, or None if the keys are incomplete."""
    try:
        h = int(dims["embedding_length"])
        f = int(dims["feed_forward_length"])
        heads = int(dims["attention.head_count"])
        kv_heads = int(dims.get("attention.head_count_kv", heads))
        head_dim = int(dims.get("attention.key_length") or h // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    q, kv = heads * head_dim, kv_heads * head_dim
    return {
        "attn_q": (q, h),
        "attn_k": (kv, h),
        "attn_v": (kv, h),
        "attn_output": (h, q),
        "ffn_gate": (f, h),
        "ffn_up": (f, h),
        "ffn_down": (h, f),
    }.get(tensor_role(name))


def detect_dialect(kv: dict, type_names: set[str]) -> str:
    if "bitedge.format_version" in kv:
        return "bitedge"
    if kv.get("general.architecture") in BITNET_CPP_ARCHS or type_names & set(FORK_ONLY_TYPES):
        return "bitnet.cpp"
    return "llama.cpp"


def tokenizer_summary(kv: dict) -> dict | None:
    if "tokenizer.ggml.model" not in kv:
        return None
    g = "tokenizer.ggml."
    tokens = kv.get(g + "tokens") or []
    return {
        "model": kv.get(g + "model"),
        "pre": kv.get(g + "pre"),
        "vocab_size": len(tokens),
        "bos_id": kv.get(g + "bos_token_id"),
        "eos_id": kv.get(g + "eos_token_id"),
        "add_bos": kv.get(g + "add_bos_token"),
        "merges": len(kv.get(g + "merges") or []),
        "has_chat_template": bool(kv.get("tokenizer.chat_template")),
    }


def is_ternary_name(name: str) -> bool:
    return name.startswith("blk.") and name.endswith(".weight") and tensor_role(name) in TERNARY_ROLES


# Types a BitNet matrix is stored as with its ternary values intact: packed ternary types (bitedge's I8 bytes,
# llama.cpp's TQ*, bitnet.cpp's, ik_llama.cpp's) and unquantized floats. Anything else (Q4_0, IQ2_XXS, a type
# this reader does not know) is not ternary, whatever the tensor's name.
TERNARY_TYPES = {"I8", "TQ1_0", "TQ2_0", "I2_S", "TL1", "TL2", "IQ1_BN", "IQ2_BN", "IQ2_BN_R4", "F32", "F16", "BF16"}


def inspect_file(path) -> dict:
    """Architecture, dims, tensor table, tokenizer summary, bitedge keys and sizes of a GGUF file."""
    path = os.fspath(path)
    gguf_file = open_gguf_any(path)
    kv = gguf_file.kv
    arch = kv.get("general.architecture")
    prefix = f"{arch}."
    dims = {k[len(prefix):]: v for k, v in kv.items() if arch and k.startswith(prefix) and not isinstance(v, list)}
    type_names = {t.type_name for t in gguf_file.tensors}
    dialect = detect_dialect(kv, type_names)

    tensors = []
    ternary = {"tensors": 0, "params": 0, "bytes": 0}
    not_ternary: dict[str, int] = {}
    for t in gguf_file.tensors:
        logical = tuple(t.shape)
        if dialect == "bitedge" and t.type_name == "I8" and is_ternary_name(t.name):
            logical = ternary_logical_shape(t.name, dims) or logical
        n = 1
        for d in logical:
            n *= int(d)
        row = {
            "name": t.name,
            "type": t.type_name,
            "type_id": t.type_id,
            "shape": list(t.shape),
            "logical_shape": list(logical),
            "params": n,
            "bytes": t.n_bytes,
            "bits_per_weight": round(8.0 * t.n_bytes / n, 4) if n else None,
            "offset": t.data_offset,
        }
        tensors.append(row)
        if is_ternary_name(t.name):
            if t.type_name not in TERNARY_TYPES:
                not_ternary.setdefault(t.type_name, 0)
                not_ternary[t.type_name] += 1
                continue
            ternary["tensors"] += 1
            ternary["params"] += n
            ternary["bytes"] += t.n_bytes
    ternary["bits_per_weight"] = round(8.0 * ternary["bytes"] / ternary["params"], 4) if ternary["params"] else None

    notes = []
    fork = sorted(type_names & set(FORK_ONLY_TYPES))
    if fork:
        notes.append(
            f"{', '.join(fork)} tensors (bitnet.cpp's ggml type ids, e.g. I2_S = {I2_S}): only bitnet.cpp loads this file; "
            "upstream llama.cpp, llamafile and LM Studio cannot"
        )
    if not_ternary:
        kinds = ", ".join(f"{n} {name}" for name, n in sorted(not_ternary.items()))
        notes.append(f"not ternary: the layers' matrices include {kinds} tensors (a quantization that is not "
                     "ternary, or a type this reader does not know): not counted as ternary")
    if dialect == "bitedge":
        notes.append(f"bitedge format {kv.get('bitedge.format_version')}: ternary matrices packed as {kv.get('bitedge.weight_packing')}")

    return {
        "path": path,
        "file_bytes": os.path.getsize(path),
        "gguf_version": gguf_file.version,
        "alignment": gguf_file.alignment,
        "dialect": dialect,
        "architecture": arch,
        "name": kv.get("general.name"),
        "general": {k: v for k, v in kv.items() if k.startswith("general.") and not isinstance(v, list)},
        "dims": dims,
        "tokenizer": tokenizer_summary(kv),
        "bitedge": {k: v for k, v in kv.items() if k.startswith("bitedge.")},
        "n_tensors": len(tensors),
        "n_params": sum(r["params"] for r in tensors),
        "tensor_bytes": sum(r["bytes"] for r in tensors),
        "ternary": ternary,
        "tensors": tensors,
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------------- text


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024.0
    return f"{n} B"


def format_inspect(d: dict) -> str:
    """A human-readable report of inspect_file's dict (plain text, aligned columns)."""
    lines = [
        f"file        {d['path']}  ({human_bytes(d['file_bytes'])}, GGUF v{d['gguf_version']}, alignment {d['alignment']})",
        f"format      {d['dialect']}" + (f" v{d['bitedge'].get('bitedge.format_version')}" if d["dialect"] == "bitedge" else ""),
        f"arch        {d['architecture']}    name {d['name']}",
    ]
    if d["dims"]:
        dims = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d["dims"].items())
        lines.append(f"dims        {dims}")
    tok = d["tokenizer"]
    if tok:
        lines.append(
            f"tokenizer   {tok['model']}" + (f" ({tok['pre']})" if tok["pre"] else "")
            + f", {tok['vocab_size']} tokens, bos {tok['bos_id']}, eos {tok['eos_id']}, "
            + f"{tok['merges']} merges, chat template: {'yes' if tok['has_chat_template'] else 'no'}"
        )
    else:
        lines.append("tokenizer   none")
    for key, value in d["bitedge"].items():
        lines.append(f"{key:<34} {value}")
    t = d["ternary"]
    if t["params"]:
        lines.append(
            f"ternary     {t['tensors']} matrices, {t['params']:,} weights in {human_bytes(t['bytes'])} "
            f"({t['bits_per_weight']:.4g} bits per weight)"
        )
    lines.append(f"total       {d['n_tensors']} tensors, {d['n_params']:,} weights, {human_bytes(d['tensor_bytes'])} of tensor data")
    for note in d["notes"]:
        lines.append(f"note        {note}")
    lines.append("")
    header = ("name", "type", "shape", "bytes", "bpw")
    rows = [
        (
            r["name"],
            r["type"],
            "x".join(str(x) for x in r["logical_shape"]) + ("" if r["logical_shape"] == r["shape"] else " (packed)"),
            f"{r['bytes']:,}",
            "" if r["bits_per_weight"] is None else f"{r['bits_per_weight']:.4g}",
        )
        for r in d["tensors"]
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    right = (False, False, False, True, True)
    for row in (header, *rows):
        cells = [str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(row, widths, right)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
