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
 * kernel table (tests compare them).
 *
 * This file: what the commands share (time, small parsers, JSON output, the loaded model), the options, the help,
 * info, and the dispatch; one file per other command (main_generate.c, main_bench.c, main_perplexity.c), all
 * through main_impl.h. */
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
#include "gguf.h"
#include "json.h"  /* json_utf8_sequence: one UTF-8 validator for the runtime */
#include "kernels.h"
#include "model.h"
#include "run_errors.h"
#include "server.h"
#include "tokenizer.h"

#include "main_impl.h"


/* ----------------------------------------------------------------------------------------------------------
 * errors, time, small parsers */

double now_ms(void) {
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
long peak_rss_bytes(void) {
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
int parse_int_list(const char *opt, const char *s, int32_t *out, int max_out, long lo, long hi) {
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

char *read_file(const char *path, size_t *len) {
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

void json_string(FILE *f, const char *s, size_t len) {
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

void json_float(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

void json_int_array(FILE *f, const int32_t *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", (int)v[i]);
    fputc(']', f);
}

/* Replace bytes that are not valid UTF-8 with U+FFFD so the JSON stays valid (a token may end mid-character). */
char *utf8_sanitize(const char *s, size_t len, size_t *out_len) {
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

void build_loaded_model(loaded_model *lm, const char *path) {
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

void free_loaded_model(loaded_model *lm) {
    if (lm->tokenizer) free_tokenizer(lm->tokenizer);
    free_model(&lm->model);
    gguf_close(lm->gguf);
}

be_tokenizer *need_tokenizer(loaded_model *lm, const char *why) {
    if (!lm->tokenizer)
        be_die("%s needs the model's tokenizer, which cannot be used: %s", why,
            lm->tokenizer_error[0] ? lm->tokenizer_error : "the file has none");
    return lm->tokenizer;
}

void print_system_info(const loaded_model *lm, int n_threads) {
    char info[512];
    be_system_info(info, sizeof(info));
    fprintf(stderr, "system_info: n_threads = %d | kernels = %s | %s\n", n_threads, lm->kernels->name, info);
}

void print_eval_line(const char *what, double ms, int n, const char *unit) {
    fprintf(stderr, "%s = %10.2f ms / %5d %s (%8.2f ms per token, %8.2f tokens per second)\n", what, ms, n, unit,
            n > 0 ? ms / n : 0.0, ms > 0 ? 1e3 * n / ms : 0.0);
}

/* ----------------------------------------------------------------------------------------------------------
 * option parsing shared by the commands */

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
          "environment: BITEDGE_KERNELS=scalar|avx2|avx-vnni|avx512-vnni|neon|neon-dotprod|neon-i8mm forces a kernel table\n",
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

int single_thread_count(const options *o) {
    int32_t t[1];
    parse_int_list("-t", o->threads_list, t, 1, 1, 1024);
    return t[0];
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
    build_loaded_model(&lm, o.model);
    int rc = run(&lm, &o);
    free_loaded_model(&lm);
    return rc;
}
#endif
