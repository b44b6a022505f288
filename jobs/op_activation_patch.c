/* The job operation "activation_patch" (docs/jobs.md): each dataset prompt is a target; its source
 * is the op's fixed "source" text or the dataset line's paired field ("source_field"). The
 * source's activations at the chosen hooks x layers x positions are written into the target's
 * pass: all at once (the patched next-token top-k and target probabilities), or with "sweep" one
 * (hook, layer, position) at a time (the causal-tracing grid [hooks, layers, positions]).
 * Positions are counted from the end of both prompts when negative ("all": the last
 * min(source, target) positions, aligned at the end), from the start when not.
 *
 * Every pass runs packed on the harvest's context (many patched copies of the target in one
 * batch, rows batch-invariant, so each is nn_activation_patch's bit for bit). Under a pipeline
 * the hook that captures a source row and the one that writes it run at the same layer, so on
 * the same stage: every stage runs the same passes, the last one writes the results. */
#include "op.h"
#include "toolkit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"op",     "source",    "source_field", "hooks", "layers",
                                     "positions", "sweep", "top_k",        "targets_field", NULL};

/* Target tokens per patched pass: bounds a pass's activations and logits. */
enum { PATCH_PASS_TOKENS = 4096 };
/* Captured source rows held at once (bytes): bounds the prompts of a group. */
#define CAPTURE_BUDGET ((size_t)256 << 20)

typedef struct patch_spec {
    char *source;       /* the fixed source text, or NULL: the dataset's field */
    char *source_field; /* the dataset line's field holding the source (default "source") */
    bool sweep;
} patch_spec;

static void free_spec(nn_op *op)
{
    patch_spec *ps = op->spec;
    if (ps) {
        nn_free(ps->source);
        nn_free(ps->source_field);
    }
    nn_free(ps);
    op->spec = NULL;
}

static int parse(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err)
{
    long k;
    patch_spec *ps = nn_calloc(1, sizeof *ps, err);
    if (!ps)
        return NN_ERR;
    op->spec = ps;
    if (nn_job_only_fields(o, fields, path, where, err) ||
        nn_job_dup_string(o, "source", false, NULL, path, &ps->source, err) ||
        nn_job_dup_string(o, "source_field", false, "source", path, &ps->source_field, err) ||
        nn_json_bool(o, "sweep", false, false, path, &ps->sweep, err) ||
        nn_json_int(o, "top_k", false, 10, 1, 1000, path, &k, err) ||
        nn_job_parse_layers(o, path, where, &op->layers, err) ||
        nn_job_parse_positions(o, "all", path, where, &op->positions, err))
        return nn_job_in_op(err, where);
    op->top_k = (int)k;
    if (ps->source && nn_json_get(o, "source_field"))
        return nn_fail(err, "%s: %s: give 'source' (one text) or 'source_field', not both", path,
                       where);
    const cJSON *hooks = nn_json_get(o, "hooks"), *h;
    if (!hooks) {
        op->hooks[op->n_hooks++] = NN_HP_LAYERS_OUTPUT;
        return NN_OK;
    }
    if (!cJSON_IsArray(hooks) || cJSON_GetArraySize(hooks) < 1)
        return nn_fail(err, "%s: %s: field 'hooks' must be a non-empty list of hook point names",
                       path, where);
    cJSON_ArrayForEach (h, hooks) {
        nn_hook_point hp;
        int layer;
        if (!cJSON_IsString(h) || strchr(h->valuestring, '.') ||
            nn_hook_name_parse(h->valuestring, 1, &hp, &layer, err) ||
            !nn_hook_point_per_layer(hp) || hp == NN_HP_ATTENTION_PROBABILITIES ||
            hp == NN_HP_ROUTER_PROBABILITIES)
            return nn_fail(err,
                           "%s: %s: hooks: '%s' is not a per-layer hook point of d_model rows "
                           "(layers_output, layers_input, attentions_output, mlps_output, ...; "
                           "layers go in 'layers')",
                           path, where, cJSON_IsString(h) ? h->valuestring : "?");
        for (int i = 0; i < op->n_hooks; i++)
            if (op->hooks[i] == hp)
                return nn_fail(err, "%s: %s: hook '%s' is listed twice", path, where,
                               h->valuestring);
        op->hooks[op->n_hooks++] = hp;
    }
    return NN_OK;
}

static const char *const identity_fields[] = {"source", "source_field", "sweep", NULL};

static int identity(const nn_op *op, cJSON *obj, nn_err *err)
{
    const patch_spec *ps = op->spec;
    if (!(ps->source ? cJSON_AddStringToObject(obj, "source", ps->source)
                     : cJSON_AddNullToObject(obj, "source")) ||
        !cJSON_AddStringToObject(obj, "source_field", ps->source ? "" : ps->source_field) ||
        !cJSON_AddBoolToObject(obj, "sweep", ps->sweep))
        return nn_fail(err, "activation_patch: out of memory");
    return NN_OK;
}

/* ---- Resolved against the corpus ---- */

typedef struct patch_state {
    int32_t *src_tokens;  /* every source back to back (one when the op gives the text) */
    int64_t *src_offsets; /* [n_sources + 1] */
    int n_sources;
    int *positions; /* [W] the columns: negative from the end, else from the start */
    int W;
    int H, L; /* hooks, layers */
} patch_state;

static int source_of(const patch_state *ps, int p) { return ps->n_sources == 1 ? 0 : p; }

/* Position column j of a prompt of n tokens, or -1 outside it. */
static int column_position(const patch_state *ps, int j, int n)
{
    int pos = ps->positions[j];
    pos = pos < 0 ? n + pos : pos;
    return pos >= 0 && pos < n ? pos : -1;
}

static int resolve(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err)
{
    const nn_op *op = s->op;
    const patch_spec *spec = op->spec;
    const nn_corpus *c = h->c;
    patch_state *ps = nn_calloc(1, sizeof *ps, err);
    if (!ps)
        return NN_ERR;
    s->priv = ps;
    ps->H = op->n_hooks;
    ps->L = s->n_layers;
    for (int k = 0; k < op->n_hooks; k++)
        if (op->hooks[k] == NN_HP_LAYERS_MIDDLE && h->m->cfg.parallel)
            return nn_fail(err, "%s: layers_middle does not exist in this model's parallel blocks",
                           where);
    nn_ids all = {0};
    ps->n_sources = spec->source ? 1 : c->n_prompts;
    if (!(ps->src_offsets = nn_malloc(((size_t)ps->n_sources + 1) * sizeof *ps->src_offsets, err)))
        return NN_ERR;
    int rc;
    if (spec->source) {
        rc = nn_tokenizer_encode(h->tok, spec->source, strlen(spec->source),
                                 h->job->add_special_tokens, &all, err);
        if (!rc && all.n == 0)
            rc = nn_fail(err, "the source encodes to no tokens");
        ps->src_offsets[0] = 0;
        ps->src_offsets[1] = (int64_t)all.n;
    } else {
        /* the dataset's field of every prompt (jobs/op_fields.c) */
        rc = nn_op_read_field(h, spec->source_field, "activation_patch source", &all,
                              ps->src_offsets, err);
    }
    ps->src_tokens = all.ids;
    if (rc)
        return nn_err_prefix(err, "%s: source", where);
    for (size_t i = 0; i < all.n; i++)
        if (all.ids[i] < 0 || all.ids[i] >= h->m->cfg.vocab_size)
            return nn_fail(err, "%s: source token %d is outside the vocabulary", where,
                           all.ids[i]);
    /* The columns: "all" is the last W positions, W the longest common length of a pair. */
    if (op->positions.kind == NN_POS_LIST) {
        ps->W = op->positions.n;
        if (!(ps->positions = nn_malloc((size_t)ps->W * sizeof *ps->positions, err)))
            return NN_ERR;
        memcpy(ps->positions, op->positions.list, (size_t)ps->W * sizeof *ps->positions);
    } else {
        int W = 1;
        for (int p = 0; op->positions.kind == NN_POS_ALL && p < c->n_prompts; p++) {
            int q = source_of(ps, p);
            int ns = (int)(ps->src_offsets[q + 1] - ps->src_offsets[q]), nt = nn_op_prompt_len(c, p);
            int m = ns < nt ? ns : nt;
            W = m > W ? m : W;
        }
        ps->W = W;
        if (!(ps->positions = nn_malloc((size_t)W * sizeof *ps->positions, err)))
            return NN_ERR;
        for (int j = 0; j < W; j++)
            ps->positions[j] = j - W;
    }
    if (op->positions.kind == NN_POS_LIST)
        for (int p = 0; p < c->n_prompts; p++) {
            int q = source_of(ps, p);
            int ns = (int)(ps->src_offsets[q + 1] - ps->src_offsets[q]), nt = nn_op_prompt_len(c, p);
            for (int j = 0; j < ps->W; j++)
                if (column_position(ps, j, ns) < 0 || column_position(ps, j, nt) < 0)
                    return nn_fail(err,
                                   "%s: position %d is outside prompt %d's %s (%d tokens)", where,
                                   ps->positions[j], p,
                                   column_position(ps, j, ns) < 0 ? "source" : "target",
                                   column_position(ps, j, ns) < 0 ? ns : nt);
        }
    if (op->top_k > h->m->cfg.vocab_size)
        return nn_fail(err, "%s: top_k %d exceeds the vocabulary", where, op->top_k);
    return NN_OK;
}

static int declare_f32(const nn_sink *sink, const char *g, const char *name, int rank,
                       const uint64_t *dims, nn_err *err)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", g, name);
    return sink->declare(sink->ctx, path, NN_SINK_F32, rank, dims, err);
}

static int declare(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *g, nn_err *err)
{
    const nn_op *op = s->op;
    const patch_spec *spec = op->spec;
    const patch_state *ps = s->priv;
    uint64_t P = (uint64_t)h->c->n_prompts, T = (uint64_t)h->c->n_targets;
    char path[160], hooks[512] = "";
    size_t n = 0;
    for (int k = 0; k < op->n_hooks; k++)
        n += (size_t)snprintf(hooks + n, sizeof hooks - n, "%s%s", k ? "," : "",
                              nn_hook_point_name(op->hooks[k]));
    uint64_t pt[2] = {P, T};
    if (declare_f32(sink, g, "baseline_probs", 2, pt, err) ||
        declare_f32(sink, g, "source_probs", 2, pt, err))
        return NN_ERR;
    if (spec->sweep) {
        uint64_t grid[5] = {P, (uint64_t)ps->H, (uint64_t)ps->L, (uint64_t)ps->W, T};
        if (declare_f32(sink, g, "patched_probs", 5, grid, err) ||
            (T >= 2 && declare_f32(sink, g, "logit_diff", 4, grid, err)))
            return NN_ERR;
    } else {
        uint64_t pk[2] = {P, (uint64_t)op->top_k};
        snprintf(path, sizeof path, "%s/top_ids", g);
        if (declare_f32(sink, g, "patched_probs", 2, pt, err) ||
            sink->declare(sink->ctx, path, NN_SINK_I32, 2, pk, err) ||
            declare_f32(sink, g, "top_probs", 2, pk, err))
            return NN_ERR;
    }
    snprintf(path, sizeof path, "%s/positions", g);
    if (nn_op_declare(sink, path, NN_SINK_I32, 1, (uint64_t)ps->W, 0, 0, err) ||
        nn_op_write_all_i32(sink, path, ps->positions, ps->W, err))
        return NN_ERR;
    if (spec->source) {
        snprintf(path, sizeof path, "%s/source_ids", g);
        if (nn_op_declare(sink, path, NN_SINK_I32, 1, (uint64_t)ps->src_offsets[1], 0, 0, err) ||
            nn_op_write_all_i32(sink, path, ps->src_tokens, (int)ps->src_offsets[1], err) ||
            sink->attr(sink->ctx, g, "source", spec->source, err))
            return NN_ERR;
    } else if (sink->attr(sink->ctx, g, "source_field", spec->source_field, err)) {
        return NN_ERR;
    }
    return sink->attr(sink->ctx, g, "hooks", hooks, err) ||
                   sink->attr(sink->ctx, g, "sweep", spec->sweep ? "true" : "false", err)
               ? NN_ERR
               : NN_OK;
}

/* ---- The passes ---- */

/* A sequence of a patched pass: prompt q of the group; hook index hk, layer index l and column j
 * of the one patch (sweep), hk = -1: every patch (not sweep), hk = -2: none (the baseline). */
typedef struct patch_seq {
    int q, hk, l, j;
} patch_seq;

enum { SEQ_ALL = -1, SEQ_BASELINE = -2 };

/* The capture and write hooks of one (hook, layer). */
typedef struct patch_hook {
    const patch_state *ps;
    int hk, l;
    size_t d;
    float *rows; /* [source][H][L][W][d] of the group */
    const int *src_len, *tgt_len; /* [source], [q] of the group */
    const int *src_index;         /* [q]: its source in rows */
    const patch_seq *seqs;        /* the patched pass's sequences (NULL in the source pass) */
} patch_hook;

static float *row_at(const patch_hook *k, int src, int j)
{
    const patch_state *ps = k->ps;
    return k->rows + ((((size_t)src * ps->H + k->hk) * ps->L + k->l) * ps->W + j) * k->d;
}

static int capture_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    const patch_hook *k = user;
    if (v->cols != k->d)
        return nn_fail(err, "activation_patch: %s rows are %zu wide, not d_model %zu",
                       nn_hook_point_name(v->point), v->cols, k->d);
    for (int s = 0; s < v->batch->n_seqs; s++)
        for (int j = 0; j < k->ps->W; j++) {
            int pos = column_position(k->ps, j, k->src_len[s]);
            if (pos >= 0)
                memcpy(row_at(k, s, j), v->data + (size_t)(v->batch->offsets[s] + pos) * k->d,
                       k->d * sizeof(float));
        }
    return NN_HOOK_CONTINUE;
}

/* Writes source column j of prompt q into the sequence starting at row0, where both have it. */
static void write_column(const patch_hook *k, const nn_hook_view *v, int row0, int q, int j)
{
    int src = k->src_index[q];
    int sp = column_position(k->ps, j, k->src_len[src]);
    int tp = column_position(k->ps, j, k->tgt_len[q]);
    if (sp >= 0 && tp >= 0)
        memcpy(v->data + (size_t)(row0 + tp) * k->d, row_at(k, src, j), k->d * sizeof(float));
}

static int write_fn(const nn_hook_view *v, void *user, nn_err *err)
{
    const patch_hook *k = user;
    if (v->cols != k->d)
        return nn_fail(err, "activation_patch: %s rows are %zu wide, not d_model %zu",
                       nn_hook_point_name(v->point), v->cols, k->d);
    for (int s = 0; s < v->batch->n_seqs; s++) {
        const patch_seq *q = &k->seqs[s];
        if (q->hk == SEQ_ALL)
            for (int j = 0; j < k->ps->W; j++)
                write_column(k, v, v->batch->offsets[s], q->q, j);
        else if (q->hk == k->hk && q->l == k->l)
            write_column(k, v, v->batch->offsets[s], q->q, q->j);
    }
    return NN_HOOK_CONTINUE;
}

/* The run's scratch for one batch. */
typedef struct patch_run {
    nn_harvest *h;
    nn_op_state *o;
    const patch_state *ps;
    int p0, n; /* the group's prompts */
    size_t V, T, D;
    patch_hook *hooks;      /* [H * L] */
    float *rows;            /* captured source rows */
    int *src_len, *tgt_len, *src_index;
    int32_t *src_tok;       /* the group's sources packed */
    int *src_off;           /* [n_src + 1] */
    int n_src;
    patch_seq *seqs;        /* the group's patched sequences, in order */
    int n_seqs;
    int32_t *tok;           /* one patched chunk's tokens */
    int *off;               /* its offsets */
    float *baseline, *source, *patched, *diff; /* results [n][...] */
    int32_t *top_ids;
    float *top_probs, *probs;
} patch_run;

static int add_hooks(patch_run *r, nn_hookset *hs, nn_hook_fn fn, nn_err *err)
{
    const nn_op *op = r->o->op;
    for (int hk = 0; hk < r->ps->H; hk++)
        for (int l = 0; l < r->ps->L; l++)
            if (nn_hookset_add(hs, op->hooks[hk], r->o->layers[l], fn,
                               &r->hooks[(size_t)hk * r->ps->L + l], err))
                return NN_ERR;
    return NN_OK;
}

/* The sources' captures and their own probabilities of prompt q's targets. */
static int source_pass(patch_run *r, nn_err *err)
{
    nn_hookset hs = {0};
    int rc = nn_hookset_init(&hs, r->h->m->cfg.n_layers, err) ? NN_ERR
             : add_hooks(r, &hs, capture_fn, err);
    nn_batch b = {.tokens = r->src_tok,
                  .n_tokens = r->src_off[r->n_src],
                  .n_seqs = r->n_src,
                  .offsets = r->src_off};
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    int f = rc ? NN_ERR : nn_context_forward(r->h->cx, &b, &fp, err);
    nn_hookset_free(&hs);
    if (f == NN_ERR)
        return NN_ERR;
    if (f == NN_STOPPED)
        return nn_fail(err, "activation_patch: a hook stopped the source pass");
    const float *z = nn_state_logits(nn_context_last_state(r->h->cx));
    for (int q = 0; q < r->n; q++) {
        memcpy(r->probs, z + (size_t)r->src_index[q] * r->V, r->V * sizeof(float));
        nn_softmax(r->probs, r->V);
        for (size_t t = 0; t < r->T; t++)
            r->source[(size_t)q * r->T + t] = nn_op_target_sum(r->h->c, r->p0 + q, (int)t, r->probs);
    }
    return NN_OK;
}

/* Where sequence s's results go, from its probabilities. */
static void take_result(patch_run *r, const patch_seq *q, float *probs)
{
    const patch_state *ps = r->ps;
    const nn_corpus *c = r->h->c;
    size_t T = r->T;
    int p = r->p0 + q->q;
    if (q->hk == SEQ_BASELINE) {
        for (size_t t = 0; t < T; t++)
            r->baseline[(size_t)q->q * T + t] = nn_op_target_sum(c, p, (int)t, probs);
        return;
    }
    if (q->hk == SEQ_ALL) {
        size_t k = (size_t)r->o->op->top_k;
        for (size_t t = 0; t < T; t++)
            r->patched[(size_t)q->q * T + t] = nn_op_target_sum(c, p, (int)t, probs);
        nn_top_k(probs, r->V, (int)k, r->top_ids + (size_t)q->q * k, r->top_probs + (size_t)q->q * k);
        return;
    }
    size_t cell = (((size_t)q->q * ps->H + q->hk) * ps->L + q->l) * ps->W + q->j;
    float *out = r->patched + cell * T;
    for (size_t t = 0; t < T; t++)
        out[t] = nn_op_target_sum(c, p, (int)t, probs);
    if (T >= 2)
        r->diff[cell] = logf(out[0]) - logf(out[1]);
}

/* The group's patched sequences (and baselines), in chunks of about PATCH_PASS_TOKENS tokens. */
static int patched_passes(patch_run *r, nn_err *err)
{
    const nn_corpus *c = r->h->c;
    nn_hookset hs = {0};
    if (nn_hookset_init(&hs, r->h->m->cfg.n_layers, err) || add_hooks(r, &hs, write_fn, err)) {
        nn_hookset_free(&hs);
        return NN_ERR;
    }
    int rc = NN_OK;
    for (int s0 = 0; !rc && s0 < r->n_seqs;) {
        int ns = 0, nt = 0;
        while (s0 + ns < r->n_seqs) {
            int len = r->tgt_len[r->seqs[s0 + ns].q];
            if (ns > 0 && nt + len > PATCH_PASS_TOKENS)
                break;
            const int32_t *t = c->tokens + c->offsets[r->p0 + r->seqs[s0 + ns].q];
            memcpy(r->tok + nt, t, (size_t)len * sizeof *r->tok);
            r->off[ns++] = nt;
            nt += len;
        }
        r->off[ns] = nt;
        for (size_t k = 0; k < (size_t)r->ps->H * r->ps->L; k++)
            r->hooks[k].seqs = r->seqs + s0;
        nn_batch b = {.tokens = r->tok, .n_tokens = nt, .n_seqs = ns, .offsets = r->off};
        nn_forward_params fp = {.hooks = &hs, .want_logits = true};
        int f = nn_context_forward(r->h->cx, &b, &fp, err);
        if (f == NN_ERR) {
            rc = NN_ERR;
            break;
        }
        if (f == NN_STOPPED) {
            rc = nn_fail(err, "activation_patch: a hook stopped the pass before the logits");
            break;
        }
        const float *z = nn_state_logits(nn_context_last_state(r->h->cx));
        for (int s = 0; s < ns; s++) {
            memcpy(r->probs, z + (size_t)s * r->V, r->V * sizeof(float));
            nn_softmax(r->probs, r->V);
            take_result(r, &r->seqs[s0 + s], r->probs);
        }
        s0 += ns;
    }
    nn_hookset_free(&hs);
    return rc;
}

static int write_f32(const nn_harvest *h, const char *g, const char *name, int p0, int n,
                     const float *v, nn_err *err)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", g, name);
    return h->sink->write_rows(h->sink->ctx, path, (uint64_t)p0, (uint64_t)n, v, err);
}

static int write_results(patch_run *r, const char *g, nn_err *err)
{
    const nn_harvest *h = r->h;
    if (!h->m->last_stage) /* a pipeline's last stage holds the logits' results */
        return NN_OK;
    char path[160];
    snprintf(path, sizeof path, "%s/top_ids", g);
    bool sweep = ((const patch_spec *)r->o->op->spec)->sweep;
    if (write_f32(h, g, "baseline_probs", r->p0, r->n, r->baseline, err) ||
        write_f32(h, g, "source_probs", r->p0, r->n, r->source, err) ||
        write_f32(h, g, "patched_probs", r->p0, r->n, r->patched, err))
        return NN_ERR;
    if (sweep)
        return r->T >= 2 ? write_f32(h, g, "logit_diff", r->p0, r->n, r->diff, err) : NN_OK;
    return h->sink->write_rows(h->sink->ctx, path, (uint64_t)r->p0, (uint64_t)r->n, r->top_ids,
                               err) ||
                   write_f32(h, g, "top_probs", r->p0, r->n, r->top_probs, err)
               ? NN_ERR
               : NN_OK;
}

/* Prompts [p0, p0 + n): the sources' pass, then every patched copy of the targets. */
static int run_group(patch_run *r, int p0, int n, const char *g, nn_err *err)
{
    const patch_state *ps = r->ps;
    const nn_corpus *c = r->h->c;
    bool sweep = ((const patch_spec *)r->o->op->spec)->sweep;
    r->p0 = p0;
    r->n = n;
    r->n_src = ps->n_sources == 1 ? 1 : n;
    r->src_off[0] = 0;
    for (int s = 0; s < r->n_src; s++) {
        int src = ps->n_sources == 1 ? 0 : p0 + s;
        int len = (int)(ps->src_offsets[src + 1] - ps->src_offsets[src]);
        memcpy(r->src_tok + r->src_off[s], ps->src_tokens + ps->src_offsets[src],
               (size_t)len * sizeof *r->src_tok);
        r->src_len[s] = len;
        r->src_off[s + 1] = r->src_off[s] + len;
    }
    r->n_seqs = 0;
    size_t cells = (size_t)n * ps->H * ps->L * ps->W;
    if (sweep)
        for (size_t i = 0; i < cells * r->T; i++)
            r->patched[i] = NAN; /* cells a pair does not have stay NaN */
    if (sweep && r->T >= 2)
        for (size_t i = 0; i < cells; i++)
            r->diff[i] = NAN;
    for (int q = 0; q < n; q++) {
        r->tgt_len[q] = nn_op_prompt_len(c, p0 + q);
        r->src_index[q] = ps->n_sources == 1 ? 0 : q;
        r->seqs[r->n_seqs++] = (patch_seq){q, SEQ_BASELINE, 0, 0};
        if (!sweep) {
            r->seqs[r->n_seqs++] = (patch_seq){q, SEQ_ALL, 0, 0};
            continue;
        }
        for (int hk = 0; hk < ps->H; hk++)
            for (int l = 0; l < ps->L; l++)
                for (int j = 0; j < ps->W; j++)
                    if (column_position(ps, j, r->src_len[r->src_index[q]]) >= 0 &&
                        column_position(ps, j, r->tgt_len[q]) >= 0)
                        r->seqs[r->n_seqs++] = (patch_seq){q, hk, l, j};
    }
    if (source_pass(r, err) || patched_passes(r, err))
        return nn_err_prefix(err, "prompts [%d, %d)", p0, p0 + n);
    return write_results(r, g, err);
}

static int run(nn_harvest *h, nn_op_state *o, const nn_batch *b, const char *g, nn_err *err)
{
    (void)b;
    const patch_state *ps = o->priv;
    const nn_corpus *c = h->c;
    patch_run r = {.h = h, .o = o, .ps = ps};
    r.V = (size_t)h->m->cfg.vocab_size;
    r.T = (size_t)c->n_targets;
    r.D = (size_t)h->m->cfg.d_model;
    size_t HLW = (size_t)ps->H * ps->L * ps->W, k = (size_t)o->op->top_k;
    int group = (int)(CAPTURE_BUDGET / (HLW * r.D * sizeof(float)));
    int nb = h->end - h->begin;
    group = group < 1 ? 1 : group > nb ? nb : group;
    int max_len = 1, max_src = 1;
    for (int p = h->begin; p < h->end; p++) {
        int n = nn_op_prompt_len(c, p), src = ps->n_sources == 1 ? 0 : p;
        int ns = (int)(ps->src_offsets[src + 1] - ps->src_offsets[src]);
        max_len = n > max_len ? n : max_len;
        max_src = ns > max_src ? ns : max_src;
    }
    size_t G = (size_t)group, seqs = G * (HLW + 2);
    size_t chunk_tok = (size_t)(max_len > PATCH_PASS_TOKENS ? max_len : PATCH_PASS_TOKENS);
    int rc = NN_ERR;
    if ((r.hooks = nn_calloc(HLW / ps->W, sizeof *r.hooks, err)) &&
        (r.rows = nn_calloc(G * HLW * r.D, sizeof *r.rows, err)) &&
        (r.src_len = nn_malloc(G * sizeof *r.src_len, err)) &&
        (r.tgt_len = nn_malloc(G * sizeof *r.tgt_len, err)) &&
        (r.src_index = nn_malloc(G * sizeof *r.src_index, err)) &&
        (r.src_tok = nn_malloc(G * (size_t)max_src * sizeof *r.src_tok, err)) &&
        (r.src_off = nn_malloc((G + 1) * sizeof *r.src_off, err)) &&
        (r.seqs = nn_malloc(seqs * sizeof *r.seqs, err)) &&
        (r.tok = nn_malloc(chunk_tok * sizeof *r.tok, err)) &&
        (r.off = nn_malloc((chunk_tok + 1) * sizeof *r.off, err)) &&
        (r.baseline = nn_malloc(G * r.T * sizeof(float) + 1, err)) &&
        (r.source = nn_malloc(G * r.T * sizeof(float) + 1, err)) &&
        (r.patched = nn_malloc(G * HLW * r.T * sizeof(float) + 1, err)) &&
        (r.diff = nn_malloc(G * HLW * sizeof(float) + 1, err)) &&
        (r.top_ids = nn_malloc(G * k * sizeof *r.top_ids + 1, err)) &&
        (r.top_probs = nn_malloc(G * k * sizeof(float) + 1, err)) &&
        (r.probs = nn_malloc(r.V * sizeof(float), err)))
        rc = NN_OK;
    for (int hk = 0; !rc && hk < ps->H; hk++)
        for (int l = 0; l < ps->L; l++)
            r.hooks[(size_t)hk * ps->L + l] = (patch_hook){.ps = ps,
                                                           .hk = hk,
                                                           .l = l,
                                                           .d = r.D,
                                                           .rows = r.rows,
                                                           .src_len = r.src_len,
                                                           .tgt_len = r.tgt_len,
                                                           .src_index = r.src_index};
    for (int p0 = h->begin; !rc && p0 < h->end; p0 += group)
        rc = run_group(&r, p0, h->end - p0 < group ? h->end - p0 : group, g, err);
    nn_free(r.hooks);
    nn_free(r.rows);
    nn_free(r.src_len);
    nn_free(r.tgt_len);
    nn_free(r.src_index);
    nn_free(r.src_tok);
    nn_free(r.src_off);
    nn_free(r.seqs);
    nn_free(r.tok);
    nn_free(r.off);
    nn_free(r.baseline);
    nn_free(r.source);
    nn_free(r.patched);
    nn_free(r.diff);
    nn_free(r.top_ids);
    nn_free(r.top_probs);
    nn_free(r.probs);
    return rc;
}

static void free_state(nn_op_state *s)
{
    patch_state *ps = s->priv;
    if (ps) {
        nn_free(ps->src_tokens);
        nn_free(ps->src_offsets);
        nn_free(ps->positions);
    }
    nn_free(ps);
}

const nn_op_class nn_op_activation_patch = {
    .name = "activation_patch",
    .fields = fields,
    .needs_targets = true,
    .parse = parse,
    .free_spec = free_spec,
    .resolve = resolve,
    .declare = declare,
    .run = run,
    .free = free_state,
    .identity_fields = identity_fields,
    .identity = identity,
};
