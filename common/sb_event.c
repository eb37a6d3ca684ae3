/*  sb_event: the Event message, built, encoded, decoded, stamped, named and
    shown as JSON.

    The event is protobuf-c's generated struct. Every string, sub-message
    and array the helpers attach comes from sb_scratch_alloc (malloc, unless
    the thread has a scratch open: the ingress builds a request's events in
    its scratch), so sb_event_destroy hands the whole tree to
    protobuf_c_message_free_unpacked with sb_scratch_free as the allocator's
    free, which also frees what sb_event_decode malloc'd. That function
    skips a string equal to its field's default, which for proto3 strings is
    protobuf_c_empty_string: an empty field points there and is never
    freed; anything else is. Repeated strings and sub-messages are always
    freed, bytes are freed when data is not NULL. Encodings (sb_event_encode,
    sb_event_stamp) are plain malloc: they outlive any request.

    Strings: proto3 requires string fields to be valid UTF-8 (the Python and
    Go decoders refuse anything else), and a C string cannot hold a NUL. So
    sb_event_set copies the value with every invalid UTF-8 sequence, and
    every NUL, replaced by U+FFFD. The request as received stays verbatim
    in raw_body (bytes).

    One body per request: sb_event_share_raw gives the raw body to a
    request's first event only, and numbers the events (request_events,
    request_index) with the body's SHA-256 on each, so that a Meta POST of
    n events journals, publishes and stores its body once, not n times
    (event.proto says how a consumer finds it; sb_event_raw_seq does).
    Like the ingress's old per-event loan, the body and hash are lent, never
    copied, and sb_event_unshare_raw takes them back.

    Stamping: protobuf merges concatenated encodings, the last value of a
    scalar field winning, so the journal appends "seq" and "id" to an
    already encoded event instead of decoding and re-encoding it.

    JSON: sb_event_to_json walks the message descriptors, so a field added
    to event.proto shows up without touching this file. Fields at their
    default (empty string, 0, false, unset message, empty list) are left
    out, except latitude/longitude of a present Location (0 is a place).
    Enum values are shown by name, lower-case, without their prefix
    (PROVIDER_TWILIO -> "twilio"). A bytes field is a string when it is
    valid UTF-8, else base64 under "<name>_base64"; raw_body_sha256 is
    lower-case hex. detail_json is embedded as JSON when it parses, else
    kept as a string.
*/
#include "sb_event.h"
#include "sb_json.h"
#include "sb_scratch.h"
#include "sb_text.h"
#include "sb_utf8.h"

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "sb_log.h"

//  ---------------------------------------------------------------------
//  UTF-8

//  A NUL-terminated copy of size bytes, invalid UTF-8 and NUL bytes each
//  replaced by U+FFFD. NULL when out of memory.
static char *
s_utf8_copy (const char *value, size_t size)
{
    const unsigned char *in = (const unsigned char *) value;
    size_t bad = 0;
    for (size_t i = 0; i < size;) {
        size_t len = sb_utf8_seq (in + i, size - i);
        if (len == 0) {
            bad++;
            i++;
        }
        else
            i += len;
    }
    if (size > SIZE_MAX - 1 - 2 * bad)
        return NULL;
    char *copy = sb_scratch_alloc (size + 2 * bad + 1);
    if (!copy)
        return NULL;
    if (bad == 0)
        memcpy (copy, value, size);
    char *out = copy;
    for (size_t i = 0; bad && i < size;) {
        size_t len = sb_utf8_seq (in + i, size - i);
        if (len == 0) {
            memcpy (out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        }
        else {
            memcpy (out, in + i, len);
            out += len;
            i += len;
        }
    }
    copy[size + 2 * bad] = '\0';
    return copy;
}

//  ---------------------------------------------------------------------
//  Building

sb_event_t *
sb_event_new (void)
{
    sb_event_t *self = sb_scratch_alloc (sizeof *self);
    if (self)
        switchboard__v1__event__init (self);
    return self;
}

static void *
s_pb_alloc (void *data, size_t size)
{
    (void) data;
    return sb_scratch_alloc (size);
}

static void
s_pb_free (void *data, void *pointer)
{
    (void) data;
    sb_scratch_free (pointer);
}

void
sb_event_destroy (sb_event_t **self_p)
{
    if (self_p && *self_p) {
        //  The helpers' scratch-or-malloc, for every piece of the tree.
        ProtobufCAllocator allocator = {s_pb_alloc, s_pb_free, NULL};
        protobuf_c_message_free_unpacked (&(*self_p)->base, &allocator);
        *self_p = NULL;
    }
}

//  Free a string field's value unless it is the shared empty default.
static void
s_string_free (char *string)
{
    if (string && string != protobuf_c_empty_string)
        sb_scratch_free (string);
}

int
sb_event_set_n (char **field, const char *value, size_t size)
{
    char *copy = (char *) protobuf_c_empty_string;
    if (value && size > 0) {
        copy = s_utf8_copy (value, size);
        if (!copy)
            return -1;
    }
    s_string_free (*field);
    *field = copy;
    return 0;
}

int
sb_event_set (char **field, const char *value)
{
    return sb_event_set_n (field, value, value ? strlen (value) : 0);
}

int
sb_event_set_raw (sb_event_t *self, const void *body, size_t size)
{
    uint8_t *copy = NULL;
    if (body && size > 0 && !(copy = sb_scratch_memdup (body, size)))
        return -1;
    sb_scratch_free (self->raw_body.data);
    self->raw_body.data = copy;
    self->raw_body.len = copy ? size : 0;
    return 0;
}

void
sb_event_sha256 (const void *data, size_t size, uint8_t out[SB_EVENT_SHA256_SIZE])
{
    SHA256 (size ? data : (const void *) "", size, out);
}

void
sb_event_share_raw (sb_event_t *const *events, size_t count, const void *body, size_t size,
                    uint8_t sha256[SB_EVENT_SHA256_SIZE])
{
    if (count > 1)
        sb_event_sha256 (body, size, sha256);
    for (size_t i = 0; i < count; i++) {
        sb_event_t *e = events[i];
        sb_scratch_free (e->raw_body.data);
        sb_scratch_free (e->raw_body_sha256.data);
        e->raw_body = (ProtobufCBinaryData){0, NULL};
        if (i == 0 && body && size)
            e->raw_body = (ProtobufCBinaryData){size, (uint8_t *) body};
        e->raw_body_sha256 = (ProtobufCBinaryData){0, NULL};
        if (count > 1)
            e->raw_body_sha256 = (ProtobufCBinaryData){SB_EVENT_SHA256_SIZE, sha256};
        e->request_events = count > UINT32_MAX ? UINT32_MAX : (uint32_t) count;
        e->request_index = i > UINT32_MAX ? UINT32_MAX : (uint32_t) i;
    }
}

void
sb_event_unshare_raw (sb_event_t *const *events, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        events[i]->raw_body = (ProtobufCBinaryData){0, NULL};
        events[i]->raw_body_sha256 = (ProtobufCBinaryData){0, NULL};
    }
}

uint64_t
sb_event_raw_seq (const sb_event_t *self)
{
    if (self->raw_body.len > 0 || self->request_index == 0)
        return self->seq;
    if (self->request_index >= self->seq)
        return 0;
    return self->seq - self->request_index;
}

//  Sub-messages: each getter allocates and initializes on first use.
#define S_SUBMESSAGE(name, type, init)                                                             \
    type *sb_event_##name (sb_event_t *self)                                                       \
    {                                                                                              \
        if (!self->name) {                                                                         \
            self->name = sb_scratch_alloc (sizeof (type));                                         \
            if (self->name)                                                                        \
                init (self->name);                                                                 \
        }                                                                                          \
        return self->name;                                                                         \
    }

S_SUBMESSAGE (location, Switchboard__V1__Location, switchboard__v1__location__init)
S_SUBMESSAGE (interactive, Switchboard__V1__Interactive, switchboard__v1__interactive__init)
S_SUBMESSAGE (status, Switchboard__V1__Status, switchboard__v1__status__init)
S_SUBMESSAGE (reaction, Switchboard__V1__Reaction, switchboard__v1__reaction__init)
S_SUBMESSAGE (order, Switchboard__V1__Order, switchboard__v1__order__init)
S_SUBMESSAGE (system, Switchboard__V1__System, switchboard__v1__system__init)
S_SUBMESSAGE (referral, Switchboard__V1__MetaFieldsReferral,
              switchboard__v1__meta_fields_referral__init)
S_SUBMESSAGE (pricing, Switchboard__V1__MetaFieldsPricing,
              switchboard__v1__meta_fields_pricing__init)
S_SUBMESSAGE (meta_call, Switchboard__V1__MetaFieldsCall, switchboard__v1__meta_fields_call__init)
S_SUBMESSAGE (meta_template, Switchboard__V1__MetaFieldsTemplate,
              switchboard__v1__meta_fields_template__init)
S_SUBMESSAGE (meta_account, Switchboard__V1__MetaFieldsAccount,
              switchboard__v1__meta_fields_account__init)
S_SUBMESSAGE (preference, Switchboard__V1__MetaFieldsPreference,
              switchboard__v1__meta_fields_preference__init)

//  The pointer array grown to hold count + 1 pointers (realloc: the old
//  array is gone on success, kept on failure). NULL when out of memory.
static void *
s_grow (void *array, size_t count)
{
    if (count >= SIZE_MAX / sizeof (void *) - 1)
        return NULL;
    return sb_scratch_realloc (array, (count + 1) * sizeof (void *));
}

//  Repeated sub-messages: allocate, initialize and append one element.
#define S_ADD(name, field, type, init)                                                             \
    type *sb_event_add_##name (sb_event_t *self)                                                   \
    {                                                                                              \
        type *item = sb_scratch_alloc (sizeof (type));                                             \
        type **grown = item ? s_grow (self->field, self->n_##field) : NULL;                        \
        if (!grown) {                                                                              \
            sb_scratch_free (item);                                                                \
            return NULL;                                                                           \
        }                                                                                          \
        init (item);                                                                               \
        grown[self->n_##field++] = item;                                                           \
        self->field = grown;                                                                       \
        return item;                                                                               \
    }

S_ADD (media, media, sb_event_media_t, switchboard__v1__media__init)
S_ADD (contact, contacts, sb_event_contact_t, switchboard__v1__contact_card__init)
S_ADD (error, errors, sb_event_error_t, switchboard__v1__error__init)

sb_event_order_item_t *
sb_event_add_order_item (sb_event_t *self)
{
    Switchboard__V1__Order *order = sb_event_order (self);
    if (!order)
        return NULL;
    sb_event_order_item_t *item = sb_scratch_alloc (sizeof *item);
    sb_event_order_item_t **grown = item ? s_grow (order->items, order->n_items) : NULL;
    if (!grown) {
        sb_scratch_free (item);
        return NULL;
    }
    switchboard__v1__order_item__init (item);
    grown[order->n_items++] = item;
    order->items = grown;
    return item;
}

int
sb_event_add_string (char ***array, size_t *count, const char *value)
{
    char *copy = s_utf8_copy (value ? value : "", value ? strlen (value) : 0);
    char **grown = copy ? s_grow (*array, *count) : NULL;
    if (!grown) {
        sb_scratch_free (copy);
        return -1;
    }
    grown[(*count)++] = copy;
    *array = grown;
    return 0;
}

//  ---------------------------------------------------------------------
//  Wire format

uint8_t *
sb_event_encode (const sb_event_t *self, size_t *size)
{
    return sb_event_encode_room (self, 0, size);
}

uint8_t *
sb_event_encode_room (const sb_event_t *self, size_t room, size_t *size)
{
    size_t packed = switchboard__v1__event__get_packed_size (self);
    if (packed > SIZE_MAX - room - 1)
        return NULL;
    uint8_t *data = malloc (packed + room ? packed + room : 1);
    if (!data)
        return NULL;
    *size = switchboard__v1__event__pack (self, data);
    return data;
}

//  True when a message or one of its sub-messages kept an unknown field
//  numbered 0. Field 0 is invalid; protobuf-c refuses it only in a one-byte
//  tag, keeps it from a longer one, and then encodes a tag nothing decodes.
static bool
s_has_field_zero (const ProtobufCMessage *message, int depth)
{
    if (!message || depth > 16)
        return false;
    for (size_t i = 0; i < message->n_unknown_fields; i++)
        if (message->unknown_fields[i].tag == 0)
            return true;
    const ProtobufCMessageDescriptor *desc = message->descriptor;
    for (unsigned f = 0; f < desc->n_fields; f++) {
        const ProtobufCFieldDescriptor *field = &desc->fields[f];
        if (field->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *) message;
        if (field->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t count = *(const size_t *) (base + field->quantifier_offset);
            ProtobufCMessage *const *items =
                *(ProtobufCMessage *const *const *) (base + field->offset);
            for (size_t k = 0; k < count; k++)
                if (s_has_field_zero (items[k], depth + 1))
                    return true;
        }
        else if (s_has_field_zero (*(ProtobufCMessage *const *) (base + field->offset), depth + 1))
            return true;
    }
    return false;
}

sb_event_t *
sb_event_decode (const void *data, size_t size)
{
    static const uint8_t empty[1] = {0};
    if (!data)
        size = 0;
    sb_event_t *event = switchboard__v1__event__unpack (NULL, size, size ? data : empty);
    if (event && s_has_field_zero (&event->base, 0))
        sb_event_destroy (&event);
    return event;
}

//  Append value as a base-128 varint at out; returns the bytes written.
static size_t
s_varint (uint8_t *out, uint64_t value)
{
    size_t n = 0;
    while (value >= 0x80) {
        out[n++] = (uint8_t) (value | 0x80);
        value >>= 7;
    }
    out[n++] = (uint8_t) value;
    return n;
}

//  The stamp's size for an id of id_len bytes, at worst: tag 3 + varint,
//  tag 1 + length varint + id, and a byte for snprintf's NUL.
static size_t
s_stamp_room (size_t id_len)
{
    return 1 + 10 + 1 + 10 + id_len + 1;
}

size_t
sb_event_stamp_room (const char *ingress_id, const char *epoch)
{
    //  "<ingress_id>-<epoch>-<seq>", seq at most 20 digits
    return s_stamp_room (strlen (ingress_id ? ingress_id : "") + 1 + strlen (epoch ? epoch : "") + 1
                         + 20);
}

size_t
sb_event_stamp_into (uint8_t *data, size_t size, size_t room, uint64_t seq, const char *ingress_id,
                     const char *epoch)
{
    if (!ingress_id)
        ingress_id = "";
    if (!epoch)
        epoch = "";
    int id_len = snprintf (NULL, 0, "%s-%s-%" PRIu64, ingress_id, epoch, seq);
    if (id_len < 0 || room < s_stamp_room ((size_t) id_len))
        return 0;
    size_t at = size;
    data[at++] = (3 << 3) | 0;  //  field 3 seq, varint
    at += s_varint (data + at, seq);
    data[at++] = (1 << 3) | 2;  //  field 1 id, length-delimited
    at += s_varint (data + at, (uint64_t) id_len);
    //  snprintf's NUL lands in the last byte of the room
    snprintf ((char *) data + at, (size_t) id_len + 1, "%s-%s-%" PRIu64, ingress_id, epoch, seq);
    at += (size_t) id_len;
    return at;
}

uint8_t *
sb_event_stamp (const uint8_t *data, size_t size, uint64_t seq, const char *ingress_id,
                const char *epoch, size_t *out_size)
{
    size_t room = sb_event_stamp_room (ingress_id, epoch);
    if (size > SIZE_MAX - room)
        return NULL;
    uint8_t *out = malloc (size + room);
    if (!out)
        return NULL;
    if (size)
        memcpy (out, data, size);
    *out_size = sb_event_stamp_into (out, size, room, seq, ingress_id, epoch);
    if (*out_size == 0) {
        free (out);
        return NULL;
    }
    return out;
}

//  ---------------------------------------------------------------------
//  Names and topic

const char *
sb_event_provider_name (int provider)
{
    switch (provider) {
        case SB_PROVIDER_TWILIO: return "twilio";
        case SB_PROVIDER_META: return "meta";
        default: return "unspecified";
    }
}

const char *
sb_event_channel_name (int channel)
{
    switch (channel) {
        case SB_CHANNEL_SMS: return "sms";
        case SB_CHANNEL_WHATSAPP: return "whatsapp";
        case SB_CHANNEL_VOICE: return "voice";
        case SB_CHANNEL_RCS: return "rcs";
        default: return "unspecified";
    }
}

const char *
sb_event_kind_name (int kind)
{
    switch (kind) {
        case SB_KIND_MESSAGE: return "message";
        case SB_KIND_STATUS: return "status";
        case SB_KIND_CALL: return "call";
        case SB_KIND_GATHER: return "gather";
        case SB_KIND_ECHO: return "echo";
        case SB_KIND_PREFERENCE: return "preference";
        case SB_KIND_TEMPLATE: return "template";
        case SB_KIND_ACCOUNT: return "account";
        case SB_KIND_OTHER: return "other";
        default: return "unspecified";
    }
}

int
sb_event_topic (const sb_event_t *self, char *buf, size_t size)
{
    int len = snprintf (buf, size, "sb.v1.%s.%s.%s", sb_event_provider_name (self->provider),
                        sb_event_channel_name (self->channel), sb_event_kind_name (self->kind));
    if (len < 0 || (size_t) len >= size)
        return -1;
    return len;
}

//  ---------------------------------------------------------------------
//  JSON

//  Standard base64 with padding. Caller owns the return value.
static char *
s_base64 (const uint8_t *data, size_t size)
{
    if (size > INT_MAX / 4 * 3 - 3)
        return NULL;
    char *out = malloc (SB_TEXT_BASE64_SIZE (size));
    if (out)
        sb_text_base64 (data, size, out);
    return out;
}

//  A JSON string of a C string from the event; invalid UTF-8 (possible in
//  a decoded event from elsewhere) is shown with U+FFFD.
static json_t *
s_json_string (const char *value)
{
    json_t *json = json_string (value);
    if (!json) {
        char *clean = s_utf8_copy (value, strlen (value));
        if (clean)
            json = json_string (clean);
        sb_scratch_free (clean);
    }
    return json;
}

//  The JSON name of an enum value: what follows the first '_', lower-case.
//  NULL when the value has no name (a newer producer's value).
static json_t *
s_json_enum (const ProtobufCEnumDescriptor *desc, int value)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value (desc, value);
    if (!ev)
        return json_integer (value);
    const char *name = strchr (ev->name, '_');
    name = name ? name + 1 : ev->name;
    char lower[64];
    size_t n = 0;
    for (; name[n] && n < sizeof lower - 1; n++)
        lower[n] = (char) ((name[n] >= 'A' && name[n] <= 'Z') ? name[n] - 'A' + 'a' : name[n]);
    lower[n] = '\0';
    return json_string (lower);
}

static json_t *s_json_message (const ProtobufCMessage *msg);

//  One value of field f stored at member. Sets *is_default when the value
//  is its type's default (and the caller may leave it out). NULL when the
//  value cannot be shown (non-finite double, out of memory).
static json_t *
s_json_value (const ProtobufCFieldDescriptor *f, const void *member, bool *is_default)
{
    *is_default = false;
    switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32: {
            int32_t v = *(const int32_t *) member;
            *is_default = v == 0;
            return json_integer (v);
        }
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32: {
            uint32_t v = *(const uint32_t *) member;
            *is_default = v == 0;
            return json_integer (v);
        }
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64: {
            int64_t v = *(const int64_t *) member;
            *is_default = v == 0;
            return json_integer (v);
        }
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: {
            uint64_t v = *(const uint64_t *) member;
            *is_default = v == 0;
            if (v <= (uint64_t) INT64_MAX)
                return json_integer ((json_int_t) v);
            char digits[24];
            snprintf (digits, sizeof digits, "%" PRIu64, v);
            return json_string (digits);
        }
        case PROTOBUF_C_TYPE_FLOAT: {
            float v = *(const float *) member;
            *is_default = v == 0;
            return json_real (v);
        }
        case PROTOBUF_C_TYPE_DOUBLE: {
            double v = *(const double *) member;
            *is_default = v == 0;
            return json_real (v);
        }
        case PROTOBUF_C_TYPE_BOOL: {
            protobuf_c_boolean v = *(const protobuf_c_boolean *) member;
            *is_default = !v;
            return json_boolean (v);
        }
        case PROTOBUF_C_TYPE_ENUM: {
            int v = *(const int *) member;
            *is_default = v == 0;
            return s_json_enum (f->descriptor, v);
        }
        case PROTOBUF_C_TYPE_STRING: {
            const char *v = *(char *const *) member;
            *is_default = !v || !*v;
            return s_json_string (v ? v : "");
        }
        case PROTOBUF_C_TYPE_BYTES: {
            const ProtobufCBinaryData *v = member;
            *is_default = v->len == 0;
            //  A string when valid UTF-8 (jansson checks), the caller falls
            //  back to base64 on NULL.
            return v->len ? json_stringn ((const char *) v->data, v->len) : json_string ("");
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
            const ProtobufCMessage *v = *(ProtobufCMessage *const *) member;
            *is_default = v == NULL;
            return v ? s_json_message (v) : json_object ();
        }
        default: return NULL;
    }
}

//  Byte size of one element of a repeated field of type t.
static size_t
s_element_size (ProtobufCType t)
{
    switch (t) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_ENUM: return 4;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_DOUBLE: return 8;
        case PROTOBUF_C_TYPE_BOOL: return sizeof (protobuf_c_boolean);
        case PROTOBUF_C_TYPE_STRING: return sizeof (char *);
        case PROTOBUF_C_TYPE_BYTES: return sizeof (ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_MESSAGE: return sizeof (ProtobufCMessage *);
        default: return 0;
    }
}

//  Add field f of msg to object, following the rules in the note at the top.
//  0, or -1 when out of memory.
static int
s_json_field (json_t *object, const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *) msg;
    const void *member = base + f->offset;
    bool is_default;

    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(const size_t *) (base + f->quantifier_offset);
        const char *items = *(const char *const *) member;
        size_t element = s_element_size (f->type);
        if (n == 0 || !items || element == 0)
            return 0;
        json_t *array = json_array ();
        if (!array)
            return -1;
        for (size_t i = 0; i < n; i++) {
            json_t *item = s_json_value (f, items + i * element, &is_default);
            if (item && json_array_append_new (array, item)) {
                json_decref (array);
                return -1;
            }
        }
        return json_object_set_new (object, f->name, array);
    }

    json_t *value = s_json_value (f, member, &is_default);
    bool keep_zero = f->type == PROTOBUF_C_TYPE_DOUBLE
                     && msg->descriptor == &switchboard__v1__location__descriptor;
    if (is_default && !keep_zero) {
        json_decref (value);
        return 0;
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && value && json_object_size (value) == 0) {
        json_decref (value);
        return 0;
    }
    if (f->type == PROTOBUF_C_TYPE_BYTES && strcmp (f->name, "raw_body_sha256") == 0) {
        const ProtobufCBinaryData *bytes = member;
        char hex[2 * SB_EVENT_SHA256_SIZE + 1];
        size_t n = bytes->len < SB_EVENT_SHA256_SIZE ? bytes->len : SB_EVENT_SHA256_SIZE;
        sb_text_hex (bytes->data, n, hex);
        json_decref (value);
        return json_object_set_new (object, f->name, json_string (hex));
    }
    if (f->type == PROTOBUF_C_TYPE_BYTES && !value) {
        const ProtobufCBinaryData *bytes = member;
        char *encoded = s_base64 (bytes->data, bytes->len);
        if (!encoded)
            return -1;
        char key[128];
        snprintf (key, sizeof key, "%s_base64", f->name);
        int rc = json_object_set_new (object, key, json_string (encoded));
        free (encoded);
        return rc;
    }
    if (!value)
        return f->type == PROTOBUF_C_TYPE_DOUBLE || f->type == PROTOBUF_C_TYPE_FLOAT ? 0 : -1;
    if (f->type == PROTOBUF_C_TYPE_STRING && strcmp (f->name, "detail_json") == 0) {
        const char *text = *(char *const *) member;
        json_t *parsed = sb_json_load (text, strlen (text), SB_JSON_MAX_DEPTH, NULL);
        if (parsed) {
            json_decref (value);
            value = parsed;
        }
    }
    return json_object_set_new (object, f->name, value);
}

static json_t *
s_json_message (const ProtobufCMessage *msg)
{
    json_t *object = json_object ();
    if (!object)
        return NULL;
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    for (unsigned i = 0; i < desc->n_fields; i++)
        if (s_json_field (object, msg, &desc->fields[i])) {
            json_decref (object);
            return NULL;
        }
    return object;
}

char *
sb_event_to_json (const sb_event_t *self)
{
    json_t *object = s_json_message (&self->base);
    if (!object) {
        sb_error ("event", "cannot build JSON of event: out of memory");
        return NULL;
    }
    char *dumped = json_dumps (object, JSON_COMPACT);
    json_decref (object);
    //  The caller frees with free(): jansson's memory may be a scratch's
    //  (sb_json_use_scratch).
    char *text = dumped ? strdup (dumped) : NULL;
    sb_json_free (dumped);
    if (!text)
        sb_error ("event", "cannot serialize event as JSON: out of memory");
    return text;
}
