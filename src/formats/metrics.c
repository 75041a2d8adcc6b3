#include "metrics.h"

#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rows reach the file whole: the stream's buffer holds CSVLOG_BUFFER bytes
 * and is written out only at the end of a row once half full (or at a
 * flush), so a reader tailing the file (pandas, the report page) never sees
 * half a row, as long as a row is shorter than half the buffer. */
#define CSVLOG_BUFFER (1 << 16)

static void csvlog_buffer(CsvLog *w) {
    w->pending = 0;
    if (w->f && setvbuf(w->f, NULL, _IOFBF, CSVLOG_BUFFER) != 0)
        die("setvbuf failed for %s", w->path);
}

static void csvlog_start(CsvLog *w, FILE *f, const char *path, int ncols) {
    w->f = f;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->ncols = ncols;
    w->col = 0;
    csvlog_buffer(w);
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
    csvlog_buffer(w);
}

void csvlog_resume_cancel(CsvLog *w) {
    char tmp[sizeof w->path + 16];
    resume_tmp_path(w, tmp, sizeof tmp);
    remove(tmp);
}

/* Counts a field of the row; whether a separator goes before it. */
static int field_next(CsvLog *w) {
    CHECK(w->col < w->ncols, "%s: row has more than %d fields", w->path, w->ncols);
    return w->col++ > 0;
}

/* A bare field: text at buf + 1, its separator put at buf[0], so one stdio
 * call instead of two (a step logs some 200 numbers). */
static void field_bare(CsvLog *w, char *buf, int len) {
    int sep = field_next(w);
    buf[0] = ',';
    fwrite(buf + !sep, 1, (size_t)len + sep, w->f);
    w->pending += (size_t)len + sep;
}

void csvlog_str(CsvLog *w, const char *s) {
    if (field_next(w)) fputc(',', w->f);
    if (csv_fwrite(w->f, s, strlen(s)) != 0) die("cannot write %s: %s", w->path, strerror(errno));
    w->pending += 2 * strlen(s) + 3; /* at most: every quote doubled, two around, a comma */
}

void csvlog_int(CsvLog *w, long long v) {
    char buf[24];
    field_bare(w, buf, snprintf(buf + 1, sizeof buf - 1, "%lld", v));
}

int csvlog_format(char *buf, double v) {
    return snprintf(buf, CSVLOG_NUM_MAX, "%.9g", v);
}

void csvlog_num(CsvLog *w, double v) {
    char buf[1 + CSVLOG_NUM_MAX];
    field_bare(w, buf, csvlog_format(buf + 1, v));
}

void csvlog_end_row(CsvLog *w) {
    CHECK(w->col == w->ncols, "%s: row has %d of %d fields", w->path, w->col, w->ncols);
    fputc('\n', w->f);
    w->col = 0;
    if (++w->pending >= CSVLOG_BUFFER / 2) csvlog_flush(w);
    if (ferror(w->f)) die("cannot write %s: %s", w->path, strerror(errno));
}

void csvlog_flush(CsvLog *w) {
    if (!w->f) return; /* a log this run does not keep */
    if (fflush(w->f) != 0) die("cannot write %s: %s", w->path, strerror(errno));
    w->pending = 0;
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
