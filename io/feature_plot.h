/* A sparse-autoencoder feature's page (docs/sae.md): its figures (density, firing count, max,
 * mean), the histogram of its activations, and its top-activating contexts with every token shaded
 * by the feature's activation there. As a PNG (cairo + pango) or a self-contained HTML page
 * (inline SVG and CSS, nothing fetched). Plain data in: the caller decodes the tokens. */
#ifndef NN_FEATURE_PLOT_H
#define NN_FEATURE_PLOT_H

#include "nn_base.h"

typedef struct nn_feature_example {
    int prompt, position; /* the token that fires */
    float value;
    int n_tokens;             /* the context shown */
    const char *const *texts; /* [n_tokens] decoded tokens */
    const float *acts;        /* [n_tokens] the feature's activation at each */
    int highlight;            /* index of the firing token in the context */
} nn_feature_example;

typedef struct nn_feature_page {
    const char *title; /* "feature 167 of sae/1 (blocks.2.hook_resid_post)" */
    int64_t count, n_tokens;
    double density;
    float max, mean;
    const int64_t *hist; /* [n_bins] over (0, hist_max] */
    int n_bins;
    float hist_max;
    const nn_feature_example *examples;
    int n_examples;
} nn_feature_page;

/* By PATH's extension: .png, .html or .htm. */
int nn_feature_page_write(const nn_feature_page *p, const char *path, nn_err *err);

#endif
