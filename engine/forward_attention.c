/* Attention: softmax (with gpt-oss's sinks), rotary application, tiled attention with its masks,
 * the KV cache, and the q/k norms of the families of 2025-26. */
#include "forward_internal.h"

#include <math.h>
#include <string.h>

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

/* Rotates the first R dims of each head of rows (n, heads*E) at positions pos0.., with the tables
 * cos_t, sin_t (max_positions, R/2). */
void nn_fw_rope(const nn_config *c, const float *cos_t, const float *sin_t, float *rows, size_t ld,
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
            nn_fw_sgemm(true, rows, TILE_K, (int)E, scale, Qb, (int)ldqb, Kb, (int)ldk, beta, S,
                        TILE_K);
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
            nn_fw_sgemm(false, rows, (int)Ev, TILE_K, 1.0f, S, TILE_K, Vb, (int)ldv, 1.0f, acc,
                        (int)Ev);
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

int nn_fw_attention(const nn_model *m, nn_state *s, const nn_batch *b, int layer,
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
            nn_fw_sgemm(true, n, C, E, scale, s->q + (size_t)off * QD + (size_t)h * E, (int)QD,
                        K + (size_t)g * E, (int)KD, beta, S, C);
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
        int stop = nn_fw_call_hooks(hooks, NN_HP_ATTENTION_PROBABILITIES, layer, s->scores,
                                    (size_t)H * n, (size_t)C, q, H, b, err);
        if (stop < 0)
            return NN_ERR;
        if (memcmp(s->scores_seen, s->scores, block * (size_t)H * sizeof(float)) == 0)
            attend_heads(&job, (size_t)q * H, (size_t)(q + 1) * H, 0);
        else
            for (int h = 0; h < H; h++)
                nn_fw_sgemm(false, n, (int)Ev, C, 1.0f, s->scores + (size_t)h * block, C,
                            Vv + (size_t)(h / group) * Ev, (int)VD, 0.0f,
                            s->att + (size_t)off * AD + (size_t)h * Ev, (int)AD);
        if (stop)
            return NN_STOPPED;
    }
    return NN_OK;
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
void nn_fw_qk_norms(const nn_state *s, const nn_config *c, const nn_layer *L, int n)
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
void nn_fw_rope_for(const nn_config *c, const nn_state *s, int l, int end, const float **cos_t,
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
