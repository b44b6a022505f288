/* What the model loader's files share (model.c, model_config.c, model_arch.c). Not public. */
#ifndef NN_MODEL_INTERNAL_H
#define NN_MODEL_INTERNAL_H

#include "model.h"

/* generation_config.json in dir, when present, has the last word on c's bos/eos. */
int nn_read_generation_config(const char *dir, nn_config *c, nn_err *err);

#endif
