/*  sb_time: small clock helpers shared by the services. */
#ifndef SB_TIME_H_INCLUDED
#define SB_TIME_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define SB_HTTP_DATE_SIZE 30  //  "Sun, 06 Nov 1994 08:49:37 GMT" plus NUL

//  The current time as an HTTP Date header value (IMF-fixdate), with
//  gmtime_r: civetweb's own Date uses gmtime(), which is not thread-safe.
void sb_time_http_date (char out[SB_HTTP_DATE_SIZE]);

//  Monotonic microseconds and wall-clock milliseconds.
int64_t sb_time_mono_us (void);
int64_t sb_time_wall_ms (void);

#endif
