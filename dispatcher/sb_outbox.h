/*  sb_outbox: what the store hands the sender and what the sender hands
    back. Plain data shared by sb_store (PostgreSQL side) and sb_sender
    (libcurl side), so neither includes the other.
*/
#ifndef SB_OUTBOX_H_INCLUDED
#define SB_OUTBOX_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

//  Room for a claim token (outbox.claim_token, NUL included): who claimed
//  a row, so that only that claim's result or reclaim touches it.
#define SB_OUTBOX_TOKEN_SIZE 40

typedef enum {
    SB_OUTBOX_REPLY = 1,    //  send body to the contact through the provider
    SB_OUTBOX_FORWARD = 2,  //  POST event_json to forward_url; its answer becomes a reply
} sb_outbox_kind_t;

//  One due row of the outbox. Every string is owned by the item.
typedef struct {
    int64_t id;              //  outbox.id
    sb_outbox_kind_t kind;   //  reply or forward
    int provider;            //  SB_PROVIDER_TWILIO or SB_PROVIDER_META
    int channel;             //  SB_CHANNEL_SMS, SB_CHANNEL_WHATSAPP or SB_CHANNEL_RCS
    char *account;           //  Meta phone_number_id the inbound came to ("" for Twilio)
    char *from;              //  our address: the inbound message's "to" (no channel prefix)
    char *to;                //  the contact's address (no channel prefix)
    char *body;              //  text to send (REPLY)
    char *context_id;        //  Meta: the inbound wamid this answers ("" if none)
    char *forward_url;       //  FORWARD: the bot's URL
    int forward_timeout_ms;  //  FORWARD: total timeout
    char *event_json;        //  FORWARD: the event as JSON (sb_event_to_json)
    int attempts;            //  attempts made before this one
    char claim_token[SB_OUTBOX_TOKEN_SIZE];  //  the claim's token (sb_store)
} sb_outbox_item_t;

typedef enum {
    SB_SEND_SENT = 1,   //  provider accepted it (provider_id, "" if unusable), or the bot answered
    SB_SEND_RETRY = 2,  //  network error, 5xx, 429 or a throttling code: try again later
    SB_SEND_FINAL = 3,  //  will never succeed (4xx other than throttling); or the bot failed
} sb_send_outcome_t;

//  The outcome of one item. Every string is owned by the result.
typedef struct {
    int64_t id;             //  outbox.id of the item
    sb_outbox_kind_t kind;  //  copied from the item
    int provider;           //  copied from the item (SB_PROVIDER_*)
    sb_send_outcome_t outcome;
    char *provider_id;       //  SM... / wamid... when SENT (REPLY)
    char *bot_text;          //  FORWARD: the text the bot answered ("" = no reply)
    int http_status;         //  0 when no HTTP answer
    char *error_code;        //  provider error code as text ("" if none), e.g. "21610", "131047"
    char *error;             //  short description for logs and outbox.last_error
    int64_t retry_after_ms;  //  RETRY: the provider's Retry-After, or -1 when not given
    bool opt_out;            //  FINAL: the provider says the contact opted out (Twilio 21610)
    char claim_token[SB_OUTBOX_TOKEN_SIZE];  //  copied from the item: the result applies
                                             //  only while the row still has it
} sb_send_result_t;

void sb_outbox_item_free (sb_outbox_item_t *item);      //  frees the strings, not item
void sb_outbox_result_free (sb_send_result_t *result);  //  frees the strings, not result

#endif
