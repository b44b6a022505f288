#include "trace.h"
#include "op.h"
#include "store.h"

#include <stdio.h>
#include <string.h>

/* The requested (point, layer) pairs, once each: trace's --save list and --layers spec parsed
 * against the model into the points in first-mention order and each one's sorted layers. */
typedef struct trace_request {
    nn_hook_point hooks[NN_HP_COUNT];
    int n_hooks;
    int *layers[NN_HP_COUNT]; /* [hook k][n_layers[k]], per-layer points only */
    int n_layers[NN_HP_COUNT];
} trace_request;

static void request_free(trace_request *r)
{
    for (int k = 0; k < NN_HP_COUNT; k++)
        nn_free(r->layers[k]);
}

static int parse_request(const nn_model *m, const nn_trace_params *p, trace_request *r, nn_err *err)
{
    int L = m->cfg.n_layers, *spec = NULL, n_spec = 0, rc = NN_ERR;
    int slot[NN_HP_COUNT]; /* hook point -> index into r->hooks, -1 before it is named */
    for (int i = 0; i < NN_HP_COUNT; i++)
        slot[i] = -1;
    bool *seen = nn_calloc((size_t)NN_HP_COUNT * (size_t)L, sizeof *seen, err);
    char *list = seen ? nn_strdup(p->hooks ? p->hooks : "", err) : NULL;
    if (!list)
        goto done;
    if (nn_layers_parse(p->layers ? p->layers : "all", L, &spec, &n_spec, err))
        goto done;
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        nn_hook_point hp;
        int layer;
        if (nn_hook_name_parse(name, L, &hp, &layer, err))
            goto done;
        if (hp == NN_HP_ROUTER_PROBABILITIES && !m->cfg.n_experts) {
            nn_fail(err, "trace: layer %d has no mixture of experts, so no router_probabilities",
                    layer == NN_ALL_LAYERS ? (n_spec ? spec[0] : 0) : layer);
            goto done;
        }
        if (slot[hp] < 0) {
            slot[hp] = r->n_hooks;
            r->hooks[r->n_hooks++] = hp;
        }
        if (!nn_hook_point_per_layer(hp))
            continue;
        if (layer == NN_ALL_LAYERS)
            for (int i = 0; i < n_spec; i++)
                seen[(size_t)hp * L + spec[i]] = true;
        else
            seen[(size_t)hp * L + layer] = true;
    }
    if (r->n_hooks == 0) {
        nn_fail(err, "trace: no hook points to save (--save layers_output,mlps_output ...)");
        goto done;
    }
    for (int k = 0; k < r->n_hooks; k++) {
        nn_hook_point hp = r->hooks[k];
        if (!nn_hook_point_per_layer(hp))
            continue;
        if (!(r->layers[k] = nn_malloc((size_t)L * sizeof(int), err)))
            goto done;
        for (int l = 0; l < L; l++)
            if (seen[(size_t)hp * L + l])
                r->layers[k][r->n_layers[k]++] = l;
    }
    rc = NN_OK;
done:
    nn_free(spec);
    nn_free(list);
    nn_free(seen);
    return rc;
}

int nn_write_token_index(const int32_t *tokens, const int64_t *offsets, int64_t n_prompts,
                         const nn_sink *sink, nn_err *err)
{
    uint64_t N = (uint64_t)offsets[n_prompts], P1 = (uint64_t)n_prompts + 1;
    int32_t *prompt = nn_malloc(N * sizeof *prompt + 1, err);
    int32_t *position = prompt ? nn_malloc(N * sizeof *position + 1, err) : NULL;
    int rc = NN_ERR;
    if (!position)
        goto done;
    for (int64_t p = 0; p < n_prompts; p++)
        for (int64_t t = offsets[p]; t < offsets[p + 1]; t++) {
            prompt[t] = (int32_t)p;
            position[t] = (int32_t)(t - offsets[p]);
        }
    if (sink->write(sink->ctx, NN_DS_TOKEN_IDS, NN_SINK_I32, 1, &N, tokens, err) ||
        sink->write(sink->ctx, NN_DS_TOKEN_PROMPT, NN_SINK_I32, 1, &N, prompt, err) ||
        sink->write(sink->ctx, NN_DS_TOKEN_POSITION, NN_SINK_I32, 1, &N, position, err) ||
        sink->write(sink->ctx, NN_DS_PROMPT_TOKEN_OFFSETS, NN_SINK_I64, 1, &P1, offsets, err))
        goto done;
    rc = NN_OK;
done:
    nn_free(prompt);
    nn_free(position);
    return rc;
}

/* One batch of the job's collect operation (jobs/op_collect.c) in trace's layout: the same
 * collector as `nnterp run`'s store, so the two files hold the same bits. */
int nn_trace_run(const nn_model *m, const int32_t *tokens, const int *offsets, int n_prompts,
                 const nn_trace_params *p, const nn_sink *sink, nn_err *err)
{
    if (n_prompts < 1)
        return nn_fail(err, "trace: no prompts");
    trace_request req = {0};
    nn_job job = {0};
    nn_harvest *h = NULL;
    int64_t *offs = NULL;
    int rc = NN_ERR;
    if (parse_request(m, p, &req, err) ||
        !(offs = nn_malloc((size_t)(n_prompts + 1) * sizeof *offs, err)) ||
        !(job.ops = nn_calloc(1, sizeof *job.ops, err)))
        goto done;
    job.n_ops = 1;
    if (nn_op_collect_trace(&job.ops[0], req.n_hooks, req.hooks, req.layers, req.n_layers, err))
        goto done;
    for (int i = 0; i <= n_prompts; i++)
        offs[i] = offsets[i];
    nn_corpus corpus = {.n_prompts = n_prompts, .tokens = tokens, .offsets = offs};
    if (nn_harvest_init(&h, m, NULL, &job, &corpus, offsets[n_prompts], n_prompts, err) ||
        nn_write_token_index(tokens, offs, n_prompts, sink, err) ||
        nn_harvest_declare(h, sink, err) || nn_harvest_run(h, 0, n_prompts, sink, err))
        goto done;
    if (sink->attr(sink->ctx, "/", "hooks", p->hooks ? p->hooks : "", err) ||
        sink->attr(sink->ctx, "/", "layers", p->layers ? p->layers : "all", err))
        goto done;
    rc = NN_OK;
done:
    nn_harvest_free(h);
    nn_job_free(&job);
    nn_free(offs);
    request_free(&req);
    return rc;
}
