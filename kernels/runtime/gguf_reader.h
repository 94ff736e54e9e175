/* gguf_reader.h: the bounds-checked cursor the GGUF parser reads the file with (gguf.c, gguf_tensors.c); internal,
 * not part of gguf.h. Every read checks the bytes left first; a failure leaves a one-line message in err. */
#ifndef BITEDGE_GGUF_READER_H
#define BITEDGE_GGUF_READER_H

#include "gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const uint8_t *base;
    uint64_t size;
    uint64_t off;
    char *err;
    size_t errlen;
} reader;

static inline void fail(reader *r, const char *fmt, ...) {
    if (!r->err || !r->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    gguf_clean_message(r->err);
}

static inline uint64_t left(const reader *r) { return r->size - r->off; }

static inline int read_bytes(reader *r, void *out, uint64_t n, const char *what) {
    if (n > left(r)) {
        fail(r, "truncated file: %s at offset %llu needs %llu bytes, %llu left", what, (unsigned long long)r->off,
             (unsigned long long)n, (unsigned long long)left(r));
        return -1;
    }
    memcpy(out, r->base + r->off, (size_t)n);
    r->off += n;
    return 0;
}

/* little-endian only: GGUF is little-endian and so are the targets (x86-64, aarch64) */
static inline int read_u32(reader *r, uint32_t *v, const char *what) { return read_bytes(r, v, 4, what); }
static inline int read_u64(reader *r, uint64_t *v, const char *what) { return read_bytes(r, v, 8, what); }

/* A string: u64 length then bytes. *s points into the mapping. */
static inline int read_str(reader *r, gguf_str *s, const char *what) {
    uint64_t n;
    if (read_u64(r, &n, what)) return -1;
    if (n > left(r)) {
        fail(r, "%s at offset %llu: string length %llu exceeds the %llu bytes left in the file", what,
             (unsigned long long)(r->off - 8), (unsigned long long)n, (unsigned long long)left(r));
        return -1;
    }
    s->ptr = (const char *)r->base + r->off;
    s->len = n;
    r->off += n;
    return 0;
}

/* printable form of an untrusted string for messages: at most 64 bytes, control bytes as '?' */
static inline const char *show(gguf_str s, char *buf, size_t cap) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    if (n > 64) n = 64;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        buf[i] = (ch < 32 || ch == 127) ? '?' : (char)ch;
    }
    buf[n] = 0;
    if (n < s.len && n >= 3) memcpy(buf + n - 3, "...", 3);
    return buf;
}

/* One tensor info at the cursor (name, dims, type, offset) into *t, its name copied to names + *names_used; its
 * element count and byte size checked (gguf_tensors.c). */
int gguf_read_tensor_info(reader *r, gguf_tensor *t, char *names, uint64_t *names_used, uint64_t index);

#endif
