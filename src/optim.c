#include "optim.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define PI 3.14159265358979323846

double optim_lr(const OptimConfig *o, int step) {
    if (step < o->warmup_steps) return o->lr * (step + 1) / (o->warmup_steps + 1);
    int span = o->steps - o->warmup_steps;
    double r = (double)(step - o->warmup_steps) / (span > 1 ? span : 1);
    if (r > 1) r = 1;
    return o->min_lr + 0.5 * (1.0 + cos(PI * r)) * (o->lr - o->min_lr);
}

double optim_clip_scale(double norm, double max_norm) {
    if (max_norm <= 0) return 1.0;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? c : 1.0;
}

typedef struct {
    real b1, b2, gs, step_size, inv_sqrt_bc2, eps, decay;
} AdamCoef;

/* The update of n consecutive elements; the one loop every element goes
 * through, so the arithmetic is the same whichever way it is reached. */
static void adamw_span(real *p, real *mm, real *vv, const real *g, size_t n, const AdamCoef *k) {
    const real b1 = k->b1, b2 = k->b2, gs = k->gs, step_size = k->step_size;
    const real inv_sqrt_bc2 = k->inv_sqrt_bc2, eps = k->eps, decay = k->decay;
    for (size_t j = 0; j < n; j++) {
        real gj = g[j] * gs;
        mm[j] = b1 * mm[j] + (1 - b1) * gj;
        vv[j] = b2 * vv[j] + (1 - b2) * gj * gj;
        real denom = rsqrt(vv[j]) * inv_sqrt_bc2 + eps;
        p[j] = p[j] * decay - step_size * mm[j] / denom;
    }
}

/* Per-thread copy of a block before its update, grown once. */
static real *before_buf;
static size_t before_cap;

/* Block b of a tapped view updated, its sums taken on the way (the block is
 * read for them just before and after its update, in cache). */
static void adamw_block(Model *m, const ParamView *v, const OptimTap *tap, int b,
                        const AdamCoef *k, real *before) {
    size_t len = v->numel / (size_t)tap->blocks, at = v->offset + (size_t)b * len;
    real *p = m->params + at;
    double *sums = tap->sums + 3 * (size_t)b;
    sums[0] = sum_squares(m->grads + at, len);
    sums[1] = sum_squares(p, len);
    memcpy(before, p, len * sizeof(real));
    adamw_span(p, m->adam_m + at, m->adam_v + at, m->grads + at, len, k);
    sums[2] = sum_squares_diff(p, before, len);
}

static const OptimTap *tap_of(const OptimTap *taps, int ntaps, int view) {
    for (int i = 0; i < ntaps; i++)
        if (taps[i].view == view) return &taps[i];
    return NULL;
}

/* The longest tapped block, for the copies before the update. */
static size_t tap_block_max(const Model *m, const OptimTap *taps, int ntaps) {
    size_t most = 0;
    for (int i = 0; i < ntaps; i++) {
        size_t len = taps[i].view < 0 ? 0 : m->views[taps[i].view].numel / taps[i].blocks;
        if (len > most) most = len;
    }
    return most;
}

void optim_adamw_update(Model *m, const OptimConfig *o, double lr, int t, double grad_scale,
                        const OptimTap *taps, int ntaps) {
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    AdamCoef base = {.b1 = (real)o->beta1, .b2 = (real)o->beta2, .gs = (real)grad_scale,
                     .step_size = (real)(lr / bc1), .inv_sqrt_bc2 = (real)(1.0 / sqrt(bc2)),
                     .eps = (real)o->eps};
    size_t block_max = tap_block_max(m, taps, ntaps);
    int nth_max = 1;
#ifdef _OPENMP
    nth_max = omp_get_max_threads();
#endif
    real *before_all = buffer_grow(&before_buf, &before_cap, block_max * (size_t)nth_max);
    /* One parallel region for every tensor; each element's update is on its
     * own, so the split between threads does not change a bit. A tapped
     * view goes by blocks, each block's sums by one thread in a fixed order. */
#pragma omp parallel if (m->n_params > 65536)
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        for (int i = 0; i < m->n_views; i++) {
            const ParamView *v = &m->views[i];
            AdamCoef k = base;
            /* PyTorch AdamW order: decay the weight, then the Adam step. */
            k.decay = v->decay ? (real)(1.0 - lr * o->weight_decay) : 1;
            const OptimTap *tap = tap_of(taps, ntaps, i);
            if (tap) {
#pragma omp for schedule(static) nowait
                for (int b = 0; b < tap->blocks; b++)
                    adamw_block(m, v, tap, b, &k, before_all + (size_t)tid * block_max);
                continue;
            }
            size_t lo = v->numel * tid / nth, hi = v->numel * (tid + 1) / nth;
            adamw_span(m->params + v->offset + lo, m->adam_m + v->offset + lo,
                       m->adam_v + v->offset + lo, m->grads + v->offset + lo, hi - lo, &k);
        }
    }
}
