/*  sb_time: small clock helpers shared by the services. */
#ifndef SB_TIME_H_INCLUDED
#define SB_TIME_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define SB_HTTP_DATE_SIZE 30  //  "Sun, 06 Nov 1994 08:49:37 GMT" plus NUL

//  The current time as an HTTP Date header value (IMF-fixdate), with
//  sb_time_utc: civetweb's own Date uses gmtime(), which is not thread-safe.
void sb_time_http_date (char out[SB_HTTP_DATE_SIZE]);

//  The UTC calendar fields of secs (seconds since 1970-01-01T00:00:00Z)
//  into tm: tm_year, tm_mon, tm_mday, tm_hour, tm_min, tm_sec and tm_wday,
//  as gmtime_r sets them (the other fields are zero). Arithmetic only:
//  glibc's gmtime_r takes a process-wide lock on every call, and every
//  HTTP answer and log line asks for the date.
struct tm;
void sb_time_utc (int64_t secs, struct tm *tm);

//  Monotonic microseconds and wall-clock milliseconds.
int64_t sb_time_mono_us (void);
int64_t sb_time_wall_ms (void);

#endif
