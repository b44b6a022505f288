/* The job operation "collect" (docs/jobs.md): hook point activations at the chosen layers and
 * positions, written by the shared base pass under /activations[_N]/<hook>/<layer>.
 * attention_probabilities are [rows, heads, Lmax] per layer: a row per chosen query position (as
 * for every hook), the chosen heads, and a column per key position 0 .. Lmax - 1 (Lmax the
 * longest prompt), NaN past the row's prompt, so prompt p's block is rows
 * row_offsets[p]..row_offsets[p + 1] and columns 0 .. its length - 1. */
#include "op.h"
#include "op_intervene.h"

#include <math.h>

#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op", "hooks", "layers", "positions", "heads", NULL};

/* What collect keeps beyond nn_op's fields: the attention heads collected, and for the op of
 * `nnterp trace` (nn_op_collect_trace) the layers of each hook and that file's layout. */
typedef struct collect_spec {
    int *heads; /* {-1}: all */
    int n_heads;
    /* trace: hooks[k] at its own layers hook_layers[k] (instead of the op's "layers"), attention
     * probabilities as one [heads, T, T] array per prompt, no "positions" attribute */
    bool trace;
    int *hook_layers[NN_HP_COUNT];
    int n_hook_layers[NN_HP_COUNT];
} collect_spec;

static void free_spec(nn_op *op)
{
    collect_spec *cs = op->spec;
    if (cs) {
        nn_free(cs->heads);
        for (int k = 0; k < NN_HP_COUNT; k++)
            nn_free(cs->hook_layers[k]);
    }
    nn_free(cs);
    op->spec = NULL;
}

int nn_op_collect_trace(nn_op *op, int n_hooks, const nn_hook_point *hooks, int *const *layers,
                        const int *n_layers, nn_err *err)
{
    memset(op, 0, sizeof *op);
    op->cls = &nn_op_collect;
    op->positions.kind = NN_POS_ALL;
    collect_spec *spec = nn_calloc(1, sizeof *spec, err);
    if (!spec || n_hooks > NN_HP_COUNT)
        return spec ? nn_fail(err, "trace: %d hook points (at most %d)", n_hooks, NN_HP_COUNT)
                    : NN_ERR;
    op->spec = spec;
    spec->trace = true;
    if (!(op->group = nn_strdup("collect", err)) ||
        !(spec->heads = nn_malloc(sizeof *spec->heads, err)))
        return NN_ERR;
    spec->heads[0] = -1;
    spec->n_heads = 1;
    for (int k = 0; k < n_hooks; k++) {
        op->hooks[op->n_hooks++] = hooks[k];
        if (!nn_hook_point_per_layer(hooks[k]))
            continue;
        if (!(spec->hook_layers[k] = nn_malloc((size_t)n_layers[k] * sizeof(int) + 1, err)))
            return NN_ERR;
        memcpy(spec->hook_layers[k], layers[k], (size_t)n_layers[k] * sizeof(int));
        spec->n_hook_layers[k] = n_layers[k];
    }
    return NN_OK;
}

/* The layers hook k of the op is collected at: its own (trace) or the op's. */
static void hook_layers(const nn_op_state *s, int k, const int **layers, int *n)
{
    const collect_spec *spec = s->op->spec;
    *layers = spec->trace ? spec->hook_layers[k] : s->layers;
    *n = spec->trace ? spec->n_hook_layers[k] : s->n_layers;
}

static bool collects(const nn_op *op, nn_hook_point hp)
{
    for (int k = 0; k < op->n_hooks; k++)
        if (op->hooks[k] == hp)
            return true;
    return false;
}

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    if (nn_job_only_fields(o, fields, path, where, err))
        return NN_ERR;
    collect_spec *spec = nn_calloc(1, sizeof *spec, err);
    if (!spec)
        return NN_ERR;
    op->spec = spec;
    const cJSON *hooks = nn_json_get(o, "hooks"), *h;
    if (cJSON_IsString(hooks) || !cJSON_IsArray(hooks) || cJSON_GetArraySize(hooks) < 1)
        return nn_fail(err, "%s: %s: field 'hooks' must be a non-empty list of hook point names",
                       path, where);
    cJSON_ArrayForEach (h, hooks) {
        nn_hook_point hp;
        int layer;
        if (!cJSON_IsString(h) || strchr(h->valuestring, '.') ||
            nn_hook_name_parse(h->valuestring, 1, &hp, &layer, err))
            return nn_fail(err,
                           "%s: %s: hooks: '%s' is not a hook point name (token_embeddings, "
                           "layers_input, attentions_input, attentions_output, mlps_input, "
                           "mlps_output, layers_output, router_probabilities, ln_final, logits, "
                           "next_token_probs; "
                           "layers go in 'layers')",
                           path, where, cJSON_IsString(h) ? h->valuestring : "?");
        for (int k = 0; k < op->n_hooks; k++)
            if (op->hooks[k] == hp)
                return nn_fail(err, "%s: %s: hook '%s' is listed twice", path, where,
                               h->valuestring);
        op->hooks[op->n_hooks++] = hp;
    }
    if (nn_job_parse_layers(o, path, where, &op->layers, err) ||
        nn_job_parse_positions(o, "all", path, where, &op->positions, err))
        return NN_ERR;
    if (nn_json_get(o, "heads") && !collects(op, NN_HP_ATTENTION_PROBABILITIES))
        return nn_fail(err,
                       "%s: %s: field 'heads' chooses attention heads, but the op does not "
                       "collect attention_probabilities",
                       path, where);
    return nn_iv_parse_ints(o, "heads", path, where, 0, 100000, -1, -1, &spec->heads,
                            &spec->n_heads, err);
}

/* The heads are a result-changing field of an op collecting attention_probabilities only (an
 * identity without them is that of a store made before they existed). */
static const char *const identity_fields[] = {"heads", NULL};

static int identity(const nn_op *op, cJSON *obj, nn_err *err)
{
    const collect_spec *spec = op->spec;
    if (!collects(op, NN_HP_ATTENTION_PROBABILITIES))
        return NN_OK;
    if (!cJSON_AddItemToObject(obj, "heads", nn_iv_int_array(spec->heads, spec->n_heads)))
        return nn_fail(err, "collect: out of memory");
    return NN_OK;
}

/* One hook's capture: the store path it writes. */
typedef struct collect_hook {
    nn_harvest *h;
    nn_op_state *s;
    char path[160];
} collect_hook;

typedef struct collect_state {
    collect_hook *hooks; /* [n_hooks * (n_layers + 1)] */
    /* attention_probabilities: the heads collected (model head indices), the key columns */
    int *heads;
    int n_heads, max_len;
} collect_state;

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    const nn_op *op = s->op;
    if (nn_op_resolve_rows(h, s, where, err))
        return NN_ERR;
    size_t n_captures = 1;
    for (int k = 0; k < op->n_hooks; k++) {
        nn_hook_point hp = op->hooks[k];
        const int *layers;
        int n_layers;
        hook_layers(s, k, &layers, &n_layers);
        if (nn_hook_point_per_layer(hp)) {
            n_captures += (size_t)n_layers;
            for (int i = 0; i < n_layers; i++)
                h->last_layer = layers[i] > h->last_layer ? layers[i] : h->last_layer;
        } else {
            n_captures++;
        }
        if (hp == NN_HP_ROUTER_PROBABILITIES)
            for (int i = 0; i < n_layers; i++)
                if (!h->m->cfg.n_experts)
                    return nn_fail(err,
                                   "%s: layer %d has no mixture of experts, so no "
                                   "router_probabilities",
                                   where, layers[i]);
        if (hp == NN_HP_LAYERS_MIDDLE && h->m->cfg.parallel)
            return nn_fail(err,
                           "%s: layers_middle (between attention and MLP) does not exist "
                           "in this model's parallel blocks",
                           where);
        if (hp == NN_HP_TOKEN_EMBEDDINGS)
            continue;
        if (!nn_hook_point_per_layer(hp))
            h->need_logits = true; /* ln_final, logits, next_token_probs: the whole model */
    }
    h->base_pass = true;
    collect_state *cs = nn_calloc(1, sizeof *cs, err);
    if (!cs)
        return NN_ERR;
    s->priv = cs;
    cs->hooks = nn_calloc(n_captures, sizeof *cs->hooks, err);
    if (!cs->hooks)
        return NN_ERR;
    if (collects(op, NN_HP_ATTENTION_PROBABILITIES)) {
        const collect_spec *spec = op->spec;
        int H = h->m->cfg.n_heads;
        bool all = spec->heads[0] < 0;
        cs->n_heads = all ? H : spec->n_heads;
        if (!(cs->heads = nn_malloc((size_t)cs->n_heads * sizeof *cs->heads, err)))
            return NN_ERR;
        for (int i = 0; i < cs->n_heads; i++) {
            cs->heads[i] = all ? i : spec->heads[i];
            if (cs->heads[i] >= H)
                return nn_fail(err, "%s: heads[%d] = %d is out of range (the model has %d heads)",
                               where, i, cs->heads[i], H);
        }
        for (int p = 0; p < h->c->n_prompts; p++) {
            int n = nn_op_prompt_len(h->c, p);
            cs->max_len = n > cs->max_len ? n : cs->max_len;
        }
    }
    return NN_OK;
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    const collect_spec *spec = op->spec;
    uint64_t P = (uint64_t)h->c->n_prompts, rows = (uint64_t)s->row_offsets[P];
    nn_sink_type act = nn_op_activation_type(h->job);
    char path[160];
    for (int k2 = 0; k2 < op->n_hooks; k2++) {
        nn_hook_point hp = op->hooks[k2];
        const char *name = nn_hook_point_name(hp);
        uint64_t width = (uint64_t)nn_hook_point_width(h->m, hp);
        uint64_t r = hp == NN_HP_NEXT_TOKEN_PROBS ? P : rows;
        const int *layers;
        int n_layers;
        hook_layers(s, k2, &layers, &n_layers);
        if (hp == NN_HP_ATTENTION_PROBABILITIES && spec->trace) {
            /* the trace file's layout: /<hook>/<layer>/<prompt> [heads, T, T] */
            for (int l = 0; l < n_layers; l++)
                for (uint64_t p = 0; p < P; p++) {
                    uint64_t n = (uint64_t)nn_op_prompt_len(h->c, (int)p);
                    snprintf(path, sizeof path, "%s/%s/%d/%llu", g, name, layers[l],
                             (unsigned long long)p);
                    if (nn_op_declare(sink, path, act, 3, (uint64_t)h->m->cfg.n_heads, n, n, err))
                        return NN_ERR;
                }
        } else if (hp == NN_HP_ATTENTION_PROBABILITIES) {
            const collect_state *cs = s->priv;
            for (int l = 0; l < n_layers; l++) {
                snprintf(path, sizeof path, "%s/%s/%d", g, name, layers[l]);
                if (nn_op_declare(sink, path, act, 3, r, (uint64_t)cs->n_heads,
                                  (uint64_t)cs->max_len, err))
                    return NN_ERR;
            }
            snprintf(path, sizeof path, "%s/attention_heads", g);
            if (nn_op_declare(sink, path, NN_SINK_I32, 1, (uint64_t)cs->n_heads, 0, 0, err) ||
                nn_op_write_all_i32(sink, path, cs->heads, cs->n_heads, err))
                return NN_ERR;
        } else if (nn_hook_point_per_layer(hp)) {
            for (int l = 0; l < n_layers; l++) {
                snprintf(path, sizeof path, "%s/%s/%d", g, name, layers[l]);
                if (nn_op_declare(sink, path, act, 2, r, width, 0, err))
                    return NN_ERR;
            }
        } else {
            snprintf(path, sizeof path, "%s/%s", g, name);
            if (nn_op_declare(sink, path, act, 2, r, width, 0, err))
                return NN_ERR;
        }
    }
    if (spec->trace)
        return NN_OK;
    return sink->attr(sink->ctx, g, "positions",
                      op->positions.kind == NN_POS_ALL ? "all (row = global token index)"
                      : op->positions.kind == NN_POS_LAST
                          ? "last (row = prompt; see token_index)"
                          : "list (rows per prompt; see token_index)",
                      err);
}

/* One prompt's attention probabilities (the view of sequence v->seq: [heads * n, n], the base
 * pass's whole prompt, queries against keys) into its rows [rows, heads, Lmax], NaN past the
 * prompt's end. */
static int collect_attention(const nn_hook_view *v, collect_hook *ch, nn_err *err)
{
    nn_harvest *h = ch->h;
    const nn_op_state *o = ch->s;
    const collect_state *cs = o->priv;
    const collect_spec *spec = o->op->spec;
    int p = h->begin + v->seq;
    size_t n = v->rows / (size_t)v->n_heads, Hs = (size_t)cs->n_heads, K = (size_t)cs->max_len;
    if (v->cols != n || n != (size_t)nn_op_prompt_len(h->c, p) || (!spec->trace && n > K))
        return nn_fail(err, "collect: prompt %d's attention is %zu x %zu, not its %d tokens", p, n,
                       v->cols, nn_op_prompt_len(h->c, p));
    if (spec->trace) { /* the prompt's own [heads, T, T] array, as the view holds it */
        char path[192];
        snprintf(path, sizeof path, "%s/%d", ch->path, p);
        return h->sink->write_rows(h->sink->ctx, path, 0, (uint64_t)v->n_heads, v->data, err)
                   ? NN_ERR
                   : NN_HOOK_CONTINUE;
    }
    /* in blocks of rows, so a long prompt's gather stays near 64 MB */
    int64_t r0 = o->row_offsets[p], r1 = o->row_offsets[p + 1];
    int64_t block = (int64_t)(((size_t)16 << 20) / (Hs * K));
    block = block < 1 ? 1 : block;
    for (int64_t b0 = r0; b0 < r1; b0 += block) {
        int64_t b1 = b0 + block < r1 ? b0 + block : r1;
        if (nn_grow_floats(&h->gather, &h->gather_cap, (size_t)(b1 - b0) * Hs * K + 1, err))
            return NN_ERR;
        for (int64_t r = b0; r < b1; r++) {
            size_t q = (size_t)(o->token_index ? o->token_index[r] - h->c->offsets[p] : r - r0);
            for (size_t hd = 0; hd < Hs; hd++) {
                float *dst = h->gather + ((size_t)(r - b0) * Hs + hd) * K;
                memcpy(dst, v->data + ((size_t)cs->heads[hd] * n + q) * n, n * sizeof *dst);
                for (size_t j = n; j < K; j++)
                    dst[j] = NAN;
            }
        }
        if (h->sink->write_rows(h->sink->ctx, ch->path, (uint64_t)b0, (uint64_t)(b1 - b0),
                                h->gather, err))
            return NN_ERR;
    }
    return NN_HOOK_CONTINUE;
}

static int collect_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    collect_hook *ch = user;
    nn_harvest *h = ch->h;
    const nn_op_state *o = ch->s;
    const nn_sink *s = h->sink;
    if (v->point == NN_HP_ATTENTION_PROBABILITIES)
        return collect_attention(v, ch, err);
    if (v->point == NN_HP_NEXT_TOKEN_PROBS)
        return s->write_rows(s->ctx, ch->path, (uint64_t)h->begin, v->rows, v->data, err)
                   ? NN_ERR
                   : NN_HOOK_CONTINUE;
    if (o->op->positions.kind == NN_POS_ALL)
        return s->write_rows(s->ctx, ch->path, (uint64_t)h->tok0, v->rows, v->data, err)
                   ? NN_ERR
                   : NN_HOOK_CONTINUE;
    /* gather the chosen positions' rows */
    int64_t r0 = o->row_offsets[h->begin], r1 = o->row_offsets[h->end];
    if (nn_grow_floats(&h->gather, &h->gather_cap, (size_t)(r1 - r0) * v->cols, err))
        return NN_ERR;
    for (int64_t r = r0; r < r1; r++) {
        size_t row = (size_t)(o->token_index[r] - h->tok0);
        memcpy(h->gather + (size_t)(r - r0) * v->cols, v->data + row * v->cols,
               v->cols * sizeof(float));
    }
    return s->write_rows(s->ctx, ch->path, (uint64_t)r0, (uint64_t)(r1 - r0), h->gather, err)
               ? NN_ERR
               : NN_HOOK_CONTINUE;
}

static int hooks(nn_harvest *h, nn_op_state *s, nn_hookset *hs, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    collect_state *cs = s->priv;
    int n = 0;
    for (int k = 0; k < op->n_hooks; k++) {
        nn_hook_point hp = op->hooks[k];
        bool per_layer = nn_hook_point_per_layer(hp);
        const int *layers;
        int n_layers;
        hook_layers(s, k, &layers, &n_layers);
        for (int l = 0; l < (per_layer ? n_layers : 1); l++) {
            collect_hook *c = &cs->hooks[n++];
            c->h = h;
            c->s = s;
            if (per_layer)
                snprintf(c->path, sizeof c->path, "%s/%s/%d", g, nn_hook_point_name(hp), layers[l]);
            else
                snprintf(c->path, sizeof c->path, "%s/%s", g, nn_hook_point_name(hp));
            if (nn_hookset_add(hs, hp, per_layer ? layers[l] : -1, collect_fn, c, err))
                return NN_ERR;
        }
    }
    return NN_OK;
}

static void free_state(nn_op_state *s)
{
    collect_state *cs = s->priv;
    if (cs) {
        nn_free(cs->hooks);
        nn_free(cs->heads);
    }
    nn_free(cs);
}

const nn_op_class nn_op_collect = {
    .name = "collect",
    .store_group = "activations",
    .fields = fields,
    .parse = parse,
    .free_spec = free_spec,
    .resolve = resolve,
    .declare = declare,
    .hooks = hooks,
    .free = free_state,
    .identity_fields = identity_fields,
    .identity = identity,
};
