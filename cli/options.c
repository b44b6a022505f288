/* The options of the command line as one table (cli_options), and what checks a command's flags
 * against its row of cli_commands (cli/main.c): a flag a command does not take is a usage error,
 * not silently ignored, and --help lists every option a command takes. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Every option of every command, once. A command takes the ones its row of cli_commands names; a
 * new option is a row here, its parsing (in cli_parse_args for the commands that use it, else in
 * the command's own parser) and its name in the rows of the commands that take it
 * (docs/adding-a-command.md). The help is the option's meaning across commands; a command's
 * usage text says more. */
const cli_option cli_options[] = {
    {"--model", "-m", "MODEL", "a checkpoint directory, a Hugging Face id or a llama2.c .bin"},
    {"--tokenizer", NULL, "FILE", "the tokenizer (default: the model's own, or beside the .bin)"},
    {"--compute", NULL, "C", "float32 (default), bfloat16 or bfloat16x3 matrix products"},
    {"--prompt", "-p", "TEXT", "a prompt as text (plot: the prompts to draw, by index)"},
    {"--ids", NULL, "IDS",
     "a prompt as token ids, space- or comma-separated (tokenize: print ids)"},
    {"--chat", NULL, "FILE.json", "a prompt as a conversation through the model's chat template"},
    {"--no-special", NULL, NULL, "text prompts without the special tokens the tokenizer adds"},
    {"--chat-template", NULL, "FILE.jinja", "this chat template instead of the model's"},
    {"--now", NULL, "YYYY-MM-DD", "the date the chat template's strftime_now sees"},
    {"--transformers", NULL, "4|5", "render chat templates as transformers 4.4x or 5 does"},
    {"--add-generation-prompt", NULL, NULL, "end a conversation with the assistant's turn"},
    {"--continue-final-message", NULL, NULL, "leave the final message open to continue it"},
    {"--messages", NULL, "FILE.json", "the conversation to render"},
    {"--no-user-instr", NULL, NULL, "--target it-repeat without the user's instruction"},
    {"--no-system-prompt", NULL, NULL, "--target it-repeat without the system prompt"},
    {"--no-complete-prompt", NULL, NULL, "--target it-repeat without the completed prompt"},
    {"-n", NULL, "N", "tokens to generate"},
    {"--temperature", NULL, "T", "sampling temperature (0: greedy)"},
    {"--top-p", NULL, "P", "nucleus sampling mass (1: off)"},
    {"--seed", NULL, "S", "sampling seed (default 42)"},
    {"--print-ids", NULL, NULL, "print the generated ids after the text"},
    {"--no-eos", NULL, NULL, "do not stop at the end-of-sequence token"},
    {"--save", NULL, "HOOKS", "comma-separated hook points to store"},
    {"--layers", NULL, "SPEC", "layers: all, 5, 0,3,7, -1, 0:12:2"},
    {"--output", "-o", "FILE", "the output file"},
    {"--top-k", "-k", "K", "how many top entries (tokens, ranks or features)"},
    {"--positions", NULL, "P,..", "prompt positions (negative counts from the end)"},
    {"--inverse", NULL, NULL, "the inverse logit lens"},
    {"--plot", NULL, "FILE", "draw the results: .png or .html"},
    {"--source", NULL, "TEXT", "the source prompt (patchscope, patch)"},
    {"--target", NULL, "TEXT", "the target prompt (patchscope: or it-repeat)"},
    {"--index", NULL, "I", "the target position to patch"},
    {"--generate", NULL, "N", "tokens to generate after patching"},
    {"--vector", NULL, "FILE.npy", "the steering vector"},
    {"--contrast", NULL, "A B", "steer by mean(A) - mean(B) (two texts)"},
    {"--factor", NULL, "F", "the steering factor"},
    {"--file", "-f", "FILE", "the prompts file (JSONL)"},
    {"--hook", NULL, "NAME", "hook points (patch: H[,H..]; sae: the one it reads instead)"},
    {"--targets", NULL, "W,..", "the words whose probabilities are reported"},
    {"--sweep", NULL, NULL, "each (hook, layer, position) patched alone"},
    {"--json", NULL, NULL, "one JSON object on stdout instead of the table"},
    /* nnterp skip, attn-edit, object-lens (cli/intervene.c parses the values) */
    {"--key", NULL, "K,..", "attn-edit: the key positions whose probabilities are scaled"},
    {"--scale", NULL, "F", "attn-edit: the factor (>= 0; 0 zeroes them)"},
    {"--head", NULL, "H,..|all", "attn-edit: the heads (default all)"},
    {"--query", NULL, "Q,..|all", "attn-edit: the query positions (default -1, the last)"},
    {"--renormalize", NULL, NULL, "attn-edit: rescale the other keys so each row sums to 1"},
    {"--num-patches", NULL, "N", "object-lens: layers patched from each start layer (default 5)"},
    {"--sae", NULL, "DIR", "the sparse autoencoder (plot --feature: its index I in the store)"},
    /* nnterp run (cli/main.c parses these) */
    {"--resume", NULL, NULL, "continue an interrupted OUT.h5.partial"},
    {"--stages", NULL, "P", "pipeline stages"},
    {"--dry-run", NULL, NULL, "check and print the plan; write nothing"},
    {"--progress", NULL, NULL, "the self-overwriting progress line even off a terminal"},
    {"--progress-every", NULL, "S", "seconds between plain progress lines"},
    {"--quiet", NULL, NULL, "no progress lines"},
    /* nnterp plan (cli/plan.c) */
    {"--ranks", NULL, "N", "ranks of the job"},
    {"--threads", NULL, "K", "BLAS threads per rank"},
    {"--cores", NULL, "C", "cores the ranks run on"},
    {"--batch-tokens", NULL, "B", "the job's batch_tokens"},
    {"--prompt-tokens", NULL, "T", "a typical prompt's tokens"},
    {"--tokens", NULL, "TOTAL", "the job's tokens, for its duration"},
    {"--logits", NULL, "ROWS", "rows that need the logits: none, last, all"},
    {"--lens", NULL, "ROWS", "rows of the logit lens: none, last, all"},
    {"--shard-batches", NULL, "S", "the job's shard_batches"},
    {"--measure-layers", NULL, "M", "layers to load and time"},
    /* nnterp plot (cli/plot.c, cli/plot_feature.c) */
    {"--op", NULL, "OP", "the store's operation group to draw"},
    {"--title", NULL, "TEXT", "the picture's title"},
    {"--feature", NULL, "F", "draw SAE feature F's page (nnterp plot --feature --help)"},
    {"--context", NULL, "N", "tokens each side of a top activating context"},
    {NULL, NULL, NULL, NULL},
};

const cli_option *cli_option_find(const char *flag)
{
    for (const cli_option *o = cli_options; o->name; o++)
        if (!strcmp(flag, o->name) || (o->alias && !strcmp(flag, o->alias)))
            return o;
    return NULL;
}

const cli_command *cli_command_find(const char *name)
{
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(name, c->name))
            return c;
    return NULL;
}

bool cli_command_takes(const cli_command *c, const cli_option *o)
{
    for (const char *const *n = c->options; n && *n; n++)
        if (!strcmp(*n, o->name))
            return true;
    return false;
}

static bool is_help(const char *flag)
{
    return !strcmp(flag, "-h") || !strcmp(flag, "--help");
}

/* For a mode ("plot --feature"), whether its command ("plot") takes O too: then naming the
 * command says it. */
static bool base_takes(const cli_command *mode, const cli_option *o)
{
    const char *space = strchr(mode->name, ' ');
    char base[64];
    if (!space || (size_t)(space - mode->name) >= sizeof base)
        return false;
    memcpy(base, mode->name, (size_t)(space - mode->name));
    base[space - mode->name] = '\0';
    const cli_command *c = cli_command_find(base);
    return c && cli_command_takes(c, o);
}

int cli_check_option(const char *command, const char *flag, const cli_option **opt)
{
    const cli_command *c = cli_command_find(command);
    const cli_option *o = cli_option_find(flag);
    if (opt)
        *opt = o;
    if (is_help(flag) || (c && o && cli_command_takes(c, o)))
        return 0;
    if (!c) { /* a handler whose command has no row: a programming error, said as one */
        fprintf(stderr, "nnterp %s: no row in cli_commands (cli/main.c) names its options\n",
                command);
        return EXIT_USAGE;
    }
    bool dash = flag[0] == '-';
    fprintf(stderr, "nnterp %s: %s %s%s%s", command,
            dash ? "unknown option" : "unexpected argument", dash ? "" : "'", flag,
            dash ? "" : "'");
    /* A flag of other commands: say which, since it is most likely a command mixed up. */
    int n = 0;
    for (const cli_command *other = cli_commands; o && other->name; other++)
        if (other != c && cli_command_takes(other, o) && !base_takes(other, o))
            fprintf(stderr, "%s%s", n++ ? ", " : " (an option of ", other->name);
    fprintf(stderr, "%s (see nnterp %s --help)\n", n ? ")" : "", command);
    return EXIT_USAGE;
}

/* Whether WORD stands in TEXT as a word of its own (not -n inside --no-special, say). */
static bool mentions(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word)) {
        char before = p == text ? ' ' : p[-1], after = p[n];
        bool word_before = isalnum((unsigned char)before) || before == '-' || before == '_';
        bool word_after = isalnum((unsigned char)after) || after == '-' || after == '_';
        if (!word_before && !word_after)
            return true;
    }
    return false;
}

void cli_print_help(const char *command, const char *usage)
{
    printf("%s", usage);
    const cli_command *c = cli_command_find(command);
    int n = 0;
    for (const char *const *name = c ? c->options : NULL; name && *name; name++) {
        const cli_option *o = cli_option_find(*name);
        if (!o || mentions(usage, o->name) || (o->alias && mentions(usage, o->alias)))
            continue;
        char flag[64];
        snprintf(flag, sizeof flag, "%s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "",
                 o->name, o->value ? " " : "", o->value ? o->value : "");
        printf("%s  %-30s %s\n", n++ ? "" : "also accepted:\n", flag, o->help);
    }
}

void cli_print_commands(FILE *out)
{
    for (const cli_command *c = cli_commands; c->name; c++) {
        int name_len = (int)strcspn(c->name, " "); /* a mode is shown under its command's name */
        fprintf(out, "  %-10.*s ", name_len, c->name);
        for (const char *line = c->summary; *line;) {
            int len = (int)strcspn(line, "\n");
            fprintf(out, "%s%.*s\n", line == c->summary ? "" : "             ", len, line);
            line += len + (line[len] == '\n');
        }
    }
}

static void print_option(const cli_option *o)
{
    printf("%s %s %s\n", o->name, o->alias ? o->alias : "-", o->value ? o->value : "-");
}

static bool same_flag(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* The checks of one command's row; 0 or 1. */
static int check_command(const cli_command *c)
{
    int rc = 0;
    for (const char *const *name = c->options; name && *name; name++) {
        const cli_option *o = cli_option_find(*name);
        if (!o || strcmp(o->name, *name)) { /* a typo in a row would reject the option */
            fprintf(stderr, "nnterp: command '%s' takes '%s', which is no name in cli_options\n",
                    c->name, *name);
            rc = 1;
        }
        for (const char *const *prev = c->options; prev != name; prev++)
            if (!strcmp(*prev, *name)) {
                fprintf(stderr, "nnterp: command '%s' names '%s' twice\n", c->name, *name);
                rc = 1;
            }
    }
    return rc;
}

int cli_list(int argc, char **argv)
{
    if (!strcmp(argv[1], "--list-commands")) {
        for (const cli_command *c = cli_commands; c->name; c++)
            printf("%s\n", c->name);
        return 0;
    }
    int rc = 0;
    if (argc < 3) {
        for (const cli_option *o = cli_options; o->name; o++) {
            print_option(o);
            for (const cli_option *p = cli_options; p != o; p++)
                if (same_flag(p->name, o->name) || same_flag(p->name, o->alias) ||
                    same_flag(p->alias, o->name) || same_flag(p->alias, o->alias)) {
                    fprintf(stderr, "nnterp: options '%s' and '%s' share a name\n", p->name,
                            o->name);
                    rc = 1;
                }
        }
        for (const cli_command *c = cli_commands; c->name; c++)
            rc |= check_command(c);
        return rc;
    }
    const cli_command *c = cli_command_find(argv[2]);
    if (!c) {
        fprintf(stderr, "nnterp: --list-options: no command '%s'\n", argv[2]);
        return EXIT_USAGE;
    }
    rc = check_command(c);
    for (const char *const *name = c->options; name && *name; name++) {
        const cli_option *o = cli_option_find(*name);
        if (o && !strcmp(o->name, *name))
            print_option(o);
    }
    return rc;
}
