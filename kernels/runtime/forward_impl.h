/* forward_impl.h: what forward.c and forward_attention.c share: where each token of a batch sits, and the two
 * attention steps of a layer (RoPE and the KV cache writes, then attention), each one run of the thread pool. */
#ifndef BITEDGE_FORWARD_IMPL_H
#define BITEDGE_FORWARD_IMPL_H

#include "forward.h"

/* where token b of a batch sits: its position and the KV cache it reads and extends */
typedef struct {
    be_state *state;           /* one sequence: token b at pos0 + b in state's cache */
    int pos0;
    const int *positions;      /* several sequences (NULL: one): token b at positions[b] ... */
    be_state *const *seqs;     /* ... in seqs[b]'s cache */
} token_places;

static inline int place_pos(const token_places *p, int b) { return p->positions ? p->positions[b] : p->pos0 + b; }

/* layer l of token b's key (value = 0) or value (value = 1) cache: [ctx][kv_dim] */
static inline float *place_cache(const token_places *p, int b, int l, int kv_dim, int value) {
    const be_state *owner = p->positions ? p->seqs[b] : p->state;
    float *cache = value ? owner->value_cache : owner->key_cache;
    return cache + (size_t)l * owner->ctx * kv_dim;
}

/* q and k of the nb tokens rotated (RoPE) in place, k and v written to their caches at layer l; tokens split over
 * the pool (inline for one token) */
void be_rope_and_cache(be_runtime *rt, const token_places *places, int nb, int layer);
/* xb[b] = attention of token b's q over its cache (positions 0..its own) at layer l; (token, head) pairs split over
 * the pool */
void be_attention(be_runtime *rt, const token_places *places, int nb, int layer);

/* The greedy token of logits = x . E^T (x: the normed last row [hidden]), logits as be_forward_greedy leaves them;
 * -1 where the fast pass does not apply (the caller computes the full output) (output_greedy.c) */
int be_output_greedy(be_runtime *rt, const float *x, float *logits);

#endif
