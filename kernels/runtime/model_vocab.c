/* model_vocab.c: the tokenizer.* keys of a GGUF file as a be_vocab_view (tokenizer.h builds the tokenizer from it). */
#include "model_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitedge_gguf_keys.h" /* rendered from bitedge.formats.gguf_keys */

/* ----------------------------------------------------------------------------------------------------------
 * tokenizer keys -> be_vocab_view */

static int vocab_str_key(const gguf_file *f, const char *key, be_vocab_str *out, char *err, size_t errlen) {
    gguf_str s;
    int rc = be_key_str(f, key, &s, err, errlen);
    if (rc < 0) return -1;
    out->ptr = rc ? s.ptr : NULL;
    out->len = rc ? s.len : 0;
    return 0;
}

static int vocab_id_key(const gguf_file *f, const char *key, int64_t *out, char *err, size_t errlen) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    *out = -1;
    if (rc == GGUF_ABSENT) return 0;
    if (rc != GGUF_OK) {
        gguf_set_err(err, errlen, "key '%s' has type %s (an integer token id expected)", key,
                gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    *out = v;  /* range-checked against the vocabulary by build_tokenizer */
    return 0;
}

static int vocab_flag_key(const gguf_file *f, const char *key, int *out, char *err, size_t errlen) {
    *out = -1;
    int v;
    int rc = gguf_get_bool(f, key, &v);
    if (rc == GGUF_ABSENT) return 0;
    if (rc != GGUF_OK) {
        gguf_set_err(err, errlen, "key '%s' has type %s (bool expected)", key, gguf_type_name(f->kv[gguf_find_key(f, key)].type));
        return -1;
    }
    *out = v;
    return 0;
}

static be_vocab_str *copy_strs(const gguf_str *s, uint64_t n) {
    be_vocab_str *out = malloc((n ? (size_t)n : 1) * sizeof(*out));
    if (!out) return NULL;
    for (uint64_t i = 0; i < n; i++) {
        out[i].ptr = s[i].ptr;
        out[i].len = s[i].len;
    }
    return out;
}

static int vocab_strs_key(const gguf_file *f, const char *key, uint64_t *n, be_vocab_str **out, char *err,
                          size_t errlen) {
    const gguf_str *s;
    int rc = gguf_get_arr_strs(f, key, n, &s);
    *out = NULL;
    if (rc == GGUF_ABSENT) {
        *n = 0;
        return 0;
    }
    if (rc != GGUF_OK) {
        gguf_set_err(err, errlen, "key '%s' is not an array of strings", key);
        return -1;
    }
    if (!(*out = copy_strs(s, *n))) {
        gguf_set_err(err, errlen, "out of memory for '%s'", key);
        return -1;
    }
    return 0;
}

/* A numeric per-token array of exactly n_tokens elements of type want, copied so it is aligned. */
static int vocab_numbers_key(const gguf_file *f, const char *key, uint32_t want, uint64_t n_tokens, void **out,
                             char *err, size_t errlen) {
    uint32_t type;
    uint64_t n;
    const void *data;
    *out = NULL;
    int rc = gguf_get_arr(f, key, &type, &n, &data);
    if (rc == GGUF_ABSENT) return 0;
    if (rc != GGUF_OK || type != want) {
        gguf_set_err(err, errlen, "key '%s' is not an array of %s", key, gguf_type_name(want));
        return -1;
    }
    if (n != n_tokens) {
        gguf_set_err(err, errlen, "key '%s' has %llu entries but tokenizer.ggml.tokens has %llu", key, (unsigned long long)n,
                (unsigned long long)n_tokens);
        return -1;
    }
    if (!(*out = malloc(n ? (size_t)n * 4 : 1))) {
        gguf_set_err(err, errlen, "out of memory for '%s'", key);
        return -1;
    }
    memcpy(*out, data, (size_t)n * 4);
    return 0;
}

int be_read_vocab(const gguf_file *f, be_model *m, char *err, size_t errlen) {
    be_vocab_view *v = &m->vocab;
    void *p;
    if (vocab_str_key(f, BE_KEY_TOKENIZER_MODEL, &v->model, err, errlen) ||
        vocab_str_key(f, BE_KEY_TOKENIZER_PRE, &v->pre, err, errlen) ||
        vocab_str_key(f, BE_KEY_CHAT_TEMPLATE, &v->chat_template, err, errlen) ||
        vocab_strs_key(f, BE_KEY_TOKENS, &v->n_tokens, &m->vocab_tokens_, err, errlen) ||
        vocab_strs_key(f, BE_KEY_MERGES, &v->n_merges, &m->vocab_merges_, err, errlen))
        return -1;
    v->tokens = m->vocab_tokens_;
    v->merges = m->vocab_merges_;
    if (v->n_tokens > (uint64_t)m->config.vocab_size) {
        gguf_set_err(err, errlen, BE_KEY_TOKENS " has %llu tokens but the embedding has only %d rows "
                "(bitnet.vocab_size)", (unsigned long long)v->n_tokens, m->config.vocab_size);
        return -1;
    }
    if (vocab_numbers_key(f, BE_KEY_TOKEN_TYPE, GGUF_TYPE_INT32, v->n_tokens, &p, err, errlen)) return -1;
    m->vocab_token_type_ = p;
    v->token_type = m->vocab_token_type_;
    if (vocab_numbers_key(f, BE_KEY_SCORES, GGUF_TYPE_FLOAT32, v->n_tokens, &p, err, errlen)) return -1;
    m->vocab_scores_ = p;
    v->scores = m->vocab_scores_;
    if (vocab_id_key(f, BE_KEY_BOS_ID, &v->bos_id, err, errlen) ||
        vocab_id_key(f, BE_KEY_EOS_ID, &v->eos_id, err, errlen) ||
        vocab_id_key(f, BE_KEY_UNKNOWN_ID, &v->unknown_id, err, errlen) ||
        vocab_id_key(f, BE_KEY_PADDING_ID, &v->padding_id, err, errlen) ||
        vocab_flag_key(f, BE_KEY_ADD_BOS, &v->add_bos, err, errlen) ||
        vocab_flag_key(f, BE_KEY_ADD_EOS, &v->add_eos, err, errlen) ||
        vocab_flag_key(f, BE_KEY_ADD_SPACE_PREFIX, &v->add_space_prefix, err, errlen))
        return -1;
    return 0;
}
