#include "generate.h"

#include "context.h"
#include "generate_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

nn_generate_params nn_generate_default_params(void)
{
    return (nn_generate_params){
        .max_new_tokens = 32, .temperature = 0.0f, .top_p = 1.0f, .seed = 42, .stop_at_eos = true};
}

int nn_argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

uint64_t nn_sample_seed(uint64_t seed)
{
    return seed ? seed : 0x9E3779B97F4A7C15ULL;
}

/* xorshift64*: small, seedable, the same stream on every platform. */
static float random_unit(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (float)((*state * 0x2545F4914F6CDD1DULL) >> 40) / 16777216.0f;
}

typedef struct {
    float p;
    int id;
} candidate;

static int by_prob_desc(const void *a, const void *b)
{
    float x = ((const candidate *)a)->p, y = ((const candidate *)b)->p;
    return x > y ? -1 : x < y ? 1 : ((const candidate *)a)->id - ((const candidate *)b)->id;
}

size_t nn_sample_scratch_bytes(int V)
{
    return (size_t)V * sizeof(candidate);
}

int nn_sample_token(float *logits, int V, const nn_generate_params *p, uint64_t *rng,
                    void *scratch_bytes)
{
    candidate *scratch = scratch_bytes;
    if (p->temperature <= 0.0f)
        return nn_argmax(logits, V);
    for (int i = 0; i < V; i++)
        logits[i] /= p->temperature;
    nn_softmax(logits, (size_t)V);
    float r = random_unit(rng);
    if (p->top_p <= 0.0f || p->top_p >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < V; i++) {
            cdf += logits[i];
            if (r < cdf)
                return i;
        }
        return V - 1;
    }
    for (int i = 0; i < V; i++)
        scratch[i] = (candidate){logits[i], i};
    qsort(scratch, (size_t)V, sizeof *scratch, by_prob_desc);
    float mass = 0.0f;
    int keep = V;
    for (int i = 0; i < V; i++) {
        mass += scratch[i].p;
        if (mass >= p->top_p) {
            keep = i + 1;
            break;
        }
    }
    float cdf = 0.0f;
    r *= mass;
    for (int i = 0; i < keep; i++) {
        cdf += scratch[i].p;
        if (r < cdf)
            return scratch[i].id;
    }
    return scratch[keep - 1].id;
}

int nn_generate_ctx(nn_context *cx, const int32_t *prompt, int n_prompt,
                    const nn_generate_params *p, int32_t *out, int *n_out, nn_err *err)
{
    const nn_model *m = nn_context_model(cx);
    *n_out = 0;
    const nn_config *c = &m->cfg;
    if (n_prompt < 1)
        return nn_fail(err, "generate: the prompt is empty");
    if (n_prompt > c->max_positions)
        return nn_fail(err, "generate: prompt of %d tokens exceeds the model's context of %d",
                       n_prompt, c->max_positions);
    if (p->max_new_tokens < 0)
        return nn_fail(err, "generate: max_new_tokens must be >= 0");
    long cap = (long)n_prompt + p->max_new_tokens;
    if (cap > c->max_positions)
        cap = c->max_positions;
    nn_state *s = NULL;
    nn_state_params sp = {
        .max_tokens = n_prompt, .max_seqs = 1, .n_slots = 1, .slot_capacity = (int)cap};
    candidate *scratch = NULL;
    float *logits = NULL;
    int rc = NN_ERR;
    if (nn_context_state(cx, &sp, &s, err) ||
        !(scratch = nn_malloc((size_t)c->vocab_size * sizeof *scratch, err)) ||
        !(logits = nn_malloc((size_t)c->vocab_size * sizeof *logits, err)))
        goto done;
    uint64_t rng = nn_sample_seed(p->seed);
    int slot = 0, pos = 0, offsets[2] = {0, n_prompt};
    nn_batch b = {.tokens = prompt,
                  .n_tokens = n_prompt,
                  .n_seqs = 1,
                  .offsets = offsets,
                  .pos0 = &pos,
                  .slot = &slot};
    nn_forward_params fp = {.hooks = p->hooks, .want_logits = true};
    int32_t token;
    for (int i = 0; i < p->max_new_tokens; i++) {
        if (i > 0) {
            if (pos + b.n_tokens >= cap)
                break; /* the context is full */
            pos += b.n_tokens;
            b.tokens = &token;
            b.n_tokens = 1;
            offsets[1] = 1;
        }
        int f = nn_context_run(cx, s, &b, &fp, err);
        if (f == NN_ERR)
            goto done;
        memcpy(logits, nn_state_logits(s), (size_t)c->vocab_size * sizeof *logits);
        token = nn_sample_token(logits, c->vocab_size, p, &rng, scratch);
        out[(*n_out)++] = token;
        if (p->on_token && p->on_token(token, p->user, err) < 0)
            goto done;
        if (p->stop_at_eos && token == c->eos_token_id)
            break;
    }
    rc = NN_OK;
done:
    nn_free(scratch);
    nn_free(logits);
    return rc;
}

int nn_generate(const nn_model *m, const int32_t *prompt, int n_prompt, const nn_generate_params *p,
                int32_t *out, int *n_out, nn_err *err)
{
    *n_out = 0;
    nn_context *cx;
    if (nn_context_init(&cx, m, NULL, err))
        return NN_ERR;
    int rc = nn_generate_ctx(cx, prompt, n_prompt, p, out, n_out, err);
    nn_context_free(cx);
    return rc;
}
