/* config.json fields that came with the families of 2025-26 and with transformers 5: rotary
 * parameters written as `rope_parameters` (flat, or one set per layer type), layers described one
 * by one (`layer_types`, `mlp_only_layers`, `no_rope_layers`), and each family's own fields (the
 * rows' configure hooks). Internal to the engine: model.c calls these while parsing a config. */
#ifndef NN_CONFIG_EXT_H
#define NN_CONFIG_EXT_H

#include "model.h"
#include "nn_json.h"

/* Rotary embedding of a NN_POS_ROPE family: rope_theta, the rotary dims (partial_rotary_factor,
 * rotary_pct, rotary_dim), the scaling (linear, llama3, longrope) and Gemma 3's local theta, read
 * from `rope_parameters` when the config has it (transformers 5), else from the older top-level
 * `rope_theta` / `rope_scaling`. Needs head_dim, max_positions. */
int nn_config_rope(const cJSON *root, const char *path, nn_config *c, nn_err *err);

/* `layer_types` (a string per layer: sliding_attention or full_attention; anything else is
 * refused, naming it) and `mlp_only_layers` (layer indices with a dense MLP). Needs n_layers. */
int nn_config_layer_lists(const cJSON *root, const char *path, nn_config *c, nn_err *err);

/* The rows' configure_block hooks: the block shape (kv heads, qkv layout, parallel). */
int nn_configure_gpt_bigcode(const cJSON *root, const char *path, nn_config *c, nn_err *err);
int nn_configure_falcon(const cJSON *root, const char *path, nn_config *c, nn_err *err);
int nn_configure_opt(const cJSON *root, const char *path, nn_config *c, nn_err *err);

/* The rows' configure hooks. */
int nn_configure_gemma3(const cJSON *root, const char *path, nn_config *c, nn_err *err);
int nn_configure_smollm3(const cJSON *root, const char *path, nn_config *c, nn_err *err);
int nn_configure_granite(const cJSON *root, const char *path, nn_config *c, nn_err *err);
int nn_configure_gpt_oss(const cJSON *root, const char *path, nn_config *c, nn_err *err);
int nn_configure_deepseek(const cJSON *root, const char *path, nn_config *c, nn_err *err);

#endif
