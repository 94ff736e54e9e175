/* main_bench.c: bitedge-run bench: llama-bench style prompt (pp) and generation (tg) timings (main_impl.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_features.h"
#include "forward.h"
#include "run_errors.h"
#include "threadpool.h"

#include "main_impl.h"

/* ----------------------------------------------------------------------------------------------------------
 * bench (llama-bench style: times exclude tokenization and sampling) */

typedef struct {
    double mean, sd;
} mean_sd;

static mean_sd stats(const double *v, int n) {
    mean_sd r = {0.0, 0.0};
    for (int i = 0; i < n; i++) r.mean += v[i];
    r.mean /= n;
    if (n > 1) {
        for (int i = 0; i < n; i++) r.sd += (v[i] - r.mean) * (v[i] - r.mean);
        r.sd = sqrt(r.sd / (n - 1));
    }
    return r;
}

/* One pp or tg measurement from an empty context; returns nanoseconds. */
static double bench_once(be_runtime *rt, const int32_t *tokens, int n_prompt, int n_gen) {
    double t0 = now_ms();
    if (n_prompt > 0) be_forward_prompt(rt, tokens, n_prompt, 0);
    /* generation as greedy decoding does it (be_forward_greedy: the next token, lossless, without every logit) */
    for (int i = 0; i < n_gen; i++) be_forward_greedy(rt, tokens[i], i);
    return (now_ms() - t0) * 1e6;
}

static void bench_row(FILE *f, loaded_model *lm, int first, int n_threads, int n_prompt, int n_gen, const double *ns,
                      int reps, const char *cpu_info) {
    double ts[1000];
    char test_time[32];
    time_t now = time(NULL);
    struct tm tm_utc;
    strftime(test_time, sizeof(test_time), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm_utc));
    int n_tok = n_prompt + n_gen;
    for (int i = 0; i < reps; i++) ts[i] = 1e9 * n_tok / ns[i];
    mean_sd s_ns = stats(ns, reps), s_ts = stats(ts, reps);
    const be_config *c = &lm->model.config;
    fprintf(f, "%s\n  {\"model_type\": ", first ? "" : ",");
    char type[160];
    snprintf(type, sizeof(type), "bitnet %dL %dH %s %s", c->n_layers, c->hidden, lm->model.packing_name,
             lm->model.embed_type_name);
    json_string(f, type, strlen(type));
    fprintf(f, ", \"build_commit\": \"%s\", \"test_time\": \"%s\"", BITEDGE_BUILD_COMMIT, test_time);
    fprintf(f, ", \"model_size\": %lld, \"model_n_params\": %lld, \"n_threads\": %d, \"n_prompt\": %d, \"n_gen\": %d",
            lm->file_size, (long long)be_model_n_params(&lm->model), n_threads, n_prompt, n_gen);
    fprintf(f, ", \"test\": \"%s%d\"", n_prompt ? "pp" : "tg", n_prompt ? n_prompt : n_gen);
    fprintf(f, ", \"avg_ns\": %.0f, \"stddev_ns\": %.0f, \"avg_ts\": %.6f, \"stddev_ts\": %.6f", s_ns.mean, s_ns.sd,
            s_ts.mean, s_ts.sd);
    fputs(", \"samples_ns\": [", f);
    for (int i = 0; i < reps; i++) fprintf(f, i ? ", %.0f" : "%.0f", ns[i]);
    fputs("], \"samples_ts\": [", f);
    for (int i = 0; i < reps; i++) fprintf(f, i ? ", %.6f" : "%.6f", ts[i]);
    fputs("], \"cpu_info\": ", f);
    json_string(f, cpu_info, strlen(cpu_info));
    fputs(", \"kernels\": ", f);
    json_string(f, lm->kernels->name, strlen(lm->kernels->name));
    long rss = peak_rss_bytes();
    fprintf(f, ", \"peak_rss_bytes\": %ld, \"peak_rss_mb\": %.3f}", rss, rss / 1048576.0);
}

int cmd_bench(loaded_model *lm, const options *o) {
    const be_config *c = &lm->model.config;
    int32_t threads[MAX_THREAD_LIST];
    int n_threads_list = parse_int_list("-t", o->threads_list, threads, MAX_THREAD_LIST, 1, 1024);
    int n_prompt = o->p_set ? (int)be_parse_long("-p", o->prompt, 0, 1 << 20) : 128;
    int n_gen = o->n_set ? o->n : 128;
    if (n_prompt == 0 && n_gen == 0) be_die("bench: nothing to measure (-p 0 and -n 0)");
    int ctx = n_prompt > n_gen ? n_prompt : n_gen;
    if (ctx > c->context_length) be_die("bench: %d positions exceed the model's context of %d", ctx, c->context_length);
    int32_t *tokens = malloc((size_t)ctx * sizeof(int32_t));
    if (!tokens) be_die("out of memory");
    for (int i = 0; i < ctx; i++) tokens[i] = (int32_t)((1 + (int64_t)i * 7919) % c->vocab_size);  /* fixed, no tokenizer */

    char cpu_info[256], info[512];
    be_cpu_name(cpu_info, sizeof(cpu_info));
    be_system_info(info, sizeof(info));
    double ns[1000];
    int first = 1;
    if (o->json) fputs("[", stdout);
    else printf("| model | size | threads | kernels | test | t/s |\n| --- | ---: | ---: | --- | ---: | ---: |\n");
    for (int ti = 0; ti < n_threads_list; ti++) {
        int nt = threads[ti];
        char err[256];
        be_state state;
        int batch = o->batch ? o->batch : DEFAULT_BATCH;
        if (build_state(&state, &lm->model, ctx, batch, nt, err, sizeof(err)) != 0) be_die("%s", err);
        be_pool *pool = be_pool_create(nt);
        if (!pool) be_die("cannot start %d threads", nt);
        be_runtime rt = {&lm->model, lm->kernels, pool, &state, NULL};
        fprintf(stderr, "system_info: n_threads = %d | kernels = %s | %s\n", nt, lm->kernels->name, info);
        for (int test = 0; test < 2; test++) {
            int np = test == 0 ? n_prompt : 0, ng = test == 0 ? 0 : n_gen;
            if (np + ng == 0) continue;
            bench_once(&rt, tokens, np, ng);  /* warm-up, as llama-bench does */
            for (int r = 0; r < o->reps; r++) ns[r] = bench_once(&rt, tokens, np, ng);
            if (o->json) {
                bench_row(stdout, lm, first, nt, np, ng, ns, o->reps, cpu_info);
            } else {
                double ts[1000];
                for (int r = 0; r < o->reps; r++) ts[r] = 1e9 * (np + ng) / ns[r];
                mean_sd s = stats(ts, o->reps);
                printf("| %s | %.2f MiB | %d | %s | %s%d | %.2f ± %.2f |\n", c->name, lm->file_size / 1048576.0, nt,
                       lm->kernels->name, np ? "pp" : "tg", np ? np : ng, s.mean, s.sd);
            }
            first = 0;
            fflush(stdout);
        }
        be_pool_free(pool);
        free_state(&state);
    }
    if (o->json) fputs("\n]\n", stdout);
    fprintf(stderr, "peak RSS = %.1f MiB\n", peak_rss_bytes() / 1048576.0);
    free(tokens);
    return 0;
}
