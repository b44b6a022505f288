/* bench_forward: tokens/s of nnterp's forward pass while every layers_output is captured.
 *
 * Usage: bench_forward MODEL_DIR [--batch 8] [--tokens 128] [--reps 5] [--threads 1]
 *
 * It runs two modes over the same packed batch (BATCH prompts of TOKENS tokens each):
 *   layers_output         every layer's output copied into a preallocated buffer, logits of each
 *                         sequence's last position only (nnterp's natural mode);
 *   layers_output+logits  the same, plus a hook on `logits` so the head runs on every position,
 *                         as Hugging Face's forward does (the like-for-like comparison with
 *                         bench/torch_forward.py).
 * Each mode warms up once and then runs REPS times; the JSON on stdout gives the median. The
 * prompts are the ones torch_forward.py builds, so bench/run.sh can compare the two sides'
 * last-position logits ("check").
 *
 * --only-last runs the first mode alone (long prompts: full logits would dominate). --sgemm also
 * times OpenBLAS sgemm on the model's largest layer shape (tokens x d_ff x d_model) with the same
 * threads: the ceiling the forward's matmul FLOPs ("flops_per_token") are set against.
 *
 * --compute float32|bfloat16|bfloat16x3 sets the GEMM precision (nn_model_set_compute); with a
 * bfloat16 mode --library-rate also times the bfloat16 kernel alone on each of the forward's
 * linear shapes with all the batch's rows (oneDNN's matmul in one call on AMX, the vdpbf16ps
 * kernel elsewhere: nn_bf16_matmul_gflops; "library_linear_s": the seconds the kernel alone needs
 * for the forward's linear maps, one thread), which the forward's time is set against. */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_median.h"
#include "forward.h"
#include "hooks.h"
#include "model.h"
#include "pool.h"

/* Where the layers_output hook copies to: one [n_tokens, d] buffer per layer, allocated before
 * timing so the measured pass includes the copy but not an allocation. */
typedef struct capture {
    float **layer; /* [n_layers] */
    int n_layers;
    size_t floats; /* capacity of each buffer */
} capture;

static int capture_layer(const nn_hook_view *v, void *user, nn_err *err)
{
    capture *c = user;
    size_t n = v->rows * v->cols;
    if (v->layer < 0 || v->layer >= c->n_layers || n > c->floats)
        return nn_fail(err, "capture: layer %d view of %zu floats does not fit", v->layer, n);
    memcpy(c->layer[v->layer], v->data, n * sizeof(float));
    return NN_HOOK_CONTINUE;
}

/* Hooking `logits` is what makes the engine compute them for every position; like the tensor HF
 * returns, the view is readable in place, so the hook copies nothing. It counts its calls so the
 * JSON shows that the full-logits mode really ran with them. */
static int see_logits(const nn_hook_view *v, void *user, nn_err *err)
{
    if (v->rows == 0 || v->cols == 0)
        return nn_fail(err, "logits hook: empty view");
    ++*(long *)user;
    return NN_HOOK_CONTINUE;
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) {
        fprintf(stderr, "bench_forward: %s wants an integer in %d..%d, got '%s'\n", flag, lo, hi,
                s);
        return NN_ERR;
    }
    *out = (int)x;
    return NN_OK;
}

/* The matmul and attention FLOPs of one token of mode "layers_output": every layer's linear maps,
 * causal attention over a prompt of `tokens` (the average query sees (tokens + 1) / 2 keys, QK and
 * PV), and the head on one row of each prompt. */
static double flops_per_token(const nn_model *m, int tokens)
{
    const nn_config *c = &m->cfg;
    double f = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const nn_layer *L = &m->layers[l];
        const nn_linear *ws[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->w)
                f += 2.0 * ws[i]->n_in * ws[i]->n_out;
        f += 2.0 * 2.0 * (tokens + 1) / 2.0 * c->n_heads * c->head_dim;
    }
    return f + 2.0 * c->d_model * c->vocab_size / tokens;
}

/* Warm-up, then reps timed passes; secs gets each pass's wall time. */
static int time_mode(const nn_model *m, nn_state *st, const nn_batch *b, const nn_hookset *hs,
                     int reps, double *secs, nn_err *err)
{
    nn_forward_params fp = {.hooks = hs, .want_logits = true};
    for (int r = -1; r < reps; r++) {
        double t0 = nn_seconds();
        if (nn_forward(m, st, b, &fp, err) != NN_OK)
            return NN_ERR;
        if (r >= 0)
            secs[r] = nn_seconds() - t0;
    }
    return NN_OK;
}

static void print_mode(const char *name, const double *secs, int reps, int n_tokens, bool last)
{
    double med = median(secs, reps);
    printf("    \"%s\": {\"tokens_per_s_median\": %.6g, \"seconds_median\": %.6g, \"runs\": [",
           name, n_tokens / med, med);
    for (int r = 0; r < reps; r++)
        printf("%s%.6g", r ? ", " : "", n_tokens / secs[r]);
    printf("]}%s\n", last ? "" : ",");
}

int main(int argc, char **argv)
{
    const char *model_dir = NULL;
    int batch = 8, tokens = 128, reps = 5, threads = 1;
    bool only_last = false, want_sgemm = false, want_library = false;
    const char *compute = "float32";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--library-rate")) {
            want_library = true;
            continue;
        }
        if (!strcmp(a, "--compute") && i + 1 < argc) {
            compute = argv[++i];
            continue;
        }
        if (!strcmp(a, "--only-last") || !strcmp(a, "--sgemm")) {
            *(a[2] == 'o' ? &only_last : &want_sgemm) = true;
            continue;
        }
        int *dst = !strcmp(a, "--batch")     ? &batch
                   : !strcmp(a, "--tokens")  ? &tokens
                   : !strcmp(a, "--reps")    ? &reps
                   : !strcmp(a, "--threads") ? &threads
                                             : NULL;
        if (dst) {
            if (i + 1 >= argc || parse_int(a, argv[++i], 1, 1 << 20, dst))
                return 2;
        } else if (a[0] != '-' && !model_dir) {
            model_dir = a;
        } else {
            fprintf(stderr, "usage: bench_forward MODEL_DIR [--batch 8] [--tokens 128] [--reps 5] "
                            "[--threads 1] [--only-last] [--sgemm]\n");
            return 2;
        }
    }
    if (!model_dir) {
        fprintf(stderr, "usage: bench_forward MODEL_DIR [--batch 8] [--tokens 128] [--reps 5] "
                        "[--threads 1] [--only-last] [--sgemm]\n");
        return 2;
    }
    /* as the nnterp command does at start-up */
    nn_blas_sleep_when_idle();
    openblas_set_num_threads(threads);

    int rc = 1;
    nn_err err = {{0}};
    nn_model *model = NULL;
    nn_state *state = NULL;
    nn_hookset hs_a = {0}, hs_b = {0};
    capture cap = {0};
    int32_t *ids = NULL;
    int *offsets = NULL;
    double *secs_a = NULL, *secs_b = NULL;
    long logits_calls = 0;

    double t_load = nn_seconds();
    nn_compute mode;
    if (nn_compute_parse(compute, "--compute", &mode, &err) ||
        nn_model_load(model_dir, &model, &err) || nn_model_set_compute(model, mode, &err))
        goto done;
    t_load = nn_seconds() - t_load;
    const nn_config *c = &model->cfg;
    if ((long)batch * tokens > 1 << 24) {
        nn_fail(&err, "batch %d x %d tokens is too large for this benchmark", batch, tokens);
        goto done;
    }
    int n = batch * tokens;

    /* The prompts of torch_forward.py: token i of the packed batch is (i+1)*2654435761 mod 2^32
     * mod vocab (uint32 arithmetic wraps as the mod 2^32 does). */
    if (!(ids = nn_malloc((size_t)n * sizeof *ids, &err)) ||
        !(offsets = nn_malloc((size_t)(batch + 1) * sizeof *offsets, &err)) ||
        !(secs_a = nn_calloc((size_t)reps, sizeof *secs_a, &err)) ||
        !(secs_b = nn_calloc((size_t)reps, sizeof *secs_b, &err)))
        goto done;
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(((uint32_t)(i + 1) * 2654435761u) % (uint32_t)c->vocab_size);
    for (int s = 0; s <= batch; s++)
        offsets[s] = s * tokens;
    nn_batch b = {.tokens = ids, .n_tokens = n, .n_seqs = batch, .offsets = offsets};

    if (nn_state_init(&state, model, &(nn_state_params){.max_tokens = n, .max_seqs = batch}, &err))
        goto done;
    cap.n_layers = c->n_layers;
    cap.floats = (size_t)n * (size_t)c->d_model;
    if (!(cap.layer = nn_calloc((size_t)c->n_layers, sizeof *cap.layer, &err)))
        goto done;
    for (int l = 0; l < c->n_layers; l++)
        /* calloc touches nothing; the warm-up pass faults the pages in, as torch's does. */
        if (!(cap.layer[l] = nn_calloc(cap.floats, sizeof(float), &err)))
            goto done;

    if (nn_hookset_init(&hs_a, c->n_layers, &err) ||
        nn_hookset_add(&hs_a, NN_HP_LAYERS_OUTPUT, NN_ALL_LAYERS, capture_layer, &cap, &err) ||
        nn_hookset_init(&hs_b, c->n_layers, &err) ||
        nn_hookset_add(&hs_b, NN_HP_LAYERS_OUTPUT, NN_ALL_LAYERS, capture_layer, &cap, &err) ||
        nn_hookset_add(&hs_b, NN_HP_LOGITS, -1, see_logits, &logits_calls, &err))
        goto done;

    /* Mode (b) first so that mode (a)'s last-position logits are the ones left in the state for
     * the check; both modes compute them the same way. */
    if ((!only_last && time_mode(model, state, &b, &hs_b, reps, secs_b, &err)) ||
        time_mode(model, state, &b, &hs_a, reps, secs_a, &err))
        goto done;
    double gflops = 0;
    int ff = c->d_ff > c->d_model ? c->d_ff : 4 * c->d_model; /* the largest layer's width */
    if (want_sgemm && !(gflops = sgemm_gflops(n, ff, c->d_model, reps, &err)))
        goto done;

    /* The bfloat16 kernel alone on the forward's linear shapes: every layer's maps with all n rows,
     * and the head on the batch's last rows; each shape timed once, counted once per layer. */
    double library_s = 0;
    if (want_library && mode != NN_COMPUTE_F32) {
        const nn_layer *L0 = &model->layers[0];
        const nn_linear *ws[] = {&L0->q, &L0->k, &L0->v, &L0->o, &L0->gate, &L0->up, &L0->down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->w) {
                double g = nn_bf16_matmul_gflops(n, ws[i]->n_out, ws[i]->n_in, reps);
                library_s += c->n_layers * 2.0 * n * ws[i]->n_out * ws[i]->n_in / (g * 1e9);
            }
        double g = nn_bf16_matmul_gflops(batch, c->vocab_size, c->d_model, reps);
        library_s += 2.0 * batch * c->vocab_size * c->d_model / (g * 1e9);
    }
    const float *logits = nn_state_logits(state);
    size_t V = (size_t)c->vocab_size;
    double cap_check = 0.0;
    for (int s = 0; s < batch; s++) {
        const float *row = cap.layer[c->n_layers - 1] + ((size_t)offsets[s + 1] - 1) * c->d_model;
        for (int i = 0; i < c->d_model; i++)
            cap_check += row[i] < 0 ? -row[i] : row[i];
    }

    printf("{\n  \"impl\": \"nnterp\",\n  \"model\": \"%s\",\n  \"model_type\": \"%s\",\n",
           model->source, c->arch->model_type);
    printf("  \"batch\": %d, \"tokens\": %d, \"threads\": %d, \"reps\": %d,\n", batch, tokens,
           threads, reps);
    printf("  \"openblas_core\": \"%s\", \"blas_thread_timeout\": \"%s\",\n  \"load_s\": %.6g,\n",
           openblas_get_corename(),
           getenv("OPENBLAS_THREAD_TIMEOUT") ? getenv("OPENBLAS_THREAD_TIMEOUT") : "28 (default)",
           t_load);
    printf("  \"tokens_per_s_median\": %.6g,\n", n / median(secs_a, reps));
    printf("  \"flops_per_token\": %.6g,\n", flops_per_token(model, tokens));
    if (want_sgemm)
        printf("  \"sgemm_gflops\": %.6g, \"sgemm_shape\": [%d, %d, %d],\n", gflops, n, ff,
               c->d_model);
    printf("  \"compute\": \"%s\", \"compute_kernel\": \"%s\",\n", nn_compute_name(mode),
           model->compute_kernel);
    if (library_s > 0)
        printf("  \"library_linear_s\": %.6g,\n", library_s);
    printf("  \"modes\": {\n");
    print_mode("layers_output", secs_a, reps, n, only_last);
    if (!only_last)
        print_mode("layers_output+logits", secs_b, reps, n, true);
    printf("  },\n  \"check\": [");
    for (int s = 0; s < batch; s++)
        for (int j = 0; j < 4 && (size_t)j < V; j++)
            printf("%s%.9g", s || j ? ", " : "", logits[(size_t)s * V + (size_t)j]);
    printf("],\n  \"capture_check\": %.9g,\n  \"logits_hook_calls\": %ld\n}\n", cap_check,
           logits_calls);
    rc = 0;
done:
    if (rc)
        fprintf(stderr, "bench_forward: %s\n", err.msg);
    if (cap.layer)
        for (int l = 0; l < cap.n_layers; l++)
            nn_free(cap.layer[l]);
    nn_free(cap.layer);
    nn_hookset_free(&hs_a);
    nn_hookset_free(&hs_b);
    nn_state_free(state);
    nn_model_free(model);
    nn_free(ids);
    nn_free(offsets);
    nn_free(secs_a);
    nn_free(secs_b);
    return rc;
}
