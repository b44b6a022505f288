/* Safetensors checkpoints, memory-mapped. The header is validated whole before any tensor is
 * read: header length within the file, every tensor's dtype known, shape × dtype size equal to its
 * byte range, ranges inside the data section and not overlapping, names unique.
 * A sharded checkpoint (model.safetensors.index.json) is one nn_st_archive over several files. */
#ifndef NN_SAFETENSORS_H
#define NN_SAFETENSORS_H

#include "nn_base.h"
#include "nn_half.h"

typedef enum {
    NN_DT_F32,
    NN_DT_F16,
    NN_DT_BF16,
    NN_DT_F64,
    NN_DT_I64,
    NN_DT_I32,
    NN_DT_I16,
    NN_DT_I8,
    NN_DT_U8,
    NN_DT_BOOL,
} nn_dtype;

#define NN_ST_MAX_DIMS 8

typedef struct nn_st_tensor {
    char *name;
    nn_dtype dtype;
    int n_dims;
    int64_t shape[NN_ST_MAX_DIMS];
    size_t numel;
    const uint8_t *data; /* points into the mapped file */
    size_t n_bytes;
    int file_index; /* which file of the archive holds it */
} nn_st_tensor;

typedef struct nn_st_archive {
    nn_mapped_file *files; /* [n_files] */
    int n_files;
    nn_st_tensor *tensors; /* [n_tensors], sorted by name */
    size_t n_tensors;
} nn_st_archive;

const char *nn_dtype_name(nn_dtype dt);
size_t nn_dtype_size(nn_dtype dt);

/* Opens one .safetensors file. */
int nn_st_open(const char *path, nn_st_archive *out, nn_err *err);
/* Opens a checkpoint directory: model.safetensors, or model.safetensors.index.json and its shards.
 */
int nn_st_open_dir(const char *dir, nn_st_archive *out, nn_err *err);
/* Parses a safetensors image already in memory (used by nn_st_open and the fuzz target). The
 * tensors point into data, which must outlive the archive. */
int nn_st_parse(const uint8_t *data, size_t size, const char *path, int file_index,
                nn_st_archive *out, nn_err *err);
void nn_st_close(nn_st_archive *archive);

/* NULL when absent. */
const nn_st_tensor *nn_st_find(const nn_st_archive *archive, const char *name);
const char *nn_st_file_of(const nn_st_archive *archive, const nn_st_tensor *t);

/* Converts numel elements of a F32/F16/BF16 tensor to float32. */
int nn_st_to_f32(const nn_st_tensor *t, float *out, nn_err *err);


#endif
