#include "trace.h"
#include "store.h"

#include <stdio.h>
#include <string.h>

typedef struct trace_ctx {
    const nn_sink *sink;
    int n_prompts;
} trace_ctx;

static int save_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    trace_ctx *t = user;
    char path[256];
    const char *name = nn_hook_point_name(v->point);
    uint64_t dims[3] = {v->rows, v->cols, 0};
    int rank = 2;
    if (v->point == NN_HP_ATTENTION_PROBABILITIES) {
        snprintf(path, sizeof path, "/activations/%s/%d/%d", name, v->layer, v->seq);
        dims[0] = (uint64_t)v->n_heads;
        dims[1] = v->rows / (uint64_t)v->n_heads;
        dims[2] = v->cols;
        rank = 3;
    } else if (v->layer >= 0) {
        snprintf(path, sizeof path, "/activations/%s/%d", name, v->layer);
    } else {
        snprintf(path, sizeof path, "/activations/%s", name);
    }
    if (t->sink->write(t->sink->ctx, path, NN_SINK_F32, rank, dims, v->data, err))
        return NN_ERR;
    return NN_HOOK_CONTINUE;
}

/* Registers save_hook for every requested (point, layer), once each. Returns the last layer any
 * of them needs, or n_layers when a point after the last block is requested. */
static int add_requested(nn_hookset *hs, const nn_model *m, const nn_trace_params *p,
                         trace_ctx *ctx, int *last_layer, nn_err *err)
{
    int L = m->cfg.n_layers, *spec = NULL, n_spec = 0, rc = NN_ERR;
    bool *seen = nn_calloc((size_t)NN_HP_COUNT * (size_t)L, sizeof *seen, err);
    char *list = seen ? nn_strdup(p->hooks ? p->hooks : "", err) : NULL;
    if (!list)
        goto done;
    if (nn_layers_parse(p->layers ? p->layers : "all", L, &spec, &n_spec, err))
        goto done;
    *last_layer = -1;
    int n_names = 0;
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        nn_hook_point hp;
        int layer;
        n_names++;
        if (nn_hook_name_parse(name, L, &hp, &layer, err))
            goto done;
        if (hp == NN_HP_ROUTER_PROBABILITIES && !m->cfg.n_experts) {
            nn_fail(err, "trace: layer %d has no mixture of experts, so no router_probabilities",
                    layer == NN_ALL_LAYERS ? (n_spec ? spec[0] : 0) : layer);
            goto done;
        }
        int count = 1;
        const int *layers = &layer;
        if (layer == NN_ALL_LAYERS) {
            layers = spec;
            count = n_spec;
        }
        for (int i = 0; i < count; i++) {
            int l = layers[i] < 0 ? 0 : layers[i];
            if (seen[(size_t)hp * L + l])
                continue;
            seen[(size_t)hp * L + l] = true;
            if (nn_hookset_add(hs, hp, layers[i], save_hook, ctx, err))
                goto done;
            int needs = nn_hook_point_per_layer(hp)    ? layers[i]
                        : hp == NN_HP_TOKEN_EMBEDDINGS ? 0
                                                       : L;
            if (needs > *last_layer)
                *last_layer = needs;
        }
    }
    if (n_names == 0) {
        nn_fail(err, "trace: no hook points to save (--save layers_output,mlps_output ...)");
        goto done;
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

static int write_tokens(const int32_t *tokens, const int *offsets, int n_prompts,
                        const nn_sink *sink, nn_err *err)
{
    int64_t *offs = nn_malloc((size_t)(n_prompts + 1) * sizeof *offs, err);
    if (!offs)
        return NN_ERR;
    for (int p = 0; p <= n_prompts; p++)
        offs[p] = offsets[p];
    int rc = nn_write_token_index(tokens, offs, n_prompts, sink, err);
    nn_free(offs);
    return rc;
}

int nn_trace_run(const nn_model *m, const int32_t *tokens, const int *offsets, int n_prompts,
                 const nn_trace_params *p, const nn_sink *sink, nn_err *err)
{
    if (n_prompts < 1)
        return nn_fail(err, "trace: no prompts");
    trace_ctx ctx = {.sink = sink, .n_prompts = n_prompts};
    nn_hookset hs = {0};
    nn_state *st = NULL;
    int rc = NN_ERR, last_layer;
    if (nn_hookset_init(&hs, m->cfg.n_layers, err) ||
        add_requested(&hs, m, p, &ctx, &last_layer, err))
        goto done;
    /* Early exit: nothing after the last requested layer is computed. */
    if (last_layer < m->cfg.n_layers &&
        nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, last_layer, nn_hook_stop, NULL, err))
        goto done;
    nn_state_params sp = {.max_tokens = offsets[n_prompts], .max_seqs = n_prompts};
    if (nn_state_init(&st, m, &sp, err) || write_tokens(tokens, offsets, n_prompts, sink, err))
        goto done;
    nn_batch b = {
        .tokens = tokens, .n_tokens = offsets[n_prompts], .n_seqs = n_prompts, .offsets = offsets};
    nn_forward_params fp = {.hooks = &hs};
    if (nn_forward(m, st, &b, &fp, err) == NN_ERR)
        goto done;
    if (sink->attr(sink->ctx, "/", "hooks", p->hooks ? p->hooks : "", err) ||
        sink->attr(sink->ctx, "/", "layers", p->layers ? p->layers : "all", err))
        goto done;
    rc = NN_OK;
done:
    nn_state_free(st);
    nn_hookset_free(&hs);
    return rc;
}
