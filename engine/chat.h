/* Chat templates: a model's Jinja2 chat template (engine/jinja.h) loaded as transformers finds it,
 * and a conversation rendered as tokenizer.apply_chat_template(..., tokenize=False) renders it,
 * add_generation_prompt and continue_final_message included. Also nnterp's it_repeat_prompt
 * conversation. */
#ifndef NN_CHAT_H
#define NN_CHAT_H

#include <time.h>

#include "nn_base.h"
#include "tokenizer.h"

typedef struct nn_chat_template nn_chat_template;

/* model_path: a directory holding chat_template.jinja, chat_template.json or a
 * tokenizer_config.json with "chat_template" (a string, or a list of {name, template}: "default",
 * or "tool_use" when tools are given); its special tokens (bos_token, ...) come from
 * tokenizer_config.json, then special_tokens_map.json. template_file (may be NULL) replaces the
 * model's template; model_path may then be anything (a checkpoint file, or NULL). No template
 * found is an error that says where it looked and to give --chat-template FILE. */
int nn_chat_template_load(const char *model_path, const char *template_file, nn_chat_template **out,
                          nn_err *err);
/* A template from its text; special_json: a JSON object of the variables the tokenizer adds
 * ({"bos_token": "<s>", "unk_token": null, ...}), NULL for none. */
int nn_chat_template_from_source(const char *name, const char *src, const char *special_json,
                                 nn_chat_template **out, nn_err *err);
void nn_chat_template_free(nn_chat_template *t);
/* Where the template came from (a file name, for messages). */
const char *nn_chat_template_origin(const nn_chat_template *t);

/* Which transformers to match where its versions differ. 5 (the default, transformers >= 5):
 * message keys whose value is None are dropped, reasoning_content/thinking/reasoning are aliased
 * into "thinking" and "reasoning_content", an empty conversation is an error, and
 * continue_final_message marks the final content with a tag and cuts there. 4 (transformers
 * 4.4x): messages as given, and continue_final_message cuts after the last occurrence of the
 * final content (an empty final content then keeps the whole rendering). */
typedef enum { NN_CHAT_TRANSFORMERS_5 = 0, NN_CHAT_TRANSFORMERS_4 = 4 } nn_chat_transformers;

typedef struct nn_chat_options {
    bool add_generation_prompt, continue_final_message;
    time_t now; /* what strftime_now sees */
    nn_chat_transformers transformers;
} nn_chat_options;

/* conversation: JSON text, a list of messages or an object {"messages": [...], "tools": [...],
 * other keys = template variables}. *out: a new string (caller frees), *out_len its length. */
int nn_chat_render(const nn_chat_template *t, const char *conversation, size_t len,
                   const nn_chat_options *opt, char **out, size_t *out_len, nn_err *err);
/* Reads the conversation from a JSON file, then nn_chat_render. */
int nn_chat_render_file(const nn_chat_template *t, const char *path, const nn_chat_options *opt,
                        char **out, size_t *out_len, nn_err *err);

/* Renders the conversation and tokenizes it without adding special tokens (the template wrote
 * them), as apply_chat_template(tokenize=True) does. *text (may be NULL): the rendering (new). */
int nn_chat_encode(const nn_chat_template *t, nn_tokenizer *tok, const char *conversation,
                   size_t len, const nn_chat_options *opt, nn_ids *ids, char **text, nn_err *err);
/* "YYYY-MM-DD" as local midnight, the time strftime_now sees; NULL: now. */
int nn_chat_parse_date(const char *s, time_t *out, nn_err *err);

/* nnterp's it_repeat_prompt (nnterp.interventions): the conversation, as JSON text (a new string),
 * for words (NULL: "king", "1135", "hello"), rel " ", sep "\n", placeholder "?". */
typedef struct nn_it_repeat {
    const char *const *words;
    int n_words;
    const char *rel, *sep, *placeholder;
    bool complete_prompt, add_user_instr, use_system_prompt;
} nn_it_repeat;

nn_it_repeat nn_it_repeat_default(void);
int nn_it_repeat_conversation(const nn_it_repeat *p, char **json, nn_err *err);
/* The rendered prompt: the conversation through the template with continue_final_message. */
int nn_it_repeat_prompt(const nn_chat_template *t, const nn_it_repeat *p, time_t now,
                        nn_chat_transformers transformers, char **out, size_t *out_len,
                        nn_err *err);

#endif
