/* nnterp skip, nnterp attn-edit, nnterp object-lens: the job operations skip_layers,
 * attention_edit and object_attn_lens (docs/jobs.md) for one prompt, over the C API of
 * engine/toolkit.h (nn_skip_add, nn_attn_edit_add with NN_ATTN_SCALE, nn_object_attn_lens_ctx).
 * Each prints next-token top-k and the probabilities of --targets words (each word's first
 * tokens, summed: nnterp's get_first_tokens, as a job's dataset targets), the same numbers as the
 * job operation's store.
 *
 * Their flags beyond the common ones (cli/common.c): --key K[,K], --scale F, --head H[,H],
 * --query Q[,Q], --renormalize (attn-edit), --num-patches N (object-lens); and the existing -p,
 * --layers, --sweep, --targets, -k, --json, --source, --target, --index. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"
#include "context.h"
#include "hooks.h"
#include "toolkit.h"
#include "toolkit_out.h"

static const char *usage_skip =
    "usage: nnterp skip -m MODEL -p TEXT --layers SPEC [--sweep] [--targets W[,W..]] [-k K]\n"
    "                   [--json]\n"
    "Skips layers (nnterp's skip_layers: each listed layer's output replaced by its input) and\n"
    "prints the next-token top-k of the unskipped (baseline) and the skipped pass: the job\n"
    "operation skip_layers for one prompt.\n"
    "  --layers SPEC  the layers to skip (all, 5, 0,3,7, -1, 0:12:2), required\n"
    "  --sweep        each listed layer skipped alone: one row per layer\n"
    "  --targets W    words whose probabilities are reported (each word's first tokens, as\n"
    "                 nnterp's get_first_tokens and a job's dataset targets)\n"
    "  -k K           top-k tokens per row (default 10)\n"
    "  --json         one JSON object on stdout instead of the table\n";

static const char *usage_attn_edit =
    "usage: nnterp attn-edit -m MODEL -p TEXT --key K[,K..] --scale F [--layers SPEC]\n"
    "                        [--head H[,H..]] [--query Q[,Q..]] [--renormalize]\n"
    "                        [--targets W[,W..]] [-k K] [--json]\n"
    "Scales chosen attention probabilities (NN_ATTN_SCALE: P[q, key] * F; 0 zeroes them) before\n"
    "they weight the values, and prints the next-token top-k of the unedited (baseline) and the\n"
    "edited pass: the job operation attention_edit for one prompt.\n"
    "  --key K,..     key positions (from 0), required\n"
    "  --scale F      the factor, finite and >= 0, required\n"
    "  --layers SPEC  the layers edited (default all)\n"
    "  --head H,..    the heads edited (default all)\n"
    "  --query Q,..   query positions (-1: the last, the default; all: every query)\n"
    "  --renormalize  rescale each edited row's other keys so it sums to 1 again\n"
    "  --targets W    words whose probabilities are reported (each word's first tokens)\n"
    "  -k K           top-k tokens per row (default 10)\n"
    "  --json         one JSON object on stdout instead of the table\n";

static const char *usage_object_lens =
    "usage: nnterp object-lens -m MODEL --source TEXT --target TEXT --index I\n"
    "                          [--num-patches N] [--layers SPEC] [--targets W[,W..]] [-k K]\n"
    "                          [--json]\n"
    "nnterp's patch_object_attn_lens: for each start layer l, the target is run with the\n"
    "attention input at position I replaced, at layers l .. l + N - 1, by the source's attention\n"
    "input at its last token; prints the patched next-token top-k per start layer: the job\n"
    "operation object_attn_lens for one source prompt.\n"
    "  --index I        the target position patched (attn_idx_patch; negative from the end),\n"
    "                   required\n"
    "  --num-patches N  layers patched per start layer (default 5)\n"
    "  --layers SPEC    the start layers (default all)\n"
    "  --targets W      words whose probabilities are reported (each word's first tokens)\n"
    "  -k K             top-k tokens per row (default 10)\n"
    "  --json           one JSON object on stdout instead of the table\n";

/* One row of results: a pass's next-token top-k and target probabilities. */
typedef struct iv_row {
    char label[64];
    int32_t *top_ids;
    float *top_probs, *target_probs;
} iv_row;

typedef struct iv_cli {
    const char *usage;
    nn_model *m;
    nn_tokenizer *tok;
    nn_context *cx;
    int32_t *ids; /* -p, or --source */
    int n;
    int32_t *target_ids; /* object-lens --target */
    int target_n;
    int *layers, L;
    cli_targets tg; /* --targets */
    int k;
    size_t V;
    float *probs; /* scratch: [rows][V] */
    iv_row *rows;
    int n_rows;
} iv_cli;

static void iv_cli_free(iv_cli *c)
{
    nn_context_free(c->cx);
    nn_model_free(c->m);
    nn_tokenizer_free(c->tok);
    nn_free(c->ids);
    nn_free(c->target_ids);
    nn_free(c->layers);
    cli_targets_free(&c->tg);
    nn_free(c->probs);
    for (int r = 0; c->rows && r < c->n_rows; r++) {
        nn_free(c->rows[r].top_ids);
        nn_free(c->rows[r].top_probs);
        nn_free(c->rows[r].target_probs);
    }
    nn_free(c->rows);
}

/* The model, its tokenizer and a context; --targets, -k and --layers (default_layers when not
 * given, NULL: required). Returns 0, or an exit code (EXIT_USAGE for a bad flag value). */
static int setup(const args *a, const char *default_layers, iv_cli *c, nn_err *err)
{
    if (cli_load_model(a, &c->m, err) ||
        cli_open_tokenizer(a, c->m->source, c->m->cfg.vocab_size, true, &c->tok, err) ||
        nn_context_init(&c->cx, c->m, NULL, err) ||
        cli_targets_parse(a->targets_words, c->tok, &c->tg, err))
        return cli_fail(err);
    c->V = (size_t)c->m->cfg.vocab_size;
    c->k = a->top_k;
    if ((size_t)c->k > c->V) {
        char msg[64];
        snprintf(msg, sizeof msg, "%d exceeds the vocabulary (%zu)", c->k, c->V);
        return cli_usage_error(c->usage, "-k %s", msg);
    }
    if (nn_layers_parse(a->layers ? a->layers : default_layers, c->m->cfg.n_layers, &c->layers,
                        &c->L, err))
        return cli_usage_error(c->usage, "--layers: %s", err->msg);
    return 0;
}

static int alloc_rows(iv_cli *c, int n, nn_err *err)
{
    if (!(c->rows = nn_calloc((size_t)n, sizeof *c->rows, err)))
        return NN_ERR;
    c->n_rows = n;
    for (int r = 0; r < n; r++)
        if (!(c->rows[r].top_ids = nn_malloc((size_t)c->k * sizeof(int32_t), err)) ||
            !(c->rows[r].top_probs = nn_malloc((size_t)c->k * sizeof(float), err)) ||
            !(c->rows[r].target_probs = nn_malloc((size_t)c->tg.n * sizeof(float) + 1, err)))
            return NN_ERR;
    return (c->probs = nn_malloc(c->V * sizeof(float), err)) ? NN_OK : NN_ERR;
}

/* Row r from next-token probabilities [V]: top-k as nn_iv_rows_fill, each target's ids summed
 * in double as nn_op_target_sum. */
static void fill_row(iv_cli *c, int r, const float *probs)
{
    nn_top_k(probs, c->V, c->k, c->rows[r].top_ids, c->rows[r].top_probs);
    for (int t = 0; t < c->tg.n; t++)
        c->rows[r].target_probs[t] = cli_target_prob(&c->tg, t, probs);
}

/* Row r: the prompt's next-token probabilities under hooks (NULL: none). */
static int pass_row(iv_cli *c, const nn_hookset *hooks, int r, nn_err *err)
{
    nn_prompt p = {c->ids, c->n};
    if (nn_next_token_probs_ctx(c->cx, &p, 1, hooks, c->probs, err))
        return NN_ERR;
    fill_row(c, r, c->probs);
    return NN_OK;
}

/* The prompt: exactly one -p TEXT (or --ids). */
static int prompt_ids(const args *a, iv_cli *c, nn_err *err)
{
    if (cli_prompt_ids(a, 0, c->tok, &c->ids, &c->n, err))
        return cli_fail(err);
    return 0;
}

static int one_prompt(const args *a, const char *usage)
{
    if (a->n_prompts != 1)
        return cli_usage_error(usage, "%s",
                               a->n_prompts ? "give one prompt (-p TEXT)"
                                            : "-p TEXT (the prompt) is required");
    return 0;
}

/* ---- Output ---------------------------------------------------------------------------------- */

/* A float32 as a JSON number that reads back to the same bits (%.9g); null when not finite. */
static cJSON *f32_json(float v)
{
    char buf[32];
    if (!isfinite(v))
        return cJSON_CreateNull();
    snprintf(buf, sizeof buf, "%.9g", (double)v);
    return cJSON_CreateRaw(buf);
}

static cJSON *row_json(const iv_cli *c, const iv_row *row)
{
    cJSON *o = cJSON_CreateObject(), *top = cJSON_CreateArray(), *tp = cJSON_CreateArray();
    for (int i = 0; top && i < c->k; i++) {
        cJSON *e = cJSON_CreateObject();
        char *text = cli_token_text(c->tok, row->top_ids[i]);
        cJSON_AddNumberToObject(e, "id", row->top_ids[i]);
        cJSON_AddStringToObject(e, "token", text ? text : "");
        cJSON_AddItemToObject(e, "prob", f32_json(row->top_probs[i]));
        cJSON_AddItemToArray(top, e);
        nn_free(text);
    }
    for (int t = 0; tp && t < c->tg.n; t++)
        cJSON_AddItemToArray(tp, f32_json(row->target_probs[t]));
    cJSON_AddItemToObject(o, "top", top);
    cJSON_AddItemToObject(o, "target_probs", tp);
    return o;
}

static cJSON *names_json(const iv_cli *c)
{
    cJSON *names = cJSON_CreateArray();
    for (int t = 0; names && t < c->tg.n; t++)
        cJSON_AddItemToArray(names, cJSON_CreateString(c->tg.names[t]));
    return names;
}

/* "all" when v is {all_value}, else the list. */
static cJSON *list_or_all(const int *v, int n, int all_value)
{
    if (n == 1 && v[0] == all_value)
        return cJSON_CreateString("all");
    return cJSON_CreateIntArray(v, n);
}

static int print_json(cJSON *o, nn_err *err)
{
    char *json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!json)
        return nn_fail(err, "out of memory");
    puts(json);
    cJSON_free(json);
    return NN_OK;
}

static void print_rows(const iv_cli *c)
{
    printf("  %-14s", "");
    for (int t = 0; t < c->tg.n; t++) {
        char head[80];
        snprintf(head, sizeof head, "p('%s')", c->tg.names[t]);
        printf(" %10s", head);
    }
    printf("  top %d\n", c->k);
    for (int r = 0; r < c->n_rows; r++) {
        printf("  %-14s", c->rows[r].label);
        for (int t = 0; t < c->tg.n; t++)
            printf(" %10.4f", c->rows[r].target_probs[t]);
        printf(" ");
        for (int i = 0; i < c->k; i++) {
            printf(" ");
            cli_print_token(stdout, c->tok, c->rows[r].top_ids[i], 0);
            printf(" %.3f", c->rows[r].top_probs[i]);
        }
        printf("\n");
    }
}

static void layer_list(char *buf, size_t cap, const int *layers, int n)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && at + 16 < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%d", i ? "," : "", layers[i]);
}

/* ---- nnterp skip ----------------------------------------------------------------------------- */

/* One row skipping layers[0..n). */
static int skipped_row(iv_cli *c, const int *layers, int n, int r, nn_err *err)
{
    nn_hookset hs;
    nn_skip *skip = NULL;
    if (nn_hookset_init(&hs, c->m->cfg.n_layers, err))
        return NN_ERR;
    int rc = nn_skip_add(&hs, c->m, layers, n, NULL, &skip, err) || pass_row(c, &hs, r, err);
    nn_skip_free(skip);
    nn_hookset_free(&hs);
    return rc ? NN_ERR : NN_OK;
}

int cmd_skip(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_skip, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if ((rc = one_prompt(&a, usage_skip)))
        return rc;
    if (!a.layers)
        return cli_usage_error(usage_skip, "%s", "--layers SPEC (the layers to skip) is required");
    nn_err err = {{0}};
    iv_cli c = {.usage = usage_skip};
    if ((rc = setup(&a, NULL, &c, &err)) || (rc = prompt_ids(&a, &c, &err)))
        goto done;
    int rows = 1 + (a.sweep ? c.L : 1);
    rc = EXIT_FAILURE;
    if (alloc_rows(&c, rows, &err) || pass_row(&c, NULL, 0, &err)) {
        cli_fail(&err);
        goto done;
    }
    snprintf(c.rows[0].label, sizeof c.rows[0].label, "baseline");
    for (int r = 1; r < rows; r++) {
        const int *layers = a.sweep ? &c.layers[r - 1] : c.layers;
        int n = a.sweep ? 1 : c.L;
        char list[48];
        layer_list(list, sizeof list, layers, n);
        snprintf(c.rows[r].label, sizeof c.rows[r].label, "skip %s", list);
        if (skipped_row(&c, layers, n, r, &err)) {
            cli_fail(&err);
            goto done;
        }
    }
    if (a.json) {
        cJSON *o = cJSON_CreateObject(), *skipped = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "prompt", a.prompt[0]);
        cJSON_AddItemToObject(o, "layers", cJSON_CreateIntArray(c.layers, c.L));
        cJSON_AddBoolToObject(o, "sweep", a.sweep);
        cJSON_AddItemToObject(o, "targets", names_json(&c));
        cJSON_AddItemToObject(o, "baseline", row_json(&c, &c.rows[0]));
        for (int r = 1; skipped && r < rows; r++) {
            cJSON *row = row_json(&c, &c.rows[r]);
            cJSON_AddItemToObject(row, "layers",
                                  a.sweep ? cJSON_CreateIntArray(&c.layers[r - 1], 1)
                                          : cJSON_CreateIntArray(c.layers, c.L));
            cJSON_AddItemToArray(skipped, row);
        }
        cJSON_AddItemToObject(o, "skipped", skipped);
        if (print_json(o, &err)) {
            cli_fail(&err);
            goto done;
        }
    } else {
        printf("skip_layers: %d layer(s)%s\n", c.L, a.sweep ? ", each alone" : ", all at once");
        print_rows(&c);
    }
    rc = 0;
done:
    iv_cli_free(&c);
    return rc;
}

/* ---- nnterp attn-edit ------------------------------------------------------------------------ */

typedef struct edit_lists {
    int *keys, *heads, *queries;
    int n_keys, n_heads, n_queries;
    float scale;
    nn_attn_edit *edits;
    int n_edits;
} edit_lists;

static void edit_lists_free(edit_lists *e)
{
    nn_free(e->keys);
    nn_free(e->heads);
    nn_free(e->queries);
    nn_free(e->edits);
}

/* "all" as {all_value}, else a list of integers >= min; a usage error naming flag. */
static int parse_list(const char *usage, const char *flag, const char *s, long min, int all_value,
                      int **out, int *n)
{
    nn_err err;
    if (!strcmp(s, "all")) {
        if (!(*out = nn_malloc(sizeof **out, &err)))
            return cli_fail(&err);
        (*out)[0] = all_value;
        *n = 1;
        return 0;
    }
    if (cli_parse_int_list(s, min, out, n, &err)) {
        char msg[sizeof err.msg + 32];
        snprintf(msg, sizeof msg, "%s: %s", flag, err.msg);
        return cli_usage_error(usage, "%s", msg);
    }
    return 0;
}

/* --key, --scale, --head, --query against the model and the prompt; the edits as the job's
 * (jobs/op_attention_edit.c): one per layer, head and query, each scaling every key. */
static int attn_edits(const args *a, iv_cli *c, edit_lists *e)
{
    const char *u = c->usage;
    double x;
    char msg[160];
    int rc;
    if (!strcmp(a->key, "all"))
        return cli_usage_error(u, "%s", "--key takes key positions (from 0), not 'all'");
    if ((rc = parse_list(u, "--key", a->key, 0, 0, &e->keys, &e->n_keys)) ||
        (rc = parse_list(u, "--head", a->head ? a->head : "all", 0, -1, &e->heads, &e->n_heads)) ||
        (rc = parse_list(u, "--query", a->query ? a->query : "-1", -1, NN_ALL_POSITIONS,
                         &e->queries, &e->n_queries)))
        return rc;
    if (cli_parse_number(a->scale, 0, FLT_MAX, &x))
        return cli_usage_error(u, "--scale takes a finite factor >= 0 (0 zeroes), not '%s'",
                               a->scale);
    e->scale = (float)x;
    for (int i = 0; i < e->n_heads; i++)
        if (e->heads[i] >= c->m->cfg.n_heads) {
            snprintf(msg, sizeof msg, "%d is out of range (the model has %d heads)", e->heads[i],
                     c->m->cfg.n_heads);
            return cli_usage_error(u, "--head %s", msg);
        }
    for (int i = 0; i < e->n_keys; i++)
        if (e->keys[i] >= c->n) {
            snprintf(msg, sizeof msg, "%d is past the prompt's %d tokens", e->keys[i], c->n);
            return cli_usage_error(u, "--key %s", msg);
        }
    for (int i = 0; i < e->n_queries; i++)
        if (e->queries[i] != NN_ALL_POSITIONS && e->queries[i] >= c->n) {
            snprintf(msg, sizeof msg, "%d is past the prompt's %d tokens", e->queries[i], c->n);
            return cli_usage_error(u, "--query %s", msg);
        }
    nn_err err;
    e->n_edits = c->L * e->n_heads * e->n_queries;
    if (!(e->edits = nn_calloc((size_t)e->n_edits, sizeof *e->edits, &err)))
        return cli_fail(&err);
    int n = 0;
    for (int l = 0; l < c->L; l++)
        for (int h = 0; h < e->n_heads; h++)
            for (int q = 0; q < e->n_queries; q++)
                e->edits[n++] = (nn_attn_edit){.layer = c->layers[l],
                                               .head = e->heads[h],
                                               .query = e->queries[q],
                                               .key = e->keys[0],
                                               .op = NN_ATTN_SCALE,
                                               .value = e->scale,
                                               .renormalize = a->renormalize,
                                               .keys = e->keys,
                                               .n_keys = e->n_keys};
    return 0;
}

static int edited_row(iv_cli *c, const edit_lists *e, int r, nn_err *err)
{
    nn_hookset hs;
    if (nn_hookset_init(&hs, c->m->cfg.n_layers, err))
        return NN_ERR;
    int rc = NN_OK;
    for (int i = 0; i < e->n_edits && !rc; i++)
        rc = nn_attn_edit_add(&hs, c->m, &e->edits[i], err);
    if (!rc)
        rc = pass_row(c, &hs, r, err);
    nn_hookset_free(&hs);
    return rc;
}

int cmd_attn_edit(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_attn_edit, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if ((rc = one_prompt(&a, usage_attn_edit)))
        return rc;
    if (!a.key || !a.scale)
        return cli_usage_error(usage_attn_edit, "%s",
                               "--key K[,K..] and --scale F are required (the key positions "
                               "and their factor)");
    nn_err err = {{0}};
    iv_cli c = {.usage = usage_attn_edit};
    edit_lists e = {0};
    if ((rc = setup(&a, "all", &c, &err)) || (rc = prompt_ids(&a, &c, &err)) ||
        (rc = attn_edits(&a, &c, &e)))
        goto done;
    rc = EXIT_FAILURE;
    if (alloc_rows(&c, 2, &err) || pass_row(&c, NULL, 0, &err) || edited_row(&c, &e, 1, &err)) {
        cli_fail(&err);
        goto done;
    }
    snprintf(c.rows[0].label, sizeof c.rows[0].label, "baseline");
    snprintf(c.rows[1].label, sizeof c.rows[1].label, "edited");
    if (a.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", a.prompt[0]);
        cJSON_AddItemToObject(o, "layers", cJSON_CreateIntArray(c.layers, c.L));
        cJSON_AddItemToObject(o, "heads", list_or_all(e.heads, e.n_heads, -1));
        cJSON_AddItemToObject(o, "queries", list_or_all(e.queries, e.n_queries, NN_ALL_POSITIONS));
        cJSON_AddItemToObject(o, "keys", cJSON_CreateIntArray(e.keys, e.n_keys));
        cJSON_AddItemToObject(o, "scale", f32_json(e.scale));
        cJSON_AddBoolToObject(o, "renormalize", a.renormalize);
        cJSON_AddItemToObject(o, "targets", names_json(&c));
        cJSON_AddItemToObject(o, "baseline", row_json(&c, &c.rows[0]));
        cJSON_AddItemToObject(o, "edited", row_json(&c, &c.rows[1]));
        if (print_json(o, &err)) {
            cli_fail(&err);
            goto done;
        }
    } else {
        printf("attention_edit: keys %s scaled by %g%s at %d layer(s), heads %s, queries %s\n",
               a.key, (double)e.scale, a.renormalize ? " (renormalized)" : "", c.L,
               a.head ? a.head : "all", a.query ? a.query : "-1");
        print_rows(&c);
    }
    rc = 0;
done:
    edit_lists_free(&e);
    iv_cli_free(&c);
    return rc;
}

/* ---- nnterp object-lens ---------------------------------------------------------------------- */

int cmd_object_lens(int argc, char **argv)
{
    args a;
    const char *u = usage_object_lens;
    int rc = cli_parse_args(argc, argv, u, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.source || !a.target)
        return cli_usage_error(u, "%s", "--source TEXT and --target TEXT are required");
    if (!a.index_given)
        return cli_usage_error(u, "%s",
                               "--index I (the target position patched, attn_idx_patch) is "
                               "required");
    if (a.n_prompts)
        return cli_usage_error(u, "%s", "object-lens takes --source and --target, not -p");
    double x = 5;
    if (a.num_patches && (cli_parse_number(a.num_patches, 1, 100000, &x) || x != (int)x))
        return cli_usage_error(u, "--num-patches takes a layer count from 1, not '%s'",
                               a.num_patches);
    nn_err err = {{0}};
    iv_cli c = {.usage = u};
    if ((rc = setup(&a, "all", &c, &err)))
        goto done;
    if (cli_text_ids(&a, c.tok, a.source, &c.ids, &c.n, &err) ||
        cli_text_ids(&a, c.tok, a.target, &c.target_ids, &c.target_n, &err)) {
        rc = cli_fail(&err);
        goto done;
    }
    if (nn_position_resolve(a.index, c.target_n) < 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "%d is outside the target prompt (%d tokens)", a.index,
                 c.target_n);
        rc = cli_usage_error(u, "--index %s", msg);
        goto done;
    }
    nn_object_attn_lens_params p = nn_object_attn_lens_default_params();
    p.layers = c.layers;
    p.n_layers = c.L;
    p.attn_idx_patch = a.index;
    p.num_patches = (int)x;
    rc = EXIT_FAILURE;
    float *probs = NULL;
    if (alloc_rows(&c, c.L, &err) ||
        !(probs = nn_malloc((size_t)c.L * c.V * sizeof *probs, &err)) ||
        nn_object_attn_lens_ctx(c.cx, (nn_prompt){c.ids, c.n},
                                (nn_prompt){c.target_ids, c.target_n}, &p, probs, &err)) {
        nn_free(probs);
        cli_fail(&err);
        goto done;
    }
    for (int l = 0; l < c.L; l++) {
        fill_row(&c, l, probs + (size_t)l * c.V);
        snprintf(c.rows[l].label, sizeof c.rows[l].label, "start %d", c.layers[l]);
    }
    nn_free(probs);
    if (a.json) {
        cJSON *o = cJSON_CreateObject(), *patched = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "source", a.source);
        cJSON_AddStringToObject(o, "target", a.target);
        cJSON_AddNumberToObject(o, "attn_idx_patch", a.index);
        cJSON_AddNumberToObject(o, "num_patches", p.num_patches);
        cJSON_AddItemToObject(o, "layers", cJSON_CreateIntArray(c.layers, c.L));
        cJSON_AddItemToObject(o, "targets", names_json(&c));
        for (int l = 0; patched && l < c.L; l++) {
            cJSON *row = row_json(&c, &c.rows[l]);
            cJSON_AddNumberToObject(row, "start_layer", c.layers[l]);
            cJSON_AddItemToArray(patched, row);
        }
        cJSON_AddItemToObject(o, "patched", patched);
        if (print_json(o, &err)) {
            cli_fail(&err);
            goto done;
        }
    } else {
        printf("object attention lens: position %d of the target patched from the source's last "
               "token, %d layer(s) from each start layer\n",
               a.index, p.num_patches);
        print_rows(&c);
    }
    rc = 0;
done:
    iv_cli_free(&c);
    return rc;
}
