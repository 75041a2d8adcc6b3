/* AdamW, the learning-rate schedule and gradient clipping. */
#ifndef QK_OPTIM_H
#define QK_OPTIM_H

#include "model.h"

typedef struct {
    double lr, min_lr;
    int warmup_steps, steps;
    double beta1, beta2, eps, weight_decay;
} OptimConfig;

/* Learning rate for 0-based step `step`: linear warm-up lr*(step+1)/(warmup+1)
 * for step < warmup, then cosine from lr down to min_lr at step `steps`. */
double optim_lr(const OptimConfig *o, int step);

/* PyTorch's clip_grad_norm_ factor: max_norm / (norm + 1e-6) when that is
 * below 1, else 1; max_norm 0 disables clipping. */
double optim_clip_scale(double norm, double max_norm);

/* One AdamW update (t = 1-based step count for bias correction): gradients are
 * multiplied by grad_scale first; decoupled weight decay only on views with
 * decay set (matrices, embeddings included; not biases or LayerNorm). */
void optim_adamw_update(Model *m, const OptimConfig *o, double lr, int t, double grad_scale);

#endif
