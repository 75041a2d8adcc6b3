#include "gemm.h"

#include <math.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX2__) && defined(__FMA__) && !defined(QK_DOUBLE) && QK_VBYTES >= 32
#include <immintrin.h>
#define QK_AVX2_F32 1 /* the 8 x 8 transposes below fill NR / 8 column groups */
#endif

/* ---- micro-kernel ------------------------------------------------------ */

/* C[MR, nv VL] (ldc) = (acc ? C : 0) + sum over k of a(i, k) bp[k, :], a(i, k)
 * at a[i * sam + k * sak], for nv = 2 (a whole panel) or 1 (its first vector:
 * a column edge of at most VL, such as one head's channels, at half the
 * work). Inlined with sak == 1 (rows of a row-major A) or sam == 1 (columns
 * of a transposed or packed A) and a constant nv, so the addressing and the
 * unused accumulators fold away. */
static inline __attribute__((always_inline)) void ukr(size_t kc, const real *restrict a,
                                                      size_t sam, size_t sak,
                                                      const real *restrict bp,
                                                      real *restrict c, size_t ldc, int acc,
                                                      int nv) {
    vreal c00, c01 = {0}, c10, c11 = {0}, c20, c21 = {0}, c30, c31 = {0}, c40, c41 = {0}, c50,
                   c51 = {0};
    if (acc) {
        c00 = vload(c), c10 = vload(c + ldc), c20 = vload(c + 2 * ldc);
        c30 = vload(c + 3 * ldc), c40 = vload(c + 4 * ldc), c50 = vload(c + 5 * ldc);
        if (nv > 1) {
            c01 = vload(c + VL), c11 = vload(c + ldc + VL), c21 = vload(c + 2 * ldc + VL);
            c31 = vload(c + 3 * ldc + VL), c41 = vload(c + 4 * ldc + VL);
            c51 = vload(c + 5 * ldc + VL);
        }
    } else {
        c00 = c10 = c20 = c30 = c40 = c50 = (vreal){0};
    }
    const real *a0 = a, *a1 = a + sam, *a2 = a + 2 * sam, *a3 = a + 3 * sam, *a4 = a + 4 * sam,
               *a5 = a + 5 * sam;
#pragma GCC unroll 4
    for (size_t k = 0; k < kc; k++) {
        vreal b0 = vload(bp + k * NR), b1 = nv > 1 ? vload(bp + k * NR + VL) : b0;
        size_t o = k * sak;
        real x;
#define UKR_ROW(i)                           \
    x = a##i[o], c##i##0 += x * b0;          \
    if (nv > 1) c##i##1 += x * b1
        UKR_ROW(0);
        UKR_ROW(1);
        UKR_ROW(2);
        UKR_ROW(3);
        UKR_ROW(4);
        UKR_ROW(5);
#undef UKR_ROW
    }
    vstore(c, c00), vstore(c + ldc, c10), vstore(c + 2 * ldc, c20);
    vstore(c + 3 * ldc, c30), vstore(c + 4 * ldc, c40), vstore(c + 5 * ldc, c50);
    if (nv > 1) {
        vstore(c + VL, c01), vstore(c + ldc + VL, c11), vstore(c + 2 * ldc + VL, c21);
        vstore(c + 3 * ldc + VL, c31), vstore(c + 4 * ldc + VL, c41);
        vstore(c + 5 * ldc + VL, c51);
    }
}

/* A micro-row of C across np full panels of packed B (panel p at bp + p * bps):
 * the kernel is inlined into the loop, so a call costs one set-up. */
static void strip_rows(size_t kc, const real *a, size_t lda, const real *bp, size_t bps,
                       size_t np, real *c, size_t ldc, int acc) {
    for (size_t p = 0; p < np; p++) ukr(kc, a, lda, 1, bp + p * bps, c + p * NR, ldc, acc, 2);
}

static void strip_cols(size_t kc, const real *a, size_t sak, const real *bp, size_t bps,
                       size_t np, real *c, size_t ldc, int acc) {
    for (size_t p = 0; p < np; p++) ukr(kc, a, 1, sak, bp + p * bps, c + p * NR, ldc, acc, 2);
}

/* A[mr, kc] (strides sam, sak) -> ap[k * MR + i], rows mr..MR-1 zero. */
static void pack_a(real *restrict ap, const real *a, size_t sam, size_t sak, size_t mr,
                   size_t kc) {
    if (sam == 1 && mr == MR) {
        for (size_t k = 0; k < kc; k++) memcpy(ap + k * MR, a + k * sak, MR * sizeof(real));
        return;
    }
    for (size_t k = 0; k < kc; k++) {
        size_t i = 0;
        for (; i < mr; i++) ap[k * MR + i] = a[i * sam + k * sak];
        for (; i < MR; i++) ap[k * MR + i] = 0;
    }
}

/* One register tile with edges, through a zero-padded copy of C, so every
 * element gets the same arithmetic as in a full tile. ap is a packed
 * ap[k * MR + i] micro-panel (zero rows past mr). */
static void tile_edge(size_t kc, const real *ap, size_t mr, const real *bp, size_t nr, real *c,
                      size_t ldc, int acc) {
    real ct[MR * NR] __attribute__((aligned(64)));
    memset(ct, 0, sizeof ct);
    if (acc)
        for (size_t i = 0; i < mr; i++) memcpy(ct + i * NR, c + i * ldc, nr * sizeof(real));
    if (nr <= VL)
        ukr(kc, ap, 1, MR, bp, ct, NR, acc, 1);
    else
        ukr(kc, ap, 1, MR, bp, ct, NR, acc, 2);
    for (size_t i = 0; i < mr; i++) memcpy(c + i * ldc, ct + i * NR, nr * sizeof(real));
}

/* A full micro-row's column edge of exactly VL, in place (sak == 1 or
 * sam == 1). */
static void edge_vector(size_t kc, const real *a, size_t sam, size_t sak, const real *bp,
                        real *c, size_t ldc, int acc) {
    if (sak == 1)
        ukr(kc, a, sam, 1, bp, c, ldc, acc, 1);
    else
        ukr(kc, a, 1, sak, bp, c, ldc, acc, 1);
}

/* A micro-row over columns [0, n): full panels in place when A can be read
 * as rows (sak == 1) or columns (sam == 1), everything else through a packed
 * micro-panel of A (with `packed`, a already is one, kc <= GEMM_KC). */
static void micro_row(size_t kc, const real *a, size_t sam, size_t sak, size_t mr,
                      const real *bp, size_t bps, size_t n, real *c, size_t ldc, int acc,
                      real *ap, int packed) {
    size_t nfull = n / NR, nr = n - nfull * NR;
    const real *be = bp + nfull * bps;
    real *ce = c + nfull * NR;
    if (packed) {
        if (mr == MR)
            strip_cols(kc, ap, MR, bp, bps, nfull, c, ldc, acc);
        else
            for (size_t p = 0; p < nfull; p++)
                tile_edge(kc, ap, mr, bp + p * bps, NR, c + p * NR, ldc, acc);
        if (nr == VL && mr == MR)
            edge_vector(kc, ap, 1, MR, be, ce, ldc, acc);
        else if (nr)
            tile_edge(kc, ap, mr, be, nr, ce, ldc, acc);
        return;
    }
    if (mr == MR && (sak == 1 || sam == 1) && (nr == 0 || nr == VL || kc <= GEMM_KC)) {
        if (sak == 1)
            strip_rows(kc, a, sam, bp, bps, nfull, c, ldc, acc);
        else
            strip_cols(kc, a, sak, bp, bps, nfull, c, ldc, acc);
        if (nr == VL) {
            edge_vector(kc, a, sam, sak, be, ce, ldc, acc);
        } else if (nr) {
            pack_a(ap, a, sam, sak, mr, kc);
            tile_edge(kc, ap, mr, be, nr, ce, ldc, acc);
        }
        return;
    }
    for (size_t k0 = 0; k0 < kc; k0 += GEMM_KC) {
        size_t kn = kc - k0 < GEMM_KC ? kc - k0 : GEMM_KC;
        pack_a(ap, a + k0 * sak, sam, sak, mr, kn);
        micro_row(kn, NULL, 0, 0, mr, bp + k0 * NR, bps, n, c, ldc, acc || k0 > 0, ap, 1);
    }
}

void gemm_strip(size_t kc, const real *a, size_t sam, size_t sak, size_t mr, const real *bp,
                size_t bps, size_t n, real *c, size_t ldc, int acc) {
    real ap[GEMM_KC * MR] __attribute__((aligned(64)));
    micro_row(kc, a, sam, sak, mr, bp, bps, n, c, ldc, acc, ap, 0);
}

/* ---- packing B ---------------------------------------------------------- */

#ifdef QK_AVX2_F32
/* 8 x 8 transpose of rows r[0..7]. */
static inline void tr8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

void gemm_pack_b(real *restrict dst, const real *B, size_t sbk, size_t sbn, size_t kc,
                 size_t nr) {
    if (sbn == 1) {
        if (nr == NR || nr == VL) {
            for (size_t k = 0; k < kc; k++) {
                vstore(dst + k * NR, vload(B + k * sbk));
                vstore(dst + k * NR + VL, nr == NR ? vload(B + k * sbk + VL) : (vreal){0});
            }
        } else {
            for (size_t k = 0; k < kc; k++) {
                size_t j = 0;
                for (; j < nr; j++) dst[k * NR + j] = B[k * sbk + j];
                for (; j < NR; j++) dst[k * NR + j] = 0;
            }
        }
        return;
    }
    size_t k0 = 0;
#ifdef QK_AVX2_F32
    if (sbk == 1 && nr == NR) {
        for (; k0 + 8 <= kc; k0 += 8)
            for (int h = 0; h < NR / 8; h++) {
                __m256 r[8];
                for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(B + (h * 8 + j) * sbn + k0);
                tr8(r);
                for (int k = 0; k < 8; k++) _mm256_store_ps(dst + (k0 + k) * NR + h * 8, r[k]);
            }
    }
#endif
    for (size_t k = k0; k < kc; k++) {
        size_t j = 0;
        for (; j < nr; j++) dst[k * NR + j] = B[k * sbk + j * sbn];
        for (; j < NR; j++) dst[k * NR + j] = 0;
    }
}

/* Panels p0..p1-1 of B[K, N] into dst (panel p at p * K * NR). A row-major B
 * goes a few rows at a time across the panels, so rows are read contiguously. */
static void pack_b_panels(real *dst, const real *B, size_t sbk, size_t sbn, size_t K, size_t N,
                          size_t p0, size_t p1) {
    if (sbn != 1) {
        for (size_t p = p0; p < p1; p++)
            gemm_pack_b(dst + p * K * NR, B + p * NR * sbn, sbk, sbn, K,
                        N - p * NR < NR ? N - p * NR : NR);
        return;
    }
    for (size_t k0 = 0; k0 < K; k0 += 8) {
        size_t kn = K - k0 < 8 ? K - k0 : 8;
        for (size_t p = p0; p < p1; p++)
            gemm_pack_b(dst + p * K * NR + k0 * NR, B + k0 * sbk + p * NR, sbk, 1, kn,
                        N - p * NR < NR ? N - p * NR : NR);
    }
}

/* ---- exp ------------------------------------------------------------------ */

void vec_exp(real *dst, const real *src, size_t n) {
#ifdef QK_DOUBLE
    for (size_t i = 0; i < n; i++) dst[i] = exp(src[i]);
#else
    size_t i = 0;
    for (; i + VL <= n; i += VL) vstore(dst + i, vexpf(vload(src + i)));
    if (i < n) vstore_part(dst + i, vexpf(vload_part(src + i, (int)(n - i), 0)), (int)(n - i));
#endif
}

/* ---- the tiled product ---------------------------------------------------- */

/* Block sizes (in the kernel's units): k blocks of at most KB so a micro-panel
 * of A stays in L1 across a column block, column blocks of at most NBP panels
 * so the packed k block of B stays in L2, row blocks of at most MBR
 * micro-rows; at least MIN_TILES tiles when the shape allows, so that the
 * guided schedule's last runs are short (docs/performance.md has the figures).
 * All of it depends on the shape only. */
#define KB 256
#define NBP 16
#define MBR 16
#define MIN_TILES 32
/* Products of fewer multiply-adds than this run on one thread: the fork and
 * join would cost more than the second thread saves. */
#define GEMM_PARALLEL_MIN_WORK 65536
/* A weight gradient (A read transposed: few output rows, a long k) spends
 * about as long packing B as multiplying, and a shared packed B is written
 * half by each thread at every call and read back across cores; while the
 * threads' copies of its packed B take at most this many floats together
 * (2 MiB: on 2 threads 1 MiB each, about a core's L2), each thread packs its
 * own copy instead. */
#define GEMM_PRIVATE_B_MAX ((size_t)1 << 19)
_Static_assert(KB <= GEMM_KC, "a k block fits a packed micro-panel");

static size_t cdiv(size_t a, size_t b) { return (a + b - 1) / b; }

void gemm_plan(GemmJob *j) {
    j->np = cdiv(j->N, NR);
    j->mt = cdiv(j->M, MR);
    j->nkb = j->K ? cdiv(j->K, KB) : 1;
    j->nbn = cdiv(j->np, NBP);
    j->nbm = cdiv(j->mt, MBR);
    size_t want = cdiv(MIN_TILES, j->nbn);
    if (j->nbm < want) j->nbm = want < j->mt ? want : j->mt;
    if (j->nbm == 0) j->nbm = 1;
    j->ntiles = j->M && j->N ? j->nbm * j->nbn : 0;
}

void gemm_scratch_free(GemmScratch *s) {
    for (int q = 0; q < GEMM_MAX_JOBS; q++) scratch_free(&s->bpack[q]);
    scratch_free(&s->bprivate);
    scratch_free(&s->apanels);
}

static void run_tile(const GemmJob *j, size_t t, real *abuf, const real *bpack) {
    size_t bm = t / j->nbn, bn = t % j->nbn;
    size_t r0 = bm * j->mt / j->nbm * MR, r1 = (bm + 1) * j->mt / j->nbm * MR;
    size_t p0 = bn * j->np / j->nbn, p1 = (bn + 1) * j->np / j->nbn;
    if (r1 > j->M) r1 = j->M;
    size_t c0 = p0 * NR, c1 = p1 * NR < j->N ? p1 * NR : j->N;
    int acc0 = j->accumulate;
    if (j->init) {
        /* in the tile, by its thread: no serial copy before the product */
        if (j->init != j->C)
            for (size_t r = r0; r < r1; r++)
                memcpy(j->C + r * j->ldc + c0, j->init + r * j->ldc + c0, (c1 - c0) * sizeof(real));
        acc0 = 1;
    }
    if (j->bias) {
        for (size_t r = r0; r < r1; r++) {
            real *cr = j->C + r * j->ldc;
            if (acc0)
                for (size_t c = c0; c < c1; c++) cr[c] += j->bias[c];
            else
                memcpy(cr + c0, j->bias + c0, (c1 - c0) * sizeof(real));
        }
        acc0 = 1;
    }
    if (j->K == 0) {
        if (!acc0)
            for (size_t r = r0; r < r1; r++) memset(j->C + r * j->ldc + c0, 0, (c1 - c0) * sizeof(real));
        return;
    }
    /* K blocks of at most KB <= GEMM_KC. A row-major A is read in place,
     * anything else is packed per micro-row by the tile's thread. */
    size_t bps = j->K * NR;
    int rows = j->sak == 1;
    for (size_t kb = 0; kb < j->nkb; kb++) {
        size_t k0 = kb * j->K / j->nkb, k1 = (kb + 1) * j->K / j->nkb, kc = k1 - k0;
        int acc = acc0 || kb > 0;
        const real *b = bpack + p0 * bps + k0 * NR;
        for (size_t i = r0; i < r1; i += MR) {
            size_t mr = r1 - i < MR ? r1 - i : MR;
            const real *a = j->A + i * j->sam + k0 * j->sak;
            if (!rows || mr < MR) pack_a(abuf, a, j->sam, j->sak, mr, kc);
            micro_row(kc, a, j->sam, j->sak, mr, b, bps, c1 - c0, j->C + i * j->ldc + c0, j->ldc,
                      acc, abuf, !rows || mr < MR);
        }
    }
}

/* The thread whose share of the total holds the midpoint of [before, before + w). */
static int owner(double before, double w, double total, int nth) {
    int o = total > 0 ? (int)((before + 0.5 * w) * nth / total) : 0;
    return o < nth ? o : nth - 1;
}

/* Packing is split in contiguous ranges by size, fixed by the shapes and the
 * thread count, except for the private copies of B (GEMM_PRIVATE_B_MAX),
 * which every thread packs whole. Tiles go by OpenMP's guided schedule:
 * which thread computes a tile changes nothing in its result (a copy of B is
 * the same numbers), and on a shared machine a thread that is slowed down
 * takes fewer tiles instead of holding up the others at the barrier, as they
 * did with a fixed split. The first runs are long and in order, so each
 * thread's rows stay mostly those of the fixed split, which the next op's
 * threads find in their caches, as they would not with tiles handed out one
 * at a time. */
void gemm_run(GemmJob *jobs, int njobs, GemmScratch *s, void (*extra)(void *, int, int),
              void *ctx) {
    int maxth = 1;
#ifdef _OPENMP
    maxth = omp_get_max_threads();
#endif
    double work = 0, packw = 0;
    size_t ntiles = 0, private_floats = 0; /* one thread's private copies */
    for (int q = 0; q < njobs; q++) {
        GemmJob *j = &jobs[q];
        size_t nb = j->np * j->K * NR;
        j->private_b = j->sam == 1 && j->sak != 1 && nb * (size_t)maxth <= GEMM_PRIVATE_B_MAX;
        if (j->private_b)
            private_floats += nb;
        else
            j->bpack = scratch_reserve(&s->bpack[q], nb), packw += (double)nb;
        ntiles += j->ntiles;
        work += (double)j->M * (double)j->N * (double)(j->K + 8);
    }
    size_t per = (size_t)MR * KB;
    real *apanels = scratch_reserve(&s->apanels, per * maxth);
    real *privates = private_floats ? scratch_reserve(&s->bprivate, private_floats * maxth) : NULL;
#pragma omp parallel if (work > GEMM_PARALLEL_MIN_WORK)
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        const real *bpack[GEMM_MAX_JOBS];
        real *mine = privates ? privates + (size_t)tid * private_floats : NULL;
        double before = 0;
        for (int q = 0; q < njobs; q++) {
            GemmJob *j = &jobs[q];
            if (j->private_b) {
                pack_b_panels(mine, j->B, j->sbk, j->sbn, j->K, j->N, 0, j->np);
                bpack[q] = mine;
                mine += j->np * j->K * NR;
                continue;
            }
            bpack[q] = j->bpack;
            double wb = (double)j->K * NR;
            size_t pa = j->np, pb = 0;
            for (size_t p = 0; p < j->np; p++, before += wb)
                if (owner(before, wb, packw, nth) == tid) {
                    if (p < pa) pa = p;
                    pb = p + 1;
                }
            if (pa < pb) pack_b_panels(j->bpack, j->B, j->sbk, j->sbn, j->K, j->N, pa, pb);
        }
#pragma omp barrier
        real *abuf = apanels + (size_t)tid * per;
#pragma omp for schedule(guided) nowait
        for (size_t x = 0; x < ntiles; x++) {
            int q = 0;
            size_t t = x;
            while (t >= jobs[q].ntiles) t -= jobs[q++].ntiles;
            run_tile(&jobs[q], t, abuf, bpack[q]);
        }
        if (extra) extra(ctx, tid, nth);
    }
}
