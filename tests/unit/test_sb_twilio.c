/*  test_sb_twilio: Twilio webhook forms into Events.

    One test per tests/conformance/twilio-*.form body (run from tests/),
    then missing parameters and hostile values. Silent on success; prints
    file:line and what differed on failure.
*/
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_twilio.h"

#include "sb_check.h"

#define CONFORMANCE "conformance/"
#define ACCOUNT "AC0123456789abcdef0123456789abcdef"
#define SM_SID "SMa1b2c3d4e5f60718293a4b5c6d7e8f90"
#define CALL_SID "CAc1b2c3d4e5f60718293a4b5c6d7e8f92"

//  The .form files this test covers (checked against the folder).
static const char *s_covered[] = {
    "twilio-sms-inbound.form",
    "twilio-whatsapp-inbound-text.form",
    "twilio-bsuid-whatsapp-inbound.form",
    "twilio-whatsapp-inbound-media.form",
    "twilio-whatsapp-inbound-button.form",
    "twilio-whatsapp-inbound-location.form",
    "twilio-voice-inbound.form",
    "twilio-voice-gather-dtmf.form",
    "twilio-voice-gather-speech.form",
    "twilio-voice-status-completed.form",
    "twilio-message-status-sent.form",
    "twilio-message-status-delivered.form",
    "twilio-message-status-undelivered.form",
    "twilio-whatsapp-status-read.form",
    "twilio-whatsapp-status-failed.form",
    "twilio-rcs-inbound.form",
    "twilio-rcs-status-delivered.form",
};

//  The parsed form of a conformance file.
static sb_form_t *
s_load_form (const char *name)
{
    char path[256];
    snprintf (path, sizeof path, CONFORMANCE "%s", name);
    FILE *file = fopen (path, "rb");
    if (!file) {
        fprintf (stderr, "%s:%d: cannot open %s (run from tests/)\n", __FILE__, __LINE__, path);
        s_failures++;
        return NULL;
    }
    char data[16384];
    size_t size = fread (data, 1, sizeof data, file);
    fclose (file);
    CHECK (size > 0 && size < sizeof data);
    sb_form_t *form = sb_form_parse (data, size);
    CHECK (form);
    return form;
}

//  Normalize a conformance file for route; checks it succeeded.
static sb_event_t *
s_normalize_file (const char *name, sb_twilio_route_t route)
{
    sb_form_t *form = s_load_form (name);
    char err[128] = "unset";
    sb_event_t *event = form ? sb_twilio_normalize (route, form, err, sizeof err) : NULL;
    if (!event) {
        fprintf (stderr, "%s:%d: %s refused: %s\n", __FILE__, __LINE__, name, err);
        s_failures++;
    }
    else
        CHECK (err[0] == '\0');
    sb_form_destroy (&form);
    return event;
}

//  What every Twilio event carries, and the caller's fields left empty.
static void
s_check_common (const sb_event_t *e, Switchboard__V1__Channel channel, Switchboard__V1__Kind kind,
                const char *provider_id)
{
    CHECK (e->provider == SB_PROVIDER_TWILIO);
    CHECK (e->channel == channel);
    CHECK (e->kind == kind);
    CHECK_STR (e->provider_id, provider_id);
    CHECK_STR (e->account, ACCOUNT);
    CHECK (*e->ingress_id == '\0' && e->seq == 0 && e->raw_body.len == 0);
    CHECK (*e->request_path == '\0' && *e->detail_json == '\0');
}

static void
s_test_sms_inbound (void)
{
    sb_event_t *e = s_normalize_file ("twilio-sms-inbound.form", SB_TWILIO_MESSAGES);
    if (!e)
        return;
    s_check_common (e, SB_CHANNEL_SMS, SB_KIND_MESSAGE, SM_SID);
    CHECK_STR (e->message_type, "text");
    CHECK_STR (e->from, "+14017122661");
    CHECK_STR (e->to, "+15558675310");
    CHECK_STR (e->text, "Ahoy! Let's build something amazing.");
    CHECK (*e->profile_name == '\0' && *e->wa_id == '\0');
    CHECK (e->n_media == 0 && e->location == NULL && e->interactive == NULL && e->status == NULL);
    char topic[64];
    CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
    CHECK_STR (topic, "sb.v1.twilio.sms.message");
    sb_event_destroy (&e);
}

//  A WhatsApp user known only by a business-scoped user id (issue 12).
static void
s_test_whatsapp_bsuid (void)
{
    sb_event_t *e = s_normalize_file ("twilio-bsuid-whatsapp-inbound.form", SB_TWILIO_MESSAGES);
    if (e) {
        CHECK (e->channel == SB_CHANNEL_WHATSAPP);
        CHECK_STR (e->from, "US.13491208655302741918");
        CHECK_STR (e->user_id, "US.13491208655302741918");
        CHECK (*e->wa_id == '\0' && !e->user_id_malformed);
        sb_event_destroy (&e);
    }
    //  A phone From with the BSUID beside it: ExternalUserIdentifier (the
    //  name in Twilio's changelog of 2026-07-20) and ExternalUserId (the
    //  issue's) both give user_id; the sender stays the phone.
    static const char *const forms[] = {
        "MessageSid=SM1&From=whatsapp%3A%2B14017122661&To=whatsapp%3A%2B15558675310&Body=x"
        "&ExternalUserIdentifier=US.13491208655302741918",
        "MessageSid=SM2&From=whatsapp%3A%2B14017122661&To=whatsapp%3A%2B15558675310&Body=x"
        "&ExternalUserId=US.13491208655302741918",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        sb_form_t *form = sb_form_parse (forms[i], strlen (forms[i]));
        char err[128] = "";
        e = form ? sb_twilio_normalize (SB_TWILIO_MESSAGES, form, err, sizeof err) : NULL;
        CHECK (e != NULL);
        if (e) {
            CHECK_STR (e->from, "+14017122661");
            CHECK_STR (e->user_id, "US.13491208655302741918");
            sb_event_destroy (&e);
        }
        sb_form_destroy (&form);
    }
}

static void
s_test_whatsapp_inbound (void)
{
    sb_event_t *e = s_normalize_file ("twilio-whatsapp-inbound-text.form", SB_TWILIO_MESSAGES);
    if (e) {
        s_check_common (e, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, SM_SID);
        CHECK_STR (e->message_type, "text");
        CHECK_STR (e->from, "+14017122661");  //  "whatsapp:" removed
        CHECK_STR (e->to, "+15558675310");
        CHECK_STR (e->text, "Hi, is the caf\xC3\xA9 open on Sunday? \xF0\x9F\x98\x8A");
        CHECK_STR (e->profile_name, "Perspective Coffee");
        CHECK_STR (e->wa_id, "14017122661");
        CHECK (e->n_media == 0 && *e->context_id == '\0');
        char topic[64];
        CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.twilio.whatsapp.message");
        sb_event_destroy (&e);
    }

    e = s_normalize_file ("twilio-whatsapp-inbound-media.form", SB_TWILIO_MESSAGES);
    if (e) {
        s_check_common (e, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE,
                        "MMb1b2c3d4e5f60718293a4b5c6d7e8f91");
        CHECK_STR (e->message_type, "media");
        CHECK_STR (e->text, "Receipt attached");
        CHECK_STR (e->from, "+14017122661");
        CHECK (e->n_media == 1);
        if (e->n_media == 1) {
            CHECK_STR (e->media[0]->url, "https://api.twilio.com/2010-04-01/Accounts/" ACCOUNT
                                         "/Messages/MMb1b2c3d4e5f60718293a4b5c6d7e8f91/Media/"
                                         "MEe1b2c3d4e5f60718293a4b5c6d7e8f94");
            CHECK_STR (e->media[0]->content_type, "image/jpeg");
        }
        sb_event_destroy (&e);
    }

    e = s_normalize_file ("twilio-whatsapp-inbound-button.form", SB_TWILIO_MESSAGES);
    if (e) {
        s_check_common (e, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, SM_SID);
        CHECK_STR (e->message_type, "button");
        CHECK_STR (e->text, "Cancel Appointment");
        CHECK_STR (e->context_id, "SMf1b2c3d4e5f60718293a4b5c6d7e8f95");
        CHECK (e->interactive);
        if (e->interactive) {
            CHECK_STR (e->interactive->type, "button");
            CHECK_STR (e->interactive->id, "postback_data_1234");
            CHECK_STR (e->interactive->title, "Cancel Appointment");
        }
        sb_event_destroy (&e);
    }

    e = s_normalize_file ("twilio-whatsapp-inbound-location.form", SB_TWILIO_MESSAGES);
    if (e) {
        s_check_common (e, SB_CHANNEL_WHATSAPP, SB_KIND_MESSAGE, SM_SID);
        CHECK_STR (e->message_type, "location");
        CHECK (*e->text == '\0');  //  Body= is empty
        CHECK (e->location);
        if (e->location) {
            CHECK (e->location->latitude == 51.51322977399644);
            CHECK (e->location->longitude == -0.2197976373036567);
            CHECK_STR (e->location->address, "187 Freston Road, London, Greater London W10 6TH");
            CHECK_STR (e->location->label, "The Harrow Club");
        }
        sb_event_destroy (&e);
    }
}

static void
s_test_voice (void)
{
    sb_event_t *e = s_normalize_file ("twilio-voice-inbound.form", SB_TWILIO_VOICE);
    if (e) {
        s_check_common (e, SB_CHANNEL_VOICE, SB_KIND_CALL, CALL_SID);
        CHECK_STR (e->call_status, "ringing");
        CHECK_STR (e->from, "+14158675309");
        CHECK_STR (e->to, "+15558675310");
        CHECK (*e->message_type == '\0' && e->status == NULL);
        char topic[64];
        CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.twilio.voice.call");
        sb_event_destroy (&e);
    }

    e = s_normalize_file ("twilio-voice-gather-dtmf.form", SB_TWILIO_GATHER);
    if (e) {
        s_check_common (e, SB_CHANNEL_VOICE, SB_KIND_GATHER, CALL_SID);
        CHECK_STR (e->digits, "1234");
        CHECK_STR (e->call_status, "in-progress");
        CHECK_STR (e->from, "+14158675309");
        CHECK (*e->speech_result == '\0' && *e->text == '\0' && e->speech_confidence == 0);
        char topic[64];
        CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.twilio.voice.gather");
        sb_event_destroy (&e);
    }

    e = s_normalize_file ("twilio-voice-gather-speech.form", SB_TWILIO_GATHER);
    if (e) {
        s_check_common (e, SB_CHANNEL_VOICE, SB_KIND_GATHER, CALL_SID);
        CHECK_STR (e->speech_result, "I would like to check my order status.");
        CHECK_STR (e->text, "I would like to check my order status.");
        CHECK (e->speech_confidence == 0.9128386);
        CHECK (*e->digits == '\0');
        sb_event_destroy (&e);
    }

    e = s_normalize_file ("twilio-voice-status-completed.form", SB_TWILIO_STATUS);
    if (e) {
        s_check_common (e, SB_CHANNEL_VOICE, SB_KIND_STATUS, CALL_SID);
        CHECK_STR (e->call_status, "completed");
        CHECK (e->status);
        if (e->status)
            CHECK_STR (e->status->status, "completed");
        char topic[64];
        CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.twilio.voice.status");
        sb_event_destroy (&e);
    }
}

static void
s_check_message_status (const char *name, Switchboard__V1__Channel channel, const char *status,
                        const char *error_code)
{
    sb_event_t *e = s_normalize_file (name, SB_TWILIO_STATUS);
    if (!e)
        return;
    s_check_common (e, channel, SB_KIND_STATUS, SM_SID);
    //  Our number sent it, the user received it.
    CHECK_STR (e->from, "+15558675310");
    CHECK_STR (e->to, "+14017122661");
    CHECK (*e->message_type == '\0' && *e->call_status == '\0');
    CHECK (e->status);
    if (e->status) {
        CHECK_STR (e->status->status, status);
        CHECK_STR (e->status->error_code, error_code);
        CHECK_STR (e->status->recipient, "+14017122661");
    }
    sb_event_destroy (&e);
}

static void
s_test_message_status (void)
{
    s_check_message_status ("twilio-message-status-sent.form", SB_CHANNEL_SMS, "sent", "");
    s_check_message_status ("twilio-message-status-delivered.form", SB_CHANNEL_SMS, "delivered",
                            "");
    s_check_message_status ("twilio-message-status-undelivered.form", SB_CHANNEL_SMS, "undelivered",
                            "30003");
    s_check_message_status ("twilio-whatsapp-status-read.form", SB_CHANNEL_WHATSAPP, "read", "");
    s_check_message_status ("twilio-whatsapp-status-failed.form", SB_CHANNEL_WHATSAPP, "failed",
                            "63016");
}

//  Every twilio-*.form in the folder has a test above.
static void
s_test_all_files_covered (void)
{
    DIR *dir = opendir (CONFORMANCE);
    CHECK (dir);
    if (!dir)
        return;
    size_t seen = 0;
    struct dirent *d;
    while ((d = readdir (dir))) {
        size_t len = strlen (d->d_name);
        if (strncmp (d->d_name, "twilio-", 7) != 0 || len < 5
            || strcmp (d->d_name + len - 5, ".form"))
            continue;
        bool known = false;
        for (size_t i = 0; i < sizeof s_covered / sizeof s_covered[0]; i++)
            known = known || strcmp (d->d_name, s_covered[i]) == 0;
        if (!known) {
            fprintf (stderr, "%s:%d: %s has no test\n", __FILE__, __LINE__, d->d_name);
            s_failures++;
        }
        seen += known;
    }
    closedir (dir);
    CHECK (seen == sizeof s_covered / sizeof s_covered[0]);
}

//  ---------------------------------------------------------------------
//  Missing and hostile parameters

//  A form from "key=value&..." text (test input, not network bytes).
static sb_form_t *
s_form (const char *text)
{
    sb_form_t *form = sb_form_parse (text, strlen (text));
    CHECK (form);
    return form;
}

//  Normalize text for route; returns whether an event came out, and
//  checks the error contract (NULL with a reason, or an event and "").
static bool
s_accepts (sb_twilio_route_t route, const char *text, const char *expect_err)
{
    sb_form_t *form = s_form (text);
    char err[128] = "unset";
    sb_event_t *event = form ? sb_twilio_normalize (route, form, err, sizeof err) : NULL;
    bool accepted = event != NULL;
    if (accepted)
        CHECK (err[0] == '\0');
    else {
        CHECK (err[0] && strcmp (err, "unset") != 0);
        if (expect_err && !strstr (err, expect_err)) {
            fprintf (stderr, "%s:%d: error \"%s\" lacks \"%s\" for %s\n", __FILE__, __LINE__, err,
                     expect_err, text);
            s_failures++;
        }
    }
    sb_event_destroy (&event);
    sb_form_destroy (&form);
    return accepted;
}

#define MSG "MessageSid=SM1&From=%2B1555&To=%2B1666&AccountSid=AC1"

static void
s_test_required (void)
{
    //  messages: MessageSid (or its deprecated copies) and From.
    CHECK (s_accepts (SB_TWILIO_MESSAGES, MSG, NULL));
    CHECK (!s_accepts (SB_TWILIO_MESSAGES, "From=%2B1555&Body=hi", "MessageSid"));
    CHECK (!s_accepts (SB_TWILIO_MESSAGES, "MessageSid=&From=%2B1555", "MessageSid"));
    CHECK (!s_accepts (SB_TWILIO_MESSAGES, "MessageSid=SM1&Body=hi", "From"));
    CHECK (!s_accepts (SB_TWILIO_MESSAGES, "MessageSid=SM1&From=", "From"));
    CHECK (s_accepts (SB_TWILIO_MESSAGES, "SmsMessageSid=SM2&From=%2B1555", NULL));
    CHECK (s_accepts (SB_TWILIO_MESSAGES, "SmsSid=SM3&From=%2B1555", NULL));
    CHECK (!s_accepts (SB_TWILIO_MESSAGES, "", NULL));
    //  status: a message's or a call's.
    CHECK (!s_accepts (SB_TWILIO_STATUS, "MessageSid=SM1&From=%2B1", "MessageStatus"));
    CHECK (s_accepts (SB_TWILIO_STATUS, "MessageSid=SM1&SmsStatus=sent", NULL));
    CHECK (!s_accepts (SB_TWILIO_STATUS, "CallSid=CA1", "CallSid"));
    CHECK (!s_accepts (SB_TWILIO_STATUS, "CallStatus=completed", NULL));
    CHECK (!s_accepts (SB_TWILIO_STATUS, "", NULL));
    //  voice and gather: CallSid.
    CHECK (!s_accepts (SB_TWILIO_VOICE, "From=%2B1&CallStatus=ringing", "CallSid"));
    CHECK (s_accepts (SB_TWILIO_VOICE, "CallSid=CA1", NULL));
    CHECK (!s_accepts (SB_TWILIO_GATHER, "Digits=12", "CallSid"));
    CHECK (s_accepts (SB_TWILIO_GATHER, "CallSid=CA1", NULL));  //  actionOnEmptyResult
    //  No form, unknown route, no err buffer.
    char err[64];
    CHECK (sb_twilio_normalize (SB_TWILIO_MESSAGES, NULL, err, sizeof err) == NULL && err[0]);
    sb_form_t *form = s_form (MSG);
    CHECK (sb_twilio_normalize ((sb_twilio_route_t) 99, form, err, sizeof err) == NULL && err[0]);
    CHECK (sb_twilio_normalize (SB_TWILIO_VOICE, form, NULL, 0) == NULL);
    CHECK (sb_twilio_normalize (SB_TWILIO_VOICE, form, err, 1) == NULL && err[0] == '\0');
    sb_form_destroy (&form);
}

//  The event for MSG plus extra parameters (must be accepted).
static sb_event_t *
s_message_with (const char *extra)
{
    char text[4096];
    snprintf (text, sizeof text, "%s&%s", MSG, extra);
    sb_form_t *form = s_form (text);
    char err[128];
    sb_event_t *event =
        form ? sb_twilio_normalize (SB_TWILIO_MESSAGES, form, err, sizeof err) : NULL;
    if (!event) {
        fprintf (stderr, "%s:%d: refused %s: %s\n", __FILE__, __LINE__, text, err);
        s_failures++;
    }
    sb_form_destroy (&form);
    return event;
}

static void
s_test_media_limits (void)
{
    //  NumMedia must be a plain decimal count.
    static const char *bad[] = {"NumMedia=abc", "NumMedia=-1",   "NumMedia=1.5",
                                "NumMedia=+1",  "NumMedia=%201", "NumMedia=1%20",
                                "NumMedia=",    "NumMedia=0x1",  "NumMedia=1234567890"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[256];
        snprintf (text, sizeof text, "%s&%s", MSG, bad[i]);
        CHECK (!s_accepts (SB_TWILIO_MESSAGES, text, "NumMedia"));
    }
    //  NumMedia=0: media parameters are ignored; the type stays text.
    sb_event_t *e = s_message_with ("NumMedia=0&MediaUrl0=https%3A%2F%2Fx%2F0");
    CHECK (e && e->n_media == 0);
    if (e)
        CHECK_STR (e->message_type, "text");
    sb_event_destroy (&e);
    //  Read up to NumMedia...
    e = s_message_with (
        "NumMedia=2&MediaUrl0=u0&MediaUrl1=u1&MediaUrl2=u2&MediaContentType1=image%2Fpng");
    CHECK (e && e->n_media == 2);
    if (e && e->n_media == 2) {
        CHECK_STR (e->message_type, "media");
        CHECK_STR (e->media[0]->url, "u0");
        CHECK (*e->media[0]->content_type == '\0');
        CHECK_STR (e->media[1]->url, "u1");
        CHECK_STR (e->media[1]->content_type, "image/png");
    }
    sb_event_destroy (&e);
    //  ...and at most 10, whatever NumMedia says; gaps are skipped.
    char many[2048] = "NumMedia=999999999";
    size_t used = strlen (many);
    for (int i = 0; i < 20; i++)
        used += (size_t) snprintf (many + used, sizeof many - used, "&MediaUrl%d=u%d", i, i);
    e = s_message_with (many);
    CHECK (e && e->n_media == 10);
    if (e && e->n_media == 10)
        CHECK_STR (e->media[9]->url, "u9");
    sb_event_destroy (&e);
    e = s_message_with ("NumMedia=3&MediaUrl0=a&MediaUrl2=c");
    CHECK (e && e->n_media == 2);
    if (e && e->n_media == 2)
        CHECK_STR (e->media[1]->url, "c");
    sb_event_destroy (&e);
}

static void
s_test_location_limits (void)
{
    static const char *bad[] = {
        "Latitude=abc&Longitude=1",
        "Latitude=1&Longitude=abc",
        "Latitude=91&Longitude=0",
        "Latitude=-90.5&Longitude=0",
        "Latitude=0&Longitude=180.01",
        "Latitude=nan&Longitude=0",
        "Latitude=inf&Longitude=0",
        "Latitude=1e999&Longitude=0",
        "Latitude=0x10&Longitude=0",
        "Latitude=%201&Longitude=0",
        "Latitude=1%20&Longitude=0",
        "Latitude=&Longitude=0",
        "Latitude=1",
        "Longitude=1",
        "Latitude=1.2.3&Longitude=0",
        "Latitude=1e-400&Longitude=0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[256];
        snprintf (text, sizeof text, "%s&%s", MSG, bad[i]);
        CHECK (!s_accepts (SB_TWILIO_MESSAGES, text, "itude"));
    }
    sb_event_t *e = s_message_with ("Latitude=-90&Longitude=180&Label=South+Pole");
    CHECK (e && e->location);
    if (e && e->location) {
        CHECK (e->location->latitude == -90 && e->location->longitude == 180);
        CHECK_STR (e->location->label, "South Pole");
        CHECK_STR (e->message_type, "location");
    }
    sb_event_destroy (&e);
    e = s_message_with ("Latitude=1.5e1&Longitude=-0");
    CHECK (e && e->location && e->location->latitude == 15);
    sb_event_destroy (&e);
}

static void
s_test_gather_limits (void)
{
    static const char *bad[] = {"Confidence=x", "Confidence=1.5", "Confidence=-0.1",
                                "Confidence=nan", "Confidence=0.5%20"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[256];
        snprintf (text, sizeof text, "CallSid=CA1&SpeechResult=yes&%s", bad[i]);
        CHECK (!s_accepts (SB_TWILIO_GATHER, text, "Confidence"));
    }
    //  Confidence does not matter on the voice route.
    CHECK (s_accepts (SB_TWILIO_VOICE, "CallSid=CA1&Confidence=x", NULL));
    CHECK (s_accepts (SB_TWILIO_GATHER, "CallSid=CA1&Confidence=1&SpeechResult=yes", NULL));
    CHECK (s_accepts (SB_TWILIO_GATHER, "CallSid=CA1&Confidence=&Digits=1", NULL));
}

//  RCS: "rcs:" on From or To makes the channel rcs, the prefix removed from
//  both ends; a reply goes back from the agent (to) to the user (from).
static void
s_test_rcs (void)
{
    char topic[64];
    sb_event_t *e = s_normalize_file ("twilio-rcs-inbound.form", SB_TWILIO_MESSAGES);
    if (e) {
        s_check_common (e, SB_CHANNEL_RCS, SB_KIND_MESSAGE, SM_SID);
        CHECK_STR (e->from, "+14017122661");
        CHECK_STR (e->to, "sb_demo_agent");
        CHECK_STR (e->text, "Ahoy! Let's build something amazing.");
        CHECK_STR (e->message_type, "text");
        CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.twilio.rcs.message");
        sb_event_destroy (&e);
    }
    e = s_normalize_file ("twilio-rcs-status-delivered.form", SB_TWILIO_STATUS);
    if (e) {
        s_check_common (e, SB_CHANNEL_RCS, SB_KIND_STATUS, SM_SID);
        CHECK_STR (e->from, "sb_demo_agent");
        CHECK_STR (e->to, "+14017122661");
        CHECK (e->status && strcmp (e->status->status, "delivered") == 0
               && strcmp (e->status->recipient, "+14017122661") == 0);
        CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.twilio.rcs.status");
        sb_event_destroy (&e);
    }
    //  The prefix on one end only, in another case; ChannelPrefix=rcs alone;
    //  a plain number stays SMS; "rcs" without its colon is not a prefix.
    const struct {
        sb_twilio_route_t route;
        const char *form;
        Switchboard__V1__Channel channel;
        const char *from, *to;
    } cases[] = {
        {SB_TWILIO_MESSAGES, "MessageSid=SM1&From=%2B1555&To=RCS%3Aagent", SB_CHANNEL_RCS, "+1555",
         "agent"},
        {SB_TWILIO_MESSAGES, "MessageSid=SM1&From=rcs%3A%2B1555&To=%2B1666", SB_CHANNEL_RCS,
         "+1555", "+1666"},
        {SB_TWILIO_STATUS, "MessageSid=SM1&MessageStatus=read&ChannelPrefix=rcs&To=%2B1",
         SB_CHANNEL_RCS, "", "+1"},
        {SB_TWILIO_MESSAGES, "MessageSid=SM1&From=rcs%2B1555&To=agent", SB_CHANNEL_SMS, "rcs+1555",
         "agent"},
        {SB_TWILIO_MESSAGES, "MessageSid=SM1&From=rcs%3A&To=rcs%3Aagent", SB_CHANNEL_RCS, "",
         "agent"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sb_form_t *form = s_form (cases[i].form);
        char err[128];
        e = form ? sb_twilio_normalize (cases[i].route, form, err, sizeof err) : NULL;
        CHECK (e && e->channel == cases[i].channel);
        if (e) {
            CHECK_STR (e->from, cases[i].from);
            CHECK_STR (e->to, cases[i].to);
        }
        sb_event_destroy (&e);
        sb_form_destroy (&form);
    }
}


static void
s_test_channels_and_values (void)
{
    //  The prefix on To alone (or in another case) still means WhatsApp.
    sb_event_t *e = NULL;
    sb_form_t *form = s_form ("MessageSid=SM1&From=%2B1555&To=WhatsApp%3A%2B1666");
    char err[128];
    e = form ? sb_twilio_normalize (SB_TWILIO_MESSAGES, form, err, sizeof err) : NULL;
    CHECK (e && e->channel == SB_CHANNEL_WHATSAPP);
    if (e)
        CHECK_STR (e->to, "+1666");
    sb_event_destroy (&e);
    sb_form_destroy (&form);
    //  A status whose only hint is ChannelPrefix.
    form = s_form ("MessageSid=SM1&MessageStatus=read&ChannelPrefix=whatsapp&To=%2B1");
    e = form ? sb_twilio_normalize (SB_TWILIO_STATUS, form, err, sizeof err) : NULL;
    CHECK (e && e->channel == SB_CHANNEL_WHATSAPP);
    sb_event_destroy (&e);
    sb_form_destroy (&form);
    //  A message status wins over call fields in the same form.
    form = s_form ("MessageSid=SM1&MessageStatus=sent&CallSid=CA1&CallStatus=completed");
    e = form ? sb_twilio_normalize (SB_TWILIO_STATUS, form, err, sizeof err) : NULL;
    CHECK (e && e->channel == SB_CHANNEL_SMS);
    if (e)
        CHECK_STR (e->provider_id, "SM1");
    sb_event_destroy (&e);
    sb_form_destroy (&form);

    //  Repeated keys: the first value counts. Invalid UTF-8 in Body is
    //  replaced (proto3 strings must be UTF-8; raw_body keeps the bytes).
    e = s_message_with ("Body=first&Body=second");
    if (e)
        CHECK_STR (e->text, "first");
    sb_event_destroy (&e);
    e = s_message_with ("Body=caf%E9");
    if (e)
        CHECK_STR (e->text, "caf\xEF\xBF\xBD");
    sb_event_destroy (&e);
    //  A body of 1 MB is copied whole.
    size_t big = 1 << 20;
    form = sb_form_new ();
    char *body = malloc (big + 1);
    CHECK (form && body);
    if (form && body) {
        memset (body, 'x', big);
        body[big] = '\0';
        CHECK (sb_form_add (form, "MessageSid", "SM1") == 0);
        CHECK (sb_form_add (form, "From", "whatsapp:+1") == 0);
        CHECK (sb_form_add (form, "Body", body) == 0);
        e = sb_twilio_normalize (SB_TWILIO_MESSAGES, form, err, sizeof err);
        CHECK (e && strlen (e->text) == big && e->channel == SB_CHANNEL_WHATSAPP);
        if (e)
            CHECK_STR (e->from, "+1");
        sb_event_destroy (&e);
    }
    free (body);
    sb_form_destroy (&form);
    //  A bare "whatsapp:" address strips to empty, and is still WhatsApp.
    form = s_form ("MessageSid=SM1&From=whatsapp%3A");
    e = form ? sb_twilio_normalize (SB_TWILIO_MESSAGES, form, err, sizeof err) : NULL;
    CHECK (e && e->channel == SB_CHANNEL_WHATSAPP && *e->from == '\0');
    sb_event_destroy (&e);
    sb_form_destroy (&form);
}

int
main (void)
{
    s_test_sms_inbound ();
    s_test_whatsapp_inbound ();
    s_test_whatsapp_bsuid ();
    s_test_voice ();
    s_test_message_status ();
    s_test_rcs ();
    s_test_all_files_covered ();
    s_test_required ();
    s_test_media_limits ();
    s_test_location_limits ();
    s_test_gather_limits ();
    s_test_channels_and_values ();
    if (s_failures) {
        fprintf (stderr, "test_sb_twilio: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
