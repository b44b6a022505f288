/* Chat templates against the strings Hugging Face renders: every case of every .jsonl given
 * (default: every .jsonl of ../shared/chat) byte for byte, `expected_error` cases as errors holding
 * the message, and `expected_ids` through the matching tokenizer of ../shared/tokenizers/modern.
 *
 *   test_chat [FILE.jsonl ...]     line 1 of each: {"type": "template", "template",
 *                                  "special_tokens"}; then {"type": "case", ...} lines */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "nn_json.h"
#include "nn_test.h"
#include "tokenizer.h"

static time_t pinned_now(void)
{
    struct tm tm = {.tm_year = 2024 - 1900, .tm_mon = 6, .tm_mday = 26, .tm_isdst = -1};
    return mktime(&tm); /* strftime_now reads local time, as Python's datetime.now() */
}

/* The tokenizer directory for a case's ids_tokenizer: its own, or one with the same vocabulary. */
static nn_tokenizer *ids_tokenizer(const char *shared, const char *name)
{
    static const char *const same[][2] = {{"llama3_2", "llama3_1"}, {"qwen2_5", "qwen3"}};
    const char *dir = name;
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (!strcmp(name, same[i][0]))
            dir = same[i][1];
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizers/modern/%s", shared, dir);
    nn_tokenizer *t = NULL;
    nn_err err;
    if (nn_path_is_dir(path) && nn_tokenizer_load(path, &t, &err))
        fprintf(stderr, "note: %s: %s\n", path, err.msg);
    return t;
}

static int cases, passed_ids, skipped_ids;
static int force_mode = -1; /* --transformers 4|5: render every file that way */

/* The raw text of the top-level member key of the JSON object line (numbers exactly as written:
 * 1.0 stays 1.0, which a cJSON round trip would print as 1). */
static bool raw_member(const char *line, const char *key, const char **v, size_t *n)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    int depth = 0;
    bool in_str = false;
    for (const char *p = line; *p; p++) {
        if (in_str) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                in_str = false;
            continue;
        }
        if (depth == 1 && *p == '"' && !strncmp(p, pat, strlen(pat))) {
            const char *s = p + strlen(pat);
            while (*s == ' ')
                s++;
            const char *e = s;
            int d = 0;
            bool str = false;
            for (; *e; e++) {
                if (str) {
                    if (*e == '\\')
                        e++;
                    else if (*e == '"')
                        str = false;
                    continue;
                }
                if (*e == '"')
                    str = true;
                else if (*e == '{' || *e == '[')
                    d++;
                else if (*e == '}' || *e == ']') {
                    if (d == 0)
                        break;
                    d--;
                } else if (*e == ',' && d == 0)
                    break;
            }
            *v = s;
            *n = (size_t)(e - s);
            return true;
        }
        if (*p == '"')
            in_str = true;
        else if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']')
            depth--;
    }
    return false;
}

/* {"messages": M, "tools": T, <template_kwargs' members>} from the case line's raw text. */
static char *conversation_text(const char *line)
{
    const char *m, *t = NULL, *k = NULL;
    size_t mn, tn = 0, kn = 0;
    if (!raw_member(line, "messages", &m, &mn))
        return NULL;
    if (raw_member(line, "tools", &t, &tn) && tn == 4 && !strncmp(t, "null", 4))
        t = NULL;
    raw_member(line, "template_kwargs", &k, &kn);
    char *out = malloc(mn + tn + kn + 64);
    if (!out)
        return NULL;
    int w = sprintf(out, "{\"messages\": %.*s", (int)mn, m);
    if (t)
        w += sprintf(out + w, ", \"tools\": %.*s", (int)tn, t);
    if (k && kn > 2) /* the members inside the braces */
        w += sprintf(out + w, ", %.*s", (int)(kn - 2), k + 1);
    strcpy(out + w, "}");
    return out;
}

static void run_file(const char *shared, const char *path)
{
    size_t n;
    char *text = nn_test_slurp(path, &n);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    nn_chat_template *tmpl = NULL;
    nn_chat_transformers mode = NN_CHAT_TRANSFORMERS_4;
    nn_tokenizer *tok = NULL;
    char tok_name[64] = "";
    nn_err err;
    for (; line; line = strtok_r(NULL, "\n", &save)) {
        size_t at;
        cJSON *j = nn_json_parse(line, strlen(line), &at);
        if (!j) {
            CHECK(0, "%s: bad JSON line at byte %zu", path, at);
            continue;
        }
        const char *type = cJSON_GetStringValue(nn_json_get(j, "type"));
        if (type && !strcmp(type, "template")) {
            nn_chat_template_free(tmpl);
            tmpl = NULL;
            const char *id = cJSON_GetStringValue(nn_json_get(j, "id"));
            const char *model_dir = cJSON_GetStringValue(nn_json_get(j, "model_dir"));
            /* ../shared/chat was rendered the transformers 4.4x way (its README); files of
             * tools/chat_expected.py say which transformers rendered them */
            const char *hf = cJSON_GetStringValue(nn_json_get(j, "transformers"));
            mode = hf && hf[0] == '4' ? NN_CHAT_TRANSFORMERS_4
                   : hf               ? NN_CHAT_TRANSFORMERS_5
                                      : NN_CHAT_TRANSFORMERS_4;
            if (force_mode >= 0)
                mode = (nn_chat_transformers)force_mode;
            if (model_dir) { /* the model's own files, through nnterp's loader */
                char dir[4096];
                snprintf(dir, sizeof dir, "%s/%s", shared, model_dir);
                CHECK_OK(nn_chat_template_load(dir, NULL, &tmpl, &err), &err);
            } else { /* the template text and the special tokens the reference was given */
                char *special = cJSON_PrintUnformatted(nn_json_get(j, "special_tokens"));
                const char *src = cJSON_GetStringValue(nn_json_get(j, "template"));
                CHECK_OK(nn_chat_template_from_source(id ? id : path, src ? src : "", special,
                                                      &tmpl, &err),
                         &err);
                cJSON_free(special);
            }
            cJSON_Delete(j);
            continue;
        }
        const char *name = cJSON_GetStringValue(nn_json_get(j, "case"));
        const char *id = cJSON_GetStringValue(nn_json_get(j, "id"));
        if (!tmpl) {
            cJSON_Delete(j);
            continue;
        }
        cases++;
        char *conv_text = conversation_text(line);
        if (!conv_text) {
            CHECK(0, "%s %s: no messages", id, name);
            cJSON_Delete(j);
            continue;
        }
        nn_chat_options o = {
            .add_generation_prompt = cJSON_IsTrue(nn_json_get(j, "add_generation_prompt")),
            .continue_final_message = cJSON_IsTrue(nn_json_get(j, "continue_final_message")),
            .now = pinned_now(),
            .transformers = mode};
        char *out = NULL;
        size_t out_len = 0;
        int rc = nn_chat_render(tmpl, conv_text, strlen(conv_text), &o, &out, &out_len, &err);
        if (getenv("DEBUG_CHAT"))
            fprintf(stderr, "conv %s -> rc %d len %zu\n", conv_text, rc, out_len);
        free(conv_text);
        const cJSON *expected = nn_json_get(j, "expected");
        const cJSON *expected_error = nn_json_get(j, "expected_error");
        if (expected_error) {
            const char *msg = cJSON_GetStringValue(nn_json_get(expected_error, "message"));
            CHECK(rc != NN_OK, "%s %s: rendered, but Hugging Face raises '%s'", id, name,
                  msg ? msg : "?");
            if (rc != NN_OK && msg)
                CHECK(strstr(err.msg, msg), "%s %s: error '%s' lacks '%s'", id, name, err.msg, msg);
        } else if (rc != NN_OK) {
            CHECK(0, "%s %s: %s", id, name, err.msg);
        } else {
            const char *want = cJSON_GetStringValue(expected);
            bool same = want && strlen(want) == out_len && !memcmp(want, out, out_len);
            CHECK(same, "%s %s: rendering differs\n--- got ---\n%s\n--- want ---\n%s", id, name,
                  out, want ? want : "(none)");
            const cJSON *ids = nn_json_get(j, "expected_ids");
            const char *tn = cJSON_GetStringValue(nn_json_get(j, "ids_tokenizer"));
            if (same && cJSON_IsArray(ids) && tn) {
                if (strcmp(tn, tok_name)) {
                    nn_tokenizer_free(tok);
                    tok = ids_tokenizer(shared, tn);
                    snprintf(tok_name, sizeof tok_name, "%s", tn);
                }
                if (!tok) {
                    skipped_ids++;
                } else {
                    nn_ids got = {0};
                    CHECK_OK(nn_tokenizer_encode(tok, out, out_len, false, &got, &err), &err);
                    bool eq = (int)got.n == cJSON_GetArraySize(ids);
                    for (size_t k = 0; eq && k < got.n; k++)
                        eq = got.ids[k] == (int32_t)cJSON_GetArrayItem(ids, (int)k)->valuedouble;
                    CHECK(eq, "%s %s: token ids differ from Hugging Face's (%zu vs %d ids)", id,
                          name, got.n, cJSON_GetArraySize(ids));
                    passed_ids += eq;
                    nn_ids_free(&got);
                }
            }
        }
        nn_free(out);
        cJSON_Delete(j);
    }
    nn_tokenizer_free(tok);
    nn_chat_template_free(tmpl);
    free(text);
}

int main(int argc, char **argv)
{
    const char *shared = nn_test_shared_dir("chat templates");
    int first = 1;
    if (argc > 2 && !strcmp(argv[1], "--transformers")) {
        force_mode = argv[2][0] == '4' ? NN_CHAT_TRANSFORMERS_4 : NN_CHAT_TRANSFORMERS_5;
        first = 3;
    }
    if (argc > first) {
        for (int i = first; i < argc; i++)
            run_file(shared, argv[i]);
    } else {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/chat", shared);
        DIR *d = opendir(dir);
        if (!d) {
            printf("SKIPPED: no %s\n", dir);
            return NN_TEST_SKIP;
        }
        struct dirent *e;
        char *names[64];
        int nn = 0;
        while ((e = readdir(d)) && nn < 64)
            if (strstr(e->d_name, ".jsonl"))
                names[nn++] = strdup(e->d_name);
        closedir(d);
        for (int i = 0; i < nn; i++) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            run_file(shared, path);
            free(names[i]);
        }
    }
    printf("test_chat: %d cases, %d token-id checks passed, %d without a tokenizer\n", cases,
           passed_ids, skipped_ids);
    return nn_test_finish("test_chat");
}
