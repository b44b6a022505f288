/* Pictures of top-k results: cli_plot_topk (used by lens and patchscope --plot) and nnterp plot,
 * which draws what a job (`nnterp run`) or `nnterp lens -o` stored. The tokens are decoded here;
 * io/plot draws plain text. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "h5file.h"
#include "model.h"
#include "plot.h"
#include "store.h"

#define MAX_PANELS 60

const char *cli_model_name(const char *path, char *buf, size_t size)
{
    /* a Hugging Face cache snapshot: .../models--org--name/snapshots/HASH -> org/name */
    const char *hub = strstr(path, "/models--");
    if (hub) {
        const char *name = hub + 9, *end = strchr(name, '/');
        size_t n = end ? (size_t)(end - name) : strlen(name), at = 0;
        for (size_t i = 0; i < n && at + 1 < size; i++) {
            if (name[i] == '-' && i + 1 < n && name[i + 1] == '-') {
                buf[at++] = '/';
                i++;
            } else {
                buf[at++] = name[i];
            }
        }
        buf[at] = '\0';
        return buf;
    }
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t start = n, slashes = 0;
    while (start > 0 && !(path[start - 1] == '/' && ++slashes == 2))
        start--;
    snprintf(buf, size, "%.*s", (int)(n - start), path + start);
    return buf;
}

int cli_plot_topk(const char *path, const char *title, const nn_tokenizer *tok,
                  const cli_topk_panel *src, int n_panels, nn_err *err)
{
    nn_plot_panel *panels = nn_calloc((size_t)n_panels, sizeof *panels, err);
    if (!panels)
        return NN_ERR;
    int rc = NN_OK;
    for (int i = 0; i < n_panels && rc == NN_OK; i++) {
        const cli_topk_panel *s = &src[i];
        size_t n = (size_t)s->n_rows * (size_t)s->k;
        nn_plot_cell *cells = nn_calloc(n ? n : 1, sizeof *cells, err);
        char **labels = nn_calloc((size_t)s->n_rows + 1, sizeof *labels, err);
        panels[i] = (nn_plot_panel){.title = s->title,
                                    .subtitle = s->subtitle,
                                    .n_rows = s->n_rows,
                                    .k = s->k,
                                    .row_labels = (const char *const *)labels,
                                    .cells = cells};
        if (!cells || !labels) {
            rc = NN_ERR;
            break;
        }
        for (int r = 0; r < s->n_rows && rc == NN_OK; r++) {
            char buf[16];
            snprintf(buf, sizeof buf, "%d", s->layers[r]);
            if (!(labels[r] = nn_strdup(buf, err)))
                rc = NN_ERR;
            for (int j = 0; j < s->k; j++) {
                nn_plot_cell *c = &cells[(size_t)r * s->k + j];
                c->id = s->ids[(size_t)r * s->stride + j];
                c->prob = s->probs[(size_t)r * s->stride + j];
                c->text = cli_token_text(tok, c->id); /* NULL: the cell shows #id */
            }
        }
    }
    nn_plot_info info = {0};
    if (rc == NN_OK) {
        nn_plot p = {.title = title, .panels = panels, .n_panels = n_panels};
        rc = nn_plot_write(&p, path, &info, err);
    }
    if (rc == NN_OK) {
        fprintf(stderr, "nnterp: wrote %s (%d panel%s, %d x %d)\n", path, n_panels,
                n_panels == 1 ? "" : "s", info.width, info.height);
        if (info.unknown_glyphs)
            fprintf(stderr,
                    "nnterp: warning: %d characters have no glyph in the installed fonts and show "
                    "as boxes (Debian: fonts-noto-cjk, fonts-noto-color-emoji)\n",
                    info.unknown_glyphs);
    }
    for (int i = 0; i < n_panels; i++) {
        nn_plot_cell *cells = (nn_plot_cell *)panels[i].cells;
        char **labels = (char **)panels[i].row_labels;
        for (int c = 0; cells && c < panels[i].n_rows * panels[i].k; c++)
            nn_free((char *)cells[c].text);
        for (int r = 0; labels && r < panels[i].n_rows; r++)
            nn_free(labels[r]);
        nn_free(cells);
        nn_free(labels);
    }
    nn_free(panels);
    return rc;
}

/* ---- nnterp plot STORE.h5 ----------------------------------------------------------------------
 */

static const char *usage_plot =
    "usage: nnterp plot STORE.h5 -o FILE.png|FILE.html [--prompt P[,P...]] [--op OP] [-k K]\n"
    "                   [-m MODEL] [--tokenizer FILE] [--title TEXT]\n"
    "Draws stored top-k tokens as nnterp's plot_topk_tokens does: a heatmap per prompt position,\n"
    "a row per layer, a column per rank, coloured by probability (viridis on [0, 1]). STORE.h5 is\n"
    "a job's store (`nnterp run`: its logit_lens and patchscope_lens results) or the file of\n"
    "`nnterp lens -o`. A .png is a picture; a .html is one self-contained page whose cells show\n"
    "token, id, layer and probability on hover. An activation_patch sweep (a job's, or\n"
    "`nnterp patch --sweep -o`) is drawn as its layer x position grid of the first target's\n"
    "probability, a heatmap per prompt pair and hook (docs/plots.md).\n"
    "  -o FILE          the picture: .png or .html\n"
    "  --prompt P,...   the prompts to draw, by index from 0 (default: all, up to 60 panels)\n"
    "  --op OP          logit_lens or patchscope_lens only (default: whichever are stored), or\n"
    "                   the activation_patch[_N] sweep to draw\n"
    "  -k K             the first K ranks only\n"
    "  -m MODEL         decode tokens with MODEL's tokenizer (default: the store's model)\n"
    "  --tokenizer FILE decode tokens with this tokenizer\n"
    "  --title TEXT     the picture's title\n"
    "With --feature F: an SAE feature's page instead (nnterp plot --feature --help).\n";

typedef struct plot_args {
    const char *store, *output, *prompts, *op, *model, *tokenizer, *title;
    int k;
} plot_args;

/* Everything read from the store and made for the picture; freed together. */
typedef struct plot_data {
    nn_h5file *f;
    nn_tokenizer *tok;
    char *model;
    int32_t *tokens;
    int64_t *offsets, *text_offsets;
    uint8_t *text;
    int64_t n_tokens, n_prompts;
    void *bufs[16];
    int n_bufs;
    char **strings;
    int n_strings, cap_strings;
    bool oom;
    cli_topk_panel panels[MAX_PANELS];
    int n_panels, skipped;
} plot_data;

static void plot_data_free(plot_data *d)
{
    nn_h5_free(d->f);
    nn_tokenizer_free(d->tok);
    nn_free(d->model);
    nn_free(d->tokens);
    nn_free(d->offsets);
    nn_free(d->text_offsets);
    nn_free(d->text);
    for (int i = 0; i < d->n_bufs; i++)
        nn_free(d->bufs[i]);
    for (int i = 0; i < d->n_strings; i++)
        nn_free(d->strings[i]);
    nn_free(d->strings);
}

static size_t type_size(nn_h5_type t)
{
    return t == NN_H5_I64 ? 8 : t == NN_H5_I32 || t == NN_H5_F32 ? 4 : t == NN_H5_U8 ? 1 : 2;
}

/* A whole dataset of the type and rank expected into a new buffer. */
static int read_all(nn_h5file *f, const char *store, const char *ds, nn_h5_type want, int rank,
                    uint64_t dims[8], void **out, nn_err *err)
{
    nn_h5_type type;
    int r;
    *out = NULL;
    if (nn_h5_shape(f, ds, &type, &r, dims, err))
        return NN_ERR;
    if (type != want || r != rank)
        return nn_fail(err, "%s: %s is not what nnterp writes there (type or rank differ)", store,
                       ds);
    size_t n = 1;
    for (int i = 0; i < r; i++)
        if (!nn_mul_size(n, (size_t)dims[i], &n))
            return nn_fail(err, "%s: %s is too large", store, ds);
    if (!nn_mul_size(n, type_size(type), &n) || !(*out = nn_malloc(n ? n : 1, err)))
        return NN_ERR;
    if (n && nn_h5_read(f, ds, *out, n, err)) {
        nn_free(*out);
        *out = NULL;
        return NN_ERR;
    }
    return NN_OK;
}

static void *keep(plot_data *d, void *p)
{
    if (p && d->n_bufs < (int)(sizeof d->bufs / sizeof d->bufs[0]))
        d->bufs[d->n_bufs++] = p;
    return p;
}

/* s, freed with the data (NULL when s is NULL or there is no room to keep it). */
static char *keep_string(plot_data *d, char *s)
{
    if (!s)
        return NULL;
    if (d->n_strings == d->cap_strings) {
        int cap = d->cap_strings ? 2 * d->cap_strings : 64;
        char **grown = nn_realloc(d->strings, (size_t)cap * sizeof *grown, NULL);
        if (!grown) {
            nn_free(s);
            return NULL;
        }
        d->strings = grown;
        d->cap_strings = cap;
    }
    d->strings[d->n_strings++] = s;
    return s;
}

/* printf into a new string, kept with the data. */
static char *kept_printf(plot_data *d, nn_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *kept_printf(plot_data *d, nn_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = nn_malloc((size_t)n + 1, err);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return keep_string(d, s);
}

/* Token `id` quoted for a subtitle ('␣named'), or #id; a new string. */
static char *token_label(const plot_data *d, int32_t id, nn_err *err)
{
    char *text = cli_token_text(d->tok, id);
    if (!text) {
        char buf[24];
        snprintf(buf, sizeof buf, "#%d", id);
        return nn_strdup(buf, err);
    }
    char *quoted = nn_plot_token_text(text, err);
    nn_free(text);
    return quoted;
}

/* Ids decoded as text, or the ids themselves without a tokenizer; a new string. */
static char *ids_text(const nn_tokenizer *tok, const int32_t *ids, size_t n, nn_err *err)
{
    char *text = NULL;
    nn_err ignored;
    if (tok && nn_tokenizer_decode(tok, ids, n, true, &text, &ignored) == NN_OK)
        return text;
    size_t cap = n * 12 + 1;
    char *s = nn_malloc(cap, err);
    if (!s)
        return NULL;
    size_t at = 0;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(s + at, cap - at, "%s%d", i ? " " : "", ids[i]);
    return s;
}

/* Prompt p's text: stored text, else its tokens decoded. */
static char *prompt_text(plot_data *d, int64_t p, nn_err *err)
{
    if (d->text && d->text_offsets) {
        int64_t a = d->text_offsets[p], b = d->text_offsets[p + 1];
        char *s = nn_malloc((size_t)(b - a) + 1, err);
        if (s) {
            memcpy(s, d->text + a, (size_t)(b - a));
            s[b - a] = '\0';
        }
        return keep_string(d, s);
    }
    int64_t a = d->offsets ? d->offsets[p] : 0, b = d->offsets ? d->offsets[p + 1] : d->n_tokens;
    return keep_string(d, ids_text(d->tok, d->tokens + a, (size_t)(b - a), err));
}

/* Whether another panel fits; counts the ones left out. */
static bool room(plot_data *d)
{
    if (d->n_panels < MAX_PANELS)
        return true;
    d->skipped++;
    return false;
}

static void add_panel(plot_data *d, cli_topk_panel panel)
{
    d->panels[d->n_panels++] = panel;
}

static int open_tokenizer(plot_data *d, const plot_args *pa, nn_err *err)
{
    args a = {0};
    a.tokenizer = pa->tokenizer;
    if (pa->model) {
        if (!(d->model = nn_model_resolve(pa->model, err)))
            return NN_ERR;
    } else if (!pa->tokenizer) {
        nn_err ignored;
        d->model = nn_h5_get_attr_string(d->f, "/", "model", &ignored);
    }
    if (pa->tokenizer)
        return nn_tokenizer_load(pa->tokenizer, &d->tok, err);
    if (!d->model)
        return NN_OK;
    int vocab = 0;
    if (!nn_path_is_dir(d->model)) { /* a llama2.c checkpoint: tok<vocab>.bin needs the vocab */
        nn_model *m = NULL;
        nn_err ignored;
        if (nn_model_load(d->model, &m, &ignored) == NN_OK)
            vocab = m->cfg.vocab_size;
        nn_model_free(m);
    }
    nn_err why;
    if (cli_open_tokenizer(&a, d->model, vocab, false, &d->tok, &why) != NN_OK || !d->tok) {
        d->tok = NULL;
        if (pa->model)
            return nn_fail(err, "%s: no tokenizer to decode the tokens (give --tokenizer FILE)",
                           pa->model);
        fprintf(stderr,
                "nnterp: warning: no tokenizer for the store's model %s; cells show token ids "
                "(give -m MODEL or --tokenizer FILE)\n",
                d->model);
    }
    return NN_OK;
}

/* The file of `nnterp lens -o`: /lens/top_ids [layers, positions, k]. */
static int gather_lens_file(plot_data *d, const plot_args *pa, const char **what, nn_err *err)
{
    uint64_t dims[8], ld[8], pd[8], td[8], pdims[8];
    int32_t *ids, *layers, *positions;
    float *probs;
    if (read_all(d->f, pa->store, NN_DS_LENS_TOP_IDS, NN_H5_I32, 3, dims, (void **)&ids, err) ||
        !keep(d, ids) ||
        read_all(d->f, pa->store, NN_DS_LENS_TOP_PROBS, NN_H5_F32, 3, pdims, (void **)&probs,
                 err) ||
        !keep(d, probs) ||
        read_all(d->f, pa->store, NN_DS_LENS_LAYERS, NN_H5_I32, 1, ld, (void **)&layers, err) ||
        !keep(d, layers) ||
        read_all(d->f, pa->store, NN_DS_LENS_POSITIONS, NN_H5_I32, 1, pd, (void **)&positions,
                 err) ||
        !keep(d, positions) ||
        read_all(d->f, pa->store, NN_DS_TOKEN_IDS, NN_H5_I32, 1, td, (void **)&d->tokens, err))
        return NN_ERR;
    if (memcmp(dims, pdims, 3 * sizeof *dims) || ld[0] != dims[0] || pd[0] != dims[1])
        return nn_fail(err, "%s: the /lens datasets disagree in shape", pa->store);
    d->n_tokens = (int64_t)td[0];
    nn_err ignored;
    char *variant = nn_h5_get_attr_string(d->f, "/lens", "variant", &ignored);
    *what = variant && !strcmp(variant, "inverse") ? "Inverse logit lens" : "Logit lens";
    nn_free(variant);
    char *prompt = keep_string(d, nn_h5_get_attr_string(d->f, "/", "prompt", &ignored));
    if (!prompt || !*prompt)
        prompt = keep_string(d, ids_text(d->tok, d->tokens, (size_t)d->n_tokens, err));
    if (!prompt)
        return NN_ERR;
    int k = (int)dims[2];
    if (pa->k && pa->k < k)
        k = pa->k;
    for (uint64_t j = 0; j < dims[1]; j++) {
        int pos = positions[j];
        if (!room(d))
            continue;
        if (pos < 0 || pos >= d->n_tokens)
            return nn_fail(err, "%s: /lens/positions holds %d, outside the %lld tokens", pa->store,
                           pos, (long long)d->n_tokens);
        char *tl = token_label(d, d->tokens[pos], err);
        char *sub = tl ? kept_printf(d, err, "position %d of %lld, after %s", pos,
                                     (long long)d->n_tokens, tl)
                       : NULL;
        nn_free(tl);
        if (!sub)
            return NN_ERR;
        add_panel(d, (cli_topk_panel){.title = prompt,
                                      .subtitle = sub,
                                      .n_rows = (int)dims[0],
                                      .k = k,
                                      .layers = layers,
                                      .ids = ids + j * dims[2],
                                      .probs = probs + j * dims[2],
                                      .stride = (size_t)(dims[1] * dims[2])});
    }
    return NN_OK;
}

/* A job's store: /logit_lens/... [rows, layers, k] and /patchscope_lens/... [P, layers, k]. */
static int gather_store(plot_data *d, const plot_args *pa, const int *list, int n_list,
                        const char **what, nn_err *err)
{
    uint64_t td[8], od[8], xd[8], tod[8];
    if (read_all(d->f, pa->store, NN_DS_TOKEN_IDS, NN_H5_I32, 1, td, (void **)&d->tokens, err) ||
        read_all(d->f, pa->store, NN_DS_PROMPT_TOKEN_OFFSETS, NN_H5_I64, 1, od,
                 (void **)&d->offsets, err))
        return NN_ERR;
    d->n_tokens = (int64_t)td[0];
    d->n_prompts = (int64_t)od[0] - 1;
    if (d->n_prompts < 0 || d->offsets[d->n_prompts] != d->n_tokens)
        return nn_fail(err, "%s: /prompts/token_offsets does not match /tokens/ids", pa->store);
    if (nn_h5_exists(d->f, NN_DS_PROMPT_TEXT) &&
        (read_all(d->f, pa->store, NN_DS_PROMPT_TEXT, NN_H5_U8, 1, xd, (void **)&d->text, err) ||
         read_all(d->f, pa->store, NN_DS_PROMPT_TEXT_OFFSETS, NN_H5_I64, 1, tod,
                  (void **)&d->text_offsets, err)))
        return NN_ERR;
    if (d->text_offsets && (tod[0] != od[0] || d->text_offsets[d->n_prompts] > (int64_t)xd[0])) {
        nn_free(d->text_offsets);
        d->text_offsets = NULL; /* decode the tokens instead */
    }
    for (int i = 0; i < n_list; i++)
        if (list[i] < 0 || list[i] >= d->n_prompts)
            return nn_fail(err, "%s: --prompt %d: the store has prompts 0..%lld", pa->store,
                           list[i], (long long)d->n_prompts - 1);
    bool lens =
        (!pa->op || !strcmp(pa->op, "logit_lens")) && nn_h5_exists(d->f, "/logit_lens/top_ids");
    bool scope = (!pa->op || !strcmp(pa->op, "patchscope_lens")) &&
                 nn_h5_exists(d->f, "/patchscope_lens/top_ids");
    if (!lens && !scope)
        return nn_fail(err, "%s: no %s results in this store (its operations: see h5ls)", pa->store,
                       pa->op ? pa->op : "logit_lens or patchscope_lens");
    *what = lens && scope ? "Logit lens and patchscope lens"
            : lens        ? "Logit lens"
                          : "Patchscope lens";
    /* the lens */
    uint64_t ld[8], lpd[8], lyd[8], tid[8];
    int32_t *l_ids = NULL, *l_layers = NULL;
    float *l_probs = NULL;
    int64_t *token_index = NULL;
    if (lens) {
        if (read_all(d->f, pa->store, "/logit_lens/top_ids", NN_H5_I32, 3, ld, (void **)&l_ids,
                     err) ||
            !keep(d, l_ids) ||
            read_all(d->f, pa->store, "/logit_lens/top_probs", NN_H5_F32, 3, lpd, (void **)&l_probs,
                     err) ||
            !keep(d, l_probs) ||
            read_all(d->f, pa->store, "/logit_lens/layers", NN_H5_I32, 1, lyd, (void **)&l_layers,
                     err) ||
            !keep(d, l_layers))
            return NN_ERR;
        if (nn_h5_exists(d->f, "/logit_lens/token_index") &&
            (read_all(d->f, pa->store, "/logit_lens/token_index", NN_H5_I64, 1, tid,
                      (void **)&token_index, err) ||
             !keep(d, token_index)))
            return NN_ERR;
        if (memcmp(ld, lpd, 3 * sizeof *ld) || lyd[0] != ld[1] ||
            (token_index ? tid[0] != ld[0] : (int64_t)ld[0] != d->n_tokens))
            return nn_fail(err, "%s: the /logit_lens datasets disagree in shape", pa->store);
    }
    /* the patchscope */
    uint64_t sd[8], spd[8], syd[8], std_[8], stod[8];
    int32_t *s_ids = NULL, *s_layers = NULL, *s_target = NULL;
    int64_t *s_target_offs = NULL; /* target_field: each prompt's own target */
    float *s_probs = NULL;
    char *target_label = NULL, *index = NULL;
    if (scope) {
        if (read_all(d->f, pa->store, "/patchscope_lens/top_ids", NN_H5_I32, 3, sd, (void **)&s_ids,
                     err) ||
            !keep(d, s_ids) ||
            read_all(d->f, pa->store, "/patchscope_lens/top_probs", NN_H5_F32, 3, spd,
                     (void **)&s_probs, err) ||
            !keep(d, s_probs) ||
            read_all(d->f, pa->store, "/patchscope_lens/layers", NN_H5_I32, 1, syd,
                     (void **)&s_layers, err) ||
            !keep(d, s_layers))
            return NN_ERR;
        if (memcmp(sd, spd, 3 * sizeof *sd) || syd[0] != sd[1] || (int64_t)sd[0] != d->n_prompts)
            return nn_fail(err, "%s: the /patchscope_lens datasets disagree in shape", pa->store);
        nn_err ignored;
        index = keep_string(
            d, nn_h5_get_attr_string(d->f, "/patchscope_lens", "index_to_patch", &ignored));
        char *target = NULL;
        if (nn_h5_exists(d->f, "/patchscope_lens/target_ids") &&
            read_all(d->f, pa->store, "/patchscope_lens/target_ids", NN_H5_I32, 1, std_,
                     (void **)&s_target, &ignored) == NN_OK) {
            keep(d, s_target);
            if (nn_h5_exists(d->f, "/patchscope_lens/target_offsets") &&
                read_all(d->f, pa->store, "/patchscope_lens/target_offsets", NN_H5_I64, 1, stod,
                         (void **)&s_target_offs, &ignored) == NN_OK) {
                keep(d, s_target_offs);
                if ((int64_t)stod[0] != d->n_prompts + 1 ||
                    s_target_offs[d->n_prompts] != (int64_t)std_[0])
                    s_target_offs = NULL; /* inconsistent: name no target */
            } else {
                target = ids_text(d->tok, s_target, (size_t)std_[0], err);
            }
        }
        target_label = kept_printf(d, err, "patchscope at index %s of \"%s\"", index ? index : "-1",
                                   target ? target : "the target");
        nn_free(target);
        if (!target_label)
            return NN_ERR;
    }
    for (int64_t i = 0; i < (list ? n_list : d->n_prompts); i++) {
        int64_t p = list ? list[i] : i;
        char *text = NULL;
        for (uint64_t r = 0; lens && r < ld[0]; r++) {
            int64_t t = token_index ? token_index[r] : (int64_t)r;
            if (t < d->offsets[p] || t >= d->offsets[p + 1] || !room(d))
                continue;
            if (!text && !(text = prompt_text(d, p, err)))
                return NN_ERR;
            char *tl = token_label(d, d->tokens[t], err);
            char *sub = tl ? kept_printf(d, err, "prompt %lld, position %lld, after %s",
                                         (long long)p, (long long)(t - d->offsets[p]), tl)
                           : NULL;
            nn_free(tl);
            if (!sub)
                return NN_ERR;
            int k = (int)ld[2];
            if (pa->k && pa->k < k)
                k = pa->k;
            add_panel(d, (cli_topk_panel){.title = text,
                                          .subtitle = sub,
                                          .n_rows = (int)ld[1],
                                          .k = k,
                                          .layers = l_layers,
                                          .ids = l_ids + r * ld[1] * ld[2],
                                          .probs = l_probs + r * ld[1] * ld[2],
                                          .stride = (size_t)ld[2]});
        }
        if (scope && room(d)) {
            if (!text && !(text = prompt_text(d, p, err)))
                return NN_ERR;
            int k = (int)sd[2];
            if (pa->k && pa->k < k)
                k = pa->k;
            char *own = NULL, *sub;
            if (s_target_offs) { /* the prompt's own target (target_field) */
                int64_t a = s_target_offs[p], b = s_target_offs[p + 1];
                own = a >= 0 && a <= b && b <= (int64_t)std_[0]
                          ? ids_text(d->tok, s_target + a, (size_t)(b - a), err)
                          : NULL;
                sub = kept_printf(d, err, "prompt %lld, patchscope at index %s of \"%s\"",
                                  (long long)p, index ? index : "-1", own ? own : "its target");
                nn_free(own);
            } else {
                sub = kept_printf(d, err, "prompt %lld, %s", (long long)p, target_label);
            }
            if (!sub)
                return NN_ERR;
            add_panel(d, (cli_topk_panel){.title = text,
                                          .subtitle = sub,
                                          .n_rows = (int)sd[1],
                                          .k = k,
                                          .layers = s_layers,
                                          .ids = s_ids + p * sd[1] * sd[2],
                                          .probs = s_probs + p * sd[1] * sd[2],
                                          .stride = (size_t)sd[2]});
        }
    }
    if (d->n_panels == 0)
        return nn_fail(err, "%s: the prompts chosen have no results to draw", pa->store);
    return NN_OK;
}

int cmd_plot(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) /* an SAE feature's page: cli/plot_feature.c */
        if (!strcmp(argv[i], "--feature"))
            return cli_plot_feature(argc, argv);
    plot_args pa = {0};
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            cli_print_help("plot", usage_plot);
            return 0;
        }
        if (k[0] != '-' || !strcmp(k, "-")) {
            if (pa.store)
                return cli_usage_error(usage_plot, "unexpected argument '%s'", k);
            pa.store = k;
            continue;
        }
        if (cli_check_option("plot", k, NULL))
            return EXIT_USAGE;
        if (!v)
            return cli_usage_error(usage_plot, "option '%s' needs a value", k);
        i++;
        if (!strcmp(k, "-o") || !strcmp(k, "--output"))
            pa.output = v;
        else if (!strcmp(k, "--prompt") || !strcmp(k, "-p"))
            pa.prompts = v;
        else if (!strcmp(k, "--op"))
            pa.op = v;
        else if (!strcmp(k, "-m") || !strcmp(k, "--model"))
            pa.model = v;
        else if (!strcmp(k, "--tokenizer"))
            pa.tokenizer = v;
        else if (!strcmp(k, "--title"))
            pa.title = v;
        else if (!strcmp(k, "-k") || !strcmp(k, "--top-k")) {
            double x;
            if (cli_parse_number(v, 1, 1e6, &x) || x != (int)x)
                return cli_usage_error(usage_plot, "-k takes a positive integer, not '%s'", v);
            pa.k = (int)x;
        } else
            return cli_usage_error(usage_plot, "unknown option '%s'", k);
    }
    if (!pa.store)
        return cli_usage_error(usage_plot, "%s", "STORE.h5 is required");
    if (!pa.output)
        return cli_usage_error(usage_plot, "%s", "-o FILE.png or -o FILE.html is required");
    if (!nn_plot_format_known(pa.output))
        return cli_usage_error(usage_plot, "-o '%s': the name must end in .png or .html",
                               pa.output);
    if (pa.op && strcmp(pa.op, "logit_lens") && strcmp(pa.op, "patchscope_lens") &&
        strncmp(pa.op, "activation_patch", 16))
        return cli_usage_error(
            usage_plot, "--op '%s': logit_lens, patchscope_lens or activation_patch[_N]", pa.op);
    nn_err err = {{0}};
    plot_data *d = nn_calloc(1, sizeof *d, &err);
    int *list = NULL, n_list = 0;
    const char *what = "Top-k tokens";
    char *format = NULL;
    int rc = EXIT_FAILURE;
    if (!d || (pa.prompts && cli_parse_int_list(pa.prompts, 0, &list, &n_list, &err)) ||
        nn_h5_open_read(pa.store, &d->f, &err)) {
        cli_fail(&err);
        goto done;
    }
    if (!(format = nn_h5_get_attr_string(d->f, "/", NN_ATTR_FORMAT, &err))) {
        nn_fail(&err, "%s: not a file of nnterp run or nnterp lens -o (no format attribute)",
                pa.store);
        cli_fail(&err);
        goto done;
    }
    /* Lens files before version 1 of the schema had no format_version: read as version 1. A
     * trace file passes the check and is refused below for having no top-k results. */
    int64_t version = -1;
    nn_file_kind kind;
    if ((nn_h5_attr_exists(d->f, "/", NN_ATTR_FORMAT_VERSION) &&
         nn_h5_get_attr_i64(d->f, "/", NN_ATTR_FORMAT_VERSION, &version, &err)) ||
        nn_file_format_check(pa.store, format, (long)version,
                             1u << NN_FILE_STORE | 1u << NN_FILE_LENS | 1u << NN_FILE_PATCH |
                                 1u << NN_FILE_TRACE | 1u << NN_FILE_PATCHSCOPE,
                             &kind, &err)) {
        cli_fail(&err);
        goto done;
    }
    if (open_tokenizer(d, &pa, &err)) {
        cli_fail(&err);
        goto done;
    }
    char patch_group[128];
    bool lens_op = pa.op && strncmp(pa.op, "activation_patch", 16);
    if (!lens_op && (kind == NN_FILE_PATCH || kind == NN_FILE_STORE) &&
        cli_plot_patch_group(d->f, pa.op, patch_group, sizeof patch_group) &&
        (pa.op || kind == NN_FILE_PATCH ||
         !(nn_h5_exists(d->f, "/logit_lens") || nn_h5_exists(d->f, "/patchscope_lens")))) {
        /* an activation_patch sweep (cli/plot_patch.c) */
        rc = cli_plot_patch(d->f, pa.store, patch_group, d->tok, d->model, list, n_list, pa.title,
                            pa.output, &err)
                 ? cli_fail(&err)
                 : 0;
        goto done;
    }
    if (pa.op && !lens_op) {
        nn_fail(&err, "%s: no activation_patch sweep named %s", pa.store, pa.op);
        rc = cli_fail(&err);
        goto done;
    }
    if (kind == NN_FILE_LENS) {
        if (list && (n_list != 1 || list[0] != 0)) {
            nn_fail(&err, "%s: a lens file holds one prompt (--prompt 0)", pa.store);
            cli_fail(&err);
            goto done;
        }
        if (pa.op && strcmp(pa.op, "logit_lens")) {
            nn_fail(&err, "%s: a lens file holds logit lens results only", pa.store);
            cli_fail(&err);
            goto done;
        }
        rc = gather_lens_file(d, &pa, &what, &err);
    } else if (kind == NN_FILE_STORE) {
        rc = gather_store(d, &pa, list, n_list, &what, &err);
    } else {
        nn_fail(&err,
                "%s: format '%s' holds no top-k results to draw (nnterp run and nnterp lens "
                "-o stores do)",
                pa.store, format);
        rc = NN_ERR;
    }
    if (rc) {
        rc = cli_fail(&err);
        goto done;
    }
    if (d->skipped)
        fprintf(stderr,
                "nnterp: warning: drawing the first %d panels; %d more left out (choose prompts "
                "with --prompt)\n",
                d->n_panels, d->skipped);
    char title[512], name[256];
    if (pa.title)
        snprintf(title, sizeof title, "%s", pa.title);
    else if (d->model)
        snprintf(title, sizeof title, "%s \xe2\x80\x94 %s", what,
                 cli_model_name(d->model, name, sizeof name));
    else
        snprintf(title, sizeof title, "%s", what);
    rc = cli_plot_topk(pa.output, title, d->tok, d->panels, d->n_panels, &err) ? cli_fail(&err) : 0;
done:
    nn_free(format);
    nn_free(list);
    if (d)
        plot_data_free(d);
    nn_free(d);
    return rc;
}
