#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The holder's line, "PID WHAT SINCE" (SINCE in seconds since the epoch),
 * read back for the message of a refused writer. */
static void holder_describe(int fd, char *out, size_t n) {
    char buf[128] = "";
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    long pid = 0, since = 0;
    char what[32] = "?";
    if (got <= 0 || sscanf(buf, "%ld %31s %ld", &pid, what, &since) != 3) {
        /* taken a moment ago, its line not written yet */
        snprintf(out, n, "another process");
        return;
    }
    time_t t = (time_t)since;
    struct tm tm;
    char clock[16] = "?";
    if (localtime_r(&t, &tm)) strftime(clock, sizeof clock, "%H:%M:%S", &tm);
    snprintf(out, n, "pid %ld (%s, since %s)", pid, what, clock);
}

int runlock_acquire(RunLock *l, const char *dir, int create, Error *err) {
    l->fd = -1;
    if (create && dir_create(dir, err) != 0) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, RUNLOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return error_set(err, "%s: cannot open the run's lock: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        char who[128];
        holder_describe(fd, who, sizeof who);
        close(fd);
        if (busy)
            return error_set(err, "%s is in use by %s; wait for it or choose another run.name",
                             dir, who);
        return error_set(err, "%s: cannot lock the run folder: %s", path, strerror(errno));
    }
    l->fd = fd;
    return 0;
}

void runlock_announce(RunLock *l, const char *what) {
    if (l->fd < 0) return;
    char line[128];
    int len = snprintf(line, sizeof line, "%ld %s %lld\n", (long)getpid(), what,
                       (long long)time(NULL));
    /* written over the old line, then cut to length: a reader never sees an
     * empty file between the two */
    if (pwrite(l->fd, line, (size_t)len, 0) != len || ftruncate(l->fd, len) != 0)
        die("cannot write the run's lock file: %s", strerror(errno));
}

void runlock_release(RunLock *l) {
    if (l->fd < 0) return;
    close(l->fd); /* closing the last descriptor releases the flock */
    l->fd = -1;
}
