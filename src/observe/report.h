/* The HTML report of a run folder (index.html): summary, loss and learning
 * rate curves, per-layer Q/K norms and qk_eval metrics as inline SVG, an
 * attention viewer over the heatmap PNGs the run already holds, checkpoint
 * links and a ready `./qkscope compare` command. One self-contained file that
 * opens from the file system (no server, no network); it references the
 * run's PNGs and checkpoints by relative paths. */
#ifndef QK_REPORT_H
#define QK_REPORT_H

#include <stdint.h>

#include "common.h"

/* Writes the report of run_dir to out_path (NULL: run_dir/index.html)
 * atomically (a temp file in the same folder, then rename). Works on a run in
 * progress: missing CSVs, qk_eval.csv, attn/ or ckpt/ and a last CSV row
 * without its newline (cut mid-write) are fine. Returns -1 with a message
 * naming the file for a folder without config.ini, a config.ini that does not
 * parse, a malformed CSV (missing column, wrong field count, a field that is
 * not a number) or a failed write. */
int report_write(const char *run_dir, const char *out_path, Error *err);

/* The same page for two runs side by side (curves overlaid, per-layer panels
 * and attention maps next to each other, both runs' checkpoints in the
 * compare command). out_path NULL: a_dir/compare_<last path component of
 * b_dir>.html. */
int report_write_pair(const char *a_dir, const char *b_dir, const char *out_path, Error *err);

/* The page's default path for one run (b_dir NULL) or a pair; malloc'd. */
char *report_default_path(const char *a_dir, const char *b_dir);

/* When a series formed, for the page's Formation panel, formation.svg and
 * formation.csv: the step of the first point at which the series has covered
 * at least half its way from its first value to its last, rising or falling
 * (points in step order; points whose value or step is not finite are left
 * out). first and last are those values (NAN when the series has no point);
 * step is NAN, no event, when they are equal (a flat series) or there is
 * only one point. Pure: the same series give the same event. */
typedef struct {
    double step, first, last;
} FormationEvent;

FormationEvent formation_event(const double *step, const double *value, size_t n);

#endif
