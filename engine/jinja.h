/* A Jinja2 interpreter for chat templates: renders what Hugging Face's apply_chat_template renders
 * (jinja2's ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols
 * extension, the {% generation %} tag, the globals raise_exception and strftime_now, and
 * transformers' tojson). What it does not implement is an error naming the template's line and
 * column, never a different string. Time and memory are bounded (nn_jinja_limits) so that a
 * hostile template fails cleanly.
 *
 * Files: jinja_lex.c (source to tokens, whitespace control), jinja_parse.c (tokens to a tree),
 * jinja_eval.c (statements and expressions), jinja_builtins.c (filters, tests, methods,
 * globals), jinja_value.c (values, str/repr, JSON in and out). */
#ifndef NN_JINJA_H
#define NN_JINJA_H

#include <time.h>

#include "nn_base.h"

typedef struct nn_jinja nn_jinja;           /* a compiled template */
typedef struct nn_jinja_vars nn_jinja_vars; /* the variables of one render */

typedef struct nn_jinja_limits {
    size_t max_output;  /* bytes of rendered text */
    size_t max_memory;  /* bytes of values made while rendering */
    uint64_t max_steps; /* statements and expressions evaluated */
    int max_depth;      /* nested macro calls and expression evaluation */
} nn_jinja_limits;

/* 32 MiB of output, 256 MiB of values, 50 million steps, depth 200. */
nn_jinja_limits nn_jinja_default_limits(void);

/* name (e.g. "chat_template.jinja") prefixes every error message. */
int nn_jinja_compile(const char *name, const char *src, size_t len, nn_jinja **out, nn_err *err);
void nn_jinja_free(nn_jinja *t);

int nn_jinja_vars_new(nn_jinja_vars **out, nn_err *err);
void nn_jinja_vars_free(nn_jinja_vars *v);
/* Sets name to a JSON value (ints stay ints: 1 and 1.0 print differently in Python). A later set
 * of the same name replaces the earlier one. */
int nn_jinja_vars_set_json(nn_jinja_vars *v, const char *name, const char *json, size_t len,
                           nn_err *err);
/* Sets every member of a JSON object as a variable. */
int nn_jinja_vars_set_json_members(nn_jinja_vars *v, const char *json, size_t len, nn_err *err);
/* s NULL sets None. */
int nn_jinja_vars_set_string(nn_jinja_vars *v, const char *name, const char *s, nn_err *err);
int nn_jinja_vars_set_bool(nn_jinja_vars *v, const char *name, bool b, nn_err *err);

/* transformers' preprocessing of the variable "messages" (engine/chat.c): with transformers5,
 * each message loses its None-valued keys and gets reasoning aliased ("thinking" and
 * "reasoning_content"); final_tag (may be NULL) is appended to the final message's content (or
 * its last text block), as transformers 5 marks the end it cuts at for continue_final_message. */
int nn_jinja_vars_prepare_chat(nn_jinja_vars *v, bool transformers5, const char *final_tag,
                               nn_err *err);

/* Renders into a new NUL-terminated string (*out, caller frees; *out_len its length). now is the
 * time strftime_now sees. limits NULL: the defaults. */
int nn_jinja_render(const nn_jinja *t, const nn_jinja_vars *vars, time_t now,
                    const nn_jinja_limits *limits, char **out, size_t *out_len, nn_err *err);

#endif
