/* The file modes of test_kernels (usage in test_kernels.c): each kernel table run on inputs written by
 * tests/test_c_kernels.py, its outputs written back for numpy and gguf-py to judge. */
#include "test_kernels.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = xmalloc((size_t)n);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "short read %s\n", path);
        exit(1);
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void need(size_t have, size_t want, const char *what) {
    if (have < want) {
        fprintf(stderr, "%s: input too short (%zu < %zu bytes)\n", what, have, want);
        exit(1);
    }
}

/* an input file: three int32 (its header, into hdr) then the data; the whole file is returned */
static uint8_t *read_input(const char *path, const char *what, int32_t hdr[3], size_t *size) {
    uint8_t *buf = read_file(path, size);
    need(*size, 3 * sizeof(int32_t), what);
    memcpy(hdr, buf, 3 * sizeof(int32_t));
    return buf;
}

static int mode_i2s(const char *in, const char *out, const be_kernels *const *tables, int n_tables) {
    size_t size;
    int32_t hdr[3];
    uint8_t *buf = read_input(in, "i2s", hdr, &size);
    const int n = hdr[0], kp = hdr[1], nb = hdr[2];
    need(size, 12 + (size_t)n * kp / 4 + (size_t)nb * kp, "i2s");
    const uint8_t *w = buf + 12;
    const int8_t *q = (const int8_t *)(w + (size_t)n * kp / 4);
    int32_t *acc = xmalloc((size_t)nb * n * sizeof(int32_t));
    FILE *f = fopen(out, "wb");
    for (int ti = 0; ti < n_tables; ti++) {
        if (nb == 1) tables[ti]->i2s_gemv(w, q, acc, 0, n, kp);
        else tables[ti]->i2s_gemm(w, q, acc, n, 0, n, kp, nb);
        fwrite(acc, sizeof(int32_t), (size_t)nb * n, f);
        for (int b = 0; b < nb; b++) tables[ti]->i2s_gemv(w, q + (size_t)b * kp, acc + (size_t)b * n, 0, n, kp);
        fwrite(acc, sizeof(int32_t), (size_t)nb * n, f);
    }
    fclose(f);
    free(acc);
    free(buf);
    return 0;
}

static int mode_quant(const char *in, const char *out, const be_kernels *const *tables, int n_tables) {
    size_t size;
    int32_t hdr[3];
    uint8_t *buf = read_input(in, "quant", hdr, &size);
    const int rows = hdr[0], k = hdr[1], kp = hdr[2];
    need(size, 12 + (size_t)rows * k * 4, "quant");
    float *x = xmalloc((size_t)k * sizeof(float));
    int8_t *q = xmalloc((size_t)kp);
    FILE *f = fopen(out, "wb");
    for (int ti = 0; ti < n_tables; ti++)
        for (int r = 0; r < rows; r++) {
            memcpy(x, buf + 12 + (size_t)r * k * 4, (size_t)k * 4);
            memset(q, 0x33, (size_t)kp);
            float a = tables[ti]->quantize_row_i8(x, q, k, kp);
            fwrite(&a, 4, 1, f);
            fwrite(q, 1, (size_t)kp, f);
        }
    fclose(f);
    free(x);
    free(q);
    free(buf);
    return 0;
}

static int mode_float(const char *in, const char *out, const be_kernels *const *tables, int n_tables) {
    size_t size;
    int32_t hdr[3];
    uint8_t *buf = read_input(in, "float", hdr, &size);
    const int type = hdr[0], n = hdr[1], k = hdr[2];
    const size_t wbytes = be_float_row_bytes(type, k) * (size_t)n;
    need(size, 12 + wbytes + (size_t)k * 4, "float");
    const uint8_t *w = buf + 12;
    float *x = xmalloc((size_t)k * sizeof(float));
    memcpy(x, w + wbytes, (size_t)k * 4);
    float *row = xmalloc((size_t)k * sizeof(float)), *y = xmalloc((size_t)n * sizeof(float));
    FILE *f = fopen(out, "wb");
    for (int r = 0; r < n; r++) {
        be_dequantize_row(w, type, r, k, row);
        fwrite(row, 4, (size_t)k, f);
    }
    for (int ti = 0; ti < n_tables; ti++) {
        tables[ti]->float_gemv(w, type, x, y, 0, n, k);
        fwrite(y, 4, (size_t)n, f);
    }
    fclose(f);
    free(x);
    free(row);
    free(y);
    free(buf);
    return 0;
}

static int mode_f16(const char *out) {
    FILE *f = fopen(out, "wb");
    for (uint32_t h = 0; h < 65536; h++) {
        float v = be_f16_to_f32((uint16_t)h);
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
    return 0;
}

int test_kernels_file_mode(int argc, char **argv, const be_kernels *const *tables, int n_tables) {
    if (argc >= 4 && !strcmp(argv[1], "i2s")) return mode_i2s(argv[2], argv[3], tables, n_tables);
    if (argc >= 4 && !strcmp(argv[1], "quant")) return mode_quant(argv[2], argv[3], tables, n_tables);
    if (argc >= 4 && !strcmp(argv[1], "float")) return mode_float(argv[2], argv[3], tables, n_tables);
    if (argc >= 3 && !strcmp(argv[1], "f16")) return mode_f16(argv[2]);
    fprintf(stderr, "usage: test_kernels [i2s IN OUT | quant IN OUT | float IN OUT | f16 OUT | check]\n");
    return 2;
}
