#include "layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define LN_EPS 1e-5

void encoder_forward(real *out, const int *inp, const real *wte, const real *wpe,
                     int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            real *o = out + ((size_t)b * T + t) * C;
            const real *e = wte + (size_t)inp[b * T + t] * C;
            const real *p = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
        }
}

void encoder_backward(real *dwte, real *dwpe, const real *dout, const int *inp,
                      int B, int T, int C) {
    /* Serial: two rows may hit the same token, and the order of their adds
     * must not depend on threads. */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const real *d = dout + ((size_t)b * T + t) * C;
            real *e = dwte + (size_t)inp[b * T + t] * C;
            real *p = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                e[i] += d[i];
                p[i] += d[i];
            }
        }
}

void layernorm_forward(real *out, real *mean, real *rstd, const real *inp,
                       const real *weight, const real *bias, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const real *x = inp + n * C;
        real *o = out + n * C;
        double s = 0.0;
        for (int i = 0; i < C; i++) s += x[i];
        real m = (real)(s / C);
        double v = 0.0;
        for (int i = 0; i < C; i++) {
            double d = x[i] - m;
            v += d * d;
        }
        real r = (real)(1.0 / sqrt(v / C + LN_EPS));
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * r * weight[i] + bias[i];
        mean[n] = m;
        rstd[n] = r;
    }
}

void layernorm_backward(real *dinp, real *dweight, real *dbias, const real *dout,
                        const real *inp, const real *weight, const real *mean,
                        const real *rstd, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const real *d = dout + n * C, *x = inp + n * C;
        real *di = dinp + n * C;
        real m = mean[n], r = rstd[n];
        /* dx = r * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight */
        real gsum = 0, gxsum = 0;
        for (int i = 0; i < C; i++) {
            real g = d[i] * weight[i];
            gsum += g;
            gxsum += g * (x[i] - m) * r;
        }
        gsum /= C;
        gxsum /= C;
        for (int i = 0; i < C; i++) {
            real xhat = (x[i] - m) * r;
            di[i] += r * (d[i] * weight[i] - gsum - xhat * gxsum);
        }
    }
    /* Parameter gradients sum over rows: row order fixed, vectorized over C. */
    for (size_t n = 0; n < N; n++) {
        const real *d = dout + n * C, *x = inp + n * C;
        real m = mean[n], r = rstd[n];
        for (int i = 0; i < C; i++) {
            dweight[i] += d[i] * (x[i] - m) * r;
            dbias[i] += d[i];
        }
    }
}

/* Register tile of the gemm: MR rows of C by NV vectors of VL columns. GCC's
 * vector extension keeps it portable and lets -march pick AVX2/AVX-512; the
 * 6 x 2 tile fills 12 of AVX2's 16 vector registers with accumulators. */
#define VBYTES 32
#define VL ((int)(VBYTES / sizeof(real)))
#define MR 6
#define NV 2
#define NR (NV * VL)
typedef real vreal __attribute__((vector_size(VBYTES), aligned(sizeof(real))));

static void gemm_tile_full(real *Cm, size_t ldc, const real *A, size_t sam, size_t sak,
                           const real *Bm, size_t ldb, size_t K, int accumulate) {
    vreal acc[MR][NV];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NV; j++)
            acc[i][j] = accumulate ? *(const vreal *)(Cm + i * ldc + j * VL) : (vreal){0};
    for (size_t k = 0; k < K; k++) {
        const real *b = Bm + k * ldb;
        const real *a = A + k * sak;
        vreal b0 = *(const vreal *)b, b1 = *(const vreal *)(b + VL);
        for (int i = 0; i < MR; i++) {
            real ai = a[i * sam];
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NV; j++) *(vreal *)(Cm + i * ldc + j * VL) = acc[i][j];
}

/* Edge tile: the same order of summation, scalar, bounds checked. */
static void gemm_tile_edge(real *Cm, size_t ldc, const real *A, size_t sam, size_t sak,
                           const real *Bm, size_t ldb, size_t mr, size_t K, size_t nr,
                           int accumulate) {
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < nr; j++) {
            real acc = accumulate ? Cm[i * ldc + j] : 0;
            for (size_t k = 0; k < K; k++) acc += A[i * sam + k * sak] * Bm[k * ldb + j];
            Cm[i * ldc + j] = acc;
        }
}

void gemm(real *Cm, size_t ldc, const real *A, size_t sam, size_t sak,
          const real *Bm, size_t ldb, size_t M, size_t K, size_t N, int accumulate) {
    size_t mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
    /* Column panels outermost so a thread's consecutive tiles reuse B's panel. */
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t jt = 0; jt < nt; jt++)
        for (size_t it = 0; it < mt; it++) {
            size_t i0 = it * MR, j0 = jt * NR;
            size_t mr = M - i0 < MR ? M - i0 : MR;
            size_t nr = N - j0 < NR ? N - j0 : NR;
            if (mr == MR && nr == NR)
                gemm_tile_full(Cm + i0 * ldc + j0, ldc, A + i0 * sam, sam, sak, Bm + j0, ldb, K,
                               accumulate);
            else
                gemm_tile_edge(Cm + i0 * ldc + j0, ldc, A + i0 * sam, sam, sak, Bm + j0, ldb,
                               mr, K, nr, accumulate);
        }
}

/* Transposed copy of the weight, grown once and reused: the forward gemm
 * wants W^T [C, OC] so its inner loop runs over contiguous output columns. */
static real *wt_buf;
static size_t wt_cap;

void matmul_forward(real *out, const real *inp, const real *weight, const real *bias,
                    size_t N, int C, int OC, int accumulate) {
    size_t need = (size_t)C * OC;
    if (need > wt_cap) {
        free(wt_buf);
        wt_buf = xmalloc(need * sizeof(real));
        wt_cap = need;
    }
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        for (int o = 0; o < OC; o++) wt_buf[(size_t)c * OC + o] = weight[(size_t)o * C + c];
    if (bias) {
        if (!accumulate)
            for (size_t n = 0; n < N; n++) memcpy(out + n * OC, bias, OC * sizeof(real));
        else
            for (size_t n = 0; n < N; n++)
                for (int o = 0; o < OC; o++) out[n * OC + o] += bias[o];
        accumulate = 1;
    }
    gemm(out, OC, inp, C, 1, wt_buf, OC, N, C, OC, accumulate);
}

void matmul_backward(real *dinp, real *dweight, real *dbias, const real *dout,
                     const real *inp, const real *weight, size_t N, int C, int OC,
                     int accumulate_dinp) {
    /* dinp[N,C] = dout[N,OC] weight[OC,C] */
    gemm(dinp, C, dout, OC, 1, weight, C, N, OC, C, accumulate_dinp);
    /* dweight[OC,C] += dout^T[OC,N] inp[N,C]: A read transposed through strides */
    gemm(dweight, C, dout, 1, OC, inp, C, OC, N, C, 1);
    if (dbias)
        for (size_t n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) dbias[o] += dout[n * OC + o];
}

#define GELU_K 0.7978845608028654 /* sqrt(2/pi) */

void gelu_forward(real *out, const real *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        real x = inp[i];
        real u = (real)GELU_K * (x + (real)0.044715 * x * x * x);
        out[i] = (real)0.5 * x * (1 + rtanh(u));
    }
}

void gelu_backward(real *dinp, const real *inp, const real *dout, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        real x = inp[i];
        real u = (real)GELU_K * (x + (real)0.044715 * x * x * x);
        real th = rtanh(u);
        real sech2 = 1 - th * th;
        real du = (real)GELU_K * (1 + 3 * (real)0.044715 * x * x);
        dinp[i] = dout[i] * ((real)0.5 * (1 + th) + (real)0.5 * x * sech2 * du);
    }
}

void crossentropy_forward(real *probs, real *losses, const real *logits,
                          const int *targets, size_t N, int V) {
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const real *l = logits + n * V;
        real *p = probs + n * V;
        real mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        real s = 0;
        for (int i = 0; i < V; i++) {
            p[i] = rexp(l[i] - mx);
            s += p[i];
        }
        real inv = 1 / s;
        for (int i = 0; i < V; i++) p[i] *= inv;
        /* log-sum-exp form keeps the loss finite when a probability underflows */
        if (targets) losses[n] = (mx + rlog(s)) - l[targets[n]];
    }
}

void crossentropy_backward(real *dlogits, const real *probs, const int *targets,
                           size_t N, int V, real scale) {
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const real *p = probs + n * V;
        real *d = dlogits + n * V;
        for (int i = 0; i < V; i++) d[i] = p[i] * scale;
        d[targets[n]] -= scale;
    }
}
