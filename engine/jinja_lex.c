/* Jinja2 lexer: source text to tokens, as jinja2.lexer does it with trim_blocks=True and
 * lstrip_blocks=True. Newlines are normalised to "\n" and one trailing newline is dropped
 * (keep_trailing_newline=False); comments vanish; {% raw %} bodies become text. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

typedef struct lexer {
    jj_arena *a;
    const char *name;
    const char *src;
    size_t len, pos;
    int line, col; /* of pos */
    jj_token *toks;
    size_t n, cap;
    nn_err *err;
} lexer;

int jj_space_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f))
        return 1;
    if (c < 0x80 || n < 2)
        return 0;
    unsigned char c1 = (unsigned char)s[1];
    if (c == 0xc2 && (c1 == 0x85 || c1 == 0xa0))
        return 2;
    if (n < 3)
        return 0;
    unsigned char c2 = (unsigned char)s[2];
    if (c == 0xe1 && c1 == 0x9a && c2 == 0x80) /* U+1680 */
        return 3;
    if (c == 0xe2 && c1 == 0x80 && (c2 <= 0x8a || c2 == 0xa8 || c2 == 0xa9 || c2 == 0xaf))
        return 3;                              /* U+2000..200A, 2028, 2029, 202F */
    if (c == 0xe2 && c1 == 0x81 && c2 == 0x9f) /* U+205F */
        return 3;
    if (c == 0xe3 && c1 == 0x80 && c2 == 0x80) /* U+3000 */
        return 3;
    return 0;
}

/* Length of s[0..n) without its trailing Python whitespace. */
static size_t rstrip_len(const char *s, size_t n)
{
    size_t keep = 0, i = 0;
    while (i < n) {
        int w = jj_space_len(s + i, n - i);
        if (w) {
            i += (size_t)w;
        } else {
            i++;
            while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80)
                i++;
            keep = i;
        }
    }
    return keep;
}

static size_t skip_space(const char *s, size_t n, size_t i)
{
    int w;
    while (i < n && (w = jj_space_len(s + i, n - i)) > 0)
        i += (size_t)w;
    return i;
}

static int lex_fail(lexer *L, int line, int col, const char *msg)
{
    return nn_fail(L->err, "%s:%d:%d: %s", L->name, line, col, msg);
}

/* Moves pos to p, counting lines and columns (columns in characters, from 1). */
static void advance(lexer *L, size_t p)
{
    for (size_t i = L->pos; i < p; i++) {
        if (L->src[i] == '\n') {
            L->line++;
            L->col = 1;
        } else if (((unsigned char)L->src[i] & 0xc0) != 0x80) {
            L->col++;
        }
    }
    L->pos = p;
}

static jj_token *push(lexer *L, jj_tok_type type)
{
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jj_token *t = jj_alloc(L->a, cap * sizeof *t);
        if (!t) {
            nn_fail(L->err, "%s: out of memory lexing the template", L->name);
            return NULL;
        }
        if (L->n)
            jj_memcpy(t, L->toks, L->n * sizeof *t);
        L->toks = t;
        L->cap = cap;
    }
    jj_token *t = &L->toks[L->n++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = L->line;
    t->col = L->col;
    return t;
}

static int push_data(lexer *L, const char *s, size_t n, int line, int col)
{
    if (!n)
        return NN_OK;
    jj_token *t = push(L, TK_DATA);
    if (!t)
        return NN_ERR;
    t->s = s;
    t->len = n;
    t->line = line;
    t->col = col;
    return NN_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string literal at pos (quote included), unescaped as Python's "unicode-escape" does. */
static int lex_string(lexer *L)
{
    const char *s = L->src;
    char q = s[L->pos];
    size_t i = L->pos + 1;
    while (i < L->len && s[i] != q) {
        if (s[i] == '\\' && i + 1 < L->len)
            i++;
        i++;
    }
    if (i >= L->len)
        return lex_fail(L, L->line, L->col, "unexpected end of template: unterminated string");
    size_t body = L->pos + 1, blen = i - body;
    char *o = jj_alloc(L->a, blen + 1);
    jj_token *t = push(L, TK_STRING);
    if (!o || !t)
        return NN_ERR;
    size_t k = 0;
    for (size_t j = body; j < i; j++) {
        if (s[j] != '\\') {
            o[k++] = s[j];
            continue;
        }
        char e = s[++j];
        int digits = 0;
        switch (e) {
        case '\n':
            break;
        case '\\':
        case '\'':
        case '"':
            o[k++] = e;
            break;
        case 'a':
            o[k++] = '\a';
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
        case 'v':
            o[k++] = '\v';
            break;
        case 'x':
            digits = 2;
            break;
        case 'u':
            digits = 4;
            break;
        case 'U':
            digits = 8;
            break;
        case 'N':
            return lex_fail(L, t->line, t->col, "the string escape \\N{...} is not supported");
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = 0;
                int m = 0;
                while (m < 3 && j < i && s[j] >= '0' && s[j] <= '7') {
                    cp = cp * 8 + (uint32_t)(s[j] - '0');
                    j++;
                    m++;
                }
                j--;
                k += (size_t)nn_utf8_encode(cp, o + k);
            } else { /* Python keeps an unknown escape as it is */
                o[k++] = '\\';
                o[k++] = e;
            }
        }
        if (digits) {
            uint32_t cp = 0;
            for (int m = 0; m < digits; m++) {
                int h = j + 1 < i ? hexval(s[j + 1]) : -1;
                if (h < 0)
                    return lex_fail(L, t->line, t->col,
                                    "truncated \\x, \\u or \\U escape in a string");
                cp = cp * 16 + (uint32_t)h;
                j++;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return lex_fail(L, t->line, t->col, "a string escape names an invalid code point");
            k += (size_t)nn_utf8_encode(cp, o + k);
        }
    }
    o[k] = 0;
    t->s = o;
    t->len = k;
    advance(L, i + 1);
    return NN_OK;
}

static int lex_number(lexer *L)
{
    const char *s = L->src;
    size_t i = L->pos;
    char buf[128];
    size_t k = 0;
    bool is_float = false, too_long = false;
    jj_token *t = push(L, TK_INT);
    if (!t)
        return NN_ERR;
#define PUT_CHAR(c)                                                                                \
    do {                                                                                           \
        if (k < sizeof buf - 1)                                                                    \
            buf[k++] = (c);                                                                        \
        else                                                                                       \
            too_long = true;                                                                       \
    } while (0)
    while (i < L->len && (isdigit((unsigned char)s[i]) || s[i] == '_')) {
        if (s[i] != '_')
            PUT_CHAR(s[i]);
        i++;
    }
    if (i + 1 < L->len && s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
        is_float = true;
        PUT_CHAR(s[i]);
        i++;
        while (i < L->len && (isdigit((unsigned char)s[i]) || s[i] == '_')) {
            if (s[i] != '_')
                PUT_CHAR(s[i]);
            i++;
        }
    }
    if (i < L->len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < L->len && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j < L->len && isdigit((unsigned char)s[j])) {
            is_float = true;
            PUT_CHAR('e');
            for (size_t m = i + 1; m < j; m++)
                PUT_CHAR(s[m]);
            i = j;
            while (i < L->len && (isdigit((unsigned char)s[i]) || s[i] == '_')) {
                if (s[i] != '_')
                    PUT_CHAR(s[i]);
                i++;
            }
        }
    }
#undef PUT_CHAR
    buf[k] = 0;
    if (too_long)
        return lex_fail(L, t->line, t->col, "number literal too long (more than 126 digits)");
    if (is_float) {
        t->type = TK_FLOAT;
        t->f = strtod(buf, NULL);
    } else {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno)
            return lex_fail(L, t->line, t->col, "integer literal out of the 64-bit range");
        t->i = v;
    }
    advance(L, i);
    return NN_OK;
}

static const char *const ops2[] = {"//", "**", "==", "!=", ">=", "<="};
static const char ops1[] = "+-/*%~[](){}.:|,;=<>";

/* Tokens inside {{ }} or {% %} up to the end tag; returns with pos after it. */
static int lex_tag(lexer *L, bool block, bool *ends_newline)
{
    const char *s = L->src;
    char stack[256];
    int depth = 0;
    for (;;) {
        size_t i = L->pos;
        if (i >= L->len)
            return lex_fail(L, L->line, L->col,
                            block ? "unexpected end of template: '%}' missing"
                                  : "unexpected end of template: '}}' missing");
        if (depth == 0) {
            size_t end = 0;
            bool trim = false;
            if (block) {
                if (s[i] == '+' && i + 2 < L->len + 0 && !strncmp(s + i + 1, "%}", 2))
                    end = i + 3;
                else if (s[i] == '-' && i + 2 < L->len + 0 && !strncmp(s + i + 1, "%}", 2))
                    end = i + 3, trim = true;
                else if (i + 1 < L->len && !strncmp(s + i, "%}", 2)) {
                    end = i + 2;
                    if (end < L->len && s[end] == '\n')
                        end++; /* trim_blocks */
                }
            } else {
                if (s[i] == '-' && i + 2 < L->len + 0 && !strncmp(s + i + 1, "}}", 2))
                    end = i + 3, trim = true;
                else if (i + 1 < L->len && !strncmp(s + i, "}}", 2))
                    end = i + 2;
            }
            if (end) {
                jj_token *t = push(L, block ? TK_BLOCK_END : TK_VAR_END);
                if (!t)
                    return NN_ERR;
                if (trim)
                    end = skip_space(s, L->len, end);
                *ends_newline = end > 0 && s[end - 1] == '\n';
                advance(L, end);
                return NN_OK;
            }
        }
        int w = jj_space_len(s + i, L->len - i);
        if (w) {
            advance(L, i + (size_t)w);
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '\'' || c == '"') {
            if (lex_string(L))
                return NN_ERR;
            continue;
        }
        if (isdigit(c)) {
            if (lex_number(L))
                return NN_ERR;
            continue;
        }
        if (isalpha(c) || c == '_') {
            size_t j = i;
            while (j < L->len && (isalnum((unsigned char)s[j]) || s[j] == '_'))
                j++;
            jj_token *t = push(L, TK_NAME);
            if (!t)
                return NN_ERR;
            t->s = s + i;
            t->len = j - i;
            advance(L, j);
            continue;
        }
        size_t oplen = 0;
        for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
            if (i + 1 < L->len && s[i] == ops2[k][0] && s[i + 1] == ops2[k][1])
                oplen = 2;
        if (!oplen && c && strchr(ops1, c))
            oplen = 1;
        if (!oplen) {
            char msg[64];
            snprintf(msg, sizeof msg,
                     c >= 0x20 && c < 0x7f ? "unexpected char '%c'" : "unexpected byte 0x%02x", c);
            return lex_fail(L, L->line, L->col, msg);
        }
        jj_token *t = push(L, TK_OP);
        if (!t)
            return NN_ERR;
        t->s = s + i;
        t->len = oplen;
        if (oplen == 1 && (c == '(' || c == '[' || c == '{')) {
            if (depth == (int)sizeof stack)
                return lex_fail(L, t->line, t->col, "brackets nested too deeply");
            stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
        } else if (oplen == 1 && (c == ')' || c == ']' || c == '}')) {
            char msg[64];
            if (!depth) {
                snprintf(msg, sizeof msg, "unexpected '%c'", c);
                return lex_fail(L, t->line, t->col, msg);
            }
            if (stack[depth - 1] != (char)c) {
                snprintf(msg, sizeof msg, "unexpected '%c', expected '%c'", c, stack[depth - 1]);
                return lex_fail(L, t->line, t->col, msg);
            }
            depth--;
        }
        advance(L, i + oplen);
    }
}

/* {% raw %} at p (the tag's '{'): the end of the raw opening tag, 0 when this is not one. */
static size_t raw_open(const lexer *L, size_t p, bool *trim_after)
{
    const char *s = L->src;
    size_t i = p + 2;
    if (i < L->len && (s[i] == '-' || s[i] == '+'))
        i++;
    i = skip_space(s, L->len, i);
    if (L->len - i < 3 || strncmp(s + i, "raw", 3))
        return 0;
    i = skip_space(s, L->len, i + 3);
    *trim_after = false;
    if (i < L->len && s[i] == '-' && L->len - i >= 3 && !strncmp(s + i + 1, "%}", 2)) {
        *trim_after = true;
        return skip_space(s, L->len, i + 3);
    }
    if (L->len - i >= 2 && !strncmp(s + i, "%}", 2))
        return i + 2;
    return 0;
}

int jj_lex(jj_arena *a, const char *name, const char *src0, size_t len0, jj_token **out, size_t *n,
           nn_err *err)
{
    /* newlines to "\n", one trailing newline dropped */
    char *src = jj_alloc(a, len0 + 1);
    if (!src)
        return nn_fail(err, "%s: out of memory", name);
    size_t len = 0;
    for (size_t i = 0; i < len0; i++) {
        if (src0[i] == '\r') {
            src[len++] = '\n';
            if (i + 1 < len0 && src0[i + 1] == '\n')
                i++;
        } else {
            src[len++] = src0[i];
        }
    }
    if (len && src[len - 1] == '\n')
        len--;
    src[len] = 0;
    lexer L = {.a = a, .name = name, .src = src, .len = len, .line = 1, .col = 1, .err = err};
    bool line_starting = true;
    while (L.pos < len) {
        const char *s = src;
        size_t p = L.pos;
        const char *hit = NULL;
        for (size_t i = p; i + 1 < len; i++)
            if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')) {
                hit = s + i;
                break;
            }
        if (!hit) {
            if (push_data(&L, s + p, len - p, L.line, L.col))
                return NN_ERR;
            advance(&L, len);
            break;
        }
        size_t tag = (size_t)(hit - s);
        char kind = hit[1];
        char sign = tag + 2 < len ? s[tag + 2] : 0;
        size_t text_len = tag - p;
        if (sign == '-') {
            text_len = rstrip_len(s + p, text_len);
        } else if (sign != '+' && kind != '{') {
            size_t l_pos = 0;
            for (size_t i = text_len; i > 0; i--)
                if (s[p + i - 1] == '\n') {
                    l_pos = i;
                    break;
                }
            if (l_pos > 0 || line_starting) {
                size_t j = skip_space(s + p, text_len, l_pos);
                if (j == text_len)
                    text_len = l_pos;
            }
        }
        if (push_data(&L, s + p, text_len, L.line, L.col))
            return NN_ERR;
        advance(&L, tag);
        int tline = L.line, tcol = L.col;
        size_t body = tag + 2 + (sign == '-' || sign == '+');
        bool trim_after;
        size_t raw_end = kind == '%' ? raw_open(&L, tag, &trim_after) : 0;
        if (raw_end) {
            /* the body runs to {% endraw %}, with the same whitespace rules */
            size_t i = raw_end, close = 0, close_end = 0;
            char csign = 0;
            for (; i + 1 < len; i++) {
                if (s[i] != '{' || s[i + 1] != '%')
                    continue;
                size_t j = i + 2;
                char sg = 0;
                if (j < len && (s[j] == '-' || s[j] == '+'))
                    sg = s[j++];
                j = skip_space(s, len, j);
                if (len - j < 6 || strncmp(s + j, "endraw", 6))
                    continue;
                j = skip_space(s, len, j + 6);
                if (j < len && s[j] == '+' && len - j >= 3 && !strncmp(s + j + 1, "%}", 2))
                    close_end = j + 3;
                else if (j < len && s[j] == '-' && len - j >= 3 && !strncmp(s + j + 1, "%}", 2))
                    close_end = skip_space(s, len, j + 3);
                else if (len - j >= 2 && !strncmp(s + j, "%}", 2))
                    close_end = j + 2 + (j + 2 < len && s[j + 2] == '\n');
                else
                    continue;
                close = i;
                csign = sg;
                break;
            }
            if (!close_end)
                return lex_fail(&L, tline, tcol, "missing end of raw directive");
            advance(&L, raw_end);
            size_t blen = close - raw_end;
            if (csign == '-') {
                blen = rstrip_len(s + raw_end, blen);
            } else if (csign != '+') {
                size_t l_pos = 0;
                for (size_t k = blen; k > 0; k--)
                    if (s[raw_end + k - 1] == '\n') {
                        l_pos = k;
                        break;
                    }
                if (l_pos > 0 && skip_space(s + raw_end, blen, l_pos) == blen)
                    blen = l_pos;
            }
            if (push_data(&L, s + raw_end, blen, L.line, L.col))
                return NN_ERR;
            advance(&L, close_end);
            line_starting = s[close_end - 1] == '\n';
            (void)trim_after;
            continue;
        }
        if (kind == '#') {
            size_t i = body, end = 0;
            for (; i + 1 < len; i++) {
                if (s[i] == '+' && i + 2 < len && s[i + 1] == '#' && s[i + 2] == '}') {
                    end = i + 3;
                    break;
                }
                if (s[i] == '-' && i + 2 < len && s[i + 1] == '#' && s[i + 2] == '}') {
                    end = skip_space(s, len, i + 3);
                    break;
                }
                if (s[i] == '#' && s[i + 1] == '}') {
                    end = i + 2 + (i + 2 < len && s[i + 2] == '\n');
                    break;
                }
            }
            if (!end)
                return lex_fail(&L, tline, tcol, "missing end of comment tag");
            advance(&L, end);
            line_starting = s[end - 1] == '\n';
            continue;
        }
        jj_token *t = push(&L, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN);
        if (!t)
            return NN_ERR;
        advance(&L, body);
        if (lex_tag(&L, kind == '%', &line_starting))
            return NN_ERR;
    }
    if (!push(&L, TK_EOF))
        return NN_ERR;
    *out = L.toks;
    *n = L.n;
    return NN_OK;
}
