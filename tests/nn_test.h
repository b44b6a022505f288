/* Helpers shared by the C tests: checks that count failures, and the loud skip. */
#ifndef NN_TEST_H
#define NN_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "nn_base.h"

#define NN_TEST_SKIP 77 /* CTest's SKIP_RETURN_CODE */

extern int nn_test_failures;
extern int nn_test_checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        nn_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            nn_test_failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_OK(call, err)                                                                        \
    do {                                                                                           \
        nn_test_checks++;                                                                          \
        if ((call) != NN_OK) {                                                                     \
            nn_test_failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, (err)->msg);        \
        }                                                                                          \
    } while (0)

/* The shared test data directory (../shared beside the checkout), or exits with a loud skip. */
const char *nn_test_shared_dir(const char *what);
int nn_test_finish(const char *name);
/* Test scaffolding: a whole file read or written, or the test ends with the reason (exit 1). */
char *nn_test_slurp(const char *path, size_t *n);
void nn_test_write_file(const char *path, const void *data, size_t n);
/* The largest |a[i] - b[i]|, in double. */
double nn_test_max_diff(const float *a, const float *b, size_t n);

#endif
