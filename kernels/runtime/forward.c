/* The BitNet b1.58 forward pass, top to bottom (see forward.h).
 *
 * Per layer, for a batch of nb tokens at positions pos0.., with W_eff = T * s for the seven ternary matrices:
 *   xb  = rmsnorm(x, attn_norm);  xq, a = quantize(xb)
 *   q, k, v = (T·xq) * (s / a);   rope(q, k);  cache k, v
 *   xb  = attention(q, cache);    xb = rmsnorm(xb, attn_sub_norm) if present;  x += o_proj(quantize(xb))
 *   xb  = rmsnorm(x, ffn_norm);   g, u = gate/up(quantize(xb));  h = act(g) * u
 *   h   = rmsnorm(h, ffn_sub_norm) if present;  x += down(quantize(h))
 * then logits = output_norm(x) · E^T.
 *
 * Where the tokens sit: be_forward's nb tokens are one sequence, at positions pos0.. in rt->state's KV cache;
 * be_forward_seqs' are one token each of nb sequences, token b at positions[b] in seqs[b]'s cache. Everything
 * but RoPE, the cache writes and attention is per token either way, so both share the layers below.
 *
 * Determinism: each float reduction (a norm, one attention head of one token, one output row) is computed by a
 * single thread in a fixed order, so -t 1 and -t N give bit-identical logits. */
#include "forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No fused multiply-add: keep the reference's rounding. gcc contracts only with -ffp-contract=fast (not the
 * default under -std=c11; bitedge/builder/compile.py passes -ffp-contract=off anyway); clang honours the standard pragma. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* where token b of a batch sits: its position and the KV cache it reads and extends */
typedef struct {
    be_state *state;           /* one sequence: token b at pos0 + b in state's cache */
    int pos0;
    const int *positions;      /* several sequences (NULL: one): token b at positions[b] ... */
    be_state *const *seqs;     /* ... in seqs[b]'s cache */
} token_places;

static int place_pos(const token_places *p, int b) { return p->positions ? p->positions[b] : p->pos0 + b; }

/* layer l of token b's key (value = 0) or value (value = 1) cache: [ctx][kv_dim] */
static float *place_cache(const token_places *p, int b, int l, int kv_dim, int value) {
    const be_state *owner = p->positions ? p->seqs[b] : p->state;
    float *cache = value ? owner->value_cache : owner->key_cache;
    return cache + (size_t)l * owner->ctx * kv_dim;
}

/* ----------------------------------------------------------------------------------------------------------
 * small float blocks (single thread, fixed order) */

/* out = x * (1 / sqrt(mean(x^2) + eps)) * w, in place allowed. As the reference: the sum of squares in double
 * (each square exact), divided by n in double and rounded to float once; the rest in float. */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)x[i] * (double)x[i];
    float mean = (float)(sum / n);
    float inv = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) out[i] = (x[i] * inv) * w[i];
}

/* NeoX half-split rotation of one head: dims i and i + d/2 form a pair */
static void rope_head(float *v, const float *cos_row, const float *sin_row, int d) {
    int half = d / 2;
    for (int i = 0; i < half; i++) {
        float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cos_row[i] - x1 * sin_row[i];
        v[i + half] = x1 * cos_row[i] + x0 * sin_row[i];
    }
}

/* ----------------------------------------------------------------------------------------------------------
 * ternary matmuls over the thread pool: up to three matrices sharing one quantized input (q/k/v, gate/up) */

typedef struct {
    const uint8_t *w;  /* [n][kp/4] I2_S packed, or TL1 / TL2 tiles (docs/format.md) */
    float scale;       /* s of W_eff = T * s */
    int n;             /* rows */
    float *out;        /* [nb][n] */
} ternary_job;

typedef struct {
    const be_ternary_ops *ops;
    void *act;               /* what the kernels read: the TL tables [nb][act_stride], or xq itself (act_stride kp) */
    size_t act_stride;
    const int8_t *xq;        /* [nb][kp] */
    const float *act_scale;  /* [nb] */
    int32_t *acc;            /* per job: [nb][job.n], jobs back to back */
    int nb, kp, n_jobs;
    ternary_job jobs[3];
} ternary_task;

static void ternary_worker(void *ctx, int ith, int nth) {
    ternary_task *t = ctx;
    int32_t *acc = t->acc;
    for (int j = 0; j < t->n_jobs; j++) {
        const ternary_job *job = &t->jobs[j];
        int n0, n1;
        /* ranges starting on a multiple of row_block never share a kernel tile */
        be_split_range(job->n, ith, nth, t->ops->row_block, &n0, &n1);
        if (n1 > n0) {
            /* several tokens through the gemm, which reads each weight chunk once per block of tokens */
            if (t->nb > 1) t->ops->gemm(job->w, t->act, t->act_stride, acc, job->n, n0, n1, t->kp, t->nb);
            else t->ops->gemv(job->w, t->act, acc, n0, n1, t->kp);
            for (int b = 0; b < t->nb; b++) {
                float sa = job->scale / t->act_scale[b];  /* (s / a) once, in fp32 */
                const int32_t *ab = acc + (size_t)b * job->n;
                float *ob = job->out + (size_t)b * job->n;
                for (int r = n0; r < n1; r++) ob[r] = (float)ab[r] * sa;
            }
        }
        acc += (size_t)t->nb * job->n;
    }
}

/* Quantize nb rows of x ([nb][k], row stride k) into s->xq with row stride kp (zero-padded beyond k). */
static void quantize_rows(be_state *s, const float *x, int k, int kp, int nb) {
    for (int b = 0; b < nb; b++)
        s->act_scale[b] = be_quantize_row_i8(x + (size_t)b * k, s->xq + (size_t)b * kp, k, kp);
}

/* TL: each token's look-up tables from its quantized row, tokens split over the pool */
static void prepare_worker(void *ctx, int ith, int nth) {
    ternary_task *t = ctx;
    int b0, b1;
    be_split_range(t->nb, ith, nth, 1, &b0, &b1);
    for (int b = b0; b < b1; b++)
        t->ops->prepare(t->xq + (size_t)b * t->kp, t->kp, (uint8_t *)t->act + (size_t)b * t->act_stride);
}

/* where a quantization happens, for the activation dump */
typedef struct {
    int layer;
    be_act_site site;
    int pos0;  /* -1: several sequences (be_forward_seqs), not dumped */
} act_site;

int be_dump_activations_header(FILE *f, const be_model *m) {
    int32_t head[2] = {m->config.n_layers, 0};
    return fwrite("BEACTS1", 1, 8, f) == 8 && fwrite(head, sizeof(head), 1, f) == 1 ? 0 : -1;
}

/* One record of the dump (forward.h). A write error is remembered by the stream (ferror), checked at fclose. */
static void dump_activations(FILE *f, act_site where, const float *x, const int8_t *xq, const float *act_scale,
                             int k, int kp, int nb) {
    int32_t head[5] = {where.layer, (int32_t)where.site, where.pos0, nb, k};
    fwrite(head, sizeof(head), 1, f);
    fwrite(act_scale, sizeof(float), (size_t)nb, f);
    fwrite(x, sizeof(float), (size_t)nb * k, f);
    for (int b = 0; b < nb; b++) fwrite(xq + (size_t)b * kp, 1, (size_t)k, f);
}

static void ternary_matmuls(be_runtime *rt, const float *x, int k, int nb, const ternary_job *jobs, int n_jobs,
                            act_site where) {
    be_state *s = rt->state;
    ternary_task t;
    t.ops = s->ternary;
    t.kp = t.ops->act_row_bytes(k);
    t.act = t.ops->prepare ? (void *)s->tl_tables : (void *)s->xq;
    t.act_stride = t.ops->prepare ? s->tl_tables_stride : (size_t)t.kp;
    quantize_rows(s, x, k, t.kp, nb);
    if (rt->act_dump && where.pos0 >= 0) dump_activations(rt->act_dump, where, x, s->xq, s->act_scale, k, t.kp, nb);
    t.xq = s->xq;
    t.act_scale = s->act_scale;
    t.acc = s->acc;
    t.nb = nb;
    t.n_jobs = n_jobs;
    for (int j = 0; j < n_jobs; j++) t.jobs[j] = jobs[j];
    /* tables once per token for every job sharing x; one token's inline (no extra wake-up of the pool) */
    if (t.ops->prepare && nb == 1) prepare_worker(&t, 0, 1);
    else if (t.ops->prepare) be_pool_run(rt->pool, prepare_worker, &t);
    be_pool_run(rt->pool, ternary_worker, &t);
}

/* ----------------------------------------------------------------------------------------------------------
 * attention over the thread pool: one (token, head) pair per work item */

typedef struct {
    const be_config *c;
    be_state *s;               /* q, xb, att */
    const token_places *places;
    int nb, layer;
} attention_task;

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
    attention_task *t = ctx;
    const be_config *c = t->c;
    int hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int group = c->n_heads / c->n_kv_heads;
    float scale = (float)pow((double)hd, -0.5);  /* Python's d**-0.5 in double, then fp32 */
    float *att = t->s->att + (size_t)ith * t->s->ctx;
    int i0, i1;
    be_split_range(t->nb * c->n_heads, ith, nth, 1, &i0, &i1);
    for (int item = i0; item < i1; item++) {
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
 * logits: the float output matrix times nb rows, split over the pool by output rows */

typedef struct {
    const be_kernels *kern;
    const void *w;
    int type, n, k, nb;
    const float *x;  /* [nb][k] */
    float *y;        /* [nb][n] */
} float_gemm_task;

/* Each output row of each token is one float_gemv call on that row, so its bits are the single-token ones whatever
 * nb; several tokens go block by block (about 16 KiB of weights), so a block read from memory serves all of them
 * from cache: one pass over the matrix per step instead of one per token. */
static void float_gemm_worker(void *ctx, int ith, int nth) {
    float_gemm_task *t = ctx;
    int n0, n1;
    be_split_range(t->n, ith, nth, 16, &n0, &n1);
    if (n1 <= n0) return;
    if (t->nb == 1) {
        t->kern->float_gemv(t->w, t->type, t->x, t->y, n0, n1, t->k);
        return;
    }
    size_t row_bytes = be_float_row_bytes(t->type, t->k);
    int block = row_bytes >= 16384 ? 1 : (int)(16384 / row_bytes);
    for (int r0 = n0; r0 < n1; r0 += block) {
        int r1 = n1 - r0 < block ? n1 : r0 + block;
        for (int b = 0; b < t->nb; b++)
            t->kern->float_gemv(t->w, t->type, t->x + (size_t)b * t->k, t->y + (size_t)b * t->n, r0, r1, t->k);
    }
}

/* logits[i] = output_norm(x[row0 + i]) . E^T for i < n_rows, the normed rows in s->xb */
static void output_logits(be_runtime *rt, int row0, int n_rows, float *logits) {
    const be_model *m = rt->model;
    const be_config *c = &m->config;
    be_state *s = rt->state;
    for (int i = 0; i < n_rows; i++)
        rmsnorm(s->xb + (size_t)i * c->hidden, s->x + (size_t)(row0 + i) * c->hidden, m->output_norm, c->hidden,
                c->rms_eps);
    float_gemm_task ft = {rt->kernels, m->output ? m->output : m->token_embd, c->embed_type, c->vocab_size,
                          c->hidden, n_rows, s->xb, logits};
    be_pool_run(rt->pool, float_gemm_worker, &ft);
}

/* ----------------------------------------------------------------------------------------------------------
 * the forward pass */

/* Every layer for the nb tokens, each at its place: embeds tokens[b] into s->x, then runs the layers. */
static void forward_layers(be_runtime *rt, const int32_t *tokens, int nb, const token_places *places) {
    const be_model *m = rt->model;
    const be_config *c = &m->config;
    be_state *s = rt->state;
    int hidden = c->hidden, ffn = c->ffn, hd = c->head_dim, half = hd / 2;
    int q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    float eps = c->rms_eps;
    /* where the activation dump files these tokens: one sequence's first position, or -1 (several: not dumped) */
    int pos0 = places->positions ? -1 : places->pos0;
    for (int b = 0; b < nb; b++)
        be_dequantize_row(m->token_embd, c->embed_type, tokens[b], hidden, s->x + (size_t)b * hidden);
    for (int l = 0; l < c->n_layers; l++) {
        const be_layer *L = &m->layers[l];

        /* attention block */
        for (int b = 0; b < nb; b++)
            rmsnorm(s->xb + (size_t)b * hidden, s->x + (size_t)b * hidden, L->attn_norm, hidden, eps);
        ternary_job qkv[3] = {
            {L->attn_q, L->attn_q_scale, q_dim, s->q},
            {L->attn_k, L->attn_k_scale, kv_dim, s->k},
            {L->attn_v, L->attn_v_scale, kv_dim, s->v},
        };
        ternary_matmuls(rt, s->xb, hidden, nb, qkv, 3, (act_site){l, BE_ACT_ATTN_IN, pos0});
        for (int b = 0; b < nb; b++) {
            int pos = place_pos(places, b);
            const float *cos_row = s->rope_cos + (size_t)pos * half, *sin_row = s->rope_sin + (size_t)pos * half;
            for (int h = 0; h < c->n_heads; h++) rope_head(s->q + (size_t)b * q_dim + (size_t)h * hd, cos_row, sin_row, hd);
            for (int h = 0; h < c->n_kv_heads; h++) rope_head(s->k + (size_t)b * kv_dim + (size_t)h * hd, cos_row, sin_row, hd);
            memcpy(place_cache(places, b, l, kv_dim, 0) + (size_t)pos * kv_dim, s->k + (size_t)b * kv_dim,
                   (size_t)kv_dim * sizeof(float));
            memcpy(place_cache(places, b, l, kv_dim, 1) + (size_t)pos * kv_dim, s->v + (size_t)b * kv_dim,
                   (size_t)kv_dim * sizeof(float));
        }
        attention_task at = {c, s, places, nb, l};
        be_pool_run(rt->pool, attention_worker, &at);
        if (L->attn_sub_norm)
            for (int b = 0; b < nb; b++)
                rmsnorm(s->xb + (size_t)b * q_dim, s->xb + (size_t)b * q_dim, L->attn_sub_norm, q_dim, eps);
        ternary_job o[1] = {{L->attn_output, L->attn_output_scale, hidden, s->xb2}};
        ternary_matmuls(rt, s->xb, q_dim, nb, o, 1, (act_site){l, BE_ACT_ATTN_OUT, pos0});
        for (size_t i = 0; i < (size_t)nb * hidden; i++) s->x[i] += s->xb2[i];

        /* feed-forward block */
        for (int b = 0; b < nb; b++)
            rmsnorm(s->xb + (size_t)b * hidden, s->x + (size_t)b * hidden, L->ffn_norm, hidden, eps);
        ternary_job gate_up[2] = {
            {L->ffn_gate, L->ffn_gate_scale, ffn, s->hb},
            {L->ffn_up, L->ffn_up_scale, ffn, s->hb2},
        };
        ternary_matmuls(rt, s->xb, hidden, nb, gate_up, 2, (act_site){l, BE_ACT_FFN_IN, pos0});
        for (size_t i = 0; i < (size_t)nb * ffn; i++) {
            float g = s->hb[i];
            if (c->ffn_act == BE_ACT_SILU) {
                s->hb[i] = (g * (1.0f / (1.0f + expf(-g)))) * s->hb2[i]  /* silu = g * sigmoid(g) */;
            } else {
                float r = g > 0.0f ? g : 0.0f;
                s->hb[i] = (r * r) * s->hb2[i];
            }
        }
        if (L->ffn_sub_norm)
            for (int b = 0; b < nb; b++)
                rmsnorm(s->hb + (size_t)b * ffn, s->hb + (size_t)b * ffn, L->ffn_sub_norm, ffn, eps);
        ternary_job down[1] = {{L->ffn_down, L->ffn_down_scale, hidden, s->xb2}};
        ternary_matmuls(rt, s->hb, ffn, nb, down, 1, (act_site){l, BE_ACT_FFN_OUT, pos0});
        for (size_t i = 0; i < (size_t)nb * hidden; i++) s->x[i] += s->xb2[i];
    }
}

void be_forward(be_runtime *rt, const int32_t *tokens, int nb, int pos0, int all_logits) {
    be_state *s = rt->state;
    if (nb < 1 || nb > s->max_batch || pos0 < 0 || pos0 + nb > s->ctx || !s->key_cache) {
        /* a caller bug, not bad input: main.c checks the context before it runs anything */
        fprintf(stderr, "be_forward: %d tokens at position %d do not fit (batch %d, context %d%s)\n", nb, pos0,
                s->max_batch, s->ctx, s->key_cache ? "" : ", no KV cache");
        abort();
    }
    token_places places = {s, pos0, NULL, NULL};
    forward_layers(rt, tokens, nb, &places);
    /* logits of every token, or only the last one into logits[0] */
    int first = all_logits ? 0 : nb - 1;
    output_logits(rt, first, nb - first, s->logits);
}

void be_forward_seqs(be_runtime *rt, int n_seqs, const int32_t *tokens, const int *positions,
                     be_state *const *seqs) {
    const be_config *c = &rt->model->config;
    be_state *s = rt->state;
    int bad = n_seqs < 1 || n_seqs > s->max_batch;
    for (int b = 0; b < n_seqs && !bad; b++) {
        bad = positions[b] < 0 || positions[b] >= seqs[b]->ctx || seqs[b]->ctx > s->ctx || !seqs[b]->key_cache;
        for (int j = 0; j < b && !bad; j++) bad = seqs[j] == seqs[b];  /* two tokens of one cache: not a step */
    }
    if (bad) {
        fprintf(stderr, "be_forward_seqs: %d sequences do not fit (batch %d, context %d) or share a cache\n",
                n_seqs, s->max_batch, s->ctx);
        abort();
    }
    token_places places = {NULL, 0, positions, seqs};
    forward_layers(rt, tokens, n_seqs, &places);
    output_logits(rt, 0, n_seqs, s->logits);
    /* each sequence's logits where be_forward leaves them (s may be one of seqs: row 0 is copied first) */
    for (int b = 0; b < n_seqs; b++)
        if (seqs[b]->logits != s->logits + (size_t)b * c->vocab_size)
            memcpy(seqs[b]->logits, s->logits + (size_t)b * c->vocab_size, (size_t)c->vocab_size * sizeof(float));
}

void be_forward_prompt(be_runtime *rt, const int32_t *tokens, int n, int pos0) {
    int step = rt->state->max_batch;
    for (int i = 0; i < n; i += step) {
        int nb = n - i < step ? n - i : step;
        be_forward(rt, tokens + i, nb, pos0 + i, 0);
    }
}
