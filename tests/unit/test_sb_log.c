/*  test_sb_log: the line format, and the log thread of sb_log_start.

    stderr is pointed at a temporary file or a pipe (failures are reported
    on the real stderr, kept aside). Checks: a line's fields and the cut of
    an over-long line; errno kept; with the log thread, every line of eight
    threads arrives once, whole and in each thread's order, and a warn line
    is written, with every line before it, when sb_log returns; a caller
    does not wait for a reader that does not read until the buffer is full,
    then waits (nothing dropped); after sb_log_stop lines are synchronous
    again, and the thread starts again. alarm() turns a hang into a failure.
    Silent on success.
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sb_log.h"

static int s_err = -1;  //  the real stderr

#define SB_CHECK_PRINT(...) dprintf (s_err, __VA_ARGS__)
#include "sb_check.h"

#define S_THREADS 8
#define S_LINES 5000

//  stderr goes to a new empty temporary file; returns its fd for reading.
static int
s_stderr_to_file (void)
{
    char name[] = "/tmp/test_sb_log.XXXXXX";
    int fd = mkstemp (name);
    if (fd < 0) {
        dprintf (s_err, "mkstemp failed\n");
        exit (1);
    }
    unlink (name);
    dup2 (fd, STDERR_FILENO);
    return fd;
}

//  The whole file, NUL-terminated (caller frees).
static char *
s_slurp (int fd, size_t *size)
{
    off_t end = lseek (fd, 0, SEEK_END);
    char *text = malloc ((size_t) end + 1);
    size_t got = 0;
    while (got < (size_t) end) {
        ssize_t n = pread (fd, text + got, (size_t) end - got, (off_t) got);
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    text[got] = '\0';
    *size = got;
    return text;
}

static size_t
s_count (const char *text, const char *needle)
{
    size_t count = 0;
    for (const char *p = strstr (text, needle); p; p = strstr (p + 1, needle))
        count++;
    return count;
}

static size_t
s_lines (const char *text)
{
    size_t count = 0;
    for (; *text; text++)
        count += *text == '\n';
    return count;
}

static void
s_check_format (void)
{
    int fd = s_stderr_to_file ();
    sb_log_init ("tester", SB_LOG_INFO);
    errno = ENOENT;
    sb_info ("unit", "hello key=%d", 42);
    CHECK (errno == ENOENT);
    sb_debug ("unit", "below the level");
    size_t size;
    char *text = s_slurp (fd, &size);
    //  2026-11-22T04:01:31.162Z info tester unit hello key=42
    CHECK (size == 24 + strlen (" info tester unit hello key=42\n"));
    CHECK (size > 24 && text[4] == '-' && text[10] == 'T' && text[19] == '.' && text[23] == 'Z');
    CHECK (size > 24 && strcmp (text + 24, " info tester unit hello key=42\n") == 0);
    free (text);

    //  A line longer than the line buffer is cut and says so.
    char *big = malloc (5000);
    memset (big, 'x', 4999);
    big[4999] = '\0';
    //  stderr shares this fd's offset: back to the start of the file.
    CHECK (ftruncate (fd, 0) == 0 && lseek (fd, 0, SEEK_SET) == 0);
    sb_warn ("unit", "%s", big);
    text = s_slurp (fd, &size);
    CHECK (size == 2047);
    CHECK (size == 2047 && memcmp (text + size - 4, "...\n", 4) == 0);
    CHECK (s_lines (text) == 1);
    free (text);
    free (big);
    close (fd);
}

//  sb_log_every: a loop failing the same way writes one line an interval,
//  and the next line says how many it held back.
static void
s_check_every (void)
{
    int fd = s_stderr_to_file ();
    sb_log_init ("tester", SB_LOG_INFO);
    sb_log_every_t limit = SB_LOG_EVERY (60000);
    size_t written = 0;
    for (int i = 0; i < 1000; i++)
        written += sb_log_every (&limit, SB_LOG_ERROR, "unit", "insert failed row=%d", i);
    CHECK (written == 1);
    size_t size;
    char *text = s_slurp (fd, &size);
    CHECK (s_lines (text) == 1 && s_count (text, "insert failed row=0\n") == 1);
    free (text);
    limit.last_us -= limit.interval_us;  //  the interval has passed
    CHECK (sb_log_every (&limit, SB_LOG_ERROR, "unit", "insert failed row=%d", 1000));
    text = s_slurp (fd, &size);
    CHECK (s_lines (text) == 2 && s_count (text, "insert failed row=1000 repeated=999\n") == 1);
    free (text);
    CHECK (!sb_log_every (&limit, SB_LOG_ERROR, "unit", "again"));
    CHECK (limit.held == 1);
    //  Below the level nothing is written or counted.
    sb_log_every_t quiet = SB_LOG_EVERY (1000);
    CHECK (!sb_log_every (&quiet, SB_LOG_DEBUG, "unit", "debug"));
    CHECK (quiet.held == 0 && quiet.last_us == 0);
    close (fd);
}

static void *
s_writer (void *args)
{
    int id = (int) (intptr_t) args;
    for (int i = 0; i < S_LINES; i++)
        sb_info ("unit", "thread=%d line=%d filler=%s", id, i, "abcdefghijklmnopqrstuvwxyz");
    return NULL;
}

//  Every line once, whole, in order per thread.
static void
s_check_lines (const char *text, int threads, int lines)
{
    int *next = calloc ((size_t) threads, sizeof *next);
    const char *p = text;
    size_t bad = 0;
    while (*p) {
        const char *eol = strchr (p, '\n');
        if (!eol) {
            bad++;
            break;
        }
        //  Copied out: sscanf would measure the whole text for every line.
        char copy[256];
        size_t n = (size_t) (eol - p) < sizeof copy - 1 ? (size_t) (eol - p) : sizeof copy - 1;
        memcpy (copy, p, n);
        copy[n] = '\0';
        int id, line;
        const char *fields = strstr (copy, " thread=");
        if (fields && sscanf (fields, " thread=%d line=%d", &id, &line) == 2 && id >= 0
            && id < threads) {
            if (line != next[id] || strncmp (eol - 26, "abcdefghijklmnopqrstuvwxyz", 26) != 0)
                bad++;
            next[id] = line + 1;
        }
        p = eol + 1;
    }
    CHECK (bad == 0);
    for (int i = 0; i < threads; i++)
        CHECK (next[i] == lines);
    free (next);
}

static void
s_check_threads (void)
{
    int fd = s_stderr_to_file ();
    sb_log_init ("tester", SB_LOG_INFO);
    CHECK (sb_log_start () == 0);
    pthread_t threads[S_THREADS];
    for (int i = 0; i < S_THREADS; i++)
        pthread_create (&threads[i], NULL, s_writer, (void *) (intptr_t) i);
    for (int i = 0; i < S_THREADS; i++)
        pthread_join (threads[i], NULL);
    //  A warn line is out when sb_log returns, and so is everything before it.
    sb_warn ("unit", "marker after the threads");
    size_t size;
    char *text = s_slurp (fd, &size);
    CHECK (s_count (text, "marker after the threads\n") == 1);
    CHECK (s_lines (text) == S_THREADS * S_LINES + 1);
    s_check_lines (text, S_THREADS, S_LINES);
    free (text);

    //  An info line alone is written without a stop or a later line.
    sb_info ("unit", "lonely line");
    bool seen = false;
    for (int i = 0; i < 400 && !seen; i++) {
        text = s_slurp (fd, &size);
        seen = s_count (text, "lonely line\n") == 1;
        free (text);
        if (!seen)
            nanosleep (&(struct timespec){0, 5000000}, NULL);
    }
    CHECK (seen);
    sb_log_stop ();

    //  Stopped: synchronous again.
    sb_info ("unit", "after the stop");
    text = s_slurp (fd, &size);
    CHECK (s_count (text, "after the stop\n") == 1);
    free (text);
    close (fd);
}

typedef struct {
    int lines;  //  lines to log
    int first;  //  number of the first
} s_burst_t;

static void *
s_burst (void *args)
{
    s_burst_t *burst = args;
    for (int i = 0; i < burst->lines; i++)
        sb_info ("unit", "thread=0 line=%d filler=%s", burst->first + i,
                 "abcdefghijklmnopqrstuvwxyz");
    return NULL;
}

//  A reader that stalls: callers do not wait until the buffer is full, and
//  then they wait instead of dropping lines.
static void
s_check_stalled_reader (void)
{
    int pipefd[2];
    CHECK (pipe (pipefd) == 0);
    int capacity = fcntl (pipefd[1], F_GETPIPE_SZ);
    CHECK (capacity > 0);
    dup2 (pipefd[1], STDERR_FILENO);
    close (pipefd[1]);
    sb_log_init ("tester", SB_LOG_INFO);
    CHECK (sb_log_start () == 0);  //  a second start after a stop

    //  Past what the pipe holds, with no reader: synchronous logging would
    //  block here for good (the alarm fails the test).
    const int line_size = 100;  //  roughly; the count below uses the real size
    int early = (capacity + 16 * 1024) / line_size;
    s_burst_t first = {early, 0};
    s_burst (&first);

    //  Far past what the buffers hold: this thread has to wait for room.
    s_burst_t second = {40000, early};
    pthread_t thread;
    pthread_create (&thread, NULL, s_burst, &second);
    nanosleep (&(struct timespec){0, 50000000}, NULL);

    //  Read it all, slowly at first.
    size_t cap = 8u * 1024 * 1024, len = 0;
    char *text = malloc (cap);
    int total = early + second.lines;
    int newlines = 0;
    while (newlines < total && len < cap - 1) {
        ssize_t n = read (pipefd[0], text + len, len < 256 * 1024 ? 4096 : cap - 1 - len);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            newlines += text[len + (size_t) i] == '\n';
        len += (size_t) n;
        if (len < 256 * 1024)
            nanosleep (&(struct timespec){0, 200000}, NULL);
    }
    text[len] = '\0';
    pthread_join (thread, NULL);
    CHECK (newlines == total);
    s_check_lines (text, 1, total);
    free (text);
    sb_log_stop ();
    close (pipefd[0]);
}

int
main (void)
{
    s_err = dup (STDERR_FILENO);
    alarm (20);
    s_check_format ();
    s_check_every ();
    s_check_threads ();
    s_check_stalled_reader ();
    if (s_failures)
        dprintf (s_err, "test_sb_log: %d failure(s)\n", s_failures);
    return s_failures ? 1 : 0;
}
