/*  test_sb_fakeprov: what `switchboard send` and the provider sandbox build
    alike: SMS segment counts (GSM-7 with its extension table, UCS-2 in
    UTF-16 code units, no escape or surrogate pair split across segments),
    ids, Twilio's dates, and the two status webhooks against the shapes in
    tests/conformance/. Silent on success.
*/
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_fakeprov.h"
#include "sb_form.h"

#include "sb_check.h"

//  unit repeated count times (caller frees).
static char *
s_repeat (const char *unit, size_t count)
{
    size_t len = strlen (unit);
    char *text = malloc (len * count + 1);
    for (size_t i = 0; i < count; i++)
        memcpy (text + i * len, unit, len);
    text[len * count] = 0;
    return text;
}

//  Segments of unit repeated count times.
static int
s_segments (const char *unit, size_t count)
{
    char *text = s_repeat (unit, count);
    int segments = sb_fakeprov_sms_segments (text);
    free (text);
    return segments;
}

static void
s_test_segments (void)
{
    CHECK (sb_fakeprov_sms_segments ("") == 1);
    CHECK (sb_fakeprov_sms_segments ("Hello from switchboard send") == 1);
    //  GSM-7: 160 in one, then 153 per segment.
    CHECK (s_segments ("x", 160) == 1);
    CHECK (s_segments ("x", 161) == 2);
    CHECK (s_segments ("x", 306) == 2);
    CHECK (s_segments ("x", 307) == 3);
    //  '@', '$', '_', newlines and the accented letters of the basic table
    //  are GSM-7: one septet each.
    CHECK (s_segments ("@$_\n\r", 32) == 1);
    CHECK (s_segments ("\xc3\xa9", 160) == 1);  //  é
    CHECK (s_segments ("\xc3\xa9", 161) == 2);
    CHECK (s_segments ("\xce\x94\xc3\x9f\xc2\xa3", 53) == 1);  //  Δß£, 159 septets
    //  The extension table takes two septets: { } [ ] \ ^ ~ | € and form feed.
    CHECK (s_segments ("{", 80) == 1);
    CHECK (s_segments ("{", 81) == 2);
    CHECK (s_segments ("\xe2\x82\xac", 80) == 1);  //  €
    CHECK (s_segments ("\xe2\x82\xac", 81) == 2);
    CHECK (s_segments ("[]\\^~|\f}", 10) == 1);
    //  An escape pair is never split: 76 per concatenated segment.
    CHECK (s_segments ("{", 152) == 2);
    CHECK (s_segments ("{", 153) == 3);
    //  Not GSM-7: UCS-2, 70 in one, then 67 per segment.
    CHECK (s_segments ("\xc3\xa1", 70) == 1);  //  á
    CHECK (s_segments ("\xc3\xa1", 71) == 2);
    CHECK (s_segments ("\xc3\xa1", 134) == 2);
    CHECK (s_segments ("\xc3\xa1", 135) == 3);
    CHECK (s_segments ("`", 70) == 1);  //  in neither GSM table
    CHECK (s_segments ("`", 71) == 2);
    CHECK (s_segments ("\t", 71) == 2);
    //  One character outside GSM-7 makes the whole message UCS-2.
    char *text = s_repeat ("x", 100);
    char mixed[128];
    snprintf (mixed, sizeof mixed, "%s\xc3\xa1", text);
    CHECK (sb_fakeprov_sms_segments (mixed) == 2);
    free (text);
    //  UTF-16: a character beyond U+FFFF is two code units, never split.
    CHECK (s_segments ("\xf0\x9f\x98\x80", 35) == 1);  //  😀
    CHECK (s_segments ("\xf0\x9f\x98\x80", 36) == 2);
    CHECK (s_segments ("\xf0\x9f\x98\x80", 66) == 2);
    CHECK (s_segments ("\xf0\x9f\x98\x80", 67) == 3);
    //  Bytes that are not UTF-8: one UCS-2 unit each.
    CHECK (s_segments ("\xff", 70) == 1);
    CHECK (s_segments ("\xff", 71) == 2);
    CHECK (s_segments ("\xc3", 71) == 2);  //  truncated sequence
}

static void
s_test_ids (void)
{
    char sid[40];
    sb_fakeprov_hex_id (sid, sizeof sid, "SM", 32, false);
    CHECK (strlen (sid) == 34 && strncmp (sid, "SM", 2) == 0);
    CHECK (strspn (sid + 2, "0123456789abcdef") == 32);
    char other[40];
    sb_fakeprov_hex_id (other, sizeof other, "SM", 32, false);
    CHECK (strcmp (sid, other) != 0);
    char trace[24];
    sb_fakeprov_hex_id (trace, sizeof trace, "A", 22, true);
    CHECK (strlen (trace) == 23 && strspn (trace + 1, "0123456789ABCDEF") == 22);
    char small[8];
    sb_fakeprov_hex_id (small, sizeof small, "SM", 32, false);  //  cut to fit
    CHECK (strlen (small) == 7);

    char digits[17];
    sb_fakeprov_digits (digits, 16);
    CHECK (strlen (digits) == 16 && strspn (digits, "0123456789") == 16 && digits[0] != '0');

    //  wamids: "wamid." + base64 of Meta's record, inbound and outbound.
    for (int dir = SB_FAKEPROV_INBOUND; dir <= SB_FAKEPROV_OUTBOUND; dir++) {
        char wamid[SB_FAKEPROV_WAMID_SIZE];
        sb_fakeprov_wamid (wamid, sizeof wamid, "16505551234", (sb_fakeprov_dir_t) dir);
        CHECK (strncmp (wamid, "wamid.HBgLMTY1MDU1NTEyMzQVAgA", 29) == 0);
        unsigned char raw[96];
        const char *b64 = wamid + 6;
        int n = EVP_DecodeBlock (raw, (const unsigned char *) b64, (int) strlen (b64));
        size_t id_digits = dir == SB_FAKEPROV_INBOUND ? 20 : 18;
        CHECK (n >= (int) (3 + 11 + 6 + id_digits + 1));
        CHECK (raw[0] == 0x1C && raw[2] == 11 && memcmp (raw + 3, "16505551234", 11) == 0);
        CHECK (raw[17] == (dir == SB_FAKEPROV_INBOUND ? 0x12 : 0x11));
        CHECK (raw[19] == id_digits);
        CHECK (strspn ((char *) raw + 20, "0123456789ABCDEF") == id_digits);
    }
}

static void
s_test_dates_and_addresses (void)
{
    char date[SB_FAKEPROV_DATE_SIZE];
    sb_fakeprov_rfc2822 (1692853305, date, sizeof date);
    CHECK (strcmp (date, "Thu, 24 Aug 2023 05:01:45 +0000") == 0);
    CHECK (strcmp (sb_fakeprov_bare ("whatsapp:+14155550100"), "+14155550100") == 0);
    CHECK (strcmp (sb_fakeprov_bare ("+14155550100"), "+14155550100") == 0);
}

//  The status object of a statuses webhook (borrowed from root).
static json_t *
s_status_of (json_t *root)
{
    json_t *value = json_object_get (
        json_array_get (
            json_object_get (json_array_get (json_object_get (root, "entry"), 0), "changes"), 0),
        "value");
    return json_array_get (json_object_get (value, "statuses"), 0);
}

static void
s_test_meta_status (void)
{
    sb_fakeprov_meta_status_t hook = {
        .display_number = SB_FAKEPROV_DISPLAY_NUMBER,
        .phone_number_id = "106540352242922",
        .wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA",
        .recipient = "16505551234",
        .status = "sent",
        .conversation = "72b14d6bd5407799e66f64d1b338e567",
    };
    static const char head[] =
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"" SB_FAKEPROV_WABA_ID "\"";
    char *body = sb_fakeprov_meta_status (&hook);
    CHECK (body && strncmp (body, head, strlen (head)) == 0);
    json_t *root = body ? json_loads (body, 0, NULL) : NULL;
    json_t *st = s_status_of (root);
    CHECK (strcmp (json_string_value (json_object_get (st, "status")), "sent") == 0);
    CHECK (strcmp (json_string_value (json_object_get (st, "recipient_id")), "16505551234") == 0);
    json_t *conversation = json_object_get (st, "conversation");
    CHECK (strcmp (json_string_value (json_object_get (conversation, "id")), hook.conversation)
           == 0);
    CHECK (json_is_string (json_object_get (conversation, "expiration_timestamp")));
    //  Per-message pricing, as Meta's webhooks carry it since 1 July 2025.
    json_t *pricing = json_object_get (st, "pricing");
    CHECK (strcmp (json_string_value (json_object_get (pricing, "pricing_model")), "PMP") == 0);
    CHECK (strcmp (json_string_value (json_object_get (pricing, "type")), "free_customer_service")
           == 0);
    CHECK (strcmp (json_string_value (json_object_get (pricing, "category")), "service") == 0);
    CHECK (json_is_false (json_object_get (pricing, "billable")));
    CHECK (!json_object_get (st, "errors"));
    json_decref (root);
    free (body);

    //  failed: the error, no pricing; '/' escaped as Meta does.
    hook.status = "failed";
    hook.conversation = NULL;
    body = sb_fakeprov_meta_status (&hook);
    CHECK (body && strstr (body, "https:\\/\\/developers.facebook.com"));
    root = body ? json_loads (body, 0, NULL) : NULL;
    st = s_status_of (root);
    json_t *error = json_array_get (json_object_get (st, "errors"), 0);
    CHECK (json_integer_value (json_object_get (error, "code")) == 131049);
    CHECK (!json_object_get (st, "pricing") && !json_object_get (st, "conversation"));
    json_decref (root);
    free (body);

    hook.error_code = 131047;
    body = sb_fakeprov_meta_status (&hook);
    root = body ? json_loads (body, 0, NULL) : NULL;
    error = json_array_get (json_object_get (s_status_of (root), "errors"), 0);
    CHECK (json_integer_value (json_object_get (error, "code")) == 131047);
    CHECK (strcmp (json_string_value (json_object_get (error, "title")), "Re-engagement message")
           == 0);
    json_decref (root);
    free (body);

    //  Non-ASCII goes out as \uXXXX.
    char *dumped = sb_fakeprov_meta_dump (json_pack ("{s:s}", "a", "\xc3\xa9/"));
    CHECK (dumped && strcmp (dumped, "{\"a\":\"\\u00E9\\/\"}") == 0);
    free (dumped);
}

//  The keys of a form, comma-separated, into out.
static void
s_keys (const sb_form_t *form, char *out, size_t size)
{
    size_t at = 0;
    out[0] = 0;
    for (size_t i = 0; i < sb_form_size (form) && at < size; i++)
        at += (size_t) snprintf (out + at, size - at, "%s%s", i ? "," : "", sb_form_key (form, i));
}

static void
s_test_twilio_status (void)
{
    char keys[512];
    //  SMS, as twilio-message-status-delivered.form.
    sb_fakeprov_twilio_status_t status = {
        .account = "AC0123456789abcdef0123456789abcdef",
        .sid = "SMa1b2c3d4e5f60718293a4b5c6d7e8f90",
        .status = "delivered",
        .from = "+15558675310",
        .to = "+14017122661",
        .service = "MGd1b2c3d4e5f60718293a4b5c6d7e8f93",
    };
    sb_form_t *form = sb_form_new ();
    CHECK (sb_fakeprov_twilio_status (form, &status) == 0);
    s_keys (form, keys, sizeof keys);
    CHECK (strcmp (keys, "SmsSid,SmsStatus,MessageStatus,To,MessagingServiceSid,MessageSid,"
                         "AccountSid,From,ApiVersion,RawDlrDoneDate")
           == 0);
    CHECK (strlen (sb_form_get (form, "RawDlrDoneDate")) == 10);
    sb_form_destroy (&form);

    //  undelivered: ErrorCode first, 30003 unless given; no From when unknown.
    status.status = "undelivered";
    status.from = NULL;
    status.service = NULL;
    form = sb_form_new ();
    CHECK (sb_fakeprov_twilio_status (form, &status) == 0);
    s_keys (form, keys, sizeof keys);
    CHECK (strcmp (keys, "ErrorCode,SmsSid,SmsStatus,MessageStatus,To,MessageSid,AccountSid,"
                         "ApiVersion")
           == 0);
    CHECK (strcmp (sb_form_get (form, "ErrorCode"), "30003") == 0);
    sb_form_destroy (&form);

    //  WhatsApp, as twilio-whatsapp-status-failed.form: both ends prefixed,
    //  the user's number masked.
    status.status = "failed";
    status.from = "whatsapp:+15558675310";
    status.to = "+14017122661";
    form = sb_form_new ();
    CHECK (sb_fakeprov_twilio_status (form, &status) == 0);
    s_keys (form, keys, sizeof keys);
    CHECK (strcmp (keys, "ChannelPrefix,ApiVersion,ErrorCode,MessageStatus,SmsSid,SmsStatus,"
                         "ChannelInstallSid,To,From,MessageSid,AccountSid,ChannelToAddress")
           == 0);
    CHECK (strcmp (sb_form_get (form, "ErrorCode"), "63016") == 0);
    CHECK (strcmp (sb_form_get (form, "To"), "whatsapp:+14017122661") == 0);
    CHECK (strcmp (sb_form_get (form, "ChannelToAddress"), "+140171XXXXX") == 0);
    CHECK (strncmp (sb_form_get (form, "ChannelInstallSid"), "XE", 2) == 0);
    sb_form_destroy (&form);
}

int
main (void)
{
    s_test_segments ();
    s_test_ids ();
    s_test_dates_and_addresses ();
    s_test_meta_status ();
    s_test_twilio_status ();
    if (s_failures) {
        fprintf (stderr, "test_sb_fakeprov: %d failure(s)\n", s_failures);
        return 1;
    }
    return 0;
}
