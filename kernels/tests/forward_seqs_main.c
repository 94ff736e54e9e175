/* Checks be_forward_seqs (continuous batching) against each sequence run alone: bit-identical logits and KV cache.
 *
 *   forward_seqs_main MODEL.gguf KERNELS THREADS      (KERNELS: a be_kernels table name, e.g. scalar or avx2)
 *
 * For 1..8 sequences: each gets a prompt of its own length (so positions differ), fed through be_forward_prompt
 * twice, into the sequence's state and into an "alone" twin. Then decode steps: each step a changing subset of
 * the sequences (mixed positions, batches of every size) goes through one be_forward_seqs, and each of them, fed
 * the same token alone through be_forward on its twin, must give the same logits (memcmp); at the end each cache
 * equals its twin's. The batch's activations are a build_batch_state, or for odd counts one of the sequences'
 * own states (allowed by forward.h). Prints "ok: N comparisons" and exits 0, or names the first difference and
 * exits 1. Built by tests/test_serve_batching.py from the runtime's sources (all but main.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "gguf.h"
#include "kernels.h"
#include "model.h"
#include "threadpool.h"

#define MAX_SEQS 8
#define CTX 64
#define STEPS 7

static uint32_t lcg = 12345u;
static int32_t next_token(int vocab) {
    lcg = lcg * 1664525u + 1013904223u;
    return (int32_t)((lcg >> 8) % (uint32_t)vocab);
}

static void die(const char *what) {
    fprintf(stderr, "forward_seqs_main: %s\n", what);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc != 4) die("usage: forward_seqs_main MODEL.gguf KERNELS THREADS");
    char err[512];
    gguf_file *f = gguf_open(argv[1], err, sizeof(err));
    if (!f) die(err);
    be_model m;
    if (build_model(f, &m, err, sizeof(err)) != 0) die(err);
    const be_kernels *kern = be_kernels_by_name(argv[2]);
    if (!kern) die("no such kernel table on this CPU");
    int n_threads = atoi(argv[3]);
    be_pool *pool = be_pool_create(n_threads);
    if (!pool) die("cannot start threads");
    int vocab = m.config.vocab_size, kv_dim = m.config.n_kv_heads * m.config.head_dim;
    size_t cache_floats = (size_t)m.config.n_layers * CTX * kv_dim;
    long compared = 0;

    for (int n = 1; n <= MAX_SEQS; n++) {
        be_state seqs[MAX_SEQS], alone[MAX_SEQS], batch;
        int pos[MAX_SEQS];
        for (int i = 0; i < n; i++) {
            /* prompt chunks of 3: a prompt of 5 or 7 tokens is two or three be_forward calls */
            if (build_state(&seqs[i], &m, CTX, MAX_SEQS, n_threads, err, sizeof(err)) != 0 ||
                build_state(&alone[i], &m, CTX, 3, n_threads, err, sizeof(err)) != 0)
                die(err);
            int32_t prompt[16];
            pos[i] = 1 + (3 * i + n) % 7;
            for (int j = 0; j < pos[i]; j++) prompt[j] = next_token(vocab);
            be_runtime rs = {&m, kern, pool, &seqs[i], NULL}, ra = {&m, kern, pool, &alone[i], NULL};
            be_forward_prompt(&rs, prompt, pos[i], 0);
            be_forward_prompt(&ra, prompt, pos[i], 0);
        }
        if (build_batch_state(&batch, &m, CTX, MAX_SEQS, n_threads, err, sizeof(err)) != 0) die(err);
        be_runtime rb = {&m, kern, pool, n % 2 ? &seqs[n - 1] : &batch, NULL};
        for (int step = 0; step < STEPS; step++) {
            int32_t tokens[MAX_SEQS];
            int positions[MAX_SEQS], which[MAX_SEQS], nb = 0;
            be_state *members[MAX_SEQS];
            for (int i = 0; i < n; i++) {
                if (n > 1 && (i + step) % 4 == 3) continue;  /* this one sits this step out */
                which[nb] = i;
                tokens[nb] = next_token(vocab);
                positions[nb] = pos[i];
                members[nb] = &seqs[i];
                nb++;
            }
            be_forward_seqs(&rb, nb, tokens, positions, members);
            for (int j = 0; j < nb; j++) {
                int i = which[j];
                be_runtime ra = {&m, kern, pool, &alone[i], NULL};
                be_forward(&ra, &tokens[j], 1, pos[i], 0);
                if (memcmp(alone[i].logits, seqs[i].logits, (size_t)vocab * sizeof(float)) != 0) {
                    int k = 0;
                    while (alone[i].logits[k] == seqs[i].logits[k]) k++;
                    printf("MISMATCH: %d sequences, step %d, sequence %d at position %d (batch of %d): logit %d "
                           "alone %.9g batched %.9g\n", n, step, i, pos[i], nb, k, alone[i].logits[k],
                           seqs[i].logits[k]);
                    return 1;
                }
                pos[i]++;
                compared++;
            }
        }
        for (int i = 0; i < n; i++) {
            if (memcmp(alone[i].key_cache, seqs[i].key_cache, cache_floats * sizeof(float)) != 0 ||
                memcmp(alone[i].value_cache, seqs[i].value_cache, cache_floats * sizeof(float)) != 0) {
                printf("MISMATCH: %d sequences: the KV cache of sequence %d differs\n", n, i);
                return 1;
            }
            free_state(&seqs[i]);
            free_state(&alone[i]);
        }
        free_state(&batch);
    }
    printf("ok: %ld comparisons\n", compared);
    be_pool_free(pool);
    free_model(&m);
    gguf_close(f);
    return 0;
}
