#include "config_ext.h"

#include <math.h>
#include <string.h>

/* ---- Per-layer kinds ------------------------------------------------------------------------- */

bool nn_layer_sliding(const nn_config *c, int l)
{
    if (c->sliding_window <= 0)
        return false;
    if (c->layer_lists & NN_LAYER_SLIDING)
        return l < NN_MAX_LAYER_LIST && (c->layer_flags[l] & NN_LAYER_SLIDING);
    return c->sliding_window_pattern == 0 || (l + 1) % c->sliding_window_pattern != 0;
}

bool nn_layer_rope(const nn_config *c, int l)
{
    if (c->arch->pos != NN_POS_ROPE)
        return false;
    return !(c->layer_lists & NN_LAYER_NO_ROPE) ||
           (l < NN_MAX_LAYER_LIST && !(c->layer_flags[l] & NN_LAYER_NO_ROPE));
}

bool nn_layer_moe(const nn_config *c, int l)
{
    if (!c->arch->router || c->n_experts <= 0 || (l + 1) % c->moe_layer_step != 0 ||
        l < c->moe_first_layer) /* DeepSeek-V3's first_k_dense_replace */
        return false;
    return !(c->layer_lists & NN_LAYER_DENSE) ||
           (l < NN_MAX_LAYER_LIST && !(c->layer_flags[l] & NN_LAYER_DENSE));
}

/* A config that lists layers one by one must fit the per-layer table. */
static int check_listable(const nn_config *c, const char *path, const char *key, nn_err *err)
{
    if (c->n_layers > NN_MAX_LAYER_LIST)
        return nn_fail(err,
                       "%s: field '%s': per-layer lists of more than %d layers are not "
                       "supported (%d layers)",
                       path, key, NN_MAX_LAYER_LIST, c->n_layers);
    return NN_OK;
}

int nn_config_layer_lists(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    const cJSON *types = nn_json_get(root, "layer_types");
    if (types && !cJSON_IsNull(types)) {
        if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != c->n_layers)
            return nn_fail(err,
                           "%s: field 'layer_types' must be a list of %d strings (one per "
                           "layer)",
                           path, c->n_layers);
        if (check_listable(c, path, "layer_types", err))
            return NN_ERR;
        int l = 0;
        const cJSON *t;
        cJSON_ArrayForEach (t, types) {
            const char *s = cJSON_IsString(t) ? t->valuestring : NULL;
            if (s && !strcmp(s, "sliding_attention"))
                c->layer_flags[l] |= NN_LAYER_SLIDING;
            else if (!s || strcmp(s, "full_attention"))
                return nn_fail(err,
                               "%s: field 'layer_types[%d]' = '%s' is not supported "
                               "(sliding_attention, full_attention)",
                               path, l, s ? s : "(not a string)");
            l++;
        }
        c->layer_lists |= NN_LAYER_SLIDING;
    }
    const cJSON *dense = nn_json_get(root, "mlp_only_layers");
    if (dense && !cJSON_IsNull(dense)) {
        if (!cJSON_IsArray(dense))
            return nn_fail(err, "%s: field 'mlp_only_layers' must be a list of layer indices",
                           path);
        if (cJSON_GetArraySize(dense) > 0) {
            if (check_listable(c, path, "mlp_only_layers", err))
                return NN_ERR;
            const cJSON *v;
            cJSON_ArrayForEach (v, dense) {
                double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
                if (d != floor(d) || d < 0 || d >= c->n_layers)
                    return nn_fail(err,
                                   "%s: field 'mlp_only_layers' holds %s, not a layer index "
                                   "in [0, %d)",
                                   path,
                                   cJSON_IsNumber(v) ? "a number out of range" : "a non-number",
                                   c->n_layers);
                c->layer_flags[(int)d] |= NN_LAYER_DENSE;
            }
            c->layer_lists |= NN_LAYER_DENSE;
        }
    }
    return NN_OK;
}

/* ---- Rotary parameters ------------------------------------------------------------------------
 */

static int read_factors(const cJSON *node, const char *key, const char *field, const char *path,
                        int n, float *out, nn_err *err)
{
    const cJSON *a = nn_json_get(node, key);
    if (!a || !cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return nn_fail(err, "%s: field '%s.%s' must be a list of %d numbers (rotary dims / 2)",
                       path, field, key, n);
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach (v, a) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
            return nn_fail(err, "%s: field '%s.%s[%d]' must be a positive number", path, field, key,
                           i);
        out[i++] = (float)v->valuedouble;
    }
    return NN_OK;
}

/* yarn's attention factor for a context scale (transformers' get_mscale). */
static double yarn_mscale(double scale, double mscale)
{
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* YaRN (transformers' _compute_yarn_parameters): the ramp's bounds and the factor on cos/sin. */
static int parse_yarn(const cJSON *root, const cJSON *node, const char *field, const char *path,
                      nn_config *c, nn_err *err)
{
    double factor, attn_factor, mscale, mscale_all, beta_fast, beta_slow;
    long orig;
    bool truncate;
    /* Phi-3 keeps original_max_position_embeddings beside the rope object: it then wins */
    const char *o = nn_json_get(root, "original_max_position_embeddings")
                        ? "original_max_position_embeddings"
                        : NULL;
    if ((o ? nn_json_int(root, o, true, 0, 1, 1L << 30, path, &orig, err)
           : nn_json_int(node, "original_max_position_embeddings", false, c->max_positions, 1,
                         1L << 30, path, &orig, err)) ||
        nn_json_double(node, "factor", false, 0, path, &factor, err) ||
        nn_json_double(node, "attention_factor", false, 0, path, &attn_factor, err) ||
        nn_json_double(node, "mscale", false, 0, path, &mscale, err) ||
        nn_json_double(node, "mscale_all_dim", false, 0, path, &mscale_all, err) ||
        nn_json_double(node, "beta_fast", false, 0, path, &beta_fast, err) ||
        nn_json_double(node, "beta_slow", false, 0, path, &beta_slow, err) ||
        nn_json_bool(node, "truncate", false, true, path, &truncate, err))
        return nn_err_prefix(err, "%s", field);
    if (factor == 0) /* DeepSeek: the ratio of the contexts */
        factor = (double)c->max_positions / (double)orig;
    if (!(factor > 0) || attn_factor < 0 || beta_fast < 0 || beta_slow < 0)
        return nn_fail(err,
                       "%s: %s: factor, attention_factor and beta_fast/beta_slow must be "
                       "positive",
                       path, field);
    if (attn_factor == 0)
        attn_factor = mscale != 0 && mscale_all != 0
                          ? yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
                          : yarn_mscale(factor, 1.0);
    c->rope_scaling = NN_ROPE_SCALING_YARN;
    c->rope_factor = factor;
    c->rope_original_max_positions = (int)orig;
    c->rope_attention_factor = (float)attn_factor;
    c->rope_beta_fast = beta_fast != 0 ? beta_fast : 32; /* Python's `or`: 0 means the default */
    c->rope_beta_slow = beta_slow != 0 ? beta_slow : 1;
    c->rope_truncate = truncate;
    return NN_OK;
}

/* The scaling of one parameter set: `node` is rope_parameters (or its full_attention set) or the
 * older rope_scaling object; `field` names it in errors. */
static int parse_scaling(const cJSON *root, const cJSON *node, const char *field, const char *path,
                         nn_config *c, nn_err *err)
{
    c->rope_scaling = NN_ROPE_SCALING_NONE;
    if (!node || cJSON_IsNull(node))
        return NN_OK;
    if (!cJSON_IsObject(node))
        return nn_fail(err, "%s: field '%s' must be an object or null", path, field);
    const char *type = NULL;
    if (nn_json_string(node, "rope_type", false, path, &type, err) != NN_OK)
        return NN_ERR;
    if (!type && nn_json_string(node, "type", false, path, &type, err) != NN_OK)
        return NN_ERR;
    if (!type)
        return nn_fail(err, "%s: field '%s.rope_type' is missing", path, field);
    if (!strcmp(type, "default"))
        return NN_OK;
    if (!strcmp(type, "yarn"))
        return parse_yarn(root, node, field, path, c, err);
    if (!strcmp(type, "longrope") || !strcmp(type, "su")) {
        long orig;
        double factor, attention;
        int half = c->rotary_dim / 2;
        if (half > NN_MAX_ROPE_FACTORS)
            return nn_fail(err,
                           "%s: %s: longrope with %d rotary dims is not supported (at most %d)",
                           path, field, c->rotary_dim, 2 * NN_MAX_ROPE_FACTORS);
        const cJSON *om = nn_json_get(node, "original_max_position_embeddings");
        if (nn_json_int(om ? node : root, "original_max_position_embeddings", true, 0, 1, 1L << 30,
                        path, &orig, err) ||
            read_factors(node, "short_factor", field, path, half, c->rope_short_factor, err) ||
            read_factors(node, "long_factor", field, path, half, c->rope_long_factor, err) ||
            nn_json_double(node, "factor", false, (double)c->max_positions / (double)orig, path,
                           &factor, err))
            return nn_err_prefix(err, "%s", field);
        if (!(factor > 0))
            return nn_fail(err, "%s: field '%s.factor' must be positive", path, field);
        /* transformers: factor, else the ratio of the contexts, sets the default attention factor
         */
        double fallback = factor <= 1.0 ? 1.0 : sqrt(1.0 + log(factor) / log((double)orig));
        if (nn_json_double(node, "attention_factor", false, fallback, path, &attention, err))
            return nn_err_prefix(err, "%s", field);
        if (!(attention > 0))
            return nn_fail(err, "%s: field '%s.attention_factor' must be positive", path, field);
        c->rope_scaling = NN_ROPE_SCALING_LONGROPE;
        c->rope_original_max_positions = (int)orig;
        c->rope_attention_factor = (float)attention;
        return NN_OK;
    }
    if (nn_json_double(node, "factor", true, 1.0, path, &c->rope_factor, err) != NN_OK)
        return nn_err_prefix(err, "%s", field);
    if (!(c->rope_factor > 0))
        return nn_fail(err, "%s: field '%s.factor' must be positive", path, field);
    if (!strcmp(type, "linear")) {
        c->rope_scaling = NN_ROPE_SCALING_LINEAR;
        return NN_OK;
    }
    if (!strcmp(type, "llama3")) {
        long orig;
        c->rope_scaling = NN_ROPE_SCALING_LLAMA3;
        if (nn_json_double(node, "low_freq_factor", true, 1, path, &c->rope_low_freq_factor, err) ||
            nn_json_double(node, "high_freq_factor", true, 4, path, &c->rope_high_freq_factor,
                           err) ||
            nn_json_int(node, "original_max_position_embeddings", true, 8192, 1, 1L << 30, path,
                        &orig, err))
            return nn_err_prefix(err, "%s", field);
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return nn_fail(err, "%s: %s: high_freq_factor must exceed low_freq_factor", path,
                           field);
        c->rope_original_max_positions = (int)orig;
        return NN_OK;
    }
    return nn_fail(err,
                   "%s: field '%s.rope_type' = '%s' is not supported (default, linear, llama3, "
                   "longrope, yarn)",
                   path, field, type);
}

/* The first of keys present and not null in obj, or NULL. */
static const char *present(const cJSON *obj, const char *const *keys)
{
    for (; obj && *keys; keys++) {
        const cJSON *v = nn_json_get(obj, *keys);
        if (v && !cJSON_IsNull(v))
            return *keys;
    }
    return NULL;
}

int nn_config_rope(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    static const char *const K_THETA[] = {"rope_theta", "rotary_emb_base", NULL};
    static const char *const K_PARTIAL[] = {"partial_rotary_factor", "rotary_pct", NULL};
    const cJSON *rp = nn_json_get(root, "rope_parameters"), *full = NULL, *sliding = NULL;
    if (rp && !cJSON_IsNull(rp)) {
        if (!cJSON_IsObject(rp))
            return nn_fail(err, "%s: field 'rope_parameters' must be an object or null", path);
        /* one set per layer type (Gemma 3, OLMo 3), or one for all layers */
        const cJSON *f = nn_json_get(rp, "full_attention"),
                    *s = nn_json_get(rp, "sliding_attention");
        if ((f && !cJSON_IsObject(f)) || (s && !cJSON_IsObject(s)))
            return nn_fail(err,
                           "%s: field 'rope_parameters': the per-layer-type sets must be "
                           "objects",
                           path);
        full = f ? f : rp;
        sliding = s;
    }
    const char *full_name = full == rp ? "rope_parameters" : "rope_parameters.full_attention";
    /* rope_parameters, when present, has the last word (transformers 5 writes it alone) */
    const char *kt = present(full, K_THETA);
    const cJSON *theta_obj = kt ? full : root;
    if (!kt)
        kt = present(root, K_THETA);
    if (nn_json_double(theta_obj, kt ? kt : K_THETA[0], false, c->rope_theta, path, &c->rope_theta,
                       err))
        return NN_ERR;
    if (!(c->rope_theta > 0))
        return nn_fail(err, "%s: field 'rope_theta' must be positive", path);
    double partial;
    const char *kp = present(full, K_PARTIAL);
    const cJSON *partial_obj = kp ? full : root;
    if (!kp)
        kp = present(root, K_PARTIAL);
    /* a family's own default where the config names none (GLM-4: 0.5) */
    double partial_default =
        c->arch->rotary_fraction_default > 0 ? c->arch->rotary_fraction_default : 1.0;
    if (nn_json_double(partial_obj, kp ? kp : K_PARTIAL[0], false, partial_default, path, &partial,
                       err))
        return NN_ERR;
    if (!(partial > 0 && partial <= 1))
        return nn_fail(err, "%s: field '%s' = %g must be in (0, 1]", path, kp, partial);
    long rdim;
    if (nn_json_int(root, "rotary_dim", false, (long)(c->head_dim * partial), 0, c->head_dim, path,
                    &rdim, err))
        return NN_ERR;
    if (c->head_dim % 2 || rdim % 2 || rdim < 2)
        return nn_fail(err,
                       "%s: head_dim %d with %ld rotary dims: rotary dims must be even and > 0",
                       path, c->head_dim, rdim);
    c->rotary_dim = (int)rdim;
    if (full) {
        if (parse_scaling(root, full, full_name, path, c, err))
            return NN_ERR;
    } else if (parse_scaling(root, nn_json_get(root, "rope_scaling"), "rope_scaling", path, c,
                             err)) {
        return NN_ERR;
    }
    if (sliding) {
        const char *type = NULL;
        double local;
        if (nn_json_string(sliding, "rope_type", false, path, &type, err) ||
            nn_json_double(sliding, "rope_theta", false, c->rope_theta, path, &local, err))
            return nn_err_prefix(err, "rope_parameters.sliding_attention");
        if (type && strcmp(type, "default"))
            return nn_fail(err,
                           "%s: field 'rope_parameters.sliding_attention.rope_type' = '%s' is not "
                           "supported (default)",
                           path, type);
        if (!(local > 0))
            return nn_fail(err,
                           "%s: field 'rope_parameters.sliding_attention.rope_theta' must be "
                           "positive",
                           path);
        if (local != c->rope_theta || c->rope_scaling != NN_ROPE_SCALING_NONE)
            c->rope_local_theta = local;
    }
    return NN_OK;
}

/* ---- The families' own block shapes (configure_block hooks) ------------------------------------
 */

/* GPT-BigCode: multi_query (the default) is one fused k|v head after all the q heads; without
 * it, per-head [q|k|v] blocks. */
int nn_configure_gpt_bigcode(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    bool mq;
    if (nn_json_bool(root, "multi_query", false, true, path, &mq, err))
        return NN_ERR;
    c->n_kv_heads = mq ? 1 : c->n_heads;
    c->qkv_layout = mq ? NN_QKV_BLOCKS : NN_QKV_PER_HEAD;
    return NN_OK;
}

/* Falcon's block shape and qkv layout depend on its config (Falcon-7B, -40B, RW). */
int nn_configure_falcon(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    bool new_arch, multi_query, parallel;
    long kv, n_ln;
    if (nn_json_bool(root, "new_decoder_architecture", false, false, path, &new_arch, err) ||
        nn_json_bool(root, "multi_query", false, true, path, &multi_query, err) ||
        nn_json_bool(root, "parallel_attn", false, true, path, &parallel, err) ||
        nn_json_int(root, "num_kv_heads", false, c->n_heads, 1, 1 << 16, path, &kv, err) ||
        nn_json_int(root, "num_ln_in_parallel_attn", false, 2, 1, 2, path, &n_ln, err))
        return NN_ERR;
    if (new_arch) {
        c->n_kv_heads = (int)kv;
        c->qkv_layout = NN_QKV_GROUPED;
        c->parallel = true;
        c->shared_norm = n_ln == 1;
    } else {
        c->n_kv_heads = multi_query ? 1 : c->n_heads;
        c->qkv_layout = multi_query ? NN_QKV_GROUPED : NN_QKV_PER_HEAD;
        c->parallel = parallel;
        c->shared_norm = parallel;
    }
    return NN_OK;
}

/* OPT: a projection between the embeddings and the blocks (OPT-350m) is not supported. */
int nn_configure_opt(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    long proj;
    if (nn_json_int(root, "word_embed_proj_dim", false, c->d_model, 1, 1 << 20, path, &proj, err))
        return NN_ERR;
    if (proj != c->d_model)
        return nn_fail(err, "%s: field 'word_embed_proj_dim' != hidden_size is not supported",
                       path);
    return NN_OK;
}

/* ---- The families' own fields ---------------------------------------------------------------- */

/* Gemma 3: older configs give the local theta as rope_local_base_freq (default 1e4) and the layer
 * pattern as sliding_window_pattern (default 6: five sliding layers, then a global one). */
int nn_configure_gemma3(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    bool bidirectional;
    long pattern;
    if (nn_json_bool(root, "use_bidirectional_attention", false, false, path, &bidirectional,
                     err) ||
        nn_json_int(root, "sliding_window_pattern", false, 6, 1, 1 << 16, path, &pattern, err))
        return NN_ERR;
    if (bidirectional)
        return nn_fail(err, "%s: field 'use_bidirectional_attention' = true is not supported",
                       path);
    c->sliding_window_pattern = (int)pattern;
    if (!nn_json_get(root, "rope_parameters")) {
        double local;
        if (nn_json_double(root, "rope_local_base_freq", false, 10000.0, path, &local, err))
            return NN_ERR;
        if (!(local > 0))
            return nn_fail(err, "%s: field 'rope_local_base_freq' must be positive", path);
        c->rope_local_theta = local;
    }
    return NN_OK;
}

/* SmolLM3: no_rope_layers[l] = 1 where layer l rotates, 0 where it is NoPE; absent, every
 * no_rope_layer_interval-th layer (default 4) is NoPE. */
int nn_configure_smollm3(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    if (check_listable(c, path, "no_rope_layers", err))
        return NN_ERR;
    const cJSON *list = nn_json_get(root, "no_rope_layers");
    if (list && !cJSON_IsNull(list)) {
        if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != c->n_layers)
            return nn_fail(err, "%s: field 'no_rope_layers' must be a list of %d 0/1 flags", path,
                           c->n_layers);
        int l = 0;
        const cJSON *v;
        cJSON_ArrayForEach (v, list) {
            if (!cJSON_IsNumber(v) || (v->valuedouble != 0 && v->valuedouble != 1))
                return nn_fail(err, "%s: field 'no_rope_layers[%d]' must be 0 or 1", path, l);
            if (v->valuedouble == 0)
                c->layer_flags[l] |= NN_LAYER_NO_ROPE;
            l++;
        }
    } else {
        long every;
        if (nn_json_int(root, "no_rope_layer_interval", false, 4, 1, 1 << 16, path, &every, err))
            return NN_ERR;
        for (int l = 0; l < c->n_layers; l++)
            if ((l + 1) % every == 0)
                c->layer_flags[l] |= NN_LAYER_NO_ROPE;
    }
    c->layer_lists |= NN_LAYER_NO_ROPE;
    return NN_OK;
}

/* Granite: embeddings x embedding_multiplier, scores x attention_multiplier (instead of
 * 1/sqrt(head_dim)), branches x residual_multiplier, logits / logits_scaling. */
int nn_configure_granite(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    double emb, att, res, logits;
    if (nn_json_double(root, "embedding_multiplier", false, 1.0, path, &emb, err) ||
        nn_json_double(root, "attention_multiplier", false, 1.0, path, &att, err) ||
        nn_json_double(root, "residual_multiplier", false, 1.0, path, &res, err) ||
        nn_json_double(root, "logits_scaling", false, 1.0, path, &logits, err))
        return NN_ERR;
    if (!(emb > 0) || !(att > 0) || !(res > 0) || !(logits > 0))
        return nn_fail(err,
                       "%s: Granite's multipliers (embedding_multiplier, "
                       "attention_multiplier, residual_multiplier, logits_scaling) must be "
                       "positive",
                       path);
    c->emb_scale = (float)emb;
    c->attn_scale = (float)att;
    c->residual_scale = (float)res;
    c->logits_divisor = (float)logits;
    return NN_OK;
}

/* ---- gpt-oss and DeepSeek-V3 ------------------------------------------------------------------
 */

/* gpt-oss's clamped SwiGLU experts. */
int nn_configure_gpt_oss(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    double limit, alpha;
    if (nn_json_double(root, "swiglu_limit", false, 7.0, path, &limit, err) ||
        nn_json_double(root, "swiglu_alpha", false, 1.702, path, &alpha, err))
        return NN_ERR;
    if (!(limit > 0))
        return nn_fail(err, "%s: field 'swiglu_limit' must be positive", path);
    c->swiglu_limit = (float)limit;
    c->swiglu_alpha = (float)alpha;
    if (c->n_experts < 1)
        return nn_fail(err, "%s: field 'num_local_experts' must be at least 1", path);
    return NN_OK;
}

/* DeepSeek-V3: multi-head latent attention's widths, and the group-limited router. */
int nn_configure_deepseek(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    long q_rank, kv_rank, nope, rope, vdim, first_dense, n_group, topk_group, n_shared;
    double routed_scale;
    bool interleave;
    if (nn_json_int(root, "q_lora_rank", false, 0, 1, 1 << 20, path, &q_rank, err) ||
        nn_json_int(root, "kv_lora_rank", true, 0, 1, 1 << 20, path, &kv_rank, err) ||
        nn_json_int(root, "qk_nope_head_dim", true, 0, 0, 1 << 16, path, &nope, err) ||
        nn_json_int(root, "qk_rope_head_dim", true, 0, 2, 1024, path, &rope, err) ||
        nn_json_int(root, "v_head_dim", true, 0, 1, 1 << 16, path, &vdim, err) ||
        nn_json_bool(root, "rope_interleave", false, true, path, &interleave, err) ||
        nn_json_int(root, "first_k_dense_replace", false, 0, 0, 1 << 16, path, &first_dense, err) ||
        nn_json_int(root, "n_shared_experts", false, 0, 0, 1 << 10, path, &n_shared, err) ||
        nn_json_double(root, "routed_scaling_factor", false, 1.0, path, &routed_scale, err))
        return NN_ERR;
    if (rope % 2)
        return nn_fail(err, "%s: field 'qk_rope_head_dim' = %ld must be even", path, rope);
    if (c->n_kv_heads != c->n_heads)
        return nn_fail(err,
                       "%s: field 'num_key_value_heads' = %d != num_attention_heads %d is not "
                       "supported (multi-head latent attention expands one key per head)",
                       path, c->n_kv_heads, c->n_heads);
    if ((long)c->n_heads * (nope + rope + vdim) > (1L << 24))
        return nn_fail(err, "%s: heads x (qk_nope + qk_rope + v) head dims exceeds %ld", path,
                       1L << 24);
    c->q_lora_rank = (int)q_rank;
    c->kv_lora_rank = (int)kv_rank;
    c->head_dim = (int)(nope + rope);
    c->rotary_dim = c->qk_rope_dim = (int)rope;
    c->v_head_dim = (int)vdim;
    c->mla_rope_interleaved = interleave;
    /* DeepseekV3Attention: scaling = qk_head_dim^-0.5, times yarn's mscale(factor,
     * mscale_all_dim)^2 for any non-default rope type */
    double scale = pow((double)(nope + rope), -0.5), mscale_all = 0;
    if (c->rope_scaling != NN_ROPE_SCALING_NONE) {
        const cJSON *rs = nn_json_get(root, "rope_parameters");
        if (!rs || cJSON_IsNull(rs))
            rs = nn_json_get(root, "rope_scaling");
        else if (nn_json_get(rs, "full_attention"))
            rs = nn_json_get(rs, "full_attention");
        if (nn_json_double(rs, "mscale_all_dim", false, 0, path, &mscale_all, err))
            return NN_ERR;
        if (mscale_all != 0)
            scale *=
                yarn_mscale(c->rope_factor, mscale_all) * yarn_mscale(c->rope_factor, mscale_all);
    }
    c->attn_scale = (float)scale;
    c->moe_first_layer = (int)first_dense;
    c->shared_d_ff = (int)(n_shared * c->moe_d_ff);
    c->routed_scale = (float)routed_scale;
    if (c->n_experts > 0) {
        int X = c->n_experts;
        if (nn_json_int(root, "n_group", true, 0, 1, X, path, &n_group, err) ||
            nn_json_int(root, "topk_group", true, 0, 1, n_group, path, &topk_group, err))
            return NN_ERR;
        if (X > NN_MAX_GROUPED_EXPERTS || X % n_group || X / n_group < 2)
            return nn_fail(err,
                           "%s: %d routed experts in %ld groups: the groups must divide the "
                           "experts evenly, at least 2 per group, at most %d experts",
                           path, X, n_group, NN_MAX_GROUPED_EXPERTS);
        if (c->n_experts_per_tok > topk_group * (X / n_group))
            return nn_fail(err,
                           "%s: field 'num_experts_per_tok' = %d exceeds the %ld experts of the "
                           "topk_group groups",
                           path, c->n_experts_per_tok, topk_group * (X / n_group));
        c->n_expert_groups = (int)n_group;
        c->topk_groups = (int)topk_group;
    }
    return NN_OK;
}
