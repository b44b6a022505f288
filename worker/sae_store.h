/* The per-feature figures of a job's sae operations (jobs/op_sae.h), computed once every shard is
 * committed from the store's per-token arrays and written into it: a pure function of those
 * arrays, hence the same store for every MPI layout and after --resume. */
#ifndef NN_SAE_STORE_H
#define NN_SAE_STORE_H

#include "h5file.h"
#include "job.h"

/* Reads /<group>/<i>/feature_ids, feature_acts, l0 and /prompts/token_offsets of f and writes
 * /<group>/<i>/features/... for every SAE of every sae operation of job. Nothing to do without
 * one. */
int nn_sae_store_finalize(nn_h5file *f, const nn_job *job, nn_err *err);

#endif
