/* The files nnterp writes, defined once: each format's name and version, the datasets every
 * store shares and the root attributes (docs/jobs.md "The store", docs/trace-format.md). Writers
 * (coord/run.c, cli/main.c's trace, cli/toolkit.c's lens -o and patchscope -o, cli/patch.c's -o,
 * jobs/trace.c) and
 * the reader (cli/plot.c) take the names from here; tests/test_store_format.c checks that the
 * docs name every one. An operation's own datasets are named by its class (jobs/op.h: the group
 * is the op's name, its datasets are declared by its `declare`).
 *
 * A reader accepts a file whose format_version is at most the one it knows; a change that an
 * older reader would misread bumps the version. */
#ifndef NN_STORE_H
#define NN_STORE_H

#include "nn_base.h"

typedef enum {
    NN_FILE_STORE,      /* nnterp run: the dataset store */
    NN_FILE_TRACE,      /* nnterp trace -o */
    NN_FILE_LENS,       /* nnterp lens -o */
    NN_FILE_PATCH,      /* nnterp patch -o */
    NN_FILE_PATCHSCOPE, /* nnterp patchscope -o */
    NN_FILE_COUNT
} nn_file_kind;

typedef struct nn_file_format {
    const char *name; /* the root attribute `format` */
    long version;     /* the root attribute `format_version` */
    const char *what; /* for messages: which command writes it */
} nn_file_format;

extern const nn_file_format nn_file_formats[NN_FILE_COUNT];

/* Root attributes. */
#define NN_ATTR_FORMAT "format"
#define NN_ATTR_FORMAT_VERSION "format_version"
#define NN_ATTR_NNTERP_VERSION "nnterp_version"
#define NN_ATTR_MODEL "model"
#define NN_ATTR_MODEL_CONFIG "model_config"
#define NN_ATTR_MODEL_SNAPSHOT "model_snapshot"
#define NN_ATTR_COMPUTE "compute"
#define NN_ATTR_COMPUTE_KERNEL "compute_kernel"
#define NN_ATTR_PROMPT "prompt" /* lens and patch files: the prompt as given */
#define NN_ATTR_JOB "job"
#define NN_ATTR_IDENTITY "identity"
#define NN_ATTR_WEIGHTS "weights"
#define NN_ATTR_TARGET_NAMES "target_names"
#define NN_ATTR_SHARDS "shards"
#define NN_ATTR_STATUS "status"
#define NN_ATTR_WORLD_SIZE "world_size"
#define NN_ATTR_DATA_PARALLEL "data_parallel"
#define NN_ATTR_PIPELINE_STAGES "pipeline_stages"
#define NN_ATTR_LAYER_SPLIT "layer_split"

/* Datasets every store (and, for the tokens, every trace, lens and patch file) has. */
#define NN_DS_TOKEN_IDS "/tokens/ids"
#define NN_DS_TOKEN_PROMPT "/tokens/prompt"
#define NN_DS_TOKEN_POSITION "/tokens/position"
#define NN_DS_PROMPT_TOKEN_OFFSETS "/prompts/token_offsets"
#define NN_DS_PROMPT_TEXT "/prompts/text"
#define NN_DS_PROMPT_TEXT_OFFSETS "/prompts/text_offsets"
#define NN_DS_PROMPT_SOURCE_LINE "/prompts/source_line"
#define NN_DS_TARGET_TOKEN_IDS "/targets/token_ids"
#define NN_DS_TARGET_TOKEN_OFFSETS "/targets/token_offsets"
#define NN_DS_SHARD_DONE "/progress/shard_done"
#define NN_DS_SHARD_PROMPTS "/progress/shard_prompts"
/* nnterp lens -o */
#define NN_DS_LENS_TOP_IDS "/lens/top_ids"
#define NN_DS_LENS_TOP_PROBS "/lens/top_probs"
#define NN_DS_LENS_LAYERS "/lens/layers"
#define NN_DS_LENS_POSITIONS "/lens/positions"
#define NN_DS_LENS_TARGET_PROBS "/lens/target_probs"
/* nnterp patchscope -o */
#define NN_DS_PATCHSCOPE_TOP_IDS "/patchscope/top_ids"
#define NN_DS_PATCHSCOPE_TOP_PROBS "/patchscope/top_probs"
#define NN_DS_PATCHSCOPE_LAYERS "/patchscope/layers"
#define NN_DS_PATCHSCOPE_TARGET_IDS "/patchscope/target_ids"
#define NN_DS_PATCHSCOPE_TARGET_PROBS "/patchscope/target_probs"
#define NN_DS_PATCHSCOPE_TOKENS "/patchscope/tokens"

/* Every name above, for the test that the docs name them all. */
extern const char *const nn_store_names[];

/* The format a file's `format` attribute names; NULL when none. */
const nn_file_format *nn_file_format_find(const char *name);

/* Checks a file's format and format_version (version < 0: the attribute is absent, as in lens
 * files before version 1, read as version 1) against the kinds the reader takes (a bit mask of
 * 1 << nn_file_kind). Fails naming the file, the format found and what the reader wanted, or a
 * version newer than this nnterp reads. The kind found in *kind. */
int nn_file_format_check(const char *file, const char *format, long version, unsigned accepted,
                         nn_file_kind *kind, nn_err *err);

#endif
