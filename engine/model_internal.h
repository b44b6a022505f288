/* What the model loader's files share (model.c, model_weights.c, model_llama2c.c, model_config.c,
 * model_arch.c). Not public. */
#ifndef NN_MODEL_INTERNAL_H
#define NN_MODEL_INTERNAL_H

#include "model.h"

/* generation_config.json in dir, when present, has the last word on c's bos/eos. */
int nn_read_generation_config(const char *dir, nn_config *c, nn_err *err);

/* Hugging Face weights (model_weights.c): the embeddings, the head and every tensor m->cfg.arch's
 * row names for the layers [m->layer_begin, m->layer_end), into m. */
int nn_model_load_hf_weights(nn_model *m, nn_err *err);

/* Which weights are scanned for NaN and infinity at load (NNTERP_CHECK_WEIGHTS):
 * unset: the tensors converted at load (F16/BF16, misaligned), whose bytes are read anyway;
 * "1": every tensor, memory-mapped F32 too — a pass over the whole file, which breaks the promise
 *      that a process touches only what it computes with (a pipeline stage would read every
 *      layer; a large checkpoint would be read whole at start-up), hence opt-in;
 * "0": none. */
enum { NN_CHECK_NONE, NN_CHECK_CONVERTED, NN_CHECK_ALL };
int nn_check_weights(void);

/* The index of the first NaN or infinity in x[n] (exponent bits all ones), or n when none. */
size_t nn_first_non_finite(const float *x, size_t n);

#endif
