#include "h5_sink.h"

nn_h5_type nn_h5_sink_type(nn_sink_type t)
{
    static const nn_h5_type types[] = {
        [NN_SINK_F32] = NN_H5_F32, [NN_SINK_I32] = NN_H5_I32, [NN_SINK_I64] = NN_H5_I64,
        [NN_SINK_U8] = NN_H5_U8,   [NN_SINK_F16] = NN_H5_F16, [NN_SINK_BF16] = NN_H5_BF16};
    return types[t];
}

static int h5_write(void *ctx, const char *path, nn_sink_type type, int rank, const uint64_t *dims,
                    const void *data, nn_err *err)
{
    return nn_h5_write(ctx, path, nn_h5_sink_type(type), rank, dims, data, err);
}

static int h5_attr(void *ctx, const char *path, const char *name, const char *value, nn_err *err)
{
    return nn_h5_attr_string(ctx, path, name, value, err);
}

static int h5_declare(void *ctx, const char *path, nn_sink_type type, int rank,
                      const uint64_t *dims, nn_err *err)
{
    return nn_h5_create_dataset(ctx, path, nn_h5_sink_type(type), rank, dims, err);
}

static int h5_write_rows(void *ctx, const char *path, uint64_t row0, uint64_t n_rows,
                         const void *data, nn_err *err)
{
    return nn_h5_write_rows(ctx, path, row0, n_rows, data, err);
}

static int h5_write_block(void *ctx, const char *path, uint64_t row0, uint64_t n_rows,
                          uint64_t col0, uint64_t n_cols, const void *data, nn_err *err)
{
    return nn_h5_write_block(ctx, path, row0, n_rows, col0, n_cols, data, err);
}

nn_sink nn_h5_sink(nn_h5file *f)
{
    return (nn_sink){.ctx = f,
                     .write = h5_write,
                     .attr = h5_attr,
                     .declare = h5_declare,
                     .write_rows = h5_write_rows,
                     .write_block = h5_write_block};
}
