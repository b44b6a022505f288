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

static void run_file(const char *shared, const char *path)
{
    size_t n;
    char *text = nn_test_slurp(path, &n);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    nn_chat_template *tmpl = NULL;
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
            char *special = cJSON_PrintUnformatted(nn_json_get(j, "special_tokens"));
            const char *src = cJSON_GetStringValue(nn_json_get(j, "template"));
            const char *id = cJSON_GetStringValue(nn_json_get(j, "id"));
            CHECK_OK(
                nn_chat_template_from_source(id ? id : path, src ? src : "", special, &tmpl, &err),
                &err);
            cJSON_free(special);
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
        cJSON *conv = cJSON_CreateObject();
        cJSON_AddItemToObject(conv, "messages", cJSON_Duplicate(nn_json_get(j, "messages"), true));
        const cJSON *tools = nn_json_get(j, "tools");
        if (tools && !cJSON_IsNull(tools))
            cJSON_AddItemToObject(conv, "tools", cJSON_Duplicate(tools, true));
        const cJSON *kw = nn_json_get(j, "template_kwargs"), *it;
        cJSON_ArrayForEach (it, kw) {
            cJSON_AddItemToObject(conv, it->string, cJSON_Duplicate(it, true));
        }
        char *conv_text = cJSON_PrintUnformatted(conv);
        cJSON_Delete(conv);
        nn_chat_options o = {
            .add_generation_prompt = cJSON_IsTrue(nn_json_get(j, "add_generation_prompt")),
            .continue_final_message = cJSON_IsTrue(nn_json_get(j, "continue_final_message")),
            .now = pinned_now()};
        char *out = NULL;
        size_t out_len = 0;
        int rc = nn_chat_render(tmpl, conv_text, strlen(conv_text), &o, &out, &out_len, &err);
        cJSON_free(conv_text);
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
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
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
