/* The Q/K logs: per-head norms equal norms recomputed from the full gradient
 * and weight tensors; tied qk's two paths add up to the shared gradient;
 * layer totals and update ratios; qk.csv parses back with libcsv. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
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

static void build(Model *m, int tied, int *inp, int *tgt, Rng *r) {
    ModelShape s = {.V = 9, .L = 2, .NH = 4, .C = 16, .maxT = 8, .tie_embeddings = 1,
                    .qk_tied = tied, .bias = 1};
    model_create(m, &s, 2);
    model_init_params(m, r, 0);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (real)(0.05 * rng_normal(r));
    for (int i = 0; i < 16; i++) {
        inp[i] = (int)rng_below(r, 9);
        tgt[i] = (int)rng_below(r, 9);
    }
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
    qk_norms_create(&q, &m.shape);
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
    OptimConfig o = {.lr = 1e-2, .min_lr = 1e-3, .steps = 10, .beta1 = 0.9, .beta2 = 0.99,
                     .eps = 1e-8, .weight_decay = 0.1};
    optim_adamw_update(&m, &o, 1e-2, 1, 1.0);
    qk_norms_measure_update(&q, &m);
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

static void test_csv_roundtrip(void) {
    Rng r;
    rng_seed(&r, 5);
    Model m;
    int inp[16], tgt[16];
    build(&m, 0, inp, tgt, &r);
    model_forward(&m, inp, tgt, 2, 8);
    model_backward(&m);
    QkNorms q;
    qk_norms_create(&q, &m.shape);
    qk_norms_measure_grads(&q, &m);
    qk_norms_measure_update(&q, &m);
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

    FILE *f = fopen(path, "w");
    fprintf(f, "step,layer,head,gq\n1,0,0,1\n");
    fclose(f);
    EXPECT(qk_csv_read(path, on_row, &rb, &err) < 0 && strstr(err.msg, "column 4 is 'gq'"),
           "a foreign header is refused: %s", err.msg);
    f = fopen(path, "w");
    fprintf(f, "\"step\",\"layer\",\"head\",\"gq_norm\",\"gk_norm\",\"gv_norm\",\"go_norm\","
               "\"wq_norm\",\"wk_norm\",\"uq_ratio\",\"uk_ratio\"\n1,0,0,x,1,1,1,1,1,1,1\n");
    fclose(f);
    EXPECT(qk_csv_read(path, on_row, &rb, &err) < 0 && strstr(err.msg, "is not a number"),
           "a non-number is refused: %s", err.msg);
    remove(path);
    qk_norms_free(&q);
    model_free(&m);
}

int main(void) {
    test_norms(0);
    test_norms(1);
    test_csv_roundtrip();
    CHECK_DONE("test_qk");
}
