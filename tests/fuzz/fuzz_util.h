/* Helpers shared by the libFuzzer targets: a private temporary directory per process (parsers that
 * take a path get the input written there), and the shared test data directory. */
#ifndef NN_FUZZ_UTIL_H
#define NN_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_base.h"

#ifndef NNTERP_SHARED_DEFAULT
#define NNTERP_SHARED_DEFAULT "../shared"
#endif

static char fuzz_dir[64];

static inline void fuzz_cleanup(void)
{
    if (!fuzz_dir[0])
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

/* The process's temporary directory, created on first use and removed at exit. */
static inline const char *fuzz_tmpdir(void)
{
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/nnterp-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return fuzz_dir;
}

/* dir/name of a file in the temporary directory. */
static inline void fuzz_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", fuzz_tmpdir(), name);
}

/* Writes data to the temporary directory as name; aborts on an I/O error (not a finding). */
static inline void fuzz_write(const char *name, const void *data, size_t n)
{
    char path[256];
    fuzz_path(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* The shared test data directory, or NULL when absent. */
static inline const char *fuzz_shared(void)
{
    const char *d = getenv("NNTERP_SHARED");
    if (!d || !*d)
        d = NNTERP_SHARED_DEFAULT;
    return nn_path_is_dir(d) ? d : NULL;
}

/* A NUL-terminated copy of the input (the caller frees it). */
static inline char *fuzz_cstr(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    if (n)
        memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

#endif
