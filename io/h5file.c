#define _GNU_SOURCE
#include "h5file.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct nn_h5file {
    hid_t file;
    char *path;
    char *partial;
};

/* The library reports through nn_err, never on stderr. */
static void silence_hdf5(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

int nn_h5_create(const char *path, nn_h5file **out, nn_err *err)
{
    *out = NULL;
    silence_hdf5();
    nn_h5file *f = nn_calloc(1, sizeof *f, err);
    if (!f)
        return NN_ERR;
    f->file = H5I_INVALID_HID;
    size_t n = strlen(path);
    if (!(f->path = nn_strdup(path, err)) || !(f->partial = nn_malloc(n + 9, err))) {
        nn_h5_free(f);
        return NN_ERR;
    }
    memcpy(f->partial, path, n);
    memcpy(f->partial + n, ".partial", 9);
    f->file = H5Fcreate(f->partial, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
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

static hid_t file_type(nn_h5_type t)
{
    switch (t) {
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
    else if (H5Dwrite(ds, file_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
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

int nn_h5_commit(nn_h5file *f, nn_err *err)
{
    int rc = NN_OK;
    if (H5Fflush(f->file, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(f->file) < 0)
        rc = nn_fail(err, "%s: cannot flush the output file (disk full?)", f->partial);
    f->file = H5I_INVALID_HID;
    if (rc == NN_OK && rename(f->partial, f->path) != 0)
        rc = nn_fail(err, "%s: cannot rename to %s: %s", f->partial, f->path, strerror(errno));
    if (rc == NN_OK) {
        nn_free(f->partial);
        f->partial = NULL; /* nothing left to remove */
    }
    nn_h5_free(f);
    return rc;
}

void nn_h5_free(nn_h5file *f)
{
    if (!f)
        return;
    if (f->file >= 0)
        H5Fclose(f->file);
    if (f->partial)
        unlink(f->partial);
    nn_free(f->partial);
    nn_free(f->path);
    nn_free(f);
}
