#include "roles.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qk.h"

/* One scored query position of a record: the head that does the lookup
 * should attend from t to j. kv: t holds a queried key, j the value after
 * its definition; repeat: t holds S[i] in the copy, j = i + 1 (the aligned
 * position, whose character is the answer). alt_*: another key of the same
 * record (for patch_q), with another answer; undefined: a key token absent
 * from the record (for patch_k), -1 when there is none. */
typedef struct {
    int rec, t, j;
    int lookup;          /* token looked up: the key at t (kv), S[i] (repeat) */
    int cur_t, prev_t, cur_j, prev_j; /* the tokens at t, t - 1, j, j - 1 */
    int alt_lookup, alt_j, alt_answer;
    int alt_key;         /* the alternative key as the definitions write it */
    int undefined;
} Case;

/* A record and its row; tokens are ids in the corpus's vocabulary. */
typedef struct {
    int n;
    uint32_t chars[TASK_RECORD_MAX];
    int *inputs, *targets; /* [T] each */
} Record;

static int tok(const Corpus *c, uint32_t ch) {
    return vocab_find(c->vocab, c->V, ch);
}

/* Record base + i of the roles stream, as a row of T. */
static void record_make(Record *r, const Corpus *c, uint64_t index, int T) {
    r->n = task_stream_record(&c->task, TASK_STREAM_ROLES, index, r->chars);
    char why[256];
    CHECK(batch_task_row(c, r->chars, r->n, T, r->inputs, r->targets, why, sizeof why) >= 0,
          "roles: a generated record does not parse: %s", why);
}

static int is_lower(uint32_t ch) { return ch >= 'a' && ch <= 'z'; }

/* The cases of a record (at most T), appended to cases[*n]. */
static void record_cases(const Record *r, const Corpus *c, int rec, Case *cases, int *n) {
    const TaskSpec *t = &c->task;
    const uint32_t *s = r->chars;
    int sep = 0;
    while (s[sep] != TASK_SEP) sep++;
    /* kv: where each key is defined (by its query letter); repeat: where each
     * letter of S is and how often */
    int where[26], count[26];
    for (int i = 0; i < 26; i++) where[i] = -1, count[i] = 0;
    if (t->kind == TASK_KV) {
        for (int p = 0; p < sep; p += 2) where[(is_lower(s[p]) ? s[p] - 'a' : s[p] - 'A')] = p;
    } else {
        for (int p = 0; p < sep; p++) {
            count[s[p] - 'a']++;
            where[s[p] - 'a'] = p;
        }
    }
    int alphabet = t->kind == TASK_KV ? t->keys : t->letters;
    int undefined = -1;
    for (int i = 0; i < alphabet && undefined < 0; i++)
        if (t->kind == TASK_KV ? where[i] < 0 : count[i] == 0) undefined = i;
    for (int q = 0; q + 1 < r->n; q++) {
        if (r->targets[q] == TARGET_NONE) continue;
        Case *e = &cases[(*n)++];
        memset(e, 0, sizeof *e);
        e->rec = rec;
        e->t = q;
        int key = (int)(s[q] - 'a');
        e->j = t->kind == TASK_KV ? where[key] + 1 : q - sep;
        e->lookup = r->inputs[q];
        e->cur_t = r->inputs[q];
        e->prev_t = r->inputs[q - 1];
        e->cur_j = r->inputs[e->j];
        e->prev_j = r->inputs[e->j - 1];
        /* another key with another answer, the next in the record's order */
        e->alt_j = e->alt_lookup = e->alt_answer = -1;
        if (t->kind == TASK_KV) {
            for (int k = 2; k <= sep; k += 2) {
                int p = (where[key] + k) % sep;
                if (s[p + 1] == s[e->j]) continue;
                e->alt_j = p + 1;
                e->alt_lookup = tok(c, is_lower(s[p]) ? s[p] : s[p] - 'A' + 'a');
                e->alt_key = r->inputs[p];
                e->alt_answer = r->inputs[p + 1];
                break;
            }
        } else {
            int i = q - sep - 1;
            for (int k = 1; k < sep; k++) {
                int p = (i + k) % sep; /* S[p] -> answer S[p + 1] */
                if (p + 1 >= sep || count[s[p] - 'a'] != 1 || s[p + 1] == s[e->j]) continue;
                e->alt_j = p + 1;
                e->alt_lookup = e->alt_key = tok(c, s[p]);
                e->alt_answer = r->inputs[p + 1];
                break;
            }
        }
        e->undefined = undefined < 0 ? -1
                       : tok(c, (t->kind == TASK_KV && t->cross ? 'A' : 'a') + (uint32_t)undefined);
    }
}

/* The replacement of the counterfactuals: a digit d becomes (d + 1) mod 10,
 * a letter the first letter of the task's alphabet, in its case, absent
 * from the record; -1 for '|' (or no such letter). */
static int replacement(const Record *r, const Corpus *c, int pos) {
    uint32_t ch = r->chars[pos];
    if (ch >= '0' && ch <= '9') return tok(c, '0' + (ch - '0' + 1) % 10);
    if (ch == TASK_SEP || ch == TASK_PAD) return -1;
    uint32_t base = is_lower(ch) ? 'a' : 'A';
    int alphabet = c->task.kind == TASK_KV ? c->task.keys : c->task.letters;
    for (int i = 0; i < alphabet; i++) {
        uint32_t cand = base + (uint32_t)i;
        int used = 0;
        for (int p = 0; p < r->n && !used; p++) used = r->chars[p] == cand;
        if (!used) return tok(c, cand);
    }
    return -1;
}

/* Scores s[0..t] of query q (head slice) against keys k[0..t] (stride C),
 * key j replaced by kj when kj is not NULL. */
static void attn_scores(const real *q, const real *k, int t, int j, const real *kj, int hs,
                        size_t C, double *s) {
    double scale = 1.0 / sqrt((double)hs);
    for (int p = 0; p <= t; p++) {
        const real *kp = p == j && kj ? kj : k + (size_t)p * C;
        double d = 0;
        for (int i = 0; i < hs; i++) d += (double)q[i] * kp[i];
        s[p] = d * scale;
    }
}

/* The softmax weight of that row on key j. */
static double attn_weight(const real *q, const real *k, int t, int j, const real *kj, int hs,
                          size_t C) {
    double s[TASK_RECORD_MAX], mx = -INFINITY, sum = 0;
    attn_scores(q, k, t, j, kj, hs, C, s);
    for (int p = 0; p <= t; p++) mx = s[p] > mx ? s[p] : mx;
    for (int p = 0; p <= t; p++) sum += s[p] = exp(s[p] - mx);
    return s[j] / sum;
}

/* The row's argmax (the first of equals): the softmax keeps the scores' order. */
static int attn_argmax(const real *q, const real *k, int t, int j, const real *kj, int hs,
                       size_t C) {
    double s[TASK_RECORD_MAX];
    attn_scores(q, k, t, j, kj, hs, C, s);
    int best = 0;
    for (int p = 1; p <= t; p++)
        if (s[p] > s[best]) best = p;
    return best;
}

/* ---- the linear probe ----
 * Linear discriminant analysis with the pooled within-class covariance and no
 * regularisation: for features y = A x (A invertible) the class means and the
 * covariance become A mu and A S A^T, and every discriminant
 * mu_c^T S^-1 x - mu_c^T S^-1 mu_c / 2 is unchanged, so the probe's decisions
 * do not depend on the gauge of W_Q and W_K. */

/* Cholesky factor of the d x d SPD matrix S in place (lower); -1 if not SPD. */
static int cholesky(double *S, int d) {
    for (int j = 0; j < d; j++) {
        double s = S[j * d + j];
        for (int k = 0; k < j; k++) s -= S[j * d + k] * S[j * d + k];
        if (!(s > 0)) return -1;
        S[j * d + j] = sqrt(s);
        for (int i = j + 1; i < d; i++) {
            double v = S[i * d + j];
            for (int k = 0; k < j; k++) v -= S[i * d + k] * S[j * d + k];
            S[i * d + j] = v / S[j * d + j];
        }
    }
    return 0;
}

/* x = S^-1 b with S's Cholesky factor. */
static void cholesky_solve(const double *Lf, int d, const double *b, double *x) {
    for (int i = 0; i < d; i++) {
        double v = b[i];
        for (int k = 0; k < i; k++) v -= Lf[i * d + k] * x[k];
        x[i] = v / Lf[i * d + i];
    }
    for (int i = d - 1; i >= 0; i--) {
        double v = x[i];
        for (int k = i + 1; k < d; k++) v -= Lf[k * d + i] * x[k];
        x[i] = v / Lf[i * d + i];
    }
}

/* Held-out accuracy of LDA on features X [n, d] with labels y [n] in [0, K):
 * trained on the rows with train[i] set, tested on the others. *chance gets
 * the test accuracy of always answering the commonest training class. */
double roles_lda_accuracy(const double *X, const int *y, const unsigned char *train, int n, int d,
                          int K, double *chance) {
    double *mu = xcalloc((size_t)K * d, sizeof(double)), *S = xcalloc((size_t)d * d, sizeof(double));
    int *nc = xcalloc((size_t)K, sizeof(int));
    int ntr = 0;
    for (int i = 0; i < n; i++) {
        if (!train[i]) continue;
        nc[y[i]]++, ntr++;
        for (int a = 0; a < d; a++) mu[y[i] * d + a] += X[(size_t)i * d + a];
    }
    int common = 0, classes = 0;
    for (int c = 0; c < K; c++) {
        if (nc[c]) classes++;
        if (nc[c] > nc[common]) common = c;
        for (int a = 0; nc[c] && a < d; a++) mu[c * d + a] /= nc[c];
    }
    for (int i = 0; i < n; i++) {
        if (!train[i]) continue;
        const double *x = X + (size_t)i * d, *m = mu + y[i] * d;
        for (int a = 0; a < d; a++)
            for (int b = 0; b <= a; b++) S[a * d + b] += (x[a] - m[a]) * (x[b] - m[b]);
    }
    double tr = 0, dof = ntr - classes > 0 ? ntr - classes : 1;
    for (int a = 0; a < d; a++) {
        for (int b = 0; b <= a; b++) S[a * d + b] /= dof;
        for (int b = 0; b < a; b++) S[b * d + a] = S[a * d + b];
        tr += S[a * d + a];
    }
    /* a singular covariance (a class-constant direction, or too few rows)
     * gets the smallest ridge that makes it definite: exact invariance is
     * then lost, by about that much */
    double *Lf = xmalloc((size_t)d * d * sizeof(double));
    for (double ridge = 0; ; ridge = ridge ? ridge * 10 : 1e-12 * (tr > 0 ? tr : 1) / d) {
        memcpy(Lf, S, (size_t)d * d * sizeof(double));
        for (int a = 0; a < d; a++) Lf[a * d + a] += ridge;
        if (cholesky(Lf, d) == 0) break;
    }
    double *w = xmalloc((size_t)K * d * sizeof(double)), *b0 = xmalloc((size_t)K * sizeof(double));
    for (int c = 0; c < K; c++) {
        if (!nc[c]) continue;
        cholesky_solve(Lf, d, mu + c * d, w + c * d);
        double q = 0;
        for (int a = 0; a < d; a++) q += mu[c * d + a] * w[c * d + a];
        b0[c] = -0.5 * q + log((double)nc[c] / ntr);
    }
    int right = 0, right_common = 0, ntest = 0;
    for (int i = 0; i < n; i++) {
        if (train[i]) continue;
        const double *x = X + (size_t)i * d;
        int best = -1;
        double bs = -INFINITY;
        for (int c = 0; c < K; c++) {
            if (!nc[c]) continue;
            double s = b0[c];
            for (int a = 0; a < d; a++) s += w[c * d + a] * x[a];
            if (s > bs) bs = s, best = c;
        }
        right += best == y[i];
        right_common += common == y[i];
        ntest++;
    }
    free(mu), free(S), free(nc), free(Lf), free(w), free(b0);
    *chance = ntest ? (double)right_common / ntest : NAN;
    return ntest ? (double)right / ntest : NAN;
}

/* ---- patching through the forward's hook point ---- */

typedef struct {
    int layer, head, t; /* head -1: every head of the layer */
    const real *q;      /* the query (every head's, head -1) to put at t */
} RowPatch;

typedef struct {
    const RowPatch *rows;
    int hs, C;
} PatchCtx;

/* edit_qk: row b's query at its t in its layer becomes its patch. */
static void patch_queries(void *ctx, int l, real *q, real *k, int B, int T) {
    (void)k;
    const PatchCtx *p = ctx;
    size_t C = (size_t)p->C;
    for (int b = 0; b < B; b++) {
        const RowPatch *r = &p->rows[b];
        if (r->layer != l) continue;
        size_t h = r->head < 0 ? 0 : (size_t)r->head, n = r->head < 0 ? C : (size_t)p->hs;
        memcpy(q + ((size_t)b * T + r->t) * C + h * p->hs, r->q, n * sizeof(real));
    }
}

/* ---- the measurement ---- */

enum { CF_Q_CUR, CF_Q_PREV, CF_K_CUR, CF_K_PREV, N_CF };
enum { F_Q, F_K, F_CTL_Q, F_CTL_K, N_FEAT }; /* feature sets per case and head */

typedef struct {
    Model *m;
    const Corpus *c;
    int L, NH, C, hs, T, B, V;
    size_t LH;
    Case *cases;
    int n_cases;
    Record *recs;
    int n_recs;
    double *feat;   /* [n_cases, L*NH, N_FEAT, hs] */
    real *proj;     /* [L, hs, C] the control's fixed random projections */
    double *qmean;  /* [L*NH, V, hs] mean query by looked-up token */
    double *kmean;  /* [L*NH, V, hs] mean key at targets by the token before them */
    int *qn, *kn;   /* [V] counts (the same for every head) */
    double *zmean;  /* [L - 1, C] mean head output over the records' positions */
    long zn;        /* positions in it */
    real *qk_orig;  /* [2, L, B, T, C] a chunk's original q and k */
    char *spare;    /* what is left of the model's spare scratch */
    size_t spare_bytes;
} Work;

/* A zeroed buffer of n bytes: from the model's spare scratch while it has
 * room (memory the run holds already), else from the heap, and then *heap
 * points at it for free(). */
static void *work_buffer(Work *w, size_t n, void **heap) {
    size_t whole = (n + 63) / 64 * 64; /* the next buffer starts on a cache line */
    *heap = NULL;
    if (whole > w->spare_bytes) return *heap = xcalloc(n, 1);
    void *p = w->spare;
    w->spare += whole;
    w->spare_bytes -= whole;
    return memset(p, 0, n);
}

static const real *head_vec(const real *base, const Work *w, int l, int b, int t, int h) {
    return base + ((((size_t)l * w->B + b) * w->T + t) * w->C) + (size_t)h * w->hs;
}

/* Rows of records first .. first + nb - 1 into inputs/targets [nb, T]. */
static void chunk_rows(const Work *w, int first, int nb, int *inputs, int *targets) {
    for (int b = 0; b < nb; b++) {
        memcpy(inputs + (size_t)b * w->T, w->recs[first + b].inputs, (size_t)w->T * sizeof(int));
        memcpy(targets + (size_t)b * w->T, w->recs[first + b].targets, (size_t)w->T * sizeof(int));
    }
}

/* The forward's q and k of a chunk, kept while other rows are run. */
static void keep_qk(Work *w, int nb) {
    size_t per = (size_t)nb * w->T * w->C, stride = (size_t)w->B * w->T * w->C;
    for (int l = 0; l < w->L; l++) {
        memcpy(w->qk_orig + l * stride, model_q(w->m, l), per * sizeof(real));
        memcpy(w->qk_orig + (w->L + l) * stride, model_k(w->m, l), per * sizeof(real));
    }
}

/* The model's prediction at position pos of the last forward (a case's
 * position: scored, so its logits were computed). */
static int predicted(const Model *m, size_t pos) {
    const real *logits = model_logits_at(m, pos);
    CHECK(logits, "roles: no logits at position %zu", pos);
    int best = 0, V = m->shape.V;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* Pass 1 over a chunk: attention figures, features, patching means, accuracy. */
static void pass_observe(Work *w, Roles *r, int first, int nb, const int *case_lo,
                         const int *case_hi, double *acc_right) {
    Model *m = w->m;
    int T = w->T, C = w->C, hs = w->hs;
    for (int b = 0; b < nb; b++)
        for (int ci = case_lo[first + b]; ci < case_hi[first + b]; ci++) {
            const Case *e = &w->cases[ci];
            *acc_right += predicted(m, (size_t)b * T + e->t) ==
                          w->recs[first + b].targets[e->t];
            for (int l = 0; l < w->L; l++) {
                const real *att = model_pattern(m, l), *q = model_q(m, l), *k = model_k(m, l);
                for (int h = 0; h < w->NH; h++) {
                    RolesHead *rh = &r->heads[l * w->NH + h];
                    const real *row = att + (((size_t)b * w->NH + h) * T + e->t) * T;
                    rh->target_attn += row[e->j];
                    rh->prev_attn += row[e->t - 1];
                    rh->prev_attn_j += att[(((size_t)b * w->NH + h) * T + e->j) * T + e->j - 1];
                    for (int o = 0; o < ROLES_OFFSETS; o++) {
                        int p = e->j + o - ROLES_OFFSETS / 2;
                        rh->offset_attn[o] += p >= 0 && p <= e->t ? row[p] : 0;
                    }
                    double *f = w->feat + (((size_t)ci * w->LH + l * w->NH + h) * N_FEAT) * hs;
                    const real *qv = q + ((size_t)b * T + e->t) * C + h * hs;
                    const real *kv = k + ((size_t)b * T + e->j) * C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        f[F_Q * hs + i] = qv[i];
                        f[F_K * hs + i] = kv[i];
                    }
                    if (h == 0) { /* the control is the layer's, stored with head 0 */
                        const real *x = model_head_input(m, l);
                        const real *xt = x + ((size_t)b * T + e->t) * C;
                        const real *xj = x + ((size_t)b * T + e->j) * C;
                        for (int i = 0; i < hs; i++) {
                            const real *pr = w->proj + ((size_t)l * hs + i) * C;
                            double st = 0, sj = 0;
                            for (int a = 0; a < C; a++) st += (double)pr[a] * xt[a], sj += (double)pr[a] * xj[a];
                            f[F_CTL_Q * hs + i] = st;
                            f[F_CTL_K * hs + i] = sj;
                        }
                    }
                    double *qm = w->qmean + ((size_t)(l * w->NH + h) * w->V + e->lookup) * hs;
                    double *km = w->kmean + ((size_t)(l * w->NH + h) * w->V + e->prev_j) * hs;
                    for (int i = 0; i < hs; i++) qm[i] += qv[i], km[i] += kv[i];
                }
            }
            w->qn[e->lookup]++;
            w->kn[e->prev_j]++;
        }
    /* the heads' mean outputs, which an ablation puts in their place (the
     * last layer's z is not kept whole, and nothing above reads it) */
    for (int b = 0; b < nb; b++) {
        int n = w->recs[first + b].n;
        for (int l = 0; l + 1 < w->L; l++) {
            const real *z = model_z(m, l) + (size_t)b * T * C;
            for (int p = 0; p < n; p++)
                for (int a = 0; a < C; a++) w->zmean[(size_t)l * C + a] += z[(size_t)p * C + a];
        }
        w->zn += n;
    }
}

/* The original attention of head lh from t on j of case e (chunk starting at
 * record first), from the kept queries and keys. */
static double head_target_attn(const Work *w, int first, const Case *e, size_t lh) {
    int l = (int)(lh / (size_t)w->NH), h = (int)(lh % (size_t)w->NH), ob = e->rec - first;
    size_t stride = (size_t)w->B * w->T * w->C;
    return attn_weight(head_vec(w->qk_orig, w, l, ob, e->t, h),
                       head_vec(w->qk_orig + w->L * stride, w, l, ob, 0, h), e->t, e->j, NULL,
                       w->hs, (size_t)w->C);
}

/* A counterfactual: case ci's record with the token at pos changed to rep
 * (rep < 0: the token has no replacement and the case keeps its original
 * attention in the measure's mean). */
typedef struct {
    int ci, measure, pos, rep;
} CfJob;

/* A job's changed row: the position it reads (the query's t, or the key's j),
 * the record, the changed position, and the job. */
typedef struct {
    int t, rec, pos, job;
} CfRun;

/* Runs by the position they read, then by row: equal rows come together. */
static int cf_by_position(const void *a, const void *b) {
    const CfRun *x = a, *y = b;
    if (x->t != y->t) return (x->t > y->t) - (x->t < y->t);
    if (x->rec != y->rec) return (x->rec > y->rec) - (x->rec < y->rec);
    if (x->pos != y->pos) return (x->pos > y->pos) - (x->pos < y->pos);
    return (x->job > y->job) - (x->job < y->job);
}

static int cf_same_row(const CfRun *x, const CfRun *y) {
    return x->t == y->t && x->rec == y->rec && x->pos == y->pos;
}

/* Runs the changed rows of runs[0..n-1] (sorted; equal rows once, nrow of
 * them) and puts in val[job][lh] the attention on the target when the
 * changed row's query at t (or key at j) replaces the original one and every
 * other query and key is the original run's. A row stops at the position it
 * reads, the last run's being the latest: the model is causal, and a shorter
 * row computes the same values at its positions. */
static void cf_flush(Work *w, const CfJob *jobs, const CfRun *runs, int n, int nrow, int first,
                     int *inputs, double *val) {
    Model *m = w->m;
    int C = w->C, hs = w->hs, T = runs[n - 1].t + 1;
    for (int x = 0, row = -1; x < n; x++) {
        if (x > 0 && cf_same_row(&runs[x - 1], &runs[x])) continue;
        int *in = inputs + (size_t)++row * T;
        memcpy(in, w->recs[runs[x].rec].inputs, (size_t)T * sizeof(int));
        in[runs[x].pos] = jobs[runs[x].job].rep;
    }
    size_t stride = (size_t)w->B * w->T * C;
    model_forward_qk(m, inputs, nrow, T);
    for (int x = 0, row = -1; x < n; x++) {
        if (x == 0 || !cf_same_row(&runs[x - 1], &runs[x])) row++;
        const CfJob *job = &jobs[runs[x].job];
        const Case *e = &w->cases[job->ci];
        int ob = e->rec - first, qside = job->measure == CF_Q_CUR || job->measure == CF_Q_PREV;
        for (int l = 0; l < w->L; l++)
            for (int h = 0; h < w->NH; h++) {
                const real *qo = head_vec(w->qk_orig, w, l, ob, e->t, h);
                const real *ko = head_vec(w->qk_orig + w->L * stride, w, l, ob, 0, h);
                /* the changed row's vector at the position it reads */
                const real *changed = (qside ? model_q(m, l) : model_k(m, l)) +
                                      ((size_t)row * T + (qside ? e->t : e->j)) * C + h * hs;
                val[(size_t)runs[x].job * w->LH + (size_t)l * w->NH + h] =
                    attn_weight(qside ? changed : qo, ko, e->t, e->j, qside ? NULL : changed, hs,
                                (size_t)C);
            }
    }
}

/* The counterfactuals of a chunk (its original q and k kept): per case and
 * measure the token at t, t - 1, j or j - 1 replaced. The changed rows run in
 * the order of the position they read, each as short as that position allows
 * and as many at a time as the model's B x T rows hold; cases that change
 * the same token and read the same key share a row. The means add the jobs
 * in case order, which keeps them independent of how the rows were grouped. */
static void pass_counterfactual(Work *w, double (*sums)[N_CF], int (*counts)[N_CF], int first,
                                int nb, const int *case_lo, const int *case_hi, int *inputs) {
    int n = 0, nrun = 0, lo = case_lo[first], hi = case_hi[first + nb - 1];
    CfJob *jobs = xmalloc((size_t)(hi - lo) * N_CF * sizeof(CfJob) + 1);
    CfRun *runs = xmalloc((size_t)(hi - lo) * N_CF * sizeof(CfRun) + 1);
    for (int ci = lo; ci < hi; ci++) {
        const Case *e = &w->cases[ci];
        const int pos[N_CF] = {e->t, e->t - 1, e->j, e->j - 1};
        for (int ms = 0; ms < N_CF; ms++) {
            int rep = pos[ms] >= 0 ? replacement(&w->recs[e->rec], w->c, pos[ms]) : -1;
            int reads = ms == CF_Q_CUR || ms == CF_Q_PREV ? e->t : e->j;
            if (rep >= 0) runs[nrun++] = (CfRun){reads, e->rec, pos[ms], n};
            jobs[n++] = (CfJob){ci, ms, pos[ms], rep};
        }
    }
    double *val = xmalloc((size_t)n * w->LH * sizeof(double) + 1);
    qsort(runs, (size_t)nrun, sizeof(CfRun), cf_by_position);
    size_t cells = (size_t)w->B * w->T; /* the model's rows times positions */
    for (int x = 0; x < nrun;) {
        int end = x, nrow = 0;
        while (end < nrun) {
            int fresh = end == x || !cf_same_row(&runs[end - 1], &runs[end]);
            if (fresh && (size_t)(nrow + 1) * (runs[end].t + 1) > cells) break;
            nrow += fresh;
            end++;
        }
        cf_flush(w, jobs, runs + x, end - x, nrow, first, inputs, val);
        x = end;
    }
    for (int x = 0; x < n; x++) {
        const Case *e = &w->cases[jobs[x].ci];
        for (size_t lh = 0; lh < w->LH; lh++) {
            sums[lh][jobs[x].measure] +=
                jobs[x].rep >= 0 ? val[(size_t)x * w->LH + lh] : head_target_attn(w, first, e, lh);
            counts[lh][jobs[x].measure]++;
        }
    }
    free(val);
    free(runs);
    free(jobs);
}

static void means_finish(Work *w) {
    for (size_t lh = 0; lh < w->LH; lh++)
        for (int v = 0; v < w->V; v++)
            for (int i = 0; i < w->hs; i++) {
                if (w->qn[v]) w->qmean[(lh * w->V + v) * w->hs + i] /= w->qn[v];
                if (w->kn[v]) w->kmean[(lh * w->V + v) * w->hs + i] /= w->kn[v];
            }
}

/* Runs the rows of patch_q (rows[x] patches case who[x]'s query in head
 * whohead[x], or in every head of the layer) and scores them: the head's
 * attention argmax on the other key's target, and the model's prediction
 * that key's answer. */
static void patch_flush(Work *w, Roles *r, const RowPatch *rows, const int *who,
                        const int *whohead, int nr, const int *inputs, int *npq) {
    Model *m = w->m;
    int T = w->T;
    PatchCtx ctx = {.rows = rows, .hs = w->hs, .C = w->C};
    const ForwardHooks hooks = {.keep_pattern = 1, .edit_qk = patch_queries, .ctx = &ctx};
    model_forward_hooked(m, inputs, NULL, nr, T, &hooks);
    for (int x = 0; x < nr; x++) {
        const Case *e = &w->cases[who[x]];
        int pred = predicted(m, (size_t)x * T + e->t);
        if (rows[x].head < 0) { /* the whole layer at once */
            r->layer_patch_q_pred[rows[x].layer] += pred == e->alt_answer;
            npq[w->LH + (size_t)rows[x].layer]++;
            continue;
        }
        const real *row = model_pattern(m, rows[x].layer) +
                          (((size_t)x * w->NH + rows[x].head) * T + e->t) * T;
        int best = 0;
        for (int p = 1; p <= e->t; p++)
            if (row[p] > row[best]) best = p;
        /* on the other key's answer: after its definition, or after an earlier
         * query of it (the copy's earlier characters, for repeat) */
        const int *in = inputs + (size_t)x * T;
        int moved = best == e->alt_j || (best > 0 && in[best] == e->alt_answer &&
                                         (in[best - 1] == e->alt_key || in[best - 1] == e->alt_lookup));
        r->heads[whohead[x]].patch_q_attn += moved;
        r->heads[whohead[x]].patch_q_pred += moved && pred == e->alt_answer;
        npq[whohead[x]]++;
    }
}

/* Pass 2 over a chunk (its original q and k kept): patch_k from the original
 * keys alone (the row's queries and other keys do not change), patch_q by
 * forwards with one head's query at one position replaced. */
static void pass_patch(Work *w, Roles *r, int first, int nb, const int *case_lo,
                       const int *case_hi, int *inputs, int *npq, int *npk) {
    int T = w->T, hs = w->hs, B = w->B;
    size_t stride = (size_t)B * T * w->C;
    real *kpatch = xmalloc((size_t)hs * sizeof(real));
    RowPatch *rows = xcalloc((size_t)B, sizeof(RowPatch));
    real *qbuf = xmalloc((size_t)B * w->C * sizeof(real));
    int *who = xmalloc((size_t)B * sizeof(int)), *whohead = xmalloc((size_t)B * sizeof(int));
    int nr = 0;
    for (int b = 0; b < nb; b++)
        for (int ci = case_lo[first + b]; ci < case_hi[first + b]; ci++) {
            const Case *e = &w->cases[ci];
            for (int l = 0; l < w->L; l++)
                for (int h = 0; h <= w->NH; h++) { /* h = NH: every head of the layer */
                    size_t lh = (size_t)l * w->NH + h;
                    if (h < w->NH && e->undefined >= 0 && w->kn[e->undefined]) {
                        const real *qo = head_vec(w->qk_orig, w, l, b, e->t, h);
                        const real *ko = head_vec(w->qk_orig + w->L * stride, w, l, b, 0, h);
                        const double *km = w->kmean + (lh * w->V + e->undefined) * hs;
                        for (int i = 0; i < hs; i++) kpatch[i] = (real)km[i];
                        r->heads[lh].patch_k +=
                            attn_argmax(qo, ko, e->t, e->j, kpatch, hs, (size_t)w->C) != e->j;
                        npk[lh]++;
                    }
                    if (e->alt_j < 0 || !w->qn[e->alt_lookup]) continue;
                    int h0 = h < w->NH ? h : 0, nh = h < w->NH ? 1 : w->NH;
                    real *qb = qbuf + (size_t)nr * w->C;
                    for (int g = 0; g < nh; g++) {
                        const double *qm =
                            w->qmean + (((size_t)l * w->NH + h0 + g) * w->V + e->alt_lookup) * hs;
                        for (int i = 0; i < hs; i++) qb[g * hs + i] = (real)qm[i];
                    }
                    memcpy(inputs + (size_t)nr * T, w->recs[first + b].inputs, (size_t)T * sizeof(int));
                    rows[nr] = (RowPatch){.layer = l, .head = h < w->NH ? h : -1, .t = e->t, .q = qb};
                    who[nr] = ci;
                    whohead[nr] = (int)lh;
                    if (++nr == B) {
                        patch_flush(w, r, rows, who, whohead, nr, inputs, npq);
                        nr = 0;
                    }
                }
        }
    if (nr) patch_flush(w, r, rows, who, whohead, nr, inputs, npq);
    free(kpatch), free(rows), free(qbuf), free(who), free(whohead);
}

/* ---- composition (Elhage et al. 2021) ----
 * With score = x_dst^T W_QK x_src, W_QK = W_Q^T W_K of the later head and
 * W_OV = W_O^h W_V^h of the earlier one (C x C, the later layer's LayerNorm
 * weight folded into its W_Q, W_K and W_V; LayerNorm's centring and scaling
 * left out): K-composition |W_QK W_OV|, Q-composition |W_OV^T W_QK|,
 * V-composition |W_OV' W_OV|, each over the product of the two norms. */

/* out[C, C] = A[C, r] B[r, C] (row-major, A with row stride sa, column sb). */
static void product(double *out, const double *A, const double *Bm, int C, int r) {
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int k = 0; k < r; k++) s += A[i * r + k] * Bm[k * C + j];
            out[i * C + j] = s;
        }
}

static double frob(const double *X, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += X[i] * X[i];
    return sqrt(s);
}

/* W_QK [C, C] of head h of layer l: (W_Q^h G)^T (W_K^h G), G = diag(ln1 weight). */
static void head_qk(double *out, const Model *m, int l, int h, double *tmp_a, double *tmp_b) {
    int C = m->shape.C, hs = C / m->shape.NH;
    const real *g = m->p.ln1w + (size_t)l * C;
    size_t off = (size_t)l * C * C + (size_t)h * hs * C;
    for (int a = 0; a < hs; a++)
        for (int i = 0; i < C; i++) {
            tmp_a[i * hs + a] = (double)m->p.wq[off + (size_t)a * C + i] * g[i]; /* transposed */
            tmp_b[a * C + i] = (double)m->p.wk[off + (size_t)a * C + i] * g[i];
        }
    product(out, tmp_a, tmp_b, C, hs);
}

/* W_OV [C, C] of head h of layer l, with G (the reading layer's LayerNorm
 * weight, or NULL) folded into W_V's input side. */
static void head_ov(double *out, const Model *m, int l, int h, const real *g, double *tmp_a,
                    double *tmp_b) {
    int C = m->shape.C, hs = C / m->shape.NH;
    const real *wo = m->p.wo + (size_t)l * C * C, *wv = m->p.wv + (size_t)l * C * C;
    for (int i = 0; i < C; i++)
        for (int a = 0; a < hs; a++) {
            tmp_a[i * hs + a] = wo[(size_t)i * C + h * hs + a];
            tmp_b[a * C + i] = (double)wv[(size_t)(h * hs + a) * C + i] * (g ? g[i] : 1);
        }
    product(out, tmp_a, tmp_b, C, hs);
}

static double comp_score(const double *X, const double *Y, int C, int transpose_x, double *tmp) {
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int k = 0; k < C; k++)
                s += (transpose_x ? X[k * C + i] : X[i * C + k]) * Y[k * C + j];
            tmp[i * C + j] = s;
        }
    size_t n = (size_t)C * C;
    double d = frob(X, n) * frob(Y, n);
    return d > 0 ? frob(tmp, n) / d : 0;
}

static void composition(Roles *r, const Model *m) {
    int L = m->shape.L, NH = m->shape.NH, C = m->shape.C, hs = C / NH;
    size_t n = (size_t)C * C;
    r->n_comp = (L - 1) * NH * NH;
    r->comp = xcalloc((size_t)(r->n_comp ? r->n_comp : 1), sizeof(RolesComp));
    double *qk = xmalloc(n * sizeof(double)), *ov0 = xmalloc(n * sizeof(double));
    double *ov1 = xmalloc(n * sizeof(double)), *tmp = xmalloc(n * sizeof(double));
    double *ta = xmalloc((size_t)C * hs * sizeof(double)), *tb = xmalloc((size_t)C * hs * sizeof(double));
    int k = 0;
    for (int l = 1; l < L; l++)
        for (int h1 = 0; h1 < NH; h1++) {
            head_qk(qk, m, l, h1, ta, tb);
            head_ov(ov1, m, l, h1, m->p.ln1w + (size_t)l * C, ta, tb);
            for (int h0 = 0; h0 < NH; h0++) {
                head_ov(ov0, m, l - 1, h0, NULL, ta, tb);
                RolesComp *e = &r->comp[k++];
                e->layer = l;
                e->from_head = h0;
                e->to_head = h1;
                e->k_comp = comp_score(qk, ov0, C, 0, tmp);
                e->q_comp = comp_score(ov0, qk, C, 1, tmp);
                e->v_comp = comp_score(ov1, ov0, C, 0, tmp);
            }
        }
    free(qk), free(ov0), free(ov1), free(tmp), free(ta), free(tb);
}

void roles_composition_pair(const Model *m, int l0, int h0, int l1, int h1, double *k_comp,
                            double *q_comp, double *v_comp) {
    CHECK(l0 < l1, "roles_composition_pair: layer %d does not come before layer %d", l0, l1);
    int C = m->shape.C, hs = C / m->shape.NH;
    size_t n = (size_t)C * C;
    /* W_QK, the two W_OV, the product's scratch, then head_qk's two panels */
    double *buf = xmalloc((4 * n + 2 * (size_t)C * hs) * sizeof(double));
    double *ta = buf + 4 * n, *tb = ta + (size_t)C * hs;
    head_qk(buf, m, l1, h1, ta, tb);
    head_ov(buf + n, m, l0, h0, NULL, ta, tb);
    head_ov(buf + 2 * n, m, l1, h1, m->p.ln1w + (size_t)l1 * C, ta, tb);
    *k_comp = comp_score(buf, buf + n, C, 0, buf + 3 * n);
    *q_comp = comp_score(buf + n, buf, C, 1, buf + 3 * n);
    *v_comp = comp_score(buf + 2 * n, buf + n, C, 0, buf + 3 * n);
    free(buf);
}

/* ---- the whole measurement ---- */

/* Accuracy of the model on the records (the scored targets' argmax), each
 * forward with hooks (may be NULL); with target_attn, also the mean
 * attention of head lh from the cases' t on their j (the hooks keep the
 * pattern). */
static double records_accuracy(Work *w, int *inputs, int *targets, const ForwardHooks *hooks,
                               size_t lh, double *target_attn) {
    double right = 0, scored = 0, attn = 0;
    int l = (int)(lh / (size_t)w->NH), h = (int)(lh % (size_t)w->NH), T = w->T;
    for (int first = 0; first < w->n_recs; first += w->B) {
        int nb = w->n_recs - first < w->B ? w->n_recs - first : w->B;
        chunk_rows(w, first, nb, inputs, targets);
        model_forward_hooked(w->m, inputs, targets, nb, T, hooks);
        right += (double)model_count_correct(w->m);
        scored += (double)w->m->n_scored;
        for (int ci = 0; target_attn && ci < w->n_cases; ci++) {
            const Case *e = &w->cases[ci];
            if (e->rec < first || e->rec >= first + nb) continue;
            attn += model_pattern(w->m, l)[(((size_t)(e->rec - first) * w->NH + h) * T + e->t) * T + e->j];
        }
    }
    if (target_attn) *target_attn = w->n_cases ? attn / w->n_cases : NAN;
    return scored > 0 ? right / scored : 0;
}

/* ---- mean ablation through the forward's hook point ---- */

typedef struct {
    const unsigned char *heads; /* [L * NH] the heads ablated */
    const double *mean;         /* [L - 1, C] the mean head outputs */
    int NH, hs, C;
} Ablation;

/* edit_z: the flagged heads' outputs at every position become their means. */
static void ablate_heads(void *ctx, int l, real *z, int B, int T) {
    const Ablation *a = ctx;
    for (int h = 0; h < a->NH; h++) {
        if (!a->heads[l * a->NH + h]) continue;
        size_t off = (size_t)h * a->hs;
        const double *mean = a->mean + (size_t)l * a->C + off;
        for (size_t i = 0; i < (size_t)B * T; i++)
            for (int j = 0; j < a->hs; j++) z[i * a->C + off + j] = (real)mean[j];
    }
}

/* The lookup heads, and the previous-token heads below the first. */
static void label_roles(Roles *r) {
    int NH = r->NH;
    r->lookup = 0;
    for (int i = 1; i < r->L * NH; i++)
        if (r->heads[i].target_attn > r->heads[r->lookup].target_attn) r->lookup = i;
    for (int i = 0; i < r->L * NH; i++) {
        RolesHead *h = &r->heads[i];
        h->role = i == r->lookup || h->target_attn >= ROLES_LOOKUP_MIN ? ROLE_LOOKUP
                  : h->layer < r->lookup / NH && h->prev_attn_j >= ROLES_PREV_TOKEN_MIN
                      ? ROLE_PREV_TOKEN
                      : ROLE_OTHER;
    }
}

const char *roles_role_name(RolesRole role) {
    static const char *const names[] = {"", "lookup", "prev-token"};
    return (unsigned)role <= ROLE_PREV_TOKEN ? names[role] : "?";
}

/* The interventions on whole heads and layers: each head's W_Q and W_K
 * exchanged, then each layer's; each head below the lookup head's layer
 * mean-ablated. */
static void heads_intervene(Work *w, Roles *r, int *inputs, int *targets) {
    unsigned char *swap = xcalloc(w->LH, 1);
    const ForwardHooks swapped = {.swap_qk = swap};
    for (size_t lh = 0; lh < w->LH; lh++) {
        swap[lh] = 1;
        r->heads[lh].swap_acc = records_accuracy(w, inputs, targets, &swapped, 0, NULL);
        swap[lh] = 0;
    }
    for (int l = 0; l < w->L; l++) {
        memset(swap + (size_t)l * w->NH, 1, (size_t)w->NH);
        r->layer_swap_acc[l] = records_accuracy(w, inputs, targets, &swapped, 0, NULL);
        memset(swap + (size_t)l * w->NH, 0, (size_t)w->NH);
    }
    for (long i = 0; w->zn && i < (long)(w->L - 1) * w->C; i++) w->zmean[i] /= (double)w->zn;
    /* swap's flags, cleared, now say which heads are ablated */
    Ablation a = {.heads = swap, .mean = w->zmean, .NH = w->NH, .hs = w->hs, .C = w->C};
    const ForwardHooks ablated = {.keep_pattern = 1, .edit_z = ablate_heads, .ctx = &a};
    size_t below = (size_t)(r->lookup / w->NH) * w->NH, lookup = (size_t)r->lookup;
    for (size_t lh = 0; lh < below; lh++) {
        RolesHead *rh = &r->heads[lh];
        swap[lh] = 1;
        rh->ablate_acc = records_accuracy(w, inputs, targets, &ablated, lookup,
                                          &rh->ablate_target_attn);
        swap[lh] = 0;
    }
    int any = 0;
    for (size_t lh = 0; lh < below; lh++) any |= swap[lh] = r->heads[lh].role == ROLE_PREV_TOKEN;
    if (any)
        r->prev_ablate_acc =
            records_accuracy(w, inputs, targets, &ablated, lookup, &r->prev_ablate_target_attn);
    free(swap);
}

/* LDA accuracy of one feature set of every case of head lh against labels. */
static double probe(const Work *w, size_t lh, int set, const int *labels, const unsigned char *train,
                    double *X, double *chance) {
    for (int ci = 0; ci < w->n_cases; ci++)
        memcpy(X + (size_t)ci * w->hs,
               w->feat + (((size_t)ci * w->LH + lh) * N_FEAT + set) * w->hs,
               (size_t)w->hs * sizeof(double));
    return roles_lda_accuracy(X, labels, train, w->n_cases, w->hs, w->V, chance);
}

int roles_measure(Roles *r, Model *m, const Corpus *c, int n, uint64_t base, int full,
                  Error *err) {
    memset(r, 0, sizeof *r);
    if (c->task.kind == TASK_NONE)
        return error_set(err, "the checkpoint was trained on a corpus, not a task: roles needs "
                              "the records of a kv or repeat task to know where a head should "
                              "attend");
    const ModelShape *s = &m->shape;
    Work w = {.m = m, .c = c, .L = s->L, .NH = s->NH, .C = s->C, .hs = s->C / s->NH,
              .T = s->maxT, .B = m->maxB, .V = s->V, .LH = (size_t)s->L * s->NH, .n_recs = n};
    r->L = s->L, r->NH = s->NH, r->records = n;
    r->heads = xcalloc(w.LH, sizeof(RolesHead));
    r->layer_patch_q_pred = xcalloc((size_t)2 * s->L, sizeof(double));
    r->layer_swap_acc = r->layer_patch_q_pred + s->L;
    for (int l = 0; !full && l < s->L; l++) r->layer_patch_q_pred[l] = NAN;
    for (int l = 0; l < s->L; l++) r->layer_swap_acc[l] = NAN;
    r->prev_ablate_acc = r->prev_ablate_target_attn = NAN;
    for (int l = 0; l < s->L; l++)
        for (int h = 0; h < s->NH; h++) r->heads[l * s->NH + h].layer = l, r->heads[l * s->NH + h].head = h;
    w.recs = xmalloc((size_t)n * sizeof(Record));
    int *rows = xmalloc((size_t)2 * n * w.T * sizeof(int));
    w.cases = xmalloc((size_t)n * w.T * sizeof(Case));
    int *case_lo = xmalloc((size_t)n * sizeof(int)), *case_hi = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        w.recs[i].inputs = rows + (size_t)2 * i * w.T;
        w.recs[i].targets = w.recs[i].inputs + w.T;
        record_make(&w.recs[i], c, base + (uint64_t)i, w.T);
        case_lo[i] = w.n_cases;
        record_cases(&w.recs[i], c, i, w.cases, &w.n_cases);
        case_hi[i] = w.n_cases;
    }
    r->cases = w.n_cases;
    /* the two largest buffers, in the backward's scratch (only forwards run
     * here) when they fit */
    size_t n_spare;
    w.spare = (char *)model_spare_scratch(m, &n_spare);
    w.spare_bytes = n_spare * sizeof(real);
    void *feat_heap, *qk_heap;
    w.feat = work_buffer(&w, (size_t)w.n_cases * w.LH * N_FEAT * w.hs * sizeof(double), &feat_heap);
    w.qk_orig = work_buffer(&w, (size_t)2 * w.L * w.B * w.T * w.C * sizeof(real), &qk_heap);
    w.proj = xmalloc((size_t)w.L * w.hs * w.C * sizeof(real));
    Rng pr;
    rng_seed(&pr, 0x70726f6a); /* the control's projection is fixed, not the run's */
    for (size_t i = 0; i < (size_t)w.L * w.hs * w.C; i++)
        w.proj[i] = (real)(rng_normal(&pr) / sqrt((double)w.C));
    w.qmean = xcalloc(w.LH * w.V * w.hs, sizeof(double));
    w.kmean = xcalloc(w.LH * w.V * w.hs, sizeof(double));
    w.qn = xcalloc((size_t)w.V, sizeof(int));
    w.kn = xcalloc((size_t)w.V, sizeof(int));
    w.zmean = xcalloc((size_t)w.L * w.C, sizeof(double));
    int *inputs = xmalloc((size_t)w.B * w.T * sizeof(int)), *targets = xmalloc((size_t)w.B * w.T * sizeof(int));
    double (*cf_sum)[N_CF] = xcalloc(w.LH, sizeof *cf_sum);
    int (*cf_n)[N_CF] = xcalloc(w.LH, sizeof *cf_n);
    double right = 0;
    /* the passes read the attention of the cases' rows in every layer */
    const ForwardHooks keep = {.keep_pattern = 1};

    for (int first = 0; first < n; first += w.B) {
        int nb = n - first < w.B ? n - first : w.B;
        chunk_rows(&w, first, nb, inputs, targets);
        model_forward_hooked(m, inputs, targets, nb, w.T, &keep);
        pass_observe(&w, r, first, nb, case_lo, case_hi, &right);
        keep_qk(&w, nb);
        pass_counterfactual(&w, cf_sum, cf_n, first, nb, case_lo, case_hi, inputs);
    }
    double nc = w.n_cases > 0 ? w.n_cases : 1;
    r->accuracy = right / nc;
    /* decodability: trained on the even records' cases, tested on the odd ones' */
    unsigned char *train = xmalloc((size_t)(w.n_cases ? w.n_cases : 1));
    int *lab = xmalloc((size_t)4 * (w.n_cases ? w.n_cases : 1) * sizeof(int));
    int *cur_t = lab, *prev_t = lab + w.n_cases, *cur_j = lab + 2 * w.n_cases, *prev_j = lab + 3 * w.n_cases;
    for (int ci = 0; ci < w.n_cases; ci++) {
        const Case *e = &w.cases[ci];
        train[ci] = e->rec % 2 == 0;
        cur_t[ci] = e->cur_t, prev_t[ci] = e->prev_t, cur_j[ci] = e->cur_j, prev_j[ci] = e->prev_j;
    }
    double *X = xmalloc((size_t)(w.n_cases ? w.n_cases : 1) * w.hs * sizeof(double));
    for (size_t lh = 0; lh < w.LH; lh++) {
        RolesHead *rh = &r->heads[lh];
        rh->target_attn /= nc, rh->prev_attn /= nc, rh->prev_attn_j /= nc;
        for (int o = 0; o < ROLES_OFFSETS; o++) rh->offset_attn[o] /= nc;
        double *cf[N_CF] = {&rh->cf_q_cur, &rh->cf_q_prev, &rh->cf_k_cur, &rh->cf_k_prev};
        for (int k = 0; k < N_CF; k++) *cf[k] = cf_n[lh][k] ? cf_sum[lh][k] / cf_n[lh][k] : NAN;
        size_t l0 = lh - lh % (size_t)w.NH; /* the layer's control sits with head 0 */
        rh->q_cur = probe(&w, lh, F_Q, cur_t, train, X, &rh->chance_q_cur);
        rh->q_prev = probe(&w, lh, F_Q, prev_t, train, X, &rh->chance_q_prev);
        rh->k_cur = probe(&w, lh, F_K, cur_j, train, X, &rh->chance_k_cur);
        rh->k_prev = probe(&w, lh, F_K, prev_j, train, X, &rh->chance_k_prev);
        double ignore;
        rh->ctl_q_cur = probe(&w, l0, F_CTL_Q, cur_t, train, X, &ignore);
        rh->ctl_q_prev = probe(&w, l0, F_CTL_Q, prev_t, train, X, &ignore);
        rh->ctl_k_cur = probe(&w, l0, F_CTL_K, cur_j, train, X, &ignore);
        rh->ctl_k_prev = probe(&w, l0, F_CTL_K, prev_j, train, X, &ignore);
        rh->patch_q_attn = rh->patch_q_pred = rh->patch_k = rh->swap_acc = NAN;
        rh->ablate_acc = rh->ablate_target_attn = NAN;
    }
    label_roles(r);
    if (full) {
        means_finish(&w);
        /* npq: per head, then per layer for the whole-layer patch */
        int *npq = xcalloc(w.LH + (size_t)w.L, sizeof(int)), *npk = xcalloc(w.LH, sizeof(int));
        for (size_t lh = 0; lh < w.LH; lh++)
            r->heads[lh].patch_q_attn = r->heads[lh].patch_q_pred = r->heads[lh].patch_k = 0;
        for (int first = 0; first < n; first += w.B) {
            int nb = n - first < w.B ? n - first : w.B;
            chunk_rows(&w, first, nb, inputs, targets);
            model_forward_qk(m, inputs, nb, w.T);
            keep_qk(&w, nb);
            pass_patch(&w, r, first, nb, case_lo, case_hi, inputs, npq, npk);
        }
        for (size_t lh = 0; lh < w.LH; lh++) {
            RolesHead *rh = &r->heads[lh];
            rh->patch_q_attn = npq[lh] ? rh->patch_q_attn / npq[lh] : NAN;
            rh->patch_q_pred = npq[lh] ? rh->patch_q_pred / npq[lh] : NAN;
            rh->patch_k = npk[lh] ? rh->patch_k / npk[lh] : NAN;
        }
        heads_intervene(&w, r, inputs, targets);
        for (int l = 0; l < w.L; l++)
            r->layer_patch_q_pred[l] = npq[w.LH + l] ? r->layer_patch_q_pred[l] / npq[w.LH + l] : NAN;
        free(npq), free(npk);
    }
    if (full) composition(r, m);
    free(train), free(lab), free(X), free(cf_sum), free(cf_n), free(inputs), free(targets);
    free(w.recs), free(rows), free(w.cases), free(case_lo), free(case_hi), free(feat_heap), free(w.proj);
    free(w.qmean), free(w.kmean), free(w.qn), free(w.kn), free(w.zmean), free(qk_heap);
    return 0;
}

void roles_free(Roles *r) {
    free(r->heads);
    free(r->comp);
    free(r->layer_patch_q_pred);
    memset(r, 0, sizeof *r);
}
