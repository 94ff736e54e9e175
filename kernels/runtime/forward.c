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
 * Threads: per layer, a batch takes ten runs of the pool: before each of the four matmul steps (q/k/v, o_proj,
 * gate/up, down) its input rows are normed and quantized token by token, then the step's rows are split over the
 * threads; between q/k/v and o_proj, RoPE with the cache writes (per token), then attention (per token and head).
 * One token takes five: its norms, quantizations and RoPE are done inline (too little work to wake the pool). The
 * residual adds and the gated activation are done by the thread that computed those rows, in the matmul's run.
 *
 * Determinism: each float reduction (a norm, one attention head of one token, one output row) is computed by a
 * single thread in a fixed order, and every element by the same float expression whichever thread does it, so -t 1
 * and -t N give bit-identical logits. */
#include "forward.h"
#include "forward_impl.h"
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No fused multiply-add: keep the reference's rounding. gcc contracts only with -ffp-contract=fast (not the
 * default under -std=c11; bitedge/builder/compile.py passes -ffp-contract=off anyway); clang honours the standard pragma. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

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

/* ----------------------------------------------------------------------------------------------------------
 * ternary matmuls over the thread pool: up to three matrices sharing one quantized input (q/k/v, gate/up) */

typedef struct {
    const uint8_t *w;  /* [n][kp/4] I2_S packed, or TL1 / TL2 tiles (docs/format.md) */
    float scale;       /* s of W_eff = T * s */
    int n;             /* rows */
    float *out;        /* [nb][n] */
    int add;           /* 0: out = T·xq * (s / a);  1: out += it (the residual stream: the product rounded to float,
                        * then the sum, as the reference's x + o) */
} ternary_job;

/* the rows a ternary matmul reads, normed (when norm is set) and quantized one token at a time */
typedef struct {
    const float *x;     /* [nb][k] */
    const float *norm;  /* [k] rmsnorm weights applied first, or NULL */
    float *xn;          /* [nb][k] where the normed rows go (may be x: in place); x itself when norm is NULL */
    int k;
} matmul_input;

typedef struct {
    const be_ternary_ops *ops;
    const be_config *c;      /* the norm's eps and the feed-forward activation */
    matmul_input in;
    void *act;               /* what the kernels read: the TL tables [nb][act_stride], or xq itself (act_stride kp) */
    size_t act_stride;
    int8_t *xq;              /* [nb][kp] */
    float *act_scale;        /* [nb] */
    int32_t *acc;            /* per job: [nb][job.n], jobs back to back */
    int nb, kp, n_jobs;
    int gated;               /* jobs 0 and 1 are gate and up: h = act(g) * u into job 0's out, row by row by the
                              * thread that made them */
    ternary_job jobs[3];
} ternary_task;

/* The matmul epilogues, element by element the same float expressions as the reference; written in blocks of 8
 * (restrict, a fixed inner count) so that gcc's -O2 cost model vectorizes them: scalar, they were 7% of a 2-thread
 * prompt batch (perf). A vector multiply or add rounds each lane as the scalar one does: the same bits. */
#define EPI_BLOCK 8

/* out[r] = (float)acc[r] * sa (add = 0), or out[r] += that (add = 1: the residual stream), r < n */
static void scale_acc(float *restrict out, const int32_t *restrict acc, int n, float sa, int add) {
    int r = 0;
    if (add) {
        for (; r + EPI_BLOCK <= n; r += EPI_BLOCK)
            for (int i = 0; i < EPI_BLOCK; i++) out[r + i] += (float)acc[r + i] * sa;
        for (; r < n; r++) out[r] += (float)acc[r] * sa;
    } else {
        for (; r + EPI_BLOCK <= n; r += EPI_BLOCK)
            for (int i = 0; i < EPI_BLOCK; i++) out[r + i] = (float)acc[r + i] * sa;
        for (; r < n; r++) out[r] = (float)acc[r] * sa;
    }
}

/* x > 0 ? x : 0 (NaN, -0: +0) without a float comparison, which gcc will not if-convert under -ftrapping-math:
 * the bits of a positive x other than NaN and +0 are 1 .. 0x7f800000 */
static inline float relu(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits &= 0u - (uint32_t)(bits - 1u < 0x7f800000u);
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* g[r] = act(g[r]) * u[r], the gated feed-forward activation (silu = g * sigmoid(g); squared ReLU), r < n */
static void gated_act(float *restrict g, const float *restrict u, int n, int act) {
    if (act == BE_ACT_SILU) {
        for (int r = 0; r < n; r++) g[r] = (g[r] * (1.0f / (1.0f + expf(-g[r])))) * u[r];
        return;
    }
    int r = 0;
    for (; r + EPI_BLOCK <= n; r += EPI_BLOCK)
        for (int i = 0; i < EPI_BLOCK; i++) g[r + i] = relu(g[r + i]) * relu(g[r + i]) * u[r + i];
    for (; r < n; r++) g[r] = relu(g[r]) * relu(g[r]) * u[r];
}

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
                scale_acc(job->out + (size_t)b * job->n + n0, acc + (size_t)b * job->n + n0, n1 - n0, sa, job->add);
            }
        }
        acc += (size_t)t->nb * job->n;
    }
    if (t->gated) {  /* gate and up have the same rows, so this thread's range of one is its range of the other */
        int n = t->jobs[0].n, n0, n1;
        be_split_range(n, ith, nth, t->ops->row_block, &n0, &n1);
        for (int b = 0; b < t->nb; b++)
            gated_act(t->jobs[0].out + (size_t)b * n + n0, t->jobs[1].out + (size_t)b * n + n0, n1 - n0,
                      t->c->ffn_act);
    }
}

/* Token b's input to the matmuls: normed (when the input says so), quantized, and for TL its look-up tables */
static void prepare_token(ternary_task *t, int b) {
    const matmul_input *in = &t->in;
    const float *x = in->x + (size_t)b * in->k;
    if (in->norm) {
        rmsnorm(in->xn + (size_t)b * in->k, x, in->norm, in->k, t->c->rms_eps);
        x = in->xn + (size_t)b * in->k;
    }
    int8_t *xq = t->xq + (size_t)b * t->kp;
    t->act_scale[b] = be_quantize_row_i8(x, xq, in->k, t->kp);
    if (t->ops->prepare) t->ops->prepare(xq, t->kp, (uint8_t *)t->act + (size_t)b * t->act_stride);
}

/* the tokens split over the pool */
static void prepare_worker(void *ctx, int ith, int nth) {
    ternary_task *t = ctx;
    int b0, b1;
    be_split_range(t->nb, ith, nth, 1, &b0, &b1);
    for (int b = b0; b < b1; b++) prepare_token(t, b);
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

/* The jobs' products with the input rows (normed and quantized first), in two pool runs: the tokens' inputs, then
 * the matrices' rows with their epilogues (store, residual add, gated activation). One token is prepared inline
 * (no wake-up of the pool for 2560 floats). */
static void ternary_matmuls(be_runtime *rt, matmul_input in, int nb, const ternary_job *jobs, int n_jobs, int gated,
                            act_site where) {
    be_state *s = rt->state;
    ternary_task t;
    t.ops = s->ternary;
    if (!in.norm) in.xn = (float *)in.x;
    t.in = in;
    t.c = &rt->model->config;
    t.kp = t.ops->act_row_bytes(in.k);
    t.act = t.ops->prepare ? (void *)s->tl_tables : (void *)s->xq;
    t.act_stride = t.ops->prepare ? s->tl_tables_stride : (size_t)t.kp;
    t.xq = s->xq;
    t.act_scale = s->act_scale;
    t.acc = s->acc;
    t.nb = nb;
    t.n_jobs = n_jobs;
    t.gated = gated;
    for (int j = 0; j < n_jobs; j++) t.jobs[j] = jobs[j];
    if (nb == 1) prepare_token(&t, 0);
    else be_pool_run(rt->pool, prepare_worker, &t);
    if (rt->act_dump && where.pos0 >= 0)
        dump_activations(rt->act_dump, where, in.xn, s->xq, s->act_scale, in.k, t.kp, nb);
    be_pool_run(rt->pool, ternary_worker, &t);
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

/* s->xb[i] = output_norm(x[row0 + i]) for i < n_rows */
static void output_norm_rows(be_runtime *rt, int row0, int n_rows) {
    const be_config *c = &rt->model->config;
    be_state *s = rt->state;
    for (int i = 0; i < n_rows; i++)
        rmsnorm(s->xb + (size_t)i * c->hidden, s->x + (size_t)(row0 + i) * c->hidden, rt->model->output_norm,
                c->hidden, c->rms_eps);
}

/* logits[i] = s->xb[i] . E^T for i < n_rows (the rows output_norm_rows left) */
static void output_gemm(be_runtime *rt, int n_rows, float *logits) {
    const be_model *m = rt->model;
    const be_config *c = &m->config;
    float_gemm_task ft = {rt->kernels, m->output ? m->output : m->token_embd, c->embed_type, c->vocab_size,
                          c->hidden, n_rows, rt->state->xb, logits};
    be_pool_run(rt->pool, float_gemm_worker, &ft);
}

/* logits[i] = output_norm(x[row0 + i]) . E^T for i < n_rows, the normed rows in s->xb */
static void output_logits(be_runtime *rt, int row0, int n_rows, float *logits) {
    output_norm_rows(rt, row0, n_rows);
    output_gemm(rt, n_rows, logits);
}

/* ----------------------------------------------------------------------------------------------------------
 * the forward pass */

/* Every layer for the nb tokens, each at its place: embeds tokens[b] into s->x, then runs the layers. */
static void forward_layers(be_runtime *rt, const int32_t *tokens, int nb, const token_places *places) {
    const be_model *m = rt->model;
    const be_config *c = &m->config;
    be_state *s = rt->state;
    int hidden = c->hidden, ffn = c->ffn, hd = c->head_dim;
    int q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    /* where the activation dump files these tokens: one sequence's first position, or -1 (several: not dumped) */
    int pos0 = places->positions ? -1 : places->pos0;
    for (int b = 0; b < nb; b++)
        be_dequantize_row(m->token_embd, c->embed_type, tokens[b], hidden, s->x + (size_t)b * hidden);
    for (int l = 0; l < c->n_layers; l++) {
        const be_layer *L = &m->layers[l];

        /* attention block */
        ternary_job qkv[3] = {
            {L->attn_q, L->attn_q_scale, q_dim, s->q, 0},
            {L->attn_k, L->attn_k_scale, kv_dim, s->k, 0},
            {L->attn_v, L->attn_v_scale, kv_dim, s->v, 0},
        };
        ternary_matmuls(rt, (matmul_input){s->x, L->attn_norm, s->xb, hidden}, nb, qkv, 3, 0,
                        (act_site){l, BE_ACT_ATTN_IN, pos0});
        be_rope_and_cache(rt, places, nb, l);
        be_attention(rt, places, nb, l);
        ternary_job o[1] = {{L->attn_output, L->attn_output_scale, hidden, s->x, 1}};  /* x += o_proj(...) */
        ternary_matmuls(rt, (matmul_input){s->xb, L->attn_sub_norm, s->xb, q_dim}, nb, o, 1, 0,
                        (act_site){l, BE_ACT_ATTN_OUT, pos0});

        /* feed-forward block: hb = act(gate) * up, then x += down(hb) */
        ternary_job gate_up[2] = {
            {L->ffn_gate, L->ffn_gate_scale, ffn, s->hb, 0},
            {L->ffn_up, L->ffn_up_scale, ffn, s->hb2, 0},
        };
        ternary_matmuls(rt, (matmul_input){s->x, L->ffn_norm, s->xb, hidden}, nb, gate_up, 2, 1,
                        (act_site){l, BE_ACT_FFN_IN, pos0});
        ternary_job down[1] = {{L->ffn_down, L->ffn_down_scale, hidden, s->x, 1}};
        ternary_matmuls(rt, (matmul_input){s->hb, L->ffn_sub_norm, s->hb, ffn}, nb, down, 1, 0,
                        (act_site){l, BE_ACT_FFN_OUT, pos0});
    }
}

static void check_fits(const be_state *s, int nb, int pos0) {
    if (nb < 1 || nb > s->max_batch || pos0 < 0 || pos0 + nb > s->ctx || !s->key_cache) {
        /* a caller bug, not bad input: main.c checks the context before it runs anything */
        fprintf(stderr, "be_forward: %d tokens at position %d do not fit (batch %d, context %d%s)\n", nb, pos0,
                s->max_batch, s->ctx, s->key_cache ? "" : ", no KV cache");
        abort();
    }
}

void be_forward(be_runtime *rt, const int32_t *tokens, int nb, int pos0, int all_logits) {
    be_state *s = rt->state;
    check_fits(s, nb, pos0);
    token_places places = {s, pos0, NULL, NULL};
    forward_layers(rt, tokens, nb, &places);
    /* logits of every token, or only the last one into logits[0] */
    int first = all_logits ? 0 : nb - 1;
    output_logits(rt, first, nb - first, s->logits);
}

int be_forward_greedy(be_runtime *rt, int32_t token, int pos) {
    be_state *s = rt->state;
    const be_config *c = &rt->model->config;
    check_fits(s, 1, pos);
    token_places places = {s, pos, NULL, NULL};
    forward_layers(rt, &token, 1, &places);
    output_norm_rows(rt, 0, 1);
    if (!rt->act_dump) {
        int best = be_output_greedy(rt, s->xb, s->logits);
        if (best >= 0) {
            s->greedy_fast_steps++;
            return best;
        }
    }
    output_gemm(rt, 1, s->logits);
    return be_argmax(s->logits, c->vocab_size);
}

void be_forward_full_logits(be_runtime *rt) { output_logits(rt, 0, 1, rt->state->logits); }

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
