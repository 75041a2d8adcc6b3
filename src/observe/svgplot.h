/* Line charts as inline SVG against the training step: series taken from a
 * CSV table, y ranges with room around the data, round ticks on linear and
 * log axes, a dashed reference line, and a legend in HTML. The page's CSS
 * (src/observe/report/page.css) styles the classes these write. */
#ifndef QK_SVGPLOT_H
#define QK_SVGPLOT_H

#include <math.h>
#include <stddef.h>

#include "buf.h"
#include "csvtable.h"

/* Series longer than this are drawn reduced: their points are cut into
 * SVGPLOT_MAX_POINTS / 2 runs of consecutive points and each run keeps its
 * smallest and largest value (in step order), so spikes stay visible and the
 * page stays small however long the run. */
#define SVGPLOT_MAX_POINTS 500

enum { SERIES_DASH = 1, SERIES_FAINT = 2, SERIES_DOTS = 4 };

typedef struct {
    char name[160];
    const char *colour;
    int style; /* SERIES_* flags */
    double *x, *y;
    size_t n;
} Series;

/* Column ycol (divided by column over when over >= 0) against column xcol of
 * the given rows of t (rows NULL: the first n rows). */
Series series_take(const char *name, const char *colour, int style, const CsvTable *t,
                   const size_t *rows, size_t n, int xcol, int ycol, int over);
void series_free(Series *s);

typedef struct {
    double lo, hi; /* empty while lo > hi */
} Range;

#define RANGE_EMPTY ((Range){INFINITY, -INFINITY})

void range_add(Range *r, double v);
/* Adds the series' drawable values (finite, and > 0 on a log axis). */
void range_add_series(Range *r, const Series *s, int log_y);
/* A y range with a little room around the data (on a log scale: in log
 * space); a single value gets a range around it, no data a default. */
Range range_finish(Range r, int log_y);

/* A step marked on a chart: a major marker is a dashed line across the plot
 * with its label at the top; a minor one a short tick in its colour at the
 * foot, each minor marker of a chart in a lane of its own so that markers at
 * one step stay apart. event names it in the markup (data-event). */
typedef struct {
    double x;
    const char *colour, *event;
    char label[64];
    int major;
} Marker;

typedef struct {
    char id[64];
    const char *title, *ylabel; /* the x axis is always the training step */
    int w, h, log_y;
    double ref;                 /* dashed line at this y, NAN for none */
    Range x, y;                 /* final ranges (shared between small multiples) */
    const Marker *marks;        /* nmarks markers at steps in the x range */
    int nmarks;
    /* Drawn for a file of its own rather than for the page: the look
     * page.css gives the classes is written on the elements too, so the
     * chart needs no stylesheet. */
    int standalone;
} Chart;

/* The chart with its series as one <svg class="chart">. */
void chart_svg(Buf *b, const Chart *c, const Series *s, int ns);
/* One line per series: a stroke sample and the name. */
void legend_html(Buf *b, const Series *s, int ns);
/* The same legend as SVG elements of a standalone picture, cols entries to a
 * row of width w from (x, y); returns the height it took. */
int legend_svg(Buf *b, const Series *s, int ns, int x, int y, int w, int cols);
/* The font stack of standalone pictures. */
#define SVGPLOT_FONT "system-ui, 'DejaVu Sans', Helvetica, Arial, sans-serif"

#endif
