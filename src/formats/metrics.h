/* CSV logs of a run (metrics.csv, eval.csv, ...), written with libcsv, and
 * the console progress line. */
#ifndef QK_METRICS_H
#define QK_METRICS_H

#include <stdio.h>

#include "common.h"

typedef struct {
    FILE *f;
    char path[1400];
    int ncols;  /* fields per row, from the header */
    int col;    /* fields written in the current row */
    size_t pending; /* bytes in the stream's buffer since it was last written out */
} CsvLog;

/* Creates (truncating) the file and writes the header row. I/O failures die. */
void csvlog_open(CsvLog *w, const char *path, const char *const *header, int ncols);
/* Reopening the log of an interrupted run for appending, in two steps, so
 * that a run with several logs changes none of them unless every one can be
 * resumed. csvlog_resume_prepare writes <path>.tmp with the header (which
 * must match) and the complete rows whose first field is a step <= max_step,
 * dropping later or half-written rows, so a resumed run never duplicates a
 * row; -1 with a message (and no temp file) when the file is missing or not
 * this log. csvlog_resume_commit puts the copy in place and opens it;
 * csvlog_resume_cancel removes the copy. */
int csvlog_resume_prepare(CsvLog *w, const char *path, const char *const *header, int ncols,
                          long max_step, Error *err);
void csvlog_resume_commit(CsvLog *w);
void csvlog_resume_cancel(CsvLog *w);
/* Text fields go through libcsv's quoting; numbers are written bare. */
void csvlog_str(CsvLog *w, const char *s);
void csvlog_int(CsvLog *w, long long v);
void csvlog_num(CsvLog *w, double v);
/* A number as csvlog_num writes it: printf's "%.9g" (9 significant digits,
 * so a float round-trips); returns its length. */
#define CSVLOG_NUM_MAX 32
int csvlog_format(char *buf, double v);
/* Ends the row (checks the field count). */
void csvlog_end_row(CsvLog *w);
void csvlog_flush(CsvLog *w);
void csvlog_close(CsvLog *w);

/* Console progress: on a terminal one updating line, in a pipe plain lines. */
typedef struct {
    int tty;
    int last_len;
} Progress;

void progress_init(Progress *p, FILE *f);
/* Prints `text` as the progress line (final = 1 ends it with a newline on a tty). */
void progress_show(Progress *p, const char *text, int final);

#endif
