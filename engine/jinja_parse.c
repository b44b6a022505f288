/* Jinja2 parser: tokens to a syntax tree, following jinja2.parser's grammar (its operator
 * precedence, its filter/test chains and its statements). Unknown tags are errors. This file: the
 * parser's helpers and expressions; statements are in jinja_parse_stmt.c. */
#include <stdio.h>
#include <string.h>

#include "jinja_parser.h"

static const char *tok_desc(const jj_token *t, char *buf, size_t size)
{
    switch (t->type) {
    case TK_EOF:
        return "end of template";
    case TK_DATA:
        return "template data";
    case TK_VAR_BEGIN:
        return "'{{'";
    case TK_VAR_END:
        return "end of print statement";
    case TK_BLOCK_BEGIN:
        return "'{%'";
    case TK_BLOCK_END:
        return "end of statement block";
    case TK_STRING:
        return "string";
    case TK_INT:
        return "integer";
    case TK_FLOAT:
        return "float";
    default:
        snprintf(buf, size, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->s);
        return buf;
    }
}

int jjp_fail_at(parser *P, const jj_token *t, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    return nn_fail(P->err, "%s:%d:%d: %s", P->name, t->line, t->col, msg);
}

int jjp_unexpected(parser *P, const char *what)
{
    char b[64], msg[256];
    snprintf(msg, sizeof msg, "expected %s, got %s", what, tok_desc(cur(P), b, sizeof b));
    return jjp_fail_at(P, cur(P), "%s", msg);
}

int jjp_expect_op(parser *P, const char *op)
{
    if (!is_op(cur(P), op)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", op);
        return jjp_unexpected(P, w);
    }
    next(P);
    return NN_OK;
}

jj_node *jjp_node(parser *P, int kind, const jj_token *at)
{
    jj_node *n = jj_alloc(P->a, sizeof *n);
    if (!n) {
        nn_fail(P->err, "%s: out of memory parsing the template", P->name);
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

int jjp_kid_add(parser *P, kids *k, jj_node *x)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        jj_node **v = jj_alloc(P->a, cap * sizeof *v);
        if (!v)
            return nn_fail(P->err, "%s: out of memory parsing the template", P->name);
        if (k->n)
            jj_memcpy(v, k->v, k->n * sizeof *v);
        k->v = v;
        k->cap = cap;
    }
    k->v[k->n++] = x;
    return NN_OK;
}

static jj_node *parse_unary(parser *P, bool with_filter);
static jj_node *parse_primary(parser *P);
static jj_node *parse_postfix(parser *P, jj_node *n);
static jj_node *parse_filter_expr(parser *P, jj_node *n);

bool jjp_enter(parser *P)
{
    if (++P->depth > MAX_NEST) {
        jjp_fail_at(P, cur(P), "%s", "the template nests expressions or blocks too deeply");
        return false;
    }
    return true;
}

/* Call arguments after '(' up to ')'. */
static int parse_args(parser *P, kids *k)
{
    if (jjp_expect_op(P, "("))
        return NN_ERR;
    bool first = true;
    while (!is_op(cur(P), ")")) {
        if (!first && jjp_expect_op(P, ","))
            return NN_ERR;
        if (is_op(cur(P), ")"))
            break;
        first = false;
        const jj_token *at = cur(P);
        jj_node *arg;
        if (is_op(at, "*") || is_op(at, "**")) {
            next(P);
            arg = jjp_node(P, is_op(at, "*") ? N_STARARG : N_DSTARARG, at);
            if (!arg || !(arg->a = jjp_parse_expr(P, true)))
                return NN_ERR;
        } else if (at->type == TK_NAME && is_op(peek(P, 1), "=")) {
            arg = jjp_node(P, N_KWARG, at);
            if (!arg)
                return NN_ERR;
            arg->s = at->s;
            arg->slen = at->len;
            next(P);
            next(P);
            if (!(arg->a = jjp_parse_expr(P, true)))
                return NN_ERR;
        } else if (!(arg = jjp_parse_expr(P, true))) {
            return NN_ERR;
        }
        if (jjp_kid_add(P, k, arg))
            return NN_ERR;
    }
    next(P);
    return NN_OK;
}

jj_node *jjp_parse_filter(parser *P, jj_node *operand)
{
    const jj_token *at = cur(P);
    if (at->type != TK_NAME) {
        jjp_unexpected(P, "a filter name");
        return NULL;
    }
    jj_node *f = jjp_node(P, N_FILTER, at);
    if (!f)
        return NULL;
    /* dotted filter names (jinja allows them) are kept whole */
    const char *start = at->s;
    size_t len = at->len;
    next(P);
    while (is_op(cur(P), ".") && peek(P, 1)->type == TK_NAME) {
        next(P);
        len = (size_t)(cur(P)->s + cur(P)->len - start);
        next(P);
    }
    f->s = start;
    f->slen = len;
    f->a = operand;
    if (is_op(cur(P), "(")) {
        kids k = {0};
        if (parse_args(P, &k))
            return NULL;
        kids_set(f, &k);
    }
    return f;
}

static jj_node *parse_test(parser *P, jj_node *operand)
{
    const jj_token *at = cur(P); /* 'is' */
    next(P);
    jj_node *t = jjp_node(P, N_TEST, at);
    if (!t)
        return NULL;
    t->a = operand;
    if (is_name(cur(P), "not")) {
        t->neg = true;
        next(P);
    }
    const jj_token *nm = cur(P);
    if (nm->type != TK_NAME) {
        jjp_unexpected(P, "a test name");
        return NULL;
    }
    t->s = nm->s;
    t->slen = nm->len;
    next(P);
    while (is_op(cur(P), ".") && peek(P, 1)->type == TK_NAME) {
        next(P);
        t->slen = (size_t)(cur(P)->s + cur(P)->len - t->s);
        next(P);
    }
    kids k = {0};
    const jj_token *c = cur(P);
    if (is_op(c, "(")) {
        if (parse_args(P, &k))
            return NULL;
    } else if ((c->type == TK_NAME && !is_name(c, "else") && !is_name(c, "or") &&
                !is_name(c, "and") && !is_name(c, "is") && !is_name(c, "in") &&
                !is_name(c, "not") && !is_name(c, "if")) ||
               c->type == TK_STRING || c->type == TK_INT || c->type == TK_FLOAT || is_op(c, "[") ||
               is_op(c, "{") || is_op(c, "-")) {
        jj_node *arg = parse_primary(P);
        if (!arg || !(arg = parse_postfix(P, arg)) || jjp_kid_add(P, &k, arg))
            return NULL;
    }
    kids_set(t, &k);
    return t;
}

static jj_node *parse_filter_expr(parser *P, jj_node *n)
{
    for (;;) {
        if (is_op(cur(P), "|")) {
            next(P);
            n = jjp_parse_filter(P, n);
        } else if (is_name(cur(P), "is")) {
            n = parse_test(P, n);
        } else if (is_op(cur(P), "(")) {
            jj_node *c = jjp_node(P, N_CALL, cur(P));
            if (!c)
                return NULL;
            c->a = n;
            c->line = n->line; /* errors of a call point at what is called */
            c->col = n->col;
            kids k = {0};
            if (parse_args(P, &k))
                return NULL;
            kids_set(c, &k);
            n = c;
        } else {
            return n;
        }
        if (!n)
            return NULL;
    }
}

static jj_node *parse_subscript(parser *P, jj_node *obj, const jj_token *at)
{
    /* after '[' */
    jj_node *parts[3] = {0};
    int nparts = 0;
    bool is_slice = false;
    for (;;) {
        if (!is_op(cur(P), ":") && !is_op(cur(P), "]")) {
            if (!(parts[nparts] = jjp_parse_expr(P, true)))
                return NULL;
        }
        if (is_op(cur(P), ":")) {
            is_slice = true;
            if (nparts == 2) {
                jjp_unexpected(P, "']'");
                return NULL;
            }
            nparts++;
            next(P);
            continue;
        }
        break;
    }
    if (jjp_expect_op(P, "]"))
        return NULL;
    jj_node *n = jjp_node(P, is_slice ? N_SLICE : N_GETITEM, at);
    if (!n)
        return NULL;
    n->a = obj;
    if (is_slice) {
        n->kids = jj_alloc(P->a, 3 * sizeof *n->kids);
        if (!n->kids) {
            nn_fail(P->err, "%s: out of memory", P->name);
            return NULL;
        }
        jj_memcpy(n->kids, parts, sizeof parts);
        n->nkids = 3;
    } else {
        if (!parts[0]) {
            jjp_unexpected(P, "an expression");
            return NULL;
        }
        n->b = parts[0];
    }
    return n;
}

static jj_node *parse_postfix(parser *P, jj_node *n)
{
    for (;;) {
        const jj_token *at = cur(P);
        if (is_op(at, ".")) {
            next(P);
            const jj_token *nm = cur(P);
            jj_node *g;
            if (nm->type == TK_NAME) {
                g = jjp_node(P, N_GETATTR, at);
                if (!g)
                    return NULL;
                g->s = nm->s;
                g->slen = nm->len;
            } else if (nm->type == TK_INT) {
                g = jjp_node(P, N_GETITEM, at);
                jj_node *k = jjp_node(P, N_CONST, nm);
                if (!g || !k)
                    return NULL;
                k->v = jv_int(nm->i);
                g->b = k;
            } else {
                jjp_unexpected(P, "a name after '.'");
                return NULL;
            }
            g->a = n;
            next(P);
            n = g;
        } else if (is_op(at, "[")) {
            next(P);
            if (!(n = parse_subscript(P, n, at)))
                return NULL;
        } else if (is_op(at, "(")) {
            jj_node *c = jjp_node(P, N_CALL, at);
            if (!c)
                return NULL;
            c->a = n;
            c->line = n->line; /* errors of a call point at what is called */
            c->col = n->col;
            kids k = {0};
            if (parse_args(P, &k))
                return NULL;
            kids_set(c, &k);
            n = c;
        } else {
            return n;
        }
    }
}

static jj_node *parse_primary(parser *P)
{
    const jj_token *t = cur(P);
    jj_node *n;
    if (!jjp_enter(P))
        return NULL;
    switch (t->type) {
    case TK_NAME:
        n = jjp_node(P, N_CONST, t);
        if (!n)
            return NULL;
        if (is_name(t, "true") || is_name(t, "True"))
            n->v = jv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False"))
            n->v = jv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None"))
            n->v = jv_none();
        else {
            n->kind = N_NAME;
            n->s = t->s;
            n->slen = t->len;
        }
        next(P);
        break;
    case TK_STRING: {
        /* adjacent literals concatenate */
        size_t len = 0, k = P->i;
        while (P->t[k].type == TK_STRING)
            len += P->t[k++].len;
        char *s = jj_alloc(P->a, len + 1);
        n = jjp_node(P, N_CONST, t);
        if (!s || !n) {
            nn_fail(P->err, "%s: out of memory", P->name);
            return NULL;
        }
        len = 0;
        while (cur(P)->type == TK_STRING) {
            jj_memcpy(s + len, cur(P)->s, cur(P)->len);
            len += cur(P)->len;
            next(P);
        }
        s[len] = 0;
        n->v = jv_str(s, len);
        break;
    }
    case TK_INT:
    case TK_FLOAT:
        n = jjp_node(P, N_CONST, t);
        if (!n)
            return NULL;
        n->v = t->type == TK_INT ? jv_int(t->i) : jv_float(t->f);
        next(P);
        break;
    case TK_OP:
        if (is_op(t, "(") && is_op(peek(P, 1), ")")) { /* () */
            next(P);
            next(P);
            if (!(n = jjp_node(P, N_TUPLE, t)))
                return NULL;
            break;
        }
        if (is_op(t, "(")) {
            next(P);
            n = jjp_parse_tuple(P, false, true);
            if (!n || jjp_expect_op(P, ")"))
                return NULL;
            break;
        }
        if (is_op(t, "[")) {
            next(P);
            n = jjp_node(P, N_LIST, t);
            kids k = {0};
            if (!n)
                return NULL;
            while (!is_op(cur(P), "]")) {
                if (k.n && jjp_expect_op(P, ","))
                    return NULL;
                if (is_op(cur(P), "]"))
                    break;
                jj_node *e = jjp_parse_expr(P, true);
                if (!e || jjp_kid_add(P, &k, e))
                    return NULL;
            }
            next(P);
            kids_set(n, &k);
            break;
        }
        if (is_op(t, "{")) {
            next(P);
            n = jjp_node(P, N_DICT, t);
            kids k = {0};
            if (!n)
                return NULL;
            while (!is_op(cur(P), "}")) {
                if (k.n && jjp_expect_op(P, ","))
                    return NULL;
                if (is_op(cur(P), "}"))
                    break;
                jj_node *key = jjp_parse_expr(P, true);
                if (!key || jjp_expect_op(P, ":"))
                    return NULL;
                jj_node *val = jjp_parse_expr(P, true);
                if (!val || jjp_kid_add(P, &k, key) || jjp_kid_add(P, &k, val))
                    return NULL;
            }
            next(P);
            kids_set(n, &k);
            break;
        }
        /* fall through */
    default:
        jjp_unexpected(P, "an expression");
        return NULL;
    }
    P->depth--;
    return n;
}

static jj_node *parse_unary(parser *P, bool with_filter)
{
    const jj_token *t = cur(P);
    jj_node *n;
    if (!jjp_enter(P))
        return NULL;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        n = jjp_node(P, is_op(t, "-") ? N_NEG : N_POS, t);
        if (!n || !(n->a = parse_unary(P, false)))
            return NULL;
    } else if (!(n = parse_primary(P))) {
        return NULL;
    }
    if (!(n = parse_postfix(P, n)))
        return NULL;
    if (with_filter && !(n = parse_filter_expr(P, n)))
        return NULL;
    P->depth--;
    return n;
}

static jj_node *binop(parser *P, const jj_token *at, int op, jj_node *l, jj_node *r)
{
    if (!l || !r)
        return NULL;
    jj_node *n = jjp_node(P, N_BINOP, at);
    if (!n)
        return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static jj_node *parse_pow(parser *P)
{
    jj_node *l = parse_unary(P, true);
    while (l && is_op(cur(P), "**")) {
        const jj_token *at = cur(P);
        next(P);
        l = binop(P, at, OP_POW, l, parse_unary(P, true));
    }
    return l;
}

static jj_node *parse_math2(parser *P)
{
    jj_node *l = parse_pow(P);
    for (;;) {
        const jj_token *at = cur(P);
        int op = is_op(at, "*")    ? OP_MUL
                 : is_op(at, "/")  ? OP_DIV
                 : is_op(at, "//") ? OP_FLOORDIV
                 : is_op(at, "%")  ? OP_MOD
                                   : -1;
        if (!l || op < 0)
            return l;
        next(P);
        l = binop(P, at, op, l, parse_pow(P));
    }
}

static jj_node *parse_concat(parser *P)
{
    jj_node *l = parse_math2(P);
    if (!l || !is_op(cur(P), "~"))
        return l;
    jj_node *n = jjp_node(P, N_CONCAT, cur(P));
    kids k = {0};
    if (!n || jjp_kid_add(P, &k, l))
        return NULL;
    while (is_op(cur(P), "~")) {
        next(P);
        jj_node *r = parse_math2(P);
        if (!r || jjp_kid_add(P, &k, r))
            return NULL;
    }
    kids_set(n, &k);
    return n;
}

static jj_node *parse_math1(parser *P)
{
    jj_node *l = parse_concat(P);
    for (;;) {
        const jj_token *at = cur(P);
        int op = is_op(at, "+") ? OP_ADD : is_op(at, "-") ? OP_SUB : -1;
        if (!l || op < 0)
            return l;
        next(P);
        l = binop(P, at, op, l, parse_concat(P));
    }
}

static jj_node *parse_compare(parser *P)
{
    jj_node *l = parse_math1(P);
    if (!l)
        return NULL;
    kids k = {0};
    const jj_token *start = cur(P);
    for (;;) {
        const jj_token *at = cur(P);
        int op = is_op(at, "==")                                   ? OP_EQ
                 : is_op(at, "!=")                                 ? OP_NE
                 : is_op(at, "<")                                  ? OP_LT
                 : is_op(at, "<=")                                 ? OP_LE
                 : is_op(at, ">")                                  ? OP_GT
                 : is_op(at, ">=")                                 ? OP_GE
                 : is_name(at, "in")                               ? OP_IN
                 : is_name(at, "not") && is_name(peek(P, 1), "in") ? OP_NOTIN
                                                                   : -1;
        if (op < 0)
            break;
        next(P);
        if (op == OP_NOTIN)
            next(P);
        jj_node *c = jjp_node(P, N_CMPOP, at);
        if (!c || !(c->a = parse_math1(P)) || jjp_kid_add(P, &k, c))
            return NULL;
        c->op = (uint8_t)op;
    }
    if (!k.n)
        return l;
    jj_node *n = jjp_node(P, N_COMPARE, start);
    if (!n)
        return NULL;
    n->a = l;
    kids_set(n, &k);
    return n;
}

static jj_node *parse_not(parser *P)
{
    if (is_name(cur(P), "not")) {
        jj_node *n = jjp_node(P, N_NOT, cur(P));
        next(P);
        if (!n || !jjp_enter(P) || !(n->a = parse_not(P)))
            return NULL;
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static jj_node *parse_and(parser *P)
{
    jj_node *l = parse_not(P);
    while (l && is_name(cur(P), "and")) {
        jj_node *n = jjp_node(P, N_AND, cur(P));
        next(P);
        if (!n || !(n->b = parse_not(P)))
            return NULL;
        n->a = l;
        l = n;
    }
    return l;
}

static jj_node *parse_or(parser *P)
{
    jj_node *l = parse_and(P);
    while (l && is_name(cur(P), "or")) {
        jj_node *n = jjp_node(P, N_OR, cur(P));
        next(P);
        if (!n || !(n->b = parse_and(P)))
            return NULL;
        n->a = l;
        l = n;
    }
    return l;
}

jj_node *jjp_parse_expr(parser *P, bool with_cond)
{
    if (!jjp_enter(P))
        return NULL;
    jj_node *n = parse_or(P);
    while (n && with_cond && is_name(cur(P), "if")) {
        jj_node *c = jjp_node(P, N_COND, cur(P));
        next(P);
        if (!c || !(c->a = parse_or(P)))
            return NULL;
        c->b = n;
        if (is_name(cur(P), "else")) {
            next(P);
            if (!(c->c = jjp_parse_expr(P, true)))
                return NULL;
        }
        n = c;
    }
    P->depth--;
    return n;
}

/* Comma-separated expressions: one alone is itself, several (or one with a trailing comma) a
 * tuple. simplified: names only (assignment and loop targets). */
jj_node *jjp_parse_tuple(parser *P, bool simplified, bool with_cond)
{
    const jj_token *at = cur(P);
    kids k = {0};
    bool comma = false;
    for (;;) {
        if (k.n) {
            if (!is_op(cur(P), ","))
                break;
            next(P);
            comma = true;
        }
        const jj_token *c = cur(P);
        if (k.n && (is_op(c, ")") || c->type == TK_BLOCK_END || c->type == TK_VAR_END ||
                    is_name(c, "in") || is_op(c, "=")))
            break;
        jj_node *e;
        if (simplified) {
            if (c->type != TK_NAME) {
                jjp_unexpected(P, "a name");
                return NULL;
            }
            e = parse_primary(P);
        } else {
            e = jjp_parse_expr(P, with_cond);
        }
        if (!e || jjp_kid_add(P, &k, e))
            return NULL;
    }
    if (k.n == 1 && !comma)
        return k.v[0];
    jj_node *n = jjp_node(P, N_TUPLE, at);
    if (!n)
        return NULL;
    kids_set(n, &k);
    return n;
}
