/* bench_tokenizer: encoding speed of nnterp's tokenizer (tokens/s and MB/s).
 *
 * Usage: bench_tokenizer TOKENIZER_PATH CORPUS_FILE [--reps R] [--dump-ids OUT [--dump-every K]]
 *
 * CORPUS_FILE holds one document per line; each line (without its '\n') is encoded on its own
 * with add_special false, the way a dataset of prompts is tokenized. One untimed pass comes first
 * and is reported as "cold" (it fills the tokenizer's word cache); then R timed passes (default
 * 5), whose median gives the figures. The id buffer is reused across lines, so the timed loop
 * allocates nothing once it has grown.
 *
 * --dump-ids OUT writes, for every K-th line (default 1000; line numbers from 0), a line
 * "LINENO<TAB>id id id..." to OUT, so bench/tokenizer.sh can compare the ids with a reference
 * implementation's. Those lines are encoded once more after the timed passes: the dump costs
 * the timing nothing.
 *
 * The JSON on stdout: {"tokenizer", "lines", "tokens", "bytes", "reps", "seconds_load",
 * "seconds_cold", "tokens_per_s_cold", "mb_per_s_cold", "seconds_median", "runs", "tokens_per_s",
 * "mb_per_s", "cpu_seconds_cold", "cpu_seconds_median", "mb_per_s_cpu"} (MB = 10^6 bytes; bytes
 * counts the text encoded, newlines excluded; seconds are wall-clock, cpu_seconds the process's
 * CPU time, which other work on a busy machine does not inflate). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_median.h"
#include "tokenizer.h"

/* The corpus as [start, end) spans of lines inside one buffer. */
typedef struct line_span {
    size_t off, len;
} line_span;

/* CPU seconds used by this process (all threads): unlike the wall clock, other work on a busy
 * machine does not inflate it, so the JSON gives both. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) {
        fprintf(stderr, "bench_tokenizer: %s wants an integer in %ld..%ld, got '%s'\n", flag, lo,
                hi, s);
        return NN_ERR;
    }
    *out = x;
    return NN_OK;
}

/* Splits text into lines (a final line without '\n' counts; a trailing "\r" is kept as text). */
static int split_lines(const char *text, size_t size, line_span **out, size_t *n_out)
{
    size_t n = 0;
    for (size_t i = 0; i < size; i++)
        n += text[i] == '\n';
    if (size && text[size - 1] != '\n')
        n++;
    line_span *l = malloc((n ? n : 1) * sizeof *l);
    if (!l)
        return NN_ERR;
    size_t k = 0, start = 0;
    for (size_t i = 0; i < size; i++) {
        if (text[i] == '\n') {
            l[k++] = (line_span){start, i - start};
            start = i + 1;
        }
    }
    if (start < size)
        l[k++] = (line_span){start, size - start};
    *out = l;
    *n_out = k;
    return NN_OK;
}

/* One pass over every line; tokens counted into *tokens. */
static int encode_all(nn_tokenizer *tok, const char *text, const line_span *lines, size_t n_lines,
                      nn_ids *ids, size_t *tokens, nn_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n_lines; i++) {
        ids->n = 0;
        if (nn_tokenizer_encode(tok, text + lines[i].off, lines[i].len, false, ids, err)) {
            char msg[sizeof err->msg];
            memcpy(msg, err->msg, sizeof msg);
            snprintf(err->msg, sizeof err->msg, "line %zu: %.*s", i, (int)(sizeof msg - 64), msg);
            return NN_ERR;
        }
        total += ids->n;
    }
    *tokens = total;
    return NN_OK;
}

/* Writes every every-th line's ids, encoded once more after the timing. */
static int dump_ids(nn_tokenizer *tok, const char *text, const line_span *lines, size_t n_lines,
                    size_t every, nn_ids *ids, FILE *f, nn_err *err)
{
    for (size_t i = 0; i < n_lines; i += every) {
        ids->n = 0;
        if (nn_tokenizer_encode(tok, text + lines[i].off, lines[i].len, false, ids, err))
            return NN_ERR;
        fprintf(f, "%zu\t", i);
        for (size_t j = 0; j < ids->n; j++)
            fprintf(f, j ? " %d" : "%d", (int)ids->ids[j]);
        fputc('\n', f);
    }
    return NN_OK;
}

int main(int argc, char **argv)
{
    const char *tok_path = NULL, *corpus = NULL, *dump_path = NULL;
    long reps = 5, dump_every = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            if (parse_long("--reps", argv[++i], 1, 1000, &reps))
                return 2;
        } else if (!strcmp(argv[i], "--dump-ids") && i + 1 < argc) {
            dump_path = argv[++i];
        } else if (!strcmp(argv[i], "--dump-every") && i + 1 < argc) {
            if (parse_long("--dump-every", argv[++i], 1, 1000000000L, &dump_every))
                return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "bench_tokenizer: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (!tok_path) {
            tok_path = argv[i];
        } else if (!corpus) {
            corpus = argv[i];
        } else {
            fprintf(stderr, "bench_tokenizer: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!tok_path || !corpus) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_PATH CORPUS_FILE [--reps R] "
                        "[--dump-ids OUT [--dump-every K]]\n");
        return 2;
    }

    int rc = 1;
    nn_err err = {{0}};
    nn_tokenizer *tok = NULL;
    char *text = NULL;
    size_t size = 0, n_lines = 0;
    line_span *lines = NULL;
    nn_ids ids = {0};
    double *runs = NULL, *cpu_runs = NULL;
    FILE *dump = NULL;

    double t0 = nn_seconds();
    if (nn_tokenizer_load(tok_path, &tok, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        goto done;
    }
    double load_s = nn_seconds() - t0;
    if (nn_file_read(corpus, (size_t)1 << 34, &text, &size, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        goto done;
    }
    if (split_lines(text, size, &lines, &n_lines)) {
        fprintf(stderr, "bench_tokenizer: out of memory splitting %s into lines\n", corpus);
        goto done;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < n_lines; i++)
        bytes += lines[i].len;
    if (bytes == 0) {
        fprintf(stderr, "bench_tokenizer: %s holds no text to encode\n", corpus);
        goto done;
    }
    if (dump_path && !(dump = fopen(dump_path, "w"))) {
        fprintf(stderr, "bench_tokenizer: cannot write %s: %s\n", dump_path, strerror(errno));
        goto done;
    }
    runs = malloc((size_t)reps * sizeof *runs);
    cpu_runs = malloc((size_t)reps * sizeof *cpu_runs);
    if (!runs || !cpu_runs) {
        fprintf(stderr, "bench_tokenizer: out of memory\n");
        goto done;
    }

    size_t tokens = 0, again = 0;
    double c0 = cpu_seconds();
    t0 = nn_seconds();
    if (encode_all(tok, text, lines, n_lines, &ids, &tokens, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        goto done;
    }
    double cold = nn_seconds() - t0, cpu_cold = cpu_seconds() - c0;
    for (long r = 0; r < reps; r++) {
        c0 = cpu_seconds();
        t0 = nn_seconds();
        if (encode_all(tok, text, lines, n_lines, &ids, &again, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            goto done;
        }
        runs[r] = nn_seconds() - t0;
        cpu_runs[r] = cpu_seconds() - c0;
        if (again != tokens) {
            fprintf(stderr, "bench_tokenizer: pass %ld gave %zu tokens, the first %zu\n", r + 1,
                    again, tokens);
            goto done;
        }
    }
    double med = median(runs, (int)reps), cpu_med = median(cpu_runs, (int)reps);
    if (dump && dump_ids(tok, text, lines, n_lines, (size_t)dump_every, &ids, dump, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        goto done;
    }

    printf("{\"tokenizer\": \"");
    for (const char *p = tok_path; *p; p++) /* paths here are plain; escape the two that matter */
        printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
    printf("\", \"lines\": %zu, \"tokens\": %zu, \"bytes\": %zu, \"reps\": %ld, "
           "\"seconds_load\": %.6f, \"seconds_cold\": %.6f, \"tokens_per_s_cold\": %.1f, "
           "\"mb_per_s_cold\": %.3f, \"seconds_median\": %.6f, \"runs\": [",
           n_lines, tokens, bytes, reps, load_s, cold, (double)tokens / cold,
           (double)bytes / cold / 1e6, med);
    for (long r = 0; r < reps; r++)
        printf(r ? ", %.6f" : "%.6f", runs[r]);
    printf("], \"tokens_per_s\": %.1f, \"mb_per_s\": %.3f, \"cpu_seconds_cold\": %.6f, "
           "\"cpu_seconds_median\": %.6f, \"mb_per_s_cpu\": %.3f}\n",
           (double)tokens / med, (double)bytes / med / 1e6, cpu_cold, cpu_med,
           (double)bytes / cpu_med / 1e6);
    rc = 0;

done:
    if (dump && fclose(dump) && rc == 0) {
        fprintf(stderr, "bench_tokenizer: error writing %s\n", dump_path);
        rc = 1;
    }
    free(runs);
    free(cpu_runs);
    nn_ids_free(&ids);
    free(lines);
    nn_free(text);
    nn_tokenizer_free(tok);
    return rc;
}
