/* Tests of the runtime kernels (kernels.c, kernels_avx2.c, kernels_avxvnni.c, kernels_avx512vnni.c, kernels_neon.c,
 * cpu_features.c, threadpool.c; vnni_emulated.c when linked in).
 *
 *   test_kernels                    self-test: every kernel table this CPU can run against an independent
 *                                   naive product (integer: exact; float: relative tolerance), quantization,
 *                                   f16 conversion, thread pool. Prints "tables: ...", "selected: ...",
 *                                   "system_info: ..." and one line per failure; exit 0 iff all pass. With
 *                                   vnni_emulated.c linked in (and AVX2 here), also the I2_S kernel source of
 *                                   the VNNI tables through it, and "emulated: vnni-emulated".
 *   test_kernels i2s IN OUT         IN: int32 n, kp, nb; n*kp/4 packed bytes; nb*kp int8 activations.
 *                                   OUT: for every table (in "tables" order) nb*n int32 from the gemm (nb > 1)
 *                                   or gemv (nb == 1), then nb*n int32 from gemv token by token.
 *   test_kernels quant IN OUT       IN: int32 rows, k, kp; rows*k float32.
 *                                   OUT: for every table, per row a float32 then kp int8.
 *   test_kernels float IN OUT       IN: int32 type, n, k; the weight bytes; k float32 x.
 *                                   OUT: n*k float32 (be_dequantize_row of every row), then per table n float32.
 *   test_kernels f16 OUT            OUT: be_f16_to_f32 of all 65536 halves, as float32.
 *   test_kernels check              be_cpu_check_build only: prints "ok" (exit 0) or its message (exit 3).
 *
 * The file modes (test_kernels_io.c) let tests/test_c_kernels.py check the C code against numpy and gguf-py (the
 * sources of truth for the layouts); the self-test checks the SIMD tables against a packer and product written here
 * (the float gemv part in test_kernels_float.c; shared helpers in test_kernels.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "kernels.h"
#include "threadpool.h"
#include "test_kernels.h"

#define MAX_TABLES 8

/* kernels/tests/vnni_emulated.c: the VNNI tables' I2_S source with vpdpbusd emulated in AVX2; NULL when the
 * program is linked without it */
extern const be_kernels be_kernels_vnni_emulated __attribute__((weak));

int n_checks, n_failures;
uint64_t rng_state = 0x9e3779b97f4a7c15ull;


/* ----------------------------------------------------------------------------------------------------------
 * an independent I2_S packer and product (docs/format.md): code = T + 1; byte j of block b holds columns
 * 128b + j, +32, +64, +96 in bits 7-6, 5-4, 3-2, 1-0. Padding columns are T = 0 (code 01). */

static void pack_i2s(const int8_t *t, int n, int k, int kp, uint8_t *out) {
    for (int r = 0; r < n; r++) {
        uint8_t *row = out + (size_t)r * (kp / 4);
        memset(row, 0, (size_t)kp / 4);
        for (int col = 0; col < kp; col++) {
            const int v = col < k ? t[(size_t)r * k + col] : 0;
            const int blk = col / 128, within = col % 128, slot = within / 32, j = within % 32;
            row[blk * 32 + j] |= (uint8_t)((v + 1) << (6 - 2 * slot));
        }
    }
}

static int32_t naive_dot(const int8_t *t, int k, const int8_t *q) {
    int64_t s = 0;
    for (int i = 0; i < k; i++) s += (int64_t)t[i] * q[i];
    return (int32_t)s;
}

/* ----------------------------------------------------------------------------------------------------------
 * activation quantization */

static void test_quantize(const be_kernels *const *tables, int n_tables) {
    for (int ti = 0; ti < n_tables; ti++) {
        const be_quantize_fn quantize = tables[ti]->quantize_row_i8;
        const char *name = tables[ti]->name;
        /* amax 127 -> a == 1: x is rounded half to even, and the padding is zero-filled; 40 values so that the
         * SIMD body (32 at a time) and the tail both see ties */
        float x[40];
        int8_t want[40], q[48];
        for (int i = 0; i < 40; i++) {
            x[i] = (float)(i - 20) + 0.5f;       /* -19.5 ... 19.5 */
            const int lo = (int)floorf(x[i]);
            want[i] = (int8_t)(lo % 2 == 0 ? lo : lo + 1);  /* the even neighbour */
        }
        x[3] = 127.0f, want[3] = 127;
        x[37] = -126.5f, want[37] = -126;
        x[38] = 3.49f, want[38] = 3;
        x[39] = -0.25f, want[39] = 0;
        memset(q, 0x55, sizeof(q));
        float a = quantize(x, q, 40, 48);
        CHECK(a == 1.0f, "%s quantize a = %g, want 1", name, a);
        for (int i = 0; i < 40; i++) CHECK(q[i] == want[i], "%s quantize q[%d] = %d for %g, want %d", name, i, q[i], x[i], want[i]);
        for (int i = 40; i < 48; i++) CHECK(q[i] == 0, "%s quantize padding q[%d] = %d", name, i, q[i]);

        /* all zeros: amax floors at 1e-5, q is all 0 */
        float z[5] = {0};
        a = quantize(z, q, 5, 5);
        CHECK(a == 127.0f / 1e-5f, "%s quantize zero row a = %g", name, a);
        for (int i = 0; i < 5; i++) CHECK(q[i] == 0, "%s quantize zero row q[%d] = %d", name, i, q[i]);

        /* random rows: the largest |x| maps to +-127, every q is within one rounding step of x * a, and the
         * result is bit-identical to the scalar twin's */
        for (int rep = 0; rep < 50; rep++) {
            const int k = rng_int(1, 300);
            const int kp = (k + 127) / 128 * 128;
            float *xr = xmalloc((size_t)k * sizeof(float));
            int8_t *qr = xmalloc((size_t)kp), *qs = xmalloc((size_t)kp);
            const float mag = (float)rng_int(1, 1000) / 7.0f;
            int imax = 0;
            for (int i = 0; i < k; i++) {
                xr[i] = rng_float() * mag;
                if (rng_int(0, 9) == 0) xr[i] = (float)rng_int(-40, 40) * 0.5f;  /* ties when amax is 127 */
                if (fabsf(xr[i]) > fabsf(xr[imax])) imax = i;
            }
            if (rep % 5 == 0) {  /* make a == 1 exactly: x * a is x, and the .5 values above are ties */
                xr[imax] = copysignf(127.0f, xr[imax]);
                for (int i = 0; i < k; i++) if (i != imax && fabsf(xr[i]) > 127.0f) xr[i] = 126.5f;
            }
            memset(qr, 0x7f, (size_t)kp);
            memset(qs, 0x11, (size_t)kp);
            a = quantize(xr, qr, k, kp);
            const float as = be_quantize_row_i8_scalar(xr, qs, k, kp);
            CHECK(a == as && !memcmp(qr, qs, (size_t)kp), "%s quantize differs from scalar (k=%d)", name, k);
            CHECK(a == 127.0f / fmaxf(fabsf(xr[imax]), 1e-5f), "%s quantize a", name);
            CHECK(abs(qr[imax]) == 127 || fabsf(xr[imax]) < 1e-5f, "%s quantize amax -> %d", name, qr[imax]);
            for (int i = 0; i < k; i++) {
                const float v = xr[i] * a;
                CHECK(fabsf((float)qr[i] - v) <= 0.5f, "%s quantize q[%d] = %d for %g", name, i, qr[i], v);
            }
            for (int i = k; i < kp; i++) CHECK(qr[i] == 0, "%s quantize padding", name);
            free(xr);
            free(qr);
            free(qs);
        }
    }
    /* the free function is the best table's */
    float x1[3] = {1.0f, -2.0f, 0.5f};
    int8_t q1[3], q2[3];
    CHECK(be_quantize_row_i8(x1, q1, 3, 3) == be_quantize_row_i8_scalar(x1, q2, 3, 3) && !memcmp(q1, q2, 3),
          "be_quantize_row_i8");
}

/* ----------------------------------------------------------------------------------------------------------
 * f16 */

static void test_f16(void) {
    static const struct { uint16_t h; float f; } cases[] = {
        {0x0000, 0.0f}, {0x3c00, 1.0f}, {0xc000, -2.0f}, {0x3555, 0.333251953125f}, {0x7bff, 65504.0f},
        {0x0400, 6.103515625e-05f}, {0x0001, 5.9604644775390625e-08f}, {0x03ff, 6.097555160522461e-05f},
        {0x8001, -5.9604644775390625e-08f},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK(be_f16_to_f32(cases[i].h) == cases[i].f, "f16 0x%04x -> %g, want %g", cases[i].h,
              be_f16_to_f32(cases[i].h), cases[i].f);
    CHECK(isinf(be_f16_to_f32(0x7c00)) && be_f16_to_f32(0x7c00) > 0, "f16 +inf");
    CHECK(isinf(be_f16_to_f32(0xfc00)) && be_f16_to_f32(0xfc00) < 0, "f16 -inf");
    CHECK(isnan(be_f16_to_f32(0x7e00)), "f16 nan");
    float nz = be_f16_to_f32(0x8000);
    CHECK(nz == 0.0f && signbit(nz), "f16 -0");
}

/* ----------------------------------------------------------------------------------------------------------
 * I2_S: every table against the naive product, exact */

static void fill_ternary(int8_t *t, size_t n, int mode) {
    for (size_t i = 0; i < n; i++) t[i] = (int8_t)(mode == 0 ? rng_int(-1, 1) : mode);
}

static void fill_q(int8_t *q, int k, int kp, int mode) {
    for (int i = 0; i < kp; i++) {
        int v = mode == 0 ? rng_int(-128, 127) : mode == 1 ? -128 : mode == 2 ? 127 : (rng_int(0, 1) ? 127 : -128);
        q[i] = (int8_t)(i < k ? v : 0);  /* be_quantize_row_i8 zero-fills the padding */
    }
}

/* n rows, k columns, nb tokens; t_mode: 0 random ternary, else all t_mode; q_mode see fill_q */
static void check_i2s_case(const be_kernels *const *tables, int n_tables, int n, int k, int nb, int t_mode,
                           int q_mode) {
    const int kp = (k + 127) / 128 * 128;
    const int ldacc = n + rng_int(0, 5);
    int8_t *t = xmalloc((size_t)n * k);
    uint8_t *w = xmalloc((size_t)n * kp / 4);
    int8_t *q = xmalloc((size_t)nb * kp);
    int32_t *want = xmalloc((size_t)nb * n * sizeof(int32_t));
    int32_t *acc = xmalloc((size_t)nb * ldacc * sizeof(int32_t));
    fill_ternary(t, (size_t)n * k, t_mode);
    pack_i2s(t, n, k, kp, w);
    for (int b = 0; b < nb; b++) fill_q(q + (size_t)b * kp, k, kp, q_mode);
    for (int b = 0; b < nb; b++)
        for (int r = 0; r < n; r++) want[(size_t)b * n + r] = naive_dot(t + (size_t)r * k, k, q + (size_t)b * kp);

    /* a row sub-range, so that writes outside [n0, n1) are caught by the sentinel */
    const int n0 = rng_int(0, n - 1), n1 = rng_int(n0 + 1, n);
    const int32_t sentinel = 0x5a5a5a5a;
    for (int ti = 0; ti < n_tables; ti++) {
        const be_kernels *kt = tables[ti];
        /* gemv, token by token */
        for (int b = 0; b < nb; b++) {
            for (int r = 0; r < ldacc; r++) acc[r] = sentinel;
            kt->i2s_gemv(w, q + (size_t)b * kp, acc, n0, n1, kp);
            for (int r = 0; r < ldacc; r++) {
                const int32_t expect = r >= n0 && r < n1 ? want[(size_t)b * n + r] : sentinel;
                CHECK(acc[r] == expect, "%s gemv n=%d k=%d kp=%d t%d q%d row %d token %d: %d, want %d", kt->name, n,
                      k, kp, t_mode, q_mode, r, b, acc[r], expect);
            }
        }
        /* gemm over all tokens */
        for (size_t i = 0; i < (size_t)nb * ldacc; i++) acc[i] = sentinel;
        kt->i2s_gemm(w, q, acc, ldacc, n0, n1, kp, nb);
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < ldacc; r++) {
                const int32_t expect = r >= n0 && r < n1 ? want[(size_t)b * n + r] : sentinel;
                CHECK(acc[(size_t)b * ldacc + r] == expect, "%s gemm n=%d k=%d kp=%d nb=%d t%d q%d row %d token %d: %d, want %d",
                      kt->name, n, k, kp, nb, t_mode, q_mode, r, b, acc[(size_t)b * ldacc + r], expect);
            }
    }
    free(t);
    free(w);
    free(q);
    free(want);
    free(acc);
}

static void test_i2s(const be_kernels *const *tables, int n_tables) {
    /* random shapes: N not a multiple of anything, K padded to a multiple of 128, 1..9 tokens */
    for (int rep = 0; rep < 40; rep++) {
        const int n = rng_int(1, 37), k = rng_int(1, 1200), nb = rng_int(1, 9);  /* in order: same on any compiler */
        check_i2s_case(tables, n_tables, n, k, nb, 0, 0);
    }
    /* extreme activations everywhere, with all-+1, all--1 and random ternary weights, on long rows: the
     * int16 partial sums of the SIMD kernels are at their bounds here */
    const int ks[] = {128, 2560, 6912};
    for (int ki = 0; ki < 3; ki++)
        for (int t_mode = -1; t_mode <= 1; t_mode++)
            for (int q_mode = 1; q_mode <= 3; q_mode++) {
                const int n = rng_int(1, 9), nb = rng_int(1, 9);
                check_i2s_case(tables, n_tables, n, ks[ki], nb, t_mode, q_mode);
            }
    /* big enough for several gemm token batches (64 tokens) */
    check_i2s_case(tables, n_tables, 5, 300, 70, 0, 3);
    /* every remainder of the avx512-vnni gemm tile (4 rows x 4 tokens) and gemv row group, at the extremes */
    for (int n = 8; n <= 11; n++)
        for (int nb = 4; nb <= 7; nb++) check_i2s_case(tables, n_tables, n, 2560, nb, n % 2 ? 1 : -1, 3);
    check_i2s_case(tables, n_tables, 13, 6912, 67, 0, 0);
}

/* ----------------------------------------------------------------------------------------------------------
 * thread pool */

typedef struct {
    int nth_seen[16];
    int runs[16];
    int *items;  /* [n_items]: how often each item was processed */
    int n_items;
} pool_ctx;

static void pool_task(void *p, int ith, int nth) {
    pool_ctx *c = p;
    c->nth_seen[ith] = nth;
    c->runs[ith]++;
    int s, e;
    be_split_range(c->n_items, ith, nth, 3, &s, &e);
    for (int i = s; i < e; i++) c->items[i]++;
}

static void test_threadpool(void) {
    /* be_split_range: the pieces tile [0, n) in order, aligned to `align` except at n */
    for (int n = 0; n <= 70; n += 7)
        for (int nth = 1; nth <= 5; nth++)
            for (int align = 1; align <= 17; align += 4) {
                int prev_end = 0;
                for (int ith = 0; ith < nth; ith++) {
                    int s, e;
                    be_split_range(n, ith, nth, align, &s, &e);
                    CHECK(s == prev_end && e >= s && e <= n, "split_range n=%d nth=%d align=%d ith=%d: [%d, %d)", n,
                          nth, align, ith, s, e);
                    CHECK(s % align == 0 && (e % align == 0 || e == n), "split_range alignment [%d, %d)", s, e);
                    prev_end = e;
                }
                CHECK(prev_end == n, "split_range n=%d nth=%d align=%d ends at %d", n, nth, align, prev_end);
            }

    for (int nt = 1; nt <= 4; nt++) {
        be_pool *pool = be_pool_create(nt);
        CHECK(pool != NULL && be_pool_size(pool) == nt, "be_pool_create(%d)", nt);
        if (!pool) continue;
        pool_ctx c;
        memset(&c, 0, sizeof(c));
        c.n_items = 1000;
        c.items = calloc((size_t)c.n_items, sizeof(int));
        const int reps = nt <= 2 ? 2000 : 300;  /* more threads than this 2-core CI machine has: slow */
        for (int rep = 0; rep < reps; rep++) be_pool_run(pool, pool_task, &c);
        for (int i = 0; i < nt; i++)
            CHECK(c.runs[i] == reps && c.nth_seen[i] == nt, "pool of %d: thread %d ran %d times with nth %d", nt, i,
                  c.runs[i], c.nth_seen[i]);
        for (int i = 0; i < c.n_items; i++)
            CHECK(c.items[i] == reps, "pool of %d: item %d processed %d times", nt, i, c.items[i]);
        free(c.items);
        be_pool_free(pool);
    }
}

/* ---------------------------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    char info[512], cpu[256], err[512];
    if (argc >= 2 && !strcmp(argv[1], "check")) {
        /* first thing, as bitedge-run does: this build may hold instructions the CPU lacks */
        const int rc = be_cpu_check_build(err, sizeof(err));
        printf("%s\n", rc == 0 ? "ok" : err);
        return rc == 0 ? 0 : 3;
    }
    const be_kernels *tables[MAX_TABLES];
    const int n_tables = be_kernels_list(tables, MAX_TABLES);
    if (argc >= 2) return test_kernels_file_mode(argc, argv, tables, n_tables);

    be_system_info(info, sizeof(info));
    be_cpu_name(cpu, sizeof(cpu));
    printf("cpu: %s\n", cpu);
    printf("system_info: %s\n", info);
    printf("tables:");
    for (int i = 0; i < n_tables; i++) printf(" %s", tables[i]->name);
    printf("\nselected: %s\n", be_kernels_select()->name);
    printf("build_check: %s\n", be_cpu_check_build(err, sizeof(err)) == 0 ? "ok" : err);

    /* the table list and the look-up by name agree, and name nothing this CPU cannot run */
    CHECK(n_tables >= 1 && tables[n_tables - 1] == &be_kernels_scalar, "scalar is the last table");
    CHECK(be_kernels_select() == tables[0], "select picks the first table");
    for (int i = 0; i < n_tables; i++) CHECK(be_kernels_by_name(tables[i]->name) == tables[i], "by_name %s", tables[i]->name);
    CHECK(be_kernels_by_name("no-such-table") == NULL, "by_name of an unknown table");
    const be_cpu_features *f = be_cpu_get();
    if (!f->dotprod) CHECK(be_kernels_by_name("neon-dotprod") == NULL, "neon-dotprod offered without DOTPROD");
    if (!f->avx2) CHECK(be_kernels_by_name("avx2") == NULL, "avx2 offered without AVX2");
    if (!(f->avx512f && f->avx512bw && f->avx512vl && f->avx512_vnni && f->avx2))
        CHECK(be_kernels_by_name("avx512-vnni") == NULL, "avx512-vnni offered without AVX-512 VNNI");
    if (!(f->avx_vnni && f->avx2 && f->fma && f->f16c))
        CHECK(be_kernels_by_name("avx-vnni") == NULL, "avx-vnni offered without AVX-VNNI");
    /* order: avx512-vnni, then avx-vnni, then avx2 (a CPU with both VNNI forms, Zen 5, gets the EVEX one) */
    for (int i = 0; i + 1 < n_tables; i++) {
        CHECK(!(strcmp(tables[i]->name, "avx2") == 0 && strstr(tables[i + 1]->name, "vnni")),
              "avx2 listed before %s", tables[i + 1]->name);
        CHECK(!(strcmp(tables[i]->name, "avx-vnni") == 0 && strcmp(tables[i + 1]->name, "avx512-vnni") == 0),
              "avx-vnni listed before avx512-vnni");
    }
    /* be_kernels_cpu_lacks: NULL for what runs here and for unknown names, a reason for the rest of the build */
    for (int i = 0; i < n_tables; i++)
        CHECK(be_kernels_cpu_lacks(tables[i]->name) == NULL, "cpu_lacks(%s) for a table this CPU runs", tables[i]->name);
    CHECK(be_kernels_cpu_lacks("no-such-table") == NULL, "cpu_lacks of an unknown table");
#if BE_HAVE_AVX512VNNI_KERNELS
    if (!be_kernels_by_name("avx512-vnni")) {
        const char *why = be_kernels_cpu_lacks("avx512-vnni");
        CHECK(why != NULL && why[0] != '\0', "cpu_lacks(avx512-vnni) gives no reason on a CPU that cannot run it");
    }
#endif
#if BE_HAVE_AVXVNNI_KERNELS
    if (!be_kernels_by_name("avx-vnni")) {
        const char *why = be_kernels_cpu_lacks("avx-vnni");
        CHECK(why != NULL && why[0] != '\0', "cpu_lacks(avx-vnni) gives no reason on a CPU that cannot run it");
        if (f->avx2 && f->fma && f->f16c)
            CHECK(why && strstr(why, "AVX-VNNI") != NULL, "cpu_lacks(avx-vnni) on an AVX2 CPU: %s", why ? why : "NULL");
    }
#endif

    test_quantize(tables, n_tables);
    test_f16();
    test_i2s(tables, n_tables);
    if (&be_kernels_vnni_emulated != NULL && be_kernels_by_name("avx2")) {
        const be_kernels *emulated[1] = {&be_kernels_vnni_emulated};
        printf("emulated: %s\n", be_kernels_vnni_emulated.name);
        test_i2s(emulated, 1);
    }
    test_float(tables, n_tables);
    test_threadpool();

    if (n_failures) {
        printf("%d of %d checks FAILED\n", n_failures, n_checks);
        return 1;
    }
    printf("all %d checks passed\n", n_checks);
    return 0;
}
