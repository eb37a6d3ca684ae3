/*  sb_time: the two clocks and the RFC 1123 dates (see the header). */
#include "sb_time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void
sb_time_utc (int64_t secs, struct tm *tm)
{
    memset (tm, 0, sizeof *tm);
    int64_t days = secs / 86400;
    int64_t rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    tm->tm_hour = (int) (rem / 3600);
    tm->tm_min = (int) (rem % 3600 / 60);
    tm->tm_sec = (int) (rem % 60);
    tm->tm_wday = (int) (((days + 4) % 7 + 7) % 7);  //  1970-01-01 was a Thursday
    //  Days to year, month and day in the proleptic Gregorian calendar, in
    //  400-year eras starting on March 1st (H. Hinnant, "chrono-Compatible
    //  Low-Level Date Algorithms", civil_from_days).
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                       //  [0, 146096]
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  //  [0, 399]
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                //  [0, 365]
    int64_t mp = (5 * doy + 2) / 153;                                     //  [0, 11], March first
    int64_t month = mp < 10 ? mp + 3 : mp - 9;                            //  [1, 12]
    int64_t year = yoe + era * 400 + (month <= 2);
    tm->tm_mday = (int) (doy - (153 * mp + 2) / 5 + 1);
    tm->tm_mon = (int) (month - 1);
    tm->tm_year = (int) (year - 1900);
}

void
sb_time_rfc1123 (int64_t secs, const char *zone, char *out, size_t size)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    sb_time_utc (secs, &tm);
    snprintf (out, size, "%s, %02d %s %04d %02d:%02d:%02d %s", days[tm.tm_wday % 7],
              tm.tm_mday % 100, months[tm.tm_mon % 12], (tm.tm_year + 1900) % 10000,
              tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100, zone);
}

void
sb_time_http_date (char out[SB_HTTP_DATE_SIZE])
{
    sb_time_rfc1123 ((int64_t) time (NULL), "GMT", out, SB_HTTP_DATE_SIZE);
}

int64_t
sb_time_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
sb_time_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
sb_time_wall_ms (void)
{
    return sb_time_wall_us () / 1000;
}

int64_t
sb_time_wall_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
