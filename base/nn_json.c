#include "nn_json.h"

#include <math.h>
#include <string.h>

cJSON *nn_json_parse_file(const char *path, size_t max_size, nn_err *err)
{
    char *text = NULL;
    size_t size = 0;
    if (nn_file_read(path, max_size, &text, &size, err) != NN_OK)
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        nn_fail(err, "%s: malformed JSON near byte %zu", path, at);
    }
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
