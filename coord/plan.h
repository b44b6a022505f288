/* `nnterp plan`: sizes a distributed job before it is submitted. It measures what one batch costs
 * on this machine (the embedding, each transformer layer it can afford to load, the head per row)
 * and the memory a process needs beside its weights, then applies the run's own layer split and
 * the pipeline's schedule to predict, per layout, the stage times, the bubble, tokens/s and each
 * rank's peak memory. docs/distributed.md derives the formulas; bench/mpi.sh sets the predictions
 * beside measured runs. */
#ifndef NN_PLAN_H
#define NN_PLAN_H

#include <stdint.h>

#include "model.h"
#include "nn_base.h"

/* Rows that go through the final norm and head. */
typedef enum nn_plan_rows {
    NN_PLAN_ROWS_NONE, /* a collect-only job: no head at all */
    NN_PLAN_ROWS_LAST, /* each prompt's last position */
    NN_PLAN_ROWS_ALL   /* every position */
} nn_plan_rows;

typedef struct nn_plan_request {
    const char *model;
    int ranks, stages;   /* ranks = replicas x stages */
    int threads;         /* BLAS threads per rank */
    int cores;           /* cores the ranks share (all nodes together) */
    int batch_tokens;    /* the job's batch_tokens */
    int prompt_tokens;   /* a typical prompt's length */
    int shard_batches;   /* the job's shard_batches */
    nn_plan_rows logits; /* rows needing the model's logits */
    nn_plan_rows lens;   /* rows unembedded at every layer (logit lens) */
    int64_t tokens;      /* the dataset's tokens (0: no time estimate) */
    int measure_layers;  /* layers to load and time (0: all when they fit in 2 GiB, else 2) */
    nn_compute compute;  /* the job's GEMM precision */
} nn_plan_request;

typedef struct nn_plan {
    nn_config cfg; /* the model's */
    int n_stages, replicas;
    int batch_tokens_used, batch_prompts; /* the batch actually measured */
    int measured_layers, threads;
    /* measured on this machine, seconds per batch (head and lens: per row) */
    double embed_s, head_last_row_s, head_all_row_s;
    double *layer_s; /* [cfg.n_layers]; unmeasured layers scaled from the measured ones by size */
    /* memory, MB: a layer's weights, the embedding rows a batch touches, the head, and what a
     * process holds beside weights (runtime, activations of one batch), measured */
    double *layer_mb;
    double embed_mb, head_mb, overhead_mb;
    /* the prediction */
    int *split;           /* [n_stages + 1] layer bounds, as `nnterp run` places them */
    double *stage_s;      /* [n_stages] seconds per batch */
    double *rank_mb;      /* [n_stages] peak memory of each stage's rank */
    double one_rank_s;    /* the whole model on one rank, seconds per batch */
    double round_batches; /* batches a replica runs between commits */
    double bubble;        /* share of a round that a replica's slowest stage idles */
    double contention;    /* min(1, cores / (ranks x threads)) */
    double tokens_per_s;  /* the whole job */
    double seconds;       /* for request.tokens (0 when not given) */
    char compute_kernel[192]; /* what ran the GEMMs */
} nn_plan;

/* Measures and predicts. Loads at most measure_layers layers of the model. */
/* The request's checks alone (layout, model, prompt length), before anything is timed; fills
 * cfg. */
int nn_plan_check(const nn_plan_request *req, nn_config *cfg, nn_err *err);
int nn_plan_make(const nn_plan_request *req, nn_plan *out, nn_err *err);
void nn_plan_free(nn_plan *plan);

/* Batches each replica runs between two commits of `nnterp run` (whole shards): with P > 1
 * pipeline stages about 4P, since a pipeline fills and drains once per round; with several
 * data-parallel replicas about 4, so shards handed out on demand can even out; a lone process
 * commits every shard. */
int nn_plan_round_batches(int n_stages, int replicas, int shard_batches);

#endif
