/* Every tokenizer test vector in ../shared/tokenizers (see its README): encode to exactly the
 * listed ids (with and without the default special tokens), decode back to the listed text (keeping
 * and skipping special tokens), for GPT-2, Llama 2 (tokenizer.json and llama2.c tokenizer.bin) and
 * stories260K (tokenizer.json and tok512.bin); Llama 3.1, Qwen3, Gemma 3, DeepSeek-V3 and gpt-oss
 * on the shared vectors and on the project's own (tests/data/tokenizers); llama.cpp's GPT-2
 * vectors; streaming decode that never splits a character; and malformed tokenizer files. */
#include <string.h>
#include <unistd.h>

#include "nn_json.h"
#include "nn_test.h"
#include "tokenizer.h"

static int shown;

static bool same_ids(const nn_ids *got, const cJSON *want)
{
    if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != got->n)
        return false;
    size_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach (v, want)
        if (got->ids[i++] != (int32_t)v->valuedouble)
            return false;
    return true;
}

static void show_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* Runs one JSONL file: encode(text, add_special) == ids_key; decode(ids) == decoded_key (and
 * decoded_skip_special when present). */
static void run_vectors(nn_tokenizer *t, const char *path, bool add_special, const char *ids_key,
                        const char *decoded_key, const char *skip_key)
{
    nn_err err = {{0}};
    char *text = NULL;
    if (nn_file_read(path, 64u << 20, &text, NULL, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int rows = 0, enc_ok = 0, dec_ok = 0, skip_ok = 0, n_skip = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *row = cJSON_Parse(line);
        if (!row)
            continue;
        rows++;
        const cJSON *txt = nn_json_get(row, "text"), *ids = nn_json_get(row, ids_key);
        nn_ids got = {0};
        int rc = nn_tokenizer_encode(t, txt->valuestring, strlen(txt->valuestring), add_special,
                                     &got, &err);
        if (rc == NN_OK && same_ids(&got, ids)) {
            enc_ok++;
        } else if (shown++ < 12) {
            fprintf(stderr, "  encode mismatch in %s: %s\n", path, line);
            if (rc)
                fprintf(stderr, "    error: %s\n", err.msg);
            show_ids("got", got.ids, got.n);
        }
        /* decode the expected ids */
        int32_t want[4096];
        size_t n = 0;
        const cJSON *v;
        cJSON_ArrayForEach (v, ids)
            if (n < 4096)
                want[n++] = (int32_t)v->valuedouble;
        const char *keys[2] = {decoded_key, skip_key};
        for (int k = 0; k < 2; k++) {
            const cJSON *expect = keys[k] ? nn_json_get(row, keys[k]) : NULL;
            if (!cJSON_IsString(expect))
                continue;
            char *dec = NULL;
            rc = nn_tokenizer_decode(t, want, n, k == 1, &dec, &err);
            bool ok = rc == NN_OK && strcmp(dec, expect->valuestring) == 0;
            if (k == 0)
                dec_ok += ok;
            else {
                n_skip++;
                skip_ok += ok;
            }
            if (!ok && shown++ < 12)
                fprintf(stderr, "  decode%s mismatch in %s: got '%s', want '%s'\n",
                        k ? " (skip special)" : "", path, rc ? err.msg : dec, expect->valuestring);
            nn_free(dec);
        }
        nn_ids_free(&got);
        cJSON_Delete(row);
    }
    printf("  %-52s %3d/%d encode", path + strlen(path) - (strlen(path) > 52 ? 52 : strlen(path)),
           enc_ok, rows);
    if (decoded_key)
        printf(", %3d/%d decode", dec_ok, rows);
    if (n_skip)
        printf(", %3d/%d decode skipping special", skip_ok, n_skip);
    printf("\n");
    CHECK(rows > 0 && enc_ok == rows && (!decoded_key || dec_ok == rows) && skip_ok == n_skip,
          "%s: %d/%d encode, %d/%d decode, %d/%d skip", path, enc_ok, rows, dec_ok, rows, skip_ok,
          n_skip);
    nn_free(text);
}

static nn_tokenizer *load(const char *shared, const char *rel)
{
    nn_err err = {{0}};
    char *path = nn_path_join(shared, rel, &err);
    nn_tokenizer *t = NULL;
    CHECK_OK(nn_tokenizer_load(path, &t, &err), &err);
    nn_free(path);
    return t;
}

/* The tokenizers of current families (../shared/tokenizers/modern, see its README), one at a
 * time (Gemma 3's holds 262,145 tokens), on the vectors in vectors_dir/<name>.jsonl: ids without
 * and with the special tokens tokenizer(text) adds (DeepSeek-V3: [BOS] + ids, its
 * tokenizer_config.json's add_bos_token, which transformers 4.x's LlamaTokenizerFast follows
 * rather than the tokenizer.json's empty post-processor), and decoding both ways. */
static void modern_vectors(const char *shared, const char *vectors_dir)
{
    static const char *const names[] = {"llama3_1", "qwen3", "gemma3", "deepseek_v3", "gptoss"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char rel[256], p[1024];
        snprintf(rel, sizeof rel, "tokenizers/modern/%s", names[i]);
        nn_tokenizer *t = load(shared, rel);
        if (!t)
            continue;
        snprintf(p, sizeof p, "%s/%s.jsonl", vectors_dir, names[i]);
        bool deepseek = !strcmp(names[i], "deepseek_v3");
        run_vectors(t, p, false, "ids", "decoded", NULL);
        run_vectors(t, p, true, deepseek ? "ids_special_transformers" : "ids_special", NULL,
                    "decoded_skip_special");
        nn_tokenizer_free(t);
    }
}

static void llamacpp_vectors(nn_tokenizer *t, const char *shared)
{
    nn_err err = {{0}};
    char *inp_path = nn_path_join(shared, "tokenizers/gpt2/llamacpp-vectors.inp", &err);
    char *out_path = nn_path_join(shared, "tokenizers/gpt2/llamacpp-vectors.out", &err);
    char *inp = NULL, *out = NULL;
    CHECK_OK(nn_file_read(inp_path, 1 << 20, &inp, NULL, &err), &err);
    CHECK_OK(nn_file_read(out_path, 1 << 20, &out, NULL, &err), &err);
    if (!inp || !out)
        return;
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = inp, *o = out;
    int n = 0, ok = 0;
    for (;;) {
        char *end = strstr(p, sep);
        if (!end)
            break;
        char *eol = strchr(o, '\n');
        if (!eol)
            break;
        *eol = '\0';
        nn_ids got = {0};
        nn_tokenizer_encode(t, p, (size_t)(end - p), false, &got, &err);
        char line[8192] = "";
        size_t len = 0;
        for (size_t i = 0; i < got.n && len < sizeof line - 16; i++)
            len += (size_t)snprintf(line + len, sizeof line - len, " %d", got.ids[i]);
        n++;
        if (strcmp(line, o) == 0)
            ok++;
        else if (shown++ < 12)
            fprintf(stderr, "  llama.cpp vector %d: got '%s', want '%s'\n", n, line, o);
        nn_ids_free(&got);
        p = end + strlen(sep);
        o = eol + 1;
    }
    printf("  %-52s %3d/%d encode\n", "gpt2/llamacpp-vectors", ok, n);
    CHECK(n > 40 && ok == n, "llama.cpp vectors: %d/%d", ok, n);
    nn_free(inp);
    nn_free(out);
    nn_free(inp_path);
    nn_free(out_path);
}

/* Streaming decode: the concatenated stream equals the full decode, and no chunk ends inside a
 * character. */
static void streaming(nn_tokenizer *t, const char *text)
{
    nn_err err = {{0}};
    nn_ids ids = {0};
    CHECK_OK(nn_tokenizer_encode(t, text, strlen(text), false, &ids, &err), &err);
    nn_detokenizer d;
    nn_detokenizer_init(&d, t, true);
    char joined[4096] = "";
    bool whole = true;
    for (size_t i = 0; i < ids.n; i++) {
        char *piece = NULL;
        CHECK_OK(nn_detokenizer_push(&d, ids.ids[i], &piece, &err), &err);
        if (piece) {
            whole &= nn_utf8_validate(piece, strlen(piece)) == strlen(piece);
            strncat(joined, piece, sizeof joined - strlen(joined) - 1);
        }
        nn_free(piece);
    }
    char *full = NULL;
    CHECK_OK(nn_tokenizer_decode(t, ids.ids, ids.n, true, &full, &err), &err);
    CHECK(whole, "a streamed chunk split a UTF-8 character");
    CHECK(full && strcmp(joined, full) == 0, "stream '%s' != decode '%s'", joined, full);
    nn_free(full);
    nn_detokenizer_free(&d);
    nn_ids_free(&ids);
}

static void malformed(void)
{
    char dir[] = "/tmp/nnterp-test-tok-XXXXXX";
    if (!mkdtemp(dir))
        return;
    struct {
        const char *what, *json, *needle;
    } cases[] = {
        {"not JSON", "{\"model\": ", "malformed JSON"},
        {"no model", "{}", "field 'model' missing"},
        {"unknown model type", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
         "model type 'Unigram' is not supported"},
        {"vocab not an object", "{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}",
         "model.vocab must be an object"},
        {"vocab id not a number",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}",
         "model.vocab['a'] is not a token id"},
        {"merge of unknown tokens",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
         "model.merges[0]"},
        {"merge without a space",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}",
         "is not 'left right'"},
        {"unknown pre-tokenizer",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}",
         "pre_tokenizer type 'BertPreTokenizer' is not supported"},
        {"bad regex",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
         "\"Isolated\"}}",
         "does not compile"},
        {"unknown normalizer",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"normalizer\": {\"type\": \"BertNormalizer\"}}",
         "normalizer type 'BertNormalizer' is not supported"},
        {"unknown decoder",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"decoder\": {\"type\": \"WordPiece\"}}",
         "decoder type 'WordPiece' is not supported"},
        {"added token without content",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"added_tokens\": [{\"id\": 1}]}",
         "'content' is missing"},
        {"unk token not in vocab",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": "
         "\"<unk>\"}}",
         "unk_token '<unk>' is not in the vocabulary"},
        {"invalid UTF-8 key",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xff\": 0}, \"merges\": []}}",
         "not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/t%zu.json", dir, i);
        FILE *f = fopen(path, "wb");
        fputs(cases[i].json, f);
        fclose(f);
        nn_err err = {{0}};
        nn_tokenizer *t = NULL;
        int rc = nn_tokenizer_load(path, &t, &err);
        printf("  %-40s -> %s\n", cases[i].what, err.msg);
        CHECK(rc == NN_ERR && !t && strstr(err.msg, cases[i].needle) && strstr(err.msg, path),
              "%s: got '%s'", cases[i].what, err.msg);
        remove(path);
    }
    /* llama2.c tokenizer.bin with a lying length */
    char path[128];
    snprintf(path, sizeof path, "%s/bad.bin", dir);
    FILE *f = fopen(path, "wb");
    int32_t hdr[3] = {8, 0, 1000};
    fwrite(hdr, 4, 3, f);
    fclose(f);
    nn_err err = {{0}};
    nn_tokenizer *t = NULL;
    int rc = nn_tokenizer_load(path, &t, &err);
    printf("  %-40s -> %s\n", "tokenizer.bin lying length", err.msg);
    CHECK(rc == NN_ERR && strstr(err.msg, "token 0: length 1000"), "bad.bin: %s", err.msg);
    remove(path);
    rmdir(dir);
}

int main(void)
{
    const char *shared = nn_test_shared_dir("test_tokenizer");
    char p[1024];
    nn_tokenizer *gpt2 = load(shared, "tokenizers/gpt2");
    nn_tokenizer *llama = load(shared, "tokenizers/llama2");
    nn_tokenizer *llama_bin = load(shared, "tokenizers/llama2/tokenizer.bin");
    nn_tokenizer *stories = load(shared, "tokenizers/stories260K");
    nn_tokenizer *stories_bin = load(shared, "tokenizers/stories260K/tok512.bin");
    if (!gpt2 || !llama || !llama_bin || !stories || !stories_bin)
        return nn_test_finish("test_tokenizer");
#define V(t, file, special, ids, dec, skip)                                                        \
    snprintf(p, sizeof p, "%s/tokenizers/%s", shared, file);                                       \
    run_vectors(t, p, special, ids, dec, skip)
    V(gpt2, "gpt2/tests.jsonl", false, "ids", "decoded", "decoded_skip_special");
    V(gpt2, "gpt2/tests.jsonl", true, "ids", "decoded", "decoded_skip_special");
    V(llama, "llama2/tests_bos.jsonl", true, "ids", "decoded", "decoded_skip_special");
    V(llama, "llama2/tests_no_bos.jsonl", false, "ids", "decoded", "decoded_skip_special");
    V(llama_bin, "llama2/tests_tokenizer_bin.jsonl", true, "ids", "decoded", NULL);
    V(stories, "stories260K/tests.jsonl", true, "ids", "decoded", "decoded_skip_special");
    V(stories_bin, "stories260K/tests.jsonl", true, "ids_llama2c", "decoded_llama2c", NULL);
    snprintf(p, sizeof p, "%s/tokenizers/modern", shared);
    modern_vectors(shared, p); /* the shared vectors */
    char own[1024];
    snprintf(own, sizeof own, "%s/tests/data/tokenizers", NNTERP_SOURCE_DIR);
    modern_vectors(shared, own); /* the project's (tools/make_tokenizer_vectors.py) */
    llamacpp_vectors(gpt2, shared);
    streaming(gpt2, "Héllo wörld 😀 日本語 — done");
    streaming(llama, "Héllo wörld 😀 日本語 — done");
    streaming(stories, "Lily saw a 🐶 in the park.");
    malformed();
    nn_tokenizer_free(gpt2);
    nn_tokenizer_free(llama);
    nn_tokenizer_free(llama_bin);
    nn_tokenizer_free(stories);
    nn_tokenizer_free(stories_bin);
    return nn_test_finish("test_tokenizer");
}
