/* config.json as transformers 5 writes it, and the fields of the families of 2025-26: rotary
 * parameters in `rope_parameters` (flat and per layer type), per-layer lists (layer_types,
 * mlp_only_layers, no_rope_layers), longrope, Granite's multipliers; and each malformed or
 * unsupported form refused with an error naming the field. No weights are needed. */
#include <math.h>
#include <string.h>

#include "model.h"
#include "nn_test.h"

/* A tiny model of `type`: 4 layers unless `layers` says otherwise; `extra` is appended. */
static int parse(const char *type, int layers, const char *extra, nn_config *c, nn_err *err)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"model_type\": \"%s\", \"hidden_size\": 32, \"num_attention_heads\": 4, "
             "\"num_key_value_heads\": 2, \"head_dim\": 8, \"num_hidden_layers\": %d, "
             "\"intermediate_size\": 64, \"vocab_size\": 300, \"max_position_embeddings\": 64%s%s}",
             type, layers, *extra ? ", " : "", extra);
    return nn_config_from_hf(json, "config.json", c, err);
}

static void accepted(void)
{
    nn_config c;
    nn_err err = {{0}};

    /* flat rope_parameters has the last word over older top-level keys */
    CHECK_OK(parse("llama", 4,
                   "\"rope_theta\": 10000, \"rope_parameters\": {\"rope_type\": \"default\", "
                   "\"rope_theta\": 500000.0}",
                   &c, &err),
             &err);
    CHECK(c.rope_theta == 500000.0 && c.rope_scaling == NN_ROPE_SCALING_NONE,
          "rope_parameters.rope_theta: got %g", c.rope_theta);
    CHECK_OK(parse("llama", 4,
                   "\"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, "
                   "\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                   "\"original_max_position_embeddings\": 8192}",
                   &c, &err),
             &err);
    CHECK(c.rope_scaling == NN_ROPE_SCALING_LLAMA3 && c.rope_factor == 8.0 &&
              c.rope_original_max_positions == 8192,
          "llama3 scaling in rope_parameters");
    CHECK_OK(parse("gpt_neox", 4,
                   "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000, "
                   "\"partial_rotary_factor\": 0.25}",
                   &c, &err),
             &err);
    CHECK(c.rotary_dim == 2, "partial_rotary_factor in rope_parameters: rotary_dim %d",
          c.rotary_dim);
    /* transformers 5 writes Qwen2-MoE's null window as 0 */
    CHECK_OK(
        parse("qwen2_moe", 4, "\"sliding_window\": 0, \"use_sliding_window\": false", &c, &err),
        &err);
    CHECK(c.sliding_window == 0 && !nn_layer_sliding(&c, 0), "sliding_window 0 is none");
    CHECK(c.qkv_bias, "qwen2_moe: q/k/v biases by default");
    CHECK_OK(parse("qwen2_moe", 4, "\"qkv_bias\": false", &c, &err), &err);
    CHECK(!c.qkv_bias, "qwen2_moe: qkv_bias false (transformers 5)");

    /* Gemma 3, transformers 5: one set per layer type, layer_types */
    CHECK_OK(parse("gemma3_text", 4,
                   "\"sliding_window\": 4, \"layer_types\": [\"sliding_attention\", "
                   "\"full_attention\", \"sliding_attention\", \"sliding_attention\"], "
                   "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", "
                   "\"factor\": 8.0, \"rope_theta\": 1000000.0}, \"sliding_attention\": "
                   "{\"rope_type\": \"default\", \"rope_theta\": 10000.0}}",
                   &c, &err),
             &err);
    CHECK(c.rope_theta == 1e6 && c.rope_scaling == NN_ROPE_SCALING_LINEAR && c.rope_factor == 8.0 &&
              c.rope_local_theta == 1e4,
          "gemma3 per-type rope: theta %g local %g", c.rope_theta, c.rope_local_theta);
    CHECK(nn_layer_sliding(&c, 0) && !nn_layer_sliding(&c, 1) && nn_layer_sliding(&c, 3),
          "gemma3 layer_types");
    /* Gemma 3 as transformers 4.5x wrote it: sliding_window_pattern 6 by default */
    CHECK_OK(parse("gemma3_text", 12,
                   "\"sliding_window\": 4, \"rope_theta\": 1000000.0, \"rope_local_base_freq\": "
                   "10000.0, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0}",
                   &c, &err),
             &err);
    int n_sliding = 0;
    for (int l = 0; l < 12; l++)
        n_sliding += nn_layer_sliding(&c, l);
    CHECK(n_sliding == 10 && !nn_layer_sliding(&c, 5) && !nn_layer_sliding(&c, 11) &&
              c.rope_local_theta == 1e4,
          "gemma3 legacy pattern: %d sliding layers", n_sliding);
    /* OLMo 3: a per-type set equal for both types needs no second table */
    CHECK_OK(parse("olmo3", 4,
                   "\"sliding_window\": 4, \"rope_parameters\": {\"full_attention\": "
                   "{\"rope_theta\": 500000.0, \"rope_type\": \"default\"}, \"rope_theta\": "
                   "500000.0, \"rope_type\": \"default\", \"sliding_attention\": {\"rope_theta\": "
                   "500000.0, \"rope_type\": \"default\"}}",
                   &c, &err),
             &err);
    CHECK(c.rope_theta == 5e5 && c.rope_local_theta == 0, "olmo3 rope");
    CHECK(nn_layer_sliding(&c, 0) && nn_layer_sliding(&c, 2) && !nn_layer_sliding(&c, 3),
          "olmo3's default pattern: three sliding layers of four");

    /* Phi-4-mini: longrope, attention factor sqrt(1 + ln(64/16) / ln(16)) */
    CHECK_OK(parse("phi3", 4,
                   "\"original_max_position_embeddings\": 16, \"rope_parameters\": {\"rope_type\": "
                   "\"longrope\", \"rope_theta\": 10000.0, \"partial_rotary_factor\": 0.75, "
                   "\"short_factor\": [1.0, 1.5, 3.0], \"long_factor\": [1.0, 2.5, 8.0], "
                   "\"original_max_position_embeddings\": 16}",
                   &c, &err),
             &err);
    CHECK(c.rope_scaling == NN_ROPE_SCALING_LONGROPE && c.rotary_dim == 6 &&
              c.rope_original_max_positions == 16 && c.rope_long_factor[2] == 8.0f &&
              fabs(c.rope_attention_factor - sqrt(1.0 + log(4.0) / log(16.0))) < 1e-7,
          "longrope: rotary %d, attention factor %g", c.rotary_dim, c.rope_attention_factor);

    /* Qwen3-MoE: mlp_only_layers combined with decoder_sparse_step */
    CHECK_OK(parse("qwen3_moe", 4,
                   "\"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 16, "
                   "\"decoder_sparse_step\": 1, \"mlp_only_layers\": [2]",
                   &c, &err),
             &err);
    CHECK(nn_layer_moe(&c, 0) && nn_layer_moe(&c, 1) && !nn_layer_moe(&c, 2) && nn_layer_moe(&c, 3),
          "mlp_only_layers [2]");
    CHECK_OK(parse("qwen3_moe", 4,
                   "\"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 16, "
                   "\"decoder_sparse_step\": 2, \"mlp_only_layers\": [3]",
                   &c, &err),
             &err);
    CHECK(!nn_layer_moe(&c, 0) && nn_layer_moe(&c, 1) && !nn_layer_moe(&c, 2) &&
              !nn_layer_moe(&c, 3),
          "decoder_sparse_step 2 and mlp_only_layers [3]");

    /* SmolLM3: every 4th layer NoPE by default; an explicit list */
    CHECK_OK(parse("smollm3", 8, "", &c, &err), &err);
    CHECK(nn_layer_rope(&c, 0) && !nn_layer_rope(&c, 3) && !nn_layer_rope(&c, 7) &&
              nn_layer_rope(&c, 6),
          "smollm3 default NoPE layers");
    CHECK_OK(parse("smollm3", 4, "\"no_rope_layers\": [0, 1, 1, 0]", &c, &err), &err);
    CHECK(!nn_layer_rope(&c, 0) && nn_layer_rope(&c, 1) && !nn_layer_rope(&c, 3),
          "smollm3 no_rope_layers");
    CHECK_OK(parse("llama", 4, "", &c, &err), &err);
    CHECK(nn_layer_rope(&c, 3), "llama: rotary on every layer");

    /* Granite */
    CHECK_OK(parse("granite", 4,
                   "\"embedding_multiplier\": 12.0, \"attention_multiplier\": 0.125, "
                   "\"residual_multiplier\": 0.22, \"logits_scaling\": 4.0",
                   &c, &err),
             &err);
    CHECK(c.emb_scale == 12.0f && c.attn_scale == 0.125f && c.residual_scale == 0.22f &&
              c.logits_divisor == 4.0f,
          "granite multipliers");
}

static void refused(void)
{
    static const struct {
        const char *type, *extra, *needle;
    } cases[] = {
        {"gemma3_text",
         "\"layer_types\": [\"sliding_attention\", \"chunked_attention\", \"full_attention\", "
         "\"full_attention\"]",
         "'layer_types[1]' = 'chunked_attention' is not supported"},
        {"qwen3", "\"layer_types\": [\"full_attention\"]", "'layer_types' must be a list of 4"},
        {"qwen3_moe", "\"num_experts\": 4, \"num_experts_per_tok\": 2, \"mlp_only_layers\": [4]",
         "'mlp_only_layers' holds a number out of range"},
        {"llama", "\"rope_parameters\": {\"rope_type\": \"dynamic\", \"factor\": 4.0}",
         "'rope_parameters.rope_type' = 'dynamic' is not supported"},
        {"llama", "\"rope_parameters\": [1]", "'rope_parameters' must be an object"},
        {"gemma3_text",
         "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\"}, "
         "\"sliding_attention\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}}",
         "'rope_parameters.sliding_attention.rope_type' = 'dynamic' is not supported"},
        {"phi3",
         "\"rope_parameters\": {\"rope_type\": \"longrope\", \"short_factor\": [1.0], "
         "\"long_factor\": [1.0, 2.0, 3.0, 4.0], \"original_max_position_embeddings\": 16}",
         "'rope_parameters.short_factor' must be a list of 4 numbers"},
        {"phi3",
         "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1, 1, 1, 1], "
         "\"long_factor\": [1, 1, 1, 1]}",
         "'original_max_position_embeddings' is missing"},
        {"gemma3_text", "\"use_bidirectional_attention\": true",
         "'use_bidirectional_attention' = true is not supported"},
        {"smollm3", "\"no_rope_layers\": [1, 2, 1, 1]", "'no_rope_layers[1]' must be 0 or 1"},
        {"granite", "\"residual_multiplier\": -1", "Granite's multipliers"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_config c;
        nn_err err = {{0}};
        int rc = parse(cases[i].type, 4, cases[i].extra, &c, &err);
        CHECK(rc == NN_ERR && strstr(err.msg, cases[i].needle) && strstr(err.msg, "config.json"),
              "%s %s: expected an error with \"%s\", got rc %d \"%s\"", cases[i].type,
              cases[i].extra, cases[i].needle, rc, err.msg);
    }
}

int main(void)
{
    accepted();
    refused();
    return nn_test_finish("test_config_ext");
}
