/* A strict JSON reader for request bodies and a growable output buffer (see json.h).
 *
 * The parser is recursive descent; recursion depth is bounded by json_limits.max_depth, so the stack use is
 * too. Every value and string lives in one arena of chunks, freed together. */
#include "json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------------------------------------------------
 * arena */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];  /* cap bytes */
} chunk;

struct json_doc {
    chunk *chunks;
};

static void *arena_alloc(json_doc *d, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    chunk *c = d->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof(chunk) + cap);
        if (!c) return NULL;
        c->next = d->chunks;
        c->used = 0;
        c->cap = cap;
        d->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void json_free(json_doc *d) {
    if (!d) return;
    for (chunk *c = d->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(d);
}

/* ----------------------------------------------------------------------------------------------------------
 * parser */

typedef struct {
    const unsigned char *s;
    size_t len, pos, nodes;
    const json_limits *lim;
    json_doc *doc;
    char *err;
    size_t errlen;
    int failed;
} parser;

static void fail(parser *p, const char *what) {
    if (p->failed) return;
    p->failed = 1;
    snprintf(p->err, p->errlen, "invalid JSON at byte %zu: %s", p->pos, what);
}

static void skip_ws(parser *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static json_value *new_value(parser *p, json_type t) {
    if (++p->nodes > p->lim->max_nodes) {
        fail(p, "too many values");
        return NULL;
    }
    json_value *v = arena_alloc(p->doc, sizeof(json_value));
    if (!v) {
        fail(p, "out of memory");
        return NULL;
    }
    memset(v, 0, sizeof(*v));
    v->type = t;
    return v;
}

static int hex4(parser *p, unsigned *out) {
    if (p->len - p->pos < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p->s[p->pos + (size_t)i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At the opening quote. The decoded string is never longer than its source, so one allocation of the source's
 * length (found by a first scan) holds it. */
static char *parse_string(parser *p, size_t *out_len) {
    size_t start = ++p->pos, end = start;
    while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len) {
        fail(p, "unterminated string");
        return NULL;
    }
    char *out = arena_alloc(p->doc, end - start + 1);
    if (!out) {
        fail(p, "out of memory");
        return NULL;
    }
    size_t o = 0;
    while (p->pos < end) {
        unsigned char c = p->s[p->pos];
        if (c == '\\') {
            unsigned char e = p->s[++p->pos];
            p->pos++;
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                out[o++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            } else if (e == 'u') {
                unsigned cp, lo;
                if (hex4(p, &cp) != 0) return fail(p, "bad \\u escape"), NULL;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(p, "lone low surrogate"), NULL;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->pos + 1 >= end || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                        return fail(p, "lone high surrogate"), NULL;
                    p->pos += 2;
                    if (hex4(p, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) return fail(p, "bad surrogate pair"), NULL;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp == 0) return fail(p, "NUL character in a string"), NULL;
                o += put_utf8(out + o, cp);  /* <= 6 source bytes give <= 4 (12 give 4 for a pair) */
            } else {
                p->pos--;
                return fail(p, "bad escape"), NULL;
            }
        } else if (c < 0x20) {
            return fail(p, c ? "control character in a string" : "NUL byte in a string"), NULL;
        } else {
            int n = json_utf8_sequence(p->s + p->pos, end - p->pos);
            if (n == 0) return fail(p, "invalid UTF-8"), NULL;
            memcpy(out + o, p->s + p->pos, (size_t)n);
            o += (size_t)n;
            p->pos += (size_t)n;
        }
        if (o > p->lim->max_string) return fail(p, "string too long"), NULL;
    }
    if (p->pos != end) return fail(p, "bad escape at the end of a string"), NULL;
    p->pos = end + 1;
    out[o] = 0;
    *out_len = o;
    return out;
}

static int is_digit(parser *p) { return p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9'; }

static json_value *parse_number(parser *p) {
    size_t start = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '-') p->pos++;
    if (!is_digit(p)) return fail(p, "bad number"), NULL;
    if (p->s[p->pos] == '0') p->pos++;
    else while (is_digit(p)) p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (!is_digit(p)) return fail(p, "bad number"), NULL;
        while (is_digit(p)) p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (!is_digit(p)) return fail(p, "bad number"), NULL;
        while (is_digit(p)) p->pos++;
    }
    char buf[64];
    size_t n = p->pos - start;
    if (n >= sizeof(buf)) return fail(p, "number too long"), NULL;
    memcpy(buf, p->s + start, n);
    buf[n] = 0;
    json_value *v = new_value(p, JSON_NUMBER);
    if (v) v->number = strtod(buf, NULL);  /* overflow gives +-HUGE_VAL: callers range-check */
    return v;
}

static json_value *parse_value(parser *p, int depth);

/* Arrays and objects: children in a list; objects read a key and a colon before each child. */
static json_value *parse_container(parser *p, int depth, int is_object) {
    if (depth >= p->lim->max_depth) return fail(p, "nested too deeply"), NULL;
    json_value *v = new_value(p, is_object ? JSON_OBJECT : JSON_ARRAY);
    if (!v) return NULL;
    char close = is_object ? '}' : ']';
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return v;
    }
    json_value **tail = &v->first;
    for (;;) {
        char *key = NULL;
        size_t key_len;
        if (is_object) {
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a string key"), NULL;
            if (!(key = parse_string(p, &key_len))) return NULL;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') return fail(p, "expected ':'"), NULL;
            p->pos++;
        }
        json_value *child = parse_value(p, depth + 1);
        if (!child) return NULL;
        child->key = key;
        *tail = child;
        tail = &child->next;
        v->len++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            return v;
        }
        return fail(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'"), NULL;
    }
}

static json_value *parse_literal(parser *p, const char *word, json_type t, int boolean) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return fail(p, "unexpected character"), NULL;
    p->pos += n;
    json_value *v = new_value(p, t);
    if (v) v->boolean = boolean;
    return v;
}

static json_value *parse_value(parser *p, int depth) {
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end of input"), NULL;
    switch (p->s[p->pos]) {
    case '{': return parse_container(p, depth, 1);
    case '[': return parse_container(p, depth, 0);
    case '"': {
        json_value *v = new_value(p, JSON_STRING);
        if (v && !(v->str = parse_string(p, &v->len))) return NULL;
        return v;
    }
    case 't': return parse_literal(p, "true", JSON_BOOL, 1);
    case 'f': return parse_literal(p, "false", JSON_BOOL, 0);
    case 'n': return parse_literal(p, "null", JSON_NULL, 0);
    default: return parse_number(p);
    }
}

json_doc *json_parse(const char *text, size_t len, const json_limits *lim, json_value **root, char *err, size_t errlen) {
    json_doc *doc = calloc(1, sizeof(json_doc));
    if (!doc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    parser p = {(const unsigned char *)text, len, 0, 0, lim, doc, err, errlen, 0};
    json_value *v = parse_value(&p, 0);
    if (v) {
        skip_ws(&p);
        if (p.pos != len) fail(&p, "trailing characters after the value");
    }
    if (p.failed || !v) {
        if (!p.failed) snprintf(err, errlen, "invalid JSON");
        json_free(doc);
        return NULL;
    }
    *root = v;
    return doc;
}

const json_value *json_get(const json_value *obj, const char *key) {
    const json_value *found = NULL;
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (const json_value *c = obj->first; c; c = c->next)
        if (!strcmp(c->key, key)) found = c;
    return found;
}

const char *json_type_name(json_type t) {
    static const char *names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return names[t];
}

/* ----------------------------------------------------------------------------------------------------------
 * UTF-8 and output */

int json_utf8_sequence(const unsigned char *s, size_t len) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0 || (size_t)n > len) return 0;
    for (int j = 1; j < n; j++)
        if ((s[j] & 0xC0) != 0x80) return 0;
    unsigned char lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
    return s[1] >= lo && s[1] <= hi ? n : 0;
}

void jb_free(jbuf *b) {
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void jb_put(jbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

void jb_printf(jbuf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof(small)) {
        jb_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    jb_put(b, big, (size_t)n);
    free(big);
}

void jb_string(jbuf *b, const char *s, size_t n) {
    jb_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int len = json_utf8_sequence((const unsigned char *)s + i, n - i);
        if (len == 0) {
            jb_put(b, "\\ufffd", 6);
            i++;
            continue;
        }
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            jb_put(b, esc, 2);
        } else if (c == '\n') jb_put(b, "\\n", 2);
        else if (c == '\r') jb_put(b, "\\r", 2);
        else if (c == '\t') jb_put(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7F) jb_printf(b, "\\u%04x", c);
        else jb_put(b, s + i, (size_t)len);
        i += (size_t)len;
    }
    jb_put(b, "\"", 1);
}
