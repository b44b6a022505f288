/* The toolkit: every operation is a hook set plus one or a few forward passes. */
#include "toolkit.h"

#include "context.h"
#include "toolkit_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nn_position_resolve(int position, int n)
{
    int p = position < 0 ? position + n : position;
    return p >= 0 && p < n ? p : -1;
}

/* Prompts packed back to back into one batch. */
typedef struct packed {
    int32_t *tokens;
    int *offsets;
    int n_tokens, n_seqs;
} packed;

static void packed_free(packed *p)
{
    nn_free(p->tokens);
    nn_free(p->offsets);
    memset(p, 0, sizeof *p);
}

static int pack(const nn_prompt *prompts, int n, int copies, packed *out, nn_err *err)
{
    memset(out, 0, sizeof *out);
    if (n < 1)
        return nn_fail(err, "no prompts");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (prompts[i].n < 1 || !prompts[i].ids)
            return nn_fail(err, "prompt %d is empty", i);
        total += (size_t)prompts[i].n;
    }
    total *= (size_t)copies;
    if (total > (size_t)INT32_MAX)
        return nn_fail(err, "batch of %zu tokens is too large", total);
    out->n_seqs = n * copies;
    if (!(out->tokens = nn_malloc(total * sizeof *out->tokens, err)) ||
        !(out->offsets = nn_malloc(((size_t)out->n_seqs + 1) * sizeof *out->offsets, err))) {
        packed_free(out);
        return NN_ERR;
    }
    int at = 0, s = 0;
    out->offsets[0] = 0;
    for (int c = 0; c < copies; c++)
        for (int i = 0; i < n; i++) {
            memcpy(out->tokens + at, prompts[i].ids, (size_t)prompts[i].n * sizeof(int32_t));
            at += prompts[i].n;
            out->offsets[++s] = at;
        }
    out->n_tokens = at;
    return NN_OK;
}

static nn_batch batch_of(const packed *p)
{
    return (nn_batch){
        .tokens = p->tokens, .n_tokens = p->n_tokens, .n_seqs = p->n_seqs, .offsets = p->offsets};
}

/* The row of `position` of sequence seq in this call's batch, or -1 when not in it. */
int nn_tk_row_of(const nn_batch *b, int seq, int position)
{
    int p0 = b->pos0 ? b->pos0[seq] : 0, n = b->offsets[seq + 1] - b->offsets[seq];
    return position >= p0 && position < p0 + n ? b->offsets[seq] + position - p0 : -1;
}

static int resolve_layers(const nn_model *m, const int *layers, int n, int **out, int *n_out,
                          nn_err *err)
{
    int L = m->cfg.n_layers;
    *n_out = layers ? n : L;
    if (*n_out < 1)
        return nn_fail(err, "no layers given");
    if (!(*out = nn_malloc((size_t)*n_out * sizeof **out, err)))
        return NN_ERR;
    for (int i = 0; i < *n_out; i++) {
        int l = layers ? layers[i] : i;
        if (l < 0)
            l += L;
        if (l < 0 || l >= L) {
            nn_free(*out);
            *out = NULL;
            return nn_fail(err, "layer %d is out of range (the model has %d layers)",
                           layers ? layers[i] : i, L);
        }
        (*out)[i] = l;
    }
    return NN_OK;
}

void nn_top_k(const float *probs, size_t n, int k, int32_t *ids, float *values)
{
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        float p = probs[i];
        if (have == k && !(p > values[k - 1]))
            continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && p > values[j - 1]) {
            values[j] = values[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        values[j] = p;
        ids[j] = (int32_t)i;
    }
    for (int j = have; j < k; j++) {
        values[j] = 0.0f;
        ids[j] = -1;
    }
}

/* ---- Logit lens ------------------------------------------------------------------------------ */

typedef struct lens_ctx {
    const nn_lens_result *r;
    const int *layer_index; /* [L] -> index into r->layers or -1 */
    float *rows;            /* [layer][prompt][position][d] */
    size_t d;
    const int *offsets;
} lens_ctx;

static int lens_capture(const nn_hook_view *v, void *user, nn_err *err)
{
    lens_ctx *c = user;
    const nn_lens_result *r = c->r;
    int li = c->layer_index[v->layer];
    for (int p = 0; p < r->n_prompts; p++)
        for (int j = 0; j < r->n_positions; j++) {
            size_t row = (size_t)c->offsets[p] + (size_t)r->positions[p * r->n_positions + j];
            float *dst = c->rows + (((size_t)li * r->n_prompts + p) * r->n_positions + j) * c->d;
            memcpy(dst, v->data + row * c->d, c->d * sizeof(float));
        }
    return NN_HOOK_CONTINUE;
}

void nn_lens_probs(const nn_model *m, nn_state *st, const float *rows, int n, bool inverse,
                   float *normed, float *probs)
{
    size_t V = (size_t)m->cfg.vocab_size;
    nn_unembed(m, st, rows, n, normed, probs);
    for (int i = 0; i < n; i++) {
        float *z = probs + (size_t)i * V;
        if (inverse) {
            /* head(-n) = -(W n + b) + 2b; the post-head transforms of the supported families
             * (scale, tanh soft-capping) are odd, and none has both them and a bias. */
            for (size_t v = 0; v < V; v++)
                z[v] = -z[v] + (m->head.b ? 2.0f * m->head.b[v] : 0.0f);
        }
        nn_softmax(z, V);
    }
}

void nn_lens_result_free(nn_lens_result *r)
{
    if (!r)
        return;
    nn_free(r->layers);
    nn_free(r->positions);
    nn_free(r->top_ids);
    nn_free(r->top_probs);
    nn_free(r->target_probs);
    nn_free(r->full);
    memset(r, 0, sizeof *r);
}

int nn_logit_lens_ctx(nn_context *cx, const nn_prompt *prompts, int n_prompts,
                      const nn_lens_params *lp, nn_lens_result *r, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    memset(r, 0, sizeof *r);
    const nn_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, V = (size_t)c->vocab_size;
    packed pk = {0};
    nn_hookset hs = {0};
    nn_state *st = NULL;
    int *layer_index = NULL, rc = NN_ERR;
    float *rows = NULL, *normed = NULL, *logits = NULL;
    int default_pos = -1;
    const int *positions = lp->positions ? lp->positions : &default_pos;
    r->n_prompts = n_prompts;
    r->n_positions = lp->positions ? lp->n_positions : 1;
    r->top_k = lp->top_k;
    r->n_targets = lp->n_targets;
    r->vocab = V;
    if (lp->top_k < 0 || (size_t)lp->top_k > V) {
        nn_fail(err, "top_k %d is out of range (vocabulary of %zu)", lp->top_k, V);
        goto done;
    }
    for (int t = 0; t < lp->n_targets; t++)
        if (lp->target_ids[t] < 0 || (size_t)lp->target_ids[t] >= V) {
            nn_fail(err, "target token id %d is outside the vocabulary", lp->target_ids[t]);
            goto done;
        }
    if (r->n_positions < 1) {
        nn_fail(err, "no positions given");
        goto done;
    }
    if (pack(prompts, n_prompts, 1, &pk, err) ||
        resolve_layers(m, lp->layers, lp->n_layers, &r->layers, &r->n_layers, err))
        goto done;
    if (!(r->positions = nn_malloc((size_t)n_prompts * r->n_positions * sizeof(int), err)))
        goto done;
    for (int p = 0; p < n_prompts; p++)
        for (int j = 0; j < r->n_positions; j++) {
            int q = nn_position_resolve(positions[j], prompts[p].n);
            if (q < 0) {
                nn_fail(err, "position %d is outside prompt %d (%d tokens)", positions[j], p,
                        prompts[p].n);
                goto done;
            }
            r->positions[p * r->n_positions + j] = q;
        }
    size_t n_rows = (size_t)r->n_layers * n_prompts * r->n_positions;
    if (!(layer_index = nn_malloc((size_t)c->n_layers * sizeof *layer_index, err)) ||
        !(rows = nn_malloc(n_rows * D * sizeof *rows, err)))
        goto done;
    for (int l = 0; l < c->n_layers; l++)
        layer_index[l] = -1;
    int last = 0;
    lens_ctx ctx = {
        .r = r, .layer_index = layer_index, .rows = rows, .d = D, .offsets = pk.offsets};
    if (nn_hookset_init(&hs, c->n_layers, err))
        goto done;
    for (int i = 0; i < r->n_layers; i++) {
        if (layer_index[r->layers[i]] >= 0) {
            nn_fail(err, "layer %d is listed twice", r->layers[i]);
            goto done;
        }
        layer_index[r->layers[i]] = i;
        last = r->layers[i] > last ? r->layers[i] : last;
        if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, r->layers[i], lens_capture, &ctx, err))
            goto done;
    }
    if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, last, nn_hook_stop, NULL, err))
        goto done;
    nn_state_params sp = {.max_tokens = pk.n_tokens, .max_seqs = pk.n_seqs};
    nn_batch b = batch_of(&pk);
    nn_forward_params fp = {.hooks = &hs};
    if (nn_context_state(cx, &sp, &st, err) || nn_context_run(cx, st, &b, &fp, err) == NN_ERR)
        goto done;
    /* Unembed in chunks of rows. */
    size_t k = (size_t)lp->top_k, nt = (size_t)lp->n_targets, chunk = 64;
    if ((k && (!(r->top_ids = nn_malloc(n_rows * k * sizeof(int32_t), err)) ||
               !(r->top_probs = nn_malloc(n_rows * k * sizeof(float), err)))) ||
        (nt && !(r->target_probs = nn_malloc(n_rows * nt * sizeof(float), err))) ||
        (lp->full && !(r->full = nn_malloc(n_rows * V * sizeof(float), err))) ||
        !(normed = nn_malloc(chunk * D * sizeof(float), err)) ||
        !(logits = nn_malloc(chunk * V * sizeof(float), err)))
        goto done;
    /* The lens row order: rows[layer][prompt][position]; results want [prompt][layer][position]. */
    for (size_t start = 0; start < n_rows; start += chunk) {
        size_t n = n_rows - start < chunk ? n_rows - start : chunk;
        nn_lens_probs(m, st, rows + start * D, (int)n, lp->inverse, normed, logits);
        for (size_t i = 0; i < n; i++) {
            size_t row = start + i, li = row / ((size_t)n_prompts * r->n_positions);
            size_t rest = row % ((size_t)n_prompts * r->n_positions);
            size_t p = rest / (size_t)r->n_positions, j = rest % (size_t)r->n_positions;
            size_t out = (p * (size_t)r->n_layers + li) * (size_t)r->n_positions + j;
            float *z = logits + i * V;
            if (k)
                nn_top_k(z, V, (int)k, r->top_ids + out * k, r->top_probs + out * k);
            for (size_t t = 0; t < nt; t++)
                r->target_probs[out * nt + t] = z[lp->target_ids[t]];
            if (lp->full)
                memcpy(r->full + out * V, z, V * sizeof(float));
        }
    }
    rc = NN_OK;
done:
    if (rc != NN_OK)
        nn_lens_result_free(r);
    nn_free(layer_index);
    nn_free(rows);
    nn_free(normed);
    nn_free(logits);
    nn_hookset_free(&hs);
    packed_free(&pk);
    return rc;
}

/* ---- next_token_probs -------------------------------------------------------------------------
 */

/* The last-position logits of each prompt (one packed pass): out [n_prompts][vocab]. */
int nn_tk_last_logits(nn_context *cx, const nn_prompt *prompts, int n_prompts,
                      const nn_hookset *hooks, float *out, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    packed pk;
    if (pack(prompts, n_prompts, 1, &pk, err))
        return NN_ERR;
    nn_state *st = NULL;
    nn_state_params sp = {.max_tokens = pk.n_tokens, .max_seqs = pk.n_seqs};
    nn_batch b = batch_of(&pk);
    nn_forward_params fp = {.hooks = hooks, .want_logits = true};
    int rc = NN_ERR;
    if (nn_context_state(cx, &sp, &st, err))
        goto done;
    int f = nn_context_run(cx, st, &b, &fp, err);
    if (f == NN_ERR)
        goto done;
    if (f == NN_STOPPED) {
        nn_fail(err, "a hook stopped the pass before the logits");
        goto done;
    }
    memcpy(out, nn_state_logits(st), (size_t)n_prompts * m->cfg.vocab_size * sizeof(float));
    rc = NN_OK;
done:
    packed_free(&pk);
    return rc;
}

int nn_next_token_probs_ctx(nn_context *cx, const nn_prompt *prompts, int n_prompts,
                            const nn_hookset *hooks, float *out, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    if (nn_tk_last_logits(cx, prompts, n_prompts, hooks, out, err))
        return NN_ERR;
    size_t V = (size_t)m->cfg.vocab_size;
    for (int p = 0; p < n_prompts; p++)
        nn_softmax(out + (size_t)p * V, V);
    return NN_OK;
}

/* ---- Patchscope -------------------------------------------------------------------------------
 */

char *nn_repeat_prompt(const char *const *words, int n_words, const char *rel, const char *sep,
                       const char *placeholder, nn_err *err)
{
    static const char *const defaults[] = {"king", "1135", "hello"};
    if (!words) {
        words = defaults;
        n_words = 3;
    }
    rel = rel ? rel : " ";
    sep = sep ? sep : "\n";
    placeholder = placeholder ? placeholder : "?";
    size_t len = strlen(placeholder) + 1;
    for (int i = 0; i < n_words; i++)
        len += 2 * strlen(words[i]) + strlen(rel) + strlen(sep);
    char *s = nn_malloc(len + 1, err);
    if (!s)
        return NULL;
    size_t at = 0;
    for (int i = 0; i < n_words; i++)
        at += (size_t)sprintf(s + at, "%s%s%s%s", words[i], rel, words[i], sep);
    sprintf(s + at, "%s", placeholder);
    return s;
}

nn_patchscope_params nn_patchscope_default_params(void)
{
    return (nn_patchscope_params){.index_to_patch = -1,
                                  .source_position = -1,
                                  .top_k = 10,
                                  .gen = nn_generate_default_params()};
}

void nn_patchscope_result_free(nn_patchscope_result *r)
{
    if (!r)
        return;
    nn_free(r->layers);
    nn_free(r->probs);
    nn_free(r->top_ids);
    nn_free(r->top_probs);
    nn_free(r->target_probs);
    nn_free(r->tokens);
    memset(r, 0, sizeof *r);
}

typedef struct capture_rows {
    const int *layer_index;
    float *rows; /* [layer index][d] */
    int row;
    size_t d;
} capture_rows;

static int capture_row(const nn_hook_view *v, void *user, nn_err *err)
{
    capture_rows *c = user;
    memcpy(c->rows + (size_t)c->layer_index[v->layer] * c->d, v->data + (size_t)c->row * c->d,
           c->d * sizeof(float));
    return NN_HOOK_CONTINUE;
}

/* Writes `value` into position `position` of sequence `seq` (or of every sequence when seq < 0),
 * at whatever call holds that position. */
int nn_tk_patch_row_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    nn_tk_patch_row *p = user;
    for (int s = 0; s < v->batch->n_seqs; s++) {
        if (p->seq >= 0 && s != p->seq)
            continue;
        int row = nn_tk_row_of(v->batch, s, p->position);
        if (row >= 0)
            memcpy(v->data + (size_t)row * p->d, p->value, p->d * sizeof(float));
    }
    return NN_HOOK_CONTINUE;
}

int nn_patchscope_ctx(nn_context *cx, nn_prompt source, nn_prompt target,
                      const nn_patchscope_params *pp, nn_patchscope_result *r, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    memset(r, 0, sizeof *r);
    const nn_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, V = (size_t)c->vocab_size;
    int L = c->n_layers, rc = NN_ERR;
    int *layer_index = NULL;
    float *src_rows = NULL;
    nn_tk_patch_row *patches = NULL;
    packed pk = {0};
    nn_hookset hs = {0};
    nn_state *st = NULL;
    int src_pos = nn_position_resolve(pp->source_position, source.n);
    int dst_pos = nn_position_resolve(pp->index_to_patch, target.n);
    if (source.n < 1 || target.n < 1) {
        nn_fail(err, "patchscope: the %s prompt is empty", source.n < 1 ? "source" : "target");
        goto done;
    }
    if (src_pos < 0) {
        nn_fail(err, "patchscope: source position %d is outside the source prompt (%d tokens)",
                pp->source_position, source.n);
        goto done;
    }
    if (dst_pos < 0) {
        nn_fail(err, "patchscope: index_to_patch %d is outside the target prompt (%d tokens)",
                pp->index_to_patch, target.n);
        goto done;
    }
    if (pp->top_k < 0 || (size_t)pp->top_k > V) {
        nn_fail(err, "patchscope: top_k %d is out of range", pp->top_k);
        goto done;
    }
    if (resolve_layers(m, pp->layers, pp->n_layers, &r->layers, &r->n_layers, err))
        goto done;
    int nl = r->n_layers;
    r->top_k = pp->top_k;
    r->n_targets = pp->n_targets;
    r->vocab = V;
    if (!(layer_index = nn_malloc((size_t)L * sizeof *layer_index, err)) ||
        !(src_rows = nn_malloc((size_t)nl * D * sizeof *src_rows, err)) ||
        !(patches = nn_calloc((size_t)nl, sizeof *patches, err)))
        goto done;
    for (int l = 0; l < L; l++)
        layer_index[l] = -1;
    /* 1. The source's layers_output at the source position, every requested layer, one pass. */
    capture_rows cap = {.layer_index = layer_index, .rows = src_rows, .row = src_pos, .d = D};
    int last = 0;
    if (nn_hookset_init(&hs, L, err))
        goto done;
    for (int i = 0; i < nl; i++) {
        if (layer_index[r->layers[i]] >= 0) {
            nn_fail(err, "patchscope: layer %d is listed twice", r->layers[i]);
            goto done;
        }
        layer_index[r->layers[i]] = i;
        last = r->layers[i] > last ? r->layers[i] : last;
        if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, r->layers[i], capture_row, &cap, err))
            goto done;
    }
    if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, last, nn_hook_stop, NULL, err))
        goto done;
    nn_state_params sp = {.max_tokens = source.n, .max_seqs = 1};
    int off[2] = {0, source.n};
    nn_batch sb = {.tokens = source.ids, .n_tokens = source.n, .n_seqs = 1, .offsets = off};
    nn_forward_params fp = {.hooks = &hs};
    if (nn_context_state(cx, &sp, &st, err) || nn_context_run(cx, st, &sb, &fp, err) == NN_ERR)
        goto done;
    st = NULL; /* the context keeps it */
    nn_hookset_free(&hs);
    /* 2. The target once per layer, all copies in one packed batch: copy i patched at layer i. */
    if (pack(&target, 1, nl, &pk, err) || nn_hookset_init(&hs, L, err))
        goto done;
    for (int i = 0; i < nl; i++) {
        patches[i] = (nn_tk_patch_row){
            .value = src_rows + (size_t)i * D, .seq = i, .position = dst_pos, .d = D};
        if (nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, r->layers[i], nn_tk_patch_row_hook,
                           &patches[i], err))
            goto done;
    }
    if (!(r->probs = nn_malloc((size_t)nl * V * sizeof(float), err)) ||
        (pp->top_k && (!(r->top_ids = nn_malloc((size_t)nl * pp->top_k * sizeof(int32_t), err)) ||
                       !(r->top_probs = nn_malloc((size_t)nl * pp->top_k * sizeof(float), err)))) ||
        (pp->n_targets &&
         !(r->target_probs = nn_malloc((size_t)nl * pp->n_targets * sizeof(float), err))))
        goto done;
    nn_prompt *copies = nn_malloc((size_t)nl * sizeof *copies, err);
    if (!copies)
        goto done;
    for (int i = 0; i < nl; i++)
        copies[i] = target;
    int f = nn_next_token_probs_ctx(cx, copies, nl, &hs, r->probs, err);
    nn_free(copies);
    if (f)
        goto done;
    for (int i = 0; i < nl; i++) {
        const float *p = r->probs + (size_t)i * V;
        if (pp->top_k)
            nn_top_k(p, V, pp->top_k, r->top_ids + (size_t)i * pp->top_k,
                     r->top_probs + (size_t)i * pp->top_k);
        for (int t = 0; t < pp->n_targets; t++) {
            if (pp->target_ids[t] < 0 || (size_t)pp->target_ids[t] >= V) {
                nn_fail(err, "patchscope: target token id %d is outside the vocabulary",
                        pp->target_ids[t]);
                goto done;
            }
            r->target_probs[(size_t)i * pp->n_targets + t] = p[pp->target_ids[t]];
        }
    }
    /* 3. Patchscope generate: the same patch in the prompt pass, then free generation. */
    if (pp->generate > 0) {
        r->generated = pp->generate;
        if (!(r->tokens = nn_malloc((size_t)nl * pp->generate * sizeof(int32_t), err)))
            goto done;
        for (int i = 0; i < nl; i++) {
            nn_hookset one;
            nn_tk_patch_row single = patches[i];
            single.seq = 0;
            if (nn_hookset_init(&one, L, err))
                goto done;
            nn_generate_params gp = pp->gen;
            gp.max_new_tokens = pp->generate;
            gp.hooks = &one;
            int32_t *dst = r->tokens + (size_t)i * pp->generate;
            int n_out = 0;
            int g = nn_hookset_add(&one, NN_HP_LAYERS_OUTPUT, r->layers[i], nn_tk_patch_row_hook,
                                   &single, err) ||
                    nn_generate_ctx(cx, target.ids, target.n, &gp, dst, &n_out, err);
            nn_hookset_free(&one);
            if (g)
                goto done;
            for (int k = n_out; k < pp->generate; k++)
                dst[k] = -1;
        }
    }
    rc = NN_OK;
done:
    if (rc != NN_OK)
        nn_patchscope_result_free(r);
    nn_hookset_free(&hs);
    packed_free(&pk);
    nn_free(layer_index);
    nn_free(src_rows);
    nn_free(patches);
    return rc;
}

/* ---- Steering ---------------------------------------------------------------------------------
 */

typedef struct steer_hook {
    const nn_steer *s;
    size_t d;
} steer_hook;

static bool steer_applies(const nn_steer *s, int position)
{
    if (s->n_positions > 0) {
        for (int i = 0; i < s->n_positions; i++)
            if (s->positions[i] == position)
                return true;
        return false;
    }
    return position >= s->from_position;
}

static int steer_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    const nn_steer *s = user;
    const nn_batch *b = v->batch;
    size_t d = v->cols;
    for (int q = 0; q < b->n_seqs; q++) {
        int p0 = b->pos0 ? b->pos0[q] : 0;
        for (int t = b->offsets[q]; t < b->offsets[q + 1]; t++) {
            if (!steer_applies(s, p0 + t - b->offsets[q]))
                continue;
            float *x = v->data + (size_t)t * d;
            for (size_t i = 0; i < d; i++)
                x[i] += s->factor * s->vector[i];
        }
    }
    return NN_HOOK_CONTINUE;
}

int nn_steer_add(nn_hookset *hs, const nn_model *m, const nn_steer *s, nn_err *err)
{
    if (!s->vector)
        return nn_fail(err, "steer: no vector");
    if (!isfinite(s->factor))
        return nn_fail(err, "steer: factor must be finite");
    if (s->n_layers < 1)
        return nn_fail(err, "steer: no layers given");
    for (int i = 0; i < s->n_layers; i++) {
        int l = s->layers[i] < 0 ? s->layers[i] + m->cfg.n_layers : s->layers[i];
        if (l < 0 || l >= m->cfg.n_layers)
            return nn_fail(err, "steer: layer %d is out of range (the model has %d layers)",
                           s->layers[i], m->cfg.n_layers);
        if (nn_hookset_add(hs, NN_HP_LAYERS_OUTPUT, l, steer_fn, (void *)s, err))
            return NN_ERR;
    }
    return NN_OK;
}

/* ---- .npy -------------------------------------------------------------------------------------
 */

/* Finds "'key': " in the header dict and returns what follows. */
static const char *npy_field(const char *h, size_t n, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s':", key);
    size_t k = strlen(pat);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(h + i, pat, k)) {
            const char *p = h + i + k;
            while (p < h + n && *p == ' ')
                p++;
            return p;
        }
    return NULL;
}

/* numpy itself refuses headers above 10000 bytes (read_array_header's max_header_size). */
#define NPY_MAX_HEADER 65536

int nn_npy_read_vector(const char *path, float **out, size_t *n_out, nn_err *err)
{
    *out = NULL;
    nn_mapped_file f;
    if (nn_file_map(path, &f, err))
        return NN_ERR;
    int rc = NN_ERR;
    char *hdr = NULL;
    const uint8_t *d = f.data;
    if (f.size < 10 || memcmp(d, "\x93NUMPY", 6) != 0) {
        nn_fail(err, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    int major = d[6];
    size_t hlen, start;
    if (major == 1) {
        hlen = (size_t)d[8] | ((size_t)d[9] << 8);
        start = 10;
    } else if (major == 2 || major == 3) {
        if (f.size < 12) {
            nn_fail(err, "%s: truncated header", path);
            goto done;
        }
        hlen = (size_t)d[8] | ((size_t)d[9] << 8) | ((size_t)d[10] << 16) | ((size_t)d[11] << 24);
        start = 12;
    } else {
        nn_fail(err, "%s: .npy format version %d is not supported", path, major);
        goto done;
    }
    if (hlen > f.size - start) {
        nn_fail(err, "%s: header length %zu runs past the end of the file", path, hlen);
        goto done;
    }
    if (hlen > NPY_MAX_HEADER) {
        nn_fail(err, "%s: header length %zu exceeds the limit of %d bytes", path, hlen,
                NPY_MAX_HEADER);
        goto done;
    }
    /* A NUL-terminated copy: every scan below stops inside the header, never past the file. */
    if (!(hdr = nn_malloc(hlen + 1, err)))
        goto done;
    memcpy(hdr, d + start, hlen);
    hdr[hlen] = '\0';
    const char *h = hdr;
    const char *descr = npy_field(h, hlen, "descr"), *order = npy_field(h, hlen, "fortran_order"),
               *shape = npy_field(h, hlen, "shape");
    if (!descr || !order || !shape) {
        nn_fail(err, "%s: header lacks descr, fortran_order or shape", path);
        goto done;
    }
    size_t elem;
    bool f64;
    if (!strncmp(descr, "'<f4'", 5)) {
        elem = 4;
        f64 = false;
    } else if (!strncmp(descr, "'<f8'", 5)) {
        elem = 8;
        f64 = true;
    } else {
        int len = descr[0] == '\'' ? (int)strcspn(descr + 1, "'") + 2 : 8;
        nn_fail(err,
                "%s: dtype %.*s is not supported (little-endian float32 '<f4' or float64 '<f8')",
                path, len, descr);
        goto done;
    }
    if (strncmp(order, "False", 5) != 0) {
        nn_fail(err, "%s: fortran_order must be False", path);
        goto done;
    }
    /* (d,) or (1, d) */
    long dims[2];
    int nd = 0;
    const char *p = shape;
    if (*p++ != '(') {
        nn_fail(err, "%s: malformed shape", path);
        goto done;
    }
    while (*p && *p != ')' && nd < 3) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0) {
            nn_fail(err, "%s: malformed shape", path);
            goto done;
        }
        if (nd < 2)
            dims[nd] = v;
        nd++;
        p = end;
    }
    if (!(nd == 1 || (nd == 2 && dims[0] == 1))) {
        nn_fail(err, "%s: shape must be (d,) or (1, d) for a steering vector", path);
        goto done;
    }
    size_t n = (size_t)dims[nd - 1];
    if (n == 0 || n > (f.size - start - hlen) / elem || f.size - start - hlen != n * elem) {
        nn_fail(err, "%s: %zu data bytes for %zu elements of %zu bytes (truncated?)", path,
                f.size - start - hlen, n, elem);
        goto done;
    }
    float *v = nn_malloc(n * sizeof *v, err);
    if (!v)
        goto done;
    const uint8_t *data = d + start + hlen;
    for (size_t i = 0; i < n; i++) {
        if (f64) {
            double x;
            memcpy(&x, data + 8 * i, 8);
            v[i] = fabs(x) <= FLT_MAX ? (float)x : INFINITY; /* out of float range: refused */
        } else {
            memcpy(&v[i], data + 4 * i, 4);
        }
        if (!isfinite(v[i])) {
            nn_free(v);
            nn_fail(err, "%s: element %zu is not finite", path, i);
            goto done;
        }
    }
    *out = v;
    *n_out = n;
    rc = NN_OK;
done:
    nn_free(hdr);
    nn_file_unmap(&f);
    return rc;
}

int nn_npy_write_vector(const char *path, const float *v, size_t n, nn_err *err)
{
    char header[128];
    int len = snprintf(header, sizeof header,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu,), }", n);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f)
        return nn_fail(err, "%s: cannot create", path);
    uint16_t hl = (uint16_t)(len + pad + 1);
    unsigned char pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)len, f) == (size_t)len;
    for (int i = 0; i < pad && ok; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(v, sizeof(float), n, f) == n;
    if (fclose(f) != 0 || !ok)
        return nn_fail(err, "%s: write failed", path);
    return NN_OK;
}

/* ---- Contrast vectors -------------------------------------------------------------------------
 */

typedef struct mean_ctx {
    double *sum;
    size_t count, d;
    int32_t bos;
    const int32_t *tokens;
} mean_ctx;

static int mean_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    mean_ctx *c = user;
    const nn_batch *b = v->batch;
    for (int q = 0; q < b->n_seqs; q++)
        for (int t = b->offsets[q]; t < b->offsets[q + 1]; t++) {
            if (t == b->offsets[q] && c->bos >= 0 && b->tokens[t] == c->bos)
                continue;
            const float *x = v->data + (size_t)t * c->d;
            for (size_t i = 0; i < c->d; i++)
                c->sum[i] += x[i];
            c->count++;
        }
    return NN_HOOK_STOP;
}

static int mean_activation(nn_context *cx, const nn_prompt *p, int n, int layer, int32_t bos,
                           double *sum, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    mean_ctx ctx = {.sum = sum, .d = (size_t)m->cfg.d_model, .bos = bos};
    nn_hookset hs;
    if (nn_hookset_init(&hs, m->cfg.n_layers, err))
        return NN_ERR;
    int rc = nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, layer, mean_hook, &ctx, err);
    if (rc == NN_OK) {
        packed pk;
        rc = pack(p, n, 1, &pk, err);
        if (rc == NN_OK) {
            nn_state *st = NULL;
            nn_state_params sp = {.max_tokens = pk.n_tokens, .max_seqs = pk.n_seqs};
            nn_batch b = batch_of(&pk);
            nn_forward_params fp = {.hooks = &hs};
            rc = nn_context_state(cx, &sp, &st, err) ||
                         nn_context_run(cx, st, &b, &fp, err) == NN_ERR
                     ? NN_ERR
                     : NN_OK;
            packed_free(&pk);
        }
    }
    nn_hookset_free(&hs);
    bool held = layer >= m->layer_begin && layer < m->layer_end;
    if (rc == NN_OK && ctx.count == 0 && held)
        rc = nn_fail(err, "contrast: the prompts have no tokens besides BOS");
    if (!held) /* a pipeline stage without this layer: its steering hook never fires */
        ctx.count = 1;
    if (rc == NN_OK)
        for (size_t i = 0; i < ctx.d; i++)
            sum[i] /= (double)ctx.count;
    return rc;
}

int nn_contrast_vector_ctx(nn_context *cx, const nn_prompt *a, int n_a, const nn_prompt *b, int n_b,
                           int layer, int32_t bos, float *out, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    int L = m->cfg.n_layers;
    int l = layer < 0 ? layer + L : layer;
    if (l < 0 || l >= L)
        return nn_fail(err, "contrast: layer %d is out of range (the model has %d layers)", layer,
                       L);
    size_t D = (size_t)m->cfg.d_model;
    double *ma = nn_calloc(D, sizeof *ma, err), *mb = ma ? nn_calloc(D, sizeof *mb, err) : NULL;
    int rc = NN_ERR;
    if (mb && !mean_activation(cx, a, n_a, l, bos, ma, err) &&
        !mean_activation(cx, b, n_b, l, bos, mb, err)) {
        for (size_t i = 0; i < D; i++)
            out[i] = (float)(ma[i] - mb[i]);
        rc = NN_OK;
    }
    nn_free(ma);
    nn_free(mb);
    return rc;
}

/* ---- First tokens -----------------------------------------------------------------------------
 */

static const char PEAR[] = "\xF0\x9F\x8D\x90"; /* U+1F350 */

/* The first token of text as it would follow other text: encode(pear + text) minus encode(pear).
 * -1 when text adds no token. */
static int first_token_after_pear(nn_tokenizer *tok, const char *text, int32_t *out, nn_err *err)
{
    nn_ids pear = {0}, ids = {0};
    size_t n = strlen(text);
    char *s = nn_malloc(n + sizeof PEAR, err);
    int rc = NN_ERR;
    if (!s)
        return NN_ERR;
    memcpy(s, PEAR, sizeof PEAR - 1);
    memcpy(s + sizeof PEAR - 1, text, n + 1);
    if (nn_tokenizer_encode(tok, PEAR, sizeof PEAR - 1, false, &pear, err) ||
        nn_tokenizer_encode(tok, s, strlen(s), false, &ids, err))
        goto done;
    if (ids.n < pear.n || memcmp(ids.ids, pear.ids, pear.n * sizeof(int32_t)) != 0) {
        nn_fail(err,
                "cannot isolate the first token of '%s': the tokenizer merges it with the text "
                "before it",
                text);
        goto done;
    }
    *out = ids.n > pear.n ? ids.ids[pear.n] : -1;
    rc = NN_OK;
done:
    nn_free(s);
    nn_ids_free(&pear);
    nn_ids_free(&ids);
    return rc;
}

int nn_first_tokens(nn_tokenizer *tok, const char *const *words, int n_words, nn_ids *out,
                    nn_err *err)
{
    int32_t space;
    if (first_token_after_pear(tok, " ", &space, err))
        return NN_ERR;
    for (int w = 0; w < n_words; w++) {
        if (!words[w][0])
            return nn_fail(err, "target word %d is empty", w);
        size_t n = strlen(words[w]);
        char *spaced = nn_malloc(n + 2, err);
        if (!spaced)
            return NN_ERR;
        spaced[0] = ' ';
        memcpy(spaced + 1, words[w], n + 1);
        int32_t plain, with_space;
        int rc = first_token_after_pear(tok, words[w], &plain, err) ||
                 first_token_after_pear(tok, spaced, &with_space, err);
        nn_free(spaced);
        if (rc)
            return NN_ERR;
        int32_t cand[2] = {plain, with_space != space ? with_space : -1};
        for (int k = 0; k < 2; k++) {
            if (cand[k] < 0)
                continue;
            bool seen = false;
            for (size_t i = 0; i < out->n; i++)
                seen |= out->ids[i] == cand[k];
            if (!seen && nn_ids_push(out, cand[k], err))
                return NN_ERR;
        }
    }
    return NN_OK;
}

/* ---- Without a context: a temporary one per call ----------------------------------------------
 */

int nn_logit_lens(const nn_model *m, const nn_prompt *prompts, int n_prompts,
                  const nn_lens_params *lp, nn_lens_result *r, nn_err *err)
{
    memset(r, 0, sizeof *r);
    nn_context *cx;
    if (nn_context_init(&cx, m, NULL, err))
        return NN_ERR;
    int rc = nn_logit_lens_ctx(cx, prompts, n_prompts, lp, r, err);
    nn_context_free(cx);
    return rc;
}

int nn_next_token_probs(const nn_model *m, const nn_prompt *prompts, int n_prompts,
                        const nn_hookset *hooks, float *out, nn_err *err)
{
    nn_context *cx;
    if (nn_context_init(&cx, m, NULL, err))
        return NN_ERR;
    int rc = nn_next_token_probs_ctx(cx, prompts, n_prompts, hooks, out, err);
    nn_context_free(cx);
    return rc;
}

int nn_patchscope(const nn_model *m, nn_prompt source, nn_prompt target,
                  const nn_patchscope_params *pp, nn_patchscope_result *r, nn_err *err)
{
    memset(r, 0, sizeof *r);
    nn_context *cx;
    if (nn_context_init(&cx, m, NULL, err))
        return NN_ERR;
    int rc = nn_patchscope_ctx(cx, source, target, pp, r, err);
    nn_context_free(cx);
    return rc;
}

int nn_contrast_vector(const nn_model *m, const nn_prompt *a, int n_a, const nn_prompt *b, int n_b,
                       int layer, int32_t bos, float *out, nn_err *err)
{
    nn_context *cx;
    if (nn_context_init(&cx, m, NULL, err))
        return NN_ERR;
    int rc = nn_contrast_vector_ctx(cx, a, n_a, b, n_b, layer, bos, out, err);
    nn_context_free(cx);
    return rc;
}
