/* The toolkit's interventions: activation patching, skipping layers, attention-probability
 * edits (engine/toolkit.h). Each is a hook set plus one or two forward passes, as the rest of
 * the toolkit (toolkit.c). */
#include "toolkit.h"

#include "context.h"
#include "toolkit_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Activation patching ----------------------------------------------------------------------
 */

typedef struct grab_row {
    float *dst;
    int row;
    size_t d;
} grab_row;

static int grab_row_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    grab_row *g = user;
    if (v->cols != g->d)
        return nn_fail(err, "activation patching: %s rows are %zu wide, not d_model",
                       nn_hook_point_name(v->point), v->cols);
    memcpy(g->dst, v->data + (size_t)g->row * g->d, g->d * sizeof(float));
    return NN_HOOK_CONTINUE;
}

int nn_activation_patch_ctx(nn_context *cx, nn_prompt source, nn_prompt target,
                            const nn_patch *patches, int n_patches, float *probs, float *logits,
                            nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    const nn_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, V = (size_t)c->vocab_size;
    int rc = NN_ERR;
    float *values = NULL;
    grab_row *grabs = NULL;
    nn_tk_patch_row *writes = NULL;
    nn_hookset hs = {0};
    nn_state *st = NULL;
    if (n_patches < 1)
        return nn_fail(err, "activation patching: no patches given");
    if (!(values = nn_malloc((size_t)n_patches * D * sizeof *values, err)) ||
        !(grabs = nn_calloc((size_t)n_patches, sizeof *grabs, err)) ||
        !(writes = nn_calloc((size_t)n_patches, sizeof *writes, err)) ||
        nn_hookset_init(&hs, c->n_layers, err))
        goto done;
    for (int i = 0; i < n_patches; i++) {
        const nn_patch *p = &patches[i];
        if (p->point == NN_HP_ATTENTION_PROBABILITIES || p->point == NN_HP_LOGITS ||
            p->point == NN_HP_NEXT_TOKEN_PROBS || p->point >= NN_HP_COUNT) {
            nn_fail(err, "activation patching: %s cannot be patched by position (use a hook)",
                    nn_hook_point_name(p->point));
            goto done;
        }
        int s = nn_position_resolve(p->source_position, source.n);
        int t = nn_position_resolve(p->target_position, target.n);
        if (s < 0 || t < 0) {
            nn_fail(err, "activation patching: position %d is outside the %s prompt (%d tokens)",
                    s < 0 ? p->source_position : p->target_position, s < 0 ? "source" : "target",
                    s < 0 ? source.n : target.n);
            goto done;
        }
        int layer = nn_hook_point_per_layer(p->point) ? p->layer : -1;
        if (layer != -1 && (layer < 0 || layer >= c->n_layers)) {
            nn_fail(err, "activation patching: layer %d is out of range (the model has %d layers)",
                    p->layer, c->n_layers);
            goto done;
        }
        grabs[i] = (grab_row){.dst = values + (size_t)i * D, .row = s, .d = D};
        writes[i] =
            (nn_tk_patch_row){.value = values + (size_t)i * D, .seq = 0, .position = t, .d = D};
        if (nn_hookset_add(&hs, p->point, layer, grab_row_hook, &grabs[i], err))
            goto done;
    }
    int off[2] = {0, source.n};
    nn_batch sb = {.tokens = source.ids, .n_tokens = source.n, .n_seqs = 1, .offsets = off};
    nn_state_params sp = {.max_tokens = source.n, .max_seqs = 1};
    nn_forward_params fp = {.hooks = &hs};
    if (nn_context_state(cx, &sp, &st, err) || nn_context_run(cx, st, &sb, &fp, err) == NN_ERR)
        goto done;
    nn_hookset_free(&hs);
    if (nn_hookset_init(&hs, c->n_layers, err))
        goto done;
    for (int i = 0; i < n_patches; i++)
        if (nn_hookset_add(&hs, patches[i].point,
                           nn_hook_point_per_layer(patches[i].point) ? patches[i].layer : -1,
                           nn_tk_patch_row_hook, &writes[i], err))
            goto done;
    float *z = logits ? logits : nn_malloc(V * sizeof(float), err);
    if (!z)
        goto done;
    int f = nn_tk_last_logits(cx, &target, 1, &hs, z, err);
    if (f == NN_OK && probs) {
        memcpy(probs, z, V * sizeof(float));
        nn_softmax(probs, V);
    }
    if (!logits)
        nn_free(z);
    if (f)
        goto done;
    rc = NN_OK;
done:
    nn_hookset_free(&hs);
    nn_free(values);
    nn_free(grabs);
    nn_free(writes);
    return rc;
}

/* ---- Skipping layers --------------------------------------------------------------------------
 */

struct nn_skip {
    int n;
    size_t d;
    struct skip_entry {
        struct nn_skip *owner;
        const float *value; /* supplied rows, or NULL: the layer's own input */
        float *saved;
        size_t saved_cap;
    } * e;
};

static int skip_save(const nn_hook_view *v, void *user, nn_err *err)
{
    struct skip_entry *e = user;
    size_t n = v->rows * v->cols;
    if (nn_grow_floats(&e->saved, &e->saved_cap, n, err))
        return NN_ERR;
    memcpy(e->saved, v->data, n * sizeof(float));
    return NN_HOOK_CONTINUE;
}

static int skip_restore(const nn_hook_view *v, void *user, nn_err *err)
{
    struct skip_entry *e = user;
    memcpy(v->data, e->value ? e->value : e->saved, v->rows * v->cols * sizeof(float));
    return NN_HOOK_CONTINUE;
}

int nn_skip_add(nn_hookset *hs, const nn_model *m, const int *layers, int n_layers,
                const float *const *values, nn_skip **out, nn_err *err)
{
    *out = NULL;
    nn_skip *s = nn_calloc(1, sizeof *s, err);
    if (!s)
        return NN_ERR;
    s->n = n_layers;
    s->d = (size_t)m->cfg.d_model;
    if (n_layers < 1 || !(s->e = nn_calloc((size_t)n_layers, sizeof *s->e, err))) {
        if (n_layers < 1)
            nn_fail(err, "skip: no layers given");
        nn_skip_free(s);
        return NN_ERR;
    }
    for (int i = 0; i < n_layers; i++) {
        int l = layers[i] < 0 ? layers[i] + m->cfg.n_layers : layers[i];
        if (l < 0 || l >= m->cfg.n_layers) {
            nn_fail(err, "skip: layer %d is out of range (the model has %d layers)", layers[i],
                    m->cfg.n_layers);
            nn_skip_free(s);
            return NN_ERR;
        }
        s->e[i].owner = s;
        s->e[i].value = values ? values[i] : NULL;
        if ((!values && nn_hookset_add(hs, NN_HP_LAYERS_INPUT, l, skip_save, &s->e[i], err)) ||
            nn_hookset_add(hs, NN_HP_LAYERS_OUTPUT, l, skip_restore, &s->e[i], err)) {
            nn_skip_free(s);
            return NN_ERR;
        }
    }
    *out = s;
    return NN_OK;
}

void nn_skip_free(nn_skip *s)
{
    if (!s)
        return;
    for (int i = 0; s->e && i < s->n; i++)
        nn_free(s->e[i].saved);
    nn_free(s->e);
    nn_free(s);
}

/* ---- Attention edits --------------------------------------------------------------------------
 */

/* NN_ATTN_SCALE on one query row (keys 0..pos visible): the edit's keys (e->keys, else e->key)
 * multiplied by e->value; renormalize scales the row's other entries so the row's total (the
 * implicit sink share included) is what it was, as NN_ATTN_SET does for one key. */
static void attn_scale_row(const nn_attn_edit *e, float *row, int pos, int C)
{
    int nk = e->n_keys > 0 ? e->n_keys : 1;
    const int *keys = e->n_keys > 0 ? e->keys : &e->key;
    float old = 0.0f, now = 0.0f;
    for (int k = 0; k < nk; k++) {
        int j = keys[k];
        if (j > pos || j >= C)
            continue; /* not visible from this query */
        bool seen = false;
        for (int i = 0; i < k; i++)
            seen |= keys[i] == j;
        if (seen)
            continue; /* a key listed twice is scaled once */
        old += row[j];
        row[j] *= e->value;
        now += row[j];
    }
    float rest = 1.0f - old;
    if (!e->renormalize || !(rest > 0.0f) || now == old)
        return;
    float scale = (1.0f - now) / rest;
    for (int j = 0; j <= pos && j < C; j++) {
        bool edited = false;
        for (int k = 0; k < nk && !edited; k++)
            edited = keys[k] == j;
        if (!edited)
            row[j] *= scale;
    }
}

static int attn_edit_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    const nn_attn_edit *e = user;
    const nn_batch *b = v->batch;
    int q = v->seq, n = b->offsets[q + 1] - b->offsets[q], p0 = b->pos0 ? b->pos0[q] : 0;
    int C = (int)v->cols, H = v->n_heads;
    for (int h = 0; h < H; h++) {
        if (e->head >= 0 && h != e->head)
            continue;
        for (int i = 0; i < n; i++) {
            int pos = p0 + i;
            if (e->query == -1 ? i != n - 1 : e->query != NN_ALL_POSITIONS && pos != e->query)
                continue;
            float *row = v->data + ((size_t)h * n + i) * (size_t)C;
            if (e->op == NN_ATTN_SCALE) {
                attn_scale_row(e, row, pos, C);
                continue;
            }
            if (e->key > pos || e->key >= C)
                continue; /* the key is not visible from this query */
            if (e->op == NN_ATTN_MOVE) {
                if (e->to_key > pos || e->to_key >= C)
                    continue;
                row[e->to_key] += row[e->key];
                row[e->key] = 0.0f;
                continue;
            }
            float old = row[e->key], rest = 1.0f - old;
            row[e->key] = e->value;
            if (e->renormalize && rest > 0.0f) {
                float scale = (1.0f - e->value) / rest;
                for (int j = 0; j <= pos && j < C; j++)
                    if (j != e->key)
                        row[j] *= scale;
            }
        }
    }
    return NN_HOOK_CONTINUE;
}

int nn_attn_edit_add(nn_hookset *hs, const nn_model *m, const nn_attn_edit *e, nn_err *err)
{
    if (e->layer < 0 || e->layer >= m->cfg.n_layers)
        return nn_fail(err, "attention edit: layer %d is out of range (the model has %d layers)",
                       e->layer, m->cfg.n_layers);
    if (e->head < -1 || e->head >= m->cfg.n_heads)
        return nn_fail(err, "attention edit: head %d is out of range (%d heads)", e->head,
                       m->cfg.n_heads);
    if (e->key < 0 || (e->op == NN_ATTN_MOVE && e->to_key < 0))
        return nn_fail(err, "attention edit: key positions must be >= 0");
    if (e->n_keys < 0 || (e->n_keys > 0 && (e->op != NN_ATTN_SCALE || !e->keys)))
        return nn_fail(err, "attention edit: a list of keys is for NN_ATTN_SCALE only");
    for (int k = 0; k < e->n_keys; k++)
        if (e->keys[k] < 0)
            return nn_fail(err, "attention edit: key positions must be >= 0 (keys[%d] is %d)", k,
                           e->keys[k]);
    if (e->op == NN_ATTN_SCALE && !(e->value >= 0.0f && e->value <= 3.4e38f))
        return nn_fail(err, "attention edit: scale %g must be a finite factor >= 0",
                       (double)e->value);
    if (e->op == NN_ATTN_SET && !(e->value >= 0.0f && e->value <= 1.0f))
        return nn_fail(err, "attention edit: value %g is not a probability", (double)e->value);
    return nn_hookset_add(hs, NN_HP_ATTENTION_PROBABILITIES, e->layer, attn_edit_fn, (void *)e,
                          err);
}

int nn_activation_patch(const nn_model *m, nn_prompt source, nn_prompt target,
                        const nn_patch *patches, int n_patches, float *probs, float *logits,
                        nn_err *err)
{
    nn_context *cx;
    if (nn_context_init(&cx, m, NULL, err))
        return NN_ERR;
    int rc = nn_activation_patch_ctx(cx, source, target, patches, n_patches, probs, logits, err);
    nn_context_free(cx);
    return rc;
}
