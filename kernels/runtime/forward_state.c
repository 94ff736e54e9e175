/* The run state of the forward pass (forward.h): activation buffers, attention scratch, RoPE tables, KV cache. */
#include "forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* No fused multiply-add in the RoPE tables either (see forward.c) */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static int pad128(int k) { return (k + 127) / 128 * 128; }
static int max_int(int a, int b) { return a > b ? a : b; }

static int build_state_impl(be_state *s, const be_model *m, int ctx, int max_batch, int n_threads, int with_cache,
                            char *err, size_t errlen) {
    const be_config *c = &m->config;
    memset(s, 0, sizeof(*s));
    if (ctx <= 0 || ctx > c->context_length) ctx = c->context_length;
    if (max_batch <= 0) max_batch = 1;
    if (n_threads <= 0) n_threads = 1;
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    s->ctx = ctx;
    s->max_batch = max_batch;
    s->n_threads = n_threads;
    s->kp_max = pad128(max_int(max_int(c->hidden, q_dim), c->ffn));
    /* the ternary operations of the file's packing on the kernel table this run uses (ternary_ops.h) */
    s->ternary = be_ternary_ops_for(c->packing, be_kernels_active());
    if (!s->ternary) {
        snprintf(err, errlen, "no ternary kernels for packing %d in this build", c->packing);
        return -1;
    }
    /* prepared activations (TL tables) grow with kp, so the widest input's fit every matmul; TL rows of xq are
     * longer than pad128 when K % 128 == 0 and K % 3 != 0 (4096 -> 4098) */
    int k_max = max_int(max_int(c->hidden, q_dim), c->ffn);
    s->kp_max = max_int(s->kp_max, s->ternary->act_row_bytes(k_max));
    size_t tables = s->ternary->table_bytes(s->ternary->act_row_bytes(k_max));
    int acc_rows = max_int(max_int(q_dim + 2 * kv_dim, 2 * c->ffn), c->hidden);
    size_t B = (size_t)max_batch, half = (size_t)c->head_dim / 2;
    size_t kv = with_cache ? (size_t)c->n_layers * (size_t)ctx * (size_t)kv_dim : 0;

    s->x = calloc(B * c->hidden, sizeof(float));
    s->xb = calloc(B * max_int(c->hidden, q_dim), sizeof(float));
    s->hb = calloc(B * c->ffn, sizeof(float));
    s->hb2 = calloc(B * c->ffn, sizeof(float));
    s->q = calloc(B * q_dim, sizeof(float));
    s->k = calloc(B * kv_dim, sizeof(float));
    s->v = calloc(B * kv_dim, sizeof(float));
    s->xq = calloc(B * s->kp_max, sizeof(int8_t));
    s->act_scale = calloc(B, sizeof(float));
    s->acc = calloc(B * acc_rows, sizeof(int32_t));
    if (tables) {
        s->tl_tables_stride = (tables + 63) / 64 * 64;  /* 64-byte strides keep each token's tables apart */
        s->tl_tables = calloc(B, s->tl_tables_stride);
    }
    s->att = calloc((size_t)n_threads * ctx, sizeof(float));
    s->rope_cos = calloc((size_t)ctx * half, sizeof(float));
    s->rope_sin = calloc((size_t)ctx * half, sizeof(float));
    s->logits = calloc(B * c->vocab_size, sizeof(float));
    if (with_cache) {
        s->key_cache = calloc(kv, sizeof(float));
        s->value_cache = calloc(kv, sizeof(float));
    }
    if (!s->x || !s->xb || !s->hb || !s->hb2 || !s->q || !s->k || !s->v || !s->xq || !s->act_scale ||
        !s->acc || (tables && !s->tl_tables) || !s->att || !s->rope_cos || !s->rope_sin || !s->logits ||
        (with_cache && (!s->key_cache || !s->value_cache))) {
        snprintf(err, errlen, "out of memory for the run state (context %d: KV cache %.1f MiB)", ctx,
                 2.0 * (double)kv * sizeof(float) / 1048576.0);
        free_state(s);
        return -1;
    }

    /* RoPE tables as the reference builds them: inv_freq = 1 / theta^(2i/d) and angle = pos * inv_freq in fp32 */
    for (size_t i = 0; i < half; i++) {
        float exponent = (float)(2 * i) / (float)c->head_dim;
        float inv_freq = 1.0f / powf(c->rope_theta, exponent);
        for (int pos = 0; pos < ctx; pos++) {
            float angle = (float)pos * inv_freq;
            s->rope_cos[(size_t)pos * half + i] = (float)cos((double)angle);
            s->rope_sin[(size_t)pos * half + i] = (float)sin((double)angle);
        }
    }
    return 0;
}

int build_state(be_state *s, const be_model *m, int ctx, int max_batch, int n_threads, char *err, size_t errlen) {
    return build_state_impl(s, m, ctx, max_batch, n_threads, 1, err, errlen);
}

int build_batch_state(be_state *s, const be_model *m, int ctx, int max_batch, int n_threads, char *err,
                      size_t errlen) {
    return build_state_impl(s, m, ctx, max_batch, n_threads, 0, err, errlen);
}

void free_state(be_state *s) {
    free(s->x); free(s->xb); free(s->hb); free(s->hb2);
    free(s->q); free(s->k); free(s->v); free(s->xq); free(s->act_scale); free(s->acc); free(s->att);
    free(s->tl_tables);
    free(s->rope_cos); free(s->rope_sin); free(s->logits); free(s->key_cache); free(s->value_cache);
    free(s->x16); free(s->greedy_approx); free(s->output_abs_sum);
    memset(s, 0, sizeof(*s));
}
