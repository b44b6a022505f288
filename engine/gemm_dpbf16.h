/* The engine's own bfloat16 GEMM for CPUs with AVX512-BF16 but no AMX (AMD Zen 4 and later, Intel
 * Cooper Lake), on the vdpbf16ps instruction: oneDNN 2.6's bfloat16 matmul there runs below float32
 * sgemm, this kernel at 2.3-2.8x sgemm on one core (docs/engine.md, "bfloat16 without AMX").
 * Internal to the engine: gemm_bf16.c chooses it behind nn_bf16_gemm.
 *
 * Numerics: y = x W (+ b) with x rounded to bfloat16 (round to nearest even) and W in bfloat16,
 * each output a float32 sum over K in order, two products per step (vdpbf16ps), then the bias.
 *
 * Layout: the weights are repacked once into panels of 64 output columns, each panel K/2 steps of
 * 64 columns x 2 consecutive k (the pairs vdpbf16ps multiplies), zero-padded to whole panels and
 * an even K: the checkpoint's bytes, rearranged. A row's result depends only on its own inputs and
 * the panel, never on the rows it shares a call with, their number, or the thread: the same bits
 * in any batch and any thread count. */
#ifndef NN_GEMM_DPBF16_H
#define NN_GEMM_DPBF16_H

#include "nn_base.h"
#include "nn_half.h"
#include "safetensors.h"

/* Whether this build has the kernel (the CPU is checked at run time: nn_dpbf16_available). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NN_DPBF16_BUILT 1
#else
#define NN_DPBF16_BUILT 0
#endif

/* Element i of a stored BF16, F16 or F32 weight array as bfloat16 (F32/F16 rounded to nearest
 * even): what both bfloat16 kernels copy or pack. */
static inline uint16_t nn_weight_bf16(const void *w, nn_dtype dtype, size_t i)
{
    if (dtype == NN_DT_BF16)
        return ((const uint16_t *)w)[i];
    if (dtype == NN_DT_F16)
        return nn_f32_to_bf16(nn_f16_to_f32(((const uint16_t *)w)[i]));
    return nn_f32_to_bf16(((const float *)w)[i]);
}

/* Columns per block call (fixed per matrix, so a block's arithmetic never depends on N). */
enum { NN_DPBF16_COLS = 512 };

typedef struct nn_dpbf16 nn_dpbf16;

/* Compiled for x86-64 and the CPU has AVX512F, AVX512BW and AVX512-BF16, and the environment does
 * not set NNTERP_NO_DPBF16 (which tests use to stand for a CPU without AVX512-BF16). */
bool nn_dpbf16_available(void);

/* Packs W (w: [n_out][ld], or [n_in][ld] when in_major; BF16, F16 or F32) into the kernel's
 * panels, rounding F32/F16 to bfloat16. */
int nn_dpbf16_create(const void *w, nn_dtype dtype, int n_in, int n_out, size_t ld, bool in_major,
                     nn_dpbf16 **out, nn_err *err);
void nn_dpbf16_free(nn_dpbf16 *d);
/* Bytes of the packed weights. */
size_t nn_dpbf16_bytes(const nn_dpbf16 *d);
int nn_dpbf16_col_blocks(const nn_dpbf16 *d);
/* Scratch one call needs for rows <= max_rows (the rows converted to bfloat16). */
size_t nn_dpbf16_scratch_bytes(const nn_dpbf16 *d, int max_rows);
/* y[r][c0 + j] = x[r] . W[:, c0 + j] (+ bias[c0 + j]) for rows [0, rows) and the columns of block
 * cb (c0 = cb * NN_DPBF16_COLS), on the calling thread. */
void nn_dpbf16_block(const nn_dpbf16 *d, int cb, const float *x, size_t ldx, int rows,
                     const float *bias, float *y, size_t ldy, void *scratch);

#endif
