/*  sb_eio_shim: a failure injector for the journal's syncs, loaded with
    LD_PRELOAD into a real process (the ingress, under the fault tests).

    It wraps fdatasync and fsync. A call is "matched" when its function is
    listed in SB_EIO_SHIM_CALLS (default "fdatasync,fsync"), its descriptor
    is of the kind SB_EIO_SHIM_ON names ("file", "dir" or "any", default
    "any"; a control file whose first word is one of these overrides it,
    and a number after that word overrides SB_EIO_SHIM_SLEEP_MS),
    and either the control file SB_EIO_SHIM_FILE exists (checked on every
    call, so a test switches the fault on and off by creating and removing
    it) or the call is the SB_EIO_SHIM_NTH-th matched call (1 is the
    first; counted only when SB_EIO_SHIM_FILE is unset). A matched call:
    - with SB_EIO_SHIM_SLEEP_MS set, sleeps that long and then really syncs
      (a slow disk);
    - otherwise fails with EIO without syncing (a failing disk). With
      SB_EIO_SHIM_DROP=1 it also overwrites with zeros the bytes written
      through that descriptor since its last good sync, as the kernel may
      drop dirty pages after a failed writeback (and clear the error): a
      journal that syncs the same file again and trusts it finds its
      records gone once the process restarts.
    Each injection appends a line to SB_EIO_SHIM_LOG, when set:
    "<eio|sleep> call=<fdatasync|fsync> kind=<file|dir> path=<path>
    ino=<inode> n=<N> ms=<wall-clock milliseconds>".

    Limits: write tracking covers pwrite (the journal's only write) on
    descriptors below S_MAX_FD, as one range per descriptor; test use only.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_FD 4096

typedef int (*s_sync_fn) (int);
typedef ssize_t (*s_pwrite_fn) (int, const void *, size_t, off_t);

//  What was written through a descriptor since its last good sync.
typedef struct {
    uint64_t lo, hi;  //  [lo, hi), empty when lo == hi
} s_dirty_t;

//  Shared by every thread of the process: the shim has no other home.
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static s_dirty_t s_dirty[S_MAX_FD];
static atomic_ulong s_matched;

static void
s_note_write (int fd, uint64_t offset, ssize_t n)
{
    if (fd < 0 || fd >= S_MAX_FD || n <= 0)
        return;
    pthread_mutex_lock (&s_lock);
    s_dirty_t *d = &s_dirty[fd];
    uint64_t end = offset + (uint64_t) n;
    if (d->lo == d->hi) {
        d->lo = offset;
        d->hi = end;
    }
    else {
        if (offset < d->lo)
            d->lo = offset;
        if (end > d->hi)
            d->hi = end;
    }
    pthread_mutex_unlock (&s_lock);
}

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
    static s_pwrite_fn real;
    if (!real)
        real = (s_pwrite_fn) dlsym (RTLD_NEXT, "pwrite");
    ssize_t n = real (fd, buf, count, offset);
    s_note_write (fd, (uint64_t) offset, n);
    return n;
}

ssize_t
pwrite64 (int fd, const void *buf, size_t count, off_t offset)
{
    return pwrite (fd, buf, count, offset);
}

static bool
s_listed (const char *list, const char *name)
{
    size_t len = strlen (name);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr (p, ',');
        size_t n = comma ? (size_t) (comma - p) : strlen (p);
        if (n == len && strncmp (p, name, n) == 0)
            return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

static void
s_log (const char *what, const char *call, bool dir, int fd, unsigned long n, uint64_t ino)
{
    const char *path = getenv ("SB_EIO_SHIM_LOG");
    if (!path)
        return;
    char link[64], target[1024];
    snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink (link, target, sizeof target - 1);
    target[len > 0 ? len : 0] = '\0';
    FILE *file = fopen (path, "a");
    if (!file)
        return;
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    fprintf (file, "%s call=%s kind=%s path=%s ino=%llu n=%lu ms=%lld\n", what, call,
             dir ? "dir" : "file", target, (unsigned long long) ino, n,
             (long long) now.tv_sec * 1000 + now.tv_nsec / 1000000);
    fclose (file);
}

//  Zeros over what was written through fd since its last good sync.
static void
s_drop (int fd)
{
    if (fd < 0 || fd >= S_MAX_FD)
        return;
    static s_pwrite_fn real;
    if (!real)
        real = (s_pwrite_fn) dlsym (RTLD_NEXT, "pwrite");
    pthread_mutex_lock (&s_lock);
    s_dirty_t d = s_dirty[fd];
    s_dirty[fd].lo = s_dirty[fd].hi = 0;
    pthread_mutex_unlock (&s_lock);
    static const uint8_t zeros[4096];
    for (uint64_t at = d.lo; at < d.hi;) {
        size_t n = d.hi - at < sizeof zeros ? (size_t) (d.hi - at) : sizeof zeros;
        if (real (fd, zeros, n, (off_t) at) <= 0)
            break;
        at += n;
    }
}

static int
s_sync (const char *call, int fd)
{
    static s_sync_fn real_fdatasync, real_fsync;
    if (!real_fdatasync)
        real_fdatasync = (s_sync_fn) dlsym (RTLD_NEXT, "fdatasync");
    if (!real_fsync)
        real_fsync = (s_sync_fn) dlsym (RTLD_NEXT, "fsync");
    s_sync_fn real = call[1] == 'd' ? real_fdatasync : real_fsync;
    const char *calls = getenv ("SB_EIO_SHIM_CALLS");
    const char *on = getenv ("SB_EIO_SHIM_ON");
    const char *control = getenv ("SB_EIO_SHIM_FILE");
    const char *nth = getenv ("SB_EIO_SHIM_NTH");
    struct stat st = {0};
    bool dir = fstat (fd, &st) == 0 && S_ISDIR (st.st_mode);
    bool match = s_listed (calls ? calls : "fdatasync,fsync", call);
    char word[8] = "", ms_word[16] = "";
    const char *sleep_ms = getenv ("SB_EIO_SHIM_SLEEP_MS");
    if (match && control) {
        FILE *file = fopen (control, "r");
        match = file != NULL;
        if (file) {
            if (fscanf (file, "%7s", word) == 1
                && (!strcmp (word, "dir") || !strcmp (word, "file") || !strcmp (word, "any")))
                on = word;
            if (on == word && fscanf (file, "%15s", ms_word) == 1)
                sleep_ms = ms_word;
            fclose (file);
        }
    }
    if (match)
        match = !on || strcmp (on, "any") == 0 || strcmp (on, dir ? "dir" : "file") == 0;
    unsigned long n = 0;
    if (!control && !nth)
        match = false;  //  nothing asked for
    if (match) {
        n = atomic_fetch_add (&s_matched, 1) + 1;
        if (!control && nth)
            match = n == strtoul (nth, NULL, 10);
    }
    if (!match) {
        int rc = real (fd);
        if (rc == 0 && fd >= 0 && fd < S_MAX_FD) {
            pthread_mutex_lock (&s_lock);
            s_dirty[fd].lo = s_dirty[fd].hi = 0;
            pthread_mutex_unlock (&s_lock);
        }
        return rc;
    }
    if (sleep_ms) {
        long ms = strtol (sleep_ms, NULL, 10);
        s_log ("sleep", call, dir, fd, n, (uint64_t) st.st_ino);
        struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep (&pause, &pause) != 0 && errno == EINTR)
            ;
        return real (fd);
    }
    s_log ("eio", call, dir, fd, n, (uint64_t) st.st_ino);
    const char *drop = getenv ("SB_EIO_SHIM_DROP");
    if (drop && strcmp (drop, "1") == 0 && !dir)
        s_drop (fd);
    errno = EIO;
    return -1;
}

int
fdatasync (int fd)
{
    return s_sync ("fdatasync", fd);
}

int
fsync (int fd)
{
    return s_sync ("fsync", fd);
}
