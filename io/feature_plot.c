/* A feature's page as PNG (cairo + pango) or self-contained HTML. See feature_plot.h. */
#include "feature_plot.h"

#include <cairo.h>
#include <math.h>
#include <pango/pangocairo.h>
#include <stdio.h>
#include <string.h>

#include "html.h"

enum { PAGE_W = 960, HIST_X = 60, HIST_Y = 78, HIST_W = 860, HIST_H = 150, LINE_H = 26 };
#define EX_Y (HIST_Y + HIST_H + 56)
#define LABEL_W 150

/* The shade of an activation: orange whose opacity is the activation over the feature's max. */
static double shade(const nn_feature_page *p, float v)
{
    double a = p->max > 0 ? (double)v / (double)p->max : 0.0;
    return a < 0 ? 0 : a > 1 ? 1 : a;
}

/* ---- HTML ----
 */

static int64_t hist_peak(const nn_feature_page *p)
{
    int64_t peak = 1;
    for (int i = 0; i < p->n_bins; i++)
        peak = p->hist[i] > peak ? p->hist[i] : peak;
    return peak;
}

static int write_html(const nn_feature_page *p, const char *path, nn_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return nn_fail(err, "%s: cannot write", path);
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    nn_html_put(f, p->title, NN_HTML_TOKEN);
    fprintf(f,
            "</title>\n<style>body{font-family:sans-serif;margin:16px;color:#222}"
            ".ex{font-family:monospace;font-size:14px;line-height:%dpx;white-space:nowrap}"
            ".lab{display:inline-block;width:%dpx;color:#555}"
            ".t{padding:1px 0}.hi{outline:1px solid #000}</style></head><body>\n",
            LINE_H, LABEL_W);
    fprintf(f, "<h3>");
    nn_html_put(f, p->title, NN_HTML_TOKEN);
    fprintf(f,
            "</h3>\n<p>fires on %lld of %lld tokens (density %.3g); max %.4g, mean when "
            "firing %.4g</p>\n",
            (long long)p->count, (long long)p->n_tokens, p->density, (double)p->max,
            (double)p->mean);
    int64_t peak = hist_peak(p);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">"
            "<rect x=\"%d\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n",
            PAGE_W, HIST_H + 30, HIST_X, HIST_W, HIST_H);
    double bw = (double)HIST_W / (p->n_bins ? p->n_bins : 1);
    for (int i = 0; i < p->n_bins; i++) {
        double h = (double)HIST_H * (double)p->hist[i] / (double)peak;
        fprintf(f,
                "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#e07020\">"
                "<title>(%.4g, %.4g]: %lld tokens</title></rect>\n",
                HIST_X + i * bw, HIST_H - h, bw * 0.9, h, (double)p->hist_max * i / p->n_bins,
                (double)p->hist_max * (i + 1) / p->n_bins, (long long)p->hist[i]);
    }
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" font-size=\"12\">0</text>"
            "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\">%.4g</text>"
            "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">activation "
            "(tokens where it fires; peak bin %lld)</text></svg>\n",
            HIST_X, HIST_H + 16, HIST_X + HIST_W, HIST_H + 16, (double)p->hist_max,
            HIST_X + HIST_W / 2, HIST_H + 28, (long long)peak);
    fprintf(f, "<h4>top-activating contexts</h4>\n");
    for (int e = 0; e < p->n_examples; e++) {
        const nn_feature_example *x = &p->examples[e];
        fprintf(f, "<div class=\"ex\"><span class=\"lab\">%.3f p%d:%d</span>", (double)x->value,
                x->prompt, x->position);
        for (int t = 0; t < x->n_tokens; t++) {
            fprintf(f,
                    "<span class=\"t%s\" style=\"background:rgba(224,112,32,%.3f)\" "
                    "title=\"%.4g\">",
                    t == x->highlight ? " hi" : "", shade(p, x->acts[t]), (double)x->acts[t]);
            nn_html_put(f, x->texts[t], NN_HTML_TOKEN);
            fprintf(f, "</span>");
        }
        fprintf(f, "</div>\n");
    }
    fprintf(f, "</body></html>\n");
    if (fclose(f))
        return nn_fail(err, "%s: write failed", path);
    return NN_OK;
}

/* ---- PNG ----
 */

static void text_at(cairo_t *cr, PangoLayout *layout, const char *s, double x, double y,
                    double *width)
{
    pango_layout_set_text(layout, s, -1);
    int w, h;
    pango_layout_get_pixel_size(layout, &w, &h);
    if (width)
        *width = w;
    cairo_move_to(cr, x, y);
    pango_cairo_show_layout(cr, layout);
}

static int write_png(const nn_feature_page *p, const char *path, nn_err *err)
{
    const double scale = 2.0;
    int height = EX_Y + LINE_H * (p->n_examples + 1);
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)(PAGE_W * scale),
                                                     (int)(height * scale));
    if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(sf);
        return nn_fail(err, "%s: cannot make a %d x %d image", path, PAGE_W, height);
    }
    cairo_t *cr = cairo_create(sf);
    cairo_scale(cr, scale, scale);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    PangoLayout *layout = pango_cairo_create_layout(cr);
    PangoFontDescription *big = pango_font_description_from_string("Sans Bold 13");
    PangoFontDescription *small = pango_font_description_from_string("Sans 10");
    PangoFontDescription *mono = pango_font_description_from_string("Monospace 10");
    cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
    pango_layout_set_font_description(layout, big);
    text_at(cr, layout, p->title ? p->title : "", 16, 10, NULL);
    pango_layout_set_font_description(layout, small);
    char line[256];
    snprintf(line, sizeof line,
             "fires on %lld of %lld tokens (density %.3g); max %.4g, mean when firing %.4g",
             (long long)p->count, (long long)p->n_tokens, p->density, (double)p->max,
             (double)p->mean);
    text_at(cr, layout, line, 16, 38, NULL);
    /* histogram */
    int64_t peak = hist_peak(p);
    double bw = (double)HIST_W / (p->n_bins ? p->n_bins : 1);
    cairo_set_source_rgb(cr, 224 / 255.0, 112 / 255.0, 32 / 255.0);
    for (int i = 0; i < p->n_bins; i++) {
        double h = (double)HIST_H * (double)p->hist[i] / (double)peak;
        cairo_rectangle(cr, HIST_X + i * bw, HIST_Y + HIST_H - h, bw * 0.9, h);
    }
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, HIST_X + 0.5, HIST_Y + 0.5, HIST_W, HIST_H);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
    text_at(cr, layout, "0", HIST_X, HIST_Y + HIST_H + 4, NULL);
    snprintf(line, sizeof line, "%.4g", (double)p->hist_max);
    text_at(cr, layout, line, HIST_X + HIST_W - 40, HIST_Y + HIST_H + 4, NULL);
    snprintf(line, sizeof line, "activation (tokens where it fires; peak bin %lld)",
             (long long)peak);
    text_at(cr, layout, line, HIST_X + HIST_W / 2 - 140, HIST_Y + HIST_H + 20, NULL);
    /* contexts */
    for (int e = 0; e < p->n_examples; e++) {
        const nn_feature_example *x = &p->examples[e];
        double y = EX_Y + LINE_H * e;
        pango_layout_set_font_description(layout, small);
        cairo_set_source_rgb(cr, 0.33, 0.33, 0.33);
        snprintf(line, sizeof line, "%.3f p%d:%d", (double)x->value, x->prompt, x->position);
        text_at(cr, layout, line, 16, y + 4, NULL);
        pango_layout_set_font_description(layout, mono);
        double cx = 16 + LABEL_W;
        for (int t = 0; t < x->n_tokens && cx < PAGE_W - 10; t++) {
            const char *s = x->texts[t] ? x->texts[t] : "";
            pango_layout_set_text(layout, s, -1);
            int w, h;
            pango_layout_get_pixel_size(layout, &w, &h);
            double a = shade(p, x->acts[t]);
            cairo_set_source_rgb(cr, 1 - a * (1 - 224 / 255.0), 1 - a * (1 - 112 / 255.0),
                                 1 - a * (1 - 32 / 255.0));
            cairo_rectangle(cr, cx, y + 2, w, LINE_H - 4);
            cairo_fill(cr);
            if (t == x->highlight) {
                cairo_set_source_rgb(cr, 0, 0, 0);
                cairo_rectangle(cr, cx + 0.5, y + 2.5, w - 1, LINE_H - 5);
                cairo_stroke(cr);
            }
            cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
            cairo_move_to(cr, cx, y + 4);
            pango_cairo_show_layout(cr, layout);
            cx += w;
        }
    }
    pango_font_description_free(big);
    pango_font_description_free(small);
    pango_font_description_free(mono);
    g_object_unref(layout);
    cairo_destroy(cr);
    cairo_status_t st = cairo_surface_write_to_png(sf, path);
    cairo_surface_destroy(sf);
    if (st != CAIRO_STATUS_SUCCESS)
        return nn_fail(err, "%s: cannot write the PNG (%s)", path, cairo_status_to_string(st));
    return NN_OK;
}

int nn_feature_page_write(const nn_feature_page *p, const char *path, nn_err *err)
{
    const char *dot = strrchr(path, '.');
    if (dot && !strcmp(dot, ".png"))
        return write_png(p, path, err);
    if (dot && (!strcmp(dot, ".html") || !strcmp(dot, ".htm")))
        return write_html(p, path, err);
    return nn_fail(err, "%s: the page is written as .png or .html", path);
}
