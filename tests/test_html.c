/* io/html.c: the escaping the HTML pages of `nnterp plot` and the feature pages share. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "nn_test.h"

static void check_put(const char *s, nn_html_mode mode, const char *want)
{
    char *got = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&got, &n);
    if (!f) {
        CHECK(0, "open_memstream");
        return;
    }
    nn_html_put(f, s, mode);
    fclose(f);
    CHECK(strcmp(got, want) == 0, "'%s' (mode %d) -> '%s', expected '%s'", s ? s : "(null)",
          (int)mode, got, want);
    free(got);
}

int main(void)
{
    check_put("a<b>&\"c\"", NN_HTML_TEXT, "a&lt;b&gt;&amp;&quot;c&quot;");
    check_put("two words\nline", NN_HTML_TEXT, "two words&#10;line");
    check_put("'single'", NN_HTML_TEXT, "'single'");
    check_put(" the\n<s>", NN_HTML_TOKEN, "&nbsp;the\\n&lt;s&gt;");
    check_put("  & ", NN_HTML_TOKEN, "&nbsp;&nbsp;&amp;&nbsp;");
    check_put("", NN_HTML_TEXT, "");
    check_put(NULL, NN_HTML_TOKEN, "");
    return nn_test_finish("test_html");
}
