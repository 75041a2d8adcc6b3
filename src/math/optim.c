#include "optim.h"

#include <math.h>

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

/* Below this many parameters the update takes less time than waking a
 * second thread. */
#define ADAMW_PARALLEL_MIN 65536

static void adamw_span(real *p, real *mm, real *vv, const real *g, size_t n, const AdamCoef *k) {
    const real b1 = k->b1, b2 = k->b2, gs = k->gs, step_size = k->step_size;
    const real inv_sqrt_bc2 = k->inv_sqrt_bc2, eps = k->eps, decay = k->decay;
    for (size_t j = 0; j < n; j++) {
        real gj = g[j] * gs;
        mm[j] = b1 * mm[j] + (1 - b1) * gj;
        vv[j] = b2 * vv[j] + (1 - b2) * gj * gj;
        real denom = real_sqrt(vv[j]) * inv_sqrt_bc2 + eps;
        p[j] = p[j] * decay - step_size * mm[j] / denom;
    }
}

void optim_adamw_update(Model *m, const OptimConfig *o, double lr, int t, double grad_scale) {
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    AdamCoef base = {.b1 = (real)o->beta1, .b2 = (real)o->beta2, .gs = (real)grad_scale,
                     .step_size = (real)(lr / bc1), .inv_sqrt_bc2 = (real)(1.0 / sqrt(bc2)),
                     .eps = (real)o->eps};
    /* One parallel region for every tensor; each element's update is on its
     * own, so the split between threads does not change a bit. */
#pragma omp parallel if (m->n_params > ADAMW_PARALLEL_MIN)
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
            size_t lo = v->numel * tid / nth, hi = v->numel * (tid + 1) / nth;
            adamw_span(m->params + v->offset + lo, m->adam_m + v->offset + lo,
                       m->adam_v + v->offset + lo, m->grads + v->offset + lo, hi - lo, &k);
        }
    }
}
