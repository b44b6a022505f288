/* bench_sae: the cost of an SAE in a dataset pass, set against the forward itself.
 *
 * Usage: bench_sae MODEL_DIR SAE_DIR [--batch 8] [--tokens 128] [--reps 3] [--dump X.f32]
 *
 * Runs the forward over BATCH prompts of TOKENS tokens (token ids as bench_forward builds them)
 * with the SAE's input hook captured, then times nn_sae_encode on the captured rows (every
 * token's kept features and its reconstruction, what the job's sae operation computes). One
 * thread (OpenBLAS and the pool): bench/sae.sh pins it to one core. JSON on stdout: medians.
 * --dump writes the captured rows (float32, [tokens, d]) for bench/sae_torch.py, which times
 * SAELens on the same rows. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_median.h"
#include "forward.h"
#include "pool.h"
#include "sae.h"

typedef struct grab {
    float *data;
    size_t cap;
} grab;

static int grab_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    grab *g = user;
    (void)err;
    size_t n = v->rows * v->cols;
    if (n <= g->cap)
        memcpy(g->data, v->data, n * sizeof(float));
    return NN_HOOK_CONTINUE;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_sae MODEL_DIR SAE_DIR [--batch 8] [--tokens 128] [--reps 3] "
                        "[--dump X.f32]\n");
        return 2;
    }
    int batch = 8, tokens = 128, reps = 3;
    const char *dump = NULL;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens"))
            tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dump"))
            dump = argv[i + 1];
    }
    nn_blas_sleep_when_idle();
    openblas_set_num_threads(1);
    nn_err err = {{0}};
    nn_model *m = NULL;
    nn_sae sae = {0};
    nn_state *st = NULL;
    nn_sae_work *w = NULL;
    nn_hookset hs = {0};
    grab g = {0};
    int rc = 1, n = batch * tokens;
    if (nn_model_load(argv[1], &m, &err) || nn_sae_load(argv[2], &sae, &err) ||
        nn_sae_bind(&sae, m, NULL, &err))
        goto done;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    int *offsets = malloc(((size_t)batch + 1) * sizeof *offsets);
    size_t D = (size_t)sae.d_in, K = (size_t)(sae.k ? sae.k : 64);
    g.cap = (size_t)n * D;
    g.data = malloc(g.cap * sizeof(float));
    int32_t *fid = malloc((size_t)n * K * sizeof *fid), *count = malloc((size_t)n * sizeof *count);
    int32_t *l0 = malloc((size_t)n * sizeof *l0);
    float *fval = malloc((size_t)n * K * sizeof *fval), *recon = malloc(g.cap * sizeof(float));
    double *t_fwd = malloc((size_t)reps * sizeof(double)),
           *t_sae = malloc((size_t)reps * sizeof(double));
    for (int b = 0; b <= batch; b++)
        offsets[b] = b * tokens;
    for (int i = 0; i < n; i++) /* bench_forward's ids: deterministic, spread over the vocabulary */
        ids[i] = (int32_t)((1000003u * (unsigned)i + 12345u) % (unsigned)m->cfg.vocab_size);
    nn_batch bt = {.tokens = ids, .n_tokens = n, .n_seqs = batch, .offsets = offsets};
    if (nn_state_init(&st, m, &(nn_state_params){.max_tokens = n, .max_seqs = batch}, &err) ||
        nn_hookset_init(&hs, m->cfg.n_layers, &err) ||
        nn_hookset_add(&hs, sae.in_point, sae.in_layer, grab_hook, &g, &err) ||
        nn_sae_work_init(&w, &sae, st, &err))
        goto done;
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    for (int r = -1; r < reps; r++) {
        double t0 = nn_seconds();
        if (nn_forward(m, st, &bt, &fp, &err) == NN_ERR)
            goto done;
        double t1 = nn_seconds();
        if (nn_sae_encode(&sae, w, g.data, D, n, (int)K, fid, fval, count, l0, recon, &err))
            goto done;
        double t2 = nn_seconds();
        if (r >= 0) {
            t_fwd[r] = t1 - t0;
            t_sae[r] = t2 - t1;
        }
    }
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(g.data, sizeof(float), g.cap, f) != g.cap || fclose(f)) {
            nn_fail(&err, "%s: cannot write", dump);
            goto done;
        }
    }
    double l0_mean = 0;
    for (int i = 0; i < n; i++)
        l0_mean += l0[i];
    printf("{\"tokens\": %d, \"d_sae\": %d, \"architecture\": \"%s\", \"hook\": \"%s\", "
           "\"forward_s\": %.6g, \"sae_s\": %.6g, \"sae_over_forward\": %.4g, \"l0_mean\": %.4g}\n",
           n, sae.d_sae, sae.arch_name, sae.hook_name, median(t_fwd, reps), median(t_sae, reps),
           median(t_sae, reps) / median(t_fwd, reps), l0_mean / n);
    rc = 0;
done:
    if (rc)
        fprintf(stderr, "bench_sae: %s\n", err.msg);
    nn_hookset_free(&hs);
    nn_sae_work_free(w);
    nn_state_free(st);
    nn_sae_free(&sae);
    nn_model_free(m);
    return rc;
}
