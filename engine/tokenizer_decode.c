/* The Hugging Face decoders (Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace, Sequence).
 */
#include "tokenizer_internal.h"

/* Appends bytes as UTF-8, replacing each maximal invalid subsequence with U+FFFD (Rust's
 * String::from_utf8_lossy, which Hugging Face's decoders use). */
int tok_add_lossy(buf *b, const char *s, size_t n, nn_err *err)
{
    size_t i = 0;
    while (i < n) {
        int k = nn_utf8_char_len((const unsigned char *)s + i, n - i);
        if (k) {
            if (buf_add(b, s + i, (size_t)k, err))
                return NN_ERR;
            i += (size_t)k;
            continue;
        }
        /* Skip the longest prefix that could still begin a valid sequence. */
        const unsigned char *u = (const unsigned char *)s + i;
        size_t skip = 1;
        int need = (u[0] & 0xE0) == 0xC0   ? 2
                   : (u[0] & 0xF0) == 0xE0 ? 3
                   : (u[0] & 0xF8) == 0xF0 ? 4
                                           : 1;
        if (need > 1 && u[0] >= 0xC2 && u[0] <= 0xF4) {
            while (skip < (size_t)need && i + skip < n && (u[skip] & 0xC0) == 0x80) {
                /* second-byte ranges that make a sequence impossible end the subpart */
                if (skip == 1 && ((u[0] == 0xE0 && u[1] < 0xA0) || (u[0] == 0xED && u[1] > 0x9F) ||
                                  (u[0] == 0xF0 && u[1] < 0x90) || (u[0] == 0xF4 && u[1] > 0x8F)))
                    break;
                skip++;
            }
        }
        if (buf_add(b, "\xEF\xBF\xBD", 3, err))
            return NN_ERR;
        i += skip;
    }
    return NN_OK;
}

/* ---- Decoding ---------------------------------------------------------------------------------
 */

typedef struct strlist {
    buf *s;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        buf_free(&l->s[i]);
    nn_free(l->s);
    memset(l, 0, sizeof *l);
}

static int strlist_add(strlist *l, const char *s, size_t n, nn_err *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        buf *g = nn_realloc(l->s, cap * sizeof *g, err);
        if (!g)
            return NN_ERR;
        l->s = g;
        l->cap = cap;
    }
    memset(&l->s[l->n], 0, sizeof(buf));
    if (buf_add(&l->s[l->n], s, n, err))
        return NN_ERR;
    l->n++;
    return NN_OK;
}

int tok_byte_token(const buf *b)
{
    if (b->len != 6 || memcmp(b->p, "<0x", 3) != 0 || b->p[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = b->p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static int flush_bytes(strlist *out, buf *bytes, nn_err *err)
{
    if (!bytes->len)
        return NN_OK;
    int rc = NN_OK;
    if (nn_utf8_validate(bytes->p, bytes->len) == bytes->len)
        rc = strlist_add(out, bytes->p, bytes->len, err);
    else
        for (size_t i = 0; i < bytes->len && rc == NN_OK; i++)
            rc = strlist_add(out, "\xEF\xBF\xBD", 3, err);
    bytes->len = 0;
    return rc;
}

static int decode_step(const nn_tokenizer *t, const step *st, strlist *in, strlist *out,
                       nn_err *err)
{
    spans m = {0};
    buf acc = {0};
    int rc = NN_ERR;
    switch (st->kind) {
    case DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            acc.len = 0;
            if (tok_literal_matches(st->a, st->a_len, in->s[i].p, in->s[i].len, &m, err) ||
                tok_replace_all(in->s[i].p, in->s[i].len, &m, st->b, st->b_len, &acc, err) ||
                strlist_add(out, acc.p ? acc.p : "", acc.len, err))
                goto done;
        }
        break;
    case DEC_BYTEFALLBACK:
        for (size_t i = 0; i < in->n; i++) {
            int b = tok_byte_token(&in->s[i]);
            if (b >= 0) {
                char c = (char)b;
                if (buf_add(&acc, &c, 1, err))
                    goto done;
                continue;
            }
            if (flush_bytes(out, &acc, err) || strlist_add(out, in->s[i].p, in->s[i].len, err))
                goto done;
        }
        if (flush_bytes(out, &acc, err))
            goto done;
        break;
    case DEC_FUSE:
        if (buf_add(&acc, "", 0, err))
            goto done;
        for (size_t i = 0; i < in->n; i++)
            if (buf_add(&acc, in->s[i].p, in->s[i].len, err))
                goto done;
        if (strlist_add(out, acc.p, acc.len, err))
            goto done;
        break;
    case DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->s[i].p;
            size_t a = 0, b = in->s[i].len;
            for (int k = 0;
                 k < st->start && b - a >= st->a_len && memcmp(s + a, st->a, st->a_len) == 0; k++)
                a += st->a_len;
            for (int k = 0; k < st->stop && b - a >= st->a_len &&
                            memcmp(s + b - st->a_len, st->a, st->a_len) == 0;
                 k++)
                b -= st->a_len;
            if (strlist_add(out, s + a, b - a, err))
                goto done;
        }
        break;
    case DEC_BYTELEVEL:
        if (buf_add(&acc, "", 0, err))
            goto done;
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->s[i].p;
            size_t len = in->s[i].len, start = acc.len;
            bool all = true;
            for (size_t k = 0; k < len;) {
                int n = nn_utf8_char_len((const unsigned char *)s + k, len - k);
                uint32_t cp = n ? utf8_decode(s + k, n) : 0xFFFF;
                if (!n || cp >= 324 || t->cp_to_byte[cp] < 0) {
                    all = false;
                    break;
                }
                char c = (char)t->cp_to_byte[cp];
                if (buf_add(&acc, &c, 1, err))
                    goto done;
                k += (size_t)n;
            }
            if (!all) { /* a token outside the byte map is kept as its own UTF-8 */
                acc.len = start;
                if (buf_add(&acc, s, len, err))
                    goto done;
            }
        }
        {
            buf lossy = {0};
            int r = buf_add(&lossy, "", 0, err) || tok_add_lossy(&lossy, acc.p, acc.len, err) ||
                    strlist_add(out, lossy.p, lossy.len, err);
            buf_free(&lossy);
            if (r)
                goto done;
        }
        break;
    case DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            acc.len = 0;
            if (buf_add(&acc, "", 0, err))
                goto done;
            const char *s = in->s[i].p;
            size_t len = in->s[i].len;
            for (size_t k = 0; k < len;) {
                if (len - k >= st->a_len && memcmp(s + k, st->a, st->a_len) == 0) {
                    if (!(i == 0 && st->prepend_scheme != PREPEND_NEVER) &&
                        buf_add(&acc, " ", 1, err))
                        goto done;
                    k += st->a_len;
                } else {
                    if (buf_add(&acc, s + k, 1, err))
                        goto done;
                    k++;
                }
            }
            if (strlist_add(out, acc.p, acc.len, err))
                goto done;
        }
        break;
    }
    rc = NN_OK;
done:
    nn_free(m.v);
    buf_free(&acc);
    return rc;
}

int tok_decode_hf(const nn_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, buf *out,
                  nn_err *err)
{
    int rc = NN_ERR;
    strlist a = {0}, b = {0};
    for (size_t i = 0; i < n; i++) {
        if (skip_special && t->special[ids[i]])
            continue;
        size_t len = 0;
        const char *p = nn_tokenizer_piece(t, ids[i], &len);
        if (strlist_add(&a, p, len, err))
            goto done;
    }
    strlist *cur = &a, *next = &b;
    for (size_t i = 0; i < t->n_dec; i++) {
        if (decode_step(t, &t->dec[i], cur, next, err))
            goto done;
        strlist *tmp = cur;
        strlist_free(cur);
        cur = next;
        next = tmp;
    }
    if (buf_add(out, "", 0, err))
        goto done;
    for (size_t i = 0; i < cur->n; i++)
        if ((t->n_dec == 0 && i > 0 && buf_add(out, " ", 1, err)) ||
            buf_add(out, cur->s[i].p, cur->s[i].len, err))
            goto done;
    rc = NN_OK;
done:
    strlist_free(&a);
    strlist_free(&b);
    return rc;
}
