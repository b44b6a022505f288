/* What the nnterp commands share: argument parsing, prompts as ids or text, and errors. */
#ifndef NN_CLI_H
#define NN_CLI_H

#include <stdio.h>

#include "model.h"
#include "tokenizer.h"

#define EXIT_USAGE 2
#define MAX_PROMPTS 256

typedef struct args {
    const char *model, *tokenizer, *save, *layers, *output;
    const char *plot;                /* --plot FILE.png|FILE.html (lens, patchscope) */
    const char *prompt[MAX_PROMPTS]; /* in the order given */
    bool prompt_is_text[MAX_PROMPTS];
    bool prompt_is_chat[MAX_PROMPTS]; /* --chat FILE.json: a conversation (cli/chat.c) */
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
    /* chat templates (cli/chat.c) */
    const char *chat_template, *messages, *now, *transformers;
    bool add_generation_prompt, continue_final_message;
    bool no_user_instr, no_system_prompt, no_complete_prompt; /* --target it-repeat */
    const char *compute;                                      /* --compute NAME (NULL: float32) */
    /* nnterp patch (cli/patch.c): --hook H[,H], --targets W[,W], --sweep, --json */
    const char *hook, *targets_words;
    bool sweep, json;
    const char *sae; /* nnterp sae --sae DIR (cli/sae.c); it reads --hook too */
    /* nnterp skip, attn-edit, object-lens (cli/intervene.c): --key K[,K], --scale F,
     * --head H[,H], --query Q[,Q], --num-patches N as given (parsed there), --renormalize */
    const char *key, *scale, *head, *query, *num_patches;
    bool renormalize;
} args;

/* One option of the command line: its long name (or its only name, as -n), a short alias or
 * NULL, the placeholder of its value (NULL: a switch) and a line of help. cli_options
 * (cli/options.c) holds every option of every command, once; a command says which of them it
 * takes by name (cli_command.options), and the parsers reject the others. */
typedef struct cli_option {
    const char *name, *alias, *value, *help;
} cli_option;
extern const cli_option cli_options[]; /* ends with a row whose name is NULL */

/* One command of `nnterp`: a row of cli_commands (cli/main.c), which main() dispatches on, which
 * nnterp --help lists, and which cli_parse_args (and the own parsers of run, plan and plot) check
 * every flag against. Adding a command is adding a row and its handler:
 * docs/adding-a-command.md. */
typedef struct cli_command {
    const char *name;                  /* argv[1]; a name with a space ("plot --feature") is a
                                          mode its command's handler dispatches to, not argv[1] */
    int (*run)(int argc, char **argv); /* argv[1] is the name; returns the exit code */
    const char *summary;               /* its line(s) under "commands:" in nnterp --help */
    const char *const *options;        /* long names of cli_options it takes, NULL-terminated;
                                          -h/--help is always taken */
} cli_command;
extern const cli_command cli_commands[]; /* ends with a row whose name is NULL */

/* The row of a command (or mode) by name; NULL when there is none. */
const cli_command *cli_command_find(const char *name);
/* The row of cli_options that FLAG names (its name or alias); NULL when none does. */
const cli_option *cli_option_find(const char *flag);
/* Whether command C takes option O. */
bool cli_command_takes(const cli_command *c, const cli_option *o);
/* Returns 0 when COMMAND takes FLAG (-h and --help: always; its row of cli_options in *opt when
 * opt is not NULL); else prints "nnterp COMMAND: unknown option FLAG (an option of ...) (see
 * nnterp COMMAND --help)" on stderr and returns EXIT_USAGE. */
int cli_check_option(const char *command, const char *flag, const cli_option **opt);
/* Prints USAGE, then "also accepted:" with each option COMMAND takes that USAGE does not
 * mention, from cli_options: --help lists every option a command takes. */
void cli_print_help(const char *command, const char *usage);
/* The "commands:" lines of nnterp --help: each row's name and summary. */
void cli_print_commands(FILE *out);
/* nnterp --list-commands, --list-options [CMD] (hidden, for tests/test_cli.sh): names one a line;
 * an option as "NAME ALIAS VALUE" with '-' for none. --list-options without CMD also checks the
 * tables: every name a command takes is a row of cli_options, no command names one twice, no two
 * rows share a name or alias. Returns the exit code (1 when a check fails). */
int cli_list(int argc, char **argv);

/* Prints "nnterp: <message>", the usage, and returns EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *fmt, const char *arg);
int cli_parse_number(const char *s, double lo, double hi, double *out);
/* Returns 0 to go on, -1 after printing --help, or an exit code. argv[1] names the command: a flag
 * its row of cli_commands does not take is a usage error. tokenize_mode takes a bare TEXT (or
 * -- TEXT) as a.positional and --ids as a switch. */
int cli_parse_args(int argc, char **argv, const char *usage, bool tokenize_mode, args *a);
/* "1,2,-1" into a new array of integers >= min. */
int cli_parse_int_list(const char *s, long min, int **out, int *n, nn_err *err);
/* "1 2 3" or "1,2,3" into a new array. */
int cli_parse_ids(const char *s, int32_t **out, int *n, nn_err *err);
/* Prints "nnterp: error: ..." and returns EXIT_FAILURE. */
int cli_fail(const nn_err *err);
/* nn_tokenizer_load_for_model with --tokenizer: *out stays NULL (no error) when none exists and
 * required is false; when it is required, the error says which flags to give instead. */
int cli_open_tokenizer(const args *a, const char *model_path, int vocab, bool required,
                       nn_tokenizer **out, nn_err *err);
/* Prompt i as token ids (a new array): text through the tokenizer, or --ids parsed. */
int cli_prompt_ids(const args *a, int i, nn_tokenizer *tok, int32_t **ids, int *n, nn_err *err);
bool cli_any_text(const args *a);
/* nn_model_load, then the precision of --compute. */
int cli_load_model(const args *a, nn_model **m, nn_err *err);
/* Text tokens: text through the tokenizer (special tokens per a->no_special) into a new array. */
int cli_text_ids(const args *a, nn_tokenizer *tok, const char *text, int32_t **ids, int *n,
                 nn_err *err);
/* A token's text as it reads inside running text, its leading space kept: decoded after a fixed
 * left context whose text is then removed. A new string; NULL without a tokenizer or when it
 * cannot decode the id. */
char *cli_token_text(const nn_tokenizer *tok, int32_t id);
/* A token as a person reads it: its decoded text, quoted, with whitespace made visible. */
void cli_print_token(FILE *out, const nn_tokenizer *tok, int32_t id, int width);

/* One heatmap of top-k results (cli/plot.c): row i, layer layers[i], is ids[i * stride + j] and
 * probs[i * stride + j] for ranks j < k. */
typedef struct cli_topk_panel {
    const char *title, *subtitle;
    int n_rows, k;
    const int *layers;
    const int32_t *ids;
    const float *probs;
    size_t stride;
} cli_topk_panel;
/* Draws the panels into PATH (.png or .html; io/plot.h), each token decoded with tok (its id
 * alone without one); says on stderr what it wrote, and when a character had no font. */
int cli_plot_topk(const char *path, const char *title, const nn_tokenizer *tok,
                  const cli_topk_panel *panels, int n_panels, nn_err *err);
/* A model path's name for titles: its last two parts ("stories260K/hf"), or org/name for a
 * Hugging Face cache snapshot (.../models--org--name/snapshots/HASH). */
const char *cli_model_name(const char *path, char *buf, size_t size);

/* cli/chat.c: a --chat FILE.json conversation rendered by MODEL's chat template (or
 * --chat-template) and tokenized without special tokens (the template writes them), as
 * transformers' apply_chat_template(tokenize=True) does. */
int cli_chat_ids(const args *a, nn_tokenizer *tok, const char *file, int32_t **ids, int *n,
                 nn_err *err);
/* nnterp's it_repeat_prompt for MODEL's template, per --no-user-instr, --no-system-prompt,
 * --no-complete-prompt: the text (new) and its ids. */
int cli_it_repeat_ids(const args *a, nn_tokenizer *tok, char **text, int32_t **ids, int *n,
                      nn_err *err);
int cmd_chat_template(int argc, char **argv);
int cmd_lens(int argc, char **argv);
int cmd_patchscope(int argc, char **argv);
int cmd_steer(int argc, char **argv);
int cmd_probs(int argc, char **argv);
int cmd_patch(int argc, char **argv); /* cli/patch.c */
int cmd_skip(int argc, char **argv);  /* cli/intervene.c */
int cmd_attn_edit(int argc, char **argv);
int cmd_object_lens(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_sae(int argc, char **argv); /* cli/sae.c */
/* nnterp plot of an activation_patch sweep (cli/plot_patch.c): whether the store holds one (op:
 * the group named by --op, NULL: the first swept group, its name into group), and its heatmaps
 * (prompts NULL: all). */
struct nn_h5file;
bool cli_plot_patch_group(struct nn_h5file *f, const char *op, char *group, size_t cap);
int cli_plot_patch(struct nn_h5file *f, const char *store, const char *group,
                   const nn_tokenizer *tok, const char *model, const int *prompts, int n_prompts,
                   const char *title, const char *output, nn_err *err);
/* nnterp plot STORE.h5 --feature F (cli/plot_feature.c). */
int cli_plot_feature(int argc, char **argv);

#endif
