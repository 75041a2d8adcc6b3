/* PNG pictures of attention (written by png.c): per-layer attention maps,
 * filmstrips over training, the Q/K gradient balance over training, and the
 * A | B | |A-B| comparison. Everything is drawn in the project (its own
 * bitmap font and colour maps); files are written atomically (temp + rename)
 * so a running job can be looked at any time. */
#ifndef QK_HEATMAP_H
#define QK_HEATMAP_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* One layer's attention on a probe: NH panels in a grid, panel h the T x T
 * map att[h] (rows = queries, columns = keys; weights in 0..1, viridis; the
 * masked future above the diagonal in a neutral colour), at least 8 px per
 * cell, titled "L{layer} H{h}", rows and columns labelled with the probe's
 * characters chars[0..T-1] (code points; space, newline, tab and non-ASCII
 * characters drawn as readable glyphs), and a colour bar 0..1. The picture,
 * 3 width bytes a row of HeatmapGrid's size, is drawn in mem when it fits
 * there png_lead bytes in (png.h), and the encoder filters it in place; else
 * on the heap ({NULL, 0}: always). The encoder's other buffers go in what mem
 * has left after the picture (all of it when the picture is on the heap)
 * while they fit. */
int heatmap_write_layer(const char *path, const float *att, int NH, int T,
                        const uint32_t *chars, int layer, Span mem, Error *err);

/* The grid of panels heatmap_write_layer draws, for readers of its pictures
 * (the report page cuts one head's panel out of layer_L.png): the picture's
 * width and height in px, the panels' size (title, labels and cells) and
 * pitch, and heatmap_layer_panel's top-left corner of head h's panel. */
typedef struct {
    size_t cols, rows, T;
    size_t panel_w, panel_h, pitch_x, pitch_y;
    size_t bar_h;
    size_t width, height;
} HeatmapGrid;

HeatmapGrid heatmap_layer_grid(int NH, int T);
void heatmap_layer_panel(const HeatmapGrid *g, int h, size_t *x, size_t *y);

/* Filmstrip of one layer: row h = head h, column s = its attention map at
 * steps[s] (maps[s] points to [NH, T, T]); columns labelled with the step,
 * rows with "H{h}", a colour bar. Drawn in mem when it fits, as above. */
int heatmap_write_filmstrip(const char *path, const float *const *maps, const int *steps,
                            int n_steps, int NH, int T, int layer, Span mem, Error *err);

/* Q/K balance over training: vals[rows * cols], row r labelled row_labels[r]
 * (e.g. "L0 H1"), the columns equal runs of the steps 1 .. last_step;
 * value = log2(gq_norm / gk_norm), diverging colour map centred at 0 (red:
 * query side larger, blue: key side larger), symmetric range +-max(|v|) (at
 * least 0.25), NAN drawn as the neutral colour; a step axis and a labelled
 * colour scale. The grid is HEATMAP_BALANCE_COLS px wide whatever cols is, so
 * a short run reads as well as a long one; more columns than that are not
 * told apart. Drawn in mem when it fits, as heatmap_write_layer's picture. */
#define HEATMAP_BALANCE_COLS 480
int heatmap_write_balance(const char *path, const float *vals, int rows, int cols,
                          const char *const *row_labels, int last_step, Span mem, Error *err);

/* Comparison of one layer on the same text: for each head a row of three
 * panels A | B | |A - B| (same colour map 0..1 for all three), labelled like
 * heatmap_write_layer, titles "L{l} H{h} A", "... B", "... |A-B|". */
int heatmap_write_compare(const char *path, const float *att_a, const float *att_b, int NH,
                          int T, const uint32_t *chars, int layer, Error *err);

/* A table of values in 0..1 (vals[rows * cols]): per cell a viridis swatch
 * and the value printed under it, column labels above, row labels left, a
 * title; NAN cells neutral and "-". */
int heatmap_write_table(const char *path, const char *title, const float *vals, int rows,
                        int cols, const char *const *row_labels, const char *const *col_labels,
                        Error *err);

/* The neutral colour (0xRRGGBB) of masked cells and of NAN balance values: a
 * light grey, far from every viridis colour. */
#define HEATMAP_MASK_RGB 0xD9D9D9u

/* The colour of v on viridis (v clamped to 0..1, NAN taken as 0): linear in
 * sRGB between matplotlib's viridis at v = 0, 0.1, ..., 1; exactly #440154 at
 * 0 and #FDE725 at 1. */
void heatmap_viridis(float v, uint8_t rgb[3]);

#endif
