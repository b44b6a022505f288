/* Compares every hook point of the engine with reference activations dumped from Hugging Face
 * transformers' own modeling code (../shared/reference, see its README).
 *
 *   test_reference REF_DIR [--model PATH] [--tol-act X] [--tol-prob X] [--compute C]
 *
 * --compute bfloat16 | bfloat16x3 runs the GEMMs in that precision (gemm_bf16.h); the max abs
 * error is then also printed relative to the reference tensor's rms.
 * Every case of REF_DIR/manifest.json is run as one packed batch (padding stripped); every tensor
 * is compared at valid positions and its max abs error printed. Exits 1 on any failure. */
#include <math.h>
#include <string.h>

#include "forward.h"
#include "generate.h"
#include "nn_json.h"
#include "nn_test.h"

typedef struct capture {
    float *data[NN_HP_COUNT][64]; /* per point and layer: (N, cols) */
    float **probs[64];            /* per layer: per sequence (H, n, n) */
    size_t cols[NN_HP_COUNT];
    int n_seqs;
} capture;

static int capture_hook(const nn_hook_view *v, void *user, nn_err *err)
{
    capture *cap = user;
    int layer = v->layer < 0 ? 0 : v->layer;
    size_t n = v->rows * v->cols;
    if (v->point == NN_HP_ATTENTION_PROBABILITIES) {
        if (!cap->probs[layer] &&
            !(cap->probs[layer] = nn_calloc((size_t)cap->n_seqs, sizeof(float *), err)))
            return NN_ERR;
        float **slot = &cap->probs[layer][v->seq];
        if (!(*slot = nn_malloc(n * sizeof(float), err)))
            return NN_ERR;
        memcpy(*slot, v->data, n * sizeof(float));
        return NN_HOOK_CONTINUE;
    }
    float **slot = &cap->data[v->point][layer];
    if (!(*slot = nn_malloc(n * sizeof(float), err)))
        return NN_ERR;
    memcpy(*slot, v->data, n * sizeof(float));
    cap->cols[v->point] = v->cols;
    return NN_HOOK_CONTINUE;
}

static void capture_free(capture *cap)
{
    for (int p = 0; p < NN_HP_COUNT; p++)
        for (int l = 0; l < 64; l++)
            nn_free(cap->data[p][l]);
    for (int l = 0; l < 64; l++) {
        if (cap->probs[l])
            for (int s = 0; s < cap->n_seqs; s++)
                nn_free(cap->probs[l][s]);
        nn_free(cap->probs[l]);
    }
}

static float *read_f32(const char *dir, const char *file, size_t count, nn_err *err)
{
    char *path = nn_path_join(dir, file, err);
    if (!path)
        return NULL;
    char *buf = NULL;
    size_t size = 0;
    int rc = nn_file_read(path, (size_t)1 << 31, &buf, &size, err);
    nn_free(path);
    if (rc)
        return NULL;
    if (size != count * sizeof(float)) {
        nn_fail(err, "%s: %zu bytes, expected %zu", file, size, count * sizeof(float));
        nn_free(buf);
        return NULL;
    }
    return (float *)buf;
}

typedef struct tolerances {
    double act, prob;
    bool argmax_may_differ; /* bfloat16: near-ties of a random tiny model's logits may flip */
} tolerances;

/* Most dumps hold no router probabilities (Hugging Face has no module output for them), so
 * router_probabilities.i is checked for self-consistency: it fires on MoE layers only, each row
 * is a probability distribution, and it equals softmax(router(mlps_input.i)) recomputed here in
 * double precision from the captured mlps_input.i and the router weights. Layers whose
 * router_probabilities the manifest holds (gpt-oss's biased router, DeepSeek-V3's sigmoid scores:
 * tools/reference) were compared with it like any tensor instead; only the firing is checked. */
static void check_router(const nn_model *m, const capture *cap, int n_tokens, const char *name,
                         const cJSON *tensors)
{
    const nn_config *c = &m->cfg;
    int X = c->n_experts;
    size_t D = (size_t)c->d_model;
    for (int l = 0; l < c->n_layers; l++) {
        const nn_layer *L = &m->layers[l];
        const float *p = cap->data[NN_HP_ROUTER_PROBABILITIES][l];
        if (!L->moe) {
            CHECK(!p, "%s router_probabilities.%d: hook fired on a dense layer", name, l);
            continue;
        }
        if (!p || cap->cols[NN_HP_ROUTER_PROBABILITIES] != (size_t)X) {
            CHECK(0, "%s router_probabilities.%d: missing or not [T, %d]", name, l, X);
            continue;
        }
        char dumped[64];
        snprintf(dumped, sizeof dumped, "router_probabilities.%d", l);
        if (cJSON_GetObjectItemCaseSensitive(tensors, dumped))
            continue;
        const float *xn = cap->data[NN_HP_MLPS_INPUT][l];
        const nn_linear *R = &L->router;
        double worst_sum = 0.0, worst = 0.0;
        bool in_range = true;
        for (int t = 0; t < n_tokens; t++) {
            double z[256], max = -INFINITY, total = 0.0, sum = 0.0;
            for (int e = 0; e < X && e < 256; e++) {
                double acc = 0.0;
                for (size_t i = 0; i < D; i++)
                    acc += (double)xn[(size_t)t * D + i] *
                           R->w[R->in_major ? i * R->ld + (size_t)e : (size_t)e * R->ld + i];
                z[e] = acc;
                max = fmax(max, acc);
            }
            for (int e = 0; e < X && e < 256; e++)
                total += exp(z[e] - max);
            for (int e = 0; e < X && e < 256; e++) {
                double q = p[(size_t)t * X + e];
                in_range &= q >= 0.0 && q <= 1.0;
                sum += q;
                worst = fmax(worst, fabs(q - exp(z[e] - max) / total));
            }
            worst_sum = fmax(worst_sum, fabs(sum - 1.0));
        }
        bool ok = in_range && worst_sum <= 1e-6 && worst <= 1e-6;
        CHECK(ok, "%s router_probabilities.%d: rows sum to 1 within %.3g, vs recomputed %.3g", name,
              l, worst_sum, worst);
        printf(
            "  %-24s router_probabilities.%-8d |row sum - 1| %.3e, vs softmax(router(mlps_input)) "
            "%.3e %s\n",
            name, l, worst_sum, worst, ok ? "ok" : "FAIL");
    }
}

static int run_case(const nn_model *m, const cJSON *cs, const char *ref_dir, tolerances tol)
{
    nn_err err = {{0}};
    const nn_config *c = &m->cfg;
    const char *name = cJSON_GetObjectItemCaseSensitive(cs, "name")->valuestring;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cs, "input_ids");
    const cJSON *lengths = cJSON_GetObjectItemCaseSensitive(cs, "lengths");
    enum { MAX_B = 64, MAX_T = 64 }; /* the case's fixed arrays below */
    int B = cJSON_GetArraySize(ids), T = cJSON_GetArraySize(cJSON_GetArrayItem(ids, 0));
    int offsets[MAX_B + 1] = {0}, n_tokens = 0;
    int32_t tokens[MAX_B * MAX_T];
    /* The manifest is read as data, not trusted: every size is bounded before it is used. */
    if (!name || !cJSON_IsArray(ids) || !cJSON_IsArray(lengths) || B < 1 || B > MAX_B || T < 1 ||
        T > MAX_T || cJSON_GetArraySize(lengths) != B) {
        CHECK(0, "%s: case '%s': input_ids [B][T] and lengths [B] with 1 <= B, T <= 64 expected",
              ref_dir, name ? name : "?");
        return NN_OK;
    }
    for (int b = 0; b < B; b++) {
        const cJSON *row = cJSON_GetArrayItem(ids, b), *lj = cJSON_GetArrayItem(lengths, b);
        int len = cJSON_IsNumber(lj) ? lj->valueint : -1;
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != T || len < 0 || len > T) {
            CHECK(0, "%s: case '%s': row %d of input_ids or its length is malformed", ref_dir,
                  name, b);
            return NN_OK;
        }
        for (int t = 0; t < len; t++) {
            const cJSON *id = cJSON_GetArrayItem(row, t);
            if (!cJSON_IsNumber(id) || id->valueint < 0 || id->valueint >= c->vocab_size) {
                CHECK(0, "%s: case '%s': input_ids[%d][%d] is not a token id of the model",
                      ref_dir, name, b, t);
                return NN_OK;
            }
            tokens[n_tokens++] = id->valueint;
        }
        offsets[b + 1] = n_tokens;
    }
    nn_batch batch = {.tokens = tokens, .n_tokens = n_tokens, .n_seqs = B, .offsets = offsets};
    capture cap = {.n_seqs = B};
    nn_hookset hs;
    nn_state *st = NULL;
    int failures_before = nn_test_failures;
    nn_state_params sp = {.max_tokens = n_tokens, .max_seqs = B};
    CHECK_OK(nn_hookset_init(&hs, c->n_layers, &err), &err);
    for (int p = 0; p < NN_HP_COUNT; p++)
        CHECK_OK(nn_hookset_add(&hs, (nn_hook_point)p,
                                nn_hook_point_per_layer(p) ? NN_ALL_LAYERS : -1, capture_hook, &cap,
                                &err),
                 &err);
    CHECK_OK(nn_state_init(&st, m, &sp, &err), &err);
    nn_forward_params fp = {.hooks = &hs, .want_logits = true};
    CHECK_OK(nn_forward(m, st, &batch, &fp, &err), &err);
    if (nn_test_failures != failures_before)
        goto done;

    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(cs, "tensors"), *t;
    size_t V = (size_t)c->vocab_size, D = (size_t)c->d_model;
    cJSON_ArrayForEach (t, tensors) {
        const char *tname = t->string;
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(t, "file");
        size_t count = 1;
        bool shape_ok = cJSON_IsArray(shape) && cJSON_IsString(file);
        const cJSON *dim;
        cJSON_ArrayForEach (dim, shape) {
            /* every dimension bounded, so the product cannot overflow (2^28 floats at most) */
            shape_ok &= cJSON_IsNumber(dim) && dim->valueint >= 1 && dim->valueint <= (1 << 20);
            if (shape_ok && !nn_mul_size(count, (size_t)dim->valueint, &count))
                shape_ok = false;
            shape_ok &= count <= ((size_t)1 << 28);
        }
        if (!shape_ok) {
            CHECK(0, "%s: case '%s', tensor '%s': file and shape malformed or too large", ref_dir,
                  name, tname ? tname : "?");
            continue;
        }
        float *ref = read_f32(ref_dir, file->valuestring, count, &err);
        if (!ref) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        double max_diff = 0.0, tolerance = tol.act, ref_sq = 0.0;
        size_t ref_n = 0;
        int argmax_mismatch = 0;
        bool lens = strncmp(tname, "logit_lens.", 11) == 0;
        nn_hook_point hp = NN_HP_COUNT;
        int layer = -1;
        if (lens) {
            layer = atoi(tname + 11);
            tolerance = tol.prob;
        } else {
            CHECK_OK(nn_hook_name_parse(tname, c->n_layers, &hp, &layer, &err), &err);
        }
        if (layer >= 64 || (!lens && hp == NN_HP_COUNT)) {
            CHECK(0, "%s %s: not a hook point this test captures", name, tname);
            free(ref);
            continue;
        }
        if (hp == NN_HP_ATTENTION_PROBABILITIES) {
            tolerance = tol.prob;
            int H = c->n_heads;
            if (count < (size_t)B * H * T * T || !cap.probs[layer]) {
                CHECK(0, "%s %s: %zu floats, [%d, %d, %d, %d] expected, or not captured", name,
                      tname, count, B, H, T, T);
                free(ref);
                continue;
            }
            for (int b = 0; b < B; b++) {
                int n = offsets[b + 1] - offsets[b];
                const float *ours = cap.probs[layer][b]; /* (H, n, n) */
                for (int h = 0; h < H; h++)
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++) {
                            double r = ref[(((size_t)b * H + h) * T + i) * T + j];
                            double o = ours[((size_t)h * n + i) * n + j];
                            max_diff = fmax(max_diff, fabs(r - o));
                        }
            }
        } else {
            const float *ours;
            size_t cols;
            float *lens_rows = NULL;
            if (lens) {
                /* softmax(head(final_norm(layers_output.i))) at every position */
                cols = V;
                float *normed = malloc((size_t)n_tokens * D * sizeof(float));
                lens_rows = malloc((size_t)n_tokens * V * sizeof(float));
                nn_unembed(m, st, cap.data[NN_HP_LAYERS_OUTPUT][layer], n_tokens, normed,
                           lens_rows);
                for (int r = 0; r < n_tokens; r++)
                    nn_softmax(lens_rows + (size_t)r * V, V);
                free(normed);
                ours = lens_rows;
            } else {
                ours = cap.data[hp][layer < 0 ? 0 : layer];
                cols = cap.cols[hp];
            }
            if (!ours || count < (size_t)B * T * cols) {
                CHECK(0, "%s %s: %zu floats, [%d, %d, %zu] expected, or not captured", name, tname,
                      count, B, T, cols);
                free(lens_rows);
                free(ref);
                continue;
            }
            for (int b = 0; b < B; b++)
                for (int i = 0; i < offsets[b + 1] - offsets[b]; i++) {
                    const float *o = ours + (size_t)(offsets[b] + i) * cols;
                    const float *r = ref + ((size_t)b * T + i) * cols;
                    max_diff = fmax(max_diff, nn_test_max_diff(o, r, cols));
                    for (size_t k = 0; k < cols; k++)
                        ref_sq += (double)r[k] * r[k];
                    ref_n += cols;
                    if (hp == NN_HP_LOGITS)
                        argmax_mismatch += nn_argmax(o, (int)cols) != nn_argmax(r, (int)cols);
                }
            free(lens_rows);
        }
        bool ok = max_diff <= tolerance && (!argmax_mismatch || tol.argmax_may_differ);
        CHECK(ok, "%s %s: max abs diff %.3g > %.1g or argmax differs (%d rows)", name, tname,
              max_diff, tolerance, argmax_mismatch);
        if (m->compute != NN_COMPUTE_F32 && ref_n)
            printf("  %-24s %-28s max abs diff %.3e rel %.3e%s %s\n", name, tname, max_diff,
                   max_diff / sqrt(ref_sq / (double)ref_n), argmax_mismatch ? " argmax flips" : "",
                   ok ? "ok" : "FAIL");
        else
            printf("  %-24s %-28s max abs diff %.3e %s\n", name, tname, max_diff,
                   ok ? "ok" : "FAIL");
        free(ref);
    }
    check_router(m, &cap, n_tokens, name, tensors);
done:
    capture_free(&cap);
    nn_state_free(st);
    nn_hookset_free(&hs);
    return NN_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: test_reference REF_DIR [--model PATH] [--tol-act X] [--tol-prob X]\n");
        return 2;
    }
    const char *ref_dir = argv[1], *model_path = NULL, *compute = "float32";
    tolerances tol = {1e-4, 1e-5, false};
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model"))
            model_path = argv[i + 1];
        else if (!strcmp(argv[i], "--tol-act"))
            tol.act = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--tol-prob"))
            tol.prob = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--compute"))
            compute = argv[i + 1];
    }
    if (!nn_path_is_dir(ref_dir)) {
        fprintf(stderr,
                "SKIPPED: reference directory %s is absent (../shared not beside the checkout?)\n",
                ref_dir);
        return NN_TEST_SKIP;
    }
    nn_err err = {{0}};
    char *manifest_path = nn_path_join(ref_dir, "manifest.json", &err);
    cJSON *man = nn_json_parse_file(manifest_path, 64 << 20, &err);
    if (!man) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    char *default_model = NULL;
    if (!model_path) {
        default_model = nn_path_join(
            ref_dir, cJSON_GetObjectItemCaseSensitive(man, "model_dir")->valuestring, &err);
        model_path = default_model;
    }
    nn_model *m = NULL;
    if (nn_model_load(model_path, &m, &err) != NN_OK) {
        fprintf(stderr, "FAIL: loading %s: %s\n", model_path, err.msg);
        return 1;
    }
    if (m->cfg.n_layers > 64) { /* capture holds 64 layers */
        fprintf(stderr, "FAIL: %s has %d layers; this test captures at most 64\n", model_path,
                m->cfg.n_layers);
        nn_model_free(m);
        return 1;
    }
    nn_compute mode;
    if (nn_compute_parse(compute, "--compute", &mode, &err) ||
        nn_model_set_compute(m, mode, &err)) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    tol.argmax_may_differ = mode == NN_COMPUTE_BF16;
    printf("%s with %s (%s, %d layers, d %d), compute %s: %s\n", ref_dir, model_path,
           m->cfg.arch->family, m->cfg.n_layers, m->cfg.d_model, nn_compute_name(mode),
           m->compute_kernel);
    const cJSON *cs;
    cJSON_ArrayForEach (cs, cJSON_GetObjectItemCaseSensitive(man, "cases"))
        run_case(m, cs, ref_dir, tol);
    nn_model_free(m);
    cJSON_Delete(man);
    nn_free(manifest_path);
    nn_free(default_model);
    return nn_test_finish("test_reference");
}
