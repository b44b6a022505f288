/* The file formats' one definition (store.h). */
#include "store.h"

#include <stdio.h>
#include <string.h>

const nn_file_format nn_file_formats[NN_FILE_COUNT] = {
    [NN_FILE_STORE] = {"nnterp-store", 1, "nnterp run"},
    [NN_FILE_TRACE] = {"nnterp-trace", 1, "nnterp trace -o"},
    [NN_FILE_LENS] = {"nnterp-lens", 1, "nnterp lens -o"},
    [NN_FILE_PATCH] = {"nnterp-patch", 1, "nnterp patch -o"},
    [NN_FILE_PATCHSCOPE] = {"nnterp-patchscope", 1, "nnterp patchscope -o"},
};

const char *const nn_store_names[] = {NN_ATTR_FORMAT,
                                      NN_ATTR_FORMAT_VERSION,
                                      NN_ATTR_NNTERP_VERSION,
                                      NN_ATTR_MODEL,
                                      NN_ATTR_MODEL_CONFIG,
                                      NN_ATTR_MODEL_SNAPSHOT,
                                      NN_ATTR_COMPUTE,
                                      NN_ATTR_COMPUTE_KERNEL,
                                      NN_ATTR_PROMPT,
                                      NN_ATTR_JOB,
                                      NN_ATTR_IDENTITY,
                                      NN_ATTR_WEIGHTS,
                                      NN_ATTR_TARGET_NAMES,
                                      NN_ATTR_SHARDS,
                                      NN_ATTR_STATUS,
                                      NN_ATTR_WORLD_SIZE,
                                      NN_ATTR_DATA_PARALLEL,
                                      NN_ATTR_PIPELINE_STAGES,
                                      NN_ATTR_LAYER_SPLIT,
                                      NN_DS_TOKEN_IDS,
                                      NN_DS_TOKEN_PROMPT,
                                      NN_DS_TOKEN_POSITION,
                                      NN_DS_PROMPT_TOKEN_OFFSETS,
                                      NN_DS_PROMPT_TEXT,
                                      NN_DS_PROMPT_TEXT_OFFSETS,
                                      NN_DS_PROMPT_SOURCE_LINE,
                                      NN_DS_TARGET_TOKEN_IDS,
                                      NN_DS_TARGET_TOKEN_OFFSETS,
                                      NN_DS_SHARD_DONE,
                                      NN_DS_SHARD_PROMPTS,
                                      NN_DS_LENS_TOP_IDS,
                                      NN_DS_LENS_TOP_PROBS,
                                      NN_DS_LENS_LAYERS,
                                      NN_DS_LENS_POSITIONS,
                                      NULL};

const nn_file_format *nn_file_format_find(const char *name)
{
    for (int k = 0; name && k < NN_FILE_COUNT; k++)
        if (!strcmp(nn_file_formats[k].name, name))
            return &nn_file_formats[k];
    return NULL;
}

int nn_file_format_check(const char *file, const char *format, long version, unsigned accepted,
                         nn_file_kind *kind, nn_err *err)
{
    const nn_file_format *f = nn_file_format_find(format);
    if (!f || !(accepted & (1u << (f - nn_file_formats)))) {
        char want[256] = "";
        size_t n = 0;
        for (int k = 0; k < NN_FILE_COUNT; k++)
            if (accepted & (1u << k))
                n += (size_t)snprintf(want + n, n < sizeof want ? sizeof want - n : 0, "%s%s",
                                      n ? ", " : "", nn_file_formats[k].what);
        return nn_fail(err, "%s: format '%s' is not a file of %s", file, format ? format : "(none)",
                       want);
    }
    if (version < 0)
        version = 1; /* lens files before format_version was written */
    if (version > f->version || version < 1)
        return nn_fail(err,
                       "%s: format_version %ld of %s; this nnterp reads versions 1 to %ld "
                       "(a newer nnterp wrote it)",
                       file, version, f->name, f->version);
    if (kind)
        *kind = (nn_file_kind)(f - nn_file_formats);
    return NN_OK;
}
