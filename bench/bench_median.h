/* The median of a benchmark's runs, for the bench_* programs. */
#ifndef NN_BENCH_MEDIAN_H
#define NN_BENCH_MEDIAN_H

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

#endif
