/* What the parts of test_kernels share: the check counter, one random stream, the allocation helper, and the
 * entry points of the parts in other files (test_kernels_io.c: the file modes; test_kernels_float.c: float gemv) */
#ifndef BITEDGE_TEST_KERNELS_H
#define BITEDGE_TEST_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels.h"

extern int n_checks, n_failures;  /* test_kernels.c */

#define CHECK(cond, ...)                                  \
    do {                                                  \
        n_checks++;                                       \
        if (!(cond)) {                                    \
            n_failures++;                                 \
            if (n_failures <= 40) {                       \
                printf("FAIL %s:%d: ", __FILE__, __LINE__); \
                printf(__VA_ARGS__);                      \
                printf("\n");                             \
            }                                             \
        }                                                 \
    } while (0)

/* ----------------------------------------------------------------------------------------------------------
 * deterministic random numbers (splitmix64) */

extern uint64_t rng_state;  /* test_kernels.c: one stream for every test */

static inline uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline int rng_int(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); }  /* [lo, hi] */
static inline float rng_float(void) { return (float)((rng_next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

/* malloc that exits with "out of memory" instead of returning NULL */
void *xmalloc(size_t n);

/* argv[1] names a file mode (i2s, quant, float, f16): runs it and returns its exit code; anything else: usage, 2 */
int test_kernels_file_mode(int argc, char **argv, const be_kernels *const *tables, int n_tables);

/* every float output type through every table's float_gemv, against a float64 product (test_kernels_float.c) */
void test_float(const be_kernels *const *tables, int n_tables);

#endif
