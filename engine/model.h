/* A loaded transformer: its configuration (the numbers), its architecture row (the shape of the
 * math), and its weights: matrices and embeddings are views into the memory-mapped checkpoint in
 * their stored dtype (F32, F16 or BF16; a copy only where the file's data is misaligned), norms,
 * biases and learned positions float32 copies (small).
 *
 * Families differ only through nn_arch (a row of a table) and a map of Hugging Face tensor names;
 * there is one forward pass for all of them. */
#ifndef NN_MODEL_H
#define NN_MODEL_H

#include "gemm_bf16.h"
#include "nn_base.h"
#include "safetensors.h"

typedef enum { NN_NORM_LAYERNORM, NN_NORM_RMSNORM } nn_norm_kind;
typedef enum { NN_ACT_GELU_TANH, NN_ACT_GELU, NN_ACT_SILU, NN_ACT_RELU } nn_activation;
typedef enum { NN_POS_LEARNED, NN_POS_ROPE, NN_POS_ALIBI } nn_pos_kind;
typedef enum {
    NN_ROPE_SCALING_NONE,
    NN_ROPE_SCALING_LINEAR,
    NN_ROPE_SCALING_LLAMA3,
    NN_ROPE_SCALING_LONGROPE, /* Phi-3 / Phi-4: per-frequency short and long factors */
    NN_ROPE_SCALING_YARN      /* gpt-oss, DeepSeek-V3 */
} nn_rope_scaling;
/* The most experts a group-limited (DeepSeek-V3) router may have (the real model has 256). */
#define NN_MAX_GROUPED_EXPERTS 1024
/* How a MoE router turns its logits into expert choices and weights (see moe_block). */
typedef enum {
    NN_ROUTER_SOFTMAX,        /* softmax over experts, top-k (optionally renormalised) */
    NN_ROUTER_SIGMOID_GROUPED /* DeepSeek-V3: sigmoid, group-limited top-k on score + bias */
} nn_router_kind;
/* Where q, k and v sit in a fused projection's output (E = head_dim, H query heads, G kv heads). */
typedef enum {
    NN_QKV_BLOCKS,   /* [q (H*E) | k (G*E) | v (G*E)]: GPT-2, Phi-3, GPT-BigCode multi-query */
    NN_QKV_PER_HEAD, /* for each head [q | k | v]: GPT-NeoX, Bloom, GPT-BigCode multi-head */
    NN_QKV_GROUPED   /* for each kv head [q ... q (H/G) | k | v]: Falcon */
} nn_qkv_layout;

/* One family's architecture: what is fixed by the family, not by its config. Flags that a config
 * may change (parallel blocks, biases, the qkv layout) are defaults here and final in nn_config. */
#define NN_MAX_ROPE_FACTORS 256 /* longrope factors: rotary dims / 2 */
#define NN_MAX_LAYER_LIST 1024  /* layers a config may describe one by one */
/* Per-layer kinds a config lists layer by layer (layer_types, no_rope_layers, mlp_only_layers). */
enum { NN_LAYER_SLIDING = 1, NN_LAYER_NO_ROPE = 2, NN_LAYER_DENSE = 4 };

struct cJSON;
struct nn_config;

typedef struct nn_arch {
    const char *model_type; /* config.json "model_type" */
    const char *family;     /* human name */
    nn_norm_kind norm;
    nn_pos_kind pos;
    bool gated_mlp;        /* act(gate(x)) * up(x) */
    bool rope_interleaved; /* rotate adjacent pairs (2k, 2k+1) instead of halves */
    bool linear_in_major;  /* weights stored [in, out] (GPT-2 Conv1D) */
    bool fused_qkv;        /* one fused q/k/v projection (layout: qkv_layout) */
    bool qkv_bias, o_bias, mlp_bias, norm_bias; /* defaults; config may turn on more */
    const char *notes; /* deviations from the standard pre-norm block, for `nnterp inspect` */
    /* Tensor names: "%d" stands for the layer (experts: layer, then expert); "a|b" tries a, then
     * b; the loader appends ".weight" / ".bias". */
    const char *prefix; /* tried with and without (GPT-2 hub checkpoints omit "transformer.") */
    const char *tok_emb, *pos_emb, *final_norm, *head;
    const char *attn_norm, *mlp_norm;
    const char *qkv, *q, *k, *v, *o;
    const char *gate, *up, *down;
    /* ---- Added for the wider set of families (all optional; zero = the standard block). ---- */
    nn_qkv_layout qkv_layout;
    bool tie_default;      /* tie_word_embeddings when config.json omits it (the class default) */
    bool norm_unit_offset; /* RMSNorm multiplies by (1 + w) (Gemma) */
    bool norm_no_weight;   /* norms have neither weight nor bias (OLMo) */
    bool parallel;         /* x + attn(norm(x)) + mlp(norm'(x)) (config may override) */
    bool shared_norm;      /* parallel on one norm: mlps_input is attentions_input */
    bool emb_scale_sqrt_d; /* layers_input.0 = embedding * sqrt(d) (Gemma) */
    bool residual_in_modules;      /* attention/MLP modules add the residual themselves (Bloom) */
    bool head_bias;                /* lm_head has a bias (GPT-J, Phi) */
    int pos_offset;                /* learned positions: row pos + offset (OPT: 2) */
    int default_context;           /* context when the config names none (0: the config must) */
    int sliding_window_pattern;    /* see nn_config (Gemma-2: 2, windowed on even layers) */
    bool moe_renormalize;          /* default of norm_topk_prob (Mixtral: always) */
    const char *default_act;       /* activation when the config names none */
    bool act_is_hidden_activation; /* the activation is config "hidden_activation" only (Gemma) */
    const char *emb_norm;          /* LayerNorm right after the embedding (Bloom) */
    const char *post_attn_norm, *post_mlp_norm; /* sandwich norms on the branch outputs (Gemma-2) */
    const char *gate_up;                        /* fused [gate | up] projection (Phi-3) */
    /* Mixture of experts: router [n_experts, d]; experts (layer, expert); optional shared expert
     * (a dense gated MLP) scaled by sigmoid(shared_expert_gate(x)) (Qwen2-MoE). */
    const char *router, *expert_gate, *expert_up, *expert_down;
    const char *shared_gate, *shared_up, *shared_down, *shared_expert_gate;
    /* ---- Families of 2025-26 (Qwen3, Gemma 3, OLMo 2/3, SmolLM3, Granite, Phi-4-mini, ...). ----
     */
    /* RMSNorms on q and k after their projections, before rotary: over each head's head_dim
     * (Qwen3, Gemma 3), or over the whole projection, all heads at once (qk_norm_whole: OLMo 2). */
    const char *q_norm, *k_norm;
    bool qk_norm_whole;
    /* No norm before attention or the MLP (OLMo 2/3): the branches read the residual stream. */
    bool no_pre_norm;
    /* Family-specific config.json fields (Granite's multipliers, SmolLM3's NoPE layers, ...), read
     * after the common ones; NULL: none. */
    int (*configure)(const struct cJSON *root, const char *path, struct nn_config *c, nn_err *err);
    /* Config fields that set the block shape (kv heads, qkv layout, parallel, shared norm:
     * GPT-BigCode's multi_query, Falcon's variants) or refuse one the loader lacks (OPT's
     * word_embed_proj_dim), read after the family's defaults and before the shape is checked;
     * NULL: the row's defaults. */
    int (*configure_block)(const struct cJSON *root, const char *path, struct nn_config *c,
                           nn_err *err);
    /* ---- gpt-oss and DeepSeek-V3 (all optional; zero = the standard block). ---- */
    /* Attention sinks: one learned logit per head that joins every softmax row and takes its
     * share of the probability mass without contributing a value (gpt-oss). Full name, no
     * suffix ("model.layers.%d.self_attn.sinks"). */
    const char *attn_sinks;
    bool router_bias; /* the router Linear has a bias (gpt-oss) */
    /* Experts stored as one stacked tensor per layer, in-major: gate_up [X, d, 2F] and down
     * [X, F, d], with biases "<name>_bias" [X, 2F] and [X, d] (gpt-oss). Full names. */
    const char *expert_gate_up_stack, *expert_down_stack;
    bool expert_gate_up_interleaved; /* gate_up columns alternate gate, up, gate, up (gpt-oss) */
    nn_router_kind router_kind;
    const char *router_score_bias; /* e_score_correction_bias [X], full name (DeepSeek-V3) */
    /* Multi-head latent attention (DeepSeek-V2/V3, see attention_mla.c): q = q_b(norm(q_a(x)))
     * (or q when q_lora_rank is null); [latent | k_rope] = kv_a(x); [k_nope | v] per head =
     * kv_b(norm(latent)). */
    bool mla;
    const char *q_a, *q_a_norm, *q_b, *kv_a, *kv_a_norm, *kv_b;
    /* ---- GLM-4 ---- */
    float rotary_fraction_default; /* partial_rotary_factor when the config names none (0: 1) */
    bool o_bias_never;             /* o_proj has no bias whatever attention_bias says */
} nn_arch;

typedef struct nn_config {
    const nn_arch *arch;
    int n_layers;
    int d_model;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int d_ff;
    int vocab_size;
    int max_positions; /* the context */
    float norm_eps;
    nn_activation act;
    /* Rotary embedding. */
    double rope_theta;
    int rotary_dim; /* dims of each head that rotate (= head_dim unless partial) */
    nn_rope_scaling rope_scaling;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_positions;
    int sliding_window; /* 0: none */
    bool tie_embeddings;
    bool qkv_bias, o_bias, mlp_bias;
    int bos_token_id, eos_token_id; /* -1 when unknown */
    /* ---- Added for the wider set of families. Zero always means "the standard block". ---- */
    nn_qkv_layout qkv_layout;
    bool parallel;              /* layers_output = x + attn(norm(x)) + mlp(norm'(x)) */
    bool shared_norm;           /* parallel on one norm: mlps_input is attentions_input */
    bool head_bias;             /* lm_head has a bias */
    int sliding_window_pattern; /* 0: window on every layer; P: layer l iff (l + 1) % P != 0 */
    float emb_scale;            /* 0: none; else layers_input.0 = embedding * emb_scale */
    float attn_scale;           /* 0: 1/sqrt(head_dim); else the q.k multiplier */
    float attn_softcap;         /* 0: none; else scores = tanh(s / c) * c before masking */
    float final_softcap;        /* 0: none; else logits = tanh(x / c) * c */
    float logit_scale;          /* 0: none; else logits = x * logit_scale (Cohere) */
    /* Mixture of experts (n_experts 0: dense). */
    int n_experts, n_experts_per_tok;
    int moe_d_ff;        /* each expert's width */
    int shared_d_ff;     /* the shared expert's width; 0: none */
    int moe_layer_step;  /* layer l is sparse iff (l + 1) % step == 0 */
    bool norm_topk_prob; /* renormalize the top-k router probabilities to sum 1 */
    /* ---- Families of 2025-26. Zero always means "the standard block". ---- */
    float residual_scale;    /* x += branch * residual_scale (Granite's residual_multiplier) */
    float logits_divisor;    /* logits = lm_head(x) / logits_divisor (Granite's logits_scaling) */
    double rope_local_theta; /* sliding-window layers rotate with this theta, unscaled (Gemma 3) */
    /* longrope: inv_freq / short_factor while a sequence ends within rope_original_max_positions,
     * / long_factor beyond; cos and sin times rope_attention_factor (also yarn's factor) */
    float rope_attention_factor;
    float rope_short_factor[NN_MAX_ROPE_FACTORS], rope_long_factor[NN_MAX_ROPE_FACTORS];
    /* Per-layer kinds from config lists: layer_lists has the NN_LAYER_* bit of each kind a list
     * gave (layer_types: sliding, replacing sliding_window_pattern; no_rope_layers;
     * mlp_only_layers, combined with moe_layer_step as Hugging Face does), layer_flags[l] the
     * layer's bits. Read them with nn_layer_*(). */
    uint8_t layer_lists;
    uint8_t layer_flags[NN_MAX_LAYER_LIST];
    /* ---- gpt-oss and DeepSeek-V3. Zero always means "the standard block". ---- */
    int v_head_dim; /* 0: head_dim. Values' (and the attention output's) head width */
    double rope_beta_fast, rope_beta_slow; /* yarn's correction range */
    bool rope_truncate;                    /* yarn: round the correction range outward */
    float swiglu_limit, swiglu_alpha;      /* > 0: gpt-oss's clamped SwiGLU experts */
    int moe_first_layer;                   /* layers l < this are dense (first_k_dense_replace) */
    int n_expert_groups, topk_groups;      /* group-limited routing (DeepSeek-V3) */
    float routed_scale;                    /* 0: 1. routed experts' weights are multiplied by it */
    int q_lora_rank;                       /* MLA: 0 = a plain q projection */
    int kv_lora_rank, qk_rope_dim;         /* MLA: latent width; rotary dims per head (the last) */
    bool mla_rope_interleaved;             /* MLA: the rotary dims rotate as adjacent pairs */
    bool experts_mxfp4; /* quantization_config mxfp4: stacked experts may be MXFP4 (gpt-oss) */
} nn_config;

/* Layer l uses the sliding window / rotary / a sparse MoE block. */
bool nn_layer_sliding(const nn_config *c, int l);
bool nn_layer_rope(const nn_config *c, int l);
bool nn_layer_moe(const nn_config *c, int l);

/* The loaded model and its parts are opaque outside the engine's own build: a program using the
 * installed headers reaches them through pointers and the accessors of api.h (nn_model_n_layers,
 * nn_model_cfg ...), so their layout can change without breaking it. The build of the engine,
 * jobs, worker, coordinator, CLI and tests defines NNTERP_INTERNAL (CMakeLists.txt, on nn_base)
 * and sees the fields. */
typedef struct nn_linear nn_linear;
typedef struct nn_norm nn_norm;
typedef struct nn_expert nn_expert;
typedef struct nn_layer nn_layer;
typedef struct nn_model nn_model;

#ifdef NNTERP_INTERNAL
/* y[N, n_out] = x[N, n_in] W (+ b). W is row-major [n_out][n_in] with row stride ld (in
 * elements), or [n_in][n_out] when in_major, so a slice of a fused matrix is a view, not a copy.
 * W keeps the checkpoint's dtype: w is float32 data only when dtype is NN_DT_F32, else w16 holds
 * the F16/BF16 elements (nn_linear_at reads one element of either). w (or w16) is NULL for an
 * absent matrix. mm, set by nn_model_set_compute, is the matrix's bfloat16 GEMM (NULL: float32,
 * F16/BF16 weights widened block by block inside linear()). */
struct nn_linear {
    union {
        const float *w;
        const uint16_t *w16;
    };
    const float *b; /* [n_out] or NULL, float32 */
    int n_in, n_out;
    size_t ld;
    bool in_major;
    nn_dtype dtype;         /* NN_DT_F32 (zero), NN_DT_F16 or NN_DT_BF16 */
    const nn_bf16_gemm *mm; /* owned by the model */
};

/* Element i of W's storage (row-major in its stored layout), as float32. */
float nn_linear_at(const nn_linear *W, size_t i);
/* Bytes per stored element of W. */
size_t nn_linear_elem_size(const nn_linear *W);

struct nn_norm {
    const float *w; /* [d], or NULL for a norm without weight (OLMo) */
    const float *b; /* [d] or NULL */
};

struct nn_expert {
    nn_linear gate, up, down;
    nn_linear gate_up; /* a fused gate/up projection (arch->expert_gate_up_stack); gate.w NULL */
};

struct nn_layer {
    nn_norm attn_norm, mlp_norm;
    nn_linear q, k, v, o;
    nn_linear gate, up, down; /* the dense MLP, or the MoE block's shared expert (w NULL: none) */
    nn_norm post_attn_norm, post_mlp_norm; /* sandwich norms (when arch->post_attn_norm) */
    nn_norm q_norm, k_norm;       /* (when arch->q_norm) [head_dim], or whole [H*E]/[G*E] */
    bool moe;                     /* a sparse MoE block replaces the dense MLP */
    nn_linear router;             /* [n_experts, d] */
    nn_expert *experts;           /* [n_experts] */
    nn_linear shared_expert_gate; /* [1, d] (w NULL: none) */
    /* gpt-oss, DeepSeek-V3 */
    const float *sinks;             /* [n_heads] attention sink logits, or NULL */
    const float *router_score_bias; /* [n_experts] added to the scores for the choice only */
    nn_linear q_a, q_b, kv_a, kv_b; /* MLA projections (q is q_proj when q_lora_rank is 0) */
    nn_norm q_a_norm, kv_a_norm;    /* MLA RMSNorms of widths q_lora_rank, kv_lora_rank */
};

struct nn_executor; /* stage.h: how a pipeline stage runs (internal) */

struct nn_model {
    nn_config cfg;
    char *source; /* the directory or file it came from */
    union {       /* [vocab, d] in its stored dtype (see nn_linear) */
        const float *tok_emb;
        const uint16_t *tok_emb16;
    };
    nn_dtype tok_emb_dtype;
    const float *pos_emb; /* [max_positions + pos_offset, d] or NULL */
    nn_norm emb_norm;     /* when arch->emb_norm */
    nn_norm final_norm;
    nn_linear head;   /* [vocab, d] */
    nn_layer *layers; /* [n_layers] */
    /* Ownership: the mapped checkpoint and the float32 copies made of non-F32 tensors. */
    nn_st_archive archive;
    nn_mapped_file bin; /* llama2.c checkpoint */
    float **owned;
    size_t n_owned;
    char *config_json; /* config.json text, stored with results */
    /* Placement: the layers this process holds ([0, n_layers) unless loaded as a stage), and
     * whether it is the stage that computes the logits. */
    int layer_begin, layer_end;
    bool last_stage;
    const struct nn_executor *executor; /* NULL: nn_forward runs everything here */
    /* Compute precision (nn_model_set_compute) and what runs it, e.g. "oneDNN
     * brg:avx512_core_amx_bf16" or "float32 (OpenBLAS sgemm)". */
    nn_compute compute;
    char compute_kernel[192];
    nn_bf16_gemm **gemms; /* the bfloat16 GEMMs of the linears, owned */
    size_t n_gemms;
    bool headers_only; /* loaded by nn_model_inspect: sizes only, it cannot run */
};
#endif /* NNTERP_INTERNAL */

/* Architecture rows, looked up by config.json's model_type. NULL when unsupported. */
const nn_arch *nn_arch_find(const char *model_type);
/* Comma-separated list of supported model_type values, for error messages. */
const char *nn_arch_supported(void);

/* Parses a Hugging Face config.json (already loaded) into cfg. */
int nn_config_from_hf(const char *json_text, const char *path, nn_config *cfg, nn_err *err);

/* Resolves MODEL as docs/spec.md §1 says: a directory, a llama2.c .bin file, or a Hugging Face id
 * found in the local hub cache. Returns a new string the caller frees. */
char *nn_model_resolve(const char *model, nn_err *err);

/* Loads MODEL (see nn_model_resolve). On failure nothing is left allocated. */
int nn_model_load(const char *model, nn_model **out, nn_err *err);
int nn_model_load_hf_dir(const char *dir, nn_model **out, nn_err *err);
/* The configuration of MODEL without its weights (to plan a split before loading). */
int nn_model_config(const char *model, nn_config *cfg, nn_err *err);
/* Loads only layers [layer_begin, layer_end) (a pipeline stage; layer_end < 0: all). The others
 * are left empty and must not run; embeddings, final norm and head are mapped, touched only when
 * used. */
int nn_model_load_layers(const char *model, int layer_begin, int layer_end, nn_model **out,
                         nn_err *err);
int nn_model_load_llama2c(const char *path, nn_model **out, nn_err *err);
/* Config, tensor headers and shapes only: no tensor data is read (norms are not converted, no
 * NaN scan unless NNTERP_CHECK_WEIGHTS=1), so it is fast on a checkpoint of any size. The model
 * reports sizes (nn_model_layer_bytes) and cannot run. */
int nn_model_inspect(const char *model, nn_model **out, nn_err *err);
/* Chooses the GEMM precision of the loaded layers and of the head (on every stage: any stage may
 * unembed).
 * NN_COMPUTE_F32: float32 everywhere (the default). The bfloat16 modes use oneDNN where it runs
 * on AMX (model->compute_kernel says which ran; without AMX float32 runs and it says so); errors:
 * built without oneDNN, bfloat16x3 with weights that are not BF16 (not exact in bfloat16). F32
 * and F16 weights get a bfloat16 copy (half the bytes of F32) for bfloat16. */
int nn_model_set_compute(nn_model *model, nn_compute compute, nn_err *err);
/* Bytes of the stored tensors of layer l (matrices in their dtype, norms and biases), and of the
 * embeddings and head; what a process holding those layers keeps resident. */
size_t nn_model_layer_bytes(const nn_model *model, int l);
size_t nn_model_outer_bytes(const nn_model *model, bool embed, bool head);
void nn_model_free(nn_model *model);

#endif
