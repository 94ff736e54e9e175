/* Token sampling: greedy, temperature, top-k, top-p, deterministic per seed.
 *
 * Greedy (temperature <= 0) is argmax with ties broken towards the LOWEST token id, the same rule as
 * numpy.argmax, so greedy runs of the C runtime and the numpy reference can be compared token for token.
 * Random draws use xorshift64*: the same seed always gives the same tokens on every platform. */
#ifndef BITEDGE_SAMPLER_H
#define BITEDGE_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature;  /* <= 0: greedy */
    int top_k;          /* <= 0 or >= vocab: no top-k cut */
    float top_p;        /* >= 1: no nucleus cut */
    uint64_t seed;
} be_sampler_params;

typedef struct {
    float prob;
    int index;
} be_prob_index;

typedef struct {
    be_sampler_params params;
    int vocab_size;
    uint64_t rng_state;
    be_prob_index *candidates;  /* [vocab_size] scratch */
} be_sampler;

be_sampler_params be_sampler_defaults(void);
/* Returns 0, or -1 if out of memory / bad vocab size. */
int build_sampler(be_sampler *s, int vocab_size, be_sampler_params params);
void free_sampler(be_sampler *s);

/* Index of the largest value; the lowest index among equal maxima. */
int be_argmax(const float *x, int n);
/* Picks the next token from logits[0..vocab_size). Does not modify logits. */
int be_sample(be_sampler *s, const float *logits);
/* Uniform float in [0, 1) from the sampler's generator (exposed for tests). */
float be_random_f32(uint64_t *state);

#endif
