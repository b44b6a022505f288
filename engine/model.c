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

/* ---- Weights -----------------------------------------------------------------------------------
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

/* A buffer of n elements of elem bytes owned by the model (freed with it). */
static void *owned_elems(nn_model *m, size_t n, size_t elem, nn_err *err)
{
    float *buf = nn_malloc((n ? n : 1) * elem, err);
    if (!buf || keep_owned(m, buf, err) != NN_OK)
        return NULL;
    return buf;
}

/* A float32 buffer owned by the model (freed with it). */
static float *owned_floats(nn_model *m, size_t n, nn_err *err)
{
    return owned_elems(m, n, sizeof(float), err);
}

/* Which weights are scanned for NaN and infinity at load (NNTERP_CHECK_WEIGHTS):
 * unset: the tensors converted at load (F16/BF16, misaligned), whose bytes are read anyway;
 * "1": every tensor, memory-mapped F32 too — a pass over the whole file, which breaks the promise
 *      that a process touches only what it computes with (a pipeline stage would read every
 *      layer; a large checkpoint would be read whole at start-up), hence opt-in;
 * "0": none. */
enum { CHECK_NONE, CHECK_CONVERTED, CHECK_ALL };

static int check_weights(void)
{
    const char *e = getenv("NNTERP_CHECK_WEIGHTS");
    if (!e)
        return CHECK_CONVERTED;
    return strcmp(e, "0") == 0 ? CHECK_NONE : CHECK_ALL;
}

/* The index of the first NaN or infinity in x[n] (exponent bits all ones), or n when none. */
static size_t first_non_finite(const float *x, size_t n)
{
    const size_t block = 16384;
    for (size_t i = 0; i < n; i += block) {
        size_t end = n - i < block ? n : i + block;
        uint32_t bad = 0;
        for (size_t k = i; k < end; k++) {
            uint32_t u;
            memcpy(&u, &x[k], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            for (size_t k = i; k < end; k++)
                if (!isfinite(x[k]))
                    return k;
    }
    return n;
}

static int non_finite_error(const nn_model *m, const nn_st_tensor *t, bool nan, size_t at,
                            nn_err *err)
{
    return nn_fail(err,
                   "%s: tensor '%s' holds %s at element %zu; refusing to load it "
                   "(NNTERP_CHECK_WEIGHTS=0 skips this check)",
                   nn_st_file_of(&m->archive, t), t->name, nan ? "NaN" : "infinity", at);
}

/* The float32 data of a tensor (norms, biases, positions; every tensor of a llama2.c file): the
 * mapped bytes themselves when they are aligned F32 (so a process touches only the pages it
 * computes with), else a converted copy owned by the model. */
static const float *tensor_f32(nn_model *m, const nn_st_tensor *t, nn_err *err)
{
    const float *w;
    bool mapped = t->dtype == NN_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0;
    if (m->headers_only && check_weights() < CHECK_ALL) {
        if (t->dtype != NN_DT_F32 && t->dtype != NN_DT_F16 && t->dtype != NN_DT_BF16) {
            nn_fail(err, "%s: tensor '%s': dtype %s cannot be used as weights (F32, F16 or BF16)",
                    nn_st_file_of(&m->archive, t), t->name, nn_dtype_name(t->dtype));
            return NULL;
        }
        return (const float *)t->data; /* never read: the model cannot run */
    }
    if (mapped) {
        w = (const float *)t->data;
    } else {
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
        w = buf;
    }
    size_t bad;
    if (check_weights() > (mapped ? CHECK_CONVERTED : CHECK_NONE) &&
        (bad = first_non_finite(w, t->numel)) < t->numel) {
        non_finite_error(m, t, isnan(w[bad]), bad, err);
        return NULL;
    }
    return w;
}

/* The index of the first NaN or infinity of n F16 or BF16 elements (exponent bits all ones). */
static size_t first_non_finite_half(const uint16_t *x, size_t n, nn_dtype dt, bool *nan)
{
    uint16_t exp = dt == NN_DT_BF16 ? 0x7f80 : 0x7c00, mant = dt == NN_DT_BF16 ? 0x007f : 0x03ff;
    const size_t block = 16384;
    for (size_t i = 0; i < n; i += block) {
        size_t end = n - i < block ? n : i + block;
        uint32_t bad = 0;
        for (size_t k = i; k < end; k++)
            bad |= (x[k] & exp) == exp;
        if (bad)
            for (size_t k = i; k < end; k++)
                if ((x[k] & exp) == exp) {
                    *nan = (x[k] & mant) != 0;
                    return k;
                }
    }
    return n;
}

/* A matrix or embedding in its stored dtype: the mapped bytes when aligned, else a copy owned by
 * the model (same dtype). F16/BF16 data is scanned for NaN and infinity unless
 * NNTERP_CHECK_WEIGHTS=0 (the process reads these bytes to compute anyway: only the layers it
 * runs are loaded); mapped F32 only with NNTERP_CHECK_WEIGHTS=1, as before. */
static const void *tensor_stored(nn_model *m, const nn_st_tensor *t, nn_dtype *dtype, nn_err *err)
{
    if (t->dtype != NN_DT_F16 && t->dtype != NN_DT_BF16) {
        *dtype = NN_DT_F32;
        return tensor_f32(m, t, err);
    }
    *dtype = t->dtype;
    if (m->headers_only && check_weights() < CHECK_ALL)
        return t->data; /* never read */
    const uint16_t *w = (const uint16_t *)t->data;
    if ((uintptr_t)t->data % sizeof(uint16_t)) {
        uint16_t *copy = owned_elems(m, t->numel, sizeof(uint16_t), err);
        if (!copy)
            return NULL;
        memcpy(copy, t->data, t->numel * sizeof(uint16_t));
        w = copy;
    }
    size_t bad;
    bool nan = false;
    if (check_weights() > CHECK_NONE &&
        (bad = first_non_finite_half(w, t->numel, t->dtype, &nan)) < t->numel) {
        non_finite_error(m, t, nan, bad, err);
        return NULL;
    }
    return w;
}

/* a * b * c added to *acc; false when it overflows. */
static bool add_product(size_t *acc, size_t a, size_t b, size_t c)
{
    size_t p;
    if (!nn_mul_size(a, b, &p) || !nn_mul_size(p, c, &p) || p > SIZE_MAX - *acc)
        return false;
    *acc += p;
    return true;
}

/* Looks up "<prefix><name>.<suffix>" (also without the prefix; no ".<suffix>" when suffix is
 * empty), where name is name_fmt with the layer (and expert) filled in; name_fmt may list
 * alternatives "a|b", tried in order. The name found (or the first tried) is left in full. */
static const nn_st_tensor *lookup_tensor(nn_model *m, const char *name_fmt, int layer, int expert,
                                         const char *suffix, bool required, char *full,
                                         size_t full_size, nn_err *err)
{
    char alt[512], name[512], first[512] = "";
    const nn_arch *a = m->cfg.arch;
    const nn_st_tensor *t = NULL;
    const char *dot = *suffix ? "." : "";
    for (const char *p = name_fmt; p && !t;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len >= sizeof alt)
            len = sizeof alt - 1;
        memcpy(alt, p, len);
        alt[len] = '\0';
        p = bar ? bar + 1 : NULL;
        snprintf(name, sizeof name, alt, layer, expert);
        if (!first[0])
            snprintf(first, sizeof first, "%s", name);
        snprintf(full, full_size, "%s%s%s%s", a->prefix, name, dot, suffix);
        t = nn_st_find(&m->archive, full);
        if (!t && *a->prefix) {
            snprintf(full, full_size, "%s%s%s", name, dot, suffix);
            t = nn_st_find(&m->archive, full);
        }
    }
    if (!t) {
        if (required)
            nn_fail(err, "%s: tensor '%s%s%s%s' is missing from the checkpoint", m->source,
                    a->prefix, first, dot, suffix);
        else
            err->msg[0] = '\0';
    }
    return t;
}

/* lookup_tensor, and the tensor's shape checked: [d0] (d1 = 0) or [d0, d1]. */
static const nn_st_tensor *find_tensor(nn_model *m, const char *name_fmt, int layer, int expert,
                                       const char *suffix, int d0, int d1, bool required,
                                       nn_err *err)
{
    char full[600];
    const nn_st_tensor *t =
        lookup_tensor(m, name_fmt, layer, expert, suffix, required, full, sizeof full, err);
    if (!t)
        return NULL;
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
    return t;
}

/* A tensor found as find_tensor says, as float32 (norms, biases, small vectors). */
static const float *load_tensor(nn_model *m, const char *name_fmt, int layer, int expert,
                                const char *suffix, int d0, int d1, bool required, nn_err *err)
{
    const nn_st_tensor *t = find_tensor(m, name_fmt, layer, expert, suffix, d0, d1, required, err);
    return t ? tensor_f32(m, t, err) : NULL;
}

/* A matrix or embedding [d0, d1] in its stored dtype. */
static const void *load_stored(nn_model *m, const char *name_fmt, int layer, int expert, int d0,
                               int d1, nn_dtype *dtype, nn_err *err)
{
    const nn_st_tensor *t = find_tensor(m, name_fmt, layer, expert, "weight", d0, d1, true, err);
    return t ? tensor_stored(m, t, dtype, err) : NULL;
}

#define NEED(ptr)                                                                                  \
    do {                                                                                           \
        if (!(ptr))                                                                                \
            return NN_ERR;                                                                         \
    } while (0)

static int load_norm(nn_model *m, const char *fmt, int layer, nn_norm *out, nn_err *err)
{
    int d = m->cfg.d_model;
    out->w = out->b = NULL;
    if (m->cfg.arch->norm_no_weight)
        return NN_OK;
    NEED(out->w = load_tensor(m, fmt, layer, 0, "weight", d, 0, true, err));
    if (m->cfg.arch->norm_bias)
        NEED(out->b = load_tensor(m, fmt, layer, 0, "bias", d, 0, true, err));
    return NN_OK;
}

/* A linear layer stored as its own tensor ([out, in], or [in, out] when in_major). */
static int load_linear_as(nn_model *m, const char *fmt, int layer, int expert, int n_in, int n_out,
                          bool bias, bool in_major, nn_linear *out, nn_err *err)
{
    out->n_in = n_in;
    out->n_out = n_out;
    out->in_major = in_major;
    out->ld = (size_t)(in_major ? n_out : n_in);
    out->mm = NULL;
    NEED(out->w = load_stored(m, fmt, layer, expert, in_major ? n_in : n_out,
                              in_major ? n_out : n_in, &out->dtype, err));
    out->b = NULL;
    if (bias)
        NEED(out->b = load_tensor(m, fmt, layer, expert, "bias", n_out, 0, true, err));
    return NN_OK;
}

static int load_linear(nn_model *m, const char *fmt, int layer, int n_in, int n_out, bool bias,
                       nn_linear *out, nn_err *err)
{
    return load_linear_as(m, fmt, layer, 0, n_in, n_out, bias, m->cfg.arch->linear_in_major, out,
                          err);
}

/* A small matrix kept as a float32 copy whatever its stored dtype (routers: [n_experts, d], whose
 * top-k choice is discrete; a few hundred KB). */
static int load_linear_f32(nn_model *m, const char *fmt, int layer, int n_in, int n_out, bool bias,
                           nn_linear *out, nn_err *err)
{
    if (load_linear(m, fmt, layer, n_in, n_out, bias, out, err))
        return NN_ERR;
    if (out->dtype == NN_DT_F32 || m->headers_only)
        return NN_OK;
    size_t n = (size_t)n_in * (size_t)n_out;
    float *w = owned_floats(m, n, err);
    if (!w)
        return NN_ERR;
    for (size_t i = 0; i < n; i++)
        w[i] = nn_linear_at(out, i);
    out->w = w;
    out->dtype = NN_DT_F32;
    return NN_OK;
}

/* Consecutive row (or, in_major, column) blocks of one fused projection as views. */
static void split_rows(const nn_linear *fused, nn_linear **parts, const int *widths, int n)
{
    int start = 0;
    for (int i = 0; i < n; i++) {
        *parts[i] = *fused;
        parts[i]->n_out = widths[i];
        /* in_major [in][out]: a column block; out-major [out][in]: a row block */
        size_t at = fused->in_major ? (size_t)start : (size_t)start * fused->ld;
        if (fused->dtype == NN_DT_F32)
            parts[i]->w = fused->w + at;
        else
            parts[i]->w16 = fused->w16 + at;
        parts[i]->b = fused->b ? fused->b + start : NULL;
        start += widths[i];
    }
}

/* q, k, v of one fused projection. [q|k|v] blocks are views; the interleaved layouts (per head,
 * per kv group) are copied once into [q|k|v] order so the forward pass sees one layout. */
static int load_fused_qkv(nn_model *m, int layer, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    int H = c->n_heads, G = c->n_kv_heads, E = c->head_dim, d = c->d_model;
    int qd = H * E, kvd = G * E, total = qd + 2 * kvd;
    nn_linear fused;
    if (load_linear(m, c->arch->qkv, layer, d, total, c->qkv_bias, &fused, err))
        return NN_ERR;
    if (c->qkv_layout != NN_QKV_BLOCKS) {
        size_t es = nn_linear_elem_size(&fused);
        uint8_t *w = owned_elems(m, (size_t)total * (size_t)d, es, err);
        float *b = fused.b ? owned_floats(m, (size_t)total, err) : NULL;
        if (!w || (fused.b && !b))
            return NN_ERR;
        int per = c->qkv_layout == NN_QKV_PER_HEAD ? 3 : H / G + 2; /* heads in a source group */
        int groups = c->qkv_layout == NN_QKV_PER_HEAD ? H : G;
        for (int g = 0; g < groups; g++)
            for (int j = 0; j < per; j++) {
                int dst; /* destination head block */
                if (c->qkv_layout == NN_QKV_PER_HEAD)
                    dst = j == 0 ? g * E : j == 1 ? qd + g * E : qd + kvd + g * E;
                else
                    dst = j < per - 2    ? (g * (per - 2) + j) * E
                          : j == per - 2 ? qd + g * E
                                         : qd + kvd + g * E;
                size_t src = ((size_t)g * per + (size_t)j) * (size_t)E;
                memcpy(w + (size_t)dst * d * es, (const uint8_t *)fused.w + src * fused.ld * es,
                       (size_t)E * (size_t)d * es);
                if (b)
                    memcpy(b + dst, fused.b + src, (size_t)E * sizeof(float));
            }
        fused.w = (const float *)(const void *)w; /* of fused.dtype */
        fused.b = b;
        fused.ld = (size_t)d;
    }
    nn_linear *parts[3] = {&L->q, &L->k, &L->v};
    int widths[3] = {qd, kvd, kvd};
    split_rows(&fused, parts, widths, 3);
    return NN_OK;
}

/* A dense MLP: up and down, and gate when the family gates (or a fused [gate|up]). */
static int load_dense_mlp(nn_model *m, int i, const char *gate, const char *up, const char *gate_up,
                          const char *down, int F, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    int d = c->d_model;
    if (gate_up) {
        nn_linear fused;
        if (load_linear(m, gate_up, i, d, 2 * F, c->mlp_bias, &fused, err))
            return NN_ERR;
        nn_linear *parts[2] = {&L->gate, &L->up};
        int widths[2] = {F, F};
        split_rows(&fused, parts, widths, 2);
    } else if (load_linear(m, up, i, d, F, c->mlp_bias, &L->up, err) ||
               (c->arch->gated_mlp && load_linear(m, gate, i, d, F, c->mlp_bias, &L->gate, err))) {
        return NN_ERR;
    }
    return load_linear(m, down, i, F, d, c->mlp_bias, &L->down, err);
}

/* A stacked tensor [X, d1] or [X, d1, d2] (d2 > 0) under its full name (no suffix), as float32. */
static const float *load_stack(nn_model *m, const char *fmt, int layer, int X, int d1, int d2,
                               nn_err *err)
{
    char full[600];
    const nn_st_tensor *t = lookup_tensor(m, fmt, layer, 0, "", true, full, sizeof full, err);
    if (!t)
        return NULL;
    int dims = d2 > 0 ? 3 : 2;
    if (t->n_dims != dims || t->shape[0] != X || t->shape[1] != d1 ||
        (dims == 3 && t->shape[2] != d2)) {
        if (dims == 3)
            nn_fail(err, "%s: tensor '%s' must have shape [%d, %d, %d]",
                    nn_st_file_of(&m->archive, t), full, X, d1, d2);
        else
            nn_fail(err, "%s: tensor '%s' must have shape [%d, %d]", nn_st_file_of(&m->archive, t),
                    full, X, d1);
        return NULL;
    }
    return tensor_f32(m, t, err);
}

/* gpt-oss's MXFP4 expert stacks (quantization_config quant_method "mxfp4", as OpenAI released
 * the checkpoints): "<name>_blocks" [X, n_out, n_in/32, 16] U8 holds two e2m1 values a byte (low
 * nibble first) and "<name>_scales" [X, n_out, n_in/32] U8 one power of two (exponent + 127) per
 * 32 inputs. Dequantized exactly into float32 and transposed to the in-major stack [X, n_in,
 * n_out], as transformers' convert_moe_packed_tensors does. NULL with no error when the checkpoint
 * has no "<name>_blocks" (a dequantized copy). */
static const float *load_mxfp4_stack(nn_model *m, const char *fmt, int layer, int X, int n_in,
                                     int n_out, nn_err *err)
{
    static const float e2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                   -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
    char bname[300], sname[300], bfull[600], sfull[600];
    snprintf(bname, sizeof bname, "%s_blocks", fmt);
    snprintf(sname, sizeof sname, "%s_scales", fmt);
    const nn_st_tensor *b = lookup_tensor(m, bname, layer, 0, "", false, bfull, sizeof bfull, err);
    if (!b)
        return NULL;
    const nn_st_tensor *sc = lookup_tensor(m, sname, layer, 0, "", true, sfull, sizeof sfull, err);
    if (!sc)
        return NULL;
    int G = n_in / 32;
    if (n_in % 32 || b->dtype != NN_DT_U8 || b->n_dims != 4 || b->shape[0] != X ||
        b->shape[1] != n_out || b->shape[2] != G || b->shape[3] != 16) {
        nn_fail(err, "%s: MXFP4 tensor '%s' must be U8 of shape [%d, %d, %d, 16]",
                nn_st_file_of(&m->archive, b), bfull, X, n_out, G);
        return NULL;
    }
    if (sc->dtype != NN_DT_U8 || sc->n_dims != 3 || sc->shape[0] != X || sc->shape[1] != n_out ||
        sc->shape[2] != G) {
        nn_fail(err, "%s: MXFP4 tensor '%s' must be U8 of shape [%d, %d, %d]",
                nn_st_file_of(&m->archive, sc), sfull, X, n_out, G);
        return NULL;
    }
    size_t per = (size_t)n_in * (size_t)n_out;
    float *w = owned_floats(m, (size_t)X * per, err);
    if (!w)
        return NULL;
    const uint8_t *blocks = (const uint8_t *)b->data, *scales = (const uint8_t *)sc->data;
    for (size_t e = 0; e < (size_t)X; e++)
        for (size_t r = 0; r < (size_t)n_out; r++)
            for (size_t g = 0; g < (size_t)G; g++) {
                size_t row = (e * (size_t)n_out + r) * (size_t)G + g;
                int exponent = (int)scales[row] - 127;
                for (size_t j = 0; j < 16; j++) {
                    uint8_t byte = blocks[row * 16 + j];
                    size_t in = g * 32 + 2 * j;
                    w[e * per + in * (size_t)n_out + r] = ldexpf(e2m1[byte & 15], exponent);
                    w[e * per + (in + 1) * (size_t)n_out + r] = ldexpf(e2m1[byte >> 4], exponent);
                }
            }
    size_t bad = first_non_finite(w, (size_t)X * per);
    if (bad < (size_t)X * per) {
        nn_fail(err, "%s: MXFP4 tensor '%s' dequantizes to infinity at element %zu (scale 255)",
                nn_st_file_of(&m->archive, sc), sfull, bad);
        return NULL;
    }
    return w;
}

/* Experts stored stacked, one tensor per layer for all of them (gpt-oss): gate_up [X, d, 2F] and
 * down [X, F, d], in-major, with biases "<name>_bias" [X, 2F] and [X, d]. Each expert's
 * matrices are views into the stacks. */
static int load_expert_stacks(nn_model *m, int i, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int X = c->n_experts, d = c->d_model, F = c->moe_d_ff;
    char gub_name[256], dnb_name[256];
    snprintf(gub_name, sizeof gub_name, "%s_bias", a->expert_gate_up_stack);
    snprintf(dnb_name, sizeof dnb_name, "%s_bias", a->expert_down_stack);
    const float *gu = NULL, *gub, *dn = NULL, *dnb;
    err->msg[0] = '\0';
    if (c->experts_mxfp4) {
        if (!(gu = load_mxfp4_stack(m, a->expert_gate_up_stack, i, X, d, 2 * F, err)) &&
            err->msg[0])
            return NN_ERR;
        if (!(dn = load_mxfp4_stack(m, a->expert_down_stack, i, X, F, d, err)) && err->msg[0])
            return NN_ERR;
    }
    if (!gu)
        NEED(gu = load_stack(m, a->expert_gate_up_stack, i, X, d, 2 * F, err));
    if (!dn)
        NEED(dn = load_stack(m, a->expert_down_stack, i, X, F, d, err));
    NEED(gub = load_stack(m, gub_name, i, X, 2 * F, 0, err));
    NEED(dnb = load_stack(m, dnb_name, i, X, d, 0, err));
    for (int e = 0; e < X; e++) {
        nn_expert *x = &L->experts[e];
        size_t E = (size_t)e;
        x->gate_up = (nn_linear){.w = gu + E * (size_t)d * 2 * (size_t)F,
                                 .b = gub + E * 2 * (size_t)F,
                                 .n_in = d,
                                 .n_out = 2 * F,
                                 .ld = 2 * (size_t)F,
                                 .in_major = true};
        x->down = (nn_linear){.w = dn + E * (size_t)F * (size_t)d,
                              .b = dnb + E * (size_t)d,
                              .n_in = F,
                              .n_out = d,
                              .ld = (size_t)d,
                              .in_major = true};
    }
    return NN_OK;
}

/* Multi-head latent attention's projections and latent norms (DeepSeek; attention_mla.h). */
static int load_mla(nn_model *m, int i, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int d = c->d_model, H = c->n_heads, E = c->head_dim, dn = E - c->qk_rope_dim,
        dv = c->v_head_dim, R = c->kv_lora_rank, Rq = c->q_lora_rank;
    /* DeepseekV3Attention: attention_bias puts biases on q_a, kv_a and o only */
    if (Rq > 0) {
        if (load_linear(m, a->q_a, i, d, Rq, c->qkv_bias, &L->q_a, err) ||
            load_linear(m, a->q_b, i, Rq, H * E, false, &L->q_b, err))
            return NN_ERR;
        NEED(L->q_a_norm.w = load_tensor(m, a->q_a_norm, i, 0, "weight", Rq, 0, true, err));
    } else if (load_linear(m, a->q, i, d, H * E, false, &L->q, err)) {
        return NN_ERR;
    }
    if (load_linear(m, a->kv_a, i, d, R + c->qk_rope_dim, c->qkv_bias, &L->kv_a, err) ||
        load_linear(m, a->kv_b, i, R, H * (dn + dv), false, &L->kv_b, err))
        return NN_ERR;
    NEED(L->kv_a_norm.w = load_tensor(m, a->kv_a_norm, i, 0, "weight", R, 0, true, err));
    return NN_OK;
}

static int load_moe(nn_model *m, int i, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int d = c->d_model, E = c->n_experts, F = c->moe_d_ff;
    bool in_major = a->linear_in_major;
    L->moe = true;
    if (load_linear_f32(m, a->router, i, d, E, a->router_bias, &L->router, err))
        return NN_ERR;
    if (a->router_score_bias)
        NEED(L->router_score_bias =
                 load_tensor(m, a->router_score_bias, i, 0, "", E, 0, true, err));
    NEED(L->experts = nn_calloc((size_t)E, sizeof *L->experts, err));
    if (a->expert_gate_up_stack && load_expert_stacks(m, i, L, err))
        return NN_ERR;
    for (int e = 0; e < E && !a->expert_gate_up_stack; e++) {
        nn_expert *x = &L->experts[e];
        if (load_linear_as(m, a->expert_gate, i, e, d, F, false, in_major, &x->gate, err) ||
            load_linear_as(m, a->expert_up, i, e, d, F, false, in_major, &x->up, err) ||
            load_linear_as(m, a->expert_down, i, e, F, d, false, in_major, &x->down, err))
            return NN_ERR;
    }
    if (c->shared_d_ff > 0 &&
        (load_dense_mlp(m, i, a->shared_gate, a->shared_up, NULL, a->shared_down, c->shared_d_ff, L,
                        err) ||
         (a->shared_expert_gate &&
          load_linear_f32(m, a->shared_expert_gate, i, d, 1, false, &L->shared_expert_gate, err))))
        return NN_ERR;
    return NN_OK;
}

/* ---- q/k norms (Qwen3, Gemma 3, OLMo 2): weights of head_dim, or of the whole projection ---- */
static int load_qk_norms(nn_model *m, int layer, nn_layer *L, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int E = c->head_dim;
    int wq = a->qk_norm_whole ? c->n_heads * E : E, wk = a->qk_norm_whole ? c->n_kv_heads * E : E;
    L->q_norm.b = L->k_norm.b = NULL;
    NEED(L->q_norm.w = load_tensor(m, a->q_norm, layer, 0, "weight", wq, 0, true, err));
    NEED(L->k_norm.w = load_tensor(m, a->k_norm, layer, 0, "weight", wk, 0, true, err));
    return NN_OK;
}

static int load_weights(nn_model *m, nn_err *err)
{
    const nn_config *c = &m->cfg;
    const nn_arch *a = c->arch;
    int d = c->d_model, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    NEED(m->tok_emb = load_stored(m, a->tok_emb, 0, 0, c->vocab_size, d, &m->tok_emb_dtype, err));
    if (a->pos == NN_POS_LEARNED)
        NEED(m->pos_emb = load_tensor(m, a->pos_emb, 0, 0, "weight",
                                      c->max_positions + a->pos_offset, d, true, err));
    if (a->emb_norm && load_norm(m, a->emb_norm, 0, &m->emb_norm, err))
        return NN_ERR;
    if (load_norm(m, a->final_norm, 0, &m->final_norm, err))
        return NN_ERR;
    m->head = (nn_linear){.w = m->tok_emb,
                          .n_in = d,
                          .n_out = c->vocab_size,
                          .ld = (size_t)d,
                          .dtype = m->tok_emb_dtype};
    /* The head is a Linear [vocab, d] in every family, Conv1D ones included. */
    if (!c->tie_embeddings &&
        load_linear_as(m, a->head, 0, 0, d, c->vocab_size, false, false, &m->head, err))
        return NN_ERR;
    if (c->head_bias)
        NEED(m->head.b = load_tensor(m, a->head, 0, 0, "bias", c->vocab_size, 0, true, err));
    m->layers = nn_calloc((size_t)c->n_layers, sizeof *m->layers, err);
    NEED(m->layers);
    for (int i = m->layer_begin; i < m->layer_end; i++) {
        nn_layer *L = &m->layers[i];
        if (!a->no_pre_norm && load_norm(m, a->attn_norm, i, &L->attn_norm, err))
            return NN_ERR;
        if (c->parallel && c->shared_norm)
            L->mlp_norm = L->attn_norm;
        else if (!a->no_pre_norm && load_norm(m, a->mlp_norm, i, &L->mlp_norm, err))
            return NN_ERR;
        if (a->q_norm && load_qk_norms(m, i, L, err))
            return NN_ERR;
        if (a->post_attn_norm && (load_norm(m, a->post_attn_norm, i, &L->post_attn_norm, err) ||
                                  load_norm(m, a->post_mlp_norm, i, &L->post_mlp_norm, err)))
            return NN_ERR;
        if (a->mla) {
            if (load_mla(m, i, L, err))
                return NN_ERR;
        } else if (a->fused_qkv) {
            if (load_fused_qkv(m, i, L, err))
                return NN_ERR;
        } else if (load_linear(m, a->q, i, d, qd, c->qkv_bias, &L->q, err) ||
                   load_linear(m, a->k, i, d, kvd, c->qkv_bias, &L->k, err) ||
                   load_linear(m, a->v, i, d, kvd, c->qkv_bias, &L->v, err)) {
            return NN_ERR;
        }
        if (load_linear(m, a->o, i, a->mla ? c->n_heads * c->v_head_dim : qd, d, c->o_bias, &L->o,
                        err))
            return NN_ERR;
        if (a->attn_sinks)
            NEED(L->sinks = load_tensor(m, a->attn_sinks, i, 0, "", c->n_heads, 0, true, err));
        if (nn_layer_moe(c, i)) {
            if (load_moe(m, i, L, err))
                return NN_ERR;
        } else if (!a->up && !a->gate_up) {
            return nn_fail(err, "%s: layer %d: %s layers without experts are not supported",
                           m->source, i, a->family);
        } else if (load_dense_mlp(m, i, a->gate, a->up, a->gate_up, a->down, c->d_ff, L, err)) {
            return NN_ERR;
        }
    }
    return NN_OK;
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
        nn_st_open_dir(dir, &m->archive, err) || load_weights(m, err))
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
    if (check_weights() == CHECK_ALL) { /* the tables are mapped F32: scanned on request only */
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
            size_t bad = tables[i].w ? first_non_finite(tables[i].w, tables[i].n) : tables[i].n;
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
                       "compute %s needs oneDNN, and this nnterp was built without it (install "
                       "libdnnl-dev and reconfigure)",
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
    char impl[96];
    if (!nn_bf16_probe(impl, sizeof impl)) {
        snprintf(m->compute_kernel, sizeof m->compute_kernel,
                 "float32 (OpenBLAS sgemm: oneDNN's bfloat16 matmul here is %s, not AMX)", impl);
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
    snprintf(m->compute_kernel, sizeof m->compute_kernel, "oneDNN %s, %d rows per call", impl,
             (int)NN_BF16_ROWS);
    return NN_OK;
}
