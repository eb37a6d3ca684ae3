/*  test_sb_meta: Meta WhatsApp Cloud API webhooks into Events.

    One test per tests/conformance/meta-*.json payload (run from tests/),
    then malformed and hostile bodies; all of it twice, the second time as
    the ingress runs it, inside a scratch (sb_scratch.h). Silent on success;
    prints file:line and what differed on failure.
*/
#include <dirent.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sb_json.h"
#include "sb_meta.h"
#include "sb_scratch.h"

#include "sb_check.h"

#define CONFORMANCE "conformance/"
#define WAMID_A "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
#define WAMID_B "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
#define WAMID_CTX "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="
#define LOOKASIDE "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=133..."

//  The meta-*.json files this test covers (checked against the folder).
static const char *s_covered[] = {
    "meta-audio.json",
    "meta-batch-synthetic.json",
    "meta-button.json",
    "meta-contacts.json",
    "meta-document.json",
    "meta-image.json",
    "meta-interactive-button_reply.json",
    "meta-interactive-list_reply.json",
    "meta-location.json",
    "meta-order.json",
    "meta-reaction-removed.json",
    "meta-reaction.json",
    "meta-status-delivered.json",
    "meta-status-failed.json",
    "meta-status-read.json",
    "meta-status-sent.json",
    "meta-sticker.json",
    "meta-system.json",
    "meta-bsuid-text-username.json",
    "meta-bsuid-text-phone.json",
    "meta-bsuid-status-delivered.json",
    "meta-bsuid-system-changed-number.json",
    "meta-bsuid-system-changed-user-id.json",
    "meta-bsuid-status-delivered-phone.json",
    "meta-bsuid-user-id-update.json",
    "meta-bsuid-preference-stop.json",
    "meta-text.json",
    "meta-unknown.json",
    "meta-unsupported.json",
    "meta-video.json",
    //  The other webhook fields (issue 12).
    "meta-account-alerts.json",
    "meta-calls-connect-business.json",
    "meta-calls-connect.json",
    "meta-calls-status-ringing.json",
    "meta-calls-terminate.json",
    "meta-echo-smb-text.json",
    "meta-preference-resume.json",
    "meta-preference-stop.json",
    "meta-referral-text.json",
    "meta-template-rejected.json",
};
//  Not webhook bodies: API spec, signature vectors, the GET handshake.
static const char *s_not_bodies[] = {
    "meta-messages-openapi.json",
    "meta-signature-vectors.json",
    "meta-verification-get.json",
};

//  The whole file. Caller frees.
static char *
s_load (const char *name, size_t *size)
{
    char path[256];
    snprintf (path, sizeof path, CONFORMANCE "%s", name);
    FILE *file = fopen (path, "rb");
    if (!file) {
        fprintf (stderr, "%s:%d: cannot open %s (run from tests/)\n", __FILE__, __LINE__, path);
        s_failures++;
        return NULL;
    }
    char *data = NULL;
    size_t used = 0, capacity = 0;
    for (;;) {
        if (used == capacity) {
            capacity = capacity ? capacity * 2 : 4096;
            char *grown = realloc (data, capacity);
            if (!grown)
                break;
            data = grown;
        }
        size_t n = fread (data + used, 1, capacity - used, file);
        if (n == 0)
            break;
        used += n;
    }
    fclose (file);
    *size = used;
    return data;
}

//  A conformance body normalized; checks it succeeded with expected events.
static sb_event_t **
s_normalize_file (const char *name, size_t expected, size_t *count)
{
    size_t size = 0;
    char *body = s_load (name, &size);
    sb_event_t **events = NULL;
    *count = 0;
    char err[128];
    int rc = body ? sb_meta_normalize (body, size, &events, count, err, sizeof err) : -1;
    if (rc != 0 || *count != expected) {
        fprintf (stderr, "%s:%d: %s gave rc=%d count=%zu (expected %zu) err=%s\n", __FILE__,
                 __LINE__, name, rc, *count, expected, rc ? err : "");
        s_failures++;
    }
    free (body);
    return events;
}

//  What every event from the docs' examples shares, and detail_json equal
//  to the object it came from (path: messages or statuses, and index).
static void
s_check_common (const sb_event_t *e, const char *name, int kind, const char *provider_id,
                int64_t timestamp)
{
    CHECK (e->provider == SB_PROVIDER_META);
    CHECK (e->channel == SB_CHANNEL_WHATSAPP);
    CHECK_INT (e->kind, kind);
    CHECK_STR (e->account, "106540352242922");
    CHECK_STR (e->display_phone_number, "15550783881");
    CHECK_STR (e->business_account_id, "102290129340398");
    CHECK_STR (e->webhook_field, "messages");
    CHECK_STR (e->provider_id, provider_id);
    CHECK_INT (e->provider_timestamp, timestamp);
    //  The caller's fields are left empty.
    CHECK (*e->ingress_id == '\0' && e->seq == 0 && e->raw_body.len == 0);
    json_t *detail = json_loads (e->detail_json, 0, NULL);
    CHECK (json_is_object (detail));
    CHECK_STR (json_string_value (json_object_get (detail, "id")), provider_id);
    CHECK (strchr (e->detail_json, '\n') == NULL && strstr (e->detail_json, ": ") == NULL);
    json_decref (detail);
    (void) name;
}

//  detail_json equals element index of value.<array> in the file's first change.
static void
s_check_detail_equals (const sb_event_t *e, const char *name, const char *array, size_t index)
{
    char path[256];
    snprintf (path, sizeof path, CONFORMANCE "%s", name);
    json_t *root = json_load_file (path, 0, NULL);
    json_t *change = json_array_get (
        json_object_get (json_array_get (json_object_get (root, "entry"), 0), "changes"), 0);
    json_t *expected =
        json_array_get (json_object_get (json_object_get (change, "value"), array), index);
    json_t *detail = json_loads (e->detail_json, 0, NULL);
    CHECK (expected && detail && json_equal (expected, detail));
    json_decref (detail);
    json_decref (root);
}

static void
s_check_message (const sb_event_t *e, const char *name, const char *type, const char *id,
                 int64_t timestamp)
{
    s_check_common (e, name, SB_KIND_MESSAGE, id, timestamp);
    CHECK_STR (e->message_type, type);
    CHECK_STR (e->from, "16505551234");
    CHECK_STR (e->to, "15550783881");
    CHECK_STR (e->wa_id, "16505551234");
    CHECK (e->status == NULL);
    s_check_detail_equals (e, name, "messages", 0);
}

static void
s_test_text (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-text.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-text.json", "text", WAMID_A, 1749416383);
        CHECK_STR (ev[0]->profile_name, "Sheena Nelson");
        CHECK_STR (ev[0]->text, "Does it come in another color?");
        CHECK (*ev[0]->context_id == '\0');
        CHECK (ev[0]->n_media == 0 && ev[0]->interactive == NULL && ev[0]->n_errors == 0);
        //  The topic the ingress publishes it under.
        char topic[64];
        CHECK (sb_event_topic (ev[0], topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.meta.whatsapp.message");
    }
    sb_meta_events_free (&ev, n);
    CHECK (ev == NULL);
}

//  image, audio, video, document, sticker
static void
s_test_media (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-image.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-image.json", "image", WAMID_A, 1744344496);
        CHECK_STR (ev[0]->text, "Taj Mahal");
        CHECK (ev[0]->n_media == 1);
        if (ev[0]->n_media == 1) {
            sb_event_media_t *m = ev[0]->media[0];
            CHECK_STR (m->id, "1003383421387256");
            CHECK_STR (m->content_type, "image/jpeg");
            CHECK_STR (m->sha256, "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=");
            CHECK_STR (m->caption, "Taj Mahal");
            CHECK_STR (m->url, LOOKASIDE);
            CHECK (*m->filename == '\0' && !m->voice && !m->animated);
        }
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-audio.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-audio.json", "audio", WAMID_A, 1744344496);
        CHECK (*ev[0]->text == '\0');
        CHECK (ev[0]->n_media == 1);
        if (ev[0]->n_media == 1) {
            sb_event_media_t *m = ev[0]->media[0];
            CHECK_STR (m->id, "1908647269898587");
            CHECK_STR (m->content_type, "audio/ogg; codecs=opus");
            CHECK_STR (m->sha256, "wvqXMe6n7n1W0zphvLPoLj+s/NtKqmr3zZ7YzTP7xFI=");
            CHECK_STR (m->url, LOOKASIDE);
            CHECK (m->voice && !m->animated);
        }
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-video.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-video.json", "video", WAMID_A, 1744344496);
        CHECK_STR (ev[0]->text, "Timelapse of growth");
        CHECK (ev[0]->n_media == 1);
        if (ev[0]->n_media == 1) {
            CHECK_STR (ev[0]->media[0]->id, "731675419373506");
            CHECK_STR (ev[0]->media[0]->content_type, "video/mp4");
            CHECK_STR (ev[0]->media[0]->caption, "Timelapse of growth");
            CHECK_STR (ev[0]->media[0]->sha256, "vdGU5X4caz12KwFgYwpljlUNqMt1YnkH+5GkPc3mMnc=");
        }
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-document.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-document.json", "document", WAMID_A, 1744344496);
        CHECK_STR (ev[0]->text, "my receipt");
        CHECK (ev[0]->n_media == 1);
        if (ev[0]->n_media == 1) {
            CHECK_STR (ev[0]->media[0]->id, "622684793477189");
            CHECK_STR (ev[0]->media[0]->filename, "receipt.pdf");
            CHECK_STR (ev[0]->media[0]->content_type, "application/pdf");
            CHECK_STR (ev[0]->media[0]->caption, "my receipt");
            CHECK_STR (ev[0]->media[0]->url, LOOKASIDE);
        }
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-sticker.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-sticker.json", "sticker", WAMID_A, 1744344496);
        CHECK (ev[0]->n_media == 1);
        if (ev[0]->n_media == 1) {
            CHECK_STR (ev[0]->media[0]->id, "1908647269898587");
            CHECK_STR (ev[0]->media[0]->content_type, "image/webp");
            CHECK (ev[0]->media[0]->animated && !ev[0]->media[0]->voice);
        }
    }
    sb_meta_events_free (&ev, n);
}

static void
s_test_location (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-location.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-location.json", "location", WAMID_B, 1744344496);
        Switchboard__V1__Location *l = ev[0]->location;
        CHECK (l);
        if (l) {
            CHECK (l->latitude == 37.44221496582);
            CHECK (l->longitude == -122.16165924072);
            CHECK_STR (l->name, "Philz Coffee");
            CHECK_STR (l->address, "101 Forest Ave, Palo Alto, CA 94301");
            CHECK_STR (l->url, "https://philzcoffee.com/");
            CHECK (*l->label == '\0');
        }
    }
    sb_meta_events_free (&ev, n);
}

static void
s_test_contacts (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-contacts.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-contacts.json", "contacts", WAMID_A, 1744344496);
        CHECK (ev[0]->n_contacts == 1);
        if (ev[0]->n_contacts == 1) {
            sb_event_contact_t *c = ev[0]->contacts[0];
            CHECK_STR (c->formatted_name, "Barbara J. Johnson");
            CHECK_STR (c->organization, "Social Tsunami");
            CHECK (c->n_phones == 1 && c->n_wa_ids == 1);
            if (c->n_phones == 1 && c->n_wa_ids == 1) {
                CHECK_STR (c->phones[0], "+1 (415) 555-0829");
                CHECK_STR (c->wa_ids[0], "14125550829");
            }
        }
        //  The sender's own contact is still the webhook's contacts[0].
        CHECK_STR (ev[0]->profile_name, "Sheena Nelson");
    }
    sb_meta_events_free (&ev, n);
}

static void
s_test_interactive (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-interactive-button_reply.json", 1, &n);
    if (n == 1) {
        s_check_message (
            ev[0], "meta-interactive-button_reply.json", "interactive",
            "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQThBREYwNzc2RDc2QjA1QTIwMgA=", 1714510003);
        CHECK_STR (ev[0]->profile_name, "Pablo Morales");
        CHECK_STR (ev[0]->context_id, "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBJBM0Y4RUU0RUNFQkFDMjYzQUMA");
        CHECK_STR (ev[0]->text, "Change");
        CHECK (ev[0]->interactive);
        if (ev[0]->interactive) {
            CHECK_STR (ev[0]->interactive->type, "button_reply");
            CHECK_STR (ev[0]->interactive->id, "change-button");
            CHECK_STR (ev[0]->interactive->title, "Change");
            CHECK (*ev[0]->interactive->description == '\0');
        }
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-interactive-list_reply.json", 1, &n);
    if (n == 1) {
        s_check_message (
            ev[0], "meta-interactive-list_reply.json", "interactive",
            "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQTZDMzFGRUFBQjlDMzIzMzlEQwA=", 1712595443);
        CHECK_STR (ev[0]->context_id, "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBIwMjg0RkMxOEMyMkNEQUFFRDgA");
        CHECK_STR (ev[0]->text, "Priority Mail Express");
        CHECK (ev[0]->interactive);
        if (ev[0]->interactive) {
            CHECK_STR (ev[0]->interactive->type, "list_reply");
            CHECK_STR (ev[0]->interactive->id, "priority_express");
            CHECK_STR (ev[0]->interactive->title, "Priority Mail Express");
            CHECK_STR (ev[0]->interactive->description, "Next Day to 2 Days");
        }
    }
    sb_meta_events_free (&ev, n);
}

static void
s_check_button (const sb_event_t *e, const char *name, size_t index)
{
    CHECK_STR (e->message_type, "button");
    CHECK_STR (e->provider_id, WAMID_B);
    CHECK_INT (e->provider_timestamp, 1750091045);
    CHECK_STR (e->context_id, WAMID_CTX);
    CHECK_STR (e->text, "Unsubscribe");
    CHECK (e->interactive);
    if (e->interactive) {
        CHECK_STR (e->interactive->type, "button");
        CHECK_STR (e->interactive->id, "Unsubscribe");
        CHECK_STR (e->interactive->title, "Unsubscribe");
    }
    (void) name;
    (void) index;
}

static void
s_test_button (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-button.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-button.json", "button", WAMID_B, 1750091045);
        s_check_button (ev[0], "meta-button.json", 0);
    }
    sb_meta_events_free (&ev, n);
}

static void
s_test_reaction (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-reaction.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-reaction.json", "reaction", WAMID_B, 1749419544);
        CHECK (ev[0]->reaction);
        if (ev[0]->reaction) {
            CHECK_STR (ev[0]->reaction->message_id, WAMID_CTX);
            CHECK_STR (ev[0]->reaction->emoji, "\xF0\x9F\x91\x8D");
        }
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-reaction-removed.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-reaction-removed.json", "reaction", WAMID_B, 1749419544);
        CHECK (ev[0]->reaction);
        if (ev[0]->reaction) {
            CHECK_STR (ev[0]->reaction->message_id, WAMID_CTX);
            CHECK (*ev[0]->reaction->emoji == '\0');  //  removed
        }
    }
    sb_meta_events_free (&ev, n);
}

static void
s_test_order (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-order.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-order.json", "order", WAMID_A, 1744344496);
        Switchboard__V1__Order *o = ev[0]->order;
        CHECK (o);
        if (o) {
            CHECK_STR (o->catalog_id, "194836987003835");
            CHECK_STR (o->text, "Love these!");
            CHECK (o->n_items == 2);
            if (o->n_items == 2) {
                CHECK_STR (o->items[0]->product_retailer_id, "di9ozbzfi4");
                CHECK_INT (o->items[0]->quantity, 2);
                CHECK_STR (o->items[0]->item_price, "30");
                CHECK_STR (o->items[0]->currency, "USD");
                CHECK_STR (o->items[1]->product_retailer_id, "nqryix03ez");
                CHECK_INT (o->items[1]->quantity, 1);
                CHECK_STR (o->items[1]->item_price, "25");
                CHECK_STR (o->items[1]->currency, "USD");
            }
        }
    }
    sb_meta_events_free (&ev, n);
}

static void
s_test_system (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-system.json", 1, &n);
    if (n == 1) {
        sb_event_t *e = ev[0];
        s_check_common (e, "meta-system.json", SB_KIND_MESSAGE,
                        "wamid.HBgLMTk4MzU1NTE5NzQVAgASGAoxMTgyMDg2MjY3AA==", 1750269342);
        s_check_detail_equals (e, "meta-system.json", "messages", 0);
        CHECK_STR (e->message_type, "system");
        CHECK_STR (e->from, "16505551234");
        //  No contacts array in a system message: no profile.
        CHECK (*e->profile_name == '\0' && *e->wa_id == '\0');
        CHECK (e->system);
        if (e->system) {
            CHECK_STR (e->system->type, "user_changed_number");
            CHECK_STR (e->system->body,
                       "User Sheena Nelson changed from 16505551234 to 12195555358");
            CHECK_STR (e->system->new_wa_id, "12195555358");
        }
    }
    sb_meta_events_free (&ev, n);
}

static void
s_test_unsupported_unknown (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-unsupported.json", 1, &n);
    if (n == 1) {
        s_check_message (ev[0], "meta-unsupported.json", "unsupported", WAMID_B, 1750090702);
        CHECK (ev[0]->n_errors == 1);
        if (ev[0]->n_errors == 1) {
            CHECK_INT (ev[0]->errors[0]->code, 131051);
            CHECK_STR (ev[0]->errors[0]->title, "Message type unknown");
            CHECK_STR (ev[0]->errors[0]->message, "Message type unknown");
            CHECK_STR (ev[0]->errors[0]->details, "Message type is currently not supported.");
        }
        //  unsupported.type ("edit") has no field of its own: it is in detail_json.
        CHECK (strstr (ev[0]->detail_json, "\"unsupported\":{\"type\":\"edit\"}") != NULL);
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-unknown.json", 1, &n);
    if (n == 1) {
        sb_event_t *e = ev[0];
        CHECK (e->provider == SB_PROVIDER_META && e->kind == SB_KIND_MESSAGE);
        CHECK_STR (e->message_type, "unknown");
        CHECK_STR (e->account, "16315551234");
        CHECK_STR (e->display_phone_number, "16315551234");
        CHECK_STR (e->business_account_id, "1900820329959633");
        CHECK_STR (e->provider_id, "wamid.ABGGFlA5FpafAgo6tHcNmNjXmuSf");
        CHECK_INT (e->provider_timestamp, 1602139392);
        CHECK_STR (e->from, "16315555555");
        CHECK_STR (e->to, "16315551234");
        CHECK_STR (e->profile_name, "Kerry Fisher");
        CHECK_STR (e->wa_id, "16315555555");
        CHECK (e->n_errors == 1);
        if (e->n_errors == 1) {
            CHECK_INT (e->errors[0]->code, 130501);
            CHECK_STR (e->errors[0]->title, "Unsupported message type");
            CHECK_STR (e->errors[0]->details, "Message type is not currently supported");
            CHECK (*e->errors[0]->message == '\0');
        }
        s_check_detail_equals (e, "meta-unknown.json", "messages", 0);
    }
    sb_meta_events_free (&ev, n);
}

static void
s_check_status_delivered (const sb_event_t *e)
{
    CHECK_STR (e->provider_id, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA");
    CHECK_INT (e->provider_timestamp, 1750263773);
    CHECK_STR (e->from, "15550783881");
    CHECK_STR (e->to, "16505551234");
    CHECK (*e->message_type == '\0' && *e->text == '\0');
    CHECK (e->status);
    if (e->status) {
        CHECK_STR (e->status->status, "delivered");
        CHECK_STR (e->status->recipient, "16505551234");
        CHECK_STR (e->status->conversation_id, "6ceb9d929c9bdc4f90e967a32f8639b4");
        CHECK_STR (e->status->conversation_origin, "service");
        CHECK_STR (e->status->pricing_category, "service");
        CHECK (e->status->billable);
        CHECK (*e->status->error_code == '\0');
    }
    CHECK (e->n_errors == 0);
}

static void
s_check_status_failed (const sb_event_t *e)
{
    CHECK_STR (e->provider_id, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA");
    CHECK_INT (e->provider_timestamp, 1751142888);
    CHECK_STR (e->to, "16505551234");
    CHECK (e->status);
    if (e->status) {
        CHECK_STR (e->status->status, "failed");
        CHECK_STR (e->status->error_code, "131049");
        CHECK_STR (e->status->error_message,
                   "This message was not delivered to maintain healthy ecosystem engagement.");
        CHECK (*e->status->conversation_id == '\0' && !e->status->billable);
    }
    CHECK (e->n_errors == 1);
    if (e->n_errors == 1) {
        CHECK_INT (e->errors[0]->code, 131049);
        CHECK_STR (e->errors[0]->details, "In order to maintain a healthy ecosystem engagement, "
                                          "the message failed to be delivered.");
        CHECK_STR (e->errors[0]->href,
                   "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/");
    }
}

static void
s_test_statuses (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-status-sent.json", 1, &n);
    if (n == 1) {
        sb_event_t *e = ev[0];
        s_check_common (e, "meta-status-sent.json", SB_KIND_STATUS, WAMID_B, 1750030073);
        s_check_detail_equals (e, "meta-status-sent.json", "statuses", 0);
        CHECK_STR (e->from, "15550783881");
        CHECK_STR (e->to, "16505551234");
        CHECK (*e->profile_name == '\0');
        CHECK (e->status);
        if (e->status) {
            CHECK_STR (e->status->status, "sent");
            CHECK_STR (e->status->recipient, "16505551234");
            CHECK_STR (e->status->conversation_id, "72b14d6bd5407799e66f64d1b338e567");
            CHECK_STR (e->status->conversation_origin, "marketing");
            CHECK_STR (e->status->pricing_category, "marketing");
            CHECK (e->status->billable);
        }
        char topic[64];
        CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.meta.whatsapp.status");
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-status-delivered.json", 1, &n);
    if (n == 1) {
        s_check_common (ev[0], "meta-status-delivered.json", SB_KIND_STATUS,
                        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA", 1750263773);
        s_check_detail_equals (ev[0], "meta-status-delivered.json", "statuses", 0);
        s_check_status_delivered (ev[0]);
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-status-read.json", 1, &n);
    if (n == 1) {
        s_check_common (ev[0], "meta-status-read.json", SB_KIND_STATUS, WAMID_B, 1750030073);
        s_check_detail_equals (ev[0], "meta-status-read.json", "statuses", 0);
        CHECK (ev[0]->status);
        if (ev[0]->status) {
            CHECK_STR (ev[0]->status->status, "read");
            CHECK_STR (ev[0]->status->recipient, "16505551234");
            CHECK (*ev[0]->status->conversation_id == '\0');
            CHECK (*ev[0]->status->pricing_category == '\0' && !ev[0]->status->billable);
        }
    }
    sb_meta_events_free (&ev, n);

    ev = s_normalize_file ("meta-status-failed.json", 1, &n);
    if (n == 1) {
        s_check_common (ev[0], "meta-status-failed.json", SB_KIND_STATUS,
                        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA", 1751142888);
        s_check_detail_equals (ev[0], "meta-status-failed.json", "statuses", 0);
        s_check_status_failed (ev[0]);
    }
    sb_meta_events_free (&ev, n);
}

//  Two entries, four changes: text | delivered || text, button | failed, delivered.
static void
s_test_batch (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-batch-synthetic.json", 6, &n);
    if (n == 6) {
        static const int kinds[6] = {SB_KIND_MESSAGE, SB_KIND_STATUS, SB_KIND_MESSAGE,
                                     SB_KIND_MESSAGE, SB_KIND_STATUS, SB_KIND_STATUS};
        for (size_t i = 0; i < 6; i++) {
            CHECK_INT (ev[i]->kind, kinds[i]);
            CHECK (ev[i]->provider == SB_PROVIDER_META && ev[i]->channel == SB_CHANNEL_WHATSAPP);
            CHECK_STR (ev[i]->account, "106540352242922");
            CHECK_STR (ev[i]->business_account_id, "102290129340398");
        }
        CHECK_STR (ev[0]->message_type, "text");
        CHECK_STR (ev[0]->text, "Does it come in another color?");
        CHECK_STR (ev[0]->profile_name, "Sheena Nelson");
        s_check_status_delivered (ev[1]);
        CHECK_STR (ev[2]->message_type, "text");
        CHECK_STR (ev[2]->provider_id, WAMID_A);
        s_check_button (ev[3], "meta-batch-synthetic.json", 1);
        CHECK_STR (ev[3]->profile_name, "Sheena Nelson");
        s_check_status_failed (ev[4]);
        s_check_status_delivered (ev[5]);
        //  Each detail_json is its own object, not the batch.
        CHECK (strstr (ev[3]->detail_json, "\"entry\"") == NULL);
        CHECK (strstr (ev[3]->detail_json, "\"button\"") != NULL);
        CHECK (strstr (ev[3]->detail_json, "Does it come") == NULL);
    }
    sb_meta_events_free (&ev, n);
}

//  Every meta-*.json in the folder is either covered above or not a body.
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
        if (strncmp (d->d_name, "meta-", 5) != 0 || len < 5
            || strcmp (d->d_name + len - 5, ".json"))
            continue;
        bool known = false;
        for (size_t i = 0; i < sizeof s_covered / sizeof s_covered[0]; i++)
            known = known || strcmp (d->d_name, s_covered[i]) == 0;
        bool body = !known;
        for (size_t i = 0; i < sizeof s_not_bodies / sizeof s_not_bodies[0]; i++)
            body = body && strcmp (d->d_name, s_not_bodies[i]) != 0;
        if (body) {
            fprintf (stderr, "%s:%d: %s has no test\n", __FILE__, __LINE__, d->d_name);
            s_failures++;
        }
        seen += known;
    }
    closedir (dir);
    CHECK_INT (seen, sizeof s_covered / sizeof s_covered[0]);
}

//  ---------------------------------------------------------------------
//  Malformed and hostile bodies

//  Normalize a string; returns rc and checks the failure contract.
static int
s_try (const char *body, size_t size, size_t *count_out)
{
    static sb_event_t *sentinel[1];
    sb_event_t **events = sentinel;  //  must be overwritten
    size_t count = 99;
    char err[160] = "unset";
    int rc = sb_meta_normalize (body, size, &events, &count, err, sizeof err);
    if (rc == -1) {
        CHECK (events == NULL && count == 0);
        CHECK (err[0] != '\0' && strcmp (err, "unset") != 0);
    }
    else {
        CHECK (rc == 0 && (count == 0 || events != NULL));
        CHECK (err[0] == '\0');
    }
    if (count_out)
        *count_out = count;
    sb_meta_events_free (&events, count);
    return rc;
}

#define S_TRY(text) s_try (text, strlen (text), NULL)

static void
s_test_malformed (void)
{
    //  Not a webhook's shape: each -1.
    static const char *bad[] = {
        "not json",
        "[]",
        "\"entry\"",
        "42",
        "null",
        "{}",
        "{\"entry\":{}}",
        "{\"entry\":null}",
        "{\"entry\":[1]}",
        "{\"entry\":[[]]}",
        "{\"entry\":[{}]}",
        "{\"entry\":[{\"changes\":{}}]}",
        "{\"entry\":[{\"changes\":\"x\"}]}",
        "{\"entry\":[{\"changes\":[1]}]}",
        "{\"entry\":[{\"changes\":[{}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":[]}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":\"v\"}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":{}}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":\"m\"}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"statuses\":{}}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[1]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"a\"},null]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"statuses\":[\"s\"]}}]}]}",
        //  a good entry, then a bad one: nothing is returned
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"a\"}]}}]},{\"changes\":7}]}",
        //  duplicate keys are refused
        "{\"entry\":[],\"entry\":[]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"a\",\"id\":\"b\"}]}}]}]}",
        //  NUL escaped in a string
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"a\\u0000b\"}]}}]}]}",
        //  invalid UTF-8
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"\xff\"}]}}]}]}",
        //  numbers beyond int64 / double
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"timestamp\":123456789012345678901234567890}]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"timestamp\":1e999}]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"timestamp\":-1e999}]}}]}]}",
        //  trailing garbage
        "{\"entry\":[]} x",
        "{\"entry\":[]}{}",
        //  truncated
        "{\"entry\":[{\"changes\":[{\"value\":{",
        "{",
        " ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (S_TRY (bad[i]) != -1) {
            fprintf (stderr, "%s:%d: bad body #%zu accepted: %s\n", __FILE__, __LINE__, i, bad[i]);
            s_failures++;
        }

    //  Empty and NULL bodies; a raw NUL byte inside or after the JSON.
    CHECK (s_try ("", 0, NULL) == -1);
    CHECK (s_try (NULL, 0, NULL) == -1);
    CHECK (s_try ("{\"entry\":[]}\0", 13, NULL) == -1);
    CHECK (s_try ("{\"en\0try\":[]}", 13, NULL) == -1);

    //  The error text, and small or missing err buffers.
    sb_event_t **events;
    size_t count;
    char err[128];
    CHECK (sb_meta_normalize ("{\"entry\":[{}]}", 14, &events, &count, err, sizeof err) == -1);
    CHECK_STR (err, "entry[0] has no \"changes\" array");
    CHECK (sb_meta_normalize ("{}", 2, &events, &count, err, sizeof err) == -1);
    CHECK_STR (err, "no \"entry\" array");
    CHECK (sb_meta_normalize ("{", 1, &events, &count, err, sizeof err) == -1);
    CHECK (strncmp (err, "not JSON: ", 10) == 0);
    CHECK (sb_meta_normalize ("{}", 2, &events, &count, err, 1) == -1);
    CHECK (err[0] == '\0');
    CHECK (sb_meta_normalize ("{}", 2, &events, &count, NULL, 0) == -1);
}

static void
s_test_shapes (void)
{
    size_t n = 99;
    //  No entries, or no changes: nothing to do, no events, success.
    CHECK (s_try ("{\"entry\":[]}", 12, &n) == 0 && n == 0);
    CHECK (
        S_TRY (
            "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[]}]}")
        == 0);

    //  A field of its own (account_update) is one event of its kind.
    const char *other =
        "{\"entry\":[{\"id\":\"102290129340398\",\"changes\":[{\"field\":\"account_update\","
        "\"value\":{\"phone_number\":\"15550783881\",\"event\":\"VERIFIED_ACCOUNT\"}}]}]}";
    sb_event_t **ev = NULL;
    char err[128];
    CHECK (sb_meta_normalize (other, strlen (other), &ev, &n, err, sizeof err) == 0 && n == 1);
    if (n == 1) {
        CHECK (ev[0]->kind == SB_KIND_ACCOUNT && ev[0]->provider == SB_PROVIDER_META);
        CHECK (ev[0]->meta_account);
        if (ev[0]->meta_account)
            CHECK_STR (ev[0]->meta_account->event, "VERIFIED_ACCOUNT");
        CHECK_STR (ev[0]->webhook_field, "account_update");
        CHECK_STR (ev[0]->business_account_id, "102290129340398");
        CHECK_STR (ev[0]->detail_json,
                   "{\"phone_number\":\"15550783881\",\"event\":\"VERIFIED_ACCOUNT\"}");
        CHECK (*ev[0]->account == '\0' && *ev[0]->provider_id == '\0');
    }
    sb_meta_events_free (&ev, n);
    //  Empty messages and statuses arrays: one event of kind other.
    const char *empty =
        "{\"entry\":[{\"changes\":[{\"value\":{\"metadata\":{\"phone_number_id\":\"9\"},"
        "\"messages\":[],\"statuses\":[]}}]}]}";
    CHECK (sb_meta_normalize (empty, strlen (empty), &ev, &n, err, sizeof err) == 0 && n == 1);
    if (n == 1) {
        CHECK_INT (ev[0]->kind, SB_KIND_OTHER);
        CHECK_STR (ev[0]->message_type, "unknown");
        CHECK_STR (ev[0]->account, "9");
    }
    sb_meta_events_free (&ev, n);

    //  Wrong types inside a message are left empty, not an error; a type
    //  we do not know is "unknown" and kept in detail_json.
    const char *odd =
        "{\"entry\":[{\"changes\":[{\"value\":{\"metadata\":[],\"contacts\":{\"wa_id\":1},"
        "\"messages\":["
        "{\"from\":5,\"id\":[\"x\"],\"timestamp\":{},\"type\":\"text\",\"text\":\"hi\","
        "\"context\":\"c\",\"errors\":{}},"
        "{\"id\":\"b\",\"type\":7},"
        "{\"id\":\"c\",\"type\":\"request_welcome\",\"request_welcome\":{\"a\":1}},"
        "{\"id\":\"d\",\"type\":\"image\",\"image\":\"not an object\"},"
        "{\"id\":\"e\",\"type\":\"location\",\"location\":{\"latitude\":\"12.5\",\"longitude\":"
        "\"x\"}},"
        "{\"id\":\"f\",\"timestamp\":\"12a\",\"type\":\"order\",\"order\":{\"product_items\":"
        "[{\"quantity\":\"3\",\"item_price\":30.1},{\"item_price\":\"1.10\"},5]}},"
        "{\"id\":\"g\",\"timestamp\":9223372036854775807,\"type\":\"interactive\","
        "\"interactive\":{\"type\":\"nfm_reply\",\"nfm_reply\":{\"name\":\"flow\",\"body\":"
        "\"Sent\"}}}"
        "],\"statuses\":[{\"id\":\"s\",\"errors\":[{\"code\":\"x1\"},5],\"pricing\":{\"billable\":"
        "\"yes\"}}]"
        "}}]}]}";
    CHECK (sb_meta_normalize (odd, strlen (odd), &ev, &n, err, sizeof err) == 0);
    CHECK_INT (n, 8);
    if (n == 8) {
        CHECK (*ev[0]->from == '\0' && *ev[0]->provider_id == '\0' && *ev[0]->text == '\0');
        CHECK (ev[0]->provider_timestamp == 0 && *ev[0]->context_id == '\0'
               && ev[0]->n_errors == 0);
        CHECK_STR (ev[0]->message_type, "text");
        CHECK (*ev[0]->account == '\0' && *ev[0]->profile_name == '\0');
        CHECK_STR (ev[1]->message_type, "unknown");
        CHECK_STR (ev[2]->message_type, "unknown");
        CHECK (strstr (ev[2]->detail_json, "request_welcome") != NULL);
        CHECK_STR (ev[3]->message_type, "image");
        CHECK (ev[3]->n_media == 0);
        CHECK (ev[4]->location && ev[4]->location->latitude == 12.5
               && ev[4]->location->longitude == 0);
        CHECK (ev[5]->provider_timestamp == 0);
        CHECK (ev[5]->order && ev[5]->order->n_items == 2);
        if (ev[5]->order && ev[5]->order->n_items == 2) {
            CHECK_INT (ev[5]->order->items[0]->quantity, 3);
            CHECK_STR (ev[5]->order->items[0]->item_price, "30.1");
            CHECK_STR (ev[5]->order->items[1]->item_price, "1.10");
        }
        CHECK (ev[6]->provider_timestamp == INT64_MAX);
        CHECK (ev[6]->interactive);
        if (ev[6]->interactive) {
            CHECK_STR (ev[6]->interactive->type, "nfm_reply");
            CHECK (*ev[6]->interactive->id == '\0');
        }
        CHECK (ev[7]->kind == SB_KIND_STATUS && ev[7]->status);
        if (ev[7]->status) {
            CHECK_STR (ev[7]->status->error_code, "x1");
            CHECK (!ev[7]->status->billable);
        }
        CHECK (ev[7]->n_errors == 1);
    }
    sb_meta_events_free (&ev, n);

    //  The sender's profile: the contact whose wa_id is from, else the first.
    const char *two =
        "{\"entry\":[{\"changes\":[{\"value\":{\"contacts\":["
        "{\"profile\":{\"name\":\"A\"},\"wa_id\":\"1\"},{\"profile\":{\"name\":\"B\"},\"wa_id\":"
        "\"2\"}],"
        "\"messages\":[{\"from\":\"2\",\"id\":\"m1\"},{\"from\":\"3\",\"id\":\"m2\"}]}}]}]}";
    CHECK (sb_meta_normalize (two, strlen (two), &ev, &n, err, sizeof err) == 0 && n == 2);
    if (n == 2) {
        CHECK_STR (ev[0]->profile_name, "B");
        CHECK_STR (ev[0]->wa_id, "2");
        CHECK_STR (ev[1]->profile_name, "A");
        CHECK_STR (ev[1]->wa_id, "1");
        CHECK_STR (ev[1]->message_type, "unknown");  //  no type at all
    }
    sb_meta_events_free (&ev, n);
}

static void
s_test_hostile (void)
{
    //  Deep nesting: refused by the parser's depth limit, no stack overflow.
    size_t depth = 100000;
    char *deep = malloc (depth * 5 + 64);
    CHECK (deep);
    if (!deep)
        return;
    memset (deep, '[', depth);
    CHECK (s_try (deep, depth, NULL) == -1);
    size_t at = 0;
    for (size_t i = 0; i < depth; i++) {
        memcpy (deep + at, "{\"a\":", 5);
        at += 5;
    }
    CHECK (s_try (deep, at, NULL) == -1);

    //  Nesting inside a message past SB_JSON_MAX_DEPTH (64; the envelope
    //  takes 8 levels): refused before jansson recurses, as civetweb's
    //  worker threads have small stacks.
    const char *head = "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"x\",\"n\":";
    const char *tail = "}]}}]}]}";
    size_t inner = 57;
    at = 0;
    memcpy (deep + at, head, strlen (head));
    at += strlen (head);
    memset (deep + at, '[', inner);
    at += inner;
    memset (deep + at, ']', inner);
    at += inner;
    memcpy (deep + at, tail, strlen (tail));
    at += strlen (tail);
    CHECK (s_try (deep, at, NULL) == -1);

    //  Nesting inside a message, under the limit: kept whole in detail_json,
    //  and the event can still be shown as JSON.
    inner = 56;
    at = 0;
    memcpy (deep + at, head, strlen (head));
    at += strlen (head);
    memset (deep + at, '[', inner);
    at += inner;
    memset (deep + at, ']', inner);
    at += inner;
    memcpy (deep + at, tail, strlen (tail));
    at += strlen (tail);
    sb_event_t **ev = NULL;
    size_t n = 0;
    char err[128];
    CHECK (sb_meta_normalize (deep, at, &ev, &n, err, sizeof err) == 0 && n == 1);
    if (n == 1) {
        CHECK (strlen (ev[0]->detail_json) == inner * 2 + strlen ("{\"id\":\"x\",\"n\":}"));
        char *json = sb_event_to_json (ev[0]);
        CHECK (json);
        free (json);
    }
    sb_meta_events_free (&ev, n);
    free (deep);

    //  More events than the cap: refused as a whole.
    size_t many = 10001;
    const char *item = "{\"id\":\"a\"},";
    char *big = malloc (many * strlen (item) + 128);
    CHECK (big);
    if (big) {
        at = 0;
        const char *start = "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[";
        memcpy (big, start, strlen (start));
        at = strlen (start);
        for (size_t i = 0; i < many; i++) {
            memcpy (big + at, item, strlen (item));
            at += strlen (item);
        }
        at--;  //  the last comma
        memcpy (big + at, tail + 1, strlen (tail + 1));
        at += strlen (tail + 1);
        CHECK (sb_meta_normalize (big, at, &ev, &n, err, sizeof err) == -1);
        CHECK (strstr (err, "more than") != NULL);
        CHECK (ev == NULL && n == 0);
        free (big);
    }

    //  Every truncation of a real batch fails cleanly (the last cut only
    //  drops the trailing newline, which is still valid JSON).
    size_t size = 0;
    char *body = s_load ("meta-batch-synthetic.json", &size);
    if (body) {
        for (size_t cut = 0; cut + 1 < size; cut++)
            if (s_try (body, cut, NULL) != -1) {
                fprintf (stderr, "%s:%d: truncation at %zu accepted\n", __FILE__, __LINE__, cut);
                s_failures++;
            }
        CHECK (s_try (body, size - 1, &n) == 0 && n == 6);

        //  Random byte changes with a fixed seed: whatever happens, no
        //  crash and no leak (ASan), and the contract holds.
        char *copy = malloc (size);
        unsigned seed = 4242;
        for (int round = 0; copy && round < 3000; round++) {
            memcpy (copy, body, size);
            for (int k = 0; k < 3; k++) {
                seed = seed * 1103515245u + 12345u;
                copy[(seed >> 8) % size] = "[]{}\",:0a\\ \x80"[(seed >> 20) % 12];
            }
            s_try (copy, size, NULL);
        }
        free (copy);
        free (body);
    }
}

//  ---- The other webhook fields (issue 12)

//  A body from a string; 0 with its events, or -1.
static int
s_norm (const char *body, sb_event_t ***ev, size_t *n)
{
    char err[128];
    int rc = sb_meta_normalize (body, strlen (body), ev, n, err, sizeof err);
    if (rc)
        fprintf (stderr, "%s:%d: refused: %s\n", __FILE__, __LINE__, err);
    return rc;
}

static void
s_test_echo (void)
{
    size_t n = 0;
    sb_event_t **ev = s_normalize_file ("meta-echo-smb-text.json", 1, &n);
    if (n == 1) {
        sb_event_t *e = ev[0];
        CHECK_INT (e->kind, SB_KIND_ECHO);
        CHECK_STR (e->webhook_field, "smb_message_echoes");
        CHECK_STR (e->provider_id, WAMID_B);
        CHECK_STR (e->from, "15550783881");
        CHECK_STR (e->to, "16505551234");  //  the fixture's "+16505551234", as wa_id
        CHECK_STR (e->message_type, "text");
        CHECK_STR (e->text, "Here's the info you requested! https://www.meta.com/quest/quest-3/");
        CHECK_INT (e->provider_timestamp, 1739321024);
        CHECK_STR (e->account, "106540352242922");
        char topic[64];
        CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
        CHECK_STR (topic, "sb.v1.meta.whatsapp.echo");
    }
    sb_meta_events_free (&ev, n);
    //  The field message_echoes (API echoes) is the same shape; an item that
    //  is not an object is kept as kind other, the others still echo.
    const char *api = "{\"entry\":[{\"changes\":[{\"field\":\"message_echoes\",\"value\":{"
                      "\"message_echoes\":[{\"from\":\"1\",\"to\":\"2\",\"id\":\"wamid.E\","
                      "\"type\":\"image\",\"image\":{\"id\":\"m1\",\"caption\":\"c\"}},7]}}]}]}";
    if (s_norm (api, &ev, &n) == 0 && n == 2) {
        CHECK_INT (ev[0]->kind, SB_KIND_ECHO);
        CHECK (ev[0]->n_media == 1);
        CHECK_STR (ev[0]->text, "c");
        CHECK_INT (ev[1]->kind, SB_KIND_OTHER);
        CHECK_STR (ev[1]->detail_json, "7");
    }
    else
        CHECK (!"message_echoes gave two events");
    sb_meta_events_free (&ev, n);
}

static void
s_test_calls (void)
{
    size_t n = 0;
    sb_event_t **ev = s_normalize_file ("meta-calls-connect.json", 1, &n);
    if (n == 1) {
        sb_event_t *e = ev[0];
        CHECK_INT (e->kind, SB_KIND_CALL);
        CHECK_STR (e->provider_id, "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh");
        CHECK_STR (e->call_status, "connect");
        CHECK_STR (e->from, "13175551399");
        CHECK_STR (e->to, "16315553601");
        CHECK (e->meta_call);
        if (e->meta_call) {
            CHECK_STR (e->meta_call->event, "connect");
            CHECK_STR (e->meta_call->sdp_type, "offer");
            CHECK_STR (e->meta_call->sdp, "<<RFC 8866 SDP>>");
            CHECK (!e->meta_call->sdp_truncated);
        }
    }
    sb_meta_events_free (&ev, n);
    ev = s_normalize_file ("meta-calls-terminate.json", 1, &n);
    if (n == 1 && ev[0]->meta_call) {
        CHECK_STR (ev[0]->call_status, "COMPLETED");
        CHECK_STR (ev[0]->meta_call->event, "terminate");
        CHECK_STR (ev[0]->meta_call->direction, "USER_INITIATED");
        CHECK_INT (ev[0]->meta_call->start_time, 1671644824);
        CHECK_INT (ev[0]->meta_call->end_time, 1671644944);
        CHECK_INT (ev[0]->meta_call->duration, 120);
    }
    else
        CHECK (!"terminate");
    sb_meta_events_free (&ev, n);
    ev = s_normalize_file ("meta-calls-connect-business.json", 1, &n);
    if (n == 1 && ev[0]->meta_call) {
        CHECK_STR (ev[0]->meta_call->direction, "BUSINESS_INITIATED");
        CHECK_STR (ev[0]->meta_call->sdp_type, "answer");
        CHECK_STR (ev[0]->meta_call->biz_opaque_callback_data, "TRx334DUDFTI4Mj");
    }
    else
        CHECK (!"business connect");
    sb_meta_events_free (&ev, n);
    //  A call status is a call event, not a message status.
    ev = s_normalize_file ("meta-calls-status-ringing.json", 1, &n);
    if (n == 1) {
        CHECK_INT (ev[0]->kind, SB_KIND_CALL);
        CHECK (ev[0]->status == NULL);
        CHECK_STR (ev[0]->call_status, "RINGING");
        CHECK_STR (ev[0]->to, "12185552828");
        CHECK_STR (ev[0]->from, "13175551399");
    }
    sb_meta_events_free (&ev, n);
    //  An SDP over the cap is cut, on a UTF-8 boundary, and said to be.
    size_t big = 70 * 1024;
    char *body = malloc (big + 256);
    CHECK (body);
    if (!body)
        return;
    int head = snprintf (body, 256,
                         "{\"entry\":[{\"changes\":[{\"field\":\"calls\",\"value\":{\"calls\":[{"
                         "\"id\":\"wacid.X\",\"event\":\"connect\",\"session\":{\"sdp\":\"");
    size_t at = (size_t) head;
    for (size_t i = 0; i < big / 2; i++) {
        body[at++] = '\xC3';  //  é, two bytes
        body[at++] = '\xA9';
    }
    memcpy (body + at, "\"}}]}}]}]}", 11);
    if (s_norm (body, &ev, &n) == 0 && n == 1 && ev[0]->meta_call) {
        CHECK (ev[0]->meta_call->sdp_truncated);
        CHECK_INT (strlen (ev[0]->meta_call->sdp), 64 * 1024);
        CHECK (strstr (ev[0]->meta_call->sdp, "\xEF\xBF\xBD") == NULL);  //  no U+FFFD
    }
    else
        CHECK (!"big sdp");
    sb_meta_events_free (&ev, n);
    free (body);
}

static void
s_test_preference (void)
{
    size_t n = 0;
    sb_event_t **ev = s_normalize_file ("meta-preference-stop.json", 1, &n);
    if (n == 1 && ev[0]->preference) {
        CHECK_INT (ev[0]->kind, SB_KIND_PREFERENCE);
        CHECK_STR (ev[0]->from, "16505551234");
        CHECK_STR (ev[0]->profile_name, "Sheena Nelson");
        CHECK_STR (ev[0]->preference->value, "stop");
        CHECK_STR (ev[0]->preference->category, "marketing_messages");
        CHECK_STR (ev[0]->preference->detail, "User requested to stop marketing messages");
        CHECK_INT (ev[0]->provider_timestamp, 1739321024);
    }
    else
        CHECK (!"preference stop");
    sb_meta_events_free (&ev, n);
    ev = s_normalize_file ("meta-preference-resume.json", 1, &n);
    if (n == 1 && ev[0]->preference)
        CHECK_STR (ev[0]->preference->value, "resume");
    sb_meta_events_free (&ev, n);
}

static void
s_test_template_account (void)
{
    size_t n = 0;
    sb_event_t **ev = s_normalize_file ("meta-template-rejected.json", 1, &n);
    if (n == 1 && ev[0]->meta_template) {
        CHECK_INT (ev[0]->kind, SB_KIND_TEMPLATE);
        CHECK_STR (ev[0]->meta_template->event, "REJECTED");
        CHECK_STR (ev[0]->meta_template->id, "1689556908129832");  //  a JSON number
        CHECK_STR (ev[0]->meta_template->name, "order_confirmation");
        CHECK_STR (ev[0]->meta_template->language, "en-US");
        CHECK_STR (ev[0]->meta_template->reason, "INVALID_FORMAT");
        CHECK_STR (ev[0]->meta_template->category, "MARKETING");
        CHECK (*ev[0]->provider_id == '\0');  //  unique by content (0003)
    }
    else
        CHECK (!"template");
    sb_meta_events_free (&ev, n);
    //  The quality update: event from new_quality_score.
    const char *quality =
        "{\"entry\":[{\"changes\":[{\"field\":\"message_template_quality_update\","
        "\"value\":{\"previous_quality_score\":\"GREEN\",\"new_quality_score\":"
        "\"YELLOW\",\"message_template_id\":\"806312974732579\"}}]}]}";
    if (s_norm (quality, &ev, &n) == 0 && n == 1 && ev[0]->meta_template) {
        CHECK_STR (ev[0]->meta_template->event, "YELLOW");
        CHECK_STR (ev[0]->meta_template->id, "806312974732579");
    }
    else
        CHECK (!"quality");
    sb_meta_events_free (&ev, n);
    ev = s_normalize_file ("meta-account-alerts.json", 1, &n);
    if (n == 1 && ev[0]->meta_account) {
        CHECK_INT (ev[0]->kind, SB_KIND_ACCOUNT);
        CHECK_STR (ev[0]->meta_account->event, "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED");
        CHECK_STR (ev[0]->meta_account->severity, "WARNING");
        CHECK_STR (ev[0]->meta_account->status, "ACTIVE");
        CHECK_STR (ev[0]->meta_account->entity_type, "BUSINESS");
    }
    else
        CHECK (!"account alerts");
    sb_meta_events_free (&ev, n);
}

static void
s_test_referral_pricing (void)
{
    size_t n = 0;
    sb_event_t **ev = s_normalize_file ("meta-referral-text.json", 1, &n);
    if (n == 1 && ev[0]->referral) {
        CHECK_INT (ev[0]->kind, SB_KIND_MESSAGE);
        CHECK_STR (ev[0]->text, "Does it come in another color?");
        CHECK_STR (ev[0]->referral->source_type, "ad");
        CHECK_STR (ev[0]->referral->source_id, "120226305854810726");
        CHECK_STR (ev[0]->referral->source_url, "https://fb.me/3cr4Wqqkv");
        CHECK_STR (ev[0]->referral->headline, "Chat with us");
        CHECK_STR (ev[0]->referral->body, "Summer sale: 20% off");
        CHECK_STR (ev[0]->referral->media_type, "image");
        CHECK (strncmp (ev[0]->referral->image_url, "https://scontent", 16) == 0);
        CHECK (strncmp (ev[0]->referral->ctwa_clid, "ARAkLkA8", 8) == 0);
        CHECK_STR (ev[0]->referral->welcome_text, "Hi! How can we help?");
    }
    else
        CHECK (!"referral");
    sb_meta_events_free (&ev, n);
    ev = s_normalize_file ("meta-status-sent.json", 1, &n);
    if (n == 1 && ev[0]->pricing) {
        CHECK_STR (ev[0]->pricing->pricing_model, "PMP");
        CHECK_STR (ev[0]->pricing->type, "regular");
        CHECK_STR (ev[0]->pricing->category, "marketing");
        CHECK (ev[0]->pricing->billable);
    }
    else
        CHECK (!"pricing");
    sb_meta_events_free (&ev, n);
    //  Every entry of errors[] is kept, not only the first.
    const char *errs =
        "{\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"statuses\":[{"
        "\"id\":\"wamid.F\",\"status\":\"failed\",\"recipient_id\":\"1\",\"errors\":["
        "{\"code\":131049,\"title\":\"a\"},{\"code\":131026,\"title\":\"b\","
        "\"error_data\":{\"details\":\"d\"}}]}]}}]}]}";
    if (s_norm (errs, &ev, &n) == 0 && n == 1 && ev[0]->n_errors == 2) {
        CHECK_INT (ev[0]->errors[0]->code, 131049);
        CHECK_INT (ev[0]->errors[1]->code, 131026);
        CHECK_STR (ev[0]->errors[1]->details, "d");
        CHECK_STR (ev[0]->status->error_code, "131049");
    }
    else
        CHECK (!"two errors");
    sb_meta_events_free (&ev, n);
}

//  Valid JSON of shapes we do not expect in the other fields: events of
//  kind other (or the field's kind with empty fields), never a refusal.
static void
s_test_fields_hostile (void)
{
    static const struct {
        const char *body;
        size_t count;
        int kind;
    } cases[] = {
        //  an unknown field, kept whole
        {"{\"entry\":[{\"changes\":[{\"field\":\"history\",\"value\":{\"history\":[{\"a\":1}]}}]}]"
         "}",
         1, SB_KIND_OTHER},
        //  value not an object
        {"{\"entry\":[{\"changes\":[{\"field\":\"calls\",\"value\":[1,2]}]}]}", 1, SB_KIND_OTHER},
        {"{\"entry\":[{\"changes\":[{\"field\":\"account_update\",\"value\":\"x\"}]}]}", 1,
         SB_KIND_OTHER},
        //  the list not an array
        {"{\"entry\":[{\"changes\":[{\"field\":\"calls\",\"value\":{\"calls\":{\"id\":1}}}]}]}", 1,
         SB_KIND_OTHER},
        {"{\"entry\":[{\"changes\":[{\"field\":\"smb_message_echoes\",\"value\":"
         "{\"message_echoes\":\"no\"}}]}]}",
         1, SB_KIND_OTHER},
        //  no list at all
        {"{\"entry\":[{\"changes\":[{\"field\":\"user_preferences\",\"value\":{}}]}]}", 1,
         SB_KIND_OTHER},
        //  missing ids and wrong types inside an item: the kind, fields empty
        {"{\"entry\":[{\"changes\":[{\"field\":\"calls\",\"value\":{\"calls\":[{\"event\":5,"
         "\"session\":[],\"duration\":\"x\"}],\"statuses\":[{}]}}]}]}",
         2, SB_KIND_CALL},
        {"{\"entry\":[{\"changes\":[{\"field\":\"message_template_status_update\",\"value\":"
         "{\"event\":[],\"message_template_id\":{}}}]}]}",
         1, SB_KIND_TEMPLATE},
        {"{\"entry\":[{\"changes\":[{\"field\":\"user_preferences\",\"value\":"
         "{\"user_preferences\":[{\"wa_id\":1,\"value\":null}]}}]}]}",
         1, SB_KIND_PREFERENCE},
        //  a field name that is not a string: as before (a messages change)
        {"{\"entry\":[{\"changes\":[{\"field\":3,\"value\":{}}]}]}", 1, SB_KIND_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sb_event_t **ev = NULL;
        size_t n = 0;
        if (s_norm (cases[i].body, &ev, &n) != 0 || n != cases[i].count) {
            fprintf (stderr, "%s:%d: case %zu gave %zu events\n", __FILE__, __LINE__, i, n);
            s_failures++;
        }
        else {
            CHECK_INT (ev[0]->kind, cases[i].kind);
            CHECK (*ev[0]->detail_json != '\0');
            CHECK (*ev[0]->provider_id == '\0');
        }
        sb_meta_events_free (&ev, n);
    }
}

static void
s_test_fields (void)
{
    s_test_echo ();
    s_test_calls ();
    s_test_preference ();
    s_test_template_account ();
    s_test_referral_pricing ();
    s_test_fields_hostile ();
}

static void s_test_bsuid (void);
static void
s_test_bsuid_all (void)
{
    s_test_bsuid ();
}

static void
s_test_all (void)
{
    s_test_text ();
    s_test_media ();
    s_test_location ();
    s_test_contacts ();
    s_test_interactive ();
    s_test_button ();
    s_test_reaction ();
    s_test_order ();
    s_test_system ();
    s_test_unsupported_unknown ();
    s_test_statuses ();
    s_test_batch ();
    s_test_all_files_covered ();
    s_test_malformed ();
    s_test_shapes ();
    s_test_hostile ();
    s_test_fields ();
    s_test_bsuid_all ();
}

//  Business-scoped user ids (issue 12): every new shape keeps its sender.
//  The fixtures are Meta's BSUID page examples (README section 2).
#define BSUID "US.13491208655302741918"
#define BSUID_PARENT "US.11815799212886844830"
static void
s_test_bsuid (void)
{
    size_t n;
    sb_event_t **ev = s_normalize_file ("meta-bsuid-text-username.json", 1, &n);
    if (n == 1) {
        CHECK_STR (ev[0]->from, BSUID);  //  no "from": the BSUID
        CHECK_STR (ev[0]->user_id, BSUID);
        CHECK_STR (ev[0]->parent_user_id, BSUID_PARENT);
        CHECK_STR (ev[0]->username, "@realsheenanelson");
        CHECK_STR (ev[0]->profile_name, "Sheena Nelson");
        //  The page's contact user_id is "uUS.…" (sic): the message's own
        //  from_user_id wins, and it is well formed.
        CHECK (*ev[0]->wa_id == '\0' && !ev[0]->user_id_malformed);
    }
    sb_meta_events_free (&ev, n);
    ev = s_normalize_file ("meta-bsuid-text-phone.json", 1, &n);
    if (n == 1) {
        CHECK_STR (ev[0]->from, "16505551234");  //  both: the phone
        CHECK_STR (ev[0]->user_id, BSUID);
        CHECK_STR (ev[0]->parent_user_id, BSUID_PARENT);
        CHECK_STR (ev[0]->wa_id, "16505551234");
    }
    sb_meta_events_free (&ev, n);
    //  Sent to the BSUID: no recipient_id, the parent as "parent_user_id".
    ev = s_normalize_file ("meta-bsuid-status-delivered.json", 1, &n);
    if (n == 1) {
        CHECK_STR (ev[0]->to, BSUID);
        CHECK_STR (ev[0]->status->recipient, BSUID);
        CHECK_STR (ev[0]->parent_user_id, BSUID_PARENT);
        CHECK_STR (ev[0]->username, "@pablomorales");
    }
    sb_meta_events_free (&ev, n);
    ev = s_normalize_file ("meta-bsuid-status-delivered-phone.json", 1, &n);
    if (n == 1) {
        CHECK_STR (ev[0]->to, "16505551234");
        CHECK_STR (ev[0]->user_id, BSUID);
        CHECK_STR (ev[0]->parent_user_id, BSUID_PARENT);
    }
    sb_meta_events_free (&ev, n);
    ev = s_normalize_file ("meta-bsuid-system-changed-number.json", 1, &n);
    if (n == 1) {
        CHECK_STR (ev[0]->from, "16505551234");
        CHECK_STR (ev[0]->system->type, "user_changed_number");
        CHECK_STR (ev[0]->system->new_wa_id, "12195555358");
        CHECK_STR (ev[0]->new_user_id, "US.13491208655302741919");
        CHECK_STR (ev[0]->previous_user_id, BSUID);
    }
    sb_meta_events_free (&ev, n);
    //  No phone and no from_user_id: the user is the BSUID they had.
    ev = s_normalize_file ("meta-bsuid-system-changed-user-id.json", 1, &n);
    if (n == 1) {
        CHECK_STR (ev[0]->from, BSUID);
        CHECK_STR (ev[0]->system->type, "user_changed_user_id");
        CHECK_STR (ev[0]->new_user_id, "US.13491208655302741920");
        CHECK_STR (ev[0]->new_parent_user_id, "US.11815799212886844832");
        CHECK_STR (ev[0]->previous_user_id, BSUID);
    }
    sb_meta_events_free (&ev, n);
    //  The user_id_update field (as 8x8 forwards it): the same change.
    ev = s_normalize_file ("meta-bsuid-user-id-update.json", 1, &n);
    if (n == 1) {
        CHECK_INT (ev[0]->kind, SB_KIND_MESSAGE);
        CHECK_STR (ev[0]->message_type, "system");
        CHECK (ev[0]->system != NULL);
        if (ev[0]->system)
            CHECK_STR (ev[0]->system->type, "user_id_update");
        CHECK_STR (ev[0]->from, "16505551234");
        CHECK_STR (ev[0]->wa_id, "16505551234");
        CHECK_STR (ev[0]->previous_user_id, BSUID);
        CHECK_STR (ev[0]->new_user_id, "US.13491208655302741921");
        CHECK_STR (ev[0]->new_parent_user_id, "US.11815799212886844833");
        CHECK_STR (ev[0]->username, "@realsheenanelson");
        CHECK (ev[0]->provider_timestamp == 1750269342);
    }
    sb_meta_events_free (&ev, n);
    //  A marketing stop from a user without wa_id: the BSUID is the user.
    ev = s_normalize_file ("meta-bsuid-preference-stop.json", 1, &n);
    if (n == 1) {
        CHECK_INT (ev[0]->kind, SB_KIND_PREFERENCE);
        CHECK_STR (ev[0]->from, BSUID);
        CHECK_STR (ev[0]->user_id, BSUID);
        CHECK_STR (ev[0]->parent_user_id, BSUID_PARENT);
        CHECK_STR (ev[0]->username, "@realsheenanelson");
        CHECK (*ev[0]->wa_id == '\0');
        if (ev[0]->preference)
            CHECK_STR (ev[0]->preference->value, "stop");
    }
    sb_meta_events_free (&ev, n);
    //  Echoes and calls of a user who hides their number (the BSUID page's
    //  smb_message_echoes and calls syntax): to_user_id, from_user_id,
    //  recipient_user_id name them.
    static const char *const named[] = {
        "{\"entry\":[{\"changes\":[{\"field\":\"smb_message_echoes\",\"value\":{"
        "\"message_echoes\":[{\"from\":\"15550783881\",\"to_user_id\":\"" BSUID "\","
        "\"id\":\"e1\",\"type\":\"text\",\"text\":{\"body\":\"x\"}}]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"field\":\"calls\",\"value\":{\"calls\":[{"
        "\"from_user_id\":\"" BSUID "\",\"id\":\"c1\",\"to\":\"15550783881\","
        "\"event\":\"connect\",\"direction\":\"USER_INITIATED\"}]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"field\":\"calls\",\"value\":{\"calls\":[{"
        "\"from\":\"15550783881\",\"to_user_id\":\"" BSUID "\",\"id\":\"c2\","
        "\"event\":\"terminate\",\"status\":\"COMPLETED\"}]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"field\":\"calls\",\"value\":{\"statuses\":[{"
        "\"id\":\"c3\",\"type\":\"call\",\"status\":\"RINGING\","
        "\"recipient_user_id\":\"" BSUID "\"}]}}]}]}",
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        char err[128];
        CHECK (sb_meta_normalize (named[i], strlen (named[i]), &ev, &n, err, sizeof err) == 0);
        if (n != 1)
            continue;
        CHECK_STR (ev[0]->user_id, BSUID);
        CHECK_STR (i == 1 ? ev[0]->from : ev[0]->to, BSUID);
        sb_meta_events_free (&ev, n);
    }
    //  Hostile: a malformed BSUID is kept and flagged; no ids at all keeps
    //  the message (empty sender); a contact's user_id alone names it.
    static const char *const bodies[] = {
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"w1\",\"type\":\"text\","
        "\"from_user_id\":\"us.not a bsuid\",\"text\":{\"body\":\"x\"}}]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"w2\",\"type\":\"text\","
        "\"text\":{\"body\":\"x\"}}]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"contacts\":[{\"user_id\":\"BR.1502576394655843\"}]"
        ","
        "\"messages\":[{\"id\":\"w3\",\"type\":\"text\",\"text\":{\"body\":\"x\"}}]}}]}]}",
        "{\"entry\":[{\"changes\":[{\"value\":{\"statuses\":[{\"id\":\"w4\",\"status\":\"sent\","
        "\"recipient_id\":\"16505551234\",\"recipient_user_id\":7}]}}]}]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char err[128];
        CHECK (sb_meta_normalize (bodies[i], strlen (bodies[i]), &ev, &n, err, sizeof err) == 0);
        if (n != 1)
            continue;
        if (i == 0) {
            CHECK_STR (ev[0]->from, "us.not a bsuid");
            CHECK (ev[0]->user_id_malformed);
        }
        if (i == 1)
            CHECK (*ev[0]->from == '\0' && !ev[0]->user_id_malformed);
        if (i == 2)
            CHECK_STR (ev[0]->from, "BR.1502576394655843");
        if (i == 3)
            CHECK_STR (ev[0]->to, "16505551234");
        sb_meta_events_free (&ev, n);
    }
}

//  Every covered file gives the same encoded events inside a scratch as
//  with malloc; a one-message body fits the ingress's 16 KiB scratch.
static void
s_test_scratch_same (void)
{
    for (size_t f = 0; f < sizeof s_covered / sizeof s_covered[0]; f++) {
        size_t size = 0;
        char *body = s_load (s_covered[f], &size);
        if (!body)
            continue;
        uint8_t *plain[64], *scratched[64];
        size_t plain_size[64], scratched_size[64], plain_count = 0, count = 0;
        sb_event_t **events = NULL;
        char err[128];
        CHECK (sb_meta_normalize (body, size, &events, &plain_count, err, sizeof err) == 0);
        for (size_t i = 0; i < plain_count && i < 64; i++)
            plain[i] = sb_event_encode (events[i], &plain_size[i]);
        sb_meta_events_free (&events, plain_count);

        alignas (16) char scratch[16 * 1024];
        sb_scratch_begin (scratch, sizeof scratch);
        CHECK (sb_meta_normalize (body, size, &events, &count, err, sizeof err) == 0);
        CHECK_INT (count, plain_count);
        for (size_t i = 0; i < count && i < 64; i++) {
            scratched[i] = sb_event_encode (events[i], &scratched_size[i]);
            CHECK (!sb_scratch_owns (scratched[i]));  //  encodings outlive the scratch
        }
        if (count == 1)
            CHECK (sb_scratch_owns (events[0]) && sb_scratch_spills (scratch) == 0);
        sb_meta_events_free (&events, count);
        sb_scratch_end (scratch);
        for (size_t i = 0; i < count && i < plain_count && i < 64; i++) {
            CHECK (plain_size[i] == scratched_size[i]
                   && memcmp (plain[i], scratched[i], plain_size[i]) == 0);
            free (scratched[i]);
        }
        for (size_t i = 0; i < plain_count && i < 64; i++)
            free (plain[i]);
        free (body);
    }
}

int
main (void)
{
    s_test_all ();
    //  jansson through the scratch allocator from here on, as in the ingress.
    sb_json_use_scratch ();
    //  Again as the ingress runs it: every test inside a scratch the size of
    //  the ingress's (bigger bodies spill to malloc). Under ASan the
    //  scratch's unused bytes are poisoned.
    s_test_scratch_same ();
    {
        alignas (16) char scratch[16 * 1024];
        sb_scratch_begin (scratch, sizeof scratch);
        s_test_all ();
        sb_scratch_end (scratch);
    }
    if (s_failures) {
        fprintf (stderr, "test_sb_meta: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
