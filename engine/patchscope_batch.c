#include "patchscope_batch.h"

#include "context.h"

#include <string.h>

/* Target tokens per patched pass: bounds the pass's activations whatever the source count. */
enum { PATCH_PASS_TOKENS = 4096 };

/* Source pass: sequence q's row at src_pos[q] of layer `index`'s output, into rows[q][index]. */
typedef struct capture_hook {
    float *rows; /* [source][layer index][d] */
    const int *src_pos;
    int index, n_layers;
    size_t d;
} capture_hook;

static int capture_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    (void)err;
    const capture_hook *c = user;
    for (int q = 0; q < v->batch->n_seqs; q++)
        memcpy(c->rows + ((size_t)q * c->n_layers + c->index) * c->d,
               v->data + (size_t)(v->batch->offsets[q] + c->src_pos[q]) * c->d,
               c->d * sizeof(float));
    return NN_HOOK_CONTINUE;
}

/* Patched pass: sequence s is (source s / n_layers, layer s % n_layers); the hook of layer index
 * i writes the captured row into the sequences of that layer, at the target position. */
typedef struct patch_hook {
    const float *rows; /* this chunk's [source][layer index][d] */
    int index, n_layers, position;
    size_t d;
} patch_hook;

static int patch_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    (void)err;
    const patch_hook *p = user;
    for (int s = p->index; s < v->batch->n_seqs; s += p->n_layers)
        memcpy(v->data + (size_t)(v->batch->offsets[s] + p->position) * p->d,
               p->rows + (size_t)s * p->d, p->d * sizeof(float));
    return NN_HOOK_CONTINUE;
}

int nn_patchscope_batch_ctx(nn_context *cx, const int32_t *tokens, const int64_t *offsets,
                            int n_sources, nn_prompt target, const nn_patchscope_params *pp,
                            float *probs, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    const nn_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, V = (size_t)c->vocab_size;
    int L = c->n_layers, nl = pp->layers ? pp->n_layers : L;
    if (n_sources < 1 || offsets[0] != 0)
        return nn_fail(err, "patchscope: no sources (or offsets[0] is not 0)");
    if (pp->generate)
        return nn_fail(err, "patchscope: a batch does not generate (generate must be 0)");
    if (target.n < 1 || !target.ids)
        return nn_fail(err, "patchscope: the target prompt is empty");
    int dst_pos = nn_position_resolve(pp->index_to_patch, target.n);
    if (dst_pos < 0)
        return nn_fail(err,
                       "patchscope: index_to_patch %d is outside the target prompt (%d tokens)",
                       pp->index_to_patch, target.n);
    if (nl < 1)
        return nn_fail(err, "patchscope: no layers given");
    if (offsets[n_sources] > 0x7fffffff)
        return nn_fail(err, "patchscope: %lld source tokens in one batch",
                       (long long)offsets[n_sources]);
    int *layers = NULL, *src_pos = NULL, *boff = NULL;
    float *rows = NULL;
    int32_t *ttok = NULL;
    capture_hook *caps = NULL;
    patch_hook *patches = NULL;
    nn_hookset hs = {0};
    int rc = NN_ERR, last = 0;
    size_t ns = (size_t)n_sources;
    int per_chunk = PATCH_PASS_TOKENS / (nl * target.n);
    per_chunk = per_chunk < 1 ? 1 : per_chunk > n_sources ? n_sources : per_chunk;
    size_t chunk_seqs = (size_t)per_chunk * nl;
    if (!(layers = nn_malloc((size_t)nl * sizeof *layers, err)) ||
        !(src_pos = nn_malloc(ns * sizeof *src_pos, err)) ||
        !(boff = nn_malloc(((ns > chunk_seqs ? ns : chunk_seqs) + 1) * sizeof *boff, err)) ||
        !(rows = nn_calloc(ns * nl * D, sizeof *rows, err)) ||
        !(ttok = nn_malloc(chunk_seqs * (size_t)target.n * sizeof *ttok, err)) ||
        !(caps = nn_calloc((size_t)nl, sizeof *caps, err)) ||
        !(patches = nn_calloc((size_t)nl, sizeof *patches, err)))
        goto done;
    for (int i = 0; i < nl; i++) {
        layers[i] = pp->layers ? pp->layers[i] : i;
        if (layers[i] < 0 || layers[i] >= L) {
            nn_fail(err, "patchscope: layer %d is out of range (the model has %d)", layers[i], L);
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (layers[j] == layers[i]) {
                nn_fail(err, "patchscope: layer %d is listed twice", layers[i]);
                goto done;
            }
        last = layers[i] > last ? layers[i] : last;
    }
    for (int q = 0; q < n_sources; q++) {
        int n = (int)(offsets[q + 1] - offsets[q]);
        if (n < 1) {
            nn_fail(err, "patchscope: source %d is empty", q);
            goto done;
        }
        if ((src_pos[q] = nn_position_resolve(pp->source_position, n)) < 0) {
            nn_fail(err, "patchscope: source position %d is outside source %d (%d tokens)",
                    pp->source_position, q, n);
            goto done;
        }
        boff[q] = (int)offsets[q];
    }
    boff[n_sources] = (int)offsets[n_sources];
    /* 1. Every source's layers_output at its source position, every layer, one pass. */
    if (nn_hookset_init(&hs, L, err))
        goto done;
    for (int i = 0; i < nl; i++) {
        caps[i] =
            (capture_hook){.rows = rows, .src_pos = src_pos, .index = i, .n_layers = nl, .d = D};
        if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, layers[i], capture_fn, &caps[i], err))
            goto done;
    }
    if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, last, nn_hook_stop, NULL, err))
        goto done;
    nn_batch sb = {
        .tokens = tokens, .n_tokens = boff[n_sources], .n_seqs = n_sources, .offsets = boff};
    nn_forward_params fp = {.hooks = &hs};
    if (nn_context_forward(cx, &sb, &fp, err) == NN_ERR)
        goto done;
    nn_hookset_free(&hs);
    /* 2. The target once per (source, layer), patched, in chunks of sources. */
    for (size_t s = 0; s < chunk_seqs; s++) {
        memcpy(ttok + s * (size_t)target.n, target.ids, (size_t)target.n * sizeof *ttok);
        boff[s] = (int)s * target.n;
    }
    if (nn_hookset_init(&hs, L, err))
        goto done;
    for (int i = 0; i < nl; i++) {
        patches[i] = (patch_hook){.index = i, .n_layers = nl, .position = dst_pos, .d = D};
        if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, layers[i], patch_fn, &patches[i], err))
            goto done;
    }
    for (int q0 = 0; q0 < n_sources; q0 += per_chunk) {
        int nq = n_sources - q0 < per_chunk ? n_sources - q0 : per_chunk, nseq = nq * nl;
        for (int i = 0; i < nl; i++)
            patches[i].rows = rows + (size_t)q0 * nl * D;
        boff[nseq] = nseq * target.n;
        nn_batch tb = {
            .tokens = ttok, .n_tokens = nseq * target.n, .n_seqs = nseq, .offsets = boff};
        nn_forward_params tp = {.hooks = &hs, .want_logits = true};
        int f = nn_context_forward(cx, &tb, &tp, err);
        if (f == NN_ERR)
            goto done;
        if (f == NN_STOPPED) {
            nn_fail(err, "patchscope: a hook stopped the pass before the logits");
            goto done;
        }
        float *out = probs + (size_t)q0 * nl * V;
        memcpy(out, nn_state_logits(nn_context_last_state(cx)), (size_t)nseq * V * sizeof *out);
        for (int s = 0; s < nseq; s++)
            nn_softmax(out + (size_t)s * V, V);
    }
    rc = NN_OK;
done:
    nn_hookset_free(&hs);
    nn_free(layers);
    nn_free(src_pos);
    nn_free(boff);
    nn_free(rows);
    nn_free(ttok);
    nn_free(caps);
    nn_free(patches);
    return rc;
}
