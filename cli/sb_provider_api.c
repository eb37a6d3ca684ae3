/*  sb_provider_api: the providers' management APIs for `switchboard
    connect` and `switchboard doctor`, and this install's webhook URLs.

    The requests are those of the providers' own documents, trimmed into
    tests/conformance/provider-api/ (tests/conformance/README.md §9):
      Twilio   GET  {TWILIO_API_BASE}/2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json
                    ?PhoneNumber=+E164 (partial numbers match too: the
                    answer is filtered for the exact number here)
               POST .../IncomingPhoneNumbers/{PN}.json  SmsUrl, SmsMethod,
                    VoiceUrl, VoiceMethod, StatusCallback, StatusCallbackMethod
               GET  {TWILIO_MESSAGING_API_BASE}/v1/Services?PageSize=...,
                    then /v1/Services/{MG}/PhoneNumbers?PageSize=... for each
                    (a number does not say which service has it)
               HTTP Basic: TWILIO_API_KEY + TWILIO_API_SECRET when set,
               else TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN
      Meta     GET/POST {META_API_BASE}/{META_API_VERSION}/{app-id}/subscriptions
                    with the app access token "{app-id}|{META_APP_SECRET}"
                    (Authorization: Bearer, so it stays out of URLs and logs);
                    POST form object=whatsapp_business_account,
                    callback_url, verify_token, fields
               GET/POST .../{waba-id}/subscribed_apps, Bearer META_ACCESS_TOKEN

    Limits: one page of each list is read, as large as the API allows for
    the Messaging Services (S_PAGE_SIZE services, and as many numbers per
    service); an account with more services gets an error saying so rather
    than a silent "not in any service". Answers are capped at
    SB_PROVIDER_API_MAX_ANSWER bytes; each call has the client's deadline
    (CURLOPT_TIMEOUT_MS), and the Messaging Service search as a whole is
    bounded by S_PAGE_SIZE + 1 calls.
*/
#include "sb_provider_api.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb_form.h"
#include "sb_json.h"
#include "sb_text.h"

#define S_PAGE_SIZE 100  //  services (and numbers of a service) read in one page
#define S_META_OBJECT "whatsapp_business_account"

struct sb_provider_api_t {
    const sb_config_t *config;  //  the settings (borrowed)
    double timeout;             //  seconds per call
    FILE *dry_run;              //  where changing calls print instead of sending, or NULL
    CURL *curl;                 //  one easy handle, reused (keeps connections)
};

//  ---------------------------------------------------------------------
//  This install's webhook URLs

void
sb_provider_api_url_host (const char *url, char *out, size_t size)
{
    const char *host = url ? sb_text_url_host (url) : NULL;
    *out = 0;
    if (!host)
        return;
    size_t len;
    if (*host == '[') {
        host++;
        len = strcspn (host, "]");
    }
    else
        len = strcspn (host, ":/");
    snprintf (out, size, "%.*s", (int) len, host);
}

static sb_url_scope_t
s_host_scope (const char *host)
{
    size_t len = strlen (host);
    if (strcasecmp (host, "localhost") == 0
        || (len > 10 && strcasecmp (host + len - 10, ".localhost") == 0))
        return SB_URL_LOOPBACK;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton (AF_INET, host, &v4) == 1) {
        uint32_t a = ntohl (v4.s_addr);
        if ((a >> 24) == 127)
            return SB_URL_LOOPBACK;
        if ((a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 || (a >> 16) == 0xa9fe
            || (a >> 22) == (100u << 2 | 1))  //  10/8, 172.16/12, 192.168/16, 169.254/16, 100.64/10
            return SB_URL_PRIVATE;
        return SB_URL_PUBLIC;
    }
    if (inet_pton (AF_INET6, host, &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK (&v6))
            return SB_URL_LOOPBACK;
        if ((v6.s6_addr[0] & 0xfe) == 0xfc || IN6_IS_ADDR_LINKLOCAL (&v6))
            return SB_URL_PRIVATE;
        return SB_URL_PUBLIC;
    }
    if (!strchr (host, '.') || (len > 6 && strcasecmp (host + len - 6, ".local") == 0)
        || (len > 9 && strcasecmp (host + len - 9, ".internal") == 0)
        || (len > 4 && strcasecmp (host + len - 4, ".lan") == 0))
        return SB_URL_PRIVATE;
    return SB_URL_PUBLIC;
}

sb_url_scope_t
sb_provider_api_url_scope (const char *url)
{
    char host[256];
    sb_provider_api_url_host (url, host, sizeof host);
    return s_host_scope (host);
}

int
sb_provider_api_public_url_check (const sb_config_t *config, char *err, size_t err_size)
{
    if (!sb_config_has (config, SB_CFG_SB_PUBLIC_URL)) {
        sb_text_error (err, err_size,
                       "SB_PUBLIC_URL is not set: set it to the https URL the providers call "
                       "(in development the tunnel's, e.g. https://abc.ngrok.app)");
        return -1;
    }
    const char *url = sb_config_str (config, SB_CFG_SB_PUBLIC_URL);
    sb_url_scope_t scope = sb_provider_api_url_scope (url);
    if (scope != SB_URL_LOOPBACK && strncmp (url, "https://", 8) != 0) {
        sb_text_error (err, err_size,
                       "SB_PUBLIC_URL=%s is http:// on a %s host: Meta calls https URLs only, "
                       "and Twilio's requests would cross the network in clear; use https:// "
                       "(a TLS proxy in front of the ingress, a tunnel's https URL, or "
                       "SB_TLS_CERT)",
                       url, scope == SB_URL_PUBLIC ? "public" : "non-loopback");
        return -1;
    }
    return 0;
}

void
sb_provider_api_webhook_url (const sb_config_t *config, sb_provider_route_t route, char *out,
                             size_t size)
{
    static const char *paths[] = {
#define SB_ROUTE(id, path, metric, allow, use) path,
#include "sb_routes.h"
#undef SB_ROUTE
    };
    snprintf (out, size, "%s%s%s", sb_config_str (config, SB_CFG_SB_PUBLIC_URL),
              sb_config_str (config, SB_CFG_SB_PATH_PREFIX), paths[route]);
}

const char *
sb_provider_api_meta_fields (void)
{
    //  The fields ingress/sb_meta.c (s_field) gives kinds of their own, each
    //  a field of Meta's whatsapp_business_account webhook reference.
    return "messages,message_echoes,smb_message_echoes,calls,user_preferences,"
           "message_template_status_update,message_template_quality_update,"
           "message_template_components_update,template_category_update,account_alerts,"
           "account_update";
}

//  ---------------------------------------------------------------------
//  The client

sb_provider_api_t *
sb_provider_api_new (const sb_config_t *config, double timeout, FILE *dry_run)
{
    sb_provider_api_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = config;
    self->timeout = timeout;
    self->dry_run = dry_run;
    self->curl = curl_easy_init ();
    if (!self->curl)
        sb_provider_api_destroy (&self);
    return self;
}

void
sb_provider_api_destroy (sb_provider_api_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_provider_api_t *self = *self_p;
    if (self->curl)
        curl_easy_cleanup (self->curl);
    free (self);
    *self_p = NULL;
}

bool
sb_provider_api_twilio_ready (const sb_config_t *config, const char **missing)
{
    const sb_setting_t needed[] = {SB_CFG_TWILIO_ACCOUNT_SID,
                                   sb_config_has (config, SB_CFG_TWILIO_API_KEY)
                                       ? SB_CFG_TWILIO_API_SECRET
                                       : SB_CFG_TWILIO_AUTH_TOKEN};
    for (size_t i = 0; i < 2; i++)
        if (!sb_config_has (config, needed[i])) {
            *missing = sb_config_name (needed[i]);
            return false;
        }
    return true;
}

const char *
sb_provider_api_str (const json_t *object, const char *key)
{
    const char *value = json_string_value (json_object_get (object, key));
    return value ? value : "";
}

typedef struct {
    char *data;   //  the answer so far (NUL-terminated)
    size_t size;  //  bytes in data
    bool over;    //  past SB_PROVIDER_API_MAX_ANSWER
} s_body_t;

static size_t
s_on_body (char *data, size_t size, size_t nmemb, void *arg)
{
    s_body_t *body = arg;
    size_t n = size * nmemb;
    if (body->size + n > SB_PROVIDER_API_MAX_ANSWER) {
        body->over = true;
        return 0;  //  libcurl stops the transfer
    }
    char *grown = realloc (body->data, body->size + n + 1);
    if (!grown)
        return 0;
    memcpy (grown + body->size, data, n);
    body->data = grown;
    body->size += n;
    body->data[body->size] = 0;
    return n;
}

//  The provider's error in an answer, quoted: Twilio's {code, message,
//  more_info}, Meta's {error: {code, type, message, error_subcode,
//  error_user_msg}}, or the answer's first bytes.
static void
s_quote_error (const char *provider, long status, const json_t *json, const char *body, char *err,
               size_t err_size)
{
    const json_t *meta = json_object_get (json, "error");
    if (json_is_object (meta)) {
        const json_t *subcode = json_object_get (meta, "error_subcode");
        const char *user_msg = sb_provider_api_str (meta, "error_user_msg");
        char sub[48] = "";
        if (json_is_integer (subcode))
            snprintf (sub, sizeof sub, " subcode %lld", (long long) json_integer_value (subcode));
        sb_text_error (err, err_size, "%s answered %ld: code %lld%s (%s): %s%s%s", provider, status,
                       (long long) json_integer_value (json_object_get (meta, "code")), sub,
                       sb_provider_api_str (meta, "type"), sb_provider_api_str (meta, "message"),
                       *user_msg ? " " : "", user_msg);
        return;
    }
    const json_t *code = json_object_get (json, "code");
    if (json_is_integer (code)) {
        const char *more = sb_provider_api_str (json, "more_info");
        sb_text_error (err, err_size, "%s answered %ld: code %lld: %s%s%s", provider, status,
                       (long long) json_integer_value (code), sb_provider_api_str (json, "message"),
                       *more ? " " : "", more);
        return;
    }
    size_t line = body ? strcspn (body, "\r\n") : 0;
    sb_text_error (err, err_size, "%s answered %ld%s%.*s", provider, status, line ? ": " : "",
                   (int) (line > 200 ? 200 : line), body ? body : "");
}

//  One request: method to url with a form body (or none), authenticated as
//  Twilio (Basic) or with a Bearer token. 0 and the 2xx answer's JSON in
//  *answer (caller owns), or -1 with why in err.
static int
s_call (sb_provider_api_t *self, const char *provider, const char *method, const char *url,
        const char *bearer, const char *form, json_t **answer, char *err, size_t err_size)
{
    *answer = NULL;
    CURL *curl = self->curl;
    curl_easy_reset (curl);
    s_body_t body = {NULL, 0, false};
    char curl_err[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = curl_slist_append (NULL, "Accept: application/json");
    char *auth = bearer ? sb_text_join ("Authorization: Bearer ", bearer, NULL) : NULL;
    if (auth)
        headers = curl_slist_append (headers, auth);
    if (form)
        headers = curl_slist_append (headers, "Content-Type: application/x-www-form-urlencoded");
    int rc = -1;
    if (!headers || (bearer && !auth)) {
        sb_text_error (err, err_size, "out of memory");
        goto done;
    }
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, (long) (self->timeout * 1000));
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (curl, CURLOPT_USERAGENT, "switchboard/" SB_VERSION);
    if (strcmp (method, "GET") != 0)
        curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    if (form) {
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, form);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE, (long) strlen (form));
    }
    if (!bearer) {
        const sb_config_t *c = self->config;
        bool key = sb_config_has (c, SB_CFG_TWILIO_API_KEY);
        curl_easy_setopt (curl, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
        curl_easy_setopt (
            curl, CURLOPT_USERNAME,
            sb_config_str (c, key ? SB_CFG_TWILIO_API_KEY : SB_CFG_TWILIO_ACCOUNT_SID));
        curl_easy_setopt (
            curl, CURLOPT_PASSWORD,
            sb_config_str (c, key ? SB_CFG_TWILIO_API_SECRET : SB_CFG_TWILIO_AUTH_TOKEN));
    }
    CURLcode res = curl_easy_perform (curl);
    if (body.over) {
        sb_text_error (err, err_size, "%s %s: answer larger than %d bytes", method, url,
                       SB_PROVIDER_API_MAX_ANSWER);
        goto done;
    }
    if (res != CURLE_OK) {
        sb_text_error (err, err_size, "%s %s: %s", method, url,
                       *curl_err ? curl_err : curl_easy_strerror (res));
        goto done;
    }
    long status = 0;
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    json_error_t jerr;
    json_t *json = body.size ? sb_json_load (body.data, body.size, SB_JSON_MAX_DEPTH, &jerr) : NULL;
    if (status < 200 || status > 299) {
        s_quote_error (provider, status, json, body.data, err, err_size);
        json_decref (json);
        goto done;
    }
    if (!json_is_object (json)) {
        sb_text_error (err, err_size, "%s %s answered %ld with no JSON object", method, url,
                       status);
        json_decref (json);
        goto done;
    }
    *answer = json;
    rc = 0;
done:
    curl_slist_free_all (headers);
    free (auth);
    free (body.data);
    return rc;
}

//  A changing call in a dry run: print it instead. Secret values (the
//  verify token) are named, never printed.
static void
s_print_dry (sb_provider_api_t *self, const char *method, const char *url, const char *auth,
             const sb_form_t *form)
{
    fprintf (self->dry_run, "would send: %s %s (%s)\n", method, url, auth);
    for (size_t i = 0; form && i < sb_form_size (form); i++) {
        const char *key = sb_form_key (form, i);
        if (strcmp (key, "verify_token") == 0)
            fprintf (self->dry_run, "  %s=<META_VERIFY_TOKEN>\n", key);
        else
            fprintf (self->dry_run, "  %s=%s\n", key, sb_form_value (form, i));
    }
    fflush (self->dry_run);
}

//  ---------------------------------------------------------------------
//  Twilio

static bool
s_sid (const char *text, const char *prefix)
{
    if (strlen (text) != 34 || strncmp (text, prefix, 2) != 0)
        return false;
    for (size_t i = 2; i < 34; i++)
        if (sb_text_hex_value ((unsigned char) text[i]) < 0)
            return false;
    return true;
}

int
sb_provider_api_twilio_number (sb_provider_api_t *self, const char *number, json_t **found,
                               char *err, size_t err_size)
{
    *found = NULL;
    char *escaped = curl_easy_escape (self->curl, number, 0);
    if (!escaped) {
        sb_text_error (err, err_size, "out of memory");
        return -1;
    }
    char url[SB_PROVIDER_API_URL_SIZE];
    snprintf (url, sizeof url, "%s/2010-04-01/Accounts/%s/IncomingPhoneNumbers.json?PhoneNumber=%s",
              sb_config_str (self->config, SB_CFG_TWILIO_API_BASE),
              sb_config_str (self->config, SB_CFG_TWILIO_ACCOUNT_SID), escaped);
    curl_free (escaped);
    json_t *page;
    if (s_call (self, "Twilio", "GET", url, NULL, NULL, &page, err, err_size))
        return -1;
    //  PhoneNumber also matches partial numbers: keep the exact one.
    json_t *numbers = json_object_get (page, "incoming_phone_numbers");
    size_t i;
    json_t *item;
    json_array_foreach (numbers, i, item) {
        if (strcmp (sb_provider_api_str (item, "phone_number"), number) == 0) {
            if (!s_sid (sb_provider_api_str (item, "sid"), "PN")) {
                sb_text_error (err, err_size, "Twilio's answer for %s has no PN sid", number);
                json_decref (page);
                return -1;
            }
            *found = json_incref (item);
            break;
        }
    }
    json_decref (page);
    return 0;
}

int
sb_provider_api_twilio_number_update (sb_provider_api_t *self, const char *sid, const char *sms_url,
                                      const char *voice_url, const char *status_callback,
                                      json_t **after, char *err, size_t err_size)
{
    *after = NULL;
    if (!s_sid (sid, "PN")) {
        sb_text_error (err, err_size, "not a phone number sid: %s", sid);
        return -1;
    }
    char url[SB_PROVIDER_API_URL_SIZE];
    snprintf (url, sizeof url, "%s/2010-04-01/Accounts/%s/IncomingPhoneNumbers/%s.json",
              sb_config_str (self->config, SB_CFG_TWILIO_API_BASE),
              sb_config_str (self->config, SB_CFG_TWILIO_ACCOUNT_SID), sid);
    sb_form_t *form = sb_form_new ();
    char *body = NULL;
    int rc = -1;
    if (!form || sb_form_add (form, "SmsUrl", sms_url) || sb_form_add (form, "SmsMethod", "POST")
        || sb_form_add (form, "VoiceUrl", voice_url) || sb_form_add (form, "VoiceMethod", "POST")
        || sb_form_add (form, "StatusCallback", status_callback)
        || sb_form_add (form, "StatusCallbackMethod", "POST") || !(body = sb_form_encode (form))) {
        sb_text_error (err, err_size, "out of memory");
        goto done;
    }
    if (self->dry_run) {
        s_print_dry (self, "POST", url, "HTTP Basic auth", form);
        rc = 0;
        goto done;
    }
    rc = s_call (self, "Twilio", "POST", url, NULL, body, after, err, err_size);
done:
    free (body);
    sb_form_destroy (&form);
    return rc;
}

//  Whether the service sid's PhoneNumbers list has number.
static int
s_service_has (sb_provider_api_t *self, const char *sid, const char *number, bool *has, char *err,
               size_t err_size)
{
    char url[SB_PROVIDER_API_URL_SIZE];
    snprintf (url, sizeof url, "%s/v1/Services/%s/PhoneNumbers?PageSize=%d",
              sb_config_str (self->config, SB_CFG_TWILIO_MESSAGING_API_BASE), sid, S_PAGE_SIZE);
    json_t *page;
    if (s_call (self, "Twilio", "GET", url, NULL, NULL, &page, err, err_size))
        return -1;
    *has = false;
    size_t i;
    json_t *item;
    json_array_foreach (json_object_get (page, "phone_numbers"), i, item)
        *has = *has || strcmp (sb_provider_api_str (item, "phone_number"), number) == 0;
    bool more = *sb_provider_api_str (json_object_get (page, "meta"), "next_page_url");
    json_decref (page);
    if (!*has && more) {
        sb_text_error (err, err_size,
                       "Messaging Service %s has more than %d numbers: not all were read", sid,
                       S_PAGE_SIZE);
        return -1;
    }
    return 0;
}

int
sb_provider_api_twilio_service_of (sb_provider_api_t *self, const char *number, json_t **found,
                                   char *err, size_t err_size)
{
    *found = NULL;
    char url[SB_PROVIDER_API_URL_SIZE];
    snprintf (url, sizeof url, "%s/v1/Services?PageSize=%d",
              sb_config_str (self->config, SB_CFG_TWILIO_MESSAGING_API_BASE), S_PAGE_SIZE);
    json_t *page;
    if (s_call (self, "Twilio", "GET", url, NULL, NULL, &page, err, err_size))
        return -1;
    int rc = 0;
    size_t i;
    json_t *service;
    json_array_foreach (json_object_get (page, "services"), i, service) {
        const char *sid = sb_provider_api_str (service, "sid");
        bool has = false;
        if (!s_sid (sid, "MG"))
            continue;
        if ((rc = s_service_has (self, sid, number, &has, err, err_size)))
            break;
        if (has) {
            *found = json_incref (service);
            break;
        }
    }
    if (!rc && !*found && *sb_provider_api_str (json_object_get (page, "meta"), "next_page_url")) {
        sb_text_error (err, err_size,
                       "the account has more than %d Messaging Services: not all were read",
                       S_PAGE_SIZE);
        rc = -1;
    }
    json_decref (page);
    return rc;
}

//  ---------------------------------------------------------------------
//  Meta

static bool
s_digits (const char *text)
{
    size_t n = strspn (text, "0123456789");
    return n > 0 && n <= 32 && text[n] == 0;
}

//  {META_API_BASE}/{META_API_VERSION}/{id}/{edge} into url; -1 when id is
//  not digits.
static int
s_meta_url (sb_provider_api_t *self, const char *id, const char *edge, char *url, size_t size,
            char *err, size_t err_size)
{
    if (!s_digits (id)) {
        sb_text_error (err, err_size, "not a Meta id (digits): %s", id);
        return -1;
    }
    snprintf (url, size, "%s/%s/%s/%s", sb_config_str (self->config, SB_CFG_META_API_BASE),
              sb_config_str (self->config, SB_CFG_META_API_VERSION), id, edge);
    return 0;
}

//  The app access token "{app-id}|{META_APP_SECRET}". Caller owns it.
static char *
s_app_token (sb_provider_api_t *self, const char *app_id, char *err, size_t err_size)
{
    if (!sb_config_has (self->config, SB_CFG_META_APP_SECRET)) {
        sb_text_error (err, err_size,
                       "META_APP_SECRET is not set: the app's subscriptions need the app "
                       "access token (app id and secret)");
        return NULL;
    }
    char *token =
        sb_text_join (app_id, "|", sb_config_str (self->config, SB_CFG_META_APP_SECRET), NULL);
    if (!token)
        sb_text_error (err, err_size, "out of memory");
    return token;
}

static bool
s_success (const json_t *answer)
{
    //  The reference page answers true, the subscriptions-edge guide "true".
    const json_t *success = json_object_get (answer, "success");
    return json_is_true (success)
           || (json_is_string (success) && strcmp (json_string_value (success), "true") == 0);
}

int
sb_provider_api_meta_app_subscription (sb_provider_api_t *self, const char *app_id, json_t **found,
                                       char *err, size_t err_size)
{
    *found = NULL;
    char url[SB_PROVIDER_API_URL_SIZE];
    if (s_meta_url (self, app_id, "subscriptions", url, sizeof url, err, err_size))
        return -1;
    char *token = s_app_token (self, app_id, err, err_size);
    if (!token)
        return -1;
    json_t *answer;
    int rc = s_call (self, "Meta", "GET", url, token, NULL, &answer, err, err_size);
    free (token);
    if (rc)
        return -1;
    size_t i;
    json_t *item;
    json_array_foreach (json_object_get (answer, "data"), i, item) {
        if (strcmp (sb_provider_api_str (item, "object"), S_META_OBJECT) == 0) {
            *found = json_incref (item);
            break;
        }
    }
    json_decref (answer);
    return 0;
}

int
sb_provider_api_meta_app_subscribe (sb_provider_api_t *self, const char *app_id,
                                    const char *callback_url, const char *fields, char *err,
                                    size_t err_size)
{
    char url[SB_PROVIDER_API_URL_SIZE];
    if (s_meta_url (self, app_id, "subscriptions", url, sizeof url, err, err_size))
        return -1;
    if (!sb_config_has (self->config, SB_CFG_META_VERIFY_TOKEN)) {
        sb_text_error (err, err_size,
                       "META_VERIFY_TOKEN is not set: Meta's handshake needs the ingress's token");
        return -1;
    }
    char *token = s_app_token (self, app_id, err, err_size);
    if (!token)
        return -1;
    sb_form_t *form = sb_form_new ();
    char *body = NULL;
    json_t *answer = NULL;
    int rc = -1;
    if (!form || sb_form_add (form, "object", S_META_OBJECT)
        || sb_form_add (form, "callback_url", callback_url)
        || sb_form_add (form, "verify_token",
                        sb_config_str (self->config, SB_CFG_META_VERIFY_TOKEN))
        || sb_form_add (form, "fields", fields) || !(body = sb_form_encode (form))) {
        sb_text_error (err, err_size, "out of memory");
        goto done;
    }
    if (self->dry_run) {
        s_print_dry (self, "POST", url, "app access token", form);
        rc = 0;
        goto done;
    }
    if (s_call (self, "Meta", "POST", url, token, body, &answer, err, err_size))
        goto done;
    if (!s_success (answer)) {
        sb_text_error (err, err_size, "Meta answered without \"success\": true");
        goto done;
    }
    rc = 0;
done:
    json_decref (answer);
    free (body);
    sb_form_destroy (&form);
    free (token);
    return rc;
}

int
sb_provider_api_meta_waba_apps (sb_provider_api_t *self, const char *waba_id, json_t **apps,
                                char *err, size_t err_size)
{
    *apps = NULL;
    char url[SB_PROVIDER_API_URL_SIZE];
    if (s_meta_url (self, waba_id, "subscribed_apps", url, sizeof url, err, err_size))
        return -1;
    json_t *answer;
    if (s_call (self, "Meta", "GET", url, sb_config_str (self->config, SB_CFG_META_ACCESS_TOKEN),
                NULL, &answer, err, err_size))
        return -1;
    json_t *data = json_object_get (answer, "data");
    *apps = json_is_array (data) ? json_incref (data) : json_array ();
    json_decref (answer);
    if (!*apps) {
        sb_text_error (err, err_size, "out of memory");
        return -1;
    }
    return 0;
}

int
sb_provider_api_meta_waba_subscribe (sb_provider_api_t *self, const char *waba_id, char *err,
                                     size_t err_size)
{
    char url[SB_PROVIDER_API_URL_SIZE];
    if (s_meta_url (self, waba_id, "subscribed_apps", url, sizeof url, err, err_size))
        return -1;
    if (self->dry_run) {
        s_print_dry (self, "POST", url, "META_ACCESS_TOKEN", NULL);
        return 0;
    }
    json_t *answer;
    if (s_call (self, "Meta", "POST", url, sb_config_str (self->config, SB_CFG_META_ACCESS_TOKEN),
                NULL, &answer, err, err_size))
        return -1;
    bool ok = s_success (answer);
    json_decref (answer);
    if (!ok) {
        sb_text_error (err, err_size, "Meta answered without \"success\": true");
        return -1;
    }
    return 0;
}
