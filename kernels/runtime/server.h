/* server.h: bitedge-run serve, the OpenAI-compatible HTTP server (internal interface of server.c, serve_gen.c).
 *
 * Threads: the main thread accepts; each connection gets a detached thread (at most max_conns at once, beyond
 * that an immediate 503) that reads and checks the request under a deadline, then, for a completion, waits for
 * a free slot (at most `queue` waiters, beyond that 503) and generates in it. A slot is a be_state: its own KV
 * cache. All forward passes share one thread pool, so they take turns through a FIFO ticket lock (one prompt
 * chunk or one decode step per turn): busy slots advance round-robin, one step at a time. (Running the decode
 * steps of all busy slots as one batched gemm is not done yet: forward.c has no multi-sequence batch.) */
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

typedef struct {
    be_state state;
    int busy;
} serve_slot;

typedef struct {
    /* options */
    const char *model_path, *host, *api_key;
    int port, n_threads, n_slots, ctx, queue, batch;
    double request_timeout_s, send_timeout_s;
    /* the model, read-only once loaded */
    gguf_file *gguf;
    be_model model;
    be_tokenizer *tok;
    const be_kernels *kernels;
    char model_id[160];
    be_pool *pool;
    /* shared state, under mutex */
    pthread_mutex_t mutex;
    pthread_cond_t slot_freed;   /* a slot became free */
    pthread_cond_t turn;         /* serving advanced */
    serve_slot *slots;           /* [n_slots] */
    int n_busy, n_waiting, n_conns, max_conns;
    unsigned long next_ticket, serving;
    unsigned long n_requests, n_completed, n_cancelled, n_rejected, next_id;
} serve_ctx;

typedef struct {
    serve_ctx *s;
    int fd;
} serve_conn;

/* serve_gen.c: answers a parsed completion request on conn (status line included); returns 0, or -1 when the
 * client went away. */
int serve_completion(serve_conn *c, api_request *r);

/* server.c helpers used by serve_gen.c */
int serve_error(serve_conn *c, int status, const char *message, const char *type, const char *param, const char *code);
int serve_json(serve_conn *c, int status, jbuf *body);
serve_slot *serve_acquire_slot(serve_conn *c, int *status);  /* NULL: *status 503 (queue full) or 0 (client gone) */
void serve_release_slot(serve_ctx *s, serve_slot *slot, int cancelled);
void serve_turn_begin(serve_ctx *s);  /* FIFO: one forward step per turn */
void serve_turn_end(serve_ctx *s);

/* main.c dispatches `bitedge-run serve ...` here; returns the exit status. */
int be_serve_main(int argc, char **argv);

/* webui.c: the chat page served at GET / */
extern const char be_webui_html[];

#endif
