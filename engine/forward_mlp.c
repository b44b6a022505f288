/* The MLP block: activations, dense and gated MLPs, experts (gpt-oss's clamped SwiGLU), routing
 * (top-k, grouped) and the mixture-of-experts block with its shared expert. */
#include "forward_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

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
    nn_fw_linear(s, up, in, D, s->up, F, n);
    if (gate->w)
        nn_fw_linear(s, gate, in, D, s->gate, F, n);
    rows_job j = {.c = c, .x = gate->w ? s->gate : NULL, .y = s->up};
    nn_pool_run(s->pool, NF, 8192, activate_range, &j);
    nn_fw_linear(s, down, s->up, F, out, D, n);
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
    nn_fw_linear(s, &x->gate_up, in, D, s->gate, 2 * F, n);
    rows_job j = {.c = c, .x = s->gate, .y = s->up};
    nn_pool_run(s->pool, (size_t)n * F, 8192, clamped_swiglu_range, &j);
    nn_fw_linear(s, &x->down, s->up, F, out, D, n);
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
 * GEMM (nn_fw_linear() pads short ones, so a row's result does not depend on the others). */
static int moe_block(const nn_model *m, nn_state *s, const nn_batch *b, int l,
                     const nn_hookset *hooks, const float *xn, float *out, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_layer *L = &m->layers[l];
    int N = b->n_tokens, X = c->n_experts, K = c->n_experts_per_tok;
    size_t D = (size_t)c->d_model;
    bool grouped = c->arch->router_kind == NN_ROUTER_SIGMOID_GROUPED;
    nn_fw_linear(s, &L->router, xn, D, s->router, (size_t)X, N);
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
            nn_fw_linear(s, &L->shared_expert_gate, xn, D, s->gate1, 1, N);
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
int nn_fw_mlp_block(const nn_model *m, nn_state *s, const nn_batch *b, int l,
                    const nn_hookset *hooks, const float *xn, float *out, nn_err *err)
{
    const nn_layer *L = &m->layers[l];
    if (L->moe)
        return moe_block(m, s, b, l, hooks, xn, out, err);
    dense_mlp(&m->cfg, s, &L->gate, &L->up, &L->down, xn, out, b->n_tokens);
    return NN_OK;
}
