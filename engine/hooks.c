#include "hooks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *names[NN_HP_COUNT] = {
    "token_embeddings",  "layers_input",
    "attentions_input",  "attention_probabilities",
    "attentions_output", "mlps_input",
    "mlps_output",       "layers_output",
    "ln_final",          "logits",
    "next_token_probs",  "router_probabilities",
    "layers_middle",     "attentions_residual",
    "mlps_residual",     "attentions_normalized",
    "mlps_normalized",
};

const char *nn_hook_point_name(nn_hook_point hp)
{
    return hp < NN_HP_COUNT ? names[hp] : "?";
}

bool nn_hook_point_per_layer(nn_hook_point hp)
{
    return (hp >= NN_HP_LAYERS_INPUT && hp <= NN_HP_LAYERS_OUTPUT) ||
           (hp >= NN_HP_ROUTER_PROBABILITIES && hp < NN_HP_COUNT);
}

static int parse_int(const char *s, const char *end, long *out)
{
    if (s == end)
        return NN_ERR;
    char buf[32];
    size_t n = (size_t)(end - s);
    if (n >= sizeof buf)
        return NN_ERR;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *stop;
    errno = 0;
    long v = strtol(buf, &stop, 10);
    if (*stop || errno)
        return NN_ERR;
    *out = v;
    return NN_OK;
}

static int layer_index(long v, int n_layers, const char *what, nn_err *err)
{
    long i = v < 0 ? v + n_layers : v;
    if (i < 0 || i >= n_layers)
        return nn_fail(err,
                       "%s: layer %ld is out of range (the model has %d layers: 0..%d or -%d..-1)",
                       what, v, n_layers, n_layers - 1, n_layers);
    return (int)i;
}

int nn_hook_name_parse(const char *name, int n_layers, nn_hook_point *hp, int *layer, nn_err *err)
{
    const char *dot = strchr(name, '.');
    size_t base = dot ? (size_t)(dot - name) : strlen(name);
    for (int i = 0; i < NN_HP_COUNT; i++) {
        if (strlen(names[i]) != base || strncmp(names[i], name, base) != 0)
            continue;
        *hp = (nn_hook_point)i;
        if (!nn_hook_point_per_layer(*hp)) {
            if (dot)
                return nn_fail(err, "hook point '%s': '%s' takes no layer", name, names[i]);
            *layer = -1;
            return NN_OK;
        }
        if (!dot) {
            *layer = NN_ALL_LAYERS;
            return NN_OK;
        }
        long v;
        if (parse_int(dot + 1, dot + strlen(dot), &v) != NN_OK)
            return nn_fail(err, "hook point '%s': layer '%s' is not an integer", name, dot + 1);
        int l = layer_index(v, n_layers, name, err);
        if (l < 0)
            return NN_ERR;
        *layer = l;
        return NN_OK;
    }
    return nn_fail(err,
                   "unknown hook point '%s' (token_embeddings, layers_input.i, attentions_input.i, "
                   "attention_probabilities.i, attentions_output.i, mlps_input.i, mlps_output.i, "
                   "layers_output.i, ln_final, logits, next_token_probs, router_probabilities.i)",
                   name);
}

int nn_layers_parse(const char *spec, int n_layers, int **layers, int *count, nn_err *err)
{
    *layers = NULL;
    *count = 0;
    bool *on = nn_calloc((size_t)n_layers, sizeof *on, err);
    if (!on)
        return NN_ERR;
    int rc = NN_ERR;
    if (!*spec) {
        nn_fail(err, "layer spec is empty (all, 5, 0,3,7, -1, 0:12:2)");
        goto done;
    }
    if (strcmp(spec, "all") == 0) {
        for (int i = 0; i < n_layers; i++)
            on[i] = true;
    } else {
        const char *p = spec;
        while (*p) {
            const char *end = strchr(p, ',');
            if (!end)
                end = p + strlen(p);
            const char *c1 = memchr(p, ':', (size_t)(end - p));
            if (c1) { /* start:stop[:step], Python slice semantics on range(n_layers) */
                const char *c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
                long start = 0, stop = n_layers, step = 1;
                const char *stop_end = c2 ? c2 : end;
                if ((c1 > p && parse_int(p, c1, &start)) ||
                    (stop_end > c1 + 1 && parse_int(c1 + 1, stop_end, &stop)) ||
                    (c2 && c2 + 1 < end && parse_int(c2 + 1, end, &step)) || step <= 0) {
                    nn_fail(err, "layer spec '%s': bad range (start:stop:step, step > 0)", spec);
                    goto done;
                }
                if (start < 0)
                    start += n_layers;
                if (stop < 0)
                    stop += n_layers;
                if (start < 0 || start >= n_layers || stop > n_layers || stop <= start) {
                    nn_fail(err,
                            "layer spec '%s': range is empty or out of range (model has %d layers)",
                            spec, n_layers);
                    goto done;
                }
                for (long i = start; i < stop; i += step)
                    on[i] = true;
            } else {
                long v;
                if (parse_int(p, end, &v) != NN_OK) {
                    nn_fail(err, "layer spec '%s': '%.*s' is not a layer index", spec,
                            (int)(end - p), p);
                    goto done;
                }
                int l = layer_index(v, n_layers, "layer spec", err);
                if (l < 0)
                    goto done;
                on[l] = true;
            }
            p = *end ? end + 1 : end;
        }
    }
    int n = 0;
    for (int i = 0; i < n_layers; i++)
        n += on[i];
    int *out = nn_malloc((size_t)(n ? n : 1) * sizeof *out, err);
    if (!out)
        goto done;
    n = 0;
    for (int i = 0; i < n_layers; i++)
        if (on[i])
            out[n++] = i;
    *layers = out;
    *count = n;
    rc = NN_OK;
done:
    nn_free(on);
    return rc;
}

int nn_hookset_init(nn_hookset *hs, int n_layers, nn_err *err)
{
    hs->n_layers = n_layers < 1 ? 1 : n_layers;
    hs->sites = nn_calloc((size_t)NN_HP_COUNT * (size_t)hs->n_layers, sizeof *hs->sites, err);
    return hs->sites ? NN_OK : NN_ERR;
}

void nn_hookset_free(nn_hookset *hs)
{
    if (!hs || !hs->sites)
        return;
    for (size_t i = 0; i < (size_t)NN_HP_COUNT * (size_t)hs->n_layers; i++) {
        nn_hook_entry *e = hs->sites[i];
        while (e) {
            nn_hook_entry *next = e->next;
            nn_free(e);
            e = next;
        }
    }
    nn_free(hs->sites);
    hs->sites = NULL;
}

static int add_one(nn_hookset *hs, nn_hook_point hp, int layer, nn_hook_fn fn, void *user,
                   nn_err *err)
{
    nn_hook_entry *e = nn_calloc(1, sizeof *e, err);
    if (!e)
        return NN_ERR;
    e->fn = fn;
    e->user = user;
    nn_hook_entry **slot = &hs->sites[(size_t)hp * (size_t)hs->n_layers + (size_t)layer];
    while (*slot)
        slot = &(*slot)->next;
    *slot = e;
    return NN_OK;
}

int nn_hookset_add(nn_hookset *hs, nn_hook_point hp, int layer, nn_hook_fn fn, void *user,
                   nn_err *err)
{
    if (hp >= NN_HP_COUNT)
        return nn_fail(err, "hook point %d does not exist", (int)hp);
    if (!nn_hook_point_per_layer(hp))
        return add_one(hs, hp, 0, fn, user, err);
    if (layer == NN_ALL_LAYERS) {
        for (int i = 0; i < hs->n_layers; i++)
            if (add_one(hs, hp, i, fn, user, err))
                return NN_ERR;
        return NN_OK;
    }
    if (layer < 0 || layer >= hs->n_layers)
        return nn_fail(err, "%s.%d: layer out of range (the model has %d layers)",
                       nn_hook_point_name(hp), layer, hs->n_layers);
    return add_one(hs, hp, layer, fn, user, err);
}

int nn_hookset_add_name(nn_hookset *hs, const char *name, nn_hook_fn fn, void *user, nn_err *err)
{
    nn_hook_point hp;
    int layer;
    if (nn_hook_name_parse(name, hs->n_layers, &hp, &layer, err))
        return NN_ERR;
    return nn_hookset_add(hs, hp, layer, fn, user, err);
}

int nn_hook_stop(const nn_hook_view *view, void *user, nn_err *err)
{
    return NN_HOOK_STOP;
}
