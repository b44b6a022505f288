/* oneDNN's own bfloat16 matmul rate at the forward's shapes, one thread, by rows per call (128 =
 * nnterp's NN_BF16_ROWS, 256, all 1,024 at once) and weight layout (plain Hugging Face [N][K]
 * strides, or oneDNN's blocked layout, "any"): the ceiling nnterp's bfloat16 GEMM can reach on
 * this CPU (docs/benchmarks.md, "bfloat16 checkpoints"). Best of 3 per row.
 *   cc -O2 bench/onednn_rows.c -o /tmp/onednn_rows -ldnnl && OMP_NUM_THREADS=1 taskset -c 1
 * /tmp/onednn_rows
 */
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static dnnl_engine_t eng;
static dnnl_stream_t stm;
/* rows x K bf16 @ (K x N, plain [N][K] i.e. strides {1,K}) or blocked (any) */
static double run(int rows, int M, int K, int N, int blocked, int reps)
{
    dnnl_memory_desc_t src, wei, dst, wany;
    dnnl_dims_t sd = {rows, K}, wd = {K, N}, dd = {rows, N};
    dnnl_dims_t ss = {K, 1}, ws = {1, K}, ds = {N, 1};
    dnnl_memory_desc_init_by_strides(&src, 2, sd, dnnl_bf16, ss);
    dnnl_memory_desc_init_by_strides(&wei, 2, wd, dnnl_bf16, ws);
    dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_bf16, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_strides(&dst, 2, dd, dnnl_f32, ds);
    dnnl_matmul_desc_t md;
    dnnl_matmul_desc_init(&md, &src, blocked ? &wany : &wei, NULL, &dst);
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL)) {
        printf("pd fail\n");
        return 0;
    }
    const char *impl;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    dnnl_primitive_t p;
    dnnl_primitive_create(&p, pd);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    size_t wb = dnnl_memory_desc_get_size(wmd);
    void *W = aligned_alloc(64, (wb + 63) / 64 * 64);
    memset(W, 0x3f, wb);
    void *X = aligned_alloc(64, (size_t)M * K * 2);
    memset(X, 0x3f, (size_t)M * K * 2);
    float *Y = aligned_alloc(64, (size_t)rows * N * 4);
    dnnl_memory_t mw;
    dnnl_memory_create(&mw, wmd, eng, W);
    dnnl_memory_t md_;
    dnnl_memory_create(&md_, &dst, eng, Y);
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int m0 = 0; m0 < M; m0 += rows) {
            dnnl_memory_t ms;
            dnnl_memory_create(&ms, &src, eng, (char *)X + (size_t)m0 * K * 2);
            dnnl_exec_arg_t a[3] = {
                {DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md_}};
            dnnl_primitive_execute(p, stm, 3, a);
            dnnl_stream_wait(stm);
            dnnl_memory_destroy(ms);
        }
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    double gf = 2.0 * M * K * N / best / 1e9;
    printf("rows %4d M %d K %d N %d %s: %.1f GFLOP/s  (%s)\n", rows, M, K, N,
           blocked ? "blocked" : "plain  ", gf, impl);
    free(W);
    free(X);
    free(Y);
    dnnl_primitive_destroy(p);
    dnnl_primitive_desc_destroy(pd);
    return gf;
}
int main(void)
{
    dnnl_engine_create(&eng, dnnl_cpu, 0);
    dnnl_stream_create(&stm, eng, dnnl_stream_default_flags);
    int shapes[][2] = {{4096, 4096}, {4096, 14336}, {14336, 4096}, {768, 3072}, {3072, 768}};
    for (int s = 0; s < 5; s++) {
        int K = shapes[s][0], N = shapes[s][1];
        int M = 1024;
        for (int b = 0; b < 2; b++) {
            run(128, M, K, N, b, 3);
            run(256, M, K, N, b, 3);
            run(1024, M, K, N, b, 3);
        }
    }
}
