/* Encoding arbitrary bytes with the real GPT-2 and Llama 2 tokenizers (tokenizer.json, and Llama
 * 2's llama2.c tokenizer.bin) from the shared data, then decoding the ids, whole and streamed.
 * The first byte picks the tokenizer and the flags; the rest is the text. GPT-2 must also give
 * the text back exactly (byte-level, no clean-up of spaces). */
#include "fuzz_util.h"
#include "tokenizer.h"

static nn_tokenizer *toks[3];
static int n_toks;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *shared = fuzz_shared();
    static const char *const files[] = {"tokenizers/gpt2", "tokenizers/llama2",
                                        "tokenizers/llama2/tokenizer.bin"};
    for (int i = 0; shared && i < 3; i++) {
        char path[1024];
        nn_err err;
        snprintf(path, sizeof path, "%s/%s", shared, files[i]);
        if (nn_tokenizer_load(path, &toks[n_toks], &err) == NN_OK)
            n_toks++;
        else
            fprintf(stderr, "fuzz_tokenizer_encode: %s\n", err.msg);
    }
    if (n_toks < 3) {
        fprintf(stderr, "SKIPPED: fuzz_tokenizer_encode needs the GPT-2 and Llama 2 tokenizers of "
                        "the shared data (set NNTERP_SHARED)\n");
        exit(77);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    nn_tokenizer *t = toks[data[0] % n_toks];
    bool add_special = data[0] & 4, skip_special = data[0] & 8;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    nn_err err;
    nn_ids ids = {0};
    if (nn_tokenizer_encode(t, text, len, add_special, &ids, &err) == NN_OK) {
        size_t V = nn_tokenizer_vocab_size(t);
        for (size_t k = 0; k < ids.n; k++)
            if (ids.ids[k] < 0 || (size_t)ids.ids[k] >= V)
                abort();
        char *s = NULL;
        if (nn_tokenizer_decode(t, ids.ids, ids.n, skip_special, &s, &err) != NN_OK)
            abort(); /* ids from encode always decode */
        /* GPT-2 is byte-level and does not clean up spaces: decoding gives the text back */
        if (t == toks[0] && !skip_special && !memchr(text, 0, len) &&
            (strlen(s) != len || memcmp(s, text, len) != 0))
            abort();
        nn_free(s);
        nn_detokenizer d;
        nn_detokenizer_init(&d, t, skip_special);
        size_t half = ids.n / 2;
        if (nn_detokenizer_prime(&d, ids.ids, half, &err) != NN_OK)
            abort();
        for (size_t k = half; k < ids.n; k++) {
            char *piece = NULL;
            if (nn_detokenizer_push(&d, ids.ids[k], &piece, &err) != NN_OK)
                abort();
            nn_free(piece);
        }
        nn_detokenizer_free(&d);
    }
    nn_ids_free(&ids);
    /* The same bytes as ids: out-of-range ones must be refused, never read. */
    size_t n = len / 4;
    if (n) {
        int32_t *raw = malloc(n * sizeof *raw);
        memcpy(raw, text, n * sizeof *raw);
        for (size_t k = 0; k < n; k++)
            if (data[0] & 16)
                raw[k] = (int32_t)((uint32_t)raw[k] % (nn_tokenizer_vocab_size(t) + 8));
        char *s = NULL;
        if (nn_tokenizer_decode(t, raw, n, skip_special, &s, &err) == NN_OK)
            nn_free(s);
        free(raw);
    }
    return 0;
}
