/* main_impl.h: what bitedge-run's command files share (private to main*.c).
 *
 * main.c holds the shared helpers, the options, the help, info and the dispatch; main_generate.c, main_bench.c
 * and main_perplexity.c one command each. A command dies on bad input (be_die: one line, exit status 2). */
#ifndef BITEDGE_MAIN_IMPL_H
#define BITEDGE_MAIN_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gguf.h"
#include "kernels.h"
#include "model.h"
#include "tokenizer.h"

#define EXIT_CPU_MISMATCH 3
#define DEFAULT_BATCH 32
#define MAX_THREAD_LIST 16
#ifndef BITEDGE_BUILD_COMMIT
#define BITEDGE_BUILD_COMMIT "unknown"  /* the build may pass -DBITEDGE_BUILD_COMMIT=\"<git sha>\" */
#endif

/* the loaded model and the runtime around it */
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

/* Opens, validates and maps the file, builds its tokenizer (when it has a usable one) and picks the kernel table
 * (BITEDGE_KERNELS, else the CPU's best); dies with one line on failure. */
void build_loaded_model(loaded_model *lm, const char *path);
void free_loaded_model(loaded_model *lm);
be_tokenizer *need_tokenizer(loaded_model *lm, const char *why);  /* dies when the file has no usable one */
void print_system_info(const loaded_model *lm, int n_threads);
void print_eval_line(const char *what, double ms, int n, const char *unit);

/* the options of generate, bench, perplexity and info (parse_options in main.c) */
typedef struct {
    const char *model, *prompt, *tokens, *text_file, *dump_logits, *dump_activations, *threads_list;
    int n, n_prompt, reps, ctx, batch, top_k, chat, json, ignore_eos, n_set, p_set;
    double temp, top_p;
    uint64_t seed;
} options;
int single_thread_count(const options *o);  /* -t as one thread count */

/* time, memory, small parsers */
double now_ms(void);
long peak_rss_bytes(void);
int parse_int_list(const char *opt, const char *s, int32_t *out, int max_out, long lo, long hi);
char *read_file(const char *path, size_t *len);  /* the whole file, NUL-terminated; dies on failure */

/* JSON output */
void json_string(FILE *f, const char *s, size_t len);
void json_float(FILE *f, double v);
void json_int_array(FILE *f, const int32_t *v, int n);
char *utf8_sanitize(const char *s, size_t len, size_t *out_len);  /* malloc'd, invalid bytes as U+FFFD */

/* the commands: 0, or die */
int cmd_generate(loaded_model *lm, const options *o);    /* main_generate.c */
int cmd_bench(loaded_model *lm, const options *o);       /* main_bench.c */
int cmd_perplexity(loaded_model *lm, const options *o);  /* main_perplexity.c */

#endif
