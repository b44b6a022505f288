/* Jinja evaluation: statements write to the output buffer, expressions give values, with
 * jinja2's scoping (a for-loop iteration, a macro call and a with block get their own scope; if
 * does not), Python's operators and its errors, and the step/depth/memory limits. The public API
 * of engine/jinja.h is at the end. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

int jj_fail(jj_ctx *x, const jj_node *at, const char *fmt, ...)
{
    if (x->failed)
        return NN_ERR; /* keep the first, innermost message */
    x->failed = true;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at)
        return nn_fail(x->err, "%s:%d:%d: %s", x->tmpl->name, at->line, at->col, msg);
    return nn_fail(x->err, "%s: %s", x->tmpl->name, msg);
}

int jj_oom(jj_ctx *x, const jj_node *at)
{
    return jj_fail(x, at, "rendering needs more than the memory limit of %zu bytes",
                   x->lim.max_memory);
}

int jj_step(jj_ctx *x, const jj_node *at)
{
    if (++x->steps > x->lim.max_steps)
        return jj_fail(x, at, "the template ran more than %llu steps (a runaway loop?)",
                       (unsigned long long)x->lim.max_steps);
    return NN_OK;
}

/* ---- scopes ---- */

static jj_scope *scope_new(jj_ctx *x, jj_scope *parent)
{
    jj_scope *s = jj_alloc(&x->arena, sizeof *s);
    if (s) {
        memset(s, 0, sizeof *s);
        s->parent = parent;
    }
    return s;
}

static int scope_set(jj_ctx *x, const jj_node *at, jj_scope *s, const char *name, size_t n, jv v)
{
    if (jj_dict_set(&x->arena, &s->vars, jv_str(name, n), v))
        return jj_oom(x, at);
    return NN_OK;
}

static bool lookup(jj_ctx *x, jj_scope *s, const char *name, size_t n, jv *out)
{
    for (; s; s = s->parent) {
        jv *v = jj_dict_get_str(&s->vars, name, n);
        if (v) {
            *out = *v;
            return true;
        }
    }
    jv *v = jj_dict_get_str(&x->vars->vars, name, n);
    if (v) {
        *out = *v;
        return true;
    }
    for (int g = 0; g < G_COUNT; g++)
        if (strlen(jj_global_names[g]) == n && !memcmp(jj_global_names[g], name, n)) {
            out->t = JV_GLOBAL;
            out->markup = false;
            out->u.g = g;
            return true;
        }
    return false;
}

static char *name_hint(jj_ctx *x, const char *fmt, const char *s, size_t n)
{
    char buf[200];
    snprintf(buf, sizeof buf, fmt, (int)(n > 80 ? 80 : n), s);
    return jj_strndup(&x->arena, buf, strlen(buf));
}

/* ---- attribute and item access ---- */

int jj_undefined_use(jj_ctx *x, const jj_node *at, const jv *u)
{
    return jj_fail(x, at, "%s", u->u.s.p ? u->u.s.p : "undefined value");
}

static jv method_value(jj_ctx *x, const jv *self, const char *name, size_t n)
{
    jj_method *m = jj_alloc(&x->arena, sizeof *m);
    if (!m)
        return jv_undef(NULL);
    m->self = *self;
    m->name = jj_strndup(&x->arena, name, n);
    jv v = {.t = JV_METHOD};
    v.u.meth = m;
    return v;
}

static int loop_attr(jj_ctx *x, const jj_node *at, jj_loop *l, const char *name, size_t n, jv *out)
{
    size_t len = l->items->n, i = l->index;
#define IS(s) (n == strlen(s) && !memcmp(name, s, n))
    if (IS("index"))
        *out = jv_int((int64_t)i + 1);
    else if (IS("index0"))
        *out = jv_int((int64_t)i);
    else if (IS("revindex"))
        *out = jv_int((int64_t)(len - i));
    else if (IS("revindex0"))
        *out = jv_int((int64_t)(len - i - 1));
    else if (IS("first"))
        *out = jv_bool(i == 0);
    else if (IS("last"))
        *out = jv_bool(i + 1 == len);
    else if (IS("length"))
        *out = jv_int((int64_t)len);
    else if (IS("depth"))
        *out = jv_int(l->depth);
    else if (IS("depth0"))
        *out = jv_int(l->depth - 1);
    else if (IS("previtem"))
        *out = i ? l->items->v[i - 1] : jv_undef("there is no previous item");
    else if (IS("nextitem"))
        *out = i + 1 < len ? l->items->v[i + 1] : jv_undef("there is no next item");
    else if (IS("cycle") || IS("changed")) {
        jv self = {.t = JV_LOOP};
        self.u.loop = l;
        *out = method_value(x, &self, name, n);
    } else
        *out = jv_undef(name_hint(x, "'LoopContext' object has no attribute '%.*s'", name, n));
#undef IS
    return NN_OK;
}

int jj_getattr(jj_ctx *x, const jj_node *at, const jv *obj, const char *name, size_t n, jv *out)
{
    if (n && name[0] == '_') { /* the sandbox hides private attributes */
        *out = jv_undef(name_hint(x, "access to the attribute '%.*s' is unsafe", name, n));
        return NN_OK;
    }
    switch (obj->t) {
    case JV_UNDEF:
        return jj_undefined_use(x, at, obj);
    case JV_DICT: {
        if (jj_is_method(obj, name, n)) {
            *out = method_value(x, obj, name, n);
            return NN_OK;
        }
        jv *v = jj_dict_get_str(obj->u.d, name, n);
        *out = v ? *v : jv_undef(name_hint(x, "'dict object' has no attribute '%.*s'", name, n));
        return NN_OK;
    }
    case JV_NS: {
        jv *v = jj_dict_get_str(obj->u.d, name, n);
        *out =
            v ? *v : jv_undef(name_hint(x, "'Namespace' object has no attribute '%.*s'", name, n));
        return NN_OK;
    }
    case JV_LOOP:
        return loop_attr(x, at, obj->u.loop, name, n, out);
    default:
        if (jj_is_method(obj, name, n)) {
            *out = method_value(x, obj, name, n);
            return NN_OK;
        }
        {
            char fmt[96];
            snprintf(fmt, sizeof fmt, "'%s object' has no attribute '%%.*s'", jv_type_name(obj));
            *out = jv_undef(name_hint(x, fmt, name, n));
        }
        return NN_OK;
    }
}

static int getitem(jj_ctx *x, const jj_node *at, const jv *obj, const jv *key, jv *out)
{
    if (obj->t == JV_UNDEF)
        return jj_undefined_use(x, at, obj);
    if (obj->t == JV_DICT || obj->t == JV_NS) {
        jv *v = jj_dict_get(obj->u.d, key);
        if (v) {
            *out = *v;
            return NN_OK;
        }
        if (key->t == JV_STR && obj->t == JV_DICT)
            return jj_getattr(x, at, obj, key->u.s.p, key->u.s.n, out);
        *out = jv_undef("a key is missing from the dict");
        if (key->t == JV_STR)
            out->u.s.p =
                name_hint(x, "'dict object' has no attribute '%.*s'", key->u.s.p, key->u.s.n);
        return NN_OK;
    }
    if ((obj->t == JV_LIST || obj->t == JV_STR) && (key->t == JV_INT || key->t == JV_BOOL)) {
        int64_t i = key->t == JV_INT ? key->u.i : key->u.b;
        size_t *off = NULL, len;
        if (obj->t == JV_LIST)
            len = obj->u.l->n;
        else if (jj_char_offsets(x, obj, &off, &len))
            return NN_ERR;
        if (i < 0)
            i += (int64_t)len;
        if (i < 0 || (size_t)i >= len) {
            *out = jv_undef(obj->t == JV_LIST ? "list index out of range"
                                              : "string index out of range");
            return NN_OK;
        }
        if (obj->t == JV_LIST)
            *out = obj->u.l->v[i];
        else
            *out = jv_str(obj->u.s.p + off[i], off[i + 1] - off[i]);
        return NN_OK;
    }
    if (key->t == JV_STR)
        return jj_getattr(x, at, obj, key->u.s.p, key->u.s.n, out);
    *out = jv_undef(name_hint(x, "'%.*s object' has no such item", jv_type_name(obj),
                              strlen(jv_type_name(obj))));
    return NN_OK;
}

/* Python slice indices for a sequence of len elements. */
static int slice_indices(jj_ctx *x, const jj_node *at, const jv *parts, int64_t len, int64_t *st,
                         int64_t *sp, int64_t *step)
{
    *step = 1;
    if (parts[2].t != JV_NONE) {
        if (parts[2].t != JV_INT)
            return jj_fail(x, at, "slice indices must be integers or None");
        *step = parts[2].u.i;
        if (*step == 0)
            return jj_fail(x, at, "slice step cannot be zero");
    }
    int64_t lo = *step < 0 ? -1 : 0, hi = *step < 0 ? len - 1 : len;
    for (int k = 0; k < 2; k++) {
        int64_t *dst = k ? sp : st;
        if (parts[k].t == JV_NONE) {
            *dst = (*step < 0) == (k == 0) ? hi : lo;
            continue;
        }
        if (parts[k].t != JV_INT)
            return jj_fail(x, at, "slice indices must be integers or None");
        int64_t v = parts[k].u.i;
        if (v < 0) {
            v += len;
            if (v < lo)
                v = lo;
        } else if (v > hi) {
            v = hi;
        }
        *dst = v;
    }
    return NN_OK;
}

static int do_slice(jj_ctx *x, const jj_node *at, const jv *obj, const jv *parts, jv *out)
{
    if (obj->t == JV_UNDEF)
        return jj_undefined_use(x, at, obj);
    if (obj->t != JV_LIST && obj->t != JV_STR)
        return jj_fail(x, at, "'%s' object is not subscriptable with a slice", jv_type_name(obj));
    size_t *off = NULL, len;
    if (obj->t == JV_LIST)
        len = obj->u.l->n;
    else if (jj_char_offsets(x, obj, &off, &len))
        return NN_ERR;
    int64_t st = 0, sp = 0, step = 1;
    if (slice_indices(x, at, parts, (int64_t)len, &st, &sp, &step))
        return NN_ERR;
    size_t count = 0;
    for (int64_t i = st; step > 0 ? i < sp : i > sp; i += step)
        count++;
    if (obj->t == JV_LIST) {
        jj_list *l;
        if (jj_list_new(&x->arena, count, &l))
            return jj_oom(x, at);
        l->tuple = obj->u.l->tuple;
        size_t k = 0;
        for (int64_t i = st; step > 0 ? i < sp : i > sp; i += step)
            l->v[k++] = obj->u.l->v[i];
        out->t = JV_LIST;
        out->markup = false;
        out->u.l = l;
        return NN_OK;
    }
    char *s = jj_alloc(&x->arena, obj->u.s.n + 1);
    if (!s)
        return jj_oom(x, at);
    size_t k = 0;
    for (int64_t i = st; step > 0 ? i < sp : i > sp; i += step) {
        jj_memcpy(s + k, obj->u.s.p + off[i], off[i + 1] - off[i]);
        k += off[i + 1] - off[i];
    }
    s[k] = 0;
    *out = jv_str(s, k);
    out->markup = obj->markup;
    return NN_OK;
}

/* ---- calls ---- */

static int render_body(jj_ctx *x, const jj_node *body, jj_scope *s);

static int call_macro(jj_ctx *x, const jj_node *at, const jj_macro *m, jv *args, size_t nargs,
                      const char **kwnames, jv *kwvals, size_t nkw, const jv *caller, jv *out)
{
    const jj_node *def = m->def;
    if (x->depth >= x->lim.max_depth)
        return jj_fail(x, at, "macro calls nest more than %d deep (runaway recursion?)",
                       x->lim.max_depth);
    jj_scope *s = scope_new(x, m->closure);
    if (!s)
        return jj_oom(x, at);
    size_t np = def->nkids;
    jj_list *varargs;
    if (jj_list_new(&x->arena, nargs > np ? nargs - np : 0, &varargs))
        return jj_oom(x, at);
    varargs->tuple = true; /* Python's *args */
    for (size_t i = 0; i < nargs; i++) {
        if (i < np) {
            if (scope_set(x, at, s, def->kids[i]->s, def->kids[i]->slen, args[i]))
                return NN_ERR;
        } else {
            varargs->v[i - np] = args[i];
        }
    }
    jj_dict *kwargs = jj_dict_new(&x->arena);
    if (!kwargs)
        return jj_oom(x, at);
    for (size_t k = 0; k < nkw; k++) {
        size_t kl = strlen(kwnames[k]);
        bool found = false;
        for (size_t i = 0; i < np; i++)
            if (def->kids[i]->slen == kl && !memcmp(def->kids[i]->s, kwnames[k], kl)) {
                if (i < nargs)
                    return jj_fail(x, at, "macro '%s' got multiple values for argument '%s'",
                                   m->name, kwnames[k]);
                if (scope_set(x, at, s, def->kids[i]->s, kl, kwvals[k]))
                    return NN_ERR;
                found = true;
            }
        if (!found && jj_dict_set(&x->arena, kwargs, jv_cstr(kwnames[k]), kwvals[k]))
            return jj_oom(x, at);
    }
    x->depth++;
    for (size_t i = nargs; i < np; i++) { /* defaults, evaluated in the macro's scope */
        const jj_node *p = def->kids[i];
        if (jj_dict_get_str(&s->vars, p->s, p->slen))
            continue;
        jv d = jv_undef(name_hint(x, "parameter '%.*s' was not provided", p->s, p->slen));
        if (p->a) {
            jj_scope *save = x->scope;
            x->scope = s;
            int rc = jj_eval(x, p->a, &d);
            x->scope = save;
            if (rc)
                return NN_ERR;
        }
        if (scope_set(x, at, s, p->s, p->slen, d))
            return NN_ERR;
    }
    jv vv = {.t = JV_LIST}, kv = {.t = JV_DICT};
    vv.u.l = varargs;
    kv.u.d = kwargs;
    if (scope_set(x, at, s, "varargs", 7, vv) || scope_set(x, at, s, "kwargs", 6, kv))
        return NN_ERR;
    if (caller && scope_set(x, at, s, "caller", 6, *caller))
        return NN_ERR;
    size_t start = x->out.n;
    int save_brk = x->brk;
    if (render_body(x, def->c, s))
        return NN_ERR;
    x->brk = save_brk;
    x->depth--;
    return jj_buf_take(x, &x->out, start, out);
}

int jj_call_value(jj_ctx *x, const jj_node *at, const jv *callee, jv *args, size_t nargs,
                  const char **kwnames, jv *kwvals, size_t nkw, jv *out)
{
    switch (callee->t) {
    case JV_MACRO:
        return call_macro(x, at, callee->u.m, args, nargs, kwnames, kwvals, nkw, NULL, out);
    case JV_GLOBAL:
        return jj_global_call(x, at, callee->u.g, args, nargs, kwnames, kwvals, nkw, out);
    case JV_METHOD:
        return jj_method_call(x, at, callee->u.meth, args, nargs, kwnames, kwvals, nkw, out);
    case JV_UNDEF:
        return jj_undefined_use(x, at, callee);
    case JV_CYCLER: {
        jv self = *callee;
        jj_method m = {self, "next"};
        return jj_method_call(x, at, &m, args, nargs, kwnames, kwvals, nkw, out);
    }
    default:
        return jj_fail(x, at, "'%s' object is not callable", jv_type_name(callee));
    }
}

/* Evaluates a call's arguments (with *args and **kwargs spread). */
static int eval_args(jj_ctx *x, const jj_node *n, jv **args, size_t *nargs, const char ***kwn,
                     jv **kwv, size_t *nkw)
{
    size_t cap = n->nkids + 1;
    *args = jj_alloc(&x->arena, cap * sizeof **args);
    *kwv = jj_alloc(&x->arena, cap * sizeof **kwv);
    *kwn = jj_alloc(&x->arena, cap * sizeof **kwn);
    *nargs = *nkw = 0;
    if (!*args || !*kwv || !*kwn)
        return jj_oom(x, n);
    for (size_t i = 0; i < n->nkids; i++) {
        const jj_node *k = n->kids[i];
        jv v;
        if (jj_eval(x,
                    k->kind == N_KWARG || k->kind == N_STARARG || k->kind == N_DSTARARG ? k->a : k,
                    &v))
            return NN_ERR;
        if (k->kind == N_KWARG) {
            (*kwn)[*nkw] = jj_strndup(&x->arena, k->s, k->slen);
            (*kwv)[(*nkw)++] = v;
        } else if (k->kind == N_STARARG || k->kind == N_DSTARARG) {
            if ((k->kind == N_STARARG && v.t != JV_LIST) ||
                (k->kind == N_DSTARARG && v.t != JV_DICT))
                return jj_fail(x, k, "%s needs a %s", k->kind == N_STARARG ? "*args" : "**kwargs",
                               k->kind == N_STARARG ? "list" : "dict");
            size_t more = k->kind == N_STARARG ? v.u.l->n : v.u.d->n;
            jv *na = jj_alloc(&x->arena, (cap + more) * sizeof *na);
            jv *nv = jj_alloc(&x->arena, (cap + more) * sizeof *nv);
            const char **nn = jj_alloc(&x->arena, (cap + more) * sizeof *nn);
            if (!na || !nv || !nn)
                return jj_oom(x, k);
            jj_memcpy(na, *args, *nargs * sizeof *na);
            jj_memcpy(nv, *kwv, *nkw * sizeof *nv);
            jj_memcpy(nn, *kwn, *nkw * sizeof *nn);
            *args = na;
            *kwv = nv;
            *kwn = nn;
            cap += more;
            if (k->kind == N_STARARG) {
                jj_memcpy(*args + *nargs, v.u.l->v, more * sizeof(jv));
                *nargs += more;
            } else {
                for (size_t j = 0; j < more; j++) {
                    if (v.u.d->k[j].t != JV_STR)
                        return jj_fail(x, k, "keywords must be strings");
                    (*kwn)[*nkw] = v.u.d->k[j].u.s.p;
                    (*kwv)[(*nkw)++] = v.u.d->v[j];
                }
            }
        } else {
            (*args)[(*nargs)++] = v;
        }
    }
    return NN_OK;
}

static int apply_filter(jj_ctx *x, const jj_node *f, const jv *val, jv *out)
{
    jv *args, *kwv;
    const char **kwn;
    size_t nargs, nkw;
    if (eval_args(x, f, &args, &nargs, &kwn, &kwv, &nkw))
        return NN_ERR;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(f->slen > 60 ? 60 : f->slen), f->s);
    return jj_filter(x, f, name, val, args, nargs, kwn, kwv, nkw, out);
}

/* ---- expressions ---- */

int jj_eval(jj_ctx *x, const jj_node *n, jv *out);

static int eval_inner(jj_ctx *x, const jj_node *n, jv *out)
{
    jv a, b;
    switch (n->kind) {
    case N_CONST:
        *out = n->v;
        return NN_OK;
    case N_NAME:
        if (!lookup(x, x->scope, n->s, n->slen, out))
            *out = jv_undef(name_hint(x, "'%.*s' is undefined", n->s, n->slen));
        return NN_OK;
    case N_GETATTR:
        if (jj_eval(x, n->a, &a))
            return NN_ERR;
        return jj_getattr(x, n, &a, n->s, n->slen, out);
    case N_GETITEM:
        if (jj_eval(x, n->a, &a) || jj_eval(x, n->b, &b))
            return NN_ERR;
        return getitem(x, n, &a, &b, out);
    case N_SLICE: {
        jv parts[3];
        if (jj_eval(x, n->a, &a))
            return NN_ERR;
        for (int i = 0; i < 3; i++) {
            parts[i] = jv_none();
            if (n->kids[i] && jj_eval(x, n->kids[i], &parts[i]))
                return NN_ERR;
        }
        return do_slice(x, n, &a, parts, out);
    }
    case N_CALL: {
        jv *args, *kwv;
        const char **kwn;
        size_t nargs, nkw;
        if (jj_eval(x, n->a, &a) || eval_args(x, n, &args, &nargs, &kwn, &kwv, &nkw))
            return NN_ERR;
        return jj_call_value(x, n, &a, args, nargs, kwn, kwv, nkw, out);
    }
    case N_FILTER:
        if (jj_eval(x, n->a, &a))
            return NN_ERR;
        return apply_filter(x, n, &a, out);
    case N_TEST: {
        jv *args, *kwv;
        const char **kwn;
        size_t nargs, nkw;
        bool r;
        if (jj_eval(x, n->a, &a) || eval_args(x, n, &args, &nargs, &kwn, &kwv, &nkw))
            return NN_ERR;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(n->slen > 60 ? 60 : n->slen), n->s);
        if (jj_test(x, n, name, &a, args, nargs, &r))
            return NN_ERR;
        *out = jv_bool(n->neg ? !r : r);
        return NN_OK;
    }
    case N_LIST:
    case N_TUPLE: {
        jj_list *l;
        if (jj_list_new(&x->arena, n->nkids, &l))
            return jj_oom(x, n);
        l->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->nkids; i++)
            if (jj_eval(x, n->kids[i], &l->v[i]))
                return NN_ERR;
        out->t = JV_LIST;
        out->markup = false;
        out->u.l = l;
        return NN_OK;
    }
    case N_DICT: {
        jj_dict *d = jj_dict_new(&x->arena);
        if (!d)
            return jj_oom(x, n);
        for (size_t i = 0; i + 1 < n->nkids; i += 2) {
            if (jj_eval(x, n->kids[i], &a) || jj_eval(x, n->kids[i + 1], &b))
                return NN_ERR;
            if (a.t == JV_LIST || a.t == JV_DICT || a.t == JV_UNDEF)
                return jj_fail(x, n->kids[i], "unhashable type: '%s'", jv_type_name(&a));
            if (jj_dict_set(&x->arena, d, a, b))
                return jj_oom(x, n);
        }
        out->t = JV_DICT;
        out->markup = false;
        out->u.d = d;
        return NN_OK;
    }
    case N_COND:
        if (jj_eval(x, n->a, &a))
            return NN_ERR;
        if (jv_truthy(&a))
            return jj_eval(x, n->b, out);
        if (n->c)
            return jj_eval(x, n->c, out);
        *out = jv_undef("the inline if expression was false and had no else");
        return NN_OK;
    case N_AND:
    case N_OR:
        if (jj_eval(x, n->a, &a))
            return NN_ERR;
        if (jv_truthy(&a) == (n->kind == N_OR)) {
            *out = a;
            return NN_OK;
        }
        return jj_eval(x, n->b, out);
    case N_NOT:
        if (jj_eval(x, n->a, &a))
            return NN_ERR;
        *out = jv_bool(!jv_truthy(&a));
        return NN_OK;
    case N_NEG:
    case N_POS:
        if (jj_eval(x, n->a, &a))
            return NN_ERR;
        if (a.t == JV_INT || a.t == JV_BOOL) {
            int64_t i = a.t == JV_INT ? a.u.i : a.u.b;
            if (n->kind == N_NEG && i == INT64_MIN)
                return jj_fail(x, n, "integer overflow");
            *out = jv_int(n->kind == N_NEG ? -i : i);
        } else if (a.t == JV_FLOAT) {
            *out = jv_float(n->kind == N_NEG ? -a.u.f : a.u.f);
        } else if (a.t == JV_UNDEF) {
            return jj_undefined_use(x, n, &a);
        } else {
            return jj_fail(x, n, "bad operand type for unary %s: '%s'",
                           n->kind == N_NEG ? "-" : "+", jv_type_name(&a));
        }
        return NN_OK;
    case N_BINOP:
        if (jj_eval(x, n->a, &a) || jj_eval(x, n->b, &b))
            return NN_ERR;
        return jj_binop(x, n, n->op, &a, &b, out);
    case N_COMPARE: {
        if (jj_eval(x, n->a, &a))
            return NN_ERR;
        bool r = true;
        for (size_t i = 0; i < n->nkids && r; i++) {
            if (jj_eval(x, n->kids[i]->a, &b) ||
                jj_compare(x, n->kids[i], n->kids[i]->op, &a, &b, &r))
                return NN_ERR;
            a = b;
        }
        *out = jv_bool(r);
        return NN_OK;
    }
    case N_CONCAT: {
        jj_buf buf = {0};
        int rc = NN_OK;
        for (size_t i = 0; i < n->nkids && !rc; i++) {
            rc = jj_eval(x, n->kids[i], &a);
            if (!rc)
                rc = jv_str_append(x, &buf, &a);
        }
        if (!rc) {
            char *s = jj_strndup(&x->arena, buf.p ? buf.p : "", buf.n);
            if (!s)
                rc = jj_oom(x, n);
            else
                *out = jv_str(s, buf.n);
        }
        nn_free(buf.p);
        return rc;
    }
    default:
        return jj_fail(x, n, "this expression cannot be evaluated here");
    }
}

int jj_eval(jj_ctx *x, const jj_node *n, jv *out)
{
    if (jj_step(x, n))
        return NN_ERR;
    if (++x->depth > x->lim.max_depth + 200)
        return jj_fail(x, n, "expressions nest too deeply");
    int rc = eval_inner(x, n, out);
    x->depth--;
    return rc;
}

/* ---- statements ---- */

static int assign(jj_ctx *x, const jj_node *target, jj_scope *s, const jv *v)
{
    if (target->kind == N_NAME)
        return scope_set(x, target, s, target->s, target->slen, *v);
    if (target->kind == N_TUPLE) {
        jj_list *l;
        if (jj_iterate(x, target, v, &l))
            return NN_ERR;
        if (l->n != target->nkids)
            return jj_fail(x, target,
                           l->n > target->nkids ? "too many values to unpack (expected %zu)"
                                                : "not enough values to unpack (expected %zu)",
                           target->nkids);
        for (size_t i = 0; i < l->n; i++)
            if (assign(x, target->kids[i], s, &l->v[i]))
                return NN_ERR;
        return NN_OK;
    }
    return jj_fail(x, target, "cannot assign to this expression");
}

static int exec(jj_ctx *x, const jj_node *n, jj_scope *s);

static int render_body(jj_ctx *x, const jj_node *body, jj_scope *s)
{
    jj_scope *save = x->scope;
    for (size_t i = 0; i < body->nkids; i++) {
        x->scope = s;
        if (exec(x, body->kids[i], s)) {
            x->scope = save;
            return NN_ERR;
        }
        if (x->brk)
            break;
    }
    x->scope = save;
    return NN_OK;
}

static int exec_for(jj_ctx *x, const jj_node *n, jj_scope *s)
{
    jv it;
    jj_list *items;
    if (jj_eval(x, n->b, &it) || jj_iterate(x, n->b, &it, &items))
        return NN_ERR;
    if (n->e) { /* {% for x in xs if cond %}: filtered before the loop, as jinja does */
        jj_list *kept;
        if (jj_list_new(&x->arena, items->n, &kept))
            return jj_oom(x, n);
        kept->n = 0;
        for (size_t i = 0; i < items->n; i++) {
            jj_scope *fs = scope_new(x, s);
            jv c;
            if (!fs)
                return jj_oom(x, n);
            if (assign(x, n->a, fs, &items->v[i]))
                return NN_ERR;
            x->scope = fs;
            int rc = jj_eval(x, n->e, &c);
            x->scope = s;
            if (rc)
                return NN_ERR;
            if (jv_truthy(&c))
                kept->v[kept->n++] = items->v[i];
        }
        items = kept;
    }
    if (!items->n)
        return n->d ? render_body(x, n->d, s) : NN_OK;
    jv outer;
    bool has_outer = lookup(x, s, "loop", 4, &outer) && outer.t == JV_LOOP;
    jj_loop *loop = jj_alloc(&x->arena, sizeof *loop);
    if (!loop)
        return jj_oom(x, n);
    memset(loop, 0, sizeof *loop);
    loop->items = items;
    loop->depth = has_outer ? outer.u.loop->depth + 1 : 1;
    for (size_t i = 0; i < items->n; i++) {
        if (jj_step(x, n))
            return NN_ERR;
        jj_scope *is = scope_new(x, s);
        if (!is)
            return jj_oom(x, n);
        loop->index = i;
        jv lv = {.t = JV_LOOP};
        lv.u.loop = loop;
        if (scope_set(x, n, is, "loop", 4, lv) || assign(x, n->a, is, &items->v[i]))
            return NN_ERR;
        if (render_body(x, n->c, is))
            return NN_ERR;
        if (x->brk == 1) {
            x->brk = 0;
            break;
        }
        x->brk = 0;
    }
    return NN_OK;
}

static int exec(jj_ctx *x, const jj_node *n, jj_scope *s)
{
    jv v;
    if (jj_step(x, n))
        return NN_ERR;
    switch (n->kind) {
    case N_BODY:
        return render_body(x, n, s);
    case N_DATA:
        return jj_buf_add(x, &x->out, n->s, n->slen);
    case N_OUTPUT:
        if (jj_eval(x, n->a, &v))
            return NN_ERR;
        if (v.t == JV_UNDEF && v.u.s.p && !strncmp(v.u.s.p, "access to", 9))
            return jj_undefined_use(x, n->a, &v);
        return jv_str_append(x, &x->out, &v);
    case N_IF:
        for (const jj_node *c = n; c;) {
            if (jj_eval(x, c->a, &v))
                return NN_ERR;
            if (jv_truthy(&v))
                return render_body(x, c->b, s);
            if (c->c && c->c->kind == N_IF) {
                c = c->c;
                continue;
            }
            return c->c ? render_body(x, c->c, s) : NN_OK;
        }
        return NN_OK;
    case N_FOR:
        return exec_for(x, n, s);
    case N_SET:
        if (n->b) {
            if (jj_eval(x, n->b, &v))
                return NN_ERR;
        } else { /* block set */
            size_t start = x->out.n;
            if (render_body(x, n->c, s) || jj_buf_take(x, &x->out, start, &v))
                return NN_ERR;
            for (size_t i = 0; i < n->nkids; i++)
                if (apply_filter(x, n->kids[i], &v, &v))
                    return NN_ERR;
        }
        if (n->a->kind == N_GETATTR) {
            jv obj;
            x->scope = s;
            if (jj_eval(x, n->a->a, &obj))
                return NN_ERR;
            if (obj.t != JV_NS)
                return jj_fail(x, n->a,
                               "cannot assign attribute on a non-namespace object "
                               "(jinja allows {%% set x.attr = ... %%} only on "
                               "namespace())");
            if (n->a->slen && n->a->s[0] == '_')
                return jj_namespace_underscore(x, n->a, n->a->s, n->a->slen);
            if (jj_dict_set(&x->arena, obj.u.d, jv_str(n->a->s, n->a->slen), v))
                return jj_oom(x, n);
            return NN_OK;
        }
        return assign(x, n->a, s, &v);
    case N_MACRO: {
        jj_macro *m = jj_alloc(&x->arena, sizeof *m);
        if (!m)
            return jj_oom(x, n);
        m->def = n;
        m->closure = s;
        m->name = jj_strndup(&x->arena, n->s, n->slen);
        jv mv = {.t = JV_MACRO};
        mv.u.m = m;
        return scope_set(x, n, s, n->s, n->slen, mv);
    }
    case N_CALLBLOCK: {
        jj_macro *caller = jj_alloc(&x->arena, sizeof *caller);
        if (!caller)
            return jj_oom(x, n);
        caller->def = n;
        caller->closure = s;
        caller->name = "caller";
        jv cv = {.t = JV_MACRO}, callee, *args, *kwv;
        cv.u.m = caller;
        const char **kwn;
        size_t nargs, nkw;
        const jj_node *call = n->a;
        if (jj_eval(x, call->a, &callee) || eval_args(x, call, &args, &nargs, &kwn, &kwv, &nkw))
            return NN_ERR;
        if (callee.t != JV_MACRO)
            return jj_fail(x, call, "{%% call %%} needs a macro, not a %s", jv_type_name(&callee));
        if (call_macro(x, call, callee.u.m, args, nargs, kwn, kwv, nkw, &cv, &v))
            return NN_ERR;
        return jj_buf_add(x, &x->out, v.u.s.p, v.u.s.n);
    }
    case N_FILTERBLOCK: {
        size_t start = x->out.n;
        if (render_body(x, n->c, s) || jj_buf_take(x, &x->out, start, &v))
            return NN_ERR;
        for (size_t i = 0; i < n->nkids; i++)
            if (apply_filter(x, n->kids[i], &v, &v))
                return NN_ERR;
        return jv_str_append(x, &x->out, &v);
    }
    case N_WITH: {
        jj_scope *ws = scope_new(x, s);
        if (!ws)
            return jj_oom(x, n);
        for (size_t i = 0; i < n->nkids; i++) {
            x->scope = s;
            if (jj_eval(x, n->kids[i]->b, &v) || assign(x, n->kids[i]->a, ws, &v))
                return NN_ERR;
        }
        return render_body(x, n->c, ws);
    }
    case N_BREAK:
    case N_CONTINUE: {
        jv l;
        if (!lookup(x, s, "loop", 4, &l) || l.t != JV_LOOP)
            return jj_fail(x, n, "{%% %s %%} outside a for loop",
                           n->kind == N_BREAK ? "break" : "continue");
        x->brk = n->kind == N_BREAK ? 1 : 2;
        return NN_OK;
    }
    default:
        return jj_fail(x, n, "this statement cannot be run here");
    }
}

/* The template's top level, rendered into x->out. */
int jj_render_root(jj_ctx *x)
{
    x->globals = scope_new(x, NULL);
    if (!x->globals)
        return jj_oom(x, NULL);
    x->scope = x->globals;
    return render_body(x, x->tmpl->root, x->globals);
}
