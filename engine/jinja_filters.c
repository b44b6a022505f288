/* Jinja built-ins, part 2: the filters and tests chat templates use (jinja2's, with transformers'
 * tojson) and the globals (raise_exception, strftime_now, namespace, range, dict, cycler). A name
 * not here is an error naming it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

#define EQ(a, b) (!strcmp((a), (b)))

const char *const jj_global_names[G_COUNT] = {
    "raise_exception", "strftime_now", "namespace", "range", "dict", "cycler", "joiner", "lipsum"};

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
        if (jj_case(x, at, v, name[0] == 'l' ? 'l' : 'u', &m))
            return NN_ERR;
        *out = jv_equal(&m, v);
    } else if (EQ(name, "odd") || EQ(name, "even") || EQ(name, "divisibleby")) {
        if (v->t != JV_INT && v->t != JV_BOOL)
            return jj_fail(x, at, "the test '%s' needs an integer, got %s", name, jv_type_name(v));
        int64_t i = v->t == JV_INT ? v->u.i : v->u.b, d = 2;
        if (EQ(name, "divisibleby")) {
            if (!a0 || jj_int_arg(x, at, a0, "divisibleby's argument", &d))
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
    if (jj_need_str(x, at, "attribute", path))
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

int jj_join(jj_ctx *x, const jj_node *at, const jv *sep, const jv *seq, const jv *attribute,
            jv *out)
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
    return jj_buf_str(x, at, &b, false, out);
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
        if (jj_need_str(x, at, "a test name", &args[ti]))
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
        if (t == keep_when && jj_push(x, at, &r, &cap, l->v[i]))
            return NN_ERR;
    }
    *out = jj_list_val(r);
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
        if (!case_sensitive && keys[i].t == JV_STR && jj_case(x, at, &keys[i], 'l', &keys[i]))
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
    jj_memcpy(l->v, src->v, src->n * sizeof(jv));
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
        if (jj_int_arg(x, at, width, "indent width", &w))
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
    return jj_buf_str(x, at, &b, s->markup, out);
}

int jj_filter(jj_ctx *x, const jj_node *at, const char *name, const jv *val, jv *args, size_t nargs,
              const char **kwn, jv *kwv, size_t nkw, jv *out)
{
    const jv *a0 = jj_arg(args, nargs, kwn, kwv, nkw, 0, NULL);
    jv sv;
#define STR_OF(v)                                                                                  \
    do {                                                                                           \
        if (jv_to_string(x, (v), &sv))                                                             \
            return NN_ERR;                                                                         \
        sv.markup = (v)->markup;                                                                   \
    } while (0)
    if (EQ(name, "trim")) {
        STR_OF(val);
        return jj_strip(x, at, &sv, jj_arg(args, nargs, kwn, kwv, nkw, 0, "chars"), 3, out);
    }
    if (EQ(name, "length") || EQ(name, "count")) {
        switch (val->t) {
        case JV_UNDEF:
            *out = jv_int(0);
            return NN_OK;
        case JV_STR:
            *out = jv_int(jj_char_count(val));
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
        if (jj_check_kwargs(x, at, "tojson", kwn, nkw, ok))
            return NN_ERR;
        const jv *ea = jj_arg(args, nargs, kwn, kwv, nkw, 0, "ensure_ascii");
        const jv *ind = jj_arg(args, nargs, kwn, kwv, nkw, 1, "indent");
        const jv *seps = jj_arg(args, nargs, kwn, kwv, nkw, 2, "separators");
        const jv *sk = jj_arg(args, nargs, kwn, kwv, nkw, 3, "sort_keys");
        if (ea && jv_truthy(ea))
            return jj_fail(x, at, "tojson(ensure_ascii=true) is not supported");
        char indent_buf[256];
        const char *indent = NULL;
        if (ind && ind->t != JV_NONE) {
            if (ind->t == JV_STR) {
                snprintf(indent_buf, sizeof indent_buf, "%.*s", (int)ind->u.s.n, ind->u.s.p);
            } else {
                int64_t w = 0;
                if (jj_int_arg(x, at, ind, "tojson indent", &w))
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
        return jj_buf_str(x, at, &b, false, out);
    }
    if (EQ(name, "items")) {
        if (val->t == JV_UNDEF) {
            jj_list *l;
            if (jj_list_new(&x->arena, 0, &l))
                return jj_oom(x, at);
            *out = jj_list_val(l);
            return NN_OK;
        }
        if (val->t != JV_DICT)
            return jj_fail(x, at, "can only get item pairs from a mapping, not %s",
                           jv_type_name(val));
        return jj_items(x, at, val->u.d, out);
    }
    if (EQ(name, "join")) {
        const jv *d = jj_arg(args, nargs, kwn, kwv, nkw, 0, "d");
        const jv *attribute = jj_arg(args, nargs, kwn, kwv, nkw, 1, "attribute");
        jv sep = jv_str("", 0);
        if (d && jv_to_string(x, d, &sep))
            return NN_ERR;
        return jj_join(x, at, &sep, val, attribute, out);
    }
    if (EQ(name, "upper") || EQ(name, "lower") || EQ(name, "title") || EQ(name, "capitalize")) {
        STR_OF(val);
        return jj_case(x, at, &sv,
                       name[0] == 'u'   ? 'u'
                       : name[0] == 'l' ? 'l'
                       : name[0] == 't' ? 't'
                                        : 'c',
                       out);
    }
    if (EQ(name, "replace")) {
        const jv *old = jj_arg(args, nargs, kwn, kwv, nkw, 0, "old");
        const jv *nw = jj_arg(args, nargs, kwn, kwv, nkw, 1, "new");
        const jv *cnt = jj_arg(args, nargs, kwn, kwv, nkw, 2, "count");
        int64_t count = -1;
        if (!old || !nw)
            return jj_fail(x, at, "replace needs two arguments");
        if (cnt && cnt->t != JV_NONE && jj_int_arg(x, at, cnt, "count", &count))
            return NN_ERR;
        STR_OF(val);
        jv o, w;
        if (jv_to_string(x, old, &o) || jv_to_string(x, nw, &w))
            return NN_ERR;
        return jj_replace(x, at, &sv, &o, &w, count, out);
    }
    if (EQ(name, "default") || EQ(name, "d")) {
        const jv *dv = jj_arg(args, nargs, kwn, kwv, nkw, 0, "default_value");
        const jv *boolean = jj_arg(args, nargs, kwn, kwv, nkw, 1, "boolean");
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
        const jv *attribute = jj_arg(NULL, 0, kwn, kwv, nkw, 0, "attribute");
        const jv *dflt = jj_arg(NULL, 0, kwn, kwv, nkw, 0, "default");
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
        *out = jj_list_val(r);
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
        const jv *dflt = jj_arg(args, nargs, kwn, kwv, nkw, 0, "default");
        const jv *base = jj_arg(args, nargs, kwn, kwv, nkw, 1, "base");
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
            if (base && jj_int_arg(x, at, base, "base", &b))
                return NN_ERR;
            char buf[64];
            jv t;
            if (jj_strip(x, at, val, NULL, 3, &t))
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
        const jv *dflt = jj_arg(args, nargs, kwn, kwv, nkw, 0, "default");
        jv d = dflt ? *dflt : jv_float(0.0);
        if (val->t == JV_INT || val->t == JV_BOOL)
            *out = jv_float(val->t == JV_INT ? (double)val->u.i : val->u.b);
        else if (val->t == JV_FLOAT)
            *out = *val;
        else if (val->t == JV_STR) {
            jv t;
            char buf[128];
            if (jj_strip(x, at, val, NULL, 3, &t))
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
        const jv *width = jj_arg(args, nargs, kwn, kwv, nkw, 0, "width");
        const jv *first = jj_arg(args, nargs, kwn, kwv, nkw, 1, "first");
        const jv *blank = jj_arg(args, nargs, kwn, kwv, nkw, 2, "blank");
        STR_OF(val);
        return do_indent(x, at, &sv, width, first && jv_truthy(first), blank && jv_truthy(blank),
                         out);
    }
    if (EQ(name, "list")) {
        jj_list *l;
        if (copy_list(x, at, val, &l))
            return NN_ERR;
        *out = jj_list_val(l);
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
            return jj_buf_str(x, at, &b, false, out);
        }
        jj_list *l;
        if (copy_list(x, at, val, &l))
            return NN_ERR;
        for (size_t i = 0; i < l->n / 2; i++) {
            jv t = l->v[i];
            l->v[i] = l->v[l->n - 1 - i];
            l->v[l->n - 1 - i] = t;
        }
        *out = jj_list_val(l);
        return NN_OK;
    }
    if (EQ(name, "sort")) {
        const jv *rev = jj_arg(args, nargs, kwn, kwv, nkw, 0, "reverse");
        const jv *cs = jj_arg(args, nargs, kwn, kwv, nkw, 1, "case_sensitive");
        const jv *attribute = jj_arg(args, nargs, kwn, kwv, nkw, 2, "attribute");
        jj_list *l;
        if (copy_list(x, at, val, &l) ||
            sort_list(x, at, l, attribute, rev && jv_truthy(rev), cs && jv_truthy(cs)))
            return NN_ERR;
        *out = jj_list_val(l);
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
            if (!seen && jj_push(x, at, &r, &cap, l->v[i]))
                return NN_ERR;
        }
        *out = jj_list_val(r);
        return NN_OK;
    }
    if (EQ(name, "sum") || EQ(name, "min") || EQ(name, "max")) {
        jj_list *l;
        if (jj_iterate(x, at, val, &l))
            return NN_ERR;
        const jv *attribute = jj_arg(NULL, 0, kwn, kwv, nkw, 0, "attribute");
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
        const jv *prec = jj_arg(args, nargs, kwn, kwv, nkw, 0, "precision");
        const jv *method = jj_arg(args, nargs, kwn, kwv, nkw, 1, "method");
        int64_t p = 0;
        if (prec && jj_int_arg(x, at, prec, "precision", &p))
            return NN_ERR;
        if (val->t != JV_INT && val->t != JV_FLOAT)
            return jj_fail(x, at, "round needs a number");
        char mname[16] = "common";
        if (method) {
            if (method->t != JV_STR || method->u.s.n >= sizeof mname)
                return jj_fail(x, at, "round's method must be 'common', 'floor' or 'ceil'");
            jj_memcpy(mname, method->u.s.p, method->u.s.n);
            mname[method->u.s.n] = 0;
        }
        double f = val->t == JV_INT ? (double)val->u.i : val->u.f, m = pow(10, (double)p);
        if (EQ(mname, "floor") || EQ(mname, "ceil")) {
            *out = jv_float((EQ(mname, "floor") ? floor(f * m) : ceil(f * m)) / m);
        } else if (!EQ(mname, "common")) {
            return jj_fail(x, at, "round's method must be 'common', 'floor' or 'ceil', not '%s'",
                           mname);
        } else if (val->t == JV_INT) { /* Python's round(int, p) stays an int */
            if (p >= 0) {
                *out = *val;
            } else if (p < -18) {
                *out = jv_int(0);
            } else {
                int64_t unit = 1, v = val->u.i, q, r;
                for (int64_t k = 0; k < -p; k++)
                    unit *= 10;
                q = v / unit;
                r = v % unit;
                if (r < 0) {
                    q--;
                    r += unit;
                }
                if (2 * r > unit || (2 * r == unit && (q % 2 != 0)))
                    q++;
                if (__builtin_mul_overflow(q, unit, &v))
                    return jj_fail(x, at, "integer overflow in round");
                *out = jv_int(v);
            }
        } else if (p >= 0 && p <= 300 && isfinite(f)) {
            /* 'common' is Python's round(): half to even on the exact binary value, which is
             * what printf's correctly rounded %.*f does */
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)p, f);
            *out = jv_float(strtod(buf, NULL));
        } else {
            *out = jv_float(p < 0 ? nearbyint(f * m) / m : f);
        }
        return NN_OK;
    }
    if (EQ(name, "wordcount")) {
        STR_OF(val);
        jv parts;
        if (jj_split(x, at, &sv, NULL, -1, false, &parts))
            return NN_ERR;
        *out = jv_int((int64_t)parts.u.l->n);
        return NN_OK;
    }
    if (EQ(name, "dictsort")) {
        if (val->t != JV_DICT)
            return jj_fail(x, at, "dictsort needs a mapping");
        const jv *cs = jj_arg(args, nargs, kwn, kwv, nkw, 0, "case_sensitive");
        const jv *by = jj_arg(args, nargs, kwn, kwv, nkw, 1, "by");
        const jv *rev = jj_arg(args, nargs, kwn, kwv, nkw, 2, "reverse");
        jv items;
        if (jj_items(x, at, val->u.d, &items))
            return NN_ERR;
        jv idx = jv_int(by && by->t == JV_STR && by->u.s.n == 5 && !memcmp(by->u.s.p, "value", 5));
        return sort_list(x, at, items.u.l, &idx, rev && jv_truthy(rev), cs && jv_truthy(cs))
                   ? NN_ERR
                   : (*out = items, NN_OK);
    }
    if (EQ(name, "attr")) {
        if (!a0 || jj_need_str(x, at, "attr", a0))
            return a0 ? NN_ERR : jj_fail(x, at, "attr needs a name");
        return jj_getattr(x, at, val, a0->u.s.p, a0->u.s.n, out);
    }
    if (EQ(name, "center")) {
        const jv *w = jj_arg(args, nargs, kwn, kwv, nkw, 0, "width");
        int64_t width = 80;
        if (w && jj_int_arg(x, at, w, "width", &width))
            return NN_ERR;
        STR_OF(val);
        int64_t len = jj_char_count(&sv);
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
        return jj_buf_str(x, at, &b, false, out);
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
        jj_memcpy(t->v, args, nargs * sizeof *args);
        jv tv = jj_list_val(t);
        return jj_string_format(x, at, val, &tv, out);
    }
    if (EQ(name, "batch") || EQ(name, "slice")) {
        const jv *c =
            jj_arg(args, nargs, kwn, kwv, nkw, 0, name[0] == 'b' ? "linecount" : "slices");
        int64_t size = 0;
        if (!c || jj_int_arg(x, at, c, "size", &size) || size <= 0)
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
            jj_memcpy(chunk->v, l->v + i, m * sizeof(jv));
            if (jj_push(x, at, &r, &cap, jj_list_val(chunk)))
                return NN_ERR;
        }
        *out = jj_list_val(r);
        return NN_OK;
    }
    return jj_fail(x, at, "no filter named '%s'", name);
#undef STR_OF
}

/* ---- globals ---- */

int jj_namespace_underscore(jj_ctx *x, const jj_node *at, const char *name, size_t n)
{
    /* transformers' TemplateNamespace */
    return jj_fail(x, at,
                   "Chat templates cannot store underscore-prefixed attributes on a namespace, but "
                   "got '%.*s'. Please rename the attribute.",
                   (int)(n > 80 ? 80 : n), name);
}

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
        jj_memcpy(fmt, args[0].u.s.p, args[0].u.s.n);
        fmt[args[0].u.s.n] = 0;
        struct tm tm;
        localtime_r(&x->now, &tm);
        size_t n = fmt[0] ? strftime(buf, sizeof buf, fmt, &tm) : 0;
        if (fmt[0] && n == 0)
            return jj_fail(x, at, "strftime_now: the format '%s' gives nothing or too much", fmt);
        return jj_new_str(x, at, buf, n, false, out);
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
        for (size_t k = 0; g == G_NAMESPACE && k < d->n; k++)
            if (d->k[k].t == JV_STR && d->k[k].u.s.n && d->k[k].u.s.p[0] == '_')
                return jj_namespace_underscore(x, at, d->k[k].u.s.p, d->k[k].u.s.n);
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
            if (jj_int_arg(x, at, &args[i], "range's argument",
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
        *out = jj_list_val(l);
        return NN_OK;
    }
    case G_CYCLER: {
        jj_cycler *c = jj_alloc(&x->arena, sizeof *c);
        if (!c || jj_list_new(&x->arena, nargs, &c->items))
            return jj_oom(x, at);
        if (!nargs)
            return jj_fail(x, at, "cycler needs at least one item");
        jj_memcpy(c->items->v, args, nargs * sizeof *args);
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
