/* Text written into the HTML (and SVG) pages of io/plot.c and io/feature_plot.c. */
#ifndef NN_HTML_H
#define NN_HTML_H

#include <stdio.h>

typedef enum nn_html_mode {
    NN_HTML_TEXT,  /* titles, labels, attribute values: a newline as &#10; */
    NN_HTML_TOKEN, /* a token's text shown as it is: a newline as a visible "\n", a space as
                    * &nbsp; (leading and repeated spaces are not collapsed) */
} nn_html_mode;

/* s (NULL: nothing) to f with &, <, > and " as entities, newlines and spaces as mode says. */
void nn_html_put(FILE *f, const char *s, nn_html_mode mode);

#endif
