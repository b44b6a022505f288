#include "nn_json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cJSON *nn_json_parse(const char *text, size_t len, size_t *error_at)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    *error_at = end ? (size_t)(end - text) : 0;
    if (!root)
        return NULL;
    for (size_t i = *error_at; i < len; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r') {
            *error_at = i;
            cJSON_Delete(root);
            return NULL;
        }
    return root;
}

cJSON *nn_json_parse_file(const char *path, size_t max_size, nn_err *err)
{
    char *text = NULL;
    size_t size = 0;
    if (nn_file_read(path, max_size, &text, &size, err) != NN_OK)
        return NULL;
    size_t at;
    cJSON *root = nn_json_parse(text, size, &at);
    if (!root)
        nn_fail(err, "%s: malformed JSON near byte %zu", path, at);
    nn_free(text);
    return root;
}

const cJSON *nn_json_get(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj))
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static const cJSON *lookup(const cJSON *obj, const char *key, bool required, const char *file,
                           bool *absent, nn_err *err)
{
    const cJSON *v = nn_json_get(obj, key);
    *absent = (v == NULL || cJSON_IsNull(v));
    if (*absent && required)
        nn_fail(err, "%s: required field '%s' is missing", file, key);
    return v;
}

int nn_json_int(const cJSON *obj, const char *key, bool required, long fallback, long min, long max,
                const char *file, long *out, nn_err *err)
{
    bool absent;
    const cJSON *v = lookup(obj, key, required, file, &absent, err);
    if (absent) {
        *out = fallback;
        return required ? NN_ERR : NN_OK;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || !isfinite(d))
        return nn_fail(err, "%s: field '%s' must be an integer", file, key);
    if (d < (double)min || d > (double)max)
        return nn_fail(err, "%s: field '%s' = %.0f is out of range [%ld, %ld]", file, key, d, min,
                       max);
    *out = (long)d;
    return NN_OK;
}

int nn_json_double(const cJSON *obj, const char *key, bool required, double fallback,
                   const char *file, double *out, nn_err *err)
{
    bool absent;
    const cJSON *v = lookup(obj, key, required, file, &absent, err);
    if (absent) {
        *out = fallback;
        return required ? NN_ERR : NN_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return nn_fail(err, "%s: field '%s' must be a finite number", file, key);
    *out = v->valuedouble;
    return NN_OK;
}

int nn_json_bool(const cJSON *obj, const char *key, bool required, bool fallback, const char *file,
                 bool *out, nn_err *err)
{
    bool absent;
    const cJSON *v = lookup(obj, key, required, file, &absent, err);
    if (absent) {
        *out = fallback;
        return required ? NN_ERR : NN_OK;
    }
    if (!cJSON_IsBool(v))
        return nn_fail(err, "%s: field '%s' must be true or false", file, key);
    *out = cJSON_IsTrue(v);
    return NN_OK;
}

int nn_json_string(const cJSON *obj, const char *key, bool required, const char *file,
                   const char **out, nn_err *err)
{
    bool absent;
    const cJSON *v = lookup(obj, key, required, file, &absent, err);
    *out = NULL;
    if (absent)
        return required ? NN_ERR : NN_OK;
    if (!cJSON_IsString(v))
        return nn_fail(err, "%s: field '%s' must be a string", file, key);
    *out = v->valuestring;
    return NN_OK;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

int nn_json_unique_keys(const cJSON *root, const char *file, nn_err *err)
{
    if (!root)
        return NN_OK;
    int n = cJSON_GetArraySize(root);
    if (cJSON_IsObject(root) && n > 1) {
        const cJSON **items = nn_malloc((size_t)n * sizeof *items, err), *c;
        if (!items)
            return NN_ERR;
        int k = 0;
        cJSON_ArrayForEach (c, root)
            items[k++] = c;
        qsort(items, (size_t)n, sizeof *items, cmp_key);
        for (int i = 0; i + 1 < n; i++)
            if (strcmp(items[i]->string, items[i + 1]->string) == 0) {
                nn_fail(err, "%s: key '%s' appears twice in one object", file, items[i]->string);
                nn_free(items);
                return NN_ERR;
            }
        nn_free(items);
    }
    /* cJSON refuses nesting deeper than CJSON_NESTING_LIMIT (1000): the recursion is bounded */
    const cJSON *c;
    if (cJSON_IsObject(root) || cJSON_IsArray(root))
        cJSON_ArrayForEach (c, root)
            if (nn_json_unique_keys(c, file, err))
                return NN_ERR;
    return NN_OK;
}

bool nn_json_has_nul_escape(const char *text, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++) {
        if (text[i] != '\\')
            continue;
        /* a run of backslashes: pairs are escaped backslashes; an odd one starts an escape */
        size_t run = 1;
        while (i + run < len && text[i + run] == '\\')
            run++;
        i += run - 1;
        if (run % 2 == 1 && i + 6 <= len && text[i + 1] == 'u' && !memcmp(text + i + 2, "0000", 4))
            return true;
    }
    return false;
}
