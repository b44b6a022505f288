#define _GNU_SOURCE
#include "h5file.h"

#include "nn_half.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MAX_OPEN_DATASETS 256

struct nn_h5file {
    hid_t file;
    char *path;
    char *partial;
    hid_t f16, bf16; /* custom float types, created on first use */
    bool parallel;
    MPI_Comm comm;
    int rank; /* 0 in a serial file */
    /* This handle created PATH.partial (and so may remove it); a file another process made, or
     * one opened to resume, is never removed. */
    bool owned;
    /* datasets kept open between row writes */
    struct open_dataset {
        char *name;
        hid_t id;
        nn_h5_type type;
        uint64_t row_elems; /* elements per row */
        uint64_t rows;
        int rank;
    } open[MAX_OPEN_DATASETS];
    int n_open;
};

bool nn_h5_float_type(const char *name, nn_h5_type *out)
{
    if (!strcmp(name, "float32"))
        *out = NN_H5_F32;
    else if (!strcmp(name, "float16"))
        *out = NN_H5_F16;
    else if (!strcmp(name, "bfloat16"))
        *out = NN_H5_BF16;
    else
        return false;
    return true;
}

/* The library reports through nn_err, never on stderr. */
static void silence_hdf5(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* A file access property list: MPI-IO under par, else the default (sec2). */
static hid_t access_plist(const nn_h5_par *par)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (par)
        H5Pset_fapl_mpio(fapl, par->comm, MPI_INFO_NULL);
    return fapl;
}

static nn_h5file *new_handle(const char *path, const nn_h5_par *par, nn_err *err)
{
    silence_hdf5();
    nn_h5file *f = nn_calloc(1, sizeof *f, err);
    if (!f)
        return NULL;
    f->file = f->f16 = f->bf16 = H5I_INVALID_HID;
    f->parallel = par != NULL;
    f->comm = par ? par->comm : MPI_COMM_NULL;
    f->rank = par ? par->rank : 0;
    size_t n = strlen(path);
    if (!(f->path = nn_strdup(path, err)) || !(f->partial = nn_malloc(n + 9, err))) {
        nn_free(f->path);
        nn_free(f);
        return NULL;
    }
    memcpy(f->partial, path, n);
    memcpy(f->partial + n, ".partial", 9);
    return f;
}

/* Rank 0 makes PATH.partial with O_EXCL: a file that exists belongs to someone else (another
 * process writing it, or an unfinished job), so it is refused, never truncated or removed. */
static int create_exclusive(nn_h5file *f, const nn_h5_par *par, nn_err *err)
{
    int e = 0;
    if (f->rank == 0) {
        int fd = open(f->partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            e = errno;
        else
            close(fd);
    }
    if (par)
        MPI_Bcast(&e, 1, MPI_INT, 0, par->comm);
    if (e == EEXIST)
        return nn_fail(err,
                       "%s already exists: another process may be writing it, or it is an "
                       "unfinished store (nothing was touched; remove it to start over)",
                       f->partial);
    if (e)
        return nn_fail(err, "%s: cannot create the output file (%s)", f->partial,
                       e == EROFS ? "read-only file system" : strerror(e));
    f->owned = true;
    return NN_OK;
}

int nn_h5_create_par(const char *path, const nn_h5_par *par, nn_h5file **out, nn_err *err)
{
    *out = NULL;
    nn_h5file *f = new_handle(path, par, err);
    if (!f)
        return NN_ERR;
    if (create_exclusive(f, par, err)) {
        nn_h5_free(f);
        return NN_ERR;
    }
    hid_t fapl = access_plist(par);
    errno = 0;
    f->file = H5Fcreate(f->partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f->file < 0) {
        int e = errno;
        nn_fail(err, "%s: cannot create the output file (%s)", f->partial,
                e ? strerror(e) : "HDF5 error");
        nn_h5_free(f);
        return NN_ERR;
    }
    *out = f;
    return NN_OK;
}

int nn_h5_create(const char *path, nn_h5file **out, nn_err *err)
{
    return nn_h5_create_par(path, NULL, out, err);
}

static hid_t custom_float(nn_h5file *f, nn_h5_type t)
{
    hid_t *slot = t == NN_H5_F16 ? &f->f16 : &f->bf16;
    if (*slot >= 0)
        return *slot;
    hid_t ty = H5Tcopy(H5T_IEEE_F32LE);
    if (t == NN_H5_F16) {
        H5Tset_fields(ty, 15, 10, 5, 0, 10);
        H5Tset_precision(ty, 16);
        H5Tset_size(ty, 2);
        H5Tset_ebias(ty, 15);
    } else {
        H5Tset_fields(ty, 15, 7, 8, 0, 7);
        H5Tset_precision(ty, 16);
        H5Tset_size(ty, 2);
        H5Tset_ebias(ty, 127);
    }
    *slot = ty;
    return ty;
}

static hid_t file_type_of(nn_h5file *f, nn_h5_type t);
static void close_handles(nn_h5file *f);

static hid_t file_type(nn_h5_type t)
{
    switch (t) {
    case NN_H5_F16:
    case NN_H5_BF16:
    case NN_H5_F32:
        return H5T_IEEE_F32LE;
    case NN_H5_I32:
        return H5T_STD_I32LE;
    case NN_H5_I64:
        return H5T_STD_I64LE;
    case NN_H5_U8:
        return H5T_STD_U8LE;
    }
    return H5T_STD_U8LE;
}

static hid_t file_type_of(nn_h5file *f, nn_h5_type t)
{
    return t == NN_H5_F16 || t == NN_H5_BF16 ? custom_float(f, t) : file_type(t);
}

int nn_h5_write(nn_h5file *f, const char *dataset, nn_h5_type type, int rank, const uint64_t *dims,
                const void *data, nn_err *err)
{
    hsize_t hd[8];
    if (rank < 1 || rank > 8)
        return nn_fail(err, "%s: %s: rank %d out of range", f->path, dataset, rank);
    for (int i = 0; i < rank; i++)
        hd[i] = (hsize_t)dims[i];
    hid_t space = H5Screate_simple(rank, hd, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t ds = H5Dcreate2(f->file, dataset, file_type(type), space, lcpl, dcpl, H5P_DEFAULT);
    int rc = NN_OK;
    if (ds < 0)
        rc = nn_fail(err, "%s: cannot create dataset %s", f->partial, dataset);
    else if (f->rank == 0 && H5Dwrite(ds, file_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = nn_fail(err, "%s: cannot write dataset %s (disk full?)", f->partial, dataset);
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    return rc;
}

static int write_attr(nn_h5file *f, const char *object, const char *name, hid_t type,
                      const void *value, nn_err *err)
{
    hid_t space = H5Screate(H5S_SCALAR);
    if (H5Aexists_by_name(f->file, object, name, H5P_DEFAULT) > 0)
        H5Adelete_by_name(f->file, object, name, H5P_DEFAULT);
    hid_t attr = H5Acreate_by_name(f->file, object, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                   H5P_DEFAULT);
    int rc = NN_OK;
    if (attr < 0 || H5Awrite(attr, type, value) < 0)
        rc = nn_fail(err, "%s: cannot write attribute %s on %s", f->partial, name, object);
    if (attr >= 0)
        H5Aclose(attr);
    H5Sclose(space);
    return rc;
}

/* Variable-length UTF-8, so h5py reads a str (fixed-length strings come back as bytes). */
int nn_h5_attr_string(nn_h5file *f, const char *object, const char *name, const char *value,
                      nn_err *err)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    int rc = write_attr(f, object, name, type, &value, err);
    H5Tclose(type);
    return rc;
}

int nn_h5_attr_i64(nn_h5file *f, const char *object, const char *name, int64_t value, nn_err *err)
{
    return write_attr(f, object, name, H5T_STD_I64LE, &value, err);
}

/* The blocks nn_h5_reserve set aside beyond the end of the file go back to the filesystem. */
static void release_reserve(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    /* A truncation to the current size frees the blocks past it (ext4, xfs, tmpfs); punching a
     * hole past the end does not on ext4. A failure loses only disk space. */
    struct stat st;
    if (fstat(fd, &st) == 0 && ftruncate(fd, st.st_size) != 0)
        st.st_size = 0;
    close(fd);
}

int nn_h5_commit(nn_h5file *f, nn_err *err)
{
    int rc = NN_OK;
    close_handles(f);
    if (H5Fflush(f->file, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(f->file) < 0)
        rc = nn_fail(err, "%s: cannot flush the output file (disk full?)", f->partial);
    f->file = H5I_INVALID_HID;
    if (rc == NN_OK && f->parallel)
        MPI_Barrier(f->comm); /* every rank has closed before the rename */
    if (rc == NN_OK && f->rank == 0)
        release_reserve(f->partial);
    if (rc == NN_OK && f->rank == 0 && rename(f->partial, f->path) != 0) {
        /* The store is complete: keep it where it is, whatever the reason. */
        rc = nn_fail(err, "%s: cannot rename to %s: %s; the finished store is kept as %s",
                     f->partial, f->path, strerror(errno), f->partial);
        f->owned = false;
    }
    if (rc == NN_OK)
        f->owned = false; /* nothing left to remove */
    nn_h5_free(f);
    return rc;
}

static void close_handles(nn_h5file *f)
{
    for (int i = 0; i < f->n_open; i++) {
        H5Dclose(f->open[i].id);
        nn_free(f->open[i].name);
    }
    f->n_open = 0;
    if (f->f16 >= 0)
        H5Tclose(f->f16);
    if (f->bf16 >= 0)
        H5Tclose(f->bf16);
    f->f16 = f->bf16 = H5I_INVALID_HID;
}

void nn_h5_free(nn_h5file *f)
{
    if (!f)
        return;
    close_handles(f);
    if (f->file >= 0)
        H5Fclose(f->file);
    if (f->owned && f->partial && f->rank == 0)
        unlink(f->partial);
    nn_free(f->partial);
    nn_free(f->path);
    nn_free(f);
}

int nn_h5_create_dataset(nn_h5file *f, const char *dataset, nn_h5_type type, int rank,
                         const uint64_t *dims, nn_err *err)
{
    if (rank < 1 || rank > 8)
        return nn_fail(err, "%s: %s: rank %d out of range", f->path, dataset, rank);
    if (f->n_open == MAX_OPEN_DATASETS)
        return nn_fail(err, "%s: more than %d datasets", f->path, MAX_OPEN_DATASETS);
    hsize_t hd[8];
    uint64_t row = 1;
    for (int i = 0; i < rank; i++) {
        hd[i] = (hsize_t)dims[i];
        if (i)
            row *= dims[i];
    }
    hid_t space = H5Screate_simple(rank, hd, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    hid_t ds = H5Dcreate2(f->file, dataset, file_type_of(f, type), space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    if (ds < 0)
        return nn_fail(err, "%s: cannot create dataset %s (disk full?)", f->partial, dataset);
    struct open_dataset *o = &f->open[f->n_open];
    if (!(o->name = nn_strdup(dataset, err))) {
        H5Dclose(ds);
        return NN_ERR;
    }
    o->id = ds;
    o->type = type;
    o->row_elems = row;
    o->rows = dims[0];
    o->rank = rank;
    f->n_open++;
    return NN_OK;
}

static struct open_dataset *find_open(nn_h5file *f, const char *dataset, nn_err *err)
{
    for (int i = 0; i < f->n_open; i++)
        if (!strcmp(f->open[i].name, dataset))
            return &f->open[i];
    /* reopened after a resume: learn its type and shape from the file */
    if (f->n_open == MAX_OPEN_DATASETS) {
        nn_fail(err, "%s: more than %d datasets", f->path, MAX_OPEN_DATASETS);
        return NULL;
    }
    hid_t ds = H5Dopen2(f->file, dataset, H5P_DEFAULT);
    if (ds < 0) {
        nn_fail(err, "%s: no dataset %s", f->partial ? f->partial : f->path, dataset);
        return NULL;
    }
    hid_t ty = H5Dget_type(ds), space = H5Dget_space(ds);
    hsize_t hd[8];
    int rank = H5Sget_simple_extent_dims(space, hd, NULL);
    H5Sclose(space);
    struct open_dataset *o = &f->open[f->n_open];
    size_t size = H5Tget_size(ty);
    H5T_class_t cls = H5Tget_class(ty);
    if (cls == H5T_FLOAT)
        o->type = size == 4 ? NN_H5_F32 : H5Tget_ebias(ty) == 15 ? NN_H5_F16 : NN_H5_BF16;
    else
        o->type = size == 8 ? NN_H5_I64 : size == 4 ? NN_H5_I32 : NN_H5_U8;
    H5Tclose(ty);
    if (rank < 1 || !(o->name = nn_strdup(dataset, err))) {
        H5Dclose(ds);
        if (rank < 1)
            nn_fail(err, "%s: dataset %s has no rows", f->path, dataset);
        return NULL;
    }
    o->id = ds;
    o->rank = rank;
    o->rows = hd[0];
    o->row_elems = 1;
    for (int i = 1; i < rank; i++)
        o->row_elems *= hd[i];
    f->n_open++;
    return o;
}

int nn_h5_write_block(nn_h5file *f, const char *dataset, uint64_t row0, uint64_t n_rows,
                      uint64_t col0, uint64_t n_cols, const void *data, nn_err *err)
{
    struct open_dataset *o = find_open(f, dataset, err);
    if (!o)
        return NN_ERR;
    if (n_rows == 0 || n_cols == 0)
        return NN_OK;
    hsize_t start[8] = {0}, count[8];
    hid_t fspace = H5Dget_space(o->id);
    H5Sget_simple_extent_dims(fspace, count, NULL);
    if (row0 + n_rows > o->rows || (o->rank > 1 && col0 + n_cols > count[1]) ||
        (o->rank == 1 && (col0 != 0 || n_cols != 1))) {
        H5Sclose(fspace);
        return nn_fail(err, "%s: block rows %llu+%llu, columns %llu+%llu are outside dataset %s",
                       f->path, (unsigned long long)row0, (unsigned long long)n_rows,
                       (unsigned long long)col0, (unsigned long long)n_cols, dataset);
    }
    start[0] = row0;
    count[0] = n_rows;
    if (o->rank > 1) {
        start[1] = col0;
        count[1] = n_cols;
    }
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mspace = H5Screate_simple(o->rank, count, NULL);
    size_t n = 1;
    for (int i = 0; i < o->rank; i++)
        n *= (size_t)count[i];
    const void *src = data;
    uint16_t *half = NULL;
    int rc = NN_OK;
    if (o->type == NN_H5_F16 || o->type == NN_H5_BF16) {
        /* convert here so the memory type equals the file type (no HDF5 conversion path) */
        if (!(half = nn_malloc(n * sizeof *half, err)))
            rc = NN_ERR;
        else {
            const float *x = data;
            for (size_t i = 0; i < n; i++)
                half[i] = o->type == NN_H5_F16 ? nn_f32_to_f16(x[i]) : nn_f32_to_bf16(x[i]);
            src = half;
        }
    }
    if (rc == NN_OK &&
        H5Dwrite(o->id, file_type_of(f, o->type), mspace, fspace, H5P_DEFAULT, src) < 0)
        rc = nn_fail(err, "%s: cannot write rows of %s (disk full?)",
                     f->partial ? f->partial : f->path, dataset);
    nn_free(half);
    H5Sclose(mspace);
    H5Sclose(fspace);
    return rc;
}

int nn_h5_write_rows(nn_h5file *f, const char *dataset, uint64_t row0, uint64_t n_rows,
                     const void *data, nn_err *err)
{
    struct open_dataset *o = find_open(f, dataset, err);
    if (!o)
        return NN_ERR;
    uint64_t cols = 1;
    if (o->rank > 1) {
        hsize_t dims[8];
        hid_t space = H5Dget_space(o->id);
        H5Sget_simple_extent_dims(space, dims, NULL);
        H5Sclose(space);
        cols = dims[1];
    }
    return nn_h5_write_block(f, dataset, row0, n_rows, 0, cols, data, err);
}

int nn_h5_read(nn_h5file *f, const char *dataset, void *buf, size_t cap, nn_err *err)
{
    struct open_dataset *o = find_open(f, dataset, err);
    if (!o)
        return NN_ERR;
    size_t elem = o->type == NN_H5_I64                           ? 8
                  : o->type == NN_H5_I32 || o->type == NN_H5_F32 ? 4
                  : o->type == NN_H5_U8                          ? 1
                                                                 : 2;
    if (o->rows * o->row_elems * elem > cap)
        return nn_fail(err, "%s: dataset %s is larger than expected", f->path, dataset);
    if (H5Dread(o->id, file_type_of(f, o->type), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        return nn_fail(err, "%s: cannot read %s", f->path, dataset);
    return NN_OK;
}

char *nn_h5_get_attr_string(nn_h5file *f, const char *object, const char *name, nn_err *err)
{
    if (H5Aexists_by_name(f->file, object, name, H5P_DEFAULT) <= 0) {
        nn_fail(err, "%s: attribute %s is missing", f->path, name);
        return NULL;
    }
    hid_t attr = H5Aopen_by_name(f->file, object, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    char *value = NULL, *copy = NULL;
    if (attr >= 0 && H5Aread(attr, type, &value) >= 0 && value) {
        copy = nn_strdup(value, err);
        H5free_memory(value);
    } else {
        nn_fail(err, "%s: attribute %s is not a string", f->path, name);
    }
    H5Tclose(type);
    if (attr >= 0)
        H5Aclose(attr);
    return copy;
}

int nn_h5_flush(nn_h5file *f, nn_err *err)
{
    if (H5Fflush(f->file, H5F_SCOPE_GLOBAL) < 0)
        return nn_fail(err, "%s: cannot flush (disk full?)", f->partial ? f->partial : f->path);
    return NN_OK;
}

int nn_h5_open_partial(const char *path, const nn_h5_par *par, nn_h5file **out, nn_err *err)
{
    *out = NULL;
    nn_h5file *f = new_handle(path, par, err);
    if (!f)
        return NN_ERR;
    if (!nn_path_is_file(f->partial)) {
        nn_fail(err, "%s: no unfinished store to resume", f->partial);
        nn_h5_close_keep(f);
        return NN_ERR;
    }
    hid_t fapl = access_plist(par);
    f->file = H5Fopen(f->partial, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (f->file < 0) {
        nn_fail(err, "%s: cannot open the unfinished store to resume it", f->partial);
        nn_h5_close_keep(f);
        return NN_ERR;
    }
    *out = f;
    return NN_OK;
}

int nn_h5_open_dataset(nn_h5file *f, const char *dataset, nn_err *err)
{
    return find_open(f, dataset, err) ? NN_OK : NN_ERR;
}

const char *nn_h5_partial_path(const nn_h5file *f)
{
    return f->partial;
}

void nn_h5_disown(nn_h5file *f)
{
    f->owned = false;
}

int nn_h5_check_output(const char *path, nn_err *err)
{
    size_t n = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (n == 0)
        return nn_fail(err, "the output path is empty");
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return nn_fail(err, "output '%s' names a directory; give a file name such as out.h5", path);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return nn_fail(err,
                       "output '%s' is an existing directory; give a file name such as %s/out.h5",
                       path, path);
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return nn_fail(err, "output '%s' exists and is not a regular file", path);
    char *copy = nn_strdup(path, err);
    if (!copy)
        return NN_ERR;
    const char *dir = dirname(copy);
    int rc = NN_OK;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = nn_fail(err,
                     "output '%s': cannot create the output file: the directory %s does not exist",
                     path, dir);
    else if (access(dir, W_OK) != 0)
        rc = nn_fail(
            err,
            "output '%s': cannot create the output file: the directory %s is not writable (%s)",
            path, dir, errno == EROFS ? "read-only file system" : strerror(errno));
    nn_free(copy);
    return rc;
}

void nn_h5_close_keep(nn_h5file *f)
{
    if (!f)
        return;
    close_handles(f);
    if (f->file >= 0) {
        H5Fflush(f->file, H5F_SCOPE_GLOBAL);
        H5Fclose(f->file);
    }
    nn_free(f->partial);
    nn_free(f->path);
    nn_free(f);
}

uint64_t nn_h5_dataset_bytes(nn_h5_type type, int rank, const uint64_t *dims)
{
    uint64_t n = type == NN_H5_I64                        ? 8
                 : type == NN_H5_F32 || type == NN_H5_I32 ? 4
                 : type == NN_H5_U8                       ? 1
                                                          : 2;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    return n;
}

int nn_h5_check_space(const char *path, uint64_t bytes, nn_err *err)
{
    char *copy = nn_strdup(path, err);
    if (!copy)
        return NN_ERR;
    const char *dir = dirname(copy);
    struct statvfs vfs;
    int rc = NN_OK;
    if (statvfs(dir, &vfs) == 0) {
        uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
        if (free_bytes < bytes)
            rc = nn_fail(err, "%s: disk full: the store needs %.1f MB, %s has %.1f MB free", path,
                         (double)bytes / 1e6, dir, (double)free_bytes / 1e6);
    }
    struct rlimit lim;
    if (rc == NN_OK && getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        (uint64_t)lim.rlim_cur < bytes)
        rc = nn_fail(err,
                     "%s: disk full: the store needs %.1f MB, the file size limit (ulimit -f) "
                     "allows %.1f MB",
                     path, (double)bytes / 1e6, (double)lim.rlim_cur / 1e6);
    nn_free(copy);
    return rc;
}

int nn_h5_reserve(nn_h5file *f, uint64_t bytes, nn_err *err)
{
    if (nn_h5_flush(f, err))
        return NN_ERR;
    if (f->rank != 0)
        return NN_OK;
    int fd = open(f->partial, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return nn_fail(err, "%s: cannot open: %s", f->partial, strerror(errno));
    /* KEEP_SIZE: the blocks are reserved but the size HDF5 sees stays its own. A filesystem
     * without fallocate only loses this guard; the space check before creation remains. */
    int rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EOPNOTSUPP && e != ENOSYS)
        return nn_fail(err, "%s: disk full: cannot reserve %.1f MB: %s", f->partial,
                       (double)bytes / 1e6, strerror(e));
    return NN_OK;
}

/* ---- Reading a finished file ---- */

int nn_h5_open_read(const char *path, nn_h5file **out, nn_err *err)
{
    *out = NULL;
    nn_h5file *f = new_handle(path, NULL, err);
    if (!f)
        return NN_ERR;
    nn_free(f->partial);
    f->partial = NULL; /* nn_h5_free leaves the file alone */
    if (!nn_path_is_file(path)) {
        char partial[4096];
        snprintf(partial, sizeof partial, "%s.partial", path);
        nn_fail(err, "%s: no such file%s", path,
                nn_path_is_file(partial) ? " (only its .partial: the job is unfinished)" : "");
        nn_h5_free(f);
        return NN_ERR;
    }
    f->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->file < 0) {
        nn_fail(err, "%s: not an HDF5 file, or unreadable", path);
        nn_h5_free(f);
        return NN_ERR;
    }
    *out = f;
    return NN_OK;
}

bool nn_h5_attr_exists(nn_h5file *f, const char *object, const char *name)
{
    return H5Aexists_by_name(f->file, object, name, H5P_DEFAULT) > 0;
}

bool nn_h5_exists(nn_h5file *f, const char *path)
{
    char buf[512];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, path, n + 1);
    /* every link along the path, since H5Lexists fails on a missing intermediate group */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        htri_t e = H5Lexists(f->file, buf, H5P_DEFAULT);
        buf[i] = saved;
        if (e <= 0)
            return false;
    }
    return true;
}

int nn_h5_shape(nn_h5file *f, const char *dataset, nn_h5_type *type, int *rank, uint64_t dims[8],
                nn_err *err)
{
    struct open_dataset *o = find_open(f, dataset, err);
    if (!o)
        return NN_ERR;
    hid_t space = H5Dget_space(o->id);
    hsize_t hd[8];
    int r = space >= 0 && H5Sget_simple_extent_ndims(space) <= 8
                ? H5Sget_simple_extent_dims(space, hd, NULL)
                : -1;
    if (space >= 0)
        H5Sclose(space);
    if (r < 0)
        return nn_fail(err, "%s: cannot read the shape of %s", f->path, dataset);
    *type = o->type;
    *rank = r;
    for (int i = 0; i < r; i++)
        dims[i] = hd[i];
    return NN_OK;
}

/* ---- Listing, for readers that do not know a store's layout (the Python package) ------------- */

typedef struct name_list {
    char **names;
    int n, cap;
    nn_err *err;
    bool failed;
} name_list;

static herr_t push_name(name_list *l, const char *name, bool group)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **grown = nn_realloc(l->names, (size_t)cap * sizeof *grown, l->err);
        if (!grown) {
            l->failed = true;
            return -1;
        }
        l->names = grown;
        l->cap = cap;
    }
    size_t len = strlen(name);
    char *copy = nn_malloc(len + 2, l->err);
    if (!copy) {
        l->failed = true;
        return -1;
    }
    memcpy(copy, name, len);
    copy[len] = group ? '/' : '\0';
    copy[len + 1] = '\0';
    l->names[l->n++] = copy;
    return 0;
}

static herr_t link_visit(hid_t group, const char *name, const H5L_info_t *info, void *user)
{
    (void)info;
    hid_t g = H5Gopen2(group, name, H5P_DEFAULT); /* fails (silently) on a dataset */
    if (g >= 0)
        H5Gclose(g);
    return push_name(user, name, g >= 0);
}

static herr_t attr_visit(hid_t obj, const char *name, const H5A_info_t *info, void *user)
{
    (void)obj;
    (void)info;
    return push_name(user, name, false);
}

static void names_free(name_list *l)
{
    for (int i = 0; i < l->n; i++)
        nn_free(l->names[i]);
    nn_free(l->names);
}

int nn_h5_list(nn_h5file *f, const char *group, char ***names, int *n, nn_err *err)
{
    *names = NULL;
    *n = 0;
    name_list l = {.err = err};
    if (strcmp(group, "/") && !nn_h5_exists(f, group))
        return nn_fail(err, "%s: no group %s", f->path, group);
    hid_t g = H5Gopen2(f->file, group, H5P_DEFAULT);
    if (g < 0)
        return nn_fail(err, "%s: %s is not a group", f->path, group);
    herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, link_visit, &l);
    H5Gclose(g);
    if (rc < 0 || l.failed) {
        names_free(&l);
        return l.failed ? NN_ERR : nn_fail(err, "%s: cannot list %s", f->path, group);
    }
    *names = l.names;
    *n = l.n;
    return NN_OK;
}

int nn_h5_attr_names(nn_h5file *f, const char *object, char ***names, int *n, nn_err *err)
{
    *names = NULL;
    *n = 0;
    name_list l = {.err = err};
    hsize_t idx = 0;
    herr_t rc = H5Aiterate_by_name(f->file, object, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_visit,
                                   &l, H5P_DEFAULT);
    if (rc < 0 || l.failed) {
        names_free(&l);
        return l.failed ? NN_ERR
                        : nn_fail(err, "%s: cannot list the attributes of %s", f->path, object);
    }
    *names = l.names;
    *n = l.n;
    return NN_OK;
}

int nn_h5_get_attr_i64(nn_h5file *f, const char *object, const char *name, int64_t *value,
                       nn_err *err)
{
    if (H5Aexists_by_name(f->file, object, name, H5P_DEFAULT) <= 0)
        return nn_fail(err, "%s: attribute %s is missing", f->path, name);
    hid_t attr = H5Aopen_by_name(f->file, object, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : -1;
    bool integer = type >= 0 && H5Tget_class(type) == H5T_INTEGER;
    int rc = integer && H5Aread(attr, H5T_NATIVE_INT64, value) >= 0
                 ? NN_OK
                 : nn_fail(err, "%s: attribute %s is not an integer", f->path, name);
    if (type >= 0)
        H5Tclose(type);
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}
