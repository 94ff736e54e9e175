/* tokenizer_impl.h: the tokenizer's internals, shared by tokenizer.c (encode, decode), tokenizer_build.c (building
 * one from a GGUF vocabulary) and tokenizer_chat.c (chat formats). Not part of the runtime's interface: see
 * tokenizer.h. */
#ifndef BITEDGE_TOKENIZER_IMPL_H
#define BITEDGE_TOKENIZER_IMPL_H

#include <stdint.h>
#include <string.h>

#include "tokenizer.h"

#define MAX_TOKENS (1u << 24)      /* far above any real vocabulary; keeps every index in an int32 */
#define MAX_TOKEN_BYTES (1u << 16) /* one token's string */
#define MAX_EOG 16

enum { KIND_BPE = 1, KIND_SPM = 2 };
enum { PRE_LLAMA3 = 1, PRE_GPT2 = 2 };

typedef struct {
    uint64_t key;   /* (left id << 32 | right id) + 1: 0 marks an empty slot */
    int32_t rank;
    int32_t merged; /* id of left+right */
} merge_slot;

struct be_tokenizer {
    int kind, pre, ignore_merges;
    int32_t n_tokens;
    char *text;            /* token strings as stored, back to back */
    uint32_t *text_off;    /* [n_tokens + 1] */
    char *piece;           /* decoded bytes of each token, back to back */
    uint32_t *piece_off;   /* [n_tokens + 1] */
    int32_t *type;         /* [n_tokens] */
    float *score;          /* [n_tokens] */
    int32_t *tok_hash;     /* open addressing, -1 empty; token string -> lowest id */
    uint64_t tok_mask;
    merge_slot *merge_hash;
    uint64_t merge_mask;
    int32_t byte_token[256]; /* gpt2: token of the byte's mapped character; llama: <0xXX>; -1 if none */
    uint8_t byte_to_cp_len[256];
    char byte_to_cp[256][2]; /* gpt2 bytes_to_unicode, UTF-8 (every mapped code point is below U+0800) */
    int32_t *special;      /* ids matched in raw text, longest first */
    int n_special;
    uint8_t special_first[256]; /* some special token starts with this byte */
    int bos, eos, unk;
    int add_bos, add_space_prefix;
    int eog[MAX_EOG];
    int n_eog;
    char *chat_template;
    size_t chat_template_len;
};

/* ----------------------------------------------------------------------------------------------------------
 * small helpers (static inline: every file that includes this gets its own copy, nothing to link) */

static inline uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static inline uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static inline size_t token_len(const be_tokenizer *t, int32_t id) { return t->text_off[id + 1] - t->text_off[id]; }
static inline const char *token_str(const be_tokenizer *t, int32_t id) { return t->text + t->text_off[id]; }

/* Id of the token whose string is s[0..n), or -1. */
static inline int32_t find_token(const be_tokenizer *t, const char *s, size_t n) {
    uint64_t h = hash_bytes(s, n) & t->tok_mask;
    for (;;) {
        int32_t id = t->tok_hash[h];
        if (id < 0) return -1;
        if (token_len(t, id) == n && memcmp(token_str(t, id), s, n) == 0) return id;
        h = (h + 1) & t->tok_mask;
    }
}

static inline uint64_t pair_key(int32_t a, int32_t b) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; }

static inline const merge_slot *find_merge(const be_tokenizer *t, int32_t a, int32_t b) {
    if (!t->merge_hash) return NULL;
    uint64_t key = pair_key(a, b);
    uint64_t h = hash_u64(key) & t->merge_mask;
    for (;;) {
        const merge_slot *s = &t->merge_hash[h];
        if (s->key == 0) return NULL;
        if (s->key == key) return s;
        h = (h + 1) & t->merge_mask;
    }
}

static inline uint64_t table_size_for(uint64_t n) { /* load factor at most 3/4 */
    uint64_t size = 16;
    while (size * 3 < n * 4) size <<= 1;
    return size;
}

/* Length of the UTF-8 sequence at s (at most n bytes) and its code point; an invalid byte counts as one unit with
 * code point 0xFFFFFFFF so it is classed as "other" and still passed through byte for byte. */
static inline size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else { *cp = 0xFFFFFFFFu; return 1; }
    if (len > n) { *cp = 0xFFFFFFFFu; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = 0xFFFFFFFFu; return 1; }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) { *cp = 0xFFFFFFFFu; return 1; }
    *cp = v;
    return len;
}

static inline size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

#endif
