/* OpenAI-shaped request validation and error bodies (see api.h). */
#include "api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(char *err, size_t errlen, const char **param, const char *field, const char *msg) {
    snprintf(err, errlen, "'%s': %s", field, msg);
    *param = field;
    return -1;
}

/* A number field in [lo, hi] (null or absent: untouched). integer: must be whole. */
static int get_number(const json_value *root, const char *field, double lo, double hi, int integer, double *out,
                      char *err, size_t errlen, const char **param) {
    const json_value *v = json_get(root, field);
    if (!v || v->type == JSON_NULL) return 0;
    char msg[128];
    if (v->type != JSON_NUMBER) return bad(err, errlen, param, field, "must be a number");
    if (!(v->number >= lo && v->number <= hi) || (integer && v->number != floor(v->number))) {
        snprintf(msg, sizeof(msg), "must be %s in [%g, %g]", integer ? "an integer" : "a number", lo, hi);
        return bad(err, errlen, param, field, msg);
    }
    *out = v->number;
    return 1;
}

static int get_bool(const json_value *root, const char *field, int *out, char *err, size_t errlen, const char **param) {
    const json_value *v = json_get(root, field);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_BOOL) return bad(err, errlen, param, field, "must be true or false");
    *out = v->boolean;
    return 0;
}

/* "content": a string, null, or an array of {"type": "text", "text": "..."} parts (joined). */
static const char *message_content(api_request *r, const json_value *c, const api_limits *lim, char *err,
                                   size_t errlen, const char **param) {
    if (!c || c->type == JSON_NULL) return "";
    if (c->type == JSON_STRING) return c->str;
    if (c->type != JSON_ARRAY) return bad(err, errlen, param, "messages", "content must be a string or an array of text parts"), NULL;
    size_t total = 0;
    for (const json_value *part = c->first; part; part = part->next) {
        const json_value *type = json_get(part, "type"), *text = json_get(part, "text");
        if (!type || type->type != JSON_STRING || strcmp(type->str, "text") != 0 || !text || text->type != JSON_STRING)
            return bad(err, errlen, param, "messages", "only content parts of type \"text\" are supported"), NULL;
        total += text->len;
        if (total > lim->max_string) return bad(err, errlen, param, "messages", "content too long"), NULL;
    }
    if (r->n_owned == (int)(sizeof(r->owned) / sizeof(r->owned[0])))
        return bad(err, errlen, param, "messages", "too many messages with content parts"), NULL;
    char *joined = malloc(total + 1);
    if (!joined) return bad(err, errlen, param, "messages", "out of memory"), NULL;
    r->owned[r->n_owned++] = joined;
    size_t o = 0;
    for (const json_value *part = c->first; part; part = part->next) {
        const json_value *text = json_get(part, "text");
        memcpy(joined + o, text->str, text->len);
        o += text->len;
    }
    joined[o] = 0;
    return joined;
}

static int parse_messages(api_request *r, const json_value *root, const api_limits *lim, char *err, size_t errlen,
                          const char **param) {
    const json_value *m = json_get(root, "messages");
    if (!m) return bad(err, errlen, param, "messages", "is required");
    if (m->type != JSON_ARRAY || m->len == 0) return bad(err, errlen, param, "messages", "must be a non-empty array");
    if (m->len > (size_t)lim->max_messages) {
        char msg[96];
        snprintf(msg, sizeof(msg), "at most %d messages are accepted", lim->max_messages);
        return bad(err, errlen, param, "messages", msg);
    }
    r->messages = calloc(m->len, sizeof(be_chat_message));
    if (!r->messages) return bad(err, errlen, param, "messages", "out of memory");
    for (const json_value *msg = m->first; msg; msg = msg->next) {
        if (msg->type != JSON_OBJECT) return bad(err, errlen, param, "messages", "each message must be an object");
        const json_value *role = json_get(msg, "role");
        if (!role || role->type != JSON_STRING) return bad(err, errlen, param, "messages", "each message needs a role");
        const char *name = role->str;
        if (!strcmp(name, "developer")) name = "system";  /* OpenAI's newer name for the system role */
        if (strcmp(name, "system") && strcmp(name, "user") && strcmp(name, "assistant"))
            return bad(err, errlen, param, "messages", "role must be system, user or assistant");
        const char *content = message_content(r, json_get(msg, "content"), lim, err, errlen, param);
        if (!content) return -1;
        r->messages[r->n_messages].role = name;
        r->messages[r->n_messages++].content = content;
    }
    return 0;
}

/* "prompt": a string, an array of one string, or an array of token ids. */
static int parse_prompt(api_request *r, const json_value *root, char *err, size_t errlen, const char **param) {
    const json_value *p = json_get(root, "prompt");
    if (!p) return bad(err, errlen, param, "prompt", "is required");
    if (p->type == JSON_STRING) {
        r->prompt = p->str;
        return 0;
    }
    if (p->type != JSON_ARRAY || p->len == 0) return bad(err, errlen, param, "prompt", "must be a string or an array");
    if (p->first->type == JSON_STRING) {
        if (p->len != 1) return bad(err, errlen, param, "prompt", "only one prompt per request is supported");
        r->prompt = p->first->str;
        return 0;
    }
    if (p->len > API_MAX_PROMPT_IDS) return bad(err, errlen, param, "prompt", "too many token ids");
    r->prompt_ids = malloc(p->len * sizeof(int32_t));
    if (!r->prompt_ids) return bad(err, errlen, param, "prompt", "out of memory");
    for (const json_value *t = p->first; t; t = t->next) {
        if (t->type != JSON_NUMBER || t->number != floor(t->number) || t->number < 0 || t->number > 2147483647.0)
            return bad(err, errlen, param, "prompt", "must be a string or an array of token ids");
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)t->number;
    }
    return 0;
}

static int parse_stop(api_request *r, const json_value *root, char *err, size_t errlen, const char **param) {
    const json_value *s = json_get(root, "stop");
    if (!s || s->type == JSON_NULL) return 0;
    const json_value *one = s->type == JSON_STRING ? s : NULL;
    if (!one && s->type != JSON_ARRAY) return bad(err, errlen, param, "stop", "must be a string or an array of strings");
    if (!one && s->len > API_MAX_STOP) return bad(err, errlen, param, "stop", "at most 4 stop sequences");
    for (const json_value *v = one ? one : s->first; v; v = one ? NULL : v->next) {
        if (v->type != JSON_STRING) return bad(err, errlen, param, "stop", "must be a string or an array of strings");
        if (v->len == 0 || v->len > API_MAX_STOP_LEN)
            return bad(err, errlen, param, "stop", "each stop sequence must have 1 to 256 bytes");
        r->stop[r->n_stop] = v->str;
        r->stop_len[r->n_stop++] = v->len;
    }
    return 0;
}

int api_parse_request(const json_value *root, int chat, const api_limits *lim, api_request *r, char *err,
                      size_t errlen, const char **param) {
    memset(r, 0, sizeof(*r));
    r->chat = chat;
    r->max_tokens = -1;
    r->temperature = 0.8;  /* bitedge-run generate's defaults */
    r->top_p = 0.95;
    r->top_k = 40;
    *param = NULL;
    if (root->type != JSON_OBJECT) return bad(err, errlen, param, "body", "must be a JSON object");
    if (chat ? parse_messages(r, root, lim, err, errlen, param) : parse_prompt(r, root, err, errlen, param)) return -1;
    double v;
    int rc;
    if ((rc = get_number(root, "max_tokens", 1, 1 << 30, 1, &v, err, errlen, param)) < 0) return -1;
    if (rc) r->max_tokens = (int)v;
    if ((rc = get_number(root, "max_completion_tokens", 1, 1 << 30, 1, &v, err, errlen, param)) < 0) return -1;
    if (rc) r->max_tokens = (int)v;
    if ((rc = get_number(root, "temperature", 0, 2, 0, &v, err, errlen, param)) < 0) return -1;
    if (rc) r->temperature = v;
    if ((rc = get_number(root, "top_p", 0, 1, 0, &v, err, errlen, param)) < 0) return -1;
    if (rc) r->top_p = v;
    if ((rc = get_number(root, "top_k", 0, 1 << 30, 1, &v, err, errlen, param)) < 0) return -1;
    if (rc) r->top_k = (int)v;
    if ((rc = get_number(root, "seed", -9007199254740991.0, 9007199254740991.0, 1, &v, err, errlen, param)) < 0) return -1;
    if (rc) {
        r->seed = (uint64_t)(int64_t)v;
        r->seed_set = 1;
    }
    if ((rc = get_number(root, "n", 1, 1, 1, &v, err, errlen, param)) < 0) return bad(err, errlen, param, "n", "only n = 1 is supported");
    if (parse_stop(r, root, err, errlen, param)) return -1;
    if (get_bool(root, "stream", &r->stream, err, errlen, param)) return -1;
    if (get_bool(root, "ignore_eos", &r->ignore_eos, err, errlen, param)) return -1;
    const json_value *so = json_get(root, "stream_options");
    if (so && so->type != JSON_NULL) {
        if (so->type != JSON_OBJECT) return bad(err, errlen, param, "stream_options", "must be an object");
        if (get_bool(so, "include_usage", &r->include_usage, err, errlen, param)) return -1;
    }
    static const char *unsupported[] = {"tools", "functions", "logprobs", "top_logprobs", "best_of", "suffix",
                                        "logit_bias", "response_format", "echo"};
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        const json_value *u = json_get(root, unsupported[i]);
        if (u && u->type != JSON_NULL && !(u->type == JSON_BOOL && !u->boolean))
            return bad(err, errlen, param, unsupported[i], "is not supported by this server");
    }
    return 0;
}

void api_free_request(api_request *r) {
    for (int i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->messages);
    free(r->prompt_ids);
    memset(r, 0, sizeof(*r));
}

void api_error_body(jbuf *b, const char *message, const char *type, const char *param, const char *code) {
    jb_puts(b, "{\"error\": {\"message\": ");
    jb_string(b, message, strlen(message));
    jb_puts(b, ", \"type\": ");
    jb_string(b, type, strlen(type));
    jb_puts(b, ", \"param\": ");
    if (param) jb_string(b, param, strlen(param));
    else jb_puts(b, "null");
    jb_puts(b, ", \"code\": ");
    if (code) jb_string(b, code, strlen(code));
    else jb_puts(b, "null");
    jb_puts(b, "}}\n");
}
