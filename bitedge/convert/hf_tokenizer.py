"""Read a Hugging Face tokenizer (tokenizer.json byte-level BPE, or SentencePiece tokenizer.model) into
GGUF-style TokenizerData, the way llama.cpp's converter lays it out.

- tokenizer.model present -> model "llama": pieces, scores and types straight from the SentencePiece proto
  (normal 1, unknown 2, control 3, user-defined 4, unused 5, byte 6).
- else tokenizer.json with a BPE model and a ByteLevel pre-tokenizer -> model "gpt2": tokens by id, merges
  as "a b", special added tokens CONTROL (3), other added tokens USER_DEFINED (4), the rest NORMAL (1);
  pre "llama-bpe" when the pre-tokenizer splits with the Llama-3 regex, "gpt2" for plain ByteLevel, else
  "default".  Ids the tokenizer lacks below the model's vocab_size become "[PAD<i>]" UNUSED tokens.
- bos/eos/add_bos and the chat template come from tokenizer_config.json (then config.json).
"""

from __future__ import annotations

import json
import os

from bitedge.errors import BitedgeError
from bitedge.model import LLAMA3_REGEX, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNUSED, TOKEN_USER_DEFINED, TokenizerData



def load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise BitedgeError(f"{path}: cannot read tokenizer file ({e})") from None


def token_content(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def load_tokenizer(directory: str, cfg: dict, vocab_size: int) -> TokenizerData | None:
    tc_path = os.path.join(directory, "tokenizer_config.json")
    tok_config = load_json(tc_path) if os.path.exists(tc_path) else {}
    spm_path = os.path.join(directory, "tokenizer.model")
    json_path = os.path.join(directory, "tokenizer.json")
    if os.path.exists(spm_path):
        td = sentencepiece_data(spm_path, vocab_size)
    elif os.path.exists(json_path):
        td = bpe_data(load_json(json_path), vocab_size)
    else:
        return None
    ids = {t: i for i, t in enumerate(td.tokens)}
    for key in ("bos", "eos", "unk", "pad"):
        content = token_content(tok_config.get(f"{key}_token"))
        if content is not None and content in ids:
            setattr(td, f"{key}_id", ids[content])
        elif getattr(td, f"{key}_id") is None and key in ("bos", "eos", "pad"):
            value = cfg.get(f"{key}_token_id")
            setattr(td, f"{key}_id", None if value is None else int(value[0] if isinstance(value, list) else value))
    if "add_bos_token" in tok_config:
        td.add_bos = bool(tok_config["add_bos_token"])
    if "add_eos_token" in tok_config:
        td.add_eos = bool(tok_config["add_eos_token"])
    td.chat_template = chat_template(directory, tok_config)
    return td


def chat_template(directory: str, tok_config: dict) -> str | None:
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if template is None:
        jinja = os.path.join(directory, "chat_template.jinja")
        if os.path.exists(jinja):
            with open(jinja, encoding="utf-8") as f:
                template = f.read()
    return template if isinstance(template, str) else None


# ---------------------------------------------------------------------------------------------- BPE


def pre_tokenizer_kind(pre: dict | None) -> str:
    """'llama-bpe' (Split on the Llama-3 regex + ByteLevel without regex), 'gpt2' (ByteLevel with regex), 'default'."""
    if not pre:
        return "default"
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    byte_level = [p for p in parts if p.get("type") == "ByteLevel"]
    if not byte_level:
        raise BitedgeError("tokenizer.json: only byte-level BPE tokenizers are supported (no ByteLevel pre-tokenizer)")
    splits = [p for p in parts if p.get("type") == "Split"]
    if len(parts) == 2 and len(splits) == 1 and splits[0].get("pattern", {}).get("Regex") == LLAMA3_REGEX:
        return "llama-bpe"
    if len(parts) == 1 and byte_level[0].get("use_regex", True):
        return "gpt2"
    return "default"


def bpe_data(tj: dict, vocab_size: int) -> TokenizerData:
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise BitedgeError(f"tokenizer.json: unsupported tokenizer model {model.get('type')!r} (expected byte-level BPE)")
    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    types: dict[int, int] = {}
    for added in tj.get("added_tokens", []):
        by_id[int(added["id"])] = added["content"]
        types[int(added["id"])] = TOKEN_CONTROL if added.get("special") else TOKEN_USER_DEFINED
    n = max(vocab_size, max(by_id) + 1)
    tokens, token_types = [], []
    for i in range(n):
        if i in by_id:
            tokens.append(by_id[i])
            token_types.append(types.get(i, TOKEN_NORMAL))
        else:
            tokens.append(f"[PAD{i}]")
            token_types.append(TOKEN_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    td = TokenizerData(model="gpt2", tokens=tokens, token_types=token_types, merges=merges, pre=pre_tokenizer_kind(tj.get("pre_tokenizer")))
    td.add_bos = template_adds_bos(tj.get("post_processor"))
    return td


def template_adds_bos(post: dict | None) -> bool:
    """True when the post-processor's single-sequence template starts with a special token (the BOS)."""
    if not post:
        return False
    if post.get("type") == "Sequence":
        return any(template_adds_bos(p) for p in post.get("processors", []))
    if post.get("type") == "TemplateProcessing":
        single = post.get("single") or []
        return bool(single) and "SpecialToken" in single[0]
    return False


# ---------------------------------------------------------------------------------------------- SentencePiece


def sentencepiece_data(path: str, vocab_size: int) -> TokenizerData:
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:  # pragma: no cover
        raise BitedgeError("reading tokenizer.model needs the sentencepiece package") from None
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        with open(path, "rb") as f:
            proto.ParseFromString(f.read())
    except Exception:  # protobuf's DecodeError and friends
        raise BitedgeError(f"{path}: not a SentencePiece model") from None
    if proto.trainer_spec.model_type != proto.trainer_spec.BPE:
        raise BitedgeError(f"{path}: only SentencePiece BPE models are supported (this one is not BPE)")
    tokens = [p.piece for p in proto.pieces]
    scores = [float(p.score) for p in proto.pieces]
    types = [int(p.type) for p in proto.pieces]  # the proto enum matches llama.cpp's token types
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(TOKEN_UNUSED)
    spec = proto.trainer_spec

    def opt(i):
        return None if i < 0 else int(i)

    return TokenizerData(
        model="llama",
        tokens=tokens,
        token_types=types,
        scores=scores,
        pre="default",
        bos_id=opt(spec.bos_id),
        eos_id=opt(spec.eos_id),
        unk_id=opt(spec.unk_id),
        pad_id=opt(spec.pad_id),
        add_bos=True,  # LlamaTokenizer's default; tokenizer_config.json may override
        add_space_prefix=bool(proto.normalizer_spec.add_dummy_prefix),
    )
