/* nn_context: the toolkit's _ctx forms give the bits of the forms that make a fresh state, on a
 * context reused across calls and regrown between them; a hook cannot start a pass on the context
 * running it; the tables and pool are the context's (one per model). Runs on the bundled
 * models/demo (RoPE) and, when ../shared is present, on BLOOM (ALiBi) and GPT-2. */
#include <string.h>

#include "nn_test.h"
#include "nnterp.h"

static int nested_forward(const nn_hook_view *v, void *user, nn_err *err)
{
    nn_context *cx = user;
    int rc = nn_context_forward(cx, v->batch, NULL, err);
    return rc == NN_ERR ? NN_ERR : NN_HOOK_CONTINUE;
}

static void check_model(const char *path)
{
    nn_err err = {{0}};
    nn_model *m = NULL;
    CHECK_OK(nn_model_load(path, &m, &err), &err);
    if (!m)
        return;
    int V = nn_model_vocab_size(m), L = nn_model_n_layers(m);
    int32_t a[] = {1, 7, 3, 9, 4, 2}, b[] = {5, 6, 8};
    nn_prompt ps[] = {{a, 6}, {b, 3}};
    nn_context *cx = NULL;
    CHECK_OK(nn_context_init(&cx, m, &(nn_state_params){.max_tokens = 2, .max_seqs = 1}, &err),
             &err);
    CHECK(nn_context_model(cx) == m, "%s: context model", path);

    /* logit lens: fresh state vs a context that has to grow for it */
    nn_lens_params lp = {.top_k = 3, .full = true};
    nn_lens_result r1 = {0}, r2 = {0};
    CHECK_OK(nn_logit_lens(m, ps, 2, &lp, &r1, &err), &err);
    CHECK_OK(nn_logit_lens_ctx(cx, ps, 2, &lp, &r2, &err), &err);
    size_t n = (size_t)2 * L * V;
    CHECK(r1.full && r2.full && !memcmp(r1.full, r2.full, n * sizeof(float)),
          "%s: lens through a context differs", path);

    /* generation grows the state again (KV-cache slots); then a plain pass on the same state */
    nn_generate_params gp = nn_generate_default_params();
    gp.max_new_tokens = 6;
    gp.stop_at_eos = false;
    int32_t g1[6], g2[6];
    int n1 = 0, n2 = 0;
    CHECK_OK(nn_generate(m, a, 6, &gp, g1, &n1, &err), &err);
    CHECK_OK(nn_generate_ctx(cx, a, 6, &gp, g2, &n2, &err), &err);
    CHECK(n1 == n2 && !memcmp(g1, g2, (size_t)n1 * sizeof *g1), "%s: generation differs", path);

    float *p1 = nn_calloc((size_t)2 * V, sizeof(float), &err),
          *p2 = nn_calloc((size_t)2 * V, sizeof(float), &err);
    CHECK_OK(nn_next_token_probs(m, ps, 2, NULL, p1, &err), &err);
    CHECK_OK(nn_next_token_probs_ctx(cx, ps, 2, NULL, p2, &err), &err);
    CHECK(p1 && p2 && !memcmp(p1, p2, (size_t)2 * V * sizeof(float)), "%s: next_token_probs differ",
          path);
    /* the lens at the last layer is next_token_probs, through the same context */
    for (int p = 0; p < 2; p++)
        CHECK(!memcmp(r2.full + ((size_t)p * L + (L - 1)) * V, p2 + (size_t)p * V,
                      (size_t)V * sizeof(float)),
              "%s: last-layer lens of prompt %d is not next_token_probs", path, p);

    /* patchscope */
    nn_patchscope_params pp = nn_patchscope_default_params();
    pp.generate = 3;
    nn_patchscope_result s1 = {0}, s2 = {0};
    CHECK_OK(nn_patchscope(m, ps[0], ps[1], &pp, &s1, &err), &err);
    CHECK_OK(nn_patchscope_ctx(cx, ps[0], ps[1], &pp, &s2, &err), &err);
    CHECK(s1.probs && s2.probs && !memcmp(s1.probs, s2.probs, (size_t)L * V * sizeof(float)) &&
              !memcmp(s1.tokens, s2.tokens, (size_t)L * 3 * sizeof(int32_t)),
          "%s: patchscope differs", path);

    /* a hook that starts a pass on the context running it: an error, not a freed state */
    nn_hookset *hs = NULL;
    CHECK_OK(nn_hookset_create(&hs, L, &err), &err);
    CHECK(nn_hookset_n_layers(hs) == L, "hookset layers");
    CHECK_OK(nn_hookset_add(hs, NN_HP_LAYERS_OUTPUT, 0, nested_forward, cx, &err), &err);
    int offs[] = {0, 6};
    nn_batch batch = {.tokens = a, .n_tokens = 6, .n_seqs = 1, .offsets = offs};
    nn_forward_params fp = {.hooks = hs, .want_logits = true};
    nn_err e2 = {{0}};
    CHECK(nn_context_forward(cx, &batch, &fp, &e2) == NN_ERR && strstr(e2.msg, "busy"),
          "%s: nested pass: '%s'", path, e2.msg);
    /* and the context still works, with the same bits */
    fp.hooks = NULL;
    CHECK_OK(nn_context_forward(cx, &batch, &fp, &err), &err);
    const float *z = nn_state_logits(nn_context_last_state(cx));
    float *row = nn_calloc((size_t)V, sizeof(float), &err);
    if (row && z) {
        memcpy(row, z, (size_t)V * sizeof(float));
        nn_softmax(row, (size_t)V);
        CHECK(!memcmp(row, p1, (size_t)V * sizeof(float)), "%s: forward after the error", path);
    }
    nn_free(row);
    nn_hookset_destroy(hs);
    nn_free(p1);
    nn_free(p2);
    nn_patchscope_result_free(&s1);
    nn_patchscope_result_free(&s2);
    nn_lens_result_free(&r1);
    nn_lens_result_free(&r2);
    nn_context_free(cx);
    nn_model_free(m);
}

int main(void)
{
    nn_err err = {{0}};
    nn_context *cx = NULL;
    CHECK(nn_context_init(&cx, NULL, NULL, &err) == NN_ERR && cx == NULL, "no model");
    CHECK(nn_abi_sizeof("nn_hook_view") == sizeof(nn_hook_view) && nn_abi_sizeof("x") == 0,
          "abi sizes");
    CHECK(nn_version_number() ==
              NNTERP_VERSION_MAJOR * 10000 + NNTERP_VERSION_MINOR * 100 + NNTERP_VERSION_PATCH,
          "version");
    check_model(NNTERP_SOURCE_DIR "/models/demo");
    const char *shared = getenv("NNTERP_SHARED");
    if (!shared || !nn_path_is_dir(shared)) {
        fprintf(stderr, "context: no shared test data; the ALiBi and GPT-2 checks did not run\n");
        return nn_test_finish("context");
    }
    char path[1024];
    const char *archs[] = {"bloom", "gpt2"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/reference/tiny/%s/model-f32", shared, archs[i]);
        check_model(path);
    }
    return nn_test_finish("context");
}
