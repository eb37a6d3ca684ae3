/*  sb_fakeprov: what a fake provider writes, built one way for its two
    users: `switchboard send` (cli/sb_cmd_send.c), which posts webhooks as
    Twilio and Meta would, and the provider sandbox (sandbox/), which
    answers sends and posts the status callbacks that follow them.

    Ids (Twilio SIDs, wamids), SMS segment counts, Twilio's dates, Meta's
    JSON escaping and envelope, and the two status webhooks (Twilio's form,
    Meta's statuses JSON) live here so the two tools cannot drift apart:
    they once disagreed on Meta's pricing model and on how to count SMS
    segments.

    Shapes follow tests/conformance/ (twilio-*-status-*.form,
    meta-status-*.json): Meta's per-message pricing ("PMP", since 1 July
    2025). Ids are random (OpenSSL's CSPRNG; the process aborts if it has
    none). A test tool's helper: nothing here validates its inputs beyond
    what it needs to stay within its buffers.
*/
#ifndef SB_FAKEPROV_H_INCLUDED
#define SB_FAKEPROV_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sb_form.h"

//  Meta's documented examples: the WhatsApp Business Account of every
//  webhook envelope and the business's display number.
#define SB_FAKEPROV_WABA_ID "102290129340398"
#define SB_FAKEPROV_DISPLAY_NUMBER "15550783881"

//  Room for any wamid sb_fakeprov_wamid makes, NUL included.
#define SB_FAKEPROV_WAMID_SIZE 96

//  Room for sb_fakeprov_rfc2822's "Thu, 24 Aug 2023 05:01:45 +0000".
#define SB_FAKEPROV_DATE_SIZE 40

//  Fill buf with size random bytes. Aborts when OpenSSL has none.
void sb_fakeprov_random (void *buf, size_t size);

//  prefix + hex_digits random hex digits (lower case unless upper) into
//  out, cut to fit size: "SM" + 32 is a Twilio SID, "" + 32 a Meta
//  conversation id.
void sb_fakeprov_hex_id (char *out, size_t size, const char *prefix, size_t hex_digits, bool upper);

//  digits random decimal digits (at most 32), the first never 0; out holds
//  digits + 1 bytes.
void sb_fakeprov_digits (char *out, size_t digits);

//  Which way a WhatsApp message went: a wamid records it.
typedef enum {
    SB_FAKEPROV_INBOUND,   //  from the user to the business
    SB_FAKEPROV_OUTBOUND,  //  sent by the business
} sb_fakeprov_dir_t;

//  A wamid like Meta's: "wamid." + base64 of a small binary record holding
//  the user's number (digits only, at most 20 used) and a random id (20
//  upper-case hex digits inbound, 18 outbound, as Meta's are).
void sb_fakeprov_wamid (char *out, size_t size, const char *user_digits, sb_fakeprov_dir_t dir);

//  Twilio's NumSegments for an SMS body (UTF-8): GSM-7 when every
//  character is in the GSM 03.38 basic table or its extension table (an
//  extension character takes two septets), 160 septets in one segment and
//  153 per segment when concatenated; otherwise UCS-2, counted in UTF-16
//  code units, 70 and 67. A segment never splits an escape pair or a
//  surrogate pair. Bytes that are not UTF-8 count as one UCS-2 unit each.
//  An empty body is one segment.
int sb_fakeprov_sms_segments (const char *text);

//  The address without its "whatsapp:" or "rcs:" prefix (borrowed from
//  address).
const char *sb_fakeprov_bare (const char *address);

//  when as Twilio writes dates (RFC 2822, UTC): "Thu, 24 Aug 2023 05:01:45
//  +0000". out holds SB_FAKEPROV_DATE_SIZE bytes.
void sb_fakeprov_rfc2822 (time_t when, char *out, size_t size);

//  Compact JSON escaped as Meta sends it (non-ASCII as \uXXXX, '/' as \/).
//  Takes the reference to root (NULL gives NULL). NULL when a string in it
//  is not UTF-8. Caller owns the return value.
char *sb_fakeprov_meta_dump (json_t *root);

//  Meta's webhook envelope around one change value (takes the reference;
//  NULL gives NULL): {"object": "whatsapp_business_account", "entry":
//  [{"id": WABA, "changes": [{"value": value, "field": "messages"}]}]}.
json_t *sb_fakeprov_meta_envelope (json_t *value);

//  One status of a message the business sent, as Meta posts it.
typedef struct {
    const char *display_number;   //  metadata.display_phone_number
    const char *phone_number_id;  //  metadata.phone_number_id
    const char *wamid;            //  the message's id
    const char *recipient;        //  the user's number, digits only, or their BSUID
    const char *status;           //  sent, delivered, read, failed
    const char *conversation;     //  conversation id; NULL for a fresh one
    int64_t error_code;           //  0: none (131049 when failed)
} sb_fakeprov_meta_status_t;

//  The statuses webhook (meta-status-*.json) as Meta's bytes: "sent" and
//  "delivered" carry the conversation and PMP pricing of a free customer
//  service reply, "failed" (or any status with error_code) carries the
//  error. Caller owns the return value; NULL when out of memory or a value
//  is not UTF-8.
char *sb_fakeprov_meta_status (const sb_fakeprov_meta_status_t *status);

//  Append key/value pairs from a NULL-key-terminated list ({key, value,
//  ..., NULL}); a NULL value skips its pair, so optional parameters keep
//  their place in the provider's order. 0, or -1 when out of memory.
int sb_fakeprov_add_pairs (sb_form_t *form, const char *const *pairs);

//  One status of a message the business sent, as Twilio posts it.
typedef struct {
    const char *account;     //  AccountSid
    const char *sid;         //  MessageSid (and SmsSid)
    const char *status;      //  MessageStatus (and SmsStatus)
    const char *from;        //  From; NULL or "" when unknown (omitted)
    const char *to;          //  To
    const char *service;     //  MessagingServiceSid; NULL or "" when none
    const char *error_code;  //  ErrorCode; NULL: 30003 (SMS) or 63016
                             //  (WhatsApp) when failed or undelivered
} sb_fakeprov_twilio_status_t;

//  Append the status callback's parameters to form, in Twilio's order
//  (twilio-message-status-*.form for SMS; twilio-whatsapp-status-*.form
//  when from or to has "whatsapp:", then both get it). 0, or -1 when out
//  of memory.
int sb_fakeprov_twilio_status (sb_form_t *form, const sb_fakeprov_twilio_status_t *status);

#endif
