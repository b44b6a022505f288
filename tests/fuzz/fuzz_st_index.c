/* Sharded checkpoints: arbitrary bytes as model.safetensors.index.json beside two small valid
 * shards, opened with nn_st_open_dir. */
#include "fuzz_util.h"
#include "safetensors.h"

/* A safetensors image with F32 tensors named names[i] of 2 elements each. */
static void write_shard(const char *file, const char *const *names, int n)
{
    char header[512];
    size_t h = 0;
    h += (size_t)snprintf(header + h, sizeof header - h, "{");
    for (int i = 0; i < n; i++)
        h += (size_t)snprintf(header + h, sizeof header - h,
                              "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": "
                              "[%d, %d]}",
                              i ? ", " : "", names[i], 8 * i, 8 * i + 8);
    h += (size_t)snprintf(header + h, sizeof header - h, "}");
    uint8_t img[1024] = {0};
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)(h >> (8 * i));
    memcpy(img + 8, header, h);
    fuzz_write(file, img, 8 + h + 8 * (size_t)n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const one[] = {"a", "b"}, *const two[] = {"c"};
    write_shard("model-00001-of-00002.safetensors", one, 2);
    write_shard("model-00002-of-00002.safetensors", two, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write("model.safetensors.index.json", data, size);
    nn_err err;
    nn_st_archive a;
    if (nn_st_open_dir(fuzz_tmpdir(), &a, &err) == NN_OK)
        nn_st_close(&a);
    return 0;
}
