/* fuzz_http: drive the request parsers of bitedge-run serve (http.c head parser, json.c, api.c) with untrusted
 * bytes, under ASan + UBSan in the tests.
 *
 * Each input is copied into a heap block of exactly its size (a read past the end is an ASan report) and goes
 *   1. through http_parse_head with a few head limits, and its result is checked for consistency;
 *   2. its body (after the head, or the whole input when there is no head) through json_parse, then
 *      api_parse_request as a completion and as a chat request; a parsed tree is checked (string lengths, valid
 *      UTF-8, no NUL) and written back out: writing, parsing and writing again must give the same text.
 *
 *   fuzz_http FILE...                one line per file: "OK <path> head=<rc> json=<ok|err> api=<ok|err>"
 *   fuzz_http --mutate FILE SEED N   N random mutations of FILE (flips, inserts, deletes, copies, splices of JSON
 *                                    and HTTP tokens, truncations)
 * Both end with "files N bugs B head_ok H json_ok J api_ok A" (how many got through each stage); a consistency failure prints "BUG ..." and counts in B. Exit status 0 unless
 * the driver itself fails. Built with -DBE_LIBFUZZER it is instead a libFuzzer target. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http.h"
#include "json.h"

static long bugs, n_head_ok, n_json_ok, n_api_ok;  /* how far inputs got: a fuzz run must reach every stage */

static void bug(const char *what) {
    bugs++;
    printf("BUG %s\n", what);
}

/* writes v as JSON (non-finite numbers as null, so the output always parses) */
static void write_value(jbuf *b, const json_value *v) {
    switch (v->type) {
    case JSON_NULL: jb_puts(b, "null"); break;
    case JSON_BOOL: jb_puts(b, v->boolean ? "true" : "false"); break;
    case JSON_NUMBER:
        if (v->number - v->number == 0) jb_printf(b, "%.17g", v->number);
        else jb_puts(b, "null");
        break;
    case JSON_STRING: jb_string(b, v->str, v->len); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        jb_puts(b, v->type == JSON_ARRAY ? "[" : "{");
        for (const json_value *c = v->first; c; c = c->next) {
            if (c != v->first) jb_puts(b, ",");
            if (v->type == JSON_OBJECT) {
                jb_string(b, c->key, strlen(c->key));
                jb_puts(b, ":");
            }
            write_value(b, c);
        }
        jb_puts(b, v->type == JSON_ARRAY ? "]" : "}");
        break;
    }
}

static void check_string(const char *s, size_t len) {
    if (strlen(s) != len) bug("string length disagrees with its NUL");
    for (size_t i = 0; i < len;) {
        int n = json_utf8_sequence((const unsigned char *)s + i, len - i);
        if (n == 0) {
            bug("invalid UTF-8 in a parsed string");
            return;
        }
        i += (size_t)n;
    }
}

static void check_tree(const json_value *v) {
    if (v->type == JSON_STRING) check_string(v->str, v->len);
    size_t n = 0;
    for (const json_value *c = v->first; c; c = c->next, n++) {
        if (v->type == JSON_OBJECT) check_string(c->key, strlen(c->key));
        check_tree(c);
    }
    if ((v->type == JSON_ARRAY || v->type == JSON_OBJECT) && n != v->len) bug("child count");
}

static const json_limits LIMITS = {32, 1 << 16, 100000};

/* returns 1 if the input parsed as JSON */
static int one_json(const char *data, size_t len, int *api_ok) {
    char err[256];
    json_value *root;
    json_doc *doc = json_parse(data, len, &LIMITS, &root, err, sizeof(err));
    *api_ok = 0;
    if (!doc) {
        if (!err[0]) bug("json error without a message");
        return 0;
    }
    check_tree(root);
    jbuf once = {0}, twice = {0};
    write_value(&once, root);
    json_value *root2;
    json_doc *doc2 = once.failed ? NULL : json_parse(once.data, once.len, &LIMITS, &root2, err, sizeof(err));
    if (!doc2) {
        if (!once.failed) bug("written JSON does not parse");
    } else {
        write_value(&twice, root2);
        if (twice.len != once.len || memcmp(twice.data, once.data, once.len)) bug("write(parse(write)) differs");
        json_free(doc2);
    }
    jb_free(&once);
    jb_free(&twice);
    api_limits alim = {64, LIMITS.max_string};
    for (int chat = 0; chat < 2; chat++) {
        api_request r;
        const char *param;
        if (api_parse_request(root, chat, &alim, &r, err, sizeof(err), &param) == 0) {
            *api_ok = 1;
            for (int i = 0; i < r.n_messages; i++) check_string(r.messages[i].content, strlen(r.messages[i].content));
            if (r.prompt) check_string(r.prompt, strlen(r.prompt));
            if (r.n_stop > API_MAX_STOP) bug("too many stops");
        } else if (!err[0]) {
            bug("api error without a message");
        }
        api_free_request(&r);
    }
    json_free(doc);
    return 1;
}

static void one_input(const char *label, const unsigned char *bytes, size_t len) {
    char *data = malloc(len ? len : 1);  /* exactly len bytes: ASan sees any read past the end */
    if (!data) exit(1);
    memcpy(data, bytes, len);
    static const size_t heads[] = {64, 1024, 16384};
    int head_rc = 0;
    size_t body_at = 0;
    for (int i = 0; i < 3; i++) {
        http_request req;
        char err[256];
        int rc = http_parse_head(data, len, heads[i], 1 << 20, &req, err, sizeof(err));
        if (rc == 1) {
            if (req.head_len > len || req.head_len > heads[i] || req.path[0] != '/' || !req.method[0] ||
                req.content_length > (1 << 20))
                bug("inconsistent parsed head");
            body_at = req.head_len;
        } else if (rc > 1 && (rc < 400 || rc > 599 || !err[0])) {
            bug("bad refusal");
        }
        if (i == 2) head_rc = rc;
    }
    int api_ok, ok = one_json(data + body_at, len - body_at, &api_ok);
    n_head_ok += head_rc == 1;
    n_json_ok += ok;
    n_api_ok += api_ok;
    if (label) printf("OK %s head=%d json=%s api=%s\n", label, head_rc, ok ? "ok" : "err", api_ok ? "ok" : "err");
    free(data);
}

#ifdef BE_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    one_input(NULL, data, size);
    if (bugs) abort();
    return 0;
}
#else

static unsigned char *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        unsigned char *grown = realloc(buf, cap * 2);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

static uint64_t rng;
static uint64_t next(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

/* tokens a mutation may splice in: JSON and HTTP syntax, escapes, UTF-8 edge cases */
static const char *TOKENS[] = {"{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800", "\\udc00", "\\u0000",
                               "null", "true", "1e999", "-0", "0.5e-", "\r\n", "\n", "\r\n\r\n", "Content-Length: ",
                               "99999999999999999999", "Transfer-Encoding: chunked\r\n", "\xc0\x80", "\xed\xa0\x80",
                               "\xf4\x90\x80\x80", "\xe2\x82", "\x00", " ", "\t", "\"messages\"", "\"prompt\"",
                               "\"role\"", "\"content\"", "\"stop\"", "\"type\":\"text\"", "[[[[[[[[[[[[[[[[",
                               "{\"a\":{\"a\":{\"a\":", "\"max_tokens\": 1e300"};

static size_t mutate(const unsigned char *in, size_t len, unsigned char *out, size_t cap) {
    size_t n = len < cap ? len : cap;
    memcpy(out, in, n);
    int rounds = 1 + (int)(next() % 4);
    for (int r = 0; r < rounds; r++) {
        size_t at = n ? (size_t)(next() % (n + 1)) : 0;
        switch (next() % 6) {
        case 0:  /* flip bits */
            if (at < n) out[at] ^= (unsigned char)(1u << (next() % 8));
            break;
        case 1:  /* random byte */
            if (at < n) out[at] = (unsigned char)next();
            break;
        case 2: {  /* delete a run */
            size_t k = (size_t)(next() % 16);
            if (at + k > n) k = n - at;
            memmove(out + at, out + at + k, n - at - k);
            n -= k;
            break;
        }
        case 3: {  /* insert a token */
            const char *t = TOKENS[next() % (sizeof(TOKENS) / sizeof(TOKENS[0]))];
            size_t k = t[0] ? strlen(t) : 1;
            if (n + k > cap) break;
            memmove(out + at + k, out + at, n - at);
            memcpy(out + at, t, k);
            n += k;
            break;
        }
        case 4: {  /* copy a chunk of the input elsewhere */
            size_t from = len ? (size_t)(next() % len) : 0, k = (size_t)(next() % 64);
            if (from + k > len) k = len - from;
            if (n + k > cap) break;
            memmove(out + at + k, out + at, n - at);
            memcpy(out + at, in + from, k);
            n += k;
            break;
        }
        default:  /* truncate */
            n = at;
            break;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    long files = 0;
    if (argc == 5 && !strcmp(argv[1], "--mutate")) {
        size_t len;
        unsigned char *in = read_whole(argv[2], &len);
        if (!in) return fprintf(stderr, "cannot read %s\n", argv[2]), 2;
        rng = strtoull(argv[3], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
        long n = atol(argv[4]);
        size_t cap = len + 4096;
        unsigned char *buf = malloc(cap);
        if (!buf) return 2;
        for (long i = 0; i < n; i++, files++) one_input(NULL, buf, mutate(in, len, buf, cap));
        free(buf);
        free(in);
    } else {
        for (int i = 1; i < argc; i++, files++) {
            size_t len;
            unsigned char *in = read_whole(argv[i], &len);
            if (!in) return fprintf(stderr, "cannot read %s\n", argv[i]), 2;
            one_input(argv[i], in, len);
            free(in);
        }
    }
    printf("files %ld bugs %ld head_ok %ld json_ok %ld api_ok %ld\n", files, bugs, n_head_ok, n_json_ok, n_api_ok);
    return 0;
}
#endif
