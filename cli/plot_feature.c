/* nnterp plot STORE.h5 --feature F: a sparse-autoencoder feature's page from a job's sae
 * operation (docs/sae.md). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "feature_plot.h"
#include "h5file.h"
#include "model.h"

static const char *usage_feature =
    "usage: nnterp plot STORE.h5 --feature F -o FILE.html|FILE.png [--sae I] [--op GROUP]\n"
    "                   [--context N] [-m MODEL] [--tokenizer FILE]\n"
    "Draws feature F of SAE I (default 0) of the store's sae operation GROUP (default sae): its\n"
    "density, firing count, max and mean, the histogram of its activations, and its top\n"
    "activating contexts (N tokens each side, default 8) shaded by its activation.\n";

enum { BINS = 40 };

static void *read_dataset(nn_h5file *f, const char *path, size_t elem, uint64_t *dims, nn_err *err)
{
    nn_h5_type type;
    int rank;
    uint64_t d[8];
    if (nn_h5_shape(f, path, &type, &rank, d, err))
        return NULL;
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)d[i];
    if (dims)
        memcpy(dims, d, 2 * sizeof *d);
    void *buf = nn_malloc(n * elem + 8, err);
    if (buf && nn_h5_read(f, path, buf, n * elem + 8, err)) {
        nn_free(buf);
        return NULL;
    }
    return buf;
}

int cli_plot_feature(int argc, char **argv)
{
    const char *store = NULL, *out = NULL, *group = "sae", *model = NULL, *tokenizer = NULL;
    long feature = -1, sae_index = 0, context = 8;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            cli_print_help("plot --feature", usage_feature);
            return 0;
        }
        if (k[0] != '-') {
            if (store)
                return cli_usage_error(usage_feature, "unexpected argument '%s'", k);
            store = k;
            continue;
        }
        if (cli_check_option("plot --feature", k, NULL))
            return EXIT_USAGE;
        if (i + 1 >= argc)
            return cli_usage_error(usage_feature, "option '%s' needs a value", k);
        const char *v = argv[++i];
        if (!strcmp(v, "-h") || !strcmp(v, "--help")) { /* nnterp plot --feature --help */
            cli_print_help("plot --feature", usage_feature);
            return 0;
        }
        double x;
        if (!strcmp(k, "-o") || !strcmp(k, "--output"))
            out = v;
        else if (!strcmp(k, "--op"))
            group = v;
        else if (!strcmp(k, "-m") || !strcmp(k, "--model"))
            model = v;
        else if (!strcmp(k, "--tokenizer"))
            tokenizer = v;
        else if (!strcmp(k, "--feature") || !strcmp(k, "--sae") || !strcmp(k, "--context")) {
            if (cli_parse_number(v, 0, 1e9, &x) || x != (long)x)
                return cli_usage_error(usage_feature, "'%s' needs a non-negative integer", k);
            *(k[2] == 'f' ? &feature : k[2] == 's' ? &sae_index : &context) = (long)x;
        } else
            return cli_usage_error(usage_feature, "unknown option '%s'", k);
    }
    if (!store || !out || feature < 0)
        return cli_usage_error(usage_feature, "%s", "STORE.h5, --feature F and -o FILE are needed");
    const char *dot = strrchr(out, '.');
    if (!dot || (strcmp(dot, ".png") && strcmp(dot, ".html") && strcmp(dot, ".htm")))
        return cli_usage_error(usage_feature, "-o %s: write .png or .html", out);

    nn_err err = {{0}};
    nn_h5file *f = NULL;
    nn_tokenizer *tok = NULL;
    char *store_model = NULL, *hook = NULL;
    int64_t *count = NULL, *offs = NULL, hist[BINS] = {0};
    float *density = NULL, *mx = NULL, *mean = NULL, *top_v = NULL, *acts = NULL;
    int32_t *top_p = NULL, *top_pos = NULL, *ids = NULL, *tokens = NULL;
    nn_feature_example *ex = NULL;
    char **texts = NULL;
    float *ex_acts = NULL;
    int n_ex = 0, rc = EXIT_FAILURE;
    uint64_t fdims[2] = {0}, tdims[2] = {0}, odims[2] = {0}, cdims[2] = {0};
    char g[160], path[224];
    snprintf(g, sizeof g, "/%s/%ld", group, sae_index);
    if (nn_h5_open_read(store, &f, &err))
        goto fail;
    snprintf(path, sizeof path, "%s/features/count", g);
    if (!nn_h5_exists(f, path)) {
        nn_fail(&err, "%s: no %s (a job's sae operation writes it; --op, --sae choose another)",
                store, path);
        goto fail;
    }
#define READ(var, name, elem, dims)                                                                \
    do {                                                                                           \
        snprintf(path, sizeof path, "%s/%s", g, name);                                             \
        if (!(var = read_dataset(f, path, elem, dims, &err)))                                      \
            goto fail;                                                                             \
    } while (0)
    READ(count, "features/count", sizeof *count, cdims);
    READ(density, "features/density", sizeof *density, NULL);
    READ(mx, "features/max", sizeof *mx, NULL);
    READ(mean, "features/mean", sizeof *mean, NULL);
    READ(top_v, "features/top_values", sizeof *top_v, fdims);
    READ(top_p, "features/top_prompts", sizeof *top_p, NULL);
    READ(top_pos, "features/top_positions", sizeof *top_pos, NULL);
    READ(ids, "feature_ids", sizeof *ids, tdims);
    READ(acts, "feature_acts", sizeof *acts, NULL);
#undef READ
    if (!(offs = read_dataset(f, "/prompts/token_offsets", sizeof *offs, odims, &err)) ||
        !(tokens = read_dataset(f, "/tokens/ids", sizeof *tokens, NULL, &err)))
        goto fail;
    if ((uint64_t)feature >= cdims[0]) {
        nn_fail(&err, "--feature %ld: the SAE has features 0..%llu", feature,
                (unsigned long long)cdims[0] - 1);
        goto fail;
    }
    hook = nn_h5_get_attr_string(f, g, "sae_hook", &err);
    /* the tokenizer: --tokenizer, -m, or the store's model */
    {
        args a = {0};
        a.tokenizer = tokenizer;
        nn_err ignored;
        store_model =
            model ? nn_strdup(model, &err) : nn_h5_get_attr_string(f, "/", "model", &ignored);
        if (tokenizer)
            nn_tokenizer_load(tokenizer, &tok, &ignored);
        else if (store_model)
            cli_open_tokenizer(&a, store_model, 0, false, &tok, &ignored);
    }
    /* the histogram of the feature's activations over every token where it is kept */
    size_t N = (size_t)tdims[0], K = (size_t)tdims[1], T = (size_t)fdims[1];
    float peak = mx[feature] > 0 ? mx[feature] : 1.0f;
    for (size_t t = 0; t < N; t++)
        for (size_t j = 0; j < K && ids[t * K + j] >= 0; j++)
            if (ids[t * K + j] == feature) {
                int b = (int)((double)acts[t * K + j] / (double)peak * BINS);
                hist[b >= BINS ? BINS - 1 : b < 0 ? 0 : b]++;
            }
    /* the top contexts */
    size_t span = 2 * (size_t)context + 1;
    if (!(ex = nn_calloc(T + 1, sizeof *ex, &err)) ||
        !(texts = nn_calloc((T + 1) * span, sizeof *texts, &err)) ||
        !(ex_acts = nn_calloc((T + 1) * span, sizeof *ex_acts, &err)))
        goto fail;
    for (size_t e = 0; e < T; e++) {
        int p = top_p[(size_t)feature * T + e], pos = top_pos[(size_t)feature * T + e];
        if (p < 0)
            break;
        int64_t t0 = offs[p], t1 = offs[p + 1], at = t0 + pos;
        int64_t a = at - context < t0 ? t0 : at - context,
                b = at + context + 1 > t1 ? t1 : at + context + 1;
        nn_feature_example *x = &ex[n_ex++];
        x->prompt = p;
        x->position = pos;
        x->value = top_v[(size_t)feature * T + e];
        x->n_tokens = (int)(b - a);
        x->highlight = (int)(at - a);
        x->texts = (const char *const *)(texts + e * span);
        x->acts = ex_acts + e * span;
        for (int64_t t = a; t < b; t++) {
            char *s = tok ? cli_token_text(tok, tokens[t]) : NULL;
            if (!s) {
                char idbuf[24];
                snprintf(idbuf, sizeof idbuf, "#%d", tokens[t]);
                s = nn_strdup(idbuf, &err);
            }
            texts[e * span + (size_t)(t - a)] = s;
            float v = 0;
            for (size_t j = 0; j < K && ids[(size_t)t * K + j] >= 0; j++)
                if (ids[(size_t)t * K + j] == feature)
                    v = acts[(size_t)t * K + j];
            ex_acts[e * span + (size_t)(t - a)] = v;
        }
    }
    char title[320];
    snprintf(title, sizeof title, "feature %ld of %s (%s)", feature, g + 1, hook ? hook : "?");
    nn_feature_page page = {.title = title,
                            .count = count[feature],
                            .n_tokens = offs[odims[0] - 1],
                            .density = density[feature],
                            .max = mx[feature],
                            .mean = mean[feature],
                            .hist = hist,
                            .n_bins = BINS,
                            .hist_max = peak,
                            .examples = ex,
                            .n_examples = n_ex};
    if (nn_feature_page_write(&page, out, &err))
        goto fail;
    fprintf(stderr, "nnterp: wrote %s: feature %ld, %d contexts\n", out, feature, n_ex);
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    for (size_t i = 0; texts && i < (fdims[1] + 1) * (2 * (size_t)context + 1); i++)
        nn_free(texts[i]);
    nn_free(texts);
    nn_free(ex_acts);
    nn_free(ex);
    nn_free(count);
    nn_free(density);
    nn_free(mx);
    nn_free(mean);
    nn_free(top_v);
    nn_free(top_p);
    nn_free(top_pos);
    nn_free(ids);
    nn_free(acts);
    nn_free(offs);
    nn_free(tokens);
    nn_free(hook);
    nn_free(store_model);
    nn_tokenizer_free(tok);
    nn_h5_free(f);
    return rc;
}
