#include "dist.h"

#include <stdlib.h>
#include <string.h>

#ifdef QK_MPI
#include <limits.h>
#include <mpi.h>

/* MPI_Init was called: mpirun started this process. */
static int active;
#endif

static int my_rank = 0, my_size = 1;

void dist_init(int *argc, char ***argv) {
#ifdef QK_MPI
    /* mpirun sets OMPI_COMM_WORLD_SIZE in every rank's environment; without
     * it this is a plain run and needs no MPI at all. */
    if (!getenv("OMPI_COMM_WORLD_SIZE")) return;
    CHECK(MPI_Init(argc, argv) == MPI_SUCCESS, "MPI_Init failed");
    active = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &my_size);
#else
    (void)argc;
    (void)argv;
#endif
}

void dist_finalize(void) {
#ifdef QK_MPI
    if (active) MPI_Finalize();
    active = 0;
#endif
}

int dist_rank(void) { return my_rank; }
int dist_size(void) { return my_size; }

_Noreturn void dist_abort(int status) {
    fflush(stdout);
    fflush(stderr);
#ifdef QK_MPI
    if (active) MPI_Abort(MPI_COMM_WORLD, status);
#endif
    exit(status);
}

void dist_sum(double *x, int n) {
#ifdef QK_MPI
    if (my_size > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)x;
    (void)n;
#endif
}

void dist_broadcast_bytes(void *x, size_t n) {
#ifdef QK_MPI
    /* MPI counts are ints: large buffers go in pieces */
    for (size_t off = 0; my_size > 1 && off < n;) {
        int count = n - off > INT_MAX ? INT_MAX : (int)(n - off);
        MPI_Bcast((char *)x + off, count, MPI_BYTE, 0, MPI_COMM_WORLD);
        off += (size_t)count;
    }
#else
    (void)x;
    (void)n;
#endif
}

void dist_broadcast(real *x, size_t n) { dist_broadcast_bytes(x, n * sizeof(real)); }

int dist_any_failed(int failed, Error *err) {
    int lowest = failed ? my_rank : my_size;
#ifdef QK_MPI
    if (my_size > 1) MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
#endif
    if (lowest == my_size) return 0;
    if (lowest != my_rank && err) err->msg[0] = '\0';
    return 1;
}

uint64_t dist_checksum(const void *buf, size_t n) {
    /* FNV-1a over 8-byte words (then the tail bytes): fast, and any changed
     * bit changes the hash with overwhelming probability. */
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ull, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int dist_check_agree(const void *buf, size_t n, const char *what, Error *err) {
    uint64_t h = dist_checksum(buf, n), lo = h, hi = h;
#ifdef QK_MPI
    if (my_size > 1) {
        MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    }
#endif
    if (lo == hi) return 0;
    return error_set(err, "the %d ranks disagree on the %s (checksums from %016llx to %016llx; "
                          "rank %d has %016llx): stopping",
                     my_size, what, (unsigned long long)lo, (unsigned long long)hi, my_rank,
                     (unsigned long long)h);
}

#ifdef QK_MPI

#if defined(QK_DOUBLE)
#define MPI_REAL_TYPE MPI_DOUBLE
#else
#define MPI_REAL_TYPE MPI_FLOAT
#endif

/* A bucket's size: big enough that the allreduce's fixed cost (a few
 * microseconds per message on one machine, tens across machines) is small
 * against its bytes, small enough that the first bucket starts while most of
 * backward is still to run (a small model's layer is a few MiB). */
#define DIST_BUCKET_BYTES ((size_t)1 << 20)

typedef struct {
    real *p;
    size_t n;
} GradSpan;

struct DistGrads {
    GradSpan *pending; /* finished spans not yet sent */
    int n_pending, cap_pending;
    size_t pending_bytes;
    MPI_Request *reqs; /* allreduces in flight */
    int n_reqs, cap_reqs;
    double seconds, wait_seconds;
};

DistGrads *dist_grads_create(void) {
    if (my_size < 2) return NULL;
    DistGrads *g = xcalloc(1, sizeof *g);
    g->cap_pending = g->cap_reqs = 64;
    g->pending = xmalloc((size_t)g->cap_pending * sizeof(GradSpan));
    g->reqs = xmalloc((size_t)g->cap_reqs * sizeof(MPI_Request));
    return g;
}

/* Doubles *cap (at least to need) and reallocates *buf of elem-sized items. */
static void grow(void **buf, int *cap, int need, size_t elem) {
    if (need <= *cap) return;
    while (*cap < need) *cap *= 2;
    *buf = realloc(*buf, (size_t)*cap * elem);
    CHECK(*buf, "out of memory (gradient buckets)");
}

/* Starts the allreduces of the pending spans. */
static void bucket_send(DistGrads *g) {
    for (int i = 0; i < g->n_pending; i++) {
        GradSpan s = g->pending[i];
        for (size_t off = 0; off < s.n;) {
            int count = s.n - off > INT_MAX ? INT_MAX : (int)(s.n - off);
            grow((void **)&g->reqs, &g->cap_reqs, g->n_reqs + 1, sizeof(MPI_Request));
            MPI_Iallreduce(MPI_IN_PLACE, s.p + off, count, MPI_REAL_TYPE, MPI_SUM, MPI_COMM_WORLD,
                           &g->reqs[g->n_reqs++]);
            off += (size_t)count;
        }
    }
    g->n_pending = 0;
    g->pending_bytes = 0;
}

void dist_grads_ready(void *ctx, real *span, size_t n) {
    DistGrads *g = ctx;
    if (!n) return;
    double t0 = time_now();
    /* Backward finishes layer l's slice of a stacked tensor right below layer
     * l+1's, so consecutive layers merge into one message per tensor. */
    int merged = 0;
    for (int i = 0; i < g->n_pending && !merged; i++) {
        GradSpan *s = &g->pending[i];
        if (s->p + s->n == span) {
            s->n += n;
            merged = 1;
        } else if (span + n == s->p) {
            s->p = span;
            s->n += n;
            merged = 1;
        }
    }
    if (!merged) {
        grow((void **)&g->pending, &g->cap_pending, g->n_pending + 1, sizeof(GradSpan));
        g->pending[g->n_pending++] = (GradSpan){span, n};
    }
    g->pending_bytes += n * sizeof(real);
    if (g->pending_bytes >= DIST_BUCKET_BYTES) bucket_send(g);
    /* Open MPI advances non-blocking collectives only inside MPI calls: a
     * test per finished layer keeps the earlier buckets moving. */
    int done;
    if (g->n_reqs) MPI_Testall(g->n_reqs, g->reqs, &done, MPI_STATUSES_IGNORE);
    g->seconds += time_now() - t0;
}

void dist_grads_finish(DistGrads *g) {
    if (!g) return;
    double t0 = time_now();
    bucket_send(g);
    MPI_Waitall(g->n_reqs, g->reqs, MPI_STATUSES_IGNORE);
    g->n_reqs = 0;
    double dt = time_now() - t0;
    g->seconds += dt;
    g->wait_seconds += dt;
}

double dist_grads_seconds(const DistGrads *g) { return g ? g->seconds : 0; }
double dist_grads_wait_seconds(const DistGrads *g) { return g ? g->wait_seconds : 0; }

void dist_grads_free(DistGrads *g) {
    if (!g) return;
    free(g->pending);
    free(g->reqs);
    free(g);
}

#else /* a single rank: nothing to average */

DistGrads *dist_grads_create(void) { return NULL; }
void dist_grads_ready(void *ctx, real *span, size_t n) {
    (void)ctx;
    (void)span;
    (void)n;
}
void dist_grads_finish(DistGrads *g) { (void)g; }
double dist_grads_seconds(const DistGrads *g) { (void)g; return 0; }
double dist_grads_wait_seconds(const DistGrads *g) { (void)g; return 0; }
void dist_grads_free(DistGrads *g) { (void)g; }

#endif
