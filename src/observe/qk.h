/* The Q/K analyses: per-head gradient and weight norms of W_Q, W_K, W_V, W_O
 * every step (qk.csv), and the attention of a probe text. */
#ifndef QK_QK_H
#define QK_QK_H

#include <stdint.h>

#include "metrics.h"
#include "model.h"
#include "optim.h"

/* Quantities logged per (layer, head), in qk.csv column order. */
enum {
    QK_GQ, QK_GK, QK_GV, QK_GO, /* gradient norms (query path / key path for tied qk) */
    QK_WQ, QK_WK,               /* weight norms of the head's slice, before the update */
    QK_UQ, QK_UK,               /* |update of the slice| / |slice| */
    QK_NQ
};
extern const char *const qk_quantity_names[QK_NQ]; /* "gq_norm", ..., "uk_ratio" */

/* Sums of squares per (layer, head), from which head norms and per-layer
 * totals (the norm of the whole layer matrix) follow. */
typedef struct {
    int L, NH, tied;
    double *sq;       /* [QK_NQ, L, NH] squared norms (for U*: of the update) */
    real *before;     /* W_Q (and W_K untied) before the update: [1 or 2, L, C, C] */
    size_t n_before;
} QkNorms;

/* For m's shape. */
void qk_norms_create(QkNorms *q, const Model *m);
void qk_norms_free(QkNorms *q);
/* After model_backward: the gradient and weight norms (no update norms). */
void qk_norms_measure_grads(QkNorms *q, const Model *m);
/* Around optim_adamw_update: before it, the gradient and weight norms and a
 * copy of W_Q and W_K; after it, the update norms against that copy. */
void qk_norms_before_update(QkNorms *q, const Model *m);
void qk_norms_after_update(QkNorms *q, const Model *m);
/* Head value of quantity k; layer total when head < 0. Ratios are
 * sqrt(|dW|^2 / |W|^2) at either level. */
double qk_norms_get(const QkNorms *q, int k, int layer, int head);

/* qk.csv: long format, one row per (step, layer, head). */
extern const char *const qk_csv_columns[3 + QK_NQ];
#define QK_CSV_NCOLS (3 + QK_NQ)
void qk_csv_write_step(CsvLog *w, const QkNorms *q, int step);

/* Reads qk.csv back (csvtable_read): calls row(ctx, step, layer, head,
 * values[QK_NQ]) for each complete data row in order. Returns the row count,
 * or -1 with a message for a file that is not a qk.csv (a missing column, a
 * field count, a field that is not a number). */
long qk_csv_read(const char *path, void (*row)(void *ctx, int step, int layer, int head,
                                                const double *values),
                 void *ctx, Error *err);

/* Runs the model on tokens[0..T-1] (one sequence, T <= block_size) and copies
 * the attention weights to out [L, NH, T, T]. */
void qk_probe_attention(Model *m, const int *tokens, int T, float *out);


/* What the trainer keeps to draw the Q/K pictures over training: the probe,
 * the attention maps of past heatmap steps (filmstrips), and log2(gq/gk) of
 * every step (qk_balance.png). */
typedef struct {
    int L, NH, T;            /* T = probe length */
    int *probe;              /* [T] probe tokens */
    uint32_t *probe_chars;   /* [T] their code points (labels) */
    int steps;               /* train.steps: history length - 1 */
    float *log2_ratio;       /* [steps + 1, L * NH] log2(gq_norm / gk_norm), NAN unknown */
    int n_maps, cap_maps;
    float **maps;            /* [n_maps] each [L, NH, T, T] */
    int *map_steps;          /* [n_maps] ascending */
} QkWatch;

void qk_watch_create(QkWatch *w, const ModelShape *s, const int *probe,
                     const uint32_t *chars, int T, int steps);
void qk_watch_free(QkWatch *w);
/* Records the step's log2(gq/gk) per head. */
void qk_watch_record(QkWatch *w, const QkNorms *q, int step);
/* Heatmap step: probe attention to run_dir/attn/step_NNNNNN/layer_L.png
 * (plus the raw maps in attention.f32: [L, NH, T, T] little-endian float32),
 * attn/latest pointing at it, and the filmstrips and qk_balance.png redrawn. */
int qk_watch_snapshot(QkWatch *w, Model *m, const char *run_dir, int step, Error *err);
/* Records the probe's text as run_dir/attn/probe.txt (UTF-8, the probe's
 * characters exactly), which the report page shows beside the attention maps;
 * without it the page shows [log] probe, or says that the probe is the start
 * of the validation split. */
int qk_watch_write_probe(const QkWatch *w, const char *run_dir, Error *err);
/* For a resumed run: the maps of earlier heatmap steps (<= upto) and the
 * ratios from qk.csv. */
int qk_watch_reload(QkWatch *w, const char *run_dir, int upto, Error *err);

/* ---- Gauge-invariant analyses of M_h = W_Q^h^T W_K^h (C x C, rank <= d) ----
 * wq, wk: the head's d x C row slices of W_Q and W_K ([out, in] layout). */

/* Symmetry score s = Tr(M^2) / ||M||_F^2 in [-1, 1], computed in d x d space:
 * with A = Wq Wq^T, B = Wk Wk^T, X = Wk Wq^T: ||M||^2 = Tr(A B), Tr(M^2) = Tr(X X). */
double qk_symmetry(const real *wq, const real *wk, int d, int C);

/* M = wq^T wk into out [C, C] (row i: query input dim i, column j: key input dim j). */
void qk_bilinear(double *out, const real *wq, const real *wk, int d, int C);

/* Cosine similarity <M_a, M_b>_F / (|M_a| |M_b|) of two heads' bilinear
 * forms, computed in d x d space; gauge invariant. */
double qk_bilinear_cosine(const real *wq_a, const real *wk_a, const real *wq_b,
                          const real *wk_b, int d, int C);

/* Jensen-Shannon divergence (bits, in [0, 1]) between two distributions. */
double qk_js_divergence(const double *p, const double *q, int n);

/* Directionality of M (Saponati et al.): row norms r_i and column norms c_j,
 * thresholds mean + 2 std of each set, R = sum over rows above the threshold
 * of (r_i - thr), Cx likewise for columns; d = (Cx - R) / (Cx + R), 0 when
 * both are 0. Positive: a few columns (key-side input directions) dominate;
 * negative: a few rows (query-side directions) dominate. */
double qk_directionality(const double *M, int C);

/* Cosines of the principal angles between the row spaces of wq and wk
 * (what the query and the key read from the residual stream), descending,
 * into cosines[d]. */
void qk_principal_cosines(const real *wq, const real *wk, int d, int C, double *cosines);

/* Per-head attention statistics of att [B, NH, T, T]: mean over query rows
 * t >= 1 (and sequences) of the row entropy normalised by log(t + 1), and of
 * the weight on key t - 1 (previous-token score). */
void qk_attention_stats(const real *att, int B, int NH, int T, double *entropy,
                        double *prev_token);

/* The gauge freedom of the scores: per head, W_Q^h -> A W_Q^h and
 * W_K^h -> A^-T W_K^h (biases likewise) with A = U D, U a random orthogonal
 * d x d matrix and D diagonal with entries in [1/2, 2] (well conditioned);
 * D = I when qk is tied. Leaves every q.k, hence the model's function,
 * unchanged. */
void qk_gauge_apply(Model *m, Rng *r);

/* ---- per-head analysis at every eval (qk_eval.csv), probe and compare ---- */

typedef struct {
    double symmetry;       /* qk_symmetry of M_h */
    double directionality; /* qk_directionality of M_h */
    double balance;        /* ||W_Q^h||_F^2 - ||W_K^h||_F^2 (not gauge invariant) */
    double overlap_mean;   /* mean and largest cosine of the principal angles */
    double overlap_max;    /* between the row spaces of W_Q^h and W_K^h */
    double swap_delta;     /* val loss with W_Q^h <-> W_K^h, minus the normal one */
    double entropy;        /* qk_attention_stats on the same windows */
    double prev_token;
} QkHeadEval;

#define QK_EVAL_NCOLS 11
extern const char *const qk_eval_columns[QK_EVAL_NCOLS];

/* Analyses every head into heads[L * NH] on `count` fixed validation windows
 * (B at a time; inputs/targets [B, maxT] buffers). Returns the delta with the
 * heads of all layers swapped at once; *base_loss gets the normal loss. The
 * model is left as it was. */
double qk_eval_heads(Model *m, const Corpus *c, int count, int B, int *inputs, int *targets,
                     QkHeadEval *heads, double *base_loss);

/* qk_eval.csv rows of one eval: one per (layer, head), then one with layer
 * and head -1 whose swap_delta is the all-heads swap (other fields empty). */
void qk_eval_csv_write(CsvLog *w, int step, const QkHeadEval *heads, int L, int NH,
                       double swap_all);

#endif
