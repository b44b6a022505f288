/* The job file of nnterp run: nn_job_parse on arbitrary text. */
#include "fuzz_util.h"
#include "job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    nn_err err;
    nn_job j;
    if (nn_job_parse(text, "job.json", &j, &err) == NN_OK) {
        for (int i = 0; i < j.n_ops; i++)
            for (int k = 0; k < nn_positions_rows(&j.ops[i].positions, 7); k++)
                (void)nn_positions_resolve(&j.ops[i].positions, k, 7);
        nn_job_free(&j);
    }
    free(text);
    return 0;
}
