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

ModelShape train_model_shape(const Config *c, int V) {
    ModelShape s = {.V = V, .L = c->n_layer, .NH = c->n_head, .C = c->n_embd,
                    .maxT = c->block_size, .bias = c->bias,
                    .tie_embeddings = c->tie_embeddings, .qk_tied = c->qk == QK_TIED};
    return s;
}

int train_check_memory(const ModelShape *s, int B, Error *err) {
    double need = (double)model_memory_bytes(s, B);
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    /* leave room for the OS and the rest of the process */
    if (need > 0.8 * have)
        return error_set(err,
                         "model needs %.2f GiB for parameters, gradients, Adam state and "
                         "activations (batch_size %d, block_size %d); this machine has %.2f GiB",
                         need / 1073741824.0, B, s->maxT, have / 1073741824.0);
    return 0;
}


static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 1;
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    closedir(d);
    return empty;
}

/* The run folder: created fresh, or refused when it holds an earlier run
 * (unless run.overwrite, which removes a qkscope run folder first). */
static int run_dir_prepare(Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", c->out_dir, c->name);
    struct stat st;
    if (stat(t->run_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return error_set(err, "%s: exists and is not a folder (run.name / run.out_dir)",
                             t->run_dir);
        if (!dir_is_empty(t->run_dir)) {
            char marker[CONFIG_STR + 300];
            snprintf(marker, sizeof marker, "%s/config.ini", t->run_dir);
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
            dir_remove(t->run_dir);
        }
    }
    return dir_create(t->run_dir, err);
}

int train_check_compatible(const Checkpoint *ck, const Config *c, const Corpus *corpus,
                           Error *err) {
    const Config *k = &ck->cfg;
    const struct {
        const char *key;
        int ckpt, now;
    } keys[] = {
        {"n_layer", k->n_layer, c->n_layer}, {"n_head", k->n_head, c->n_head},
        {"n_embd", k->n_embd, c->n_embd}, {"block_size", k->block_size, c->block_size},
        {"bias", k->bias, c->bias}, {"tie_embeddings", k->tie_embeddings, c->tie_embeddings},
        {"qk", (int)k->qk, (int)c->qk},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].ckpt != keys[i].now)
            return error_set(err, "%s: model shape differs from the config: [model] %s is %d in "
                                  "the checkpoint, %d in the config",
                             ck->path, keys[i].key, keys[i].ckpt, keys[i].now);
    if (ck->V != corpus->V ||
        memcmp(ck->vocab, corpus->vocab, (size_t)ck->V * sizeof(uint32_t)) != 0)
        return error_set(err, "%s: vocabulary (%d characters) differs from that of %s (%d characters)",
                         ck->path, ck->V, c->data_path, corpus->V);
    return 0;
}

/* The config as config.ini and checkpoints record it: it describes the run,
 * not how this process was started. */
static Config config_record(const Config *c) {
    Config r = *c;
    r.resume = r.overwrite = 0;
    return r;
}

static void run_path(char *out, size_t n, const Trainer *t, const char *rel) {
    snprintf(out, n, "%s/%s", t->run_dir, rel);
}

static const char *const base_metric_cols[] = {"step", "lr", "loss", "grad_norm", "clip_scale",
                                               "ms", "tokens_per_s"};
static const char *const eval_cols[] = {"step", "train_loss", "val_loss"};
#define N_BASE_METRIC_COLS 7
#define N_EVAL_COLS 3

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
 * first block_size characters of the validation split. */
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
        memcpy(tok, cp->tokens + cp->n_train, n * sizeof(int));
    }
    uint32_t *chars = xmalloc(n * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) chars[i] = cp->vocab[tok[i]];
    ModelShape s = train_model_shape(c, cp->V);
    qk_watch_create(&t->watch, &s, tok, chars, (int)n, c->steps);
    free(tok);
    free(chars);
    return 0;
}

int train_setup(Trainer *t, const Config *cfg, Error *err) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->resumed_from = -1;
    t->qk_logging = 1;
    t->last_train = t->last_val = NAN;
    t->last_eval_step = -1;
    const Config *c = &t->cfg;
    if (corpus_load(&t->corpus, c->data_path, c->val_fraction, c->block_size, err) != 0)
        return -1;
    ModelShape s = train_model_shape(c, t->corpus.V);
    if (train_check_memory(&s, c->batch_size, err) != 0) return -1;
    if (probe_prepare(t, err) != 0) return -1;

    /* Every check on the input comes before the first write. */
    Checkpoint ck;
    int have_ck = 0;
    char path[CONFIG_STR + 300];
    if (c->resume) {
        snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", c->out_dir, c->name);
        run_path(path, sizeof path, t, "ckpt/latest.safetensors");
        if (access(path, F_OK) != 0)
            return error_set(err, "%s: no checkpoint to resume from (run.resume=true needs a run "
                                  "that saved one)", path);
        if (checkpoint_read(&ck, path, err) != 0) return -1;
        have_ck = 1;
        /* without its AdamW moments, or past the end, a resumed run could not
         * be the one that was interrupted */
        int bad = !ck.has_optim
                      ? error_set(err, "%s: weights only, no AdamW state: cannot resume from it; "
                                       "start a new run with train.init_from", path)
                  : ck.state.step > c->steps
                      ? error_set(err, "%s: saved at step %d, past train.steps = %d: cannot "
                                       "resume from it", path, ck.state.step, c->steps)
                      : 0;
        if (bad) {
            checkpoint_free(&ck);
            return -1;
        }
    } else if (c->init_from[0]) {
        if (checkpoint_read(&ck, c->init_from, err) != 0) return -1;
        have_ck = 1;
    }
    if (have_ck && train_check_compatible(&ck, c, &t->corpus, err) != 0) {
        checkpoint_free(&ck);
        return -1;
    }
    if (!c->resume && run_dir_prepare(t, err) != 0) {
        if (have_ck) checkpoint_free(&ck);
        return -1;
    }

#ifdef _OPENMP
    if (c->threads > 0) omp_set_num_threads(c->threads);
#endif
    model_create(&t->model, &s, c->batch_size);
    if (c->resume) {
        checkpoint_to_model(&ck, &t->model, 1);
        t->step = t->resumed_from = ck.state.step;
        t->batch_rng = ck.state.batch_rng;
        t->last_train = ck.state.train_loss;
        t->last_val = ck.state.val_loss;
        t->last_eval_step = ck.state.eval_step;
    } else {
        Rng init_rng;
        rng_seed(&init_rng, c->seed);
        model_init_params(&t->model, &init_rng, c->qk_init == QK_INIT_SYMMETRIC);
        if (have_ck) checkpoint_to_model(&ck, &t->model, 0); /* weights only */
        /* batches use their own stream so init changes never shift the data order */
        rng_seed(&t->batch_rng, c->seed ^ 0x9e3779b97f4a7c15ull);
    }
    if (have_ck) checkpoint_free(&ck);
    t->opt = (OptimConfig){.lr = c->lr, .min_lr = c->min_lr, .warmup_steps = c->warmup_steps,
                           .steps = c->steps, .beta1 = c->beta1, .beta2 = c->beta2,
                           .eps = 1e-8, .weight_decay = c->weight_decay};
    size_t bt = (size_t)c->batch_size * c->block_size;
    t->inputs = xmalloc(bt * sizeof(int));
    t->targets = xmalloc(bt * sizeof(int));

    qk_norms_create(&t->qk, &s);
    t->heads = xcalloc((size_t)s.L * s.NH, sizeof(QkHeadEval));
    metric_cols_build(t);
    const char *const *mcols = (const char *const *)t->metric_cols;
    struct {
        CsvLog *log;
        const char *file;
        const char *const *cols;
        int ncols;
    } logs[] = {{&t->metrics, "metrics.csv", mcols, t->n_metric_cols},
                {&t->evals, "eval.csv", eval_cols, N_EVAL_COLS},
                {&t->qklog, "qk.csv", qk_csv_columns, QK_CSV_NCOLS},
                {&t->qkeval, "qk_eval.csv", qk_eval_columns, QK_EVAL_NCOLS}};
    size_t nlogs = sizeof logs / sizeof logs[0];
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
        report_probe_write(t->run_dir, t->watch.probe_chars, t->watch.T, err) != 0)
        return -1;
    run_path(path, sizeof path, t, "config.ini");
    FILE *f = fopen(path, "w");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    Config rec = config_record(c);
    config_write(&rec, f);
    if (fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
    progress_init(&t->progress, stdout);
    return 0;
}


static void train_eval(Trainer *t) {
    const Config *c = &t->cfg;
    int count = c->eval_batches * c->batch_size;
    double tr = model_eval_windows(&t->model, &t->corpus, 0, count, c->batch_size, t->inputs,
                                 t->targets, NULL, NULL);
    double va = model_eval_windows(&t->model, &t->corpus, 1, count, c->batch_size, t->inputs,
                                 t->targets, NULL, NULL);
    t->last_train = tr;
    t->last_val = va;
    t->last_eval_step = t->step;
    csvlog_int(&t->evals, t->step);
    csvlog_num(&t->evals, tr);
    csvlog_num(&t->evals, va);
    csvlog_end_row(&t->evals);
    csvlog_flush(&t->evals);
    csvlog_flush(&t->metrics);
    csvlog_flush(&t->qklog);
    char line[256], qkinfo[96] = "";
    if (c->swap_batches > 0) {
        double swap_all = qk_eval_heads(&t->model, &t->corpus, c->swap_batches * c->batch_size,
                                        c->batch_size, t->inputs, t->targets, t->heads, NULL);
        qk_eval_csv_write(&t->qkeval, t->step, t->heads, c->n_layer, c->n_head, swap_all);
        double sym = 0;
        for (int i = 0; i < c->n_layer * c->n_head; i++) sym += t->heads[i].symmetry;
        snprintf(qkinfo, sizeof qkinfo, " | mean symmetry %.3f | swap-all delta %+.3f",
                 sym / (c->n_layer * c->n_head), swap_all);
    }
    csvlog_flush(&t->qkeval);
    snprintf(line, sizeof line, "step %d/%d | eval: train loss %.4f | val loss %.4f%s", t->step,
             c->steps, tr, va, qkinfo);
    progress_show(&t->progress, line, 1);
}

volatile sig_atomic_t train_stop_signal;

int train_step(Trainer *t, Error *err) {
    const Config *c = &t->cfg;
    int B = c->batch_size, T = c->block_size;
    double *ph = t->phase_seconds, t0 = time_now(), t1, t2, t3, tq = 0;
    double lr = optim_lr(&t->opt, t->step);
    batch_sample_train(&t->corpus, &t->batch_rng, B, T, t->inputs, t->targets);
    real loss = model_forward(&t->model, t->inputs, t->targets, B, T);
    t1 = time_now();
    model_backward(&t->model);
    t2 = time_now();
    if (t->qk_logging) qk_norms_measure_grads(&t->qk, &t->model);
    t3 = time_now();
    double norm = model_grad_norm(&t->model);
    if (!isfinite(loss) || !isfinite(norm)) {
        /* stop before the update: the weights, and so every checkpoint, stay finite */
        char where[256] = "no gradient tensor";
        model_find_nonfinite(&t->model, t->model.grads, where, sizeof where);
        return error_set(err, "step %d: non-finite %s (loss %g, gradient norm %g); first "
                              "non-finite gradient: %s; the last checkpoint is intact",
                         t->step + 1, isfinite(loss) ? "gradient" : "loss", (double)loss, norm, where);
    }
    double scale = optim_clip_scale(norm, c->grad_clip);
    optim_adamw_update(&t->model, &t->opt, lr, t->step + 1, scale);
    double t4 = time_now();
    if (t->qk_logging) qk_norms_measure_update(&t->qk, &t->model);
    t->step++;
    double t5 = time_now(), dt = t5 - t0;
    t->train_seconds += dt;
    if (t->qk_logging) {
        qk_watch_record(&t->watch, &t->qk, t->step);
        qk_csv_write_step(&t->qklog, &t->qk, t->step);
        tq = time_now() - t5;
    }
    ph[PHASE_FORWARD] += t1 - t0;
    ph[PHASE_BACKWARD] += t2 - t1;
    ph[PHASE_OPTIMIZER] += t4 - t3;
    ph[PHASE_QK_LOGGING] += (t3 - t2) + (t5 - t4) + tq;

    csvlog_int(&t->metrics, t->step);
    csvlog_num(&t->metrics, lr);
    csvlog_num(&t->metrics, loss);
    csvlog_num(&t->metrics, norm);
    csvlog_num(&t->metrics, scale);
    csvlog_num(&t->metrics, dt * 1e3);
    csvlog_num(&t->metrics, (double)B * T / dt);
    for (int l = 0; l < c->n_layer; l++)
        for (int k = 0; k < QK_NQ; k++) csvlog_num(&t->metrics, qk_norms_get(&t->qk, k, l, -1));
    csvlog_end_row(&t->metrics);

    if (t->step % c->log_every == 0 || t->step == c->steps) {
        double tps = (double)B * T * t->step / t->train_seconds;
        double eta = (double)(c->steps - t->step) * t->train_seconds / t->step;
        char line[256], val[32] = "";
        if (!isnan(t->last_val)) snprintf(val, sizeof val, " | val %.4f", t->last_val);
        snprintf(line, sizeof line, "step %d/%d | loss %.4f%s | lr %.2e | %.0f tok/s | ETA %.0fs",
                 t->step, c->steps, (double)loss, val, lr, tps, eta);
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
    csvlog_flush(&t->metrics);
    csvlog_flush(&t->qklog);
    csvlog_flush(&t->evals);
    csvlog_flush(&t->qkeval);
    TrainState st = {.step = t->step, .batch_rng = t->batch_rng, .train_loss = t->last_train,
                     .val_loss = t->last_val, .eval_step = t->last_eval_step};
    Config rec = config_record(c);
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
    csvlog_close(&t->metrics);
    csvlog_close(&t->evals);
    csvlog_close(&t->qklog);
    csvlog_close(&t->qkeval);
}

/* Heatmaps at step 0, every heatmap_every steps and at the end of training
 * (not at an interruption, so a resumed run draws the same set); timed apart
 * from the steps. */
int train_observe(Trainer *t, Error *err) {
    int every = t->cfg.heatmap_every;
    if (every <= 0 || !(t->step % every == 0 || t->step == t->cfg.steps)) return 0;
    double t0 = time_now();
    int rc = qk_watch_snapshot(&t->watch, &t->model, t->run_dir, t->step, err);
    t->observe_seconds += time_now() - t0;
    return rc;
}

/* index.html, rewritten at each eval and at the end; a failure only warns:
 * the page is a view of the run, not part of it. */
static void train_report(Trainer *t) {
    Error err;
    if (report_write(t->run_dir, NULL, &err) != 0)
        fprintf(stderr, "qkscope: warning: report page not written: %s\n", err.msg);
}

int train_run(Trainer *t) {
    const Config *c = &t->cfg;
    Error err;
    printf("qkscope: %s: %zu parameters (L%d H%d C%d T%d, V%d), %zu train / %zu val characters\n",
           t->run_dir, t->model.n_params, c->n_layer, c->n_head, c->n_embd, c->block_size,
           t->corpus.V, t->corpus.n_train, t->corpus.n - t->corpus.n_train);
    if (t->resumed_from >= 0) printf("qkscope: resuming at step %d\n", t->resumed_from);
    double wall0 = time_now();
    int last = c->stop_after > 0 && c->stop_after < c->steps ? c->stop_after : c->steps;
    if (t->resumed_from < 0) {
        train_eval(t);
        if (train_observe(t, &err) != 0) goto failed;
    }
    while (t->step < last) {
        if (train_step(t, &err) != 0) goto failed;
        int end = t->step == last || train_stop_signal;
        if (t->step % c->eval_every == 0 || t->step == c->steps) train_eval(t);
        if (train_observe(t, &err) != 0) goto failed;
        if ((c->checkpoint_every > 0 && t->step % c->checkpoint_every == 0) || end)
            if (train_checkpoint(t, &err) != 0) goto failed;
        if (t->step % c->eval_every == 0) train_report(t);
        if (train_stop_signal) break;
    }
    train_finish_logs(t);
    train_report(t);
    double tokens = (double)(t->step - (t->resumed_from > 0 ? t->resumed_from : 0)) *
                    c->batch_size * c->block_size;
    if (train_stop_signal) {
        printf("\nqkscope: interrupted (%s) after step %d of %d; checkpoint %s/ckpt/step_%06d.safetensors;"
               " continue with:\n  ./train %s/config.ini run.resume=true\n",
               train_stop_signal == SIGTERM ? "SIGTERM" : "SIGINT", t->step, c->steps, t->run_dir,
               t->step, t->run_dir);
        return 128 + train_stop_signal;
    }
    if (t->step < c->steps)
        printf("qkscope: stopped after step %d of %d (train.stop_after); continue with:\n"
               "  ./train %s/config.ini run.resume=true\n",
               t->step, c->steps, t->run_dir);
    else
        printf("qkscope: done: %d steps in %.1f s (%.1f s training, %.0f tokens/s), val loss %.4f\n",
               t->step, time_now() - wall0, t->train_seconds,
               t->train_seconds > 0 ? tokens / t->train_seconds : 0.0, t->last_val);
    return 0;
failed:
    train_finish_logs(t);
    fprintf(stderr, "qkscope: %s\n", err.msg);
    return 1;
}

void train_free(Trainer *t) {
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
