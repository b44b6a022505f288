/* A results file in HDF5, written as PATH.partial and renamed to PATH only when complete, so a
 * file under its final name is never half-written. Knows arrays and attributes, never models.
 *
 * Datasets are contiguous, uncompressed, with the memory type equal to the file type (see
 * docs/design.md "Store"). Paths like "/activations/layers_output/3" create their groups. */
#ifndef NN_H5FILE_H
#define NN_H5FILE_H

#include <mpi.h>

#include "nn_base.h"

typedef enum { NN_H5_F32, NN_H5_I32, NN_H5_I64, NN_H5_U8, NN_H5_F16, NN_H5_BF16 } nn_h5_type;

/* "float32", "float16", "bfloat16" -> type; false when unknown. */
bool nn_h5_float_type(const char *name, nn_h5_type *out);

typedef struct nn_h5file nn_h5file;

/* Parallel access: every rank of comm opens the file through MPI-IO; creating datasets and
 * attributes is collective (every rank makes the same calls in the same order), whole-dataset
 * writes (nn_h5_write) put rank 0's data, and row writes are independent. */
typedef struct nn_h5_par {
    MPI_Comm comm;
    int rank, size;
} nn_h5_par;

/* Creates PATH.partial, which must not exist (a file there belongs to another process or to an
 * unfinished job: it is refused, never truncated or removed). PATH itself is untouched until
 * nn_h5_commit. par NULL: one process, the serial driver. */
int nn_h5_create_par(const char *path, const nn_h5_par *par, nn_h5file **out, nn_err *err);
/* Opens a dataset created earlier, for row writes (resuming; collective under MPI). */
int nn_h5_open_dataset(nn_h5file *f, const char *dataset, nn_err *err);
int nn_h5_create(const char *path, nn_h5file **out, nn_err *err);
/* Writes a whole dataset: dims[rank], data in C order. */
int nn_h5_write(nn_h5file *f, const char *dataset, nn_h5_type type, int rank, const uint64_t *dims,
                const void *data, nn_err *err);
/* String (UTF-8) and integer attributes on a group or dataset ("/" for the root). */
int nn_h5_attr_string(nn_h5file *f, const char *object, const char *name, const char *value,
                      nn_err *err);
int nn_h5_attr_i64(nn_h5file *f, const char *object, const char *name, int64_t value, nn_err *err);
/* ---- Incremental writing (the job store) ----
 * Datasets are created at their final size with their space allocated up front and no fill, so
 * that afterwards only raw data is written: a crash cannot damage the file's structure. */
int nn_h5_create_dataset(nn_h5file *f, const char *dataset, nn_h5_type type, int rank,
                         const uint64_t *dims, nn_err *err);
/* Writes rows [row0, row0 + n_rows) of a dataset created above; data holds whole rows in C order.
 * For F16/BF16 datasets, data is float32 and is rounded to nearest even here. */
int nn_h5_write_rows(nn_h5file *f, const char *dataset, uint64_t row0, uint64_t n_rows,
                     const void *data, nn_err *err);
/* Writes rows [row0, row0 + n_rows) x columns [col0, col0 + n_cols) of a dataset of rank >= 2
 * (the second axis; every later axis whole); data holds that block in C order. */
int nn_h5_write_block(nn_h5file *f, const char *dataset, uint64_t row0, uint64_t n_rows,
                      uint64_t col0, uint64_t n_cols, const void *data, nn_err *err);
/* Reads a whole integer or float32 dataset (I32/I64/U8/F32 as stored) into buf of at most cap
 * bytes. */
int nn_h5_read(nn_h5file *f, const char *dataset, void *buf, size_t cap, nn_err *err);
/* A string attribute as a new string (caller frees); NULL with an error when absent. */
char *nn_h5_get_attr_string(nn_h5file *f, const char *object, const char *name, nn_err *err);
/* Makes everything written so far durable in the file (H5Fflush). */
int nn_h5_flush(nn_h5file *f, nn_err *err);
/* Fails with a clear message when `bytes` more will not fit where PATH goes: the free space of
 * its filesystem, or the process's file-size limit (ulimit -f). Checked before HDF5 writes, because
 * HDF5 1.10 cannot recover from a write that fails for lack of space (its exit handler crashes). */
int nn_h5_check_space(const char *path, uint64_t bytes, nn_err *err);
/* Flushes, then reserves `bytes` of disk for the file (fallocate, keeping its size), so the rows
 * written later never need new blocks. */
int nn_h5_reserve(nn_h5file *f, uint64_t bytes, nn_err *err);
/* Bytes a dataset of this type and shape occupies. */
uint64_t nn_h5_dataset_bytes(nn_h5_type type, int rank, const uint64_t *dims);

/* Opens an existing PATH.partial for writing more (resuming a job); par as for create. */
int nn_h5_open_partial(const char *path, const nn_h5_par *par, nn_h5file **out, nn_err *err);
const char *nn_h5_partial_path(const nn_h5file *f);
/* Closes, keeping PATH.partial for a later resume. */
void nn_h5_close_keep(nn_h5file *f);

/* Whether PATH can be an output before any work: not empty, not a directory (nor "." or a path
 * ending in '/'), in an existing writable directory (a read-only file system is named). */
int nn_h5_check_output(const char *path, nn_err *err);
/* From now on nn_h5_free keeps PATH.partial (a job's store once its ledger can resume it). */
void nn_h5_disown(nn_h5file *f);

/* Flushes, closes and renames PATH.partial to PATH. The handle is freed either way; when the
 * rename fails the finished file is kept as PATH.partial and the message says so. At commit the
 * disk space reserved beyond the end of the file is released. */
int nn_h5_commit(nn_h5file *f, nn_err *err);
/* Abandons an uncommitted file: closes it, and removes PATH.partial if this handle created it
 * (and nn_h5_disown was not called). NULL is fine. */
void nn_h5_free(nn_h5file *f);

/* ---- Reading a finished file ----
 * nn_h5_open_read opens PATH read-only for nn_h5_read, nn_h5_shape, nn_h5_exists and
 * nn_h5_get_attr_string; nn_h5_free closes it and leaves the file alone. */
int nn_h5_open_read(const char *path, nn_h5file **out, nn_err *err);
/* Whether every link of PATH ("/group/dataset") exists. */
bool nn_h5_exists(nn_h5file *f, const char *path);
/* Whether OBJECT (which must exist) has the attribute NAME. */
bool nn_h5_attr_exists(nn_h5file *f, const char *object, const char *name);
/* A dataset's type as stored, rank (at most 8) and dimensions. */
int nn_h5_shape(nn_h5file *f, const char *dataset, nn_h5_type *type, int *rank, uint64_t dims[8],
                nn_err *err);

/* The links of GROUP ("/" for the root) in name order, a group's name ending in '/'; the names
 * of OBJECT's attributes. Each name and the array are new (nn_free them). */
int nn_h5_list(nn_h5file *f, const char *group, char ***names, int *n, nn_err *err);
int nn_h5_attr_names(nn_h5file *f, const char *object, char ***names, int *n, nn_err *err);
/* An integer attribute (format_version, ...). */
int nn_h5_get_attr_i64(nn_h5file *f, const char *object, const char *name, int64_t *value,
                       nn_err *err);

#endif
