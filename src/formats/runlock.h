/* One writer per run folder: an exclusive flock on <dir>/.lock, held for as
 * long as a command writes into the folder. The kernel releases it when the
 * process ends, however it ends, so a killed trainer leaves no stale lock.
 * Readers take no lock: every file of a run is replaced by an atomic rename
 * or appended by whole rows. */
#ifndef QK_RUNLOCK_H
#define QK_RUNLOCK_H

#include "common.h"

#define RUNLOCK_FILE ".lock"

typedef struct {
    int fd; /* -1: not held */
} RunLock;

/* Takes the lock of run folder dir, creating dir (and its parents) when
 * create is set. -1 with one line when another process holds it: "runs/race
 * is in use by pid 4242 (train, since 13:02:11); wait for it or choose
 * another run.name". */
int runlock_acquire(RunLock *l, const char *dir, int create, Error *err);
/* Records the holder (this pid, command `what`, now) in the lock file for
 * the message of a refused writer: once the command knows it will write, so
 * that a command refused after taking the lock leaves the folder as it was. */
void runlock_announce(RunLock *l, const char *what);
void runlock_release(RunLock *l);

#endif
