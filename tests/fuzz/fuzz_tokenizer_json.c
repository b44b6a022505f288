/* Hugging Face tokenizer.json: arbitrary bytes loaded with nn_tokenizer_load; a tokenizer it
 * accepts then encodes a few fixed texts and decodes every id of its vocabulary. */
#include "fuzz_util.h"
#include "tokenizer.h"

static const char *const texts[] = {
    "Hello world",
    " leading  spaces\tand\nnewlines ",
    "caf\xc3\xa9 \xf0\x9f\x98\x80 123 4567",
    "<s>special</s><unk>",
    "",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256];
    fuzz_path(path, sizeof path, "tokenizer.json");
    fuzz_write("tokenizer.json", data, size);
    nn_err err;
    nn_tokenizer *t = NULL;
    if (nn_tokenizer_load(path, &t, &err) != NN_OK)
        return 0;
    size_t V = nn_tokenizer_vocab_size(t);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        nn_ids ids = {0};
        if (nn_tokenizer_encode(t, texts[i], strlen(texts[i]), i % 2 == 0, &ids, &err) == NN_OK) {
            for (size_t k = 0; k < ids.n; k++)
                if (ids.ids[k] < 0 || (size_t)ids.ids[k] >= V)
                    abort(); /* encode must only produce ids of the vocabulary */
            char *s = NULL;
            if (nn_tokenizer_decode(t, ids.ids, ids.n, i % 3 == 0, &s, &err) == NN_OK)
                nn_free(s);
        }
        nn_ids_free(&ids);
    }
    if (V <= 4096) {
        int32_t *all = malloc((V ? V : 1) * sizeof *all);
        size_t n = 0;
        for (size_t i = 0; i < V; i++)
            if (nn_tokenizer_piece(t, (int32_t)i, NULL))
                all[n++] = (int32_t)i;
        char *s = NULL;
        if (nn_tokenizer_decode(t, all, n, false, &s, &err) == NN_OK)
            nn_free(s);
        free(all);
    }
    nn_tokenizer_free(t);
    return 0;
}
