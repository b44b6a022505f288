/* The Hugging Face encode pipeline: AddedVocabulary splitting, normalizers, pre-tokenizers, then
 * the BPE model (tokenizer_bpe.c) on each word; post-processor ids around it. */
#include "tokenizer_internal.h"

/* ---- Encoding ---------------------------------------------------------------------------------
 */

/* A list of words: word i is text.p[start[i] .. start[i+1]); first[i] marks a word that begins the
 * original text (Metaspace's prepend_scheme "first"). */
typedef struct words {
    buf text;
    size_t *start;
    bool *first;
    size_t n, cap;
} words;

static void words_free(words *w)
{
    buf_free(&w->text);
    nn_free(w->start);
    nn_free(w->first);
    memset(w, 0, sizeof *w);
}

static void words_reset(words *w)
{
    w->text.len = 0;
    w->n = 0;
}

static int words_add(words *w, const char *s, size_t len, bool first, nn_err *err)
{
    if (!len)
        return NN_OK; /* empty pieces are dropped, as Hugging Face does */
    if (w->n + 2 > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        size_t *st = nn_realloc(w->start, cap * sizeof *st, err);
        if (!st)
            return NN_ERR;
        w->start = st;
        bool *f = nn_realloc(w->first, cap * sizeof *f, err);
        if (!f)
            return NN_ERR;
        w->first = f;
        w->cap = cap;
    }
    w->start[w->n] = w->text.len;
    w->first[w->n] = first;
    if (buf_add(&w->text, s, len, err))
        return NN_ERR;
    w->n++;
    w->start[w->n] = w->text.len;
    return NN_OK;
}

static int spans_add(spans *s, size_t a, size_t b, nn_err *err)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        span *p = nn_realloc(s->v, cap * sizeof *p, err);
        if (!p)
            return NN_ERR;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = (span){a, b};
    return NN_OK;
}

/* Non-empty regex matches of re in s. */
static int regex_matches(const pcre2_code *re, const char *s, size_t len, spans *out, nn_err *err)
{
    out->n = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        return nn_fail(err, "out of memory for regex match data");
    size_t off = 0;
    int rc = NN_OK;
    while (off <= len) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, len, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0) {
            rc = nn_fail(err, "regex match failed (PCRE2 error %d)", m);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* empty match: step one character */
            if (off >= len)
                break;
            int k = nn_utf8_char_len((const unsigned char *)s + off, len - off);
            off += k ? (size_t)k : 1;
            continue;
        }
        if (spans_add(out, ov[0], ov[1], err)) {
            rc = NN_ERR;
            break;
        }
        off = ov[1];
    }
    pcre2_match_data_free(md);
    return rc;
}

/* Literal (non-overlapping, left to right) matches of pat in s. */
int tok_literal_matches(const char *pat, size_t plen, const char *s, size_t len, spans *out,
                        nn_err *err)
{
    out->n = 0;
    if (!plen)
        return NN_OK;
    for (size_t i = 0; i + plen <= len;) {
        if (memcmp(s + i, pat, plen) == 0) {
            if (spans_add(out, i, i + plen, err))
                return NN_ERR;
            i += plen;
        } else {
            i++;
        }
    }
    return NN_OK;
}

/* Splits word s at the matches per Hugging Face's SplitDelimiterBehavior, appending to out. */
static int split_by(const char *s, size_t len, const spans *m, int behavior, bool invert,
                    bool first, words *out, nn_err *err)
{
    /* The whole word as alternating (piece, is_match) segments. */
    size_t n_seg = 0, prev = 0;
    span *seg = nn_malloc((2 * m->n + 2) * sizeof *seg, err);
    bool *is = nn_malloc((2 * m->n + 2) * sizeof *is, err);
    int rc = NN_ERR;
    if (!seg || !is)
        goto done;
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].a > prev) {
            seg[n_seg] = (span){prev, m->v[i].a};
            is[n_seg++] = invert;
        }
        seg[n_seg] = m->v[i];
        is[n_seg++] = !invert;
        prev = m->v[i].b;
    }
    if (prev < len) {
        seg[n_seg] = (span){prev, len};
        is[n_seg++] = invert;
    }
    /* Merge per behavior into pieces. */
    size_t n_out = 0;
    bool previous_match = false;
    if (behavior == SPLIT_MERGED_NEXT) {
        /* Walk backwards: a match joins the piece after it. */
        size_t k = n_seg;
        span *rev = seg; /* reuse: build reversed pieces in place from the end */
        size_t w = n_seg;
        while (k-- > 0) {
            if (is[k] && !previous_match && w < n_seg)
                rev[w].a = seg[k].a;
            else
                rev[--w] = seg[k];
            previous_match = is[k];
        }
        for (size_t i = w; i < n_seg; i++)
            if (words_add(out, s + rev[i].a, rev[i].b - rev[i].a, first && rev[i].a == 0, err))
                goto done;
        rc = NN_OK;
        goto done;
    }
    for (size_t i = 0; i < n_seg; i++) {
        bool match = is[i];
        switch (behavior) {
        case SPLIT_REMOVED:
            if (!match)
                seg[n_out++] = seg[i];
            break;
        case SPLIT_ISOLATED:
            seg[n_out++] = seg[i];
            break;
        case SPLIT_MERGED_PREV:
            if (match && !previous_match && n_out)
                seg[n_out - 1].b = seg[i].b;
            else
                seg[n_out++] = seg[i];
            break;
        case SPLIT_CONTIGUOUS:
            if (match && previous_match && n_out)
                seg[n_out - 1].b = seg[i].b;
            else
                seg[n_out++] = seg[i];
            break;
        }
        previous_match = match;
    }
    for (size_t i = 0; i < n_out; i++)
        if (words_add(out, s + seg[i].a, seg[i].b - seg[i].a, first && seg[i].a == 0, err))
            goto done;
    rc = NN_OK;
done:
    nn_free(seg);
    nn_free(is);
    return rc;
}

/* Matches of characters satisfying a class (Digits). */
static int char_class_matches(const char *s, size_t len, spans *out, nn_err *err)
{
    out->n = 0;
    for (size_t i = 0; i < len;) {
        int k = nn_utf8_char_len((const unsigned char *)s + i, len - i);
        if (!k)
            k = 1;
        enum nn_ucat c = nn_unicode_category(utf8_decode(s + i, k));
        if ((c == NN_UCAT_ND || c == NN_UCAT_NL || c == NN_UCAT_NO) &&
            spans_add(out, i, i + (size_t)k, err))
            return NN_ERR;
        i += (size_t)k;
    }
    return NN_OK;
}

int tok_replace_all(const char *s, size_t len, const spans *m, const char *with, size_t wlen,
                    buf *out, nn_err *err)
{
    size_t prev = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (buf_add(out, s + prev, m->v[i].a - prev, err) || buf_add(out, with, wlen, err))
            return NN_ERR;
        prev = m->v[i].b;
    }
    return buf_add(out, s + prev, len - prev, err);
}

static int normalize(const nn_tokenizer *t, const char *s, size_t len, buf *out, nn_err *err)
{
    buf cur = {0}, next = {0};
    spans m = {0};
    int rc = NN_ERR;
    if (buf_add(&cur, s, len, err))
        goto done;
    for (size_t i = 0; i < t->n_norm; i++) {
        const step *st = &t->norm[i];
        next.len = 0;
        switch (st->kind) {
        case NORM_PREPEND:
            if (cur.len &&
                (buf_add(&next, st->a, st->a_len, err) || buf_add(&next, cur.p, cur.len, err)))
                goto done;
            break;
        case NORM_REPLACE:
            if ((st->re ? regex_matches(st->re, cur.p, cur.len, &m, err)
                        : tok_literal_matches(st->a, st->a_len, cur.p, cur.len, &m, err)) ||
                tok_replace_all(cur.p, cur.len, &m, st->b, st->b_len, &next, err))
                goto done;
            break;
        default: {
            int opts = UTF8PROC_STABLE;
            if (st->kind == NORM_NFC || st->kind == NORM_NFKC)
                opts |= UTF8PROC_COMPOSE;
            else
                opts |= UTF8PROC_DECOMPOSE;
            if (st->kind == NORM_NFKC || st->kind == NORM_NFKD)
                opts |= UTF8PROC_COMPAT;
            utf8proc_uint8_t *mapped = NULL;
            utf8proc_ssize_t n = cur.len ? utf8proc_map((const utf8proc_uint8_t *)cur.p,
                                                        (utf8proc_ssize_t)cur.len, &mapped, opts)
                                         : 0;
            if (n < 0) {
                nn_fail(err, "Unicode normalization failed: %s", utf8proc_errmsg(n));
                goto done;
            }
            int a = buf_add(&next, mapped ? (const char *)mapped : "", (size_t)n, err);
            free(mapped); /* utf8proc allocates with malloc */
            if (a)
                goto done;
        }
        }
        if (st->kind == NORM_PREPEND && !cur.len)
            continue;
        buf tmp = cur;
        cur = next;
        next = tmp;
    }
    rc = buf_add(out, cur.p ? cur.p : "", cur.len, err);
done:
    buf_free(&cur);
    buf_free(&next);
    nn_free(m.v);
    return rc;
}

static int pre_tokenize_step(const nn_tokenizer *t, const step *st, const words *in, words *out,
                             spans *m, nn_err *err)
{
    words_reset(out);
    buf tmp = {0};
    int rc = NN_ERR;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->text.p + in->start[i];
        size_t len = in->start[i + 1] - in->start[i];
        bool first = in->first[i];
        switch (st->kind) {
        case PRE_BYTELEVEL: {
            tmp.len = 0;
            if (st->flag && s[0] != ' ' && buf_add(&tmp, " ", 1, err))
                goto done;
            if (buf_add(&tmp, s, len, err))
                goto done;
            if (st->use_regex) {
                if (regex_matches(st->re, tmp.p, tmp.len, m, err))
                    goto done;
            } else {
                m->n = 0;
            }
            /* Isolated pieces, each byte mapped to its printable code point. */
            size_t n_pieces = st->use_regex ? m->n : 1, prev = 0;
            for (size_t p = 0; p <= n_pieces; p++) {
                size_t a, b;
                if (!st->use_regex) {
                    if (p == 1)
                        break;
                    a = 0;
                    b = tmp.len;
                } else if (p < m->n) {
                    if (m->v[p].a > prev) { /* gap before the match */
                        a = prev;
                        b = m->v[p].a;
                        p--;
                        prev = b;
                    } else {
                        a = m->v[p].a;
                        b = m->v[p].b;
                        prev = b;
                    }
                } else {
                    if (prev >= tmp.len)
                        break;
                    a = prev;
                    b = tmp.len;
                    prev = b;
                }
                char mapped[4 * 64];
                buf piece = {0};
                for (size_t k = a; k < b; k++) {
                    int n = nn_utf8_encode(t->byte_to_cp[(unsigned char)tmp.p[k]], mapped);
                    if (buf_add(&piece, mapped, (size_t)n, err)) {
                        buf_free(&piece);
                        goto done;
                    }
                }
                int r = words_add(out, piece.p, piece.len, first && a == 0, err);
                buf_free(&piece);
                if (r)
                    goto done;
            }
            break;
        }
        case PRE_SPLIT:
            if ((st->re ? regex_matches(st->re, s, len, m, err)
                        : tok_literal_matches(st->a, st->a_len, s, len, m, err)) ||
                split_by(s, len, m, st->behavior, st->invert, first, out, err))
                goto done;
            break;
        case PRE_DIGITS:
            if (char_class_matches(s, len, m, err) ||
                split_by(s, len, m, st->flag ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, false, first, out,
                         err))
                goto done;
            break;
        case PRE_WHITESPACE:
        case PRE_WHITESPACE_SPLIT:
            if (regex_matches(st->re, s, len, m, err) ||
                split_by(s, len, m, SPLIT_REMOVED, true, first, out, err))
                goto done;
            break;
        case PRE_METASPACE: {
            tmp.len = 0;
            bool prepend = (st->prepend_scheme == PREPEND_ALWAYS ||
                            (st->prepend_scheme == PREPEND_FIRST && first)) &&
                           !(len >= st->a_len && memcmp(s, st->a, st->a_len) == 0);
            /* spaces become the replacement; the prepend check looks at the original start */
            if (tok_literal_matches(" ", 1, s, len, m, err))
                goto done;
            if (prepend && buf_add(&tmp, st->a, st->a_len, err))
                goto done;
            if (tok_replace_all(s, len, m, st->a, st->a_len, &tmp, err))
                goto done;
            if (st->flag) {
                if (tok_literal_matches(st->a, st->a_len, tmp.p, tmp.len, m, err) ||
                    split_by(tmp.p, tmp.len, m, SPLIT_MERGED_NEXT, false, first, out, err))
                    goto done;
            } else if (words_add(out, tmp.p, tmp.len, first, err)) {
                goto done;
            }
            break;
        }
        }
    }
    rc = NN_OK;
done:
    buf_free(&tmp);
    return rc;
}

static bool is_word_char(const char *s, size_t len, size_t at, bool before)
{
    /* The character ending at `at` (before) or starting at `at`. */
    size_t i = at;
    if (before) {
        if (at == 0)
            return false;
        i = at - 1;
        while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
            i--;
    } else if (at >= len) {
        return false;
    }
    int k = nn_utf8_char_len((const unsigned char *)s + i, len - i);
    uint32_t cp = k ? utf8_decode(s + i, k) : (unsigned char)s[i];
    enum nn_ucat c = nn_unicode_category(cp);
    return cp == '_' || (c >= NN_UCAT_LL && c <= NN_UCAT_LU) || c == NN_UCAT_ND ||
           c == NN_UCAT_MN || c == NN_UCAT_MC;
}

static bool is_space_at(const char *s, size_t len, size_t i, size_t *k)
{
    int n = nn_utf8_char_len((const unsigned char *)s + i, len - i);
    if (!n)
        return false;
    uint32_t cp = utf8_decode(s + i, n);
    *k = (size_t)n;
    return cp == ' ' || (cp >= 9 && cp <= 13) || nn_unicode_category(cp) == NN_UCAT_ZS ||
           cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

typedef struct piece {
    size_t a, b;
    int32_t id; /* -1: text to tokenize */
} piece;

/* Splits s on the added tokens whose `normalized` flag equals normalized (leftmost-longest,
 * honouring single_word, lstrip, rstrip). */
static int split_added(const nn_tokenizer *t, const char *s, size_t len, bool normalized,
                       piece **out, size_t *n_out, nn_err *err)
{
    size_t cap = 16, n = 0, prev = 0;
    piece *p = nn_malloc(cap * sizeof *p, err);
    if (!p)
        return NN_ERR;
    bool any = false;
    for (size_t k = 0; k < t->n_added; k++)
        any |= t->added[k].normalized == normalized;
    for (size_t i = 0; any && i < len;) {
        const added_token *best = NULL;
        unsigned char first = (unsigned char)s[i];
        for (uint32_t j = t->added_start[first]; j < t->added_start[first + 1]; j++) {
            const added_token *a = &t->added[t->added_order[j]];
            if (a->normalized != normalized || a->len > len - i || (best && a->len <= best->len) ||
                memcmp(s + i, a->content, a->len) != 0)
                continue;
            if (a->single_word &&
                (is_word_char(s, len, i, true) || is_word_char(s, len, i + a->len, false)))
                continue;
            best = a;
        }
        if (!best) {
            i++;
            continue;
        }
        size_t start = i, end = i + best->len, k;
        if (best->lstrip)
            while (start > prev) {
                size_t j = start - 1;
                while (j > prev && ((unsigned char)s[j] & 0xC0) == 0x80)
                    j--;
                if (!is_space_at(s, len, j, &k))
                    break;
                start = j;
            }
        if (best->rstrip)
            while (end < len && is_space_at(s, len, end, &k))
                end += k;
        if (n + 2 > cap) {
            cap *= 2;
            piece *g = nn_realloc(p, cap * sizeof *g, err);
            if (!g) {
                nn_free(p);
                return NN_ERR;
            }
            p = g;
        }
        if (start > prev)
            p[n++] = (piece){prev, start, -1};
        p[n++] = (piece){start, end, best->id};
        prev = i = end;
    }
    if (prev < len || n == 0) {
        if (n + 1 > cap) {
            piece *g = nn_realloc(p, (cap + 1) * sizeof *g, err);
            if (!g) {
                nn_free(p);
                return NN_ERR;
            }
            p = g;
        }
        p[n++] = (piece){prev, len, -1};
    }
    *out = p;
    *n_out = n;
    return NN_OK;
}

static int encode_text(nn_tokenizer *t, const char *s, size_t len, bool at_start, nn_ids *out,
                       nn_err *err)
{
    buf norm = {0};
    words a = {0}, b = {0};
    spans m = {0};
    piece *pieces = NULL;
    size_t n_pieces = 0;
    int rc = NN_ERR;
    if (normalize(t, s, len, &norm, err) ||
        split_added(t, norm.p ? norm.p : "", norm.len, true, &pieces, &n_pieces, err))
        goto done;
    for (size_t p = 0; p < n_pieces; p++) {
        if (pieces[p].id >= 0) {
            if (nn_ids_push(out, pieces[p].id, err))
                goto done;
            continue;
        }
        words_reset(&a);
        if (words_add(&a, norm.p + pieces[p].a, pieces[p].b - pieces[p].a,
                      at_start && pieces[p].a == 0, err))
            goto done;
        words *cur = &a, *next = &b;
        for (size_t i = 0; i < t->n_pre; i++) {
            if (pre_tokenize_step(t, &t->pre[i], cur, next, &m, err))
                goto done;
            words *tmp = cur;
            cur = next;
            next = tmp;
        }
        for (size_t w = 0; w < cur->n; w++)
            if (tok_bpe_word(t, cur->text.p + cur->start[w], cur->start[w + 1] - cur->start[w], out,
                             err))
                goto done;
    }
    rc = NN_OK;
done:
    buf_free(&norm);
    words_free(&a);
    words_free(&b);
    nn_free(m.v);
    nn_free(pieces);
    return rc;
}

int tok_encode_hf(nn_tokenizer *t, const char *text, size_t len, bool add_special, nn_ids *out,
                  nn_err *err)
{
    if (add_special)
        for (int i = 0; i < t->n_prefix; i++)
            if (nn_ids_push(out, t->prefix[i], err))
                return NN_ERR;
    piece *pieces = NULL;
    size_t n = 0;
    if (split_added(t, text, len, false, &pieces, &n, err))
        return NN_ERR;
    int rc = NN_OK;
    for (size_t p = 0; p < n && rc == NN_OK; p++) {
        if (pieces[p].id >= 0)
            rc = nn_ids_push(out, pieces[p].id, err);
        else if (pieces[p].b > pieces[p].a)
            rc = encode_text(t, text + pieces[p].a, pieces[p].b - pieces[p].a, pieces[p].a == 0,
                             out, err);
    }
    nn_free(pieces);
    if (rc == NN_OK && add_special)
        for (int i = 0; i < t->n_suffix && rc == NN_OK; i++)
            rc = nn_ids_push(out, t->suffix[i], err);
    return rc;
}
