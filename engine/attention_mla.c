/* Multi-head latent attention's projections (see attention_mla.h). Every matrix product goes
 * through forward_kernels.c's linear() and every row is computed on its own, so a token's queries, keys
 * and values are the same bits whatever batch it is in, and the expanded keys and values a
 * KV-cache slot holds are those a full prefill would compute. */
#include "attention_mla.h"

#include "forward_internal.h"

#include <math.h>
#include <string.h>

struct nn_mla_scratch {
    float *qa;  /* (N, q_lora_rank) */
    float *ckv; /* (N, kv_lora_rank + dr): [latent | k_rope] */
    float *lat; /* (N, kv_lora_rank) the normed latent */
    float *kvb; /* (N, H*(dn + dv)) */
};

/* The latent norms are DeepseekV3RMSNorm(width) built without the config's eps: 1e-6. */
static const double LATENT_NORM_EPS = 1e-6;

int nn_mla_scratch_init(nn_mla_scratch **out, const nn_model *m, int max_tokens, nn_err *err)
{
    const nn_config *c = &m->cfg;
    size_t N = (size_t)max_tokens, H = (size_t)c->n_heads, dr = (size_t)c->qk_rope_dim,
           dn = (size_t)(c->head_dim - c->qk_rope_dim), dv = (size_t)c->v_head_dim;
    *out = NULL;
    nn_mla_scratch *w = nn_calloc(1, sizeof *w, err);
    if (!w)
        return NN_ERR;
    if (!(w->qa = nn_calloc(N * (size_t)(c->q_lora_rank > 0 ? c->q_lora_rank : 1), sizeof(float),
                            err)) ||
        !(w->ckv = nn_calloc(N * ((size_t)c->kv_lora_rank + dr), sizeof(float), err)) ||
        !(w->lat = nn_calloc(N * (size_t)c->kv_lora_rank, sizeof(float), err)) ||
        !(w->kvb = nn_calloc(N * H * (dn + dv), sizeof(float), err))) {
        nn_mla_scratch_free(w);
        return NN_ERR;
    }
    *out = w;
    return NN_OK;
}

void nn_mla_scratch_free(nn_mla_scratch *w)
{
    if (!w)
        return;
    nn_free(w->qa);
    nn_free(w->ckv);
    nn_free(w->lat);
    nn_free(w->kvb);
    nn_free(w);
}

/* y = w * (x / sqrt(mean(x^2) + eps)) over rows of width n (row strides ldx, ldy), the sum in
 * double. */
static void rms_rows(const float *x, size_t ldx, float *y, size_t ldy, const float *weight,
                     size_t n, int rows)
{
    for (int t = 0; t < rows; t++) {
        const float *xr = x + (size_t)t * ldx;
        float *yr = y + (size_t)t * ldy;
        double ss = 0.0;
        for (size_t i = 0; i < n; i++)
            ss += (double)xr[i] * (double)xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)n + LATENT_NORM_EPS));
        for (size_t i = 0; i < n; i++)
            yr[i] = weight[i] * (xr[i] * inv);
    }
}

/* Rotates the dr dims at x (a query head's tail, or the shared key part) for position pos into
 * out, in Hugging Face's layout: half-split pairs (i, i + dr/2), or, with rope_interleave,
 * adjacent pairs (2i, 2i+1) whose results are written de-interleaved [evens | odds] as
 * apply_rotary_pos_emb_interleave does (queries and keys alike, so q . k is unchanged). x and out
 * may not overlap. */
static void rotate(const nn_config *c, const float *cos_t, const float *sin_t, int pos,
                   const float *x, float *out)
{
    int half = c->qk_rope_dim / 2;
    const float *cs = cos_t + (size_t)pos * half, *sn = sin_t + (size_t)pos * half;
    for (int i = 0; i < half; i++) {
        float a = c->mla_rope_interleaved ? x[2 * i] : x[i];
        float b = c->mla_rope_interleaved ? x[2 * i + 1] : x[i + half];
        out[i] = a * cs[i] - b * sn[i];
        out[i + half] = b * cs[i] + a * sn[i];
    }
}

void nn_mla_project(const nn_model *m, const nn_state *s, nn_mla_scratch *w, const nn_batch *b,
                    int layer, const float *xn, float *q, float *k, float *v)
{
    const nn_config *c = &m->cfg;
    const nn_layer *L = &m->layers[layer];
    int N = b->n_tokens, H = c->n_heads, E = c->head_dim, dr = c->qk_rope_dim, dn = E - dr,
        dv = c->v_head_dim, R = c->kv_lora_rank;
    size_t D = (size_t)c->d_model, QD = (size_t)H * (size_t)E, VD = (size_t)H * (size_t)dv,
           KVB = (size_t)H * (size_t)(dn + dv), CKV = (size_t)R + (size_t)dr;
    if (c->q_lora_rank > 0) {
        size_t Rq = (size_t)c->q_lora_rank;
        nn_fw_linear(s, &L->q_a, xn, D, w->qa, Rq, N);
        rms_rows(w->qa, Rq, w->qa, Rq, L->q_a_norm.w, Rq, N);
        nn_fw_linear(s, &L->q_b, w->qa, Rq, q, QD, N);
    } else {
        nn_fw_linear(s, &L->q, xn, D, q, QD, N);
    }
    nn_fw_linear(s, &L->kv_a, xn, D, w->ckv, CKV, N);
    rms_rows(w->ckv, CKV, w->lat, (size_t)R, L->kv_a_norm.w, (size_t)R, N);
    nn_fw_linear(s, &L->kv_b, w->lat, (size_t)R, w->kvb, KVB, N);

    const float *cos_t, *sin_t;
    nn_fw_rope_tables(s, &cos_t, &sin_t);
    float tail[1024]; /* dr <= 1024: the config parser's bound */
    for (int sq = 0; sq < b->n_seqs; sq++) {
        int p0 = b->pos0 ? b->pos0[sq] : 0;
        for (int t = b->offsets[sq]; t < b->offsets[sq + 1]; t++) {
            int pos = p0 + t - b->offsets[sq];
            float *qt = q + (size_t)t * QD, *kt = k + (size_t)t * QD, *vt = v + (size_t)t * VD;
            const float *kvt = w->kvb + (size_t)t * KVB;
            float krot[1024];
            rotate(c, cos_t, sin_t, pos, w->ckv + (size_t)t * CKV + R, krot);
            for (int h = 0; h < H; h++) {
                float *qh = qt + (size_t)h * E;
                memcpy(tail, qh + dn, (size_t)dr * sizeof(float));
                rotate(c, cos_t, sin_t, pos, tail, qh + dn);
                memcpy(kt + (size_t)h * E, kvt + (size_t)h * (dn + dv), (size_t)dn * sizeof(float));
                memcpy(kt + (size_t)h * E + dn, krot, (size_t)dr * sizeof(float));
                memcpy(vt + (size_t)h * dv, kvt + (size_t)h * (dn + dv) + dn,
                       (size_t)dv * sizeof(float));
            }
        }
    }
}
