/* The sink that writes job results into an HDF5 file: where compute meets storage. */
#ifndef NN_H5_SINK_H
#define NN_H5_SINK_H

#include "h5file.h"
#include "sink.h"

/* A sink over f; f stays owned by the caller. */
nn_sink nn_h5_sink(nn_h5file *f);
/* The HDF5 file type a sink type is stored as. */
nn_h5_type nn_h5_sink_type(nn_sink_type type);

#endif
