/* Internals of the Jinja2 interpreter (engine/jinja*.c): tokens, syntax tree, values, the arena
 * they live in, and the render context. Not part of the public API (engine/jinja.h). */
#ifndef NN_JINJA_INTERNAL_H
#define NN_JINJA_INTERNAL_H

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "jinja.h"

/* memcpy that accepts n == 0 with a NULL pointer (an empty list's items may be NULL; memcpy's
 * pointers must not be, even for no bytes). */
static inline void jj_memcpy(void *dst, const void *src, size_t n)
{
    if (n)
        memcpy(dst, src, n);
}

/* ---- arena: every value and node of one template or one render lives in one arena, freed at
 * once; a byte budget bounds what a hostile template can allocate. ---- */
typedef struct jj_block {
    struct jj_block *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
} jj_block;

typedef struct jj_arena {
    jj_block *head;
    size_t total, limit; /* bytes taken from the system, and the most allowed */
} jj_arena;

void jj_arena_init(jj_arena *a, size_t limit);
void jj_arena_free(jj_arena *a);
/* NULL when the budget is spent or the system refuses. */
void *jj_alloc(jj_arena *a, size_t size);

/* ---- tokens ---- */
typedef enum {
    TK_EOF,
    TK_DATA,        /* template text, whitespace control already applied */
    TK_VAR_BEGIN,   /* {{ */
    TK_VAR_END,     /* }} */
    TK_BLOCK_BEGIN, /* {% */
    TK_BLOCK_END,   /* %} */
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP
} jj_tok_type;

typedef struct jj_token {
    jj_tok_type type;
    int line, col;
    const char *s; /* DATA, NAME, STRING (unescaped), OP; arena or source bytes */
    size_t len;
    int64_t i;
    double f;
} jj_token;

/* Splits (newline-normalised) source into tokens, applying trim_blocks, lstrip_blocks, '-' and
 * '+' whitespace control, comments and raw blocks. */
int jj_lex(jj_arena *a, const char *name, const char *src, size_t len, jj_token **out, size_t *n,
           nn_err *err);

/* ---- syntax tree ---- */
typedef enum {
    /* statements */
    N_BODY, /* kids: statements */
    N_DATA,
    N_OUTPUT,      /* a: expression */
    N_IF,          /* a: cond, b: body, c: else (N_IF for elif, N_BODY, or NULL) */
    N_FOR,         /* a: target, b: iterable, c: body, d: else body, e: filter condition */
    N_SET,         /* a: target, b: value (NULL for block set: c = body, kids = filters) */
    N_MACRO,       /* s: name, kids: params (N_NAME with a = default or NULL), c: body */
    N_CALLBLOCK,   /* a: call, kids: caller params, c: body */
    N_FILTERBLOCK, /* kids: filters (N_FILTER with a = NULL), c: body */
    N_WITH,        /* kids: N_SET assignments, c: body */
    N_BREAK,
    N_CONTINUE,
    /* expressions */
    N_CONST,   /* v */
    N_NAME,    /* s */
    N_GETATTR, /* a: object, s: name */
    N_GETITEM, /* a: object, b: key */
    N_SLICE,   /* a: object, kids[0..2]: start, stop, step (NULL = omitted) */
    N_CALL,    /* a: callee, kids: args (N_KWARG for key=value, N_STARARG, N_DSTARARG) */
    N_KWARG,   /* s: name, a: value */
    N_STARARG,
    N_DSTARARG,
    N_FILTER, /* a: operand (NULL in filter blocks), s: name, kids: args */
    N_TEST,   /* a: operand, s: name, kids: args, neg: 'is not' */
    N_LIST,
    N_TUPLE,
    N_DICT,  /* kids: key, value, key, value... */
    N_COND,  /* a: cond, b: then, c: else (NULL: undefined) */
    N_BINOP, /* op, a, b */
    N_AND,
    N_OR,
    N_NOT,
    N_NEG,
    N_POS,
    N_COMPARE, /* a: first operand, kids: N_CMPOP (op, a: operand) */
    N_CMPOP,
    N_CONCAT /* kids: operands of ~ */
} jj_kind;

typedef enum {
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN
} jj_op;

/* ---- values ---- */
typedef enum {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* also tuples (u.l->tuple) */
    JV_DICT,
    JV_NS,     /* namespace(): the one mutable object */
    JV_MACRO,  /* a macro, or caller() */
    JV_GLOBAL, /* a built-in function: raise_exception, range, namespace, ... */
    JV_METHOD, /* a bound method: self.name */
    JV_LOOP,   /* the loop variable */
    JV_CYCLER
} jv_type;

typedef struct jv jv;
typedef struct jj_list jj_list;
typedef struct jj_dict jj_dict;
typedef struct jj_node jj_node;

struct jv {
    uint8_t t;
    bool markup; /* a Markup string (|safe): + and % escape the other operand, as markupsafe does */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s; /* JV_STR; JV_UNDEF: the hint for error messages (may be NULL) */
        jj_list *l;
        jj_dict *d;
        struct jj_macro *m;
        int g;
        struct jj_method *meth;
        struct jj_loop *loop;
        struct jj_cycler *cyc;
    } u;
};

struct jj_list {
    size_t n;
    bool tuple;
    jv *v;
};

struct jj_dict {
    size_t n, cap;
    jv *k, *v;
};

struct jj_node {
    uint8_t kind, op;
    bool neg;
    int line, col;
    const char *s;
    size_t slen;
    jv v;
    jj_node *a, *b, *c, *d, *e;
    jj_node **kids;
    size_t nkids;
};

typedef struct jj_scope jj_scope;

typedef struct jj_macro {
    const jj_node *def; /* N_MACRO, or N_CALLBLOCK for caller() */
    jj_scope *closure;
    const char *name;
} jj_macro;

typedef struct jj_method {
    jv self;
    const char *name;
} jj_method;

typedef struct jj_loop {
    const jj_list *items;
    size_t index;
    int depth;
    bool changed_set;
    jv changed_last;
} jj_loop;

typedef struct jj_cycler {
    jj_list *items;
    size_t pos;
} jj_cycler;

struct jj_scope {
    jj_scope *parent;
    jj_dict vars;
};

/* The compiled template. */
struct nn_jinja {
    jj_arena arena;
    jj_node *root;
    char *name;
};

/* Variables handed to a render. */
struct nn_jinja_vars {
    jj_arena arena;
    jj_dict vars;
};

/* ---- render context ---- */
typedef struct jj_buf {
    char *p;
    size_t n, cap;
} jj_buf;

typedef struct jj_ctx {
    jj_arena arena;
    const nn_jinja *tmpl;
    jj_buf out;
    jj_scope *globals; /* the template's top level */
    jj_scope *scope;   /* where names are looked up now */
    const nn_jinja_vars *vars;
    nn_jinja_limits lim;
    time_t now;
    uint64_t steps;
    int depth;
    int loop_depth;
    nn_err *err;
    bool failed;
    int brk; /* 1 break, 2 continue pending */
} jj_ctx;

/* Parses tokens into a tree (N_BODY). */
int jj_parse(jj_arena *a, const char *name, const jj_token *toks, size_t n, jj_node **out,
             nn_err *err);

/* Errors: fill ctx->err with "NAME:LINE:COL: message" (node may be NULL) and return NN_ERR. */
int jj_fail(jj_ctx *x, const jj_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int jj_oom(jj_ctx *x, const jj_node *at);

/* Values (jinja_value.c). */
jv jv_undef(const char *hint);
jv jv_none(void);
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_str(const char *p, size_t n);
jv jv_cstr(const char *p);
bool jv_truthy(const jv *v);
const char *jv_type_name(const jv *v); /* Python's: 'str', 'int', 'dict', ... */
/* New string in arena (NUL-terminated); NULL when the budget is spent. */
char *jj_strndup(jj_arena *a, const char *s, size_t n);
int jj_list_new(jj_arena *a, size_t n, jj_list **out);
jj_dict *jj_dict_new(jj_arena *a);
int jj_dict_set(jj_arena *a, jj_dict *d, jv key, jv val);
/* NULL when absent. */
jv *jj_dict_get(const jj_dict *d, const jv *key);
jv *jj_dict_get_str(const jj_dict *d, const char *key, size_t n);
bool jv_equal(const jv *a, const jv *b);
/* Python's str(v) and repr(v) appended to b. */
int jv_str_append(jj_ctx *x, jj_buf *b, const jv *v);
int jv_repr_append(jj_ctx *x, jj_buf *b, const jv *v);
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys) (transformers' tojson). indent:
 * NULL for none. */
int jv_tojson(jj_ctx *x, const jj_node *at, jj_buf *b, const jv *v, const char *indent,
              const char *item_sep, const char *key_sep, bool sort_keys, int level);
/* Python's repr of a float. */
void jj_float_repr(double f, char *out, size_t size);
/* Parses JSON text into a value (ints stay ints, key order kept, the last of duplicate keys
 * wins as in Python's json). */
int jj_json_parse(jj_arena *a, const char *text, size_t len, jv *out, char *why, size_t why_size);

/* Buffers (output and captures). */
int jj_buf_add(jj_ctx *x, jj_buf *b, const char *s, size_t n);
/* Moves b's bytes from start on into a new arena string and truncates b back to start. */
int jj_buf_take(jj_ctx *x, jj_buf *b, size_t start, jv *out);
/* A string value built from b's bytes after start (copied); b is truncated back. */
int jv_to_string(jj_ctx *x, const jv *v, jv *out); /* str(v) as a JV_STR */

/* Python whitespace (str.isspace) at s: its byte length, 0 when not whitespace. */
int jj_space_len(const char *s, size_t n);

/* Evaluation (jinja_eval.c). */
int jj_eval(jj_ctx *x, const jj_node *n, jv *out);
int jj_call_value(jj_ctx *x, const jj_node *at, const jv *callee, jv *args, size_t nargs,
                  const char **kwnames, jv *kwvals, size_t nkw, jv *out);
int jj_iterate(jj_ctx *x, const jj_node *at, const jv *v, jj_list **out);
int jj_getattr(jj_ctx *x, const jj_node *at, const jv *obj, const char *name, size_t n, jv *out);
int jj_compare(jj_ctx *x, const jj_node *at, int op, const jv *a, const jv *b, bool *out);
int jj_binop(jj_ctx *x, const jj_node *at, int op, const jv *a, const jv *b, jv *out);
int jj_step(jj_ctx *x, const jj_node *at);
int jj_render_root(jj_ctx *x);
/* The error an undefined value gives when used (its hint). */
int jj_undefined_use(jj_ctx *x, const jj_node *at, const jv *u);
/* The byte offset of each character of a string (n_chars + 1 entries, in the arena). */
int jj_char_offsets(jj_ctx *x, const jv *s, size_t **off, size_t *nc);

/* Helpers the built-ins share (jinja_methods.c). */
/* Argument i (positional) or the keyword name; NULL when neither was given. */
const jv *jj_arg(jv *args, size_t nargs, const char **kwn, jv *kwv, size_t nkw, size_t i,
                 const char *name);
int jj_check_kwargs(jj_ctx *x, const jj_node *at, const char *fn, const char **kwn, size_t nkw,
                    const char *const *allowed);
jv jj_list_val(jj_list *l);
int jj_need_str(jj_ctx *x, const jj_node *at, const char *what, const jv *v);
int jj_new_str(jj_ctx *x, const jj_node *at, const char *s, size_t n, bool markup, jv *out);
/* b's bytes as a new string value; frees b. */
int jj_buf_str(jj_ctx *x, const jj_node *at, jj_buf *b, bool markup, jv *out);
/* str.strip family: which = 1 left, 2 right, 3 both; chars NULL or None: whitespace. */
int jj_strip(jj_ctx *x, const jj_node *at, const jv *s, const jv *chars, int which, jv *out);
/* mode 'u' upper, 'l' lower, 't' title, 'c' capitalize, 's' swapcase. */
int jj_case(jj_ctx *x, const jj_node *at, const jv *s, char mode, jv *out);
int jj_replace(jj_ctx *x, const jj_node *at, const jv *s, const jv *old, const jv *new_,
               int64_t count, jv *out);
/* str.split / rsplit (sep NULL or None: runs of whitespace), maxsplit < 0: no limit. */
int jj_split(jj_ctx *x, const jj_node *at, const jv *s, const jv *sep, int64_t maxsplit, bool right,
             jv *out);
int jj_push(jj_ctx *x, const jj_node *at, jj_list **l, size_t *cap, jv v);
int64_t jj_char_count(const jv *s);
int jj_int_arg(jj_ctx *x, const jj_node *at, const jv *v, const char *what, int64_t *out);
/* dict.items(): a list of (key, value) tuples. */
int jj_items(jj_ctx *x, const jj_node *at, const jj_dict *d, jv *out);
/* sep.join(str(item) for item in seq), item's attribute when given (jinja_filters.c). */
int jj_join(jj_ctx *x, const jj_node *at, const jv *sep, const jv *seq, const jv *attribute,
            jv *out);
int jj_string_format(jj_ctx *x, const jj_node *at, const jv *fmt, const jv *args, jv *out);

/* Built-ins (jinja_methods.c, jinja_filters.c). */
int jj_filter(jj_ctx *x, const jj_node *at, const char *name, const jv *val, jv *args, size_t nargs,
              const char **kwnames, jv *kwvals, size_t nkw, jv *out);
int jj_test(jj_ctx *x, const jj_node *at, const char *name, const jv *val, jv *args, size_t nargs,
            bool *out);
int jj_method_call(jj_ctx *x, const jj_node *at, const jj_method *m, jv *args, size_t nargs,
                   const char **kwnames, jv *kwvals, size_t nkw, jv *out);
bool jj_is_method(const jv *self, const char *name, size_t n);
/* The built-in globals. */
enum { G_RAISE, G_STRFTIME, G_NAMESPACE, G_RANGE, G_DICT, G_CYCLER, G_JOINER, G_LIPSUM, G_COUNT };
extern const char *const jj_global_names[G_COUNT];
int jj_namespace_underscore(jj_ctx *x, const jj_node *at, const char *name, size_t n);
int jj_global_call(jj_ctx *x, const jj_node *at, int g, jv *args, size_t nargs,
                   const char **kwnames, jv *kwvals, size_t nkw, jv *out);

#endif
