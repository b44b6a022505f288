/* nnterp chat-template, --chat FILE.json prompts, and the it-repeat patchscope target: a model's
 * chat template (engine/chat.h) from the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "cli.h"

static const char *usage_chat_template =
    "usage: nnterp chat-template -m MODEL --messages FILE.json [--add-generation-prompt]\n"
    "                            [--continue-final-message] [--chat-template FILE.jinja]\n"
    "                            [--now YYYY-MM-DD] [--transformers 4|5]\n"
    "Renders a conversation with MODEL's chat template exactly as transformers'\n"
    "apply_chat_template(tokenize=False) does, and prints it unchanged (no newline added).\n"
    "FILE.json: a list of {\"role\", \"content\"} messages, or {\"messages\": [...], \"tools\": "
    "[...],\n"
    "...} whose other keys are template variables (e.g. \"enable_thinking\": false). MODEL: a\n"
    "directory with chat_template.jinja, chat_template.json or tokenizer_config.json\n"
    "(\"chat_template\" and the special tokens). --chat-template replaces the model's template;\n"
    "--now fixes the date strftime_now sees (default: today). A template that raises exits 1\n"
    "with its message. --transformers 4 matches transformers 4.4x where it differs from 5 (the\n"
    "default): None-valued message keys and reasoning aliases, and where continue_final_message\n"
    "cuts (an empty final message keeps its end-of-turn in 4.4x).\n";

static int parse_now(const char *s, time_t *out, nn_err *err)
{
    return nn_chat_parse_date(s, out, err) ? nn_err_prefix(err, "--now") : NN_OK;
}

static int parse_transformers(const char *s, nn_chat_transformers *out, nn_err *err)
{
    if (!s || !strcmp(s, "5"))
        *out = NN_CHAT_TRANSFORMERS_5;
    else if (!strcmp(s, "4"))
        *out = NN_CHAT_TRANSFORMERS_4;
    else
        return nn_fail(err, "--transformers '%s': give 4 or 5", s);
    return NN_OK;
}

static int render(const args *a, const char *file, char **text, size_t *len, nn_err *err)
{
    nn_chat_template *t = NULL;
    nn_chat_options o = {.add_generation_prompt = a->add_generation_prompt,
                         .continue_final_message = a->continue_final_message};
    int rc = parse_now(a->now, &o.now, err);
    if (!rc)
        rc = parse_transformers(a->transformers, &o.transformers, err);
    if (!rc)
        rc = nn_chat_template_load(a->model, a->chat_template, &t, err);
    if (!rc)
        rc = nn_chat_render_file(t, file, &o, text, len, err);
    nn_chat_template_free(t);
    return rc;
}

static int encode_plain(nn_tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n,
                        nn_err *err)
{
    nn_ids v = {0};
    if (nn_tokenizer_encode(tok, text, len, false, &v, err)) {
        nn_ids_free(&v);
        return NN_ERR;
    }
    if (v.n == 0) {
        nn_ids_free(&v);
        return nn_fail(err, "the rendered conversation encodes to no tokens");
    }
    *ids = v.ids;
    *n = (int)v.n;
    return NN_OK;
}

int cli_chat_ids(const args *a, nn_tokenizer *tok, const char *file, int32_t **ids, int *n,
                 nn_err *err)
{
    char *text = NULL;
    size_t len;
    int rc = render(a, file, &text, &len, err);
    if (!rc)
        rc = encode_plain(tok, text, len, ids, n, err);
    nn_free(text);
    if (rc)
        nn_err_prefix(err, "--chat %s", file);
    return rc;
}

int cli_it_repeat_ids(const args *a, nn_tokenizer *tok, char **text, int32_t **ids, int *n,
                      nn_err *err)
{
    nn_chat_template *t = NULL;
    nn_it_repeat p = nn_it_repeat_default();
    p.add_user_instr = !a->no_user_instr;
    p.use_system_prompt = !a->no_system_prompt;
    p.complete_prompt = !a->no_complete_prompt;
    time_t now;
    nn_chat_transformers hf = NN_CHAT_TRANSFORMERS_5;
    size_t len;
    *text = NULL;
    int rc = parse_now(a->now, &now, err);
    if (!rc)
        rc = parse_transformers(a->transformers, &hf, err);
    if (!rc)
        rc = nn_chat_template_load(a->model, a->chat_template, &t, err);
    if (!rc)
        rc = nn_it_repeat_prompt(t, &p, now, hf, text, &len, err);
    if (!rc)
        rc = encode_plain(tok, *text, len, ids, n, err);
    nn_chat_template_free(t);
    if (rc) {
        nn_free(*text);
        *text = NULL;
        nn_err_prefix(err, "--target it-repeat");
    }
    return rc;
}

int cmd_chat_template(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_chat_template, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.messages)
        return cli_usage_error(usage_chat_template, "%s", "--messages FILE.json is required");
    nn_err err = {{0}};
    char *text = NULL;
    size_t len;
    if (render(&a, a.messages, &text, &len, &err))
        return cli_fail(&err);
    fwrite(text, 1, len, stdout);
    nn_free(text);
    return fflush(stdout) ? EXIT_FAILURE : 0;
}
