/* model.h: a bitedge GGUF file (docs/format.md) as a config plus pointers into the mapping, llama2.c style.
 *
 * build_model reads the bitnet.* / bitedge.* keys into be_config (every value range-checked), maps every tensor
 * by name into be_model / be_layer and checks its ggml type and byte size against what the config and the
 * weight packing imply, and collects the tokenizer.* keys into a be_vocab_view (tokenizer.h) for
 * build_tokenizer. Weights are not copied: the gguf_file must stay open until free_model.
 *
 * Ternary matrix W [N rows = out_features][K = in_features] is T * s: a packed T (uint8 bytes, layout per
 * config.packing, see docs/format.md) and a float scale s. The runtime's forward pass runs I2_S, TL1 and TL2
 * (BE_PACKINGS_BITEDGE: the TL kernels are rendered into every build); build_model_ex takes another set (tools).
 */
#ifndef BITEDGE_MODEL_H
#define BITEDGE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "bitedge_layouts.h" /* rendered: enum be_packing, be_packing_name, be_packed_nbytes */
#include "gguf.h"
#include "tokenizer.h"

enum be_ffn_act { BE_ACT_RELU2 = 0, BE_ACT_SILU = 1 };
#define BE_PACK_MASK(p) (1u << (p))
#define BE_PACKINGS_BITEDGE (BE_PACK_MASK(BE_PACK_I2_S) | BE_PACK_MASK(BE_PACK_TL1) | BE_PACK_MASK(BE_PACK_TL2))

/* Limits a file is checked against: far above any real BitNet model, low enough that products of them fit an
 * int (q_dim, kv_dim, rows of one matmul) and a size_t (vocab * hidden). */
#define BE_MAX_VOCAB (1 << 22)
#define BE_MAX_HIDDEN (1 << 16)
#define BE_MAX_FFN (1 << 18)
#define BE_MAX_LAYERS 1024
#define BE_MAX_HEADS 1024
#define BE_MAX_HEAD_DIM 1024
#define BE_MAX_CONTEXT (1 << 22)

typedef struct {
    char name[128];          /* general.name (truncated), or "bitnet" when absent; NUL-terminated */
    int vocab_size;          /* rows of token_embd / output (>= the tokenizer's token count) */
    int context_length;
    int hidden;              /* embedding_length */
    int ffn;                 /* feed_forward_length */
    int n_layers;
    int n_heads;
    int n_kv_heads;          /* divides n_heads */
    int head_dim;            /* even */
    float rms_eps;           /* > 0 */
    float rope_theta;        /* > 0 */
    int ffn_act;             /* enum be_ffn_act */
    int sub_norms;           /* 1: attn_sub_norm / ffn_sub_norm present */
    int tie_embeddings;      /* 1: no output.weight, logits use token_embd */
    int embed_type;          /* enum be_float_type (kernels.h): BE_F32, BE_F16, BE_Q8_0, BE_Q6_K or BE_Q4_0 */
    int packing;             /* enum be_packing */
    int format_version;      /* bitedge.format_version */
} be_config;

typedef struct {
    const float *attn_norm;       /* [hidden] */
    const uint8_t *attn_q;        /* [q_dim][hidden] ternary, packed */
    float attn_q_scale;
    const uint8_t *attn_k;        /* [kv_dim][hidden] ternary, packed */
    float attn_k_scale;
    const uint8_t *attn_v;        /* [kv_dim][hidden] ternary, packed */
    float attn_v_scale;
    const float *attn_sub_norm;   /* [q_dim], NULL without sub norms */
    const uint8_t *attn_output;   /* [hidden][q_dim] ternary, packed */
    float attn_output_scale;
    const float *ffn_norm;        /* [hidden] */
    const uint8_t *ffn_gate;      /* [ffn][hidden] ternary, packed */
    float ffn_gate_scale;
    const uint8_t *ffn_up;        /* [ffn][hidden] ternary, packed */
    float ffn_up_scale;
    const float *ffn_sub_norm;    /* [ffn], NULL without sub norms */
    const uint8_t *ffn_down;      /* [hidden][ffn] ternary, packed */
    float ffn_down_scale;
} be_layer;

typedef struct {
    be_config config;
    const void *token_embd;       /* [vocab][hidden] in config.embed_type */
    const float *output_norm;     /* [hidden] */
    const void *output;           /* [vocab][hidden] in config.embed_type; NULL when tied (use token_embd) */
    be_layer *layers;             /* [n_layers] (owned) */
    const char *packing_name;     /* "i2_s", "tl1", "tl2", "tq2_0" */
    const char *embed_type_name;  /* "f32", "f16", "q8_0", "q6_k", "q4_0" */
    int64_t n_params;             /* logical weights (ternary matrices count N*K, not packed bytes) */
    be_vocab_view vocab;          /* tokenizer.* keys; pointers into the mapping or into owned copies below */
    /* owned storage behind vocab */
    be_vocab_str *vocab_tokens_;
    be_vocab_str *vocab_merges_;
    int32_t *vocab_token_type_;
    float *vocab_scores_;
} be_model;

/* Fill m from f (the packings in BE_PACKINGS_BITEDGE: the runtime's forward pass). 0, or -1 with a one-line message in err naming
 * the key or tensor at fault. On failure m holds nothing to free (free_model is still safe). */
int build_model(const gguf_file *f, be_model *m, char *err, size_t errlen);
/* Same, accepting the packings in accept (a mask of BE_PACK_MASK(...)). */
int build_model_ex(const gguf_file *f, be_model *m, unsigned accept, char *err, size_t errlen);
void free_model(be_model *m);

int64_t be_model_n_params(const be_model *m);

#endif
