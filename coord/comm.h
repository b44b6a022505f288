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

#endif
