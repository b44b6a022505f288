/* The job operation "generate" (docs/jobs.md): max_new_tokens tokens per prompt, all of a batch's
 * prompts generating together: /generate/tokens [prompts, max_new_tokens], -1 after an early end
 * of sequence. steer generates through nn_op_generate_rows too. */
#include "generate_batch.h"
#include "op.h"

#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op", "max_new_tokens", "temperature", "top_p", "seed", NULL};

/* temperature, top_p, seed: steer's and generate's sampling fields. */
int nn_op_parse_sampling(const cJSON *o, const char *path, const char *where, nn_op *op,
                         nn_err *err)
{
    double d;
    long seed;
    if (nn_json_double(o, "temperature", false, 0.0, path, &d, err))
        return nn_job_in_op(err, where);
    if (d < 0)
        return nn_fail(err, "%s: %s: temperature must be >= 0", path, where);
    op->temperature = (float)d;
    if (nn_json_double(o, "top_p", false, 1.0, path, &d, err) || d <= 0 || d > 1)
        return nn_fail(err, "%s: %s: top_p must be in (0, 1]", path, where);
    op->top_p = (float)d;
    if (nn_json_int(o, "seed", false, 42, 0, 1L << 52, path, &seed, err))
        return nn_job_in_op(err, where);
    op->seed = (uint64_t)seed;
    return NN_OK;
}

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    long v;
    if (nn_job_only_fields(o, fields, path, where, err) ||
        nn_json_int(o, "max_new_tokens", true, 0, 0, 100000, path, &v, err))
        return nn_job_in_op(err, where);
    op->generate = (int)v;
    if (nn_op_parse_sampling(o, path, where, op, err))
        return NN_ERR;
    if (op->generate < 1)
        return nn_fail(err, "%s: %s: max_new_tokens must be >= 1", path, where);
    return NN_OK;
}

/* The tokens array of an op that generates (generate, steer with "generate"). */
int nn_op_declare_tokens(nn_harvest *h, const nn_op *op, const nn_sink *sink, const char *g,
                         nn_err *err)
{
    char path[160];
    if (op->generate <= 0)
        return NN_OK;
    snprintf(path, sizeof path, "%s/tokens", g);
    if (nn_op_declare(sink, path, NN_SINK_I32, 2, (uint64_t)h->c->n_prompts, (uint64_t)op->generate,
                      0, err) ||
        sink->attr(sink->ctx, g, "tokens", "generated ids, -1 after an early end of sequence", err))
        return NN_ERR;
    return NN_OK;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    return nn_op_declare_tokens(h, s->op, sink, g, err);
}

/* All of the batch's prompts generate together, a KV-cache slot each (engine/generate_batch.h):
 * the same tokens as one prompt at a time, at a fraction of the cost per token. */
int nn_op_generate_rows(nn_harvest *h, const nn_op *op, const nn_hookset *hooks, const char *path,
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

static int run(nn_harvest *h, nn_op_state *s, const nn_batch *b, const char *g, nn_err *err)
{
    (void)b;
    char path[160];
    snprintf(path, sizeof path, "%s/tokens", g);
    return nn_op_generate_rows(h, s->op, NULL, path, err);
}

const nn_op_class nn_op_generate = {
    .name = "generate",
    .fields = fields,
    .generate_field = "max_new_tokens",
    .parse = parse,
    .declare = declare,
    .run = run,
};
