/* Prompt datasets: arbitrary bytes as a file read with nn_dataset_read. The first byte picks the
 * format (JSONL with or without targets, plain text); the rest is the file. */
#include "dataset.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    const char *name = mode == 2 ? "prompts.txt" : "prompts.jsonl";
    char path[256];
    fuzz_path(path, sizeof path, name);
    fuzz_write(name, data + 1, size - 1);
    nn_err err;
    nn_dataset d;
    /* a limit of 4 KB, so that the over-long line path is reached too */
    if (nn_dataset_read(path, NULL, "text", mode == 0 ? "targets" : NULL, 4096, &d, &err) ==
        NN_OK) {
        for (size_t i = 0; i < d.n; i++) {
            if (d.text_offsets[i + 1] < d.text_offsets[i] || (size_t)d.text_offsets[i + 1] > size ||
                d.source_line[i] < 1)
                abort();
            if (mode == 0 && !d.targets[i])
                abort();
        }
        nn_dataset_free(&d);
    }
    return 0;
}
