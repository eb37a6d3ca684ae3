/*  test_sb_event: build, encode, decode, stamp, name and show events.

    Silent on success; prints file:line and what differed on failure.
*/
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sb_event.h"
#include "sb_scratch.h"

#include "sb_check.h"

//  An event with every field set, repeated fields with two elements, every
//  sub-message with every field set.
static sb_event_t *
s_full_event (void)
{
    sb_event_t *e = sb_event_new ();
    CHECK (e);
    CHECK (sb_event_set (&e->id, "ing-a-ep1-7") == 0);
    CHECK (sb_event_set (&e->ingress_id, "ing-a") == 0);
    e->seq = 7;
    e->received_at_ms = 1750000000123;
    e->received_at_us = 1750000000123456;
    CHECK (sb_event_set (&e->epoch, "ep1") == 0);
    e->provider = SB_PROVIDER_META;
    e->channel = SB_CHANNEL_WHATSAPP;
    e->kind = SB_KIND_MESSAGE;
    CHECK (sb_event_set (&e->message_type, "image") == 0);
    CHECK (sb_event_set (&e->provider_id, "wamid.XYZ") == 0);
    CHECK (sb_event_set (&e->account, "106540352242922") == 0);
    CHECK (sb_event_set (&e->from, "16505551234") == 0);
    CHECK (sb_event_set (&e->to, "15550783881") == 0);
    CHECK (sb_event_set (&e->profile_name, "Sheena Nelson") == 0);
    CHECK (sb_event_set (&e->wa_id, "16505551234") == 0);
    CHECK (sb_event_set (&e->text, "caf\xC3\xA9 \xF0\x9F\x98\x8A") == 0);
    for (int i = 0; i < 2; i++) {
        sb_event_media_t *m = sb_event_add_media (e);
        CHECK (m);
        CHECK (sb_event_set (&m->url, i ? "https://x/1" : "https://x/0") == 0);
        CHECK (sb_event_set (&m->content_type, "image/jpeg") == 0);
        CHECK (sb_event_set (&m->id, i ? "m1" : "m0") == 0);
        CHECK (sb_event_set (&m->sha256, "abc=") == 0);
        CHECK (sb_event_set (&m->caption, "Taj Mahal") == 0);
        CHECK (sb_event_set (&m->filename, "x.jpg") == 0);
        m->voice = 1;
        m->animated = 1;
    }
    Switchboard__V1__Location *loc = sb_event_location (e);
    CHECK (loc && sb_event_location (e) == loc);
    loc->latitude = 37.44221496582;
    loc->longitude = -122.16165924072;
    CHECK (sb_event_set (&loc->name, "Philz Coffee") == 0);
    CHECK (sb_event_set (&loc->address, "101 Forest Ave") == 0);
    CHECK (sb_event_set (&loc->url, "https://philzcoffee.com/") == 0);
    CHECK (sb_event_set (&loc->label, "Philz") == 0);
    Switchboard__V1__Interactive *in = sb_event_interactive (e);
    CHECK (in);
    CHECK (sb_event_set (&in->type, "list_reply") == 0);
    CHECK (sb_event_set (&in->id, "priority_express") == 0);
    CHECK (sb_event_set (&in->title, "Priority Mail Express") == 0);
    CHECK (sb_event_set (&in->description, "Next Day to 2 Days") == 0);
    Switchboard__V1__Status *st = sb_event_status (e);
    CHECK (st);
    CHECK (sb_event_set (&st->status, "failed") == 0);
    CHECK (sb_event_set (&st->error_code, "131049") == 0);
    CHECK (sb_event_set (&st->error_message, "not delivered") == 0);
    CHECK (sb_event_set (&st->recipient, "16505551234") == 0);
    CHECK (sb_event_set (&st->conversation_id, "6ceb9d") == 0);
    CHECK (sb_event_set (&st->conversation_origin, "service") == 0);
    CHECK (sb_event_set (&st->pricing_category, "service") == 0);
    st->billable = 1;
    CHECK (sb_event_set (&e->digits, "1234") == 0);
    CHECK (sb_event_set (&e->speech_result, "check my order") == 0);
    e->speech_confidence = 0.9128386;
    CHECK (sb_event_set (&e->context_id, "wamid.CTX") == 0);
    Switchboard__V1__Reaction *re = sb_event_reaction (e);
    CHECK (re);
    CHECK (sb_event_set (&re->message_id, "wamid.R") == 0);
    CHECK (sb_event_set (&re->emoji, "\xF0\x9F\x91\x8D") == 0);
    for (int i = 0; i < 2; i++) {
        sb_event_contact_t *c = sb_event_add_contact (e);
        CHECK (c);
        CHECK (sb_event_set (&c->formatted_name, i ? "Bob" : "Barbara J. Johnson") == 0);
        CHECK (sb_event_add_string (&c->phones, &c->n_phones, "+1 (415) 555-0829") == 0);
        CHECK (sb_event_add_string (&c->phones, &c->n_phones, "+1 415 555 0000") == 0);
        CHECK (sb_event_add_string (&c->wa_ids, &c->n_wa_ids, "14125550829") == 0);
        CHECK (sb_event_add_string (&c->wa_ids, &c->n_wa_ids, "14155550000") == 0);
        CHECK (sb_event_set (&c->organization, "Social Tsunami") == 0);
    }
    Switchboard__V1__Order *order = sb_event_order (e);
    CHECK (order);
    CHECK (sb_event_set (&order->catalog_id, "194836987003835") == 0);
    CHECK (sb_event_set (&order->text, "Love these!") == 0);
    for (int i = 0; i < 2; i++) {
        sb_event_order_item_t *item = sb_event_add_order_item (e);
        CHECK (item);
        CHECK (sb_event_set (&item->product_retailer_id, i ? "nqryix03ez" : "di9ozbzfi4") == 0);
        item->quantity = 2 - i;
        CHECK (sb_event_set (&item->item_price, i ? "25" : "30.5") == 0);
        CHECK (sb_event_set (&item->currency, "USD") == 0);
    }
    CHECK (e->order == order && order->n_items == 2);
    Switchboard__V1__System *sys = sb_event_system (e);
    CHECK (sys);
    CHECK (sb_event_set (&sys->type, "user_changed_number") == 0);
    CHECK (sb_event_set (&sys->body, "User changed number") == 0);
    CHECK (sb_event_set (&sys->new_wa_id, "12195555358") == 0);
    for (int i = 0; i < 2; i++) {
        sb_event_error_t *err = sb_event_add_error (e);
        CHECK (err);
        err->code = 131049 + i;
        CHECK (sb_event_set (&err->title, "title") == 0);
        CHECK (sb_event_set (&err->message, "message") == 0);
        CHECK (sb_event_set (&err->details, "details") == 0);
        CHECK (sb_event_set (&err->href, "https://developers.facebook.com/") == 0);
    }
    //  The Meta webhook fields beyond messages (fields 56-61).
    Switchboard__V1__MetaFieldsReferral *ref = sb_event_referral (e);
    CHECK (ref);
    char **ref_fields[] = {&ref->source_url, &ref->source_id,   &ref->source_type,
                           &ref->headline,   &ref->body,        &ref->media_type,
                           &ref->image_url,  &ref->video_url,   &ref->thumbnail_url,
                           &ref->ctwa_clid,  &ref->welcome_text};
    for (size_t i = 0; i < sizeof ref_fields / sizeof ref_fields[0]; i++)
        CHECK (sb_event_set (ref_fields[i], "ad") == 0);
    Switchboard__V1__MetaFieldsPricing *price = sb_event_pricing (e);
    CHECK (price);
    CHECK (sb_event_set (&price->pricing_model, "PMP") == 0);
    CHECK (sb_event_set (&price->type, "regular") == 0);
    CHECK (sb_event_set (&price->category, "marketing") == 0);
    price->billable = true;
    Switchboard__V1__MetaFieldsCall *call = sb_event_meta_call (e);
    CHECK (call);
    CHECK (sb_event_set (&call->event, "terminate") == 0);
    CHECK (sb_event_set (&call->direction, "USER_INITIATED") == 0);
    CHECK (sb_event_set (&call->sdp_type, "offer") == 0);
    CHECK (sb_event_set (&call->sdp, "v=0") == 0);
    CHECK (sb_event_set (&call->biz_opaque_callback_data, "TRx334DUDFTI4Mj") == 0);
    call->sdp_truncated = true;
    call->start_time = 1671644824;
    call->end_time = 1671644944;
    call->duration = 120;
    Switchboard__V1__MetaFieldsTemplate *tpl = sb_event_meta_template (e);
    CHECK (tpl);
    char **tpl_fields[] = {&tpl->event,    &tpl->id,     &tpl->name,
                           &tpl->language, &tpl->reason, &tpl->category};
    for (size_t i = 0; i < sizeof tpl_fields / sizeof tpl_fields[0]; i++)
        CHECK (sb_event_set (tpl_fields[i], "REJECTED") == 0);
    Switchboard__V1__MetaFieldsAccount *acct = sb_event_meta_account (e);
    CHECK (acct);
    char **acct_fields[] = {&acct->event,    &acct->entity_type, &acct->entity_id,
                            &acct->severity, &acct->status,      &acct->description};
    for (size_t i = 0; i < sizeof acct_fields / sizeof acct_fields[0]; i++)
        CHECK (sb_event_set (acct_fields[i], "WARNING") == 0);
    Switchboard__V1__MetaFieldsPreference *pref = sb_event_preference (e);
    CHECK (pref);
    CHECK (sb_event_set (&pref->category, "marketing_messages") == 0);
    CHECK (sb_event_set (&pref->value, "stop") == 0);
    CHECK (sb_event_set (&pref->detail, "User requested to stop marketing messages") == 0);
    e->provider_timestamp = 1751142888;
    CHECK (sb_event_set (&e->call_status, "in-progress") == 0);
    CHECK (sb_event_set (&e->display_phone_number, "15550783881") == 0);
    CHECK (sb_event_set (&e->business_account_id, "102290129340398") == 0);
    CHECK (sb_event_set (&e->webhook_field, "messages") == 0);
    static const uint8_t raw[] = {'a', '=', 0xFF, 0x00, '1'};
    CHECK (sb_event_set_raw (e, raw, sizeof raw) == 0);
    CHECK (sb_event_set (&e->raw_content_type, "application/json") == 0);
    CHECK (sb_event_set (&e->request_path, "/meta/webhook") == 0);
    CHECK (sb_event_set (&e->request_id, "req-1") == 0);
    CHECK (sb_event_set (&e->detail_json, "{\"id\":\"wamid.XYZ\",\"n\":[1,2]}") == 0);
    e->request_events = 3;
    e->request_index = 2;
    uint8_t sha[SB_EVENT_SHA256_SIZE];
    sb_event_sha256 (raw, sizeof raw, sha);
    e->raw_body_sha256.data = sb_scratch_memdup (sha, sizeof sha);
    CHECK (e->raw_body_sha256.data);
    e->raw_body_sha256.len = sizeof sha;
    //  Business-scoped user ids (fields 48-54).
    CHECK (sb_event_set (&e->user_id, "US.13491208655302741918") == 0);
    CHECK (sb_event_set (&e->parent_user_id, "US.ENT.11815799212886844830") == 0);
    CHECK (sb_event_set (&e->username, "@sheena") == 0);
    CHECK (sb_event_set (&e->new_user_id, "US.13491208655302741919") == 0);
    CHECK (sb_event_set (&e->new_parent_user_id, "US.ENT.11815799212886844831") == 0);
    CHECK (sb_event_set (&e->previous_user_id, "US.13491208655302741917") == 0);
    e->user_id_malformed = true;
    return e;
}

//  Size of one element of a repeated field (the test's own copy).
static size_t
s_element_size (const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
        case PROTOBUF_C_TYPE_STRING: return sizeof (char *);
        case PROTOBUF_C_TYPE_MESSAGE: return sizeof (ProtobufCMessage *);
        case PROTOBUF_C_TYPE_BYTES: return sizeof (ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_DOUBLE: return 8;
        default: return 4;
    }
}

//  Every field of msg (and of its sub-messages) differs from its default:
//  the fully populated event really is full, also after event.proto grows.
static void
s_check_all_set (const ProtobufCMessage *msg, const char *path)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *member = (const char *) msg + f->offset;
        bool set = false;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *) ((const char *) msg + f->quantifier_offset);
            set = n >= 2;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                for (size_t k = 0; k < n; k++)
                    s_check_all_set ((*(ProtobufCMessage * *const *) member)[k], f->name);
        }
        else
            switch (f->type) {
                case PROTOBUF_C_TYPE_STRING: set = **(char *const *) member != '\0'; break;
                case PROTOBUF_C_TYPE_BYTES:
                    set = ((const ProtobufCBinaryData *) member)->len > 0;
                    break;
                case PROTOBUF_C_TYPE_MESSAGE:
                    set = *(ProtobufCMessage *const *) member != NULL;
                    if (set)
                        s_check_all_set (*(ProtobufCMessage *const *) member, f->name);
                    break;
                case PROTOBUF_C_TYPE_INT64:
                case PROTOBUF_C_TYPE_UINT64: set = *(const uint64_t *) member != 0; break;
                case PROTOBUF_C_TYPE_DOUBLE: set = *(const double *) member != 0; break;
                default: set = *(const uint32_t *) member != 0; break;
            }
        if (!set) {
            fprintf (stderr, "%s:%d: field %s.%s not set in the full event\n", __FILE__, __LINE__,
                     path, f->name);
            s_failures++;
        }
    }
}

//  a and b equal field by field (recursively); reports the first field
//  that differs under path.
static bool
s_equal (const ProtobufCMessage *a, const ProtobufCMessage *b, const char *path)
{
    if (!a || !b)
        return a == b;
    if (a->descriptor != b->descriptor)
        return false;
    const ProtobufCMessageDescriptor *d = a->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *ma = (const char *) a + f->offset;
        const char *mb = (const char *) b + f->offset;
        bool same = true;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t na = *(const size_t *) ((const char *) a + f->quantifier_offset);
            size_t nb = *(const size_t *) ((const char *) b + f->quantifier_offset);
            same = na == nb;
            const char *ia = *(char *const *) ma, *ib = *(char *const *) mb;
            size_t size = s_element_size (f);
            for (size_t k = 0; same && k < na; k++) {
                if (f->type == PROTOBUF_C_TYPE_STRING)
                    same = strcmp (((char *const *) ia)[k], ((char *const *) ib)[k]) == 0;
                else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                    same = s_equal (((ProtobufCMessage *const *) ia)[k],
                                    ((ProtobufCMessage *const *) ib)[k], f->name);
                else
                    same = memcmp (ia + k * size, ib + k * size, size) == 0;
            }
        }
        else
            switch (f->type) {
                case PROTOBUF_C_TYPE_STRING:
                    same = strcmp (*(char *const *) ma, *(char *const *) mb) == 0;
                    break;
                case PROTOBUF_C_TYPE_BYTES: {
                    const ProtobufCBinaryData *ba = (const void *) ma, *bb = (const void *) mb;
                    same = ba->len == bb->len
                           && (ba->len == 0 || memcmp (ba->data, bb->data, ba->len) == 0);
                    break;
                }
                case PROTOBUF_C_TYPE_MESSAGE:
                    same = s_equal (*(ProtobufCMessage *const *) ma,
                                    *(ProtobufCMessage *const *) mb, f->name);
                    break;
                case PROTOBUF_C_TYPE_INT64:
                case PROTOBUF_C_TYPE_UINT64:
                case PROTOBUF_C_TYPE_DOUBLE: same = memcmp (ma, mb, 8) == 0; break;
                default: same = memcmp (ma, mb, 4) == 0; break;
            }
        if (!same) {
            fprintf (stderr, "%s:%d: field %s.%s differs\n", __FILE__, __LINE__, path, f->name);
            return false;
        }
    }
    return true;
}

static void
s_test_setters (void)
{
    sb_event_t *e = sb_event_new ();
    CHECK (e);
    //  A new event is empty: strings point at the shared empty default.
    CHECK (e->text == protobuf_c_empty_string);
    CHECK (e->location == NULL && e->n_media == 0);
    CHECK (sb_event_set (&e->text, "one") == 0);
    CHECK_STR (e->text, "one");
    CHECK (sb_event_set (&e->text, "two") == 0);  //  the old copy is freed
    CHECK_STR (e->text, "two");
    CHECK (sb_event_set (&e->text, e->text) == 0);  //  aliasing is fine
    CHECK_STR (e->text, "two");
    CHECK (sb_event_set (&e->text, NULL) == 0);
    CHECK (e->text == protobuf_c_empty_string);
    CHECK (sb_event_set (&e->text, "") == 0);
    CHECK (e->text == protobuf_c_empty_string);
    CHECK (sb_event_set_n (&e->text, "abcdef", 3) == 0);
    CHECK_STR (e->text, "abc");
    //  Invalid UTF-8 and NUL become U+FFFD; valid sequences are kept.
    CHECK (sb_event_set_n (&e->text, "a\0b", 3) == 0);
    CHECK_STR (e->text, "a\xEF\xBF\xBD"
                        "b");
    CHECK (sb_event_set (&e->text, "\xFF\xC3\xA9\xC0\xAF\xED\xA0\x80\xF4\x90\x80\x80\xE2\x82")
           == 0);
    CHECK_STR (e->text,
               "\xEF\xBF\xBD\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
               "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    //  (FF | C3 A9 | C0 | AF | ED A0 80 surrogate: 3 | F4 90 80 80 > U+10FFFF: 4 | E2 82 cut: 2)
    CHECK (sb_event_set_raw (e, "abc", 3) == 0);
    CHECK (sb_event_set_raw (e, "xy", 2) == 0);
    CHECK (e->raw_body.len == 2 && memcmp (e->raw_body.data, "xy", 2) == 0);
    CHECK (sb_event_set_raw (e, NULL, 0) == 0);
    CHECK (e->raw_body.len == 0 && e->raw_body.data == NULL);
    CHECK (sb_event_set_raw (e, "keep", 4) == 0);
    sb_event_destroy (&e);
    CHECK (e == NULL);
    sb_event_destroy (&e);  //  a no-op
    sb_event_destroy (NULL);
}

static void
s_test_round_trip (void)
{
    sb_event_t *e = s_full_event ();
    s_check_all_set (&e->base, "Event");
    size_t size = 0;
    uint8_t *wire = sb_event_encode (e, &size);
    CHECK (wire && size > 0);
    sb_event_t *d = sb_event_decode (wire, size);
    CHECK (d);
    if (d) {
        CHECK (s_equal (&e->base, &d->base, "Event"));
        //  A few by name, as a reader would use them.
        CHECK_STR (d->provider_id, "wamid.XYZ");
        CHECK (d->provider == SB_PROVIDER_META && d->channel == SB_CHANNEL_WHATSAPP);
        CHECK (d->n_media == 2);
        if (d->n_media == 2)
            CHECK_STR (d->media[1]->id, "m1");
        CHECK (d->location && d->location->longitude == -122.16165924072);
        CHECK (d->order && d->order->n_items == 2 && d->order->items[0]->quantity == 2);
        CHECK (d->n_contacts == 2 && d->contacts[0]->n_phones == 2);
        CHECK (d->raw_body.len == 5
               && memcmp (d->raw_body.data,
                          "a=\xFF\0"
                          "1",
                          5)
                      == 0);
        CHECK (d->speech_confidence == 0.9128386);
        //  Re-encoding the decoded event gives the same bytes.
        size_t size2 = 0;
        uint8_t *wire2 = sb_event_encode (d, &size2);
        CHECK (wire2 && size2 == size && memcmp (wire, wire2, size) == 0);
        free (wire2);
        //  The decoded event is freed by the same function.
        sb_event_destroy (&d);
    }
    free (wire);
    sb_event_destroy (&e);

    //  An empty event encodes to zero bytes and decodes back to empty.
    e = sb_event_new ();
    wire = sb_event_encode (e, &size);
    CHECK (wire && size == 0);
    d = sb_event_decode (wire, size);
    CHECK (d && s_equal (&e->base, &d->base, "Event"));
    sb_event_destroy (&d);
    d = sb_event_decode (NULL, 0);
    CHECK (d && d->seq == 0);
    sb_event_destroy (&d);
    free (wire);
    sb_event_destroy (&e);
}

static void
s_test_stamp (void)
{
    sb_event_t *e = s_full_event ();
    //  As the ingress produces it: not yet stamped.
    CHECK (sb_event_set (&e->id, NULL) == 0);
    e->seq = 0;
    size_t size = 0;
    uint8_t *wire = sb_event_encode (e, &size);
    CHECK (wire);

    size_t stamped_size = 0;
    uint8_t *stamped = sb_event_stamp (wire, size, 42, "ingress-a", "20250616T1720", &stamped_size);
    CHECK (stamped && stamped_size > size);
    CHECK (memcmp (stamped, wire, size) == 0);  //  appended, not re-encoded
    sb_event_t *d = sb_event_decode (stamped, stamped_size);
    CHECK (d);
    if (d) {
        CHECK (d->seq == 42);
        CHECK_STR (d->id, "ingress-a-20250616T1720-42");
        //  Everything else unchanged.
        d->seq = 0;
        CHECK (sb_event_set (&d->id, NULL) == 0);
        CHECK (s_equal (&e->base, &d->base, "Event"));
        sb_event_destroy (&d);
    }

    //  Stamping a stamped event again: the last stamp wins.
    size_t twice_size = 0;
    uint8_t *twice = sb_event_stamp (stamped, stamped_size, UINT64_MAX, "b", "e", &twice_size);
    d = twice ? sb_event_decode (twice, twice_size) : NULL;
    CHECK (d);
    if (d) {
        CHECK (d->seq == UINT64_MAX);
        CHECK_STR (d->id, "b-e-18446744073709551615");
        sb_event_destroy (&d);
    }
    free (twice);
    free (stamped);
    free (wire);
    sb_event_destroy (&e);

    //  An empty encoding can be stamped too (a long id needs a 2-byte length).
    char long_id[300];
    memset (long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    stamped = sb_event_stamp (NULL, 0, 1, long_id, NULL, &stamped_size);
    d = stamped ? sb_event_decode (stamped, stamped_size) : NULL;
    CHECK (d && d->seq == 1 && strlen (d->id) == 299 + 3 && strncmp (d->id + 299, "--1", 3) == 0);
    sb_event_destroy (&d);
    free (stamped);

    //  In place, in the room sb_event_encode_room left: the same bytes as
    //  sb_event_stamp, for the largest seq; a room too small is refused.
    e = s_full_event ();
    CHECK (sb_event_set (&e->id, NULL) == 0);
    e->seq = 0;
    size_t room = sb_event_stamp_room ("ingress-a", "20250616T1720");
    uint8_t *roomy = sb_event_encode_room (e, room, &size);
    wire = sb_event_encode (e, &stamped_size);
    CHECK (roomy && wire && stamped_size == size && memcmp (roomy, wire, size) == 0);
    stamped = sb_event_stamp (wire, size, UINT64_MAX, "ingress-a", "20250616T1720", &stamped_size);
    CHECK (sb_event_stamp_into (roomy, size, room - 1, UINT64_MAX, "ingress-a", "20250616T1720")
           == 0);
    size_t in_place =
        sb_event_stamp_into (roomy, size, room, UINT64_MAX, "ingress-a", "20250616T1720");
    CHECK (stamped && in_place == stamped_size && memcmp (roomy, stamped, in_place) == 0);
    free (stamped);
    free (wire);
    free (roomy);
    sb_event_destroy (&e);
}

static void
s_test_decode_garbage (void)
{
    static const struct {
        const char *bytes;
        size_t size;
    } bad[] = {
        {"\x0a\x05"
         "ab",
         4},                                                       //  string longer than the input
        {"\x18\xff\xff\xff", 4},                                   //  truncated varint
        {"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12},  //  varint over 10 bytes
        {"\x0f", 1},                                               //  wire type 7
        {"\x0a", 1},                                               //  tag without its length
        {"\x92\x01\x03\x0a\x05x", 6},  //  location (18) whose inner field overruns it
        {"\x00\x00", 2},               //  field number 0
        {"\x19\x01\x02", 3},           //  fixed64 cut short
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sb_event_t *d = sb_event_decode (bad[i].bytes, bad[i].size);
        if (d) {
            fprintf (stderr, "%s:%d: garbage #%zu decoded\n", __FILE__, __LINE__, i);
            s_failures++;
            sb_event_destroy (&d);
        }
    }

    //  Every truncation of a full encoding: NULL or a valid event, never a
    //  crash or a leak (ASan); a cut inside the trailing string is NULL.
    sb_event_t *e = s_full_event ();
    size_t size = 0;
    uint8_t *wire = sb_event_encode (e, &size);
    CHECK (wire);
    for (size_t cut = 0; cut < size; cut++) {
        sb_event_t *d = sb_event_decode (wire, cut);
        sb_event_destroy (&d);
    }
    CHECK (sb_event_decode (wire, size - 1) == NULL);

    //  Random corruption with a fixed seed.
    uint8_t *copy = malloc (size);
    CHECK (copy);
    unsigned seed = 12345;
    for (int round = 0; copy && round < 5000; round++) {
        memcpy (copy, wire, size);
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            copy[(seed >> 8) % size] = (uint8_t) (seed >> 20);
        }
        sb_event_t *d = sb_event_decode (copy, size);
        if (d) {
            char *json = sb_event_to_json (d);  //  whatever decoded can be shown
            CHECK (json);
            free (json);
        }
        sb_event_destroy (&d);
    }
    free (copy);
    free (wire);
    sb_event_destroy (&e);
}

static void
s_test_topic (void)
{
    CHECK_STR (sb_event_provider_name (SB_PROVIDER_TWILIO), "twilio");
    CHECK_STR (sb_event_provider_name (SB_PROVIDER_META), "meta");
    CHECK_STR (sb_event_provider_name (0), "unspecified");
    CHECK_STR (sb_event_provider_name (99), "unspecified");
    CHECK_STR (sb_event_channel_name (SB_CHANNEL_SMS), "sms");
    CHECK_STR (sb_event_channel_name (SB_CHANNEL_WHATSAPP), "whatsapp");
    CHECK_STR (sb_event_channel_name (SB_CHANNEL_VOICE), "voice");
    CHECK_STR (sb_event_channel_name (-1), "unspecified");
    CHECK_STR (sb_event_kind_name (SB_KIND_MESSAGE), "message");
    CHECK_STR (sb_event_kind_name (SB_KIND_STATUS), "status");
    CHECK_STR (sb_event_kind_name (SB_KIND_CALL), "call");
    CHECK_STR (sb_event_kind_name (SB_KIND_GATHER), "gather");
    CHECK_STR (sb_event_kind_name (SB_KIND_ECHO), "echo");
    CHECK_STR (sb_event_kind_name (SB_KIND_PREFERENCE), "preference");
    CHECK_STR (sb_event_kind_name (SB_KIND_TEMPLATE), "template");
    CHECK_STR (sb_event_kind_name (SB_KIND_ACCOUNT), "account");
    CHECK_STR (sb_event_kind_name (SB_KIND_OTHER), "other");
    CHECK_STR (sb_event_kind_name (0), "unspecified");

    sb_event_t *e = sb_event_new ();
    char topic[64];
    e->provider = SB_PROVIDER_TWILIO;
    e->channel = SB_CHANNEL_SMS;
    e->kind = SB_KIND_MESSAGE;
    CHECK (sb_event_topic (e, topic, sizeof topic) == (int) strlen ("sb.v1.twilio.sms.message"));
    CHECK_STR (topic, "sb.v1.twilio.sms.message");
    e->provider = SB_PROVIDER_META;
    e->channel = SB_CHANNEL_WHATSAPP;
    e->kind = SB_KIND_STATUS;
    CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
    CHECK_STR (topic, "sb.v1.meta.whatsapp.status");
    e->provider = SB_PROVIDER_TWILIO;
    e->channel = SB_CHANNEL_VOICE;
    e->kind = SB_KIND_GATHER;
    CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
    CHECK_STR (topic, "sb.v1.twilio.voice.gather");
    e->kind = SB_KIND_CALL;
    CHECK (sb_event_topic (e, topic, sizeof topic) > 0);
    CHECK_STR (topic, "sb.v1.twilio.voice.call");
    //  Exactly big enough, one byte short.
    size_t need = strlen ("sb.v1.twilio.voice.call") + 1;
    CHECK (sb_event_topic (e, topic, need) == (int) need - 1);
    CHECK (sb_event_topic (e, topic, need - 1) == -1);
    CHECK (sb_event_topic (e, topic, 0) == -1);
    sb_event_t *empty = sb_event_new ();
    CHECK (sb_event_topic (empty, topic, sizeof topic) > 0);
    CHECK_STR (topic, "sb.v1.unspecified.unspecified.unspecified");
    sb_event_destroy (&empty);
    sb_event_destroy (&e);
}

static void
s_test_json (void)
{
    sb_event_t *e = s_full_event ();
    char *text = sb_event_to_json (e);
    CHECK (text);
    CHECK (text && strchr (text, '\n') == NULL);
    json_error_t error;
    json_t *j = text ? json_loads (text, JSON_REJECT_DUPLICATES, &error) : NULL;
    CHECK (j && json_is_object (j));
    if (j) {
        CHECK_STR (json_string_value (json_object_get (j, "id")), "ing-a-ep1-7");
        CHECK (json_integer_value (json_object_get (j, "seq")) == 7);
        CHECK (json_integer_value (json_object_get (j, "received_at_ms")) == 1750000000123);
        CHECK_STR (json_string_value (json_object_get (j, "provider")), "meta");
        CHECK_STR (json_string_value (json_object_get (j, "channel")), "whatsapp");
        CHECK_STR (json_string_value (json_object_get (j, "kind")), "message");
        CHECK_STR (json_string_value (json_object_get (j, "text")), "caf\xC3\xA9 \xF0\x9F\x98\x8A");
        json_t *media = json_object_get (j, "media");
        CHECK (json_array_size (media) == 2);
        CHECK_STR (json_string_value (json_object_get (json_array_get (media, 1), "url")),
                   "https://x/1");
        CHECK (json_is_true (json_object_get (json_array_get (media, 0), "voice")));
        json_t *loc = json_object_get (j, "location");
        CHECK (json_real_value (json_object_get (loc, "latitude")) == 37.44221496582);
        CHECK_STR (json_string_value (json_object_get (json_object_get (j, "status"), "status")),
                   "failed");
        json_t *phones =
            json_object_get (json_array_get (json_object_get (j, "contacts"), 0), "phones");
        CHECK (json_array_size (phones) == 2);
        json_t *items = json_object_get (json_object_get (j, "order"), "items");
        CHECK (json_integer_value (json_object_get (json_array_get (items, 0), "quantity")) == 2);
        CHECK (json_integer_value (
                   json_object_get (json_array_get (json_object_get (j, "errors"), 1), "code"))
               == 131050);
        //  raw_body has a 0xFF byte: base64 ("a=\xFF\0" "1" -> YT3/ADE=)
        CHECK (json_object_get (j, "raw_body") == NULL);
        CHECK_STR (json_string_value (json_object_get (j, "raw_body_base64")), "YT3/ADE=");
        //  detail_json is embedded as JSON
        json_t *detail = json_object_get (j, "detail_json");
        CHECK (json_is_object (detail));
        CHECK_STR (json_string_value (json_object_get (detail, "id")), "wamid.XYZ");
        CHECK (json_array_size (json_object_get (detail, "n")) == 2);
        json_decref (j);
    }
    free (text);
    sb_event_destroy (&e);

    //  Empty fields are omitted; UTF-8 raw_body is a string; bad
    //  detail_json stays a string; a location at 0,0 keeps its numbers.
    e = sb_event_new ();
    e->provider = SB_PROVIDER_TWILIO;
    e->channel = SB_CHANNEL_SMS;
    e->kind = SB_KIND_GATHER;
    e->provider_timestamp = -5;
    CHECK (sb_event_set (&e->digits, "") == 0);
    CHECK (sb_event_set_raw (e, "Body=caf\xC3\xA9", 10) == 0);
    CHECK (sb_event_set (&e->detail_json, "{not json") == 0);
    Switchboard__V1__Location *loc = sb_event_location (e);
    CHECK (loc);
    sb_event_interactive (e);    //  present but empty: omitted
    e->speech_confidence = NAN;  //  cannot be shown: omitted
    text = sb_event_to_json (e);
    CHECK (text);
    j = text ? json_loads (text, 0, &error) : NULL;
    CHECK (j);
    if (j) {
        CHECK_STR (json_string_value (json_object_get (j, "provider")), "twilio");
        CHECK_STR (json_string_value (json_object_get (j, "channel")), "sms");
        CHECK_STR (json_string_value (json_object_get (j, "kind")), "gather");
        CHECK (json_integer_value (json_object_get (j, "provider_timestamp")) == -5);
        CHECK (json_object_get (j, "digits") == NULL);
        CHECK (json_object_get (j, "id") == NULL);
        CHECK (json_object_get (j, "seq") == NULL);
        CHECK (json_object_get (j, "media") == NULL);
        CHECK (json_object_get (j, "status") == NULL);
        CHECK (json_object_get (j, "interactive") == NULL);
        CHECK (json_object_get (j, "speech_confidence") == NULL);
        CHECK_STR (json_string_value (json_object_get (j, "raw_body")), "Body=caf\xC3\xA9");
        CHECK (json_object_get (j, "raw_body_base64") == NULL);
        CHECK_STR (json_string_value (json_object_get (j, "detail_json")), "{not json");
        json_t *jl = json_object_get (j, "location");
        CHECK (json_is_real (json_object_get (jl, "latitude")));
        CHECK (json_is_real (json_object_get (jl, "longitude")));
        CHECK (json_object_get (jl, "name") == NULL);
        json_decref (j);
    }
    free (text);

    //  An enum value from a newer schema is shown as its number; a string
    //  with invalid UTF-8 (from a foreign encoder) is shown with U+FFFD.
    e->kind = 77;
    free (e->text == protobuf_c_empty_string ? NULL : e->text);
    e->text = strdup ("a\xFF");
    text = sb_event_to_json (e);
    j = text ? json_loads (text, 0, &error) : NULL;
    CHECK (j);
    CHECK (json_integer_value (json_object_get (j, "kind")) == 77);
    CHECK_STR (json_string_value (json_object_get (j, "text")), "a\xEF\xBF\xBD");
    json_decref (j);
    free (text);
    sb_event_destroy (&e);
}

//  One request, one body: sb_event_share_raw, the fields' numbers, and
//  finding the body from any event of the request.
static void
s_test_share_raw (void)
{
    //  SHA-256 ("abc"), FIPS 180-2 appendix B.1.
    static const uint8_t abc_sha[SB_EVENT_SHA256_SIZE] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    uint8_t sha[SB_EVENT_SHA256_SIZE];
    sb_event_sha256 ("abc", 3, sha);
    CHECK (memcmp (sha, abc_sha, sizeof sha) == 0);

    //  A request of three events and a 64 KiB body.
    enum { N = 3, BODY = 64 * 1024 };
    char *body = malloc (BODY);
    CHECK (body);
    if (!body)
        return;
    memset (body, 'x', BODY);
    memcpy (body, "abc", 3);
    sb_event_t *events[N];
    for (size_t i = 0; i < N; i++) {
        events[i] = sb_event_new ();
        CHECK (events[i] && sb_event_set (&events[i]->provider_id, "wamid.S") == 0);
        events[i]->kind = SB_KIND_STATUS;
    }
    //  A body the normalizer left would be replaced, not leaked (ASan).
    CHECK (sb_event_set_raw (events[1], "old", 3) == 0);
    uint8_t body_sha[SB_EVENT_SHA256_SIZE];
    sb_event_share_raw (events, N, body, BODY, body_sha);
    sb_event_sha256 (body, BODY, sha);
    CHECK (memcmp (body_sha, sha, sizeof sha) == 0);
    //  The body is lent to the first event only; every event has the hash.
    CHECK (events[0]->raw_body.data == (uint8_t *) body && events[0]->raw_body.len == BODY);
    uint8_t *wire[N];
    size_t size[N];
    for (size_t i = 0; i < N; i++) {
        CHECK (events[i]->request_events == N && events[i]->request_index == i);
        CHECK (events[i]->raw_body_sha256.data == body_sha
               && events[i]->raw_body_sha256.len == SB_EVENT_SHA256_SIZE);
        if (i > 0)
            CHECK (events[i]->raw_body.len == 0 && events[i]->raw_body.data == NULL);
        size_t plain = 0;
        uint8_t *encoded = sb_event_encode (events[i], &plain);
        CHECK (encoded);
        //  Journaled with consecutive seqs from 41, as the writer does.
        wire[i] = sb_event_stamp (encoded, plain, 41 + i, "in-1", "e0", &size[i]);
        free (encoded);
        CHECK (wire[i]);
        //  The body costs the request once: the others are a few bytes.
        CHECK (i == 0 ? size[i] > BODY : size[i] < 128);
    }
    sb_event_unshare_raw (events, N);
    for (size_t i = 0; i < N; i++) {
        CHECK (events[i]->raw_body.data == NULL && events[i]->raw_body_sha256.data == NULL);
        sb_event_destroy (&events[i]);  //  frees none of the loans (ASan)
    }
    //  A subscriber, from any event, finds the one carrying the body.
    for (size_t i = 0; i < N; i++) {
        sb_event_t *d = wire[i] ? sb_event_decode (wire[i], size[i]) : NULL;
        CHECK (d);
        if (d) {
            CHECK (d->seq == 41 + i && sb_event_raw_seq (d) == 41);
            CHECK (d->request_events == N && d->request_index == i);
            CHECK (d->raw_body_sha256.len == SB_EVENT_SHA256_SIZE
                   && memcmp (d->raw_body_sha256.data, sha, sizeof sha) == 0);
            CHECK (i == 0 ? d->raw_body.len == BODY && memcmp (d->raw_body.data, body, BODY) == 0
                          : d->raw_body.len == 0);
            char *json = sb_event_to_json (d);
            CHECK (json && strstr (json, "\"raw_body_sha256\":\"")
                   && strstr (json, "\"request_events\":3"));
            free (json);
        }
        sb_event_destroy (&d);
        free (wire[i]);
    }

    //  One event: it carries its body; no hash is needed, none computed.
    sb_event_t *one = sb_event_new ();
    CHECK (one);
    memset (body_sha, 0, sizeof body_sha);
    sb_event_share_raw (&one, 1, "Body=hi", 7, body_sha);
    CHECK (one->raw_body.len == 7 && one->raw_body_sha256.len == 0);
    CHECK (one->request_events == 1 && one->request_index == 0);
    one->seq = 9;
    CHECK (sb_event_raw_seq (one) == 9);
    sb_event_unshare_raw (&one, 1);
    sb_event_destroy (&one);
    free (body);

    //  The new fields' numbers are 45, 46 and 47, nothing renumbered:
    //  request_events 2 (tag 45 varint: E8 02), request_index 1 (F0 02),
    //  raw_body_sha256 "h" (tag 47 bytes: FA 02), raw_body "B" (40: C2 02).
    sb_event_t *e = sb_event_new ();
    CHECK (e);
    e->request_events = 2;
    e->request_index = 1;
    e->raw_body_sha256 = (ProtobufCBinaryData){1, (uint8_t *) "h"};
    e->raw_body = (ProtobufCBinaryData){1, (uint8_t *) "B"};
    size_t n = 0;
    uint8_t *bytes = sb_event_encode (e, &n);
    static const uint8_t want[] = {0xC2, 0x02, 0x01, 'B',  0xE8, 0x02, 0x02,
                                   0xF0, 0x02, 0x01, 0xFA, 0x02, 0x01, 'h'};
    CHECK (bytes && n == sizeof want && memcmp (bytes, want, n) == 0);
    free (bytes);
    e->raw_body = e->raw_body_sha256 = (ProtobufCBinaryData){0, NULL};
    sb_event_destroy (&e);

    //  An event journaled before these fields (raw_body on every event of
    //  its request; seq 5, raw_body "hi") decodes, and carries its body.
    static const uint8_t old[] = {0x18, 0x05, 0xC2, 0x02, 0x02, 'h', 'i'};
    sb_event_t *d = sb_event_decode (old, sizeof old);
    CHECK (d);
    if (d) {
        CHECK (d->seq == 5 && d->raw_body.len == 2 && memcmp (d->raw_body.data, "hi", 2) == 0);
        CHECK (d->request_events == 0 && d->request_index == 0 && d->raw_body_sha256.len == 0);
        CHECK (sb_event_raw_seq (d) == 5);
        //  A malformed reference (index not below seq) points nowhere.
        sb_event_set_raw (d, NULL, 0);
        d->request_index = 5;
        CHECK (sb_event_raw_seq (d) == 0);
        d->request_index = 4;
        CHECK (sb_event_raw_seq (d) == 1);
    }
    sb_event_destroy (&d);
}

int
main (void)
{
    s_test_setters ();
    s_test_round_trip ();
    s_test_stamp ();
    s_test_share_raw ();
    s_test_decode_garbage ();
    s_test_topic ();
    s_test_json ();
    if (s_failures) {
        fprintf (stderr, "test_sb_event: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
