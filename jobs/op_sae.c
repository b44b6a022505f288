/* The job operation "sae": see op_sae.h and docs/sae.md. */
#include "op_sae.h"
#include "op.h"

#include "nn_json.h"
#include "sae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- The operation's fields -------------------------------------------------------------------
 */

void nn_sae_spec_free(nn_sae_spec *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        nn_free(s->dirs[i]);
        if (s->hooks)
            nn_free(s->hooks[i]);
    }
    nn_free(s->dirs);
    nn_free(s->hooks);
    nn_free(s);
}

/* A string or a non-empty list of strings, copied into (*out)[n]. */
static int string_list(const cJSON *v, const char *field, const char *path, const char *where,
                       char ***out, int *n, nn_err *err)
{
    int count = cJSON_IsString(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
    if (count < 1)
        return nn_fail(err, "%s: %s: field '%s' must be a string or a non-empty list of strings",
                       path, where, field);
    if (!(*out = nn_calloc((size_t)count, sizeof **out, err)))
        return NN_ERR;
    *n = count;
    for (int i = 0; i < count; i++) {
        const cJSON *x = cJSON_IsString(v) ? v : cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(x))
            return nn_fail(err, "%s: %s: %s[%d] is not a string", path, where, field, i);
        if (!((*out)[i] = nn_strdup(x->valuestring, err)))
            return NN_ERR;
    }
    return NN_OK;
}

static const char *const sae_fields[] = {"op", "sae", "hook", "keep", "top_n", "splice", NULL};

int nn_sae_spec_parse(const cJSON *o, const char *path, const char *where, nn_sae_spec **out,
                      nn_err *err)
{
    static const char *const *const allowed = sae_fields;
    const cJSON *f;
    cJSON_ArrayForEach (f, o) {
        bool ok = false;
        for (int i = 0; allowed[i]; i++)
            ok = ok || !strcmp(f->string, allowed[i]);
        if (!ok)
            return nn_fail(err, "%s: %s: unknown field '%s' (sae, hook, keep, top_n, splice)", path,
                           where, f->string);
    }
    nn_sae_spec *s = nn_calloc(1, sizeof *s, err);
    if (!s)
        return NN_ERR;
    long keep, top_n;
    const cJSON *hooks = nn_json_get(o, "hook");
    if (!nn_json_get(o, "sae")) {
        nn_fail(err, "%s: %s: field 'sae' (an SAE directory or a list of them) is required", path,
                where);
        goto fail;
    }
    if (string_list(nn_json_get(o, "sae"), "sae", path, where, &s->dirs, &s->n, err) ||
        nn_json_int(o, "keep", false, 0, 1, 1 << 20, path, &keep, err) ||
        nn_json_int(o, "top_n", false, 16, 1, 1 << 16, path, &top_n, err) ||
        nn_json_bool(o, "splice", false, false, path, &s->splice, err))
        goto fail;
    s->keep = (int)keep;
    s->top_n = (int)top_n;
    if (hooks && !cJSON_IsNull(hooks)) {
        int nh = 0;
        if (string_list(hooks, "hook", path, where, &s->hooks, &nh, err))
            goto fail;
        if (nh != s->n) {
            for (int i = 0; i < nh; i++)
                nn_free(s->hooks[i]);
            nn_free(s->hooks);
            s->hooks = NULL;
            nn_fail(err, "%s: %s: field 'hook' names %d hooks for %d SAEs", path, where, nh, s->n);
            goto fail;
        }
    }
    *out = s;
    return NN_OK;
fail:
    nn_sae_spec_free(s);
    return NN_ERR;
}

/* ---- Running ----------------------------------------------------------------------------------
 */

typedef struct one_sae {
    nn_sae sae;
    nn_sae_work *w;
    int keep;
    int32_t *ids, *count, *l0; /* [N, keep], [N], [N] of the current batch */
    float *vals;               /* [N, keep] */
    float *recon;              /* [N, d] */
    float *mse, *ev, *l0_mean; /* [batch prompts] */
} one_sae;

struct nn_sae_op {
    const nn_model *m;
    nn_state *st;
    one_sae *saes;
    int n;
    bool splice;
    int top_n;
    int max_layer;
    /* the current pass */
    bool splicing;
    float *token_loss; /* [N] next-token loss of each token, NaN for a prompt's last */
    float *loss;       /* [batch prompts] */
};

void nn_sae_op_free(nn_sae_op *op)
{
    if (!op)
        return;
    for (int i = 0; i < op->n; i++) {
        one_sae *s = &op->saes[i];
        nn_sae_work_free(s->w);
        nn_sae_free(&s->sae);
        nn_free(s->ids);
        nn_free(s->count);
        nn_free(s->l0);
        nn_free(s->vals);
        nn_free(s->recon);
        nn_free(s->mse);
        nn_free(s->ev);
        nn_free(s->l0_mean);
    }
    nn_free(op->saes);
    nn_free(op->token_loss);
    nn_free(op->loss);
    nn_free(op);
}

int nn_sae_op_init(nn_sae_op **out, const nn_sae_spec *spec, const nn_model *m, nn_state *st,
                   const char *where, nn_err *err)
{
    *out = NULL;
    nn_sae_op *op = nn_calloc(1, sizeof *op, err);
    if (!op)
        return NN_ERR;
    op->m = m;
    op->st = st;
    op->splice = spec->splice;
    op->top_n = spec->top_n;
    op->max_layer = -1;
    if (!(op->saes = nn_calloc((size_t)spec->n, sizeof *op->saes, err)))
        goto fail;
    for (int i = 0; i < spec->n; i++) {
        one_sae *s = &op->saes[i];
        op->n = i + 1;
        if (nn_sae_load(spec->dirs[i], &s->sae, err) ||
            nn_sae_bind(&s->sae, m, spec->hooks ? spec->hooks[i] : NULL, err) ||
            nn_sae_work_init(&s->w, &s->sae, st, err)) {
            nn_err_prefix(err, "%s: sae[%d]", where, i);
            goto fail;
        }
        s->keep = spec->keep ? spec->keep : s->sae.arch == NN_SAE_TOPK ? s->sae.k : 32;
        if (s->keep > s->sae.d_sae)
            s->keep = s->sae.d_sae;
        bool stage = m->layer_begin != 0 || m->layer_end != m->cfg.n_layers;
        if (stage && s->sae.transcoder && s->sae.in_layer != s->sae.out_layer) {
            nn_fail(err,
                    "%s: sae[%d]: a transcoder from layer %d to layer %d cannot run in a "
                    "pipeline (its input and output may sit on different stages)",
                    where, i, s->sae.in_layer, s->sae.out_layer);
            goto fail;
        }
        int layer = s->sae.out_layer > s->sae.in_layer ? s->sae.out_layer : s->sae.in_layer;
        op->max_layer = layer > op->max_layer ? layer : op->max_layer;
    }
    *out = op;
    return NN_OK;
fail:
    nn_sae_op_free(op);
    return NN_ERR;
}

static int declare(const nn_sink *s, const char *path, nn_sink_type t, int rank, uint64_t d0,
                   uint64_t d1, nn_err *err)
{
    uint64_t dims[2] = {d0, d1};
    return s->declare(s->ctx, path, t, rank, dims, err);
}

int nn_sae_op_declare(nn_sae_op *op, const nn_sink *sink, const char *group, uint64_t N, uint64_t P,
                      nn_err *err)
{
    char g[160], path[224], value[64];
    for (int i = 0; i < op->n; i++) {
        const one_sae *s = &op->saes[i];
        snprintf(g, sizeof g, "%s/%d", group, i);
        uint64_t K = (uint64_t)s->keep;
        static const char *const per_prompt[] = {"mse", "explained_variance", "l0_mean"};
        snprintf(path, sizeof path, "%s/feature_ids", g);
        if (declare(sink, path, NN_SINK_I32, 2, N, K, err))
            return NN_ERR;
        snprintf(path, sizeof path, "%s/feature_acts", g);
        if (declare(sink, path, NN_SINK_F32, 2, N, K, err))
            return NN_ERR;
        snprintf(path, sizeof path, "%s/l0", g);
        if (declare(sink, path, NN_SINK_I32, 1, N, 0, err))
            return NN_ERR;
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "%s/%s", g, per_prompt[k]);
            if (declare(sink, path, NN_SINK_F32, 1, P, 0, err))
                return NN_ERR;
        }
        static const struct {
            const char *name;
            nn_sink_type type;
            bool top;
        } features[] = {
            {"count", NN_SINK_I64, false},        {"density", NN_SINK_F32, false},
            {"max", NN_SINK_F32, false},          {"mean", NN_SINK_F32, false},
            {"top_values", NN_SINK_F32, true},    {"top_prompts", NN_SINK_I32, true},
            {"top_positions", NN_SINK_I32, true},
        };
        for (size_t k = 0; k < sizeof features / sizeof features[0]; k++) {
            snprintf(path, sizeof path, "%s/features/%s", g, features[k].name);
            if (declare(sink, path, features[k].type, features[k].top ? 2 : 1,
                        (uint64_t)s->sae.d_sae, (uint64_t)op->top_n, err))
                return NN_ERR;
        }
        snprintf(path, sizeof path, "%s/features/truncated_tokens", g);
        if (declare(sink, path, NN_SINK_I64, 1, 1, 0, err))
            return NN_ERR;
        char in[64], outp[64];
        snprintf(in, sizeof in, "%s.%d", nn_hook_point_name(s->sae.in_point), s->sae.in_layer);
        snprintf(outp, sizeof outp, "%s.%d", nn_hook_point_name(s->sae.out_point),
                 s->sae.out_layer);
        snprintf(value, sizeof value, "%d", s->sae.d_sae);
        if (sink->attr(sink->ctx, g, "sae", s->sae.dir, err) ||
            sink->attr(sink->ctx, g, "sae_hook", s->sae.hook_name, err) ||
            sink->attr(sink->ctx, g, "hook", in, err) ||
            sink->attr(sink->ctx, g, "hook_out", outp, err) ||
            sink->attr(sink->ctx, g, "architecture", s->sae.arch_name, err) ||
            sink->attr(sink->ctx, g, "d_sae", value, err))
            return NN_ERR;
    }
    if (op->splice) {
        snprintf(path, sizeof path, "%s/loss_clean", group);
        if (declare(sink, path, NN_SINK_F32, 1, P, 0, err))
            return NN_ERR;
        snprintf(path, sizeof path, "%s/loss_spliced", group);
        if (declare(sink, path, NN_SINK_F32, 1, P, 0, err))
            return NN_ERR;
    }
    return NN_OK;
}

static int grow_batch(one_sae *s, int N, int Q, int D, nn_err *err)
{
    size_t n = (size_t)N, k = (size_t)s->keep;
    nn_free(s->ids);
    nn_free(s->vals);
    nn_free(s->count);
    nn_free(s->l0);
    nn_free(s->recon);
    nn_free(s->mse);
    nn_free(s->ev);
    nn_free(s->l0_mean);
    s->ids = nn_malloc(n * k * sizeof *s->ids + 4, err);
    s->vals = nn_malloc(n * k * sizeof *s->vals + 4, err);
    s->count = nn_malloc(n * sizeof *s->count + 4, err);
    s->l0 = nn_malloc(n * sizeof *s->l0 + 4, err);
    s->recon = nn_malloc(n * (size_t)D * sizeof *s->recon + 4, err);
    s->mse = nn_malloc((size_t)Q * sizeof *s->mse + 4, err);
    s->ev = nn_malloc((size_t)Q * sizeof *s->ev + 4, err);
    s->l0_mean = nn_malloc((size_t)Q * sizeof *s->l0_mean + 4, err);
    return s->ids && s->vals && s->count && s->l0 && s->recon && s->mse && s->ev && s->l0_mean
               ? NN_OK
               : NN_ERR;
}

typedef struct hook_ctx {
    nn_sae_op *op;
    one_sae *s;
} hook_ctx;

/* Per prompt of the batch: reconstruction error of recon against target (rows of the view). */
static void prompt_metrics(one_sae *s, const nn_hook_view *v)
{
    const nn_batch *b = v->batch;
    size_t D = v->cols;
    for (int q = 0; q < b->n_seqs; q++) {
        int t0 = b->offsets[q], t1 = b->offsets[q + 1];
        double err2 = 0, l0 = 0, total = 0;
        for (int t = t0; t < t1; t++) {
            const float *x = v->data + (size_t)t * D, *y = s->recon + (size_t)t * D;
            for (size_t i = 0; i < D; i++)
                err2 += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            l0 += s->l0[t];
        }
        for (size_t i = 0; i < D; i++) {
            double mean = 0;
            for (int t = t0; t < t1; t++)
                mean += v->data[(size_t)t * D + i];
            mean /= (double)(t1 - t0);
            for (int t = t0; t < t1; t++) {
                double d = v->data[(size_t)t * D + i] - mean;
                total += d * d;
            }
        }
        s->mse[q] = (float)(err2 / ((double)(t1 - t0) * (double)D));
        s->ev[q] = total > 0 ? (float)(1.0 - err2 / total) : NAN;
        s->l0_mean[q] = (float)(l0 / (double)(t1 - t0));
    }
}

/* At the SAE's input point: encode every token of the batch. */
static int in_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    hook_ctx *c = user;
    one_sae *s = c->s;
    if (nn_sae_encode(&s->sae, s->w, v->data, v->cols, (int)v->rows, s->keep, s->ids, s->vals,
                      s->count, s->l0, s->recon, err))
        return NN_ERR;
    if (s->sae.transcoder)
        return NN_HOOK_CONTINUE;
    if (!c->op->splicing)
        prompt_metrics(s, v);
    else
        memcpy(v->data, s->recon, v->rows * v->cols * sizeof(float));
    return NN_HOOK_CONTINUE;
}

/* A transcoder's output point: its target, and where a splice puts its reconstruction. */
static int out_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    hook_ctx *c = user;
    (void)err;
    if (!c->op->splicing)
        prompt_metrics(c->s, v);
    else
        memcpy(v->data, c->s->recon, v->rows * v->cols * sizeof(float));
    return NN_HOOK_CONTINUE;
}

/* Every token's next-token loss from the full logits. */
static int logits_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    nn_sae_op *op = user;
    const nn_batch *b = v->batch;
    (void)err;
    size_t V = v->cols;
    for (int q = 0; q < b->n_seqs; q++)
        for (int t = b->offsets[q]; t < b->offsets[q + 1]; t++) {
            if (t + 1 >= b->offsets[q + 1]) {
                op->token_loss[t] = NAN;
                continue;
            }
            const float *z = v->data + (size_t)t * V;
            double mx = z[0], sum = 0;
            for (size_t i = 1; i < V; i++)
                mx = z[i] > mx ? z[i] : mx;
            for (size_t i = 0; i < V; i++)
                sum += exp((double)z[i] - mx);
            op->token_loss[t] = (float)(log(sum) + mx - (double)z[b->tokens[t + 1]]);
        }
    return NN_HOOK_CONTINUE;
}

static int pass(nn_sae_op *op, const nn_batch *b, bool splicing, hook_ctx *ctx, nn_err *err)
{
    nn_hookset hs;
    if (nn_hookset_init(&hs, op->m->cfg.n_layers, err))
        return NN_ERR;
    int rc = NN_ERR;
    op->splicing = splicing;
    for (int i = 0; i < op->n; i++) {
        one_sae *s = &op->saes[i];
        ctx[i] = (hook_ctx){.op = op, .s = s};
        int in_layer = nn_hook_point_per_layer(s->sae.in_point) ? s->sae.in_layer : -1;
        if (nn_hookset_add(&hs, s->sae.in_point, in_layer, in_hook, &ctx[i], err))
            goto done;
        if (s->sae.transcoder &&
            nn_hookset_add(&hs, s->sae.out_point, s->sae.out_layer, out_hook, &ctx[i], err))
            goto done;
    }
    if (op->splice) {
        if (nn_hookset_add(&hs, NN_HP_LOGITS, -1, logits_hook, op, err))
            goto done;
    } else if (!op->m->executor && op->max_layer >= 0 &&
               nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, op->max_layer, nn_hook_stop, NULL, err)) {
        goto done;
    }
    nn_forward_params fp = {.hooks = &hs};
    rc = nn_forward(op->m, op->st, b, &fp, err) == NN_ERR ? NN_ERR : NN_OK;
done:
    nn_hookset_free(&hs);
    return rc;
}

static void prompt_losses(nn_sae_op *op, const nn_batch *b)
{
    for (int q = 0; q < b->n_seqs; q++) {
        double sum = 0;
        int n = 0;
        for (int t = b->offsets[q]; t + 1 < b->offsets[q + 1]; t++, n++)
            sum += op->token_loss[t];
        op->loss[q] = n ? (float)(sum / n) : NAN;
    }
}

int nn_sae_op_run(nn_sae_op *op, const nn_batch *b, int begin, int end, int64_t tok0,
                  const nn_sink *sink, const char *group, nn_err *err)
{
    int N = b->n_tokens, Q = end - begin, D = op->m->cfg.d_model;
    hook_ctx *ctx = nn_calloc((size_t)op->n, sizeof *ctx, err);
    if (!ctx)
        return NN_ERR;
    int rc = NN_ERR;
    for (int i = 0; i < op->n; i++)
        if (grow_batch(&op->saes[i], N, Q, D, err))
            goto done;
    if (op->splice) {
        nn_free(op->token_loss);
        nn_free(op->loss);
        if (!(op->token_loss = nn_malloc((size_t)N * sizeof(float) + 4, err)) ||
            !(op->loss = nn_malloc((size_t)Q * sizeof(float) + 4, err)))
            goto done;
        for (int t = 0; t < N; t++)
            op->token_loss[t] = NAN;
    }
    if (pass(op, b, false, ctx, err))
        goto done;
    char path[224];
    for (int i = 0; i < op->n; i++) {
        one_sae *s = &op->saes[i];
        /* in a pipeline, the stage holding the SAE's layer writes its rows */
        int layer = s->sae.out_layer;
        if (nn_hook_point_per_layer(s->sae.out_point) &&
            (layer < op->m->layer_begin || layer >= op->m->layer_end))
            continue;
        if (!nn_hook_point_per_layer(s->sae.out_point) && op->m->layer_begin != 0)
            continue;
        struct {
            const char *name;
            const void *data;
            uint64_t row0, n;
        } rows[] = {
            {"feature_ids", s->ids, (uint64_t)tok0, (uint64_t)N},
            {"feature_acts", s->vals, (uint64_t)tok0, (uint64_t)N},
            {"l0", s->l0, (uint64_t)tok0, (uint64_t)N},
            {"mse", s->mse, (uint64_t)begin, (uint64_t)Q},
            {"explained_variance", s->ev, (uint64_t)begin, (uint64_t)Q},
            {"l0_mean", s->l0_mean, (uint64_t)begin, (uint64_t)Q},
        };
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
            snprintf(path, sizeof path, "%s/%d/%s", group, i, rows[k].name);
            if (sink->write_rows(sink->ctx, path, rows[k].row0, rows[k].n, rows[k].data, err))
                goto done;
        }
    }
    if (op->splice) {
        bool last = op->m->last_stage;
        prompt_losses(op, b);
        snprintf(path, sizeof path, "%s/loss_clean", group);
        if (last && sink->write_rows(sink->ctx, path, (uint64_t)begin, (uint64_t)Q, op->loss, err))
            goto done;
        if (pass(op, b, true, ctx, err))
            goto done;
        prompt_losses(op, b);
        snprintf(path, sizeof path, "%s/loss_spliced", group);
        if (last && sink->write_rows(sink->ctx, path, (uint64_t)begin, (uint64_t)Q, op->loss, err))
            goto done;
    }
    rc = NN_OK;
done:
    nn_free(ctx);
    return rc;
}

/* ---- Per-feature statistics -------------------------------------------------------------------
 */

void nn_sae_features_free(nn_sae_features *f)
{
    nn_free(f->count);
    nn_free(f->density);
    nn_free(f->max);
    nn_free(f->mean);
    nn_free(f->top_values);
    nn_free(f->top_prompts);
    nn_free(f->top_positions);
    memset(f, 0, sizeof *f);
}

/* Heap order of examples: an example ranks above another by value, then the earlier token. */
static inline bool ranks_above(float u, int64_t i, float v, int64_t j)
{
    return u != v ? u > v : i < j;
}

int nn_sae_features_compute(const int32_t *ids, const float *vals, const int32_t *l0, int64_t N,
                            int keep, int F, const int64_t *offs, int P, int top_n,
                            nn_sae_features *f, nn_err *err)
{
    memset(f, 0, sizeof *f);
    f->n_features = F;
    f->top_n = top_n;
    size_t nF = (size_t)F, T = (size_t)top_n;
    double *sum = nn_calloc(nF, sizeof *sum, err);
    int64_t *heap_tok = nn_malloc(nF * T * sizeof *heap_tok + 8, err);
    int *heap_n = nn_calloc(nF, sizeof *heap_n, err);
    f->count = nn_calloc(nF, sizeof *f->count, err);
    f->density = nn_calloc(nF, sizeof *f->density, err);
    f->max = nn_calloc(nF, sizeof *f->max, err);
    f->mean = nn_calloc(nF, sizeof *f->mean, err);
    f->top_values = nn_calloc(nF * T, sizeof *f->top_values, err);
    f->top_prompts = nn_malloc(nF * T * sizeof *f->top_prompts + 4, err);
    f->top_positions = nn_malloc(nF * T * sizeof *f->top_positions + 4, err);
    int rc = NN_ERR;
    if (!sum || !heap_tok || !heap_n || !f->count || !f->density || !f->max || !f->mean ||
        !f->top_values || !f->top_prompts || !f->top_positions)
        goto done;
    for (int64_t t = 0; t < N; t++) {
        if (l0 && l0[t] > keep)
            f->truncated_tokens++;
        for (int j = 0; j < keep; j++) {
            int32_t id = ids[(size_t)t * (size_t)keep + (size_t)j];
            if (id < 0)
                break;
            if (id >= F) {
                nn_fail(err, "sae features: token %lld names feature %d of %d", (long long)t, id,
                        F);
                goto done;
            }
            float v = vals[(size_t)t * (size_t)keep + (size_t)j];
            f->count[id]++;
            sum[id] += v;
            if (f->count[id] == 1 || v > f->max[id])
                f->max[id] = v;
            /* a min-heap of the feature's best top_n (root: the lowest-ranked kept) */
            float *hv = f->top_values + (size_t)id * T;
            int64_t *ht = heap_tok + (size_t)id * T;
            int n = heap_n[id], c;
            if (n < top_n) {
                c = heap_n[id]++;
                while (c > 0 && ranks_above(hv[(c - 1) / 2], ht[(c - 1) / 2], v, t)) {
                    hv[c] = hv[(c - 1) / 2];
                    ht[c] = ht[(c - 1) / 2];
                    c = (c - 1) / 2;
                }
                hv[c] = v;
                ht[c] = t;
                continue;
            }
            if (!ranks_above(v, t, hv[0], ht[0]))
                continue;
            c = 0;
            for (;;) {
                int l = 2 * c + 1, r = l + 1, low = -1;
                if (l < n)
                    low = l;
                if (r < n && ranks_above(hv[l], ht[l], hv[r], ht[r]))
                    low = r;
                if (low < 0 || ranks_above(hv[low], ht[low], v, t))
                    break;
                hv[c] = hv[low];
                ht[c] = ht[low];
                c = low;
            }
            hv[c] = v;
            ht[c] = t;
        }
    }
    for (size_t i = 0; i < nF; i++) {
        f->density[i] = N ? (float)((double)f->count[i] / (double)N) : 0.0f;
        f->mean[i] = f->count[i] ? (float)(sum[i] / (double)f->count[i]) : 0.0f;
        /* the heap sorted: best first (insertion sort on top_n entries) */
        float *hv = f->top_values + i * T;
        int64_t *ht = heap_tok + i * T;
        int n = heap_n[i];
        for (int a = 1; a < n; a++)
            for (int b = a; b > 0 && ranks_above(hv[b], ht[b], hv[b - 1], ht[b - 1]); b--) {
                float tv = hv[b];
                hv[b] = hv[b - 1];
                hv[b - 1] = tv;
                int64_t tt = ht[b];
                ht[b] = ht[b - 1];
                ht[b - 1] = tt;
            }
        for (int k = 0; k < top_n; k++) {
            int32_t prompt = -1, pos = -1;
            if (k < n) {
                int lo = 0, hi = P - 1; /* the prompt holding token ht[k] */
                while (lo < hi) {
                    int mid = (lo + hi + 1) / 2;
                    if (offs[mid] <= ht[k])
                        lo = mid;
                    else
                        hi = mid - 1;
                }
                prompt = lo;
                pos = (int32_t)(ht[k] - offs[lo]);
            } else {
                hv[k] = 0.0f;
            }
            f->top_prompts[i * T + (size_t)k] = prompt;
            f->top_positions[i * T + (size_t)k] = pos;
        }
    }
    rc = NN_OK;
done:
    nn_free(sum);
    nn_free(heap_tok);
    nn_free(heap_n);
    if (rc)
        nn_sae_features_free(f);
    return rc;
}

/* ---- The operation's class (jobs/op.h) ---- */

static int class_parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    return nn_sae_spec_parse(o, path, where, &op->sae, err);
}

static void class_free_spec(nn_op *op)
{
    nn_sae_spec_free(op->sae);
    op->sae = NULL;
}

static int class_bind(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    nn_sae_op *sae = NULL;
    int rc = nn_sae_op_init(&sae, s->op->sae, h->m, h->st, where, err);
    s->priv = sae;
    return rc;
}

static int class_declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g,
                         nn_err *err)
{
    uint64_t P = (uint64_t)h->c->n_prompts;
    return nn_sae_op_declare(s->priv, sink, g, (uint64_t)h->c->offsets[P], P, err);
}

static int class_run(nn_harvest *h, nn_op_state *s, const nn_batch *b, const char *g, nn_err *err)
{
    return nn_sae_op_run(s->priv, b, h->begin, h->end, h->tok0, h->sink, g, err);
}

static void class_free(nn_op_state *s)
{
    nn_sae_op_free(s->priv);
}

const nn_op_class nn_op_sae = {
    .name = "sae",
    .fields = sae_fields,
    .parse = class_parse,
    .free_spec = class_free_spec,
    .bind = class_bind,
    .declare = class_declare,
    .run = class_run,
    .free = class_free,
};
