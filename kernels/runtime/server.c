/* bitedge-run serve: options, model, sockets, connection threads, routes, slots (see server.h, docs/serve.md).
 *
 *   bitedge-run serve -m FILE [--host 127.0.0.1] [--port 8080] [-t THREADS] [--slots 4] [--queue 16] [-c CTX]
 *                     [--api-key KEY] [--timeout 10] [-b BATCH] [--decode-batch SLOTS]
 * The API key may instead come from the environment variable BITEDGE_API_KEY.
 *
 * Bad options or an unloadable model: one line "bitedge-run: error: ..." and exit status 2, as the other
 * commands. Once listening, the server prints "listening on http://HOST:PORT" on stderr and runs until killed. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "server.h"

#include "cpu_features.h"
#include "run_errors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void parse_serve_options(int argc, char **argv, serve_ctx *s) {
    s->host = "127.0.0.1";
    s->port = 8080;
    s->n_threads = 1;
    s->n_slots = 4;
    s->queue = 16;
    s->batch = 32;  /* main.c's DEFAULT_BATCH: the same prompt chunks, so the same logits as generate */
    s->request_timeout_s = 10;
    s->send_timeout_s = 30;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define VALUE() (i + 1 < argc ? argv[++i] : (be_die("option %s needs a value", a), (char *)NULL))
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) s->model_path = VALUE();
        else if (!strcmp(a, "--host")) s->host = VALUE();
        else if (!strcmp(a, "--port")) s->port = (int)be_parse_long(a, VALUE(), 0, 65535);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) s->n_threads = (int)be_parse_long(a, VALUE(), 1, 1024);
        else if (!strcmp(a, "--slots") || !strcmp(a, "-np")) s->n_slots = (int)be_parse_long(a, VALUE(), 1, 256);
        else if (!strcmp(a, "--queue")) s->queue = (int)be_parse_long(a, VALUE(), 0, 4096);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) s->ctx = (int)be_parse_long(a, VALUE(), 2, 1 << 24);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) s->batch = (int)be_parse_long(a, VALUE(), 1, 4096);
        else if (!strcmp(a, "--decode-batch")) s->decode_batch = (int)be_parse_long(a, VALUE(), 1, 256);
        else if (!strcmp(a, "--timeout")) s->request_timeout_s = (double)be_parse_long(a, VALUE(), 1, 3600);
        else if (!strcmp(a, "--api-key")) s->api_key = VALUE();
        else be_die("unknown option '%s' for serve (see bitedge-run --help)", a);
#undef VALUE
    }
    if (!s->model_path) be_die("no model given: use -m FILE.gguf");
    /* the key from the environment keeps it out of the process list (ps shows argv to every user) */
    const char *env_key = getenv("BITEDGE_API_KEY");
    if (!s->api_key && env_key && *env_key) s->api_key = env_key;
    if (s->api_key && !*s->api_key) be_die("--api-key must not be empty");
    s->max_conns = s->n_slots + s->queue + SERVE_EXTRA_CONNS;
    /* more than the slots could never fill */
    if (!s->decode_batch || s->decode_batch > s->n_slots) s->decode_batch = s->n_slots;
}

static void load_model(serve_ctx *s) {
    char err[512];
    struct stat st;
    if (stat(s->model_path, &st) != 0) be_die("cannot open model %s: %s", s->model_path, strerror(errno));
    if (!(s->gguf = gguf_open(s->model_path, err, sizeof(err)))) be_die("%s: %s", s->model_path, err);
    if (build_model(s->gguf, &s->model, err, sizeof(err)) != 0) be_die("%s: %s", s->model_path, err);
    if (!(s->tok = build_tokenizer(&s->model.vocab, err, sizeof(err))))
        be_die("serve needs the model's tokenizer, which cannot be used: %s", err);
    const char *forced = getenv("BITEDGE_KERNELS");
    s->kernels = forced && *forced ? be_kernels_by_name(forced) : be_kernels_select();
    if (!s->kernels) be_die("BITEDGE_KERNELS=%s: no such kernel table in this build, or this CPU cannot run it", forced);
    const char *base = strrchr(s->model_path, '/');
    snprintf(s->model_id, sizeof(s->model_id), "%s", base ? base + 1 : s->model_path);
    int ctx = s->ctx ? s->ctx : s->model.config.context_length;
    if (ctx > s->model.config.context_length)
        be_die("-c %d exceeds the model's context of %d positions", ctx, s->model.config.context_length);
    s->ctx = ctx;
    s->slots = calloc((size_t)s->n_slots, sizeof(serve_slot));
    if (!s->slots) be_die("out of memory");
    for (int i = 0; i < s->n_slots; i++)
        if (build_state(&s->slots[i].state, &s->model, ctx, s->batch, s->n_threads, err, sizeof(err)) != 0)
            be_die("slot %d: %s", i, err);
    if (s->decode_batch > 1 &&
        build_batch_state(&s->batch_state, &s->model, ctx, s->decode_batch, s->n_threads, err, sizeof(err)) != 0)
        be_die("decode batch: %s", err);
    if (!(s->pool = be_pool_create(s->n_threads))) be_die("cannot start %d threads", s->n_threads);
}

/* --host is a numeric IPv4 or IPv6 address ("localhost" means 127.0.0.1): no name lookup, so a static glibc
 * build needs no NSS libraries at run time. */
static int open_listener(serve_ctx *s) {
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof(addr));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
    const char *host = strcmp(s->host, "localhost") ? s->host : "127.0.0.1";
    socklen_t alen = 0;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)s->port);
        alen = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)s->port);
        alen = sizeof(*v6);
    } else {
        be_die("--host %s: not an IP address (use e.g. 127.0.0.1, 0.0.0.0, ::1 or ::)", s->host);
    }
    int fd = socket(addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0) be_die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, alen) != 0) be_die("cannot listen on %s:%d: %s", s->host, s->port, strerror(errno));
    if (listen(fd, 64) != 0) be_die("listen: %s", strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&addr, &alen) == 0)  /* --port 0: the kernel picked one; say which */
        s->port = ntohs(addr.ss_family == AF_INET6 ? v6->sin6_port : v4->sin_port);
    return fd;
}

/* ----------------------------------------------------------------------------------------------------------
 * answers */

int serve_json(serve_conn *c, int status, jbuf *body) {
    int rc = body->failed ? http_send_response(c->fd, 500, "application/json", NULL, "{}", 2)
                          : http_send_response(c->fd, status, "application/json", NULL, body->data, body->len);
    jb_free(body);
    return rc;
}

int serve_error(serve_conn *c, int status, const char *message, const char *type, const char *param, const char *code) {
    jbuf b = {0};
    /* 501 / 505 refuse what the client sent, so they are request errors too; 500 and 503 are ours */
    if (!type) type = status == 401 ? "authentication_error"
                      : status == 500 || status == 503 ? "server_error" : "invalid_request_error";
    api_error_body(&b, message, type, param, code);
    const char *extra = status == 401 ? "WWW-Authenticate: Bearer\r\n" : status == 503 ? "Retry-After: 1\r\n" : NULL;
    int rc = b.failed ? -1 : http_send_response(c->fd, status, "application/json", extra, b.data, b.len);
    jb_free(&b);
    return rc;
}

/* Constant time in the contents: every byte of the longer string is looked at, whatever matches. */
static int key_matches(const char *given, const char *key) {
    char want[HTTP_MAX_FIELD];
    int n = snprintf(want, sizeof(want), "Bearer %s", key);
    size_t gl = strlen(given), wl = n < 0 ? 0 : (size_t)n, len = gl > wl ? gl : wl;
    unsigned diff = gl != wl;
    for (size_t i = 0; i < len; i++) diff |= (unsigned)(i < gl ? given[i] : 0) ^ (unsigned)(i < wl ? want[i] : 0);
    return diff == 0;
}

static void answer_health(serve_conn *c) {
    serve_ctx *s = c->s;
    jbuf b = {0};
    pthread_mutex_lock(&s->mutex);
    jb_printf(&b, "{\"status\": \"ok\", \"slots_idle\": %d, \"slots_busy\": %d, \"queued\": %d, \"requests\": %lu, "
                  "\"completed\": %lu, \"cancelled\": %lu, \"rejected\": %lu, \"decode_batch\": %d, "
                  "\"prefill_chunks\": %lu, \"decode_steps\": %lu, \"tokens_decoded\": %lu, \"largest_batch\": %lu}\n",
              s->n_slots - s->n_busy, s->n_busy, s->n_waiting, s->n_requests, s->n_completed, s->n_cancelled,
              s->n_rejected, s->decode_batch, s->n_prefill_chunks, s->n_decode_steps, s->n_decoded, s->largest_batch);
    pthread_mutex_unlock(&s->mutex);
    serve_json(c, 200, &b);
}

static void answer_models(serve_conn *c) {
    serve_ctx *s = c->s;
    jbuf b = {0};
    jb_puts(&b, "{\"object\": \"list\", \"data\": [{\"id\": ");
    jb_string(&b, s->model_id, strlen(s->model_id));
    jb_printf(&b, ", \"object\": \"model\", \"created\": 0, \"owned_by\": \"bitedge\", \"meta\": {\"n_ctx\": %d, "
                  "\"n_vocab\": %d, \"n_params\": %lld, \"slots\": %d}}]}\n",
              s->ctx, s->model.config.vocab_size, (long long)be_model_n_params(&s->model), s->n_slots);
    serve_json(c, 200, &b);
}

/* POST /v1/completions and /v1/chat/completions: content type, JSON, fields, then generation. */
static void answer_completion(serve_conn *c, const http_request *req, const char *body, int chat) {
    const char *ct = req->content_type;
    if (strncasecmp(ct, "application/json", 16) != 0 || (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
        serve_error(c, 415, "Content-Type must be application/json", NULL, NULL, NULL);
        return;
    }
    char err[256];
    json_limits lim = {SERVE_MAX_DEPTH, SERVE_MAX_STRING, SERVE_MAX_NODES};
    json_value *root;
    json_doc *doc = json_parse(body, (size_t)req->content_length, &lim, &root, err, sizeof(err));
    if (!doc) {
        serve_error(c, 400, err, NULL, NULL, NULL);
        return;
    }
    api_limits alim = {SERVE_MAX_MESSAGES, SERVE_MAX_STRING};
    api_request r;
    const char *param;
    if (api_parse_request(root, chat, &alim, &r, err, sizeof(err), &param) != 0) serve_error(c, 400, err, NULL, param, NULL);
    else serve_completion(c, &r);
    api_free_request(&r);
    json_free(doc);
}

static void route(serve_conn *c, const http_request *req, const char *body) {
    serve_ctx *s = c->s;
    const char *p = req->path;
    int get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
    int is_api = !strncmp(p, "/v1/", 4);
    if (is_api && s->api_key && !key_matches(req->authorization, s->api_key)) {
        serve_error(c, 401, req->authorization[0] ? "invalid API key" : "missing API key: send Authorization: Bearer KEY",
                    NULL, NULL, "invalid_api_key");
        return;
    }
    if (!strcmp(p, "/") || !strcmp(p, "/index.html")) {
        if (get) http_send_response(c->fd, 200, "text/html; charset=utf-8",
                                    "Content-Security-Policy: default-src 'self'; style-src 'unsafe-inline'; "
                                    "script-src 'unsafe-inline'\r\n", be_webui_html, strlen(be_webui_html));
        else serve_error(c, 405, "use GET", NULL, NULL, NULL);
    } else if (!strcmp(p, "/health")) {
        if (get) answer_health(c);
        else serve_error(c, 405, "use GET", NULL, NULL, NULL);
    } else if (!strcmp(p, "/v1/models")) {
        if (get) answer_models(c);
        else serve_error(c, 405, "use GET", NULL, NULL, NULL);
    } else if (!strcmp(p, "/v1/completions") || !strcmp(p, "/v1/chat/completions")) {
        if (post) answer_completion(c, req, body, p[4] == 'c' && p[5] == 'h');
        else serve_error(c, 405, "use POST", NULL, NULL, NULL);
    } else {
        serve_error(c, 404, "no such route", NULL, NULL, NULL);
    }
}

static void *connection_main(void *arg) {
    serve_conn *c = arg;
    serve_ctx *s = c->s;
    struct timeval tv = {(time_t)s->send_timeout_s, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  /* streamed chunks go out at once */
    http_request req;
    char *buf = NULL, err[256];
    double deadline = http_now_ms() + 1e3 * s->request_timeout_s;
    int rc = http_read_request(c->fd, deadline, SERVE_MAX_HEAD, SERVE_MAX_BODY, &req, &buf, err, sizeof(err));
    if (rc == 1) {
        pthread_mutex_lock(&s->mutex);
        s->n_requests++;
        pthread_mutex_unlock(&s->mutex);
        route(c, &req, buf + req.head_len);
    } else if (rc > 1) {
        serve_error(c, rc, err, NULL, NULL, NULL);
    }
    free(buf);
    http_close(c->fd, 2000);
    pthread_mutex_lock(&s->mutex);
    s->n_conns--;
    pthread_mutex_unlock(&s->mutex);
    free(c);
    return NULL;
}

static void accept_loop(serve_ctx *s, int lfd) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* the forward pass runs on these threads (pool thread 0): give them what a main thread has, not macOS's 512 KiB */
    pthread_attr_setstacksize(&attr, 8u << 20);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED) {  /* EMFILE and the like: back off */
                struct timespec pause = {0, 10000000L};
                nanosleep(&pause, NULL);
            }
            continue;
        }
        pthread_mutex_lock(&s->mutex);
        int full = s->n_conns >= s->max_conns;
        if (!full) s->n_conns++;
        else s->n_rejected++;
        pthread_mutex_unlock(&s->mutex);
        serve_conn *c = full ? NULL : malloc(sizeof(serve_conn));
        if (c) {
            c->s = s;
            c->fd = fd;
            pthread_t t;
            if (pthread_create(&t, &attr, connection_main, c) == 0) continue;
            free(c);
            pthread_mutex_lock(&s->mutex);
            s->n_conns--;
            pthread_mutex_unlock(&s->mutex);
        }
        /* too many connections: a short answer without reading the request (the send cannot block long) */
        struct timeval tv = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        serve_conn tmp = {s, fd};
        serve_error(&tmp, 503, "server busy: too many connections", NULL, NULL, NULL);
        http_close(fd, 0);  /* no waiting here: this is the accepting thread */
    }
}

int be_serve_main(int argc, char **argv) {
    serve_ctx s;
    memset(&s, 0, sizeof(s));
    parse_serve_options(argc, argv, &s);
    load_model(&s);
    signal(SIGPIPE, SIG_IGN);  /* a client gone mid-answer is a failed send, not the end of the server */
    pthread_mutex_init(&s.mutex, NULL);
    pthread_cond_init(&s.slot_freed, NULL);
    pthread_cond_init(&s.step, NULL);
    int lfd = open_listener(&s);
    char info[512];
    be_system_info(info, sizeof(info));
    fprintf(stderr, "system_info: n_threads = %d | kernels = %s | %s\n", s.n_threads, s.kernels->name, info);
    fprintf(stderr, "model %s: context %d, %d slots, decode batch %d, queue %d%s\n", s.model_id, s.ctx, s.n_slots,
            s.decode_batch, s.queue, s.api_key ? ", API key required" : "");
    fprintf(stderr, "listening on http://%s%s%s:%d\n", strchr(s.host, ':') ? "[" : "", s.host,
            strchr(s.host, ':') ? "]" : "", s.port);
    fflush(stderr);
    accept_loop(&s, lfd);
    return 0;
}
