/*  sb_meta: a Meta WhatsApp Cloud API webhook body into Events.

    The body is parsed once with jansson and walked entry x change x
    (message, then status). The shape the walk depends on is checked
    strictly and any deviation fails the whole request (the caller answers
    400, Meta retries and alerts): top level an object, "entry" an array of
    objects, each with a "changes" array of objects, each with a "value"
    object whose "messages" and "statuses", when present, are arrays of
    objects. Inside a message or status we are lenient: a field of the
    wrong type is left empty, never an error, because the object itself is
    kept whole, compact, in detail_json, and the request verbatim in
    raw_body.

    Memory: jansson's tree (after sb_json_use_scratch), detail_json's text,
    the events and the list come from sb_scratch_alloc (docs/internals.md,
    "Memory").

    Parsing limits (jansson): nesting deeper than JSON_PARSER_MAX_DEPTH
    (2048) fails, as do NUL bytes (raw or \u0000), invalid UTF-8, integers
    beyond int64 and reals beyond double. Duplicate keys are refused
    (JSON_REJECT_DUPLICATES): Meta never sends them, and a body that two
    parsers could read two ways must not become events that a re-read of
    raw_body would not reproduce. The size is capped by the HTTP layer
    (SB_MAX_BODY); the number of events by SB_META_MAX_EVENTS below.

    Addresses: for a message, from is the user (message.from) and to our
    number (display_phone_number); for a status, from is our number and to
    the recipient (recipient_id), as in Twilio's status callbacks.

    The other webhook fields (changes[].field other than "messages") each
    become events of their own kind (s_field): message_echoes and
    smb_message_echoes one KIND_ECHO per echoed message (from our number,
    to the user, as Meta writes them); calls one KIND_CALL per calls[]
    item (connect, terminate) and per call status (statuses[] of the calls
    field: RINGING, ACCEPTED, REJECTED), call_status naming the stage so
    that each is an event of its own; user_preferences one
    KIND_PREFERENCE per item; the template fields one KIND_TEMPLATE;
    account_alerts and account_update one KIND_ACCOUNT; any other field
    one KIND_OTHER with the value kept whole in detail_json. These walks
    are lenient all the way down: Meta adds fields without notice, so a
    value, array or item of a shape we do not expect becomes a KIND_OTHER
    event kept whole, never a 400. An SDP offer is kept up to
    SB_META_SDP_MAX bytes (cut on a UTF-8 boundary, sdp_truncated set);
    whole, it is still in detail_json, bounded by SB_MAX_BODY like the
    rest of the body.

    Business-scoped user ids (BSUIDs, since April 2026): a user who hides
    their number has no "from" (no recipient_id on a status) but a
    from_user_id (recipient_user_id). The sender is then, in this order,
    message.from, the matching contact's wa_id, from_user_id,
    from_parent_user_id, the contact's user_id: never lost. The ids, the
    parent id and the username go to Event fields 48-55 (s_put_bsuid_*).
    An id not of the BSUID shape (sb_bsuid_valid) is kept as given and
    flags the event (user_id_malformed) for consumers to see; the line
    saying so is at debug, so a flood of them cannot flood the log.
*/
#include "sb_meta.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sb_bsuid.h"
#include "sb_json.h"
#include "sb_log.h"
#include "sb_text.h"
#include "sb_scratch.h"

//  Most events one body may produce; Meta batches at most about a thousand.
#define SB_META_MAX_EVENTS 10000

//  The events produced so far, in order.
typedef struct {
    sb_event_t **items;  //  owned events
    size_t count;        //  used slots
    size_t capacity;     //  allocated slots
} s_list_t;

//  Where the walk is, for the fields every event of a change shares.
typedef struct {
    const char *entry_id;       //  entry[].id (borrowed from the JSON)
    const char *field;          //  changes[].field
    json_t *value;              //  changes[].value
    const char *account;        //  value.metadata.phone_number_id
    const char *display_phone;  //  value.metadata.display_phone_number
} s_change_t;

//  The string member key of object, or NULL when absent or not a string.
static const char *
s_str (const json_t *object, const char *key)
{
    return json_string_value (json_object_get (object, key));
}

//  The first of object's string members a, b, c (b and c may be NULL)
//  that is not empty, or NULL: one identifier Meta spells several ways or
//  gives in order of preference (a phone number, then a BSUID, ...).
static const char *
s_str_first (const json_t *object, const char *a, const char *b, const char *c)
{
    const char *keys[] = {a, b, c};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *value = keys[i] ? s_str (object, keys[i]) : NULL;
        if (value && *value)
            return value;
    }
    return NULL;
}

//  A decimal integer from a JSON integer or a string of digits (Meta sends
//  timestamps as strings). 0 when absent or not exactly that.
static int64_t
s_int (const json_t *value)
{
    if (json_is_integer (value))
        return json_integer_value (value);
    const char *text = json_string_value (value);
    if (!text || !*text)
        return 0;
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (!*digits || strspn (digits, "0123456789") != strlen (digits))
        return 0;
    errno = 0;
    char *end;
    long long number = strtoll (text, &end, 10);
    if (errno || *end)
        return 0;
    return number;
}

//  A number from a JSON number or a string that is exactly one.
static double
s_double (const json_t *value)
{
    if (json_is_number (value))
        return json_number_value (value);
    const char *text = json_string_value (value);
    if (!text || !*text)
        return 0;
    errno = 0;
    char *end;
    double number = strtod (text, &end);
    if (errno || *end || !isfinite (number))
        return 0;
    return number;
}

//  Set field to the string member key of object (absent: left empty).
//  Clears *ok when out of memory.
static void
s_put (bool *ok, char **field, const json_t *object, const char *key)
{
    const char *value = s_str (object, key);
    if (value && sb_event_set (field, value))
        *ok = false;
}

static void
s_put_text (bool *ok, char **field, const char *value)
{
    if (value && sb_event_set (field, value))
        *ok = false;
}

//  A new event with what every event of this change carries.
static sb_event_t *
s_event_new (const s_change_t *change, Switchboard__V1__Kind kind, bool *ok)
{
    sb_event_t *event = sb_event_new ();
    if (!event) {
        *ok = false;
        return NULL;
    }
    event->provider = SB_PROVIDER_META;
    event->channel = SB_CHANNEL_WHATSAPP;
    event->kind = kind;
    s_put_text (ok, &event->account, change->account);
    s_put_text (ok, &event->display_phone_number, change->display_phone);
    s_put_text (ok, &event->business_account_id, change->entry_id);
    s_put_text (ok, &event->webhook_field, change->field);
    return event;
}

//  detail_json: the provider's own object, compact.
static void
s_put_detail (bool *ok, sb_event_t *event, const json_t *object)
{
    char *text = json_dumps (object, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text || sb_event_set (&event->detail_json, text))
        *ok = false;
    sb_json_free (text);
}

//  errors[] of a message or status into event->errors.
static void
s_put_errors (bool *ok, sb_event_t *event, const json_t *errors)
{
    size_t i;
    json_t *error;
    json_array_foreach (errors, i, error) {
        if (!json_is_object (error))
            continue;
        sb_event_error_t *item = sb_event_add_error (event);
        if (!item) {
            *ok = false;
            return;
        }
        item->code = s_int (json_object_get (error, "code"));
        s_put (ok, &item->title, error, "title");
        s_put (ok, &item->message, error, "message");
        s_put (ok, &item->href, error, "href");
        const char *details = s_str (json_object_get (error, "error_data"), "details");
        s_put_text (ok, &item->details, details ? details : s_str (error, "details"));
    }
}

//  image, audio, video, document, sticker.
static void
s_put_media (bool *ok, sb_event_t *event, const json_t *media)
{
    if (!json_is_object (media))
        return;
    sb_event_media_t *item = sb_event_add_media (event);
    if (!item) {
        *ok = false;
        return;
    }
    s_put (ok, &item->id, media, "id");
    s_put (ok, &item->content_type, media, "mime_type");
    s_put (ok, &item->sha256, media, "sha256");
    s_put (ok, &item->caption, media, "caption");
    s_put (ok, &item->filename, media, "filename");
    s_put (ok, &item->url, media, "url");
    item->voice = json_is_true (json_object_get (media, "voice"));
    item->animated = json_is_true (json_object_get (media, "animated"));
    s_put (ok, &event->text, media, "caption");
}

static void
s_put_location (bool *ok, sb_event_t *event, const json_t *location)
{
    if (!json_is_object (location))
        return;
    Switchboard__V1__Location *item = sb_event_location (event);
    if (!item) {
        *ok = false;
        return;
    }
    item->latitude = s_double (json_object_get (location, "latitude"));
    item->longitude = s_double (json_object_get (location, "longitude"));
    s_put (ok, &item->name, location, "name");
    s_put (ok, &item->address, location, "address");
    s_put (ok, &item->url, location, "url");
}

static void
s_put_contacts (bool *ok, sb_event_t *event, const json_t *contacts)
{
    size_t i;
    json_t *contact;
    json_array_foreach (contacts, i, contact) {
        if (!json_is_object (contact))
            continue;
        sb_event_contact_t *card = sb_event_add_contact (event);
        if (!card) {
            *ok = false;
            return;
        }
        s_put (ok, &card->formatted_name, json_object_get (contact, "name"), "formatted_name");
        s_put (ok, &card->organization, json_object_get (contact, "org"), "company");
        size_t k;
        json_t *phone;
        json_array_foreach (json_object_get (contact, "phones"), k, phone) {
            const char *number = s_str (phone, "phone");
            const char *wa_id = s_str (phone, "wa_id");
            if (number && sb_event_add_string (&card->phones, &card->n_phones, number))
                *ok = false;
            if (wa_id && sb_event_add_string (&card->wa_ids, &card->n_wa_ids, wa_id))
                *ok = false;
        }
    }
}

//  interactive: button_reply, list_reply (and whatever else, by its type).
static void
s_put_interactive (bool *ok, sb_event_t *event, const json_t *interactive)
{
    if (!json_is_object (interactive))
        return;
    Switchboard__V1__Interactive *item = sb_event_interactive (event);
    if (!item) {
        *ok = false;
        return;
    }
    const char *type = s_str (interactive, "type");
    s_put_text (ok, &item->type, type);
    const json_t *reply = type ? json_object_get (interactive, type) : NULL;
    s_put (ok, &item->id, reply, "id");
    s_put (ok, &item->title, reply, "title");
    s_put (ok, &item->description, reply, "description");
    s_put (ok, &event->text, reply, "title");
}

//  button: the quick-reply of a template.
static void
s_put_button (bool *ok, sb_event_t *event, const json_t *button)
{
    if (!json_is_object (button))
        return;
    Switchboard__V1__Interactive *item = sb_event_interactive (event);
    if (!item) {
        *ok = false;
        return;
    }
    s_put_text (ok, &item->type, "button");
    s_put (ok, &item->id, button, "payload");
    s_put (ok, &item->title, button, "text");
    s_put (ok, &event->text, button, "text");
}

static void
s_put_reaction (bool *ok, sb_event_t *event, const json_t *reaction)
{
    if (!json_is_object (reaction))
        return;
    Switchboard__V1__Reaction *item = sb_event_reaction (event);
    if (!item) {
        *ok = false;
        return;
    }
    s_put (ok, &item->message_id, reaction, "message_id");
    s_put (ok, &item->emoji, reaction, "emoji");  //  absent: the reaction was removed
}

//  A price as the provider wrote it: a string unchanged, a number in the
//  shortest form that reads back the same.
static void
s_put_price (bool *ok, char **field, const json_t *price)
{
    char text[64];
    if (json_is_string (price)) {
        s_put_text (ok, field, json_string_value (price));
        return;
    }
    if (json_is_integer (price))
        snprintf (text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value (price));
    else if (json_is_real (price)) {
        double value = json_real_value (price);
        snprintf (text, sizeof text, "%.15g", value);
        if (strtod (text, NULL) != value)
            snprintf (text, sizeof text, "%.17g", value);
    }
    else
        return;
    s_put_text (ok, field, text);
}

static void
s_put_order (bool *ok, sb_event_t *event, const json_t *order)
{
    if (!json_is_object (order))
        return;
    Switchboard__V1__Order *item = sb_event_order (event);
    if (!item) {
        *ok = false;
        return;
    }
    s_put (ok, &item->catalog_id, order, "catalog_id");
    s_put (ok, &item->text, order, "text");
    size_t i;
    json_t *product;
    json_array_foreach (json_object_get (order, "product_items"), i, product) {
        if (!json_is_object (product))
            continue;
        sb_event_order_item_t *line = sb_event_add_order_item (event);
        if (!line) {
            *ok = false;
            return;
        }
        s_put (ok, &line->product_retailer_id, product, "product_retailer_id");
        line->quantity = s_int (json_object_get (product, "quantity"));
        s_put_price (ok, &line->item_price, json_object_get (product, "item_price"));
        s_put (ok, &line->currency, product, "currency");
    }
}

static void
s_put_system (bool *ok, sb_event_t *event, const json_t *system)
{
    if (!json_is_object (system))
        return;
    Switchboard__V1__System *item = sb_event_system (event);
    if (!item) {
        *ok = false;
        return;
    }
    s_put (ok, &item->type, system, "type");
    s_put (ok, &item->body, system, "body");
    const char *new_wa_id = s_str (system, "new_wa_id");
    s_put_text (ok, &item->new_wa_id, new_wa_id ? new_wa_id : s_str (system, "wa_id"));
}

//  messages[].referral: the click-to-WhatsApp ad the user came from.
static void
s_put_referral (bool *ok, sb_event_t *event, const json_t *referral)
{
    if (!json_is_object (referral))
        return;
    Switchboard__V1__MetaFieldsReferral *item = sb_event_referral (event);
    if (!item) {
        *ok = false;
        return;
    }
    s_put (ok, &item->source_url, referral, "source_url");
    s_put (ok, &item->source_id, referral, "source_id");
    s_put (ok, &item->source_type, referral, "source_type");
    s_put (ok, &item->headline, referral, "headline");
    s_put (ok, &item->body, referral, "body");
    s_put (ok, &item->media_type, referral, "media_type");
    s_put (ok, &item->image_url, referral, "image_url");
    s_put (ok, &item->video_url, referral, "video_url");
    s_put (ok, &item->thumbnail_url, referral, "thumbnail_url");
    s_put (ok, &item->ctwa_clid, referral, "ctwa_clid");
    s_put (ok, &item->welcome_text, json_object_get (referral, "welcome_message"), "text");
}

//  statuses[].pricing: pricing_model, type, category (PMP since July 2025).
static void
s_put_pricing (bool *ok, sb_event_t *event, const json_t *pricing)
{
    if (!json_is_object (pricing))
        return;
    Switchboard__V1__MetaFieldsPricing *item = sb_event_pricing (event);
    if (!item) {
        *ok = false;
        return;
    }
    s_put (ok, &item->pricing_model, pricing, "pricing_model");
    s_put (ok, &item->type, pricing, "type");
    s_put (ok, &item->category, pricing, "category");
    item->billable = json_is_true (json_object_get (pricing, "billable"));
}

//  The message types we map; anything else is "unknown".
static const char *s_known_types[] = {
    "text",        "image",  "audio",    "video", "document", "sticker",     "location", "contacts",
    "interactive", "button", "reaction", "order", "system",   "unsupported", "unknown",
};

static bool
s_known (const char *type)
{
    for (size_t i = 0; type && i < sizeof s_known_types / sizeof s_known_types[0]; i++)
        if (strcmp (type, s_known_types[i]) == 0)
            return true;
    return false;
}

//  The member named by the message's type. Unknown types (type NULL or
//  not in s_known_types) are kept whole in detail_json only.
static void
s_put_body (bool *ok, sb_event_t *event, const char *type, const json_t *body)
{
    if (!s_known (type))
        return;
    if (strcmp (type, "text") == 0)
        s_put (ok, &event->text, body, "body");
    else if (strcmp (type, "image") == 0 || strcmp (type, "audio") == 0
             || strcmp (type, "video") == 0 || strcmp (type, "document") == 0
             || strcmp (type, "sticker") == 0)
        s_put_media (ok, event, body);
    else if (strcmp (type, "location") == 0)
        s_put_location (ok, event, body);
    else if (strcmp (type, "contacts") == 0)
        s_put_contacts (ok, event, body);
    else if (strcmp (type, "interactive") == 0)
        s_put_interactive (ok, event, body);
    else if (strcmp (type, "button") == 0)
        s_put_button (ok, event, body);
    else if (strcmp (type, "reaction") == 0)
        s_put_reaction (ok, event, body);
    else if (strcmp (type, "order") == 0)
        s_put_order (ok, event, body);
    else if (strcmp (type, "system") == 0)
        s_put_system (ok, event, body);
    //  unsupported, unknown: their errors[] are read by the caller
}

//  The contact whose wa_id is from, else the one whose user_id is
//  user_id (a BSUID-only sender), else the first one.
static const json_t *
s_contact_for (const json_t *contacts, const char *from, const char *user_id)
{
    size_t i;
    json_t *contact;
    json_array_foreach (contacts, i, contact)
        if (from && json_is_object (contact) && s_str (contact, "wa_id")
            && strcmp (s_str (contact, "wa_id"), from) == 0)
            return contact;
    json_array_foreach (contacts, i, contact)
        if (user_id && json_is_object (contact) && s_str (contact, "user_id")
            && strcmp (s_str (contact, "user_id"), user_id) == 0)
            return contact;
    contact = json_array_get (contacts, 0);
    return json_is_object (contact) ? contact : NULL;
}

//  A BSUID field: set as given; a malformed one flags the event.
static void
s_put_bsuid (bool *ok, sb_event_t *event, char **field, const char *value)
{
    if (!value || !*value)
        return;
    s_put_text (ok, field, value);
    if (!sb_bsuid_valid (value)) {
        event->user_id_malformed = true;
        sb_debug ("meta", "malformed business-scoped user id kept as given length=%zu",
                  strlen (value));
    }
}

//  The sender of a message: from, else the contact's phone, else a BSUID
//  (borrowed; NULL only when the message names nobody at all).
static const char *
s_bsuid_sender (const json_t *message, const json_t *contact)
{
    const char *candidates[] = {
        s_str (message, "from"),         s_str (contact, "wa_id"),
        s_str (message, "from_user_id"), s_str (message, "from_parent_user_id"),
        s_str (contact, "user_id"),      s_str (contact, "parent_user_id"),
    };
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (candidates[i] && *candidates[i])
            return candidates[i];
    return NULL;
}

//  A message's BSUID fields: its own, else its contact's; the username.
static void
s_put_bsuid_message (bool *ok, sb_event_t *event, const json_t *message, const json_t *contact)
{
    const char *user_id = s_str (message, "from_user_id");
    const char *parent = s_str (message, "from_parent_user_id");
    s_put_bsuid (ok, event, &event->user_id, user_id ? user_id : s_str (contact, "user_id"));
    s_put_bsuid (ok, event, &event->parent_user_id,
                 parent ? parent : s_str (contact, "parent_user_id"));
    s_put (ok, &event->username, json_object_get (contact, "profile"), "username");
}

//  A system message's new and previous BSUIDs (customer_changed_number,
//  user_changed_number, user_changed_user_id, customer_identity_changed).
static void
s_put_bsuid_system (bool *ok, sb_event_t *event, const json_t *system)
{
    if (!json_is_object (system))
        return;
    s_put_bsuid (ok, event, &event->new_user_id, s_str (system, "user_id"));
    s_put_bsuid (ok, event, &event->new_parent_user_id, s_str (system, "parent_user_id"));
    s_put_bsuid (ok, event, &event->previous_user_id, s_str (system, "previous_user_id"));
}

//  A status's recipient BSUIDs, and its contact's username when the
//  status came with contacts[].
static void
s_put_bsuid_status (bool *ok, sb_event_t *event, const s_change_t *change, const json_t *status)
{
    //  The parent id has three spellings on Meta's pages: the BSUID page's
    //  syntax parent_recipient_user_id, its BSUID-only example
    //  parent_user_id, the calls status recipient_parent_user_id.
    const char *user_id = s_str (status, "recipient_user_id");
    const char *parent = s_str_first (status, "parent_recipient_user_id",
                                      "recipient_parent_user_id", "parent_user_id");
    s_put_bsuid (ok, event, &event->user_id, user_id);
    s_put_bsuid (ok, event, &event->parent_user_id, parent);
    const json_t *contacts = json_object_get (change->value, "contacts");
    const json_t *contact = json_array_size (contacts)
                                ? s_contact_for (contacts, s_str (status, "recipient_id"), user_id)
                                : NULL;
    s_put (ok, &event->username, json_object_get (contact, "profile"), "username");
    if (!event->to || !*event->to)
        s_put_text (ok, &event->to, user_id ? user_id : parent);
    if (event->status && (!event->status->recipient || !*event->status->recipient))
        s_put_text (ok, &event->status->recipient, event->to);
}

//  One value.messages[] element. NULL when out of memory.
static sb_event_t *
s_message (const s_change_t *change, const json_t *message)
{
    bool ok = true;
    sb_event_t *event = s_event_new (change, SB_KIND_MESSAGE, &ok);
    if (!event)
        return NULL;
    const json_t *contact =
        s_contact_for (json_object_get (change->value, "contacts"), s_str (message, "from"),
                       s_str (message, "from_user_id"));
    const char *from = s_bsuid_sender (message, contact);
    //  A user_changed_user_id system message may name the user only inside
    //  system (Meta's changelog, 2026-08-11): by the BSUID we knew them by.
    if (!from)
        from = s_str_first (json_object_get (message, "system"), "previous_user_id",
                            "previous_parent_user_id", NULL);
    const char *type = s_str (message, "type");
    s_put_text (&ok, &event->from, from);
    s_put_text (&ok, &event->to, change->display_phone);
    s_put (&ok, &event->provider_id, message, "id");
    event->provider_timestamp = s_int (json_object_get (message, "timestamp"));
    s_put (&ok, &event->context_id, json_object_get (message, "context"), "id");
    s_put_text (&ok, &event->message_type, s_known (type) ? type : "unknown");

    s_put (&ok, &event->profile_name, json_object_get (contact, "profile"), "name");
    s_put (&ok, &event->wa_id, contact, "wa_id");
    s_put_bsuid_message (&ok, event, message, contact);
    if (type && strcmp (type, "system") == 0)
        s_put_bsuid_system (&ok, event, json_object_get (message, "system"));

    s_put_body (&ok, event, type, json_object_get (message, type ? type : ""));
    s_put_errors (&ok, event, json_object_get (message, "errors"));
    s_put_referral (&ok, event, json_object_get (message, "referral"));
    s_put_detail (&ok, event, message);
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  One value.statuses[] element. NULL when out of memory.
static sb_event_t *
s_status (const s_change_t *change, const json_t *status)
{
    bool ok = true;
    sb_event_t *event = s_event_new (change, SB_KIND_STATUS, &ok);
    Switchboard__V1__Status *item = event ? sb_event_status (event) : NULL;
    if (!item) {
        sb_event_destroy (&event);
        return NULL;
    }
    s_put (&ok, &event->provider_id, status, "id");
    event->provider_timestamp = s_int (json_object_get (status, "timestamp"));
    s_put_text (&ok, &event->from, change->display_phone);
    s_put (&ok, &event->to, status, "recipient_id");
    s_put (&ok, &item->status, status, "status");
    s_put (&ok, &item->recipient, status, "recipient_id");
    const json_t *conversation = json_object_get (status, "conversation");
    s_put (&ok, &item->conversation_id, conversation, "id");
    s_put (&ok, &item->conversation_origin, json_object_get (conversation, "origin"), "type");
    const json_t *pricing = json_object_get (status, "pricing");
    s_put (&ok, &item->pricing_category, pricing, "category");
    item->billable = json_is_true (json_object_get (pricing, "billable"));
    s_put_pricing (&ok, event, pricing);

    const json_t *errors = json_object_get (status, "errors");
    const json_t *first = json_array_get (errors, 0);
    if (json_is_object (first)) {
        const json_t *code = json_object_get (first, "code");
        char text[32] = "";
        if (json_is_integer (code))
            snprintf (text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value (code));
        s_put_text (&ok, &item->error_code,
                    json_is_string (code) ? json_string_value (code) : text);
        const char *title = s_str (first, "title");
        s_put_text (&ok, &item->error_message, title ? title : s_str (first, "message"));
    }
    s_put_errors (&ok, event, errors);
    s_put_bsuid_status (&ok, event, change, status);
    s_put_detail (&ok, event, status);
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  A change with neither messages nor statuses: one event, kept whole.
static sb_event_t *
s_other (const s_change_t *change)
{
    bool ok = true;
    sb_event_t *event = s_event_new (change, SB_KIND_OTHER, &ok);
    if (!event)
        return NULL;
    s_put_text (&ok, &event->message_type, "unknown");
    s_put_text (&ok, &event->to, change->display_phone);
    s_put_detail (&ok, event, change->value);
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  Append event (taking it); -1 when it is NULL (out of memory) or the
//  list is full, with the reason in err.
static int
s_list_push (s_list_t *list, sb_event_t *event, char *err, size_t err_size)
{
    if (!event) {
        sb_error ("meta", "cannot build event: out of memory");
        sb_text_error (err, err_size, "out of memory");
        return -1;
    }
    if (list->count >= SB_META_MAX_EVENTS) {
        sb_event_destroy (&event);
        sb_text_error (err, err_size, "more than %d events in one body", SB_META_MAX_EVENTS);
        return -1;
    }
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 4;
        sb_event_t **items = sb_scratch_realloc (list->items, capacity * sizeof *items);
        if (!items) {
            sb_event_destroy (&event);
            sb_error ("meta", "cannot grow event list: out of memory");
            sb_text_error (err, err_size, "out of memory");
            return -1;
        }
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = event;
    return 0;
}

//  ---------------------------------------------------------------------
//  The other webhook fields: each its kind (see the note at the top).

//  Longest SDP kept in meta_call.sdp (real offers are a few KiB).
#define SB_META_SDP_MAX (64 * 1024)

//  An event of kind for one item of a field other than messages: what
//  every event of the change carries, and the item kept whole.
static sb_event_t *
s_item_event (const s_change_t *change, Switchboard__V1__Kind kind, const json_t *item, bool *ok)
{
    sb_event_t *event = s_event_new (change, kind, ok);
    if (event)
        s_put_detail (ok, event, item);
    return event;
}

//  A field's item or value of a shape we do not expect: KIND_OTHER, kept
//  whole. NULL when out of memory.
static sb_event_t *
s_field_other (const s_change_t *change, const json_t *whole)
{
    bool ok = true;
    sb_event_t *event = s_item_event (change, SB_KIND_OTHER, whole, &ok);
    if (event)
        s_put_text (&ok, &event->to, change->display_phone);
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  An id Meta writes as a number or a string (message_template_id).
static void
s_put_id (bool *ok, char **field, const json_t *id)
{
    char text[32];
    if (json_is_integer (id)) {
        snprintf (text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value (id));
        s_put_text (ok, field, text);
    }
    else
        s_put_text (ok, field, json_string_value (id));
}

//  A WhatsApp user's phone number as inbound messages give it (wa_id:
//  digits, no '+'). The echo reference's example writes "to" with a
//  '+' ("+16505551234"); kept, it would open a second conversation
//  beside the one of the user's own messages. Anything else is kept.
static const char *
s_wa_number (const char *value)
{
    if (!value || value[0] != '+' || !value[1])
        return value;
    for (const char *c = value + 1; *c; c++)
        if (*c < '0' || *c > '9')
            return value;
    return value + 1;
}

//  message_echoes[] item: a message our number sent (the WhatsApp
//  Business app, a linked device, or the API), from us to the user.
static sb_event_t *
s_echo (const s_change_t *change, const json_t *echo)
{
    bool ok = true;
    sb_event_t *event = s_item_event (change, SB_KIND_ECHO, echo, &ok);
    if (!event)
        return NULL;
    const char *type = s_str (echo, "type");
    const char *from = s_str (echo, "from");
    s_put_text (&ok, &event->from, from ? from : change->display_phone);
    //  To a user who hides their number: to_user_id only (BSUID page).
    s_put_text (&ok, &event->to,
                s_wa_number (s_str_first (echo, "to", "to_user_id", "to_parent_user_id")));
    s_put_bsuid (&ok, event, &event->user_id, s_str (echo, "to_user_id"));
    s_put_bsuid (&ok, event, &event->parent_user_id, s_str (echo, "to_parent_user_id"));
    s_put (&ok, &event->provider_id, echo, "id");
    event->provider_timestamp = s_int (json_object_get (echo, "timestamp"));
    s_put (&ok, &event->context_id, json_object_get (echo, "context"), "id");
    s_put_text (&ok, &event->message_type, s_known (type) ? type : "unknown");
    s_put_body (&ok, event, type, json_object_get (echo, type ? type : ""));
    s_put_errors (&ok, event, json_object_get (echo, "errors"));
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  The SDP of a call's session, at most SB_META_SDP_MAX bytes, cut before
//  a UTF-8 continuation byte.
static void
s_put_sdp (bool *ok, Switchboard__V1__MetaFieldsCall *call, const json_t *session)
{
    const char *sdp = s_str (session, "sdp");
    s_put (ok, &call->sdp_type, session, "sdp_type");
    if (!sdp)
        return;
    size_t size = strlen (sdp);
    if (size <= SB_META_SDP_MAX) {
        s_put_text (ok, &call->sdp, sdp);
        return;
    }
    size = SB_META_SDP_MAX;
    while (size > 0 && ((unsigned char) sdp[size] & 0xC0) == 0x80)
        size--;
    char *cut = sb_scratch_alloc (size + 1);
    if (!cut) {
        *ok = false;
        return;
    }
    memcpy (cut, sdp, size);
    cut[size] = '\0';
    s_put_text (ok, &call->sdp, cut);
    sb_scratch_free (cut);
    call->sdp_truncated = true;
}

//  The profile name and username of the change's contact for this user
//  (by phone, else by BSUID, else the first); the contact, borrowed.
static const json_t *
s_put_profile (bool *ok, sb_event_t *event, const s_change_t *change, const char *wa_id,
               const char *user_id)
{
    const json_t *contact =
        s_contact_for (json_object_get (change->value, "contacts"), wa_id, user_id);
    s_put (ok, &event->profile_name, json_object_get (contact, "profile"), "name");
    s_put (ok, &event->username, json_object_get (contact, "profile"), "username");
    return contact;
}

//  calls[] item (connect, terminate), or with status set one statuses[]
//  item of the calls field (RINGING, ACCEPTED, REJECTED).
static sb_event_t *
s_call (const s_change_t *change, const json_t *item, bool status)
{
    bool ok = true;
    sb_event_t *event = s_item_event (change, SB_KIND_CALL, item, &ok);
    Switchboard__V1__MetaFieldsCall *call = event ? sb_event_meta_call (event) : NULL;
    if (!call) {
        sb_event_destroy (&event);
        return NULL;
    }
    s_put (&ok, &event->provider_id, item, "id");
    event->provider_timestamp = s_int (json_object_get (item, "timestamp"));
    s_put (&ok, &call->biz_opaque_callback_data, item, "biz_opaque_callback_data");
    if (status) {
        //  The business called the user: from us, to the recipient.
        s_put_text (&ok, &call->event, "status");
        s_put (&ok, &event->call_status, item, "status");
        s_put_text (&ok, &event->from, change->display_phone);
        s_put_text (
            &ok, &event->to,
            s_str_first (item, "recipient_id", "recipient_user_id", "recipient_parent_user_id"));
        s_put_bsuid (&ok, event, &event->user_id, s_str (item, "recipient_user_id"));
        s_put_bsuid (&ok, event, &event->parent_user_id, s_str (item, "recipient_parent_user_id"));
    }
    else {
        const char *what = s_str (item, "event");
        const char *outcome = s_str (item, "status");
        s_put_text (&ok, &call->event, what);
        s_put_text (&ok, &event->call_status, outcome ? outcome : what);
        //  A user who hides their number calls from from_user_id, and is
        //  called at to_user_id (BSUID page, calls webhooks).
        s_put_text (&ok, &event->from,
                    s_str_first (item, "from", "from_user_id", "from_parent_user_id"));
        s_put_text (&ok, &event->to, s_str_first (item, "to", "to_user_id", "to_parent_user_id"));
        s_put_bsuid (&ok, event, &event->user_id,
                     s_str_first (item, "from_user_id", "to_user_id", NULL));
        s_put_bsuid (&ok, event, &event->parent_user_id,
                     s_str_first (item, "from_parent_user_id", "to_parent_user_id", NULL));
        s_put (&ok, &call->direction, item, "direction");
        s_put_sdp (&ok, call, json_object_get (item, "session"));
        call->start_time = s_int (json_object_get (item, "start_time"));
        call->end_time = s_int (json_object_get (item, "end_time"));
        call->duration = s_int (json_object_get (item, "duration"));
        const json_t *contact = s_put_profile (&ok, event, change, event->from, event->user_id);
        s_put (&ok, &event->wa_id, contact, "wa_id");
    }
    s_put_errors (&ok, event, json_object_get (item, "errors"));
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  user_preferences[] item: the user (wa_id) stops or resumes marketing.
static sb_event_t *
s_preference (const s_change_t *change, const json_t *item)
{
    bool ok = true;
    sb_event_t *event = s_item_event (change, SB_KIND_PREFERENCE, item, &ok);
    Switchboard__V1__MetaFieldsPreference *pref = event ? sb_event_preference (event) : NULL;
    if (!pref) {
        sb_event_destroy (&event);
        return NULL;
    }
    //  wa_id is omitted for a user who hides their number (BSUID page):
    //  then the user is user_id, or parent_user_id.
    const char *wa_id = s_str (item, "wa_id");
    const char *user_id = s_str (item, "user_id");
    const char *user = s_str_first (item, "wa_id", "user_id", "parent_user_id");
    s_put_text (&ok, &event->from, user);
    s_put_text (&ok, &event->wa_id, wa_id);
    s_put_bsuid (&ok, event, &event->user_id, user_id);
    s_put_bsuid (&ok, event, &event->parent_user_id, s_str (item, "parent_user_id"));
    s_put_text (&ok, &event->to, change->display_phone);
    event->provider_timestamp = s_int (json_object_get (item, "timestamp"));
    s_put (&ok, &pref->category, item, "category");
    s_put (&ok, &pref->value, item, "value");
    s_put (&ok, &pref->detail, item, "detail");
    s_put_profile (&ok, event, change, wa_id, user_id);
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  user_id_update[] item: {wa_id, detail, user_id: {previous, current},
//  parent_user_id: {previous, current}, timestamp}. Meta's BSUID page
//  documented this field until its changelog of 2026-08-11 said it is not
//  subscribable and that BSUID changes come as system messages; BSPs (8x8)
//  still forward it as Meta sent it. Normalized as that system message
//  (type "user_id_update"), so the dispatcher moves the contact the same
//  way: from the phone, else the previous BSUID, to the current one.
static sb_event_t *
s_user_id_update (const s_change_t *change, const json_t *item)
{
    bool ok = true;
    sb_event_t *event = s_item_event (change, SB_KIND_MESSAGE, item, &ok);
    Switchboard__V1__System *system = event ? sb_event_system (event) : NULL;
    if (!system) {
        sb_event_destroy (&event);
        return NULL;
    }
    const json_t *user_id = json_object_get (item, "user_id");
    const json_t *parent = json_object_get (item, "parent_user_id");
    const char *wa_id = s_str (item, "wa_id");
    const char *previous = s_str (user_id, "previous");
    const char *from = wa_id && *wa_id ? wa_id : previous ? previous : s_str (parent, "previous");
    s_put_text (&ok, &event->from, from);
    s_put_text (&ok, &event->to, change->display_phone);
    s_put_text (&ok, &event->wa_id, wa_id);
    event->provider_timestamp = s_int (json_object_get (item, "timestamp"));
    s_put_text (&ok, &event->message_type, "system");
    s_put_text (&ok, &system->type, "user_id_update");
    s_put (&ok, &system->body, item, "detail");
    s_put_bsuid (&ok, event, &event->user_id, previous);
    s_put_bsuid (&ok, event, &event->parent_user_id, s_str (parent, "previous"));
    s_put_bsuid (&ok, event, &event->new_user_id, s_str (user_id, "current"));
    s_put_bsuid (&ok, event, &event->new_parent_user_id, s_str (parent, "current"));
    s_put_bsuid (&ok, event, &event->previous_user_id, previous);
    s_put_profile (&ok, event, change, wa_id, previous);
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  A template field's value: status, quality, category or components.
//  The template id is not the provider id: a template approved, rejected
//  and approved again is three events (unique by content, 0003).
static sb_event_t *
s_template (const s_change_t *change)
{
    bool ok = true;
    const json_t *value = change->value;
    sb_event_t *event = s_item_event (change, SB_KIND_TEMPLATE, value, &ok);
    Switchboard__V1__MetaFieldsTemplate *item = event ? sb_event_meta_template (event) : NULL;
    if (!item) {
        sb_event_destroy (&event);
        return NULL;
    }
    const char *what = s_str (value, "event");
    const char *category = s_str (value, "message_template_category");
    s_put_text (&ok, &item->event, what ? what : s_str (value, "new_quality_score"));
    s_put_id (&ok, &item->id, json_object_get (value, "message_template_id"));
    s_put (&ok, &item->name, value, "message_template_name");
    s_put (&ok, &item->language, value, "message_template_language");
    s_put (&ok, &item->reason, value, "reason");
    s_put_text (&ok, &item->category, category ? category : s_str (value, "new_category"));
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

//  account_alerts (alert_info) or account_update (event).
static sb_event_t *
s_account (const s_change_t *change)
{
    bool ok = true;
    const json_t *value = change->value;
    sb_event_t *event = s_item_event (change, SB_KIND_ACCOUNT, value, &ok);
    Switchboard__V1__MetaFieldsAccount *item = event ? sb_event_meta_account (event) : NULL;
    if (!item) {
        sb_event_destroy (&event);
        return NULL;
    }
    const json_t *alert = json_object_get (value, "alert_info");
    const char *what = s_str (value, "event");
    s_put_text (&ok, &item->event, what ? what : s_str (alert, "alert_type"));
    s_put (&ok, &item->entity_type, value, "entity_type");
    s_put (&ok, &item->entity_id, value, "entity_id");
    s_put (&ok, &item->severity, alert, "alert_severity");
    s_put (&ok, &item->status, alert, "alert_status");
    s_put (&ok, &item->description, alert, "alert_description");
    if (!ok)
        sb_event_destroy (&event);
    return event;
}

typedef sb_event_t *(s_item_fn) (const s_change_t *change, const json_t *item);

static sb_event_t *
s_call_item (const s_change_t *change, const json_t *item)
{
    return s_call (change, item, false);
}

static sb_event_t *
s_call_status (const s_change_t *change, const json_t *item)
{
    return s_call (change, item, true);
}

//  One event per object of value[key] (fn); a non-object item, or key not
//  an array, is a KIND_OTHER event kept whole. 0, or -1 with err.
static int
s_field_items (s_list_t *list, const s_change_t *change, const char *key, s_item_fn *fn, char *err,
               size_t err_size)
{
    const json_t *items = json_object_get (change->value, key);
    if (!items)
        return 0;
    if (!json_is_array (items))
        return s_list_push (list, s_field_other (change, change->value), err, err_size);
    size_t i;
    json_t *item;
    json_array_foreach (items, i, item) {
        sb_event_t *event =
            json_is_object (item) ? fn (change, item) : s_field_other (change, item);
        if (s_list_push (list, event, err, err_size))
            return -1;
    }
    return 0;
}

static bool
s_is (const char *field, const char *name)
{
    return field && strcmp (field, name) == 0;
}

//  One change of a field other than "messages" into events. 0, or -1 with
//  err (out of memory or too many events only: never the shape).
static int
s_field (s_list_t *list, const char *entry_id, const json_t *change, const char *field, char *err,
         size_t err_size)
{
    json_t *value = json_object_get (change, "value");
    const json_t *metadata = json_object_get (value, "metadata");
    s_change_t where = {
        .entry_id = entry_id,
        .field = field,
        .value = value,
        .account = s_str (metadata, "phone_number_id"),
        .display_phone = s_str (metadata, "display_phone_number"),
    };
    if (!json_is_object (value))
        return s_list_push (list, s_field_other (&where, change), err, err_size);
    size_t before = list->count;
    int rc = 0;
    if (s_is (field, "message_echoes") || s_is (field, "smb_message_echoes"))
        rc = s_field_items (list, &where, "message_echoes", s_echo, err, err_size);
    else if (s_is (field, "calls")) {
        rc = s_field_items (list, &where, "calls", s_call_item, err, err_size);
        if (!rc)
            rc = s_field_items (list, &where, "statuses", s_call_status, err, err_size);
    }
    else if (s_is (field, "user_preferences"))
        rc = s_field_items (list, &where, "user_preferences", s_preference, err, err_size);
    else if (s_is (field, "user_id_update"))
        rc = s_field_items (list, &where, "user_id_update", s_user_id_update, err, err_size);
    else if (s_is (field, "message_template_status_update")
             || s_is (field, "message_template_quality_update")
             || s_is (field, "message_template_components_update")
             || s_is (field, "template_category_update"))
        return s_list_push (list, s_template (&where), err, err_size);
    else if (s_is (field, "account_alerts") || s_is (field, "account_update"))
        return s_list_push (list, s_account (&where), err, err_size);
    if (rc == 0 && list->count == before)
        rc = s_list_push (list, s_field_other (&where, value), err, err_size);
    return rc;
}

//  One changes[] element into events. 0, or -1 with err.
static int
s_change (s_list_t *list, const char *entry_id, const json_t *change, size_t e, size_t c, char *err,
          size_t err_size)
{
    if (!json_is_object (change)) {
        sb_text_error (err, err_size, "entry[%zu].changes[%zu] is not an object", e, c);
        return -1;
    }
    const char *field = s_str (change, "field");
    if (field && strcmp (field, "messages") != 0)
        return s_field (list, entry_id, change, field, err, err_size);
    json_t *value = json_object_get (change, "value");
    if (!json_is_object (value)) {
        sb_text_error (err, err_size, "entry[%zu].changes[%zu].value is not an object", e, c);
        return -1;
    }
    json_t *messages = json_object_get (value, "messages");
    json_t *statuses = json_object_get (value, "statuses");
    if (messages && !json_is_array (messages)) {
        sb_text_error (err, err_size, "entry[%zu].changes[%zu].value.messages is not an array", e,
                       c);
        return -1;
    }
    if (statuses && !json_is_array (statuses)) {
        sb_text_error (err, err_size, "entry[%zu].changes[%zu].value.statuses is not an array", e,
                       c);
        return -1;
    }
    const json_t *metadata = json_object_get (value, "metadata");
    s_change_t where = {
        .entry_id = entry_id,
        .field = s_str (change, "field"),
        .value = value,
        .account = s_str (metadata, "phone_number_id"),
        .display_phone = s_str (metadata, "display_phone_number"),
    };
    size_t i;
    json_t *item;
    json_array_foreach (messages, i, item) {
        if (!json_is_object (item)) {
            sb_text_error (err, err_size,
                           "entry[%zu].changes[%zu].value.messages[%zu] is not an object", e, c, i);
            return -1;
        }
        if (s_list_push (list, s_message (&where, item), err, err_size))
            return -1;
    }
    json_array_foreach (statuses, i, item) {
        if (!json_is_object (item)) {
            sb_text_error (err, err_size,
                           "entry[%zu].changes[%zu].value.statuses[%zu] is not an object", e, c, i);
            return -1;
        }
        if (s_list_push (list, s_status (&where, item), err, err_size))
            return -1;
    }
    if (json_array_size (messages) + json_array_size (statuses) == 0)
        return s_list_push (list, s_other (&where), err, err_size);
    return 0;
}

int
sb_meta_normalize (const char *body, size_t size, sb_event_t ***events, size_t *count, char *err,
                   size_t err_size)
{
    *events = NULL;
    *count = 0;
    if (err && err_size)
        err[0] = '\0';
    if (!body || size == 0) {
        sb_text_error (err, err_size, "empty body");
        return -1;
    }
    json_error_t error;
    json_t *root = sb_json_load (body, size, SB_JSON_MAX_DEPTH, &error);
    if (!root) {
        sb_text_error (err, err_size, "not JSON: %s at line %d column %d", error.text, error.line,
                       error.column);
        return -1;
    }
    s_list_t list = {NULL, 0, 0};
    int rc = -1;
    const json_t *entries = json_object_get (root, "entry");
    if (!json_is_object (root)) {
        sb_text_error (err, err_size, "top level is not an object");
        goto cleanup;
    }
    if (!json_is_array (entries)) {
        sb_text_error (err, err_size, "no \"entry\" array");
        goto cleanup;
    }
    size_t e;
    json_t *entry;
    json_array_foreach (entries, e, entry) {
        if (!json_is_object (entry)) {
            sb_text_error (err, err_size, "entry[%zu] is not an object", e);
            goto cleanup;
        }
        const json_t *changes = json_object_get (entry, "changes");
        if (!json_is_array (changes)) {
            sb_text_error (err, err_size, "entry[%zu] has no \"changes\" array", e);
            goto cleanup;
        }
        const char *entry_id = s_str (entry, "id");
        size_t c;
        json_t *change;
        json_array_foreach (changes, c, change)
            if (s_change (&list, entry_id, change, e, c, err, err_size))
                goto cleanup;
    }
    rc = 0;
cleanup:
    json_decref (root);
    if (rc) {
        sb_meta_events_free (&list.items, list.count);
        return -1;
    }
    *events = list.items;
    *count = list.count;
    return 0;
}

void
sb_meta_events_free (sb_event_t ***events, size_t count)
{
    if (!events || !*events)
        return;
    for (size_t i = 0; i < count; i++)
        sb_event_destroy (&(*events)[i]);
    sb_scratch_free (*events);
    *events = NULL;
}
