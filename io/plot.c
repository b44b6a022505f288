/* Top-k heatmaps as PNG (cairo + pango) and as a self-contained HTML page (inline SVG). */
#include "plot.h"

#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <pango/pangocairo.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "html.h"

/* Fonts: DejaVu for Latin, Greek, Cyrillic and symbols, Noto for CJK and colour emoji; fontconfig
 * falls back further for anything else. The page names the same fonts. */
#define FONT_FAMILIES "DejaVu Sans"
#define CSS_FONTS "'DejaVu Sans', 'Noto Sans CJK SC', 'Noto Color Emoji', sans-serif"

enum { F_TITLE, F_PANEL, F_SUB, F_AXIS, F_TICK, F_TOKEN, F_PROB, F_COUNT };
static const struct {
    double px;
    bool bold;
} fonts[F_COUNT] = {{17, true},  {13, true},  {11, false}, {12, false},
                    {11, false}, {12, false}, {9.5, false}};

/* Geometry, in layout units (CSS pixels). */
#define MARGIN 16.0
#define GAP_X 28.0 /* between panels */
#define GAP_Y 22.0
#define CELL_H 36.0 /* row pitch */
#define CELL_MIN_W 56.0
#define CELL_MAX_W 150.0
#define CELL_PAD 10.0  /* text to cell edge, both sides together */
#define CELL_INSET 1.0 /* white border around each cell: 2 between neighbours */
#define BAR_W 16.0
#define BAR_MIN_H 140.0
#define MAX_SIDE 30000.0 /* cairo's image limit is 32767 pixels a side */

static const char *const ELLIPSIS = "\xe2\x80\xa6";   /* … */
static const char *const SPACE_MARK = "\xe2\x90\xa3"; /* ␣ */

/* ---- Viridis ------------------------------------------------------------------------------------
 * Least-squares fits of degree 6 to matplotlib's viridis table (CC0), one per quarter of [0, 1] and
 * channel, in x = 8t - 2q - 1 in [-1, 1]; every one of the 256 entries is matched to within one
 * 8-bit step after rounding (0.3 of a step before). */
static const double viridis_poly[4][3][7] = {
    {
        {0.278922582, -0.0246281744, -0.033421264, 0.00641896649, 0.00364917248, -0.000181867496,
         -0.000538432057},
        {0.174704834, 0.154400608, -0.00231440387, 0.00831228476, -0.0258576486, -0.00366197233,
         0.0164557417},
        {0.482976156, 0.107170944, -0.0504541134, 0.000719983172, 0.00567598196, 0.000150108865,
         -0.000746302952},
    },
    {
        {0.173301197, -0.0494958079, 0.00640036253, -0.00390943736, -0.00133431003, 0.00236341114,
         0.000816694756},
        {0.447386387, 0.119387015, -0.0038051636, 0.00276097743, -0.000424838395, -0.000243834639,
         4.64057565e-05},
        {0.557852286, 0.00291928783, -0.00698260806, -0.000579032262, -0.00279068405,
         0.000362789962, 0.000116604379},
    },
    {
        {0.155347586, 0.124744992, 0.106846787, -0.0161618853, -0.019694794, 0.00895329681,
         0.00296840975},
        {0.681540258, 0.113575406, -0.00528712203, -0.00287470144, -0.000340818088, 9.47038767e-05,
         -9.8104723e-06},
        {0.503247988, -0.0789711617, -0.0355185907, -0.00316972768, 0.00105676476, -1.02922758e-05,
         -3.92261498e-05},
    },
    {
        {0.669358949, 0.332364384, 0.0115304093, -0.01849735, -0.00416342327, 0.00132849161,
         0.00132720677},
        {0.862218998, 0.0559743981, -0.0191386605, 0.00358322263, 0.00395197004, 0.00018143406,
         -0.000608463332},
        {0.195691085, -0.221945469, -0.0098384702, 0.10677138, 0.136367544, -0.00447186599,
         -0.0574889505},
    },
};

void nn_plot_viridis(double t, uint8_t rgb[3])
{
    if (!(t >= 0)) /* NaN too */
        t = 0;
    if (t > 1)
        t = 1;
    int q = t >= 1 ? 3 : (int)(t * 4);
    double x = 8 * t - 2 * q - 1;
    for (int c = 0; c < 3; c++) {
        const double *a = viridis_poly[q][c];
        double v = a[6];
        for (int i = 5; i >= 0; i--)
            v = v * x + a[i];
        v = v * 255 + 0.5;
        rgb[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

/* Black or white, whichever contrasts more with the background (WCAG relative luminance). */
static bool dark_text_on(const uint8_t rgb[3])
{
    double l = 0;
    static const double w[3] = {0.2126, 0.7152, 0.0722};
    for (int c = 0; c < 3; c++) {
        double s = rgb[c] / 255.0;
        l += w[c] * (s <= 0.04045 ? s / 12.92 : pow((s + 0.055) / 1.055, 2.4));
    }
    return (l + 0.05) / 0.05 > 1.05 / (l + 0.05);
}

/* ---- Strings ------------------------------------------------------------------------------------
 */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool failed;
    nn_err *err;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *grown = nn_realloc(b->s, cap, b->err);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* The string built (the caller frees), or NULL with err set. */
static char *sb_take(sbuf *b)
{
    sb_put(b, "", 0);
    if (b->failed) {
        nn_free(b->s);
        return NULL;
    }
    return b->s;
}

/* Text made readable on one line; spaces as ␣ when mark_spaces. */
static void sb_visible(sbuf *b, const char *s, bool mark_spaces)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == ' ' && mark_spaces)
            sb_str(b, SPACE_MARK);
        else if (c == '\\' && mark_spaces)
            sb_str(b, "\\\\");
        else if (c == '\n')
            sb_str(b, "\\n");
        else if (c == '\t')
            sb_str(b, "\\t");
        else if (c == '\r')
            sb_str(b, "\\r");
        else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            sb_str(b, esc);
        } else if (c < 0x80) {
            sb_put(b, (const char *)&s[i], 1);
        } else {
            int n = nn_utf8_char_len((const unsigned char *)s + i, len - i);
            if (n == 0) {
                snprintf(esc, sizeof esc, "\\x%02x", c);
                sb_str(b, esc);
                i++;
            } else {
                sb_put(b, s + i, (size_t)n);
                i += (size_t)n;
            }
            continue;
        }
        i++;
    }
}

static char *visible(const char *s, bool mark_spaces, nn_err *err)
{
    sbuf b = {.err = err};
    sb_visible(&b, s ? s : "", mark_spaces);
    return sb_take(&b);
}

char *nn_plot_token_text(const char *text, nn_err *err)
{
    sbuf b = {.err = err};
    sb_str(&b, "'");
    sb_visible(&b, text ? text : "", true);
    sb_str(&b, "'");
    return sb_take(&b);
}

/* ---- Text measurement ---------------------------------------------------------------------------
 * One pango layout over a cairo context, with metrics unhinted so that widths scale exactly and the
 * PNG at any scale and the page share one layout. */

typedef struct typo {
    cairo_t *cr;
    PangoLayout *layout;
    PangoFontDescription *font[F_COUNT];
    double line_h[F_COUNT];
    int unknown_glyphs;
} typo;

static void typo_free(typo *t)
{
    for (int i = 0; i < F_COUNT; i++)
        if (t->font[i])
            pango_font_description_free(t->font[i]);
    if (t->layout)
        g_object_unref(t->layout);
    if (t->cr)
        cairo_destroy(t->cr);
    memset(t, 0, sizeof *t);
}

static void text_size(typo *t, int font, const char *s, double *w, double *h);

/* Binds a typo to the cairo context cr (which it keeps a reference to). */
static int typo_init(typo *t, cairo_t *cr, nn_err *err)
{
    memset(t, 0, sizeof *t);
    t->cr = cairo_reference(cr);
    cairo_font_options_t *opts = cairo_font_options_create();
    cairo_font_options_set_hint_metrics(opts, CAIRO_HINT_METRICS_OFF);
    cairo_font_options_set_hint_style(opts, CAIRO_HINT_STYLE_NONE);
    cairo_font_options_set_antialias(opts, CAIRO_ANTIALIAS_GRAY);
    t->layout = pango_cairo_create_layout(cr);
    if (!t->layout) {
        cairo_font_options_destroy(opts);
        return nn_fail(err, "plot: pango cannot create a text layout");
    }
    PangoContext *ctx = pango_layout_get_context(t->layout);
    pango_cairo_context_set_font_options(ctx, opts);
    pango_context_set_round_glyph_positions(ctx, FALSE);
    pango_layout_context_changed(t->layout);
    cairo_font_options_destroy(opts);
    for (int i = 0; i < F_COUNT; i++) {
        t->font[i] = pango_font_description_from_string(FONT_FAMILIES);
        pango_font_description_set_absolute_size(t->font[i], fonts[i].px * PANGO_SCALE);
        pango_font_description_set_weight(t->font[i],
                                          fonts[i].bold ? PANGO_WEIGHT_BOLD : PANGO_WEIGHT_NORMAL);
        double w;
        text_size(t, i, "Ag", &w, &t->line_h[i]);
    }
    t->unknown_glyphs = 0;
    return NN_OK;
}

static void set_text(typo *t, int font, const char *s)
{
    pango_layout_set_font_description(t->layout, t->font[font]);
    pango_layout_set_text(t->layout, s, -1);
}

static void text_size(typo *t, int font, const char *s, double *w, double *h)
{
    set_text(t, font, s);
    PangoRectangle logical;
    pango_layout_get_extents(t->layout, NULL, &logical);
    *w = (double)logical.width / PANGO_SCALE;
    *h = (double)logical.height / PANGO_SCALE;
}

static double text_w(typo *t, int font, const char *s)
{
    double w, h;
    text_size(t, font, s, &w, &h);
    return w;
}

/* Counts the characters of s that no font covers. */
static void count_unknown(typo *t, int font, const char *s)
{
    set_text(t, font, s);
    t->unknown_glyphs += pango_layout_get_unknown_glyphs_count(t->layout);
}

static bool is_char_start(char c)
{
    return ((unsigned char)c & 0xC0) != 0x80;
}

/* The byte offset that keeps `keep` characters of body: its first ones, or with at_start its
 * last ones (the cut then falls before them). */
static size_t cut_after(const char *body, size_t len, size_t keep, bool at_start)
{
    size_t at = at_start ? len : 0, seen = 0;
    if (at_start) {
        while (at > 0 && seen < keep)
            seen += is_char_start(body[--at]);
    } else {
        while (at < len && !(is_char_start(body[at]) && seen++ == keep))
            at++;
    }
    return at;
}

/* b = pre + body cut at byte `at` with an ellipsis where the cut is + post. */
static void elided(sbuf *b, const char *pre, const char *body, size_t at, bool at_start,
                   const char *post)
{
    b->n = 0;
    sb_str(b, pre);
    if (at_start) {
        sb_str(b, ELLIPSIS);
        sb_str(b, body + at);
    } else {
        sb_put(b, body, at);
        sb_str(b, ELLIPSIS);
    }
    sb_str(b, post);
}

/* pre + body + post as a new string, body cut (at a character, an ellipsis in its place) so that
 * the whole is at most max_w wide; at_start cuts the body's beginning instead of its end. */
static char *fit_text(typo *t, int font, const char *pre, const char *body, const char *post,
                      double max_w, bool at_start, nn_err *err)
{
    sbuf b = {.err = err};
    sb_str(&b, pre);
    sb_str(&b, body);
    sb_str(&b, post);
    if (b.failed || text_w(t, font, b.s) <= max_w)
        return sb_take(&b);
    /* character starts of body */
    size_t len = strlen(body), n_chars = 0;
    for (size_t i = 0; i < len; i++)
        n_chars += is_char_start(body[i]);
    size_t lo = 0, hi = n_chars; /* keep lo characters: fits; hi: does not */
    while (hi - lo > 1 && !b.failed) {
        size_t mid = (lo + hi) / 2;
        elided(&b, pre, body, cut_after(body, len, mid, at_start), at_start, post);
        if (!b.failed && text_w(t, font, b.s) <= max_w)
            lo = mid;
        else
            hi = mid;
    }
    elided(&b, pre, body, cut_after(body, len, lo, at_start), at_start, post);
    return sb_take(&b);
}

/* ---- Layout -------------------------------------------------------------------------------------
 */

typedef struct panel_text {
    char *title, *subtitle;
    char **cells; /* [n_cells] fitted, visible, quoted */
    size_t n_cells;
    char **labels; /* [n_labels] row labels, visible */
    int n_labels;
} panel_text;

typedef struct layout {
    double W, H;
    char *title;
    const char *row_axis, *col_axis;
    int cols;
    double top; /* y of the first grid row */
    double panel_w, panel_h;
    double head_h;         /* panel title and subtitle */
    double title_h, sub_h; /* their line heights (0 when no panel has one) */
    double hm_x;           /* heatmap's left edge within a panel */
    double cw;             /* column pitch */
    int max_rows;
    double bar_x, bar_y, bar_h;
    panel_text *texts; /* [n_panels] */
    int n_panels;
    int unknown_glyphs;
} layout;

static void layout_free(layout *L)
{
    nn_free(L->title);
    for (int p = 0; L->texts && p < L->n_panels; p++) {
        panel_text *pt = &L->texts[p];
        nn_free(pt->title);
        nn_free(pt->subtitle);
        for (size_t c = 0; pt->cells && c < pt->n_cells; c++)
            nn_free(pt->cells[c]);
        nn_free(pt->cells);
        for (int r = 0; pt->labels && r < pt->n_labels; r++)
            nn_free(pt->labels[r]);
        nn_free(pt->labels);
    }
    nn_free(L->texts);
    memset(L, 0, sizeof *L);
}

static int check_plot(const nn_plot *p, nn_err *err)
{
    if (!p || p->n_panels < 1 || !p->panels)
        return nn_fail(err, "plot: nothing to draw (no panels)");
    for (int i = 0; i < p->n_panels; i++) {
        const nn_plot_panel *q = &p->panels[i];
        if (q->n_rows < 1 || q->k < 1 || !q->cells || !q->row_labels)
            return nn_fail(err, "plot: panel %d has no cells (%d rows, k = %d)", i, q->n_rows,
                           q->k);
        if (q->n_rows > 4096 || q->k > 1024)
            return nn_fail(err, "plot: panel %d is too large (%d rows x %d columns)", i, q->n_rows,
                           q->k);
    }
    if (p->scale < 0 || p->scale > 8)
        return nn_fail(err, "plot: scale %g is outside (0, 8]", p->scale);
    return NN_OK;
}

static double pix(const nn_plot *p)
{
    return p->scale > 0 ? p->scale : 2.0;
}

/* A cell shows its token quoted ('␣named'); an empty token as (empty), since '' reads as a double
 * quote; a token without text as #id. */
static bool quoted(const nn_plot_cell *c)
{
    return c->text && *c->text;
}

static char *cell_body(const nn_plot_cell *c, nn_err *err)
{
    if (quoted(c))
        return visible(c->text, true, err);
    char buf[32];
    if (c->text)
        snprintf(buf, sizeof buf, "(empty)");
    else
        snprintf(buf, sizeof buf, "#%d", c->id);
    return nn_strdup(buf, err);
}

static int layout_compute(const nn_plot *p, typo *t, layout *L, nn_err *err)
{
    memset(L, 0, sizeof *L);
    if (check_plot(p, err))
        return NN_ERR;
    L->row_axis = p->row_axis ? p->row_axis : "layer";
    L->col_axis = p->col_axis ? p->col_axis : "rank";
    L->n_panels = p->n_panels;
    if (!(L->texts = nn_calloc((size_t)p->n_panels, sizeof *L->texts, err)))
        return NN_ERR;
    L->cols = p->columns > 0 ? p->columns : 3;
    if (L->cols > p->n_panels)
        L->cols = p->n_panels;
    int max_k = 0;
    double widest_cell = 0, widest_label = 0;
    bool any_title = false, any_sub = false;
    char *body = NULL;
    for (int i = 0; i < p->n_panels; i++) {
        const nn_plot_panel *q = &p->panels[i];
        max_k = q->k > max_k ? q->k : max_k;
        L->max_rows = q->n_rows > L->max_rows ? q->n_rows : L->max_rows;
        any_title |= q->title != NULL;
        any_sub |= q->subtitle != NULL;
        panel_text *pt = &L->texts[i];
        if (!(pt->labels = nn_calloc((size_t)q->n_rows, sizeof *pt->labels, err)))
            return NN_ERR;
        pt->n_labels = q->n_rows;
        for (int r = 0; r < q->n_rows; r++) {
            if (!(pt->labels[r] = visible(q->row_labels[r], false, err)))
                return NN_ERR;
            double w = text_w(t, F_TICK, pt->labels[r]);
            widest_label = w > widest_label ? w : widest_label;
        }
        for (int c = 0; c < q->n_rows * q->k; c++) {
            if (!(body = cell_body(&q->cells[c], err)))
                return NN_ERR;
            const char *quote = quoted(&q->cells[c]) ? "'" : "";
            sbuf b = {.err = err};
            sb_str(&b, quote);
            sb_str(&b, body);
            sb_str(&b, quote);
            char *s = sb_take(&b);
            if (!s) {
                nn_free(body);
                return NN_ERR;
            }
            double w = text_w(t, F_TOKEN, s);
            count_unknown(t, F_TOKEN, s);
            nn_free(s);
            nn_free(body);
            body = NULL;
            widest_cell = w > widest_cell ? w : widest_cell;
        }
    }
    L->cw = widest_cell + CELL_PAD;
    L->cw = L->cw < CELL_MIN_W ? CELL_MIN_W : L->cw > CELL_MAX_W ? CELL_MAX_W : L->cw;
    L->cw = ceil(L->cw);
    double axis_h = t->line_h[F_AXIS], tick_h = t->line_h[F_TICK];
    L->title_h = any_title ? t->line_h[F_PANEL] : 0;
    L->sub_h = any_sub ? t->line_h[F_SUB] : 0;
    L->head_h = (any_title || any_sub) ? ceil(L->title_h + L->sub_h + 6) : 0;
    L->hm_x = ceil(axis_h + 6 + widest_label + 6);
    L->panel_w = L->hm_x + max_k * L->cw;
    L->panel_h = L->head_h + L->max_rows * CELL_H + 4 + tick_h + 2 + axis_h;
    double title_line = p->title ? t->line_h[F_TITLE] : 0;
    L->top = MARGIN + (p->title ? ceil(title_line + 10) : 0);
    int grid_rows = (p->n_panels + L->cols - 1) / L->cols;
    double grid_w = L->cols * L->panel_w + (L->cols - 1) * GAP_X;
    double grid_h = grid_rows * L->panel_h + (grid_rows - 1) * GAP_Y;
    L->bar_x = MARGIN + grid_w + GAP_X;
    L->bar_y = L->top + L->head_h;
    L->bar_h = L->max_rows * CELL_H;
    if (L->bar_h < BAR_MIN_H)
        L->bar_h = BAR_MIN_H;
    double bar_labels = text_w(t, F_TICK, "0.0") + 6;
    L->W = ceil(L->bar_x + BAR_W + 4 + bar_labels + axis_h + MARGIN);
    double bottom = L->top + grid_h;
    if (L->bar_y + L->bar_h + tick_h / 2 > bottom)
        bottom = L->bar_y + L->bar_h + tick_h / 2;
    L->H = ceil(bottom + MARGIN);
    if (L->W * pix(p) > MAX_SIDE || L->H * pix(p) > MAX_SIDE)
        return nn_fail(err,
                       "plot: the picture would be %.0f x %.0f pixels, more than fits in one "
                       "image; plot fewer prompts or layers",
                       L->W * pix(p), L->H * pix(p));
    /* the strings drawn */
    if (p->title) {
        char *v = visible(p->title, false, err);
        if (!v)
            return NN_ERR;
        L->title = fit_text(t, F_TITLE, "", v, "", L->W - 2 * MARGIN, false, err);
        count_unknown(t, F_TITLE, v);
        nn_free(v);
        if (!L->title)
            return NN_ERR;
    }
    double cell_text_w = L->cw - CELL_PAD + 2;
    for (int i = 0; i < p->n_panels; i++) {
        const nn_plot_panel *q = &p->panels[i];
        panel_text *pt = &L->texts[i];
        /* a heading may run into the gap to the next panel, or in the last column over the
         * colour bar (which starts below the headings) but not its labels */
        double head_w = i % L->cols == L->cols - 1
                            ? L->bar_x + BAR_W - (MARGIN + (i % L->cols) * (L->panel_w + GAP_X))
                            : L->panel_w + GAP_X - 12;
        if (q->title) {
            char *v = visible(q->title, false, err);
            if (!v)
                return NN_ERR;
            count_unknown(t, F_PANEL, v);
            pt->title = fit_text(t, F_PANEL, "", v, "", head_w, true, err);
            nn_free(v);
            if (!pt->title)
                return NN_ERR;
        }
        if (q->subtitle) {
            char *v = visible(q->subtitle, false, err);
            if (!v)
                return NN_ERR;
            count_unknown(t, F_SUB, v);
            pt->subtitle = fit_text(t, F_SUB, "", v, "", head_w, false, err);
            nn_free(v);
            if (!pt->subtitle)
                return NN_ERR;
        }
        size_t n = (size_t)q->n_rows * (size_t)q->k;
        if (!(pt->cells = nn_calloc(n, sizeof *pt->cells, err)))
            return NN_ERR;
        pt->n_cells = n;
        for (size_t c = 0; c < n; c++) {
            if (!(body = cell_body(&q->cells[c], err)))
                return NN_ERR;
            const char *quote = quoted(&q->cells[c]) ? "'" : "";
            pt->cells[c] = fit_text(t, F_TOKEN, quote, body, quote, cell_text_w, false, err);
            nn_free(body);
            if (!pt->cells[c])
                return NN_ERR;
        }
    }
    L->unknown_glyphs = t->unknown_glyphs;
    return NN_OK;
}

/* Where panel i's top-left corner is. */
static void panel_origin(const layout *L, int i, double *x, double *y)
{
    *x = MARGIN + (i % L->cols) * (L->panel_w + GAP_X);
    *y = L->top + (i / L->cols) * (L->panel_h + GAP_Y);
}

/* Cell (row r, rank j) of panel i: row 0 at the bottom. */
static void cell_rect(const layout *L, const nn_plot_panel *q, int i, int r, int j, double *x,
                      double *y)
{
    double px, py;
    panel_origin(L, i, &px, &py);
    *x = px + L->hm_x + j * L->cw;
    *y = py + L->head_h + (q->n_rows - 1 - r) * CELL_H;
}

static void prob_label(float prob, char *buf, size_t n)
{
    snprintf(buf, n, "%.3f", (double)prob);
}

/* ---- PNG ----------------------------------------------------------------------------------------
 */

/* Draws s centred on (cx, cy) (rotated -90 degrees when vertical), or left/right-aligned at cx
 * for align -1/+1. */
static void draw_text(typo *t, int font, const char *s, double cx, double cy, int align,
                      bool vertical, double r, double g, double b)
{
    double w, h;
    text_size(t, font, s, &w, &h);
    cairo_t *cr = t->cr;
    cairo_save(cr);
    cairo_set_source_rgb(cr, r, g, b);
    cairo_translate(cr, cx, cy);
    if (vertical)
        cairo_rotate(cr, -M_PI / 2);
    double x = align < 0 ? 0 : align > 0 ? -w : -w / 2;
    cairo_move_to(cr, x, -h / 2);
    pango_cairo_update_layout(cr, t->layout);
    pango_cairo_show_layout(cr, t->layout);
    cairo_restore(cr);
}

static void draw_plot(const nn_plot *p, const layout *L, typo *t)
{
    cairo_t *cr = t->cr;
    const double ink = 0.13, soft = 0.35;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    if (L->title)
        draw_text(t, F_TITLE, L->title, MARGIN, MARGIN + t->line_h[F_TITLE] / 2, -1, false, ink,
                  ink, ink);
    char buf[32];
    for (int i = 0; i < p->n_panels; i++) {
        const nn_plot_panel *q = &p->panels[i];
        const panel_text *pt = &L->texts[i];
        double px, py;
        panel_origin(L, i, &px, &py);
        if (pt->title)
            draw_text(t, F_PANEL, pt->title, px, py + L->title_h / 2, -1, false, ink, ink, ink);
        if (pt->subtitle)
            draw_text(t, F_SUB, pt->subtitle, px, py + L->title_h + L->sub_h / 2, -1, false, soft,
                      soft, soft);
        double hm_top = py + L->head_h;
        double hm_h = q->n_rows * CELL_H;
        draw_text(t, F_AXIS, L->row_axis, px + t->line_h[F_AXIS] / 2, hm_top + hm_h / 2, 0, true,
                  ink, ink, ink);
        for (int r = 0; r < q->n_rows; r++) {
            double x, y;
            cell_rect(L, q, i, r, 0, &x, &y);
            draw_text(t, F_TICK, pt->labels[r], px + L->hm_x - 6, y + CELL_H / 2, 1, false, soft,
                      soft, soft);
            for (int j = 0; j < q->k; j++) {
                const nn_plot_cell *c = &q->cells[(size_t)r * q->k + j];
                uint8_t rgb[3];
                nn_plot_viridis(c->prob, rgb);
                cell_rect(L, q, i, r, j, &x, &y);
                cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
                cairo_rectangle(cr, x + CELL_INSET, y + CELL_INSET, L->cw - 2 * CELL_INSET,
                                CELL_H - 2 * CELL_INSET);
                cairo_fill(cr);
                double fg = dark_text_on(rgb) ? 0.08 : 1.0;
                draw_text(t, F_TOKEN, pt->cells[(size_t)r * q->k + j], x + L->cw / 2,
                          y + CELL_H * 0.40, 0, false, fg, fg, fg);
                prob_label(c->prob, buf, sizeof buf);
                draw_text(t, F_PROB, buf, x + L->cw / 2, y + CELL_H * 0.77, 0, false, fg, fg, fg);
            }
        }
        double below = hm_top + hm_h + 4;
        for (int j = 0; j < q->k; j++) {
            snprintf(buf, sizeof buf, "%d", j + 1);
            draw_text(t, F_TICK, buf, px + L->hm_x + (j + 0.5) * L->cw,
                      below + t->line_h[F_TICK] / 2, 0, false, soft, soft, soft);
        }
        draw_text(t, F_AXIS, L->col_axis, px + L->hm_x + q->k * L->cw / 2,
                  below + t->line_h[F_TICK] + 2 + t->line_h[F_AXIS] / 2, 0, false, ink, ink, ink);
    }
    /* colour bar: one line of pixels per step */
    int steps = (int)ceil(L->bar_h * pix(p));
    for (int s = 0; s < steps; s++) {
        uint8_t rgb[3];
        nn_plot_viridis(1.0 - (s + 0.5) / steps, rgb);
        cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
        cairo_rectangle(cr, L->bar_x, L->bar_y + L->bar_h * s / steps, BAR_W,
                        L->bar_h / steps + 0.01);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, soft, soft, soft);
    cairo_set_line_width(cr, 1);
    for (int s = 0; s <= 5; s++) {
        double y = L->bar_y + L->bar_h * (1 - s / 5.0);
        cairo_move_to(cr, L->bar_x + BAR_W, y);
        cairo_line_to(cr, L->bar_x + BAR_W + 3, y);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, "%.1f", s / 5.0);
        draw_text(t, F_TICK, buf, L->bar_x + BAR_W + 5, y, -1, false, soft, soft, soft);
    }
    draw_text(t, F_AXIS, "probability", L->W - MARGIN - t->line_h[F_AXIS] / 2,
              L->bar_y + L->bar_h / 2, 0, true, ink, ink, ink);
}

/* Checks the plot and lays it out with fonts measured on a 1x1 surface; on success the caller
 * owns t and L. */
static int measure(const nn_plot *p, const char *path, typo *t, layout *L, nn_err *err)
{
    if (check_plot(p, err))
        return NN_ERR;
    cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *probe_cr = cairo_create(probe);
    int rc = typo_init(t, probe_cr, err);
    cairo_destroy(probe_cr);
    cairo_surface_destroy(probe);
    if (rc)
        return NN_ERR;
    if (layout_compute(p, t, L, err)) {
        layout_free(L);
        typo_free(t);
        return nn_err_prefix(err, "%s", path);
    }
    return NN_OK;
}

int nn_plot_png(const nn_plot *p, const char *path, nn_plot_info *info, nn_err *err)
{
    /* measure first, then draw on a surface of the size measured */
    typo t;
    layout L;
    if (measure(p, path, &t, &L, err))
        return NN_ERR;
    typo_free(&t);
    int rc;
    double s = pix(p);
    int w = (int)ceil(L.W * s), h = (int)ceil(L.H * s);
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_t *cr = cairo_create(surface);
    rc = NN_OK;
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS)
        rc = nn_fail(err, "%s: cannot make a %d x %d image: %s", path, w, h,
                     cairo_status_to_string(cairo_status(cr)));
    if (rc == NN_OK) {
        cairo_scale(cr, s, s);
        rc = typo_init(&t, cr, err);
    }
    if (rc == NN_OK) {
        draw_plot(p, &L, &t);
        typo_free(&t);
        cairo_surface_flush(surface);
        cairo_status_t st = cairo_surface_write_to_png(surface, path);
        if (st != CAIRO_STATUS_SUCCESS)
            rc = nn_fail(err, "%s: cannot write the PNG: %s", path,
                         st == CAIRO_STATUS_WRITE_ERROR ? "write error (no such directory, or "
                                                          "no permission or space?)"
                                                        : cairo_status_to_string(st));
    }
    if (rc == NN_OK && info) {
        info->width = w;
        info->height = h;
        info->unknown_glyphs = L.unknown_glyphs;
    }
    cairo_destroy(cr);
    cairo_surface_destroy(surface);
    layout_free(&L);
    return rc;
}

/* ---- HTML ---------------------------------------------------------------------------------------
 */

static void svg_text(FILE *f, const char *cls, double x, double y, const char *anchor,
                     const char *fill, const char *transform, const char *s)
{
    fprintf(f, "<text class=\"%s\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"%s\"", cls, x, y, anchor);
    if (fill)
        fprintf(f, " fill=\"%s\"", fill);
    if (transform)
        fprintf(f, " transform=\"%s\"", transform);
    fputs(">", f);
    nn_html_put(f, s, NN_HTML_TEXT);
    fputs("</text>\n", f);
}

/* NN_ERR when a string could not be allocated (err says so). */
static int write_html(FILE *f, const nn_plot *p, const layout *L, typo *t, nn_err *err)
{
    char buf[64], tr[96];
    bool failed = false;
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"generator\" content=\"nnterp\">\n<title>",
          f);
    nn_html_put(f, L->title ? L->title : "nnterp top-k tokens", NN_HTML_TEXT);
    fputs("</title>\n<style>\n", f);
    fprintf(f,
            "body { margin: 0; background: #fff; }\n"
            "svg { display: block; font-family: %s; }\n"
            "text { dominant-baseline: central; white-space: pre; }\n"
            ".title { font-size: %gpx; font-weight: bold; fill: #212121; }\n"
            ".ptitle { font-size: %gpx; font-weight: bold; fill: #212121; }\n"
            ".sub { font-size: %gpx; fill: #595959; }\n"
            ".axis { font-size: %gpx; fill: #212121; }\n"
            ".tick { font-size: %gpx; fill: #595959; }\n"
            ".tok { font-size: %gpx; pointer-events: none; }\n"
            ".p { font-size: %gpx; pointer-events: none; }\n"
            ".cell:hover rect { stroke: #e8175d; stroke-width: 2px; }\n",
            CSS_FONTS, fonts[F_TITLE].px, fonts[F_PANEL].px, fonts[F_SUB].px, fonts[F_AXIS].px,
            fonts[F_TICK].px, fonts[F_TOKEN].px, fonts[F_PROB].px);
    fputs("</style>\n</head>\n<body>\n", f);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"",
            L->W, L->H, L->W, L->H);
    nn_html_put(f, L->title ? L->title : "top-k tokens", NN_HTML_TEXT);
    fputs("\">\n", f);
    /* the gradient, sampled finely enough that linear steps between stops are invisible */
    fputs("<defs><linearGradient id=\"viridis\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n", f);
    for (int s = 0; s <= 32; s++) {
        uint8_t rgb[3];
        nn_plot_viridis(s / 32.0, rgb);
        fprintf(f, "<stop offset=\"%.4f\" stop-color=\"#%02x%02x%02x\"/>\n", s / 32.0, rgb[0],
                rgb[1], rgb[2]);
    }
    fputs("</linearGradient></defs>\n", f);
    fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#fff\"/>\n", L->W, L->H);
    if (L->title)
        svg_text(f, "title", MARGIN, MARGIN + t->line_h[F_TITLE] / 2, "start", NULL, NULL,
                 L->title);
    for (int i = 0; i < p->n_panels; i++) {
        const nn_plot_panel *q = &p->panels[i];
        const panel_text *pt = &L->texts[i];
        double px, py;
        panel_origin(L, i, &px, &py);
        fprintf(f, "<g class=\"panel\" data-panel=\"%d\" data-rows=\"%d\" data-k=\"%d\">\n", i,
                q->n_rows, q->k);
        if (pt->title)
            svg_text(f, "ptitle", px, py + L->title_h / 2, "start", NULL, NULL, pt->title);
        if (pt->subtitle)
            svg_text(f, "sub", px, py + L->title_h + L->sub_h / 2, "start", NULL, NULL,
                     pt->subtitle);
        double hm_top = py + L->head_h;
        double hm_h = q->n_rows * CELL_H;
        double ax = px + t->line_h[F_AXIS] / 2, ay = hm_top + hm_h / 2;
        snprintf(tr, sizeof tr, "rotate(-90 %.2f %.2f)", ax, ay);
        svg_text(f, "axis", ax, ay, "middle", NULL, tr, L->row_axis);
        for (int r = 0; r < q->n_rows; r++) {
            double x, y;
            cell_rect(L, q, i, r, 0, &x, &y);
            const char *lab = pt->labels[r];
            svg_text(f, "tick", px + L->hm_x - 6, y + CELL_H / 2, "end", NULL, NULL, lab);
            for (int j = 0; j < q->k; j++) {
                const nn_plot_cell *c = &q->cells[(size_t)r * q->k + j];
                uint8_t rgb[3];
                nn_plot_viridis(c->prob, rgb);
                cell_rect(L, q, i, r, j, &x, &y);
                const char *fg = dark_text_on(rgb) ? "#141414" : "#ffffff";
                char *full = c->text ? nn_plot_token_text(c->text, err) : NULL;
                failed |= c->text && !full;
                fprintf(f,
                        "<g class=\"cell\" data-row=\"%d\" data-rank=\"%d\" data-id=\"%d\" "
                        "data-prob=\"%.9g\" data-label=\"",
                        r, j + 1, c->id, (double)c->prob);
                nn_html_put(f, lab, NN_HTML_TEXT);
                fputs("\" data-token=\"", f);
                nn_html_put(f, full ? full : "", NN_HTML_TEXT);
                fputs("\"><title>", f);
                nn_html_put(f, L->row_axis, NN_HTML_TEXT);
                fputs(" ", f);
                nn_html_put(f, lab, NN_HTML_TEXT);
                fprintf(f, ", %s %d\ntoken ", L->col_axis, j + 1);
                nn_html_put(f, full ? full : "(no text)", NN_HTML_TEXT);
                fprintf(f, " (id %d)\nprobability %.4f", c->id, (double)c->prob);
                nn_free(full);
                fprintf(f,
                        "</title><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                        "fill=\"#%02x%02x%02x\"/>",
                        x + CELL_INSET, y + CELL_INSET, L->cw - 2 * CELL_INSET,
                        CELL_H - 2 * CELL_INSET, rgb[0], rgb[1], rgb[2]);
                svg_text(f, "tok", x + L->cw / 2, y + CELL_H * 0.40, "middle", fg, NULL,
                         pt->cells[(size_t)r * q->k + j]);
                prob_label(c->prob, buf, sizeof buf);
                svg_text(f, "p", x + L->cw / 2, y + CELL_H * 0.77, "middle", fg, NULL, buf);
                fputs("</g>\n", f);
            }
        }
        double below = hm_top + hm_h + 4;
        for (int j = 0; j < q->k; j++) {
            snprintf(buf, sizeof buf, "%d", j + 1);
            svg_text(f, "tick", px + L->hm_x + (j + 0.5) * L->cw, below + t->line_h[F_TICK] / 2,
                     "middle", NULL, NULL, buf);
        }
        svg_text(f, "axis", px + L->hm_x + q->k * L->cw / 2,
                 below + t->line_h[F_TICK] + 2 + t->line_h[F_AXIS] / 2, "middle", NULL, NULL,
                 L->col_axis);
        fputs("</g>\n", f);
    }
    fprintf(f,
            "<g class=\"colorbar\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
            "fill=\"url(#viridis)\"/>\n",
            L->bar_x, L->bar_y, BAR_W, L->bar_h);
    for (int s = 0; s <= 5; s++) {
        double y = L->bar_y + L->bar_h * (1 - s / 5.0);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#595959\"/>\n",
                L->bar_x + BAR_W, y, L->bar_x + BAR_W + 3, y);
        snprintf(buf, sizeof buf, "%.1f", s / 5.0);
        svg_text(f, "tick", L->bar_x + BAR_W + 5, y, "start", NULL, NULL, buf);
    }
    double ax = L->W - MARGIN - t->line_h[F_AXIS] / 2, ay = L->bar_y + L->bar_h / 2;
    snprintf(tr, sizeof tr, "rotate(-90 %.2f %.2f)", ax, ay);
    svg_text(f, "axis", ax, ay, "middle", NULL, tr, "probability");
    fputs("</g>\n</svg>\n</body>\n</html>\n", f);
    return failed ? NN_ERR : NN_OK;
}

int nn_plot_html(const nn_plot *p, const char *path, nn_plot_info *info, nn_err *err)
{
    typo t;
    layout L;
    if (measure(p, path, &t, &L, err))
        return NN_ERR;
    int rc;
    FILE *f = fopen(path, "w");
    if (!f) {
        rc = nn_fail(err, "%s: cannot create: %s", path, strerror(errno));
    } else {
        rc = write_html(f, p, &L, &t, err);
        bool bad = ferror(f) != 0;
        if (fclose(f) != 0 || bad)
            rc = nn_fail(err, "%s: cannot write (disk full?)", path);
        if (rc)
            remove(path);
    }
    if (rc == NN_OK && info) {
        info->width = (int)L.W;
        info->height = (int)L.H;
        info->unknown_glyphs = L.unknown_glyphs;
    }
    typo_free(&t);
    layout_free(&L);
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    if (n < m)
        return false;
    for (size_t i = 0; i < m; i++) {
        char c = s[n - m + i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != suffix[i])
            return false;
    }
    return true;
}

bool nn_plot_format_known(const char *path)
{
    return ends_with(path, ".png") || ends_with(path, ".html") || ends_with(path, ".htm");
}

int nn_plot_write(const nn_plot *p, const char *path, nn_plot_info *info, nn_err *err)
{
    if (ends_with(path, ".png"))
        return nn_plot_png(p, path, info, err);
    if (ends_with(path, ".html") || ends_with(path, ".htm"))
        return nn_plot_html(p, path, info, err);
    return nn_fail(err, "%s: the plot's name must end in .png or .html", path);
}
