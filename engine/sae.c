/* Sparse autoencoders: loading (SAELens, sparsify), the hook-name mapping, encoding in row blocks.
 * See sae.h and docs/sae.md. */
#include "sae.h"

#include "nn_json.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The hook-name mapping --------------------------------------------------------------------
 */

/* TransformerLens block hooks -> this project's per-layer points. */
static const struct {
    const char *tl, *ours;
} block_hooks[] = {
    {"hook_resid_pre", "layers_input"},         {"hook_attn_in", "layers_input"},
    {"hook_resid_mid", "layers_middle"},        {"hook_mlp_in", "layers_middle"},
    {"hook_resid_post", "layers_output"},       {"hook_attn_out", "attentions_residual"},
    {"hook_mlp_out", "mlps_residual"},          {"ln1.hook_normalized", "attentions_normalized"},
    {"ln2.hook_normalized", "mlps_normalized"},
};

/* sparsify hookpoints (Hugging Face module paths) -> points. */
static const struct {
    const char *suffix, *ours;
} module_hooks[] = {
    {"", "layers_output"},
    {".mlp", "mlps_output"},
    {".self_attn", "attentions_output"},
    {".attn", "attentions_output"},
};

static int parse_layer(const char *s, const char **rest)
{
    if (*s < '0' || *s > '9')
        return -1;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v < 100000)
        v = v * 10 + (*s++ - '0');
    *rest = s;
    return (int)v;
}

int nn_sae_hook_map(const char *name, char *out, size_t out_size, nn_err *err)
{
    nn_hook_point hp;
    int layer;
    nn_err ignored;
    /* already one of ours: parse without a layer count to see the base name */
    if (nn_hook_name_parse(name, 1 << 20, &hp, &layer, &ignored) == NN_OK) {
        snprintf(out, out_size, "%s", name);
        return NN_OK;
    }
    if (!strcmp(name, "hook_embed") || !strcmp(name, "embed_tokens") ||
        !strcmp(name, "model.embed_tokens")) {
        snprintf(out, out_size, "token_embeddings");
        return NN_OK;
    }
    const char *rest = NULL;
    if (!strncmp(name, "blocks.", 7)) {
        int l = parse_layer(name + 7, &rest);
        if (l >= 0 && *rest == '.') {
            for (size_t i = 0; i < sizeof block_hooks / sizeof block_hooks[0]; i++)
                if (!strcmp(rest + 1, block_hooks[i].tl)) {
                    snprintf(out, out_size, "%s.%d", block_hooks[i].ours, l);
                    return NN_OK;
                }
            if (strstr(rest, "hook_z") || strstr(rest, "attn.hook_"))
                return nn_fail(err,
                               "hook '%s': per-head attention hooks (hook_z, ...) have no "
                               "equivalent among this project's hook points",
                               name);
            if (strstr(rest, "mlp.hook_"))
                return nn_fail(err,
                               "hook '%s': MLP hidden units (d_mlp wide) have no equivalent among "
                               "this project's hook points",
                               name);
        }
        return nn_fail(err, "hook '%s': not a TransformerLens hook this project maps (docs/sae.md)",
                       name);
    }
    const char *prefixes[] = {"model.layers.", "layers.", "transformer.h.", "h.",
                              "gpt_neox.layers."};
    for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
        size_t n = strlen(prefixes[p]);
        if (strncmp(name, prefixes[p], n))
            continue;
        int l = parse_layer(name + n, &rest);
        if (l < 0)
            break;
        for (size_t i = 0; i < sizeof module_hooks / sizeof module_hooks[0]; i++)
            if (!strcmp(rest, module_hooks[i].suffix)) {
                snprintf(out, out_size, "%s.%d", module_hooks[i].ours, l);
                return NN_OK;
            }
        break;
    }
    return nn_fail(err, "hook '%s': not a hook name this project maps (docs/sae.md)", name);
}

/* ---- Loading ----------------------------------------------------------------------------------
 */

void nn_sae_free(nn_sae *sae)
{
    if (!sae)
        return;
    nn_free(sae->dir);
    nn_free(sae->hook_name);
    nn_free(sae->hook_out_name);
    nn_free(sae->storage);
    memset(sae, 0, sizeof *sae);
}

typedef struct weights {
    nn_st_archive st;
    const char *file;
} weights;

/* Whether tensor `name` has shape [d0] or [d0, d1] (d1 = 0 for one dimension); *out is NULL when
 * it is absent and not required. */
static int check_shape(const weights *w, const char *name, bool required, int64_t d0, int64_t d1,
                       const nn_st_tensor **out, nn_err *err)
{
    const nn_st_tensor *t = *out = nn_st_find(&w->st, name);
    if (!t) {
        if (required)
            return nn_fail(err, "%s: tensor '%s' is missing", w->file, name);
        return NN_OK;
    }
    int want_dims = d1 ? 2 : 1;
    if (t->n_dims != want_dims || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char shape[96] = "";
        for (int i = 0; i < t->n_dims; i++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        if (d1)
            return nn_fail(err, "%s: tensor '%s' has shape [%s], cfg.json says [%lld, %lld]",
                           w->file, name, shape, (long long)d0, (long long)d1);
        return nn_fail(err, "%s: tensor '%s' has shape [%s], cfg.json says [%lld]", w->file, name,
                       shape, (long long)d0);
    }
    if (t->dtype != NN_DT_F32 && t->dtype != NN_DT_F16 && t->dtype != NN_DT_BF16)
        return nn_fail(err, "%s: tensor '%s' is %s; F32, F16 or BF16 expected", w->file, name,
                       nn_dtype_name(t->dtype));
    return NN_OK;
}

/* Copies tensor `name` of shape [d0] or [d0, d1] (d1 = 0 for one dimension) into dst. */
static int take(const weights *w, const char *name, bool required, int64_t d0, int64_t d1,
                float *dst, bool *found, nn_err *err)
{
    const nn_st_tensor *t;
    if (check_shape(w, name, required, d0, d1, &t, err))
        return NN_ERR;
    if (found)
        *found = t != NULL;
    if (!t)
        return NN_OK;
    if (nn_st_to_f32(t, dst, err))
        return nn_err_prefix(err, "%s: tensor '%s'", w->file, name);
    return NN_OK;
}

static int arch_from_name(nn_sae *s, const char *arch, const char *file, nn_err *err)
{
    static const struct {
        const char *name;
        nn_sae_arch arch;
        bool transcoder;
    } table[] = {
        {"standard", NN_SAE_STANDARD, false},
        {"jumprelu", NN_SAE_JUMPRELU, false},
        {"topk", NN_SAE_TOPK, false},
        {"gated", NN_SAE_GATED, false},
        {"transcoder", NN_SAE_STANDARD, true},
        {"skip_transcoder", NN_SAE_STANDARD, true},
        {"jumprelu_transcoder", NN_SAE_JUMPRELU, true},
        {"jumprelu_skip_transcoder", NN_SAE_JUMPRELU, true},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(arch, table[i].name)) {
            s->arch = table[i].arch;
            s->transcoder = table[i].transcoder;
            snprintf(s->arch_name, sizeof s->arch_name, "%s", arch);
            return NN_OK;
        }
    return nn_fail(err,
                   "%s: field 'architecture': '%s' is not one this project runs (standard, "
                   "jumprelu, topk, gated, transcoder, skip_transcoder, jumprelu_transcoder, "
                   "jumprelu_skip_transcoder)",
                   file, arch);
}

/* A string field at the top level of cfg.json or in its "metadata" object (SAELens 6 moved the
 * hook names there). */
static const char *cfg_string(const cJSON *cfg, const char *key)
{
    const cJSON *v = nn_json_get(cfg, key);
    if (!cJSON_IsString(v)) {
        const cJSON *meta = nn_json_get(cfg, "metadata");
        v = cJSON_IsObject(meta) ? nn_json_get(meta, key) : NULL;
    }
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int alloc_arrays(nn_sae *s, bool skip, nn_err *err)
{
    size_t D = (size_t)s->d_in, O = (size_t)s->d_out, F = (size_t)s->d_sae;
    size_t total = D * F + F + F * O + O + 3 * F + (skip ? O * D : 0);
    if (!(s->storage = nn_calloc(total, sizeof(float), err)))
        return NN_ERR;
    float *p = s->storage;
    s->enc = (nn_linear){.w = p, .n_in = s->d_in, .n_out = s->d_sae};
    p += D * F;
    s->enc.b = p;
    p += F;
    s->W_dec = p;
    p += F * O;
    s->b_dec = p;
    p += O;
    s->threshold = p;
    p += F;
    s->b_mag = p;
    p += F;
    s->mag_scale = p;
    p += F;
    if (skip)
        s->skip = (nn_linear){.w = p, .n_in = s->d_in, .n_out = s->d_out, .ld = D};
    return NN_OK;
}

static int load_saelens(nn_sae *s, const cJSON *cfg, const char *cfg_path, weights *w, nn_err *err)
{
    const char *arch = cfg_string(cfg, "architecture");
    if (arch_from_name(s, arch ? arch : "standard", cfg_path, err))
        return NN_ERR;
    long d_in, d_sae, d_out, k;
    bool apply_b_dec, rescale = false;
    if (nn_json_int(cfg, "d_in", true, 0, 1, 1 << 20, cfg_path, &d_in, err) ||
        nn_json_int(cfg, "d_sae", true, 0, 1, 1 << 24, cfg_path, &d_sae, err) ||
        nn_json_int(cfg, "d_out", s->transcoder, d_in, 1, 1 << 20, cfg_path, &d_out, err) ||
        nn_json_int(cfg, "k", s->arch == NN_SAE_TOPK, 0, 1, d_sae, cfg_path, &k, err) ||
        nn_json_bool(cfg, "apply_b_dec_to_input", false, true, cfg_path, &apply_b_dec, err) ||
        nn_json_bool(cfg, "rescale_acts_by_decoder_norm", false, false, cfg_path, &rescale, err))
        return NN_ERR;
    if (rescale)
        return nn_fail(err, "%s: field 'rescale_acts_by_decoder_norm': true is not supported",
                       cfg_path);
    s->d_in = (int)d_in;
    s->d_sae = (int)d_sae;
    s->d_out = s->transcoder ? (int)d_out : (int)d_in;
    s->k = (int)k;
    s->subtract_b_dec = apply_b_dec && !s->transcoder;
    const char *norm = cfg_string(cfg, "normalize_activations");
    if (!norm || !strcmp(norm, "none") || !strcmp(norm, "expected_average_only_in"))
        s->norm = NN_SAE_NORM_NONE;
    else if (!strcmp(norm, "constant_norm_rescale"))
        s->norm = NN_SAE_NORM_CONSTANT_NORM;
    else if (!strcmp(norm, "layer_norm"))
        s->norm = NN_SAE_NORM_LAYER_NORM;
    else
        return nn_fail(err,
                       "%s: field 'normalize_activations': '%s' is not supported (none, "
                       "expected_average_only_in, constant_norm_rescale, layer_norm)",
                       cfg_path, norm);
    const char *reshape = cfg_string(cfg, "reshape_activations");
    if (reshape && strcmp(reshape, "none"))
        return nn_fail(err,
                       "%s: field 'reshape_activations': '%s' (per-head hook_z) is not supported",
                       cfg_path, reshape);
    const char *hook = cfg_string(cfg, "hook_name");
    if (!hook)
        return nn_fail(err, "%s: field 'hook_name' (top level or in 'metadata') is missing",
                       cfg_path);
    if (!(s->hook_name = nn_strdup(hook, err)))
        return NN_ERR;
    if (s->transcoder) {
        const char *out = cfg_string(cfg, "hook_name_out");
        if (out && !(s->hook_out_name = nn_strdup(out, err)))
            return NN_ERR;
    }
    /* center_writing_weights: SAELens loads models without processing unless the SAE's
     * model_from_pretrained_kwargs ask for it */
    const cJSON *meta = nn_json_get(cfg, "metadata");
    const cJSON *kw = nn_json_get(cfg, "model_from_pretrained_kwargs");
    if (!cJSON_IsObject(kw) && cJSON_IsObject(meta))
        kw = nn_json_get(meta, "model_from_pretrained_kwargs");
    if (cJSON_IsObject(kw) && cJSON_IsTrue(nn_json_get(kw, "center_writing_weights")))
        s->center_input = true;

    bool skip = strstr(s->arch_name, "skip") != NULL;
    /* The sizes cfg.json claims are checked against the weights before anything is allocated. */
    const nn_st_tensor *t;
    if (check_shape(w, "W_enc", true, s->d_in, s->d_sae, &t, err) ||
        check_shape(w, "W_dec", true, s->d_sae, s->d_out, &t, err) ||
        alloc_arrays(s, skip, err))
        return NN_ERR;
    int64_t D = s->d_in, F = s->d_sae, O = s->d_out;
    s->enc.in_major = true;
    s->enc.ld = (size_t)F;
    float *W_enc = (float *)s->enc.w, *b_enc = (float *)s->enc.b;
    if (take(w, "W_enc", true, D, F, W_enc, NULL, err) ||
        take(w, "W_dec", true, F, O, s->W_dec, NULL, err) ||
        take(w, "b_dec", true, O, 0, s->b_dec, NULL, err))
        return NN_ERR;
    if (s->arch == NN_SAE_GATED) {
        if (take(w, "b_gate", true, F, 0, b_enc, NULL, err) ||
            take(w, "b_mag", true, F, 0, s->b_mag, NULL, err) ||
            take(w, "r_mag", true, F, 0, s->mag_scale, NULL, err))
            return NN_ERR;
        for (int64_t i = 0; i < F; i++)
            s->mag_scale[i] = expf(s->mag_scale[i]);
    } else if (take(w, "b_enc", true, F, 0, b_enc, NULL, err)) {
        return NN_ERR;
    }
    if (s->arch == NN_SAE_JUMPRELU) {
        bool found;
        if (take(w, "threshold", false, F, 0, s->threshold, &found, err))
            return NN_ERR;
        if (!found) {
            if (take(w, "log_threshold", true, F, 0, s->threshold, NULL, err))
                return nn_err_prefix(err, "jumprelu needs 'threshold' or 'log_threshold'");
            for (int64_t i = 0; i < F; i++)
                s->threshold[i] = expf(s->threshold[i]);
        }
    }
    if (skip && take(w, "W_skip", true, O, D, (float *)s->skip.w, NULL, err))
        return NN_ERR;
    return NN_OK;
}

static int load_sparsify(nn_sae *s, const cJSON *cfg, const char *cfg_path, weights *w, nn_err *err)
{
    long d_in, latents, expansion, k;
    bool transcode, skip;
    if (nn_json_int(cfg, "d_in", true, 0, 1, 1 << 20, cfg_path, &d_in, err) ||
        nn_json_int(cfg, "expansion_factor", false, 32, 1, 1 << 16, cfg_path, &expansion, err) ||
        nn_json_int(cfg, "num_latents", false, 0, 0, 1 << 24, cfg_path, &latents, err) ||
        nn_json_int(cfg, "k", true, 0, 1, 1 << 24, cfg_path, &k, err) ||
        nn_json_bool(cfg, "transcode", false, false, cfg_path, &transcode, err) ||
        nn_json_bool(cfg, "skip_connection", false, false, cfg_path, &skip, err))
        return NN_ERR;
    const char *act = cfg_string(cfg, "activation");
    if (act && strcmp(act, "topk"))
        return nn_fail(err, "%s: field 'activation': '%s' is not supported (topk)", cfg_path, act);
    s->arch = NN_SAE_TOPK;
    snprintf(s->arch_name, sizeof s->arch_name, "%s",
             transcode ? "sparsify_transcoder" : "sparsify_topk");
    s->transcoder = transcode;
    s->d_in = (int)d_in;
    s->d_sae = (int)(latents ? latents : d_in * expansion);
    if (k > s->d_sae)
        return nn_fail(err, "%s: field 'k': %ld is more than the %d latents", cfg_path, k,
                       s->d_sae);
    s->k = (int)k;
    const nn_st_tensor *dec = nn_st_find(&w->st, "W_dec");
    s->d_out = dec && dec->n_dims == 2 ? (int)dec->shape[1] : s->d_in;
    s->subtract_b_dec = !transcode;
    /* the hookpoint is the directory's name (sparsify saves DIR/<hookpoint>/) */
    char name[256];
    snprintf(name, sizeof name, "%s", s->dir);
    size_t n = strlen(name);
    while (n > 1 && name[n - 1] == '/')
        name[--n] = '\0';
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    memmove(name, base, strlen(base) + 1);
    if (!(s->hook_name = nn_strdup(name, err)))
        return NN_ERR;
    /* The sizes cfg.json claims are checked against the weights before anything is allocated. */
    const nn_st_tensor *t;
    if (check_shape(w, "encoder.weight", true, s->d_sae, s->d_in, &t, err) ||
        check_shape(w, "W_dec", true, s->d_sae, s->d_out, &t, err) ||
        alloc_arrays(s, skip, err))
        return NN_ERR;
    int64_t D = s->d_in, F = s->d_sae, O = s->d_out;
    s->enc.in_major = false; /* encoder.weight is [latents, d_in] */
    s->enc.ld = (size_t)D;
    if (take(w, "encoder.weight", true, F, D, (float *)s->enc.w, NULL, err) ||
        take(w, "encoder.bias", true, F, 0, (float *)s->enc.b, NULL, err) ||
        take(w, "W_dec", true, F, O, s->W_dec, NULL, err) ||
        take(w, "b_dec", true, O, 0, s->b_dec, NULL, err))
        return NN_ERR;
    if (skip && take(w, "W_skip", true, O, D, (float *)s->skip.w, NULL, err))
        return NN_ERR;
    return NN_OK;
}

int nn_sae_load(const char *dir, nn_sae *out, nn_err *err)
{
    memset(out, 0, sizeof *out);
    char *cfg_path = NULL, *st_path = NULL;
    cJSON *cfg = NULL;
    weights w = {0};
    bool st_open = false;
    int rc = NN_ERR;
    if (!(out->dir = nn_strdup(dir, err)) || !(cfg_path = nn_path_join(dir, "cfg.json", err)))
        goto done;
    if (!nn_path_is_file(cfg_path)) {
        nn_fail(err, "%s: not an SAE directory (no cfg.json)", dir);
        goto done;
    }
    if (!(cfg = nn_json_parse_file(cfg_path, 1 << 20, err)) ||
        nn_json_unique_keys(cfg, cfg_path, err))
        goto done;
    if (!cJSON_IsObject(cfg)) {
        nn_fail(err, "%s: not a JSON object", cfg_path);
        goto done;
    }
    if (!(st_path = nn_path_join(dir, "sae_weights.safetensors", err)))
        goto done;
    out->format = NN_SAE_FORMAT_SAELENS;
    if (!nn_path_is_file(st_path)) {
        nn_free(st_path);
        if (!(st_path = nn_path_join(dir, "sae.safetensors", err)))
            goto done;
        out->format = NN_SAE_FORMAT_SPARSIFY;
        if (!nn_path_is_file(st_path)) {
            nn_fail(err,
                    "%s: neither sae_weights.safetensors (SAELens) nor sae.safetensors "
                    "(sparsify) is there",
                    dir);
            goto done;
        }
    }
    if (nn_st_open(st_path, &w.st, err))
        goto done;
    st_open = true;
    w.file = st_path;
    if (out->format == NN_SAE_FORMAT_SAELENS ? load_saelens(out, cfg, cfg_path, &w, err)
                                             : load_sparsify(out, cfg, cfg_path, &w, err))
        goto done;
    rc = NN_OK;
done:
    if (st_open)
        nn_st_close(&w.st);
    cJSON_Delete(cfg);
    nn_free(cfg_path);
    nn_free(st_path);
    if (rc)
        nn_sae_free(out);
    return rc;
}

/* ---- Binding to a model -----------------------------------------------------------------------
 */

static int resolve(const nn_model *m, const char *name, const char *what, nn_hook_point *hp,
                   int *layer, nn_err *err)
{
    char mapped[128];
    if (nn_sae_hook_map(name, mapped, sizeof mapped, err) ||
        nn_hook_name_parse(mapped, m->cfg.n_layers, hp, layer, err))
        return nn_err_prefix(err, "%s", what);
    if (*layer == NN_ALL_LAYERS)
        return nn_fail(err, "%s: hook '%s' names no layer", what, name);
    if (nn_hook_point_width(m, *hp) != (size_t)m->cfg.d_model)
        return nn_fail(err, "%s: hook '%s' is not a residual-width point", what, name);
    if (*hp == NN_HP_LAYERS_MIDDLE && m->cfg.parallel)
        return nn_fail(err,
                       "%s: hook '%s' (the residual stream between attention and MLP) does not "
                       "exist in this model's parallel blocks",
                       what, name);
    return NN_OK;
}

int nn_sae_bind(nn_sae *s, const nn_model *m, const char *hook_override, nn_err *err)
{
    int D = m->cfg.d_model;
    if (hook_override) {
        char *h = nn_strdup(hook_override, err);
        if (!h)
            return NN_ERR;
        nn_free(s->hook_name);
        s->hook_name = h;
    }
    if (resolve(m, s->hook_name, s->dir, &s->in_point, &s->in_layer, err))
        return NN_ERR;
    s->out_point = s->in_point;
    s->out_layer = s->in_layer;
    if (s->transcoder) {
        if (s->hook_out_name) {
            if (resolve(m, s->hook_out_name, s->dir, &s->out_point, &s->out_layer, err))
                return NN_ERR;
        } else if (s->in_point == NN_HP_MLPS_INPUT || s->in_point == NN_HP_MLPS_NORMALIZED ||
                   s->in_point == NN_HP_MLPS_OUTPUT) {
            s->out_point = NN_HP_MLPS_OUTPUT; /* sparsify: a transcoder of the MLP module */
            if (s->in_point == NN_HP_MLPS_OUTPUT)
                s->in_point = NN_HP_MLPS_INPUT;
        } else {
            return nn_fail(err,
                           "%s: transcoder without 'hook_name_out' whose input '%s' is not an "
                           "MLP's",
                           s->dir, s->hook_name);
        }
    }
    if (s->d_in != D)
        return nn_fail(err, "%s: field 'd_in' is %d, the model's width is %d", s->dir, s->d_in, D);
    if (s->d_out != D)
        return nn_fail(err, "%s: field 'd_out' is %d, the model's width is %d", s->dir, s->d_out,
                       D);
    if (s->center_input && m->cfg.arch->norm != NN_NORM_LAYERNORM)
        s->center_input = false; /* TransformerLens centers writing weights for LayerNorm only */
    return NN_OK;
}

/* ---- Encoding ---------------------------------------------------------------------------------
 */

struct nn_sae_work {
    const nn_state *state;
    int block;       /* most rows per GEMM call */
    int min_rows;    /* fewest rows per GEMM call (nn_linear_min_rows): a short block is padded */
    float *xb;       /* [block, d_in] the preprocessed inputs */
    float *raw;      /* [block, d_in] the raw inputs (skip connection) */
    float *pre;      /* [block, d_sae] */
    float *skip_out; /* [block, d_out] */
    double *scale;   /* [block, 2] per-row normalization (coefficient, mean) */
    int32_t *act_id; /* [d_sae] one row's active features */
    float *act_val;  /* [d_sae] */
    int32_t *order;  /* [d_sae] */
};

void nn_sae_work_free(nn_sae_work *w)
{
    if (!w)
        return;
    nn_free(w->xb);
    nn_free(w->raw);
    nn_free(w->pre);
    nn_free(w->skip_out);
    nn_free(w->scale);
    nn_free(w->act_id);
    nn_free(w->act_val);
    nn_free(w->order);
    nn_free(w);
}

int nn_sae_work_init(nn_sae_work **out, const nn_sae *s, nn_state *state, nn_err *err)
{
    nn_sae_work *w = nn_calloc(1, sizeof *w, err);
    if (!w)
        return NN_ERR;
    w->state = state;
    /* up to 256 rows a GEMM call (OpenBLAS packs the whole encoder matrix once per call: taller
     * calls amortize it; 64 rows ran 1.6x slower at d_sae 16384), capped so that a block of
     * pre-activations stays within 128 MB whatever d_sae is; at least the GEMM's minimum */
    int block = 256;
    while (block > 8 && (size_t)block * (size_t)s->d_sae > ((size_t)32 << 20))
        block /= 2;
    int min = nn_linear_min_rows(&s->enc);
    if (s->skip.w && nn_linear_min_rows(&s->skip) > min)
        min = nn_linear_min_rows(&s->skip);
    w->block = block > min ? block : min;
    w->min_rows = min;
    size_t B = (size_t)w->block, D = (size_t)s->d_in, F = (size_t)s->d_sae, O = (size_t)s->d_out;
    if (!(w->xb = nn_calloc(B * D, sizeof(float), err)) ||
        !(w->raw = nn_calloc(B * D, sizeof(float), err)) ||
        !(w->pre = nn_malloc(B * F * sizeof(float), err)) ||
        !(w->skip_out = nn_malloc(B * O * sizeof(float), err)) ||
        !(w->scale = nn_malloc(B * 2 * sizeof(double), err)) ||
        !(w->act_id = nn_malloc(F * sizeof(int32_t), err)) ||
        !(w->act_val = nn_malloc(F * sizeof(float), err)) ||
        !(w->order = nn_malloc(F * sizeof(int32_t), err))) {
        nn_sae_work_free(w);
        return NN_ERR;
    }
    *out = w;
    return NN_OK;
}

/* Row r of the block: center, normalize, subtract b_dec, as SAELens' process_sae_in. */
static void preprocess(const nn_sae *s, nn_sae_work *w, const float *x, int r)
{
    size_t D = (size_t)s->d_in;
    float *y = w->xb + (size_t)r * D;
    memcpy(w->raw + (size_t)r * D, x, D * sizeof(float));
    memcpy(y, x, D * sizeof(float));
    if (s->center_input) {
        double sum = 0;
        for (size_t i = 0; i < D; i++)
            sum += y[i];
        float mu = (float)(sum / (double)D);
        for (size_t i = 0; i < D; i++)
            y[i] -= mu;
    }
    w->scale[2 * r] = 1.0;
    w->scale[2 * r + 1] = 0.0;
    if (s->norm == NN_SAE_NORM_CONSTANT_NORM) {
        double ss = 0;
        for (size_t i = 0; i < D; i++)
            ss += (double)y[i] * y[i];
        float coeff = (float)(sqrt((double)D) / sqrt(ss));
        for (size_t i = 0; i < D; i++)
            y[i] *= coeff;
        w->scale[2 * r] = coeff;
    } else if (s->norm == NN_SAE_NORM_LAYER_NORM) {
        double sum = 0;
        for (size_t i = 0; i < D; i++)
            sum += y[i];
        float mu = (float)(sum / (double)D);
        double ss = 0;
        for (size_t i = 0; i < D; i++)
            ss += ((double)y[i] - mu) * ((double)y[i] - mu);
        float sd = (float)sqrt(ss / (double)(D > 1 ? D - 1 : 1)); /* torch.std: unbiased */
        for (size_t i = 0; i < D; i++)
            y[i] = (y[i] - mu) / (sd + 1e-5f);
        w->scale[2 * r] = sd;
        w->scale[2 * r + 1] = mu;
    }
    if (s->subtract_b_dec)
        for (size_t i = 0; i < D; i++)
            y[i] -= s->b_dec[i];
}

/* (value, id) order: the larger value first, ties the smaller id first. */
static inline bool before(float u, int32_t i, float v, int32_t j)
{
    return u != v ? u > v : i < j;
}

/* The positions of the k first of vals[0..n) in (value, id) order, written to top[0..k) in that
 * order; ids[j] (NULL: j itself) is the id of position j. A min-heap of k: O(n log k). Returns k
 * (or n when n < k). */
static int select_top(const float *vals, const int32_t *ids, int n, int k, int32_t *top)
{
    if (k > n)
        k = n;
    if (k <= 0)
        return 0;
#define ID(p) (ids ? ids[p] : (p))
    /* heap of positions whose root is the last in order among the kept */
    int size = 0;
    for (int p = 0; p < n; p++) {
        if (size == k) {
            int root = top[0];
            if (!before(vals[p], ID(p), vals[root], ID(root)))
                continue;
            top[0] = p;
        } else {
            top[size++] = p;
            for (int c = size - 1; c > 0;) { /* sift up */
                int parent = (c - 1) / 2;
                if (!before(vals[top[parent]], ID(top[parent]), vals[top[c]], ID(top[c])))
                    break;
                int t = top[parent];
                top[parent] = top[c];
                top[c] = t;
                c = parent;
            }
            continue;
        }
        for (int c = 0;;) { /* sift down */
            int l = 2 * c + 1, r = l + 1, worst = c;
            if (l < size && before(vals[top[worst]], ID(top[worst]), vals[top[l]], ID(top[l])))
                worst = l;
            if (r < size && before(vals[top[worst]], ID(top[worst]), vals[top[r]], ID(top[r])))
                worst = r;
            if (worst == c)
                break;
            int t = top[worst];
            top[worst] = top[c];
            top[c] = t;
            c = worst;
        }
    }
    /* heap sort: pop the last in order to the back */
    for (int end = size - 1; end > 0; end--) {
        int t = top[0];
        top[0] = top[end];
        top[end] = t;
        for (int c = 0;;) {
            int l = 2 * c + 1, r = l + 1, worst = c;
            if (l < end && before(vals[top[worst]], ID(top[worst]), vals[top[l]], ID(top[l])))
                worst = l;
            if (r < end && before(vals[top[worst]], ID(top[worst]), vals[top[r]], ID(top[r])))
                worst = r;
            if (worst == c)
                break;
            int u = top[worst];
            top[worst] = top[c];
            top[c] = u;
            c = worst;
        }
    }
#undef ID
    return size;
}

static int ascending(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    return (i > j) - (i < j);
}

/* The active features of one row of pre-activations, ids ascending; returns how many. */
static int activate(const nn_sae *s, nn_sae_work *w, float *pre)
{
    int F = s->d_sae, n = 0;
    switch (s->arch) {
    case NN_SAE_STANDARD:
        for (int i = 0; i < F; i++)
            if (pre[i] > 0.0f) {
                w->act_id[n] = i;
                w->act_val[n++] = pre[i];
            }
        break;
    case NN_SAE_JUMPRELU:
        for (int i = 0; i < F; i++)
            if (pre[i] > s->threshold[i] && pre[i] > 0.0f) {
                w->act_id[n] = i;
                w->act_val[n++] = pre[i];
            }
        break;
    case NN_SAE_GATED:
        /* pre is x W_enc + b_gate; the magnitude path reuses x W_enc */
        for (int i = 0; i < F; i++)
            if (pre[i] > 0.0f) {
                float mag = (pre[i] - s->enc.b[i]) * s->mag_scale[i] + s->b_mag[i];
                if (mag > 0.0f) {
                    w->act_id[n] = i;
                    w->act_val[n++] = mag;
                }
            }
        break;
    case NN_SAE_TOPK: {
        /* the k largest pre-activations (ties: the smaller id), relu'd: those above 0 */
        int k = select_top(pre, NULL, F, s->k, w->order);
        for (int j = 0; j < k; j++)
            if (pre[w->order[j]] > 0.0f)
                w->act_id[n++] = w->order[j];
        qsort(w->act_id, (size_t)n, sizeof *w->act_id, ascending);
        for (int j = 0; j < n; j++)
            w->act_val[j] = pre[w->act_id[j]];
        break;
    }
    }
    return n;
}

int nn_sae_encode(const nn_sae *s, nn_sae_work *w, const float *x, size_t ldx, int n, int keep,
                  int32_t *ids, float *vals, int32_t *count, int32_t *l0, float *recon, nn_err *err)
{
    size_t D = (size_t)s->d_in, F = (size_t)s->d_sae, O = (size_t)s->d_out;
    for (int r0 = 0; r0 < n; r0 += w->block) {
        int rows = n - r0 < w->block ? n - r0 : w->block;
        for (int r = 0; r < rows; r++)
            preprocess(s, w, x + (size_t)(r0 + r) * ldx, r);
        /* a block shorter than the GEMM's minimum is padded with what the buffer held: those rows
         * are computed and ignored (a row's bits do not depend on the others') */
        int gemm_rows = rows < w->min_rows ? w->min_rows : rows;
        if (nn_linear_apply(w->state, &s->enc, w->xb, D, w->pre, F, gemm_rows, err))
            return NN_ERR;
        if (s->skip.w && recon &&
            nn_linear_apply(w->state, &s->skip, w->raw, D, w->skip_out, O, gemm_rows, err))
            return NN_ERR;
        for (int r = 0; r < rows; r++) {
            size_t row = (size_t)(r0 + r);
            float *pre = w->pre + (size_t)r * F;
            int na = activate(s, w, pre);
            if (l0)
                l0[row] = na;
            /* the kept features: the keep largest, value descending, ties by id */
            int kept = select_top(w->act_val, w->act_id, na, keep, w->order);
            for (int j = 0; j < keep; j++) {
                ids[row * (size_t)keep + (size_t)j] = j < kept ? w->act_id[w->order[j]] : -1;
                vals[row * (size_t)keep + (size_t)j] = j < kept ? w->act_val[w->order[j]] : 0.0f;
            }
            count[row] = kept;
            if (!recon)
                continue;
            float *y = recon + row * O;
            for (size_t i = 0; i < O; i++)
                y[i] = 0.0f;
            for (int j = 0; j < na; j++) {
                const float *wd = s->W_dec + (size_t)w->act_id[j] * O;
                float v = w->act_val[j];
                for (size_t i = 0; i < O; i++)
                    y[i] += v * wd[i];
            }
            for (size_t i = 0; i < O; i++)
                y[i] += s->b_dec[i];
            if (s->norm == NN_SAE_NORM_CONSTANT_NORM)
                for (size_t i = 0; i < O; i++)
                    y[i] /= (float)w->scale[2 * r];
            else if (s->norm == NN_SAE_NORM_LAYER_NORM)
                for (size_t i = 0; i < O; i++)
                    y[i] = y[i] * (float)w->scale[2 * r] + (float)w->scale[2 * r + 1];
            if (s->skip.w)
                for (size_t i = 0; i < O; i++)
                    y[i] += w->skip_out[(size_t)r * O + i];
        }
    }
    return NN_OK;
}
