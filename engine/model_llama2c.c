#define _GNU_SOURCE
/* llama2.c checkpoints (run.c's format): a 28-byte header of seven int32 and the float32
 * tables, used in place from the mapping. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* a * b * c added to *acc; false when it overflows. */
static bool add_product(size_t *acc, size_t a, size_t b, size_t c)
{
    size_t p;
    if (!nn_mul_size(a, b, &p) || !nn_mul_size(p, c, &p) || p > SIZE_MAX - *acc)
        return false;
    *acc += p;
    return true;
}

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
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "float32 (OpenBLAS sgemm)");
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
    /* Floats the header declares (each size is below 2^24, but products of three are not below
     * 2^64: checked). freq_cis real and imag: T * hd/2 each. */
    size_t need = 0;
    bool fits = add_product(&need, V, d, c->tie_embeddings ? 1 : 2) &&
                add_product(&need, 2 * L, d, 1) && add_product(&need, 2 * L, d, d) &&
                add_product(&need, 2 * L, kvd, d) && add_product(&need, 3 * L, ff, d) &&
                add_product(&need, d, 1, 1) && add_product(&need, T, hd, 1) &&
                need <= SIZE_MAX / sizeof(float);
    size_t have = (m->bin.size - 28) / sizeof(float);
    if (!fits || have != need || (m->bin.size - 28) % sizeof(float)) {
        char needs[32] = "more than 2^64";
        if (fits)
            snprintf(needs, sizeof needs, "%zu", need * sizeof(float));
        nn_fail(err,
                "%s: %zu bytes of weights, but the header (dim %zu, %zu layers, vocab %zu) "
                "needs %s",
                path, m->bin.size - 28, d, L, V, needs);
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
    if (nn_check_weights() ==
        NN_CHECK_ALL) { /* the tables are mapped F32: scanned on request only */
        /* run.c's names for the tables; per-layer ones name the layer too */
        const struct {
            const char *name;
            const float *w;
            size_t per_layer, n;
        } tables[] = {{"token_embedding_table", m->tok_emb, 0, V * d},
                      {"rms_att_weight", rms_att, d, L * d},
                      {"wq", wq, d * d, L * d * d},
                      {"wk", wk, kvd * d, L * kvd * d},
                      {"wv", wv, kvd * d, L * kvd * d},
                      {"wo", wo, d * d, L * d * d},
                      {"rms_ffn_weight", rms_ffn, d, L * d},
                      {"w1", w1, ff * d, L * ff * d},
                      {"w2", w2, d * ff, L * d * ff},
                      {"w3", w3, ff * d, L * ff * d},
                      {"rms_final_weight", m->final_norm.w, 0, d},
                      {"wcls", c->tie_embeddings ? NULL : p, 0, V * d}};
        for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
            size_t bad = tables[i].w ? nn_first_non_finite(tables[i].w, tables[i].n) : tables[i].n;
            if (bad == tables[i].n)
                continue;
            char layer[48] = "";
            if (tables[i].per_layer)
                snprintf(layer, sizeof layer, " (layer %zu)", bad / tables[i].per_layer);
            nn_fail(err,
                    "%s: weights '%s'%s hold %s at element %zu; refusing to load them "
                    "(NNTERP_CHECK_WEIGHTS=0 skips this check)",
                    path, tables[i].name, layer, isnan(tables[i].w[bad]) ? "NaN" : "infinity",
                    tables[i].per_layer ? bad % tables[i].per_layer : bad);
            goto done;
        }
    }
    m->layer_begin = 0;
    m->layer_end = (int)L;
    m->last_stage = true;
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
