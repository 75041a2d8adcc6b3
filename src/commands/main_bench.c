/* qkscope bench CONFIG [--steps N] [--warmup N] [--threads N] [section.key=value ...]:
 * times training steps of a config and prints ms/step, tokens/s, GFLOP/s,
 * MFU against this machine's measured FMA peak, peak RSS against what the
 * model needs, and per-phase and per-op breakdowns; then the cost of the Q/K
 * instrumentation (steps with per-head logging on and off, alternating, and
 * the heatmap sets of a run of the config's length).
 * Under mpirun with several ranks the steps are data-parallel (global batch
 * ranks x batch_size) and it also prints the time spent communicating.
 * Runs in a temporary folder; nothing is kept. Not a test: it only prints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope bench CONFIG [--steps N] [--warmup N] [--threads N] [section.key=value ...]\n"
               "  --steps N    timed steps (default 50)\n"
               "  --warmup N   untimed steps first (default 5)\n"
               "  --threads N  OpenMP threads (default: run.threads, else all cores)\n");
}

#if defined(__AVX512F__)
#define PEAK_BYTES 64
#else
#define PEAK_BYTES 32
#endif
typedef float vpeak __attribute__((vector_size(PEAK_BYTES)));
#define PEAK_CHAINS 12 /* independent FMA chains: enough to cover the FMA latency */

/* fp32 FLOP/s of `threads` threads running independent vector FMA chains: the
 * best of several short trials, since other load on a shared machine only ever
 * makes a trial slower (one long trial could read well under the peak). */
#define PEAK_TRIALS 7
static double fma_peak(int threads) {
    const long iters = 4000000;
    double best = 0;
    for (int trial = 0; trial < PEAK_TRIALS; trial++) {
        volatile float sink = 0;
        double t0 = time_now();
#pragma omp parallel num_threads(threads)
        {
            vpeak acc[PEAK_CHAINS], mul = {0}, add = {0};
            for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = (vpeak){0} + (float)i;
            mul += 0.999999f;
            add += 1e-7f;
            for (long it = 0; it < iters; it++)
                for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = acc[i] * mul + add;
            float s = 0;
            for (int i = 0; i < PEAK_CHAINS; i++) s += acc[i][0];
#pragma omp atomic
            sink += s;
        }
        double dt = time_now() - t0;
        (void)sink;
        double flops = 2.0 * (PEAK_BYTES / 4) * PEAK_CHAINS * (double)iters * threads / dt;
        if (flops > best) best = flops;
    }
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* What switching per-head logging off on every other step measures. */
typedef struct {
    double off;    /* median seconds of the steps without it */
    double paired; /* median of (step with it - the next step without) */
    double phases; /* mean logging phase with it */
} LoggingCost;

/* Median seconds per step over n steps; with `cost`, per-head logging is off
 * on every other step. Interleaved and paired, both sides see the same
 * machine load, which drifts more than the logging costs; still, the paired
 * step differences swing by a percent of a step from run to run, while the
 * phase timers, which see only the logging's own work (not what it does to
 * the caches of the next step), hold still. */
static double run_steps(Trainer *t, int n, LoggingCost *cost) {
    double *dt = xmalloc(3 * (size_t)n * sizeof(double)), *dt_off = dt + n, *diff = dt + 2 * n;
    double qk = 0;
    int n_on = 0, n_off = 0;
    for (int i = 0; i < n; i++) {
        t->qk_logging = !(cost && i % 2);
        double t0 = time_now(), q0 = t->phase_seconds[PHASE_QK_LOGGING];
        Error err;
        if (train_step(t, &err) != 0) die("%s", err.msg);
        double dstep = time_now() - t0;
        if (t->qk_logging) {
            dt[n_on++] = dstep;
            qk += t->phase_seconds[PHASE_QK_LOGGING] - q0;
        } else {
            dt_off[n_off++] = dstep;
        }
    }
    t->qk_logging = 1;
    if (cost) {
        int pairs = n_off < n_on ? n_off : n_on;
        for (int k = 0; k < pairs; k++) diff[k] = dt[k] - dt_off[k];
        cost->paired = median(diff, pairs);
        cost->off = median(dt_off, n_off);
        cost->phases = qk / n_on;
    }
    double med = median(dt, n_on);
    free(dt);
    return med;
}

/* The heatmap sets of a run of `steps` steps (step 0, every `every`, the
 * end), drawn one after another with the attention history growing as in
 * that run; their total seconds, or -1 with a message. */
static double time_heatmaps(Trainer *t, int steps, int every, int *sets, Error *err) {
    *sets = steps / every + 1 + (steps % every != 0);
    double t0 = time_now();
    for (int k = 0; k < *sets; k++) {
        int step = t->step + (k + 1 < *sets ? k * every : steps);
        if (qk_watch_snapshot(&t->watch, &t->model, t->run_dir, step, err)) return -1;
    }
    return time_now() - t0;
}

int main(int argc, char **argv) {
    long steps = 50, warmup = 5, threads = 0;
    const char *pos[257]; /* CONFIG and up to 256 overrides */
    int npos, status;
    Error err;
    const CliOption opts[] = {{"--steps", OPT_LONG, &steps, 1, 1000000},
                              {"--warmup", OPT_LONG, &warmup, 0, 1000000},
                              {"--threads", OPT_LONG, &threads, 1, 1024},
                              {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "bench", opts, pos, 1, 257, &npos, usage, &status)) return status;
    dist_init(&argc, &argv);
    Config cfg;
    if (config_load(&cfg, pos[0], npos - 1, (char **)pos + 1, &err)) return cli_fail(&err);
    char dir[] = "/tmp/qkscope-bench-XXXXXX";
    CHECK(mkdtemp(dir), "cannot create a temporary folder");
    snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", dir);
    cfg.resume = 0;
    cfg.init_from[0] = '\0';
    if (threads > 0) cfg.threads = (int)threads;
    int run_len = cfg.steps; /* the run whose heatmap sets are timed */
    /* enough steps (warm-up, timed, then on/off alternating) that the
     * schedule stays in its warm-up/cosine shape */
    if (cfg.steps < warmup + 3 * steps) cfg.steps = (int)(warmup + 3 * steps);
    if (cfg.warmup_steps > cfg.steps) cfg.warmup_steps = cfg.steps;
    cfg.stop_after = 0;
    cfg.log_every = 1000000000; /* no progress lines between the figures */
    Trainer t;
    if (train_setup(&t, &cfg, &err)) {
        train_free(&t);
        dir_remove(dir);
        if (!err.msg[0]) dist_abort(EXIT_BADINPUT); /* another rank reports it */
        return cli_fail(&err);
    }
    /* one report, from rank 0 (every rank runs the same steps) */
    if (t.rank != 0 && !freopen("/dev/null", "w", stdout)) die("cannot silence rank %d", t.rank);
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = omp_get_max_threads();
#endif
    const ModelShape *s = &t.model.shape;
    int B = cfg.batch_size * t.ranks, T = cfg.block_size; /* the global batch */
    double fpt = 6.0 * (12.0 * s->L * (double)s->C * s->C + (double)s->V * s->C) +
                 12.0 * s->L * (double)T * s->C;
    double peak1 = fma_peak(1), peakn = nthreads > 1 ? fma_peak(nthreads) : peak1;

    printf("bench %s: L%d H%d C%d T%d B%d V%d, %zu parameters, %d rank(s) x %d thread(s)\n",
           pos[0], s->L, s->NH, s->C, T, B, s->V, t.model.n_params, t.ranks, nthreads);
    for (long i = 0; i < warmup; i++)
        if (train_step(&t, &err) != 0) die("%s", err.msg);
    memset(t.phase_seconds, 0, sizeof t.phase_seconds);
    memset(t.model.op_seconds, 0, sizeof t.model.op_seconds);
    double comm0 = dist_grads_seconds(t.dist);
    double med = run_steps(&t, (int)steps, NULL);
    double comm = dist_grads_seconds(t.dist) - comm0;
    double phases[N_PHASES], ops[N_OPS];
    memcpy(phases, t.phase_seconds, sizeof phases);
    memcpy(ops, t.model.op_seconds, sizeof ops);
    LoggingCost lc;
    run_steps(&t, 2 * (int)steps, &lc);
    /* the peak again after the steps, the best of both: all seven trials of
     * one measurement can fall in a spell of other load, and an MFU over 100%
     * would follow */
    peak1 = fmax(peak1, fma_peak(1));
    peakn = nthreads > 1 ? fmax(peakn, fma_peak(nthreads)) : peak1;
    double rss_steps = peak_rss_mib();
    int sets = 0; /* the heatmaps are rank 0's */
    double heat = cfg.heatmap_every > 0 && t.rank == 0
                      ? time_heatmaps(&t, run_len, cfg.heatmap_every, &sets, &err)
                      : 0;

    double tps = B * T / med;
    peakn *= t.ranks; /* every rank runs its threads */
    /* a rank's own memory: its slice of the batch */
    double rss = peak_rss_mib(), need = model_memory_bytes(s, cfg.batch_size) / 1048576.0;
    printf("machine fp32 FMA peak: %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d (%d-bit vectors)\n",
           peak1 / 1e9, peakn / 1e9, nthreads, PEAK_BYTES * 8);
    printf("median %.2f ms/step over %ld steps (after %ld warm-up): %.0f tokens/s, %.1f GFLOP/s, "
           "MFU %.1f%% of the %d-thread peak\n",
           med * 1e3, steps, warmup, tps, fpt * tps / 1e9, 100 * fpt * tps / peakn,
           nthreads * t.ranks);
    printf("model FLOPs per token %.3f M (6 (12 L C^2 + V C) + 12 L T C)\n", fpt / 1e6);
    printf("peak RSS %.1f MiB while training, %.1f MiB with the heatmap sets; parameters + "
           "gradients + Adam state + activations need %.1f MiB (%.2fx, %.2fx)\n",
           rss_steps, rss, need, rss_steps / need, rss / need);
    const char *phase_names[N_PHASES] = {"forward", "backward", "allreduce wait", "optimizer",
                                         "Q/K logging"};
    double phase_total = 0;
    for (int i = 0; i < N_PHASES; i++) phase_total += phases[i];
    printf("per phase (mean ms/step):\n");
    for (int i = 0; i < N_PHASES; i++)
        printf("  %-22s %8.3f  %5.1f%%\n", phase_names[i], phases[i] * 1e3 / steps,
               100 * phases[i] / phase_total);
    if (sets > 0 && heat >= 0)
        printf("  %-22s %8.3f  (%d sets in a %d-step run, per step; not in the step times)\n",
               "heatmaps", heat * 1e3 / run_len, sets, run_len);
    printf("per op, forward + backward (mean ms/step):\n");
    double op_total = 0;
    for (int i = 0; i < N_OPS; i++) op_total += ops[i];
    for (int i = 0; i < N_OPS; i++)
        printf("  %-22s %8.3f  %5.1f%%\n", model_op_names[i], ops[i] * 1e3 / steps,
               100 * ops[i] / op_total);
    printf("Q/K logging, alternate steps: off %.2f ms/step; on %+.3f ms/step (%+.1f%%) by the "
           "median of %ld paired step differences, %+.3f ms/step (%+.1f%%) by the phase timers\n",
           lc.off * 1e3, lc.paired * 1e3, 100 * lc.paired / lc.off, steps, lc.phases * 1e3,
           100 * lc.phases / lc.off);
    if (heat < 0) {
        printf("heatmaps: %s\n", err.msg);
    } else if (sets > 0) {
        /* a run of run_len steps: its steps without any instrumentation, the
         * logging's share, and the heatmap sets */
        double bare = run_len * lc.off, logging = run_len * lc.phases;
        printf("heatmaps: %d sets as in a %d-step run (every %d): %.1f ms per set, %.2f s in all\n",
               sets, run_len, cfg.heatmap_every, heat * 1e3 / sets, heat);
        printf("Q/K instrumentation in a %d-step run: %.2f s of %.1f s, %.1f%% (logging %.1f%% by "
               "the phase timers, heatmaps %.1f%%); %.1f%% with the logging's paired step "
               "differences\n",
               run_len, logging + heat, bare + logging + heat, 100 * (logging + heat) / bare,
               100 * logging / bare, 100 * heat / bare,
               100 * (run_len * lc.paired + heat) / bare);
    }
    if (t.ranks > 1)
        printf("communication (%d ranks, gradients of %.1f MiB): %.2f ms/step in MPI calls, of "
               "which %.2f ms/step waiting after backward (not hidden by it)\n",
               t.ranks, t.model.n_params * sizeof(real) / 1048576.0, comm * 1e3 / steps,
               phases[PHASE_COMM] * 1e3 / steps);
    train_free(&t);
    dir_remove(dir);
    dist_finalize();
    return 0;
}
