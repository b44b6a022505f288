#define _GNU_SOURCE
/* The run's dataset: read, tokenized and broadcast (corpus.h). */
#include "corpus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "job_chat.h"
#include "nn_json.h"

/* Points the corpus view the jobs read at the arrays corpus_data owns. */
static void corpus_link(corpus_data *d)
{
    d->c.tokens = d->tokens.ids;
    d->c.offsets = d->offsets;
    d->c.target_names = (const char *const *)d->names;
    d->c.target_ids = d->target_ids.ids;
    d->c.target_offsets = d->target_offsets;
    d->c.source_line = d->source_line;
}

void nn_corpus_data_free(corpus_data *d)
{
    for (int t = 0; d->names && t < d->c.n_targets; t++)
        nn_free(d->names[t]);
    nn_free(d->names);
    nn_ids_free(&d->tokens);
    nn_free(d->offsets);
    nn_free(d->source_line);
    nn_free(d->text_offsets);
    nn_free(d->text);
    nn_ids_free(&d->target_ids);
    nn_free(d->target_offsets);
    memset(d, 0, sizeof *d);
}

/* Targets of one prompt: {"name": "word" | ["word", ...]} with the same names as the first. */
static int prompt_targets(corpus_data *d, nn_tokenizer *tok, const char *json, const char *path,
                          int64_t line, nn_err *err)
{
    cJSON *t = cJSON_Parse(json);
    int rc = NN_ERR;
    if (!cJSON_IsObject(t) || cJSON_GetArraySize(t) < 1) {
        nn_fail(err, "%s:%lld: the targets must be an object {\"name\": [\"word\", ...]}", path,
                (long long)line);
        goto done;
    }
    if (!d->names) {
        d->c.n_targets = cJSON_GetArraySize(t);
        if (d->c.n_targets > 64) {
            nn_fail(err, "%s:%lld: at most 64 targets per prompt", path, (long long)line);
            goto done;
        }
        if (!(d->names = nn_calloc((size_t)d->c.n_targets, sizeof *d->names, err)))
            goto done;
        int k = 0;
        const cJSON *e;
        cJSON_ArrayForEach (e, t)
            if (!(d->names[k++] = nn_strdup(e->string, err)))
                goto done;
    }
    if (cJSON_GetArraySize(t) != d->c.n_targets) {
        nn_fail(err, "%s:%lld: the targets name %d entries, the first prompt's name %d", path,
                (long long)line, cJSON_GetArraySize(t), d->c.n_targets);
        goto done;
    }
    for (int k = 0; k < d->c.n_targets; k++) {
        const cJSON *e = nn_json_get(t, d->names[k]), *w;
        if (!e) {
            nn_fail(err, "%s:%lld: target '%s' (named by the first prompt) is missing", path,
                    (long long)line, d->names[k]);
            goto done;
        }
        const char *words[256];
        int n = 0;
        if (cJSON_IsString(e))
            words[n++] = e->valuestring;
        else if (cJSON_IsArray(e)) {
            cJSON_ArrayForEach (w, e) {
                if (!cJSON_IsString(w) || n == 256) {
                    nn_fail(err, "%s:%lld: target '%s' must be a word or a list of words", path,
                            (long long)line, d->names[k]);
                    goto done;
                }
                words[n++] = w->valuestring;
            }
        } else {
            nn_fail(err, "%s:%lld: target '%s' must be a word or a list of words", path,
                    (long long)line, d->names[k]);
            goto done;
        }
        if (n == 0) {
            nn_fail(err, "%s:%lld: target '%s' is an empty list of words", path, (long long)line,
                    d->names[k]);
            goto done;
        }
        nn_ids ids = {0};
        if (nn_first_tokens(tok, words, n, &ids, err)) {
            nn_ids_free(&ids);
            nn_err_prefix(err, "%s:%lld: target '%s'", path, (long long)line, d->names[k]);
            goto done;
        }
        for (size_t i = 0; i < ids.n; i++)
            if (nn_ids_push(&d->target_ids, ids.ids[i], err)) {
                nn_ids_free(&ids);
                goto done;
            }
        nn_ids_free(&ids);
        size_t slot = (size_t)d->c.n_prompts * (size_t)d->c.n_targets + (size_t)k + 1;
        d->target_offsets[slot] = (int64_t)d->target_ids.n;
    }
    rc = NN_OK;
done:
    cJSON_Delete(t);
    return rc;
}

/* Room in d->text for need bytes (a rendered conversation may be longer than its line). */
static int grow_text(corpus_data *d, size_t need, nn_err *err)
{
    if (need + 1 <= d->text_cap)
        return NN_OK;
    char *t = nn_realloc(d->text, need + 1, err);
    if (!t)
        return NN_ERR;
    d->text = t;
    d->text_cap = need + 1;
    return NN_OK;
}

int nn_corpus_tokenize(const nn_job *job, const char *job_path, const nn_model *m,
                       nn_tokenizer *tok, corpus_data *d, nn_err *err)
{
    memset(d, 0, sizeof *d);
    nn_dataset ds;
    if (nn_dataset_read(job->dataset_path, job->dataset_format, job->dataset_field,
                        job->targets_field, job->max_line_bytes, &ds, err))
        return nn_err_prefix(err, "%s: dataset.path", job_path);
    /* By default a prompt may fill the context, or a batch when the context is longer. */
    int max_tokens = job->max_tokens                            ? job->max_tokens
                     : m->cfg.max_positions < job->batch_tokens ? m->cfg.max_positions
                                                                : job->batch_tokens;
    int rc = NN_ERR;
    nn_chat_template *chat = NULL; /* opened at the first conversation line */
    nn_chat_options chat_opt;
    char *rendered = NULL;
    if (max_tokens > m->cfg.max_positions) {
        nn_fail(err, "%s: dataset.max_tokens %d exceeds the model's context of %d positions",
                job_path, max_tokens, m->cfg.max_positions);
        goto done;
    }
    if (max_tokens > job->batch_tokens) {
        nn_fail(err,
                "%s: dataset.max_tokens %d exceeds batch_tokens %d (a prompt must fit in a "
                "batch): set dataset.max_tokens <= %d or raise batch_tokens",
                job_path, max_tokens, job->batch_tokens, job->batch_tokens);
        goto done;
    }
    if (!(d->offsets = nn_malloc((ds.n + 1) * sizeof *d->offsets, err)) ||
        !(d->source_line = nn_malloc(ds.n * sizeof *d->source_line, err)) ||
        !(d->text_offsets = nn_malloc((ds.n + 1) * sizeof *d->text_offsets, err)) ||
        !(d->text = nn_malloc((d->text_cap = (size_t)ds.text_offsets[ds.n] + 1), err)) ||
        (job->targets_field &&
         !(d->target_offsets = nn_calloc(ds.n * 64 + 1, sizeof *d->target_offsets, err))))
        goto done;
    d->offsets[0] = d->text_offsets[0] = 0;
    for (size_t i = 0; i < ds.n; i++) {
        const char *text = ds.text + ds.text_offsets[i];
        size_t len = (size_t)(ds.text_offsets[i + 1] - ds.text_offsets[i]);
        nn_ids ids = {0};
        nn_free(rendered);
        rendered = NULL;
        if (ds.is_chat && ds.is_chat[i]) { /* a conversation: the chat template's text */
            if ((!chat && nn_job_chat_open(job, &chat, &chat_opt, err)) ||
                nn_chat_encode(chat, tok, text, len, &chat_opt, &ids, &rendered, err)) {
                nn_err_prefix(err, "%s:%lld", job->dataset_path, (long long)ds.source_line[i]);
                goto done;
            }
            text = rendered;
            len = strlen(rendered);
        } else if (nn_tokenizer_encode(tok, text, len, job->add_special_tokens, &ids, err)) {
            nn_ids_free(&ids);
            nn_err_prefix(err, "%s:%lld", job->dataset_path, (long long)ds.source_line[i]);
            goto done;
        }
        if (ids.n == 0) {
            nn_ids_free(&ids);
            nn_fail(err, "%s:%lld: the prompt encodes to no tokens", job->dataset_path,
                    (long long)ds.source_line[i]);
            goto done;
        }
        for (size_t k = 0; k < ids.n; k++)
            if (ids.ids[k] < 0 || ids.ids[k] >= m->cfg.vocab_size) {
                nn_fail(err,
                        "%s:%lld: token id %d is outside the model's vocabulary (vocab_size %d): "
                        "the tokenizer does not belong to %s",
                        job->dataset_path, (long long)ds.source_line[i], ids.ids[k],
                        m->cfg.vocab_size, job->model);
                nn_ids_free(&ids);
                goto done;
            }
        if ((int)ids.n > max_tokens) {
            if (job->too_long == NN_TOO_LONG_ERROR) {
                nn_fail(err,
                        "%s:%lld: the prompt has %zu tokens, more than max_tokens %d (set "
                        "dataset.too_long to \"truncate\" or \"skip\")",
                        job->dataset_path, (long long)ds.source_line[i], ids.n, max_tokens);
                nn_ids_free(&ids);
                goto done;
            }
            if (job->too_long == NN_TOO_LONG_SKIP) {
                d->n_skipped++;
                nn_ids_free(&ids);
                continue;
            }
            ids.n = (size_t)max_tokens;
            d->n_truncated++;
        }
        int p = d->c.n_prompts;
        if (ds.targets && job->targets_field) {
            if (prompt_targets(d, tok, ds.targets[i], job->dataset_path, ds.source_line[i], err)) {
                nn_ids_free(&ids);
                goto done;
            }
        }
        for (size_t k = 0; k < ids.n; k++)
            if (nn_ids_push(&d->tokens, ids.ids[k], err)) {
                nn_ids_free(&ids);
                goto done;
            }
        nn_ids_free(&ids);
        if (grow_text(d, (size_t)d->text_offsets[p] + len, err))
            goto done;
        memcpy(d->text + d->text_offsets[p], text, len);
        d->text_offsets[p + 1] = d->text_offsets[p] + (int64_t)len;
        d->source_line[p] = ds.source_line[i];
        d->offsets[p + 1] = (int64_t)d->tokens.n;
        d->c.n_prompts++;
    }
    if (d->c.n_prompts == 0) {
        nn_fail(err, "%s: no prompts left (all were too long and skipped)", job->dataset_path);
        goto done;
    }
    corpus_link(d);
    rc = NN_OK;
done:
    nn_free(rendered);
    nn_chat_template_free(chat);
    nn_dataset_free(&ds);
    if (rc)
        nn_corpus_data_free(d);
    return rc;
}

int nn_corpus_bcast(const nn_comm *cm, corpus_data *d, nn_err *err)
{
    if (!cm->mpi)
        return NN_OK;
    int64_t n[6] = {0};
    if (cm->rank == 0) {
        int64_t P = d->c.n_prompts, T = d->c.n_targets;
        n[0] = P;
        n[1] = d->offsets[P];
        n[2] = d->text_offsets[P];
        n[3] = T;
        n[4] = T ? d->target_offsets[P * T] : 0;
        n[5] = ((int64_t)d->n_truncated << 32) | (uint32_t)d->n_skipped;
    }
    nn_comm_bcast(cm, n, sizeof n);
    size_t P = (size_t)n[0], N = (size_t)n[1], B = (size_t)n[2], T = (size_t)n[3],
           NT = (size_t)n[4];
    char *names = NULL;
    size_t names_len = 0;
    if (cm->rank == 0)
        for (size_t t = 0; t < T; t++)
            names_len += strlen(d->names[t]) + 1;
    nn_comm_bcast(cm, &names_len, sizeof names_len);
    if (cm->rank != 0) {
        memset(d, 0, sizeof *d);
        d->c.n_prompts = (int)P;
        d->c.n_targets = (int)T;
        d->n_truncated = (int)(n[5] >> 32);
        d->n_skipped = (int)(n[5] & 0xffffffff);
        if (!(d->tokens.ids = nn_malloc(N * sizeof *d->tokens.ids + 1, err)) ||
            !(d->offsets = nn_malloc((P + 1) * sizeof *d->offsets, err)) ||
            !(d->source_line = nn_malloc(P * sizeof *d->source_line + 1, err)) ||
            !(d->text_offsets = nn_malloc((P + 1) * sizeof *d->text_offsets, err)) ||
            !(d->text = nn_malloc(B + 1, err)) ||
            (T && (!(d->names = nn_calloc(T, sizeof *d->names, err)) ||
                   !(d->target_ids.ids = nn_malloc(NT * sizeof *d->target_ids.ids + 1, err)) ||
                   !(d->target_offsets = nn_malloc((P * T + 1) * sizeof *d->target_offsets, err)))))
            return NN_ERR;
    }
    if (!(names = nn_malloc(names_len + 1, err)))
        return NN_ERR;
    if (cm->rank == 0)
        for (size_t t = 0, at = 0; t < T; t++) {
            size_t k = strlen(d->names[t]) + 1;
            memcpy(names + at, d->names[t], k);
            at += k;
        }
    nn_comm_bcast(cm, d->tokens.ids, N * sizeof *d->tokens.ids);
    nn_comm_bcast(cm, d->offsets, (P + 1) * sizeof *d->offsets);
    nn_comm_bcast(cm, d->source_line, P * sizeof *d->source_line);
    nn_comm_bcast(cm, d->text_offsets, (P + 1) * sizeof *d->text_offsets);
    nn_comm_bcast(cm, d->text, B);
    nn_comm_bcast(cm, names, names_len);
    if (T) {
        nn_comm_bcast(cm, d->target_ids.ids, NT * sizeof *d->target_ids.ids);
        nn_comm_bcast(cm, d->target_offsets, (P * T + 1) * sizeof *d->target_offsets);
    }
    int rc = NN_OK;
    if (cm->rank != 0)
        for (size_t t = 0, at = 0; t < T && rc == NN_OK; t++) {
            if (!(d->names[t] = nn_strdup(names + at, err)))
                rc = NN_ERR;
            else
                at += strlen(names + at) + 1;
        }
    nn_free(names);
    corpus_link(d);
    return rc;
}
