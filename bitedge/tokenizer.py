"""Tokenize with the GGUF-style TokenizerData, through a `tokenizers` Tokenizer built from it.

- "gpt2" (byte-level BPE): BPE(vocab, merges) with the pre-tokenizer the data names ("llama-bpe": Split on
  the Llama-3 regex, isolated, then ByteLevel without its own regex, and ignore_merges as Llama-3 sets it;
  "gpt2"/"default": ByteLevel with the GPT-2 regex), a ByteLevel decoder, CONTROL tokens as special added
  tokens and USER_DEFINED ones as plain added tokens.
- "llama" (SentencePiece BPE): BPE with byte fallback over the pieces, merges derived from the piece scores
  (a merge's rank is its merged piece's score, as transformers' LlamaConverter orders them), sentencepiece's
  normalization (a "▁" prefix when add_space_prefix, spaces to "▁") on each run of text between special
  tokens (llama.cpp's rule), and the Replace/ByteFallback/Fuse/Strip decoder.  Token ids equal
  sentencepiece's for plain text (transformers' LlamaTokenizer differs when the text starts with a space).

BOS/EOS are added by encode() per td.add_bos / td.add_eos, not by a post-processor.
"""

from __future__ import annotations

from bitedge.errors import BitedgeError
from bitedge.model import LLAMA3_REGEX, TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_USER_DEFINED, TokenizerData


def hf_tokenizer(td: TokenizerData):
    from tokenizers import AddedToken, Tokenizer

    if td.model == "gpt2":
        tok = byte_level_tokenizer(td)
    elif td.model == "llama":
        tok = sentencepiece_tokenizer(td)
    else:
        raise BitedgeError(f"unsupported tokenizer model {td.model!r} (supported: gpt2, llama)")
    assert isinstance(tok, Tokenizer)
    added = []
    for i, (text, kind) in enumerate(zip(td.tokens, td.token_types)):
        if kind == TOKEN_CONTROL or (kind == TOKEN_USER_DEFINED):
            special = kind == TOKEN_CONTROL
            added.append((i, AddedToken(text, special=special, normalized=False, single_word=False, lstrip=False, rstrip=False)))
    tok.add_tokens([a for _, a in added])
    for i, a in added:  # add_tokens keeps the ids of tokens already in the vocab; check nothing moved
        if tok.token_to_id(a.content) != i:
            raise BitedgeError(f"tokenizer: added token {a.content!r} is not at id {i}")
    return tok


def byte_level_tokenizer(td: TokenizerData):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(td.tokens)}
    merges = [tuple(m.split(" ", 1)) for m in td.merges or []]
    llama3 = td.pre == "llama-bpe"
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=llama3, fuse_unk=False, byte_fallback=False))
    if llama3:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def spm_merges(td: TokenizerData) -> list[tuple[str, str]]:
    """Merges implied by a SentencePiece BPE vocabulary: every split of a normal piece into two pieces,
    ranked by the merged piece's score (higher first), then its id, then the lengths and ids of the halves."""
    scores = td.scores or [0.0] * len(td.tokens)
    ids = {t: i for i, t in enumerate(td.tokens) if td.token_types[i] in (TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_BYTE)}
    normal = {t: i for t, i in ids.items() if td.token_types[i] == TOKEN_NORMAL}
    ranked = []
    for piece, merged_id in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                ranked.append((-scores[merged_id], merged_id, len(left), len(right), ids[left], ids[right], left, right))
    ranked.sort()
    return [(r[6], r[7]) for r in ranked]


def sentencepiece_tokenizer(td: TokenizerData):
    from tokenizers import Tokenizer, decoders, models, normalizers

    vocab = {t: i for i, t in enumerate(td.tokens)}
    unk = td.tokens[td.unk_id] if td.unk_id is not None else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=spm_merges(td), unk_token=unk, fuse_unk=True, byte_fallback=True))
    prefix = td.add_space_prefix is not False
    # SentencePiece's own normalization: one "▁" prefix, every space a "▁".  Applied to each piece of text
    # between special tokens, as llama.cpp does (it prefixes after a special token too).  transformers' v5
    # Metaspace differs from sentencepiece here: it adds no prefix when the text already starts with a space.
    replace = normalizers.Replace(" ", "▁")
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), replace]) if prefix else replace
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tok.decoder = decoders.Sequence(steps)
    return tok


def tokenizer_for(td: TokenizerData):
    """The Tokenizer for td, built once per TokenizerData object."""
    tok = getattr(td, "_hf_tokenizer", None)
    if tok is None:
        tok = hf_tokenizer(td)
        td._hf_tokenizer = tok  # a cache, not a field: equality and GGUF ignore it
    return tok


def encode(td: TokenizerData, text: str, add_bos: bool | None = None, add_eos: bool | None = None) -> list[int]:
    ids = tokenizer_for(td).encode(text, add_special_tokens=False).ids
    if (td.add_bos if add_bos is None else add_bos) and td.bos_id is not None:
        ids = [td.bos_id] + ids
    if (td.add_eos if add_eos is None else add_eos) and td.eos_id is not None:
        ids = ids + [td.eos_id]
    return ids


def decode(td: TokenizerData, ids, skip_special: bool = False) -> str:
    return tokenizer_for(td).decode([int(i) for i in ids], skip_special_tokens=skip_special)
