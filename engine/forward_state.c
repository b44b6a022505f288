/* The forward pass's state (nn_state) and the tables several states may share (nn_run_tables):
 * buffers sized for the model, rotary tables as Hugging Face computes them, ALiBi slopes. */
#include "forward_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

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

static void pad_size(const nn_linear *W, size_t *pad_in, size_t *pad_out)
{
    if (!W->w)
        return;
    nn_linear block = *W;
    if (W->dtype != NN_DT_F32)
        wide_blocks(W, &block.n_out);
    W = &block;
    size_t rows = (size_t)nn_linear_min_rows(W);
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
                                            s->rope_cos_local, s->rope_sin_local, s->rope_cos_long,
                                            s->rope_sin_long});
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
    if (bf16_per && !(s->bf16_work = nn_malloc(bf16_per * (size_t)nn_pool_threads(s->pool), err)))
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

void nn_fw_rope_tables(const nn_state *s, const float **cos_t, const float **sin_t)
{
    *cos_t = s->rope_cos;
    *sin_t = s->rope_sin;
}
