/* Causal multi-head self-attention core: softmax(q k^T / sqrt(hs), causal) v.
 * q, k, v, out are [B, T, C] with head h in columns h*hs .. (h+1)*hs-1. */
#ifndef QK_ATTENTION_H
#define QK_ATTENTION_H

#include "common.h"

/* att[B,NH,T,T] receives the softmax weights (0 above the diagonal). */
void attention_forward(real *out, real *att, const real *q, const real *k, const real *v,
                       int B, int T, int C, int NH);

/* dq, dk, dv are overwritten; datt is scratch [B,NH,T]. */
void attention_backward(real *dq, real *dk, real *dv, real *datt, const real *dout,
                        const real *q, const real *k, const real *v, const real *att,
                        int B, int T, int C, int NH);

#endif
