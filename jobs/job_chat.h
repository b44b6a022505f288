/* Conversations in jobs: dataset lines holding "messages" and the patchscope target it_repeat,
 * rendered by the model's chat template (or the job's "chat".template) per the job's "chat"
 * settings, then tokenized without adding special tokens (the template writes them). */
#ifndef NN_JOB_CHAT_H
#define NN_JOB_CHAT_H

#include "chat.h"
#include "job.h"

/* The template and render options of job (its "chat" object); *t: caller frees. */
int nn_job_chat_open(const nn_job *job, nn_chat_template **t, nn_chat_options *opt, nn_err *err);
/* The ids of op's it_repeat target (op->it_repeat). */
int nn_job_it_repeat_ids(const nn_job *job, const nn_op *op, nn_tokenizer *tok, nn_ids *ids,
                         nn_err *err);

#endif
