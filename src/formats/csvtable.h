/* Reading the CSV logs back (libcsv's parser): the named columns of a log as
 * a table of numbers, whatever other columns it has and in whatever order.
 * The report page and the resume of the Q/K pictures read their logs so. */
#ifndef QK_CSVTABLE_H
#define QK_CSVTABLE_H

#include <stddef.h>

#include "common.h"

typedef struct {
    size_t rows, cap;
    int ncols;
    double *v; /* [rows, ncols]: column k is the k-th name asked for */
} CsvTable;

static inline double csvtable_at(const CsvTable *t, size_t row, int col) {
    return t->v[row * (size_t)t->ncols + (size_t)col];
}

/* A missing or empty file is an empty table (a log the run has not written
 * yet) instead of an error. */
#define CSVTABLE_OPTIONAL 1
/* A wanted column the header lacks reads as NAN in every row instead of an
 * error: a column a later version added, read from an older run. */
#define CSVTABLE_ABSENT_NAN 2

/* Reads the columns names[0..ncols-1] of the CSV file at path. Empty fields
 * are NAN. A last row without its newline is one being written, so it is
 * left out. Returns -1 with a message naming the file (and row and column)
 * for a file that cannot be read, is not CSV, lacks a column, has a row with
 * another field count than the header or a field that is not a number; the
 * table is then empty. */
int csvtable_read(CsvTable *t, const char *path, const char *const *names, int ncols, int flags,
                  Error *err);
void csvtable_free(CsvTable *t);

#endif
