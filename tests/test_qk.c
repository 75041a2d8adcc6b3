/* The Q/K logs: per-head norms equal norms recomputed from the full gradient
 * and weight tensors; tied qk's two paths add up to the shared gradient;
 * layer totals and update ratios; qk.csv parses back with libcsv; its
 * numbers' text is printf's %.9g. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "check.h"
#include "csvtable.h"
#include "optim.h"
#include "qk.h"

static double frob_rows(const real *w, int C, int r0, int nr) {
    double s = 0;
    for (int r = r0; r < r0 + nr; r++)
        for (int c = 0; c < C; c++) s += (double)w[(size_t)r * C + c] * w[(size_t)r * C + c];
    return sqrt(s);
}

static double frob_cols(const real *w, int C, int c0, int nc) {
    double s = 0;
    for (int r = 0; r < C; r++)
        for (int c = c0; c < c0 + nc; c++) s += (double)w[(size_t)r * C + c] * w[(size_t)r * C + c];
    return sqrt(s);
}

static int close_rel(double a, double b) {
    return fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b)) + 1e-15;
}

static const OptimConfig adam = {.lr = 1e-2, .min_lr = 1e-3, .steps = 10, .beta1 = 0.9,
                                  .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1};

static void build_c(Model *m, int C, int tied, int *inp, int *tgt, Rng *r) {
    ModelShape s = {.V = 9, .L = 2, .NH = 4, .C = C, .maxT = 8, .tie_embeddings = 1,
                    .qk_tied = tied, .bias = 1};
    model_create(m, &s, 2);
    model_init_params(m, r, INIT_GPT2, 0);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (real)(0.05 * rng_normal(r));
    for (int i = 0; i < 16; i++) {
        inp[i] = (int)rng_below(r, 9);
        tgt[i] = (int)rng_below(r, 9);
    }
}

static void build(Model *m, int tied, int *inp, int *tgt, Rng *r) {
    build_c(m, 16, tied, inp, tgt, r);
}

static void test_norms(int tied) {
    Rng r;
    rng_seed(&r, 11 + tied);
    Model m;
    int inp[16], tgt[16];
    build(&m, tied, inp, tgt, &r);
    model_forward(&m, inp, tgt, 2, 8);
    model_backward(&m);
    QkNorms q;
    qk_norms_create(&q, &m);
    qk_norms_measure_grads(&q, &m);
    int C = 16, hs = 4;
    size_t CC = 256;
    for (int l = 0; l < 2; l++) {
        /* untied: the W_Q / W_K gradients; tied: the two paths of the shared one */
        const real *gq = tied ? m.scr.dwq_path + l * CC : m.g.wq + l * CC;
        const real *gk = tied ? m.scr.dwk_path + l * CC : m.g.wk + l * CC;
        if (tied)
            for (size_t i = 0; i < CC; i++)
                EXPECT(m.g.wq[l * CC + i] == gq[i] + gk[i], "tied: query + key path != shared gradient");
        double tot = 0;
        for (int h = 0; h < 4; h++) {
            EXPECT(close_rel(qk_norms_get(&q, QK_GQ, l, h), frob_rows(gq, C, h * hs, hs)), "gq L%d H%d", l, h);
            EXPECT(close_rel(qk_norms_get(&q, QK_GK, l, h), frob_rows(gk, C, h * hs, hs)), "gk L%d H%d", l, h);
            EXPECT(close_rel(qk_norms_get(&q, QK_GV, l, h), frob_rows(m.g.wv + l * CC, C, h * hs, hs)), "gv");
            EXPECT(close_rel(qk_norms_get(&q, QK_GO, l, h), frob_cols(m.g.wo + l * CC, C, h * hs, hs)), "go");
            EXPECT(close_rel(qk_norms_get(&q, QK_WQ, l, h), frob_rows(m.p.wq + l * CC, C, h * hs, hs)), "wq");
            EXPECT(close_rel(qk_norms_get(&q, QK_WK, l, h), frob_rows(m.p.wk + l * CC, C, h * hs, hs)), "wk");
            EXPECT(qk_norms_get(&q, QK_GQ, l, h) > 0 && qk_norms_get(&q, QK_GK, l, h) > 0, "nonzero");
            tot += pow(qk_norms_get(&q, QK_GQ, l, h), 2);
        }
        EXPECT(close_rel(qk_norms_get(&q, QK_GQ, l, -1), sqrt(tot)), "layer total of gq");
        EXPECT(close_rel(qk_norms_get(&q, QK_GQ, l, -1), frob_rows(gq, C, 0, C)), "layer total = whole matrix");
    }
    if (!tied) /* the two projections get different gradients */
        EXPECT(!close_rel(qk_norms_get(&q, QK_GQ, 0, 0), qk_norms_get(&q, QK_GK, 0, 0)), "gq == gk?");

    /* update ratios: |W_after - W_before| / |W_before| per head */
    real *before = xmalloc(2 * CC * sizeof(real));
    memcpy(before, m.p.wk, 2 * CC * sizeof(real));
    /* the norms around the update are those of the gradients and of the
     * weights before it */
    double pass[QK_WK + 1][2][4];
    for (int k = 0; k <= QK_WK; k++)
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 4; h++) pass[k][l][h] = qk_norms_get(&q, k, l, h);
    memset(q.sq, 0, (size_t)QK_NQ * 2 * 4 * sizeof(double));
    qk_norms_before_update(&q, &m);
    optim_adamw_update(&m, &adam, 1e-2, 1, 1.0);
    qk_norms_after_update(&q, &m);
    for (int k = 0; k <= QK_WK; k++)
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 4; h++)
                EXPECT(qk_norms_get(&q, k, l, h) == pass[k][l][h],
                       "%s L%d H%d: around the update %g, before it %g", qk_quantity_names[k], l,
                       h, qk_norms_get(&q, k, l, h), pass[k][l][h]);
    for (int l = 0; l < 2; l++)
        for (int h = 0; h < 4; h++) {
            double d = 0;
            for (int rr = h * hs; rr < (h + 1) * hs; rr++)
                for (int c = 0; c < C; c++) {
                    double x = (double)m.p.wk[l * CC + rr * C + c] - before[l * CC + rr * C + c];
                    d += x * x;
                }
            double want = sqrt(d) / frob_rows(before + l * CC, C, h * hs, hs);
            EXPECT(close_rel(qk_norms_get(&q, QK_UK, l, h), want), "uk_ratio L%d H%d: %g vs %g", l, h,
                   qk_norms_get(&q, QK_UK, l, h), want);
            EXPECT(qk_norms_get(&q, QK_UQ, l, h) > 1e-4, "uq_ratio positive");
            if (tied) EXPECT(qk_norms_get(&q, QK_UQ, l, h) == qk_norms_get(&q, QK_UK, l, h), "tied ratios");
        }
    free(before);
    qk_norms_free(&q);
    model_free(&m);
}

/* The norms taken around the update change no bit of it, with 1 or 2
 * threads (a model big enough for the update's parallel region). */
static void test_norms_leave_update(int tied) {
    Rng r;
    rng_seed(&r, 21 + tied);
    Model m[2];
    int inp[16], tgt[16];
    for (int i = 0; i < 2; i++) {
        Rng ri = r;
        build_c(&m[i], 64, tied, inp, tgt, &ri);
        model_forward(&m[i], inp, tgt, 2, 8);
        model_backward(&m[i]);
    }
    EXPECT(m[0].n_params > 65536, "model too small for the parallel update");
    QkNorms q;
    qk_norms_create(&q, &m[0]);
    for (int t = 1; t <= 2; t++) {
#ifdef _OPENMP
        omp_set_num_threads(t);
#endif
        qk_norms_before_update(&q, &m[0]);
        optim_adamw_update(&m[0], &adam, 1e-2, t, 0.5);
        qk_norms_after_update(&q, &m[0]);
#ifdef _OPENMP
        omp_set_num_threads(3 - t);
#endif
        optim_adamw_update(&m[1], &adam, 1e-2, t, 0.5);
        size_t bytes = m[0].n_params * sizeof(real);
        EXPECT(memcmp(m[0].params, m[1].params, bytes) == 0 &&
                   memcmp(m[0].adam_m, m[1].adam_m, bytes) == 0 &&
                   memcmp(m[0].adam_v, m[1].adam_v, bytes) == 0,
               "tied=%d step %d: the norms changed the update", tied, t);
    }
    qk_norms_free(&q);
    model_free(&m[0]);
    model_free(&m[1]);
}

typedef struct {
    long rows;
    int bad;
    int last_step;
    const QkNorms *q;
} ReadBack;

static void on_row(void *ctx, int step, int layer, int head, const double *v) {
    ReadBack *rb = ctx;
    rb->rows++;
    rb->last_step = step;
    for (int k = 0; k < QK_NQ; k++) {
        if (!isfinite(v[k]) || v[k] < 0) rb->bad++;
        /* %.9g round trip */
        double want = qk_norms_get(rb->q, k, layer, head);
        if (fabs(v[k] - want) > 1e-8 * fabs(want) + 1e-30) rb->bad++;
    }
}

/* Whether qk_csv_read refuses a file holding text, with want in the message. */
static int refused(const char *path, ReadBack *rb, Error *err, const char *text,
                   const char *want) {
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
    return qk_csv_read(path, on_row, rb, err) < 0 && strstr(err->msg, want);
}

static void test_csv_roundtrip(void) {
    Rng r;
    rng_seed(&r, 5);
    Model m;
    int inp[16], tgt[16];
    build(&m, 0, inp, tgt, &r);
    model_forward(&m, inp, tgt, 2, 8);
    model_backward(&m);
    QkNorms q;
    qk_norms_create(&q, &m);
    qk_norms_before_update(&q, &m);
    optim_adamw_update(&m, &adam, 1e-2, 1, 1.0);
    qk_norms_after_update(&q, &m);
    char path[] = "/tmp/qk_test_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CsvLog w;
    csvlog_open(&w, path, qk_csv_columns, QK_CSV_NCOLS);
    for (int step = 1; step <= 3; step++) qk_csv_write_step(&w, &q, step);
    csvlog_close(&w);
    ReadBack rb = {.q = &q};
    Error err;
    long n = qk_csv_read(path, on_row, &rb, &err);
    EXPECT(n == 3 * 2 * 4 && rb.rows == n, "qk.csv rows: %ld (%s)", n, n < 0 ? err.msg : "");
    EXPECT(rb.bad == 0, "%d bad values read back", rb.bad);
    EXPECT(rb.last_step == 3, "last step %d", rb.last_step);

    EXPECT(refused(path, &rb, &err, "step,layer,head,gq\n1,0,0,1\n", "no column 'gq_norm'"),
           "a foreign header is refused: %s", err.msg);
    EXPECT(refused(path, &rb, &err,
                   "\"step\",\"layer\",\"head\",\"gq_norm\",\"gk_norm\",\"gv_norm\",\"go_norm\","
                   "\"wq_norm\",\"wk_norm\",\"uq_ratio\",\"uk_ratio\"\n1,0,0,x,1,1,1,1,1,1,1\n",
                   "is not a number"),
           "a non-number is refused: %s", err.msg);
    EXPECT(refused(path, &rb, &err,
                   "step,layer,head,gq_norm,gk_norm,gv_norm,go_norm,wq_norm,wk_norm,uq_ratio,"
                   "uk_ratio\n,0,0,1,1,1,1,1,1,1,1\n",
                   "row 2: step, layer"),
           "an empty step is refused: %s", err.msg);
    /* a column a later version added reads as NAN from an older file, where
     * asked, and is refused otherwise */
    FILE *f = fopen(path, "w");
    CHECK(f && fputs("step,a\n1,2\n3,4\n", f) >= 0 && fclose(f) == 0, "cannot write %s", path);
    const char *const cols[] = {"a", "late", "step"};
    CsvTable t;
    EXPECT(csvtable_read(&t, path, cols, 3, CSVTABLE_ABSENT_NAN, &err) == 0 && t.rows == 2 &&
               csvtable_at(&t, 1, 0) == 4 && isnan(csvtable_at(&t, 0, 1)) &&
               isnan(csvtable_at(&t, 1, 1)) && csvtable_at(&t, 1, 2) == 3,
           "an absent column as NAN");
    csvtable_free(&t);
    EXPECT(csvtable_read(&t, path, cols, 3, 0, &err) == -1 && strstr(err.msg, "no column 'late'"),
           "an absent column refused: %s", err.msg);
    remove(path);
    qk_norms_free(&q);
    model_free(&m);
}

/* A row of the logs is the text printf would write. */
static void test_number_format(void) {
    /* a row of integers and numbers as printf would write it */
    char path[] = "/tmp/qk_fmt_XXXXXX";
    close(mkstemp(path));
    const char *const cols[] = {"a", "b", "c", "d", "e"};
    CsvLog w;
    csvlog_open(&w, path, cols, 5);
    csvlog_int(&w, 0);
    csvlog_int(&w, -7);
    csvlog_int(&w, LLONG_MIN);
    csvlog_int(&w, 1234567890123LL);
    csvlog_num(&w, -0.000123456789);
    csvlog_end_row(&w);
    csvlog_close(&w);
    char want[200], got[200] = "";
    snprintf(want, sizeof want, "\"a\",\"b\",\"c\",\"d\",\"e\"\n0,-7,%lld,1234567890123,%.9g\n",
             LLONG_MIN, -0.000123456789);
    FILE *f = fopen(path, "r");
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    remove(path);
    EXPECT(strcmp(got, want) == 0, "CSV row written as\n%s, not\n%s", got, want);
}

static real *rand_mat(Rng *r, int rows, int cols) {
    real *a = xmalloc((size_t)rows * cols * sizeof(real));
    for (int i = 0; i < rows * cols; i++) a[i] = (real)rng_normal(r);
    return a;
}

/* s on symmetric and antisymmetric M; the d-space traces against the full
 * C x C computation; gauge invariance of s, directionality and the M cosine. */
static void test_symmetry(void) {
    Rng r;
    rng_seed(&r, 3);
    int d = 4, C = 12;
    real *wq = rand_mat(&r, d, C), *wk = rand_mat(&r, d, C);
    EXPECT(fabs(qk_symmetry(wq, wq, d, C) - 1) < 1e-12, "W_K = W_Q: s = %g", qk_symmetry(wq, wq, d, C));
    /* d = 2, C = 2: W_Q = I, W_K = [[0, 1], [-1, 0]] gives M = W_K, antisymmetric */
    real I2[4] = {1, 0, 0, 1}, J2[4] = {0, 1, -1, 0};
    EXPECT(fabs(qk_symmetry(I2, J2, 2, 2) + 1) < 1e-12, "antisymmetric: s = %g", qk_symmetry(I2, J2, 2, 2));
    /* full computation */
    double *M = xmalloc((size_t)C * C * sizeof(double));
    qk_bilinear(M, wq, wk, d, C);
    double tr2 = 0, f2 = 0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            tr2 += M[i * C + j] * M[j * C + i];
            f2 += M[i * C + j] * M[i * C + j];
        }
    double s = qk_symmetry(wq, wk, d, C);
    EXPECT(fabs(s - tr2 / f2) < 1e-6, "d-space s %.9g vs full %.9g", s, tr2 / f2);
    EXPECT(s > -1 && s < 1, "random s in (-1, 1)");
    EXPECT(fabs(qk_bilinear_cosine(wq, wk, wq, wk, d, C) - 1) < 1e-6, "self cosine");
    /* M = W_Q^T W_K: cosine with M^T = W_K^T W_Q is s itself */
    EXPECT(fabs(qk_bilinear_cosine(wq, wk, wk, wq, d, C) - s) < 1e-6, "cos(M, M^T) = s");
    /* gauge: W_Q -> A W_Q, W_K -> A^-T W_K leaves M, hence s and the cosine */
    ModelShape sh = {.V = 3, .L = 1, .NH = 1, .C = 8, .maxT = 2, .tie_embeddings = 1};
    Model m;
    model_create(&m, &sh, 1);
    model_init_params(&m, &r, INIT_GPT2, 0);
    real *q0 = xmalloc(64 * sizeof(real)), *k0 = xmalloc(64 * sizeof(real));
    memcpy(q0, m.p.wq, 64 * sizeof(real));
    memcpy(k0, m.p.wk, 64 * sizeof(real));
    qk_gauge_apply(&m, &r);
    double M0[64], M1[64];
    qk_bilinear(M0, q0, k0, 8, 8);
    qk_bilinear(M1, m.p.wq, m.p.wk, 8, 8);
    double dm = 0, mx = 0;
    for (int i = 0; i < 64; i++) {
        dm = fmax(dm, fabs(M0[i] - M1[i]));
        mx = fmax(mx, fabs(M0[i]));
    }
    EXPECT(dm < 1e-5 * mx, "gauge changed M by %g (max %g)", dm, mx);
    EXPECT(fabs(frob_rows(m.p.wq, 8, 0, 8) - frob_rows(q0, 8, 0, 8)) > 1e-3 * frob_rows(q0, 8, 0, 8),
           "gauge left |W_Q| unchanged");
    EXPECT(fabs(qk_symmetry(q0, k0, 8, 8) - qk_symmetry(m.p.wq, m.p.wk, 8, 8)) < 1e-5, "gauge s");
    EXPECT(fabs(qk_directionality(M0, 8) - qk_directionality(M1, 8)) < 1e-4, "gauge directionality");
    model_free(&m);
    free(q0); free(k0); free(M); free(wq); free(wk);
}

/* Sign convention: one dominant column (a key-side input direction) gives
 * d > 0, one dominant row (query side) d < 0. */
static void test_directionality(void) {
    int C = 32;
    double *M = xcalloc((size_t)C * C, sizeof(double)), *Mt = xcalloc((size_t)C * C, sizeof(double));
    Rng r;
    rng_seed(&r, 8);
    for (int i = 0; i < C * C; i++) M[i] = 0.01 * rng_normal(&r);
    for (int i = 0; i < C; i++) M[i * C + 5] += 1.0; /* column 5 */
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) Mt[j * C + i] = M[i * C + j];
    double d = qk_directionality(M, C), dt = qk_directionality(Mt, C);
    EXPECT(d > 0.9, "column-dominant: d = %g", d);
    EXPECT(fabs(dt + d) < 1e-12, "row-dominant: d = %g", dt);
    double *Z = xcalloc((size_t)C * C, sizeof(double));
    EXPECT(qk_directionality(Z, C) == 0, "zero matrix");
    free(M); free(Mt); free(Z);
}

static void test_principal_angles(void) {
    Rng r;
    rng_seed(&r, 4);
    int d = 3, C = 10;
    real *a = rand_mat(&r, d, C), *b = xmalloc((size_t)d * C * sizeof(real));
    double cs[3];
    /* the same row space, other basis: b = mixes of a's rows */
    for (int i = 0; i < d; i++)
        for (int c = 0; c < C; c++) b[i * C + c] = a[((i + 1) % d) * C + c] + 0.5f * a[i * C + c];
    qk_principal_cosines(a, b, d, C, cs);
    for (int i = 0; i < d; i++) EXPECT(fabs(cs[i] - 1) < 1e-6, "same space: cos %g", cs[i]);
    /* orthogonal spaces: coordinate axes 0..2 vs 3..5 */
    real e[30] = {0}, f[30] = {0};
    for (int i = 0; i < 3; i++) {
        e[i * C + i] = 1;
        f[i * C + 3 + i] = 1;
    }
    qk_principal_cosines(e, f, d, C, cs);
    for (int i = 0; i < d; i++) EXPECT(fabs(cs[i]) < 1e-9, "orthogonal: cos %g", cs[i]);
    /* one shared axis, one at 60 degrees, one orthogonal */
    memset(f, 0, sizeof f);
    f[0 * C + 0] = 1;
    f[1 * C + 1] = 0.5f, f[1 * C + 5] = (real)sqrt(0.75);
    f[2 * C + 7] = 1;
    qk_principal_cosines(e, f, d, C, cs);
    EXPECT(fabs(cs[0] - 1) < 1e-6 && fabs(cs[1] - 0.5) < 1e-6 && fabs(cs[2]) < 1e-6,
           "cosines %g %g %g, expected 1 0.5 0", cs[0], cs[1], cs[2]);
    free(a); free(b);
}

static void test_js_and_stats(void) {
    double p[3] = {1, 0, 0}, q[3] = {0, 1, 0}, u[3] = {1 / 3.0, 1 / 3.0, 1 / 3.0};
    EXPECT(fabs(qk_js_divergence(p, q, 3) - 1) < 1e-12, "disjoint: JS = 1 bit");
    EXPECT(qk_js_divergence(u, u, 3) == 0, "equal: JS = 0");
    /* uniform causal attention: entropy 1 per row; previous-token weight 1/(t+1) */
    int T = 4;
    real att[16] = {0};
    for (int t = 0; t < T; t++)
        for (int j = 0; j <= t; j++) att[t * T + j] = (real)(1.0 / (t + 1));
    double ent, prev;
    qk_attention_stats(att, 1, 1, T, &ent, &prev);
    EXPECT(fabs(ent - 1) < 1e-6, "uniform entropy %g", ent);
    EXPECT(fabs(prev - (0.5 + 1 / 3.0 + 0.25) / 3) < 1e-6, "uniform prev-token %g", prev);
    memset(att, 0, sizeof att);
    att[0] = 1;
    for (int t = 1; t < T; t++) att[t * T + t - 1] = 1;
    qk_attention_stats(att, 1, 1, T, &ent, &prev);
    EXPECT(ent == 0 && prev == 1, "previous-token head: entropy %g prev %g", ent, prev);
}

int main(void) {
    test_symmetry();
    test_directionality();
    test_principal_angles();
    test_js_and_stats();
    test_norms(0);
    test_norms(1);
    test_norms_leave_update(0);
    test_norms_leave_update(1);
    test_csv_roundtrip();
    test_number_format();
    CHECK_DONE("test_qk");
}
