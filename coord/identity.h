/* What `nnterp run --resume` compares: the job's identity, the fields that can change a result.
 *
 * The identity is JSON built from the parsed job (so key order and explicitly written defaults do
 * not matter), one entry per field of the tables in identity.c. The layout is not in it
 * (parallel.pipeline_stages, the rank count), nor what only names a place (model, dataset.path,
 * tokenizer, output): the model's weights and the dataset's tokens are compared by content
 * instead (run.c). A refusal names the first field that differs. */
#ifndef NN_IDENTITY_H
#define NN_IDENTITY_H

#include "job.h"
#include "nn_base.h"

/* The identity of job as JSON text (caller frees). Fails when a file it fingerprints (a steering
 * vector) cannot be read. */
char *nn_job_identity(const nn_job *job, nn_err *err);

/* NN_OK when the two identities agree; else fails with "STORE was made by a different job:
 * FIELD is A in the store, B in JOB_PATH". */
int nn_identity_compare(const char *stored, const char *current, const char *store,
                        const char *job_path, nn_err *err);

#endif
