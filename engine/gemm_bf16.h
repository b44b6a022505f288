/* bfloat16 matrix products: on AMX through oneDNN's matmul (the library PyTorch's CPU backend
 * uses for the same operation); on a CPU with AVX512-BF16 but no AMX (AMD Zen 4, where oneDNN
 * 2.6's bfloat16 is slower than float32 sgemm) through the engine's own vdpbf16ps kernel
 * (gemm_dpbf16.h), bfloat16 mode only; elsewhere the GEMMs stay float32 and compute_kernel says
 * so. oneDNN is optional at configure time (NNTERP_HAVE_DNNL undefined): the engine builds, and
 * only the vdpbf16ps kernel remains.
 *
 * Numerics: y = x W (+ b) with x rounded to bfloat16 (NN_COMPUTE_BF16), or split into three
 * bfloat16 terms x = h1 + h2 + h3 (NN_COMPUTE_BF16X3, exact to float32's precision, since a
 * BF16 weight is exact in bfloat16), float32 accumulation, float32 output.
 *
 * Batch invariance (a row's bits independent of the rows it shares a call with, and of the thread
 * count): a oneDNN matmul created per M is not invariant for K >= 3072. So every weight matrix
 * gets one primitive for exactly NN_BF16_ROWS rows, running on one oneDNN thread; a GEMM of any
 * M is cut into NN_BF16_ROWS-row calls (the last padded with zeros) that the engine's own pool
 * runs. Wide matrices (the head) are also cut into fixed column blocks, each with its primitive.
 * The blocks depend only on the matrix, never on M or the threads. */
#ifndef NN_GEMM_BF16_H
#define NN_GEMM_BF16_H

#include "nn_base.h"
#include "safetensors.h"

typedef enum {
    NN_COMPUTE_F32 = 0, /* float32 everywhere: the reference path */
    NN_COMPUTE_BF16,    /* GEMM inputs rounded to bfloat16 */
    NN_COMPUTE_BF16X3   /* GEMM inputs split into three bfloat16 terms (BF16 weights only) */
} nn_compute;

/* Rows of every bfloat16 GEMM call (see above). */
enum { NN_BF16_ROWS = 128, NN_BF16_COLS = 8192 };

/* "float32", "bfloat16", "bfloat16x3". */
const char *nn_compute_name(nn_compute c);
/* Parses a name; what names the value (a job field, a flag) prefixes the error. */
int nn_compute_parse(const char *name, const char *what, nn_compute *out, nn_err *err);

/* Whether a bfloat16 kernel was compiled in (oneDNN, or the vdpbf16ps kernel on x86-64). */
bool nn_bf16_compiled(void);

/* Which kernel runs a compute mode's GEMMs on this CPU. */
typedef enum {
    NN_BF16_KERNEL_NONE, /* float32 sgemm (float32 mode, or no bfloat16 kernel for the mode here) */
    NN_BF16_KERNEL_ONEDNN, /* oneDNN's matmul on AMX: bfloat16 and bfloat16x3 */
    NN_BF16_KERNEL_DPBF16  /* the vdpbf16ps kernel (AVX512-BF16 without AMX): bfloat16 only; there
                              bfloat16x3's three passes would cost more than the float32 it
                              stands for */
} nn_bf16_kernel;
/* The kernel for mode, and its description into desc (a store's compute_kernel: "oneDNN
 * brg:avx512_core_amx_bf16, 128 rows per call", "nnterp vdpbf16ps (AVX512-BF16, no AMX), 128
 * rows per call", or "float32 (OpenBLAS sgemm: ...)" saying why). */
nn_bf16_kernel nn_bf16_kernel_for(nn_compute mode, char *desc, size_t n);
/* The implementation oneDNN picks for a bfloat16 matmul on this CPU (e.g.
 * "brg:avx512_core_amx_bf16"), into impl; true when it runs on AMX, the only case where the
 * engine uses it (without AMX oneDNN's bfloat16 is slower than float32 sgemm). Without oneDNN:
 * false, impl says so. */
bool nn_bf16_probe(char *impl, size_t n);

/* One weight matrix's bfloat16 product: its primitives and, for F32/F16 weights, the bfloat16
 * copy they read. w points at the stored weights: [n_out][ld] (or [n_in][ld] when in_major). */
typedef struct nn_bf16_gemm nn_bf16_gemm;

/* NULL with no error (err->msg empty) when no bfloat16 kernel runs this matrix (nn_bf16_kernel_for
 * is NONE, or oneDNN would not run this shape on AMX): the caller keeps float32 for it. bias
 * ([n_out] float32, or NULL) must be the one later passed to nn_bf16_gemm_block (bfloat16 adds it
 * inside the primitive). */
int nn_bf16_gemm_create(const void *w, const float *bias, nn_dtype dtype, int n_in, int n_out,
                        size_t ld, bool in_major, nn_compute mode, nn_bf16_gemm **out, nn_err *err);
void nn_bf16_gemm_free(nn_bf16_gemm *g);
/* Bytes it owns beyond the mapped checkpoint (a bfloat16 copy of F32/F16 weights). */
size_t nn_bf16_gemm_owned_bytes(const nn_bf16_gemm *g);
/* Scratch bytes one worker needs for this matrix. */
size_t nn_bf16_gemm_scratch_bytes(const nn_bf16_gemm *g);
/* Column blocks (each one call per row block). */
int nn_bf16_gemm_col_blocks(const nn_bf16_gemm *g);

/* Rows [r0, r0 + rows) of y = x W + b for column block cb (rows <= NN_BF16_ROWS), on the calling
 * thread, with scratch of nn_bf16_gemm_scratch_bytes. Returns NN_ERR only if oneDNN fails. Both
 * kernels give a row the same bits whatever block it is in (the header's scheme). */
int nn_bf16_gemm_block(const nn_bf16_gemm *g, int cb, const float *x, size_t ldx, int rows,
                       const float *bias, float *y, size_t ldy, void *scratch, nn_err *err);

/* For benchmarks: the bfloat16 kernel's own rate, GFLOP/s, on one product [M, K] x [K, N] (the
 * weights [N][K]), one thread, the median of reps after a warm-up: oneDNN's plain matmul (one
 * primitive made for this M, one call) where oneDNN runs on AMX, else the vdpbf16ps kernel alone
 * (M rows in NN_BF16_ROWS-row calls). 0 without either. */
double nn_bf16_matmul_gflops(int M, int N, int K, int reps);

#endif
