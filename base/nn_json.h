/* JSON helpers over cJSON: exact-case key lookup (cJSON_GetObjectItem is case-insensitive, which
 * would let "Hidden_Size" stand for "hidden_size") and typed getters that name the file and field
 * in their errors. */
#ifndef NN_JSON_H
#define NN_JSON_H

#include <cJSON.h>

#include "nn_base.h"

/* Parses a JSON file; the caller frees the result with cJSON_Delete. */
cJSON *nn_json_parse_file(const char *path, size_t max_size, nn_err *err);
/* Parses text[len] as one JSON value followed by nothing but whitespace (cJSON alone would ignore
 * what follows the value, where Python's json refuses it). NULL on failure, with *error_at the
 * byte where parsing stopped. The caller frees the result with cJSON_Delete. */
cJSON *nn_json_parse(const char *text, size_t len, size_t *error_at);
const cJSON *nn_json_get(const cJSON *obj, const char *key);
/* Getters: a missing key or JSON null gives *out = fallback when required is false, else an error
 * "file: field 'key' ...". */
int nn_json_int(const cJSON *obj, const char *key, bool required, long fallback, long min, long max,
                const char *file, long *out, nn_err *err);
int nn_json_double(const cJSON *obj, const char *key, bool required, double fallback,
                   const char *file, double *out, nn_err *err);
int nn_json_bool(const cJSON *obj, const char *key, bool required, bool fallback, const char *file,
                 bool *out, nn_err *err);
/* Borrowed string, valid while obj lives; NULL (no error) when absent/null and not required. */
int nn_json_string(const cJSON *obj, const char *key, bool required, const char *file,
                   const char **out, nn_err *err);

/* Fails, naming file and key, when an object anywhere in root holds a key twice. cJSON keeps both
 * and finds the first; Python's json (hence transformers) keeps the last: a file that says both
 * would mean one thing to nnterp and another to the tools that wrote it. */
int nn_json_unique_keys(const cJSON *root, const char *file, nn_err *err);
/* True when JSON text holds the escape \u0000, which cJSON turns into a NUL that silently ends
 * the string it is in. */
bool nn_json_has_nul_escape(const char *text, size_t len);

#endif
