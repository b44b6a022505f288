/* Hugging Face config.json: nn_config_from_hf on arbitrary text; a config it accepts is then
 * loaded against a real tiny checkpoint (reference/tiny/llama/model-f32 from the shared data,
 * when present), so the sizes it declares reach the weight loader. */
#include "fuzz_util.h"
#include "model.h"

static bool have_weights;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *shared = fuzz_shared();
    if (!shared) {
        fprintf(stderr, "fuzz_config: no shared data: only nn_config_from_hf is fuzzed\n");
        return 0;
    }
    char target[1024], link[256];
    snprintf(target, sizeof target, "%s/reference/tiny/llama/model-f32/model.safetensors", shared);
    fuzz_path(link, sizeof link, "model.safetensors");
    have_weights = nn_path_is_file(target) && symlink(target, link) == 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    nn_err err;
    nn_config c;
    if (nn_config_from_hf(text, "config.json", &c, &err) == NN_OK && have_weights) {
        fuzz_write("config.json", data, size);
        nn_model *m = NULL;
        if (nn_model_load_hf_dir(fuzz_tmpdir(), &m, &err) == NN_OK)
            nn_model_free(m);
    }
    free(text);
    return 0;
}
