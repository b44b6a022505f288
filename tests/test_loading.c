/* Checkpoint loading: dtypes, hub-cache resolution, and bad input. Every bad input must give a
 * clear error naming the file and the field — never a crash (this test also runs under ASan). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fingerprint.h"
#include "forward.h"
#include "nn_test.h"

static char tmp[256];

static void write_file(const char *dir, const char *name, const void *data, size_t n)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    nn_test_write_file(path, data, n);
}

/* A model directory holding config and a safetensors image built from header + data_len zeros. */
static void make_st_dir(const char *dir, const char *config, const char *header, size_t data_len,
                        int64_t declared_len)
{
    mkdir(dir, 0755);
    write_file(dir, "config.json", config, strlen(config));
    size_t h = strlen(header), n = 8 + h + data_len;
    unsigned char *img = calloc(1, n);
    uint64_t len = declared_len >= 0 ? (uint64_t)declared_len : h;
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)(len >> (8 * i));
    memcpy(img + 8, header, h);
    write_file(dir, "model.safetensors", img, n);
    free(img);
}

/* Loading dir must fail with a message containing each of the needles. */
static void expect_load_error(const char *what, const char *dir, const char *needle1,
                              const char *needle2)
{
    nn_err err = {{0}};
    nn_model *m = NULL;
    int rc = nn_model_load(dir, &m, &err);
    bool ok = rc == NN_ERR && m == NULL && strstr(err.msg, needle1) &&
              (!needle2 || strstr(err.msg, needle2));
    printf("  %-44s -> %s\n", what, err.msg);
    CHECK(ok, "%s: expected an error with '%s'%s%s, got rc %d: '%s'", what, needle1,
          needle2 ? " and " : "", needle2 ? needle2 : "", rc, err.msg);
    nn_model_free(m);
}

static const char *tiny_gpt2_config =
    "{\"model_type\": \"gpt2\", \"n_embd\": 4, \"n_head\": 2, \"n_layer\": 1, \"n_positions\": 8,"
    " \"vocab_size\": 5}";

static void bad_safetensors(void)
{
    char dir[512];
    printf("malformed safetensors\n");
    snprintf(dir, sizeof dir, "%s/overlap", tmp);
    make_st_dir(dir, tiny_gpt2_config,
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}",
                24, -1);
    expect_load_error("overlapping data_offsets", dir, "overlap", "model.safetensors");

    snprintf(dir, sizeof dir, "%s/out_of_range", tmp);
    make_st_dir(dir, tiny_gpt2_config,
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [16, 32]}}",
                20, -1);
    expect_load_error("data_offsets past the end", dir, "'b'", "run past the data section");

    snprintf(dir, sizeof dir, "%s/huge_header", tmp);
    make_st_dir(dir, tiny_gpt2_config, "{}", 0, (int64_t)1 << 50);
    expect_load_error("huge declared header length", dir, "header length", "model.safetensors");

    snprintf(dir, sizeof dir, "%s/header_past_end", tmp);
    make_st_dir(dir, tiny_gpt2_config, "{}", 0, 4096);
    expect_load_error("header length past the end", dir, "past the end of the file", NULL);

    snprintf(dir, sizeof dir, "%s/size_mismatch", tmp);
    make_st_dir(dir, tiny_gpt2_config,
                "{\"a\": {\"dtype\": \"F16\", \"shape\": [4, 4], \"data_offsets\": [0, 16]}}", 16,
                -1);
    expect_load_error("shape x dtype != byte range", dir, "'a'", "needs 32");

    snprintf(dir, sizeof dir, "%s/bad_dtype", tmp);
    make_st_dir(dir, tiny_gpt2_config,
                "{\"a\": {\"dtype\": \"F8_E9\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4, -1);
    expect_load_error("unknown dtype", dir, "unsupported dtype 'F8_E9'", NULL);

    snprintf(dir, sizeof dir, "%s/overflow", tmp);
    make_st_dir(dir, tiny_gpt2_config,
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296],"
                " \"data_offsets\": [0, 4]}}",
                4, -1);
    expect_load_error("shape product overflows", dir, "overflows", "'a'");

    snprintf(dir, sizeof dir, "%s/not_json", tmp);
    make_st_dir(dir, tiny_gpt2_config, "{\"a\": [", 4, -1);
    expect_load_error("header not JSON", dir, "header is not a JSON object", NULL);

    snprintf(dir, sizeof dir, "%s/duplicate", tmp);
    make_st_dir(dir, tiny_gpt2_config,
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                8, -1);
    expect_load_error("duplicate tensor name", dir, "'a' appears twice", NULL);

    snprintf(dir, sizeof dir, "%s/missing_tensor", tmp);
    make_st_dir(dir, tiny_gpt2_config,
                "{\"transformer.wte.weight\": {\"dtype\": \"F32\", \"shape\": [5, 4],"
                " \"data_offsets\": [0, 80]}}",
                80, -1);
    expect_load_error("missing tensor", dir, "tensor 'transformer.wpe.weight' is missing", NULL);

    snprintf(dir, sizeof dir, "%s/wrong_shape", tmp);
    make_st_dir(dir, tiny_gpt2_config,
                "{\"transformer.wte.weight\": {\"dtype\": \"F32\", \"shape\": [4, 5],"
                " \"data_offsets\": [0, 80]}}",
                80, -1);
    expect_load_error("tensor of the wrong shape", dir, "has shape [4, 5], expected [5, 4]", NULL);

    snprintf(dir, sizeof dir, "%s/short", tmp);
    mkdir(dir, 0755);
    write_file(dir, "config.json", tiny_gpt2_config, strlen(tiny_gpt2_config));
    write_file(dir, "model.safetensors", "abc", 3);
    expect_load_error("3-byte file", dir, "too short", NULL);

    snprintf(dir, sizeof dir, "%s/no_weights", tmp);
    mkdir(dir, 0755);
    write_file(dir, "config.json", tiny_gpt2_config, strlen(tiny_gpt2_config));
    expect_load_error("no weights file", dir, "no model.safetensors", NULL);

    snprintf(dir, sizeof dir, "%s/dir_as_file", tmp);
    mkdir(dir, 0755);
    write_file(dir, "config.json", tiny_gpt2_config, strlen(tiny_gpt2_config));
    char sub[600];
    snprintf(sub, sizeof sub, "%s/model.safetensors", dir);
    mkdir(sub, 0755);
    expect_load_error("directory where a file belongs", dir, "no model.safetensors", NULL);
}

static void truncations(const char *shared)
{
    printf("truncated real checkpoint\n");
    char src[512], dir[512];
    snprintf(src, sizeof src, "%s/reference/tiny/gpt2/model-f32/model.safetensors", shared);
    size_t n;
    char *img = nn_test_slurp(src, &n);
    char *cfg_path = NULL;
    nn_err err;
    cfg_path = nn_path_join(shared, "reference/tiny/gpt2/model-f32/config.json", &err);
    size_t cn;
    char *cfg = nn_test_slurp(cfg_path, &cn);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = (h << 8) | (unsigned char)img[i];
    size_t cuts[] = {0,
                     4,
                     7,
                     8,
                     9,
                     8 + (size_t)h / 2,
                     8 + (size_t)h - 1,
                     8 + (size_t)h,
                     8 + (size_t)h + 100,
                     n / 2,
                     n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(dir, sizeof dir, "%s/trunc%zu", tmp, i);
        mkdir(dir, 0755);
        write_file(dir, "config.json", cfg, cn);
        write_file(dir, "model.safetensors", img, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cuts[i], n);
        expect_load_error(what, dir, "model.safetensors", NULL);
    }
    free(img);
    free(cfg);
    nn_free(cfg_path);
}

static void bad_configs(const char *shared)
{
    printf("malformed config.json\n");
    char dir[512];
    struct {
        const char *what, *config, *needle;
    } cases[] = {
        {"malformed JSON", "{\"model_type\": \"gpt2\",", "malformed JSON"},
        {"not an object", "[1, 2]", "expected an object"},
        {"unknown model_type", "{\"model_type\": \"rwkv\"}", "model_type 'rwkv' is not supported"},
        {"missing model_type", "{\"n_embd\": 4}", "'model_type' is missing"},
        {"missing hidden_size", "{\"model_type\": \"llama\"}", "'hidden_size' is missing"},
        {"string where a number belongs",
         "{\"model_type\": \"gpt2\", \"n_embd\": \"64\", \"n_head\": 2}",
         "'n_embd' must be an integer"},
        {"negative size", "{\"model_type\": \"gpt2\", \"n_embd\": -4}",
         "'n_embd' = -4 is out of range"},
        {"heads not dividing width",
         "{\"model_type\": \"gpt2\", \"n_embd\": 10, \"n_head\": 3, \"n_layer\": 1, "
         "\"n_positions\": 8, \"vocab_size\": 5}",
         "not a multiple of n_head"},
        {"unsupported rope_scaling",
         "{\"model_type\": \"llama\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
         "\"num_hidden_layers\": 1, \"max_position_embeddings\": 8, \"vocab_size\": 5, "
         "\"intermediate_size\": 8, \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2}}",
         "'rope_scaling.rope_type' = 'dynamic' is not supported"},
        {"quantized checkpoint (DeepSeek-V3's FP8)",
         "{\"model_type\": \"llama\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
         "\"num_hidden_layers\": 1, \"max_position_embeddings\": 8, \"vocab_size\": 5, "
         "\"intermediate_size\": 8, \"quantization_config\": {\"quant_method\": \"fp8\"}}",
         "'quantization_config' (quant_method 'fp8') is not supported"},
        {"MXFP4 outside gpt-oss's experts",
         "{\"model_type\": \"mixtral\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
         "\"num_hidden_layers\": 1, \"max_position_embeddings\": 8, \"vocab_size\": 5, "
         "\"intermediate_size\": 8, \"quantization_config\": {\"quant_method\": \"mxfp4\"}}",
         "'quantization_config' (quant_method 'mxfp4') is not supported"},
        {"MLA with grouped kv heads",
         "{\"model_type\": \"deepseek_v3\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
         "\"num_key_value_heads\": 1, \"num_hidden_layers\": 1, \"max_position_embeddings\": 8, "
         "\"vocab_size\": 5, \"intermediate_size\": 8, \"kv_lora_rank\": 4, "
         "\"qk_nope_head_dim\": 2, \"qk_rope_head_dim\": 2, \"v_head_dim\": 2}",
         "'num_key_value_heads' = 1 != num_attention_heads 2 is not supported"},
        {"expert groups not dividing the experts",
         "{\"model_type\": \"deepseek_v3\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
         "\"num_hidden_layers\": 1, \"max_position_embeddings\": 8, \"vocab_size\": 5, "
         "\"intermediate_size\": 8, \"kv_lora_rank\": 4, \"qk_nope_head_dim\": 2, "
         "\"qk_rope_head_dim\": 2, \"v_head_dim\": 2, \"n_routed_experts\": 6, "
         "\"num_experts_per_tok\": 2, \"n_group\": 4, \"topk_group\": 2}",
         "the groups must divide the experts evenly"},
        {"unsupported activation",
         "{\"model_type\": \"llama\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
         "\"num_hidden_layers\": 1, \"max_position_embeddings\": 8, \"vocab_size\": 5, "
         "\"intermediate_size\": 8, \"hidden_act\": \"mish\"}",
         "'hidden_act' = 'mish' is not supported"},
        {"kv heads not dividing heads",
         "{\"model_type\": \"mistral\", \"hidden_size\": 12, \"num_attention_heads\": 3, "
         "\"num_key_value_heads\": 2, \"num_hidden_layers\": 1, \"max_position_embeddings\": 8, "
         "\"vocab_size\": 5, \"intermediate_size\": 8}",
         "not a multiple of num_key_value_heads"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(dir, sizeof dir, "%s/config%zu", tmp, i);
        mkdir(dir, 0755);
        write_file(dir, "config.json", cases[i].config, strlen(cases[i].config));
        expect_load_error(cases[i].what, dir, cases[i].needle, "config.json");
    }
    snprintf(dir, sizeof dir, "%s/no_config", tmp);
    mkdir(dir, 0755);
    expect_load_error("missing config.json", dir, "config.json", "cannot open");
    expect_load_error("missing model path", "/nonexistent/model", "no such file or directory",
                      NULL);
}

static void bad_llama2c(const char *shared)
{
    printf("malformed llama2.c checkpoints\n");
    char src[512], path[512];
    snprintf(src, sizeof src, "%s/models/stories260K/stories260K.bin", shared);
    size_t n;
    char *img = nn_test_slurp(src, &n);
    size_t cuts[] = {0, 10, 28, 1000, n - 4};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(path, sizeof path, "trunc%zu.bin", i);
        write_file(tmp, path, img, cuts[i]);
        snprintf(path, sizeof path, "%s/trunc%zu.bin", tmp, i);
        expect_load_error("truncated llama2.c .bin", path, "trunc", NULL);
    }
    int32_t bad = -7;
    memcpy(img + 8, &bad, 4); /* n_layers */
    write_file(tmp, "neg.bin", img, n);
    snprintf(path, sizeof path, "%s/neg.bin", tmp);
    expect_load_error("negative n_layers", path, "'n_layers' = -7 is out of range", NULL);
    free(img);
}

static void bad_sharded(const char *shared)
{
    printf("malformed sharded index\n");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/traversal", tmp);
    mkdir(dir, 0755);
    write_file(dir, "config.json", tiny_gpt2_config, strlen(tiny_gpt2_config));
    const char *index = "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}";
    write_file(dir, "model.safetensors.index.json", index, strlen(index));
    expect_load_error("shard path escaping the directory", dir, "not a plain file name", NULL);
    snprintf(dir, sizeof dir, "%s/missing_shard", tmp);
    mkdir(dir, 0755);
    write_file(dir, "config.json", tiny_gpt2_config, strlen(tiny_gpt2_config));
    index = "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\"}}";
    write_file(dir, "model.safetensors.index.json", index, strlen(index));
    expect_load_error("missing shard", dir, "model-00001-of-00002.safetensors", "cannot open");
}

/* F16 and BF16 weights stay stored as halves, and read as the exact float32 values of them. */
static void half_weights(const char *shared)
{
    printf("half-precision weights\n");
    const char *variants[] = {"model-f16", "model-bf16"};
    for (int v = 0; v < 2; v++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/reference/tiny/llama_gqa/model-f32", shared);
        snprintf(b, sizeof b, "%s/reference/tiny/llama_gqa/%s", shared, variants[v]);
        nn_err err = {{0}};
        nn_model *full = NULL, *half = NULL;
        CHECK_OK(nn_model_load(a, &full, &err), &err);
        CHECK_OK(nn_model_load(b, &half, &err), &err);
        if (!full || !half)
            return;
        size_t count = 0, mismatches = 0;
        const nn_layer *x = &full->layers[1], *y = &half->layers[1];
        const nn_linear *pairs[][2] = {{&x->q, &y->q}, {&x->k, &y->k}, {&x->down, &y->down}};
        for (size_t p = 0; p < 3; p++) {
            size_t n = (size_t)pairs[p][0]->n_in * pairs[p][0]->n_out;
            for (size_t i = 0; i < n; i++, count++) {
                float w = nn_linear_at(pairs[p][0], i);
                float rounded =
                    v == 0 ? nn_f16_to_f32(nn_f32_to_f16(w)) : nn_bf16_to_f32(nn_f32_to_bf16(w));
                mismatches += rounded != nn_linear_at(pairs[p][1], i);
            }
        }
        printf("  %s: %zu weights, %zu differ from the rounded float32 weights\n", variants[v],
               count, mismatches);
        CHECK(mismatches == 0, "%s: %zu weights are not the rounded float32 values", variants[v],
              mismatches);
        nn_model_free(full);
        nn_model_free(half);
    }
}

static void hub_cache(const char *shared)
{
    printf("Hugging Face cache ids\n");
    char path[1024], target[1024];
    snprintf(path, sizeof path, "%s/hub/models--tiny--llama/snapshots", tmp);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/hub/models--tiny--llama/refs %s", tmp, path);
    CHECK(system(cmd) == 0, "mkdir failed");
    snprintf(target, sizeof target, "%s/reference/tiny/llama/model-f32", shared);
    snprintf(path, sizeof path, "%s/hub/models--tiny--llama/snapshots/0123abcd", tmp);
    CHECK(symlink(target, path) == 0, "symlink failed");
    snprintf(path, sizeof path, "%s/hub/models--tiny--llama/refs", tmp);
    write_file(path, "main", "0123abcd\n", 9);
    snprintf(path, sizeof path, "%s/hub", tmp);
    setenv("HF_HUB_CACHE", path, 1);
    nn_err err = {{0}};
    nn_model *m = NULL;
    CHECK_OK(nn_model_load("tiny/llama", &m, &err), &err);
    CHECK(m && m->cfg.n_layers == 2, "hub id resolved to the wrong model");
    printf("  tiny/llama -> %s\n", m ? m->source : "(failed)");
    nn_model_free(m);
    expect_load_error("id absent from the cache", "meta-llama/Llama-3.2-1B",
                      "models--meta-llama--Llama-3.2-1B", "HF_HUB_CACHE");
    unsetenv("HF_HUB_CACHE");
}

static void bad_run_inputs(const char *shared)
{
    printf("bad forward inputs\n");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/reference/tiny/gpt2/model-f32", shared);
    nn_err err = {{0}};
    nn_model *m = NULL;
    CHECK_OK(nn_model_load(dir, &m, &err), &err);
    if (!m)
        return;
    nn_state *st = NULL;
    nn_state_params sp = {.max_tokens = 100, .max_seqs = 2};
    CHECK_OK(nn_state_init(&st, m, &sp, &err), &err);
    int32_t toks[100] = {5, 301, 7};
    int off[2] = {0, 3};
    nn_batch b = {.tokens = toks, .n_tokens = 3, .n_seqs = 1, .offsets = off};
    int rc = nn_forward(m, st, &b, NULL, &err);
    printf("  %-44s -> %s\n", "token id 301 with vocab_size 301", err.msg);
    CHECK(rc == NN_ERR && strstr(err.msg, "token id 301 at position 1"), "bad token: %s", err.msg);
    toks[1] = 1;
    int off2[2] = {0, 65};
    nn_batch longb = {.tokens = toks, .n_tokens = 65, .n_seqs = 1, .offsets = off2};
    rc = nn_forward(m, st, &longb, NULL, &err);
    printf("  %-44s -> %s\n", "65 tokens, context 64", err.msg);
    CHECK(rc == NN_ERR && strstr(err.msg, "context of 64"), "too long: %s", err.msg);

    nn_hookset hs;
    CHECK_OK(nn_hookset_init(&hs, m->cfg.n_layers, &err), &err);
    struct {
        const char *name, *needle;
    } names[] = {{"layers_output.2", "layer 2 is out of range"},
                 {"layers_output.-3", "layer -3 is out of range"},
                 {"layers_output.x", "not an integer"},
                 {"mlp_output.0", "unknown hook point 'mlp_output.0'"},
                 {"logits.0", "takes no layer"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        rc = nn_hookset_add_name(&hs, names[i].name, NULL, NULL, &err);
        printf("  %-44s -> %s\n", names[i].name, err.msg);
        CHECK(rc == NN_ERR && strstr(err.msg, names[i].needle), "%s: %s", names[i].name, err.msg);
    }
    nn_hookset_free(&hs);
    const char *specs[] = {"2", "-3", "0:5", "a", "", "1:0", "0:2:0"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        int *layers = NULL, n = 0;
        rc = nn_layers_parse(specs[i], m->cfg.n_layers, &layers, &n, &err);
        printf("  layer spec %-33s -> %s\n", specs[i], err.msg);
        CHECK(rc == NN_ERR && layers == NULL, "layer spec '%s' accepted", specs[i]);
    }
    int *layers = NULL, n = 0;
    CHECK_OK(nn_layers_parse("0:12:2", 12, &layers, &n, &err), &err);
    CHECK(n == 6 && layers[5] == 10, "0:12:2 parsed wrong");
    nn_free(layers);
    CHECK_OK(nn_layers_parse("-1,0,0", 12, &layers, &n, &err), &err);
    CHECK(n == 2 && layers[0] == 0 && layers[1] == 11, "-1,0,0 parsed wrong");
    nn_free(layers);
    nn_state_free(st);
    nn_model_free(m);
}

/* The weights fingerprint hashes a file window by window (dropping each from the resident set):
 * it must equal the one-pass hash of the same bytes, across a window's edge and for odd tails. */
static void fingerprint_windows(void)
{
    size_t sizes[] = {0, 45, ((size_t)64 << 20) + 45};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        unsigned char *buf = malloc(n ? n : 1);
        uint64_t x = 88172645463325252ull;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (unsigned char)x;
        }
        char path[600], got[64], want[64];
        snprintf(path, sizeof path, "%s/fingerprint.bin", tmp);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(buf, 1, n, f) == n && fclose(f) == 0, "write %s", path);
        nn_err err = {0};
        CHECK_OK(nn_file_fingerprint(path, got, sizeof got, &err), &err);
        snprintf(want, sizeof want, "%zu:%016llx", n, (unsigned long long)nn_hash64(buf, n, 0));
        CHECK(!strcmp(got, want), "fingerprint of %zu bytes: %s, one-pass hash %s", n, got, want);
        free(buf);
        unlink(path);
    }
}

int main(void)
{
    const char *shared = nn_test_shared_dir("test_loading");
    snprintf(tmp, sizeof tmp, "/tmp/nnterp-test-loading-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    fingerprint_windows();
    bad_safetensors();
    truncations(shared);
    bad_configs(shared);
    bad_llama2c(shared);
    bad_sharded(shared);
    half_weights(shared);
    hub_cache(shared);
    bad_run_inputs(shared);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmp);
    return nn_test_finish("test_loading");
}
