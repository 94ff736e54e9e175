/* main_perplexity.c: bitedge-run perplexity over a text file (main_impl.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "forward.h"
#include "run_errors.h"
#include "sampler.h"
#include "threadpool.h"

#include "main_impl.h"

/* ----------------------------------------------------------------------------------------------------------
 * perplexity: the text is cut into chunks of CTX tokens, each run from an empty cache; every token after the
 * first of a chunk is scored (negative log-likelihood from the logits at the previous position, in double). */

int cmd_perplexity(loaded_model *lm, const options *o) {
    const be_config *c = &lm->model.config;
    if (!o->text_file) be_die("perplexity needs -f TEXT_FILE");
    be_tokenizer *tok = need_tokenizer(lm, "perplexity");
    int n_threads = single_thread_count(o);
    size_t len;
    char *text = read_file(o->text_file, &len);
    if (len > (size_t)INT_MAX / 2) be_die("%s is too large", o->text_file);
    int cap = (int)len + 8;
    int32_t *tokens = malloc((size_t)cap * sizeof(int32_t));
    if (!tokens) be_die("out of memory");
    int n = be_encode(tok, text, len, -1, tokens, cap);
    if (n < 0) be_die("cannot tokenize %s", o->text_file);
    int ctx = o->ctx ? o->ctx : 512;
    if (ctx > c->context_length) ctx = c->context_length;
    if (n < 2) be_die("%s has %d tokens: perplexity needs at least 2", o->text_file, n);
    if (ctx > n) ctx = n;

    char err[256];
    be_state state;
    int batch = o->batch ? o->batch : DEFAULT_BATCH;
    if (batch > ctx) batch = ctx;
    if (build_state(&state, &lm->model, ctx, batch, n_threads, err, sizeof(err)) != 0) be_die("%s", err);
    be_pool *pool = be_pool_create(n_threads);
    if (!pool) be_die("cannot start %d threads", n_threads);
    be_runtime rt = {&lm->model, lm->kernels, pool, &state, NULL};
    print_system_info(lm, n_threads);

    double nll = 0.0, t0 = now_ms();
    int scored = 0, chunks = 0;
    for (int start = 0; start + 1 < n; start += ctx) {
        int len_chunk = n - start < ctx ? n - start : ctx;
        if (len_chunk < 2) break;
        for (int i = 0; i < len_chunk; i += batch) {
            int nb = len_chunk - i < batch ? len_chunk - i : batch;
            be_forward(&rt, tokens + start + i, nb, i, 1);
            for (int b = 0; b < nb; b++) {
                int pos = i + b;
                if (pos + 1 >= len_chunk) break;
                const float *lg = state.logits + (size_t)b * c->vocab_size;
                double maxv = lg[be_argmax(lg, c->vocab_size)], sum = 0.0;
                for (int v = 0; v < c->vocab_size; v++) sum += exp((double)lg[v] - maxv);
                nll += log(sum) + maxv - (double)lg[tokens[start + pos + 1]];
                scored++;
            }
        }
        chunks++;
        if (!o->json) fprintf(stderr, "[%d] %.4f\n", chunks, exp(nll / scored));
    }
    double ms = now_ms() - t0, ppl = exp(nll / scored);
    print_eval_line("prompt eval time", ms, scored + chunks, "tokens");
    if (o->json) {
        printf("{\"perplexity\": ");
        json_float(stdout, ppl);
        printf(", \"nll_mean\": ");
        json_float(stdout, nll / scored);
        printf(", \"n_tokens\": %d, \"n_scored\": %d, \"n_chunks\": %d, \"ctx\": %d, \"ms\": %.3f, \"kernels\": ", n,
               scored, chunks, ctx, ms);
        json_string(stdout, lm->kernels->name, strlen(lm->kernels->name));
        printf("}\n");
    } else {
        printf("perplexity: %.4f over %d tokens (%d chunks of %d)\n", ppl, scored, chunks, ctx);
    }
    be_pool_free(pool);
    free_state(&state);
    free(tokens);
    free(text);
    return 0;
}
