/* fuzz_gguf: drive the GGUF loader (gguf.c) and the model builder (model.c) with untrusted files.
 *
 * Every input is copied into a 64-byte aligned heap buffer whose bytes after the input are poisoned for ASan, and
 * parsed with gguf_open_memory: under -fsanitize=address one byte read past the end is a report, not a silent
 * read of the next page. After a file
 * loads, every key is read with every getter, every string and tensor byte is touched, and build_model_ex runs
 * (all packings accepted) — so the sizes the loader promises are tested too.
 *
 *   fuzz_gguf FILE...                one line per file: "OK <path>" or "ERR <path>: <message>"
 *   fuzz_gguf --list LISTFILE        the same for paths listed one per line
 *   fuzz_gguf --mmap FILE            through gguf_open (the mmap path), one line
 *   fuzz_gguf --dump FILE            keys, tensors and the model config, for tests comparing with Python
 *   fuzz_gguf --truncate FILE [MAX]  every prefix of FILE of length 0..MAX (default: whole file)
 *   fuzz_gguf --mutate FILE SEED N   N random mutations of FILE (byte flips, random runs, huge counts, ...)
 * The last three print a summary "files N ok A err B". Exit status 0 unless the driver itself fails (bad usage,
 * unreadable file); a crash or sanitizer report is the failure the tests look for.
 *
 * Built with -DBE_LIBFUZZER it is instead a libFuzzer target (clang -fsanitize=fuzzer). With -DBE_FUZZ_TOKENIZER
 * (and tokenizer*.c linked in) every model that builds also goes through build_tokenizer / be_encode / be_decode.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"

#if defined(__SANITIZE_ADDRESS__)
#define BE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BE_ASAN 1
#endif
#endif
#ifdef BE_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* ----------------------------------------------------------------------------------------------------------
 * exercise a loaded file */

static uint64_t fnv1a(const void *p, uint64_t n, uint64_t h) {
    const uint8_t *b = p;
    for (uint64_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
#define FNV_SEED 0xcbf29ce484222325ULL

static volatile uint64_t sink;  /* keeps the reads from being optimized away */

static void touch_model(const be_model *m) {
    const be_vocab_view *v = &m->vocab;
    uint64_t h = FNV_SEED;
    for (uint64_t i = 0; i < v->n_tokens; i++) h = fnv1a(v->tokens[i].ptr, v->tokens[i].len, h);
    for (uint64_t i = 0; i < v->n_merges; i++) h = fnv1a(v->merges[i].ptr, v->merges[i].len, h);
    if (v->token_type) h = fnv1a(v->token_type, v->n_tokens * 4, h);
    if (v->scores) h = fnv1a(v->scores, v->n_tokens * 4, h);
    h = fnv1a(v->model.ptr, v->model.len, h);
    h = fnv1a(v->pre.ptr, v->pre.len, h);
    h = fnv1a(v->chat_template.ptr, v->chat_template.len, h);
    const be_config *c = &m->config;
    for (int l = 0; l < c->n_layers; l++) {
        const be_layer *L = &m->layers[l];
        h = fnv1a(L->attn_norm, (uint64_t)c->hidden * 4, h);
        h = fnv1a(L->ffn_norm, (uint64_t)c->hidden * 4, h);
        if (L->attn_sub_norm) h = fnv1a(L->attn_sub_norm, (uint64_t)c->n_heads * c->head_dim * 4, h);
        if (L->ffn_sub_norm) h = fnv1a(L->ffn_sub_norm, (uint64_t)c->ffn * 4, h);
        int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
        h = fnv1a(L->attn_q, (uint64_t)be_packed_nbytes(c->packing, q, c->hidden), h);
        h = fnv1a(L->attn_k, (uint64_t)be_packed_nbytes(c->packing, kv, c->hidden), h);
        h = fnv1a(L->attn_v, (uint64_t)be_packed_nbytes(c->packing, kv, c->hidden), h);
        h = fnv1a(L->attn_output, (uint64_t)be_packed_nbytes(c->packing, c->hidden, q), h);
        h = fnv1a(L->ffn_gate, (uint64_t)be_packed_nbytes(c->packing, c->ffn, c->hidden), h);
        h = fnv1a(L->ffn_up, (uint64_t)be_packed_nbytes(c->packing, c->ffn, c->hidden), h);
        h = fnv1a(L->ffn_down, (uint64_t)be_packed_nbytes(c->packing, c->hidden, c->ffn), h);
    }
    h = fnv1a(m->output_norm, (uint64_t)c->hidden * 4, h);
    sink += h;
}

/* A key as a NUL-terminated string (keys are not NUL-terminated in the file), cut at GGUF_MAX_NAME bytes. */
static void copy_key(const gguf_kv *kv, char key[GGUF_MAX_NAME + 1]) {
    size_t n = kv->key.len < GGUF_MAX_NAME ? (size_t)kv->key.len : GGUF_MAX_NAME;
    memcpy(key, kv->key.ptr, n);
    key[n] = 0;
}

/* Read everything the loader promises is in bounds; then build the model. Returns 0, or -1 with err set. */
static int exercise(const gguf_file *f, char *err, size_t errlen) {
    uint64_t h = FNV_SEED;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        char key[GGUF_MAX_NAME + 1];
        copy_key(kv, key);
        uint32_t u32;
        int32_t i32;
        int64_t i64;
        float f32;
        int b;
        gguf_str s;
        uint32_t et;
        uint64_t an;
        const void *data;
        const gguf_str *strs;
        h ^= (uint64_t)gguf_get_u32(f, key, &u32) + (uint64_t)gguf_get_i32(f, key, &i32) +
             (uint64_t)gguf_get_i64(f, key, &i64) + (uint64_t)gguf_get_f32(f, key, &f32) +
             (uint64_t)gguf_get_bool(f, key, &b);
        if (gguf_get_str(f, key, &s) == GGUF_OK) h = fnv1a(s.ptr, s.len, h);
        if (gguf_get_arr(f, key, &et, &an, &data) == GGUF_OK && et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY) {
            uint64_t size = et == GGUF_TYPE_UINT8 || et == GGUF_TYPE_INT8 || et == GGUF_TYPE_BOOL ? 1
                            : et == GGUF_TYPE_UINT16 || et == GGUF_TYPE_INT16                  ? 2
                            : et == GGUF_TYPE_UINT64 || et == GGUF_TYPE_INT64 || et == GGUF_TYPE_FLOAT64 ? 8
                                                                                                          : 4;
            h = fnv1a(data, an * size, h);
        }
        if (gguf_get_arr_strs(f, key, &an, &strs) == GGUF_OK)
            for (uint64_t j = 0; j < an; j++) h = fnv1a(strs[j].ptr, strs[j].len, h);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (gguf_find_tensor(f, t->name) != t) {
            snprintf(err, errlen, "driver: gguf_find_tensor('%s') found another tensor", t->name);
            return -2;
        }
        h = fnv1a(t->data, t->nbytes, h);
    }
    sink += h;
    be_model m;
    unsigned all = BE_PACKINGS_BITEDGE | BE_PACK_MASK(BE_PACK_TQ2_0);
    if (build_model_ex(f, &m, all, err, errlen) != 0) return -1;
    touch_model(&m);
#ifdef BE_FUZZ_TOKENIZER
    /* what bitedge-run does next: the tokenizer validates the vocabulary view, then encodes and decodes */
    char terr[256];
    be_tokenizer *tok = build_tokenizer(&m.vocab, terr, sizeof(terr));
    if (tok) {
        static const char text[] = "Hello world! <s></s> 123 \xc3\xa9\xff";
        int32_t ids[sizeof(text) + 8];
        int n = be_encode(tok, text, sizeof(text) - 1, -1, ids, (int)(sizeof(ids) / sizeof(ids[0])));
        char out[512];
        if (n > 0) sink += (uint64_t)be_decode(tok, ids, n, out, sizeof(out));
        free_tokenizer(tok);
    }
#endif
    free_model(&m);
    return 0;
}

/* A copy of the input that starts 64-byte aligned (as a mapping would, so tensors can pass model.c's alignment
 * check) and ends exactly at the last valid byte: under ASan the slack after it is poisoned. */
static uint8_t *aligned_copy(const uint8_t *bytes, size_t size, void **block) {
    uint8_t *raw = malloc(size + 64);
    *block = raw;
    if (!raw) return NULL;
    uint8_t *buf = raw + (64 - (uintptr_t)raw % 64) % 64;
    if (size) memcpy(buf, bytes, size);
#ifdef BE_ASAN
    ASAN_POISON_MEMORY_REGION(buf + size, (size_t)(raw + size + 64 - (buf + size)));
#endif
    return buf;
}

static void free_copy(void *block, size_t size) {
#ifdef BE_ASAN
    ASAN_UNPOISON_MEMORY_REGION(block, size + 64);
#else
    (void)size;
#endif
    free(block);
}

/* Parse size bytes (copied, see aligned_copy). 1 loaded and built, 0 refused (err set), -2 driver bug. */
static int check_buffer(const uint8_t *bytes, size_t size, char *err, size_t errlen) {
    void *block;
    uint8_t *buf = aligned_copy(bytes, size, &block);
    if (!buf) {
        snprintf(err, errlen, "driver: out of memory");
        return 0;
    }
    err[0] = 0;
    gguf_file *f = gguf_open_memory(buf, size, err, errlen);
    int rc = 0;
    if (f) {
        int e = exercise(f, err, errlen);
        rc = e == 0 ? 1 : e == -2 ? -2 : 0;
        gguf_close(f);
    }
    if (rc == 0 && err[0] == 0) {  /* every refusal must say why */
        snprintf(err, errlen, "driver: refused without a message");
        rc = -2;
    }
    free_copy(block, size);
    return rc;
}

#ifdef BE_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    if (check_buffer(data, size, err, sizeof(err)) == -2) abort();
    return 0;
}
#else

/* ----------------------------------------------------------------------------------------------------------
 * command line */

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (n < cap) break;
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    fclose(fp);
    *size = n;
    return buf;
}

typedef struct {
    long files, ok, refused, bugs;
} tally;

static void count(tally *t, int rc, const char *what, const char *err) {
    t->files++;
    if (rc == 1) t->ok++;
    else if (rc == 0) t->refused++;
    else {
        t->bugs++;
        printf("BUG %s: %s\n", what, err);
    }
}

static int check_path(const char *path, tally *t) {
    size_t size;
    char err[512];
    uint8_t *bytes = read_file(path, &size);
    if (!bytes) {
        fprintf(stderr, "fuzz_gguf: cannot read %s\n", path);
        return -1;
    }
    int rc = check_buffer(bytes, size, err, sizeof(err));
    free(bytes);
    if (rc == 1) printf("OK %s\n", path);
    else if (rc == 0) printf("ERR %s: %s\n", path, err);
    count(t, rc, path, err);
    return 0;
}

/* xorshift64*: deterministic, seedable */
static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* One random mutation of buf (size bytes) in place; may shrink *size. Offsets favour the header region, where the
 * counts, lengths and types live. */
static void mutate(uint8_t *buf, size_t *size, size_t header_end) {
    size_t n = *size;
    if (n == 0) return;
    size_t region = header_end && header_end < n && rnd() % 4 ? header_end : n;
    size_t at = (size_t)(rnd() % region);
    switch (rnd() % 7) {
    case 0:  /* flip one bit */
        buf[at] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 1: { /* a run of random bytes */
        size_t len = 1 + rnd() % 16;
        for (size_t i = 0; i < len && at + i < n; i++) buf[at + i] = (uint8_t)rnd();
        break;
    }
    case 2: { /* a huge or boundary 64-bit value (counts, lengths, dims, offsets) */
        static const uint64_t vals[] = {0, 1, 0xFFFFFFFFFFFFFFFFULL, 0x7FFFFFFFFFFFFFFFULL, 0x8000000000000000ULL,
                                        0xFFFFFFFFULL, 0x100000000ULL, 1ULL << 40, 0xFFFFFFFFFFFFFFF0ULL, 4096, 33};
        uint64_t v = vals[rnd() % (sizeof(vals) / sizeof(vals[0]))];
        for (int i = 0; i < 8 && at + (size_t)i < n; i++) buf[at + (size_t)i] = (uint8_t)(v >> (8 * i));
        break;
    }
    case 3: { /* a small 32-bit value: a type id, n_dims or a version */
        uint32_t v = (uint32_t)(rnd() % 40);
        if (rnd() % 4 == 0) v = (uint32_t)rnd();
        for (int i = 0; i < 4 && at + (size_t)i < n; i++) buf[at + (size_t)i] = (uint8_t)(v >> (8 * i));
        break;
    }
    case 4: /* truncate */
        *size = at;
        break;
    case 5: { /* copy a chunk from elsewhere (duplicates names and keys, shifts structure) */
        size_t from = (size_t)(rnd() % n), len = 1 + rnd() % 64;
        if (from + len > n) len = n - from;
        if (at + len > n) len = n - at;
        memmove(buf + at, buf + from, len);
        break;
    }
    default: /* increment or decrement a byte (off-by-one lengths) */
        buf[at] = (uint8_t)(buf[at] + (rnd() % 2 ? 1 : 0xFF));
        break;
    }
}

/* Where the header region (everything before the data section) ends, from a clean parse; 0 if it does not parse. */
static size_t header_end_of(const uint8_t *bytes, size_t size) {
    char err[256];
    gguf_file *f = gguf_open_memory(bytes, size, err, sizeof(err));
    if (!f) return 0;
    size_t end = (size_t)f->data_offset;
    gguf_close(f);
    return end;
}

static int cmd_mutate(const char *path, uint64_t seed, long n) {
    size_t size;
    uint8_t *orig = read_file(path, &size);
    if (!orig) {
        fprintf(stderr, "fuzz_gguf: cannot read %s\n", path);
        return 1;
    }
    size_t header_end = header_end_of(orig, size);
    uint8_t *work = malloc(size ? size : 1);
    tally t = {0};
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (long i = 0; i < n; i++) {
        memcpy(work, orig, size);
        size_t wsize = size;
        int n_mut = 1 + (int)(rnd() % 4);
        for (int j = 0; j < n_mut; j++) mutate(work, &wsize, header_end);
        char err[512], what[64];
        snprintf(what, sizeof(what), "mutation %ld (seed %" PRIu64 ")", i, seed);
        count(&t, check_buffer(work, wsize, err, sizeof(err)), what, err);
    }
    printf("files %ld ok %ld err %ld bugs %ld\n", t.files, t.ok, t.refused, t.bugs);
    free(work);
    free(orig);
    return t.bugs ? 1 : 0;
}

static int cmd_truncate(const char *path, long max) {
    size_t size;
    uint8_t *orig = read_file(path, &size);
    if (!orig) {
        fprintf(stderr, "fuzz_gguf: cannot read %s\n", path);
        return 1;
    }
    tally t = {0};
    size_t last = max >= 0 && (size_t)max < size ? (size_t)max : size;
    for (size_t len = 0; len <= last; len++) {
        char err[512], what[64];
        snprintf(what, sizeof(what), "prefix %zu", len);
        int rc = check_buffer(orig, len, err, sizeof(err));
        count(&t, rc, what, err);
        if (rc == 1 && len < size) printf("LOADED-PREFIX %zu\n", len);
    }
    printf("files %ld ok %ld err %ld bugs %ld\n", t.files, t.ok, t.refused, t.bugs);
    free(orig);
    return t.bugs ? 1 : 0;
}

static void print_hex(const char *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) printf("%02x", (unsigned char)p[i]);
    if (n == 0) printf("-");
}

/* One line per key, tensor and config field; strings hex-encoded so any byte survives. */
static int cmd_dump(const char *path) {
    char err[512];
    gguf_file *f = gguf_open(path, err, sizeof(err));
    if (!f) {
        printf("ERR %s\n", err);
        return 0;
    }
    printf("VERSION %u\nALIGNMENT %u\nDATA_OFFSET %" PRIu64 "\n", f->version, f->alignment, f->data_offset);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        char key[GGUF_MAX_NAME + 1];
        copy_key(kv, key);
        printf("KV %s %s ", key, gguf_type_name(kv->type));
        int64_t i64;
        float f32;
        int b;
        gguf_str s;
        uint64_t an;
        const gguf_str *strs;
        uint32_t et;
        const void *data;
        if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64) {
            gguf_get_f32(f, key, &f32);
            printf("%.9g", (double)f32);
        } else if (kv->type == GGUF_TYPE_BOOL) {
            gguf_get_bool(f, key, &b);
            printf("%d", b);
        } else if (kv->type == GGUF_TYPE_STRING) {
            gguf_get_str(f, key, &s);
            print_hex(s.ptr, s.len);
        } else if (gguf_get_arr_strs(f, key, &an, &strs) == GGUF_OK) {
            printf("str %" PRIu64, an);
            for (uint64_t j = 0; j < an; j++) {
                printf(" ");
                print_hex(strs[j].ptr, strs[j].len);
            }
        } else if (gguf_get_arr(f, key, &et, &an, &data) == GGUF_OK) {
            printf("%s %" PRIu64, gguf_type_name(et), an);
            const uint8_t *p = data;
            for (uint64_t j = 0; j < an && et != GGUF_TYPE_ARRAY; j++) {
                if (et == GGUF_TYPE_INT32) { int32_t v; memcpy(&v, p + 4 * j, 4); printf(" %d", v); }
                else if (et == GGUF_TYPE_UINT32) { uint32_t v; memcpy(&v, p + 4 * j, 4); printf(" %u", v); }
                else if (et == GGUF_TYPE_FLOAT32) { float v; memcpy(&v, p + 4 * j, 4); printf(" %.9g", (double)v); }
                else if (et == GGUF_TYPE_UINT8 || et == GGUF_TYPE_BOOL) printf(" %u", p[j]);
                else if (et == GGUF_TYPE_INT64) { int64_t v; memcpy(&v, p + 8 * j, 8); printf(" %" PRId64, v); }
                else { printf(" ?"); break; }
            }
        } else if (gguf_get_i64(f, key, &i64) == GGUF_OK) {
            printf("%" PRId64, i64);
        } else {
            printf("?");
        }
        printf("\n");
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        printf("T %s %s %u", t->name, ggml_type_name(t->type), t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) printf(" %" PRId64, t->ne[d]);
        printf(" offset %" PRIu64 " nbytes %" PRIu64 " fnv %016" PRIx64 "\n", t->offset, t->nbytes,
               fnv1a(t->data, t->nbytes, FNV_SEED));
    }
    be_model m;
    unsigned all = BE_PACKINGS_BITEDGE | BE_PACK_MASK(BE_PACK_TQ2_0);
    if (build_model_ex(f, &m, all, err, sizeof(err)) != 0) {
        printf("MODEL-ERR %s\n", err);
    } else {
        const be_config *c = &m.config;
        printf("MODEL name=%s vocab=%d ctx=%d hidden=%d ffn=%d layers=%d heads=%d kv_heads=%d head_dim=%d "
               "eps=%.9g theta=%.9g act=%d sub_norms=%d tie=%d embed=%s packing=%s params=%" PRId64 "\n",
               c->name, c->vocab_size, c->context_length, c->hidden, c->ffn, c->n_layers, c->n_heads, c->n_kv_heads,
               c->head_dim, (double)c->rms_eps, (double)c->rope_theta, c->ffn_act, c->sub_norms, c->tie_embeddings,
               m.embed_type_name, m.packing_name, be_model_n_params(&m));
        printf("SCALES");
        for (int l = 0; l < c->n_layers; l++) {
            const be_layer *L = &m.layers[l];
            printf(" %.9g %.9g %.9g %.9g %.9g %.9g %.9g", (double)L->attn_q_scale, (double)L->attn_k_scale,
                   (double)L->attn_v_scale, (double)L->attn_output_scale, (double)L->ffn_gate_scale,
                   (double)L->ffn_up_scale, (double)L->ffn_down_scale);
        }
        const be_vocab_view *v = &m.vocab;
        printf("\nVOCAB n_tokens=%" PRIu64 " n_merges=%" PRIu64 " bos=%" PRId64 " eos=%" PRId64 " add_bos=%d "
               "add_eos=%d token_type=%d scores=%d\n", v->n_tokens, v->n_merges, v->bos_id, v->eos_id, v->add_bos,
               v->add_eos, v->token_type != NULL, v->scores != NULL);
        free_model(&m);
        if (build_model(f, &m, err, sizeof(err)) != 0) printf("RUNTIME-ERR %s\n", err);  /* the runtime's packings */
        else free_model(&m);
    }
    gguf_close(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz_gguf FILE... | --list F | --mmap F | --dump F | --truncate F [MAX] | "
                        "--mutate F SEED N\n");
        return 2;
    }
    if (!strcmp(argv[1], "--dump") && argc == 3) return cmd_dump(argv[2]);
    if (!strcmp(argv[1], "--overread-selftest") && argc == 3) {  /* proves the harness catches a 1-byte overread */
        size_t n = (size_t)atol(argv[2]);
        uint8_t *zeros = calloc(n + 1, 1);
        void *block;
        const volatile uint8_t *buf = aligned_copy(zeros, n, &block);
        sink += buf[n];
        free_copy(block, n);
        free(zeros);
        printf("no report\n");
        return 0;
    }
    if (!strcmp(argv[1], "--truncate") && (argc == 3 || argc == 4)) return cmd_truncate(argv[2], argc == 4 ? atol(argv[3]) : -1);
    if (!strcmp(argv[1], "--mutate") && argc == 5)
        return cmd_mutate(argv[2], strtoull(argv[3], NULL, 10), atol(argv[4]));
    if (!strcmp(argv[1], "--mmap") && argc == 3) {
        char err[512];
        gguf_file *f = gguf_open(argv[2], err, sizeof(err));
        if (!f) {
            printf("ERR %s: %s\n", argv[2], err);
            return 0;
        }
        int rc = exercise(f, err, sizeof(err));
        if (rc == 0) printf("OK %s\n", argv[2]);
        else printf("%s %s: %s\n", rc == -2 ? "BUG" : "ERR", argv[2], err);
        gguf_close(f);
        return rc == -2;
    }
    tally t = {0};
    if (!strcmp(argv[1], "--list") && argc == 3) {
        FILE *fp = fopen(argv[2], "r");
        if (!fp) {
            fprintf(stderr, "fuzz_gguf: cannot read %s\n", argv[2]);
            return 2;
        }
        char line[4096];
        while (fgets(line, sizeof(line), fp)) {
            line[strcspn(line, "\r\n")] = 0;
            if (line[0] && check_path(line, &t) != 0) {
                fclose(fp);
                return 2;
            }
        }
        fclose(fp);
    } else {
        for (int i = 1; i < argc; i++)
            if (check_path(argv[i], &t) != 0) return 2;
    }
    printf("files %ld ok %ld err %ld bugs %ld\n", t.files, t.ok, t.refused, t.bugs);
    return t.bugs ? 1 : 0;
}
#endif
