/*  sb_fakeprov: ids, segment counts, dates and status webhooks shared by
    `switchboard send` and the provider sandbox (see sb_fakeprov.h).

    Why common/: both the CLI and the sandbox binary link it, and STYLE
    promotes a module to common/ when its second user arrives. It uses
    only what common/ already links (jansson, OpenSSL, sb_form).

    The SMS segment counter walks the text once, decoding UTF-8 by hand
    (malformed bytes count as one UCS-2 unit), and packs segments greedily
    so that a two-septet GSM escape or a UTF-16 surrogate pair is never
    split, as handsets and Twilio do.
*/
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_bsuid.h"
#include "sb_fakeprov.h"
#include "sb_text.h"
#include "sb_time.h"

void
sb_fakeprov_random (void *buf, size_t size)
{
    if (size && RAND_bytes (buf, (int) size) != 1) {
        fprintf (stderr, "sb_fakeprov: no random bytes from OpenSSL\n");
        abort ();
    }
}

void
sb_fakeprov_hex_id (char *out, size_t size, const char *prefix, size_t hex_digits, bool upper)
{
    const char *hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    unsigned char raw[64];
    size_t len = strlen (prefix);
    if (size == 0)
        return;
    if (len >= size)
        len = size - 1;
    if (hex_digits > sizeof raw * 2)
        hex_digits = sizeof raw * 2;
    if (len + hex_digits + 1 > size)
        hex_digits = size - len - 1;
    sb_fakeprov_random (raw, (hex_digits + 1) / 2);
    memmove (out, prefix, len);
    for (size_t i = 0; i < hex_digits; i++)
        out[len + i] = hex[(raw[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    out[len + hex_digits] = 0;
}

void
sb_fakeprov_digits (char *out, size_t digits)
{
    unsigned char raw[32];
    if (digits > sizeof raw)
        digits = sizeof raw;
    sb_fakeprov_random (raw, digits);
    for (size_t i = 0; i < digits; i++)
        out[i] = (char) ('0' + raw[i] % 10);
    if (digits > 0 && out[0] == '0')
        out[0] = '1';
    out[digits] = 0;
}

void
sb_fakeprov_wamid (char *out, size_t size, const char *user_digits, sb_fakeprov_dir_t dir)
{
    //  Meta's record: 0x1C 0x18 <len> <number> 0x15 0x02 0x00, then 0x12
    //  0x18 0x14 and 20 hex digits for a message received, 0x11 0x18 0x12
    //  and 18 for one sent, then a NUL.
    bool inbound = dir == SB_FAKEPROV_INBOUND;
    size_t id_digits = inbound ? 20 : 18;
    unsigned char raw[64];
    size_t n = 0, len = strlen (user_digits);
    if (len > 20)
        len = 20;
    raw[n++] = 0x1C;
    raw[n++] = 0x18;
    raw[n++] = (unsigned char) len;
    memcpy (raw + n, user_digits, len);
    n += len;
    raw[n++] = 0x15;
    raw[n++] = 0x02;
    raw[n++] = 0x00;
    raw[n++] = inbound ? 0x12 : 0x11;
    raw[n++] = 0x18;
    raw[n++] = (unsigned char) id_digits;
    char hex[24];
    sb_fakeprov_hex_id (hex, sizeof hex, "", id_digits, true);
    memcpy (raw + n, hex, id_digits);
    n += id_digits;
    raw[n++] = 0x00;
    char b64[SB_TEXT_BASE64_SIZE (sizeof raw)];
    sb_text_base64 (raw, n, b64);
    snprintf (out, size, "wamid.%s", b64);
}

//  --------------------------------------------------------------------------
//  SMS segments

//  Septets of code point cp in GSM-7: 1 in the basic table, 2 in the
//  extension table (escape + character), 0 when GSM-7 cannot carry it.
static int
s_gsm_septets (uint32_t cp)
{
    //  The basic table's characters outside printable ASCII.
    static const uint16_t basic[] = {
        '\n',   '\r',   0x00A1, 0x00A3, 0x00A4, 0x00A5, 0x00A7, 0x00BF, 0x00C4, 0x00C5, 0x00C6,
        0x00C7, 0x00C9, 0x00D1, 0x00D6, 0x00D8, 0x00DC, 0x00DF, 0x00E0, 0x00E4, 0x00E5, 0x00E6,
        0x00E8, 0x00E9, 0x00EC, 0x00F1, 0x00F2, 0x00F6, 0x00F8, 0x00F9, 0x00FC, 0x0393, 0x0394,
        0x0398, 0x039B, 0x039E, 0x03A0, 0x03A3, 0x03A6, 0x03A8, 0x03A9};
    static const uint16_t extension[] = {'\f', '[', '\\', ']', '^', '{', '|', '}', '~', 0x20AC};
    if (cp >= 0x20 && cp <= 0x7E) {
        if (cp == '`')
            return 0;  //  in neither table
        for (size_t i = 0; i < sizeof extension / sizeof extension[0]; i++)
            if (cp == extension[i])
                return 2;
        return 1;  //  the rest of printable ASCII, '@', '$' and '_' included
    }
    for (size_t i = 0; i < sizeof basic / sizeof basic[0]; i++)
        if (cp == basic[i])
            return 1;
    for (size_t i = 0; i < sizeof extension / sizeof extension[0]; i++)
        if (cp == extension[i])
            return 2;
    return 0;
}

//  Decode one UTF-8 character at p; sets *cp and returns its length, or
//  returns 0 when the bytes there are not one.
static size_t
s_utf8_next (const unsigned char *p, uint32_t *cp)
{
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xE0) == 0xC0 ? 2
                 : (p[0] & 0xF0) == 0xE0 ? 3
                 : (p[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    if (len == 0)
        return 0;
    uint32_t value = len == 1 ? p[0] : p[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        value = (value << 6) | (p[i] & 0x3F);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (value < least[len] || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF))
        return 0;
    *cp = value;
    return len;
}

//  Segments for units of sizes 1 or 2 (in *units, count of them): one when
//  the total fits single, else packed into parts of part without splitting
//  a unit of 2.
static int
s_pack (const unsigned char *units, size_t count, size_t single, size_t part)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += units[i];
    if (total <= single)
        return 1;
    int segments = 1;
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        if (used + units[i] > part) {
            segments++;
            used = 0;
        }
        used += units[i];
    }
    return segments;
}

int
sb_fakeprov_sms_segments (const char *text)
{
    size_t count = strlen (text);  //  at most one unit per byte
    unsigned char *gsm = malloc (count + 1), *ucs2 = malloc (count + 1);
    if (!gsm || !ucs2) {
        free (gsm);
        free (ucs2);
        return 1;
    }
    bool is_gsm = true;
    size_t n = 0;
    const unsigned char *p = (const unsigned char *) text;
    while (*p) {
        uint32_t cp = 0;
        size_t len = s_utf8_next (p, &cp);
        if (len == 0) {
            is_gsm = false;
            ucs2[n++] = 1;
            p++;
            continue;
        }
        int septets = s_gsm_septets (cp);
        if (septets == 0)
            is_gsm = false;
        gsm[n] = (unsigned char) septets;
        ucs2[n] = cp > 0xFFFF ? 2 : 1;
        n++;
        p += len;
    }
    int segments = is_gsm ? s_pack (gsm, n, 160, 153) : s_pack (ucs2, n, 70, 67);
    free (gsm);
    free (ucs2);
    return segments;
}

//  --------------------------------------------------------------------------
//  Addresses and dates

const char *
sb_fakeprov_bare (const char *address)
{
    return strncmp (address, "whatsapp:", 9) == 0 ? address + 9
           : strncmp (address, "rcs:", 4) == 0    ? address + 4
                                                  : address;
}

void
sb_fakeprov_rfc2822 (time_t when, char *out, size_t size)
{
    sb_time_rfc1123 ((int64_t) when, "+0000", out, size);
}

//  --------------------------------------------------------------------------
//  Meta

char *
sb_fakeprov_meta_dump (json_t *root)
{
    if (!root)
        return NULL;
    char *text = json_dumps (root, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH);
    json_decref (root);
    return text;
}

json_t *
sb_fakeprov_meta_envelope (json_t *value)
{
    if (!value)
        return NULL;
    return json_pack ("{s:s, s:[{s:s, s:[{s:o, s:s}]}]}", "object", "whatsapp_business_account",
                      "entry", "id", SB_FAKEPROV_WABA_ID, "changes", "value", value, "field",
                      "messages");
}

static const char *
s_meta_error_title (int64_t code)
{
    switch (code) {
        case 131049:
            return "This message was not delivered to maintain healthy ecosystem engagement.";
        case 131047: return "Re-engagement message";
        case 131026: return "Message undeliverable";
        case 131051: return "Unsupported message type";
        case 130472: return "User's number is part of an experiment";
        default: return "Message failed to send";
    }
}

char *
sb_fakeprov_meta_status (const sb_fakeprov_meta_status_t *status)
{
    char stamp[24], expires[24], conversation[40];
    time_t now = time (NULL);
    snprintf (stamp, sizeof stamp, "%lld", (long long) now);
    snprintf (expires, sizeof expires, "%lld", (long long) now + 24 * 3600);
    if (status->conversation)
        snprintf (conversation, sizeof conversation, "%s", status->conversation);
    else
        sb_fakeprov_hex_id (conversation, sizeof conversation, "", 32, false);
    //  A send to a business-scoped user id has recipient_user_id and no
    //  recipient_id (whatsapp-api-js src/types.ts, ServerStatusPayload).
    json_t *entry = json_pack (
        "{s:s, s:s, s:s, s:s}", "id", status->wamid, "status", status->status, "timestamp", stamp,
        sb_bsuid_like (status->recipient) ? "recipient_user_id" : "recipient_id",
        status->recipient);
    if (!entry)
        return NULL;
    const char *state = status->status;
    if (strcmp (state, "sent") == 0 || strcmp (state, "delivered") == 0) {
        //  A reply inside the customer service window: free under
        //  per-message pricing (PMP), which Meta's webhooks carry since
        //  1 July 2025 (meta-status-sent.json).
        json_object_set_new (entry, "conversation",
                             json_pack ("{s:s, s:s, s:{s:s}}", "id", conversation,
                                        "expiration_timestamp", expires, "origin", "type",
                                        "service"));
        json_object_set_new (entry, "pricing",
                             json_pack ("{s:b, s:s, s:s, s:s}", "billable", 0, "pricing_model",
                                        "PMP", "type", "free_customer_service", "category",
                                        "service"));
    }
    else if (strcmp (state, "failed") == 0 || status->error_code) {
        int64_t code = status->error_code ? status->error_code : 131049;
        const char *title = s_meta_error_title (code);
        json_object_set_new (
            entry, "errors",
            json_pack (
                "[{s:I, s:s, s:s, s:{s:s}, s:s}]", "code", (json_int_t) code, "title", title,
                "message", title, "error_data", "details", title, "href",
                "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"));
    }
    json_t *value = json_pack ("{s:s, s:{s:s, s:s}, s:[o]}", "messaging_product", "whatsapp",
                               "metadata", "display_phone_number", status->display_number,
                               "phone_number_id", status->phone_number_id, "statuses", entry);
    return sb_fakeprov_meta_dump (sb_fakeprov_meta_envelope (value));
}

//  --------------------------------------------------------------------------
//  Twilio

int
sb_fakeprov_add_pairs (sb_form_t *form, const char *const *pairs)
{
    for (size_t i = 0; pairs[i]; i += 2)
        if (pairs[i + 1] && sb_form_add (form, pairs[i], pairs[i + 1]))
            return -1;
    return 0;
}

int
sb_fakeprov_twilio_status (sb_form_t *form, const sb_fakeprov_twilio_status_t *status)
{
    const char *api = "2010-04-01";
    const char *from = status->from && *status->from ? status->from : NULL;
    const char *service = status->service && *status->service ? status->service : NULL;
    bool whatsapp =
        strncmp (status->to, "whatsapp:", 9) == 0 || (from && strncmp (from, "whatsapp:", 9) == 0);
    bool failed =
        strcmp (status->status, "failed") == 0 || strcmp (status->status, "undelivered") == 0;
    const char *error = status->error_code ? status->error_code
                        : failed           ? (whatsapp ? "63016" : "30003")
                                           : NULL;
    if (whatsapp) {
        char to[1100], from_wa[1100], install[40], masked[1100];
        snprintf (to, sizeof to, "whatsapp:%.1080s", sb_fakeprov_bare (status->to));
        if (from)
            snprintf (from_wa, sizeof from_wa, "whatsapp:%.1080s", sb_fakeprov_bare (from));
        sb_fakeprov_hex_id (install, sizeof install, "XE", 32, false);
        //  Twilio masks the last five digits of the user's number.
        snprintf (masked, sizeof masked, "%s", sb_fakeprov_bare (to));
        size_t len = strlen (masked);
        for (size_t i = len > 5 ? len - 5 : 0; i < len; i++)
            masked[i] = 'X';
        const char *pairs[] = {"ChannelPrefix",
                               "whatsapp",
                               "ApiVersion",
                               api,
                               "ErrorCode",
                               error,
                               "MessageStatus",
                               status->status,
                               "SmsSid",
                               status->sid,
                               "SmsStatus",
                               status->status,
                               "ChannelInstallSid",
                               install,
                               "To",
                               to,
                               "MessagingServiceSid",
                               service,
                               "From",
                               from ? from_wa : NULL,
                               "MessageSid",
                               status->sid,
                               "AccountSid",
                               status->account,
                               "ChannelToAddress",
                               masked,
                               NULL};
        return sb_fakeprov_add_pairs (form, pairs);
    }
    char done[24];
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    snprintf (done, sizeof done, "%02d%02d%02d%02d%02d", tm.tm_year % 100, tm.tm_mon + 1,
              tm.tm_mday, tm.tm_hour, tm.tm_min);
    const char *pairs[] = {"ErrorCode",
                           error,
                           "SmsSid",
                           status->sid,
                           "SmsStatus",
                           status->status,
                           "MessageStatus",
                           status->status,
                           "To",
                           status->to,
                           "MessagingServiceSid",
                           service,
                           "MessageSid",
                           status->sid,
                           "AccountSid",
                           status->account,
                           "From",
                           from,
                           "ApiVersion",
                           api,
                           "RawDlrDoneDate",
                           strcmp (status->status, "delivered") == 0 ? done : NULL,
                           NULL};
    return sb_fakeprov_add_pairs (form, pairs);
}
