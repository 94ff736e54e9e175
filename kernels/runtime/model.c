/* model.c: build a be_model from a validated gguf_file (see model.h). The gguf_file checked the container; this
 * file checks the meaning: every key in range, every tensor present with the type and size the config implies. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define TENSOR_ALIGN 32  /* SIMD kernels and float pointers rely on it; bitedge writes general.alignment = 32 */

/* ----------------------------------------------------------------------------------------------------------
 * packing */

static const char *PACKING_NAMES[] = {"i2_s", "tl1", "tl2", "tq2_0"};

const char *be_packing_name(int packing) {
    return packing >= 0 && packing <= BE_PACK_TQ2_0 ? PACKING_NAMES[packing] : "?";
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

int64_t be_packed_nbytes(int packing, int64_t n, int64_t k) {
    if (n <= 0 || k <= 0) return -1;
    switch (packing) {
    case BE_PACK_I2_S: return n * (round_up(k, 128) / 4);
    case BE_PACK_TL1: return round_up(n, 32) / 32 * (round_up(k, 2) / 2) * 16;
    case BE_PACK_TL2: return round_up(n, 32) / 32 * (round_up(k, 3) / 3) * 20;
    case BE_PACK_TQ2_0: return k % 256 ? -1 : n * (k / 256) * 66;
    default: return -1;
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * config */

/* A required (or optional with *out preset) integer key in [lo, hi]. */
static int key_int(const gguf_file *f, const char *key, int required, int lo, int hi, int *out, char *err,
                   size_t errlen) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    if (rc == GGUF_ABSENT) {
        if (!required) return 0;
        gguf_set_err(err, errlen, "missing key '%s'", key);
        return -1;
    }
    if (rc == GGUF_WRONG_TYPE) {
        gguf_set_err(err, errlen, "key '%s' has type %s (an integer expected)", key,
                gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    if (rc != GGUF_OK || v < lo || v > hi) {
        gguf_set_err(err, errlen, "key '%s' = %lld is out of range [%d, %d]", key, rc == GGUF_OK ? (long long)v : -1LL, lo,
                hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int key_float(const gguf_file *f, const char *key, int required, float *out, char *err, size_t errlen) {
    float v;
    int rc = gguf_get_f32(f, key, &v);
    if (rc == GGUF_ABSENT) {
        if (!required) return 0;
        gguf_set_err(err, errlen, "missing key '%s'", key);
        return -1;
    }
    if (rc != GGUF_OK) {
        gguf_set_err(err, errlen, "key '%s' has type %s (f32 expected)", key, gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    if (!(v > 0.0f) || !isfinite(v)) {
        gguf_set_err(err, errlen, "key '%s' = %g must be a positive finite number", key, (double)v);
        return -1;
    }
    *out = v;
    return 0;
}

static int key_bool(const gguf_file *f, const char *key, int *out, char *err, size_t errlen) {
    int rc = gguf_get_bool(f, key, out);
    if (rc == GGUF_ABSENT) return 0;  /* *out keeps its default */
    if (rc != GGUF_OK) {
        gguf_set_err(err, errlen, "key '%s' has type %s (bool expected)", key, gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    return 0;
}

/* A string key: GGUF_OK, GGUF_ABSENT, or -1 with a message for a wrong type. */
static int key_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t errlen) {
    int rc = gguf_get_str(f, key, out);
    if (rc == GGUF_WRONG_TYPE) {
        gguf_set_err(err, errlen, "key '%s' has type %s (str expected)", key, gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    return rc == GGUF_OK ? 1 : 0;
}

/* "%.*s" arguments for a string of at most 64 bytes */
#define SHOW(s) (int)((s).len < 64 ? (s).len : 64), (s).ptr

static int read_config(const gguf_file *f, be_config *c, unsigned accept, char *err, size_t errlen) {
    gguf_str s;
    int rc = key_str(f, "general.architecture", &s, err, errlen);
    if (rc < 0) return -1;
    if (rc == 0) {
        gguf_set_err(err, errlen, "missing key 'general.architecture': not a model file");
        return -1;
    }
    if (!gguf_str_eq(s, "bitnet")) {
        gguf_set_err(err, errlen, "architecture '%.*s' is not supported (bitnet expected): convert the model with bitedge "
                "convert", SHOW(s));
        return -1;
    }
    if (key_int(f, "bitedge.format_version", 0, 0, INT32_MAX, &c->format_version, err, errlen)) return -1;
    if (c->format_version == 0) {
        gguf_set_err(err, errlen, "not a bitedge file (no key 'bitedge.format_version'; llama.cpp / bitnet.cpp files are "
                "not supported): convert the model with bitedge convert");
        return -1;
    }
    if (c->format_version != 1) {
        gguf_set_err(err, errlen, "bitedge.format_version %d is not supported by this runtime (1 expected)", c->format_version);
        return -1;
    }

    snprintf(c->name, sizeof(c->name), "bitnet");
    if ((rc = key_str(f, "general.name", &s, err, errlen)) < 0) return -1;
    if (rc == 1) {
        size_t n = s.len < sizeof(c->name) - 1 ? (size_t)s.len : sizeof(c->name) - 1;
        for (size_t i = 0; i < n; i++) c->name[i] = (s.ptr[i] == 0) ? '?' : s.ptr[i];
        c->name[n] = 0;
    }

    c->vocab_size = 0;
    if (key_int(f, "bitnet.vocab_size", 0, 1, BE_MAX_VOCAB, &c->vocab_size, err, errlen) ||
        key_int(f, "bitnet.context_length", 1, 1, BE_MAX_CONTEXT, &c->context_length, err, errlen) ||
        key_int(f, "bitnet.embedding_length", 1, 1, BE_MAX_HIDDEN, &c->hidden, err, errlen) ||
        key_int(f, "bitnet.block_count", 1, 1, BE_MAX_LAYERS, &c->n_layers, err, errlen) ||
        key_int(f, "bitnet.feed_forward_length", 1, 1, BE_MAX_FFN, &c->ffn, err, errlen) ||
        key_int(f, "bitnet.attention.head_count", 1, 1, BE_MAX_HEADS, &c->n_heads, err, errlen))
        return -1;
    c->n_kv_heads = c->n_heads;
    if (key_int(f, "bitnet.attention.head_count_kv", 0, 1, BE_MAX_HEADS, &c->n_kv_heads, err, errlen)) return -1;
    if (c->n_heads % c->n_kv_heads) {
        gguf_set_err(err, errlen, "bitnet.attention.head_count %d is not a multiple of head_count_kv %d", c->n_heads,
                c->n_kv_heads);
        return -1;
    }
    c->head_dim = c->hidden % c->n_heads ? 0 : c->hidden / c->n_heads;  /* llama.cpp's default */
    if (key_int(f, "bitnet.attention.key_length", 0, 1, BE_MAX_HEAD_DIM, &c->head_dim, err, errlen)) return -1;
    if (c->head_dim == 0) {
        gguf_set_err(err, errlen, "missing key 'bitnet.attention.key_length' (embedding_length %d is not a multiple of "
                "head_count %d)", c->hidden, c->n_heads);
        return -1;
    }
    if (c->head_dim > BE_MAX_HEAD_DIM || c->head_dim % 2) {
        gguf_set_err(err, errlen, "head_dim %d must be even and at most %d (RoPE rotates pairs)", c->head_dim, BE_MAX_HEAD_DIM);
        return -1;
    }
    int v_len = c->head_dim, rope_dims = c->head_dim;
    if (key_int(f, "bitnet.attention.value_length", 0, 1, BE_MAX_HEAD_DIM, &v_len, err, errlen) ||
        key_int(f, "bitnet.rope.dimension_count", 0, 1, BE_MAX_HEAD_DIM, &rope_dims, err, errlen))
        return -1;
    if (v_len != c->head_dim) {
        gguf_set_err(err, errlen, "bitnet.attention.value_length %d differs from key_length %d (not supported)", v_len,
                c->head_dim);
        return -1;
    }
    if (rope_dims != c->head_dim) {
        gguf_set_err(err, errlen, "bitnet.rope.dimension_count %d differs from head_dim %d (partial RoPE is not supported)",
                rope_dims, c->head_dim);
        return -1;
    }
    if ((int64_t)c->n_heads * c->head_dim > BE_MAX_FFN) {
        gguf_set_err(err, errlen, "head_count %d x head_dim %d is too large", c->n_heads, c->head_dim);
        return -1;
    }
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    if (key_float(f, "bitnet.attention.layer_norm_rms_epsilon", 0, &c->rms_eps, err, errlen) ||
        key_float(f, "bitnet.rope.freq_base", 0, &c->rope_theta, err, errlen))
        return -1;

    /* bitedge.* */
    if ((rc = key_str(f, "bitedge.weight_packing", &s, err, errlen)) < 0) return -1;
    if (rc == 0) {
        gguf_set_err(err, errlen, "missing key 'bitedge.weight_packing'");
        return -1;
    }
    c->packing = -1;
    for (int p = 0; p <= BE_PACK_TQ2_0; p++)
        if (gguf_str_eq(s, PACKING_NAMES[p])) c->packing = p;
    if (c->packing < 0) {
        gguf_set_err(err, errlen, "unknown bitedge.weight_packing '%.*s' (i2_s, tl1, tl2 or tq2_0)", SHOW(s));
        return -1;
    }
    if (c->packing == BE_PACK_TQ2_0 && !(accept & BE_PACK_MASK(BE_PACK_TQ2_0))) {
        gguf_set_err(err, errlen, "packing tq2_0 is for llama.cpp; convert with --type i2_s");
        return -1;
    }
    if (!(accept & BE_PACK_MASK(c->packing))) {
        gguf_set_err(err, errlen, "packing %s has no kernels in this runtime (its forward pass runs i2_s); convert with "
                "--type i2_s", PACKING_NAMES[c->packing]);
        return -1;
    }

    c->ffn_act = BE_ACT_RELU2;
    if ((rc = key_str(f, "bitedge.ffn_activation", &s, err, errlen)) < 0) return -1;
    if (rc == 1) {
        if (gguf_str_eq(s, "relu2")) c->ffn_act = BE_ACT_RELU2;
        else if (gguf_str_eq(s, "silu")) c->ffn_act = BE_ACT_SILU;
        else {
            gguf_set_err(err, errlen, "unknown bitedge.ffn_activation '%.*s' (relu2 or silu)", SHOW(s));
            return -1;
        }
    }
    c->embed_type = BE_F32;
    if ((rc = key_str(f, "bitedge.embed_type", &s, err, errlen)) < 0) return -1;
    if (rc == 1) {
        if (gguf_str_eq(s, "f32")) c->embed_type = BE_F32;
        else if (gguf_str_eq(s, "f16")) c->embed_type = BE_F16;
        else if (gguf_str_eq(s, "q8_0")) c->embed_type = BE_Q8_0;
        else {
            gguf_set_err(err, errlen, "unknown bitedge.embed_type '%.*s' (f32, f16 or q8_0)", SHOW(s));
            return -1;
        }
    }
    /* sub_norms / tie_embeddings: the key, else what the tensors say (decided in map_tensors) */
    c->sub_norms = -1;
    c->tie_embeddings = -1;
    if (key_bool(f, "bitedge.sub_norms", &c->sub_norms, err, errlen) ||
        key_bool(f, "bitedge.tie_embeddings", &c->tie_embeddings, err, errlen))
        return -1;
    return 0;
}

/* ----------------------------------------------------------------------------------------------------------
 * tensors */

static int check_aligned(const gguf_tensor *t, char *err, size_t errlen) {
    if ((uintptr_t)t->data % TENSOR_ALIGN) {
        gguf_set_err(err, errlen, "tensor '%s': data is not %d-byte aligned (general.alignment too small): convert the "
                "model with bitedge convert", t->name, TENSOR_ALIGN);
        return -1;
    }
    return 0;
}

static const char *ggml_name(uint32_t type) {
    const char *n = ggml_type_name(type);
    return n ? n : "?";
}

/* A tensor of a given ggml type and exact byte size; *out = its data. required = 0: absent is fine (*out NULL). */
static int map_tensor(const gguf_file *f, const char *name, uint32_t type, int64_t nbytes, int required,
                      const void **out, char *err, size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    *out = NULL;
    if (!t) {
        if (!required) return 0;
        gguf_set_err(err, errlen, "missing tensor '%s'", name);
        return -1;
    }
    if (t->type != type) {
        gguf_set_err(err, errlen, "tensor '%s' has type %s (%s expected)", name, ggml_name(t->type), ggml_name(type));
        return -1;
    }
    if (nbytes < 0 || t->nbytes != (uint64_t)nbytes) {
        gguf_set_err(err, errlen, "tensor '%s' is %llu bytes (%lld expected from the config)", name,
                (unsigned long long)t->nbytes, (long long)nbytes);
        return -1;
    }
    if (check_aligned(t, err, errlen)) return -1;
    *out = t->data;
    return 0;
}

/* A float vector [n]. */
static int map_norm(const gguf_file *f, const char *name, int n, int required, const float **out, char *err,
                    size_t errlen) {
    const void *p;
    if (map_tensor(f, name, GGML_TYPE_F32, (int64_t)n * 4, required, &p, err, errlen)) return -1;
    *out = p;
    return 0;
}

/* Ternary matrix [n][k]: packed weight (and, except for tq2_0, a [1] f32 scale). */
static int map_ternary(const gguf_file *f, const be_config *c, int layer, const char *role, int n, int k,
                       const uint8_t **w, float *scale, char *err, size_t errlen) {
    char name[96];
    snprintf(name, sizeof(name), "blk.%d.%s.weight", layer, role);
    int64_t nbytes = be_packed_nbytes(c->packing, n, k);
    if (nbytes < 0) {
        gguf_set_err(err, errlen, "tensor '%s' [%d x %d] cannot be stored as %s", name, n, k, PACKING_NAMES[c->packing]);
        return -1;
    }
    const void *p;
    uint32_t type = c->packing == BE_PACK_TQ2_0 ? GGML_TYPE_TQ2_0 : GGML_TYPE_I8;
    if (map_tensor(f, name, type, nbytes, 1, &p, err, errlen)) return -1;
    *w = p;
    *scale = 1.0f;
    if (c->packing == BE_PACK_TQ2_0) return 0;  /* the scale is inside the blocks */
    snprintf(name, sizeof(name), "blk.%d.%s.scale", layer, role);
    if (map_tensor(f, name, GGML_TYPE_F32, 4, 1, &p, err, errlen)) return -1;
    memcpy(scale, p, 4);
    if (!isfinite(*scale)) {
        gguf_set_err(err, errlen, "tensor '%s' = %g is not a finite scale", name, (double)*scale);
        return -1;
    }
    return 0;
}

static uint32_t embed_ggml_type(int embed_type) {
    return embed_type == BE_F16 ? GGML_TYPE_F16 : embed_type == BE_Q8_0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F32;
}

static int map_tensors(const gguf_file *f, be_model *m, char *err, size_t errlen) {
    be_config *c = &m->config;
    uint32_t et = embed_ggml_type(c->embed_type);
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) {
        gguf_set_err(err, errlen, "missing tensor 'token_embd.weight'");
        return -1;
    }
    if (c->vocab_size == 0) {  /* no bitnet.vocab_size: the embedding's rows */
        if (emb->n_dims != 2 || emb->ne[1] > BE_MAX_VOCAB) {
            gguf_set_err(err, errlen, "missing key 'bitnet.vocab_size'");
            return -1;
        }
        c->vocab_size = (int)emb->ne[1];
    }
    int64_t row = ggml_row_size(et, c->hidden);
    if (row < 0) {
        gguf_set_err(err, errlen, "embedding_length %d is not a multiple of the %s block: cannot store token_embd.weight",
                c->hidden, ggml_name(et));
        return -1;
    }
    int64_t emb_bytes = row * c->vocab_size;
    if (map_tensor(f, "token_embd.weight", et, emb_bytes, 1, &m->token_embd, err, errlen)) return -1;
    if (emb->n_dims != 2 || emb->ne[0] != c->hidden) {  /* right size, wrong shape: rows would be misread */
        gguf_set_err(err, errlen, "tensor 'token_embd.weight' has shape [%lld, %lld] (ggml order; [%d, %d] expected)",
                (long long)emb->ne[0], (long long)emb->ne[1], c->hidden, c->vocab_size);
        return -1;
    }
    if (map_norm(f, "output_norm.weight", c->hidden, 1, &m->output_norm, err, errlen)) return -1;
    if (c->tie_embeddings == 1 && gguf_find_tensor(f, "output.weight")) {
        gguf_set_err(err, errlen, "tensor 'output.weight' is present but bitedge.tie_embeddings is true");
        return -1;
    }
    if (map_tensor(f, "output.weight", et, emb_bytes, c->tie_embeddings == 0, &m->output, err, errlen)) return -1;
    const gguf_tensor *out = gguf_find_tensor(f, "output.weight");
    if (out && (out->n_dims != 2 || out->ne[0] != c->hidden)) {
        gguf_set_err(err, errlen, "tensor 'output.weight' has shape [%lld, %lld] (ggml order; [%d, %d] expected)",
                (long long)out->ne[0], (long long)out->ne[1], c->hidden, c->vocab_size);
        return -1;
    }
    c->tie_embeddings = m->output == NULL;
    if (c->sub_norms < 0) c->sub_norms = gguf_find_tensor(f, "blk.0.attn_sub_norm.weight") != NULL;

    m->layers = calloc((size_t)c->n_layers, sizeof(be_layer));
    if (!m->layers) {
        gguf_set_err(err, errlen, "out of memory for %d layers", c->n_layers);
        return -1;
    }
    int h = c->hidden, q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim, ffn = c->ffn;
    for (int l = 0; l < c->n_layers; l++) {
        be_layer *L = &m->layers[l];
        char name[96];
#define NORM(field, n, required)                                                        \
    snprintf(name, sizeof(name), "blk.%d." #field ".weight", l);                        \
    if (map_norm(f, name, n, required, &L->field, err, errlen)) return -1;
#define TERNARY(field, n, k) \
    if (map_ternary(f, c, l, #field, n, k, &L->field, &L->field##_scale, err, errlen)) return -1;
        NORM(attn_norm, h, 1)
        TERNARY(attn_q, q_dim, h)
        TERNARY(attn_k, kv_dim, h)
        TERNARY(attn_v, kv_dim, h)
        NORM(attn_sub_norm, q_dim, c->sub_norms)
        TERNARY(attn_output, h, q_dim)
        NORM(ffn_norm, h, 1)
        TERNARY(ffn_gate, ffn, h)
        TERNARY(ffn_up, ffn, h)
        NORM(ffn_sub_norm, ffn, c->sub_norms)
        TERNARY(ffn_down, h, ffn)
#undef NORM
#undef TERNARY
        if (!c->sub_norms && (L->attn_sub_norm || L->ffn_sub_norm)) {
            gguf_set_err(err, errlen, "layer %d has sub-norm tensors but bitedge.sub_norms is false", l);
            return -1;
        }
    }
    return 0;
}

/* ----------------------------------------------------------------------------------------------------------
 * tokenizer keys -> be_vocab_view */

static int vocab_str_key(const gguf_file *f, const char *key, be_vocab_str *out, char *err, size_t errlen) {
    gguf_str s;
    int rc = key_str(f, key, &s, err, errlen);
    if (rc < 0) return -1;
    out->ptr = rc ? s.ptr : NULL;
    out->len = rc ? s.len : 0;
    return 0;
}

static int vocab_id_key(const gguf_file *f, const char *key, int64_t *out, char *err, size_t errlen) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    *out = -1;
    if (rc == GGUF_ABSENT) return 0;
    if (rc != GGUF_OK) {
        gguf_set_err(err, errlen, "key '%s' has type %s (an integer token id expected)", key,
                gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    *out = v;  /* range-checked against the vocabulary by build_tokenizer */
    return 0;
}

static int vocab_flag_key(const gguf_file *f, const char *key, int *out, char *err, size_t errlen) {
    *out = -1;
    int v;
    int rc = gguf_get_bool(f, key, &v);
    if (rc == GGUF_ABSENT) return 0;
    if (rc != GGUF_OK) {
        gguf_set_err(err, errlen, "key '%s' has type %s (bool expected)", key, gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    *out = v;
    return 0;
}

static be_vocab_str *copy_strs(const gguf_str *s, uint64_t n) {
    be_vocab_str *out = malloc((n ? (size_t)n : 1) * sizeof(*out));
    if (!out) return NULL;
    for (uint64_t i = 0; i < n; i++) {
        out[i].ptr = s[i].ptr;
        out[i].len = s[i].len;
    }
    return out;
}

static int vocab_strs_key(const gguf_file *f, const char *key, uint64_t *n, be_vocab_str **out, char *err,
                          size_t errlen) {
    const gguf_str *s;
    int rc = gguf_get_arr_strs(f, key, n, &s);
    *out = NULL;
    if (rc == GGUF_ABSENT) {
        *n = 0;
        return 0;
    }
    if (rc != GGUF_OK) {
        gguf_set_err(err, errlen, "key '%s' is not an array of strings", key);
        return -1;
    }
    if (!(*out = copy_strs(s, *n))) {
        gguf_set_err(err, errlen, "out of memory for '%s'", key);
        return -1;
    }
    return 0;
}

/* A numeric per-token array of exactly n_tokens elements of type want, copied so it is aligned. */
static int vocab_numbers_key(const gguf_file *f, const char *key, uint32_t want, uint64_t n_tokens, void **out,
                             char *err, size_t errlen) {
    uint32_t type;
    uint64_t n;
    const void *data;
    *out = NULL;
    int rc = gguf_get_arr(f, key, &type, &n, &data);
    if (rc == GGUF_ABSENT) return 0;
    if (rc != GGUF_OK || type != want) {
        gguf_set_err(err, errlen, "key '%s' is not an array of %s", key, gguf_type_name(want));
        return -1;
    }
    if (n != n_tokens) {
        gguf_set_err(err, errlen, "key '%s' has %llu entries but tokenizer.ggml.tokens has %llu", key, (unsigned long long)n,
                (unsigned long long)n_tokens);
        return -1;
    }
    if (!(*out = malloc(n ? (size_t)n * 4 : 1))) {
        gguf_set_err(err, errlen, "out of memory for '%s'", key);
        return -1;
    }
    memcpy(*out, data, (size_t)n * 4);
    return 0;
}

static int read_vocab(const gguf_file *f, be_model *m, char *err, size_t errlen) {
    be_vocab_view *v = &m->vocab;
    void *p;
    if (vocab_str_key(f, "tokenizer.ggml.model", &v->model, err, errlen) ||
        vocab_str_key(f, "tokenizer.ggml.pre", &v->pre, err, errlen) ||
        vocab_str_key(f, "tokenizer.chat_template", &v->chat_template, err, errlen) ||
        vocab_strs_key(f, "tokenizer.ggml.tokens", &v->n_tokens, &m->vocab_tokens_, err, errlen) ||
        vocab_strs_key(f, "tokenizer.ggml.merges", &v->n_merges, &m->vocab_merges_, err, errlen))
        return -1;
    v->tokens = m->vocab_tokens_;
    v->merges = m->vocab_merges_;
    if (v->n_tokens > (uint64_t)m->config.vocab_size) {
        gguf_set_err(err, errlen, "tokenizer.ggml.tokens has %llu tokens but the embedding has only %d rows "
                "(bitnet.vocab_size)", (unsigned long long)v->n_tokens, m->config.vocab_size);
        return -1;
    }
    if (vocab_numbers_key(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->n_tokens, &p, err, errlen)) return -1;
    m->vocab_token_type_ = p;
    v->token_type = m->vocab_token_type_;
    if (vocab_numbers_key(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->n_tokens, &p, err, errlen)) return -1;
    m->vocab_scores_ = p;
    v->scores = m->vocab_scores_;
    if (vocab_id_key(f, "tokenizer.ggml.bos_token_id", &v->bos_id, err, errlen) ||
        vocab_id_key(f, "tokenizer.ggml.eos_token_id", &v->eos_id, err, errlen) ||
        vocab_id_key(f, "tokenizer.ggml.unknown_token_id", &v->unknown_id, err, errlen) ||
        vocab_id_key(f, "tokenizer.ggml.padding_token_id", &v->padding_id, err, errlen) ||
        vocab_flag_key(f, "tokenizer.ggml.add_bos_token", &v->add_bos, err, errlen) ||
        vocab_flag_key(f, "tokenizer.ggml.add_eos_token", &v->add_eos, err, errlen) ||
        vocab_flag_key(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err, errlen))
        return -1;
    return 0;
}

/* ----------------------------------------------------------------------------------------------------------
 * build / free */

int64_t be_model_n_params(const be_model *m) { return m->n_params; }

static int64_t count_params(const be_config *c) {
    int64_t h = c->hidden, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t per_layer = 2 * h + h * q + 2 * h * kv + q * h + 3 * h * c->ffn;
    if (c->sub_norms) per_layer += q + c->ffn;
    int64_t emb = (int64_t)c->vocab_size * h;
    return emb * (c->tie_embeddings ? 1 : 2) + h + per_layer * c->n_layers;
}

static const char *embed_type_name(int t) { return t == BE_F16 ? "f16" : t == BE_Q8_0 ? "q8_0" : "f32"; }

int build_model_ex(const gguf_file *f, be_model *m, unsigned accept, char *err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    if (read_config(f, &m->config, accept, err, errlen) || map_tensors(f, m, err, errlen) ||
        read_vocab(f, m, err, errlen)) {
        free_model(m);
        return -1;
    }
    m->packing_name = PACKING_NAMES[m->config.packing];
    m->embed_type_name = embed_type_name(m->config.embed_type);
    m->n_params = count_params(&m->config);
    return 0;
}

int build_model(const gguf_file *f, be_model *m, char *err, size_t errlen) {
    return build_model_ex(f, m, BE_PACKINGS_BITEDGE, err, errlen);
}

void free_model(be_model *m) {
    free(m->layers);
    free(m->vocab_tokens_);
    free(m->vocab_merges_);
    free(m->vocab_token_type_);
    free(m->vocab_scores_);
    memset(m, 0, sizeof(*m));
}
