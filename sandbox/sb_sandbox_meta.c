/*  sb_sandbox_meta: the WhatsApp Cloud API messages endpoint, faked.

        POST /{version}/{phone_number_id}/messages

    It checks what the real API checks (tests/conformance/
    meta-messages-openapi.json): the Bearer token (META_ACCESS_TOKEN), the
    version and phone number id in the path, the Content-Type, and the JSON
    shape of a text message; other message types are accepted when their
    object is present. Violations get Meta's error shape and codes. An
    accepted send gets a 200 with a wamid, then, with --callbacks, the
    "sent" and "delivered" statuses webhook (sb_fakeprov_meta_status, as
    meta-status-sent.json) posted to the ingress's /meta/whatsapp, signed
    with X-Hub-Signature-256 (META_APP_SECRET over the exact body).

    Limits: a text body of at most S_MAX_TEXT characters.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb_bsuid.h"
#include "sb_fakeprov.h"
#include "sb_log.h"
#include "sb_sandbox.h"
#include "sb_sig.h"
#include "sb_text.h"

#define S_MAX_TEXT 4096  //  characters in a WhatsApp text body

static bool
s_only_keys (json_t *object, const char *const *allowed, const char **bad)
{
    const char *key;
    json_t *value;
    json_object_foreach (object, key, value) {
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp (key, *a) == 0)
                known = true;
        if (!known) {
            *bad = key;
            return false;
        }
    }
    return true;
}

//  The recipient: digits with an optional "+", spaces, dashes, parentheses.
static bool
s_is_wa_number (const char *text, char *digits, size_t size)
{
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        if (isdigit ((unsigned char) *p)) {
            if (n + 1 < size)
                digits[n++] = *p;
        }
        else if (!(*p == '+' && p == text) && *p != ' ' && *p != '-' && *p != '(' && *p != ')')
            return false;
    }
    digits[n] = 0;
    return n >= 5 && n <= 20;
}

static void
s_meta_callbacks (sb_sandbox_t *self, const char *phone_number_id, const char *wamid,
                  const char *recipient)
{
    char *url = sb_text_join (self->callbacks, "/meta/whatsapp", NULL);
    if (!url)
        return;
    char conversation[40];
    sb_fakeprov_hex_id (conversation, sizeof conversation, "", 32, false);
    sb_fakeprov_meta_status_t status = {
        .display_number = SB_FAKEPROV_DISPLAY_NUMBER,
        .phone_number_id = phone_number_id,
        .wamid = wamid,
        .recipient = recipient,
        .conversation = conversation,
    };
    static const char *statuses[] = {"sent", "delivered"};
    sb_sandbox_callback_t *first = NULL, *last = NULL;
    for (size_t i = 0; i < 2; i++) {
        status.status = statuses[i];
        char *body = sb_fakeprov_meta_status (&status);
        if (!body)
            break;
        char signature[SB_SIG_META_SIZE];
        bool sign = *self->app_secret
                    && sb_sig_meta_sign (self->app_secret, body, strlen (body), signature) == 0;
        if (!sign && i == 0)
            sb_warn (SB_SANDBOX_MODULE, "Meta callback unsigned: META_APP_SECRET is unset id=%s",
                     wamid);
        char what[160];
        snprintf (what, sizeof what, "meta %s %.120s", statuses[i], wamid);
        sb_sandbox_callback_t *callback = sb_sandbox_callback_new (
            url, body, "application/json", "X-Hub-Signature-256", sign ? signature : NULL, what);
        if (!callback)
            break;
        last = sb_sandbox_callback_then (last, callback);
        if (!first)
            first = callback;
    }
    free (url);
    sb_sandbox_callback_queue (self, first);
}

bool
sb_sandbox_meta_bearer (const sb_sandbox_t *self, struct mg_connection *conn, json_t *record,
                        sb_sandbox_answer_t *answer)
{
    const char *auth = mg_get_header (conn, "Authorization");
    bool bearer = auth && strncasecmp (auth, "Bearer ", 7) == 0;
    json_object_set_new (record, "auth_user", json_string (bearer ? "bearer" : ""));
    if (!bearer) {
        sb_sandbox_meta_error (answer, 401, 190,
                               "An active access token must be used to query information about the "
                               "current user.",
                               NULL);
        return false;
    }
    const char *token = auth + 7;
    while (*token == ' ')
        token++;
    if (!*self->meta_token || !sb_sandbox_secret_equal (token, strlen (token), self->meta_token)) {
        sb_sandbox_meta_error (answer, 401, 190,
                               "Invalid OAuth access token - Cannot parse access token", NULL);
        return false;
    }
    return true;
}

void
sb_sandbox_meta_handle (sb_sandbox_t *self, struct mg_connection *conn, const char *version,
                        const char *phone_number_id, const char *body, size_t size, json_t *record,
                        sb_sandbox_answer_t *answer)
{
    if (!sb_sandbox_meta_bearer (self, conn, record, answer))
        return;
    char message[400];
    if (!sb_sandbox_is_graph_version (version)) {
        snprintf (message, sizeof message, "Unknown path components: /%.40s/%.40s/messages",
                  version, phone_number_id);
        sb_sandbox_meta_error (answer, 400, 2500, message, NULL);
        return;
    }
    char digits[32];
    if (!sb_sandbox_is_graph_id (phone_number_id)) {
        snprintf (message, sizeof message,
                  "Unsupported post request. Object with ID '%.40s' does not exist, cannot be "
                  "loaded due to missing permissions, or does not support this operation.",
                  phone_number_id);
        sb_sandbox_meta_error (answer, 400, 100, message, NULL);
        return;
    }
    const char *type_header = mg_get_header (conn, "Content-Type");
    if (!type_header || strncasecmp (type_header, "application/json", 16) != 0) {
        sb_sandbox_meta_error (answer, 400, 100, "(#100) Invalid parameter",
                               "Content-Type must be application/json");
        return;
    }
    json_error_t error;
    json_t *root = json_loadb (body, size, JSON_REJECT_DUPLICATES, &error);
    if (root)
        json_object_set (record, "json", root);
    static const char *types[] = {"text",        "audio",    "document", "image",
                                  "location",    "video",    "sticker",  "reaction",
                                  "interactive", "template", "contacts", NULL};
    static const char *base_keys[] = {
        "messaging_product", "recipient_type", "to", "recipient", "type", "context", "text", NULL};
    static const char *text_keys[] = {"body", "preview_url", NULL};
    static const char *context_keys[] = {"message_id", NULL};
    const char *bad = NULL;
    const char *product = json_string_value (json_object_get (root, "messaging_product"));
    const char *recipient_type = json_string_value (json_object_get (root, "recipient_type"));
    const char *to = json_string_value (json_object_get (root, "to"));
    //  A business-scoped user id goes in "recipient"; "to" wins when both
    //  are given (Meta's Business-scoped user IDs page).
    const char *bsuid = to ? NULL : json_string_value (json_object_get (root, "recipient"));
    const char *type = json_string_value (json_object_get (root, "type"));
    json_t *context = json_object_get (root, "context");
    bool type_known = false;
    for (const char **t = types; type && *t; t++)
        if (strcmp (type, *t) == 0)
            type_known = true;
    char details[300] = "";
    if (!json_is_object (root))
        snprintf (details, sizeof details, "The request body is not a JSON object: %.200s",
                  root ? "" : error.text);
    else if (!product)
        snprintf (details, sizeof details, "The parameter messaging_product is required.");
    else if (strcmp (product, "whatsapp") != 0)
        snprintf (details, sizeof details,
                  "Param messaging_product must be one of {WHATSAPP} - got \"%.40s\".", product);
    else if (!recipient_type)
        snprintf (details, sizeof details, "The parameter recipient_type is required.");
    else if (strcmp (recipient_type, "individual") && strcmp (recipient_type, "group"))
        snprintf (details, sizeof details,
                  "Param recipient_type must be one of {individual, group} - got \"%.40s\".",
                  recipient_type);
    else if (!to && !bsuid)
        snprintf (details, sizeof details, "The parameter to is required.");
    else if (bsuid && !sb_bsuid_valid (bsuid))
        snprintf (details, sizeof details,
                  "Param recipient must be a business-scoped user id - got \"%.40s\".", bsuid);
    else if (to && !s_is_wa_number (to, digits, sizeof digits))
        snprintf (details, sizeof details, "Param to must be a phone number - got \"%.40s\".", to);
    else if (!type)
        snprintf (details, sizeof details, "The parameter type is required.");
    else if (!type_known)
        snprintf (details, sizeof details,
                  "Param type must be one of {text, audio, document, image, location, video, "
                  "sticker, reaction, interactive, template, contacts} - got \"%.40s\".",
                  type);
    else if (context
             && (!json_is_object (context) || !s_only_keys (context, context_keys, &bad)
                 || !json_is_string (json_object_get (context, "message_id"))
                 || !*json_string_value (json_object_get (context, "message_id"))))
        snprintf (details, sizeof details,
                  "Param context must be an object with a non-empty message_id%s%.40s.",
                  bad ? ", not " : "", bad ? bad : "");
    else if (strcmp (type, "text") == 0) {
        json_t *text = json_object_get (root, "text");
        json_t *text_body = json_object_get (text, "body");
        json_t *preview = json_object_get (text, "preview_url");
        if (!s_only_keys (root, base_keys, &bad))
            snprintf (details, sizeof details, "Unexpected key \"%.40s\" on param \"message\".",
                      bad);
        else if (!json_is_object (text))
            snprintf (details, sizeof details, "The parameter text is required.");
        else if (!s_only_keys (text, text_keys, &bad))
            snprintf (details, sizeof details, "Unexpected key \"%.40s\" on param \"text\".", bad);
        else if (!json_is_string (text_body) || !*json_string_value (text_body))
            snprintf (details, sizeof details, "The parameter text['body'] is required.");
        else if (sb_sandbox_utf8_length (json_string_value (text_body)) > S_MAX_TEXT)
            snprintf (details, sizeof details,
                      "Param text['body'] must be at most 4096 characters long.");
        else if (preview && !json_is_boolean (preview))
            snprintf (details, sizeof details, "Param text['preview_url'] must be a boolean.");
    }
    else if (!json_is_object (json_object_get (root, type)))
        snprintf (details, sizeof details, "The parameter %s is required.", type);

    if (*details) {
        snprintf (message, sizeof message, "(#100) %s", details);
        sb_sandbox_meta_error (answer, 400, 100, message, details);
    }
    else {
        char wamid[sizeof answer->id];
        //  A BSUID send: contacts[] has user_id and no wa_id.
        sb_fakeprov_wamid (wamid, sizeof wamid, bsuid ? "0" : digits, SB_FAKEPROV_OUTBOUND);
        json_t *reply =
            json_pack ("{s:s, s:[{s:s, s:s}], s:[{s:s}]}", "messaging_product", "whatsapp",
                       "contacts", "input", bsuid ? bsuid : to, bsuid ? "user_id" : "wa_id",
                       bsuid ? bsuid : digits, "messages", "id", wamid);
        snprintf (answer->id, sizeof answer->id, "%s", wamid);
        sb_sandbox_answer_json (answer, 200, reply);
        if (*self->callbacks)
            s_meta_callbacks (self, phone_number_id, wamid, bsuid ? bsuid : digits);
    }
    json_decref (root);
}
