/* The HDF5 results file on synthetic arrays: the data reads back exactly, the file exists under
 * its final name only after commit, and an abandoned file leaves nothing behind. */
#define _GNU_SOURCE
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5file.h"
#include "nn_test.h"

int main(void)
{
    char dir[] = "/tmp/nnterp-test-io-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256], partial[300];
    snprintf(path, sizeof path, "%s/out.h5", dir);
    snprintf(partial, sizeof partial, "%s.partial", path);
    nn_err err = {{0}};
    nn_h5file *f = NULL;
    float data[6] = {1.5f, -2, 3, 4e-30f, 5, 6};
    int64_t offs[3] = {0, 1, 3};
    uint64_t dims[2] = {2, 3}, n3 = 3;
    CHECK_OK(nn_h5_create(path, &f, &err), &err);
    CHECK(access(partial, F_OK) == 0 && access(path, F_OK) != 0, "only the .partial file exists");
    CHECK_OK(nn_h5_write(f, "/activations/layers_output/3", NN_H5_F32, 2, dims, data, &err), &err);
    CHECK_OK(nn_h5_write(f, "/prompts/token_offsets", NN_H5_I64, 1, &n3, offs, &err), &err);
    CHECK_OK(nn_h5_attr_string(f, "/", "model_config", "{\"model_type\": \"gpt2\"}", &err), &err);
    CHECK_OK(nn_h5_attr_i64(f, "/", "format_version", 1, &err), &err);
    CHECK(nn_h5_write(f, "/prompts/token_offsets", NN_H5_I64, 1, &n3, offs, &err) == NN_ERR,
          "writing a dataset twice must fail");
    CHECK_OK(nn_h5_commit(f, &err), &err);
    CHECK(access(partial, F_OK) != 0 && access(path, F_OK) == 0,
          "commit renames to the final name");

    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(file >= 0, "reopen");
    float back[6] = {0};
    hid_t ds = H5Dopen2(file, "/activations/layers_output/3", H5P_DEFAULT);
    CHECK(ds >= 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0,
          "read back");
    CHECK(memcmp(back, data, sizeof data) == 0, "data reads back bit for bit");
    H5Dclose(ds);
    H5Fclose(file);

    /* An abandoned file is removed. */
    char path2[256];
    snprintf(path2, sizeof path2, "%s/abandoned.h5", dir);
    CHECK_OK(nn_h5_create(path2, &f, &err), &err);
    nn_h5_free(f);
    snprintf(partial, sizeof partial, "%s.partial", path2);
    CHECK(access(partial, F_OK) != 0 && access(path2, F_OK) != 0, "abandoned file removed");

    /* An unwritable location is an error naming the file. */
    CHECK(nn_h5_create("/nonexistent-dir/x.h5", &f, &err) == NN_ERR &&
              strstr(err.msg, "/nonexistent-dir/x.h5.partial"),
          "unwritable path: %s", err.msg);

    unlink(path);
    rmdir(dir);
    return nn_test_finish("test_io");
}
