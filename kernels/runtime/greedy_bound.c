/* The greedy output's arithmetic (kernels.h; output_greedy.c says why the bound holds): x rounded to int16, and
 * the factor of the bound B_r = W_r * be_greedy_bound_per_w(max|x|, k). Apart from output_greedy.c so that the
 * kernel tests check the bound against every table's two products. */
#include "kernels.h"

#include <math.h>

#define I16_MAX 32767

static double gamma_n(int n) {
    const double u = 0x1p-24;
    return n * u / (1.0 - n * u);
}

/* X_j = rint(x_j * (32767 / m)), clamped to +-32767; m = max|x_j| (NaN if an x_j is NaN) */
float be_greedy_quantize_x(const float *x, int16_t *X, int k) {
    float m = 0.0f;
    for (int j = 0; j < k; j++) {
        if (isnan(x[j])) return NAN;  /* fmaxf would pass over it */
        m = fmaxf(m, fabsf(x[j]));
    }
    if (!(m > 0.0f) || !isfinite(m)) return m;
    const float inv = (float)I16_MAX / m;
    for (int j = 0; j < k; j++) {
        float v = rintf(x[j] * inv);
        X[j] = (int16_t)(v > I16_MAX ? I16_MAX : v < -I16_MAX ? -I16_MAX : v);
    }
    return m;
}

double be_greedy_bound_per_w(float max_x, int k) {
    const int nb = k / BE_Q8_0_BLOCK;
    /* output_greedy.c's factor, and 1e-6 on top for the double arithmetic of its comparisons */
    return (double)max_x * (0.51 / I16_MAX + gamma_n(nb + 9) + gamma_n(nb + 40)) * (1.0 + 1e-6);
}
