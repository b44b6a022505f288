#include "job.h"
#include "job_repeat.h"
#include "op.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn_json.h"
#include "toolkit.h"

const char *nn_op_name(const nn_op *op)
{
    return op->cls->name;
}

void nn_job_free(nn_job *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->n_ops; i++) {
        nn_op *o = &j->ops[i];
        nn_free(o->group);
        nn_free(o->layers);
        nn_free(o->positions.list);
        nn_free(o->target_prompt);
        nn_free(o->vector);
        if (o->cls && o->cls->free_spec)
            o->cls->free_spec(o);
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < o->n_contrast[k]; i++)
                nn_free(o->contrast[k][i]);
            nn_free(o->contrast[k]);
        }
    }
    nn_free(j->ops);
    nn_free(j->model);
    nn_free(j->tokenizer);
    nn_free(j->output);
    nn_free(j->dataset_path);
    nn_free(j->dataset_format);
    nn_free(j->dataset_field);
    nn_free(j->chat_template);
    nn_free(j->chat_now);
    nn_free(j->targets_field);
    nn_free(j->canonical);
    memset(j, 0, sizeof *j);
}

/* Rejects keys of obj not in allowed (NULL-terminated). */
int nn_job_only_fields(const cJSON *obj, const char *const *allowed, const char *path,
                       const char *where, nn_err *err)
{
    const cJSON *item;
    cJSON_ArrayForEach (item, obj) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(item->string, *a);
        if (!ok) {
            char list[512] = "";
            size_t n = 0;
            for (const char *const *a = allowed; *a && n < sizeof list - 40; a++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", *a);
            return nn_fail(err, "%s: %s: unknown field '%s' (allowed: %s)", path, where,
                           item->string, list);
        }
    }
    return NN_OK;
}

int nn_job_dup_string(const cJSON *obj, const char *key, bool required, const char *fallback,
                      const char *path, char **out, nn_err *err)
{
    const char *v = NULL;
    if (nn_json_string(obj, key, required, path, &v, err))
        return NN_ERR;
    if (!v)
        v = fallback;
    *out = NULL;
    if (v && !(*out = nn_strdup(v, err)))
        return NN_ERR;
    return NN_OK;
}

/* "all" | "last" | integer | [integers] */
int nn_job_parse_positions(const cJSON *obj, const char *def, const char *path, const char *where,
                           nn_positions *out, nn_err *err)
{
    const cJSON *v = nn_json_get(obj, "positions");
    memset(out, 0, sizeof *out);
    if (!v) {
        out->kind = !strcmp(def, "all") ? NN_POS_ALL : NN_POS_LAST;
        return NN_OK;
    }
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "all")) {
        out->kind = NN_POS_ALL;
        return NN_OK;
    }
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "last")) {
        out->kind = NN_POS_LAST;
        return NN_OK;
    }
    int n = cJSON_IsNumber(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
    if (n < 1)
        return nn_fail(
            err,
            "%s: %s: field 'positions' must be \"all\", \"last\", an index or a list of indices",
            path, where);
    out->kind = NN_POS_LIST;
    out->n = n;
    if (!(out->list = nn_malloc((size_t)n * sizeof *out->list, err)))
        return NN_ERR;
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_IsNumber(v) ? v : cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) ||
            fabs(x->valuedouble) > 1e9)
            return nn_fail(err, "%s: %s: positions[%d] is not an integer index", path, where, i);
        out->list[i] = (int)x->valuedouble;
    }
    return NN_OK;
}

/* "all" | "0:12:2" | 5 | [1, 2] into a layer spec string. */
int nn_job_parse_layers(const cJSON *obj, const char *path, const char *where, char **out,
                        nn_err *err)
{
    const cJSON *v = nn_json_get(obj, "layers");
    char buf[1024];
    if (!v) {
        snprintf(buf, sizeof buf, "all");
    } else if (cJSON_IsString(v)) {
        if (strlen(v->valuestring) >= sizeof buf)
            return nn_fail(err, "%s: %s: field 'layers' is too long", path, where);
        snprintf(buf, sizeof buf, "%s", v->valuestring);
    } else if (cJSON_IsNumber(v) || cJSON_IsArray(v)) {
        size_t n = 0;
        int count = cJSON_IsNumber(v) ? 1 : cJSON_GetArraySize(v);
        if (count < 1)
            return nn_fail(err, "%s: %s: field 'layers' is an empty list", path, where);
        for (int i = 0; i < count; i++) {
            const cJSON *x = cJSON_IsNumber(v) ? v : cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) ||
                fabs(x->valuedouble) > 1e9 || n > sizeof buf - 16)
                return nn_fail(err, "%s: %s: layers[%d] is not a layer index", path, where, i);
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%d", i ? "," : "",
                                  (int)x->valuedouble);
        }
    } else {
        return nn_fail(
            err,
            "%s: %s: field 'layers' must be \"all\", a spec like \"0:12:2\", an index or a list",
            path, where);
    }
    return (*out = nn_strdup(buf, err)) ? NN_OK : NN_ERR;
}

/* Names the operation in an error that does not name it yet. */
int nn_job_in_op(nn_err *err, const char *where)
{
    if (!strstr(err->msg, where))
        nn_err_prefix(err, "%s", where);
    return NN_ERR;
}

/* "chat": {"template", "add_generation_prompt", "continue_final_message", "now", "transformers"}.
 */
static int parse_chat(const cJSON *c, const char *path, nn_job *j, nn_err *err)
{
    static const char *const allowed[] = {
        "template", "add_generation_prompt", "continue_final_message", "now", "transformers", NULL};
    long hf;
    j->chat_transformers = 5;
    if (!c)
        return NN_OK;
    if (!cJSON_IsObject(c))
        return nn_fail(err,
                       "%s: field 'chat' must be an object {\"template\": ..., "
                       "\"add_generation_prompt\": ...}",
                       path);
    if (nn_job_only_fields(c, allowed, path, "chat", err) ||
        nn_job_dup_string(c, "template", false, NULL, path, &j->chat_template, err) ||
        nn_job_dup_string(c, "now", false, NULL, path, &j->chat_now, err) ||
        nn_json_bool(c, "add_generation_prompt", false, false, path, &j->chat_add_generation_prompt,
                     err) ||
        nn_json_bool(c, "continue_final_message", false, false, path,
                     &j->chat_continue_final_message, err) ||
        nn_json_int(c, "transformers", false, 5, 4, 5, path, &hf, err))
        return nn_err_prefix(err, "chat");
    j->chat_transformers = (int)hf;
    return NN_OK;
}

static int parse_op(const cJSON *o, int index, const char *path, nn_op *op, nn_err *err)
{
    char where[64];
    snprintf(where, sizeof where, "operations[%d]", index);
    if (!cJSON_IsObject(o))
        return nn_fail(err, "%s: %s must be an object {\"op\": ...}", path, where);
    const char *name = NULL;
    if (nn_json_string(o, "op", true, path, &name, err))
        return nn_job_in_op(err, where);
    const nn_op_class *cls = nn_op_class_find(name);
    if (!cls) {
        char names[512] = "";
        for (int k = 0; k < nn_n_op_classes; k++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? ", " : "",
                     nn_op_classes[k]->name);
        return nn_fail(err, "%s: %s: op '%s' is not one of %s", path, where, name, names);
    }
    op->cls = cls;
    snprintf(where, sizeof where, "operations[%d] (%s)", index, name);
    return cls->parse(o, path, where, op, err);
}

/* Group names: the op's name, with _2, _3 for later repeats. */
static int name_groups(nn_job *j, nn_err *err)
{
    for (int i = 0; i < j->n_ops; i++) {
        int seen = 1;
        for (int k = 0; k < i; k++)
            seen += j->ops[k].cls == j->ops[i].cls;
        char name[64];
        if (seen == 1)
            snprintf(name, sizeof name, "%s", nn_op_name(&j->ops[i]));
        else
            snprintf(name, sizeof name, "%s_%d", nn_op_name(&j->ops[i]), seen);
        if (!(j->ops[i].group = nn_strdup(name, err)))
            return NN_ERR;
    }
    return NN_OK;
}

int nn_job_parse(const char *text, const char *path, nn_job *j, nn_err *err)
{
    memset(j, 0, sizeof *j);
    size_t at;
    cJSON *root = nn_json_parse(text, strlen(text), &at);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nn_fail(err, "%s: malformed JSON near byte %zu (expected an object)", path, at);
    }
    int rc = NN_ERR;
    static const char *const allowed[] = {"model",  "tokenizer",    "dataset",       "operations",
                                          "dtype",  "batch_tokens", "shard_batches", "parallel",
                                          "output", "chat",         "compute",       NULL};
    static const char *const ds_allowed[] = {"path",
                                             "format",
                                             "field",
                                             "targets_field",
                                             "max_tokens",
                                             "too_long",
                                             "add_special_tokens",
                                             "max_line_bytes",
                                             NULL};
    const cJSON *ds = nn_json_get(root, "dataset"), *ops = nn_json_get(root, "operations"), *o;
    const char *dtype = NULL, *too_long = NULL;
    long v;
    if (nn_json_has_nul_escape(text, strlen(text))) {
        nn_fail(err, "%s: a string holds \\u0000, which would silently cut it short", path);
        goto done;
    }
    if (nn_json_unique_keys(root, path, err) ||
        nn_job_only_fields(root, allowed, path, "job", err) ||
        nn_job_dup_string(root, "model", true, NULL, path, &j->model, err) ||
        nn_job_dup_string(root, "tokenizer", false, NULL, path, &j->tokenizer, err) ||
        nn_job_dup_string(root, "output", true, NULL, path, &j->output, err) ||
        parse_chat(nn_json_get(root, "chat"), path, j, err))
        goto done;
    if (!cJSON_IsObject(ds)) {
        nn_fail(err, "%s: field 'dataset' must be an object {\"path\": ..., \"field\": \"text\"}",
                path);
        goto done;
    }
    if (nn_job_only_fields(ds, ds_allowed, path, "dataset", err) ||
        nn_job_dup_string(ds, "path", true, NULL, path, &j->dataset_path, err) ||
        nn_job_dup_string(ds, "format", false, NULL, path, &j->dataset_format, err) ||
        nn_job_dup_string(ds, "field", false, "text", path, &j->dataset_field, err) ||
        nn_job_dup_string(ds, "targets_field", false, NULL, path, &j->targets_field, err) ||
        nn_json_int(ds, "max_tokens", false, 0, 1, 1L << 24, path, &v, err) ||
        nn_json_string(ds, "too_long", false, path, &too_long, err) ||
        nn_json_bool(ds, "add_special_tokens", false, true, path, &j->add_special_tokens, err)) {
        nn_err_prefix(err, "dataset");
        goto done;
    }
    j->max_tokens = (int)v;
    long line_bytes;
    if (nn_json_int(ds, "max_line_bytes", false, 0, 1, 1L << 40, path, &line_bytes, err)) {
        nn_err_prefix(err, "dataset");
        goto done;
    }
    j->max_line_bytes = (size_t)line_bytes;
    if (j->dataset_format && strcmp(j->dataset_format, "jsonl") &&
        strcmp(j->dataset_format, "text")) {
        nn_fail(err, "%s: dataset.format '%s' is not \"jsonl\" or \"text\"", path,
                j->dataset_format);
        goto done;
    }
    if (!too_long || !strcmp(too_long, "error"))
        j->too_long = NN_TOO_LONG_ERROR;
    else if (!strcmp(too_long, "truncate"))
        j->too_long = NN_TOO_LONG_TRUNCATE;
    else if (!strcmp(too_long, "skip"))
        j->too_long = NN_TOO_LONG_SKIP;
    else {
        nn_fail(err, "%s: dataset.too_long '%s' is not \"error\", \"truncate\" or \"skip\"", path,
                too_long);
        goto done;
    }
    if (nn_json_string(root, "dtype", false, path, &dtype, err))
        goto done;
    if (!dtype || !strcmp(dtype, "float32"))
        j->dtype = NN_DTYPE_F32;
    else if (!strcmp(dtype, "float16"))
        j->dtype = NN_DTYPE_F16;
    else if (!strcmp(dtype, "bfloat16"))
        j->dtype = NN_DTYPE_BF16;
    else {
        nn_fail(err, "%s: dtype '%s' is not \"float32\", \"float16\" or \"bfloat16\"", path, dtype);
        goto done;
    }
    const char *compute = NULL;
    if (nn_json_string(root, "compute", false, path, &compute, err))
        goto done;
    j->compute = NN_COMPUTE_F32;
    if (compute) {
        char what[600];
        snprintf(what, sizeof what, "%s: field 'compute'", path);
        if (nn_compute_parse(compute, what, &j->compute, err))
            goto done;
    }
    if (nn_json_int(root, "batch_tokens", false, 8192, 1, 1L << 24, path, &v, err))
        goto done;
    j->batch_tokens = (int)v;
    if (nn_json_int(root, "shard_batches", false, 1, 1, 1L << 20, path, &v, err))
        goto done;
    j->shard_batches = (int)v;
    j->pipeline_stages = 1;
    const cJSON *par = nn_json_get(root, "parallel");
    if (par) {
        static const char *const p_allowed[] = {"pipeline_stages", NULL};
        if (!cJSON_IsObject(par)) {
            nn_fail(err, "%s: field 'parallel' must be an object {\"pipeline_stages\": P}", path);
            goto done;
        }
        if (nn_job_only_fields(par, p_allowed, path, "parallel", err) ||
            nn_json_int(par, "pipeline_stages", false, 1, 1, 4096, path, &v, err))
            goto done;
        j->pipeline_stages = (int)v;
    }
    if (!cJSON_IsArray(ops) || cJSON_GetArraySize(ops) < 1) {
        nn_fail(err, "%s: field 'operations' must be a non-empty list", path);
        goto done;
    }
    j->n_ops = 0;
    if (!(j->ops = nn_calloc((size_t)cJSON_GetArraySize(ops), sizeof *j->ops, err)))
        goto done;
    cJSON_ArrayForEach (o, ops) {
        /* Counted before it is parsed, so that nn_job_free frees what a failed parse left. */
        nn_op *op = &j->ops[j->n_ops++];
        if (parse_op(o, j->n_ops - 1, path, op, err))
            goto done;
        bool needs_targets = op->cls->needs_targets || op->targets;
        const char *tf = NULL;
        if (op->cls->needs_targets && nn_json_string(o, "targets_field", false, path, &tf, err))
            goto done;
        /* One targets field per job: an op naming another would silently read the first. */
        if (tf && j->targets_field && strcmp(tf, j->targets_field)) {
            nn_fail(err,
                    "%s: operations[%d] (%s): targets_field '%s' differs from the job's "
                    "targets field '%s' (%s); a job reads one targets field, set in "
                    "dataset.targets_field",
                    path, j->n_ops - 1, op->cls->name, tf, j->targets_field,
                    nn_json_get(ds, "targets_field") ? "dataset.targets_field"
                                                     : "named by an earlier operation");
            goto done;
        }
        if (needs_targets && !j->targets_field &&
            !(j->targets_field = nn_strdup(tf ? tf : "targets", err)))
            goto done;
    }
    if (name_groups(j, err))
        goto done;
    char *canon = cJSON_PrintUnformatted(root);
    if (!canon || !(j->canonical = nn_strdup(canon, err))) {
        cJSON_free(canon);
        goto done;
    }
    cJSON_free(canon);
    rc = NN_OK;
done:
    cJSON_Delete(root);
    if (rc != NN_OK)
        nn_job_free(j);
    return rc;
}

int nn_job_load(const char *path, nn_job *out, nn_err *err)
{
    char *text = NULL;
    size_t size = 0;
    if (nn_file_read(path, 16u << 20, &text, &size, err))
        return NN_ERR;
    if (memchr(text, '\0', size)) {
        memset(out, 0, sizeof *out);
        nn_fail(err, "%s: a raw NUL byte at byte %zu (not valid JSON)", path,
                (size_t)((char *)memchr(text, '\0', size) - text) + 1);
        nn_free(text);
        return NN_ERR;
    }
    int rc = nn_job_parse(text, path, out, err);
    nn_free(text);
    return rc;
}

int nn_positions_rows(const nn_positions *p, int n)
{
    return p->kind == NN_POS_ALL ? n : p->kind == NN_POS_LAST ? 1 : p->n;
}

int nn_positions_resolve(const nn_positions *p, int j, int n)
{
    return nn_position_resolve(p->kind == NN_POS_ALL    ? j
                               : p->kind == NN_POS_LAST ? -1
                                                        : p->list[j],
                               n);
}

int nn_job_set_compute(nn_job *j, nn_compute compute, nn_err *err)
{
    if (compute == j->compute)
        return NN_OK;
    size_t at;
    cJSON *root = nn_json_parse(j->canonical, strlen(j->canonical), &at);
    if (!root)
        return nn_fail(err, "job: cannot re-read its own canonical text");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "compute");
    int rc = NN_ERR;
    if (compute == NN_COMPUTE_F32 ||
        cJSON_AddStringToObject(root, "compute", nn_compute_name(compute))) {
        char *canon = cJSON_PrintUnformatted(root);
        char *copy = canon ? nn_strdup(canon, err) : NULL;
        cJSON_free(canon);
        if (copy) {
            nn_free(j->canonical);
            j->canonical = copy;
            j->compute = compute;
            rc = NN_OK;
        }
    }
    if (rc != NN_OK && !err->msg[0])
        nn_fail(err, "job: out of memory setting compute");
    cJSON_Delete(root);
    return rc;
}
