/* The job operation "sae" (docs/sae.md): sparse autoencoders and transcoders applied to every
 * token of the dataset, several SAEs of one operation sharing one forward pass.
 *
 *   {"op": "sae", "sae": DIR | [DIR, ...], "hook": NAME | [NAME, ...], "keep": 32,
 *    "splice": false}
 *
 * Per SAE i, under /<group>/<i>/: feature_ids, feature_acts [tokens, keep] (each token's
 * strongest features, value descending, ties by id; -1 / 0 past the token's active ones), l0
 * [tokens] (active features before truncation), and per prompt mse, explained_variance, l0_mean.
 * With splice, every SAE's reconstruction replaces its activation for the rest of the pass, and
 * /<group>/loss_clean, /<group>/loss_spliced [prompts] hold the mean next-token loss without and
 * with it. Rows sit at the token's and the prompt's fixed offsets, so a batch may run in any
 * order, again, or on another rank, and the store comes out the same. */
#ifndef NN_OP_SAE_H
#define NN_OP_SAE_H

#include <cJSON.h>

#include "forward.h"
#include "sink.h"

typedef struct nn_sae_spec {
    char **dirs;
    char **hooks; /* [n] or NULL entries: the SAE's own hook */
    int n;
    int keep;  /* 0: k for TopK SAEs, else 32 */
    int top_n; /* top-activating examples kept per feature */
    bool splice;
} nn_sae_spec;

/* Parses the operation's fields (job.c calls it for op "sae"); where names it in errors. */
int nn_sae_spec_parse(const cJSON *o, const char *path, const char *where, nn_sae_spec **out,
                      nn_err *err);
void nn_sae_spec_free(nn_sae_spec *spec);

/* The operation resolved against a model, for one process. */
typedef struct nn_sae_op nn_sae_op;

/* Loads the SAEs and binds them to model; state is the harvest's (its GEMM threads). */
int nn_sae_op_init(nn_sae_op **out, const nn_sae_spec *spec, const nn_model *model, nn_state *state,
                   const char *where, nn_err *err);
void nn_sae_op_free(nn_sae_op *op);

/* Declares the operation's arrays under group ("/sae") for n_tokens tokens, n_prompts prompts. */
int nn_sae_op_declare(nn_sae_op *op, const nn_sink *sink, const char *group, uint64_t n_tokens,
                      uint64_t n_prompts, nn_err *err);

/* Runs prompts [begin, end) (the batch b, its first global token tok0) and writes their rows. */
int nn_sae_op_run(nn_sae_op *op, const nn_batch *b, int begin, int end, int64_t tok0,
                  const nn_sink *sink, const char *group, nn_err *err);

/* Per-feature statistics over a whole dataset, from every token's kept features (ids, vals
 * [N, keep], -1 past the active ones): a pure function of those arrays, so the store's figures are
 * the same for every MPI layout and after --resume. The top-N examples of a feature are ordered by
 * value descending, ties by prompt then position. */
typedef struct nn_sae_features {
    int n_features, top_n;
    int64_t *count;       /* [F] tokens where the feature is among the kept */
    float *density;       /* [F] count / tokens */
    float *max;           /* [F] 0 for a feature that never fires */
    float *mean;          /* [F] mean value where it fires (0 when never) */
    float *top_values;    /* [F, top_n] */
    int32_t *top_prompts; /* [F, top_n], -1 past the feature's firings */
    int32_t *top_positions;
    int64_t truncated_tokens; /* tokens whose active features outnumber keep (then the figures
                                 count only the kept ones) */
} nn_sae_features;

int nn_sae_features_compute(const int32_t *ids, const float *vals, const int32_t *l0, int64_t N,
                            int keep, int F, const int64_t *prompt_offsets, int P, int top_n,
                            nn_sae_features *out, nn_err *err);
void nn_sae_features_free(nn_sae_features *f);

#endif
