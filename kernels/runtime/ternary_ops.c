/* The ternary operation tables (ternary_ops.h): I2_S from the be_kernels tables, TL1 / TL2 from the rendered ones. */
#include "ternary_ops.h"

#include <pthread.h>
#include <stdio.h>

#include "bitedge_layouts.h"
#include "bitedge_tl1_kernels.h"
#include "bitedge_tl2_kernels.h"
#include "cpu_features.h"
#include "model.h"

/* ----------------------------------------------------------------------------------------------------------
 * I2_S: the kernels read the quantized rows (act = xq, act_stride = kp); one table per compiled be_kernels table */

static int i2s_act_row_bytes(int k) { return be_i2s_kp(k); }
static size_t no_tables(int kp) { (void)kp; return 0; }

/* the common signatures over one be_kernels table's I2_S kernels (the gemm's act_stride is kp by construction) */
#define I2S_OPS(suffix, table)                                                                                        \
    static void i2s_gemv_##suffix(const uint8_t *w, const void *act, int32_t *acc, int n0, int n1, int kp) {        \
        (table).i2s_gemv(w, act, acc, n0, n1, kp);                                                                  \
    }                                                                                                               \
    static void i2s_gemm_##suffix(const uint8_t *w, const void *act, size_t act_stride, int32_t *acc, int n, int n0, \
                                  int n1, int kp, int nb) {                                                         \
        (void)act_stride;                                                                                           \
        (table).i2s_gemm(w, act, acc, n, n0, n1, kp, nb);                                                           \
    }
#define I2S_ENTRY(suffix, table) \
    {&(table), {"i2_s/" #suffix, 16, i2s_act_row_bytes, no_tables, NULL, i2s_gemv_##suffix, i2s_gemm_##suffix}}

I2S_OPS(scalar, be_kernels_scalar)
#if BE_HAVE_AVX2_KERNELS
I2S_OPS(avx2, be_kernels_avx2)
#endif
#if BE_HAVE_AVX512VNNI_KERNELS
I2S_OPS(avx512vnni, be_kernels_avx512vnni)
#endif
#if BE_HAVE_AVXVNNI_KERNELS
I2S_OPS(avxvnni, be_kernels_avxvnni)
#endif
#if BE_HAVE_NEON_KERNELS
I2S_OPS(neon, be_kernels_neon)
#endif
#if BE_HAVE_DOTPROD_KERNELS
I2S_OPS(neon_dotprod, be_kernels_neon_dotprod)
#endif
#if BE_HAVE_I8MM_KERNELS
I2S_OPS(neon_i8mm, be_kernels_neon_i8mm)
#endif

static const struct {
    const be_kernels *kernels;
    be_ternary_ops ops;
} i2s_ops[] = {
#if BE_HAVE_AVX512VNNI_KERNELS
    I2S_ENTRY(avx512vnni, be_kernels_avx512vnni),
#endif
#if BE_HAVE_AVXVNNI_KERNELS
    I2S_ENTRY(avxvnni, be_kernels_avxvnni),
#endif
#if BE_HAVE_AVX2_KERNELS
    I2S_ENTRY(avx2, be_kernels_avx2),
#endif
#if BE_HAVE_I8MM_KERNELS
    I2S_ENTRY(neon_i8mm, be_kernels_neon_i8mm),
#endif
#if BE_HAVE_DOTPROD_KERNELS
    I2S_ENTRY(neon_dotprod, be_kernels_neon_dotprod),
#endif
#if BE_HAVE_NEON_KERNELS
    I2S_ENTRY(neon, be_kernels_neon),
#endif
    I2S_ENTRY(scalar, be_kernels_scalar),
};
#define N_I2S_OPS (sizeof(i2s_ops) / sizeof(i2s_ops[0]))

/* ----------------------------------------------------------------------------------------------------------
 * TL1 / TL2: the rendered tables (as many as the target's ISAs), in the common shape once per process */

#define N_TL1 (sizeof(be_tl1_kernels_list) / sizeof(be_tl1_kernels_list[0]))
#define N_TL2 (sizeof(be_tl2_kernels_list) / sizeof(be_tl2_kernels_list[0]))

static int tl1_act_row_bytes(int k) { return be_tl1_kp(k); }
static int tl2_act_row_bytes(int k) { return be_tl2_kp(k); }

static be_ternary_ops tl1_ops[N_TL1], tl2_ops[N_TL2];
static char tl1_names[N_TL1][32], tl2_names[N_TL2][32];
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static void fill_tl(be_ternary_ops *ops, char (*names)[32], const be_tl_kernels *list, size_t n, const char *method,
                    int (*act_row_bytes)(int), size_t (*table_bytes)(int)) {
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "%s/%s", method, list[i].name);
        ops[i] = (be_ternary_ops){names[i], 32, act_row_bytes, table_bytes, list[i].prepare, list[i].gemv,
                                  list[i].gemm};
    }
}

static void fill_tl_ops(void) {
    fill_tl(tl1_ops, tl1_names, be_tl1_kernels_list, N_TL1, "tl1", tl1_act_row_bytes, be_tl1_tables_bytes);
    fill_tl(tl2_ops, tl2_names, be_tl2_kernels_list, N_TL2, "tl2", tl2_act_row_bytes, be_tl2_tables_bytes);
}

const be_ternary_ops *be_ternary_ops_for(int packing, const be_kernels *kern) {
    switch (packing) {
    case BE_PACK_I2_S:
        for (size_t i = 0; i < N_I2S_OPS; i++)
            if (i2s_ops[i].kernels == kern) return &i2s_ops[i].ops;
        return &i2s_ops[N_I2S_OPS - 1].ops;  /* a table this file does not know: the scalar twin */
    case BE_PACK_TL1:
        pthread_once(&tl_once, fill_tl_ops);
        return &tl1_ops[be_tl1_kernels_for(kern->name) - be_tl1_kernels_list];
    case BE_PACK_TL2:
        pthread_once(&tl_once, fill_tl_ops);
        return &tl2_ops[be_tl2_kernels_for(kern->name) - be_tl2_kernels_list];
    default:
        return NULL;
    }
}
