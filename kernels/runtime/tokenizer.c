/* tokenizer.c: byte-level BPE ("gpt2", Llama-3 / GPT-2 pre-tokenizers) and SentencePiece BPE ("llama") encoders,
 * piece decoding, and the few chat formats the runtime knows. See tokenizer.h. */
#include "tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode_tables.h"

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
 * small helpers */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t token_len(const be_tokenizer *t, int32_t id) { return t->text_off[id + 1] - t->text_off[id]; }
static const char *token_str(const be_tokenizer *t, int32_t id) { return t->text + t->text_off[id]; }

/* Id of the token whose string is s[0..n), or -1. */
static int32_t find_token(const be_tokenizer *t, const char *s, size_t n) {
    uint64_t h = hash_bytes(s, n) & t->tok_mask;
    for (;;) {
        int32_t id = t->tok_hash[h];
        if (id < 0) return -1;
        if (token_len(t, id) == n && memcmp(token_str(t, id), s, n) == 0) return id;
        h = (h + 1) & t->tok_mask;
    }
}

static uint64_t pair_key(int32_t a, int32_t b) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; }

static const merge_slot *find_merge(const be_tokenizer *t, int32_t a, int32_t b) {
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

static uint64_t table_size_for(uint64_t n) { /* load factor at most 3/4 */
    uint64_t size = 16;
    while (size * 3 < n * 4) size <<= 1;
    return size;
}

/* Length of the UTF-8 sequence at s (at most n bytes) and its code point; an invalid byte counts as one unit with
 * code point 0xFFFFFFFF so it is classed as "other" and still passed through byte for byte. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
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

static size_t utf8_put(uint32_t cp, char *out) {
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

/* ----------------------------------------------------------------------------------------------------------
 * Unicode classes */

enum { CL_LETTER = 1, CL_NUMBER = 2, CL_SPACE = 4 };

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

#define N_RANGES(a) (sizeof(a) / sizeof((a)[0]))

static uint8_t class_of(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CL_LETTER;
        if (cp >= '0' && cp <= '9') return CL_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CL_SPACE;
        return 0;
    }
    if (cp > 0x10FFFF) return 0;
    uint8_t c = 0;
    if (in_ranges(be_unicode_letter, N_RANGES(be_unicode_letter), cp)) c |= CL_LETTER;
    if (in_ranges(be_unicode_number, N_RANGES(be_unicode_number), cp)) c |= CL_NUMBER;
    if (in_ranges(be_unicode_space, N_RANGES(be_unicode_space), cp)) c |= CL_SPACE;
    return c;
}

/* ----------------------------------------------------------------------------------------------------------
 * pre-tokenizers: each returns the end (code point index) of the match starting at i (i < n) */

#define IS_L(k) (cl[k] & CL_LETTER)
#define IS_N(k) (cl[k] & CL_NUMBER)
#define IS_S(k) (cl[k] & CL_SPACE)
#define IS_OTHER(k) (!(cl[k] & (CL_LETTER | CL_NUMBER | CL_SPACE)))
#define IS_CRLF(k) (cp[k] == '\r' || cp[k] == '\n')

static uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd, ASCII apostrophe; case-insensitive for Llama-3 */
static size_t match_contraction(const uint32_t *cp, size_t i, size_t n, int fold) {
    if (cp[i] != '\'' || i + 1 >= n) return 0;
    uint32_t a = fold ? ascii_lower(cp[i + 1]) : cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= n) return 0;
    uint32_t b = fold ? ascii_lower(cp[i + 2]) : cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

/* The whitespace alternatives shared by both regexes (\s*[\r\n]+ only for Llama-3), then \s+(?!\S) | \s+ */
static size_t match_space(const uint32_t *cp, const uint8_t *cl, size_t i, size_t n, int crlf_rule) {
    size_t end = i;
    while (end < n && IS_S(end)) end++;
    if (crlf_rule) {
        size_t k = end; /* greedy \s* backs off to the last CR/LF of the run */
        while (k > i && !IS_CRLF(k - 1)) k--;
        if (k > i) return k;
    }
    if (end == n) return end;
    if (end - i >= 2) return end - 1; /* leave one space to lead the next word */
    return end;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3(const uint32_t *cp, const uint8_t *cl, size_t i, size_t n) {
    size_t j = match_contraction(cp, i, n, 1);
    if (j) return j;
    j = i;
    if (!IS_L(j) && !IS_N(j) && !IS_CRLF(j) && j + 1 < n && IS_L(j + 1)) j++;
    if (IS_L(j)) {
        while (j < n && IS_L(j)) j++;
        return j;
    }
    if (IS_N(i)) {
        j = i;
        while (j < n && j < i + 3 && IS_N(j)) j++;
        return j;
    }
    j = i;
    if (cp[j] == ' ' && j + 1 < n && IS_OTHER(j + 1)) j++;
    if (IS_OTHER(j)) {
        while (j < n && IS_OTHER(j)) j++;
        while (j < n && IS_CRLF(j)) j++;
        return j;
    }
    return match_space(cp, cl, i, n, 1);
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const uint32_t *cp, const uint8_t *cl, size_t i, size_t n) {
    size_t j = match_contraction(cp, i, n, 0);
    if (j) return j;
    j = (cp[i] == ' ' && i + 1 < n) ? i + 1 : i;
    if (IS_L(j)) { while (j < n && IS_L(j)) j++; return j; }
    if (IS_N(j)) { while (j < n && IS_N(j)) j++; return j; }
    if (IS_OTHER(j)) { while (j < n && IS_OTHER(j)) j++; return j; }
    return match_space(cp, cl, i, n, 0);
}

/* ----------------------------------------------------------------------------------------------------------
 * output buffer */

typedef struct {
    int32_t *ids;
    int n, cap, overflow;
} id_out;

static void emit(id_out *o, int32_t id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    else o->overflow = 1;
    o->n++;
}

/* growable scratch memory, reused across pieces */
typedef struct {
    void *p;
    size_t cap;
} scratch;

static void *scratch_get(scratch *s, size_t bytes) {
    if (bytes <= s->cap) return s->p;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < bytes) cap *= 2;
    void *p = realloc(s->p, cap);
    if (!p) return NULL;
    s->p = p;
    s->cap = cap;
    return p;
}

/* ----------------------------------------------------------------------------------------------------------
 * byte-level BPE */

typedef struct {
    scratch cp, cl, sym, heap, mapped;
} bpe_work;

static void free_bpe_work(bpe_work *w) {
    free(w->cp.p); free(w->cl.p); free(w->sym.p); free(w->heap.p); free(w->mapped.p);
}

typedef struct {
    int32_t id;
    int32_t prev, next; /* -1 at the ends; id -1 once merged into its left neighbour */
} bpe_symbol;

typedef struct {
    int32_t rank, left, right, merged;
    int32_t left_id, right_id; /* the pair when queued: entries whose symbols have changed since are stale */
} bpe_pair;

static int pair_before(const bpe_pair *a, const bpe_pair *b) { /* lowest rank, then leftmost, as HF does */
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void pair_push(bpe_pair *h, size_t *n, bpe_pair x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!pair_before(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static bpe_pair pair_pop(bpe_pair *h, size_t *n) {
    bpe_pair top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && pair_before(&h[c + 1], &h[c])) c++;
        if (!pair_before(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

static void bpe_try_pair(const be_tokenizer *t, const bpe_symbol *sym, int32_t left, bpe_pair *h, size_t *nh) {
    if (left < 0 || sym[left].next < 0) return;
    int32_t right = sym[left].next;
    const merge_slot *m = find_merge(t, sym[left].id, sym[right].id);
    if (m) pair_push(h, nh, (bpe_pair){m->rank, left, right, m->merged, sym[left].id, sym[right].id});
}

/* One pre-tokenized piece: bytes -> mapped characters -> merges by rank, O(n log n) even for a piece of
 * megabytes (a long run of letters without spaces). */
static int bpe_piece(const be_tokenizer *t, const unsigned char *s, size_t n, bpe_work *w, id_out *o) {
    if (t->ignore_merges) { /* Llama-3: a piece that is itself a token is taken whole */
        char *m = scratch_get(&w->mapped, 2 * n);
        if (!m) return -1;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(m + k, t->byte_to_cp[s[i]], t->byte_to_cp_len[s[i]]);
            k += t->byte_to_cp_len[s[i]];
        }
        int32_t id = find_token(t, m, k);
        if (id >= 0) { emit(o, id); return 0; }
    }
    bpe_symbol *sym = scratch_get(&w->sym, n * sizeof(bpe_symbol));
    bpe_pair *heap = scratch_get(&w->heap, 2 * n * sizeof(bpe_pair)); /* n - 1 initial pairs, 2 per merge */
    if (!sym || !heap) return -1;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_token[s[i]];
        if (id < 0) id = t->unk;
        if (id < 0) continue; /* a byte the vocabulary lacks, with no unknown token: dropped, as HF does */
        sym[m] = (bpe_symbol){id, m - 1, m + 1};
        m++;
    }
    if (m == 0) return 0;
    sym[m - 1].next = -1;
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < m; i++) bpe_try_pair(t, sym, i, heap, &nh);
    while (nh) {
        bpe_pair p = pair_pop(heap, &nh);
        bpe_symbol *l = &sym[p.left], *r = &sym[p.right];
        if (l->id != p.left_id || r->id != p.right_id || l->next != p.right) continue; /* stale */
        l->id = p.merged;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = p.left;
        r->id = -1;
        bpe_try_pair(t, sym, l->prev, heap, &nh);
        bpe_try_pair(t, sym, p.left, heap, &nh);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) emit(o, sym[i].id);
    return 0;
}

/* A stretch of text between special tokens: pre-tokenize, then BPE each piece. */
static int bpe_fragment(const be_tokenizer *t, const unsigned char *s, size_t n, bpe_work *w, id_out *o) {
    uint32_t *cp = scratch_get(&w->cp, (n + 1) * sizeof(uint32_t) * 2);
    uint8_t *cl = scratch_get(&w->cl, n + 1);
    if (!cp || !cl) return -1;
    uint32_t *off = cp + n + 1; /* byte offset of each code point */
    size_t ncp = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t len = utf8_next(s + i, n - i, &c);
        cp[ncp] = c;
        cl[ncp] = class_of(c);
        off[ncp++] = (uint32_t)i;
        i += len;
    }
    off[ncp] = (uint32_t)n;
    for (size_t i = 0; i < ncp;) {
        size_t j = t->pre == PRE_GPT2 ? match_gpt2(cp, cl, i, ncp) : match_llama3(cp, cl, i, ncp);
        if (bpe_piece(t, s + off[i], off[j] - off[i], w, o) != 0) return -1;
        i = j;
    }
    return 0;
}

/* ----------------------------------------------------------------------------------------------------------
 * SentencePiece BPE (highest score first) */

typedef struct {
    float score;
    int left, right;
    size_t size; /* bytes of left+right when queued: stale entries are skipped */
} spm_bigram;

typedef struct {
    const char *text;
    size_t n;
    int prev, next;
} spm_symbol;

typedef struct {
    scratch buf, sym, heap;
} spm_work;

static void free_spm_work(spm_work *w) { free(w->buf.p); free(w->sym.p); free(w->heap.p); }

static int bigram_before(const spm_bigram *a, const spm_bigram *b) { /* a pops first */
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(spm_bigram *h, size_t *n, spm_bigram x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static spm_bigram heap_pop(spm_bigram *h, size_t *n) {
    spm_bigram top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && bigram_before(&h[c + 1], &h[c])) c++;
        if (!bigram_before(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

static void spm_try_bigram(const be_tokenizer *t, spm_symbol *sym, int left, int right, spm_bigram *h, size_t *nh) {
    if (left < 0 || right < 0) return;
    size_t n = sym[left].n + sym[right].n;
    int32_t id = find_token(t, sym[left].text, n); /* the two are adjacent in the buffer */
    if (id < 0) return;
    spm_bigram b = {t->score ? t->score[id] : 0.0f, left, right, n};
    heap_push(h, nh, b);
}

static void spm_emit_symbol(const be_tokenizer *t, const char *s, size_t n, id_out *o) {
    int32_t id = find_token(t, s, n);
    if (id >= 0) { emit(o, id); return; }
    for (size_t i = 0; i < n; i++) { /* only single characters can be missing: merges only make tokens */
        int32_t b = t->byte_token[(unsigned char)s[i]];
        if (b < 0) b = t->unk;
        if (b >= 0) emit(o, b);
    }
}

static int spm_fragment(const be_tokenizer *t, const unsigned char *s, size_t n, int space_prefix, spm_work *w,
                        id_out *o) {
    /* ' ' -> U+2581 (3 bytes), plus the prefix */
    char *buf = scratch_get(&w->buf, 3 * n + 3);
    if (!buf) return -1;
    size_t len = 0;
    if (space_prefix) { memcpy(buf, "\xE2\x96\x81", 3); len = 3; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(buf + len, "\xE2\x96\x81", 3); len += 3; }
        else buf[len++] = (char)s[i];
    }
    if (len == 0) return 0;
    spm_symbol *sym = scratch_get(&w->sym, len * sizeof(spm_symbol));
    spm_bigram *heap = scratch_get(&w->heap, 3 * len * sizeof(spm_bigram));
    if (!sym || !heap) return -1;
    int ns = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t l = utf8_next((const unsigned char *)buf + i, len - i, &c);
        sym[ns] = (spm_symbol){buf + i, l, ns - 1, ns + 1};
        ns++;
        i += l;
    }
    sym[ns - 1].next = -1;
    size_t nh = 0;
    for (int i = 1; i < ns; i++) spm_try_bigram(t, sym, i - 1, i, heap, &nh);
    while (nh) {
        spm_bigram b = heap_pop(heap, &nh);
        spm_symbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        spm_try_bigram(t, sym, l->prev, b.left, heap, &nh);
        spm_try_bigram(t, sym, b.left, l->next, heap, &nh);
    }
    for (int i = 0; i >= 0; i = sym[i].next) spm_emit_symbol(t, sym[i].text, sym[i].n, o);
    return 0;
}

/* ----------------------------------------------------------------------------------------------------------
 * encode */

/* The longest special token at s[0..n), or -1. */
static int32_t match_special(const be_tokenizer *t, const char *s, size_t n) {
    if (!t->special_first[(unsigned char)s[0]]) return -1;
    for (int k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        size_t l = token_len(t, id);
        if (l <= n && memcmp(token_str(t, id), s, l) == 0) return id;
    }
    return -1;
}

int be_encode(const be_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *out, int max_out) {
    if (!t || (!text && len) || max_out < 0 || (!out && max_out > 0)) return -1;
    if (len > INT32_MAX / 4) return -1; /* offsets and counts stay in int32 */
    id_out o = {out, 0, max_out, 0};
    if (add_bos < 0) add_bos = t->add_bos;
    if (add_bos && t->bos >= 0) emit(&o, t->bos);
    bpe_work bw = {0};
    spm_work sw = {0};
    int rc = 0, prev_special = 1;
    size_t start = 0;
    for (size_t i = 0; i <= len && rc == 0;) {
        int32_t sp = i < len ? match_special(t, text + i, len - i) : -1;
        if (i < len && sp < 0) { i++; continue; }
        if (i > start) { /* the text before the special token (or the end) */
            const unsigned char *frag = (const unsigned char *)text + start;
            if (t->kind == KIND_BPE) rc = bpe_fragment(t, frag, i - start, &bw, &o);
            else rc = spm_fragment(t, frag, i - start, t->add_space_prefix && prev_special, &sw, &o);
            prev_special = 0;
        }
        if (i == len) break;
        emit(&o, sp);
        prev_special = 1;
        i += token_len(t, sp);
        start = i;
    }
    free_bpe_work(&bw);
    free_spm_work(&sw);
    if (rc != 0 || o.overflow) return -1;
    return o.n;
}

/* ----------------------------------------------------------------------------------------------------------
 * decode */

const char *be_token_piece(const be_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_tokens) { if (len) *len = 0; return NULL; }
    if (len) *len = t->piece_off[id + 1] - t->piece_off[id];
    return t->piece + t->piece_off[id];
}

const char *be_token_text(const be_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_tokens) { if (len) *len = 0; return NULL; }
    if (len) *len = token_len(t, id);
    return token_str(t, id);
}

long be_decode(const be_tokenizer *t, const int32_t *ids, int n, char *out, size_t cap) {
    if (!t || n < 0 || (n > 0 && !ids)) return -1;
    size_t total = 0;
    int first = 1;
    for (int i = 0; i < n; i++) {
        size_t l;
        const char *p = be_token_piece(t, ids[i], &l);
        if (!p) return -1;
        if (!l) continue;
        if (first && t->kind == KIND_SPM && t->add_space_prefix && p[0] == ' ') { p++; l--; } /* the prefix */
        first = 0;
        if (out && total < cap) memcpy(out + total, p, l < cap - total ? l : cap - total);
        total += l;
    }
    return (long)total;
}

int be_token_count(const be_tokenizer *t) { return t ? t->n_tokens : 0; }
int be_token_bos(const be_tokenizer *t) { return t ? t->bos : -1; }
int be_token_eos(const be_tokenizer *t) { return t ? t->eos : -1; }

int be_token_is_eog(const be_tokenizer *t, int32_t id) {
    if (!t || id < 0) return 0;
    for (int k = 0; k < t->n_eog; k++)
        if (t->eog[k] == id) return 1;
    return 0;
}

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

/* ----------------------------------------------------------------------------------------------------------
 * chat formats */

static int contains(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (k > n) return 0;
    for (size_t i = 0; i + k <= n; i++)
        if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0) return 1;
    return 0;
}

be_chat_style be_chat_detect(const char *tmpl, size_t len) {
    if (!tmpl || !len) return BE_CHAT_PLAIN;
    if (contains(tmpl, len, "<|start_header_id|>") && contains(tmpl, len, "<|end_header_id|>")) return BE_CHAT_LLAMA3;
    if (contains(tmpl, len, "<|im_start|>") && contains(tmpl, len, "<|im_end|>")) return BE_CHAT_CHATML;
    if (contains(tmpl, len, "capitalize") && contains(tmpl, len, "<|eot_id|>") && contains(tmpl, len, "Assistant: "))
        return BE_CHAT_BITNET;
    if (contains(tmpl, len, "BITNETAssistant")) return BE_CHAT_BITNET; /* the placeholder: see be_chat_format */
    return BE_CHAT_UNKNOWN;
}

be_chat_style be_chat_style_of(const be_tokenizer *t) {
    if (!t) return BE_CHAT_UNKNOWN;
    return be_chat_detect(t->chat_template, t->chat_template_len);
}

const char *be_chat_style_name(be_chat_style s) {
    switch (s) {
    case BE_CHAT_PLAIN: return "plain";
    case BE_CHAT_BITNET: return "bitnet";
    case BE_CHAT_LLAMA3: return "llama3";
    case BE_CHAT_CHATML: return "chatml";
    default: return "unknown";
    }
}

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Jinja's trim: strips Unicode-agnostic ASCII whitespace as Python's str.strip() does for ASCII */
static void sb_trimmed(strbuf *b, const char *s) {
    size_t n = strlen(s), i = 0;
    while (i < n && (s[i] == ' ' || (s[i] >= 0x09 && s[i] <= 0x0D))) i++;
    while (n > i && (s[n - 1] == ' ' || (s[n - 1] >= 0x09 && s[n - 1] <= 0x0D))) n--;
    sb_add(b, s + i, n - i);
}

/* Jinja's capitalize: first character upper case, the rest lower case (ASCII roles) */
static void sb_capitalized(strbuf *b, const char *s) {
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (i == 0 && c >= 'a' && c <= 'z') c = (char)(c - 32);
        else if (i > 0 && c >= 'A' && c <= 'Z') c = (char)(c + 32);
        sb_add(b, &c, 1);
    }
}

/* Literal text before the template's first tag, e.g. a fixed system line. */
static size_t literal_prefix(const char *tmpl, size_t len) {
    size_t i = 0;
    while (i < len && tmpl[i] != '{') i++;
    return i;
}

char *be_chat_format_messages(const be_tokenizer *t, const be_chat_message *msgs, int n, char *err, size_t errlen) {
    if (!t || n < 0 || (n > 0 && !msgs)) { gguf_set_err(err, errlen, "no messages"); return NULL; }
    const char *tmpl = t->chat_template;
    size_t tlen = t->chat_template_len;
    be_chat_style style = be_chat_detect(tmpl, tlen);
    if (style == BE_CHAT_UNKNOWN) {
        gguf_set_err(err, errlen, "tokenizer.chat_template is not one this runtime knows (BitNet b1.58 2B-4T, Llama-3, "
                "ChatML); it starts \"%.40s\"", tmpl);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) { gguf_set_err(err, errlen, "message %d has no role or content", i); return NULL; }
    /* Microsoft's converter writes a placeholder ("Human: ... BITNETAssistant: ") into ggml-model-i2_s.gguf that
     * the model was not trained on (it rambles and never stops): use the trained format of the model repository's
     * tokenizer_config.json instead, with its BOS and trimming. */
    int placeholder = tmpl && contains(tmpl, tlen, "BITNETAssistant");
    int trim = placeholder || (tmpl && (contains(tmpl, tlen, "| trim") || contains(tmpl, tlen, "|trim") ||
                                        contains(tmpl, tlen, ".strip()")));
    /* the BOS as text, where the template writes it (or, for the plain format, where the file wants one) */
    int bos = (placeholder || (tmpl && contains(tmpl, tlen, "bos_token")) || (style == BE_CHAT_PLAIN && t->add_bos)) &&
              t->bos >= 0;
    strbuf b = {0};
    sb_add(&b, "", 0);
    if (tmpl && style != BE_CHAT_PLAIN && !placeholder) sb_add(&b, tmpl, literal_prefix(tmpl, tlen));
    if (bos) sb_add(&b, token_str(t, t->bos), token_len(t, t->bos)); /* on the first message, as the templates do */
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role, *content = msgs[i].content;
        switch (style) {
        case BE_CHAT_BITNET:
            sb_capitalized(&b, role);
            sb_str(&b, ": ");
            if (trim) sb_trimmed(&b, content); else sb_str(&b, content);
            sb_str(&b, "<|eot_id|>");
            break;
        case BE_CHAT_LLAMA3:
            sb_str(&b, "<|start_header_id|>");
            sb_str(&b, role);
            sb_str(&b, "<|end_header_id|>\n\n");
            if (trim) sb_trimmed(&b, content); else sb_str(&b, content);
            sb_str(&b, "<|eot_id|>");
            break;
        case BE_CHAT_CHATML:
            sb_str(&b, "<|im_start|>");
            sb_str(&b, role);
            sb_str(&b, "\n");
            if (trim) sb_trimmed(&b, content); else sb_str(&b, content);
            sb_str(&b, "<|im_end|>\n");
            break;
        default: /* plain */
            sb_capitalized(&b, role);
            sb_str(&b, ": ");
            sb_str(&b, content);
            sb_str(&b, "\n");
            break;
        }
    }
    switch (style) {
    case BE_CHAT_BITNET: sb_str(&b, "Assistant: "); break;
    case BE_CHAT_LLAMA3: sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n"); break;
    case BE_CHAT_CHATML: sb_str(&b, "<|im_start|>assistant\n"); break;
    default: sb_str(&b, "Assistant:"); break;
    }
    if (b.oom) { free(b.p); gguf_set_err(err, errlen, "out of memory for the chat text"); return NULL; }
    return b.p;
}

char *be_chat_format(const be_tokenizer *t, const char *user_text, char *err, size_t errlen) {
    be_chat_message m = {"user", user_text};
    return be_chat_format_messages(t, &m, 1, err, errlen);
}
