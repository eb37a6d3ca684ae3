/*  sb_time: the clocks and dates every binary reads: monotonic time for
    deadlines and intervals, wall-clock time for what is stored or sent,
    UTC calendar fields and RFC 1123 dates without gmtime_r's lock.
*/
#ifndef SB_TIME_H_INCLUDED
#define SB_TIME_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define SB_HTTP_DATE_SIZE 30  //  "Sun, 06 Nov 1994 08:49:37 GMT" plus NUL

//  The current time as an HTTP Date header value (IMF-fixdate), with
//  sb_time_utc: civetweb's own Date uses gmtime(), which is not thread-safe.
void sb_time_http_date (char out[SB_HTTP_DATE_SIZE]);

//  secs (since 1970-01-01T00:00:00Z) as "Sun, 06 Nov 1994 08:49:37 " and
//  zone into out (size bytes, truncated to fit): zone "GMT" is an HTTP
//  date (IMF-fixdate), "+0000" an RFC 2822 date as Twilio's API writes.
void sb_time_rfc1123 (int64_t secs, const char *zone, char *out, size_t size);

//  The UTC calendar fields of secs (seconds since 1970-01-01T00:00:00Z)
//  into tm: tm_year, tm_mon, tm_mday, tm_hour, tm_min, tm_sec and tm_wday,
//  as gmtime_r sets them (the other fields are zero). Arithmetic only:
//  glibc's gmtime_r takes a process-wide lock on every call, and every
//  HTTP answer and log line asks for the date.
struct tm;
void sb_time_utc (int64_t secs, struct tm *tm);

//  Monotonic microseconds and milliseconds (CLOCK_MONOTONIC), for
//  deadlines, intervals and ages: they never jump with the wall clock.
int64_t sb_time_mono_us (void);
int64_t sb_time_mono_ms (void);
//  Wall-clock milliseconds since 1970 (CLOCK_REALTIME), for times that
//  are stored or sent: an event's receive time, a row's timestamp.
int64_t sb_time_wall_ms (void);
//  The same in microseconds.
int64_t sb_time_wall_us (void);

#endif
