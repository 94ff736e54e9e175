/* server.h: bitedge-run serve, the OpenAI-compatible HTTP server (internal interface of server.c, serve_slots.c,
 * serve_gen.c).
 *
 * Threads: the main thread accepts; each connection gets a detached thread (at most max_conns at once, beyond
 * that an immediate 503) that reads and checks the request under a deadline, then, for a completion, waits for
 * a free slot (at most `queue` waiters, beyond that 503) and generates in it. A slot is a be_state: its own KV
 * cache. All forward passes share one thread pool, so one runs at a time: a connection thread asks for a step
 * (serve_prefill: one prompt chunk of its slot; serve_decode: one token) and waits; whichever waiting thread finds
 * the pool idle runs the oldest request, and if that is a decode step, every slot's pending decode step with it
 * (up to --decode-batch) as one be_forward_seqs: continuous batching, one pass over the weights per step for all
 * decoding slots. Before such a batch it waits up to SERVE_GATHER_MS for slots that are decoding but still
 * sampling their last token, so the batch stays whole. --decode-batch 1: one step per turn, FIFO (the old turns). */
#ifndef BITEDGE_SERVER_H
#define BITEDGE_SERVER_H

#include <pthread.h>
#include <stdint.h>

#include "api.h"
#include "forward.h"
#include "gguf.h"
#include "http.h"
#include "json.h"
#include "kernels.h"
#include "model.h"
#include "threadpool.h"
#include "tokenizer.h"

/* limits on what a client may send (docs/serve.md) */
#define SERVE_MAX_HEAD 16384          /* request line + headers */
#define SERVE_MAX_BODY (4LL << 20)    /* request body */
#define SERVE_MAX_DEPTH 32            /* JSON nesting */
#define SERVE_MAX_STRING (1u << 20)   /* one decoded JSON string */
#define SERVE_MAX_NODES 100000        /* JSON values in a body */
#define SERVE_MAX_MESSAGES 256
#define SERVE_EXTRA_CONNS 8           /* connections beyond slots + queue (health, models, the page, errors) */
#define SERVE_GATHER_MS 5             /* how long a decode batch waits for decoding slots that have not asked yet */

enum { SERVE_NO_STEP = 0, SERVE_PREFILL = 1, SERVE_DECODE = 2 };

typedef struct {
    be_state state;
    int busy;
    /* the step this slot's thread waits for (under the mutex; the slot's state is the runner's until it is done) */
    int want;                /* SERVE_NO_STEP, SERVE_PREFILL or SERVE_DECODE */
    const int32_t *tokens;   /* [n_tokens] at positions pos.. */
    int n_tokens, pos;
    unsigned long ticket;    /* FIFO order of requests */
    int decoding;            /* past its prompt: a decode batch waits a little for its next token */
    int late;                /* missed the last gather: not waited for until it asks again */
} serve_slot;

typedef struct {
    /* options */
    const char *model_path, *host, *api_key;
    int port, n_threads, n_slots, ctx, queue, batch, decode_batch;
    double request_timeout_s, send_timeout_s;
    /* the model, read-only once loaded */
    gguf_file *gguf;
    be_model model;
    be_tokenizer *tok;
    const be_kernels *kernels;
    char model_id[160];
    be_pool *pool;
    be_state batch_state;        /* activations of a decode batch (no KV cache); unused with --decode-batch 1 */
    /* shared state, under mutex */
    pthread_mutex_t mutex;
    pthread_cond_t slot_freed;   /* a slot became free */
    pthread_cond_t step;         /* a step was asked for or finished */
    serve_slot *slots;           /* [n_slots] */
    int n_busy, n_waiting, n_conns, max_conns;
    int running;                 /* a forward pass is running (or gathering its batch) */
    unsigned long next_ticket;
    unsigned long n_requests, n_completed, n_cancelled, n_rejected, next_id;
    unsigned long n_prefill_chunks, n_decode_steps, n_decoded, largest_batch;
} serve_ctx;

typedef struct {
    serve_ctx *s;
    int fd;
} serve_conn;

/* serve_gen.c: answers a parsed completion request on conn (status line included); returns 0, or -1 when the
 * client went away. */
int serve_completion(serve_conn *c, api_request *r);

/* serve_slots.c (slots and steps) and server.c (answers) helpers used by serve_gen.c */
int serve_error(serve_conn *c, int status, const char *message, const char *type, const char *param, const char *code);
int serve_json(serve_conn *c, int status, jbuf *body);
serve_slot *serve_acquire_slot(serve_conn *c, int *status);  /* NULL: *status 503 (queue full) or 0 (client gone) */
void serve_release_slot(serve_ctx *s, serve_slot *slot, int cancelled);
/* One forward step of the slot, run by this thread or batched by another; returns when the slot's logits are ready. */
void serve_prefill(serve_ctx *s, serve_slot *slot, const int32_t *tokens, int n, int pos0);
void serve_decode(serve_ctx *s, serve_slot *slot, const int32_t *token, int pos);

/* main.c dispatches `bitedge-run serve ...` here; returns the exit status. */
int be_serve_main(int argc, char **argv);

/* webui.c: the chat page served at GET / */
extern const char be_webui_html[];

#endif
