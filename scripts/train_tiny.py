#!/usr/bin/env python3
"""Train the tiny BitNet b1.58 demo model that bitedge ships (models/tiny-kjv/).

Quantization-aware training with Hugging Face transformers' own BitNet modules: a BitNetForCausalLM whose
linear layers are transformers' AutoBitLinear in "online" mode (absmean ternary weights and per-token
int8 activations in the forward pass, straight-through gradients), so the result is an ordinary
bf16-master BitNet checkpoint (quantization_config online/autobitlinear) that `bitedge convert` reads.

Corpus: the King James Bible from Debian's bible-kjv package (`bible`), offline. Tokenizer: byte-level BPE
with the Llama-3 pre-tokenizer, trained here with `tokenizers`.

    apt-get install bible-kjv && python3 scripts/train_tiny.py --minutes 40 -o models/tiny-kjv
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # transformers wraps the quantizers in torch.compile

import torch  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import BitNetConfig, BitNetForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from transformers.integrations.bitnet import AutoBitLinear  # noqa: E402

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def load_corpus() -> str:
    if not shutil.which("bible"):
        raise SystemExit("train_tiny: needs Debian's bible-kjv package (apt-get install bible-kjv)")
    raw = subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    lines = []
    for line in raw.splitlines():
        m = re.match(r"\s+\d+ (.*)", line)
        if m:
            lines.append(m.group(1).strip())
        elif line.strip():
            lines.append("")
            lines.append(line.strip())  # "Genesis 1" chapter headings
    return "\n".join(lines).strip() + "\n"


def train_tokenizer(text: str, vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(text.split("\n\n"), trainer)
    return tok


def make_model(cfg: BitNetConfig) -> BitNetForCausalLM:
    torch.manual_seed(0)
    model = BitNetForCausalLM(cfg)
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            q = AutoBitLinear(module.in_features, module.out_features, bias=False, online_quant=True)
            q.weight.data.copy_(module.weight.data)
            model.set_submodule(name, q)
    return model


@torch.no_grad()
def evaluate(model, data: torch.Tensor, seq: int, max_batches: int = 40) -> float:
    model.eval()
    losses = []
    n = (len(data) - 1) // seq
    for i in range(min(n, max_batches)):
        x = data[i * seq:(i + 1) * seq][None]
        y = data[i * seq + 1:(i + 1) * seq + 1][None]
        losses.append(torch.nn.functional.cross_entropy(model(x).logits[0], y[0]).item())
    model.train()
    return math.exp(sum(losses) / len(losses))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="models/tiny-kjv")
    ap.add_argument("--minutes", type=float, default=40.0, help="training time budget (sets the step count)")
    ap.add_argument("--steps", type=int, help="train exactly this many steps instead of fitting --minutes")
    ap.add_argument("--max-minutes", type=float, help="stop (and save) after this long even if steps remain")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()

    text = load_corpus()
    tok = train_tokenizer(text, args.vocab)
    ids = torch.tensor(tok.encode(text).ids, dtype=torch.long)
    split = int(len(ids) * 0.97)  # the last 3% (most of Revelation and Jude) is held out
    train, val = ids[:split], ids[split:]
    print(f"corpus: {len(text)} chars, {len(ids)} tokens; vocab {tok.get_vocab_size()}", flush=True)

    cfg = BitNetConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=args.hidden, intermediate_size=args.ffn,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=1024, rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        hidden_act="relu2", bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    model = make_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)

    def batch():
        starts = torch.randint(0, len(train) - args.seq - 1, (args.batch,), generator=gen)
        x = torch.stack([train[s:s + args.seq] for s in starts])
        y = torch.stack([train[s + 1:s + args.seq + 1] for s in starts])
        return x, y

    # time 5 steps to fit the cosine schedule into the budget
    budget = args.minutes * 60 - (time.time() - t_start) - 60
    t0 = time.time()
    total_steps, step, warmup = args.steps, 0, 50
    while True:
        if total_steps is None and step == 5:
            total_steps = max(50, int(budget / ((time.time() - t0) / 5)))
            print(f"{n_params/1e6:.2f}M parameters; {total_steps} steps fit in {args.minutes:g} min", flush=True)
        if total_steps is not None and step >= total_steps:
            break
        if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
            print(f"stopping at step {step}: --max-minutes reached", flush=True)
            break
        t_total = total_steps or 10**9
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / t_total))))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch()
        loss = torch.nn.functional.cross_entropy(model(x).logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step}/{total_steps} loss {loss.item():.3f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
    train_seconds = time.time() - t0

    # save as an ordinary online-quantized BitNet checkpoint in bf16, then evaluate what was saved
    out = Path(args.out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.quantization_config = {
        "quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online",
        "modules_to_not_convert": ["lm_head"], "use_rms_norm": False,
    }
    model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS).save_pretrained(tmp)
    model = model.float()
    ppl = evaluate(model, val, args.seq)
    card = {
        "data": "King James Bible (Debian bible-kjv-text 4.38), verse text and chapter headings; last 3% held out",
        "tokens": len(ids), "vocab": tok.get_vocab_size(), "parameters": n_params,
        "config": {k: getattr(cfg, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                 "num_attention_heads", "num_key_value_heads", "vocab_size")},
        "steps": step, "batch": args.batch, "seq": args.seq, "lr": args.lr,
        "train_seconds": round(train_seconds), "threads": args.threads,
        "val_perplexity_bf16_master_ternary_forward": round(ppl, 3),
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    (tmp / "training.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
