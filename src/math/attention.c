#include "attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm.h"
#include "layers.h"

/* Each (batch, head) pair is one thread's: its outputs are disjoint from every
 * other pair's, and its products run through gemm.h's register tiles, which
 * sum every element over k in a fixed order. Pairs go by the guided schedule
 * (as the tiles of gemm.c), so a thread slowed by other load on the machine
 * takes fewer; which thread takes a pair does not change its result. The
 * causal structure is used to skip tiles: score tiles entirely above the
 * diagonal are not computed, and products over keys stop (or start) where the
 * weights become zero. */

/* Each thread's share of the scratch: packed panels of one head's K, V, Q,
 * dout and a T x T buffer for the score gradients. */
typedef struct {
    int hs;                /* channels per head */
    real scale;            /* of the scores: 1 / sqrt(hs) */
    size_t np_t, np_h;     /* panels over keys (T), over head channels (hs) */
    size_t kt, pv, dss;    /* sizes: K^T-like panels, V-like panels, T x T */
    size_t per_thread;
} HeadScratch;

static HeadScratch scratch_layout(int T, int C, int NH) {
    HeadScratch s;
    int hs = s.hs = C / NH;
    s.scale = (real)(1.0 / sqrt((double)hs));
    s.np_t = ((size_t)T + NR - 1) / NR;
    s.np_h = ((size_t)hs + NR - 1) / NR;
    s.kt = round_lines(s.np_t * NR * hs);
    s.pv = round_lines(s.np_h * NR * T);
    s.dss = round_lines((size_t)T * T);
    /* forward: kt + pv; backward: kt + 3 pv + dss */
    s.per_thread = s.kt + 3 * s.pv + s.dss;
    return s;
}

static real *scratch_get(const HeadScratch *s, ScratchBuf *buf) {
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    return scratch_reserve(buf, s->per_thread * (size_t)nth);
}

/* Packs the [T, hs] block at x (row stride C) as panels over keys of x^T
 * (k = channel, n = position) or over channels of x (k = position). */
static void pack_keys(real *dst, const real *x, int T, int hs, int C, size_t np_t) {
    for (size_t p = 0; p < np_t; p++) {
        size_t nr = (size_t)T - p * NR < (size_t)NR ? (size_t)T - p * NR : (size_t)NR;
        gemm_pack_b(dst + p * NR * hs, x + p * NR * (size_t)C, 1, (size_t)C, (size_t)hs, nr);
    }
}

static void pack_chans(real *dst, const real *x, int T, int hs, int C, size_t np_h) {
    for (size_t p = 0; p < np_h; p++) {
        size_t nr = (size_t)hs - p * NR < (size_t)NR ? (size_t)hs - p * NR : (size_t)NR;
        gemm_pack_b(dst + p * NR * T, x + p * NR, (size_t)C, 1, (size_t)T, nr);
    }
}

static inline vreal vexp_any(vreal x) {
#ifndef QK_DOUBLE
    return vexpf(x);
#else
    for (int l = 0; l < VL; l++) x[l] = exp(x[l]);
    return x;
#endif
}

/* row[0..n) = softmax(row * scale) (scale > 0); the causal tail row[n..T) = 0.
 * The last partial vector is read without the lanes past n (as -inf for the
 * maximum) and its exponentials there are masked to 0, which is what they
 * must hold. The tail's zeros are stored first: the products read them next,
 * and stores just before those loads stalled them. */
static void softmax_row(real *row, int n, int T, real scale) {
    int nf = n / VL * VL, rem = n - nf;
    int end = rem ? (nf + VL <= T ? nf + VL : n) : nf; /* what the vectors below store */
    vreal vm = vsplat(-INFINITY), tail = vm;
    for (int i = 0; i < nf; i += VL) vm = vmax(vm, vload(row + i));
    if (rem) vm = vmax(vm, tail = vload_part(row + nf, rem, -INFINITY));
    vzero(row + end, (size_t)(T - end));
    real ms = vhmax(vm) * scale;
    vreal vs = {0};
    for (int i = 0; i < nf; i += VL) {
        vreal e = vexp_any(vload(row + i) * scale - ms);
        vstore(row + i, e);
        vs += e;
    }
    if (rem) {
        tail = (vreal)((vint)vexp_any(tail * scale - ms) & vlanes_below(rem));
        vs += tail;
    }
    real inv = 1 / vhsum(vs);
    for (int i = 0; i < nf; i += VL) vstore(row + i, vload(row + i) * inv);
    if (rem && end > n)
        vstore(row + nf, tail * inv);
    else if (rem)
        vstore_part(row + nf, tail * inv, rem);
}

/* Through the row softmax, in place: dr[0..n) = a * (da - sum(a * da)) *
 * scale from da in dr[0..n), and dr[n..end) = 0 (stored first, as above). */
static void softmax_backward_row(real *dr, const real *ar, size_t n, size_t end, real scale) {
    vzero(dr + n, end - n);
    size_t i = 0;
    vreal vs = {0};
    for (; i + VL <= n; i += VL) vs += vload(ar + i) * vload(dr + i);
    real dot = vhsum(vs);
    for (; i < n; i++) dot += ar[i] * dr[i];
    size_t nf = n / VL * VL;
    for (i = 0; i < nf; i += VL) vstore(dr + i, vload(ar + i) * (vload(dr + i) - dot) * scale);
    if (nf < n) {
        int rem = (int)(n - nf);
        vstore_part(dr + nf, vload_part(ar + nf, rem, 0) * (vload_part(dr + nf, rem, 0) - dot) * scale,
                    rem);
    }
}

/* The calling thread's block of the scratch. */
static real *thread_scratch(real *base, const HeadScratch *L) {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    return base + (size_t)tid * L->per_thread;
}

/* Where (batch row, head) bh = b * NH + h starts in a (B, T, C) tensor: head
 * h owns channels h * hs .. of every position. */
static size_t head_offset(int bh, int T, int C, int NH) {
    return (size_t)(bh / NH) * T * C + (size_t)(bh % NH) * (C / NH);
}

/* The score columns a row tile computes when its last row sees keys
 * 0..last-1: up to the diagonal's vector (the products' kernels take a
 * column edge of one vector at half the work), the rest being the causal
 * tail the softmax writes. */
static size_t keys_to_vector(size_t last, int T) {
    size_t nk = (last + VL - 1) / VL * VL;
    return nk > (size_t)T ? (size_t)T : nk;
}

void attention_forward(real *out, real *att, const real *q, const real *k, const real *v,
                       int B, int T, int C, int NH, ScratchBuf *scratch) {
    HeadScratch L = scratch_layout(T, C, NH);
    int hs = L.hs;
    real scale = L.scale, *base = scratch_get(&L, scratch);
#pragma omp parallel for schedule(guided)
    for (int bh = 0; bh < B * NH; bh++) {
        real *kt = thread_scratch(base, &L), *vp = kt + L.kt;
        size_t off = head_offset(bh, T, C, NH);
        pack_keys(kt, k + off, T, hs, C, L.np_t);
        pack_chans(vp, v + off, T, hs, C, L.np_h);
        real *a = att + (size_t)bh * T * T;
        for (int t0 = 0; t0 < T; t0 += MR) {
            size_t mr = T - t0 < MR ? (size_t)(T - t0) : MR;
            size_t last = t0 + mr; /* rows t0..last-1 see keys 0..last-1 */
            /* scores of the rows' tile, keys up to the diagonal */
            gemm_strip((size_t)hs, q + off + (size_t)t0 * C, (size_t)C, 1, mr, kt, NR * (size_t)hs,
                       keys_to_vector(last, T), a + (size_t)t0 * T, (size_t)T, 0);
            for (size_t t = t0; t < last; t++) softmax_row(a + t * T, (int)t + 1, T, scale);
            /* out rows = att rows . V over keys 0..last-1 */
            gemm_strip(last, a + (size_t)t0 * T, (size_t)T, 1, mr, vp, NR * (size_t)T, (size_t)hs,
                       out + off + (size_t)t0 * C, (size_t)C, 0);
        }
    }
}

void attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *q,
                        const real *k, const real *v, const real *att, int B, int T, int C,
                        int NH, ScratchBuf *scratch) {
    HeadScratch L = scratch_layout(T, C, NH);
    int hs = L.hs;
    real scale = L.scale, *base = scratch_get(&L, scratch);
#pragma omp parallel for schedule(guided)
    for (int bh = 0; bh < B * NH; bh++) {
        real *vt = thread_scratch(base, &L); /* V^T panels over keys */
        real *dop = vt + L.kt, *kp = dop + L.pv, *qp = kp + L.pv, *ds = qp + L.pv;
        size_t off = head_offset(bh, T, C, NH);
        const real *a = att + (size_t)bh * T * T;
        pack_keys(vt, v + off, T, hs, C, L.np_t);
        pack_chans(dop, dout + off, T, hs, C, L.np_h);
        pack_chans(kp, k + off, T, hs, C, L.np_h);
        pack_chans(qp, q + off, T, hs, C, L.np_h);

        /* ds = softmax backward of datt = dout V^T, row by row tile */
        for (int t0 = 0; t0 < T; t0 += MR) {
            size_t mr = T - t0 < MR ? (size_t)(T - t0) : MR;
            size_t last = t0 + mr;
            gemm_strip((size_t)hs, dout + off + (size_t)t0 * C, (size_t)C, 1, mr, vt,
                       NR * (size_t)hs, keys_to_vector(last, T), ds + (size_t)t0 * T, (size_t)T, 0);
            /* zeros above the diagonal up to the tile's edge: the products
             * below read them */
            for (size_t t = t0; t < last; t++)
                softmax_backward_row(ds + t * T, a + t * T, t + 1, last, scale);
        }
        for (int t0 = 0; t0 < T; t0 += MR) {
            size_t mr = T - t0 < MR ? (size_t)(T - t0) : MR;
            size_t last = t0 + mr;
            size_t co = off + (size_t)t0 * C, bps = NR * (size_t)T;
            /* dq rows t = ds rows . K over keys 0..last-1 */
            gemm_strip(last, ds + (size_t)t0 * T, (size_t)T, 1, mr, kp, bps, (size_t)hs, dq + co,
                       (size_t)C, 0);
            /* dk rows t2 = ds^T . Q over queries t >= t0 (ds is 0 for t < t2) */
            gemm_strip(T - t0, ds + (size_t)t0 * T + t0, 1, (size_t)T, mr, qp + (size_t)t0 * NR, bps,
                       (size_t)hs, dk + co, (size_t)C, 0);
            /* dv rows t2 = att^T . dout over queries t >= t0 */
            gemm_strip(T - t0, a + (size_t)t0 * T + t0, 1, (size_t)T, mr, dop + (size_t)t0 * NR, bps,
                       (size_t)hs, dv + co, (size_t)C, 0);
        }
    }
}

/* ---- at a subset of query rows ------------------------------------------ */

/* (batch row, head) pair bh: its listed rows rows[lo .. lo + n) and where
 * its head block starts in a [B, T, C] tensor. */
typedef struct {
    int b, h, lo, n;
    size_t off;
} RowsPair;

static RowsPair rows_pair(const int *rows, int R, int bh, int T, int C, int NH) {
    RowsPair p = {.b = bh / NH, .h = bh % NH, .off = head_offset(bh, T, C, NH)};
    p.lo = (int)rows_find(rows, (size_t)R, (size_t)p.b * T);
    p.n = (int)rows_find(rows, (size_t)R, (size_t)(p.b + 1) * T) - p.lo;
    return p;
}

/* The position (t) of the pair's i-th listed row. */
static int pair_t(const int *rows, const RowsPair *p, int i, int T) {
    return rows[p->lo + i] - p->b * T;
}

/* The tile of the pair's rows from i0: *mr rows (at most MR); returns the
 * keys its last row sees. */
static size_t pair_tile(const int *rows, const RowsPair *p, int i0, int T, size_t *mr) {
    *mr = p->n - i0 < MR ? (size_t)(p->n - i0) : MR;
    return (size_t)pair_t(rows, p, i0 + (int)*mr - 1, T) + 1;
}

/* The pair's setup: K^T (or V^T) panels over keys at kt, K (or V) panels
 * over channels at chans, the listed rows' queries gathered at qg. */
static void pair_pack(real *kt, real *chans, real *qg, const real *keys, const real *vals,
                      const real *q, const int *rows, const RowsPair *p, int T, int C,
                      const HeadScratch *L) {
    pack_keys(kt, keys + p->off, T, L->hs, C, L->np_t);
    pack_chans(chans, vals + p->off, T, L->hs, C, L->np_h);
    for (int i = 0; i < p->n; i++)
        memcpy(qg + (size_t)i * L->hs, q + p->off + (size_t)pair_t(rows, p, i, T) * C,
               (size_t)L->hs * sizeof(real));
}

void attention_forward_rows(real *out, real *att, const real *q, const real *k, const real *v,
                            const int *rows, int R, int B, int T, int C, int NH,
                            ScratchBuf *scratch) {
    HeadScratch L = scratch_layout(T, C, NH);
    int hs = L.hs;
    size_t ldatt = (size_t)NH * T; /* row i, head h at att + (i NH + h) T */
    real scale = L.scale, *base = scratch_get(&L, scratch);
#pragma omp parallel for schedule(guided)
    for (int bh = 0; bh < B * NH; bh++) {
        RowsPair p = rows_pair(rows, R, bh, T, C, NH);
        if (p.n == 0) continue;
        real *kt = thread_scratch(base, &L), *vp = kt + L.kt, *qg = vp + L.pv;
        pair_pack(kt, vp, qg, k, v, q, rows, &p, T, C, &L);
        for (int i0 = 0; i0 < p.n; i0 += MR) {
            size_t mr, last = pair_tile(rows, &p, i0, T, &mr);
            real *a = att + (size_t)(p.lo + i0) * ldatt + (size_t)p.h * T;
            gemm_strip((size_t)hs, qg + (size_t)i0 * hs, (size_t)hs, 1, mr, kt, NR * (size_t)hs,
                       keys_to_vector(last, T), a, ldatt, 0);
            for (size_t i = 0; i < mr; i++)
                softmax_row(a + i * ldatt, pair_t(rows, &p, i0 + (int)i, T) + 1, T, scale);
            gemm_strip(last, a, ldatt, 1, mr, vp, NR * (size_t)T, (size_t)hs,
                       out + (size_t)(p.lo + i0) * C + (size_t)p.h * hs, (size_t)C, 0);
        }
    }
}

/* A key-side product of the pair, dst = A^T . P into its [T, hs] head block
 * (row stride C): A is [n, T] (row stride sak; ds or the weights) and P the
 * panels over channels of an [n, hs] block of its rows (the queries or
 * dout). Key row j sums over the rows at or after its tile, whose A is 0
 * before j as the causal mask makes it. */
static void pair_key_product(real *dst, const real *A, size_t sak, const real *panels,
                             const int *rows, const RowsPair *p, int T, int C, int hs) {
    for (int j0 = 0; j0 < T; j0 += MR) {
        size_t mr = T - j0 < MR ? (size_t)(T - j0) : MR;
        int i0 = (int)rows_find(rows + p->lo, (size_t)p->n, (size_t)(p->b * T + j0));
        real *d = dst + p->off + (size_t)j0 * C;
        if (i0 < p->n)
            gemm_strip((size_t)(p->n - i0), A + (size_t)i0 * sak + j0, 1, sak, mr,
                       panels + (size_t)i0 * NR, NR * (size_t)p->n, (size_t)hs, d, (size_t)C, 0);
        else
            for (size_t j = 0; j < mr; j++) memset(d + j * C, 0, (size_t)hs * sizeof(real));
    }
}

void attention_backward_rows(real *dq, real *dk, real *dv, const real *dout, const real *q,
                             const real *k, const real *v, const real *att, const int *rows,
                             int R, int B, int T, int C, int NH, ScratchBuf *scratch) {
    HeadScratch L = scratch_layout(T, C, NH);
    int hs = L.hs;
    size_t ldatt = (size_t)NH * T;
    real scale = L.scale, *base = scratch_get(&L, scratch);
#pragma omp parallel for schedule(guided)
    for (int bh = 0; bh < B * NH; bh++) {
        RowsPair p = rows_pair(rows, R, bh, T, C, NH);
        int n = p.n;
        real *vt = thread_scratch(base, &L); /* V^T panels over keys */
        real *qg = vt + L.kt, *kp = qg + L.pv, *panels = kp + L.pv, *ds = panels + L.pv;
        const real *a = att + (size_t)p.lo * ldatt + (size_t)p.h * T; /* the rows' weights */
        const real *dr = dout + (size_t)p.lo * C + (size_t)p.h * hs; /* and gradients */
        pair_pack(vt, kp, qg, v, k, q, rows, &p, T, C, &L);
        /* ds rows, zero up to T: the key-side products read every column */
        for (int i0 = 0; i0 < n; i0 += MR) {
            size_t mr, last = pair_tile(rows, &p, i0, T, &mr);
            gemm_strip((size_t)hs, dr + (size_t)i0 * C, (size_t)C, 1, mr, vt, NR * (size_t)hs,
                       keys_to_vector(last, T), ds + (size_t)i0 * T, (size_t)T, 0);
            for (size_t i = 0; i < mr; i++)
                softmax_backward_row(ds + (i0 + i) * T, a + (i0 + i) * ldatt,
                                     (size_t)pair_t(rows, &p, i0 + (int)i, T) + 1, (size_t)T,
                                     scale);
        }
        /* dk = ds^T . Q */
        pack_chans(panels, qg, n, hs, hs, L.np_h);
        pair_key_product(dk, ds, (size_t)T, panels, rows, &p, T, C, hs);
        /* dq: ds rows . K at the rows, 0 elsewhere (qg is free again) */
        for (int i0 = 0; i0 < n; i0 += MR) {
            size_t mr, last = pair_tile(rows, &p, i0, T, &mr);
            gemm_strip(last, ds + (size_t)i0 * T, (size_t)T, 1, mr, kp, NR * (size_t)T, (size_t)hs,
                       qg + (size_t)i0 * hs, (size_t)hs, 0);
        }
        for (int t = 0, i = 0; t < T; t++) {
            real *dst = dq + p.off + (size_t)t * C;
            if (i < n && pair_t(rows, &p, i, T) == t)
                memcpy(dst, qg + (size_t)i++ * hs, (size_t)hs * sizeof(real));
            else
                memset(dst, 0, (size_t)hs * sizeof(real));
        }
        /* dv = att^T . dout */
        pack_chans(panels, dr, n, hs, C, L.np_h);
        pair_key_product(dv, a, ldatt, panels, rows, &p, T, C, hs);
    }
}

static real sigmoid(real x) {
    return 1 / (1 + real_exp(-x));
}

void smear_forward(real *out, const real *inp, const real *g, int B, int T, int C, int NH) {
    int hs = C / NH;
#pragma omp parallel for schedule(static) if ((size_t)B * T * C > PARALLEL_MIN_ELEMS)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            real s = sigmoid(g[h]);
            /* descending t: out may be inp, and row t reads row t - 1 */
            for (int t = T - 1; t >= 0; t--) {
                real *o = out + ((size_t)b * T + t) * C + h * hs;
                const real *x = inp + ((size_t)b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) o[i] = s * x[i] + (t ? (1 - s) * x[i - C] : 0);
            }
        }
}

void smear_backward(real *dinp, real *dg, const real *dout, const real *inp, const real *g,
                    int B, int T, int C, int NH) {
    int hs = C / NH;
    /* the gate first: it reads dout, which dinp may overwrite; one head per
     * thread, summed in a fixed order */
#pragma omp parallel for schedule(static) if ((size_t)B * T * C > PARALLEL_MIN_ELEMS)
    for (int h = 0; h < NH; h++) {
        real s = sigmoid(g[h]);
        double sum = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const real *d = dout + ((size_t)b * T + t) * C + h * hs;
                const real *x = inp + ((size_t)b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) sum += (double)d[i] * (x[i] - (t ? x[i - C] : 0));
            }
        dg[h] += (real)(sum * s * (1 - s));
    }
#pragma omp parallel for schedule(static) if ((size_t)B * T * C > PARALLEL_MIN_ELEMS)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            real s = sigmoid(g[h]);
            /* ascending t: row t reads dout's row t + 1 before it is overwritten */
            for (int t = 0; t < T; t++) {
                real *di = dinp + ((size_t)b * T + t) * C + h * hs;
                const real *d = dout + ((size_t)b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++)
                    di[i] = s * d[i] + (t + 1 < T ? (1 - s) * d[i + C] : 0);
            }
        }
}
