/*  sb_bench_sms: the benchmark's inbound SMS (see sb_bench_sms.h). Plain
    formatting, no state: the load tool and the baseline call it with the
    same n and tag and get the same message.
*/
#include "sb_bench_sms.h"

#include <inttypes.h>
#include <stdio.h>

void
sb_bench_sms_make (sb_bench_sms_t *sms, uint64_t n, const char *tag, long contacts)
{
    uint64_t k = contacts > 0 ? (uint64_t) contacts : 1;
    snprintf (sms->sid, sizeof sms->sid, "SM%.8s%024" PRIx64, tag, n);
    snprintf (sms->from, sizeof sms->from, "+1555%07" PRIu64, (n % k) % 10000000u);
    snprintf (sms->text, sizeof sms->text, "bench %" PRIu64, n);
}

sb_form_t *
sb_bench_sms_form (const sb_bench_sms_t *sms, const char *account)
{
    const char *pairs[][2] = {
        {"ToCountry", "US"},         {"ToState", "CA"},
        {"SmsMessageSid", sms->sid}, {"NumMedia", "0"},
        {"ToCity", "SAUSALITO"},     {"FromZip", "94103"},
        {"SmsSid", sms->sid},        {"FromState", "CA"},
        {"SmsStatus", "received"},   {"FromCity", "SAN FRANCISCO"},
        {"Body", sms->text},         {"FromCountry", "US"},
        {"To", SB_BENCH_SMS_TO},     {"MessagingServiceSid", "MGd1b2c3d4e5f60718293a4b5c6d7e8f93"},
        {"ToZip", "94965"},          {"NumSegments", "1"},
        {"MessageSid", sms->sid},    {"AccountSid", account},
        {"From", sms->from},         {"ApiVersion", "2010-04-01"}};
    sb_form_t *form = sb_form_new ();
    if (!form)
        return NULL;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (sb_form_add (form, pairs[i][0], pairs[i][1])) {
            sb_form_destroy (&form);
            return NULL;
        }
    return form;
}
