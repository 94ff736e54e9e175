/* model_impl.h: the parts of build_model (model.c) that live in their own files. Not part of the interface. */
#ifndef BITEDGE_MODEL_IMPL_H
#define BITEDGE_MODEL_IMPL_H

#include "model.h"

/* model_config.c: the bitnet.* / bitedge.* keys into c (every value range-checked); packings outside accept are
 * refused. 0, or -1 with a one-line message in err. */
int be_read_config(const gguf_file *f, be_config *c, unsigned accept, char *err, size_t errlen);

/* model_vocab.c: the tokenizer.* keys into m->vocab (a view into the file plus copied string tables). */
int be_read_vocab(const gguf_file *f, be_model *m, char *err, size_t errlen);

/* A string key (model_config.c): GGUF_OK, GGUF_ABSENT, or -1 with a message for a wrong type. */
int be_key_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t errlen);

#endif
