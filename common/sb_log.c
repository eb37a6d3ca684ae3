/*  sb_log: one line per event on stderr, with level, UTC time, service and
    module, then the message and its key=value fields.

    The service name and level are the process's log sink: global, written
    once by main before any thread starts and read-only afterwards (one of
    the three globals STYLE.md allows). A line is formatted into a stack
    buffer and written with a single write(2), so lines from threads never
    interleave. Lines longer than the buffer are cut and end in "...".
*/
#include "sb_log.h"
#include "sb_time.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

//  The log sink: set once before threads start (see above).
static const char *s_service = "switchboard";
static sb_log_level_t s_level = SB_LOG_INFO;

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

void
sb_log (sb_log_level_t level, const char *module, const char *fmt, ...)
{
    if (!sb_log_enabled (level))
        return;
    int saved_errno = errno;
    char line[2048];
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    struct tm tm;
    sb_time_utc ((int64_t) now.tv_sec, &tm);  //  gmtime_r takes a global lock
    int n = snprintf (line, sizeof line,
                      "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %s ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                      tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000,
                      s_level_names[level], s_service, module);
    if (n < 0)
        n = 0;
    size_t used = (size_t) n < sizeof line ? (size_t) n : sizeof line - 1;
    va_list args;
    va_start (args, fmt);
    int m = vsnprintf (line + used, sizeof line - used, fmt, args);
    va_end (args);
    if (m < 0)
        m = 0;
    if ((size_t) m >= sizeof line - used - 1) {
        used = sizeof line - 5;
        memcpy (line + used, "...", 3);
        used += 3;
    }
    else
        used += (size_t) m;
    line[used++] = '\n';
    ssize_t rc = write (STDERR_FILENO, line, used);
    (void) rc;
    errno = saved_errno;
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
