/* io/plot on synthetic tables: the viridis scale, how token text is made visible, and the PNG read
 * back pixel by pixel (size, each cell's colour, text drawn in every cell, colour emoji and CJK
 * found in the fonts, title and colour bar); the HTML page's cells; failures of every allocation;
 * and the read-only HDF5 access the plot command uses. */
#define _GNU_SOURCE
#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5file.h"
#include "nn_test.h"
#include "plot.h"

#define ROWS 5
#define K 4

static const char *tokens[ROWS * K] = {
    " named", "😀",    "東京", "\n",    "\t",   " ", "Lily", " a very long token that goes on",
    "\xff",   "é",    "<s>",  "  two", "a\\n", "Ω", "🚀",    "한국",
    NULL,     "\r\n", "",     "x"};

static void check_viridis(void)
{
    uint8_t c[3];
    /* matplotlib's table at its ends and middle: #440154, #21918c, #fde725 */
    const struct {
        double t;
        int rgb[3];
    } anchors[] = {{0, {68, 1, 84}}, {128 / 255.0, {33, 145, 140}}, {1, {253, 231, 37}}};
    for (int i = 0; i < 3; i++) {
        nn_plot_viridis(anchors[i].t, c);
        for (int k = 0; k < 3; k++)
            CHECK(abs(c[k] - anchors[i].rgb[k]) <= 1, "viridis(%g)[%d] = %d, want %d", anchors[i].t,
                  k, c[k], anchors[i].rgb[k]);
    }
    nn_plot_viridis(-1, c);
    CHECK(c[0] == 68 && c[2] == 84, "viridis clamps below 0");
    nn_plot_viridis(NAN, c);
    CHECK(c[0] == 68 && c[2] == 84, "viridis(NaN) is viridis(0)");
    nn_plot_viridis(7, c);
    CHECK(c[0] == 253 && c[1] == 231, "viridis clamps above 1");
    /* perceptually ordered: luminance rises monotonically with t */
    double last = -1;
    int rises = 1;
    for (int i = 0; i <= 255; i++) {
        nn_plot_viridis(i / 255.0, c);
        double l = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        rises &= l > last - 0.5;
        last = l;
    }
    CHECK(rises, "viridis luminance rises with t");
}

static void check_token_text(void)
{
    const struct {
        const char *in, *out;
    } cases[] = {{" named", "'\xe2\x90\xa3named'"},
                 {"\n", "'\\n'"},
                 {"\t", "'\\t'"},
                 {"\r", "'\\r'"},
                 {"\x01", "'\\x01'"},
                 {"\xff\xfe", "'\\xff\\xfe'"},
                 {"\xe6\x9d", "'\\xe6\\x9d'"}, /* a cut UTF-8 sequence */
                 {"a\\n", "'a\\\\n'"},
                 {"東京", "'東京'"},
                 {"😀", "'😀'"},
                 {"", "''"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_err err;
        char *s = nn_plot_token_text(cases[i].in, &err);
        CHECK(s && !strcmp(s, cases[i].out), "token text of case %zu: '%s', want '%s'", i,
              s ? s : "(null)", cases[i].out);
        nn_free(s);
    }
}

static void make_plot(nn_plot *p, nn_plot_panel panels[2], nn_plot_cell cells[ROWS * K],
                      const char *labels[ROWS])
{
    static char label_buf[ROWS][8];
    for (int r = 0; r < ROWS; r++) {
        snprintf(label_buf[r], sizeof label_buf[r], "%d", r);
        labels[r] = label_buf[r];
    }
    for (int i = 0; i < ROWS * K; i++)
        /* distinct colours, all at most 0.6 (viridis stays green-blue there: no yellow) */
        cells[i] = (nn_plot_cell){.text = tokens[i], .id = 100 + i, .prob = 0.6f * i / (ROWS * K)};
    panels[0] = (nn_plot_panel){.title = "Once upon a time 😀 東京\nnext line",
                                .subtitle = "position 3, after '\xe2\x90\xa3named'",
                                .n_rows = ROWS,
                                .k = K,
                                .row_labels = labels,
                                .cells = cells};
    panels[1] = panels[0];
    panels[1].title = NULL;
    panels[1].n_rows = 2; /* fewer rows: drawn at the bottom of its panel */
    *p = (nn_plot){.title = "Logit lens test", .panels = panels, .n_panels = 2, .scale = 1};
}

static uint32_t pixel(cairo_surface_t *s, int x, int y)
{
    const unsigned char *d = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    return *(const uint32_t *)(d + (size_t)y * stride + (size_t)x * 4) & 0xffffff;
}

static uint32_t rgb_of(float prob)
{
    uint8_t c[3];
    nn_plot_viridis(prob, c);
    return (uint32_t)c[0] << 16 | (uint32_t)c[1] << 8 | c[2];
}

/* Within 3 per channel. */
static bool near(uint32_t a, uint32_t b)
{
    for (int sh = 0; sh < 24; sh += 8)
        if (abs((int)((a >> sh) & 255) - (int)((b >> sh) & 255)) > 3)
            return false;
    return true;
}

/* Counts pixels of exactly colour c, and those that are emoji yellow (no viridis colour up to 0.6,
 * nor black or white text blended over one, is). */
static void census(cairo_surface_t *s, uint32_t c, long *exact, long *yellow)
{
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    *exact = *yellow = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t v = pixel(s, x, y);
            int r = v >> 16, g = (v >> 8) & 255, b = v & 255;
            *exact += v == c;
            *yellow += r > 200 && g > 120 && g < 225 && b < 110;
        }
}

static void check_png(const char *dir)
{
    nn_plot p;
    nn_plot_panel panels[2];
    nn_plot_cell cells[ROWS * K];
    const char *labels[ROWS];
    make_plot(&p, panels, cells, labels);
    char path[512];
    snprintf(path, sizeof path, "%s/t.png", dir);
    nn_err err = {{0}};
    nn_plot_info info = {0};
    CHECK_OK(nn_plot_write(&p, path, &info, &err), &err);
    CHECK(info.unknown_glyphs == 0,
          "%d characters found no font (install fonts-dejavu-core, fonts-noto-cjk, "
          "fonts-noto-color-emoji)",
          info.unknown_glyphs);
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    CHECK(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS, "the PNG decodes");
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return;
    }
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    CHECK(w == info.width && h == info.height, "PNG is %dx%d, info says %dx%d", w, h, info.width,
          info.height);
    CHECK(w > 400 && h > 200 && w < 4000 && h < 2000, "plausible size %dx%d", w, h);
    /* every cell's colour is in the picture: at least a cell's area less its text, per cell */
    long yellow = 0;
    for (int i = 0; i < ROWS * K; i++) {
        long exact;
        census(s, rgb_of(cells[i].prob), &exact, &yellow);
        int copies = i < 2 * K ? 2 : 1; /* the second panel repeats rows 0 and 1 */
        CHECK(exact >= copies * 900L, "cell %d's colour #%06x covers only %ld pixels", i,
              rgb_of(cells[i].prob), exact);
    }
    CHECK(yellow > 30, "the colour emoji drew (%ld emoji-yellow pixels)", yellow);
    /* text: the heatmap is not only flat colour (tokens and probabilities are drawn on it) */
    long dark = 0, white = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t v = pixel(s, x, y);
            dark += v == 0 || ((v >> 16) < 60 && ((v >> 8) & 255) < 60 && (v & 255) < 60);
            white += v == 0xffffff;
        }
    CHECK(dark > 800, "title and labels drawn in dark ink (%ld pixels)", dark);
    CHECK(white > w * h / 10, "a white background (%ld pixels)", white);
    /* the top-left corner region holds the title: dark pixels within the first 40 rows */
    long title_ink = 0;
    for (int y = 0; y < 40 && y < h; y++)
        for (int x = 0; x < 300 && x < w; x++)
            title_ink += pixel(s, x, y) != 0xffffff;
    CHECK(title_ink > 200, "the title is drawn (%ld pixels)", title_ink);
    /* the colour bar: a column near the right edge runs from yellow (top) to purple (bottom) */
    int found = 0;
    for (int x = w - 1; x > w / 2 && !found; x--) {
        int top = -1, bottom = -1;
        for (int y = 0; y < h; y++) {
            uint32_t v = pixel(s, x, y);
            if (near(v, rgb_of(1)) && top < 0)
                top = y;
            if (near(v, rgb_of(0)))
                bottom = y;
        }
        found = top >= 0 && bottom > top + 100;
    }
    CHECK(found, "a colour bar from viridis(1) down to viridis(0)");
    cairo_surface_destroy(s);

    /* scale 2 doubles the pixels */
    p.scale = 2;
    nn_plot_info info2;
    CHECK_OK(nn_plot_png(&p, path, &info2, &err), &err);
    CHECK(abs(info2.width - 2 * info.width) <= 2 && abs(info2.height - 2 * info.height) <= 2,
          "scale 2: %dx%d", info2.width, info2.height);
}

static void check_html(const char *dir)
{
    nn_plot p;
    nn_plot_panel panels[2];
    nn_plot_cell cells[ROWS * K];
    const char *labels[ROWS];
    make_plot(&p, panels, cells, labels);
    char path[512];
    snprintf(path, sizeof path, "%s/t.html", dir);
    nn_err err = {{0}};
    CHECK_OK(nn_plot_write(&p, path, NULL, &err), &err);
    char *html = NULL;
    size_t size = 0;
    CHECK_OK(nn_file_read(path, 1 << 24, &html, &size, &err), &err);
    if (!html)
        return;
    int n_cells = 0;
    for (const char *q = html; (q = strstr(q, "<g class=\"cell\"")); q++)
        n_cells++;
    CHECK(n_cells == (ROWS + 2) * K, "%d cells in the page, want %d", n_cells, (ROWS + 2) * K);
    char want[96];
    snprintf(want, sizeof want, "data-id=\"101\" data-prob=\"%.9g\"", (double)cells[1].prob);
    CHECK(strstr(html, want) != NULL, "a cell's id and float32 probability, exactly");
    CHECK(strstr(html, "data-token=\"'\xe2\x90\xa3named'\"") != NULL,
          "a leading space as \xe2\x90\xa3");
    CHECK(strstr(html, "data-token=\"'\\n'\"") != NULL, "a newline as \\n");
    CHECK(strstr(html, "data-token=\"'&lt;s&gt;'\"") != NULL, "markup escaped");
    CHECK(strstr(html, "'東京'") && strstr(html, "'😀'"), "CJK and emoji as UTF-8");
    CHECK(strstr(html, "token #116") == NULL && strstr(html, ">#116<") != NULL,
          "a cell without text shows its id");
    CHECK(strstr(html, "<title>layer 3, rank 2\ntoken") != NULL, "a hover title per cell");
    CHECK(strstr(html, ">(empty)</text>") && strstr(html, "data-token=\"''\""),
          "an empty token reads (empty) in its cell, '' on hover");
    CHECK(strstr(html, "long\xe2\x90\xa3token\xe2\x90\xa3that\xe2\x90\xa3goes\xe2\x90\xa3on'") &&
              strstr(html, "\xe2\x80\xa6'</text>") != NULL,
          "a long token is cut in its cell and whole on hover");
    CHECK(!strstr(html, "<script") && !strstr(html, "<link") && !strstr(html, "https:") &&
              !strstr(html, "@import"),
          "self-contained: no scripts, links or fetches");
    CHECK(strstr(html, "Once upon a time 😀 東京\\nnext line") != NULL,
          "a title's newline made visible");
    nn_free(html);
}

static void check_errors(const char *dir)
{
    nn_plot p;
    nn_plot_panel panels[2];
    nn_plot_cell cells[ROWS * K];
    const char *labels[ROWS];
    make_plot(&p, panels, cells, labels);
    nn_err err = {{0}};
    char path[512];
    snprintf(path, sizeof path, "%s/t.svg", dir);
    CHECK(nn_plot_write(&p, path, NULL, &err) == NN_ERR && strstr(err.msg, ".png or .html"),
          "unknown extension: %s", err.msg);
    CHECK(nn_plot_format_known("a/B.PNG") && nn_plot_format_known("x.htm") &&
              !nn_plot_format_known("x.pdf"),
          "formats by extension");
    CHECK(nn_plot_write(&p, "/nonexistent-dir/x.png", NULL, &err) == NN_ERR &&
              strstr(err.msg, "/nonexistent-dir/x.png"),
          "unwritable PNG: %s", err.msg);
    CHECK(nn_plot_write(&p, "/nonexistent-dir/x.html", NULL, &err) == NN_ERR &&
              strstr(err.msg, "/nonexistent-dir/x.html"),
          "unwritable HTML: %s", err.msg);
    nn_plot empty = p;
    empty.n_panels = 0;
    snprintf(path, sizeof path, "%s/e.png", dir);
    CHECK(nn_plot_write(&empty, path, NULL, &err) == NN_ERR && access(path, F_OK) != 0,
          "no panels: an error and no file");
    /* every allocation failing in turn: an error, never a crash or a leak (ASan) */
    for (const char *ext = "png"; ext; ext = !strcmp(ext, "png") ? "html" : NULL) {
        snprintf(path, sizeof path, "%s/f.%s", dir, ext);
        int failed = 0, n;
        for (n = 1; n < 2000; n++) {
            nn_alloc_fail_after(n);
            int rc = nn_plot_write(&p, path, NULL, &err);
            nn_alloc_fail_after(0);
            if (rc == NN_OK)
                break;
            failed++;
        }
        CHECK(failed > 10 && n < 2000, "%s: %d allocation failures reported, then success", ext,
              failed);
    }
}

static void check_h5_read(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/s.h5", dir);
    nn_err err = {{0}};
    nn_h5file *f = NULL;
    float probs[6] = {0.5f, 0.25f, 0.125f, 1, 0, 0.75f};
    int32_t ids[2] = {7, 9};
    uint64_t dims[2] = {2, 3}, n2 = 2;
    CHECK_OK(nn_h5_create(path, &f, &err), &err);
    CHECK_OK(nn_h5_write(f, "/lens/top_probs", NN_H5_F32, 2, dims, probs, &err), &err);
    CHECK_OK(nn_h5_write(f, "/lens/top_ids", NN_H5_I32, 1, &n2, ids, &err), &err);
    CHECK_OK(nn_h5_attr_string(f, "/", "format", "nnterp-lens", &err), &err);
    CHECK_OK(nn_h5_commit(f, &err), &err);
    CHECK_OK(nn_h5_open_read(path, &f, &err), &err);
    if (!f)
        return;
    nn_h5_type type;
    int rank = 0;
    uint64_t d[8] = {0};
    CHECK_OK(nn_h5_shape(f, "/lens/top_probs", &type, &rank, d, &err), &err);
    CHECK(type == NN_H5_F32 && rank == 2 && d[0] == 2 && d[1] == 3, "shape of a float dataset");
    float back[6] = {0};
    CHECK_OK(nn_h5_read(f, "/lens/top_probs", back, sizeof back, &err), &err);
    CHECK(!memcmp(back, probs, sizeof probs), "float32 reads back exactly");
    CHECK(nn_h5_exists(f, "/lens/top_ids") && nn_h5_exists(f, "/lens") &&
              !nn_h5_exists(f, "/lens/nope") && !nn_h5_exists(f, "/nope/deeper"),
          "exists");
    char *fmt = nn_h5_get_attr_string(f, "/", "format", &err);
    CHECK(fmt && !strcmp(fmt, "nnterp-lens"), "attribute");
    nn_free(fmt);
    nn_h5_free(f);
    CHECK(access(path, F_OK) == 0, "closing a file opened to read leaves it in place");
    CHECK(nn_h5_open_read("/nonexistent.h5", &f, &err) == NN_ERR && !f, "missing file");
}

int main(void)
{
    char dir[] = "/tmp/nnterp-test-plot-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    check_viridis();
    check_token_text();
    check_png(dir);
    check_html(dir);
    check_errors(dir);
    check_h5_read(dir);
    char cmd[600];
    if (getenv("NNTERP_KEEP_TEST_FILES")) { /* to look at the pictures */
        fprintf(stderr, "pictures kept in %s\n", dir);
        return nn_test_finish("plot");
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return nn_test_finish("plot");
}
