/* tokenizer_build.c: a tokenizer from a GGUF vocabulary (tokenizer.* keys, read by model.c into a be_vocab_view):
 * token strings, merges, decoded pieces, special and end-of-generation tokens, every index checked. */
#include "tokenizer_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------------------------------------------------
 * build */

void free_tokenizer(be_tokenizer *t) {
    if (!t) return;
    free(t->text); free(t->text_off); free(t->piece); free(t->piece_off); free(t->type); free(t->score);
    free(t->tok_hash); free(t->merge_hash); free(t->special); free(t->chat_template);
    free(t);
}

static int str_is(be_vocab_str s, const char *lit) {
    return s.ptr && s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to U+0100 upwards. */
static void build_byte_map(be_tokenizer *t) {
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : next++;
        t->byte_to_cp_len[b] = (uint8_t)utf8_put(cp, t->byte_to_cp[b]);
    }
}

/* Inverse of the byte map for one code point, or -1. */
static int byte_of_cp(uint32_t cp) {
    if ((cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (!printable && next++ == cp) return b;
    }
    return -1;
}

/* "<0xAB>" -> 0xAB, or -1 */
static int parse_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The bytes a token contributes to generated text. Writes at most token_len bytes to out. */
static size_t decode_piece(const be_tokenizer *t, int32_t id, char *out) {
    const char *s = token_str(t, id);
    size_t n = token_len(t, id);
    int type = t->type[id];
    if (type == BE_TOKEN_CONTROL || type == BE_TOKEN_UNKNOWN || type == BE_TOKEN_UNUSED) return 0;
    if (type == BE_TOKEN_USER_DEFINED) { memcpy(out, s, n); return n; } /* added tokens are raw text */
    size_t k = 0;
    if (t->kind == KIND_SPM) {
        int b = type == BE_TOKEN_BYTE ? parse_byte_token(s, n) : -1;
        if (b >= 0) { out[0] = (char)b; return 1; }
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) { out[k++] = ' '; i += 3; }
            else out[k++] = s[i++];
        }
        return k;
    }
    for (size_t i = 0; i < n;) { /* byte-level: every character names one byte */
        uint32_t cp;
        size_t l = utf8_next((const unsigned char *)s + i, n - i, &cp);
        int b = cp == 0xFFFFFFFFu ? -1 : byte_of_cp(cp);
        if (b >= 0) out[k++] = (char)b;
        else { memcpy(out + k, s + i, l); k += l; } /* not from the map: kept as written */
        i += l;
    }
    return k;
}

typedef struct {
    uint32_t len;
    int32_t id;
} special_entry;

static int cmp_special(const void *a, const void *b) { /* longest first, then lowest id */
    const special_entry *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int valid_id(int64_t id, int32_t n) { return id >= -1 && id < n; }

static int build_tokens(be_tokenizer *t, const be_vocab_view *v, char *err, size_t errlen) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < v->n_tokens; i++) {
        if (!v->tokens[i].ptr && v->tokens[i].len) { gguf_set_err(err, errlen, "token %llu has no text", (unsigned long long)i); return -1; }
        if (v->tokens[i].len > MAX_TOKEN_BYTES) {
            gguf_set_err(err, errlen, "token %llu is %llu bytes long (limit %u)", (unsigned long long)i,
                    (unsigned long long)v->tokens[i].len, MAX_TOKEN_BYTES);
            return -1;
        }
        total += v->tokens[i].len;
    }
    if (total >= UINT32_MAX) { gguf_set_err(err, errlen, "the vocabulary's strings are too large (%llu bytes)", (unsigned long long)total); return -1; }
    int32_t n = t->n_tokens;
    t->text = malloc(total + 1);
    t->text_off = malloc(((size_t)n + 1) * sizeof(uint32_t));
    t->type = malloc((size_t)n * sizeof(int32_t));
    t->score = malloc((size_t)n * sizeof(float));
    uint64_t hsize = table_size_for((uint64_t)n);
    t->tok_hash = malloc(hsize * sizeof(int32_t));
    if (!t->text || !t->text_off || !t->type || !t->score || !t->tok_hash) { gguf_set_err(err, errlen, "out of memory for the vocabulary"); return -1; }
    t->tok_mask = hsize - 1;
    memset(t->tok_hash, 0xFF, hsize * sizeof(int32_t));
    uint32_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        t->text_off[i] = off;
        if (v->tokens[i].len) memcpy(t->text + off, v->tokens[i].ptr, v->tokens[i].len);
        off += (uint32_t)v->tokens[i].len;
        int32_t type = v->token_type ? v->token_type[i] : BE_TOKEN_NORMAL;
        if (type < BE_TOKEN_UNDEFINED || type > BE_TOKEN_BYTE) {
            gguf_set_err(err, errlen, "token %d has type %d (expected 0..6)", i, type);
            return -1;
        }
        t->type[i] = type;
        t->score[i] = v->scores ? v->scores[i] : 0.0f;
    }
    t->text_off[n] = off;
    for (int32_t i = 0; i < n; i++) { /* insert: the lowest id wins for duplicate strings */
        if (find_token(t, token_str(t, i), token_len(t, i)) >= 0) continue;
        uint64_t h = hash_bytes(token_str(t, i), token_len(t, i)) & t->tok_mask;
        while (t->tok_hash[h] >= 0) h = (h + 1) & t->tok_mask;
        t->tok_hash[h] = i;
    }
    return 0;
}

static int build_merges(be_tokenizer *t, const be_vocab_view *v, char *err, size_t errlen) {
    if (v->n_merges == 0) return 0;
    if (v->n_merges >= MAX_TOKENS * 4ull) { gguf_set_err(err, errlen, "%llu merges is too many", (unsigned long long)v->n_merges); return -1; }
    uint64_t hsize = table_size_for(v->n_merges);
    t->merge_hash = calloc(hsize, sizeof(merge_slot));
    char *joined = malloc(2 * MAX_TOKEN_BYTES + 1);
    if (!t->merge_hash || !joined) { free(joined); gguf_set_err(err, errlen, "out of memory for the merges"); return -1; }
    t->merge_mask = hsize - 1;
    for (uint64_t r = 0; r < v->n_merges; r++) {
        const char *s = v->merges[r].ptr;
        size_t n = v->merges[r].len;
        const char *sp = (s && n > 1) ? memchr(s + 1, ' ', n - 1) : NULL; /* a left part may itself be " " */
        if (!sp || n > 2 * MAX_TOKEN_BYTES) {
            free(joined);
            gguf_set_err(err, errlen, "merge %llu is not \"left right\"", (unsigned long long)r);
            return -1;
        }
        size_t nl = (size_t)(sp - s), nr = n - nl - 1;
        int32_t a = find_token(t, s, nl), b = find_token(t, sp + 1, nr);
        memcpy(joined, s, nl);
        memcpy(joined + nl, sp + 1, nr);
        int32_t m = find_token(t, joined, nl + nr);
        if (a < 0 || b < 0 || m < 0) continue; /* can never apply: symbols are always tokens */
        uint64_t key = pair_key(a, b), h = hash_u64(key) & t->merge_mask;
        while (t->merge_hash[h].key && t->merge_hash[h].key != key) h = (h + 1) & t->merge_mask;
        if (t->merge_hash[h].key) continue; /* the first (lowest) rank stays */
        t->merge_hash[h] = (merge_slot){key, (int32_t)r, m};
    }
    free(joined);
    return 0;
}

static int build_pieces(be_tokenizer *t, char *err, size_t errlen) {
    int32_t n = t->n_tokens;
    t->piece = malloc((size_t)t->text_off[n] + 1); /* a piece is never longer than its token's string */
    t->piece_off = malloc(((size_t)n + 1) * sizeof(uint32_t));
    if (!t->piece || !t->piece_off) { gguf_set_err(err, errlen, "out of memory for the vocabulary"); return -1; }
    uint32_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        t->piece_off[i] = off;
        off += (uint32_t)decode_piece(t, i, t->piece + off);
    }
    t->piece_off[n] = off;
    return 0;
}

static int build_specials(be_tokenizer *t, char *err, size_t errlen) {
    int32_t n = t->n_tokens;
    special_entry *e = malloc(((size_t)n + 1) * sizeof(*e));
    t->special = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!e || !t->special) { free(e); gguf_set_err(err, errlen, "out of memory for the vocabulary"); return -1; }
    int k = 0;
    for (int32_t i = 0; i < n; i++) {
        int type = t->type[i];
        if ((type == BE_TOKEN_CONTROL || type == BE_TOKEN_USER_DEFINED || type == BE_TOKEN_UNKNOWN) && token_len(t, i)) {
            e[k++] = (special_entry){(uint32_t)token_len(t, i), i};
            t->special_first[(unsigned char)token_str(t, i)[0]] = 1;
        }
    }
    qsort(e, (size_t)k, sizeof(*e), cmp_special);
    for (int i = 0; i < k; i++) t->special[i] = e[i].id;
    t->n_special = k;
    free(e);
    return 0;
}

static void build_eog(be_tokenizer *t) {
    static const char *const names[] = {"<|eot_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>",
                                        "</s>", "<end_of_turn>", "<|end|>", "<|eom_id|>", "<|EOT|>"};
    if (t->eos >= 0) t->eog[t->n_eog++] = t->eos;
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && t->n_eog < MAX_EOG; k++) {
        int32_t id = find_token(t, names[k], strlen(names[k]));
        if (id >= 0 && id != t->eos && t->type[id] != BE_TOKEN_NORMAL) t->eog[t->n_eog++] = id;
    }
}

be_tokenizer *build_tokenizer(const be_vocab_view *v, char *err, size_t errlen) {
    gguf_set_err(err, errlen, "%s", "");
    if (!v) { gguf_set_err(err, errlen, "no vocabulary"); return NULL; }
    int kind;
    if (str_is(v->model, "gpt2")) kind = KIND_BPE;
    else if (str_is(v->model, "llama")) kind = KIND_SPM;
    else {
        gguf_set_err(err, errlen, "tokenizer.ggml.model \"%.*s\" is not supported (expected \"gpt2\" or \"llama\")",
                (int)(v->model.len > 40 ? 40 : v->model.len), v->model.ptr ? v->model.ptr : "");
        return NULL;
    }
    if (!v->tokens || v->n_tokens == 0) { gguf_set_err(err, errlen, "tokenizer.ggml.tokens is missing or empty"); return NULL; }
    if (v->n_tokens > MAX_TOKENS) { gguf_set_err(err, errlen, "%llu tokens is too many", (unsigned long long)v->n_tokens); return NULL; }
    if (v->n_merges && !v->merges) { gguf_set_err(err, errlen, "tokenizer.ggml.merges is missing"); return NULL; }
    if (kind == KIND_BPE && v->n_merges == 0) { gguf_set_err(err, errlen, "a \"gpt2\" tokenizer needs tokenizer.ggml.merges"); return NULL; }
    int32_t n = (int32_t)v->n_tokens;
    const char *bad = !valid_id(v->bos_id, n) ? "bos" : !valid_id(v->eos_id, n) ? "eos"
                    : !valid_id(v->unknown_id, n) ? "unknown" : !valid_id(v->padding_id, n) ? "padding" : NULL;
    if (bad) { gguf_set_err(err, errlen, "tokenizer.ggml.%s_token_id is outside the %d tokens", bad, n); return NULL; }

    be_tokenizer *t = calloc(1, sizeof(*t));
    if (!t) { gguf_set_err(err, errlen, "out of memory for the tokenizer"); return NULL; }
    t->kind = kind;
    t->n_tokens = n;
    t->bos = (int)v->bos_id;
    t->eos = (int)v->eos_id;
    t->unk = (int)v->unknown_id;
    t->add_bos = v->add_bos >= 0 ? v->add_bos != 0 : kind == KIND_SPM;
    t->add_space_prefix = v->add_space_prefix >= 0 ? v->add_space_prefix != 0 : kind == KIND_SPM;
    int no_pre = !v->pre.ptr || !v->pre.len;
    t->pre = PRE_LLAMA3;
    if (kind == KIND_BPE && (str_is(v->pre, "gpt2") || str_is(v->pre, "default"))) t->pre = PRE_GPT2;
    else if (kind == KIND_BPE && !no_pre && !str_is(v->pre, "llama-bpe") && !str_is(v->pre, "llama3")) {
        gguf_set_err(err, errlen, "tokenizer.ggml.pre \"%.*s\" is not supported (expected llama-bpe, llama3, gpt2 or "
                "default)", (int)(v->pre.len > 40 ? 40 : v->pre.len), v->pre.ptr);
        free(t);
        return NULL;
    }
    t->ignore_merges = kind == KIND_BPE && (str_is(v->pre, "llama-bpe") || str_is(v->pre, "llama3"));
    if (build_tokens(t, v, err, errlen) != 0 || (kind == KIND_BPE && build_merges(t, v, err, errlen) != 0) ||
        build_pieces(t, err, errlen) != 0 || build_specials(t, err, errlen) != 0)
        goto fail;
    for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    if (kind == KIND_BPE) {
        build_byte_map(t);
        for (int b = 0; b < 256; b++) t->byte_token[b] = find_token(t, t->byte_to_cp[b], t->byte_to_cp_len[b]);
    } else {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof(name), "<0x%02X>", b);
            t->byte_token[b] = find_token(t, name, 6);
        }
    }
    /* No tokenizer.ggml.pre (Microsoft's ggml-model-i2_s.gguf has none) on a Llama-3 vocabulary: it is Llama-3's
     * tokenizer, whose tokenizer.json sets ignore_merges (the regex is already the Llama-3 one). */
    if (kind == KIND_BPE && no_pre && find_token(t, "<|begin_of_text|>", 17) >= 0) t->ignore_merges = 1;
    build_eog(t);
    if (v->chat_template.ptr && v->chat_template.len) {
        t->chat_template = malloc(v->chat_template.len + 1);
        if (!t->chat_template) { gguf_set_err(err, errlen, "out of memory for the chat template"); goto fail; }
        memcpy(t->chat_template, v->chat_template.ptr, v->chat_template.len);
        t->chat_template[v->chat_template.len] = 0;
        t->chat_template_len = v->chat_template.len;
    }
    return t;
fail:
    free_tokenizer(t);
    return NULL;
}
