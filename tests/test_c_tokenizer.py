"""The C tokenizer (kernels/runtime/tokenizer.c) against the Python references, token for token.

Byte-level BPE ("gpt2"): a tokenizer trained here with `tokenizers` (Llama-3 pre-tokenizer, as Llama-3 /
BitNet b1.58 2B-4T use; and the GPT-2 one). SentencePiece BPE ("llama"): a model trained here with
`sentencepiece` (byte fallback). Chat formats: transformers' apply_chat_template with the same template text.
The C side reads every vocabulary from a GGUF file written with gguf-py (see tests/_tok_helpers.py).
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

import _tok_helpers as h

tokenizers = pytest.importorskip("tokenizers")
spm = pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("ctok")


@pytest.fixture(scope="module")
def driver(work):
    return h.build_driver(work)


@pytest.fixture(scope="module")
def text():
    return h.build_text()


@pytest.fixture(scope="module")
def lines(text):
    return text.splitlines(keepends=True)


@pytest.fixture(scope="module")
def bpe(text, work):
    tok = h.train_bytelevel(text)
    return tok, h.bytelevel_gguf(tok, work / "bpe.gguf")


@pytest.fixture(scope="module")
def sp_model(text, work):
    model = h.train_sentencepiece(text, work / "sp")
    return spm.SentencePieceProcessor(model_file=str(model)), model, h.sentencepiece_gguf(model, work / "spm.gguf")


def first_mismatch(texts, want, got):
    for t, w, g in zip(texts, want, got):
        if w != g:
            return f"{t[:80]!r}: want {w[:20]} got {g[:20]}"
    return None


# ------------------------------------------------------------------------------------------------------------
# byte-level BPE, Llama-3 pre-tokenizer


def test_text_is_large_and_mixed(text):
    assert len(text.encode("utf-8")) > 300_000
    for needle in ["\r\n", "👩‍💻", "我能", "Привет", "Ελληνικά", "مرحبا", "YOU'VE", "def ", "1234567", "  \n"]:
        assert needle in text


def test_bytelevel_lines_match_hf(bpe, lines, driver, work):
    tok, gguf_path = bpe
    want = [tok.encode(line, add_special_tokens=False).ids for line in lines]
    got = h.c_encode(driver, gguf_path, lines, work)
    assert sum(len(w) for w in want) > 50_000
    assert first_mismatch(lines, want, got) is None


def test_bytelevel_chunks_match_hf(bpe, text, driver, work):
    tok, gguf_path = bpe
    chunks = h.split_chunks(text, 6) + [text]
    want = [tok.encode(c, add_special_tokens=False).ids for c in chunks]
    got = h.c_encode(driver, gguf_path, chunks, work)
    assert first_mismatch(chunks, want, got) is None


def test_bytelevel_long_pieces_match_hf(bpe, driver, work):
    """Pre-tokenized pieces of hundreds of kilobytes (no spaces): merged in O(n log n), same ids as HF."""
    import random

    tok, gguf_path = bpe
    rng = random.Random(3)
    texts = ["我能吞下玻璃而不伤身体" * 8000, "".join(rng.choice("etaoinshr") for _ in range(200_000)),
             " " * 100_000 + "x", "\n" * 50_000 + "y", "1234567890" * 10_000]
    want = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    got = h.c_encode(driver, gguf_path, texts, work)
    assert first_mismatch(texts, want, got) is None


def test_bytelevel_special_tokens_in_text(bpe, driver, work):
    tok, gguf_path = bpe
    texts = ["<|begin_of_text|>Hello<|eot_id|>", "a<|eot_id|>b <|eot_id|> c\n<|eot_id|>\n",
             "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>",
             "<|eot_id|><|eot_id|>", "<|eot_id", "<|begin_of_text|>  <|end_of_text|>", "x<|end_of_text|>y"]
    want = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    got = h.c_encode(driver, gguf_path, texts, work)
    assert first_mismatch(texts, want, got) is None
    eot = tok.token_to_id("<|eot_id|>")
    assert got[1].count(eot) == 3


def test_bytelevel_roundtrip_and_decode(bpe, lines, text, driver, work):
    tok, gguf_path = bpe
    sample = lines[:3000] + h.split_chunks(text, 4)
    ids = h.c_encode(driver, gguf_path, sample, work)
    decoded = h.c_decode(driver, gguf_path, ids, work)
    assert [d.decode("utf-8") for d in decoded] == sample
    want = [tok.decode(i, skip_special_tokens=True) for i in ids[:3000]]
    assert [d.decode("utf-8") for d in decoded[:3000]] == want


def test_bytelevel_pieces_are_token_bytes(bpe, driver):
    tok, gguf_path = bpe
    tokens, types, _ = h.bytelevel_vocab(tok)
    pieces = h.c_pieces(driver, gguf_path)
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    for i, (s, t) in enumerate(zip(tokens, types)):
        want = b"" if t == h.CONTROL else bytes(byte_of[c] for c in s)
        assert pieces[i] == want, (i, s)


def _bytes_to_unicode():
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    # GPT-2's table: printable Latin-1 bytes map to themselves, the others to U+0100.. in byte order
    printable = [b for b in range(256) if chr(b) in alphabet]
    rest = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + k) for k, b in enumerate(rest)})
    assert set(table.values()) == set(alphabet)
    return table


def test_bytelevel_bos_and_eog(bpe, driver, work):
    tok, gguf_path = bpe
    bos = tok.token_to_id("<|begin_of_text|>")
    plain = tok.encode("Hello world", add_special_tokens=False).ids
    assert h.c_encode(driver, gguf_path, ["Hello world"], work, bos=-1)[0] == [bos] + plain  # file says add_bos
    assert h.c_encode(driver, gguf_path, ["Hello world"], work, bos=1)[0] == [bos] + plain
    assert h.c_encode(driver, gguf_path, ["Hello world"], work, bos=0)[0] == plain
    assert h.c_encode(driver, gguf_path, [""], work, bos=0)[0] == []
    info = h.c_info(driver, gguf_path)
    eog = {int(x) for x in info["eog"].split()}
    assert eog == {tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")}
    assert int(info["eos"]) == tok.token_to_id("<|end_of_text|>")


def test_invalid_utf8_bytes_round_trip(bpe, driver, work):
    _, gguf_path = bpe
    raw = [b"ok \xff\xfe bytes \xc3", b"\x80\x80abc\xe2\x82", b"\xf0\x9f\x98\x80 \xed\xa0\x80 end"]
    rec = h.write_records(work / "raw.rec", raw)
    out = h.run_driver(driver, gguf_path, "encode", rec, 0).decode()
    ids = [[int(x) for x in line.split()] for line in out.strip().split("\n")]
    assert h.c_decode(driver, gguf_path, ids, work) == raw


@pytest.mark.skipif(not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")),
                    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64")
def test_aarch64_build_gives_the_same_ids(bpe, sp_model, lines, driver, work):
    """The code is portable C (char is unsigned on aarch64): a static aarch64 build under qemu agrees."""
    arm = h.build_driver(work, cc="aarch64-linux-gnu-gcc", name="tokenize_main_arm", extra=["-static"])
    rec = h.write_records(work / "arm.rec", [line.encode() for line in lines[:3000]])
    for gguf_path in (bpe[1], sp_model[2]):
        native = h.run_driver(driver, gguf_path, "encode", rec, 1)
        emulated = subprocess.run(["qemu-aarch64", str(arm), str(gguf_path), "encode", str(rec), "1"],
                                  capture_output=True, check=True).stdout
        assert emulated == native


# ------------------------------------------------------------------------------------------------------------
# byte-level BPE, GPT-2 pre-tokenizer


@pytest.mark.parametrize("pre", ["gpt2", "default"])
def test_bytelevel_gpt2_pre_matches_hf(text, lines, driver, work, pre):
    tok = h.train_bytelevel(text[:150_000], vocab_size=1500, pre="gpt2")
    gguf_path = h.bytelevel_gguf(tok, work / "gpt2.gguf", pre=pre)
    sample = lines[::3] + h.split_chunks(text[:100_000], 2)
    want = [tok.encode(t, add_special_tokens=False).ids for t in sample]
    got = h.c_encode(driver, gguf_path, sample, work)
    assert first_mismatch(sample, want, got) is None


# ------------------------------------------------------------------------------------------------------------
# SentencePiece BPE with byte fallback


def test_spm_lines_and_chunks_match_sentencepiece(sp_model, lines, text, driver, work):
    sp, _, gguf_path = sp_model
    sample = [line for line in lines if line] + h.split_chunks(text, 4)
    want = [sp.encode(t) for t in sample]
    got = h.c_encode(driver, gguf_path, sample, work)
    byte_ids = {sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)}
    assert any(i in byte_ids for ids in got for i in ids)  # byte fallback is exercised
    assert first_mismatch(sample, want, got) is None


def test_spm_matches_transformers_llama_tokenizer(sp_model, lines, driver, work, tmp_path):
    """transformers' converted LlamaTokenizer drops the dummy prefix when the text already starts with a space
    (sentencepiece and llama.cpp do not), so the comparison uses lines that start with a non-space."""
    transformers = pytest.importorskip("transformers")
    _, model, gguf_path = sp_model
    (tmp_path / "tokenizer.model").write_bytes(model.read_bytes())
    hf = transformers.LlamaTokenizer.from_pretrained(str(tmp_path))
    sample = [line.lstrip(" ") for line in lines if line.lstrip(" ")]
    assert len(sample) > 3000
    want = [hf.encode(t, add_special_tokens=False) for t in sample]
    got = h.c_encode(driver, gguf_path, sample, work)
    assert first_mismatch(sample, want, got) is None
    decoded = h.c_decode(driver, gguf_path, got, work)
    assert [d.decode("utf-8") for d in decoded] == [hf.decode(i, skip_special_tokens=True) for i in want]


def test_spm_roundtrip(sp_model, lines, driver, work):
    sp, _, gguf_path = sp_model
    sample = [line for line in lines[:4000] if line]
    ids = h.c_encode(driver, gguf_path, sample, work, bos=-1)
    assert all(i[0] == sp.bos_id() for i in ids)  # add_bos_token from the file
    decoded = h.c_decode(driver, gguf_path, ids, work)
    assert [d.decode("utf-8") for d in decoded] == sample
    assert [d.decode("utf-8") for d in decoded] == [sp.decode(i) for i in ids]


def test_spm_special_tokens_like_llama_cpp(sp_model, driver, work):
    """Control tokens written in the text become their ids; the text after one gets the space prefix again."""
    sp, _, gguf_path = sp_model
    got = h.c_encode(driver, gguf_path, ["Hello</s>world", "</s>"], work)
    eos = sp.eos_id()
    assert got[0] == sp.encode("Hello") + [eos] + sp.encode("world")
    assert got[1] == [eos]


# ------------------------------------------------------------------------------------------------------------
# untrusted vocabularies


@pytest.mark.parametrize("change, message", [
    (dict(model="bert"), "is not supported"),
    (dict(bos=5000), "bos_token_id is outside"),
    (dict(merges=["a b", "nospace"]), "merge 1 is not"),
    (dict(types=[1, 9, 1]), "type 9"),
    (dict(tokens=[], types=None), "tokens is missing or empty"),
    (dict(merges=[]), "needs tokenizer.ggml.merges"),
    (dict(pre="qwen2"), 'tokenizer.ggml.pre "qwen2" is not supported'),
])
def test_bad_vocabulary_is_refused(driver, work, change, message):
    args = dict(model="gpt2", tokens=["a", "b", "ab"], types=[1, 1, 1], merges=["a b"], bos=None)
    args.update(change)
    model, tokens = args.pop("model"), args.pop("tokens")
    path = h.write_gguf(work / "bad.gguf", model, tokens, **args)
    proc = subprocess.run([str(driver), str(path), "info"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1


def test_tiny_vocab_merges(driver, work):
    tokens = ["a", "b", "c", "ab", "abc", "<|eot_id|>"] + [chr(0x100 + i) for i in range(3)]
    path = h.write_gguf(work / "tiny.gguf", "gpt2", tokens, types=[1] * 5 + [3] + [1] * 3,
                        merges=["a b", "ab c", "b c"], pre="gpt2")
    got = h.c_encode(driver, path, ["abc", "bc", "cab", "ab<|eot_id|>c", "a\x05b"], work)
    assert got == [[4], [1, 2], [2, 3], [3, 5, 2], [0, 1]]  # bytes the vocabulary lacks are dropped


@pytest.mark.parametrize("pre, specials, want", [
    ("llama-bpe", [], [4]),               # Llama-3's ignore_merges: "abc" is a token, taken whole
    ("gpt2", [], [3, 2]),                 # merges only: a b -> ab, and no "ab c" merge
    (None, ["<|begin_of_text|>"], [4]),   # no pre on a Llama-3 vocabulary (Microsoft's 2B-4T GGUF)
    (None, [], [3, 2]),
    ("default", ["<|begin_of_text|>"], [3, 2]),  # "default" is GPT-2's regex, without ignore_merges
])
def test_ignore_merges(driver, work, pre, specials, want):
    tokens = ["a", "b", "c", "ab", "abc"] + specials
    path = h.write_gguf(work / "im.gguf", "gpt2", tokens, types=[1] * 5 + [3] * len(specials), merges=["a b"],
                        pre=pre)
    assert h.c_encode(driver, path, ["abc"], work)[0] == want
    hf = _hf_bpe(tokens[:5], ["a b"], ignore_merges=want == [4])
    assert hf.encode("abc").ids == want


def _hf_bpe(tokens, merges, ignore_merges):
    from tokenizers import Tokenizer, models

    return Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ")) for m in merges],
                                ignore_merges=ignore_merges))


# ------------------------------------------------------------------------------------------------------------
# chat formats


CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "  Hello!\nHow are you? 😀  "},
    {"role": "assistant", "content": "Fine, thanks. Ünïcödé too."},
    {"role": "user", "content": "Tell me a joke about <numbers> 1234."},
]


@pytest.mark.parametrize("template, style", [
    (h.BITNET_TEMPLATE, "bitnet"),
    (h.BITNET_TEMPLATE_NO_BOS, "bitnet"),
    (h.BITNET_TEMPLATE_SYSTEM_LINE, "bitnet"),
    (h.LLAMA3_TEMPLATE, "llama3"),
    (h.CHATML_TEMPLATE, "chatml"),
])
def test_chat_matches_apply_chat_template(bpe, driver, work, template, style):
    transformers = pytest.importorskip("transformers")
    tok, _ = bpe
    gguf_path = h.bytelevel_gguf(tok, work / f"chat_{style}.gguf", chat_template=template)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                              eos_token="<|end_of_text|>")
    hf.chat_template = template
    assert h.c_info(driver, gguf_path)["chat_style"] == style
    for messages in (CHAT, CHAT[1:2], CHAT[:2]):
        want = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        got = h.c_chat(driver, gguf_path, messages, work)
        assert got == want
        want_ids = hf.encode(want, add_special_tokens=False)
        assert h.c_encode(driver, gguf_path, [got], work, bos=0)[0] == want_ids


def test_chat_unknown_template_and_plain(bpe, driver, work):
    tok, _ = bpe
    odd = h.bytelevel_gguf(tok, work / "chat_odd.gguf", chat_template="{% for m in messages %}[{{ m.content }}]{% endfor %}")
    proc = subprocess.run([str(driver), str(odd), "chat", str(h.write_records(work / "m.rec", [b"user", b"hi"]))],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not one this runtime knows" in proc.stderr
    plain = h.bytelevel_gguf(tok, work / "chat_plain.gguf")
    assert h.c_chat(driver, plain, CHAT[1:2], work) == "<|begin_of_text|>User:   Hello!\nHow are you? 😀  \nAssistant:"
    tokens, types, merges = h.bytelevel_vocab(tok)
    no_bos = h.write_gguf(work / "chat_plain_nobos.gguf", "gpt2", tokens, types=types, merges=merges, add_bos=False,
                          bos=tokens.index("<|begin_of_text|>"))
    assert h.c_chat(driver, no_bos, CHAT[:2], work) == ("System: You are a helpful assistant.\nUser:   Hello!\n"
                                                        "How are you? 😀  \nAssistant:")


# ------------------------------------------------------------------------------------------------------------
# arbitrary bytes and random vocabularies


def _random_bytes(rng, n_items):
    alphabet = [b" ", b"\n", b"\r\n", b"\t", b"'s", b"'LL", b"a", b"Z", b"9", b"\xc3\xa9", b"\xe4\xb8\xad",
                b"\xf0\x9f\x98\x80", b"\xe2\x80\x8d", b"<|eot_id|>", b"</s>", b"\xff", b"\x80", b"\x00", b"."]
    items = []
    for _ in range(n_items):
        if rng.random() < 0.3:
            items.append(bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
        else:
            items.append(b"".join(rng.choice(alphabet) for _ in range(rng.randrange(30))))
    return items


@pytest.mark.parametrize("which", ["bpe", "spm"])
def test_arbitrary_bytes_round_trip(which, bpe, sp_model, driver, work):
    import random

    rng = random.Random(7)
    gguf_path = bpe[1] if which == "bpe" else sp_model[2]
    items = [b for b in _random_bytes(rng, 1500) if b"<|eot_id|>" not in b and b"</s>" not in b]
    rec = h.write_records(work / "arb.rec", items)
    out = h.run_driver(driver, gguf_path, "encode", rec, 1).decode()
    ids = [[int(x) for x in line.split()] for line in out.split("\n")[:-1]]
    assert all(len(i) <= len(b) + 8 for i, b in zip(ids, items))
    assert h.c_decode(driver, gguf_path, ids, work) == items


def test_random_vocabularies_do_not_crash(driver, work):
    import random

    rng = random.Random(11)
    pool = ["a", "b", "ab", "ba", "Ġ", "Ġa", " ", "  ", "▁", "▁a", "<0x41>", "<s>", "\x00", "é", "😀", "a b", ""]
    texts = [b.decode("utf-8", "replace") for b in _random_bytes(rng, 30)]
    refused = 0
    for k in range(25):
        model = rng.choice(["gpt2", "llama"])
        tokens = [rng.choice(pool) + rng.choice(["", "a", "b", " "]) for _ in range(rng.randrange(1, 40))]
        merges = [f"{rng.choice(pool[:-1]) or 'x'} {rng.choice(pool)}" for _ in range(rng.randrange(1, 30))]
        path = h.write_gguf(work / "rand.gguf", model, tokens, types=[rng.choice([1, 1, 1, 2, 3, 4, 5, 6])
                                                                      for _ in tokens],
                            scores=[rng.uniform(-5, 5) for _ in tokens], merges=merges,
                            pre=rng.choice(["llama-bpe", "gpt2", "default"]), bos=rng.randrange(len(tokens)),
                            add_space_prefix=rng.random() < 0.5)
        rec = h.write_records(work / "rand.rec", [t.encode() for t in texts])
        proc = subprocess.run([str(driver), str(path), "encode", str(rec), "-1"], capture_output=True)
        if proc.returncode == 2:  # refused with one line, e.g. a merge without a space
            assert proc.stderr.count(b"\n") == 1 and not proc.stdout
            refused += 1
            continue
        assert proc.returncode == 0, proc.stderr
        for line in proc.stdout.decode().split("\n")[:-1]:
            assert all(0 <= int(x) < len(tokens) for x in line.split())
    assert refused < 10  # most random vocabularies are usable, so encoding is exercised


def test_chat_placeholder_template_uses_trained_format(bpe, driver, work):
    """Microsoft's ggml-model-i2_s.gguf carries a "Human: ... BITNETAssistant: " placeholder; the chat is formatted
    as the model repository's tokenizer_config.json template (with BOS) instead."""
    transformers = pytest.importorskip("transformers")
    tok, _ = bpe
    placeholder = ("{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] "
                   "== 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}{% elif "
                   "message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
    path = h.bytelevel_gguf(tok, work / "chat_placeholder.gguf", chat_template=placeholder)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                              eos_token="<|end_of_text|>")
    hf.chat_template = h.BITNET_TEMPLATE
    assert h.c_info(driver, path)["chat_style"] == "bitnet"
    want = hf.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert want.startswith("<|begin_of_text|>System: ")
    assert h.c_chat(driver, path, CHAT, work) == want


def test_unicode_tables_are_generated_from_unicodedata():
    import unicodedata

    header = (h.RUNTIME / "unicode_tables.h").read_text()
    if f"(Unicode {unicodedata.unidata_version})" not in header:
        pytest.skip("this Python's Unicode version differs from the committed table's")
    script = h.REPO / "scripts" / "gen_unicode_tables.py"
    out = subprocess.run(["python3", str(script)], capture_output=True, text=True, check=True).stdout
    assert out == header


def test_agrees_with_the_python_tokenizer(bpe, sp_model, lines, driver, work):
    """bitedge/tokenizer.py (the workstation side) and the C runtime give the same ids for the same GGUF data."""
    pyt = pytest.importorskip("bitedge.tokenizer")
    from bitedge.model import TokenizerData

    tok, gguf_path = bpe
    tokens, types, merges = h.bytelevel_vocab(tok)
    td = TokenizerData(model="gpt2", tokens=tokens, token_types=types, merges=merges, pre="llama-bpe",
                       bos_id=tokens.index("<|begin_of_text|>"), eos_id=tokens.index("<|end_of_text|>"), add_bos=True)
    sample = lines[:1500] + ["<|begin_of_text|>Hi<|eot_id|>\n"]
    assert h.c_encode(driver, gguf_path, sample, work, bos=1) == [pyt.encode(td, t) for t in sample]

    sp, _, spm_path = sp_model
    n = sp.get_piece_size()
    td = TokenizerData(model="llama", tokens=[sp.id_to_piece(i) for i in range(n)],
                       token_types=[h.UNKNOWN if sp.is_unknown(i) else h.CONTROL if sp.is_control(i)
                                    else h.BYTE if sp.is_byte(i) else h.NORMAL for i in range(n)],
                       scores=[sp.get_score(i) for i in range(n)], pre="default", bos_id=sp.bos_id(),
                       eos_id=sp.eos_id(), unk_id=sp.unk_id(), add_bos=True, add_space_prefix=True)
    sample = [t for t in lines[:1500] if t] + ["Hello</s>world", "<s>[INST] hi"]
    assert h.c_encode(driver, spm_path, sample, work, bos=1) == [pyt.encode(td, t) for t in sample]
