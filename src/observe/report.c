/* The HTML report of a run folder: the CSV logs are read by csvtable, the
 * charts drawn by svgplot, and the attention viewer is a little JavaScript
 * (report/page.js) over the heatmap PNGs the run already holds.
 * The page needs no server and no network: everything but the PNGs and the
 * checkpoint links is in the one file. */
#include "report.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "csvtable.h"
#include "data.h"
#include "heatmap.h"
#include "metrics.h"
#include "report_page.h"
#include "svgplot.h"

/* ---- files and paths ----------------------------------------------------- */

static char *path_join(const char *dir, const char *rel) {
    Buf b = {0};
    buf_puts(&b, dir);
    if (b.len == 0 || b.s[b.len - 1] != '/') buf_puts(&b, "/");
    buf_puts(&b, rel);
    return b.s;
}

static char *path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    Buf b = {0};
    if (!slash)
        buf_puts(&b, ".");
    else
        buf_add(&b, path, slash == path ? 1 : (size_t)(slash - path));
    return b.s;
}

/* The whole file, NUL-terminated, or NULL when it cannot be read. */
static char *file_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    Buf b = {0};
    char chunk[1 << 14];
    size_t n;
    buf_add(&b, "", 0);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_add(&b, chunk, n);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* The URL prefix ("" or ending in '/') from folder `from` to folder `to`,
 * through their real paths: relative, so the page keeps working when the
 * folders are opened elsewhere or moved together. */
static char *href_prefix(const char *from, const char *to, Error *err) {
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(from, a)) {
        error_set(err, "%s: cannot open folder: %s", from, strerror(errno));
        return NULL;
    }
    if (!realpath(to, b)) {
        error_set(err, "%s: cannot open folder: %s", to, strerror(errno));
        return NULL;
    }
    size_t k = 0; /* a[0..k) == b[0..k), both ending a path component at k */
    for (size_t i = 0;; i++) {
        if ((a[i] == '/' || !a[i]) && (b[i] == '/' || !b[i])) k = i;
        if (!a[i] || !b[i] || a[i] != b[i]) break;
    }
    Buf out = {0};
    buf_add(&out, "", 0);
    for (const char *p = a + k; *p; p++)
        if (*p == '/' && p[1]) buf_puts(&out, "../");
    const char *rest = b + k + (b[k] == '/');
    if (*rest) {
        buf_url(&out, rest);
        buf_puts(&out, "/");
    }
    return out.s;
}

/* Steps of the entries `step_<N><suffix>` of a folder, ascending (none when
 * the folder does not exist yet). */
static int step_entries(const char *dir, const char *suffix, int **out) {
    int n = 0, cap = 16;
    *out = xmalloc((size_t)cap * sizeof(int));
    DIR *d = opendir(dir);
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        int step, len = 0;
        if (sscanf(e->d_name, "step_%d%n", &step, &len) != 1 || step < 0 ||
            strcmp(e->d_name + len, suffix) != 0)
            continue;
        if (n == cap) {
            int *grown = realloc(*out, (size_t)(cap *= 2) * sizeof(int));
            CHECK(grown, "out of memory listing %s", dir);
            *out = grown;
        }
        (*out)[n++] = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: a few hundred entries at most */
        for (int j = i; j > 0 && (*out)[j - 1] > (*out)[j]; j--) {
            int t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return n;
}

/* Parameter count from a checkpoint's safetensors header (every tensor but
 * the AdamW moments), -1 when it cannot be read: the run folder records the
 * vocabulary size nowhere else. */
static long long ckpt_param_count(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    unsigned char len8[8];
    uint64_t hlen = 0;
    char *h = NULL;
    if (fread(len8, 1, 8, f) == 8) {
        for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
        if (hlen > 0 && hlen < (1u << 28)) h = xmalloc(hlen);
        if (h && fread(h, 1, hlen, f) != hlen) hlen = 0;
    }
    fclose(f);
    cJSON *j = h && hlen ? cJSON_ParseWithLength(h, hlen) : NULL;
    free(h);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return -1;
    }
    long long count = 0;
    cJSON *e, *dim;
    cJSON_ArrayForEach(e, j) {
        if (!strcmp(e->string, "__metadata__") || !strncmp(e->string, "optim.", 6)) continue;
        long long numel = 1;
        cJSON_ArrayForEach(dim, cJSON_GetObjectItemCaseSensitive(e, "shape")) numel *=
            (long long)dim->valuedouble;
        count += numel;
    }
    cJSON_Delete(j);
    return count;
}

/* ---- CSV logs ------------------------------------------------------------ */

enum { MT_STEP, MT_LR, MT_LOSS, MT_MS, MT_N };
static const char *const metrics_cols[MT_N] = {"step", "lr", "loss", "ms"};
enum { EV_STEP, EV_TRAIN, EV_VAL, EV_TRAIN_ACC, EV_VAL_ACC, EV_N };
static const char *const eval_cols[EV_N] = {"step", "train_loss", "val_loss", "train_acc",
                                            "val_acc"};
/* qk.csv and qk_eval.csv share their first three columns. */
enum { HD_STEP, HD_LAYER, HD_HEAD };
enum { QN_GQ = 3, QN_GK, QN_N };
static const char *const norm_cols[QN_N] = {"step", "layer", "head", "gq_norm", "gk_norm"};
enum { QE_SYM = 3, QE_DIR, QE_SWAP, QE_ENT, QE_N };
static const char *const heval_cols[QE_N] = {"step",       "layer",     "head",   "symmetry",
                                             "directionality", "swap_delta", "entropy"};

/* roles_eval.csv (task runs) and the panels drawn of it, per layer. */
enum { RO_TARGET = 3, RO_CF_Q_CUR, RO_CF_K_PREV, RO_K_PREV, RO_PREV, RO_N };
static const char *const roles_cols[RO_N] = {"step",     "layer",     "head",   "target_attn",
                                             "cf_q_cur", "cf_k_prev", "k_prev", "prev_attn_j"};
/* A chart per layer of one column of roles_eval.csv, a series per head. */
typedef struct {
    int col;
    const char *key, *title;
} HeadPanel;
static const HeadPanel roles_panels[] = {
    {RO_TARGET, "target_attn", "on the target"},
    {RO_CF_Q_CUR, "cf_q_cur", "query's token changed"},
    {RO_CF_K_PREV, "cf_k_prev", "key's prev. changed"},
    {RO_K_PREV, "k_prev", "prev. token in key"},
};
#define N_ROLES_PANELS (sizeof roles_panels / sizeof roles_panels[0])

/* A corpus run's roles_eval.csv (roles_lm's figures on repeated validation
 * segments, the losses repeated on every head's row) and its panels per
 * layer. */
enum { LR_PREV = 3, LR_IND, LR_FIRST, LR_SECOND, LR_N };
static const char *const lm_roles_cols[LR_N] = {"step",           "layer",      "head",
                                                "prev_attn",      "induction_attn",
                                                "loss_first",     "loss_second"};
static const HeadPanel lm_roles_panels[] = {
    {LR_PREV, "prev_attn", "on the previous token"},
    {LR_IND, "induction_attn", "on the induction target"},
};
#define N_LM_ROLES_PANELS (sizeof lm_roles_panels / sizeof lm_roles_panels[0])

/* The qk_eval.csv panels of a layer; ref: a dashed line at this value. */
static const struct {
    int col;
    const char *key, *title;
    double ref;
} eval_panels[] = {
    {QE_SYM, "symmetry", "symmetry s", 0},
    {QE_DIR, "directionality", "directionality d", 0},
    {QE_SWAP, "swap_delta", "swap delta (val loss)", 0},
    {QE_ENT, "entropy", "attention entropy", NAN},
};
#define N_PANELS (sizeof eval_panels / sizeof eval_panels[0])

/* Head index l * NH + h of a row of qk.csv or qk_eval.csv, -1 for rows of no
 * head of this shape (qk_eval.csv's all-heads row). */
static int head_of(const CsvTable *t, size_t row, int L, int NH) {
    double l = csvtable_at(t, row, HD_LAYER), h = csvtable_at(t, row, HD_HEAD);
    if (!(l >= 0 && l < L && h >= 0 && h < NH)) return -1;
    return (int)l * NH + (int)h;
}

/* Rows of head i: idx[start[i] .. start[i + 1]), in file order. */
typedef struct {
    size_t *start, *idx;
} Groups;

static void groups_build(Groups *g, const CsvTable *t, int L, int NH) {
    size_t nh = (size_t)L * NH;
    g->start = xcalloc(nh + 1, sizeof(size_t));
    g->idx = xmalloc(t->rows * sizeof(size_t));
    size_t *fill = xcalloc(nh, sizeof(size_t));
    for (size_t r = 0; r < t->rows; r++) {
        int i = head_of(t, r, L, NH);
        if (i >= 0) g->start[i + 1]++;
    }
    for (size_t i = 0; i < nh; i++) g->start[i + 1] += g->start[i];
    for (size_t r = 0; r < t->rows; r++) {
        int i = head_of(t, r, L, NH);
        if (i >= 0) g->idx[g->start[i] + fill[i]++] = r;
    }
    free(fill);
}

/* ---- formation: the jump and the roles that make it ---------------------- */

/* The Formation panel's series, in legend order; the first FE_N have an
 * event (formation.csv's rows), the gradient norms, per step, have none. */
enum { FS_ACC, FS_PREV, FS_TARGET, FS_CF_Q, FS_CF_K, FE_N, FS_GQ = FE_N, FS_GK, FS_N };
/* A corpus run's: the in-context gain, the previous-token head's prev_attn
 * and the induction head's induction_attn have an event; the val loss,
 * whose halfway step is the early fall of any run, has none. */
enum { FL_GAIN, FL_PREV, FL_IND, FL_EVENTS, FL_LOSS = FL_EVENTS, FL_N };

/* A series' event name (formation.csv's `event`), colour and style. */
typedef struct {
    const char *event, *colour;
    int style;
} FormationLook;

/* Fewer evals than this in roles_eval.csv: no panel, no files. */
#define FORMATION_MIN_EVALS 3

typedef struct {
    int corpus;                         /* the corpus run's panel (FL_*), else the task's (FS_*) */
    int ns, ne;                         /* series, of which the first ne have an event */
    const FormationLook *look;          /* [ns] */
    int prev_l, prev_h, look_l, look_h; /* the previous-token head, the lookup (corpus:
                                         * induction) head */
    char head[FE_N][16];                /* the head of each event's series ("" for the jump) */
    Series s[FS_N];
    FormationEvent ev[FE_N];
    Marker marks[FE_N];
    int nmarks;
} Formation;

/* ---- a run folder -------------------------------------------------------- */

typedef struct {
    const char *dir;       /* as given: it goes into command lines */
    char *label;           /* the run's name, or its folder beside another run */
    char *href;            /* URL prefix from the page's folder to the run folder */
    Config cfg;
    char *config_text;
    CsvTable metrics, evals, norms, heval, roles, lm_roles; /* roles: a task run's, lm_roles: a
                                                            * corpus run's roles_eval.csv */
    Groups norm_rows, heval_rows, roles_rows, lm_roles_rows;
    int *maps, n_maps;     /* heatmap steps whose every layer_L.png exists */
    int *ckpts, n_ckpts;   /* ckpt/step_NNNNNN.safetensors steps */
    char *probe;           /* the heatmaps' probe text (UTF-8), NULL when unknown */
    int T;                 /* probe length of the heatmaps (their layout) */
    long long n_params;    /* -1 before the first checkpoint */
    Formation form;        /* when formed: a run with enough evals of roles_eval.csv */
    int formed;
} Run;

/* Characters (code points) of UTF-8 text. */
static int utf8_count(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* The probe as the trainer recorded it in attn/probe.txt, else [log] probe
 * cut to block_size characters as the trainer cuts it; an empty [log] probe
 * (the start of the validation split) stays unknown. */
static void run_probe(Run *r) {
    char *path = path_join(r->dir, "attn/probe.txt");
    r->probe = file_slurp(path);
    free(path);
    if (!r->probe && r->cfg.probe[0]) {
        const char *s = r->cfg.probe;
        size_t end = 0;
        for (int n = 0; s[end]; end++) /* stops at the start of character block_size + 1 */
            if (((unsigned char)s[end] & 0xC0) != 0x80 && n++ == r->cfg.block_size) break;
        Buf b = {0};
        buf_add(&b, s, end);
        r->probe = b.s;
    }
}

/* The probe length of the heatmaps: from the newest map's attention.f32
 * ([L, NH, T, T] float32), else from the probe text, else block_size. */
static int run_map_length(const Run *r) {
    if (r->n_maps > 0) {
        char rel[64];
        snprintf(rel, sizeof rel, "attn/step_%06d/attention.f32", r->maps[r->n_maps - 1]);
        char *path = path_join(r->dir, rel);
        struct stat st;
        int found = stat(path, &st) == 0;
        free(path);
        if (found) {
            double per_map = (double)st.st_size / (4.0 * r->cfg.n_layer * r->cfg.n_head);
            long T = lround(sqrt(per_map));
            if (T >= 2 && (double)T * (double)T == per_map) return (int)T;
        }
    }
    int T = r->probe ? utf8_count(r->probe) : r->cfg.block_size;
    return T < r->cfg.block_size ? T : r->cfg.block_size;
}

static int run_load(Run *r, const char *dir, const char *page_dir, Error *err) {
    memset(r, 0, sizeof *r);
    r->dir = dir;
    r->n_params = -1;
    char *path = path_join(dir, "config.ini");
    r->config_text = file_slurp(path);
    int rc = 0;
    if (!r->config_text)
        rc = error_set(err, "%s: not a run folder (cannot read %s)", dir, path);
    else
        rc = config_load_string(&r->cfg, r->config_text, path, err);
    free(path);
    if (rc) return -1;
    const struct {
        CsvTable *t;
        const char *file;
        const char *const *cols;
        int n, flags;
    } logs[] = {{&r->metrics, "metrics.csv", metrics_cols, MT_N, 0},
                {&r->evals, "eval.csv", eval_cols, EV_N, 0},
                {&r->norms, "qk.csv", norm_cols, QN_N, 0},
                {&r->heval, "qk_eval.csv", heval_cols, QE_N, 0},
                /* prev_attn_j came later: an older run's page still draws */
                {&r->roles, "roles_eval.csv", roles_cols, RO_N, CSVTABLE_ABSENT_NAN},
                {&r->lm_roles, "roles_eval.csv", lm_roles_cols, LR_N, 0}};
    /* the file's columns are the task's or the corpus's, as the run is */
    int skip = r->cfg.task.kind == TASK_NONE ? 4 : 5;
    for (size_t i = 0; i < sizeof logs / sizeof logs[0] && !rc; i++) {
        if ((int)i == skip) continue;
        path = path_join(dir, logs[i].file);
        rc = csvtable_read(logs[i].t, path, logs[i].cols, logs[i].n,
                           CSVTABLE_OPTIONAL | logs[i].flags, err);
        free(path);
    }
    if (rc) return -1;
    int L = r->cfg.n_layer, NH = r->cfg.n_head;
    groups_build(&r->norm_rows, &r->norms, L, NH);
    groups_build(&r->heval_rows, &r->heval, L, NH);
    groups_build(&r->roles_rows, &r->roles, L, NH);
    groups_build(&r->lm_roles_rows, &r->lm_roles, L, NH);

    path = path_join(dir, "attn");
    int n = step_entries(path, "", &r->maps);
    for (int i = 0; i < n; i++) { /* a set being drawn is left out until complete */
        int complete = 1;
        for (int l = 0; l < L && complete; l++) {
            char rel[64];
            snprintf(rel, sizeof rel, "step_%06d/layer_%d.png", r->maps[i], l);
            char *png = path_join(path, rel);
            complete = access(png, R_OK) == 0;
            free(png);
        }
        if (complete) r->maps[r->n_maps++] = r->maps[i];
    }
    free(path);
    path = path_join(dir, "ckpt");
    r->n_ckpts = step_entries(path, ".safetensors", &r->ckpts);
    if (r->n_ckpts > 0) {
        char rel[64];
        snprintf(rel, sizeof rel, "step_%06d.safetensors", r->ckpts[r->n_ckpts - 1]);
        char *ck = path_join(path, rel);
        r->n_params = ckpt_param_count(ck);
        free(ck);
    }
    free(path);
    run_probe(r);
    r->T = run_map_length(r);
    r->href = href_prefix(page_dir, dir, err);
    return r->href ? 0 : -1;
}

static void run_free(Run *r) {
    free(r->label);
    free(r->href);
    free(r->config_text);
    CsvTable *tables[] = {&r->metrics, &r->evals, &r->norms, &r->heval, &r->roles, &r->lm_roles};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) csvtable_free(tables[i]);
    free(r->norm_rows.start);
    free(r->norm_rows.idx);
    free(r->heval_rows.start);
    free(r->heval_rows.idx);
    free(r->roles_rows.start);
    free(r->roles_rows.idx);
    free(r->lm_roles_rows.start);
    free(r->lm_roles_rows.idx);
    free(r->maps);
    free(r->ckpts);
    free(r->probe);
    if (r->formed)
        for (int i = 0; i < r->form.ns; i++) series_free(&r->form.s[i]);
}

/* ---- the page ------------------------------------------------------------ */

static const char *const run_colours[2] = {"#2e6fba", "#d9730d"};
static const char *const head_colours[10] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2",
                                             "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                                             "#9c755f", "#7f7f7f"};
#define GQ_COLOUR "#c0392b" /* red: query side, as in qk_balance.png */
#define GK_COLOUR "#2e6fba" /* blue: key side */
#define RATIO_COLOUR "#6a3d9a"
#define BIG_W 640
#define BIG_H 260
#define SMALL_W 236
#define SMALL_H 150

/* The x range of every chart: step 0 to the planned end of the longest run,
 * so a run in progress shows how far it has got. */
static Range steps_range(const Run *runs, int n) {
    Range x = {0, 1};
    for (int r = 0; r < n; r++) x.hi = fmax(x.hi, runs[r].cfg.steps);
    return x;
}

/* ---- formation ---- */

FormationEvent formation_event(const double *step, const double *value, size_t n) {
    FormationEvent e = {NAN, NAN, NAN};
    size_t first = n, last = n;
    for (size_t i = 0; i < n; i++)
        if (isfinite(step[i]) && isfinite(value[i])) {
            if (first == n) first = i;
            last = i;
        }
    if (first == n) return e;
    e.first = value[first];
    e.last = value[last];
    if (first == last || e.first == e.last) return e;
    double mid = e.first + (e.last - e.first) / 2;
    int rising = e.last > e.first;
    for (size_t i = first; i <= last && isnan(e.step); i++)
        if (isfinite(step[i]) && isfinite(value[i]) && (rising ? value[i] >= mid : value[i] <= mid))
            e.step = step[i];
    if (isnan(e.step)) e.step = step[last]; /* the last point has come all the way */
    return e;
}

static const FormationLook formation_looks[FS_N] = {
    {"jump", "#222222", SERIES_DOTS},
    {"prev_attn_j", "#2ca02c", SERIES_DOTS},
    {"target_attn", "#d9730d", SERIES_DOTS},
    {"cf_q_cur", "#8e44ad", SERIES_DASH | SERIES_DOTS},
    {"cf_k_prev", "#16a0b5", SERIES_DASH | SERIES_DOTS},
    {"gq_norm", GQ_COLOUR, SERIES_FAINT},
    {"gk_norm", GK_COLOUR, SERIES_FAINT},
};
static const FormationLook formation_lm_looks[FL_N] = {
    {"gain", "#222222", SERIES_DOTS},
    {"prev_attn", "#2ca02c", SERIES_DOTS},
    {"induction_attn", "#d9730d", SERIES_DOTS},
    {"val_loss", "#2e6fba", SERIES_DASH | SERIES_DOTS},
};
static const char *const formation_cols[] = {"event", "step", "value_first", "value_last", "head"};
#define FORMATION_NCOLS (int)(sizeof formation_cols / sizeof formation_cols[0])

/* The head of layers lo..hi with the largest value of column col at the last
 * eval of roles_eval.csv (read as t, its rows per head g); the first of them
 * on a tie, the first head of layer lo when none has a value there. */
static int formation_head(const CsvTable *t, const Groups *g, int NH, int lo, int hi, int col) {
    int best = lo * NH;
    double last = csvtable_at(t, t->rows - 1, HD_STEP), top = -INFINITY;
    for (int i = lo * NH; i < (hi + 1) * NH; i++) {
        if (g->start[i + 1] == g->start[i]) continue;
        size_t row = g->idx[g->start[i + 1] - 1];
        double v = csvtable_at(t, row, col);
        if (csvtable_at(t, row, HD_STEP) == last && v > top) {
            top = v;
            best = i;
        }
    }
    return best;
}

/* The events of the first f->ne series and their markers: the first a
 * dashed line labelled `major` ("jump", "gain"), the others ticks. */
static void formation_marks(Formation *f, const char *major) {
    for (int i = 0; i < f->ne; i++) {
        f->ev[i] = formation_event(f->s[i].x, f->s[i].y, f->s[i].n);
        if (isnan(f->ev[i].step)) continue;
        Marker *m = &f->marks[f->nmarks++];
        m->x = f->ev[i].step;
        m->colour = f->look[i].colour;
        m->event = f->look[i].event;
        m->major = i == 0;
        if (i == 0)
            snprintf(m->label, sizeof m->label, "%s: step %.0f", major, m->x);
        else
            snprintf(m->label, sizeof m->label, "%s %s: step %.0f", f->head[i], f->look[i].event,
                     m->x);
    }
}

/* A series mapped from its smallest..largest value onto 0..1 (a flat one
 * onto 0), to share the fractions' axis. */
static void series_unit(Series *s) {
    Range r = RANGE_EMPTY;
    range_add_series(&r, s, 0);
    for (size_t k = 0; k < s->n && r.lo <= r.hi; k++)
        s->y[k] = r.hi > r.lo ? (s->y[k] - r.lo) / (r.hi - r.lo) : 0;
}

/* The in-context gain, loss_first - loss_second, of a corpus run's
 * roles_eval.csv over its evals (from head 0's rows: every row of an eval
 * holds the same losses). */
static Series lm_gain_series(const Run *u, const char *name, const char *colour, int style) {
    const Groups *g = &u->lm_roles_rows;
    size_t n = g->start[1] - g->start[0];
    Series s = series_take(name, colour, style, &u->lm_roles, g->idx, n, HD_STEP, LR_FIRST, -1);
    Series second = series_take("", colour, style, &u->lm_roles, g->idx, n, HD_STEP, LR_SECOND, -1);
    for (size_t k = 0; k < n; k++) s.y[k] -= second.y[k];
    series_free(&second);
    return s;
}

/* A corpus run's Formation panel: the in-context gain and the val loss
 * (both scaled onto 0..1 after their events are taken, so that the table
 * keeps nats), the previous-token head's prev_attn (of the layers below the
 * last: an induction head reads a previous-token head of a lower layer) and
 * the induction head's induction_attn (of layers >= 1; one layer: layer 0). */
static void formation_lm_build(Run *u) {
    const Groups *g = &u->lm_roles_rows;
    int L = u->cfg.n_layer, NH = u->cfg.n_head;
    Formation *f = &u->form;
    memset(f, 0, sizeof *f);
    f->corpus = 1;
    f->look = formation_lm_looks;
    f->ns = FL_N;
    f->ne = FL_EVENTS;
    int prev = formation_head(&u->lm_roles, g, NH, 0, L > 1 ? L - 2 : 0, LR_PREV);
    int ind = formation_head(&u->lm_roles, g, NH, L > 1 ? 1 : 0, L - 1, LR_IND);
    f->prev_l = prev / NH;
    f->prev_h = prev % NH;
    f->look_l = ind / NH;
    f->look_h = ind % NH;
    f->s[FL_GAIN] = lm_gain_series(u, "in-context gain (min..max scaled to 0..1)",
                                   f->look[FL_GAIN].colour, f->look[FL_GAIN].style);
    for (int i = FL_PREV; i <= FL_IND; i++) {
        int head = i == FL_PREV ? prev : ind;
        char name[64];
        snprintf(f->head[i], sizeof f->head[i], "L%dH%d", head / NH, head % NH);
        snprintf(name, sizeof name, "%s %s", f->head[i], f->look[i].event);
        f->s[i] = series_take(name, f->look[i].colour, f->look[i].style, &u->lm_roles,
                              g->idx + g->start[head], g->start[head + 1] - g->start[head],
                              HD_STEP, i == FL_PREV ? LR_PREV : LR_IND, -1);
    }
    f->s[FL_LOSS] = series_take("val_loss (min..max scaled to 0..1)", f->look[FL_LOSS].colour,
                                f->look[FL_LOSS].style, &u->evals, NULL, u->evals.rows, EV_STEP,
                                EV_VAL, -1);
    formation_marks(f, "gain");
    series_unit(&f->s[FL_GAIN]);
    series_unit(&f->s[FL_LOSS]);
    u->formed = 1;
}

/* The Formation panel's heads, series and events (u->formed), when the run
 * has FORMATION_MIN_EVALS evals of roles_eval.csv or more. */
static void formation_build(Run *u) {
    const Groups *g = &u->roles_rows, *lg = &u->lm_roles_rows;
    int L = u->cfg.n_layer, NH = u->cfg.n_head;
    u->formed = 0;
    if (u->cfg.task.kind == TASK_NONE) {
        if (u->lm_roles.rows && lg->start[1] - lg->start[0] >= FORMATION_MIN_EVALS)
            formation_lm_build(u);
        return;
    }
    if (!u->roles.rows || g->start[1] - g->start[0] < FORMATION_MIN_EVALS) return;
    Formation *f = &u->form;
    memset(f, 0, sizeof *f);
    f->look = formation_looks;
    f->ns = FS_N;
    f->ne = FE_N;
    int prev = formation_head(&u->roles, g, NH, 0, 0, RO_PREV);
    int look = formation_head(&u->roles, g, NH, L > 1 ? 1 : 0, L - 1, RO_TARGET);
    f->prev_l = prev / NH;
    f->prev_h = prev % NH;
    f->look_l = look / NH;
    f->look_h = look % NH;
    const int cols[FS_N] = {EV_VAL_ACC,   RO_PREV, RO_TARGET, RO_CF_Q_CUR,
                            RO_CF_K_PREV, QN_GQ,   QN_GK};
    f->s[FS_ACC] = series_take("val_acc", formation_looks[FS_ACC].colour,
                               formation_looks[FS_ACC].style, &u->evals, NULL, u->evals.rows,
                               EV_STEP, EV_VAL_ACC, -1);
    for (int i = FS_ACC + 1; i < FS_N; i++) {
        int head = i == FS_PREV ? prev : look;
        char name[64];
        snprintf(name, sizeof name, "L%dH%d %s%s", head / NH, head % NH, formation_looks[i].event,
                 i >= FS_GQ ? " / its max" : "");
        if (i < FE_N) snprintf(f->head[i], sizeof f->head[i], "L%dH%d", head / NH, head % NH);
        const CsvTable *t = i >= FS_GQ ? &u->norms : &u->roles;
        const Groups *rows = i >= FS_GQ ? &u->norm_rows : &u->roles_rows;
        f->s[i] = series_take(name, formation_looks[i].colour, formation_looks[i].style, t,
                              rows->idx + rows->start[head],
                              rows->start[head + 1] - rows->start[head], HD_STEP, cols[i], -1);
    }
    for (int i = FS_GQ; i <= FS_GK; i++) { /* on the 0..1 axis: divided by its largest value */
        Series *s = &f->s[i];
        double top = 0;
        for (size_t k = 0; k < s->n; k++)
            if (isfinite(s->y[k]) && s->y[k] > top) top = s->y[k];
        for (size_t k = 0; top > 0 && k < s->n; k++) s->y[k] /= top;
    }
    formation_marks(f, "jump");
    u->formed = 1;
}

/* The chart of the panel and of formation.svg; title is its storage. */
static Chart formation_chart(const Run *u, int r, Range steps, int standalone, char *title,
                             size_t title_n) {
    const Formation *f = &u->form;
    snprintf(title, title_n, "%s%sprevious-token head L%dH%d, %s head L%dH%d",
             standalone ? u->cfg.name : "", standalone ? ": " : "", f->prev_l, f->prev_h,
             f->corpus ? "induction" : "lookup", f->look_l, f->look_h);
    Chart c = {.title = title,
               .ylabel = f->corpus ? "fraction (losses: scaled)" : "fraction (norms: / max)",
               .w = standalone ? 760 : BIG_W,
               .h = standalone ? 340 : 300, .ref = NAN, .x = steps,
               .y = range_finish((Range){0, 1}, 0), .marks = f->marks, .nmarks = f->nmarks,
               .standalone = standalone};
    snprintf(c.id, sizeof c.id, "r%d-formation", r);
    return c;
}

/* An event's step as the page and formation.svg write it. */
static void formation_step_text(char *out, size_t n, FormationEvent e) {
    if (isnan(e.step))
        snprintf(out, n, "no event");
    else
        snprintf(out, n, "step %.0f", e.step);
}

static void formation_table(Buf *b, const Formation *f, int r) {
    buf_printf(b, "<table class=\"summary formation\" id=\"r%d-formation-events\"><thead><tr>"
                  "<th>event</th><th>head</th><th>step</th><th>first value</th><th>last value</th>"
                  "</tr></thead>", r);
    for (int i = 0; i < f->ne; i++) {
        FormationEvent e = f->ev[i];
        buf_printf(b, "<tr data-event=\"%s\" data-step=\"", f->look[i].event);
        if (!isnan(e.step)) buf_printf(b, "%.0f", e.step);
        buf_printf(b, "\"><th><span style=\"color:%s\">&#9646;</span> %s</th><td>%s</td><td>",
                   f->look[i].colour,
                   i > 0 ? f->look[i].event
                   : f->corpus ? "gain (loss_first &minus; loss_second, nats)" : "jump (val_acc)",
                   f->head[i][0] ? f->head[i] : "&mdash;");
        if (isnan(e.step))
            buf_puts(b, "&mdash; (first value = last value)");
        else
            buf_printf(b, "%.0f", e.step);
        buf_puts(b, "</td>");
        for (int k = 0; k < 2; k++) {
            double v = k ? e.last : e.first;
            if (isfinite(v))
                buf_printf(b, "<td>%.3f</td>", v);
            else
                buf_puts(b, "<td>&mdash;</td>");
        }
        buf_puts(b, "</tr>");
    }
    buf_puts(b, "</table>\n");
}

static void section_formation(Buf *b, const Run *runs, int n, Range steps) {
    int task = 0, corpus = 0;
    for (int r = 0; r < n; r++) {
        task |= runs[r].formed && !runs[r].form.corpus;
        corpus |= runs[r].formed && runs[r].form.corpus;
    }
    if (!task && !corpus) return;
    buf_puts(b, "<section id=\"formation\"><h2>Formation</h2>");
    if (task)
        buf_puts(b, "<p class=\"note\">On one step axis: "
                "val_acc (eval.csv); the previous-token head's <code>prev_attn_j</code>, its attention "
                "from the lookup's target on the position before (the head of layer 0 with the "
                "largest <code>prev_attn_j</code> at the last eval); the lookup "
                "head's <code>target_attn</code>, <code>cf_q_cur</code> and <code>cf_k_prev</code> "
                "(roles_eval.csv; the head of layers &ge; 1, of layer 0 in a one-layer model, with "
                "the largest <code>target_attn</code> at the last eval); and the lookup head's W_Q "
                "and W_K gradient norms at every step (qk.csv), each divided by its largest value "
                "so that they share the 0..1 axis. The dashed line is the <b>jump</b>: the first "
                "eval at which val_acc has come at least halfway from its first eval value to its "
                "last. The coloured ticks at the foot mark the same for each roles series: the "
                "first eval at which it has covered half its way from its first value to its last, "
                "rising or falling (a series whose first and last values are equal has no such "
                "step). <code>formation.csv</code> in the run folder lists these steps and "
                "<code>formation.svg</code> is this chart as a picture of its own.</p>");
    if (corpus)
        buf_puts(b, "<p class=\"note\">On one step axis, for a corpus run (roles_eval.csv: "
                "validation segments each followed by its copy): the <b>in-context gain</b>, "
                "<code>loss_first</code> &minus; <code>loss_second</code>, what the earlier "
                "occurrence adds to the prediction of the copy, and val_loss (eval.csv), each "
                "scaled from its smallest to its largest value over the run onto 0..1 (the table "
                "gives their values in nats); the previous-token head's <code>prev_attn</code> "
                "(the head of the layers below the last, of layer 0 in a one-layer model, with the "
                "largest <code>prev_attn</code> at the last eval) and the induction head's "
                "<code>induction_attn</code>, its attention from the copy on the token after the "
                "earlier occurrence (the head of layers &ge; 1, of layer 0 in a one-layer model, "
                "with the largest <code>induction_attn</code> at the last eval). The dashed line "
                "is the gain's halfway step: the first eval at which the gain has come at least "
                "halfway from its first value to its last; the coloured ticks at the foot mark the "
                "same for <code>prev_attn</code> and <code>induction_attn</code>. Induction heads "
                "forming show as the gain and <code>induction_attn</code> rising together, often "
                "with a bump or a plateau in val_loss (Olsson et al. 2022). "
                "<code>formation.csv</code> lists the steps and <code>formation.svg</code> is the "
                "chart as a picture of its own.</p>");
    buf_puts(b, "<div class=\"cols\">");
    for (int r = 0; r < n; r++) {
        const Run *u = &runs[r];
        if (!u->formed) continue;
        buf_puts(b, "<div class=\"col\">");
        if (n > 1) {
            buf_puts(b, "<h4>");
            buf_html(b, u->label);
            buf_puts(b, "</h4>");
        }
        char title[CONFIG_STR + 128];
        Chart c = formation_chart(u, r, steps, 0, title, sizeof title);
        legend_html(b, u->form.s, u->form.ns);
        buf_puts(b, "<div class=\"row\">");
        chart_svg(b, &c, u->form.s, u->form.ns);
        formation_table(b, &u->form, r);
        buf_puts(b, "</div></div>");
    }
    buf_puts(b, "</div></section>\n");
}

/* formation.svg: the panel's chart, legend, events and definitions as one
 * picture that needs no stylesheet, on white. */
static void formation_svg(Buf *out, const Run *u) {
    static const char *const notes[] = {
        "Jump (dashed): the first eval at which val_acc has come at least halfway from its first "
        "eval value to its last.",
        "Ticks at the foot: the same for each roles series (roles_eval.csv), rising or falling; "
        "formation.csv lists the steps.",
        "Previous-token head: the layer-0 head with the largest prev_attn_j (attention from the "
        "target on the position before) at the last eval; lookup "
        "head: the head of layers \xe2\x89\xa5 1",
        "(layer 0 in a one-layer model) with the largest target_attn there. gq_norm, gk_norm: the "
        "lookup head's W_Q and W_K",
        "gradient norms at every step (qk.csv), each divided by its largest value.",
    };
    static const char *const lm_notes[] = {
        "Gain (dashed): the first eval at which the in-context gain, loss_first - loss_second on "
        "validation",
        "segments each followed by its copy (roles_eval.csv), has come at least halfway from its "
        "first value to its",
        "last; ticks at the foot: the same for prev_attn and induction_attn; formation.csv lists "
        "the steps.",
        "The gain and val_loss are scaled from their smallest to their largest value onto 0..1.",
        "Previous-token head: the head of the layers below the last with the largest prev_attn at "
        "the last eval;",
        "induction head: the head of layers \xe2\x89\xa5 1 (layer 0 in a one-layer model) with "
        "the largest induction_attn there.",
    };
    const Formation *f = &u->form;
    const char *const *text = f->corpus ? lm_notes : notes;
    size_t ntext = f->corpus ? sizeof lm_notes / sizeof lm_notes[0] : sizeof notes / sizeof notes[0];
    char title[CONFIG_STR + 128];
    /* the file shows what happened: up to the last eval (a run that met
     * stop_at_acc ends before its planned steps) */
    double last = u->evals.rows ? csvtable_at(&u->evals, u->evals.rows - 1, EV_STEP) : 0;
    Range steps = {0, last > 0 ? last : 1};
    Chart c = formation_chart(u, 0, steps, 1, title, sizeof title);
    Buf body = {0};
    chart_svg(&body, &c, f->s, f->ns);
    int y = c.h + 6;
    y += legend_svg(&body, f->s, f->ns, 58, y, c.w - 70, 2) + 8;
    Series ev[FE_N];
    for (int i = 0; i < f->ne; i++) {
        char step[32];
        formation_step_text(step, sizeof step, f->ev[i]);
        ev[i] = (Series){.colour = f->s[i].colour, .style = i == 0 ? SERIES_DASH : 0};
        if (i == 0)
            snprintf(ev[i].name, sizeof ev[i].name, "%s: %s",
                     f->corpus ? "gain (in-context)" : "jump (val_acc)", step);
        else
            snprintf(ev[i].name, sizeof ev[i].name, "%s %s: %s", f->head[i], f->look[i].event,
                     step);
    }
    y += legend_svg(&body, ev, f->ne, 58, y, c.w - 70, 3) + 10;
    for (size_t i = 0; i < ntext; i++, y += 15) {
        buf_printf(&body, "<text x=\"58\" y=\"%d\" fill=\"#555\">", y + 11);
        buf_html(&body, text[i]);
        buf_puts(&body, "</text>\n");
    }
    y += 8;
    buf_printf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/"
                    "2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"%s\" "
                    "font-size=\"11\">\n<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n",
               c.w, y, c.w, y, SVGPLOT_FONT, c.w, y);
    buf_add(out, body.s, body.len);
    buf_puts(out, "</svg>\n");
    free(body.s);
}

/* formation.csv: one row per event (formation_cols), written with libcsv and
 * put in place atomically like the page. */
static int formation_csv(const Formation *f, const char *path, Error *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    CHECK(mem, "open_memstream failed");
    CsvLog w = {.f = mem, .ncols = FORMATION_NCOLS};
    snprintf(w.path, sizeof w.path, "%s", path);
    for (int k = 0; k < FORMATION_NCOLS; k++) csvlog_str(&w, formation_cols[k]);
    csvlog_end_row(&w);
    for (int i = 0; i < f->ne; i++) {
        const FormationEvent *e = &f->ev[i];
        csvlog_str(&w, f->look[i].event);
        if (isnan(e->step))
            csvlog_str(&w, "");
        else
            csvlog_int(&w, (long long)e->step);
        for (int k = 0; k < 2; k++) {
            double v = k ? e->last : e->first;
            if (isfinite(v))
                csvlog_num(&w, v);
            else
                csvlog_str(&w, "");
        }
        csvlog_str(&w, f->head[i]);
        csvlog_end_row(&w);
    }
    csvlog_close(&w);
    int rc = file_write_atomic(path, text, len, err);
    free(text);
    return rc;
}

/* formation.svg and formation.csv in the run folder, beside its own page. */
static int formation_files(const Run *u, Error *err) {
    char *path = path_join(u->dir, "formation.svg");
    Buf svg = {0};
    formation_svg(&svg, u);
    int rc = file_write_atomic(path, svg.s, svg.len, err);
    free(svg.s);
    free(path);
    if (rc) return rc;
    path = path_join(u->dir, "formation.csv");
    rc = formation_csv(&u->form, path, err);
    free(path);
    return rc;
}

/* ---- summary ---- */

enum {
    SUM_FOLDER, SUM_PROGRESS, SUM_MODEL, SUM_QK, SUM_PARAMS, SUM_DATA, SUM_BATCH, SUM_SCHEDULE,
    SUM_ADAMW, SUM_TOKENS, SUM_TIME, SUM_LAST_EVAL, SUM_BEST_VAL, SUM_LAST_BATCH, SUM_QK_EVAL,
    SUM_N
};
static const char *const summary_labels[SUM_N] = {
    "run folder", "progress", "model", "Q/K", "parameters", "data", "batches", "schedule",
    "AdamW", "tokens/s", "time in steps", "last eval", "best val loss", "last batch loss",
    "Q/K at last eval"};

static const char *yes_no(int v) {
    return v ? "true" : "false";
}

/* The text of one summary cell of a run. */
static void summary_cell(const Run *r, int row, char *out, size_t n) {
    const Config *c = &r->cfg;
    const CsvTable *m = &r->metrics, *e = &r->evals, *q = &r->heval;
    size_t last_m = m->rows - 1, last_e = e->rows - 1;
    snprintf(out, n, "\xe2\x80\x94"); /* an em dash for what is not known yet */
    switch (row) {
    case SUM_FOLDER: snprintf(out, n, "%s", r->dir); break;
    case SUM_PROGRESS: {
        double done = m->rows ? csvtable_at(m, last_m, MT_STEP) : 0;
        snprintf(out, n, "step %.0f of %d%s", done, c->steps,
                 done >= c->steps ? ", done" : ", in progress (or stopped)");
        break;
    }
    case SUM_MODEL:
        snprintf(out, n, "n_layer %d, n_head %d, n_embd %d, block_size %d, bias %s, "
                         "tie_embeddings %s", c->n_layer, c->n_head, c->n_embd, c->block_size,
                 yes_no(c->bias), yes_no(c->tie_embeddings));
        break;
    case SUM_QK:
        snprintf(out, n, "qk %s, qk_init %s, smear %s", config_qk_name(c->qk),
                 config_qk_init_name(c->qk_init),
                 config_smear_name(c->smear));
        break;
    case SUM_PARAMS:
        if (r->n_params >= 0) snprintf(out, n, "%lld", r->n_params);
        break;
    case SUM_DATA:
        if (c->task.kind == TASK_NONE && c->repeat_fraction > 0) /* an experiment on the data */
            snprintf(out, n, "%s, val_fraction %g, repeated segments in %g of the training "
                     "windows (data.repeat_fraction)", c->data_path, c->val_fraction,
                     c->repeat_fraction);
        else if (c->task.kind == TASK_NONE)
            snprintf(out, n, "%s, val_fraction %g", c->data_path, c->val_fraction);
        else if (c->task.kind == TASK_KV)
            snprintf(out, n, "task kv: keys %d, pairs %d to %d, queries %d%s", c->task.keys,
                     c->task.pairs_min, c->task.pairs_max, c->task.queries,
                     c->task.cross ? ", cross" : "");
        else
            snprintf(out, n, "task repeat: letters %d, length %d to %d", c->task.letters,
                     c->task.len_min, c->task.len_max);
        break;
    case SUM_BATCH: snprintf(out, n, "batch_size %d, seed %llu", c->batch_size,
                             (unsigned long long)c->seed); break;
    case SUM_SCHEDULE:
        snprintf(out, n, "lr %g to %g, warm-up %d, steps %d", c->lr, c->min_lr, c->warmup_steps,
                 c->steps);
        break;
    case SUM_ADAMW:
        snprintf(out, n, "weight_decay %g, betas %g/%g, grad_clip %g", c->weight_decay, c->beta1,
                 c->beta2, c->grad_clip);
        break;
    case SUM_TOKENS:
    case SUM_TIME: {
        double ms = 0;
        for (size_t i = 0; i < m->rows; i++)
            if (isfinite(csvtable_at(m, i, MT_MS))) ms += csvtable_at(m, i, MT_MS);
        if (ms <= 0) break;
        if (row == SUM_TIME)
            snprintf(out, n, "%.1f s", ms / 1e3);
        else
            snprintf(out, n, "%.0f", (double)m->rows * c->batch_size * c->block_size / (ms / 1e3));
        break;
    }
    case SUM_LAST_EVAL:
        if (e->rows)
            snprintf(out, n, "step %.0f: train %.4f, val %.4f, val accuracy %.4f",
                     csvtable_at(e, last_e, EV_STEP), csvtable_at(e, last_e, EV_TRAIN),
                     csvtable_at(e, last_e, EV_VAL), csvtable_at(e, last_e, EV_VAL_ACC));
        break;
    case SUM_BEST_VAL: {
        size_t best = 0;
        for (size_t i = 1; i < e->rows; i++)
            if (csvtable_at(e, i, EV_VAL) < csvtable_at(e, best, EV_VAL)) best = i;
        if (e->rows)
            snprintf(out, n, "%.4f at step %.0f", csvtable_at(e, best, EV_VAL),
                     csvtable_at(e, best, EV_STEP));
        break;
    }
    case SUM_LAST_BATCH:
        if (m->rows)
            snprintf(out, n, "%.4f at step %.0f", csvtable_at(m, last_m, MT_LOSS),
                     csvtable_at(m, last_m, MT_STEP));
        break;
    case SUM_QK_EVAL: {
        if (!q->rows) break;
        double step = csvtable_at(q, q->rows - 1, HD_STEP), sym = 0, all = NAN;
        int heads = 0;
        for (size_t i = 0; i < q->rows; i++) {
            if (csvtable_at(q, i, HD_STEP) != step) continue;
            if (head_of(q, i, c->n_layer, c->n_head) >= 0) {
                sym += csvtable_at(q, i, QE_SYM);
                heads++;
            } else if (csvtable_at(q, i, HD_LAYER) == -1) {
                all = csvtable_at(q, i, QE_SWAP);
            }
        }
        snprintf(out, n, "step %.0f: mean symmetry %.3f, all-heads swap delta %+.4f", step,
                 heads ? sym / heads : NAN, all);
        break;
    }
    }
}

static void section_summary(Buf *b, const Run *runs, int n) {
    buf_puts(b, "<section id=\"summary\"><h2>Summary</h2><table class=\"summary\">");
    if (n > 1) {
        buf_puts(b, "<thead><tr><th></th>");
        for (int r = 0; r < n; r++) {
            buf_puts(b, "<th>");
            buf_html(b, runs[r].label);
            buf_puts(b, "</th>");
        }
        buf_puts(b, "</tr></thead>");
    }
    for (int row = 0; row < SUM_N; row++) {
        char text[2][CONFIG_STR + 512];
        for (int r = 0; r < n; r++) summary_cell(&runs[r], row, text[r], sizeof text[r]);
        buf_printf(b, "<tr%s><th>%s</th>",
                   n > 1 && row != SUM_FOLDER && strcmp(text[0], text[1]) ? " class=\"diff\"" : "",
                   summary_labels[row]);
        for (int r = 0; r < n; r++) {
            buf_puts(b, "<td>");
            buf_html(b, text[r]);
            buf_puts(b, "</td>");
        }
        buf_puts(b, "</tr>\n");
    }
    buf_puts(b, "</table><div class=\"cols\">");
    for (int r = 0; r < n; r++) {
        buf_puts(b, "<details class=\"col\"><summary>config.ini");
        if (n > 1) {
            buf_puts(b, " of ");
            buf_html(b, runs[r].label);
        }
        buf_puts(b, "</summary><pre class=\"config\">");
        buf_html(b, runs[r].config_text);
        buf_puts(b, "</pre></details>");
    }
    buf_puts(b, "</div></section>\n");
}

/* ---- loss and learning-rate curves ---- */

/* Halfway ticks (formation_event) of the series s[0..ns) in their colours,
 * events named by the series; marks holds ns. */
static int halfway_marks(const Series *s, int ns, Marker *marks) {
    int nm = 0;
    for (int i = 0; i < ns; i++) {
        FormationEvent e = formation_event(s[i].x, s[i].y, s[i].n);
        if (isnan(e.step)) continue;
        marks[nm] = (Marker){.x = e.step, .colour = s[i].colour, .event = s[i].name};
        snprintf(marks[nm++].label, sizeof marks->label, "%.40s halfway: step %.0f", s[i].name,
                 e.step);
    }
    return nm;
}

/* Per layer a row of charts, one per panel, of roles_eval.csv (read as t,
 * its rows per head g), a series per head; with ticks, each series' halfway
 * step at the foot. Chart ids r<r>-<prefix>-<key>-L<l>. */
static void head_panels_html(Buf *b, const Run *u, int r, Range steps, const CsvTable *t,
                             const Groups *g, const HeadPanel *panels, size_t np,
                             const char *prefix, int ticks) {
    int L = u->cfg.n_layer, NH = u->cfg.n_head;
    Series *s = xmalloc((size_t)NH * sizeof(Series));
    Marker *marks = xmalloc((size_t)NH * sizeof(Marker));
    for (int h = 0; h < NH; h++) { /* the legend, above the rows */
        s[h] = (Series){.colour = head_colours[h % 10], .style = SERIES_DOTS};
        snprintf(s[h].name, sizeof s[h].name, "H%d", h);
    }
    legend_html(b, s, NH);
    for (int l = 0; l < L; l++) {
        buf_puts(b, "<div class=\"row\">");
        for (size_t p = 0; p < np; p++) {
            for (int h = 0; h < NH; h++) {
                size_t i = (size_t)l * NH + h;
                char name[16];
                snprintf(name, sizeof name, "H%d", h);
                s[h] = series_take(name, head_colours[h % 10], SERIES_DOTS, t, g->idx + g->start[i],
                                   g->start[i + 1] - g->start[i], HD_STEP, panels[p].col, -1);
            }
            char title[64];
            Chart c = {.w = SMALL_W, .h = SMALL_H, .x = steps, .ref = NAN, .y = {0, 1},
                       .ylabel = panels[p].key, .title = title, .marks = marks,
                       .nmarks = ticks ? halfway_marks(s, NH, marks) : 0};
            snprintf(c.id, sizeof c.id, "r%d-%s-%s-L%d", r, prefix, panels[p].key, l);
            snprintf(title, sizeof title, "L%d %s", l, panels[p].title);
            chart_svg(b, &c, s, NH);
            for (int h = 0; h < NH; h++) series_free(&s[h]);
        }
        buf_puts(b, "</div>");
    }
    free(marks);
    free(s);
}

/* The heading of a run's roles_eval.csv panels: "TITLE (roles_eval.csv,
 * the run's label beside another run): TEXT". */
static void panels_heading(Buf *b, const Run *u, int pair, const char *title, const char *text) {
    buf_printf(b, "<h5>%s (roles_eval.csv", title);
    if (pair) {
        buf_puts(b, ", ");
        buf_html(b, u->label);
    }
    buf_printf(b, "): %s</h5>", text);
}

/* A task run's roles_eval.csv beside its accuracy: per layer, each head's
 * attention on the target and what it reads, over the evals. */
static void roles_rows_html(Buf *b, const Run *u, int r, int pair, Range steps) {
    if (!u->roles.rows) return;
    panels_heading(b, u, pair, "Roles per head over evals", "attention from the scored positions on the lookup's target, the same "
                "with the query's own token or the key's previous token changed (a collapse "
                "there is what the score reads), and how well a linear probe decodes the "
                "previous token from the key");
    head_panels_html(b, u, r, steps, &u->roles, &u->roles_rows, roles_panels, N_ROLES_PANELS,
                     "roles", 0);
}

/* A corpus run's roles_eval.csv beside its loss: the val loss and both
 * copies' losses, the in-context gain on a chart of its own, in nats, then
 * per layer each head's prev_attn and induction_attn; every series with its
 * halfway tick (but the copies' losses, which the gain sums up). */
static void lm_rows_html(Buf *b, const Run *u, int r, int pair, Range steps) {
    if (!u->lm_roles.rows) return;
    const Groups *g = &u->lm_roles_rows;
    panels_heading(b, u, pair, "Induction over evals", "validation segments each followed by its copy; the loss on the first copy "
                "and on the second, and the in-context gain (first minus second), beside val_loss; "
                "per head, the attention on the previous token and from the copy on the token "
                "after the earlier occurrence (induction). Ticks at the foot: the step at which "
                "each series has come halfway from its first value to its last");
    size_t n0 = g->start[1] - g->start[0];
    /* the gain on an axis of its own: beside the losses it would be a flat
     * line near 0 */
    Series s[4];
    s[0] = series_take("val_loss (eval)", run_colours[0], SERIES_DOTS, &u->evals, NULL,
                       u->evals.rows, EV_STEP, EV_VAL, -1);
    s[1] = series_take("loss_first", "#888888", SERIES_DASH | SERIES_DOTS, &u->lm_roles, g->idx,
                       n0, HD_STEP, LR_FIRST, -1);
    s[2] = series_take("loss_second", "#2ca02c", SERIES_DASH | SERIES_DOTS, &u->lm_roles, g->idx,
                       n0, HD_STEP, LR_SECOND, -1);
    s[3] = lm_gain_series(u, "in-context gain", "#222222", SERIES_DOTS);
    Range ly = RANGE_EMPTY, gy = RANGE_EMPTY;
    for (int i = 0; i < 3; i++) range_add_series(&ly, &s[i], 0);
    range_add(&gy, 0);
    range_add_series(&gy, &s[3], 0);
    Marker lm[2];
    Chart lc = {.w = BIG_W, .h = BIG_H, .x = steps, .ref = NAN, .y = range_finish(ly, 0),
                .ylabel = "nats", .title = "losses: val_loss, and both copies of the segments",
                .marks = lm, .nmarks = halfway_marks(s, 1, lm)};
    Chart gc = {.w = BIG_W, .h = BIG_H, .x = steps, .ref = 0, .y = range_finish(gy, 0),
                .ylabel = "nats", .title = "in-context gain: loss_first \xe2\x88\x92 loss_second",
                .marks = lm + 1, .nmarks = halfway_marks(s + 3, 1, lm + 1)};
    snprintf(lc.id, sizeof lc.id, "r%d-lm-loss", r);
    snprintf(gc.id, sizeof gc.id, "r%d-lm-gain", r);
    legend_html(b, s, 4);
    buf_puts(b, "<div class=\"row\">");
    chart_svg(b, &lc, s, 3);
    chart_svg(b, &gc, s + 3, 1);
    buf_puts(b, "</div>");
    for (int i = 0; i < 4; i++) series_free(&s[i]);
    head_panels_html(b, u, r, steps, &u->lm_roles, g, lm_roles_panels, N_LM_ROLES_PANELS, "lm",
                     1);
}

static void section_curves(Buf *b, const Run *runs, int n, Range steps) {
    Series loss[6], lr[2], acc[4];
    int nl = 0, na = 0;
    for (int r = 0; r < n; r++) {
        const Run *u = &runs[r];
        char name[160];
        const char *who = n > 1 ? u->label : "";
        const char *sep = n > 1 ? ": " : "";
        if (n == 1) /* beside another run the per-step noise would hide the comparison */
            loss[nl++] = series_take("batch loss (every step)", "#888", SERIES_FAINT, &u->metrics, NULL,
                                     u->metrics.rows, MT_STEP, MT_LOSS, -1);
        snprintf(name, sizeof name, "%s%strain loss (eval)", who, sep);
        loss[nl++] = series_take(name, run_colours[n > 1 ? r : 1], SERIES_DASH | SERIES_DOTS,
                                 &u->evals, NULL, u->evals.rows, EV_STEP, EV_TRAIN, -1);
        snprintf(name, sizeof name, "%s%sval loss (eval)", who, sep);
        loss[nl++] = series_take(name, run_colours[r], SERIES_DOTS, &u->evals, NULL, u->evals.rows,
                                 EV_STEP, EV_VAL, -1);
        snprintf(name, sizeof name, "%s%strain accuracy (eval)", who, sep);
        acc[na++] = series_take(name, run_colours[n > 1 ? r : 1], SERIES_DASH | SERIES_DOTS, &u->evals, NULL,
                                u->evals.rows, EV_STEP, EV_TRAIN_ACC, -1);
        snprintf(name, sizeof name, "%s%sval accuracy (eval)", who, sep);
        acc[na++] = series_take(name, run_colours[r], SERIES_DOTS, &u->evals, NULL, u->evals.rows,
                                EV_STEP, EV_VAL_ACC, -1);
        snprintf(name, sizeof name, "%s%slearning rate", who, sep);
        lr[r] = series_take(name, run_colours[r], 0, &u->metrics, NULL, u->metrics.rows, MT_STEP,
                            MT_LR, -1);
    }
    Range ly = RANGE_EMPTY, ry = RANGE_EMPTY;
    for (int i = 0; i < nl; i++) range_add_series(&ly, &loss[i], 0);
    for (int r = 0; r < n; r++) range_add_series(&ry, &lr[r], 0);
    Chart lc = {.id = "loss", .title = "loss", .ylabel = "cross-entropy (nats)", .w = BIG_W,
                .h = BIG_H, .ref = NAN, .x = steps, .y = range_finish(ly, 0)};
    Chart rc = {.id = "lr", .title = "learning rate", .ylabel = "lr", .w = BIG_W, .h = BIG_H,
                .ref = NAN, .x = steps, .y = range_finish(ry, 0)};
    buf_puts(b, "<section id=\"curves\"><h2>Loss, learning rate and accuracy</h2>");
    legend_html(b, loss, nl);
    buf_puts(b, "<div class=\"row\">");
    chart_svg(b, &lc, loss, nl);
    chart_svg(b, &rc, lr, n);
    buf_puts(b, "</div>");
    if (n > 1) legend_html(b, lr, n);
    /* accuracy on the scored targets: a task's plateau and jump */
    Chart ac = {.id = "accuracy", .title = "accuracy", .ylabel = "fraction of scored targets",
                .w = BIG_W, .h = BIG_H, .ref = NAN, .x = steps, .y = {0, 1}};
    legend_html(b, acc, na);
    buf_puts(b, "<div class=\"row\">");
    chart_svg(b, &ac, acc, na);
    buf_puts(b, "</div>");
    for (int r = 0; r < n; r++) roles_rows_html(b, &runs[r], r, n > 1, steps);
    for (int r = 0; r < n; r++) lm_rows_html(b, &runs[r], r, n > 1, steps);
    buf_puts(b, "</section>\n");
    for (int i = 0; i < na; i++) series_free(&acc[i]);
    for (int i = 0; i < nl; i++) series_free(&loss[i]);
    for (int r = 0; r < n; r++) series_free(&lr[r]);
}

/* ---- per layer ---- */

/* One run's series of one layer: per head, over steps (qk.csv) and over evals
 * (qk_eval.csv). */
typedef struct {
    int NH;
    Series *gq, *gk, *ratio;  /* [NH] */
    Series *eval[N_PANELS];   /* [NH] each */
} LayerSeries;

static void layer_series_build(LayerSeries *ls, const Run *u, int l) {
    int NH = u->cfg.n_head;
    ls->NH = NH;
    ls->gq = xmalloc((size_t)NH * sizeof(Series));
    ls->gk = xmalloc((size_t)NH * sizeof(Series));
    ls->ratio = xmalloc((size_t)NH * sizeof(Series));
    for (size_t p = 0; p < N_PANELS; p++) ls->eval[p] = xmalloc((size_t)NH * sizeof(Series));
    for (int h = 0; h < NH; h++) {
        size_t i = (size_t)l * NH + h;
        const Groups *g = &u->norm_rows;
        const size_t *rows = g->idx + g->start[i];
        size_t count = g->start[i + 1] - g->start[i];
        ls->gq[h] = series_take("gq_norm", GQ_COLOUR, 0, &u->norms, rows, count, HD_STEP, QN_GQ, -1);
        ls->gk[h] = series_take("gk_norm", GK_COLOUR, 0, &u->norms, rows, count, HD_STEP, QN_GK, -1);
        ls->ratio[h] = series_take("gq_norm / gk_norm", RATIO_COLOUR, 0, &u->norms, rows, count,
                                   HD_STEP, QN_GQ, QN_GK);
        g = &u->heval_rows;
        rows = g->idx + g->start[i];
        count = g->start[i + 1] - g->start[i];
        char name[16];
        snprintf(name, sizeof name, "H%d", h);
        for (size_t p = 0; p < N_PANELS; p++)
            ls->eval[p][h] = series_take(name, head_colours[h % 10], SERIES_DOTS, &u->heval, rows,
                                         count, HD_STEP, eval_panels[p].col, -1);
    }
}

static void layer_series_free(LayerSeries *ls) {
    for (int h = 0; h < ls->NH; h++) {
        series_free(&ls->gq[h]);
        series_free(&ls->gk[h]);
        series_free(&ls->ratio[h]);
        for (size_t p = 0; p < N_PANELS; p++) series_free(&ls->eval[p][h]);
    }
    free(ls->gq);
    free(ls->gk);
    free(ls->ratio);
    for (size_t p = 0; p < N_PANELS; p++) free(ls->eval[p]);
}

/* Ranges shared by the small multiples of a layer (across heads and runs),
 * so that panels compare by eye. */
typedef struct {
    Range norm, ratio, eval[N_PANELS];
} LayerRanges;

static void layer_column(Buf *b, const LayerSeries *ls, const LayerRanges *lr, int r, int l,
                         Range steps, const Run *u, int pair) {
    buf_puts(b, "<div class=\"col\">");
    if (pair) {
        buf_puts(b, "<h4>");
        buf_html(b, u->label);
        buf_puts(b, "</h4>");
    }
    Chart c = {.w = SMALL_W, .h = SMALL_H, .x = steps, .ref = NAN};
    char title[32];
    buf_puts(b, "<h5>Q/K gradient norms per head (log scale)</h5>");
    Series pairs[2] = {ls->gq[0], ls->gk[0]};
    legend_html(b, pairs, 2);
    buf_puts(b, "<div class=\"row\">");
    for (int h = 0; h < ls->NH; h++) {
        snprintf(c.id, sizeof c.id, "r%d-norms-L%d-H%d", r, l, h);
        snprintf(title, sizeof title, "L%d H%d", l, h);
        c.title = title;
        c.ylabel = "gradient norm";
        c.log_y = 1;
        c.y = lr->norm;
        pairs[0] = ls->gq[h];
        pairs[1] = ls->gk[h];
        chart_svg(b, &c, pairs, 2);
    }
    buf_puts(b, "</div><h5>gq_norm / gk_norm per head (log scale; above 1: the query side "
                "gets the larger gradient)</h5><div class=\"row\">");
    for (int h = 0; h < ls->NH; h++) {
        snprintf(c.id, sizeof c.id, "r%d-ratio-L%d-H%d", r, l, h);
        snprintf(title, sizeof title, "L%d H%d", l, h);
        c.title = title;
        c.ylabel = "gq / gk";
        c.log_y = 1;
        c.ref = 1;
        c.y = lr->ratio;
        chart_svg(b, &c, &ls->ratio[h], 1);
    }
    buf_puts(b, "</div><h5>qk_eval.csv per head, over evals</h5>");
    legend_html(b, ls->eval[0], ls->NH);
    buf_puts(b, "<div class=\"row\">");
    for (size_t p = 0; p < N_PANELS; p++) {
        snprintf(c.id, sizeof c.id, "r%d-%s-L%d", r, eval_panels[p].key, l);
        snprintf(title, sizeof title, "L%d %s", l, eval_panels[p].title);
        c.title = title;
        c.ylabel = eval_panels[p].key;
        c.log_y = 0;
        c.ref = eval_panels[p].ref;
        c.y = lr->eval[p];
        chart_svg(b, &c, ls->eval[p], ls->NH);
    }
    buf_puts(b, "</div></div>");
}

static void section_layers(Buf *b, const Run *runs, int n, Range steps) {
    buf_puts(b, "<section id=\"qk\"><h2>Q/K per layer and head</h2><p class=\"note\">"
                "Gradient norms of each head's slice of W_Q and W_K at every step (qk.csv), "
                "their ratio, and the gauge-invariant analyses of every eval (qk_eval.csv): "
                "symmetry s of M_h = W_Q^T W_K (1 symmetric, &minus;1 antisymmetric), "
                "directionality d (&gt; 0: a few key-side directions dominate), the swap delta "
                "(val loss with W_Q and W_K of the head exchanged, minus the normal loss) and "
                "the attention entropy (1 = uniform). The norms are not gauge invariant: "
                "<code>docs/qk-analysis.md</code> in qkscope's sources says why and what each "
                "measure means.</p>\n");
    int maxL = 0;
    for (int r = 0; r < n; r++) maxL = runs[r].cfg.n_layer > maxL ? runs[r].cfg.n_layer : maxL;
    for (int l = 0; l < maxL; l++) {
        LayerSeries ls[2];
        LayerRanges lr = {.norm = RANGE_EMPTY, .ratio = RANGE_EMPTY};
        for (size_t p = 0; p < N_PANELS; p++) {
            lr.eval[p] = RANGE_EMPTY;
            if (isfinite(eval_panels[p].ref)) range_add(&lr.eval[p], eval_panels[p].ref);
        }
        range_add(&lr.ratio, 1);
        for (int r = 0; r < n; r++) {
            if (l >= runs[r].cfg.n_layer) continue;
            layer_series_build(&ls[r], &runs[r], l);
            for (int h = 0; h < ls[r].NH; h++) {
                range_add_series(&lr.norm, &ls[r].gq[h], 1);
                range_add_series(&lr.norm, &ls[r].gk[h], 1);
                range_add_series(&lr.ratio, &ls[r].ratio[h], 1);
                for (size_t p = 0; p < N_PANELS; p++)
                    range_add_series(&lr.eval[p], &ls[r].eval[p][h], 0);
            }
        }
        lr.norm = range_finish(lr.norm, 1);
        lr.ratio = range_finish(lr.ratio, 1);
        for (size_t p = 0; p < N_PANELS; p++) lr.eval[p] = range_finish(lr.eval[p], 0);
        buf_printf(b, "<section class=\"layer\" id=\"layer-%d\"><h3>Layer %d</h3><div class=\"cols\">",
                   l, l);
        for (int r = 0; r < n; r++)
            if (l < runs[r].cfg.n_layer) {
                layer_column(b, &ls[r], &lr, r, l, steps, &runs[r], n > 1);
                layer_series_free(&ls[r]);
            }
        buf_puts(b, "</div></section>\n");
    }
    buf_puts(b, "</section>\n");
}

/* ---- attention viewer ---- */

/* Where heatmap_write_layer puts each head's panel in layer_L.png; the page
 * cuts a head out only when the picture has exactly the size given here, and
 * shows the whole picture otherwise. */
static void heatmap_layout_json(Buf *b, int NH, int T) {
    HeatmapGrid g = heatmap_layer_grid(NH, T);
    buf_printf(b, "\"size\":[%zu,%zu],\"rects\":[", g.width, g.height);
    for (int h = 0; h < NH; h++) {
        size_t x, y;
        heatmap_layer_panel(&g, h, &x, &y);
        buf_printf(b, "%s[%zu,%zu,%zu,%zu]", h ? "," : "", x, y, g.panel_w, g.panel_h);
    }
    buf_puts(b, "]");
}

/* The probe as the heatmaps label it: newline and tab as visible signs. */
static void probe_html(Buf *b, const Run *u, int r) {
    if (!u->probe) {
        buf_printf(b, "<span class=\"note\">the first %d characters of the validation split of ",
                   u->cfg.block_size);
        buf_html(b, u->cfg.data_path);
        buf_puts(b, " (not recorded in this run folder)</span>");
        return;
    }
    buf_printf(b, "<span class=\"probe\" id=\"probe-r%d\">", r);
    for (const char *s = u->probe; *s; s++)
        if (*s == '\n')
            buf_puts(b, "\xe2\x86\xb5"); /* the heatmaps' signs: newline, tab */
        else if (*s == '\t')
            buf_puts(b, "\xe2\x86\x92");
        else {
            char one[2] = {*s, 0};
            buf_html(b, one);
        }
    buf_printf(b, "</span> <span class=\"note\">(%d characters)</span>", utf8_count(u->probe));
}

static void section_attention(Buf *b, const Run *runs, int n) {
    buf_puts(b, "<section id=\"attention\"><h2>Attention on the probe</h2>");
    int any = 0, maxL = 0, maxNH = 0;
    for (int r = 0; r < n; r++) {
        any |= runs[r].n_maps > 0;
        if (runs[r].cfg.n_layer > maxL) maxL = runs[r].cfg.n_layer;
        if (runs[r].cfg.n_head > maxNH) maxNH = runs[r].cfg.n_head;
        buf_puts(b, "<p>probe");
        if (n > 1) {
            buf_puts(b, " of ");
            buf_html(b, runs[r].label);
        }
        buf_puts(b, ": ");
        probe_html(b, &runs[r], r);
        buf_puts(b, "</p>");
    }
    if (!any) {
        buf_puts(b, "<p class=\"note\">No heatmaps yet ([log] heatmap_every).</p>");
    } else {
        buf_puts(b, "<div class=\"controls\"><label>layer <select id=\"att-layer\">");
        for (int l = 0; l < maxL; l++) buf_printf(b, "<option value=\"%d\">L%d</option>", l, l);
        buf_puts(b, "</select></label><label>head <select id=\"att-head\">"
                    "<option value=\"-1\">all heads</option>");
        for (int h = 0; h < maxNH; h++)
            buf_printf(b, "<option value=\"%d\"%s>H%d</option>", h, h == 0 ? " selected" : "", h);
        buf_puts(b, "</select></label><label>step <input type=\"range\" id=\"att-step\" min=\"0\" "
                    "max=\"0\" value=\"0\"></label><output id=\"att-step-label\"></output></div>"
                    "<div class=\"row\">");
        /* each run's newest map of layer 0 as the src, for a browser without
         * JavaScript; the script takes over from there */
        for (int r = 0; r < n; r++) {
            const Run *u = &runs[r];
            buf_printf(b, "<figure class=\"att\" data-run=\"%d\"><div class=\"crop\"><img alt=\""
                          "attention map\"", r);
            if (u->n_maps)
                buf_printf(b, " src=\"%sattn/step_%06d/layer_0.png\"", u->href,
                           u->maps[u->n_maps - 1]);
            buf_puts(b, "></div><figcaption></figcaption></figure>");
        }
        buf_puts(b, "</div><p class=\"note\">Rows are queries, columns keys; viridis from 0 "
                    "(dark) to 1 (yellow), grey where the causal mask hides the future. The "
                    "slider moves over the heatmap steps; a run without a map at a step shows "
                    "its newest earlier one.</p>");
    }
    for (int r = 0; r < n; r++) { /* the run's other pictures, when drawn */
        const Run *u = &runs[r];
        Buf links = {0};
        buf_add(&links, "", 0);
        for (int l = -1; l < u->cfg.n_layer; l++) {
            char rel[64];
            if (l < 0)
                snprintf(rel, sizeof rel, "qk_balance.png");
            else
                snprintf(rel, sizeof rel, "attn/filmstrip_L%d.png", l);
            char *path = path_join(u->dir, rel);
            if (access(path, R_OK) == 0) {
                buf_puts(&links, " <a href=\"");
                buf_puts(&links, u->href);
                buf_puts(&links, rel);
                buf_printf(&links, "\">%s</a>", rel);
            }
            free(path);
        }
        if (links.len) {
            buf_puts(b, "<p>pictures");
            if (n > 1) {
                buf_puts(b, " of ");
                buf_html(b, u->label);
            }
            buf_printf(b, ":%s</p>", links.s);
        }
        free(links.s);
    }
    buf_puts(b, "</section>\n");
}

/* ---- checkpoints ---- */

/* Options of a checkpoint select; the value is the path as a shell word. */
static void ckpt_options(Buf *b, const Run *u, int selected) {
    for (int i = 0; i < u->n_ckpts; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "ckpt/step_%06d.safetensors", u->ckpts[i]);
        char *path = path_join(u->dir, rel);
        Buf word = {0};
        buf_shell(&word, path);
        buf_puts(b, "<option value=\"");
        buf_html(b, word.s);
        buf_printf(b, "\"%s>step %d</option>", i == selected ? " selected" : "", u->ckpts[i]);
        free(word.s);
        free(path);
    }
}

static void section_checkpoints(Buf *b, const Run *runs, int n) {
    buf_puts(b, "<section id=\"checkpoints\"><h2>Checkpoints</h2>");
    for (int r = 0; r < n; r++) {
        const Run *u = &runs[r];
        buf_puts(b, "<p>");
        if (n > 1) {
            buf_html(b, u->label);
            buf_puts(b, ": ");
        }
        if (!u->n_ckpts) buf_puts(b, "<span class=\"note\">none yet</span>");
        for (int i = 0; i < u->n_ckpts; i++)
            buf_printf(b, "<a href=\"%sckpt/step_%06d.safetensors\">step %d</a> ", u->href,
                       u->ckpts[i], u->ckpts[i]);
        if (u->n_ckpts)
            buf_printf(b, "<a href=\"%sckpt/latest.safetensors\">latest</a>", u->href);
        buf_puts(b, "</p>");
    }
    const Run *a = &runs[0], *z = &runs[n - 1];
    if (a->n_ckpts && z->n_ckpts) {
        /* one run: its first and newest checkpoints; two runs: both newest */
        buf_puts(b, "<p class=\"controls\"><label>A <select id=\"ckpt-a\">");
        ckpt_options(b, a, n > 1 ? a->n_ckpts - 1 : 0);
        buf_puts(b, "</select></label><label>B <select id=\"ckpt-b\">");
        ckpt_options(b, z, z->n_ckpts - 1);
        buf_puts(b, "</select></label></p><pre class=\"cmd\" id=\"ckpt-cmd\"></pre><p class=\"note"
                    "\">Run from the folder the paths are relative to (the one training ran "
                    "in).</p>");
    }
    buf_puts(b, "</section>\n");
}

static void page_data(Buf *b, const Run *runs, int n) {
    buf_puts(b, "<script type=\"application/json\" id=\"report-data\">{\"runs\":[");
    for (int r = 0; r < n; r++) {
        const Run *u = &runs[r];
        buf_puts(b, r ? ",{\"label\":" : "{\"label\":");
        buf_json_str(b, u->label);
        buf_puts(b, ",\"href\":");
        buf_json_str(b, u->href);
        buf_printf(b, ",\"L\":%d,\"NH\":%d,\"steps\":[", u->cfg.n_layer, u->cfg.n_head);
        for (int i = 0; i < u->n_maps; i++) buf_printf(b, "%s%d", i ? "," : "", u->maps[i]);
        buf_puts(b, "],");
        heatmap_layout_json(b, u->cfg.n_head, u->T);
        buf_puts(b, "}");
    }
    buf_puts(b, "]}</script>\n");
}

static void page_write(Buf *b, const Run *runs, int n) {
    Range steps = steps_range(runs, n);
    buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                "<link rel=\"icon\" href=\"data:,\"><title>qkscope: ");
    for (int r = 0; r < n; r++) {
        if (r) buf_puts(b, " vs ");
        buf_html(b, runs[r].label);
    }
    buf_printf(b, "</title><style>%s</style></head><body>\n<h1>qkscope: ", page_css);
    for (int r = 0; r < n; r++) {
        if (r) buf_puts(b, " <span class=\"note\">vs</span> ");
        buf_html(b, runs[r].label);
    }
    buf_puts(b, "</h1><p class=\"note\">Written at every eval and at the end of training; "
                "<code>./qkscope report");
    for (int r = 0; r < n; r++) {
        Buf word = {0};
        buf_shell(&word, runs[r].dir);
        buf_puts(b, " ");
        buf_html(b, word.s);
        free(word.s);
    }
    buf_puts(b, "</code> rewrites it.</p><nav><a href=\"#summary\">summary</a>");
    for (int r = 0; r < n; r++)
        if (runs[r].formed) {
            buf_puts(b, "<a href=\"#formation\">formation</a>");
            break;
        }
    buf_puts(b, "<a href=\"#curves\">loss</a><a href=\"#qk\">Q/K per layer</a>"
                "<a href=\"#attention\">attention</a><a href=\"#checkpoints\">checkpoints</a>"
                "</nav>\n");
    section_summary(b, runs, n);
    section_formation(b, runs, n, steps);
    section_curves(b, runs, n, steps);
    section_layers(b, runs, n, steps);
    section_attention(b, runs, n);
    section_checkpoints(b, runs, n);
    buf_printf(b, "<p class=\"note\">Series longer than %d points are drawn reduced: cut into "
                  "%d runs of consecutive steps, each keeping its smallest and largest value. "
                  "Points that are missing (or not positive on a log scale) are left out.</p>\n",
               SVGPLOT_MAX_POINTS, SVGPLOT_MAX_POINTS / 2);
    page_data(b, runs, n);
    buf_printf(b, "<script>%s</script>\n</body></html>\n", page_js);
}

static int report_build(const char *const *dirs, int n, const char *out_path, Error *err) {
    char *def = out_path ? NULL : report_default_path(dirs[0], n > 1 ? dirs[1] : NULL);
    const char *out = out_path ? out_path : def;
    char *page_dir = path_dirname(out);
    Run runs[2];
    int loaded = 0, rc = 0;
    while (loaded < n && rc == 0) {
        rc = run_load(&runs[loaded], dirs[loaded], page_dir, err);
        loaded++;
    }
    for (int r = 0; r < loaded && rc == 0; r++) {
        Buf label = {0};
        buf_puts(&label, n > 1 ? dirs[r] : runs[r].cfg.name);
        runs[r].label = label.s;
        formation_build(&runs[r]);
    }
    if (rc == 0) {
        Buf page = {0};
        page_write(&page, runs, n);
        rc = file_write_atomic(out, page.s, page.len, err);
        free(page.s);
    }
    /* the run's own page (under its lock): the Formation chart and its events
     * as files of their own too */
    if (rc == 0 && n == 1 && !out_path && runs[0].formed) rc = formation_files(&runs[0], err);
    for (int r = 0; r < loaded; r++) run_free(&runs[r]);
    free(page_dir);
    free(def);
    return rc;
}

int report_write(const char *run_dir, const char *out_path, Error *err) {
    return report_build(&run_dir, 1, out_path, err);
}

int report_write_pair(const char *a_dir, const char *b_dir, const char *out_path, Error *err) {
    const char *dirs[2] = {a_dir, b_dir};
    return report_build(dirs, 2, out_path, err);
}

char *report_default_path(const char *a_dir, const char *b_dir) {
    if (!b_dir) return path_join(a_dir, "index.html");
    char real[PATH_MAX];
    const char *name = realpath(b_dir, real) ? real : b_dir;
    const char *slash = strrchr(name, '/');
    Buf file = {0};
    buf_printf(&file, "compare_%s.html", slash && slash[1] ? slash + 1 : name);
    char *path = path_join(a_dir, file.s);
    free(file.s);
    return path;
}
