#include "roles_lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "roles.h"

const char *roles_lm_set_name(int set) {
    return set == ROLES_LM_VAL ? "val" : set == ROLES_LM_RANDOM ? "random" : "?";
}

const char *roles_lm_role_name(RolesLmRole r) {
    static const char *const names[] = {"other", "previous-token", "induction", "duplicate",
                                        "sink"};
    return (unsigned)r <= LM_ROLE_SINK ? names[r] : "?";
}

/* The checks that need the corpus alone. */
static int spec_check(const Corpus *c, const RolesLmSpec *spec, Error *err) {
    if (c->task.kind != TASK_NONE)
        return error_set(err, "the checkpoint was trained on the %s task, not a corpus: the "
                              "repeated sequences are cut from a corpus's validation split",
                         task_name(c->task.kind));
    if (spec->records < 1) return error_set(err, "records %d: at least 1 is needed", spec->records);
    if (spec->segment < 2)
        return error_set(err, "segment %d: at least 2 is needed (a second copy's position i >= 1 "
                              "has an earlier occurrence and a successor)", spec->segment);
    if (c->V < 2)
        return error_set(err, "the vocabulary has %d token: the random set needs at least 2 (one "
                              "is left out of each string)", c->V);
    size_t n_val = c->n - c->n_train;
    if (n_val < (size_t)spec->segment + 1)
        return error_set(err, "the validation split holds %zu characters: segments of %d need at "
                              "least %d", n_val, spec->segment, spec->segment + 1);
    return 0;
}

int roles_lm_sequences(const Corpus *c, const RolesLmSpec *spec, int set, int *out, Error *err) {
    if (spec_check(c, spec, err)) return -1;
    int S = spec->segment;
    int *unused = xmalloc((size_t)S * sizeof(int)); /* the window's targets */
    for (int i = 0; i < spec->records; i++) {
        int *x = out + (size_t)i * 2 * S;
        if (set == ROLES_LM_VAL) {
            batch_eval_window(c, 1, i, spec->records, S, x, unused);
        } else {
            /* one stream per sequence: sequence i is the same whatever n */
            Rng r;
            rng_seed(&r, ROLES_LM_RANDOM_SEED + (uint64_t)i);
            int left_out = (int)rng_below(&r, (uint64_t)c->V);
            for (int p = 0; p < S; p++) {
                int y = (int)rng_below(&r, (uint64_t)c->V - 1);
                x[p] = y < left_out ? y : y + 1;
            }
        }
        memcpy(x + S, x, (size_t)S * sizeof(int));
    }
    free(unused);
    return 0;
}

/* ---- attention rows from kept queries and keys ---- */

static double dot(const real *a, const real *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* One head's softmax weights w[0..t] of query q over the keys 0..t at k
 * (row stride C), key j replaced by kj when kj is not NULL, in double;
 * returns the argmax (the first of equals). */
static int head_row(const real *q, const real *k, int t, int j, const real *kj, int hs, int C,
                    double *w) {
    double scale = 1.0 / sqrt((double)hs), sum = 0;
    int best = 0;
    for (int p = 0; p <= t; p++) {
        w[p] = scale * dot(q, p == j && kj ? kj : k + (size_t)p * C, hs);
        if (w[p] > w[best]) best = p;
    }
    double top = w[best];
    for (int p = 0; p <= t; p++) sum += w[p] = exp(w[p] - top);
    for (int p = 0; p <= t; p++) w[p] /= sum;
    return best;
}

/* Cross-entropy of the logits the last forward kept at pos against target. */
static double ce_at(const Model *m, size_t pos, int target) {
    const real *z = model_logits_at(m, pos);
    CHECK(z, "roles_lm: no logits at position %zu", pos);
    int V = m->shape.V;
    double top = z[0], s = 0;
    for (int v = 1; v < V; v++) top = z[v] > top ? z[v] : top;
    for (int v = 0; v < V; v++) s += exp(z[v] - top);
    return top + log(s) - z[target];
}

/* ---- the measurement ---- */

/* The counterfactuals: the token at t, t - 1, j or j - 1 changed; the shift. */
enum { CF_Q_CUR, CF_Q_PREV, CF_K_CUR, CF_K_PREV, CF_SHIFT, N_CF };

typedef struct {
    Model *m;
    int L, NH, C, hs, S, T, V, n;
    size_t LH;
    int rows;        /* sequences a forward: maxB maxT / T of them fit */
    int K, Q;        /* the interventions' sequences, and query positions in each */
    int kept;        /* rows of the kept q and k: min(rows, K) */
    int cells;       /* maxB maxT: the positions a forward holds */
    int neutral;     /* the shift's first token */
    const int *seqs; /* [n, T] */
    int *in, *tg;    /* [cells] */
    real *qk;        /* [2, L, kept, T, C] the original q and k of a chunk's rows */
    double *w;       /* [T + 1] one attention row */
} Lm;

/* A case: query position t = S + i of a chunk's row b; alt, the second
 * copy's position whose query the patch puts at t (-1: none). */
typedef struct {
    int b, t, alt;
} LmCase;

/* The interventions' sums over the cases, per head (per layer for swaps). */
typedef struct {
    double *top;          /* [LH] */
    double (*cf)[N_CF];   /* [LH] */
    double *patch;        /* [LH] */
    double *swap;         /* [LH] loss sums with the head exchanged, minus without */
    double *layer_swap;   /* [L] */
    int cases, patch_cases;
} LmSums;

static const real *kept_vec(const Lm *x, int key, int l, int b, int t, int h) {
    size_t per = (size_t)x->L * x->kept * x->T * x->C;
    return x->qk + key * per + (((size_t)l * x->kept + b) * x->T + t) * x->C + (size_t)h * x->hs;
}

static const int *seq_of(const Lm *x, int s) { return x->seqs + (size_t)s * x->T; }

/* Targets of a row: both copies' (scored 1) or the second's alone. */
static void row_targets(const Lm *x, const int *seq, int first_copy, int *tg) {
    for (int t = 0; t < x->T; t++) {
        int scored = t + 1 < x->T && t != x->S - 1 && (first_copy || t >= x->S);
        tg[t] = scored ? seq[t + 1] : TARGET_NONE;
    }
}

/* Sum of the second copy's losses (targets S+1 .. 2S-1) of the last
 * forward's rows first .. first + nb - 1. */
static double second_loss(const Lm *x, int first, int nb) {
    double s = 0;
    for (int b = 0; b < nb; b++)
        for (int i = 1; i < x->S; i++)
            s += ce_at(x->m, (size_t)b * x->T + x->S + i - 1, seq_of(x, first + b)[x->S + i]);
    return s;
}

/* The cheap figures of a chunk's forward (pattern kept, both copies scored). */
static void observe(const Lm *x, RolesLmSetResult *res, int first, int nb, double *loss) {
    int T = x->T, S = x->S;
    for (int b = 0; b < nb; b++) {
        for (int l = 0; l < x->L; l++)
            for (int h = 0; h < x->NH; h++) {
                RolesLmHead *rh = &res->heads[l * x->NH + h];
                const real *a = model_pattern(x->m, l) + ((size_t)b * x->NH + h) * T * T;
                for (int t = 1; t < T; t++) {
                    rh->prev_attn += a[(size_t)t * T + t - 1];
                    rh->sink_attn += a[(size_t)t * T];
                }
                for (int i = 1; i < S; i++) {
                    rh->induction_attn += a[(size_t)(S + i) * T + i + 1];
                    rh->duplicate_attn += a[(size_t)(S + i) * T + i];
                }
            }
        const int *seq = seq_of(x, first + b);
        for (int i = 1; i < S; i++) loss[0] += ce_at(x->m, (size_t)b * T + i - 1, seq[i]);
    }
    loss[1] += second_loss(x, first, nb);
}

/* The replacement of the token at p: the first token id after it, in
 * cyclic order, that occurs nowhere in the sequence (roles_lm_measure has
 * checked that there is one). */
static int replacement(const Lm *x, const int *seq, int p) {
    for (int d = 1; d < x->V; d++) {
        int cand = (seq[p] + d) % x->V, used = 0;
        for (int q = 0; q < x->S && !used; q++) used = seq[q] == cand;
        if (!used) return cand;
    }
    CHECK(0, "roles_lm: a sequence holds every token");
    return -1;
}

/* The second copy's position whose query the patch uses for case S + i:
 * S + i' for the first i' after i (cyclically over 1 .. S-1) whose token
 * differs from the case's and occurs once in the segment, so its
 * successors are two known positions; -1 when there is none. */
static int patch_source(const Lm *x, const int *seq, int i) {
    int S = x->S;
    for (int d = 1; d < S - 1; d++) {
        int ip = 1 + (i - 1 + d) % (S - 1), count = 0;
        if (seq[ip] == seq[i]) continue;
        for (int q = 0; q < S; q++) count += seq[q] == seq[ip];
        if (count == 1) return S + ip;
    }
    return -1;
}

/* The cases of the chunk's rows 0 .. kb-1 (sequences first ..): Q
 * consecutive query positions S + i0 .. in each, the starts i0 spread
 * evenly over 1 .. S - Q from the first sequence to the K-th. */
static int make_cases(const Lm *x, int first, int kb, LmCase *cases) {
    int n = 0, S = x->S;
    for (int b = 0; b < kb; b++) {
        int s = first + b;
        int i0 = 1 + (x->K > 1 ? (int)((long)s * (S - 1 - x->Q) / (x->K - 1)) : 0);
        for (int i = i0; i < i0 + x->Q; i++)
            cases[n++] = (LmCase){b, S + i, patch_source(x, seq_of(x, s), i)};
    }
    return n;
}

/* A changed sequence of the counterfactuals: row b with the token at p
 * replaced, run as far as len (the latest position read from it). */
typedef struct {
    int b, p, len, group, slot;
} CfRow;

static int cf_row_order(const void *pa, const void *pb) {
    const CfRow *a = *(const CfRow *const *)pa, *b = *(const CfRow *const *)pb;
    if (a->len != b->len) return (a->len > b->len) - (a->len < b->len);
    if (a->b != b->b) return (a->b > b->b) - (a->b < b->b);
    return (a->p > b->p) - (a->p < b->p);
}

/* The counterfactuals of the cases: val[(ci LH + lh) 4 + ms] for the four
 * token changes, the attention from t on j with this head's query at t (or
 * key at j) from the changed sequence's forward; a change without a
 * position (j = 0 has no previous token) keeps the original attention.
 * Each changed sequence (row, position) runs once, as far as the latest
 * position read from it (the model is causal), as many at a time as a
 * forward holds. */
static void counterfactuals(Lm *x, int first, const LmCase *cases, int nc, const int *cj,
                            const double *ctop, double *val) {
    int T = x->T, C = x->C, hs = x->hs, kb = cases[nc - 1].b + 1;
    size_t nread = (size_t)nc * x->LH * 4;
    int *row_of = xmalloc((size_t)kb * T * sizeof(int)), *read_row = xmalloc(nread * sizeof(int));
    for (int i = 0; i < kb * T; i++) row_of[i] = -1;
    CfRow *rows = xmalloc(nread * sizeof(CfRow));
    int nrow = 0;
    for (size_t r = 0; r < nread; r++) {
        const LmCase *e = &cases[r / (x->LH * 4)];
        int j = cj[r / 4], ms = (int)(r % 4);
        int p = ms == CF_Q_CUR ? e->t : ms == CF_Q_PREV ? e->t - 1 : ms == CF_K_CUR ? j : j - 1;
        int at = ms <= CF_Q_PREV ? e->t : j; /* the position read */
        read_row[r] = -1;
        if (p < 0) continue;
        int *id = &row_of[e->b * T + p];
        if (*id < 0) {
            *id = nrow++;
            rows[*id] = (CfRow){e->b, p, 0, -1, -1};
        }
        rows[*id].len = rows[*id].len > at + 1 ? rows[*id].len : at + 1;
        read_row[r] = *id;
    }
    /* forwards of rows of similar length: shortest first */
    CfRow **order = xmalloc((size_t)(nrow ? nrow : 1) * sizeof(CfRow *));
    for (int i = 0; i < nrow; i++) order[i] = &rows[i];
    qsort(order, (size_t)nrow, sizeof *order, cf_row_order);
    for (int lo = 0, group = 0; lo < nrow; group++) {
        int hi = lo + 1;
        while (hi < nrow && (hi - lo + 1) * order[hi]->len <= x->cells) hi++;
        int Tg = order[hi - 1]->len;
        for (int k = lo; k < hi; k++) {
            CfRow *w = order[k];
            const int *seq = seq_of(x, first + w->b);
            int *in = x->in + (size_t)(k - lo) * Tg;
            memcpy(in, seq, (size_t)Tg * sizeof(int));
            in[w->p] = replacement(x, seq, w->p);
            w->group = group, w->slot = k - lo;
        }
        model_forward_qk(x->m, x->in, hi - lo, Tg);
        for (size_t r = 0; r < nread; r++) {
            if (read_row[r] < 0 || rows[read_row[r]].group != group) continue;
            const LmCase *e = &cases[r / (x->LH * 4)];
            size_t lh = (r / 4) % x->LH;
            int l = (int)(lh / (size_t)x->NH), h = (int)(lh % (size_t)x->NH), j = cj[r / 4];
            int qside = r % 4 <= CF_Q_PREV;
            const real *changed = (qside ? model_q(x->m, l) : model_k(x->m, l)) +
                                  ((size_t)rows[read_row[r]].slot * Tg + (qside ? e->t : j)) * C +
                                  (size_t)h * hs;
            head_row(qside ? changed : kept_vec(x, 0, l, e->b, e->t, h),
                     kept_vec(x, 1, l, e->b, 0, h), e->t, j, qside ? NULL : changed, hs, C, x->w);
            val[r] = x->w[j];
        }
        lo = hi;
    }
    for (size_t r = 0; r < nread; r++)
        if (read_row[r] < 0) val[r] = ctop[r / 4];
    free(row_of), free(read_row), free(rows), free(order);
}

/* cf_shift: the rows shifted one position later behind the neutral token
 * (as far as the model's block allows), attention from t + 1 on j + 1
 * read from a whole forward; a case whose t + 1 falls past the block keeps
 * its original attention. */
static void shift(Lm *x, int first, int kb, const LmCase *cases, int nc, const int *cj,
                  const double *ctop, double *sum) {
    int len = x->T + 1 <= x->m->shape.maxT ? x->T + 1 : x->T, per = x->cells / len;
    const ForwardHooks keep = {.keep_pattern = 1};
    for (int b0 = 0; b0 < kb; b0 += per) {
        int nb = kb - b0 < per ? kb - b0 : per;
        for (int b = 0; b < nb; b++) {
            int *in = x->in + (size_t)b * len;
            in[0] = x->neutral;
            memcpy(in + 1, seq_of(x, first + b0 + b), (size_t)(len - 1) * sizeof(int));
        }
        model_forward_hooked(x->m, x->in, NULL, nb, len, &keep);
        for (int ci = 0; ci < nc; ci++) {
            const LmCase *e = &cases[ci];
            if (e->b < b0 || e->b >= b0 + nb) continue;
            for (size_t lh = 0; lh < x->LH; lh++) {
                int l = (int)(lh / (size_t)x->NH), h = (int)(lh % (size_t)x->NH);
                int j = cj[ci * x->LH + lh];
                const real *a =
                    model_pattern(x->m, l) + ((size_t)(e->b - b0) * x->NH + h) * len * len;
                sum[ci * x->LH + lh] = e->t + 1 < len ? a[(size_t)(e->t + 1) * len + j + 1]
                                                      : ctop[ci * x->LH + lh];
            }
        }
    }
}

/* Swaps: the second copy's loss sum of rows 0 .. kb-1 with each head's,
 * then each layer's, W_Q and W_K exchanged (the swap_qk hook), minus the
 * loss without. The top layer first: a forward from layer l rewrites the
 * layers from l up and leaves the input of every layer below for the
 * next. */
static void swaps(Lm *x, int first, int kb, LmSums *sums) {
    for (int b = 0; b < kb; b++) {
        memcpy(x->in + (size_t)b * x->T, seq_of(x, first + b), (size_t)x->T * sizeof(int));
        row_targets(x, seq_of(x, first + b), 0, x->tg + (size_t)b * x->T);
    }
    model_forward_hooked(x->m, x->in, x->tg, kb, x->T, NULL);
    double base = second_loss(x, first, kb);
    unsigned char *flags = xcalloc(x->LH, 1);
    const ForwardHooks swapped = {.swap_qk = flags};
    for (int l = x->L - 1; l >= 0; l--) {
        for (int h = 0; h <= x->NH; h++) { /* h = NH: the whole layer */
            size_t lh = (size_t)l * x->NH + (h < x->NH ? h : 0);
            memset(flags + lh, 1, h < x->NH ? 1 : (size_t)x->NH);
            model_forward_from(x->m, l, &swapped);
            double d = second_loss(x, first, kb) - base;
            if (h < x->NH) sums->swap[lh] += d;
            else sums->layer_swap[l] += d;
            memset(flags + (size_t)l * x->NH, 0, (size_t)x->NH);
        }
    }
    free(flags);
}

/* The interventions on the chunk's rows 0 .. kb-1, whose original forward
 * is the last one. */
static void intervene(Lm *x, int first, int kb, LmSums *sums) {
    size_t per = (size_t)kb * x->T * x->C, stride = (size_t)x->kept * x->T * x->C;
    for (int l = 0; l < x->L; l++) {
        memcpy(x->qk + l * stride, model_q(x->m, l), per * sizeof(real));
        memcpy(x->qk + (x->L + l) * stride, model_k(x->m, l), per * sizeof(real));
    }
    LmCase *cases = xmalloc((size_t)kb * x->Q * sizeof(LmCase));
    int nc = make_cases(x, first, kb, cases);
    size_t ncl = (size_t)nc * x->LH;
    int *cj = xmalloc(ncl * sizeof(int));
    double *ctop = xmalloc(ncl * sizeof(double)), *cshift = xmalloc(ncl * sizeof(double));
    double *val = xmalloc(ncl * 4 * sizeof(double));
    for (int ci = 0; ci < nc; ci++) {
        const LmCase *e = &cases[ci];
        const int *seq = seq_of(x, first + e->b);
        for (size_t lh = 0; lh < x->LH; lh++) {
            int l = (int)(lh / (size_t)x->NH), h = (int)(lh % (size_t)x->NH);
            const real *k = kept_vec(x, 1, l, e->b, 0, h);
            size_t at = ci * x->LH + lh;
            cj[at] = head_row(kept_vec(x, 0, l, e->b, e->t, h), k, e->t, -1, NULL, x->hs, x->C,
                              x->w);
            ctop[at] = x->w[cj[at]];
            if (e->alt < 0) continue;
            /* the patch: the query from the other position, the keys as they were */
            int a = head_row(kept_vec(x, 0, l, e->b, e->alt, h), k, e->t, -1, NULL, x->hs, x->C,
                             x->w);
            sums->patch[lh] += a >= 1 && seq[a - 1] == seq[e->alt];
        }
        sums->patch_cases += e->alt >= 0;
    }
    counterfactuals(x, first, cases, nc, cj, ctop, val);
    shift(x, first, kb, cases, nc, cj, ctop, cshift);
    for (size_t at = 0; at < ncl; at++) {
        size_t lh = at % x->LH;
        sums->top[lh] += ctop[at];
        for (int ms = 0; ms < 4; ms++) sums->cf[lh][ms] += val[at * 4 + ms];
        sums->cf[lh][CF_SHIFT] += cshift[at];
    }
    sums->cases += nc;
    swaps(x, first, kb, sums);
    free(cases), free(cj), free(ctop), free(cshift), free(val);
}

/* The largest qualifying score of previous-token, induction and
 * duplicate; a sink only when none qualifies (heads park the attention
 * they do not use on the first position, whatever else they do). */
static RolesLmRole label(const RolesLmHead *h) {
    const double score[] = {h->prev_attn, h->induction_attn, h->duplicate_attn};
    const double need[] = {ROLES_LM_PREV_MIN, ROLES_LM_INDUCTION_MIN, ROLES_LM_DUPLICATE_MIN};
    const RolesLmRole role[] = {LM_ROLE_PREV_TOKEN, LM_ROLE_INDUCTION, LM_ROLE_DUPLICATE};
    RolesLmRole best = LM_ROLE_OTHER;
    double top = 0;
    for (int k = 0; k < 3; k++)
        if (score[k] >= need[k] && score[k] > top) best = role[k], top = score[k];
    return best == LM_ROLE_OTHER && h->sink_attn >= ROLES_LM_SINK_MIN ? LM_ROLE_SINK : best;
}

static void measure_set(Lm *x, RolesLmSetResult *res, int full) {
    int T = x->T;
    double loss[2] = {0, 0};
    LmSums sums = {0};
    double *buf = xcalloc(x->LH * (3 + N_CF) + (size_t)x->L, sizeof(double));
    sums.top = buf;
    sums.patch = buf + x->LH;
    sums.swap = buf + 2 * x->LH;
    sums.cf = (double (*)[N_CF])(buf + 3 * x->LH);
    sums.layer_swap = buf + (3 + N_CF) * x->LH;
    const ForwardHooks keep = {.keep_pattern = 1};
    for (int first = 0; first < x->n; first += x->rows) {
        int nb = x->n - first < x->rows ? x->n - first : x->rows;
        for (int b = 0; b < nb; b++) {
            memcpy(x->in + (size_t)b * T, seq_of(x, first + b), (size_t)T * sizeof(int));
            row_targets(x, seq_of(x, first + b), 1, x->tg + (size_t)b * T);
        }
        model_forward_hooked(x->m, x->in, x->tg, nb, T, &keep);
        observe(x, res, first, nb, loss);
        if (full && first < x->K) intervene(x, first, x->K - first < nb ? x->K - first : nb, &sums);
    }
    double pairs = (double)x->n * (x->S - 1), rows = (double)x->n * (T - 1);
    res->loss_first = loss[0] / pairs;
    res->loss_second = loss[1] / pairs;
    double sub = (double)x->K * (x->S - 1), nc = sums.cases, np = sums.patch_cases;
    for (size_t lh = 0; lh < x->LH; lh++) {
        RolesLmHead *h = &res->heads[lh];
        h->prev_attn /= rows, h->sink_attn /= rows;
        h->induction_attn /= pairs, h->duplicate_attn /= pairs;
        h->role = label(h);
        double *cf[N_CF] = {&h->cf_q_cur, &h->cf_q_prev, &h->cf_k_cur, &h->cf_k_prev, &h->cf_shift};
        h->top_attn = full && nc ? sums.top[lh] / nc : NAN;
        for (int ms = 0; ms < N_CF; ms++) *cf[ms] = full && nc ? sums.cf[lh][ms] / nc : NAN;
        h->patch_q_attn = full && np ? sums.patch[lh] / np : NAN;
        h->swap_dloss = full ? sums.swap[lh] / sub : NAN;
    }
    for (int l = 0; l < x->L; l++) res->layer_swap_dloss[l] = full ? sums.layer_swap[l] / sub : NAN;
    res->cases = sums.cases;
    res->patch_cases = sums.patch_cases;
    free(buf);
}

/* Composition of every head labelled previous-token (in a set) into every
 * head of a later layer labelled induction (in a set). */
static void compose(RolesLm *r, const Model *m) {
    size_t LH = (size_t)r->L * r->NH;
    r->comp = xcalloc(LH * LH + 1, sizeof(RolesLmComp));
    for (size_t a = 0; a < LH; a++)
        for (size_t b = 0; b < LH; b++) {
            int prev = 0, ind = 0;
            for (int s = 0; s < ROLES_LM_SETS && r->set[s].heads; s++) {
                prev |= r->set[s].heads[a].role == LM_ROLE_PREV_TOKEN;
                ind |= r->set[s].heads[b].role == LM_ROLE_INDUCTION;
            }
            if (!prev || !ind || a / r->NH >= b / r->NH) continue;
            RolesLmComp *e = &r->comp[r->n_comp++];
            *e = (RolesLmComp){(int)a / r->NH, (int)a % r->NH, (int)b / r->NH, (int)b % r->NH,
                               0, 0};
            double v;
            roles_composition_pair(m, e->from_layer, e->from_head, e->to_layer, e->to_head,
                                   &e->k_comp, &e->q_comp, &v);
        }
}

int roles_lm_measure(RolesLm *r, Model *m, const Corpus *c, const RolesLmSpec *spec, int full,
                     Error *err) {
    memset(r, 0, sizeof *r);
    const ModelShape *s = &m->shape;
    if (spec_check(c, spec, err)) return -1;
    CHECK(c->V == s->V, "roles_lm_measure: the corpus has %d tokens, the model %d", c->V, s->V);
    if (2 * spec->segment > s->maxT)
        return error_set(err, "segment %d: two copies (%d tokens) exceed block_size %d; at most "
                              "%d", spec->segment, 2 * spec->segment, s->maxT, s->maxT / 2);
    int S = spec->segment, T = 2 * S, n = spec->records;
    Lm x = {.m = m, .L = s->L, .NH = s->NH, .C = s->C, .hs = s->C / s->NH, .S = S,
            .T = T, .V = s->V, .n = n, .LH = (size_t)s->L * s->NH,
            .cells = m->maxB * s->maxT};
    x.rows = x.cells / T;
    x.K = n < ROLES_LM_SUB_RECORDS ? n : ROLES_LM_SUB_RECORDS;
    x.Q = S - 1 < ROLES_LM_QUERIES ? S - 1 : ROLES_LM_QUERIES;
    x.kept = x.rows < x.K ? x.rows : x.K;
    int space = vocab_lookup(c, ' ');
    x.neutral = space >= 0 ? space : 0;
    int *seqs[ROLES_LM_SETS] = {NULL, NULL}, sets = spec->val_only ? 1 : ROLES_LM_SETS;
    for (int k = 0; k < sets; k++) {
        seqs[k] = xmalloc((size_t)n * T * sizeof(int));
        roles_lm_sequences(c, spec, k, seqs[k], err); /* checked above */
    }
    /* the counterfactuals replace a token by one absent from its sequence */
    for (int k = 0; full && k < sets; k++)
        for (int i = 0; i < x.K; i++) {
            int distinct = 0;
            unsigned char *seen = xcalloc((size_t)x.V, 1);
            for (int p = 0; p < S; p++) distinct += !seen[seqs[k][(size_t)i * T + p]]++;
            free(seen);
            if (distinct == x.V) {
                for (int f = 0; f < ROLES_LM_SETS; f++) free(seqs[f]);
                return error_set(err, "sequence %d of the %s set holds all %d tokens of the "
                                      "vocabulary, and the counterfactuals replace a token by one "
                                      "the sequence lacks: a segment of at most %d (V - 1) always "
                                      "leaves one (this one is %d)",
                                 i, roles_lm_set_name(k), x.V, x.V - 1, S);
            }
        }
    r->L = s->L, r->NH = s->NH, r->V = s->V, r->records = n, r->segment = S;
    r->sub_records = full ? x.K : 0, r->queries = full ? x.Q : 0;
    x.in = xmalloc((size_t)x.cells * sizeof(int));
    x.tg = xmalloc((size_t)x.cells * sizeof(int));
    x.w = xmalloc((size_t)(T + 1) * sizeof(double));
    if (full) x.qk = xmalloc((size_t)2 * x.L * x.kept * T * x.C * sizeof(real));
    for (int k = 0; k < sets; k++) {
        RolesLmSetResult *res = &r->set[k];
        res->heads = xcalloc(x.LH, sizeof(RolesLmHead));
        res->layer_swap_dloss = xcalloc((size_t)x.L, sizeof(double));
        for (size_t lh = 0; lh < x.LH; lh++) {
            res->heads[lh].layer = (int)(lh / (size_t)x.NH);
            res->heads[lh].head = (int)(lh % (size_t)x.NH);
        }
        x.seqs = seqs[k];
        measure_set(&x, res, full);
    }
    if (full) compose(r, m);
    for (int k = 0; k < ROLES_LM_SETS; k++) free(seqs[k]);
    free(x.in), free(x.tg), free(x.w), free(x.qk);
    return 0;
}

void roles_lm_free(RolesLm *r) {
    for (int k = 0; k < ROLES_LM_SETS; k++) {
        free(r->set[k].heads);
        free(r->set[k].layer_swap_dloss);
    }
    free(r->comp);
    memset(r, 0, sizeof *r);
}
