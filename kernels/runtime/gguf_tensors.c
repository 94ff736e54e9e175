/* gguf_tensors.c: the tensor table of a GGUF file: the ggml types this reader knows the size of, and one tensor
 * info read and checked (dims, element count and byte size without overflow, row length a whole number of blocks).
 * Part of the parser in gguf.c; nothing in the file is trusted. */
#include "gguf_reader.h"

/* ----------------------------------------------------------------------------------------------------------
 * types */

typedef struct {
    uint32_t id;
    const char *name;
    int64_t blck;      /* elements per block */
    int64_t size;      /* bytes per block */
} ggml_type_info;

static const ggml_type_info GGML_TYPES[] = {
    {GGML_TYPE_F32, "F32", 1, 4},      {GGML_TYPE_F16, "F16", 1, 2},       {GGML_TYPE_Q4_0, "Q4_0", 32, 18},
    {GGML_TYPE_Q4_1, "Q4_1", 32, 20},  {GGML_TYPE_Q5_0, "Q5_0", 32, 22},   {GGML_TYPE_Q5_1, "Q5_1", 32, 24},
    {GGML_TYPE_Q8_0, "Q8_0", 32, 34},  {GGML_TYPE_Q8_1, "Q8_1", 32, 36},   {GGML_TYPE_Q2_K, "Q2_K", 256, 84},
    {GGML_TYPE_Q3_K, "Q3_K", 256, 110}, {GGML_TYPE_Q4_K, "Q4_K", 256, 144}, {GGML_TYPE_Q5_K, "Q5_K", 256, 176},
    {GGML_TYPE_Q6_K, "Q6_K", 256, 210}, {GGML_TYPE_Q8_K, "Q8_K", 256, 292}, {GGML_TYPE_I8, "I8", 1, 1},
    {GGML_TYPE_I16, "I16", 1, 2},      {GGML_TYPE_I32, "I32", 1, 4},       {GGML_TYPE_I64, "I64", 1, 8},
    {GGML_TYPE_F64, "F64", 1, 8},      {GGML_TYPE_BF16, "BF16", 1, 2},     {GGML_TYPE_TQ1_0, "TQ1_0", 256, 54},
    {GGML_TYPE_TQ2_0, "TQ2_0", 256, 66},
    /* bitnet.cpp: 4 weights a byte, then one 32-byte block holding the tensor's scale (see ggml_nbytes there) */
    {GGML_TYPE_I2_S, "I2_S", 4, 1},
};
#define I2_S_TRAILER 32

static const ggml_type_info *type_info(uint32_t id) {
    for (size_t i = 0; i < sizeof(GGML_TYPES) / sizeof(GGML_TYPES[0]); i++)
        if (GGML_TYPES[i].id == id) return &GGML_TYPES[i];
    return NULL;
}

const char *ggml_type_name(uint32_t type) {
    const ggml_type_info *t = type_info(type);
    return t ? t->name : NULL;
}

int64_t ggml_row_size(uint32_t type, int64_t n) {
    const ggml_type_info *t = type_info(type);
    if (!t || n < 0 || n % t->blck) return -1;
    return n / t->blck * t->size;
}

/* ----------------------------------------------------------------------------------------------------------
 * tensor infos */

/* Element count and byte size of a tensor from its dims and type; -1 with a message on any problem. */
static int tensor_size(reader *r, gguf_tensor *t) {
    const ggml_type_info *ti = type_info(t->type);
    if (!ti) {
        if (t->type == 38 || t->type == 39)  /* bitnet.cpp's fork; 39 is MXFP4 upstream */
            fail(r, "tensor '%s': ggml type %u is bitnet.cpp's %s (not a ggml type this runtime reads): convert the "
                 "model with bitedge convert", t->name, t->type, t->type == 38 ? "TL1" : "TL2");
        else
            fail(r, "tensor '%s': unknown ggml type %u", t->name, t->type);
        return -1;
    }
    int64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->ne[d] <= 0) {
            fail(r, "tensor '%s': dimension %u is %lld (must be > 0)", t->name, d, (long long)t->ne[d]);
            return -1;
        }
        if (n > INT64_MAX / t->ne[d]) {
            fail(r, "tensor '%s': element count overflows", t->name);
            return -1;
        }
        n *= t->ne[d];
    }
    if (t->ne[0] % ti->blck) {
        fail(r, "tensor '%s': row length %lld is not a multiple of the %s block size %lld", t->name,
             (long long)t->ne[0], ti->name, (long long)ti->blck);
        return -1;
    }
    if (n / ti->blck > (INT64_MAX - I2_S_TRAILER) / ti->size) {
        fail(r, "tensor '%s': byte size overflows", t->name);
        return -1;
    }
    t->n_elements = n;
    t->nbytes = (uint64_t)(n / ti->blck * ti->size);
    if (t->type == GGML_TYPE_I2_S) t->nbytes += I2_S_TRAILER;
    return 0;
}

int gguf_read_tensor_info(reader *r, gguf_tensor *t, char *names, uint64_t *names_used, uint64_t index) {
    gguf_str name;
    char what[64];
    snprintf(what, sizeof(what), "tensor info %llu", (unsigned long long)index);
    if (read_str(r, &name, what)) return -1;
    char shown[80];
    if (name.len == 0) {
        fail(r, "tensor info %llu: empty tensor name", (unsigned long long)index);
        return -1;
    }
    if (name.len > GGUF_MAX_NAME) {
        fail(r, "tensor info %llu: name '%s' is %llu bytes long (at most %d)", (unsigned long long)index,
             show(name, shown, sizeof(shown)), (unsigned long long)name.len, GGUF_MAX_NAME);
        return -1;
    }
    if (memchr(name.ptr, 0, (size_t)name.len)) {
        fail(r, "tensor info %llu: name '%s' contains a NUL byte", (unsigned long long)index,
             show(name, shown, sizeof(shown)));
        return -1;
    }
    memcpy(names + *names_used, name.ptr, (size_t)name.len);
    names[*names_used + name.len] = 0;
    t->name = names + *names_used;
    *names_used += name.len + 1;

    if (read_u32(r, &t->n_dims, t->name)) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
        fail(r, "tensor '%s': %u dimensions (1 to %d allowed)", t->name, t->n_dims, GGUF_MAX_DIMS);
        return -1;
    }
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if (read_u64(r, &v, t->name)) return -1;
        if (v == 0 || v > (uint64_t)INT64_MAX) {
            fail(r, "tensor '%s': dimension %u is %llu (must be between 1 and 2^63-1)", t->name, d,
                 (unsigned long long)v);
            return -1;
        }
        t->ne[d] = (int64_t)v;
    }
    if (read_u32(r, &t->type, t->name) || read_u64(r, &t->offset, t->name)) return -1;
    return tensor_size(r, t);
}
