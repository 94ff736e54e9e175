/* http.h: the HTTP/1.1 subset bitedge-run serve speaks, for untrusted clients.
 *
 * Requests: a request line and headers (CRLF or bare LF line ends) within a size limit, then a body of exactly
 * Content-Length bytes. No chunked request bodies (411/501), no pipelining, no keep-alive: every answer
 * carries "Connection: close" and the connection ends with it (a streamed answer is close-delimited).
 * The head parser is a pure function over a buffer (http_parse_head), so it can be fuzzed alone. */
#ifndef BITEDGE_HTTP_H
#define BITEDGE_HTTP_H

#include <stddef.h>

#define HTTP_MAX_PATH 256
#define HTTP_MAX_FIELD 512  /* longest value kept of the headers we read; others are only size-checked */

typedef struct {
    char method[16];
    char path[HTTP_MAX_PATH];     /* without the query string */
    char content_type[HTTP_MAX_FIELD];
    char authorization[HTTP_MAX_FIELD];
    long long content_length;     /* -1 if absent */
    int chunked;                  /* Transfer-Encoding present */
    int expect_continue;          /* "Expect: 100-continue" */
    size_t head_len;              /* bytes of the request line and headers, including the blank line */
} http_request;

/* Parses the head in buf[0..len). Returns 1 when complete (req filled), 0 when more bytes are needed, or the
 * HTTP status of the refusal (400 malformed, 431 too large, 501 unsupported, 505 version) with a reason in
 * err. max_head bounds the head, max_body the Content-Length (413 beyond). */
int http_parse_head(const char *buf, size_t len, size_t max_head, long long max_body, http_request *req, char *err,
                    size_t errlen);

/* Reads a whole request (head and body) from fd within deadline_ms (an absolute CLOCK_MONOTONIC time) into a
 * malloc'd buffer *buf; the body is (*buf)[req->head_len .. + content_length), NUL-terminated. Returns 1 on
 * success, 0 when the peer closed before sending anything, a status (400, 408 timeout, 411, 413, 431, 501, 505)
 * with a reason in err, or -1 on a socket error. */
int http_read_request(int fd, double deadline_ms, size_t max_head, long long max_body, http_request *req, char **buf,
                      char *err, size_t errlen);

double http_now_ms(void);

/* Writes all n bytes (the socket has a send timeout); -1 when the peer is gone or too slow. Never raises SIGPIPE. */
int http_send_all(int fd, const char *data, size_t n);
/* A complete answer: status line, Content-Type, Content-Length, extra header lines (each ending in CRLF, or
 * NULL), the body; then the caller closes. */
int http_send_response(int fd, int status, const char *content_type, const char *extra_headers, const char *body,
                       size_t body_len);
const char *http_reason(int status);

/* Half-close, drain what the client still sends (at most linger_ms; 0: only what has arrived), then close. */
void http_close(int fd, double linger_ms);

/* 1 when the peer has closed its side (or reset) without blocking, else 0. */
int http_peer_closed(int fd);

#endif
