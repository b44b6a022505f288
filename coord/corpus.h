/* The run's dataset (coord/corpus.c): read and tokenized on rank 0 (chat templates, truncation,
 * targets' first tokens), then broadcast whole to the other ranks. Internal to nn_run_job. */
#ifndef NN_COORD_CORPUS_H
#define NN_COORD_CORPUS_H

#include "comm.h"
#include "harvest.h"
#include "job.h"
#include "tokenizer.h"

/* The dataset, tokenized, with its targets' first tokens. */
typedef struct corpus_data {
    nn_corpus c;
    nn_ids tokens; /* every prompt's ids, back to back */
    int64_t *offsets;
    int64_t *source_line;  /* [P] */
    int64_t *text_offsets; /* [P + 1] into text */
    char *text;
    size_t text_cap; /* bytes allocated for text */
    char **names;
    nn_ids target_ids;
    int64_t *target_offsets;
    int n_truncated, n_skipped;
} corpus_data;

/* Reads job's dataset and tokenizes every prompt (and its targets) with tok for m into d. */
int nn_corpus_tokenize(const nn_job *job, const char *job_path, const nn_model *m,
                       nn_tokenizer *tok, corpus_data *d, nn_err *err);

/* Rank 0 tokenized the dataset; the other ranks receive it whole. */
int nn_corpus_bcast(const nn_comm *cm, corpus_data *d, nn_err *err);

void nn_corpus_data_free(corpus_data *d);

#endif
