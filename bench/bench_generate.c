/* bench_generate: tokens/s of generation, one prompt at a time against batched.
 *
 * Usage: bench_generate MODEL_DIR [--prompts 16] [--tokens 16] [--new 32] [--reps 3]
 *
 * PROMPTS prompts of TOKENS ids each generate NEW tokens greedily (no EOS stop, so every run
 * does the same work):
 *   one_prompt  nn_generate_ctx per prompt (a forward of one row per decode step), as jobs ran
 *               generation before nn_generate_batch_ctx;
 *   batched     nn_generate_batch_ctx over all prompts (one row per sequence per step);
 *   collect     one forward pass over the packed prompts, no cache: the rate of the collect
 *               operation, the ceiling a decode step's rows are set against.
 * Rates are generated tokens per second (collect: prompt tokens per second), medians of REPS runs
 * after a warm-up; both generation modes' tokens are compared ("same_tokens"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_median.h"
#include "nnterp.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_generate MODEL_DIR [--prompts N] [--tokens T] [--new G] "
                        "[--reps R]\n");
        return 2;
    }
    int P = 16, T = 16, G = 32, R = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--prompts"))
            P = v;
        else if (!strcmp(argv[i], "--tokens"))
            T = v;
        else if (!strcmp(argv[i], "--new"))
            G = v;
        else if (!strcmp(argv[i], "--reps"))
            R = v;
    }
    if (P < 1 || T < 1 || G < 1 || R < 1 || R > 64) {
        fprintf(stderr, "bench_generate: counts must be positive (reps at most 64)\n");
        return 2;
    }
    nn_err err = {{0}};
    nn_model *m = NULL;
    if (nn_model_load(argv[1], &m, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    int V = nn_model_cfg(m)->vocab_size;
    int32_t *tokens = malloc((size_t)P * T * sizeof *tokens);
    int32_t *one = malloc((size_t)P * G * sizeof *one), *bat = malloc((size_t)P * G * sizeof *bat);
    int64_t *offsets = malloc((size_t)(P + 1) * sizeof *offsets);
    int *offs32 = malloc((size_t)(P + 1) * sizeof *offs32),
        *n_out = malloc((size_t)P * sizeof(int));
    nn_context *cx = NULL;
    if (!tokens || !one || !bat || !offsets || !offs32 || !n_out ||
        nn_context_init(&cx, m, NULL, &err)) {
        fprintf(stderr, "bench_generate: out of memory or %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < (size_t)P * T; i++)
        tokens[i] = (int32_t)((i * 7919 + 11) % (size_t)V);
    for (int q = 0; q <= P; q++)
        offsets[q] = offs32[q] = q * T;
    nn_generate_params gp = nn_generate_default_params();
    gp.max_new_tokens = G;
    gp.stop_at_eos = false;
    double t_one[64], t_bat[64], t_col[64];
    nn_batch b = {.tokens = tokens, .n_tokens = P * T, .n_seqs = P, .offsets = offs32};
    nn_forward_params fp = {.want_logits = true};
    for (int r = -1; r < R; r++) {
        double t0 = now();
        for (int q = 0; q < P; q++) {
            int n = 0;
            if (nn_generate_ctx(cx, tokens + (size_t)q * T, T, &gp, one + (size_t)q * G, &n, &err))
                goto fail;
        }
        double t1 = now();
        if (nn_generate_batch_ctx(cx, tokens, offsets, P, &gp, NULL, bat, n_out, &err))
            goto fail;
        double t2 = now();
        if (nn_context_forward(cx, &b, &fp, &err) == NN_ERR)
            goto fail;
        double t3 = now();
        if (r >= 0) {
            t_one[r] = t1 - t0;
            t_bat[r] = t2 - t1;
            t_col[r] = t3 - t2;
        }
    }
    double gen = (double)P * G, one_s = median(t_one, R), bat_s = median(t_bat, R),
           col_s = median(t_col, R);
    printf("{\"model\": \"%s\", \"prompts\": %d, \"prompt_tokens\": %d, \"new_tokens\": %d, "
           "\"one_prompt_tok_s\": %.1f, \"batched_tok_s\": %.1f, \"speedup\": %.2f, "
           "\"collect_tok_s\": %.1f, \"batched_vs_collect\": %.3f, \"same_tokens\": %s}\n",
           argv[1], P, T, G, gen / one_s, gen / bat_s, one_s / bat_s, (double)P * T / col_s,
           (gen / bat_s) / ((double)P * T / col_s),
           memcmp(one, bat, (size_t)P * G * sizeof *one) ? "false" : "true");
    nn_context_free(cx);
    nn_model_free(m);
    free(tokens), free(one), free(bat), free(offsets), free(offs32), free(n_out);
    return 0;
fail:
    fprintf(stderr, "bench_generate: %s\n", err.msg);
    return 1;
}
