#include "qk.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "csvtable.h"
#include "data.h"
#include "heatmap.h"

const char *const qk_quantity_names[QK_NQ] = {"gq_norm", "gk_norm", "gv_norm", "go_norm",
                                              "wq_norm", "wk_norm", "uq_ratio", "uk_ratio"};
const char *const qk_csv_columns[QK_CSV_NCOLS] = {
    "step", "layer", "head", "gq_norm", "gk_norm", "gv_norm", "go_norm",
    "wq_norm", "wk_norm", "uq_ratio", "uk_ratio"};

void qk_norms_create(QkNorms *q, const Model *m) {
    const ModelShape *s = &m->shape;
    q->L = s->L;
    q->NH = s->NH;
    q->tied = s->qk_tied;
    q->sq = xcalloc((size_t)QK_NQ * s->L * s->NH, sizeof(double));
    q->n_before = (size_t)(s->qk_tied ? 1 : 2) * s->L * s->C * s->C;
    q->before = xcalloc(q->n_before, sizeof(real));
}

void qk_norms_free(QkNorms *q) {
    free(q->sq);
    free(q->before);
    memset(q, 0, sizeof *q);
}

static double *sq_at(const QkNorms *q, int k, int l, int h) {
    return q->sq + ((size_t)k * q->L + l) * q->NH + h;
}

/* Sum of squares of rows r0..r0+nr-1, columns c0..c0+nc-1 of a row-major
 * matrix with `ld` columns. */
static double block_sq(const real *a, size_t ld, size_t r0, size_t nr, size_t c0, size_t nc) {
    if (c0 == 0 && nc == ld) return sum_squares(a + r0 * ld, nr * nc); /* whole rows: one run */
    double s = 0;
    for (size_t r = r0; r < r0 + nr; r++) s += sum_squares(a + r * ld + c0, nc);
    return s;
}

/* The gradient and weight norms per head: W_Q, W_K and W_V by the head's
 * rows, W_O by its input columns; tied, the gradients of the two paths (the
 * shared W_Q's gradient is their sum). Each (layer, head) fills its own
 * slots. */
void qk_norms_measure_grads(QkNorms *q, const Model *m) {
    size_t C = m->shape.C, hs = C / q->NH, CC = C * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int l = 0; l < q->L; l++)
        for (int h = 0; h < q->NH; h++) {
            size_t r0 = h * hs;
            *sq_at(q, QK_GO, l, h) = block_sq(m->g.wo + l * CC, C, 0, C, r0, hs);
            *sq_at(q, QK_GQ, l, h) = block_sq(model_grad_query_path(m, l), C, r0, hs, 0, C);
            *sq_at(q, QK_GK, l, h) = block_sq(model_grad_key_path(m, l), C, r0, hs, 0, C);
            *sq_at(q, QK_GV, l, h) = block_sq(m->g.wv + l * CC, C, r0, hs, 0, C);
            *sq_at(q, QK_WQ, l, h) = block_sq(m->p.wq + l * CC, C, r0, hs, 0, C);
            *sq_at(q, QK_WK, l, h) = block_sq(m->p.wk + l * CC, C, r0, hs, 0, C);
        }
}

void qk_norms_before_update(QkNorms *q, const Model *m) {
    qk_norms_measure_grads(q, m);
    size_t LCC = (size_t)q->L * m->shape.C * m->shape.C;
    memcpy(q->before, m->p.wq, LCC * sizeof(real));
    if (!q->tied) memcpy(q->before + LCC, m->p.wk, LCC * sizeof(real));
}

void qk_norms_after_update(QkNorms *q, const Model *m) {
    size_t C = m->shape.C, hs = C / q->NH, CC = C * C, LCC = (size_t)q->L * CC;
#pragma omp parallel for collapse(2) schedule(static)
    for (int l = 0; l < q->L; l++)
        for (int h = 0; h < q->NH; h++) {
            size_t at = l * CC + h * hs * C;
            double uq = sum_squares_diff(m->p.wq + at, q->before + at, hs * C);
            /* tied: W_K is W_Q, and so is its update */
            *sq_at(q, QK_UQ, l, h) = uq;
            *sq_at(q, QK_UK, l, h) =
                q->tied ? uq : sum_squares_diff(m->p.wk + at, q->before + LCC + at, hs * C);
        }
}

double qk_norms_get(const QkNorms *q, int k, int layer, int head) {
    int h0 = head < 0 ? 0 : head, h1 = head < 0 ? q->NH : head + 1;
    double num = 0, den = 0;
    for (int h = h0; h < h1; h++) {
        num += *sq_at(q, k, layer, h);
        if (k == QK_UQ || k == QK_UK) den += *sq_at(q, k == QK_UQ ? QK_WQ : QK_WK, layer, h);
    }
    if (k == QK_UQ || k == QK_UK) return den > 0 ? sqrt(num / den) : 0;
    return sqrt(num);
}

void qk_csv_write_step(CsvLog *w, const QkNorms *q, int step) {
    for (int l = 0; l < q->L; l++)
        for (int h = 0; h < q->NH; h++) {
            csvlog_int(w, step);
            csvlog_int(w, l);
            csvlog_int(w, h);
            for (int k = 0; k < QK_NQ; k++) csvlog_num(w, qk_norms_get(q, k, l, h));
            csvlog_end_row(w);
        }
}

long qk_csv_read(const char *path, void (*row)(void *ctx, int step, int layer, int head,
                                                const double *values),
                 void *ctx, Error *err) {
    CsvTable t;
    if (csvtable_read(&t, path, qk_csv_columns, QK_CSV_NCOLS, 0, err)) return -1;
    long rows = (long)t.rows;
    for (size_t r = 0; r < t.rows && rows >= 0; r++) {
        const double *v = t.v + r * QK_CSV_NCOLS;
        if (!(fabs(v[0]) < INT_MAX && fabs(v[1]) < INT_MAX && fabs(v[2]) < INT_MAX))
            rows = error_set(err, "%s: row %zu: step, layer and head must be numbers", path, r + 2);
        else
            row(ctx, (int)v[0], (int)v[1], (int)v[2], v + 3);
    }
    csvtable_free(&t);
    return rows;
}

void qk_probe_attention(Model *m, const int *tokens, int T, float *out) {
    const ModelShape *s = &m->shape;
    const ForwardHooks keep = {.keep_pattern = 1};
    model_forward_hooked(m, tokens, NULL, 1, T, &keep);
    size_t per_layer = (size_t)s->NH * T * T;
    for (int l = 0; l < s->L; l++)
        for (size_t i = 0; i < per_layer; i++) out[l * per_layer + i] = (float)model_pattern(m, l)[i];
}

void qk_watch_create(QkWatch *w, const ModelShape *s, const int *probe,
                     const uint32_t *chars, int T, int steps) {
    memset(w, 0, sizeof *w);
    w->L = s->L;
    w->NH = s->NH;
    w->T = T;
    w->steps = steps;
    w->probe = xmalloc((size_t)T * sizeof(int));
    w->probe_chars = xmalloc((size_t)T * sizeof(uint32_t));
    memcpy(w->probe, probe, (size_t)T * sizeof(int));
    memcpy(w->probe_chars, chars, (size_t)T * sizeof(uint32_t));
    size_t n = ((size_t)steps + 1) * s->L * s->NH;
    w->log2_ratio = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) w->log2_ratio[i] = NAN;
}

void qk_watch_free(QkWatch *w) {
    for (int i = 0; i < w->n_maps; i++) free(w->maps[i]);
    free(w->maps);
    free(w->map_steps);
    free(w->probe);
    free(w->probe_chars);
    free(w->log2_ratio);
    memset(w, 0, sizeof *w);
}

static void watch_set_ratio(QkWatch *w, int step, int l, int h, double gq, double gk) {
    if (step < 0 || step > w->steps || l >= w->L || h >= w->NH) return;
    w->log2_ratio[((size_t)step * w->L + l) * w->NH + h] =
        (gq > 0 && gk > 0) ? (float)log2(gq / gk) : NAN;
}

/* The value as qk.csv stores it (%.9g), so a resumed run, which reloads the
 * history from qk.csv, draws exactly the same balance picture. */
static double as_logged(double v) {
    char buf[CSVLOG_NUM_MAX];
    csvlog_format(buf, v);
    return strtod(buf, NULL);
}

void qk_watch_record(QkWatch *w, const QkNorms *q, int step) {
    for (int l = 0; l < w->L; l++)
        for (int h = 0; h < w->NH; h++)
            watch_set_ratio(w, step, l, h, as_logged(qk_norms_get(q, QK_GQ, l, h)),
                            as_logged(qk_norms_get(q, QK_GK, l, h)));
}

static size_t watch_map_len(const QkWatch *w) {
    return (size_t)w->L * w->NH * w->T * w->T;
}

/* Adds (or replaces) the map of a step, keeping map_steps ascending. */
static void watch_add_map(QkWatch *w, int step, float *map) {
    int i = 0;
    while (i < w->n_maps && w->map_steps[i] < step) i++;
    if (i < w->n_maps && w->map_steps[i] == step) {
        free(w->maps[i]);
        w->maps[i] = map;
        return;
    }
    if (w->n_maps == w->cap_maps) {
        w->cap_maps = w->cap_maps ? 2 * w->cap_maps : 16;
        w->maps = realloc(w->maps, (size_t)w->cap_maps * sizeof(float *));
        w->map_steps = realloc(w->map_steps, (size_t)w->cap_maps * sizeof(int));
        CHECK(w->maps && w->map_steps, "out of memory for attention history");
    }
    memmove(w->maps + i + 1, w->maps + i, (size_t)(w->n_maps - i) * sizeof(float *));
    memmove(w->map_steps + i + 1, w->map_steps + i, (size_t)(w->n_maps - i) * sizeof(int));
    w->maps[i] = map;
    w->map_steps[i] = step;
    w->n_maps++;
}

/* qk_balance.png: steps 1 .. the latest heatmap step, resampled to at most
 * HEATMAP_BALANCE_COLS columns, each the mean of its steps' log2(gq/gk);
 * drawn in mem when it fits. */
static int watch_write_balance(const QkWatch *w, const char *run_dir, Span mem, Error *err) {
    int last = w->n_maps ? w->map_steps[w->n_maps - 1] : 0;
    if (last > w->steps) last = w->steps;
    if (last < 1) return 0;
    int rows = w->L * w->NH, cols = last < HEATMAP_BALANCE_COLS ? last : HEATMAP_BALANCE_COLS;
    float *vals = xmalloc((size_t)rows * cols * sizeof(float));
    for (int c = 0; c < cols; c++) {
        int lo = 1 + (int)((long)c * last / cols), hi = (int)((long)(c + 1) * last / cols);
        for (int r = 0; r < rows; r++) {
            double sum = 0;
            int n = 0;
            for (int s = lo; s <= hi; s++) {
                float v = w->log2_ratio[(size_t)s * rows + r];
                if (!isnan(v)) {
                    sum += v;
                    n++;
                }
            }
            vals[(size_t)r * cols + c] = n ? (float)(sum / n) : NAN;
        }
    }
    char **labels = xmalloc((size_t)rows * sizeof(char *));
    for (int r = 0; r < rows; r++) {
        labels[r] = xmalloc(32);
        snprintf(labels[r], 32, "L%d H%d", r / w->NH, r % w->NH);
    }
    char path[1500];
    snprintf(path, sizeof path, "%s/qk_balance.png", run_dir);
    int rc =
        heatmap_write_balance(path, vals, rows, cols, (const char *const *)labels, last, mem, err);
    for (int r = 0; r < rows; r++) free(labels[r]);
    free(labels);
    free(vals);
    return rc;
}

/* Picture job j of a snapshot: j < L is layer j's panels at this step, L + l
 * layer l's filmstrip over every step so far. */
static int watch_write_picture(const QkWatch *w, const float *now, const char *dir,
                               const char *run_dir, int j, const float **maps, Span mem,
                               Error *err) {
    size_t per_layer = (size_t)w->NH * w->T * w->T;
    char path[1500];
    if (j < w->L) {
        snprintf(path, sizeof path, "%s/layer_%d.png", dir, j);
        return heatmap_write_layer(path, now + j * per_layer, w->NH, w->T, w->probe_chars, j, mem,
                                   err);
    }
    int l = j - w->L;
    for (int i = 0; i < w->n_maps; i++) maps[i] = w->maps[i] + l * per_layer;
    snprintf(path, sizeof path, "%s/attn/filmstrip_L%d.png", run_dir, l);
    return heatmap_write_filmstrip(path, maps, w->map_steps, w->n_maps, w->NH, w->T, l, mem,
                                   err);
}

static int write_raw_floats(const char *path, const float *x, size_t n, Error *err) {
    char tmp[1600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    /* little-endian on every platform qkscope builds for (x86-64, aarch64) */
    size_t wrote = fwrite(x, sizeof(float), n, f);
    int bad = fclose(f) != 0 || wrote != n;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
}

int qk_watch_snapshot(QkWatch *w, Model *m, const char *run_dir, int step, Error *err) {
    size_t n = watch_map_len(w);
    float *map = xmalloc(n * sizeof(float));
    qk_probe_attention(m, w->probe, w->T, map);
    char dir[1400], path[1500];
    snprintf(dir, sizeof dir, "%s/attn/step_%06d", run_dir, step);
    snprintf(path, sizeof path, "%s/attention.f32", dir);
    if (dir_create(dir, err) || write_raw_floats(path, map, n, err)) {
        free(map);
        return -1;
    }
    watch_add_map(w, step, map);
    /* PNG encoding is most of a snapshot's time: the pictures are independent
     * files, so the threads share them out; the first failure is reported.
     * Each thread draws in its share of the idle activations, whose pages
     * are resident: the pictures add neither page faults nor peak memory
     * (docs/performance.md, Memory). */
    int jobs = 2 * w->L, failed = jobs;
    Error *errs = xcalloc((size_t)jobs, sizeof *errs);
    Span idle = model_idle_activations(m);
#pragma omp parallel
    {
        const float **maps = xmalloc((size_t)w->n_maps * sizeof *maps);
        size_t tid = 0, threads = 1;
#ifdef _OPENMP
        tid = (size_t)omp_get_thread_num();
        threads = (size_t)omp_get_num_threads();
#endif
        Span mine = span_part(idle, tid, threads);
#pragma omp for schedule(dynamic)
        for (int j = 0; j < jobs; j++)
            if (watch_write_picture(w, map, dir, run_dir, j, maps, mine, &errs[j]))
#pragma omp critical
                if (j < failed) failed = j;
        free(maps);
    }
    if (failed < jobs) *err = errs[failed];
    free(errs);
    if (failed < jobs) return -1;
    /* attn/latest -> step_NNNNNN, replaced atomically */
    char link_tmp[1500], target[32];
    snprintf(target, sizeof target, "step_%06d", step);
    snprintf(link_tmp, sizeof link_tmp, "%s/attn/latest.tmp", run_dir);
    snprintf(path, sizeof path, "%s/attn/latest", run_dir);
    remove(link_tmp);
    if (symlink(target, link_tmp) != 0 || rename(link_tmp, path) != 0)
        return error_set(err, "%s: cannot update link: %s", path, strerror(errno));
    return watch_write_balance(w, run_dir, idle, err);
}

int qk_watch_write_probe(const QkWatch *w, const char *run_dir, Error *err) {
    char path[1500];
    snprintf(path, sizeof path, "%s/attn", run_dir);
    if (dir_create(path, err)) return -1;
    char *text = xmalloc(4 * (size_t)w->T + 1);
    size_t len = 0;
    for (int i = 0; i < w->T; i++) len += (size_t)utf8_encode(w->probe_chars[i], text + len);
    snprintf(path, sizeof path, "%s/attn/probe.txt", run_dir);
    int rc = file_write_atomic(path, text, len, err);
    free(text);
    return rc;
}

static void reload_row(void *ctx, int step, int layer, int head, const double *v) {
    watch_set_ratio(ctx, step, layer, head, v[QK_GQ], v[QK_GK]);
}

int qk_watch_reload(QkWatch *w, const char *run_dir, int upto, Error *err) {
    char path[1500];
    snprintf(path, sizeof path, "%s/qk.csv", run_dir);
    if (qk_csv_read(path, reload_row, w, err) < 0) return -1;
    snprintf(path, sizeof path, "%s/attn", run_dir);
    DIR *d = opendir(path);
    if (!d) return 0; /* no heatmaps yet */
    size_t n = watch_map_len(w);
    for (struct dirent *e; (e = readdir(d));) {
        int step, len = 0;
        if (sscanf(e->d_name, "step_%d%n", &step, &len) != 1 || e->d_name[len] || step > upto)
            continue;
        snprintf(path, sizeof path, "%s/attn/%s/attention.f32", run_dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue; /* a folder cut short by a crash: its maps are redrawn later */
        float *map = xmalloc(n * sizeof(float));
        int extra = 0;
        size_t got = fread(map, sizeof(float), n, f);
        extra = fgetc(f) != EOF;
        fclose(f);
        if (got != n || extra) { /* another probe length: not this run's history */
            free(map);
            continue;
        }
        watch_add_map(w, step, map);
    }
    closedir(d);
    return 0;
}

/* ---- analyses of M_h ---- */

/* out[d, d] = a b^T for a, b of shape [d, C] */
static void gram(double *out, const real *a, const real *b, int d, int C) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)a[(size_t)i * C + c] * b[(size_t)j * C + c];
            out[i * d + j] = s;
        }
}

/* Tr(P Q) for d x d matrices */
static double trace_prod(const double *P, const double *Q, int d) {
    double s = 0;
    for (int i = 0; i < d; i++)
        for (int k = 0; k < d; k++) s += P[i * d + k] * Q[k * d + i];
    return s;
}

double qk_symmetry(const real *wq, const real *wk, int d, int C) {
    double *A = xmalloc(3 * (size_t)d * d * sizeof(double)), *B = A + d * d, *X = B + d * d;
    gram(A, wq, wq, d, C);
    gram(B, wk, wk, d, C);
    gram(X, wk, wq, d, C);
    double norm2 = trace_prod(A, B, d), tr2 = trace_prod(X, X, d);
    free(A);
    return norm2 > 0 ? tr2 / norm2 : 0;
}

/* Sum of the elementwise products of two d x d matrices. */
static double frob_dot(const double *P, const double *Q, int d) {
    double s = 0;
    for (int i = 0; i < d * d; i++) s += P[i] * Q[i];
    return s;
}

double qk_bilinear_cosine(const real *wq_a, const real *wk_a, const real *wq_b,
                          const real *wk_b, int d, int C) {
    /* <M_a, M_b> = sum_ab (Wq_a Wq_b^T)_ab (Wk_a Wk_b^T)_ab */
    double *Gq = xmalloc(2 * (size_t)d * d * sizeof(double)), *Gk = Gq + d * d;
    gram(Gq, wq_a, wq_b, d, C);
    gram(Gk, wk_a, wk_b, d, C);
    double dot = frob_dot(Gq, Gk, d);
    gram(Gq, wq_a, wq_a, d, C);
    gram(Gk, wk_a, wk_a, d, C);
    double na = frob_dot(Gq, Gk, d);
    gram(Gq, wq_b, wq_b, d, C);
    gram(Gk, wk_b, wk_b, d, C);
    double nb = frob_dot(Gq, Gk, d);
    free(Gq);
    return na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
}

double qk_js_divergence(const double *p, const double *q, int n) {
    double js = 0;
    for (int i = 0; i < n; i++) {
        double mix = 0.5 * (p[i] + q[i]);
        if (p[i] > 0) js += 0.5 * p[i] * log2(p[i] / mix);
        if (q[i] > 0) js += 0.5 * q[i] * log2(q[i] / mix);
    }
    return js > 0 ? js : 0;
}

void qk_bilinear(double *out, const real *wq, const real *wk, int d, int C) {
    for (size_t i = 0; i < (size_t)C * C; i++) out[i] = 0;
    for (int a = 0; a < d; a++)
        for (int i = 0; i < C; i++) {
            double q = wq[(size_t)a * C + i];
            for (int j = 0; j < C; j++) out[(size_t)i * C + j] += q * wk[(size_t)a * C + j];
        }
}

/* Sum of (x_i - thr) over x_i above thr = mean + 2 std of the set. */
static double excess_over_threshold(const double *x, int n) {
    double mean = 0, var = 0, ex = 0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    double thr = mean + 2 * sqrt(var / n);
    for (int i = 0; i < n; i++)
        if (x[i] > thr) ex += x[i] - thr;
    return ex;
}

double qk_directionality(const double *M, int C) {
    double *r = xcalloc(2 * (size_t)C, sizeof(double)), *c = r + C;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            double v = M[(size_t)i * C + j] * M[(size_t)i * C + j];
            r[i] += v;
            c[j] += v;
        }
    for (int i = 0; i < C; i++) {
        r[i] = sqrt(r[i]);
        c[i] = sqrt(c[i]);
    }
    double R = excess_over_threshold(r, C), Cx = excess_over_threshold(c, C);
    free(r);
    return R + Cx > 0 ? (Cx - R) / (Cx + R) : 0;
}

/* Orthonormal basis of the row space of a [d, C] into q [d, C] by modified
 * Gram-Schmidt; rows that are (numerically) dependent come out zero.
 * Returns the rank. */
static int row_basis(double *q, const real *a, int d, int C) {
    int rank = 0;
    for (int i = 0; i < d; i++) {
        double *v = q + (size_t)rank * C, n0 = 0;
        for (int c = 0; c < C; c++) {
            v[c] = a[(size_t)i * C + c];
            n0 += v[c] * v[c];
        }
        for (int pass = 0; pass < 2; pass++) /* twice is enough (Kahan-Parlett) */
            for (int j = 0; j < rank; j++) {
                const double *u = q + (size_t)j * C;
                double dot = 0;
                for (int c = 0; c < C; c++) dot += u[c] * v[c];
                for (int c = 0; c < C; c++) v[c] -= dot * u[c];
            }
        double n = 0;
        for (int c = 0; c < C; c++) n += v[c] * v[c];
        if (n <= 1e-20 * n0 || n == 0) continue;
        n = 1 / sqrt(n);
        for (int c = 0; c < C; c++) v[c] *= n;
        rank++;
    }
    for (size_t i = (size_t)rank * C; i < (size_t)d * C; i++) q[i] = 0;
    return rank;
}

/* Eigenvalues of a symmetric n x n matrix (destroyed) by cyclic Jacobi
 * rotations, into ev[n]. */
static void jacobi_eigenvalues(double *a, int n, double *ev) {
    for (int sweep = 0; sweep < 64; sweep++) {
        double off = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
        if (off < 1e-30) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double cs = 1 / sqrt(t * t + 1), sn = t * cs;
                for (int k = 0; k < n; k++) { /* rotate columns p, q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = cs * akp - sn * akq;
                    a[k * n + q] = sn * akp + cs * akq;
                }
                for (int k = 0; k < n; k++) { /* and rows p, q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = cs * apk - sn * aqk;
                    a[q * n + k] = sn * apk + cs * aqk;
                }
            }
    }
    for (int i = 0; i < n; i++) ev[i] = a[i * n + i];
}

void qk_principal_cosines(const real *wq, const real *wk, int d, int C, double *cosines) {
    double *Q1 = xmalloc(2 * (size_t)d * C * sizeof(double)), *Q2 = Q1 + (size_t)d * C;
    double *S = xmalloc(2 * (size_t)d * d * sizeof(double)), *G = S + d * d;
    row_basis(Q1, wq, d, C);
    row_basis(Q2, wk, d, C);
    /* S = Q1 Q2^T; its singular values are the cosines: eigenvalues of S S^T */
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int c = 0; c < C; c++) s += Q1[(size_t)i * C + c] * Q2[(size_t)j * C + c];
            S[i * d + j] = s;
        }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += S[i * d + k] * S[j * d + k];
            G[i * d + j] = s;
        }
    jacobi_eigenvalues(G, d, cosines);
    for (int i = 0; i < d; i++) cosines[i] = sqrt(fmin(1.0, fmax(0.0, cosines[i])));
    for (int i = 1; i < d; i++) /* descending */
        for (int j = i; j > 0 && cosines[j - 1] < cosines[j]; j--) {
            double t = cosines[j];
            cosines[j] = cosines[j - 1];
            cosines[j - 1] = t;
        }
    free(Q1);
    free(S);
}

void qk_attention_stats(const real *att, int B, int NH, int T, double *entropy,
                        double *prev_token) {
    for (int h = 0; h < NH; h++) {
        double ent = 0, prev = 0;
        int rows = 0;
        for (int b = 0; b < B; b++)
            for (int t = 1; t < T; t++) {
                const real *row = att + (((size_t)b * NH + h) * T + t) * T;
                double e = 0;
                for (int j = 0; j <= t; j++)
                    if (row[j] > 0) e -= row[j] * log(row[j]);
                ent += e / log(t + 1.0);
                prev += row[t - 1];
                rows++;
            }
        entropy[h] = rows ? ent / rows : 0;
        prev_token[h] = rows ? prev / rows : 0;
    }
}

const char *const qk_eval_columns[QK_EVAL_NCOLS] = {
    "step", "layer", "head", "symmetry", "directionality", "balance", "overlap_mean",
    "overlap_max", "swap_delta", "entropy", "prev_token"};

typedef struct {
    int L, NH;
    double *entropy, *prev; /* [L * NH] window-weighted sums */
    double *e, *p;          /* [NH] one chunk */
    int windows;
    int per_target;         /* a task: losses weighted by scored targets */
    EvalSums *swapped;      /* [L * NH + 1] each head swapped, then all of them */
    unsigned char *swap_flags; /* [L * NH] the heads a swapped forward exchanges */
} StatsAcc;

/* After a chunk's forward: its attention statistics, then its loss with each
 * head's W_Q and W_K swapped (from the head's block on: the blocks below are
 * unchanged), deepest layer first, so every block's input stays that of the
 * unswapped model, and last with all heads swapped. */
static void stats_chunk(void *ctx, Model *m, int nb) {
    StatsAcc *a = ctx;
    int T = m->T;
    for (int l = 0; l < a->L; l++) {
        qk_attention_stats(model_pattern(m, l), nb, a->NH, T, a->e, a->p);
        for (int h = 0; h < a->NH; h++) {
            a->entropy[l * a->NH + h] += a->e[h] * nb;
            a->prev[l * a->NH + h] += a->p[h] * nb;
        }
    }
    a->windows += nb;
    /* the swapped forwards give losses alone */
    size_t LH = (size_t)a->L * a->NH;
    unsigned char *flags = a->swap_flags;
    ForwardHooks swap = {.swap_qk = flags};
    for (int l = a->L - 1; l >= 0; l--)
        for (int h = 0; h < a->NH; h++) {
            flags[l * a->NH + h] = 1;
            model_forward_from(m, l, &swap);
            model_eval_add(&a->swapped[l * a->NH + h], m, a->per_target);
            flags[l * a->NH + h] = 0;
        }
    memset(flags, 1, LH);
    model_forward_from(m, 0, &swap);
    model_eval_add(&a->swapped[LH], m, a->per_target);
    memset(flags, 0, LH);
}

double qk_eval_heads(Model *m, const Corpus *c, int count, int B, int *inputs, int *targets,
                     QkHeadEval *heads, double *base_loss) {
    const ModelShape *s = &m->shape;
    int L = s->L, NH = s->NH, C = s->C, d = C / NH;
    StatsAcc acc = {.L = L, .NH = NH, .per_target = c->task.kind != TASK_NONE};
    acc.swapped = xcalloc((size_t)L * NH + 1, sizeof(EvalSums));
    acc.entropy = xcalloc((size_t)2 * L * NH + 2 * NH, sizeof(double));
    acc.prev = acc.entropy + L * NH;
    acc.e = acc.prev + L * NH;
    acc.p = acc.e + NH;
    acc.swap_flags = xcalloc((size_t)L * NH, 1);
    /* the statistics read every row of every layer's attention */
    const ForwardHooks keep = {.keep_pattern = 1};
    double base =
        model_eval_windows(m, c, 1, count, B, inputs, targets, &keep, stats_chunk, &acc, NULL);
    double *cosines = xmalloc((size_t)d * sizeof(double));
    double *M = xmalloc((size_t)C * C * sizeof(double));
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++) {
            QkHeadEval *e = &heads[l * NH + h];
            size_t off = (size_t)l * C * C + (size_t)h * d * C;
            const real *wq = m->p.wq + off, *wk = m->p.wk + off;
            e->symmetry = qk_symmetry(wq, wk, d, C);
            qk_bilinear(M, wq, wk, d, C);
            e->directionality = qk_directionality(M, C);
            double nq = 0, nk = 0;
            for (size_t i = 0; i < (size_t)d * C; i++) {
                nq += (double)wq[i] * wq[i];
                nk += (double)wk[i] * wk[i];
            }
            e->balance = nq - nk;
            qk_principal_cosines(wq, wk, d, C, cosines);
            e->overlap_max = cosines[0];
            e->overlap_mean = 0;
            for (int i = 0; i < d; i++) e->overlap_mean += cosines[i] / d;
            e->entropy = acc.entropy[l * NH + h] / acc.windows;
            e->prev_token = acc.prev[l * NH + h] / acc.windows;
            const EvalSums *sw = &acc.swapped[l * NH + h];
            e->swap_delta = sw->loss / sw->weight - base;
        }
    const EvalSums *sw = &acc.swapped[L * NH];
    double all = sw->loss / sw->weight - base;
    free(acc.swapped);
    free(acc.swap_flags);
    free(cosines);
    free(M);
    free(acc.entropy);
    if (base_loss) *base_loss = base;
    return all;
}

void qk_eval_csv_write(CsvLog *w, int step, const QkHeadEval *heads, int L, int NH,
                       double swap_all) {
    for (int i = 0; i <= L * NH; i++) {
        int all = i == L * NH;
        csvlog_int(w, step);
        csvlog_int(w, all ? -1 : i / NH);
        csvlog_int(w, all ? -1 : i % NH);
        const QkHeadEval *e = &heads[all ? 0 : i];
        double v[] = {e->symmetry, e->directionality, e->balance, e->overlap_mean,
                      e->overlap_max, all ? swap_all : e->swap_delta, e->entropy, e->prev_token};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
            if (all && k != 5) csvlog_str(w, "");
            else csvlog_num(w, v[k]);
        }
        csvlog_end_row(w);
    }
}

/* y[d] = P x for P [d, d] and a strided x (x[i * stride]). */
static void gauge_vec(real *x, size_t stride, const double *P, int d, double *tmp) {
    for (int i = 0; i < d; i++) {
        double s = 0;
        for (int k = 0; k < d; k++) s += P[i * d + k] * x[(size_t)k * stride];
        tmp[i] = s;
    }
    for (int i = 0; i < d; i++) x[(size_t)i * stride] = (real)tmp[i];
}

/* Rows of w ([d, C]) mixed by P: w -> P w; and the head's bias likewise. */
static void gauge_rows(real *w, real *b, int C, const double *P, int d, double *tmp) {
    for (int c = 0; c < C; c++) gauge_vec(w + c, (size_t)C, P, d, tmp);
    if (b) gauge_vec(b, 1, P, d, tmp);
}

void qk_gauge_apply(Model *m, Rng *r) {
    const ModelShape *s = &m->shape;
    int C = s->C, d = C / s->NH;
    double *U = xmalloc((size_t)d * d * sizeof(double)), *P = xmalloc((size_t)d * d * sizeof(double));
    double *Pit = xmalloc((size_t)d * d * sizeof(double)), *D = xmalloc((size_t)d * sizeof(double));
    double *tmp = xmalloc((size_t)d * sizeof(double));
    real *g = xmalloc((size_t)d * d * sizeof(real));
    for (int l = 0; l < s->L; l++)
        for (int h = 0; h < s->NH; h++) {
            /* U: orthonormal rows from a random Gaussian matrix */
            for (int i = 0; i < d * d; i++) g[i] = (real)rng_normal(r);
            CHECK(row_basis(U, g, d, d) == d, "gauge: random matrix was singular");
            for (int i = 0; i < d; i++)
                D[i] = s->qk_tied ? 1 : exp(log(2.0) * (2 * rng_uniform(r) - 1));
            /* A = U D and A^-T = U D^-1 (U^-T = U) */
            for (int i = 0; i < d; i++)
                for (int k = 0; k < d; k++) {
                    P[i * d + k] = U[i * d + k] * D[k];
                    Pit[i * d + k] = U[i * d + k] / D[k];
                }
            size_t w = (size_t)l * C * C + (size_t)h * d * C, b = (size_t)l * C + (size_t)h * d;
            gauge_rows(m->p.wq + w, s->bias ? m->p.bq + b : NULL, C, P, d, tmp);
            if (!s->qk_tied) gauge_rows(m->p.wk + w, s->bias ? m->p.bk + b : NULL, C, Pit, d, tmp);
        }
    free(U);
    free(P);
    free(Pit);
    free(D);
    free(tmp);
    free(g);
}
