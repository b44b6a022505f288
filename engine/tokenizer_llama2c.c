/* llama2.c's tokenizer.bin: loading, and run.c's encode and decode. */
#include "tokenizer_internal.h"

/* ---- llama2.c tokenizer.bin -------------------------------------------------------------------
 */

int tok_load_llama2c(nn_tokenizer *t, const char *path, nn_err *err)
{
    nn_mapped_file f;
    if (nn_file_map(path, &f, err))
        return NN_ERR;
    int rc = NN_ERR;
    buf arena = {0};
    size_t cap = 0, n = 0, off = 4;
    if (f.size < 4) {
        nn_fail(err, "%s: too short for a llama2.c tokenizer header", path);
        goto done;
    }
    int32_t max_len;
    memcpy(&max_len, f.data, 4);
    if (max_len <= 0 || max_len > 65536) {
        nn_fail(err, "%s: header field 'max_token_length' = %d is out of range", path, max_len);
        goto done;
    }
    while (off < f.size) {
        if (f.size - off < 8) {
            nn_fail(err, "%s: token %zu: truncated record header at byte %zu", path, n, off);
            goto done;
        }
        float score;
        int32_t len;
        memcpy(&score, f.data + off, 4);
        memcpy(&len, f.data + off + 4, 4);
        off += 8;
        if (len < 0 || len > max_len || (size_t)len > f.size - off) {
            nn_fail(
                err,
                "%s: token %zu: length %d is negative, above max_token_length %d, or past the end",
                path, n, len, max_len);
            goto done;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            size_t *po = nn_realloc(t->piece_off, cap * sizeof *po, err);
            if (!po)
                goto done;
            t->piece_off = po;
            uint32_t *pl = nn_realloc(t->piece_len, cap * sizeof *pl, err);
            if (!pl)
                goto done;
            t->piece_len = pl;
            float *sc = nn_realloc(t->scores, cap * sizeof *sc, err);
            if (!sc)
                goto done;
            t->scores = sc;
        }
        t->scores[n] = score;
        if (tok_set_piece(t, &arena, (int32_t)n, (const char *)f.data + off, (size_t)len, err))
            goto done;
        off += (size_t)len;
        n++;
    }
    t->n_vocab = n;
    if (n < 3) {
        nn_fail(err, "%s: %zu tokens; a llama2.c vocabulary has at least <unk>, <s>, </s>", path,
                n);
        goto done;
    }
    if (!(t->special = nn_calloc(n, sizeof *t->special, err)))
        goto done;
    t->arena = arena.p;
    arena.p = NULL;
    /* First occurrence wins for duplicate pieces, as a stable lookup would give. */
    for (size_t i = n; i-- > 0;)
        if (nn_strmap_put(&t->vocab, t->arena + t->piece_off[i], t->piece_len[i], (int32_t)i, err))
            goto done;
    t->special[0] = t->special[1] = t->special[2] = true;
    t->unk_id = 0;
    t->bos_id = 1;
    t->eos_id = 2;
    t->prefix[t->n_prefix++] = 1;
    rc = NN_OK;
done:
    buf_free(&arena);
    nn_file_unmap(&f);
    return rc;
}

/* llama2.c run.c's encode: a dummy-prefix space token, code points (or their bytes + 3), then
 * repeatedly the highest-scoring merge of two adjacent pieces (the leftmost on ties). */
static int encode_llama2c(nn_tokenizer *t, const char *text, size_t len, bool add_special,
                          nn_ids *out, nn_err *err)
{
    len = strnlen(text, len); /* run.c reads a C string */
    if (add_special && nn_ids_push(out, 1, err))
        return NN_ERR;
    size_t first = out->n;
    if (len) {
        int32_t space = nn_tokenizer_find(t, " ", 1);
        if (space >= 0 && nn_ids_push(out, space, err))
            return NN_ERR;
    }
    for (size_t i = 0; i < len;) {
        size_t k = 1;
        while (k < 4 && i + k < len && ((unsigned char)text[i + k] & 0xC0) == 0x80)
            k++;
        int32_t id = nn_tokenizer_find(t, text + i, k);
        if (id >= 0) {
            if (nn_ids_push(out, id, err))
                return NN_ERR;
        } else {
            for (size_t b = 0; b < k; b++) {
                /* run.c's byte fallback: <0xXX> is token 3 + XX */
                int32_t byte_id = (int32_t)(unsigned char)text[i + b] + 3;
                if ((size_t)byte_id >= t->n_vocab)
                    return nn_fail(err,
                                   "byte 0x%02X at offset %zu has no token: byte fallback id %d "
                                   "is outside the vocabulary of %zu tokens",
                                   (unsigned char)text[i + b], i + b, byte_id, t->n_vocab);
                if (nn_ids_push(out, byte_id, err))
                    return NN_ERR;
            }
        }
        i += k;
    }
    char pair[2 * 65536 + 1];
    for (;;) {
        float best = -1e10f;
        size_t best_at = 0;
        int32_t best_id = -1;
        for (size_t i = first; i + 1 < out->n; i++) {
            size_t la = 0, lb = 0;
            const char *a = nn_tokenizer_piece(t, out->ids[i], &la);
            const char *b = nn_tokenizer_piece(t, out->ids[i + 1], &lb);
            memcpy(pair, a, la);
            memcpy(pair + la, b, lb);
            int32_t id = nn_tokenizer_find(t, pair, la + lb);
            if (id >= 0 && t->scores[id] > best) {
                best = t->scores[id];
                best_id = id;
                best_at = i;
            }
        }
        if (best_id < 0)
            break;
        out->ids[best_at] = best_id;
        memmove(out->ids + best_at + 1, out->ids + best_at + 2,
                (out->n - best_at - 2) * sizeof(int32_t));
        out->n--;
    }
    return NN_OK;
}

static int decode_llama2c(const nn_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                          buf *out, nn_err *err)
{
    (void)skip_special; /* run.c skips BOS and EOS and nothing else, whatever the caller asks */
    buf raw = {0};
    int rc = buf_add(&raw, "", 0, err);
    for (size_t i = 0; i < n && rc == NN_OK; i++) {
        if (ids[i] == 1 || ids[i] == 2)
            continue; /* run.c prints neither BOS nor EOS */
        size_t len = 0;
        const char *p = nn_tokenizer_piece(t, ids[i], &len);
        if (i > 0 && ids[i - 1] == 1 && len && p[0] == ' ') {
            p++;
            len--;
        }
        buf b = {.p = (char *)p, .len = len};
        int byte = tok_byte_token(&b);
        if (byte >= 0) {
            char c = (char)byte;
            rc = buf_add(&raw, &c, 1, err);
        } else {
            rc = buf_add(&raw, p, len, err);
        }
    }
    if (rc == NN_OK)
        rc = buf_add(out, "", 0, err) || tok_add_lossy(out, raw.p, raw.len, err);
    buf_free(&raw);
    return rc;
}

const tok_kind tok_kind_llama2c = {"llama2.c", encode_llama2c, decode_llama2c};
