#define _GNU_SOURCE
#include "run.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "comm.h"
#include "dataset.h"
#include "h5_sink.h"
#include "harvest.h"
#include "ledger.h"
#include "nn_json.h"
#include "pipeline.h"
#include "plan.h"
#include "sae_store.h"
#include "trace.h"

#ifndef NNTERP_VERSION
#define NNTERP_VERSION "dev"
#endif

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = sig;
}

/* The dataset, tokenized, with its targets' first tokens. */
typedef struct corpus_data {
    nn_corpus c;
    nn_ids tokens; /* every prompt's ids, back to back */
    int64_t *offsets;
    int64_t *source_line;  /* [P] */
    int64_t *text_offsets; /* [P + 1] into text */
    char *text;
    char **names;
    nn_ids target_ids;
    int64_t *target_offsets;
    int n_truncated, n_skipped;
} corpus_data;

/* Points the corpus view the jobs read at the arrays corpus_data owns. */
static void corpus_link(corpus_data *d)
{
    d->c.tokens = d->tokens.ids;
    d->c.offsets = d->offsets;
    d->c.target_names = (const char *const *)d->names;
    d->c.target_ids = d->target_ids.ids;
    d->c.target_offsets = d->target_offsets;
}

static void corpus_free(corpus_data *d)
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

static int tokenize_dataset(const nn_job *job, const nn_model *m, nn_tokenizer *tok, corpus_data *d,
                            nn_err *err)
{
    memset(d, 0, sizeof *d);
    nn_dataset ds;
    if (nn_dataset_read(job->dataset_path, job->dataset_format, job->dataset_field,
                        job->targets_field, job->max_line_bytes, &ds, err))
        return NN_ERR;
    int max_tokens = job->max_tokens ? job->max_tokens : m->cfg.max_positions;
    int rc = NN_ERR;
    if (max_tokens > m->cfg.max_positions) {
        nn_fail(err, "dataset.max_tokens %d exceeds the model's context of %d positions",
                max_tokens, m->cfg.max_positions);
        goto done;
    }
    if (max_tokens > job->batch_tokens) {
        nn_fail(err, "batch_tokens %d is smaller than a prompt may be (max_tokens %d)",
                job->batch_tokens, max_tokens);
        goto done;
    }
    if (!(d->offsets = nn_malloc((ds.n + 1) * sizeof *d->offsets, err)) ||
        !(d->source_line = nn_malloc(ds.n * sizeof *d->source_line, err)) ||
        !(d->text_offsets = nn_malloc((ds.n + 1) * sizeof *d->text_offsets, err)) ||
        !(d->text = nn_malloc((size_t)ds.text_offsets[ds.n] + 1, err)) ||
        (job->targets_field &&
         !(d->target_offsets = nn_calloc(ds.n * 64 + 1, sizeof *d->target_offsets, err))))
        goto done;
    d->offsets[0] = d->text_offsets[0] = 0;
    for (size_t i = 0; i < ds.n; i++) {
        const char *text = ds.text + ds.text_offsets[i];
        size_t len = (size_t)(ds.text_offsets[i + 1] - ds.text_offsets[i]);
        nn_ids ids = {0};
        if (nn_tokenizer_encode(tok, text, len, job->add_special_tokens, &ids, err)) {
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
    nn_dataset_free(&ds);
    if (rc)
        corpus_free(d);
    return rc;
}

/* Rank 0 tokenized the dataset; the other ranks receive it whole. */
static int bcast_corpus(const nn_comm *cm, corpus_data *d, nn_err *err)
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

/* Batches: contiguous prompts up to batch_tokens tokens; shards: shard_batches batches. */
typedef struct plan {
    int *batch_start; /* [n_batches + 1] prompt index */
    int n_batches, n_shards, max_prompts, shard_batches;
} plan;

/* Shard s is batches [b0, b1). */
static void shard_range(const plan *pl, int s, int *b0, int *b1)
{
    *b0 = s * pl->shard_batches < pl->n_batches ? s * pl->shard_batches : pl->n_batches;
    *b1 = *b0 + pl->shard_batches < pl->n_batches ? *b0 + pl->shard_batches : pl->n_batches;
}

static int make_plan(const nn_job *job, const nn_corpus *c, plan *pl, nn_err *err)
{
    memset(pl, 0, sizeof *pl);
    if (!(pl->batch_start = nn_malloc(((size_t)c->n_prompts + 1) * sizeof(int), err)))
        return NN_ERR;
    pl->batch_start[0] = 0;
    int p = 0;
    while (p < c->n_prompts) {
        int q = p;
        while (q < c->n_prompts && c->offsets[q + 1] - c->offsets[p] <= job->batch_tokens)
            q++;
        pl->batch_start[++pl->n_batches] = q;
        if (q - p > pl->max_prompts)
            pl->max_prompts = q - p;
        p = q;
    }
    pl->shard_batches = job->shard_batches;
    pl->n_shards = (pl->n_batches + job->shard_batches - 1) / job->shard_batches;
    return NN_OK;
}

static int write_corpus(nn_h5file *f, const nn_sink *sink, const corpus_data *d, nn_err *err)
{
    const nn_corpus *c = &d->c;
    uint64_t P = (uint64_t)c->n_prompts, P1 = P + 1, B = (uint64_t)d->text_offsets[P];
    if (nn_write_token_index(c->tokens, c->offsets, c->n_prompts, sink, err) ||
        nn_h5_write(f, "/prompts/text_offsets", NN_H5_I64, 1, &P1, d->text_offsets, err) ||
        nn_h5_write(f, "/prompts/text", NN_H5_U8, 1, &(uint64_t){B ? B : 1}, B ? d->text : "",
                    err) ||
        nn_h5_write(f, "/prompts/source_line", NN_H5_I64, 1, &P, d->source_line, err))
        return NN_ERR;
    if (c->n_targets) {
        cJSON *names = cJSON_CreateArray();
        for (int t = 0; t < c->n_targets; t++)
            cJSON_AddItemToArray(names, cJSON_CreateString(c->target_names[t]));
        char *json = cJSON_PrintUnformatted(names);
        cJSON_Delete(names);
        uint64_t nt = (uint64_t)c->target_offsets[(size_t)P * c->n_targets],
                 no = P * (uint64_t)c->n_targets + 1;
        int w =
            !json || nn_h5_attr_string(f, "/", "target_names", json, err) ||
            nn_h5_write(f, "/targets/token_offsets", NN_H5_I64, 1, &no, c->target_offsets, err) ||
            nn_h5_write(f, "/targets/token_ids", NN_H5_I32, 1, &(uint64_t){nt ? nt : 1},
                        nt ? c->target_ids : (int32_t[]){0}, err);
        cJSON_free(json);
        if (w)
            return NN_ERR;
    }
    return NN_OK;
}

/* A sink that only adds up the bytes of what would be declared: the store's final size. */
static int count_declare(void *ctx, const char *path, nn_sink_type type, int rank,
                         const uint64_t *dims, nn_err *err)
{
    *(uint64_t *)ctx += nn_h5_dataset_bytes(nn_h5_sink_type(type), rank, dims) + 1024;
    return NN_OK;
}

static int count_rows(void *ctx, const char *path, uint64_t row0, uint64_t n, const void *data,
                      nn_err *err)
{
    return NN_OK;
}

static int count_attr(void *ctx, const char *path, const char *name, const char *value, nn_err *err)
{
    *(uint64_t *)ctx += strlen(value) + 256;
    return NN_OK;
}

static int store_bytes(nn_harvest *h, const corpus_data *d, const nn_model *m, const nn_job *job,
                       int n_shards, uint64_t *bytes, nn_err *err)
{
    const nn_corpus *c = &d->c;
    uint64_t P = (uint64_t)c->n_prompts, N = (uint64_t)c->offsets[c->n_prompts];
    *bytes = (1u << 20) + strlen(m->config_json) + strlen(job->canonical) + (3 * N) * 4 +
             (P + 1) * 16 + P * 8 + (uint64_t)d->text_offsets[P] + (uint64_t)n_shards * 5 +
             (c->n_targets ? (P * (uint64_t)c->n_targets + 1) * 8 +
                                 (uint64_t)c->target_offsets[P * (uint64_t)c->n_targets] * 4
                           : 0);
    nn_sink counter = {
        .ctx = bytes, .declare = count_declare, .write_rows = count_rows, .attr = count_attr};
    return nn_harvest_declare(h, &counter, err);
}

/* On resume the arrays exist: "declaring" one opens it (collectively, in the same order). */
static int reopen_declare(void *ctx, const char *path, nn_sink_type type, int rank,
                          const uint64_t *dims, nn_err *err)
{
    return nn_h5_open_dataset(ctx, path, err);
}

static int reopen_rows(void *ctx, const char *path, uint64_t row0, uint64_t n, const void *data,
                       nn_err *err)
{
    return NN_OK; /* the small arrays written at creation are already there */
}

static int reopen_attr(void *ctx, const char *path, const char *name, const char *value,
                       nn_err *err)
{
    return NN_OK;
}

/* A sink that times the writes it passes on: the store's share of a job. */
typedef struct timed_sink {
    nn_sink inner;
    double seconds;
} timed_sink;

static int timed_rows(void *ctx, const char *path, uint64_t row0, uint64_t n, const void *data,
                      nn_err *err)
{
    timed_sink *t = ctx;
    double t0 = nn_seconds();
    int rc = t->inner.write_rows(t->inner.ctx, path, row0, n, data, err);
    t->seconds += nn_seconds() - t0;
    return rc;
}

static int timed_block(void *ctx, const char *path, uint64_t row0, uint64_t n, uint64_t col0,
                       uint64_t n_cols, const void *data, nn_err *err)
{
    timed_sink *t = ctx;
    double t0 = nn_seconds();
    int rc = t->inner.write_block(t->inner.ctx, path, row0, n, col0, n_cols, data, err);
    t->seconds += nn_seconds() - t0;
    return rc;
}

static char *ledger_path(const char *output, nn_err *err)
{
    size_t n = strlen(output);
    char *p = nn_malloc(n + 16, err);
    if (p)
        snprintf(p, n + 16, "%s.partial.ledger", output);
    return p;
}

static void progress_line(double t0, int64_t done_tokens, int64_t total_tokens, int done_prompts,
                          int total_prompts, bool final)
{
    double dt = nn_seconds() - t0, rate = dt > 0 ? (double)done_tokens / dt : 0;
    double eta = rate > 0 ? (double)(total_tokens - done_tokens) / rate : 0;
    fprintf(stderr, "\rnnterp: %d/%d prompts, %.0f tokens/s, ETA %dm%02ds   %s", done_prompts,
            total_prompts, rate, (int)eta / 60, (int)eta % 60, final ? "\n" : "");
    fflush(stderr);
}

/* Creates the store: collectively under MPI, every array at its final size, flushed and reserved.
 */
static int create_store(const nn_comm *cm, const nn_job *job, const nn_model *m, nn_harvest *h,
                        const corpus_data *d, const plan *pl, const char *ledger, const int *split,
                        nn_h5file **out, nn_err *err)
{
    *out = NULL;
    uint64_t ns = (uint64_t)pl->n_shards, bytes = 0;
    int rc = NN_OK;
    if (cm->rank == 0 && (store_bytes(h, d, m, job, pl->n_shards, &bytes, err) ||
                          nn_h5_check_space(job->output, bytes, err)))
        rc = NN_ERR;
    if (nn_comm_agree(cm, rc, err))
        return NN_ERR;
    nn_h5_par par = {.comm = cm->comm, .rank = cm->rank, .size = cm->size};
    nn_h5file *f = NULL;
    rc = nn_h5_create_par(job->output, cm->mpi ? &par : NULL, &f, err);
    if (nn_comm_agree(cm, rc, err)) {
        nn_h5_free(f);
        return NN_ERR;
    }
    nn_sink sink = nn_h5_sink(f);
    int P = job->pipeline_stages;
    char layer_split[1024], shards[32];
    size_t at = (size_t)snprintf(layer_split, sizeof layer_split, "[");
    for (int k = 0; k < P && at < sizeof layer_split - 32; k++)
        at += (size_t)snprintf(layer_split + at, sizeof layer_split - at, "%s[%d, %d]",
                               k ? ", " : "", split[k], split[k + 1]);
    snprintf(layer_split + at, sizeof layer_split - at, "]");
    snprintf(shards, sizeof shards, "%d", pl->n_shards);
    int *sp = nn_malloc((ns + 1) * sizeof *sp, err);
    uint8_t *zeros = nn_calloc(ns, 1, err);
    rc = !sp || !zeros ? NN_ERR : NN_OK;
    for (int s = 0; rc == NN_OK && s <= pl->n_shards; s++) {
        int b0, b1;
        shard_range(pl, s, &b0, &b1);
        sp[s] = pl->batch_start[b0];
    }
    if (rc == NN_OK &&
        (write_corpus(f, &sink, d, err) || nn_harvest_declare(h, &sink, err) ||
         nn_h5_create_dataset(f, "/progress/shard_done", NN_H5_U8, 1, &ns, err) ||
         nn_h5_create_dataset(f, "/progress/shard_prompts", NN_H5_I32, 1, &(uint64_t){ns + 1},
                              err) ||
         (cm->rank == 0 && (nn_h5_write_rows(f, "/progress/shard_done", 0, ns, zeros, err) ||
                            nn_h5_write_rows(f, "/progress/shard_prompts", 0, ns + 1, sp, err))) ||
         nn_h5_attr_string(f, "/", "format", "nnterp-store", err) ||
         nn_h5_attr_i64(f, "/", "format_version", 1, err) ||
         nn_h5_attr_string(f, "/", "nnterp_version", NNTERP_VERSION, err) ||
         nn_h5_attr_string(f, "/", "model", job->model, err) ||
         nn_h5_attr_string(f, "/", "model_config", m->config_json, err) ||
         nn_h5_attr_string(f, "/", "job", job->canonical, err) ||
         nn_h5_attr_i64(f, "/", "world_size", cm->size, err) ||
         nn_h5_attr_i64(f, "/", "data_parallel", cm->size / P, err) ||
         nn_h5_attr_i64(f, "/", "pipeline_stages", P, err) ||
         nn_h5_attr_string(f, "/", "layer_split", layer_split, err) ||
         nn_h5_attr_string(f, "/", "shards", shards, err) ||
         nn_h5_attr_string(f, "/", "status", "in progress", err) ||
         /* the structure is complete, flushed and reserved before any row is written */
         nn_h5_reserve(f, bytes, err)))
        rc = NN_ERR;
    nn_free(sp);
    nn_free(zeros);
    if (rc == NN_OK && cm->rank == 0)
        rc = nn_ledger_create(ledger, pl->n_shards, err);
    if (nn_comm_agree(cm, rc, err)) {
        nn_h5_free(f);
        return NN_ERR;
    }
    *out = f;
    return NN_OK;
}

/* Opens PATH.partial to resume: the same job on the same model, and the ledger's shards. */
static int open_store(const nn_comm *cm, const nn_job *job, const nn_model *m, nn_harvest *h,
                      const plan *pl, const char *ledger, bool *done, nn_h5file **out, nn_err *err)
{
    *out = NULL;
    nn_h5_par par = {.comm = cm->comm, .rank = cm->rank, .size = cm->size};
    nn_h5file *f = NULL;
    char *stored = NULL;
    int rc = nn_h5_open_partial(job->output, cm->mpi ? &par : NULL, &f, err);
    if (rc == NN_OK && !(stored = nn_h5_get_attr_string(f, "/", "job", err)))
        rc = NN_ERR;
    if (rc == NN_OK && strcmp(stored, job->canonical) != 0)
        rc = nn_fail(err,
                     "%s.partial was made by a different job; --resume needs the same job file "
                     "(or remove the .partial to start over)",
                     job->output);
    nn_free(stored);
    stored = NULL;
    if (rc == NN_OK && !(stored = nn_h5_get_attr_string(f, "/", "model_config", err)))
        rc = NN_ERR;
    if (rc == NN_OK && strcmp(stored, m->config_json) != 0)
        rc = nn_fail(err, "%s.partial was made with a different model than %s", job->output,
                     job->model);
    nn_free(stored);
    nn_sink reopen = {
        .ctx = f, .declare = reopen_declare, .write_rows = reopen_rows, .attr = reopen_attr};
    if (rc == NN_OK &&
        (nn_harvest_declare(h, &reopen, err) || nn_h5_open_dataset(f, "/progress/shard_done", err)))
        rc = NN_ERR;
    if (rc == NN_OK && cm->rank == 0)
        rc = nn_ledger_read(ledger, pl->n_shards, done, err);
    /* The ledger is the commit point; /progress marks may have been lost with the process. */
    uint8_t one = 1;
    for (int s = 0; rc == NN_OK && cm->rank == 0 && s < pl->n_shards; s++)
        if (done[s])
            rc = nn_h5_write_rows(f, "/progress/shard_done", (uint64_t)s, 1, &one, err);
    if (nn_comm_agree(cm, rc, err)) {
        if (f)
            nn_h5_close_keep(f);
        return NN_ERR;
    }
    nn_comm_bcast(cm, done, (size_t)pl->n_shards * sizeof *done);
    *out = f;
    return NN_OK;
}

int nn_run_job(const char *job_path, const nn_run_options *opts, const nn_comm *cm, nn_err *err)
{
    nn_job job;
    int rc = nn_job_load(job_path, &job, err);
    if (nn_comm_agree(cm, rc, err))
        return NN_ERR;
    nn_model *m = NULL;
    nn_tokenizer *tok = NULL;
    corpus_data d = {0};
    plan pl = {0};
    nn_harvest *h = NULL;
    nn_h5file *f = NULL;
    char *ledger = NULL;
    bool *done = NULL;
    int *todo = NULL, *gathered = NULL;
    MPI_Comm replica_comm = MPI_COMM_NULL;
    nn_pipeline pipe;
    bool pipe_ready = false;
    nn_counter counter = {0}; /* nn_counter_free does nothing until it is initialized */
    int shards_run = 0;
    rc = NN_ERR;
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term, old_usr1, old_xfsz;
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    sigemptyset(&sa.sa_mask);
    stop_requested = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGUSR1, &sa, &old_usr1);
    /* A file-size limit then fails the write (EFBIG) instead of killing the process. */
    sigaction(SIGXFSZ, &ignore, &old_xfsz);
    double t0 = nn_seconds();
    int step = NN_OK, P = job.pipeline_stages, replicas = cm->size / P;
    int replica = cm->rank / P, stage = cm->rank % P;
    int *split = NULL;
    nn_config cfg;
    if (cm->size % P != 0)
        step = nn_fail(err,
                       "%s: %d rank%s cannot form replicas of parallel.pipeline_stages %d (run "
                       "mpirun -np N with N a multiple of %d)",
                       job_path, cm->size, cm->size == 1 ? "" : "s", P, P);
    else if (step == NN_OK && (nn_model_config(job.model, &cfg, err) ||
                               !(split = nn_malloc(((size_t)P + 1) * sizeof *split, err))))
        step = NN_ERR;
    else if (P > cfg.n_layers)
        step = nn_fail(err, "%s: parallel.pipeline_stages %d exceeds the model's %d layers",
                       job_path, P, cfg.n_layers);
    if (nn_comm_agree(cm, step, err))
        goto done;
    /* Stage k holds a contiguous layer range; the head's cost counts for the last stage. */
    step = nn_pipeline_split(&cfg, P, NN_PIPELINE_HEAD_SHARE, split, err);
    if (nn_comm_agree(cm, step, err))
        goto done;
    if (P > 1)
        MPI_Comm_split(cm->comm, replica, stage, &replica_comm);
    step =
        nn_model_load_layers(job.model, split[stage], split[stage + 1], &m, err) ||
        nn_tokenizer_load_for_model(m->source, job.tokenizer, m->cfg.vocab_size, true, &tok, err);
    if (step == NN_OK && P > 1) {
        nn_pipeline_init(&pipe, m, replica_comm, stage, P);
        pipe_ready = true;
    }
    if (nn_comm_agree(cm, step, err))
        goto done;
    step = cm->rank == 0 ? tokenize_dataset(&job, m, tok, &d, err) : NN_OK;
    if (nn_comm_agree(cm, step, err) || nn_comm_agree(cm, bcast_corpus(cm, &d, err), err))
        goto done;
    step = make_plan(&job, &d.c, &pl, err) ||
           nn_harvest_init(&h, m, tok, &job, &d.c, job.batch_tokens, pl.max_prompts, err) ||
           !(ledger = ledger_path(job.output, err)) ||
           !(done = nn_calloc((size_t)pl.n_shards, sizeof *done, err)) ||
           !(todo = nn_malloc((size_t)pl.n_shards * sizeof *todo + 1, err)) ||
           !(gathered = nn_malloc((size_t)cm->size * sizeof *gathered, err));
    if (step == NN_OK && cm->rank == 0 && nn_path_is_file(job.output))
        step =
            nn_fail(err, "%s already exists (a finished store); remove it or choose another output",
                    job.output);
    if (nn_comm_agree(cm, step, err))
        goto done;
    bool resumed = false;
    if (opts->resume) {
        int exists = cm->rank == 0 ? nn_path_is_file(ledger) : 0;
        nn_comm_bcast(cm, &exists, sizeof exists);
        if (exists) {
            if (open_store(cm, &job, m, h, &pl, ledger, done, &f, err))
                goto done;
            resumed = true;
        } else if (cm->rank == 0) {
            fprintf(stderr, "nnterp: nothing to resume (no %s); starting the job\n", ledger);
        }
    }
    if (!resumed && create_store(cm, &job, m, h, &d, &pl, ledger, split, &f, err))
        goto done;
    timed_sink timed = {.inner = nn_h5_sink(f)};
    nn_sink sink = {.ctx = &timed, .write_rows = timed_rows, .write_block = timed_block};
    double t_work = nn_seconds();
    bool show = cm->rank == 0 && (opts->progress || isatty(STDERR_FILENO));
    int64_t total = d.c.offsets[d.c.n_prompts], done_tokens = 0;
    int done_prompts = 0, n_todo = 0;
    for (int s = 0; s < pl.n_shards; s++)
        if (!done[s])
            todo[n_todo++] = s;
    /* Rounds: a round is `per` shards for each replica, committed together. Within a round the
     * shards are handed out on demand: each replica's first stage takes the next from a counter
     * on rank 0 and tells its later stages, so a slower replica simply takes fewer. Every leader
     * draws once past the round's end, so every rank knows where the next round's numbers start.
     * A pipeline fills and drains once per round, so a round holds about 4P batches per
     * replica: the bubble (P-1)/(m+P-1) is then about a tenth. */
    int per = nn_plan_round_batches(P, replicas, job.shard_batches) / job.shard_batches,
        round = replicas * per;
    nn_counter_init(&counter, cm);
    int drawn_base = 0;
    for (int start = 0; start < n_todo; start += round) {
        int n_round = n_todo - start < round ? n_todo - start : round;
        step = NN_OK;
        for (;;) {
            int k = -1;
            if (stage == 0 && step == NN_OK) {
                int v = nn_counter_next(&counter) - drawn_base;
                if (v < n_round)
                    k = start + v;
            }
            if (P > 1)
                MPI_Bcast(&k, 1, MPI_INT, 0, replica_comm);
            if (k < 0)
                break;
            int b0, b1;
            shard_range(&pl, todo[k], &b0, &b1);
            for (int b = b0; b < b1 && step == NN_OK; b++)
                step =
                    opts->fail_at && stage == opts->fail_stage && b == opts->fail_batch
                        ? nn_fail(err, "batch %d: the failure NNTERP_FAIL_AT_BATCH asked for", b)
                        : nn_harvest_run(h, pl.batch_start[b], pl.batch_start[b + 1], &sink, err);
            if (step != NN_OK && P > 1) { /* P > 1 means ranks under mpirun */
                /* A stage that stops mid-round leaves the stages beside it waiting for its rows
                 * forever. End the job as a dead rank would (Open MPI has nothing gentler): the
                 * committed shards are in the ledger, and --resume finishes the job. */
                fprintf(stderr,
                        "nnterp: rank %d (pipeline stage %d): error: %s\nnnterp: a pipeline "
                        "stage cannot leave its replica mid-round: ending the job; the committed "
                        "shards are kept, continue with: nnterp run %s --resume\n",
                        cm->rank, stage, err->msg, job_path);
                MPI_Abort(cm->comm, 1);
            }
            shards_run++;
        }
        drawn_base += n_round + replicas;
        if (nn_comm_agree(cm, step, err))
            goto done;
        /* commit: rows flushed everywhere, then rank 0 marks the shards and appends the ledger */
        double t_flush = nn_seconds();
        step = nn_h5_flush(f, err);
        timed.seconds += nn_seconds() - t_flush;
        if (nn_comm_agree(cm, step, err))
            goto done;
        int end = start + round < n_todo ? start + round : n_todo;
        uint8_t one = 1;
        for (int k = start; cm->rank == 0 && k < end && step == NN_OK; k++)
            step = nn_h5_write_rows(f, "/progress/shard_done", (uint64_t)todo[k], 1, &one, err) ||
                   nn_ledger_append(ledger, todo[k], err);
        if (nn_comm_agree(cm, step, err))
            goto done;
        for (int k = start; k < end; k++) {
            int s = todo[k], b0, b1;
            shard_range(&pl, s, &b0, &b1);
            done[s] = true;
            done_prompts += pl.batch_start[b1] - pl.batch_start[b0];
            done_tokens += d.c.offsets[pl.batch_start[b1]] - d.c.offsets[pl.batch_start[b0]];
        }
        if (show)
            progress_line(t0, done_tokens, total, done_prompts, d.c.n_prompts, false);
        int stop = nn_comm_max_int(cm, (int)stop_requested);
        if (stop && end < n_todo) {
            int left = n_todo - end;
            if (show)
                fprintf(stderr, "\n");
            nn_fail(err,
                    "interrupted by signal %d: %d of %d shards committed in %s.partial; continue "
                    "with: nnterp run %s --resume",
                    stop, pl.n_shards - left, pl.n_shards, job.output, job_path);
            nn_h5_close_keep(f);
            f = NULL;
            rc = NN_RUN_INTERRUPTED;
            goto done;
        }
    }
    if (show && done_prompts)
        progress_line(t0, done_tokens, total, done_prompts, d.c.n_prompts, true);
    /* sae operations: per-feature figures from the committed per-token rows (worker/sae_store.h) */
    step = cm->rank == 0 ? nn_sae_store_finalize(f, &job, err) : NN_OK;
    if (nn_comm_agree(cm, step, err))
        goto done;
    step = nn_h5_attr_string(f, "/", "status", "complete", err);
    if (nn_comm_agree(cm, step, err))
        goto done;
    nn_h5file *finished = f;
    f = NULL;
    step = nn_h5_commit(finished, err);
    if (nn_comm_agree(cm, step, err))
        goto done;
    if (cm->rank == 0)
        unlink(ledger);
    int *taken = cm->rank == 0 ? nn_malloc((size_t)cm->size * sizeof *taken, err) : NULL;
    nn_comm_gather_int(cm, shards_run, taken ? taken : gathered);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    nn_comm_gather_int(cm, (int)(ru.ru_maxrss / 1024), gathered); /* MB */
    if (!opts->quiet && cm->rank == 0) {
        double dt = nn_seconds() - t0;
        printf("nnterp: wrote %s: %d prompts, %lld tokens, %d operations, %d rank%s in %.1f s%s",
               job.output, d.c.n_prompts, (long long)total, job.n_ops, cm->size,
               cm->size > 1 ? "s" : "", dt, resumed ? " (resumed)" : "");
        if (d.n_truncated || d.n_skipped)
            printf("; %d prompts truncated, %d skipped (too long)", d.n_truncated, d.n_skipped);
        printf("\n");
        double work = nn_seconds() - t_work;
        printf("nnterp: %.0f tokens/s over the shards; writing and flushing the store took %.2f s "
               "of %.2f s (%.1f%%)\n",
               work > 0 ? (double)total / work : 0.0, timed.seconds, work,
               work > 0 ? 100.0 * timed.seconds / work : 0.0);
        if (cm->size > 1) {
            printf("nnterp: %d replica%s x %d stage%s; peak RSS per rank (MB):", replicas,
                   replicas == 1 ? "" : "s", P, P == 1 ? "" : "s");
            for (int r = 0; r < cm->size; r++)
                printf(" %d", gathered[r]);
            printf("\n");
        }
        if (replicas > 1 && taken) {
            printf("nnterp: shards taken per replica (handed out on demand):");
            for (int r = 0; r < cm->size; r += P)
                printf(" %d", taken[r]);
            printf("\n");
        }
    }
    nn_free(taken);
    rc = NN_OK;
done:
    if (f) {
        /* a failure keeps the partial store only when its ledger can resume it */
        int keep = cm->rank == 0 ? nn_path_is_file(ledger ? ledger : "") : 0;
        nn_comm_bcast(cm, &keep, sizeof keep);
        if (keep)
            nn_h5_close_keep(f);
        else
            nn_h5_free(f);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    sigaction(SIGXFSZ, &old_xfsz, NULL);
    nn_counter_free(&counter);
    if (pipe_ready)
        nn_pipeline_free(&pipe);
    if (replica_comm != MPI_COMM_NULL)
        MPI_Comm_free(&replica_comm);
    nn_free(split);
    nn_free(done);
    nn_free(todo);
    nn_free(gathered);
    nn_free(ledger);
    nn_harvest_free(h);
    nn_free(pl.batch_start);
    corpus_free(&d);
    nn_tokenizer_free(tok);
    nn_model_free(m);
    nn_job_free(&job);
    return rc;
}
