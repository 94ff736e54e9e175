/* main_generate.c: bitedge-run generate: a prompt (text or token ids), then -n tokens from the sampler, with the
 * optional logits and activation dumps the lossless check reads (main_impl.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
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
 * generate */

static int32_t *prompt_tokens(loaded_model *lm, const options *o, int *n_out) {
    int32_t *tokens;
    int n;
    if (o->tokens) {
        size_t cap = strlen(o->tokens) / 2 + 2;
        tokens = malloc(cap * sizeof(int32_t));
        if (!tokens) be_die("out of memory");
        n = parse_int_list("--tokens", o->tokens, tokens, (int)cap, 0, lm->model.config.vocab_size - 1);
    } else {
        be_tokenizer *tok = need_tokenizer(lm, "-p TEXT");
        const char *text = o->prompt;
        char *chat_text = NULL;
        if (o->chat) {
            char err[256];
            chat_text = be_chat_format(tok, text, err, sizeof(err));
            if (!chat_text) be_die("--chat: %s", err);
            text = chat_text;
        }
        size_t len = strlen(text);
        int cap = (int)len + 8;
        tokens = malloc((size_t)cap * sizeof(int32_t));
        if (!tokens) be_die("out of memory");
        /* be_chat_format writes the BOS (when the file wants one) as text: do not add another */
        n = be_encode(tok, text, len, o->chat ? 0 : -1, tokens, cap);
        if (n < 0) be_die("cannot tokenize the prompt");
        free(chat_text);
    }
    if (n == 0) be_die("the prompt is empty: give -p TEXT or --tokens");
    *n_out = n;
    return tokens;
}

/* An output file written under PATH.partial and renamed when complete: never a half-written file. */
typedef struct {
    FILE *f;    /* NULL when no path was given */
    char *tmp;  /* PATH.partial */
} partial_file;

static partial_file open_partial(const char *path) {
    partial_file p = {NULL, NULL};
    if (!path) return p;
    p.tmp = malloc(strlen(path) + sizeof(".partial"));
    if (!p.tmp) be_die("out of memory");
    sprintf(p.tmp, "%s.partial", path);
    p.f = fopen(p.tmp, "wb");
    if (!p.f) be_die("cannot write %s: %s", p.tmp, strerror(errno));
    return p;
}

static void close_partial(partial_file *p, const char *path) {
    if (!p->f) return;
    /* ferror: a failed fwrite anywhere (the activation dump does not check each one) */
    int failed = ferror(p->f);
    if (fclose(p->f) != 0 || failed || rename(p->tmp, path) != 0) {
        remove(p->tmp);
        be_die("cannot write %s", path);
    }
    free(p->tmp);
    p->f = NULL;
}

int cmd_generate(loaded_model *lm, const options *o) {
    const be_config *c = &lm->model.config;
    if (!o->prompt == !o->tokens) be_die("generate needs exactly one of -p TEXT and --tokens 1,2,3");
    int n_threads = single_thread_count(o);
    int n_prompt;
    int32_t *prompt = prompt_tokens(lm, o, &n_prompt);
    int n_gen = o->n;
    int ctx = o->ctx ? o->ctx : n_prompt + n_gen;
    if (ctx > c->context_length) ctx = c->context_length;
    if (n_prompt + n_gen > ctx)
        be_die("prompt (%d tokens) + %d new tokens exceed the context of %d positions", n_prompt, n_gen, ctx);

    char err[256];
    be_state state;
    int batch = o->batch ? o->batch : DEFAULT_BATCH;
    if (build_state(&state, &lm->model, ctx, batch, n_threads, err, sizeof(err)) != 0) be_die("%s", err);
    be_pool *pool = be_pool_create(n_threads);
    if (!pool) be_die("cannot start %d threads", n_threads);
    be_runtime rt = {&lm->model, lm->kernels, pool, &state, NULL};
    be_sampler sampler;
    be_sampler_params sp = {o->temp > 0 ? (float)o->temp : 0.0f, o->top_k, (float)o->top_p, o->seed};
    if (build_sampler(&sampler, c->vocab_size, sp) != 0) be_die("out of memory for the sampler");

    partial_file dump = open_partial(o->dump_logits);
    partial_file act_dump = open_partial(o->dump_activations);
    if (act_dump.f) {
        if (be_dump_activations_header(act_dump.f, &lm->model) != 0) be_die("cannot write %s", act_dump.tmp);
        rt.act_dump = act_dump.f;
    }
    print_system_info(lm, n_threads);

    int32_t *out = malloc(((size_t)n_gen + 1) * sizeof(int32_t));
    char *text = malloc(1);
    size_t text_len = 0;
    if (!out || !text) be_die("out of memory");

    double t0 = now_ms();
    be_forward_prompt(&rt, prompt, n_prompt, 0);
    double prompt_ms = now_ms() - t0;

    /* greedy, and nobody reads the logits but the sampler: the step needs only the rows that can be its argmax */
    const int greedy_only = !(sp.temperature > 0.0f) && !dump.f && !act_dump.f;
    int next = -1;
    double gen_ms = 0.0;
    int n_out = 0, n_eval = 0;
    for (int step = 0; step < n_gen; step++) {
        if (dump.f && fwrite(state.logits, sizeof(float), (size_t)c->vocab_size, dump.f) != (size_t)c->vocab_size)
            be_die("cannot write %s", dump.tmp);
        /* a greedy step already returned its token (be_forward_greedy: be_argmax of its logits, bit for bit) */
        int token = next >= 0 ? next : be_sample(&sampler, state.logits);
        out[n_out++] = token;
        if (lm->tokenizer) {
            size_t plen;
            const char *piece = be_token_piece(lm->tokenizer, token, &plen);
            if (piece && plen) {
                char *grown = realloc(text, text_len + plen + 1);
                if (!grown) be_die("out of memory");
                text = grown;
                memcpy(text + text_len, piece, plen);
                text_len += plen;
                if (!o->json) {
                    fwrite(piece, 1, plen, stdout);
                    fflush(stdout);
                }
            }
        }
        if (lm->tokenizer && !o->ignore_eos && be_token_is_eog(lm->tokenizer, token)) break;
        if (step + 1 == n_gen) break;  /* the last token is sampled, never fed */
        double t1 = now_ms();
        if (greedy_only) next = be_forward_greedy(&rt, token, n_prompt + step);
        else be_forward(&rt, &token, 1, n_prompt + step, 0);
        gen_ms += now_ms() - t1;
        n_eval++;
    }
    if (greedy_only && o->json && n_eval > 0) be_forward_full_logits(&rt);  /* logits_last: all of them */
    if (!o->json && lm->tokenizer) fputc('\n', stdout);
    text[text_len] = 0;

    close_partial(&dump, o->dump_logits);
    close_partial(&act_dump, o->dump_activations);

    fprintf(stderr, "load time = %10.2f ms\n", lm->load_ms);
    print_eval_line("prompt eval time", prompt_ms, n_prompt, "tokens");
    print_eval_line("eval time", gen_ms, n_eval, "runs  ");
    double pp_tps = prompt_ms > 0 ? 1e3 * n_prompt / prompt_ms : 0.0;
    double tg_tps = gen_ms > 0 ? 1e3 * n_eval / gen_ms : 0.0;

    if (o->json) {
        char info[512];
        be_system_info(info, sizeof(info));
        size_t clean_len;
        char *clean = utf8_sanitize(text, text_len, &clean_len);
        printf("{\"prompt_tokens\": ");
        json_int_array(stdout, prompt, n_prompt);
        printf(", \"tokens\": ");
        json_int_array(stdout, out, n_out);
        printf(", \"text\": ");
        json_string(stdout, clean, clean_len);
        printf(", \"timings\": {\"load_ms\": %.3f, \"prompt_ms\": %.3f, \"gen_ms\": %.3f, \"pp_tps\": %.3f, \"tg_tps\": %.3f}",
               lm->load_ms, prompt_ms, gen_ms, pp_tps, tg_tps);
        printf(", \"n_threads\": %d, \"vocab_size\": %d, \"system_info\": ", n_threads, c->vocab_size);
        json_string(stdout, info, strlen(info));
        printf(", \"kernels\": ");
        json_string(stdout, lm->kernels->name, strlen(lm->kernels->name));
        /* decode steps whose output took output_greedy.c's fast pass, of all decode steps */
        printf(", \"greedy_fast_steps\": %d, \"decode_steps\": %d", state.greedy_fast_steps, n_eval);
        printf(", \"ternary_ops\": ");  /* what the matmuls ran: "<packing>/<table>" (ternary_ops.h) */
        json_string(stdout, state.ternary->name, strlen(state.ternary->name));
        long rss = peak_rss_bytes();
        printf(", \"peak_rss_bytes\": %ld, \"peak_rss_mb\": %.3f, \"logits_last\": [", rss, rss / 1048576.0);
        for (int i = 0; i < c->vocab_size; i++) {
            if (i) fputs(", ", stdout);
            json_float(stdout, state.logits[i]);
        }
        printf("]}\n");
        free(clean);
    }
    free(out);
    free(text);
    free(prompt);
    free_sampler(&sampler);
    be_pool_free(pool);
    free_state(&state);
    return 0;
}
