/* api.h: the OpenAI-shaped request bodies of bitedge-run serve, validated into plain C values.
 *
 * api_parse_request reads /v1/completions and /v1/chat/completions bodies (a parsed JSON tree) and checks every
 * field it uses: types, ranges, the number of messages and stop strings. Unknown fields are ignored (clients
 * send many); fields that would change the answer and that we cannot honour (n > 1, tools, logprobs) are
 * refused rather than ignored. Pure: no model, no socket, so the fuzz driver runs it on every JSON it parses. */
#ifndef BITEDGE_API_H
#define BITEDGE_API_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "tokenizer.h"

#define API_MAX_STOP 4
#define API_MAX_STOP_LEN 256
#define API_MAX_PROMPT_IDS 65536

typedef struct {
    int max_messages;
    size_t max_string;  /* the JSON parser's limit, repeated for joined content parts */
} api_limits;

typedef struct {
    int chat;                     /* 1: chat completions (messages), 0: completions (prompt) */
    const char *prompt;           /* completions: the prompt text, or NULL when given as token ids */
    int32_t *prompt_ids;          /* completions: token ids (range-checked against the vocabulary later) */
    int n_prompt_ids;
    be_chat_message *messages;    /* chat: [n_messages] */
    int n_messages;
    int max_tokens;               /* -1: until the context is full */
    double temperature, top_p;
    int top_k;
    uint64_t seed;
    int seed_set;
    const char *stop[API_MAX_STOP];
    size_t stop_len[API_MAX_STOP];
    int n_stop;
    int stream, include_usage;
    int ignore_eos;               /* llama.cpp's extension: generate past end-of-generation tokens */
    char *owned[64];              /* strings built by joining content parts, freed by api_free_request */
    int n_owned;
} api_request;

/* Returns 0, or -1 with a message in err and the offending field in *param (for the error body). Strings point
 * into the JSON document: keep it until api_free_request. */
int api_parse_request(const json_value *root, int chat, const api_limits *lim, api_request *r, char *err,
                      size_t errlen, const char **param);
void api_free_request(api_request *r);

/* {"error": {"message": ..., "type": ..., "param": ..., "code": ...}} */
void api_error_body(jbuf *b, const char *message, const char *type, const char *param, const char *code);

#endif
