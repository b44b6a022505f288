/* Conversations in jobs (job_chat.h). */
#include "job_chat.h"

#include <string.h>

int nn_job_chat_open(const nn_job *job, nn_chat_template **t, nn_chat_options *opt, nn_err *err)
{
    *t = NULL;
    opt->add_generation_prompt = job->chat_add_generation_prompt;
    opt->continue_final_message = job->chat_continue_final_message;
    opt->transformers =
        job->chat_transformers == 4 ? NN_CHAT_TRANSFORMERS_4 : NN_CHAT_TRANSFORMERS_5;
    if (nn_chat_parse_date(job->chat_now, &opt->now, err))
        return nn_err_prefix(err, "chat.now");
    return nn_chat_template_load(job->model, job->chat_template, t, err);
}

int nn_job_it_repeat_ids(const nn_job *job, const nn_op *op, nn_tokenizer *tok, nn_ids *ids,
                         nn_err *err)
{
    nn_chat_template *t;
    nn_chat_options opt;
    if (nn_job_chat_open(job, &t, &opt, err))
        return NN_ERR;
    nn_it_repeat p = nn_it_repeat_default();
    p.add_user_instr = op->it_add_user_instr;
    p.use_system_prompt = op->it_use_system_prompt;
    p.complete_prompt = op->it_complete_prompt;
    char *conv = NULL;
    opt.add_generation_prompt = false;
    opt.continue_final_message = true; /* as nnterp's it_repeat_prompt renders it */
    int rc = nn_it_repeat_conversation(&p, &conv, err);
    if (!rc)
        rc = nn_chat_encode(t, tok, conv, strlen(conv), &opt, ids, NULL, err);
    nn_free(conv);
    nn_chat_template_free(t);
    return rc;
}
