/* Jinja values: the arena they live in, Python's str() and repr() of them, equality, JSON in
 * (jj_json_parse) and out (transformers' tojson = json.dumps(ensure_ascii=False)). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "jinja_internal.h"

/* ---- arena ---- */

void jj_arena_init(jj_arena *a, size_t limit)
{
    a->head = NULL;
    a->total = 0;
    a->limit = limit;
}

void jj_arena_free(jj_arena *a)
{
    jj_block *b = a->head;
    while (b) {
        jj_block *next = b->next;
        nn_free(b);
        b = next;
    }
    a->head = NULL;
    a->total = 0;
}

void *jj_alloc(jj_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    jj_block *b = a->head;
    if (!b || b->size - b->used < size) {
        size_t bsize = size > 60000 ? size : 64000;
        if (a->total + bsize > a->limit || bsize < size)
            return NULL;
        nn_err err;
        b = nn_malloc(sizeof *b + bsize, &err);
        if (!b)
            return NULL;
        b->size = bsize;
        b->used = 0;
        a->total += bsize;
        if (a->head && size > 60000) { /* a big block goes behind the current one */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

char *jj_strndup(jj_arena *a, const char *s, size_t n)
{
    char *p = jj_alloc(a, n + 1);
    if (p) {
        if (n)
            jj_memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* ---- constructors ---- */

jv jv_undef(const char *hint)
{
    jv v = {.t = JV_UNDEF};
    v.u.s.p = hint;
    return v;
}
jv jv_none(void)
{
    return (jv){.t = JV_NONE};
}
jv jv_bool(bool b)
{
    jv v = {.t = JV_BOOL};
    v.u.b = b;
    return v;
}
jv jv_int(int64_t i)
{
    jv v = {.t = JV_INT};
    v.u.i = i;
    return v;
}
jv jv_float(double f)
{
    jv v = {.t = JV_FLOAT};
    v.u.f = f;
    return v;
}
jv jv_str(const char *p, size_t n)
{
    jv v = {.t = JV_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
jv jv_cstr(const char *p)
{
    return jv_str(p, strlen(p));
}

bool jv_truthy(const jv *v)
{
    switch (v->t) {
    case JV_UNDEF:
    case JV_NONE:
        return false;
    case JV_BOOL:
        return v->u.b;
    case JV_INT:
        return v->u.i != 0;
    case JV_FLOAT:
        return v->u.f != 0;
    case JV_STR:
        return v->u.s.n != 0;
    case JV_LIST:
        return v->u.l->n != 0;
    case JV_DICT:
        return v->u.d->n != 0;
    default:
        return true;
    }
}

const char *jv_type_name(const jv *v)
{
    static const char *const names[] = {
        "Undefined", "NoneType",  "bool",  "int",      "float",  "str",         "list",
        "dict",      "Namespace", "Macro", "function", "method", "LoopContext", "Cycler"};
    if (v->t == JV_LIST && v->u.l->tuple)
        return "tuple";
    return names[v->t];
}

int jj_list_new(jj_arena *a, size_t n, jj_list **out)
{
    jj_list *l = jj_alloc(a, sizeof *l);
    size_t bytes;
    if (!l || !nn_mul_size(n ? n : 1, sizeof(jv), &bytes) || !(l->v = jj_alloc(a, bytes)))
        return NN_ERR;
    l->n = n;
    l->tuple = false;
    *out = l;
    return NN_OK;
}

jj_dict *jj_dict_new(jj_arena *a)
{
    jj_dict *d = jj_alloc(a, sizeof *d);
    if (d)
        memset(d, 0, sizeof *d);
    return d;
}

jv *jj_dict_get(const jj_dict *d, const jv *key)
{
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(&d->k[i], key))
            return &d->v[i];
    return NULL;
}

jv *jj_dict_get_str(const jj_dict *d, const char *key, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].u.s.n == n && !memcmp(d->k[i].u.s.p, key, n))
            return &d->v[i];
    return NULL;
}

int jj_dict_set(jj_arena *a, jj_dict *d, jv key, jv val)
{
    jv *old = jj_dict_get(d, &key);
    if (old) {
        *old = val;
        return NN_OK;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jv *k = jj_alloc(a, cap * sizeof *k), *v = jj_alloc(a, cap * sizeof *v);
        if (!k || !v)
            return NN_ERR;
        if (d->n) {
            jj_memcpy(k, d->k, d->n * sizeof *k);
            jj_memcpy(v, d->v, d->n * sizeof *v);
        }
        d->k = k;
        d->v = v;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n] = val;
    d->n++;
    return NN_OK;
}

static bool is_number(const jv *v)
{
    return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
}

static double as_double(const jv *v)
{
    return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : (double)v->u.b;
}

bool jv_equal(const jv *a, const jv *b)
{
    if (is_number(a) && is_number(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT) {
            int64_t x = a->t == JV_INT ? a->u.i : a->u.b, y = b->t == JV_INT ? b->u.i : b->u.b;
            return x == y;
        }
        return as_double(a) == as_double(b);
    }
    if (a->t != b->t)
        return false;
    switch (a->t) {
    case JV_UNDEF:
    case JV_NONE:
        return true;
    case JV_STR:
        return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    case JV_LIST:
        if (a->u.l->n != b->u.l->n || a->u.l->tuple != b->u.l->tuple)
            return false;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!jv_equal(&a->u.l->v[i], &b->u.l->v[i]))
                return false;
        return true;
    case JV_DICT:
        if (a->u.d->n != b->u.d->n)
            return false;
        for (size_t i = 0; i < a->u.d->n; i++) {
            jv *o = jj_dict_get(b->u.d, &a->u.d->k[i]);
            if (!o || !jv_equal(&a->u.d->v[i], o))
                return false;
        }
        return true;
    default:
        return a->u.d == b->u.d; /* identity */
    }
}

/* ---- buffers ---- */

int jj_buf_add(jj_ctx *x, jj_buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        if (b->n + n > x->lim.max_output)
            return jj_fail(x, NULL, "the rendered text exceeds the output limit of %zu bytes",
                           x->lim.max_output);
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = nn_realloc(b->p, cap, x->err);
        if (!p)
            return jj_oom(x, NULL);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        jj_memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return NN_OK;
}

int jj_buf_take(jj_ctx *x, jj_buf *b, size_t start, jv *out)
{
    size_t n = b->n - start;
    char *s = jj_strndup(&x->arena, b->p ? b->p + start : "", n);
    if (!s)
        return jj_oom(x, NULL);
    b->n = start;
    if (b->p)
        b->p[start] = 0;
    *out = jv_str(s, n);
    return NN_OK;
}

/* ---- str / repr ---- */

void jj_float_repr(double f, char *out, size_t size)
{
    if (isnan(f)) {
        snprintf(out, size, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, size, f < 0 ? "-inf" : "inf");
        return;
    }
    char buf[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) { /* the shortest digits that read back the same */
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f)
            break;
    }
    /* buf: [-]d.ddde[+-]XX */
    char digits[32];
    int nd = 0;
    const char *p = buf;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    char *o = out;
    size_t left = size;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(o, left, __VA_ARGS__);                                                   \
        if (w_ > 0 && (size_t)w_ < left) {                                                         \
            o += w_;                                                                               \
            left -= (size_t)w_;                                                                    \
        }                                                                                          \
    } while (0)
    if (neg)
        PUT("-");
    if (exp10 < -4 || exp10 >= 16) {
        PUT("%c", digits[0]);
        if (nd > 1)
            PUT(".%s", digits + 1);
        PUT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (exp10 < 0) {
        PUT("0.");
        for (int i = 0; i < -exp10 - 1; i++)
            PUT("0");
        PUT("%s", digits);
    } else {
        for (int i = 0; i <= exp10; i++)
            PUT("%c", i < nd ? digits[i] : '0');
        PUT(".");
        if (nd > exp10 + 1)
            PUT("%s", digits + exp10 + 1);
        else
            PUT("0");
    }
#undef PUT
}

static int repr_str(jj_ctx *x, jj_buf *b, const char *s, size_t n)
{
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (jj_buf_add(x, b, &q, 1))
        return NN_ERR;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[16];
        const char *e = NULL;
        if (c == '\\')
            e = "\\\\";
        else if (c == '\n')
            e = "\\n";
        else if (c == '\r')
            e = "\\r";
        else if (c == '\t')
            e = "\\t";
        else if (c == (unsigned char)q)
            e = q == '\'' ? "\\'" : "\\\"";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            e = esc;
        } else if (c >= 0x80) {
            /* Python's repr escapes what str.isprintable() refuses: the categories C* and Z*
             * (other than the ASCII space) */
            utf8proc_int32_t cp;
            utf8proc_ssize_t w =
                utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
            if (w > 0) {
                utf8proc_category_t cat = utf8proc_category(cp);
                bool printable = !(cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                                   cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO ||
                                   cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZS ||
                                   cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP);
                if (!printable) {
                    snprintf(esc, sizeof esc,
                             cp < 0x100     ? "\\x%02x"
                             : cp < 0x10000 ? "\\u%04x"
                                            : "\\U%08x",
                             (unsigned)cp);
                    e = esc;
                }
                if (e)
                    i += (size_t)w - 1;
            }
        }
        if (e ? jj_buf_add(x, b, e, strlen(e)) : jj_buf_add(x, b, (const char *)&s[i], 1))
            return NN_ERR;
    }
    return jj_buf_add(x, b, &q, 1);
}

int jv_repr_append(jj_ctx *x, jj_buf *b, const jv *v)
{
    if (v->t == JV_STR)
        return repr_str(x, b, v->u.s.p, v->u.s.n);
    if (v->t == JV_LIST) {
        const jj_list *l = v->u.l;
        if (jj_buf_add(x, b, l->tuple ? "(" : "[", 1))
            return NN_ERR;
        for (size_t i = 0; i < l->n; i++)
            if ((i && jj_buf_add(x, b, ", ", 2)) || jv_repr_append(x, b, &l->v[i]))
                return NN_ERR;
        if (l->tuple && l->n == 1 && jj_buf_add(x, b, ",", 1))
            return NN_ERR;
        return jj_buf_add(x, b, l->tuple ? ")" : "]", 1);
    }
    if (v->t == JV_DICT) {
        const jj_dict *d = v->u.d;
        if (jj_buf_add(x, b, "{", 1))
            return NN_ERR;
        for (size_t i = 0; i < d->n; i++)
            if ((i && jj_buf_add(x, b, ", ", 2)) || jv_repr_append(x, b, &d->k[i]) ||
                jj_buf_add(x, b, ": ", 2) || jv_repr_append(x, b, &d->v[i]))
                return NN_ERR;
        return jj_buf_add(x, b, "}", 1);
    }
    return jv_str_append(x, b, v);
}

int jv_str_append(jj_ctx *x, jj_buf *b, const jv *v)
{
    char num[64];
    switch (v->t) {
    case JV_UNDEF:
        return NN_OK;
    case JV_NONE:
        return jj_buf_add(x, b, "None", 4);
    case JV_BOOL:
        return v->u.b ? jj_buf_add(x, b, "True", 4) : jj_buf_add(x, b, "False", 5);
    case JV_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        return jj_buf_add(x, b, num, strlen(num));
    case JV_FLOAT:
        jj_float_repr(v->u.f, num, sizeof num);
        return jj_buf_add(x, b, num, strlen(num));
    case JV_STR:
        return jj_buf_add(x, b, v->u.s.p, v->u.s.n);
    case JV_LIST:
    case JV_DICT:
        return jv_repr_append(x, b, v);
    case JV_NS: {
        if (jj_buf_add(x, b, "<Namespace ", 11))
            return NN_ERR;
        jv d = {.t = JV_DICT};
        d.u.d = v->u.d;
        return jv_repr_append(x, b, &d) || jj_buf_add(x, b, ">", 1) ? NN_ERR : NN_OK;
    }
    case JV_MACRO:
        snprintf(num, sizeof num, "<Macro '%.40s'>", v->u.m->name);
        return jj_buf_add(x, b, num, strlen(num));
    default:
        return jj_fail(x, NULL,
                       "cannot print a %s: nnterp does not write Python's "
                       "<object at 0x...> representations",
                       jv_type_name(v));
    }
}

int jv_to_string(jj_ctx *x, const jv *v, jv *out)
{
    if (v->t == JV_STR) {
        *out = *v;
        return NN_OK;
    }
    jj_buf b = {0};
    int rc = jv_str_append(x, &b, v);
    if (!rc) {
        char *s = jj_strndup(&x->arena, b.p ? b.p : "", b.n);
        if (!s)
            rc = jj_oom(x, NULL);
        else
            *out = jv_str(s, b.n);
    }
    nn_free(b.p);
    return rc;
}

/* ---- JSON out ---- */

static int json_str(jj_ctx *x, jj_buf *b, const char *s, size_t n)
{
    if (jj_buf_add(x, b, "\"", 1))
        return NN_ERR;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (jj_buf_add(x, b, s + run, i - run))
            return NN_ERR;
        char esc[8];
        switch (c) {
        case '"':
            strcpy(esc, "\\\"");
            break;
        case '\\':
            strcpy(esc, "\\\\");
            break;
        case '\n':
            strcpy(esc, "\\n");
            break;
        case '\r':
            strcpy(esc, "\\r");
            break;
        case '\t':
            strcpy(esc, "\\t");
            break;
        case '\b':
            strcpy(esc, "\\b");
            break;
        case '\f':
            strcpy(esc, "\\f");
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
        }
        if (jj_buf_add(x, b, esc, strlen(esc)))
            return NN_ERR;
        run = i + 1;
    }
    return jj_buf_add(x, b, s + run, n - run) || jj_buf_add(x, b, "\"", 1) ? NN_ERR : NN_OK;
}

static int newline_indent(jj_ctx *x, jj_buf *b, const char *indent, int level)
{
    if (jj_buf_add(x, b, "\n", 1))
        return NN_ERR;
    for (int i = 0; i < level; i++)
        if (jj_buf_add(x, b, indent, strlen(indent)))
            return NN_ERR;
    return NN_OK;
}

/* A dict key as json.dumps writes it: strings as they are, numbers, bools and None as text. */
static int json_key(jj_ctx *x, const jj_node *at, jj_buf *b, const jv *k)
{
    char num[64];
    switch (k->t) {
    case JV_STR:
        return json_str(x, b, k->u.s.p, k->u.s.n);
    case JV_INT:
        snprintf(num, sizeof num, "\"%lld\"", (long long)k->u.i);
        break;
    case JV_FLOAT:
        num[0] = '"';
        jj_float_repr(k->u.f, num + 1, sizeof num - 2);
        strcat(num, "\"");
        break;
    case JV_BOOL:
        strcpy(num, k->u.b ? "\"true\"" : "\"false\"");
        break;
    case JV_NONE:
        strcpy(num, "\"null\"");
        break;
    default:
        return jj_fail(x, at, "tojson: keys must be str, int, float, bool or None, not %s",
                       jv_type_name(k));
    }
    return jj_buf_add(x, b, num, strlen(num));
}

static int key_cmp_ctx(const jv *a, const jv *b)
{
    size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
    int c = memcmp(a->u.s.p, b->u.s.p, n);
    return c ? c : (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
}

int jv_tojson(jj_ctx *x, const jj_node *at, jj_buf *b, const jv *v, const char *indent,
              const char *item_sep, const char *key_sep, bool sort_keys, int level)
{
    char num[64];
    if (level > 200)
        return jj_fail(x, at, "tojson: the value nests too deeply");
    if (jj_step(x, at))
        return NN_ERR;
    switch (v->t) {
    case JV_NONE:
        return jj_buf_add(x, b, "null", 4);
    case JV_BOOL:
        return v->u.b ? jj_buf_add(x, b, "true", 4) : jj_buf_add(x, b, "false", 5);
    case JV_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        return jj_buf_add(x, b, num, strlen(num));
    case JV_FLOAT:
        if (isnan(v->u.f))
            strcpy(num, "NaN");
        else if (isinf(v->u.f))
            strcpy(num, v->u.f < 0 ? "-Infinity" : "Infinity");
        else
            jj_float_repr(v->u.f, num, sizeof num);
        return jj_buf_add(x, b, num, strlen(num));
    case JV_STR:
        return json_str(x, b, v->u.s.p, v->u.s.n);
    case JV_LIST: {
        const jj_list *l = v->u.l;
        if (!l->n)
            return jj_buf_add(x, b, "[]", 2);
        if (jj_buf_add(x, b, "[", 1))
            return NN_ERR;
        for (size_t i = 0; i < l->n; i++) {
            if (i && jj_buf_add(x, b, item_sep, strlen(item_sep)))
                return NN_ERR;
            if (indent && newline_indent(x, b, indent, level + 1))
                return NN_ERR;
            if (jv_tojson(x, at, b, &l->v[i], indent, item_sep, key_sep, sort_keys, level + 1))
                return NN_ERR;
        }
        if (indent && newline_indent(x, b, indent, level))
            return NN_ERR;
        return jj_buf_add(x, b, "]", 1);
    }
    case JV_DICT: {
        const jj_dict *d = v->u.d;
        if (!d->n)
            return jj_buf_add(x, b, "{}", 2);
        size_t *order = jj_alloc(&x->arena, d->n * sizeof *order);
        if (!order)
            return jj_oom(x, at);
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        if (sort_keys) {
            for (size_t i = 0; i < d->n; i++)
                if (d->k[i].t != JV_STR)
                    return jj_fail(x, at, "tojson(sort_keys=true) needs string keys");
            for (size_t i = 1; i < d->n; i++) /* insertion sort: stable, dicts are small */
                for (size_t j = i; j > 0 && key_cmp_ctx(&d->k[order[j - 1]], &d->k[order[j]]) > 0;
                     j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        }
        if (jj_buf_add(x, b, "{", 1))
            return NN_ERR;
        for (size_t i = 0; i < d->n; i++) {
            if (i && jj_buf_add(x, b, item_sep, strlen(item_sep)))
                return NN_ERR;
            if (indent && newline_indent(x, b, indent, level + 1))
                return NN_ERR;
            if (json_key(x, at, b, &d->k[order[i]]) || jj_buf_add(x, b, key_sep, strlen(key_sep)) ||
                jv_tojson(x, at, b, &d->v[order[i]], indent, item_sep, key_sep, sort_keys,
                          level + 1))
                return NN_ERR;
        }
        if (indent && newline_indent(x, b, indent, level))
            return NN_ERR;
        return jj_buf_add(x, b, "}", 1);
    }
    default:
        return jj_fail(x, at, "tojson: Object of type %s is not JSON serializable",
                       jv_type_name(v));
    }
}

/* ---- JSON in ---- */

typedef struct jparse {
    jj_arena *a;
    const char *s;
    size_t n, i;
    int depth;
    const char *why;
} jparse;

static void jp_ws(jparse *p)
{
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int jp_hex4(jparse *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        if (p->i >= p->n)
            return NN_ERR;
        char c = p->s[p->i++];
        int h = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (h < 0)
            return NN_ERR;
        v = v * 16 + (uint32_t)h;
    }
    *out = v;
    return NN_OK;
}

static int jp_string(jparse *p, jv *out)
{
    p->i++; /* the quote */
    size_t start = p->i, cap = 0;
    while (p->i < p->n && p->s[p->i] != '"') {
        if (p->s[p->i] == '\\')
            p->i++;
        p->i++;
    }
    if (p->i >= p->n) {
        p->why = "unterminated string";
        return NN_ERR;
    }
    cap = p->i - start;
    char *o = jj_alloc(p->a, cap + 1);
    if (!o) {
        p->why = "out of memory";
        return NN_ERR;
    }
    size_t k = 0;
    for (size_t j = start; j < p->i; j++) {
        unsigned char c = (unsigned char)p->s[j];
        if (c < 0x20) {
            p->i = j;
            p->why = "control character in a string";
            return NN_ERR;
        }
        if (c != '\\') {
            o[k++] = (char)c;
            continue;
        }
        char e = p->s[++j];
        switch (e) {
        case '"':
        case '\\':
        case '/':
            o[k++] = e;
            break;
        case 'b':
            o[k++] = '\b';
            break;
        case 'f':
            o[k++] = '\f';
            break;
        case 'n':
            o[k++] = '\n';
            break;
        case 'r':
            o[k++] = '\r';
            break;
        case 't':
            o[k++] = '\t';
            break;
        case 'u': {
            size_t save = p->i;
            p->i = j + 1;
            uint32_t cp, lo;
            if (jp_hex4(p, &cp)) {
                p->why = "bad \\u escape";
                return NN_ERR;
            }
            j = p->i - 1;
            if (cp >= 0xD800 && cp < 0xDC00 && j + 2 < save && p->s[j + 1] == '\\' &&
                p->s[j + 2] == 'u') {
                p->i = j + 3;
                if (!jp_hex4(p, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    j = p->i - 1;
                }
            }
            p->i = save;
            if (cp == 0 || (cp >= 0xD800 && cp < 0xE000)) {
                p->why = cp ? "lone surrogate \\u escape" : "\\u0000 in a string";
                return NN_ERR;
            }
            k += (size_t)nn_utf8_encode(cp, o + k);
            break;
        }
        default:
            p->i = j;
            p->why = "bad escape in a string";
            return NN_ERR;
        }
    }
    o[k] = 0;
    if (nn_utf8_validate(o, k) != k) {
        p->why = "a string is not valid UTF-8";
        return NN_ERR;
    }
    p->i++;
    *out = jv_str(o, k);
    return NN_OK;
}

static int jp_value(jparse *p, jv *out)
{
    jp_ws(p);
    if (p->i >= p->n) {
        p->why = "unexpected end of JSON";
        return NN_ERR;
    }
    if (++p->depth > 500) {
        p->why = "nested too deeply";
        return NN_ERR;
    }
    char c = p->s[p->i];
    int rc = NN_OK;
    if (c == '"') {
        rc = jp_string(p, out);
    } else if (c == '[' || c == '{') {
        bool obj = c == '{';
        p->i++;
        jv *items = NULL;
        size_t n = 0, cap = 0;
        jj_dict *d = obj ? jj_dict_new(p->a) : NULL;
        if (obj && !d) {
            p->why = "out of memory";
            return NN_ERR;
        }
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
            p->i++;
        } else {
            for (;;) {
                jv key, val;
                if (obj) {
                    jp_ws(p);
                    if (p->i >= p->n || p->s[p->i] != '"') {
                        p->why = "expected a string key";
                        return NN_ERR;
                    }
                    if (jp_string(p, &key))
                        return NN_ERR;
                    jp_ws(p);
                    if (p->i >= p->n || p->s[p->i] != ':') {
                        p->why = "expected ':'";
                        return NN_ERR;
                    }
                    p->i++;
                }
                if (jp_value(p, &val))
                    return NN_ERR;
                if (obj) {
                    if (jj_dict_set(p->a, d, key, val)) {
                        p->why = "out of memory";
                        return NN_ERR;
                    }
                } else {
                    if (n == cap) {
                        cap = cap ? cap * 2 : 8;
                        jv *nv = jj_alloc(p->a, cap * sizeof *nv);
                        if (!nv) {
                            p->why = "out of memory";
                            return NN_ERR;
                        }
                        if (n)
                            jj_memcpy(nv, items, n * sizeof *nv);
                        items = nv;
                    }
                    items[n++] = val;
                }
                jp_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    continue;
                }
                if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
                    p->i++;
                    break;
                }
                p->why = obj ? "expected ',' or '}'" : "expected ',' or ']'";
                return NN_ERR;
            }
        }
        if (obj) {
            out->t = JV_DICT;
            out->markup = false;
            out->u.d = d;
        } else {
            jj_list *l;
            if (jj_list_new(p->a, n, &l)) {
                p->why = "out of memory";
                return NN_ERR;
            }
            if (n)
                jj_memcpy(l->v, items, n * sizeof *items);
            out->t = JV_LIST;
            out->markup = false;
            out->u.l = l;
        }
    } else if (!strncmp(p->s + p->i, "true", p->n - p->i < 4 ? p->n - p->i : 4) &&
               p->n - p->i >= 4) {
        p->i += 4;
        *out = jv_bool(true);
    } else if (p->n - p->i >= 5 && !strncmp(p->s + p->i, "false", 5)) {
        p->i += 5;
        *out = jv_bool(false);
    } else if (p->n - p->i >= 4 && !strncmp(p->s + p->i, "null", 4)) {
        p->i += 4;
        *out = jv_none();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        size_t st = p->i;
        bool fl = false;
        if (p->s[p->i] == '-')
            p->i++;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (p->i < p->n && p->s[p->i] == '.') {
            fl = true;
            p->i++;
            while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
                p->i++;
        }
        if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
            fl = true;
            p->i++;
            if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
                p->i++;
            while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
                p->i++;
        }
        char buf[64];
        size_t len = p->i - st;
        if (len >= sizeof buf) {
            p->why = "number too long";
            return NN_ERR;
        }
        jj_memcpy(buf, p->s + st, len);
        buf[len] = 0;
        char *end;
        if (fl) {
            *out = jv_float(strtod(buf, &end));
        } else {
            errno = 0;
            *out = jv_int(strtoll(buf, &end, 10));
            if (errno) {
                p->why = "integer out of the 64-bit range";
                return NN_ERR;
            }
        }
        if (*end || len == 0 || (buf[0] == '-' && len == 1)) {
            p->why = "bad number";
            return NN_ERR;
        }
    } else {
        p->why = "unexpected character";
        return NN_ERR;
    }
    p->depth--;
    return rc;
}

int jj_json_parse(jj_arena *a, const char *text, size_t len, jv *out, char *why, size_t why_size)
{
    jparse p = {.a = a, .s = text, .n = len};
    if (!jp_value(&p, out)) {
        jp_ws(&p);
        if (p.i == p.n)
            return NN_OK;
        p.why = "extra data after the value";
    }
    snprintf(why, why_size, "%s at byte %zu", p.why ? p.why : "bad JSON", p.i);
    return NN_ERR;
}
