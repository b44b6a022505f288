/* One forward pass for every family; nn_arch says which pieces apply. Dimension letters:
 * N tokens in the packed batch, D model width, H query heads, G kv heads, E head dim,
 * F MLP width, V vocabulary, C context (keys) of a sequence. */
#include "forward.h"

#include "forward_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

int nn_fw_call_hooks(const nn_hookset *hs, nn_hook_point hp, int layer, float *data, size_t rows,
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
        nn_fw_norm_rows_par(s, c, nm, s->x, s->xn, n);
    else
        memcpy(s->xn, s->x, (size_t)n * (size_t)c->d_model * sizeof(float));
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

/* Calls the hooks of a *_normalized point on a copy of x normalized without gain; nothing is
 * computed when the point is not hooked. */
static int hook_normalized(const nn_model *m, nn_state *s, const nn_batch *b,
                           const nn_hookset *hooks, nn_hook_point hp, int l, const float *x,
                           nn_err *err)
{
    if (!nn_hookset_site(hooks, hp, l))
        return NN_OK;
    size_t D = (size_t)m->cfg.d_model, N = (size_t)b->n_tokens;
    /* The gain-free normalization (TransformerLens' ln.hook_normalized) is the block's own norm
     * with a gain that changes no bit: ones (zeros where the gain is 1 + w, Gemma) for RMSNorm,
     * none for LayerNorm; it sits in the row after the N rows of the copy. */
    if (nn_grow_floats(&s->normalized, &s->normalized_cap, (N + 1) * D, err))
        return NN_ERR;
    nn_norm unit = {.w = NULL, .b = NULL};
    if (m->cfg.arch->norm == NN_NORM_RMSNORM) {
        float *gain = s->normalized + N * D, g = m->cfg.arch->norm_unit_offset ? 0.0f : 1.0f;
        for (size_t i = 0; i < D; i++)
            gain[i] = g;
        unit.w = gain;
    }
    nn_fw_norm_rows(&m->cfg, &unit, x, s->normalized, (int)N);
    return nn_fw_call_hooks(hooks, hp, l, s->normalized, N, D, -1, 0, b, err);
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
        nn_fw_linear(s, &L->q, s->xn, D, s->q, QD, N);
        nn_fw_linear(s, &L->k, s->xn, D, s->k, KVD, N);
        nn_fw_linear(s, &L->v, s->xn, D, s->v, KVD, N);
    }
    if (a->q_norm)
        nn_fw_qk_norms(s, c, L, N);
    if (nn_layer_rope(c, l) && !a->mla)
        for (int q = 0; q < b->n_seqs; q++) {
            int off = b->offsets[q], n = b->offsets[q + 1] - off, p0 = b->pos0 ? b->pos0[q] : 0;
            const float *cs, *sn;
            nn_fw_rope_for(c, s, l, p0 + n, &cs, &sn);
            nn_fw_rope(c, cs, sn, s->q + (size_t)off * QD, QD, n, c->n_heads, p0);
            nn_fw_rope(c, cs, sn, s->k + (size_t)off * KVD, KVD, n, c->n_kv_heads, p0);
        }
    int rc = nn_fw_attention(m, s, b, l, hooks, err);
    if (rc)
        return rc;
    nn_fw_linear(s, &L->o, s->att, AD, s->branch, D, N);

    if (c->parallel) {
        HOOK(NN_HP_ATTENTIONS_OUTPUT, l, s->branch, (size_t)N, D, -1);
        HOOK(NN_HP_ATTENTIONS_RESIDUAL, l, s->branch, (size_t)N, D, -1);
        HOOK_NORMALIZED(NN_HP_MLPS_NORMALIZED, l, s->x);
        if (!c->shared_norm)
            nn_fw_norm_rows_par(s, c, &L->mlp_norm, s->x, s->xn, N);
        HOOK(NN_HP_MLPS_INPUT, l, s->xn, (size_t)N, D, -1);
        rc = nn_fw_mlp_block(m, s, b, l, hooks, s->xn, s->branch2, err);
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
            nn_fw_norm_rows(c, &L->post_attn_norm, s->branch, s->branch, N);
        HOOK(NN_HP_ATTENTIONS_RESIDUAL, l, s->branch, (size_t)N, D, -1);
        add_branch(s, c, s->x, s->branch, ND);
    }
    HOOK(NN_HP_LAYERS_MIDDLE, l, s->x, (size_t)N, D, -1);
    HOOK_NORMALIZED(NN_HP_MLPS_NORMALIZED, l, s->x);

    pre_norm(s, c, &L->mlp_norm, N);
    HOOK(NN_HP_MLPS_INPUT, l, s->xn, (size_t)N, D, -1);
    rc = nn_fw_mlp_block(m, s, b, l, hooks, s->xn, s->branch, err);
    if (rc)
        return rc;
    if (a->residual_in_modules) {
        HOOK(NN_HP_MLPS_RESIDUAL, l, s->branch, (size_t)N, D, -1);
        add_rows(s, s->x, s->branch, ND);
        HOOK(NN_HP_MLPS_OUTPUT, l, s->x, (size_t)N, D, -1);
    } else {
        HOOK(NN_HP_MLPS_OUTPUT, l, s->branch, (size_t)N, D, -1);
        if (a->post_mlp_norm)
            nn_fw_norm_rows(c, &L->post_mlp_norm, s->branch, s->branch, N);
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
        nn_fw_norm_rows(c, &m->emb_norm, s->x, s->x, N);

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
        nn_fw_norm_rows(c, &m->final_norm, s->x, s->xn, N);
        HOOK(NN_HP_LN_FINAL, -1, s->xn, (size_t)N, D, -1);
    }
    if (hook_logits) {
        if (nn_grow_floats(&s->all_logits, &s->all_logits_cap, (size_t)N * V, err))
            return NN_ERR;
        nn_fw_linear(s, &m->head, s->xn, D, s->all_logits, V, N);
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
            nn_fw_norm_rows(c, &m->final_norm, s->last, s->last, S);
        nn_fw_linear(s, &m->head, s->last, D, s->logits, V, S);
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
    nn_fw_norm_rows(c, &m->final_norm, x, normed, n);
    nn_fw_linear(s, &m->head, normed, (size_t)c->d_model, logits, (size_t)c->vocab_size, n);
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
