/* The file formats' one definition (jobs/store.h): the docs name every format, attribute and
 * shared dataset of it (docs/jobs.md for the store and the lens file, docs/trace-format.md for
 * trace files), and the format check refuses another format, a version newer than the reader's
 * and a file without one, naming the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_test.h"
#include "store.h"

static char *slurp(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", NNTERP_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

int main(void)
{
    char *jobs = slurp("docs/jobs.md"), *trace = slurp("docs/trace-format.md");
    CHECK(jobs && trace, "docs/jobs.md or docs/trace-format.md unreadable");
    if (jobs && trace) {
        for (const char *const *n = nn_store_names; *n; n++) {
            char quoted[128];
            snprintf(quoted, sizeof quoted, "`%s", *n); /* `name` or `/path/...` in a table */
            CHECK(strstr(jobs, quoted) || strstr(trace, quoted),
                  "%s (jobs/store.h) is named in neither docs/jobs.md nor docs/trace-format.md",
                  *n);
        }
        for (int k = 0; k < NN_FILE_COUNT; k++)
            CHECK(strstr(jobs, nn_file_formats[k].name) || strstr(trace, nn_file_formats[k].name),
                  "format %s is not documented", nn_file_formats[k].name);
    }
    nn_err err = {{0}};
    nn_file_kind kind = NN_FILE_COUNT;
    unsigned plot = 1u << NN_FILE_STORE | 1u << NN_FILE_LENS | 1u << NN_FILE_PATCH;
    CHECK(nn_file_format_check("a.h5", "nnterp-store", 1, plot, &kind, &err) == NN_OK &&
              kind == NN_FILE_STORE,
          "a version-1 store refused: %s", err.msg);
    CHECK(nn_file_format_check("l.h5", "nnterp-lens", -1, plot, &kind, &err) == NN_OK &&
              kind == NN_FILE_LENS,
          "a lens file without format_version (older nnterp) refused: %s", err.msg);
    CHECK(nn_file_format_check("a.h5", "nnterp-store", 2, plot, &kind, &err) == NN_ERR &&
              strstr(err.msg, "a.h5: format_version 2 of nnterp-store; this nnterp reads "
                              "versions 1 to 1"),
          "a newer store accepted or the wrong message: %s", err.msg);
    CHECK(nn_file_format_check("t.h5", "nnterp-trace", 1, plot, &kind, &err) == NN_ERR &&
              strstr(err.msg, "t.h5: format 'nnterp-trace' is not a file of nnterp run, "
                              "nnterp lens -o, nnterp patch -o"),
          "a trace file accepted by plot, or the wrong message: %s", err.msg);
    CHECK(nn_file_format_check("x.h5", NULL, 1, plot, &kind, &err) == NN_ERR &&
              strstr(err.msg, "format '(none)'"),
          "no format accepted: %s", err.msg);
    printf("  %d formats; every name of jobs/store.h is in the docs\n", NN_FILE_COUNT);
    free(jobs);
    free(trace);
    return nn_test_finish("test_store_format");
}
