/* Safetensors images: the header parser (nn_st_parse) on arbitrary bytes, then every accepted
 * float tensor converted to float32 and looked up by name. */
#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nn_err err;
    nn_st_archive a;
    if (nn_st_parse(data, size, "fuzz.safetensors", 0, &a, &err) != NN_OK)
        return 0;
    for (size_t i = 0; i < a.n_tensors; i++) {
        const nn_st_tensor *t = &a.tensors[i];
        if (nn_st_find(&a, t->name) != t)
            abort(); /* names are unique and sorted: lookup must find the tensor itself */
        if (t->data < data || t->data + t->n_bytes > data + size)
            abort(); /* every accepted range lies inside the image */
        if (t->numel > (1u << 20))
            continue;
        float *f = malloc(t->numel * sizeof *f + 1);
        if (f && nn_st_to_f32(t, f, &err) == NN_OK && t->numel) {
            volatile float sink = f[t->numel - 1];
            (void)sink;
        }
        free(f);
    }
    nn_st_close(&a);
    return 0;
}
