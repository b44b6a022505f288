/* stories260K, a real trained Llama: greedy generation from BOS reproduces llama2.c run.c's
 * published 256 ids token for token, from the llama2.c .bin and from the Hugging Face copy; and
 * both forms give the same logits. */
#include <math.h>
#include <string.h>

#include "generate.h"
#include "nn_test.h"

static void check_greedy(const char *model_path, const int32_t *expected, int n_expected)
{
    nn_err err = {{0}};
    nn_model *m;
    if (nn_model_load(model_path, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int32_t bos = 1, out[256];
    int n_out = 0;
    nn_generate_params gp = nn_generate_default_params();
    gp.max_new_tokens = n_expected;
    gp.stop_at_eos = false; /* run.c stops only at BOS, which the story never emits */
    CHECK_OK(nn_generate(m, &bos, 1, &gp, out, &n_out, &err), &err);
    int first_diff = -1;
    for (int i = 0; i < n_expected && first_diff < 0; i++)
        if (i >= n_out || out[i] != expected[i])
            first_diff = i;
    printf("%s: %d ids generated, %s\n", model_path, n_out,
           first_diff < 0 ? "all equal to greedy_256_ids.txt" : "DIFFER");
    CHECK(n_out == n_expected && first_diff < 0, "%s: greedy ids differ from index %d", model_path,
          first_diff);
    nn_model_free(m);
}

int main(void)
{
    const char *shared = nn_test_shared_dir("test_stories");
    nn_err err = {{0}};
    char *ids_path = nn_path_join(shared, "models/stories260K/greedy_256_ids.txt", &err);
    char *bin = nn_path_join(shared, "models/stories260K/stories260K.bin", &err);
    char *hf = nn_path_join(shared, "models/stories260K/hf", &err);
    char *text = NULL;
    if (nn_file_read(ids_path, 1 << 20, &text, NULL, &err)) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    int32_t expected[256];
    int n = 0;
    for (char *p = text, *end; n < 256; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        expected[n++] = (int32_t)v;
    }
    CHECK(n == 256, "expected 256 ids in %s, read %d", ids_path, n);
    check_greedy(bin, expected, n);
    check_greedy(hf, expected, n);

    /* The two forms of the model agree on the logits after a 24-token prefix. */
    nn_model *a = NULL, *b = NULL;
    CHECK_OK(nn_model_load(bin, &a, &err), &err);
    CHECK_OK(nn_model_load(hf, &b, &err), &err);
    if (a && b) {
        int32_t prompt[24] = {1};
        memcpy(prompt + 1, expected, 23 * sizeof(int32_t));
        int off[2] = {0, 24};
        nn_batch batch = {.tokens = prompt, .n_tokens = 24, .n_seqs = 1, .offsets = off};
        nn_state *sa = NULL, *sb = NULL;
        nn_state_params sp = {.max_tokens = 24, .max_seqs = 1};
        nn_forward_params fp = {.want_logits = true};
        CHECK_OK(nn_state_init(&sa, a, &sp, &err), &err);
        CHECK_OK(nn_state_init(&sb, b, &sp, &err), &err);
        CHECK_OK(nn_forward(a, sa, &batch, &fp, &err), &err);
        CHECK_OK(nn_forward(b, sb, &batch, &fp, &err), &err);
        double d = 0;
        for (int i = 0; i < 512; i++)
            d = fmax(d, fabs((double)nn_state_logits(sa)[i] - nn_state_logits(sb)[i]));
        printf(".bin vs HF logits: max abs diff %.3g\n", d);
        CHECK(d <= 1e-4, ".bin and HF logits differ by %.3g", d);
        nn_state_free(sa);
        nn_state_free(sb);
    }
    nn_model_free(a);
    nn_model_free(b);
    nn_free(text);
    nn_free(ids_path);
    nn_free(bin);
    nn_free(hf);
    return nn_test_finish("test_stories");
}
