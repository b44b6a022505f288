/* nnterp sae: each token's strongest features of a sparse autoencoder (docs/sae.md). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "sae.h"

static const char *usage_sae =
    "usage: nnterp sae -m MODEL --sae DIR (-p TEXT | --ids \"1 2 3\") [--hook NAME] [-k K]\n"
    "Runs the model on the prompt and prints, for every token, the K strongest features (default\n"
    "10) of the SAE or transcoder in DIR (SAELens: cfg.json + sae_weights.safetensors; sparsify:\n"
    "cfg.json + sae.safetensors), its L0 and the reconstruction's squared error. --hook replaces\n"
    "the SAE's own hook (a TransformerLens name, a sparsify hookpoint, or this project's name).\n";

typedef struct grab {
    float *data;
    size_t n;
} grab;

static int grab_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    grab *g = user;
    nn_free(g->data);
    g->n = v->rows * v->cols;
    if (!(g->data = nn_malloc(g->n * sizeof(float), err)))
        return NN_ERR;
    memcpy(g->data, v->data, g->n * sizeof(float));
    return NN_HOOK_CONTINUE;
}

int cmd_sae(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_sae, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *dir = a.sae, *hook = a.hook;
    if (!dir)
        return cli_usage_error(usage_sae, "%s", "--sae DIR is required");
    if (a.n_prompts != 1)
        return cli_usage_error(usage_sae, "%s", "give one prompt, with -p TEXT or --ids");
    nn_err err = {{0}};
    nn_model *m = NULL;
    nn_tokenizer *tok = NULL;
    nn_sae sae = {0};
    nn_state *st = NULL;
    nn_sae_work *w = NULL;
    nn_hookset hs = {0};
    bool hs_init = false;
    grab in = {0}, out = {0};
    int32_t *prompt = NULL, *ids = NULL, *count = NULL, *l0 = NULL;
    float *vals = NULL, *recon = NULL;
    int n = 0;
    rc = EXIT_FAILURE;
    if (nn_model_load(a.model, &m, &err) ||
        cli_open_tokenizer(&a, m->source, m->cfg.vocab_size, cli_any_text(&a), &tok, &err) ||
        cli_prompt_ids(&a, 0, tok, &prompt, &n, &err) || nn_sae_load(dir, &sae, &err) ||
        nn_sae_bind(&sae, m, hook, &err))
        goto fail;
    int offsets[2] = {0, n};
    nn_batch b = {.tokens = prompt, .n_tokens = n, .n_seqs = 1, .offsets = offsets};
    nn_state_params sp = {.max_tokens = n, .max_seqs = 1};
    if (nn_state_init(&st, m, &sp, &err) || nn_hookset_init(&hs, m->cfg.n_layers, &err))
        goto fail;
    hs_init = true;
    int in_layer = nn_hook_point_per_layer(sae.in_point) ? sae.in_layer : -1;
    int out_layer = nn_hook_point_per_layer(sae.out_point) ? sae.out_layer : -1;
    if (nn_hookset_add(&hs, sae.in_point, in_layer, grab_hook, &in, &err) ||
        nn_hookset_add(&hs, sae.out_point, out_layer, grab_hook, &out, &err))
        goto fail;
    nn_forward_params fp = {.hooks = &hs};
    if (nn_forward(m, st, &b, &fp, &err) == NN_ERR)
        goto fail;
    int K = a.top_k < sae.d_sae ? a.top_k : sae.d_sae;
    size_t D = (size_t)sae.d_in, O = (size_t)sae.d_out;
    if (nn_sae_work_init(&w, &sae, st, &err) ||
        !(ids = nn_malloc((size_t)n * (size_t)K * sizeof *ids + 4, &err)) ||
        !(vals = nn_malloc((size_t)n * (size_t)K * sizeof *vals + 4, &err)) ||
        !(count = nn_malloc((size_t)n * sizeof *count + 4, &err)) ||
        !(l0 = nn_malloc((size_t)n * sizeof *l0 + 4, &err)) ||
        !(recon = nn_malloc((size_t)n * O * sizeof *recon + 4, &err)) ||
        nn_sae_encode(&sae, w, in.data, D, n, K, ids, vals, count, l0, recon, &err))
        goto fail;
    char in_name[64], out_name[64];
    snprintf(in_name, sizeof in_name, "%s.%d", nn_hook_point_name(sae.in_point), sae.in_layer);
    snprintf(out_name, sizeof out_name, "%s.%d", nn_hook_point_name(sae.out_point), sae.out_layer);
    printf("sae %s: %s, %d features, %s -> %s", sae.dir, sae.arch_name, sae.d_sae, sae.hook_name,
           in_name);
    if (sae.transcoder)
        printf(", predicting %s", out_name);
    printf("\n%4s  %-16s %5s %10s  top %d features (id:value)\n", "pos", "token", "L0", "sq.err",
           K);
    for (int t = 0; t < n; t++) {
        double e = 0;
        for (size_t i = 0; i < O; i++) {
            double d = (double)recon[(size_t)t * O + i] - out.data[(size_t)t * O + i];
            e += d * d;
        }
        printf("%4d  ", t);
        cli_print_token(stdout, tok, prompt[t], 16);
        printf(" %5d %10.4g ", l0[t], e);
        for (int j = 0; j < count[t]; j++)
            printf(" %d:%.3f", ids[(size_t)t * (size_t)K + (size_t)j],
                   (double)vals[(size_t)t * (size_t)K + (size_t)j]);
        printf("\n");
    }
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    if (hs_init)
        nn_hookset_free(&hs);
    nn_free(in.data);
    nn_free(out.data);
    nn_free(prompt);
    nn_free(ids);
    nn_free(vals);
    nn_free(count);
    nn_free(l0);
    nn_free(recon);
    nn_sae_work_free(w);
    nn_state_free(st);
    nn_sae_free(&sae);
    nn_tokenizer_free(tok);
    nn_model_free(m);
    return rc;
}
