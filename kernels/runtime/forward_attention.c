/* The attention half of a layer (forward_impl.h): RoPE and the KV cache writes, then attention, over the pool.
 * Determinism as in forward.c: each head of each token is reduced by one thread in an order fixed by the source. */
#include "forward_impl.h"

#include <math.h>
#include <string.h>

/* No fused multiply-add: keep the reference's rounding (see forward.c). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* NeoX half-split rotation of one head: dims i and i + d/2 form a pair */
static void rope_head(float *v, const float *cos_row, const float *sin_row, int d) {
    int half = d / 2;
    for (int i = 0; i < half; i++) {
        float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cos_row[i] - x1 * sin_row[i];
        v[i + half] = x1 * cos_row[i] + x0 * sin_row[i];
    }
}

/* what both steps work on: layer `layer` of the nb tokens at their places (s: q, k, v; xb and att for attention) */
typedef struct {
    const be_config *c;
    be_state *s;
    const token_places *places;
    int nb, layer;
} layer_task;

/* ----------------------------------------------------------------------------------------------------------
 * RoPE on each token's q and k, and its k and v into its KV cache: tokens split over the pool (a pool run of its
 * own: attention, next, reads the cache rows of the batch's other tokens) */

static void rope_worker(void *ctx, int ith, int nth) {
    layer_task *t = ctx;
    const be_config *c = t->c;
    be_state *s = t->s;
    int hd = c->head_dim, half = hd / 2, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int b0, b1;
    be_split_range(t->nb, ith, nth, 1, &b0, &b1);
    for (int b = b0; b < b1; b++) {
        int pos = place_pos(t->places, b);
        const float *cos_row = s->rope_cos + (size_t)pos * half, *sin_row = s->rope_sin + (size_t)pos * half;
        for (int h = 0; h < c->n_heads; h++) rope_head(s->q + (size_t)b * q_dim + (size_t)h * hd, cos_row, sin_row, hd);
        for (int h = 0; h < c->n_kv_heads; h++) rope_head(s->k + (size_t)b * kv_dim + (size_t)h * hd, cos_row, sin_row, hd);
        memcpy(place_cache(t->places, b, t->layer, kv_dim, 0) + (size_t)pos * kv_dim, s->k + (size_t)b * kv_dim,
               (size_t)kv_dim * sizeof(float));
        memcpy(place_cache(t->places, b, t->layer, kv_dim, 1) + (size_t)pos * kv_dim, s->v + (size_t)b * kv_dim,
               (size_t)kv_dim * sizeof(float));
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * attention over the thread pool: one (token, head) pair per work item */

/* a . b over n floats in eight interleaved partial sums, added pairwise at the end: independent chains instead of
 * one add waiting on the last (the scores were a fifth of prompt processing), and a summation order fixed by the C
 * source, so every ISA, compiler and thread count gives the same bits. */
static float dot_f32(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* out[j] = sum over p ascending of w[p] * rows[p * stride + j], j < width <= 32, in registers (the compiler cannot
 * keep out[] there: it may alias the rows); inlined with a constant width, the j loop becomes independent vectors
 * that hide the add latency. Every element is summed in the same order whatever the width. */
static inline __attribute__((always_inline)) void weighted_column_sums(const float *w, const float *rows,
                                                                       size_t stride, int n_rows, int width,
                                                                       float *out) {
    float acc[32] = {0};
    for (int p = 0; p < n_rows; p++) {
        const float *row = rows + (size_t)p * stride;
        const float a = w[p];
        for (int j = 0; j < width; j++) acc[j] += a * row[j];
    }
    memcpy(out, acc, (size_t)width * sizeof(float));
}

static void attention_worker(void *ctx, int ith, int nth) {
    layer_task *t = ctx;
    const be_config *c = t->c;
    int hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int group = c->n_heads / c->n_kv_heads;
    float scale = (float)pow((double)hd, -0.5);  /* Python's d**-0.5 in double, then fp32 */
    float *att = t->s->att + (size_t)ith * t->s->ctx;
    /* items dealt round-robin, not in ranges: a later token attends over more positions (causal), so contiguous
     * ranges gave the last thread most of a prompt batch's work */
    for (int item = ith; item < t->nb * c->n_heads; item += nth) {
        int b = item / c->n_heads, h = item % c->n_heads;
        int pos = place_pos(t->places, b);
        const float *key_cache = place_cache(t->places, b, t->layer, kv_dim, 0);
        const float *value_cache = place_cache(t->places, b, t->layer, kv_dim, 1);
        const float *q = t->s->q + (size_t)b * q_dim + (size_t)h * hd;
        size_t kv_off = (size_t)(h / group) * hd;  /* GQA: kv head j serves query heads j*group .. */
        /* scores, causal: positions 0..pos */
        float maxv = -INFINITY;
        for (int p = 0; p <= pos; p++) {
            att[p] = dot_f32(q, key_cache + (size_t)p * kv_dim + kv_off, hd) * scale;
            if (att[p] > maxv) maxv = att[p];
        }
        float sum = 0.0f;
        for (int p = 0; p <= pos; p++) {
            att[p] = expf(att[p] - maxv);
            sum += att[p];
        }
        for (int p = 0; p <= pos; p++) att[p] /= sum;
        float *out = t->s->xb + (size_t)b * q_dim + (size_t)h * hd;
        /* out[i] = sum over p ascending of att[p] * v_p[i]: 32 columns at a time, then 8, then 1 */
        const float *v0 = value_cache + kv_off;
        int i0 = 0;
        for (; i0 + 32 <= hd; i0 += 32) weighted_column_sums(att, v0 + i0, kv_dim, pos + 1, 32, out + i0);
        for (; i0 + 8 <= hd; i0 += 8) weighted_column_sums(att, v0 + i0, kv_dim, pos + 1, 8, out + i0);
        for (; i0 < hd; i0++) weighted_column_sums(att, v0 + i0, kv_dim, pos + 1, 1, out + i0);
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * the two steps */

void be_rope_and_cache(be_runtime *rt, const token_places *places, int nb, int layer) {
    layer_task t = {&rt->model->config, rt->state, places, nb, layer};
    if (nb == 1) rope_worker(&t, 0, 1);
    else be_pool_run(rt->pool, rope_worker, &t);
}

void be_attention(be_runtime *rt, const token_places *places, int nb, int layer) {
    layer_task t = {&rt->model->config, rt->state, places, nb, layer};
    be_pool_run(rt->pool, attention_worker, &t);
}
