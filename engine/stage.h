/* Internal plumbing of the engine, not part of the installed API: how a pipeline stage (worker/)
 * runs part of a model, and the per-model tables a run state may borrow from an nn_context.
 * Code inside this repository includes it; programs embedding libnnterp use nnterp.h only. */
#ifndef NN_STAGE_H
#define NN_STAGE_H

#include "forward.h"
#include "pool.h"

/* Runs forward passes for a model that is one stage of a pipeline (or any other placement): the
 * engine knows nothing of MPI; the worker installs one in nn_model.executor. */
typedef struct nn_executor {
    void *ctx;
    int (*forward)(void *ctx, const struct nn_model *model, struct nn_state *state,
                   const struct nn_batch *batch, const struct nn_forward_params *params,
                   nn_err *err);
} nn_executor;

/* The unit a pipeline stage runs: layers [layer_begin, layer_end) of the batch, starting from the
 * token embeddings when embed, else from the residual stream already in nn_state_hidden; then
 * the final norm and head (and their hooks) when head. Hooks of other layers do not fire. */
int nn_forward_range(const nn_model *model, nn_state *state, const nn_batch *batch,
                     const nn_forward_params *params, int layer_begin, int layer_end, bool embed,
                     bool head, nn_err *err);
/* (n_tokens, d): the residual stream between layers; a stage reads and writes it. */
float *nn_state_hidden(nn_state *state);
/* (n_seqs, V): the last-position logits, writable (a pipeline stage receives them). */
float *nn_state_logits_mut(nn_state *state);

/* What depends on the model alone and not on a batch shape: the thread pool for the work between
 * GEMMs and the rotary (RoPE) or ALiBi tables. An nn_context makes them once per model; each of its
 * states borrows them. */
typedef struct nn_run_tables {
    nn_pool *pool;
    float *rope_cos, *rope_sin; /* (max_positions, rotary_dim / 2) or NULL */
    float *alibi;               /* (n_heads) or NULL */
    /* Gemma 3's local table (sliding layers) and longrope's long-factor table, or NULL */
    float *rope_cos_local, *rope_sin_local;
    float *rope_cos_long, *rope_sin_long;
} nn_run_tables;

int nn_run_tables_init(nn_run_tables *t, const nn_model *model, nn_err *err);
void nn_run_tables_free(nn_run_tables *t);
/* nn_state_init with borrowed tables (shared NULL: the state makes its own). The tables must
 * outlive the state; states sharing them must not run at the same time (one pool). */
int nn_state_init_shared(nn_state **out, const nn_model *model, const nn_state_params *params,
                         const nn_run_tables *shared, nn_err *err);

#endif
