/* What the nnterp commands share: argument parsing, prompts as ids or text, and errors. */
#ifndef NN_CLI_H
#define NN_CLI_H

#include <stdio.h>

#include "tokenizer.h"

#define EXIT_USAGE 2
#define MAX_PROMPTS 256

typedef struct args {
    const char *model, *tokenizer, *save, *layers, *output;
    const char *prompt[MAX_PROMPTS]; /* in the order given */
    bool prompt_is_text[MAX_PROMPTS];
    int n_prompts;
    const char *positional; /* tokenize's TEXT */
    int n_new;
    float temperature, top_p;
    unsigned long long seed;
    bool print_ids, ids_only, no_eos, no_special, help;
    /* toolkit commands */
    int top_k, index, generate;
    bool index_given, inverse;
    const char *source, *target, *vector, *contrast_a, *contrast_b, *file, *positions;
    float factor;
    bool factor_given;
} args;

/* Prints "nnterp: <message>", the usage, and returns EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *fmt, const char *arg);
int cli_parse_number(const char *s, double lo, double hi, double *out);
/* Returns 0 to go on, -1 after printing --help, or an exit code. tokenize_mode takes a bare TEXT
 * (or -- TEXT) as a.positional and --ids as a flag. */
int cli_parse_args(int argc, char **argv, const char *usage, bool tokenize_mode, args *a);
/* "1 2 3" or "1,2,3" into a new array. */
int cli_parse_ids(const char *s, int32_t **out, int *n, nn_err *err);
/* Prints "nnterp: error: ..." and returns EXIT_FAILURE. */
int cli_fail(const nn_err *err);
/* The tokenizer for MODEL: --tokenizer, tokenizer.json in a checkpoint directory, or for a
 * llama2.c .bin, tokenizer.bin or tok<vocab>.bin beside it. *out stays NULL (no error) when none
 * exists and required is false. */
int cli_open_tokenizer(const args *a, const char *model_path, int vocab, bool required,
                       nn_tokenizer **out, nn_err *err);
/* Prompt i as token ids (a new array): text through the tokenizer, or --ids parsed. */
int cli_prompt_ids(const args *a, int i, nn_tokenizer *tok, int32_t **ids, int *n, nn_err *err);
bool cli_any_text(const args *a);
/* Text tokens: text through the tokenizer (special tokens per a->no_special) into a new array. */
int cli_text_ids(const args *a, nn_tokenizer *tok, const char *text, int32_t **ids, int *n,
                 nn_err *err);
/* A token as a person reads it: its decoded text, quoted, with whitespace made visible. */
void cli_print_token(FILE *out, const nn_tokenizer *tok, int32_t id, int width);

int cmd_lens(int argc, char **argv);
int cmd_patchscope(int argc, char **argv);
int cmd_steer(int argc, char **argv);
int cmd_probs(int argc, char **argv);

#endif
