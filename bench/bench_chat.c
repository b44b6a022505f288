/* bench_chat: how long nnterp takes to render a chat template (compile once, render many), for
 * comparison with transformers' apply_chat_template (bench/chat_transformers.py) on the same
 * template and conversation.
 *
 * Usage: bench_chat CASES.jsonl [--reps R] [--iters N]
 *
 * CASES.jsonl in the format of ../shared/chat (line 1: the template and its special tokens; then
 * the cases). Each rep renders every case N times (default 200) and is timed as a whole; the JSON
 * on stdout gives the compile time, and the median over R reps (default 5) of the microseconds
 * per render. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_median.h"
#include "chat.h"
#include "nn_json.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_chat CASES.jsonl [--reps R] [--iters N]\n");
        return 2;
    }
    int reps = 5, iters = 200;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters"))
            iters = atoi(argv[i + 1]);
    }
    if (reps < 1 || reps > 100 || iters < 1) {
        fprintf(stderr, "bench_chat: bad --reps or --iters\n");
        return 2;
    }
    nn_err err;
    char *text;
    size_t n;
    if (nn_file_read(argv[1], (size_t)64 << 20, &text, &n, &err)) {
        fprintf(stderr, "bench_chat: %s\n", err.msg);
        return 1;
    }
    char *convs[64];
    nn_chat_options opts[64];
    int n_cases = 0;
    nn_chat_template *t = NULL;
    double compile_s = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t at;
        cJSON *j = nn_json_parse(line, strlen(line), &at);
        if (!j)
            continue;
        if (!t) {
            char *special = cJSON_PrintUnformatted(nn_json_get(j, "special_tokens"));
            const char *src = cJSON_GetStringValue(nn_json_get(j, "template"));
            double t0 = nn_seconds();
            if (!src || nn_chat_template_from_source("bench", src, special, &t, &err)) {
                fprintf(stderr, "bench_chat: %s\n", src ? err.msg : "line 1 has no template");
                return 1;
            }
            compile_s = nn_seconds() - t0;
            cJSON_free(special);
        } else if (!nn_json_get(j, "expected_error") && n_cases < 64) {
            cJSON *conv = cJSON_CreateObject();
            cJSON_AddItemToObject(conv, "messages",
                                  cJSON_Duplicate(nn_json_get(j, "messages"), true));
            const cJSON *tools = nn_json_get(j, "tools");
            if (cJSON_IsArray(tools))
                cJSON_AddItemToObject(conv, "tools", cJSON_Duplicate(tools, true));
            convs[n_cases] = cJSON_PrintUnformatted(conv);
            cJSON_Delete(conv);
            struct tm tm = {.tm_year = 124, .tm_mon = 6, .tm_mday = 26, .tm_isdst = -1};
            opts[n_cases] = (nn_chat_options){
                .add_generation_prompt = cJSON_IsTrue(nn_json_get(j, "add_generation_prompt")),
                .continue_final_message = cJSON_IsTrue(nn_json_get(j, "continue_final_message")),
                .now = mktime(&tm)};
            n_cases++;
        }
        cJSON_Delete(j);
    }
    double runs[100];
    size_t bytes = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = nn_seconds();
        for (int it = 0; it < iters; it++)
            for (int c = 0; c < n_cases; c++) {
                char *out;
                size_t len;
                if (nn_chat_render(t, convs[c], strlen(convs[c]), &opts[c], &out, &len, &err)) {
                    fprintf(stderr, "bench_chat: %s\n", err.msg);
                    return 1;
                }
                if (r == 0 && it == 0)
                    bytes += len;
                nn_free(out);
            }
        runs[r] = (nn_seconds() - t0) / ((double)iters * n_cases) * 1e6;
    }
    printf("{\"cases\": %d, \"bytes_per_pass\": %zu, \"compile_us\": %.1f, \"reps\": %d, "
           "\"iters\": %d, \"us_per_render\": %.2f}\n",
           n_cases, bytes, compile_s * 1e6, reps, iters, median(runs, reps));
    for (int c = 0; c < n_cases; c++)
        cJSON_free(convs[c]);
    nn_chat_template_free(t);
    free(text);
    return 0;
}
