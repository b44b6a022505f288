/* nnterp patch: activation patching from the command line (engine/toolkit.h's
 * nn_activation_patch_ctx), one source prompt into one target prompt, all patches at once or a
 * sweep of (hook, layer, position) patched alone: the job operation activation_patch for one pair
 * (docs/jobs.md), with its store layout under -o.
 *
 * Its flags beyond the common ones (cli/common.c): --source TEXT, --target TEXT, --hook H[,H],
 * --layers SPEC, --positions all|P,.., --sweep, --targets W[,W], -k K, --json, -o OUT.h5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"
#include "context.h"
#include "h5file.h"
#include "hooks.h"
#include "store.h"
#include "toolkit.h"
#include "toolkit_out.h"

static const char *usage_patch =
    "usage: nnterp patch -m MODEL --source TEXT --target TEXT [--hook H[,H..]] [--layers SPEC]\n"
    "                    [--positions all|P,..] [--sweep] [--targets W[,W..]] [-k K] [--json]\n"
    "                    [-o OUT.h5]\n"
    "Activation patching: runs the source, writes its activations at the hook points (default\n"
    "layers_output; also layers_input, attentions_output, mlps_output, ...) x layers (default\n"
    "all) x positions into the target's pass, and prints the target's patched next-token\n"
    "probabilities. Positions are aligned from the end of both prompts when negative, from the\n"
    "start when not; \"all\" (the default) is the last min(source, target) positions.\n"
    "  --sweep      each (hook, layer, position) patched alone: the causal-tracing grid of the\n"
    "               first target's probability (nnterp plot OUT.h5 draws it)\n"
    "  --targets W  the words whose probabilities are reported (each word's first tokens, as\n"
    "               nnterp's get_first_tokens); default: the source's most likely next token\n"
    "  --json       one JSON object on stdout instead of the table\n"
    "  -o OUT.h5    the results as a one-pair store of the job operation activation_patch\n";

typedef struct patch_cli {
    nn_model *m;
    nn_tokenizer *tok;
    nn_context *cx;
    int32_t *src, *tgt;
    int ns, nt;
    nn_hook_point hooks[NN_HP_COUNT];
    int H;
    int *layers, L;
    int *positions, W;
    cli_targets tg; /* --targets, or the source's argmax */
    size_t V;
    float *baseline, *source, *patched, *diff; /* [T], [T], [cells * T] or [T], [cells] */
    int32_t *top_ids;
    float *top_probs;
} patch_cli;

static void patch_cli_free(patch_cli *p)
{
    nn_context_free(p->cx);
    nn_model_free(p->m);
    nn_tokenizer_free(p->tok);
    nn_free(p->src);
    nn_free(p->tgt);
    nn_free(p->layers);
    nn_free(p->positions);
    cli_targets_free(&p->tg);
    nn_free(p->baseline);
    nn_free(p->source);
    nn_free(p->patched);
    nn_free(p->diff);
    nn_free(p->top_ids);
    nn_free(p->top_probs);
}

static int parse_hooks(const char *spec, patch_cli *p, nn_err *err)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *name = strtok_r(buf, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        nn_hook_point hp;
        int layer;
        if (strchr(name, '.') || nn_hook_name_parse(name, 1, &hp, &layer, err) ||
            !nn_hook_point_per_layer(hp) || hp == NN_HP_ATTENTION_PROBABILITIES ||
            hp == NN_HP_ROUTER_PROBABILITIES)
            return nn_fail(err, "--hook: '%s' is not a per-layer hook point of d_model rows", name);
        for (int i = 0; i < p->H; i++)
            if (p->hooks[i] == hp)
                return nn_fail(err, "--hook: '%s' is listed twice", name);
        p->hooks[p->H++] = hp;
    }
    return p->H ? NN_OK : nn_fail(err, "--hook: no hook point given");
}

static int compute(const args *a, patch_cli *p, nn_err *err)
{
    bool sweep = a->sweep;
    size_t V = p->V, cells = (size_t)p->H * p->L * p->W;
    int k = a->top_k;
    float *probs = nn_malloc(V * sizeof *probs, err);
    nn_patch *patches = probs ? nn_malloc(cells * sizeof *patches, err) : NULL;
    int rc = patches ? NN_OK : NN_ERR;
    nn_prompt src = {p->src, p->ns}, tgt = {p->tgt, p->nt};
    if (!rc)
        rc = nn_next_token_probs_ctx(p->cx, &src, 1, NULL, probs, err);
    if (!rc && !a->targets_words) { /* the source's most likely token */
        int32_t id;
        float v;
        nn_top_k(probs, V, 1, &id, &v);
        char *text = cli_token_text(p->tok, id);
        rc = cli_targets_add_id(&p->tg, id, text ? text : nn_strdup("?", err), err);
    }
    size_t T = (size_t)p->tg.n;
    for (size_t t = 0; !rc && t < T; t++)
        p->source[t] = cli_target_prob(&p->tg, (int)t, probs);
    if (!rc)
        rc = nn_next_token_probs_ctx(p->cx, &tgt, 1, NULL, probs, err);
    for (size_t t = 0; !rc && t < T; t++)
        p->baseline[t] = cli_target_prob(&p->tg, (int)t, probs);
    size_t n = 0;
    for (int h = 0; h < p->H; h++)
        for (int l = 0; l < p->L; l++)
            for (int j = 0; j < p->W; j++)
                patches[n++] = (nn_patch){.point = p->hooks[h],
                                          .layer = p->layers[l],
                                          .source_position = p->positions[j],
                                          .target_position = p->positions[j]};
    if (!sweep) {
        if (!rc)
            rc = nn_activation_patch_ctx(p->cx, src, tgt, patches, (int)cells, probs, NULL, err);
        for (size_t t = 0; !rc && t < T; t++)
            p->patched[t] = cli_target_prob(&p->tg, (int)t, probs);
        if (!rc)
            nn_top_k(probs, V, k, p->top_ids, p->top_probs);
    }
    for (size_t c = 0; sweep && !rc && c < cells; c++) {
        rc = nn_activation_patch_ctx(p->cx, src, tgt, &patches[c], 1, probs, NULL, err);
        for (size_t t = 0; !rc && t < T; t++)
            p->patched[c * T + t] = cli_target_prob(&p->tg, (int)t, probs);
        if (T >= 2)
            p->diff[c] = logf(p->patched[c * T]) - logf(p->patched[c * T + 1]);
    }
    nn_free(probs);
    nn_free(patches);
    return rc;
}

static cJSON *floats(const float *v, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
    return arr;
}

static cJSON *ints(const int *v, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
    return arr;
}

static int print_json(const args *a, const patch_cli *p, nn_err *err)
{
    size_t T = (size_t)p->tg.n, cells = (size_t)p->H * p->L * p->W;
    cJSON *o = cJSON_CreateObject(), *hooks = cJSON_CreateArray(), *names = cJSON_CreateArray();
    if (!o || !hooks || !names) {
        cJSON_Delete(o), cJSON_Delete(hooks), cJSON_Delete(names);
        return nn_fail(err, "out of memory");
    }
    for (int h = 0; h < p->H; h++)
        cJSON_AddItemToArray(hooks, cJSON_CreateString(nn_hook_point_name(p->hooks[h])));
    for (int t = 0; t < p->tg.n; t++)
        cJSON_AddItemToArray(names, cJSON_CreateString(p->tg.names[t]));
    cJSON_AddStringToObject(o, "source", a->source);
    cJSON_AddStringToObject(o, "target", a->target);
    cJSON_AddItemToObject(o, "hooks", hooks);
    cJSON_AddItemToObject(o, "layers", ints(p->layers, (size_t)p->L));
    cJSON_AddItemToObject(o, "positions", ints(p->positions, (size_t)p->W));
    cJSON_AddBoolToObject(o, "sweep", a->sweep);
    cJSON_AddItemToObject(o, "targets", names);
    cJSON_AddItemToObject(o, "baseline_probs", floats(p->baseline, T));
    cJSON_AddItemToObject(o, "source_probs", floats(p->source, T));
    /* the sweep's grid flattened [hooks][layers][positions][targets], as in the store */
    cJSON_AddItemToObject(o, "patched_probs", floats(p->patched, a->sweep ? cells * T : T));
    if (a->sweep && T >= 2)
        cJSON_AddItemToObject(o, "logit_diff", floats(p->diff, cells));
    if (!a->sweep) {
        cJSON *top = cJSON_CreateArray();
        for (int i = 0; top && i < a->top_k; i++) {
            cJSON *e = cJSON_CreateObject();
            char *text = cli_token_text(p->tok, p->top_ids[i]);
            cJSON_AddNumberToObject(e, "id", p->top_ids[i]);
            cJSON_AddStringToObject(e, "token", text ? text : "");
            cJSON_AddNumberToObject(e, "prob", p->top_probs[i]);
            cJSON_AddItemToArray(top, e);
            nn_free(text);
        }
        cJSON_AddItemToObject(o, "top", top);
    }
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json)
        return nn_fail(err, "out of memory");
    puts(json);
    cJSON_free(json);
    return NN_OK;
}

static void print_table(const args *a, const patch_cli *p)
{
    printf("activation patching: %d hook(s) x %d layer(s) x %d position(s)%s\n", p->H, p->L, p->W,
           a->sweep ? ", each alone" : ", all at once");
    for (int t = 0; t < p->tg.n; t++)
        printf("  target '%s': unpatched %.4f, source %.4f\n", p->tg.names[t], p->baseline[t],
               p->source[t]);
    if (!a->sweep) {
        for (int t = 0; t < p->tg.n; t++)
            printf("  target '%s': patched %.4f\n", p->tg.names[t], p->patched[t]);
        printf("  patched top %d:", a->top_k);
        for (int i = 0; i < a->top_k; i++) {
            printf(" ");
            cli_print_token(stdout, p->tok, p->top_ids[i], 0);
            printf(" %.3f", p->top_probs[i]);
        }
        printf("\n");
        return;
    }
    for (int h = 0; h < p->H; h++) {
        printf("%s: p('%s') with one (layer, position) patched\n  layer  ",
               nn_hook_point_name(p->hooks[h]), p->tg.names[0]);
        for (int j = 0; j < p->W; j++)
            printf(" %7d", p->positions[j]);
        printf("\n");
        for (int l = 0; l < p->L; l++) {
            printf("  %5d  ", p->layers[l]);
            for (int j = 0; j < p->W; j++)
                printf(" %7.4f", p->patched[(((size_t)h * p->L + l) * p->W + j) * p->tg.n]);
            printf("\n");
        }
    }
}

static int write_store(const args *a, const patch_cli *p, nn_err *err)
{
    size_t T = (size_t)p->tg.n;
    uint64_t one_t[2] = {1, T}, grid[5] = {1, (uint64_t)p->H, (uint64_t)p->L, (uint64_t)p->W, T};
    uint64_t nl = (uint64_t)p->L, nw = (uint64_t)p->W, ns = (uint64_t)p->ns, nt = (uint64_t)p->nt,
             topk[2] = {1, (uint64_t)a->top_k};
    char hooks[512] = "";
    size_t n = 0;
    for (int h = 0; h < p->H; h++)
        n += (size_t)snprintf(hooks + n, sizeof hooks - n, "%s%s", h ? "," : "",
                              nn_hook_point_name(p->hooks[h]));
    nn_h5file *f = NULL;
    const char *g = "/activation_patch";
    int rc =
        nn_h5_create(a->output, &f, err) ||
                nn_h5_write(f, "/activation_patch/baseline_probs", NN_H5_F32, 2, one_t, p->baseline,
                            err) ||
                nn_h5_write(f, "/activation_patch/source_probs", NN_H5_F32, 2, one_t, p->source,
                            err) ||
                nn_h5_write(f, "/activation_patch/patched_probs", NN_H5_F32, a->sweep ? 5 : 2,
                            a->sweep ? grid : one_t, p->patched, err) ||
                (a->sweep && T >= 2 &&
                 nn_h5_write(f, "/activation_patch/logit_diff", NN_H5_F32, 4, grid, p->diff,
                             err)) ||
                (!a->sweep && (nn_h5_write(f, "/activation_patch/top_ids", NN_H5_I32, 2, topk,
                                           p->top_ids, err) ||
                               nn_h5_write(f, "/activation_patch/top_probs", NN_H5_F32, 2, topk,
                                           p->top_probs, err))) ||
                nn_h5_write(f, "/activation_patch/layers", NN_H5_I32, 1, &nl, p->layers, err) ||
                nn_h5_write(f, "/activation_patch/positions", NN_H5_I32, 1, &nw, p->positions,
                            err) ||
                nn_h5_write(f, "/activation_patch/source_ids", NN_H5_I32, 1, &ns, p->src, err) ||
                nn_h5_write(f, NN_DS_TOKEN_IDS, NN_H5_I32, 1, &nt, p->tgt, err) ||
                nn_h5_attr_string(f, "/", NN_ATTR_FORMAT, nn_file_formats[NN_FILE_PATCH].name,
                                  err) ||
                nn_h5_attr_i64(f, "/", NN_ATTR_FORMAT_VERSION,
                               nn_file_formats[NN_FILE_PATCH].version, err) ||
                nn_h5_attr_string(f, "/", NN_ATTR_MODEL, p->m->source, err) ||
                nn_h5_attr_string(f, "/", NN_ATTR_COMPUTE, nn_compute_name(p->m->compute), err) ||
                nn_h5_attr_string(f, g, "hooks", hooks, err) ||
                nn_h5_attr_string(f, g, "sweep", a->sweep ? "true" : "false", err) ||
                nn_h5_attr_string(f, g, "source", a->source, err) ||
                nn_h5_attr_string(f, "/", NN_ATTR_PROMPT, a->target, err)
            ? NN_ERR
            : NN_OK;
    cJSON *names = cJSON_CreateArray(); /* as a job's store: a JSON list */
    for (int t = 0; names && t < p->tg.n; t++)
        cJSON_AddItemToArray(names, cJSON_CreateString(p->tg.names[t]));
    char *names_json = names ? cJSON_PrintUnformatted(names) : NULL;
    if (!rc)
        rc = names_json ? nn_h5_attr_string(f, "/", NN_ATTR_TARGET_NAMES, names_json, err)
                        : nn_fail(err, "out of memory");
    cJSON_free(names_json);
    cJSON_Delete(names);
    if (!rc) {
        nn_h5file *done = f;
        f = NULL;
        rc = nn_h5_commit(done, err);
    }
    nn_h5_free(f);
    return rc;
}

int cmd_patch(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_patch, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.source || !a.target)
        return cli_usage_error(usage_patch, "%s", "--source TEXT and --target TEXT are required");
    nn_err err = {{0}};
    patch_cli p = {0};
    rc = EXIT_FAILURE;
    if (cli_load_model(&a, &p.m, &err) ||
        cli_open_tokenizer(&a, p.m->source, p.m->cfg.vocab_size, true, &p.tok, &err) ||
        nn_context_init(&p.cx, p.m, NULL, &err) ||
        cli_text_ids(&a, p.tok, a.source, &p.src, &p.ns, &err) ||
        cli_text_ids(&a, p.tok, a.target, &p.tgt, &p.nt, &err) ||
        parse_hooks(a.hook ? a.hook : "layers_output", &p, &err) ||
        nn_layers_parse(a.layers ? a.layers : "all", p.m->cfg.n_layers, &p.layers, &p.L, &err) ||
        cli_targets_parse(a.targets_words, p.tok, &p.tg, &err))
        goto fail;
    if (p.ns < 1 || p.nt < 1) {
        nn_fail(&err, "the %s prompt encodes to no tokens", p.ns < 1 ? "source" : "target");
        goto fail;
    }
    if (a.positions && strcmp(a.positions, "all")) {
        if (cli_parse_int_list(a.positions, -1000000000, &p.positions, &p.W, &err))
            goto fail;
        for (int j = 0; j < p.W; j++)
            if (nn_position_resolve(p.positions[j], p.ns) < 0 ||
                nn_position_resolve(p.positions[j], p.nt) < 0) {
                nn_fail(&err,
                        "--positions: %d is outside the source (%d tokens) or the target "
                        "(%d tokens)",
                        p.positions[j], p.ns, p.nt);
                goto fail;
            }
    } else { /* the last min(source, target) positions, aligned at the end */
        p.W = p.ns < p.nt ? p.ns : p.nt;
        if (!(p.positions = nn_malloc((size_t)p.W * sizeof *p.positions, &err)))
            goto fail;
        for (int j = 0; j < p.W; j++)
            p.positions[j] = j - p.W;
    }
    p.V = (size_t)p.m->cfg.vocab_size;
    if ((size_t)a.top_k > p.V) {
        nn_fail(&err, "-k %d exceeds the vocabulary (%zu)", a.top_k, p.V);
        goto fail;
    }
    /* one target, the source's argmax (compute adds it), without --targets */
    size_t cells = (size_t)p.H * p.L * p.W, T = a.targets_words ? (size_t)p.tg.n : 1;
    if (!(p.baseline = nn_malloc(T * sizeof(float), &err)) ||
        !(p.source = nn_malloc(T * sizeof(float), &err)) ||
        !(p.patched = nn_malloc(cells * T * sizeof(float), &err)) ||
        !(p.diff = nn_malloc(cells * sizeof(float), &err)) ||
        !(p.top_ids = nn_malloc((size_t)a.top_k * sizeof *p.top_ids, &err)) ||
        !(p.top_probs = nn_malloc((size_t)a.top_k * sizeof(float), &err)) || compute(&a, &p, &err))
        goto fail;
    /* The file first: after an error nothing is printed on stdout. */
    if ((a.output && write_store(&a, &p, &err)) || (a.json && print_json(&a, &p, &err)))
        goto fail;
    if (!a.json)
        print_table(&a, &p);
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    patch_cli_free(&p);
    return rc;
}
