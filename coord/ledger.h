/* The progress ledger of a job: one line per committed shard, appended and fsynced after the
 * shard's rows are flushed into the store. It is the commit point: --resume redoes every shard
 * the ledger does not name, and a torn last line (a crash while appending) names none. */
#ifndef NN_LEDGER_H
#define NN_LEDGER_H

#include "nn_base.h"

/* Writes the header line: from then on the store is resumable. */
int nn_ledger_create(const char *path, int n_shards, nn_err *err);
/* done[n_shards] is set for every committed shard; an absent ledger is an error. A torn last
 * line is cut off the file (it committed nothing), so that later appends stay well formed. */
int nn_ledger_read(const char *path, int n_shards, bool *done, nn_err *err);
int nn_ledger_append(const char *path, int shard, nn_err *err);
/* How many shards the ledger names (for messages). */
int nn_ledger_count(const char *path, int *committed, nn_err *err);

/* The ledger is also the job's lock: the process running a job holds an exclusive flock on it
 * (fd kept open until the job ends), so a second process sees the job is running instead of
 * touching its files. create: the ledger must not exist yet (O_EXCL; an existing one fails with
 * strerror(EEXIST)); else it must exist (ENOENT fails the same way). A ledger locked by another
 * process fails with "... is locked: another process is running this job". */
int nn_ledger_lock(const char *path, bool create, int *fd, nn_err *err);
bool nn_ledger_is_locked(const char *path);
void nn_ledger_unlock(int fd);

#endif
