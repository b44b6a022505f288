#include "generate_batch.h"

#include "context.h"
#include "generate_internal.h"

#include <string.h>

int nn_generate_batch_ctx(nn_context *cx, const int32_t *tokens, const int64_t *offsets,
                          int n_prompts, const nn_generate_params *p, const uint64_t *seeds,
                          int32_t *out, int *n_out, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    const nn_config *c = &m->cfg;
    int G = p->max_new_tokens, V = c->vocab_size;
    if (n_prompts < 1)
        return nn_fail(err, "generate: no prompts");
    if (G < 0)
        return nn_fail(err, "generate: max_new_tokens must be >= 0");
    if (p->on_token)
        return nn_fail(err, "generate: a batch cannot stream tokens (on_token must be NULL)");
    if (offsets[0] != 0)
        return nn_fail(err, "generate: offsets[0] must be 0");
    long max_cap = 1;
    for (int q = 0; q < n_prompts; q++) {
        n_out[q] = 0;
        int64_t n = offsets[q + 1] - offsets[q];
        if (n < 1)
            return nn_fail(err, "generate: prompt %d is empty", q);
        if (n > c->max_positions)
            return nn_fail(err,
                           "generate: prompt %d of %lld tokens exceeds the model's context of %d",
                           q, (long long)n, c->max_positions);
        long cap = (long)n + G;
        if (cap > c->max_positions)
            cap = c->max_positions;
        if (cap > max_cap)
            max_cap = cap;
    }
    int64_t total = offsets[n_prompts];
    if (total > 0x7fffffff)
        return nn_fail(err, "generate: %lld prompt tokens in one batch", (long long)total);
    if (G == 0)
        return NN_OK;
    nn_state *s = NULL;
    nn_state_params sp = {.max_tokens = (int)total,
                          .max_seqs = n_prompts,
                          .n_slots = n_prompts,
                          .slot_capacity = (int)max_cap};
    size_t n = (size_t)n_prompts;
    /* Per sequence: sampler state, position of its next input, the sequence it is in the step's
     * batch; per step row: the sequence, its input token, position and slot. */
    uint64_t *rng = NULL;
    int *pos = NULL, *cap = NULL, *row_seq = NULL, *row_pos = NULL, *row_slot = NULL;
    int *row_off = NULL;
    int32_t *row_tok = NULL;
    float *logits = NULL;
    void *scratch = NULL;
    int rc = NN_ERR;
    if (nn_context_state(cx, &sp, &s, err) || !(rng = nn_malloc(n * sizeof *rng, err)) ||
        !(pos = nn_malloc(n * sizeof *pos, err)) || !(cap = nn_malloc(n * sizeof *cap, err)) ||
        !(row_seq = nn_malloc(n * sizeof *row_seq, err)) ||
        !(row_pos = nn_malloc(n * sizeof *row_pos, err)) ||
        !(row_slot = nn_malloc(n * sizeof *row_slot, err)) ||
        !(row_off = nn_malloc((n + 1) * sizeof *row_off, err)) ||
        !(row_tok = nn_malloc(n * sizeof *row_tok, err)) ||
        !(logits = nn_malloc((size_t)V * sizeof *logits, err)) ||
        !(scratch = nn_malloc(nn_sample_scratch_bytes(V), err)))
        goto done;
    /* The prefill: every prompt whole, in its own slot, from position 0. */
    for (int q = 0; q < n_prompts; q++) {
        rng[q] = nn_sample_seed(seeds ? seeds[q] : p->seed);
        int len = (int)(offsets[q + 1] - offsets[q]);
        cap[q] = len + G > c->max_positions ? c->max_positions : len + G;
        pos[q] = len; /* the position of its first generated token */
        row_seq[q] = q;
        row_pos[q] = 0;
        row_slot[q] = q;
        row_off[q] = (int)offsets[q];
    }
    row_off[n_prompts] = (int)total;
    nn_batch b = {.tokens = tokens,
                  .n_tokens = (int)total,
                  .n_seqs = n_prompts,
                  .offsets = row_off,
                  .pos0 = row_pos,
                  .slot = row_slot};
    nn_forward_params fp = {.hooks = p->hooks, .want_logits = true};
    int rows = n_prompts;
    for (int i = 0; i < G && rows > 0; i++) {
        if (nn_context_run(cx, s, &b, &fp, err) == NN_ERR)
            goto done;
        const float *all = nn_state_logits(s);
        /* Choose each row's token, then keep the sequences that go on, in order. */
        int next = 0;
        for (int r = 0; r < rows; r++) {
            int q = row_seq[r];
            memcpy(logits, all + (size_t)r * V, (size_t)V * sizeof *logits);
            int32_t token = nn_sample_token(logits, V, p, &rng[q], scratch);
            out[(size_t)q * G + n_out[q]++] = token;
            if (p->stop_at_eos && token == c->eos_token_id)
                continue;
            if (pos[q] >= cap[q])
                continue; /* its context is full: the token is kept but not fed */
            row_seq[next] = q;
            row_tok[next] = token;
            row_pos[next] = pos[q]++;
            row_slot[next] = q;
            next++;
        }
        rows = next;
        for (int r = 0; r <= rows; r++)
            row_off[r] = r;
        b = (nn_batch){.tokens = row_tok,
                       .n_tokens = rows,
                       .n_seqs = rows,
                       .offsets = row_off,
                       .pos0 = row_pos,
                       .slot = row_slot};
    }
    rc = NN_OK;
done:
    nn_free(rng);
    nn_free(pos);
    nn_free(cap);
    nn_free(row_seq);
    nn_free(row_pos);
    nn_free(row_slot);
    nn_free(row_off);
    nn_free(row_tok);
    nn_free(logits);
    nn_free(scratch);
    return rc;
}
