/* The job's operations as a table of classes (docs/adding-an-operation.md): each operation is one
 * file under jobs/ defining an nn_op_class, and one row of nn_op_classes[] (jobs/op_registry.c).
 * job.c parses an operation through its class, harvest.c runs it through its class's hooks; no
 * code outside the op's own file names an operation. This header is internal to jobs/: the op files
 * reach the harvest's state (model, state, sink, batch) through it. */
#ifndef NN_OP_H
#define NN_OP_H

#include <cJSON.h>

#include "harvest.h"
#include "nn_json.h"
#include "patchscope_batch.h"

typedef struct nn_op_state nn_op_state;

struct nn_op_class {
    const char *name; /* the job file's "op"; also the store group ("name", "name_2", ...) */
    /* The store group's name instead of the op's ("activations" for collect); NULL: the op's. */
    const char *store_group;
    /* The JSON fields the op accepts, NULL-terminated (the class's parse rejects the others). */
    const char *const *fields;
    /* The op always reads the dataset's targets (else only when its "targets" is true); it then
     * accepts "targets_field". */
    bool needs_targets;
    /* The class writes /<group>/layers itself (else the harvest writes it when the op has layers).
     */
    bool declares_layers;
    /* The JSON name of nn_op.generate for this op ("generate" for steer, "max_new_tokens" for
     * generate), NULL when the op has none: the resume identity names it so. */
    const char *generate_field;

    /* Parses the op's fields into op (where: "operations[i] (name)", for messages). */
    int (*parse)(const cJSON *o, const char *path, const char *where, nn_op *op, nn_err *err);
    /* Frees what parse allocated beyond nn_op's common fields (may be NULL). */
    void (*free_spec)(nn_op *op);

    /* Against the model and the corpus, before the run state exists: positions, vectors, targets
     * (after the harvest parsed the op's layers and checked top_k and targets). May set the
     * harvest's base_pass, need_logits and last_layer. NULL: nothing to resolve. */
    int (*resolve)(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err);
    /* After the run state exists (the SAE binds its GEMMs to it). NULL: nothing. */
    int (*bind)(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err);
    /* Declares the store arrays and attributes under group ("/activations", "/logit_lens_2"). */
    int (*declare)(nn_harvest *h, nn_op_state *s, const nn_sink *sink, const char *group,
                   nn_err *err);
    /* The shared base pass: adds the op's hooks (NULL: the op does not use the base pass). */
    int (*hooks)(nn_harvest *h, nn_op_state *s, nn_hookset *hs, const char *group, nn_err *err);
    /* After the base pass: writes what the op's hooks captured (NULL: nothing). */
    int (*collect)(nn_harvest *h, nn_op_state *s, const char *group, nn_err *err);
    /* The op's own passes over the batch, after the base pass (NULL: none). */
    int (*run)(nn_harvest *h, nn_op_state *s, const nn_batch *b, const char *group, nn_err *err);
    /* Frees the op's resolved state (s->priv). NULL: nothing beyond the common fields. */
    void (*free)(nn_op_state *s);

    /* Result-changing fields the class adds to the resume identity (coord/identity.c), beyond the
     * common table there: their names (NULL-terminated, NULL: none) and a function adding their
     * values to obj under those names. */
    const char *const *identity_fields;
    int (*identity)(const nn_op *op, cJSON *obj, nn_err *err);
};

/* The registry: every operation, in the order the job file's error message lists them. */
extern const nn_op_class *const nn_op_classes[];
extern const int nn_n_op_classes;
const nn_op_class *nn_op_class_find(const char *name);

extern const nn_op_class nn_op_collect, nn_op_logit_lens, nn_op_target_probs, nn_op_patchscope_lens,
    nn_op_steer, nn_op_generate, nn_op_sae;
extern const nn_op_class nn_op_activation_patch;
extern const nn_op_class nn_op_skip_layers, nn_op_attention_edit, nn_op_object_attn_lens;

/* The collect op of `nnterp trace` (jobs/trace.c; the file of docs/trace-format.md): hooks[k]
 * at its own layers layers[k][0 .. n_layers[k]) (read for per-layer points only), every position,
 * attention probabilities as one [heads, T, T] array per prompt, no "positions" attribute. Fills
 * op (zeroed here) so that nn_job_free frees it. */
int nn_op_collect_trace(nn_op *op, int n_hooks, const nn_hook_point *hooks, int *const *layers,
                        const int *n_layers, nn_err *err);

/* ---- The harvest as the op files see it ---- */

struct nn_op_state {
    const nn_op *op;
    int *layers; /* the op's "layers", parsed against the model */
    int n_layers;
    int64_t *row_offsets; /* [P + 1] rows of each prompt (ops with positions) */
    int64_t *token_index; /* [rows] global token of each row, when positions are not "all" */
    void *priv;           /* the class's own resolved state */
};

struct nn_harvest {
    const nn_model *m;
    nn_tokenizer *tok;
    const nn_job *job;
    const nn_corpus *c;
    nn_op_state *ops;
    int n_ops;
    nn_state *st;
    /* Per-prompt operations (patchscope, generation) run on this context: its state, pool and
     * rotary tables are made once per job, not once per prompt. */
    nn_context *cx;
    int max_tokens, max_prompts;
    bool base_pass, need_logits;
    int last_layer; /* the base pass may stop after this layer */
    /* base-pass scratch */
    int begin, end; /* the batch's prompts */
    int64_t tok0;   /* the batch's first global token */
    float *gather;  /* rows gathered for a write */
    size_t gather_cap;
    float *probs, *normed; /* (rows, V), (rows, d) */
    size_t probs_cap, normed_cap;
    int *batch_offsets; /* [max_prompts + 1] */
    const nn_sink *sink;
};

/* ---- Helpers the op files share (jobs/harvest.c) ---- */

int nn_op_prompt_len(const nn_corpus *c, int p);
/* The rows of an op with positions: s->row_offsets and, unless "all", s->token_index. */
int nn_op_resolve_rows(nn_harvest *h, nn_op_state *s, const char *where, nn_err *err);
/* Sum of probs over the first-token ids of target t of prompt p. */
float nn_op_target_sum(const nn_corpus *c, int p, int t, const float *probs);
/* The op's layer indices [*l0, *l1) this process holds (all of them outside a pipeline). */
void nn_op_owned_layers(const nn_harvest *h, const nn_op_state *s, int *l0, int *l1);
nn_sink_type nn_op_activation_type(const nn_job *job);
int nn_op_declare(const nn_sink *s, const char *path, nn_sink_type t, int rank, uint64_t d0,
                  uint64_t d1, uint64_t d2, nn_err *err);
int nn_op_write_all_i32(const nn_sink *s, const char *path, const int *v, int n, nn_err *err);
/* The lens outputs: (rows, layers, k) ids and probabilities, plus (rows, layers, targets)
 * target probabilities when targets > 0. */
int nn_op_declare_lens(const nn_sink *s, const char *g, uint64_t rows, uint64_t layers, uint64_t k,
                       uint64_t targets, nn_err *err);
/* The string field `field` of every prompt's dataset line, encoded (the job's special-token rule)
 * and appended to all; prompt p's tokens are all->ids[offsets[p] .. offsets[p + 1]) (offsets has
 * P + 1 entries). what names the field's role in messages ("patchscope target"). A missing or
 * empty field is an error naming the line (jobs/op_fields.c). */
int nn_op_read_field(nn_harvest *h, const char *field, const char *what, nn_ids *all,
                     int64_t *offsets, nn_err *err);
/* The batch's generations (op->generate tokens each, under hooks) into path (jobs/op_generate.c).
 */
int nn_op_generate_rows(nn_harvest *h, const nn_op *op, const nn_hookset *hooks, const char *path,
                        nn_err *err);

/* temperature, top_p, seed: the sampling fields of steer and generate (jobs/op_generate.c). */
int nn_op_parse_sampling(const cJSON *o, const char *path, const char *where, nn_op *op,
                         nn_err *err);
/* /<group>/tokens [prompts, op->generate] and its attribute, when op->generate > 0. */
int nn_op_declare_tokens(nn_harvest *h, const nn_op *op, const nn_sink *sink, const char *g,
                         nn_err *err);

/* ---- Helpers the op classes' parse functions share (jobs/job.c) ---- */

/* Rejects keys of obj not in allowed (NULL-terminated). */
int nn_job_only_fields(const cJSON *obj, const char *const *allowed, const char *path,
                       const char *where, nn_err *err);
int nn_job_dup_string(const cJSON *obj, const char *key, bool required, const char *fallback,
                      const char *path, char **out, nn_err *err);
int nn_job_parse_positions(const cJSON *obj, const char *def, const char *path, const char *where,
                           nn_positions *out, nn_err *err);
int nn_job_parse_layers(const cJSON *obj, const char *path, const char *where, char **out,
                        nn_err *err);
/* Names the operation in an error that does not name it yet. */
int nn_job_in_op(nn_err *err, const char *where);

#endif
