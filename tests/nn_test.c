#include "nn_test.h"

#include <math.h>
#include <string.h>

int nn_test_failures;
int nn_test_checks;

const char *nn_test_shared_dir(const char *what)
{
    const char *dir = getenv("NNTERP_SHARED");
    if (!dir || !nn_path_is_dir(dir)) {
        fprintf(stderr,
                "SKIPPED: %s needs the shared test data (set NNTERP_SHARED; looked at '%s')\n",
                what, dir ? dir : "(unset)");
        exit(NN_TEST_SKIP);
    }
    return dir;
}

int nn_test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, nn_test_checks, nn_test_failures);
    if (nn_test_checks == 0) {
        /* A suite that checked nothing has not passed: its data or its loop went missing. */
        fprintf(stderr, "%s: no check ran\n", name);
        return 1;
    }
    return nn_test_failures ? 1 : 0;
}

char *nn_test_slurp(const char *path, size_t *n)
{
    nn_err err;
    char *buf = NULL;
    if (nn_file_read(path, 1 << 28, &buf, n, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return buf;
}

void nn_test_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

double nn_test_max_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}
