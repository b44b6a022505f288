/* The intervention ops' shared results: top-k and target probabilities per prompt (op_intervene.h).
 */
#include "op_intervene.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int nn_iv_declare(nn_harvest *h, const nn_sink *sink, const char *g, const char *prefix,
                  int layers, int k, bool targets, nn_err *err)
{
    uint64_t P = (uint64_t)h->c->n_prompts, T = (uint64_t)h->c->n_targets;
    const char *names[3] = {"top_ids", "top_probs", "target_probs"};
    nn_sink_type types[3] = {NN_SINK_I32, NN_SINK_F32, NN_SINK_F32};
    uint64_t last[3] = {(uint64_t)k, (uint64_t)k, T};
    for (int i = 0; i < (targets ? 3 : 2); i++) {
        char path[192];
        snprintf(path, sizeof path, "%s/%s%s", g, prefix, names[i]);
        int rc = layers > 0 ? nn_op_declare(sink, path, types[i], 3, P, (uint64_t)layers, last[i],
                                            err)
                            : nn_op_declare(sink, path, types[i], 2, P, last[i], 0, err);
        if (rc)
            return NN_ERR;
    }
    return NN_OK;
}

int nn_iv_rows_init(nn_iv_rows *r, const nn_harvest *h, int slots, int k, bool targets,
                    nn_err *err)
{
    memset(r, 0, sizeof *r);
    r->n = h->end - h->begin;
    r->slots = slots;
    r->k = k;
    r->T = targets ? h->c->n_targets : 0;
    size_t n = (size_t)r->n * (size_t)slots;
    if (!(r->ids = nn_malloc(n * (size_t)k * sizeof *r->ids + 1, err)) ||
        !(r->probs = nn_malloc(n * (size_t)k * sizeof *r->probs + 1, err)) ||
        !(r->targets = nn_malloc(n * (size_t)r->T * sizeof *r->targets + 1, err))) {
        nn_iv_rows_free(r);
        return NN_ERR;
    }
    return NN_OK;
}

void nn_iv_rows_free(nn_iv_rows *r)
{
    nn_free(r->ids);
    nn_free(r->probs);
    nn_free(r->targets);
    memset(r, 0, sizeof *r);
}

void nn_iv_rows_fill(nn_iv_rows *r, const nn_harvest *h, int q, int slot, const float *probs)
{
    size_t at = (size_t)q * (size_t)r->slots + (size_t)slot;
    nn_top_k(probs, (size_t)h->m->cfg.vocab_size, r->k, r->ids + at * (size_t)r->k,
             r->probs + at * (size_t)r->k);
    for (int t = 0; t < r->T; t++)
        r->targets[at * (size_t)r->T + (size_t)t] = nn_op_target_sum(h->c, h->begin + q, t, probs);
}

int nn_iv_rows_from_logits(nn_iv_rows *r, nn_harvest *h, const float *logits, int slot,
                           nn_err *err)
{
    size_t V = (size_t)h->m->cfg.vocab_size;
    if (nn_grow_floats(&h->probs, &h->probs_cap, V, err))
        return NN_ERR;
    for (int q = 0; q < r->n; q++) {
        memcpy(h->probs, logits + (size_t)q * V, V * sizeof(float));
        nn_softmax(h->probs, V);
        nn_iv_rows_fill(r, h, q, slot, h->probs);
    }
    return NN_OK;
}

int nn_iv_rows_write(const nn_iv_rows *r, nn_harvest *h, const char *g, const char *prefix,
                     nn_err *err)
{
    if (!h->m->last_stage) /* a pipeline's last stage holds the results */
        return NN_OK;
    const void *data[3] = {r->ids, r->probs, r->targets};
    const char *names[3] = {"top_ids", "top_probs", "target_probs"};
    for (int i = 0; i < (r->T ? 3 : 2); i++) {
        char path[192];
        snprintf(path, sizeof path, "%s/%s%s", g, prefix, names[i]);
        if (h->sink->write_rows(h->sink->ctx, path, (uint64_t)h->begin, (uint64_t)r->n, data[i],
                                err))
            return NN_ERR;
    }
    return NN_OK;
}

int nn_iv_parse_ints(const cJSON *o, const char *key, const char *path, const char *where,
                     long min, long max, int all_value, int fallback, int **out, int *n,
                     nn_err *err)
{
    const cJSON *v = nn_json_get(o, key);
    *out = NULL;
    *n = 0;
    if (!v || cJSON_IsNull(v) || (all_value && cJSON_IsString(v) && !strcmp(v->valuestring, "all"))) {
        if (!(*out = nn_malloc(sizeof **out, err)))
            return NN_ERR;
        (*out)[0] = v && !cJSON_IsNull(v) ? all_value : fallback;
        *n = 1;
        return NN_OK;
    }
    int count = cJSON_IsNumber(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (count < 1)
        return nn_fail(err, "%s: %s: field '%s' must be %san index or a non-empty list of indices",
                       path, where, key, all_value ? "\"all\", " : "");
    if (!(*out = nn_malloc((size_t)count * sizeof **out, err)))
        return NN_ERR;
    for (int i = 0; i < count; i++) {
        const cJSON *x = cJSON_IsNumber(v) ? v : cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) ||
            x->valuedouble < (double)min || x->valuedouble > (double)max) {
            nn_free(*out);
            *out = NULL;
            return nn_fail(err, "%s: %s: %s[%d] must be an integer in [%ld, %ld]", path, where,
                           key, i, min, max);
        }
        (*out)[i] = (int)x->valuedouble;
    }
    *n = count;
    return NN_OK;
}

cJSON *nn_iv_int_array(const int *v, int n)
{
    return cJSON_CreateIntArray(v, n);
}
