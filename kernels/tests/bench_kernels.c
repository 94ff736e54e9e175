/* Micro-benchmark of the I2_S kernels at the BitNet b1.58 2B-4T shapes, single thread (not run by tests).
 *
 *   cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Ikernels/runtime -o bench_kernels kernels/tests/bench_kernels.c \
 *      kernels/runtime/kernels.c kernels/runtime/kernels_avx2.c kernels/runtime/kernels_avxvnni.c \
 *      kernels/runtime/kernels_avx512vnni.c kernels/runtime/kernels_neon.c \
 *      kernels/runtime/cpu_features.c kernels/runtime/threadpool.c kernels/runtime/greedy_bound.c -lm -pthread
 *   ./bench_kernels [reps=20] [gemm tokens=8] [cold MB=0]
 *
 * For every table this CPU can run and every shape N x K (out x in): gemv (one token) and gemm (several tokens)
 * as mean +- sd over reps of GOPS (2*N*K*tokens multiply-adds counted as 2 ops) and GB/s of packed weights
 * read (N*K/4 bytes per call), plus the speed-up over the scalar table; then each table's float gemv over an
 * output matrix in Q8_0, Q6_K and Q4_0 (GB/s of weight bytes, G weights/s). Warm (default): one matrix, which
 * stays in the last-level cache. Cold: successive calls walk a ring of copies totalling "cold MB", so weights
 * stream from DRAM as in token generation with a real model. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_features.h"
#include "kernels.h"

/* the thread's CPU time: single-threaded, it equals wall time on an idle board and is not inflated by
 * preemption on a shared machine (which is where these numbers were first taken) */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_u64(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef struct {
    double mean, sd;
} stat;

static stat stats(const double *v, int n) {
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m += v[i];
    m /= n;
    for (int i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    stat r = {m, n > 1 ? sqrt(s / (n - 1)) : 0.0};
    return r;
}

/* seconds per call of one kernel: each rep times enough calls to last >= 20 ms */
static void call(const be_kernels *k, const uint8_t *w, const int8_t *q, int32_t *acc, int n, int kp, int nb) {
    if (nb == 1) k->i2s_gemv(w, q, acc, 0, n, kp);
    else k->i2s_gemm(w, q, acc, n, 0, n, kp, nb);
}

/* w is a ring of n_copies matrices; call c uses copy c % n_copies */
static void time_kernel(const be_kernels *k, const uint8_t *w, int n_copies, const int8_t *q, int32_t *acc, int n,
                        int kp, int nb, int reps, double *secs) {
    const size_t bytes = (size_t)n * kp / 4;
    int calls = 1, next = 0;
    for (;;) {  /* calibrate (and warm the caches) */
        double t0 = now_s();
        for (int c = 0; c < calls; c++, next = (next + 1) % n_copies) call(k, w + next * bytes, q, acc, n, kp, nb);
        if (now_s() - t0 >= 0.02 || calls >= 1 << 20) break;
        calls *= 2;
    }
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int c = 0; c < calls; c++, next = (next + 1) % n_copies) call(k, w + next * bytes, q, acc, n, kp, nb);
        secs[r] = (now_s() - t0) / calls;
    }
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 20;
    const int gemm_nb = argc > 2 ? atoi(argv[2]) : 8;
    const double cold_mb = argc > 3 ? atof(argv[3]) : 0.0;
    if (reps < 2 || gemm_nb < 2 || cold_mb < 0) {
        fprintf(stderr, "usage: bench_kernels [reps >= 2] [gemm tokens >= 2] [cold MB >= 0]\n");
        return 2;
    }
    static const int shapes[][2] = {{2560, 2560}, {6912, 2560}, {2560, 6912}};  /* N x K */
    const be_kernels *tables[8];
    const int n_tables = be_kernels_list(tables, 8);
    char info[512], cpu[256];
    be_system_info(info, sizeof(info));
    be_cpu_name(cpu, sizeof(cpu));
    printf("cpu: %s\nsystem_info: %s\nreps: %d, gemm tokens: %d, single thread (thread CPU time), %s\n\n", cpu, info, reps, gemm_nb,
           cold_mb > 0 ? "cold (weights from DRAM)" : "warm (weights in cache)");
    printf("%-12s %-5s %-11s %18s %18s %9s\n", "table", "op", "N x K", "GOPS", "GB/s (weights)", "vs scalar");

    double *secs = malloc((size_t)reps * sizeof(double));
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const int n = shapes[s][0], kp = shapes[s][1];  /* both K are multiples of 128 */
        const size_t bytes = (size_t)n * kp / 4;
        const int n_copies = cold_mb > 0 ? (int)(cold_mb * 1e6 / (double)bytes) + 1 : 1;
        uint8_t *w = malloc(bytes * n_copies);
        int8_t *q = malloc((size_t)gemm_nb * kp);
        int32_t *acc = malloc((size_t)gemm_nb * n * sizeof(int32_t));
        if (!w || !q || !acc) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < bytes * n_copies; i++) {
            uint8_t b = 0;
            for (int j = 0; j < 4; j++) b = (uint8_t)(b << 2 | (next_u64() % 3));  /* codes 0..2 */
            w[i] = b;
        }
        for (size_t i = 0; i < (size_t)gemm_nb * kp; i++) q[i] = (int8_t)(next_u64() & 0xff);
        for (int nbi = 0; nbi < 2; nbi++) {
            const int nb = nbi == 0 ? 1 : gemm_nb;
            double scalar_mean = 0;
            for (int t = n_tables - 1; t >= 0; t--) {  /* scalar (last) first, for the ratio */
                time_kernel(tables[t], w, n_copies, q, acc, n, kp, nb, reps, secs);
                double gops[256], gbs[256];
                const int m = reps < 256 ? reps : 256;
                for (int r = 0; r < m; r++) {
                    gops[r] = 2.0 * n * kp * nb / secs[r] * 1e-9;
                    gbs[r] = (double)n * kp / 4 / secs[r] * 1e-9;
                }
                stat g = stats(gops, m), b = stats(gbs, m);
                if (t == n_tables - 1) scalar_mean = g.mean;
                char shape[32];
                snprintf(shape, sizeof(shape), "%dx%d", n, kp);
                printf("%-12s %-5s %-11s %9.2f +- %5.2f %9.2f +- %5.2f %8.2fx\n", tables[t]->name,
                       nb == 1 ? "gemv" : "gemm", shape, g.mean, g.sd, b.mean, b.sd, g.mean / scalar_mean);
            }
        }
        free(w);
        free(q);
        free(acc);
    }
    /* the output matrix of the 700M shape (vocab 32000 x hidden 1536; 52 MB at Q8_0, 40 at Q6_K, 28 at Q4_0: larger
     * than the L3, so it streams from DRAM as in generation) times a float activation vector, in each block type:
     * GB/s of weight bytes and G weights/s (the smaller types read fewer bytes per weight, unpack more) */
    static const struct { int type; const char *name; } float_types[] = {{BE_Q8_0, "q8_0"}, {BE_Q6_K, "q6_k"},
                                                                        {BE_Q4_0, "q4_0"}};
    for (size_t ft = 0; ft < sizeof(float_types) / sizeof(float_types[0]); ft++) {
        const int n = 32000, k = 1536, type = float_types[ft].type;
        const size_t bytes = be_float_row_bytes(type, k) * (size_t)n;
        uint8_t *w = malloc(bytes);
        float *x = malloc((size_t)k * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
        if (!w || !x || !y) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)(next_u64() & 0x3f);  /* every half d below 2: finite */
        for (int i = 0; i < k; i++) x[i] = (float)((int)(next_u64() % 2001) - 1000) / 1000.0f;
        for (int t = n_tables - 1; t >= 0; t--) {
            double gbs[256];
            const int m = reps < 256 ? reps : 256;
            for (int r = 0; r < m; r++) {
                const double t0 = now_s();
                tables[t]->float_gemv(w, type, x, y, 0, n, k);
                gbs[r] = (double)bytes / (now_s() - t0) * 1e-9;
            }
            stat b = stats(gbs, m);
            const double weights_per_byte = (double)n * k / (double)bytes;
            printf("%-12s %-5s %-11s %18s %9.2f +- %5.2f GB/s  %6.2f Gweights/s\n", tables[t]->name,
                   float_types[ft].name, "32000x1536", "", b.mean, b.sd, b.mean * weights_per_byte);
            if (type != BE_Q8_0 || !tables[t]->q8_0_i16_gemv) continue;
            /* the greedy output's int16 pass over the same matrix (output_greedy.c) */
            int16_t *xi = malloc((size_t)k * sizeof(int16_t));
            be_greedy_quantize_x(x, xi, k);
            for (int r = 0; r < m; r++) {
                const double t0 = now_s();
                tables[t]->q8_0_i16_gemv(w, xi, y, 0, n, k);
                gbs[r] = (double)bytes / (now_s() - t0) * 1e-9;
            }
            b = stats(gbs, m);
            printf("%-12s %-5s %-11s %18s %9.2f +- %5.2f GB/s  %6.2f Gweights/s\n", tables[t]->name, "q8_0/i16",
                   "32000x1536", "", b.mean, b.sd, b.mean * weights_per_byte);
            free(xi);
        }
        free(w);
        free(x);
        free(y);
    }
    free(secs);
    return 0;
}
