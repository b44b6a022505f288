/* A model split across the ranks of one replica: stage k runs its contiguous layers and passes the
 * residual stream to stage k+1 (a status header, then the [n_tokens, d] rows). The last stage owns
 * the final norm and head. Every stage runs the same sequence of passes (the same job code), so
 * batches never need to travel; when the caller wants logits, the last stage broadcasts them and
 * the pass's status to the replica, so every stage samples the same generated token. Without that
 * round-trip stage 0 goes on to the next batch while later stages work: the pipeline overlaps.
 * Sends do not wait for the receiver (two buffers in flight), so jitter in one stage does not stall
 * the one before it. */
#ifndef NN_PIPELINE_H
#define NN_PIPELINE_H

#include <mpi.h>

#include "stage.h"

typedef struct nn_pipeline_send {
    int header[2]; /* status, n_tokens */
    float *rows;
    size_t cap;
    MPI_Request req[2];
} nn_pipeline_send;

typedef struct nn_pipeline {
    nn_executor executor;
    MPI_Comm comm; /* the replica's ranks; rank = stage */
    int stage, n_stages;
    nn_pipeline_send out[2]; /* double-buffered sends to the next stage */
    int next;
    nn_err send_err;
} nn_pipeline;

/* Installs a pipeline executor on model (loaded with nn_model_load_layers for this stage). */
void nn_pipeline_init(nn_pipeline *p, nn_model *model, MPI_Comm replica, int stage, int n_stages);
/* Waits for the sends in flight and frees the buffers; before the replica's communicator goes. */
void nn_pipeline_free(nn_pipeline *p);

/* The weights transformer layer l computes with per token (a sparse layer: its active experts'
 * width, plus the shared expert and the router): the unit of a stage's cost. */
double nn_pipeline_layer_cost_at(const nn_config *cfg, int layer);
/* The mean of nn_pipeline_layer_cost_at over the model's layers. */
double nn_pipeline_layer_cost(const nn_config *cfg);

/* The share of rows that go through the head, as `nnterp run` splits layers: about one in ten
 * (each prompt's last position, at 10 or more tokens a prompt). */
#define NN_PIPELINE_HEAD_SHARE 0.1

/* Splits layers into n_stages contiguous ranges minimizing the largest stage's cost: a
 * transformer layer costs its weights, the last stage also pays for the head (its weights times
 * head_share, the fraction of rows that go through it). split receives [n_stages + 1] bounds. */
int nn_pipeline_split(const nn_config *cfg, int n_stages, double head_share, int *split,
                      nn_err *err);

#endif
