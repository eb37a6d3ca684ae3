/*  sb_event: the Event of proto/switchboard/v1/event.proto, its codec, topic
    and JSON form.

    sb_event_t is the protobuf-c generated message itself: the normalizers
    fill it through the helpers below (every string and array heap-owned),
    so sb_event_destroy can free it with protobuf-c's own free function.
    The helpers allocate with sb_scratch_alloc: an event built while the
    thread has a scratch open lives in it, and must be destroyed before
    that scratch ends (docs/internals.md, "Memory"); encodings are always
    plain malloc.
    We expose the generated struct rather than mirror its forty fields in a
    struct of our own: one definition of the schema, and the compiler checks
    every field name.
*/
#ifndef SB_EVENT_H_INCLUDED
#define SB_EVENT_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "switchboard/v1/event.pb-c.h"

typedef Switchboard__V1__Event sb_event_t;
typedef Switchboard__V1__Media sb_event_media_t;
typedef Switchboard__V1__ContactCard sb_event_contact_t;
typedef Switchboard__V1__OrderItem sb_event_order_item_t;
typedef Switchboard__V1__Error sb_event_error_t;

#define SB_PROVIDER_TWILIO SWITCHBOARD__V1__PROVIDER__PROVIDER_TWILIO
#define SB_PROVIDER_META SWITCHBOARD__V1__PROVIDER__PROVIDER_META
#define SB_CHANNEL_SMS SWITCHBOARD__V1__CHANNEL__CHANNEL_SMS
#define SB_CHANNEL_WHATSAPP SWITCHBOARD__V1__CHANNEL__CHANNEL_WHATSAPP
#define SB_CHANNEL_VOICE SWITCHBOARD__V1__CHANNEL__CHANNEL_VOICE
#define SB_CHANNEL_RCS SWITCHBOARD__V1__CHANNEL__CHANNEL_RCS
#define SB_KIND_MESSAGE SWITCHBOARD__V1__KIND__KIND_MESSAGE
#define SB_KIND_STATUS SWITCHBOARD__V1__KIND__KIND_STATUS
#define SB_KIND_CALL SWITCHBOARD__V1__KIND__KIND_CALL
#define SB_KIND_GATHER SWITCHBOARD__V1__KIND__KIND_GATHER
#define SB_KIND_ECHO SWITCHBOARD__V1__KIND__KIND_ECHO
#define SB_KIND_PREFERENCE SWITCHBOARD__V1__KIND__KIND_PREFERENCE
#define SB_KIND_TEMPLATE SWITCHBOARD__V1__KIND__KIND_TEMPLATE
#define SB_KIND_ACCOUNT SWITCHBOARD__V1__KIND__KIND_ACCOUNT
#define SB_KIND_OTHER SWITCHBOARD__V1__KIND__KIND_OTHER

//  A new empty event. Caller owns the return value; NULL when out of memory.
sb_event_t *sb_event_new (void);

//  Free an event built with these helpers or returned by sb_event_decode.
void sb_event_destroy (sb_event_t **self_p);

//  Replace a string field with a copy of value (NULL or "" leaves the
//  field empty). 0, or -1 when out of memory.
int sb_event_set (char **field, const char *value);

//  Set the raw request body (copied). 0 or -1.
int sb_event_set_raw (sb_event_t *self, const void *body, size_t size);

//  One request, one copy of its raw body (event.proto): lend body to
//  events[0], number every event (request_events = count, request_index),
//  and when count > 1 lend sha256 (filled here with the body's SHA-256,
//  SB_EVENT_SHA256_SIZE bytes) to every event as raw_body_sha256. Nothing
//  is copied: body and sha256 must outlive the events' encoding, and
//  sb_event_unshare_raw takes the loans back before the events are freed.
#define SB_EVENT_SHA256_SIZE 32
void sb_event_share_raw (sb_event_t *const *events, size_t count, const void *body, size_t size,
                         uint8_t sha256[SB_EVENT_SHA256_SIZE]);
void sb_event_unshare_raw (sb_event_t *const *events, size_t count);

//  The SHA-256 of size bytes into out.
void sb_event_sha256 (const void *data, size_t size, uint8_t out[SB_EVENT_SHA256_SIZE]);

//  Sub-messages, created on first use (NULL when out of memory).
Switchboard__V1__Location *sb_event_location (sb_event_t *self);
Switchboard__V1__Interactive *sb_event_interactive (sb_event_t *self);
Switchboard__V1__Status *sb_event_status (sb_event_t *self);
Switchboard__V1__Reaction *sb_event_reaction (sb_event_t *self);
Switchboard__V1__Order *sb_event_order (sb_event_t *self);
Switchboard__V1__System *sb_event_system (sb_event_t *self);
//  The Meta webhook fields beyond messages (event.proto, fields 56-61).
Switchboard__V1__MetaFieldsReferral *sb_event_referral (sb_event_t *self);
Switchboard__V1__MetaFieldsPricing *sb_event_pricing (sb_event_t *self);
Switchboard__V1__MetaFieldsCall *sb_event_meta_call (sb_event_t *self);
Switchboard__V1__MetaFieldsTemplate *sb_event_meta_template (sb_event_t *self);
Switchboard__V1__MetaFieldsAccount *sb_event_meta_account (sb_event_t *self);
Switchboard__V1__MetaFieldsPreference *sb_event_preference (sb_event_t *self);

//  Append an element to a repeated field (NULL when out of memory).
sb_event_media_t *sb_event_add_media (sb_event_t *self);
sb_event_contact_t *sb_event_add_contact (sb_event_t *self);
sb_event_order_item_t *sb_event_add_order_item (sb_event_t *self);
sb_event_error_t *sb_event_add_error (sb_event_t *self);
int sb_event_add_string (char ***array, size_t *count, const char *value);

//  Serialize. Caller owns the return value (free()); NULL when out of memory.
uint8_t *sb_event_encode (const sb_event_t *self, size_t *size);

//  Serialize into a buffer with room more bytes after the *size written,
//  for sb_event_stamp_into. Caller owns the return value.
uint8_t *sb_event_encode_room (const sb_event_t *self, size_t room, size_t *size);

//  Parse bytes from the wire or the journal. NULL when malformed.
//  Caller owns the return value.
sb_event_t *sb_event_decode (const void *data, size_t size);

//  Append the journal's stamp to an encoded event: the sequence number and
//  the id "<ingress_id>-<epoch>-<seq>". Protobuf merges concatenated
//  encodings (the last value of a scalar field wins), so this does not
//  re-encode the event. In place: data holds size bytes of an encoded
//  event followed by room spare bytes. Returns the stamped size, or 0 when
//  room is too small; sb_event_stamp_room gives enough for any seq.
size_t sb_event_stamp_into (uint8_t *data, size_t size, size_t room, uint64_t seq,
                            const char *ingress_id, const char *epoch);
size_t sb_event_stamp_room (const char *ingress_id, const char *epoch);

//  Lower-case names: "twilio"/"meta", "sms"/"whatsapp"/"voice"/"rcs",
//  "message"/"status"/"call"/"gather"/"echo"/"preference"/"template"/
//  "account"/"other"; "unspecified" otherwise.
const char *sb_event_provider_name (int provider);
const char *sb_event_channel_name (int channel);
const char *sb_event_kind_name (int kind);

//  The topic sb.v1.<provider>.<channel>.<kind> into buf. Returns its length,
//  or -1 when buf is too small.
int sb_event_topic (const sb_event_t *self, char *buf, size_t size);

//  The event as one line of compact JSON (raw_body as a UTF-8 string when it
//  is valid UTF-8, else base64 under raw_body_base64; raw_body_sha256 in
//  hex; enum fields by name; empty fields omitted). Caller owns the return value; NULL on failure.
char *sb_event_to_json (const sb_event_t *self);

//  ---- For tests: public so the unit tests reach them; no other module
//  calls them.

//  sb_event_set of size bytes, which may hold a NUL (the tests' way to give
//  one; sb_event_set calls it).
int sb_event_set_n (char **field, const char *value, size_t size);

//  The seq of the event carrying this event's raw body, in the same
//  ingress_id and epoch: its own seq when it carries raw_body or is its
//  request's first (request_index 0, or an event from before
//  request_index); seq - request_index otherwise; 0 when request_index is
//  not below seq (a malformed event: no such event). The rule proto/README
//  gives consumers, pinned down by the tests.
uint64_t sb_event_raw_seq (const sb_event_t *self);

//  sb_event_stamp_into a new buffer (the tests and fuzz_event stamp with
//  it; the writer stamps in place). Caller owns the return value; NULL
//  when out of memory.
uint8_t *sb_event_stamp (const uint8_t *data, size_t size, uint64_t seq, const char *ingress_id,
                         const char *epoch, size_t *out_size);

#endif
