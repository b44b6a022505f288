#include "sae_store.h"
#include "store.h"

#include "op.h"
#include "op_sae.h"

#include <stdio.h>
#include <string.h>

static void *read_all(nn_h5file *f, const char *path, size_t elem, uint64_t *dims, int *rank,
                      nn_err *err)
{
    nn_h5_type type;
    if (nn_h5_shape(f, path, &type, rank, dims, err))
        return NULL;
    size_t n = 1;
    for (int i = 0; i < *rank; i++)
        n *= (size_t)dims[i];
    void *buf = nn_malloc(n * elem + 8, err);
    if (buf && nn_h5_read(f, path, buf, n * elem + 8, err)) {
        nn_free(buf);
        return NULL;
    }
    return buf;
}

static int finalize_one(nn_h5file *f, const char *g, int top_n, nn_err *err)
{
    char path[256];
    uint64_t dims[8], fdims[8];
    int rank, P1rank;
    int rc = NN_ERR;
    int32_t *ids = NULL, *l0 = NULL;
    float *vals = NULL;
    int64_t *offs = NULL;
    nn_sae_features feat = {0};
    snprintf(path, sizeof path, "%s/features/count", g);
    nn_h5_type type;
    if (nn_h5_shape(f, path, &type, &rank, fdims, err))
        return NN_ERR;
    snprintf(path, sizeof path, "%s/feature_ids", g);
    if (!(ids = read_all(f, path, sizeof *ids, dims, &rank, err)))
        goto done;
    snprintf(path, sizeof path, "%s/feature_acts", g);
    if (!(vals = read_all(f, path, sizeof *vals, dims, &rank, err)))
        goto done;
    snprintf(path, sizeof path, "%s/l0", g);
    uint64_t ldims[8];
    if (!(l0 = read_all(f, path, sizeof *l0, ldims, &rank, err)))
        goto done;
    uint64_t pdims[8];
    if (!(offs = read_all(f, NN_DS_PROMPT_TOKEN_OFFSETS, sizeof *offs, pdims, &P1rank, err)))
        goto done;
    if (nn_sae_features_compute(ids, vals, l0, (int64_t)dims[0], (int)dims[1], (int)fdims[0], offs,
                                (int)pdims[0] - 1, top_n, &feat, err))
        goto done;
    struct {
        const char *name;
        const void *data;
    } out[] = {
        {"count", feat.count},
        {"density", feat.density},
        {"max", feat.max},
        {"mean", feat.mean},
        {"top_values", feat.top_values},
        {"top_prompts", feat.top_prompts},
        {"top_positions", feat.top_positions},
    };
    for (size_t k = 0; k < sizeof out / sizeof out[0]; k++) {
        snprintf(path, sizeof path, "%s/features/%s", g, out[k].name);
        if (nn_h5_write_rows(f, path, 0, fdims[0], out[k].data, err))
            goto done;
    }
    /* a dataset, not an attribute: only rank 0 writes here, and parallel HDF5 makes attributes
     * collective */
    snprintf(path, sizeof path, "%s/features/truncated_tokens", g);
    if (nn_h5_write_rows(f, path, 0, 1, &feat.truncated_tokens, err))
        goto done;
    rc = NN_OK;
done:
    nn_free(ids);
    nn_free(vals);
    nn_free(l0);
    nn_free(offs);
    nn_sae_features_free(&feat);
    return rc;
}

int nn_sae_store_finalize(nn_h5file *f, const nn_job *job, nn_err *err)
{
    char g[160];
    for (int i = 0; i < job->n_ops; i++) {
        const nn_op *op = &job->ops[i];
        if (op->cls != &nn_op_sae)
            continue;
        for (int k = 0; k < op->sae->n; k++) {
            snprintf(g, sizeof g, "/%s/%d", op->group, k);
            if (finalize_one(f, g, op->sae->top_n, err))
                return nn_err_prefix(err, "%s", g);
        }
    }
    return NN_OK;
}
