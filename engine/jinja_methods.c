/* Jinja built-ins, part 1: the helpers the built-ins share, Python's str/dict/list methods, and
 * printf-style '%'. Part 2 (jinja_filters.c): filters, tests, globals. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "jinja_internal.h"

#define EQ(a, b) (!strcmp((a), (b)))

/* Argument i (positional) or the keyword name; NULL when neither was given. */
const jv *jj_arg(jv *args, size_t nargs, const char **kwn, jv *kwv, size_t nkw, size_t i,
                 const char *name)
{
    if (i < nargs)
        return &args[i];
    for (size_t k = 0; k < nkw; k++)
        if (name && EQ(kwn[k], name))
            return &kwv[k];
    return NULL;
}

int jj_check_kwargs(jj_ctx *x, const jj_node *at, const char *fn, const char **kwn, size_t nkw,
                    const char *const *allowed)
{
    for (size_t k = 0; k < nkw; k++) {
        bool ok = false;
        for (size_t a = 0; allowed && allowed[a]; a++)
            if (EQ(kwn[k], allowed[a]))
                ok = true;
        if (!ok)
            return jj_fail(x, at, "%s() got an unexpected keyword argument '%s'", fn, kwn[k]);
    }
    return NN_OK;
}

jv jj_list_val(jj_list *l)
{
    jv v = {.t = JV_LIST};
    v.u.l = l;
    return v;
}

int jj_need_str(jj_ctx *x, const jj_node *at, const char *what, const jv *v)
{
    if (v->t != JV_STR)
        return jj_fail(x, at, "%s expects a string, got %s", what, jv_type_name(v));
    return NN_OK;
}

int jj_new_str(jj_ctx *x, const jj_node *at, const char *s, size_t n, bool markup, jv *out)
{
    char *p = jj_strndup(&x->arena, s, n);
    if (!p)
        return jj_oom(x, at);
    *out = jv_str(p, n);
    out->markup = markup;
    return NN_OK;
}

int jj_buf_str(jj_ctx *x, const jj_node *at, jj_buf *b, bool markup, jv *out)
{
    int rc = jj_new_str(x, at, b->p ? b->p : "", b->n, markup, out);
    nn_free(b->p);
    b->p = NULL;
    return rc;
}

/* ---- string helpers ---- */

static bool in_chars(const char *s, size_t n, const jv *chars)
{
    /* s[0..n) is one UTF-8 character */
    for (size_t i = 0; i < chars->u.s.n;) {
        int w = nn_utf8_char_len((const unsigned char *)chars->u.s.p + i, chars->u.s.n - i);
        if (w <= 0)
            w = 1;
        if ((size_t)w == n && !memcmp(chars->u.s.p + i, s, n))
            return true;
        i += (size_t)w;
    }
    return false;
}

/* Python's str.strip family: which = 1 left, 2 right, 3 both; chars NULL/None: whitespace. */
int jj_strip(jj_ctx *x, const jj_node *at, const jv *s, const jv *chars, int which, jv *out)
{
    if (chars && chars->t != JV_NONE && jj_need_str(x, at, "strip(chars)", chars))
        return NN_ERR;
    bool ws = !chars || chars->t == JV_NONE;
    const char *p = s->u.s.p;
    size_t st = 0, en = s->u.s.n;
    if (which & 1)
        while (st < en) {
            int w = ws ? jj_space_len(p + st, en - st) : 0;
            if (!ws) {
                int cl = nn_utf8_char_len((const unsigned char *)p + st, en - st);
                if (cl <= 0)
                    cl = 1;
                if (in_chars(p + st, (size_t)cl, chars))
                    w = cl;
            }
            if (!w)
                break;
            st += (size_t)w;
        }
    if (which & 2)
        while (en > st) {
            size_t b = en - 1;
            while (b > st && ((unsigned char)p[b] & 0xc0) == 0x80)
                b--;
            bool strip =
                ws ? jj_space_len(p + b, en - b) == (int)(en - b) : in_chars(p + b, en - b, chars);
            if (!strip)
                break;
            en = b;
        }
    *out = jv_str(p + st, en - st);
    out->markup = s->markup;
    return NN_OK;
}

/* Case mapping, code point by code point (utf8proc's simple mappings): mode 'u' upper, 'l' lower,
 * 't' title (Python: upper after an uncased character, lower after a cased one), 'c' capitalize,
 * 's' swapcase. */
int jj_case(jj_ctx *x, const jj_node *at, const jv *s, char mode, jv *out)
{
    jj_buf b = {0};
    bool prev_cased = false, first = true;
    const unsigned char *p = (const unsigned char *)s->u.s.p;
    size_t n = s->u.s.n;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t w = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
        if (w <= 0) {
            nn_free(b.p);
            return jj_fail(x, at, "invalid UTF-8 in a string");
        }
        utf8proc_category_t cat = utf8proc_category(cp);
        bool cased = cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL ||
                     cat == UTF8PROC_CATEGORY_LT;
        utf8proc_int32_t o = cp;
        switch (mode) {
        case 'u':
            o = utf8proc_toupper(cp);
            break;
        case 'l':
            o = utf8proc_tolower(cp);
            break;
        case 't':
            o = prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp);
            break;
        case 'c':
            o = first ? utf8proc_totitle(cp) : utf8proc_tolower(cp);
            break;
        case 's':
            o = cat == UTF8PROC_CATEGORY_LU ? utf8proc_tolower(cp) : utf8proc_toupper(cp);
            break;
        }
        if (mode == 'u' && cp == 0xDF) { /* Python: 'ß'.upper() == 'SS' */
            if (jj_buf_add(x, &b, "SS", 2))
                return NN_ERR;
        } else {
            utf8proc_uint8_t enc[4];
            utf8proc_ssize_t el = utf8proc_encode_char(o, enc);
            if (jj_buf_add(x, &b, (const char *)enc, (size_t)el))
                return NN_ERR;
        }
        prev_cased = cased;
        first = false;
        i += (size_t)w;
    }
    return jj_buf_str(x, at, &b, s->markup, out);
}

int jj_replace(jj_ctx *x, const jj_node *at, const jv *s, const jv *old, const jv *new_,
               int64_t count, jv *out)
{
    if (jj_need_str(x, at, "replace()", old) || jj_need_str(x, at, "replace()", new_))
        return NN_ERR;
    jj_buf b = {0};
    size_t i = 0, n = s->u.s.n, on = old->u.s.n;
    int64_t done = 0;
    if (on == 0) { /* Python inserts new between every character */
        size_t *off;
        for (size_t k = 0; k <= n; k++) {
            bool boundary = k == n || ((unsigned char)s->u.s.p[k] & 0xc0) != 0x80;
            if (boundary && (count < 0 || done < count)) {
                if (jj_buf_add(x, &b, new_->u.s.p, new_->u.s.n))
                    return NN_ERR;
                done++;
            }
            if (k < n && jj_buf_add(x, &b, s->u.s.p + k, 1))
                return NN_ERR;
        }
        (void)off;
        return jj_buf_str(x, at, &b, false, out);
    }
    while (i < n) {
        if ((count < 0 || done < count) && i + on <= n && !memcmp(s->u.s.p + i, old->u.s.p, on)) {
            if (jj_buf_add(x, &b, new_->u.s.p, new_->u.s.n))
                return NN_ERR;
            i += on;
            done++;
            continue;
        }
        if (jj_buf_add(x, &b, s->u.s.p + i, 1))
            return NN_ERR;
        i++;
    }
    return jj_buf_str(x, at, &b, false, out);
}

int jj_push(jj_ctx *x, const jj_node *at, jj_list **l, size_t *cap, jv v)
{
    if ((*l)->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        jv *nv = jj_alloc(&x->arena, nc * sizeof *nv);
        if (!nv)
            return jj_oom(x, at);
        if ((*l)->n)
            jj_memcpy(nv, (*l)->v, (*l)->n * sizeof *nv);
        (*l)->v = nv;
        *cap = nc;
    }
    (*l)->v[(*l)->n++] = v;
    return NN_OK;
}

int jj_split(jj_ctx *x, const jj_node *at, const jv *s, const jv *sep, int64_t maxsplit, bool right,
             jv *out)
{
    jj_list *l;
    size_t cap = 0;
    if (jj_list_new(&x->arena, 0, &l))
        return jj_oom(x, at);
    const char *p = s->u.s.p;
    size_t n = s->u.s.n;
    if (!sep || sep->t == JV_NONE) {
        if (right && maxsplit >= 0)
            return jj_fail(x, at, "rsplit(None, maxsplit) is not supported");
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            int w;
            while (i < n && (w = jj_space_len(p + i, n - i)) > 0)
                i += (size_t)w;
            if (i >= n)
                break;
            size_t st = i;
            if (maxsplit >= 0 && done >= maxsplit) {
                size_t en = n;
                while (en > st) { /* Python strips trailing whitespace of the rest */
                    size_t b = en - 1;
                    while (b > st && ((unsigned char)p[b] & 0xc0) == 0x80)
                        b--;
                    if (jj_space_len(p + b, en - b) != (int)(en - b))
                        break;
                    en = b;
                }
                if (jj_push(x, at, &l, &cap, jv_str(p + st, en - st)))
                    return NN_ERR;
                break;
            }
            while (i < n && jj_space_len(p + i, n - i) == 0)
                i++;
            if (jj_push(x, at, &l, &cap, jv_str(p + st, i - st)))
                return NN_ERR;
            done++;
        }
        *out = jj_list_val(l);
        return NN_OK;
    }
    if (jj_need_str(x, at, "split(sep)", sep))
        return NN_ERR;
    size_t sn = sep->u.s.n;
    if (!sn)
        return jj_fail(x, at, "empty separator");
    if (right) {
        /* from the right, then reversed */
        size_t en = n;
        int64_t done = 0;
        jj_list *rev;
        size_t rcap = 0;
        if (jj_list_new(&x->arena, 0, &rev))
            return jj_oom(x, at);
        for (size_t i = n; i >= sn;) {
            if ((maxsplit < 0 || done < maxsplit) && !memcmp(p + i - sn, sep->u.s.p, sn)) {
                if (jj_push(x, at, &rev, &rcap, jv_str(p + i, en - i)))
                    return NN_ERR;
                i -= sn;
                en = i;
                done++;
            } else {
                i--;
            }
            if (i < sn)
                break;
        }
        if (jj_push(x, at, &rev, &rcap, jv_str(p, en)))
            return NN_ERR;
        for (size_t k = rev->n; k > 0; k--)
            if (jj_push(x, at, &l, &cap, rev->v[k - 1]))
                return NN_ERR;
        *out = jj_list_val(l);
        return NN_OK;
    }
    size_t st = 0;
    int64_t done = 0;
    for (size_t i = 0; i + sn <= n;) {
        if ((maxsplit < 0 || done < maxsplit) && !memcmp(p + i, sep->u.s.p, sn)) {
            if (jj_push(x, at, &l, &cap, jv_str(p + st, i - st)))
                return NN_ERR;
            i += sn;
            st = i;
            done++;
        } else {
            i++;
        }
    }
    if (jj_push(x, at, &l, &cap, jv_str(p + st, n - st)))
        return NN_ERR;
    *out = jj_list_val(l);
    return NN_OK;
}

int64_t jj_char_count(const jv *s)
{
    int64_t c = 0;
    for (size_t i = 0; i < s->u.s.n; i++)
        if (((unsigned char)s->u.s.p[i] & 0xc0) != 0x80)
            c++;
    return c;
}

static int affix(jj_ctx *x, const jj_node *at, const jv *s, const jv *a, bool end, bool *out)
{
    if (a->t == JV_LIST && a->u.l->tuple) {
        *out = false;
        for (size_t i = 0; i < a->u.l->n && !*out; i++)
            if (affix(x, at, s, &a->u.l->v[i], end, out))
                return NN_ERR;
        return NN_OK;
    }
    if (a->t != JV_STR)
        return jj_fail(x, at, "%s first arg must be str or a tuple of str, not %s",
                       end ? "endswith" : "startswith", jv_type_name(a));
    size_t n = a->u.s.n;
    *out = n <= s->u.s.n && !memcmp(s->u.s.p + (end ? s->u.s.n - n : 0), a->u.s.p, n);
    return NN_OK;
}

int jj_int_arg(jj_ctx *x, const jj_node *at, const jv *v, const char *what, int64_t *out)
{
    if (v->t == JV_INT || v->t == JV_BOOL) {
        *out = v->t == JV_INT ? v->u.i : v->u.b;
        return NN_OK;
    }
    return jj_fail(x, at, "%s must be an integer, not %s", what, jv_type_name(v));
}

/* ---- methods ---- */

static const char *const str_methods[] = {
    "strip",        "lstrip",       "rstrip",    "split",     "rsplit",     "startswith",
    "endswith",     "replace",      "upper",     "lower",     "title",      "capitalize",
    "swapcase",     "find",         "rfind",     "count",     "join",       "splitlines",
    "isdigit",      "isalpha",      "isalnum",   "isspace",   "isupper",    "islower",
    "removeprefix", "removesuffix", "index",     "rindex",    "format",     "center",
    "ljust",        "rjust",        "zfill",     "partition", "rpartition", "encode",
    "casefold",     "istitle",      "isnumeric", "isdecimal", "expandtabs", "translate",
    "maketrans",    "format_map",   NULL};
static const char *const dict_methods[] = {"items",      "keys",   "values",   "get",
                                           "copy",       "update", "pop",      "popitem",
                                           "setdefault", "clear",  "fromkeys", NULL};
static const char *const list_methods[] = {"index",  "count",   "copy", "append",
                                           "extend", "insert",  "pop",  "remove",
                                           "clear",  "reverse", "sort", NULL};

static bool in_names(const char *const *names, const char *s, size_t n)
{
    for (size_t i = 0; names[i]; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n))
            return true;
    return false;
}

bool jj_is_method(const jv *self, const char *name, size_t n)
{
    switch (self->t) {
    case JV_STR:
        return in_names(str_methods, name, n);
    case JV_DICT:
        return in_names(dict_methods, name, n);
    case JV_LIST:
        return in_names(list_methods, name, n);
    case JV_CYCLER: {
        static const char *const cm[] = {"next", "reset", "current", NULL};
        return in_names(cm, name, n);
    }
    default:
        return false;
    }
}

int jj_items(jj_ctx *x, const jj_node *at, const jj_dict *d, jv *out)
{
    jj_list *l;
    if (jj_list_new(&x->arena, d->n, &l))
        return jj_oom(x, at);
    for (size_t i = 0; i < d->n; i++) {
        jj_list *pair;
        if (jj_list_new(&x->arena, 2, &pair))
            return jj_oom(x, at);
        pair->tuple = true;
        pair->v[0] = d->k[i];
        pair->v[1] = d->v[i];
        l->v[i] = jj_list_val(pair);
    }
    *out = jj_list_val(l);
    return NN_OK;
}

static int find_sub(const jv *s, const jv *sub, bool last, int64_t *out)
{
    int64_t found = -1;
    for (size_t i = 0; i + sub->u.s.n <= s->u.s.n; i++)
        if (!memcmp(s->u.s.p + i, sub->u.s.p, sub->u.s.n)) {
            found = (int64_t)i;
            if (!last)
                break;
        }
    if (found >= 0) { /* bytes to characters */
        jv pre = jv_str(s->u.s.p, (size_t)found);
        found = jj_char_count(&pre);
    }
    *out = found;
    return NN_OK;
}

int jj_method_call(jj_ctx *x, const jj_node *at, const jj_method *m, jv *args, size_t nargs,
                   const char **kwn, jv *kwv, size_t nkw, jv *out)
{
    const jv *self = &m->self;
    const char *nm = m->name;
    const jv *a0 = jj_arg(args, nargs, kwn, kwv, nkw, 0, NULL);
    const jv *a1 = jj_arg(args, nargs, kwn, kwv, nkw, 1, NULL);
    if (self->t == JV_LOOP) {
        jj_loop *l = self->u.loop;
        if (EQ(nm, "cycle")) {
            if (!nargs)
                return jj_fail(x, at, "no items for cycling given");
            *out = args[l->index % nargs];
            return NN_OK;
        }
        /* changed(*values) */
        jj_list *vals;
        if (jj_list_new(&x->arena, nargs, &vals))
            return jj_oom(x, at);
        jj_memcpy(vals->v, args, nargs * sizeof *args);
        jv now = jj_list_val(vals);
        bool changed = !l->changed_set || !jv_equal(&now, &l->changed_last);
        l->changed_set = true;
        l->changed_last = now;
        *out = jv_bool(changed);
        return NN_OK;
    }
    if (self->t == JV_CYCLER) {
        jj_cycler *c = self->u.cyc;
        if (EQ(nm, "next")) {
            *out = c->items->v[c->pos];
            c->pos = (c->pos + 1) % c->items->n;
        } else if (EQ(nm, "reset")) {
            c->pos = 0;
            *out = jv_none();
        } else {
            *out = c->items->v[c->pos];
        }
        return NN_OK;
    }
    if (self->t == JV_DICT) {
        if (EQ(nm, "items"))
            return jj_items(x, at, self->u.d, out);
        if (EQ(nm, "keys") || EQ(nm, "values")) {
            jj_list *l;
            if (jj_list_new(&x->arena, self->u.d->n, &l))
                return jj_oom(x, at);
            jj_memcpy(l->v, EQ(nm, "keys") ? self->u.d->k : self->u.d->v,
                      self->u.d->n * sizeof(jv));
            *out = jj_list_val(l);
            return NN_OK;
        }
        if (EQ(nm, "get")) {
            if (!a0)
                return jj_fail(x, at, "get expected at least 1 argument, got 0");
            jv *v = jj_dict_get(self->u.d, a0);
            *out = v ? *v : a1 ? *a1 : jv_none();
            return NN_OK;
        }
        if (EQ(nm, "copy")) {
            jj_dict *d = jj_dict_new(&x->arena);
            if (!d)
                return jj_oom(x, at);
            for (size_t i = 0; i < self->u.d->n; i++)
                if (jj_dict_set(&x->arena, d, self->u.d->k[i], self->u.d->v[i]))
                    return jj_oom(x, at);
            out->t = JV_DICT;
            out->markup = false;
            out->u.d = d;
            return NN_OK;
        }
        return jj_fail(x, at,
                       "dict.%s is unsafe: the sandbox of transformers' template "
                       "environment (ImmutableSandboxedEnvironment) refuses to modify "
                       "a dict",
                       nm);
    }
    if (self->t == JV_LIST) {
        if (EQ(nm, "index") || EQ(nm, "count")) {
            if (!a0)
                return jj_fail(x, at, "list.%s takes exactly one argument", nm);
            int64_t c = 0;
            for (size_t i = 0; i < self->u.l->n; i++)
                if (jv_equal(&self->u.l->v[i], a0)) {
                    if (EQ(nm, "index")) {
                        *out = jv_int((int64_t)i);
                        return NN_OK;
                    }
                    c++;
                }
            if (EQ(nm, "index"))
                return jj_fail(x, at, "list.index(x): x not in list");
            *out = jv_int(c);
            return NN_OK;
        }
        if (EQ(nm, "copy")) {
            *out = *self;
            return NN_OK;
        }
        return jj_fail(x, at,
                       "list.%s is unsafe: the sandbox of transformers' template "
                       "environment (ImmutableSandboxedEnvironment) refuses to modify "
                       "a list",
                       nm);
    }
    /* str */
    if (EQ(nm, "strip") || EQ(nm, "lstrip") || EQ(nm, "rstrip"))
        return jj_strip(x, at, self, a0, nm[0] == 'l' ? 1 : nm[0] == 'r' ? 2 : 3, out);
    if (EQ(nm, "split") || EQ(nm, "rsplit")) {
        const jv *sep = jj_arg(args, nargs, kwn, kwv, nkw, 0, "sep");
        const jv *ms = jj_arg(args, nargs, kwn, kwv, nkw, 1, "maxsplit");
        int64_t maxsplit = -1;
        if (ms && jj_int_arg(x, at, ms, "maxsplit", &maxsplit))
            return NN_ERR;
        return jj_split(x, at, self, sep, maxsplit, nm[0] == 'r', out);
    }
    if (EQ(nm, "startswith") || EQ(nm, "endswith")) {
        bool r;
        if (!a0)
            return jj_fail(x, at, "%s takes at least 1 argument", nm);
        if (nargs > 1)
            return jj_fail(x, at, "%s with start/end positions is not supported", nm);
        if (affix(x, at, self, a0, nm[0] == 'e', &r))
            return NN_ERR;
        *out = jv_bool(r);
        return NN_OK;
    }
    if (EQ(nm, "replace")) {
        int64_t count = -1;
        if (!a0 || !a1)
            return jj_fail(x, at, "replace expected at least 2 arguments");
        if (nargs > 2 && jj_int_arg(x, at, &args[2], "count", &count))
            return NN_ERR;
        return jj_replace(x, at, self, a0, a1, count, out);
    }
    if (EQ(nm, "upper") || EQ(nm, "lower") || EQ(nm, "title") || EQ(nm, "capitalize") ||
        EQ(nm, "swapcase"))
        return jj_case(x, at, self,
                       nm[0] == 's'   ? 's'
                       : nm[0] == 'c' ? 'c'
                       : nm[0] == 't' ? 't'
                       : nm[0] == 'u' ? 'u'
                                      : 'l',
                       out);
    if (EQ(nm, "find") || EQ(nm, "rfind") || EQ(nm, "index") || EQ(nm, "rindex") ||
        EQ(nm, "count")) {
        if (!a0 || jj_need_str(x, at, nm, a0))
            return NN_ERR;
        if (nargs > 1)
            return jj_fail(x, at, "%s with start/end positions is not supported", nm);
        if (EQ(nm, "count")) {
            int64_t c = 0;
            if (!a0->u.s.n) {
                c = jj_char_count(self) + 1;
            } else {
                for (size_t i = 0; i + a0->u.s.n <= self->u.s.n;)
                    if (!memcmp(self->u.s.p + i, a0->u.s.p, a0->u.s.n)) {
                        c++;
                        i += a0->u.s.n;
                    } else {
                        i++;
                    }
            }
            *out = jv_int(c);
            return NN_OK;
        }
        int64_t r;
        find_sub(self, a0, nm[0] == 'r', &r);
        if (r < 0 && (EQ(nm, "index") || EQ(nm, "rindex")))
            return jj_fail(x, at, "substring not found");
        *out = jv_int(r);
        return NN_OK;
    }
    if (EQ(nm, "join")) {
        if (!a0)
            return jj_fail(x, at, "join() takes exactly one argument");
        return jj_join(x, at, self, a0, NULL, out);
    }
    if (EQ(nm, "removeprefix") || EQ(nm, "removesuffix")) {
        bool r;
        if (!a0 || affix(x, at, self, a0, nm[6] == 's', &r))
            return a0 ? NN_ERR : jj_fail(x, at, "%s takes exactly one argument", nm);
        *out = *self;
        if (r) {
            if (nm[6] == 'p')
                out->u.s.p += a0->u.s.n;
            out->u.s.n -= a0->u.s.n;
        }
        return NN_OK;
    }
    if (EQ(nm, "isdigit") || EQ(nm, "isalpha") || EQ(nm, "isalnum") || EQ(nm, "isspace") ||
        EQ(nm, "isupper") || EQ(nm, "islower")) {
        bool r = self->u.s.n > 0, any_cased = false;
        const unsigned char *p = (const unsigned char *)self->u.s.p;
        for (size_t i = 0; i < self->u.s.n && r;) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t w = utf8proc_iterate(p + i, (utf8proc_ssize_t)(self->u.s.n - i), &cp);
            if (w <= 0)
                return jj_fail(x, at, "invalid UTF-8 in a string");
            utf8proc_category_t c = utf8proc_category(cp);
            bool alpha = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
            bool digit = c == UTF8PROC_CATEGORY_ND;
            if (EQ(nm, "isdigit"))
                r = digit;
            else if (EQ(nm, "isalpha"))
                r = alpha;
            else if (EQ(nm, "isalnum"))
                r = alpha || digit || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
            else if (EQ(nm, "isspace"))
                r = jj_space_len(self->u.s.p + i, self->u.s.n - i) > 0;
            else if (EQ(nm, "isupper")) {
                if (c == UTF8PROC_CATEGORY_LL)
                    r = false;
                any_cased |= c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT;
            } else {
                if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT)
                    r = false;
                any_cased |= c == UTF8PROC_CATEGORY_LL;
            }
            i += (size_t)w;
        }
        if (EQ(nm, "isupper") || EQ(nm, "islower"))
            r = r && any_cased;
        *out = jv_bool(r);
        return NN_OK;
    }
    if (EQ(nm, "splitlines")) {
        jj_list *l;
        size_t cap = 0, st = 0;
        if (jj_list_new(&x->arena, 0, &l))
            return jj_oom(x, at);
        const char *p = self->u.s.p;
        size_t n = self->u.s.n;
        for (size_t i = 0; i < n;) {
            size_t w = 0;
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                w = 2;
            else if (p[i] == '\n' || p[i] == '\r' || p[i] == '\v' || p[i] == '\f' ||
                     (p[i] >= 0x1c && p[i] <= 0x1e))
                w = 1;
            else if ((unsigned char)p[i] == 0xc2 && i + 1 < n && (unsigned char)p[i + 1] == 0x85)
                w = 2;
            else if ((unsigned char)p[i] == 0xe2 && i + 2 < n && (unsigned char)p[i + 1] == 0x80 &&
                     ((unsigned char)p[i + 2] == 0xa8 || (unsigned char)p[i + 2] == 0xa9))
                w = 3;
            if (w) {
                if (jj_push(x, at, &l, &cap, jv_str(p + st, i - st)))
                    return NN_ERR;
                i += w;
                st = i;
            } else {
                i++;
            }
        }
        if (st < n && jj_push(x, at, &l, &cap, jv_str(p + st, n - st)))
            return NN_ERR;
        *out = jj_list_val(l);
        return NN_OK;
    }
    return jj_fail(x, at, "the string method '%s' is not supported", nm);
}

/* ---- '%' formatting ---- */

int jj_string_format(jj_ctx *x, const jj_node *at, const jv *fmt, const jv *args, jv *out)
{
    jj_buf b = {0};
    size_t ai = 0;
    const jj_list *tuple = args->t == JV_LIST && args->u.l->tuple ? args->u.l : NULL;
    const char *p = fmt->u.s.p;
    size_t n = fmt->u.s.n;
    int rc = NN_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        if (p[i] != '%') {
            rc = jj_buf_add(x, &b, p + i, 1);
            continue;
        }
        if (++i >= n) {
            rc = jj_fail(x, at, "incomplete format");
            break;
        }
        if (p[i] == '%') {
            rc = jj_buf_add(x, &b, "%", 1);
            continue;
        }
        const jv *v;
        if (p[i] == '(') {
            size_t e = i;
            while (e < n && p[e] != ')')
                e++;
            if (e >= n || args->t != JV_DICT) {
                rc = jj_fail(x, at, "format requires a mapping");
                break;
            }
            v = jj_dict_get_str(args->u.d, p + i + 1, e - i - 1);
            if (!v) {
                rc = jj_fail(x, at, "KeyError in '%%' formatting");
                break;
            }
            i = e + 1;
        } else {
            v = tuple ? (ai < tuple->n ? &tuple->v[ai] : NULL) : (ai == 0 ? args : NULL);
            ai++;
            if (!v) {
                rc = jj_fail(x, at, "not enough arguments for format string");
                break;
            }
        }
        char spec[32];
        size_t k = 0;
        spec[k++] = '%';
        while (i < n && strchr("-+ #0123456789.", p[i]) && k < 20)
            spec[k++] = p[i++];
        if (i >= n) {
            rc = jj_fail(x, at, "incomplete format");
            break;
        }
        char conv = p[i];
        char tmp[512];
        if (conv == 's' || conv == 'r') {
            jj_buf sb = {0};
            rc = conv == 's' ? jv_str_append(x, &sb, v) : jv_repr_append(x, &sb, v);
            if (!rc) {
                if (k == 1)
                    rc = jj_buf_add(x, &b, sb.p ? sb.p : "", sb.n);
                else {
                    spec[k++] = 's';
                    spec[k] = 0;
                    snprintf(tmp, sizeof tmp, spec, sb.p ? sb.p : "");
                    rc = jj_buf_add(x, &b, tmp, strlen(tmp));
                }
            }
            nn_free(sb.p);
        } else if (strchr("dixXo", conv)) {
            if (v->t != JV_INT && v->t != JV_BOOL && v->t != JV_FLOAT) {
                rc = jj_fail(x, at, "%%%c format: a real number is required, not %s", conv,
                             jv_type_name(v));
                break;
            }
            long long iv = v->t == JV_FLOAT ? (long long)v->u.f : v->t == JV_INT ? v->u.i : v->u.b;
            spec[k++] = 'l';
            spec[k++] = 'l';
            spec[k++] = conv == 'i' ? 'd' : conv;
            spec[k] = 0;
            snprintf(tmp, sizeof tmp, spec, iv);
            rc = jj_buf_add(x, &b, tmp, strlen(tmp));
        } else if (strchr("feEgG", conv)) {
            if (v->t != JV_INT && v->t != JV_BOOL && v->t != JV_FLOAT) {
                rc = jj_fail(x, at, "must be real number, not %s", jv_type_name(v));
                break;
            }
            double d = v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : v->u.b;
            spec[k++] = conv;
            spec[k] = 0;
            snprintf(tmp, sizeof tmp, spec, d);
            rc = jj_buf_add(x, &b, tmp, strlen(tmp));
        } else {
            rc = jj_fail(x, at, "unsupported format character '%c'", conv);
        }
    }
    if (!rc && tuple && ai < tuple->n)
        rc = jj_fail(x, at, "not all arguments converted during string formatting");
    if (rc) {
        nn_free(b.p);
        return NN_ERR;
    }
    return jj_buf_str(x, at, &b, fmt->markup, out);
}
