/* What the files of the forward pass share: the state, the pieces one file calls in another, and
 * the small inline kernels several use. The engine's other files reuse nn_fw_linear and
 * nn_fw_rope_tables, so that every matrix product goes through the one linear() (batch-invariant
 * padding, weight dtypes) and every rotary embedding through the one table. Not part of the public
 * API. The forward pass is split by what it computes:
 *   forward.c           the layer and whole-pass driver, hook dispatch, batch checks, unembedding
 *   forward_state.c     nn_state and nn_run_tables: buffers, rotary tables, ALiBi slopes
 *   forward_kernels.c   the GEMM paths (padding, widened F16/BF16, bfloat16) and the norms
 *   forward_attention.c softmax, rotary application, tiled attention, the KV cache, q/k norms
 *   forward_mlp.c       activations, dense and gated MLPs, experts, routing, the MoE block */
#ifndef NN_FORWARD_INTERNAL_H
#define NN_FORWARD_INTERNAL_H

#include "forward.h"

#include "attention_mla.h"
#include "pool.h"
#include "stage.h"

#include <stdint.h>
#include <string.h>

/* C[m, n] = alpha A[m, k] B (+ beta C), row-major, B [k, n] or (trans_b) [n, k]: cblas_sgemm with
 * the same bits whatever OpenBLAS's thread count (forward_kernels.c says why). Every float32 GEMM
 * of the pass goes through it. */
void nn_fw_sgemm(bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
/* y (n, W->n_out) = x (n, W->n_in) W + b, the same bits for a row whatever n is. */
void nn_fw_linear(const nn_state *s, const nn_linear *W, const float *x, size_t ldx, float *y,
                  size_t ldy, int n);
/* The rotary tables: (max_positions, rotary_dim / 2) cos and sin, yarn's factor included. */
void nn_fw_rope_tables(const nn_state *s, const float **cos_t, const float **sin_t);

/* The project builds for baseline x86-64 (SSE2), so a binary runs on any node of a cluster. The
 * few elementwise loops that matter are cloned for x86-64-v3 (AVX2, FMA) and x86-64-v4
 * (AVX-512), and the loader picks the clone for the CPU it runs on. */
#if defined(NN_VECTOR_ONLY) /* one variant for the whole build: tools/check_clones.sh */
#if NN_VECTOR_ONLY == 4
#define NN_VECTOR_CLONES __attribute__((target("arch=x86-64-v4")))
#elif NN_VECTOR_ONLY == 3
#define NN_VECTOR_CLONES __attribute__((target("arch=x86-64-v3")))
#else
#define NN_VECTOR_CLONES
#endif
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 &&         \
    defined(__GLIBC__)
/* GCC 12 is the first to take x86-64-vN levels in target_clones; clones need glibc's ifunc */
#define NN_VECTOR_CLONES                                                                           \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NN_VECTOR_CLONES
#endif

struct nn_state {
    nn_state_params p;
    int max_ctx;
    float *x;        /* (N, D) residual stream */
    float *xn;       /* (N, D) normed input of attention or MLP */
    float *q;        /* (N, H*E) */
    float *k, *v;    /* (N, G*E) */
    float *att;      /* (N, H*E) attention output before the output projection */
    float *branch;   /* (N, D) attention or MLP output before the residual add */
    float *gate;     /* (N, F) */
    float *up;       /* (N, F) */
    float *last;     /* (S, D) last rows of each sequence */
    float *logits;   /* (S, V) */
    float *probs;    /* (S, V) */
    float *rope_cos; /* (max_positions, R/2) R = rotary dims */
    float *rope_sin;
    float *k_cache, *v_cache; /* (L, slots * capacity, G*E) */
    float *scores;            /* grown on demand when probabilities are hooked: (H, n, C) */
    size_t scores_cap;
    float *scores_seen; /* the probabilities as hooks were given them, to see edits */
    size_t scores_seen_cap;
    float *tile;       /* tiled attention's scratch, one per thread, see attend_tiled */
    nn_pool *pool;     /* threads for the work between GEMMs */
    float *all_logits; /* grown on demand: (N, V) when logits are hooked */
    size_t all_logits_cap;
    float *pad_in, *pad_out; /* row padding for short GEMMs, see gemm_min_rows */
    float *branch2;          /* (N, D) MLP output of a parallel block */
    float *alibi;            /* (H) ALiBi slopes */
    /* Mixture of experts. */
    float *router;  /* (N, X) router probabilities, X experts */
    int *route_idx; /* (N, K) chosen experts, K per token */
    float *route_w; /* (N, K) their weights */
    int *rows;      /* (N) rows routed to one expert */
    float *moe_in;  /* (N, D) those rows gathered */
    float *moe_out; /* (N, D) an expert's (or the shared expert's) output */
    float *gate1;   /* (N) shared-expert gate */
    /* Families of 2025-26: Gemma 3's local rotary table (sliding layers), longrope's long one. */
    float *rope_cos_local, *rope_sin_local;
    float *rope_cos_long, *rope_sin_long;
    nn_mla_scratch *mla; /* multi-head latent attention's projections (attention_mla.c) */
    /* pool, the rotary tables and alibi belong to an nn_run_tables the state borrows (an
     * nn_context's) when tables_borrowed; else the state made them and frees them. */
    bool tables_borrowed;
    /* Stored-dtype weights. */
    float *wide;        /* an F16/BF16 matrix block widened to float32 (float32 compute) */
    uint8_t *bf16_work; /* bfloat16 GEMM scratch, bf16_per bytes per pool thread */
    size_t bf16_per;
    nn_err gemm_err; /* the first GEMM failure of the pass (oneDNN), reported at its end */
    bool gemm_failed;
    /* Sparse-autoencoder hook points: grown on demand when *_normalized is hooked, (N, D). */
    float *normalized;
    size_t normalized_cap;
};

/* Tiled attention works on blocks of at most TILE_Q query rows against TILE_K keys. */
enum { TILE_Q = 64, TILE_K = 64 };

/* Query rows per block for head dimension E: every tile GEMM (rows x TILE_K x E) must stay within
 * OpenBLAS's small-matrix path (M*N*K <= 1e6, see gemm_min_rows) whatever its row count, so that
 * a row rounds the same in a full block and alone. */
static inline int tile_rows(size_t E)
{
    int q = TILE_Q;
    while (q > 2 && (double)q * TILE_K * (double)E > 1e6)
        q /= 2;
    return q;
}

/* The width of a value head: head_dim unless the family's values are narrower or wider than its
 * query/key heads (MLA). */
static inline size_t value_dim(const nn_config *c)
{
    return (size_t)(c->v_head_dim > 0 ? c->v_head_dim : c->head_dim);
}

/* Tiled attention's scratch per thread (attend_tiled). */
static inline size_t tile_floats(const nn_config *c)
{
    size_t E = (size_t)c->head_dim, Ev = value_dim(c);
    return TILE_Q * TILE_K + TILE_K * E + TILE_K * Ev + 2 * E + TILE_Q * Ev + 2 * TILE_Q;
}

/* F16/BF16 matrices in float32 compute are widened in column blocks of about WIDE_FLOATS
 * elements (all blocks of a matrix the same width but the last, at least half of it), so a
 * 128256 x 4096 head never needs a 2 GB float32 copy. A matrix at most WIDE_FLOATS is one block:
 * the same GEMM as a float32 checkpoint of its values. */
enum { WIDE_FLOATS = 8 << 20 };

static inline int wide_blocks(const nn_linear *W, int *cols)
{
    size_t total = (size_t)W->n_in * (size_t)W->n_out;
    int n = (int)((total + WIDE_FLOATS - 1) / WIDE_FLOATS);
    if (n < 1)
        n = 1;
    *cols = (W->n_out + n - 1) / n;
    return n;
}

/* Sums of a row in double, in eight lanes added in a fixed order: the loops vectorize (a single
 * accumulator is a chain of dependent adds), and a row's result is the same in any batch. */
enum { SUM_LANES = 8 };

static inline double lanes_total(const double *lanes)
{
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
           ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

static inline double row_sum(const float *x, size_t n)
{
    double lanes[SUM_LANES] = {0};
    size_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int k = 0; k < SUM_LANES; k++)
            lanes[k] += (double)x[i + k];
    for (; i < n; i++)
        lanes[i % SUM_LANES] += (double)x[i];
    return lanes_total(lanes);
}

/* sum of (x - center)^2; center 0 gives the sum of squares */
static inline double row_sum_sq(const float *x, size_t n, double center)
{
    double lanes[SUM_LANES] = {0};
    size_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int k = 0; k < SUM_LANES; k++) {
            double d = (double)x[i + k] - center;
            lanes[k] += d * d;
        }
    for (; i < n; i++) {
        double d = (double)x[i] - center;
        lanes[i % SUM_LANES] += d * d;
    }
    return lanes_total(lanes);
}

/* e^x for the tiled softmax and the activations, written so that a loop over a row vectorizes
 * (libm's expf is a call per element): x clamped to [-87, 88], x = n ln2 + r with |r| <= ln2/2,
 * e^r by Cephes's degree-6 polynomial, times 2^n built in the exponent bits. Within 2 ulp of
 * expf. The clamp keeps the result finite and normal: a masked score may be anything (its result
 * is discarded), and for the activations x / (1 + e^88) is a tiny number where x / inf is -0. NaN
 * stays NaN. */
static inline float exp_tile(float x)
{
    /* written so that NaN clamps to -87 (both comparisons false): the float-to-int conversion
     * below never sees NaN, and the NaN is given back at the end */
    float c = x > -87.0f ? x : -87.0f;
    c = c < 88.0f ? c : 88.0f;
    float n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = c - n * 0.693359375f + n * 2.12194440e-4f;
    float z = r * r;
    float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                4.1665795894e-2f) *
                   r +
               1.6666665459e-1f) *
                  r +
              5.0000001201e-1f;
    y = y * z + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x == x ? y * scale : x;
}

/* Element-wise and row-wise work spread over the state's threads. */
typedef struct rows_job {
    const nn_config *c;
    const nn_norm *norm;
    const float *x;
    float *y;
} rows_job;

/* Runs the hooks at hp (a nonzero return: NN_STOPPED, or NN_ERR with err filled). */
int nn_fw_call_hooks(const nn_hookset *hs, nn_hook_point hp, int layer, float *data, size_t rows,
                     size_t cols, int seq, int n_heads, const nn_batch *b, nn_err *err);

#define HOOK(hp, layer, data, rows, cols, seq)                                                     \
    do {                                                                                           \
        if (nn_hookset_site(hooks, hp, layer)) {                                                   \
            int hook_rc_ = nn_fw_call_hooks(hooks, hp, layer, data, rows, cols, seq, 0, b, err);   \
            if (hook_rc_)                                                                          \
                return hook_rc_;                                                                   \
        }                                                                                          \
    } while (0)

/* forward_kernels.c */
void nn_fw_norm_rows(const nn_config *c, const nn_norm *nm, const float *x, float *y, int n);
void nn_fw_norm_rows_par(const nn_state *s, const nn_config *c, const nn_norm *nm, const float *x,
                         float *y, int n);

/* forward_attention.c */
void nn_fw_rope(const nn_config *c, const float *cos_t, const float *sin_t, float *rows, size_t ld,
                int n, int heads, int pos0);
void nn_fw_qk_norms(const nn_state *s, const nn_config *c, const nn_layer *L, int n);
void nn_fw_rope_for(const nn_config *c, const nn_state *s, int l, int end, const float **cos_t,
                    const float **sin_t);
int nn_fw_attention(const nn_model *m, nn_state *s, const nn_batch *b, int layer,
                    const nn_hookset *hooks, nn_err *err);

/* forward_mlp.c */
int nn_fw_mlp_block(const nn_model *m, nn_state *s, const nn_batch *b, int l,
                    const nn_hookset *hooks, const float *xn, float *out, nn_err *err);

#endif
