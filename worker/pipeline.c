#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

enum { TAG_STATUS = 11, TAG_HIDDEN = 12 };

/* Sends this stage's result to the next one without waiting for it to be received: a header
 * {status, n_tokens}, then the rows, from one of two buffers. A buffer is reused two sends later,
 * so a stage may run two batches ahead of the next before it waits. */
static void send_rows(nn_pipeline *p, int status, const float *rows, int n_tokens, int d)
{
    nn_pipeline_send *slot = &p->out[p->next];
    p->next ^= 1;
    MPI_Waitall(2, slot->req, MPI_STATUSES_IGNORE);
    size_t count = (size_t)n_tokens * (size_t)d;
    if (status == NN_OK && count > slot->cap) {
        float *grown = nn_realloc(slot->rows, count * sizeof *grown, &p->send_err);
        if (grown) {
            slot->rows = grown;
            slot->cap = count;
        } else {
            status = NN_ERR; /* the next stage learns it; this stage's error says why */
        }
    }
    slot->header[0] = status;
    slot->header[1] = status == NN_OK ? n_tokens : 0;
    MPI_Isend(slot->header, 2, MPI_INT, p->stage + 1, TAG_STATUS, p->comm, &slot->req[0]);
    if (status == NN_OK) {
        memcpy(slot->rows, rows, count * sizeof *rows);
        MPI_Isend(slot->rows, (int)count, MPI_FLOAT, p->stage + 1, TAG_HIDDEN, p->comm,
                  &slot->req[1]);
    }
}

static int pipeline_forward(void *ctx, const nn_model *m, nn_state *s, const nn_batch *b,
                            const nn_forward_params *fp, nn_err *err)
{
    nn_pipeline *p = ctx;
    int d = m->cfg.d_model, status = NN_OK;
    bool last = p->stage == p->n_stages - 1;
    if (p->stage > 0) {
        int header[2];
        MPI_Recv(header, 2, MPI_INT, p->stage - 1, TAG_STATUS, p->comm, MPI_STATUS_IGNORE);
        status = header[0];
        if (status == NN_OK && header[1] != b->n_tokens)
            status = nn_fail(err, "pipeline: stage %d sent %d rows for a batch of %d tokens",
                             p->stage - 1, header[1], b->n_tokens);
        else if (status == NN_OK)
            MPI_Recv(nn_state_hidden(s), b->n_tokens * d, MPI_FLOAT, p->stage - 1, TAG_HIDDEN,
                     p->comm, MPI_STATUS_IGNORE);
        else if (status == NN_ERR)
            nn_fail(err, "an earlier pipeline stage failed (its rank reports why)");
    }
    if (status == NN_OK)
        status =
            nn_forward_range(m, s, b, fp, m->layer_begin, m->layer_end, p->stage == 0, last, err);
    if (!last) {
        bool was_ok = status == NN_OK;
        send_rows(p, status, nn_state_hidden(s), b->n_tokens, d);
        if (was_ok && p->send_err.msg[0]) {
            *err = p->send_err;
            p->send_err.msg[0] = 0;
            status = NN_ERR;
        }
    }
    if (!fp || !fp->want_logits)
        return status; /* a later stage's failure surfaces when the round commits */
    int final = status;
    MPI_Bcast(&final, 1, MPI_INT, p->n_stages - 1, p->comm);
    if (final == NN_ERR && status != NN_ERR)
        nn_fail(err, "a later pipeline stage failed (its rank reports why)");
    if (final == NN_OK)
        MPI_Bcast(nn_state_logits_mut(s), b->n_seqs * m->cfg.vocab_size, MPI_FLOAT, p->n_stages - 1,
                  p->comm);
    return final;
}

void nn_pipeline_init(nn_pipeline *p, nn_model *m, MPI_Comm replica, int stage, int n_stages)
{
    memset(p, 0, sizeof *p);
    p->comm = replica;
    p->stage = stage;
    p->n_stages = n_stages;
    for (int i = 0; i < 2; i++)
        p->out[i].req[0] = p->out[i].req[1] = MPI_REQUEST_NULL;
    p->executor = (nn_executor){.ctx = p, .forward = pipeline_forward};
    m->executor = &p->executor;
}

void nn_pipeline_free(nn_pipeline *p)
{
    for (int i = 0; i < 2; i++) {
        MPI_Waitall(2, p->out[i].req, MPI_STATUSES_IGNORE);
        nn_free(p->out[i].rows);
        p->out[i].rows = NULL;
        p->out[i].cap = 0;
    }
}

double nn_pipeline_layer_cost_at(const nn_config *c, int layer)
{
    double d = c->d_model, qd = (double)c->n_heads * c->head_dim,
           kvd = (double)c->n_kv_heads * c->head_dim;
    double per_ff = (c->arch->gated_mlp ? 3.0 : 2.0) * d; /* weights per unit of MLP width */
    double mlp;
    if (nn_layer_moe(c, layer)) {
        /* each token runs its top-k experts of width moe_d_ff (d_ff is the dense layers' width
         * and may be much larger), the shared expert and the router */
        double expert_ff = c->moe_d_ff > 0 ? c->moe_d_ff : c->d_ff;
        mlp = per_ff * (expert_ff * c->n_experts_per_tok + c->shared_d_ff) +
              d * (double)c->n_experts;
    } else {
        mlp = per_ff * c->d_ff;
    }
    if (c->arch->mla) { /* latent attention: its low-rank projections, o from the value heads */
        double h = c->n_heads, rq = c->q_lora_rank, r = c->kv_lora_rank, dr = c->qk_rope_dim,
               dn = c->head_dim - c->qk_rope_dim, dv = c->v_head_dim;
        double q = rq > 0 ? d * rq + rq * qd : d * qd;
        return q + d * (r + dr) + r * h * (dn + dv) + h * dv * d + mlp;
    }
    return d * (qd + 2 * kvd) + qd * d + mlp;
}

double nn_pipeline_layer_cost(const nn_config *c)
{
    double sum = 0;
    for (int l = 0; l < c->n_layers; l++)
        sum += nn_pipeline_layer_cost_at(c, l);
    return c->n_layers > 0 ? sum / c->n_layers : 0;
}

int nn_pipeline_split(const nn_config *c, int P, double head_share, int *split, nn_err *err)
{
    int L = c->n_layers;
    size_t cells = ((size_t)P + 1) * ((size_t)L + 1);
    /* prefix[i]: the cost of layers [0, i), in units of the mean layer */
    double *prefix = nn_malloc(((size_t)L + 1) * sizeof *prefix, err);
    /* best[k][i]: the smallest largest-stage cost placing layers [0, i) on stages [0, k) */
    double *best = prefix ? nn_malloc(cells * sizeof *best, err) : NULL;
    int *cut = best ? nn_malloc(cells * sizeof *cut, err) : NULL;
    if (!cut) {
        free(prefix);
        free(best);
        return NN_ERR;
    }
#define AT(a, k, i) (a)[(size_t)(k) * ((size_t)L + 1) + (size_t)(i)]
    double mean = nn_pipeline_layer_cost(c);
    prefix[0] = 0;
    for (int i = 0; i < L; i++)
        prefix[i + 1] = prefix[i] + nn_pipeline_layer_cost_at(c, i) / mean;
    double head = head_share * (double)c->vocab_size * c->d_model / mean; /* in layers */
    for (int i = 0; i <= L; i++)
        AT(best, 1, i) = prefix[i] + (P == 1 ? head : 0);
    for (int k = 2; k <= P; k++)
        for (int i = k; i <= L; i++) {
            AT(best, k, i) = 1e300;
            for (int j = k - 1; j < i; j++) {
                double stage = prefix[i] - prefix[j] + (k == P && i == L ? head : 0);
                double prev = AT(best, k - 1, j);
                double cost = prev > stage ? prev : stage;
                if (cost < AT(best, k, i)) {
                    AT(best, k, i) = cost;
                    AT(cut, k, i) = j;
                }
            }
        }
    split[P] = L;
    for (int k = P, i = L; k > 1; k--) {
        i = AT(cut, k, i);
        split[k - 1] = i;
    }
    split[0] = 0;
#undef AT
    free(prefix);
    free(best);
    free(cut);
    return NN_OK;
}
