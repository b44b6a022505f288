/* A thin owner over nn_state and nn_run_tables: the tables once per model, one state regrown to
 * the largest shape asked of it. The numbers do not depend on a state's size (a row is computed
 * the same whatever batch holds it, engine.md), so a regrown or larger state gives the same bits
 * as a fresh state of the exact shape. */
#include "context.h"

#include "stage.h"

struct nn_context {
    const nn_model *model;
    nn_run_tables tables;
    nn_state *state;
    nn_state_params have; /* the shape of state (zeros: none yet) */
    bool busy;            /* a pass of nn_context_forward is running */
};

void nn_context_free(nn_context *ctx)
{
    if (!ctx)
        return;
    nn_state_free(ctx->state);
    nn_run_tables_free(&ctx->tables);
    nn_free(ctx);
}

int nn_context_init(nn_context **out, const nn_model *m, const nn_state_params *p, nn_err *err)
{
    *out = NULL;
    if (!m)
        return nn_fail(err, "context: no model");
    nn_context *ctx = nn_calloc(1, sizeof *ctx, err);
    if (!ctx)
        return NN_ERR;
    ctx->model = m;
    if (nn_run_tables_init(&ctx->tables, m, err))
        goto fail;
    if (p && (p->max_tokens > 0 || p->max_seqs > 0)) {
        nn_state *st;
        if (nn_context_state(ctx, p, &st, err))
            goto fail;
    }
    *out = ctx;
    return NN_OK;
fail:
    nn_context_free(ctx);
    return NN_ERR;
}

const nn_model *nn_context_model(const nn_context *ctx)
{
    return ctx->model;
}

static int larger(int a, int b)
{
    return a > b ? a : b;
}

int nn_context_state(nn_context *ctx, const nn_state_params *need, nn_state **out, nn_err *err)
{
    *out = NULL;
    if (ctx->busy)
        return nn_fail(err, "context: busy (a hook cannot start a pass on the context running it)");
    nn_state_params *h = &ctx->have;
    if (ctx->state && need->max_tokens <= h->max_tokens && need->max_seqs <= h->max_seqs &&
        need->n_slots <= h->n_slots &&
        (need->n_slots == 0 || need->slot_capacity <= h->slot_capacity)) {
        *out = ctx->state;
        return NN_OK;
    }
    nn_state_params grown = {.max_tokens = larger(need->max_tokens, h->max_tokens),
                             .max_seqs = larger(need->max_seqs, h->max_seqs),
                             .n_slots = larger(need->n_slots, h->n_slots),
                             .slot_capacity = larger(need->slot_capacity, h->slot_capacity)};
    if (grown.n_slots == 0)
        grown.slot_capacity = 0;
    /* The old state goes first: holding both would double the peak memory. */
    nn_state_free(ctx->state);
    ctx->state = NULL;
    ctx->have = (nn_state_params){0};
    if (nn_state_init_shared(&ctx->state, ctx->model, &grown, &ctx->tables, err))
        return NN_ERR;
    ctx->have = grown;
    *out = ctx->state;
    return NN_OK;
}

int nn_context_forward(nn_context *ctx, const nn_batch *b, const nn_forward_params *fp, nn_err *err)
{
    if (!b || b->n_tokens < 1 || b->n_seqs < 1)
        return nn_fail(err, "context: empty batch");
    nn_state *st;
    if (nn_context_state(ctx, &(nn_state_params){.max_tokens = b->n_tokens, .max_seqs = b->n_seqs},
                         &st, err))
        return NN_ERR;
    return nn_context_run(ctx, st, b, fp, err);
}

int nn_context_run(nn_context *ctx, nn_state *st, const nn_batch *b, const nn_forward_params *fp,
                   nn_err *err)
{
    if (ctx->busy)
        return nn_fail(err, "context: busy (a hook cannot start a pass on the context running it)");
    ctx->busy = true;
    int rc = nn_forward(ctx->model, st, b, fp, err);
    ctx->busy = false;
    return rc;
}

nn_state *nn_context_last_state(nn_context *ctx)
{
    return ctx->state;
}
