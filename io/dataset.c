#include "dataset.h"

#include <stdio.h>
#include <string.h>

#include "nn_json.h"

void nn_dataset_free(nn_dataset *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->targets && i < d->n; i++)
        nn_free(d->targets[i]);
    nn_free(d->targets);
    nn_free(d->is_chat);
    nn_free(d->text);
    nn_free(d->text_offsets);
    nn_free(d->source_line);
    memset(d, 0, sizeof *d);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int grow(nn_dataset *d, size_t *cap, nn_err *err)
{
    if (d->n + 1 < *cap)
        return NN_OK;
    size_t c = *cap ? *cap * 2 : 1024;
    int64_t *o = nn_realloc(d->text_offsets, (c + 1) * sizeof *o, err);
    if (!o)
        return NN_ERR;
    d->text_offsets = o;
    int64_t *l = nn_realloc(d->source_line, c * sizeof *l, err);
    if (!l)
        return NN_ERR;
    d->source_line = l;
    char **t = nn_realloc(d->targets, c * sizeof *t, err);
    if (!t)
        return NN_ERR;
    d->targets = t;
    if (d->is_chat) {
        bool *ch = nn_realloc(d->is_chat, c * sizeof *ch, err);
        if (!ch)
            return NN_ERR;
        memset(ch + *cap, 0, (c - *cap) * sizeof *ch);
        d->is_chat = ch;
    }
    *cap = c;
    return NN_OK;
}

int nn_dataset_read(const char *path, const char *format, const char *field,
                    const char *targets_field, size_t max_line_bytes, nn_dataset *out, nn_err *err)
{
    memset(out, 0, sizeof *out);
    bool jsonl;
    if (!format)
        jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
    else if (!strcmp(format, "jsonl"))
        jsonl = true;
    else if (!strcmp(format, "text"))
        jsonl = false;
    else
        return nn_fail(err, "%s: dataset format '%s' is not jsonl or text", path, format);
    if (!jsonl && targets_field)
        return nn_fail(err, "%s: a plain-text dataset has no targets; use JSONL", path);
    if (!max_line_bytes)
        max_line_bytes = NN_DATASET_MAX_LINE_BYTES;
    nn_mapped_file file;
    if (nn_file_map(path, &file, err))
        return NN_ERR;
    const char *buf = (const char *)file.data;
    size_t size = file.size;
    /* Every line within the limit before any allocation (a hostile file of one huge line costs a
     * scan, not its size in memory and a parse). */
    int64_t line_no = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(buf + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (buf + pos)) : size - pos;
        line_no++;
        if (len > max_line_bytes) {
            nn_fail(err, "%s:%lld: line of %zu bytes exceeds dataset.max_line_bytes = %zu", path,
                    (long long)line_no, len, max_line_bytes);
            nn_file_unmap(&file);
            return NN_ERR;
        }
        pos += len + (nl ? 1 : 0);
    }
    int rc = NN_ERR;
    size_t cap = 0, text_len = 0;
    /* The prompts never exceed the file's size, so one buffer of that size holds them all. */
    if (!(out->text = nn_malloc(size + 1, err)) || grow(out, &cap, err))
        goto done;
    out->text_offsets[0] = 0;
    line_no = 0;
    for (size_t pos = 0; pos < size;) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + (nl ? 1 : 0);
        line_no++;
        if (len && line[len - 1] == '\r')
            len--;
        if (line_no == 1 && len >= 3 && !memcmp(line, "\xef\xbb\xbf", 3)) {
            line += 3; /* a byte order mark is not text (as Python's utf-8-sig) */
            len -= 3;
        }
        size_t bad = nn_utf8_validate(line, len);
        if (bad != len) {
            nn_fail(err, "%s:%lld: invalid UTF-8 at byte %zu of the line", path, (long long)line_no,
                    bad + 1);
            goto done;
        }
        size_t blank = 0;
        while (blank < len && (line[blank] == ' ' || line[blank] == '\t'))
            blank++;
        if (blank == len)
            continue;
        if (grow(out, &cap, err))
            goto done;
        const char *prompt = line;
        size_t prompt_len = len;
        char *targets = NULL;
        cJSON *obj = NULL;
        if (jsonl) {
            const char *nul = memchr(line, '\0', len);
            if (nul) {
                nn_fail(err,
                        "%s:%lld: a raw NUL byte at byte %zu of the line (not valid JSON; it "
                        "would silently cut the prompt short)",
                        path, (long long)line_no, (size_t)(nul - line) + 1);
                goto done;
            }
            if (nn_json_has_nul_escape(line, len)) {
                nn_fail(err, "%s:%lld: a string holds \\u0000, which would silently cut it short",
                        path, (long long)line_no);
                goto done;
            }
            size_t at;
            obj = nn_json_parse(line, len, &at);
            if (!obj || !cJSON_IsObject(obj)) {
                if (obj)
                    nn_fail(err, "%s:%lld: not a JSON object", path, (long long)line_no);
                else
                    nn_fail(err, "%s:%lld: not a JSON object: malformed near byte %zu of the line",
                            path, (long long)line_no, at + 1);
                cJSON_Delete(obj);
                goto done;
            }
            char where[1024];
            snprintf(where, sizeof where, "%s:%lld", path, (long long)line_no);
            if (nn_json_unique_keys(obj, where, err)) {
                cJSON_Delete(obj);
                goto done;
            }
            const cJSON *v = nn_json_get(obj, field);
            const cJSON *msgs = nn_json_get(obj, "messages");
            bool chat =
                !cJSON_IsString(v) && cJSON_IsArray(msgs) && (!v || !strcmp(field, "messages"));
            if (!cJSON_IsString(v) && !chat) {
                cJSON_Delete(obj);
                nn_fail(err,
                        "%s:%lld: field '%s' missing or not a string (or give a list "
                        "\"messages\" for a chat template to render)",
                        path, (long long)line_no, field);
                goto done;
            }
            if (chat && !out->is_chat && !(out->is_chat = nn_calloc(cap, sizeof(bool), err))) {
                cJSON_Delete(obj);
                goto done;
            }
            if (out->is_chat)
                out->is_chat[out->n] = chat;
            prompt = chat ? line : v->valuestring;
            prompt_len = chat ? len : strlen(prompt);
            if (targets_field) {
                const cJSON *t = nn_json_get(obj, targets_field);
                if (!t) {
                    cJSON_Delete(obj);
                    nn_fail(err, "%s:%lld: field '%s' (the targets) is missing", path,
                            (long long)line_no, targets_field);
                    goto done;
                }
                if (!(targets = cJSON_PrintUnformatted(t))) {
                    cJSON_Delete(obj);
                    nn_fail(err, "out of memory");
                    goto done;
                }
            }
        }
        memcpy(out->text + text_len, prompt, prompt_len);
        text_len += prompt_len;
        out->targets[out->n] = NULL;
        if (targets) {
            out->targets[out->n] = nn_strdup(targets, err);
            cJSON_free(targets);
            if (!out->targets[out->n]) {
                cJSON_Delete(obj);
                goto done;
            }
        }
        cJSON_Delete(obj);
        out->source_line[out->n] = line_no;
        out->text_offsets[++out->n] = (int64_t)text_len;
    }
    if (out->n == 0) {
        nn_fail(err, "%s: the dataset has no prompts", path);
        goto done;
    }
    rc = NN_OK;
done:
    nn_file_unmap(&file);
    if (rc != NN_OK)
        nn_dataset_free(out);
    return rc;
}
