/* Jinja built-ins: the filters and tests chat templates use (jinja2's, with transformers' tojson),
 * Python's str/dict/list methods, the globals (raise_exception, strftime_now, namespace, range,
 * dict, cycler) and printf-style '%'. A name not here is an error naming it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "jinja_internal.h"

const char *const jj_global_names[G_COUNT] = {
    "raise_exception", "strftime_now", "namespace", "range", "dict", "cycler", "joiner", "lipsum"};

#define EQ(a, b) (!strcmp((a), (b)))

/* Argument i (positional) or the keyword name; NULL when neither was given. */
static const jv *arg(jv *args, size_t nargs, const char **kwn, jv *kwv, size_t nkw, size_t i,
                     const char *name)
{
    if (i < nargs)
        return &args[i];
    for (size_t k = 0; k < nkw; k++)
        if (name && EQ(kwn[k], name))
            return &kwv[k];
    return NULL;
}

static int check_kwargs(jj_ctx *x, const jj_node *at, const char *fn, const char **kwn, size_t nkw,
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

static jv list_val(jj_list *l)
{
    jv v = {.t = JV_LIST};
    v.u.l = l;
    return v;
}

static int need_str(jj_ctx *x, const jj_node *at, const char *what, const jv *v)
{
    if (v->t != JV_STR)
        return jj_fail(x, at, "%s expects a string, got %s", what, jv_type_name(v));
    return NN_OK;
}

static int new_str(jj_ctx *x, const jj_node *at, const char *s, size_t n, bool markup, jv *out)
{
    char *p = jj_strndup(&x->arena, s, n);
    if (!p)
        return jj_oom(x, at);
    *out = jv_str(p, n);
    out->markup = markup;
    return NN_OK;
}

static int buf_to_str(jj_ctx *x, const jj_node *at, jj_buf *b, bool markup, jv *out)
{
    int rc = new_str(x, at, b->p ? b->p : "", b->n, markup, out);
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
static int do_strip(jj_ctx *x, const jj_node *at, const jv *s, const jv *chars, int which, jv *out)
{
    if (chars && chars->t != JV_NONE && need_str(x, at, "strip(chars)", chars))
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
static int do_case(jj_ctx *x, const jj_node *at, const jv *s, char mode, jv *out)
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
    return buf_to_str(x, at, &b, s->markup, out);
}

static int do_replace(jj_ctx *x, const jj_node *at, const jv *s, const jv *old, const jv *new_,
                      int64_t count, jv *out)
{
    if (need_str(x, at, "replace()", old) || need_str(x, at, "replace()", new_))
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
        return buf_to_str(x, at, &b, false, out);
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
    return buf_to_str(x, at, &b, false, out);
}

static int push_item(jj_ctx *x, const jj_node *at, jj_list **l, size_t *cap, jv v)
{
    if ((*l)->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        jv *nv = jj_alloc(&x->arena, nc * sizeof *nv);
        if (!nv)
            return jj_oom(x, at);
        if ((*l)->n)
            memcpy(nv, (*l)->v, (*l)->n * sizeof *nv);
        (*l)->v = nv;
        *cap = nc;
    }
    (*l)->v[(*l)->n++] = v;
    return NN_OK;
}

static int do_split(jj_ctx *x, const jj_node *at, const jv *s, const jv *sep, int64_t maxsplit,
                    bool right, jv *out)
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
                if (push_item(x, at, &l, &cap, jv_str(p + st, en - st)))
                    return NN_ERR;
                break;
            }
            while (i < n && jj_space_len(p + i, n - i) == 0)
                i++;
            if (push_item(x, at, &l, &cap, jv_str(p + st, i - st)))
                return NN_ERR;
            done++;
        }
        *out = list_val(l);
        return NN_OK;
    }
    if (need_str(x, at, "split(sep)", sep))
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
                if (push_item(x, at, &rev, &rcap, jv_str(p + i, en - i)))
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
        if (push_item(x, at, &rev, &rcap, jv_str(p, en)))
            return NN_ERR;
        for (size_t k = rev->n; k > 0; k--)
            if (push_item(x, at, &l, &cap, rev->v[k - 1]))
                return NN_ERR;
        *out = list_val(l);
        return NN_OK;
    }
    size_t st = 0;
    int64_t done = 0;
    for (size_t i = 0; i + sn <= n;) {
        if ((maxsplit < 0 || done < maxsplit) && !memcmp(p + i, sep->u.s.p, sn)) {
            if (push_item(x, at, &l, &cap, jv_str(p + st, i - st)))
                return NN_ERR;
            i += sn;
            st = i;
            done++;
        } else {
            i++;
        }
    }
    if (push_item(x, at, &l, &cap, jv_str(p + st, n - st)))
        return NN_ERR;
    *out = list_val(l);
    return NN_OK;
}

static int64_t char_count(const jv *s)
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

static int int_arg(jj_ctx *x, const jj_node *at, const jv *v, const char *what, int64_t *out)
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

static int items_of(jj_ctx *x, const jj_node *at, const jj_dict *d, jv *out)
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
        l->v[i] = list_val(pair);
    }
    *out = list_val(l);
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
        found = char_count(&pre);
    }
    *out = found;
    return NN_OK;
}

static int join_values(jj_ctx *x, const jj_node *at, const jv *sep, const jv *seq,
                       const jv *attribute, jv *out);

int jj_method_call(jj_ctx *x, const jj_node *at, const jj_method *m, jv *args, size_t nargs,
                   const char **kwn, jv *kwv, size_t nkw, jv *out)
{
    const jv *self = &m->self;
    const char *nm = m->name;
    const jv *a0 = arg(args, nargs, kwn, kwv, nkw, 0, NULL);
    const jv *a1 = arg(args, nargs, kwn, kwv, nkw, 1, NULL);
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
        memcpy(vals->v, args, nargs * sizeof *args);
        jv now = list_val(vals);
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
            return items_of(x, at, self->u.d, out);
        if (EQ(nm, "keys") || EQ(nm, "values")) {
            jj_list *l;
            if (jj_list_new(&x->arena, self->u.d->n, &l))
                return jj_oom(x, at);
            memcpy(l->v, EQ(nm, "keys") ? self->u.d->k : self->u.d->v, self->u.d->n * sizeof(jv));
            *out = list_val(l);
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
        return do_strip(x, at, self, a0, nm[0] == 'l' ? 1 : nm[0] == 'r' ? 2 : 3, out);
    if (EQ(nm, "split") || EQ(nm, "rsplit")) {
        const jv *sep = arg(args, nargs, kwn, kwv, nkw, 0, "sep");
        const jv *ms = arg(args, nargs, kwn, kwv, nkw, 1, "maxsplit");
        int64_t maxsplit = -1;
        if (ms && int_arg(x, at, ms, "maxsplit", &maxsplit))
            return NN_ERR;
        return do_split(x, at, self, sep, maxsplit, nm[0] == 'r', out);
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
        if (nargs > 2 && int_arg(x, at, &args[2], "count", &count))
            return NN_ERR;
        return do_replace(x, at, self, a0, a1, count, out);
    }
    if (EQ(nm, "upper") || EQ(nm, "lower") || EQ(nm, "title") || EQ(nm, "capitalize") ||
        EQ(nm, "swapcase"))
        return do_case(x, at, self,
                       nm[0] == 's'   ? 's'
                       : nm[0] == 'c' ? 'c'
                       : nm[0] == 't' ? 't'
                       : nm[0] == 'u' ? 'u'
                                      : 'l',
                       out);
    if (EQ(nm, "find") || EQ(nm, "rfind") || EQ(nm, "index") || EQ(nm, "rindex") ||
        EQ(nm, "count")) {
        if (!a0 || need_str(x, at, nm, a0))
            return NN_ERR;
        if (nargs > 1)
            return jj_fail(x, at, "%s with start/end positions is not supported", nm);
        if (EQ(nm, "count")) {
            int64_t c = 0;
            if (!a0->u.s.n) {
                c = char_count(self) + 1;
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
        return join_values(x, at, self, a0, NULL, out);
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
                if (push_item(x, at, &l, &cap, jv_str(p + st, i - st)))
                    return NN_ERR;
                i += w;
                st = i;
            } else {
                i++;
            }
        }
        if (st < n && push_item(x, at, &l, &cap, jv_str(p + st, n - st)))
            return NN_ERR;
        *out = list_val(l);
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
    return buf_to_str(x, at, &b, fmt->markup, out);
}

/* ---- tests ---- */

static bool callable(const jv *v)
{
    return v->t == JV_MACRO || v->t == JV_GLOBAL || v->t == JV_METHOD || v->t == JV_CYCLER;
}

int jj_test(jj_ctx *x, const jj_node *at, const char *name, const jv *v, jv *args, size_t nargs,
            bool *out)
{
    const jv *a0 = nargs ? &args[0] : NULL;
    if (EQ(name, "defined"))
        *out = v->t != JV_UNDEF;
    else if (EQ(name, "undefined"))
        *out = v->t == JV_UNDEF;
    else if (EQ(name, "none"))
        *out = v->t == JV_NONE;
    else if (EQ(name, "string"))
        *out = v->t == JV_STR;
    else if (EQ(name, "number"))
        *out = v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
    else if (EQ(name, "integer"))
        *out = v->t == JV_INT;
    else if (EQ(name, "float"))
        *out = v->t == JV_FLOAT;
    else if (EQ(name, "boolean"))
        *out = v->t == JV_BOOL;
    else if (EQ(name, "true"))
        *out = v->t == JV_BOOL && v->u.b;
    else if (EQ(name, "false"))
        *out = v->t == JV_BOOL && !v->u.b;
    else if (EQ(name, "mapping"))
        *out = v->t == JV_DICT;
    else if (EQ(name, "iterable"))
        *out = v->t == JV_STR || v->t == JV_LIST || v->t == JV_DICT || v->t == JV_UNDEF;
    else if (EQ(name, "sequence"))
        *out = v->t == JV_STR || v->t == JV_LIST || v->t == JV_DICT || v->t == JV_UNDEF;
    else if (EQ(name, "callable"))
        *out = callable(v);
    else if (EQ(name, "escaped"))
        *out = v->t == JV_STR && v->markup;
    else if (EQ(name, "lower") || EQ(name, "upper")) {
        jv m;
        if (v->t != JV_STR)
            return jj_fail(x, at, "the test '%s' needs a string", name);
        if (do_case(x, at, v, name[0] == 'l' ? 'l' : 'u', &m))
            return NN_ERR;
        *out = jv_equal(&m, v);
    } else if (EQ(name, "odd") || EQ(name, "even") || EQ(name, "divisibleby")) {
        if (v->t != JV_INT && v->t != JV_BOOL)
            return jj_fail(x, at, "the test '%s' needs an integer, got %s", name, jv_type_name(v));
        int64_t i = v->t == JV_INT ? v->u.i : v->u.b, d = 2;
        if (EQ(name, "divisibleby")) {
            if (!a0 || int_arg(x, at, a0, "divisibleby's argument", &d))
                return a0 ? NN_ERR : jj_fail(x, at, "divisibleby needs an argument");
            if (d == 0)
                return jj_fail(x, at, "integer division or modulo by zero");
            *out = i % d == 0;
        } else {
            *out = (i % 2 != 0) == EQ(name, "odd");
        }
    } else if (EQ(name, "sameas")) {
        if (!a0)
            return jj_fail(x, at, "sameas needs an argument");
        *out = (v->t == a0->t) &&
               (v->t == JV_NONE || v->t == JV_UNDEF || (v->t == JV_BOOL && v->u.b == a0->u.b) ||
                ((v->t == JV_LIST || v->t == JV_DICT || v->t == JV_NS) && v->u.d == a0->u.d));
    } else {
        static const char *const cmp[][2] = {
            {"eq", "=="}, {"equalto", "=="}, {"==", "=="},      {"ne", "!="},
            {"!=", "!="}, {"lt", "<"},       {"lessthan", "<"}, {"<", "<"},
            {"le", "<="}, {"<=", "<="},      {"gt", ">"},       {"greaterthan", ">"},
            {">", ">"},   {"ge", ">="},      {">=", ">="},      {"in", "in"}};
        for (size_t i = 0; i < sizeof cmp / sizeof *cmp; i++)
            if (EQ(name, cmp[i][0])) {
                if (!a0)
                    return jj_fail(x, at, "the test '%s' needs an argument", name);
                const char *o = cmp[i][1];
                int op = EQ(o, "==")   ? OP_EQ
                         : EQ(o, "!=") ? OP_NE
                         : EQ(o, "<")  ? OP_LT
                         : EQ(o, "<=") ? OP_LE
                         : EQ(o, ">")  ? OP_GT
                         : EQ(o, ">=") ? OP_GE
                                       : OP_IN;
                return jj_compare(x, at, op, v, a0, out);
            }
        return jj_fail(x, at, "no test named '%s'", name);
    }
    return NN_OK;
}

/* ---- filters ---- */

/* Jinja's attribute lookup for filters: "a.b.0" dotted, integers as indexes. */
static int attr_path(jj_ctx *x, const jj_node *at, const jv *obj, const jv *path, jv *out)
{
    if (path->t == JV_INT) {
        jv key = *path;
        if (obj->t == JV_LIST) {
            int64_t i = key.u.i < 0 ? key.u.i + (int64_t)obj->u.l->n : key.u.i;
            *out = i >= 0 && (size_t)i < obj->u.l->n ? obj->u.l->v[i] : jv_undef(NULL);
            return NN_OK;
        }
        jv *v = obj->t == JV_DICT ? jj_dict_get(obj->u.d, &key) : NULL;
        *out = v ? *v : jv_undef(NULL);
        return NN_OK;
    }
    if (need_str(x, at, "attribute", path))
        return NN_ERR;
    jv cur = *obj;
    const char *p = path->u.s.p, *end = p + path->u.s.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(end - p);
        bool digits = len > 0;
        for (size_t i = 0; i < len; i++)
            digits = digits && p[i] >= '0' && p[i] <= '9';
        if (cur.t == JV_UNDEF)
            break;
        if (digits && cur.t == JV_LIST) {
            size_t i = (size_t)strtoull(p, NULL, 10);
            cur = i < cur.u.l->n ? cur.u.l->v[i] : jv_undef(NULL);
        } else if (cur.t == JV_DICT || cur.t == JV_NS) {
            jv *v = jj_dict_get_str(cur.u.d, p, len);
            cur = v ? *v : jv_undef(NULL);
        } else if (jj_getattr(x, at, &cur, p, len, &cur)) {
            return NN_ERR;
        }
        if (!dot)
            break;
        p = dot + 1;
    }
    *out = cur;
    return NN_OK;
}

static int join_values(jj_ctx *x, const jj_node *at, const jv *sep, const jv *seq,
                       const jv *attribute, jv *out)
{
    jj_list *l;
    if (jj_iterate(x, at, seq, &l))
        return NN_ERR;
    jj_buf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        jv item = l->v[i];
        if (attribute && attr_path(x, at, &l->v[i], attribute, &item))
            goto fail;
        if (i && sep && jv_str_append(x, &b, sep))
            goto fail;
        if (jv_str_append(x, &b, &item))
            goto fail;
    }
    return buf_to_str(x, at, &b, false, out);
fail:
    nn_free(b.p);
    return NN_ERR;
}

static int select_items(jj_ctx *x, const jj_node *at, const char *name, const jv *val, jv *args,
                        size_t nargs, const char **kwn, jv *kwv, size_t nkw, jv *out)
{
    bool by_attr = EQ(name, "selectattr") || EQ(name, "rejectattr");
    bool keep_when = EQ(name, "select") || EQ(name, "selectattr");
    jj_list *l, *r;
    size_t cap = 0;
    if (nkw)
        return jj_fail(x, at, "%s takes no keyword arguments", name);
    if (jj_iterate(x, at, val, &l) || jj_list_new(&x->arena, 0, &r))
        return NN_ERR;
    size_t ti = by_attr ? 1 : 0;
    if (by_attr && !nargs)
        return jj_fail(x, at, "%s needs an attribute name", name);
    const char *test = NULL;
    char tbuf[64];
    if (nargs > ti) {
        if (need_str(x, at, "a test name", &args[ti]))
            return NN_ERR;
        snprintf(tbuf, sizeof tbuf, "%.*s", (int)(args[ti].u.s.n > 60 ? 60 : args[ti].u.s.n),
                 args[ti].u.s.p);
        test = tbuf;
    }
    for (size_t i = 0; i < l->n; i++) {
        jv item = l->v[i];
        bool t;
        if (by_attr && attr_path(x, at, &l->v[i], &args[0], &item))
            return NN_ERR;
        if (test) {
            if (jj_test(x, at, test, &item, args + ti + 1, nargs - ti - 1, &t))
                return NN_ERR;
        } else {
            t = jv_truthy(&item);
        }
        if (t == keep_when && push_item(x, at, &r, &cap, l->v[i]))
            return NN_ERR;
    }
    *out = list_val(r);
    return NN_OK;
}

static int sort_list(jj_ctx *x, const jj_node *at, jj_list *l, const jv *attribute, bool reverse,
                     bool case_sensitive)
{
    /* insertion sort: stable like Python's, and lists in templates are short */
    jv *keys = jj_alloc(&x->arena, (l->n + 1) * sizeof *keys);
    if (!keys)
        return jj_oom(x, at);
    for (size_t i = 0; i < l->n; i++) {
        keys[i] = l->v[i];
        if (attribute && attr_path(x, at, &l->v[i], attribute, &keys[i]))
            return NN_ERR;
        if (!case_sensitive && keys[i].t == JV_STR && do_case(x, at, &keys[i], 'l', &keys[i]))
            return NN_ERR;
    }
    for (size_t i = 1; i < l->n; i++)
        for (size_t j = i; j > 0; j--) {
            bool gt;
            if (jj_compare(x, at, reverse ? OP_LT : OP_GT, &keys[j - 1], &keys[j], &gt))
                return NN_ERR;
            if (!gt)
                break;
            jv t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
            t = l->v[j];
            l->v[j] = l->v[j - 1];
            l->v[j - 1] = t;
        }
    return NN_OK;
}

static int copy_list(jj_ctx *x, const jj_node *at, const jv *val, jj_list **out)
{
    jj_list *src, *l;
    if (jj_iterate(x, at, val, &src) || jj_list_new(&x->arena, src->n, &l))
        return NN_ERR;
    memcpy(l->v, src->v, src->n * sizeof(jv));
    *out = l;
    return NN_OK;
}

static int do_indent(jj_ctx *x, const jj_node *at, const jv *s, const jv *width, bool first,
                     bool blank, jv *out)
{
    jv ind = jv_str("    ", 4);
    if (width && width->t == JV_STR) {
        ind = *width;
    } else if (width) {
        int64_t w = 0;
        if (int_arg(x, at, width, "indent width", &w))
            return NN_ERR;
        if (w < 0 || w > 1000)
            return jj_fail(x, at, "indent width out of range");
        char *p = jj_alloc(&x->arena, (size_t)w + 1);
        if (!p)
            return jj_oom(x, at);
        memset(p, ' ', (size_t)w);
        ind = jv_str(p, (size_t)w);
    }
    jj_buf b = {0};
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, st = 0;
    bool first_line = true;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '\n')
            continue;
        size_t len = i - st;
        bool is_blank = len == 0;
        for (size_t k = st; k < i && is_blank; k++)
            is_blank = jj_space_len(p + k, i - k) > 0;
        bool put = first_line ? first : (blank || !is_blank);
        if ((put && jj_buf_add(x, &b, ind.u.s.p, ind.u.s.n)) || jj_buf_add(x, &b, p + st, len) ||
            (i < n && jj_buf_add(x, &b, "\n", 1))) {
            nn_free(b.p);
            return NN_ERR;
        }
        st = i + 1;
        first_line = false;
    }
    return buf_to_str(x, at, &b, s->markup, out);
}

int jj_filter(jj_ctx *x, const jj_node *at, const char *name, const jv *val, jv *args, size_t nargs,
              const char **kwn, jv *kwv, size_t nkw, jv *out)
{
    const jv *a0 = arg(args, nargs, kwn, kwv, nkw, 0, NULL);
    jv sv;
#define STR_OF(v)                                                                                  \
    do {                                                                                           \
        if (jv_to_string(x, (v), &sv))                                                             \
            return NN_ERR;                                                                         \
        sv.markup = (v)->markup;                                                                   \
    } while (0)
    if (EQ(name, "trim")) {
        STR_OF(val);
        return do_strip(x, at, &sv, arg(args, nargs, kwn, kwv, nkw, 0, "chars"), 3, out);
    }
    if (EQ(name, "length") || EQ(name, "count")) {
        switch (val->t) {
        case JV_UNDEF:
            *out = jv_int(0);
            return NN_OK;
        case JV_STR:
            *out = jv_int(char_count(val));
            return NN_OK;
        case JV_LIST:
            *out = jv_int((int64_t)val->u.l->n);
            return NN_OK;
        case JV_DICT:
        case JV_NS:
            *out = jv_int((int64_t)val->u.d->n);
            return NN_OK;
        default:
            return jj_fail(x, at, "object of type '%s' has no len()", jv_type_name(val));
        }
    }
    if (EQ(name, "tojson")) {
        static const char *const ok[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
        if (check_kwargs(x, at, "tojson", kwn, nkw, ok))
            return NN_ERR;
        const jv *ea = arg(args, nargs, kwn, kwv, nkw, 0, "ensure_ascii");
        const jv *ind = arg(args, nargs, kwn, kwv, nkw, 1, "indent");
        const jv *seps = arg(args, nargs, kwn, kwv, nkw, 2, "separators");
        const jv *sk = arg(args, nargs, kwn, kwv, nkw, 3, "sort_keys");
        if (ea && jv_truthy(ea))
            return jj_fail(x, at, "tojson(ensure_ascii=true) is not supported");
        char indent_buf[256];
        const char *indent = NULL;
        if (ind && ind->t != JV_NONE) {
            if (ind->t == JV_STR) {
                snprintf(indent_buf, sizeof indent_buf, "%.*s", (int)ind->u.s.n, ind->u.s.p);
            } else {
                int64_t w = 0;
                if (int_arg(x, at, ind, "tojson indent", &w))
                    return NN_ERR;
                if (w < 0)
                    w = 0;
                if (w > 200)
                    return jj_fail(x, at, "tojson indent too large");
                memset(indent_buf, ' ', (size_t)w);
                indent_buf[w] = 0;
            }
            indent = indent_buf;
        }
        char isep[64], ksep[64];
        strcpy(isep, indent ? "," : ", ");
        strcpy(ksep, ": ");
        if (seps && seps->t != JV_NONE) {
            if (seps->t != JV_LIST || seps->u.l->n != 2 || seps->u.l->v[0].t != JV_STR ||
                seps->u.l->v[1].t != JV_STR || seps->u.l->v[0].u.s.n > 60 ||
                seps->u.l->v[1].u.s.n > 60)
                return jj_fail(x, at, "tojson separators must be a pair of strings");
            snprintf(isep, sizeof isep, "%.*s", (int)seps->u.l->v[0].u.s.n, seps->u.l->v[0].u.s.p);
            snprintf(ksep, sizeof ksep, "%.*s", (int)seps->u.l->v[1].u.s.n, seps->u.l->v[1].u.s.p);
        }
        jj_buf b = {0};
        if (jv_tojson(x, at, &b, val, indent, isep, ksep, sk && jv_truthy(sk), 0)) {
            nn_free(b.p);
            return NN_ERR;
        }
        return buf_to_str(x, at, &b, false, out);
    }
    if (EQ(name, "items")) {
        if (val->t == JV_UNDEF) {
            jj_list *l;
            if (jj_list_new(&x->arena, 0, &l))
                return jj_oom(x, at);
            *out = list_val(l);
            return NN_OK;
        }
        if (val->t != JV_DICT)
            return jj_fail(x, at, "can only get item pairs from a mapping, not %s",
                           jv_type_name(val));
        return items_of(x, at, val->u.d, out);
    }
    if (EQ(name, "join")) {
        const jv *d = arg(args, nargs, kwn, kwv, nkw, 0, "d");
        const jv *attribute = arg(args, nargs, kwn, kwv, nkw, 1, "attribute");
        jv sep = jv_str("", 0);
        if (d && jv_to_string(x, d, &sep))
            return NN_ERR;
        return join_values(x, at, &sep, val, attribute, out);
    }
    if (EQ(name, "upper") || EQ(name, "lower") || EQ(name, "title") || EQ(name, "capitalize")) {
        STR_OF(val);
        return do_case(x, at, &sv,
                       name[0] == 'u'   ? 'u'
                       : name[0] == 'l' ? 'l'
                       : name[0] == 't' ? 't'
                                        : 'c',
                       out);
    }
    if (EQ(name, "replace")) {
        const jv *old = arg(args, nargs, kwn, kwv, nkw, 0, "old");
        const jv *nw = arg(args, nargs, kwn, kwv, nkw, 1, "new");
        const jv *cnt = arg(args, nargs, kwn, kwv, nkw, 2, "count");
        int64_t count = -1;
        if (!old || !nw)
            return jj_fail(x, at, "replace needs two arguments");
        if (cnt && cnt->t != JV_NONE && int_arg(x, at, cnt, "count", &count))
            return NN_ERR;
        STR_OF(val);
        jv o, w;
        if (jv_to_string(x, old, &o) || jv_to_string(x, nw, &w))
            return NN_ERR;
        return do_replace(x, at, &sv, &o, &w, count, out);
    }
    if (EQ(name, "default") || EQ(name, "d")) {
        const jv *dv = arg(args, nargs, kwn, kwv, nkw, 0, "default_value");
        const jv *boolean = arg(args, nargs, kwn, kwv, nkw, 1, "boolean");
        bool use = val->t == JV_UNDEF || (boolean && jv_truthy(boolean) && !jv_truthy(val));
        *out = use ? (dv ? *dv : jv_str("", 0)) : *val;
        return NN_OK;
    }
    if (EQ(name, "first") || EQ(name, "last")) {
        jj_list *l;
        if (jj_iterate(x, at, val, &l))
            return NN_ERR;
        *out = l->n ? l->v[name[0] == 'f' ? 0 : l->n - 1]
                    : jv_undef(name[0] == 'f' ? "No first item, sequence was empty."
                                              : "No last item, sequence was empty.");
        return NN_OK;
    }
    if (EQ(name, "selectattr") || EQ(name, "rejectattr") || EQ(name, "select") ||
        EQ(name, "reject"))
        return select_items(x, at, name, val, args, nargs, kwn, kwv, nkw, out);
    if (EQ(name, "map")) {
        jj_list *l, *r;
        if (jj_iterate(x, at, val, &l) || jj_list_new(&x->arena, l->n, &r))
            return NN_ERR;
        const jv *attribute = arg(NULL, 0, kwn, kwv, nkw, 0, "attribute");
        const jv *dflt = arg(NULL, 0, kwn, kwv, nkw, 0, "default");
        if (attribute) {
            for (size_t i = 0; i < l->n; i++) {
                if (attr_path(x, at, &l->v[i], attribute, &r->v[i]))
                    return NN_ERR;
                if (r->v[i].t == JV_UNDEF && dflt)
                    r->v[i] = *dflt;
            }
        } else {
            if (!nargs || args[0].t != JV_STR)
                return jj_fail(x, at, "map needs a filter name or attribute=");
            char fn[64];
            snprintf(fn, sizeof fn, "%.*s", (int)(args[0].u.s.n > 60 ? 60 : args[0].u.s.n),
                     args[0].u.s.p);
            if (EQ(fn, "map"))
                return jj_fail(x, at, "map('map') is not supported");
            for (size_t i = 0; i < l->n; i++)
                if (jj_filter(x, at, fn, &l->v[i], args + 1, nargs - 1, kwn, kwv, nkw, &r->v[i]))
                    return NN_ERR;
        }
        *out = list_val(r);
        return NN_OK;
    }
    if (EQ(name, "string")) {
        if (val->t == JV_STR) {
            *out = *val;
            return NN_OK;
        }
        return jv_to_string(x, val, out);
    }
    if (EQ(name, "safe")) {
        if (jv_to_string(x, val, out))
            return NN_ERR;
        out->markup = true;
        return NN_OK;
    }
    if (EQ(name, "escape") || EQ(name, "e") || EQ(name, "forceescape")) {
        if (val->markup && name[0] != 'f') {
            *out = *val;
            return NN_OK;
        }
        STR_OF(val);
        jv plain = sv;
        plain.markup = false;
        jv one = {.t = JV_STR, .markup = true};
        one.u.s.p = "";
        one.u.s.n = 0;
        if (jj_binop(x, at, OP_ADD, &one, &plain, out))
            return NN_ERR;
        out->markup = true;
        return NN_OK;
    }
    if (EQ(name, "int")) {
        const jv *dflt = arg(args, nargs, kwn, kwv, nkw, 0, "default");
        const jv *base = arg(args, nargs, kwn, kwv, nkw, 1, "base");
        jv d = dflt ? *dflt : jv_int(0);
        if (val->t == JV_INT || val->t == JV_BOOL) {
            *out = jv_int(val->t == JV_INT ? val->u.i : val->u.b);
        } else if (val->t == JV_FLOAT) {
            if (!isfinite(val->u.f) || fabs(val->u.f) > 9.2e18)
                *out = d;
            else
                *out = jv_int((int64_t)val->u.f);
        } else if (val->t == JV_STR) {
            int64_t b = 10;
            if (base && int_arg(x, at, base, "base", &b))
                return NN_ERR;
            char buf[64];
            jv t;
            if (do_strip(x, at, val, NULL, 3, &t))
                return NN_ERR;
            size_t k = 0;
            for (size_t i = 0; i < t.u.s.n && k < sizeof buf - 1; i++)
                if (t.u.s.p[i] != '_')
                    buf[k++] = t.u.s.p[i];
            buf[k] = 0;
            char *end;
            errno = 0;
            long long v = k ? strtoll(buf, &end, (int)b) : 0;
            if (k && !*end && !errno && t.u.s.n < sizeof buf - 1) {
                *out = jv_int(v);
            } else {
                double f = k ? strtod(buf, &end) : 0;
                *out = k && !*end && isfinite(f) && fabs(f) < 9.2e18 ? jv_int((int64_t)f) : d;
            }
        } else {
            *out = d;
        }
        return NN_OK;
    }
    if (EQ(name, "float")) {
        const jv *dflt = arg(args, nargs, kwn, kwv, nkw, 0, "default");
        jv d = dflt ? *dflt : jv_float(0.0);
        if (val->t == JV_INT || val->t == JV_BOOL)
            *out = jv_float(val->t == JV_INT ? (double)val->u.i : val->u.b);
        else if (val->t == JV_FLOAT)
            *out = *val;
        else if (val->t == JV_STR) {
            jv t;
            char buf[128];
            if (do_strip(x, at, val, NULL, 3, &t))
                return NN_ERR;
            snprintf(buf, sizeof buf, "%.*s", (int)(t.u.s.n > 120 ? 120 : t.u.s.n), t.u.s.p);
            char *end;
            double f = strtod(buf, &end);
            *out = t.u.s.n && t.u.s.n <= 120 && !*end ? jv_float(f) : d;
        } else {
            *out = d;
        }
        return NN_OK;
    }
    if (EQ(name, "indent")) {
        const jv *width = arg(args, nargs, kwn, kwv, nkw, 0, "width");
        const jv *first = arg(args, nargs, kwn, kwv, nkw, 1, "first");
        const jv *blank = arg(args, nargs, kwn, kwv, nkw, 2, "blank");
        STR_OF(val);
        return do_indent(x, at, &sv, width, first && jv_truthy(first), blank && jv_truthy(blank),
                         out);
    }
    if (EQ(name, "list")) {
        jj_list *l;
        if (copy_list(x, at, val, &l))
            return NN_ERR;
        *out = list_val(l);
        return NN_OK;
    }
    if (EQ(name, "reverse")) {
        if (val->t == JV_STR) {
            jv parts[3] = {jv_none(), jv_none(), jv_int(-1)};
            (void)parts;
            jj_list *chars;
            if (jj_iterate(x, at, val, &chars))
                return NN_ERR;
            jj_buf b = {0};
            for (size_t i = chars->n; i > 0; i--)
                if (jj_buf_add(x, &b, chars->v[i - 1].u.s.p, chars->v[i - 1].u.s.n)) {
                    nn_free(b.p);
                    return NN_ERR;
                }
            return buf_to_str(x, at, &b, false, out);
        }
        jj_list *l;
        if (copy_list(x, at, val, &l))
            return NN_ERR;
        for (size_t i = 0; i < l->n / 2; i++) {
            jv t = l->v[i];
            l->v[i] = l->v[l->n - 1 - i];
            l->v[l->n - 1 - i] = t;
        }
        *out = list_val(l);
        return NN_OK;
    }
    if (EQ(name, "sort")) {
        const jv *rev = arg(args, nargs, kwn, kwv, nkw, 0, "reverse");
        const jv *cs = arg(args, nargs, kwn, kwv, nkw, 1, "case_sensitive");
        const jv *attribute = arg(args, nargs, kwn, kwv, nkw, 2, "attribute");
        jj_list *l;
        if (copy_list(x, at, val, &l) ||
            sort_list(x, at, l, attribute, rev && jv_truthy(rev), cs && jv_truthy(cs)))
            return NN_ERR;
        *out = list_val(l);
        return NN_OK;
    }
    if (EQ(name, "unique")) {
        jj_list *l, *r;
        size_t cap = 0;
        if (jj_iterate(x, at, val, &l) || jj_list_new(&x->arena, 0, &r))
            return NN_ERR;
        for (size_t i = 0; i < l->n; i++) {
            bool seen = false;
            for (size_t j = 0; j < r->n && !seen; j++)
                seen = jv_equal(&r->v[j], &l->v[i]);
            if (!seen && push_item(x, at, &r, &cap, l->v[i]))
                return NN_ERR;
        }
        *out = list_val(r);
        return NN_OK;
    }
    if (EQ(name, "sum") || EQ(name, "min") || EQ(name, "max")) {
        jj_list *l;
        if (jj_iterate(x, at, val, &l))
            return NN_ERR;
        const jv *attribute = arg(NULL, 0, kwn, kwv, nkw, 0, "attribute");
        jv acc = name[1] == 'u' ? (nargs > 1 ? args[1] : jv_int(0)) : jv_undef(NULL);
        if (name[1] != 'u' && !l->n) {
            *out = jv_undef("No aggregated item, sequence was empty.");
            return NN_OK;
        }
        for (size_t i = 0; i < l->n; i++) {
            jv item = l->v[i];
            if (attribute && attr_path(x, at, &l->v[i], attribute, &item))
                return NN_ERR;
            if (name[1] == 'u') {
                if (jj_binop(x, at, OP_ADD, &acc, &item, &acc))
                    return NN_ERR;
            } else if (i == 0) {
                acc = item;
            } else {
                bool better;
                if (jj_compare(x, at, name[1] == 'i' ? OP_LT : OP_GT, &item, &acc, &better))
                    return NN_ERR;
                if (better)
                    acc = item;
            }
        }
        *out = acc;
        return NN_OK;
    }
    if (EQ(name, "abs")) {
        if (val->t == JV_INT)
            *out = jv_int(val->u.i < 0 ? -val->u.i : val->u.i);
        else if (val->t == JV_FLOAT)
            *out = jv_float(fabs(val->u.f));
        else
            return jj_fail(x, at, "bad operand type for abs(): '%s'", jv_type_name(val));
        return NN_OK;
    }
    if (EQ(name, "round")) {
        const jv *prec = arg(args, nargs, kwn, kwv, nkw, 0, "precision");
        const jv *method = arg(args, nargs, kwn, kwv, nkw, 1, "method");
        int64_t p = 0;
        if (prec && int_arg(x, at, prec, "precision", &p))
            return NN_ERR;
        if (val->t != JV_INT && val->t != JV_FLOAT)
            return jj_fail(x, at, "round needs a number");
        if (method &&
            (method->t != JV_STR || !(method->u.s.n == 6 && !memcmp(method->u.s.p, "common", 6))))
            return jj_fail(x, at, "round(method=...) other than 'common' is not supported");
        double f = val->t == JV_INT ? (double)val->u.i : val->u.f, m = pow(10, (double)p);
        /* jinja's 'common': round half away from zero */
        *out = jv_float(round(f * m) / m);
        return NN_OK;
    }
    if (EQ(name, "wordcount")) {
        STR_OF(val);
        jv parts;
        if (do_split(x, at, &sv, NULL, -1, false, &parts))
            return NN_ERR;
        *out = jv_int((int64_t)parts.u.l->n);
        return NN_OK;
    }
    if (EQ(name, "dictsort")) {
        if (val->t != JV_DICT)
            return jj_fail(x, at, "dictsort needs a mapping");
        const jv *cs = arg(args, nargs, kwn, kwv, nkw, 0, "case_sensitive");
        const jv *by = arg(args, nargs, kwn, kwv, nkw, 1, "by");
        const jv *rev = arg(args, nargs, kwn, kwv, nkw, 2, "reverse");
        jv items;
        if (items_of(x, at, val->u.d, &items))
            return NN_ERR;
        jv idx = jv_int(by && by->t == JV_STR && by->u.s.n == 5 && !memcmp(by->u.s.p, "value", 5));
        return sort_list(x, at, items.u.l, &idx, rev && jv_truthy(rev), cs && jv_truthy(cs))
                   ? NN_ERR
                   : (*out = items, NN_OK);
    }
    if (EQ(name, "attr")) {
        if (!a0 || need_str(x, at, "attr", a0))
            return a0 ? NN_ERR : jj_fail(x, at, "attr needs a name");
        return jj_getattr(x, at, val, a0->u.s.p, a0->u.s.n, out);
    }
    if (EQ(name, "center")) {
        const jv *w = arg(args, nargs, kwn, kwv, nkw, 0, "width");
        int64_t width = 80;
        if (w && int_arg(x, at, w, "width", &width))
            return NN_ERR;
        STR_OF(val);
        int64_t len = char_count(&sv);
        if (width <= len) {
            *out = sv;
            return NN_OK;
        }
        if (width > 100000)
            return jj_fail(x, at, "center width too large");
        int64_t pad = width - len, left = pad / 2 + (pad & width & 1);
        jj_buf b = {0};
        for (int64_t i = 0; i < left; i++)
            jj_buf_add(x, &b, " ", 1);
        jj_buf_add(x, &b, sv.u.s.p, sv.u.s.n);
        for (int64_t i = 0; i < pad - left; i++)
            jj_buf_add(x, &b, " ", 1);
        return buf_to_str(x, at, &b, false, out);
    }
    if (EQ(name, "format")) {
        if (val->t != JV_STR)
            return jj_fail(x, at, "format needs a string");
        jj_list *t;
        if (nkw)
            return jj_fail(x, at, "format with keyword arguments is not supported");
        if (jj_list_new(&x->arena, nargs, &t))
            return jj_oom(x, at);
        t->tuple = true;
        memcpy(t->v, args, nargs * sizeof *args);
        jv tv = list_val(t);
        return jj_string_format(x, at, val, &tv, out);
    }
    if (EQ(name, "batch") || EQ(name, "slice")) {
        const jv *c = arg(args, nargs, kwn, kwv, nkw, 0, name[0] == 'b' ? "linecount" : "slices");
        int64_t size = 0;
        if (!c || int_arg(x, at, c, "size", &size) || size <= 0)
            return jj_fail(x, at, "%s needs a positive size", name);
        if (nargs > 1)
            return jj_fail(x, at, "%s with a fill value is not supported", name);
        jj_list *l, *r;
        size_t cap = 0;
        if (jj_iterate(x, at, val, &l) || jj_list_new(&x->arena, 0, &r))
            return NN_ERR;
        size_t per = (size_t)size;
        if (name[0] == 's')
            return jj_fail(x, at, "the filter 'slice' is not supported");
        for (size_t i = 0; i < l->n; i += per) {
            jj_list *chunk;
            size_t m = l->n - i < per ? l->n - i : per;
            if (jj_list_new(&x->arena, m, &chunk))
                return jj_oom(x, at);
            memcpy(chunk->v, l->v + i, m * sizeof(jv));
            if (push_item(x, at, &r, &cap, list_val(chunk)))
                return NN_ERR;
        }
        *out = list_val(r);
        return NN_OK;
    }
    return jj_fail(x, at, "no filter named '%s'", name);
#undef STR_OF
}

/* ---- globals ---- */

int jj_global_call(jj_ctx *x, const jj_node *at, int g, jv *args, size_t nargs, const char **kwn,
                   jv *kwv, size_t nkw, jv *out)
{
    switch (g) {
    case G_RAISE: {
        jv m = nargs ? args[0] : jv_str("", 0);
        jj_buf b = {0};
        if (jv_str_append(x, &b, &m)) {
            nn_free(b.p);
            return NN_ERR;
        }
        jj_fail(x, at, "raise_exception: %s", b.p ? b.p : "");
        nn_free(b.p);
        return NN_ERR;
    }
    case G_STRFTIME: {
        if (nargs != 1 || args[0].t != JV_STR)
            return jj_fail(x, at, "strftime_now needs one string argument");
        char fmt[256], buf[512];
        if (args[0].u.s.n >= sizeof fmt)
            return jj_fail(x, at, "strftime_now: format too long");
        memcpy(fmt, args[0].u.s.p, args[0].u.s.n);
        fmt[args[0].u.s.n] = 0;
        struct tm tm;
        localtime_r(&x->now, &tm);
        size_t n = fmt[0] ? strftime(buf, sizeof buf, fmt, &tm) : 0;
        if (fmt[0] && n == 0)
            return jj_fail(x, at, "strftime_now: the format '%s' gives nothing or too much", fmt);
        return new_str(x, at, buf, n, false, out);
    }
    case G_NAMESPACE:
    case G_DICT: {
        jj_dict *d = jj_dict_new(&x->arena);
        if (!d)
            return jj_oom(x, at);
        for (size_t i = 0; i < nargs; i++) {
            if (args[i].t != JV_DICT)
                return jj_fail(x, at, "%s() takes a mapping or keyword arguments",
                               jj_global_names[g]);
            for (size_t k = 0; k < args[i].u.d->n; k++)
                if (jj_dict_set(&x->arena, d, args[i].u.d->k[k], args[i].u.d->v[k]))
                    return jj_oom(x, at);
        }
        for (size_t k = 0; k < nkw; k++)
            if (jj_dict_set(&x->arena, d, jv_cstr(kwn[k]), kwv[k]))
                return jj_oom(x, at);
        out->t = g == G_NAMESPACE ? JV_NS : JV_DICT;
        out->markup = false;
        out->u.d = d;
        return NN_OK;
    }
    case G_RANGE: {
        int64_t a = 0, b = 0, step = 1;
        if (nargs < 1 || nargs > 3 || nkw)
            return jj_fail(x, at, "range expected 1 to 3 integer arguments");
        for (size_t i = 0; i < nargs; i++)
            if (int_arg(x, at, &args[i], "range's argument",
                        i == 0 && nargs == 1 ? &b
                        : i == 0             ? &a
                        : i == 1             ? &b
                                             : &step))
                return NN_ERR;
        if (step == 0)
            return jj_fail(x, at, "range() arg 3 must not be zero");
        double count = ceil(((double)b - (double)a) / (double)step);
        if (count < 0)
            count = 0;
        if (count > 100000) /* jinja's sandbox: MAX_RANGE */
            return jj_fail(x, at,
                           "Range too big. The sandbox blocks ranges larger than "
                           "MAX_RANGE (100000).");
        jj_list *l;
        if (jj_list_new(&x->arena, (size_t)count, &l))
            return jj_oom(x, at);
        for (size_t i = 0; i < (size_t)count; i++)
            l->v[i] = jv_int(a + (int64_t)i * step);
        *out = list_val(l);
        return NN_OK;
    }
    case G_CYCLER: {
        jj_cycler *c = jj_alloc(&x->arena, sizeof *c);
        if (!c || jj_list_new(&x->arena, nargs, &c->items))
            return jj_oom(x, at);
        if (!nargs)
            return jj_fail(x, at, "cycler needs at least one item");
        memcpy(c->items->v, args, nargs * sizeof *args);
        c->pos = 0;
        out->t = JV_CYCLER;
        out->markup = false;
        out->u.cyc = c;
        return NN_OK;
    }
    default:
        return jj_fail(x, at, "the global '%s' is not supported", jj_global_names[g]);
    }
}
