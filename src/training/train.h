/* A training session: run folder, model, optimizer state, the step loop and
 * evaluation. main_train.c drives it; other commands reuse the evaluation. */
#ifndef QK_TRAIN_H
#define QK_TRAIN_H

#include <signal.h>

#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "dist.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "qk.h"
#include "runlock.h"

/* Phases of a step, timed for the benchmark. PHASE_COMM is the wait for the
 * gradient allreduces that backward did not hide, and the loss's allreduce. */
enum { PHASE_FORWARD, PHASE_BACKWARD, PHASE_COMM, PHASE_OPTIMIZER, PHASE_QK_LOGGING, N_PHASES };

/* The work of a run between its steps, timed apart for the closing line. */
enum { OUTSIDE_EVALS, OUTSIDE_ANALYSES, OUTSIDE_HEATMAPS, OUTSIDE_REPORT, OUTSIDE_CHECKPOINTS,
       N_OUTSIDE };

typedef struct {
    Config cfg;
    Corpus corpus;
    Model model;
    OptimConfig opt;
    Rng batch_rng;        /* draws training batch offsets */
    char run_dir[CONFIG_STR + 256];
    RunLock lock;         /* rank 0 holds the run folder's lock from setup to free */
    int *inputs, *targets; /* [B, T] batch buffers */
    int step;             /* updates done so far */
    CsvLog metrics, evals, qklog, qkeval, roleseval; /* roleseval: task runs only */
    char **metric_cols;   /* metrics.csv header: base columns + per-layer Q/K totals */
    int n_metric_cols;
    QkNorms qk;           /* this step's per-head norms */
    QkWatch watch;        /* probe and history for the heatmaps */
    QkHeadEval *heads;    /* [L * NH] the last eval's Q/K analysis */
    double outside_seconds[N_OUTSIDE]; /* wall time of the work between steps */
    double phase_seconds[N_PHASES];
    int qk_logging;       /* per-head norms and qk.csv every step (the benchmark turns it off) */
    Progress progress;
    double last_train, last_val; /* latest eval losses, NAN before the first eval */
    double last_val_acc;  /* and the latest validation accuracy */
    int acc_held;         /* evals in a row with val_acc >= train.stop_at_acc */
    int stopped_early;    /* the run ended there (train.stop_at_acc) */
    int last_eval_step;   /* -1 before the first eval */
    double train_seconds; /* time spent in steps (not evals) */
    double report_at;     /* time_now() when index.html was last written, 0: never */
    int resumed_from;     /* step of the checkpoint resumed from, -1 for a fresh run */
    /* Data-parallel: rank `rank` of `ranks` draws windows rank*B .. rank*B+B-1
     * of the global batch of ranks*B; rank 0 alone writes the run folder and
     * the console (the other ranks' logs stay closed). */
    int rank, ranks;
    DistGrads *dist;      /* gradient averaging, NULL alone */
} Trainer;

/* Everything before the first step: corpus, memory check, run folder
 * (refusing to mix with an earlier run), model init, logs. All bad input is
 * reported here, before any file is written. With several ranks every rank
 * calls it; rank 0 reads the checkpoint, prepares the folder and sends the
 * weights, optimizer state and step to the others; a failure on any rank
 * fails it on all (the message is kept by one). */
int train_setup(Trainer *t, const Config *cfg, Error *err);

/* Runs the steps, evals and checkpoints to train.steps (or train.stop_after);
 * returns 0, or 1 after reporting a failed checkpoint write, a non-finite
 * step or ranks whose weights disagree (on every rank alike). */
int train_run(Trainer *t);

/* One update, logged to metrics.csv (and qk.csv) and the console; -1 with a
 * message naming the step and the first non-finite tensor when the loss or a
 * gradient is not finite (no update is applied then). */
int train_step(Trainer *t, Error *err);

/* Set (to the signal number) by the command's SIGINT/SIGTERM handler: the
 * run finishes its step, writes a checkpoint and the logs, and train_run
 * returns 128 + the signal. */
extern volatile sig_atomic_t train_stop_signal;

/* Draws the heatmaps when the step calls for them (step 0, every
 * heatmap_every, the end; rank 0 only); -1 with a message on a write failure. */
int train_observe(Trainer *t, Error *err);

void train_free(Trainer *t);

/* The config's data: the corpus at data.path, or the task's generator. */
int train_data_open(Corpus *corpus, const Config *c, Error *err);


#endif
