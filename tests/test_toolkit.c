/* The toolkit's guarantees (issue "The interpretability toolkit"): logit lens vs next_token_probs
 * and vs Hugging Face's logit-lens dumps, identity patchscope, steering algebra, skipping layers,
 * attention edits, target-token probabilities, and the errors of bad input. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "nn_json.h"
#include "nn_test.h"
#include "toolkit.h"

static const char *shared;

static nn_model *load(const char *rel)
{
    nn_err err = {{0}};
    char *path = nn_path_join(shared, rel, &err);
    nn_model *m = NULL;
    CHECK_OK(nn_model_load(path, &m, &err), &err);
    nn_free(path);
    return m;
}

static int32_t prompt_a[12] = {1, 45, 88, 12, 230, 7, 99, 150, 3, 61, 201, 17};
static int32_t prompt_b[7] = {1, 19, 240, 5, 77, 130, 66};

/* Logits at every position, with optional extra hooks. */
typedef struct grab {
    float *data;
    size_t n;
} grab;

static int grab_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    grab *g = user;
    g->n = v->rows * v->cols;
    nn_free(g->data);
    if (!(g->data = nn_malloc(g->n * sizeof(float), err)))
        return NN_ERR;
    memcpy(g->data, v->data, g->n * sizeof(float));
    return NN_HOOK_CONTINUE;
}

static int run_logits(const nn_model *m, nn_prompt p, nn_hookset *extra, grab *logits, nn_err *err)
{
    nn_hookset own;
    nn_hookset *hs = extra;
    if (!hs) {
        if (nn_hookset_init(&own, m->cfg.n_layers, err))
            return NN_ERR;
        hs = &own;
    }
    int rc = nn_hookset_add(hs, NN_HP_LOGITS, -1, grab_hook, logits, err);
    nn_state *st = NULL;
    int off[2] = {0, p.n};
    nn_batch b = {.tokens = p.ids, .n_tokens = p.n, .n_seqs = 1, .offsets = off};
    nn_state_params sp = {.max_tokens = p.n, .max_seqs = 1};
    nn_forward_params fp = {.hooks = hs};
    if (rc == NN_OK)
        rc = nn_state_init(&st, m, &sp, err) || nn_forward(m, st, &b, &fp, err) ? NN_ERR : NN_OK;
    nn_state_free(st);
    if (!extra)
        nn_hookset_free(&own);
    return rc;
}

static void lens_and_patchscope(const nn_model *m, const char *name)
{
    nn_err err = {{0}};
    size_t V = (size_t)m->cfg.vocab_size;
    int L = m->cfg.n_layers;
    nn_prompt ps[2] = {{prompt_a, 12}, {prompt_b, 7}};
    float *ntp = nn_malloc(2 * V * sizeof(float), &err);
    CHECK_OK(nn_next_token_probs(m, ps, 2, NULL, ntp, &err), &err);
    int pos[2] = {-1, 2};
    nn_lens_params lp = {.positions = pos, .n_positions = 2, .top_k = 5, .full = true};
    nn_lens_result r;
    CHECK_OK(nn_logit_lens(m, ps, 2, &lp, &r, &err), &err);
    double worst_last = 0, worst_sum = 0;
    for (int p = 0; p < 2; p++) {
        const float *last = r.full + (((size_t)p * L + (L - 1)) * 2 + 0) * V;
        worst_last = fmax(worst_last, nn_test_max_diff(last, ntp + (size_t)p * V, V));
        for (int l = 0; l < L; l++)
            for (int j = 0; j < 2; j++) {
                const float *row = r.full + (((size_t)p * L + l) * 2 + j) * V;
                double s = 0;
                for (size_t v = 0; v < V; v++)
                    s += row[v];
                worst_sum = fmax(worst_sum, fabs(s - 1));
                size_t top = (((size_t)p * L + l) * 2 + j) * 5;
                CHECK(r.top_probs[top] == row[r.top_ids[top]] &&
                          r.top_probs[top] >= r.top_probs[top + 1],
                      "%s: top-k inconsistent", name);
            }
    }
    printf("  %-12s lens(last layer) vs next_token_probs %.3g; |row sum - 1| %.3g\n", name,
           worst_last, worst_sum);
    CHECK(worst_last <= 1e-6, "%s: lens at the last layer differs from next_token_probs by %.3g",
          name, worst_last);
    CHECK(worst_sum <= 1e-5, "%s: a lens row sums to 1 +- %.3g", name, worst_sum);
    nn_lens_result_free(&r);

    /* Identity patchscope: target == source, index -1 -> the source's next_token_probs. */
    nn_patchscope_params pp = nn_patchscope_default_params();
    nn_patchscope_result pr;
    CHECK_OK(nn_patchscope(m, ps[0], ps[0], &pp, &pr, &err), &err);
    double worst = 0;
    for (int l = 0; l < pr.n_layers; l++)
        worst = fmax(worst, nn_test_max_diff(pr.probs + (size_t)l * V, ntp, V));
    printf("  %-12s identity patchscope vs next_token_probs %.3g\n", name, worst);
    CHECK(worst <= 1e-6, "%s: identity patchscope differs by %.3g", name, worst);
    nn_patchscope_result_free(&pr);
    nn_free(ntp);
}

static void steering(const nn_model *m)
{
    nn_err err = {{0}};
    size_t D = (size_t)m->cfg.d_model;
    int L = m->cfg.n_layers;
    nn_prompt p = {prompt_a, 12};
    float *v = nn_malloc(D * sizeof(float), &err), *w = nn_malloc(D * sizeof(float), &err),
          *vw = nn_malloc(D * sizeof(float), &err);
    for (size_t i = 0; i < D; i++) {
        v[i] = (float)sin(0.3 * (double)i);
        w[i] = (float)cos(0.7 * (double)i) * 0.5f;
        vw[i] = v[i] + w[i];
    }
    int layers[2] = {0, L - 1};
    grab clean = {0}, zero = {0}, two = {0}, sum = {0}, late = {0};
    CHECK_OK(run_logits(m, p, NULL, &clean, &err), &err);
    nn_hookset hs;
    nn_steer s0 = {.vector = v, .factor = 0.0f, .layers = layers, .n_layers = 2};
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_steer_add(&hs, m, &s0, &err), &err);
    CHECK_OK(run_logits(m, p, &hs, &zero, &err), &err);
    nn_hookset_free(&hs);
    CHECK(zero.n == clean.n && memcmp(zero.data, clean.data, clean.n * sizeof(float)) == 0,
          "steering with factor 0 changed the logits");
    nn_steer sv = {.vector = v, .factor = 2.0f, .layers = layers, .n_layers = 1};
    nn_steer sw = {.vector = w, .factor = 2.0f, .layers = layers, .n_layers = 1};
    nn_steer svw = {.vector = vw, .factor = 2.0f, .layers = layers, .n_layers = 1};
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_steer_add(&hs, m, &sv, &err), &err);
    CHECK_OK(nn_steer_add(&hs, m, &sw, &err), &err);
    CHECK_OK(run_logits(m, p, &hs, &two, &err), &err);
    nn_hookset_free(&hs);
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_steer_add(&hs, m, &svw, &err), &err);
    CHECK_OK(run_logits(m, p, &hs, &sum, &err), &err);
    nn_hookset_free(&hs);
    double d = nn_test_max_diff(two.data, sum.data, clean.n),
           moved = nn_test_max_diff(two.data, clean.data, clean.n);
    printf("  steer v then w vs v+w: %.3g (moved the logits by %.3g)\n", d, moved);
    CHECK(d <= 1e-5 && moved > 1e-3, "steer v then w vs v+w: %.3g, moved %.3g", d, moved);
    /* From position 5 on: logits before 5 unchanged, bit for bit. */
    nn_steer from5 = {
        .vector = v, .factor = 3.0f, .layers = layers, .n_layers = 2, .from_position = 5};
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_steer_add(&hs, m, &from5, &err), &err);
    CHECK_OK(run_logits(m, p, &hs, &late, &err), &err);
    nn_hookset_free(&hs);
    size_t V = (size_t)m->cfg.vocab_size;
    CHECK(memcmp(late.data, clean.data, 5 * V * sizeof(float)) == 0,
          "steering from position 5 changed earlier logits");
    CHECK(nn_test_max_diff(late.data + 5 * V, clean.data + 5 * V, 7 * V) > 1e-3,
          "steering from position 5 changed nothing after it");
    /* Bad vectors */
    nn_steer bad = {.vector = v, .factor = 1.0f, .layers = (int[]){L}, .n_layers = 1};
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK(nn_steer_add(&hs, m, &bad, &err) == NN_ERR && strstr(err.msg, "out of range"),
          "steer at layer L: %s", err.msg);
    nn_hookset_free(&hs);
    grab *gs[] = {&clean, &zero, &two, &sum, &late};
    for (size_t i = 0; i < 5; i++)
        nn_free(gs[i]->data);
    nn_free(v);
    nn_free(w);
    nn_free(vw);
}

static int capture_all_layers_io(const nn_hook_view *v, void *user, nn_err *err)
{
    float **slots = user; /* [2 * L]: inputs then outputs */
    size_t n = v->rows * v->cols;
    float **slot = &slots[(v->point == NN_HP_LAYERS_OUTPUT ? 64 : 0) + v->layer];
    nn_free(*slot);
    if (!(*slot = nn_malloc(n * sizeof(float), err)))
        return NN_ERR;
    memcpy(*slot, v->data, n * sizeof(float));
    return NN_HOOK_CONTINUE;
}

static void skipping(const nn_model *m)
{
    nn_err err = {{0}};
    int L = m->cfg.n_layers;
    nn_prompt p = {prompt_a, 12};
    float *clean_io[128] = {0}, *skip_io[128] = {0};
    grab clean = {0}, skipped = {0}, restored = {0};
    nn_hookset hs;
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    nn_hookset_add(&hs, NN_HP_LAYERS_INPUT, NN_ALL_LAYERS, capture_all_layers_io, clean_io, &err);
    nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, NN_ALL_LAYERS, capture_all_layers_io, clean_io, &err);
    CHECK_OK(run_logits(m, p, &hs, &clean, &err), &err);
    nn_hookset_free(&hs);
    /* Skipping layer 1: its output is its input, bit for bit. */
    int one = 1;
    nn_skip *sk;
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_skip_add(&hs, m, &one, 1, NULL, &sk, &err), &err);
    nn_hookset_add(&hs, NN_HP_LAYERS_INPUT, NN_ALL_LAYERS, capture_all_layers_io, skip_io, &err);
    nn_hookset_add(&hs, NN_HP_LAYERS_OUTPUT, NN_ALL_LAYERS, capture_all_layers_io, skip_io, &err);
    CHECK_OK(run_logits(m, p, &hs, &skipped, &err), &err);
    nn_hookset_free(&hs);
    nn_skip_free(sk);
    size_t n = (size_t)12 * m->cfg.d_model;
    CHECK(memcmp(skip_io[64 + 1], skip_io[1], n * sizeof(float)) == 0,
          "skipping layer 1: layers_output.1 != layers_input.1");
    CHECK(nn_test_max_diff(skipped.data, clean.data, clean.n) > 1e-4,
          "skipping layer 1 changed nothing");
    /* Skipping layers 0..k with the clean layers_output.k reproduces the clean logits. */
    int k = L - 2 > 0 ? L - 2 : 0, layers[64];
    const float *values[64];
    for (int i = 0; i <= k; i++) {
        layers[i] = i;
        values[i] = clean_io[64 + k];
    }
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_skip_add(&hs, m, layers, k + 1, values, &sk, &err), &err);
    CHECK_OK(run_logits(m, p, &hs, &restored, &err), &err);
    nn_hookset_free(&hs);
    nn_skip_free(sk);
    CHECK(memcmp(restored.data, clean.data, clean.n * sizeof(float)) == 0,
          "skipping layers 0..%d with the clean layers_output.%d did not reproduce the logits", k,
          k);
    for (int i = 0; i < 128; i++) {
        nn_free(clean_io[i]);
        nn_free(skip_io[i]);
    }
    nn_free(clean.data);
    nn_free(skipped.data);
    nn_free(restored.data);
}

typedef struct probs_check {
    double worst_sum, worst_upper;
} probs_check;

static int check_probs_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    probs_check *c = user;
    int n = v->batch->offsets[v->seq + 1] - v->batch->offsets[v->seq];
    for (int h = 0; h < v->n_heads; h++)
        for (int i = 0; i < n; i++) {
            const float *row = v->data + ((size_t)h * n + i) * v->cols;
            double s = 0;
            for (size_t j = 0; j < v->cols; j++) {
                s += row[j];
                if ((int)j > i)
                    c->worst_upper = fmax(c->worst_upper, fabs(row[j]));
            }
            c->worst_sum = fmax(c->worst_sum, fabs(s - 1));
        }
    return NN_HOOK_CONTINUE;
}

static void attention_edits(const nn_model *m)
{
    nn_err err = {{0}};
    int L = m->cfg.n_layers;
    nn_prompt p = {prompt_a, 12};
    probs_check pc = {0};
    grab clean = {0}, edited = {0};
    nn_hookset hs;
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    nn_hookset_add(&hs, NN_HP_ATTENTION_PROBABILITIES, NN_ALL_LAYERS, check_probs_hook, &pc, &err);
    CHECK_OK(run_logits(m, p, &hs, &clean, &err), &err);
    nn_hookset_free(&hs);
    CHECK(pc.worst_upper == 0 && pc.worst_sum < 1e-5,
          "attention probabilities not causal (%.3g above the diagonal) or rows off by %.3g",
          pc.worst_upper, pc.worst_sum);
    nn_attn_edit e = {.layer = 0,
                      .head = -1,
                      .query = NN_ALL_POSITIONS,
                      .key = 0,
                      .to_key = 1,
                      .op = NN_ATTN_MOVE};
    pc = (probs_check){0};
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_attn_edit_add(&hs, m, &e, &err), &err);
    nn_hookset_add(&hs, NN_HP_ATTENTION_PROBABILITIES, 0, check_probs_hook, &pc, &err);
    CHECK_OK(run_logits(m, p, &hs, &edited, &err), &err);
    nn_hookset_free(&hs);
    double d = nn_test_max_diff(edited.data, clean.data, clean.n);
    printf("  moving attention mass from key 0 to key 1 at layer 0 moves the logits by %.3g\n", d);
    CHECK(d > 1e-4, "moving attention mass changed nothing");
    CHECK(pc.worst_sum < 1e-5, "an edited row no longer sums to 1 (%.3g)", pc.worst_sum);
    nn_attn_edit bad = {.layer = L, .key = 0};
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK(nn_attn_edit_add(&hs, m, &bad, &err) == NN_ERR && strstr(err.msg, "out of range"),
          "edit at layer L accepted");
    nn_hookset_free(&hs);
    nn_free(clean.data);
    nn_free(edited.data);
}

/* A copy of layer 0's attention probabilities of the one sequence. */
typedef struct probs_copy {
    float *data;
    size_t rows, cols;
} probs_copy;

static int copy_probs_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    probs_copy *c = user;
    nn_free(c->data);
    if (!(c->data = nn_malloc(v->rows * v->cols * sizeof(float), err)))
        return NN_ERR;
    memcpy(c->data, v->data, v->rows * v->cols * sizeof(float));
    c->rows = v->rows;
    c->cols = v->cols;
    return NN_HOOK_CONTINUE;
}

/* gpt-oss's attention sinks (tests/reference/gpt_oss): attention_probabilities rows sum to
 * 1 - p(sink), below 1; a renormalizing edit scales the other keys and the sink's share alike, so
 * an edited row sums to value + (S - old)(1 - value)/(1 - old) for a row of sum S; the edit
 * reaches the logits. */
static void attention_sinks(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/reference/gpt_oss/model-f32", NNTERP_SOURCE_DIR);
    nn_err err = {{0}};
    nn_model *m;
    if (nn_model_load(dir, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int L = m->cfg.n_layers, n = 12;
    nn_prompt p = {prompt_a, n};
    probs_copy clean = {0}, edited = {0};
    grab clean_logits = {0}, edited_logits = {0};
    nn_hookset hs;
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_hookset_add(&hs, NN_HP_ATTENTION_PROBABILITIES, 0, copy_probs_hook, &clean, &err),
             &err);
    CHECK_OK(run_logits(m, p, &hs, &clean_logits, &err), &err);
    nn_hookset_free(&hs);
    nn_attn_edit e = {.layer = 0,
                      .head = -1,
                      .query = NN_ALL_POSITIONS,
                      .key = 0,
                      .op = NN_ATTN_SET,
                      .value = 0.5f,
                      .renormalize = true};
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_attn_edit_add(&hs, m, &e, &err), &err);
    CHECK_OK(nn_hookset_add(&hs, NN_HP_ATTENTION_PROBABILITIES, 0, copy_probs_hook, &edited, &err),
             &err);
    CHECK_OK(run_logits(m, p, &hs, &edited_logits, &err), &err);
    nn_hookset_free(&hs);
    double max_sink = 0, worst_over = 0, worst_edit = 0;
    for (size_t r = 0; clean.data && edited.data && r < clean.rows; r++) {
        const float *a = clean.data + r * clean.cols, *b = edited.data + r * clean.cols;
        double sa = 0, sb = 0;
        for (size_t j = 0; j < clean.cols; j++) {
            sa += a[j];
            sb += b[j];
        }
        max_sink = fmax(max_sink, 1.0 - sa);
        worst_over = fmax(worst_over, sa - 1.0);
        double old = a[0], want = 0.5 + (sa - old) * 0.5 / (1.0 - old);
        worst_edit = fmax(worst_edit, fabs(sb - want));
    }
    double d = nn_test_max_diff(edited_logits.data, clean_logits.data, clean_logits.n);
    printf("  gpt-oss sinks: largest sink share %.3f; renormalized edit off by %.3g; logits moved "
           "%.3g\n",
           max_sink, worst_edit, d);
    CHECK(clean.data && max_sink > 0.1 && worst_over < 1e-6,
          "attention_probabilities rows with a sink should sum to 1 - p(sink) < 1 (largest sink "
          "share %.3g, over 1 by %.3g)",
          max_sink, worst_over);
    CHECK(edited.data && worst_edit < 1e-5, "renormalized edit under a sink off by %.3g",
          worst_edit);
    CHECK(d > 1e-4, "the attention edit did not reach the logits");
    nn_free(clean.data);
    nn_free(edited.data);
    nn_free(clean_logits.data);
    nn_free(edited_logits.data);
    nn_model_free(m);
}

/* Reference logit-lens dumps (Hugging Face's own final norm and head): the toolkit's lens over
 * every position of single_len11 agrees within 1e-5. */
/* NN_ATTN_SCALE: the listed keys' probabilities multiplied by the factor exactly, the row's other
 * visible keys rescaled so the row sums to 1 again; a factor of 1 changes no bit of the logits;
 * a scale out of range or a key list on another edit is refused. */
static void attention_scale(const nn_model *m)
{
    nn_err err = {{0}};
    int L = m->cfg.n_layers, n = 12;
    nn_prompt p = {prompt_a, n};
    probs_copy clean = {0}, edited = {0};
    grab clean_logits = {0}, edited_logits = {0};
    nn_hookset hs;
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_hookset_add(&hs, NN_HP_ATTENTION_PROBABILITIES, 0, copy_probs_hook, &clean, &err),
             &err);
    CHECK_OK(run_logits(m, p, &hs, &clean_logits, &err), &err);
    nn_hookset_free(&hs);
    static const int keys[] = {0, 2, 2};
    nn_attn_edit e = {.layer = 0,
                      .head = -1,
                      .query = NN_ALL_POSITIONS,
                      .op = NN_ATTN_SCALE,
                      .value = 0.25f,
                      .renormalize = true,
                      .keys = keys,
                      .n_keys = 3};
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_attn_edit_add(&hs, m, &e, &err), &err);
    CHECK_OK(nn_hookset_add(&hs, NN_HP_ATTENTION_PROBABILITIES, 0, copy_probs_hook, &edited, &err),
             &err);
    CHECK_OK(run_logits(m, p, &hs, &edited_logits, &err), &err);
    nn_hookset_free(&hs);
    double worst_key = 0, worst_rest = 0, worst_sum = 0;
    if (clean.data && edited.data && clean.rows == edited.rows && clean.cols == edited.cols)
        for (size_t r = 0; r < clean.rows; r++) {
            int q = (int)(r % (size_t)n);
            const float *c = clean.data + r * clean.cols, *x = edited.data + r * clean.cols;
            float old = 0, now = 0;
            for (int j = 0; j <= 2 && j <= q; j += 2) {
                old += c[j];
                now += c[j] * 0.25f;
                worst_key = fmax(worst_key, fabs(x[j] - c[j] * 0.25f));
            }
            double s = 0;
            for (int j = 0; j <= q; j++) {
                s += x[j];
                if (j != 0 && j != 2)
                    worst_rest = fmax(worst_rest, fabs(x[j] - c[j] * (1 - now) / (1 - old)));
            }
            /* The first query sees only key 0: nothing is left to take up the mass. Elsewhere
             * the renormalizer divides by 1 - old, so the float error of the row's sum grows as
             * 1 / (1 - old) when the scaled keys held almost all of it: weigh it by that. */
            worst_sum = fmax(worst_sum, fabs(s - (q == 0 ? now : 1)) * (q == 0 ? 1 : 1 - old));
        }
    else
        CHECK(0, "no attention probabilities captured");
    CHECK(worst_key == 0, "scaled keys are not p * 0.25 exactly (off by %.3g)", worst_key);
    CHECK(worst_rest < 1e-6 && worst_sum < 1e-5,
          "scale renormalize: other keys off by %.3g, rows sum off by %.3g (x (1 - old))", worst_rest, worst_sum);
    double d = nn_test_max_diff(edited_logits.data, clean_logits.data, clean_logits.n);
    printf("  scaling keys 0 and 2 by 0.25 at layer 0 moves the logits by %.3g\n", d);
    CHECK(d > 1e-5, "scaling attention changed nothing");
    e.value = 1.0f;
    e.renormalize = false;
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK_OK(nn_attn_edit_add(&hs, m, &e, &err), &err);
    CHECK_OK(run_logits(m, p, &hs, &edited_logits, &err), &err);
    nn_hookset_free(&hs);
    CHECK(edited_logits.n == clean_logits.n &&
              memcmp(edited_logits.data, clean_logits.data, clean_logits.n * sizeof(float)) == 0,
          "scale 1 changed the logits");
    nn_attn_edit bad_scale = e, bad_keys = e;
    bad_scale.value = -1.0f;
    bad_keys.op = NN_ATTN_SET;
    CHECK_OK(nn_hookset_init(&hs, L, &err), &err);
    CHECK(nn_attn_edit_add(&hs, m, &bad_scale, &err) == NN_ERR && strstr(err.msg, "scale"),
          "a negative scale accepted");
    CHECK(nn_attn_edit_add(&hs, m, &bad_keys, &err) == NN_ERR && strstr(err.msg, "NN_ATTN_SCALE"),
          "a key list on NN_ATTN_SET accepted");
    nn_hookset_free(&hs);
    nn_free(clean.data);
    nn_free(edited.data);
    nn_free(clean_logits.data);
    nn_free(edited_logits.data);
}

/* nn_object_attn_lens: each start layer's row equals nn_activation_patch of attentions_input at
 * the same layers (the source's last token into the target's attn_idx_patch), computed one
 * start layer at a time; with the target as its own source every row is the unpatched
 * next_token_probs. */
static void object_attn_lens(const nn_model *m)
{
    nn_err err = {{0}};
    int L = m->cfg.n_layers;
    size_t V = (size_t)m->cfg.vocab_size;
    nn_prompt src = {prompt_b, 7}, tgt = {prompt_a, 12};
    nn_object_attn_lens_params op = nn_object_attn_lens_default_params();
    op.num_patches = 2;
    op.attn_idx_patch = -3;
    float *lens = nn_malloc((size_t)L * V * sizeof(float), &err);
    float *one = nn_malloc(V * sizeof(float), &err);
    float *clean = nn_malloc(V * sizeof(float), &err);
    if (!lens || !one || !clean) {
        CHECK(0, "out of memory");
        goto done;
    }
    CHECK_OK(nn_object_attn_lens(m, src, tgt, &op, lens, &err), &err);
    double worst = 0;
    for (int l = 0; l < L; l++) {
        nn_patch patches[8];
        int np = 0;
        for (int k = l; k < L && k < l + op.num_patches; k++)
            patches[np++] = (nn_patch){NN_HP_ATTENTIONS_INPUT, k, src.n - 1, tgt.n - 3};
        CHECK_OK(nn_activation_patch(m, src, tgt, patches, np, one, NULL, &err), &err);
        worst = fmax(worst, nn_test_max_diff(lens + (size_t)l * V, one, V));
    }
    CHECK(worst < 1e-6, "object_attn_lens vs activation_patch of attentions_input: off by %.3g",
          worst);
    CHECK_OK(nn_next_token_probs(m, &tgt, 1, NULL, clean, &err), &err);
    double moved = 0;
    for (int l = 0; l < L; l++)
        moved = fmax(moved, nn_test_max_diff(lens + (size_t)l * V, clean, V));
    CHECK(moved > 1e-5, "object_attn_lens from another prompt changed nothing");
    op.attn_idx_patch = -1;
    CHECK_OK(nn_object_attn_lens(m, tgt, tgt, &op, lens, &err), &err);
    worst = 0;
    for (int l = 0; l < L; l++)
        worst = fmax(worst, nn_test_max_diff(lens + (size_t)l * V, clean, V));
    CHECK(worst < 1e-6, "object_attn_lens of a prompt into itself is off by %.3g", worst);
    printf("  object_attn_lens: matches activation_patch of attentions_input; moves probs by %.3g\n",
           moved);
    op.num_patches = 0;
    CHECK(nn_object_attn_lens(m, src, tgt, &op, lens, &err) == NN_ERR,
          "num_patches 0 accepted");
done:
    nn_free(lens);
    nn_free(one);
    nn_free(clean);
}

static void lens_reference(const char *arch_dir)
{
    nn_err err = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/reference/tiny/%s/ref-f32/manifest.json", shared, arch_dir);
    cJSON *man = nn_json_parse_file(path, 64 << 20, &err);
    if (!man) {
        CHECK(0, "%s", err.msg);
        return;
    }
    snprintf(path, sizeof path, "reference/tiny/%s/model-f32", arch_dir);
    nn_model *m = load(path);
    const cJSON *cs;
    int found = 0;
    cJSON_ArrayForEach (cs, nn_json_get(man, "cases")) {
        if (strcmp(nn_json_get(cs, "name")->valuestring, "single_len11") != 0)
            continue;
        found++;
        int32_t ids[11];
        int positions[11];
        for (int t = 0; t < 11; t++) {
            ids[t] = cJSON_GetArrayItem(cJSON_GetArrayItem(nn_json_get(cs, "input_ids"), 0), t)
                         ->valueint;
            positions[t] = t;
        }
        nn_prompt p = {ids, 11};
        nn_lens_params lp = {.positions = positions, .n_positions = 11, .full = true};
        nn_lens_result r;
        CHECK_OK(nn_logit_lens(m, &p, 1, &lp, &r, &err), &err);
        size_t V = r.vocab;
        double worst = 0;
        for (int l = 0; l < r.n_layers; l++) {
            char file[1024];
            snprintf(file, sizeof file,
                     "%s/reference/tiny/%s/ref-f32/single_len11/logit_lens.%d.f32", shared,
                     arch_dir, l);
            char *ref = NULL;
            size_t size;
            if (nn_file_read(file, 1 << 28, &ref, &size, &err) || size != 11 * V * 4) {
                CHECK(0, "%s: %s", file, err.msg);
                continue;
            }
            worst = fmax(worst,
                         nn_test_max_diff(r.full + (size_t)l * 11 * V, (const float *)ref, 11 * V));
            nn_free(ref);
        }
        printf("  %-12s logit lens vs reference logit_lens: %.3g\n", arch_dir, worst);
        CHECK(worst <= 1e-5, "%s: logit lens differs from the reference by %.3g", arch_dir, worst);
        nn_lens_result_free(&r);
    }
    CHECK(found == 1, "%s: the manifest names single_len11 %d times", arch_dir, found);
    nn_model_free(m);
    cJSON_Delete(man);
}

static void target_probs(void)
{
    nn_err err = {{0}};
    char path[1024];
    /* GPT-2 style: "Paris" and " Paris" are different first tokens. */
    snprintf(path, sizeof path, "%s/tokenizers/gpt2", shared);
    nn_tokenizer *gpt2 = NULL;
    CHECK_OK(nn_tokenizer_load(path, &gpt2, &err), &err);
    const char *words[] = {"Paris", "paris"};
    nn_ids ids = {0};
    CHECK_OK(nn_first_tokens(gpt2, words, 2, &ids, &err), &err);
    /* vocab.json: "Paris" 40313, "ĠParis" 6342, "par" 1845 (first of "paris"), " paris" starts with
     * "Ġpar" 1582 */
    CHECK(ids.n == 4 && ids.ids[0] == 40313 && ids.ids[1] == 6342 && ids.ids[2] == 1845 &&
              ids.ids[3] == 1582,
          "GPT-2 first tokens of Paris/paris: got %zu ids (%d %d %d %d)", ids.n, ids.ids[0],
          ids.n > 1 ? ids.ids[1] : -1, ids.n > 2 ? ids.ids[2] : -1, ids.n > 3 ? ids.ids[3] : -1);
    nn_ids_free(&ids);
    nn_tokenizer_free(gpt2);

    /* SentencePiece style (stories260K): "word" has no prefix space, " word" has one. */
    snprintf(path, sizeof path, "%s/models/stories260K/hf", shared);
    nn_tokenizer *tok = NULL;
    nn_model *m = NULL;
    CHECK_OK(nn_tokenizer_load(path, &tok, &err), &err);
    CHECK_OK(nn_model_load(path, &m, &err), &err);
    if (!tok || !m)
        return;
    const char *lily[] = {"Lily", "Tom"};
    CHECK_OK(nn_first_tokens(tok, lily, 2, &ids, &err), &err);
    size_t len0, len1;
    const char *p0 = ids.n > 1 ? nn_tokenizer_piece(tok, ids.ids[0], &len0) : NULL;
    const char *p1 = ids.n > 1 ? nn_tokenizer_piece(tok, ids.ids[1], &len1) : NULL;
    CHECK(p0 && p1 && strncmp(p0, "\xE2\x96\x81", 3) != 0 && strncmp(p1, "\xE2\x96\x81", 3) == 0,
          "SentencePiece first tokens: 'Lily' should start without and ' Lily' with the prefix "
          "space");
    nn_ids prompt = {0};
    const char *text = "Once upon a time, there was a little girl named";
    CHECK_OK(nn_tokenizer_encode(tok, text, strlen(text), true, &prompt, &err), &err);
    size_t V = (size_t)m->cfg.vocab_size;
    float *probs = nn_malloc(V * sizeof(float), &err);
    nn_prompt np = {prompt.ids, (int)prompt.n};
    CHECK_OK(nn_next_token_probs(m, &np, 1, NULL, probs, &err), &err);
    double direct = 0;
    for (size_t i = 0; i < ids.n && i < 2; i++)
        direct += probs[ids.ids[i]];
    printf("  P(Lily | '%s') = %.4f over %zu first tokens\n", text, direct, ids.n);
    CHECK(direct > 0.5, "the model should name Lily (got %.3f)", direct);
    nn_free(probs);
    nn_ids_free(&prompt);
    nn_ids_free(&ids);
    nn_model_free(m);
    nn_tokenizer_free(tok);
}

static void bad_input(const nn_model *m)
{
    nn_err err = {{0}};
    nn_prompt p = {prompt_a, 12}, empty = {prompt_a, 0};
    nn_lens_result r;
    int bad_layer = 99, bad_pos = 40;
    nn_lens_params lp = {.layers = &bad_layer, .n_layers = 1, .top_k = 3};
    CHECK(nn_logit_lens(m, &p, 1, &lp, &r, &err) == NN_ERR && strstr(err.msg, "layer 99"),
          "lens layer 99: %s", err.msg);
    nn_lens_params lp2 = {.positions = &bad_pos, .n_positions = 1, .top_k = 3};
    CHECK(nn_logit_lens(m, &p, 1, &lp2, &r, &err) == NN_ERR && strstr(err.msg, "position 40"),
          "lens position 40: %s", err.msg);
    CHECK(nn_logit_lens(m, &empty, 1, &lp2, &r, &err) == NN_ERR && strstr(err.msg, "empty"),
          "lens on an empty prompt: %s", err.msg);
    nn_patchscope_params pp = nn_patchscope_default_params();
    pp.index_to_patch = -13;
    nn_patchscope_result pr;
    CHECK(nn_patchscope(m, p, p, &pp, &pr, &err) == NN_ERR && strstr(err.msg, "index_to_patch -13"),
          "patchscope index -13: %s", err.msg);
    /* .npy files */
    char dir[] = "/tmp/nnterp-npy-XXXXXX";
    if (!mkdtemp(dir))
        return;
    char path[128];
    snprintf(path, sizeof path, "%s/v.npy", dir);
    float v[5] = {1, 2, 3, 4, 5}, *back = NULL;
    size_t n = 0;
    CHECK_OK(nn_npy_write_vector(path, v, 5, &err), &err);
    CHECK_OK(nn_npy_read_vector(path, &back, &n, &err), &err);
    CHECK(n == 5 && back && memcmp(back, v, sizeof v) == 0, "npy round trip");
    nn_free(back);
#define NPY(what, bytes, needle)                                                                   \
    {                                                                                              \
        what, bytes, needle, sizeof(bytes) - 1                                                     \
    }
    struct {
        const char *what, *bytes, *needle;
        size_t len;
    } cases[] = {
        NPY("bad magic", "NOTNUMPY", "bad magic"),
        NPY("int dtype",
            "\x93NUMPY\x01\x00\x46\x00{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }"
            "            \n\x01\x00\x00\x00",
            "dtype"),
        NPY("2-D",
            "\x93NUMPY\x01\x00\x46\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"
            "          \n",
            "shape must be"),
        NPY("truncated data",
            "\x93NUMPY\x01\x00\x46\x00{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }"
            "            \n\x00\x00",
            "truncated"),
        NPY("header past end", "\x93NUMPY\x01\x00\xff\x7f{", "past the end"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "wb");
        fwrite(cases[i].bytes, 1, cases[i].len, f);
        fclose(f);
        int rc = nn_npy_read_vector(path, &back, &n, &err);
        printf("  npy %-18s -> %s\n", cases[i].what, err.msg);
        CHECK(rc == NN_ERR && strstr(err.msg, cases[i].needle), "npy %s: %s", cases[i].what,
              err.msg);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    shared = nn_test_shared_dir("test_toolkit");
    const char *models[] = {"reference/tiny/gpt2/model-f32", "reference/tiny/llama_gqa/model-f32",
                            "reference/tiny/mistral_swa8/model-f32", "models/stories260K/hf"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        nn_model *m = load(models[i]);
        if (!m)
            continue;
        lens_and_patchscope(m, m->cfg.arch->model_type);
        steering(m);
        skipping(m);
        attention_edits(m);
        attention_scale(m);
        object_attn_lens(m);
        if (i == 0)
            bad_input(m);
        nn_model_free(m);
    }
    const char *archs[] = {"gpt2",    "llama",        "llama_gqa", "llama31_rope",
                           "mistral", "mistral_swa8", "qwen2"};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        lens_reference(archs[i]);
    target_probs();
    attention_sinks();
    return nn_test_finish("test_toolkit");
}
