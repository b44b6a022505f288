/* Where operations put their results: a struct of function pointers, so jobs know nothing of
 * HDF5 or MPI. The worker connects a sink to the store (worker/h5_sink.h); tests can connect one
 * to memory. */
#ifndef NN_SINK_H
#define NN_SINK_H

#include "nn_base.h"

typedef enum {
    NN_SINK_F32,
    NN_SINK_I32,
    NN_SINK_I64,
    NN_SINK_U8,
    NN_SINK_F16,  /* stored as IEEE half; written as float32 */
    NN_SINK_BF16, /* stored as bfloat16; written as float32 */
} nn_sink_type;

typedef struct nn_sink {
    void *ctx;
    /* A whole array at path ("/activations/layers_output/3"), dims[rank], C order. */
    int (*write)(void *ctx, const char *path, nn_sink_type type, int rank, const uint64_t *dims,
                 const void *data, nn_err *err);
    /* A string attribute on path ("/" for the root). */
    int (*attr)(void *ctx, const char *path, const char *name, const char *value, nn_err *err);
    /* Incremental writing (the job store): declare each array at its final size, then write row
     * blocks [row0, row0 + n_rows) in any order. F16/BF16 arrays take float32 rows. */
    int (*declare)(void *ctx, const char *path, nn_sink_type type, int rank, const uint64_t *dims,
                   nn_err *err);
    int (*write_rows)(void *ctx, const char *path, uint64_t row0, uint64_t n_rows, const void *data,
                      nn_err *err);
    /* Rows x a range of the second axis (a pipeline stage writes its own layers' columns). */
    int (*write_block)(void *ctx, const char *path, uint64_t row0, uint64_t n_rows, uint64_t col0,
                       uint64_t n_cols, const void *data, nn_err *err);
} nn_sink;

#endif
