/* nnterp lens, patchscope, steer, probs: the toolkit from the command line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"
#include "h5file.h"
#include "hooks.h"
#include "nn_json.h"
#include "plot.h"
#include "store.h"
#include "toolkit.h"
#include "toolkit_out.h"

static const char *usage_lens =
    "usage: nnterp lens -m MODEL (-p TEXT | --ids IDS) [-k K] [--layers SPEC] [--positions P,..]\n"
    "                   [--inverse] [--targets W[,W..]] [--json] [-o OUT.h5]\n"
    "                   [--plot FILE.png|FILE.html]\n"
    "For each layer, the model's own final norm and head applied to layers_output (the logit\n"
    "lens), at the last position unless --positions lists others (negative counts from the\n"
    "end). Prints a layer x top-k table; -o also stores ids and probabilities in HDF5.\n"
    "  --inverse   the head applied to -ln_final(h) (nnterp's inverse lens)\n"
    "  --targets   each word's probability (summed over the first tokens of \"word\" and\n"
    "              \" word\") at every layer and position\n"
    "  --json      one JSON object on stdout instead of the table: layers, positions, and per\n"
    "              [layer][position] the top ids, tokens and probabilities (float32, %.9g)\n"
    "  --plot FILE the table as a heatmap, a panel per position: a PNG, or a self-contained\n"
    "              HTML page whose cells show token, id, layer and probability on hover\n";

static const char *usage_patchscope =
    "usage: nnterp patchscope -m MODEL --source TEXT [--target TEXT --index I] [--layers SPEC]\n"
    "                         [-k K] [--generate N] [--targets W[,W..]] [--json] [-o OUT.h5]\n"
    "                         [--plot FILE.png|FILE.html]\n"
    "For each layer l, runs the target with layers_output.l at --index replaced by the source's\n"
    "last-token layers_output.l, and prints the patched next-token distribution (and N generated\n"
    "tokens with --generate). The default target is nnterp's repeat_prompt():\n"
    "\"king king\\n1135 1135\\nhello hello\\n?\", index -1. --target it-repeat: nnterp's\n"
    "it_repeat_prompt() through MODEL's chat template (or --chat-template FILE.jinja), with\n"
    "--no-user-instr, --no-system-prompt, --no-complete-prompt as its switches. --plot draws the "
    "layer x top-k table\n"
    "as a heatmap: a PNG, or a self-contained HTML page (token, id and probability on hover).\n"
    "--targets: each word's patched probability per layer; --json: one JSON object on stdout\n"
    "instead of the table (float32 printed %.9g); -o: the same numbers in HDF5 (/patchscope).\n";

static const char *usage_steer =
    "usage: nnterp steer -m MODEL -p TEXT (--vector FILE.npy | --contrast TEXT_A TEXT_B)\n"
    "                    --layers SPEC --factor F [-n N] [-k K] [--temperature T] [--seed S]\n"
    "Adds F * vector to layers_output at the given layers, at every position (the prompt's and\n"
    "the generated ones), and prints the baseline and the steered generation (-n 0: the "
    "next-token\n"
    "top-k before and after). --vector reads a float32 .npy of d_model values; --contrast uses\n"
    "mean(layers_output | TEXT_A) - mean(layers_output | TEXT_B) at each steered layer.\n";

static const char *usage_probs =
    "usage: nnterp probs -m MODEL -f PROMPTS.jsonl\n"
    "Each line: {\"prompt\": \"...\", \"targets\": {\"name\": [\"word\", ...], ...}} (or\n"
    "\"text\" for \"prompt\", as in a job dataset). For each prompt and target, the next-token\n"
    "probability summed over the first token of \"word\" and of\n"
    "\" word\" (nnterp's run_prompts). Prints one JSON object a line.\n";

/* Model, tokenizer, and one prompt's ids: what every command here starts with. */
typedef struct session {
    nn_model *m;
    nn_tokenizer *tok;
    int32_t *ids;
    int n;
} session;

static void session_free(session *s)
{
    nn_model_free(s->m);
    nn_tokenizer_free(s->tok);
    nn_free(s->ids);
    memset(s, 0, sizeof *s);
}

static int session_open(const args *a, bool need_tokenizer, bool need_prompt, session *s,
                        nn_err *err)
{
    memset(s, 0, sizeof *s);
    if (cli_load_model(a, &s->m, err) ||
        cli_open_tokenizer(a, s->m->source, s->m->cfg.vocab_size, need_tokenizer || cli_any_text(a),
                           &s->tok, err))
        return NN_ERR;
    if (need_prompt) {
        if (a->n_prompts != 1)
            return nn_fail(err, "give one prompt, with -p TEXT or --ids");
        if (cli_prompt_ids(a, 0, s->tok, &s->ids, &s->n, err))
            return NN_ERR;
        if (s->n > s->m->cfg.max_positions)
            return nn_fail(err,
                           "the prompt has %d tokens, more than the model's context of %d "
                           "positions: shorten it (a job can truncate: dataset.too_long)",
                           s->n, s->m->cfg.max_positions);
    }
    return NN_OK;
}

/* The prompt as a panel title: its text as given, else its ids decoded (or listed). */
static char *prompt_title(const args *a, const session *s, nn_err *err)
{
    if (a->prompt_is_text[0])
        return nn_strdup(a->prompt[0], err);
    char *text = NULL;
    if (s->tok && nn_tokenizer_decode(s->tok, s->ids, (size_t)s->n, true, &text, err) == NN_OK)
        return text;
    return nn_strdup(a->prompt[0], err);
}

/* --plot for the lens: a panel per position. */
static int plot_lens(const args *a, const session *s, const nn_lens_result *r, nn_err *err)
{
    cli_topk_panel *panels = nn_calloc((size_t)r->n_positions, sizeof *panels, err);
    char **subs = nn_calloc((size_t)r->n_positions, sizeof *subs, err);
    char *title = prompt_title(a, s, err);
    int rc = panels && subs && title ? NN_OK : NN_ERR;
    for (int j = 0; j < r->n_positions && rc == NN_OK; j++) {
        int pos = r->positions[j];
        char *text = cli_token_text(s->tok, s->ids[pos]), buf[24];
        char *tok = text ? nn_plot_token_text(text, err) : NULL;
        snprintf(buf, sizeof buf, "#%d", s->ids[pos]);
        size_t n = (tok ? strlen(tok) : strlen(buf)) + 64;
        if ((text && !tok) || !(subs[j] = nn_malloc(n, err)))
            rc = NN_ERR;
        else
            snprintf(subs[j], n, "position %d of %d, after %s", pos, s->n, tok ? tok : buf);
        nn_free(text);
        nn_free(tok);
        panels[j] = (cli_topk_panel){.title = title,
                                     .subtitle = subs[j],
                                     .n_rows = r->n_layers,
                                     .k = r->top_k,
                                     .layers = r->layers,
                                     .ids = r->top_ids + (size_t)j * r->top_k,
                                     .probs = r->top_probs + (size_t)j * r->top_k,
                                     .stride = (size_t)r->n_positions * r->top_k};
    }
    char heading[512], name[256];
    snprintf(heading, sizeof heading, "%s \xe2\x80\x94 %s",
             a->inverse ? "Inverse logit lens" : "Logit lens",
             cli_model_name(s->m->source, name, sizeof name));
    if (rc == NN_OK)
        rc = cli_plot_topk(a->plot, heading, s->tok, panels, r->n_positions, err);
    for (int j = 0; subs && j < r->n_positions; j++)
        nn_free(subs[j]);
    nn_free(subs);
    nn_free(panels);
    nn_free(title);
    return rc;
}

/* --json: the lens as one object, arrays nested [layer][position][rank] as in -o's datasets. */
static int print_lens_json(const args *a, const session *s, const nn_lens_result *r,
                           const cli_targets *t, const float *word_probs, nn_err *err)
{
    cJSON *o = cJSON_CreateObject(), *ids = cJSON_CreateArray(), *toks = cJSON_CreateArray(),
          *probs = cJSON_CreateArray(), *tp = t->n ? cJSON_CreateArray() : NULL;
    size_t k = (size_t)r->top_k, W = (size_t)r->n_positions, T = (size_t)t->n;
    for (int l = 0; o && l < r->n_layers; l++) {
        cJSON *li = cJSON_CreateArray(), *lt = cJSON_CreateArray(), *lp = cJSON_CreateArray(),
              *lw = tp ? cJSON_CreateArray() : NULL;
        for (size_t j = 0; j < W; j++) {
            size_t at = ((size_t)l * W + j) * k;
            cJSON_AddItemToArray(li, cli_json_i32s(r->top_ids + at, k));
            cJSON_AddItemToArray(lt, cli_json_tokens(s->tok, r->top_ids + at, k));
            cJSON_AddItemToArray(lp, cli_json_f32s(r->top_probs + at, k));
            if (lw)
                cJSON_AddItemToArray(lw, cli_json_f32s(word_probs + ((size_t)l * W + j) * T, T));
        }
        cJSON_AddItemToArray(ids, li);
        cJSON_AddItemToArray(toks, lt);
        cJSON_AddItemToArray(probs, lp);
        if (tp)
            cJSON_AddItemToArray(tp, lw);
    }
    cJSON_AddStringToObject(o, "variant", a->inverse ? "inverse" : "logit lens");
    cJSON_AddStringToObject(o, "model", s->m->source);
    if (a->prompt_is_text[0])
        cJSON_AddStringToObject(o, "prompt", a->prompt[0]);
    else
        cJSON_AddNullToObject(o, "prompt");
    cJSON_AddItemToObject(o, "ids", cli_json_i32s(s->ids, (size_t)s->n));
    cJSON_AddItemToObject(o, "layers", cli_json_ints(r->layers, (size_t)r->n_layers));
    cJSON_AddItemToObject(o, "positions", cli_json_ints(r->positions, W));
    cJSON_AddNumberToObject(o, "top_k", r->top_k);
    cJSON_AddItemToObject(o, "top_ids", ids);
    cJSON_AddItemToObject(o, "top_tokens", toks);
    cJSON_AddItemToObject(o, "top_probs", probs);
    if (tp) {
        cJSON *names = cJSON_CreateArray();
        for (int i = 0; i < t->n; i++)
            cJSON_AddItemToArray(names, cJSON_CreateString(t->names[i]));
        cJSON_AddItemToObject(o, "targets", names);
        cJSON_AddItemToObject(o, "target_probs", tp);
    }
    return cli_json_print(o, err);
}

/* --targets' names as a JSON list, an attribute of the stores. */
static int attr_target_names(nn_h5file *f, const char *group, const cli_targets *t, nn_err *err)
{
    cJSON *names = cJSON_CreateArray();
    for (int i = 0; names && i < t->n; i++)
        cJSON_AddItemToArray(names, cJSON_CreateString(t->names[i]));
    char *text = names ? cJSON_PrintUnformatted(names) : NULL;
    cJSON_Delete(names);
    int rc =
        text ? nn_h5_attr_string(f, group, "targets", text, err) : nn_fail(err, "out of memory");
    cJSON_free(text);
    return rc;
}

int cmd_lens(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_lens, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (a.plot && !nn_plot_format_known(a.plot))
        return cli_usage_error(usage_lens, "--plot '%s': the name must end in .png or .html",
                               a.plot);
    if (a.n_prompts != 1)
        return cli_usage_error(usage_lens, "%s", "give one prompt, with -p TEXT or --ids");
    nn_err err = {{0}};
    session s;
    int *layers = NULL, n_layers = 0, *positions = NULL, n_positions = 0;
    nn_lens_result r = {0};
    nn_h5file *f = NULL;
    cli_targets t = {0};
    float *word_probs = NULL;
    rc = EXIT_FAILURE;
    if (session_open(&a, a.targets_words != NULL, true, &s, &err) ||
        nn_layers_parse(a.layers ? a.layers : "all", s.m->cfg.n_layers, &layers, &n_layers, &err) ||
        (a.positions &&
         cli_parse_int_list(a.positions, -1000000000, &positions, &n_positions, &err)) ||
        cli_targets_parse(a.targets_words, s.tok, &t, &err)) {
        cli_fail(&err);
        goto done;
    }
    nn_prompt p = {s.ids, s.n};
    nn_lens_params lp = {.layers = layers,
                         .n_layers = n_layers,
                         .positions = positions,
                         .n_positions = n_positions,
                         .top_k = a.top_k,
                         .target_ids = t.flat.ids,
                         .n_targets = (int)t.flat.n,
                         .inverse = a.inverse};
    if (nn_logit_lens(s.m, &p, 1, &lp, &r, &err)) {
        cli_fail(&err);
        goto done;
    }
    size_t cells = (size_t)r.n_layers * r.n_positions, T = (size_t)t.n;
    if (T) {
        if (!(word_probs = nn_malloc(cells * T * sizeof *word_probs, &err))) {
            cli_fail(&err);
            goto done;
        }
        for (size_t c = 0; c < cells; c++)
            cli_targets_sum(&t, r.target_probs + c * t.flat.n, word_probs + c * T);
    }
    /* The file first: after an error nothing is printed on stdout. */
    if (a.output) {
        uint64_t dims[3] = {(uint64_t)r.n_layers, (uint64_t)r.n_positions, (uint64_t)r.top_k};
        uint64_t tdims[3] = {(uint64_t)r.n_layers, (uint64_t)r.n_positions, (uint64_t)T};
        uint64_t nl = (uint64_t)r.n_layers, np = (uint64_t)r.n_positions, nt = (uint64_t)s.n;
        nn_h5file *done_file;
        if (nn_h5_create(a.output, &f, &err) ||
            nn_h5_write(f, NN_DS_LENS_TOP_IDS, NN_H5_I32, 3, dims, r.top_ids, &err) ||
            nn_h5_write(f, NN_DS_LENS_TOP_PROBS, NN_H5_F32, 3, dims, r.top_probs, &err) ||
            nn_h5_write(f, NN_DS_LENS_LAYERS, NN_H5_I32, 1, &nl, r.layers, &err) ||
            nn_h5_write(f, NN_DS_LENS_POSITIONS, NN_H5_I32, 1, &np, r.positions, &err) ||
            nn_h5_write(f, NN_DS_TOKEN_IDS, NN_H5_I32, 1, &nt, s.ids, &err) ||
            (T && (nn_h5_write(f, NN_DS_LENS_TARGET_PROBS, NN_H5_F32, 3, tdims, word_probs, &err) ||
                   attr_target_names(f, "/lens", &t, &err))) ||
            nn_h5_attr_string(f, "/", NN_ATTR_FORMAT, nn_file_formats[NN_FILE_LENS].name, &err) ||
            nn_h5_attr_i64(f, "/", NN_ATTR_FORMAT_VERSION, nn_file_formats[NN_FILE_LENS].version,
                           &err) ||
            nn_h5_attr_string(f, "/", NN_ATTR_MODEL, s.m->source, &err) ||
            nn_h5_attr_string(f, "/", NN_ATTR_COMPUTE, nn_compute_name(s.m->compute), &err) ||
            nn_h5_attr_string(f, "/lens", "variant", a.inverse ? "inverse" : "logit lens", &err) ||
            nn_h5_attr_string(f, "/", NN_ATTR_PROMPT, a.prompt_is_text[0] ? a.prompt[0] : "",
                              &err)) {
            cli_fail(&err);
            goto done;
        }
        done_file = f;
        f = NULL;
        if (nn_h5_commit(done_file, &err)) {
            cli_fail(&err);
            goto done;
        }
    }
    if (a.json) {
        if (print_lens_json(&a, &s, &r, &t, word_probs, &err)) {
            cli_fail(&err);
            goto done;
        }
    }
    for (int j = 0; !a.json && j < r.n_positions; j++) {
        int pos = r.positions[j];
        printf("%slogit lens at position %d of %d (after ", a.inverse ? "inverse " : "", pos, s.n);
        cli_print_token(stdout, s.tok, s.ids[pos], 0);
        printf("), top %d\n", r.top_k);
        for (int l = 0; l < r.n_layers; l++) {
            printf("  layer %3d ", r.layers[l]);
            for (int k = 0; k < r.top_k; k++) {
                size_t at = ((size_t)l * r.n_positions + j) * r.top_k + k;
                printf(" ");
                cli_print_token(stdout, s.tok, r.top_ids[at], 12);
                printf("%.3f", r.top_probs[at]);
            }
            for (size_t i = 0; i < T; i++)
                printf("  p(%s) %.3f", t.names[i],
                       word_probs[((size_t)l * r.n_positions + j) * T + i]);
            printf("\n");
        }
    }
    if (a.plot && plot_lens(&a, &s, &r, &err)) {
        cli_fail(&err);
        goto done;
    }
    rc = 0;
done:
    nn_h5_free(f);
    nn_lens_result_free(&r);
    nn_free(layers);
    nn_free(positions);
    nn_free(word_probs);
    cli_targets_free(&t);
    session_free(&s);
    return rc;
}

static void print_text(const nn_tokenizer *tok, const int32_t *ids, int n)
{
    int count = 0;
    while (count < n && ids[count] >= 0)
        count++;
    char *text = NULL;
    nn_err err;
    if (tok && nn_tokenizer_decode(tok, ids, (size_t)count, true, &text, &err) == NN_OK) {
        printf("'");
        for (const char *c = text; *c; c++)
            fputs(*c == '\n' ? "\\n" : (char[]){*c, 0}, stdout);
        printf("'");
        nn_free(text);
    } else {
        for (int i = 0; i < count; i++)
            printf("%s%d", i ? " " : "", ids[i]);
    }
}

static void print_patchscope_table(const args *a, const session *s, const int32_t *src, int n_src,
                                   const int32_t *dst, int n_dst, const nn_patchscope_result *r,
                                   const cli_targets *t, const float *word_probs)
{
    printf("patchscope: source ");
    print_text(s->tok, src, n_src);
    printf(" (last token) -> target ");
    print_text(s->tok, dst, n_dst);
    printf(" at index %d, top %d\n", a->index, r->top_k);
    for (int l = 0; l < r->n_layers; l++) {
        printf("  layer %3d ", r->layers[l]);
        for (int k = 0; k < r->top_k; k++) {
            printf(" ");
            cli_print_token(stdout, s->tok, r->top_ids[(size_t)l * r->top_k + k], 12);
            printf("%.3f", r->top_probs[(size_t)l * r->top_k + k]);
        }
        for (int i = 0; i < t->n; i++)
            printf("  p(%s) %.3f", t->names[i], word_probs[(size_t)l * t->n + i]);
        if (r->generated) {
            printf("  -> ");
            print_text(s->tok, r->tokens + (size_t)l * r->generated, r->generated);
        }
        printf("\n");
    }
}

/* --json: arrays nested [layer][rank] (and [layer][target], [layer][token]) as in -o's datasets. */
static int print_patchscope_json(const args *a, const session *s, const char *target,
                                 const nn_patchscope_result *r, const cli_targets *t,
                                 const float *word_probs, nn_err *err)
{
    cJSON *o = cJSON_CreateObject(), *ids = cJSON_CreateArray(), *toks = cJSON_CreateArray(),
          *probs = cJSON_CreateArray();
    size_t k = (size_t)r->top_k, G = (size_t)r->generated, T = (size_t)t->n;
    for (int l = 0; o && l < r->n_layers; l++) {
        cJSON_AddItemToArray(ids, cli_json_i32s(r->top_ids + (size_t)l * k, k));
        cJSON_AddItemToArray(toks, cli_json_tokens(s->tok, r->top_ids + (size_t)l * k, k));
        cJSON_AddItemToArray(probs, cli_json_f32s(r->top_probs + (size_t)l * k, k));
    }
    cJSON_AddStringToObject(o, "model", s->m->source);
    cJSON_AddStringToObject(o, "source", a->source);
    cJSON_AddStringToObject(o, "target", target);
    cJSON_AddNumberToObject(o, "index", a->index);
    cJSON_AddItemToObject(o, "layers", cli_json_ints(r->layers, (size_t)r->n_layers));
    cJSON_AddNumberToObject(o, "top_k", r->top_k);
    cJSON_AddItemToObject(o, "top_ids", ids);
    cJSON_AddItemToObject(o, "top_tokens", toks);
    cJSON_AddItemToObject(o, "top_probs", probs);
    if (T) {
        cJSON *names = cJSON_CreateArray(), *tp = cJSON_CreateArray();
        for (size_t i = 0; i < T; i++)
            cJSON_AddItemToArray(names, cJSON_CreateString(t->names[i]));
        for (int l = 0; tp && l < r->n_layers; l++)
            cJSON_AddItemToArray(tp, cli_json_f32s(word_probs + (size_t)l * T, T));
        cJSON_AddItemToObject(o, "targets", names);
        cJSON_AddItemToObject(o, "target_probs", tp);
    }
    if (G) { /* -1 after an early end of sequence, as in the store */
        cJSON *gen = cJSON_CreateArray();
        for (int l = 0; gen && l < r->n_layers; l++)
            cJSON_AddItemToArray(gen, cli_json_i32s(r->tokens + (size_t)l * G, G));
        cJSON_AddItemToObject(o, "generated", gen);
    }
    return cli_json_print(o, err);
}

/* -o: /patchscope/{top_ids, top_probs [layers, k], layers, target_probs [layers, targets],
 * tokens [layers, generate], target_ids}. */
static int write_patchscope(const args *a, const session *s, const char *target, const int32_t *dst,
                            int n_dst, const nn_patchscope_result *r, const cli_targets *t,
                            const float *word_probs, nn_err *err)
{
    nn_h5file *f = NULL;
    uint64_t dims[2] = {(uint64_t)r->n_layers, (uint64_t)r->top_k},
             tdims[2] = {(uint64_t)r->n_layers, (uint64_t)t->n},
             gdims[2] = {(uint64_t)r->n_layers, (uint64_t)r->generated}, nl = (uint64_t)r->n_layers,
             nd = (uint64_t)n_dst;
    char idx[32];
    snprintf(idx, sizeof idx, "%d", a->index);
    if (nn_h5_create(a->output, &f, err) ||
        nn_h5_write(f, NN_DS_PATCHSCOPE_TOP_IDS, NN_H5_I32, 2, dims, r->top_ids, err) ||
        nn_h5_write(f, NN_DS_PATCHSCOPE_TOP_PROBS, NN_H5_F32, 2, dims, r->top_probs, err) ||
        nn_h5_write(f, NN_DS_PATCHSCOPE_LAYERS, NN_H5_I32, 1, &nl, r->layers, err) ||
        nn_h5_write(f, NN_DS_PATCHSCOPE_TARGET_IDS, NN_H5_I32, 1, &nd, dst, err) ||
        (t->n &&
         (nn_h5_write(f, NN_DS_PATCHSCOPE_TARGET_PROBS, NN_H5_F32, 2, tdims, word_probs, err) ||
          attr_target_names(f, "/patchscope", t, err))) ||
        (r->generated &&
         nn_h5_write(f, NN_DS_PATCHSCOPE_TOKENS, NN_H5_I32, 2, gdims, r->tokens, err)) ||
        nn_h5_attr_string(f, "/", NN_ATTR_FORMAT, nn_file_formats[NN_FILE_PATCHSCOPE].name, err) ||
        nn_h5_attr_i64(f, "/", NN_ATTR_FORMAT_VERSION, nn_file_formats[NN_FILE_PATCHSCOPE].version,
                       err) ||
        nn_h5_attr_string(f, "/", NN_ATTR_MODEL, s->m->source, err) ||
        nn_h5_attr_string(f, "/", NN_ATTR_COMPUTE, nn_compute_name(s->m->compute), err) ||
        nn_h5_attr_string(f, "/", "source", a->source, err) ||
        nn_h5_attr_string(f, "/", "target", target, err) ||
        nn_h5_attr_string(f, "/patchscope", "index_to_patch", idx, err)) {
        nn_h5_free(f);
        return NN_ERR;
    }
    return nn_h5_commit(f, err);
}

int cmd_patchscope(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_patchscope, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.source)
        return cli_usage_error(usage_patchscope, "%s", "--source TEXT is required");
    if (a.plot && !nn_plot_format_known(a.plot))
        return cli_usage_error(usage_patchscope, "--plot '%s': the name must end in .png or .html",
                               a.plot);
    nn_err err = {{0}};
    session s;
    int32_t *src = NULL, *dst = NULL;
    int n_src, n_dst, *layers = NULL, n_layers;
    char *target = NULL;
    nn_patchscope_result r = {0};
    cli_targets t = {0};
    float *word_probs = NULL;
    rc = EXIT_FAILURE;
    /* --target it-repeat: nnterp's it_repeat_prompt through the chat template (cli/chat.c) */
    bool it_repeat = a.target && !strcmp(a.target, "it-repeat");
    if (session_open(&a, true, false, &s, &err) ||
        (it_repeat ? cli_it_repeat_ids(&a, s.tok, &target, &dst, &n_dst, &err)
                   : !(target = a.target ? nn_strdup(a.target, &err)
                                         : nn_repeat_prompt(NULL, 0, NULL, NULL, NULL, &err)) ||
                         cli_text_ids(&a, s.tok, target, &dst, &n_dst, &err)) ||
        cli_text_ids(&a, s.tok, a.source, &src, &n_src, &err) ||
        nn_layers_parse(a.layers ? a.layers : "all", s.m->cfg.n_layers, &layers, &n_layers, &err) ||
        cli_targets_parse(a.targets_words, s.tok, &t, &err)) {
        cli_fail(&err);
        goto done;
    }
    nn_patchscope_params pp = nn_patchscope_default_params();
    pp.layers = layers;
    pp.n_layers = n_layers;
    pp.index_to_patch = a.index;
    pp.top_k = a.top_k;
    pp.generate = a.generate;
    pp.gen.temperature = a.temperature;
    pp.gen.top_p = a.top_p;
    pp.gen.seed = a.seed;
    pp.target_ids = t.flat.ids;
    pp.n_targets = (int)t.flat.n;
    if (nn_patchscope(s.m, (nn_prompt){src, n_src}, (nn_prompt){dst, n_dst}, &pp, &r, &err) ||
        (t.n && !(word_probs = nn_malloc((size_t)r.n_layers * t.n * sizeof *word_probs, &err)))) {
        cli_fail(&err);
        goto done;
    }
    for (int l = 0; t.n && l < r.n_layers; l++)
        cli_targets_sum(&t, r.target_probs + (size_t)l * t.flat.n, word_probs + (size_t)l * t.n);
    /* The file first: after an error nothing is printed on stdout. */
    if ((a.output && write_patchscope(&a, &s, target, dst, n_dst, &r, &t, word_probs, &err)) ||
        (a.json && print_patchscope_json(&a, &s, target, &r, &t, word_probs, &err))) {
        cli_fail(&err);
        goto done;
    }
    if (!a.json)
        print_patchscope_table(&a, &s, src, n_src, dst, n_dst, &r, &t, word_probs);
    if (a.plot) {
        char *sub = NULL, heading[512], name[256];
        size_t n = strlen(target) + 64;
        if (!(sub = nn_malloc(n, &err))) {
            cli_fail(&err);
            goto done;
        }
        snprintf(sub, n, "patched at index %d of \"%s\"", a.index, target);
        snprintf(heading, sizeof heading, "Patchscope lens \xe2\x80\x94 %s",
                 cli_model_name(s.m->source, name, sizeof name));
        cli_topk_panel panel = {.title = a.source,
                                .subtitle = sub,
                                .n_rows = r.n_layers,
                                .k = r.top_k,
                                .layers = r.layers,
                                .ids = r.top_ids,
                                .probs = r.top_probs,
                                .stride = (size_t)r.top_k};
        int prc = cli_plot_topk(a.plot, heading, s.tok, &panel, 1, &err);
        nn_free(sub);
        if (prc) {
            cli_fail(&err);
            goto done;
        }
    }
    rc = 0;
done:
    nn_patchscope_result_free(&r);
    nn_free(src);
    nn_free(dst);
    nn_free(target);
    nn_free(layers);
    nn_free(word_probs);
    cli_targets_free(&t);
    session_free(&s);
    return rc;
}

static int generate_text(const session *s, const args *a, const nn_hookset *hooks, nn_err *err)
{
    int32_t *out = nn_malloc((size_t)(a->n_new ? a->n_new : 1) * sizeof *out, err);
    if (!out)
        return NN_ERR;
    nn_generate_params gp = nn_generate_default_params();
    gp.max_new_tokens = a->n_new;
    gp.temperature = a->temperature;
    gp.top_p = a->top_p;
    gp.seed = a->seed;
    gp.stop_at_eos = !a->no_eos;
    gp.hooks = hooks;
    int n_out = 0, rc = nn_generate(s->m, s->ids, s->n, &gp, out, &n_out, err);
    if (rc == NN_OK)
        print_text(s->tok, out, n_out);
    nn_free(out);
    return rc;
}

static int print_top(const session *s, const nn_hookset *hooks, int k, nn_err *err)
{
    size_t V = (size_t)s->m->cfg.vocab_size;
    float *probs = nn_malloc(V * sizeof *probs, err), vals[64];
    int32_t ids[64];
    if (!probs)
        return NN_ERR;
    nn_prompt p = {s->ids, s->n};
    int rc = nn_next_token_probs(s->m, &p, 1, hooks, probs, err);
    if (rc == NN_OK) {
        k = k > 64 ? 64 : k;
        nn_top_k(probs, V, k, ids, vals);
        for (int i = 0; i < k; i++) {
            printf(" ");
            cli_print_token(stdout, s->tok, ids[i], 12);
            printf("%.3f", vals[i]);
        }
    }
    nn_free(probs);
    return rc;
}

int cmd_steer(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_steer, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.vector == !a.contrast_a)
        return cli_usage_error(usage_steer, "%s",
                               "give exactly one of --vector FILE.npy and --contrast A B");
    if (!a.layers || !a.factor_given)
        return cli_usage_error(usage_steer, "%s", "--layers SPEC and --factor F are required");
    if (a.n_prompts != 1)
        return cli_usage_error(usage_steer, "%s", "give one prompt, with -p TEXT or --ids");
    nn_err err = {{0}};
    session s;
    int *layers = NULL, n_layers = 0;
    float *vectors = NULL;
    nn_steer *steers = NULL;
    nn_hookset hs = {0};
    int32_t *ca = NULL, *cb = NULL;
    int n_ca, n_cb;
    rc = EXIT_FAILURE;
    if (session_open(&a, a.contrast_a != NULL, true, &s, &err) ||
        nn_layers_parse(a.layers, s.m->cfg.n_layers, &layers, &n_layers, &err) ||
        nn_hookset_init(&hs, s.m->cfg.n_layers, &err) ||
        !(steers = nn_calloc((size_t)n_layers, sizeof *steers, &err))) {
        cli_fail(&err);
        goto done;
    }
    size_t D = (size_t)s.m->cfg.d_model;
    if (a.vector) {
        size_t n;
        if (nn_npy_read_vector(a.vector, &vectors, &n, &err)) {
            cli_fail(&err);
            goto done;
        }
        if (n != D) {
            nn_fail(&err, "%s: the vector has %zu values, the model's d_model is %zu", a.vector, n,
                    D);
            cli_fail(&err);
            goto done;
        }
        steers[0] = (nn_steer){
            .vector = vectors, .factor = a.factor, .layers = layers, .n_layers = n_layers};
        if (nn_steer_add(&hs, s.m, &steers[0], &err)) {
            cli_fail(&err);
            goto done;
        }
    } else {
        if (!(vectors = nn_malloc((size_t)n_layers * D * sizeof *vectors, &err)) ||
            cli_text_ids(&a, s.tok, a.contrast_a, &ca, &n_ca, &err) ||
            cli_text_ids(&a, s.tok, a.contrast_b, &cb, &n_cb, &err)) {
            cli_fail(&err);
            goto done;
        }
        for (int i = 0; i < n_layers; i++) {
            float *v = vectors + (size_t)i * D;
            steers[i] =
                (nn_steer){.vector = v, .factor = a.factor, .layers = &layers[i], .n_layers = 1};
            if (nn_contrast_vector(s.m, &(nn_prompt){ca, n_ca}, 1, &(nn_prompt){cb, n_cb}, 1,
                                   layers[i], nn_tokenizer_bos(s.tok), v, &err) ||
                nn_steer_add(&hs, s.m, &steers[i], &err)) {
                cli_fail(&err);
                goto done;
            }
        }
    }
    printf("baseline: ");
    if ((a.n_new > 0 ? generate_text(&s, &a, NULL, &err) : print_top(&s, NULL, a.top_k, &err))) {
        printf("\n");
        cli_fail(&err);
        goto done;
    }
    printf("\nsteered:  ");
    if ((a.n_new > 0 ? generate_text(&s, &a, &hs, &err) : print_top(&s, &hs, a.top_k, &err))) {
        printf("\n");
        cli_fail(&err);
        goto done;
    }
    printf("\n");
    rc = 0;
done:
    nn_hookset_free(&hs);
    nn_free(steers);
    nn_free(vectors);
    nn_free(layers);
    nn_free(ca);
    nn_free(cb);
    session_free(&s);
    return rc;
}

/* One line of a probs file: the prompt and its targets' first tokens. */
typedef struct probs_line {
    cJSON *json;
    int32_t *ids;
    int n;
    int n_targets;
    const char **names;
    nn_ids *tokens; /* [n_targets] */
} probs_line;

static void probs_line_free(probs_line *l)
{
    for (int t = 0; t < l->n_targets; t++)
        nn_ids_free(&l->tokens[t]);
    nn_free(l->tokens);
    nn_free(l->names);
    nn_free(l->ids);
    cJSON_Delete(l->json);
    memset(l, 0, sizeof *l);
}

static int probs_parse_line(const args *a, nn_tokenizer *tok, const char *text, const char *file,
                            int line_no, probs_line *l, nn_err *err)
{
    memset(l, 0, sizeof *l);
    if (!(l->json = cJSON_Parse(text)) || !cJSON_IsObject(l->json))
        return nn_fail(err, "%s:%d: not a JSON object", file, line_no);
    char where[1024];
    snprintf(where, sizeof where, "%s:%d", file, line_no);
    if (nn_json_unique_keys(l->json, where, err))
        return NN_ERR;
    /* "prompt" (nnterp's run_prompts), else "text" (a job dataset's default field) */
    const cJSON *prompt = nn_json_get(l->json, "prompt"),
                *targets = nn_json_get(l->json, "targets");
    if (!prompt)
        prompt = nn_json_get(l->json, "text");
    if (!cJSON_IsString(prompt))
        return nn_fail(err, "%s:%d: field 'prompt' missing or not a string (nor a 'text' field)",
                       file, line_no);
    if (!cJSON_IsObject(targets) || !cJSON_GetArraySize(targets))
        return nn_fail(err, "%s:%d: field 'targets' must be an object {\"name\": [\"word\", ...]}",
                       file, line_no);
    if (cli_text_ids(a, tok, prompt->valuestring, &l->ids, &l->n, err))
        return nn_err_prefix(err, "%s:%d", file, line_no);
    int nt = cJSON_GetArraySize(targets);
    if (!(l->names = nn_calloc((size_t)nt, sizeof *l->names, err)) ||
        !(l->tokens = nn_calloc((size_t)nt, sizeof *l->tokens, err)))
        return NN_ERR;
    const cJSON *t;
    cJSON_ArrayForEach (t, targets) {
        const char *words[64];
        int n_words = 0;
        if (cJSON_IsString(t)) {
            words[n_words++] = t->valuestring;
        } else if (cJSON_IsArray(t)) {
            const cJSON *w;
            cJSON_ArrayForEach (w, t) {
                if (!cJSON_IsString(w) || n_words == 64)
                    return nn_fail(err, "%s:%d: targets.%s must be a list of at most 64 words",
                                   file, line_no, t->string);
                words[n_words++] = w->valuestring;
            }
            if (n_words == 0)
                return nn_fail(err, "%s:%d: targets.%s is an empty list of words", file, line_no,
                               t->string);
        } else {
            return nn_fail(err, "%s:%d: targets.%s must be a word or a list of words", file,
                           line_no, t->string);
        }
        l->names[l->n_targets] = t->string;
        if (nn_first_tokens(tok, words, n_words, &l->tokens[l->n_targets++], err))
            return nn_err_prefix(err, "%s:%d: targets.%s", file, line_no, t->string);
    }
    return NN_OK;
}

int cmd_probs(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_probs, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.file)
        return cli_usage_error(usage_probs, "%s", "-f PROMPTS.jsonl is required");
    nn_err err = {{0}};
    session s;
    char *text = NULL;
    float *probs = NULL;
    rc = EXIT_FAILURE;
    if (session_open(&a, true, false, &s, &err) ||
        nn_file_read(a.file, (size_t)1 << 30, &text, NULL, &err) ||
        !(probs = nn_malloc((size_t)s.m->cfg.vocab_size * sizeof *probs, &err))) {
        cli_fail(&err);
        goto done;
    }
    int line_no = 0, n_prompts = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        line_no++;
        if (!line[strspn(line, " \t\r")])
            continue;
        probs_line l;
        if (probs_parse_line(&a, s.tok, line, a.file, line_no, &l, &err) ||
            nn_next_token_probs(s.m, &(nn_prompt){l.ids, l.n}, 1, NULL, probs, &err)) {
            probs_line_free(&l);
            cli_fail(&err);
            goto done;
        }
        cJSON *out = cJSON_CreateObject(), *p = cJSON_CreateObject(), *toks = cJSON_CreateObject();
        const cJSON *pr = nn_json_get(l.json, "prompt");
        cJSON_AddStringToObject(out, "prompt",
                                (pr ? pr : nn_json_get(l.json, "text"))->valuestring);
        for (int t = 0; t < l.n_targets; t++) {
            double sum = 0;
            cJSON *ids = cJSON_CreateArray();
            for (size_t i = 0; i < l.tokens[t].n; i++) {
                sum += probs[l.tokens[t].ids[i]];
                cJSON_AddItemToArray(ids, cJSON_CreateNumber(l.tokens[t].ids[i]));
            }
            cJSON_AddNumberToObject(p, l.names[t], sum);
            cJSON_AddItemToObject(toks, l.names[t], ids);
        }
        cJSON_AddItemToObject(out, "probs", p);
        cJSON_AddItemToObject(out, "tokens", toks);
        char *json = cJSON_PrintUnformatted(out);
        if (json)
            puts(json);
        cJSON_free(json);
        cJSON_Delete(out);
        probs_line_free(&l);
        n_prompts++;
    }
    if (n_prompts == 0) {
        nn_fail(&err, "%s: no prompts (the file is empty)", a.file);
        cli_fail(&err);
        goto done;
    }
    rc = 0;
done:
    nn_free(probs);
    nn_free(text);
    session_free(&s);
    return rc;
}
