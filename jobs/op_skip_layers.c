/* The job operation "skip_layers" (docs/jobs.md): nnterp's skip_layers, each listed layer's
 * output replaced by its input (nn_skip_add), all listed layers at once, or with "sweep" each
 * alone; per prompt the skipped pass's next-token top-k (and the dataset's targets'
 * probabilities), and the unskipped baseline's from the shared base pass. */
#include "op_intervene.h"
#include "toolkit.h"

#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op", "layers", "sweep", "top_k", "targets", NULL};

typedef struct skip_spec {
    bool sweep;
} skip_spec;

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    long v;
    skip_spec *sp = nn_calloc(1, sizeof *sp, err);
    if (!sp)
        return NN_ERR;
    op->spec = sp;
    if (nn_job_only_fields(o, fields, path, where, err) ||
        nn_job_parse_layers(o, path, where, &op->layers, err) ||
        nn_json_bool(o, "sweep", false, false, path, &sp->sweep, err) ||
        nn_json_int(o, "top_k", false, 10, 1, 1000, path, &v, err) ||
        nn_json_bool(o, "targets", false, false, path, &op->targets, err))
        return nn_job_in_op(err, where);
    if (!nn_json_get(o, "layers"))
        return nn_fail(err, "%s: %s: required field 'layers' is missing (the layers to skip)",
                       path, where);
    op->top_k = (int)v;
    return NN_OK;
}

static void free_spec(nn_op *op)
{
    nn_free(op->spec);
    op->spec = NULL;
}

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    (void)s, (void)where, (void)err;
    h->base_pass = true; /* the baseline */
    h->need_logits = true;
    return NN_OK;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    const skip_spec *sp = op->spec;
    if (nn_iv_declare(h, sink, g, "", sp->sweep ? s->n_layers : 0, op->top_k, op->targets, err) ||
        nn_iv_declare(h, sink, g, "baseline_", 0, op->top_k, op->targets, err))
        return NN_ERR;
    return sink->attr(sink->ctx, g, "sweep", sp->sweep ? "true" : "false", err);
}

/* The baseline: the base pass's logits. */
static int collect(nn_harvest *h, nn_op_state *s, const char *g, nn_err *err)
{
    nn_iv_rows r;
    if (nn_iv_rows_init(&r, h, 1, s->op->top_k, s->op->targets, err))
        return NN_ERR;
    int rc = nn_iv_rows_from_logits(&r, h, nn_state_logits(h->st), 0, err) ||
             nn_iv_rows_write(&r, h, g, "baseline_", err);
    nn_iv_rows_free(&r);
    return rc ? NN_ERR : NN_OK;
}

/* One pass skipping layers[0..n) into slot `slot`. */
static int skipped_pass(nn_harvest *h, const nn_batch *b, const int *layers, int n, int slot,
                        nn_iv_rows *r, nn_err *err)
{
    nn_hookset hs;
    nn_skip *skip = NULL;
    if (nn_hookset_init(&hs, h->m->cfg.n_layers, err))
        return NN_ERR;
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    int rc = nn_skip_add(&hs, h->m, layers, n, NULL, &skip, err) ||
             nn_forward(h->m, h->st, b, &fp, err) == NN_ERR ||
             nn_iv_rows_from_logits(r, h, nn_state_logits(h->st), slot, err);
    nn_skip_free(skip);
    nn_hookset_free(&hs);
    return rc ? NN_ERR : NN_OK;
}

static int run(nn_harvest *h, nn_op_state *s, const nn_batch *b, const char *g, nn_err *err)
{
    const skip_spec *sp = s->op->spec;
    nn_iv_rows r;
    if (nn_iv_rows_init(&r, h, sp->sweep ? s->n_layers : 1, s->op->top_k, s->op->targets, err))
        return NN_ERR;
    int rc = NN_OK;
    if (sp->sweep)
        for (int l = 0; l < s->n_layers && !rc; l++)
            rc = skipped_pass(h, b, &s->layers[l], 1, l, &r, err);
    else
        rc = skipped_pass(h, b, s->layers, s->n_layers, 0, &r, err);
    if (!rc)
        rc = nn_iv_rows_write(&r, h, g, "", err);
    nn_iv_rows_free(&r);
    return rc ? NN_ERR : NN_OK;
}

static const char *const identity_fields[] = {"sweep", NULL};

static int identity(const nn_op *op, cJSON *obj, nn_err *err)
{
    const skip_spec *sp = op->spec;
    if (!cJSON_AddBoolToObject(obj, "sweep", sp->sweep))
        return nn_fail(err, "out of memory");
    return NN_OK;
}

const nn_op_class nn_op_skip_layers = {
    .name = "skip_layers",
    .fields = fields,
    .parse = parse,
    .free_spec = free_spec,
    .resolve = resolve,
    .declare = declare,
    .collect = collect,
    .run = run,
    .identity_fields = identity_fields,
    .identity = identity,
};
