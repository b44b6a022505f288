/* Batched generation gives every sequence the tokens it gets alone, bit for bit: greedy, seeded
 * sampling with and without a top-p nucleus, under a steering hook (whose positions are per
 * sequence), with prompts of different lengths finishing at different steps (EOS or the model's
 * context), and as the batch shrinks. Batched patchscope gives each source nn_patchscope_ctx's
 * probabilities bit for bit, also when its patched passes come in chunks. Runs on models/demo and,
 * with ../shared, on tiny GPT-2 (learned positions), BLOOM (ALiBi), Llama (RoPE) and Mistral (a
 * sliding window of 8). */
#include <string.h>

#include "nn_test.h"
#include "nnterp.h"

#define N_PROMPTS 5
#define G 12

static void check_model(const char *path)
{
    nn_err err = {{0}};
    nn_model *m = NULL;
    CHECK_OK(nn_model_load(path, &m, &err), &err);
    if (!m)
        return;
    const nn_config *c = nn_model_cfg(m);
    int V = c->vocab_size, D = c->d_model;
    /* prompts of different lengths; the last ends 3 tokens short of the context, so that it
     * stops there (after 4 tokens, as alone) while the others go on */
    int lens[N_PROMPTS] = {3, 1, 9, 5, c->max_positions - 3};
    int64_t offsets[N_PROMPTS + 1] = {0};
    for (int q = 0; q < N_PROMPTS; q++)
        offsets[q + 1] = offsets[q] + lens[q];
    int32_t *tokens = nn_malloc((size_t)offsets[N_PROMPTS] * sizeof *tokens, &err);
    float *vec = nn_malloc((size_t)D * sizeof *vec, &err);
    CHECK(tokens && vec, "alloc");
    if (!tokens || !vec)
        goto out;
    for (int64_t i = 0; i < offsets[N_PROMPTS]; i++)
        tokens[i] = (int32_t)((i * 7919 + 13) % V);
    for (int i = 0; i < D; i++)
        vec[i] = (float)((i % 5) - 2) * 0.5f;
    nn_context *cx = NULL, *one = NULL;
    CHECK_OK(nn_context_init(&cx, m, NULL, &err), &err);
    CHECK_OK(nn_context_init(&one, m, NULL, &err), &err);
    int layer = c->n_layers / 2;
    nn_steer st = {
        .vector = vec, .factor = 2.0f, .layers = &layer, .n_layers = 1, .from_position = 2};
    nn_hookset hs;
    CHECK_OK(nn_hookset_init(&hs, c->n_layers, &err), &err);
    CHECK_OK(nn_steer_add(&hs, m, &st, &err), &err);
    struct {
        float temperature, top_p;
        bool steer, eos;
    } cases[] = {{0.0f, 1.0f, false, true},
                 {0.9f, 1.0f, false, true},
                 {1.2f, 0.8f, false, false},
                 {0.0f, 1.0f, true, true},
                 {0.7f, 0.9f, true, false}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        nn_generate_params gp = nn_generate_default_params();
        gp.max_new_tokens = G;
        gp.temperature = cases[k].temperature;
        gp.top_p = cases[k].top_p;
        gp.stop_at_eos = cases[k].eos;
        gp.hooks = cases[k].steer ? &hs : NULL;
        uint64_t seeds[N_PROMPTS];
        for (int q = 0; q < N_PROMPTS; q++)
            seeds[q] = 1000 + (uint64_t)q * 17;
        int32_t batch[N_PROMPTS * G], alone[G];
        int n_batch[N_PROMPTS], n_alone = 0;
        CHECK_OK(
            nn_generate_batch_ctx(cx, tokens, offsets, N_PROMPTS, &gp, seeds, batch, n_batch, &err),
            &err);
        for (int q = 0; q < N_PROMPTS; q++) {
            gp.seed = seeds[q];
            CHECK_OK(nn_generate_ctx(one, tokens + offsets[q], lens[q], &gp, alone, &n_alone, &err),
                     &err);
            CHECK(n_alone == n_batch[q] &&
                      !memcmp(alone, batch + (size_t)q * G, (size_t)n_alone * sizeof *alone),
                  "%s case %zu prompt %d: batched tokens differ from one prompt (%d vs %d)", path,
                  k, q, n_batch[q], n_alone);
        }
    }
    /* patchscope: the same sources against a short target at a few layers out of order, and
     * against a long one at every layer (so that the patched passes come in chunks) */
    int L = c->n_layers, some[3] = {L - 1, 0, L / 2};
    int nsome = L > 2 ? 3 : 2;
    int tlen[2] = {4, c->max_positions - 1 < 300 ? c->max_positions - 1 : 300};
    for (int k = 0; k < 2; k++) {
        nn_patchscope_params pp = nn_patchscope_default_params();
        pp.layers = k == 0 ? some : NULL;
        pp.n_layers = k == 0 ? nsome : 0;
        pp.index_to_patch = k == 0 ? -1 : 2;
        pp.source_position = k == 0 ? -1 : 0;
        int nl = k == 0 ? nsome : L;
        nn_prompt target = {tokens, tlen[k]}; /* all prompts hold max_positions + 15 */
        float *probs = nn_malloc((size_t)N_PROMPTS * nl * V * sizeof *probs, &err);
        CHECK(probs != NULL, "alloc");
        if (!probs)
            break;
        CHECK_OK(nn_patchscope_batch_ctx(cx, tokens, offsets, N_PROMPTS, target, &pp, probs, &err),
                 &err);
        for (int q = 0; q < N_PROMPTS; q++) {
            nn_patchscope_result r;
            CHECK_OK(nn_patchscope_ctx(one, (nn_prompt){tokens + offsets[q], lens[q]}, target, &pp,
                                       &r, &err),
                     &err);
            CHECK(r.n_layers == nl &&
                      !memcmp(r.probs, probs + (size_t)q * nl * V, (size_t)nl * V * sizeof *probs),
                  "%s patchscope case %d source %d: batched probabilities differ", path, k, q);
            nn_patchscope_result_free(&r);
        }
        nn_free(probs);
    }
    /* a prompt too long for the context is refused, naming it */
    int64_t bad[2] = {0, c->max_positions + 1};
    int32_t *longp = nn_calloc((size_t)c->max_positions + 1, sizeof *longp, &err);
    int32_t o[G];
    int no[1];
    nn_generate_params gp = nn_generate_default_params();
    gp.max_new_tokens = G;
    CHECK(longp && nn_generate_batch_ctx(cx, longp, bad, 1, &gp, NULL, o, no, &err) == NN_ERR &&
              strstr(err.msg, "prompt 0"),
          "%s: an over-long prompt is refused", path);
    nn_free(longp);
    nn_hookset_free(&hs);
    nn_context_free(cx);
    nn_context_free(one);
out:
    nn_free(tokens);
    nn_free(vec);
    nn_model_free(m);
}

int main(void)
{
    check_model(NNTERP_SOURCE_DIR "/models/demo");
    const char *shared = getenv("NNTERP_SHARED");
    if (!shared || !nn_path_is_dir(shared)) {
        fprintf(
            stderr,
            "generate_batch: no shared test data; GPT-2, BLOOM, Llama and Mistral did not run\n");
        return nn_test_finish("generate_batch");
    }
    char path[1024];
    const char *archs[] = {"gpt2", "bloom", "llama", "mistral_swa8"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/reference/tiny/%s/model-f32", shared, archs[i]);
        check_model(path);
    }
    return nn_test_finish("generate_batch");
}
