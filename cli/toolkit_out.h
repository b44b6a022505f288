/* --targets and --json for nnterp lens and patchscope (cli/toolkit_out.c). */
#ifndef NN_CLI_TOOLKIT_OUT_H
#define NN_CLI_TOOLKIT_OUT_H

#include <cJSON.h>

#include "cli.h"
#include "toolkit.h"

/* --targets W[,W..]: each word's first tokens (of "word" and " word", nn_first_tokens), back to
 * back in flat; word i owns flat.ids[first[i] .. first[i + 1]). */
typedef struct cli_targets {
    int n;
    char **names;
    size_t *first; /* [n + 1] */
    nn_ids flat;
} cli_targets;

/* words NULL: no targets (t->n == 0). */
int cli_targets_parse(const char *words, nn_tokenizer *tok, cli_targets *t, nn_err *err);
void cli_targets_free(cli_targets *t);
/* out[i] = the sum over word i's ids of per_id (a probability per flat id), in double. */
void cli_targets_sum(const cli_targets *t, const float *per_id, float *out);
/* Word i's probability from next-token probabilities [V]: its ids' probabilities summed in
 * double, as the job's nn_op_target_sum. */
float cli_target_prob(const cli_targets *t, int i, const float *probs);
/* Appends a target of one token id named name (taken: freed with t, also on failure). */
int cli_targets_add_id(cli_targets *t, int32_t id, char *name, nn_err *err);

/* A float32 as a JSON number printed %.9g (it reads back to the same float); null if not finite. */
cJSON *cli_json_f32(float v);
cJSON *cli_json_f32s(const float *v, size_t n);
cJSON *cli_json_i32s(const int32_t *v, size_t n);
cJSON *cli_json_ints(const int *v, size_t n);
/* Each id's text as cli_token_text gives it (null without a tokenizer). */
cJSON *cli_json_tokens(const nn_tokenizer *tok, const int32_t *ids, size_t n);
/* Prints o on one line of stdout and deletes it. */
int cli_json_print(cJSON *o, nn_err *err);

#endif
