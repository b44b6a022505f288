#define _GNU_SOURCE
/* A model's lifecycle: resolving and loading it (a Hugging Face directory: config, then weights in
 * model_weights.c; a llama2.c file: model_llama2c.c), the layers a process holds, the bytes it
 * holds, its compute precision, and freeing it. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_internal.h"

/* ---- Loading and freeing -----------------------------------------------------------------------
 */

void nn_model_free(nn_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_owned; i++)
        nn_free(m->owned[i]);
    nn_free(m->owned);
    for (size_t i = 0; i < m->n_gemms; i++)
        nn_bf16_gemm_free(m->gemms[i]);
    nn_free(m->gemms);
    if (m->layers)
        for (int i = 0; i < m->cfg.n_layers; i++)
            nn_free(m->layers[i].experts);
    nn_free(m->layers);
    nn_st_close(&m->archive);
    nn_file_unmap(&m->bin);
    nn_free(m->source);
    nn_free(m->config_json);
    nn_free(m);
}

/* The layers a process holds: [begin, end) clamped to the model, or all when end < 0. */
static int set_layer_range(nn_model *m, int begin, int end, nn_err *err)
{
    int L = m->cfg.n_layers;
    if (end < 0) {
        begin = 0;
        end = L;
    }
    if (begin < 0 || end > L || begin >= end)
        return nn_fail(err, "%s: layer range [%d, %d) is outside the model's %d layers", m->source,
                       begin, end, L);
    m->layer_begin = begin;
    m->layer_end = end;
    m->last_stage = end == L;
    return NN_OK;
}

static int load_hf_dir(const char *dir, int begin, int end, bool headers_only, nn_model **out,
                       nn_err *err)
{
    *out = NULL;
    nn_model *m = nn_calloc(1, sizeof *m, err);
    if (!m)
        return NN_ERR;
    m->headers_only = headers_only;
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "float32 (OpenBLAS sgemm)");
    char *config_path = NULL;
    int rc = NN_ERR;
    if (!(m->source = nn_strdup(dir, err)) ||
        !(config_path = nn_path_join(dir, "config.json", err)))
        goto done;
    if (nn_file_read(config_path, 4u << 20, &m->config_json, NULL, err) ||
        nn_config_from_hf(m->config_json, config_path, &m->cfg, err) ||
        nn_read_generation_config(dir, &m->cfg, err) || set_layer_range(m, begin, end, err) ||
        nn_st_open_dir(dir, &m->archive, err) || nn_model_load_hf_weights(m, err))
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

int nn_model_load_hf_dir(const char *dir, nn_model **out, nn_err *err)
{
    return load_hf_dir(dir, 0, -1, false, out, err);
}

int nn_model_load(const char *model, nn_model **out, nn_err *err)
{
    return nn_model_load_layers(model, 0, -1, out, err);
}

static int load_model(const char *model, int layer_begin, int layer_end, bool headers_only,
                      nn_model **out, nn_err *err)
{
    *out = NULL;
    char *path = nn_model_resolve(model, err);
    if (!path)
        return NN_ERR;
    int rc;
    if (nn_path_is_dir(path))
        rc = load_hf_dir(path, layer_begin, layer_end, headers_only, out, err);
    else if ((rc = nn_model_load_llama2c(path, out, err)) == NN_OK &&
             (rc = set_layer_range(*out, layer_begin, layer_end, err)) != NN_OK) {
        /* llama2.c weights are views into the mapping: nothing to skip, only the range to set */
        nn_model_free(*out);
        *out = NULL;
    }
    nn_free(path);
    return rc;
}

int nn_model_load_layers(const char *model, int layer_begin, int layer_end, nn_model **out,
                         nn_err *err)
{
    return load_model(model, layer_begin, layer_end, false, out, err);
}

int nn_model_inspect(const char *model, nn_model **out, nn_err *err)
{
    return load_model(model, 0, -1, true, out, err);
}

int nn_model_config(const char *model, nn_config *cfg, nn_err *err)
{
    char *path = nn_model_resolve(model, err);
    if (!path)
        return NN_ERR;
    int rc;
    if (nn_path_is_dir(path)) {
        char *config_path = nn_path_join(path, "config.json", err), *text = NULL;
        rc = !config_path || nn_file_read(config_path, 4u << 20, &text, NULL, err) ||
                     nn_config_from_hf(text, config_path, cfg, err)
                 ? NN_ERR
                 : NN_OK;
        nn_free(text);
        nn_free(config_path);
    } else {
        nn_model *m = NULL; /* a llama2.c checkpoint maps without copying: loading it is cheap */
        rc = nn_model_load_llama2c(path, &m, err);
        if (rc == NN_OK)
            *cfg = m->cfg;
        nn_model_free(m);
    }
    nn_free(path);
    return rc;
}

/* ---- Stored sizes and compute precision --------------------------------------------------------
 */

size_t nn_linear_elem_size(const nn_linear *W)
{
    return W->dtype == NN_DT_F32 ? sizeof(float) : sizeof(uint16_t);
}

float nn_linear_at(const nn_linear *W, size_t i)
{
    switch (W->dtype) {
    case NN_DT_BF16:
        return nn_bf16_to_f32(W->w16[i]);
    case NN_DT_F16:
        return nn_f16_to_f32(W->w16[i]);
    default:
        return W->w[i];
    }
}

static size_t linear_bytes(const nn_linear *W)
{
    if (!W->w)
        return 0;
    return (size_t)W->n_in * (size_t)W->n_out * nn_linear_elem_size(W) +
           (W->b ? (size_t)W->n_out * sizeof(float) : 0) + nn_bf16_gemm_owned_bytes(W->mm);
}

/* The linears of layer L, experts included: calls fn on each present one. */
static int each_linear(nn_model *m, nn_layer *L, int (*fn)(nn_model *, nn_linear *, void *),
                       void *ctx)
{
    nn_linear *ws[] = {
        &L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &L->router, &L->shared_expert_gate};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (ws[i]->w && fn(m, ws[i], ctx) != NN_OK)
            return NN_ERR;
    for (int e = 0; L->moe && L->experts && e < m->cfg.n_experts; e++) {
        nn_expert *x = &L->experts[e];
        nn_linear *es[] = {&x->gate, &x->up, &x->down};
        for (int i = 0; i < 3; i++)
            if (es[i]->w && fn(m, es[i], ctx) != NN_OK)
                return NN_ERR;
    }
    return NN_OK;
}

static int add_bytes(nn_model *m, nn_linear *W, void *ctx)
{
    (void)m;
    *(size_t *)ctx += linear_bytes(W);
    return NN_OK;
}

size_t nn_model_layer_bytes(const nn_model *model, int l)
{
    nn_model *m = (nn_model *)model; /* each_linear only reads here */
    size_t bytes = 0;
    if (l < m->layer_begin || l >= m->layer_end || !m->layers)
        return 0;
    each_linear(m, &m->layers[l], add_bytes, &bytes);
    return bytes + 6 * (size_t)m->cfg.d_model * sizeof(float); /* norms, at most */
}

size_t nn_model_outer_bytes(const nn_model *m, bool embed, bool head)
{
    const nn_config *c = &m->cfg;
    size_t d = (size_t)c->d_model, emb_elem = m->tok_emb_dtype == NN_DT_F32 ? 4 : 2;
    size_t bytes = 0;
    if (embed) {
        bytes += (size_t)c->vocab_size * d * emb_elem;
        if (m->pos_emb)
            bytes += (size_t)(c->max_positions + c->arch->pos_offset) * d * sizeof(float);
    }
    if (head) {
        bool tied = m->head.w == m->tok_emb;
        if (!(tied && embed))
            bytes += linear_bytes(&m->head);
        else
            bytes += nn_bf16_gemm_owned_bytes(m->head.mm);
        bytes += 2 * d * sizeof(float);
    }
    return bytes;
}

typedef struct compute_ctx {
    nn_compute mode;
    int layer;
    nn_err *err;
} compute_ctx;

static int keep_gemm(nn_model *m, nn_bf16_gemm *g, nn_err *err)
{
    nn_bf16_gemm **grown = nn_realloc(m->gemms, (m->n_gemms + 1) * sizeof *grown, err);
    if (!grown) {
        nn_bf16_gemm_free(g);
        return NN_ERR;
    }
    m->gemms = grown;
    m->gemms[m->n_gemms++] = g;
    return NN_OK;
}

static int x3_weights_ok(nn_model *m, nn_linear *W, void *ctx)
{
    compute_ctx *cc = ctx;
    bool router = cc->layer >= 0 && (W == &m->layers[cc->layer].router ||
                                     W == &m->layers[cc->layer].shared_expert_gate);
    if (W->dtype == NN_DT_BF16 || router)
        return NN_OK;
    nn_err *err = cc->err;
    if (cc->layer >= 0)
        return nn_fail(err,
                       "%s: compute bfloat16x3 needs BF16 weights (exact in bfloat16), and layer "
                       "%d holds a [%d, %d] matrix in %s: use compute bfloat16 or float32",
                       m->source, cc->layer, W->n_out, W->n_in, nn_dtype_name(W->dtype));
    return nn_fail(err,
                   "%s: compute bfloat16x3 needs BF16 weights (exact in bfloat16), and the head "
                   "is %s: use compute bfloat16 or float32",
                   m->source, nn_dtype_name(W->dtype));
}

/* The mapped pages wholly inside the span of a matrix the bfloat16 kernel now holds a copy of
 * leave this process's resident set (nn_file_release; a later read maps them back, as float32
 * mode, an embedding lookup of a tied head, or the packing of a fused matrix's next slice, whose
 * rows interleave with this one's, does): a stage's memory stays about its checkpoint bytes. */
static void release_source(const nn_model *m, const nn_linear *W)
{
    size_t outer = (size_t)(W->in_major ? W->n_in : W->n_out);
    size_t inner = (size_t)(W->in_major ? W->n_out : W->n_in);
    size_t bytes = ((outer - 1) * W->ld + inner) * nn_dtype_size(W->dtype);
    const uint8_t *p = (const uint8_t *)W->w;
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; page > 0 && i < m->archive.n_files; i++) {
        const nn_mapped_file *f = &m->archive.files[i];
        if (!f->data || p < f->data || p + bytes > f->data + f->size)
            continue;
        size_t off = (size_t)(p - f->data), pg = (size_t)page;
        size_t begin = (off + pg - 1) / pg * pg, end = (off + bytes) / pg * pg;
        if (end > begin)
            nn_file_release(f, begin, end - begin);
        return;
    }
}

static int make_gemm(nn_model *m, nn_linear *W, void *ctx)
{
    compute_ctx *cc = ctx;
    if (cc->layer >= 0 &&
        (W == &m->layers[cc->layer].router || W == &m->layers[cc->layer].shared_expert_gate))
        return NN_OK; /* routers stay float32 (load_linear_f32) */
    nn_err *err = cc->err;
    nn_bf16_gemm *g = NULL;
    if (nn_bf16_gemm_create(W->w, W->b, W->dtype, W->n_in, W->n_out, W->ld, W->in_major, cc->mode,
                            &g, err) != NN_OK) {
        nn_err_prefix(err, "%s", m->source);
        return NN_ERR;
    }
    if (!g)
        return NN_OK; /* not on AMX at this shape: float32 */
    if (keep_gemm(m, g, err) != NN_OK)
        return NN_ERR;
    W->mm = g;
    if (nn_bf16_gemm_owned_bytes(g) > 0)
        release_source(m, W);
    return NN_OK;
}

static int clear_gemm(nn_model *m, nn_linear *W, void *ctx)
{
    (void)m;
    (void)ctx;
    W->mm = NULL;
    return NN_OK;
}

int nn_model_set_compute(nn_model *m, nn_compute mode, nn_err *err)
{
    if (m->headers_only)
        return nn_fail(err, "%s: loaded for inspection only", m->source);
    for (int l = m->layer_begin; m->layers && l < m->layer_end; l++)
        each_linear(m, &m->layers[l], clear_gemm, NULL);
    m->head.mm = NULL;
    for (size_t i = 0; i < m->n_gemms; i++)
        nn_bf16_gemm_free(m->gemms[i]);
    nn_free(m->gemms);
    m->gemms = NULL;
    m->n_gemms = 0;
    m->compute = mode;
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "float32 (OpenBLAS sgemm)");
    if (mode == NN_COMPUTE_F32)
        return NN_OK;
    if (!nn_bf16_compiled())
        return nn_fail(err,
                       "compute %s needs oneDNN or an x86-64 build, and this nnterp has neither "
                       "(install libdnnl-dev and reconfigure)",
                       nn_compute_name(mode));
    compute_ctx cc = {.mode = mode, .err = err};
    if (mode == NN_COMPUTE_BF16X3) {
        for (int l = m->layer_begin; m->layers && l < m->layer_end; l++) {
            cc.layer = l;
            if (each_linear(m, &m->layers[l], x3_weights_ok, &cc) != NN_OK)
                return NN_ERR;
        }
        cc.layer = -1;
        if (x3_weights_ok(m, &m->head, &cc) != NN_OK)
            return NN_ERR;
    }
    char desc[sizeof m->compute_kernel];
    if (nn_bf16_kernel_for(mode, desc, sizeof desc) == NN_BF16_KERNEL_NONE) {
        snprintf(m->compute_kernel, sizeof m->compute_kernel, "%s", desc);
        return NN_OK;
    }
    for (int l = m->layer_begin; m->layers && l < m->layer_end; l++) {
        cc.layer = l;
        if (each_linear(m, &m->layers[l], make_gemm, &cc) != NN_OK)
            return NN_ERR;
    }
    cc.layer = -1;
    /* The head on every stage: any stage may unembed (the logit lens of its layers), and a
     * row's result must not depend on which stage computed it. A F32/F16 head gets a bfloat16
     * copy on each stage (half the bytes of a F32 head); a BF16 head is used in place. */
    if (make_gemm(m, &m->head, &cc) != NN_OK)
        return NN_ERR;
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "%s", desc);
    return NN_OK;
}
