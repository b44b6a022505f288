/* The ranks of a job. Under mpirun every rank runs the same coordinator code; these helpers are
 * where they meet. In a plain run (no mpirun) there is one rank and they do nothing. */
#ifndef NN_COMM_H
#define NN_COMM_H

#include <mpi.h>

#include "nn_base.h"

typedef struct nn_comm {
    bool mpi;
    MPI_Comm comm;
    int rank, size;
} nn_comm;

/* True when this process was started by mpirun (Open MPI, or a PMI/PMIx launcher). */
bool nn_comm_launched_by_mpirun(void);
/* One process, no MPI. */
nn_comm nn_comm_single(void);
/* MPI_COMM_WORLD after MPI_Init. */
nn_comm nn_comm_world(void);

/* Every rank passes its own rc. Returns NN_ERR on every rank when any rank failed, with the lowest
 * failing rank's message in err (so a failure on one rank never leaves the others waiting). */
int nn_comm_agree(const nn_comm *c, int rc, nn_err *err);
/* Broadcasts bytes from rank 0 (any size). */
void nn_comm_bcast(const nn_comm *c, void *buf, size_t bytes);
/* Rank 0 receives every rank's value (values[size]); other ranks may pass NULL. */
void nn_comm_gather_int(const nn_comm *c, int value, int *values);
int nn_comm_max_int(const nn_comm *c, int value);
void nn_comm_barrier(const nn_comm *c);

/* A counter every rank can take the next number from without the others taking part: work handed
 * out on demand. It lives on rank 0 (MPI one-sided fetch-and-add; on one node through shared
 * memory, across nodes progressed whenever rank 0 enters MPI, at least once a batch). */
typedef struct nn_counter {
    bool mpi;
    MPI_Win win;
    int *value; /* rank 0's memory; the local count in a plain run */
    int local;
} nn_counter;

/* Collective. Starts at 0. */
void nn_counter_init(nn_counter *k, const nn_comm *c);
/* Returns the counter's value and adds 1 to it, atomically across ranks. */
int nn_counter_next(nn_counter *k);
/* Collective. */
void nn_counter_free(nn_counter *k);

#endif
