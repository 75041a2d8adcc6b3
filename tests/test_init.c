/* model.init: every tensor kind (pooled over layers) has the distribution
 * docs/model.md states for its scheme, gpt2 or torch, with and without
 * biases, tied and untied embeddings; symmetric qk_init copies W_Q and b_Q
 * into W_K and b_K. Tolerances are 4 standard errors of the statistic. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "model.h"

enum { L = 2, NH = 4, C = 64, T = 32, V = 30, MAX_KINDS = 32 };

/* What a kind should hold: the constant s, N(0, s) or U(-s, s). */
typedef struct {
    char dist; /* 'c', 'n' or 'u' */
    double s;
} Want;

/* The stated distributions, written apart from model.c's code. */
static Want want(InitScheme scheme, const char *kind) {
    if (!strncmp(kind, "ln", 2)) return (Want){'c', strstr(kind, ".weight") ? 1 : 0};
    if (!strcmp(kind, "attn.smear")) return (Want){'c', 0};
    int weight = strstr(kind, ".weight") != NULL;
    if (scheme == INIT_GPT2) {
        if (!weight) return (Want){'c', 0};
        int resid = !strcmp(kind, "attn.o.weight") || !strcmp(kind, "mlp.proj.weight");
        return (Want){'n', resid ? 0.02 / sqrt(2.0 * L) : 0.02};
    }
    if (!strcmp(kind, "wte.weight") || !strcmp(kind, "wpe.weight")) return (Want){'n', 1};
    int fan_in = !strncmp(kind, "mlp.proj.", 9) ? 4 * C : C;
    return (Want){'u', 1 / sqrt((double)fan_in)};
}

typedef struct {
    char kind[64];
    double n, sum, sumsq, maxabs;
    int off_const; /* values other than the constant a 'c' kind wants */
} Stats;

static void check_model(InitScheme scheme, int bias, int tied, int symmetric) {
    ModelShape s = {.V = V, .L = L, .NH = NH, .C = C, .maxT = T, .bias = bias,
                    .tie_embeddings = tied, .smear = SMEAR_KEY};
    Model m;
    model_create(&m, &s, 1);
    Rng r;
    rng_seed(&r, 1234);
    model_init_params(&m, &r, scheme, symmetric);
    const char *name = scheme == INIT_GPT2 ? "gpt2" : "torch";

    Stats st[MAX_KINDS];
    int n_kinds = 0;
    for (int i = 0; i < m.n_views; i++) {
        const ParamView *v = &m.views[i];
        const char *kind = v->name;
        if (!strncmp(kind, "blocks.", 7)) kind = strchr(kind + 7, '.') + 1;
        int k = 0;
        while (k < n_kinds && strcmp(st[k].kind, kind)) k++;
        if (k == n_kinds) {
            REQUIRE(n_kinds < MAX_KINDS);
            st[n_kinds++] = (Stats){0};
            snprintf(st[k].kind, sizeof st[k].kind, "%s", kind);
        }
        Want w = want(scheme, kind);
        const real *p = m.params + v->offset;
        for (size_t j = 0; j < v->numel; j++) {
            double x = p[j];
            st[k].n++, st[k].sum += x, st[k].sumsq += x * x;
            st[k].maxabs = fmax(st[k].maxabs, fabs(x));
            st[k].off_const += w.dist == 'c' && x != w.s;
        }
    }

    int seen_head = 0, seen_bias = 0;
    for (int k = 0; k < n_kinds; k++) {
        const Stats *a = &st[k];
        Want w = want(scheme, a->kind);
        double mean = a->sum / a->n, sd = sqrt(a->sumsq / a->n - mean * mean);
        seen_head |= !strcmp(a->kind, "lm_head.weight");
        seen_bias |= !strcmp(a->kind, "attn.q.bias");
        if (w.dist == 'c') {
            EXPECT(a->off_const == 0, "%s bias %d tied %d: %s: %d values not %g", name, bias, tied,
                   a->kind, a->off_const, w.s);
            continue;
        }
        double want_sd = w.dist == 'n' ? w.s : w.s / sqrt(3.0);
        double tol = 4 * sqrt(1 / (2 * a->n)) + 0.01;
        EXPECT(fabs(mean) <= 4 * want_sd / sqrt(a->n), "%s bias %d tied %d: %s: mean %g", name,
               bias, tied, a->kind, mean);
        EXPECT(fabs(sd / want_sd - 1) <= tol, "%s bias %d tied %d: %s: sd %g, expected %g", name,
               bias, tied, a->kind, sd, want_sd);
        if (w.dist == 'u')
            EXPECT(a->maxabs <= w.s && a->maxabs > 0.9 * w.s,
                   "%s bias %d tied %d: %s: max |x| %g, bound %g", name, bias, tied, a->kind,
                   a->maxabs, w.s);
    }
    /* the optional tensors are there exactly when the shape asks for them */
    EXPECT(seen_head == !tied, "%s: lm_head present %d with tied %d", name, seen_head, tied);
    EXPECT(seen_bias == bias, "%s: biases present %d with bias %d", name, seen_bias, bias);
    if (tied) EXPECT(m.p.lm_head == m.p.wte, "%s: tied lm_head is not wte", name);
    size_t cc = (size_t)L * C * C, lc = (size_t)L * C;
    if (symmetric) {
        EXPECT(!memcmp(m.p.wk, m.p.wq, cc * sizeof(real)), "%s symmetric: W_K != W_Q", name);
        if (bias) EXPECT(!memcmp(m.p.bk, m.p.bq, lc * sizeof(real)), "%s symmetric: b_K != b_Q", name);
    } else {
        EXPECT(memcmp(m.p.wk, m.p.wq, cc * sizeof(real)), "%s: W_K == W_Q unasked", name);
    }
    model_free(&m);
}

int main(void) {
    for (int scheme = INIT_GPT2; scheme <= INIT_TORCH; scheme++) {
        for (int bias = 0; bias <= 1; bias++)
            for (int tied = 0; tied <= 1; tied++) check_model((InitScheme)scheme, bias, tied, 0);
        check_model((InitScheme)scheme, 1, 0, 1);
    }
    CHECK_DONE("init");
}
