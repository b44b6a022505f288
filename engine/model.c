#define _GNU_SOURCE
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_json.h"

/* ---- The architecture table ------------------------------------------------------------------ */

static const nn_arch arch_table[] = {
    {
        .model_type = "gpt2",
        .family = "GPT-2",
        .norm = NN_NORM_LAYERNORM,
        .pos = NN_POS_LEARNED,
        .linear_in_major = true,
        .fused_qkv = true,
        .qkv_bias = true,
        .o_bias = true,
        .mlp_bias = true,
        .norm_bias = true,
        .notes = "learned absolute positions: layers_input.0 = token_embeddings + wpe[position]; "
                 "Conv1D weights stored [in, out]; fused c_attn [q|k|v]; tied head",
        .prefix = "transformer.",
        .tok_emb = "wte",
        .pos_emb = "wpe",
        .final_norm = "ln_f",
        .attn_norm = "h.%d.ln_1",
        .mlp_norm = "h.%d.ln_2",
        .qkv = "h.%d.attn.c_attn",
        .o = "h.%d.attn.c_proj",
        .up = "h.%d.mlp.c_fc",
        .down = "h.%d.mlp.c_proj",
    },
#define LLAMA_NAMES                                                                                \
    .prefix = "", .tok_emb = "model.embed_tokens", .final_norm = "model.norm", .head = "lm_head",  \
    .attn_norm = "model.layers.%d.input_layernorm",                                                \
    .mlp_norm = "model.layers.%d.post_attention_layernorm",                                        \
    .q = "model.layers.%d.self_attn.q_proj", .k = "model.layers.%d.self_attn.k_proj",              \
    .v = "model.layers.%d.self_attn.v_proj", .o = "model.layers.%d.self_attn.o_proj",              \
    .gate = "model.layers.%d.mlp.gate_proj", .up = "model.layers.%d.mlp.up_proj",                  \
    .down = "model.layers.%d.mlp.down_proj"
    {
        .model_type = "llama",
        .family = "Llama",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .notes = "standard pre-norm block (RMSNorm, RoPE, SiLU-gated MLP)",
        LLAMA_NAMES,
    },
    {
        .model_type = "mistral",
        .family = "Mistral",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .notes = "standard pre-norm block; sliding-window attention when the config sets "
                 "sliding_window (attention_probabilities are zero outside the window)",
        LLAMA_NAMES,
    },
    {
        .model_type = "qwen2",
        .family = "Qwen2",
        .norm = NN_NORM_RMSNORM,
        .pos = NN_POS_ROPE,
        .gated_mlp = true,
        .qkv_bias = true,
        .notes = "standard pre-norm block with q/k/v biases",
        LLAMA_NAMES,
    },
};

const nn_arch *nn_arch_find(const char *model_type)
{
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strcmp(arch_table[i].model_type, model_type) == 0)
            return &arch_table[i];
    return NULL;
}

const char *nn_arch_supported(void)
{
    return "gpt2, llama, mistral, qwen2";
}

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

static int parse_rope_scaling(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    const cJSON *rs = nn_json_get(root, "rope_scaling");
    c->rope_scaling = NN_ROPE_SCALING_NONE;
    if (!rs || cJSON_IsNull(rs))
        return NN_OK;
    if (!cJSON_IsObject(rs))
        return nn_fail(err, "%s: field 'rope_scaling' must be an object or null", path);
    const char *type = NULL;
    if (nn_json_string(rs, "rope_type", false, path, &type, err) != NN_OK)
        return NN_ERR;
    if (!type && nn_json_string(rs, "type", false, path, &type, err) != NN_OK)
        return NN_ERR;
    if (!type)
        return nn_fail(err, "%s: field 'rope_scaling.rope_type' is missing", path);
    if (!strcmp(type, "default"))
        return NN_OK;
    if (nn_json_double(rs, "factor", true, 1.0, path, &c->rope_factor, err) != NN_OK)
        return nn_err_prefix(err, "rope_scaling");
    if (!(c->rope_factor > 0))
        return nn_fail(err, "%s: field 'rope_scaling.factor' must be positive", path);
    if (!strcmp(type, "linear")) {
        c->rope_scaling = NN_ROPE_SCALING_LINEAR;
        return NN_OK;
    }
    if (!strcmp(type, "llama3")) {
        long orig;
        c->rope_scaling = NN_ROPE_SCALING_LLAMA3;
        if (nn_json_double(rs, "low_freq_factor", true, 1, path, &c->rope_low_freq_factor, err) ||
            nn_json_double(rs, "high_freq_factor", true, 4, path, &c->rope_high_freq_factor, err) ||
            nn_json_int(rs, "original_max_position_embeddings", true, 8192, 1, 1L << 30, path,
                        &orig, err))
            return nn_err_prefix(err, "rope_scaling");
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return nn_fail(err, "%s: rope_scaling: high_freq_factor must exceed low_freq_factor",
                           path);
        c->rope_original_max_positions = (int)orig;
        return NN_OK;
    }
    return nn_fail(err,
                   "%s: field 'rope_scaling.rope_type' = '%s' is not supported (default, linear, "
                   "llama3)",
                   path, type);
}

static int parse_gpt2(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    long d, h, l, pos, vocab, inner;
    double eps;
    const char *act = NULL;
    bool b;
    if (nn_json_int(root, "n_embd", true, 0, 1, 1 << 20, path, &d, err) ||
        nn_json_int(root, "n_head", true, 0, 1, 1 << 16, path, &h, err) ||
        nn_json_int(root, "n_layer", true, 0, 1, 1 << 16, path, &l, err) ||
        nn_json_int(root, "n_positions", true, 0, 1, 1 << 26, path, &pos, err) ||
        nn_json_int(root, "vocab_size", true, 0, 1, 1 << 26, path, &vocab, err) ||
        nn_json_int(root, "n_inner", false, 4 * d, 1, 1 << 24, path, &inner, err) ||
        nn_json_double(root, "layer_norm_epsilon", false, 1e-5, path, &eps, err) ||
        nn_json_string(root, "activation_function", false, path, &act, err))
        return NN_ERR;
    if (parse_activation(act ? act : "gelu_new", path, "activation_function", &c->act, err))
        return NN_ERR;
    if (nn_json_bool(root, "scale_attn_by_inverse_layer_idx", false, false, path, &b, err))
        return NN_ERR;
    if (b)
        return nn_fail(err, "%s: field 'scale_attn_by_inverse_layer_idx' = true is not supported",
                       path);
    if (nn_json_bool(root, "scale_attn_weights", false, true, path, &b, err))
        return NN_ERR;
    if (!b)
        return nn_fail(err, "%s: field 'scale_attn_weights' = false is not supported", path);
    if (d % h)
        return nn_fail(err, "%s: n_embd %ld is not a multiple of n_head %ld", path, d, h);
    c->d_model = (int)d;
    c->n_heads = c->n_kv_heads = (int)h;
    c->head_dim = (int)(d / h);
    c->n_layers = (int)l;
    c->max_positions = (int)pos;
    c->vocab_size = (int)vocab;
    c->d_ff = (int)inner;
    c->norm_eps = (float)eps;
    c->qkv_bias = c->o_bias = c->mlp_bias = true;
    return NN_OK;
}

static int parse_llama_like(const cJSON *root, const char *path, nn_config *c, nn_err *err)
{
    long d, h, kv, l, pos, vocab, ff, hd, window = 0;
    double eps;
    const char *act = NULL;
    bool b;
    if (nn_json_int(root, "hidden_size", true, 0, 1, 1 << 20, path, &d, err) ||
        nn_json_int(root, "num_attention_heads", true, 0, 1, 1 << 16, path, &h, err) ||
        nn_json_int(root, "num_key_value_heads", false, h, 1, 1 << 16, path, &kv, err) ||
        nn_json_int(root, "num_hidden_layers", true, 0, 1, 1 << 16, path, &l, err) ||
        nn_json_int(root, "max_position_embeddings", true, 0, 1, 1 << 26, path, &pos, err) ||
        nn_json_int(root, "vocab_size", true, 0, 1, 1 << 26, path, &vocab, err) ||
        nn_json_int(root, "intermediate_size", true, 0, 1, 1 << 24, path, &ff, err) ||
        nn_json_int(root, "head_dim", false, d / h, 1, 1 << 16, path, &hd, err) ||
        nn_json_double(root, "rms_norm_eps", false, 1e-6, path, &eps, err) ||
        nn_json_double(root, "rope_theta", false, 10000.0, path, &c->rope_theta, err) ||
        nn_json_string(root, "hidden_act", false, path, &act, err) ||
        nn_json_bool(root, "attention_bias", false, c->qkv_bias, path, &b, err))
        return NN_ERR;
    if (h % kv)
        return nn_fail(err,
                       "%s: num_attention_heads %ld is not a multiple of num_key_value_heads %ld",
                       path, h, kv);
    if (hd % 2)
        return nn_fail(err, "%s: head_dim %ld must be even for rotary embeddings", path, hd);
    if (!(c->rope_theta > 0))
        return nn_fail(err, "%s: field 'rope_theta' must be positive", path);
    c->qkv_bias = b;
    c->o_bias = b && strcmp(c->arch->model_type, "qwen2") != 0;
    if (nn_json_bool(root, "mlp_bias", false, false, path, &c->mlp_bias, err))
        return NN_ERR;
    if (parse_activation(act ? act : "silu", path, "hidden_act", &c->act, err))
        return NN_ERR;
    if (!strcmp(c->arch->model_type, "mistral")) {
        if (nn_json_int(root, "sliding_window", false, 0, 1, 1L << 30, path, &window, err))
            return NN_ERR;
    } else if (!strcmp(c->arch->model_type, "qwen2")) {
        bool use_swa;
        if (nn_json_bool(root, "use_sliding_window", false, false, path, &use_swa, err))
            return NN_ERR;
        if (use_swa)
            return nn_fail(err, "%s: field 'use_sliding_window' = true is not supported yet", path);
    }
    if (parse_rope_scaling(root, path, c, err))
        return NN_ERR;
    c->d_model = (int)d;
    c->n_heads = (int)h;
    c->n_kv_heads = (int)kv;
    c->head_dim = (int)hd;
    c->rotary_dim = (int)hd;
    c->n_layers = (int)l;
    c->max_positions = (int)pos;
    c->vocab_size = (int)vocab;
    c->d_ff = (int)ff;
    c->norm_eps = (float)eps;
    c->sliding_window = (int)window;
    return NN_OK;
}

int nn_config_from_hf(const char *json_text, const char *path, nn_config *c, nn_err *err)
{
    memset(c, 0, sizeof *c);
    c->bos_token_id = c->eos_token_id = -1;
    cJSON *root = cJSON_Parse(json_text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nn_fail(err, "%s: malformed JSON (expected an object)", path);
    }
    int rc = NN_ERR;
    const char *model_type = NULL;
    if (nn_json_string(root, "model_type", true, path, &model_type, err))
        goto done;
    c->arch = nn_arch_find(model_type);
    if (!c->arch) {
        nn_fail(err, "%s: model_type '%s' is not supported (supported: %s)", path, model_type,
                nn_arch_supported());
        goto done;
    }
    c->qkv_bias = c->arch->qkv_bias;
    if ((c->arch->pos == NN_POS_LEARNED ? parse_gpt2 : parse_llama_like)(root, path, c, err))
        goto done;
    bool tie_default = c->arch->pos == NN_POS_LEARNED; /* GPT-2 ties; Llama-style configs do not */
    if (nn_json_bool(root, "tie_word_embeddings", false, tie_default, path, &c->tie_embeddings,
                     err) ||
        parse_token_id(root, "bos_token_id", path, &c->bos_token_id, err) ||
        parse_token_id(root, "eos_token_id", path, &c->eos_token_id, err))
        goto done;
    if (c->arch->pos == NN_POS_LEARNED)
        c->rotary_dim = 0;
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

/* ---- Weights -----------------------------------------------------------------------------------
 */

void nn_model_free(nn_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_owned; i++)
        nn_free(m->owned[i]);
    nn_free(m->owned);
    nn_free(m->layers);
    nn_st_close(&m->archive);
    nn_file_unmap(&m->bin);
    nn_free(m->source);
    nn_free(m->config_json);
    nn_free(m);
}

static int keep_owned(nn_model *m, float *buf, nn_err *err)
{
    float **grown = nn_realloc(m->owned, (m->n_owned + 1) * sizeof *grown, err);
    if (!grown) {
        nn_free(buf);
        return NN_ERR;
    }
    m->owned = grown;
    m->owned[m->n_owned++] = buf;
    return NN_OK;
}

/* The float32 data of a tensor: the mapped bytes themselves when they are aligned F32 (so a
 * process touches only the pages it computes with), else a converted copy owned by the model. */
static const float *tensor_f32(nn_model *m, const nn_st_tensor *t, nn_err *err)
{
    if (t->dtype == NN_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0)
        return (const float *)t->data;
    float *buf = nn_malloc(t->numel * sizeof(float), err);
    if (!buf)
        return NULL;
    if (nn_st_to_f32(t, buf, err) != NN_OK) {
        nn_free(buf);
        nn_err_prefix(err, "%s", nn_st_file_of(&m->archive, t));
        return NULL;
    }
    if (keep_owned(m, buf, err) != NN_OK)
        return NULL;
    return buf;
}

/* Looks up "<prefix><name % layer>.<suffix>" (also without the prefix) and checks its shape. */
static const float *load_tensor(nn_model *m, const char *name_fmt, int layer, const char *suffix,
                                int d0, int d1, bool required, nn_err *err)
{
    char name[512], full[600];
    snprintf(name, sizeof name, name_fmt, layer);
    const nn_arch *a = m->cfg.arch;
    snprintf(full, sizeof full, "%s%s.%s", a->prefix, name, suffix);
    const nn_st_tensor *t = nn_st_find(&m->archive, full);
    if (!t && *a->prefix) {
        snprintf(full, sizeof full, "%s.%s", name, suffix);
        t = nn_st_find(&m->archive, full);
    }
    if (!t) {
        if (required)
            nn_fail(err, "%s: tensor '%s%s.%s' is missing from the checkpoint", m->source,
                    a->prefix, name, suffix);
        else
            err->msg[0] = '\0';
        return NULL;
    }
    int want_dims = d1 > 0 ? 2 : 1;
    bool ok = t->n_dims == want_dims && t->shape[0] == d0 && (want_dims == 1 || t->shape[1] == d1);
    if (!ok) {
        char got[128] = "";
        size_t n = 0;
        for (int i = 0; i < t->n_dims && n < sizeof got - 24; i++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        if (want_dims == 2)
            nn_fail(err, "%s: tensor '%s' has shape [%s], expected [%d, %d]",
                    nn_st_file_of(&m->archive, t), full, got, d0, d1);
        else
            nn_fail(err, "%s: tensor '%s' has shape [%s], expected [%d]",
                    nn_st_file_of(&m->archive, t), full, got, d0);
        return NULL;
    }
    return tensor_f32(m, t, err);
}

#define NEED(ptr)                                                                                  \
    do {                                                                                           \
        if (!(ptr))                                                                                \
            return NN_ERR;                                                                         \
    } while (0)

static int load_norm(nn_model *m, const char *fmt, int layer, nn_norm *out, nn_err *err)
{
    int d = m->cfg.d_model;
    NEED(out->w = load_tensor(m, fmt, layer, "weight", d, 0, true, err));
    if (m->cfg.arch->norm_bias)
        NEED(out->b = load_tensor(m, fmt, layer, "bias", d, 0, true, err));
    return NN_OK;
}

/* A linear layer stored as its own tensor. */
static int load_linear(nn_model *m, const char *fmt, int layer, int n_in, int n_out, bool bias,
                       nn_linear *out, nn_err *err)
{
    bool in_major = m->cfg.arch->linear_in_major;
    out->n_in = n_in;
    out->n_out = n_out;
    out->in_major = in_major;
    out->ld = (size_t)(in_major ? n_out : n_in);
    NEED(out->w = load_tensor(m, fmt, layer, "weight", in_major ? n_in : n_out,
                              in_major ? n_out : n_in, true, err));
    out->b = NULL;
    if (bias)
        NEED(out->b = load_tensor(m, fmt, layer, "bias", n_out, 0, true, err));
    return NN_OK;
}

/* q, k, v as views of one fused [q|k|v] projection. */
static int load_fused_qkv(nn_model *m, int layer, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, total = qd + 2 * kvd;
    nn_linear fused;
    if (load_linear(m, c->arch->qkv, layer, c->d_model, total, c->qkv_bias, &fused, err))
        return NN_ERR;
    nn_linear *parts[3] = {&L->q, &L->k, &L->v};
    int widths[3] = {qd, kvd, kvd}, start = 0;
    for (int i = 0; i < 3; i++) {
        *parts[i] = fused;
        parts[i]->n_out = widths[i];
        /* in_major [in][out]: a column block; out-major [out][in]: a row block */
        parts[i]->w = fused.w + (fused.in_major ? (size_t)start : (size_t)start * fused.ld);
        parts[i]->b = fused.b ? fused.b + start : NULL;
        start += widths[i];
    }
    return NN_OK;
}

static int load_weights(nn_model *m, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int d = c->d_model, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    NEED(m->tok_emb = load_tensor(m, a->tok_emb, 0, "weight", c->vocab_size, d, true, err));
    if (a->pos == NN_POS_LEARNED)
        NEED(m->pos_emb = load_tensor(m, a->pos_emb, 0, "weight", c->max_positions, d, true, err));
    if (load_norm(m, a->final_norm, 0, &m->final_norm, err))
        return NN_ERR;
    m->head = (nn_linear){.w = m->tok_emb, .n_in = d, .n_out = c->vocab_size, .ld = (size_t)d};
    if (!c->tie_embeddings) {
        /* The head is a Linear [vocab, d] in every family, Conv1D ones included. */
        nn_arch head_arch = *a;
        head_arch.linear_in_major = false;
        const nn_arch *saved = m->cfg.arch;
        m->cfg.arch = &head_arch;
        int rc = load_linear(m, a->head, 0, d, c->vocab_size, false, &m->head, err);
        m->cfg.arch = saved;
        if (rc)
            return NN_ERR;
    }
    m->layers = nn_calloc((size_t)c->n_layers, sizeof *m->layers, err);
    NEED(m->layers);
    for (int i = 0; i < c->n_layers; i++) {
        nn_layer *L = &m->layers[i];
        if (load_norm(m, a->attn_norm, i, &L->attn_norm, err) ||
            load_norm(m, a->mlp_norm, i, &L->mlp_norm, err))
            return NN_ERR;
        if (a->fused_qkv) {
            if (load_fused_qkv(m, i, L, err))
                return NN_ERR;
        } else if (load_linear(m, a->q, i, d, qd, c->qkv_bias, &L->q, err) ||
                   load_linear(m, a->k, i, d, kvd, c->qkv_bias, &L->k, err) ||
                   load_linear(m, a->v, i, d, kvd, c->qkv_bias, &L->v, err)) {
            return NN_ERR;
        }
        if (load_linear(m, a->o, i, qd, d, c->o_bias, &L->o, err) ||
            load_linear(m, a->up, i, d, c->d_ff, c->mlp_bias, &L->up, err) ||
            load_linear(m, a->down, i, c->d_ff, d, c->mlp_bias, &L->down, err))
            return NN_ERR;
        if (a->gated_mlp && load_linear(m, a->gate, i, d, c->d_ff, c->mlp_bias, &L->gate, err))
            return NN_ERR;
    }
    return NN_OK;
}

/* generation_config.json, when present, has the last word on bos/eos. */
static int read_generation_config(const char *dir, nn_config *c, nn_err *err)
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

int nn_model_load_hf_dir(const char *dir, nn_model **out, nn_err *err)
{
    *out = NULL;
    nn_model *m = nn_calloc(1, sizeof *m, err);
    if (!m)
        return NN_ERR;
    char *config_path = NULL;
    int rc = NN_ERR;
    if (!(m->source = nn_strdup(dir, err)) ||
        !(config_path = nn_path_join(dir, "config.json", err)))
        goto done;
    if (nn_file_read(config_path, 4u << 20, &m->config_json, NULL, err) ||
        nn_config_from_hf(m->config_json, config_path, &m->cfg, err) ||
        read_generation_config(dir, &m->cfg, err) || nn_st_open_dir(dir, &m->archive, err) ||
        load_weights(m, err))
        goto done;
    rc = NN_OK;
done:
    nn_free(config_path);
    if (rc != NN_OK) {
        nn_model_free(m);
        return NN_ERR;
    }
    *out = m;
    return NN_OK;
}

/* ---- llama2.c checkpoints ---------------------------------------------------------------------
 */

/* A Llama row whose rotary embedding rotates adjacent pairs, as llama2.c's run.c does (its q/k rows
 * are not permuted into Hugging Face's half-split layout). */
static const nn_arch llama2c_arch = {
    .model_type = "llama2c",
    .family = "Llama (llama2.c checkpoint)",
    .norm = NN_NORM_RMSNORM,
    .pos = NN_POS_ROPE,
    .gated_mlp = true,
    .rope_interleaved = true,
    .notes = "standard pre-norm block; RoPE rotates adjacent pairs (llama2.c layout)",
    .prefix = "",
};

int nn_model_load_llama2c(const char *path, nn_model **out, nn_err *err)
{
    *out = NULL;
    nn_model *m = nn_calloc(1, sizeof *m, err);
    if (!m)
        return NN_ERR;
    int rc = NN_ERR;
    if (!(m->source = nn_strdup(path, err)) || nn_file_map(path, &m->bin, err))
        goto done;
    if (m->bin.size < 28) {
        nn_fail(err, "%s: %zu bytes is too short for a llama2.c header (28 bytes)", path,
                m->bin.size);
        goto done;
    }
    int32_t h[7];
    memcpy(h, m->bin.data, sizeof h);
    static const char *fields[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                    "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        long v = i == 5 ? labs((long)h[i]) : (long)h[i];
        if (v <= 0 || v > (1L << 24)) {
            nn_fail(err, "%s: header field '%s' = %d is out of range", path, fields[i], h[i]);
            goto done;
        }
    }
    nn_config *c = &m->cfg;
    c->arch = &llama2c_arch;
    c->d_model = h[0];
    c->d_ff = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->vocab_size = abs(h[5]);
    c->tie_embeddings = h[5] > 0;
    c->max_positions = h[6];
    if (c->d_model % c->n_heads || c->n_heads % c->n_kv_heads || (c->d_model / c->n_heads) % 2) {
        nn_fail(err, "%s: header: dim %d, n_heads %d, n_kv_heads %d do not divide evenly", path,
                c->d_model, c->n_heads, c->n_kv_heads);
        goto done;
    }
    c->head_dim = c->rotary_dim = c->d_model / c->n_heads;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0;
    c->act = NN_ACT_SILU;
    c->bos_token_id = 1;
    c->eos_token_id = 2;
    size_t d = (size_t)c->d_model, L = (size_t)c->n_layers, ff = (size_t)c->d_ff,
           V = (size_t)c->vocab_size, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim,
           hd = (size_t)c->head_dim, T = (size_t)c->max_positions;
    /* Sizes here are bounded by 2^24 each, so these products fit in 64 bits. */
    size_t need = V * d + L * d + L * d * d + 2 * L * kvd * d + L * d * d + L * d + 3 * L * ff * d +
                  d + T * hd; /* + freq_cis real and imag: T * hd/2 each */
    if (!c->tie_embeddings)
        need += V * d;
    size_t have = (m->bin.size - 28) / sizeof(float);
    if (have != need || (m->bin.size - 28) % sizeof(float)) {
        nn_fail(err,
                "%s: %zu bytes of weights, but the header (dim %zu, %zu layers, vocab %zu) "
                "needs %zu",
                path, m->bin.size - 28, d, L, V, need * sizeof(float));
        goto done;
    }
    const float *p = (const float *)(m->bin.data + 28);
    m->tok_emb = p;
    p += V * d;
    const float *rms_att = p;
    p += L * d;
    const float *wq = p;
    p += L * d * d;
    const float *wk = p;
    p += L * kvd * d;
    const float *wv = p;
    p += L * kvd * d;
    const float *wo = p;
    p += L * d * d;
    const float *rms_ffn = p;
    p += L * d;
    const float *w1 = p;
    p += L * ff * d;
    const float *w2 = p;
    p += L * d * ff;
    const float *w3 = p;
    p += L * ff * d;
    m->final_norm.w = p;
    p += d;
    p += T * hd; /* freq_cis_real, freq_cis_imag: recomputed instead */
    m->head = (nn_linear){
        .w = c->tie_embeddings ? m->tok_emb : p, .n_in = (int)d, .n_out = (int)V, .ld = d};
    if (!(m->layers = nn_calloc(L, sizeof *m->layers, err)))
        goto done;
    for (size_t i = 0; i < L; i++) {
        nn_layer *ly = &m->layers[i];
        ly->attn_norm.w = rms_att + i * d;
        ly->mlp_norm.w = rms_ffn + i * d;
        ly->q = (nn_linear){.w = wq + i * d * d, .n_in = (int)d, .n_out = (int)d, .ld = d};
        ly->k = (nn_linear){.w = wk + i * kvd * d, .n_in = (int)d, .n_out = (int)kvd, .ld = d};
        ly->v = (nn_linear){.w = wv + i * kvd * d, .n_in = (int)d, .n_out = (int)kvd, .ld = d};
        ly->o = (nn_linear){.w = wo + i * d * d, .n_in = (int)d, .n_out = (int)d, .ld = d};
        ly->gate = (nn_linear){.w = w1 + i * ff * d, .n_in = (int)d, .n_out = (int)ff, .ld = d};
        ly->down = (nn_linear){.w = w2 + i * d * ff, .n_in = (int)ff, .n_out = (int)d, .ld = ff};
        ly->up = (nn_linear){.w = w3 + i * ff * d, .n_in = (int)d, .n_out = (int)ff, .ld = d};
    }
    char json[512];
    snprintf(json, sizeof json,
             "{\"model_type\": \"llama2c\", \"dim\": %d, \"hidden_dim\": %d, \"n_layers\": %d, "
             "\"n_heads\": %d, \"n_kv_heads\": %d, \"vocab_size\": %d, \"seq_len\": %d}",
             h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    if (!(m->config_json = nn_strdup(json, err)))
        goto done;
    rc = NN_OK;
done:
    if (rc != NN_OK) {
        nn_model_free(m);
        return NN_ERR;
    }
    *out = m;
    return NN_OK;
}

int nn_model_load(const char *model, nn_model **out, nn_err *err)
{
    *out = NULL;
    char *path = nn_model_resolve(model, err);
    if (!path)
        return NN_ERR;
    int rc;
    if (nn_path_is_dir(path))
        rc = nn_model_load_hf_dir(path, out, err);
    else
        rc = nn_model_load_llama2c(path, out, err);
    nn_free(path);
    return rc;
}
