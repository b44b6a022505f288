/* Runs a fuzz target without libFuzzer over files and directories of inputs (the checked-in seeds
 * and every reproducer of a fixed finding): the corpora become regression tests of the ordinary
 * and the sanitizer builds. Exits 77 (skipped) when a target's initializer reports it cannot run.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path)
{
    char *buf = NULL;
    size_t n = 0;
    nn_err err;
    if (nn_file_read(path, (size_t)64 << 20, &buf, &n, &err) != NN_OK) {
        fprintf(stderr, "replay: %s\n", err.msg);
        return 1;
    }
    /* An exact-size copy, so that a read past the input is caught by AddressSanitizer. */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact)
        return 1;
    memcpy(exact, buf, n);
    nn_free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    int runs = 0, failures = 0;
    for (int i = 1; i < argc; i++) {
        if (!nn_path_is_dir(argv[i])) {
            failures += run_file(argv[i]);
            runs++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            return 1;
        }
        char **names = NULL;
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char **g = realloc(names, (n + 1) * sizeof *g);
            if (!g)
                return 1;
            names = g;
            if (asprintf(&names[n++], "%s/%s", argv[i], e->d_name) < 0)
                return 1;
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t k = 0; k < n; k++) {
            failures += run_file(names[k]);
            runs++;
            free(names[k]);
        }
        free(names);
    }
    printf("replay: %d inputs, %d unreadable\n", runs, failures);
    return failures ? 1 : 0;
}
