/* tokenizer_chat.c: the few chat formats the runtime knows (detected from the GGUF's chat template). */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------------------------------------------------
 * chat formats */

static int contains(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (k > n) return 0;
    for (size_t i = 0; i + k <= n; i++)
        if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0) return 1;
    return 0;
}

be_chat_style be_chat_detect(const char *tmpl, size_t len) {
    if (!tmpl || !len) return BE_CHAT_PLAIN;
    if (contains(tmpl, len, "<|start_header_id|>") && contains(tmpl, len, "<|end_header_id|>")) return BE_CHAT_LLAMA3;
    if (contains(tmpl, len, "<|im_start|>") && contains(tmpl, len, "<|im_end|>")) return BE_CHAT_CHATML;
    if (contains(tmpl, len, "capitalize") && contains(tmpl, len, "<|eot_id|>") && contains(tmpl, len, "Assistant: "))
        return BE_CHAT_BITNET;
    if (contains(tmpl, len, "BITNETAssistant")) return BE_CHAT_BITNET; /* the placeholder: see be_chat_format */
    return BE_CHAT_UNKNOWN;
}

be_chat_style be_chat_style_of(const be_tokenizer *t) {
    if (!t) return BE_CHAT_UNKNOWN;
    return be_chat_detect(t->chat_template, t->chat_template_len);
}

const char *be_chat_style_name(be_chat_style s) {
    switch (s) {
    case BE_CHAT_PLAIN: return "plain";
    case BE_CHAT_BITNET: return "bitnet";
    case BE_CHAT_LLAMA3: return "llama3";
    case BE_CHAT_CHATML: return "chatml";
    default: return "unknown";
    }
}

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Jinja's trim: strips Unicode-agnostic ASCII whitespace as Python's str.strip() does for ASCII */
static void sb_trimmed(strbuf *b, const char *s) {
    size_t n = strlen(s), i = 0;
    while (i < n && (s[i] == ' ' || (s[i] >= 0x09 && s[i] <= 0x0D))) i++;
    while (n > i && (s[n - 1] == ' ' || (s[n - 1] >= 0x09 && s[n - 1] <= 0x0D))) n--;
    sb_add(b, s + i, n - i);
}

/* Jinja's capitalize: first character upper case, the rest lower case (ASCII roles) */
static void sb_capitalized(strbuf *b, const char *s) {
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (i == 0 && c >= 'a' && c <= 'z') c = (char)(c - 32);
        else if (i > 0 && c >= 'A' && c <= 'Z') c = (char)(c + 32);
        sb_add(b, &c, 1);
    }
}

/* Literal text before the template's first tag, e.g. a fixed system line. */
static size_t literal_prefix(const char *tmpl, size_t len) {
    size_t i = 0;
    while (i < len && tmpl[i] != '{') i++;
    return i;
}

char *be_chat_format_messages(const be_tokenizer *t, const be_chat_message *msgs, int n, char *err, size_t errlen) {
    if (!t || n < 0 || (n > 0 && !msgs)) { gguf_set_err(err, errlen, "no messages"); return NULL; }
    const char *tmpl = t->chat_template;
    size_t tlen = t->chat_template_len;
    be_chat_style style = be_chat_detect(tmpl, tlen);
    if (style == BE_CHAT_UNKNOWN) {
        gguf_set_err(err, errlen, "tokenizer.chat_template is not one this runtime knows (BitNet b1.58 2B-4T, Llama-3, "
                "ChatML); it starts \"%.40s\"", tmpl);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) { gguf_set_err(err, errlen, "message %d has no role or content", i); return NULL; }
    /* Microsoft's converter writes a placeholder ("Human: ... BITNETAssistant: ") into ggml-model-i2_s.gguf that
     * the model was not trained on (it rambles and never stops): use the trained format of the model repository's
     * tokenizer_config.json instead, with its BOS and trimming. */
    int placeholder = tmpl && contains(tmpl, tlen, "BITNETAssistant");
    int trim = placeholder || (tmpl && (contains(tmpl, tlen, "| trim") || contains(tmpl, tlen, "|trim") ||
                                        contains(tmpl, tlen, ".strip()")));
    /* the BOS as text, where the template writes it (or, for the plain format, where the file wants one) */
    int bos = (placeholder || (tmpl && contains(tmpl, tlen, "bos_token")) || (style == BE_CHAT_PLAIN && t->add_bos)) &&
              t->bos >= 0;
    strbuf b = {0};
    sb_add(&b, "", 0);
    if (tmpl && style != BE_CHAT_PLAIN && !placeholder) sb_add(&b, tmpl, literal_prefix(tmpl, tlen));
    if (bos) sb_add(&b, token_str(t, t->bos), token_len(t, t->bos)); /* on the first message, as the templates do */
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role, *content = msgs[i].content;
        switch (style) {
        case BE_CHAT_BITNET:
            sb_capitalized(&b, role);
            sb_str(&b, ": ");
            if (trim) sb_trimmed(&b, content); else sb_str(&b, content);
            sb_str(&b, "<|eot_id|>");
            break;
        case BE_CHAT_LLAMA3:
            sb_str(&b, "<|start_header_id|>");
            sb_str(&b, role);
            sb_str(&b, "<|end_header_id|>\n\n");
            if (trim) sb_trimmed(&b, content); else sb_str(&b, content);
            sb_str(&b, "<|eot_id|>");
            break;
        case BE_CHAT_CHATML:
            sb_str(&b, "<|im_start|>");
            sb_str(&b, role);
            sb_str(&b, "\n");
            if (trim) sb_trimmed(&b, content); else sb_str(&b, content);
            sb_str(&b, "<|im_end|>\n");
            break;
        default: /* plain */
            sb_capitalized(&b, role);
            sb_str(&b, ": ");
            sb_str(&b, content);
            sb_str(&b, "\n");
            break;
        }
    }
    switch (style) {
    case BE_CHAT_BITNET: sb_str(&b, "Assistant: "); break;
    case BE_CHAT_LLAMA3: sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n"); break;
    case BE_CHAT_CHATML: sb_str(&b, "<|im_start|>assistant\n"); break;
    default: sb_str(&b, "Assistant:"); break;
    }
    if (b.oom) { free(b.p); gguf_set_err(err, errlen, "out of memory for the chat text"); return NULL; }
    return b.p;
}

char *be_chat_format(const be_tokenizer *t, const char *user_text, char *err, size_t errlen) {
    be_chat_message m = {"user", user_text};
    return be_chat_format_messages(t, &m, 1, err, errlen);
}
