/* The HTTP/1.1 subset of bitedge-run serve (see http.h): head parser, request reader with a deadline, senders. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "http.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  /* macOS: the server ignores SIGPIPE instead */
#endif

double http_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ----------------------------------------------------------------------------------------------------------
 * head parser */

static int refuse(int status, char *err, size_t errlen, const char *why) {
    snprintf(err, errlen, "%s", why);
    return status;
}

/* Copies at most cap-1 bytes of [s, e) into out; returns -1 if it does not fit. */
static int copy_field(char *out, size_t cap, const char *s, const char *e) {
    size_t n = (size_t)(e - s);
    if (n >= cap) return -1;
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

/* Header lines: "Name: value" (optional whitespace around the value); names are tokens, values have no
 * control characters except tab. The headers we act on are copied, duplicates of them refused. */
static int parse_header(const char *s, const char *e, long long max_body, http_request *req, char *err, size_t errlen) {
    const char *colon = memchr(s, ':', (size_t)(e - s));
    if (!colon || colon == s) return refuse(400, err, errlen, "malformed header line");
    for (const char *p = s; p < colon; p++)
        if (*p <= ' ' || *p >= 127 || strchr("()<>@,;\\\"/[]?={}", *p)) return refuse(400, err, errlen, "bad header name");
    const char *v = colon + 1;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    const char *ve = e;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    for (const char *p = v; p < ve; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 127) return refuse(400, err, errlen, "control character in a header");
    size_t name_len = (size_t)(colon - s);
#define IS(name) (name_len == strlen(name) && !strncasecmp(s, name, name_len))
    if (IS("Content-Length")) {
        if (req->content_length >= 0) return refuse(400, err, errlen, "more than one Content-Length");
        if (v == ve) return refuse(400, err, errlen, "empty Content-Length");
        long long n = 0;
        for (const char *p = v; p < ve; p++) {
            if (*p < '0' || *p > '9') return refuse(400, err, errlen, "Content-Length is not a number");
            n = n * 10 + (*p - '0');
            if (n > max_body) return refuse(413, err, errlen, "request body too large");
        }
        req->content_length = n;
    } else if (IS("Content-Type")) {
        if (req->content_type[0]) return refuse(400, err, errlen, "more than one Content-Type");
        if (copy_field(req->content_type, sizeof(req->content_type), v, ve) != 0)
            return refuse(400, err, errlen, "Content-Type too long");
    } else if (IS("Authorization")) {
        if (req->authorization[0]) return refuse(400, err, errlen, "more than one Authorization header");
        if (copy_field(req->authorization, sizeof(req->authorization), v, ve) != 0)
            return refuse(400, err, errlen, "Authorization header too long");
    } else if (IS("Transfer-Encoding")) {
        req->chunked = 1;
    } else if (IS("Expect")) {
        if ((size_t)(ve - v) == 12 && !strncasecmp(v, "100-continue", 12)) req->expect_continue = 1;
        else return refuse(417, err, errlen, "unsupported Expect header");
    }
#undef IS
    return 0;
}

/* "METHOD SP target SP HTTP/1.x" */
static int parse_request_line(const char *s, const char *e, http_request *req, char *err, size_t errlen) {
    const char *sp1 = memchr(s, ' ', (size_t)(e - s));
    if (!sp1 || sp1 == s) return refuse(400, err, errlen, "malformed request line");
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(e - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1) return refuse(400, err, errlen, "malformed request line");
    for (const char *p = s; p < sp1; p++)
        if (*p < 'A' || *p > 'Z') return refuse(400, err, errlen, "malformed method");
    if (copy_field(req->method, sizeof(req->method), s, sp1) != 0) return refuse(501, err, errlen, "unknown method");
    const char *t = sp1 + 1, *q = memchr(t, '?', (size_t)(sp2 - t));
    const char *te = q ? q : sp2;
    if (*t != '/') return refuse(400, err, errlen, "the target must be a path");
    for (const char *p = t; p < sp2; p++)
        if (*p <= ' ' || *p >= 127) return refuse(400, err, errlen, "bad character in the target");
    if (copy_field(req->path, sizeof(req->path), t, te) != 0) return refuse(414, err, errlen, "URI too long");
    const char *v = sp2 + 1;  /* "HTTP/d.d" */
    if (e - v != 8 || strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
        return refuse(400, err, errlen, "malformed HTTP version");
    if (v[5] != '1' || v[7] > '1') return refuse(505, err, errlen, "HTTP version not supported");
    return 0;
}

int http_parse_head(const char *buf, size_t len, size_t max_head, long long max_body, http_request *req, char *err,
                    size_t errlen) {
    memset(req, 0, sizeof(*req));
    req->content_length = -1;
    size_t scan = len < max_head ? len : max_head;
    /* find the blank line ending the head: "\n\n" or "\n\r\n" */
    size_t end = 0;
    for (size_t i = 0; i < scan && !end; i++) {
        if (buf[i] == 0) return refuse(400, err, errlen, "NUL byte in the request head");
        if (buf[i] != '\n') continue;
        if (i + 1 < scan && buf[i + 1] == '\n') end = i + 2;
        else if (i + 2 < scan && buf[i + 1] == '\r' && buf[i + 2] == '\n') end = i + 3;
    }
    if (!end) return len >= max_head ? refuse(431, err, errlen, "request head too large") : 0;
    req->head_len = end;
    int line = 0;
    for (size_t pos = 0; pos < end;) {
        const char *s = buf + pos, *nl = memchr(s, '\n', end - pos);
        const char *e = nl > s && nl[-1] == '\r' ? nl - 1 : nl;
        pos = (size_t)(nl - buf) + 1;
        if (e == s) break;  /* the blank line */
        for (const char *p = s; p < e; p++)
            if (*p == '\r') return refuse(400, err, errlen, "bare CR in the request head");
        int rc = line++ == 0 ? parse_request_line(s, e, req, err, errlen)
                             : parse_header(s, e, max_body, req, err, errlen);
        if (rc) return rc;  /* a folded header line (leading space) fails as a bad header name */
    }
    if (line == 0) return refuse(400, err, errlen, "empty request");
    if (req->chunked) return refuse(501, err, errlen, "Transfer-Encoding is not supported: send Content-Length");
    return 1;
}

/* ----------------------------------------------------------------------------------------------------------
 * socket I/O */

/* Waits for fd to be readable until the deadline; 1 ready, 0 timed out, -1 error. */
static int wait_readable(int fd, double deadline_ms) {
    for (;;) {
        double left = deadline_ms - http_now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, left > 1e6 ? 1000000 : (int)left + 1);
        if (rc > 0) return 1;
        if (rc < 0 && errno != EINTR) return -1;
    }
}

int http_read_request(int fd, double deadline_ms, size_t max_head, long long max_body, http_request *req, char **out,
                      char *err, size_t errlen) {
    size_t cap = 4096, len = 0, want = 0;
    char *buf = malloc(cap + 1);
    if (!buf) return refuse(-1, err, errlen, "out of memory");
    int head_done = 0;
    for (;;) {
        if (!head_done) {
            int rc = http_parse_head(buf, len, max_head, max_body, req, err, errlen);
            if (rc > 1) return free(buf), rc;
            if (rc == 1) {
                head_done = 1;
                if (strcmp(req->method, "POST") == 0 && req->content_length < 0) {
                    free(buf);
                    return refuse(411, err, errlen, "POST needs a Content-Length");
                }
                want = req->head_len + (size_t)(req->content_length > 0 ? req->content_length : 0);
                if (req->expect_continue) {
                    const char *cont = "HTTP/1.1 100 Continue\r\n\r\n";
                    if (http_send_all(fd, cont, strlen(cont)) != 0) return free(buf), -1;
                }
            }
        }
        if (head_done && len >= want) break;
        size_t need = head_done ? want : max_head;
        if (need > cap) {
            size_t ncap = cap;
            while (ncap < need) ncap *= 2;
            char *grown = realloc(buf, ncap + 1);
            if (!grown) return free(buf), refuse(-1, err, errlen, "out of memory");
            buf = grown;
            cap = ncap;
        }
        int ready = wait_readable(fd, deadline_ms);
        if (ready <= 0) {
            free(buf);
            return ready == 0 ? (len ? refuse(408, err, errlen, "request not received in time") : 0) : -1;
        }
        /* only up to the end of what we expect: bytes after the body (pipelining) are not read */
        ssize_t n = recv(fd, buf + len, (head_done ? want : cap) - len, 0);
        if (n == 0) {
            free(buf);
            return len ? refuse(400, err, errlen, "connection closed in the middle of the request") : 0;
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            return free(buf), -1;
        }
        len += (size_t)n;
    }
    buf[want] = 0;
    *out = buf;
    return 1;
}

int http_send_all(int fd, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;  /* EAGAIN here means the send timeout expired: a client that does not read */
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

const char *http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

int http_send_response(int fd, int status, const char *content_type, const char *extra_headers, const char *body,
                       size_t body_len) {
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s\r\n",
                     status, http_reason(status), content_type, body_len, extra_headers ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof(head)) return -1;
    if (http_send_all(fd, head, (size_t)n) != 0) return -1;
    return http_send_all(fd, body, body_len);
}

int http_peer_closed(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return 1;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Closing a socket that still has unread request bytes makes the kernel send a reset, which can destroy the
 * answer before the client reads it (a 413 / 431 / 408 / 503 sent without reading the whole request). So: end
 * our side, then read and drop what the client still sends until it closes, for at most linger_ms and 1 MiB. */
void http_close(int fd, double linger_ms) {
    shutdown(fd, SHUT_WR);
    double deadline = http_now_ms() + linger_ms;
    char junk[4096];
    size_t drained = 0;
    while (drained < (1u << 20)) {
        ssize_t n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (n == 0) break;  /* the client closed too */
        if (n > 0) {
            drained += (size_t)n;
            continue;
        }
        if (errno == EINTR) continue;
        if ((errno != EAGAIN && errno != EWOULDBLOCK) || wait_readable(fd, deadline) <= 0) break;
    }
    close(fd);
}
