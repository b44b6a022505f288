/* What nnterp lens and patchscope share for --targets and --json (cli/toolkit.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "toolkit_out.h"

void cli_targets_free(cli_targets *t)
{
    for (int i = 0; i < t->n; i++)
        nn_free(t->names[i]);
    nn_free(t->names);
    nn_free(t->first);
    nn_ids_free(&t->flat);
    memset(t, 0, sizeof *t);
}

int cli_targets_parse(const char *words, nn_tokenizer *tok, cli_targets *t, nn_err *err)
{
    memset(t, 0, sizeof *t);
    if (!words)
        return NN_OK;
    char buf[4096];
    const char *list[64];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", words);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (n == 64)
            return nn_fail(err, "--targets: at most 64 words");
        list[n++] = w;
    }
    if (n == 0)
        return nn_fail(err, "--targets: no word given");
    if (!(t->names = nn_calloc((size_t)n, sizeof *t->names, err)) ||
        !(t->first = nn_calloc((size_t)n + 1, sizeof *t->first, err)))
        return NN_ERR;
    for (int i = 0; i < n; i++) {
        t->first[i] = t->flat.n;
        if (!(t->names[i] = nn_strdup(list[i], err)))
            return NN_ERR;
        t->n++;
        if (nn_first_tokens(tok, &list[i], 1, &t->flat, err))
            return nn_err_prefix(err, "--targets '%s'", list[i]);
    }
    t->first[n] = t->flat.n;
    return NN_OK;
}

void cli_targets_sum(const cli_targets *t, const float *per_id, float *out)
{
    for (int i = 0; i < t->n; i++) {
        double sum = 0; /* as nnterp patch and the job's nn_op_target_sum */
        for (size_t j = t->first[i]; j < t->first[i + 1]; j++)
            sum += per_id[j];
        out[i] = (float)sum;
    }
}

float cli_target_prob(const cli_targets *t, int i, const float *probs)
{
    double sum = 0;
    for (size_t j = t->first[i]; j < t->first[i + 1]; j++)
        sum += probs[t->flat.ids[j]];
    return (float)sum;
}

int cli_targets_add_id(cli_targets *t, int32_t id, char *name, nn_err *err)
{
    char **names = nn_realloc(t->names, ((size_t)t->n + 1) * sizeof *names, err);
    if (!names) {
        nn_free(name);
        return NN_ERR;
    }
    t->names = names;
    size_t *first = nn_realloc(t->first, ((size_t)t->n + 2) * sizeof *first, err);
    if (!first) {
        nn_free(name);
        return NN_ERR;
    }
    t->first = first;
    t->first[t->n] = t->flat.n;
    if (nn_ids_push(&t->flat, id, err)) {
        nn_free(name);
        return NN_ERR;
    }
    t->names[t->n++] = name;
    t->first[t->n] = t->flat.n;
    return NN_OK;
}

cJSON *cli_json_f32(float v)
{
    if (!isfinite(v))
        return cJSON_CreateNull();
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", (double)v); /* 9 digits: the float32 reads back exactly */
    return cJSON_CreateRaw(buf);
}

cJSON *cli_json_f32s(const float *v, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cli_json_f32(v[i]));
    return arr;
}

cJSON *cli_json_i32s(const int32_t *v, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
    return arr;
}

cJSON *cli_json_ints(const int *v, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
    return arr;
}

cJSON *cli_json_tokens(const nn_tokenizer *tok, const int32_t *ids, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++) {
        char *text = cli_token_text(tok, ids[i]);
        cJSON_AddItemToArray(arr, text ? cJSON_CreateString(text) : cJSON_CreateNull());
        nn_free(text);
    }
    return arr;
}

int cli_json_print(cJSON *o, nn_err *err)
{
    char *json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!json)
        return nn_fail(err, "out of memory writing the JSON output");
    puts(json);
    cJSON_free(json);
    return NN_OK;
}
