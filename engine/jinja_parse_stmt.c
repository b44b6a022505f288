/* Jinja2 statements ({% for %}, {% if %}, {% set %}, {% macro %}, ...), the template body and
 * jj_parse, the parser's entry point; expressions are in jinja_parse.c. Unknown tags are errors. */
#include <stdio.h>
#include <string.h>

#include "jinja_parser.h"

static jj_node *parse_body(parser *P, const char *const *ends, size_t *which);

static int expect_block_end(parser *P)
{
    if (cur(P)->type != TK_BLOCK_END)
        return jjp_unexpected(P, "end of statement block");
    next(P);
    return NN_OK;
}

static jj_node *parse_for(parser *P, const jj_token *at)
{
    jj_node *n = jjp_node(P, N_FOR, at);
    if (!n || !(n->a = jjp_parse_tuple(P, true, false)))
        return NULL;
    if (!is_name(cur(P), "in")) {
        jjp_unexpected(P, "'in'");
        return NULL;
    }
    next(P);
    if (!(n->b = jjp_parse_tuple(P, false, false)))
        return NULL;
    if (is_name(cur(P), "if")) {
        next(P);
        if (!(n->e = jjp_parse_expr(P, true)))
            return NULL;
    }
    if (is_name(cur(P), "recursive")) {
        jjp_fail_at(P, cur(P), "%s", "recursive loops are not supported");
        return NULL;
    }
    if (expect_block_end(P))
        return NULL;
    static const char *const ends[] = {"endfor", "else", NULL};
    size_t which;
    if (!(n->c = parse_body(P, ends, &which)))
        return NULL;
    if (which == 1) {
        static const char *const ends2[] = {"endfor", NULL};
        if (!(n->d = parse_body(P, ends2, &which)))
            return NULL;
    }
    return n;
}

static jj_node *parse_if(parser *P, const jj_token *at)
{
    jj_node *n = jjp_node(P, N_IF, at);
    if (!n || !(n->a = jjp_parse_tuple(P, false, true)) || expect_block_end(P))
        return NULL;
    static const char *const ends[] = {"endif", "elif", "else", NULL};
    size_t which;
    if (!(n->b = parse_body(P, ends, &which)))
        return NULL;
    if (which == 1)
        n->c = parse_if(P, &P->t[P->i - 1]);
    else if (which == 2) {
        static const char *const ends2[] = {"endif", NULL};
        n->c = parse_body(P, ends2, &which);
    } else {
        return n;
    }
    return n->c ? n : NULL;
}

/* Macro parameters: name or name=default. */
static int parse_params(parser *P, kids *k)
{
    if (jjp_expect_op(P, "("))
        return NN_ERR;
    while (!is_op(cur(P), ")")) {
        if (k->n && jjp_expect_op(P, ","))
            return NN_ERR;
        if (is_op(cur(P), ")"))
            break;
        const jj_token *nm = cur(P);
        if (nm->type != TK_NAME)
            return jjp_unexpected(P, "a parameter name");
        jj_node *p = jjp_node(P, N_NAME, nm);
        if (!p)
            return NN_ERR;
        p->s = nm->s;
        p->slen = nm->len;
        next(P);
        if (is_op(cur(P), "=")) {
            next(P);
            if (!(p->a = jjp_parse_expr(P, true)))
                return NN_ERR;
        }
        if (jjp_kid_add(P, k, p))
            return NN_ERR;
    }
    next(P);
    return NN_OK;
}

static jj_node *parse_filters_chain(parser *P, kids *k)
{
    jj_node *f = jjp_parse_filter(P, NULL);
    if (!f || jjp_kid_add(P, k, f))
        return NULL;
    while (is_op(cur(P), "|")) {
        next(P);
        if (!(f = jjp_parse_filter(P, NULL)) || jjp_kid_add(P, k, f))
            return NULL;
    }
    return f;
}

static jj_node *parse_statement(parser *P)
{
    const jj_token *open = cur(P); /* {% */
    next(P);
    const jj_token *kw = cur(P);
    if (kw->type != TK_NAME) {
        jjp_unexpected(P, "a tag name");
        return NULL;
    }
    next(P);
    jj_node *n = NULL;
    size_t which;
    if (is_name(kw, "for"))
        return parse_for(P, open);
    if (is_name(kw, "if"))
        return parse_if(P, open);
    if (is_name(kw, "set")) {
        n = jjp_node(P, N_SET, open);
        if (!n)
            return NULL;
        const jj_token *nm = cur(P);
        if (nm->type != TK_NAME) {
            jjp_unexpected(P, "a name");
            return NULL;
        }
        if (is_op(peek(P, 1), ".") && peek(P, 2)->type == TK_NAME) {
            jj_node *g = jjp_node(P, N_GETATTR, nm), *obj = jjp_node(P, N_NAME, nm);
            if (!g || !obj)
                return NULL;
            obj->s = nm->s;
            obj->slen = nm->len;
            g->a = obj;
            g->s = peek(P, 2)->s;
            g->slen = peek(P, 2)->len;
            next(P);
            next(P);
            next(P);
            n->a = g;
        } else if (!(n->a = jjp_parse_tuple(P, true, false))) {
            return NULL;
        }
        if (is_op(cur(P), "=")) {
            next(P);
            if (!(n->b = jjp_parse_tuple(P, false, true)) || expect_block_end(P))
                return NULL;
            return n;
        }
        if (n->a->kind != N_NAME) {
            jjp_unexpected(P, "'='");
            return NULL;
        }
        kids k = {0};
        if (is_op(cur(P), "|")) {
            next(P);
            if (!parse_filters_chain(P, &k))
                return NULL;
        }
        kids_set(n, &k);
        static const char *const ends[] = {"endset", NULL};
        if (expect_block_end(P) || !(n->c = parse_body(P, ends, &which)))
            return NULL;
        return n;
    }
    if (is_name(kw, "macro")) {
        n = jjp_node(P, N_MACRO, open);
        const jj_token *nm = cur(P);
        if (!n)
            return NULL;
        if (nm->type != TK_NAME) {
            jjp_unexpected(P, "a macro name");
            return NULL;
        }
        n->s = nm->s;
        n->slen = nm->len;
        next(P);
        kids k = {0};
        if (parse_params(P, &k) || expect_block_end(P))
            return NULL;
        kids_set(n, &k);
        static const char *const ends[] = {"endmacro", NULL};
        if (!(n->c = parse_body(P, ends, &which)))
            return NULL;
        return n;
    }
    if (is_name(kw, "call")) {
        n = jjp_node(P, N_CALLBLOCK, open);
        if (!n)
            return NULL;
        kids k = {0};
        if (is_op(cur(P), "(") && parse_params(P, &k))
            return NULL;
        kids_set(n, &k);
        if (!(n->a = jjp_parse_expr(P, true)))
            return NULL;
        if (n->a->kind != N_CALL) {
            jjp_fail_at(P, kw, "%s", "expected a call after {% call %}");
            return NULL;
        }
        static const char *const ends[] = {"endcall", NULL};
        if (expect_block_end(P) || !(n->c = parse_body(P, ends, &which)))
            return NULL;
        return n;
    }
    if (is_name(kw, "filter")) {
        n = jjp_node(P, N_FILTERBLOCK, open);
        kids k = {0};
        if (!n || !parse_filters_chain(P, &k))
            return NULL;
        kids_set(n, &k);
        static const char *const ends[] = {"endfilter", NULL};
        if (expect_block_end(P) || !(n->c = parse_body(P, ends, &which)))
            return NULL;
        return n;
    }
    if (is_name(kw, "generation")) {
        static const char *const ends[] = {"endgeneration", NULL};
        if (expect_block_end(P))
            return NULL;
        return parse_body(P, ends, &which);
    }
    if (is_name(kw, "with")) {
        n = jjp_node(P, N_WITH, open);
        kids k = {0};
        if (!n)
            return NULL;
        while (cur(P)->type != TK_BLOCK_END) {
            if (k.n && jjp_expect_op(P, ","))
                return NULL;
            jj_node *s = jjp_node(P, N_SET, cur(P));
            if (!s || !(s->a = jjp_parse_tuple(P, true, false)) || jjp_expect_op(P, "=") ||
                !(s->b = jjp_parse_expr(P, true)) || jjp_kid_add(P, &k, s))
                return NULL;
        }
        kids_set(n, &k);
        static const char *const ends[] = {"endwith", NULL};
        if (expect_block_end(P) || !(n->c = parse_body(P, ends, &which)))
            return NULL;
        return n;
    }
    if (is_name(kw, "break") || is_name(kw, "continue")) {
        n = jjp_node(P, is_name(kw, "break") ? N_BREAK : N_CONTINUE, open);
        if (!n || expect_block_end(P))
            return NULL;
        return n;
    }
    char nm[64];
    snprintf(nm, sizeof nm, "%.*s", (int)(kw->len > 40 ? 40 : kw->len), kw->s);
    if (!strcmp(nm, "include") || !strcmp(nm, "import") || !strcmp(nm, "from") ||
        !strcmp(nm, "extends") || !strcmp(nm, "block") || !strcmp(nm, "do") ||
        !strcmp(nm, "autoescape") || !strcmp(nm, "trans"))
        jjp_fail_at(P, kw,
                    "the tag '%s' is not supported in chat templates (it is not enabled in "
                    "transformers' environment, or needs a template loader)",
                    nm);
    else
        jjp_fail_at(P, kw, "unknown tag '%s'", nm);
    return NULL;
}

/* Statements up to {% END %} for one of ends (NULL-terminated; NULL ends: the template's end).
 * *which: the index of the end tag found; the parser stands after that tag's name (the tag's
 * remaining tokens are consumed for end tags; elif's condition is left to the caller). */
static jj_node *parse_body(parser *P, const char *const *ends, size_t *which)
{
    const jj_token *at = cur(P);
    if (!jjp_enter(P))
        return NULL;
    jj_node *body = jjp_node(P, N_BODY, at);
    kids k = {0};
    if (!body)
        return NULL;
    for (;;) {
        const jj_token *t = cur(P);
        jj_node *s = NULL;
        if (t->type == TK_EOF) {
            if (ends) {
                char msg[160];
                snprintf(msg, sizeof msg,
                         "unexpected end of template: a block opened at line %d, column %d "
                         "was never closed; expected {%% %s %%}",
                         at->line, at->col, ends[0]);
                jjp_fail_at(P, t, "%s", msg);
                return NULL;
            }
            break;
        }
        if (t->type == TK_DATA) {
            s = jjp_node(P, N_DATA, t);
            if (!s)
                return NULL;
            s->s = t->s;
            s->slen = t->len;
            next(P);
        } else if (t->type == TK_VAR_BEGIN) {
            next(P);
            s = jjp_node(P, N_OUTPUT, t);
            if (!s || !(s->a = jjp_parse_tuple(P, false, true)))
                return NULL;
            if (cur(P)->type != TK_VAR_END) {
                jjp_unexpected(P, "end of print statement");
                return NULL;
            }
            next(P);
        } else if (t->type == TK_BLOCK_BEGIN) {
            const jj_token *kw = peek(P, 1);
            bool is_end = false;
            for (size_t e = 0; ends && ends[e]; e++)
                if (is_name(kw, ends[e])) {
                    *which = e;
                    is_end = true;
                }
            if (is_end) {
                next(P);
                next(P);
                /* jinja allows a name after endmacro/endblock; the else/endX tags end here */
                if (!is_name(kw, "elif") && expect_block_end(P))
                    return NULL;
                break;
            }
            if (kw->type == TK_NAME && ((kw->len > 3 && !memcmp(kw->s, "end", 3)) ||
                                        is_name(kw, "else") || is_name(kw, "elif"))) {
                char nm[64], msg[200];
                snprintf(nm, sizeof nm, "%.*s", (int)(kw->len > 40 ? 40 : kw->len), kw->s);
                if (ends)
                    snprintf(msg, sizeof msg,
                             "unexpected '%s': the innermost open block (line %d, column %d) "
                             "expects {%% %s %%}",
                             nm, at->line, at->col, ends[0]);
                else
                    snprintf(msg, sizeof msg, "unexpected '%s': no block is open", nm);
                jjp_fail_at(P, kw, "%s", msg);
                return NULL;
            }
            if (!(s = parse_statement(P)))
                return NULL;
        } else {
            jjp_unexpected(P, "template data or a tag");
            return NULL;
        }
        if (jjp_kid_add(P, &k, s))
            return NULL;
    }
    kids_set(body, &k);
    P->depth--;
    return body;
}

int jj_parse(jj_arena *a, const char *name, const jj_token *toks, size_t n, jj_node **out,
             nn_err *err)
{
    parser P = {.a = a, .name = name, .t = toks, .n = n, .err = err};
    size_t which;
    *out = parse_body(&P, NULL, &which);
    return *out ? NN_OK : NN_ERR;
}
