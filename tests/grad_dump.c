/* Built twice: in float (the product's math) and in double (QK_DOUBLE, the
 * finite-difference-checked reference). Both build the same model from the
 * same float-representable parameters and inputs.
 *   grad_dump_f32 OUT          writes the loss and all gradients
 *   grad_dump_f64 --compare IN checks a float dump against double gradients:
 *     per tensor, max |g32 - g64| <= 2e-4 * max |g64| + 1e-6 * G, G the largest
 *     gradient of the model (float rounding through a few layers stays well
 *     inside; a wrong kernel is off by O(1)). The G term covers tensors whose
 *     true gradient is 0, such as b_K: a constant added to every key score of a
 *     row leaves the softmax unchanged. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model.h"

static void build(Model *m, int qk_tied, int bias, int *inp, int *tgt) {
    ModelShape s = {.V = 11, .L = 2, .NH = 4, .C = 32, .maxT = 16, .bias = bias,
                    .tie_embeddings = 1, .qk_tied = qk_tied};
    model_create(m, &s, 3);
    Rng r;
    rng_seed(&r, 7);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] = (real)(float)(0.2 * rng_normal(&r)); /* float-representable */
    for (int i = 0; i < m->n_views; i++)
        if (strstr(m->views[i].name, "ln") && strstr(m->views[i].name, ".weight"))
            for (size_t j = 0; j < m->views[i].numel; j++)
                m->params[m->views[i].offset + j] += 1;
    for (int i = 0; i < 3 * 16; i++) {
        inp[i] = (int)rng_below(&r, s.V);
        tgt[i] = (int)rng_below(&r, s.V);
    }
}

int main(int argc, char **argv) {
    int compare = argc == 3 && strcmp(argv[1], "--compare") == 0;
    if (argc != 2 && !compare) {
        fprintf(stderr, "usage: grad_dump OUT | grad_dump --compare IN\n");
        return 2;
    }
    FILE *f = fopen(compare ? argv[2] : argv[1], compare ? "rb" : "wb");
    if (!f) {
        perror(argv[argc - 1]);
        return 1;
    }
    for (int variant = 0; variant < 4; variant++) {
        Model m;
        int inp[48], tgt[48];
        build(&m, variant & 1, variant >> 1, inp, tgt);
        double loss = model_forward(&m, inp, tgt, 3, 16);
        model_backward(&m);
        if (!compare) {
            fwrite(&loss, sizeof loss, 1, f);
            for (size_t i = 0; i < m.n_params; i++) {
                float g = (float)m.grads[i];
                fwrite(&g, sizeof g, 1, f);
            }
        } else {
            double l32;
            EXPECT(fread(&l32, sizeof l32, 1, f) == 1, "dump too short");
            EXPECT(fabs(l32 - loss) <= 1e-5 * fabs(loss), "variant %d: loss f32 %.9g f64 %.9g",
                   variant, l32, loss);
            float *g32 = xmalloc(m.n_params * sizeof(float));
            EXPECT(fread(g32, sizeof(float), m.n_params, f) == m.n_params, "dump too short");
            double G = 0;
            for (size_t j = 0; j < m.n_params; j++) G = fmax(G, fabs(m.grads[j]));
            for (int v = 0; v < m.n_views; v++) {
                const ParamView *pv = &m.views[v];
                double gmax = 0, err = 0;
                for (size_t j = 0; j < pv->numel; j++) {
                    double g = m.grads[pv->offset + j];
                    gmax = fmax(gmax, fabs(g));
                    err = fmax(err, fabs(g32[pv->offset + j] - g));
                }
                EXPECT(err <= 2e-4 * gmax + 1e-6 * G, "variant %d %s: max |g32-g64| %.3g vs max |g| %.3g",
                       variant, pv->name, err, gmax);
            }
            free(g32);
        }
        model_free(&m);
    }
    fclose(f);
    if (!compare) return 0;
    CHECK_DONE("grad_f32_vs_f64");
}
