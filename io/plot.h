/* Pictures of top-k tables, as nnterp's plot_topk_tokens draws them: one heatmap per panel, a row
 * per layer (the first row at the bottom) and a column per rank, each cell a token coloured by its
 * probability on viridis fixed to [0, 1], with a colour bar; several panels (prompts, positions)
 * in a grid of at most three columns. Written as a PNG (cairo, text through pango, so any UTF-8 a
 * font covers) or as a self-contained HTML page (inline SVG and CSS, nothing fetched) whose cells
 * tell their layer, rank, token, id and probability on hover.
 *
 * Plain data in, never models: the caller decodes tokens to text. The PNG and the page share one
 * layout, so a cell's rectangle in the SVG is its rectangle in the PNG divided by `scale`. */
#ifndef NN_PLOT_H
#define NN_PLOT_H

#include "nn_base.h"

typedef struct nn_plot_cell {
    const char
        *text; /* the token's text, UTF-8 as decoded (made visible when drawn); NULL: "#id" */
    int32_t id;
    float prob;
} nn_plot_cell;

typedef struct nn_plot_panel {
    const char *title;             /* above the heatmap (a prompt: cut at its start); may be NULL */
    const char *subtitle;          /* a smaller second line; may be NULL */
    int n_rows, k;                 /* rows (layers) and columns (ranks) */
    const char *const *row_labels; /* [n_rows] tick labels, e.g. "0".."11" */
    const nn_plot_cell *cells;     /* [n_rows][k], most probable first */
} nn_plot_panel;

typedef struct nn_plot {
    const char *title;
    const char *row_axis, *col_axis; /* NULL: "layer", "rank" */
    const nn_plot_panel *panels;
    int n_panels;
    int columns;  /* panels per grid row; 0: min(3, n_panels) */
    double scale; /* PNG pixels per layout unit (CSS pixel); 0: 2 */
} nn_plot;

typedef struct nn_plot_info {
    int width, height;  /* the PNG in pixels; the page's SVG in CSS pixels */
    int unknown_glyphs; /* characters that no installed font could draw (shown as hex boxes) */
} nn_plot_info;

/* info may be NULL. */
int nn_plot_png(const nn_plot *p, const char *path, nn_plot_info *info, nn_err *err);
int nn_plot_html(const nn_plot *p, const char *path, nn_plot_info *info, nn_err *err);
/* By PATH's extension: .png, or .html / .htm. */
int nn_plot_write(const nn_plot *p, const char *path, nn_plot_info *info, nn_err *err);
/* Whether nn_plot_write knows PATH's extension (to refuse a bad name before any work). */
bool nn_plot_format_known(const char *path);

/* A token as a cell shows it, as a new string: quoted, a space as "␣", newline, tab and carriage
 * return as \n \t \r, a backslash doubled, other control bytes and bytes that are not UTF-8 as
 * \xNN. */
char *nn_plot_token_text(const char *text, nn_err *err);
/* Viridis at t in [0, 1] (clamped; NaN is 0): matplotlib's 256-entry table to within one 8-bit
 * step, from a piecewise polynomial fitted to it. */
void nn_plot_viridis(double t, uint8_t rgb[3]);

#endif
