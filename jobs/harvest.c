/* One base forward pass per batch serves collect, logit_lens and target_probs together; patchscope,
 * steering and generation need passes of their own. */
#include "harvest.h"
#include "generate_batch.h"
#include "job_chat.h"
#include "op_sae.h"
#include "patchscope_batch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct op_state {
    const nn_op *op;
    int *layers;
    int n_layers;
    int64_t *row_offsets; /* [P + 1] rows of each prompt (collect, logit_lens) */
    int64_t *token_index; /* [rows] global token of each row, when positions are not "all" */
    /* patchscope */
    int32_t *target_ids;
    int target_n;
    /* steer: one steer per layer (contrast vectors differ by layer) */
    float *vector;
    nn_steer *steers;
    nn_sae_op *sae; /* sae: jobs/op_sae.c */
} op_state;

struct nn_harvest {
    const nn_model *m;
    nn_tokenizer *tok;
    const nn_job *job;
    const nn_corpus *c;
    op_state *ops;
    int n_ops;
    nn_state *st;
    /* Per-prompt operations (patchscope, generation) run on this context: its state, pool and
     * rotary tables are made once per job, not once per prompt. */
    nn_context *cx;
    int max_tokens, max_prompts;
    bool base_pass, need_logits;
    int last_layer; /* the base pass may stop after this layer */
    /* base-pass scratch */
    int begin, end; /* the batch's prompts */
    int64_t tok0;   /* the batch's first global token */
    float *gather;  /* rows gathered for a write */
    size_t gather_cap;
    float *probs, *normed; /* (rows, V), (rows, d) */
    size_t probs_cap, normed_cap;
    int *batch_offsets; /* [max_prompts + 1] */
    const nn_sink *sink;
};

/* /activations[_N]/... for collect, /<group>/... for the others. */
static void group_path(const nn_op *op, char *out, size_t n)
{
    if (op->kind == NN_OP_COLLECT) {
        const char *suffix = strchr(op->group, '_');
        snprintf(out, n, "/activations%s", suffix ? suffix : "");
    } else {
        snprintf(out, n, "/%s", op->group);
    }
}

void nn_harvest_free(nn_harvest *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->n_ops; i++) {
        nn_free(h->ops[i].layers);
        nn_free(h->ops[i].row_offsets);
        nn_free(h->ops[i].token_index);
        nn_free(h->ops[i].target_ids);
        nn_free(h->ops[i].vector);
        nn_free(h->ops[i].steers);
        nn_sae_op_free(h->ops[i].sae);
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

static int prompt_len(const nn_corpus *c, int p)
{
    return (int)(c->offsets[p + 1] - c->offsets[p]);
}

/* mean(layers_output.layer | contrast[0]) - mean(... | contrast[1]), prompts tokenized as the
 * dataset's are. */
static int contrast_vector(nn_harvest *h, const nn_op *op, int layer, float *out, nn_err *err)
{
    nn_prompt *sets[2] = {NULL, NULL};
    int rc = NN_ERR;
    for (int k = 0; k < 2; k++) {
        if (!(sets[k] = nn_calloc((size_t)op->n_contrast[k], sizeof(nn_prompt), err)))
            goto done;
        for (int i = 0; i < op->n_contrast[k]; i++) {
            nn_ids ids = {0};
            const char *t = op->contrast[k][i];
            if (nn_tokenizer_encode(h->tok, t, strlen(t), h->job->add_special_tokens, &ids, err)) {
                nn_ids_free(&ids);
                goto done;
            }
            sets[k][i] = (nn_prompt){ids.ids, (int)ids.n};
        }
    }
    rc = nn_contrast_vector(h->m, sets[0], op->n_contrast[0], sets[1], op->n_contrast[1], layer,
                            h->job->add_special_tokens ? nn_tokenizer_bos(h->tok) : -1, out, err);
done:
    for (int k = 0; k < 2; k++) {
        for (int i = 0; sets[k] && i < op->n_contrast[k]; i++)
            nn_free((void *)sets[k][i].ids);
        nn_free(sets[k]);
    }
    return rc;
}

static int resolve_op(nn_harvest *h, op_state *s, int index, nn_err *err)
{
    const nn_op *op = s->op;
    const nn_config *cfg = &h->m->cfg;
    const nn_corpus *c = h->c;
    char where[96];
    snprintf(where, sizeof where, "operations[%d] (%s)", index, nn_op_name(op->kind));
    if (op->layers && nn_layers_parse(op->layers, cfg->n_layers, &s->layers, &s->n_layers, err))
        return nn_err_prefix(err, "%s", where);
    if ((op->kind == NN_OP_LOGIT_LENS || op->kind == NN_OP_PATCHSCOPE_LENS ||
         op->kind == NN_OP_STEER) &&
        op->top_k > cfg->vocab_size)
        return nn_fail(err, "%s: top_k %d exceeds the model's vocabulary of %d", where, op->top_k,
                       cfg->vocab_size);
    if ((op->targets || op->kind == NN_OP_TARGET_PROBS) && c->n_targets == 0)
        return nn_fail(err, "%s: needs targets, but the dataset has none", where);
    if (op->kind == NN_OP_COLLECT || op->kind == NN_OP_LOGIT_LENS) {
        if (!(s->row_offsets = nn_malloc(((size_t)c->n_prompts + 1) * sizeof(int64_t), err)))
            return NN_ERR;
        s->row_offsets[0] = 0;
        for (int p = 0; p < c->n_prompts; p++) {
            int n = prompt_len(c, p), rows = nn_positions_rows(&op->positions, n);
            for (int j = 0; j < rows; j++)
                if (nn_positions_resolve(&op->positions, j, n) < 0) {
                    if (c->source && c->source_line)
                        return nn_fail(
                            err, "%s: position %d is outside the prompt of %s:%lld (%d tokens)",
                            where, op->positions.list[j], c->source, (long long)c->source_line[p],
                            n);
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
                                                             prompt_len(c, p));
        }
        if (op->kind == NN_OP_LOGIT_LENS || (op->kind == NN_OP_COLLECT && s->n_layers))
            for (int i = 0; i < s->n_layers; i++)
                h->last_layer = s->layers[i] > h->last_layer ? s->layers[i] : h->last_layer;
        if (op->kind == NN_OP_COLLECT)
            for (int k = 0; k < op->n_hooks; k++) {
                nn_hook_point hp = op->hooks[k];
                if (hp == NN_HP_ROUTER_PROBABILITIES)
                    for (int i = 0; i < s->n_layers; i++)
                        if (!h->m->cfg.n_experts)
                            return nn_fail(err,
                                           "%s: layer %d has no mixture of experts, so no "
                                           "router_probabilities",
                                           where, s->layers[i]);
                if (hp == NN_HP_LAYERS_MIDDLE && h->m->cfg.parallel)
                    return nn_fail(err,
                                   "%s: layers_middle (between attention and MLP) does not exist "
                                   "in this model's parallel blocks",
                                   where);
                if (hp == NN_HP_TOKEN_EMBEDDINGS)
                    continue;
                if (!nn_hook_point_per_layer(hp))
                    h->need_logits = true; /* ln_final, logits, next_token_probs: the whole model */
            }
        h->base_pass = true;
    }
    if (op->kind == NN_OP_TARGET_PROBS) {
        h->base_pass = true;
        h->need_logits = true;
    }
    if (op->kind == NN_OP_PATCHSCOPE_LENS) {
        nn_ids ids = {0};
        int rc;
        if (op->it_repeat) { /* through the chat template (jobs/job_chat.c) */
            rc = nn_job_it_repeat_ids(h->job, op, h->tok, &ids, err);
        } else {
            char *text = op->target_prompt ? nn_strdup(op->target_prompt, err)
                                           : nn_repeat_prompt(NULL, 0, NULL, NULL, NULL, err);
            if (!text)
                return NN_ERR;
            rc = nn_tokenizer_encode(h->tok, text, strlen(text), h->job->add_special_tokens, &ids,
                                     err);
            nn_free(text);
        }
        if (rc)
            return nn_err_prefix(err, "%s: target", where);
        s->target_ids = ids.ids;
        s->target_n = (int)ids.n;
        if (nn_position_resolve(op->index, s->target_n) < 0)
            return nn_fail(err, "%s: target index %d is outside the target prompt (%d tokens)",
                           where, op->index, s->target_n);
    }
    if (op->kind == NN_OP_STEER) {
        size_t D = (size_t)cfg->d_model;
        if (!(s->steers = nn_calloc((size_t)s->n_layers, sizeof *s->steers, err)))
            return NN_ERR;
        if (op->vector) {
            size_t n;
            if (nn_npy_read_vector(op->vector, &s->vector, &n, err))
                return nn_err_prefix(err, "%s", where);
            if (n != D)
                return nn_fail(err, "%s: %s has %zu values, the model's d_model is %zu", where,
                               op->vector, n, D);
        } else if (!(s->vector = nn_malloc((size_t)s->n_layers * D * sizeof(float), err))) {
            return NN_ERR;
        }
        for (int i = 0; i < s->n_layers; i++) {
            float *v = op->vector ? s->vector : s->vector + (size_t)i * D;
            if (!op->vector && contrast_vector(h, op, s->layers[i], v, err))
                return nn_err_prefix(err, "%s", where);
            s->steers[i] = (nn_steer){
                .vector = v, .factor = op->factor, .layers = &s->layers[i], .n_layers = 1};
        }
    }
    return NN_OK;
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
        char where[64];
        snprintf(where, sizeof where, "operations[%d] (sae)", i);
        if (job->ops[i].kind == NN_OP_SAE &&
            nn_sae_op_init(&h->ops[i].sae, job->ops[i].sae, m, h->st, where, err))
            goto fail;
    }
    *out = h;
    return NN_OK;
fail:
    nn_harvest_free(h);
    return NN_ERR;
}

static int declare(const nn_sink *s, const char *path, nn_sink_type t, int rank, uint64_t d0,
                   uint64_t d1, uint64_t d2, nn_err *err)
{
    uint64_t dims[3] = {d0, d1, d2};
    return s->declare(s->ctx, path, t, rank, dims, err);
}

static int write_all_i32(const nn_sink *s, const char *path, const int *v, int n, nn_err *err)
{
    return s->write_rows(s->ctx, path, 0, (uint64_t)n, v, err);
}

/* The lens outputs: (rows, layers, k) ids and probabilities, plus (rows, layers, targets)
 * target probabilities when the job names targets. */
static int declare_lens(const nn_sink *s, const char *g, uint64_t rows, uint64_t layers, uint64_t k,
                        uint64_t targets, nn_err *err)
{
    char path[160];
    snprintf(path, sizeof path, "%s/top_ids", g);
    if (declare(s, path, NN_SINK_I32, 3, rows, layers, k, err))
        return NN_ERR;
    snprintf(path, sizeof path, "%s/top_probs", g);
    if (declare(s, path, NN_SINK_F32, 3, rows, layers, k, err))
        return NN_ERR;
    if (!targets)
        return NN_OK;
    snprintf(path, sizeof path, "%s/target_probs", g);
    return declare(s, path, NN_SINK_F32, 3, rows, layers, targets, err);
}

int nn_harvest_declare(nn_harvest *h, const nn_sink *s, nn_err *err)
{
    uint64_t P = (uint64_t)h->c->n_prompts;
    nn_sink_type act = h->job->dtype == NN_DTYPE_BF16  ? NN_SINK_BF16
                       : h->job->dtype == NN_DTYPE_F16 ? NN_SINK_F16
                                                       : NN_SINK_F32;
    char g[96], path[160];
    for (int i = 0; i < h->n_ops; i++) {
        op_state *o = &h->ops[i];
        const nn_op *op = o->op;
        group_path(op, g, sizeof g);
        uint64_t rows = o->row_offsets ? (uint64_t)o->row_offsets[P] : P;
        uint64_t nl = (uint64_t)o->n_layers, k = (uint64_t)op->top_k, T = (uint64_t)h->c->n_targets;
        if (o->token_index) {
            snprintf(path, sizeof path, "%s/token_index", g);
            if (declare(s, path, NN_SINK_I64, 1, rows, 0, 0, err) ||
                s->write_rows(s->ctx, path, 0, rows, o->token_index, err))
                return NN_ERR;
        }
        if (o->layers && op->kind != NN_OP_STEER) {
            snprintf(path, sizeof path, "%s/layers", g);
            if (declare(s, path, NN_SINK_I32, 1, nl, 0, 0, err) ||
                write_all_i32(s, path, o->layers, o->n_layers, err))
                return NN_ERR;
        }
        switch (op->kind) {
        case NN_OP_SAE:
            if (nn_sae_op_declare(o->sae, s, g, (uint64_t)h->c->offsets[P], P, err))
                return NN_ERR;
            break;
        case NN_OP_COLLECT:
            for (int k2 = 0; k2 < op->n_hooks; k2++) {
                nn_hook_point hp = op->hooks[k2];
                const char *name = nn_hook_point_name(hp);
                uint64_t width = (uint64_t)nn_hook_point_width(h->m, hp);
                uint64_t r = hp == NN_HP_NEXT_TOKEN_PROBS ? P : rows;
                if (nn_hook_point_per_layer(hp)) {
                    for (int l = 0; l < o->n_layers; l++) {
                        snprintf(path, sizeof path, "%s/%s/%d", g, name, o->layers[l]);
                        if (declare(s, path, act, 2, r, width, 0, err))
                            return NN_ERR;
                    }
                } else {
                    snprintf(path, sizeof path, "%s/%s", g, name);
                    if (declare(s, path, act, 2, r, width, 0, err))
                        return NN_ERR;
                }
            }
            if (s->attr(s->ctx, g, "positions",
                        op->positions.kind == NN_POS_ALL ? "all (row = global token index)"
                        : op->positions.kind == NN_POS_LAST
                            ? "last (row = prompt; see token_index)"
                            : "list (rows per prompt; see token_index)",
                        err))
                return NN_ERR;
            break;
        case NN_OP_LOGIT_LENS:
            if (declare_lens(s, g, rows, nl, k, op->targets ? T : 0, err))
                return NN_ERR;
            if (s->attr(s->ctx, g, "variant", op->inverse ? "inverse" : "logit lens", err))
                return NN_ERR;
            break;
        case NN_OP_TARGET_PROBS:
            snprintf(path, sizeof path, "%s/probs", g);
            if (declare(s, path, NN_SINK_F32, 2, P, T, 0, err))
                return NN_ERR;
            break;
        case NN_OP_PATCHSCOPE_LENS:
            if (declare_lens(s, g, P, nl, k, op->targets ? T : 0, err))
                return NN_ERR;
            snprintf(path, sizeof path, "%s/target_ids", g);
            if (declare(s, path, NN_SINK_I32, 1, (uint64_t)o->target_n, 0, 0, err) ||
                write_all_i32(s, path, o->target_ids, o->target_n, err))
                return NN_ERR;
            char idx[32];
            snprintf(idx, sizeof idx, "%d", op->index);
            if (s->attr(s->ctx, g, "index_to_patch", idx, err))
                return NN_ERR;
            break;
        case NN_OP_STEER:
        case NN_OP_GENERATE:
            if (op->kind == NN_OP_STEER) {
                snprintf(path, sizeof path, "%s/top_ids", g);
                if (declare(s, path, NN_SINK_I32, 2, P, k, 0, err))
                    return NN_ERR;
                snprintf(path, sizeof path, "%s/top_probs", g);
                if (declare(s, path, NN_SINK_F32, 2, P, k, 0, err))
                    return NN_ERR;
                snprintf(path, sizeof path, "%s/layers", g);
                if (declare(s, path, NN_SINK_I32, 1, nl, 0, 0, err) ||
                    write_all_i32(s, path, o->layers, o->n_layers, err))
                    return NN_ERR;
                char factor[32];
                snprintf(factor, sizeof factor, "%g", (double)op->factor);
                if (s->attr(s->ctx, g, "factor", factor, err) ||
                    s->attr(s->ctx, g, "vector",
                            op->vector
                                ? op->vector
                                : "contrast: mean layers_output of contrast[0] minus contrast[1]",
                            err))
                    return NN_ERR;
            }
            if (op->generate > 0) {
                snprintf(path, sizeof path, "%s/tokens", g);
                if (declare(s, path, NN_SINK_I32, 2, P, (uint64_t)op->generate, 0, err) ||
                    s->attr(s->ctx, g, "tokens", "generated ids, -1 after an early end of sequence",
                            err))
                    return NN_ERR;
            }
            break;
        }
    }
    return NN_OK;
}

/* ---- The base pass ----------------------------------------------------------------------------
 */

typedef struct collect_hook {
    nn_harvest *h;
    op_state *o;
    char path[160];
} collect_hook;

static int collect_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    collect_hook *ch = user;
    nn_harvest *h = ch->h;
    const op_state *o = ch->o;
    const nn_sink *s = h->sink;
    if (v->point == NN_HP_NEXT_TOKEN_PROBS)
        return s->write_rows(s->ctx, ch->path, (uint64_t)h->begin, v->rows, v->data, err)
                   ? NN_ERR
                   : NN_HOOK_CONTINUE;
    if (o->op->positions.kind == NN_POS_ALL)
        return s->write_rows(s->ctx, ch->path, (uint64_t)h->tok0, v->rows, v->data, err)
                   ? NN_ERR
                   : NN_HOOK_CONTINUE;
    /* gather the chosen positions' rows */
    int64_t r0 = o->row_offsets[h->begin], r1 = o->row_offsets[h->end];
    if (nn_grow_floats(&h->gather, &h->gather_cap, (size_t)(r1 - r0) * v->cols, err))
        return NN_ERR;
    for (int64_t r = r0; r < r1; r++) {
        size_t row = (size_t)(o->token_index[r] - h->tok0);
        memcpy(h->gather + (size_t)(r - r0) * v->cols, v->data + row * v->cols,
               v->cols * sizeof(float));
    }
    return s->write_rows(s->ctx, ch->path, (uint64_t)r0, (uint64_t)(r1 - r0), h->gather, err)
               ? NN_ERR
               : NN_HOOK_CONTINUE;
}

typedef struct lens_hook {
    nn_harvest *h;
    op_state *o;
    int layer_slot;
    float *rows; /* [n_layers][batch rows][d] */
} lens_hook;

static int lens_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    lens_hook *lh = user;
    const op_state *o = lh->o;
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

/* Sum of probs over the first-token ids of target t of prompt p. */
static float target_sum(const nn_corpus *c, int p, int t, const float *probs)
{
    double sum = 0;
    size_t k = (size_t)p * (size_t)c->n_targets + (size_t)t;
    for (int64_t i = c->target_offsets[k]; i < c->target_offsets[k + 1]; i++)
        sum += probs[c->target_ids[i]];
    return (float)sum;
}

/* The op's layer indices [*l0, *l1) this process holds (all of them outside a pipeline). */
static void owned_layers(const nn_harvest *h, const op_state *o, int *l0, int *l1)
{
    *l0 = 0;
    while (*l0 < o->n_layers && o->layers[*l0] < h->m->layer_begin)
        (*l0)++;
    *l1 = *l0;
    while (*l1 < o->n_layers && o->layers[*l1] < h->m->layer_end)
        (*l1)++;
}

/* Lens results of captured rows: [rows][layers][k] top-k and [rows][layers][T] targets, for the
 * layers this stage holds (their columns of the store's arrays). */
static int lens_write(nn_harvest *h, op_state *o, const float *rows, nn_err *err)
{
    const nn_op *op = o->op;
    const nn_corpus *c = h->c;
    int l0, l1;
    owned_layers(h, o, &l0, &l1);
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
                        tp[at * T + t] = target_sum(c, p, (int)t, z);
                }
            }
        }
    char g[96], path[160];
    group_path(op, g, sizeof g);
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

static int base_pass(nn_harvest *h, const nn_batch *b, nn_err *err)
{
    const nn_config *cfg = &h->m->cfg;
    size_t D = (size_t)cfg->d_model;
    nn_hookset hs = {0};
    collect_hook *ch = NULL;
    lens_hook *lh = NULL;
    float **lens_bufs = NULL;
    int n_ch = 0, n_lh = 0, rc = NN_ERR;
    size_t max_hooks = 0;
    for (int i = 0; i < h->n_ops; i++)
        max_hooks += (size_t)h->ops[i].op->n_hooks * (size_t)(h->ops[i].n_layers + 1) +
                     (size_t)h->ops[i].n_layers;
    if (nn_hookset_init(&hs, cfg->n_layers, err) ||
        !(ch = nn_calloc(max_hooks + 1, sizeof *ch, err)) ||
        !(lh = nn_calloc(max_hooks + 1, sizeof *lh, err)) ||
        !(lens_bufs = nn_calloc((size_t)h->n_ops, sizeof *lens_bufs, err)))
        goto done;
    char g[96];
    for (int i = 0; i < h->n_ops; i++) {
        op_state *o = &h->ops[i];
        const nn_op *op = o->op;
        group_path(op, g, sizeof g);
        if (op->kind == NN_OP_COLLECT) {
            for (int k = 0; k < op->n_hooks; k++) {
                nn_hook_point hp = op->hooks[k];
                bool per_layer = nn_hook_point_per_layer(hp);
                for (int l = 0; l < (per_layer ? o->n_layers : 1); l++) {
                    collect_hook *c = &ch[n_ch++];
                    c->h = h;
                    c->o = o;
                    if (per_layer)
                        snprintf(c->path, sizeof c->path, "%s/%s/%d", g, nn_hook_point_name(hp),
                                 o->layers[l]);
                    else
                        snprintf(c->path, sizeof c->path, "%s/%s", g, nn_hook_point_name(hp));
                    if (nn_hookset_add(&hs, hp, per_layer ? o->layers[l] : -1, collect_fn, c, err))
                        goto done;
                }
            }
        } else if (op->kind == NN_OP_LOGIT_LENS) {
            size_t nr = (size_t)(o->row_offsets[h->end] - o->row_offsets[h->begin]);
            if (!(lens_bufs[i] = nn_malloc((size_t)o->n_layers * nr * D * sizeof(float) + 1, err)))
                goto done;
            for (int l = 0; l < o->n_layers; l++) {
                lens_hook *x = &lh[n_lh++];
                *x = (lens_hook){.h = h, .o = o, .layer_slot = l, .rows = lens_bufs[i]};
                if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, o->layers[l], lens_fn, x, err))
                    goto done;
            }
        }
    }
    if (!h->need_logits &&
        nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, h->last_layer, nn_hook_stop, NULL, err))
        goto done;
    nn_forward_params fp = {.hooks = &hs, .want_logits = h->need_logits};
    if (nn_forward(h->m, h->st, b, &fp, err) == NN_ERR)
        goto done;
    for (int i = 0; i < h->n_ops; i++) {
        op_state *o = &h->ops[i];
        if (o->op->kind == NN_OP_LOGIT_LENS && lens_write(h, o, lens_bufs[i], err))
            goto done;
        if (o->op->kind == NN_OP_TARGET_PROBS && h->m->last_stage) {
            size_t V = (size_t)cfg->vocab_size, T = (size_t)h->c->n_targets;
            int n = h->end - h->begin;
            float *out = nn_malloc((size_t)n * T * sizeof(float) + 1, err), *z;
            if (!out || nn_grow_floats(&h->probs, &h->probs_cap, V, err)) {
                nn_free(out);
                goto done;
            }
            z = h->probs;
            for (int q = 0; q < n; q++) {
                memcpy(z, nn_state_logits(h->st) + (size_t)q * V, V * sizeof(float));
                nn_softmax(z, V);
                for (size_t t = 0; t < T; t++)
                    out[(size_t)q * T + t] = target_sum(h->c, h->begin + q, (int)t, z);
            }
            char path[160];
            group_path(o->op, g, sizeof g);
            snprintf(path, sizeof path, "%s/probs", g);
            int w =
                h->sink->write_rows(h->sink->ctx, path, (uint64_t)h->begin, (uint64_t)n, out, err);
            nn_free(out);
            if (w)
                goto done;
        }
    }
    rc = NN_OK;
done:
    for (int i = 0; lens_bufs && i < h->n_ops; i++)
        nn_free(lens_bufs[i]);
    nn_free(lens_bufs);
    nn_free(ch);
    nn_free(lh);
    nn_hookset_free(&hs);
    return rc;
}

/* ---- Per-prompt operations --------------------------------------------------------------------
 */

/* The batch's prompts as sources in groups (engine/patchscope_batch.h): two packed passes per
 * group instead of two per prompt, the same bits. A group's probabilities are held whole, so its
 * size bounds them (about 64 MB). */
static int patchscope_op(nn_harvest *h, op_state *o, nn_err *err)
{
    const nn_op *op = o->op;
    const nn_corpus *c = h->c;
    size_t nl = (size_t)o->n_layers, T = (size_t)c->n_targets, V = (size_t)h->m->cfg.vocab_size;
    size_t k = (size_t)op->top_k;
    char g[96], path[160];
    group_path(op, g, sizeof g);
    if (k > V)
        return nn_fail(err, "patchscope: top_k %zu is out of range", k);
    int group = (int)((16u << 20) / (nl * V));
    group = group < 1 ? 1 : group;
    float *probs = nn_malloc((size_t)(group < h->end - h->begin ? group : h->end - h->begin) * nl *
                                 V * sizeof *probs,
                             err);
    int32_t *ids = probs ? nn_malloc(nl * k * sizeof *ids + 1, err) : NULL;
    float *vals = ids ? nn_malloc(nl * k * sizeof *vals + 1, err) : NULL;
    float *tp = vals ? nn_malloc(nl * T * sizeof *tp + 1, err) : NULL;
    int64_t *offsets = tp ? nn_malloc((size_t)(group + 1) * sizeof *offsets, err) : NULL;
    int rc = offsets ? NN_OK : NN_ERR;
    nn_patchscope_params pp = nn_patchscope_default_params();
    pp.layers = o->layers;
    pp.n_layers = o->n_layers;
    pp.index_to_patch = op->index;
    pp.top_k = op->top_k;
    for (int p0 = h->begin; !rc && p0 < h->end; p0 += group) {
        int n = h->end - p0 < group ? h->end - p0 : group;
        for (int q = 0; q <= n; q++)
            offsets[q] = c->offsets[p0 + q] - c->offsets[p0];
        if (nn_patchscope_batch_ctx(h->cx, c->tokens + c->offsets[p0], offsets, n,
                                    (nn_prompt){o->target_ids, o->target_n}, &pp, probs, err)) {
            rc = nn_err_prefix(err, "prompts [%d, %d)", p0, p0 + n);
            break;
        }
        if (!h->m->last_stage) /* a pipeline's last stage holds the results */
            continue;
        for (int q = 0; !rc && q < n; q++) {
            int p = p0 + q;
            const float *pr = probs + (size_t)q * nl * V;
            for (size_t l = 0; l < nl; l++)
                nn_top_k(pr + l * V, V, (int)k, ids + l * k, vals + l * k);
            snprintf(path, sizeof path, "%s/top_ids", g);
            rc = h->sink->write_rows(h->sink->ctx, path, (uint64_t)p, 1, ids, err);
            snprintf(path, sizeof path, "%s/top_probs", g);
            if (!rc)
                rc = h->sink->write_rows(h->sink->ctx, path, (uint64_t)p, 1, vals, err);
            if (!rc && op->targets) {
                for (size_t l = 0; l < nl; l++)
                    for (size_t t = 0; t < T; t++)
                        tp[l * T + t] = target_sum(c, p, (int)t, pr + l * V);
                snprintf(path, sizeof path, "%s/target_probs", g);
                rc = h->sink->write_rows(h->sink->ctx, path, (uint64_t)p, 1, tp, err);
            }
        }
    }
    nn_free(probs);
    nn_free(ids);
    nn_free(vals);
    nn_free(tp);
    nn_free(offsets);
    return rc;
}

/* All of the batch's prompts generate together, a KV-cache slot each (engine/generate_batch.h):
 * the same tokens as one prompt at a time, at a fraction of the cost per token. */
static int generate_rows(nn_harvest *h, const nn_op *op, const nn_hookset *hooks, const char *path,
                         nn_err *err)
{
    const nn_corpus *c = h->c;
    int G = op->generate, n = h->end - h->begin;
    int32_t *out = nn_malloc((size_t)n * (size_t)G * sizeof *out, err);
    int *n_out = out ? nn_malloc((size_t)n * sizeof *n_out, err) : NULL;
    uint64_t *seeds = n_out ? nn_malloc((size_t)n * sizeof *seeds, err) : NULL;
    int64_t *offsets = seeds ? nn_malloc((size_t)(n + 1) * sizeof *offsets, err) : NULL;
    int rc = NN_ERR;
    if (!offsets)
        goto done;
    for (int q = 0; q <= n; q++)
        offsets[q] = c->offsets[h->begin + q] - c->offsets[h->begin];
    for (int q = 0; q < n; q++)
        seeds[q] = op->seed + (uint64_t)(h->begin + q); /* per prompt, whatever the batching */
    nn_generate_params gp = nn_generate_default_params();
    gp.max_new_tokens = G;
    gp.temperature = op->temperature;
    gp.top_p = op->top_p;
    gp.hooks = hooks;
    if (nn_generate_batch_ctx(h->cx, c->tokens + c->offsets[h->begin], offsets, n, &gp, seeds, out,
                              n_out, err))
        goto done;
    for (int q = 0; q < n; q++)
        for (int i = n_out[q]; i < G; i++)
            out[(size_t)q * G + i] = -1;
    if (h->m->last_stage &&
        h->sink->write_rows(h->sink->ctx, path, (uint64_t)h->begin, (uint64_t)n, out, err))
        goto done;
    rc = NN_OK;
done:
    nn_free(out);
    nn_free(n_out);
    nn_free(seeds);
    nn_free(offsets);
    return rc;
}

static int steer_op(nn_harvest *h, op_state *o, const nn_batch *b, nn_err *err)
{
    const nn_op *op = o->op;
    const nn_config *cfg = &h->m->cfg;
    size_t V = (size_t)cfg->vocab_size, k = (size_t)op->top_k;
    int n = h->end - h->begin, rc = NN_ERR;
    nn_hookset hs;
    char g[96], path[160];
    group_path(op, g, sizeof g);
    if (nn_hookset_init(&hs, cfg->n_layers, err))
        return NN_ERR;
    int32_t *ids = nn_malloc((size_t)n * k * sizeof *ids, err);
    float *vals = ids ? nn_malloc((size_t)n * k * sizeof *vals, err) : NULL;
    if (!vals || nn_grow_floats(&h->probs, &h->probs_cap, V, err))
        goto done;
    for (int l = 0; l < o->n_layers; l++)
        if (nn_steer_add(&hs, h->m, &o->steers[l], err))
            goto done;
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    if (nn_forward(h->m, h->st, b, &fp, err) == NN_ERR)
        goto done;
    for (int q = 0; q < n; q++) {
        memcpy(h->probs, nn_state_logits(h->st) + (size_t)q * V, V * sizeof(float));
        nn_softmax(h->probs, V);
        nn_top_k(h->probs, V, (int)k, ids + (size_t)q * k, vals + (size_t)q * k);
    }
    snprintf(path, sizeof path, "%s/top_ids", g);
    if (h->m->last_stage &&
        h->sink->write_rows(h->sink->ctx, path, (uint64_t)h->begin, (uint64_t)n, ids, err))
        goto done;
    snprintf(path, sizeof path, "%s/top_probs", g);
    if (h->m->last_stage &&
        h->sink->write_rows(h->sink->ctx, path, (uint64_t)h->begin, (uint64_t)n, vals, err))
        goto done;
    snprintf(path, sizeof path, "%s/tokens", g);
    if (op->generate > 0 && generate_rows(h, op, &hs, path, err))
        goto done;
    rc = NN_OK;
done:
    nn_free(ids);
    nn_free(vals);
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
    char g[96], path[160];
    for (int i = 0; i < h->n_ops; i++) {
        op_state *o = &h->ops[i];
        switch (o->op->kind) {
        case NN_OP_PATCHSCOPE_LENS:
            if (patchscope_op(h, o, err))
                return NN_ERR;
            break;
        case NN_OP_STEER:
            if (steer_op(h, o, &b, err))
                return NN_ERR;
            break;
        case NN_OP_SAE:
            group_path(o->op, g, sizeof g);
            if (nn_sae_op_run(o->sae, &b, begin, end, h->tok0, sink, g, err))
                return NN_ERR;
            break;
        case NN_OP_GENERATE:
            group_path(o->op, g, sizeof g);
            snprintf(path, sizeof path, "%s/tokens", g);
            if (generate_rows(h, o->op, NULL, path, err))
                return NN_ERR;
            break;
        default:
            break;
        }
    }
    return NN_OK;
}
