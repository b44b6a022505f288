/* The job operation "attention_edit" (docs/jobs.md): chosen attention probabilities scaled
 * (nn_attn_edit_add with NN_ATTN_SCALE; scale 0 zeroes them), at the chosen layers, heads, query
 * positions and key positions, optionally renormalized; per prompt the edited pass's next-token
 * top-k (and targets' probabilities), and the unedited baseline's from the shared base pass. */
#include "op_intervene.h"
#include "toolkit.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op",          "layers", "heads", "queries", "keys", "scale",
                                     "renormalize", "top_k",  "targets", NULL};

typedef struct attn_spec {
    int *heads, *queries, *keys; /* heads {-1}: all; queries {-1}: the last, NN_ALL_POSITIONS */
    int n_heads, n_queries, n_keys;
    float scale;
    bool renormalize;
} attn_spec;

static void free_spec(nn_op *op)
{
    attn_spec *sp = op->spec;
    if (sp) {
        nn_free(sp->heads);
        nn_free(sp->queries);
        nn_free(sp->keys);
    }
    nn_free(sp);
    op->spec = NULL;
}

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    long v;
    double d;
    attn_spec *sp = nn_calloc(1, sizeof *sp, err);
    if (!sp)
        return NN_ERR;
    op->spec = sp;
    if (nn_job_only_fields(o, fields, path, where, err) ||
        nn_job_parse_layers(o, path, where, &op->layers, err) ||
        nn_json_int(o, "top_k", false, 10, 1, 1000, path, &v, err) ||
        nn_json_bool(o, "targets", false, false, path, &op->targets, err) ||
        nn_json_bool(o, "renormalize", false, false, path, &sp->renormalize, err) ||
        nn_json_double(o, "scale", true, 0, path, &d, err))
        return nn_job_in_op(err, where);
    op->top_k = (int)v;
    if (!(d >= 0 && d <= FLT_MAX))
        return nn_fail(err, "%s: %s: scale %g must be a finite factor >= 0 (0 zeroes)", path,
                       where, d);
    sp->scale = (float)d;
    if (!nn_json_get(o, "keys"))
        return nn_fail(err, "%s: %s: required field 'keys' is missing (key positions, >= 0)",
                       path, where);
    if (nn_iv_parse_ints(o, "heads", path, where, 0, 100000, -1, -1, &sp->heads, &sp->n_heads,
                         err) ||
        nn_iv_parse_ints(o, "queries", path, where, -1, 10000000, NN_ALL_POSITIONS, -1,
                         &sp->queries, &sp->n_queries, err) ||
        nn_iv_parse_ints(o, "keys", path, where, 0, 10000000, 0, 0, &sp->keys, &sp->n_keys, err))
        return NN_ERR;
    return NN_OK;
}

/* One edit per layer, head and query; each scales every key. */
typedef struct attn_state {
    nn_attn_edit *edits;
    int n_edits;
} attn_state;

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    const attn_spec *sp = s->op->spec;
    const nn_config *cfg = &h->m->cfg;
    for (int i = 0; i < sp->n_heads; i++)
        if (sp->heads[i] >= cfg->n_heads)
            return nn_fail(err, "%s: heads[%d] = %d is out of range (the model has %d heads)",
                           where, i, sp->heads[i], cfg->n_heads);
    attn_state *as = nn_calloc(1, sizeof *as, err);
    if (!as)
        return NN_ERR;
    s->priv = as;
    as->n_edits = s->n_layers * sp->n_heads * sp->n_queries;
    if (!(as->edits = nn_calloc((size_t)as->n_edits, sizeof *as->edits, err)))
        return NN_ERR;
    int e = 0;
    for (int l = 0; l < s->n_layers; l++)
        for (int hd = 0; hd < sp->n_heads; hd++)
            for (int q = 0; q < sp->n_queries; q++)
                as->edits[e++] = (nn_attn_edit){.layer = s->layers[l],
                                                .head = sp->heads[hd],
                                                .query = sp->queries[q],
                                                .key = sp->keys[0],
                                                .op = NN_ATTN_SCALE,
                                                .value = sp->scale,
                                                .renormalize = sp->renormalize,
                                                .keys = sp->keys,
                                                .n_keys = sp->n_keys};
    h->base_pass = true; /* the baseline */
    h->need_logits = true;
    return NN_OK;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    const attn_spec *sp = op->spec;
    char buf[64];
    if (nn_iv_declare(h, sink, g, "", 0, op->top_k, op->targets, err) ||
        nn_iv_declare(h, sink, g, "baseline_", 0, op->top_k, op->targets, err))
        return NN_ERR;
    const char *names[3] = {"heads", "queries", "keys"};
    const int *vals[3] = {sp->heads, sp->queries, sp->keys};
    int ns[3] = {sp->n_heads, sp->n_queries, sp->n_keys};
    for (int i = 0; i < 3; i++) {
        char path[192];
        snprintf(path, sizeof path, "%s/%s", g, names[i]);
        if (nn_op_declare(sink, path, NN_SINK_I32, 1, (uint64_t)ns[i], 0, 0, err) ||
            nn_op_write_all_i32(sink, path, vals[i], ns[i], err))
            return NN_ERR;
    }
    snprintf(buf, sizeof buf, "%.9g", (double)sp->scale);
    if (sink->attr(sink->ctx, g, "scale", buf, err) ||
        sink->attr(sink->ctx, g, "renormalize", sp->renormalize ? "true" : "false", err))
        return NN_ERR;
    return NN_OK;
}

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

static int run(nn_harvest *h, nn_op_state *s, const nn_batch *b, const char *g, nn_err *err)
{
    const attn_state *as = s->priv;
    nn_iv_rows r;
    nn_hookset hs;
    if (nn_iv_rows_init(&r, h, 1, s->op->top_k, s->op->targets, err))
        return NN_ERR;
    if (nn_hookset_init(&hs, h->m->cfg.n_layers, err)) {
        nn_iv_rows_free(&r);
        return NN_ERR;
    }
    int rc = NN_OK;
    for (int e = 0; e < as->n_edits && !rc; e++)
        rc = nn_attn_edit_add(&hs, h->m, &as->edits[e], err);
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    if (!rc)
        rc = nn_forward(h->m, h->st, b, &fp, err) == NN_ERR ||
             nn_iv_rows_from_logits(&r, h, nn_state_logits(h->st), 0, err) ||
             nn_iv_rows_write(&r, h, g, "", err);
    nn_hookset_free(&hs);
    nn_iv_rows_free(&r);
    return rc ? NN_ERR : NN_OK;
}

static void free_state(nn_op_state *s)
{
    attn_state *as = s->priv;
    if (as)
        nn_free(as->edits);
    nn_free(as);
}

static const char *const identity_fields[] = {"heads", "queries", "keys", "scale", "renormalize",
                                              NULL};

static int identity(const nn_op *op, cJSON *obj, nn_err *err)
{
    const attn_spec *sp = op->spec;
    if (!cJSON_AddItemToObject(obj, "heads", nn_iv_int_array(sp->heads, sp->n_heads)) ||
        !cJSON_AddItemToObject(obj, "queries", nn_iv_int_array(sp->queries, sp->n_queries)) ||
        !cJSON_AddItemToObject(obj, "keys", nn_iv_int_array(sp->keys, sp->n_keys)) ||
        !cJSON_AddNumberToObject(obj, "scale", (double)sp->scale) ||
        !cJSON_AddBoolToObject(obj, "renormalize", sp->renormalize))
        return nn_fail(err, "out of memory");
    return NN_OK;
}

const nn_op_class nn_op_attention_edit = {
    .name = "attention_edit",
    .fields = fields,
    .parse = parse,
    .free_spec = free_spec,
    .resolve = resolve,
    .declare = declare,
    .collect = collect,
    .run = run,
    .free = free_state,
    .identity_fields = identity_fields,
    .identity = identity,
};
