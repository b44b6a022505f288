#define _GNU_SOURCE
/* A Hugging Face checkpoint's weights: each tensor the architecture row names, found in the
 * safetensors archive, shape-checked, used in place from the mapping where its dtype and alignment
 * allow (else a copy the model owns) and scanned for NaN and infinity as NNTERP_CHECK_WEIGHTS
 * says. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

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

/* NNTERP_CHECK_WEIGHTS read as one of NN_CHECK_* (model_internal.h says what each scans). */
int nn_check_weights(void)
{
    const char *e = getenv("NNTERP_CHECK_WEIGHTS");
    if (!e)
        return NN_CHECK_CONVERTED;
    return strcmp(e, "0") == 0 ? NN_CHECK_NONE : NN_CHECK_ALL;
}

size_t nn_first_non_finite(const float *x, size_t n)
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
    if (m->headers_only && nn_check_weights() < NN_CHECK_ALL) {
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
    if (nn_check_weights() > (mapped ? NN_CHECK_CONVERTED : NN_CHECK_NONE) &&
        (bad = nn_first_non_finite(w, t->numel)) < t->numel) {
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
    if (m->headers_only && nn_check_weights() < NN_CHECK_ALL)
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
    if (nn_check_weights() > NN_CHECK_NONE &&
        (bad = first_non_finite_half(w, t->numel, t->dtype, &nan)) < t->numel) {
        non_finite_error(m, t, nan, bad, err);
        return NULL;
    }
    return w;
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
    size_t bad = nn_first_non_finite(w, (size_t)X * per);
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

int nn_model_load_hf_weights(nn_model *m, nn_err *err)
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
