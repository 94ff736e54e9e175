/* gguf.h: a read-only GGUF v2/v3 reader for UNTRUSTED files (docs/format.md).
 *
 * gguf_open maps the file (mmap, read-only) and validates everything before anything is used: header, every
 * key/value (all value types, arrays of any type including arrays of strings and nested arrays), tensor infos
 * (name, n_dims <= 4, every dimension > 0, element and byte counts without overflow, known ggml type, row
 * length a multiple of the type's block), general.alignment (a power of two), offsets aligned and every tensor's
 * data inside the file, no duplicate keys or tensor names. A file that fails any check is refused with a
 * one-line message in err naming what is wrong; gguf_open never reads outside the mapping and never allocates
 * in proportion to a count before checking that count against the bytes left in the file.
 *
 * Strings (keys, values, tensor names in gguf_str form) point into the mapping and are NOT NUL-terminated;
 * they stay valid until gguf_close. Tensor names are also available NUL-terminated (gguf_tensor.name).
 * Multi-byte values inside the mapping may be unaligned: read them with the getters (they memcpy).
 */
#ifndef BITEDGE_GGUF_H
#define BITEDGE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_ARRAY_DEPTH 4   /* arrays of arrays nest at most this deep */
#define GGUF_MAX_NAME 256        /* longest tensor name accepted (llama.cpp's GGML_MAX_NAME is 64) */

/* Value types of the key/value section (GGUF spec). */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* ggml tensor types this reader knows the size of (ids as in ggml.h). Any other id is refused. */
enum ggml_type_id {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_I2_S = 36,  /* bitnet.cpp's fork only: recognised so it can be named, never used by bitedge */
};

/* A string inside the mapping: len bytes at ptr, not NUL-terminated. */
typedef struct {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct {
    gguf_str key;
    uint32_t type;            /* enum gguf_type */
    uint32_t arr_type;        /* element type when type == GGUF_TYPE_ARRAY */
    uint64_t arr_n;           /* element count when type == GGUF_TYPE_ARRAY */
    const uint8_t *data;      /* the value in the mapping: scalar bytes, a string's length prefix, or an array's
                                 first element (after its type and count) */
    const gguf_str *arr_strs; /* [arr_n] for arrays of strings (owned by the gguf_file), else NULL */
} gguf_kv;

typedef struct {
    const char *name;         /* NUL-terminated copy (owned by the gguf_file); never empty, no embedded NUL */
    uint32_t n_dims;          /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS];/* ggml order: ne[0] is the row length (fastest varying); unused dims are 1 */
    uint32_t type;            /* enum ggml_type_id */
    uint64_t offset;          /* relative to the data section, a multiple of the alignment */
    uint64_t nbytes;          /* bytes of data, from ne and the type */
    int64_t n_elements;
    const void *data;         /* in the mapping: aligned to the file's alignment (the mapping is page aligned) */
} gguf_tensor;

typedef struct {
    uint32_t version;         /* 2 or 3 */
    uint64_t n_kv;
    uint64_t n_tensors;
    uint32_t alignment;       /* general.alignment or 32 */
    uint64_t data_offset;     /* start of the data section in the file */
    const uint8_t *base;      /* the mapping */
    uint64_t size;            /* file size in bytes */
    gguf_kv *kv;              /* [n_kv] in file order */
    gguf_tensor *tensors;     /* [n_tensors] in file order */
    /* owned storage */
    char *names;              /* NUL-terminated tensor names, back to back */
    gguf_str *strs;           /* string array elements of every string array, back to back */
} gguf_file;

/* Status codes of the getters. */
enum { GGUF_OK = 0, GGUF_ABSENT = -1, GGUF_WRONG_TYPE = -2, GGUF_OUT_OF_RANGE = -3 };

/* Open and validate path. NULL on failure with a one-line message in err (errlen bytes, NUL-terminated). */
gguf_file *gguf_open(const char *path, char *err, size_t errlen);
/* Validate a file already in memory (the caller keeps buf alive and unchanged until gguf_close). */
gguf_file *gguf_open_memory(const void *buf, uint64_t size, char *err, size_t errlen);
void gguf_close(gguf_file *f);

const char *gguf_type_name(uint32_t type);      /* "u32", "str", "arr", ... or "?" */
const char *ggml_type_name(uint32_t type);      /* "F32", "Q8_0", "TQ2_0", "I2_S", ... or NULL if unknown */
/* Bytes of a row of n elements of a ggml type; -1 when the type is unknown or n is not a multiple of its block. */
int64_t ggml_row_size(uint32_t type, int64_t n);

/* Index of key, or -1. */
int gguf_find_key(const gguf_file *f, const char *key);
/* Scalars. GGUF_OK, GGUF_ABSENT, GGUF_WRONG_TYPE, or GGUF_OUT_OF_RANGE (an integer of another width whose value
 * does not fit). Integer getters accept any integer type whose value fits; gguf_get_f32 accepts f32 and f64. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
int gguf_get_f32(const gguf_file *f, const char *key, float *out);
int gguf_get_bool(const gguf_file *f, const char *key, int *out);  /* *out = 0 or 1 */
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* Arrays: element type and count; data points at the first element in the mapping (unaligned, little-endian).
 * For arrays of strings use gguf_get_arr_strs; for arrays of arrays, data is the first nested array's header. */
int gguf_get_arr(const gguf_file *f, const char *key, uint32_t *elem_type, uint64_t *n, const void **data);
int gguf_get_arr_strs(const gguf_file *f, const char *key, uint64_t *n, const gguf_str **strs);

/* Tensor by name, or NULL. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Make a message safe to print: control bytes and bytes that are not valid UTF-8 become '?' (messages quote
 * names taken from the untrusted file). */
void gguf_clean_message(char *msg);
/* printf into err (if err && errlen), then gguf_clean_message: every runtime error message goes through here,
 * so names and values quoted from an untrusted file always print as clean UTF-8. */
void gguf_set_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* 1 when s equals the NUL-terminated c. */
int gguf_str_eq(gguf_str s, const char *c);

#endif
