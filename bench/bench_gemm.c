/* bench_gemm: the bfloat16 kernel alone against OpenBLAS sgemm, one thread, at the GPT-2-small and
 * Llama-8B linear shapes (docs/benchmarks.md, "bfloat16 checkpoints"). For each K x N: the kernel
 * this CPU gets (nn_bf16_matmul_gflops: oneDNN's matmul on AMX, the vdpbf16ps kernel elsewhere,
 * ROWS rows in 128-row calls) and cblas_sgemm on 128 rows (the row count of one bfloat16 call),
 * GFLOP/s, medians of REPS after a warm-up.
 *
 *   OPENBLAS_NUM_THREADS=1 taskset -c 0 build/bench_gemm [ROWS] [REPS]   (defaults 1024, 5)
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_median.h"
#include "gemm_bf16.h"

int main(int argc, char **argv)
{
    int rows = argc > 1 ? atoi(argv[1]) : 1024, reps = argc > 2 ? atoi(argv[2]) : 5;
    if (rows < 1 || reps < 1 || reps > 64) {
        fprintf(stderr, "usage: bench_gemm [ROWS] [REPS (1-64)]\n");
        return 2;
    }
    nn_err err;
    char desc[192];
    nn_bf16_kernel_for(NN_COMPUTE_BF16, desc, sizeof desc);
    printf("bfloat16 kernel: %s; %d rows, median of %d\n\n", desc, rows, reps);
    printf("| K x N | bfloat16 kernel GFLOP/s | sgemm (128 rows) GFLOP/s | ratio |\n");
    printf("|---|---:|---:|---:|\n");
    static const int shapes[][2] = {{768, 2304},  {768, 768},    {768, 3072},  {3072, 768},
                                    {4096, 4096}, {4096, 14336}, {14336, 4096}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int K = shapes[i][0], N = shapes[i][1];
        double b = nn_bf16_matmul_gflops(rows, N, K, reps), f = sgemm_gflops(128, N, K, reps, &err);
        printf("| %d x %d | %.0f | %.0f | %.2fx |\n", K, N, b, f, f > 0 ? b / f : 0);
    }
    return 0;
}
