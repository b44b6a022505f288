/* An SAE's cfg.json (engine/sae.c): nn_sae_load on arbitrary text beside real SAELens weights
 * (tests/sae/stories_standard) or, when the text names no SAELens weights, sparsify's
 * (tests/sae/stories_sparsify/layers.1); an SAE it accepts has its hook name mapped. */
#include "fuzz_util.h"
#include "sae.h"

#include <sys/stat.h>

static char saelens_dir[1024], sparsify_dir[1024];

static void link_weights(const char *dir, const char *src, const char *name)
{
    char target[1024], link[1200];
    snprintf(target, sizeof target, "%s/%s", src, name);
    snprintf(link, sizeof link, "%s/%s", dir, name);
    if (symlink(target, link) != 0)
        fprintf(stderr, "fuzz_sae_cfg: cannot link %s\n", link);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(saelens_dir, sizeof saelens_dir, "%s/saelens", fuzz_tmpdir());
    snprintf(sparsify_dir, sizeof sparsify_dir, "%s/layers.1", fuzz_tmpdir());
    mkdir(saelens_dir, 0700);
    mkdir(sparsify_dir, 0700);
    link_weights(saelens_dir, NNTERP_SOURCE_DIR "/tests/sae/stories_standard",
                 "sae_weights.safetensors");
    link_weights(sparsify_dir, NNTERP_SOURCE_DIR "/tests/sae/stories_sparsify/layers.1",
                 "sae.safetensors");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dirs[2] = {saelens_dir, sparsify_dir};
    for (int i = 0; i < 2; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/cfg.json", dirs[i]);
        FILE *f = fopen(path, "wb");
        if (!f)
            return 0;
        fwrite(data, 1, size, f);
        fclose(f);
        nn_err err;
        nn_sae sae;
        if (nn_sae_load(dirs[i], &sae, &err) == NN_OK) {
            char mapped[128];
            nn_sae_hook_map(sae.hook_name, mapped, sizeof mapped, &err);
            nn_sae_free(&sae);
        }
    }
    return 0;
}
