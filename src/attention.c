#include "attention.h"

#include <math.h>
#include <string.h>

void attention_forward(real *out, real *att, const real *q, const real *k, const real *v,
                       int B, int T, int C, int NH) {
    int hs = C / NH;
    real scale = (real)(1.0 / sqrt((double)hs));
    /* One (batch, head) pair per iteration: its outputs are disjoint. */
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            real *a = att + ((size_t)b * NH + h) * T * T;
            for (int t = 0; t < T; t++) {
                const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                real *row = a + (size_t)t * T;
                real mx = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const real *kt = k + ((size_t)b * T + t2) * C + h * hs;
                    real s = 0;
                    for (int i = 0; i < hs; i++) s += qt[i] * kt[i];
                    s *= scale;
                    row[t2] = s;
                    mx = s > mx ? s : mx;
                }
                real sum = 0;
                for (int t2 = 0; t2 <= t; t2++) {
                    row[t2] = rexp(row[t2] - mx);
                    sum += row[t2];
                }
                real inv = 1 / sum;
                for (int t2 = 0; t2 <= t; t2++) row[t2] *= inv;
                for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0;

                real *o = out + ((size_t)b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const real *vt = v + ((size_t)b * T + t2) * C + h * hs;
                    real w = row[t2];
                    for (int i = 0; i < hs; i++) o[i] += w * vt[i];
                }
            }
        }
}

void attention_backward(real *dq, real *dk, real *dv, real *datt, const real *dout,
                        const real *q, const real *k, const real *v, const real *att,
                        int B, int T, int C, int NH) {
    int hs = C / NH;
    real scale = (real)(1.0 / sqrt((double)hs));
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const real *a = att + ((size_t)b * NH + h) * T * T;
            real *dar = datt + ((size_t)b * NH + h) * T; /* one row, reused */
            for (int t = 0; t < T; t++) {
                size_t row = ((size_t)b * T + t) * C + h * hs;
                memset(dq + row, 0, hs * sizeof(real));
                memset(dk + row, 0, hs * sizeof(real));
                memset(dv + row, 0, hs * sizeof(real));
            }
            for (int t = 0; t < T; t++) {
                const real *dot = dout + ((size_t)b * T + t) * C + h * hs;
                const real *ar = a + (size_t)t * T;
                /* through out = att v */
                for (int t2 = 0; t2 <= t; t2++) {
                    const real *vt = v + ((size_t)b * T + t2) * C + h * hs;
                    real *dvt = dv + ((size_t)b * T + t2) * C + h * hs;
                    real s = 0;
                    for (int i = 0; i < hs; i++) {
                        s += dot[i] * vt[i];
                        dvt[i] += ar[t2] * dot[i];
                    }
                    dar[t2] = s;
                }
                /* through the row softmax: ds = a * (da - sum(a * da)) */
                real dotsum = 0;
                for (int t2 = 0; t2 <= t; t2++) dotsum += ar[t2] * dar[t2];
                const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                real *dqt = dq + ((size_t)b * T + t) * C + h * hs;
                for (int t2 = 0; t2 <= t; t2++) {
                    real ds = ar[t2] * (dar[t2] - dotsum) * scale;
                    const real *kt = k + ((size_t)b * T + t2) * C + h * hs;
                    real *dkt = dk + ((size_t)b * T + t2) * C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        dqt[i] += ds * kt[i];
                        dkt[i] += ds * qt[i];
                    }
                }
            }
        }
}
