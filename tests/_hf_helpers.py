"""Tiny random-weight Hugging Face checkpoints (written with transformers) and transformers' own quantized
forward pass over them, for the importer / reference / tokenizer tests.

Layouts: "online" (bf16 master weights, autobitlinear online, save_pretrained), "bitlinear" and
"autobitlinear" (packed uint8 + weight_scale in transformers' exact layout, packed by transformers'
pack_weights from transformers-style ternarization), "plain" (float weights, no quantization_config),
"1bitllm" (llama config, BitnetForCausalLM, inner_attn_ln / ffn_layernorm names, latent fp weights) and
"llama-bitnet" (LlamaForCausalLM + quant_method bitnet, packed bitlinear, silu, no sub-norms).
"""

from __future__ import annotations

import io
import json
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

BPE_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

TRICKY_TEXTS = [
    "Hello world",
    "  leading spaces and   runs of   spaces  ",
    "tabs\tand\nnew\n\nlines\r\n",
    "numbers 1234567 3.14159 -42 2026-11-23",
    "naïve café über straße — «quotes» ‘single’",
    "日本語のテキストと中文字符",
    "emoji 🙂🚀👍🏽 and ZWJ 👩‍💻",
    "don't we'll I'M they've",
    "<|begin_of_text|>special inside<|eot_id|> text",
    "",
    " ",
    "a",
    "ŁÓDŹ Ελληνικά кириллица العربية",
    "x" * 50,
]


def corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "tor", "ban", "qui", "zel", "ar", "um", "the", "ing", "and", "is", "on"]
    extras = ["café", "naïve", "über", "日本", "中文", "🙂", "Ελλάδα", "кот", "1234", "3.14", "don't", "it's"]
    lines = []
    for _ in range(n_lines):
        words = []
        for _ in range(rng.randint(3, 12)):
            if rng.random() < 0.15:
                words.append(rng.choice(extras))
            else:
                words.append("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
        sep = rng.choice([" ", " ", " ", "  ", "\t", "\n"])
        lines.append(sep.join(words) + rng.choice([".", "!", "?", ",", ""]))
    return lines


# ---------------------------------------------------------------------------------------------- tokenizers


def train_bpe_tokenizer(directory: str, vocab_size: int = 600) -> None:
    """A Llama-3-style byte-level BPE tokenizer.json trained on the corpus, plus tokenizer_config.json."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=BPE_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    bos = tok.token_to_id(BPE_SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(single=f"{BPE_SPECIALS[0]} $A", pair=f"{BPE_SPECIALS[0]} $A $B", special_tokens=[(BPE_SPECIALS[0], bos)])
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "bos_token": BPE_SPECIALS[0],
                "eos_token": BPE_SPECIALS[2],
                "tokenizer_class": "PreTrainedTokenizerFast",
                "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|eot_id|>{% endfor %}",
            },
            f,
        )


def train_spm_tokenizer(directory: str, vocab_size: int = 500) -> None:
    """A Llama-style SentencePiece BPE tokenizer.model (byte fallback, no whitespace collapsing)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
        f.write(model.getvalue())
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True, "tokenizer_class": "LlamaTokenizer", "legacy": False}, f)


# ---------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Shape:
    hidden: int = 96
    heads: int = 6
    kv_heads: int = 2
    ffn: int = 344
    vocab: int = 1000
    layers: int = 2
    tied: bool = True
    theta: float = 10000.0


@contextmanager
def no_torch_compile():
    """transformers' BitNet ops are @torch.compile'd; run them eagerly (no compiler start-up in tests)."""
    import torch._dynamo

    old = torch._dynamo.config.disable
    torch._dynamo.config.disable = True
    try:
        yield
    finally:
        torch._dynamo.config.disable = old


def hf_ternarize(w):
    """transformers' WeightQuant arithmetic (fp32): T and s with W_eff = T / s."""
    import torch

    w = w.float()
    s = 1.0 / w.abs().mean().clamp_(min=1e-5)
    return (w * s).round().clamp(-1, 1), s


def randomize(model, seed: int) -> None:
    """Non-trivial norms (so a missed or misplaced norm shows) and larger-than-init embeddings."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name or "inner_attn_ln" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name or "lm_head" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


LINEAR_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "gate_proj.weight", "up_proj.weight", "down_proj.weight")


def make_checkpoint(directory: str, shape: Shape = Shape(), layout: str = "online", tokenizer: str = "bpe", seed: int = 0) -> str:
    """Write a tiny checkpoint; returns the directory.  The float master model is saved with save_pretrained,
    packed layouts then rewrite the linear weights (uint8 + weight_scale, bf16 like the hub files)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import BitNetConfig, BitNetForCausalLM, LlamaConfig, LlamaForCausalLM
    from transformers.integrations.bitnet import pack_weights

    os.makedirs(directory, exist_ok=True)
    torch.manual_seed(seed)
    common = dict(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=shape.tied,
        rope_parameters={"rope_type": "default", "rope_theta": shape.theta},
        bos_token_id=None,
        eos_token_id=None,
    )
    if layout == "llama-bitnet":
        config = LlamaConfig(hidden_act="silu", **common)
        model = LlamaForCausalLM(config)
    else:
        config = BitNetConfig(hidden_act="silu" if layout == "1bitllm" else "relu2", **common)
        model = BitNetForCausalLM(config)
    randomize(model, seed)
    dtype = torch.float32 if layout in ("1bitllm", "plain") else torch.bfloat16
    model.to(dtype).save_pretrained(directory)

    cfg_path = os.path.join(directory, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    if layout in ("bitlinear", "autobitlinear", "llama-bitnet"):
        path = os.path.join(directory, "model.safetensors")
        state = load_file(path)
        for name in list(state):
            if name.endswith(LINEAR_SUFFIXES):
                t, s = hf_ternarize(state[name])
                packed = pack_weights(t.to(torch.int8).clone())
                state[name] = packed
                scale = s if layout != "autobitlinear" else 1.0 / s  # BitLinear divides, AutoBitLinear multiplies
                state[name.removesuffix("weight") + "weight_scale"] = scale.reshape(1).to(torch.bfloat16)
        save_file(state, path, metadata={"format": "pt"})
        linear_class = "autobitlinear" if layout == "autobitlinear" else "bitlinear"
        cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class, "quantization_mode": "offline"}
    elif layout == "online":
        cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}
    elif layout == "1bitllm":
        path = os.path.join(directory, "model.safetensors")
        state = load_file(path)
        renamed = {k.replace("self_attn.attn_sub_norm", "self_attn.inner_attn_ln").replace("mlp.ffn_sub_norm", "mlp.ffn_layernorm"): v for k, v in state.items()}
        save_file(renamed, path, metadata={"format": "pt"})
        cfg.update(model_type="llama", architectures=["BitnetForCausalLM"], rope_theta=shape.theta)
        cfg.pop("rope_parameters", None)
    if layout == "plain":
        cfg.pop("quantization_config", None)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    if tokenizer == "bpe":
        train_bpe_tokenizer(directory)
    elif tokenizer == "spm":
        train_spm_tokenizer(directory)
    return directory


def hf_model(directory: str):
    """transformers' own quantized model over the checkpoint, fp32, running BitLinear / AutoBitLinear.

    We cannot call from_pretrained with the BitNet quantizer (it insists on `accelerate`, not installed), so
    this does what the quantizer does: replace_with_bitnet_linear with the checkpoint's BitNetQuantConfig,
    then load the state dict (packed weights unpacked by transformers' unpack_weights for AutoBitLinear, as
    BitNetDeserialize does).  1bitLLM checkpoints run as BitNetForCausalLM (silu, online AutoBitLinear):
    their modeling code computes the same thing with the sub-norms renamed.
    """
    import torch
    from safetensors.torch import load_file
    from transformers import BitNetConfig, BitNetForCausalLM, LlamaConfig, LlamaForCausalLM
    from transformers.integrations.bitnet import replace_with_bitnet_linear, unpack_weights
    from transformers.utils.quantization_config import BitNetQuantConfig

    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    quant = dict(cfg.pop("quantization_config", None) or {})
    state = {}
    for path in sorted(p for p in os.listdir(directory) if p.endswith(".safetensors")):
        state.update(load_file(os.path.join(directory, path)))
    if "BitnetForCausalLM" in cfg.get("architectures", []):
        quant = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}
        state = {k.replace("inner_attn_ln", "attn_sub_norm").replace("ffn_layernorm", "ffn_sub_norm"): v for k, v in state.items()}
        cfg["model_type"] = "bitnet"
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg.pop("rope_theta")}
    for key in ("architectures", "model_type", "transformers_version", "dtype", "torch_dtype"):
        cfg.pop(key, None)
    is_llama = "LlamaForCausalLM" in json.load(open(os.path.join(directory, "config.json"))).get("architectures", [])
    if is_llama:
        model = LlamaForCausalLM(LlamaConfig(**cfg))
    else:
        model = BitNetForCausalLM(BitNetConfig(**cfg))
    model = model.float()
    if quant:
        quant.pop("quant_method", None)
        qc = BitNetQuantConfig(**quant)
        replace_with_bitnet_linear(model, modules_to_not_convert=["lm_head"], quantization_config=qc)
        if qc.linear_class == "autobitlinear" and qc.quantization_mode == "offline":
            with no_torch_compile():
                for k in list(state):
                    if state[k].dtype == torch.uint8:
                        state[k] = unpack_weights(state[k], dtype=torch.float32)
    state = {k: (v if v.dtype == torch.uint8 else v.float()) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if not m.startswith("lm_head")]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.get("tie_word_embeddings"):
        model.lm_head.weight = model.model.embed_tokens.weight
    for name, buf in model.named_buffers():
        assert buf.device.type != "meta", name
    model.eval()
    return model


def hf_logits(model, tokens) -> np.ndarray:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only spin (20x slower on a loaded 2-core box)
    try:
        with torch.no_grad(), no_torch_compile():
            out = model(torch.tensor([list(tokens)]), use_cache=False)
    finally:
        torch.set_num_threads(threads)
    return out.logits[0].float().numpy()


def hf_greedy(model, prompt, n: int):
    """Greedy decode by full recomputation (no cache): tokens and each step's logits."""
    tokens, steps = list(prompt), []
    for _ in range(n):
        logits = hf_logits(model, tokens)[-1]
        steps.append(logits)
        tokens.append(int(np.argmax(logits)))
    return tokens[len(prompt):], np.stack(steps)


# ---------------------------------------------------------------------------------------------- shared cases

CASES = {
    # name: (shape, layout, tokenizer)
    "bitnet-online-h6-gqa-tied": (Shape(hidden=96, heads=6, kv_heads=2, ffn=344, vocab=1000, tied=True), "online", "bpe"),
    "bitnet-bitlinear-untied": (Shape(hidden=128, heads=4, kv_heads=4, ffn=256, vocab=1000, tied=False), "bitlinear", "bpe"),
    "bitnet-bitlinear-h5-theta500k": (Shape(hidden=80, heads=5, kv_heads=5, ffn=200, vocab=1000, tied=True, theta=500000.0), "bitlinear", "bpe"),
    "bitnet-autobitlinear-mqa": (Shape(hidden=64, heads=2, kv_heads=1, ffn=160, vocab=777, tied=False), "autobitlinear", "spm"),
    "llama-bitnet-packed": (Shape(hidden=96, heads=6, kv_heads=3, ffn=344, vocab=1000, tied=False), "llama-bitnet", "spm"),
    "1bitllm-latent": (Shape(hidden=64, heads=4, kv_heads=4, ffn=172, vocab=1000, tied=False), "1bitllm", "spm"),
}

_ROOT: list[str] = []


def case_dir(name: str) -> str:
    """The checkpoint of CASES[name], built once per test session."""
    import atexit
    import shutil
    import tempfile

    if not _ROOT:
        _ROOT.append(tempfile.mkdtemp(prefix="bitedge-hf-"))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    directory = os.path.join(_ROOT[0], name)
    if not os.path.exists(os.path.join(directory, "config.json")):
        shape, layout, tok = CASES[name]
        make_checkpoint(directory, shape, layout, tok, seed=sum(map(ord, name)))
    return directory


LINEAR_ORDER = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def hf_quantized_inputs(model, tokens):
    """Run transformers' model; return (logits, [(x, q) per linear call in order]) with q from transformers'
    own BitLinear.activation_quant applied to the exact input the linear received."""
    import torch
    from transformers.integrations.bitnet import BitLinear

    calls, handles = [], []
    for layer in model.model.layers:
        for name in LINEAR_ORDER:
            module = layer.get_submodule(name)

            def hook(mod, args):
                x = args[0][0].detach().float()
                with no_torch_compile():
                    q, _ = BitLinear.activation_quant(None, x)
                calls.append((x.numpy().copy(), q.numpy().astype(np.int8)))

            handles.append(module.register_forward_pre_hook(hook))
    try:
        logits = hf_logits(model, tokens)
    finally:
        for h in handles:
            h.remove()
    return logits, calls
