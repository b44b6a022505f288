/* What the intervention ops (skip_layers, attention_edit, object_attn_lens) share: the next-token
 * results of an edited pass, top-k ids and probabilities and the dataset's targets' probabilities,
 * declared and written per prompt. Internal to jobs/. */
#ifndef NN_OP_INTERVENE_H
#define NN_OP_INTERVENE_H

#include "op.h"

/* Declares <g>/<prefix>top_ids, top_probs [P, k] (or [P, layers, k] when layers > 0) and, with
 * targets, <prefix>target_probs [P, T] (or [P, layers, T]). */
int nn_iv_declare(nn_harvest *h, const nn_sink *sink, const char *g, const char *prefix,
                  int layers, int k, bool targets, nn_err *err);

/* The batch's results buffers: [n, slots, k] ids and probabilities and [n, slots, T] targets. */
typedef struct nn_iv_rows {
    int n, slots, k, T;
    int32_t *ids;
    float *probs, *targets;
} nn_iv_rows;

int nn_iv_rows_init(nn_iv_rows *r, const nn_harvest *h, int slots, int k, bool targets,
                    nn_err *err);
void nn_iv_rows_free(nn_iv_rows *r);
/* Slot `slot` of prompt h->begin + q from its next-token probabilities probs [V]. */
void nn_iv_rows_fill(nn_iv_rows *r, const nn_harvest *h, int q, int slot, const float *probs);
/* Softmax of each of the batch's n logits rows (the state's), into slot `slot` of every prompt;
 * scratch is h->probs. */
int nn_iv_rows_from_logits(nn_iv_rows *r, nn_harvest *h, const float *logits, int slot,
                           nn_err *err);
/* Writes rows [h->begin, h->end) of <g>/<prefix>top_ids, top_probs (and target_probs), on the
 * pipeline's last stage only. */
int nn_iv_rows_write(const nn_iv_rows *r, nn_harvest *h, const char *g, const char *prefix,
                     nn_err *err);

/* "heads": "all" or an index or a list; "keys": an index or a list; "queries": -1, "all", an
 * index or a list. Ints into a new array (*n > 0), each within [min, max] (or `all_value` for
 * "all" where all_value is not 0). */
int nn_iv_parse_ints(const cJSON *o, const char *key, const char *path, const char *where,
                     long min, long max, int all_value, int fallback, int **out, int *n,
                     nn_err *err);
/* A JSON array of ints, for the resume identity. */
cJSON *nn_iv_int_array(const int *v, int n);

#endif
