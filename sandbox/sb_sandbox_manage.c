/*  sb_sandbox_manage: the providers' management APIs, faked, so that
    `switchboard connect` and `switchboard doctor` run end to end without an
    account. What they manage is sb_sandbox_state; this file is HTTP.

        GET  /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json[?PhoneNumber=]
        GET  /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/{PN}.json
        POST /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/{PN}.json
        GET  /v1/Services[?PageSize=N&Page=P]
        GET  /v1/Services/{MG}
        GET  /v1/Services/{MG}/PhoneNumbers
        GET  /{version}/{app-id}/subscriptions
        POST /{version}/{app-id}/subscriptions
        GET|POST|DELETE /{version}/{waba-id}/subscribed_apps
        POST /_sandbox/twilio/numbers, POST /_sandbox/twilio/services
        GET|DELETE /_sandbox/state

    Twilio's take HTTP Basic auth as the Messages API does; app
    subscriptions take the app access token "{app-id}|{META_APP_SECRET}"
    (access_token in the query or form, or a Bearer header); subscribed_apps
    takes META_ACCESS_TOKEN as the messages endpoint does. Answers and
    errors are in the providers' shapes (tests/conformance/provider-api/,
    tests/conformance/README.md section 9).

    DESIGN
    A POST to /{app-id}/subscriptions is verified as Meta verifies it: a GET
    to callback_url with hub.mode=subscribe, hub.challenge (random digits)
    and hub.verify_token, answered 200 with exactly the challenge within
    S_VERIFY_TIMEOUT_MS, else 400 code 2200 and nothing changes. The GET is
    made from the civetweb worker that serves the POST, with no lock held.
    A callback URL under SB_PUBLIC_URL + SB_PATH_PREFIX is reached at
    --callbacks instead, as the status callbacks are.

    Limits: the state's bounds (sb_sandbox_state.h); the verification reads
    at most S_VERIFY_BODY_MAX bytes of its answer; list pages hold at most
    S_PAGE_MAX items. The failure plan (/_sandbox/fail) does not apply here.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb_fakeprov.h"
#include "sb_form.h"
#include "sb_log.h"
#include "sb_sandbox.h"
#include "sb_text.h"

#define S_VERIFY_TIMEOUT_MS 5000  //  Meta's callback verification, in all
#define S_VERIFY_BODY_MAX 1024    //  bytes of its answer kept
#define S_PAGE_MAX 1000           //  items in one list page
#define S_SEGMENTS_MAX 6          //  path segments looked at

static const char s_twilio_prefix[] = "/2010-04-01/Accounts/";

//  Split path's segments into a NUL-separated copy; their count, or -1
//  when there are more than S_SEGMENTS_MAX or one is empty.
static int
s_segments (const char *path, char *copy, size_t size, char **parts)
{
    if (path[0] != '/' || strlen (path) >= size)
        return -1;
    snprintf (copy, size, "%s", path + 1);
    int n = 0;
    for (char *p = copy; p;) {
        if (n == S_SEGMENTS_MAX)
            return -1;
        parts[n++] = p;
        char *slash = strchr (p, '/');
        if (slash)
            *slash++ = 0;
        if (!*p)
            return -1;
        p = slash;
    }
    return n;
}

//  Which API a path is for.
typedef enum {
    S_NONE,
    S_NUMBERS,          //  Twilio IncomingPhoneNumbers.json
    S_NUMBER,           //  Twilio IncomingPhoneNumbers/{PN}.json
    S_SERVICES,         //  Messaging /v1/Services
    S_SERVICE,          //  Messaging /v1/Services/{MG}
    S_SERVICE_NUMBERS,  //  Messaging /v1/Services/{MG}/PhoneNumbers
    S_SUBSCRIPTIONS,    //  Meta /{v}/{app}/subscriptions
    S_SUBSCRIBED_APPS,  //  Meta /{v}/{waba}/subscribed_apps
    S_SEED_NUMBER,      //  /_sandbox/twilio/numbers
    S_SEED_SERVICE,     //  /_sandbox/twilio/services
    S_STATE,            //  /_sandbox/state
} s_route_t;

//  The route of path; fills parts (segments in copy).
static s_route_t
s_route (const char *path, char *copy, size_t size, char **parts)
{
    int n = s_segments (path, copy, size, parts);
    if (n == 3 && strcmp (parts[0], "_sandbox") == 0 && strcmp (parts[1], "twilio") == 0)
        return strcmp (parts[2], "numbers") == 0    ? S_SEED_NUMBER
               : strcmp (parts[2], "services") == 0 ? S_SEED_SERVICE
                                                    : S_NONE;
    if (n == 2 && strcmp (parts[0], "_sandbox") == 0 && strcmp (parts[1], "state") == 0)
        return S_STATE;
    if (n >= 4 && strcmp (parts[0], "2010-04-01") == 0 && strcmp (parts[1], "Accounts") == 0) {
        if (n == 4 && strcmp (parts[3], "IncomingPhoneNumbers.json") == 0)
            return S_NUMBERS;
        size_t len = n == 5 ? strlen (parts[4]) : 0;
        if (n == 5 && strcmp (parts[3], "IncomingPhoneNumbers") == 0 && len > 5
            && strcmp (parts[4] + len - 5, ".json") == 0) {
            parts[4][len - 5] = 0;
            return S_NUMBER;
        }
        return S_NONE;
    }
    if (n >= 2 && strcmp (parts[0], "v1") == 0 && strcmp (parts[1], "Services") == 0)
        return n == 2                                             ? S_SERVICES
               : n == 3                                           ? S_SERVICE
               : n == 4 && strcmp (parts[3], "PhoneNumbers") == 0 ? S_SERVICE_NUMBERS
                                                                  : S_NONE;
    if (n == 3 && parts[0][0] == 'v' && strcmp (parts[2], "subscriptions") == 0)
        return S_SUBSCRIPTIONS;
    if (n == 3 && parts[0][0] == 'v' && strcmp (parts[2], "subscribed_apps") == 0)
        return S_SUBSCRIBED_APPS;
    return S_NONE;
}

bool
sb_sandbox_manage_match (const char *path)
{
    char copy[512];
    char *parts[S_SEGMENTS_MAX];
    return s_route (path, copy, sizeof copy, parts) != S_NONE;
}

//  --------------------------------------------------------------------------
//  Answers

//  Answer a state refusal in Twilio's or Meta's shape.
static void
s_refuse (const sb_sandbox_state_err_t *err, bool meta, sb_sandbox_answer_t *answer)
{
    if (meta)
        sb_sandbox_meta_error (answer, err->status, err->code, err->message, NULL);
    else
        sb_sandbox_twilio_error (answer, err->status, err->code, err->message);
}

static void
s_method_not_allowed (sb_sandbox_answer_t *answer)
{
    sb_sandbox_answer_json (answer, 405, json_pack ("{s:s}", "error", "method not allowed"));
}

//  Page and PageSize of a query (defaults 0 and default_size); false when
//  malformed.
static bool
s_paging (const sb_form_t *query, long default_size, long *page, long *page_size)
{
    const char *page_text = query ? sb_form_get (query, "Page") : NULL;
    const char *size_text = query ? sb_form_get (query, "PageSize") : NULL;
    *page = 0;
    *page_size = default_size;
    return !(page_text && sb_sandbox_parse_long (page_text, 0, 1000000, page))
           && !(size_text && sb_sandbox_parse_long (size_text, 1, S_PAGE_MAX, page_size));
}

//  Items [page * size, (page + 1) * size) of list (taken); *more when
//  items follow.
static json_t *
s_slice (json_t *list, long page, long size, bool *more)
{
    json_t *slice = json_array ();
    size_t from = (size_t) page * (size_t) size, total = json_array_size (list);
    for (size_t i = from; slice && i < total && i < from + (size_t) size; i++)
        json_array_append (slice, json_array_get (list, i));
    *more = total > from + (size_t) size;
    json_decref (list);
    return slice;
}

//  GET IncomingPhoneNumbers.json: the list page of the spec's example.
static void
s_numbers (sb_sandbox_t *self, const char *account, const sb_form_t *query,
           sb_sandbox_answer_t *answer)
{
    long page, size;
    if (!s_paging (query, 50, &page, &size)) {
        sb_sandbox_twilio_error (answer, 400, 20001, "Page and PageSize must be whole numbers");
        return;
    }
    const char *filter = query ? sb_form_get (query, "PhoneNumber") : NULL;
    bool more;
    json_t *numbers = s_slice (sb_sandbox_state_numbers (self->state, filter), page, size, &more);
    char *escaped = NULL;
    if (filter && *filter) {
        sb_form_t *form = sb_form_new ();
        if (form && sb_form_add (form, "PhoneNumber", filter) == 0)
            escaped = sb_form_encode (form);
        sb_form_destroy (&form);
    }
    char base[200], first[600], uri[600], next[600];
    snprintf (base, sizeof base, "%s%s/IncomingPhoneNumbers.json?%s%s", s_twilio_prefix, account,
              escaped ? escaped : "", escaped ? "&" : "");
    free (escaped);
    snprintf (first, sizeof first, "%sPageSize=%ld&Page=0", base, size);
    snprintf (uri, sizeof uri, "%sPageSize=%ld&Page=%ld", base, size, page);
    snprintf (next, sizeof next, "%sPageSize=%ld&Page=%ld", base, size, page + 1);
    size_t count = json_array_size (numbers);
    long start = page * size;
    json_t *reply =
        json_pack ("{s:I, s:s, s:o, s:o, s:I, s:I, s:n, s:I, s:s}", "end",
                   (json_int_t) (count ? start + (long) count - 1 : start), "first_page_uri", first,
                   "incoming_phone_numbers", numbers ? numbers : json_array (), "next_page_uri",
                   more ? json_string (next) : json_null (), "page", (json_int_t) page, "page_size",
                   (json_int_t) size, "previous_page_uri", "start", (json_int_t) start, "uri", uri);
    if (reply && page > 0) {
        char previous[600];
        snprintf (previous, sizeof previous, "%sPageSize=%ld&Page=%ld", base, size, page - 1);
        json_object_set_new (reply, "previous_page_uri", json_string (previous));
    }
    sb_sandbox_answer_json (answer, 200, reply);
}

//  A Messaging API list: {key: items, meta: {...}} with URLs on the
//  sandbox's own address (base), where a client following them comes back.
static void
s_messaging_list (const char *base, const char *path, const char *key, json_t *list,
                  const sb_form_t *query, sb_sandbox_answer_t *answer)
{
    long page, size;
    if (!s_paging (query, 50, &page, &size)) {
        json_decref (list);
        sb_sandbox_twilio_error (answer, 400, 20001, "Page and PageSize must be whole numbers");
        return;
    }
    bool more;
    json_t *items = s_slice (list, page, size, &more);
    char first[600], url[600], next[600], previous[600];
    snprintf (first, sizeof first, "%s%s?PageSize=%ld&Page=0", base, path, size);
    snprintf (url, sizeof url, "%s%s?PageSize=%ld&Page=%ld", base, path, size, page);
    snprintf (next, sizeof next, "%s%s?PageSize=%ld&Page=%ld", base, path, size, page + 1);
    snprintf (previous, sizeof previous, "%s%s?PageSize=%ld&Page=%ld", base, path, size, page - 1);
    json_t *meta =
        json_pack ("{s:I, s:I, s:s, s:o, s:s, s:o, s:s}", "page", (json_int_t) page, "page_size",
                   (json_int_t) size, "first_page_url", first, "previous_page_url",
                   page > 0 ? json_string (previous) : json_null (), "url", url, "next_page_url",
                   more ? json_string (next) : json_null (), "key", key);
    sb_sandbox_answer_json (answer, 200,
                            json_pack ("{s:o, s:o}", "meta", meta ? meta : json_object (), key,
                                       items ? items : json_array ()));
}

//  --------------------------------------------------------------------------
//  Meta: app subscriptions and their verification

//  Collects at most S_VERIFY_BODY_MAX bytes of the verification's answer.
typedef struct {
    char data[S_VERIFY_BODY_MAX + 1];  //  the bytes, NUL-terminated
    size_t size;                       //  bytes kept
} s_verify_body_t;

static size_t
s_verify_write (char *data, size_t size, size_t nmemb, void *userdata)
{
    s_verify_body_t *body = userdata;
    size_t n = size * nmemb;
    size_t room = S_VERIFY_BODY_MAX - body->size;
    memcpy (body->data + body->size, data, n < room ? n : room);
    body->size += n < room ? n : room;
    body->data[body->size] = 0;
    return n;
}

//  GET callback_url?hub.mode=subscribe&hub.challenge=...&hub.verify_token=...
//  as Meta does. 0 when answered 200 with exactly the challenge, else -1
//  with Meta's message (code 2200) in message.
static int
s_verify_callback (sb_sandbox_t *self, const char *callback_url, const char *verify_token,
                   char *message, size_t size)
{
    char challenge[16];
    sb_fakeprov_digits (challenge, 10);
    sb_form_t *form = sb_form_new ();
    if (form
        && (sb_form_add (form, "hub.mode", "subscribe")
            || sb_form_add (form, "hub.challenge", challenge)
            || sb_form_add (form, "hub.verify_token", verify_token)))
        sb_form_destroy (&form);
    char *query = form ? sb_form_encode (form) : NULL;
    sb_form_destroy (&form);
    char *reach = sb_sandbox_reach_url (self, callback_url);
    char *url =
        query && reach ? sb_text_join (reach, strchr (reach, '?') ? "&" : "?", query, NULL) : NULL;
    free (query);
    free (reach);
    CURL *easy = url ? curl_easy_init () : NULL;
    s_verify_body_t *body = calloc (1, sizeof *body);
    char error[CURL_ERROR_SIZE] = "";
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    long status = 0;
    if (easy && body && curl_easy_setopt (easy, CURLOPT_URL, url) == CURLE_OK
        && curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK
        && curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK
        && curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long) S_VERIFY_TIMEOUT_MS) == CURLE_OK
        && curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, error) == CURLE_OK
        && curl_easy_setopt (easy, CURLOPT_USERAGENT, "facebookexternalua") == CURLE_OK
        && curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_verify_write) == CURLE_OK
        && curl_easy_setopt (easy, CURLOPT_WRITEDATA, body) == CURLE_OK) {
        rc = curl_easy_perform (easy);
        curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
    }
    int result = -1;
    if (rc != CURLE_OK)
        snprintf (message, size,
                  "(#2200) Callback verification failed with the following errors: "
                  "curl_errno = %d; curl_error = %.200s",
                  (int) rc, *error ? error : curl_easy_strerror (rc));
    else if (status != 200)
        snprintf (message, size,
                  "(#2200) Callback verification failed with the following errors: "
                  "HTTP Status Code = %ld; HTTP Message = %s",
                  status,
                  status == 403   ? "Forbidden"
                  : status == 404 ? "Not Found"
                                  : "Error");
    else if (strcmp (body->data, challenge) != 0)
        snprintf (message, size,
                  "(#2200) Callback verification failed with the following errors: "
                  "Response does not match challenge, expected value=\"%s\", "
                  "received=\"%.40s\"",
                  challenge, body->data);
    else
        result = 0;
    sb_info (SB_SANDBOX_MODULE, "callback verification %s status=%ld curl=%d",
             result ? "failed" : "passed", status, (int) rc);
    if (easy)
        curl_easy_cleanup (easy);
    free (body);
    free (url);
    return result;
}

//  The app access token of a request: access_token in the query or the
//  form, else the Bearer token; NULL when none (borrowed).
static const char *
s_app_token (struct mg_connection *conn, const sb_form_t *query, const sb_form_t *form)
{
    const char *token = query ? sb_form_get (query, "access_token") : NULL;
    if (!token && form)
        token = sb_form_get (form, "access_token");
    const char *auth = mg_get_header (conn, "Authorization");
    if (!token && auth && strncasecmp (auth, "Bearer ", 7) == 0) {
        token = auth + 7;
        while (*token == ' ')
            token++;
    }
    return token;
}

//  True when token is "{app_id}|{META_APP_SECRET}".
static bool
s_app_token_ok (const sb_sandbox_t *self, const char *app_id, const char *token)
{
    size_t id_len = strlen (app_id);
    if (!token || !*self->app_secret || strncmp (token, app_id, id_len) != 0
        || token[id_len] != '|')
        return false;
    const char *secret = token + id_len + 1;
    return sb_sandbox_secret_equal (secret, strlen (secret), self->app_secret);
}

static void
s_subscriptions (sb_sandbox_t *self, struct mg_connection *conn, const char *method,
                 const char *version, const char *app_id, const sb_form_t *query, const char *body,
                 size_t size, json_t *record, sb_sandbox_answer_t *answer)
{
    bool post = strcmp (method, "POST") == 0;
    if (!post && strcmp (method, "GET") != 0) {
        s_method_not_allowed (answer);
        return;
    }
    sb_form_t *form = post ? sb_form_parse (body, size) : NULL;
    const char *token = s_app_token (conn, query, form);
    json_object_set_new (record, "auth_user", json_string (token ? "app" : ""));
    sb_sandbox_state_err_t err = {0};
    if (!s_app_token_ok (self, app_id, token))
        sb_sandbox_meta_error (answer, 401, 190,
                               "Invalid OAuth access token - Cannot parse access token", NULL);
    else if (!post) {
        json_t *data = sb_sandbox_state_subscriptions (self->state, app_id, &err);
        if (data)
            sb_sandbox_answer_json (answer, 200, json_pack ("{s:o}", "data", data));
        else
            s_refuse (&err, true, answer);
    }
    else {
        //  Graph API takes parameters in the query or the form.
        sb_form_t *params = sb_form_new ();
        for (size_t i = 0; params && query && i < sb_form_size (query); i++)
            sb_form_add (params, sb_form_key (query, i), sb_form_value (query, i));
        for (size_t i = 0; params && form && i < sb_form_size (form); i++)
            sb_form_add (params, sb_form_key (form, i), sb_form_value (form, i));
        char message[400];
        if (!params)
            sb_sandbox_meta_error (answer, 500, 1, "An unknown error occurred", NULL);
        else if (sb_sandbox_state_subscribe_check (params, &err))
            s_refuse (&err, true, answer);
        else if (s_verify_callback (self, sb_form_get (params, "callback_url"),
                                    sb_form_get (params, "verify_token"), message, sizeof message))
            sb_sandbox_meta_error (answer, 400, 2200, message, NULL);
        else if (sb_sandbox_state_subscribe (self->state, app_id, params, version, &err))
            s_refuse (&err, true, answer);
        else
            sb_sandbox_answer_json (answer, 200, json_pack ("{s:b}", "success", true));
        sb_form_destroy (&params);
    }
    sb_form_destroy (&form);
}

static void
s_subscribed_apps (sb_sandbox_t *self, struct mg_connection *conn, const char *method,
                   const char *waba_id, json_t *record, sb_sandbox_answer_t *answer)
{
    bool get = strcmp (method, "GET") == 0, post = strcmp (method, "POST") == 0;
    if (!get && !post && strcmp (method, "DELETE") != 0) {
        s_method_not_allowed (answer);
        return;
    }
    if (!sb_sandbox_meta_bearer (self, conn, record, answer))
        return;
    sb_sandbox_state_err_t err = {0};
    if (get) {
        json_t *data = sb_sandbox_state_subscribed_apps (self->state, waba_id, &err);
        if (data)
            sb_sandbox_answer_json (answer, 200, data);
        else
            s_refuse (&err, true, answer);
    }
    else if (sb_sandbox_state_waba_app (self->state, waba_id, post, &err))
        s_refuse (&err, true, answer);
    else
        sb_sandbox_answer_json (answer, 200, json_pack ("{s:b}", "success", true));
}

//  --------------------------------------------------------------------------
//  The handler

//  "http://{Host}" of the request, for URLs a client may follow.
static void
s_own_base (struct mg_connection *conn, char *out, size_t size)
{
    const char *host = mg_get_header (conn, "Host");
    bool ok = host && *host && strlen (host) < 200;
    for (const char *p = host; ok && *p; p++)
        if (!isalnum ((unsigned char) *p) && !strchr (".-:[]", *p))
            ok = false;
    snprintf (out, size, "http://%s", ok ? host : "127.0.0.1");
}

//  The Twilio APIs (auth checked by the caller).
static void
s_twilio (sb_sandbox_t *self, struct mg_connection *conn, s_route_t route, const char *method,
          char **parts, const sb_form_t *query, const char *body, size_t size, json_t *record,
          sb_sandbox_answer_t *answer)
{
    bool get = strcmp (method, "GET") == 0;
    sb_sandbox_state_err_t err = {0};
    json_t *object = NULL;
    char base[220], path[160];
    if (route == S_NUMBERS && get)
        s_numbers (self, parts[2], query, answer);
    else if (route == S_NUMBER && get)
        object = sb_sandbox_state_number (self->state, parts[4], &err);
    else if (route == S_NUMBER && strcmp (method, "POST") == 0) {
        sb_form_t *form = sb_sandbox_twilio_form (conn, body, size, record, answer);
        if (!form)
            return;
        object = sb_sandbox_state_number_update (self->state, parts[4], form, &err);
        sb_form_destroy (&form);
    }
    else if (route == S_SERVICES && get) {
        s_own_base (conn, base, sizeof base);
        s_messaging_list (base, "/v1/Services", "services", sb_sandbox_state_services (self->state),
                          query, answer);
    }
    else if (route == S_SERVICE && get)
        object = sb_sandbox_state_service (self->state, parts[2], &err);
    else if (route == S_SERVICE_NUMBERS && get) {
        json_t *list = sb_sandbox_state_service_numbers (self->state, parts[2], &err);
        s_own_base (conn, base, sizeof base);
        snprintf (path, sizeof path, "/v1/Services/%.40s/PhoneNumbers", parts[2]);
        if (list)
            s_messaging_list (base, path, "phone_numbers", list, query, answer);
    }
    else
        s_method_not_allowed (answer);
    if (object)
        sb_sandbox_answer_json (answer, 200, object);
    else if (err.status)
        s_refuse (&err, false, answer);
}

//  The seeding and inspection endpoints under /_sandbox/.
static void
s_admin (sb_sandbox_t *self, s_route_t route, const char *method, const char *body, size_t size,
         sb_sandbox_answer_t *answer)
{
    bool get = strcmp (method, "GET") == 0, post = strcmp (method, "POST") == 0;
    if (route == S_STATE && get)
        sb_sandbox_answer_json (answer, 200, sb_sandbox_state_dump (self->state));
    else if (route == S_STATE && strcmp (method, "DELETE") == 0) {
        sb_sandbox_state_clear (self->state);
        sb_sandbox_answer_json (answer, 200, json_pack ("{s:b}", "cleared", true));
    }
    else if (route != S_STATE && post) {
        sb_form_t *form = sb_form_parse (body, size);
        sb_sandbox_state_err_t err = {0};
        json_t *object = !form ? NULL
                         : route == S_SEED_NUMBER
                             ? sb_sandbox_state_number_seed (self->state, form, &err)
                             : sb_sandbox_state_service_seed (self->state, form, &err);
        if (object)
            sb_sandbox_answer_json (answer, 200, object);
        else if (!form)
            sb_sandbox_twilio_error (answer, 400, 20001, "Invalid form body");
        else
            s_refuse (&err, false, answer);
        sb_form_destroy (&form);
    }
    else
        s_method_not_allowed (answer);
}

void
sb_sandbox_manage_handle (sb_sandbox_t *self, struct mg_connection *conn, const char *method,
                          const char *path, const char *body, size_t size, json_t *record,
                          sb_sandbox_answer_t *answer)
{
    char copy[512];
    char *parts[S_SEGMENTS_MAX];
    s_route_t route = s_route (path, copy, sizeof copy, parts);
    const char *query_text = mg_get_request_info (conn)->query_string;
    sb_form_t *query = query_text ? sb_form_parse (query_text, strlen (query_text)) : NULL;
    bool meta = route == S_SUBSCRIPTIONS || route == S_SUBSCRIBED_APPS;
    bool admin = route == S_SEED_NUMBER || route == S_SEED_SERVICE || route == S_STATE;
    json_object_set_new (record, "provider",
                         json_string (meta    ? "meta"
                                      : admin ? "sandbox"
                                              : "twilio"));
    if (query_text && !query) {
        if (meta)
            sb_sandbox_meta_error (answer, 400, 100, "(#100) Invalid parameter", NULL);
        else
            sb_sandbox_twilio_error (answer, 400, 20001, "Invalid query string");
    }
    else if (admin)
        s_admin (self, route, method, body, size, answer);
    else if (meta && !sb_sandbox_is_graph_version (parts[0])) {
        char message[200];
        snprintf (message, sizeof message, "Unknown path components: %.150s", path);
        sb_sandbox_meta_error (answer, 400, 2500, message, NULL);
    }
    else if (meta && !sb_sandbox_is_graph_id (parts[1])) {
        char message[300];
        snprintf (message, sizeof message,
                  "(#100) Unsupported %s request. Object with ID '%.40s' does not exist, cannot "
                  "be loaded due to missing permissions, or does not support this operation.",
                  strcmp (method, "GET") == 0 ? "get" : "post", parts[1]);
        sb_sandbox_meta_error (answer, 400, 100, message, NULL);
    }
    else if (route == S_SUBSCRIPTIONS)
        s_subscriptions (self, conn, method, parts[0], parts[1], query, body, size, record, answer);
    else if (route == S_SUBSCRIBED_APPS)
        s_subscribed_apps (self, conn, method, parts[1], record, answer);
    else if (sb_sandbox_twilio_auth (self, conn,
                                     route == S_NUMBERS || route == S_NUMBER ? parts[2] : NULL,
                                     record, answer))
        s_twilio (self, conn, route, method, parts, query, body, size, record, answer);
    sb_form_destroy (&query);
}
