/* Data-parallel training over MPI: every rank holds the whole model, draws
 * its slice of the global batch, and the ranks average their gradients with
 * allreduces that start while backward is still running.
 *
 * Built with QK_MPI (meson -Dmpi) this talks to Open MPI; without it (or when
 * the process was not started by mpirun) the same interface is a single rank:
 * size 1, rank 0, every collective a no-op, so callers need no #ifdef. */
#ifndef QK_DIST_H
#define QK_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* Joins the job when mpirun started this process, otherwise stays a single
 * rank (no MPI_Init: a singleton init is slow and refuses root). */
void dist_init(int *argc, char ***argv);

/* Leaves the job; every rank must call it (it synchronises). */
void dist_finalize(void);

int dist_rank(void);
int dist_size(void);

/* Ends every rank of the job with this status (MPI_Abort); alone, exit(). */
_Noreturn void dist_abort(int status);

/* In-place sum of n doubles over all ranks (blocking). */
void dist_sum(double *x, int n);

/* Rank 0's n reals to every rank (in place). */
void dist_broadcast(real *x, size_t n);

/* Rank 0's n bytes to every rank (in place). */
void dist_broadcast_bytes(void *x, size_t n);

/* Whether any rank failed (failed != 0 here, or elsewhere): 1 or 0 on every
 * rank alike. When one did, only the lowest failing rank keeps its message in
 * err; the others get an empty one, so the job prints it once. */
int dist_any_failed(int failed, Error *err);

/* Every rank hashes its n bytes; -1 with a message (naming `what` and the
 * differing checksums) on every rank when they differ, else 0. */
int dist_check_agree(const void *buf, size_t n, const char *what, Error *err);

/* Gradient averaging that overlaps backward. Spans of the gradient buffer
 * are handed over as backward finishes them (dist_grads_ready is a
 * GradReadyHook); spans that touch are merged into buckets, and a bucket's
 * non-blocking in-place allreduces (MPI_SUM) start once it holds
 * DIST_BUCKET_BYTES. dist_grads_finish starts the last bucket and waits for
 * all. NULL when there is a single rank: nothing to average. */
typedef struct DistGrads DistGrads;

DistGrads *dist_grads_create(void);
void dist_grads_ready(void *ctx, real *span, size_t n);
void dist_grads_finish(DistGrads *g);
/* Seconds spent in MPI calls so far, and the part of it spent waiting in
 * dist_grads_finish (communication that backward did not hide). */
double dist_grads_seconds(const DistGrads *g);
double dist_grads_wait_seconds(const DistGrads *g);
void dist_grads_free(DistGrads *g);

/* 64-bit hash of n bytes (the weights' checksum). */
uint64_t dist_checksum(const void *buf, size_t n);

#endif
