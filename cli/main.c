/* nnterp: the command line. A thin layer over the libraries: parse arguments, call, print.
 * Results a person reads go to stdout; diagnostics to stderr. Exit codes: 0 success, 1 failure,
 * 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "generate.h"
#include "h5_sink.h"
#include "pipeline.h"
#include "pool.h"
#include "run.h"
#include "store.h"
#include "tokenizer.h"
#include "trace.h"

#ifndef NNTERP_VERSION
#define NNTERP_VERSION "dev"
#endif

/* nnterp --help: this, the commands of cli_commands (cli_print_commands), then usage_footer. */
static const char *usage_header =
    "usage: nnterp COMMAND [options]   (nnterp COMMAND --help for details)\n"
    "\n"
    "commands:\n";

static const char *usage_footer =
    "\n"
    "MODEL is a Hugging Face checkpoint directory, a Hugging Face id in the local cache\n"
    "($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub), or a llama2.c .bin file\n"
    "(its tokenizer: --tokenizer FILE, else tokenizer.bin or tok<vocab>.bin beside it).\n"
    "Text prompts get the special tokens the tokenizer adds by default (BOS for Llama);\n"
    "--no-special turns that off.\n"
    "Every command that runs the model (run, plan, generate, trace, lens, patchscope, steer,\n"
    "probs, patch, skip, attn-edit and object-lens) takes --compute float32|bfloat16|bfloat16x3:\n"
    "the precision of its matrix products (default float32; the bfloat16 modes run on CPUs with\n"
    "AMX, docs/engine.md).\n"
    "A flag a command does not take is a usage error; nnterp COMMAND --help lists them all.\n";

static void print_usage_main(FILE *out)
{
    fputs(usage_header, out);
    cli_print_commands(out);
    fputs(usage_footer, out);
}

static const char *usage_tokenize =
    "usage: nnterp tokenize -m MODEL [--tokenizer FILE] [--ids] [--no-special] [--] TEXT\n"
    "Prints each token's id and piece (whitespace shown as in the vocabulary); --ids prints the\n"
    "ids only, space-separated. MODEL may also be a tokenizer.json or tokenizer.bin by itself.\n";

static const char *usage_inspect =
    "usage: nnterp inspect -m MODEL\n"
    "Prints the model's family, sizes, positional scheme, norms, hook points with their shapes,\n"
    "and how the family deviates from the standard pre-norm block.\n";

static const char *usage_generate =
    "usage: nnterp generate -m MODEL (-p TEXT | --ids \"1 2 3\") [-n N] [--temperature T]\n"
    "                       [--top-p P] [--seed S] [--print-ids] [--no-eos] [--no-special]\n"
    "  -p TEXT          the prompt as text\n"
    "  --ids IDS        the prompt as token ids (space- or comma-separated)\n"
    "  -n N             tokens to generate (default 32); stops early at EOS or the context end\n"
    "  --temperature T  0 (default) is greedy; > 0 samples\n"
    "  --top-p P        nucleus sampling mass (default 1: off)\n"
    "  --seed S         sampling seed (default 42)\n"
    "  --print-ids      print the generated ids, space-separated, after the text\n"
    "  --no-eos         do not stop at the end-of-sequence token\n"
    "The text streams to stdout as it is generated (whole characters only); without a\n"
    "tokenizer the ids are printed instead.\n";

static const char *usage_trace =
    "usage: nnterp trace -m MODEL (-p TEXT | --ids \"1 2 3\")... --save HOOKS [--layers SPEC] -o "
    "OUT.h5\n"
    "  -p TEXT        one prompt as text; repeat for several prompts (run as one packed batch)\n"
    "  --ids IDS      one prompt as token ids; may be mixed with -p\n"
    "  --save HOOKS   comma-separated hook points: token_embeddings, layers_input,\n"
    "                 attentions_input, attention_probabilities, attentions_output, mlps_input,\n"
    "                 mlps_output, layers_output, router_probabilities (MoE models), ln_final,\n"
    "                 logits, next_token_probs;\n"
    "                 a per-layer point may name its layer (layers_output.3)\n"
    "  --layers SPEC  layers for points given without one: all (default), 5, 0,3,7, -1, 0:12:2\n"
    "  -o OUT.h5      the HDF5 file (written as OUT.h5.partial, renamed when complete);\n"
    "                 layout in docs/trace-format.md\n";

static const char *act_name(nn_activation a)
{
    static const char *names[] = {"gelu (tanh approximation)", "gelu (exact erf)", "silu", "relu"};
    return names[a];
}

/* ---- inspect: what the families of 2025-26 add ---- */

/* "0, 1, 3" (or "none", or "all"): the layers where pred holds. */
static void layers_where(const nn_config *c, bool (*pred)(const nn_config *, int), char *buf,
                         size_t size)
{
    size_t n = 0;
    int count = 0;
    buf[0] = '\0';
    for (int l = 0; l < c->n_layers; l++)
        if (pred(c, l)) {
            count++;
            if (n + 16 < size)
                n += (size_t)snprintf(buf + n, size - n, "%s%d", n ? ", " : "", l);
            else if (n + 4 < size && !strstr(buf, "..."))
                n += (size_t)snprintf(buf + n, size - n, ", ...");
        }
    if (count == 0)
        snprintf(buf, size, "none");
    else if (count == c->n_layers)
        snprintf(buf, size, "all");
}

static bool layer_nope(const nn_config *c, int l)
{
    return !nn_layer_rope(c, l);
}

static void describe_modern(const nn_config *c)
{
    char which[160];
    if (c->arch->pos == NN_POS_ROPE && (c->layer_lists & NN_LAYER_NO_ROPE)) {
        layers_where(c, layer_nope, which, sizeof which);
        printf("NoPE layers      %s (no rotary embedding on q and k there)\n", which);
    }
    if (c->rope_local_theta > 0)
        printf("local rotary     sliding-window layers rotate with theta %g, unscaled\n",
               c->rope_local_theta);
    if (c->rope_scaling == NN_ROPE_SCALING_LONGROPE)
        printf("longrope         short factors while a prompt ends within %d positions, long "
               "factors beyond (decided per prompt); cos/sin x %g\n",
               c->rope_original_max_positions, (double)c->rope_attention_factor);
    if (c->residual_scale != 0)
        printf("residual         x += branch * %g (residual_multiplier; hooks see the branch "
               "unscaled)\n",
               (double)c->residual_scale);
    if (c->logits_divisor != 0)
        printf("logits           lm_head(x) / %g (logits_scaling; the logit lens divides too)\n",
               (double)c->logits_divisor);
}

/* Resident memory: the stored bytes of the layers a process runs (memory-mapped, as stored) plus
 * embeddings and head; activations come on top (nnterp plan measures them). */
static const char *human_bytes(double b, char *buf, size_t n)
{
    if (b >= 1024.0 * 1024.0 * 1024.0)
        snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024.0 * 1024.0));
    else
        snprintf(buf, n, "%.2f MiB", b / (1024.0 * 1024.0));
    return buf;
}

static void print_memory(const nn_model *m)
{
    const nn_config *c = &m->cfg;
    int L = c->n_layers;
    double layers = 0;
    char b1[32], b2[32], b3[32];
    for (int l = 0; l < L; l++)
        layers += (double)nn_model_layer_bytes(m, l);
    const nn_linear *q = L > 0 ? &m->layers[0].q : NULL;
    printf("weights          %s matrices, memory-mapped as stored: layers %s (%s each), "
           "embedding %s, head %s\n",
           q && q->w ? nn_dtype_name(q->dtype) : "?", human_bytes(layers, b1, sizeof b1),
           human_bytes(L ? layers / L : 0.0, b2, sizeof b2),
           human_bytes((double)nn_model_outer_bytes(m, true, false), b3, sizeof b3),
           m->head.w == m->tok_emb ? "tied" : "own");
    printf("resident         weights per pipeline stage (activations on top: nnterp plan)\n");
    for (int P = 1; P <= 4 && P <= L; P *= 2) {
        int split[5];
        nn_err split_err;
        if (nn_pipeline_split(c, P, NN_PIPELINE_HEAD_SHARE, split, &split_err))
            break;
        printf("                 %d stage%s:", P, P == 1 ? " " : "s");
        for (int k = 0; k < P; k++) {
            double b = (double)nn_model_outer_bytes(m, k == 0, k == P - 1);
            for (int l = split[k]; l < split[k + 1]; l++)
                b += (double)nn_model_layer_bytes(m, l);
            printf("%s layers [%d, %d) %s", k ? "," : "", split[k], split[k + 1],
                   human_bytes(b, b1, sizeof b1));
        }
        printf("\n");
    }
    char bf16[192], x3[192];
    nn_bf16_kernel_for(NN_COMPUTE_BF16, bf16, sizeof bf16);
    nn_bf16_kernel_for(NN_COMPUTE_BF16X3, x3, sizeof x3);
    printf("compute          float32 (default, OpenBLAS sgemm)\n"
           "                 --compute bfloat16: %s\n"
           "                 --compute bfloat16x3: %s\n",
           bf16, x3);
}

static int cmd_inspect(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_inspect, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    nn_err err = {{0}};
    nn_model *m;
    if (nn_model_inspect(a.model, &m, &err)) {
        /* A file that is not a directory was read as a llama2.c checkpoint: say so. */
        if (nn_path_is_file(a.model))
            nn_err_prefix(&err,
                          "%s was read as a llama2.c .bin checkpoint (a model is a checkpoint "
                          "directory, a hub id or a .bin; for a tokenizer file use nnterp "
                          "tokenize -m FILE)",
                          a.model);
        return cli_fail(&err);
    }
    const nn_config *c = &m->cfg;
    const nn_arch *ar = c->arch;
    int n_moe = 0;
    for (int l = 0; l < c->n_layers; l++)
        n_moe += m->layers[l].moe;
    printf("model            %s\n", m->source);
    printf("family           %s (model_type %s)\n", ar->family, ar->model_type);
    printf("layers           %d\n", c->n_layers);
    printf("d_model          %d\n", c->d_model);
    printf("attention        %d query heads, %d key/value heads, head_dim %d%s\n", c->n_heads,
           c->n_kv_heads, c->head_dim,
           c->n_kv_heads == c->n_heads
               ? ""
               : (c->n_kv_heads == 1 ? " (multi-query)" : " (grouped-query)"));
    if (ar->mla)
        printf("latent attention q = %s (q_lora_rank %d); [latent %d | rotary key %d] = kv_a(x), "
               "shared by the heads; per head [k_nope %d | v %d] = kv_b(rms(latent)); q/k heads "
               "%d + %d rotary dims, value heads %d\n",
               c->q_lora_rank ? "q_b(rms(q_a(x)))" : "q_proj(x)", c->q_lora_rank, c->kv_lora_rank,
               c->qk_rope_dim, c->head_dim - c->qk_rope_dim, c->v_head_dim,
               c->head_dim - c->qk_rope_dim, c->qk_rope_dim, c->v_head_dim);
    if (ar->attn_sinks)
        printf("attention sinks  one learned logit per head joins each softmax row (no value): "
               "attention_probabilities rows sum to 1 - p(sink)\n");
    if (c->attn_scale > 0)
        printf("attention scale  %g (not 1/sqrt(head_dim))\n", (double)c->attn_scale);
    if (c->attn_softcap > 0)
        printf("score capping    tanh(s / %g) * %g before masking\n", (double)c->attn_softcap,
               (double)c->attn_softcap);
    if (c->sliding_window) {
        char which[160];
        layers_where(c, nn_layer_sliding, which, sizeof which);
        printf("sliding window   %d (query i attends to keys i-%d < j <= i) on layers %s; the "
               "others are global\n",
               c->sliding_window, c->sliding_window, which);
    }
    if (ar->q_norm)
        printf("q/k norm         RMSNorm%s of q and k over %s, after the projections, before "
               "rotary\n",
               ar->norm_unit_offset ? " (1 + w)" : "",
               ar->qk_norm_whole ? "the whole projection (all heads at once)"
                                 : "each head's head_dim");
    printf("block            %s\n",
           c->parallel ? (c->shared_norm ? "parallel on one norm: x + attn(norm(x)) + mlp(norm(x))"
                                         : "parallel on two norms: x + attn(norm1(x)) + "
                                           "mlp(norm2(x))")
           : ar->no_pre_norm    ? "sequential post-norm branches: x += post_norm(branch(x)) (no "
                                  "pre-norm)"
           : ar->post_attn_norm ? "sequential with sandwich norms: x += post_norm(branch(norm(x)))"
           : ar->residual_in_modules
               ? "sequential; the attention and MLP modules add the residual themselves"
               : "sequential pre-norm: x += attn(norm(x)); x += mlp(norm(x))");
    if (n_moe) {
        char act[96];
        if (c->swiglu_limit > 0)
            snprintf(act, sizeof act,
                     "clamped SwiGLU (limit %g, alpha %g) on an interleaved gate_up, biases",
                     (double)c->swiglu_limit, (double)c->swiglu_alpha);
        else
            snprintf(act, sizeof act, "%s", act_name(c->act));
        printf("mlp              mixture of %d experts of width %d, %s, top-%d %s (%d of %d "
               "layers)\n",
               c->n_experts, c->moe_d_ff, act, c->n_experts_per_tok,
               c->norm_topk_prob ? "renormalised" : "not renormalised", n_moe, c->n_layers);
        if (ar->router_kind == NN_ROUTER_SIGMOID_GROUPED)
            printf("router           sigmoid scores (router_probabilities); top-%d of %d groups "
                   "(a group's score: its two best) by score + e_score_correction_bias, then "
                   "top-%d experts in them; weights = scores%s x %g\n",
                   c->topk_groups, c->n_expert_groups, c->n_experts_per_tok,
                   c->norm_topk_prob ? " renormalised" : "",
                   (double)(c->routed_scale != 0 ? c->routed_scale : 1.0f));
        else if (ar->router_bias)
            printf("router           linear with bias; router_probabilities = softmax over all "
                   "experts\n");
        if (c->experts_mxfp4)
            printf("experts          quantization_config mxfp4: MXFP4 stacks dequantized exactly "
                   "to float32 at load\n");
        if (c->moe_first_layer > 0)
            printf("dense layers     0..%d (first_k_dense_replace %d)\n", c->moe_first_layer - 1,
                   c->moe_first_layer);
        if (c->shared_d_ff)
            printf("shared expert    width %d, %s\n", c->shared_d_ff,
                   ar->shared_expert_gate ? "scaled by sigmoid(shared_expert_gate(x))"
                                          : "added unscaled");
    }
    if (n_moe < c->n_layers)
        printf("mlp              %d, %s%s\n", c->d_ff, act_name(c->act),
               ar->gated_mlp ? ", gated (act(gate) * up)" : "");
    printf("vocabulary       %d\n", c->vocab_size);
    printf("context          %d positions\n", c->max_positions);
    if (ar->pos == NN_POS_LEARNED)
        printf("positions        learned absolute embeddings (row = position + %d)\n",
               ar->pos_offset);
    else if (ar->pos == NN_POS_ALIBI)
        printf("positions        ALiBi (score bias slope_h * key position)\n");
    else
        printf("positions        RoPE theta %g, %d of %d dims, %s%s\n", c->rope_theta,
               c->rotary_dim, c->head_dim, ar->rope_interleaved ? "adjacent pairs" : "half-split",
               c->rope_scaling == NN_ROPE_SCALING_LLAMA3     ? ", llama3 scaling"
               : c->rope_scaling == NN_ROPE_SCALING_LINEAR   ? ", linear scaling"
               : c->rope_scaling == NN_ROPE_SCALING_LONGROPE ? ", longrope scaling"
               : c->rope_scaling == NN_ROPE_SCALING_YARN     ? ", yarn scaling"
                                                             : "");
    if (c->rope_scaling == NN_ROPE_SCALING_YARN)
        printf("                 yarn factor %g, original context %d, beta %g/%g, cos and sin x "
               "%g\n",
               c->rope_factor, c->rope_original_max_positions, c->rope_beta_fast, c->rope_beta_slow,
               (double)c->rope_attention_factor);
    if (ar->mla)
        printf("                 rotary on the last %d dims of each q/k head (%s)\n",
               c->qk_rope_dim,
               c->mla_rope_interleaved ? "adjacent pairs, rope_interleave" : "half-split");
    describe_modern(c);
    if (c->emb_scale != 0 || ar->emb_norm) {
        if (ar->emb_norm)
            printf("embedding        LayerNorm after the lookup (layers_input.0 = "
                   "norm(embedding))\n");
        else if (ar->emb_scale_sqrt_d)
            printf("embedding        scaled by sqrt(d_model) (layers_input.0 = embedding * "
                   "sqrt(d))\n");
        else
            printf("embedding        scaled by %g (layers_input.0 = embedding * %g)\n",
                   (double)c->emb_scale, (double)c->emb_scale);
    }
    printf("norm             %s, eps %g\n",
           ar->norm == NN_NORM_RMSNORM
               ? (ar->norm_unit_offset ? "RMSNorm scaling by (1 + w)" : "RMSNorm")
           : ar->norm_no_weight ? "LayerNorm without weight or bias"
           : ar->norm_bias      ? "LayerNorm"
                                : "LayerNorm with weight, no bias",
           (double)c->norm_eps);
    printf("biases           qkv %s, output %s, mlp %s\n", c->qkv_bias ? "yes" : "no",
           c->o_bias ? "yes" : "no", c->mlp_bias ? "yes" : "no");
    printf("output head      %s%s\n",
           c->tie_embeddings ? "tied to the token embeddings" : "own lm_head",
           c->head_bias ? ", with bias" : "");
    if (c->logit_scale != 0)
        printf("logits           lm_head(x) * %g (logit_scale)\n", (double)c->logit_scale);
    if (c->final_softcap > 0)
        printf("logits           soft-capped tanh(x / %g) * %g\n", (double)c->final_softcap,
               (double)c->final_softcap);
    printf("bos / eos        %d / %d\n", c->bos_token_id, c->eos_token_id);
    print_memory(m);
    printf("\nhook points (per prompt of T tokens; i = 0..%d)\n", c->n_layers - 1);
    for (int hp = 0; hp < NN_HP_COUNT; hp++) {
        char name[64], shape[64];
        snprintf(name, sizeof name, "%s%s", nn_hook_point_name(hp),
                 nn_hook_point_per_layer(hp) ? ".i" : "");
        if (hp == NN_HP_ATTENTION_PROBABILITIES)
            snprintf(shape, sizeof shape, "[%d, T, T]", c->n_heads);
        else if (hp == NN_HP_LOGITS)
            snprintf(shape, sizeof shape, "[T, %d]", c->vocab_size);
        else if (hp == NN_HP_NEXT_TOKEN_PROBS)
            snprintf(shape, sizeof shape, "[%d]", c->vocab_size);
        else if (hp == NN_HP_ROUTER_PROBABILITIES && !n_moe)
            snprintf(shape, sizeof shape, "(MoE layers only: none here)");
        else if (hp == NN_HP_ROUTER_PROBABILITIES)
            snprintf(shape, sizeof shape, "[T, %d]%s%s", c->n_experts,
                     n_moe < c->n_layers ? " (MoE layers only)" : "",
                     ar->router_kind == NN_ROUTER_SIGMOID_GROUPED ? " sigmoid scores" : "");
        else
            snprintf(shape, sizeof shape, "[T, %d]", c->d_model);
        printf("  %-28s %s\n", name, shape);
    }
    printf("\nfamily notes     %s\n", ar->notes);
    printf("invariants       layers_output.i == layers_input.(i+1) (one buffer); logit lens at the "
           "last layer == softmax(logits), post-processing included\n");
    if (ar->residual_in_modules)
        printf("does not hold    layers_output.i == layers_input.i + attentions_output.i + "
               "mlps_output.i: attentions_output.i already includes layers_input.i, and "
               "mlps_output.i IS layers_output.i (the same buffer)\n");
    else if (ar->post_attn_norm)
        printf("does not hold    layers_output.i == layers_input.i + attentions_output.i + "
               "mlps_output.i: the residual adds the post-normed branch outputs\n");
    else if (c->residual_scale != 0)
        printf("does not hold    layers_output.i == layers_input.i + attentions_output.i + "
               "mlps_output.i: the residual adds the branches times %g\n",
               (double)c->residual_scale);
    else
        printf("                 layers_output.i == layers_input.i + attentions_output.i + "
               "mlps_output.i\n");
    if (ar->no_pre_norm)
        printf("does not hold    attentions_input.i / mlps_input.i are no norm's output: the "
               "branches read the residual stream (a copy of it)\n");
    if (c->parallel)
        printf("does not hold    mlps_input.i == norm(layers_input.i + attentions_output.i): the "
               "MLP reads %s\n",
               c->shared_norm ? "attentions_input.i itself" : "its own norm of layers_input.i");
    nn_model_free(m);
    return 0;
}

static int cmd_tokenize(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_tokenize, true, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!a.positional)
        return cli_usage_error(usage_tokenize, "%s", "TEXT is required");
    nn_err err = {{0}};
    nn_tokenizer *tok = NULL;
    nn_model *m = NULL;
    char *path = nn_model_resolve(a.model, &err);
    nn_ids ids = {0};
    rc = EXIT_FAILURE;
    if (!path) {
        cli_fail(&err);
        goto done;
    }
    /* MODEL may be a tokenizer file itself, or a model whose tokenizer we find. */
    size_t len = strlen(path);
    bool tokenizer_file = !nn_path_is_dir(path) && ((len > 5 && !strcmp(path + len - 5, ".json")) ||
                                                    nn_model_load_llama2c(path, &m, &err) != NN_OK);
    if (tokenizer_file
            ? nn_tokenizer_load(path, &tok, &err)
            : cli_open_tokenizer(&a, path, m ? m->cfg.vocab_size : 0, true, &tok, &err)) {
        cli_fail(&err);
        goto done;
    }
    if (nn_tokenizer_encode(tok, a.positional, strlen(a.positional), !a.no_special, &ids, &err)) {
        cli_fail(&err);
        goto done;
    }
    if (a.ids_only) {
        for (size_t i = 0; i < ids.n; i++)
            printf("%s%d", i ? " " : "", ids.ids[i]);
        printf("\n");
    } else {
        printf("%zu tokens\n", ids.n);
        for (size_t i = 0; i < ids.n; i++) {
            size_t plen;
            const char *piece = nn_tokenizer_piece(tok, ids.ids[i], &plen);
            printf("%8d  ", ids.ids[i]);
            /* control bytes made visible so one token stays on one line */
            for (size_t k = 0; k < plen; k++) {
                unsigned char c = (unsigned char)piece[k];
                if (c < 0x20 || c == 0x7f)
                    printf("\\x%02x", c);
                else
                    putchar(c);
            }
            printf("\n");
        }
    }
    rc = 0;
done:
    nn_ids_free(&ids);
    nn_tokenizer_free(tok);
    nn_model_free(m);
    nn_free(path);
    return rc;
}

typedef struct stream_ctx {
    nn_detokenizer detok; /* NULL tok: print ids */
    int printed;
} stream_ctx;

static int stream_token(int32_t token, void *user, nn_err *err)
{
    stream_ctx *s = user;
    if (!s->detok.tok) {
        printf("%s%d", s->printed ? " " : "", token);
        s->printed = 1;
    } else {
        char *text = NULL;
        if (nn_detokenizer_push(&s->detok, token, &text, err))
            return NN_ERR;
        fputs(text, stdout);
        nn_free(text);
    }
    fflush(stdout);
    return NN_OK;
}

static int cmd_generate(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_generate, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (a.n_prompts != 1)
        return cli_usage_error(usage_generate, "%s", "give one prompt, with -p TEXT or --ids");
    nn_err err = {{0}};
    nn_model *m = NULL;
    nn_tokenizer *tok = NULL;
    int32_t *prompt = NULL, *out = NULL;
    int n_prompt, n_out;
    stream_ctx stream = {0};
    rc = EXIT_FAILURE;
    if (cli_load_model(&a, &m, &err) ||
        cli_open_tokenizer(&a, m->source, m->cfg.vocab_size, cli_any_text(&a), &tok, &err) ||
        cli_prompt_ids(&a, 0, tok, &prompt, &n_prompt, &err) ||
        !(out = nn_malloc((size_t)(a.n_new ? a.n_new : 1) * sizeof *out, &err))) {
        cli_fail(&err);
        goto done;
    }
    if (tok) {
        nn_detokenizer_init(&stream.detok, tok, true);
        if (nn_detokenizer_prime(&stream.detok, prompt, (size_t)n_prompt, &err)) {
            cli_fail(&err);
            goto done;
        }
    }
    nn_generate_params gp = nn_generate_default_params();
    gp.max_new_tokens = a.n_new;
    gp.temperature = a.temperature;
    gp.top_p = a.top_p;
    gp.seed = a.seed;
    gp.stop_at_eos = !a.no_eos;
    gp.on_token = stream_token;
    gp.user = &stream;
    if (nn_generate(m, prompt, n_prompt, &gp, out, &n_out, &err)) {
        printf("\n");
        cli_fail(&err);
        goto done;
    }
    printf("\n");
    if (a.print_ids && tok) {
        for (int i = 0; i < n_out; i++)
            printf("%s%d", i ? " " : "", out[i]);
        printf("\n");
    }
    rc = 0;
done:
    if (stream.detok.tok)
        nn_detokenizer_free(&stream.detok);
    nn_free(prompt);
    nn_free(out);
    nn_tokenizer_free(tok);
    nn_model_free(m);
    return rc;
}

static int cmd_trace(int argc, char **argv)
{
    args a;
    int rc = cli_parse_args(argc, argv, usage_trace, false, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (a.n_prompts < 1)
        return cli_usage_error(usage_trace, "%s", "give at least one prompt with -p TEXT or --ids");
    if (!a.save)
        return cli_usage_error(usage_trace, "%s", "--save HOOKS is required");
    if (!a.output)
        return cli_usage_error(usage_trace, "%s", "-o OUT.h5 is required");
    nn_err err = {{0}};
    nn_model *m = NULL;
    nn_tokenizer *tok = NULL;
    nn_h5file *f = NULL;
    int32_t *tokens = NULL;
    int offsets[MAX_PROMPTS + 1] = {0};
    rc = EXIT_FAILURE;
    if (cli_load_model(&a, &m, &err) ||
        cli_open_tokenizer(&a, m->source, m->cfg.vocab_size, cli_any_text(&a), &tok, &err)) {
        cli_fail(&err);
        goto done;
    }
    for (int p = 0; p < a.n_prompts; p++) {
        int32_t *ids;
        int n;
        if (cli_prompt_ids(&a, p, tok, &ids, &n, &err)) {
            cli_fail(&err);
            goto done;
        }
        int32_t *grown = nn_realloc(tokens, (size_t)(offsets[p] + n) * sizeof *tokens, &err);
        if (!grown) {
            nn_free(ids);
            cli_fail(&err);
            goto done;
        }
        tokens = grown;
        memcpy(tokens + offsets[p], ids, (size_t)n * sizeof *ids);
        offsets[p + 1] = offsets[p] + n;
        nn_free(ids);
    }
    if (nn_h5_create(a.output, &f, &err)) {
        cli_fail(&err);
        goto done;
    }
    nn_sink sink = nn_h5_sink(f);
    nn_trace_params tp = {.hooks = a.save, .layers = a.layers};
    if (nn_trace_run(m, tokens, offsets, a.n_prompts, &tp, &sink, &err) ||
        nn_h5_attr_string(f, "/", NN_ATTR_FORMAT, nn_file_formats[NN_FILE_TRACE].name, &err) ||
        nn_h5_attr_i64(f, "/", NN_ATTR_FORMAT_VERSION, nn_file_formats[NN_FILE_TRACE].version,
                       &err) ||
        nn_h5_attr_string(f, "/", NN_ATTR_NNTERP_VERSION, NNTERP_VERSION, &err) ||
        nn_h5_attr_string(f, "/", NN_ATTR_MODEL, m->source, &err) ||
        nn_h5_attr_string(f, "/", NN_ATTR_MODEL_CONFIG, m->config_json, &err) ||
        nn_h5_attr_string(f, "/", NN_ATTR_COMPUTE, nn_compute_name(m->compute), &err) ||
        nn_h5_attr_string(f, "/", NN_ATTR_COMPUTE_KERNEL, m->compute_kernel, &err)) {
        cli_fail(&err);
        goto done;
    }
    nn_h5file *done_file = f;
    f = NULL;
    if (nn_h5_commit(done_file, &err)) {
        cli_fail(&err);
        goto done;
    }
    fprintf(stderr, "nnterp: wrote %s (%d prompts, %d tokens)\n", a.output, a.n_prompts,
            offsets[a.n_prompts]);
    rc = 0;
done:
    nn_h5_free(f); /* removes the .partial file of a failed run */
    nn_free(tokens);
    nn_tokenizer_free(tok);
    nn_model_free(m);
    return rc;
}

static const char *usage_run =
    "usage: nnterp run JOB.json [--resume] [--stages P] [--dry-run] [--progress] [--quiet]\n"
    "                [--progress-every S] [--compute C]\n"
    "Runs the job (docs/jobs.md): tokenizes the dataset, then writes every operation's results\n"
    "into one HDF5 store, OUT.h5.partial until complete. Exit codes: 0 done, 1 error,\n"
    "2 usage, 3 interrupted by SIGINT/SIGTERM/SIGUSR1 after committing (resumable; under\n"
    "mpirun see docs/distributed.md for which signals drain).\n"
    "  --resume     continue an interrupted OUT.h5.partial, redoing only unfinished shards, with\n"
    "               any rank count and split; a store already complete: nothing to do (exit 0)\n"
    "  --stages P   pipeline stages of this run instead of the job's parallel.pipeline_stages\n"
    "  --dry-run    check everything, print the plan, the layout and the store's arrays and\n"
    "               size; write nothing\n"
    "  --progress   the self-overwriting progress line on stderr even when it is not a terminal\n"
    "               (by default: on a terminal; elsewhere, as under Slurm, a plain line of\n"
    "               prompts, tokens/s, ETA and shards every S seconds)\n"
    "  --progress-every S  seconds between those plain lines (default 30)\n"
    "  --quiet      no progress lines\n"
    "  --compute C  float32, bfloat16 or bfloat16x3 (over the job's \"compute\" field)\n";

static int cmd_run(int argc, char **argv)
{
    nn_run_options o = {0};
    const char *job = NULL;
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-' && cli_check_option("run", argv[i], NULL))
            return EXIT_USAGE;
        if (!strcmp(argv[i], "--resume"))
            o.resume = true;
        else if (!strcmp(argv[i], "--progress"))
            o.progress = true;
        else if (!strcmp(argv[i], "--quiet"))
            o.no_progress = true;
        else if (!strcmp(argv[i], "--progress-every")) {
            char *end = NULL;
            double v = i + 1 < argc ? strtod(argv[i + 1], &end) : 0;
            if (i + 1 >= argc || !end || *end || !(v > 0 && v <= 86400))
                return cli_usage_error(usage_run,
                                       "--progress-every takes seconds in (0, 86400], not '%s'",
                                       i + 1 < argc ? argv[i + 1] : "");
            o.progress_every = v;
            i++;
        } else if (!strcmp(argv[i], "--dry-run"))
            o.dry_run = true;
        else if (!strcmp(argv[i], "--stages")) {
            char *end = NULL;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || !end || *end || v < 1 || v > 4096)
                return cli_usage_error(usage_run, "--stages takes a stage count 1..4096, not '%s'",
                                       i + 1 < argc ? argv[i + 1] : "");
            o.stages = (int)v;
            i++;
        } else if (!strcmp(argv[i], "--compute") && i + 1 < argc) {
            nn_compute c;
            nn_err e;
            o.compute = argv[++i];
            if (nn_compute_parse(o.compute, "--compute", &c, &e))
                return cli_usage_error(
                    usage_run, "--compute is float32, bfloat16 or bfloat16x3, not '%s'", o.compute);
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            cli_print_help("run", usage_run);
            return 0;
        } else if (argv[i][0] == '-' || job)
            return cli_usage_error(usage_run, "unexpected argument '%s'", argv[i]);
        else
            job = argv[i];
    }
    if (!job)
        return cli_usage_error(usage_run, "%s", "JOB.json is required");
    const char *fail_at = getenv("NNTERP_FAIL_AT_BATCH"); /* docs/distributed.md */
    if (fail_at) {
        char tail;
        if (sscanf(fail_at, "%d:%d%c", &o.fail_stage, &o.fail_batch, &tail) != 2 ||
            o.fail_stage < 0 || o.fail_batch < 0)
            return cli_usage_error(usage_run, "NNTERP_FAIL_AT_BATCH='%s': expected STAGE:BATCH",
                                   fail_at);
        o.fail_at = true;
    }
    nn_err err = {{0}};
    /* Under mpirun every rank runs the job; a plain run is the same code with one rank. */
    bool mpi = nn_comm_launched_by_mpirun();
    if (mpi)
        MPI_Init(&argc, &argv);
    nn_comm comm = mpi ? nn_comm_world() : nn_comm_single();
    int rc = nn_run_job(job, &o, &comm, &err);
    /* Rank 0 reports before MPI_Finalize: once a rank exits non-zero, mpirun may kill the others,
     * and Finalize holds every rank until rank 0 is there. */
    int code = rc == NN_RUN_INTERRUPTED ? NN_RUN_INTERRUPTED : rc ? EXIT_FAILURE : 0;
    if (comm.rank == 0 && rc == NN_RUN_INTERRUPTED)
        fprintf(stderr, "nnterp: %s\n", err.msg);
    else if (comm.rank == 0 && rc)
        cli_fail(&err);
    fflush(stdout);
    fflush(stderr);
    if (mpi)
        MPI_Finalize();
    return code;
}

/* The options a command takes, by their long names in cli_options (cli/options.c); the groups
 * below are what several commands share. */
#define MODEL_OPTIONS "--model", "--tokenizer", "--compute"
#define CHAT_OPTIONS                                                                               \
    "--chat-template", "--now", "--transformers", "--add-generation-prompt",                       \
        "--continue-final-message"
/* prompts as -p TEXT, --ids IDS or --chat FILE.json (cli_prompt_ids) */
#define PROMPT_OPTIONS "--prompt", "--ids", "--chat", "--no-special", CHAT_OPTIONS
#define SAMPLING_OPTIONS "--temperature", "--top-p", "--seed"
/* patchscope --target it-repeat (cli_it_repeat_ids) */
#define IT_REPEAT_OPTIONS                                                                          \
    "--chat-template", "--now", "--transformers", "--no-user-instr", "--no-system-prompt",         \
        "--no-complete-prompt"

static const char *const inspect_options[] = {"--model", NULL};
static const char *const tokenize_options[] = {"--model", "--tokenizer", "--ids", "--no-special",
                                               NULL};
static const char *const generate_options[] = {
    MODEL_OPTIONS, PROMPT_OPTIONS, "-n", SAMPLING_OPTIONS, "--print-ids", "--no-eos", NULL};
static const char *const trace_options[] = {MODEL_OPTIONS, PROMPT_OPTIONS, "--save",
                                            "--layers",    "--output",     NULL};
static const char *const lens_options[] = {MODEL_OPTIONS, PROMPT_OPTIONS, "--top-k",  "--layers",
                                           "--positions", "--inverse",    "--output", "--plot",
                                           "--targets",   "--json",       NULL};
static const char *const patchscope_options[] = {
    MODEL_OPTIONS,     "--no-special", "--source",   "--target",       "--index",
    "--layers",        "--top-k",      "--generate", SAMPLING_OPTIONS, "--plot",
    IT_REPEAT_OPTIONS, "--targets",    "--json",     "--output",       NULL};
static const char *const steer_options[] = {
    MODEL_OPTIONS, PROMPT_OPTIONS, "--vector",       "--contrast", "--layers", "--factor",
    "-n",          "--top-k",      SAMPLING_OPTIONS, "--no-eos",   NULL};
static const char *const probs_options[] = {MODEL_OPTIONS, "--file", "--no-special", NULL};
static const char *const patch_options[] = {
    MODEL_OPTIONS, "--no-special", "--source", "--target", "--hook",   "--layers", "--positions",
    "--sweep",     "--targets",    "--top-k",  "--json",   "--output", NULL};
static const char *const skip_options[] = {MODEL_OPTIONS, PROMPT_OPTIONS, "--layers", "--sweep",
                                           "--targets",   "--top-k",      "--json",   NULL};
static const char *const attn_edit_options[] = {
    MODEL_OPTIONS, PROMPT_OPTIONS,  "--key",     "--scale", "--layers", "--head",
    "--query",     "--renormalize", "--targets", "--top-k", "--json",   NULL};
static const char *const object_lens_options[] = {
    MODEL_OPTIONS, "--no-special", "--source", "--target", "--index", "--num-patches",
    "--layers",    "--targets",    "--top-k",  "--json",   NULL};
static const char *const sae_options[] = {
    "--model", "--tokenizer", PROMPT_OPTIONS, "--sae", "--hook", "--top-k", NULL};
static const char *const chat_template_options[] = {"--model", "--messages", CHAT_OPTIONS, NULL};
static const char *const plot_options[] = {"--output", "--prompt",  "--op",
                                           "--top-k",  "--model",   "--tokenizer",
                                           "--title",  "--feature", NULL};
static const char *const plot_feature_options[] = {"--feature", "--output", "--sae",       "--op",
                                                   "--context", "--model",  "--tokenizer", NULL};
static const char *const plan_options[] = {
    "--model",         "--ranks",          "--stages",  "--threads", "--cores",
    "--batch-tokens",  "--prompt-tokens",  "--tokens",  "--logits",  "--lens",
    "--shard-batches", "--measure-layers", "--compute", NULL};
static const char *const run_options[] = {"--resume",         "--stages", "--dry-run", "--progress",
                                          "--progress-every", "--quiet",  "--compute", NULL};

/* Every command: main() dispatches on argv[1], nnterp --help lists them in this order, and the
 * parsers reject a flag that a command's row does not name (docs/adding-a-command.md). */
const cli_command cli_commands[] = {
    {"run", cmd_run,
     "JOB.json [--resume] [--stages P] [--dry-run] [--progress] [--quiet]\n"
     "                                the main job: a dataset into one HDF5 store",
     run_options},
    {"inspect", cmd_inspect, "-m MODEL                         family, sizes, hook points, notes",
     inspect_options},
    {"tokenize", cmd_tokenize, "-m MODEL [--ids] [--] TEXT       token ids and pieces",
     tokenize_options},
    {"generate", cmd_generate,
     "-m MODEL (-p TEXT | --ids \"1 2 3\") [-n N] [--temperature T] [--top-p P]\n"
     "[--seed S] [--print-ids]",
     generate_options},
    {"trace", cmd_trace,
     "-m MODEL (-p TEXT | --ids \"1 2 3\")... --save HOOKS [--layers SPEC] -o OUT.h5",
     trace_options},
    {"lens", cmd_lens,
     "-m MODEL -p TEXT [-k K] [--layers SPEC] [--positions P] [--inverse] [-o OUT.h5]\n"
     "[--plot F.png|F.html]",
     lens_options},
    {"patchscope", cmd_patchscope,
     "-m MODEL --source TEXT [--target TEXT --index I] [--layers SPEC] [-k K]\n"
     "[--generate N] [--plot F.png|F.html]",
     patchscope_options},
    {"steer", cmd_steer,
     "-m MODEL -p TEXT (--vector FILE.npy | --contrast A B) --layers SPEC --factor F [-n N]",
     steer_options},
    {"probs", cmd_probs,
     "-m MODEL -f PROMPTS.jsonl         target-token probabilities (run_prompts)", probs_options},
    {"patch", cmd_patch,
     "-m MODEL --source TEXT --target TEXT [--hook H] [--layers SPEC] [--positions P]\n"
     "[--sweep] [--targets W,..] [--json] [-o OUT.h5]   activation patching",
     patch_options},
    {"skip", cmd_skip,
     "-m MODEL -p TEXT --layers SPEC [--sweep] [--targets W,..] [-k K] [--json]\n"
     "skip layers (output := input)",
     skip_options},
    {"attn-edit", cmd_attn_edit,
     "-m MODEL -p TEXT --key K,.. --scale F [--layers SPEC] [--head H,..]\n"
     "[--query Q,..] [--renormalize] [--targets W,..] [-k K] [--json]\n"
     "scale (or zero) attention probabilities",
     attn_edit_options},
    {"object-lens", cmd_object_lens,
     "-m MODEL --source TEXT --target TEXT --index I [--num-patches N]\n"
     "[--layers SPEC] [--targets W,..] [-k K] [--json]   nnterp's patch_object_attn_lens",
     object_lens_options},
    {"plot", cmd_plot,
     "STORE.h5 [--prompt P] -o FILE.png|FILE.html   stored lens results (or a patch sweep)",
     plot_options},
    {"plot --feature", cli_plot_feature,
     "STORE.h5 --feature F [--sae I] -o FILE.html|FILE.png   an SAE feature's page",
     plot_feature_options},
    {"plan", cmd_plan,
     "-m MODEL --ranks N --stages P [--tokens T]   layer split, memory per rank and\n"
     "predicted tokens/s of a distributed run, from costs measured here",
     plan_options},
    {"sae", cmd_sae,
     "-m MODEL --sae DIR -p TEXT [--hook NAME] [-k K]   each token's top SAE features",
     sae_options},
    {"chat-template", cmd_chat_template,
     "-m MODEL --messages FILE.json   a conversation rendered by the model's chat template",
     chat_template_options},
    {NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    nn_blas_sleep_when_idle();
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        print_usage_main(stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("nnterp %s\n", NNTERP_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--list-commands") || !strcmp(argv[1], "--list-options"))
        return cli_list(argc, argv); /* hidden: for tests/test_cli.sh */
    const cli_command *c = strchr(argv[1], ' ') ? NULL : cli_command_find(argv[1]);
    if (c)
        return c->run(argc, argv);
    fprintf(stderr, "nnterp: unknown command '%s'\n\n", argv[1]);
    print_usage_main(stderr);
    return EXIT_USAGE;
}
