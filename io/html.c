#include "html.h"

void nn_html_put(FILE *f, const char *s, nn_html_mode mode)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\n':
            fputs(mode == NN_HTML_TOKEN ? "\\n" : "&#10;", f);
            break;
        case ' ':
            if (mode == NN_HTML_TOKEN)
                fputs("&nbsp;", f);
            else
                fputc(' ', f);
            break;
        default:
            fputc(*s, f);
        }
    }
}
