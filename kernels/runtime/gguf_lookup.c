/* gguf_lookup.c: keys and tensors of a parsed GGUF file by name, each value read with its type checked (see gguf.h).
 * The values sit in the mapping, possibly unaligned: every getter copies them out with memcpy. */
#include "gguf.h"

#include <stdint.h>
#include <string.h>

int gguf_find_key(const gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (gguf_str_eq(f->kv[i].key, key)) return i > (uint64_t)INT32_MAX ? -1 : (int)i;
    return -1;
}

static const gguf_kv *find_kv(const gguf_file *f, const char *key) {
    int i = gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kv[i];
}

/* Any integer value widened to int64 / uint64; 0 ok, GGUF_WRONG_TYPE if not an integer, GGUF_OUT_OF_RANGE for a
 * u64 above INT64_MAX (then *u holds it). */
static int kv_integer(const gguf_kv *kv, int64_t *i, uint64_t *u, int *is_unsigned_big) {
    const uint8_t *p = kv->data;
    *is_unsigned_big = 0;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: { uint8_t v; memcpy(&v, p, 1); *i = v; break; }
    case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); *i = v; break; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *i = v; break; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *i = v; break; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *i = v; break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *i = v; break; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *i = v; break; }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        *u = v;
        if (v > (uint64_t)INT64_MAX) { *is_unsigned_big = 1; return GGUF_OUT_OF_RANGE; }
        *i = (int64_t)v;
        break;
    }
    default: return GGUF_WRONG_TYPE;
    }
    return GGUF_OK;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return GGUF_ABSENT;
    int64_t i;
    uint64_t u;
    int big;
    int rc = kv_integer(kv, &i, &u, &big);
    if (rc) return rc;
    *out = i;
    return GGUF_OK;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    if (rc) return rc;
    if (v < 0 || v > (int64_t)UINT32_MAX) return GGUF_OUT_OF_RANGE;
    *out = (uint32_t)v;
    return GGUF_OK;
}

int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    if (rc) return rc;
    if (v < INT32_MIN || v > INT32_MAX) return GGUF_OUT_OF_RANGE;
    *out = (int32_t)v;
    return GGUF_OK;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return GGUF_ABSENT;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        memcpy(out, kv->data, 4);
        return GGUF_OK;
    }
    if (kv->type == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
        return GGUF_OK;
    }
    return GGUF_WRONG_TYPE;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return GGUF_ABSENT;
    if (kv->type != GGUF_TYPE_BOOL) return GGUF_WRONG_TYPE;
    *out = kv->data[0] != 0;
    return GGUF_OK;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return GGUF_ABSENT;
    if (kv->type != GGUF_TYPE_STRING) return GGUF_WRONG_TYPE;
    uint64_t n;
    memcpy(&n, kv->data, 8);
    out->ptr = (const char *)kv->data + 8;
    out->len = n;
    return GGUF_OK;
}

int gguf_get_arr(const gguf_file *f, const char *key, uint32_t *elem_type, uint64_t *n, const void **data) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return GGUF_ABSENT;
    if (kv->type != GGUF_TYPE_ARRAY) return GGUF_WRONG_TYPE;
    *elem_type = kv->arr_type;
    *n = kv->arr_n;
    *data = kv->data;
    return GGUF_OK;
}

int gguf_get_arr_strs(const gguf_file *f, const char *key, uint64_t *n, const gguf_str **strs) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return GGUF_ABSENT;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING) return GGUF_WRONG_TYPE;
    *n = kv->arr_n;
    *strs = kv->arr_strs;
    return GGUF_OK;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}
