/*  sb_policy: whether a reply or a forward may go out, and if not, why.

    One pure function, sb_policy_decide, decides for both paths that queue
    sends: a rule's reply or forward for a new inbound event (the batch
    write, sb_store_write) and a bot's answer to a forward (sb_store_settle).
    It reads no clock and does no I/O: the caller passes the event's facts,
    the contact's state and now. Its reasons are the strings stored in
    outbox.reason.

    The policy, in this order:
    - The opt-out and opt-in keywords (the rules file's lists) apply to
      messages. An opt-out keyword marks the contact opted out and is
      consumed: no rule is asked about it (callers do not ask them) and
      nothing is sent. An opt-in keyword clears the mark, then the message
      goes to the rules like any other, so it may be answered.
    - A rule's reply with no text, or nothing asked: nothing to queue.
    - A bot's empty answer: not sent, "bot_no_reply".
    - Anything asked for an opted-out contact: not sent, "opted_out".
    - A reply (a rule's or a bot's) on the voice channel: not sent,
      "unsupported_channel". Forwards go out on any channel.
    - A WhatsApp reply when the contact's last inbound message is older
      than the window (24 hours) before now, or there was none: not sent,
      "outside_window". Other channels have no window.
*/
#ifndef SB_POLICY_H_INCLUDED
#define SB_POLICY_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

//  Default WhatsApp customer-service window.
#define SB_POLICY_WINDOW_MS (24LL * 3600 * 1000)

//  What an inbound message's text is, by the rules file's keyword lists.
typedef enum {
    SB_POLICY_KEYWORD_NONE = 0,  //  neither (and every event that is not a message)
    SB_POLICY_KEYWORD_OPT_OUT,   //  STOP, UNSUBSCRIBE, ...
    SB_POLICY_KEYWORD_OPT_IN,    //  START, ...
} sb_policy_keyword_t;

//  What is asked to go out.
typedef enum {
    SB_POLICY_ASK_NONE = 0,   //  nothing: no rule matched, or it does nothing
    SB_POLICY_ASK_REPLY,      //  a rule's reply (text)
    SB_POLICY_ASK_FORWARD,    //  a rule's forward of the event to a bot
    SB_POLICY_ASK_BOT_REPLY,  //  a bot's answer to a forward (text)
} sb_policy_ask_t;

typedef enum {
    SB_POLICY_NONE = 0,  //  nothing to queue: no outbox row
    SB_POLICY_SEND,      //  queue it (outbox state pending)
    SB_POLICY_NOT_SENT,  //  record it refused (state not_sent) with the reason
} sb_policy_decision_t;

typedef struct {
    int channel;                  //  SB_CHANNEL_* of the event or outbox row
    sb_policy_keyword_t keyword;  //  the inbound message's text as a keyword
    sb_policy_ask_t ask;          //  what the rules or the bot ask
    const char *text;             //  REPLY, BOT_REPLY: the text (NULL is "")
    bool opted_out;               //  the contact's mark before this event
    int64_t last_inbound_ms;      //  the contact's last inbound time, Unix ms, this
                                  //  event's included (0: none)
    int64_t now_ms;               //  now, Unix ms, on the clock of last_inbound_ms
    int64_t window_ms;            //  WhatsApp window (<= 0: SB_POLICY_WINDOW_MS)
} sb_policy_input_t;

typedef struct {
    sb_policy_decision_t decision;  //  what to do with what was asked
    const char *reason;             //  NOT_SENT: why (static); "" otherwise
    bool opted_out;                 //  the contact's mark after this event
} sb_policy_t;

//  The decision for input.
sb_policy_t sb_policy_decide (const sb_policy_input_t *input);

#endif
