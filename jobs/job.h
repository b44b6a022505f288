/* The job file of `nnterp run` (docs/spec.md §5): parsed and validated whole before any work. Every
 * error names the field and the allowed values; unknown fields are errors (a typo must not silently
 * do nothing). */
#ifndef NN_JOB_H
#define NN_JOB_H

#include "gemm_bf16.h"
#include "hooks.h"
#include "nn_base.h"

/* An operation's class (jobs/op.h): its name, parse, run; one row each in nn_op_classes[]. */
typedef struct nn_op_class nn_op_class;

typedef enum { NN_POS_ALL, NN_POS_LAST, NN_POS_LIST } nn_positions_kind;

typedef enum { NN_TOO_LONG_ERROR, NN_TOO_LONG_TRUNCATE, NN_TOO_LONG_SKIP } nn_too_long;

typedef enum { NN_DTYPE_F32, NN_DTYPE_F16, NN_DTYPE_BF16 } nn_store_dtype;

typedef struct nn_positions {
    nn_positions_kind kind;
    int *list; /* NN_POS_LIST: indices, negative from the end */
    int n;
} nn_positions;

typedef struct nn_op {
    const nn_op_class *cls;
    char *group; /* the store group: the op name, "_2", "_3" for repeats */
    /* collect */
    nn_hook_point hooks[NN_HP_COUNT];
    int n_hooks;
    /* collect, logit_lens, patchscope_lens, steer */
    char *layers; /* layer spec text ("all", "0:12:2", ...) or a JSON list turned into "1,2" */
    nn_positions positions;
    int top_k;
    bool targets; /* logit_lens / patchscope_lens: also the dataset's target probabilities */
    bool inverse; /* logit_lens */
    /* patchscope_lens */
    char *target_prompt; /* NULL: nnterp's repeat_prompt() */
    int index;
    /* "target": {"it_repeat": {...}}: nnterp's it_repeat_prompt through the chat template */
    bool it_repeat, it_add_user_instr, it_use_system_prompt, it_complete_prompt;
    /* steer: a .npy vector, or the contrast of two prompt sets (mean layers_output of the first
     * minus that of the second, at each steered layer) */
    char *vector;
    char **contrast[2];
    int n_contrast[2];
    float factor;
    /* steer, generate */
    int generate;
    float temperature, top_p;
    uint64_t seed;
    /* sae */
    struct nn_sae_spec *sae;
    /* What a class's parse keeps beyond these common fields, freed by its free_spec. */
    void *spec;
} nn_op;

typedef struct nn_job {
    char *model, *tokenizer, *output;
    char *dataset_path, *dataset_format, *dataset_field, *targets_field;
    int max_tokens;        /* 0: the model's context */
    size_t max_line_bytes; /* longest dataset line; 0: the reader's default (16 MiB) */
    nn_too_long too_long;
    bool add_special_tokens;
    nn_store_dtype dtype;
    int batch_tokens;
    int shard_batches;
    int pipeline_stages;
    nn_compute compute; /* "compute": GEMM precision (default float32) */
    nn_op *ops;
    int n_ops;
    /* "chat": how conversations (dataset lines with "messages", the it_repeat target) are
     * rendered: MODEL's template unless template is given */
    char *chat_template, *chat_now;
    bool chat_add_generation_prompt, chat_continue_final_message;
    int chat_transformers; /* 4 or 5 (engine/chat.h) */
    char *canonical;       /* the job as normalized JSON, stored in and compared by --resume */
} nn_job;

int nn_job_parse(const char *json_text, const char *path, nn_job *out, nn_err *err);
int nn_job_load(const char *path, nn_job *out, nn_err *err);
void nn_job_free(nn_job *job);
/* Sets the compute precision (the CLI's --compute over the job's field) and with it the job's
 * identity: canonical then carries "compute" unless it is float32, so --resume refuses a store
 * computed in another precision. */
int nn_job_set_compute(nn_job *job, nn_compute compute, nn_err *err);

/* The op's name as the job file spells it ("collect", ...). */
const char *nn_op_name(const nn_op *op);
/* Resolves a prompt position (negative from the end) for a prompt of n tokens; -1 outside. */
int nn_positions_resolve(const nn_positions *p, int j, int n);
/* Rows an op writes for a prompt of n tokens under these positions. */
int nn_positions_rows(const nn_positions *p, int n);

#endif
