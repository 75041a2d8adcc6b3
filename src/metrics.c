#include "metrics.h"

#include <csv.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void csvlog_start(CsvLog *w, FILE *f, const char *path, int ncols) {
    w->f = f;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->ncols = ncols;
    w->col = 0;
}

static void csvlog_header(CsvLog *w, const char *const *header) {
    for (int i = 0; i < w->ncols; i++) csvlog_str(w, header[i]);
    csvlog_end_row(w);
}

void csvlog_open(CsvLog *w, const char *path, const char *const *header, int ncols) {
    FILE *f = fopen(path, "w");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    csvlog_start(w, f, path, ncols);
    csvlog_header(w, header);
}

static void resume_tmp_path(const CsvLog *w, char *tmp, size_t n) {
    snprintf(tmp, n, "%s.tmp", w->path);
}

int csvlog_resume_prepare(CsvLog *w, const char *path, const char *const *header, int ncols,
                          long max_step, Error *err) {
    csvlog_start(w, NULL, path, ncols);
    FILE *in = fopen(path, "r");
    if (!in) return error_set(err, "%s: cannot reopen log to resume: %s", path, strerror(errno));
    /* the header as this version writes it, to recognise the file */
    char *want = NULL;
    size_t want_len = 0;
    FILE *mem = open_memstream(&want, &want_len);
    CHECK(mem, "open_memstream failed");
    CsvLog hw;
    csvlog_start(&hw, mem, path, ncols);
    csvlog_header(&hw, header);
    fclose(mem);

    char tmp[sizeof w->path + 16];
    resume_tmp_path(w, tmp, sizeof tmp);
    FILE *out = fopen(tmp, "w");
    if (!out) die("cannot create %s: %s", tmp, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0, saw_header = 0;
    for (long lineno = 0; (len = getline(&line, &cap, in)) > 0; lineno++) {
        if (lineno == 0) {
            saw_header = 1;
            if ((size_t)len != want_len || memcmp(line, want, want_len) != 0) {
                rc = error_set(err, "%s: header is not that of this log; cannot resume into it",
                               path);
                break;
            }
        } else {
            char *end;
            long step = strtol(line, &end, 10);
            /* a row cut short by a crash has no newline: drop it */
            if (end == line || *end != ',' || line[len - 1] != '\n' || step > max_step) continue;
        }
        fwrite(line, 1, (size_t)len, out);
    }
    if (!saw_header) rc = error_set(err, "%s: empty log; cannot resume into it", path);
    free(line);
    free(want);
    fclose(in);
    if (fclose(out) != 0) die("cannot write %s: %s", tmp, strerror(errno));
    if (rc != 0) remove(tmp);
    return rc;
}

void csvlog_resume_commit(CsvLog *w) {
    char tmp[sizeof w->path + 16];
    resume_tmp_path(w, tmp, sizeof tmp);
    if (rename(tmp, w->path) != 0) die("cannot replace %s: %s", w->path, strerror(errno));
    w->f = fopen(w->path, "a");
    if (!w->f) die("cannot append to %s: %s", w->path, strerror(errno));
}

void csvlog_resume_cancel(CsvLog *w) {
    char tmp[sizeof w->path + 16];
    resume_tmp_path(w, tmp, sizeof tmp);
    remove(tmp);
}

static void field_sep(CsvLog *w) {
    CHECK(w->col < w->ncols, "%s: row has more than %d fields", w->path, w->ncols);
    if (w->col++ > 0) fputc(',', w->f);
}

void csvlog_str(CsvLog *w, const char *s) {
    field_sep(w);
    if (csv_fwrite(w->f, s, strlen(s)) != 0) die("cannot write %s: %s", w->path, strerror(errno));
}

void csvlog_int(CsvLog *w, long long v) {
    field_sep(w);
    fprintf(w->f, "%lld", v);
}

void csvlog_num(CsvLog *w, double v) {
    field_sep(w);
    /* 9 significant digits: a float value round-trips exactly */
    fprintf(w->f, "%.9g", v);
}

void csvlog_end_row(CsvLog *w) {
    CHECK(w->col == w->ncols, "%s: row has %d of %d fields", w->path, w->col, w->ncols);
    fputc('\n', w->f);
    w->col = 0;
    if (ferror(w->f)) die("cannot write %s: %s", w->path, strerror(errno));
}

void csvlog_flush(CsvLog *w) {
    if (fflush(w->f) != 0) die("cannot write %s: %s", w->path, strerror(errno));
}

void csvlog_close(CsvLog *w) {
    if (!w->f) return;
    if (fclose(w->f) != 0) die("cannot write %s: %s", w->path, strerror(errno));
    w->f = NULL;
}

void progress_init(Progress *p, FILE *f) {
    p->tty = isatty(fileno(f));
    p->last_len = 0;
}

void progress_show(Progress *p, const char *text, int final) {
    if (!p->tty) {
        printf("%s\n", text);
        fflush(stdout);
        return;
    }
    int len = (int)strlen(text);
    /* pad with spaces to wipe a longer previous line */
    printf("\r%s%*s", text, p->last_len > len ? p->last_len - len : 0, "");
    p->last_len = len;
    if (final) {
        printf("\n");
        p->last_len = 0;
    }
    fflush(stdout);
}
