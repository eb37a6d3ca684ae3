/*  sb_sandbox_state: the providers' configuration the sandbox's management
    APIs read and change (see sb_sandbox_state.h).

    Twilio numbers are kept as IncomingPhoneNumber objects in the shape of
    the API's fetch example (tests/conformance/provider-api/
    twilio-incoming-phone-number.json: unset URLs are "", as Twilio answers
    them), services as Messaging Service objects (twilio-messaging-
    service.json) plus the PN sids of their numbers, Meta apps as {id,
    subscriptions} and WABAs as {id, subscribed_apps: [{id, name}]}. The
    links a Messaging Service object carries name messaging.twilio.com, as
    Twilio's do; nothing here follows them.

    Limits: SB_SANDBOX_STATE_*_MAX numbers, services, apps and WABAs; at
    most S_FIELDS_MAX subscription fields; URLs and names of at most
    S_TEXT_MAX bytes. Lookups are linear: the bounds keep them short.
*/
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sb_fakeprov.h"
#include "sb_sandbox_state.h"
#include "sb_text.h"

#define S_TEXT_MAX 2048  //  bytes in a URL or a name
#define S_FIELDS_MAX 64  //  fields in one subscription
#define S_FIELD_MAX 64   //  bytes in one field name
#define S_MESSAGING_BASE "https://messaging.twilio.com/v1/Services/"

struct sb_sandbox_state_t {
    pthread_mutex_t lock;  //  guards everything below
    char *account_sid;     //  TWILIO_ACCOUNT_SID ("" when unset)
    char *meta_app_id;     //  --meta-app-id ("0": see last_app)
    char last_app[32];     //  app last subscribed through /subscriptions
    json_t *numbers;       //  IncomingPhoneNumber objects, oldest first
    json_t *services;      //  Messaging Service objects, plus "phone_numbers": [PN sid]
    json_t *apps;          //  [{id, subscriptions: [...]}]
    json_t *wabas;         //  [{id, subscribed_apps: [{id, name}]}]
};

//  --------------------------------------------------------------------------
//  Checks

bool
sb_sandbox_is_sid (const char *text, const char *prefix)
{
    if (!text || strlen (text) != 34 || strncmp (text, prefix, 2) != 0)
        return false;
    for (const char *p = text + 2; *p; p++)
        if (!isxdigit ((unsigned char) *p))
            return false;
    return true;
}

bool
sb_sandbox_is_url (const char *text)
{
    const char *host = sb_text_url_host (text);
    if (!host || !*host || *host == '/' || *host == ':' || *host == '?')
        return false;
    for (const char *p = text; *p; p++)
        if ((unsigned char) *p <= ' ' || *p == 0x7f)
            return false;
    for (const char *p = host; *p && *p != '/' && *p != '?' && *p != '#'; p++)
        if (*p == '_')
            return false;  //  "underscores are not allowed" in StatusCallback hosts
    return true;
}

bool
sb_sandbox_is_e164 (const char *text)
{
    if (!text || *text++ != '+' || *text < '1' || *text > '9')
        return false;
    size_t n = strlen (text);
    if (n < 7 || n > 15)
        return false;
    for (; *text; text++)
        if (!isdigit ((unsigned char) *text))
            return false;
    return true;
}

bool
sb_sandbox_is_graph_id (const char *text)
{
    size_t n = text ? strlen (text) : 0;
    if (n < 1 || n > 30)
        return false;
    for (; *text; text++)
        if (!isdigit ((unsigned char) *text))
            return false;
    return true;
}

bool
sb_sandbox_is_graph_version (const char *text)
{
    if (!text || text[0] != 'v' || !isdigit ((unsigned char) text[1]) || strlen (text) > 16)
        return false;
    const char *dot = strchr (text, '.');
    if (!dot || !isdigit ((unsigned char) dot[1]))
        return false;
    for (const char *p = text + 1; *p; p++)
        if (!isdigit ((unsigned char) *p) && p != dot)
            return false;
    return true;
}

//  --------------------------------------------------------------------------
//  Lifetime

sb_sandbox_state_t *
sb_sandbox_state_new (const char *account_sid, const char *meta_app_id)
{
    sb_sandbox_state_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init (&self->lock, NULL);
    self->account_sid = strdup (account_sid);
    self->meta_app_id = strdup (meta_app_id);
    self->numbers = json_array ();
    self->services = json_array ();
    self->apps = json_array ();
    self->wabas = json_array ();
    if (!self->account_sid || !self->meta_app_id || !self->numbers || !self->services || !self->apps
        || !self->wabas)
        sb_sandbox_state_destroy (&self);
    return self;
}

void
sb_sandbox_state_destroy (sb_sandbox_state_t **self_p)
{
    sb_sandbox_state_t *self = *self_p;
    if (!self)
        return;
    json_decref (self->numbers);
    json_decref (self->services);
    json_decref (self->apps);
    json_decref (self->wabas);
    free (self->account_sid);
    free (self->meta_app_id);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

void
sb_sandbox_state_clear (sb_sandbox_state_t *self)
{
    pthread_mutex_lock (&self->lock);
    json_array_clear (self->numbers);
    json_array_clear (self->services);
    json_array_clear (self->apps);
    json_array_clear (self->wabas);
    self->last_app[0] = 0;
    pthread_mutex_unlock (&self->lock);
}

//  --------------------------------------------------------------------------
//  Helpers

static void s_err (sb_sandbox_state_err_t *err, int status, int code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static void
s_err (sb_sandbox_state_err_t *err, int status, int code, const char *fmt, ...)
{
    err->status = status;
    err->code = code;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err->message, sizeof err->message, fmt, args);
    va_end (args);
}

//  The element of array whose key equals value, or NULL (borrowed).
static json_t *
s_find (json_t *array, const char *key, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach (array, i, item) {
        const char *text = json_string_value (json_object_get (item, key));
        if (text && strcmp (text, value) == 0)
            return item;
    }
    return NULL;
}

//  Twilio's friendly name of a number: "(415) 555-0100" for +1 numbers,
//  the number itself for the others.
static void
s_friendly_name (const char *e164, char *out, size_t size)
{
    if (strlen (e164) == 12 && strncmp (e164, "+1", 2) == 0)
        snprintf (out, size, "(%.3s) %.3s-%.4s", e164 + 2, e164 + 5, e164 + 8);
    else
        snprintf (out, size, "%s", e164);
}

//  ISO 8601 UTC to the second, as the Messaging API writes dates.
static void
s_iso8601 (char *out, size_t size)
{
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    strftime (out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

//  A new IncomingPhoneNumber object, with empty URLs.
static json_t *
s_number_new (const char *account, const char *e164)
{
    char sid[40], date[SB_FAKEPROV_DATE_SIZE], friendly[40], uri[160];
    sb_fakeprov_hex_id (sid, sizeof sid, "PN", 32, false);
    sb_fakeprov_rfc2822 (time (NULL), date, sizeof date);
    s_friendly_name (e164, friendly, sizeof friendly);
    snprintf (uri, sizeof uri, "/2010-04-01/Accounts/%s/IncomingPhoneNumbers/%s.json", account,
              sid);
    json_t *number = json_pack (
        "{s:s, s:s, s:n, s:s, s:b, s:{s:b, s:b, s:b, s:b}, s:s, s:s, s:s, s:n, s:s, s:s, s:n,"
        " s:s, s:s, s:s}",
        "account_sid", account, "address_requirements", "none", "address_sid", "api_version",
        "2010-04-01", "beta", false, "capabilities", "voice", true, "sms", true, "mms", true, "fax",
        false, "date_created", date, "date_updated", date, "emergency_status", "Inactive",
        "emergency_address_sid", "emergency_address_status", "unregistered", "friendly_name",
        friendly, "identity_sid", "origin", "twilio", "phone_number", e164, "sid", sid);
    json_t *rest = json_pack (
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:s,"
        " s:s, s:n, s:s}",
        "sms_application_sid", "", "sms_fallback_method", "POST", "sms_fallback_url", "",
        "sms_method", "POST", "sms_url", "", "status_callback", "", "status_callback_method",
        "POST", "trunk_sid", "uri", uri, "voice_application_sid", "", "voice_caller_id_lookup",
        false, "voice_fallback_method", "POST", "voice_fallback_url", "", "voice_method", "POST",
        "voice_url", "", "voice_receive_mode", "voice", "status", "in-use", "bundle_sid", "type",
        "local");
    if (!number || !rest || json_object_update (number, rest)) {
        json_decref (number);
        number = NULL;
    }
    json_decref (rest);
    return number;
}

//  A request parameter and the number field it sets.
typedef struct {
    const char *param;  //  the API's parameter
    const char *field;  //  the number object's field
    char kind;          //  'u' URL, 'm' method, 't' text, 's' SID (2-letter prefix in sid)
    const char *sid;    //  for 's': the SID's prefix
} s_param_t;

static const s_param_t s_update_params[] = {
    {"SmsUrl", "sms_url", 'u', NULL},
    {"SmsMethod", "sms_method", 'm', NULL},
    {"SmsFallbackUrl", "sms_fallback_url", 'u', NULL},
    {"SmsFallbackMethod", "sms_fallback_method", 'm', NULL},
    {"VoiceUrl", "voice_url", 'u', NULL},
    {"VoiceMethod", "voice_method", 'm', NULL},
    {"VoiceFallbackUrl", "voice_fallback_url", 'u', NULL},
    {"VoiceFallbackMethod", "voice_fallback_method", 'm', NULL},
    {"StatusCallback", "status_callback", 'u', NULL},
    {"StatusCallbackMethod", "status_callback_method", 'm', NULL},
    {"FriendlyName", "friendly_name", 't', NULL},
    {NULL, NULL, 0, NULL},
};

static const s_param_t s_seed_params[] = {
    {"SmsUrl", "sms_url", 'u', NULL},
    {"VoiceUrl", "voice_url", 'u', NULL},
    {"StatusCallback", "status_callback", 'u', NULL},
    {"SmsMethod", "sms_method", 'm', NULL},
    {"VoiceMethod", "voice_method", 'm', NULL},
    {"StatusCallbackMethod", "status_callback_method", 'm', NULL},
    {"SmsApplicationSid", "sms_application_sid", 's', "AP"},
    {"VoiceApplicationSid", "voice_application_sid", 's', "AP"},
    {"TrunkSid", "trunk_sid", 's', "TK"},
    {NULL, NULL, 0, NULL},
};

//  Check every parameter of the table form gives. 0, or -1 with err.
static int
s_params_check (const s_param_t *params, const sb_form_t *form, sb_sandbox_state_err_t *err)
{
    for (const s_param_t *p = params; p->param; p++) {
        const char *value = sb_form_get (form, p->param);
        if (!value)
            continue;
        if (strlen (value) > S_TEXT_MAX) {
            s_err (err, 400, p->kind == 'u' ? 21402 : 20001, "%s is too long", p->param);
            return -1;
        }
        if (p->kind == 'u' && *value && !sb_sandbox_is_url (value)) {
            s_err (err, 400, 21402, "%s is not a valid URL: %.200s", p->param, value);
            return -1;
        }
        if (p->kind == 'm' && strcasecmp (value, "GET") != 0 && strcasecmp (value, "POST") != 0) {
            s_err (err, 400, 21403, "%s is not valid. Valid Method values are GET or POST.",
                   p->param);
            return -1;
        }
        if (p->kind == 's' && *value && !sb_sandbox_is_sid (value, p->sid)) {
            s_err (err, 400, 20001, "%s must be a %s SID: %.60s", p->param, p->sid, value);
            return -1;
        }
    }
    return 0;
}

//  Apply the checked parameters of the table to number; touch date_updated.
static void
s_params_apply (const s_param_t *params, const sb_form_t *form, json_t *number)
{
    bool changed = false;
    for (const s_param_t *p = params; p->param; p++) {
        const char *value = sb_form_get (form, p->param);
        if (!value)
            continue;
        char method[8];
        if (p->kind == 'm') {
            snprintf (method, sizeof method, "%s", strcasecmp (value, "GET") == 0 ? "GET" : "POST");
            value = method;
        }
        json_object_set_new (number, p->field,
                             p->kind == 's' && !*value ? json_null () : json_string (value));
        changed = true;
    }
    if (changed) {
        char date[SB_FAKEPROV_DATE_SIZE];
        sb_fakeprov_rfc2822 (time (NULL), date, sizeof date);
        json_object_set_new (number, "date_updated", json_string (date));
    }
}

//  --------------------------------------------------------------------------
//  Twilio numbers

json_t *
sb_sandbox_state_numbers (sb_sandbox_state_t *self, const char *phone_number)
{
    json_t *list = json_array ();
    pthread_mutex_lock (&self->lock);
    size_t i;
    json_t *number;
    json_array_foreach (self->numbers, i, number) {
        const char *e164 = json_string_value (json_object_get (number, "phone_number"));
        if (list && (!phone_number || !*phone_number || strcmp (e164, phone_number) == 0))
            json_array_append_new (list, json_deep_copy (number));
    }
    pthread_mutex_unlock (&self->lock);
    return list;
}

static void
s_not_found (sb_sandbox_state_err_t *err, const char *what, const char *sid)
{
    s_err (err, 404, 20404, "The requested resource %s%.40s was not found", what, sid);
}

json_t *
sb_sandbox_state_number (sb_sandbox_state_t *self, const char *sid, sb_sandbox_state_err_t *err)
{
    pthread_mutex_lock (&self->lock);
    json_t *number = s_find (self->numbers, "sid", sid);
    json_t *copy = number ? json_deep_copy (number) : NULL;
    pthread_mutex_unlock (&self->lock);
    if (!number)
        s_not_found (err, "IncomingPhoneNumber ", sid);
    return copy;
}

json_t *
sb_sandbox_state_number_update (sb_sandbox_state_t *self, const char *sid, const sb_form_t *form,
                                sb_sandbox_state_err_t *err)
{
    if (s_params_check (s_update_params, form, err))
        return NULL;
    pthread_mutex_lock (&self->lock);
    json_t *number = s_find (self->numbers, "sid", sid);
    if (number)
        s_params_apply (s_update_params, form, number);
    json_t *copy = number ? json_deep_copy (number) : NULL;
    pthread_mutex_unlock (&self->lock);
    if (!number)
        s_not_found (err, "IncomingPhoneNumber ", sid);
    return copy;
}

json_t *
sb_sandbox_state_number_seed (sb_sandbox_state_t *self, const sb_form_t *form,
                              sb_sandbox_state_err_t *err)
{
    const char *e164 = sb_form_get (form, "PhoneNumber");
    if (!sb_sandbox_is_e164 (e164)) {
        s_err (err, 400, 21421, "PhoneNumber is invalid: %.40s", e164 ? e164 : "(none)");
        return NULL;
    }
    if (s_params_check (s_seed_params, form, err))
        return NULL;
    json_t *copy = NULL;
    pthread_mutex_lock (&self->lock);
    json_t *number = s_find (self->numbers, "phone_number", e164);
    if (!number && json_array_size (self->numbers) >= SB_SANDBOX_STATE_NUMBERS_MAX)
        s_err (err, 400, 21452, "The sandbox holds at most %d phone numbers",
               SB_SANDBOX_STATE_NUMBERS_MAX);
    else if (!number && (number = s_number_new (self->account_sid, e164)) != NULL)
        json_array_append_new (self->numbers, number);
    else if (!number)
        s_err (err, 500, 20500, "Internal Server Error");
    if (number) {
        s_params_apply (s_seed_params, form, number);
        copy = json_deep_copy (number);
    }
    pthread_mutex_unlock (&self->lock);
    return copy;
}

//  --------------------------------------------------------------------------
//  Twilio Messaging Services

//  The ISO 3166 country of a few calling codes; "US" for the others (the
//  sandbox's numbers are test numbers; nothing reads this but a display).
static const char *
s_country (const char *e164)
{
    static const struct {
        const char *prefix, *country;
    } codes[] = {{"+44", "GB"}, {"+49", "DE"}, {"+33", "FR"}, {"+34", "ES"},
                 {"+39", "IT"}, {"+31", "NL"}, {"+61", "AU"}, {"+55", "BR"},
                 {"+52", "MX"}, {"+91", "IN"}, {"+81", "JP"}, {NULL, NULL}};
    for (int i = 0; codes[i].prefix; i++)
        if (strncmp (e164, codes[i].prefix, strlen (codes[i].prefix)) == 0)
            return codes[i].country;
    return "US";
}

json_t *
sb_sandbox_state_service_seed (sb_sandbox_state_t *self, const sb_form_t *form,
                               sb_sandbox_state_err_t *err)
{
    memset (err, 0, sizeof *err);
    const char *name = sb_form_get (form, "FriendlyName");
    const char *inbound = sb_form_get (form, "InboundRequestUrl");
    const char *on_number = sb_form_get (form, "UseInboundWebhookOnNumber");
    if (name && strlen (name) > S_TEXT_MAX) {
        s_err (err, 400, 20001, "FriendlyName is too long");
        return NULL;
    }
    if (inbound && *inbound && (strlen (inbound) > S_TEXT_MAX || !sb_sandbox_is_url (inbound))) {
        s_err (err, 400, 21402, "InboundRequestUrl is not a valid URL: %.200s", inbound);
        return NULL;
    }
    if (on_number && strcmp (on_number, "true") != 0 && strcmp (on_number, "false") != 0) {
        s_err (err, 400, 20001, "UseInboundWebhookOnNumber must be true or false");
        return NULL;
    }
    for (size_t i = 0; i < sb_form_size (form); i++)
        if (strcmp (sb_form_key (form, i), "PhoneNumber") == 0
            && !sb_sandbox_is_e164 (sb_form_value (form, i))) {
            s_err (err, 400, 21421, "PhoneNumber is invalid: %.40s", sb_form_value (form, i));
            return NULL;
        }
    char sid[40], date[32], url[120];
    sb_fakeprov_hex_id (sid, sizeof sid, "MG", 32, false);
    s_iso8601 (date, sizeof date);
    snprintf (url, sizeof url, S_MESSAGING_BASE "%s", sid);
    static const char *links[] = {"phone_numbers",
                                  "PhoneNumbers",
                                  "short_codes",
                                  "ShortCodes",
                                  "alpha_senders",
                                  "AlphaSenders",
                                  "messages",
                                  "Messages",
                                  "us_app_to_person",
                                  "Compliance/Usa2p",
                                  "us_app_to_person_usecases",
                                  "Compliance/Usa2p/Usecases",
                                  "channel_senders",
                                  "ChannelSenders",
                                  "destination_alpha_senders",
                                  "DestinationAlphaSenders",
                                  NULL};
    json_t *link_object = json_object ();
    for (int i = 0; link_object && links[i]; i += 2) {
        char link[160];
        snprintf (link, sizeof link, "%s/%s", url, links[i + 1]);
        json_object_set_new (link_object, links[i], json_string (link));
    }
    json_t *service = json_pack (
        "{s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:b, s:i, s:s, s:b, s:o, s:s, s:n, s:s,"
        " s:n, s:s, s:b, s:b, s:o, s:s, s:[]}",
        "account_sid", self->account_sid, "friendly_name", name ? name : "", "sid", sid,
        "date_created", date, "date_updated", date, "sticky_sender", true, "mms_converter", true,
        "smart_encoding", true, "fallback_to_long_code", true, "area_code_geomatch", true,
        "validity_period", 14400, "scan_message_content", "inherit", "synchronous_validation", true,
        "inbound_request_url", inbound && *inbound ? json_string (inbound) : json_null (),
        "inbound_method", "POST", "fallback_url", "fallback_method", "POST", "status_callback",
        "usecase", "undeclared", "us_app_to_person_registered", false,
        "use_inbound_webhook_on_number", on_number && strcmp (on_number, "true") == 0, "links",
        link_object ? link_object : json_object (), "url", url, "phone_numbers");
    if (!service) {
        s_err (err, 400, 20001, "FriendlyName is not valid UTF-8");
        return NULL;
    }
    json_t *copy = NULL;
    pthread_mutex_lock (&self->lock);
    json_t *members = json_object_get (service, "phone_numbers");
    for (size_t i = 0; i < sb_form_size (form) && !err->status; i++) {
        if (strcmp (sb_form_key (form, i), "PhoneNumber") != 0)
            continue;
        json_t *number = s_find (self->numbers, "phone_number", sb_form_value (form, i));
        if (!number)
            s_err (err, 404, 20404, "The requested resource PhoneNumber %.40s was not found",
                   sb_form_value (form, i));
        else
            json_array_append (members, json_object_get (number, "sid"));
    }
    if (!err->status && json_array_size (self->services) >= SB_SANDBOX_STATE_SERVICES_MAX)
        s_err (err, 400, 21102, "Reached maximum number of Services (%d)",
               SB_SANDBOX_STATE_SERVICES_MAX);
    if (!err->status) {
        json_array_append (self->services, service);
        copy = json_deep_copy (service);
        json_object_del (copy, "phone_numbers");
    }
    pthread_mutex_unlock (&self->lock);
    json_decref (service);
    return copy;
}

//  A service as the API shows it: without its numbers.
static json_t *
s_service_public (json_t *service)
{
    json_t *copy = json_deep_copy (service);
    json_object_del (copy, "phone_numbers");
    return copy;
}

json_t *
sb_sandbox_state_services (sb_sandbox_state_t *self)
{
    json_t *list = json_array ();
    pthread_mutex_lock (&self->lock);
    size_t i;
    json_t *service;
    json_array_foreach (self->services, i, service)
        json_array_append_new (list, s_service_public (service));
    pthread_mutex_unlock (&self->lock);
    return list;
}

json_t *
sb_sandbox_state_service (sb_sandbox_state_t *self, const char *sid, sb_sandbox_state_err_t *err)
{
    pthread_mutex_lock (&self->lock);
    json_t *service = s_find (self->services, "sid", sid);
    json_t *copy = service ? s_service_public (service) : NULL;
    pthread_mutex_unlock (&self->lock);
    if (!service)
        s_not_found (err, "Service ", sid);
    return copy;
}

//  A service's members in the PhoneNumbers list's shape (lock held).
static json_t *
s_members (sb_sandbox_state_t *self, json_t *service)
{
    const char *service_sid = json_string_value (json_object_get (service, "sid"));
    json_t *list = json_array ();
    size_t i;
    json_t *member;
    json_array_foreach (json_object_get (service, "phone_numbers"), i, member) {
        json_t *number = s_find (self->numbers, "sid", json_string_value (member));
        if (!number || !list)
            continue;  //  a number no longer held (never removed today)
        const char *pn = json_string_value (json_object_get (number, "sid"));
        const char *e164 = json_string_value (json_object_get (number, "phone_number"));
        char url[160], date[32];
        snprintf (url, sizeof url, S_MESSAGING_BASE "%s/PhoneNumbers/%s", service_sid, pn);
        s_iso8601 (date, sizeof date);
        json_array_append_new (
            list, json_pack ("{s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:[], s:s}", "account_sid",
                             self->account_sid, "service_sid", service_sid, "sid", pn,
                             "date_created", json_object_get (service, "date_created"),
                             "date_updated", date, "phone_number", e164, "country_code",
                             s_country (e164), "capabilities", "url", url));
    }
    return list;
}

json_t *
sb_sandbox_state_service_numbers (sb_sandbox_state_t *self, const char *sid,
                                  sb_sandbox_state_err_t *err)
{
    pthread_mutex_lock (&self->lock);
    json_t *service = s_find (self->services, "sid", sid);
    json_t *list = service ? s_members (self, service) : NULL;
    pthread_mutex_unlock (&self->lock);
    if (!service)
        s_not_found (err, "Service ", sid);
    return list;
}

//  --------------------------------------------------------------------------
//  Meta

//  The element of array with this id, created with an empty list under
//  list_key when absent and fewer than max are held (lock held). NULL
//  with err when full.
static json_t *
s_get_or_create (json_t *array, const char *id, const char *list_key, size_t max, const char *what,
                 sb_sandbox_state_err_t *err)
{
    json_t *item = s_find (array, "id", id);
    if (item)
        return item;
    if (json_array_size (array) >= max) {
        s_err (err, 400, 100, "(#100) The sandbox holds at most %zu %s", max, what);
        return NULL;
    }
    item = json_pack ("{s:s, s:[]}", "id", id, list_key);
    if (!item || json_array_append_new (array, item)) {
        s_err (err, 500, 1, "An unknown error occurred");
        return NULL;
    }
    return item;
}

json_t *
sb_sandbox_state_subscriptions (sb_sandbox_state_t *self, const char *app_id,
                                sb_sandbox_state_err_t *err)
{
    pthread_mutex_lock (&self->lock);
    json_t *app = s_get_or_create (self->apps, app_id, "subscriptions", SB_SANDBOX_STATE_APPS_MAX,
                                   "apps", err);
    json_t *copy = app ? json_deep_copy (json_object_get (app, "subscriptions")) : NULL;
    pthread_mutex_unlock (&self->lock);
    return copy;
}

//  The fields of "a, b,c" as [{name, version}], or NULL when one is empty,
//  too long or not [a-z0-9_], or there are too many.
static json_t *
s_fields (const char *text, const char *version)
{
    json_t *fields = json_array ();
    const char *p = text;
    while (fields && *p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn (p, ",");
        size_t len = n;
        while (len > 0 && p[len - 1] == ' ')
            len--;
        bool ok = len > 0 && len <= S_FIELD_MAX && json_array_size (fields) < S_FIELDS_MAX;
        for (size_t i = 0; ok && i < len; i++)
            if (!islower ((unsigned char) p[i]) && !isdigit ((unsigned char) p[i]) && p[i] != '_')
                ok = false;
        if (!ok) {
            json_decref (fields);
            return NULL;
        }
        char name[S_FIELD_MAX + 1];
        memcpy (name, p, len);
        name[len] = 0;
        bool seen = false;
        size_t i;
        json_t *field;
        json_array_foreach (fields, i, field)
            if (strcmp (json_string_value (json_object_get (field, "name")), name) == 0)
                seen = true;
        if (!seen)
            json_array_append_new (fields,
                                   json_pack ("{s:s, s:s}", "name", name, "version", version));
        p += n;
        if (*p == ',')
            p++;
    }
    if (fields && json_array_size (fields) == 0) {
        json_decref (fields);
        return NULL;
    }
    return fields;
}

int
sb_sandbox_state_subscribe_check (const sb_form_t *form, sb_sandbox_state_err_t *err)
{
    static const char *required[] = {"object", "callback_url", "fields", "verify_token", NULL};
    for (const char **name = required; *name; name++) {
        const char *value = sb_form_get (form, *name);
        if (!value || !*value) {
            s_err (err, 400, 100, "(#100) The parameter %s is required", *name);
            return -1;
        }
        if (strlen (value) > S_TEXT_MAX) {
            s_err (err, 400, 100, "(#100) Param %s is too long", *name);
            return -1;
        }
    }
    static const char *objects[] = {
        "user", "page", "permissions", "payments", "whatsapp_business_account", NULL};
    const char *object = sb_form_get (form, "object");
    bool known = false;
    for (const char **o = objects; *o; o++)
        if (strcmp (object, *o) == 0)
            known = true;
    if (!known) {
        s_err (err, 400, 100,
               "(#100) Param object must be one of {user, page, permissions, payments, "
               "whatsapp_business_account} - got \"%.40s\"",
               object);
        return -1;
    }
    if (!sb_sandbox_is_url (sb_form_get (form, "callback_url"))) {
        s_err (err, 400, 100, "(#100) Param callback_url must be a valid URL");
        return -1;
    }
    json_t *fields = s_fields (sb_form_get (form, "fields"), "v0.0");
    if (!fields) {
        s_err (err, 400, 100, "(#100) Param fields must be a comma-separated list of field names");
        return -1;
    }
    json_decref (fields);
    return 0;
}

int
sb_sandbox_state_subscribe (sb_sandbox_state_t *self, const char *app_id, const sb_form_t *form,
                            const char *version, sb_sandbox_state_err_t *err)
{
    const char *object = sb_form_get (form, "object");
    json_t *fields = s_fields (sb_form_get (form, "fields"), version);
    json_t *subscription =
        fields ? json_pack ("{s:s, s:s, s:b, s:o}", "object", object, "callback_url",
                            sb_form_get (form, "callback_url"), "active", true, "fields", fields)
               : NULL;
    if (!subscription) {
        s_err (err, 400, 100, "(#100) Invalid parameter");
        return -1;
    }
    pthread_mutex_lock (&self->lock);
    json_t *app = s_get_or_create (self->apps, app_id, "subscriptions", SB_SANDBOX_STATE_APPS_MAX,
                                   "apps", err);
    if (app) {
        json_t *list = json_object_get (app, "subscriptions");
        size_t i;
        json_t *old;
        json_array_foreach (list, i, old)
            if (strcmp (json_string_value (json_object_get (old, "object")), object) == 0)
                break;
        if (i < json_array_size (list))
            json_array_set (list, i, subscription);
        else
            json_array_append (list, subscription);
        snprintf (self->last_app, sizeof self->last_app, "%s", app_id);
    }
    pthread_mutex_unlock (&self->lock);
    json_decref (subscription);
    return app ? 0 : -1;
}

json_t *
sb_sandbox_state_subscribed_apps (sb_sandbox_state_t *self, const char *waba_id,
                                  sb_sandbox_state_err_t *err)
{
    pthread_mutex_lock (&self->lock);
    json_t *waba = s_get_or_create (self->wabas, waba_id, "subscribed_apps",
                                    SB_SANDBOX_STATE_WABAS_MAX, "WABAs", err);
    json_t *data = waba ? json_array () : NULL;
    size_t i;
    json_t *app;
    json_array_foreach (waba ? json_object_get (waba, "subscribed_apps") : NULL, i, app) {
        const char *id = json_string_value (json_object_get (app, "id"));
        char link[96];
        snprintf (link, sizeof link, "https://www.facebook.com/games/?app_id=%s", id);
        json_array_append_new (data,
                               json_pack ("{s:{s:s, s:s, s:O}}", "whatsapp_business_api_data", "id",
                                          id, "link", link, "name", json_object_get (app, "name")));
    }
    pthread_mutex_unlock (&self->lock);
    return data ? json_pack ("{s:o}", "data", data) : NULL;
}

int
sb_sandbox_state_waba_app (sb_sandbox_state_t *self, const char *waba_id, bool subscribe,
                           sb_sandbox_state_err_t *err)
{
    pthread_mutex_lock (&self->lock);
    const char *app_id = strcmp (self->meta_app_id, "0") != 0 ? self->meta_app_id
                         : *self->last_app                    ? self->last_app
                                                              : "1";
    json_t *waba = s_get_or_create (self->wabas, waba_id, "subscribed_apps",
                                    SB_SANDBOX_STATE_WABAS_MAX, "WABAs", err);
    json_t *list = json_object_get (waba, "subscribed_apps");
    json_t *app = s_find (list, "id", app_id);
    if (waba && subscribe && !app) {
        char name[64];
        snprintf (name, sizeof name, "Sandbox App %.40s", app_id);
        json_array_append_new (list, json_pack ("{s:s, s:s}", "id", app_id, "name", name));
    }
    else if (waba && !subscribe && app) {
        size_t i;
        json_t *item;
        json_array_foreach (list, i, item)
            if (item == app)
                break;
        json_array_remove (list, i);
    }
    pthread_mutex_unlock (&self->lock);
    return waba ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  The whole state

json_t *
sb_sandbox_state_dump (sb_sandbox_state_t *self)
{
    pthread_mutex_lock (&self->lock);
    json_t *services = json_array ();
    size_t i;
    json_t *service;
    json_array_foreach (self->services, i, service) {
        json_t *copy = s_service_public (service);
        if (copy)
            json_object_set_new (copy, "phone_numbers", s_members (self, service));
        json_array_append_new (services, copy);
    }
    json_t *state =
        json_pack ("{s:{s:O, s:o}, s:{s:O, s:O}}", "twilio", "numbers", self->numbers, "services",
                   services, "meta", "apps", self->apps, "wabas", self->wabas);
    //  Copies, so the answer is not shared with what later requests change.
    json_t *copy = json_deep_copy (state);
    json_decref (state);
    pthread_mutex_unlock (&self->lock);
    return copy;
}
