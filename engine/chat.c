/* Chat templates: loading as transformers does, rendering as apply_chat_template does, and
 * nnterp's it_repeat_prompt. */
#include "chat.h"

#include <stdio.h>
#include <string.h>

#include "jinja.h"
#include "nn_json.h"

#define MAX_CONFIG_BYTES ((size_t)64 << 20)
#define MAX_TEMPLATE_BYTES ((size_t)4 << 20)

static const char *const special_names[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                            "pad_token", "cls_token", "mask_token"};
#define N_SPECIAL (sizeof special_names / sizeof *special_names)

struct nn_chat_template {
    nn_jinja *main, *tool_use; /* tool_use: the named "tool_use" template, NULL when none */
    char *main_src, *tool_src;
    cJSON *special; /* {"bos_token": "<s>", ..., "additional_special_tokens": [...]} */
    char *special_json;
    char *origin;
};

const char *nn_chat_template_origin(const nn_chat_template *t)
{
    return t->origin;
}

void nn_chat_template_free(nn_chat_template *t)
{
    if (!t)
        return;
    nn_jinja_free(t->main);
    nn_jinja_free(t->tool_use);
    nn_free(t->main_src);
    nn_free(t->tool_src);
    cJSON_Delete(t->special);
    nn_free(t->special_json);
    nn_free(t->origin);
    nn_free(t);
}

/* A special token as tokenizer_config.json writes it: a string or {"content": ...}. */
static const char *token_text(const cJSON *v)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = nn_json_get(v, "content");
        if (cJSON_IsString(c))
            return c->valuestring;
    }
    return NULL;
}

static int read_special(nn_chat_template *t, const cJSON *cfg, nn_err *err)
{
    for (size_t i = 0; i < N_SPECIAL; i++) {
        const char *s = token_text(nn_json_get(cfg, special_names[i]));
        if (s && !nn_json_get(t->special, special_names[i]) &&
            !cJSON_AddStringToObject(t->special, special_names[i], s))
            return nn_fail(err, "out of memory reading the special tokens");
    }
    /* transformers 5 also passes a model's other named special tokens (Gemma 3's boi_token,
     * eoi_token, image_token): every string "<name>_token" of the config */
    const cJSON *it0;
    cJSON_ArrayForEach (it0, cfg) {
        size_t kl = it0->string ? strlen(it0->string) : 0;
        const char *s = token_text(it0);
        if (s && kl > 6 && !strcmp(it0->string + kl - 6, "_token") &&
            !nn_json_get(t->special, it0->string) &&
            !cJSON_AddStringToObject(t->special, it0->string, s))
            return nn_fail(err, "out of memory reading the special tokens");
    }
    const cJSON *add = nn_json_get(cfg, "additional_special_tokens");
    if (cJSON_IsArray(add) && !nn_json_get(t->special, "additional_special_tokens")) {
        cJSON *list = cJSON_AddArrayToObject(t->special, "additional_special_tokens");
        const cJSON *it;
        if (!list)
            return nn_fail(err, "out of memory reading the special tokens");
        cJSON_ArrayForEach (it, add) {
            const char *s = token_text(it);
            if (s)
                cJSON_AddItemToArray(list, cJSON_CreateString(s));
        }
    }
    return NN_OK;
}

static int set_source(nn_chat_template *t, bool tool, const char *src, nn_err *err)
{
    char **dst = tool ? &t->tool_src : &t->main_src;
    nn_free(*dst);
    return (*dst = nn_strdup(src, err)) ? NN_OK : NN_ERR;
}

/* "chat_template" of a JSON config: a string or a list of {name, template}. */
static int read_template_field(nn_chat_template *t, const cJSON *v, const char *file, nn_err *err)
{
    if (cJSON_IsString(v))
        return set_source(t, false, v->valuestring, err);
    if (!cJSON_IsArray(v))
        return nn_fail(err,
                       "%s: field 'chat_template' must be a string or a list of "
                       "{\"name\", \"template\"}",
                       file);
    const cJSON *it;
    bool found_default = false;
    cJSON_ArrayForEach (it, v) {
        const cJSON *name = nn_json_get(it, "name"), *tmpl = nn_json_get(it, "template");
        if (!cJSON_IsString(name) || !cJSON_IsString(tmpl))
            return nn_fail(err,
                           "%s: each entry of 'chat_template' needs string fields 'name' "
                           "and 'template'",
                           file);
        if (!strcmp(name->valuestring, "default")) {
            if (set_source(t, false, tmpl->valuestring, err))
                return NN_ERR;
            found_default = true;
        } else if (!strcmp(name->valuestring, "tool_use") &&
                   set_source(t, true, tmpl->valuestring, err)) {
            return NN_ERR;
        }
    }
    if (!found_default && !t->tool_src)
        return nn_fail(err,
                       "%s: 'chat_template' lists named templates but none is called "
                       "'default' (transformers refuses this too)",
                       file);
    return NN_OK;
}

static int read_file_text(const char *path, char **out, nn_err *err)
{
    size_t n;
    if (nn_file_read(path, MAX_TEMPLATE_BYTES, out, &n, err))
        return NN_ERR;
    if (strlen(*out) != n) {
        nn_free(*out);
        *out = NULL;
        return nn_fail(err, "%s: the template holds a NUL byte", path);
    }
    return NN_OK;
}

int nn_chat_template_from_source(const char *name, const char *src, const char *special_json,
                                 nn_chat_template **out, nn_err *err)
{
    *out = NULL;
    nn_chat_template *t = nn_calloc(1, sizeof *t, err);
    if (!t)
        return NN_ERR;
    if (!(t->origin = nn_strdup(name, err)) || !(t->main_src = nn_strdup(src, err)) ||
        !(t->special_json = nn_strdup(special_json ? special_json : "{}", err)) ||
        nn_jinja_compile(name, src, strlen(src), &t->main, err)) {
        nn_chat_template_free(t);
        return NN_ERR;
    }
    *out = t;
    return NN_OK;
}

int nn_chat_template_load(const char *model_path, const char *template_file, nn_chat_template **out,
                          nn_err *err)
{
    *out = NULL;
    nn_chat_template *t = nn_calloc(1, sizeof *t, err);
    if (!t)
        return NN_ERR;
    if (!(t->special = cJSON_CreateObject())) {
        nn_free(t);
        return nn_fail(err, "out of memory");
    }
    char *cfg_path = NULL, *p = NULL;
    cJSON *cfg = NULL;
    bool dir = model_path && nn_path_is_dir(model_path);
    int rc = NN_ERR;
    if (dir) {
        static const char *const token_files[] = {"tokenizer_config.json",
                                                  "special_tokens_map.json"};
        for (int f = 0; f < 2; f++) {
            if (!(cfg_path = nn_path_join(model_path, token_files[f], err)))
                goto done;
            if (nn_path_is_file(cfg_path)) {
                if (!(cfg = nn_json_parse_file(cfg_path, MAX_CONFIG_BYTES, err)) ||
                    read_special(t, cfg, err))
                    goto done;
                const cJSON *ct = f == 0 ? nn_json_get(cfg, "chat_template") : NULL;
                if (ct && !cJSON_IsNull(ct) && !template_file) {
                    if (read_template_field(t, ct, cfg_path, err))
                        goto done;
                    nn_free(t->origin);
                    if (!(t->origin = nn_strdup(cfg_path, err)))
                        goto done;
                }
                cJSON_Delete(cfg);
                cfg = NULL;
            }
            nn_free(cfg_path);
            cfg_path = NULL;
        }
    }
    if (template_file) {
        char *src;
        if (read_file_text(template_file, &src, err))
            goto done;
        t->main_src = src;
        if (!(t->origin = nn_strdup(template_file, err)))
            goto done;
    } else if (dir) {
        /* transformers: chat_template.jinja beside the tokenizer wins over the config's field;
         * chat_template.json (the processor's file) is read when neither has one */
        if (!(p = nn_path_join(model_path, "chat_template.jinja", err)))
            goto done;
        if (nn_path_is_file(p)) {
            char *src;
            if (read_file_text(p, &src, err))
                goto done;
            nn_free(t->main_src);
            nn_free(t->tool_src);
            t->tool_src = NULL;
            t->main_src = src;
            nn_free(t->origin);
            t->origin = p;
            p = NULL;
        } else if (!t->main_src && !t->tool_src) {
            nn_free(p);
            if (!(p = nn_path_join(model_path, "chat_template.json", err)))
                goto done;
            if (nn_path_is_file(p)) {
                if (!(cfg = nn_json_parse_file(p, MAX_CONFIG_BYTES, err)))
                    goto done;
                const cJSON *ct = nn_json_get(cfg, "chat_template");
                if (!ct) {
                    nn_fail(err, "%s: no field 'chat_template'", p);
                    goto done;
                }
                if (read_template_field(t, ct, p, err))
                    goto done;
                t->origin = p;
                p = NULL;
            }
        }
    }
    if (!t->main_src && !t->tool_src) {
        nn_fail(err,
                "%s has no chat template (looked for chat_template.jinja, chat_template.json and "
                "the field 'chat_template' of tokenizer_config.json): give one with "
                "--chat-template FILE.jinja",
                model_path ? model_path : "the model");
        goto done;
    }
    char *sj = cJSON_PrintUnformatted(t->special);
    if (!sj) {
        nn_fail(err, "out of memory");
        goto done;
    }
    t->special_json = nn_strdup(sj, err);
    cJSON_free(sj);
    if (!t->special_json)
        goto done;
    if (t->main_src && nn_jinja_compile(t->origin, t->main_src, strlen(t->main_src), &t->main, err))
        goto done;
    if (t->tool_src &&
        nn_jinja_compile(t->origin, t->tool_src, strlen(t->tool_src), &t->tool_use, err))
        goto done;
    rc = NN_OK;
done:
    cJSON_Delete(cfg);
    nn_free(cfg_path);
    nn_free(p);
    if (rc)
        nn_chat_template_free(t);
    else
        *out = t;
    return rc;
}

/* Python's str.strip/lstrip on whitespace (ASCII and the Unicode spaces). */
static int space_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f))
        return 1;
    if (n >= 2 && c == 0xc2 && ((unsigned char)s[1] == 0x85 || (unsigned char)s[1] == 0xa0))
        return 2;
    if (n >= 3) {
        unsigned char c1 = (unsigned char)s[1], c2 = (unsigned char)s[2];
        if ((c == 0xe1 && c1 == 0x9a && c2 == 0x80) ||
            (c == 0xe2 && c1 == 0x80 && (c2 <= 0x8a || c2 == 0xa8 || c2 == 0xa9 || c2 == 0xaf)) ||
            (c == 0xe2 && c1 == 0x81 && c2 == 0x9f) || (c == 0xe3 && c1 == 0x80 && c2 == 0x80))
            return 3;
    }
    return 0;
}

static void strip_span(const char *s, size_t n, size_t *start, size_t *end)
{
    size_t a = 0, b = n;
    int w;
    while (a < n && (w = space_len(s + a, n - a)) > 0)
        a += (size_t)w;
    while (b > a) {
        size_t k = b - 1;
        while (k > a && ((unsigned char)s[k] & 0xc0) == 0x80)
            k--;
        if (space_len(s + k, b - k) != (int)(b - k))
            break;
        b = k;
    }
    *start = a;
    *end = b;
}

/* transformers (4.4x) continue_final_message: cut the rendering right after the last
 * occurrence of the final message's content. */
static int cut_after_final(char *text, size_t *len, const char *content, nn_err *err)
{
    size_t n = strlen(content), a, b;
    strip_span(content, n, &a, &b);
    const char *stripped = content + a;
    size_t slen = b - a, lstrip_len = n - a;
    const char *found = NULL;
    for (size_t i = 0; i + slen <= *len; i++)
        if (!memcmp(text + i, stripped, slen))
            found = text + i;
    if (!found)
        return nn_fail(err, "continue_final_message is set but the final message does not "
                            "appear in the chat after applying the chat template (the template "
                            "changes it)");
    size_t loc = (size_t)(found - text), cut;
    /* Python compares text[loc:loc + len(content.lstrip())] with the whole content: equal only
     * when the content has no leading whitespace */
    if (a == 0 && loc + lstrip_len <= *len && !memcmp(text + loc, content, n))
        cut = loc + lstrip_len;
    else
        cut = loc + slen;
    *len = cut;
    text[cut] = 0;
    return NN_OK;
}

#define CONTINUE_TAG "CONTINUE_FINAL_MESSAGE_TAG "

/* transformers 5 continue_final_message: cut at the last tag; when the template trimmed the
 * tag's trailing space (the content had trailing whitespace it strips), cut there and rstrip. */
static int cut_at_tag(char *text, size_t *len, const char *content, nn_err *err)
{
    size_t n = strlen(content), a, b;
    strip_span(content, n, &a, &b);
    const size_t tn = sizeof CONTINUE_TAG - 2; /* without the space */
    bool has_content = false;
    const char *tag = NULL;
    for (size_t i = 0; i + (b - a) <= *len && !has_content; i++)
        has_content = !memcmp(text + i, content + a, b - a);
    for (size_t i = 0; i + tn <= *len; i++)
        if (!memcmp(text + i, CONTINUE_TAG, tn))
            tag = text + i;
    if (!has_content || !tag)
        return nn_fail(err, "continue_final_message is set but the final message does not "
                            "appear in the chat after applying the chat template (the template "
                            "changes it)");
    size_t loc = (size_t)(tag - text), cut = loc;
    if (!(loc + tn + 1 <= *len && text[loc + tn] == ' ')) {
        size_t s0, s1;
        strip_span(text, loc, &s0, &s1);
        cut = s0 == s1 ? 0 : s1; /* Python's rstrip of text[:loc] */
    }
    *len = cut;
    text[cut] = 0;
    return NN_OK;
}

int nn_chat_render(const nn_chat_template *t, const char *conversation, size_t len,
                   const nn_chat_options *opt, char **out, size_t *out_len, nn_err *err)
{
    *out = NULL;
    if (opt->continue_final_message && opt->add_generation_prompt)
        return nn_fail(err, "continue_final_message and add_generation_prompt are not "
                            "compatible: use continue_final_message to continue the final "
                            "message, add_generation_prompt to start a new assistant message");
    size_t at = 0;
    cJSON *conv = nn_json_parse(conversation, len, &at);
    if (!conv)
        return nn_fail(err, "conversation: bad JSON at byte %zu", at);
    const cJSON *messages = cJSON_IsArray(conv) ? conv : nn_json_get(conv, "messages");
    const cJSON *tools = cJSON_IsObject(conv) ? nn_json_get(conv, "tools") : NULL;
    nn_jinja_vars *vars = NULL;
    char *text = NULL;
    int rc = NN_ERR;
    if (!cJSON_IsArray(messages)) {
        nn_fail(err, "conversation: expected a list of messages or an object with a list "
                     "'messages'");
        goto done;
    }
    const cJSON *m;
    cJSON_ArrayForEach (m, messages) {
        if (!cJSON_IsObject(m)) {
            nn_fail(err, "conversation: each message must be an object {\"role\", \"content\"}");
            goto done;
        }
    }
    if (cJSON_IsObject(conv)) {
        static const char *const reserved[] = {"add_generation_prompt", "continue_final_message"};
        for (int i = 0; i < 2; i++)
            if (nn_json_get(conv, reserved[i])) {
                nn_fail(err,
                        "conversation: '%s' is a flag of the render (give "
                        "--%s), not a template variable",
                        reserved[i], i ? "continue-final-message" : "add-generation-prompt");
                goto done;
            }
    }
    bool hf5 = opt->transformers != NN_CHAT_TRANSFORMERS_4;
    if (hf5 && cJSON_GetArraySize(messages) == 0) {
        nn_fail(err, "cannot apply a chat template to an empty conversation: give at least one "
                     "message");
        goto done;
    }
    const char *final_content = NULL;
    if (opt->continue_final_message) {
        int n = cJSON_GetArraySize(messages);
        if (n == 0) {
            nn_fail(err, "continue_final_message is set but the conversation is empty");
            goto done;
        }
        const cJSON *c = nn_json_get(cJSON_GetArrayItem(messages, n - 1), "content");
        if (cJSON_IsArray(c)) {
            const cJSON *blk, *last_text = NULL;
            cJSON_ArrayForEach (blk, c) {
                const cJSON *tx = nn_json_get(blk, "text");
                if (cJSON_IsString(tx))
                    last_text = tx;
            }
            c = last_text;
        }
        if (!cJSON_IsString(c)) {
            nn_fail(err, "continue_final_message is set but the final message has no text "
                         "content to continue");
            goto done;
        }
        final_content = c->valuestring;
    }
    const nn_jinja *tmpl = tools && !cJSON_IsNull(tools) && t->tool_use ? t->tool_use : t->main;
    if (!tmpl) {
        nn_fail(err, "%s: the named templates hold 'tool_use' only, and no tools were given",
                t->origin);
        goto done;
    }
    if (nn_jinja_vars_new(&vars, err))
        goto done;
    if (nn_jinja_vars_set_json_members(vars, t->special_json, strlen(t->special_json), err))
        goto done;
    if (nn_jinja_vars_set_string(vars, "tools", NULL, err) ||
        nn_jinja_vars_set_string(vars, "documents", NULL, err) ||
        nn_jinja_vars_set_bool(vars, "add_generation_prompt", opt->add_generation_prompt, err))
        goto done;
    if (cJSON_IsArray(conv) ? nn_jinja_vars_set_json(vars, "messages", conversation, len, err)
                            : nn_jinja_vars_set_json_members(vars, conversation, len, err))
        goto done;
    if (hf5 && final_content && !strstr(tmpl == t->main ? t->main_src : t->tool_src, "content")) {
        nn_fail(err, "continue_final_message is set to \"content\" but this is not an accepted "
                     "field in the chat_template");
        goto done;
    }
    if (nn_jinja_vars_prepare_chat(vars, hf5, hf5 && final_content ? CONTINUE_TAG : NULL, err))
        goto done;
    size_t n;
    if (nn_jinja_render(tmpl, vars, opt->now, NULL, &text, &n, err))
        goto done;
    if (final_content && (hf5 ? cut_at_tag(text, &n, final_content, err)
                              : cut_after_final(text, &n, final_content, err)))
        goto done;
    *out = text;
    text = NULL;
    if (out_len)
        *out_len = n;
    rc = NN_OK;
done:
    nn_free(text);
    nn_jinja_vars_free(vars);
    cJSON_Delete(conv);
    return rc;
}

int nn_chat_render_file(const nn_chat_template *t, const char *path, const nn_chat_options *opt,
                        char **out, size_t *out_len, nn_err *err)
{
    char *text;
    size_t n;
    if (nn_file_read(path, MAX_CONFIG_BYTES, &text, &n, err))
        return NN_ERR;
    int rc = nn_chat_render(t, text, n, opt, out, out_len, err);
    nn_free(text);
    if (rc)
        nn_err_prefix(err, "%s", path);
    return rc;
}

int nn_chat_encode(const nn_chat_template *t, nn_tokenizer *tok, const char *conversation,
                   size_t len, const nn_chat_options *opt, nn_ids *ids, char **text, nn_err *err)
{
    char *out;
    size_t n;
    if (text)
        *text = NULL;
    if (nn_chat_render(t, conversation, len, opt, &out, &n, err))
        return NN_ERR;
    int rc = nn_tokenizer_encode(tok, out, n, false, ids, err);
    if (!rc && ids->n == 0)
        rc = nn_fail(err, "the rendered conversation encodes to no tokens");
    if (rc)
        nn_ids_free(ids);
    if (rc || !text)
        nn_free(out);
    else
        *text = out;
    return rc;
}

int nn_chat_parse_date(const char *s, time_t *out, nn_err *err)
{
    if (!s) {
        *out = time(NULL);
        return NN_OK;
    }
    int y, m, d;
    char extra;
    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || m < 1 || m > 12 || d < 1 || d > 31 ||
        y < 1900)
        return nn_fail(err, "date '%s': expected YYYY-MM-DD", s);
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_isdst = -1};
    *out = mktime(&tm);
    if (tm.tm_mday != d)
        return nn_fail(err, "date '%s': no such date", s);
    return NN_OK;
}

/* ---- it_repeat_prompt ---- */

static const char *const default_words[] = {"king", "1135", "hello"};

nn_it_repeat nn_it_repeat_default(void)
{
    return (nn_it_repeat){.words = default_words,
                          .n_words = 3,
                          .rel = " ",
                          .sep = "\n",
                          .placeholder = "?",
                          .complete_prompt = true,
                          .add_user_instr = true,
                          .use_system_prompt = true};
}

static int add_message(cJSON *chat, const char *role, const char *content)
{
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "role", role) ||
        !cJSON_AddStringToObject(m, "content", content)) {
        cJSON_Delete(m);
        return NN_ERR;
    }
    cJSON_AddItemToArray(chat, m);
    return NN_OK;
}

/* sep.join(w + rel + w for w in words) + sep + placeholder */
static char *repeat_text(const nn_it_repeat *p, nn_err *err)
{
    const char *const *words = p->words ? p->words : default_words;
    int n = p->words ? p->n_words : 3;
    size_t len = strlen(p->sep) + strlen(p->placeholder) + 1;
    for (int i = 0; i < n; i++)
        len += 2 * strlen(words[i]) + strlen(p->rel) + strlen(p->sep);
    char *s = nn_malloc(len, err);
    if (!s)
        return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(s, p->sep);
        strcat(s, words[i]);
        strcat(s, p->rel);
        strcat(s, words[i]);
    }
    strcat(s, p->sep);
    strcat(s, p->placeholder);
    return s;
}

int nn_it_repeat_conversation(const nn_it_repeat *p, char **json, nn_err *err)
{
    *json = NULL;
    char *prompt = repeat_text(p, err), *guess = NULL;
    if (!prompt)
        return NN_ERR;
    cJSON *chat = cJSON_CreateArray();
    int rc = chat ? NN_OK : NN_ERR;
    const char *answer = p->complete_prompt ? prompt : "";
    if (!rc && p->add_user_instr) {
        if (p->use_system_prompt)
            rc = add_message(chat, "system", "You are a helpful assistant.");
        rc = rc ? rc
                : add_message(chat, "user",
                              "I will provide you with a series of sentences. Your task is to "
                              "guess the next word in the sentence. You must answer with the "
                              "next word only.");
        rc = rc ? rc : add_message(chat, "assistant", "Ok.");
        rc = rc ? rc : add_message(chat, "user", prompt);
        rc = rc ? rc : add_message(chat, "assistant", answer);
    } else if (!rc) {
        if (p->use_system_prompt) {
            rc = add_message(chat, "system",
                             "The user will provide you with a sentence. Your task is to guess "
                             "the next word in the sentence. You must answer with the next word "
                             "only.");
            rc = rc ? rc : add_message(chat, "user", prompt);
        } else {
            static const char lead[] = "Guess the next word in the following sentence (answer "
                                       "only the next word): ";
            guess = nn_malloc(sizeof lead + strlen(prompt), err);
            if (!guess)
                rc = NN_ERR;
            else {
                strcpy(guess, lead);
                strcat(guess, prompt);
                rc = add_message(chat, "user", guess);
            }
        }
        rc = rc ? rc : add_message(chat, "assistant", answer);
    }
    char *txt = rc ? NULL : cJSON_PrintUnformatted(chat);
    cJSON_Delete(chat);
    nn_free(prompt);
    nn_free(guess);
    if (!txt)
        return nn_fail(err, "out of memory building the it_repeat_prompt conversation");
    *json = nn_strdup(txt, err);
    cJSON_free(txt);
    return *json ? NN_OK : NN_ERR;
}

int nn_it_repeat_prompt(const nn_chat_template *t, const nn_it_repeat *p, time_t now,
                        nn_chat_transformers transformers, char **out, size_t *out_len, nn_err *err)
{
    char *conv;
    if (nn_it_repeat_conversation(p, &conv, err))
        return NN_ERR;
    nn_chat_options o = {.continue_final_message = true, .now = now, .transformers = transformers};
    int rc = nn_chat_render(t, conv, strlen(conv), &o, out, out_len, err);
    nn_free(conv);
    return rc;
}
