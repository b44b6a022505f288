/* Allocation-failure injection (SQLite's test_malloc.c method): every allocation of nnterp goes
 * through nn_malloc/nn_calloc/nn_realloc, and nn_alloc_fail_after(N) makes the N-th from now
 * fail. For each operation below, N = 1, 2, 3, ... until the operation makes fewer than N
 * allocations: each run must return NN_ERR with a message (or NN_OK once no allocation failed),
 * never crash, and leak nothing. Leaks are caught by LeakSanitizer in the sanitizer build
 * (every run's leftovers are unreachable at exit) and, in the ordinary glibc build, by comparing
 * the heap's allocated bytes before and after each run. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "forward.h"
#include "job.h"
#include "nn_test.h"
#include "tokenizer.h"
#include "toolkit.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static const char *shared;

/* Heap bytes in use (glibc); leaks are left to LeakSanitizer under ASan. */
static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && !defined(UNDER_ASAN)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

typedef int (*op_fn)(const void *ctx, nn_err *err);

/* Runs op with each of its allocations failing in turn. */
static void sweep(const char *what, op_fn op, const void *ctx)
{
    nn_err err = {{0}};
    nn_alloc_fail_after(0);
    if (op(ctx, &err) != NN_OK) { /* warm-up: lazily created library state, and the count */
        CHECK(0, "%s: fails without injected failures: %s", what, err.msg);
        return;
    }
    long total = nn_alloc_fail_after(0);
    long n, leaks = 0, swallowed = 0;
    for (n = 1;; n++) {
        size_t before = heap_in_use();
        err.msg[0] = '\0';
        nn_alloc_fail_after(n);
        int rc = op(ctx, &err);
        long made = nn_alloc_fail_after(0);
        size_t after = heap_in_use();
        if (after != before) {
            if (leaks++ < 3)
                fprintf(stderr, "  %s: allocation %ld failing leaks %zd bytes (%s)\n", what, n,
                        (ssize_t)(after - before), err.msg);
        }
        if (made < n) { /* nothing failed this time: the operation is complete */
            CHECK(rc == NN_OK, "%s: %ld allocations, none failed, but: %s", what, made, err.msg);
            break;
        }
        if (rc != NN_ERR || !err.msg[0]) {
            if (swallowed++ < 3)
                fprintf(stderr, "  %s: allocation %ld failed but the call returned %d ('%s')\n",
                        what, n, rc, err.msg);
        }
        if (n > 4 * total + 100) {
            CHECK(0, "%s: allocation count does not converge (%ld runs)", what, n);
            break;
        }
    }
    CHECK(leaks == 0, "%s: %ld of %ld failure points leak", what, leaks, n - 1);
    CHECK(swallowed == 0, "%s: %ld of %ld failure points were not reported as errors", what,
          swallowed, n - 1);
    printf("  %-52s %4ld allocations, each failed in turn: %s\n", what, total,
           leaks || swallowed ? "FAILED" : "error, no crash, no leak");
}

/* ---- The operations ---------------------------------------------------------------------------
 */

static int op_load(const void *ctx, nn_err *err)
{
    nn_model *m = NULL;
    int rc = nn_model_load(ctx, &m, err);
    nn_model_free(m);
    return rc;
}

typedef struct tok_case {
    const char *path;
    const char *text;
} tok_case;

static int op_tokenizer(const void *ctx, nn_err *err)
{
    const tok_case *c = ctx;
    nn_tokenizer *t = NULL;
    nn_ids ids = {0};
    char *text = NULL;
    int rc = NN_ERR;
    if (nn_tokenizer_load(c->path, &t, err) ||
        nn_tokenizer_encode(t, c->text, strlen(c->text), true, &ids, err) ||
        nn_tokenizer_decode(t, ids.ids, ids.n, false, &text, err))
        goto done;
    nn_detokenizer d;
    nn_detokenizer_init(&d, t, true);
    for (size_t i = 0; i < ids.n; i++) {
        char *piece = NULL;
        int r = nn_detokenizer_push(&d, ids.ids[i], &piece, err);
        nn_free(piece);
        if (r) {
            nn_detokenizer_free(&d);
            goto done;
        }
    }
    nn_detokenizer_free(&d);
    rc = NN_OK;
done:
    nn_free(text);
    nn_ids_free(&ids);
    nn_tokenizer_free(t);
    return rc;
}

static int read_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    double *sum = user;
    for (size_t i = 0; i < v->rows * v->cols; i++)
        *sum += v->data[i];
    return NN_HOOK_CONTINUE;
}

static int write_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    for (size_t i = 0; i < v->rows * v->cols; i++)
        v->data[i] *= 1.0f;
    return NN_HOOK_CONTINUE;
}

static int op_forward(const void *ctx, nn_err *err)
{
    const nn_model *m = ctx;
    nn_state *st = NULL;
    nn_hookset hs = {0};
    double sum = 0;
    int32_t toks[7] = {1, 5, 9, 2, 7, 3, 4};
    int off[3] = {0, 4, 7};
    nn_batch b = {.tokens = toks, .n_tokens = 7, .n_seqs = 2, .offsets = off};
    nn_state_params sp = {.max_tokens = 16, .max_seqs = 2};
    int rc = NN_ERR;
    if (nn_state_init(&st, m, &sp, err) || nn_hookset_init(&hs, m->cfg.n_layers, err) ||
        nn_hookset_add_name(&hs, "layers_output", read_hook, &sum, err) ||
        nn_hookset_add_name(&hs, "attention_probabilities.0", read_hook, &sum, err) ||
        nn_hookset_add_name(&hs, "mlps_output.1", write_hook, NULL, err) ||
        nn_hookset_add_name(&hs, "next_token_probs", read_hook, &sum, err))
        goto done;
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    if (nn_forward(m, st, &b, &fp, err) < 0)
        goto done;
    rc = NN_OK;
done:
    nn_hookset_free(&hs);
    nn_state_free(st);
    return rc;
}

static int op_lens(const void *ctx, nn_err *err)
{
    const nn_model *m = ctx;
    int32_t ids[5] = {1, 403, 407, 261, 378};
    int32_t targets[2] = {317, 438};
    int positions[2] = {-1, 1};
    nn_prompt p[2] = {{ids, 5}, {ids, 3}};
    nn_lens_params lp = {.top_k = 3,
                         .positions = positions,
                         .n_positions = 2,
                         .target_ids = targets,
                         .n_targets = 2};
    nn_lens_result r;
    int rc = nn_logit_lens(m, p, 2, &lp, &r, err);
    if (rc == NN_OK)
        nn_lens_result_free(&r);
    return rc;
}

static int op_job(const void *ctx, nn_err *err)
{
    nn_job j;
    int rc = nn_job_load(ctx, &j, err);
    if (rc == NN_OK)
        nn_job_free(&j);
    return rc;
}

static int op_dataset(const void *ctx, nn_err *err)
{
    nn_dataset d;
    int rc = nn_dataset_read(ctx, NULL, "text", "targets", 0, &d, err);
    if (rc == NN_OK)
        nn_dataset_free(&d);
    return rc;
}

int main(int argc, char **argv)
{
#if defined(__GLIBC__) && !defined(UNDER_ASAN)
    /* glibc's per-thread cache counts freed chunks as in use: run again without it, so that the
     * heap's byte count is exact. */
    if (argc > 0 && !getenv("NN_ALLOC_TEST_CHILD")) {
        setenv("NN_ALLOC_TEST_CHILD", "1", 1);
        setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
        execv("/proc/self/exe", argv);
        perror("re-executing without glibc's tcache (the leak check may be noisy)");
    }
#endif
    shared = nn_test_shared_dir("test_alloc_failures");
#ifdef UNDER_ASAN
    printf("(AddressSanitizer build: LeakSanitizer checks for leaks at exit)\n");
#endif
    char p[8][1024];
    printf("model loading\n");
    const char *models[] = {"reference/tiny/gpt2/model-f32", "reference/tiny/llama_gqa/model-bf16",
                            "reference/tiny/mixtral/model-f32-sharded",
                            "reference/tiny/falcon/model-f32",
                            "models/stories260K/stories260K.bin"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        char what[160];
        snprintf(p[0], sizeof p[0], "%s/%s", shared, models[i]);
        snprintf(what, sizeof what, "load %s", models[i] + (strncmp(models[i], "ref", 3) ? 7 : 15));
        sweep(what, op_load, p[0]);
    }

    printf("tokenizers\n");
    snprintf(p[1], sizeof p[1], "%s/tokenizers/stories260K/tokenizer.json", shared);
    snprintf(p[2], sizeof p[2], "%s/tokenizers/stories260K/tok512.bin", shared);
    const char *text = "Once upon a time, Lily saw a caf\xc3\xa9 \xf0\x9f\x98\x80 and 42 dogs.";
    tok_case tj = {p[1], text}, tb = {p[2], text};
    sweep("stories260K tokenizer.json: load, encode, decode", op_tokenizer, &tj);
    sweep("stories260K tok512.bin: load, encode, decode", op_tokenizer, &tb);

    printf("forward pass and toolkit\n");
    nn_err err;
    nn_model *gpt2 = NULL, *stories = NULL;
    snprintf(p[3], sizeof p[3], "%s/reference/tiny/gpt2/model-f32", shared);
    snprintf(p[4], sizeof p[4], "%s/models/stories260K/hf", shared);
    CHECK_OK(nn_model_load(p[3], &gpt2, &err), &err);
    CHECK_OK(nn_model_load(p[4], &stories, &err), &err);
    if (gpt2)
        sweep("gpt2 forward pass, 2 packed prompts, 4 hooks", op_forward, gpt2);
    if (stories) {
        sweep("stories260K forward pass, 2 packed prompts, 4 hooks", op_forward, stories);
        sweep("stories260K logit lens (2 prompts, targets, top-k)", op_lens, stories);
    }
    nn_model_free(gpt2);
    nn_model_free(stories);

    printf("job file and dataset\n");
    sweep("examples/quickstart.json: parse", op_job, NNTERP_SOURCE_DIR "/examples/quickstart.json");
    sweep("examples/facts.jsonl: read", op_dataset, NNTERP_SOURCE_DIR "/examples/facts.jsonl");
    return nn_test_finish("test_alloc_failures");
}
