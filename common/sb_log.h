/*  sb_log: one-line structured logs for every switchboard binary.

    A line is: time level service module message key=value...
    The sink (stderr) and the level are process-wide, set once by main before
    any thread starts; after that sb_log is thread-safe and lines never
    interleave. By default each line is one write(2) by its caller; after
    sb_log_start a log thread writes debug and info lines in batches (see
    sb_log.c), while warn and error lines are still written before the call
    returns.
*/
#ifndef SB_LOG_H_INCLUDED
#define SB_LOG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SB_LOG_DEBUG = 0,
    SB_LOG_INFO = 1,
    SB_LOG_WARN = 2,
    SB_LOG_ERROR = 3,
    SB_LOG_OFF = 4
} sb_log_level_t;

//  Set the service name and the threshold. Call before starting threads.
void sb_log_init (const char *service, sb_log_level_t level);

//  Start the log thread (after sb_log_init; safe while threads log): from now
//  on debug and info lines are written a few milliseconds later, in batches,
//  so no caller waits for stderr unless the buffer is full. 0, or -1 (lines
//  stay synchronous).
int sb_log_start (void);

//  Write what is buffered and stop the log thread; lines are synchronous
//  again. Registered with atexit by sb_log_start; main calls it last.
void sb_log_stop (void);

//  Parse "debug", "info", "warn", "error", "off". Returns -1 when unknown.
int sb_log_level_parse (const char *text, sb_log_level_t *level);

//  True when a line at this level would be written: check before formatting
//  anything costly.
bool sb_log_enabled (sb_log_level_t level);

//  Write one line. fmt is the short factual message followed by key=value
//  fields, e.g. sb_log (SB_LOG_INFO, "journal", "segment rotated seq=%llu", seq).
void sb_log (sb_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#define sb_debug(module, ...)                                                                      \
    do {                                                                                           \
        if (sb_log_enabled (SB_LOG_DEBUG))                                                         \
            sb_log (SB_LOG_DEBUG, module, __VA_ARGS__);                                            \
    } while (0)
#define sb_info(module, ...) sb_log (SB_LOG_INFO, module, __VA_ARGS__)
#define sb_warn(module, ...) sb_log (SB_LOG_WARN, module, __VA_ARGS__)
#define sb_error(module, ...) sb_log (SB_LOG_ERROR, module, __VA_ARGS__)

//  A repeated error, logged at most once per interval with a count of the
//  lines it held back: a loop that fails the same way each turn writes one
//  line a second, not thousands. One per call site, zeroed (= SB_LOG_EVERY
//  (ms)), used by one thread at a time (an actor's, or under the caller's
//  lock).
typedef struct {
    int64_t interval_us;  //  at most one line per this many microseconds
    int64_t last_us;      //  when the last line was written (0: never)
    uint64_t held;        //  lines not written since then
} sb_log_every_t;

#define SB_LOG_EVERY(ms)                                                                           \
    {                                                                                              \
        (int64_t) (ms) * 1000, 0, 0                                                                \
    }

//  Like sb_log, through limit: the line is written when the interval has
//  passed since the last one, with " repeated=N" appended when N lines were
//  held back meanwhile; otherwise it is counted and dropped. Returns true
//  when it wrote the line.
bool sb_log_every (sb_log_every_t *limit, sb_log_level_t level, const char *module, const char *fmt,
                   ...) __attribute__ ((format (printf, 4, 5)));

//  Thread-safe strerror replacement: writes into buf and returns it.
const char *sb_strerror (int errnum, char *buf, size_t size);

#endif
