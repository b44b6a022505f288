/* The job operation "object_attn_lens" (docs/jobs.md): nnterp's patch_object_attn_lens with each
 * dataset prompt as the source and one target prompt: for each start layer l, the target run
 * with its attention input at attn_idx_patch replaced, at layers l .. l + num_patches - 1, by the
 * source's attention input at its last token (nn_object_attn_lens_ctx); the patched next-token
 * top-k (and targets' probabilities) per prompt and start layer. */
#include "op_intervene.h"
#include "toolkit.h"

#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op",     "target", "attn_idx_patch", "num_patches",
                                     "layers", "top_k",  "targets",        NULL};

typedef struct object_spec {
    char *target;
    int attn_idx_patch, num_patches;
} object_spec;

static void free_spec(nn_op *op)
{
    object_spec *sp = op->spec;
    if (sp)
        nn_free(sp->target);
    nn_free(sp);
    op->spec = NULL;
}

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    long v, idx, np;
    object_spec *sp = nn_calloc(1, sizeof *sp, err);
    if (!sp)
        return NN_ERR;
    op->spec = sp;
    if (nn_job_only_fields(o, fields, path, where, err) ||
        nn_job_parse_layers(o, path, where, &op->layers, err) ||
        nn_json_int(o, "top_k", false, 10, 1, 1000, path, &v, err) ||
        nn_json_bool(o, "targets", false, false, path, &op->targets, err) ||
        nn_job_dup_string(o, "target", true, NULL, path, &sp->target, err) ||
        nn_json_int(o, "attn_idx_patch", true, 0, -1000000, 1000000, path, &idx, err) ||
        nn_json_int(o, "num_patches", false, 5, 1, 100000, path, &np, err))
        return nn_job_in_op(err, where);
    op->top_k = (int)v;
    sp->attn_idx_patch = (int)idx;
    sp->num_patches = (int)np;
    return NN_OK;
}

typedef struct object_state {
    int32_t *target_ids;
    int target_n;
} object_state;

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    const object_spec *sp = s->op->spec;
    object_state *os = nn_calloc(1, sizeof *os, err);
    if (!os)
        return NN_ERR;
    s->priv = os;
    nn_ids ids = {0};
    if (nn_tokenizer_encode(h->tok, sp->target, strlen(sp->target), h->job->add_special_tokens,
                            &ids, err))
        return nn_err_prefix(err, "%s: target", where);
    os->target_ids = ids.ids;
    os->target_n = (int)ids.n;
    if (nn_position_resolve(sp->attn_idx_patch, os->target_n) < 0)
        return nn_fail(err, "%s: attn_idx_patch %d is outside the target prompt (%d tokens)",
                       where, sp->attn_idx_patch, os->target_n);
    return NN_OK;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    const object_spec *sp = op->spec;
    const object_state *os = s->priv;
    char path[192], buf[32];
    if (nn_iv_declare(h, sink, g, "", s->n_layers, op->top_k, op->targets, err))
        return NN_ERR;
    snprintf(path, sizeof path, "%s/target_ids", g);
    if (nn_op_declare(sink, path, NN_SINK_I32, 1, (uint64_t)os->target_n, 0, 0, err) ||
        nn_op_write_all_i32(sink, path, os->target_ids, os->target_n, err))
        return NN_ERR;
    snprintf(buf, sizeof buf, "%d", sp->attn_idx_patch);
    if (sink->attr(sink->ctx, g, "attn_idx_patch", buf, err))
        return NN_ERR;
    snprintf(buf, sizeof buf, "%d", sp->num_patches);
    return sink->attr(sink->ctx, g, "num_patches", buf, err);
}

/* One call per prompt: the source pass, then the target's copies in one packed pass. */
static int run(nn_harvest *h, nn_op_state *s, const nn_batch *b, const char *g, nn_err *err)
{
    (void)b;
    const object_spec *sp = s->op->spec;
    const object_state *os = s->priv;
    const nn_corpus *c = h->c;
    size_t V = (size_t)h->m->cfg.vocab_size, nl = (size_t)s->n_layers;
    nn_iv_rows r;
    if (nn_iv_rows_init(&r, h, s->n_layers, s->op->top_k, s->op->targets, err))
        return NN_ERR;
    float *probs = nn_malloc(nl * V * sizeof *probs, err);
    int rc = probs ? NN_OK : NN_ERR;
    nn_object_attn_lens_params p = nn_object_attn_lens_default_params();
    p.layers = s->layers;
    p.n_layers = s->n_layers;
    p.attn_idx_patch = sp->attn_idx_patch;
    p.num_patches = sp->num_patches;
    for (int q = 0; !rc && q < r.n; q++) {
        int pr = h->begin + q;
        nn_prompt source = {c->tokens + c->offsets[pr], (int)(c->offsets[pr + 1] - c->offsets[pr])};
        if (nn_object_attn_lens_ctx(h->cx, source, (nn_prompt){os->target_ids, os->target_n}, &p,
                                    probs, err)) {
            rc = nn_err_prefix(err, "prompt %d", pr);
            break;
        }
        for (size_t l = 0; l < nl; l++)
            nn_iv_rows_fill(&r, h, q, (int)l, probs + l * V);
    }
    if (!rc)
        rc = nn_iv_rows_write(&r, h, g, "", err);
    nn_free(probs);
    nn_iv_rows_free(&r);
    return rc ? NN_ERR : NN_OK;
}

static void free_state(nn_op_state *s)
{
    object_state *os = s->priv;
    if (os)
        nn_free(os->target_ids);
    nn_free(os);
}

static const char *const identity_fields[] = {"target", "attn_idx_patch", "num_patches", NULL};

static int identity(const nn_op *op, cJSON *obj, nn_err *err)
{
    const object_spec *sp = op->spec;
    if (!cJSON_AddStringToObject(obj, "target", sp->target) ||
        !cJSON_AddNumberToObject(obj, "attn_idx_patch", sp->attn_idx_patch) ||
        !cJSON_AddNumberToObject(obj, "num_patches", sp->num_patches))
        return nn_fail(err, "out of memory");
    return NN_OK;
}

const nn_op_class nn_op_object_attn_lens = {
    .name = "object_attn_lens",
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
