/* Known values of the float ops: softmax rows and the causal mask, attention
 * against a naive one, LayerNorm moments, cross-entropy of uniform logits,
 * one AdamW step by hand, the lr schedule's landmarks, gemm against a naive
 * product, bit-identical gradients with 1 and 2 threads, and a step after
 * the activations' pages were given back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "attention.h"
#include "check.h"
#include "layers.h"
#include "model.h"
#include "optim.h"

static Rng rng;
static GemmScratch gemm_work;
static ScratchBuf attention_work;

static real *randn(size_t n, double std) {
    real *x = xmalloc(n * sizeof(real));
    for (size_t i = 0; i < n; i++) x[i] = (real)(std * rng_normal(&rng));
    return x;
}

static void test_attention_rows(void) {
    int B = 2, T = 9, C = 8, NH = 2;
    size_t n = (size_t)B * T * C;
    real *q = randn(n, 2), *k = randn(n, 2), *v = randn(n, 1), *out = xmalloc(n * sizeof(real));
    real *att = xmalloc((size_t)B * NH * T * T * sizeof(real));
    attention_forward(out, att, q, k, v, B, T, C, NH, &attention_work);
    for (int bh = 0; bh < B * NH; bh++)
        for (int t = 0; t < T; t++) {
            const real *row = att + ((size_t)bh * T + t) * T;
            double s = 0;
            for (int j = 0; j <= t; j++) {
                EXPECT(row[j] >= 0, "negative weight");
                s += row[j];
            }
            EXPECT(fabs(s - 1) < 1e-6, "row %d sums to %.9g", t, s);
            for (int j = t + 1; j < T; j++) EXPECT(row[j] == 0, "future key %d of query %d: %g", j, t, row[j]);
        }
    /* the first query sees only itself: its output is v[0] exactly */
    for (int i = 0; i < C; i++) EXPECT(fabs(out[i] - v[i]) < 1e-6, "out[0] != v[0]");
    free(q); free(k); free(v); free(out); free(att);
}

/* Attention against a naive double-precision one, forward (the weights, 0
 * exactly above the diagonal, and the output) and backward, at one vector of
 * channels per head (the kernels' one-vector column edge) and a T past two
 * panels of keys, so row tiles end in every kind of edge. With `far`, every
 * score lies far below what exp can take, key j's 8 j below the first key's:
 * the softmax holds only by subtracting the row's maximum. */
static void test_attention_naive(int far) {
    int B = 2, T = 2 * NR + 5, NH = 2, hs = VL, C = NH * hs;
    size_t n = (size_t)B * T * C;
    real *q = randn(n, 1), *k = randn(n, 1), *v = randn(n, 1), *dout = randn(n, 1);
    for (size_t i = 0; far && i < n; i++) {
        q[i] = -20;
        k[i] = (real)(20 + 0.1 * (double)(i / C % T)); /* scores -1600 - 8 j */
    }
    real *out = xmalloc(n * sizeof(real)), *att = xmalloc((size_t)B * NH * T * T * sizeof(real));
    real *g = xmalloc(3 * n * sizeof(real));
    attention_forward(out, att, q, k, v, B, T, C, NH, &attention_work);
    attention_backward(g, g + n, g + 2 * n, dout, q, k, v, att, B, T, C, NH, &attention_work);
    double *a = xmalloc((size_t)T * T * sizeof(double)), *ds = xmalloc((size_t)T * T * sizeof(double));
    double *want = xcalloc(3 * n, sizeof(double)), worst_att = 0, worst_out = 0, worst_g = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t off = (size_t)b * T * C + (size_t)h * hs;
#define AT(x, t, i) ((double)(x)[off + (size_t)(t) * C + (i)])
            for (int t = 0; t < T; t++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int i = 0; i < hs; i++) s += AT(q, t, i) * AT(k, j, i);
                    a[t * T + j] = s / sqrt((double)hs);
                    mx = fmax(mx, a[t * T + j]);
                }
                for (int j = 0; j <= t; j++) sum += a[t * T + j] = exp(a[t * T + j] - mx);
                const real *row = att + (((size_t)b * NH + h) * T + t) * T;
                for (int j = t + 1; j < T; j++)
                    EXPECT(row[j] == 0, "future key %d of query %d: %g", j, t, row[j]);
                double dot = 0;
                for (int j = 0; j <= t; j++) {
                    a[t * T + j] /= sum;
                    worst_att = fmax(worst_att, fabs(a[t * T + j] - row[j]));
                    double da = 0;
                    for (int i = 0; i < hs; i++) da += AT(dout, t, i) * AT(v, j, i);
                    ds[t * T + j] = da;
                    dot += a[t * T + j] * da;
                }
                for (int i = 0; i < hs; i++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++) o += a[t * T + j] * AT(v, j, i);
                    worst_out = fmax(worst_out, fabs(o - out[off + (size_t)t * C + i]));
                }
                for (int j = 0; j <= t; j++)
                    ds[t * T + j] = a[t * T + j] * (ds[t * T + j] - dot) / sqrt((double)hs);
            }
            for (int t = 0; t < T; t++)
                for (int j = 0; j <= t; j++)
                    for (int i = 0; i < hs; i++) {
                        size_t ot = off + (size_t)t * C + i, oj = off + (size_t)j * C + i;
                        want[ot] += ds[t * T + j] * AT(k, j, i);
                        want[n + oj] += ds[t * T + j] * AT(q, t, i);
                        want[2 * n + oj] += a[t * T + j] * AT(dout, t, i);
                    }
#undef AT
        }
    for (size_t i = 0; i < 3 * n; i++) worst_g = fmax(worst_g, fabs(want[i] - g[i]));
    EXPECT(worst_att < 1e-6, "attention (far %d): weights off by %g", far, worst_att);
    EXPECT(worst_out < 1e-5, "attention at head size %d, T %d (far %d): out off by %g", hs, T, far,
           worst_out);
    EXPECT(worst_g < 1e-4, "attention backward at head size %d, T %d (far %d): off by %g", hs, T,
           far, worst_g);
    free(q), free(k), free(v), free(dout), free(out), free(att), free(g), free(a), free(ds);
    free(want);
}

/* Attention at a subset of query rows equals the whole attention's at those
 * rows to the bit, forward and backward (with dout 0 at the other rows), for
 * a shape whose T and head size are not multiples of the kernels' tiles and
 * a batch row with no listed row; dq is 0 at the other rows. */
static void test_attention_at_rows(void) {
    int B = 3, T = 21, C = 40, NH = 2;
    size_t n = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    real *q = randn(n, 4), *k = randn(n, 5), *v = randn(n, 6), *dsel = randn(n, 7);
    int rows[3 * 21], R = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            if (b != 1 && (t == 0 || t == T - 1 || t % 3 == 1)) rows[R++] = b * T + t;
    real *out = xmalloc(n * sizeof(real)), *att = xmalloc(na * sizeof(real));
    real *out_r = xmalloc(n * sizeof(real)), *att_r = xmalloc(na * sizeof(real));
    attention_forward(out, att, q, k, v, B, T, C, NH, &attention_work);
    attention_forward_rows(out_r, att_r, q, k, v, rows, R, B, T, C, NH, &attention_work);
    real *dout = xcalloc(n, sizeof(real)), *dout_r = xmalloc((size_t)R * C * sizeof(real));
    for (int r = 0; r < R; r++) {
        int b = rows[r] / T, t = rows[r] % T;
        EXPECT(memcmp(out_r + (size_t)r * C, out + (size_t)rows[r] * C, C * sizeof(real)) == 0,
               "out of row %d (b %d, t %d) differs", r, b, t);
        for (int h = 0; h < NH; h++)
            EXPECT(memcmp(att_r + ((size_t)r * NH + h) * T, att + (((size_t)b * NH + h) * T + t) * T,
                          T * sizeof(real)) == 0,
                   "att of row %d head %d differs", r, h);
        memcpy(dout + (size_t)rows[r] * C, dsel + (size_t)rows[r] * C, C * sizeof(real));
        memcpy(dout_r + (size_t)r * C, dsel + (size_t)rows[r] * C, C * sizeof(real));
    }
    real *g = xmalloc(3 * n * sizeof(real)), *g_r = xmalloc(3 * n * sizeof(real));
    for (size_t i = 0; i < 3 * n; i++) g_r[i] = NAN; /* every entry must be written */
    attention_backward(g, g + n, g + 2 * n, dout, q, k, v, att, B, T, C, NH, &attention_work);
    attention_backward_rows(g_r, g_r + n, g_r + 2 * n, dout_r, q, k, v, att_r, rows, R, B, T, C,
                            NH, &attention_work);
    static const char *const name[3] = {"dq", "dk", "dv"};
    for (size_t i = 0; i < 3 * n; i++)
        EXPECT(memcmp(&g_r[i], &g[i], sizeof(real)) == 0, "%s[%zu] = %.9g, whole attention's %.9g",
               name[i / n], i % n, g_r[i], g[i]);
    for (size_t i = (size_t)T * C; i < 2 * (size_t)T * C; i++)
        EXPECT(g_r[i] == 0, "dq of batch row 1, which has no listed row, is %g", g_r[i]);
    free(q), free(k), free(v), free(dsel), free(out), free(att), free(out_r), free(att_r);
    free(dout), free(dout_r), free(g), free(g_r);
}

static void test_layernorm_moments(void) {
    size_t N = 5;
    int C = 64;
    real *x = randn(N * C, 3), *out = xmalloc(N * C * sizeof(real));
    real *w = xmalloc(C * sizeof(real)), *b = xcalloc(C, sizeof(real));
    real mean[5], rstd[5];
    for (int i = 0; i < C; i++) w[i] = 1;
    layernorm_forward(out, mean, rstd, x, w, b, N, C);
    for (size_t n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += out[n * C + i];
        m /= C;
        for (int i = 0; i < C; i++) v += (out[n * C + i] - m) * (out[n * C + i] - m);
        v /= C;
        EXPECT(fabs(m) < 1e-6, "row %zu mean %g", n, m);
        /* eps = 1e-5 shrinks the variance by var/(var+eps) */
        EXPECT(fabs(v - 1) < 1e-5, "row %zu variance %.9g", n, v);
    }
    free(x); free(out); free(w); free(b);
}

static void test_crossentropy_uniform(void) {
    int V = 65;
    size_t N = 4;
    real *logits = xmalloc(N * V * sizeof(real)), *probs = xmalloc(N * V * sizeof(real));
    real losses[4];
    int tgt[4] = {0, 7, 30, 64};
    for (size_t i = 0; i < N * V; i++) logits[i] = 0.25f;
    crossentropy_forward(probs, losses, logits, tgt, N, V);
    for (size_t n = 0; n < N; n++)
        EXPECT(fabs(losses[n] - log(V)) < 1e-6, "loss %.9g, ln V = %.9g", losses[n], log(V));
    free(logits); free(probs);
}

static void test_adamw_step(void) {
    ModelShape s = {.V = 3, .L = 1, .NH = 1, .C = 4, .maxT = 2, .bias = 1, .tie_embeddings = 1};
    Model m;
    model_create(&m, &s, 1);
    for (size_t i = 0; i < m.n_params; i++) {
        m.params[i] = (real)(0.5 * rng_normal(&rng));
        m.grads[i] = (real)rng_normal(&rng);
    }
    real *p0 = xmalloc(m.n_params * sizeof(real));
    memcpy(p0, m.params, m.n_params * sizeof(real));
    OptimConfig o = {.lr = 1e-2, .min_lr = 1e-3, .warmup_steps = 0, .steps = 10, .beta1 = 0.9,
                     .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1};
    double lr = 3e-3, gs = 0.5;
    optim_adamw_update(&m, &o, lr, 1, gs);
    int checked_decay = 0, checked_plain = 0;
    for (int v = 0; v < m.n_views; v++) {
        const ParamView *pv = &m.views[v];
        for (size_t j = 0; j < pv->numel; j++) {
            size_t i = pv->offset + j;
            /* step 1: m = (1-b1) g, v = (1-b2) g^2; bias correction makes
             * mhat = g, vhat = g^2, so the step is lr * g / (|g| + eps) */
            double g = (double)m.grads[i] * gs;
            double want = (double)p0[i] * (pv->decay ? 1 - lr * 0.1 : 1) - lr * g / (fabs(g) + 1e-8);
            EXPECT(fabs(m.params[i] - want) < 1e-6, "%s[%zu]: %.9g want %.9g", pv->name, j,
                   m.params[i], want);
            EXPECT(fabs(m.adam_m[i] - 0.1 * g) < 1e-6 && fabs(m.adam_v[i] - 0.01 * g * g) < 1e-6,
                   "%s moments", pv->name);
        }
        if (pv->decay) checked_decay++;
        else checked_plain++;
    }
    EXPECT(checked_decay > 0 && checked_plain > 0, "both kinds of tensors present");
    free(p0);
    model_free(&m);
}

static void test_schedule(void) {
    OptimConfig o = {.lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 100, .steps = 2000};
    EXPECT(fabs(optim_lr(&o, 0) - 1e-3 / 101) < 1e-15, "first warmup step");
    EXPECT(fabs(optim_lr(&o, 99) - 1e-3 * 100 / 101) < 1e-15, "last warmup step");
    EXPECT(fabs(optim_lr(&o, 100) - 1e-3) < 1e-15, "warmup end: peak lr");
    EXPECT(fabs(optim_lr(&o, 1050) - 5.5e-4) < 1e-12, "midpoint: (lr + min_lr) / 2, got %g",
           optim_lr(&o, 1050));
    EXPECT(fabs(optim_lr(&o, 2000) - 1e-4) < 1e-15, "end: min_lr");
    EXPECT(optim_lr(&o, 500) > optim_lr(&o, 501), "decreasing after warmup");
    EXPECT(optim_clip_scale(0.5, 1.0) == 1.0, "no clip below the threshold");
    EXPECT(fabs(optim_clip_scale(4.0, 1.0) - 1.0 / (4.0 + 1e-6)) < 1e-15, "clip factor");
    EXPECT(optim_clip_scale(100.0, 0.0) == 1.0, "grad_clip 0 disables");
}

static void test_gemm_naive(void) {
    /* two end in a column edge of exactly one vector, the kernels' half
     * tile, one of them in more than a packed micro-panel's k run; the last
     * packs more B than the threads' private copies may hold, so a
     * transposed A shares one (the small ones have each thread copy it) */
    size_t shapes[][3] = {{1, 1, 1},  {6, 8, 16},         {7, 13, 17},
                          {12, 64, 32}, {50, 33, 70},     {13, 20, NR + VL},
                          {12, GEMM_KC + 44, VL},         {7, ((size_t)1 << 19) / (4 * NR) + 1, 4 * NR}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        size_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        real *A = randn(M * K, 1), *Bm = randn(K * N, 1), *Cm = randn(M * N, 1);
        real *C0 = xmalloc(M * N * sizeof(real));
        memcpy(C0, Cm, M * N * sizeof(real));
        for (int transposed = 0; transposed < 2; transposed++) {
            /* A as [M,K] row-major, or as the transpose of a [K,M] array */
            size_t sam = transposed ? 1 : K, sak = transposed ? M : 1;
            memcpy(Cm, C0, M * N * sizeof(real));
            GemmJob j = {.C = Cm, .ldc = N, .A = A, .sam = sam, .sak = sak, .B = Bm,
                         .sbk = N, .sbn = 1, .M = M, .K = K, .N = N, .accumulate = 1};
            gemm_plan(&j);
            gemm_run(&j, 1, &gemm_work, NULL, NULL);
            double worst = 0;
            for (size_t i = 0; i < M; i++)
                for (size_t j = 0; j < N; j++) {
                    double want = C0[i * N + j];
                    for (size_t k = 0; k < K; k++) want += (double)A[i * sam + k * sak] * Bm[k * N + j];
                    worst = fmax(worst, fabs(Cm[i * N + j] - want));
                }
            /* float rounding grows with the k run; a wrong element is off by O(1) */
            double tol = 1e-4 * (K > 64 ? (double)K / 64 : 1);
            EXPECT(worst < tol, "gemm %zux%zux%zu transposed=%d: off by %g", M, K, N, transposed,
                   worst);
        }
        free(A); free(Bm); free(Cm); free(C0);
    }
}

/* Every reduction has a fixed order, so the thread count changes nothing. */
static void test_thread_independence(void) {
#ifdef _OPENMP
    ModelShape s = {.V = 17, .L = 2, .NH = 4, .C = 64, .maxT = 32, .tie_embeddings = 1};
    int B = 4, T = 32;
    int *inp = xmalloc(B * T * sizeof(int)), *tgt = xmalloc(B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) {
        inp[i] = (int)rng_below(&rng, s.V);
        tgt[i] = (int)rng_below(&rng, s.V);
    }
    real *g[2];
    real loss[2];
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run + 1);
        Model m;
        model_create(&m, &s, B);
        Rng r;
        rng_seed(&r, 3);
        model_init_params(&m, &r, INIT_GPT2, 0);
        loss[run] = model_forward(&m, inp, tgt, B, T);
        model_backward(&m);
        g[run] = xmalloc(m.n_params * sizeof(real));
        memcpy(g[run], m.grads, m.n_params * sizeof(real));
        size_t n = m.n_params;
        model_free(&m);
        if (run == 1) EXPECT(memcmp(g[0], g[1], n * sizeof(real)) == 0, "gradients differ between 1 and 2 threads");
    }
    EXPECT(loss[0] == loss[1], "loss differs between 1 and 2 threads");
    free(g[0]); free(g[1]); free(inp); free(tgt);
#endif
}

/* The parts of a span, from one starting anywhere: inside it, each on a
 * cache line, disjoint, in order and of one size, which leaves less than a
 * line per part (and the line before the first) unused; none of nothing. */
static void test_span_part(void) {
    enum { BYTES = 4000 };
    static _Alignas(64) char block[BYTES + 64];
    for (size_t skew = 0; skew < 64; skew += 13)
        for (size_t parts = 1; parts <= 5; parts++) {
            Span s = {block + skew, BYTES - skew};
            char *end = (char *)s.p + s.n, *prev_end = s.p;
            for (size_t i = 0; i < parts; i++) {
                Span part = span_part(s, i, parts);
                char *p = part.p;
                EXPECT((uintptr_t)p % 64 == 0, "skew %zu, part %zu/%zu not on a line", skew, i, parts);
                EXPECT(p >= prev_end && p + part.n <= end, "skew %zu: part %zu/%zu overlaps or leaves",
                       skew, i, parts);
                EXPECT(part.n == span_part(s, 0, parts).n, "parts of %zu differ in size", parts);
                prev_end = p + part.n;
            }
            EXPECT((size_t)(end - prev_end) < 64 * (parts + 1), "skew %zu, %zu parts: %td bytes unused",
                   skew, parts, end - prev_end);
        }
    Span none = span_part((Span){NULL, 0}, 0, 2);
    EXPECT(!none.p && !none.n, "a part of no span");
    Span tiny = span_part((Span){block + 1, 62}, 0, 1);
    EXPECT(!tiny.n, "a span inside one line gave %zu bytes", tiny.n);
}

/* A step reads nothing in the activations or scratch that it has not
 * written: a second step over what the first left, a step after the idle
 * activations were filled with NaNs (as the heatmaps' white pictures fill
 * them), and a step after the spare scratch was filled likewise compute the
 * first step's loss and gradients to the bit; the forward leaves the spare
 * scratch as it found it. */
static void test_idle_memory(void) {
    ModelShape s = {.V = 17, .L = 2, .NH = 4, .C = 64, .maxT = 64, .bias = 1, .qk_tied = 1};
    int B = 8, T = 64;
    int *inp = xmalloc(B * T * sizeof(int)), *tgt = xmalloc(B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) {
        inp[i] = (int)rng_below(&rng, s.V);
        tgt[i] = (int)rng_below(&rng, s.V);
    }
    Model m;
    model_create(&m, &s, B);
    Rng r;
    rng_seed(&r, 5);
    model_init_params(&m, &r, INIT_GPT2, 0);
    real loss0 = model_forward(&m, inp, tgt, B, T);
    model_backward(&m);
    real *g0 = xmalloc(m.n_params * sizeof(real));
    memcpy(g0, m.grads, m.n_params * sizeof(real));
    for (int pass = 0; pass < 3; pass++) {
        size_t n_spare;
        real *spare = model_spare_scratch(&m, &n_spare);
        if (pass == 2) {
            memset(spare, 0x5a, n_spare * sizeof(real));
            model_forward_qk(&m, inp, B, T);
        }
        if (pass == 1) {
            Span idle = model_idle_activations(&m);
            EXPECT(idle.n == m.n_acts * sizeof(real), "%zu idle bytes, activations %zu", idle.n,
                   m.n_acts * sizeof(real));
            /* a picture's white background: as reals, NaNs, which a kernel
             * reading a stale value, even to multiply it by 0, would spread */
            memset(idle.p, 0xFF, idle.n);
        }
        real loss = model_forward(&m, inp, tgt, B, T);
        if (pass == 2) {
            size_t kept = 0;
            while (kept < n_spare * sizeof(real) && ((unsigned char *)spare)[kept] == 0x5a) kept++;
            EXPECT(kept == n_spare * sizeof(real), "the forward wrote the spare scratch at byte %zu",
                   kept);
        }
        model_backward(&m);
        EXPECT(loss == loss0, "loss %.9g (pass %d), first step %.9g", loss, pass, loss0);
        EXPECT(memcmp(g0, m.grads, m.n_params * sizeof(real)) == 0,
               "gradients differ from the first step's (pass %d)", pass);
    }
    free(g0);
    free(inp);
    free(tgt);
    model_free(&m);
}

int main(void) {
    rng_seed(&rng, 1);
    test_attention_rows();
    test_attention_at_rows();
    test_attention_naive(0);
    test_attention_naive(1);
    test_layernorm_moments();
    test_crossentropy_uniform();
    test_adamw_step();
    test_schedule();
    test_gemm_naive();
    test_thread_independence();
    test_span_part();
    test_idle_memory();
    CHECK_DONE("test_ops");
}
