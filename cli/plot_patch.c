/* nnterp plot of an activation_patch sweep (a job's /activation_patch[_N] with "sweep", or the
 * file of nnterp patch --sweep -o): the causal-tracing picture, a heatmap per prompt pair and hook
 * of the first target's probability with one (layer, position) patched, a row per layer and a
 * column per target position, each cell showing the target's token there (docs/plots.md). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"
#include "h5file.h"
#include "plot.h"

#define MAX_PATCH_PANELS 60

/* Whether group is an activation_patch sweep. */
static bool swept(nn_h5file *f, const char *group)
{
    char path[160];
    nn_err ignored;
    snprintf(path, sizeof path, "/%s/patched_probs", group);
    if (!nn_h5_exists(f, path))
        return false;
    snprintf(path, sizeof path, "/%s", group);
    char *sweep = nn_h5_get_attr_string(f, path, "sweep", &ignored);
    bool yes = sweep && !strcmp(sweep, "true");
    nn_free(sweep);
    return yes;
}

/* The group to draw: op when it is a swept activation_patch, else the first such group. */
bool cli_plot_patch_group(nn_h5file *f, const char *op, char *group, size_t cap)
{
    if (op) {
        snprintf(group, cap, "%s", op);
        return !strncmp(op, "activation_patch", 16) && swept(f, op);
    }
    char **names = NULL;
    int n = 0;
    nn_err ignored;
    bool found = false;
    if (nn_h5_list(f, "/", &names, &n, &ignored))
        return false;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        if (!found && len > 1 && names[i][len - 1] == '/' &&
            !strncmp(names[i], "activation_patch", 16)) {
            snprintf(group, cap, "%.*s", (int)(len - 1), names[i]);
            found = swept(f, group);
        }
        nn_free(names[i]);
    }
    nn_free(names);
    return found;
}

static int read_dataset(nn_h5file *f, const char *path, nn_h5_type want, int rank, uint64_t *dims,
                        void **out, size_t elem, nn_err *err)
{
    nn_h5_type type;
    int r;
    if (nn_h5_shape(f, path, &type, &r, dims, err))
        return NN_ERR;
    if (type != want || r != rank)
        return nn_fail(err, "%s is not what nnterp writes there (type or rank differ)", path);
    size_t n = elem;
    for (int i = 0; i < r; i++)
        n *= (size_t)dims[i];
    if (!(*out = nn_malloc(n ? n : 1, err)))
        return NN_ERR;
    return n ? nn_h5_read(f, path, *out, n, err) : NN_OK;
}

/* Everything the panels point into; freed together. */
typedef struct patch_plot {
    float *probs;
    int32_t *layers, *positions, *tokens;
    int64_t *offsets, *text_offsets;
    uint8_t *text;
    char *hooks, *names, *prompt, *source;
    cJSON *target_names;
    nn_plot_panel panels[MAX_PATCH_PANELS];
    nn_plot_cell *cells[MAX_PATCH_PANELS];
    char *labels[MAX_PATCH_PANELS][2]; /* title, subtitle */
    char **row_labels;
    int n_panels, n_rows;
} patch_plot;

static void patch_plot_free(patch_plot *d)
{
    nn_free(d->probs);
    nn_free(d->layers);
    nn_free(d->positions);
    nn_free(d->tokens);
    nn_free(d->offsets);
    nn_free(d->text_offsets);
    nn_free(d->text);
    nn_free(d->hooks);
    nn_free(d->names);
    nn_free(d->prompt);
    nn_free(d->source);
    cJSON_Delete(d->target_names);
    for (int i = 0; i < d->n_panels; i++) {
        for (int c = 0; d->cells[i] && c < d->panels[i].n_rows * d->panels[i].k; c++)
            nn_free((char *)d->cells[i][c].text);
        nn_free(d->cells[i]);
        nn_free(d->labels[i][0]);
        nn_free(d->labels[i][1]);
    }
    for (int r = 0; d->row_labels && r < d->n_rows; r++)
        nn_free(d->row_labels[r]);
    nn_free(d->row_labels);
}

static char *text_of(const patch_plot *d, int64_t p, nn_err *err)
{
    if (d->prompt)
        return nn_strdup(d->prompt, err);
    int64_t a = d->text_offsets[p], b = d->text_offsets[p + 1];
    char *s = nn_malloc((size_t)(b - a) + 1, err);
    if (s) {
        memcpy(s, d->text + a, (size_t)(b - a));
        s[b - a] = '\0';
    }
    return s;
}

/* The cells of prompt p, hook h: rows layers, columns the positions; NaN (the pair does not have
 * the position) is an empty cell of probability 0. */
static int add_panel(patch_plot *d, const nn_tokenizer *tok, const uint64_t *dims, int64_t p,
                     int h, const char *hook, nn_err *err)
{
    int L = (int)dims[2], W = (int)dims[3], T = (int)dims[4];
    int i = d->n_panels;
    nn_plot_cell *cells = nn_calloc((size_t)L * W, sizeof *cells, err);
    if (!cells)
        return NN_ERR;
    d->cells[i] = cells;
    d->n_panels++;
    /* the target's tokens: the prompt's in a job's store, /tokens/ids in a one-pair file */
    int64_t t0 = d->offsets ? d->offsets[p] : 0;
    int64_t tlen = d->offsets ? d->offsets[p + 1] - t0 : (int64_t)dims[5];
    for (int l = 0; l < L; l++)
        for (int j = 0; j < W; j++) {
            nn_plot_cell *c = &cells[(size_t)l * W + j];
            size_t at = ((((size_t)p * dims[1] + (size_t)h) * L + l) * W + j) * T;
            float v = d->probs[at];
            int pos = d->positions[j];
            int64_t k = pos < 0 ? tlen + pos : pos;
            c->id = k >= 0 && k < tlen ? d->tokens[t0 + k] : -1;
            c->prob = isnan(v) ? 0.0f : v;
            c->text = isnan(v) || c->id < 0 ? nn_strdup("", err) : cli_token_text(tok, c->id);
            if (isnan(v) && !c->text)
                return NN_ERR;
        }
    const cJSON *name = cJSON_GetArrayItem(d->target_names, 0);
    char *prompt = text_of(d, p, err), sub[512];
    if (!prompt)
        return NN_ERR;
    snprintf(sub, sizeof sub, "p(%s) with %s of one (layer, position) patched%s%s",
             cJSON_IsString(name) ? name->valuestring : "target 0", hook,
             d->source ? " from " : "", d->source ? d->source : "");
    d->labels[i][0] = prompt;
    if (!(d->labels[i][1] = nn_strdup(sub, err)))
        return NN_ERR;
    d->panels[i] = (nn_plot_panel){.title = prompt,
                                   .subtitle = d->labels[i][1],
                                   .n_rows = L,
                                   .k = W,
                                   .row_labels = (const char *const *)d->row_labels,
                                   .cells = cells};
    return NN_OK;
}

int cli_plot_patch(nn_h5file *f, const char *store, const char *group, const nn_tokenizer *tok,
                   const char *model, const int *prompts, int n_prompts, const char *title,
                   const char *output, nn_err *err)
{
    patch_plot d = {0};
    uint64_t dims[8], ld[8], pd[8], td[8], od[8];
    char path[192], g[160];
    nn_err ignored;
    snprintf(g, sizeof g, "/%s", group);
    int rc = NN_ERR;
    snprintf(path, sizeof path, "%s/patched_probs", g);
    if (read_dataset(f, path, NN_H5_F32, 5, dims, (void **)&d.probs, sizeof(float), err))
        goto done;
    snprintf(path, sizeof path, "%s/layers", g);
    if (read_dataset(f, path, NN_H5_I32, 1, ld, (void **)&d.layers, 4, err))
        goto done;
    snprintf(path, sizeof path, "%s/positions", g);
    if (read_dataset(f, path, NN_H5_I32, 1, pd, (void **)&d.positions, 4, err) ||
        read_dataset(f, "/tokens/ids", NN_H5_I32, 1, td, (void **)&d.tokens, 4, err))
        goto done;
    if (ld[0] != dims[2] || pd[0] != dims[3]) {
        nn_fail(err, "%s: %s/patched_probs does not match its layers and positions", store, g);
        goto done;
    }
    if (nn_h5_exists(f, "/prompts/token_offsets")) {
        if (read_dataset(f, "/prompts/token_offsets", NN_H5_I64, 1, od, (void **)&d.offsets, 8,
                         err) ||
            read_dataset(f, "/prompts/text_offsets", NN_H5_I64, 1, od, (void **)&d.text_offsets,
                         8, err) ||
            read_dataset(f, "/prompts/text", NN_H5_U8, 1, od, (void **)&d.text, 1, err))
            goto done;
    } else { /* nnterp patch -o: one pair */
        d.prompt = nn_h5_get_attr_string(f, "/", "prompt", &ignored);
        d.source = nn_h5_get_attr_string(f, g, "source", &ignored);
        dims[5] = td[0];
    }
    d.names = nn_h5_get_attr_string(f, "/", "target_names", &ignored);
    d.target_names = d.names ? cJSON_Parse(d.names) : NULL;
    d.hooks = nn_h5_get_attr_string(f, g, "hooks", &ignored);
    d.n_rows = (int)dims[2];
    if (!(d.row_labels = nn_calloc((size_t)d.n_rows + 1, sizeof *d.row_labels, err)))
        goto done;
    for (int l = 0; l < d.n_rows; l++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", d.layers[l]);
        if (!(d.row_labels[l] = nn_strdup(buf, err)))
            goto done;
    }
    int64_t P = (int64_t)dims[0];
    int n = prompts ? n_prompts : (int)P, skipped = 0;
    for (int i = 0; i < n; i++) {
        int64_t p = prompts ? prompts[i] : i;
        if (p < 0 || p >= P) {
            nn_fail(err, "%s: --prompt %lld is out of range (the store holds %lld prompts)", store,
                    (long long)p, (long long)P);
            goto done;
        }
        char hooks[512];
        snprintf(hooks, sizeof hooks, "%s", d.hooks ? d.hooks : "");
        char *save = NULL, *hook = strtok_r(hooks, ",", &save);
        for (int h = 0; h < (int)dims[1]; h++, hook = hook ? strtok_r(NULL, ",", &save) : NULL) {
            if (d.n_panels == MAX_PATCH_PANELS) {
                skipped++;
                continue;
            }
            if (add_panel(&d, tok, dims, p, h, hook ? hook : "a hook", err))
                goto done;
        }
    }
    if (skipped)
        fprintf(stderr,
                "nnterp: warning: drawing the first %d panels; %d more left out (choose prompts "
                "with --prompt)\n",
                d.n_panels, skipped);
    char heading[512], name[256];
    if (title)
        snprintf(heading, sizeof heading, "%s", title);
    else if (model)
        snprintf(heading, sizeof heading, "Activation patching \xe2\x80\x94 %s",
                 cli_model_name(model, name, sizeof name));
    else
        snprintf(heading, sizeof heading, "Activation patching");
    nn_plot pl = {.title = heading,
                  .row_axis = "layer",
                  .col_axis = "position",
                  .panels = d.panels,
                  .n_panels = d.n_panels};
    nn_plot_info info = {0};
    if (nn_plot_write(&pl, output, &info, err))
        goto done;
    fprintf(stderr, "nnterp: wrote %s (%d panel%s, %d x %d)\n", output, d.n_panels,
            d.n_panels == 1 ? "" : "s", info.width, info.height);
    rc = NN_OK;
done:
    patch_plot_free(&d);
    return rc;
}
