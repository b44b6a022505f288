#include "job_repeat.h"

#include <string.h>

#include "toolkit.h"

enum { MAX_WORDS = 1000 };

int nn_job_parse_repeat(const cJSON *r, const char *path, const char *where, char **out,
                        nn_err *err)
{
    *out = NULL;
    if (!cJSON_IsObject(r))
        return nn_fail(err,
                       "%s: %s: target 'repeat' must be {\"words\": [...], \"rel\": ..., "
                       "\"sep\": ..., \"placeholder\": ...}",
                       path, where);
    for (const cJSON *f = r->child; f; f = f->next)
        if (strcmp(f->string, "words") && strcmp(f->string, "rel") && strcmp(f->string, "sep") &&
            strcmp(f->string, "placeholder"))
            return nn_fail(err,
                           "%s: %s: target 'repeat' has unknown field '%s' (words, rel, sep, "
                           "placeholder)",
                           path, where, f->string);
    const char *rel = NULL, *sep = NULL, *placeholder = NULL;
    if (nn_json_string(r, "rel", false, path, &rel, err) ||
        nn_json_string(r, "sep", false, path, &sep, err) ||
        nn_json_string(r, "placeholder", false, path, &placeholder, err))
        return nn_err_prefix(err, "%s: target 'repeat'", where);
    const cJSON *w = nn_json_get(r, "words");
    const char *words[MAX_WORDS];
    int n = 0;
    if (w) {
        if (!cJSON_IsArray(w) || cJSON_GetArraySize(w) < 1 || cJSON_GetArraySize(w) > MAX_WORDS)
            return nn_fail(err, "%s: %s: target 'repeat': 'words' must be 1 to %d strings", path,
                           where, MAX_WORDS);
        for (const cJSON *e = w->child; e; e = e->next) {
            if (!cJSON_IsString(e))
                return nn_fail(err, "%s: %s: target 'repeat': word %d is not a string", path, where,
                               n);
            words[n++] = e->valuestring;
        }
    }
    *out = nn_repeat_prompt(w ? words : NULL, n, rel, sep, placeholder, err);
    return *out ? NN_OK : NN_ERR;
}
