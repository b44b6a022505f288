/* llama2.c checkpoints: arbitrary bytes as a .bin loaded with nn_model_load_llama2c. */
#include "fuzz_util.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256];
    fuzz_path(path, sizeof path, "model.bin");
    fuzz_write("model.bin", data, size);
    nn_err err;
    nn_model *m = NULL;
    if (nn_model_load_llama2c(path, &m, &err) == NN_OK)
        nn_model_free(m);
    return 0;
}
