#define _GNU_SOURCE
#include "run.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "h5_sink.h"
#include "harvest.h"
#include "ledger.h"
#include "nn_json.h"

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
    int32_t *tokens;
    int64_t *offsets;
    int64_t *source_line;  /* [P] */
    int64_t *text_offsets; /* [P + 1] into text */
    char *text;
    char **names;
    int32_t *target_ids;
    int64_t *target_offsets;
    int n_truncated, n_skipped;
} corpus_data;

static void corpus_free(corpus_data *d)
{
    for (int t = 0; d->names && t < d->c.n_targets; t++)
        nn_free(d->names[t]);
    nn_free(d->names);
    nn_free(d->tokens);
    nn_free(d->offsets);
    nn_free(d->source_line);
    nn_free(d->text_offsets);
    nn_free(d->text);
    nn_free(d->target_ids);
    nn_free(d->target_offsets);
    memset(d, 0, sizeof *d);
}

static int push_i32(int32_t **v, size_t *n, size_t *cap, int32_t x, nn_err *err)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4096;
        int32_t *g = nn_realloc(*v, c * sizeof *g, err);
        if (!g)
            return NN_ERR;
        *v = g;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return NN_OK;
}

/* Targets of one prompt: {"name": "word" | ["word", ...]} with the same names as the first. */
static int prompt_targets(corpus_data *d, nn_tokenizer *tok, const char *json, const char *path,
                          int64_t line, size_t *n_ids, size_t *cap_ids, nn_err *err)
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
            if (push_i32(&d->target_ids, n_ids, cap_ids, ids.ids[i], err)) {
                nn_ids_free(&ids);
                goto done;
            }
        nn_ids_free(&ids);
        size_t slot = (size_t)d->c.n_prompts * (size_t)d->c.n_targets + (size_t)k + 1;
        d->target_offsets[slot] = (int64_t)*n_ids;
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
                        job->targets_field, &ds, err))
        return NN_ERR;
    int max_tokens = job->max_tokens ? job->max_tokens : m->cfg.max_positions;
    int rc = NN_ERR;
    size_t n_tok = 0, cap_tok = 0, n_tid = 0, cap_tid = 0;
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
            if (prompt_targets(d, tok, ds.targets[i], job->dataset_path, ds.source_line[i], &n_tid,
                               &cap_tid, err)) {
                nn_ids_free(&ids);
                goto done;
            }
        }
        for (size_t k = 0; k < ids.n; k++)
            if (push_i32(&d->tokens, &n_tok, &cap_tok, ids.ids[k], err)) {
                nn_ids_free(&ids);
                goto done;
            }
        nn_ids_free(&ids);
        memcpy(d->text + d->text_offsets[p], text, len);
        d->text_offsets[p + 1] = d->text_offsets[p] + (int64_t)len;
        d->source_line[p] = ds.source_line[i];
        d->offsets[p + 1] = (int64_t)n_tok;
        d->c.n_prompts++;
    }
    if (d->c.n_prompts == 0) {
        nn_fail(err, "%s: no prompts left (all were too long and skipped)", job->dataset_path);
        goto done;
    }
    d->c.tokens = d->tokens;
    d->c.offsets = d->offsets;
    d->c.target_names = (const char *const *)d->names;
    d->c.target_ids = d->target_ids;
    d->c.target_offsets = d->target_offsets;
    rc = NN_OK;
done:
    nn_dataset_free(&ds);
    if (rc)
        corpus_free(d);
    return rc;
}

/* Batches: contiguous prompts up to batch_tokens tokens; shards: shard_batches batches. */
typedef struct plan {
    int *batch_start; /* [n_batches + 1] prompt index */
    int n_batches, n_shards, max_prompts;
} plan;

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
    pl->n_shards = (pl->n_batches + job->shard_batches - 1) / job->shard_batches;
    return NN_OK;
}

static int write_corpus(nn_h5file *f, const corpus_data *d, nn_err *err)
{
    const nn_corpus *c = &d->c;
    uint64_t P = (uint64_t)c->n_prompts, N = (uint64_t)c->offsets[c->n_prompts], P1 = P + 1,
             B = (uint64_t)d->text_offsets[P];
    int32_t *prompt = nn_malloc(N * sizeof *prompt + 1, err);
    int32_t *position = prompt ? nn_malloc(N * sizeof *position + 1, err) : NULL;
    int rc = NN_ERR;
    if (!position)
        goto done;
    for (uint64_t p = 0; p < P; p++)
        for (int64_t t = c->offsets[p]; t < c->offsets[p + 1]; t++) {
            prompt[t] = (int32_t)p;
            position[t] = (int32_t)(t - c->offsets[p]);
        }
    if (nn_h5_write(f, "/prompts/token_offsets", NN_H5_I64, 1, &P1, c->offsets, err) ||
        nn_h5_write(f, "/prompts/text_offsets", NN_H5_I64, 1, &P1, d->text_offsets, err) ||
        nn_h5_write(f, "/prompts/text", NN_H5_U8, 1, &(uint64_t){B ? B : 1}, B ? d->text : "",
                    err) ||
        nn_h5_write(f, "/prompts/source_line", NN_H5_I64, 1, &P, d->source_line, err) ||
        nn_h5_write(f, "/tokens/ids", NN_H5_I32, 1, &N, c->tokens, err) ||
        nn_h5_write(f, "/tokens/prompt", NN_H5_I32, 1, &N, prompt, err) ||
        nn_h5_write(f, "/tokens/position", NN_H5_I32, 1, &N, position, err))
        goto done;
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
            goto done;
    }
    rc = NN_OK;
done:
    nn_free(prompt);
    nn_free(position);
    return rc;
}

/* A sink that only adds up the bytes of what would be declared: the store's final size. */
static int count_declare(void *ctx, const char *path, nn_sink_type type, int rank,
                         const uint64_t *dims, nn_err *err)
{
    static const nn_h5_type types[] = {
        [NN_SINK_F32] = NN_H5_F32, [NN_SINK_I32] = NN_H5_I32, [NN_SINK_I64] = NN_H5_I64,
        [NN_SINK_U8] = NN_H5_U8,   [NN_SINK_F16] = NN_H5_F16, [NN_SINK_BF16] = NN_H5_BF16};
    *(uint64_t *)ctx += nn_h5_dataset_bytes(types[type], rank, dims) + 1024;
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

int nn_run_job(const char *job_path, const nn_run_options *opts, nn_err *err)
{
    nn_job job;
    if (nn_job_load(job_path, &job, err))
        return NN_ERR;
    nn_model *m = NULL;
    nn_tokenizer *tok = NULL;
    corpus_data d = {0};
    plan pl = {0};
    nn_harvest *h = NULL;
    nn_h5file *f = NULL;
    char *ledger = NULL, *stored = NULL;
    bool *done = NULL;
    int rc = NN_ERR;
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
    if (job.pipeline_stages != 1) {
        nn_fail(err,
                "%s: parallel.pipeline_stages %d needs an MPI run (mpirun -np N); this build "
                "runs jobs in one process",
                job_path, job.pipeline_stages);
        goto done;
    }
    if (nn_model_load(job.model, &m, err) ||
        nn_tokenizer_load_for_model(m->source, job.tokenizer, &tok, err) ||
        tokenize_dataset(&job, m, tok, &d, err) || make_plan(&job, &d.c, &pl, err) ||
        nn_harvest_init(&h, m, tok, &job, &d.c, job.batch_tokens, pl.max_prompts, err) ||
        !(ledger = ledger_path(job.output, err)) ||
        !(done = nn_calloc((size_t)pl.n_shards, sizeof *done, err)))
        goto done;
    if (nn_path_is_file(job.output)) {
        nn_fail(err, "%s already exists (a finished store); remove it or choose another output",
                job.output);
        goto done;
    }
    nn_sink sink;
    bool resumed = false;
    if (opts->resume && nn_h5_open_partial(job.output, &f, err) == NN_OK) {
        /* the same job on the same model, or nothing */
        if (!(stored = nn_h5_get_attr_string(f, "/", "job", err)))
            goto done;
        if (strcmp(stored, job.canonical) != 0) {
            nn_fail(err,
                    "%s.partial was made by a different job; --resume needs the same job file "
                    "(or remove the .partial to start over)",
                    job.output);
            goto done;
        }
        nn_free(stored);
        if (!(stored = nn_h5_get_attr_string(f, "/", "model_config", err)))
            goto done;
        if (strcmp(stored, m->config_json) != 0) {
            nn_fail(err, "%s.partial was made with a different model than %s", job.output,
                    job.model);
            goto done;
        }
        if (nn_ledger_read(ledger, pl.n_shards, done, err))
            goto done;
        resumed = true;
        sink = nn_h5_sink(f);
    } else {
        if (opts->resume)
            fprintf(stderr, "nnterp: nothing to resume (%s); starting the job\n", err->msg);
        char split[64], shards[32];
        snprintf(split, sizeof split, "[[0, %d]]", m->cfg.n_layers);
        snprintf(shards, sizeof shards, "%d", pl.n_shards);
        uint64_t ns = (uint64_t)pl.n_shards, bytes;
        if (store_bytes(h, &d, m, &job, pl.n_shards, &bytes, err) ||
            nn_h5_check_space(job.output, bytes, err) || nn_h5_create(job.output, &f, err))
            goto done;
        sink = nn_h5_sink(f);
        if (write_corpus(f, &d, err) || nn_harvest_declare(h, &sink, err) ||
            nn_h5_create_dataset(f, "/progress/shard_done", NN_H5_U8, 1, &ns, err) ||
            nn_h5_write_rows(f, "/progress/shard_done", 0, ns, done, err) ||
            nn_h5_create_dataset(f, "/progress/shard_prompts", NN_H5_I32, 1, &(uint64_t){ns + 1},
                                 err) ||
            nn_h5_attr_string(f, "/", "format", "nnterp-store", err) ||
            nn_h5_attr_i64(f, "/", "format_version", 1, err) ||
            nn_h5_attr_string(f, "/", "nnterp_version", NNTERP_VERSION, err) ||
            nn_h5_attr_string(f, "/", "model", job.model, err) ||
            nn_h5_attr_string(f, "/", "model_config", m->config_json, err) ||
            nn_h5_attr_string(f, "/", "job", job.canonical, err) ||
            nn_h5_attr_i64(f, "/", "world_size", 1, err) ||
            nn_h5_attr_i64(f, "/", "data_parallel", 1, err) ||
            nn_h5_attr_i64(f, "/", "pipeline_stages", 1, err) ||
            nn_h5_attr_string(f, "/", "layer_split", split, err) ||
            nn_h5_attr_string(f, "/", "shards", shards, err) ||
            nn_h5_attr_string(f, "/", "status", "in progress", err))
            goto done;
        int *sp = nn_malloc(((size_t)pl.n_shards + 1) * sizeof *sp, err);
        if (!sp)
            goto done;
        for (int s = 0; s <= pl.n_shards; s++) {
            int b = s * job.shard_batches;
            sp[s] = pl.batch_start[b < pl.n_batches ? b : pl.n_batches];
        }
        int w = nn_h5_write_rows(f, "/progress/shard_prompts", 0, ns + 1, sp, err);
        nn_free(sp);
        /* The structure is complete, flushed and its space reserved before any row is written. */
        if (w || nn_h5_reserve(f, err) || nn_ledger_create(ledger, pl.n_shards, err))
            goto done;
    }
    bool show = opts->progress || isatty(STDERR_FILENO);
    int64_t total = d.c.offsets[d.c.n_prompts], done_tokens = 0;
    int done_prompts = 0;
    for (int s = 0; s < pl.n_shards; s++) {
        int b0 = s * job.shard_batches, b1 = b0 + job.shard_batches;
        if (b1 > pl.n_batches)
            b1 = pl.n_batches;
        if (done[s])
            continue;
        for (int b = b0; b < b1; b++)
            if (nn_harvest_run(h, pl.batch_start[b], pl.batch_start[b + 1], &sink, err))
                goto done;
        uint8_t one = 1;
        if (nn_h5_flush(f, err) ||
            nn_h5_write_rows(f, "/progress/shard_done", (uint64_t)s, 1, &one, err) ||
            nn_h5_flush(f, err) || nn_ledger_append(ledger, s, err))
            goto done;
        done[s] = true;
        done_prompts += pl.batch_start[b1] - pl.batch_start[b0];
        done_tokens += d.c.offsets[pl.batch_start[b1]] - d.c.offsets[pl.batch_start[b0]];
        if (show)
            progress_line(t0, done_tokens, total, done_prompts, d.c.n_prompts, false);
        if (stop_requested) {
            int left = 0;
            for (int k = 0; k < pl.n_shards; k++)
                left += !done[k];
            if (left) {
                if (show)
                    fprintf(stderr, "\n");
                nn_fail(err,
                        "interrupted by signal %d: %d of %d shards committed in %s.partial; "
                        "continue with: nnterp run %s --resume",
                        (int)stop_requested, pl.n_shards - left, pl.n_shards, job.output, job_path);
                nn_h5_close_keep(f);
                f = NULL;
                rc = NN_RUN_INTERRUPTED;
                goto done;
            }
        }
    }
    if (show && done_prompts)
        progress_line(t0, done_tokens, total, done_prompts, d.c.n_prompts, true);
    if (nn_h5_attr_string(f, "/", "status", "complete", err))
        goto done;
    nn_h5file *finished = f;
    f = NULL;
    if (nn_h5_commit(finished, err))
        goto done;
    unlink(ledger);
    if (!opts->quiet) {
        double dt = nn_seconds() - t0;
        printf("nnterp: wrote %s: %d prompts, %lld tokens, %d operations in %.1f s%s", job.output,
               d.c.n_prompts, (long long)total, job.n_ops, dt, resumed ? " (resumed)" : "");
        if (d.n_truncated || d.n_skipped)
            printf("; %d prompts truncated, %d skipped (too long)", d.n_truncated, d.n_skipped);
        printf("\n");
    }
    rc = NN_OK;
done:
    if (f) {
        /* a failure keeps the partial store only when its ledger can resume it */
        if (nn_path_is_file(ledger ? ledger : ""))
            nn_h5_close_keep(f);
        else
            nn_h5_free(f);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    sigaction(SIGXFSZ, &old_xfsz, NULL);
    nn_free(stored);
    nn_free(done);
    nn_free(ledger);
    nn_harvest_free(h);
    nn_free(pl.batch_start);
    corpus_free(&d);
    nn_tokenizer_free(tok);
    nn_model_free(m);
    nn_job_free(&job);
    return rc;
}
