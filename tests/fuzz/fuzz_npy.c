/* .npy steering vectors: arbitrary bytes as a file read with nn_npy_read_vector. */
#include <math.h>

#include "fuzz_util.h"
#include "toolkit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256];
    fuzz_path(path, sizeof path, "v.npy");
    fuzz_write("v.npy", data, size);
    nn_err err;
    float *v = NULL;
    size_t n = 0;
    if (nn_npy_read_vector(path, &v, &n, &err) == NN_OK) {
        for (size_t i = 0; i < n; i++)
            if (!isfinite(v[i]))
                abort(); /* the reader promises finite values */
        nn_free(v);
    }
    return 0;
}
