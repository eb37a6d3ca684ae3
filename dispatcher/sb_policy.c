/*  sb_policy: the reply policy (see sb_policy.h for what it decides).

    Pure: the same input always gives the same decision, so the batch write
    and the bot's answers cannot disagree, and tests need no database and
    no clock. The callers gather the input: the batch write from the
    contacts it locked and its own clock (or a test's), the settle from the
    outbox row's contact and the database's clock.
*/
#include "sb_policy.h"

#include "sb_event.h"

//  The channels a text reply can go out on: SMS, WhatsApp (inside its
//  window, below) and RCS, which has no session window in Twilio's RCS
//  documentation; not voice, nor a channel we do not know.
static bool
s_can_reply (int channel)
{
    return channel == SB_CHANNEL_SMS || channel == SB_CHANNEL_WHATSAPP || channel == SB_CHANNEL_RCS;
}

sb_policy_t
sb_policy_decide (const sb_policy_input_t *input)
{
    sb_policy_t out = {SB_POLICY_NONE, "", input->opted_out};
    if (input->keyword == SB_POLICY_KEYWORD_OPT_OUT) {
        //  Consumed: the rules never see it.
        out.opted_out = true;
        return out;
    }
    if (input->keyword == SB_POLICY_KEYWORD_OPT_IN)
        out.opted_out = false;
    bool reply = input->ask == SB_POLICY_ASK_REPLY || input->ask == SB_POLICY_ASK_BOT_REPLY;
    bool empty = !input->text || !*input->text;
    if (input->ask == SB_POLICY_ASK_NONE || (input->ask == SB_POLICY_ASK_REPLY && empty))
        return out;
    int64_t window_ms = input->window_ms > 0 ? input->window_ms : SB_POLICY_WINDOW_MS;
    if (input->ask == SB_POLICY_ASK_BOT_REPLY && empty)
        out.reason = "bot_no_reply";
    else if (out.opted_out)
        out.reason = "opted_out";
    else if (reply && !s_can_reply (input->channel))
        out.reason = "unsupported_channel";
    else if (reply && input->channel == SB_CHANNEL_WHATSAPP
             && (input->last_inbound_ms == 0 || input->now_ms - input->last_inbound_ms > window_ms))
        out.reason = "outside_window";
    out.decision = *out.reason ? SB_POLICY_NOT_SENT : SB_POLICY_SEND;
    return out;
}
