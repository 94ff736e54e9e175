/* tokenize_main.c: drives tokenizer.c from the tokenizer.* keys of a GGUF file, for tests/test_c_tokenizer.py.
 *
 *   tokenize_main FILE.gguf encode RECORDS [BOS]    one line of ids per record ("" for none); BOS 1, 0 or -1
 *   tokenize_main FILE.gguf decode IDS              per line of ids: "<n>\n" then the n decoded bytes
 *   tokenize_main FILE.gguf pieces                  per token: "<n>\n" then be_token_piece's n bytes
 *   tokenize_main FILE.gguf chat RECORDS            records alternate role, content; prints the formatted chat
 *   tokenize_main FILE.gguf info                    model facts, one "key value" per line
 *
 * RECORDS files are a sequence of (uint32 little-endian length, bytes). The file is read with gguf.h (tensors are
 * not needed) and be_vocab_view is filled as model.c does for the runtime.
 * Build: cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -I kernels/runtime kernels/tests/tokenize_main.c
 *        kernels/runtime/tokenizer*.c kernels/runtime/gguf.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

static void die(const char *msg, const char *arg) {
    fprintf(stderr, "tokenize_main: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) die("out of memory", NULL);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    fclose(f);
    *len = n;
    return buf;
}

/* ----------------------------------------------------------------------------------------------------------
 * tokenizer.* keys -> be_vocab_view, through gguf.h (as model.c's loader does for the runtime) */

typedef struct {
    be_vocab_view v;
    gguf_file *file;  /* the view's strings point into its mapping */
    int32_t *types;   /* aligned copies of the per-token arrays */
    float *scores;
} vocab_storage;

static be_vocab_str str_key(const gguf_file *f, const char *key) {
    gguf_str s = {NULL, 0};
    int rc = gguf_get_str(f, key, &s);
    if (rc != GGUF_OK && rc != GGUF_ABSENT) die("not a string", key);
    return s;
}

static int64_t int_key(const gguf_file *f, const char *key) {
    int64_t v = -1;
    int rc = gguf_get_i64(f, key, &v);
    if (rc != GGUF_OK && rc != GGUF_ABSENT) die("not an integer", key);
    return rc == GGUF_OK ? v : -1;
}

static int flag_key(const gguf_file *f, const char *key) {
    int v = -1;
    int rc = gguf_get_bool(f, key, &v);
    if (rc != GGUF_OK && rc != GGUF_ABSENT) die("not a bool", key);
    return rc == GGUF_OK ? v : -1;
}

static const be_vocab_str *strs_key(const gguf_file *f, const char *key, uint64_t *n) {
    const gguf_str *s = NULL;
    *n = 0;
    int rc = gguf_get_arr_strs(f, key, n, &s);
    if (rc != GGUF_OK && rc != GGUF_ABSENT) die("not an array of strings", key);
    return s;
}

static void *numbers_key(const gguf_file *f, const char *key, uint32_t want, uint64_t n_tokens) {
    uint32_t type;
    uint64_t n;
    const void *data;
    int rc = gguf_get_arr(f, key, &type, &n, &data);
    if (rc == GGUF_ABSENT) return NULL;
    if (rc != GGUF_OK || type != want || n != n_tokens) die("wrong type or length", key);
    void *copy = malloc(n ? n * 4 : 1);
    if (!copy) die("out of memory", NULL);
    memcpy(copy, data, n * 4);
    return copy;
}

static void read_vocab(const char *path, vocab_storage *s) {
    char err[256];
    memset(s, 0, sizeof(*s));
    gguf_file *f = gguf_open(path, err, sizeof(err));
    if (!f) die(err, NULL);
    s->file = f;
    be_vocab_view *v = &s->v;
    v->model = str_key(f, "tokenizer.ggml.model");
    v->pre = str_key(f, "tokenizer.ggml.pre");
    v->chat_template = str_key(f, "tokenizer.chat_template");
    v->tokens = strs_key(f, "tokenizer.ggml.tokens", &v->n_tokens);
    v->merges = strs_key(f, "tokenizer.ggml.merges", &v->n_merges);
    v->token_type = s->types = numbers_key(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->n_tokens);
    v->scores = s->scores = numbers_key(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->n_tokens);
    v->bos_id = int_key(f, "tokenizer.ggml.bos_token_id");
    v->eos_id = int_key(f, "tokenizer.ggml.eos_token_id");
    v->unknown_id = int_key(f, "tokenizer.ggml.unknown_token_id");
    v->padding_id = int_key(f, "tokenizer.ggml.padding_token_id");
    v->add_bos = flag_key(f, "tokenizer.ggml.add_bos_token");
    v->add_eos = flag_key(f, "tokenizer.ggml.add_eos_token");
    v->add_space_prefix = flag_key(f, "tokenizer.ggml.add_space_prefix");
}

static void free_vocab(vocab_storage *s) {
    gguf_close(s->file);
    free(s->types);
    free(s->scores);
}

/* ----------------------------------------------------------------------------------------------------------
 * records */

typedef struct {
    char *buf;
    size_t len, pos;
} records;

static int next_record(records *r, const char **s, size_t *n) {
    if (r->pos == r->len) return 0;
    if (r->len - r->pos < 4) die("truncated records file", NULL);
    uint32_t l;
    memcpy(&l, r->buf + r->pos, 4);
    r->pos += 4;
    if (r->len - r->pos < l) die("truncated records file", NULL);
    *s = r->buf + r->pos;
    *n = l;
    r->pos += l;
    return 1;
}

static int cmd_encode(const be_tokenizer *t, const char *path, int bos) {
    records r = {0};
    r.buf = read_file(path, &r.len);
    const char *s;
    size_t n;
    int32_t *ids = NULL;
    size_t cap = 0;
    while (next_record(&r, &s, &n)) {
        if (n + 8 > cap) {
            cap = n + 8;
            ids = realloc(ids, cap * sizeof(int32_t));
            if (!ids) die("out of memory", NULL);
        }
        int k = be_encode(t, s, n, bos, ids, (int)cap);
        if (k < 0) die("be_encode failed", NULL);
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    free(ids);
    free(r.buf);
    return 0;
}

static int cmd_decode(const be_tokenizer *t, const char *path) {
    size_t len;
    char *text = read_file(path, &len);
    char *line = text, *end = text + len;
    int32_t *ids = malloc((len / 2 + 2) * sizeof(int32_t));
    char *out = NULL;
    if (!ids) die("out of memory", NULL);
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) nl = end;
        int n = 0;
        for (char *p = line; p < nl;) {
            char *q;
            long v = strtol(p, &q, 10);
            if (q == p) break;
            ids[n++] = (int32_t)v;
            p = q;
        }
        long need = be_decode(t, ids, n, NULL, 0);
        if (need < 0) die("be_decode failed", NULL);
        out = realloc(out, (size_t)need + 1);
        if (!out) die("out of memory", NULL);
        be_decode(t, ids, n, out, (size_t)need);
        printf("%ld\n", need);
        fwrite(out, 1, (size_t)need, stdout);
        line = nl + 1;
    }
    free(out);
    free(ids);
    free(text);
    return 0;
}

static int cmd_pieces(const be_tokenizer *t) {
    for (int i = 0; i < be_token_count(t); i++) {
        size_t n;
        const char *p = be_token_piece(t, i, &n);
        printf("%zu\n", n);
        fwrite(p, 1, n, stdout);
    }
    return 0;
}

static int cmd_chat(const be_tokenizer *t, const char *path) {
    records r = {0};
    r.buf = read_file(path, &r.len);
    be_chat_message msgs[64];
    char *owned[128];
    int n = 0, no = 0;
    const char *s;
    size_t l;
    while (n < 64 && next_record(&r, &s, &l)) {
        char *role = strndup(s, l);
        if (!next_record(&r, &s, &l)) die("a role without content", NULL);
        char *content = strndup(s, l);
        owned[no++] = role;
        owned[no++] = content;
        msgs[n++] = (be_chat_message){role, content};
    }
    char err[256];
    char *text = be_chat_format_messages(t, msgs, n, err, sizeof(err));
    if (!text) die(err, NULL);
    fputs(text, stdout);
    free(text);
    for (int i = 0; i < no; i++) free(owned[i]);
    free(r.buf);
    return 0;
}

#ifndef TOKENIZE_MAIN_NO_MAIN
int main(int argc, char **argv) {
    if (argc < 3) die("usage: tokenize_main FILE.gguf (encode RECORDS [BOS] | decode IDS | pieces | chat RECORDS | info)", NULL);
    vocab_storage s;
    read_vocab(argv[1], &s);
    char err[256];
    be_tokenizer *t = build_tokenizer(&s.v, err, sizeof(err));
    if (!t) die(err, NULL);
    int rc = 0;
    const char *cmd = argv[2];
    if (!strcmp(cmd, "encode") && argc >= 4) rc = cmd_encode(t, argv[3], argc >= 5 ? atoi(argv[4]) : -1);
    else if (!strcmp(cmd, "decode") && argc >= 4) rc = cmd_decode(t, argv[3]);
    else if (!strcmp(cmd, "pieces")) rc = cmd_pieces(t);
    else if (!strcmp(cmd, "chat") && argc >= 4) rc = cmd_chat(t, argv[3]);
    else if (!strcmp(cmd, "info")) {
        printf("n_tokens %d\nbos %d\neos %d\nchat_style %s\neog", be_token_count(t), be_token_bos(t),
               be_token_eos(t), be_chat_style_name(be_chat_style_of(t)));
        for (int i = 0; i < be_token_count(t); i++)
            if (be_token_is_eog(t, i)) printf(" %d", i);
        putchar('\n');
        rc = 0;
    } else die("unknown command", cmd);
    free_tokenizer(t);
    free_vocab(&s);
    fflush(stdout);
    return rc;
}
#endif
