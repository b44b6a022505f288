/* The operations of a job over a tokenized dataset: declares every array of the store at its final
 * size, then runs prompt ranges (batches) and writes their rows through a sink. Rows are placed by
 * prompt and token index, so a range can be run in any order, again, or by another process, and
 * the store comes out the same. */
#ifndef NN_HARVEST_H
#define NN_HARVEST_H

#include "job.h"
#include "sink.h"
#include "toolkit.h"

/* The dataset after tokenization. */
typedef struct nn_corpus {
    int n_prompts;
    const int32_t *tokens;  /* all prompts back to back */
    const int64_t *offsets; /* [n_prompts + 1] */
    int n_targets;          /* target names (the same for every prompt), 0 when none */
    const char *const *target_names;
    const int32_t *target_ids;     /* first-token ids of every (prompt, target) */
    const int64_t *target_offsets; /* [n_prompts * n_targets + 1] into target_ids */
    /* For messages: the dataset file and each prompt's line in it (NULL: name the index). */
    const char *source;
    const int64_t *source_line; /* [n_prompts] */
} nn_corpus;

typedef struct nn_harvest nn_harvest;

/* Resolves the job's operations against the model (layers, positions in every prompt, steering
 * vectors, the patchscope target). The model, tokenizer, job and corpus must outlive it. */
int nn_harvest_init(nn_harvest **out, const nn_model *model, nn_tokenizer *tok, const nn_job *job,
                    const nn_corpus *corpus, int max_batch_tokens, int max_batch_prompts,
                    nn_err *err);
void nn_harvest_free(nn_harvest *h);

/* Declares every array the operations write, with their attributes. */
int nn_harvest_declare(nn_harvest *h, const nn_sink *sink, nn_err *err);
/* Runs prompts [begin, end) (at most the batch limits given to init). */
int nn_harvest_run(nn_harvest *h, int begin, int end, const nn_sink *sink, nn_err *err);

#endif
