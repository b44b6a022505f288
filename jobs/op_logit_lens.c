/* The job operation "logit_lens" (docs/jobs.md): the top-k next-token predictions (and the
 * targets' probabilities) read off layers_output at the chosen layers and positions, captured in
 * the shared base pass; "inverse" reads them through the inverse lens. */
#include "op.h"

#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op",      "layers",  "positions", "top_k",
                                     "targets", "inverse", NULL};

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    long v;
    if (nn_job_only_fields(o, fields, path, where, err) ||
        nn_job_parse_layers(o, path, where, &op->layers, err) ||
        nn_job_parse_positions(o, "last", path, where, &op->positions, err) ||
        nn_json_int(o, "top_k", false, 10, 1, 1000, path, &v, err) ||
        nn_json_bool(o, "targets", false, false, path, &op->targets, err) ||
        nn_json_bool(o, "inverse", false, false, path, &op->inverse, err))
        return nn_job_in_op(err, where);
    op->top_k = (int)v;
    return NN_OK;
}

typedef struct lens_hook {
    nn_harvest *h;
    nn_op_state *s;
    int layer_slot;
    float *rows; /* [n_layers][batch rows][d] */
} lens_hook;

typedef struct lens_state {
    lens_hook *hooks; /* [n_layers] */
    float *rows;      /* the batch's captured rows */
} lens_state;

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    if (nn_op_resolve_rows(h, s, where, err))
        return NN_ERR;
    for (int i = 0; i < s->n_layers; i++)
        h->last_layer = s->layers[i] > h->last_layer ? s->layers[i] : h->last_layer;
    h->base_pass = true;
    lens_state *ls = nn_calloc(1, sizeof *ls, err);
    if (!ls)
        return NN_ERR;
    s->priv = ls;
    ls->hooks = nn_calloc((size_t)s->n_layers + 1, sizeof *ls->hooks, err);
    return ls->hooks ? NN_OK : NN_ERR;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    uint64_t P = (uint64_t)h->c->n_prompts;
    if (nn_op_declare_lens(sink, g, (uint64_t)s->row_offsets[P], (uint64_t)s->n_layers,
                           (uint64_t)op->top_k, op->targets ? (uint64_t)h->c->n_targets : 0, err))
        return NN_ERR;
    return sink->attr(sink->ctx, g, "variant", op->inverse ? "inverse" : "logit lens", err);
}

static int lens_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    lens_hook *lh = user;
    const nn_op_state *o = lh->s;
    nn_harvest *h = lh->h;
    int64_t r0 = o->row_offsets[h->begin], r1 = o->row_offsets[h->end];
    size_t D = v->cols;
    float *dst = lh->rows + (size_t)lh->layer_slot * (size_t)(r1 - r0) * D;
    for (int64_t r = r0; r < r1; r++) {
        size_t row = o->token_index ? (size_t)(o->token_index[r] - h->tok0) : (size_t)(r - r0);
        memcpy(dst + (size_t)(r - r0) * D, v->data + row * D, D * sizeof(float));
    }
    return NN_HOOK_CONTINUE;
}

static int hooks(nn_harvest *h, nn_op_state *s, nn_hookset *hs, const char *g, nn_err *err)
{
    (void)g;
    lens_state *ls = s->priv;
    size_t D = (size_t)h->m->cfg.d_model;
    size_t nr = (size_t)(s->row_offsets[h->end] - s->row_offsets[h->begin]);
    nn_free(ls->rows);
    if (!(ls->rows = nn_malloc((size_t)s->n_layers * nr * D * sizeof(float) + 1, err)))
        return NN_ERR;
    for (int l = 0; l < s->n_layers; l++) {
        lens_hook *x = &ls->hooks[l];
        *x = (lens_hook){.h = h, .s = s, .layer_slot = l, .rows = ls->rows};
        if (nn_hookset_add(hs, NN_HP_LAYERS_OUTPUT, s->layers[l], lens_fn, x, err))
            return NN_ERR;
    }
    return NN_OK;
}

/* Lens results of captured rows: [rows][layers][k] top-k and [rows][layers][T] targets, for the
 * layers this stage holds (their columns of the store's arrays). */
static int lens_write(nn_harvest *h, nn_op_state *o, const float *rows, const char *g, nn_err *err)
{
    const nn_op *op = o->op;
    const nn_corpus *c = h->c;
    int l0, l1;
    nn_op_owned_layers(h, o, &l0, &l1);
    if (l0 == l1)
        return NN_OK;
    size_t D = (size_t)h->m->cfg.d_model, V = (size_t)h->m->cfg.vocab_size;
    int64_t r0 = o->row_offsets[h->begin], r1 = o->row_offsets[h->end];
    size_t nr = (size_t)(r1 - r0), nl = (size_t)(l1 - l0), k = (size_t)op->top_k,
           T = (size_t)c->n_targets;
    int32_t *ids = nn_malloc(nr * nl * k * sizeof *ids + 1, err);
    float *vals = ids ? nn_malloc(nr * nl * k * sizeof *vals + 1, err) : NULL;
    float *tp = vals && op->targets ? nn_malloc(nr * nl * T * sizeof *tp + 1, err) : NULL;
    int rc = NN_ERR;
    if (!vals || (op->targets && !tp))
        goto done;
    const size_t chunk = 64;
    if (nn_grow_floats(&h->probs, &h->probs_cap, chunk * V, err) ||
        nn_grow_floats(&h->normed, &h->normed_cap, chunk * D, err))
        goto done;
    for (size_t l = 0; l < nl; l++)
        for (size_t start = 0; start < nr; start += chunk) {
            size_t n = nr - start < chunk ? nr - start : chunk;
            nn_lens_probs(h->m, h->st, rows + ((l0 + l) * nr + start) * D, (int)n, op->inverse,
                          h->normed, h->probs);
            for (size_t i = 0; i < n; i++) {
                size_t row = start + i, at = row * nl + l;
                const float *z = h->probs + i * V;
                nn_top_k(z, V, (int)k, ids + at * k, vals + at * k);
                if (op->targets) {
                    int p = h->begin; /* the prompt of this row */
                    while (o->row_offsets[p + 1] <= r0 + (int64_t)row)
                        p++;
                    for (size_t t = 0; t < T; t++)
                        tp[at * T + t] = nn_op_target_sum(c, p, (int)t, z);
                }
            }
        }
    char path[160];
    const nn_sink *s = h->sink;
    snprintf(path, sizeof path, "%s/top_ids", g);
    if (s->write_block(s->ctx, path, (uint64_t)r0, nr, (uint64_t)l0, nl, ids, err))
        goto done;
    snprintf(path, sizeof path, "%s/top_probs", g);
    if (s->write_block(s->ctx, path, (uint64_t)r0, nr, (uint64_t)l0, nl, vals, err))
        goto done;
    if (op->targets) {
        snprintf(path, sizeof path, "%s/target_probs", g);
        if (s->write_block(s->ctx, path, (uint64_t)r0, nr, (uint64_t)l0, nl, tp, err))
            goto done;
    }
    rc = NN_OK;
done:
    nn_free(ids);
    nn_free(vals);
    nn_free(tp);
    return rc;
}

static int collect(nn_harvest *h, nn_op_state *s, const char *g, nn_err *err)
{
    lens_state *ls = s->priv;
    int rc = lens_write(h, s, ls->rows, g, err);
    nn_free(ls->rows);
    ls->rows = NULL;
    return rc;
}

static void free_state(nn_op_state *s)
{
    lens_state *ls = s->priv;
    if (ls) {
        nn_free(ls->hooks);
        nn_free(ls->rows);
    }
    nn_free(ls);
}

const nn_op_class nn_op_logit_lens = {
    .name = "logit_lens",
    .fields = fields,
    .parse = parse,
    .resolve = resolve,
    .declare = declare,
    .hooks = hooks,
    .collect = collect,
    .free = free_state,
};
