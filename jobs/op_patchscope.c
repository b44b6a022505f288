/* The job operation "patchscope_lens" (docs/jobs.md): each prompt's hidden states at the chosen
 * layers patched into a target prompt (nnterp's repeat_prompt by default, a prompt, a "repeat"
 * spec, "it_repeat" through the chat template, or each dataset line's own "target_field") at
 * target.index; the patched next-token top-k (and targets' probabilities) per prompt and layer. */
#include "job_chat.h"
#include "job_repeat.h"
#include "op.h"
#include "toolkit.h"

#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op",      "target", "target_field", "layers", "top_k",
                                     "targets", NULL};

/* What patchscope keeps beyond nn_op's fields. */
typedef struct patchscope_spec {
    char *target_field; /* NULL: one target for every prompt */
} patchscope_spec;

static void free_spec(nn_op *op)
{
    patchscope_spec *sp = op->spec;
    if (sp)
        nn_free(sp->target_field);
    nn_free(sp);
    op->spec = NULL;
}

/* "target": {"it_repeat": true | {"add_user_instr", "use_system_prompt", "complete_prompt"},
 * "index": -1}: nnterp's it_repeat_prompt (its defaults: all true). */
static int parse_it_repeat(const cJSON *t, nn_op *op, const char *path, const char *where,
                           nn_err *err)
{
    static const char *const tallowed[] = {"it_repeat", "index", NULL};
    static const char *const iallowed[] = {"add_user_instr", "use_system_prompt", "complete_prompt",
                                           NULL};
    const cJSON *it = nn_json_get(t, "it_repeat");
    long idx;
    op->it_repeat = true;
    op->it_add_user_instr = op->it_use_system_prompt = op->it_complete_prompt = true;
    if (nn_job_only_fields(t, tallowed, path, where, err) ||
        nn_json_int(t, "index", false, -1, -1000000, 1000000, path, &idx, err))
        return nn_err_prefix(err, "%s: target", where);
    op->index = (int)idx;
    if (cJSON_IsTrue(it))
        return NN_OK;
    if (!cJSON_IsObject(it) || nn_job_only_fields(it, iallowed, path, where, err) ||
        nn_json_bool(it, "add_user_instr", false, true, path, &op->it_add_user_instr, err) ||
        nn_json_bool(it, "use_system_prompt", false, true, path, &op->it_use_system_prompt, err) ||
        nn_json_bool(it, "complete_prompt", false, true, path, &op->it_complete_prompt, err))
        return cJSON_IsObject(it) ? nn_err_prefix(err, "%s: target.it_repeat", where)
                                  : nn_fail(err,
                                            "%s: %s: target.it_repeat must be true or "
                                            "{\"add_user_instr\", \"use_system_prompt\", "
                                            "\"complete_prompt\"}",
                                            path, where);
    return NN_OK;
}
static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    long v;
    if (nn_job_only_fields(o, fields, path, where, err) ||
        nn_job_parse_layers(o, path, where, &op->layers, err) ||
        nn_json_int(o, "top_k", false, 10, 1, 1000, path, &v, err) ||
        nn_json_bool(o, "targets", false, false, path, &op->targets, err))
        return nn_job_in_op(err, where);
    op->top_k = (int)v;
    op->index = -1;
    patchscope_spec *sp = nn_calloc(1, sizeof *sp, err);
    if (!sp)
        return NN_ERR;
    op->spec = sp;
    const cJSON *t = nn_json_get(o, "target");
    if (nn_json_get(o, "target_field")) {
        /* each line's own target; "target" may then only give its index */
        static const char *const iallowed[] = {"index", NULL};
        long idx = -1;
        if (nn_job_dup_string(o, "target_field", true, NULL, path, &sp->target_field, err))
            return nn_job_in_op(err, where);
        if (t && (!cJSON_IsObject(t) || nn_job_only_fields(t, iallowed, path, where, err) ||
                  nn_json_int(t, "index", false, -1, -1000000, 1000000, path, &idx, err)))
            return nn_fail(err,
                           "%s: %s: give 'target' or 'target_field', not both (with "
                           "target_field, 'target' may only be {\"index\": I})",
                           path, where);
        op->index = (int)idx;
    } else if (t && cJSON_IsObject(t) && nn_json_get(t, "it_repeat")) {
        if (parse_it_repeat(t, op, path, where, err))
            return NN_ERR;
    } else if (t && cJSON_IsObject(t) && nn_json_get(t, "repeat")) {
        /* nnterp's repeat_prompt(words=..., rel=..., sep=...): jobs/job_repeat.c */
        static const char *const rallowed[] = {"repeat", "index", NULL};
        long idx;
        if (nn_job_only_fields(t, rallowed, path, where, err) ||
            nn_json_int(t, "index", false, -1, -1000000, 1000000, path, &idx, err))
            return nn_err_prefix(err, "%s: target", where);
        if (nn_job_parse_repeat(nn_json_get(t, "repeat"), path, where, &op->target_prompt, err))
            return NN_ERR;
        op->index = (int)idx;
    } else if (t) {
        static const char *const tallowed[] = {"prompt", "index", NULL};
        long idx;
        if (!cJSON_IsObject(t) || nn_job_only_fields(t, tallowed, path, where, err) ||
            nn_job_dup_string(t, "prompt", true, NULL, path, &op->target_prompt, err) ||
            nn_json_int(t, "index", false, -1, -1000000, 1000000, path, &idx, err))
            return cJSON_IsObject(t)
                       ? nn_err_prefix(err, "%s: target", where)
                       : nn_fail(err,
                                 "%s: %s: field 'target' must be {\"prompt\": ..., \"index\": -1}",
                                 path, where);
        op->index = (int)idx;
    }
    return NN_OK;
}

/* The target prompt's tokens; with target_field, every prompt's back to back. */
typedef struct patchscope_state {
    int32_t *target_ids;
    int target_n;            /* all the tokens */
    int64_t *target_offsets; /* [P + 1] with target_field, else NULL */
} patchscope_state;

/* Prompt p's target. */
static nn_prompt target_of(const patchscope_state *ps, int p)
{
    if (!ps->target_offsets)
        return (nn_prompt){ps->target_ids, ps->target_n};
    int64_t a = ps->target_offsets[p], b = ps->target_offsets[p + 1];
    return (nn_prompt){ps->target_ids + a, (int)(b - a)};
}

static bool same_target(const patchscope_state *ps, int p, int q)
{
    nn_prompt a = target_of(ps, p), b = target_of(ps, q);
    return a.n == b.n && !memcmp(a.ids, b.ids, (size_t)a.n * sizeof *a.ids);
}

/* Each line's target_field (jobs/op_fields.c), its index checked against each. */
static int resolve_fields(nn_harvest *h, nn_op_state *s, patchscope_state *ps, const char *where,
                          nn_err *err)
{
    const patchscope_spec *sp = s->op->spec;
    const nn_corpus *c = h->c;
    nn_ids all = {0};
    if (!(ps->target_offsets = nn_malloc(((size_t)c->n_prompts + 1) * sizeof(int64_t), err)))
        return NN_ERR;
    int rc =
        nn_op_read_field(h, sp->target_field, "patchscope target", &all, ps->target_offsets, err);
    ps->target_ids = all.ids;
    ps->target_n = (int)all.n;
    if (rc)
        return nn_err_prefix(err, "%s: target_field", where);
    for (int p = 0; p < c->n_prompts; p++) {
        int n = target_of(ps, p).n;
        if (n > h->m->cfg.max_positions || nn_position_resolve(s->op->index, n) < 0)
            return nn_fail(err, "%s: %s:%lld: the target (field '%s', %d tokens) %s", where,
                           c->source ? c->source : "dataset",
                           c->source_line ? (long long)c->source_line[p] : (long long)p,
                           sp->target_field, n,
                           n > h->m->cfg.max_positions ? "is longer than the model's context"
                                                       : "does not contain the target index");
    }
    return NN_OK;
}

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    const nn_op *op = s->op;
    patchscope_state *ps = nn_calloc(1, sizeof *ps, err);
    if (!ps)
        return NN_ERR;
    s->priv = ps;
    if (op->spec && ((const patchscope_spec *)op->spec)->target_field)
        return resolve_fields(h, s, ps, where, err);
    nn_ids ids = {0};
    int rc;
    if (op->it_repeat) { /* through the chat template (jobs/job_chat.c) */
        rc = nn_job_it_repeat_ids(h->job, op, h->tok, &ids, err);
    } else {
        char *text = op->target_prompt ? nn_strdup(op->target_prompt, err)
                                       : nn_repeat_prompt(NULL, 0, NULL, NULL, NULL, err);
        if (!text)
            return NN_ERR;
        rc = nn_tokenizer_encode(h->tok, text, strlen(text), h->job->add_special_tokens, &ids, err);
        nn_free(text);
    }
    if (rc)
        return nn_err_prefix(err, "%s: target", where);
    ps->target_ids = ids.ids;
    ps->target_n = (int)ids.n;
    if (nn_position_resolve(op->index, ps->target_n) < 0)
        return nn_fail(err, "%s: target index %d is outside the target prompt (%d tokens)", where,
                       op->index, ps->target_n);
    return NN_OK;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    patchscope_state *ps = s->priv;
    char path[160];
    if (nn_op_declare_lens(sink, g, (uint64_t)h->c->n_prompts, (uint64_t)s->n_layers,
                           (uint64_t)op->top_k, op->targets ? (uint64_t)h->c->n_targets : 0, err))
        return NN_ERR;
    snprintf(path, sizeof path, "%s/target_ids", g);
    if (nn_op_declare(sink, path, NN_SINK_I32, 1, (uint64_t)ps->target_n, 0, 0, err) ||
        nn_op_write_all_i32(sink, path, ps->target_ids, ps->target_n, err))
        return NN_ERR;
    if (ps->target_offsets) { /* prompt p's target is target_ids[offs[p] .. offs[p + 1]) */
        const patchscope_spec *sp = op->spec;
        uint64_t n = (uint64_t)h->c->n_prompts + 1;
        snprintf(path, sizeof path, "%s/target_offsets", g);
        if (nn_op_declare(sink, path, NN_SINK_I64, 1, n, 0, 0, err) ||
            sink->write_rows(sink->ctx, path, 0, n, ps->target_offsets, err) ||
            sink->attr(sink->ctx, g, "target_field", sp->target_field, err))
            return NN_ERR;
    }
    char idx[32];
    snprintf(idx, sizeof idx, "%d", op->index);
    return sink->attr(sink->ctx, g, "index_to_patch", idx, err);
}

/* The batch's prompts as sources in groups (engine/patchscope_batch.h): two packed passes per
 * group instead of two per prompt, the same bits. A group's probabilities are held whole, so its
 * size bounds them (about 64 MB). */
static int run(nn_harvest *h, nn_op_state *o, const nn_batch *b, const char *g, nn_err *err)
{
    (void)b;
    const nn_op *op = o->op;
    const patchscope_state *ps = o->priv;
    const nn_corpus *c = h->c;
    size_t nl = (size_t)o->n_layers, T = (size_t)c->n_targets, V = (size_t)h->m->cfg.vocab_size;
    size_t k = (size_t)op->top_k;
    char path[160];
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
    for (int p0 = h->begin, n = 0; !rc && p0 < h->end; p0 += n) {
        /* a group shares one target: with target_field, a run of lines with the same one */
        for (n = 1; p0 + n < h->end && n < group && same_target(ps, p0, p0 + n); n++)
            ;
        for (int q = 0; q <= n; q++)
            offsets[q] = c->offsets[p0 + q] - c->offsets[p0];
        if (nn_patchscope_batch_ctx(h->cx, c->tokens + c->offsets[p0], offsets, n,
                                    target_of(ps, p0), &pp, probs, err)) {
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
                        tp[l * T + t] = nn_op_target_sum(c, p, (int)t, pr + l * V);
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

static void free_state(nn_op_state *s)
{
    patchscope_state *ps = s->priv;
    if (ps) {
        nn_free(ps->target_ids);
        nn_free(ps->target_offsets);
    }
    nn_free(ps);
}

/* target_field changes the results (the common identity has target.prompt and target.index). */
static const char *const identity_fields[] = {"target_field", NULL};

static int identity(const nn_op *op, cJSON *obj, nn_err *err)
{
    const patchscope_spec *sp = op->spec;
    if (!(sp && sp->target_field ? cJSON_AddStringToObject(obj, "target_field", sp->target_field)
                                 : cJSON_AddNullToObject(obj, "target_field")))
        return nn_fail(err, "patchscope_lens: out of memory");
    return NN_OK;
}

const nn_op_class nn_op_patchscope_lens = {
    .name = "patchscope_lens",
    .fields = fields,
    .parse = parse,
    .free_spec = free_spec,
    .resolve = resolve,
    .declare = declare,
    .run = run,
    .free = free_state,
    .identity_fields = identity_fields,
    .identity = identity,
};
