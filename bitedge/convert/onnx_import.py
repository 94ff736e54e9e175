"""Import a BitNet model exported to ONNX (torch.onnx.export) as a ModelSource.

The weights are the graph's initializers (inline or external data, read lazily one tensor at a time).  Exporters
rename and fold them: the dynamo exporter turns every ``nn.Linear`` weight W into a constant W^T named ``val_N``
and merges initializers with identical contents; the TorchScript exporter with constant folding names them
``onnx::MatMul_N`` (also W^T); without folding the weight keeps its name and feeds a Transpose node.  So tensors
are identified by how the graph uses them, in graph (= execution) order, not by name:

- the data input of the ``Gather`` that embeds token ids is ``token_embd``;
- the 2-D weights of ``MatMul`` / ``Gemm`` nodes are, per layer, q, k, v, o, gate, up, down (transformers'
  BitNetAttention / BitNetMLP evaluate them in that order), then the LM head.  A weight fed to MatMul directly
  is W^T (x @ W^T); through a Transpose, or to a Gemm with transB=1, it is W;
- the 1-D weights of ``Mul`` nodes (RMSNorm's ``weight * x``) are, per layer, attn_norm, attn_sub_norm, ffn_norm,
  ffn_sub_norm (the sub-norms only if the config has them), then output_norm.
Every slot's shape is checked against the config, and an initializer whose name still says which parameter it is
(``...model.layers.3.mlp.up_proj.weight``) must agree with its slot, so a reordered graph fails loudly instead of
loading wrong weights.  Not handled (a clear error says so): weights stored as Constant nodes, fused QKV / gate-up
matmuls, quantized (QDQ / MatMulInteger) graphs.

The config comes from the ``bitedge.config`` metadata property (JSON of ModelConfig's fields) that
``export_onnx`` below writes at export, else from a Hugging Face ``config.json`` next to the .onnx file (as
optimum exports lay it out), else from ``config=``.  Heads and head_dim cannot be inferred from shapes alone.

Linear weights must be ternary times one scale; a tensor that is not is ternarized with the absmean rule
(transformers' WeightQuant) and listed in ``metadata["onnx.ternarized"]`` with a note.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, fields

import numpy as np

from bitedge.formats.ternary import exact_ternary, ternarize
from bitedge.errors import BitedgeError
from bitedge.model import ModelConfig, ModelSource, Ternary, sha256_file

METADATA_KEY = "bitedge.config"
LINEAR_ROLES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
PASS_THROUGH = ("Identity", "Cast")
HF_ROLE = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.attn_sub_norm": "attn_sub_norm", "mlp.ffn_sub_norm": "ffn_sub_norm",
}


# ---------------------------------------------------------------------------------------------- export helper


def export_onnx(model, path, example_ids=None, config: ModelConfig | None = None, *, dynamo: bool = True, **export_kwargs) -> None:
    """Export a transformers BitNetForCausalLM (or a module called the same way, with its parameter names) to ``path``.

    ``model(input_ids=..., use_cache=False).logits`` is what gets exported.  Writes the model's ModelConfig into the
    ``bitedge.config`` metadata property so load_onnx needs nothing else.  ``export_kwargs`` go to torch.onnx.export.
    """
    import onnx
    import torch

    if config is None:
        config = config_of_hf_model(model)

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.m = inner

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False).logits

    ids = example_ids if example_ids is not None else torch.zeros((1, 4), dtype=torch.long)
    path = os.fspath(path)
    torch.onnx.export(
        Logits(model).eval(), (ids,), path, dynamo=dynamo, input_names=["input_ids"], output_names=["logits"], **export_kwargs
    )
    proto = onnx.load(path, load_external_data=False)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(asdict(config))
    onnx.save_model(proto, path)


def config_of_hf_model(model) -> ModelConfig:
    from bitedge.convert.hf import detect_family, model_config

    cfg = model.config.to_dict()
    family = detect_family(cfg)
    return model_config(cfg, family, {n for n, _ in model.named_parameters()})


# ---------------------------------------------------------------------------------------------- config


def config_from_metadata(proto, path: str) -> ModelConfig | None:
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        return None
    try:
        raw = json.loads(props[METADATA_KEY])
        known = {f.name for f in fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in raw.items() if k in known}).validate()
    except (ValueError, TypeError) as e:
        raise BitedgeError(f"{path}: bad {METADATA_KEY} metadata ({e})") from None


def config_from_hf_json(directory: str, proto) -> ModelConfig | None:
    cfg_path = os.path.join(directory, "config.json")
    if not os.path.exists(cfg_path):
        return None
    from bitedge.convert.hf import detect_family, model_config, read_json

    cfg = read_json(cfg_path)
    names = {i.name for i in proto.graph.initializer}
    return model_config(cfg, detect_family(cfg), names)


# ---------------------------------------------------------------------------------------------- graph walking


class Graph:
    """The initializers a graph's nodes consume, looked through Identity/Cast/Transpose."""

    def __init__(self, proto):
        self.inits = {i.name: i for i in proto.graph.initializer}
        self.producer = {out: node for node in proto.graph.node for out in node.output}
        self.nodes = list(proto.graph.node)
        constants = [n for n in self.nodes if n.op_type == "Constant"]
        self.has_constant_nodes = bool(constants)

    def source(self, name: str) -> tuple[str, bool] | None:
        """(initializer name, transposed) behind a node input, or None if it is not a (transposed) initializer."""
        transposed = False
        for _ in range(8):
            if name in self.inits:
                return name, transposed
            node = self.producer.get(name)
            if node is None:
                return None
            if node.op_type in PASS_THROUGH:
                name = node.input[0]
            elif node.op_type == "Transpose":
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [1, 0])
                if perm != [1, 0]:
                    return None
                transposed = not transposed
                name = node.input[0]
            else:
                return None
        return None

    def dims(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.inits[name].dims)

    def uses(self) -> tuple[list, list, list]:
        """(gather data, matmul weights, mul vectors): lists of (initializer, weight_is_W) in graph order."""
        gathers, matmuls, muls = [], [], []
        for node in self.nodes:
            if node.op_type == "Gather":
                src = self.source(node.input[0])
                if src and len(self.dims(src[0])) == 2:
                    gathers.append((src[0], not src[1]))  # Gather rows of the [vocab, hidden] table
            elif node.op_type in ("MatMul", "Gemm"):
                src = self.source(node.input[1])
                if src and len(self.dims(src[0])) == 2:
                    init, transposed = src
                    trans_b = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
                    # MatMul(x, B): B = W^T unless it came through a Transpose (or Gemm transB=1)
                    matmuls.append((init, transposed != trans_b))
            elif node.op_type == "Mul":
                for inp in node.input:
                    src = self.source(inp)
                    if src and len(self.dims(src[0])) == 1 and self.dims(src[0])[0] > 1:
                        muls.append((src[0], True))
        return gathers, matmuls, muls


def hf_slot_of_name(name: str) -> str | None:
    """'...model.layers.3.mlp.up_proj.weight' -> 'blk.3.ffn_up'; None if the name does not say."""
    m = re.search(r"model\.layers\.(\d+)\.(.+)\.weight$", name)
    if m and m.group(2) in HF_ROLE:
        return f"blk.{m.group(1)}.{HF_ROLE[m.group(2)]}"
    if name.endswith("model.norm.weight"):
        return "output_norm"
    if name.endswith("embed_tokens.weight"):
        return "token_embd"
    return None


def assign(slots: list[str], used: list, what: str, path: str) -> dict[str, tuple[str, bool]]:
    if len(used) != len(slots):
        raise BitedgeError(
            f"{path}: the graph has {len(used)} {what}, the config implies {len(slots)} "
            "(fused or reordered weights are not supported)"
        )
    out = {}
    for slot, (init, is_w) in zip(slots, used):
        named = hf_slot_of_name(init)
        if named is not None and named != slot and not (slot == "output" and named == "token_embd"):
            raise BitedgeError(f"{path}: initializer {init} is used where {slot} is expected (reordered graph?)")
        out[slot] = (init, is_w)
    return out


# ---------------------------------------------------------------------------------------------- loading


def load_onnx(path, *, config: ModelConfig | None = None) -> ModelSource:
    """A lazy ModelSource for a BitNet ONNX export (see the module docstring)."""
    import onnx

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BitedgeError(f"{path}: no such file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as e:  # DecodeError and friends: one line
        raise BitedgeError(f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    directory = os.path.dirname(os.path.abspath(path))
    config = config or config_from_metadata(proto, path) or config_from_hf_json(directory, proto)
    if config is None:
        raise BitedgeError(
            f"{path}: no model config: export with bitedge's export_onnx (writes {METADATA_KEY} metadata), "
            "put the Hugging Face config.json next to the file, or pass config="
        )
    graph = Graph(proto)
    gathers, matmuls, muls = graph.uses()
    if not gathers:
        hint = " (weights stored as Constant nodes are not supported)" if graph.has_constant_nodes else ""
        raise BitedgeError(f"{path}: no token embedding (a Gather on a 2-D initializer) in the graph{hint}")

    linear_slots = [f"blk.{i}.{r}" for i in range(config.num_layers) for r in LINEAR_ROLES] + ["output"]
    norm_roles = ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm") if config.sub_norms else ("attn_norm", "ffn_norm")
    norm_slots = [f"blk.{i}.{r}" for i in range(config.num_layers) for r in norm_roles] + ["output_norm"]
    where = assign(["token_embd"], gathers[:1], "embedding gathers", path)
    where.update(assign(linear_slots, matmuls, "weight matmuls", path))
    where.update(assign(norm_slots, muls, "norm weights", path))

    ternarized: list[str] = []
    loaders: dict[str, Callable] = {}
    for name, shape in config.tensor_shapes().items():
        slot = name.removesuffix(".weight")
        init, is_w = where[slot]
        got = graph.dims(init) if is_w else graph.dims(init)[::-1]
        if tuple(got) != tuple(shape):
            raise BitedgeError(f"{path}: {init} used as {name} has shape {tuple(got)}, expected {shape}")
        read = init_reader(graph.inits[init], directory, transpose=not is_w)
        if slot.startswith("blk.") and slot.split(".")[-1] in LINEAR_ROLES:
            loaders[name] = ternary_loader(read, name, ternarized)
        else:
            loaders[name] = read
    # Tied: the LM head matmul's weight is the embedding (often a folded, transposed copy of it); its shape is
    # checked here, its values are not compared (that would read the embedding twice).
    head, head_is_w = where["output"]
    head_shape = graph.dims(head) if head_is_w else graph.dims(head)[::-1]
    if tuple(head_shape) != (config.vocab_size, config.hidden_size):
        raise BitedgeError(f"{path}: the LM head {head} has shape {tuple(head_shape)}, expected {(config.vocab_size, config.hidden_size)}")

    return ModelSource(
        config=config,
        tensors=loaders,
        tokenizer=tokenizer_next_to(directory, config),
        source=path,
        source_sha256=sha256_file(path),
        metadata={"onnx.ternarized": ternarized, "onnx.opset": [o.version for o in proto.opset_import]},
    )


def init_reader(tensor, directory: str, transpose: bool):
    def read() -> np.ndarray:
        from onnx import external_data_helper, numpy_helper

        t = tensor
        if external_data_helper.uses_external_data(t):
            t = type(tensor)()
            t.CopyFrom(tensor)
            try:
                external_data_helper.load_external_data_for_tensor(t, directory)
            except (OSError, ValueError) as e:
                raise BitedgeError(f"{tensor.name}: cannot read external data ({e})") from None
        arr = numpy_helper.to_array(t)
        if not np.issubdtype(arr.dtype, np.floating):
            raise BitedgeError(f"{tensor.name}: expected a float tensor, got {arr.dtype}")
        arr = arr.astype(np.float32)
        return np.ascontiguousarray(arr.T) if transpose else arr

    return read


def ternary_loader(read, name: str, ternarized: list[str]):
    def load() -> Ternary:
        w = read()
        exact = exact_ternary(w)
        if exact is not None:
            return exact
        if name not in ternarized:
            ternarized.append(name)  # metadata["onnx.ternarized"]: lossy, as transformers' WeightQuant
        return ternarize(w)

    return load


def tokenizer_next_to(directory: str, config: ModelConfig):
    if not any(os.path.exists(os.path.join(directory, f)) for f in ("tokenizer.json", "tokenizer.model")):
        return None
    from bitedge.convert.hf_tokenizer import load_tokenizer

    cfg_path = os.path.join(directory, "config.json")
    cfg = json.load(open(cfg_path, encoding="utf-8")) if os.path.exists(cfg_path) else {}
    return load_tokenizer(directory, cfg, config.vocab_size)
