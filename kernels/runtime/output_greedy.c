/* The greedy output (forward_impl.h): the argmax of logits = x . E^T, found without computing every logit exactly.
 *
 * The exact logits F_r are float_gemv's (float x times the Q8_0 rows: what be_forward computes and the lossless
 * check compares). On Zen 3 that product is bound by its instructions, not by memory (docs/performance.md), so a
 * greedy step first takes a cheaper product with x rounded to int16, L_r = s * sum_j w_rj X_j (X = rint(x / s),
 * s = max|x| / 32767; be_q8_0_i16_gemv), with a bound B_r >= |L_r - F_r| that holds whatever the data:
 *
 *   |L_r - F_r| <= |L_r - E_r| + |E_r - F_r|,  E_r = sum_j w_rj x_j computed exactly, W_r = sum_j |w_rj|, m = max|x|
 *   rounding x to X:                  |x_j - s X_j| <= 0.51 * m / 32767          (rint 0.5, the scale's own ~0.006)
 *   the fast pass's float sums:       <= gamma(nb + 9) * m * W_r                 (kernels.h: nb + 8 roundings, then * s)
 *   float_gemv's float sums:          <= gamma(nb + 40) * m * W_r                (AVX2 nb + 8, scalar and NEON nb + 34)
 *   so B_r = W_r * m * (0.51 / 32767 + gamma(nb + 9) + gamma(nb + 40)),  gamma(n) = n u / (1 - n u),  u = 2^-24.
 *
 * Then lower = max_r (L_r - B_r) is <= the exact logit of that row, and any row with L_r + B_r < lower has
 * F_r < lower <= F of that row: it can be neither the argmax nor tied with it. Only the other rows (the candidates;
 * a handful for a trained or a random model) get F_r from float_gemv, and the argmax over them, first index among
 * equals, is be_argmax over the full exact logits, bit for bit. logits[] holds F_r for the candidates and -inf
 * elsewhere, so any argmax over it agrees. W_r is computed once per state, in double, and stored rounded up.
 *
 * Not used (the caller takes be_forward): for types other than Q8_0, tables without q8_0_i16_gemv (NEON), x with
 * a non-finite or zero maximum, or weights with a non-finite W_r. Two pool runs: the fast pass with each thread's
 * max of L - B, then each thread's candidates among its rows (all of them, exactly, if more than an eighth are).
 * The rounding to int16 and the bound's factor are in greedy_bound.c (kernels.h), where the kernel tests reach. */
#include "forward_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROW_ALIGN 16
#define GREEDY_MAX_THREADS 256  /* more threads than this: be_forward's full output */

typedef struct {
    const be_kernels *kern;
    const uint8_t *w;
    int n, k;
    const float *x;        /* [k] */
    const int16_t *X;      /* [k] */
    float s;               /* x ~ s * X */
    double bound_per_w;    /* B_r = W_r * bound_per_w */
    const float *abs_sum;  /* [n] W_r, rounded up */
    float *approx;         /* [n] L_r */
    float *logits;         /* [n] F_r for candidates, -inf elsewhere */
    double lower;          /* max_r (L_r - B_r), set between the runs */
    double thread_lower[GREEDY_MAX_THREADS];  /* run 1: each thread's max of L - B; NAN if an L was not finite */
    int thread_best[GREEDY_MAX_THREADS];  /* run 2: each thread's argmax among its candidates, -1 if none */
} greedy_task;

/* W_r = sum over blocks |d_b| * sum_j |q_j|: integer and half-float inputs, summed in double (exact to 2^-45
 * relative for any k here), rounded up to float */
static void abs_sum_worker(void *ctx, int ith, int nth) {
    greedy_task *t = ctx;
    const size_t row_bytes = be_float_row_bytes(BE_Q8_0, t->k);
    int n0, n1;
    be_split_range(t->n, ith, nth, ROW_ALIGN, &n0, &n1);
    float *abs_sum = (float *)t->abs_sum;
    for (int r = n0; r < n1; r++) {
        const uint8_t *row = t->w + (size_t)r * row_bytes;
        double sum = 0.0;
        for (int b = 0; b < t->k / BE_Q8_0_BLOCK; b++) {
            const uint8_t *blk = row + (size_t)b * BE_Q8_0_BYTES;
            int levels = 0;
            for (int j = 0; j < BE_Q8_0_BLOCK; j++) levels += abs((int)(int8_t)blk[2 + j]);
            sum += fabs((double)be_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)))) * levels;
        }
        float f = (float)sum;
        abs_sum[r] = (double)f < sum ? nextafterf(f, INFINITY) : f;
    }
}

static void approx_worker(void *ctx, int ith, int nth) {
    greedy_task *t = ctx;
    int n0, n1;
    be_split_range(t->n, ith, nth, ROW_ALIGN, &n0, &n1);
    double lower = -INFINITY;
    if (n1 > n0) {
        t->kern->q8_0_i16_gemv(t->w, t->X, t->approx, n0, n1, t->k);
        for (int r = n0; r < n1; r++) {
            t->approx[r] *= t->s;
            if (!isfinite(t->approx[r])) {  /* overflow: the bound says nothing; the caller takes the full output */
                lower = NAN;
                break;
            }
            double lo = (double)t->approx[r] - (double)t->abs_sum[r] * t->bound_per_w;
            if (lo > lower) lower = lo;
        }
    }
    t->thread_lower[ith] = lower;
}

static void candidates_worker(void *ctx, int ith, int nth) {
    greedy_task *t = ctx;
    int n0, n1;
    be_split_range(t->n, ith, nth, ROW_ALIGN, &n0, &n1);
    int count = 0;
    for (int r = n0; r < n1; r++)
        count += (double)t->approx[r] + (double)t->abs_sum[r] * t->bound_per_w >= t->lower;
    int best = -1;
    if (count > (n1 - n0) / 8) {  /* no use picking: every row of this range exactly */
        if (n1 > n0) t->kern->float_gemv(t->w, BE_Q8_0, t->x, t->logits, n0, n1, t->k);
        for (int r = n0; r < n1; r++)
            if (best < 0 || t->logits[r] > t->logits[best]) best = r;
    } else {
        for (int r = n0; r < n1; r++) {
            if ((double)t->approx[r] + (double)t->abs_sum[r] * t->bound_per_w >= t->lower) {
                t->kern->float_gemv(t->w, BE_Q8_0, t->x, t->logits, r, r + 1, t->k);
                if (best < 0 || t->logits[r] > t->logits[best]) best = r;
            } else {
                t->logits[r] = -INFINITY;
            }
        }
    }
    t->thread_best[ith] = best;
}

int be_output_greedy(be_runtime *rt, const float *x, float *logits) {
    const be_model *m = rt->model;
    const be_config *c = &m->config;
    be_state *s = rt->state;
    const int nth = be_pool_size(rt->pool);
    if (c->embed_type != BE_Q8_0 || !rt->kernels->q8_0_i16_gemv || nth > GREEDY_MAX_THREADS || s->greedy_off)
        return -1;
    greedy_task t;
    memset(&t, 0, sizeof(t));
    t.kern = rt->kernels;
    t.w = m->output ? m->output : m->token_embd;
    t.n = c->vocab_size;
    t.k = c->hidden;
    t.x = x;
    if (!s->output_abs_sum) {  /* once per state: the buffers, and a pass over the output matrix for W */
        /* BITEDGE_GREEDY_FULL set: every step computes every logit (the tests compare the two; bench A/B) */
        const char *full = getenv("BITEDGE_GREEDY_FULL");
        s->greedy_off = full && *full && strcmp(full, "0") != 0;
        if (!s->greedy_off) {
            s->x16 = malloc((size_t)c->hidden * sizeof(int16_t));
            s->greedy_approx = malloc((size_t)c->vocab_size * sizeof(float));
            s->output_abs_sum = malloc((size_t)c->vocab_size * sizeof(float));
            s->greedy_off = !s->x16 || !s->greedy_approx || !s->output_abs_sum;
        }
        if (s->greedy_off) return -1;
        t.abs_sum = s->output_abs_sum;
        be_pool_run(rt->pool, abs_sum_worker, &t);
        for (int r = 0; r < c->vocab_size && !s->greedy_off; r++) s->greedy_off = !isfinite(s->output_abs_sum[r]);
        if (s->greedy_off) return -1;
    }
    t.X = s->x16;
    const float max_x = be_greedy_quantize_x(x, s->x16, c->hidden);
    if (!(max_x > 0.0f) || !isfinite(max_x)) return -1;
    t.abs_sum = s->output_abs_sum;
    t.s = max_x / 32767.0f;  /* as be_greedy_quantize_x scaled x */
    t.bound_per_w = be_greedy_bound_per_w(max_x, c->hidden);
    t.approx = s->greedy_approx;
    t.logits = logits;
    be_pool_run(rt->pool, approx_worker, &t);
    t.lower = -INFINITY;
    for (int i = 0; i < nth; i++) {
        if (isnan(t.thread_lower[i])) return -1;
        if (t.thread_lower[i] > t.lower) t.lower = t.thread_lower[i];
    }
    be_pool_run(rt->pool, candidates_worker, &t);
    int best = -1;  /* threads hold ascending row ranges: the first strict maximum is be_argmax's */
    for (int i = 0; i < nth; i++) {
        int b = t.thread_best[i];
        if (b >= 0 && (best < 0 || logits[b] > logits[best])) best = b;
    }
    return best;
}
