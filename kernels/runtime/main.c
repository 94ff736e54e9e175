/* bitedge-run: generate, bench, perplexity and info over a bitedge GGUF file.
 *
 *   bitedge-run generate   -m FILE (-p TEXT | --tokens 1,2,3) -n N [-t T] [--temp T --top-k K --top-p P --seed S]
 *                          [--chat] [--ignore-eos] [-c CTX] [-b BATCH] [--dump-logits FILE] [--json]
 *   bitedge-run bench      -m FILE [-p 128] [-n 128] [-t 1,2] [-r 5] [--json]
 *   bitedge-run perplexity -m FILE -f TEXT_FILE [-c CTX] [-t T] [--json]
 *   bitedge-run info       -m FILE [--json]
 *   bitedge-run serve      -m FILE [--host H] [--port P] [--slots N] ...   (server.c)
 *
 * Bad input: one line "bitedge-run: error: ..." on stderr and exit status 2. A build whose instruction set
 * this CPU lacks: exit status 3 with a message, never SIGILL. BITEDGE_KERNELS=scalar|avx2|neon|... forces a
 * kernel table (tests compare them). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "cpu_features.h"
#include "forward.h"
#include "gguf.h"
#include "json.h"  /* json_utf8_sequence: one UTF-8 validator for the runtime */
#include "kernels.h"
#include "model.h"
#include "run_errors.h"
#include "sampler.h"
#include "server.h"
#include "threadpool.h"
#include "tokenizer.h"

#define EXIT_CPU_MISMATCH 3
#define DEFAULT_BATCH 32
#define MAX_THREAD_LIST 16
#ifndef BITEDGE_BUILD_COMMIT
#define BITEDGE_BUILD_COMMIT "unknown"  /* the build may pass -DBITEDGE_BUILD_COMMIT=\"<git sha>\" */
#endif

/* ----------------------------------------------------------------------------------------------------------
 * errors, time, small parsers */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Peak resident set of this process alone. ru_maxrss is not that: Linux carries it over exec from the parent
 * (Python, the shell, qemu), so a small model reported the launcher's peak. Linux: VmHWM from /proc/self/status;
 * macOS: the task's resident_size_max; elsewhere (or if those fail) ru_maxrss. */
#ifdef __APPLE__
#include <mach/mach.h>
#endif
static long peak_rss_bytes(void) {
#ifdef __APPLE__
    struct mach_task_basic_info ti;
    mach_msg_type_number_t n = MACH_TASK_BASIC_INFO_COUNT;
    if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, (task_info_t)&ti, &n) == KERN_SUCCESS)
        return (long)ti.resident_size_max;
#elif defined(__linux__)
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long kb = -1;
        while (fgets(line, sizeof(line), f))
            if (!strncmp(line, "VmHWM:", 6)) { kb = strtol(line + 6, NULL, 10); break; }
        fclose(f);
        if (kb >= 0) return kb * 1024L;
    }
#endif
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
#ifdef __APPLE__
    return (long)ru.ru_maxrss;  /* bytes on macOS */
#else
    return (long)ru.ru_maxrss * 1024L;  /* KiB on Linux */
#endif
}

/* "1,2,3" -> ints; returns the count. */
static int parse_int_list(const char *opt, const char *s, int32_t *out, int max_out, long lo, long hi) {
    int n = 0;
    const char *p = s;
    if (!*p) be_die("%s expects a comma-separated list of integers, got an empty string", opt);
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || (*end == ',' && !end[1]) || v < lo || v > hi)
            be_die("%s expects comma-separated integers in [%ld, %ld], got '%s'", opt, lo, hi, s);
        if (n >= max_out) be_die("%s: more than %d values", opt, max_out);
        out[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) be_die("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) be_die("out of memory reading %s", path);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        buf = realloc(buf, cap + 1);
    }
    if (ferror(f)) be_die("cannot read %s", path);
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* ----------------------------------------------------------------------------------------------------------
 * JSON output */

static void json_string(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch == '\r') fputs("\\r", f);
        else if (ch == '\t') fputs("\\t", f);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);  /* UTF-8 passes through; invalid bytes are replaced before we get here */
    }
    fputc('"', f);
}

static void json_float(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

static void json_int_array(FILE *f, const int32_t *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", (int)v[i]);
    fputc(']', f);
}

/* Replace bytes that are not valid UTF-8 with U+FFFD so the JSON stays valid (a token may end mid-character). */
static char *utf8_sanitize(const char *s, size_t len, size_t *out_len) {
    char *out = malloc(len * 3 + 1);
    if (!out) be_die("out of memory");
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        int n = json_utf8_sequence((const unsigned char *)s + i, len - i);
        if (n > 0) {
            memcpy(out + o, s + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

/* ----------------------------------------------------------------------------------------------------------
 * the loaded model and the runtime around it */

typedef struct {
    const char *path;
    long long file_size;
    gguf_file *gguf;
    be_model model;
    be_tokenizer *tokenizer;  /* NULL when the file has no usable tokenizer */
    char tokenizer_error[256];
    const be_kernels *kernels;
    double load_ms;
} loaded_model;

static const be_kernels *pick_kernels(void) {
    const char *name = getenv("BITEDGE_KERNELS");
    if (name && *name) {
        const be_kernels *k = be_kernels_by_name(name);
        const char *lacks = k ? NULL : be_kernels_cpu_lacks(name);
        if (lacks) {  /* a table this build holds, for instructions this CPU lacks: like a -march mismatch */
            fprintf(stderr, "bitedge-run: error: BITEDGE_KERNELS=%s needs %s, which this CPU does not have\n", name,
                    lacks);
            exit(EXIT_CPU_MISMATCH);
        }
        if (!k) be_die("BITEDGE_KERNELS=%s: no such kernel table in this build", name);
        return k;
    }
    return be_kernels_select();
}

static void load(loaded_model *lm, const char *path) {
    char err[512] = {0};
    memset(lm, 0, sizeof(*lm));
    lm->path = path;
    double t0 = now_ms();
    struct stat st;
    if (stat(path, &st) != 0) be_die("cannot open model %s: %s", path, strerror(errno));
    lm->file_size = (long long)st.st_size;
    lm->gguf = gguf_open(path, err, sizeof(err));
    if (!lm->gguf) be_die("%s: %s", path, err);
    if (build_model(lm->gguf, &lm->model, err, sizeof(err)) != 0) be_die("%s: %s", path, err);
    lm->tokenizer = build_tokenizer(&lm->model.vocab, lm->tokenizer_error, sizeof(lm->tokenizer_error));
    lm->kernels = pick_kernels();
    lm->load_ms = now_ms() - t0;
}

static void unload(loaded_model *lm) {
    if (lm->tokenizer) free_tokenizer(lm->tokenizer);
    free_model(&lm->model);
    gguf_close(lm->gguf);
}

static be_tokenizer *need_tokenizer(loaded_model *lm, const char *why) {
    if (!lm->tokenizer)
        be_die("%s needs the model's tokenizer, which cannot be used: %s", why,
            lm->tokenizer_error[0] ? lm->tokenizer_error : "the file has none");
    return lm->tokenizer;
}

static void print_system_info(const loaded_model *lm, int n_threads) {
    char info[512];
    be_system_info(info, sizeof(info));
    fprintf(stderr, "system_info: n_threads = %d | kernels = %s | %s\n", n_threads, lm->kernels->name, info);
}

static void print_eval_line(const char *what, double ms, int n, const char *unit) {
    fprintf(stderr, "%s = %10.2f ms / %5d %s (%8.2f ms per token, %8.2f tokens per second)\n", what, ms, n, unit,
            n > 0 ? ms / n : 0.0, ms > 0 ? 1e3 * n / ms : 0.0);
}

/* ----------------------------------------------------------------------------------------------------------
 * option parsing shared by the commands */

typedef struct {
    const char *model, *prompt, *tokens, *text_file, *dump_logits, *dump_activations, *threads_list;
    int n, n_prompt, reps, ctx, batch, top_k, chat, json, ignore_eos, n_set, p_set;
    double temp, top_p;
    uint64_t seed;
} options;

static void usage(FILE *f) {
    fputs("usage: bitedge-run COMMAND -m MODEL.gguf [options]\n"
          "  generate   (-p TEXT | --tokens 1,2,3) -n N [-t THREADS] [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
          "             [--chat] [--ignore-eos] [-c CTX] [-b BATCH] [--dump-logits FILE] [--dump-activations FILE]\n"
          "             [--json]\n"
          "  bench      [-p N_PROMPT=128] [-n N_GEN=128] [-t 1,2,...] [-r REPS=5] [-b BATCH] [--json]\n"
          "  perplexity -f TEXT_FILE [-c CTX=512] [-t THREADS] [-b BATCH] [--json]\n"
          "  info       [--json]\n"
          "  check      [--json]   no model: exit 0 if this CPU runs this build, 3 naming what it lacks if not\n"
          "  serve      [--host 127.0.0.1] [--port 8080] [-t THREADS] [--slots 4] [--queue 16] [-c CTX]\n"
          "             [--api-key KEY] [--timeout SEC] [-b BATCH] [--decode-batch N]\n"
          "             (OpenAI-compatible HTTP: docs/serve.md)\n"
          "environment: BITEDGE_KERNELS=scalar|avx2|avx512-vnni|neon|neon-dotprod forces a kernel table\n",
          f);
}

static void parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof(*o));
    o->n = 16;
    o->n_prompt = 128;
    o->reps = 5;
    o->threads_list = "1";
    o->temp = 0.8;
    o->top_k = 40;
    o->top_p = 0.95;
    o->seed = 42;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define VALUE() (i + 1 < argc ? argv[++i] : (be_die("option %s needs a value", a), (char *)NULL))
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = VALUE();
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { o->prompt = VALUE(); o->p_set = 1; }
        else if (!strcmp(a, "--tokens")) o->tokens = VALUE();
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->text_file = VALUE();
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { o->n = (int)be_parse_long(a, VALUE(), 0, 1 << 20); o->n_set = 1; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->threads_list = VALUE();
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) o->reps = (int)be_parse_long(a, VALUE(), 1, 1000);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) o->ctx = (int)be_parse_long(a, VALUE(), 2, 1 << 24);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) o->batch = (int)be_parse_long(a, VALUE(), 1, 4096);
        else if (!strcmp(a, "--temp")) o->temp = be_parse_double(a, VALUE(), 0.0, 100.0);
        else if (!strcmp(a, "--top-k")) o->top_k = (int)be_parse_long(a, VALUE(), 0, INT_MAX);
        else if (!strcmp(a, "--top-p")) o->top_p = be_parse_double(a, VALUE(), 0.0, 1.0);
        else if (!strcmp(a, "--seed")) o->seed = (uint64_t)be_parse_long(a, VALUE(), 0, LONG_MAX);
        else if (!strcmp(a, "--dump-logits")) o->dump_logits = VALUE();
        else if (!strcmp(a, "--dump-activations")) o->dump_activations = VALUE();
        else if (!strcmp(a, "--chat") || !strcmp(a, "-cnv")) o->chat = 1;
        else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
        else be_die("unknown option '%s' (see bitedge-run --help)", a);
#undef VALUE
    }
    if (!o->model) be_die("no model given: use -m FILE.gguf");
}

static int single_thread_count(const options *o) {
    int32_t t[1];
    parse_int_list("-t", o->threads_list, t, 1, 1, 1024);
    return t[0];
}

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

static int cmd_generate(loaded_model *lm, const options *o) {
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

    double gen_ms = 0.0;
    int n_out = 0, n_eval = 0;
    for (int step = 0; step < n_gen; step++) {
        if (dump.f && fwrite(state.logits, sizeof(float), (size_t)c->vocab_size, dump.f) != (size_t)c->vocab_size)
            be_die("cannot write %s", dump.tmp);
        int token = be_sample(&sampler, state.logits);
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
        be_forward(&rt, &token, 1, n_prompt + step, 0);
        gen_ms += now_ms() - t1;
        n_eval++;
    }
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
    for (int i = 0; i < n_gen; i++) be_forward(rt, &tokens[i], 1, i, 0);
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

static int cmd_bench(loaded_model *lm, const options *o) {
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

/* ----------------------------------------------------------------------------------------------------------
 * perplexity: the text is cut into chunks of CTX tokens, each run from an empty cache; every token after the
 * first of a chunk is scored (negative log-likelihood from the logits at the previous position, in double). */

static int cmd_perplexity(loaded_model *lm, const options *o) {
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

/* ----------------------------------------------------------------------------------------------------------
 * info */

static int cmd_info(loaded_model *lm, const options *o) {
    const be_config *c = &lm->model.config;
    char info[512];
    be_system_info(info, sizeof(info));
    int tok_ok = lm->tokenizer != NULL;
    if (o->json) {
        printf("{\"name\": ");
        json_string(stdout, c->name, strlen(c->name));
        printf(", \"file_size\": %lld, \"n_params\": %lld, \"vocab_size\": %d, \"hidden_size\": %d, "
               "\"intermediate_size\": %d, \"num_layers\": %d, \"num_heads\": %d, \"num_kv_heads\": %d, \"head_dim\": %d, "
               "\"context_length\": %d, \"rms_norm_eps\": %.9g, \"rope_theta\": %.9g, \"ffn_act\": \"%s\", "
               "\"sub_norms\": %s, \"tie_embeddings\": %s, \"packing\": \"%s\", \"embed_type\": \"%s\", \"tokenizer\": %s, "
               "\"kernels\": ",
               lm->file_size, (long long)be_model_n_params(&lm->model), c->vocab_size, c->hidden, c->ffn, c->n_layers,
               c->n_heads, c->n_kv_heads, c->head_dim, c->context_length, (double)c->rms_eps, (double)c->rope_theta,
               c->ffn_act == BE_ACT_SILU ? "silu" : "relu2", lm->model.layers[0].attn_sub_norm ? "true" : "false",
               lm->model.output ? "false" : "true", lm->model.packing_name, lm->model.embed_type_name,
               tok_ok ? "true" : "false");
        json_string(stdout, lm->kernels->name, strlen(lm->kernels->name));
        printf(", \"system_info\": ");
        json_string(stdout, info, strlen(info));
        printf("}\n");
    } else {
        printf("model: %s (%s)\n", c->name, lm->path);
        printf("  file size %.2f MiB, %lld parameters\n", lm->file_size / 1048576.0, (long long)be_model_n_params(&lm->model));
        printf("  vocab %d, hidden %d, ffn %d (%s), layers %d, heads %d (kv %d, head_dim %d), context %d\n", c->vocab_size,
               c->hidden, c->ffn, c->ffn_act == BE_ACT_SILU ? "silu" : "relu2", c->n_layers, c->n_heads, c->n_kv_heads,
               c->head_dim, c->context_length);
        printf("  rms_norm_eps %g, rope_theta %g, sub_norms %s, tied embeddings %s\n", (double)c->rms_eps,
               (double)c->rope_theta, lm->model.layers[0].attn_sub_norm ? "yes" : "no", lm->model.output ? "no" : "yes");
        printf("  packing %s, embeddings %s, tokenizer %s\n", lm->model.packing_name, lm->model.embed_type_name,
               tok_ok ? "yes" : lm->tokenizer_error);
        printf("  kernels %s\n", lm->kernels->name);
    }
    fprintf(stderr, "system_info: kernels = %s | %s\n", lm->kernels->name, info);
    return 0;
}

/* `bitedge-run check`: the CPU check alone, for a runtime deployed without a model (bitedge deploy --host BOARD).
 * A CPU that lacks the build's instruction sets never gets here: cpu_features.c refused it before main(). */
static int cmd_check(int argc, char **argv) {
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else be_die("check: unknown option '%s' (check takes only --json)", argv[i]);
    }
    char cpu[128], info[512];
    be_cpu_name(cpu, sizeof(cpu));
    be_system_info(info, sizeof(info));
    const be_kernels *k = pick_kernels();
#ifdef BITEDGE_TARGET
    const char *target = BITEDGE_TARGET;
#else
    const char *target = "";
#endif
    if (json) {
        printf("{\"ok\": true, \"target\": ");
        json_string(stdout, target, strlen(target));
        printf(", \"cpu\": ");
        json_string(stdout, cpu, strlen(cpu));
        printf(", \"kernels\": ");
        json_string(stdout, k->name, strlen(k->name));
        printf(", \"system_info\": ");
        json_string(stdout, info, strlen(info));
        printf("}\n");
    } else {
        printf("ok: this CPU (%s) runs this build%s%s; kernels %s\n", cpu, *target ? " for " : "", target, k->name);
    }
    return 0;
}

/* ----------------------------------------------------------------------------------------------------------
 * main */

#ifndef BITEDGE_NO_MAIN
int main(int argc, char **argv) {
    char err[1024];
    /* cpu_features.c's constructor refuses a build for an ISA this CPU lacks before main() (never SIGILL); this
     * repeats it for a link that drops constructors */
    if (be_cpu_check_build(err, sizeof(err)) != 0) {
        fprintf(stderr, "bitedge-run: error: %s\n", err);
        return EXIT_CPU_MISMATCH;
    }
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_BAD_INPUT : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return be_serve_main(argc, argv);  /* its own options: server.c */
    if (!strcmp(cmd, "check")) return cmd_check(argc, argv);
    int (*run)(loaded_model *, const options *) = NULL;
    if (!strcmp(cmd, "generate")) run = cmd_generate;
    else if (!strcmp(cmd, "bench")) run = cmd_bench;
    else if (!strcmp(cmd, "perplexity")) run = cmd_perplexity;
    else if (!strcmp(cmd, "info")) run = cmd_info;
    else be_die("unknown command '%s' (commands: generate, bench, perplexity, info, serve, check)", cmd);
    options o;
    parse_options(argc, argv, &o);
    loaded_model lm;
    load(&lm, o.model);
    int rc = run(&lm, &o);
    unload(&lm);
    return rc;
}
#endif
