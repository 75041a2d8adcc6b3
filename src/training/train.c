#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "report.h"
#include "roles.h"
#include "roles_lm.h"


/* An entry of a run folder that belongs to the run: not ".", "..", nor the
 * lock file, which outlives every run held in the folder. */
static int run_entry(const struct dirent *e) {
    return strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, RUNLOCK_FILE);
}

/* Whether a folder holds nothing but its lock file. */
static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 1;
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));) empty = !run_entry(e);
    closedir(d);
    return empty;
}

/* Removes everything in a folder but its lock file, which stays held. */
static void dir_clear(const char *path) {
    DIR *d = opendir(path);
    if (!d) die("cannot open %s: %s", path, strerror(errno));
    char sub[CONFIG_STR + 600];
    for (struct dirent *e; (e = readdir(d));) {
        if (!run_entry(e)) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        dir_remove(sub);
    }
    closedir(d);
}

/* The run folder, rank 0 only: its lock taken (creating the folder for a new
 * run), then, for a new run, refused when it holds an earlier run (unless
 * run.overwrite, which empties a qkscope run folder first). The lock comes
 * before anything is looked at or written, so two writers never both pass. */
static int run_dir_prepare(Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", c->out_dir, c->name);
    struct stat st;
    int exists = stat(t->run_dir, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode))
        return error_set(err, "%s: exists and is not a folder (run.name / run.out_dir)",
                         t->run_dir);
    char marker[CONFIG_STR + 300], lockfile[CONFIG_STR + 300];
    snprintf(marker, sizeof marker, "%s/config.ini", t->run_dir);
    snprintf(lockfile, sizeof lockfile, "%s/%s", t->run_dir, RUNLOCK_FILE);
    /* a folder that is no run gets no lock file either */
    int foreign = exists && !dir_is_empty(t->run_dir) && access(marker, F_OK) != 0 &&
                  access(lockfile, F_OK) != 0;
    if (!foreign && runlock_acquire(&t->lock, t->run_dir, !c->resume, err) != 0) return -1;
    if (c->resume) return 0;
    if (exists) {
        if (!dir_is_empty(t->run_dir)) {
            if (!c->overwrite)
                return error_set(err,
                                 "%s: run folder already holds a run; set run.overwrite=true to "
                                 "replace it, or choose another run.name",
                                 t->run_dir);
            if (stat(marker, &st) != 0)
                return error_set(err,
                                 "%s: not a qkscope run folder (no config.ini); refusing to "
                                 "overwrite it",
                                 t->run_dir);
            dir_clear(t->run_dir);
        }
    }
    return 0;
}

int train_data_open(Corpus *corpus, const Config *c, Error *err) {
    if (c->task.kind == TASK_NONE)
        return corpus_load(corpus, c->data_path, c->val_fraction, c->block_size, err);
    corpus_from_task(corpus, &c->task, c->block_size);
    return 0;
}

/* The config as config.ini and checkpoints record it: it describes the run,
 * not how this process was started. A run of N ranks with batch_size B is
 * the run of one process with batch N*B, so that is the batch it records:
 * config.ini replays it in one process and `qkscope eval` finds its eval
 * windows. */
static Config config_record(const Config *c, int ranks) {
    Config r = *c;
    r.resume = r.overwrite = 0;
    r.batch_size *= ranks;
    return r;
}

static void run_path(char *out, size_t n, const Trainer *t, const char *rel) {
    snprintf(out, n, "%s/%s", t->run_dir, rel);
}

static const char *const base_metric_cols[] = {"step", "lr", "loss", "grad_norm", "clip_scale",
                                               "ms", "tokens_per_s"};
static const char *const eval_cols[] = {"step", "train_loss", "val_loss", "train_acc", "val_acc"};
static const char *const roles_cols[] = {"step", "layer", "head", "target_attn", "prev_attn",
                                         "cf_q_cur", "cf_q_prev", "cf_k_cur", "cf_k_prev",
                                         "q_cur", "q_prev", "k_cur", "k_prev", "prev_attn_j"};
#define N_ROLES_COLS 14
/* A corpus run's roles_eval.csv: roles_lm's figures on the repeated
 * validation segments, the run-level losses repeated on every head's row
 * so that each row reads alone. */
static const char *const roles_lm_cols[] = {"step", "layer", "head", "prev_attn",
                                            "induction_attn", "duplicate_attn", "sink_attn",
                                            "loss_first", "loss_second"};
#define N_ROLES_LM_COLS 9
#define N_BASE_METRIC_COLS 7
#define N_EVAL_COLS 5

/* metrics.csv columns: the base ones, then per layer l the totals of the
 * Q/K quantities as "<quantity>_L<l>". */
static void metric_cols_build(Trainer *t) {
    int L = t->cfg.n_layer;
    t->n_metric_cols = N_BASE_METRIC_COLS + QK_NQ * L;
    t->metric_cols = xmalloc((size_t)t->n_metric_cols * sizeof(char *));
    for (int i = 0; i < N_BASE_METRIC_COLS; i++) {
        t->metric_cols[i] = xmalloc(strlen(base_metric_cols[i]) + 1);
        strcpy(t->metric_cols[i], base_metric_cols[i]);
    }
    for (int l = 0; l < L; l++)
        for (int k = 0; k < QK_NQ; k++) {
            char *name = xmalloc(32);
            snprintf(name, 32, "%s_L%d", qk_quantity_names[k], l);
            t->metric_cols[N_BASE_METRIC_COLS + l * QK_NQ + k] = name;
        }
}

/* The probe for the heatmaps: log.probe cut to block_size characters, or the
 * first block_size characters of the validation split (of a task: its first
 * validation record, padded to block_size). */
static int probe_prepare(Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    const Corpus *cp = &t->corpus;
    int *tok;
    size_t n;
    if (c->probe[0]) {
        if (text_tokenize(cp->vocab, cp->V, "[log] probe", (const unsigned char *)c->probe,
                          strlen(c->probe), &tok, &n, err))
            return -1;
        if (n < 2) {
            free(tok);
            return error_set(err, "[log] probe: %zu character(s), expected at least 2", n);
        }
        if (n > (size_t)c->block_size) n = c->block_size;
    } else {
        n = (size_t)c->block_size;
        tok = xmalloc(n * sizeof(int));
        corpus_probe_tokens(cp, (int)n, tok);
    }
    uint32_t *chars = xmalloc(n * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) chars[i] = cp->vocab[tok[i]];
    ModelShape s = config_model_shape(c, cp->V);
    qk_watch_create(&t->watch, &s, tok, chars, (int)n, c->steps);
    free(tok);
    free(chars);
    return 0;
}

/* A corpus run's roles sequences: log.roles_records validation segments of
 * block_size / 2 characters, each followed by its copy (roles_lm.h), the
 * val set alone: the random set would double the cost. */
static RolesLmSpec train_roles_lm_spec(const Config *c) {
    return (RolesLmSpec){.records = c->roles_records, .segment = c->block_size / 2,
                         .val_only = 1};
}

/* A corpus run's roles log needs segments of 2 characters or more, and
 * distinct ones: the segments start at evenly spaced offsets of the
 * validation split, n_val - S of them distinct. */
static int train_roles_lm_check(const Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    if (c->task.kind != TASK_NONE || c->roles_records <= 0) return 0;
    RolesLmSpec spec = train_roles_lm_spec(c);
    if (spec.segment < 2)
        return error_set(err, "[log] roles_records = %d: a corpus run's roles measures repeat "
                              "a segment of block_size / 2 characters, at least 2, so they need "
                              "block_size >= 4 (it is %d); set log.roles_records=0",
                         c->roles_records, c->block_size);
    size_t n_val = t->corpus.n - t->corpus.n_train, limit = n_val - (size_t)spec.segment;
    if ((size_t)c->roles_records > limit)
        return error_set(err, "[log] roles_records = %d: the validation split (%zu characters) "
                              "holds %zu distinct segments of block_size / 2 = %d characters; at "
                              "most %zu", c->roles_records, n_val, limit, spec.segment, limit);
    return 0;
}

/* The checks of train_setup, before any collective: corpus, memory, probe,
 * and on rank 0 the checkpoint to start from and the run folder. */
static int setup_inputs(Trainer *t, Checkpoint *ck, int *have_ck, Error *err) {
    const Config *c = &t->cfg;
    if (train_data_open(&t->corpus, c, err) != 0) return -1;
    ModelShape s = config_model_shape(c, t->corpus.V);
    if (model_check_memory(&s, c->batch_size, err) != 0) return -1;
    if (probe_prepare(t, err) != 0) return -1;
    if (train_roles_lm_check(t, err) != 0) return -1;
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", c->out_dir, c->name);
    if (t->rank != 0) return 0;

    /* Every check on the input comes before the first write. */
    char path[CONFIG_STR + 300];
    if (c->resume) {
        /* a run being written is refused as such, whatever it holds yet */
        struct stat st;
        if (stat(t->run_dir, &st) == 0 && run_dir_prepare(t, err) != 0) return -1;
        run_path(path, sizeof path, t, "ckpt/latest.safetensors");
        if (access(path, F_OK) != 0)
            return error_set(err, "%s: no checkpoint to resume from (run.resume=true needs a run "
                                  "that saved one)", path);
        if (checkpoint_read(ck, path, err) != 0) return -1;
        *have_ck = 1;
        /* without its AdamW moments, or past the end, a resumed run could not
         * be the one that was interrupted */
        if (!ck->has_optim)
            return error_set(err, "%s: weights only, no AdamW state: cannot resume from it; "
                                  "start a new run with train.init_from", path);
        if (ck->state.step > c->steps)
            return error_set(err, "%s: saved at step %d, past train.steps = %d: cannot resume "
                                  "from it", path, ck->state.step, c->steps);
    } else if (c->init_from[0]) {
        if (checkpoint_read(ck, c->init_from, err) != 0) return -1;
        *have_ck = 1;
    }
    if (*have_ck && checkpoint_check_compatible(ck, c, &t->corpus, err) != 0) return -1;
    /* a resumed run continues the same records; init_from may change them (a
     * curriculum), as long as the vocabulary stays */
    char key[64], was[64], now[64];
    if (c->resume && config_task_differs(&ck->cfg, c, key, was, now, sizeof key))
        return error_set(err, "%s: cannot resume with other task parameters: %s is %s in the "
                              "checkpoint, %s in the config",
                         ck->path, key, was, now);
    /* the lock, before any write (a resumed run's is taken) */
    return c->resume ? 0 : run_dir_prepare(t, err);
}

/* A run with log.roles_records keeps roles_eval.csv. */
static int train_roles_logged(const Trainer *t) {
    return t->cfg.roles_records > 0;
}

/* One row of roles_eval.csv: the step, the head, its n figures. */
static void roles_row(Trainer *t, int layer, int head, const double *v, size_t n) {
    csvlog_int(&t->roleseval, t->step);
    csvlog_int(&t->roleseval, layer);
    csvlog_int(&t->roleseval, head);
    for (size_t k = 0; k < n; k++) csvlog_num(&t->roleseval, v[k]);
    csvlog_end_row(&t->roleseval);
}

/* A corpus run's roles_eval.csv rows: the cheap figures of roles_lm_measure
 * (full = 0), the same segments at every eval. */
static int train_roles_lm_eval(Trainer *t, Error *err) {
    RolesLm r;
    RolesLmSpec spec = train_roles_lm_spec(&t->cfg);
    if (roles_lm_measure(&r, &t->model, &t->corpus, &spec, 0, err)) return -1;
    const RolesLmSetResult *set = &r.set[ROLES_LM_VAL];
    for (int i = 0; i < r.L * r.NH; i++) {
        const RolesLmHead *h = &set->heads[i];
        const double v[] = {h->prev_attn,  h->induction_attn, h->duplicate_attn,
                            h->sink_attn,  set->loss_first,   set->loss_second};
        roles_row(t, h->layer, h->head, v, sizeof v / sizeof v[0]);
    }
    roles_lm_free(&r);
    csvlog_flush(&t->roleseval);
    return 0;
}

/* The roles measures of the eval (without the interventions) as roles_eval.csv
 * rows, on the same records at every eval. */
static int train_roles_eval(Trainer *t, Error *err) {
    if (t->cfg.task.kind == TASK_NONE) return train_roles_lm_eval(t, err);
    Roles r;
    if (roles_measure(&r, &t->model, &t->corpus, t->cfg.roles_records, 0, 0, err)) return -1;
    for (int i = 0; i < r.L * r.NH; i++) {
        const RolesHead *h = &r.heads[i];
        const double v[] = {h->target_attn, h->prev_attn, h->cf_q_cur, h->cf_q_prev, h->cf_k_cur,
                            h->cf_k_prev, h->q_cur, h->q_prev, h->k_cur, h->k_prev,
                            h->prev_attn_j};
        roles_row(t, h->layer, h->head, v, sizeof v / sizeof v[0]);
    }
    roles_free(&r);
    csvlog_flush(&t->roleseval);
    return 0;
}

/* The files of a run, rank 0 only: the logs (created, or trimmed to the
 * checkpoint on resume), the heatmap history, the probe text, config.ini. */
static int setup_outputs(Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    char path[CONFIG_STR + 300];
    const char *const *mcols = (const char *const *)t->metric_cols;
    struct {
        CsvLog *log;
        const char *file;
        const char *const *cols;
        int ncols;
    } logs[] = {{&t->metrics, "metrics.csv", mcols, t->n_metric_cols},
                {&t->evals, "eval.csv", eval_cols, N_EVAL_COLS},
                {&t->qklog, "qk.csv", qk_csv_columns, QK_CSV_NCOLS},
                {&t->qkeval, "qk_eval.csv", qk_eval_columns, QK_EVAL_NCOLS},
                {&t->roleseval, "roles_eval.csv", roles_cols, N_ROLES_COLS}};
    if (c->task.kind == TASK_NONE) { /* roles_eval.csv, the last log */
        logs[4].cols = roles_lm_cols;
        logs[4].ncols = N_ROLES_LM_COLS;
    }
    size_t nlogs = sizeof logs / sizeof logs[0] - (train_roles_logged(t) ? 0 : 1);
    /* a run started without the roles log (log.roles_records=0, or a corpus
     * run of a qkscope that logged none) has no rows to continue from */
    run_path(path, sizeof path, t, "roles_eval.csv");
    if (c->resume && train_roles_logged(t) && access(path, F_OK) != 0)
        return error_set(err, "%s: no such log: the run was started without the roles log; "
                              "resume it with log.roles_records=0", path);
    for (size_t i = 0; i < nlogs; i++) {
        run_path(path, sizeof path, t, logs[i].file);
        if (!c->resume) {
            csvlog_open(logs[i].log, path, logs[i].cols, logs[i].ncols);
        } else if (csvlog_resume_prepare(logs[i].log, path, logs[i].cols, logs[i].ncols, t->step,
                                         err) != 0) {
            while (i-- > 0) csvlog_resume_cancel(logs[i].log);
            return -1;
        }
    }
    /* every log can be resumed: only now is one of them changed */
    for (size_t i = 0; c->resume && i < nlogs; i++) csvlog_resume_commit(logs[i].log);
    if (c->resume && qk_watch_reload(&t->watch, t->run_dir, t->step, err) != 0) return -1;
    /* the probe's text for the report page's attention viewer */
    if (c->heatmap_every > 0 &&
        qk_watch_write_probe(&t->watch, t->run_dir, err) != 0)
        return -1;
    run_path(path, sizeof path, t, "config.ini");
    Config rec = config_record(c, t->ranks);
    char *text = config_to_string(&rec);
    int rc = file_write_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

/* Rank 0's weights, optimizer state, step and sampler to the other ranks:
 * they start from the same state whether it was initialised or read. */
static void setup_share_state(Trainer *t) {
    Model *m = &t->model;
    dist_broadcast(m->params, m->n_params);
    dist_broadcast(m->adam_m, m->n_params);
    dist_broadcast(m->adam_v, m->n_params);
    struct {
        int step, resumed_from, last_eval_step;
        double last_train, last_val;
        Rng batch_rng;
    } st = {t->step, t->resumed_from, t->last_eval_step, t->last_train, t->last_val, t->batch_rng};
    dist_broadcast_bytes(&st, sizeof st);
    t->step = st.step;
    t->resumed_from = st.resumed_from;
    t->last_eval_step = st.last_eval_step;
    t->last_train = st.last_train;
    t->last_val = st.last_val;
    t->batch_rng = st.batch_rng;
}

int train_setup(Trainer *t, const Config *cfg, Error *err) {
    /* the pictures' buffers go back to the system between heatmap sets
     * (docs/performance.md, Memory) */
    memory_init();
    memset(t, 0, sizeof *t);
    t->lock.fd = -1;
    t->cfg = *cfg;
    t->resumed_from = -1;
    t->qk_logging = 1;
    t->last_train = t->last_val = t->last_val_acc = NAN;
    t->last_eval_step = -1;
    t->rank = dist_rank();
    t->ranks = dist_size();
    const Config *c = &t->cfg;
    Checkpoint ck;
    int have_ck = 0;
    int rc = setup_inputs(t, &ck, &have_ck, err);
    if (dist_any_failed(rc != 0, err)) {
        if (have_ck) checkpoint_free(&ck);
        return -1;
    }

#ifdef _OPENMP
    if (c->threads > 0) omp_set_num_threads(c->threads);
#endif
    ModelShape s = config_model_shape(c, t->corpus.V);
    model_create(&t->model, &s, c->batch_size);
    if (have_ck && c->resume) {
        checkpoint_to_model(&ck, &t->model, 1);
        t->step = t->resumed_from = ck.state.step;
        t->batch_rng = ck.state.batch_rng;
        t->last_train = ck.state.train_loss;
        t->last_val = ck.state.val_loss;
        t->last_eval_step = ck.state.eval_step;
    } else if (!c->resume) {
        Rng init_rng;
        rng_seed(&init_rng, c->seed);
        model_init_params(&t->model, &init_rng, c->init, c->qk_init == QK_INIT_SYMMETRIC);
        if (have_ck) checkpoint_to_model(&ck, &t->model, 0); /* weights only */
        /* batches use their own stream so init changes never shift the data order */
        rng_seed(&t->batch_rng, c->seed ^ 0x9e3779b97f4a7c15ull);
    }
    if (have_ck) checkpoint_free(&ck);
    setup_share_state(t);
    t->model.grad_shards = t->ranks;
    t->dist = dist_grads_create();
    if (t->dist) {
        t->model.grad_ready = dist_grads_ready;
        t->model.grad_ready_ctx = t->dist;
    }
    t->opt = (OptimConfig){.lr = c->lr, .min_lr = c->min_lr, .warmup_steps = c->warmup_steps,
                           .steps = c->steps, .beta1 = c->beta1, .beta2 = c->beta2,
                           .eps = 1e-8, .weight_decay = c->weight_decay};
    size_t bt = (size_t)c->batch_size * c->block_size;
    t->inputs = xmalloc(bt * sizeof(int));
    t->targets = xmalloc(bt * sizeof(int));

    qk_norms_create(&t->qk, &t->model);
    t->heads = xcalloc((size_t)s.L * s.NH, sizeof(QkHeadEval));
    metric_cols_build(t);
    rc = t->rank == 0 ? setup_outputs(t, err) : 0;
    if (dist_any_failed(rc != 0, err)) return -1;
    /* every check passed: the lock file names this trainer from now on (a
     * refused command leaves the folder as it found it) */
    if (t->rank == 0) runlock_announce(&t->lock, "train");
    progress_init(&t->progress, stdout);
    return 0;
}

/* Losses over eval_batches global batches of fixed windows per split (the
 * windows of a one-process run with the global batch): each rank evaluates
 * its share and the sums are added. The ranks then check that their weights
 * still agree. Rank 0 adds the Q/K analysis and writes the logs. */
static int train_eval(Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    double *out = t->outside_seconds, t0 = time_now();
    int B = c->batch_size, count = c->eval_batches * B * t->ranks;
    int first = (int)((long)count * t->rank / t->ranks);
    int n = (int)((long)count * (t->rank + 1) / t->ranks) - first;
    EvalSums sums[2];
    for (int val = 0; val < 2; val++)
        sums[val] = model_eval_range(&t->model, &t->corpus, val, first, n, count, B, t->inputs,
                                     t->targets, NULL, NULL, NULL);
    _Static_assert(sizeof(EvalSums) == 4 * sizeof(double), "EvalSums is four sums");
    dist_sum((double *)sums, 8);
    char what[64];
    snprintf(what, sizeof what, "weights at step %d", t->step);
    if (dist_check_agree(t->model.params, t->model.n_params * sizeof(real), what, err) != 0)
        return -1;
    double tr = sums[0].loss / sums[0].weight, va = sums[1].loss / sums[1].weight;
    t->last_train = tr;
    t->last_val = va;
    t->last_val_acc = sums[1].correct / sums[1].scored;
    /* the same sums on every rank: every rank stops at the same step */
    t->acc_held = c->stop_at_acc > 0 && t->last_val_acc >= c->stop_at_acc ? t->acc_held + 1 : 0;
    t->last_eval_step = t->step;
    double t1 = time_now();
    out[OUTSIDE_EVALS] += t1 - t0;
    if (t->rank != 0) return 0;
    csvlog_int(&t->evals, t->step);
    csvlog_num(&t->evals, tr);
    csvlog_num(&t->evals, va);
    csvlog_num(&t->evals, sums[0].correct / sums[0].scored);
    csvlog_num(&t->evals, t->last_val_acc);
    csvlog_end_row(&t->evals);
    csvlog_flush(&t->evals);
    csvlog_flush(&t->metrics);
    csvlog_flush(&t->qklog);
    char line[256], qkinfo[96] = "";
    if (c->swap_batches > 0) {
        double swap_all = qk_eval_heads(&t->model, &t->corpus, c->swap_batches * B * t->ranks, B,
                                        t->inputs, t->targets, t->heads, NULL);
        qk_eval_csv_write(&t->qkeval, t->step, t->heads, c->n_layer, c->n_head, swap_all);
        double sym = 0;
        for (int i = 0; i < c->n_layer * c->n_head; i++) sym += t->heads[i].symmetry;
        snprintf(qkinfo, sizeof qkinfo, " | mean symmetry %.3f | swap-all delta %+.3f",
                 sym / (c->n_layer * c->n_head), swap_all);
    }
    csvlog_flush(&t->qkeval);
    if (train_roles_logged(t) && train_roles_eval(t, err) != 0) return -1;
    out[OUTSIDE_ANALYSES] += time_now() - t1;
    snprintf(line, sizeof line, "step %d/%d | eval: train loss %.4f | val loss %.4f | val acc %.4f%s",
             t->step, c->steps, tr, va, t->last_val_acc, qkinfo);
    progress_show(&t->progress, line, 1);
    return 0;
}

volatile sig_atomic_t train_stop_signal;

int train_step(Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    int B = c->batch_size, T = c->block_size, root = t->rank == 0;
    double *ph = t->phase_seconds, t0 = time_now(), t1, t2, tq = 0;
    double lr = optim_lr(&t->opt, t->step);
    size_t scored = batch_sample_train_shard(&t->corpus, &t->batch_rng, B, T, t->rank, t->ranks,
                                             t->inputs, t->targets);
    if (c->repeat_fraction > 0)
        batch_insert_repeats(c->repeat_fraction, c->seed, (uint64_t)t->step, B, T, t->rank,
                             t->ranks, t->inputs, t->targets, NULL, NULL);
    /* a task's trailing pads: nothing to compute there (the logs count the
     * block's positions, as MFU does) */
    int kept = batch_trim(t->inputs, t->targets, B, T);
    double loss = model_forward(&t->model, t->inputs, t->targets, B, kept);
    int task = t->corpus.task.kind != TASK_NONE;
    /* a task's ranks score different numbers of targets: each divides by the
     * global count, so the gradients and losses add up to the global mean */
    if (task) {
        t->model.grad_count = scored;
        loss = t->model.loss_sum / (double)scored;
    }
    t1 = time_now();
    model_backward(&t->model);
    double tc = time_now();
    /* from here on every rank holds the same averaged gradient */
    dist_grads_finish(t->dist);
    dist_sum(&loss, 1);
    if (!task) loss /= t->ranks; /* equal batches: the global mean is the mean of the means */
    t2 = time_now();
    double norm = model_grad_norm(&t->model);
    if (!isfinite(loss) || !isfinite(norm)) {
        /* stop before the update: the weights, and so every checkpoint, stay finite */
        char where[256] = "no gradient tensor";
        model_find_nonfinite(&t->model, t->model.grads, where, sizeof where);
        return error_set(err, "step %d: non-finite %s (loss %g, gradient norm %g); first "
                              "non-finite gradient: %s; the last checkpoint is intact",
                         t->step + 1, isfinite(loss) ? "gradient" : "loss", loss, norm, where);
    }
    double scale = optim_clip_scale(norm, c->grad_clip);
    /* the per-head norms: rank 0's, the same on every rank */
    int qk_norms = t->qk_logging && root;
    double tb = time_now();
    if (qk_norms) qk_norms_before_update(&t->qk, &t->model);
    double t3 = time_now();
    optim_adamw_update(&t->model, &t->opt, lr, t->step + 1, scale);
    double t4 = time_now();
    if (qk_norms) qk_norms_after_update(&t->qk, &t->model);
    t->step++;
    double t5 = time_now(), dt = t5 - t0;
    t->train_seconds += dt;
    if (t->qk_logging && root) {
        qk_watch_record(&t->watch, &t->qk, t->step);
        qk_csv_write_step(&t->qklog, &t->qk, t->step);
        tq = time_now() - t5;
    }
    ph[PHASE_FORWARD] += t1 - t0;
    ph[PHASE_BACKWARD] += tc - t1;
    ph[PHASE_COMM] += t2 - tc;
    ph[PHASE_OPTIMIZER] += (tb - t2) + (t4 - t3);
    ph[PHASE_QK_LOGGING] += (t3 - tb) + (t5 - t4) + tq;
    if (!root) return 0;

    double tokens = (double)B * t->ranks * T;
    csvlog_int(&t->metrics, t->step);
    csvlog_num(&t->metrics, lr);
    csvlog_num(&t->metrics, loss);
    csvlog_num(&t->metrics, norm);
    csvlog_num(&t->metrics, scale);
    csvlog_num(&t->metrics, dt * 1e3);
    csvlog_num(&t->metrics, tokens / dt);
    for (int l = 0; l < c->n_layer; l++)
        for (int k = 0; k < QK_NQ; k++) csvlog_num(&t->metrics, qk_norms_get(&t->qk, k, l, -1));
    csvlog_end_row(&t->metrics);

    if (t->step % c->log_every == 0 || t->step == c->steps) {
        double tps = tokens * t->step / t->train_seconds;
        double eta = (double)(c->steps - t->step) * t->train_seconds / t->step;
        char line[256], val[32] = "";
        if (!isnan(t->last_val)) snprintf(val, sizeof val, " | val %.4f", t->last_val);
        snprintf(line, sizeof line, "step %d/%d | loss %.4f%s | lr %.2e | %.0f tok/s | ETA %.0fs",
                 t->step, c->steps, loss, val, lr, tps, eta);
        progress_show(&t->progress, line, 0);
    }
    return 0;
}

/* Numbers of the step_NNNNNN.safetensors files in dir, ascending. */
static int checkpoint_steps(const char *dir, int **out) {
    DIR *d = opendir(dir);
    int n = 0, cap = 16;
    *out = xmalloc((size_t)cap * sizeof(int));
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        int step, len = 0;
        if (sscanf(e->d_name, "step_%d.safetensors%n", &step, &len) == 1 &&
            e->d_name[len] == '\0') {
            if (n == cap) *out = realloc(*out, (size_t)(cap *= 2) * sizeof(int));
            CHECK(*out, "out of memory listing %s", dir);
            (*out)[n++] = step;
        }
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: a handful of files */
        for (int j = i; j > 0 && (*out)[j - 1] > (*out)[j]; j--) {
            int tmp = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = tmp;
        }
    return n;
}

/* fn on each of the run's four logs. */
static void train_logs_each(Trainer *t, void (*fn)(CsvLog *)) {
    CsvLog *logs[] = {&t->metrics, &t->evals, &t->qklog, &t->qkeval, &t->roleseval};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) fn(logs[i]);
}

/* Saves ckpt/step_NNNNNN.safetensors, points ckpt/latest.safetensors at it and
 * keeps the newest keep_checkpoints files (plus the final one at the end). */
static int train_checkpoint(Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    char dir[CONFIG_STR + 300], path[CONFIG_STR + 400], tmp[CONFIG_STR + 400];
    run_path(dir, sizeof dir, t, "ckpt");
    if (dir_create(dir, err) != 0) return -1;
    char name[64];
    snprintf(name, sizeof name, "step_%06d.safetensors", t->step);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char bad[256];
    if (model_find_nonfinite(&t->model, t->model.params, bad, sizeof bad))
        return error_set(err, "step %d: not saving a checkpoint with a non-finite weight: %s",
                         t->step, bad);
    /* the logs first: a checkpoint on disk promises every row up to its step
     * (a resume trims rows past it, but cannot make up missing ones) */
    train_logs_each(t, csvlog_flush);
    TrainState st = {.step = t->step, .batch_rng = t->batch_rng, .train_loss = t->last_train,
                     .val_loss = t->last_val, .eval_step = t->last_eval_step};
    Config rec = config_record(c, t->ranks);
    if (checkpoint_save(path, &t->model, &rec, t->corpus.vocab, t->corpus.V, &st, 1, err) != 0)
        return -1;
    /* the link is replaced atomically, like the checkpoint itself */
    snprintf(tmp, sizeof tmp, "%s/latest.safetensors.tmp", dir);
    remove(tmp);
    snprintf(path, sizeof path, "%s/latest.safetensors", dir);
    if (symlink(name, tmp) != 0 || rename(tmp, path) != 0)
        return error_set(err, "%s: cannot update link: %s", path, strerror(errno));

    int *steps, n = checkpoint_steps(dir, &steps);
    int keep = c->keep_checkpoints + (t->step == c->steps ? 1 : 0);
    for (int i = 0; i < n - keep; i++) {
        snprintf(path, sizeof path, "%s/step_%06d.safetensors", dir, steps[i]);
        remove(path);
    }
    free(steps);
    return 0;
}

static void train_finish_logs(Trainer *t) {
    train_logs_each(t, csvlog_close);
}

/* Heatmaps at step 0, every heatmap_every steps and at the end of training
 * (not at an interruption, so a resumed run draws the same set); timed apart
 * from the steps. */
int train_observe(Trainer *t, Error *err) {
    int every = t->cfg.heatmap_every;
    if (t->rank != 0 || every <= 0 ||
        !(t->step % every == 0 || t->step == t->cfg.steps || t->stopped_early))
        return 0;
    double t0 = time_now();
    int rc = qk_watch_snapshot(&t->watch, &t->model, t->run_dir, t->step, err);
    t->outside_seconds[OUTSIDE_HEATMAPS] += time_now() - t0;
    return rc;
}

/* A task run's evals can come many times a second, faster than anyone
 * reloads the page: an eval's page is skipped while the last one is younger
 * than this. */
#define REPORT_MIN_SECONDS 1.0

/* index.html, rewritten at an eval (at most every REPORT_MIN_SECONDS) and
 * always at the end; a failure only warns: the page is a view of the run,
 * not part of it. */
static void train_report(Trainer *t, int last) {
    Error err;
    double t0 = time_now();
    if (!last && t->report_at > 0 && t0 - t->report_at < REPORT_MIN_SECONDS) return;
    if (report_write(t->run_dir, NULL, &err) != 0)
        fprintf(stderr, "qkscope: warning: report page not written: %s\n", err.msg);
    t->report_at = time_now();
    t->outside_seconds[OUTSIDE_REPORT] += t->report_at - t0;
}

/* The files after a step: heatmaps when due, a checkpoint when due (or
 * `end`). Rank 0 writes them; every rank learns of a failure, so the job
 * stops together instead of waiting in the next step's allreduce. */
static int train_save(Trainer *t, int end, Error *err) {
    const Config *c = &t->cfg;
    int rc = train_observe(t, err);
    if (rc == 0 && t->rank == 0 &&
        ((c->checkpoint_every > 0 && t->step % c->checkpoint_every == 0) || end)) {
        double t0 = time_now();
        rc = train_checkpoint(t, err);
        t->outside_seconds[OUTSIDE_CHECKPOINTS] += time_now() - t0;
    }
    return dist_any_failed(rc != 0, err) ? -1 : 0;
}

int train_run(Trainer *t) {
    const Config *c = &t->cfg;
    int root = t->rank == 0;
    Error err;
    if (root) {
        printf("qkscope: %s: %zu parameters (L%d H%d C%d T%d, V%d), ", t->run_dir,
               t->model.n_params, c->n_layer, c->n_head, c->n_embd, c->block_size, t->corpus.V);
        if (t->corpus.task.kind != TASK_NONE)
            printf("task %s (records of up to %d characters)", task_name(c->task.kind),
                   task_record_max(&c->task));
        else
            printf("%zu train / %zu val characters", t->corpus.n_train,
                   t->corpus.n - t->corpus.n_train);
        if (t->ranks > 1)
            printf(", %d ranks x batch %d = global batch %d", t->ranks, c->batch_size,
                   t->ranks * c->batch_size);
        printf("\n");
        if (t->resumed_from >= 0) printf("qkscope: resuming at step %d\n", t->resumed_from);
    }
    double wall0 = time_now();
    int last = c->stop_after > 0 && c->stop_after < c->steps ? c->stop_after : c->steps;
    if (t->resumed_from < 0) {
        if (train_eval(t, &err) != 0) goto failed;
        if (train_save(t, 0, &err) != 0) goto failed;
    }
    while (t->step < last) {
        if (train_step(t, &err) != 0) goto failed;
        int end = t->step == last || train_stop_signal;
        if (t->step % c->eval_every == 0 || t->step == c->steps)
            if (train_eval(t, &err) != 0) goto failed;
        t->stopped_early = t->acc_held >= 2 && t->step < c->steps;
        end = end || t->stopped_early;
        if (train_save(t, end, &err) != 0) goto failed;
        /* the last page is written once the logs are closed, below */
        if (t->step % c->eval_every == 0 && root && !end) train_report(t, 0);
        if (train_stop_signal || t->stopped_early) break;
    }
    train_finish_logs(t);
    if (!root) return 0;
    /* no step follows: the page's tables take the activations' place */
    model_free_activations(&t->model);
    train_report(t, 1);
    double tokens = (double)(t->step - (t->resumed_from > 0 ? t->resumed_from : 0)) *
                    c->batch_size * t->ranks * c->block_size;
    if (train_stop_signal) {
        printf("\nqkscope: interrupted (%s) after step %d of %d; checkpoint %s/ckpt/step_%06d.safetensors;"
               " continue with:\n  ./train %s/config.ini run.resume=true\n",
               train_stop_signal == SIGTERM ? "SIGTERM" : "SIGINT", t->step, c->steps, t->run_dir,
               t->step, t->run_dir);
        return 128 + train_stop_signal;
    }
    char acc[96] = "";
    if (c->task.kind != TASK_NONE) snprintf(acc, sizeof acc, ", val acc %.4f", t->last_val_acc);
    char early[128] = "";
    if (t->stopped_early)
        snprintf(early, sizeof early, "; stopped early: val acc >= %g at two evals in a row "
                                      "(train.stop_at_acc)", c->stop_at_acc);
    if (t->step < c->steps && !t->stopped_early)
        printf("qkscope: stopped after step %d of %d (train.stop_after); continue with:\n"
               "  ./train %s/config.ini run.resume=true\n",
               t->step, c->steps, t->run_dir);
    else
    {
        const double *o = t->outside_seconds;
        printf("qkscope: done: %d steps in %.1f s (%.1f s training, %.0f tokens/s; evals %.1f s, "
               "Q/K analyses %.1f s, heatmaps %.1f s, report %.1f s, checkpoints %.1f s), "
               "val loss %.4f%s%s\n",
               t->step, time_now() - wall0, t->train_seconds,
               t->train_seconds > 0 ? tokens / t->train_seconds : 0.0, o[OUTSIDE_EVALS],
               o[OUTSIDE_ANALYSES], o[OUTSIDE_HEATMAPS], o[OUTSIDE_REPORT],
               o[OUTSIDE_CHECKPOINTS], t->last_val, acc, early);
    }
    return 0;
failed:
    train_finish_logs(t);
    /* failures are the same on every rank, or rank 0's alone: it reports */
    if (root && err.msg[0]) fprintf(stderr, "qkscope: %s\n", err.msg);
    return 1;
}

void train_free(Trainer *t) {
    runlock_release(&t->lock);
    dist_grads_free(t->dist);
    for (int i = 0; i < t->n_metric_cols; i++) free(t->metric_cols[i]);
    free(t->metric_cols);
    qk_norms_free(&t->qk);
    free(t->heads);
    qk_watch_free(&t->watch);
    model_free(&t->model);
    corpus_free(&t->corpus);
    free(t->inputs);
    free(t->targets);
}
