/* Sparse autoencoders against SAELens (tests/sae/, made by tools/make_sae_fixtures.py): each
 * case's hook point gives the activation Hugging Face's modules give there (the hook-name
 * mapping), and encode/decode of that activation gives SAELens's own numbers within float32
 * rounding. Also: results independent of how many rows share a call, the keep truncation, and
 * the errors. */
#include "nn_test.h"

#include "forward.h"
#include "nn_json.h"
#include "sae.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *shared;

typedef struct grab {
    nn_hook_point hp;
    int layer;
    float *data;
} grab;

static int grab_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    grab *g = user;
    nn_free(g->data);
    if (!(g->data = nn_malloc(v->rows * v->cols * sizeof(float), err)))
        return NN_ERR;
    memcpy(g->data, v->data, v->rows * v->cols * sizeof(float));
    return NN_HOOK_CONTINUE;
}

static double max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

static float *tensor(const nn_st_archive *st, const char *name, size_t want, nn_err *err)
{
    const nn_st_tensor *t = nn_st_find(st, name);
    if (!t || t->numel != want) {
        nn_fail(err, "expected.safetensors: '%s' missing or not %zu values", name, want);
        return NULL;
    }
    float *out = nn_malloc(want * sizeof(float), err);
    if (out && nn_st_to_f32(t, out, err)) {
        nn_free(out);
        return NULL;
    }
    return out;
}

static void run_case(const char *dir)
{
    nn_err err = {{0}};
    char path[2048];
    snprintf(path, sizeof path, "%s/case.json", dir);
    cJSON *cs = nn_json_parse_file(path, 1 << 20, &err);
    CHECK(cs, "%s", err.msg);
    if (!cs)
        return;
    const char *model_rel = nn_json_get(cs, "model")->valuestring;
    const char *point = nn_json_get(cs, "point")->valuestring;
    const cJSON *point_out = nn_json_get(cs, "point_out");
    const cJSON *toks = nn_json_get(cs, "tokens");
    int T = cJSON_GetArraySize(toks);
    int32_t tokens[64];
    for (int t = 0; t < T && t < 64; t++)
        tokens[t] = cJSON_GetArrayItem(toks, t)->valueint;

    nn_model *m = NULL;
    nn_sae sae = {0};
    nn_state *st = NULL;
    nn_sae_work *w = NULL;
    nn_st_archive ex = {0};
    bool ex_open = false;
    float *x = NULL, *acts = NULL, *recon = NULL, *target = NULL, *dense = NULL, *ours = NULL,
          *ours_one = NULL, *vals = NULL, *vals_one = NULL;
    int32_t *ids = NULL, *ids_one = NULL, *count = NULL, *l0 = NULL;
    grab gin = {0}, gout = {0};
    nn_hookset hs = {0};
    bool hs_init = false;

    snprintf(path, sizeof path, "%s/%s", shared, model_rel);
    CHECK_OK(nn_model_load(path, &m, &err), &err);
    CHECK_OK(nn_sae_load(dir, &sae, &err), &err);
    if (!m || !sae.storage)
        goto done;
    CHECK_OK(nn_sae_bind(&sae, m, NULL, &err), &err);
    char mapped[128];
    snprintf(mapped, sizeof mapped, "%s.%d", nn_hook_point_name(sae.in_point), sae.in_layer);
    if (sae.in_point == NN_HP_TOKEN_EMBEDDINGS)
        snprintf(mapped, sizeof mapped, "%s", nn_hook_point_name(sae.in_point));
    CHECK(!strcmp(mapped, point), "%s: hook '%s' mapped to %s, the fixture says %s", dir,
          sae.hook_name, mapped, point);

    /* the forward pass: the SAE's hook points */
    int offsets[2] = {0, T};
    nn_batch b = {.tokens = tokens, .n_tokens = T, .n_seqs = 1, .offsets = offsets};
    nn_state_params sp = {.max_tokens = T, .max_seqs = 1};
    CHECK_OK(nn_state_init(&st, m, &sp, &err), &err);
    CHECK_OK(nn_hookset_init(&hs, m->cfg.n_layers, &err), &err);
    hs_init = true;
    CHECK_OK(nn_hookset_add(&hs, sae.in_point, sae.in_layer, grab_hook, &gin, &err), &err);
    if (sae.transcoder)
        CHECK_OK(nn_hookset_add(&hs, sae.out_point, sae.out_layer, grab_hook, &gout, &err), &err);
    nn_forward_params fp = {.hooks = &hs};
    CHECK_OK(nn_forward(m, st, &b, &fp, &err), &err);
    if (!st || !gin.data)
        goto done;

    size_t D = (size_t)sae.d_in, F = (size_t)sae.d_sae, O = (size_t)sae.d_out;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_OK(nn_st_open(path, &ex, &err), &err);
    ex_open = err.msg[0] == '\0';
    if (!ex_open || !(x = tensor(&ex, "x", (size_t)T * D, &err)) ||
        !(acts = tensor(&ex, "acts", (size_t)T * F, &err)) ||
        !(recon = tensor(&ex, "recon", (size_t)T * O, &err))) {
        CHECK(0, "%s: %s", dir, err.msg);
        goto done;
    }
    double scale = max_abs(x, (size_t)T * D);
    double dx = nn_test_max_diff(gin.data, x, (size_t)T * D);
    CHECK(dx <= 2e-5 * (1.0 + scale), "%s: %s differs from Hugging Face's by %.3g (max %.3g)", dir,
          point, dx, scale);
    if (sae.transcoder && cJSON_IsString(point_out)) {
        target = tensor(&ex, "target", (size_t)T * O, &err);
        CHECK(target && gout.data, "%s: transcoder target", dir);
        if (target && gout.data) {
            double dt = nn_test_max_diff(gout.data, target, (size_t)T * O);
            double ts = max_abs(target, (size_t)T * O);
            CHECK(dt <= 2e-5 * (1.0 + ts), "%s: output hook %s differs by %.3g (max %.3g)", dir,
                  point_out->valuestring, dt, ts);
        }
    }

    /* encode/decode of SAELens's input: every feature kept */
    CHECK_OK(nn_sae_work_init(&w, &sae, st, &err), &err);
    int keep = (int)F;
    ids = nn_malloc((size_t)T * F * sizeof *ids, &err);
    vals = nn_malloc((size_t)T * F * sizeof *vals, &err);
    ids_one = nn_malloc((size_t)T * F * sizeof *ids, &err);
    vals_one = nn_malloc((size_t)T * F * sizeof *vals, &err);
    count = nn_malloc((size_t)T * sizeof *count, &err);
    l0 = nn_malloc((size_t)T * sizeof *l0, &err);
    ours = nn_malloc((size_t)T * O * sizeof *ours, &err);
    ours_one = nn_malloc((size_t)T * O * sizeof *ours, &err);
    dense = nn_calloc((size_t)T * F, sizeof *dense, &err);
    if (!w || !ids || !vals || !count || !l0 || !ours || !dense || !ids_one || !vals_one ||
        !ours_one)
        goto done;
    CHECK_OK(nn_sae_encode(&sae, w, x, D, T, keep, ids, vals, count, l0, ours, &err), &err);
    int wrong_set = 0;
    for (int t = 0; t < T; t++) {
        CHECK(count[t] == l0[t], "%s: row %d kept %d of %d with keep = d_sae", dir, t, count[t],
              l0[t]);
        for (int j = 0; j < count[t]; j++) {
            dense[(size_t)t * F + (size_t)ids[(size_t)t * F + (size_t)j]] =
                vals[(size_t)t * F + (size_t)j];
            if (j && vals[(size_t)t * F + (size_t)j] > vals[(size_t)t * F + (size_t)j - 1])
                CHECK(0, "%s: row %d not in value order", dir, t);
        }
        for (size_t i = 0; i < F; i++)
            wrong_set += (dense[(size_t)t * F + i] != 0) != (acts[(size_t)t * F + i] != 0);
    }
    double as = max_abs(acts, (size_t)T * F), da = nn_test_max_diff(dense, acts, (size_t)T * F);
    double rs = max_abs(recon, (size_t)T * O), dr = nn_test_max_diff(ours, recon, (size_t)T * O);
    printf("%-40s %-26s -> %-24s acts max |diff| %.2e (of %.2f), recon %.2e (of %.2f), "
           "active-set mismatches %d\n",
           dir + (strrchr(dir, '/') ? 0 : 0), sae.hook_name, point, da, as, dr, rs, wrong_set);
    CHECK(wrong_set == 0, "%s: %d features active in one and not the other", dir, wrong_set);
    CHECK(da <= 4e-6 * (1.0 + as), "%s: feature activations differ by %.3g", dir, da);
    CHECK(dr <= 4e-6 * (1.0 + rs), "%s: reconstructions differ by %.3g", dir, dr);

    /* a row's results do not depend on the rows that share its call */
    for (int t = 0; t < T; t++)
        CHECK_OK(nn_sae_encode(&sae, w, x + (size_t)t * D, D, 1, keep, ids_one + (size_t)t * F,
                               vals_one + (size_t)t * F, count + t, NULL, ours_one + (size_t)t * O,
                               &err),
                 &err);
    CHECK(memcmp(ids, ids_one, (size_t)T * F * sizeof *ids) == 0 &&
              memcmp(vals, vals_one, (size_t)T * F * sizeof *vals) == 0 &&
              memcmp(ours, ours_one, (size_t)T * O * sizeof *ours) == 0,
          "%s: one row at a time differs from all rows at once", dir);

    /* keep = 5: the first five of the full list, the rest -1 */
    CHECK_OK(nn_sae_encode(&sae, w, x, D, T, 5, ids_one, vals_one, count, NULL, NULL, &err), &err);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < 5; j++) {
            int32_t want = j < l0[t] ? ids[(size_t)t * F + (size_t)j] : -1;
            CHECK(ids_one[t * 5 + j] == want, "%s: keep 5, row %d slot %d: %d, want %d", dir, t, j,
                  ids_one[t * 5 + j], want);
        }

    /* this project's own activations through the SAE: the same within the forward's rounding */
    CHECK_OK(nn_sae_encode(&sae, w, gin.data, D, T, keep, ids, vals, count, l0, ours, &err), &err);
    dr = nn_test_max_diff(ours, recon, (size_t)T * O);
    CHECK(dr <= 1e-3 * (1.0 + rs), "%s: reconstruction of our activations differs by %.3g", dir,
          dr);
done:
    if (hs_init)
        nn_hookset_free(&hs);
    nn_free(gin.data);
    nn_free(gout.data);
    nn_free(x);
    nn_free(acts);
    nn_free(recon);
    nn_free(target);
    nn_free(dense);
    nn_free(ours);
    nn_free(ours_one);
    nn_free(ids);
    nn_free(vals);
    nn_free(ids_one);
    nn_free(vals_one);
    nn_free(count);
    nn_free(l0);
    if (ex_open)
        nn_st_close(&ex);
    nn_sae_work_free(w);
    nn_state_free(st);
    nn_sae_free(&sae);
    nn_model_free(m);
    cJSON_Delete(cs);
}

static void write_text(const char *path, const char *text)
{
    nn_test_write_file(path, text, strlen(text));
}

static void check_fails(const char *dir, const char *model_rel, const char *hook,
                        const char *expect)
{
    nn_err err = {{0}};
    nn_sae sae;
    int rc = nn_sae_load(dir, &sae, &err);
    if (rc == NN_OK && model_rel) {
        char path[1024];
        nn_model *m = NULL;
        snprintf(path, sizeof path, "%s/%s", shared, model_rel);
        CHECK_OK(nn_model_load(path, &m, &err), &err);
        rc = m ? nn_sae_bind(&sae, m, hook, &err) : NN_OK;
        nn_model_free(m);
        nn_sae_free(&sae);
    }
    CHECK(rc == NN_ERR && strstr(err.msg, expect), "%s: expected an error with '%s', got '%s'", dir,
          expect, rc ? err.msg : "success");
}

static void errors(const char *fixtures)
{
    nn_err err = {{0}};
    char out[128];
    static const char *const map[][2] = {
        {"hook_embed", "token_embeddings"},
        {"blocks.0.hook_resid_pre", "layers_input.0"},
        {"blocks.3.hook_resid_mid", "layers_middle.3"},
        {"blocks.3.hook_mlp_in", "layers_middle.3"},
        {"blocks.12.hook_resid_post", "layers_output.12"},
        {"blocks.2.hook_attn_out", "attentions_residual.2"},
        {"blocks.2.hook_mlp_out", "mlps_residual.2"},
        {"blocks.5.ln1.hook_normalized", "attentions_normalized.5"},
        {"blocks.5.ln2.hook_normalized", "mlps_normalized.5"},
        {"layers.6", "layers_output.6"},
        {"layers.6.mlp", "mlps_output.6"},
        {"model.layers.6.self_attn", "attentions_output.6"},
        {"layers_output.4", "layers_output.4"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        CHECK_OK(nn_sae_hook_map(map[i][0], out, sizeof out, &err), &err);
        CHECK(!strcmp(out, map[i][1]), "%s mapped to %s, want %s", map[i][0], out, map[i][1]);
    }
    CHECK(nn_sae_hook_map("blocks.3.attn.hook_z", out, sizeof out, &err) == NN_ERR &&
              strstr(err.msg, "hook_z"),
          "hook_z: %s", err.msg);
    CHECK(nn_sae_hook_map("blocks.3.mlp.hook_post", out, sizeof out, &err) == NN_ERR &&
              strstr(err.msg, "MLP hidden"),
          "mlp.hook_post: %s", err.msg);

    /* malformed directories, made from a copy of a fixture */
    char tmp[] = "/tmp/nn_test_sae_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/stories_standard/sae_weights.safetensors", fixtures);
    size_t n;
    char *weights = nn_test_slurp(src, &n);
    snprintf(dst, sizeof dst, "%s/sae_weights.safetensors", tmp);
    nn_test_write_file(dst, weights, n);
    nn_free(weights);
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/cfg.json", tmp);
    write_text(cfg, "{\"architecture\": \"matryoshka\", \"d_in\": 64, \"d_sae\": 256, "
                    "\"metadata\": {\"hook_name\": \"blocks.2.hook_resid_post\"}}");
    check_fails(tmp, NULL, NULL, "field 'architecture': 'matryoshka'");
    write_text(cfg, "{\"architecture\": \"standard\", \"d_in\": 64, \"d_sae\": 300, "
                    "\"metadata\": {\"hook_name\": \"blocks.2.hook_resid_post\"}}");
    check_fails(tmp, NULL, NULL, "tensor 'W_enc' has shape [64, 256], cfg.json says [64, 300]");
    write_text(cfg, "{\"architecture\": \"jumprelu\", \"d_in\": 64, \"d_sae\": 256, "
                    "\"metadata\": {\"hook_name\": \"blocks.2.hook_resid_post\"}}");
    check_fails(tmp, NULL, NULL, "'log_threshold' is missing");
    write_text(cfg, "{\"architecture\": \"topk\", \"d_in\": 64, \"d_sae\": 256, "
                    "\"metadata\": {\"hook_name\": \"blocks.2.hook_resid_post\"}}");
    check_fails(tmp, NULL, NULL, "field 'k'");
    write_text(cfg, "{\"architecture\": \"standard\", \"d_in\": 64, \"d_sae\": 256}");
    check_fails(tmp, NULL, NULL, "field 'hook_name'");
    write_text(cfg, "{\"architecture\": \"standard\", \"d_in\": 64, \"d_sae\": 256, "
                    "\"normalize_activations\": \"covariance_whitening\", "
                    "\"metadata\": {\"hook_name\": \"blocks.2.hook_resid_post\"}}");
    check_fails(tmp, NULL, NULL, "'covariance_whitening' is not supported");
    write_text(cfg, "{\"architecture\": \"standard\", \"d_in\": 64, \"d_sae\": 256, "
                    "\"metadata\": {\"hook_name\": \"blocks.9.hook_resid_post\"}}");
    check_fails(tmp, "models/stories260K/hf", NULL, "out of range");
    /* the width of another model; hook_resid_mid on parallel blocks (GPT-J) */
    write_text(cfg, "{\"architecture\": \"standard\", \"d_in\": 64, \"d_sae\": 256, "
                    "\"metadata\": {\"hook_name\": \"blocks.1.hook_resid_mid\"}}");
    check_fails(tmp, "reference/tiny/gptj/model-f32", NULL, "parallel blocks");
    char demo[1024];
    snprintf(demo, sizeof demo, "%s/../../models/demo", fixtures);
    {
        nn_sae sae;
        nn_model *m = NULL;
        CHECK_OK(nn_sae_load(tmp, &sae, &err), &err);
        CHECK_OK(nn_model_load(demo, &m, &err), &err);
        if (m && sae.storage)
            CHECK(nn_sae_bind(&sae, m, NULL, &err) == NN_ERR &&
                      strstr(err.msg, "field 'd_in' is 64, the model's width is 160"),
                  "width: %s", err.msg);
        nn_model_free(m);
        nn_sae_free(&sae);
    }
    remove(cfg);
    check_fails(tmp, NULL, NULL, "no cfg.json");
    remove(dst);
    rmdir(tmp);
}

int main(int argc, char **argv)
{
    shared = nn_test_shared_dir("SAE fixtures' models");
    const char *fixtures = argc > 1 ? argv[1] : NNTERP_SOURCE_DIR "/tests/sae";
    static const char *const cases[] = {
        "stories_standard",    "stories_jumprelu",          "stories_topk",
        "stories_transcoder",  "stories_sparsify/layers.1", "gpt2_gated",
        "gpt2_standard_embed", "gemma2_attn_out",           "gemma2_transcoder", "gpt2_ln1_jumprelu",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", fixtures, cases[i]);
        run_case(dir);
    }
    errors(fixtures);
    return nn_test_finish("sae");
}
