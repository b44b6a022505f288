/* A results file in HDF5, written as PATH.partial and renamed to PATH only when complete, so a
 * file under its final name is never half-written. Knows arrays and attributes, never models.
 *
 * Datasets are contiguous, uncompressed, with the memory type equal to the file type (see
 * DESIGN.md "Store"). Paths like "/activations/layers_output/3" create their groups. */
#ifndef NN_H5FILE_H
#define NN_H5FILE_H

#include "nn_base.h"

typedef enum { NN_H5_F32, NN_H5_I32, NN_H5_I64, NN_H5_U8 } nn_h5_type;

typedef struct nn_h5file nn_h5file;

/* Creates PATH.partial (replacing a stale one). PATH itself is untouched until nn_h5_commit. */
int nn_h5_create(const char *path, nn_h5file **out, nn_err *err);
/* Writes a whole dataset: dims[rank], data in C order. */
int nn_h5_write(nn_h5file *f, const char *dataset, nn_h5_type type, int rank, const uint64_t *dims,
                const void *data, nn_err *err);
/* String (UTF-8) and integer attributes on a group or dataset ("/" for the root). */
int nn_h5_attr_string(nn_h5file *f, const char *object, const char *name, const char *value,
                      nn_err *err);
int nn_h5_attr_i64(nn_h5file *f, const char *object, const char *name, int64_t value, nn_err *err);
/* Flushes, closes and renames PATH.partial to PATH. The handle is freed either way. */
int nn_h5_commit(nn_h5file *f, nn_err *err);
/* Abandons an uncommitted file: closes and removes PATH.partial. NULL is fine. */
void nn_h5_free(nn_h5file *f);

#endif
