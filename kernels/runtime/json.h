/* json.h: a small JSON reader (RFC 8259) for untrusted request bodies, and a growable output buffer.
 *
 * json_parse builds a tree in one arena (freed at once by json_free). It is strict: no trailing commas, no
 * comments, no leading zeros, no raw control characters in strings, valid UTF-8 only, no lone surrogates, and
 * no NUL in strings (the values are used as C strings: "\u0000" is refused rather than silently cut). Limits on
 * nesting depth, string length and node count bound memory and stack; the first error stops parsing with a
 * one-line message that names the byte offset. */
#ifndef BITEDGE_JSON_H
#define BITEDGE_JSON_H

#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value {
    json_type type;
    int boolean;
    double number;
    char *str;                 /* JSON_STRING: NUL-terminated UTF-8, len bytes */
    size_t len;                /* JSON_STRING: bytes; ARRAY / OBJECT: number of children */
    char *key;                 /* set on the children of an object (NUL-terminated) */
    struct json_value *first;  /* ARRAY / OBJECT: first child */
    struct json_value *next;   /* next sibling */
} json_value;

typedef struct {
    int max_depth;       /* nesting of arrays and objects */
    size_t max_string;   /* decoded bytes of one string (keys too) */
    size_t max_nodes;    /* values in the whole document */
} json_limits;

typedef struct json_doc json_doc;

/* Parses len bytes (need not be NUL-terminated). Returns the document (its root in *root), or NULL with a message
 * in err: malformed input, a limit exceeded (the message says which), or out of memory. */
json_doc *json_parse(const char *text, size_t len, const json_limits *lim, json_value **root, char *err, size_t errlen);
void json_free(json_doc *doc);

/* The member `key` of an object (the last one when a key repeats, as JavaScript does), or NULL. */
const json_value *json_get(const json_value *obj, const char *key);
const char *json_type_name(json_type t);

/* ---------------------------------------------------------------------------------------------------------
 * output: a growable byte buffer. On out of memory it sets failed and drops further writes. */

typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} jbuf;

void jb_free(jbuf *b);
void jb_put(jbuf *b, const char *s, size_t n);
void jb_puts(jbuf *b, const char *s);
void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A quoted JSON string; bytes that are not valid UTF-8 become U+FFFD, so the output is always valid JSON. */
void jb_string(jbuf *b, const char *s, size_t n);

/* Length of the valid UTF-8 sequence at s[0..len) (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), or 0. */
int json_utf8_sequence(const unsigned char *s, size_t len);

#endif
