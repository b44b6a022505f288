/* One base forward pass per batch serves the ops with base-pass hooks (collect, logit_lens,
 * target_probs) together; the others (patchscope, steering, generation, SAEs) run passes of their
 * own. What each operation does is its class's (jobs/op.h, one file each); this file runs the
 * classes in the job's order. */
#include "harvest.h"
#include "op.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* /<group>/... ; a class with a store_group replaces its name there (collect: /activations[_N]). */
static void group_path(const nn_op *op, char *out, size_t n)
{
    if (op->cls->store_group)
        snprintf(out, n, "/%s%s", op->cls->store_group, op->group + strlen(op->cls->name));
    else
        snprintf(out, n, "/%s", op->group);
}

void nn_harvest_free(nn_harvest *h)
{
    if (!h)
        return;
    for (int i = 0; h->ops && i < h->n_ops; i++) {
        nn_op_state *s = &h->ops[i];
        if (s->op && s->op->cls->free)
            s->op->cls->free(s);
        nn_free(s->layers);
        nn_free(s->row_offsets);
        nn_free(s->token_index);
    }
    nn_free(h->ops);
    nn_state_free(h->st);
    nn_context_free(h->cx);
    nn_free(h->gather);
    nn_free(h->probs);
    nn_free(h->normed);
    nn_free(h->batch_offsets);
    nn_free(h);
}

int nn_op_prompt_len(const nn_corpus *c, int p)
{
    return (int)(c->offsets[p + 1] - c->offsets[p]);
}

int nn_op_resolve_rows(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    const nn_op *op = s->op;
    const nn_corpus *c = h->c;
    if (!(s->row_offsets = nn_malloc(((size_t)c->n_prompts + 1) * sizeof(int64_t), err)))
        return NN_ERR;
    s->row_offsets[0] = 0;
    for (int p = 0; p < c->n_prompts; p++) {
        int n = nn_op_prompt_len(c, p), rows = nn_positions_rows(&op->positions, n);
        for (int j = 0; j < rows; j++)
            if (nn_positions_resolve(&op->positions, j, n) < 0) {
                if (c->source && c->source_line)
                    return nn_fail(
                        err, "%s: position %d is outside the prompt of %s:%lld (%d tokens)", where,
                        op->positions.list[j], c->source, (long long)c->source_line[p], n);
                return nn_fail(err, "%s: position %d is outside prompt %d (%d tokens)", where,
                               op->positions.list[j], p, n);
            }
        s->row_offsets[p + 1] = s->row_offsets[p] + rows;
    }
    if (op->positions.kind != NN_POS_ALL) {
        if (!(s->token_index =
                  nn_malloc((size_t)s->row_offsets[c->n_prompts] * sizeof(int64_t), err)))
            return NN_ERR;
        for (int p = 0; p < c->n_prompts; p++)
            for (int64_t r = s->row_offsets[p]; r < s->row_offsets[p + 1]; r++)
                s->token_index[r] =
                    c->offsets[p] + nn_positions_resolve(&op->positions,
                                                         (int)(r - s->row_offsets[p]),
                                                         nn_op_prompt_len(c, p));
    }
    return NN_OK;
}

/* What every op shares (its layers, top_k within the vocabulary, the dataset's targets), then
 * the class's own resolution. */
static int resolve_op(nn_harvest *h, nn_op_state *s, int index, nn_err *err)
{
    const nn_op *op = s->op;
    const nn_config *cfg = &h->m->cfg;
    char where[96];
    snprintf(where, sizeof where, "operations[%d] (%s)", index, nn_op_name(op));
    if (op->layers && nn_layers_parse(op->layers, cfg->n_layers, &s->layers, &s->n_layers, err))
        return nn_err_prefix(err, "%s", where);
    if (op->top_k > cfg->vocab_size) /* 0 for the ops without top_k */
        return nn_fail(err, "%s: top_k %d exceeds the model's vocabulary of %d", where, op->top_k,
                       cfg->vocab_size);
    if ((op->targets || op->cls->needs_targets) && h->c->n_targets == 0)
        return nn_fail(err, "%s: needs targets, but the dataset has none", where);
    return op->cls->resolve ? op->cls->resolve(h, s, where, err) : NN_OK;
}

int nn_harvest_init(nn_harvest **out, const nn_model *m, nn_tokenizer *tok, const nn_job *job,
                    const nn_corpus *c, int max_tokens, int max_prompts, nn_err *err)
{
    *out = NULL;
    nn_harvest *h = nn_calloc(1, sizeof *h, err);
    if (!h)
        return NN_ERR;
    h->m = m;
    h->tok = tok;
    h->job = job;
    h->c = c;
    h->max_tokens = max_tokens;
    h->max_prompts = max_prompts;
    h->n_ops = job->n_ops;
    if (!(h->ops = nn_calloc((size_t)job->n_ops, sizeof *h->ops, err)))
        goto fail;
    for (int i = 0; i < job->n_ops; i++) {
        h->ops[i].op = &job->ops[i];
        if (resolve_op(h, &h->ops[i], i, err))
            goto fail;
    }
    nn_state_params sp = {.max_tokens = max_tokens, .max_seqs = max_prompts};
    if (nn_state_init(&h->st, m, &sp, err) || nn_context_init(&h->cx, m, NULL, err) ||
        !(h->batch_offsets = nn_malloc(((size_t)max_prompts + 1) * sizeof(int), err)))
        goto fail;
    for (int i = 0; i < job->n_ops; i++) {
        char where[96];
        snprintf(where, sizeof where, "operations[%d] (%s)", i, nn_op_name(&job->ops[i]));
        if (job->ops[i].cls->bind && job->ops[i].cls->bind(h, &h->ops[i], where, err))
            goto fail;
    }
    *out = h;
    return NN_OK;
fail:
    nn_harvest_free(h);
    return NN_ERR;
}

nn_sink_type nn_op_activation_type(const nn_job *job)
{
    return job->dtype == NN_DTYPE_BF16  ? NN_SINK_BF16
           : job->dtype == NN_DTYPE_F16 ? NN_SINK_F16
                                        : NN_SINK_F32;
}

int nn_op_declare(const nn_sink *s, const char *path, nn_sink_type t, int rank, uint64_t d0,
                  uint64_t d1, uint64_t d2, nn_err *err)
{
    uint64_t dims[3] = {d0, d1, d2};
    return s->declare(s->ctx, path, t, rank, dims, err);
}

int nn_op_write_all_i32(const nn_sink *s, const char *path, const int *v, int n, nn_err *err)
{
    return s->write_rows(s->ctx, path, 0, (uint64_t)n, v, err);
}

int nn_op_declare_lens(const nn_sink *s, const char *g, uint64_t rows, uint64_t layers, uint64_t k,
                       uint64_t targets, nn_err *err)
{
    char path[160];
    snprintf(path, sizeof path, "%s/top_ids", g);
    if (nn_op_declare(s, path, NN_SINK_I32, 3, rows, layers, k, err))
        return NN_ERR;
    snprintf(path, sizeof path, "%s/top_probs", g);
    if (nn_op_declare(s, path, NN_SINK_F32, 3, rows, layers, k, err))
        return NN_ERR;
    if (!targets)
        return NN_OK;
    snprintf(path, sizeof path, "%s/target_probs", g);
    return nn_op_declare(s, path, NN_SINK_F32, 3, rows, layers, targets, err);
}

/* Every op: its token_index and layers (what every op with them writes), then its class's. */
int nn_harvest_declare(nn_harvest *h, const nn_sink *s, nn_err *err)
{
    uint64_t P = (uint64_t)h->c->n_prompts;
    char g[96], path[160];
    for (int i = 0; i < h->n_ops; i++) {
        nn_op_state *o = &h->ops[i];
        const nn_op *op = o->op;
        group_path(op, g, sizeof g);
        uint64_t rows = o->row_offsets ? (uint64_t)o->row_offsets[P] : P;
        if (o->token_index) {
            snprintf(path, sizeof path, "%s/token_index", g);
            if (nn_op_declare(s, path, NN_SINK_I64, 1, rows, 0, 0, err) ||
                s->write_rows(s->ctx, path, 0, rows, o->token_index, err))
                return NN_ERR;
        }
        if (o->layers && !op->cls->declares_layers) {
            snprintf(path, sizeof path, "%s/layers", g);
            if (nn_op_declare(s, path, NN_SINK_I32, 1, (uint64_t)o->n_layers, 0, 0, err) ||
                nn_op_write_all_i32(s, path, o->layers, o->n_layers, err))
                return NN_ERR;
        }
        if (op->cls->declare && op->cls->declare(h, o, s, g, err))
            return NN_ERR;
    }
    return NN_OK;
}

float nn_op_target_sum(const nn_corpus *c, int p, int t, const float *probs)
{
    double sum = 0;
    size_t k = (size_t)p * (size_t)c->n_targets + (size_t)t;
    for (int64_t i = c->target_offsets[k]; i < c->target_offsets[k + 1]; i++)
        sum += probs[c->target_ids[i]];
    return (float)sum;
}

void nn_op_owned_layers(const nn_harvest *h, const nn_op_state *o, int *l0, int *l1)
{
    *l0 = 0;
    while (*l0 < o->n_layers && o->layers[*l0] < h->m->layer_begin)
        (*l0)++;
    *l1 = *l0;
    while (*l1 < o->n_layers && o->layers[*l1] < h->m->layer_end)
        (*l1)++;
}

/* The shared pass: every op's hooks in the job's order, one forward, then every op's collect. */
static int base_pass(nn_harvest *h, const nn_batch *b, nn_err *err)
{
    const nn_config *cfg = &h->m->cfg;
    nn_hookset hs = {0};
    int rc = NN_ERR;
    char g[96];
    if (nn_hookset_init(&hs, cfg->n_layers, err))
        goto done;
    for (int i = 0; i < h->n_ops; i++) {
        nn_op_state *o = &h->ops[i];
        group_path(o->op, g, sizeof g);
        if (o->op->cls->hooks && o->op->cls->hooks(h, o, &hs, g, err))
            goto done;
    }
    if (!h->need_logits &&
        nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, h->last_layer, nn_hook_stop, NULL, err))
        goto done;
    nn_forward_params fp = {.hooks = &hs, .want_logits = h->need_logits};
    if (nn_forward(h->m, h->st, b, &fp, err) == NN_ERR)
        goto done;
    for (int i = 0; i < h->n_ops; i++) {
        nn_op_state *o = &h->ops[i];
        group_path(o->op, g, sizeof g);
        if (o->op->cls->collect && o->op->cls->collect(h, o, g, err))
            goto done;
    }
    rc = NN_OK;
done:
    nn_hookset_free(&hs);
    return rc;
}

int nn_harvest_run(nn_harvest *h, int begin, int end, const nn_sink *sink, nn_err *err)
{
    const nn_corpus *c = h->c;
    if (begin < 0 || end > c->n_prompts || begin >= end || end - begin > h->max_prompts ||
        c->offsets[end] - c->offsets[begin] > h->max_tokens)
        return nn_fail(err, "harvest: batch of prompts [%d, %d) does not fit the batch limits",
                       begin, end);
    h->begin = begin;
    h->end = end;
    h->tok0 = c->offsets[begin];
    h->sink = sink;
    int *offsets = h->batch_offsets;
    for (int p = begin; p <= end; p++)
        offsets[p - begin] = (int)(c->offsets[p] - c->offsets[begin]);
    nn_batch b = {.tokens = c->tokens + c->offsets[begin],
                  .n_tokens = offsets[end - begin],
                  .n_seqs = end - begin,
                  .offsets = offsets};
    if (h->base_pass && base_pass(h, &b, err))
        return NN_ERR;
    char g[96];
    for (int i = 0; i < h->n_ops; i++) {
        nn_op_state *o = &h->ops[i];
        group_path(o->op, g, sizeof g);
        if (o->op->cls->run && o->op->cls->run(h, o, &b, g, err))
            return NN_ERR;
    }
    return NN_OK;
}
