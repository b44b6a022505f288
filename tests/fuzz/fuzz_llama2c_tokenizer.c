/* llama2.c tokenizer.bin: arbitrary bytes loaded with nn_tokenizer_load; a vocabulary it accepts
 * then encodes and decodes a few texts. */
#include "fuzz_util.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256];
    fuzz_path(path, sizeof path, "tokenizer.bin");
    fuzz_write("tokenizer.bin", data, size);
    nn_err err;
    nn_tokenizer *t = NULL;
    if (nn_tokenizer_load(path, &t, &err) != NN_OK)
        return 0;
    static const char *const texts[] = {"Once upon a time", "caf\xc3\xa9 \xf0\x9f\x98\x80", ""};
    size_t V = nn_tokenizer_vocab_size(t);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        nn_ids ids = {0};
        if (nn_tokenizer_encode(t, texts[i], strlen(texts[i]), true, &ids, &err) == NN_OK) {
            for (size_t k = 0; k < ids.n; k++)
                if (ids.ids[k] < 0 || (size_t)ids.ids[k] >= V)
                    abort(); /* encode must only produce ids of the vocabulary */
            char *s = NULL;
            if (nn_tokenizer_decode(t, ids.ids, ids.n, false, &s, &err) == NN_OK)
                nn_free(s);
        }
        nn_ids_free(&ids);
    }
    nn_tokenizer_free(t);
    return 0;
}
