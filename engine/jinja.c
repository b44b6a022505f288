/* The public API of the Jinja interpreter (engine/jinja.h): compile, variables, render. */
#include <string.h>

#include "jinja_internal.h"

/* ---- public API ---- */

nn_jinja_limits nn_jinja_default_limits(void)
{
    return (nn_jinja_limits){.max_output = (size_t)32 << 20,
                             .max_memory = (size_t)256 << 20,
                             .max_steps = 50000000,
                             .max_depth = 200};
}

int nn_jinja_compile(const char *name, const char *src, size_t len, nn_jinja **out, nn_err *err)
{
    *out = NULL;
    if (nn_utf8_validate(src, len) != len)
        return nn_fail(err, "%s: the template is not valid UTF-8 (byte %zu)", name,
                       nn_utf8_validate(src, len));
    nn_jinja *t = nn_calloc(1, sizeof *t, err);
    if (!t)
        return NN_ERR;
    size_t limit;
    if (!nn_mul_size(len + 1024, 64, &limit))
        limit = SIZE_MAX;
    jj_arena_init(&t->arena, limit < ((size_t)1 << 20) ? (size_t)1 << 20 : limit);
    t->name = nn_strdup(name, err);
    jj_token *toks;
    size_t n;
    if (!t->name || jj_lex(&t->arena, name, src, len, &toks, &n, err) ||
        jj_parse(&t->arena, name, toks, n, &t->root, err)) {
        nn_jinja_free(t);
        return NN_ERR;
    }
    *out = t;
    return NN_OK;
}

void nn_jinja_free(nn_jinja *t)
{
    if (!t)
        return;
    jj_arena_free(&t->arena);
    nn_free(t->name);
    nn_free(t);
}

int nn_jinja_vars_new(nn_jinja_vars **out, nn_err *err)
{
    nn_jinja_vars *v = nn_calloc(1, sizeof *v, err);
    if (!v)
        return NN_ERR;
    jj_arena_init(&v->arena, (size_t)256 << 20);
    *out = v;
    return NN_OK;
}

void nn_jinja_vars_free(nn_jinja_vars *v)
{
    if (!v)
        return;
    jj_arena_free(&v->arena);
    nn_free(v);
}

static int vars_put(nn_jinja_vars *v, const char *name, jv val, nn_err *err)
{
    char *k = jj_strndup(&v->arena, name, strlen(name));
    if (!k || jj_dict_set(&v->arena, &v->vars, jv_cstr(k), val))
        return nn_fail(err, "out of memory setting the template variable '%s'", name);
    return NN_OK;
}

int nn_jinja_vars_set_json(nn_jinja_vars *v, const char *name, const char *json, size_t len,
                           nn_err *err)
{
    jv val;
    char why[160];
    if (jj_json_parse(&v->arena, json, len, &val, why, sizeof why))
        return nn_fail(err, "template variable '%s': bad JSON: %s", name, why);
    return vars_put(v, name, val, err);
}

int nn_jinja_vars_set_json_members(nn_jinja_vars *v, const char *json, size_t len, nn_err *err)
{
    jv val;
    char why[160];
    if (jj_json_parse(&v->arena, json, len, &val, why, sizeof why))
        return nn_fail(err, "template variables: bad JSON: %s", why);
    if (val.t != JV_DICT)
        return nn_fail(err, "template variables: expected a JSON object, got %s",
                       jv_type_name(&val));
    for (size_t i = 0; i < val.u.d->n; i++)
        if (jj_dict_set(&v->arena, &v->vars, val.u.d->k[i], val.u.d->v[i]))
            return nn_fail(err, "out of memory setting template variables");
    return NN_OK;
}

int nn_jinja_vars_set_string(nn_jinja_vars *v, const char *name, const char *s, nn_err *err)
{
    if (!s)
        return vars_put(v, name, jv_none(), err);
    char *c = jj_strndup(&v->arena, s, strlen(s));
    if (!c)
        return nn_fail(err, "out of memory setting the template variable '%s'", name);
    return vars_put(v, name, jv_str(c, strlen(c)), err);
}

int nn_jinja_vars_set_bool(nn_jinja_vars *v, const char *name, bool b, nn_err *err)
{
    return vars_put(v, name, jv_bool(b), err);
}

int nn_jinja_render(const nn_jinja *t, const nn_jinja_vars *vars, time_t now,
                    const nn_jinja_limits *limits, char **out, size_t *out_len, nn_err *err)
{
    *out = NULL;
    static const nn_jinja_vars no_vars;
    jj_ctx x = {.tmpl = t, .vars = vars ? vars : &no_vars, .now = now, .err = err};
    x.lim = limits ? *limits : nn_jinja_default_limits();
    jj_arena_init(&x.arena, x.lim.max_memory);
    int rc = NN_ERR;
    rc = jj_render_root(&x);
    jj_arena_free(&x.arena);
    if (rc || jj_buf_add(&x, &x.out, "", 0)) {
        nn_free(x.out.p);
        return NN_ERR;
    }
    *out = x.out.p;
    if (out_len)
        *out_len = x.out.n;
    return NN_OK;
}

/* ---- transformers' conversation preprocessing (engine/chat.c) ---- */

static jv *var_ref(nn_jinja_vars *v, const char *name)
{
    return jj_dict_get_str(&v->vars, name, strlen(name));
}

/* A copy of dict d without the keys whose value is None (transformers 5: "drop the keys whose
 * value is None"), and with reasoning aliased: {"thinking": r, **message, "reasoning_content": r}
 * where r is the first of reasoning_content, thinking, reasoning that is not None. */
static int prepare_message(nn_jinja_vars *v, const jj_dict *d, jj_dict **out)
{
    jj_dict *m = jj_dict_new(&v->arena);
    if (!m)
        return NN_ERR;
    static const char *const fields[] = {"reasoning_content", "thinking", "reasoning"};
    const jv *reasoning = NULL;
    for (int f = 0; f < 3 && !reasoning; f++) {
        const jv *r = jj_dict_get_str(d, fields[f], strlen(fields[f]));
        if (r && r->t != JV_NONE)
            reasoning = r;
    }
    if (reasoning && jj_dict_set(&v->arena, m, jv_cstr("thinking"), *reasoning))
        return NN_ERR;
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].t != JV_NONE && jj_dict_set(&v->arena, m, d->k[i], d->v[i]))
            return NN_ERR;
    if (reasoning && jj_dict_set(&v->arena, m, jv_cstr("reasoning_content"), *reasoning))
        return NN_ERR;
    *out = m;
    return NN_OK;
}

static int dict_copy(nn_jinja_vars *v, const jj_dict *d, jj_dict **out)
{
    jj_dict *c = jj_dict_new(&v->arena);
    if (!c)
        return NN_ERR;
    for (size_t i = 0; i < d->n; i++)
        if (jj_dict_set(&v->arena, c, d->k[i], d->v[i]))
            return NN_ERR;
    *out = c;
    return NN_OK;
}

int nn_jinja_vars_prepare_chat(nn_jinja_vars *v, bool transformers5, const char *final_tag,
                               nn_err *err)
{
    jv *msgs = var_ref(v, "messages");
    if (!msgs || msgs->t != JV_LIST)
        return nn_fail(err, "the conversation has no list 'messages'");
    jj_list *l;
    if (jj_list_new(&v->arena, msgs->u.l->n, &l))
        return nn_fail(err, "out of memory preparing the conversation");
    for (size_t i = 0; i < msgs->u.l->n; i++) {
        jv m = msgs->u.l->v[i];
        if (m.t != JV_DICT)
            return nn_fail(err, "message %zu is not an object", i);
        if (transformers5 && prepare_message(v, m.u.d, &m.u.d))
            return nn_fail(err, "out of memory preparing the conversation");
        l->v[i] = m;
    }
    if (final_tag && l->n) {
        /* the final message's content (or its last text block) + the tag */
        jv *last = &l->v[l->n - 1];
        jj_dict *copy;
        if (dict_copy(v, last->u.d, &copy))
            return nn_fail(err, "out of memory preparing the conversation");
        last->u.d = copy;
        jv *content = jj_dict_get_str(copy, "content", 7);
        jv *target = NULL;
        if (content && content->t == JV_STR) {
            target = content;
        } else if (content && content->t == JV_LIST) {
            jj_list *blocks;
            if (jj_list_new(&v->arena, content->u.l->n, &blocks))
                return nn_fail(err, "out of memory preparing the conversation");
            jj_memcpy(blocks->v, content->u.l->v, content->u.l->n * sizeof(jv));
            content->u.l = blocks;
            for (size_t b = blocks->n; b > 0 && !target; b--) {
                jv *blk = &blocks->v[b - 1];
                jv *text = blk->t == JV_DICT ? jj_dict_get_str(blk->u.d, "text", 4) : NULL;
                if (text) {
                    jj_dict *bc;
                    if (dict_copy(v, blk->u.d, &bc))
                        return nn_fail(err, "out of memory preparing the conversation");
                    blk->u.d = bc;
                    target = jj_dict_get_str(bc, "text", 4);
                }
            }
        }
        if (!target || target->t != JV_STR)
            return nn_fail(err, "continue_final_message is set but the final message has no "
                                "text to continue");
        size_t tn = strlen(final_tag);
        char *s = jj_alloc(&v->arena, target->u.s.n + tn + 1);
        if (!s)
            return nn_fail(err, "out of memory preparing the conversation");
        jj_memcpy(s, target->u.s.p, target->u.s.n);
        jj_memcpy(s + target->u.s.n, final_tag, tn + 1);
        *target = jv_str(s, target->u.s.n + tn);
    }
    msgs->u.l = l;
    return NN_OK;
}
