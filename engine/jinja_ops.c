/* Jinja operators as Python computes them: iteration, ==/</in, and arithmetic (with str/list
 * concatenation and repetition, and markupsafe's escaping when a Markup string meets a str). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "jinja_internal.h"

/* UTF-8 string as code points: the byte offset of each character (n_chars + 1 entries). */
int jj_char_offsets(jj_ctx *x, const jv *s, size_t **off, size_t *nc)
{
    size_t count = 0;
    for (size_t i = 0; i < s->u.s.n; i++)
        if (((unsigned char)s->u.s.p[i] & 0xc0) != 0x80)
            count++;
    size_t *o = jj_alloc(&x->arena, (count + 1) * sizeof *o);
    if (!o)
        return jj_oom(x, NULL);
    size_t k = 0;
    for (size_t i = 0; i < s->u.s.n; i++)
        if (((unsigned char)s->u.s.p[i] & 0xc0) != 0x80)
            o[k++] = i;
    o[k] = s->u.s.n;
    *off = o;
    *nc = count;
    return NN_OK;
}

/* ---- iteration, comparison, arithmetic ---- */

int jj_iterate(jj_ctx *x, const jj_node *at, const jv *v, jj_list **out)
{
    static jj_list empty = {0};
    switch (v->t) {
    case JV_UNDEF:
        *out = &empty;
        return NN_OK;
    case JV_LIST:
        *out = v->u.l;
        return NN_OK;
    case JV_DICT: {
        jj_list *l;
        if (jj_list_new(&x->arena, v->u.d->n, &l))
            return jj_oom(x, at);
        jj_memcpy(l->v, v->u.d->k, v->u.d->n * sizeof(jv));
        *out = l;
        return NN_OK;
    }
    case JV_STR: {
        size_t *off, n;
        jj_list *l;
        if (jj_char_offsets(x, v, &off, &n) || jj_list_new(&x->arena, n, &l))
            return jj_oom(x, at);
        for (size_t i = 0; i < n; i++)
            l->v[i] = jv_str(v->u.s.p + off[i], off[i + 1] - off[i]);
        *out = l;
        return NN_OK;
    }
    default:
        return jj_fail(x, at, "'%s' object is not iterable", jv_type_name(v));
    }
}

static bool is_num(const jv *v)
{
    return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
}

static double num_d(const jv *v)
{
    return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : v->u.b;
}

static int64_t num_i(const jv *v)
{
    return v->t == JV_INT ? v->u.i : v->t == JV_BOOL ? (int64_t)v->u.b : 0;
}

static int order(jj_ctx *x, const jj_node *at, const jv *a, const jv *b, int *cmp)
{
    if (is_num(a) && is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT)
            *cmp = (num_i(a) > num_i(b)) - (num_i(a) < num_i(b));
        else
            *cmp = (num_d(a) > num_d(b)) - (num_d(a) < num_d(b));
        return NN_OK;
    }
    if (a->t == JV_STR && b->t == JV_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = memcmp(a->u.s.p, b->u.s.p, n);
        *cmp = c ? (c > 0) - (c < 0) : (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
        return NN_OK;
    }
    if (a->t == JV_LIST && b->t == JV_LIST) {
        for (size_t i = 0; i < a->u.l->n && i < b->u.l->n; i++) {
            if (jv_equal(&a->u.l->v[i], &b->u.l->v[i]))
                continue;
            return order(x, at, &a->u.l->v[i], &b->u.l->v[i], cmp);
        }
        *cmp = (a->u.l->n > b->u.l->n) - (a->u.l->n < b->u.l->n);
        return NN_OK;
    }
    return jj_fail(x, at, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a),
                   jv_type_name(b));
}

static int contains(jj_ctx *x, const jj_node *at, const jv *item, const jv *c, bool *out)
{
    if (c->t == JV_STR) {
        if (item->t != JV_STR)
            return jj_fail(x, at, "'in <string>' requires string as left operand, not %s",
                           jv_type_name(item));
        if (!item->u.s.n) {
            *out = true;
            return NN_OK;
        }
        *out = false;
        for (size_t i = 0; i + item->u.s.n <= c->u.s.n; i++)
            if (!memcmp(c->u.s.p + i, item->u.s.p, item->u.s.n)) {
                *out = true;
                break;
            }
        return NN_OK;
    }
    if (c->t == JV_DICT || c->t == JV_NS) {
        *out = jj_dict_get(c->u.d, item) != NULL;
        return NN_OK;
    }
    jj_list *l;
    if (jj_iterate(x, at, c, &l))
        return NN_ERR;
    *out = false;
    for (size_t i = 0; i < l->n; i++)
        if (jv_equal(&l->v[i], item)) {
            *out = true;
            break;
        }
    return NN_OK;
}

int jj_compare(jj_ctx *x, const jj_node *at, int op, const jv *a, const jv *b, bool *out)
{
    int c = 0;
    switch (op) {
    case OP_EQ:
        *out = jv_equal(a, b);
        return NN_OK;
    case OP_NE:
        *out = !jv_equal(a, b);
        return NN_OK;
    case OP_IN:
    case OP_NOTIN:
        if (contains(x, at, a, b, out))
            return NN_ERR;
        if (op == OP_NOTIN)
            *out = !*out;
        return NN_OK;
    default:
        if (order(x, at, a, b, &c))
            return NN_ERR;
        *out = op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
        return NN_OK;
    }
}

static const char *op_symbol(int op)
{
    static const char *const s[] = {"+", "-", "*", "/", "//", "%", "**"};
    return op <= OP_POW ? s[op] : "?";
}

/* markupsafe's escape of a str, for Markup + str. */
static int escape_into(jj_ctx *x, const jv *s, jv *out)
{
    jj_buf b = {0};
    int rc = NN_OK;
    for (size_t i = 0; i < s->u.s.n && !rc; i++) {
        const char *e = NULL;
        switch (s->u.s.p[i]) {
        case '&':
            e = "&amp;";
            break;
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '"':
            e = "&#34;";
            break;
        case '\'':
            e = "&#39;";
            break;
        }
        rc = e ? jj_buf_add(x, &b, e, strlen(e)) : jj_buf_add(x, &b, s->u.s.p + i, 1);
    }
    if (!rc) {
        char *p = jj_strndup(&x->arena, b.p ? b.p : "", b.n);
        if (!p)
            rc = jj_oom(x, NULL);
        else
            *out = jv_str(p, b.n);
    }
    nn_free(b.p);
    return rc;
}

static int repeat(jj_ctx *x, const jj_node *at, const jv *seq, int64_t times, jv *out)
{
    if (times < 0)
        times = 0;
    size_t unit = seq->t == JV_STR ? seq->u.s.n : seq->u.l->n * sizeof(jv), total;
    if (!nn_mul_size(unit, (size_t)times, &total) || total > x->lim.max_memory)
        return jj_oom(x, at);
    if (seq->t == JV_STR) {
        char *s = jj_alloc(&x->arena, total + 1);
        if (!s)
            return jj_oom(x, at);
        for (int64_t i = 0; i < times; i++)
            jj_memcpy(s + (size_t)i * unit, seq->u.s.p, unit);
        s[total] = 0;
        *out = jv_str(s, total);
        return NN_OK;
    }
    jj_list *l;
    if (jj_list_new(&x->arena, seq->u.l->n * (size_t)times, &l))
        return jj_oom(x, at);
    for (int64_t i = 0; i < times; i++)
        jj_memcpy(l->v + (size_t)i * seq->u.l->n, seq->u.l->v, unit);
    out->t = JV_LIST;
    out->markup = false;
    out->u.l = l;
    return NN_OK;
}

int jj_binop(jj_ctx *x, const jj_node *at, int op, const jv *a, const jv *b, jv *out)
{
    if (a->t == JV_UNDEF)
        return jj_undefined_use(x, at, a);
    if (b->t == JV_UNDEF)
        return jj_undefined_use(x, at, b);
    if (is_num(a) && is_num(b)) {
        bool fl = a->t == JV_FLOAT || b->t == JV_FLOAT;
        int64_t i = num_i(a), j = num_i(b), r;
        double p = num_d(a), q = num_d(b);
        switch (op) {
        case OP_ADD:
            if (fl)
                *out = jv_float(p + q);
            else if (__builtin_add_overflow(i, j, &r))
                return jj_fail(x, at, "integer overflow");
            else
                *out = jv_int(r);
            return NN_OK;
        case OP_SUB:
            if (fl)
                *out = jv_float(p - q);
            else if (__builtin_sub_overflow(i, j, &r))
                return jj_fail(x, at, "integer overflow");
            else
                *out = jv_int(r);
            return NN_OK;
        case OP_MUL:
            if (fl)
                *out = jv_float(p * q);
            else if (__builtin_mul_overflow(i, j, &r))
                return jj_fail(x, at, "integer overflow");
            else
                *out = jv_int(r);
            return NN_OK;
        case OP_DIV:
            if (q == 0)
                return jj_fail(x, at, "division by zero");
            *out = jv_float(p / q);
            return NN_OK;
        case OP_FLOORDIV:
        case OP_MOD:
            if (fl ? q == 0 : j == 0)
                return jj_fail(x, at, "integer division or modulo by zero");
            if (fl) {
                double m = fmod(p, q);
                if (m != 0 && ((m < 0) != (q < 0)))
                    m += q;
                *out = op == OP_MOD ? jv_float(m) : jv_float(floor((p - m) / q + 0.5));
                if (op == OP_FLOORDIV)
                    *out = jv_float(floor(p / q));
            } else {
                if (i == INT64_MIN && j == -1)
                    return jj_fail(x, at, "integer overflow");
                int64_t d = i / j, m = i % j;
                if (m != 0 && ((m < 0) != (j < 0))) {
                    d--;
                    m += j;
                }
                *out = jv_int(op == OP_MOD ? m : d);
            }
            return NN_OK;
        case OP_POW:
            if (!fl && j >= 0) {
                int64_t acc = 1;
                for (int64_t k = 0; k < j; k++) {
                    if (__builtin_mul_overflow(acc, i, &acc))
                        return jj_fail(x, at, "integer overflow in **");
                    if (acc == 0 || acc == 1)
                        break;
                }
                if (acc == -1 && (j % 2 == 0))
                    acc = 1;
                *out = jv_int(acc);
            } else {
                *out = jv_float(pow(p, q));
            }
            return NN_OK;
        }
    }
    if (op == OP_ADD && a->t == JV_STR && b->t == JV_STR) {
        jv l = *a, r = *b;
        bool markup = a->markup || b->markup;
        if (a->markup && !b->markup && escape_into(x, b, &r))
            return NN_ERR;
        if (b->markup && !a->markup && escape_into(x, a, &l))
            return NN_ERR;
        char *s = jj_alloc(&x->arena, l.u.s.n + r.u.s.n + 1);
        if (!s)
            return jj_oom(x, at);
        jj_memcpy(s, l.u.s.p, l.u.s.n);
        jj_memcpy(s + l.u.s.n, r.u.s.p, r.u.s.n);
        s[l.u.s.n + r.u.s.n] = 0;
        *out = jv_str(s, l.u.s.n + r.u.s.n);
        out->markup = markup;
        return NN_OK;
    }
    if (op == OP_ADD && a->t == JV_LIST && b->t == JV_LIST && a->u.l->tuple == b->u.l->tuple) {
        jj_list *l;
        if (jj_list_new(&x->arena, a->u.l->n + b->u.l->n, &l))
            return jj_oom(x, at);
        jj_memcpy(l->v, a->u.l->v, a->u.l->n * sizeof(jv));
        jj_memcpy(l->v + a->u.l->n, b->u.l->v, b->u.l->n * sizeof(jv));
        l->tuple = a->u.l->tuple;
        out->t = JV_LIST;
        out->markup = false;
        out->u.l = l;
        return NN_OK;
    }
    if (op == OP_MUL && (a->t == JV_STR || a->t == JV_LIST) && (b->t == JV_INT || b->t == JV_BOOL))
        return repeat(x, at, a, num_i(b), out);
    if (op == OP_MUL && (b->t == JV_STR || b->t == JV_LIST) && (a->t == JV_INT || a->t == JV_BOOL))
        return repeat(x, at, b, num_i(a), out);
    if (op == OP_MOD && a->t == JV_STR)
        return jj_string_format(x, at, a, b, out);
    if (op == OP_ADD && a->t == JV_STR)
        return jj_fail(x, at, "can only concatenate str (not \"%s\") to str", jv_type_name(b));
    return jj_fail(x, at, "unsupported operand type(s) for %s: '%s' and '%s'", op_symbol(op),
                   jv_type_name(a), jv_type_name(b));
}
