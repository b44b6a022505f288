/* What the toolkit's files share (toolkit.c, toolkit_intervene.c): the row of a position in a
 * packed batch, and the hook that writes a saved row into it. Internal to the engine. */
#ifndef NN_TOOLKIT_INTERNAL_H
#define NN_TOOLKIT_INTERNAL_H

#include "toolkit.h"

/* The batch row of `position` of sequence `seq` in this call, or -1 when the call does not hold
 * it (a KV-cache continuation starts at pos0). */
int nn_tk_row_of(const nn_batch *b, int seq, int position);

/* Writes `value` into position `position` of sequence `seq` (or of every sequence when seq < 0),
 * at whatever call holds that position. */
typedef struct nn_tk_patch_row {
    const float *value;
    int seq, position;
    size_t d;
} nn_tk_patch_row;
int nn_tk_patch_row_hook(const nn_hook_view *v, void *user, nn_err *err);

/* The last position's logits of each prompt [n_prompts][vocab], the prompts packed into one
 * pass with the given hooks. */
int nn_tk_last_logits(nn_context *cx, const nn_prompt *prompts, int n_prompts,
                      const nn_hookset *hooks, float *out, nn_err *err);

#endif
