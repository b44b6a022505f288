/* One forward pass for every family; nn_arch says which pieces apply. Dimension letters:
 * N tokens in the packed batch, D model width, H query heads, G kv heads, E head dim,
 * F MLP width, V vocabulary, C context (keys) of a sequence. */
#include "forward.h"

#include "attention_mla.h"
#include "forward_internal.h"
#include "pool.h"
#include "stage.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

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
    float *wide;          /* an F16/BF16 matrix block widened to float32 (float32 compute) */
    uint8_t *bf16_work;   /* bfloat16 GEMM scratch, bf16_per bytes per pool thread */
    size_t bf16_per;
    nn_err gemm_err;      /* the first GEMM failure of the pass (oneDNN), reported at its end */
    bool gemm_failed;
    /* Sparse-autoencoder hook points: grown on demand when *_normalized is hooked, (N, D). */
    float *normalized;
    size_t normalized_cap;
};

static int gemm_min_rows(const nn_linear *W);

/* Tiled attention works on blocks of at most TILE_Q query rows against TILE_K keys. */
enum { TILE_Q = 64, TILE_K = 64 };

/* Query rows per block for head dimension E: every tile GEMM (rows x TILE_K x E) must stay within
 * OpenBLAS's small-matrix path (M*N*K <= 1e6, see gemm_min_rows) whatever its row count, so that
 * a row rounds the same in a full block and alone. */
static int tile_rows(size_t E)
{
    int q = TILE_Q;
    while (q > 2 && (double)q * TILE_K * (double)E > 1e6)
        q /= 2;
    return q;
}

/* The width of a value head: head_dim unless the family's values are narrower or wider than its
 * query/key heads (MLA). */
static size_t value_dim(const nn_config *c)
{
    return (size_t)(c->v_head_dim > 0 ? c->v_head_dim : c->head_dim);
}

static size_t tile_floats(const nn_config *c)
{
    size_t E = (size_t)c->head_dim, Ev = value_dim(c);
    return TILE_Q * TILE_K + TILE_K * E + TILE_K * Ev + 2 * E + TILE_Q * Ev + 2 * TILE_Q;
}

void nn_softmax(float *x, size_t n)
{
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

/* Softmax over n scores and one extra logit, the sink, that takes its share of the mass and is
 * then dropped (gpt-oss): the n results sum to 1 - p(sink). */
static void softmax_with_sink(float *x, size_t n, float sink)
{
    float max = sink;
    for (size_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    float sum = expf(sink - max);
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

/* YaRN's inverse frequencies (transformers' _compute_yarn_parameters, in its float32 steps): the
 * dims whose wavelength fits the original context many times keep their frequency
 * (extrapolation), the slow ones are divided by factor (interpolation), and a linear ramp between
 * the correction dims low and high blends the two. */
static float yarn_inv_freq(const nn_config *c, int i)
{
    int dim = c->rotary_dim;
    double base = c->rope_theta, orig = c->rope_original_max_positions;
    double low =
        dim * log(orig / (c->rope_beta_fast * 2 * 3.14159265358979323846)) / (2 * log(base));
    double high =
        dim * log(orig / (c->rope_beta_slow * 2 * 3.14159265358979323846)) / (2 * log(base));
    if (c->rope_truncate) {
        low = floor(low);
        high = ceil(high);
    }
    low = low > 0 ? low : 0;
    high = high < dim - 1 ? high : dim - 1;
    if (low == high)
        high += 0.001;
    float ramp = ((float)i - (float)low) / (float)(high - low);
    ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
    float extrapolation = 1.0f - ramp;
    float pos_freq = (float)pow(base, (double)((float)(2 * i) / (float)dim));
    float inv_extrapolation = 1.0f / pos_freq;
    float inv_interpolation = 1.0f / ((float)c->rope_factor * pos_freq);
    return inv_interpolation * (1.0f - extrapolation) + inv_extrapolation * extrapolation;
}

/* Which rotary table: the model's (longrope: its short factors), longrope's long factors, or
 * Gemma 3's local one (sliding layers: rope_local_theta, unscaled). */
typedef enum { ROPE_MAIN, ROPE_LONG, ROPE_LOCAL } rope_table;

/* Rotary tables as Hugging Face computes them in float32: inv_freq = 1 / theta^(2i/R), angle =
 * float(position * inv_freq), then cos/sin. */
static void rope_tables(const nn_config *c, rope_table which, float *cos_t, float *sin_t)
{
    int half = c->rotary_dim / 2;
    double theta = which == ROPE_LOCAL ? c->rope_local_theta : c->rope_theta;
    nn_rope_scaling scaling = which == ROPE_LOCAL ? NN_ROPE_SCALING_NONE : c->rope_scaling;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->rotary_dim;
        float inv = 1.0f / (float)pow(theta, (double)e);
        if (scaling == NN_ROPE_SCALING_LONGROPE) {
            /* 1 / (factor * theta^e), the product in float32 */
            const float *f = which == ROPE_LONG ? c->rope_long_factor : c->rope_short_factor;
            inv = 1.0f / (f[i] * (float)pow(theta, (double)e));
            float att = c->rope_attention_factor;
            for (int pos = 0; pos < c->max_positions; pos++) {
                float angle = (float)pos * inv;
                cos_t[(size_t)pos * half + i] = (float)cos((double)angle) * att;
                sin_t[(size_t)pos * half + i] = (float)sin((double)angle) * att;
            }
            continue;
        }
        if (scaling == NN_ROPE_SCALING_LINEAR) {
            inv = (float)(inv / c->rope_factor);
        } else if (scaling == NN_ROPE_SCALING_LLAMA3) {
            double orig = c->rope_original_max_positions;
            double low_wavelen = orig / c->rope_low_freq_factor;
            double high_wavelen = orig / c->rope_high_freq_factor;
            double wavelen = 2.0 * 3.14159265358979323846 / inv;
            if (wavelen > low_wavelen) {
                inv = (float)(inv / c->rope_factor);
            } else if (wavelen >= high_wavelen) {
                double smooth = (orig / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                inv = (float)((1.0 - smooth) * inv / c->rope_factor + smooth * inv);
            }
        } else if (scaling == NN_ROPE_SCALING_YARN) {
            inv = yarn_inv_freq(c, i);
        }
        /* yarn scales cos and sin (so every q.k through the rotary dims) by its attention factor */
        float factor = scaling == NN_ROPE_SCALING_YARN ? c->rope_attention_factor : 1.0f;
        for (int pos = 0; pos < c->max_positions; pos++) {
            float angle = (float)pos * inv;
            cos_t[(size_t)pos * half + i] = (float)cos((double)angle) * factor;
            sin_t[(size_t)pos * half + i] = (float)sin((double)angle) * factor;
        }
    }
}

/* ALiBi slopes as Hugging Face's build_alibi_tensor computes them in float32. */
static void alibi_slopes(int H, float *slopes)
{
    int closest = 1;
    while (closest * 2 <= H)
        closest *= 2;
    float base = (float)pow(2.0, -pow(2.0, -(log2((double)closest) - 3.0)));
    for (int i = 0; i < closest; i++)
        slopes[i] = (float)pow((double)base, (double)(i + 1));
    if (closest != H) {
        float extra = (float)pow(2.0, -pow(2.0, -(log2(2.0 * closest) - 3.0)));
        for (int i = 0; i < H - closest; i++)
            slopes[closest + i] = (float)pow((double)extra, (double)(2 * i + 1));
    }
}

/* The widest MLP hidden layer: dense, expert or shared expert. */
static size_t widest_mlp(const nn_model *m)
{
    const nn_config *c = &m->cfg;
    size_t F = (size_t)c->d_ff;
    if ((size_t)c->moe_d_ff > F)
        F = (size_t)c->moe_d_ff;
    if ((size_t)c->shared_d_ff > F)
        F = (size_t)c->shared_d_ff;
    return F;
}

/* F16/BF16 matrices in float32 compute are widened in column blocks of about WIDE_FLOATS
 * elements (all blocks of a matrix the same width but the last, at least half of it), so a
 * 128256 x 4096 head never needs a 2 GB float32 copy. A matrix at most WIDE_FLOATS is one block:
 * the same GEMM as a float32 checkpoint of its values. */
enum { WIDE_FLOATS = 8 << 20 };

static int wide_blocks(const nn_linear *W, int *cols)
{
    size_t total = (size_t)W->n_in * (size_t)W->n_out;
    int n = (int)((total + WIDE_FLOATS - 1) / WIDE_FLOATS);
    if (n < 1)
        n = 1;
    *cols = (W->n_out + n - 1) / n;
    return n;
}

static void pad_size(const nn_linear *W, size_t *pad_in, size_t *pad_out)
{
    if (!W->w)
        return;
    nn_linear block = *W;
    if (W->dtype != NN_DT_F32)
        wide_blocks(W, &block.n_out);
    W = &block;
    size_t rows = (size_t)gemm_min_rows(W);
    if (rows * (size_t)W->n_in > *pad_in)
        *pad_in = rows * (size_t)W->n_in;
    if (rows * (size_t)W->n_out > *pad_out)
        *pad_out = rows * (size_t)W->n_out;
}

static void wide_size(const nn_linear *W, size_t *wide)
{
    if (!W->w || W->dtype == NN_DT_F32)
        return;
    int cols;
    wide_blocks(W, &cols);
    size_t n = (size_t)cols * (size_t)W->n_in;
    *wide = n > *wide ? n : *wide;
}

void nn_state_free(nn_state *s)
{
    if (!s)
        return;
    float *bufs[] = {s->x,       s->xn,      s->q,      s->k,          s->v,      s->att,
                     s->branch,  s->gate,    s->up,     s->last,       s->logits, s->probs,
                     s->k_cache, s->v_cache, s->scores, s->all_logits, s->pad_in, s->pad_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        nn_free(bufs[i]);
    float *more[] = {s->branch2, s->router, s->route_w, s->moe_in, s->moe_out, s->gate1, s->wide};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        nn_free(more[i]);
    nn_free(s->route_idx);
    nn_free(s->bf16_work);
    nn_free(s->rows);
    nn_free(s->tile);
    if (!s->tables_borrowed)
        nn_run_tables_free(&(nn_run_tables){s->pool, s->rope_cos, s->rope_sin, s->alibi,
                                             s->rope_cos_local, s->rope_sin_local,
                                             s->rope_cos_long, s->rope_sin_long});
    nn_free(s->scores_seen);
    nn_mla_scratch_free(s->mla);
    nn_free(s->normalized);
    nn_free(s);
}

void nn_run_tables_free(nn_run_tables *t)
{
    nn_pool_free(t->pool);
    nn_free(t->rope_cos);
    nn_free(t->rope_sin);
    nn_free(t->alibi);
    nn_free(t->rope_cos_local);
    nn_free(t->rope_sin_local);
    nn_free(t->rope_cos_long);
    nn_free(t->rope_sin_long);
    *t = (nn_run_tables){0};
}

int nn_run_tables_init(nn_run_tables *t, const nn_model *m, nn_err *err)
{
    const nn_config *c = &m->cfg;
    *t = (nn_run_tables){0};
    if (nn_pool_create(&t->pool, openblas_get_num_threads(), err))
        return NN_ERR;
    if (c->arch->pos == NN_POS_ALIBI) {
        if (!(t->alibi = nn_calloc((size_t)c->n_heads, sizeof(float), err)))
            goto fail;
        alibi_slopes(c->n_heads, t->alibi);
    }
    if (c->arch->pos == NN_POS_ROPE) {
        size_t n = (size_t)c->max_positions * (size_t)(c->rotary_dim / 2);
        if (!(t->rope_cos = nn_calloc(n, sizeof(float), err)) ||
            !(t->rope_sin = nn_calloc(n, sizeof(float), err)))
            goto fail;
        rope_tables(c, ROPE_MAIN, t->rope_cos, t->rope_sin);
        if (c->rope_local_theta > 0 && (!(t->rope_cos_local = nn_calloc(n, sizeof(float), err)) ||
                                        !(t->rope_sin_local = nn_calloc(n, sizeof(float), err))))
            goto fail;
        if (c->rope_scaling == NN_ROPE_SCALING_LONGROPE &&
            (!(t->rope_cos_long = nn_calloc(n, sizeof(float), err)) ||
             !(t->rope_sin_long = nn_calloc(n, sizeof(float), err))))
            goto fail;
        if (t->rope_cos_local)
            rope_tables(c, ROPE_LOCAL, t->rope_cos_local, t->rope_sin_local);
        if (t->rope_cos_long)
            rope_tables(c, ROPE_LONG, t->rope_cos_long, t->rope_sin_long);
    }
    return NN_OK;
fail:
    nn_run_tables_free(t);
    return NN_ERR;
}

int nn_state_init(nn_state **out, const nn_model *m, const nn_state_params *p, nn_err *err)
{
    return nn_state_init_shared(out, m, p, NULL, err);
}

int nn_state_init_shared(nn_state **out, const nn_model *m, const nn_state_params *p,
                         const nn_run_tables *shared, nn_err *err)
{
    *out = NULL;
    const nn_config *c = &m->cfg;
    if (p->max_tokens < 1 || p->max_seqs < 1 || p->n_slots < 0 ||
        (p->n_slots > 0 && p->slot_capacity < 1))
        return nn_fail(err, "state: max_tokens, max_seqs must be >= 1 (got %d, %d)", p->max_tokens,
                       p->max_seqs);
    nn_state *s = nn_calloc(1, sizeof *s, err);
    if (!s)
        return NN_ERR;
    s->p = *p;
    size_t N = (size_t)p->max_tokens, S = (size_t)p->max_seqs, D = (size_t)c->d_model,
           QD = (size_t)c->n_heads * (size_t)c->head_dim,
           KVD = (size_t)c->n_kv_heads * (size_t)c->head_dim, F = widest_mlp(m),
           VD = (size_t)c->n_kv_heads * value_dim(c), AD = (size_t)c->n_heads * value_dim(c),
           GF = c->arch->expert_gate_up_stack ? 2 * (size_t)c->moe_d_ff : 0, /* fused gate_up */
        V = (size_t)c->vocab_size, X = (size_t)c->n_experts,
           K = (size_t)(c->n_experts_per_tok > 0 ? c->n_experts_per_tok : 1);
    s->max_ctx =
        p->n_slots > 0 && p->slot_capacity > p->max_tokens ? p->slot_capacity : p->max_tokens;
    if (!(s->x = nn_calloc(N * D, sizeof(float), err)) ||
        !(s->xn = nn_calloc(N * D, sizeof(float), err)) ||
        !(s->q = nn_calloc(N * QD, sizeof(float), err)) ||
        !(s->k = nn_calloc(N * KVD, sizeof(float), err)) ||
        !(s->v = nn_calloc(N * VD, sizeof(float), err)) ||
        !(s->att = nn_calloc(N * AD, sizeof(float), err)) ||
        !(s->branch = nn_calloc(N * D, sizeof(float), err)) ||
        !(s->gate = nn_calloc(N * (GF > F ? GF : F), sizeof(float), err)) ||
        !(s->up = nn_calloc(N * F, sizeof(float), err)) ||
        !(s->last = nn_calloc(S * D, sizeof(float), err)) ||
        !(s->logits = nn_calloc(S * V, sizeof(float), err)) ||
        !(s->probs = nn_calloc(S * V, sizeof(float), err)))
        goto fail;
    if (c->parallel && !(s->branch2 = nn_calloc(N * D, sizeof(float), err)))
        goto fail;
    if (X > 0 && (!(s->router = nn_calloc(N * X, sizeof(float), err)) ||
                  !(s->route_idx = nn_calloc(N * K, sizeof(int), err)) ||
                  !(s->route_w = nn_calloc(N * K, sizeof(float), err)) ||
                  !(s->rows = nn_calloc(N, sizeof(int), err)) ||
                  !(s->moe_in = nn_calloc(N * D, sizeof(float), err)) ||
                  !(s->moe_out = nn_calloc(N * D, sizeof(float), err)) ||
                  !(s->gate1 = nn_calloc(N, sizeof(float), err))))
        goto fail;
    if (c->arch->mla && nn_mla_scratch_init(&s->mla, m, p->max_tokens, err))
        goto fail;
    size_t pad_in = 0, pad_out = 0, wide = 0;
    pad_size(&m->head, &pad_in, &pad_out);
    wide_size(&m->head, &wide);
    for (int l = 0; l < c->n_layers; l++) {
        const nn_layer *L = &m->layers[l];
        const nn_linear *ws[] = {&L->q,    &L->k,      &L->v,
                                 &L->o,    &L->gate,   &L->up,
                                 &L->down, &L->router, &L->shared_expert_gate,
                                 &L->q_a,  &L->q_b,    &L->kv_a,
                                 &L->kv_b};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            pad_size(ws[i], &pad_in, &pad_out);
            wide_size(ws[i], &wide);
        }
        if (L->moe)
            for (int e = 0; e < c->n_experts; e++) {
                const nn_linear *es[] = {&L->experts[e].gate, &L->experts[e].up,
                                         &L->experts[e].down, &L->experts[e].gate_up};
                for (int i = 0; i < 4; i++) {
                    pad_size(es[i], &pad_in, &pad_out);
                    wide_size(es[i], &wide);
                }
            }
    }
    nn_run_tables tables;
    if (shared) {
        tables = *shared;
        s->tables_borrowed = true;
    } else if (nn_run_tables_init(&tables, m, err)) {
        goto fail;
    }
    s->pool = tables.pool;
    s->rope_cos = tables.rope_cos;
    s->rope_sin = tables.rope_sin;
    s->alibi = tables.alibi;
    s->rope_cos_local = tables.rope_cos_local;
    s->rope_sin_local = tables.rope_sin_local;
    s->rope_cos_long = tables.rope_cos_long;
    s->rope_sin_long = tables.rope_sin_long;
    size_t bf16_per = 0;
    for (size_t i = 0; i < m->n_gemms; i++) {
        size_t b = nn_bf16_gemm_scratch_bytes(m->gemms[i]);
        bf16_per = b > bf16_per ? b : bf16_per;
    }
    if ((wide && !(s->wide = nn_malloc(wide * sizeof(float), err))) ||
        !(s->pad_in = nn_calloc(pad_in, sizeof(float), err)) ||
        !(s->pad_out = nn_calloc(pad_out, sizeof(float), err)) ||
        !(s->tile =
              nn_calloc(tile_floats(c) * (size_t)nn_pool_threads(s->pool), sizeof(float), err)))
        goto fail;
    s->bf16_per = bf16_per;
    if (bf16_per &&
        !(s->bf16_work = nn_malloc(bf16_per * (size_t)nn_pool_threads(s->pool), err)))
        goto fail;
    if (p->n_slots > 0) {
        size_t rows = (size_t)p->n_slots * (size_t)p->slot_capacity, n, nv;
        if (!nn_mul_size(rows * KVD, (size_t)c->n_layers, &n) ||
            !nn_mul_size(rows * VD, (size_t)c->n_layers, &nv)) {
            nn_fail(err, "state: KV cache size overflows");
            goto fail;
        }
        if (!(s->k_cache = nn_calloc(n, sizeof(float), err)) ||
            !(s->v_cache = nn_calloc(nv, sizeof(float), err)))
            goto fail;
    }
    *out = s;
    return NN_OK;
fail:
    nn_state_free(s);
    return NN_ERR;
}

const float *nn_state_logits(const nn_state *s)
{
    return s->logits;
}

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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, W->in_major ? CblasNoTrans : CblasTrans, n, W->n_out,
                W->n_in, 1.0f, x, (int)ldx, W->w, (int)W->ld, beta, y, (int)ldy);
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
        const uint16_t *src = W->in_major ? W->w16 + r * W->ld + (size_t)j->c0
                                          : W->w16 + ((size_t)j->c0 + r) * W->ld;
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
static void linear_bf16(const nn_state *s, const nn_linear *W, const float *x, size_t ldx,
                        float *y, size_t ldy, int n)
{
    if (s->bf16_per < nn_bf16_gemm_scratch_bytes(W->mm)) {
        nn_state *ms = (nn_state *)s;
        nn_fail(&ms->gemm_err, "forward: the state was created before nn_model_set_compute");
        ms->gemm_failed = true;
        return;
    }
    bf16_job j = {.s = s, .W = W, .x = x, .ldx = ldx, .ldy = ldy, .y = y, .n = n,
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

void nn_fw_rope_tables(const nn_state *s, const float **cos_t, const float **sin_t)
{
    *cos_t = s->rope_cos;
    *sin_t = s->rope_sin;
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

NN_VECTOR_CLONES
static void norm_rows(const nn_config *c, const nn_norm *nm, const float *x, float *y, int n)
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

/* 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): the same function, without tanhf. */
static inline float gelu_tanh(float x)
{
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return x / (1.0f + exp_tile(-2.0f * u));
}

static inline float silu(float x)
{
    return x / (1.0f + exp_tile(-x));
}

static inline float gelu_erf(float x)
{
    return (float)(0.5 * x * (1.0 + erf(x * 0.7071067811865476)));
}

static inline float relu(float x)
{
    return x > 0.0f ? x : 0.0f;
}

/* Rotates the first R dims of each head of rows (n, heads*E) at positions pos0.., with the tables
 * cos_t, sin_t (max_positions, R/2). */
static void rope(const nn_config *c, const float *cos_t, const float *sin_t, float *rows, size_t ld,
                 int n, int heads, int pos0)
{
    int E = c->head_dim, half = c->rotary_dim / 2;
    bool interleaved = c->arch->rope_interleaved;
    for (int t = 0; t < n; t++) {
        const float *cs = cos_t + (size_t)(pos0 + t) * half;
        const float *sn = sin_t + (size_t)(pos0 + t) * half;
        for (int h = 0; h < heads; h++) {
            float *v = rows + (size_t)t * ld + (size_t)h * E;
            for (int i = 0; i < half; i++) {
                int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * cs[i] - x1 * sn[i];
                v[b] = x1 * cs[i] + x0 * sn[i];
            }
        }
    }
}

static int call_hooks(const nn_hookset *hs, nn_hook_point hp, int layer, float *data, size_t rows,
                      size_t cols, int seq, int n_heads, const nn_batch *b, nn_err *err)
{
    nn_hook_view view = {.point = hp,
                         .layer = nn_hook_point_per_layer(hp) ? layer : -1,
                         .data = data,
                         .rows = rows,
                         .cols = cols,
                         .seq = seq,
                         .n_heads = n_heads,
                         .batch = b};
    int stop = 0;
    for (nn_hook_entry *e = nn_hookset_site(hs, hp, layer); e; e = e->next) {
        int rc = e->fn(&view, e->user, err);
        if (rc < 0)
            return NN_ERR;
        if (rc == NN_HOOK_STOP)
            stop = NN_STOPPED;
    }
    return stop;
}

#define HOOK(hp, layer, data, rows, cols, seq)                                                     \
    do {                                                                                           \
        if (nn_hookset_site(hooks, hp, layer)) {                                                   \
            int hook_rc_ = call_hooks(hooks, hp, layer, data, rows, cols, seq, 0, b, err);         \
            if (hook_rc_)                                                                          \
                return hook_rc_;                                                                   \
        }                                                                                          \
    } while (0)

/* ---- The pass ---------------------------------------------------------------------------------
 */

static int check_batch(const nn_model *m, const nn_state *s, const nn_batch *b, nn_err *err)
{
    const nn_config *c = &m->cfg;
    if (b->n_seqs < 1 || b->n_seqs > s->p.max_seqs)
        return nn_fail(err, "batch: %d sequences (this state holds 1..%d)", b->n_seqs,
                       s->p.max_seqs);
    if (b->n_tokens < 1 || b->n_tokens > s->p.max_tokens)
        return nn_fail(err, "batch: %d tokens (this state holds 1..%d)", b->n_tokens,
                       s->p.max_tokens);
    if (b->offsets[0] != 0 || b->offsets[b->n_seqs] != b->n_tokens)
        return nn_fail(err, "batch: offsets must run from 0 to n_tokens (%d)", b->n_tokens);
    if (b->slot && s->p.n_slots == 0)
        return nn_fail(err, "batch: sequences name KV-cache slots but the state has none");
    for (int q = 0; q < b->n_seqs; q++) {
        int n = b->offsets[q + 1] - b->offsets[q];
        int p0 = b->pos0 ? b->pos0[q] : 0;
        if (n < 1)
            return nn_fail(err, "batch: sequence %d is empty", q);
        if (p0 < 0 || (!b->slot && p0 != 0))
            return nn_fail(err, "batch: sequence %d starts at position %d without a KV-cache slot",
                           q, p0);
        if ((long)p0 + n > c->max_positions)
            return nn_fail(err,
                           "sequence %d: %d tokens at position %d exceed the model's context of %d "
                           "positions",
                           q, n, p0, c->max_positions);
        if (b->slot) {
            if (b->slot[q] < 0 || b->slot[q] >= s->p.n_slots)
                return nn_fail(err, "batch: sequence %d names slot %d (the state has %d)", q,
                               b->slot[q], s->p.n_slots);
            if ((long)p0 + n > s->p.slot_capacity)
                return nn_fail(err, "sequence %d: position %d exceeds the KV-cache capacity %d", q,
                               p0 + n, s->p.slot_capacity);
        }
        for (int t = b->offsets[q]; t < b->offsets[q + 1]; t++)
            if (b->tokens[t] < 0 || b->tokens[t] >= c->vocab_size)
                return nn_fail(err,
                               "sequence %d: token id %d at position %d is outside the vocabulary "
                               "(vocab_size %d)",
                               q, b->tokens[t], t - b->offsets[q] + p0, c->vocab_size);
    }
    return NN_OK;
}

/* One head of one sequence, attention without its probability matrix: query rows [0, n) at
 * positions p0 + i, keys and values [0, C) (row strides ldk_in, ldv_in; a value head may be
 * narrower than a key head), output rows out (stride ldo), an optional sink logit. Query
 * blocks of TILE_Q rows meet key blocks of TILE_K keys with an online softmax (a running maximum
 * and sum per row, the partial output rescaled as the maximum grows), so memory is O(TILE) and
 * key blocks past a query block's last position are skipped. Key blocks start at multiples of
 * TILE_K and always have TILE_K keys (zero-padded at the end of the context), and a single query
 * row is padded to two, so each row sees the same sequence of GEMM shapes and operations whatever
 * block or batch it is in: prefill and KV-cache continuation give the same bits. */
NN_VECTOR_CLONES
static void attend_tiled(const nn_config *c, float *tile, const float *Q, size_t ldq,
                         const float *K, size_t ldk_in, const float *V, size_t ldv_in, float *out,
                         size_t ldo, int n, int p0, float scale, float alibi_slope, int window,
                         const float *sink)
{
    size_t E = (size_t)c->head_dim, Ev = value_dim(c);
    float cap = c->attn_softcap;
    int C = p0 + n, tq = tile_rows(E > Ev ? E : Ev);
    float *S = tile, *kpad = S + TILE_Q * TILE_K, *vpad = kpad + TILE_K * E,
          *qpad = vpad + TILE_K * Ev, *acc = qpad + 2 * E, *mx = acc + TILE_Q * Ev,
          *sum = mx + TILE_Q;
    for (int i0 = 0; i0 < n; i0 += tq) {
        int m = n - i0 < tq ? n - i0 : tq, rows = m;
        int first = p0 + i0, last = first + m - 1;
        const float *Qb = Q + (size_t)i0 * ldq;
        size_t ldqb = ldq;
        if (m == 1) { /* newer OpenBLAS sends one-row GEMMs to GEMV, which rounds differently */
            memcpy(qpad, Qb, E * sizeof(float));
            memset(qpad + E, 0, E * sizeof(float));
            Qb = qpad;
            ldqb = E;
            rows = 2;
        }
        /* A sink joins every row's softmax as one more logit with no value: the running maximum
         * starts at it and the running sum at its exp(sink - sink) = 1. */
        for (int i = 0; i < rows; i++) {
            mx[i] = sink ? *sink : -INFINITY;
            sum[i] = sink ? 1.0f : 0.0f;
        }
        memset(acc, 0, (size_t)rows * Ev * sizeof(float));
        int lo_first = window > 0 && first - window + 1 > 0 ? first - window + 1 : 0;
        for (int k0 = lo_first / TILE_K * TILE_K; k0 <= last; k0 += TILE_K) {
            const float *Kb = K + (size_t)k0 * ldk_in, *Vb = V + (size_t)k0 * ldv_in;
            size_t ldk = ldk_in, ldv = ldv_in;
            if (C - k0 < TILE_K) {
                size_t have = (size_t)(C - k0);
                for (size_t j = 0; j < have; j++) {
                    memcpy(kpad + j * E, Kb + j * ldk_in, E * sizeof(float));
                    memcpy(vpad + j * Ev, Vb + j * ldv_in, Ev * sizeof(float));
                }
                memset(kpad + have * E, 0, (TILE_K - have) * E * sizeof(float));
                memset(vpad + have * Ev, 0, (TILE_K - have) * Ev * sizeof(float));
                Kb = kpad;
                Vb = vpad;
                ldk = E;
                ldv = Ev;
            }
            float beta = 0.0f;
            if (alibi_slope != 0.0f) { /* scores = slope * key position + scale * q.k */
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < TILE_K; j++)
                        S[i * TILE_K + j] = alibi_slope * (float)(k0 + j);
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, TILE_K, (int)E, scale, Qb,
                        (int)ldqb, Kb, (int)ldk, beta, S, TILE_K);
            for (int i = 0; i < rows; i++) {
                float *row = S + (size_t)i * TILE_K;
                int pos = first + i;
                int lo = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
                int j0 = lo > k0 ? lo - k0 : 0, j1 = pos - k0 < TILE_K - 1 ? pos - k0 : TILE_K - 1;
                if (i >= m || j1 < j0) { /* a padding row, or no key of this block is visible */
                    memset(row, 0, TILE_K * sizeof(float));
                    continue;
                }
                if (cap > 0)
                    for (int j = j0; j <= j1; j++)
                        row[j] = tanhf(row[j] / cap) * cap;
                float bm = -INFINITY;
                for (int j = j0; j <= j1; j++)
                    bm = row[j] > bm ? row[j] : bm;
                float new_max = bm > mx[i] ? bm : mx[i];
                /* The whole tile row at once, masked keys exactly 0, and the sum in a fixed
                 * order of eight lanes: loops of constant length that the compiler vectorizes. */
                for (int j = 0; j < TILE_K; j++) {
                    float p = exp_tile(row[j] - new_max);
                    row[j] = j >= j0 && j <= j1 ? p : 0.0f;
                }
                float lanes[8] = {0};
                for (int j = 0; j < TILE_K; j += 8)
                    for (int k = 0; k < 8; k++)
                        lanes[k] += row[j + k];
                float part = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                             ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
                if (mx[i] != new_max && mx[i] != -INFINITY) {
                    float corr = expf(mx[i] - new_max);
                    sum[i] *= corr;
                    for (size_t e = 0; e < Ev; e++)
                        acc[(size_t)i * Ev + e] *= corr;
                }
                sum[i] += part;
                mx[i] = new_max;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)Ev, TILE_K, 1.0f, S,
                        TILE_K, Vb, (int)ldv, 1.0f, acc, (int)Ev);
        }
        for (int i = 0; i < m; i++) {
            float inv = 1.0f / sum[i];
            for (size_t e = 0; e < Ev; e++)
                out[(size_t)(i0 + i) * ldo + e] = acc[(size_t)i * Ev + e] * inv;
        }
    }
}

/* Where sequence q's KV-cache slot for this layer begins, in floats of rows `width` wide (keys
 * and values may differ in width: MLA). */
static size_t slot_base(const nn_state *s, const nn_batch *b, int layer, int q, size_t width)
{
    return ((size_t)layer * s->p.n_slots + (size_t)b->slot[q]) * (size_t)s->p.slot_capacity * width;
}

/* Sequence q's keys and values for this layer: its KV-cache slot (holding this call's rows once
 * store_kv has run) or this call's rows. Keys are KD floats a row, values VD. */
static void seq_kv(const nn_state *s, const nn_batch *b, int layer, int q, size_t KD, size_t VD,
                   const float **K, const float **V)
{
    if (b->slot) {
        *K = s->k_cache + slot_base(s, b, layer, q, KD);
        *V = s->v_cache + slot_base(s, b, layer, q, VD);
    } else {
        *K = s->k + (size_t)b->offsets[q] * KD;
        *V = s->v + (size_t)b->offsets[q] * VD;
    }
}

static void store_kv(nn_state *s, const nn_batch *b, int layer, size_t KD, size_t VD)
{
    for (int q = 0; b->slot && q < b->n_seqs; q++) {
        int off = b->offsets[q], n = b->offsets[q + 1] - off, p0 = b->pos0 ? b->pos0[q] : 0;
        memcpy(s->k_cache + slot_base(s, b, layer, q, KD) + (size_t)p0 * KD,
               s->k + (size_t)off * KD, (size_t)n * KD * sizeof(float));
        memcpy(s->v_cache + slot_base(s, b, layer, q, VD) + (size_t)p0 * VD,
               s->v + (size_t)off * VD, (size_t)n * VD * sizeof(float));
    }
}

/* The (sequence, head) pairs of a batch, attended in parallel without probabilities. */
typedef struct heads_job {
    const nn_config *c;
    nn_state *s;
    const nn_batch *b;
    int layer, window;
    float scale;
    const float *sinks; /* [H] or NULL */
} heads_job;

static void attend_heads(void *ctx, size_t begin, size_t end, int worker)
{
    const heads_job *j = ctx;
    const nn_config *c = j->c;
    int H = c->n_heads, E = c->head_dim, group = H / c->n_kv_heads;
    size_t Ev = value_dim(c), QD = (size_t)H * E, KD = (size_t)c->n_kv_heads * E,
           VD = (size_t)c->n_kv_heads * Ev, AD = (size_t)H * Ev;
    float *tile = j->s->tile + (size_t)worker * tile_floats(c);
    for (size_t item = begin; item < end; item++) {
        int q = (int)(item / (size_t)H), h = (int)(item % (size_t)H);
        int off = j->b->offsets[q], n = j->b->offsets[q + 1] - off;
        const float *K, *V;
        seq_kv(j->s, j->b, j->layer, q, KD, VD, &K, &V);
        attend_tiled(c, tile, j->s->q + (size_t)off * QD + (size_t)h * E, QD,
                     K + (size_t)(h / group) * E, KD, V + (size_t)(h / group) * Ev, VD,
                     j->s->att + (size_t)off * AD + (size_t)h * Ev, AD, n,
                     j->b->pos0 ? j->b->pos0[q] : 0, j->scale, j->s->alibi ? j->s->alibi[h] : 0.0f,
                     j->window, j->sinks ? j->sinks + h : NULL);
    }
}

static int attention(const nn_model *m, nn_state *s, const nn_batch *b, int layer,
                     const nn_hookset *hooks, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const float *sinks = m->layers[layer].sinks;
    int H = c->n_heads, G = c->n_kv_heads, E = c->head_dim, group = H / G;
    size_t Ev = value_dim(c), QD = (size_t)H * E, KD = (size_t)G * E, VD = (size_t)G * Ev,
           AD = (size_t)H * Ev;
    float scale = c->attn_scale > 0 ? c->attn_scale : (float)(1.0 / sqrt((double)E));
    float cap = c->attn_softcap;
    int window = nn_layer_sliding(c, layer) ? c->sliding_window : 0;
    bool want_probs = nn_hookset_site(hooks, NN_HP_ATTENTION_PROBABILITIES, layer) != NULL;
    store_kv(s, b, layer, KD, VD);
    heads_job job = {
        .c = c, .s = s, .b = b, .layer = layer, .window = window, .scale = scale, .sinks = sinks};
    if (!want_probs) {
        nn_pool_run(s->pool, (size_t)b->n_seqs * (size_t)H, 1, attend_heads, &job);
        return NN_OK;
    }
    for (int q = 0; q < b->n_seqs; q++) {
        int off = b->offsets[q], n = b->offsets[q + 1] - off, p0 = b->pos0 ? b->pos0[q] : 0;
        int C = p0 + n;
        const float *K, *Vv;
        seq_kv(s, b, layer, q, KD, VD, &K, &Vv);
        size_t block = (size_t)n * (size_t)C;
        if (nn_grow_floats(&s->scores, &s->scores_cap, block * (size_t)H, err))
            return NN_ERR;
        for (int h = 0; h < H; h++) {
            int g = h / group;
            float *S = s->scores + (size_t)h * block; /* (n, C) */
            float beta = 0.0f;
            if (s->alibi) { /* scores = slope_h * key position + scale * q.k (baddbmm) */
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < C; j++)
                        S[(size_t)i * C + j] = s->alibi[h] * (float)j;
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, C, E, scale,
                        s->q + (size_t)off * QD + (size_t)h * E, (int)QD, K + (size_t)g * E,
                        (int)KD, beta, S, C);
            for (int i = 0; i < n; i++) {
                int pos = p0 + i;
                int lo = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
                float *row = S + (size_t)i * C;
                if (cap > 0)
                    for (int j = lo; j <= pos; j++)
                        row[j] = tanhf(row[j] / cap) * cap;
                if (sinks)
                    softmax_with_sink(row + lo, (size_t)(pos - lo + 1), sinks[h]);
                else
                    nn_softmax(row + lo, (size_t)(pos - lo + 1));
                for (int j = 0; j < lo; j++)
                    row[j] = 0.0f;
                for (int j = pos + 1; j < C; j++)
                    row[j] = 0.0f;
            }
        }
        /* Hooks that only read the probabilities (or write them back unchanged) must not change
         * the output: it is then computed tiled, as without the hook; edited probabilities are
         * multiplied into the values as they are (a sink has no value: its share is simply
         * missing from the row). */
        if (nn_grow_floats(&s->scores_seen, &s->scores_seen_cap, block * (size_t)H, err))
            return NN_ERR;
        memcpy(s->scores_seen, s->scores, block * (size_t)H * sizeof(float));
        int stop = call_hooks(hooks, NN_HP_ATTENTION_PROBABILITIES, layer, s->scores, (size_t)H * n,
                              (size_t)C, q, H, b, err);
        if (stop < 0)
            return NN_ERR;
        if (memcmp(s->scores_seen, s->scores, block * (size_t)H * sizeof(float)) == 0)
            attend_heads(&job, (size_t)q * H, (size_t)(q + 1) * H, 0);
        else
            for (int h = 0; h < H; h++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, (int)Ev, C, 1.0f,
                            s->scores + (size_t)h * block, C, Vv + (size_t)(h / group) * Ev,
                            (int)VD, 0.0f, s->att + (size_t)off * AD + (size_t)h * Ev, (int)AD);
        if (stop)
            return NN_STOPPED;
    }
    return NN_OK;
}

/* Element-wise and row-wise work spread over the state's threads. */
typedef struct rows_job {
    const nn_config *c;
    const nn_norm *norm;
    const float *x;
    float *y;
} rows_job;

static void norm_range(void *ctx, size_t begin, size_t end, int worker)
{
    const rows_job *j = ctx;
    (void)worker;
    size_t D = (size_t)j->c->d_model;
    norm_rows(j->c, j->norm, j->x + begin * D, j->y + begin * D, (int)(end - begin));
}

static void norm_rows_par(const nn_state *s, const nn_config *c, const nn_norm *nm, const float *x,
                          float *y, int n)
{
    rows_job j = {.c = c, .norm = nm, .x = x, .y = y};
    nn_pool_run(s->pool, (size_t)n, 16, norm_range, &j);
}

/* y[i] *= f(x[i]), or y[i] = f(y[i]) without x. Always inlined with a constant f, so each
 * activation gets loops of its own that vectorize. */
static inline __attribute__((always_inline)) void
act_rows(float *restrict y, const float *restrict x, size_t begin, size_t end, float (*f)(float))
{
    if (x)
        for (size_t i = begin; i < end; i++)
            y[i] *= f(x[i]);
    else
        for (size_t i = begin; i < end; i++)
            y[i] = f(y[i]);
}

/* up = act(gate) * up, or up = act(up) without a gate (gate NULL); cloned for AVX2 and AVX-512
 * (picked at load time by the CPU; -ffp-contract=off under -std=c11 keeps every clone's results
 * bitwise the same). */
NN_VECTOR_CLONES
static void activate_range(void *ctx, size_t begin, size_t end, int worker)
{
    const rows_job *j = ctx;
    (void)worker;
    switch (j->c->act) {
    case NN_ACT_GELU_TANH:
        act_rows(j->y, j->x, begin, end, gelu_tanh);
        break;
    case NN_ACT_GELU:
        act_rows(j->y, j->x, begin, end, gelu_erf);
        break;
    case NN_ACT_SILU:
        act_rows(j->y, j->x, begin, end, silu);
        break;
    case NN_ACT_RELU:
        act_rows(j->y, j->x, begin, end, relu);
        break;
    }
}

/* A dense MLP on n rows of in (n, D): down(act(gate(x)) * up(x)), or down(act(up(x))). Its width
 * is the layer's own (dense MLP or shared expert). */
static void dense_mlp(const nn_config *c, const nn_state *s, const nn_linear *gate,
                      const nn_linear *up, const nn_linear *down, const float *in, float *out,
                      int n)
{
    size_t D = (size_t)c->d_model, F = (size_t)up->n_out, NF = (size_t)n * F;
    linear(s, up, in, D, s->up, F, n);
    if (gate->w)
        linear(s, gate, in, D, s->gate, F, n);
    rows_job j = {.c = c, .x = gate->w ? s->gate : NULL, .y = s->up};
    nn_pool_run(s->pool, NF, 8192, activate_range, &j);
    linear(s, down, s->up, F, out, D, n);
}

/* gpt-oss's expert: [gate | up] interleaved in one projection (gate in even columns, up in odd),
 * then (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g) with g = min(gate, limit), as
 * GptOssExperts._apply_gate computes it. */
static void clamped_swiglu_range(void *ctx, size_t begin, size_t end, int worker)
{
    const rows_job *j = ctx;
    (void)worker;
    float limit = j->c->swiglu_limit, alpha = j->c->swiglu_alpha;
    for (size_t i = begin; i < end; i++) {
        float g = j->x[2 * i], u = j->x[2 * i + 1];
        g = g < limit ? g : limit;
        u = u < -limit ? -limit : u > limit ? limit : u;
        float glu = g / (1.0f + exp_tile(-(g * alpha)));
        j->y[i] = (u + 1.0f) * glu;
    }
}

/* One expert on n gathered rows: a dense gated MLP, or a fused interleaved gate_up (gpt-oss). */
static void expert_mlp(const nn_config *c, const nn_state *s, const nn_expert *x, const float *in,
                       float *out, int n)
{
    if (!x->gate_up.w) {
        dense_mlp(c, s, &x->gate, &x->up, &x->down, in, out, n);
        return;
    }
    size_t D = (size_t)c->d_model, F = (size_t)x->down.n_in;
    linear(s, &x->gate_up, in, D, s->gate, 2 * F, n);
    rows_job j = {.c = c, .x = s->gate, .y = s->up};
    nn_pool_run(s->pool, (size_t)n * F, 8192, clamped_swiglu_range, &j);
    linear(s, &x->down, s->up, F, out, D, n);
}

/* The k-th largest of p over the experts allowed (allowed NULL: all) not yet in idx[0..k); ties
 * go to the lower index. */
static int kth_best(const float *p, const bool *allowed, int X, const int *idx, int k)
{
    int best = -1;
    for (int e = 0; e < X; e++) {
        bool taken = allowed && !allowed[e];
        for (int j = 0; j < k; j++)
            taken |= idx[j] == e;
        if (!taken && (best < 0 || p[e] > p[best]))
            best = e;
    }
    return best;
}

/* DeepSeek-V3's choice for one token (DeepseekV3TopkRouter): choice = score + bias; a group's
 * score is the sum of its two best choices; only the topk_groups best groups compete; the top-k
 * of their choices are taken, weighted by their scores without the bias. */
static void route_grouped(const nn_config *c, const float *score, const float *bias, int *idx,
                          float *w)
{
    /* the config parser bounds X <= NN_MAX_GROUPED_EXPERTS and the groups to at most X / 2 */
    int X = c->n_experts, K = c->n_experts_per_tok, Gn = c->n_expert_groups, per = X / Gn;
    float choice[NN_MAX_GROUPED_EXPERTS], group_score[NN_MAX_GROUPED_EXPERTS / 2];
    int group_idx[NN_MAX_GROUPED_EXPERTS / 2];
    bool allowed[NN_MAX_GROUPED_EXPERTS];
    for (int e = 0; e < X; e++)
        choice[e] = score[e] + (bias ? bias[e] : 0.0f);
    for (int g = 0; g < Gn; g++) {
        int two[2];
        two[0] = kth_best(choice + g * per, NULL, per, two, 0);
        two[1] = kth_best(choice + g * per, NULL, per, two, 1);
        group_score[g] = choice[g * per + two[0]] + choice[g * per + two[1]];
    }
    for (int k = 0; k < c->topk_groups; k++)
        group_idx[k] = kth_best(group_score, NULL, Gn, group_idx, k);
    for (int e = 0; e < X; e++) {
        allowed[e] = false;
        for (int k = 0; k < c->topk_groups; k++)
            allowed[e] |= e / per == group_idx[k];
    }
    for (int k = 0; k < K; k++) {
        idx[k] = kth_best(choice, allowed, X, idx, k);
        w[k] = score[idx[k]];
    }
}

/* A sparse MoE block on xn (N, D) into out (N, D), as Hugging Face computes it:
 * - softmax routers (Mixtral, Qwen2-MoE, gpt-oss): router softmax (the router_probabilities hook
 *   sees it and may edit it), top-k, weights optionally renormalised (gpt-oss's softmax over the
 *   top-k logits is the renormalised top-k of the full softmax);
 * - sigmoid routers (DeepSeek-V3): sigmoid scores (the hook's view), group-limited top-k on score
 *   + e_score_correction_bias, the chosen scores renormalised and times routed_scaling_factor;
 * then experts in index order each adding w * expert(x) to its rows, then the shared expert
 * (scaled by sigmoid(gate(x)) where it has a gate). Rows routed to an expert are gathered into one
 * GEMM (linear() pads short ones, so a row's result does not depend on the others). */
static int moe_block(const nn_model *m, nn_state *s, const nn_batch *b, int l,
                     const nn_hookset *hooks, const float *xn, float *out, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_layer *L = &m->layers[l];
    int N = b->n_tokens, X = c->n_experts, K = c->n_experts_per_tok;
    size_t D = (size_t)c->d_model;
    bool grouped = c->arch->router_kind == NN_ROUTER_SIGMOID_GROUPED;
    linear(s, &L->router, xn, D, s->router, (size_t)X, N);
    for (int t = 0; t < N; t++) {
        float *p = s->router + (size_t)t * X;
        if (grouped)
            for (int e = 0; e < X; e++)
                p[e] = 1.0f / (1.0f + expf(-p[e]));
        else
            nn_softmax(p, (size_t)X);
    }
    HOOK(NN_HP_ROUTER_PROBABILITIES, l, s->router, (size_t)N, (size_t)X, -1);
    for (int t = 0; t < N; t++) {
        const float *p = s->router + (size_t)t * X;
        int *idx = s->route_idx + (size_t)t * K;
        float *w = s->route_w + (size_t)t * K, sum = 0.0f;
        if (grouped) {
            route_grouped(c, p, L->router_score_bias, idx, w);
        } else {
            for (int k = 0; k < K; k++) {
                idx[k] = kth_best(p, NULL, X, idx, k);
                w[k] = p[idx[k]];
            }
        }
        for (int k = 0; k < K; k++)
            sum += w[k];
        if (c->norm_topk_prob) {
            if (grouped)
                sum += 1e-20f; /* as DeepseekV3TopkRouter */
            for (int k = 0; k < K; k++)
                w[k] /= sum;
        }
        if (c->routed_scale != 0.0f)
            for (int k = 0; k < K; k++)
                w[k] *= c->routed_scale;
    }
    memset(out, 0, (size_t)N * D * sizeof(float));
    for (int e = 0; e < X; e++) {
        int n = 0;
        for (int t = 0; t < N; t++)
            for (int k = 0; k < K; k++)
                if (s->route_idx[(size_t)t * K + k] == e) {
                    s->rows[n] = t;
                    memcpy(s->moe_in + (size_t)n * D, xn + (size_t)t * D, D * sizeof(float));
                    n++;
                }
        if (n == 0)
            continue;
        expert_mlp(c, s, &L->experts[e], s->moe_in, s->moe_out, n);
        for (int r = 0; r < n; r++) {
            int t = s->rows[r];
            float w = 0.0f;
            for (int k = 0; k < K; k++)
                if (s->route_idx[(size_t)t * K + k] == e)
                    w = s->route_w[(size_t)t * K + k];
            const float *y = s->moe_out + (size_t)r * D;
            float *o = out + (size_t)t * D;
            for (size_t i = 0; i < D; i++)
                o[i] += y[i] * w;
        }
    }
    if (L->up.w) { /* shared expert */
        dense_mlp(c, s, &L->gate, &L->up, &L->down, xn, s->moe_out, N);
        if (L->shared_expert_gate.w)
            linear(s, &L->shared_expert_gate, xn, D, s->gate1, 1, N);
        for (int t = 0; t < N; t++) {
            float g = L->shared_expert_gate.w ? 1.0f / (1.0f + expf(-s->gate1[t])) : 1.0f;
            const float *y = s->moe_out + (size_t)t * D;
            float *o = out + (size_t)t * D;
            for (size_t i = 0; i < D; i++)
                o[i] += g * y[i];
        }
    }
    return NN_OK;
}

/* The MLP (or MoE block) of layer l on xn into out. */
static int mlp_block(const nn_model *m, nn_state *s, const nn_batch *b, int l,
                     const nn_hookset *hooks, const float *xn, float *out, nn_err *err)
{
    const nn_layer *L = &m->layers[l];
    if (L->moe)
        return moe_block(m, s, b, l, hooks, xn, out, err);
    dense_mlp(&m->cfg, s, &L->gate, &L->up, &L->down, xn, out, b->n_tokens);
    return NN_OK;
}

static void add_range(void *ctx, size_t begin, size_t end, int worker)
{
    const rows_job *j = ctx;
    (void)worker;
    for (size_t i = begin; i < end; i++)
        j->y[i] += j->x[i];
}

/* x += y over n floats, on the pool */
static void add_rows(const nn_state *s, float *x, const float *y, size_t n)
{
    rows_job j = {.x = y, .y = x};
    nn_pool_run(s->pool, n, 16384, add_range, &j);
}

/* ---- Pieces of the families of 2025-26 (Qwen3, Gemma 3, OLMo 2/3, SmolLM3, Granite, Phi-4) ----
 */

/* xn = the norm feeding a branch of x; a family without pre-norms (OLMo 2) gives
 * the branch the residual stream itself, copied so that a hook on the branch input edits that
 * branch only. */
static void pre_norm(const nn_state *s, const nn_config *c, const nn_norm *nm, int n)
{
    if (!c->arch->no_pre_norm)
        norm_rows_par(s, c, nm, s->x, s->xn, n);
    else
        memcpy(s->xn, s->x, (size_t)n * (size_t)c->d_model * sizeof(float));
}

/* RMSNorm of every `width` floats of n rows (row stride ld, `groups` groups a row) with weight w
 * [width], as norm_rows computes it (sum of squares in double, the scale rounded to float), with
 * Gemma's (1 + w) where the family's norms have it. */
static void rms_groups(const nn_config *c, const float *w, float *rows, size_t ld, int n,
                       int groups, size_t width)
{
    bool unit_offset = c->arch->norm_unit_offset;
    for (int t = 0; t < n; t++)
        for (int g = 0; g < groups; g++) {
            float *x = rows + (size_t)t * ld + (size_t)g * width;
            double ss = row_sum_sq(x, width, 0.0);
            float inv = (float)(1.0 / sqrt(ss / (double)width + (double)c->norm_eps));
            if (unit_offset)
                for (size_t i = 0; i < width; i++)
                    x[i] = (1.0f + w[i]) * (x[i] * inv);
            else
                for (size_t i = 0; i < width; i++)
                    x[i] = w[i] * (x[i] * inv);
        }
}

/* q and k normed in place after their projections, before rotary: per head (Qwen3, Gemma 3), or
 * over the whole projection (OLMo 2). */
static void qk_norms(const nn_state *s, const nn_config *c, const nn_layer *L, int n)
{
    int H = c->n_heads, G = c->n_kv_heads;
    size_t E = (size_t)c->head_dim, QD = (size_t)H * E, KVD = (size_t)G * E;
    bool whole = c->arch->qk_norm_whole;
    rms_groups(c, L->q_norm.w, s->q, QD, n, whole ? 1 : H, whole ? QD : E);
    rms_groups(c, L->k_norm.w, s->k, KVD, n, whole ? 1 : G, whole ? KVD : E);
}

/* The rotary tables of layer l for a sequence ending at position end - 1: Gemma 3's local table on
 * sliding layers; longrope's long factors once the sequence passes the original context (Hugging
 * Face decides this for the whole batch from its longest row; here each prompt decides alone, as
 * when it runs alone). */
static void rope_for(const nn_config *c, const nn_state *s, int l, int end, const float **cos_t,
                     const float **sin_t)
{
    *cos_t = s->rope_cos;
    *sin_t = s->rope_sin;
    if (s->rope_cos_local && nn_layer_sliding(c, l)) {
        *cos_t = s->rope_cos_local;
        *sin_t = s->rope_sin_local;
    } else if (s->rope_cos_long && end > c->rope_original_max_positions) {
        *cos_t = s->rope_cos_long;
        *sin_t = s->rope_sin_long;
    }
}

static void add_scaled_range(void *ctx, size_t begin, size_t end, int worker)
{
    const rows_job *j = ctx;
    (void)worker;
    float m = j->c->residual_scale;
    for (size_t i = begin; i < end; i++)
        j->y[i] += j->x[i] * m;
}

/* x += branch, or x += branch * residual_multiplier (Granite), over n floats. */
static void add_branch(const nn_state *s, const nn_config *c, float *x, const float *branch,
                       size_t n)
{
    if (c->residual_scale == 0.0f) {
        add_rows(s, x, branch, n);
        return;
    }
    rows_job j = {.c = c, .x = branch, .y = x};
    nn_pool_run(s->pool, n, 16384, add_scaled_range, &j);
}

/* ---- Hook points for sparse autoencoders (docs/sae.md) -----------------------------------------
 */

/* The gain-free normalization of x (TransformerLens' ln.hook_normalized): (x - mean) * inv for
 * LayerNorm, x * inv for RMSNorm, inv computed as norm_rows computes it. */
static void normalize_without_gain(const nn_config *c, const float *x, float *y, int n)
{
    size_t D = (size_t)c->d_model;
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * D;
        float *yr = y + (size_t)t * D;
        if (c->arch->norm == NN_NORM_RMSNORM) {
            double ss = row_sum_sq(xr, D, 0.0);
            float inv = (float)(1.0 / sqrt(ss / (double)D + (double)c->norm_eps));
            for (size_t i = 0; i < D; i++)
                yr[i] = xr[i] * inv;
        } else {
            double mean = row_sum(xr, D) / (double)D;
            double var = row_sum_sq(xr, D, mean) / (double)D;
            float inv = (float)(1.0 / sqrt(var + (double)c->norm_eps));
            float mu = (float)mean;
            for (size_t i = 0; i < D; i++)
                yr[i] = (xr[i] - mu) * inv;
        }
    }
}

/* Calls the hooks of a *_normalized point on a copy of x normalized without gain; nothing is
 * computed when the point is not hooked. */
static int hook_normalized(const nn_model *m, nn_state *s, const nn_batch *b,
                           const nn_hookset *hooks, nn_hook_point hp, int l, const float *x,
                           nn_err *err)
{
    if (!nn_hookset_site(hooks, hp, l))
        return NN_OK;
    size_t D = (size_t)m->cfg.d_model, N = (size_t)b->n_tokens;
    if (nn_grow_floats(&s->normalized, &s->normalized_cap, N * D, err))
        return NN_ERR;
    normalize_without_gain(&m->cfg, x, s->normalized, (int)N);
    return call_hooks(hooks, hp, l, s->normalized, N, D, -1, 0, b, err);
}

#define HOOK_NORMALIZED(hp, layer, x)                                                              \
    do {                                                                                           \
        int hook_rc_ = hook_normalized(m, s, b, hooks, hp, layer, x, err);                         \
        if (hook_rc_)                                                                              \
            return hook_rc_;                                                                       \
    } while (0)

/* One block. The hook points see what Hugging Face's modules output for the family:
 * - sequential (pre-norm): x += attn(norm(x)); x += mlp(norm'(x));
 * - sandwich norms (Gemma-2): the residual adds post_norm(branch); the hooks see the branch
 *   before its post norm;
 * - parallel: x + attn(norm(x)) + mlp(norm'(x)) (norm' = norm for one shared norm);
 * - residual in modules (Bloom): the attention and MLP outputs include the residual, so their
 *   hooks see the residual stream itself. */
static int layer_forward(const nn_model *m, nn_state *s, const nn_batch *b, int l,
                         const nn_hookset *hooks, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    const nn_layer *L = &m->layers[l];
    int N = b->n_tokens;
    size_t D = (size_t)c->d_model, QD = (size_t)c->n_heads * c->head_dim,
           KVD = (size_t)c->n_kv_heads * c->head_dim, ND = (size_t)N * D,
           AD = (size_t)c->n_heads * value_dim(c);

    HOOK(NN_HP_LAYERS_INPUT, l, s->x, (size_t)N, D, -1);
    HOOK_NORMALIZED(NN_HP_ATTENTIONS_NORMALIZED, l, s->x);

    pre_norm(s, c, &L->attn_norm, N);
    HOOK(NN_HP_ATTENTIONS_INPUT, l, s->xn, (size_t)N, D, -1);
    if (a->mla) {
        /* multi-head latent attention: per-head queries, keys and values (rotary applied) */
        nn_mla_project(m, s, s->mla, b, l, s->xn, s->q, s->k, s->v);
    } else {
        linear(s, &L->q, s->xn, D, s->q, QD, N);
        linear(s, &L->k, s->xn, D, s->k, KVD, N);
        linear(s, &L->v, s->xn, D, s->v, KVD, N);
    }
    if (a->q_norm)
        qk_norms(s, c, L, N);
    if (nn_layer_rope(c, l) && !a->mla)
        for (int q = 0; q < b->n_seqs; q++) {
            int off = b->offsets[q], n = b->offsets[q + 1] - off, p0 = b->pos0 ? b->pos0[q] : 0;
            const float *cs, *sn;
            rope_for(c, s, l, p0 + n, &cs, &sn);
            rope(c, cs, sn, s->q + (size_t)off * QD, QD, n, c->n_heads, p0);
            rope(c, cs, sn, s->k + (size_t)off * KVD, KVD, n, c->n_kv_heads, p0);
        }
    int rc = attention(m, s, b, l, hooks, err);
    if (rc)
        return rc;
    linear(s, &L->o, s->att, AD, s->branch, D, N);

    if (c->parallel) {
        HOOK(NN_HP_ATTENTIONS_OUTPUT, l, s->branch, (size_t)N, D, -1);
        HOOK(NN_HP_ATTENTIONS_RESIDUAL, l, s->branch, (size_t)N, D, -1);
        HOOK_NORMALIZED(NN_HP_MLPS_NORMALIZED, l, s->x);
        if (!c->shared_norm)
            norm_rows_par(s, c, &L->mlp_norm, s->x, s->xn, N);
        HOOK(NN_HP_MLPS_INPUT, l, s->xn, (size_t)N, D, -1);
        rc = mlp_block(m, s, b, l, hooks, s->xn, s->branch2, err);
        if (rc)
            return rc;
        HOOK(NN_HP_MLPS_OUTPUT, l, s->branch2, (size_t)N, D, -1);
        HOOK(NN_HP_MLPS_RESIDUAL, l, s->branch2, (size_t)N, D, -1);
        add_rows(s, s->x, s->branch, ND);
        add_rows(s, s->x, s->branch2, ND);
        HOOK(NN_HP_LAYERS_OUTPUT, l, s->x, (size_t)N, D, -1);
        return NN_OK;
    }

    if (a->residual_in_modules) {
        HOOK(NN_HP_ATTENTIONS_RESIDUAL, l, s->branch, (size_t)N, D, -1);
        add_rows(s, s->x, s->branch, ND);
        HOOK(NN_HP_ATTENTIONS_OUTPUT, l, s->x, (size_t)N, D, -1);
    } else {
        HOOK(NN_HP_ATTENTIONS_OUTPUT, l, s->branch, (size_t)N, D, -1);
        if (a->post_attn_norm)
            norm_rows(c, &L->post_attn_norm, s->branch, s->branch, N);
        HOOK(NN_HP_ATTENTIONS_RESIDUAL, l, s->branch, (size_t)N, D, -1);
        add_branch(s, c, s->x, s->branch, ND);
    }
    HOOK(NN_HP_LAYERS_MIDDLE, l, s->x, (size_t)N, D, -1);
    HOOK_NORMALIZED(NN_HP_MLPS_NORMALIZED, l, s->x);

    pre_norm(s, c, &L->mlp_norm, N);
    HOOK(NN_HP_MLPS_INPUT, l, s->xn, (size_t)N, D, -1);
    rc = mlp_block(m, s, b, l, hooks, s->xn, s->branch, err);
    if (rc)
        return rc;
    if (a->residual_in_modules) {
        HOOK(NN_HP_MLPS_RESIDUAL, l, s->branch, (size_t)N, D, -1);
        add_rows(s, s->x, s->branch, ND);
        HOOK(NN_HP_MLPS_OUTPUT, l, s->x, (size_t)N, D, -1);
    } else {
        HOOK(NN_HP_MLPS_OUTPUT, l, s->branch, (size_t)N, D, -1);
        if (a->post_mlp_norm)
            norm_rows(c, &L->post_mlp_norm, s->branch, s->branch, N);
        HOOK(NN_HP_MLPS_RESIDUAL, l, s->branch, (size_t)N, D, -1);
        add_branch(s, c, s->x, s->branch, ND);
    }
    HOOK(NN_HP_LAYERS_OUTPUT, l, s->x, (size_t)N, D, -1);
    return NN_OK;
}

/* What the family does after lm_head: Cohere's logit_scale, Gemma-2's final soft-capping,
 * Granite's logits_scaling. */
static void post_logits(const nn_config *c, float *x, size_t n)
{
    if (c->logits_divisor != 0.0f)
        for (size_t i = 0; i < n; i++)
            x[i] /= c->logits_divisor;
    if (c->logit_scale != 0.0f)
        for (size_t i = 0; i < n; i++)
            x[i] *= c->logit_scale;
    if (c->final_softcap > 0.0f)
        for (size_t i = 0; i < n; i++)
            x[i] = tanhf(x[i] / c->final_softcap) * c->final_softcap;
}

int nn_forward(const nn_model *m, nn_state *s, const nn_batch *b, const nn_forward_params *fp,
               nn_err *err)
{
    if (m->executor)
        return m->executor->forward(m->executor->ctx, m, s, b, fp, err);
    return nn_forward_range(m, s, b, fp, 0, m->cfg.n_layers, true, true, err);
}

float *nn_state_hidden(nn_state *s)
{
    return s->x;
}
float *nn_state_logits_mut(nn_state *s)
{
    return s->logits;
}

static int forward_range(const nn_model *m, nn_state *s, const nn_batch *b,
                         const nn_forward_params *fp, int layer_begin, int layer_end, bool embed,
                         bool head, nn_err *err);

int nn_forward_range(const nn_model *m, nn_state *s, const nn_batch *b, const nn_forward_params *fp,
                     int layer_begin, int layer_end, bool embed, bool head, nn_err *err)
{
    if (m->headers_only)
        return nn_fail(err, "%s: loaded for inspection only; it cannot run", m->source);
    s->gemm_failed = false;
    int rc = forward_range(m, s, b, fp, layer_begin, layer_end, embed, head, err);
    if (rc != NN_ERR && s->gemm_failed) {
        *err = s->gemm_err;
        return NN_ERR;
    }
    return rc;
}

static int forward_range(const nn_model *m, nn_state *s, const nn_batch *b,
                         const nn_forward_params *fp, int layer_begin, int layer_end, bool embed,
                         bool head, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_hookset *hooks = fp ? fp->hooks : NULL;
    bool want_logits = fp && fp->want_logits;
    if (hooks && hooks->n_layers != c->n_layers)
        return nn_fail(err, "hook set was built for %d layers, the model has %d", hooks->n_layers,
                       c->n_layers);
    if (check_batch(m, s, b, err))
        return NN_ERR;
    int N = b->n_tokens, S = b->n_seqs;
    size_t D = (size_t)c->d_model, V = (size_t)c->vocab_size;
    if (layer_begin < 0 || layer_end > c->n_layers || layer_begin > layer_end)
        return nn_fail(err, "forward: layer range [%d, %d) outside the model's %d layers",
                       layer_begin, layer_end, c->n_layers);
    if (!embed)
        goto layers; /* the residual stream entering layer_begin is already in nn_state_hidden */

    for (int t = 0; t < N; t++) {
        size_t row = (size_t)b->tokens[t] * D;
        float *xr = s->x + (size_t)t * D;
        if (m->tok_emb_dtype == NN_DT_F32)
            memcpy(xr, m->tok_emb + row, D * sizeof(float));
        else if (m->tok_emb_dtype == NN_DT_BF16)
            for (size_t i = 0; i < D; i++)
                xr[i] = nn_bf16_to_f32(m->tok_emb16[row + i]);
        else
            for (size_t i = 0; i < D; i++)
                xr[i] = nn_f16_to_f32(m->tok_emb16[row + i]);
    }
    HOOK(NN_HP_TOKEN_EMBEDDINGS, -1, s->x, (size_t)N, D, -1);
    if (m->pos_emb)
        for (int q = 0; q < S; q++)
            for (int t = b->offsets[q]; t < b->offsets[q + 1]; t++) {
                int pos = (b->pos0 ? b->pos0[q] : 0) + t - b->offsets[q] + c->arch->pos_offset;
                const float *pe = m->pos_emb + (size_t)pos * D;
                float *xr = s->x + (size_t)t * D;
                for (size_t i = 0; i < D; i++)
                    xr[i] += pe[i];
            }
    if (c->emb_scale != 0.0f)
        for (size_t i = 0; i < (size_t)N * D; i++)
            s->x[i] *= c->emb_scale;
    if (c->arch->emb_norm)
        norm_rows(c, &m->emb_norm, s->x, s->x, N);

layers:
    for (int l = layer_begin; l < layer_end; l++) {
        int rc = layer_forward(m, s, b, l, hooks, err);
        if (rc)
            return rc;
    }
    if (!head)
        return NN_OK;

    bool hook_ln = nn_hookset_site(hooks, NN_HP_LN_FINAL, -1) != NULL;
    bool hook_logits = nn_hookset_site(hooks, NN_HP_LOGITS, -1) != NULL;
    bool hook_probs = nn_hookset_site(hooks, NN_HP_NEXT_TOKEN_PROBS, -1) != NULL;
    if (!hook_ln && !hook_logits && !hook_probs && !want_logits)
        return NN_OK;
    if (hook_ln || hook_logits) {
        norm_rows(c, &m->final_norm, s->x, s->xn, N);
        HOOK(NN_HP_LN_FINAL, -1, s->xn, (size_t)N, D, -1);
    }
    if (hook_logits) {
        if (nn_grow_floats(&s->all_logits, &s->all_logits_cap, (size_t)N * V, err))
            return NN_ERR;
        linear(s, &m->head, s->xn, D, s->all_logits, V, N);
        post_logits(c, s->all_logits, (size_t)N * V);
        HOOK(NN_HP_LOGITS, -1, s->all_logits, (size_t)N, V, -1);
        for (int q = 0; q < S; q++)
            memcpy(s->logits + (size_t)q * V, s->all_logits + (size_t)(b->offsets[q + 1] - 1) * V,
                   V * sizeof(float));
    } else {
        const float *src = hook_ln ? s->xn : s->x;
        for (int q = 0; q < S; q++)
            memcpy(s->last + (size_t)q * D, src + (size_t)(b->offsets[q + 1] - 1) * D,
                   D * sizeof(float));
        if (!hook_ln)
            norm_rows(c, &m->final_norm, s->last, s->last, S);
        linear(s, &m->head, s->last, D, s->logits, V, S);
        post_logits(c, s->logits, (size_t)S * V);
    }
    if (hook_probs) {
        memcpy(s->probs, s->logits, (size_t)S * V * sizeof(float));
        for (int q = 0; q < S; q++)
            nn_softmax(s->probs + (size_t)q * V, V);
        HOOK(NN_HP_NEXT_TOKEN_PROBS, -1, s->probs, (size_t)S, V, -1);
    }
    return NN_OK;
}

void nn_unembed(const nn_model *m, nn_state *s, const float *x, int n, float *normed, float *logits)
{
    const nn_config *c = &m->cfg;
    norm_rows(c, &m->final_norm, x, normed, n);
    linear(s, &m->head, normed, (size_t)c->d_model, logits, (size_t)c->vocab_size, n);
    post_logits(c, logits, (size_t)n * (size_t)c->vocab_size);
}

size_t nn_hook_point_width(const nn_model *m, nn_hook_point hp)
{
    const nn_config *c = &m->cfg;
    switch (hp) {
    case NN_HP_ATTENTION_PROBABILITIES:
        return 0;
    case NN_HP_LOGITS:
    case NN_HP_NEXT_TOKEN_PROBS:
        return (size_t)c->vocab_size;
    case NN_HP_ROUTER_PROBABILITIES:
        return (size_t)c->n_experts;
    default:
        return (size_t)c->d_model;
    }
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
