/* The job operation "target_probs" (docs/jobs.md): each prompt's next-token probability of each
 * of the dataset's targets (summed over a target's first-token ids), from the shared base pass's
 * logits: /target_probs/probs [prompts, targets]. */
#include "op.h"

#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op", "targets_field", NULL};

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    (void)op;
    return nn_job_only_fields(o, fields, path, where, err);
}

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    (void)s, (void)where, (void)err;
    h->base_pass = true;
    h->need_logits = true;
    return NN_OK;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    (void)s;
    char path[160];
    snprintf(path, sizeof path, "%s/probs", g);
    return nn_op_declare(sink, path, NN_SINK_F32, 2, (uint64_t)h->c->n_prompts,
                         (uint64_t)h->c->n_targets, 0, err);
}

static int collect(nn_harvest *h, nn_op_state *s, const char *g, nn_err *err)
{
    (void)s;
    if (!h->m->last_stage)
        return NN_OK;
    size_t V = (size_t)h->m->cfg.vocab_size, T = (size_t)h->c->n_targets;
    int n = h->end - h->begin;
    float *out = nn_malloc((size_t)n * T * sizeof(float) + 1, err), *z;
    if (!out || nn_grow_floats(&h->probs, &h->probs_cap, V, err)) {
        nn_free(out);
        return NN_ERR;
    }
    z = h->probs;
    for (int q = 0; q < n; q++) {
        memcpy(z, nn_state_logits(h->st) + (size_t)q * V, V * sizeof(float));
        nn_softmax(z, V);
        for (size_t t = 0; t < T; t++)
            out[(size_t)q * T + t] = nn_op_target_sum(h->c, h->begin + q, (int)t, z);
    }
    char path[160];
    snprintf(path, sizeof path, "%s/probs", g);
    int w = h->sink->write_rows(h->sink->ctx, path, (uint64_t)h->begin, (uint64_t)n, out, err);
    nn_free(out);
    return w ? NN_ERR : NN_OK;
}

const nn_op_class nn_op_target_probs = {
    .name = "target_probs",
    .fields = fields,
    .needs_targets = true,
    .parse = parse,
    .resolve = resolve,
    .declare = declare,
    .collect = collect,
};
