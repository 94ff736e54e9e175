"""Open any supported model for conversion: a Hugging Face directory or hub id, a GGUF file or an ONNX file."""

from __future__ import annotations

from pathlib import Path

from bitedge.errors import BitedgeError
from bitedge.model import ModelSource


def open_source(spec: str, *, revision: str | None = None, ternary_check: bool = True) -> ModelSource:
    """Dispatch on what `spec` is. A path that does not exist and looks like 'owner/name' is a hub id."""
    path = Path(spec).expanduser()
    if path.is_dir():
        from bitedge.convert.hf import load_hf

        return load_hf(str(path), revision=revision, ternary_check=ternary_check)
    if path.is_file():
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"GGUF":  # bitedge's own, or llama.cpp / bitnet.cpp's (the importer hands ours to gguf_read)
            from bitedge.convert.gguf_foreign import read_foreign

            return read_foreign(path)
        if path.suffix.lower() == ".onnx":
            from bitedge.convert.onnx_import import load_onnx

            return load_onnx(path)
        raise BitedgeError(f"{spec}: not a GGUF file, an ONNX file or a checkpoint directory")
    if path.suffix.lower() in (".gguf", ".onnx", ".safetensors") or spec.startswith((".", "/", "~")):
        raise BitedgeError(f"{spec}: no such file or directory")
    if spec.count("/") == 1 and all(spec.split("/")):
        from bitedge.convert.hf import load_hf

        return load_hf(spec, revision=revision, ternary_check=ternary_check)
    raise BitedgeError(f"{spec}: no such file or directory, and not a hub id of the form owner/name")
