#include "layers.h"

#include "gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define LN_EPS 1e-5

void encoder_forward(real *out, const int *inp, const real *wte, const real *wpe,
                     int B, int T, int C) {
#pragma omp parallel for schedule(static) if ((size_t)B * T * C > PARALLEL_MIN_ELEMS)
    for (int bt = 0; bt < B * T; bt++) {
        real *o = out + (size_t)bt * C;
        const real *e = wte + (size_t)inp[bt] * C;
        const real *p = wpe + (size_t)(bt % T) * C;
        for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
    }
}

void encoder_backward(real *dwte, real *dwpe, const real *dout, const int *inp,
                      int B, int T, int C) {
    /* Serial: two rows may hit the same token, and the order of their adds
     * must not depend on threads (it is cheap next to the matmuls; split by
     * columns it only traded cache lines between cores). */
    for (int bt = 0; bt < B * T; bt++) {
        const real *d = dout + (size_t)bt * C;
        real *e = dwte + (size_t)inp[bt] * C;
        real *p = dwpe + (size_t)(bt % T) * C;
        for (int i = 0; i < C; i++) e[i] += d[i];
        for (int i = 0; i < C; i++) p[i] += d[i];
    }
}

/* Sums of x[0..n) and of (x - m)^2 with VL lanes, combined in a fixed order. */
static real row_sum(const real *x, int n) {
    vreal s = {0};
    int i = 0;
    for (; i + VL <= n; i += VL) s += vload(x + i);
    real r = vhsum(s);
    for (; i < n; i++) r += x[i];
    return r;
}

static real row_sqdev(const real *x, int n, real m) {
    vreal s = {0};
    int i = 0;
    for (; i + VL <= n; i += VL) {
        vreal d = vload(x + i) - m;
        s += d * d;
    }
    real r = vhsum(s);
    for (; i < n; i++) r += (x[i] - m) * (x[i] - m);
    return r;
}

void layernorm_forward(real *out, real *mean, real *rstd, const real *inp,
                       const real *weight, const real *bias, size_t N, int C) {
#pragma omp parallel for schedule(static) if (N * C > PARALLEL_MIN_ELEMS)
    for (size_t n = 0; n < N; n++) {
        const real *x = inp + n * C;
        real *o = out + n * C;
        real m = row_sum(x, C) / C;
        real v = row_sqdev(x, C, m) / C;
        real r = 1 / real_sqrt(v + (real)LN_EPS);
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * r * weight[i] + bias[i];
        mean[n] = m;
        rstd[n] = r;
    }
}

/* The parameter gradients of LayerNorm sum over rows: each fixed block of
 * LN_ROWS rows gets its own partial sums (rows in order), and the partials
 * are added in block order, so the result does not depend on threads. */
#define LN_ROWS 64

void layernorm_backward(real *dinp, real *dweight, real *dbias, const real *dout,
                        const real *inp, const real *weight, const real *mean,
                        const real *rstd, size_t N, int C, ScratchBuf *partials) {
    size_t nb = (N + LN_ROWS - 1) / LN_ROWS;
    real *part = scratch_reserve(partials, nb * 2 * (size_t)C);
#pragma omp parallel for schedule(static) if (N * C > PARALLEL_MIN_ELEMS)
    for (size_t blk = 0; blk < nb; blk++) {
        real *pw = part + blk * 2 * C, *pb = pw + C;
        memset(pw, 0, 2 * (size_t)C * sizeof(real));
        size_t n1 = (blk + 1) * LN_ROWS < N ? (blk + 1) * LN_ROWS : N;
        for (size_t n = blk * LN_ROWS; n < n1; n++) {
            const real *d = dout + n * C, *x = inp + n * C;
            real *di = dinp + n * C;
            real m = mean[n], r = rstd[n];
            /* dx = r * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight */
            vreal gs = {0}, gx = {0};
            int i = 0;
            for (; i + VL <= C; i += VL) {
                vreal g = vload(d + i) * vload(weight + i);
                gs += g;
                gx += g * ((vload(x + i) - m) * r);
            }
            real gsum = vhsum(gs), gxsum = vhsum(gx);
            for (; i < C; i++) {
                real g = d[i] * weight[i];
                gsum += g;
                gxsum += g * ((x[i] - m) * r);
            }
            gsum /= C;
            gxsum /= C;
            for (i = 0; i + VL <= C; i += VL) {
                vreal dv = vload(d + i), xhat = (vload(x + i) - m) * r;
                vstore(di + i, vload(di + i) + r * (dv * vload(weight + i) - gsum - xhat * gxsum));
                vstore(pw + i, vload(pw + i) + dv * xhat);
                vstore(pb + i, vload(pb + i) + dv);
            }
            for (; i < C; i++) {
                real xhat = (x[i] - m) * r;
                di[i] += r * (d[i] * weight[i] - gsum - xhat * gxsum);
                pw[i] += d[i] * xhat;
                pb[i] += d[i];
            }
        }
    }
    /* a few blocks of C values: serial, in block order */
    for (size_t blk = 0; blk < nb; blk++) {
        const real *pw = part + blk * 2 * C, *pb = pw + C;
        for (int i = 0; i < C; i++) {
            dweight[i] += pw[i];
            dbias[i] += pb[i];
        }
    }
}

/* ---- matmul: the tiled products of gemm.c -------------------------------- */

void matmul_forward(real *out, const real *inp, const real *weight, const real *bias,
                    const real *residual, size_t N, int C, int OC, GemmScratch *s) {
    /* B = weight^T is read through strides; packing transposes it. */
    GemmJob j = {.C = out, .ldc = (size_t)OC, .A = inp, .sam = (size_t)C, .sak = 1,
                 .B = weight, .sbk = 1, .sbn = (size_t)C, .M = N, .K = (size_t)C,
                 .N = (size_t)OC, .init = residual, .bias = bias};
    gemm_plan(&j);
    gemm_run(&j, 1, s, NULL, NULL);
}

typedef struct {
    real *dbias;
    const real *dout;
    size_t N;
    int OC;
} BiasCtx;

/* dbias += column sums of dout: fixed column chunks, rows summed in order. */
#define BIAS_CHUNK 64
static void dbias_part(void *p, int tid, int nth) {
    const BiasCtx *b = p;
    if (!b->dbias) return;
    size_t nch = ((size_t)b->OC + BIAS_CHUNK - 1) / BIAS_CHUNK;
    for (size_t ch = 0; ch < nch; ch++) {
        if ((int)(ch * nth / nch) != tid) continue;
        size_t o0 = ch * BIAS_CHUNK, o1 = o0 + BIAS_CHUNK < (size_t)b->OC ? o0 + BIAS_CHUNK : (size_t)b->OC;
        real *db = b->dbias;
        for (size_t n = 0; n < b->N; n++) {
            const real *d = b->dout + n * b->OC;
            for (size_t o = o0; o < o1; o++) db[o] += d[o];
        }
    }
}

void matmul_backward(real *dinp, real *dweight, real *dbias, const real *dout,
                     const real *inp, const real *weight, size_t N, int C, int OC,
                     int accumulate_dinp, GemmScratch *s) {
    GemmJob j[2] = {
        /* dinp[N,C] = dout[N,OC] weight[OC,C] */
        {.C = dinp, .ldc = (size_t)C, .A = dout, .sam = (size_t)OC, .sak = 1, .B = weight,
         .sbk = (size_t)C, .sbn = 1, .M = N, .K = (size_t)OC, .N = (size_t)C,
         .accumulate = accumulate_dinp},
        /* dweight[OC,C] += dout^T[OC,N] inp[N,C]: A read transposed */
        {.C = dweight, .ldc = (size_t)C, .A = dout, .sam = 1, .sak = (size_t)OC, .B = inp,
         .sbk = (size_t)C, .sbn = 1, .M = (size_t)OC, .K = N, .N = (size_t)C, .accumulate = 1},
    };
    gemm_plan(&j[0]);
    gemm_plan(&j[1]);
    BiasCtx b = {dbias, dout, N, OC};
    gemm_run(j, 2, s, dbias_part, &b);
}

#define GELU_K 0.7978845608028654 /* sqrt(2/pi) */
#define GELU_A 0.044715

/* gelu(x) = 0.5 x (1 + tanh(u)) = x s with s = sigmoid(2u) = 1 / (1 + e),
 * e = exp(-2u), u = K (x + A x^3): no cancellation for negative x.
 * gelu'(x) = s + 0.5 x sech^2(u) u' where sech^2(u) = 4 s (1 - s), 1 - s = e s. */
#define GELU_BLOCK 4096

/* The derivative is taken while u and e are at hand: the backward then only
 * multiplies, instead of paying for the exp and the division again. */
void gelu_forward(real *out, real *deriv, const real *inp, size_t n) {
    size_t nb = (n + GELU_BLOCK - 1) / GELU_BLOCK;
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN_ELEMS)
    for (size_t b = 0; b < nb; b++) {
        size_t i = b * GELU_BLOCK, end = i + GELU_BLOCK < n ? i + GELU_BLOCK : n;
#ifndef QK_DOUBLE
        for (; i + VL <= end; i += VL) {
            vreal x = vload(inp + i);
            vreal u = (real)GELU_K * (x + (real)GELU_A * x * x * x);
            vreal e = vexpf(-2 * u);
            vreal du = (real)GELU_K * (1 + 3 * (real)GELU_A * x * x);
            vreal s = 1 / (1 + e);
            vstore(out + i, x / (1 + e));
            vstore(deriv + i, s + 2 * x * (s * (e * s)) * du);
        }
#endif
        for (; i < end; i++) {
            real x = inp[i];
            real u = (real)GELU_K * (x + (real)GELU_A * x * x * x);
            real e = sexp(-2 * u);
            real du = (real)GELU_K * (1 + 3 * (real)GELU_A * x * x);
            real s = 1 / (1 + e);
            out[i] = x / (1 + e);
            deriv[i] = s + 2 * x * (s * (e * s)) * du;
        }
    }
}

void gelu_backward(real *dinp, const real *deriv, const real *dout, size_t n) {
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * deriv[i];
}

void crossentropy_forward(real *probs, real *losses, const real *logits,
                          const int *targets, size_t N, int V) {
#pragma omp parallel for schedule(static) if (N * V > PARALLEL_MIN_ELEMS)
    for (size_t n = 0; n < N; n++) {
        const real *l = logits + n * V;
        real *p = probs + n * V;
        real mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        for (int i = 0; i < V; i++) p[i] = l[i] - mx;
        vec_exp(p, p, V);
        real s = row_sum(p, V);
        real inv = 1 / s;
        for (int i = 0; i < V; i++) p[i] *= inv;
        /* log-sum-exp form keeps the loss finite when a probability underflows */
        if (targets) losses[n] = targets[n] < 0 ? 0 : (mx + real_log(s)) - l[targets[n]];
    }
}

void crossentropy_backward(real *dlogits, const real *probs, const int *targets,
                           size_t N, int V, real scale) {
#pragma omp parallel for schedule(static) if (N * V > PARALLEL_MIN_ELEMS)
    for (size_t n = 0; n < N; n++) {
        const real *p = probs + n * V;
        real *d = dlogits + n * V;
        if (targets[n] < 0) {
            memset(d, 0, (size_t)V * sizeof(real));
            continue;
        }
        for (int i = 0; i < V; i++) d[i] = p[i] * scale;
        d[targets[n]] -= scale;
    }
}

size_t crossentropy_correct(const real *logits, const int *targets, size_t N, int V) {
    size_t correct = 0;
    for (size_t n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const real *l = logits + n * V;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        correct += best == targets[n];
    }
    return correct;
}

void rows_gather(real *out, const real *inp, const int *rows, size_t n, int C) {
    for (size_t r = 0; r < n; r++) {
        const real *src = inp + (size_t)rows[r] * C;
        if (src != out + r * C) memmove(out + r * C, src, (size_t)C * sizeof(real));
    }
}

size_t rows_find(const int *rows, size_t n, size_t pos) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((size_t)rows[mid] < pos) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void rows_scatter(real *x, const int *rows, size_t n, size_t N, int C) {
    size_t next = N; /* rows >= next hold their final values */
    for (size_t r = n; r-- > 0;) {
        size_t to = (size_t)rows[r];
        memset(x + (to + 1) * C, 0, (next - to - 1) * C * sizeof(real));
        if (to != r) memcpy(x + to * C, x + r * C, (size_t)C * sizeof(real));
        next = to;
    }
    memset(x, 0, next * C * sizeof(real));
}
