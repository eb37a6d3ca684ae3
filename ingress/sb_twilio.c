/*  sb_twilio: Twilio webhook form parameters into one Event.

    Four routes, four mappings (tests/conformance/twilio-webhook-params.md):
    - messages: inbound SMS/MMS/WhatsApp. MessageSid (or the deprecated
      SmsMessageSid/SmsSid) and From are required. message_type is
      "location" when Latitude/Longitude are given, "button" for a
      ButtonPayload/ButtonText reply, "media" when NumMedia > 0, else
      "text".
    - status: an outbound message's status (MessageSid + MessageStatus or
      SmsStatus), or a call's (CallSid + CallStatus, no MessageSid).
    - voice: an inbound call, CallSid required.
    - gather: the <Gather> action: Digits, SpeechResult, Confidence;
      CallSid required.

    The channel is WhatsApp when From or To starts with "whatsapp:" (or a
    status says ChannelPrefix=whatsapp), RCS when one starts with "rcs:"
    (or ChannelPrefix=rcs), SMS otherwise, voice for calls; the "whatsapp:"
    and "rcs:" prefixes are removed from from/to (the sender puts the
    channel's prefix back on a reply's From and To). Numbers are parsed
    strictly (whole string, decimal, finite, in range) and a bad one fails
    the request: NumMedia, Latitude/Longitude, Confidence. Media are read
    up to NumMedia and at most SB_TWILIO_MAX_MEDIA (Twilio's own limit).
    Parameters without a field of their own stay in raw_body, which the
    caller sets to the form as received.

    WhatsApp users known only by a business-scoped user id (BSUID) come as
    From=whatsapp:US.... with the id in ExternalUserId (the name issue 12
    gives; Twilio's changelog of 2026-07-20 calls the field
    ExternalUserIdentifier: both are read). The event's user_id is that
    parameter, else a BSUID-shaped From; a malformed one is kept and flags
    the event (user_id_malformed), never refused.
*/
#include "sb_twilio.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb_bsuid.h"
#include "sb_log.h"
#include "sb_text.h"

//  Twilio attaches at most 10 media to a message.
#define SB_TWILIO_MAX_MEDIA 10

#define S_WHATSAPP "whatsapp:"
#define S_RCS "rcs:"

//  The value of key, or NULL when absent or empty.
static const char *
s_get (const sb_form_t *form, const char *key)
{
    const char *value = sb_form_get (form, key);
    return value && *value ? value : NULL;
}

//  The first of two keys that has a value.
static const char *
s_get2 (const sb_form_t *form, const char *key, const char *fallback)
{
    const char *value = s_get (form, key);
    return value ? value : s_get (form, fallback);
}

static bool
s_is_whatsapp (const char *address)
{
    return address && strncasecmp (address, S_WHATSAPP, strlen (S_WHATSAPP)) == 0;
}

static bool
s_is_rcs (const char *address)
{
    return address && strncasecmp (address, S_RCS, strlen (S_RCS)) == 0;
}

//  The address without its "whatsapp:" or "rcs:" prefix (borrowed).
static const char *
s_strip (const char *address)
{
    return s_is_whatsapp (address) ? address + strlen (S_WHATSAPP)
           : s_is_rcs (address)    ? address + strlen (S_RCS)
                                   : address;
}

//  Copy value into field (NULL: left empty); clears *ok when out of memory.
static void
s_put (bool *ok, char **field, const char *value)
{
    if (value && sb_event_set (field, value))
        *ok = false;
}

//  A count: decimal digits only, at most 9 of them. 0 or -1.
static int
s_parse_count (const char *text, long *count)
{
    size_t len = strlen (text);
    if (len == 0 || len > 9 || strspn (text, "0123456789") != len)
        return -1;
    *count = strtol (text, NULL, 10);
    return 0;
}

//  A decimal number, the whole string, finite, within [min, max]. 0 or -1.
static int
s_parse_double (const char *text, double min, double max, double *number)
{
    size_t len = strlen (text);
    //  No spaces, hex floats, "inf" or "nan": only what a decimal number uses.
    if (len == 0 || len > 64 || strspn (text, "0123456789+-.eE") != len)
        return -1;
    errno = 0;
    char *end;
    double value = strtod (text, &end);
    if (errno || end != text + len || !isfinite (value) || value < min || value > max)
        return -1;
    *number = value;
    return 0;
}

//  A new event with what every Twilio event carries.
static sb_event_t *
s_event_new (const sb_form_t *form, Switchboard__V1__Kind kind, Switchboard__V1__Channel channel,
             const char *provider_id, bool *ok)
{
    sb_event_t *event = sb_event_new ();
    if (!event) {
        *ok = false;
        return NULL;
    }
    event->provider = SB_PROVIDER_TWILIO;
    event->kind = kind;
    event->channel = channel;
    s_put (ok, &event->provider_id, provider_id);
    s_put (ok, &event->account, s_get (form, "AccountSid"));
    s_put (ok, &event->from, s_strip (s_get (form, "From")));
    s_put (ok, &event->to, s_strip (s_get (form, "To")));
    return event;
}

static Switchboard__V1__Channel
s_message_channel (const sb_form_t *form)
{
    if (s_is_whatsapp (s_get (form, "From")) || s_is_whatsapp (s_get (form, "To")))
        return SB_CHANNEL_WHATSAPP;
    if (s_is_rcs (s_get (form, "From")) || s_is_rcs (s_get (form, "To")))
        return SB_CHANNEL_RCS;
    const char *prefix = s_get (form, "ChannelPrefix");
    if (prefix && strcasecmp (prefix, "whatsapp") == 0)
        return SB_CHANNEL_WHATSAPP;
    if (prefix && strcasecmp (prefix, "rcs") == 0)
        return SB_CHANNEL_RCS;
    return SB_CHANNEL_SMS;
}

//  NumMedia, MediaUrlN, MediaContentTypeN. 0, or -1 with err.
static int
s_messages_media (sb_event_t *event, const sb_form_t *form, bool *ok, char *err, size_t err_size)
{
    const char *num = sb_form_get (form, "NumMedia");
    long count = 0;
    if (num && s_parse_count (num, &count)) {
        sb_text_error (err, err_size, "NumMedia is not a number");
        return -1;
    }
    if (count > SB_TWILIO_MAX_MEDIA)
        count = SB_TWILIO_MAX_MEDIA;
    for (long i = 0; i < count; i++) {
        char url_key[48], type_key[48];
        snprintf (url_key, sizeof url_key, "MediaUrl%ld", i);
        snprintf (type_key, sizeof type_key, "MediaContentType%ld", i);
        const char *url = s_get (form, url_key);
        const char *type = s_get (form, type_key);
        if (!url && !type)
            continue;
        sb_event_media_t *media = sb_event_add_media (event);
        if (!media) {
            *ok = false;
            return 0;
        }
        s_put (ok, &media->url, url);
        s_put (ok, &media->content_type, type);
    }
    return 0;
}

//  Latitude, Longitude, Address, Label. 0, or -1 with err.
static int
s_messages_location (sb_event_t *event, const sb_form_t *form, bool *ok, char *err, size_t err_size)
{
    const char *lat = sb_form_get (form, "Latitude");
    const char *lon = sb_form_get (form, "Longitude");
    if (!lat && !lon)
        return 0;
    double latitude, longitude;
    if (!lat || s_parse_double (lat, -90, 90, &latitude)) {
        sb_text_error (err, err_size, "Latitude is missing or not a latitude");
        return -1;
    }
    if (!lon || s_parse_double (lon, -180, 180, &longitude)) {
        sb_text_error (err, err_size, "Longitude is missing or not a longitude");
        return -1;
    }
    Switchboard__V1__Location *location = sb_event_location (event);
    if (!location) {
        *ok = false;
        return 0;
    }
    location->latitude = latitude;
    location->longitude = longitude;
    s_put (ok, &location->address, s_get (form, "Address"));
    s_put (ok, &location->label, s_get (form, "Label"));
    return 0;
}

//  A WhatsApp sender's business-scoped user id: ExternalUserIdentifier
//  (Twilio's changelog, 2026-07-20) or ExternalUserId (issue 12's name),
//  else a From that is one.
static void
s_put_bsuid (bool *ok, sb_event_t *event, const sb_form_t *form)
{
    const char *from = s_get (form, "From");
    const char *user_id = s_get2 (form, "ExternalUserIdentifier", "ExternalUserId");
    if (user_id && s_is_whatsapp (user_id))
        user_id = s_strip (user_id);
    if (!user_id && s_is_whatsapp (from) && sb_bsuid_like (s_strip (from)))
        user_id = s_strip (from);
    if (!user_id || !*user_id)
        return;
    s_put (ok, &event->user_id, user_id);
    if (!sb_bsuid_valid (user_id)) {
        event->user_id_malformed = true;
        sb_debug ("twilio", "malformed business-scoped user id kept as given length=%zu",
                  strlen (user_id));
    }
}

//  POST /twilio/messages
static sb_event_t *
s_messages (const sb_form_t *form, char *err, size_t err_size)
{
    const char *sid = s_get2 (form, "MessageSid", "SmsMessageSid");
    if (!sid)
        sid = s_get (form, "SmsSid");
    if (!sid) {
        sb_text_error (err, err_size, "MessageSid missing");
        return NULL;
    }
    if (!s_get (form, "From")) {
        sb_text_error (err, err_size, "From missing");
        return NULL;
    }
    bool ok = true;
    sb_event_t *event = s_event_new (form, SB_KIND_MESSAGE, s_message_channel (form), sid, &ok);
    if (!event)
        goto oom;
    s_put (&ok, &event->text, s_get (form, "Body"));
    s_put (&ok, &event->profile_name, s_get (form, "ProfileName"));
    s_put (&ok, &event->wa_id, s_get (form, "WaId"));
    s_put_bsuid (&ok, event, form);
    s_put (&ok, &event->context_id, s_get (form, "OriginalRepliedMessageSid"));
    if (s_messages_media (event, form, &ok, err, err_size)
        || s_messages_location (event, form, &ok, err, err_size)) {
        sb_event_destroy (&event);
        return NULL;
    }
    const char *payload = s_get (form, "ButtonPayload");
    const char *button_text = s_get (form, "ButtonText");
    if (payload || button_text) {
        Switchboard__V1__Interactive *reply = sb_event_interactive (event);
        if (!reply)
            goto oom;
        s_put (&ok, &reply->type, "button");
        s_put (&ok, &reply->id, payload);
        s_put (&ok, &reply->title, button_text);
    }
    const char *type = event->location      ? "location"
                       : event->interactive ? "button"
                       : event->n_media     ? "media"
                                            : "text";
    s_put (&ok, &event->message_type, type);
    if (!ok)
        goto oom;
    return event;
oom:
    sb_event_destroy (&event);
    sb_error ("twilio", "cannot build message event: out of memory");
    sb_text_error (err, err_size, "out of memory");
    return NULL;
}

//  POST /twilio/status
static sb_event_t *
s_status (const sb_form_t *form, char *err, size_t err_size)
{
    const char *message_sid = s_get2 (form, "MessageSid", "SmsSid");
    const char *call_sid = s_get (form, "CallSid");
    const char *call_status = s_get (form, "CallStatus");
    bool ok = true;
    sb_event_t *event = NULL;
    Switchboard__V1__Status *status = NULL;
    if (message_sid) {
        const char *value = s_get2 (form, "MessageStatus", "SmsStatus");
        if (!value) {
            sb_text_error (err, err_size, "MessageStatus missing");
            return NULL;
        }
        event = s_event_new (form, SB_KIND_STATUS, s_message_channel (form), message_sid, &ok);
        status = event ? sb_event_status (event) : NULL;
        if (!status)
            goto oom;
        s_put (&ok, &status->status, value);
        s_put (&ok, &status->error_code, s_get (form, "ErrorCode"));
        s_put (&ok, &status->error_message, s_get (form, "ErrorMessage"));
        s_put (&ok, &status->recipient, s_strip (s_get (form, "To")));
    }
    else if (call_sid && call_status) {
        event = s_event_new (form, SB_KIND_STATUS, SB_CHANNEL_VOICE, call_sid, &ok);
        status = event ? sb_event_status (event) : NULL;
        if (!status)
            goto oom;
        s_put (&ok, &event->call_status, call_status);
        s_put (&ok, &status->status, call_status);
        s_put (&ok, &status->error_code, s_get (form, "ErrorCode"));
        s_put (&ok, &status->error_message, s_get (form, "ErrorMessage"));
    }
    else {
        sb_text_error (err, err_size, "MessageSid, or CallSid with CallStatus, missing");
        return NULL;
    }
    if (!ok)
        goto oom;
    return event;
oom:
    sb_event_destroy (&event);
    sb_error ("twilio", "cannot build status event: out of memory");
    sb_text_error (err, err_size, "out of memory");
    return NULL;
}

//  POST /twilio/voice and /twilio/gather
static sb_event_t *
s_call (const sb_form_t *form, Switchboard__V1__Kind kind, char *err, size_t err_size)
{
    const char *call_sid = s_get (form, "CallSid");
    if (!call_sid) {
        sb_text_error (err, err_size, "CallSid missing");
        return NULL;
    }
    double confidence = 0;
    const char *text = sb_form_get (form, "Confidence");
    if (kind == SB_KIND_GATHER && text && *text && s_parse_double (text, 0, 1, &confidence)) {
        sb_text_error (err, err_size, "Confidence is not a number between 0 and 1");
        return NULL;
    }
    bool ok = true;
    sb_event_t *event = s_event_new (form, kind, SB_CHANNEL_VOICE, call_sid, &ok);
    if (!event)
        goto oom;
    s_put (&ok, &event->call_status, s_get (form, "CallStatus"));
    if (kind == SB_KIND_GATHER) {
        s_put (&ok, &event->digits, s_get (form, "Digits"));
        s_put (&ok, &event->speech_result, s_get (form, "SpeechResult"));
        s_put (&ok, &event->text, s_get (form, "SpeechResult"));
        event->speech_confidence = confidence;
    }
    if (!ok)
        goto oom;
    return event;
oom:
    sb_event_destroy (&event);
    sb_error ("twilio", "cannot build call event: out of memory");
    sb_text_error (err, err_size, "out of memory");
    return NULL;
}

sb_event_t *
sb_twilio_normalize (sb_twilio_route_t route, const sb_form_t *form, char *err, size_t err_size)
{
    if (err && err_size)
        err[0] = '\0';
    if (!form) {
        sb_text_error (err, err_size, "no form");
        return NULL;
    }
    switch (route) {
        case SB_TWILIO_MESSAGES: return s_messages (form, err, err_size);
        case SB_TWILIO_STATUS: return s_status (form, err, err_size);
        case SB_TWILIO_VOICE: return s_call (form, SB_KIND_CALL, err, err_size);
        case SB_TWILIO_GATHER: return s_call (form, SB_KIND_GATHER, err, err_size);
    }
    sb_text_error (err, err_size, "unknown route");
    return NULL;
}
