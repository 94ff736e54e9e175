/* tokenizer.c: byte-level BPE ("gpt2", Llama-3 / GPT-2 pre-tokenizers) and SentencePiece BPE ("llama") encoders,
 * and piece decoding. Building a tokenizer from a GGUF vocabulary is in tokenizer_build.c, the chat formats in
 * tokenizer_chat.c; the struct and the small helpers they share in tokenizer_impl.h. See tokenizer.h. */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "unicode_tables.h"


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
