/* model_config.c: a model's configuration from its GGUF keys (bitnet.*, bitedge.*), every value range-checked
 * (see model.h). */
#include "model_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitedge_gguf_keys.h" /* rendered from bitedge.formats.gguf_keys */
#include "kernels.h"

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
int be_key_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t errlen) {
    int rc = gguf_get_str(f, key, out);
    if (rc == GGUF_WRONG_TYPE) {
        gguf_set_err(err, errlen, "key '%s' has type %s (str expected)", key, gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    return rc == GGUF_OK ? 1 : 0;
}

/* "%.*s" arguments for a string of at most 64 bytes */
#define SHOW(s) (int)((s).len < 64 ? (s).len : 64), (s).ptr

int be_read_config(const gguf_file *f, be_config *c, unsigned accept, char *err, size_t errlen) {
    gguf_str s;
    int rc = be_key_str(f, BE_KEY_ARCHITECTURE, &s, err, errlen);
    if (rc < 0) return -1;
    if (rc == 0) {
        gguf_set_err(err, errlen, "missing key '" BE_KEY_ARCHITECTURE "': not a model file");
        return -1;
    }
    if (!gguf_str_eq(s, BE_GGUF_ARCH)) {
        gguf_set_err(err, errlen, "architecture '%.*s' is not supported (" BE_GGUF_ARCH " expected): convert the model with bitedge "
                "convert", SHOW(s));
        return -1;
    }
    if (key_int(f, BE_KEY_FORMAT_VERSION, 0, 0, INT32_MAX, &c->format_version, err, errlen)) return -1;
    if (c->format_version == 0) {
        gguf_set_err(err, errlen, "not a bitedge file (no key '" BE_KEY_FORMAT_VERSION "'; llama.cpp / bitnet.cpp files are "
                "not supported): convert the model with bitedge convert");
        return -1;
    }
    if (c->format_version != BE_GGUF_FORMAT_VERSION) {
        gguf_set_err(err, errlen, BE_KEY_FORMAT_VERSION " %d is not supported by this runtime (%d expected)", c->format_version,
                     BE_GGUF_FORMAT_VERSION);
        return -1;
    }

    snprintf(c->name, sizeof(c->name), "bitnet");
    if ((rc = be_key_str(f, BE_KEY_NAME, &s, err, errlen)) < 0) return -1;
    if (rc == 1) {
        size_t n = s.len < sizeof(c->name) - 1 ? (size_t)s.len : sizeof(c->name) - 1;
        for (size_t i = 0; i < n; i++) c->name[i] = (s.ptr[i] == 0) ? '?' : s.ptr[i];
        c->name[n] = 0;
    }

    c->vocab_size = 0;
    if (key_int(f, BE_KEY_VOCAB_SIZE, 0, 1, BE_MAX_VOCAB, &c->vocab_size, err, errlen) ||
        key_int(f, BE_KEY_CONTEXT_LENGTH, 1, 1, BE_MAX_CONTEXT, &c->context_length, err, errlen) ||
        key_int(f, BE_KEY_EMBEDDING_LENGTH, 1, 1, BE_MAX_HIDDEN, &c->hidden, err, errlen) ||
        key_int(f, BE_KEY_BLOCK_COUNT, 1, 1, BE_MAX_LAYERS, &c->n_layers, err, errlen) ||
        key_int(f, BE_KEY_FEED_FORWARD_LENGTH, 1, 1, BE_MAX_FFN, &c->ffn, err, errlen) ||
        key_int(f, BE_KEY_HEAD_COUNT, 1, 1, BE_MAX_HEADS, &c->n_heads, err, errlen))
        return -1;
    c->n_kv_heads = c->n_heads;
    if (key_int(f, BE_KEY_HEAD_COUNT_KV, 0, 1, BE_MAX_HEADS, &c->n_kv_heads, err, errlen)) return -1;
    if (c->n_heads % c->n_kv_heads) {
        gguf_set_err(err, errlen, BE_KEY_HEAD_COUNT " %d is not a multiple of head_count_kv %d", c->n_heads,
                c->n_kv_heads);
        return -1;
    }
    c->head_dim = c->hidden % c->n_heads ? 0 : c->hidden / c->n_heads;  /* llama.cpp's default */
    if (key_int(f, BE_KEY_KEY_LENGTH, 0, 1, BE_MAX_HEAD_DIM, &c->head_dim, err, errlen)) return -1;
    if (c->head_dim == 0) {
        gguf_set_err(err, errlen, "missing key '" BE_KEY_KEY_LENGTH "' (embedding_length %d is not a multiple of "
                "head_count %d)", c->hidden, c->n_heads);
        return -1;
    }
    if (c->head_dim > BE_MAX_HEAD_DIM || c->head_dim % 2) {
        gguf_set_err(err, errlen, "head_dim %d must be even and at most %d (RoPE rotates pairs)", c->head_dim, BE_MAX_HEAD_DIM);
        return -1;
    }
    int v_len = c->head_dim, rope_dims = c->head_dim;
    if (key_int(f, BE_KEY_VALUE_LENGTH, 0, 1, BE_MAX_HEAD_DIM, &v_len, err, errlen) ||
        key_int(f, BE_KEY_ROPE_DIMENSION_COUNT, 0, 1, BE_MAX_HEAD_DIM, &rope_dims, err, errlen))
        return -1;
    if (v_len != c->head_dim) {
        gguf_set_err(err, errlen, BE_KEY_VALUE_LENGTH " %d differs from key_length %d (not supported)", v_len,
                c->head_dim);
        return -1;
    }
    if (rope_dims != c->head_dim) {
        gguf_set_err(err, errlen, BE_KEY_ROPE_DIMENSION_COUNT " %d differs from head_dim %d (partial RoPE is not supported)",
                rope_dims, c->head_dim);
        return -1;
    }
    if ((int64_t)c->n_heads * c->head_dim > BE_MAX_FFN) {
        gguf_set_err(err, errlen, "head_count %d x head_dim %d is too large", c->n_heads, c->head_dim);
        return -1;
    }
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    if (key_float(f, BE_KEY_RMS_EPS, 0, &c->rms_eps, err, errlen) ||
        key_float(f, BE_KEY_ROPE_FREQ_BASE, 0, &c->rope_theta, err, errlen))
        return -1;

    /* bitedge.* */
    if ((rc = be_key_str(f, BE_KEY_WEIGHT_PACKING, &s, err, errlen)) < 0) return -1;
    if (rc == 0) {
        gguf_set_err(err, errlen, "missing key '" BE_KEY_WEIGHT_PACKING "'");
        return -1;
    }
    c->packing = -1;
    for (int p = 0; p < BE_N_PACKINGS; p++)
        if (gguf_str_eq(s, be_packing_name(p))) c->packing = p;
    if (c->packing < 0) {
        gguf_set_err(err, errlen, "unknown " BE_KEY_WEIGHT_PACKING " '%.*s' (i2_s, tl1, tl2 or tq2_0)", SHOW(s));
        return -1;
    }
    if (c->packing == BE_PACK_TQ2_0 && !(accept & BE_PACK_MASK(BE_PACK_TQ2_0))) {
        gguf_set_err(err, errlen, "packing tq2_0 is for llama.cpp; convert with --type i2_s");
        return -1;
    }
    if (!(accept & BE_PACK_MASK(c->packing))) {
        gguf_set_err(err, errlen, "packing %s has no kernels in this runtime (its forward pass runs i2_s); convert with "
                "--type i2_s", be_packing_name(c->packing));
        return -1;
    }

    c->ffn_act = BE_ACT_RELU2;
    if ((rc = be_key_str(f, BE_KEY_FFN_ACTIVATION, &s, err, errlen)) < 0) return -1;
    if (rc == 1) {
        if (gguf_str_eq(s, "relu2")) c->ffn_act = BE_ACT_RELU2;
        else if (gguf_str_eq(s, "silu")) c->ffn_act = BE_ACT_SILU;
        else {
            gguf_set_err(err, errlen, "unknown " BE_KEY_FFN_ACTIVATION " '%.*s' (relu2 or silu)", SHOW(s));
            return -1;
        }
    }
    c->embed_type = BE_F32;
    if ((rc = be_key_str(f, BE_KEY_EMBED_TYPE, &s, err, errlen)) < 0) return -1;
    if (rc == 1) {
        if (gguf_str_eq(s, "f32")) c->embed_type = BE_F32;
        else if (gguf_str_eq(s, "f16")) c->embed_type = BE_F16;
        else if (gguf_str_eq(s, "q8_0")) c->embed_type = BE_Q8_0;
        else if (gguf_str_eq(s, "q6_k")) c->embed_type = BE_Q6_K;
        else if (gguf_str_eq(s, "q4_0")) c->embed_type = BE_Q4_0;
        else {
            gguf_set_err(err, errlen, "unknown " BE_KEY_EMBED_TYPE " '%.*s' (f32, f16, q8_0, q6_k or q4_0)", SHOW(s));
            return -1;
        }
    }
    /* sub_norms / tie_embeddings: the key, else what the tensors say (decided in map_tensors) */
    c->sub_norms = -1;
    c->tie_embeddings = -1;
    if (key_bool(f, BE_KEY_SUB_NORMS, &c->sub_norms, err, errlen) ||
        key_bool(f, BE_KEY_TIE_EMBEDDINGS, &c->tie_embeddings, err, errlen))
        return -1;
    return 0;
}
