/* bfloat16 compute (engine/gemm_bf16.h), what must hold exactly and what is bounded:
 * - GEMM: a row's bits do not depend on the block it shares or its position there, at a Llama-like
 *   K = 4096 (where a oneDNN primitive per M is not invariant), in both layouts; its error against
 *   a double-precision product is bounded (bfloat16: activation rounding; bfloat16x3:
 *   float32-grade);
 * - forward: a prompt alone and inside a packed batch, and 1 vs 2 threads, give the same bits at
 *   every hook point, in bfloat16 and bfloat16x3;
 * - the trained models (stories260K, models/demo): the greedy continuation and the logit lens's
 *   top-1 at every layer agree with float32;
 * - bad input: bfloat16x3 on F32 weights is refused with a message naming the model and dtype.
 * Runs on either bfloat16 kernel (oneDNN on AMX, or the vdpbf16ps kernel on AVX512-BF16; bfloat16x3
 * on AMX only); skips (77) where the CPU has neither. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "generate.h"
#include "nn_test.h"
#include "tokenizer.h"
#include "toolkit.h"

static uint32_t rng = 2024;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Every column block of y for rows [r0, r0 + rows). */
static void gemm_rows(const nn_bf16_gemm *g, const float *x, int K, int rows, const float *bias,
                      float *y, int N, void *scratch, nn_err *err)
{
    for (int cb = 0; cb < nn_bf16_gemm_col_blocks(g); cb++)
        CHECK_OK(nn_bf16_gemm_block(g, cb, x, (size_t)K, rows, bias, y, (size_t)N, scratch, err),
                 err);
}

static void gemm_invariance(nn_compute mode, bool in_major, int K, int N)
{
    enum { M = 300 };
    nn_err err = {{0}};
    uint16_t *w = malloc((size_t)K * N * sizeof *w);
    float *x = malloc((size_t)M * K * sizeof *x), *alone = malloc((size_t)M * N * sizeof *alone),
          *y = malloc((size_t)NN_BF16_ROWS * N * sizeof *y), *bias = malloc(N * sizeof *bias);
    for (size_t i = 0; i < (size_t)K * N; i++)
        w[i] = nn_f32_to_bf16(frand() * 0.05f);
    for (size_t i = 0; i < (size_t)M * K; i++)
        x[i] = frand() * (1.0f + (float)(i % 7));
    for (int j = 0; j < N; j++)
        bias[j] = frand();
    nn_bf16_gemm *g = NULL;
    size_t ld = in_major ? N : K;
    CHECK_OK(nn_bf16_gemm_create(w, bias, NN_DT_BF16, K, N, ld, in_major, mode, &g, &err), &err);
    CHECK(g != NULL, "no bfloat16 kernel for [%d x %d]", K, N);
    if (!g)
        goto done;
    void *scratch = malloc(nn_bf16_gemm_scratch_bytes(g));
    for (int r = 0; r < M; r++)
        gemm_rows(g, x + (size_t)r * K, K, 1, bias, alone + (size_t)r * N, N, scratch, &err);
    /* The same rows inside blocks of 2, 66 and 128 rows starting at various rows. */
    const int sizes[] = {2, 66, NN_BF16_ROWS}, starts[] = {0, 5, 171};
    size_t differing = 0;
    for (int si = 0; si < 3; si++)
        for (int st = 0; st < 3; st++) {
            int rows = sizes[si], r0 = starts[st];
            if (r0 + rows > M)
                continue;
            gemm_rows(g, x + (size_t)r0 * K, K, rows, bias, y, N, scratch, &err);
            differing += memcmp(y, alone + (size_t)r0 * N, (size_t)rows * N * sizeof(float)) != 0;
        }
    /* Against a product in double: worst |error| over the row's rms. */
    double worst = 0.0;
    for (int r = 0; r < M; r += 37) {
        double sq = 0.0, e = 0.0;
        for (int j = 0; j < N; j++) {
            double acc = bias[j];
            for (int k = 0; k < K; k++)
                acc += (double)x[(size_t)r * K + k] *
                       nn_bf16_to_f32(w[in_major ? (size_t)k * N + j : (size_t)j * K + k]);
            sq += acc * acc;
            e = fmax(e, fabs(acc - alone[(size_t)r * N + j]));
        }
        worst = fmax(worst, e / sqrt(sq / N));
    }
    double bound = mode == NN_COMPUTE_BF16X3 ? 1e-5 : 2e-2;
    printf("  %-10s %s K %d: %zu blocks differ from rows alone; max error / rms %.2e "
           "(bound %.0e)\n",
           nn_compute_name(mode), in_major ? "[K][N]" : "[N][K]", K, differing, worst, bound);
    CHECK(differing == 0, "%s: a row's bits depend on its block", nn_compute_name(mode));
    CHECK(worst <= bound, "%s: error %.3g over bound %.1g", nn_compute_name(mode), worst, bound);
    free(scratch);
done:
    nn_bf16_gemm_free(g);
    free(w);
    free(x);
    free(alone);
    free(y);
    free(bias);
}

/* Captures layers_output.* and logits. */
typedef struct capture {
    float *data[16][2];
    size_t n[16][2];
} capture;

static int grab(const nn_hook_view *v, void *user, nn_err *err)
{
    capture *c = user;
    int slot = v->point == NN_HP_LOGITS ? 1 : 0, l = v->layer < 0 ? 0 : v->layer;
    size_t n = v->rows * v->cols;
    nn_free(c->data[l][slot]);
    if (!(c->data[l][slot] = nn_malloc(n * sizeof(float), err)))
        return NN_ERR;
    memcpy(c->data[l][slot], v->data, n * sizeof(float));
    c->n[l][slot] = n;
    return NN_HOOK_CONTINUE;
}

static void capture_free(capture *c)
{
    for (int l = 0; l < 16; l++)
        for (int s = 0; s < 2; s++)
            nn_free(c->data[l][s]);
    memset(c, 0, sizeof *c);
}

static int forward(const nn_model *m, const int32_t *tok, const int *offsets, int n_seqs,
                   capture *cap, nn_err *err)
{
    nn_hookset hs;
    nn_state *st = NULL;
    int rc = NN_ERR;
    if (nn_hookset_init(&hs, m->cfg.n_layers, err))
        return NN_ERR;
    nn_batch b = {.tokens = tok, .n_tokens = offsets[n_seqs], .n_seqs = n_seqs, .offsets = offsets};
    nn_state_params sp = {.max_tokens = b.n_tokens, .max_seqs = n_seqs};
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    if (!nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, NN_ALL_LAYERS, grab, cap, err) &&
        !nn_hookset_add(&hs, NN_HP_LOGITS, -1, grab, cap, err) &&
        !nn_state_init(&st, m, &sp, err) && !nn_forward(m, st, &b, &fp, err))
        rc = NN_OK;
    nn_state_free(st);
    nn_hookset_free(&hs);
    return rc;
}

/* Prompts of 37, 60, 50 and 5 tokens (the tiny models' context is 64): packed they span two
 * 128-row blocks. */
static void forward_invariance(const char *dir, nn_compute mode)
{
    nn_err err = {{0}};
    nn_model *m = NULL;
    CHECK_OK(nn_model_load(dir, &m, &err), &err);
    if (!m)
        return;
    CHECK_OK(nn_model_set_compute(m, mode, &err), &err);
    enum { Q = 4, T = 152 };
    int lens[Q] = {37, 60, 50, 5}, offsets[Q + 1] = {0, 37, 97, 147, 152};
    int32_t tok[T];
    for (int i = 0; i < T; i++)
        tok[i] = (int32_t)((i * 7919u + 13u) % (unsigned)m->cfg.vocab_size);
    int L = m->cfg.n_layers, V = m->cfg.vocab_size;
    size_t D = (size_t)m->cfg.d_model;
    capture packed = {0}, one = {0};
    size_t differ = 0;
    openblas_set_num_threads(1);
    if (forward(m, tok, offsets, Q, &packed, &err)) {
        CHECK(0, "%s: %s", dir, err.msg);
        nn_model_free(m);
        return;
    }
    for (int q = 0; q < Q; q++) {
        int off[2] = {0, lens[q]};
        if (forward(m, tok + offsets[q], off, 1, &one, &err)) {
            CHECK(0, "%s: %s", dir, err.msg);
            break;
        }
        for (int l = 0; l < L && one.data[l][0]; l++)
            differ += memcmp(one.data[l][0], packed.data[l][0] + (size_t)offsets[q] * D,
                             (size_t)lens[q] * D * sizeof(float)) != 0;
        differ += memcmp(one.data[0][1], packed.data[0][1] + (size_t)offsets[q] * V,
                         (size_t)lens[q] * V * sizeof(float)) != 0;
        capture_free(&one);
    }
    size_t alone_differ = differ;
    openblas_set_num_threads(2);
    CHECK_OK(forward(m, tok, offsets, Q, &one, &err), &err);
    openblas_set_num_threads(1);
    differ = 0;
    for (int l = 0; l < L; l++)
        for (int s = 0; s < 2; s++)
            if (packed.data[l][s])
                differ += !one.data[l][s] ||
                          memcmp(one.data[l][s], packed.data[l][s], packed.n[l][s] * 4) != 0;
    printf("  %-10s %-44s alone vs packed: %zu differ; 1 vs 2 threads: %zu differ\n",
           nn_compute_name(mode), strstr(dir, "tiny/") ? strstr(dir, "tiny/") + 5 : dir,
           alone_differ, differ);
    CHECK(alone_differ == 0 && differ == 0, "%s %s: results depend on the batch or threads", dir,
          nn_compute_name(mode));
    capture_free(&packed);
    capture_free(&one);
    nn_model_free(m);
}

/* Greedy continuation and the lens's top-1 at every layer, bfloat16 against float32. */
static void trained(const char *dir, const char *text)
{
    nn_err err = {{0}};
    nn_model *m = NULL;
    nn_tokenizer *tok = NULL;
    nn_ids ids = {0};
    CHECK_OK(nn_model_load(dir, &m, &err), &err);
    CHECK_OK(nn_tokenizer_load(dir, &tok, &err), &err);
    if (!m || !tok || nn_tokenizer_encode(tok, text, strlen(text), true, &ids, &err) != NN_OK) {
        CHECK(0, "%s: %s", dir, err.msg);
        nn_model_free(m);
        nn_tokenizer_free(tok);
        return;
    }
    const int32_t *prompt = ids.ids;
    int n = (int)ids.n;
    enum { NEW = 24 };
    int32_t out[2][NEW];
    int n_out[2] = {0, 0}, lens_top[2][64];
    int L = m->cfg.n_layers < 64 ? m->cfg.n_layers : 64;
    for (int run = 0; run < 2; run++) {
        CHECK_OK(nn_model_set_compute(m, run ? NN_COMPUTE_BF16 : NN_COMPUTE_F32, &err), &err);
        nn_generate_params gp = nn_generate_default_params();
        gp.max_new_tokens = NEW;
        gp.stop_at_eos = false;
        CHECK_OK(nn_generate(m, prompt, n, &gp, out[run], &n_out[run], &err), &err);
        nn_lens_result r = {0};
        nn_lens_params lp = {.top_k = 1};
        nn_prompt p = {prompt, n};
        CHECK_OK(nn_logit_lens(m, &p, 1, &lp, &r, &err), &err);
        for (int l = 0; l < L && r.top_ids; l++)
            lens_top[run][l] = r.top_ids[l];
        nn_lens_result_free(&r);
    }
    int same = 0, lens_same = 0;
    while (same < n_out[0] && same < n_out[1] && out[0][same] == out[1][same])
        same++;
    for (int l = 0; l < L; l++)
        lens_same += lens_top[0][l] == lens_top[1][l];
    printf("  bfloat16   %-44s greedy: %d of %d tokens agree; lens top-1: %d of %d layers\n",
           strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir, same, NEW, lens_same, L);
    CHECK(same == NEW && lens_same == L, "%s: bfloat16 differs from float32", dir);
    nn_ids_free(&ids);
    nn_tokenizer_free(tok);
    nn_model_free(m);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *shared = nn_test_shared_dir("test_bf16");
    char bf16[192], x3[192];
    nn_bf16_kernel kernel = nn_bf16_kernel_for(NN_COMPUTE_BF16, bf16, sizeof bf16);
    bool has_x3 = nn_bf16_kernel_for(NN_COMPUTE_BF16X3, x3, sizeof x3) != NN_BF16_KERNEL_NONE;
    if (kernel == NN_BF16_KERNEL_NONE) {
        fprintf(stderr, "SKIPPED: no bfloat16 kernel on this CPU: %s\n", bf16);
        return NN_TEST_SKIP;
    }
    printf("bfloat16: %s\nbfloat16x3: %s\n", bf16, x3);
    openblas_set_num_threads(1);
    printf("GEMM blocks\n");
    for (int lay = 0; lay < 2; lay++) {
        gemm_invariance(NN_COMPUTE_BF16, lay, 4096, 320);
        /* an odd K, two column blocks of the vdpbf16ps kernel, a last panel of 28 columns */
        gemm_invariance(NN_COMPUTE_BF16, lay, 1001, 540);
        if (has_x3)
            gemm_invariance(NN_COMPUTE_BF16X3, lay, 4096, 320);
    }
    printf("forward: alone vs packed, 1 vs 2 threads\n");
    char dir[512];
    const char *bf16_models[] = {"gpt2", "llama_gqa", "mixtral"};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%s/reference/tiny/%s/model-bf16", shared, bf16_models[i]);
        forward_invariance(dir, NN_COMPUTE_BF16);
        if (has_x3)
            forward_invariance(dir, NN_COMPUTE_BF16X3);
    }
    snprintf(dir, sizeof dir, "%s/reference/tiny/gpt2/model-f32", shared);
    forward_invariance(dir, NN_COMPUTE_BF16);

    printf("trained models\n");
    snprintf(dir, sizeof dir, "%s/models/stories260K/hf", shared);
    trained(dir, "Once upon a time, Lily");
    trained(NNTERP_SOURCE_DIR "/models/demo", "The capital of France is");

    printf("bad input\n");
    snprintf(dir, sizeof dir, "%s/reference/tiny/llama_gqa/model-f32", shared);
    nn_err err = {{0}};
    nn_model *m = NULL;
    CHECK_OK(nn_model_load(dir, &m, &err), &err);
    if (m) {
        int rc = nn_model_set_compute(m, NN_COMPUTE_BF16X3, &err);
        printf("  bfloat16x3 on F32 weights -> %s\n", err.msg);
        CHECK(rc == NN_ERR && strstr(err.msg, "needs BF16 weights") && strstr(err.msg, "F32") &&
                  strstr(err.msg, "model-f32"),
              "bfloat16x3 on F32 weights: %s", err.msg);
        nn_model_free(m);
    }
    return nn_test_finish("test_bf16");
}
