#include "metrics.h"

#include <csv.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

void csvlog_open(CsvLog *w, const char *path, const char *const *header, int ncols) {
    w->f = fopen(path, "w");
    if (!w->f) die("cannot create %s: %s", path, strerror(errno));
    snprintf(w->path, sizeof w->path, "%s", path);
    w->ncols = ncols;
    w->col = 0;
    for (int i = 0; i < ncols; i++) csvlog_str(w, header[i]);
    csvlog_end_row(w);
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
