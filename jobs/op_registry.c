/* Every job operation, one row each (docs/adding-an-operation.md). The order is the one the job
 * file's "op '...' is not one of ..." message lists. */
#include "op.h"

#include <string.h>

const nn_op_class *const nn_op_classes[] = {
    &nn_op_collect, &nn_op_logit_lens, &nn_op_target_probs, &nn_op_patchscope_lens,
    &nn_op_steer,   &nn_op_generate,   &nn_op_sae,
    &nn_op_activation_patch,
    &nn_op_skip_layers, &nn_op_attention_edit, &nn_op_object_attn_lens,
};
const int nn_n_op_classes = (int)(sizeof nn_op_classes / sizeof nn_op_classes[0]);

const nn_op_class *nn_op_class_find(const char *name)
{
    for (int i = 0; i < nn_n_op_classes; i++)
        if (!strcmp(nn_op_classes[i]->name, name))
            return nn_op_classes[i];
    return NULL;
}
