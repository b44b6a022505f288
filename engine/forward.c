/* One forward pass for every family; nn_arch says which pieces apply. Dimension letters:
 * N tokens in the packed batch, D model width, H query heads, G kv heads, E head dim,
 * F MLP width, V vocabulary, C context (keys) of a sequence. */
#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

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
    float *scores;            /* grown on demand: (C) per head row block, or (H, n, C) */
    size_t scores_cap;
    float *all_logits; /* grown on demand: (N, V) when logits are hooked */
    size_t all_logits_cap;
    float *pad_in, *pad_out; /* row padding for short GEMMs, see gemm_min_rows */
};

static int gemm_min_rows(const nn_linear *W);

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

/* Rotary tables as Hugging Face computes them in float32: inv_freq = 1 / theta^(2i/R), angle =
 * float(position * inv_freq), then cos/sin. */
static void rope_tables(const nn_config *c, float *cos_t, float *sin_t)
{
    int half = c->rotary_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->rotary_dim;
        float inv = 1.0f / (float)pow(c->rope_theta, (double)e);
        if (c->rope_scaling == NN_ROPE_SCALING_LINEAR) {
            inv = (float)(inv / c->rope_factor);
        } else if (c->rope_scaling == NN_ROPE_SCALING_LLAMA3) {
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
        }
        for (int pos = 0; pos < c->max_positions; pos++) {
            float angle = (float)pos * inv;
            cos_t[(size_t)pos * half + i] = (float)cos((double)angle);
            sin_t[(size_t)pos * half + i] = (float)sin((double)angle);
        }
    }
}

void nn_state_free(nn_state *s)
{
    if (!s)
        return;
    float *bufs[] = {s->x,       s->xn,     s->q,          s->k,        s->v,
                     s->att,     s->branch, s->gate,       s->up,       s->last,
                     s->logits,  s->probs,  s->rope_cos,   s->rope_sin, s->k_cache,
                     s->v_cache, s->scores, s->all_logits, s->pad_in,   s->pad_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        nn_free(bufs[i]);
    nn_free(s);
}

int nn_state_init(nn_state **out, const nn_model *m, const nn_state_params *p, nn_err *err)
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
           KVD = (size_t)c->n_kv_heads * (size_t)c->head_dim, F = (size_t)c->d_ff,
           V = (size_t)c->vocab_size;
    s->max_ctx =
        p->n_slots > 0 && p->slot_capacity > p->max_tokens ? p->slot_capacity : p->max_tokens;
    if (!(s->x = nn_calloc(N * D, sizeof(float), err)) ||
        !(s->xn = nn_calloc(N * D, sizeof(float), err)) ||
        !(s->q = nn_calloc(N * QD, sizeof(float), err)) ||
        !(s->k = nn_calloc(N * KVD, sizeof(float), err)) ||
        !(s->v = nn_calloc(N * KVD, sizeof(float), err)) ||
        !(s->att = nn_calloc(N * QD, sizeof(float), err)) ||
        !(s->branch = nn_calloc(N * D, sizeof(float), err)) ||
        !(s->gate = nn_calloc(N * F, sizeof(float), err)) ||
        !(s->up = nn_calloc(N * F, sizeof(float), err)) ||
        !(s->last = nn_calloc(S * D, sizeof(float), err)) ||
        !(s->logits = nn_calloc(S * V, sizeof(float), err)) ||
        !(s->probs = nn_calloc(S * V, sizeof(float), err)))
        goto fail;
    size_t pad_in = 0, pad_out = 0;
    const nn_linear *shapes[] = {&m->head,        &m->layers[0].q,  &m->layers[0].k,
                                 &m->layers[0].o, &m->layers[0].up, &m->layers[0].down};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        size_t rows = (size_t)gemm_min_rows(shapes[i]);
        if (rows * (size_t)shapes[i]->n_in > pad_in)
            pad_in = rows * (size_t)shapes[i]->n_in;
        if (rows * (size_t)shapes[i]->n_out > pad_out)
            pad_out = rows * (size_t)shapes[i]->n_out;
    }
    if (!(s->pad_in = nn_calloc(pad_in, sizeof(float), err)) ||
        !(s->pad_out = nn_calloc(pad_out, sizeof(float), err)))
        goto fail;
    if (c->arch->pos == NN_POS_ROPE) {
        size_t n = (size_t)c->max_positions * (size_t)(c->rotary_dim / 2);
        if (!(s->rope_cos = nn_calloc(n, sizeof(float), err)) ||
            !(s->rope_sin = nn_calloc(n, sizeof(float), err)))
            goto fail;
        rope_tables(c, s->rope_cos, s->rope_sin);
    }
    if (p->n_slots > 0) {
        size_t rows = (size_t)p->n_slots * (size_t)p->slot_capacity, n;
        if (!nn_mul_size(rows * KVD, (size_t)c->n_layers, &n)) {
            nn_fail(err, "state: KV cache size overflows");
            goto fail;
        }
        if (!(s->k_cache = nn_calloc(n, sizeof(float), err)) ||
            !(s->v_cache = nn_calloc(n, sizeof(float), err)))
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

static int grow(float **buf, size_t *cap, size_t need, nn_err *err)
{
    if (need <= *cap)
        return NN_OK;
    float *p = nn_realloc(*buf, need * sizeof(float), err);
    if (!p)
        return NN_ERR;
    *buf = p;
    *cap = need;
    return NN_OK;
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

static void gemm(const nn_linear *W, const float *x, size_t ldx, float *y, size_t ldy, int n)
{
    float beta = 0.0f;
    if (W->b) {
        for (int t = 0; t < n; t++)
            memcpy(y + (size_t)t * ldy, W->b, (size_t)W->n_out * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, W->in_major ? CblasNoTrans : CblasTrans, n, W->n_out,
                W->n_in, 1.0f, x, (int)ldx, W->w, (int)W->ld, beta, y, (int)ldy);
}

/* y (N, out) = x (N, in) W + b, the same bits for a row whatever N is. */
static void linear(const nn_state *s, const nn_linear *W, const float *x, size_t ldx, float *y,
                   size_t ldy, int n)
{
    if (n <= 0)
        return;
    int rows = gemm_min_rows(W);
    if (n >= rows) {
        gemm(W, x, ldx, y, ldy, n);
        return;
    }
    size_t in = (size_t)W->n_in, out = (size_t)W->n_out;
    for (int t = 0; t < n; t++)
        memcpy(s->pad_in + (size_t)t * in, x + (size_t)t * ldx, in * sizeof(float));
    gemm(W, s->pad_in, in, s->pad_out, out, rows);
    for (int t = 0; t < n; t++)
        memcpy(y + (size_t)t * ldy, s->pad_out + (size_t)t * out, out * sizeof(float));
}

static void norm_rows(const nn_config *c, const nn_norm *nm, const float *x, float *y, int n)
{
    size_t D = (size_t)c->d_model;
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * D;
        float *yr = y + (size_t)t * D;
        if (c->arch->norm == NN_NORM_RMSNORM) {
            double ss = 0.0;
            for (size_t i = 0; i < D; i++)
                ss += (double)xr[i] * xr[i];
            float inv = (float)(1.0 / sqrt(ss / (double)D + (double)c->norm_eps));
            for (size_t i = 0; i < D; i++)
                yr[i] = nm->w[i] * (xr[i] * inv);
        } else {
            double mean = 0.0, var = 0.0;
            for (size_t i = 0; i < D; i++)
                mean += xr[i];
            mean /= (double)D;
            for (size_t i = 0; i < D; i++)
                var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
            var /= (double)D;
            float inv = (float)(1.0 / sqrt(var + (double)c->norm_eps));
            float mu = (float)mean;
            for (size_t i = 0; i < D; i++) {
                float v = (xr[i] - mu) * inv * nm->w[i];
                yr[i] = nm->b ? v + nm->b[i] : v;
            }
        }
    }
}

static float activate(nn_activation act, float x)
{
    switch (act) {
    case NN_ACT_GELU_TANH: {
        /* 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): the same function, a third of the cost of
         * tanhf; exp overflowing to inf for very negative x still gives -0. */
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return x / (1.0f + expf(-2.0f * u));
    }
    case NN_ACT_GELU:
        return (float)(0.5 * x * (1.0 + erf(x * 0.7071067811865476)));
    case NN_ACT_SILU:
        return x / (1.0f + expf(-x));
    case NN_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    }
    return x;
}

/* Rotates the first R dims of each head of rows (n, heads*E) at positions pos0.. */
static void rope(const nn_config *c, const nn_state *s, float *rows, size_t ld, int n, int heads,
                 int pos0)
{
    int E = c->head_dim, half = c->rotary_dim / 2;
    bool interleaved = c->arch->rope_interleaved;
    for (int t = 0; t < n; t++) {
        const float *cs = s->rope_cos + (size_t)(pos0 + t) * half;
        const float *sn = s->rope_sin + (size_t)(pos0 + t) * half;
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
                      size_t cols, int seq, const nn_batch *b, nn_err *err)
{
    nn_hook_view view = {.point = hp,
                         .layer = nn_hook_point_per_layer(hp) ? layer : -1,
                         .data = data,
                         .rows = rows,
                         .cols = cols,
                         .seq = seq,
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
            int hook_rc_ = call_hooks(hooks, hp, layer, data, rows, cols, seq, b, err);            \
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

static int attention(const nn_model *m, nn_state *s, const nn_batch *b, int layer,
                     const nn_hookset *hooks, nn_err *err)
{
    const nn_config *c = &m->cfg;
    int H = c->n_heads, G = c->n_kv_heads, E = c->head_dim, group = H / G;
    size_t QD = (size_t)H * E, KVD = (size_t)G * E;
    float scale = (float)(1.0 / sqrt((double)E));
    bool want_probs = nn_hookset_site(hooks, NN_HP_ATTENTION_PROBABILITIES, layer) != NULL;
    for (int q = 0; q < b->n_seqs; q++) {
        int off = b->offsets[q], n = b->offsets[q + 1] - off, p0 = b->pos0 ? b->pos0[q] : 0;
        int C = p0 + n;
        const float *K, *Vv;
        if (b->slot) {
            size_t base = ((size_t)layer * s->p.n_slots + (size_t)b->slot[q]) *
                          (size_t)s->p.slot_capacity * KVD;
            float *kc = s->k_cache + base, *vc = s->v_cache + base;
            memcpy(kc + (size_t)p0 * KVD, s->k + (size_t)off * KVD,
                   (size_t)n * KVD * sizeof(float));
            memcpy(vc + (size_t)p0 * KVD, s->v + (size_t)off * KVD,
                   (size_t)n * KVD * sizeof(float));
            K = kc;
            Vv = vc;
        } else {
            K = s->k + (size_t)off * KVD;
            Vv = s->v + (size_t)off * KVD;
        }
        size_t block = (size_t)n * (size_t)C;
        if (grow(&s->scores, &s->scores_cap, want_probs ? block * (size_t)H : block, err))
            return NN_ERR;
        for (int h = 0; h < H; h++) {
            int g = h / group;
            float *S = s->scores + (want_probs ? (size_t)h * block : 0); /* (n, C) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, C, E, scale,
                        s->q + (size_t)off * QD + (size_t)h * E, (int)QD, K + (size_t)g * E,
                        (int)KVD, 0.0f, S, C);
            for (int i = 0; i < n; i++) {
                int pos = p0 + i;
                int lo = c->sliding_window > 0 && pos - c->sliding_window + 1 > 0
                             ? pos - c->sliding_window + 1
                             : 0;
                float *row = S + (size_t)i * C;
                nn_softmax(row + lo, (size_t)(pos - lo + 1));
                for (int j = 0; j < lo; j++)
                    row[j] = 0.0f;
                for (int j = pos + 1; j < C; j++)
                    row[j] = 0.0f;
            }
            if (!want_probs)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, E, C, 1.0f, S, C,
                            Vv + (size_t)g * E, (int)KVD, 0.0f,
                            s->att + (size_t)off * QD + (size_t)h * E, (int)QD);
        }
        if (want_probs) {
            nn_hook_view view = {.point = NN_HP_ATTENTION_PROBABILITIES,
                                 .layer = layer,
                                 .data = s->scores,
                                 .rows = (size_t)H * n,
                                 .cols = (size_t)C,
                                 .seq = q,
                                 .n_heads = H,
                                 .batch = b};
            int stop = 0;
            for (nn_hook_entry *e = nn_hookset_site(hooks, NN_HP_ATTENTION_PROBABILITIES, layer); e;
                 e = e->next) {
                int rc = e->fn(&view, e->user, err);
                if (rc < 0)
                    return NN_ERR;
                stop |= rc == NN_HOOK_STOP;
            }
            for (int h = 0; h < H; h++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, E, C, 1.0f,
                            s->scores + (size_t)h * block, C, Vv + (size_t)(h / group) * E,
                            (int)KVD, 0.0f, s->att + (size_t)off * QD + (size_t)h * E, (int)QD);
            if (stop)
                return NN_STOPPED;
        }
    }
    return NN_OK;
}

static int layer_forward(const nn_model *m, nn_state *s, const nn_batch *b, int l,
                         const nn_hookset *hooks, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_layer *L = &m->layers[l];
    int N = b->n_tokens;
    size_t D = (size_t)c->d_model, QD = (size_t)c->n_heads * c->head_dim,
           KVD = (size_t)c->n_kv_heads * c->head_dim, F = (size_t)c->d_ff;

    HOOK(NN_HP_LAYERS_INPUT, l, s->x, (size_t)N, D, -1);

    norm_rows(c, &L->attn_norm, s->x, s->xn, N);
    HOOK(NN_HP_ATTENTIONS_INPUT, l, s->xn, (size_t)N, D, -1);
    linear(s, &L->q, s->xn, D, s->q, QD, N);
    linear(s, &L->k, s->xn, D, s->k, KVD, N);
    linear(s, &L->v, s->xn, D, s->v, KVD, N);
    if (c->arch->pos == NN_POS_ROPE)
        for (int q = 0; q < b->n_seqs; q++) {
            int off = b->offsets[q], n = b->offsets[q + 1] - off, p0 = b->pos0 ? b->pos0[q] : 0;
            rope(c, s, s->q + (size_t)off * QD, QD, n, c->n_heads, p0);
            rope(c, s, s->k + (size_t)off * KVD, KVD, n, c->n_kv_heads, p0);
        }
    int rc = attention(m, s, b, l, hooks, err);
    if (rc)
        return rc;
    linear(s, &L->o, s->att, QD, s->branch, D, N);
    HOOK(NN_HP_ATTENTIONS_OUTPUT, l, s->branch, (size_t)N, D, -1);
    for (size_t i = 0; i < (size_t)N * D; i++)
        s->x[i] += s->branch[i];

    norm_rows(c, &L->mlp_norm, s->x, s->xn, N);
    HOOK(NN_HP_MLPS_INPUT, l, s->xn, (size_t)N, D, -1);
    linear(s, &L->up, s->xn, D, s->up, F, N);
    if (c->arch->gated_mlp) {
        linear(s, &L->gate, s->xn, D, s->gate, F, N);
        for (size_t i = 0; i < (size_t)N * F; i++)
            s->up[i] *= activate(c->act, s->gate[i]);
    } else {
        for (size_t i = 0; i < (size_t)N * F; i++)
            s->up[i] = activate(c->act, s->up[i]);
    }
    linear(s, &L->down, s->up, F, s->branch, D, N);
    HOOK(NN_HP_MLPS_OUTPUT, l, s->branch, (size_t)N, D, -1);
    for (size_t i = 0; i < (size_t)N * D; i++)
        s->x[i] += s->branch[i];
    HOOK(NN_HP_LAYERS_OUTPUT, l, s->x, (size_t)N, D, -1);
    return NN_OK;
}

int nn_forward(const nn_model *m, nn_state *s, const nn_batch *b, const nn_forward_params *fp,
               nn_err *err)
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

    for (int t = 0; t < N; t++)
        memcpy(s->x + (size_t)t * D, m->tok_emb + (size_t)b->tokens[t] * D, D * sizeof(float));
    HOOK(NN_HP_TOKEN_EMBEDDINGS, -1, s->x, (size_t)N, D, -1);
    if (m->pos_emb)
        for (int q = 0; q < S; q++)
            for (int t = b->offsets[q]; t < b->offsets[q + 1]; t++) {
                int pos = (b->pos0 ? b->pos0[q] : 0) + t - b->offsets[q];
                const float *pe = m->pos_emb + (size_t)pos * D;
                float *xr = s->x + (size_t)t * D;
                for (size_t i = 0; i < D; i++)
                    xr[i] += pe[i];
            }

    for (int l = 0; l < c->n_layers; l++) {
        int rc = layer_forward(m, s, b, l, hooks, err);
        if (rc)
            return rc;
    }

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
        if (grow(&s->all_logits, &s->all_logits_cap, (size_t)N * V, err))
            return NN_ERR;
        linear(s, &m->head, s->xn, D, s->all_logits, V, N);
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
}
