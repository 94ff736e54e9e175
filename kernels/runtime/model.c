/* model.c: build a be_model from a validated gguf_file (see model.h). The gguf_file checked the container; this
 * file checks the meaning: every tensor present with the type and size the config implies (the keys are read in
 * model_config.c, the tokenizer keys in model_vocab.c). */
#include "model_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define TENSOR_ALIGN 32  /* SIMD kernels and float pointers rely on it; bitedge writes general.alignment = 32 */

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
        gguf_set_err(err, errlen, "tensor '%s' [%d x %d] cannot be stored as %s", name, n, k, be_packing_name(c->packing));
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
    switch (embed_type) {
    case BE_F16: return GGML_TYPE_F16;
    case BE_Q8_0: return GGML_TYPE_Q8_0;
    case BE_Q6_K: return GGML_TYPE_Q6_K;
    case BE_Q4_0: return GGML_TYPE_Q4_0;
    default: return GGML_TYPE_F32;
    }
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
 * build / free */

int64_t be_model_n_params(const be_model *m) { return m->n_params; }

static int64_t count_params(const be_config *c) {
    int64_t h = c->hidden, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t per_layer = 2 * h + h * q + 2 * h * kv + q * h + 3 * h * c->ffn;
    if (c->sub_norms) per_layer += q + c->ffn;
    int64_t emb = (int64_t)c->vocab_size * h;
    return emb * (c->tie_embeddings ? 1 : 2) + h + per_layer * c->n_layers;
}

static const char *embed_type_name(int t) {
    switch (t) {
    case BE_F16: return "f16";
    case BE_Q8_0: return "q8_0";
    case BE_Q6_K: return "q6_k";
    case BE_Q4_0: return "q4_0";
    default: return "f32";
    }
}

int build_model_ex(const gguf_file *f, be_model *m, unsigned accept, char *err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    if (be_read_config(f, &m->config, accept, err, errlen) || map_tensors(f, m, err, errlen) ||
        be_read_vocab(f, m, err, errlen)) {
        free_model(m);
        return -1;
    }
    m->packing_name = be_packing_name(m->config.packing);
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
