#include "comm.h"

#include <stdlib.h>
#include <string.h>

bool nn_comm_launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

nn_comm nn_comm_single(void)
{
    return (nn_comm){.mpi = false, .rank = 0, .size = 1};
}

nn_comm nn_comm_world(void)
{
    nn_comm c = {.mpi = true, .comm = MPI_COMM_WORLD};
    MPI_Comm_rank(MPI_COMM_WORLD, &c.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c.size);
    return c;
}

int nn_comm_agree(const nn_comm *c, int rc, nn_err *err)
{
    if (!c->mpi)
        return rc;
    int mine = rc == NN_OK ? c->size : c->rank, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->comm);
    if (first == c->size)
        return NN_OK;
    char msg[sizeof err->msg];
    if (c->rank == first)
        memcpy(msg, err->msg, sizeof msg);
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, c->comm);
    memcpy(err->msg, msg, sizeof msg);
    if (first != 0 && c->rank == first)
        return NN_ERR;
    if (first != 0)
        nn_err_prefix(err, "rank %d", first);
    return NN_ERR;
}

void nn_comm_bcast(const nn_comm *c, void *buf, size_t bytes)
{
    if (!c->mpi)
        return;
    char *p = buf;
    while (bytes) { /* MPI counts are int */
        int n = bytes > (1u << 30) ? (1 << 30) : (int)bytes;
        MPI_Bcast(p, n, MPI_BYTE, 0, c->comm);
        p += n;
        bytes -= (size_t)n;
    }
}

void nn_comm_gather_int(const nn_comm *c, int value, int *values)
{
    if (!c->mpi) {
        values[0] = value;
        return;
    }
    MPI_Gather(&value, 1, MPI_INT, values, 1, MPI_INT, 0, c->comm);
}

int nn_comm_max_int(const nn_comm *c, int value)
{
    if (!c->mpi)
        return value;
    int out;
    MPI_Allreduce(&value, &out, 1, MPI_INT, MPI_MAX, c->comm);
    return out;
}

void nn_comm_barrier(const nn_comm *c)
{
    if (c->mpi)
        MPI_Barrier(c->comm);
}

void nn_counter_init(nn_counter *k, const nn_comm *c)
{
    memset(k, 0, sizeof *k);
    k->mpi = c->mpi;
    if (!c->mpi)
        return;
    MPI_Win_allocate(c->rank == 0 ? (MPI_Aint)sizeof(int) : 0, sizeof(int), MPI_INFO_NULL, c->comm,
                     &k->value, &k->win);
    if (c->rank == 0)
        *k->value = 0;
    MPI_Barrier(c->comm); /* the zero is in place before anyone fetches */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, k->win);
}

int nn_counter_next(nn_counter *k)
{
    if (!k->mpi)
        return k->local++;
    int one = 1, got;
    MPI_Fetch_and_op(&one, &got, MPI_INT, 0, 0, MPI_SUM, k->win);
    MPI_Win_flush(0, k->win);
    return got;
}

void nn_counter_free(nn_counter *k)
{
    if (!k->mpi)
        return;
    MPI_Win_unlock_all(k->win);
    MPI_Win_free(&k->win);
    k->mpi = false;
}
