/* Hostile input, file by file: NaN and infinity in weights, wrong dtypes, lying lengths, every
 * structural truncation, integer overflow in shapes, deep nesting, duplicate keys, invalid UTF-8,
 * empty files, directories and unreadable files where files belong, and the limits (header or
 * tensor beyond the file, a dataset line beyond dataset.max_line_bytes). Each input must give its
 * exact error naming the file (and field or line) and leave nothing allocated; never a crash
 * (this test also runs under AddressSanitizer, and tools/fuzz.sh fuzzes the same parsers).
 * Complements test_loading.c, test_tokenizer.c, test_toolkit.c, test_cli.sh and test_run.sh. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "job.h"
#include "ledger.h"
#include "model.h"
#include "nn_test.h"
#include "tokenizer.h"
#include "toolkit.h"

static char tmp[256];
static const char *shared;
static int n_inputs; /* malformed inputs tried */

/* ---- Files -------------------------------------------------------------------------------------
 */

static char *path_in(const char *dir, const char *name)
{
    static char paths[8][2048];
    static int next;
    char *p = paths[next++ % 8], buf[sizeof paths[0]];
    snprintf(buf, sizeof buf, "%s/%s", dir, name); /* dir may be an earlier result */
    memcpy(p, buf, sizeof buf);
    return p;
}

static void write_str(const char *path, const char *s)
{
    nn_test_write_file(path, s, strlen(s));
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    char *b = nn_test_slurp(from, &n);
    nn_test_write_file(to, b, n);
    nn_free(b);
}

/* A fresh directory tmp/name (the name stays valid to the end). */
static const char *fresh_dir(const char *name)
{
    static char dirs[128][512];
    static int next;
    if (next == 128) {
        fprintf(stderr, "fresh_dir: too many directories\n");
        exit(1);
    }
    char *d = dirs[next++];
    snprintf(d, sizeof dirs[0], "%s/%s", tmp, name);
    mkdir(d, 0755);
    return d;
}

/* Deeply nested JSON: depth levels of [ ... ] inside {"key": ...}. */
static char *nested(const char *key, int depth)
{
    size_t n = strlen(key) + 2 * (size_t)depth + 16;
    char *s = malloc(n);
    size_t k = (size_t)sprintf(s, "{\"%s\": ", key);
    for (int i = 0; i < depth; i++)
        s[k++] = '[';
    for (int i = 0; i < depth; i++)
        s[k++] = ']';
    strcpy(s + k, "}");
    return s;
}

/* ---- Expectations ------------------------------------------------------------------------------
 */

static void report(const char *what, int rc, bool left_nothing, const char *msg, const char *needle,
                   const char *needle2)
{
    n_inputs++;
    bool ok =
        rc == NN_ERR && left_nothing && strstr(msg, needle) && (!needle2 || strstr(msg, needle2));
    printf("  %-46s -> %s\n", what, msg);
    CHECK(ok, "%s: expected an error with '%s'%s%s, got rc %d: '%s'", what, needle,
          needle2 ? " and " : "", needle2 ? needle2 : "", rc, msg);
}

static void expect_model(const char *what, const char *path, const char *needle,
                         const char *needle2)
{
    nn_err err = {{0}};
    nn_model *m = NULL;
    int rc = nn_model_load(path, &m, &err);
    report(what, rc, m == NULL, err.msg, needle, needle2);
    nn_model_free(m);
}

static void expect_tokenizer(const char *what, const char *path, const char *needle,
                             const char *needle2)
{
    nn_err err = {{0}};
    nn_tokenizer *t = NULL;
    int rc = nn_tokenizer_load(path, &t, &err);
    report(what, rc, t == NULL, err.msg, needle, needle2);
    nn_tokenizer_free(t);
}

static void expect_job(const char *what, const char *path, const char *needle)
{
    nn_err err = {{0}};
    nn_job j;
    int rc = nn_job_load(path, &j, &err);
    if (rc == NN_OK)
        nn_job_free(&j);
    report(what, rc, true, err.msg, needle, NULL);
}

static void expect_dataset(const char *what, const char *path, const char *format,
                           const char *targets, size_t max_line, const char *needle,
                           const char *needle2)
{
    nn_err err = {{0}};
    nn_dataset d;
    int rc = nn_dataset_read(path, format, "text", targets, max_line, &d, &err);
    if (rc == NN_OK)
        nn_dataset_free(&d);
    report(what, rc, true, err.msg, needle, needle2);
}

static void expect_npy(const char *what, const char *path, const char *needle)
{
    nn_err err = {{0}};
    float *v = NULL;
    size_t n = 0;
    int rc = nn_npy_read_vector(path, &v, &n, &err);
    report(what, rc, v == NULL, err.msg, needle, NULL);
    nn_free(v);
}

/* Unreadable files: as root, permissions do not stop reads; the case is then skipped, loudly. */
static bool can_test_permissions(void)
{
    if (geteuid() != 0)
        return true;
    printf("  SKIPPED: unreadable-file cases (running as root: permissions do not stop reads)\n");
    return false;
}

/* ---- Weights: NaN, infinity, dtypes ------------------------------------------------------------
 */

/* Copies a checkpoint directory's config.json and model.safetensors to tmp/name. */
static const char *copy_checkpoint(const char *src, const char *name)
{
    const char *dir = fresh_dir(name);
    copy_file(path_in(src, "config.json"), path_in(dir, "config.json"));
    copy_file(path_in(src, "model.safetensors"), path_in(dir, "model.safetensors"));
    return dir;
}

/* Overwrites element i of tensor name (elem bytes each) in dir/model.safetensors. */
static void patch_tensor(const char *dir, const char *name, size_t i, const void *bytes,
                         size_t elem)
{
    const char *path = path_in(dir, "model.safetensors");
    size_t n;
    char *img = nn_test_slurp(path, &n);
    nn_st_archive a;
    nn_err err;
    if (nn_st_parse((const uint8_t *)img, n, path, 0, &a, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    const nn_st_tensor *t = nn_st_find(&a, name);
    if (!t) {
        fprintf(stderr, "%s: no tensor %s\n", path, name);
        exit(1);
    }
    memcpy((char *)t->data + i * elem, bytes, elem);
    nn_st_close(&a);
    nn_test_write_file(path, img, n);
    nn_free(img);
}

/* Replaces the first occurrence of from (after the text after) in dir/model.safetensors' header
 * with to, of the same length. */
static void patch_header(const char *dir, const char *after, const char *from, const char *to)
{
    const char *path = path_in(dir, "model.safetensors");
    size_t n;
    char *img = nn_test_slurp(path, &n);
    char *at = strstr(img + 8, after);
    at = at ? strstr(at, from) : NULL;
    if (!at || strlen(from) != strlen(to)) {
        fprintf(stderr, "%s: cannot patch '%s'\n", path, from);
        exit(1);
    }
    memcpy(at, to, strlen(to));
    nn_test_write_file(path, img, n);
    nn_free(img);
}

static void weights(void)
{
    printf("NaN, infinity and wrong dtypes in weights\n");
    char gpt2[512], bf16[512], f16[512];
    snprintf(gpt2, sizeof gpt2, "%s/reference/tiny/gpt2/model-f32", shared);
    snprintf(bf16, sizeof bf16, "%s/reference/tiny/llama_gqa/model-bf16", shared);
    snprintf(f16, sizeof f16, "%s/reference/tiny/llama_gqa/model-f16", shared);
    const float nan = 0.0f / 0.0f, inf = 1.0f / 0.0f;

    /* Memory-mapped F32 weights are scanned on request (NNTERP_CHECK_WEIGHTS=1): a scan reads
     * the whole file, which a process otherwise touches only where it computes. */
    const char *d = copy_checkpoint(gpt2, "nan_f32");
    patch_tensor(d, "transformer.h.1.mlp.c_fc.weight", 7, &nan, 4);
    setenv("NNTERP_CHECK_WEIGHTS", "1", 1);
    expect_model("F32 weight holding NaN (NNTERP_CHECK_WEIGHTS=1)", d,
                 "tensor 'transformer.h.1.mlp.c_fc.weight' holds NaN at element 7",
                 "model.safetensors");
    unsetenv("NNTERP_CHECK_WEIGHTS");
    nn_err err = {{0}};
    nn_model *m = NULL;
    CHECK_OK(nn_model_load(d, &m, &err), &err);
    printf("  %-46s -> %s\n", "the same by default (mapped, unread)", m ? "loads" : err.msg);
    nn_model_free(m);

    d = copy_checkpoint(gpt2, "inf_f32");
    patch_tensor(d, "transformer.wte.weight", 0, &inf, 4);
    setenv("NNTERP_CHECK_WEIGHTS", "1", 1);
    expect_model("F32 embedding holding +infinity", d,
                 "tensor 'transformer.wte.weight' holds infinity at element 0", NULL);
    unsetenv("NNTERP_CHECK_WEIGHTS");

    d = copy_checkpoint(bf16, "inf_bf16");
    uint16_t neg_inf = 0xff80, half_nan = 0x7e00;
    patch_tensor(d, "model.layers.1.self_attn.k_proj.weight", 3, &neg_inf, 2);
    expect_model("BF16 weight holding -infinity", d,
                 "tensor 'model.layers.1.self_attn.k_proj.weight' holds infinity at element 3",
                 NULL);

    d = copy_checkpoint(f16, "nan_f16");
    patch_tensor(d, "model.norm.weight", 0, &half_nan, 2);
    expect_model("F16 norm weight holding NaN", d,
                 "tensor 'model.norm.weight' holds NaN at element 0", NULL);

    /* llama2.c: wq of layer 2, element 5 */
    char src[512];
    snprintf(src, sizeof src, "%s/models/stories260K/stories260K.bin", shared);
    size_t n;
    char *img = nn_test_slurp(src, &n);
    int32_t h[7];
    memcpy(h, img, sizeof h);
    size_t dim = (size_t)h[0], L = (size_t)h[2], V = (size_t)labs(h[5]);
    size_t at = 28 + 4 * (V * dim + L * dim + 2 * dim * dim + 5);
    memcpy(img + at, &nan, 4);
    nn_test_write_file(path_in(tmp, "nan.bin"), img, n);
    setenv("NNTERP_CHECK_WEIGHTS", "1", 1); /* llama2.c tables are mapped F32 */
    expect_model("llama2.c weight holding NaN", path_in(tmp, "nan.bin"),
                 "weights 'wq' (layer 2) hold NaN at element 5", "nan.bin");
    unsetenv("NNTERP_CHECK_WEIGHTS");

    d = copy_checkpoint(gpt2, "i32_dtype");
    patch_header(d, "\"transformer.ln_f.weight\"", "F32", "I32");
    expect_model("I32 tensor where weights belong", d,
                 "tensor 'transformer.ln_f.weight': dtype I32 cannot be used as weights",
                 "model.safetensors");

    d = copy_checkpoint(gpt2, "f64_dtype");
    patch_header(d, "\"transformer.wpe.weight\"", "F32", "F64");
    expect_model("dtype F64 whose size disagrees", d, "'transformer.wpe.weight'", "needs");
    nn_free(img);
}

/* ---- Safetensors structure ---------------------------------------------------------------------
 */

/* dir/model.safetensors = declared length (or the header's own when < 0), header, data_len
 * zeros; config.json a tiny GPT-2 so that the header is what fails. */
static const char *st_dir(const char *name, const char *header, size_t data_len, long long declared)
{
    static const char *config =
        "{\"model_type\": \"gpt2\", \"n_embd\": 4, \"n_head\": 2, \"n_layer\": 1, "
        "\"n_positions\": 8, \"vocab_size\": 5}";
    const char *dir = fresh_dir(name);
    write_str(path_in(dir, "config.json"), config);
    size_t hl = strlen(header), total = 8 + hl + data_len;
    unsigned char *img = calloc(1, total);
    uint64_t len = declared >= 0 ? (uint64_t)declared : hl;
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)(len >> (8 * i));
    memcpy(img + 8, header, hl);
    nn_test_write_file(path_in(dir, "model.safetensors"), img, total);
    free(img);
    return dir;
}

static void safetensors(void)
{
    printf("safetensors headers\n");
    struct {
        const char *what, *header, *needle;
        size_t data;
        long long declared;
    } cases[] = {
        {"declared header 1 byte short",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
         "header is not a JSON object", 4, 59},
        {"declared header longer: JSON then zeros",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
         "after its JSON object", 8, 64},
        {"negative data offset",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}",
         "not non-negative integers", 4, -1},
        {"fractional data offset",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0.5, 4.5]}}",
         "not non-negative integers", 8, -1},
        {"data offset 1e300",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 1e300]}}",
         "not non-negative integers", 4, -1},
        {"offsets ending before they begin",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}",
         "end before they begin", 4, -1},
        {"shape 1e300",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 4]}}",
         "shape[0] is not a non-negative integer", 4, -1},
        {"shape -1", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}",
         "shape[1] is not a non-negative integer", 4, -1},
        {"shape x dtype size overflows",
         "{\"a\": {\"dtype\": \"F64\", \"shape\": [4294967296, 1073741824], \"data_offsets\": [0, "
         "8]}}",
         "byte size overflows", 8, -1},
        {"9 dimensions",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
         "9 dimensions (at most 8", 4, -1},
        {"dtype not a string", "{\"a\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}",
         "field 'dtype' missing or not a string", 4, -1},
        {"data_offsets of 3 numbers",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
         "'data_offsets' must be [begin, end]", 8, -1},
        {"entry not an object", "{\"a\": [1, 2]}", "header entry is not an object", 0, -1},
        {"__metadata__ not an object", "{\"__metadata__\": 3}", "'__metadata__' is not an object",
         0, -1},
        {"header an array", "[{\"dtype\": \"F32\"}]", "header is not a JSON object", 0, -1},
        {"header not UTF-8 JSON", "{\"a\xff\": {", "header is not a JSON object", 0, -1},
        {"empty header", "", "header is not a JSON object", 0, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "st%zu", i);
        const char *dir = st_dir(name, cases[i].header, cases[i].data, cases[i].declared);
        expect_model(cases[i].what, dir, cases[i].needle, "model.safetensors");
    }
    char *deep = nested("a", 5000);
    expect_model("header nested 5000 deep", st_dir("st_deep", deep, 0, -1),
                 "header is not a JSON object", NULL);
    free(deep);
    const char *dir = fresh_dir("st_empty");
    copy_file(path_in(st_dir("st_cfg", "{}", 0, -1), "config.json"), path_in(dir, "config.json"));
    nn_test_write_file(path_in(dir, "model.safetensors"), "", 0);
    expect_model("empty model.safetensors", dir, "file of 0 bytes is too short", NULL);

    /* The real GPT-2 checkpoint cut inside each tensor's data: the error names a tensor. */
    char src[512];
    snprintf(src, sizeof src, "%s/reference/tiny/gpt2/model-f32", shared);
    size_t n;
    char *img = nn_test_slurp(path_in(src, "model.safetensors"), &n);
    nn_st_archive a;
    nn_err err;
    if (nn_st_parse((const uint8_t *)img, n, "gpt2", 0, &a, &err) == NN_OK) {
        int cuts = 0, good = 0;
        dir = copy_checkpoint(src, "st_cut");
        for (size_t i = 0; i < a.n_tensors; i++) {
            size_t end = (size_t)((const char *)a.tensors[i].data - img) + a.tensors[i].n_bytes;
            nn_test_write_file(path_in(dir, "model.safetensors"), img, end - 1);
            nn_model *m = NULL;
            err.msg[0] = '\0';
            int rc = nn_model_load(dir, &m, &err);
            cuts++;
            n_inputs++;
            good += rc == NN_ERR && !m && strstr(err.msg, "run past the data section");
            nn_model_free(m);
        }
        printf("  %-46s -> %d of %d give 'runs past the data section'\n",
               "cut 1 byte before each tensor's end", good, cuts);
        CHECK(good == cuts, "truncations inside tensors: %d of %d errors", good, cuts);
        nn_st_close(&a);
    } else {
        CHECK(0, "the intact checkpoint did not parse: %s", err.msg);
    }
    nn_free(img);
}

/* ---- Sharded checkpoints -----------------------------------------------------------------------
 */

static void sharded(void)
{
    printf("sharded checkpoints\n");
    char src[512];
    snprintf(src, sizeof src, "%s/reference/tiny/gpt2/model-f32-sharded", shared);
    const char *s1 = "model-00001-of-00002.safetensors", *s2 = "model-00002-of-00002.safetensors";
    struct {
        const char *what, *index, *needle;
    } cases[] = {
        {"empty index", "", "malformed JSON near byte 0"},
        {"index followed by junk", "{\"weight_map\": {}} x", "malformed JSON near byte 19"},
        {"weight_map entry not a string", "{\"weight_map\": {\"transformer.wte.weight\": 3}}",
         "weight_map['transformer.wte.weight'] is not a file name"},
        {"weight_map empty", "{\"weight_map\": {}}", "weight_map is empty"},
        {"weight_map missing", "{\"metadata\": {}}", "field 'weight_map' missing"},
        {"shard name '..'", "{\"weight_map\": {\"a\": \"..\"}}", "not a plain file name"},
        {"tensor listed in the wrong shard",
         "{\"weight_map\": {\"transformer.wte.weight\": \"model-00001-of-00002.safetensors\", "
         "\"transformer.h.0.ln_1.weight\": \"model-00002-of-00002.safetensors\"}}",
         "is listed in 'model-00002-of-00002.safetensors' but found in"},
        {"tensor listed but absent",
         "{\"weight_map\": {\"transformer.nope\": \"model-00001-of-00002.safetensors\"}}",
         "'transformer.nope' is listed in weight_map but absent"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "shard%zu", i);
        const char *dir = fresh_dir(name);
        copy_file(path_in(src, "config.json"), path_in(dir, "config.json"));
        copy_file(path_in(src, s1), path_in(dir, s1));
        copy_file(path_in(src, s2), path_in(dir, s2));
        write_str(path_in(dir, "model.safetensors.index.json"), cases[i].index);
        expect_model(cases[i].what, dir, cases[i].needle, NULL);
    }
    char *deep = nested("weight_map", 3000);
    const char *dir = fresh_dir("shard_deep");
    copy_file(path_in(src, "config.json"), path_in(dir, "config.json"));
    write_str(path_in(dir, "model.safetensors.index.json"), deep);
    free(deep);
    expect_model("index nested 3000 deep", dir, "model.safetensors.index.json: malformed JSON",
                 NULL);

    /* The same tensor in both shards: shard 2 replaced by a copy of shard 1. */
    dir = fresh_dir("shard_twice");
    copy_file(path_in(src, "config.json"), path_in(dir, "config.json"));
    copy_file(path_in(src, "model.safetensors.index.json"),
              path_in(dir, "model.safetensors.index.json"));
    copy_file(path_in(src, s1), path_in(dir, s1));
    copy_file(path_in(src, s1), path_in(dir, s2));
    expect_model("a tensor in two shards", dir, "appears in two shards", NULL);

    /* The second shard truncated, then a directory in its place. */
    dir = fresh_dir("shard_cut");
    copy_file(path_in(src, "config.json"), path_in(dir, "config.json"));
    copy_file(path_in(src, "model.safetensors.index.json"),
              path_in(dir, "model.safetensors.index.json"));
    copy_file(path_in(src, s1), path_in(dir, s1));
    size_t n;
    char *img = nn_test_slurp(path_in(src, s2), &n);
    nn_test_write_file(path_in(dir, s2), img, n / 2);
    nn_free(img);
    expect_model("second shard truncated", dir, "model-00002-of-00002.safetensors",
                 "run past the data section");
    unlink(path_in(dir, s2));
    mkdir(path_in(dir, s2), 0755);
    expect_model("a directory where a shard belongs", dir,
                 "model-00002-of-00002.safetensors: not a regular file", NULL);
}

/* ---- config.json -------------------------------------------------------------------------------
 */

static void configs(void)
{
    printf("config.json\n");
    char model[512];
    snprintf(model, sizeof model, "%s/reference/tiny/llama/model-f32", shared);
#define LLAMA(heads, layers, vocab)                                                                \
    "\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 176, "                 \
    "\"max_position_embeddings\": 64, \"num_attention_heads\": " heads                             \
    ", \"num_hidden_layers\": " layers ", \"vocab_size\": " vocab
#define LLAMA_SIZES LLAMA("4", "2", "512")
    struct {
        const char *what, *config, *needle;
    } cases[] = {
        {"empty config.json", "", "malformed JSON"},
        {"a second object after the config", "{" LLAMA_SIZES "} {\"model_type\": \"gpt2\"}",
         "malformed JSON near byte"},
        {"duplicate key", "{" LLAMA_SIZES ", \"hidden_size\": 32}",
         "key 'hidden_size' appears twice"},
        {"duplicate key in a nested object",
         "{" LLAMA_SIZES
         ", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2, \"factor\": 4}}",
         "key 'factor' appears twice"},
        {"heads x head_dim beyond int", "{" LLAMA("65536", "2", "512") ", \"head_dim\": 65536}",
         "exceeds the limit of 16777216"},
        {"partial_rotary_factor 1e300", "{" LLAMA_SIZES ", \"partial_rotary_factor\": 1e300}",
         "'partial_rotary_factor' = 1e+300 must be in (0, 1]"},
        {"partial_rotary_factor negative", "{" LLAMA_SIZES ", \"partial_rotary_factor\": -0.5}",
         "must be in (0, 1]"},
        {"rope_theta negative", "{" LLAMA_SIZES ", \"rope_theta\": -1}",
         "'rope_theta' must be positive"},
        {"num_hidden_layers 1e20", "{" LLAMA("4", "1e20", "512") "}",
         "'num_hidden_layers' = 100000000000000000000 is out of range"},
        {"vocab_size 0", "{" LLAMA("4", "2", "0") "}", "'vocab_size' = 0 is out of range"},
        {"sliding_window a string", "{" LLAMA_SIZES ", \"sliding_window\": \"8\"}",
         "'sliding_window' must be an integer"},
        {"eos_token_id negative", "{" LLAMA_SIZES ", \"eos_token_id\": -2}",
         "'eos_token_id' must be a non-negative token id"},
        {"model_type not valid UTF-8", "{\"model_type\": \"lla\xffma\"}", "is not supported"},
        {"shapes of the checkpoint disagree", "{" LLAMA("4", "2", "511") "}",
         "model.safetensors: tensor 'model.embed_tokens.weight' has shape [512, 64], expected "
         "[511, 64]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "cfg%zu", i);
        const char *dir = fresh_dir(name);
        write_str(path_in(dir, "config.json"), cases[i].config);
        if (symlink(path_in(model, "model.safetensors"), path_in(dir, "model.safetensors")) != 0)
            perror("symlink");
        /* every error names config.json, except a shape the checkpoint contradicts */
        expect_model(cases[i].what, dir, cases[i].needle,
                     strstr(cases[i].needle, "model.safetensors") ? NULL : "config.json");
    }
    char *deep = nested("model_type", 2000);
    const char *dir = fresh_dir("cfg_deep");
    write_str(path_in(dir, "config.json"), deep);
    free(deep);
    expect_model("config.json nested 2000 deep", dir, "config.json: malformed JSON", NULL);
    dir = fresh_dir("cfg_dir");
    mkdir(path_in(dir, "config.json"), 0755);
    expect_model("a directory named config.json", dir, "config.json: not a regular file", NULL);
    if (can_test_permissions()) {
        dir = fresh_dir("cfg_unreadable");
        write_str(path_in(dir, "config.json"), "{}");
        chmod(path_in(dir, "config.json"), 0);
        expect_model("unreadable config.json", dir, "config.json: cannot open: Permission denied",
                     NULL);
    }
}

/* ---- llama2.c checkpoints ----------------------------------------------------------------------
 */

static void llama2c(void)
{
    printf("llama2.c checkpoints\n");
    nn_test_write_file(path_in(tmp, "empty.bin"), "", 0);
    expect_model("empty .bin", path_in(tmp, "empty.bin"),
                 "0 bytes is too short for a llama2.c header", NULL);
    int32_t huge[7] = {1 << 24, 1 << 24, 1 << 24, 1 << 23, 1 << 23, 1 << 24, 1 << 24};
    nn_test_write_file(path_in(tmp, "huge.bin"), huge, sizeof huge);
    expect_model("header sizes whose product overflows", path_in(tmp, "huge.bin"),
                 "needs more than 2^64", NULL);
    int32_t uneven[7] = {10, 16, 1, 3, 1, 8, 4};
    nn_test_write_file(path_in(tmp, "uneven.bin"), uneven, sizeof uneven);
    expect_model("heads not dividing dim", path_in(tmp, "uneven.bin"), "do not divide evenly",
                 NULL);
    int32_t minvocab[7] = {8, 16, 1, 2, 1, INT32_MIN, 4};
    nn_test_write_file(path_in(tmp, "minvocab.bin"), minvocab, sizeof minvocab);
    expect_model("vocab_size INT32_MIN", path_in(tmp, "minvocab.bin"),
                 "'vocab_size' = -2147483648 is out of range", NULL);

    char src[512];
    snprintf(src, sizeof src, "%s/models/stories260K/stories260K.bin", shared);
    size_t n;
    char *img = nn_test_slurp(src, &n);
    int32_t h[7];
    memcpy(h, img, sizeof h);
    h[5] += 1; /* a vocabulary one token larger than the weights */
    memcpy(img, h, sizeof h);
    nn_test_write_file(path_in(tmp, "lying.bin"), img, n);
    expect_model("vocab_size lying by one", path_in(tmp, "lying.bin"), "needs", "lying.bin");
    h[5] -= 1;
    memcpy(img, h, sizeof h);
    /* Cut at every table boundary (and one float short of each). */
    size_t d = (size_t)h[0], ff = (size_t)h[1], L = (size_t)h[2],
           kvd = d * (size_t)h[4] / (size_t)h[3];
    size_t V = (size_t)labs(h[5]), T = (size_t)h[6], hd = d / (size_t)h[3];
    size_t tables[] = {V * d, L * d,      L * d * d,  L * kvd * d, L * kvd * d, L * d * d,
                       L * d, L * ff * d, L * d * ff, L * ff * d,  d,           T * hd};
    size_t off = 28;
    int cuts = 0, good = 0;
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        off += 4 * tables[i];
        for (int k = 0; k < 2; k++) {
            size_t cut = off - (size_t)k * 4;
            if (cut >= n)
                continue;
            nn_test_write_file(path_in(tmp, "cut.bin"), img, cut);
            nn_err err = {{0}};
            nn_model *m = NULL;
            int rc = nn_model_load(path_in(tmp, "cut.bin"), &m, &err);
            cuts++;
            n_inputs++;
            good += rc == NN_ERR && !m && strstr(err.msg, "cut.bin") && strstr(err.msg, "needs");
            nn_model_free(m);
        }
    }
    printf("  %-46s -> %d of %d give 'N bytes of weights, but the header ... needs M'\n",
           "cut at and before every table boundary", good, cuts);
    CHECK(good == cuts && cuts >= 20, "llama2.c truncations: %d of %d errors", good, cuts);
    nn_free(img);
}

/* ---- Tokenizers --------------------------------------------------------------------------------
 */

static void tokenizers(void)
{
    printf("tokenizer.json\n");
#define BPE                                                                                        \
    "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a " \
    "b\"]}"
    struct {
        const char *what, *json, *needle;
    } cases[] = {
        {"empty tokenizer.json", "", "malformed JSON near byte 0"},
        {"nine RobertaProcessing in a Sequence",
         "{" BPE ", \"post_processor\": {\"type\": \"Sequence\", \"processors\": ["
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]},"
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]},"
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]},"
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]},"
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]},"
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]},"
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]},"
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]},"
         "{\"type\": \"RobertaProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"a\", 0]}]}}",
         "more than 8 template tokens"},
        {"BertProcessing cls id outside the vocabulary",
         "{" BPE ", \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"b\", 1], "
         "\"cls\": [\"x\", 1e12]}}",
         "the cls or sep id is outside the vocabulary"},
        {"template token id outside the vocabulary",
         "{" BPE
         ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
         "{\"id\": \"<s>\"}}], \"special_tokens\": {\"<s>\": {\"ids\": [3]}}}}",
         "special token '<s>' has an id outside the vocabulary"},
        {"added token content not valid UTF-8",
         "{" BPE ", \"added_tokens\": [{\"id\": 3, \"content\": \"<\xc3(>\"}]}",
         "added_tokens[0] content is not valid UTF-8"},
        {"added token id 1e9", "{" BPE ", \"added_tokens\": [{\"id\": 1e9, \"content\": \"<s>\"}]}",
         "field 'id' = 1000000000 is out of range"},
        {"vocab id negative",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
         "model.vocab['a'] is not a token id"},
        {"vocab id 2^31",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2147483648}, \"merges\": []}}",
         "model.vocab['a'] is not a token id"},
        {"merges not a list",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": \"a b\"}}",
         "model.merges a list"},
        {"Strip start 1e7",
         "{" BPE ", \"decoder\": {\"type\": \"Strip\", \"content\": \" \", \"start\": 1e7}}",
         "field 'start' = 10000000 is out of range"},
        {"Split behavior unknown",
         "{" BPE ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
         "\"behavior\": \"Sometimes\"}}",
         "behavior 'Sometimes' is not one of"},
        {"Metaspace prepend_scheme unknown",
         "{" BPE ", \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\", "
         "\"prepend_scheme\": \"often\"}}",
         "prepend_scheme 'often' is not always, first or never"},
        {"Sequence whose list is missing", "{" BPE ", \"normalizer\": {\"type\": \"Sequence\"}}",
         "field 'normalizers' missing or not a list"},
        {"model.dropout 0.1",
         "{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}",
         "model.dropout is not supported"},
    };
    const char *dir = fresh_dir("tok");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%zu.json", i);
        write_str(path_in(dir, name), cases[i].json);
        expect_tokenizer(cases[i].what, path_in(dir, name), cases[i].needle, name);
    }
    /* a merge whose halves join to 1100 bytes */
    char *merge = malloc(1200);
    int k = sprintf(
        merge, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\", \"");
    memset(merge + k, 'a', 1099);
    strcpy(merge + k + 1099, "\"]]}}");
    write_str(path_in(dir, "merge.json"), merge);
    free(merge);
    expect_tokenizer("a merge of 1100 bytes", path_in(dir, "merge.json"),
                     "model.merges[0] is too long", NULL);
    char *deep = nested("model", 4000);
    write_str(path_in(dir, "deep.json"), deep);
    free(deep);
    expect_tokenizer("tokenizer.json nested 4000 deep", path_in(dir, "deep.json"),
                     "deep.json: malformed JSON", NULL);
    const char *sub = fresh_dir("tokdir");
    mkdir(path_in(sub, "tokenizer.json"), 0755);
    expect_tokenizer("a directory named tokenizer.json", path_in(sub, "tokenizer.json"),
                     "no tokenizer.json", NULL);
    if (can_test_permissions()) {
        write_str(path_in(dir, "locked.json"), "{}");
        chmod(path_in(dir, "locked.json"), 0);
        expect_tokenizer("unreadable tokenizer.json", path_in(dir, "locked.json"),
                         "Permission denied", NULL);
    }

    printf("llama2.c tokenizer.bin\n");
    nn_test_write_file(path_in(dir, "empty.bin"), "", 0);
    expect_tokenizer("empty tokenizer.bin", path_in(dir, "empty.bin"),
                     "too short for a llama2.c tokenizer header", NULL);
    int32_t zero_max[1] = {0};
    nn_test_write_file(path_in(dir, "zero.bin"), zero_max, 4);
    expect_tokenizer("max_token_length 0", path_in(dir, "zero.bin"),
                     "'max_token_length' = 0 is out of range", NULL);
    int32_t neg[3] = {8, 0, -1};
    nn_test_write_file(path_in(dir, "neg.bin"), neg, sizeof neg);
    expect_tokenizer("negative piece length", path_in(dir, "neg.bin"),
                     "token 0: length -1 is negative", NULL);
    /* two tokens only */
    unsigned char two[4 + 2 * 9] = {1, 0, 0, 0};
    for (int i = 0; i < 2; i++) {
        two[4 + 9 * i + 4] = 1;
        two[4 + 9 * i + 8] = (unsigned char)('a' + i);
    }
    nn_test_write_file(path_in(dir, "two.bin"), two, sizeof two);
    expect_tokenizer("two tokens", path_in(dir, "two.bin"),
                     "2 tokens; a llama2.c vocabulary has at least", NULL);

    /* The real tok512.bin cut at every byte of its first three records: each cut is an error
     * (a cut at a record boundary is a shorter vocabulary, refused below three tokens). */
    char src[512];
    snprintf(src, sizeof src, "%s/tokenizers/stories260K/tok512.bin", shared);
    size_t n;
    char *img = nn_test_slurp(src, &n);
    size_t off = 4;
    for (int r = 0; r < 3; r++) {
        int32_t len;
        memcpy(&len, img + off + 4, 4);
        off += 8 + (size_t)len;
    }
    int cuts = 0, good = 0;
    for (size_t cut = 0; cut < off; cut++) {
        nn_test_write_file(path_in(dir, "cut.bin"), img, cut);
        nn_err err = {{0}};
        nn_tokenizer *t = NULL;
        int rc = nn_tokenizer_load(path_in(dir, "cut.bin"), &t, &err);
        cuts++;
        n_inputs++;
        good += rc == NN_ERR && !t && strstr(err.msg, "cut.bin");
        nn_tokenizer_free(t);
    }
    printf("  %-46s -> %d of %d are errors naming the file\n",
           "tok512.bin cut at each of its first bytes", good, cuts);
    CHECK(good == cuts, "tokenizer.bin truncations: %d of %d errors", good, cuts);
    /* three tokens: loads, but text needs byte fallback ids the vocabulary lacks */
    nn_test_write_file(path_in(dir, "three.bin"), img, off);
    nn_err err = {{0}};
    nn_tokenizer *t = NULL;
    CHECK_OK(nn_tokenizer_load(path_in(dir, "three.bin"), &t, &err), &err);
    if (t) {
        nn_ids ids = {0};
        int rc = nn_tokenizer_encode(t, "Once", 4, true, &ids, &err);
        report("encode with a 3-token llama2.c vocabulary", rc, true, err.msg,
               "byte 0x4F at offset 0 has no token: byte fallback id 82 is outside the vocabulary "
               "of 3 tokens",
               NULL);
        nn_ids_free(&ids);
        nn_tokenizer_free(t);
    }
    nn_free(img);
}

/* Text and ids given to a real tokenizer. */
static void encoding(void)
{
    printf("invalid text and ids\n");
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/gpt2", shared);
    nn_err err = {{0}};
    nn_tokenizer *t = NULL;
    CHECK_OK(nn_tokenizer_load(path, &t, &err), &err);
    if (!t)
        return;
    struct {
        const char *what, *text, *needle;
    } cases[] = {
        {"invalid byte 0xFF", "ok\xff", "text is not valid UTF-8 (byte 2: 0xFF)"},
        {"overlong NUL C0 80", "\xc0\x80", "(byte 0: 0xC0)"},
        {"UTF-16 surrogate ED A0 80", "a\xed\xa0\x80", "(byte 1: 0xED)"},
        {"code point above U+10FFFF", "\xf4\x90\x80\x80", "(byte 0: 0xF4)"},
        {"truncated 4-byte character", "\xf0\x9f\x98", "(byte 0: 0xF0)"},
        {"lone continuation byte", "\x80x", "(byte 0: 0x80)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nn_ids ids = {0};
        int rc = nn_tokenizer_encode(t, cases[i].text, strlen(cases[i].text), true, &ids, &err);
        report(cases[i].what, rc, ids.n == 0, err.msg, cases[i].needle, NULL);
        nn_ids_free(&ids);
    }
    int32_t bad_ids[][2] = {{15496, -1}, {15496, 50257}, {INT32_MAX, 0}};
    for (size_t i = 0; i < 3; i++) {
        char *text = NULL, what[64];
        snprintf(what, sizeof what, "decode id %d", bad_ids[i][i == 2 ? 0 : 1]);
        int rc = nn_tokenizer_decode(t, bad_ids[i], 2, false, &text, &err);
        report(what, rc, text == NULL, err.msg, "is outside the vocabulary (50257 tokens)", NULL);
        nn_free(text);
    }
    nn_tokenizer_free(t);
}

/* ---- .npy vectors ------------------------------------------------------------------------------
 */

static size_t npy(char *out, const char *descr, const char *shape, const void *data, size_t n)
{
    char h[256];
    int len = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
                       shape);
    int pad = (64 - (10 + len + 1) % 64) % 64;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (char)((len + pad + 1) & 0xff);
    out[9] = (char)((len + pad + 1) >> 8);
    memcpy(out + 10, h, (size_t)len);
    memset(out + 10 + len, ' ', (size_t)pad);
    out[10 + len + pad] = '\n';
    memcpy(out + 11 + len + pad, data, n);
    return (size_t)(11 + len + pad) + n;
}

static void npys(void)
{
    printf(".npy vectors\n");
    const char *dir = fresh_dir("npy");
    char img[512];
    float f4[3] = {1, 2, 3}, nan4[2] = {1, 0.0f / 0.0f};
    double big[1] = {1e300};
    struct {
        const char *what, *descr, *shape, *needle;
        const void *data;
        size_t n;
    } cases[] = {
        {"shape 99999999999999999999", "<f4", "(99999999999999999999,)", "data bytes for", f4, 12},
        {"shape (0,)", "<f4", "(0,)", "0 elements", f4, 0},
        {"float64 1e300 (no float32)", "<f8", "(1,)", "element 0 is not finite", big, 8},
        {"NaN element", "<f4", "(2,)", "element 1 is not finite", nan4, 8},
        {"big-endian float32", ">f4", "(3,)", "dtype '>f4' is not supported", f4, 12},
        {"shape (2, 3)", "<f4", "(2, 3)", "shape must be (d,) or (1, d)", f4, 12},
        {"shape with a letter", "<f4", "(3x,)", "malformed shape", f4, 12},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "v%zu.npy", i);
        nn_test_write_file(path_in(dir, name), img,
                           npy(img, cases[i].descr, cases[i].shape, cases[i].data, cases[i].n));
        expect_npy(cases[i].what, path_in(dir, name), cases[i].needle);
    }
    size_t good_len = npy(img, "<f4", "(3,)", f4, 12);
    /* fortran_order True, version 9, a 70000-byte header, a header that ends inside 'descr' */
    char alt[512];
    memcpy(alt, img, good_len);
    memcpy(strstr(alt + 10, "False"), "True ", 5);
    nn_test_write_file(path_in(dir, "fortran.npy"), alt, good_len);
    expect_npy("fortran_order True", path_in(dir, "fortran.npy"), "fortran_order must be False");
    memcpy(alt, img, good_len);
    alt[6] = 9;
    nn_test_write_file(path_in(dir, "v9.npy"), alt, good_len);
    expect_npy("format version 9", path_in(dir, "v9.npy"),
               ".npy format version 9 is not supported");
    size_t big_n = 12 + 70000;
    char *big_img = calloc(1, big_n);
    memcpy(big_img, "\x93NUMPY\x02\x00\x70\x11\x01\x00", 12);
    nn_test_write_file(path_in(dir, "bighdr.npy"), big_img, big_n);
    free(big_img);
    expect_npy("header of 70000 bytes", path_in(dir, "bighdr.npy"),
               "header length 70000 exceeds the limit");
    const char end_in_descr[] = "\x93NUMPY\x01\x00\x0c\x00{'descr': '<";
    nn_test_write_file(path_in(dir, "cutdescr.npy"), end_in_descr, sizeof end_in_descr - 1);
    expect_npy("header ending inside 'descr'", path_in(dir, "cutdescr.npy"),
               "lacks descr, fortran_order or shape");
    mkdir(path_in(dir, "dir.npy"), 0755);
    expect_npy("a directory named v.npy", path_in(dir, "dir.npy"), "dir.npy: not a regular file");
    nn_test_write_file(path_in(dir, "empty.npy"), "", 0);
    expect_npy("empty .npy", path_in(dir, "empty.npy"), "not a .npy file (bad magic)");
    /* every cut of a valid file */
    int cuts = 0, good = 0;
    for (size_t cut = 0; cut < good_len; cut++) {
        nn_test_write_file(path_in(dir, "cut.npy"), img, cut);
        float *v = NULL;
        size_t n;
        nn_err err = {{0}};
        int rc = nn_npy_read_vector(path_in(dir, "cut.npy"), &v, &n, &err);
        cuts++;
        n_inputs++;
        good += rc == NN_ERR && !v && strstr(err.msg, "cut.npy");
        nn_free(v);
    }
    printf("  %-46s -> %d of %d are errors naming the file\n", "a valid .npy cut at every byte",
           good, cuts);
    CHECK(good == cuts, ".npy truncations: %d of %d errors", good, cuts);
}

/* ---- Job files ---------------------------------------------------------------------------------
 */

static void jobs(void)
{
    printf("job files\n");
#define JOB_HEAD "{\"model\": \"m\", \"output\": \"o.h5\", "
#define JOB_OPS "\"operations\": [{\"op\": \"generate\", \"max_new_tokens\": 2}]"
    struct {
        const char *what, *json, *needle;
    } cases[] = {
        {"empty job file", "", "malformed JSON near byte 0"},
        {"text after the job", JOB_HEAD "\"dataset\": {\"path\": \"p\"}, " JOB_OPS "}\n}",
         "malformed JSON near byte"},
        {"duplicate key 'output'",
         JOB_HEAD "\"dataset\": {\"path\": \"p\"}, " JOB_OPS ", \"output\": \"other.h5\"}",
         "key 'output' appears twice"},
        {"\\u0000 cutting a path short",
         JOB_HEAD "\"dataset\": {\"path\": \"p.jsonl\\u0000.txt\"}, " JOB_OPS "}",
         "a string holds \\u0000"},
        {"layers [1e300]",
         JOB_HEAD "\"dataset\": {\"path\": \"p\"}, \"operations\": [{\"op\": \"collect\", "
                  "\"hooks\": [\"logits\"], \"layers\": [1e300]}]}",
         "layers[0] is not a layer index"},
        {"positions [1e12]",
         JOB_HEAD "\"dataset\": {\"path\": \"p\"}, \"operations\": [{\"op\": \"collect\", "
                  "\"hooks\": [\"logits\"], \"positions\": [1e12]}]}",
         "positions[0] is not an integer index"},
        {"temperature \"hot\"",
         JOB_HEAD "\"dataset\": {\"path\": \"p\"}, \"operations\": [{\"op\": \"generate\", "
                  "\"max_new_tokens\": 2, \"temperature\": \"hot\"}]}",
         "field 'temperature' must be a finite number"},
        {"max_line_bytes 0",
         JOB_HEAD "\"dataset\": {\"path\": \"p\", \"max_line_bytes\": 0}, " JOB_OPS "}",
         "field 'max_line_bytes' = 0 is out of range"},
        {"batch_tokens -1",
         JOB_HEAD "\"dataset\": {\"path\": \"p\"}, " JOB_OPS ", \"batch_tokens\": -1}",
         "field 'batch_tokens' = -1 is out of range"},
        {"operations an object",
         JOB_HEAD "\"dataset\": {\"path\": \"p\"}, \"operations\": {\"op\": \"generate\"}}",
         "field 'operations' must be a non-empty list"},
        {"contrast holding a number",
         JOB_HEAD "\"dataset\": {\"path\": \"p\"}, \"operations\": [{\"op\": \"steer\", "
                  "\"contrast\": [[\"a\"], [\"b\", 3]], \"layers\": [0], \"factor\": 1}]}",
         "contrast[1] holds a non-string"},
        {"second op bad after a good one",
         JOB_HEAD "\"dataset\": {\"path\": \"p\"}, \"operations\": [{\"op\": \"collect\", "
                  "\"hooks\": [\"logits\"], \"layers\": [0, 1]}, {\"op\": \"collect\", \"hooks\": "
                  "[\"logits\"], \"layers\": [2], \"positions\": []}]}",
         "operations[1] (collect): field 'positions' must be"},
    };
    const char *dir = fresh_dir("jobs");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "j%zu.json", i);
        write_str(path_in(dir, name), cases[i].json);
        expect_job(cases[i].what, path_in(dir, name), cases[i].needle);
    }
    char *deep = nested("model", 3000);
    write_str(path_in(dir, "deep.json"), deep);
    free(deep);
    expect_job("job nested 3000 deep", path_in(dir, "deep.json"), "deep.json: malformed JSON");
    mkdir(path_in(dir, "dir.json"), 0755);
    expect_job("a directory as the job file", path_in(dir, "dir.json"),
               "dir.json: not a regular file");
    if (can_test_permissions()) {
        write_str(path_in(dir, "locked.json"), "{}");
        chmod(path_in(dir, "locked.json"), 0);
        expect_job("unreadable job file", path_in(dir, "locked.json"), "Permission denied");
    }
}

/* ---- Datasets ----------------------------------------------------------------------------------
 */

static void datasets(void)
{
    printf("datasets\n");
    const char *dir = fresh_dir("data");
    struct {
        const char *what, *name, *text, *targets, *needle, *needle2;
        size_t max_line;
    } cases[] = {
        {"line 2 of 64 bytes, limit 63", "long.jsonl",
         "{\"text\": \"short\"}\n{\"text\": "
         "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n",
         NULL, "long.jsonl:2: line of 64 bytes exceeds dataset.max_line_bytes = 63", NULL, 63},
        {"empty dataset", "empty.jsonl", "", NULL, "the dataset has no prompts", NULL, 0},
        {"only blank lines", "blank.txt", "\n  \n\t\r\n", NULL,
         "blank.txt: the dataset has no prompts", NULL, 0},
        {"invalid UTF-8 in a text line", "bad.txt", "fine\nnot \xc3\x28 fine\n", NULL,
         "bad.txt:2: invalid UTF-8 at byte 5", NULL, 0},
        {"lone surrogate escape", "sur.jsonl", "{\"text\": \"a\\ud800b\"}\n", NULL,
         "sur.jsonl:1: not a JSON object", NULL, 0},
        {"\\u0000 in a prompt", "nul.jsonl", "{\"text\": \"cut\\u0000here\"}\n", NULL,
         "nul.jsonl:1: a string holds \\u0000", NULL, 0},
        {"escaped backslash then u0000 is text", "bs.jsonl",
         "{\"text\": \"fine \\\\u0000\"}\n{\"text\": 1}\n", NULL,
         "bs.jsonl:2: field 'text' missing or not a string", NULL, 0},
        {"duplicate 'text' key", "dup.jsonl", "{\"text\": \"a\", \"text\": \"b\"}\n", NULL,
         "dup.jsonl:1: key 'text' appears twice", NULL, 0},
        {"targets missing on line 3", "tg.jsonl",
         "{\"text\": \"a\", \"targets\": {}}\n\n{\"text\": \"b\"}\n", "targets",
         "tg.jsonl:3: field 'targets' (the targets) is missing", NULL, 0},
        {"a JSON array line", "arr.jsonl", "[\"text\"]\n", NULL, "arr.jsonl:1: not a JSON object",
         NULL, 0},
        {"two objects on one line", "two.jsonl", "{\"text\": \"a\"} {\"text\": \"b\"}\n", NULL,
         "two.jsonl:1: not a JSON object: malformed near byte 15 of the line", NULL, 0},
        {"a text dataset asked for targets", "t.txt", "x\n", "targets",
         "a plain-text dataset has no targets", NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_str(path_in(dir, cases[i].name), cases[i].text);
        expect_dataset(cases[i].what, path_in(dir, cases[i].name), NULL, cases[i].targets,
                       cases[i].max_line, cases[i].needle, cases[i].needle2);
    }
    write_str(path_in(dir, "x.csv"), "a\n");
    expect_dataset("format 'csv'", path_in(dir, "x.csv"), "csv", NULL, 0,
                   "dataset format 'csv' is not jsonl or text", NULL);
    char *deep = nested("text", 2000);
    write_str(path_in(dir, "deep.jsonl"), deep);
    free(deep);
    expect_dataset("a line nested 2000 deep", path_in(dir, "deep.jsonl"), NULL, NULL, 0,
                   "deep.jsonl:1: not a JSON object", NULL);
    /* the default limit: one line of 16 MiB + 1 byte */
    size_t big = ((size_t)16 << 20) + 1;
    char *line = malloc(big);
    memset(line, 'a', big);
    nn_test_write_file(path_in(dir, "huge.txt"), line, big);
    free(line);
    expect_dataset(
        "one line of 16 MiB + 1 (the default limit)", path_in(dir, "huge.txt"), NULL, NULL, 0,
        "huge.txt:1: line of 16777217 bytes exceeds dataset.max_line_bytes = 16777216", NULL);
    unlink(path_in(dir, "huge.txt"));
    mkdir(path_in(dir, "dir.jsonl"), 0755);
    expect_dataset("a directory as the dataset", path_in(dir, "dir.jsonl"), NULL, NULL, 0,
                   "dir.jsonl: not a regular file", NULL);
    if (can_test_permissions()) {
        write_str(path_in(dir, "locked.jsonl"), "{\"text\": \"a\"}\n");
        chmod(path_in(dir, "locked.jsonl"), 0);
        expect_dataset("unreadable dataset", path_in(dir, "locked.jsonl"), NULL, NULL, 0,
                       "Permission denied", NULL);
    }
}

/* ---- The progress ledger (written by nnterp itself, read by --resume after any crash) ---------
 */

static void ledgers(void)
{
    printf("progress ledgers\n");
    const char *dir = fresh_dir("ledger");
    struct {
        const char *what, *text, *needle;
    } cases[] = {
        {"empty ledger", "", "not a ledger of this job"},
        {"torn header (no newline)", "nnterp-ledger 1 shards 4", "the header line is incomplete"},
        {"another job's shard count", "nnterp-ledger 1 shards 5\n", "(5 shards, the job plans 4)"},
        {"shard beyond the job", "nnterp-ledger 1 shards 4\nshard 4\n", "malformed line 'shard 4'"},
        {"negative shard", "nnterp-ledger 1 shards 4\nshard -1\n", "malformed line 'shard -1'"},
        {"garbage line", "nnterp-ledger 1 shards 4\nshard 1\n\x01\xff\n", "malformed line"},
    };
    bool done[4];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "l%zu", i);
        write_str(path_in(dir, name), cases[i].text);
        nn_err err = {{0}};
        int rc = nn_ledger_read(path_in(dir, name), 4, done, &err);
        report(cases[i].what, rc, true, err.msg, cases[i].needle, name);
    }
    /* a torn last line (a crash while appending) commits nothing: not an error */
    write_str(path_in(dir, "torn"), "nnterp-ledger 1 shards 4\nshard 2\nshard 3");
    nn_err err = {{0}};
    CHECK_OK(nn_ledger_read(path_in(dir, "torn"), 4, done, &err), &err);
    CHECK(done[2] && !done[3] && !done[0], "torn last line: shard 3 counted as committed");
    printf("  %-46s -> shard 2 committed, shard 3 redone\n", "torn last line");
}

int main(void)
{
    shared = nn_test_shared_dir("test_malformed");
    snprintf(tmp, sizeof tmp, "/tmp/nnterp-test-malformed-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    weights();
    safetensors();
    sharded();
    configs();
    llama2c();
    tokenizers();
    encoding();
    npys();
    jobs();
    datasets();
    ledgers();
    printf("%d malformed inputs, each an error naming its file\n", n_inputs);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmp);
    return nn_test_finish("test_malformed");
}
