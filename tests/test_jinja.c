/* The Jinja interpreter on its own: hand-written templates with the exact output jinja2 gives
 * (trim_blocks + lstrip_blocks, as transformers sets it), and malformed or hostile templates with
 * the exact error, in bounded time and memory. Needs no shared data. */
#include <string.h>
#include <time.h>

#include "jinja.h"
#include "nn_json.h"
#include "nn_test.h"

static void render_case(const char *src, const char *vars, const char *want, const char *want_err)
{
    nn_err err = {{0}};
    nn_jinja *t = NULL;
    nn_jinja_vars *v = NULL;
    char *out = NULL;
    size_t n = 0;
    nn_jinja_limits lim = nn_jinja_default_limits();
    lim.max_steps = 2000000;
    lim.max_memory = (size_t)32 << 20;
    lim.max_output = (size_t)1 << 20;
    int rc = nn_jinja_compile("t.jinja", src, strlen(src), &t, &err);
    if (!rc)
        rc = nn_jinja_vars_new(&v, &err);
    if (!rc && vars)
        rc = nn_jinja_vars_set_json_members(v, vars, strlen(vars), &err);
    if (!rc)
        rc = nn_jinja_render(t, v, 0, &lim, &out, &n, &err);
    if (want_err) {
        if (!strcmp(want_err, "ANY"))
            want_err = err.msg;
        if (!strcmp(want_err, "STEPS"))
            want_err = strstr(err.msg, "steps") ? err.msg : "the step limit";
        CHECK(rc != NN_OK, "%s: rendered '%s', expected the error '%s'", src, out ? out : "",
              want_err);
        if (rc)
            CHECK(!strcmp(err.msg, want_err), "%s:\n  error '%s'\n  want  '%s'", src, err.msg,
                  want_err);
    } else {
        CHECK(rc == NN_OK, "%s: %s", src, err.msg);
        if (!rc)
            CHECK(strlen(want) == n && !memcmp(out, want, n), "%s:\n  got  '%s'\n  want '%s'", src,
                  out, want);
    }
    nn_free(out);
    nn_jinja_vars_free(v);
    nn_jinja_free(t);
}

/* tests/jinja/expected.jsonl (tools/jinja_expected.py): one-line templates with jinja2's output,
 * or the type of the error it raised (nnterp must fail too). */
static void expected_file(const char *path)
{
    size_t n;
    char *text = nn_test_slurp(path, &n), *save = NULL;
    int count = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t at;
        cJSON *j = nn_json_parse(line, strlen(line), &at);
        CHECK(j, "%s: bad line", path);
        if (!j)
            continue;
        const char *src = cJSON_GetStringValue(nn_json_get(j, "template"));
        const char *want = cJSON_GetStringValue(nn_json_get(j, "expected"));
        const char *err_type = cJSON_GetStringValue(nn_json_get(j, "error"));
        if (src && want)
            render_case(src, NULL, want, NULL);
        else if (src && err_type)
            render_case(src, NULL, NULL, "ANY");
        count++;
        cJSON_Delete(j);
    }
    CHECK(count > 40, "%s: only %d cases", path, count);
    free(text);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        expected_file(argv[1]);
    /* outputs checked against jinja2 3.1 (ImmutableSandboxedEnvironment, trim_blocks,
     * lstrip_blocks, loopcontrols) */
    static const char *const ok[][3] = {
        {"{% set x = 0 %}{% for i in [1,2,3] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}", NULL,
         "1230"},
        {"{% macro m() %}{{ y }}{% endmacro %}{% set y = 1 %}{{ m() }}{% set y = 2 %}{{ m() }}",
         NULL, "12"},
        {"{{ 1/2 }}{{ 7//2 }}{{ -7//2 }}{{ 2**10 }}{{ 1e20 }}{{ 0.1+0.2 }}{{ 3.0 }}", NULL,
         "0.53-410241e+200.300000000000000043.0"},
        {"{{ [1,\"a\",None,True,{\"k\":1.5}] }}", NULL, "[1, 'a', None, True, {'k': 1.5}]"},
        {"{{ \"%s-%d\" % (\"a\", 3) }}", NULL, "a-3"},
        {"{{ d.zz }}|{{ d[\"zz\"] }}", "{\"d\": {\"a\": 1}}", "|"},
        {"{% for a in xs %}{{ loop.cycle(\"a\",\"b\") }}{% endfor %}", "{\"xs\": [1, 2, 3]}",
         "aba"},
        {"{{ 'ab' * 3 }}{{ [1]*2 }}{{ 'a' < 'b' }}{{ xs|length }}", "{\"xs\": [1, 2]}",
         "ababab[1, 1]True2"},
        {"{{ (s|safe) + '<' }}", "{\"s\": \" Hi \"}", " Hi &lt;"},
        {"a\n  {% if true %}\n  b\n  {% endif %}\nc", NULL, "a\n  b\nc"},
        {"a  {%- if true -%}  b  {%- endif %}  c\n", NULL, "ab  c"},
        {"{# c #}\n  {#- x -#} y {{- ' z' }}", NULL, "y z"},
        {"{{ 'x' ~ 1 ~ none ~ [1] }}", NULL, "x1None[1]"},
        {"{{ 'Hello World'.split() }}{{ ' a b '.strip() }}{{ 'a,b'.split(',') }}", NULL,
         "['Hello', 'World']a b['a', 'b']"},
        {"{{ 'abc'[::-1] }}{{ [1,2,3][1:] }}{{ [1,2,3][-1] }}{{ 'héllo'[1] }}", NULL,
         "cba[2, 3]3é"},
        {"{% set ns = namespace(a=1) %}{% for i in [1,2] %}{% set ns.a = ns.a + i %}{% endfor "
         "%}{{ ns.a }}",
         NULL, "4"},
        {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
         "{\"d\": {\"b\": 1, \"a\": [2]}}", "b=1;a=[2];"},
        {"{{ d | tojson }}|{{ d | tojson(indent=2) }}", "{\"d\": {\"a\": [1, 2.0, \"é\"]}}",
         "{\"a\": [1, 2.0, \"é\"]}|{\n  \"a\": [\n    1,\n    2.0,\n    \"é\"\n  ]\n}"},
        {"{% for m in ms | selectattr('r', 'equalto', 'u') %}{{ m.c }}{% endfor %}",
         "{\"ms\": [{\"r\": \"u\", \"c\": 1}, {\"r\": \"a\", \"c\": 2}, {\"r\": \"u\", \"c\": 3}]}",
         "13"},
        {"{{ ms | map(attribute='c') | join(', ') }}", "{\"ms\": [{\"c\": 1}, {\"c\": 2}]}",
         "1, 2"},
        {"{% for i in range(5) if i is odd %}{{ loop.index }}{{ i }}{% else %}none{% endfor %}",
         NULL, "1123"},
        {"{% for i in [] %}x{% else %}empty{% endfor %}", NULL, "empty"},
        {"{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% "
         "continue %}{% endif %}{{ i }}{% endfor %}",
         NULL, "02"},
        {"{% filter upper %}ab{{ 'c' }}{% endfilter %}", NULL, "ABC"},
        {"{% set x %}a{{ 1 }}{% endset %}{{ x }}{{ x | length }}", NULL, "a12"},
        {"{% macro f(a, b=2) %}{{ a }}{{ b }}{{ caller() if caller is defined }}{% endmacro "
         "%}{{ f(1) }}{% call f(3, b=4) %}C{% endcall %}",
         NULL, "1234C"},
        {"{% generation %}gen{% endgeneration %}", NULL, "gen"},
        {"{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 'a' is string }}{{ {} is "
         "mapping }}{{ 3 is divisibleby 3 }}",
         NULL, "FalseTrueTrueTrueTrueTrue"},
        {"{{ 'a' if false }}|{{ 'a' if false else 'b' }}|{{ x | default('d') }}", NULL, "|b|d"},
        {"{{ 'hello world'.title() }}{{ 'ABC'.lower() }}{{ 'x'.startswith(('a','x')) }}", NULL,
         "Hello WorldabcTrue"},
        {"{{ '  a\n b' | indent(2) }}|{{ 'a\n\nb' | indent(2, true) }}", NULL,
         "  a\n   b|  a\n\n  b"},
        {"{{ '3' | int + 1 }}{{ '2.5' | float }}{{ 'x' | int }}{{ 3.7 | int }}", NULL, "42.503"},
        {"{{ [3,1,2] | sort }}{{ [1,2,2] | unique | list }}{{ [1,2] | last }}", NULL,
         "[1, 2, 3][1, 2]2"},
        {"{{ 1 in [1] }}{{ 'b' not in 'abc' }}{{ 1 < 2 < 3 }}", NULL, "TrueFalseTrue"},
        {"{% raw %}{{ x }}{% endraw %}", NULL, "{{ x }}"},
        {"{{ 'a\\tb\\u00e9\\x41' }}", NULL, "a\tbéA"},
        {"x\r\ny\n", NULL, "x\ny"},
        {"{{ (1,) }}{{ () }}{{ {'a': [1, (2, 3)]} }}", NULL, "(1,)(){'a': [1, (2, 3)]}"},
        {"{{ ['\\u200b', '\u00e9\\x85', 'a b', '\\u3000', '\U0001F431', 'it\\'s', '\\\\'] }}", NULL,
         "['\\u200b', '\u00e9\\x85', 'a b', '\\u3000', '\U0001F431', \"it's\", '\\\\']"},
        {"{{ 'a' in u }}{{ u | trim }}|{{ none | trim }}{{ u ~ 'x' }}{{ u | length }}{{ u | list "
         "}}",
         NULL, "False|Nonex0[]"},
        {"{{ 1 == 1.0 }}{{ true == 1 }}{{ [1] == [1.0] }}{{ 10 % 3 }}{{ -7 % 3 }}{{ 7.5 // 2 }}"
         "{{ 2 ** -1 }}",
         NULL, "TrueTrueTrue123.00.5"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        render_case(ok[i][0], ok[i][1], ok[i][2], NULL);

    static const char *const bad[][2] = {
        {"{% if x %}a", "t.jinja:1:12: unexpected end of template: a block opened at line 1, "
                        "column 11 was never closed; expected {% endif %}"},
        {"{% for x in y %}{% endif %}",
         "t.jinja:1:20: unexpected 'endif': the innermost open block (line 1, column 17) "
         "expects {% endfor %}"},
        {"{{ x | nosuchfilter }}", "t.jinja:1:8: no filter named 'nosuchfilter'"},
        {"{{ x is nosuchtest }}", "t.jinja:1:6: no test named 'nosuchtest'"},
        {"{% include 'x' %}", "t.jinja:1:4: the tag 'include' is not supported in chat "
                              "templates (it is not enabled in transformers' environment, or "
                              "needs a template loader)"},
        {"{% frobnicate %}", "t.jinja:1:4: unknown tag 'frobnicate'"},
        {"{{ 'abc }}", "t.jinja:1:4: unexpected end of template: unterminated string"},
        {"{{ (1 }}", "t.jinja:1:7: unexpected '}', expected ')'"},
        {"{{ 1 +", "t.jinja:1:7: unexpected end of template: '}}' missing"},
        {"{# x", "t.jinja:1:1: missing end of comment tag"},
        {"{{ raise_exception('System role not supported') }}",
         "t.jinja:1:4: raise_exception: System role not supported"},
        {"{{ x.y }}", "t.jinja:1:5: 'x' is undefined"},
        {"{{ 'a' + 1 }}", "t.jinja:1:8: can only concatenate str (not \"int\") to str"},
        {"{{ 1 / 0 }}", "t.jinja:1:6: division by zero"},
        {"{{ [].append(1) }}",
         "t.jinja:1:6: list.append is unsafe: the sandbox of transformers' template "
         "environment (ImmutableSandboxedEnvironment) refuses to modify a list"},
        {"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
         "t.jinja:1:19: macro calls nest more than 200 deep (runaway recursion?)"},
        {"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "t.jinja:1:29: rendering needs more than the memory limit of 33554432 bytes"},
        {"{{ range(1000000) }}", "t.jinja:1:4: Range too big. The sandbox blocks ranges larger "
                                 "than MAX_RANGE (100000)."},
        {"{{ 'x' * 100000000 }}",
         "t.jinja:1:8: rendering needs more than the memory limit of 33554432 bytes"},
        {"{% for i in range(100000) %}{{ 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 "
         "+ 1 + 1 + 1 + 1 + 1 + 1 }}{% endfor %}",
         "STEPS"},
        {"{% for i in range(100000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}",
         "t.jinja: the rendered text exceeds the output limit of 1048576 bytes"},
        {"{% set ns = namespace(_a=1) %}",
         "t.jinja:1:13: Chat templates cannot store underscore-prefixed attributes on a namespace, "
         "but got '_a'. Please rename the attribute."},
        {"{% set ns = namespace() %}{% set ns._b = 1 %}",
         "t.jinja:1:34: Chat templates cannot store underscore-prefixed attributes on a namespace, "
         "but got '_b'. Please rename the attribute."},
        {"{% set x.y = 1 %}", "t.jinja:1:8: cannot assign attribute on a non-namespace object "
                              "(jinja allows {% set x.attr = ... %} only on namespace())"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        render_case(bad[i][0], NULL, NULL, bad[i][1]);
    /* 250 nested parentheses: the parser's depth limit, not the C stack */
    char deep[600];
    strcpy(deep, "{{ ");
    for (int i = 0; i < 250; i++)
        strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 250; i++)
        strcat(deep, ")");
    strcat(deep, " }}");
    render_case(deep, NULL, NULL,
                "t.jinja:1:70: the template nests expressions or blocks too deeply");
    return nn_test_finish("test_jinja");
}
