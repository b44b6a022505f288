/* nnterp's patch_object_attn_lens (engine/toolkit.h): the source's attention input at its last
 * token written into the target's attention input at attn_idx_patch, at num_patches consecutive
 * layers from each start layer; the target's next-token distribution per start layer.
 *
 * nnterp runs the source once (get_token_activations with get_attention(model, layer).input) and
 * the target once per start layer; here the target's copies, one per start layer, run in one
 * packed pass, copy i patched at its own layers (the same bits as one pass per copy). */
#include <string.h>

#include "context.h"
#include "toolkit.h"

nn_object_attn_lens_params nn_object_attn_lens_default_params(void)
{
    return (nn_object_attn_lens_params){
        .attn_idx_patch = -1, .num_patches = 5, .source_position = -1};
}

/* The source's attentions_input at one row, every layer: rows [layer][d]. */
typedef struct grab_rows {
    float *rows;
    int row;
    size_t d;
} grab_rows;

static int grab_row(const nn_hook_view *v, void *user, nn_err *err)
{
    (void)err;
    grab_rows *g = user;
    memcpy(g->rows + (size_t)v->layer * g->d, v->data + (size_t)g->row * g->d,
           g->d * sizeof(float));
    return NN_HOOK_CONTINUE;
}

/* Copy `seq` of the packed targets gets the source's row of this hook's layer at `position`
 * when the layer is one of the copy's [first, last). */
typedef struct write_rows {
    const float *rows; /* [layer][d] */
    const int *first;  /* [copies] start layer of each copy */
    int n_copies, num_patches, position;
    size_t d;
} write_rows;

static int write_row(const nn_hook_view *v, void *user, nn_err *err)
{
    (void)err;
    const write_rows *w = user;
    const nn_batch *b = v->batch;
    for (int s = 0; s < b->n_seqs && s < w->n_copies; s++) {
        if (v->layer < w->first[s] || v->layer >= w->first[s] + w->num_patches)
            continue;
        int p0 = b->pos0 ? b->pos0[s] : 0, n = b->offsets[s + 1] - b->offsets[s];
        if (w->position < p0 || w->position >= p0 + n)
            continue;
        memcpy(v->data + ((size_t)b->offsets[s] + (size_t)(w->position - p0)) * w->d,
               w->rows + (size_t)v->layer * w->d, w->d * sizeof(float));
    }
    return NN_HOOK_CONTINUE;
}

int nn_object_attn_lens_ctx(nn_context *cx, nn_prompt source, nn_prompt target,
                            const nn_object_attn_lens_params *p, float *probs, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    const nn_config *c = &m->cfg;
    int L = c->n_layers, nl = p->layers ? p->n_layers : L, rc = NN_ERR;
    size_t D = (size_t)c->d_model;
    int src = nn_position_resolve(p->source_position, source.n);
    int dst = nn_position_resolve(p->attn_idx_patch, target.n);
    if (source.n < 1 || target.n < 1)
        return nn_fail(err, "object attention lens: the %s prompt is empty",
                       source.n < 1 ? "source" : "target");
    if (src < 0)
        return nn_fail(err,
                       "object attention lens: source position %d is outside the source prompt "
                       "(%d tokens)",
                       p->source_position, source.n);
    if (dst < 0)
        return nn_fail(err,
                       "object attention lens: attn_idx_patch %d is outside the target prompt "
                       "(%d tokens)",
                       p->attn_idx_patch, target.n);
    if (p->num_patches < 1)
        return nn_fail(err, "object attention lens: num_patches %d must be >= 1", p->num_patches);
    if (nl < 1)
        return nn_fail(err, "object attention lens: no layers given");
    float *rows = nn_malloc((size_t)L * D * sizeof *rows, err);
    int *first = rows ? nn_malloc((size_t)nl * sizeof *first, err) : NULL;
    nn_prompt *copies = first ? nn_malloc((size_t)nl * sizeof *copies, err) : NULL;
    nn_hookset hs = {0};
    nn_state *st = NULL;
    if (!copies)
        goto done;
    for (int i = 0; i < nl; i++) {
        int l = p->layers ? p->layers[i] : i;
        if (l < 0)
            l += L;
        if (l < 0 || l >= L) {
            nn_fail(err, "object attention lens: layer %d is out of range (the model has %d layers)",
                    p->layers[i], L);
            goto done;
        }
        first[i] = l;
        copies[i] = target;
    }
    /* 1. The source's attentions_input at src, every layer, one pass. */
    grab_rows g = {.rows = rows, .row = src, .d = D};
    if (nn_hookset_init(&hs, L, err))
        goto done;
    for (int l = 0; l < L; l++)
        if (nn_hookset_add(&hs, NN_HP_ATTENTIONS_INPUT, l, grab_row, &g, err))
            goto done;
    int off[2] = {0, source.n};
    nn_batch sb = {.tokens = source.ids, .n_tokens = source.n, .n_seqs = 1, .offsets = off};
    nn_state_params sp = {.max_tokens = source.n, .max_seqs = 1};
    nn_forward_params fp = {.hooks = &hs};
    if (nn_context_state(cx, &sp, &st, err) || nn_context_run(cx, st, &sb, &fp, err) == NN_ERR)
        goto done;
    nn_hookset_free(&hs);
    /* 2. The target's copies, copy i patched at layers first[i] .. first[i] + num_patches - 1. */
    write_rows w = {.rows = rows,
                    .first = first,
                    .n_copies = nl,
                    .num_patches = p->num_patches,
                    .position = dst,
                    .d = D};
    if (nn_hookset_init(&hs, L, err))
        goto done;
    for (int l = 0; l < L; l++)
        if (nn_hookset_add(&hs, NN_HP_ATTENTIONS_INPUT, l, write_row, &w, err))
            goto done;
    if (nn_next_token_probs_ctx(cx, copies, nl, &hs, probs, err))
        goto done;
    rc = NN_OK;
done:
    nn_hookset_free(&hs);
    nn_free(rows);
    nn_free(first);
    nn_free(copies);
    return rc;
}

int nn_object_attn_lens(const nn_model *m, nn_prompt source, nn_prompt target,
                        const nn_object_attn_lens_params *p, float *probs, nn_err *err)
{
    nn_context *cx;
    if (nn_context_init(&cx, m, NULL, err))
        return NN_ERR;
    int rc = nn_object_attn_lens_ctx(cx, source, target, p, probs, err);
    nn_context_free(cx);
    return rc;
}
