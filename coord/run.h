/* `nnterp run JOB.json`: the main job. Tokenizes the whole dataset first, plans batches and
 * shards, creates the store with every array at its final size, then runs the shards, committing
 * them (flush, then an fsynced ledger line). Under mpirun the ranks form replicas of pipeline
 * stages; shards are handed out to replicas on demand and commit in rounds
 * (docs/distributed.md). */
#ifndef NN_RUN_H
#define NN_RUN_H

#include "comm.h"
#include "nn_base.h"

#define NN_RUN_INTERRUPTED 3 /* exit code: stopped by a signal after committing; resumable */

typedef struct nn_run_options {
    bool resume;
    bool progress;    /* a self-overwriting progress line on stderr even when it is no terminal */
    bool no_progress; /* none at all (the CLI's --quiet) */
    /* When stderr is not a terminal (a batch system's log), a plain progress line every this
     * many seconds; 0: every 30 s. */
    double progress_every;
    bool quiet; /* no summary on stdout */
    /* Validate everything, print the store's size and layout and the plan; write nothing. */
    bool dry_run;
    /* Pipeline stages of this run; 0: the job's parallel.pipeline_stages. The layout is never
     * part of a store's identity, so a resume may use any. */
    int stages;
    const char *compute; /* --compute: overrides the job's "compute" (NULL: the job's) */
    /* Fault injection for tests (fail_at): the rank at pipeline stage fail_stage fails with an
     * error when it reaches global batch fail_batch. The CLI sets it from
     * NNTERP_FAIL_AT_BATCH=STAGE:BATCH. */
    bool fail_at;
    int fail_stage, fail_batch;
} nn_run_options;

/* Every rank of comm calls it. With resume, a store already complete returns NN_OK and says so.
 * Returns NN_OK, NN_ERR (the same on every rank, with the first
 * failing rank's message), or NN_RUN_INTERRUPTED. */
int nn_run_job(const char *job_path, const nn_run_options *opts, const nn_comm *comm, nn_err *err);

#endif
