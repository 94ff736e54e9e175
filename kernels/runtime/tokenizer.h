/* tokenizer.h: text <-> token ids for the runtime, from the tokenizer.* keys of a GGUF file.
 *
 *   tokenizer.ggml.model "gpt2"  : byte-level BPE (GPT-2 bytes_to_unicode map, merges by rank), pre-tokenized
 *                                  with the Llama-3 regex (pre "llama-bpe", "llama3", or absent: Microsoft's 2B-4T
 *                                  GGUF has no pre) or the GPT-2 regex (pre "gpt2", "default", as
 *                                  bitedge/tokenizer.py); other pre names are refused. Llama-3's ignore_merges (a
 *                                  piece that is a token is taken whole) for "llama-bpe"/"llama3", and for no pre
 *                                  with <|begin_of_text|> in the vocabulary. Control/user-defined/unknown tokens
 *                                  are matched in the raw text first (longest first), like HF added tokens.
 *   tokenizer.ggml.model "llama" : SentencePiece BPE as sentencepiece itself and llama.cpp's llm_tokenizer_spm do it:
 *                                  space prefix (add_space_prefix), ' ' -> U+2581, merge the highest-score pair
 *                                  first, <0xXX> byte fallback for characters the vocabulary lacks. Control tokens
 *                                  written in the text are matched (llama.cpp), and the text after one gets the
 *                                  space prefix again (llama.cpp; transformers' converted LlamaTokenizer does not,
 *                                  and it also skips the prefix when the text starts with a space, where
 *                                  sentencepiece does not: we follow sentencepiece).
 *
 * Tested token for token against `tokenizers` (byte-level, Llama-3 and GPT-2 pre-tokenizers), `sentencepiece`
 * and transformers (tests/test_c_tokenizer.py). Unicode classes come from unicode_tables.h (Unicode 14).
 *
 * The loader fills a be_vocab_view with pointers into the mapped file; build_tokenizer copies what it keeps,
 * so the view (and the mapping) may go away afterwards. The values are untrusted and validated (model name, ids
 * in range, token types, string sizes, merges that parse); the loader guarantees only that every array pointer
 * covers its count (token_type and scores: n_tokens entries). add_eos_token is read but not applied (prompts
 * never end in EOS here). A Llama-3-size vocabulary (128k tokens, 280k merges) costs about 13 MB.
 */
#ifndef BITEDGE_TOKENIZER_H
#define BITEDGE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* A GGUF string: not NUL-terminated, points into the mapped file (the gguf_str of gguf.h, so the loader can pass
 * gguf_get_arr_strs' arrays straight through). */
typedef gguf_str be_vocab_str;

/* Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type). */
enum {
    BE_TOKEN_UNDEFINED = 0,
    BE_TOKEN_NORMAL = 1,
    BE_TOKEN_UNKNOWN = 2,
    BE_TOKEN_CONTROL = 3,
    BE_TOKEN_USER_DEFINED = 4,
    BE_TOKEN_UNUSED = 5,
    BE_TOKEN_BYTE = 6,
};

/* Absent keys: NULL pointers / 0 counts for arrays and strings, -1 for ids and flags. */
typedef struct {
    be_vocab_str model;           /* tokenizer.ggml.model: "gpt2" or "llama" (required) */
    be_vocab_str pre;             /* tokenizer.ggml.pre: "llama-bpe", "gpt2", "default", ... (optional) */
    uint64_t n_tokens;            /* length of tokenizer.ggml.tokens */
    const be_vocab_str *tokens;   /* [n_tokens] tokenizer.ggml.tokens (required) */
    const int32_t *token_type;    /* [n_tokens] tokenizer.ggml.token_type, or NULL (all NORMAL); aligned copy */
    const float *scores;          /* [n_tokens] tokenizer.ggml.scores, or NULL (needed by "llama"); aligned copy */
    uint64_t n_merges;            /* length of tokenizer.ggml.merges */
    const be_vocab_str *merges;   /* [n_merges] "left right", rank = index (needed by "gpt2") */
    int64_t bos_id, eos_id;       /* tokenizer.ggml.bos_token_id / eos_token_id, -1 if absent */
    int64_t unknown_id;           /* tokenizer.ggml.unknown_token_id, -1 if absent */
    int64_t padding_id;           /* tokenizer.ggml.padding_token_id, -1 if absent */
    int add_bos;                  /* tokenizer.ggml.add_bos_token: 1, 0, or -1 if absent */
    int add_eos;                  /* tokenizer.ggml.add_eos_token: 1, 0, or -1 if absent */
    int add_space_prefix;         /* tokenizer.ggml.add_space_prefix: 1, 0, or -1 if absent */
    be_vocab_str chat_template;   /* tokenizer.chat_template (optional) */
} be_vocab_view;

typedef struct be_tokenizer be_tokenizer;

/* Returns NULL and a one-line reason in err when the vocabulary is unusable (unknown model, bad ids, merges that
 * do not parse, ...). The view is not referenced after the call returns. */
be_tokenizer *build_tokenizer(const be_vocab_view *v, char *err, size_t errlen);
void free_tokenizer(be_tokenizer *t);

/* Encode len bytes of UTF-8 text (need not be NUL-terminated; invalid UTF-8 bytes are tokenized as single bytes).
 * add_bos: 1 = prepend BOS, 0 = do not, -1 = as the file says (add_bos_token; absent: yes for "llama", no for
 * "gpt2", as llama.cpp does). Special tokens written in the text (e.g. "<|eot_id|>") become their ids.
 * Returns the number of ids written to out, or -1 when more than max_out ids would be needed (nothing is written
 * past max_out). len + 2 ids suffice unless a "llama" vocabulary lacks U+2581 or has one-byte special tokens;
 * len + 8 is the runtime's margin. */
int be_encode(const be_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *out, int max_out);

/* The bytes one token stands for in generated text (byte-level map undone, U+2581 -> ' ', <0xXX> -> that byte;
 * control, unknown and unused tokens give an empty piece; user-defined tokens their text as written). Not NUL-terminated; *len receives the length.
 * NULL (and *len = 0) for an id out of range. Stays valid until free_tokenizer. */
const char *be_token_piece(const be_tokenizer *t, int32_t id, size_t *len);

/* The token's string exactly as stored in the vocabulary (e.g. "Ġthe", "▁the", "<0x0A>", "<|eot_id|>"). */
const char *be_token_text(const be_tokenizer *t, int32_t id, size_t *len);

/* Decode ids into out (at most cap bytes, not NUL-terminated): the pieces back to back, like HF
 * decode(skip_special_tokens=True): control tokens are dropped, and for "llama" the one space the space prefix added is removed from the start.
 * Returns the number of bytes the full text needs (may exceed cap: call again with a bigger buffer), or -1 for
 * an id out of range. */
long be_decode(const be_tokenizer *t, const int32_t *ids, int n, char *out, size_t cap);

int be_token_count(const be_tokenizer *t);
int be_token_bos(const be_tokenizer *t);     /* -1 if none */
int be_token_eos(const be_tokenizer *t);     /* -1 if none */
/* End of generation: EOS, or a token like <|eot_id|> / <|end_of_text|> / <|im_end|> / </s> / <end_of_turn>. */
int be_token_is_eog(const be_tokenizer *t, int32_t id);

/* Chat formatting. tokenizer.chat_template is recognised by its text (full Jinja is out of scope) as one of:
 *   BE_CHAT_BITNET  microsoft/bitnet-b1.58-2B-4T: "<|begin_of_text|>User: {msg}<|eot_id|>Assistant: "
 *   BE_CHAT_LLAMA3  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{msg}<|eot_id|>
 *                    <|start_header_id|>assistant<|end_header_id|>\n\n"
 *   BE_CHAT_CHATML  "<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n"
 * BITNET and LLAMA3 write the BOS text when the template uses bos_token, and trim contents when it trims (as the
 * real templates do); a fixed text before the template's first tag is kept. The placeholder template Microsoft's
 * converter puts in ggml-model-i2_s.gguf ("Human: ... BITNETAssistant: ") is replaced by BE_CHAT_BITNET with BOS:
 * the model was not trained on it. With no template, BE_CHAT_PLAIN: "User: {msg}\nAssistant:" after the BOS text
 * when the file's add_bos_token says so. An unrecognised template is an error (BE_CHAT_UNKNOWN) rather than a
 * silently wrong prompt. */
typedef enum { BE_CHAT_UNKNOWN = 0, BE_CHAT_PLAIN, BE_CHAT_BITNET, BE_CHAT_LLAMA3, BE_CHAT_CHATML } be_chat_style;

typedef struct {
    const char *role;     /* "system", "user", "assistant" (NUL-terminated) */
    const char *content;  /* NUL-terminated */
} be_chat_message;

be_chat_style be_chat_style_of(const be_tokenizer *t);
const char *be_chat_style_name(be_chat_style s);
/* Detect the style of a template text (len bytes); exposed for tests. */
be_chat_style be_chat_detect(const char *tmpl, size_t len);

/* Format n messages as the template would with add_generation_prompt=True (the BOS the template writes is
 * included as text, so encode the result with add_bos = 0). Returns a malloc'd NUL-terminated string, or NULL
 * with a one-line reason in err. */
char *be_chat_format_messages(const be_tokenizer *t, const be_chat_message *msgs, int n, char *err, size_t errlen);
/* One user message. */
char *be_chat_format(const be_tokenizer *t, const char *user_text, char *err, size_t errlen);

#endif
