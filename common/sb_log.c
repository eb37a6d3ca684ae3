/*  sb_log: one line per event on stderr, with level, UTC time, service and
    module, then the message and its key=value fields.

    The service name, the level and the asynchronous writer below are the
    process's log sink: global (one of the three globals STYLE.md allows),
    set up by main before any thread starts. A line is formatted into a
    stack buffer by the thread that logs it; lines longer than the buffer
    are cut and end in "...". Lines from threads never interleave.

    Until sb_log_start, and after sb_log_stop, each line is one write(2) by
    the thread that logs it. The services start the log thread: then a
    debug or info line is copied into a buffer under the sink's mutex and
    the call returns; the log thread writes what has gathered S_FLUSH_MS
    after the first line of a batch, in one write(2), outside the mutex
    (double buffering: callers fill one buffer while the other is written).
    An HTTP worker answering a webhook therefore never waits for stderr:
    a write(2) to a file blocks on the inode lock that the other workers'
    lines hold (and on the file system's journal), and to a pipe whenever
    its reader (docker, journald) lags. Nothing is dropped: when the buffer
    is full, the caller waits for room. A warn or error line is written at
    once, and the call returns only when it is, with every line before it:
    those are the lines wanted after a crash. What a crash can lose is the
    debug and info lines of its last S_FLUSH_MS; sb_log_stop (also run at
    exit) writes the rest.

    The log thread is a plain thread, not a czmq actor: every thread of the
    process logs, and handing it lines over ZeroMQ would take a socket per
    thread (sb_writer.c measured ~60 KiB each). Its mutex is never held
    across the write(2).
*/
#include "sb_log.h"
#include "sb_time.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define S_LINE_MAX 2048        //  one formatted line, newline included
#define S_BUFFER (32u * 1024)  //  each of the two buffers
#define S_FLUSH_MS 5           //  a batch gathers this long at most

//  The log sink: set once before threads start (see above).
static const char *s_service = "switchboard";
static sb_log_level_t s_level = SB_LOG_INFO;

//  The asynchronous writer, part of the log sink; all fields under `lock`.
static struct {
    pthread_mutex_t lock;     //  guards every field below
    pthread_cond_t wake;      //  to the log thread: lines, urgency, stop
    pthread_cond_t progress;  //  to callers: `written` advanced, or stopped
    pthread_t thread;         //  the log thread, while running
    char *fill;               //  buffer callers append to
    char *out;                //  buffer the log thread writes from
    size_t len;               //  bytes in fill
    uint64_t appended;        //  bytes ever appended to fill
    uint64_t written;         //  bytes ever taken out of fill and written
    bool running;             //  lines go to the log thread
    bool idle;                //  the log thread waits for a first line
    bool urgent;              //  write now: a warn/error line, or fill half full
    bool stopping;            //  sb_log_stop asked the thread to finish
} s_async = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *s_level_names[] = {"debug", "info", "warn", "error", "off"};

void
sb_log_init (const char *service, sb_log_level_t level)
{
    s_service = service;
    s_level = level;
}

int
sb_log_level_parse (const char *text, sb_log_level_t *level)
{
    for (int i = 0; i <= SB_LOG_OFF; i++)
        if (strcasecmp (text, s_level_names[i]) == 0) {
            *level = (sb_log_level_t) i;
            return 0;
        }
    if (strcasecmp (text, "warning") == 0) {
        *level = SB_LOG_WARN;
        return 0;
    }
    return -1;
}

bool
sb_log_enabled (sb_log_level_t level)
{
    return level >= s_level && level < SB_LOG_OFF;
}

//  All of it, unless stderr fails: then there is nowhere to say so.
static void
s_write_all (const char *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write (STDERR_FILENO, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        data += n;
        size -= (size_t) n;
    }
}

static void *
s_log_thread (void *args)
{
    (void) args;
    pthread_mutex_lock (&s_async.lock);
    while (true) {
        while (s_async.len == 0 && !s_async.stopping) {
            s_async.idle = true;
            pthread_cond_wait (&s_async.wake, &s_async.lock);
        }
        s_async.idle = false;
        if (s_async.len == 0)
            break;  //  stopping, and all written
        //  Let the batch gather, unless a line is waiting to be written.
        struct timespec deadline;
        clock_gettime (CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += S_FLUSH_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!s_async.urgent && !s_async.stopping)
            if (pthread_cond_timedwait (&s_async.wake, &s_async.lock, &deadline) == ETIMEDOUT)
                break;
        char *out = s_async.fill;
        size_t size = s_async.len;
        s_async.fill = s_async.out;
        s_async.out = out;
        s_async.len = 0;
        s_async.urgent = false;
        pthread_mutex_unlock (&s_async.lock);
        s_write_all (out, size);
        pthread_mutex_lock (&s_async.lock);
        s_async.written += size;
        pthread_cond_broadcast (&s_async.progress);
    }
    s_async.running = false;
    pthread_cond_broadcast (&s_async.progress);
    pthread_mutex_unlock (&s_async.lock);
    return NULL;
}

int
sb_log_start (void)
{
    pthread_mutex_lock (&s_async.lock);
    bool running = s_async.running;
    pthread_mutex_unlock (&s_async.lock);
    if (running)
        return 0;
    if (!s_async.fill)
        s_async.fill = malloc (S_BUFFER);
    if (!s_async.out)
        s_async.out = malloc (S_BUFFER);
    if (!s_async.fill || !s_async.out)
        return -1;
    static bool initialized = false;  //  the conditions and the atexit hook, once
    if (!initialized) {
        pthread_condattr_t attr;
        pthread_condattr_init (&attr);
        pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
        pthread_cond_init (&s_async.wake, &attr);
        pthread_condattr_destroy (&attr);
        pthread_cond_init (&s_async.progress, NULL);
        //  Lines buffered when main returns or something calls exit().
        atexit (sb_log_stop);
        initialized = true;
    }
    //  Other threads may be logging already: from the next line on, theirs
    //  go to the buffer too.
    pthread_mutex_lock (&s_async.lock);
    s_async.running = true;
    s_async.stopping = false;
    int rc = pthread_create (&s_async.thread, NULL, s_log_thread, NULL);
    if (rc != 0)
        s_async.running = false;
    pthread_mutex_unlock (&s_async.lock);
    return rc == 0 ? 0 : -1;
}

void
sb_log_stop (void)
{
    pthread_mutex_lock (&s_async.lock);
    if (!s_async.running || s_async.stopping) {
        pthread_mutex_unlock (&s_async.lock);
        return;
    }
    s_async.stopping = true;
    pthread_cond_signal (&s_async.wake);
    pthread_mutex_unlock (&s_async.lock);
    pthread_join (s_async.thread, NULL);
    pthread_mutex_lock (&s_async.lock);
    s_async.stopping = false;
    free (s_async.fill);
    free (s_async.out);
    s_async.fill = NULL;
    s_async.out = NULL;
    pthread_mutex_unlock (&s_async.lock);
}

//  Hands one line to the log thread, or writes it when there is none.
static void
s_emit (sb_log_level_t level, const char *line, size_t size)
{
    pthread_mutex_lock (&s_async.lock);
    while (s_async.running && s_async.len + size > S_BUFFER) {
        //  Full: wait for room rather than drop a line.
        s_async.urgent = true;
        pthread_cond_signal (&s_async.wake);
        pthread_cond_wait (&s_async.progress, &s_async.lock);
    }
    if (!s_async.running) {
        pthread_mutex_unlock (&s_async.lock);
        s_write_all (line, size);
        return;
    }
    memcpy (s_async.fill + s_async.len, line, size);
    s_async.len += size;
    s_async.appended += size;
    uint64_t mine = s_async.appended;
    bool now = level >= SB_LOG_WARN;
    if (now || s_async.len > S_BUFFER / 2)
        s_async.urgent = true;
    if (s_async.idle || s_async.urgent)
        pthread_cond_signal (&s_async.wake);
    //  The log thread writes everything before it stops, so a stop ends
    //  this wait with the line written.
    while (now && s_async.running && s_async.written < mine)
        pthread_cond_wait (&s_async.progress, &s_async.lock);
    pthread_mutex_unlock (&s_async.lock);
}

static void s_vlog (sb_log_level_t level, const char *module, uint64_t repeated, const char *fmt,
                    va_list args) __attribute__ ((format (printf, 4, 0)));

static void
s_vlog (sb_log_level_t level, const char *module, uint64_t repeated, const char *fmt, va_list args)
{
    int saved_errno = errno;
    char line[S_LINE_MAX];
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    struct tm tm;
    sb_time_utc ((int64_t) now.tv_sec, &tm);  //  gmtime_r takes a global lock
    int n = snprintf (line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %s ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, now.tv_nsec / 1000000, s_level_names[level], s_service, module);
    if (n < 0)
        n = 0;
    size_t used = (size_t) n < sizeof line ? (size_t) n : sizeof line - 1;
    int m = vsnprintf (line + used, sizeof line - used, fmt, args);
    if (m < 0)
        m = 0;
    if (repeated > 0 && (size_t) m < sizeof line - used - 1) {
        int r = snprintf (line + used + m, sizeof line - used - (size_t) m, " repeated=%llu",
                          (unsigned long long) repeated);
        if (r > 0)
            m += r;
    }
    if ((size_t) m >= sizeof line - used - 1) {
        used = sizeof line - 5;
        memcpy (line + used, "...", 3);
        used += 3;
    }
    else
        used += (size_t) m;
    line[used++] = '\n';
    s_emit (level, line, used);
    errno = saved_errno;
}

void
sb_log (sb_log_level_t level, const char *module, const char *fmt, ...)
{
    if (!sb_log_enabled (level))
        return;
    va_list args;
    va_start (args, fmt);
    s_vlog (level, module, 0, fmt, args);
    va_end (args);
}

bool
sb_log_every (sb_log_every_t *limit, sb_log_level_t level, const char *module, const char *fmt, ...)
{
    if (!sb_log_enabled (level))
        return false;
    int64_t now = sb_time_mono_us ();
    if (limit->last_us != 0 && now - limit->last_us < limit->interval_us) {
        limit->held++;
        return false;
    }
    uint64_t held = limit->held;
    limit->last_us = now;
    limit->held = 0;
    va_list args;
    va_start (args, fmt);
    s_vlog (level, module, held, fmt, args);
    va_end (args);
    return true;
}

const char *
sb_strerror (int errnum, char *buf, size_t size)
{
    //  GNU strerror_r may return a static string instead of filling buf.
    const char *msg = strerror_r (errnum, buf, size);
    if (msg != buf)
        snprintf (buf, size, "%s", msg);
    return buf;
}
