/* The BitNet b1.58 forward pass (llama2.c style): activations, KV cache and the per-step computation.
 *
 * Arithmetic follows bitedge/reference.py op for op (see kernels.h for the ternary contract); every float
 * reduction is done by one thread in a fixed order, so the result does not depend on the thread count. */
#ifndef BITEDGE_FORWARD_H
#define BITEDGE_FORWARD_H

#include <stdint.h>
#include <stdio.h>

#include "kernels.h"
#include "model.h"
#include "ternary_ops.h"
#include "threadpool.h"

typedef struct {
    int max_batch;     /* tokens processed per forward call (prompt chunk) */
    int ctx;           /* KV cache length in positions */
    int n_threads;     /* attention scratch rows (one per pool thread) */
    const be_ternary_ops *ternary; /* the file's packing on this run's kernel table (ternary_ops.h) */
    int kp_max;        /* padded row length of the widest ternary input: ternary->act_row_bytes of the widest */
    /* activations of a batch of nb tokens */
    float *x;          /* [max_batch][hidden] residual stream */
    float *xb;         /* [max_batch][max(hidden, q_dim)] normed input / attention output */
    float *hb;         /* [max_batch][ffn] gate, then the activated product */
    float *hb2;        /* [max_batch][ffn] up */
    float *q;          /* [max_batch][q_dim] */
    float *k;          /* [max_batch][kv_dim] */
    float *v;          /* [max_batch][kv_dim] */
    int8_t *xq;        /* [max_batch][kp_max] quantized activations */
    float *act_scale;  /* [max_batch] a of each token (kernels.h) */
    int32_t *acc;      /* [max_batch][max rows of one matmul] int32 products */
    uint8_t *tl_tables;       /* TL1 / TL2 only (else NULL): [max_batch][tl_tables_stride] look-up tables */
    size_t tl_tables_stride;  /* ternary->table_bytes of the widest input, rounded up to 64 */
    float *att;        /* [n_threads][ctx] attention scores / probabilities */
    float *rope_cos;   /* [ctx][head_dim/2] */
    float *rope_sin;   /* [ctx][head_dim/2] */
    float *logits;     /* [max_batch][vocab] */
    /* the greedy output (output_greedy.c), allocated at its first step; NULL until then */
    int16_t *x16;           /* [hidden] the normed last row rounded to int16 */
    float *greedy_approx;   /* [vocab] the fast pass's logits */
    float *output_abs_sum;  /* [vocab] sum_j |w_rj| of each output row, rounded up (computed with the allocation) */
    int greedy_off;         /* non-finite weights or no memory: every greedy step takes the full output */
    int greedy_fast_steps;  /* be_forward_greedy steps that took the fast pass (generate --json reports it) */
    /* KV cache */
    float *key_cache;   /* [n_layers][ctx][kv_dim] */
    float *value_cache; /* [n_layers][ctx][kv_dim] */
} be_state;

/* ctx <= 0 means the model's context_length. Picks the ternary operations (be_ternary_ops_for the file's packing
 * and be_kernels_active()). Returns 0 or -1 (message in err). (forward_state.c) */
int build_state(be_state *s, const be_model *m, int ctx, int max_batch, int n_threads, char *err, size_t errlen);
/* The same without a KV cache (key_cache = value_cache = NULL): the activations of be_forward_seqs' batches. */
int build_batch_state(be_state *s, const be_model *m, int ctx, int max_batch, int n_threads, char *err,
                      size_t errlen);
void free_state(be_state *s);

typedef struct {
    const be_model *model;
    const be_kernels *kernels;
    be_pool *pool;
    be_state *state;
    FILE *act_dump;  /* NULL, or where every activation quantization is recorded (be_dump_activations_header) */
} be_runtime;

/* The activation dump (bitedge-run generate --dump-activations FILE; bitedge/lossless.py reads it): the proof that
 * the runtime is lossless compares, at every quantization, its int8 codes with the reference's pre-rounding values.
 * Native byte order (little-endian on every supported target), no padding: a 16-byte header {"BEACTS1\0", int32 n_layers, int32 0}, then one record
 * per quantization in the order they happen:
 *   int32 layer, site (be_act_site), pos0, nb, k;  float a[nb];  float x[nb][k];  int8 q[nb][k]
 * x is the row before quantization, a = 127 / max|x| and q = clamp(rint(x * a)) as the kernel table computed them. */
typedef enum {
    BE_ACT_ATTN_IN = 0,   /* rmsnorm(x, attn_norm): the input of q, k and v */
    BE_ACT_ATTN_OUT = 1,  /* attention output (after attn_sub_norm): the input of o_proj */
    BE_ACT_FFN_IN = 2,    /* rmsnorm(x, ffn_norm): the input of gate and up */
    BE_ACT_FFN_OUT = 3,   /* act(gate) * up (after ffn_sub_norm): the input of down */
} be_act_site;

/* Writes the dump's header; 0 or -1 (write error). */
int be_dump_activations_header(FILE *f, const be_model *m);

/* Runs tokens[0..n) at positions pos0..pos0+n-1 (n <= max_batch, pos0+n <= ctx: else it aborts, a caller bug),
 * filling the KV cache.
 * Logits: all_logits != 0 -> s->logits[i] for every token i; else only s->logits[0] = the last token's.
 * Ternary matmuls go through s->ternary: several tokens through its gemm (prompt processing), one through its gemv;
 * TL1 / TL2 first build each token's look-up tables (prepare) once per shared input (q/k/v, gate/up). */
void be_forward(be_runtime *rt, const int32_t *tokens, int n, int pos0, int all_logits);

/* One decode step of n_seqs independent sequences (continuous batching): token tokens[i] at position positions[i]
 * of sequence i, whose KV cache is seqs[i]'s; afterwards seqs[i]->logits[0] holds its logits. The activations are
 * rt->state's (a build_batch_state, or any state; n_seqs <= its max_batch, every seqs[i]->ctx <= its ctx; it may be
 * one of seqs). The ternary matmuls run as one gemm over the n_seqs rows (one pass over the weights), so does the
 * output matrix; attention runs per sequence against its own cache. Every step of it is per token, so
 * seqs[i]->logits[0] is bit for bit what be_forward(&tokens[i], 1, positions[i]) on seqs[i] alone leaves
 * (kernels/tests/forward_seqs_main.c checks it). No activation dump. Bad arguments abort (a caller bug). */
void be_forward_seqs(be_runtime *rt, int n_seqs, const int32_t *tokens, const int *positions, be_state *const *seqs);

/* One decode step (token at pos) that returns the greedy next token, be_argmax of the logits be_forward would
 * leave, bit for bit, without computing every logit exactly (output_greedy.c: a cheaper int16 pass and a bound
 * pick the rows that can be the argmax; only those get float_gemv's exact logit). s->logits[0] then holds those
 * exact logits and -inf elsewhere; where the fast pass does not apply, it holds all of them (be_forward). Same
 * checks and aborts as be_forward; no activation dump may be open (it takes be_forward then). */
int be_forward_greedy(be_runtime *rt, int32_t token, int pos);
/* After be_forward_greedy: every logit of that step into s->logits[0], the bits be_forward would have left. */
void be_forward_full_logits(be_runtime *rt);

/* Feeds a whole prompt in chunks of max_batch starting at pos0; leaves the last token's logits in s->logits. */
void be_forward_prompt(be_runtime *rt, const int32_t *tokens, int n, int pos0);

#endif
