/* Token sampling (see sampler.h). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

be_sampler_params be_sampler_defaults(void) {
    be_sampler_params p = {0.0f, 40, 0.95f, 42};
    return p;
}

int build_sampler(be_sampler *s, int vocab_size, be_sampler_params params) {
    if (vocab_size <= 0) return -1;
    s->params = params;
    s->vocab_size = vocab_size;
    /* xorshift must not start at 0; mix the seed so nearby seeds diverge at once */
    s->rng_state = params.seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (s->rng_state == 0) s->rng_state = 0x2545F4914F6CDD1Dull;
    s->candidates = malloc((size_t)vocab_size * sizeof(be_prob_index));
    return s->candidates ? 0 : -1;
}

void free_sampler(be_sampler *s) {
    free(s->candidates);
    s->candidates = NULL;
}

int be_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[best]) best = i;
    }
    return best;
}

static uint64_t xorshift64star(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float be_random_f32(uint64_t *state) {
    /* top 24 bits -> [0, 1) exactly representable in float */
    return (float)(xorshift64star(state) >> 40) / 16777216.0f;
}

/* Descending probability, then ascending index: a total order, so qsort's result is deterministic. */
static int compare_candidates(const void *pa, const void *pb) {
    const be_prob_index *a = pa, *b = pb;
    if (a->prob > b->prob) return -1;
    if (a->prob < b->prob) return 1;
    return (a->index > b->index) - (a->index < b->index);
}

int be_sample(be_sampler *s, const float *logits) {
    const be_sampler_params *p = &s->params;
    int n = s->vocab_size;
    if (!(p->temperature > 0.0f)) return be_argmax(logits, n);

    /* softmax(logits / T) in double: sums over a 128k vocabulary lose too much in float */
    float maxv = logits[be_argmax(logits, n)];
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        double e = exp(((double)logits[i] - (double)maxv) / (double)p->temperature);
        s->candidates[i].prob = (float)e;
        s->candidates[i].index = i;
        total += e;
    }
    for (int i = 0; i < n; i++) s->candidates[i].prob = (float)(s->candidates[i].prob / total);

    int keep = n;
    int cut_k = p->top_k > 0 && p->top_k < n;
    int cut_p = p->top_p > 0.0f && p->top_p < 1.0f;
    if (cut_k || cut_p) {
        qsort(s->candidates, (size_t)n, sizeof(be_prob_index), compare_candidates);
        if (cut_k) keep = p->top_k;
        if (cut_p) {
            double cum = 0.0;
            for (int i = 0; i < keep; i++) {
                cum += s->candidates[i].prob;
                if (cum >= p->top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
    }

    double mass = 0.0;
    for (int i = 0; i < keep; i++) mass += s->candidates[i].prob;
    double r = (double)be_random_f32(&s->rng_state) * mass;
    double cum = 0.0;
    for (int i = 0; i < keep; i++) {
        cum += s->candidates[i].prob;
        if (r < cum) return s->candidates[i].index;
    }
    return s->candidates[keep - 1].index;  /* rounding left r at the very top */
}
