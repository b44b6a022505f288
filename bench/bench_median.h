/* What the bench_* programs share: the median of a benchmark's runs, and sgemm's own rate. */
#ifndef NN_BENCH_MEDIAN_H
#define NN_BENCH_MEDIAN_H

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "nn_base.h"

/* The median, leaving x in the order the runs are printed. */
static inline double median(const double *x, int n)
{
    double *s = malloc((size_t)n * sizeof *s);
    if (!s)
        return x[0];
    memcpy(s, x, (size_t)n * sizeof *s);
    double m = nn_median_in_place(s, (size_t)n);
    free(s);
    return m;
}

/* OpenBLAS sgemm GFLOP/s on an (M x K) (K x N) product: the median of reps after a warm-up. */
static inline double sgemm_gflops(int M, int N, int K, int reps, nn_err *err)
{
    float *a = nn_calloc((size_t)M * K, sizeof *a, err),
          *b = nn_calloc((size_t)K * N, sizeof *b, err),
          *c = nn_calloc((size_t)M * N, sizeof *c, err);
    double *t = nn_calloc((size_t)reps, sizeof *t, err), g = 0;
    if (a && b && c && t) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            a[i] = (float)(i % 7) * 0.01f;
        for (size_t i = 0; i < (size_t)K * N; i++)
            b[i] = (float)(i % 5) * 0.01f;
        for (int r = -1; r < reps; r++) {
            double t0 = nn_seconds();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c,
                        N);
            if (r >= 0)
                t[r] = nn_seconds() - t0;
        }
        g = 2.0 * M * N * K / median(t, reps) / 1e9;
    }
    nn_free(a);
    nn_free(b);
    nn_free(c);
    nn_free(t);
    return g;
}

#endif
