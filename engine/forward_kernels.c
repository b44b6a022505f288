/* The forward pass's kernels: every matrix product (padded so a row rounds the same in any batch,
 * F16/BF16 weights widened or run as bfloat16) and the layer norms. */
#include "forward_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---- Kernels ----------------------------------------------------------------------------------
 */

/* OpenBLAS (0.3.21, AVX-512 build) hands GEMMs with M*N*K <= 1e6 to a small-matrix kernel that
 * rounds differently, and newer releases send M = 1 to GEMV. Either would make a row's result
 * depend on how many other rows share the call — on the batch a prompt lands in. Short calls are
 * therefore padded to this many rows so every row takes the same kernel. For real model sizes it
 * is 2 rows at most. */
static int gemm_min_rows(const nn_linear *W)
{
    double nk = (double)W->n_in * (double)W->n_out;
    int rows = (int)(1e6 / nk) + 1;
    return rows < 2 ? 2 : rows;
}

/* OpenBLAS cuts K into blocks of its GEMM_Q and halves a last block between Q and 2Q; its
 * one-thread driver (level3.c) rounds that half up to the kernel's unroll, its threaded one
 * (level3_thread.c) does not. So for K > Q not a multiple of the unroll, a row's bits depended on
 * OpenBLAS's thread count (measured on the Cooperlake kernels OpenBLAS 0.3.21 picks for an AMD
 * EPYC with AVX512-BF16: Q = 320, every K > 320 with K % 32 != 0; the bundled model's MLP,
 * K = 432, differed in 1,889 of 2,400 outputs between 1 and 2 threads). Such a K is split into a
 * multiple of 64 (Q is one on every x86 kernel and the unroll at most 32, so both drivers cut it
 * alike) and a tail under 64 that no driver cuts. K <= 256 (under every kernel's Q) is one call,
 * as before. */
void nn_fw_sgemm(bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc)
{
    int tail = k > 256 ? k % 64 : 0, head = k - tail;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, m, n, head, alpha, a, lda, b, ldb, beta, c, ldc);
    if (tail)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, m, n, tail, alpha, a + head, lda,
                    trans_b ? b + head : b + (size_t)head * (size_t)ldb, ldb, 1.0f, c, ldc);
}

typedef struct bias_job {
    const float *bias;
    float *y;
    size_t ldy, n_out;
} bias_job;

static void bias_fill_range(void *ctx, size_t begin, size_t end, int worker)
{
    const bias_job *j = ctx;
    (void)worker;
    for (size_t t = begin; t < end; t++)
        memcpy(j->y + t * j->ldy, j->bias, j->n_out * sizeof(float));
}

/* The bias is copied into every row of y (on the pool: it is as much memory traffic as a residual
 * add) and the GEMM accumulates onto it with beta = 1. */
static void gemm(nn_pool *pool, const nn_linear *W, const float *x, size_t ldx, float *y,
                 size_t ldy, int n)
{
    float beta = 0.0f;
    if (W->b) {
        bias_job j = {.bias = W->b, .y = y, .ldy = ldy, .n_out = (size_t)W->n_out};
        nn_pool_run(pool, (size_t)n, 64, bias_fill_range, &j);
        beta = 1.0f;
    }
    nn_fw_sgemm(!W->in_major, n, W->n_out, W->n_in, 1.0f, x, (int)ldx, W->w, (int)W->ld, beta, y,
                (int)ldy);
}

/* y (N, out) = x (N, in) W + b for float32 weights, the same bits for a row whatever N is. */
static void linear_f32(const nn_state *s, const nn_linear *W, const float *x, size_t ldx, float *y,
                       size_t ldy, int n)
{
    int rows = gemm_min_rows(W);
    if (n >= rows) {
        gemm(s->pool, W, x, ldx, y, ldy, n);
        return;
    }
    size_t in = (size_t)W->n_in, out = (size_t)W->n_out;
    for (int t = 0; t < n; t++)
        memcpy(s->pad_in + (size_t)t * in, x + (size_t)t * ldx, in * sizeof(float));
    gemm(s->pool, W, s->pad_in, in, s->pad_out, out, rows);
    for (int t = 0; t < n; t++)
        memcpy(y + (size_t)t * ldy, s->pad_out + (size_t)t * out, out * sizeof(float));
}

typedef struct widen_job {
    const nn_linear *W;
    float *dst;
    int c0, cols;
} widen_job;

/* Rows [begin, end) of a column block of W, widened to float32: out-major rows are output
 * columns c0 + r, in_major rows are inputs. */
static void widen_range(void *ctx, size_t begin, size_t end, int worker)
{
    const widen_job *j = ctx;
    const nn_linear *W = j->W;
    (void)worker;
    size_t cols = (size_t)j->cols, in = (size_t)W->n_in;
    for (size_t r = begin; r < end; r++) {
        const uint16_t *src =
            W->in_major ? W->w16 + r * W->ld + (size_t)j->c0 : W->w16 + ((size_t)j->c0 + r) * W->ld;
        float *d = j->dst + r * (W->in_major ? cols : in);
        size_t n = W->in_major ? cols : in;
        if (W->dtype == NN_DT_BF16)
            for (size_t k = 0; k < n; k++) {
                uint32_t u = (uint32_t)src[k] << 16;
                memcpy(&d[k], &u, sizeof u);
            }
        else
            for (size_t k = 0; k < n; k++)
                d[k] = nn_f16_to_f32(src[k]);
    }
}

/* float32 compute on F16/BF16 weights: each column block widened into s->wide, then the float32
 * GEMM of those values. */
static void linear_widened(const nn_state *s, const nn_linear *W, const float *x, size_t ldx,
                           float *y, size_t ldy, int n)
{
    int cols, blocks = wide_blocks(W, &cols);
    for (int bl = 0; bl < blocks; bl++) {
        int c0 = bl * cols, w = W->n_out - c0 < cols ? W->n_out - c0 : cols;
        widen_job j = {.W = W, .dst = s->wide, .c0 = c0, .cols = w};
        size_t rows = (size_t)(W->in_major ? W->n_in : w);
        nn_pool_run(s->pool, rows, 64, widen_range, &j);
        nn_linear f = {.w = s->wide,
                       .b = W->b ? W->b + c0 : NULL,
                       .n_in = W->n_in,
                       .n_out = w,
                       .ld = (size_t)(W->in_major ? w : W->n_in),
                       .in_major = W->in_major};
        linear_f32(s, &f, x, ldx, y + c0, ldy, n);
    }
}

typedef struct bf16_job {
    const nn_state *s;
    const nn_linear *W;
    const float *x;
    size_t ldx, ldy;
    float *y;
    int n, col_blocks;
} bf16_job;

static void bf16_range(void *ctx, size_t begin, size_t end, int worker)
{
    const bf16_job *j = ctx;
    nn_state *s = (nn_state *)j->s;
    void *scratch = s->bf16_work + (size_t)worker * s->bf16_per;
    for (size_t item = begin; item < end; item++) {
        int rb = (int)(item / (size_t)j->col_blocks), cb = (int)(item % (size_t)j->col_blocks);
        int r0 = rb * NN_BF16_ROWS, rows = j->n - r0 < NN_BF16_ROWS ? j->n - r0 : NN_BF16_ROWS;
        nn_err e;
        if (nn_bf16_gemm_block(j->W->mm, cb, j->x + (size_t)r0 * j->ldx, j->ldx, rows, j->W->b,
                               j->y + (size_t)r0 * j->ldy, j->ldy, scratch, &e) != NN_OK &&
            !s->gemm_failed) {
            s->gemm_err = e; /* racy only between two failures; either message is right */
            s->gemm_failed = true;
        }
    }
}

/* bfloat16 compute: fixed blocks of NN_BF16_ROWS rows x NN_BF16_COLS columns on the pool, each
 * with the matrix's one primitive (gemm_bf16.h), so a row's bits do not depend on N. */
static void linear_bf16(const nn_state *s, const nn_linear *W, const float *x, size_t ldx, float *y,
                        size_t ldy, int n)
{
    if (s->bf16_per < nn_bf16_gemm_scratch_bytes(W->mm)) {
        nn_state *ms = (nn_state *)s;
        nn_fail(&ms->gemm_err, "forward: the state was created before nn_model_set_compute");
        ms->gemm_failed = true;
        return;
    }
    bf16_job j = {.s = s,
                  .W = W,
                  .x = x,
                  .ldx = ldx,
                  .ldy = ldy,
                  .y = y,
                  .n = n,
                  .col_blocks = nn_bf16_gemm_col_blocks(W->mm)};
    size_t row_blocks = ((size_t)n + NN_BF16_ROWS - 1) / NN_BF16_ROWS;
    nn_pool_run(s->pool, row_blocks * (size_t)j.col_blocks, 1, bf16_range, &j);
}

static void linear(const nn_state *s, const nn_linear *W, const float *x, size_t ldx, float *y,
                   size_t ldy, int n)
{
    if (n <= 0)
        return;
    if (W->mm)
        linear_bf16(s, W, x, ldx, y, ldy, n);
    else if (W->dtype != NN_DT_F32)
        linear_widened(s, W, x, ldx, y, ldy, n);
    else
        linear_f32(s, W, x, ldx, y, ldy, n);
}

/* ---- For the engine's other files (forward_internal.h) ---- */

void nn_fw_linear(const nn_state *s, const nn_linear *W, const float *x, size_t ldx, float *y,
                  size_t ldy, int n)
{
    linear(s, W, x, ldx, y, ldy, n);
}

NN_VECTOR_CLONES
void nn_fw_norm_rows(const nn_config *c, const nn_norm *nm, const float *x, float *y, int n)
{
    size_t D = (size_t)c->d_model;
    bool unit_offset = c->arch->norm_unit_offset;
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * D;
        float *yr = y + (size_t)t * D;
        if (c->arch->norm == NN_NORM_RMSNORM) {
            double ss = row_sum_sq(xr, D, 0.0);
            float inv = (float)(1.0 / sqrt(ss / (double)D + (double)c->norm_eps));
            /* Gemma: (x * inv) * (1 + w), the scale rounded to float32 first, as HF does */
            if (unit_offset)
                for (size_t i = 0; i < D; i++)
                    yr[i] = (1.0f + nm->w[i]) * (xr[i] * inv);
            else
                for (size_t i = 0; i < D; i++)
                    yr[i] = nm->w[i] * (xr[i] * inv);
        } else {
            double mean = row_sum(xr, D) / (double)D;
            double var = row_sum_sq(xr, D, mean) / (double)D;
            float inv = (float)(1.0 / sqrt(var + (double)c->norm_eps));
            float mu = (float)mean;
            if (nm->w && nm->b)
                for (size_t i = 0; i < D; i++)
                    yr[i] = (xr[i] - mu) * inv * nm->w[i] + nm->b[i];
            else
                for (size_t i = 0; i < D; i++) {
                    float v = (xr[i] - mu) * inv;
                    if (nm->w)
                        v *= nm->w[i];
                    yr[i] = nm->b ? v + nm->b[i] : v;
                }
        }
    }
}

static void norm_range(void *ctx, size_t begin, size_t end, int worker)
{
    const rows_job *j = ctx;
    (void)worker;
    size_t D = (size_t)j->c->d_model;
    nn_fw_norm_rows(j->c, j->norm, j->x + begin * D, j->y + begin * D, (int)(end - begin));
}

void nn_fw_norm_rows_par(const nn_state *s, const nn_config *c, const nn_norm *nm, const float *x,
                         float *y, int n)
{
    rows_job j = {.c = c, .norm = nm, .x = x, .y = y};
    nn_pool_run(s->pool, (size_t)n, 16, norm_range, &j);
}

/* ---- The GEMM for weights outside the model (sparse autoencoders, engine/sae.c) ---------------
 */

int nn_linear_min_rows(const nn_linear *W)
{
    return gemm_min_rows(W);
}

int nn_linear_apply(const nn_state *s, const nn_linear *W, const float *x, size_t ldx, float *y,
                    size_t ldy, int n, nn_err *err)
{
    if (n > 0 && n < gemm_min_rows(W))
        return nn_fail(err, "linear: %d rows, fewer than the %d this %d x %d weight needs", n,
                       gemm_min_rows(W), W->n_in, W->n_out);
    linear(s, W, x, ldx, y, ldy, n);
    return NN_OK;
}
