/*  test_sb_policy: the reply policy, every decision and every reason.

    The policy is pure: no database, no clock. Each case gives the facts
    (channel, keyword, what is asked, the contact's state, now and the
    window) and the decision, reason and opt-out mark it must give. Silent
    on success; prints the case and what differed on failure. Reads as the
    module's usage example: fill an sb_policy_input_t, call
    sb_policy_decide, queue (or record, or not) what it says.
*/
#include "sb_event.h"
#include "sb_policy.h"

#include <stdio.h>
#include <string.h>

#define HOUR_MS (3600LL * 1000)
#define NOW_MS (1800000000000LL)  //  2027-01-15, any fixed time will do

#define SMS SB_CHANNEL_SMS
#define WHATSAPP SB_CHANNEL_WHATSAPP
#define VOICE SB_CHANNEL_VOICE

typedef struct {
    const char *name;           //  what the case shows
    sb_policy_input_t input;    //  the facts
    sb_policy_decision_t want;  //  the decision
    const char *reason;         //  its reason
    bool opted_out;             //  the contact's mark after
} s_case_t;

//  A contact that wrote an hour ago: inside the WhatsApp window.
#define RECENT .last_inbound_ms = NOW_MS - HOUR_MS, .now_ms = NOW_MS

//  One case per entry: laid out by hand, clang-format leaves it
// clang-format off
static const s_case_t s_cases [] = {
    //  Nothing asked, or an empty rule reply: nothing to queue.
    {"no rule matched", {.channel = SMS, .ask = SB_POLICY_ASK_NONE, RECENT},
     SB_POLICY_NONE, "", false},
    {"rule reply without text", {.channel = SMS, .ask = SB_POLICY_ASK_REPLY, .text = "", RECENT},
     SB_POLICY_NONE, "", false},
    {"rule reply with NULL text", {.channel = SMS, .ask = SB_POLICY_ASK_REPLY, RECENT},
     SB_POLICY_NONE, "", false},

    //  What goes out.
    {"sms reply", {.channel = SMS, .ask = SB_POLICY_ASK_REPLY, .text = "hi", RECENT},
     SB_POLICY_SEND, "", false},
    {"sms forward", {.channel = SMS, .ask = SB_POLICY_ASK_FORWARD, RECENT},
     SB_POLICY_SEND, "", false},
    {"bot answer on sms", {.channel = SMS, .ask = SB_POLICY_ASK_BOT_REPLY, .text = "it is 3",
                           RECENT},
     SB_POLICY_SEND, "", false},
    {"sms has no window", {.channel = SMS, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                           .last_inbound_ms = NOW_MS - 100 * HOUR_MS, .now_ms = NOW_MS},
     SB_POLICY_SEND, "", false},

    //  Opt-out and opt-in keywords.
    {"STOP is consumed", {.channel = SMS, .keyword = SB_POLICY_KEYWORD_OPT_OUT, RECENT},
     SB_POLICY_NONE, "", true},
    {"STOP consumes even a reply asked", {.channel = SMS, .keyword = SB_POLICY_KEYWORD_OPT_OUT,
                                          .ask = SB_POLICY_ASK_REPLY, .text = "bye", RECENT},
     SB_POLICY_NONE, "", true},
    {"STOP again", {.channel = SMS, .keyword = SB_POLICY_KEYWORD_OPT_OUT, .opted_out = true,
                    RECENT},
     SB_POLICY_NONE, "", true},
    {"START clears and is answered", {.channel = SMS, .keyword = SB_POLICY_KEYWORD_OPT_IN,
                                      .ask = SB_POLICY_ASK_REPLY, .text = "welcome back",
                                      .opted_out = true, RECENT},
     SB_POLICY_SEND, "", false},
    {"START without a rule", {.channel = SMS, .keyword = SB_POLICY_KEYWORD_OPT_IN,
                              .opted_out = true, RECENT},
     SB_POLICY_NONE, "", false},

    //  opted_out: replies, forwards and bots' answers alike.
    {"reply to opted out", {.channel = SMS, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                            .opted_out = true, RECENT},
     SB_POLICY_NOT_SENT, "opted_out", true},
    {"forward for opted out", {.channel = SMS, .ask = SB_POLICY_ASK_FORWARD, .opted_out = true,
                               RECENT},
     SB_POLICY_NOT_SENT, "opted_out", true},
    {"bot answer to opted out", {.channel = SMS, .ask = SB_POLICY_ASK_BOT_REPLY, .text = "x",
                                 .opted_out = true, RECENT},
     SB_POLICY_NOT_SENT, "opted_out", true},
    {"opted_out before voice", {.channel = VOICE, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                                .opted_out = true, RECENT},
     SB_POLICY_NOT_SENT, "opted_out", true},
    {"opted_out before the window", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_REPLY,
                                     .text = "hi", .opted_out = true, .now_ms = NOW_MS},
     SB_POLICY_NOT_SENT, "opted_out", true},

    //  unsupported_channel: replies on voice; forwards go out.
    {"reply on voice", {.channel = VOICE, .ask = SB_POLICY_ASK_REPLY, .text = "hi", RECENT},
     SB_POLICY_NOT_SENT, "unsupported_channel", false},
    {"bot answer on voice", {.channel = VOICE, .ask = SB_POLICY_ASK_BOT_REPLY, .text = "hi",
                             RECENT},
     SB_POLICY_NOT_SENT, "unsupported_channel", false},
    {"forward on voice", {.channel = VOICE, .ask = SB_POLICY_ASK_FORWARD, RECENT},
     SB_POLICY_SEND, "", false},

    //  RCS: a supported channel with no session window (Twilio documents
    //  none for RCS): a reply goes out however long ago the user wrote.
    {"rcs reply", {.channel = SB_CHANNEL_RCS, .ask = SB_POLICY_ASK_REPLY, .text = "hi", RECENT},
     SB_POLICY_SEND, "", false},
    {"rcs 25 hours", {.channel = SB_CHANNEL_RCS, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                      .last_inbound_ms = NOW_MS - 25 * HOUR_MS, .now_ms = NOW_MS},
     SB_POLICY_SEND, "", false},
    {"rcs opted out", {.channel = SB_CHANNEL_RCS, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                       .opted_out = true, RECENT},
     SB_POLICY_NOT_SENT, "opted_out", true},

    //  outside_window: WhatsApp replies, 24 hours after the last inbound.
    {"whatsapp inside", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_REPLY, .text = "hi", RECENT},
     SB_POLICY_SEND, "", false},
    {"whatsapp at the edge", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                              .last_inbound_ms = NOW_MS - 24 * HOUR_MS, .now_ms = NOW_MS},
     SB_POLICY_SEND, "", false},
    {"whatsapp 1 ms past", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                            .last_inbound_ms = NOW_MS - 24 * HOUR_MS - 1, .now_ms = NOW_MS},
     SB_POLICY_NOT_SENT, "outside_window", false},
    {"whatsapp 25 hours", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                           .last_inbound_ms = NOW_MS - 25 * HOUR_MS, .now_ms = NOW_MS},
     SB_POLICY_NOT_SENT, "outside_window", false},
    {"whatsapp never wrote", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                              .now_ms = NOW_MS},
     SB_POLICY_NOT_SENT, "outside_window", false},
    {"whatsapp bot answer late", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_BOT_REPLY,
                                  .text = "hi", .last_inbound_ms = NOW_MS - 25 * HOUR_MS,
                                  .now_ms = NOW_MS},
     SB_POLICY_NOT_SENT, "outside_window", false},
    {"whatsapp forward late", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_FORWARD,
                               .last_inbound_ms = NOW_MS - 25 * HOUR_MS, .now_ms = NOW_MS},
     SB_POLICY_SEND, "", false},
    {"a window of one hour", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                              .last_inbound_ms = NOW_MS - 2 * HOUR_MS, .now_ms = NOW_MS,
                              .window_ms = HOUR_MS},
     SB_POLICY_NOT_SENT, "outside_window", false},
    {"a window of three hours", {.channel = WHATSAPP, .ask = SB_POLICY_ASK_REPLY, .text = "hi",
                                 .last_inbound_ms = NOW_MS - 2 * HOUR_MS, .now_ms = NOW_MS,
                                 .window_ms = 3 * HOUR_MS},
     SB_POLICY_SEND, "", false},

    //  bot_no_reply: a bot's empty answer, whatever else holds.
    {"bot said nothing", {.channel = SMS, .ask = SB_POLICY_ASK_BOT_REPLY, .text = "", RECENT},
     SB_POLICY_NOT_SENT, "bot_no_reply", false},
    {"bot said NULL", {.channel = SMS, .ask = SB_POLICY_ASK_BOT_REPLY, RECENT},
     SB_POLICY_NOT_SENT, "bot_no_reply", false},
    {"bot said nothing to opted out", {.channel = VOICE, .ask = SB_POLICY_ASK_BOT_REPLY,
                                       .text = "", .opted_out = true, .now_ms = NOW_MS},
     SB_POLICY_NOT_SENT, "bot_no_reply", true},
};
// clang-format on

int
main (void)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++) {
        const s_case_t *c = &s_cases[i];
        sb_policy_t got = sb_policy_decide (&c->input);
        if (got.decision != c->want || !got.reason || strcmp (got.reason, c->reason) != 0
            || got.opted_out != c->opted_out) {
            fprintf (stderr,
                     "%s:%d: case \"%s\": got decision %d reason \"%s\" opted_out %d,"
                     " want %d \"%s\" %d\n",
                     __FILE__, __LINE__, c->name, (int) got.decision,
                     got.reason ? got.reason : "(null)", got.opted_out, (int) c->want, c->reason,
                     c->opted_out);
            failures++;
        }
    }
    //  Pure: the same input, the same answer, and the input untouched.
    sb_policy_input_t in = {.channel = WHATSAPP,
                            .ask = SB_POLICY_ASK_REPLY,
                            .text = "hi",
                            .keyword = SB_POLICY_KEYWORD_OPT_IN,
                            .opted_out = true,
                            RECENT};
    sb_policy_input_t copy = in;
    sb_policy_t first = sb_policy_decide (&in);
    sb_policy_t again = sb_policy_decide (&in);
    if (memcmp (&in, &copy, sizeof in) != 0 || first.decision != again.decision
        || first.reason != again.reason || first.opted_out != again.opted_out) {
        fprintf (stderr, "%s:%d: sb_policy_decide is not pure\n", __FILE__, __LINE__);
        failures++;
    }
    if (failures) {
        fprintf (stderr, "test_sb_policy: %d failure(s)\n", failures);
        return 1;
    }
    return 0;
}
