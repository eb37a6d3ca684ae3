/*  test_sb_time: UTC calendar fields without gmtime_r, the RFC 1123 dates
    and the two clocks.

    sb_time_utc must agree with gmtime_r on every field it sets, from year
    1 to year 9999, across leap years and days, midnight and negative
    times. Silent on success.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sb_time.h"

#include "sb_check.h"

//  sb_time_utc (secs) equals gmtime_r on the fields it promises.
static void
s_check_utc (int64_t secs)
{
    time_t t = (time_t) secs;
    struct tm want, got;
    if (!gmtime_r (&t, &want))
        return;
    sb_time_utc (secs, &got);
    if (got.tm_year != want.tm_year || got.tm_mon != want.tm_mon || got.tm_mday != want.tm_mday
        || got.tm_hour != want.tm_hour || got.tm_min != want.tm_min || got.tm_sec != want.tm_sec
        || got.tm_wday != want.tm_wday) {
        fprintf (stderr, "%s:%d: sb_time_utc (%lld) is %04d-%02d-%02d %02d:%02d:%02d wday %d\n",
                 __FILE__, __LINE__, (long long) secs, got.tm_year + 1900, got.tm_mon + 1,
                 got.tm_mday, got.tm_hour, got.tm_min, got.tm_sec, got.tm_wday);
        s_failures++;
    }
}

int
main (void)
{
    //  Year 1 to year 9999, every 3 days and an hour and some, so every
    //  hour, weekday and day of month comes round.
    for (int64_t secs = -62135596800LL; secs < 253402300800LL; secs += 3 * 86400 + 3607)
        s_check_utc (secs);
    //  Around the epoch, second by second stride.
    for (int64_t secs = -200000; secs < 200000; secs += 7)
        s_check_utc (secs);
    //  Leap days and the turns of centuries.
    static const int64_t days[] = {
        951782400,    //  2000-02-29 (divisible by 400: leap)
        4107542400,   //  2100-03-01 (divisible by 100: not leap)
        1709164800,   //  2024-02-29
        -2203891200,  //  1900-03-01
        946684799,    //  1999-12-31 23:59:59
        0,           -1, 86399, 86400,
    };
    for (size_t i = 0; i < sizeof days / sizeof days[0]; i++)
        for (int64_t d = -1; d <= 1; d++)
            s_check_utc (days[i] + d);

    //  The HTTP date: IMF-fixdate, 29 characters.
    char date[SB_HTTP_DATE_SIZE];
    sb_time_http_date (date);
    CHECK (strlen (date) == 29 && strcmp (date + 25, " GMT") == 0 && date[3] == ',');

    //  Any time, in either zone: RFC 9110's example, and Twilio's RFC 2822.
    sb_time_rfc1123 (784111777, "GMT", date, sizeof date);
    CHECK_STR (date, "Sun, 06 Nov 1994 08:49:37 GMT");
    char twilio[40];
    sb_time_rfc1123 (1692853305, "+0000", twilio, sizeof twilio);
    CHECK_STR (twilio, "Thu, 24 Aug 2023 05:01:45 +0000");
    sb_time_rfc1123 (951782400 + 86399, "GMT", date, sizeof date);
    CHECK_STR (date, "Tue, 29 Feb 2000 23:59:59 GMT");

    //  The two clocks: milliseconds agree with microseconds, the wall
    //  clock is past 2020 and near time ().
    int64_t us = sb_time_mono_us ();
    int64_t ms = sb_time_mono_ms ();
    CHECK (ms >= us / 1000 && ms - us / 1000 < 1000);
    CHECK (sb_time_mono_ms () >= ms);
    int64_t wall = sb_time_wall_ms ();
    CHECK (wall > 1577836800000LL);
    CHECK (wall / 1000 - (int64_t) time (NULL) <= 1 && (int64_t) time (NULL) - wall / 1000 <= 1);

    if (s_failures) {
        fprintf (stderr, "test_sb_time: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
