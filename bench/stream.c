/* A STREAM-like memory bandwidth probe for the roofline in bench/ (read, copy, triad).
 *
 * Generation streams every weight once per token, so the "read" figure (a sum over a large buffer, the
 * access pattern of a matrix-vector product) is the ceiling for tokens/s: bytes per token / read GB/s.
 * Usage: stream [threads] [MiB per array]   -> one JSON object on stdout (best of 7 runs per kernel). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    double *a, *b, *c; /* [n] each */
    size_t n0, n1;
    int kernel; /* 0 read, 1 copy, 2 triad */
    double sum;
} job;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *work(void *p) {
    job *j = p;
    if (j->kernel == 0) {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0; /* 4 chains so the adds are not latency-bound */
        size_t i = j->n0;
        for (; i + 4 <= j->n1; i += 4) { s0 += j->a[i]; s1 += j->a[i + 1]; s2 += j->a[i + 2]; s3 += j->a[i + 3]; }
        for (; i < j->n1; i++) s0 += j->a[i];
        j->sum = s0 + s1 + s2 + s3;
    } else if (j->kernel == 1) {
        memcpy(j->c + j->n0, j->a + j->n0, (j->n1 - j->n0) * sizeof(double));
    } else {
        for (size_t i = j->n0; i < j->n1; i++) j->a[i] = j->b[i] + 3.0 * j->c[i];
    }
    return NULL;
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 1;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 256;
    if (nth < 1 || nth > 256 || mib < 1 || mib > 65536) { fprintf(stderr, "usage: stream [threads 1..256] [MiB 1..65536]\n"); return 2; }
    size_t n = mib * 1024 * 1024 / sizeof(double);
    double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double)), *c = malloc(n * sizeof(double));
    if (!a || !b || !c) { fprintf(stderr, "stream: out of memory\n"); return 1; }
    for (size_t i = 0; i < n; i++) { a[i] = 1.0; b[i] = 2.0; c[i] = 0.5; }
    const double bytes[3] = {1, 2, 3}; /* arrays touched per element */
    pthread_t th[256];
    job jobs[256];
    double best[3] = {0, 0, 0}, check = 0;
    for (int k = 0; k < 3; k++) {
        for (int rep = 0; rep < 7; rep++) {
            double t0 = now();
            for (int t = 0; t < nth; t++) {
                jobs[t] = (job){a, b, c, n * t / nth, n * (t + 1) / nth, k, 0};
                pthread_create(&th[t], NULL, work, &jobs[t]);
            }
            for (int t = 0; t < nth; t++) { pthread_join(th[t], NULL); check += jobs[t].sum; }
            double gbs = bytes[k] * n * sizeof(double) / (now() - t0) / 1e9;
            if (gbs > best[k]) best[k] = gbs;
        }
    }
    printf("{\"threads\": %d, \"mib\": %zu, \"read_gbs\": %.3f, \"copy_gbs\": %.3f, \"triad_gbs\": %.3f, \"check\": %.1f}\n",
           nth, mib, best[0], best[1], best[2], check);
    free(a); free(b); free(c);
    return 0;
}
