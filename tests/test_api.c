/* The public header's example compiles and runs as documented (nnterp.h). */
#include <stdio.h>
#include <string.h>

#include "nn_test.h"
#include "nnterp.h"

int main(void)
{
    const char *shared = nn_test_shared_dir("test_api");
    nn_err err = {{0}};
    char *dir = nn_path_join(shared, "models/stories260K/hf", &err);
    nn_model *m = NULL;
    nn_tokenizer *tok = NULL;
    nn_ids ids = {0};
    const char *text = "Once upon a time, there was a little girl named";
    CHECK_OK(nn_model_load(dir, &m, &err), &err);
    CHECK_OK(nn_tokenizer_load(dir, &tok, &err), &err);
    CHECK_OK(nn_tokenizer_encode(tok, text, strlen(text), true, &ids, &err), &err);
    if (m && tok) {
        nn_prompt p = {ids.ids, (int)ids.n};
        nn_lens_params lp = {.top_k = 5};
        nn_lens_result r;
        CHECK_OK(nn_logit_lens(m, &p, 1, &lp, &r, &err), &err);
        CHECK(r.n_layers == 5 && r.top_ids[4 * r.top_k] == 317,
              "the last layer's top-1 is ' Lily'");
        nn_lens_result_free(&r);
    }
    nn_ids_free(&ids);
    nn_tokenizer_free(tok);
    nn_model_free(m);
    nn_free(dir);
    return nn_test_finish("test_api");
}
