/* gguf.c: parse and validate a GGUF v2/v3 file (see gguf.h). Nothing in the file is trusted.
 *
 * Parsing is one pass over the mapping with a bounds-checked cursor; every count is compared with the bytes
 * left before anything is allocated for it, so a 100-byte file cannot make us allocate gigabytes. */
#include "gguf.h"
#include "gguf_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ----------------------------------------------------------------------------------------------------------
 * value types */

/* Fixed size in bytes of a scalar value type; 0 for string and array. */
static uint64_t scalar_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(uint32_t type) {
    static const char *names[GGUF_TYPE_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                 "bool", "str", "arr", "u64", "i64", "f64"};
    return type < GGUF_TYPE_COUNT ? names[type] : "?";
}

/* ----------------------------------------------------------------------------------------------------------
 * messages and strings */

void gguf_clean_message(char *msg) {
    unsigned char *s = (unsigned char *)msg;
    while (*s) {
        int n = *s < 0x80 ? 1 : (*s & 0xE0) == 0xC0 && *s >= 0xC2 ? 2 : (*s & 0xF0) == 0xE0 ? 3
              : (*s & 0xF8) == 0xF0 && *s <= 0xF4 ? 4 : 0;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++) ok = (s[i] & 0xC0) == 0x80;  /* stops at the NUL too */
        if (ok && n == 1 && (*s < 32 || *s == 127)) ok = 0;
        if (!ok) {
            *s++ = '?';
            continue;
        }
        s += n;
    }
}

int gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* ----------------------------------------------------------------------------------------------------------
 * key/value section */

/* Pass 1 over one array value (after its element type and count): check its extent and count the string elements
 * it holds at any depth (*n_strs), so pass 2 can fill one allocation. */
static int skip_array(reader *r, uint32_t elem, uint64_t n, int depth, uint64_t *n_strs, const char *what) {
    if (elem >= GGUF_TYPE_COUNT) {
        fail(r, "%s: unknown array element type %u", what, elem);
        return -1;
    }
    uint64_t fixed = scalar_size(elem);
    if (fixed) {
        if (n > left(r) / fixed) {
            fail(r, "%s: array of %llu %s values (%llu bytes each) exceeds the %llu bytes left in the file", what,
                 (unsigned long long)n, gguf_type_name(elem), (unsigned long long)fixed, (unsigned long long)left(r));
            return -1;
        }
        r->off += n * fixed;
        return 0;
    }
    if (elem == GGUF_TYPE_STRING) {
        if (n > left(r) / 8) {
            fail(r, "%s: array of %llu strings exceeds the %llu bytes left in the file", what, (unsigned long long)n,
                 (unsigned long long)left(r));
            return -1;
        }
        for (uint64_t i = 0; i < n; i++) {
            gguf_str s;
            if (read_str(r, &s, what)) return -1;
        }
        if (depth == 1) *n_strs += n;  /* only top-level string arrays get gguf_str views */
        return 0;
    }
    /* array of arrays: each element is (u32 type, u64 count, elements) */
    if (depth >= GGUF_MAX_ARRAY_DEPTH) {
        fail(r, "%s: arrays nested deeper than %d", what, GGUF_MAX_ARRAY_DEPTH);
        return -1;
    }
    if (n > left(r) / 12) {
        fail(r, "%s: array of %llu arrays exceeds the %llu bytes left in the file", what, (unsigned long long)n,
             (unsigned long long)left(r));
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint32_t t;
        uint64_t m;
        if (read_u32(r, &t, what) || read_u64(r, &m, what)) return -1;
        if (skip_array(r, t, m, depth + 1, n_strs, what)) return -1;
    }
    return 0;
}

/* Parse one value of type t at the cursor (pass 1: validate and measure). */
static int skip_value(reader *r, gguf_kv *kv, uint64_t *n_strs, const char *what) {
    if (kv->type >= GGUF_TYPE_COUNT) {
        fail(r, "%s: unknown value type %u", what, kv->type);
        return -1;
    }
    kv->data = r->base + r->off;
    uint64_t fixed = scalar_size(kv->type);
    if (fixed) {
        uint8_t tmp[8];
        return read_bytes(r, tmp, fixed, what);
    }
    if (kv->type == GGUF_TYPE_STRING) {
        gguf_str s;
        return read_str(r, &s, what);
    }
    uint32_t elem;
    uint64_t n;
    if (read_u32(r, &elem, what) || read_u64(r, &n, what)) return -1;
    kv->arr_type = elem;
    kv->arr_n = n;
    kv->data = r->base + r->off;
    return skip_array(r, elem, n, 1, n_strs, what);
}

/* Pass 2 for a string array already validated by pass 1: fill strs[0..n). */
static void fill_strs(const uint8_t *p, uint64_t n, gguf_str *strs) {
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        strs[i].ptr = (const char *)p + 8;
        strs[i].len = len;
        p += 8 + len;
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * tensor infos */

static int cmp_names(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_keys(const void *a, const void *b) {
    const gguf_kv *x = *(const gguf_kv *const *)a, *y = *(const gguf_kv *const *)b;
    uint64_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = memcmp(x->key.ptr, y->key.ptr, (size_t)n);
    if (c) return c;
    return x->key.len < y->key.len ? -1 : x->key.len > y->key.len;
}

/* ----------------------------------------------------------------------------------------------------------
 * open / close */

typedef struct {
    gguf_file f;
    int owns_map;     /* 1: base was mmap'd by gguf_open */
} gguf_file_impl;

void gguf_set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    gguf_clean_message(err);
}

/* One key/value at the cursor into *kv (pointers into the mapping). */
static int read_kv(reader *r, gguf_kv *kv, uint64_t *n_strs, uint64_t index) {
    char what[128], shown[80];
    snprintf(what, sizeof(what), "key/value %llu", (unsigned long long)index);
    if (read_str(r, &kv->key, what)) return -1;
    if (kv->key.len == 0) {
        fail(r, "key/value %llu: empty key", (unsigned long long)index);
        return -1;
    }
    snprintf(what, sizeof(what), "key '%s'", show(kv->key, shown, sizeof(shown)));
    if (read_u32(r, &kv->type, what)) return -1;
    return skip_value(r, kv, n_strs, what);
}

static int check_alignment_key(reader *r, gguf_file *f, const gguf_kv *kv) {
    if (!gguf_str_eq(kv->key, "general.alignment")) return 0;
    if (kv->type != GGUF_TYPE_UINT32) {
        fail(r, "general.alignment has type %s (u32 expected)", gguf_type_name(kv->type));
        return -1;
    }
    uint32_t a;
    memcpy(&a, kv->data, 4);
    if (a == 0 || (a & (a - 1)) || a > (1u << 20)) {
        fail(r, "general.alignment %u is not a power of two between 1 and 1048576", a);
        return -1;
    }
    f->alignment = a;
    return 0;
}

static int parse(gguf_file *f, char *err, size_t errlen) {
    reader rd = {f->base, f->size, 0, err, errlen};
    reader *r = &rd;
    char magic[4];
    if (f->size < 24) {
        fail(r, "not a GGUF file: %llu bytes is shorter than a GGUF header (24 bytes)", (unsigned long long)f->size);
        return -1;
    }
    if (read_bytes(r, magic, 4, "magic") || memcmp(magic, GGUF_MAGIC, 4) != 0) {
        fail(r, "not a GGUF file: bad magic (expected 'GGUF')");
        return -1;
    }
    if (read_u32(r, &f->version, "version")) return -1;
    if (f->version == 1) {
        fail(r, "GGUF version 1 is not supported (version 2 or 3 expected): re-convert the model");
        return -1;
    }
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xFFFF) == 0 && f->version != 0)
            fail(r, "GGUF version %u looks byte-swapped: big-endian GGUF files are not supported", f->version);
        else
            fail(r, "unsupported GGUF version %u (2 or 3 expected)", f->version);
        return -1;
    }
    if (read_u64(r, &f->n_tensors, "tensor count") || read_u64(r, &f->n_kv, "key/value count")) return -1;
    /* smallest possible key/value: 8-byte key length, 1-byte key, 4-byte type, 1-byte value */
    if (f->n_kv > left(r) / 14) {
        fail(r, "header claims %llu key/value pairs but only %llu bytes follow", (unsigned long long)f->n_kv,
             (unsigned long long)left(r));
        return -1;
    }
    /* smallest possible tensor info: 8+1 name, 4 n_dims, 8 one dim, 4 type, 8 offset */
    if (f->n_tensors > left(r) / 33) {
        fail(r, "header claims %llu tensors but only %llu bytes follow", (unsigned long long)f->n_tensors,
             (unsigned long long)left(r));
        return -1;
    }

    /* key/values, pass 1: validate every one without storing anything, so that what is allocated next is
     * proportional to bytes that really parsed, not to the claimed count */
    uint64_t kv_start = r->off, n_strs = 0;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv kv = {0};
        if (read_kv(r, &kv, &n_strs, i) || check_alignment_key(r, f, &kv)) return -1;
    }
    /* pass 2: store them (cannot fail: the same bytes parsed above) */
    f->kv = calloc(f->n_kv ? (size_t)f->n_kv : 1, sizeof(gguf_kv));
    if (!f->kv) {
        fail(r, "out of memory for %llu key/value pairs", (unsigned long long)f->n_kv);
        return -1;
    }
    uint64_t kv_end = r->off, ignored = 0;
    r->off = kv_start;
    for (uint64_t i = 0; i < f->n_kv; i++) read_kv(r, &f->kv[i], &ignored, i);
    r->off = kv_end;
    /* pass 2: the elements of string arrays (n_strs <= file size / 8, checked element by element above) */
    f->strs = calloc(n_strs ? (size_t)n_strs : 1, sizeof(gguf_str));
    if (!f->strs) {
        fail(r, "out of memory for %llu strings", (unsigned long long)n_strs);
        return -1;
    }
    uint64_t used = 0;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING) {
            kv->arr_strs = f->strs + used;
            fill_strs(kv->data, kv->arr_n, f->strs + used);
            used += kv->arr_n;
        }
    }
    /* duplicate keys: sort pointers */
    if (f->n_kv > 1) {
        const gguf_kv **order = malloc((size_t)f->n_kv * sizeof(*order));
        if (!order) {
            fail(r, "out of memory");
            return -1;
        }
        for (uint64_t i = 0; i < f->n_kv; i++) order[i] = &f->kv[i];
        qsort(order, (size_t)f->n_kv, sizeof(*order), cmp_keys);
        for (uint64_t i = 1; i < f->n_kv; i++)
            if (cmp_keys(&order[i - 1], &order[i]) == 0) {
                char shown[80];
                fail(r, "duplicate key '%s'", show(order[i]->key, shown, sizeof(shown)));
                free(order);
                return -1;
            }
        free(order);
    }

    /* tensor infos (count re-checked against what is left after the key/values) */
    if (f->n_tensors > left(r) / 33) {
        fail(r, "header claims %llu tensors but only %llu bytes follow the key/values", (unsigned long long)f->n_tensors,
             (unsigned long long)left(r));
        return -1;
    }
    /* tensor infos: pass 1 validates into scratch space and measures the names; pass 2 stores */
    uint64_t infos_start = r->off, names_size = 1;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor t;
        char scratch[GGUF_MAX_NAME + 1];
        uint64_t used = 0;
        if (gguf_read_tensor_info(r, &t, scratch, &used, i)) return -1;
        names_size += used;
    }
    f->tensors = calloc(f->n_tensors ? (size_t)f->n_tensors : 1, sizeof(gguf_tensor));
    f->names = malloc((size_t)names_size);
    if (!f->tensors || !f->names) {
        fail(r, "out of memory for %llu tensor infos", (unsigned long long)f->n_tensors);
        return -1;
    }
    uint64_t infos_end = r->off, names_used = 0;
    r->off = infos_start;
    for (uint64_t i = 0; i < f->n_tensors; i++) gguf_read_tensor_info(r, &f->tensors[i], f->names, &names_used, i);
    r->off = infos_end;

    /* data section: aligned start, then every tensor inside the file and aligned */
    uint64_t a = f->alignment;
    uint64_t data = r->off % a ? r->off + (a - r->off % a) : r->off;
    f->data_offset = data;
    uint64_t avail = data <= f->size ? f->size - data : 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % a) {
            fail(r, "tensor '%s': data offset %llu is not a multiple of the alignment %u", t->name,
                 (unsigned long long)t->offset, f->alignment);
            return -1;
        }
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            fail(r, "tensor '%s': data [offset %llu, %llu bytes] extends past end of file (%llu bytes, data section "
                 "at %llu)", t->name, (unsigned long long)(data + t->offset), (unsigned long long)t->nbytes,
                 (unsigned long long)f->size, (unsigned long long)data);
            return -1;
        }
        t->data = f->base + data + t->offset;
    }
    /* duplicate tensor names */
    if (f->n_tensors > 1) {
        const gguf_tensor **order = malloc((size_t)f->n_tensors * sizeof(*order));
        if (!order) {
            fail(r, "out of memory");
            return -1;
        }
        for (uint64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
        qsort(order, (size_t)f->n_tensors, sizeof(*order), cmp_names);
        for (uint64_t i = 1; i < f->n_tensors; i++)
            if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
                fail(r, "duplicate tensor name '%s'", order[i]->name);
                free(order);
                return -1;
            }
        free(order);
    }
    return 0;
}

static void free_parts(gguf_file *f) {
    free(f->kv);
    free(f->tensors);
    free(f->names);
    free(f->strs);
}

gguf_file *gguf_open_memory(const void *buf, uint64_t size, char *err, size_t errlen) {
    gguf_file_impl *impl = calloc(1, sizeof(*impl));
    if (!impl) {
        gguf_set_err(err, errlen, "out of memory");
        return NULL;
    }
    impl->f.base = buf;
    impl->f.size = size;
    if (parse(&impl->f, err, errlen) != 0) {
        free_parts(&impl->f);
        free(impl);
        return NULL;
    }
    return &impl->f;
}

gguf_file *gguf_open(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        gguf_set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        gguf_set_err(err, errlen, "'%s' is not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < 24) {
        gguf_set_err(err, errlen, "not a GGUF file: %lld bytes is shorter than a GGUF header (24 bytes)",
                (long long)st.st_size);
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        gguf_set_err(err, errlen, "'%s' is too large to map on this system", path);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        gguf_set_err(err, errlen, "cannot map '%s': %s", path, strerror(errno));
        return NULL;
    }
    gguf_file *f = gguf_open_memory(map, (uint64_t)st.st_size, err, errlen);
    if (!f) {
        munmap(map, (size_t)st.st_size);
        return NULL;
    }
    ((gguf_file_impl *)f)->owns_map = 1;
    return f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    gguf_file_impl *impl = (gguf_file_impl *)f;
    if (impl->owns_map) munmap((void *)f->base, (size_t)f->size);
    free_parts(f);
    free(impl);
}
