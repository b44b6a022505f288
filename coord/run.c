#define _GNU_SOURCE
#include "run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm.h"
#include "corpus.h"
#include "fingerprint.h"
#include "h5_sink.h"
#include "harvest.h"
#include "identity.h"
#include "ledger.h"
#include "nn_json.h"
#include "pipeline.h"
#include "plan.h"
#include "sae_store.h"
#include "store.h"
#include "trace.h"

#ifndef NNTERP_VERSION
#define NNTERP_VERSION "dev"
#endif

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = sig;
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
        nn_h5_write(f, NN_DS_PROMPT_TEXT_OFFSETS, NN_H5_I64, 1, &P1, d->text_offsets, err) ||
        nn_h5_write(f, NN_DS_PROMPT_TEXT, NN_H5_U8, 1, &(uint64_t){B ? B : 1}, B ? d->text : "",
                    err) ||
        nn_h5_write(f, NN_DS_PROMPT_SOURCE_LINE, NN_H5_I64, 1, &P, d->source_line, err))
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
            !json || nn_h5_attr_string(f, "/", NN_ATTR_TARGET_NAMES, json, err) ||
            nn_h5_write(f, NN_DS_TARGET_TOKEN_OFFSETS, NN_H5_I64, 1, &no, c->target_offsets, err) ||
            nn_h5_write(f, NN_DS_TARGET_TOKEN_IDS, NN_H5_I32, 1, &(uint64_t){nt ? nt : 1},
                        nt ? c->target_ids : (int32_t[]){0}, err);
        cJSON_free(json);
        if (w)
            return NN_ERR;
    }
    return NN_OK;
}

/* What the store records to be recognised by --resume (identity.h), computed by every rank. */
typedef struct store_identity {
    char *job;      /* nn_job_identity */
    char *weights;  /* nn_weights_fingerprint */
    char *snapshot; /* the Hugging Face cache revision, or NULL */
} store_identity;

static void identity_free(store_identity *id)
{
    nn_free(id->job);
    nn_free(id->weights);
    nn_free(id->snapshot);
    memset(id, 0, sizeof *id);
}

/* The weights are hashed once, by rank 0 (every byte of every file: a large checkpoint is read
 * once), and the fingerprint is sent to the others. */
static int identity_make(const nn_comm *cm, const nn_job *job, const char *job_path,
                         const nn_model *m, store_identity *id, nn_err *err)
{
    memset(id, 0, sizeof *id);
    int rc = NN_OK;
    if (!(id->job = nn_job_identity(job, err))) {
        nn_err_prefix(err, "%s", job_path);
        rc = NN_ERR;
    }
    if (rc == NN_OK && cm->rank == 0 && !(id->weights = nn_weights_fingerprint(m->source, err)))
        rc = NN_ERR;
    if (nn_comm_agree(cm, rc, err))
        return NN_ERR;
    uint64_t n = cm->rank == 0 ? strlen(id->weights) + 1 : 0;
    nn_comm_bcast(cm, &n, sizeof n);
    if (cm->rank != 0 && !(id->weights = nn_malloc(n, err)))
        rc = NN_ERR;
    if (nn_comm_agree(cm, rc, err))
        return NN_ERR;
    nn_comm_bcast(cm, id->weights, n);
    id->snapshot = nn_snapshot_revision(m->source, err);
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

static int count_attr_ignore(void *ctx, const char *path, const char *name, const char *value,
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

/* Progress of a run on rank 0's stderr: on a terminal (or with --progress) one line rewritten
 * after every round; elsewhere, as under Slurm, a plain line every `every` seconds and a last one
 * if any was printed, so a short job's log stays as it was. */
typedef struct progress {
    bool overwrite;         /* a terminal or --progress: one line rewritten; else plain lines */
    double t0, every, last; /* last: when the last plain line was printed (0: none yet) */
} progress;

static void progress_line(progress *pg, int64_t run_tokens, int64_t done_tokens,
                          int64_t total_tokens, int done_prompts, int total_prompts,
                          int done_shards, int total_shards, bool final)
{
    double now = nn_seconds(), dt = now - pg->t0, rate = dt > 0 ? (double)run_tokens / dt : 0;
    double eta = rate > 0 ? (double)(total_tokens - done_tokens) / rate : 0;
    char line[160];
    snprintf(line, sizeof line, "nnterp: %d/%d prompts, %.0f tokens/s, ETA %dm%02ds, %d/%d shards",
             done_prompts, total_prompts, rate, (int)eta / 60, (int)eta % 60, done_shards,
             total_shards);
    if (pg->overwrite) {
        fprintf(stderr, "\r%s   %s", line, final ? "\n" : "");
    } else if (now - (pg->last > 0 ? pg->last : pg->t0) >= pg->every || (final && pg->last > 0)) {
        fprintf(stderr, "%s\n", line);
        pg->last = now;
    }
    fflush(stderr);
}

/* Creates the store: collectively under MPI, every array at its final size, flushed and reserved.
 */
static int create_store(const nn_comm *cm, const nn_job *job, const store_identity *id,
                        const nn_model *m, nn_harvest *h, const corpus_data *d, const plan *pl,
                        const char *ledger, int P, const int *split, nn_h5file **out, nn_err *err)
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
    char layer_split[1024];
    size_t at = (size_t)snprintf(layer_split, sizeof layer_split, "[");
    for (int k = 0; k < P && at < sizeof layer_split - 32; k++)
        at += (size_t)snprintf(layer_split + at, sizeof layer_split - at, "%s[%d, %d]",
                               k ? ", " : "", split[k], split[k + 1]);
    snprintf(layer_split + at, sizeof layer_split - at, "]");
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
         nn_h5_create_dataset(f, NN_DS_SHARD_DONE, NN_H5_U8, 1, &ns, err) ||
         nn_h5_create_dataset(f, NN_DS_SHARD_PROMPTS, NN_H5_I32, 1, &(uint64_t){ns + 1}, err) ||
         (cm->rank == 0 && (nn_h5_write_rows(f, NN_DS_SHARD_DONE, 0, ns, zeros, err) ||
                            nn_h5_write_rows(f, NN_DS_SHARD_PROMPTS, 0, ns + 1, sp, err))) ||
         nn_h5_attr_string(f, "/", NN_ATTR_FORMAT, nn_file_formats[NN_FILE_STORE].name, err) ||
         nn_h5_attr_i64(f, "/", NN_ATTR_FORMAT_VERSION, nn_file_formats[NN_FILE_STORE].version,
                        err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_NNTERP_VERSION, NNTERP_VERSION, err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_MODEL, job->model, err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_MODEL_CONFIG, m->config_json, err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_JOB, job->canonical, err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_IDENTITY, id->job, err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_WEIGHTS, id->weights, err) ||
         (id->snapshot && nn_h5_attr_string(f, "/", NN_ATTR_MODEL_SNAPSHOT, id->snapshot, err)) ||
         nn_h5_attr_string(f, "/", NN_ATTR_COMPUTE, nn_compute_name(job->compute), err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_COMPUTE_KERNEL, m->compute_kernel, err) ||
         nn_h5_attr_i64(f, "/", NN_ATTR_WORLD_SIZE, cm->size, err) ||
         nn_h5_attr_i64(f, "/", NN_ATTR_DATA_PARALLEL, cm->size / P, err) ||
         nn_h5_attr_i64(f, "/", NN_ATTR_PIPELINE_STAGES, P, err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_LAYER_SPLIT, layer_split, err) ||
         nn_h5_attr_i64(f, "/", NN_ATTR_SHARDS, pl->n_shards, err) ||
         nn_h5_attr_string(f, "/", NN_ATTR_STATUS, "in progress", err) ||
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
    nn_h5_disown(f); /* resumable from now on: a failure keeps it */
    *out = f;
    return NN_OK;
}

/* A stored array equal to the one in memory, else a message naming what differs. */
static int same_array(nn_h5file *f, const char *dataset, const void *mine, size_t bytes, bool *same,
                      nn_err *err)
{
    nn_h5_type type;
    int rank;
    uint64_t dims[8];
    *same = false;
    if (nn_h5_shape(f, dataset, &type, &rank, dims, err))
        return NN_ERR;
    size_t stored = (size_t)nn_h5_dataset_bytes(type, rank, dims);
    if (stored != bytes)
        return NN_OK;
    void *buf = nn_malloc(stored + 1, err);
    if (!buf || nn_h5_read(f, dataset, buf, stored, err)) {
        nn_free(buf);
        return NN_ERR;
    }
    *same = !memcmp(buf, mine, bytes);
    nn_free(buf);
    return NN_OK;
}

/* The dataset as this run tokenized it against what the store holds (/prompts, /tokens,
 * /targets): an edited dataset, another tokenizer or other dataset.* settings show up here. */
static int same_corpus(nn_h5file *f, const nn_job *job, const char *job_path, const corpus_data *d,
                       nn_err *err)
{
    const nn_corpus *c = &d->c;
    size_t P = (size_t)c->n_prompts, N = (size_t)c->offsets[P];
    nn_h5_type type;
    int rank;
    uint64_t dims[8];
    if (nn_h5_shape(f, NN_DS_PROMPT_TOKEN_OFFSETS, &type, &rank, dims, err))
        return NN_ERR;
    if (dims[0] != P + 1)
        return nn_fail(err,
                       "%s.partial holds %llu prompts, the dataset %s gives %zu now: the dataset "
                       "(or a dataset.* field of %s) changed since the store was begun",
                       job->output, (unsigned long long)dims[0] - 1, job->dataset_path, P,
                       job_path);
    int64_t *offsets = nn_malloc((P + 1) * sizeof *offsets, err);
    int32_t *ids = offsets ? nn_malloc(N * sizeof *ids + 1, err) : NULL;
    int rc = !ids ||
                     nn_h5_read(f, NN_DS_PROMPT_TOKEN_OFFSETS, offsets, (P + 1) * sizeof *offsets,
                                err) ||
                     nn_h5_read(f, NN_DS_TOKEN_IDS, ids, N * sizeof *ids + 1, err)
                 ? NN_ERR
                 : NN_OK;
    for (size_t p = 0; rc == NN_OK && p < P; p++) {
        int64_t a = c->offsets[p], n = c->offsets[p + 1] - a;
        if (offsets[p + 1] - offsets[p] != n ||
            (offsets[p] == a && memcmp(ids + a, c->tokens + a, (size_t)n * sizeof *ids)))
            rc = nn_fail(err,
                         "%s:%lld: prompt %zu's tokens differ from those in %s.partial: the "
                         "dataset (or the tokenizer, or a dataset.* field of %s) changed since "
                         "the store was begun; --resume would mix two datasets",
                         job->dataset_path, (long long)d->source_line[p], p, job->output, job_path);
    }
    nn_free(offsets);
    nn_free(ids);
    bool same = true;
    size_t B = (size_t)d->text_offsets[P];
    if (rc == NN_OK && B && same_array(f, NN_DS_PROMPT_TEXT, d->text, B, &same, err))
        rc = NN_ERR;
    if (rc == NN_OK && !same)
        rc = nn_fail(err,
                     "%s: the prompts' text differs from that in %s.partial (same tokens): the "
                     "dataset changed since the store was begun",
                     job->dataset_path, job->output);
    if (rc == NN_OK && c->n_targets) {
        size_t nt = (size_t)c->target_offsets[P * (size_t)c->n_targets];
        bool have = nn_h5_exists(f, NN_DS_TARGET_TOKEN_IDS);
        same = have;
        if (have && nt && same_array(f, NN_DS_TARGET_TOKEN_IDS, c->target_ids, nt * 4, &same, err))
            rc = NN_ERR;
        if (rc == NN_OK && same && have &&
            same_array(f, NN_DS_TARGET_TOKEN_OFFSETS, c->target_offsets,
                       (P * (size_t)c->n_targets + 1) * 8, &same, err))
            rc = NN_ERR;
        if (rc == NN_OK && !same)
            rc = nn_fail(err, "%s: the targets differ from those in %s.partial", job->dataset_path,
                         job->output);
    }
    return rc;
}

/* The weights as recorded against these: names the first file that differs. */
static int same_weights(const char *stored, const char *now, const nn_job *job, nn_err *err)
{
    cJSON *a = cJSON_Parse(stored), *b = cJSON_Parse(now);
    int rc = NN_OK;
    const cJSON *x;
    cJSON_ArrayForEach (x, a) {
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
        if (!y || !cJSON_Compare(x, y, true)) {
            rc = nn_fail(err,
                         "%s.partial was made with other weights: %s of %s is %s in the store, "
                         "%s now (the model changed since the store was begun)",
                         job->output, x->string, job->model, cJSON_GetStringValue(x),
                         y ? cJSON_GetStringValue(y) : "absent");
            break;
        }
    }
    if (rc == NN_OK && cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
        rc = nn_fail(err, "%s.partial was made with other weights: the files of %s differ",
                     job->output, job->model);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return rc;
}

/* The store holds the results this run would compute: the job's identity (identity.h), the
 * model's config and weights, the dataset as tokenized now. store: its path, for messages. */
static int same_results(nn_h5file *f, const nn_job *job, const char *job_path,
                        const store_identity *id, const nn_model *m, const corpus_data *d,
                        const char *store, nn_err *err)
{
    char *stored = NULL;
    int rc = NN_OK;
    bool has_identity =
        rc == NN_OK && (stored = nn_h5_get_attr_string(f, "/", "identity", err)) != NULL;
    if (rc == NN_OK && has_identity)
        rc = nn_identity_compare(stored, id->job, store, job_path, err);
    else if (rc == NN_OK) { /* a store of an earlier nnterp: the job's text */
        stored = nn_h5_get_attr_string(f, "/", "job", err);
        if (!stored)
            rc = NN_ERR;
        else if (strcmp(stored, job->canonical) != 0)
            rc = nn_fail(err,
                         "%s was made by a different job; --resume needs the same job file "
                         "(or remove the .partial to start over)",
                         store);
    }
    nn_free(stored);
    stored = NULL;
    if (rc == NN_OK && !(stored = nn_h5_get_attr_string(f, "/", "model_config", err)))
        rc = NN_ERR;
    if (rc == NN_OK && strcmp(stored, m->config_json) != 0)
        rc = nn_fail(err, "%s was made with a different model than %s (config.json differs)", store,
                     job->model);
    nn_free(stored);
    stored = NULL;
    if (rc == NN_OK && has_identity && !(stored = nn_h5_get_attr_string(f, "/", "weights", err)))
        rc = NN_ERR;
    if (rc == NN_OK && stored)
        rc = same_weights(stored, id->weights, job, err);
    nn_free(stored);
    if (rc == NN_OK)
        rc = same_corpus(f, job, job_path, d, err);
    return rc;
}

/* Opens PATH.partial to resume: the same results (identity.h), the same weights and the same
 * tokenized dataset, and the ledger's shards. */
static int open_store(const nn_comm *cm, const nn_job *job, const char *job_path,
                      const store_identity *id, const nn_model *m, nn_harvest *h,
                      const corpus_data *d, const plan *pl, const char *ledger, bool *done,
                      nn_h5file **out, nn_err *err)
{
    *out = NULL;
    nn_h5_par par = {.comm = cm->comm, .rank = cm->rank, .size = cm->size};
    nn_h5file *f = NULL;
    char store[4096];
    snprintf(store, sizeof store, "%s.partial", job->output);
    int rc = nn_h5_open_partial(job->output, cm->mpi ? &par : NULL, &f, err);
    /* A store never mixes precisions (stores older than the attribute are float32). */
    if (rc == NN_OK) {
        nn_err ignored;
        char *stored = nn_h5_get_attr_string(f, "/", "compute", &ignored);
        const char *want = nn_compute_name(job->compute);
        if (strcmp(stored ? stored : "float32", want) != 0)
            rc = nn_fail(err,
                         "%s: attribute 'compute' is %s, and this run asks for compute %s: "
                         "a store never mixes precisions (resume with \"compute\": \"%s\", or "
                         "remove the .partial to start over)",
                         store, stored ? stored : "float32", want, stored ? stored : "float32");
        nn_free(stored);
    }
    if (rc == NN_OK)
        rc = same_results(f, job, job_path, id, m, d, store, err);
    nn_sink reopen = {
        .ctx = f, .declare = reopen_declare, .write_rows = reopen_rows, .attr = reopen_attr};
    if (rc == NN_OK &&
        (nn_harvest_declare(h, &reopen, err) || nn_h5_open_dataset(f, NN_DS_SHARD_DONE, err)))
        rc = NN_ERR;
    if (rc == NN_OK && cm->rank == 0)
        rc = nn_ledger_read(ledger, pl->n_shards, done, err);
    /* The ledger is the commit point; /progress marks may have been lost with the process. */
    uint8_t one = 1;
    for (int s = 0; rc == NN_OK && cm->rank == 0 && s < pl->n_shards; s++)
        if (done[s])
            rc = nn_h5_write_rows(f, NN_DS_SHARD_DONE, (uint64_t)s, 1, &one, err);
    if (nn_comm_agree(cm, rc, err)) {
        if (f)
            nn_h5_close_keep(f);
        return NN_ERR;
    }
    nn_comm_bcast(cm, done, (size_t)pl->n_shards * sizeof *done);
    *out = f;
    return NN_OK;
}

/* What a run does with its output, decided by rank 0 before any work. */
typedef enum { OUT_CREATE, OUT_RESUME, OUT_COMPLETE } output_mode;

/* --dry-run: each array the operations would declare, one line each. */
static int print_declare(void *ctx, const char *path, nn_sink_type type, int rank,
                         const uint64_t *dims, nn_err *err)
{
    static const char *types[] = {"float32", "int32", "int64", "uint8", "float16", "bfloat16"};
    char shape[128];
    size_t n = 0;
    for (int i = 0; i < rank && n < sizeof shape - 24; i++)
        n += (size_t)snprintf(shape + n, sizeof shape - n, "%s%llu", i ? ", " : "",
                              (unsigned long long)dims[i]);
    printf("  %-40s %-8s [%s]  %.1f MB\n", path, types[type], shape,
           (double)nn_h5_dataset_bytes(nn_h5_sink_type(type), rank, dims) / 1e6);
    return NN_OK;
}

static int dry_run_report(const nn_job *job, const char *job_path, const store_identity *id,
                          const nn_model *m, nn_harvest *h, const corpus_data *d, const plan *pl,
                          output_mode mode, const char *ledger, int ranks, int P, const int *split,
                          nn_err *err)
{
    const nn_corpus *c = &d->c;
    uint64_t bytes = 0;
    if (store_bytes(h, d, m, job, pl->n_shards, &bytes, err))
        return NN_ERR;
    printf("nnterp: dry run of %s: everything checked, nothing written\n", job_path);
    printf("model     %s (%d layers, d_model %d, vocabulary %d)\n", m->source, m->cfg.n_layers,
           m->cfg.d_model, m->cfg.vocab_size);
    printf("dataset   %s: %d prompts, %lld tokens", job->dataset_path, c->n_prompts,
           (long long)c->offsets[c->n_prompts]);
    if (d->n_truncated || d->n_skipped)
        printf(" (%d truncated, %d skipped: too long)", d->n_truncated, d->n_skipped);
    printf("\nplan      %d batches of at most %d tokens, %d shards of %d batch%s\n", pl->n_batches,
           job->batch_tokens, pl->n_shards, pl->shard_batches, pl->shard_batches == 1 ? "" : "es");
    printf("layout    %d rank%s: %d replica%s x %d stage%s; layers per stage:", ranks,
           ranks == 1 ? "" : "s", ranks / P, ranks / P == 1 ? "" : "s", P, P == 1 ? "" : "s");
    for (int k = 0; k < P; k++)
        printf(" [%d, %d)", split[k], split[k + 1]);
    printf("\nstore     %s: %.1f MB (%d operations), arrays:\n", job->output, (double)bytes / 1e6,
           job->n_ops);
    printf("  %-40s %-8s [%lld]\n", NN_DS_TOKEN_IDS, "int32", (long long)c->offsets[c->n_prompts]);
    printf("  %-40s %-8s [%d]\n", NN_DS_PROMPT_TOKEN_OFFSETS, "int64", c->n_prompts + 1);
    nn_sink printer = {
        .ctx = NULL, .declare = print_declare, .write_rows = count_rows, .attr = count_attr_ignore};
    if (nn_harvest_declare(h, &printer, err))
        return NN_ERR;
    int committed = 0;
    if (mode == OUT_RESUME && nn_ledger_count(ledger, &committed, err))
        return NN_ERR;
    if (mode == OUT_RESUME) { /* what --resume would compare, read-only */
        char store[4096];
        snprintf(store, sizeof store, "%s.partial", job->output);
        nn_h5file *f = NULL;
        int rc =
            nn_h5_open_read(store, &f, err) || same_results(f, job, job_path, id, m, d, store, err);
        nn_h5_free(f);
        if (rc)
            return NN_ERR;
    }
    if (mode == OUT_RESUME)
        printf("would     resume %s.partial: %d of %d shards committed\n", job->output, committed,
               pl->n_shards);
    else
        printf("would     create %s.partial, then rename it to %s\n", job->output, job->output);
    if (mode == OUT_CREATE && nn_h5_check_space(job->output, bytes, err))
        return NN_ERR;
    return NN_OK;
}

static bool same_file(const char *a, const char *b)
{
    struct stat x, y;
    return a && b && stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev &&
           x.st_ino == y.st_ino;
}

/* Checks the output path, then finds what is there: nothing (create), an unfinished store with
 * its ledger (resume, or refused without --resume), a finished store (refused, or nothing to do
 * under --resume). Takes the ledger's lock unless dry_run; *ledger_fd is then held until the job
 * ends, and *ledger_created says this process made the ledger (and may remove it). */
static int prepare_output(const nn_job *job, const char *job_path, const nn_run_options *opts,
                          const char *ledger, output_mode *mode, int *ledger_fd,
                          bool *ledger_created, nn_err *err)
{
    char partial[4096];
    snprintf(partial, sizeof partial, "%s.partial", job->output);
    *ledger_fd = -1;
    *ledger_created = false;
    if (nn_h5_check_output(job->output, err))
        return nn_err_prefix(err, "%s", job_path);
    const char *inputs[] = {job_path, job->dataset_path, job->tokenizer};
    const char *names[] = {"the job file", "the dataset (dataset.path)", "the tokenizer"};
    const char *outputs[] = {job->output, partial, ledger};
    for (int i = 0; i < 3; i++)
        for (int o = 0; o < 3; o++)
            if (same_file(inputs[i], outputs[o]))
                return nn_fail(err, "%s: output '%s' is %s; choose another output", job_path,
                               job->output, names[i]);
    bool finished = nn_path_is_file(job->output), has_ledger = nn_path_is_file(ledger);
    if (has_ledger && !opts->dry_run && nn_ledger_is_locked(ledger))
        return nn_fail(err,
                       "%s: %s is locked: another process is running this job now (wait for it "
                       "or stop it; nothing was touched)",
                       job_path, ledger);
    if (opts->resume && has_ledger) {
        *mode = OUT_RESUME;
        return opts->dry_run ? NN_OK : nn_ledger_lock(ledger, false, ledger_fd, err);
    }
    if (finished) {
        if (opts->resume) {
            *mode = OUT_COMPLETE;
            return NN_OK;
        }
        return nn_fail(err,
                       "%s already exists (a finished store); remove it or choose another output",
                       job->output);
    }
    if (has_ledger) {
        int n = 0;
        if (nn_ledger_count(ledger, &n, err))
            return NN_ERR;
        return nn_fail(err,
                       "%s holds %d committed shard%s of an unfinished job: run with --resume to "
                       "continue it, or remove %s and %s to start over",
                       partial, n, n == 1 ? "" : "s", partial, ledger);
    }
    if (nn_path_is_file(partial))
        return nn_fail(err,
                       "%s already exists without a ledger: another process may be writing it "
                       "(nnterp trace?), or its creation was interrupted; nothing was touched "
                       "(remove it to start over)",
                       partial);
    if (opts->resume)
        fprintf(stderr, "nnterp: nothing to resume (no %s); starting the job\n", ledger);
    *mode = OUT_CREATE;
    if (opts->dry_run)
        return NN_OK;
    if (nn_ledger_lock(ledger, true, ledger_fd, err))
        return nn_ledger_is_locked(ledger)
                   ? nn_fail(err, "%s is locked: another process is running this job now", ledger)
                   : NN_ERR;
    *ledger_created = true;
    return NN_OK;
}

int nn_run_job(const char *job_path, const nn_run_options *opts, const nn_comm *cm, nn_err *err)
{
    nn_job job;
    int rc = nn_job_load(job_path, &job, err);
    nn_compute forced;
    if (rc == NN_OK && opts->compute &&
        (nn_compute_parse(opts->compute, "--compute", &forced, err) ||
         nn_job_set_compute(&job, forced, err))) {
        nn_job_free(&job);
        rc = NN_ERR;
    }
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
    int shards_run = 0, ledger_fd = -1;
    bool ledger_created = false;
    store_identity id = {0};
    output_mode mode = OUT_CREATE;
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
    int step = NN_OK, P = opts->stages ? opts->stages : job.pipeline_stages,
        replicas = cm->size / P;
    int replica = cm->rank / P, stage = cm->rank % P;
    int *split = NULL;
    nn_config cfg;
    const char *layout_field = opts->stages ? "--stages" : "parallel.pipeline_stages";
    if (cm->size % P != 0)
        step = nn_fail(err,
                       "%s: %d rank%s cannot form replicas of %s %d (run mpirun -np N with N a "
                       "multiple of %d%s)",
                       job_path, cm->size, cm->size == 1 ? "" : "s", layout_field, P, P,
                       opts->resume ? ", or resume with --stages S for another split" : "");
    else if (step == NN_OK && (nn_model_config(job.model, &cfg, err) ||
                               !(split = nn_malloc(((size_t)P + 1) * sizeof *split, err))))
        step = NN_ERR;
    else if (P > cfg.n_layers)
        step = nn_fail(err, "%s: %s %d exceeds the model's %d layers", job_path, layout_field, P,
                       cfg.n_layers);
    if (nn_comm_agree(cm, step, err))
        goto done;
    /* Then the output: a bad path, a running job or an unfinished store is found before any
     * work, and a store already complete needs none. */
    if (!(ledger = ledger_path(job.output, err)))
        step = NN_ERR;
    else if (cm->rank == 0)
        step =
            prepare_output(&job, job_path, opts, ledger, &mode, &ledger_fd, &ledger_created, err);
    if (nn_comm_agree(cm, step, err))
        goto done;
    nn_comm_bcast(cm, &mode, sizeof mode);
    if (mode == OUT_COMPLETE) {
        if (cm->rank == 0 && !opts->quiet)
            printf("nnterp: %s is complete already: nothing to resume\n", job.output);
        rc = NN_OK;
        goto done;
    }
    /* Stage k holds a contiguous layer range; the head's cost counts for the last stage. */
    step = nn_pipeline_split(&cfg, P, NN_PIPELINE_HEAD_SHARE, split, err);
    if (nn_comm_agree(cm, step, err))
        goto done;
    if (P > 1)
        MPI_Comm_split(cm->comm, replica, stage, &replica_comm);
    step =
        nn_model_load_layers(job.model, split[stage], split[stage + 1], &m, err) ||
        nn_model_set_compute(m, job.compute, err) ||
        nn_tokenizer_load_for_model(m->source, job.tokenizer, m->cfg.vocab_size, true, &tok, err);
    if (step != NN_OK && !m && nn_path_is_file(job.model))
        nn_err_prefix(err, "%s: model '%s' was read as a llama2.c .bin checkpoint", job_path,
                      job.model);
    if (step == NN_OK && P > 1) {
        nn_pipeline_init(&pipe, m, replica_comm, stage, P);
        pipe_ready = true;
    }
    if (nn_comm_agree(cm, step, err))
        goto done;
    step = cm->rank == 0 ? nn_corpus_tokenize(&job, job_path, m, tok, &d, err) : NN_OK;
    if (nn_comm_agree(cm, step, err) || nn_comm_agree(cm, nn_corpus_bcast(cm, &d, err), err))
        goto done;
    d.c.source = job.dataset_path;
    step = make_plan(&job, &d.c, &pl, err) ||
           !(done = nn_calloc((size_t)pl.n_shards, sizeof *done, err)) ||
           !(todo = nn_malloc((size_t)pl.n_shards * sizeof *todo + 1, err)) ||
           !(gathered = nn_malloc((size_t)cm->size * sizeof *gathered, err));
    if (step == NN_OK &&
        nn_harvest_init(&h, m, tok, &job, &d.c, job.batch_tokens, pl.max_prompts, err)) {
        nn_err_prefix(err, "%s", job_path);
        step = NN_ERR;
    }
    if (nn_comm_agree(cm, step, err) || identity_make(cm, &job, job_path, m, &id, err))
        goto done;
    if (opts->dry_run) {
        rc = cm->rank == 0 ? dry_run_report(&job, job_path, &id, m, h, &d, &pl, mode, ledger,
                                            cm->size, P, split, err)
                           : NN_OK;
        nn_comm_agree(cm, rc, err);
        goto done;
    }
    bool resumed = mode == OUT_RESUME;
    if (resumed && open_store(cm, &job, job_path, &id, m, h, &d, &pl, ledger, done, &f, err))
        goto done;
    if (!resumed && create_store(cm, &job, &id, m, h, &d, &pl, ledger, P, split, &f, err))
        goto done;
    ledger_created = false; /* the store is resumable: the ledger stays with it */
    timed_sink timed = {.inner = nn_h5_sink(f)};
    nn_sink sink = {.ctx = &timed, .write_rows = timed_rows, .write_block = timed_block};
    double t_work = nn_seconds();
    bool tty = isatty(STDERR_FILENO);
    progress pg = {.overwrite = opts->progress || tty,
                   .t0 = t_work,
                   .every = opts->progress_every > 0 ? opts->progress_every : 30};
    bool show = cm->rank == 0 && !opts->no_progress;
    if (show && pg.overwrite && cm->mpi && getenv("OMPI_COMM_WORLD_SIZE") &&
        !getenv("OMPI_MCA_odls_base_sigkill_timeout"))
        /* Open MPI's mpirun answers SIGTERM/SIGINT with SIGTERM to the ranks T s later and
         * SIGKILL T s after that (T = odls_base_sigkill_timeout, 1 s by default): measured in
         * docs/distributed.md "Signals under mpirun". */
        fprintf(stderr,
                "nnterp: note: under mpirun, SIGTERM/SIGINT leave the ranks 1 s to drain "
                "before SIGKILL; for more, run mpirun --mca odls_base_sigkill_timeout 60, or "
                "stop the job with SIGUSR1 (docs/distributed.md)\n");
    /* Progress counts the shards committed before (a resume) as done; the rate and the ETA come
     * from this run's tokens only. */
    int64_t total = d.c.offsets[d.c.n_prompts], done_tokens = 0, run_tokens = 0;
    int done_prompts = 0, n_todo = 0;
    for (int s = 0; s < pl.n_shards; s++) {
        int b0, b1;
        shard_range(&pl, s, &b0, &b1);
        if (!done[s]) {
            todo[n_todo++] = s;
            continue;
        }
        done_prompts += pl.batch_start[b1] - pl.batch_start[b0];
        done_tokens += d.c.offsets[pl.batch_start[b1]] - d.c.offsets[pl.batch_start[b0]];
    }
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
            step = nn_h5_write_rows(f, NN_DS_SHARD_DONE, (uint64_t)todo[k], 1, &one, err) ||
                   nn_ledger_append(ledger, todo[k], err);
        if (nn_comm_agree(cm, step, err))
            goto done;
        for (int k = start; k < end; k++) {
            int s = todo[k], b0, b1;
            shard_range(&pl, s, &b0, &b1);
            done[s] = true;
            int64_t tokens = d.c.offsets[pl.batch_start[b1]] - d.c.offsets[pl.batch_start[b0]];
            done_prompts += pl.batch_start[b1] - pl.batch_start[b0];
            done_tokens += tokens;
            run_tokens += tokens;
        }
        if (show)
            progress_line(&pg, run_tokens, done_tokens, total, done_prompts, d.c.n_prompts,
                          pl.n_shards - n_todo + end, pl.n_shards, end == n_todo);
        int stop = nn_comm_max_int(cm, (int)stop_requested);
        if (stop && end < n_todo) {
            int left = n_todo - end;
            if (show && pg.overwrite)
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
    /* sae operations: per-feature figures from the committed per-token rows (worker/sae_store.h) */
    step = cm->rank == 0 ? nn_sae_store_finalize(f, &job, err) : NN_OK;
    if (nn_comm_agree(cm, step, err))
        goto done;
    step = nn_h5_attr_string(f, "/", NN_ATTR_STATUS, "complete", err);
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
               work > 0 ? (double)run_tokens / work : 0.0, timed.seconds, work,
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
    /* A store is kept once its ledger can resume it (create_store disowns it then); before that,
     * this process removes only the files it made itself. */
    nn_h5_free(f);
    if (ledger_created && cm->rank == 0)
        unlink(ledger);
    nn_ledger_unlock(ledger_fd);
    identity_free(&id);
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
    nn_corpus_data_free(&d);
    nn_tokenizer_free(tok);
    nn_model_free(m);
    nn_job_free(&job);
    return rc;
}
