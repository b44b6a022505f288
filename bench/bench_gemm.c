/* bench_gemm: the bfloat16 kernel alone against OpenBLAS sgemm, one thread, at the GPT-2-small and
 * Llama-8B linear shapes (docs/benchmarks.md, "bfloat16 checkpoints"). For each K x N: the kernel
 * this CPU gets (nn_bf16_matmul_gflops: oneDNN's matmul on AMX, the vdpbf16ps kernel elsewhere,
 * ROWS rows in 128-row calls) and cblas_sgemm on 128 rows (the row count of one bfloat16 call),
 * GFLOP/s, medians of REPS after a warm-up.
 *
 *   OPENBLAS_NUM_THREADS=1 taskset -c 0 build/bench_gemm [ROWS] [REPS]   (defaults 1024, 5)
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm_bf16.h"
#include "nn_base.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double sgemm_gflops(int M, int N, int K, int reps)
{
    float *a = calloc((size_t)M * K, sizeof *a), *b = calloc((size_t)K * N, sizeof *b),
          *c = calloc((size_t)M * N, sizeof *c);
    double t[64], g = 0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            a[i] = (float)(i % 7) * 0.01f;
        for (int r = -1; r < reps; r++) {
            double t0 = nn_seconds();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c,
                        N);
            if (r >= 0)
                t[r] = nn_seconds() - t0;
        }
        qsort(t, (size_t)reps, sizeof t[0], cmp_double);
        g = 2.0 * M * N * K / t[reps / 2] / 1e9;
    }
    free(a);
    free(b);
    free(c);
    return g;
}

int main(int argc, char **argv)
{
    int rows = argc > 1 ? atoi(argv[1]) : 1024, reps = argc > 2 ? atoi(argv[2]) : 5;
    if (rows < 1 || reps < 1 || reps > 64) {
        fprintf(stderr, "usage: bench_gemm [ROWS] [REPS (1-64)]\n");
        return 2;
    }
    char desc[192];
    nn_bf16_kernel_for(NN_COMPUTE_BF16, desc, sizeof desc);
    printf("bfloat16 kernel: %s; %d rows, median of %d\n\n", desc, rows, reps);
    printf("| K x N | bfloat16 kernel GFLOP/s | sgemm (128 rows) GFLOP/s | ratio |\n");
    printf("|---|---:|---:|---:|\n");
    static const int shapes[][2] = {{768, 2304},  {768, 768},    {768, 3072},  {3072, 768},
                                    {4096, 4096}, {4096, 14336}, {14336, 4096}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int K = shapes[i][0], N = shapes[i][1];
        double b = nn_bf16_matmul_gflops(rows, N, K, reps), f = sgemm_gflops(128, N, K, reps);
        printf("| %d x %d | %.0f | %.0f | %.2fx |\n", K, N, b, f, f > 0 ? b / f : 0);
    }
    return 0;
}
