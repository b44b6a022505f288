/* Reading a Hugging Face config.json (and generation_config.json) into nn_config, and resolving
 * a model argument (a directory, a llama2.c file, or a name in the Hugging Face cache). */
#define _GNU_SOURCE
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_ext.h"
#include "model_internal.h"
#include "nn_json.h"

/* ---- config.json ------------------------------------------------------------------------------
 */

static int parse_activation(const char *name, const char *path, const char *field,
                            nn_activation *out, nn_err *err)
{
    if (!strcmp(name, "silu") || !strcmp(name, "swish"))
        *out = NN_ACT_SILU;
    else if (!strcmp(name, "gelu_new") || !strcmp(name, "gelu_pytorch_tanh") ||
             !strcmp(name, "gelu_fast"))
        *out = NN_ACT_GELU_TANH;
    else if (!strcmp(name, "gelu"))
        *out = NN_ACT_GELU;
    else if (!strcmp(name, "relu"))
        *out = NN_ACT_RELU;
    else
        return nn_fail(err,
                       "%s: field '%s' = '%s' is not supported (silu, gelu, gelu_new, "
                       "gelu_pytorch_tanh, relu)",
                       path, field, name);
    return NN_OK;
}

/* eos_token_id may be an integer or a list (Llama 3); the first is kept. */
static int parse_token_id(const cJSON *root, const char *key, const char *path, int *out,
                          nn_err *err)
{
    const cJSON *v = nn_json_get(root, key);
    if (cJSON_IsArray(v))
        v = cJSON_GetArrayItem(v, 0);
    if (!v || cJSON_IsNull(v))
        return NN_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9)
        return nn_fail(err, "%s: field '%s' must be a non-negative token id", path, key);
    *out = (int)v->valuedouble;
    return NN_OK;
}

/* Families name the same quantity differently (hidden_size, n_embd, n_embed); the first key of a
 * list that is present and not null is used, and errors name that key. */
static const char *first_key(const cJSON *root, const char *const *keys)
{
    for (; *keys; keys++) {
        const cJSON *v = nn_json_get(root, *keys);
        if (v && !cJSON_IsNull(v))
            return *keys;
    }
    return NULL;
}

static int get_int(const cJSON *root, const char *const *keys, bool required, long fallback,
                   long min, long max, const char *path, long *out, const char **used, nn_err *err)
{
    const char *k = first_key(root, keys);
    if (used)
        *used = k ? k : keys[0];
    return nn_json_int(root, k ? k : keys[0], required, fallback, min, max, path, out, err);
}

static int get_double(const cJSON *root, const char *const *keys, double fallback, const char *path,
                      double *out, nn_err *err)
{
    const char *k = first_key(root, keys);
    return nn_json_double(root, k ? k : keys[0], false, fallback, path, out, err);
}

/* Options whose other value changes the math in a way no row expresses: refused, not ignored. */
static int refuse_unsupported(const cJSON *root, const char *path, const nn_arch *arch, bool *mxfp4,
                              nn_err *err)
{
    static const char *const must_be_false[] = {"scale_attn_by_inverse_layer_idx",
                                                "apply_residual_connection_post_layernorm",
                                                "qk_layernorm",
                                                "use_qk_norm",
                                                "alibi",
                                                "_remove_final_layer_norm"};
    static const char *const must_be_true[] = {"scale_attn_weights", "do_layer_norm_before",
                                               "layer_norm_elementwise_affine"};
    static const char *const must_be_null[] = {"clip_qkv"};
    bool b;
    for (size_t i = 0; i < sizeof must_be_false / sizeof *must_be_false; i++) {
        if (nn_json_bool(root, must_be_false[i], false, false, path, &b, err))
            return NN_ERR;
        if (b)
            return nn_fail(err, "%s: field '%s' = true is not supported", path, must_be_false[i]);
    }
    for (size_t i = 0; i < sizeof must_be_true / sizeof *must_be_true; i++) {
        if (nn_json_bool(root, must_be_true[i], false, true, path, &b, err))
            return NN_ERR;
        if (!b)
            return nn_fail(err, "%s: field '%s' = false is not supported", path, must_be_true[i]);
    }
    for (size_t i = 0; i < sizeof must_be_null / sizeof *must_be_null; i++) {
        const cJSON *v = nn_json_get(root, must_be_null[i]);
        if (v && !cJSON_IsNull(v))
            return nn_fail(err, "%s: field '%s' other than null is not supported", path,
                           must_be_null[i]);
    }
    const cJSON *quant = nn_json_get(root, "quantization_config");
    if (quant && !cJSON_IsNull(quant)) {
        const char *method = NULL;
        const cJSON *qm = cJSON_IsObject(quant) ? nn_json_get(quant, "quant_method") : NULL;
        if (cJSON_IsString(qm))
            method = qm->valuestring;
        /* gpt-oss's MXFP4 experts dequantize exactly at load (load_mxfp4_stack); the modules it
         * does not convert are stored as they are */
        if (method && !strcmp(method, "mxfp4") && arch->expert_gate_up_stack)
            *mxfp4 = true;
        else
            return nn_fail(err,
                           "%s: field 'quantization_config' (quant_method '%s') is not supported: "
                           "the engine computes from F32, F16 or BF16 weights (and gpt-oss's MXFP4 "
                           "experts); use a dequantized copy of the checkpoint",
                           path, method ? method : "?");
    }
    return NN_OK;
}

int nn_config_from_hf(const char *json_text, const char *path, nn_config *c, nn_err *err)
{
    static const char *const K_D[] = {"hidden_size", "n_embd", "n_embed", NULL};
    static const char *const K_H[] = {"num_attention_heads", "n_head", NULL};
    static const char *const K_L[] = {"num_hidden_layers", "n_layer", NULL};
    static const char *const K_KV[] = {"num_key_value_heads", NULL};
    static const char *const K_V[] = {"vocab_size", NULL};
    static const char *const K_POS[] = {"max_position_embeddings", "n_positions", "seq_length",
                                        NULL};
    static const char *const K_FF[] = {"intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size",
                                       NULL};
    static const char *const K_HD[] = {"head_dim", NULL};
    static const char *const K_EPS[] = {"rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon",
                                        "norm_epsilon", NULL};
    static const char *const K_ACT[] = {"hidden_act", "activation_function", "activation", NULL};
    static const char *const K_ACT_GEMMA[] = {"hidden_activation", NULL};
    static const char *const K_PARALLEL[] = {"use_parallel_residual", "parallel_attn", NULL};
    static const char *const K_EXPERTS[] = {"num_local_experts", "num_experts", "n_routed_experts",
                                            NULL};

    memset(c, 0, sizeof *c);
    c->bos_token_id = c->eos_token_id = -1;
    size_t at;
    cJSON *root = nn_json_parse(json_text, strlen(json_text), &at);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nn_fail(err, "%s: malformed JSON near byte %zu (expected an object)", path, at);
    }
    int rc = NN_ERR;
    const char *model_type = NULL;
    if (nn_json_unique_keys(root, path, err) ||
        nn_json_string(root, "model_type", true, path, &model_type, err))
        goto done;
    const nn_arch *a = c->arch = nn_arch_find(model_type);
    if (!a) {
        nn_fail(err, "%s: model_type '%s' is not supported (supported: %s)", path, model_type,
                nn_arch_supported());
        goto done;
    }

    /* Sizes. */
    long d, h, kv, l, pos, vocab, ff, hd;
    const char *kd, *kh, *kkv;
    if (get_int(root, K_D, true, 0, 1, 1 << 20, path, &d, &kd, err) ||
        get_int(root, K_H, true, 0, 1, 1 << 16, path, &h, &kh, err) ||
        get_int(root, K_L, true, 0, 1, 1 << 16, path, &l, NULL, err) ||
        get_int(root, K_KV, false, h, 1, 1 << 16, path, &kv, &kkv, err) ||
        get_int(root, K_POS, a->default_context == 0, a->default_context, 1, 1 << 26, path, &pos,
                NULL, err) ||
        get_int(root, K_V, true, 0, 1, 1 << 26, path, &vocab, NULL, err) ||
        get_int(root, K_FF, a->gated_mlp, 4 * d, 1, 1 << 24, path, &ff, NULL, err))
        goto done;
    if (!first_key(root, K_HD) && d % h) {
        nn_fail(err, "%s: %s %ld is not a multiple of %s %ld", path, kd, d, kh, h);
        goto done;
    }
    if (get_int(root, K_HD, false, d / h, 1, 1 << 16, path, &hd, NULL, err))
        goto done;
    if (h % kv) {
        nn_fail(err, "%s: %s %ld is not a multiple of %s %ld", path, kh, h, kkv, kv);
        goto done;
    }
    /* Widths the loader computes in int (H * head_dim, the fused q|k|v rows): far above any real
     * model, far below INT_MAX. */
    if (h * hd > (1L << 24)) {
        nn_fail(err, "%s: %s %ld x head_dim %ld exceeds the limit of %ld", path, kh, h, hd,
                1L << 24);
        goto done;
    }
    c->d_model = (int)d;
    c->n_heads = (int)h;
    c->n_kv_heads = (int)kv;
    c->head_dim = (int)hd;
    c->n_layers = (int)l;
    c->max_positions = (int)pos;
    c->vocab_size = (int)vocab;
    c->d_ff = (int)ff;

    /* Norms, activation. */
    double eps;
    if (get_double(root, K_EPS, a->norm == NN_NORM_RMSNORM ? 1e-6 : 1e-5, path, &eps, err))
        goto done;
    c->norm_eps = a->norm_no_weight ? 1e-5f : (float)eps; /* OLMo's LayerNorm fixes eps */
    /* Gemma ignores hidden_act: hidden_activation, else gelu tanh (transformers PR 29402) */
    const char *const *act_keys = a->act_is_hidden_activation ? K_ACT_GEMMA : K_ACT;
    const char *act_key = first_key(root, act_keys), *act = NULL;
    if (act_key && nn_json_string(root, act_key, false, path, &act, err))
        goto done;
    if (parse_activation(act ? act : a->default_act, path, act_key ? act_key : act_keys[0], &c->act,
                         err))
        goto done;

    /* Biases: the family's defaults, then whatever the config says. */
    bool b;
    c->qkv_bias = a->qkv_bias;
    c->o_bias = a->o_bias;
    c->mlp_bias = a->mlp_bias;
    c->head_bias = a->head_bias;
    static const char *const all_bias_keys[] = {"use_bias", "enable_bias", "bias"};
    for (size_t i = 0; i < sizeof all_bias_keys / sizeof *all_bias_keys; i++)
        if (first_key(root, (const char *const[]){all_bias_keys[i], NULL})) {
            if (nn_json_bool(root, all_bias_keys[i], false, false, path, &b, err))
                goto done;
            c->qkv_bias = c->o_bias = c->mlp_bias = b;
        }
    if (nn_json_bool(root, "attention_bias", false, c->qkv_bias, path, &b, err))
        goto done;
    if (first_key(root, (const char *const[]){"attention_bias", NULL}))
        c->qkv_bias = c->o_bias = b;
    /* qkv_bias: Qwen2-MoE's switch since transformers 5 */
    if (nn_json_bool(root, "use_qkv_bias", false, c->qkv_bias, path, &c->qkv_bias, err) ||
        nn_json_bool(root, "qkv_bias", false, c->qkv_bias, path, &c->qkv_bias, err) ||
        nn_json_bool(root, "mlp_bias", false, c->mlp_bias, path, &c->mlp_bias, err))
        goto done;
    if (a->o_bias_never)
        c->o_bias = false;

    /* Block shape. */
    c->qkv_layout = a->qkv_layout;
    c->shared_norm = a->shared_norm;
    const char *kp = first_key(root, K_PARALLEL);
    if (nn_json_bool(root, kp ? kp : K_PARALLEL[0], false, a->parallel, path, &c->parallel, err))
        goto done;
    if (a->configure_block && a->configure_block(root, path, c, err))
        goto done;
    if (c->n_heads % c->n_kv_heads) {
        nn_fail(err, "%s: %d attention heads are not a multiple of %d key/value heads", path,
                c->n_heads, c->n_kv_heads);
        goto done;
    }
    if (c->qkv_layout != NN_QKV_BLOCKS && a->linear_in_major) {
        nn_fail(err, "%s: internal: an interleaved qkv layout needs [out, in] weights", path);
        goto done;
    }
    if (refuse_unsupported(root, path, a, &c->experts_mxfp4, err))
        goto done;

    /* Positions and attention. */
    c->rope_theta = 10000.0;
    c->rotary_dim = c->head_dim;
    if (a->pos == NN_POS_ROPE) {
        if (nn_config_rope(root, path, c, err))
            goto done;
    } else {
        c->rotary_dim = 0;
    }
    long window = 0;
    bool use_window = true;
    /* 0 means none: transformers 5 writes Qwen2-MoE's null window as 0 */
    if (nn_json_int(root, "sliding_window", false, 0, 0, 1L << 30, path, &window, err) ||
        nn_json_bool(root, "use_sliding_window", false, true, path, &use_window, err))
        goto done;
    if (first_key(root, (const char *const[]){"use_sliding_window", NULL}) && use_window) {
        nn_fail(err, "%s: field 'use_sliding_window' = true is not supported yet", path);
        goto done;
    }
    c->sliding_window = use_window ? (int)window : 0;
    c->sliding_window_pattern = a->sliding_window_pattern;
    if (nn_config_layer_lists(root, path, c, err))
        goto done;
    double scalar, softcap, final_softcap, logit_scale;
    if (nn_json_double(root, "query_pre_attn_scalar", false, 0, path, &scalar, err) ||
        nn_json_double(root, "attn_logit_softcapping", false, 0, path, &softcap, err) ||
        nn_json_double(root, "final_logit_softcapping", false, 0, path, &final_softcap, err) ||
        nn_json_double(root, "logit_scale", false, 0, path, &logit_scale, err))
        goto done;
    if (scalar < 0 || softcap < 0 || final_softcap < 0) {
        nn_fail(err, "%s: query_pre_attn_scalar and soft-capping values must be positive", path);
        goto done;
    }
    c->attn_scale = scalar > 0 ? (float)pow(scalar, -0.5) : 0.0f;
    c->attn_softcap = (float)softcap;
    c->final_softcap = (float)final_softcap;
    c->logit_scale = (float)logit_scale;
    c->emb_scale = a->emb_scale_sqrt_d ? (float)sqrt((double)d) : 0.0f;

    /* Mixture of experts. */
    if (a->router) {
        long n_exp, k, moe_ff, shared_ff = 0, step;
        if (get_int(root, K_EXPERTS, false, 0, 0, 1 << 16, path, &n_exp, NULL, err) ||
            nn_json_int(root, "num_experts_per_tok", n_exp > 0, 0, 1, n_exp > 0 ? n_exp : 1, path,
                        &k, err) ||
            nn_json_int(root, "moe_intermediate_size", false, ff, 1, 1 << 24, path, &moe_ff, err) ||
            (a->shared_up && nn_json_int(root, "shared_expert_intermediate_size", false, 0, 0,
                                         1 << 24, path, &shared_ff, err)) ||
            nn_json_int(root, "decoder_sparse_step", false, 1, 1, 1 << 16, path, &step, err) ||
            nn_json_bool(root, "norm_topk_prob", false, a->moe_renormalize, path,
                         &c->norm_topk_prob, err))
            goto done;
        c->n_experts = (int)n_exp;
        c->n_experts_per_tok = (int)k;
        c->moe_d_ff = (int)moe_ff;
        c->shared_d_ff = (int)shared_ff;
        c->moe_layer_step = (int)step;
    }

    if (a->configure && a->configure(root, path, c, err))
        goto done;
    if (nn_json_bool(root, "tie_word_embeddings", false, a->tie_default, path, &c->tie_embeddings,
                     err) ||
        parse_token_id(root, "bos_token_id", path, &c->bos_token_id, err) ||
        parse_token_id(root, "eos_token_id", path, &c->eos_token_id, err))
        goto done;
    rc = NN_OK;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- Resolving a model argument ---------------------------------------------------------------
 */

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

char *nn_model_resolve(const char *model, nn_err *err)
{
    if (nn_path_is_dir(model) || nn_path_is_file(model))
        return nn_strdup(model, err);
    if (!*model || model[0] == '/' || model[0] == '.' || ends_with(model, ".bin") ||
        strstr(model, "..") || strchr(model, '/') != strrchr(model, '/')) {
        nn_fail(err, "model '%s': no such file or directory", model);
        return NULL;
    }
    /* A hub id: ORG/NAME or NAME. */
    char cache[4096];
    const char *hub = getenv("HF_HUB_CACHE"), *home = getenv("HF_HOME");
    if (hub && *hub)
        snprintf(cache, sizeof cache, "%s", hub);
    else if (home && *home)
        snprintf(cache, sizeof cache, "%s/hub", home);
    else
        snprintf(cache, sizeof cache, "%s/.cache/huggingface/hub",
                 getenv("HOME") ? getenv("HOME") : "");
    char repo[1024] = "models--";
    size_t n = strlen(repo);
    for (const char *p = model; *p && n + 3 < sizeof repo; p++) {
        if (*p == '/') {
            repo[n++] = '-';
            repo[n++] = '-';
        } else {
            repo[n++] = *p;
        }
    }
    repo[n] = '\0';
    char path[8192];
    snprintf(path, sizeof path, "%s/%s/refs/main", cache, repo);
    char *rev = NULL;
    nn_err ignored;
    if (nn_file_read(path, 256, &rev, NULL, &ignored) != NN_OK) {
        nn_fail(
            err,
            "model '%s': not a file or directory, and not in the Hugging Face cache (looked for "
            "%s/%s/refs/main; set HF_HUB_CACHE or HF_HOME, or pass a checkpoint directory)",
            model, cache, repo);
        return NULL;
    }
    rev[strcspn(rev, " \r\n\t")] = '\0';
    snprintf(path, sizeof path, "%s/%s/snapshots/%s", cache, repo, rev);
    nn_free(rev);
    if (!nn_path_is_dir(path)) {
        nn_fail(err, "model '%s': the cache names revision snapshot %s, which is missing", model,
                path);
        return NULL;
    }
    return nn_strdup(path, err);
}

/* generation_config.json, when present, has the last word on bos/eos. */
int nn_read_generation_config(const char *dir, nn_config *c, nn_err *err)
{
    char *path = nn_path_join(dir, "generation_config.json", err);
    if (!path)
        return NN_ERR;
    int rc = NN_OK;
    if (nn_path_is_file(path)) {
        cJSON *root = nn_json_parse_file(path, 1 << 20, err);
        if (!root)
            rc = NN_ERR;
        else if (parse_token_id(root, "bos_token_id", path, &c->bos_token_id, err) ||
                 parse_token_id(root, "eos_token_id", path, &c->eos_token_id, err))
            rc = NN_ERR;
        cJSON_Delete(root);
    }
    nn_free(path);
    return rc;
}
