/* bfloat16 GEMMs through oneDNN's matmul: see gemm_bf16.h for the numerics and the fixed-block
 * scheme that keeps a row's result independent of its batch. */
#include "gemm_bf16.h"
#include "gemm_dpbf16.h"
#include "nn_half.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* oneDNN's part of a matrix (AMX), defined below when oneDNN is compiled in. */
typedef struct dnnl_part dnnl_part;

const char *nn_compute_name(nn_compute c)
{
    switch (c) {
    case NN_COMPUTE_BF16:
        return "bfloat16";
    case NN_COMPUTE_BF16X3:
        return "bfloat16x3";
    default:
        return "float32";
    }
}

int nn_compute_parse(const char *name, const char *what, nn_compute *out, nn_err *err)
{
    static const nn_compute all[] = {NN_COMPUTE_F32, NN_COMPUTE_BF16, NN_COMPUTE_BF16X3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (name && strcmp(name, nn_compute_name(all[i])) == 0) {
            *out = all[i];
            return NN_OK;
        }
    return nn_fail(err, "%s: compute '%s' is not one of float32, bfloat16, bfloat16x3", what,
                   name ? name : "(null)");
}

#ifndef NNTERP_HAVE_DNNL

bool nn_bf16_probe(char *impl, size_t n)
{
    snprintf(impl, n, "none (built without oneDNN)");
    return false;
}

/* Never called: without oneDNN no matrix gets a oneDNN part. */
struct dnnl_part {
    int unused;
};

static int dnnl_part_create(const void *w, const float *bias, nn_dtype dtype, int n_in, int n_out,
                            size_t ld, bool in_major, nn_compute mode, dnnl_part **out, nn_err *err)
{
    (void)w, (void)bias, (void)dtype, (void)n_in, (void)n_out, (void)ld, (void)in_major;
    *out = NULL;
    return nn_fail(err, "compute %s: built without oneDNN", nn_compute_name(mode));
}

static void dnnl_part_free(dnnl_part *g)
{
    (void)g;
}

static size_t dnnl_part_owned_bytes(const dnnl_part *g)
{
    (void)g;
    return 0;
}

static size_t dnnl_part_scratch_bytes(const dnnl_part *g)
{
    (void)g;
    return 0;
}

static int dnnl_part_col_blocks(const dnnl_part *g)
{
    (void)g;
    return 0;
}

static int dnnl_part_block(const dnnl_part *g, int cb, const float *x, size_t ldx, int rows,
                           const float *bias, float *y, size_t ldy, void *scratch, nn_err *err)
{
    (void)g, (void)cb, (void)x, (void)ldx, (void)rows, (void)bias, (void)y, (void)ldy,
        (void)scratch;
    return nn_fail(err, "bfloat16 GEMM: built without oneDNN");
}

static double onednn_matmul_gflops(int M, int N, int K, int reps)
{
    (void)M, (void)N, (void)K, (void)reps;
    return 0;
}

#else /* NNTERP_HAVE_DNNL */

#include <dnnl.h>
#include <pthread.h>

/* The row loops around the product, cloned for AVX-512 (x86-64-v4) where the compiler can (see
 * forward.c); their results are the same bits in every clone (integer rounding, float adds in a
 * fixed order). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 &&           \
    defined(__GLIBC__)
#define BF16_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define BF16_CLONES
#endif

/* x (rows, K) -> T bfloat16 terms, term t at rows [t*B, t*B + rows) of src (stride K). */
BF16_CLONES static void split_rows(const float *x, size_t ldx, size_t rows, size_t K, size_t B,
                                   int T, uint16_t *src)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        uint16_t *h1 = src + r * K, *h2 = src + (B + r) * K, *h3 = src + (2 * B + r) * K;
        if (T == 1) {
            for (size_t k = 0; k < K; k++)
                h1[k] = nn_f32_to_bf16(xr[k]);
        } else {
            for (size_t k = 0; k < K; k++) {
                uint16_t a = nn_f32_to_bf16(xr[k]);
                float r1 = xr[k] - nn_bf16_to_f32(a);
                uint16_t b = nn_f32_to_bf16(r1);
                h1[k] = a;
                h2[k] = b;
                h3[k] = nn_f32_to_bf16(r1 - nn_bf16_to_f32(b));
            }
        }
    }
}

/* y rows = ((term3 + term2) + term1) + b: the small terms first, in a fixed order. */
BF16_CLONES static void store_rows(const float *dst, size_t rows, size_t N, size_t B, int T,
                                   const float *b, float *y, size_t ldy)
{
    for (size_t r = 0; r < rows; r++) {
        float *yr = y + r * ldy;
        const float *d1 = dst + r * N;
        if (T == 1) {
            if (b)
                for (size_t j = 0; j < N; j++)
                    yr[j] = d1[j] + b[j];
            else
                memcpy(yr, d1, N * sizeof(float));
        } else {
            const float *d2 = dst + (B + r) * N, *d3 = dst + (2 * B + r) * N;
            for (size_t j = 0; j < N; j++) {
                float v = (d3[j] + d2[j]) + d1[j];
                yr[j] = b ? v + b[j] : v;
            }
        }
    }
}

/* oneDNN is built on OpenMP here (Debian's package); each call runs on the engine's thread with
 * one OpenMP thread, so the pool alone decides the parallelism. */
void omp_set_num_threads(int n);

static dnnl_engine_t cpu_engine;
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void)
{
    engine_status = dnnl_engine_create(&cpu_engine, dnnl_cpu, 0);
}

static dnnl_engine_t engine(void)
{
    pthread_once(&engine_once, engine_init);
    return engine_status == dnnl_success ? cpu_engine : NULL;
}

typedef struct col_block {
    dnnl_primitive_t prim;
    const uint16_t *w; /* the block's first column */
    const float *bias; /* its first bias, or NULL: bfloat16 adds it in the primitive */
    int n_cols;
    int col0;
} col_block;

struct dnnl_part {
    nn_compute mode;
    int n_in, n_out, terms;
    col_block *blocks;
    int n_blocks;
    uint16_t *copy; /* bfloat16 copy of F32/F16 weights, NULL for BF16 */
    size_t copy_bytes;
    size_t scratchpad; /* the largest block's */
};

static const char *impl_of(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success)
        return "?";
    return impl ? impl : "?";
}

/* A matmul [rows, K] bf16 x [K, N] bf16 (strided view) -> [rows, N] f32, user scratchpad. */
static dnnl_status_t make_pd(int rows, int K, int N, size_t ld, bool in_major, bool bias,
                             dnnl_primitive_desc_t *pd)
{
    dnnl_engine_t eng = engine();
    if (!eng)
        return dnnl_runtime_error;
    dnnl_memory_desc_t src, wei, dst, bia;
    dnnl_dims_t sd = {rows, K}, ss = {K, 1}, wd = {K, N}, dd = {rows, N}, ds = {N, 1};
    dnnl_dims_t bd = {1, N}, bs = {N, 1};
    dnnl_dims_t ws = {1, (dnnl_dim_t)ld};
    if (in_major) {
        ws[0] = (dnnl_dim_t)ld;
        ws[1] = 1;
    }
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_strides(&src, 2, sd, dnnl_bf16, ss)) ||
        (st = dnnl_memory_desc_init_by_strides(&wei, 2, wd, dnnl_bf16, ws)) ||
        (st = dnnl_memory_desc_init_by_strides(&dst, 2, dd, dnnl_f32, ds)) ||
        (st = dnnl_memory_desc_init_by_strides(&bia, 2, bd, dnnl_f32, bs)))
        return st;
    dnnl_matmul_desc_t md;
    if ((st = dnnl_matmul_desc_init(&md, &src, &wei, bias ? &bia : NULL, &dst)))
        return st;
    dnnl_primitive_attr_t attr;
    if ((st = dnnl_primitive_attr_create(&attr)))
        return st;
    st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (!st)
        st = dnnl_primitive_desc_create(pd, &md, attr, eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

/* The probe runs once a process (the CPU and oneDNN's ISA cap do not change): every matrix's
 * nn_bf16_gemm_create asks for it. */
static char probed_impl[96];
static bool probed_amx;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe_init(void)
{
    dnnl_primitive_desc_t pd;
    if (make_pd(NN_BF16_ROWS, 768, 768, 768, false, false, &pd) != dnnl_success) {
        snprintf(probed_impl, sizeof probed_impl,
                 "none (oneDNN has no bfloat16 matmul on this CPU)");
        return;
    }
    snprintf(probed_impl, sizeof probed_impl, "%s", impl_of(pd));
    dnnl_primitive_desc_destroy(pd);
    probed_amx = strstr(probed_impl, "amx") != NULL;
}

bool nn_bf16_probe(char *impl, size_t n)
{
    pthread_once(&probe_once, probe_init);
    snprintf(impl, n, "%s", probed_impl);
    return probed_amx;
}

static void dnnl_part_free(dnnl_part *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_blocks; i++)
        if (g->blocks[i].prim)
            dnnl_primitive_destroy(g->blocks[i].prim);
    nn_free(g->blocks);
    nn_free(g->copy);
    nn_free(g);
}

static int dnnl_part_create(const void *w, const float *bias, nn_dtype dtype, int n_in, int n_out,
                            size_t ld, bool in_major, nn_compute mode, dnnl_part **out, nn_err *err)
{
    *out = NULL;
    err->msg[0] = '\0';
    if (dtype != NN_DT_BF16 && dtype != NN_DT_F32 && dtype != NN_DT_F16)
        return nn_fail(err, "bfloat16 GEMM: weights of dtype %s", nn_dtype_name(dtype));
    dnnl_part *g = nn_calloc(1, sizeof *g, err);
    if (!g)
        return NN_ERR;
    g->mode = mode;
    g->n_in = n_in;
    g->n_out = n_out;
    g->terms = mode == NN_COMPUTE_BF16X3 ? 3 : 1;
    const uint16_t *wb = w;
    size_t outer = (size_t)(in_major ? n_in : n_out), inner = (size_t)(in_major ? n_out : n_in);
    /* oneDNN's AMX kernel takes [K][N] weights only with rows of exactly N: a column slice of a
     * fused in_major matrix (GPT-2's c_attn split into q, k, v) gets a compact copy. */
    bool strided = in_major && ld != inner;
    if (dtype != NN_DT_BF16 || strided) {
        /* A (rounded) bfloat16 copy in the stored layout: half the bytes of F32 weights. */
        g->copy_bytes = outer * inner * sizeof(uint16_t);
        if (!(g->copy = nn_malloc(g->copy_bytes ? g->copy_bytes : 1, err)))
            goto fail;
        for (size_t r = 0; r < outer; r++)
            for (size_t c = 0; c < inner; c++)
                g->copy[r * inner + c] = nn_weight_bf16(w, dtype, r * ld + c);
        wb = g->copy;
        ld = inner;
    }
    g->n_blocks = (n_out + NN_BF16_COLS - 1) / NN_BF16_COLS;
    if (!(g->blocks = nn_calloc((size_t)g->n_blocks, sizeof *g->blocks, err)))
        goto fail;
    for (int b = 0; b < g->n_blocks; b++) {
        col_block *cb = &g->blocks[b];
        cb->col0 = b * NN_BF16_COLS;
        cb->n_cols = n_out - cb->col0 < NN_BF16_COLS ? n_out - cb->col0 : NN_BF16_COLS;
        cb->w = wb + (in_major ? (size_t)cb->col0 : (size_t)cb->col0 * ld);
        dnnl_primitive_desc_t pd;
        /* One term: the bias inside the primitive, so a full block writes y in place. Three terms:
         * added after their sum (store_rows). */
        cb->bias = bias && g->terms == 1 ? bias + cb->col0 : NULL;
        if (make_pd(g->terms * NN_BF16_ROWS, n_in, cb->n_cols, ld, in_major, cb->bias != NULL,
                    &pd) != dnnl_success)
            goto no_amx;
        bool amx = strstr(impl_of(pd), "amx") != NULL;
        const dnnl_memory_desc_t *sp =
            dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t spb = sp ? dnnl_memory_desc_get_size(sp) : 0;
        if (spb > g->scratchpad)
            g->scratchpad = spb;
        dnnl_status_t st = amx ? dnnl_primitive_create(&cb->prim, pd) : dnnl_success;
        dnnl_primitive_desc_destroy(pd);
        if (!amx)
            goto no_amx;
        if (st != dnnl_success) {
            nn_fail(err, "bfloat16 GEMM [%d x %d]: oneDNN cannot create the matmul (status %d)",
                    n_in, n_out, (int)st);
            goto fail;
        }
    }
    *out = g;
    return NN_OK;
no_amx:
    dnnl_part_free(g);
    return NN_OK; /* *out NULL: float32 for this matrix */
fail:
    dnnl_part_free(g);
    return NN_ERR;
}

static size_t dnnl_part_owned_bytes(const dnnl_part *g)
{
    return g ? g->copy_bytes : 0;
}

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static size_t dnnl_part_scratch_bytes(const dnnl_part *g)
{
    if (!g)
        return 0;
    size_t rows = (size_t)g->terms * NN_BF16_ROWS;
    size_t cols = (size_t)(g->n_out < NN_BF16_COLS ? g->n_out : NN_BF16_COLS);
    return align64(rows * (size_t)g->n_in * 2) + align64(rows * cols * 4) + align64(g->scratchpad) +
           64;
}

static int dnnl_part_col_blocks(const dnnl_part *g)
{
    return g ? g->n_blocks : 0;
}

static int dnnl_part_block(const dnnl_part *g, int cbi, const float *x, size_t ldx, int rows,
                           const float *bias, float *y, size_t ldy, void *scratch, nn_err *err)
{
    const col_block *cb = &g->blocks[cbi];
    size_t K = (size_t)g->n_in, N = (size_t)cb->n_cols, B = NN_BF16_ROWS, T = (size_t)g->terms;
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint16_t *src = (uint16_t *)base;
    float *dst = (float *)(base + align64(T * B * K * 2));
    /* A full block of one term without bias, whose output rows are the block's columns exactly,
     * is written in place: the same kernel, the same bits, no copy. */
    bool direct = T == 1 && (size_t)rows == B && ldy == N && cb->col0 == 0;
    if (direct)
        dst = y;
    void *pad = base + align64(T * B * K * 2) + align64(T * B * N * 4);
    /* The input rows as T bfloat16 terms, term t in rows [t*B, t*B + B); padding rows zero. Every
     * column block converts its rows again: K per row against N*K for the product. */
    split_rows(x, ldx, (size_t)rows, K, B, (int)T, src);
    for (size_t t = 0; t < T; t++)
        if ((size_t)rows < B)
            memset(src + (t * B + (size_t)rows) * K, 0, (B - (size_t)rows) * K * 2);
    omp_set_num_threads(1);
    dnnl_engine_t eng = engine();
    dnnl_stream_t stream = NULL;
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL, mp = NULL, mb = NULL;
    const_dnnl_primitive_desc_t pd;
    const dnnl_memory_desc_t *d_src, *d_wei, *d_dst, *d_pad;
    dnnl_status_t st = dnnl_primitive_get_primitive_desc(cb->prim, &pd);
    if (st == dnnl_success) {
        d_src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        d_wei = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        d_dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        d_pad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        if ((st = dnnl_stream_create(&stream, eng, dnnl_stream_default_flags)) == dnnl_success &&
            (st = dnnl_memory_create(&ms, d_src, eng, src)) == dnnl_success &&
            (st = dnnl_memory_create(&mw, d_wei, eng, (void *)cb->w)) == dnnl_success &&
            (st = dnnl_memory_create(&md, d_dst, eng, dst)) == dnnl_success &&
            (st = dnnl_memory_create(&mp, d_pad, eng, pad)) == dnnl_success &&
            (!cb->bias || (st = dnnl_memory_create(
                               &mb, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1), eng,
                               (void *)cb->bias)) == dnnl_success)) {
            dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, ms},
                                       {DNNL_ARG_WEIGHTS, mw},
                                       {DNNL_ARG_DST, md},
                                       {DNNL_ARG_SCRATCHPAD, mp},
                                       {DNNL_ARG_BIAS, mb}};
            st = dnnl_primitive_execute(cb->prim, stream, cb->bias ? 5 : 4, args);
            if (st == dnnl_success)
                st = dnnl_stream_wait(stream);
        }
    }
    dnnl_memory_t mems[] = {ms, mw, md, mp, mb};
    for (int i = 0; i < 5; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    if (stream)
        dnnl_stream_destroy(stream);
    if (st != dnnl_success)
        return nn_fail(err, "bfloat16 GEMM [%zu x %d]: oneDNN matmul failed (status %d)", K,
                       g->n_out, (int)st);
    if (!direct)
        store_rows(dst, (size_t)rows, N, B, (int)T, g->terms == 1 || !bias ? NULL : bias + cb->col0,
                   y + cb->col0, ldy);
    return NN_OK;
}

static double onednn_matmul_gflops(int M, int N, int K, int reps)
{
    omp_set_num_threads(1);
    dnnl_primitive_desc_t pd;
    if (reps < 1 || reps > 64 || make_pd(M, K, N, (size_t)K, false, false, &pd) != dnnl_success)
        return 0;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t spb = sp ? dnnl_memory_desc_get_size(sp) : 0;
    dnnl_primitive_t prim = NULL;
    uint16_t *a = calloc((size_t)M * K, 2), *w = calloc((size_t)N * K, 2);
    float *c = calloc((size_t)M * N, 4);
    void *pad = malloc(spb ? spb : 1);
    double t[64], g = 0;
    dnnl_stream_t stream = NULL;
    dnnl_memory_t mems[4] = {0};
    if (a && w && c && pad && dnnl_primitive_create(&prim, pd) == dnnl_success &&
        dnnl_stream_create(&stream, engine(), dnnl_stream_default_flags) == dnnl_success) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            a[i] = nn_f32_to_bf16((float)(i % 7) * 0.01f);
        for (size_t i = 0; i < (size_t)N * K; i++)
            w[i] = nn_f32_to_bf16((float)(i % 5) * 0.01f);
        const dnnl_query_t q[4] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md,
                                   dnnl_query_scratchpad_md};
        void *h[4] = {a, w, c, pad};
        int ok = 1;
        for (int i = 0; i < 4; i++)
            ok &= dnnl_memory_create(&mems[i], dnnl_primitive_desc_query_md(pd, q[i], 0), engine(),
                                     h[i]) == dnnl_success;
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, mems[0]},
                                   {DNNL_ARG_WEIGHTS, mems[1]},
                                   {DNNL_ARG_DST, mems[2]},
                                   {DNNL_ARG_SCRATCHPAD, mems[3]}};
        for (int r = -1; ok && r < reps; r++) {
            double t0 = nn_seconds();
            ok = dnnl_primitive_execute(prim, stream, 4, args) == dnnl_success &&
                 dnnl_stream_wait(stream) == dnnl_success;
            if (r >= 0)
                t[r] = nn_seconds() - t0;
        }
        if (ok) {
            g = 2.0 * M * N * K / nn_median_in_place(t, (size_t)reps) / 1e9;
        }
    }
    for (int i = 0; i < 4; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    if (stream)
        dnnl_stream_destroy(stream);
    if (prim)
        dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    free(a);
    free(w);
    free(c);
    free(pad);
    return g;
}

#endif

/* ---- The kernel a matrix gets: oneDNN on AMX, else the vdpbf16ps kernel, else none -------- */

struct nn_bf16_gemm {
    nn_dpbf16 *dp;  /* the engine's vdpbf16ps kernel (AVX512-BF16 without AMX), or NULL */
    dnnl_part *dnn; /* oneDNN's primitives (AMX), or NULL */
};

bool nn_bf16_compiled(void)
{
#if defined(NNTERP_HAVE_DNNL) || NN_DPBF16_BUILT
    return true;
#else
    return false;
#endif
}

nn_bf16_kernel nn_bf16_kernel_for(nn_compute mode, char *desc, size_t n)
{
    char impl[96];
    if (mode == NN_COMPUTE_F32) {
        snprintf(desc, n, "float32 (OpenBLAS sgemm)");
        return NN_BF16_KERNEL_NONE;
    }
    if (nn_bf16_probe(impl, sizeof impl)) {
        snprintf(desc, n, "oneDNN %s, %d rows per call", impl, (int)NN_BF16_ROWS);
        return NN_BF16_KERNEL_ONEDNN;
    }
    if (nn_dpbf16_available() && mode == NN_COMPUTE_BF16) {
        snprintf(desc, n, "nnterp vdpbf16ps (AVX512-BF16, no AMX), %d rows per call",
                 (int)NN_BF16_ROWS);
        return NN_BF16_KERNEL_DPBF16;
    }
    if (nn_dpbf16_available())
        /* three passes of the vdpbf16ps kernel cost more than one sgemm, and float32 is what
         * bfloat16x3 stands for */
        snprintf(desc, n,
                 "float32 (OpenBLAS sgemm: bfloat16x3 needs AMX; oneDNN's bfloat16 matmul here is "
                 "%s, not AMX)",
                 impl);
    else
        snprintf(desc, n, "float32 (OpenBLAS sgemm: oneDNN's bfloat16 matmul here is %s, not AMX)",
                 impl);
    return NN_BF16_KERNEL_NONE;
}

void nn_bf16_gemm_free(nn_bf16_gemm *g)
{
    if (!g)
        return;
    nn_dpbf16_free(g->dp);
    dnnl_part_free(g->dnn);
    nn_free(g);
}

int nn_bf16_gemm_create(const void *w, const float *bias, nn_dtype dtype, int n_in, int n_out,
                        size_t ld, bool in_major, nn_compute mode, nn_bf16_gemm **out, nn_err *err)
{
    *out = NULL;
    err->msg[0] = '\0';
    char desc[160];
    nn_bf16_kernel k = nn_bf16_kernel_for(mode, desc, sizeof desc);
    if (k == NN_BF16_KERNEL_NONE)
        return NN_OK;
    nn_bf16_gemm *g = nn_calloc(1, sizeof *g, err);
    if (!g)
        return NN_ERR;
    int rc = k == NN_BF16_KERNEL_DPBF16
                 ? nn_dpbf16_create(w, dtype, n_in, n_out, ld, in_major, &g->dp, err)
                 : dnnl_part_create(w, bias, dtype, n_in, n_out, ld, in_major, mode, &g->dnn, err);
    if (rc != NN_OK || (!g->dp && !g->dnn)) { /* no primitive at this shape: float32 */
        nn_bf16_gemm_free(g);
        return rc;
    }
    *out = g;
    return NN_OK;
}

size_t nn_bf16_gemm_owned_bytes(const nn_bf16_gemm *g)
{
    return !g ? 0 : g->dp ? nn_dpbf16_bytes(g->dp) : dnnl_part_owned_bytes(g->dnn);
}

size_t nn_bf16_gemm_scratch_bytes(const nn_bf16_gemm *g)
{
    return !g      ? 0
           : g->dp ? nn_dpbf16_scratch_bytes(g->dp, NN_BF16_ROWS)
                   : dnnl_part_scratch_bytes(g->dnn);
}

int nn_bf16_gemm_col_blocks(const nn_bf16_gemm *g)
{
    return !g ? 0 : g->dp ? nn_dpbf16_col_blocks(g->dp) : dnnl_part_col_blocks(g->dnn);
}

int nn_bf16_gemm_block(const nn_bf16_gemm *g, int cb, const float *x, size_t ldx, int rows,
                       const float *bias, float *y, size_t ldy, void *scratch, nn_err *err)
{
    if (g->dp) {
        nn_dpbf16_block(g->dp, cb, x, ldx, rows, bias, y, ldy, scratch);
        return NN_OK;
    }
    return dnnl_part_block(g->dnn, cb, x, ldx, rows, bias, y, ldy, scratch, err);
}

/* The vdpbf16ps kernel alone: M rows in NN_BF16_ROWS-row calls over every column block. */
static double dpbf16_gflops(int M, int N, int K, int reps)
{
    nn_err err;
    nn_dpbf16 *d = NULL;
    uint16_t *w = calloc((size_t)N * K, 2);
    float *x = calloc((size_t)M * K, 4), *y = calloc((size_t)M * N, 4);
    void *scratch = NULL;
    double t[64], g = 0;
    if (w && x && y && nn_dpbf16_create(w, NN_DT_BF16, K, N, (size_t)K, false, &d, &err) == NN_OK &&
        (scratch = malloc(nn_dpbf16_scratch_bytes(d, NN_BF16_ROWS)))) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            x[i] = (float)(i % 7) * 0.01f;
        for (int r = -1; r < reps; r++) {
            double t0 = nn_seconds();
            for (int r0 = 0; r0 < M; r0 += NN_BF16_ROWS)
                for (int cb = 0; cb < nn_dpbf16_col_blocks(d); cb++)
                    nn_dpbf16_block(d, cb, x + (size_t)r0 * K, (size_t)K,
                                    M - r0 < NN_BF16_ROWS ? M - r0 : NN_BF16_ROWS, NULL,
                                    y + (size_t)r0 * N, (size_t)N, scratch);
            if (r >= 0)
                t[r] = nn_seconds() - t0;
        }
        g = 2.0 * M * N * K / nn_median_in_place(t, (size_t)reps) / 1e9;
    }
    nn_dpbf16_free(d);
    free(scratch);
    free(w);
    free(x);
    free(y);
    return g;
}

double nn_bf16_matmul_gflops(int M, int N, int K, int reps)
{
    if (reps < 1 || reps > 64)
        return 0;
    char desc[160];
    nn_bf16_kernel k = nn_bf16_kernel_for(NN_COMPUTE_BF16, desc, sizeof desc);
    return k == NN_BF16_KERNEL_DPBF16 ? dpbf16_gflops(M, N, K, reps)
                                      : onednn_matmul_gflops(M, N, K, reps);
}
