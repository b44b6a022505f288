/* The progress ledger of a job: one line per committed shard, appended and fsynced after the
 * shard's rows are flushed into the store. It is the commit point: --resume redoes every shard
 * the ledger does not name, and a torn last line (a crash while appending) names none. */
#ifndef NN_LEDGER_H
#define NN_LEDGER_H

#include "nn_base.h"

int nn_ledger_create(const char *path, int n_shards, nn_err *err);
/* done[n_shards] is set for every committed shard; an absent ledger is an error. */
int nn_ledger_read(const char *path, int n_shards, bool *done, nn_err *err);
int nn_ledger_append(const char *path, int shard, nn_err *err);

#endif
