#include "plan.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "pipeline.h"
#include "stage.h"

/* Above this many bytes of layer weights, only a few layers are loaded and timed. */
#define MEASURE_ALL_BYTES (2.0 * 1024 * 1024 * 1024)

static double peak_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static double linear_mb(const nn_linear *l)
{
    if (!l->w)
        return 0;
    double weights = (double)l->n_in * l->n_out * (double)nn_linear_elem_size(l);
    return (weights + (l->b ? l->n_out * 4.0 : 0)) / (1024.0 * 1024.0);
}

static double layer_mb(const nn_config *c, const nn_layer *L)
{
    double mb = linear_mb(&L->q) + linear_mb(&L->k) + linear_mb(&L->v) + linear_mb(&L->o) +
                linear_mb(&L->gate) + linear_mb(&L->up) + linear_mb(&L->down) +
                linear_mb(&L->router) + linear_mb(&L->shared_expert_gate);
    for (int e = 0; L->moe && e < c->n_experts; e++)
        mb += linear_mb(&L->experts[e].gate) + linear_mb(&L->experts[e].up) +
              linear_mb(&L->experts[e].down);
    return mb + 4.0 * c->d_model * 4.0 / (1024.0 * 1024.0); /* norms */
}

/* The median of REPS timings of step i of n steps; times[r * n + i]. */
enum { REPS = 3 };
static double median_of(const double *times, int n, int i)
{
    double v[REPS];
    for (int r = 0; r < REPS; r++)
        v[r] = times[r * n + i];
    return nn_median_in_place(v, REPS);
}

int nn_plan_round_batches(int n_stages, int replicas, int shard_batches)
{
    if (n_stages <= 1 && replicas <= 1)
        return shard_batches;
    /* 4P batches keep the fill-and-drain bubble (P-1)/(m+P-1) near a tenth for every P */
    int want = 4 * (n_stages > 1 ? n_stages : 1);
    return (want + shard_batches - 1) / shard_batches * shard_batches;
}

static int measure(const nn_plan_request *req, const nn_config *cfg, nn_plan *p, nn_err *err)
{
    int L = cfg->n_layers;
    double before = peak_mb();
    /* a uniform layer's size decides how many layers can be loaded to time */
    double layer_bytes = nn_pipeline_layer_cost(cfg) * 4.0;
    int Lm = req->measure_layers;
    if (Lm <= 0)
        Lm = layer_bytes * L <= MEASURE_ALL_BYTES ? L : 2;
    if (Lm > L)
        Lm = L;
    p->measured_layers = Lm;
    nn_model *m = NULL;
    nn_state *s = NULL;
    int32_t *tokens = NULL;
    int *offsets = NULL;
    double *times = NULL;
    float *scratch = NULL, *logits = NULL;
    int rc = NN_ERR;
    if (nn_model_load_layers(req->model, 0, Lm, &m, err))
        return NN_ERR;
    if (nn_model_set_compute(m, req->compute, err)) {
        nn_model_free(m);
        return NN_ERR;
    }
    snprintf(p->compute_kernel, sizeof p->compute_kernel, "%s", m->compute_kernel);
    int T = req->prompt_tokens < req->batch_tokens ? req->prompt_tokens : req->batch_tokens;
    if (T > cfg->max_positions)
        T = cfg->max_positions;
    int S = req->batch_tokens / T, N = S * T;
    p->batch_prompts = S;
    p->batch_tokens_used = N;
    bool head = req->logits != NN_PLAN_ROWS_NONE || req->lens != NN_PLAN_ROWS_NONE;
    bool all_rows = req->logits == NN_PLAN_ROWS_ALL || req->lens == NN_PLAN_ROWS_ALL;
    size_t D = (size_t)cfg->d_model, V = (size_t)cfg->vocab_size;
    nn_state_params sp = {.max_tokens = N, .max_seqs = S};
    int n_steps = Lm + 3; /* embedding, layers, head on the last rows, head on every row */
    if (!(tokens = nn_malloc((size_t)N * sizeof *tokens, err)) ||
        !(offsets = nn_malloc(((size_t)S + 1) * sizeof *offsets, err)) ||
        !(times = nn_calloc((size_t)REPS * n_steps, sizeof *times, err)) ||
        (all_rows && (!(scratch = nn_malloc((size_t)N * D * sizeof *scratch, err)) ||
                      !(logits = nn_malloc((size_t)N * V * sizeof *logits, err)))) ||
        nn_state_init(&s, m, &sp, err))
        goto done;
    /* Token ids spread over the vocabulary, as text would be: a fixed pseudo-random sequence. */
    uint32_t x = 2463534242u;
    for (int t = 0; t < N; t++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        tokens[t] = (int32_t)(x % (uint32_t)cfg->vocab_size);
    }
    for (int q = 0; q <= S; q++)
        offsets[q] = q * T;
    nn_batch b = {.tokens = tokens, .n_tokens = N, .n_seqs = S, .offsets = offsets};
    nn_forward_params want = {.want_logits = true};
    /* One untimed pass first: it pages the weights in, as a job's first batch does. */
    for (int r = -1; r < REPS; r++) {
        double *row = times + (size_t)(r < 0 ? 0 : r) * (size_t)n_steps, t0 = nn_seconds();
        if (nn_forward_range(m, s, &b, NULL, 0, 0, true, false, err))
            goto done;
        row[0] = nn_seconds() - t0;
        for (int l = 0; l < Lm; l++) {
            t0 = nn_seconds();
            if (nn_forward_range(m, s, &b, NULL, l, l + 1, false, false, err))
                goto done;
            row[1 + l] = nn_seconds() - t0;
        }
        if (head) {
            t0 = nn_seconds();
            if (nn_forward_range(m, s, &b, &want, Lm, Lm, false, true, err))
                goto done;
            row[Lm + 1] = (nn_seconds() - t0) / S;
        }
        if (all_rows) {
            t0 = nn_seconds();
            nn_unembed(m, s, nn_state_hidden(s), N, scratch, logits);
            row[Lm + 2] = (nn_seconds() - t0) / N;
        }
    }
    p->embed_s = median_of(times, n_steps, 0);
    double measured_s = 0, measured_mb = 0;
    for (int l = 0; l < Lm; l++) {
        p->layer_s[l] = median_of(times, n_steps, 1 + l);
        p->layer_mb[l] = layer_mb(cfg, &m->layers[l]);
        measured_s += p->layer_s[l];
        measured_mb += p->layer_mb[l];
    }
    /* The layers not loaded cost what the loaded ones cost per byte of weights. */
    for (int l = Lm; l < L; l++) {
        p->layer_mb[l] = measured_mb / Lm;
        p->layer_s[l] = measured_s / Lm;
    }
    p->head_last_row_s = head ? median_of(times, n_steps, Lm + 1) : 0;
    p->head_all_row_s = all_rows ? median_of(times, n_steps, Lm + 2) : p->head_last_row_s;
    p->head_mb = head ? linear_mb(&m->head) : 0;
    /* a batch touches the embedding rows of its tokens: at most the vocabulary */
    p->embed_mb = (double)(N < cfg->vocab_size ? N : cfg->vocab_size) * D *
                  (m->tok_emb_dtype == NN_DT_F32 ? 4.0 : 2.0) / (1024.0 * 1024.0);
    double touched = measured_mb + p->embed_mb + p->head_mb;
    /* everything but the weights a batch touched; never less than the process held at start */
    double beside = peak_mb() - touched;
    p->overhead_mb = beside > before ? beside : before;
    rc = NN_OK;
done:
    nn_free(tokens);
    nn_free(offsets);
    nn_free(times);
    nn_free(scratch);
    nn_free(logits);
    nn_state_free(s);
    nn_model_free(m);
    return rc;
}

void nn_plan_free(nn_plan *p)
{
    nn_free(p->layer_s);
    nn_free(p->layer_mb);
    nn_free(p->split);
    nn_free(p->stage_s);
    nn_free(p->rank_mb);
    memset(p, 0, sizeof *p);
}

int nn_plan_check(const nn_plan_request *req, nn_config *cfg, nn_err *err)
{
    int P = req->stages;
    if (req->ranks < 1 || P < 1 || req->threads < 1 || req->cores < 1 || req->batch_tokens < 1 ||
        req->prompt_tokens < 1 || req->shard_batches < 1)
        return nn_fail(err, "plan: ranks, stages, threads, cores, batch and prompt tokens and "
                            "shard batches must be positive");
    if (req->ranks % P)
        return nn_fail(err,
                       "plan: %d ranks cannot form replicas of %d pipeline stages (ranks "
                       "must be a multiple of stages)",
                       req->ranks, P);
    if (nn_model_config(req->model, cfg, err))
        return NN_ERR;
    if (P > cfg->n_layers)
        return nn_fail(err, "plan: %d pipeline stages exceed the model's %d layers", P,
                       cfg->n_layers);
    /* What nnterp run would refuse is refused here, not silently clamped. */
    if (req->prompt_tokens > cfg->max_positions)
        return nn_fail(err, "plan: --prompt-tokens %d exceeds the model's context of %d positions",
                       req->prompt_tokens, cfg->max_positions);
    if (req->prompt_tokens > req->batch_tokens)
        return nn_fail(err,
                       "plan: --prompt-tokens %d does not fit in --batch-tokens %d (a job refuses "
                       "a prompt longer than a batch)",
                       req->prompt_tokens, req->batch_tokens);
    return NN_OK;
}

int nn_plan_make(const nn_plan_request *req, nn_plan *p, nn_err *err)
{
    memset(p, 0, sizeof *p);
    int P = req->stages;
    if (nn_plan_check(req, &p->cfg, err))
        return NN_ERR;
    const nn_config *cfg = &p->cfg;
    int L = cfg->n_layers;
    p->n_stages = P;
    p->replicas = req->ranks / P;
    p->threads = req->threads;
    if (!(p->layer_s = nn_calloc((size_t)L, sizeof *p->layer_s, err)) ||
        !(p->layer_mb = nn_calloc((size_t)L, sizeof *p->layer_mb, err)) ||
        !(p->split = nn_calloc((size_t)P + 1, sizeof *p->split, err)) ||
        !(p->stage_s = nn_calloc((size_t)P, sizeof *p->stage_s, err)) ||
        !(p->rank_mb = nn_calloc((size_t)P, sizeof *p->rank_mb, err))) {
        nn_plan_free(p);
        return NN_ERR;
    }
    openblas_set_num_threads(req->threads);
    if (measure(req, cfg, p, err)) {
        nn_plan_free(p);
        return NN_ERR;
    }
    int S = p->batch_prompts, N = p->batch_tokens_used;
    double logit_rows = req->logits == NN_PLAN_ROWS_ALL ? N : req->logits ? S : 0;
    double lens_rows = req->lens == NN_PLAN_ROWS_ALL ? N : req->lens ? S : 0;
    double head_s =
        logit_rows * (req->logits == NN_PLAN_ROWS_ALL ? p->head_all_row_s : p->head_last_row_s);
    double lens_s =
        lens_rows * (req->lens == NN_PLAN_ROWS_ALL ? p->head_all_row_s : p->head_last_row_s);
    if (nn_pipeline_split(cfg, P, NN_PIPELINE_HEAD_SHARE, p->split, err)) {
        nn_plan_free(p);
        return NN_ERR;
    }
    /* A stage's batch: its layers (each with its lens rows), the embedding on the first, the head
     * on the last, and the residual stream received from the previous stage (on one node MPI
     * moves a few GB/s; 3 GB/s is assumed). */
    double recv_s = (double)N * cfg->d_model * 4.0 / 3e9, slowest = 0;
    p->one_rank_s = p->embed_s + head_s;
    for (int l = 0; l < L; l++)
        p->one_rank_s += p->layer_s[l] + lens_s;
    for (int k = 0; k < P; k++) {
        double t = k == 0 ? p->embed_s : recv_s, mb = p->overhead_mb;
        for (int l = p->split[k]; l < p->split[k + 1]; l++) {
            t += p->layer_s[l] + lens_s;
            mb += p->layer_mb[l];
        }
        if (k == 0)
            mb += p->embed_mb;
        if (k == P - 1 || lens_rows > 0) {
            mb += p->head_mb;
            if (k == P - 1)
                t += head_s;
        }
        p->stage_s[k] = t;
        p->rank_mb[k] = mb;
        if (t > slowest)
            slowest = t;
    }
    /* A replica runs m batches per round at the pace of its slowest stage, plus P - 1 batches of
     * filling and draining: the bubble is (P - 1) / (m + P - 1). */
    double m = nn_plan_round_batches(P, p->replicas, req->shard_batches);
    /* A job of fewer batches than a round never fills the pipeline: its bubble is that of its own
     * batch count (one batch through 2 stages runs at one rank's pace). */
    if (req->tokens > 0 && N > 0) {
        double job_batches = ceil((double)req->tokens / N / p->replicas);
        if (job_batches < m)
            m = job_batches;
    }
    p->round_batches = m;
    p->bubble = P > 1 ? (P - 1) / (m + P - 1) : 0;
    double threads = (double)req->ranks * req->threads;
    p->contention = threads > req->cores ? req->cores / threads : 1.0;
    double replica_tps = (double)N / slowest * (1.0 - p->bubble);
    p->tokens_per_s = replica_tps * p->replicas * p->contention;
    p->seconds = req->tokens > 0 ? (double)req->tokens / p->tokens_per_s : 0;
    return NN_OK;
}
