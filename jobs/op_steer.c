/* The job operation "steer" (docs/jobs.md): adds factor times a vector (a .npy file, or the
 * contrast of two prompt sets' mean layers_output: listed in the op, or two fields of every
 * dataset line) at the chosen layers and writes each prompt's steered next-token top-k, and with
 * "generate" the steered generations. */
#include "op.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op",          "vector", "contrast", "contrast_fields",
                                     "layers",      "factor", "generate", "top_k",
                                     "temperature", "top_p",  "seed",     NULL};

/* What steer keeps beyond nn_op's fields: "contrast_fields", the dataset fields of the two sets. */
typedef struct steer_spec {
    char *contrast_fields[2]; /* NULL: none */
} steer_spec;

static void free_spec(nn_op *op)
{
    steer_spec *sp = op->spec;
    if (sp)
        for (int k = 0; k < 2; k++)
            nn_free(sp->contrast_fields[k]);
    nn_free(sp);
    op->spec = NULL;
}

static int parse_contrast_fields(const cJSON *cf, const char *path, const char *where,
                                 steer_spec *sp, nn_err *err)
{
    if (!cJSON_IsArray(cf) || cJSON_GetArraySize(cf) != 2 ||
        !cJSON_IsString(cJSON_GetArrayItem(cf, 0)) || !cJSON_IsString(cJSON_GetArrayItem(cf, 1)) ||
        !cJSON_GetArrayItem(cf, 0)->valuestring[0] || !cJSON_GetArrayItem(cf, 1)->valuestring[0])
        return nn_fail(err,
                       "%s: %s: 'contrast_fields' must be two dataset field names [\"a\", \"b\"]",
                       path, where);
    for (int k = 0; k < 2; k++)
        if (!(sp->contrast_fields[k] = nn_strdup(cJSON_GetArrayItem(cf, k)->valuestring, err)))
            return NN_ERR;
    return NN_OK;
}

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    long v;
    double d;
    if (nn_job_only_fields(o, fields, path, where, err) ||
        nn_json_int(o, "generate", false, 0, 0, 100000, path, &v, err))
        return nn_job_in_op(err, where);
    op->generate = (int)v;
    if (nn_op_parse_sampling(o, path, where, op, err))
        return NN_ERR;
    steer_spec *sp = nn_calloc(1, sizeof *sp, err);
    if (!sp)
        return NN_ERR;
    op->spec = sp;
    const cJSON *contrast = nn_json_get(o, "contrast"), *cf = nn_json_get(o, "contrast_fields");
    if ((nn_json_get(o, "vector") != NULL) + (contrast != NULL) + (cf != NULL) != 1)
        return nn_fail(err,
                       "%s: %s: give exactly one of 'vector' (a .npy file), "
                       "'contrast' ([[\"text\", ...], [\"text\", ...]]) and 'contrast_fields' "
                       "([\"field_a\", \"field_b\"] of the dataset's lines)",
                       path, where);
    if (cf) {
        if (parse_contrast_fields(cf, path, where, sp, err))
            return NN_ERR;
    } else if (contrast) {
        if (!cJSON_IsArray(contrast) || cJSON_GetArraySize(contrast) != 2)
            return nn_fail(err, "%s: %s: 'contrast' must be two lists of prompts", path, where);
        for (int k = 0; k < 2; k++) {
            const cJSON *set = cJSON_GetArrayItem(contrast, k), *t;
            int n = cJSON_IsArray(set) ? cJSON_GetArraySize(set) : 0;
            if (n < 1)
                return nn_fail(err, "%s: %s: contrast[%d] must be a non-empty list of prompts",
                               path, where, k);
            if (!(op->contrast[k] = nn_calloc((size_t)n, sizeof(char *), err)))
                return NN_ERR;
            cJSON_ArrayForEach (t, set) {
                if (!cJSON_IsString(t))
                    return nn_fail(err, "%s: %s: contrast[%d] holds a non-string", path, where, k);
                if (!(op->contrast[k][op->n_contrast[k]++] = nn_strdup(t->valuestring, err)))
                    return NN_ERR;
            }
        }
    } else if (nn_job_dup_string(o, "vector", true, NULL, path, &op->vector, err)) {
        return nn_job_in_op(err, where);
    }
    if (nn_job_parse_layers(o, path, where, &op->layers, err) ||
        nn_json_double(o, "factor", true, 0, path, &d, err) ||
        nn_json_int(o, "top_k", false, 10, 1, 1000, path, &v, err))
        return nn_job_in_op(err, where);
    if (!nn_json_get(o, "layers"))
        return nn_fail(err, "%s: %s: required field 'layers' is missing", path, where);
    if (!(fabs(d) <= FLT_MAX))
        return nn_fail(err,
                       "%s: %s: factor %g is outside the float32 range (|factor| <= "
                       "%.3g)",
                       path, where, d, (double)FLT_MAX);
    op->factor = (float)d;
    op->top_k = (int)v;
    return NN_OK;
}

/* steer's resolved state: one steer per layer (contrast vectors differ by layer). */
typedef struct steer_state {
    float *vector;
    nn_steer *steers;
} steer_state;

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

/* contrast_fields: mean(layers_output.layer | every line's field a) - mean(... | field b). */
static int field_contrast_vectors(nn_harvest *h, nn_op_state *s, float *vectors, nn_err *err)
{
    const steer_spec *sp = s->op->spec;
    int P = h->c->n_prompts, rc = NN_OK;
    size_t D = (size_t)h->m->cfg.d_model;
    nn_ids all[2] = {{0}, {0}};
    int64_t *offs[2] = {NULL, NULL};
    nn_prompt *sets[2] = {NULL, NULL};
    for (int k = 0; !rc && k < 2; k++) {
        if (!(offs[k] = nn_malloc(((size_t)P + 1) * sizeof(int64_t), err)) ||
            !(sets[k] = nn_calloc((size_t)P, sizeof(nn_prompt), err)))
            rc = NN_ERR;
        else if (nn_op_read_field(h, sp->contrast_fields[k], "steer contrast", &all[k], offs[k],
                                  err))
            rc = nn_err_prefix(err, "contrast_fields[%d]", k);
        for (int p = 0; !rc && p < P; p++)
            sets[k][p] = (nn_prompt){all[k].ids + offs[k][p], (int)(offs[k][p + 1] - offs[k][p])};
    }
    for (int i = 0; !rc && i < s->n_layers; i++)
        rc = nn_contrast_vector(h->m, sets[0], P, sets[1], P, s->layers[i],
                                h->job->add_special_tokens ? nn_tokenizer_bos(h->tok) : -1,
                                vectors + (size_t)i * D, err);
    for (int k = 0; k < 2; k++) {
        nn_ids_free(&all[k]);
        nn_free(offs[k]);
        nn_free(sets[k]);
    }
    return rc;
}

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    const nn_op *op = s->op;
    size_t D = (size_t)h->m->cfg.d_model;
    steer_state *ss = nn_calloc(1, sizeof *ss, err);
    if (!ss)
        return NN_ERR;
    s->priv = ss;
    if (!(ss->steers = nn_calloc((size_t)s->n_layers, sizeof *ss->steers, err)))
        return NN_ERR;
    if (op->vector) {
        size_t n;
        if (nn_npy_read_vector(op->vector, &ss->vector, &n, err))
            return nn_err_prefix(err, "%s", where);
        if (n != D)
            return nn_fail(err, "%s: %s has %zu values, the model's d_model is %zu", where,
                           op->vector, n, D);
    } else if (!(ss->vector = nn_malloc((size_t)s->n_layers * D * sizeof(float), err))) {
        return NN_ERR;
    }
    const steer_spec *sp = op->spec;
    bool from_fields = sp && sp->contrast_fields[0];
    if (from_fields && field_contrast_vectors(h, s, ss->vector, err))
        return nn_err_prefix(err, "%s", where);
    for (int i = 0; i < s->n_layers; i++) {
        float *v = op->vector ? ss->vector : ss->vector + (size_t)i * D;
        if (!op->vector && !from_fields && contrast_vector(h, op, s->layers[i], v, err))
            return nn_err_prefix(err, "%s", where);
        ss->steers[i] =
            (nn_steer){.vector = v, .factor = op->factor, .layers = &s->layers[i], .n_layers = 1};
    }
    return NN_OK;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    uint64_t P = (uint64_t)h->c->n_prompts, k = (uint64_t)op->top_k;
    char path[160];
    snprintf(path, sizeof path, "%s/top_ids", g);
    if (nn_op_declare(sink, path, NN_SINK_I32, 2, P, k, 0, err))
        return NN_ERR;
    snprintf(path, sizeof path, "%s/top_probs", g);
    if (nn_op_declare(sink, path, NN_SINK_F32, 2, P, k, 0, err))
        return NN_ERR;
    snprintf(path, sizeof path, "%s/layers", g);
    if (nn_op_declare(sink, path, NN_SINK_I32, 1, (uint64_t)s->n_layers, 0, 0, err) ||
        nn_op_write_all_i32(sink, path, s->layers, s->n_layers, err))
        return NN_ERR;
    char factor[32], how[512];
    const steer_spec *sp = op->spec;
    snprintf(factor, sizeof factor, "%g", (double)op->factor);
    if (sp && sp->contrast_fields[0])
        snprintf(how, sizeof how,
                 "contrast: mean layers_output of every line's field '%s' minus field '%s'",
                 sp->contrast_fields[0], sp->contrast_fields[1]);
    else
        snprintf(how, sizeof how, "%s",
                 op->vector ? op->vector
                            : "contrast: mean layers_output of contrast[0] minus contrast[1]");
    if (sink->attr(sink->ctx, g, "factor", factor, err) ||
        sink->attr(sink->ctx, g, "vector", how, err))
        return NN_ERR;
    return nn_op_declare_tokens(h, op, sink, g, err);
}

static int run(nn_harvest *h, nn_op_state *o, const nn_batch *b, const char *g, nn_err *err)
{
    const nn_op *op = o->op;
    steer_state *ss = o->priv;
    const nn_config *cfg = &h->m->cfg;
    size_t V = (size_t)cfg->vocab_size, k = (size_t)op->top_k;
    int n = h->end - h->begin, rc = NN_ERR;
    nn_hookset hs;
    char path[160];
    if (nn_hookset_init(&hs, cfg->n_layers, err))
        return NN_ERR;
    int32_t *ids = nn_malloc((size_t)n * k * sizeof *ids, err);
    float *vals = ids ? nn_malloc((size_t)n * k * sizeof *vals, err) : NULL;
    if (!vals || nn_grow_floats(&h->probs, &h->probs_cap, V, err))
        goto done;
    for (int l = 0; l < o->n_layers; l++)
        if (nn_steer_add(&hs, h->m, &ss->steers[l], err))
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
    if (op->generate > 0 && nn_op_generate_rows(h, op, &hs, path, err))
        goto done;
    rc = NN_OK;
done:
    nn_free(ids);
    nn_free(vals);
    nn_hookset_free(&hs);
    return rc;
}

static void free_state(nn_op_state *s)
{
    steer_state *ss = s->priv;
    if (ss) {
        nn_free(ss->vector);
        nn_free(ss->steers);
    }
    nn_free(ss);
}

/* contrast_fields change the vector (the common identity has vector and contrast). */
static const char *const identity_fields[] = {"contrast_fields", NULL};

static int identity(const nn_op *op, cJSON *obj, nn_err *err)
{
    const steer_spec *sp = op->spec;
    cJSON *v = sp && sp->contrast_fields[0]
                   ? cJSON_CreateStringArray((const char *const *)sp->contrast_fields, 2)
                   : cJSON_CreateNull();
    if (!v || !cJSON_AddItemToObject(obj, "contrast_fields", v))
        return nn_fail(err, "steer: out of memory");
    return NN_OK;
}

const nn_op_class nn_op_steer = {
    .name = "steer",
    .fields = fields,
    .declares_layers = true,
    .generate_field = "generate",
    .parse = parse,
    .free_spec = free_spec,
    .resolve = resolve,
    .declare = declare,
    .run = run,
    .free = free_state,
    .identity_fields = identity_fields,
    .identity = identity,
};
