/* Per-prompt texts from the dataset's lines (patchscope_lens' target_field): the dataset file is
 * read again here, lines found by the corpus's line numbers, so every rank gets the same tokens. */
#include "op.h"

#include <stdio.h>
#include <string.h>

/* One JSONL line's field, encoded and appended to all. */
static int encode_line_field(nn_harvest *h, const char *field, const char *what, const char *line,
                             long long line_no, nn_ids *all, nn_err *err)
{
    cJSON *obj = cJSON_Parse(line);
    const cJSON *v = obj ? nn_json_get(obj, field) : NULL;
    nn_ids ids = {0};
    int rc;
    if (!cJSON_IsString(v))
        rc = nn_fail(err, "%s:%lld: no string field '%s' (the %s)", h->job->dataset_path, line_no,
                     field, what);
    else
        rc = nn_tokenizer_encode(h->tok, v->valuestring, strlen(v->valuestring),
                                 h->job->add_special_tokens, &ids, err);
    cJSON_Delete(obj);
    if (!rc && ids.n == 0)
        rc = nn_fail(err, "%s:%lld: field '%s' (the %s) encodes to no tokens", h->job->dataset_path,
                     line_no, field, what);
    for (size_t i = 0; !rc && i < ids.n; i++)
        rc = nn_ids_push(all, ids.ids[i], err);
    nn_ids_free(&ids);
    return rc;
}

int nn_op_read_field(nn_harvest *h, const char *field, const char *what, nn_ids *all,
                     int64_t *offsets, nn_err *err)
{
    const nn_corpus *c = h->c;
    if (!c->source_line || !h->job->dataset_path)
        return nn_fail(err, "the dataset's line numbers are unknown (field '%s')", field);
    if (h->job->dataset_format && strcmp(h->job->dataset_format, "jsonl"))
        return nn_fail(err, "field '%s': the %s comes from a field of a JSONL dataset, not %s",
                       field, what, h->job->dataset_format);
    FILE *f = fopen(h->job->dataset_path, "rb");
    if (!f)
        return nn_fail(err, "%s: cannot open it for the %s", h->job->dataset_path, what);
    char *line = NULL;
    size_t cap = 0, len = 0;
    long long line_no = 0;
    int p = 0, rc = NN_OK, ch = 0;
    offsets[0] = 0;
    while (!rc && p < c->n_prompts && ch != EOF) {
        len = 0;
        line_no++;
        while ((ch = fgetc(f)) != EOF && ch != '\n') {
            if (len + 2 > cap) {
                size_t ncap = cap ? cap * 2 : 4096;
                char *nl = nn_realloc(line, ncap, err);
                if (!nl) {
                    rc = NN_ERR;
                    break;
                }
                line = nl;
                cap = ncap;
            }
            line[len++] = (char)ch;
        }
        if (rc || line_no != c->source_line[p])
            continue;
        line[len] = '\0';
        rc = encode_line_field(h, field, what, line, line_no, all, err);
        offsets[++p] = (int64_t)all->n;
    }
    fclose(f);
    nn_free(line);
    if (!rc && p < c->n_prompts)
        rc = nn_fail(err, "%s: prompt %d's line %lld is past the end of the file",
                     h->job->dataset_path, p, (long long)c->source_line[p]);
    return rc;
}
