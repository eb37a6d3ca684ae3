/*  sb_sandbox_twilio: the Twilio Messages API, faked.

        POST /2010-04-01/Accounts/{AccountSid}/Messages.json

    It checks what the real API checks (tests/conformance/
    twilio-messages-openapi.json): HTTP Basic auth with the account SID and
    auth token (or an API key and its secret), the AccountSid in the path,
    the form fields (To, From or MessagingServiceSid, Body, MediaUrl or
    ContentSid, StatusCallback, whatsapp: or rcs: prefixes on both ends: an
    RCS send goes To=rcs:<E.164 user> From=rcs:<RCS sender id>; its status
    callbacks carry To and From as sent, in the SMS callback's shape).
    Violations get Twilio's error shape and codes. An accepted send gets a
    201 message resource with an SM/MM sid and Twilio's segment count, then,
    with --callbacks, its "sent" and "delivered" status callbacks (shaped by
    sb_fakeprov), signed with X-Twilio-Signature: TWILIO_AUTH_TOKEN over the
    URL Twilio would call (SB_PUBLIC_URL + SB_PATH_PREFIX + /twilio/status,
    or the StatusCallback given).

    Limits: a Body of at most S_MAX_BODY characters, at most 10 MediaUrl.
*/
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sb_bsuid.h"
#include "sb_fakeprov.h"
#include "sb_form.h"
#include "sb_log.h"
#include "sb_sandbox.h"
#include "sb_sig.h"
#include "sb_text.h"

#define S_MAX_BODY 1600  //  characters in a Twilio Body

//  A Twilio sender: E.164, a short code (5-6 digits), or an alphanumeric
//  sender id (1-11 letters, digits and spaces, at least one letter).
static bool
s_is_twilio_sender (const char *text)
{
    if (sb_sandbox_is_e164 (text))
        return true;
    size_t n = strlen (text);
    bool all_digits = n > 0, letter = false, ok = n > 0 && n <= 11;
    for (const char *p = text; *p; p++) {
        if (!isdigit ((unsigned char) *p))
            all_digits = false;
        if (isalpha ((unsigned char) *p))
            letter = true;
        if (!isalnum ((unsigned char) *p) && *p != ' ')
            ok = false;
    }
    if (all_digits)
        return n >= 5 && n <= 6;
    return ok && letter;
}

//  Decode "Basic base64(user:password)". 0, or -1 when not that.
static int
s_basic_auth (const char *header, char *user, size_t user_size, char *password,
              size_t password_size)
{
    if (!header || strncasecmp (header, "Basic ", 6) != 0)
        return -1;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    size_t len = strlen (b64);
    while (len > 0 && b64[len - 1] == ' ')
        len--;
    if (len == 0 || len % 4 != 0 || len > 1024)
        return -1;
    unsigned char decoded[800];
    int n = EVP_DecodeBlock (decoded, (const unsigned char *) b64, (int) len);
    if (n < 0)
        return -1;
    if (b64[len - 1] == '=')
        n--;
    if (b64[len - 2] == '=')
        n--;
    decoded[n] = 0;
    if (memchr (decoded, 0, (size_t) n))
        return -1;
    char *colon = strchr ((char *) decoded, ':');
    if (!colon)
        return -1;
    *colon = 0;
    size_t user_len = strlen ((char *) decoded), password_len = strlen (colon + 1);
    int rc = -1;
    if (user_len < user_size && password_len < password_size) {
        memcpy (user, decoded, user_len + 1);
        memcpy (password, colon + 1, password_len + 1);
        rc = 0;
    }
    OPENSSL_cleanse (decoded, sizeof decoded);
    return rc;
}

static bool
s_twilio_authorized (const sb_sandbox_t *self, const char *header, char *user, size_t user_size)
{
    char password[512];
    *user = 0;
    if (s_basic_auth (header, user, user_size, password, sizeof password))
        return false;
    size_t size = strlen (password);
    bool ok = (strcmp (user, self->account_sid) == 0
               && sb_sandbox_secret_equal (password, size, self->auth_token))
              || (*self->api_key && strcmp (user, self->api_key) == 0
                  && sb_sandbox_secret_equal (password, size, self->api_secret));
    OPENSSL_cleanse (password, sizeof password);
    return ok && *self->account_sid;
}

//  The channel an address's prefix names.
typedef enum {
    S_PLAIN,     //  no prefix: SMS/MMS
    S_WHATSAPP,  //  "whatsapp:"
    S_RCS,       //  "rcs:"
} s_channel_t;

//  The address without its "whatsapp:" or "rcs:" prefix; sets *channel.
static const char *
s_channel_address (const char *address, s_channel_t *channel)
{
    const char *bare = sb_fakeprov_bare (address);
    *channel = bare == address ? S_PLAIN : *address == 'r' ? S_RCS : S_WHATSAPP;
    return bare;
}

//  An RCS sender id (the part after "rcs:"): 1 to 100 letters, digits, '_'
//  or '-', as Twilio's sender ids are written (brand_agent style).
static bool
s_is_rcs_sender (const char *text)
{
    size_t n = strlen (text);
    if (n < 1 || n > 100)
        return false;
    for (; *text; text++)
        if (!isalnum ((unsigned char) *text) && *text != '_' && *text != '-')
            return false;
    return true;
}

//  A sender for its prefix's channel: an RCS sender id, or a Twilio number
//  or id. Sets *channel.
static bool
s_is_sender (const char *from, s_channel_t *channel)
{
    const char *bare = s_channel_address (from, channel);
    return *channel == S_RCS ? s_is_rcs_sender (bare) : s_is_twilio_sender (bare);
}

//  The URL Twilio would call for a message's status, and where the sandbox
//  posts it (the same unless a public URL fronts the ingress). Both owned.
static int
s_twilio_callback_urls (const sb_sandbox_t *self, const char *status_callback, char **signed_url,
                        char **post_url)
{
    *signed_url = *post_url = NULL;
    if (status_callback && *status_callback) {
        *signed_url = strdup (status_callback);
        //  Behind SB_PUBLIC_URL the ingress is reached at the callbacks URL.
        *post_url = sb_sandbox_reach_url (self, status_callback);
    }
    else {
        *post_url = sb_text_join (self->callbacks, "/twilio/status", NULL);
        *signed_url = *self->public_url
                          ? sb_text_join (self->public_url, self->prefix, "/twilio/status", NULL)
                          : strdup (*post_url);
    }
    if (!*signed_url || !*post_url) {
        free (*signed_url);
        free (*post_url);
        return -1;
    }
    return 0;
}

//  The "sent" then "delivered" callbacks of an accepted Twilio message.
static void
s_twilio_callbacks (sb_sandbox_t *self, const char *sid, const sb_form_t *request)
{
    char *signed_url, *post_url;
    if (s_twilio_callback_urls (self, sb_form_get (request, "StatusCallback"), &signed_url,
                                &post_url))
        return;
    sb_fakeprov_twilio_status_t status = {
        .account = self->account_sid,
        .sid = sid,
        .from = sb_form_get (request, "From"),
        .to = sb_form_get (request, "To"),
        .service = sb_form_get (request, "MessagingServiceSid"),
    };
    static const char *statuses[] = {"sent", "delivered"};
    sb_sandbox_callback_t *first = NULL, *last = NULL;
    for (size_t i = 0; i < 2; i++) {
        status.status = statuses[i];
        sb_form_t *form = sb_form_new ();
        if (!form || sb_fakeprov_twilio_status (form, &status)) {
            sb_form_destroy (&form);
            break;
        }
        char signature[SB_SIG_TWILIO_SIZE];
        bool sign = *self->auth_token
                    && sb_sig_twilio_sign (self->auth_token, signed_url, form, signature) == 0;
        if (!sign && i == 0)
            sb_warn (SB_SANDBOX_MODULE,
                     "Twilio callback unsigned: TWILIO_AUTH_TOKEN is unset sid=%s", sid);
        char what[96];
        snprintf (what, sizeof what, "twilio %s %s", statuses[i], sid);
        sb_sandbox_callback_t *callback = sb_sandbox_callback_new (
            post_url, sb_form_encode (form), "application/x-www-form-urlencoded",
            "X-Twilio-Signature", sign ? signature : NULL, what);
        sb_form_destroy (&form);
        if (!callback)
            break;
        last = sb_sandbox_callback_then (last, callback);
        if (!first)
            first = callback;
    }
    free (signed_url);
    free (post_url);
    sb_sandbox_callback_queue (self, first);
}

bool
sb_sandbox_twilio_auth (const sb_sandbox_t *self, struct mg_connection *conn, const char *account,
                        json_t *record, sb_sandbox_answer_t *answer)
{
    char user[256];
    bool authorized =
        s_twilio_authorized (self, mg_get_header (conn, "Authorization"), user, sizeof user);
    json_object_set_new (record, "auth_user", json_string (user));
    if (!authorized) {
        answer->www_authenticate = true;
        sb_sandbox_twilio_error (answer, 401, 20003, "Authenticate");
        return false;
    }
    if (account && !sb_sandbox_is_sid (account, "AC")) {
        const struct mg_request_info *info = mg_get_request_info (conn);
        char message[300];
        snprintf (message, sizeof message, "The requested resource %.200s was not found",
                  info->local_uri ? info->local_uri : info->request_uri);
        sb_sandbox_twilio_error (answer, 404, 20404, message);
        return false;
    }
    if (account && strcmp (account, self->account_sid) != 0) {
        answer->www_authenticate = true;
        sb_sandbox_twilio_error (answer, 401, 20003, "Authenticate");
        return false;
    }
    return true;
}

sb_form_t *
sb_sandbox_twilio_form (struct mg_connection *conn, const char *body, size_t size, json_t *record,
                        sb_sandbox_answer_t *answer)
{
    //  Twilio reads only form bodies: anything else carries no parameters.
    const char *type = mg_get_header (conn, "Content-Type");
    bool is_form = type && strncasecmp (type, "application/x-www-form-urlencoded", 33) == 0;
    sb_form_t *form = is_form ? sb_form_parse (body, size) : sb_form_new ();
    if (!form) {
        sb_sandbox_twilio_error (answer, 400, 20001, "Invalid form body");
        return NULL;
    }
    json_t *params = json_array ();
    for (size_t i = 0; i < sb_form_size (form); i++)
        json_array_append_new (params,
                               json_pack ("[s,s]", sb_form_key (form, i), sb_form_value (form, i)));
    json_object_set_new (record, "params", params);
    return form;
}

void
sb_sandbox_twilio_handle (sb_sandbox_t *self, struct mg_connection *conn, const char *account,
                          const char *body, size_t size, json_t *record,
                          sb_sandbox_answer_t *answer)
{
    if (!sb_sandbox_twilio_auth (self, conn, account, record, answer))
        return;
    sb_form_t *form = sb_sandbox_twilio_form (conn, body, size, record, answer);
    if (!form)
        return;

    const char *to = sb_form_get (form, "To");
    const char *from = sb_form_get (form, "From");
    const char *service = sb_form_get (form, "MessagingServiceSid");
    const char *text = sb_form_get (form, "Body");
    const char *media = sb_form_get (form, "MediaUrl");
    const char *content = sb_form_get (form, "ContentSid");
    const char *callback = sb_form_get (form, "StatusCallback");
    s_channel_t to_channel = S_PLAIN, from_channel = S_PLAIN;
    char message[300];
    if (!to || !*to)
        sb_sandbox_twilio_error (answer, 400, 21604, "A 'To' phone number is required.");
    else if (!sb_sandbox_is_e164 (s_channel_address (to, &to_channel))
             && !(to_channel == S_WHATSAPP
                  && sb_bsuid_valid (s_channel_address (to, &to_channel)))) {
        //  WhatsApp also takes a business-scoped user id: To=whatsapp:US....
        //  (Twilio's changelog, 2026-07-20); a malformed one is refused as
        //  any other bad To.
        snprintf (message, sizeof message, "Invalid 'To' Phone Number: %.60s", to);
        sb_sandbox_twilio_error (answer, 400, 21211, message);
    }
    else if ((!from || !*from) && (!service || !*service))
        sb_sandbox_twilio_error (answer, 400, 21603, "A 'From' phone number is required.");
    else if (service && *service && !sb_sandbox_is_sid (service, "MG")) {
        snprintf (message, sizeof message, "The Messaging Service Sid %.40s is invalid.", service);
        sb_sandbox_twilio_error (answer, 400, 21701, message);
    }
    else if (from && *from && !s_is_sender (from, &from_channel)) {
        snprintf (message, sizeof message, "Invalid From Number (caller ID): %.60s", from);
        sb_sandbox_twilio_error (answer, 400, 21212, message);
    }
    else if (from && *from && to_channel != from_channel)
        sb_sandbox_twilio_error (
            answer, 400, 21910,
            "Invalid From and To pair. From and To should be of the same channel");
    else if ((!text || !*text) && (!media || !*media) && (!content || !*content))
        sb_sandbox_twilio_error (answer, 400, 21602, "Message body is required.");
    else if (text && sb_sandbox_utf8_length (text) > S_MAX_BODY)
        sb_sandbox_twilio_error (answer, 400, 21617,
                                 "The concatenated message body exceeds the 1600 character limit.");
    else if (callback && !sb_sandbox_is_url (callback))
        sb_sandbox_twilio_error (answer, 400, 21609, "Invalid StatusCallback url");
    else if (content && *content && !sb_sandbox_is_sid (content, "HX"))
        sb_sandbox_twilio_error (answer, 400, 21656, "The ContentSid is Invalid.");
    else {
        size_t num_media = 0;
        bool bad_media = false;
        for (size_t i = 0; i < sb_form_size (form); i++)
            if (strcmp (sb_form_key (form, i), "MediaUrl") == 0) {
                num_media++;
                if (!sb_sandbox_is_url (sb_form_value (form, i)))
                    bad_media = true;
            }
        if (bad_media || num_media > 10)
            sb_sandbox_twilio_error (answer, 400, 21620, "Invalid media URL(s)");
        else {
            char sid[40];
            sb_fakeprov_hex_id (sid, sizeof sid, num_media ? "MM" : "SM", 32, false);
            char date[SB_FAKEPROV_DATE_SIZE];
            sb_fakeprov_rfc2822 (time (NULL), date, sizeof date);
            char uri[160], media_uri[160], num_media_text[8], segments[8];
            snprintf (uri, sizeof uri, "/2010-04-01/Accounts/%s/Messages/%s.json", account, sid);
            snprintf (media_uri, sizeof media_uri, "/2010-04-01/Accounts/%s/Messages/%s/Media.json",
                      account, sid);
            snprintf (num_media_text, sizeof num_media_text, "%zu", num_media);
            snprintf (segments, sizeof segments, "%d", sb_fakeprov_sms_segments (text ? text : ""));
            bool by_service = service && *service;
            json_t *reply = json_pack (
                "{s:s, s:s, s:s, s:s, s:n, s:s, s:s, s:n, s:n, s:o, s:s, s:s, s:o, s:n, s:s, "
                "s:s, s:s, s:{s:s}, s:s, s:s}",
                "account_sid", account, "api_version", "2010-04-01", "body", text ? text : "",
                "date_created", date, "date_sent", "date_updated", date, "direction",
                "outbound-api", "error_code", "error_message", "from",
                from && *from ? json_string (from) : json_null (), "num_media", num_media_text,
                "num_segments", segments, "messaging_service_sid",
                by_service ? json_string (service) : json_null (), "price", "price_unit", "USD",
                "sid", sid, "status", by_service && !(from && *from) ? "accepted" : "queued",
                "subresource_uris", "media", media_uri, "to", to, "uri", uri);
            if (reply) {
                snprintf (answer->id, sizeof answer->id, "%s", sid);
                sb_sandbox_answer_json (answer, 201, reply);
                if (*self->callbacks)
                    s_twilio_callbacks (self, sid, form);
            }
            else
                sb_sandbox_twilio_error (answer, 400, 21602, "Message body is not valid UTF-8.");
        }
    }
    sb_form_destroy (&form);
}
