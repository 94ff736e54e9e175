"""Helpers for tests/test_c_tokenizer.py: a large mixed test text, tiny tokenizers trained on it with the
`tokenizers` and `sentencepiece` packages, GGUF files carrying their tokenizer.* keys, and the C driver
kernels/tests/tokenize_main.c (built once per session).

The C side reads the vocabulary from a real GGUF file written with gguf-py (key/value section only, no tensors)
through the runtime's reader (kernels/runtime/gguf.c); the driver fills be_vocab_view as model.c does.
"""
from __future__ import annotations

import importlib
import inspect
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import gguf

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "kernels" / "runtime"
DRIVER_SOURCE = REPO / "kernels" / "tests" / "tokenize_main.c"

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

# The chat templates the C code recognises (tokenizer_config.json "chat_template" texts).
BITNET_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = message['role'] | "
    "capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = "
    "bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}"
    "{% endif %}")
BITNET_TEMPLATE_NO_BOS = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = message['role'] | "
    "capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}")
BITNET_TEMPLATE_SYSTEM_LINE = (
    "System: A chat between a curious human and an artificial intelligence assistant.<|eot_id|>"
    + BITNET_TEMPLATE_NO_BOS)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


# ------------------------------------------------------------------------------------------------------------
# test text

MULTILINGUAL = [
    "Café, naïve façade, jalapeño, Ærøskøbing, Łódź, Świętokrzyskie, Ångström, Übermäßig große Straße.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο. Ελληνικά: αβγδεζηθ ΑΒΓΔ ά έ ή ί ό ύ ώ ϊ ΰ.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю. Привет, мир! Ёлка, щука, Жжж.",
    "我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧。東京都の人口は約千四百万人です。",
    "ひらがなとカタカナ、そして漢字を混ぜた文章です。한국어 문장도 있습니다: 안녕하세요, 세계!",
    "مرحبا بالعالم. هذه جملة باللغة العربية مع أرقام ١٢٣٤٥ وعلامات ترقيم؟ نعم!",
    "שלום עולם, זה משפט בעברית. हिन्दी में एक वाक्य। ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Emoji: 😀 😃 🎉 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷🇯🇵 ✨🔥💯 and ☕ with text around them.",
    "Full-width：ＡＢＣ１２３！ Roman numerals Ⅻ ⅷ, fractions ½ ¾, superscripts x² y³, circled ① ② ③.",
    "Math: ∀x∈ℝ, ∃y: x²+y²≥0; ∑ᵢ aᵢ = ∫₀¹ f(t) dt ≈ 3.14159… ≠ ∞. Arrows → ← ⇒ and «quotes» „Anführung“.",
    "Mixed\u00a0no-break\u00a0spaces,\u2003em\u2003spaces,\u3000ideographic\u3000space and a zero\u200bwidth space.",
]

CONTRACTIONS = [
    "I'm sure you're right, it's what we'd've done; they'll say WE'RE late, YOU'VE seen it, I'LL go, HE'D know.",
    "Don't, won't, can't, shouldn't; O'Neil's dog's bone — the 'quoted' word's end. 'S 'T 'Re 'vE 'M 'Ll 'D",
]

WHITESPACE = [
    "a  b   c    d\t\te\t \tf \u00a0 g",
    "line one\r\nline two\r\n\r\nline four\rcarriage only\n\n\n  indented\n\t\ttabbed\n   \n",
    "trailing spaces    \n    leading spaces\n\n\n\n\nmany blank lines",
    "    ",
    "\n",
    " ",
    "x\n \n y\r\n\r\n z  \r\n\t",
]

NUMBERS = [
    "1 12 123 1234 12345 123456 1234567 3.14159 2.718e-10 0x1F 0b1010 1,000,000 -42 +7 1e6 007",
    "Version 3.11.4 released 2023-06-06 at 14:30:59; IPv4 192.168.0.1, tel. +49 (0)30 1234567.",
    "٣٤٥ ١٢٣٤ ۱۲۳ १२३४ ௧௨௩ ５６７８ ⅰⅱⅲ",
]


def _stdlib_text(rng: random.Random) -> list[str]:
    """Docstrings and source code of a few standard library modules: English prose and Python code."""
    parts = []
    for name in ["textwrap", "string", "json.decoder", "collections", "argparse", "functools", "shlex",
                 "fractions", "difflib", "base64", "csv", "calendar", "heapq", "bisect", "statistics"]:
        module = importlib.import_module(name)
        if module.__doc__:
            parts.append(module.__doc__)
        for _, obj in sorted(vars(module).items()):
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str) and (inspect.isfunction(obj) or inspect.isclass(obj)):
                parts.append(doc)
        try:
            parts.append(inspect.getsource(module))
        except (OSError, TypeError):
            pass
    paragraphs = [p for part in parts for p in part.split("\n\n") if p.strip()]
    rng.shuffle(paragraphs)
    return paragraphs


def build_text(seed: int = 0, target_bytes: int = 400_000) -> str:
    """A large deterministic mixed text: prose, code, numbers, whitespace runs, CRLF, many scripts, emoji."""
    rng = random.Random(seed)
    prose = _stdlib_text(rng)
    extras = MULTILINGUAL + CONTRACTIONS + WHITESPACE + NUMBERS
    out, size, i = [e + "\n" for e in extras], 0, 0  # every special sample at least once
    while size < target_bytes:
        piece = prose[i % len(prose)] if rng.random() < 0.7 else rng.choice(extras)
        if rng.random() < 0.05:
            piece = piece.replace("\n", "\r\n")
        i += 1
        out.append(piece)
        out.append(rng.choice(["\n", "\n\n", " ", "\r\n", "\t", "  \n", ""]))
        size += len(piece.encode("utf-8")) + 1
    return "".join(out)


def split_chunks(text: str, n: int) -> list[str]:
    step = len(text) // n + 1
    return [text[i:i + step] for i in range(0, len(text), step)]


# ------------------------------------------------------------------------------------------------------------
# tokenizers

def train_bytelevel(text: str, vocab_size: int = 3000, pre: str = "llama-bpe"):
    """A byte-level BPE tokenizer with the Llama-3 (or GPT-2) pre-tokenizer, trained on text."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=(pre == "llama-bpe")))
    if pre == "llama-bpe":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=SPECIALS)
    lines = text.splitlines(keepends=True)
    tok.train_from_iterator(["".join(lines[i:i + 64]) for i in range(0, len(lines), 64)], trainer=trainer)
    if pre == "llama-bpe":  # BpeTrainer drops the flag: rebuild the model with it, as Llama-3's tokenizer.json has
        import json
        spec = json.loads(tok.to_str())
        spec["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(spec))
    return tok


def bytelevel_vocab(tok) -> tuple[list[str], list[int], list[str]]:
    """tokens (by id), token types, merges ("left right") as a GGUF converter writes them."""
    import json

    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    added = {a["id"]: a for a in spec["added_tokens"]}
    n = max(list(vocab.values()) + list(added)) + 1
    tokens = [""] * n
    for s, i in vocab.items():
        tokens[i] = s
    types = [NORMAL] * n
    for i, a in added.items():
        tokens[i] = a["content"]
        types[i] = CONTROL if a["special"] else USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, types, merges


def write_gguf(path: Path, model: str, tokens, types=None, scores=None, merges=None, pre=None, bos=None, eos=None,
               unk=None, add_bos=None, add_space_prefix=None, chat_template=None) -> Path:
    w = gguf.GGUFWriter(str(path), "bitnet-b1.58")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    if types is not None:
        w.add_token_types(types)
    if scores is not None:
        w.add_token_scores(scores)
    if merges is not None:
        w.add_token_merges(merges)
    if bos is not None:
        w.add_bos_token_id(bos)
    if eos is not None:
        w.add_eos_token_id(eos)
    if unk is not None:
        w.add_unk_token_id(unk)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if add_space_prefix is not None:
        w.add_add_space_prefix(add_space_prefix)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def bytelevel_gguf(tok, path: Path, pre: str = "llama-bpe", chat_template=None) -> Path:
    tokens, types, merges = bytelevel_vocab(tok)
    return write_gguf(path, "gpt2", tokens, types=types, merges=merges, pre=pre,
                      bos=tokens.index("<|begin_of_text|>"), eos=tokens.index("<|end_of_text|>"), add_bos=True,
                      chat_template=chat_template)


def train_sentencepiece(text: str, model_prefix: Path, vocab_size: int = 2000) -> Path:
    """A SentencePiece BPE model with byte fallback, normalised like Llama's (identity, spaces kept)."""
    import sentencepiece as spm

    corpus = model_prefix.with_suffix(".txt")
    corpus.write_text(text.replace("\r", ""), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(model_prefix), model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, character_coverage=0.9995, split_digits=True, allow_whitespace_only_pieces=True,
        max_sentence_length=1 << 20, num_threads=2, minloglevel=2, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    return model_prefix.with_suffix(".model")


def sentencepiece_gguf(model_file: Path, path: Path, chat_template=None) -> Path:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else UNUSED if sp.is_unused(i)
                     else BYTE if sp.is_byte(i) else NORMAL)
    return write_gguf(path, "llama", tokens, types=types, scores=scores, pre="default", bos=sp.bos_id(),
                      eos=sp.eos_id(), unk=sp.unk_id(), add_bos=True, add_space_prefix=True,
                      chat_template=chat_template)


# ------------------------------------------------------------------------------------------------------------
# the C driver

def build_driver(out_dir: Path, cc: str | None = None, name: str = "tokenize_main", extra=()) -> Path:
    """Compile the driver; TOKENIZE_MAIN_CFLAGS adds flags (e.g. "-fsanitize=address,undefined -g")."""
    cc = cc or shutil.which("cc") or shutil.which("gcc")
    exe = out_dir / name
    extra = [*extra, *os.environ.get("TOKENIZE_MAIN_CFLAGS", "").split()]
    cmd = [cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_POSIX_C_SOURCE=200809L", *extra,
           f"-I{RUNTIME}", str(DRIVER_SOURCE), *map(str, sorted(RUNTIME.glob("tokenizer*.c"))),
           *map(str, sorted(RUNTIME.glob("gguf*.c"))),
           "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def write_records(path: Path, items: list[bytes]) -> Path:
    with open(path, "wb") as f:
        for b in items:
            f.write(struct.pack("<I", len(b)))
            f.write(b)
    return path


def run_driver(exe: Path, *args) -> bytes:
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace").strip())
    return proc.stdout


def c_encode(exe: Path, gguf_path: Path, texts: list[str], work: Path, bos: int = 0) -> list[list[int]]:
    rec = write_records(work / "encode.rec", [t.encode("utf-8") for t in texts])
    out = run_driver(exe, gguf_path, "encode", rec, bos).decode()
    lines = out.split("\n")[:-1]
    assert len(lines) == len(texts)
    return [[int(x) for x in line.split()] for line in lines]


def _length_prefixed(out: bytes) -> list[bytes]:
    items, pos = [], 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        n = int(out[pos:nl])
        items.append(out[nl + 1:nl + 1 + n])
        pos = nl + 1 + n
    return items


def c_decode(exe: Path, gguf_path: Path, id_lists: list[list[int]], work: Path) -> list[bytes]:
    path = work / "decode.ids"
    path.write_text("".join(" ".join(map(str, ids)) + "\n" for ids in id_lists))
    items = _length_prefixed(run_driver(exe, gguf_path, "decode", path))
    assert len(items) == len(id_lists)
    return items


def c_pieces(exe: Path, gguf_path: Path) -> list[bytes]:
    return _length_prefixed(run_driver(exe, gguf_path, "pieces"))


def c_chat(exe: Path, gguf_path: Path, messages: list[dict], work: Path) -> str:
    items = []
    for m in messages:
        items += [m["role"].encode(), m["content"].encode("utf-8")]
    rec = write_records(work / "chat.rec", items)
    return run_driver(exe, gguf_path, "chat", rec).decode("utf-8")


def c_info(exe: Path, gguf_path: Path) -> dict:
    out = run_driver(exe, gguf_path, "info").decode()
    return dict(line.split(" ", 1) for line in out.strip().split("\n"))
