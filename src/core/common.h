/* Shared plumbing: error reporting, checked allocation, the scalar type. */
#ifndef QK_COMMON_H
#define QK_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The model math is written once over `real`. The product builds it as float;
 * the gradient-check tests build the same sources with QK_DOUBLE so finite
 * differences can use a tight tolerance. */
#ifdef QK_DOUBLE
typedef double real;
#define real_exp exp
#define real_log log
#define real_sqrt sqrt
#else
typedef float real;
#define real_exp expf
#define real_log logf
#define real_sqrt sqrtf
#endif

/* Element loops shorter than this run on one thread: below it, waking the
 * others (an OpenMP fork and join) costs more than it saves. Which thread
 * takes an element never changes a result. */
#define PARALLEL_MIN_ELEMS 16384

/* Exit status for bad input (config, corpus, checkpoint, arguments). */
#define EXIT_BADINPUT 2

/* A recoverable error travels back to the caller as a message; the command's
 * main prints it as one line and exits with EXIT_BADINPUT. */
typedef struct {
    char msg[1024];
} Error;

/* Formats into err (if not NULL) and returns -1, so `return error_set(...)`. */
int error_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Out of memory and I/O failures are not recoverable: one place reports them
 * with the source position and exits with status 1. */
_Noreturn void die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define die(...) die_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond, ...) do { if (!(cond)) die(__VA_ARGS__); } while (0)

void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t count, size_t size, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(c, s) xcalloc_at((c), (s), __FILE__, __LINE__)
/* Zeroed and aligned to a 64-byte cache line, for tensors: a vector load or
 * store of a row then never straddles two lines, which the matmuls notice.
 * Freed with free(). xmalloc_lines leaves the memory as it comes, for
 * buffers always written before they are read: pages nothing touches then
 * never become resident. */
void *xcalloc_lines_at(size_t count, size_t size, const char *file, int line);
void *xmalloc_lines_at(size_t count, size_t size, const char *file, int line);
#define xcalloc_lines(c, s) xcalloc_lines_at((c), (s), __FILE__, __LINE__)
#define xmalloc_lines(c, s) xmalloc_lines_at((c), (s), __FILE__, __LINE__)
/* Reals per cache line; round_lines(n) is n rounded up to whole lines, for
 * tensor offsets inside a block. */
#define LINE_REALS (64 / sizeof(real))
static inline size_t round_lines(size_t n) { return (n + LINE_REALS - 1) / LINE_REALS * LINE_REALS; }
/* Memory lent to a callee for one call: n bytes at p ({NULL, 0}: none). A
 * callee that takes one uses it instead of the heap where what it needs fits,
 * so memory whose contents are dead meanwhile, and whose pages are already
 * resident, serves a transient need. */
typedef struct {
    void *p;
    size_t n;
} Span;
/* Part i of s cut into `parts` disjoint parts of equal size, each starting on
 * a cache line so two threads writing neighbouring parts share none. */
Span span_part(Span s, size_t i, size_t parts);
/* Gives every buffer from 128 KiB up a mapping of its own, which goes back to
 * the system when it is freed (glibc's M_MMAP_THRESHOLD; elsewhere nothing
 * happens). glibc otherwise raises that threshold to the largest buffer freed
 * so far; a large short-lived buffer freed later then stays resident in its
 * thread's arena. Call it before allocating them. */
void memory_init(void);
/* A kernel's scratch memory, held by the caller's workspace (the model's), so
 * kernels keep no memory of their own and two models can run in one process.
 * It grows to the largest request (line-aligned) and keeps that size; the
 * contents are not kept from one request to the next. */
typedef struct {
    real *p;
    size_t cap; /* reals */
} ScratchBuf;
real *scratch_reserve(ScratchBuf *s, size_t need);
void scratch_free(ScratchBuf *s);

/* Writes data to a temp file in path's folder and renames it over path, so a
 * reader (a browser, pandas) never sees half a file; -1 with a message. */
int file_write_atomic(const char *path, const char *data, size_t len, Error *err);

/* mkdir -p: creates path and its missing parents; -1 with a message. */
int dir_create(const char *path, Error *err);

/* rm -r: removes path and everything below it (symbolic links are not
 * followed); failures die. */
void dir_remove(const char *path);

/* Wall-clock seconds from a monotonic clock. */
double time_now(void);

/* Sums of squares in double, of x[0..n) and of a[i] - b[i]: SUMSQ_LANES
 * independent partial sums added in a fixed order, so that the result does not
 * wait on one long chain of dependent adds and is the same on every call. */
#define SUMSQ_LANES 8
double sum_squares(const real *x, size_t n);
double sum_squares_diff(const real *a, const real *b, size_t n);

#endif
