/* A patchscope target written as nnterp's repeat_prompt(words=..., rel=..., sep=...,
 * placeholder=...): "target": {"repeat": {"words": [...], "rel": " ", "sep": "\n",
 * "placeholder": "?"}, "index": -1}. */
#ifndef NN_JOB_REPEAT_H
#define NN_JOB_REPEAT_H

#include "nn_json.h"

/* repeat: the object under "repeat" (every field optional: nnterp's defaults). *out receives the
 * rendered prompt (caller frees). path and where name the job file and operation in errors. */
int nn_job_parse_repeat(const cJSON *repeat, const char *path, const char *where, char **out,
                        nn_err *err);

#endif
