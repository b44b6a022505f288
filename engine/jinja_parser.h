/* What the two halves of the Jinja2 parser share: jinja_parse.c (the parser's state, expressions)
 * and jinja_parse_stmt.c (statements, the template body, jj_parse). Internal to those two files. */
#ifndef NN_JINJA_PARSER_H
#define NN_JINJA_PARSER_H

#include <string.h>

#include "jinja_internal.h"

#define MAX_NEST 200

typedef struct parser {
    jj_arena *a;
    const char *name;
    const jj_token *t;
    size_t n, i;
    int depth;
    nn_err *err;
} parser;

/* A growable list of child nodes, moved into the node at the end. */
typedef struct kids {
    jj_node **v;
    size_t n, cap;
} kids;

static inline const jj_token *cur(parser *P)
{
    return &P->t[P->i];
}

static inline const jj_token *peek(parser *P, size_t k)
{
    return P->i + k < P->n ? &P->t[P->i + k] : &P->t[P->n - 1];
}

static inline void next(parser *P)
{
    if (P->i + 1 < P->n)
        P->i++;
}

static inline bool is_op(const jj_token *t, const char *op)
{
    return t->type == TK_OP && t->len == strlen(op) && !memcmp(t->s, op, t->len);
}

static inline bool is_name(const jj_token *t, const char *nm)
{
    return t->type == TK_NAME && t->len == strlen(nm) && !memcmp(t->s, nm, t->len);
}

static inline void kids_set(jj_node *n, kids *k)
{
    n->kids = k->v;
    n->nkids = k->n;
}

/* Errors: at token t (fmt has one %s, arg); "expected what, got <the current token>". */
int jjp_fail_at(parser *P, const jj_token *t, const char *fmt, const char *arg);
int jjp_unexpected(parser *P, const char *what);
/* The current token is the operator op (consumed), else an error. */
int jjp_expect_op(parser *P, const char *op);
/* A node of kind at token at, from the arena. */
jj_node *jjp_node(parser *P, int kind, const jj_token *at);
int jjp_kid_add(parser *P, kids *k, jj_node *x);
/* One level deeper (at most MAX_NEST); the caller decrements P->depth on the way out. */
bool jjp_enter(parser *P);

/* Expressions (jinja_parse.c), as jinja2.parser parses them. */
jj_node *jjp_parse_expr(parser *P, bool with_cond);
jj_node *jjp_parse_tuple(parser *P, bool simplified, bool with_cond);
jj_node *jjp_parse_filter(parser *P, jj_node *operand);

#endif
