/* Register-tiled matrix kernels and vector helpers shared by layers.c and
 * attention.c.
 *
 * Every kernel computes each output element as one chain of fused
 * multiply-adds over k in increasing order, starting from the element's
 * previous value (or zero / a bias), and does the same arithmetic for an
 * element whatever tile, thread or edge case it falls in. Results therefore do
 * not depend on the tiling or on the number of threads. */
#ifndef QK_GEMM_H
#define QK_GEMM_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "common.h"

#if defined(__AVX2__) && defined(__FMA__) && !defined(QK_DOUBLE)
#include <immintrin.h>
#endif

/* GCC vector extensions keep the code portable; -march picks the instructions.
 * A register tile is MR rows by NR = 2 vectors of columns: 6 x 16 floats on
 * AVX2 (12 accumulators + 2 B vectors + 1 broadcast of AVX2's 16 registers),
 * 6 x 32 with AVX-512's 64-byte vectors. Without AVX, vectors are 16 bytes
 * (SSE2, NEON), which also keeps them in registers when the helpers below
 * pass them by value. The build may set the width (meson's vector_bytes). */
#ifndef QK_VBYTES
#if defined(__AVX512F__)
#define QK_VBYTES 64
#elif defined(__AVX__)
#define QK_VBYTES 32
#else
#define QK_VBYTES 16
#endif
#endif
#define VL ((int)(QK_VBYTES / sizeof(real)))
#define MR 6
#define NR (2 * VL)
/* Longest k run a packed A micro-panel holds; longer runs are chunked (the
 * partial sums go through C unchanged, so the arithmetic is the same). */
#define GEMM_KC 256

typedef real vreal __attribute__((vector_size(QK_VBYTES), aligned(sizeof(real))));
#ifdef QK_DOUBLE
typedef long long vint __attribute__((vector_size(QK_VBYTES)));
#else
typedef int vint __attribute__((vector_size(QK_VBYTES)));
#endif

static inline vreal vload(const real *p) { return *(const vreal *)p; }
static inline void vstore(real *p, vreal v) { *(vreal *)p = v; }
static inline vreal vsplat(real x) { return x - (vreal){0}; }
static inline vreal vmax(vreal a, vreal b) {
    vint m = a > b;
    return (vreal)(((vint)a & m) | ((vint)b & ~m));
}
/* Fixed-order horizontal reductions. */
static inline real vhsum(vreal v) {
    real s = v[0];
    for (int i = 1; i < VL; i++) s += v[i];
    return s;
}
/* The largest lane: exact in any order, so by a tree. */
static inline real vhmax(vreal v) {
#if defined(__AVX512F__) && QK_VBYTES == 64 && !defined(QK_DOUBLE)
    return _mm512_reduce_max_ps((__m512)v);
#elif defined(__AVX2__) && QK_VBYTES == 32 && !defined(QK_DOUBLE)
    __m256 m = _mm256_max_ps((__m256)v, _mm256_permute2f128_ps((__m256)v, (__m256)v, 1));
    m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0x4E));
    m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0xB1));
    return _mm256_cvtss_f32(m);
#else
    real s = v[0];
    for (int i = 1; i < VL; i++) s = v[i] > s ? v[i] : s;
    return s;
#endif
}

/* -1 in lanes [0, n), 0 in the others. */
static inline vint vlanes_below(int n) {
    vint iota;
    for (int l = 0; l < VL; l++) iota[l] = l;
    return iota < n;
}

/* Lanes [0, n) of p (0 < n < VL) and `fill` in the others, reading nothing
 * past p + n; and its store. */
static inline vreal vload_part(const real *p, int n, real fill) {
#if defined(__AVX512F__) && QK_VBYTES == 64 && !defined(QK_DOUBLE)
    return (vreal)_mm512_mask_loadu_ps((__m512)vsplat(fill), (__mmask16)((1u << n) - 1), p);
#elif defined(__AVX2__) && QK_VBYTES == 32 && !defined(QK_DOUBLE)
    __m256i m = (__m256i)vlanes_below(n);
    return (vreal)_mm256_blendv_ps((__m256)vsplat(fill), _mm256_maskload_ps(p, m), (__m256)m);
#else
    vreal v = vsplat(fill);
    for (int l = 0; l < n; l++) v[l] = p[l];
    return v;
#endif
}
static inline void vstore_part(real *p, vreal v, int n) {
#if defined(__AVX512F__) && QK_VBYTES == 64 && !defined(QK_DOUBLE)
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
#elif defined(__AVX2__) && QK_VBYTES == 32 && !defined(QK_DOUBLE)
    _mm256_maskstore_ps(p, (__m256i)vlanes_below(n), (__m256)v);
#else
    for (int l = 0; l < n; l++) p[l] = v[l];
#endif
}

/* p[0..n) = 0 by vectors: for the short runs (a row's causal tail) that a
 * call to memset costs more than. */
static inline void vzero(real *p, size_t n) {
    size_t i = 0;
    for (; i + VL <= n; i += VL) vstore(p + i, (vreal){0});
    if (i < n) vstore_part(p + i, (vreal){0}, (int)(n - i));
}

#ifndef QK_DOUBLE
/* exp of each lane for float: x = n ln2 + r, |r| <= ln2/2, e^r by Cephes'
 * minimax polynomial (about 1 ulp), 2^n through the exponent bits. Inputs are
 * clamped to [-87, 88.3], so the result is finite and positive (NaN gives NaN). */
static inline vreal vexpf(vreal x) {
#if defined(__AVX2__) && defined(__FMA__) && QK_VBYTES == 32
    /* operands ordered so that a NaN x passes through */
    x = (vreal)_mm256_min_ps(_mm256_set1_ps(88.3f),
                             _mm256_max_ps(_mm256_set1_ps(-87.0f), (__m256)x));
#else
    const vreal hi = vsplat(88.3f), lo = vsplat(-87.0f);
    vint mh = x > hi, ml = x < lo;
    x = (vreal)(((vint)x & ~mh) | ((vint)hi & mh));
    x = (vreal)(((vint)x & ~ml) | ((vint)lo & ml));
#endif
    /* round(x / ln2) by the 1.5 * 2^23 shifter */
    vreal t = x * 1.44269504088896341f + 12582912.0f;
    vint n = (vint)t - (vint)vsplat(12582912.0f);
    vreal nf = t - 12582912.0f;
    vreal r = x - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    vreal p = vsplat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* times 2^n as a float (n + 127 is a normal exponent), so NaN stays NaN */
    return p * (vreal)((n + 127) << 23);
}
#endif

/* Scalar exp that matches the vector one lane for lane. */
static inline real sexp(real x) {
#ifdef QK_DOUBLE
    return exp(x);
#else
    return vexpf(vsplat(x))[0];
#endif
}

/* One panel of B packed for the kernels: dst[k * NR + j] = B[k * sbk + j * sbn]
 * for k < kc, j < nr, zero for nr <= j < NR. */
void gemm_pack_b(real *dst, const real *B, size_t sbk, size_t sbn, size_t kc, size_t nr);

/* One micro-row of C: C[mr, n] (ldc) = (acc ? C : 0) + A[mr, kc] B[kc, n] where
 * A is read at a[i * sam + k * sak] (mr <= MR) and B is packed in panels of NR
 * columns, panel p at bp + p * bps holding row k at k * NR. */
void gemm_strip(size_t kc, const real *a, size_t sam, size_t sak, size_t mr, const real *bp,
                size_t bps, size_t n, real *c, size_t ldc, int acc);

/* Elementwise exp, exact 0 never produced for finite input: the float build
 * uses a polynomial (about 1 ulp), the double build libm. n may be anything. */
void vec_exp(real *dst, const real *src, size_t n);

/* The general product C[M,N] (=|+=) A[M,K] B[K,N] with A at a[i*sam + k*sak]
 * and B at b[k*sbk + n*sbn], split into fixed tiles. An optional bias[N] is
 * added to every row before the products (after what C holds when
 * accumulating, or init). Several products may run in one parallel region. */
typedef struct {
    real *C;
    size_t ldc;
    const real *A;
    size_t sam, sak;
    const real *B;
    size_t sbk, sbn;
    size_t M, K, N;
    int accumulate;
    const real *init; /* if set, C starts from init[M,N] (row stride ldc; may be C) */
    const real *bias;
    /* filled by gemm_plan (the tiling) and gemm_run (the packing memory) */
    real *bpack;           /* packed B: np panels of K x NR, shared by the threads */
    int private_b;         /* instead, each thread packs its own copy */
    size_t np, mt;         /* panels, micro-rows */
    size_t nbm, nbn, nkb;  /* row blocks, column blocks, k blocks */
    size_t ntiles;
} GemmJob;

/* The most products one gemm_run takes: matmul_backward's two. */
#define GEMM_MAX_JOBS 2

/* gemm_run's packing memory, held in the caller's workspace. */
typedef struct {
    ScratchBuf bpack[GEMM_MAX_JOBS]; /* each job's shared packed B */
    ScratchBuf bprivate;             /* every thread's copies of the other jobs' B */
    ScratchBuf apanels;              /* every thread's micro-panel of A */
} GemmScratch;
void gemm_scratch_free(GemmScratch *s);

/* Tiles the job (fills np .. ntiles). */
void gemm_plan(GemmJob *j);
/* Runs the planned jobs (at most GEMM_MAX_JOBS), packing into s; extra (if
 * not NULL) is called by every thread after the products with (ctx, thread,
 * threads) for work that does not overlap them. */
void gemm_run(GemmJob *jobs, int njobs, GemmScratch *s, void (*extra)(void *, int, int),
              void *ctx);

#endif
