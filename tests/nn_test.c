#include "nn_test.h"

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
    return nn_test_failures ? 1 : 0;
}
