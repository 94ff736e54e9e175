"""Write a Hugging Face BitNetForCausalLM checkpoint with random bf16 master weights, tensor by tensor.

Used by ``write_dummy_hf`` (a preset of bitedge.convert.dummy) so that conversion (load_hf -> ternarize -> write_gguf)
can be measured at real sizes without downloading anything. The layout is the -bf16 repository's:
config.json with quantization_config {quant_method bitnet, linear_class autobitlinear, quantization_mode
online}, sharded ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json`` (one
``model.safetensors`` when it fits in one shard), tokenizer.json + tokenizer_config.json.

safetensors files are written by hand (8-byte header length, JSON header, raw data) because the
safetensors package needs every tensor of a file in memory at once; here each tensor is generated and
written in row chunks, so memory stays at one chunk whatever the model size.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from bitedge.convert.dummy import dummy_tokenizer, preset_config, tensor_rng
from bitedge.errors import BitedgeError
from bitedge.output import replaced_atomically
from bitedge.model import ModelConfig, TokenizerData, is_ternary

CHUNK_ELEMENTS = 1 << 22  # values generated and written at a time
MASTER_STD = 0.02  # std of the random master weights (ternarized on load: s = 1 / mean|W|)

GLOBAL_HF_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
LAYER_HF_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_sub_norm": "self_attn.attn_sub_norm",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_sub_norm": "mlp.ffn_sub_norm",
    "ffn_down": "mlp.down_proj",
}


def hf_name(name: str) -> str:
    """Canonical GGUF name -> BitNetForCausalLM parameter name."""
    base = name.removesuffix(".weight")
    if base in GLOBAL_HF_NAMES:
        return GLOBAL_HF_NAMES[base] + ".weight"
    _, layer, role = base.split(".")
    return f"model.layers.{layer}.{LAYER_HF_NAMES[role]}.weight"


def hf_config(config: ModelConfig, tokenizer: TokenizerData | None) -> dict:
    return {
        "_name_or_path": config.name,
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": config.ffn_act,
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False,
        "bos_token_id": None if tokenizer is None else tokenizer.bos_id,
        "eos_token_id": None if tokenizer is None else tokenizer.eos_id,
        "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"},
    }


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), round to nearest even, as torch does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def master_chunks(seed: int, name: str, shape: tuple[int, ...]):
    """The tensor's random master weights as bf16 bits, a block of rows at a time (deterministic per seed,
    tensor and block; blocks depend only on the shape, so the values do not depend on memory settings)."""
    if len(shape) == 1:
        rng = tensor_rng(seed, "hf:" + name)
        yield f32_to_bf16_bits(1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32))
        return
    rows, cols = shape
    step = max(1, CHUNK_ELEMENTS // cols)
    for part, r0 in enumerate(range(0, rows, step)):
        rng = tensor_rng(seed, "hf:" + name, part)
        block = MASTER_STD * rng.standard_normal((min(step, rows - r0), cols), dtype=np.float32)
        yield f32_to_bf16_bits(block)


def plan_shards(entries: list[tuple[str, tuple[int, ...]]], max_shard_bytes: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    shards: list[list] = [[]]
    size = 0
    for name, shape in entries:
        nbytes = 2 * int(np.prod(shape))
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...]]], seed: int, sources: dict[str, str]) -> int:
    """One bf16 safetensors file, streamed; returns its data size. Written to a temporary name first."""
    header, offset = {}, 0
    for name, shape in tensors:
        nbytes = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with replaced_atomically(path, hidden=False) as partial, open(partial, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape in tensors:
            for chunk in master_chunks(seed, sources[name], shape):
                chunk.tofile(f)
    return offset


def write_tokenizer(directory: Path, td: TokenizerData) -> None:
    from bitedge.tokenizer import hf_tokenizer

    hf_tokenizer(td).save(str(directory / "tokenizer.json"))
    tok_config = {
        "add_bos_token": td.add_bos,
        "add_eos_token": td.add_eos,
        "bos_token": td.tokens[td.bos_id] if td.bos_id is not None else None,
        "eos_token": td.tokens[td.eos_id] if td.eos_id is not None else None,
        "model_max_length": 1 << 20,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))


def write_hf_checkpoint(
    config: ModelConfig,
    directory,
    *,
    seed: int = 0,
    tokenizer: TokenizerData | None = None,
    force: bool = False,
    max_shard_bytes: int = 2 << 30,
) -> dict:
    """Write a BitNetForCausalLM checkpoint of ``config`` into ``directory``; returns a summary."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BitedgeError(f"{directory}: exists and is not a directory")
    if (directory / "config.json").exists() and not force:
        raise BitedgeError(f"{directory}: already holds a checkpoint (use --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)

    sources = {}  # hf name -> canonical name (the seed of its values)
    entries = []
    for name, shape in config.tensor_shapes().items():
        sources[hf_name(name)] = name
        entries.append((hf_name(name), shape))
    shards = plan_shards(entries, max_shard_bytes)
    if len(shards) == 1:
        names = ["model.safetensors"]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    (directory / "config.json").unlink(missing_ok=True)  # incomplete until config.json is written again
    for stale in directory.glob("model*.safetensors*"):
        stale.unlink()  # an overwritten checkpoint must not keep shards of a different split

    total = 0
    for file_name, tensors in zip(names, shards):
        total += write_safetensors(directory / file_name, tensors, seed, sources)
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": total},
            "weight_map": {n: f for f, tensors in zip(names, shards) for n, _ in tensors},
        }
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if tokenizer is not None:
        write_tokenizer(directory, tokenizer)
    # config.json last: a directory with config.json is a complete checkpoint
    (directory / "config.json").write_text(json.dumps(hf_config(config, tokenizer), indent=2))
    return {
        "path": str(directory),
        "files": names,
        "bytes": total,
        "tensors": len(entries),
        "ternary_tensors": sum(1 for n in sources.values() if is_ternary(n)),
        "n_params": config.n_params(),
    }


def write_dummy_hf(preset: str, directory, *, seed: int = 0, force: bool = False, max_shard_bytes: int = 2 << 30) -> dict:
    """Write a Hugging Face BitNetForCausalLM checkpoint of the preset (bf16 master weights, sharded
    safetensors, autobitlinear online quantization, tokenizer.json), tensor by tensor."""
    config = preset_config(preset)
    return write_hf_checkpoint(
        config, directory, seed=seed, tokenizer=dummy_tokenizer(config.vocab_size), force=force, max_shard_bytes=max_shard_bytes
    )
