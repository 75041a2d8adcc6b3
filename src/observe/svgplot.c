#include "svgplot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Series series_take(const char *name, const char *colour, int style, const CsvTable *t,
                   const size_t *rows, size_t n, int xcol, int ycol, int over) {
    Series s = {.colour = colour, .style = style, .n = n};
    snprintf(s.name, sizeof s.name, "%s", name);
    s.x = xmalloc(n * sizeof(double));
    s.y = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        size_t r = rows ? rows[i] : i;
        s.x[i] = csvtable_at(t, r, xcol);
        s.y[i] = csvtable_at(t, r, ycol) / (over >= 0 ? csvtable_at(t, r, over) : 1.0);
    }
    return s;
}

void series_free(Series *s) {
    free(s->x);
    free(s->y);
}

static int drawable(double x, double y, int log_y) {
    return isfinite(x) && isfinite(y) && (!log_y || y > 0);
}

void range_add(Range *r, double v) {
    if (v < r->lo) r->lo = v;
    if (v > r->hi) r->hi = v;
}

void range_add_series(Range *r, const Series *s, int log_y) {
    for (size_t i = 0; i < s->n; i++)
        if (drawable(s->x[i], s->y[i], log_y)) range_add(r, s->y[i]);
}

Range range_finish(Range r, int log_y) {
    if (!(r.lo <= r.hi)) return log_y ? (Range){1, 10} : (Range){0, 1};
    double a = log_y ? log10(r.lo) : r.lo, b = log_y ? log10(r.hi) : r.hi;
    double pad = (b - a) * 0.05;
    if (!(pad > 1e-12 * fmax(1.0, fabs(b)))) pad = log_y ? 0.3 : (a != 0 ? fabs(a) * 0.1 : 1.0);
    a -= pad;
    b += pad;
    return log_y ? (Range){pow(10, a), pow(10, b)} : (Range){a, b};
}

/* Round values (1, 2 or 5 times a power of ten) across r, at most max. */
static int ticks_linear(Range r, double *out, int max) {
    double raw = (r.hi - r.lo) / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    if (!(step > 0) || !isfinite(step)) return 0;
    int n = 0;
    for (double k = ceil(r.lo / step); k * step <= r.hi + step * 1e-9 && n < max; k++)
        out[n++] = k == 0 ? 0 : k * step;
    return n;
}

/* Powers of ten across r when two or more fall in it, else 1, 2 and 5 times
 * powers of ten, else round values as on a linear axis. */
static int ticks_log(Range r, double *out, int max) {
    if (!(r.lo > 0)) return 0;
    double a = ceil(log10(r.lo) - 1e-9), b = floor(log10(r.hi) + 1e-9);
    int n = 0;
    if (b - a >= 1 && b - a <= 600) {
        double stride = floor((b - a) / (max - 1)) + 1;
        for (double k = a; k <= b && n < max; k += stride) out[n++] = pow(10, k);
        return n;
    }
    static const double mantissas[3] = {1, 2, 5};
    for (double k = a - 1; k <= b && n < max; k++)
        for (int i = 0; i < 3 && n < max; i++) {
            double v = mantissas[i] * pow(10, k);
            if (v >= r.lo && v <= r.hi) out[n++] = v;
        }
    return n >= 2 ? n : ticks_linear(r, out, max);
}

/* Enough decimals to tell ticks `step` apart (step 0: as few as needed). */
static void tick_label(char *out, size_t n, double v, double step) {
    double a = fabs(v);
    int decimals = step > 0 ? (int)ceil(-log10(step) - 1e-9) : 0;
    if (v != 0 && (a < 1e-3 || a >= 1e6))
        snprintf(out, n, "%.3g", v);
    else if (step > 0)
        snprintf(out, n, "%.*f", decimals < 0 ? 0 : decimals > 9 ? 9 : decimals, v);
    else
        snprintf(out, n, "%g", v);
}

/* Indices (ascending) of at most max of the n values: all of them when n <=
 * max, else the smallest and largest of each of max / 2 runs of consecutive
 * values (see SVGPLOT_MAX_POINTS in svgplot.h). */
static size_t series_reduce(const double *v, size_t n, size_t max, size_t *keep) {
    if (n <= max) {
        for (size_t i = 0; i < n; i++) keep[i] = i;
        return n;
    }
    size_t buckets = max / 2, k = 0;
    for (size_t b = 0; b < buckets; b++) {
        size_t lo = b * n / buckets, hi = (b + 1) * n / buckets, imin = lo, imax = lo;
        for (size_t i = lo + 1; i < hi; i++) {
            if (v[i] < v[imin]) imin = i;
            if (v[i] > v[imax]) imax = i;
        }
        keep[k++] = imin < imax ? imin : imax;
        if (imin != imax) keep[k++] = imin < imax ? imax : imin;
    }
    return k;
}

#define M_LEFT 58
#define M_RIGHT 16
#define M_TOP 20
#define M_BOTTOM 30
#define DOTS_MAX 60 /* series this short get a dot per point: evals, not steps */

/* page.css's look of a class chart_svg writes, as presentation attributes,
 * for a standalone chart; nothing on the page, where the stylesheet gives it
 * (keep the two alike). */
static const char *look(const Chart *c, const char *cls) {
    static const struct {
        const char *cls, *attrs;
    } looks[] = {
        {"svg", " font-family=\"" SVGPLOT_FONT "\" font-size=\"11\""},
        {"title", " font-size=\"13\" font-weight=\"600\" fill=\"#222\""},
        {"ty", " fill=\"#555\" text-anchor=\"end\""},
        {"tx", " fill=\"#555\" text-anchor=\"middle\""},
        {"grid", " stroke=\"#ececec\""},
        {"tick", " stroke=\"#999\""},
        {"frame", " fill=\"none\" stroke=\"#aaa\""},
        {"ref", " stroke=\"#888\" stroke-dasharray=\"3 3\""},
        {"s", " fill=\"none\" stroke-width=\"1.4\" stroke-opacity=\".85\" "
              "stroke-linejoin=\"round\""},
        {"faint", " fill=\"none\" stroke-width=\"1\" stroke-opacity=\".35\" "
                  "stroke-linejoin=\"round\""},
    };
    if (!c->standalone) return "";
    for (size_t i = 0; i < sizeof looks / sizeof looks[0]; i++)
        if (!strcmp(looks[i].cls, cls)) return looks[i].attrs;
    return "";
}

static double axis_frac(double v, Range r, int log_scale) {
    if (log_scale) return (log10(v) - log10(r.lo)) / (log10(r.hi) - log10(r.lo));
    return (v - r.lo) / (r.hi - r.lo);
}

static void series_svg(Buf *b, const Chart *c, const Series *s) {
    double pw = c->w - M_LEFT - M_RIGHT, ph = c->h - M_TOP - M_BOTTOM;
    double *px = xmalloc((s->n + 1) * sizeof(double)), *py = xmalloc((s->n + 1) * sizeof(double));
    size_t m = 0;
    for (size_t i = 0; i < s->n; i++)
        if (drawable(s->x[i], s->y[i], c->log_y)) {
            px[m] = M_LEFT + pw * axis_frac(s->x[i], c->x, 0);
            py[m++] = M_TOP + ph * (1 - axis_frac(s->y[i], c->y, c->log_y));
        }
    size_t *keep = xmalloc((m + 1) * sizeof(size_t));
    size_t k = series_reduce(py, m, SVGPLOT_MAX_POINTS, keep);
    if (k > 0) {
        buf_printf(b, "<polyline class=\"s%s\"%s data-n=\"%zu\" stroke=\"%s\"%s data-name=\"",
                   s->style & SERIES_FAINT ? " faint" : "",
                   look(c, s->style & SERIES_FAINT ? "faint" : "s"), m, s->colour,
                   s->style & SERIES_DASH ? " stroke-dasharray=\"5 3\"" : "");
        buf_html(b, s->name);
        buf_puts(b, "\" points=\"");
        for (size_t j = 0; j < k; j++) buf_printf(b, "%.1f,%.1f ", px[keep[j]], py[keep[j]]);
        buf_puts(b, "\"><title>");
        buf_html(b, s->name);
        buf_puts(b, "</title></polyline>\n");
        if ((s->style & SERIES_DOTS) && k <= DOTS_MAX) {
            buf_printf(b, "<g fill=\"%s\">", s->colour);
            for (size_t j = 0; j < k; j++)
                buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\"/>", px[keep[j]], py[keep[j]]);
            buf_puts(b, "</g>\n");
        }
    }
    free(keep);
    free(px);
    free(py);
}

#define LANE 7 /* height of a minor marker's lane at the foot of the plot */

/* The chart's markers at steps in its x range: major ones dashed across the
 * plot with their label at the top (left of the line near the right edge),
 * minor ones as ticks in lanes up from the foot. */
static void markers_svg(Buf *b, const Chart *c) {
    double pw = c->w - M_LEFT - M_RIGHT, ph = c->h - M_TOP - M_BOTTOM;
    int lane = 0;
    for (int i = 0; i < c->nmarks; i++) {
        const Marker *m = &c->marks[i];
        double f = axis_frac(m->x, c->x, 0);
        if (!(f >= 0 && f <= 1)) continue;
        double x = M_LEFT + pw * f;
        buf_puts(b, "<g class=\"mark\" data-event=\"");
        buf_html(b, m->event ? m->event : "");
        buf_printf(b, "\" data-step=\"%.15g\">", m->x);
        if (m->major) {
            int right = f > 0.75;
            buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
                          "stroke-width=\"1.2\" stroke-dasharray=\"6 3\"/><text x=\"%.1f\" "
                          "y=\"%d\" text-anchor=\"%s\" style=\"fill:%s;font-weight:600\">",
                       x, x, M_TOP, M_TOP + ph, m->colour, right ? x - 4 : x + 4, M_TOP + 11,
                       right ? "end" : "start", m->colour);
            buf_html(b, m->label);
            buf_puts(b, "</text>");
        } else {
            /* on a white halo, to stand out from the lines near the foot */
            double y0 = M_TOP + ph - LANE * lane++;
            for (int k = 0; k < 2; k++)
                buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                              "stroke-width=\"%s\"/>",
                           x, x, y0 - LANE + 1, y0, k ? m->colour : "#fff", k ? "2.5" : "5");
        }
        buf_puts(b, "<title>");
        buf_html(b, m->label);
        buf_puts(b, "</title></g>\n");
    }
}

void chart_svg(Buf *b, const Chart *c, const Series *s, int ns) {
    double pw = c->w - M_LEFT - M_RIGHT, ph = c->h - M_TOP - M_BOTTOM;
    buf_printf(b, "<svg class=\"chart\" id=\"%s\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\"%s><text class=\"title\"%s x=\"%d\" y=\"13\">",
               c->id, c->w, c->h, c->w, c->h, look(c, "svg"), look(c, "title"), M_LEFT);
    buf_html(b, c->title);
    buf_puts(b, "</text>\n");
    double t[12];
    char label[32];
    int nt = c->log_y ? ticks_log(c->y, t, 8) : ticks_linear(c->y, t, 8);
    double step = !c->log_y && nt > 1 ? t[1] - t[0] : 0;
    for (int i = 0; i < nt; i++) {
        double y = M_TOP + ph * (1 - axis_frac(t[i], c->y, c->log_y));
        tick_label(label, sizeof label, t[i], step);
        buf_printf(b, "<line class=\"grid\"%s x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
                      "<text class=\"ty\"%s x=\"%d\" y=\"%.1f\">%s</text>\n",
                   look(c, "grid"), M_LEFT, M_LEFT + pw, y, y, look(c, "ty"), M_LEFT - 4, y + 3,
                   label);
    }
    nt = ticks_linear(c->x, t, 6);
    step = nt > 1 ? t[1] - t[0] : 0;
    for (int i = 0; i < nt; i++) {
        double x = M_LEFT + pw * axis_frac(t[i], c->x, 0);
        tick_label(label, sizeof label, t[i], step);
        buf_printf(b, "<line class=\"tick\"%s x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
                      "<text class=\"tx\"%s x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                   look(c, "tick"), x, x, M_TOP + ph, M_TOP + ph + 3, look(c, "tx"), x,
                   M_TOP + ph + 13, label);
    }
    buf_printf(b, "<rect class=\"frame\"%s x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\"/>\n",
               look(c, "frame"), M_LEFT, M_TOP, pw, ph);
    if (isfinite(c->ref) && (!c->log_y || c->ref > 0) && c->ref >= c->y.lo && c->ref <= c->y.hi) {
        double y = M_TOP + ph * (1 - axis_frac(c->ref, c->y, c->log_y));
        buf_printf(b, "<line class=\"ref\"%s x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n",
                   look(c, "ref"), M_LEFT, M_LEFT + pw, y, y);
    }
    for (int i = 0; i < ns; i++) series_svg(b, c, &s[i]);
    markers_svg(b, c);
    buf_printf(b, "<text class=\"xl\"%s x=\"%.1f\" y=\"%d\">step</text>"
                  "<text class=\"yl\"%s transform=\"translate(11 %.1f) rotate(-90)\">",
               look(c, "tx"), M_LEFT + pw / 2, c->h - 3, look(c, "tx"), M_TOP + ph / 2);
    buf_html(b, c->ylabel);
    buf_puts(b, "</text></svg>\n");
}

void legend_html(Buf *b, const Series *s, int ns) {
    buf_puts(b, "<p class=\"legend\">");
    for (int i = 0; i < ns; i++) {
        buf_printf(b, "<span><svg width=\"22\" height=\"8\"><line x1=\"0\" y1=\"4\" x2=\"22\" "
                      "y2=\"4\" stroke=\"%s\" stroke-width=\"2\"%s%s/></svg> ",
                   s[i].colour, s[i].style & SERIES_DASH ? " stroke-dasharray=\"5 3\"" : "",
                   s[i].style & SERIES_FAINT ? " stroke-opacity=\".4\"" : "");
        buf_html(b, s[i].name);
        buf_puts(b, "</span>");
    }
    buf_puts(b, "</p>\n");
}

int legend_svg(Buf *b, const Series *s, int ns, int x, int y, int w, int cols) {
    const int row_h = 18;
    int rows = (ns + cols - 1) / cols;
    for (int i = 0; i < ns; i++) {
        double ex = x + (double)w / cols * (i % cols), ey = y + row_h * (i / cols) + row_h / 2.0;
        buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                      "stroke-width=\"2\"%s%s/><text x=\"%.1f\" y=\"%.1f\" fill=\"#222\">",
                   ex, ex + 22, ey, ey, s[i].colour,
                   s[i].style & SERIES_DASH ? " stroke-dasharray=\"5 3\"" : "",
                   s[i].style & SERIES_FAINT ? " stroke-opacity=\".4\"" : "", ex + 28, ey + 4);
        buf_html(b, s[i].name);
        buf_puts(b, "</text>\n");
    }
    return rows * row_h;
}
