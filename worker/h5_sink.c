#include "h5_sink.h"

static int h5_write(void *ctx, const char *path, nn_sink_type type, int rank, const uint64_t *dims,
                    const void *data, nn_err *err)
{
    static const nn_h5_type types[] = {[NN_SINK_F32] = NN_H5_F32,
                                       [NN_SINK_I32] = NN_H5_I32,
                                       [NN_SINK_I64] = NN_H5_I64,
                                       [NN_SINK_U8] = NN_H5_U8};
    return nn_h5_write(ctx, path, types[type], rank, dims, data, err);
}

static int h5_attr(void *ctx, const char *path, const char *name, const char *value, nn_err *err)
{
    return nn_h5_attr_string(ctx, path, name, value, err);
}

nn_sink nn_h5_sink(nn_h5file *f)
{
    return (nn_sink){.ctx = f, .write = h5_write, .attr = h5_attr};
}
