#include "csvtable.h"

#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libcsv calls field() per field and row() per row end; the header row maps
 * each field to the wanted column it names (or -1), later rows fill cur. */
typedef struct {
    const char *path;
    Error *err;
    const char *const *names;
    int *map;     /* header field -> wanted column, or -1 */
    int nfields;  /* fields of the header row */
    size_t row;   /* rows seen, the header included */
    int col;
    int bad;
    int final;    /* csv_fini is delivering a last row that had no newline */
    int absent_nan; /* CSVTABLE_ABSENT_NAN */
    double *cur;  /* [ncols] the row being read */
    CsvTable *t;
} CsvRead;

static void csvread_field(void *data, size_t len, void *p) {
    CsvRead *r = p;
    if (r->bad || r->final) return;
    if (r->row == 0) {
        int *grown = realloc(r->map, (size_t)(r->col + 1) * sizeof(int));
        CHECK(grown, "out of memory reading %s", r->path);
        r->map = grown;
        r->map[r->col] = -1;
        for (int k = 0; k < r->t->ncols; k++)
            if (strlen(r->names[k]) == len && memcmp(r->names[k], data, len) == 0)
                r->map[r->col] = k;
    } else if (r->col >= r->nfields) {
        r->bad = 1;
        error_set(r->err, "%s: row %zu has more than the header's %d fields", r->path, r->row + 1,
                  r->nfields);
    } else if (r->map[r->col] >= 0) {
        double v = NAN;
        char *end = data;
        if (len > 0) v = strtod(data, &end); /* CSV_APPEND_NULL: data ends with a NUL */
        if (end != (char *)data + len) {
            r->bad = 1;
            error_set(r->err, "%s: row %zu, column '%s': '%.*s' is not a number", r->path,
                      r->row + 1, r->names[r->map[r->col]], len > 40 ? 40 : (int)len,
                      (const char *)data);
        }
        r->cur[r->map[r->col]] = v;
    }
    r->col++;
}

static void csvread_row(int c, void *p) {
    (void)c;
    CsvRead *r = p;
    if (r->bad || r->final) return;
    CsvTable *t = r->t;
    if (r->row == 0) {
        r->nfields = r->col;
        for (int k = 0; k < t->ncols && !r->bad; k++) {
            int found = 0;
            for (int i = 0; i < r->col; i++) found |= r->map[i] == k;
            if (!found && !r->absent_nan) {
                r->bad = 1;
                error_set(r->err, "%s: no column '%s' in the header", r->path, r->names[k]);
            }
        }
    } else if (r->col != r->nfields) {
        r->bad = 1;
        error_set(r->err, "%s: row %zu has %d fields, the header %d", r->path, r->row + 1, r->col,
                  r->nfields);
    } else {
        if (t->rows == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 1024;
            double *grown = realloc(t->v, t->cap * (size_t)t->ncols * sizeof(double));
            CHECK(grown, "out of memory reading %s", r->path);
            t->v = grown;
        }
        memcpy(t->v + t->rows++ * (size_t)t->ncols, r->cur, (size_t)t->ncols * sizeof(double));
    }
    r->row++;
    r->col = 0;
}

int csvtable_read(CsvTable *t, const char *path, const char *const *names, int ncols, int flags,
                  Error *err) {
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && (flags & CSVTABLE_OPTIONAL)) return 0;
        return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    }
    struct csv_parser p;
    CHECK(csv_init(&p, CSV_STRICT | CSV_APPEND_NULL) == 0, "csv_init failed");
    CsvRead r = {.path = path, .err = err, .names = names, .t = t,
                 .absent_nan = (flags & CSVTABLE_ABSENT_NAN) != 0};
    r.cur = xmalloc((size_t)ncols * sizeof(double));
    for (int k = 0; k < ncols; k++) r.cur[k] = NAN; /* an absent column's, every row */
    char buf[1 << 16];
    size_t n;
    while (!r.bad && (n = fread(buf, 1, sizeof buf, f)) > 0)
        if (csv_parse(&p, buf, n, csvread_field, csvread_row, &r) != n && !r.bad) {
            r.bad = 1;
            error_set(err, "%s: not CSV: %s", path, csv_strerror(csv_error(&p)));
        }
    if (!r.bad && ferror(f)) r.bad = error_set(err, "%s: cannot read: %s", path, strerror(errno));
    r.final = 1;
    csv_fini(&p, csvread_field, csvread_row, &r);
    csv_free(&p);
    fclose(f);
    free(r.map);
    free(r.cur);
    if (!r.bad && r.row == 0 && !(flags & CSVTABLE_OPTIONAL))
        r.bad = error_set(err, "%s: empty, expected a header row", path);
    if (r.bad) {
        csvtable_free(t);
        return -1;
    }
    return 0;
}

void csvtable_free(CsvTable *t) {
    free(t->v);
    t->v = NULL;
    t->rows = t->cap = 0;
}
