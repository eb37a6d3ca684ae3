/*  sb_bench_sms: the inbound SMS of the dispatcher benchmark, shared by the
    load tool (sb-bench-load posts it) and the libpq baseline
    (sb-bench-pqbase stores its rows), so both handle the same message.

    Webhook n of a run has the MessageSid "SM" + the run's 8-hex-digit tag
    + n as 24 hex digits, the text "bench <n>", the sender
    "+1555" + (n mod contacts) as 7 digits, and the recipient
    SB_BENCH_SMS_TO; its form carries the fields of a real Twilio inbound
    SMS (tests/conformance/twilio-sms-inbound.form) in Twilio's order.
*/
#ifndef SB_BENCH_SMS_H_INCLUDED
#define SB_BENCH_SMS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "sb_form.h"

#define SB_BENCH_SMS_TO "+15558675310"  //  our number: the webhooks' To
#define SB_BENCH_SMS_SID_SIZE 35        //  "SM" + 32 hex digits + NUL
#define SB_BENCH_SMS_ADDR_SIZE 16       //  "+1555" + 7 digits + NUL
#define SB_BENCH_SMS_TEXT_SIZE 32       //  "bench " + a number + NUL

//  The identity of webhook n: its MessageSid, sender and text.
typedef struct {
    char sid[SB_BENCH_SMS_SID_SIZE];    //  MessageSid
    char from[SB_BENCH_SMS_ADDR_SIZE];  //  the sender
    char text[SB_BENCH_SMS_TEXT_SIZE];  //  Body
} sb_bench_sms_t;

//  Fill sms for webhook n of the run tagged tag (8 hex digits) with
//  contacts distinct senders (at least 1).
void sb_bench_sms_make (sb_bench_sms_t *sms, uint64_t n, const char *tag, long contacts);

//  The webhook's form, as Twilio posts it. account is the AccountSid.
//  Caller owns the return value; NULL when out of memory.
sb_form_t *sb_bench_sms_form (const sb_bench_sms_t *sms, const char *account);

#endif
