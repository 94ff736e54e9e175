"""bitedge.tokenizer (built from GGUF-style TokenizerData) against the original tokenizers.

BPE: a Llama-3-style byte-level BPE trained here with `tokenizers`, compared with the tokenizer.json itself
and with transformers' AutoTokenizer.  SentencePiece: a Llama-style BPE model (byte fallback) trained here,
compared with sentencepiece itself and with transformers' LlamaTokenizer (which differs from sentencepiece
only for text that starts with whitespace: its Metaspace then adds no "▁" prefix).
"""

import pytest

from _hf_helpers import TRICKY_TEXTS, corpus, train_bpe_tokenizer, train_spm_tokenizer
from bitedge.convert.hf_tokenizer import load_tokenizer
from bitedge.model import TOKEN_BYTE, TOKEN_CONTROL, TokenizerData
from bitedge.tokenizer import decode, encode, hf_tokenizer, spm_merges

TEXTS = TRICKY_TEXTS + corpus(60, seed=11) + ["\n\n\n", "1 22 333 4444 55555", "é", "🙂🙂🙂", "  x  y  ", "ünïcödé  ünïcödé"]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpe")
    train_bpe_tokenizer(str(d))
    return str(d), load_tokenizer(str(d), {}, 1000)


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("spm")
    train_spm_tokenizer(str(d))
    return str(d), load_tokenizer(str(d), {}, 520)


def test_bpe_ids_and_text_equal_the_original(bpe):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    d, td = bpe
    original = Tokenizer.from_file(d + "/tokenizer.json")
    auto = AutoTokenizer.from_pretrained(d)
    assert td.pre == "llama-bpe" and td.add_bos
    for text in TEXTS:
        ours = encode(td, text, add_bos=False)
        assert ours == original.encode(text, add_special_tokens=False).ids, repr(text)
        assert encode(td, text) == auto(text)["input_ids"], repr(text)  # BOS from the template
        assert decode(td, ours) == original.decode(ours, skip_special_tokens=False) == text, repr(text)
    special = encode(td, "<|begin_of_text|>hi<|eot_id|>", add_bos=False)
    assert special[0] == td.bos_id and special[-1] == td.eos_id and td.token_types[special[0]] == TOKEN_CONTROL
    assert decode(td, special, skip_special=True) == "hi"


def test_bpe_plain_gpt2_pretokenizer():
    """A GPT-2 style tokenizer (ByteLevel with its own regex) round-trips too."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    import json

    from bitedge.convert.hf_tokenizer import bpe_data

    td = bpe_data(json.loads(tok.to_str()), 400)
    assert td.pre == "gpt2"
    for text in TEXTS:
        assert encode(td, text) == tok.encode(text).ids, repr(text)


def test_sentencepiece_ids_equal_sentencepiece_and_transformers(spm_dir):
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    d, td = spm_dir
    sp = spm.SentencePieceProcessor(model_file=d + "/tokenizer.model")
    hf = LlamaTokenizer.from_pretrained(d)
    assert td.model == "llama" and td.add_bos and td.bos_id == 1 and td.token_types[3] == TOKEN_BYTE
    assert len(td.tokens) == 520 and td.tokens[519] == "[PAD519]"
    differs_from_transformers = 0
    for text in TEXTS:
        ours = encode(td, text)
        assert ours == [1] + sp.encode(text), repr(text)
        assert decode(td, ours[1:]) == sp.decode(ours[1:]) == text, repr(text)
        if text[:1].isspace():
            differs_from_transformers += ours != hf(text)["input_ids"]
        else:
            assert ours == hf(text)["input_ids"], repr(text)
            assert decode(td, ours, skip_special=True) == hf.decode(ours, skip_special_tokens=True), repr(text)
    print(f"transformers' LlamaTokenizer differs on {differs_from_transformers} texts starting with whitespace")


def test_byte_fallback_for_unknown_characters(spm_dir):
    _, td = spm_dir
    ids = encode(td, "ꙮ", add_bos=False)  # a character the training text never had
    assert all(td.token_types[i] == TOKEN_BYTE for i in ids[1:]) and len(ids) >= 3
    assert decode(td, ids) == "ꙮ"


def test_spm_merges_ranked_by_merged_piece_score():
    tokens = ["<unk>", "a", "b", "c", "ab", "bc", "abc"]
    td = TokenizerData(model="llama", tokens=tokens, token_types=[2, 1, 1, 1, 1, 1, 1], scores=[0, -1, -2, -3, -4, -3.5, -5], unk_id=0)
    assert spm_merges(td) == [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]
    ids = hf_tokenizer(td).encode("abc").ids
    assert ids[-1] == 6  # "▁" is unknown here (fused unk), then the whole piece


def test_unknown_tokenizer_model_is_refused():
    from bitedge.errors import BitedgeError

    with pytest.raises(BitedgeError, match="unsupported tokenizer model 'rwkv'"):
        hf_tokenizer(TokenizerData(model="rwkv", tokens=["a"], token_types=[1]))
