"""Import Hugging Face BitNet b1.58 checkpoints as a ModelSource (lazy: one tensor at a time).

Supported families (docs/conversion.md says how each stores its weights and how it was verified):

- ``bitnet``: BitNetForCausalLM (microsoft/bitnet-b1.58-2B-4T and -bf16).  relu2 FFN, attn/ffn sub-norms.
  Packed uint8 weights + weight_scale (quantization_config.linear_class "bitlinear": W_eff = T / weight_scale;
  "autobitlinear": W_eff = T * weight_scale) or bf16 master weights ternarized on load (quantization_mode
  "online", as transformers' WeightQuant does in every forward).
- ``1bitllm``: 1bitLLM/bitnet_b1_58-* (architectures ["BitnetForCausalLM"], llama config).  silu FFN,
  sub-norms named ``inner_attn_ln`` / ``ffn_layernorm``, fp weights ternarized on load.
- ``llama-bitnet``: LlamaForCausalLM with quantization_config.quant_method "bitnet" (HF1BitLLM Llama3-8B-1.58,
  tiiuae Falcon3-*-1.58bit).  silu, no sub-norms, packed uint8 + weight_scale.
- a plain LlamaForCausalLM / BitNetForCausalLM without a bitnet quantization_config is accepted only if its
  linear weights already are ternary times one scale per tensor (e.g. "unpacked" ternary checkpoints);
  otherwise it is refused, saying how far from ternary it is (``ternary_check=False``, the CLI's --force-ternarize, ternarizes anyway).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re

import numpy as np

from bitedge.convert.hf_safetensors import TensorEntry, index_safetensors, read_tensor, torch_bin_tensors
from bitedge.convert.hf_tokenizer import load_tokenizer
from bitedge.formats.ternary import exact_ternary, ternarize, ternary_distance
from bitedge.errors import BitedgeError
from bitedge.model import ModelConfig, ModelSource, Ternary, is_ternary, sha256_file

SUPPORTED = (
    "BitNetForCausalLM (model_type bitnet)",
    "BitnetForCausalLM (1bitLLM, llama config)",
    "LlamaForCausalLM with quantization_config.quant_method bitnet",
)
HUB_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja"]

GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.attn_sub_norm": "attn_sub_norm",
    "self_attn.inner_attn_ln": "attn_sub_norm",  # 1bitLLM's name (llama.cpp tensor_mapping agrees)
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "mlp.ffn_sub_norm": "ffn_sub_norm",
    "mlp.ffn_layernorm": "ffn_sub_norm",  # 1bitLLM
}
LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|weight_scale|bias)$")
IGNORED_RE = re.compile(r".*rotary_emb\.inv_freq$")
PACKED_PER_BYTE = 4


# ---------------------------------------------------------------------------------------------- locating


def resolve(path_or_hub_id: str, revision: str | None = None) -> str:
    """A local checkpoint directory, downloading a hub id with huggingface_hub if it is not a local path."""
    path = os.path.expanduser(str(path_or_hub_id))
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise BitedgeError(f"{path}: expected a checkpoint directory (config.json + *.safetensors), got a file")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", path) or path.startswith((".", "/")):
        raise BitedgeError(f"{path}: no such checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id=path, revision=revision, allow_patterns=HUB_FILES)
    except Exception as e:  # network, auth, missing repo: all one line for the user
        raise BitedgeError(f"{path}: not a local directory, and cannot download it from the Hugging Face hub ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BitedgeError(f"{os.path.dirname(path) or '.'}: missing {os.path.basename(path)}") from None
    except (OSError, ValueError) as e:
        raise BitedgeError(f"{path}: cannot parse JSON ({e})") from None
    if not isinstance(data, dict):
        raise BitedgeError(f"{path}: expected a JSON object")
    return data


def weight_files(directory: str) -> list[str]:
    """The safetensors shards (per the index when there is one), or a pytorch_model.bin."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise BitedgeError(f"{index}: no weight_map")
        files = sorted(set(weight_map.values()))
        for name in files:
            if not os.path.exists(os.path.join(directory, name)):
                raise BitedgeError(f"{directory}: missing weight shard {name} (listed in model.safetensors.index.json)")
        return [os.path.join(directory, f) for f in files]
    files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if files:
        return files
    bin_path = os.path.join(directory, "pytorch_model.bin")
    if os.path.exists(bin_path):
        return [bin_path]
    raise BitedgeError(f"{directory}: missing weights (no *.safetensors, no pytorch_model.bin)")


def weights_sha256(files: list[str]) -> str:
    """sha256 of the one weights file, or of the sorted "name sha" lines of several."""
    if len(files) == 1:
        return sha256_file(files[0])
    lines = sorted(f"{os.path.basename(f)} {sha256_file(f)}" for f in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- config


def detect_family(cfg: dict) -> str:
    """'bitnet', '1bitllm', 'llama-bitnet' or 'plain' (linear weights must already be ternary)."""
    archs = cfg.get("architectures") or []
    model_type = cfg.get("model_type")
    quant = cfg.get("quantization_config") or {}
    if "BitnetForCausalLM" in archs:  # 1bitLLM's spelling, loaded with their remote code
        return "1bitllm"
    if model_type == "bitnet" or "BitNetForCausalLM" in archs:
        return "bitnet" if quant.get("quant_method") == "bitnet" else "bitnet-plain"
    if model_type == "llama" or "LlamaForCausalLM" in archs:
        return "llama-bitnet" if quant.get("quant_method") == "bitnet" else "plain"
    name = ", ".join(archs) or str(model_type)
    raise BitedgeError(f"unsupported architecture {name} (supported: {'; '.join(SUPPORTED)})")


def rope_theta(cfg: dict, default: float) -> float:
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    for block in (params, scaling):
        kind = block.get("rope_type", block.get("type", "default"))
        if kind not in ("default", None):
            raise BitedgeError(f"unsupported RoPE type {kind!r} (only the default NeoX RoPE is supported)")
    theta = cfg.get("rope_theta", params.get("rope_theta", default))
    return float(theta)


def model_config(cfg: dict, family: str, names: set[str]) -> ModelConfig:
    try:
        return _model_config(cfg, family, names)
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, OverflowError) as e:
        raise BitedgeError(f"config.json: a value of the wrong type or out of range ({e})") from None


def _model_config(cfg: dict, family: str, names: set[str]) -> ModelConfig:
    def need(key):
        if key not in cfg:
            raise BitedgeError(f"config.json: missing {key}")
        return cfg[key]

    hidden, heads = int(need("hidden_size")), int(need("num_attention_heads"))
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    quant = cfg.get("quantization_config") or {}
    if quant.get("use_rms_norm"):
        raise BitedgeError("quantization_config.use_rms_norm is not supported (an RMSNorm inside every linear)")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise BitedgeError("linear biases are not supported (attention_bias / mlp_bias is true)")
    act = cfg.get("hidden_act", "relu2" if family.startswith("bitnet") else "silu")
    if act not in ("relu2", "silu"):
        raise BitedgeError(f"unsupported hidden_act {act!r} (supported: relu2, silu)")
    if "tie_word_embeddings" in cfg:
        tied = bool(cfg["tie_word_embeddings"])
    else:  # both BitNetConfig and LlamaConfig default to False, but an absent lm_head can only mean tied
        tied = "lm_head.weight" not in names
    sub_norms = family in ("bitnet", "bitnet-plain", "1bitllm")
    if sub_norms and heads * head_dim != hidden:
        raise BitedgeError(f"sub-norms need heads * head_dim == hidden_size, got {heads} * {head_dim} != {hidden}")
    return ModelConfig(
        vocab_size=int(need("vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(need("intermediate_size")),
        num_layers=int(need("num_hidden_layers")),
        num_heads=heads,
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6 if family == "1bitllm" else 1e-5)),
        rope_theta=rope_theta(cfg, 500000.0 if family.startswith("bitnet") else 10000.0),
        context_length=int(cfg.get("max_position_embeddings", 2048)),
        tie_embeddings=tied,
        ffn_act=act,
        sub_norms=sub_norms,
        name=str(cfg.get("_name_or_path") or cfg.get("model_type") or "bitnet").rstrip("/").split("/")[-1] or "bitnet",
    ).validate()


# ---------------------------------------------------------------------------------------------- tensors


def canonical_name(hf_name: str) -> tuple[str, str] | None:
    """('blk.3.attn_q', 'weight'|'weight_scale'|'bias') or (global name, 'weight'); None if unknown."""
    if hf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[hf_name].removesuffix(".weight"), "weight"
    m = LAYER_RE.fullmatch(hf_name)
    if m and m.group(2) in LAYER_NAMES:
        return f"blk.{m.group(1)}.{LAYER_NAMES[m.group(2)]}", m.group(3)
    return None


def unpack_hf_ternary(packed: np.ndarray, name: str) -> np.ndarray:
    """transformers' packed layout: uint8 [out/4, in]; row i*(out/4)+j is ((packed[j] >> 2i) & 3) - 1."""
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise BitedgeError(f"{name}: packed ternary weight must be a 2-D uint8 tensor, got {packed.dtype} {packed.shape}")
    codes = np.stack([(packed >> (2 * i)) & 3 for i in range(PACKED_PER_BYTE)])  # [4, out/4, in]
    if (codes == 3).any():
        raise BitedgeError(f"{name}: packed ternary weight holds the invalid 2-bit code 3")
    return (codes.reshape(-1, packed.shape[1]).astype(np.int8) - 1)


class WeightReader:
    """Turns the HF tensors of one linear layer into a Ternary, per the checkpoint's storage scheme."""

    def __init__(self, family: str, quant: dict, ternary_check: bool, load):
        self.family = family
        self.linear_class = quant.get("linear_class", "bitlinear")
        self.mode = quant.get("quantization_mode", "offline")
        self.ternary_check = ternary_check
        self.load = load  # hf name -> np.ndarray

    def ternary(self, name: str, hf_weight: str, hf_scale: str | None, rows: int) -> Ternary:
        w = self.load(hf_weight)
        if w.dtype == np.uint8:
            if hf_scale is None:
                raise BitedgeError(f"missing tensor {hf_weight.removesuffix('.weight')}.weight_scale (packed weight without scale)")
            if w.shape[0] * PACKED_PER_BYTE != rows:
                raise BitedgeError(f"{hf_weight}: packed shape {w.shape} does not hold {rows} rows")
            return Ternary(unpack_hf_ternary(w, hf_weight), self.scale(hf_scale, hf_weight))
        if hf_scale is not None:  # offline float storage of T (autobitlinear offline, unpacked)
            values = np.rint(w)
            if not np.array_equal(values, w) or np.abs(values).max(initial=0) > 1:
                raise BitedgeError(f"{hf_weight}: has a weight_scale but its values are not in {{-1, 0, 1}}")
            return Ternary(values.astype(np.int8), self.scale(hf_scale, hf_weight))
        if self.family in ("bitnet", "1bitllm"):  # master weights, ternarized as WeightQuant does online
            return ternarize(w)
        exact = exact_ternary(w)
        if exact is not None:
            return exact
        if not self.ternary_check:
            return ternarize(w)
        d = ternary_distance(w)
        raise BitedgeError(
            f"checkpoint is not ternary: tensor {hf_weight} has {d.distinct_abs} distinct |values| "
            f"(max relative error {d.max_rel_error:.3g} of the best ternary fit); "
            "convert with --force-ternarize to ternarize it anyway (lossy: the model changes)"
        )

    def scale(self, hf_scale: str, hf_weight: str) -> float:
        s = np.asarray(self.load(hf_scale), dtype=np.float32).reshape(-1)
        if s.size != 1 or not np.isfinite(s[0]) or s[0] == 0:
            raise BitedgeError(f"{hf_scale}: expected one finite nonzero scale, got shape {s.shape}")
        if self.linear_class == "autobitlinear":
            return float(s[0])  # AutoBitLinear: y = F.linear(x, T) * weight_scale
        return float(np.float32(1.0) / s[0])  # BitLinear: y = F.linear(x, T) / weight_scale


def load_hf(path_or_hub_id, *, revision: str | None = None, ternary_check: bool = True) -> ModelSource:
    directory = resolve(str(path_or_hub_id), revision)
    cfg = read_json(os.path.join(directory, "config.json"))
    family = detect_family(cfg)
    files = weight_files(directory)
    if files[0].endswith(".bin"):
        loaders = torch_bin_tensors(files[0])
        entries: dict[str, TensorEntry] = {}
        load = lambda key: loaders[key]()  # noqa: E731
        names = set(loaders)
    else:
        entries = index_safetensors(files)
        load = lambda key: read_tensor(entries[key])  # noqa: E731
        names = set(entries)
    config = model_config(cfg, family, names)

    hf_of: dict[str, dict[str, str]] = {}  # canonical base name -> {"weight": hf, "weight_scale": hf}
    for hf_name in sorted(names):
        if IGNORED_RE.fullmatch(hf_name):
            continue
        mapped = canonical_name(hf_name)
        if mapped is None:
            raise BitedgeError(f"{directory}: unexpected tensor {hf_name} in a {family} checkpoint")
        base, kind = mapped
        if kind == "bias":
            raise BitedgeError(f"{hf_name}: linear biases are not supported")
        if base == "output" and config.tie_embeddings:
            continue  # tied: logits use token_embd, a stored copy of lm_head is redundant
        hf_of.setdefault(base, {})[kind] = hf_name

    quant = cfg.get("quantization_config") or {}
    reader = WeightReader(family, quant, ternary_check, load)
    shapes = config.tensor_shapes()
    tensors = {}
    for name, shape in shapes.items():
        base = name.removesuffix(".weight")
        hf = hf_of.get(base, {})
        if "weight" not in hf:
            raise BitedgeError(f"{directory}: missing tensor {hf_name_for(name, family)} (for {name})")
        if is_ternary(name):
            tensors[name] = ternary_loader(reader, name, hf["weight"], hf.get("weight_scale"), shape[0])
        else:
            tensors[name] = float_loader(load, hf["weight"])
    for base in hf_of:
        if base + ".weight" not in shapes:
            raise BitedgeError(f"{directory}: unexpected tensor {hf_of[base]['weight']} for this config")

    source = ModelSource(
        config=config,
        tensors=tensors,
        tokenizer=load_tokenizer(directory, cfg, config.vocab_size),
        source=str(path_or_hub_id),
        source_sha256=weights_sha256(files),
        metadata={"hf.family": family, "hf.architectures": cfg.get("architectures") or [], "hf.quantization": quant},
    )
    if family in ("plain", "bitnet-plain") and ternary_check:
        tensors["blk.0.attn_q.weight"]()  # fail now, not half-way through a conversion
    return source


def hf_name_for(name: str, family: str = "bitnet") -> str:
    """The HF tensor name a canonical name comes from (for error messages)."""
    base = name.removesuffix(".weight")
    inverse = {v.removesuffix(".weight"): k for k, v in GLOBAL_NAMES.items()}
    if base in inverse:
        return inverse[base]
    _, layer, role = base.split(".")
    subs = [k for k, v in LAYER_NAMES.items() if v == role]
    sub = subs[-1] if family == "1bitllm" else subs[0]  # 1bitLLM's sub-norm names are listed second
    return f"model.layers.{layer}.{sub}.weight"


def ternary_loader(reader: WeightReader, name: str, hf_weight: str, hf_scale: str | None, rows: int):
    return lambda: reader.ternary(name, hf_weight, hf_scale, rows)


def float_loader(load, hf_name: str):
    def read() -> np.ndarray:
        w = load(hf_name)
        if w.dtype != np.float32:
            raise BitedgeError(f"{hf_name}: expected a float tensor, got {w.dtype}")
        return w

    return read
