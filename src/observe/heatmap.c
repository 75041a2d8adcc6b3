/* PNG pictures of attention, drawn pixel by pixel into an RGB buffer and
 * written as PNG files by png.c.
 *
 * Layout in px (the constants below; W(s) = 6 * strlen(s) - 1 is the width of
 * text s). A colour bar's top row is the map's colour at 1, its bottom row at
 * 0; its labels sit 4 px right of it, so a bar takes 14 + 4 + W(widest label).
 *
 * Panel pictures: heatmap_write_layer puts head h in column h % C, row h / C
 * of a grid of C = ceil(sqrt(NH)) columns and R = ceil(NH / C) rows;
 * heatmap_write_compare puts A, B, |A-B| of head h in columns 0, 1, 2 of row
 * h (C = 3, R = NH).
 *   cell e = 10 px when 10 T <= 640, else max(1, floor(640 / T)); map side
 *   N = T e; a key's glyph above its column and a query's left of its row, for
 *   every ceil(10 / e)-th position
 *   pitch_x = 12 + max(N, 84) + 14      pitch_y = 14 + 12 + N + 14
 *   panel (c, r): title at (10 + c pitch_x + 12, 10 + r pitch_y + 1); cell
 *     (query i, key j), e x e, at x = 10 + c pitch_x + 12 + e j,
 *                                 y = 10 + r pitch_y + 26 + e i
 *   colour bar (0, 0.5, 1) at x = 10 + C pitch_x - 14 + 16, y = 36,
 *     height max(N, 80)
 *   width  = C pitch_x + 57
 *   height = 20 + max(R pitch_y - 14, 26 + max(N, 80))
 *
 * Filmstrip: thumbnail cell f = ceil(96 / T) px, side S = T f;
 *   x0 = 10 + W("H{NH-1}") + 6, y0 = 36; thumbnail (step s, head h) at
 *   (x0 + s (S + 8), y0 + h (S + 8)); colour bar at
 *   x = x0 + n_steps (S + 8) - 8 + 16, y = y0, height max(S, 80)
 *   width  = max(bar x + 35 + 10, W(title) + 20)
 *   height = y0 + max(NH (S + 8) - 8, S, 80) + 10
 *
 * Balance: x0 = 10 + max W(row label) + 6, y0 = 24; grid width
 *   GW = HEATMAP_BALANCE_COLS whatever the number of columns (grid pixel
 *   column x shows value column floor(x cols / GW)); GH = 12 rows; value
 *   (r, c) fills x0 + [ceil(c GW / cols), ceil((c + 1) GW / cols)) x
 *   y0 + [12 r, 12 r + 12); under the grid a step axis (ticks, labels, and
 *   "step" at y0 + GH + 16); colour bar (+R, 0, -R) at x = x0 + GW + 16,
 *   y = y0, height max(GH, 80)
 *   width  = max(bar x + 18 + W(widest of "+R", "-R") + 10, W(title) + 20)
 *   height = y0 + max(GH + 30, 80) + 10 */
#include "heatmap.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "font.h"
#include "png.h"

#define MARGIN 10
#define CELL 10       /* attention cell of a labelled panel: a glyph fits */
#define MAP_MAX 640   /* a panel's map is at most this wide when T * CELL is wider */
#define LABEL 12      /* strip of key labels above a panel, of query labels left of it */
#define TITLE 14      /* strip holding one line of text above a panel or a picture */
#define GAP 14        /* between panels */
#define PANEL_MIN 84  /* a panel column is this wide at least, so its title fits */
#define BAR_GAP 16    /* from the panels to the colour bar */
#define BAR_W 14
#define BAR_MIN 80    /* a colour bar is this tall at least, so its labels do not collide */
/* Colour bar labels stand this far from the bar, without tick marks: in a
 * pixel font a tick before "1" reads as "-1". */
#define BAR_LABEL_GAP 4
#define TICK 3        /* balance step tick length */
#define THUMB_MIN 96  /* filmstrip thumbnails are this wide at least */
#define THUMB_GAP 8
#define ROW_LABEL_PAD 6
#define BLOCK 12      /* balance row height */
#define STEP_STRIP 16 /* below the balance grid: tick, gap, step labels */
#define MAX_SIDE 30000

static const uint8_t ink[3] = {34, 34, 34};
static const uint8_t neutral[3] = {(HEATMAP_MASK_RGB >> 16) & 0xFF,
                                   (HEATMAP_MASK_RGB >> 8) & 0xFF, HEATMAP_MASK_RGB & 0xFF};

/* ---- colour maps -------------------------------------------------------- */

typedef void (*ColourMap)(float t, uint8_t rgb[3]);

/* matplotlib's viridis (_viridis_data) at t = 0, 0.1, ..., 1, rounded to
 * 8 bits; linear between them is within a few levels of the 256-entry table. */
static const uint8_t viridis_stops[11][3] = {
    {68, 1, 84},    {72, 36, 117},  {65, 68, 135},  {53, 95, 141},
    {42, 120, 142}, {33, 145, 140}, {34, 168, 132}, {68, 191, 112},
    {122, 209, 81}, {189, 223, 38}, {253, 231, 37},
};

/* Blue, white, red (the ends of ColorBrewer's RdBu): t = 0.5 is exactly
 * white so that a zero reads as "no preference". */
static const uint8_t diverging_stops[3][3] = {{33, 102, 172}, {255, 255, 255}, {178, 24, 43}};

/* Piecewise-linear interpolation through n evenly spaced stops; t is clamped
 * to 0..1 (NAN to 0), and the ends return the end stops exactly. */
static void ramp(const uint8_t (*stops)[3], size_t n, float t, uint8_t rgb[3]) {
    if (!(t > 0.0f)) t = 0.0f;
    if (t > 1.0f) t = 1.0f;
    float s = t * (float)(n - 1);
    size_t i = (size_t)s;
    if (i > n - 2) i = n - 2;
    float f = s - (float)i;
    for (int k = 0; k < 3; k++) {
        float a = stops[i][k], b = stops[i + 1][k];
        rgb[k] = (uint8_t)lrintf(a + (b - a) * f);
    }
}

void heatmap_viridis(float v, uint8_t rgb[3]) {
    ramp(viridis_stops, 11, v, rgb);
}

static void diverging(float t, uint8_t rgb[3]) {
    ramp(diverging_stops, 3, t, rgb);
}

/* ---- raster ------------------------------------------------------------- */

/* Drawing coordinates are signed so that text centred near an edge can start
 * left of it; every pixel is clipped to the image. Rows are 3 w bytes of RGB
 * triples, as png_write takes them. */
typedef struct {
    uint8_t *px;
    size_t w, h;
    int owned;  /* px is the image's own, not lent memory */
    Span spare; /* lent memory for the encoder, the pixels in it or not */
} Image;

static size_t image_stride(const Image *im) {
    return 3 * im->w;
}

/* The pixels go in mem when they fit there, png_lead bytes in, so that the
 * encoder filters them in place and has the rest of mem; else on the heap,
 * and all of mem is the encoder's. */
static int image_init(Image *im, size_t w, size_t h, Span mem, const char *path, Error *err) {
    if (w > MAX_SIDE || h > MAX_SIDE || h * (1 + 3 * w) > INT_MAX)
        return error_set(err,
                         "%s: cannot write PNG: it would be %zu x %zu px (at most %d a side and "
                         "%d bytes of pixels)",
                         path, w, h, MAX_SIDE, INT_MAX);
    im->w = w;
    im->h = h;
    size_t size = h * image_stride(im), lead = png_lead(w, h);
    im->owned = !mem.p || lead > mem.n || size > mem.n - lead;
    im->px = im->owned ? xmalloc(size) : (uint8_t *)mem.p + lead;
    im->spare = mem;
    memset(im->px, 255, size); /* white background */
    return 0;
}

static void image_fill(Image *im, ptrdiff_t x, ptrdiff_t y, size_t w, size_t h,
                       const uint8_t c[3]) {
    ptrdiff_t x1 = x + (ptrdiff_t)w, y1 = y + (ptrdiff_t)h;
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x1 > (ptrdiff_t)im->w) x1 = (ptrdiff_t)im->w;
    if (y1 > (ptrdiff_t)im->h) y1 = (ptrdiff_t)im->h;
    size_t stride = image_stride(im);
    for (ptrdiff_t yy = y; yy < y1; yy++)
        for (ptrdiff_t xx = x; xx < x1; xx++)
            memcpy(im->px + (size_t)yy * stride + (size_t)xx * 3, c, 3);
}

static void image_glyph(Image *im, ptrdiff_t x, ptrdiff_t y, const uint8_t *glyph) {
    for (int gy = 0; gy < FONT_H; gy++)
        for (int gx = 0; gx < FONT_W; gx++)
            if (glyph[gy] >> (FONT_W - 1 - gx) & 1) image_fill(im, x + gx, y + gy, 1, 1, ink);
}

/* One line of ASCII text with its top-left at (x, y); spaces stay blank. */
static void image_text(Image *im, ptrdiff_t x, ptrdiff_t y, const char *s) {
    for (; *s; s++, x += FONT_ADVANCE)
        if (*s != ' ') image_glyph(im, x, y, font_glyph((unsigned char)*s));
}

/* Text whose cap height is centred on row y. */
static void image_text_mid(Image *im, ptrdiff_t x, ptrdiff_t y, const char *s) {
    image_text(im, x, y - FONT_CAP / 2, s);
}

/* ---- PNG file ----------------------------------------------------------- */

/* Writes <path>.tmp and renames it over path, so a reader never sees half a
 * picture; every write and the close are checked (a full disk). Frees the
 * image's own pixels. */
static int image_write(Image *im, const char *path, Error *err) {
    size_t n = strlen(path) + 5;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL, saved = errno;
    if (ok) {
        ok = png_write(f, im->px, im->w, im->h, im->spare) == 0;
        saved = errno;
        if (fclose(f) != 0 && ok) {
            ok = 0;
            saved = errno;
        }
        if (ok && rename(tmp, path) != 0) {
            ok = 0;
            saved = errno;
        }
        if (!ok) remove(tmp);
    }
    free(tmp);
    if (im->owned) free(im->px);
    im->px = NULL;
    return ok ? 0 : error_set(err, "%s: cannot write PNG: %s", path, strerror(saved));
}

/* ---- shared pieces ------------------------------------------------------ */

static size_t max_size(size_t a, size_t b) {
    return a > b ? a : b;
}

/* A T x T attention map with its top-left cell at (x, y), cell px per entry;
 * entries above the diagonal (a query's future, masked) get the neutral
 * colour whatever they hold. */
static void draw_map(Image *im, ptrdiff_t x, ptrdiff_t y, const float *m, size_t T, size_t cell) {
    for (size_t i = 0; i < T; i++)
        for (size_t j = 0; j < T; j++) {
            uint8_t c[3];
            if (j > i)
                memcpy(c, neutral, 3);
            else
                heatmap_viridis(m[i * T + j], c);
            image_fill(im, x + (ptrdiff_t)(j * cell), y + (ptrdiff_t)(i * cell), cell, cell, c);
        }
}

/* Cell side of a panel's map: CELL, or for long windows what keeps the map
 * within MAP_MAX px (a T = 256 map at 10 px would be a 120 MB picture per
 * layer, slow to encode and to view). */
static size_t panel_cell(size_t T) {
    return T * CELL <= MAP_MAX ? CELL : max_size(1, MAP_MAX / T);
}

/* A titled panel: the block's top-left at (x, y), the title over the cells,
 * each key's glyph above its column, each query's glyph left of its row, and
 * the map at (x + LABEL, y + TITLE + LABEL). Cells narrower than CELL get a
 * glyph every ceil(CELL / cell) positions, so that glyphs do not overlap. */
static void draw_panel(Image *im, ptrdiff_t x, ptrdiff_t y, const char *title, const float *m,
                       size_t T, const uint32_t *chars) {
    ptrdiff_t cx = x + LABEL, cy = y + TITLE + LABEL;
    size_t cell = panel_cell(T), every = (CELL + cell - 1) / cell;
    image_text(im, cx, y + 1, title);
    for (size_t k = 0; k < T; k += every) {
        const uint8_t *g = font_glyph(chars[k]);
        ptrdiff_t along = (ptrdiff_t)(k * cell), c = (ptrdiff_t)cell;
        image_glyph(im, cx + along + (c - FONT_W) / 2, cy - LABEL + 1, g);
        image_glyph(im, x + 3, cy + along + (c - FONT_CAP) / 2, g);
    }
    draw_map(im, cx, cy, m, T, cell);
}

/* Horizontal room a colour bar takes: the bar, ticks and the widest label. */
static size_t bar_extent(const char *const labels[3]) {
    size_t w = 0;
    for (int i = 0; i < 3; i++) w = max_size(w, font_text_width(labels[i]));
    return BAR_W + BAR_LABEL_GAP + w;
}

/* A vertical colour bar with its top-left at (x, y), h px tall (>= 2): the
 * top row is cmap(1), the bottom row cmap(0); labels[0..2] are centred on the
 * top, the middle and the bottom row. */
static void draw_colour_bar(Image *im, ptrdiff_t x, ptrdiff_t y, size_t h, ColourMap cmap,
                            const char *const labels[3]) {
    for (size_t i = 0; i < h; i++) {
        uint8_t c[3];
        cmap((float)(h - 1 - i) / (float)(h - 1), c);
        image_fill(im, x, y + (ptrdiff_t)i, BAR_W, 1, c);
    }
    const ptrdiff_t at[3] = {y, y + (ptrdiff_t)(h - 1) / 2, y + (ptrdiff_t)h - 1};
    for (int k = 0; k < 3; k++) image_text_mid(im, x + BAR_W + BAR_LABEL_GAP, at[k], labels[k]);
}

static const char *const unit_labels[3] = {"1", "0.5", "0"};

/* ---- panel pictures (layer, compare) ------------------------------------ */

static HeatmapGrid panel_grid(size_t cols, size_t rows, size_t T) {
    HeatmapGrid g = {.cols = cols, .rows = rows, .T = T};
    size_t side = T * panel_cell(T);
    g.panel_w = LABEL + max_size(side, PANEL_MIN);
    g.panel_h = TITLE + LABEL + side;
    g.pitch_x = g.panel_w + GAP;
    g.pitch_y = g.panel_h + GAP;
    g.bar_h = max_size(side, BAR_MIN);
    g.width = MARGIN + cols * g.pitch_x - GAP + BAR_GAP + bar_extent(unit_labels) + MARGIN;
    g.height = 2 * MARGIN + max_size(rows * g.pitch_y - GAP, TITLE + LABEL + g.bar_h);
    return g;
}

static void panel_origin(const HeatmapGrid *g, size_t c, size_t r, size_t *x, size_t *y) {
    *x = MARGIN + c * g->pitch_x;
    *y = MARGIN + r * g->pitch_y;
}

HeatmapGrid heatmap_layer_grid(int NH, int T) {
    size_t nh = (size_t)NH, cols = 1;
    while (cols * cols < nh) cols++;
    return panel_grid(cols, (nh + cols - 1) / cols, (size_t)T);
}

void heatmap_layer_panel(const HeatmapGrid *g, int h, size_t *x, size_t *y) {
    panel_origin(g, (size_t)h % g->cols, (size_t)h / g->cols, x, y);
}

static void panel_grid_draw(Image *im, const HeatmapGrid *g, size_t c, size_t r,
                            const char *title, const float *m, const uint32_t *chars) {
    size_t x, y;
    panel_origin(g, c, r, &x, &y);
    draw_panel(im, (ptrdiff_t)x, (ptrdiff_t)y, title, m, g->T, chars);
}

static void panel_grid_bar(Image *im, const HeatmapGrid *g) {
    draw_colour_bar(im, (ptrdiff_t)(MARGIN + g->cols * g->pitch_x - GAP + BAR_GAP),
                    MARGIN + TITLE + LABEL, g->bar_h, heatmap_viridis, unit_labels);
}

/* Arguments every attention picture shares; wrong ones are caller bugs. A
 * side above MAX_SIDE is refused here so that no layout product overflows. */
static void check_map_args(const char *path, int NH, int T) {
    CHECK(path, "heatmap: path is NULL");
    CHECK(NH >= 1 && NH <= MAX_SIDE, "heatmap: NH = %d out of 1..%d", NH, MAX_SIDE);
    CHECK(T >= 1 && T <= MAX_SIDE, "heatmap: T = %d out of 1..%d", T, MAX_SIDE);
}

int heatmap_write_layer(const char *path, const float *att, int NH, int T,
                        const uint32_t *chars, int layer, Span mem, Error *err) {
    check_map_args(path, NH, T);
    CHECK(att && chars, "heatmap_write_layer: NULL attention or characters");
    size_t t = (size_t)T;
    HeatmapGrid g = heatmap_layer_grid(NH, T);
    Image im;
    if (image_init(&im, g.width, g.height, mem, path, err)) return -1;
    for (int h = 0; h < NH; h++) {
        char title[64];
        snprintf(title, sizeof title, "L%d H%d", layer, h);
        panel_grid_draw(&im, &g, (size_t)h % g.cols, (size_t)h / g.cols, title,
                        att + (size_t)h * t * t, chars);
    }
    panel_grid_bar(&im, &g);
    return image_write(&im, path, err);
}

int heatmap_write_compare(const char *path, const float *att_a, const float *att_b, int NH,
                          int T, const uint32_t *chars, int layer, Error *err) {
    check_map_args(path, NH, T);
    CHECK(att_a && att_b && chars, "heatmap_write_compare: NULL attention or characters");
    size_t nh = (size_t)NH, t = (size_t)T;
    HeatmapGrid g = panel_grid(3, nh, t);
    Image im;
    if (image_init(&im, g.width, g.height, (Span){0}, path, err)) return -1;
    float *diff = xmalloc(t * t * sizeof *diff);
    for (size_t h = 0; h < nh; h++) {
        const float *a = att_a + h * t * t, *b = att_b + h * t * t;
        for (size_t i = 0; i < t * t; i++) diff[i] = fabsf(a[i] - b[i]);
        const float *maps[3] = {a, b, diff};
        static const char *const which[3] = {"A", "B", "|A-B|"};
        for (size_t c = 0; c < 3; c++) {
            char title[64];
            snprintf(title, sizeof title, "L%d H%zu %s", layer, h, which[c]);
            panel_grid_draw(&im, &g, c, h, title, maps[c], chars);
        }
    }
    free(diff);
    panel_grid_bar(&im, &g);
    return image_write(&im, path, err);
}

/* ---- filmstrip ---------------------------------------------------------- */

int heatmap_write_filmstrip(const char *path, const float *const *maps, const int *steps,
                            int n_steps, int NH, int T, int layer, Span mem, Error *err) {
    check_map_args(path, NH, T);
    CHECK(n_steps >= 1 && n_steps <= MAX_SIDE, "heatmap_write_filmstrip: n_steps = %d out of 1..%d",
          n_steps, MAX_SIDE);
    CHECK(maps && steps, "heatmap_write_filmstrip: NULL maps or steps");
    size_t nh = (size_t)NH, t = (size_t)T, ns = (size_t)n_steps;
    size_t cell = (THUMB_MIN + t - 1) / t, side = t * cell;
    size_t pitch = side + THUMB_GAP;
    char title[64], label[32];
    snprintf(title, sizeof title, "L%d attention over training", layer);
    snprintf(label, sizeof label, "H%zu", nh - 1);
    size_t x0 = MARGIN + font_text_width(label) + ROW_LABEL_PAD, y0 = MARGIN + TITLE + LABEL;
    size_t bar_x = x0 + ns * pitch - THUMB_GAP + BAR_GAP, bar_h = max_size(side, BAR_MIN);
    size_t w = max_size(bar_x + bar_extent(unit_labels) + MARGIN,
                        font_text_width(title) + 2 * MARGIN);
    size_t h = y0 + max_size(nh * pitch - THUMB_GAP, bar_h) + MARGIN;
    Image im;
    if (image_init(&im, w, h, mem, path, err)) return -1;
    image_text(&im, MARGIN, MARGIN + 1, title);
    for (size_t s = 0; s < ns; s++) {
        CHECK(maps[s], "heatmap_write_filmstrip: maps[%zu] is NULL", s);
        ptrdiff_t x = (ptrdiff_t)(x0 + s * pitch);
        snprintf(label, sizeof label, "%d", steps[s]);
        image_text(&im, x + (ptrdiff_t)(side - font_text_width(label)) / 2,
                   (ptrdiff_t)y0 - LABEL + 1, label);
        for (size_t hd = 0; hd < nh; hd++)
            draw_map(&im, x, (ptrdiff_t)(y0 + hd * pitch), maps[s] + hd * t * t, t, cell);
    }
    for (size_t hd = 0; hd < nh; hd++) {
        snprintf(label, sizeof label, "H%zu", hd);
        image_text_mid(&im, MARGIN, (ptrdiff_t)(y0 + hd * pitch + side / 2), label);
    }
    draw_colour_bar(&im, (ptrdiff_t)bar_x, (ptrdiff_t)y0, bar_h, heatmap_viridis, unit_labels);
    return image_write(&im, path, err);
}

/* ---- Q/K balance -------------------------------------------------------- */

/* The step axis under the grid, whose columns cover steps 1 .. last in equal
 * runs: ticks at round steps (1, 2 or 5 times a power of ten, five to ten of
 * them) where their step lies, labelled unless the label would run into the
 * previous one or the colour bar's column, and "step" under the labels. */
static void draw_step_axis(Image *im, ptrdiff_t x0, ptrdiff_t y, size_t gw, long last,
                           ptrdiff_t right_limit) {
    long every = 1;
    while (every * 10 <= last / 5 + 1) every *= 10;
    if (every * 5 <= last / 5 + 1) every *= 5;
    else if (every * 2 <= last / 5 + 1) every *= 2;
    ptrdiff_t next_free = 0;
    for (long v = every; v <= last; v += every) {
        char label[32];
        snprintf(label, sizeof label, "%ld", v);
        ptrdiff_t lw = (ptrdiff_t)font_text_width(label);
        ptrdiff_t mid = x0 + (ptrdiff_t)((double)gw * (2 * v - 1) / (2.0 * (double)last));
        ptrdiff_t left = mid - lw / 2;
        if (left < next_free || left + lw > right_limit) continue;
        image_fill(im, mid, y, 1, TICK, ink);
        image_text(im, left, y + TICK + 2, label);
        next_free = left + lw + 2 * FONT_ADVANCE;
    }
    ptrdiff_t tw = (ptrdiff_t)font_text_width("step");
    image_text(im, x0 + (ptrdiff_t)gw / 2 - tw / 2, y + STEP_STRIP, "step");
}

int heatmap_write_balance(const char *path, const float *vals, int rows, int cols,
                          const char *const *row_labels, int last_step, Span mem, Error *err) {
    CHECK(path && vals && row_labels, "heatmap_write_balance: NULL argument");
    CHECK(rows >= 1 && rows <= MAX_SIDE, "heatmap_write_balance: rows = %d out of 1..%d", rows,
          MAX_SIDE);
    CHECK(cols >= 1 && last_step >= cols, "heatmap_write_balance: %d columns of steps 1..%d", cols,
          last_step);
    size_t nr = (size_t)rows, nc = (size_t)cols;
    static const char title[] =
        "log2(gq_norm / gk_norm): red = query gradient larger, blue = key larger";

    /* The symmetric range covers every finite value, and at least 0.25 so that
     * noise around 0 is not blown up to full colour. */
    float range = 0.25f;
    for (size_t i = 0; i < nr * nc; i++)
        if (isfinite(vals[i]) && fabsf(vals[i]) > range) range = fabsf(vals[i]);
    char top[32], bottom[32];
    snprintf(top, sizeof top, "+%.3g", range);
    snprintf(bottom, sizeof bottom, "-%.3g", range);
    const char *const scale[3] = {top, "0", bottom};

    size_t rl = 0;
    for (size_t r = 0; r < nr; r++) {
        CHECK(row_labels[r], "heatmap_write_balance: row_labels[%zu] is NULL", r);
        rl = max_size(rl, font_text_width(row_labels[r]));
    }
    size_t x0 = MARGIN + rl + ROW_LABEL_PAD, y0 = MARGIN + TITLE;
    size_t gw = HEATMAP_BALANCE_COLS, gh = nr * BLOCK;
    size_t bar_x = x0 + gw + BAR_GAP, bar_h = max_size(gh, BAR_MIN);
    size_t w = max_size(bar_x + bar_extent(scale) + MARGIN, font_text_width(title) + 2 * MARGIN);
    size_t h = y0 + max_size(gh + STEP_STRIP + TITLE, bar_h) + MARGIN;
    Image im;
    if (image_init(&im, w, h, mem, path, err)) return -1;
    image_text(&im, MARGIN, MARGIN + 1, title);
    for (size_t r = 0; r < nr; r++) {
        image_text_mid(&im, MARGIN, (ptrdiff_t)(y0 + r * BLOCK + BLOCK / 2), row_labels[r]);
        for (size_t x = 0; x < gw; x++) {
            float v = vals[r * nc + x * nc / gw];
            uint8_t c[3];
            if (isnan(v))
                memcpy(c, neutral, 3);
            else
                diverging(0.5f + v / (2.0f * range), c);
            image_fill(&im, (ptrdiff_t)(x0 + x), (ptrdiff_t)(y0 + r * BLOCK), 1, BLOCK, c);
        }
    }
    draw_step_axis(&im, (ptrdiff_t)x0, (ptrdiff_t)(y0 + gh), gw, last_step,
                   (ptrdiff_t)bar_x - FONT_ADVANCE);
    draw_colour_bar(&im, (ptrdiff_t)bar_x, (ptrdiff_t)y0, bar_h, diverging, scale);
    return image_write(&im, path, err);
}

/* A table of values in 0..1: a viridis swatch per cell with the value printed
 * under it on white (dark text would vanish on viridis' dark end), column
 * labels above, row labels left; NAN cells neutral and "-". */
#define TABLE_SWATCH 12
#define TABLE_ROW (TABLE_SWATCH + FONT_H + 4)
#define TABLE_PAD 8

int heatmap_write_table(const char *path, const char *title, const float *vals, int rows,
                        int cols, const char *const *row_labels, const char *const *col_labels,
                        Error *err) {
    CHECK(path && title && vals && row_labels && col_labels, "heatmap_write_table: NULL argument");
    CHECK(rows >= 1 && rows <= MAX_SIDE && cols >= 1 && cols <= MAX_SIDE,
          "heatmap_write_table: %d x %d cells", rows, cols);
    size_t rl = 0, cw = font_text_width("0.000");
    for (int r = 0; r < rows; r++) rl = max_size(rl, font_text_width(row_labels[r]));
    for (int c = 0; c < cols; c++) cw = max_size(cw, font_text_width(col_labels[c]));
    cw += TABLE_PAD;
    size_t x0 = MARGIN + rl + ROW_LABEL_PAD, y0 = MARGIN + 2 * TITLE;
    size_t w = max_size(x0 + (size_t)cols * cw + MARGIN, font_text_width(title) + 2 * MARGIN);
    size_t h = y0 + (size_t)rows * TABLE_ROW + MARGIN;
    Image im;
    if (image_init(&im, w, h, (Span){0}, path, err)) return -1;
    image_text(&im, MARGIN, MARGIN + 1, title);
    for (int c = 0; c < cols; c++)
        image_text(&im, (ptrdiff_t)(x0 + (size_t)c * cw), (ptrdiff_t)(MARGIN + TITLE + 1),
                   col_labels[c]);
    for (int r = 0; r < rows; r++) {
        ptrdiff_t y = (ptrdiff_t)(y0 + (size_t)r * TABLE_ROW);
        image_text_mid(&im, MARGIN, y + TABLE_SWATCH / 2, row_labels[r]);
        for (int c = 0; c < cols; c++) {
            float v = vals[(size_t)r * cols + c];
            uint8_t rgb[3];
            char text[16] = "-";
            if (isnan(v)) {
                memcpy(rgb, neutral, 3);
            } else {
                heatmap_viridis(v, rgb);
                snprintf(text, sizeof text, "%.3f", v);
            }
            ptrdiff_t x = (ptrdiff_t)(x0 + (size_t)c * cw);
            image_fill(&im, x, y, cw - TABLE_PAD / 2, TABLE_SWATCH, rgb);
            image_text(&im, x, y + TABLE_SWATCH + 2, text);
        }
    }
    return image_write(&im, path, err);
}
