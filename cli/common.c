#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "model.h"
#include <math.h>

int cli_usage_error(const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "nnterp: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage);
    return EXIT_USAGE;
}

int cli_parse_number(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < lo || v > hi)
        return NN_ERR;
    *out = v;
    return NN_OK;
}

/* Returns 0, or an exit code. */
int cli_parse_args(int argc, char **argv, const char *usage, bool tokenize_mode, args *a)
{
    memset(a, 0, sizeof *a);
    a->n_new = 32;
    a->top_k = 10;
    a->index = -1;
    a->top_p = 1.0f;
    a->seed = 42;
    const char *command = argc > 1 ? argv[1] : "";
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            a->help = true;
            continue;
        }
        /* a flag the command's row of cli_commands does not name is an error, not ignored */
        bool positional = tokenize_mode && (!strcmp(k, "--") || k[0] != '-');
        if (!positional && cli_check_option(command, k, NULL))
            return EXIT_USAGE;
        if (!strcmp(k, "--print-ids")) {
            a->print_ids = true;
            continue;
        }
        if (!strcmp(k, "--no-eos")) {
            a->no_eos = true;
            continue;
        }
        if (!strcmp(k, "--no-special")) {
            a->no_special = true;
            continue;
        }
        if (!strcmp(k, "--add-generation-prompt") || !strcmp(k, "--continue-final-message") ||
            !strcmp(k, "--no-user-instr") || !strcmp(k, "--no-system-prompt") ||
            !strcmp(k, "--no-complete-prompt")) {
            bool *flag = k[2] == 'a'   ? &a->add_generation_prompt
                         : k[2] == 'c' ? &a->continue_final_message
                         : k[5] == 'u' ? &a->no_user_instr
                         : k[5] == 's' ? &a->no_system_prompt
                                       : &a->no_complete_prompt;
            *flag = true;
            continue;
        }
        if (!strcmp(k, "--sweep") || !strcmp(k, "--json")) { /* nnterp patch */
            *(k[2] == 's' ? &a->sweep : &a->json) = true;
            continue;
        }
        if (!strcmp(k, "--renormalize")) { /* nnterp attn-edit */
            a->renormalize = true;
            continue;
        }
        if (!strcmp(k, "--inverse")) {
            a->inverse = true;
            continue;
        }
        if (tokenize_mode && !strcmp(k, "--ids")) {
            a->ids_only = true;
            continue;
        }
        if (tokenize_mode && (!strcmp(k, "--") || k[0] != '-')) {
            if (!strcmp(k, "--"))
                k = v;
            if (!k)
                return cli_usage_error(usage, "%s", "TEXT is missing after --");
            if (a->positional)
                return cli_usage_error(usage, "unexpected argument '%s' (quote TEXT)", k);
            a->positional = k;
            if (k == v)
                i++;
            continue;
        }
        if (!v)
            return cli_usage_error(usage, "option '%s' needs a value", k);
        i++;
        if (!strcmp(k, "-m") || !strcmp(k, "--model"))
            a->model = v;
        else if (!strcmp(k, "--tokenizer"))
            a->tokenizer = v;
        else if (!strcmp(k, "--source")) {
            if (a->source)
                return cli_usage_error(usage, "%s", "give --source once (one source prompt)");
            a->source = v;
        } else if (!strcmp(k, "--target"))
            a->target = v;
        else if (!strcmp(k, "--vector"))
            a->vector = v;
        else if (!strcmp(k, "-f") || !strcmp(k, "--file"))
            a->file = v;
        else if (!strcmp(k, "--positions"))
            a->positions = v;
        else if (!strcmp(k, "--contrast")) {
            if (i + 1 >= argc)
                return cli_usage_error(usage, "%s", "--contrast takes two texts: TEXT_A TEXT_B");
            a->contrast_a = v;
            a->contrast_b = argv[++i];
        } else if (!strcmp(k, "-k") || !strcmp(k, "--top-k")) {
            if (cli_parse_number(v, 1, 1e6, &x) || x != (int)x)
                return cli_usage_error(usage, "-k takes a positive integer, not '%s'", v);
            a->top_k = (int)x;
        } else if (!strcmp(k, "--index")) {
            if (cli_parse_number(v, -1e9, 1e9, &x) || x != (int)x)
                return cli_usage_error(usage, "--index takes an integer position, not '%s'", v);
            a->index = (int)x;
            a->index_given = true;
        } else if (!strcmp(k, "--generate")) {
            if (cli_parse_number(v, 0, 1e6, &x) || x != (int)x)
                return cli_usage_error(usage, "--generate takes a token count, not '%s'", v);
            a->generate = (int)x;
        } else if (!strcmp(k, "--factor")) {
            if (cli_parse_number(v, -INFINITY, INFINITY, &x))
                return cli_usage_error(usage, "--factor takes a number, not '%s'", v);
            if (!(fabs(x) <= 1e9))
                return cli_usage_error(usage, "--factor %s is out of range (|F| <= 1e9)", v);
            a->factor = (float)x;
            a->factor_given = true;
        } else if (!strcmp(k, "--ids") || !strcmp(k, "-p") || !strcmp(k, "--prompt")) {
            if (a->n_prompts == MAX_PROMPTS)
                return cli_usage_error(usage, "at most 256 prompts (%s)", k);
            a->prompt_is_text[a->n_prompts] = strcmp(k, "--ids") != 0;
            a->prompt[a->n_prompts++] = v;
        } else if (!strcmp(k, "--chat")) {
            if (a->n_prompts == MAX_PROMPTS)
                return cli_usage_error(usage, "at most 256 prompts (%s)", k);
            a->prompt_is_text[a->n_prompts] = true;
            a->prompt_is_chat[a->n_prompts] = true;
            a->prompt[a->n_prompts++] = v;
        } else if (!strcmp(k, "--chat-template"))
            a->chat_template = v;
        else if (!strcmp(k, "--messages"))
            a->messages = v;
        else if (!strcmp(k, "--now"))
            a->now = v;
        else if (!strcmp(k, "--transformers"))
            a->transformers = v;
        else if (!strcmp(k, "--compute")) {
            nn_compute c;
            nn_err e;
            if (nn_compute_parse(v, "--compute", &c, &e))
                return cli_usage_error(usage,
                                       "--compute is float32, bfloat16 or bfloat16x3, not '%s'", v);
            a->compute = v;
        } else if (!strcmp(k, "--hook")) /* nnterp patch */
            a->hook = v;
        else if (!strcmp(k, "--key") || !strcmp(k, "--scale") || !strcmp(k, "--head") ||
                 !strcmp(k, "--query") || !strcmp(k, "--num-patches")) /* cli/intervene.c */
            *(k[2] == 'k'   ? &a->key
              : k[2] == 's' ? &a->scale
              : k[2] == 'h' ? &a->head
              : k[2] == 'q' ? &a->query
                            : &a->num_patches) = v;
        else if (!strcmp(k, "--targets"))
            a->targets_words = v;
        else if (!strcmp(k, "--sae")) /* nnterp sae */
            a->sae = v;
        else if (!strcmp(k, "--save"))
            a->save = v;
        else if (!strcmp(k, "--layers"))
            a->layers = v;
        else if (!strcmp(k, "-o") || !strcmp(k, "--output"))
            a->output = v;
        else if (!strcmp(k, "--plot"))
            a->plot = v;
        else if (!strcmp(k, "-n")) {
            if (cli_parse_number(v, 0, 1e9, &x) || x != (int)x)
                return cli_usage_error(usage, "-n takes a non-negative integer, not '%s'", v);
            a->n_new = (int)x;
        } else if (!strcmp(k, "--temperature")) {
            if (cli_parse_number(v, 0, 1e6, &x))
                return cli_usage_error(usage, "--temperature takes a number >= 0, not '%s'", v);
            a->temperature = (float)x;
        } else if (!strcmp(k, "--top-p")) {
            if (cli_parse_number(v, 0, 1, &x) || x == 0)
                return cli_usage_error(usage, "--top-p takes a number in (0, 1], not '%s'", v);
            a->top_p = (float)x;
        } else if (!strcmp(k, "--seed")) {
            if (cli_parse_number(v, 0, 1.8e19, &x))
                return cli_usage_error(usage, "--seed takes a non-negative integer, not '%s'", v);
            a->seed = (unsigned long long)x;
        } else /* in the command's row, not parsed here: the row names another parser's option */
            return cli_usage_error(usage, "option '%s' is not parsed by cli_parse_args", k);
    }
    if (a->help) {
        cli_print_help(command, usage);
        return -1;
    }
    if (!a->model)
        return cli_usage_error(usage, "%s", "-m MODEL is required");
    return 0;
}

/* "1 2 3" or "1,2,3" into a new array. */
int cli_parse_ids(const char *s, int32_t **out, int *n, nn_err *err)
{
    size_t cap = strlen(s) / 2 + 1;
    int32_t *ids = nn_malloc(cap * sizeof *ids, err);
    if (!ids)
        return NN_ERR;
    int count = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n') ||
            v < 0 || v > INT32_MAX) {
            nn_free(ids);
            return nn_fail(err, "--ids '%s': '%.*s' is not a token id", s, (int)strcspn(p, " ,"),
                           p);
        }
        ids[count++] = (int32_t)v;
        p = end;
    }
    if (count == 0) {
        nn_free(ids);
        return nn_fail(err, "--ids '%s': no token ids", s);
    }
    *out = ids;
    *n = count;
    return NN_OK;
}

int cli_fail(const nn_err *err)
{
    fprintf(stderr, "nnterp: error: %s\n", err->msg);
    return EXIT_FAILURE;
}

/* The tokenizer for MODEL: --tokenizer, tokenizer.json in a checkpoint directory, or for a
 * llama2.c .bin, tokenizer.bin or tok<vocab>.bin beside it. *out stays NULL (no error) when none
 * exists and required is false. */
int cli_open_tokenizer(const args *a, const char *model_path, int vocab, bool required,
                       nn_tokenizer **out, nn_err *err)
{
    int rc = nn_tokenizer_load_for_model(model_path, a->tokenizer, vocab, false, out, err);
    if (rc != NN_OK || *out || !required)
        return rc;
    if (nn_path_is_dir(model_path))
        return nn_fail(err, "%s: no tokenizer.json (give --tokenizer FILE, or the prompt as --ids)",
                       model_path);
    return nn_fail(err,
                   "%s: no tokenizer.bin or tok%d.bin beside this llama2.c checkpoint (give "
                   "--tokenizer FILE, or the prompt as --ids)",
                   model_path, vocab);
}

/* Prompt i as token ids (a new array): text through the tokenizer, or --ids parsed. */
int cli_prompt_ids(const args *a, int i, nn_tokenizer *tok, int32_t **ids, int *n, nn_err *err)
{
    if (!a->prompt_is_text[i])
        return cli_parse_ids(a->prompt[i], ids, n, err);
    if (a->prompt_is_chat[i])
        return cli_chat_ids(a, tok, a->prompt[i], ids, n, err);
    nn_ids v = {0};
    if (nn_tokenizer_encode(tok, a->prompt[i], strlen(a->prompt[i]), !a->no_special, &v, err)) {
        nn_ids_free(&v);
        return nn_err_prefix(err, "-p '%.40s'", a->prompt[i]);
    }
    if (v.n == 0) {
        nn_ids_free(&v);
        return nn_fail(err, "-p '%s': the text encodes to no tokens", a->prompt[i]);
    }
    *ids = v.ids;
    *n = (int)v.n;
    return NN_OK;
}

bool cli_any_text(const args *a)
{
    for (int i = 0; i < a->n_prompts; i++)
        if (a->prompt_is_text[i])
            return true;
    return false;
}

int cli_text_ids(const args *a, nn_tokenizer *tok, const char *text, int32_t **ids, int *n,
                 nn_err *err)
{
    nn_ids v = {0};
    if (nn_tokenizer_encode(tok, text, strlen(text), !a->no_special, &v, err)) {
        nn_ids_free(&v);
        return nn_err_prefix(err, "'%.40s'", text);
    }
    if (v.n == 0) {
        nn_ids_free(&v);
        return nn_fail(err, "'%s': the text encodes to no tokens", text);
    }
    *ids = v.ids;
    *n = (int)v.n;
    return NN_OK;
}

char *cli_token_text(const nn_tokenizer *tok, int32_t id)
{
    if (!tok)
        return NULL;
    char *text = NULL, *context = NULL;
    nn_err err;
    /* Decoded after a fixed left context and with the context's text removed, so a token's
     * leading space survives decoders that strip the first one (SentencePiece's Strip). */
    nn_ids ctx = {0};
    int32_t pair[2] = {-1, id};
    if (nn_tokenizer_encode((nn_tokenizer *)tok, "a", 1, false, &ctx, &err) == NN_OK && ctx.n > 0)
        pair[0] = ctx.ids[0];
    nn_ids_free(&ctx);
    bool ok = pair[0] >= 0 && nn_tokenizer_decode(tok, pair, 2, false, &text, &err) == NN_OK &&
              nn_tokenizer_decode(tok, pair, 1, false, &context, &err) == NN_OK &&
              strncmp(text, context, strlen(context)) == 0;
    if (ok)
        memmove(text, text + strlen(context), strlen(text) - strlen(context) + 1);
    else {
        nn_free(text);
        text = NULL;
        if (nn_tokenizer_decode(tok, &id, 1, false, &text, &err) != NN_OK)
            text = NULL;
    }
    nn_free(context);
    return text;
}

void cli_print_token(FILE *out, const nn_tokenizer *tok, int32_t id, int width)
{
    char buf[256];
    size_t n = 0;
    char *text = cli_token_text(tok, id);
    if (text) {
        buf[n++] = '\'';
        for (const char *p = text; *p && n < sizeof buf - 8; p++) {
            if (*p == '\n')
                n += (size_t)snprintf(buf + n, sizeof buf - n, "\\n");
            else if (*p == '\t')
                n += (size_t)snprintf(buf + n, sizeof buf - n, "\\t");
            else if ((unsigned char)*p < 0x20)
                n += (size_t)snprintf(buf + n, sizeof buf - n, "\\x%02x", (unsigned char)*p);
            else
                buf[n++] = *p;
        }
        buf[n++] = '\'';
        buf[n] = '\0';
        nn_free(text);
    } else {
        snprintf(buf, sizeof buf, "#%d", id);
    }
    /* pad by characters, not bytes, so columns line up with multi-byte text */
    int chars = 0;
    for (const char *p = buf; *p; p++)
        chars += ((unsigned char)*p & 0xC0) != 0x80;
    fprintf(out, "%s%*s", buf, width > chars ? width - chars : 0, "");
}

int cli_parse_int_list(const char *s, long min, int **out, int *n, nn_err *err)
{
    size_t cap = strlen(s) / 2 + 1;
    int *v = nn_malloc(cap * sizeof *v, err);
    if (!v)
        return NN_ERR;
    int count = 0;
    for (const char *p = s; *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || x < min || x > 1000000000L) {
            nn_free(v);
            return nn_fail(err, "'%s' is not a comma-separated list of integers%s", s,
                           min >= 0 ? " from 0" : "");
        }
        v[count++] = (int)x;
        p = *end ? end + 1 : end;
    }
    if (!count) {
        nn_free(v);
        return nn_fail(err, "'%s': no integers", s);
    }
    *out = v;
    *n = count;
    return NN_OK;
}

int cli_load_model(const args *a, nn_model **m, nn_err *err)
{
    nn_compute c = NN_COMPUTE_F32;
    if (nn_model_load(a->model, m, err) ||
        (a->compute && nn_compute_parse(a->compute, "--compute", &c, err)) ||
        nn_model_set_compute(*m, c, err))
        return NN_ERR;
    return NN_OK;
}
