#include "identity.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "fingerprint.h"
#include "nn_json.h"
#include "op.h"

/* How a field's value is read from the struct. */
typedef enum { ID_INT, ID_BOOL, ID_FLOAT, ID_U64, ID_STRING, ID_CUSTOM } id_type;

typedef struct id_field {
    const char *name; /* as the job file spells it */
    id_type type;
    size_t offset;
    /* ID_CUSTOM: the value as JSON (NULL with err set on failure) */
    cJSON *(*custom)(const void *owner, nn_err *err);
} id_field;

static cJSON *job_dtype(const void *owner, nn_err *err);
static cJSON *op_kind(const void *owner, nn_err *err);
static cJSON *op_hooks(const void *owner, nn_err *err);
static cJSON *op_positions(const void *owner, nn_err *err);
static cJSON *op_vector(const void *owner, nn_err *err);
static cJSON *op_contrast(const void *owner, nn_err *err);
static cJSON *op_steer_generate(const void *owner, nn_err *err);
static cJSON *op_max_new_tokens(const void *owner, nn_err *err);

#define JOB_FIELD(name, type, member) {name, type, offsetof(nn_job, member), NULL}
#define OP_FIELD(name, type, member) {name, type, offsetof(nn_op, member), NULL}
#define JOB_CUSTOM(name, fn) {name, ID_CUSTOM, 0, fn}
#define OP_CUSTOM(name, fn) {name, ID_CUSTOM, 0, fn}

/* ---- The job's fields that change results: add one line per new field. ----
 * Not here, on purpose: model, tokenizer, dataset.* and output (the weights and the tokenized
 * dataset are compared by content), parallel.pipeline_stages (the layout), and
 * dataset.max_line_bytes (a reading limit). */
static const id_field job_fields[] = {
    JOB_CUSTOM("dtype", job_dtype),
    /* These two set the plan: which prompts each shard the ledger counts holds. */
    JOB_FIELD("batch_tokens", ID_INT, batch_tokens),
    JOB_FIELD("shard_batches", ID_INT, shard_batches),
    /* How conversations are rendered: dataset lines are compared through their tokens too, but
     * the it_repeat target is rendered from these alone. */
    JOB_FIELD("chat.template", ID_STRING, chat_template),
    JOB_FIELD("chat.now", ID_STRING, chat_now),
    JOB_FIELD("chat.add_generation_prompt", ID_BOOL, chat_add_generation_prompt),
    JOB_FIELD("chat.continue_final_message", ID_BOOL, chat_continue_final_message),
    JOB_FIELD("chat.transformers", ID_INT, chat_transformers),
};

/* ---- Every operation's fields that change results: add one line per new field. ---- */
static const id_field op_fields[] = {
    OP_CUSTOM("op", op_kind),
    OP_CUSTOM("hooks", op_hooks),
    OP_FIELD("layers", ID_STRING, layers),
    OP_CUSTOM("positions", op_positions),
    OP_FIELD("top_k", ID_INT, top_k),
    OP_FIELD("targets", ID_BOOL, targets),
    OP_FIELD("inverse", ID_BOOL, inverse),
    OP_FIELD("target.prompt", ID_STRING, target_prompt),
    OP_FIELD("target.index", ID_INT, index),
    OP_FIELD("target.it_repeat", ID_BOOL, it_repeat),
    OP_FIELD("target.it_repeat.add_user_instr", ID_BOOL, it_add_user_instr),
    OP_FIELD("target.it_repeat.use_system_prompt", ID_BOOL, it_use_system_prompt),
    OP_FIELD("target.it_repeat.complete_prompt", ID_BOOL, it_complete_prompt),
    OP_CUSTOM("vector", op_vector), /* the .npy file's contents, not its name */
    OP_CUSTOM("contrast", op_contrast),
    OP_FIELD("factor", ID_FLOAT, factor),
    OP_CUSTOM("generate", op_steer_generate),       /* steer */
    OP_CUSTOM("max_new_tokens", op_max_new_tokens), /* generate */
    OP_FIELD("temperature", ID_FLOAT, temperature),
    OP_FIELD("top_p", ID_FLOAT, top_p),
    OP_FIELD("seed", ID_U64, seed),
};

static cJSON *job_dtype(const void *owner, nn_err *err)
{
    static const char *names[] = {"float32", "float16", "bfloat16"};
    return cJSON_CreateString(names[((const nn_job *)owner)->dtype]);
}

static cJSON *op_kind(const void *owner, nn_err *err)
{
    return cJSON_CreateString(nn_op_name(owner));
}

static cJSON *op_hooks(const void *owner, nn_err *err)
{
    const nn_op *op = owner;
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < op->n_hooks; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(nn_hook_point_name(op->hooks[i])));
    return a;
}

static cJSON *op_positions(const void *owner, nn_err *err)
{
    const nn_positions *p = &((const nn_op *)owner)->positions;
    if (p->kind != NN_POS_LIST)
        return cJSON_CreateString(p->kind == NN_POS_ALL ? "all" : "last");
    return cJSON_CreateIntArray(p->list, p->n);
}

static cJSON *op_vector(const void *owner, nn_err *err)
{
    const nn_op *op = owner;
    if (!op->vector)
        return cJSON_CreateNull();
    char fp[64];
    if (nn_file_fingerprint(op->vector, fp, sizeof fp, err)) {
        nn_err_prefix(err, "steering vector");
        return NULL;
    }
    return cJSON_CreateString(fp);
}

static cJSON *op_contrast(const void *owner, nn_err *err)
{
    const nn_op *op = owner;
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < 2; k++) {
        cJSON *set = cJSON_CreateArray();
        for (int i = 0; set && i < op->n_contrast[k]; i++)
            cJSON_AddItemToArray(set, cJSON_CreateString(op->contrast[k][i]));
        cJSON_AddItemToArray(a, set);
    }
    return a;
}

/* One member, op->generate, holds steer's "generate" and generate's "max_new_tokens" (the class's
 * generate_field names which): each name gets its own entry so that a refusal names the field as
 * the job file spells it. */
static bool generate_named(const nn_op *op, const char *name)
{
    return op->cls->generate_field && !strcmp(op->cls->generate_field, name);
}

static cJSON *op_steer_generate(const void *owner, nn_err *err)
{
    const nn_op *op = owner;
    return generate_named(op, "generate") ? cJSON_CreateNumber(op->generate) : cJSON_CreateNull();
}

static cJSON *op_max_new_tokens(const void *owner, nn_err *err)
{
    const nn_op *op = owner;
    return generate_named(op, "max_new_tokens") ? cJSON_CreateNumber(op->generate)
                                                : cJSON_CreateNull();
}

static cJSON *field_value(const id_field *f, const void *owner, nn_err *err)
{
    const char *at = (const char *)owner + f->offset;
    switch (f->type) {
    case ID_INT: {
        int v;
        memcpy(&v, at, sizeof v);
        return cJSON_CreateNumber(v);
    }
    case ID_BOOL:
        return cJSON_CreateBool(*(const bool *)at);
    case ID_FLOAT: {
        float v;
        memcpy(&v, at, sizeof v);
        return cJSON_CreateNumber((double)v);
    }
    case ID_U64: {
        uint64_t v;
        memcpy(&v, at, sizeof v);
        char s[32];
        snprintf(s, sizeof s, "%llu", (unsigned long long)v); /* exact beyond 2^53 */
        return cJSON_CreateString(s);
    }
    case ID_STRING: {
        const char *s;
        memcpy(&s, at, sizeof s);
        return s ? cJSON_CreateString(s) : cJSON_CreateNull();
    }
    case ID_CUSTOM:
        return f->custom(owner, err);
    }
    return NULL;
}

static int add_fields(cJSON *obj, const id_field *fields, size_t n, const void *owner, nn_err *err)
{
    for (size_t i = 0; i < n; i++) {
        cJSON *v = field_value(&fields[i], owner, err);
        if (!v)
            return err->msg[0] ? NN_ERR : nn_fail(err, "out of memory");
        cJSON_AddItemToObject(obj, fields[i].name, v);
    }
    return NN_OK;
}

char *nn_job_identity(const nn_job *job, nn_err *err)
{
    cJSON *root = cJSON_CreateObject(), *ops = cJSON_CreateArray();
    char *json = NULL, *out = NULL;
    int rc = root && ops ? NN_OK : nn_fail(err, "out of memory");
    if (rc == NN_OK)
        rc = add_fields(root, job_fields, sizeof job_fields / sizeof *job_fields, job, err);
    for (int i = 0; rc == NN_OK && i < job->n_ops; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(ops, o);
        rc = add_fields(o, op_fields, sizeof op_fields / sizeof *op_fields, &job->ops[i], err);
        /* the fields only this op's class has (jobs/op.h) */
        if (rc == NN_OK && job->ops[i].cls->identity)
            rc = job->ops[i].cls->identity(&job->ops[i], o, err);
    }
    if (rc == NN_OK) {
        cJSON_AddItemToObject(root, "operations", ops);
        ops = NULL;
        if (!(json = cJSON_PrintUnformatted(root)))
            rc = nn_fail(err, "out of memory");
    }
    if (rc == NN_OK)
        out = nn_strdup(json, err);
    cJSON_free(json);
    cJSON_Delete(ops);
    cJSON_Delete(root);
    return out;
}

/* A field's value as it would be written in a job file, for a message. */
static void shown(const cJSON *v, char *buf, size_t cap)
{
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(buf, cap, "%s", s ? s : "absent");
    if (strlen(buf) > 120)
        memcpy(buf + 110, "...", 4);
    cJSON_free(s);
}

static int differs(const char *field, const cJSON *a, const cJSON *b, const char *store,
                   const char *job_path, nn_err *err)
{
    char va[128], vb[128];
    shown(a, va, sizeof va);
    shown(b, vb, sizeof vb);
    return nn_fail(err,
                   "%s was made by a different job: %s is %s in the store, %s in %s (--resume "
                   "needs every field that changes results unchanged, docs/jobs.md; or remove "
                   "the .partial and its .ledger to start over)",
                   store, field, va, vb, job_path);
}

static int compare_named(const char *name, const cJSON *a, const cJSON *b, const char *prefix,
                         const char *store, const char *job_path, nn_err *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, name),
                *y = cJSON_GetObjectItemCaseSensitive(b, name);
    /* a field the store predates holds its default, which the tables' values equal */
    if (x && !cJSON_Compare(x, y, true)) {
        char full[128];
        snprintf(full, sizeof full, "%s%s", prefix, name);
        return differs(full, x, y, store, job_path, err);
    }
    return NN_OK;
}

/* The fields the op's class adds (jobs/op.h), by the class the current job names. */
static int compare_class_fields(const cJSON *a, const cJSON *b, const char *prefix,
                                const char *store, const char *job_path, nn_err *err)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(b, "op");
    const nn_op_class *cls = cJSON_IsString(name) ? nn_op_class_find(name->valuestring) : NULL;
    for (const char *const *f = cls ? cls->identity_fields : NULL; f && *f; f++)
        if (compare_named(*f, a, b, prefix, store, job_path, err))
            return NN_ERR;
    return NN_OK;
}

static int compare_fields(const id_field *fields, size_t n, const cJSON *a, const cJSON *b,
                          const char *prefix, const char *store, const char *job_path, nn_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, fields[i].name),
                    *y = cJSON_GetObjectItemCaseSensitive(b, fields[i].name);
        /* a field the store predates holds its default, which the tables' values equal */
        if (x && !cJSON_Compare(x, y, true)) {
            char name[128];
            snprintf(name, sizeof name, "%s%s", prefix, fields[i].name);
            return differs(name, x, y, store, job_path, err);
        }
    }
    return NN_OK;
}

int nn_identity_compare(const char *stored, const char *current, const char *store,
                        const char *job_path, nn_err *err)
{
    cJSON *a = cJSON_Parse(stored), *b = cJSON_Parse(current);
    int rc = NN_OK;
    if (!a || !b) {
        rc = nn_fail(err, "%s: the job identity recorded in the store is unreadable", store);
        goto done;
    }
    rc = compare_fields(job_fields, sizeof job_fields / sizeof *job_fields, a, b, "", store,
                        job_path, err);
    const cJSON *oa = cJSON_GetObjectItemCaseSensitive(a, "operations"),
                *ob = cJSON_GetObjectItemCaseSensitive(b, "operations");
    int na = cJSON_GetArraySize(oa), nb = cJSON_GetArraySize(ob);
    if (rc == NN_OK && na != nb) {
        cJSON *x = cJSON_CreateNumber(na), *y = cJSON_CreateNumber(nb);
        rc = differs("the number of operations", x, y, store, job_path, err);
        cJSON_Delete(x);
        cJSON_Delete(y);
    }
    for (int i = 0; rc == NN_OK && i < na; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "operations[%d].", i);
        rc = compare_fields(op_fields, sizeof op_fields / sizeof *op_fields,
                            cJSON_GetArrayItem(oa, i), cJSON_GetArrayItem(ob, i), prefix, store,
                            job_path, err);
        if (rc == NN_OK)
            rc = compare_class_fields(cJSON_GetArrayItem(oa, i), cJSON_GetArrayItem(ob, i), prefix,
                                      store, job_path, err);
    }
done:
    cJSON_Delete(a);
    cJSON_Delete(b);
    return rc;
}
