/* Where operations put their results: a struct of function pointers, so jobs know nothing of
 * HDF5 or MPI. The worker connects a sink to the store (worker/h5_sink.h); tests can connect one
 * to memory. */
#ifndef NN_SINK_H
#define NN_SINK_H

#include "nn_base.h"

typedef enum { NN_SINK_F32, NN_SINK_I32, NN_SINK_I64, NN_SINK_U8 } nn_sink_type;

typedef struct nn_sink {
    void *ctx;
    /* A whole array at path ("/activations/layers_output/3"), dims[rank], C order. */
    int (*write)(void *ctx, const char *path, nn_sink_type type, int rank, const uint64_t *dims,
                 const void *data, nn_err *err);
    /* A string attribute on path ("/" for the root). */
    int (*attr)(void *ctx, const char *path, const char *name, const char *value, nn_err *err);
} nn_sink;

#endif
