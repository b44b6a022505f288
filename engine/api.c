#include "api.h"

#include <string.h>

#include "nnterp.h"

const char *nn_version_string(void)
{
    return NNTERP_VERSION_STRING;
}

int nn_version_number(void)
{
    return NNTERP_VERSION_MAJOR * 10000 + NNTERP_VERSION_MINOR * 100 + NNTERP_VERSION_PATCH;
}

const nn_config *nn_model_cfg(const nn_model *m)
{
    return &m->cfg;
}
int nn_model_n_layers(const nn_model *m)
{
    return m->cfg.n_layers;
}
int nn_model_d_model(const nn_model *m)
{
    return m->cfg.d_model;
}
int nn_model_n_heads(const nn_model *m)
{
    return m->cfg.n_heads;
}
int nn_model_n_kv_heads(const nn_model *m)
{
    return m->cfg.n_kv_heads;
}
int nn_model_head_dim(const nn_model *m)
{
    return m->cfg.head_dim;
}
int nn_model_d_ff(const nn_model *m)
{
    return m->cfg.d_ff;
}
int nn_model_vocab_size(const nn_model *m)
{
    return m->cfg.vocab_size;
}
int nn_model_max_positions(const nn_model *m)
{
    return m->cfg.max_positions;
}
int nn_model_n_experts(const nn_model *m)
{
    return m->cfg.n_experts;
}
int nn_model_bos(const nn_model *m)
{
    return m->cfg.bos_token_id;
}
int nn_model_eos(const nn_model *m)
{
    return m->cfg.eos_token_id;
}
const char *nn_model_type(const nn_model *m)
{
    return m->cfg.arch->model_type;
}
const char *nn_model_family(const nn_model *m)
{
    return m->cfg.arch->family;
}
const char *nn_model_source(const nn_model *m)
{
    return m->source;
}
const char *nn_model_config_json(const nn_model *m)
{
    return m->config_json;
}

int nn_hookset_create(nn_hookset **out, int n_layers, nn_err *err)
{
    *out = NULL;
    nn_hookset *hs = nn_calloc(1, sizeof *hs, err);
    if (!hs)
        return NN_ERR;
    if (nn_hookset_init(hs, n_layers, err)) {
        nn_free(hs);
        return NN_ERR;
    }
    *out = hs;
    return NN_OK;
}

void nn_hookset_destroy(nn_hookset *hs)
{
    if (!hs)
        return;
    nn_hookset_free(hs);
    nn_free(hs);
}

int nn_hookset_n_layers(const nn_hookset *hs)
{
    return hs->n_layers;
}

int nn_hook_copy(const nn_hook_view *v, void *user, nn_err *err)
{
    nn_copy_target *t = user;
    size_t n = v->rows * v->cols;
    if (n > t->capacity)
        return nn_fail(err, "copy hook: %s (layer %d) has %zu values, the buffer holds %zu",
                       nn_hook_point_name(v->point), v->layer, n, t->capacity);
    memcpy(t->dst, v->data, n * sizeof(float));
    t->rows = v->rows;
    t->cols = v->cols;
    t->calls++;
    return NN_HOOK_CONTINUE;
}

int nn_err_set(nn_err *err, const char *message)
{
    return nn_fail(err, "%s", message ? message : "(no message)");
}

size_t nn_abi_sizeof(const char *name)
{
    static const struct {
        const char *name;
        size_t size;
    } table[] = {
        {"nn_err", sizeof(nn_err)},
        {"nn_batch", sizeof(nn_batch)},
        {"nn_state_params", sizeof(nn_state_params)},
        {"nn_forward_params", sizeof(nn_forward_params)},
        {"nn_hook_view", sizeof(nn_hook_view)},
        {"nn_ids", sizeof(nn_ids)},
        {"nn_prompt", sizeof(nn_prompt)},
        {"nn_lens_params", sizeof(nn_lens_params)},
        {"nn_lens_result", sizeof(nn_lens_result)},
        {"nn_generate_params", sizeof(nn_generate_params)},
        {"nn_patchscope_params", sizeof(nn_patchscope_params)},
        {"nn_patchscope_result", sizeof(nn_patchscope_result)},
        {"nn_steer", sizeof(nn_steer)},
        {"nn_copy_target", sizeof(nn_copy_target)},
    };
    for (size_t i = 0; name && i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].name, name))
            return table[i].size;
    return 0;
}
