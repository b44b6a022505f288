/* Invariants that hold exactly where the math allows (brief: "Correctness is the product"):
 * - layers_output.i == layers_input.(i+1), bit for bit;
 * - a prompt alone and inside a packed batch agree bit for bit;
 * - 1 and 2 BLAS threads agree bit for bit (the bundled model's MLP has K = 432, the shape that
 *   OpenBLAS's threaded driver cut differently on some kernels: engine/forward_kernels.c);
 * - a hook that writes back what it read leaves the logits bit for bit unchanged;
 * - stopping early after layer k gives the same layers_output.k;
 * - a sequence continued through the KV cache equals the whole sequence in one call;
 * - an edit made by a hook flows downstream (zeroed mlps_output: layers_output = mid residual);
 * - family shapes: a parallel block's output is input + attention + mlp; MoE router probabilities
 *   are distributions; Bloom's mlps_output is its layers_output. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "nn_test.h"
#include "pool.h"

#define MAX_L 16

static int stop_hook(const nn_hook_view *v, void *user, nn_err *err);
static int write_back_hook(const nn_hook_view *v, void *user, nn_err *err);
static int zero_hook(const nn_hook_view *v, void *user, nn_err *err);
static int route_to_0_hook(const nn_hook_view *v, void *user, nn_err *err);

typedef struct capture {
    float *data[NN_HP_COUNT][MAX_L];
    size_t size[NN_HP_COUNT][MAX_L];
} capture;

static int capture_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    capture *c = user;
    int l = v->layer < 0 ? 0 : v->layer;
    size_t n = v->rows * v->cols;
    nn_free(c->data[v->point][l]);
    if (!(c->data[v->point][l] = nn_malloc(n * sizeof(float), err)))
        return NN_ERR;
    memcpy(c->data[v->point][l], v->data, n * sizeof(float));
    c->size[v->point][l] = n;
    return NN_HOOK_CONTINUE;
}

static void capture_free(capture *c)
{
    for (int p = 0; p < NN_HP_COUNT; p++)
        for (int l = 0; l < MAX_L; l++)
            nn_free(c->data[p][l]);
    memset(c, 0, sizeof *c);
}

/* Runs the batch with capture hooks on every per-token point; logits of the last rows out. */
static int run(const nn_model *m, const nn_batch *b, capture *cap, float *logits, nn_err *err)
{
    nn_hookset hs;
    nn_state *st = NULL;
    int rc = NN_ERR;
    if (nn_hookset_init(&hs, m->cfg.n_layers, err))
        return NN_ERR;
    for (int p = 0; p < NN_HP_COUNT; p++)
        if (p != NN_HP_ATTENTION_PROBABILITIES && p != NN_HP_NEXT_TOKEN_PROBS &&
            nn_hookset_add(&hs, p, nn_hook_point_per_layer(p) ? NN_ALL_LAYERS : -1, capture_hook,
                           cap, err))
            goto done;
    nn_state_params sp = {.max_tokens = b->n_tokens, .max_seqs = b->n_seqs};
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    if (nn_state_init(&st, m, &sp, err) || nn_forward(m, st, b, &fp, err))
        goto done;
    memcpy(logits, nn_state_logits(st), (size_t)b->n_seqs * m->cfg.vocab_size * sizeof(float));
    rc = NN_OK;
done:
    nn_state_free(st);
    nn_hookset_free(&hs);
    return rc;
}

static int32_t tokens[3][40];
static const int lens[3] = {17, 40, 3};

static void check_model(const char *dir)
{
    nn_err err = {{0}};
    nn_model *m;
    if (nn_model_load(dir, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const nn_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, V = (size_t)c->vocab_size;
    int L = c->n_layers;
    printf("%s (%s, %d layers)\n", dir, c->arch->family, L);

    /* Packed batch of three prompts. */
    int32_t packed[80];
    int offsets[4] = {0};
    for (int q = 0; q < 3; q++) {
        memcpy(packed + offsets[q], tokens[q], (size_t)lens[q] * sizeof(int32_t));
        offsets[q + 1] = offsets[q] + lens[q];
    }
    nn_batch batch = {.tokens = packed, .n_tokens = offsets[3], .n_seqs = 3, .offsets = offsets};
    capture all = {0};
    float *logits = nn_malloc(3 * V * sizeof(float), &err);
    CHECK_OK(run(m, &batch, &all, logits, &err), &err);

    /* layers_output.i == layers_input.(i+1) bitwise */
    for (int l = 0; l + 1 < L; l++)
        CHECK(memcmp(all.data[NN_HP_LAYERS_OUTPUT][l], all.data[NN_HP_LAYERS_INPUT][l + 1],
                     all.size[NN_HP_LAYERS_OUTPUT][l] * sizeof(float)) == 0,
              "layers_output.%d != layers_input.%d", l, l + 1);

    /* Each prompt alone equals its rows of the packed batch. */
    double worst = 0;
    for (int q = 0; q < 3; q++) {
        int off0[2] = {0, lens[q]};
        nn_batch alone = {.tokens = tokens[q], .n_tokens = lens[q], .n_seqs = 1, .offsets = off0};
        capture one = {0};
        float *lg = nn_malloc(V * sizeof(float), &err);
        CHECK_OK(run(m, &alone, &one, lg, &err), &err);
        for (int l = 0; l < L; l++)
            worst = fmax(worst,
                         nn_test_max_diff(one.data[NN_HP_LAYERS_OUTPUT][l],
                                          all.data[NN_HP_LAYERS_OUTPUT][l] + (size_t)offsets[q] * D,
                                          (size_t)lens[q] * D));
        worst = fmax(worst, nn_test_max_diff(one.data[NN_HP_LOGITS][0],
                                             all.data[NN_HP_LOGITS][0] + (size_t)offsets[q] * V,
                                             (size_t)lens[q] * V));
        worst = fmax(worst, nn_test_max_diff(lg, logits + (size_t)q * V, V));
        capture_free(&one);
        nn_free(lg);
    }
    printf("  alone vs packed batch: max abs diff %.3g\n", worst);
    CHECK(worst == 0, "prompt alone vs in a batch differ by %.3g", worst);

    /* 2 BLAS threads vs 1. */
    openblas_set_num_threads(2);
    capture two = {0};
    float *lg2 = nn_malloc(3 * V * sizeof(float), &err);
    CHECK_OK(run(m, &batch, &two, lg2, &err), &err);
    openblas_set_num_threads(1);
    worst = nn_test_max_diff(lg2, logits, 3 * V);
    for (int l = 0; l < L; l++)
        worst =
            fmax(worst, nn_test_max_diff(two.data[NN_HP_LAYERS_OUTPUT][l],
                                         all.data[NN_HP_LAYERS_OUTPUT][l], (size_t)offsets[3] * D));
    printf("  1 vs 2 threads: max abs diff %.3g\n", worst);
    CHECK(worst == 0, "1 and 2 threads differ by %.3g", worst);
    capture_free(&two);
    nn_free(lg2);

    nn_state *st = NULL;
    nn_state_params sp = {.max_tokens = 80, .max_seqs = 3, .n_slots = 3, .slot_capacity = 64};
    CHECK_OK(nn_state_init(&st, m, &sp, &err), &err);

    /* Early stop after layer k: NN_STOPPED, and layers_output.k unchanged. */
    for (int k = 0; k < L; k++) {
        nn_hookset hs;
        capture cap = {0};
        CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
        CHECK_OK(nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, k, capture_hook, &cap, &err), &err);
        CHECK_OK(nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, k, stop_hook, NULL, &err), &err);
        nn_forward_params fp = {.hooks = &hs, .want_logits = true};
        int rc = nn_forward(m, st, &batch, &fp, &err);
        CHECK(rc == NN_STOPPED, "early stop at layer %d returned %d", k, rc);
        CHECK(memcmp(cap.data[NN_HP_LAYERS_OUTPUT][k], all.data[NN_HP_LAYERS_OUTPUT][k],
                     (size_t)offsets[3] * D * sizeof(float)) == 0,
              "stopping after layer %d changed layers_output.%d", k, k);
        capture_free(&cap);
        nn_hookset_free(&hs);
    }

    /* A hook on every point that writes back what it read leaves the logits bitwise unchanged. */
    {
        nn_hookset hs;
        CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
        for (int p = 0; p < NN_HP_COUNT; p++)
            CHECK_OK(nn_hookset_add(&hs, p, nn_hook_point_per_layer(p) ? NN_ALL_LAYERS : -1,
                                    write_back_hook, NULL, &err),
                     &err);
        nn_forward_params fp = {.hooks = &hs, .want_logits = true};
        CHECK_OK(nn_forward(m, st, &batch, &fp, &err), &err);
        CHECK(memcmp(nn_state_logits(st), logits, 3 * V * sizeof(float)) == 0,
              "write-back hooks changed the logits");
        nn_hookset_free(&hs);
    }

    /* KV cache: prompt 1 fed as 25 + 15 tokens in two calls equals one call. */
    {
        int slot = 1, pos0 = 0, off[2] = {0, 25};
        nn_batch first = {.tokens = tokens[1],
                          .n_tokens = 25,
                          .n_seqs = 1,
                          .offsets = off,
                          .pos0 = &pos0,
                          .slot = &slot};
        nn_forward_params fp = {.want_logits = true};
        CHECK_OK(nn_forward(m, st, &first, &fp, &err), &err);
        int pos1 = 25, off2[2] = {0, 15};
        nn_batch second = {.tokens = tokens[1] + 25,
                           .n_tokens = 15,
                           .n_seqs = 1,
                           .offsets = off2,
                           .pos0 = &pos1,
                           .slot = &slot};
        CHECK_OK(nn_forward(m, st, &second, &fp, &err), &err);
        double d = nn_test_max_diff(nn_state_logits(st), logits + V, V);
        printf("  KV-cache continuation vs one pass: max abs diff %.3g\n", d);
        CHECK(d <= 1e-5, "KV-cache continuation differs by %.3g", d);
    }

    /* An edit flows downstream. Zeroing mlps_output.0 makes layers_output.0 the residual after
     * attention: layers_input.0 + attentions_output.0 for sequential and parallel blocks. Where
     * the residual adds a post-normed branch (Gemma-2), zeroing both branch outputs makes
     * layers_output.0 = layers_input.0 (the norm of zeros is zero). Where the modules add the
     * residual themselves (Bloom), mlps_output.0 is layers_output.0, so it comes out zero. */
    {
        const nn_arch *a = c->arch;
        nn_hookset hs;
        capture cap = {0};
        CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
        CHECK_OK(nn_hookset_add_name(&hs, "mlps_output.0", zero_hook, NULL, &err), &err);
        if (a->post_attn_norm)
            CHECK_OK(nn_hookset_add_name(&hs, "attentions_output.0", zero_hook, NULL, &err), &err);
        CHECK_OK(nn_hookset_add_name(&hs, "layers_output.0", capture_hook, &cap, &err), &err);
        nn_forward_params fp = {.hooks = &hs};
        CHECK_OK(nn_forward(m, st, &batch, &fp, &err), &err);
        size_t n = (size_t)offsets[3] * D;
        float *want = nn_malloc(n * sizeof(float), &err);
        const char *what;
        for (size_t i = 0; i < n; i++) {
            float x = all.data[NN_HP_LAYERS_INPUT][0][i];
            if (a->residual_in_modules)
                want[i] = 0.0f;
            else if (a->post_attn_norm)
                want[i] = x;
            else if (c->residual_scale != 0.0f) /* Granite: the residual adds branch * m */
                want[i] = x + all.data[NN_HP_ATTENTIONS_OUTPUT][0][i] * c->residual_scale;
            else
                want[i] = x + all.data[NN_HP_ATTENTIONS_OUTPUT][0][i];
        }
        what = a->residual_in_modules ? "zeroed mlps_output.0 (= layers_output.0) is not zero"
               : a->post_attn_norm
                   ? "zeroed attentions_output.0 and mlps_output.0 did not leave layers_output.0 "
                     "= layers_input.0"
                   : "zeroed mlps_output.0 did not leave layers_output.0 = input + attention";
        CHECK(memcmp(want, cap.data[NN_HP_LAYERS_OUTPUT][0], n * sizeof(float)) == 0, "%s", what);
        nn_free(want);
        capture_free(&cap);
        nn_hookset_free(&hs);
    }

    /* Parallel blocks: layers_output = layers_input + attentions_output + mlps_output, and with
     * one shared norm mlps_input is attentions_input, bit for bit. */
    if (c->parallel) {
        size_t n = (size_t)offsets[3] * D;
        bool sum_ok = true;
        for (size_t i = 0; i < n; i++) {
            float want =
                all.data[NN_HP_LAYERS_INPUT][0][i] + all.data[NN_HP_ATTENTIONS_OUTPUT][0][i];
            want += all.data[NN_HP_MLPS_OUTPUT][0][i];
            sum_ok &= want == all.data[NN_HP_LAYERS_OUTPUT][0][i];
        }
        CHECK(sum_ok, "parallel block: layers_output.0 != input + attention + mlp");
        if (c->shared_norm)
            CHECK(memcmp(all.data[NN_HP_MLPS_INPUT][0], all.data[NN_HP_ATTENTIONS_INPUT][0],
                         n * sizeof(float)) == 0,
                  "parallel block on one norm: mlps_input.0 != attentions_input.0");
    }

    /* MoE: router_probabilities.i on every sparse layer, [T, n_experts], rows summing to 1 (a
     * sigmoid router's scores are each in (0, 1) instead: DeepSeek-V3). */
    bool sigmoid_router = c->arch->router_kind == NN_ROUTER_SIGMOID_GROUPED;
    for (int l = 0; l < L; l++) {
        if (!m->layers[l].moe) {
            CHECK(!all.data[NN_HP_ROUTER_PROBABILITIES][l],
                  "router_probabilities.%d fired on a dense layer", l);
            continue;
        }
        const float *p = all.data[NN_HP_ROUTER_PROBABILITIES][l];
        size_t X = (size_t)c->n_experts;
        CHECK(p && all.size[NN_HP_ROUTER_PROBABILITIES][l] == (size_t)offsets[3] * X,
              "router_probabilities.%d missing or of the wrong size", l);
        double worst = 0;
        bool in_range = true;
        for (int t = 0; p && t < offsets[3]; t++) {
            double sum = 0;
            for (size_t e = 0; e < X; e++) {
                sum += p[(size_t)t * X + e];
                in_range &= p[(size_t)t * X + e] > 0.0f && p[(size_t)t * X + e] < 1.0f;
            }
            worst = fmax(worst, fabs(sum - 1.0));
        }
        if (sigmoid_router)
            CHECK(in_range, "router_probabilities.%d: sigmoid scores outside (0, 1)", l);
        else
            CHECK(worst <= 1e-6, "router_probabilities.%d rows sum to 1 only within %.3g", l,
                  worst);
    }

    /* MoE: routing uses what the router_probabilities hook leaves (all weight on expert 0 changes
     * mlps_output of the first sparse layer). */
    int first_moe = 0;
    while (first_moe < L && !m->layers[first_moe].moe)
        first_moe++;
    if (first_moe < L) {
        nn_hookset hs;
        capture cap = {0};
        CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
        CHECK_OK(
            nn_hookset_add(&hs, NN_HP_ROUTER_PROBABILITIES, first_moe, route_to_0_hook, NULL, &err),
            &err);
        CHECK_OK(nn_hookset_add(&hs, NN_HP_MLPS_OUTPUT, first_moe, capture_hook, &cap, &err), &err);
        nn_forward_params fp = {.hooks = &hs};
        CHECK_OK(nn_forward(m, st, &batch, &fp, &err), &err);
        size_t n = (size_t)offsets[3] * D;
        CHECK(cap.data[NN_HP_MLPS_OUTPUT][first_moe] &&
                  memcmp(cap.data[NN_HP_MLPS_OUTPUT][first_moe],
                         all.data[NN_HP_MLPS_OUTPUT][first_moe], n * sizeof(float)) != 0,
              "editing router_probabilities.%d did not change mlps_output.%d", first_moe,
              first_moe);
        capture_free(&cap);
        nn_hookset_free(&hs);
    }

    /* Bloom: the attention and MLP hooks see the residual stream itself. */
    if (c->arch->residual_in_modules)
        CHECK(memcmp(all.data[NN_HP_MLPS_OUTPUT][0], all.data[NN_HP_LAYERS_OUTPUT][0],
                     (size_t)offsets[3] * D * sizeof(float)) == 0,
              "residual in modules: mlps_output.0 != layers_output.0");

    nn_state_free(st);
    capture_free(&all);
    nn_free(logits);
    nn_model_free(m);
}

static int stop_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    return NN_HOOK_STOP;
}

static int write_back_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    size_t n = v->rows * v->cols;
    float *copy = nn_malloc(n * sizeof(float), err);
    if (!copy)
        return NN_ERR;
    memcpy(copy, v->data, n * sizeof(float));
    memcpy(v->data, copy, n * sizeof(float));
    nn_free(copy);
    return NN_HOOK_CONTINUE;
}

static int route_to_0_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    for (size_t r = 0; r < v->rows; r++)
        for (size_t e = 0; e < v->cols; e++)
            v->data[r * v->cols + e] = e == 0 ? 1.0f : 0.0f;
    return NN_HOOK_CONTINUE;
}

static int zero_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    memset(v->data, 0, v->rows * v->cols * sizeof(float));
    return NN_HOOK_CONTINUE;
}

int main(int argc, char **argv)
{
    /* test_invariants [MODEL_DIR...]: the given checkpoints (tests/reference's), else the set
     * below from ../shared */
    const char *shared = argc > 1 ? NULL : nn_test_shared_dir("test_invariants");
    uint32_t seed = 12345;
    for (int q = 0; q < 3; q++)
        for (int t = 0; t < 40; t++) {
            seed = seed * 1664525u + 1013904223u;
            tokens[q][t] = (int32_t)(3 + (seed >> 8) % 290);
        }
    /* As the nnterp command does at start-up: OpenBLAS's threads restart with a short spin, and
     * the 1- vs 2-thread comparisons below run on them. */
    bool timeout_preset = getenv("OPENBLAS_THREAD_TIMEOUT") != NULL;
    bool applied = nn_blas_sleep_when_idle();
    const char *timeout = getenv("OPENBLAS_THREAD_TIMEOUT");
    CHECK(!(timeout_preset && applied), "nn_blas_sleep_when_idle overrode a preset timeout");
    CHECK(!applied || (timeout && !strcmp(timeout, "12")),
          "OPENBLAS_THREAD_TIMEOUT is not 12 after nn_blas_sleep_when_idle applied");
    /* OpenBLAS's pthreads build (openblas_get_parallel() == 1) is what CI links */
    CHECK(applied || timeout_preset || openblas_get_parallel() != 1,
          "nn_blas_sleep_when_idle did nothing on OpenBLAS's pthreads build");
    openblas_set_num_threads(1);
    /* One of each block shape: sequential (GPT-2, Llama, Mistral sliding window, stories260K),
     * sandwich norms with a per-layer window and soft-capping (Gemma-2), parallel on two norms
     * (GPT-NeoX, Falcon) and on one (GPT-J), ALiBi with the residual in the modules (Bloom), and
     * mixture of experts (Mixtral, Qwen2-MoE). */
    const char *models[] = {
        "reference/tiny/gpt2/model-f32",         "reference/tiny/llama_gqa/model-f32",
        "reference/tiny/mistral_swa8/model-f32", "models/stories260K/hf",
        "reference/tiny/gemma2/model-f32",       "reference/tiny/gpt_neox/model-f32",
        "reference/tiny/falcon/model-f32",       "reference/tiny/gptj/model-f32",
        "reference/tiny/bloom/model-f32",        "reference/tiny/mixtral/model-f32",
        "reference/tiny/qwen2_moe/model-f32"};
    for (int i = 1; i < argc; i++)
        check_model(argv[i]);
    for (size_t i = 0; argc == 1 && i < sizeof models / sizeof models[0]; i++) {
        nn_err err;
        char *dir = nn_path_join(shared, models[i], &err);
        check_model(dir);
        nn_free(dir);
    }
    /* The families of 2025-26 (committed under tests/reference): per-head q/k norms, local and
     * global rotary tables and layer_types (Gemma 3), no pre-norm with whole-projection q/k norms
     * (OLMo 3), NoPE layers (SmolLM3), residual and logit multipliers (Granite), dense layers
     * among the sparse ones (Qwen3-MoE). Phi-4-mini is not here: longrope switches to its long
     * factors once a prompt passes 16 positions, so a prompt continued through the KV cache past
     * that point is rotated differently from the same prompt in one pass (as in Hugging Face). */
    const char *modern[] = {"gemma3_text", "olmo3", "smollm3", "granite", "qwen3_moe"};
    if (argc == 1) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/models/demo", NNTERP_SOURCE_DIR);
        check_model(dir);
    }
    for (size_t i = 0; argc == 1 && i < sizeof modern / sizeof modern[0]; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/tests/reference/%s/model-f32", NNTERP_SOURCE_DIR, modern[i]);
        check_model(dir);
    }
    return nn_test_finish("test_invariants");
}
