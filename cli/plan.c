/* nnterp plan: the layer split, memory per rank and predicted throughput of a distributed job. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "model.h"
#include "plan.h"

static const char *usage_plan =
    "usage: nnterp plan -m MODEL [--ranks N] [--stages P] [--threads K] [--cores C]\n"
    "                   [--batch-tokens B] [--prompt-tokens T] [--tokens TOTAL]\n"
    "                   [--logits none|last|all] [--lens none|last|all] [--shard-batches S]\n"
    "                   [--measure-layers M] [--compute C]\n"
    "Sizes `mpirun -np N nnterp run JOB.json` before it is submitted. Times one batch of B tokens\n"
    "(prompts of T tokens) through the embedding, the layers and the head on this machine with K\n"
    "BLAS threads, measures the memory a process needs beside its weights, then prints for N\n"
    "ranks as N/P replicas of P pipeline stages: the layer split `nnterp run` will use, each\n"
    "stage's seconds per batch and peak memory, the pipeline bubble, and the job's tokens/s\n"
    "(and its duration for --tokens TOTAL). Cores are this machine's unless --cores gives all\n"
    "the job's cores; ranks x threads beyond them share cores.\n"
    "  --ranks N          ranks of the job (default 1)\n"
    "  --stages P         parallel.pipeline_stages (default 1)\n"
    "  --threads K        BLAS threads per rank (default $OPENBLAS_NUM_THREADS, else 1)\n"
    "  --cores C          cores the ranks run on (default: this machine's)\n"
    "  --batch-tokens B   the job's batch_tokens (default 8192)\n"
    "  --prompt-tokens T  a typical prompt's tokens (default 128)\n"
    "  --logits ROWS      rows that need the model's logits: none (collect only), last (each\n"
    "                     prompt's last position: target_probs, steering; default), all\n"
    "  --lens ROWS        rows of the logit lens, unembedded at every layer (default none)\n"
    "  --shard-batches S  the job's shard_batches (default 1)\n"
    "  --measure-layers M layers to load and time (default: all when they fit in 2 GiB, else 2;\n"
    "                     the others are taken to cost the same)\n"
    "  --compute C        the job's compute: float32 (default), bfloat16, bfloat16x3\n";

static int parse_rows(const char *v, nn_plan_rows *out)
{
    if (!strcmp(v, "none"))
        *out = NN_PLAN_ROWS_NONE;
    else if (!strcmp(v, "last"))
        *out = NN_PLAN_ROWS_LAST;
    else if (!strcmp(v, "all"))
        *out = NN_PLAN_ROWS_ALL;
    else
        return 1;
    return 0;
}

static const char *rows_name(nn_plan_rows r)
{
    return r == NN_PLAN_ROWS_NONE ? "none" : r == NN_PLAN_ROWS_LAST ? "last positions" : "all";
}

int cmd_plan(int argc, char **argv)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env_threads = getenv("OPENBLAS_NUM_THREADS");
    nn_plan_request q = {.ranks = 1,
                         .stages = 1,
                         .threads = env_threads && atoi(env_threads) > 0 ? atoi(env_threads) : 1,
                         .cores = cores > 0 ? (int)cores : 1,
                         .batch_tokens = 8192,
                         .prompt_tokens = 128,
                         .shard_batches = 1,
                         .logits = NN_PLAN_ROWS_LAST,
                         .lens = NN_PLAN_ROWS_NONE};
    static const struct {
        const char *flag;
        size_t at;
        double lo, hi;
    } ints[] = {{"--ranks", offsetof(nn_plan_request, ranks), 1, 1 << 20},
                {"--stages", offsetof(nn_plan_request, stages), 1, 1 << 16},
                {"--threads", offsetof(nn_plan_request, threads), 1, 4096},
                {"--cores", offsetof(nn_plan_request, cores), 1, 1 << 24},
                {"--batch-tokens", offsetof(nn_plan_request, batch_tokens), 1, 1 << 24},
                {"--prompt-tokens", offsetof(nn_plan_request, prompt_tokens), 1, 1 << 24},
                {"--shard-batches", offsetof(nn_plan_request, shard_batches), 1, 1 << 20},
                {"--measure-layers", offsetof(nn_plan_request, measure_layers), 1, 1 << 16}};
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            cli_print_help("plan", usage_plan);
            return 0;
        }
        if (cli_check_option("plan", k, NULL))
            return EXIT_USAGE;
        if (!v)
            return cli_usage_error(usage_plan, "option '%s' needs a value", k);
        i++;
        size_t j = 0, n_ints = sizeof ints / sizeof ints[0];
        while (j < n_ints && strcmp(k, ints[j].flag) != 0)
            j++;
        double x;
        if (j < n_ints) {
            if (cli_parse_number(v, 1, 1e300, &x) || x != (int)x)
                return cli_usage_error(usage_plan, "a positive integer is needed, not '%s'", v);
            if (x < ints[j].lo || x > ints[j].hi) {
                fprintf(stderr, "nnterp: %s %s is out of range (%.0f to %.0f)\n\n%s", k, v,
                        ints[j].lo, ints[j].hi, usage_plan);
                return EXIT_USAGE;
            }
            *(int *)((char *)&q + ints[j].at) = (int)x;
        } else if (!strcmp(k, "-m") || !strcmp(k, "--model"))
            q.model = v;
        else if (!strcmp(k, "--tokens")) {
            if (cli_parse_number(v, 1, 1e18, &x))
                return cli_usage_error(usage_plan, "--tokens takes a positive count, not '%s'", v);
            q.tokens = (int64_t)x;
        } else if (!strcmp(k, "--logits")) {
            if (parse_rows(v, &q.logits))
                return cli_usage_error(usage_plan, "--logits is none, last or all, not '%s'", v);
        } else if (!strcmp(k, "--compute")) {
            nn_err e;
            if (nn_compute_parse(v, "--compute", &q.compute, &e))
                return cli_usage_error(usage_plan,
                                       "--compute is float32, bfloat16 or bfloat16x3, not '%s'", v);
        } else if (!strcmp(k, "--lens")) {
            if (parse_rows(v, &q.lens))
                return cli_usage_error(usage_plan, "--lens is none, last or all, not '%s'", v);
        } else
            return cli_usage_error(usage_plan, "unknown option '%s'", k);
    }
    if (!q.model)
        return cli_usage_error(usage_plan, "%s", "-m MODEL is required");
    nn_err err = {{0}};
    nn_config checked;
    bool prompt_given = false;
    for (int i = 2; i < argc; i++)
        prompt_given |= !strcmp(argv[i], "--prompt-tokens");
    /* The default prompt length fits the model and the batch; a given one is checked as is. */
    if (!prompt_given && nn_model_config(q.model, &checked, &err) == NN_OK) {
        if (q.prompt_tokens > checked.max_positions)
            q.prompt_tokens = checked.max_positions;
        if (q.prompt_tokens > q.batch_tokens)
            q.prompt_tokens = q.batch_tokens;
    }
    if (nn_plan_check(&q, &checked, &err))
        return cli_fail(&err);
    fprintf(stderr, "nnterp: timing a batch on this machine...\n");
    nn_plan p;
    if (nn_plan_make(&q, &p, &err))
        return cli_fail(&err);
    const nn_config *cfg = &p.cfg;
    int L = cfg->n_layers, P = p.n_stages;
    printf("model        %s: %s, %d layers, d_model %d, vocabulary %d\n", q.model,
           cfg->arch->family, L, cfg->d_model, cfg->vocab_size);
    printf("layout       %d rank%s = %d replica%s x %d pipeline stage%s, %d BLAS thread%s each, "
           "%d cores\n",
           q.ranks, q.ranks == 1 ? "" : "s", p.replicas, p.replicas == 1 ? "" : "s", P,
           P == 1 ? "" : "s", q.threads, q.threads == 1 ? "" : "s", q.cores);
    printf("batch        %d prompts x %d tokens = %d tokens (batch_tokens %d); logits: %s; "
           "logit lens: %s\n",
           p.batch_prompts, p.batch_tokens_used / p.batch_prompts, p.batch_tokens_used,
           q.batch_tokens, rows_name(q.logits), rows_name(q.lens));
    printf("compute      %s: %s\n", nn_compute_name(q.compute), p.compute_kernel);
    printf("\nmeasured here (median of 3, %d thread%s; at most %d layers loaded, the bound of "
           "what this process maps and touches):\n",
           p.threads, p.threads == 1 ? "" : "s", p.measured_layers);
    printf("  embedding          %8.2f ms per batch\n", 1e3 * p.embed_s);
    double sum = 0;
    for (int l = 0; l < p.measured_layers; l++)
        sum += p.layer_s[l];
    printf("  layers 0-%-3d       %8.2f ms per batch each (mean), %.1f MB of weights each\n",
           p.measured_layers - 1, 1e3 * sum / p.measured_layers, p.layer_mb[0]);
    if (p.measured_layers < L)
        printf("  layers %d-%-3d       taken to cost the same (not loaded)\n", p.measured_layers,
               L - 1);
    if (q.logits != NN_PLAN_ROWS_NONE || q.lens != NN_PLAN_ROWS_NONE)
        printf("  head               %8.3f ms per row (last positions), %.1f MB\n",
               1e3 * p.head_last_row_s, p.head_mb);
    if (q.logits == NN_PLAN_ROWS_ALL || q.lens == NN_PLAN_ROWS_ALL)
        printf("  head               %8.3f ms per row (every position)\n", 1e3 * p.head_all_row_s);
    printf("  beside weights     %8.1f MB per process (runtime, one batch's activations)\n",
           p.overhead_mb);
    printf("\nstage  layers     seconds/batch  peak memory per rank\n");
    for (int k = 0; k < P; k++)
        printf("%5d  [%d, %d)%*s %10.3f s   %8.0f MB%s%s\n", k, p.split[k], p.split[k + 1],
               (int)(8 - snprintf(NULL, 0, "[%d, %d)", p.split[k], p.split[k + 1])), "",
               p.stage_s[k], p.rank_mb[k], k == 0 ? "  + embedding" : "",
               k == P - 1 && q.logits != NN_PLAN_ROWS_NONE ? "  + head" : "");
    printf("\none rank     %.3f s per batch, %.0f tokens/s\n", p.one_rank_s,
           p.batch_tokens_used / p.one_rank_s);
    if (P > 1)
        printf(
            "pipeline     %.0f batches per replica between commits; bubble %.0f%% = (P-1)/(m+P-1)"
            "\n",
            p.round_batches, 100 * p.bubble);
    if (p.contention < 1)
        printf("cores        %d ranks x %d thread%s share %d cores: x %.2f\n", q.ranks, q.threads,
               q.threads == 1 ? "" : "s", q.cores, p.contention);
    printf("predicted    %.0f tokens/s", p.tokens_per_s);
    if (q.tokens)
        printf("; %lld tokens in %.0f s (%.1f h), plus start-up", (long long)q.tokens, p.seconds,
               p.seconds / 3600);
    printf("\n");
    nn_plan_free(&p);
    return 0;
}
