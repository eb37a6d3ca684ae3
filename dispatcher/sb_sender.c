/*  sb_sender: the outbox's HTTP side, on libcurl's multi interface.

    Each submitted item becomes one easy handle on one multi handle: a
    Twilio Messages API POST (form, HTTP Basic auth with the account SID and
    auth token, or an API key and its secret), a Meta Cloud API POST (JSON,
    Bearer token), or a bot forward (the event as JSON to the rule's URL).
    The transfers run on libcurl's socket interface: the owner puts the
    sockets libcurl waits on (sb_sender_sockets) and its timer
    (sb_sender_timeout) into its own poll and hands back what that poll
    found (sb_sender_drive); sb_sender_perform does the same with a poll of
    its own, for owners that have nothing else to wait on. Finished
    transfers become results in a FIFO that the caller drains with
    sb_sender_next_result.

    DESIGN
    One thread owns a sender (the dispatcher's sending loop): nothing here
    locks. Concurrency is bounded by refusing submissions past
    SB_SEND_CONCURRENCY transfers in flight (sb_sender_room says how many
    more fit), so the outbox claims only what can start now. Connections
    are reused: kept alive in the multi handle's cache (as many as the
    concurrency), and over TLS HTTP/2 is asked for (ALPN) with transfers
    multiplexed as streams on a connection; plain http stays HTTP/1.1. TLS
    verification is libcurl's default and is never turned off. Only http
    and https are allowed, redirects are not followed, each answer body is
    capped at S_BODY_MAX (the rest is read and dropped) and Retry-After is
    captured by a header callback.

    Classification (sb_sender_classify) turns status, body and Retry-After
    into SENT (with the provider's id), RETRY (network error, timeout, 5xx,
    408, 429, the providers' throttling codes, Meta errors marked
    is_transient) or FINAL (any other 4xx: the provider's code is kept, and
    Twilio 21610 also says the contact opted out). A 2xx whose body carries
    no usable id (not JSON, not UTF-8, no id, an id empty, over 256 bytes or
    not printable ASCII: not what the APIs document) is still SENT, without
    an id and with the reason in its error: the provider accepted the
    message, and sending it again would deliver it twice. Ids are not
    assumed unique: the store copes with a provider that repeats one.
    Bot forwards are never retried: a 2xx answer is the reply text (a JSON object's "text" or "reply" field, a
    JSON string, else the plain body; trimmed and capped; a JSON answer
    without text is no reply), anything else is FINAL without a reply.

    Limits: one attempt per submit (the store schedules retries); a body
    or header value from the network is never trusted beyond its cap.
*/
#include "sb_sender.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "sb_bsuid.h"
#include "sb_event.h"
#include "sb_form.h"
#include "sb_log.h"
#include "sb_text.h"
#include "sb_time.h"

#define S_MODULE "sender"
#define S_BODY_MAX (64 * 1024)           //  answer bytes kept per transfer
#define S_BOT_TEXT_MAX 4096              //  bytes of a bot's reply kept
#define S_ID_MAX 256                     //  longest provider id accepted
#define S_MESSAGE_MAX 200                //  bytes of a provider's message in errors
#define S_RETRY_AFTER_MAX_MS 86400000LL  //  a Retry-After past a day is clamped
#define S_USER_AGENT "switchboard/0.1.0"

//  One transfer in flight.
typedef struct s_transfer_t {
    struct s_transfer_t *next;               //  in-flight list
    struct s_transfer_t *prev;               //  in-flight list
    CURL *easy;                              //  the libcurl handle
    struct curl_slist *headers;              //  request headers (owned)
    char *post;                              //  request body (owned; libcurl points at it)
    int64_t id;                              //  outbox id
    sb_outbox_kind_t kind;                   //  reply or forward
    int provider;                            //  SB_PROVIDER_*
    char claim_token[SB_OUTBOX_TOKEN_SIZE];  //  the item's claim token, for its result
    char *answer;                            //  answer body, NUL-terminated, capped
    size_t answer_size;                      //  bytes kept in answer
    size_t answer_dropped;                   //  bytes past the cap, read and dropped
    char retry_after[64];                    //  last Retry-After value ("" if none)
    char curl_error[CURL_ERROR_SIZE];        //  libcurl's detail on failure
} s_transfer_t;

struct sb_sender_t {
    CURLM *multi;               //  the one multi handle
    size_t concurrency;         //  most transfers in flight
    long timeout_ms;            //  total time of a provider request
    long connect_timeout_ms;    //  connect time of any request
    char *ca_file;              //  SB_API_CA_FILE, NULL: the system's CAs
    s_transfer_t *transfers;    //  in-flight list
    size_t in_flight;           //  length of that list
    char *twilio_url;           //  full Messages.json URL, NULL when Twilio unset
    char *twilio_user;          //  account SID or API key
    char *twilio_password;      //  auth token or API secret (secret)
    char *status_callback;      //  StatusCallback URL, NULL when no public URL
    char *meta_base;            //  base URL + "/" + version, NULL when Meta unset
    char *meta_auth;            //  "Authorization: Bearer ..." (secret)
    sb_send_result_t *results;  //  finished results, FIFO ring
    size_t results_head;        //  index of the oldest
    size_t results_count;       //  results waiting
    size_t results_cap;         //  allocated slots
    struct pollfd *sockets;     //  libcurl's sockets and what it waits for (socket callback)
    size_t sockets_count;       //  entries in use
    size_t sockets_cap;         //  allocated entries
    struct pollfd *polled;      //  sb_sender_perform's copy of sockets, for poll(2)
};

//  --------------------------------------------------------------------------
//  Classification

static char *
s_strdup (const char *text)
{
    return strdup (text ? text : "");
}

//  Copy at most max bytes of text, not cutting a UTF-8 sequence in two.
static char *
s_strdup_capped (const char *text, size_t size, size_t max)
{
    if (size > max) {
        size = max;
        while (size > 0 && ((unsigned char) text[size] & 0xC0) == 0x80)
            size--;
    }
    char *copy = malloc (size + 1);
    if (copy) {
        memcpy (copy, text, size);
        copy[size] = 0;
    }
    return copy;
}

//  Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3), in ms
//  from now, clamped to [0, a day]; -1 when absent or unreadable.
static int64_t
s_parse_retry_after (const char *text)
{
    if (!text)
        return -1;
    while (*text == ' ' || *text == '\t')
        text++;
    size_t len = strlen (text);
    while (len > 0
           && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\r'
               || text[len - 1] == '\n'))
        len--;
    if (len == 0 || len > 63)
        return -1;
    char buf[64];
    memcpy (buf, text, len);
    buf[len] = 0;
    if (isdigit ((unsigned char) buf[0])) {
        int64_t seconds = 0;
        for (const char *p = buf; *p; p++) {
            if (!isdigit ((unsigned char) *p))
                return -1;
            if (seconds < S_RETRY_AFTER_MAX_MS / 1000)
                seconds = seconds * 10 + (*p - '0');
        }
        int64_t ms = seconds * 1000;
        return ms > S_RETRY_AFTER_MAX_MS ? S_RETRY_AFTER_MAX_MS : ms;
    }
    time_t when = curl_getdate (buf, NULL);
    if (when == (time_t) -1)
        return -1;
    int64_t ms = ((int64_t) when - (int64_t) time (NULL)) * 1000;
    if (ms < 0)
        ms = 0;
    return ms > S_RETRY_AFTER_MAX_MS ? S_RETRY_AFTER_MAX_MS : ms;
}

//  A JSON number or numeric string as a code; -1 when neither.
static long
s_json_code (const json_t *value)
{
    if (json_is_integer (value))
        return (long) json_integer_value (value);
    if (json_is_string (value)) {
        const char *text = json_string_value (value);
        if (!*text || strlen (text) > 9)
            return -1;
        long code = 0;
        for (const char *p = text; *p; p++) {
            if (!isdigit ((unsigned char) *p))
                return -1;
            code = code * 10 + (*p - '0');
        }
        return code;
    }
    return -1;
}

static bool
s_code_in (long code, const long *codes, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (codes[i] == code)
            return true;
    return false;
}

//  Why a 2xx answer yields no usable message id (NULL when it does): the
//  body is not a JSON object (or not UTF-8, which jansson refuses), has no
//  id where the API documents it, or an id empty, over S_ID_MAX bytes or
//  with bytes outside printable ASCII (both providers' ids are).
static const char *
s_id_problem (const char *body, const json_t *root, const char *id)
{
    if (!body || !*body)
        return "empty body";
    if (!root)
        return "body is not a JSON object in UTF-8";
    if (!id)
        return "no message id";
    size_t len = strlen (id);
    if (len == 0)
        return "empty message id";
    if (len > S_ID_MAX)
        return "message id longer than 256 bytes";
    for (const char *p = id; *p; p++)
        if (*p <= ' ' || *p > '~')
            return "message id holds bytes other than printable ASCII";
    return NULL;
}

//  Throttling codes: the request was fine, the rate was not.
static const long s_twilio_retry_codes[] = {20429, 63018};
static const long s_meta_retry_codes[] = {2, 4, 80007, 130429, 131048, 131056};
#define S_TWILIO_OPT_OUT 21610

void
sb_sender_classify (int provider, int http_status, const char *body, const char *retry_after,
                    sb_send_result_t *result)
{
    assert (result);
    result->http_status = http_status;
    result->opt_out = false;
    result->retry_after_ms = -1;
    result->provider_id = NULL;
    result->bot_text = NULL;
    result->error_code = NULL;
    result->error = NULL;

    json_t *root = body && *body ? json_loads (body, 0, NULL) : NULL;
    if (root && !json_is_object (root)) {
        json_decref (root);
        root = NULL;
    }
    //  The provider's own error code and message, when the body has them.
    long code = -1;
    const char *message = NULL;
    bool transient = false;
    const char *provider_id = NULL;
    const char *name = provider == SB_PROVIDER_TWILIO ? "twilio"
                       : provider == SB_PROVIDER_META ? "meta"
                                                      : "provider";
    if (root && provider == SB_PROVIDER_TWILIO) {
        code = s_json_code (json_object_get (root, "code"));
        message = json_string_value (json_object_get (root, "message"));
        provider_id = json_string_value (json_object_get (root, "sid"));
    }
    else if (root && provider == SB_PROVIDER_META) {
        json_t *error = json_object_get (root, "error");
        if (json_is_object (error)) {
            code = s_json_code (json_object_get (error, "code"));
            message = json_string_value (json_object_get (error, "message"));
            transient = json_is_true (json_object_get (error, "is_transient"));
        }
        json_t *first = json_array_get (json_object_get (root, "messages"), 0);
        provider_id = json_string_value (json_object_get (first, "id"));
    }
    char error[400] = "";
    if (http_status >= 200 && http_status < 300) {
        //  Accepted, whatever the body says: sending again would deliver
        //  twice. An answer that is not what the API documents keeps no id
        //  and says why (outbox.last_error).
        const char *why = s_id_problem (body, root, provider_id);
        result->outcome = SB_SEND_SENT;
        result->provider_id = s_strdup (why ? "" : provider_id);
        if (why)
            snprintf (error, sizeof error, "%s answered %d, not what the API documents: %s", name,
                      http_status, why);
    }
    else {
        bool retry;
        if (http_status == 0)
            retry = true;
        else if (http_status >= 500 || http_status == 429 || http_status == 408)
            retry = true;
        else if (http_status >= 400) {
            if (provider == SB_PROVIDER_TWILIO)
                retry = s_code_in (code, s_twilio_retry_codes,
                                   sizeof s_twilio_retry_codes / sizeof (long));
            else if (provider == SB_PROVIDER_META)
                retry = transient
                        || s_code_in (code, s_meta_retry_codes,
                                      sizeof s_meta_retry_codes / sizeof (long));
            else
                retry = false;
        }
        else
            retry = true;  //  1xx or 3xx from an API: a proxy's doing, not the message's
        result->outcome = retry ? SB_SEND_RETRY : SB_SEND_FINAL;
        if (retry)
            result->retry_after_ms = s_parse_retry_after (retry_after);
        if (!retry && provider == SB_PROVIDER_TWILIO && code == S_TWILIO_OPT_OUT)
            result->opt_out = true;
        if (http_status == 0)
            snprintf (error, sizeof error, "%s: no answer", name);
        else if (code >= 0)
            snprintf (error, sizeof error, "%s answered %d, code %ld: %.*s", name, http_status,
                      code, S_MESSAGE_MAX, message ? message : "");
        else
            snprintf (error, sizeof error, "%s answered %d", name, http_status);
    }
    if (result->outcome != SB_SEND_SENT)
        result->provider_id = s_strdup ("");
    char code_text[24] = "";
    if (code >= 0 && result->outcome != SB_SEND_SENT)
        snprintf (code_text, sizeof code_text, "%ld", code);
    result->error_code = s_strdup (code_text);
    result->error = s_strdup (error);
    result->bot_text = s_strdup ("");
    json_decref (root);
}

//  A bot's answer: 2xx is a reply (maybe empty), anything else FINAL.
static void
s_classify_forward (int http_status, const char *body, const char *content_type,
                    sb_send_result_t *result)
{
    result->http_status = http_status;
    result->opt_out = false;
    result->retry_after_ms = -1;
    result->provider_id = s_strdup ("");
    result->error_code = s_strdup ("");
    char error[160] = "";
    const char *text = NULL;
    size_t text_size = 0;
    json_t *root = NULL;
    if (http_status >= 200 && http_status < 300) {
        result->outcome = SB_SEND_SENT;
        body = body ? body : "";
        bool is_json = content_type && strncasecmp (content_type, "application/json", 16) == 0;
        const char *p = body;
        while (isspace ((unsigned char) *p))
            p++;
        if (is_json || *p == '{')
            root = json_loads (body, JSON_DECODE_ANY, NULL);
        if (json_is_object (root)) {
            json_t *field = json_object_get (root, "text");
            if (!json_is_string (field))
                field = json_object_get (root, "reply");
            if (json_is_string (field)) {
                text = json_string_value (field);
                text_size = json_string_length (field);
            }
            else
                text = "", text_size = 0;
        }
        else if (json_is_string (root)) {
            text = json_string_value (root);
            text_size = json_string_length (root);
        }
        else if (is_json) {
            //  A JSON answer that is not an object with a text: no reply.
            text = "", text_size = 0;
            if (!root)
                snprintf (error, sizeof error, "bot answered invalid JSON");
        }
        else
            text = body, text_size = strlen (body);
        //  Trim.
        while (text_size > 0 && isspace ((unsigned char) *text))
            text++, text_size--;
        while (text_size > 0 && isspace ((unsigned char) text[text_size - 1]))
            text_size--;
        if (memchr (text, 0, text_size))
            text_size = strlen (text);
        result->bot_text = s_strdup_capped (text, text_size, S_BOT_TEXT_MAX);
    }
    else {
        result->outcome = SB_SEND_FINAL;
        result->bot_text = s_strdup ("");
        if (http_status == 0)
            snprintf (error, sizeof error, "bot: no answer");
        else
            snprintf (error, sizeof error, "bot answered %d", http_status);
    }
    result->error = s_strdup (error);
    json_decref (root);
}

//  --------------------------------------------------------------------------
//  Results

static int
s_push_result (sb_sender_t *self, sb_send_result_t *result)
{
    if (self->results_count == self->results_cap) {
        size_t cap = self->results_cap ? self->results_cap * 2 : 16;
        sb_send_result_t *grown = malloc (cap * sizeof *grown);
        if (!grown)
            return -1;
        for (size_t i = 0; i < self->results_count; i++)
            grown[i] = self->results[(self->results_head + i) % self->results_cap];
        free (self->results);
        self->results = grown;
        self->results_cap = cap;
        self->results_head = 0;
    }
    self->results[(self->results_head + self->results_count) % self->results_cap] = *result;
    self->results_count++;
    return 0;
}

//  Queue a FINAL result for an item that was never sent.
static void
s_push_final (sb_sender_t *self, const sb_outbox_item_t *item, const char *why)
{
    sb_send_result_t result = {.id = item->id,
                               .kind = item->kind,
                               .provider = item->provider,
                               .outcome = SB_SEND_FINAL,
                               .provider_id = s_strdup (""),
                               .bot_text = s_strdup (""),
                               .http_status = 0,
                               .error_code = s_strdup (""),
                               .error = s_strdup (why),
                               .retry_after_ms = -1,
                               .opt_out = false};
    snprintf (result.claim_token, sizeof result.claim_token, "%s", item->claim_token);
    sb_log (SB_LOG_WARN, S_MODULE, "send refused id=%lld reason=\"%s\"", (long long) item->id, why);
    if (s_push_result (self, &result))
        sb_outbox_result_free (&result);
}

int
sb_sender_next_result (sb_sender_t *self, sb_send_result_t *result)
{
    assert (self && result);
    if (self->results_count == 0)
        return 0;
    *result = self->results[self->results_head];
    self->results_head = (self->results_head + 1) % self->results_cap;
    self->results_count--;
    return 1;
}

//  --------------------------------------------------------------------------
//  Construction

static bool
s_is_sid (const char *text, const char *prefix)
{
    if (strlen (text) != 34 || strncmp (text, prefix, 2) != 0)
        return false;
    for (const char *p = text + 2; *p; p++)
        if (!isxdigit ((unsigned char) *p))
            return false;
    return true;
}

static bool
s_is_version (const char *text)
{
    //  v<digits>.<digits>
    if (*text++ != 'v' || !isdigit ((unsigned char) *text))
        return false;
    while (isdigit ((unsigned char) *text))
        text++;
    if (*text++ != '.' || !isdigit ((unsigned char) *text))
        return false;
    while (isdigit ((unsigned char) *text))
        text++;
    return *text == 0;
}

static void
s_free_secret (char **secret)
{
    if (*secret) {
        OPENSSL_cleanse (*secret, strlen (*secret));
        free (*secret);
        *secret = NULL;
    }
}

//  libcurl's socket callback: keep the table of the sockets it waits on
//  (what: CURL_POLL_IN, _OUT or _INOUT) up to date. A socket it waits on
//  for nothing (_NONE) or forgets (_REMOVE) leaves the table: a poll on it
//  would only report its hang-up, over and over.
static int
s_on_socket (CURL *easy, curl_socket_t fd, int what, void *arg, void *socketp)
{
    (void) easy;
    (void) socketp;
    sb_sender_t *self = (sb_sender_t *) arg;
    size_t i = 0;
    while (i < self->sockets_count && self->sockets[i].fd != fd)
        i++;
    if (what == CURL_POLL_REMOVE || what == CURL_POLL_NONE) {
        if (i < self->sockets_count)
            self->sockets[i] = self->sockets[--self->sockets_count];
        return 0;
    }
    if (i == self->sockets_count) {
        if (self->sockets_count == self->sockets_cap) {
            size_t cap = self->sockets_cap ? self->sockets_cap * 2 : 16;
            struct pollfd *sockets = realloc (self->sockets, cap * sizeof *sockets);
            struct pollfd *polled = realloc (self->polled, cap * sizeof *polled);
            if (sockets)
                self->sockets = sockets;
            if (polled)
                self->polled = polled;
            if (!sockets || !polled) {
                sb_log (SB_LOG_ERROR, S_MODULE, "out of memory tracking sockets=%zu", cap);
                return -1;  //  libcurl fails the transfers
            }
            self->sockets_cap = cap;
        }
        self->sockets[self->sockets_count++] = (struct pollfd){.fd = fd};
    }
    self->sockets[i].events =
        (short) ((what & CURL_POLL_IN ? POLLIN : 0) | (what & CURL_POLL_OUT ? POLLOUT : 0));
    return 0;
}

sb_sender_t *
sb_sender_new (const sb_config_t *config)
{
    assert (config);
    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        sb_log (SB_LOG_ERROR, S_MODULE, "libcurl initialisation failed");
        return NULL;
    }
    sb_sender_t *self = calloc (1, sizeof *self);
    if (!self) {
        curl_global_cleanup ();
        return NULL;
    }
    self->concurrency = (size_t) sb_config_int (config, SB_CFG_SB_SEND_CONCURRENCY);
    self->timeout_ms = (long) sb_config_int (config, SB_CFG_SB_SEND_TIMEOUT_MS);
    self->connect_timeout_ms = (long) sb_config_int (config, SB_CFG_SB_SEND_CONNECT_TIMEOUT_MS);
    if (sb_config_has (config, SB_CFG_SB_API_CA_FILE)
        && !(self->ca_file = strdup (sb_config_str (config, SB_CFG_SB_API_CA_FILE))))
        goto fail;
    if (self->concurrency == 0)
        self->concurrency = 1;

    //  Twilio: the account SID names the URL; credentials are the auth
    //  token, or an API key with its secret (preferred when both are set).
    const char *sid = sb_config_str (config, SB_CFG_TWILIO_ACCOUNT_SID);
    const char *token = sb_config_str (config, SB_CFG_TWILIO_AUTH_TOKEN);
    const char *key = sb_config_str (config, SB_CFG_TWILIO_API_KEY);
    const char *secret = sb_config_str (config, SB_CFG_TWILIO_API_SECRET);
    if (*sid && !s_is_sid (sid, "AC")) {
        sb_log (SB_LOG_ERROR, S_MODULE, "TWILIO_ACCOUNT_SID is not AC followed by 32 hex digits");
        goto fail;
    }
    if (*key && !s_is_sid (key, "SK")) {
        sb_log (SB_LOG_ERROR, S_MODULE, "TWILIO_API_KEY is not SK followed by 32 hex digits");
        goto fail;
    }
    if (!*key != !*secret) {
        sb_log (SB_LOG_ERROR, S_MODULE, "TWILIO_API_KEY and TWILIO_API_SECRET go together");
        goto fail;
    }
    if (*sid && (*key || *token)) {
        self->twilio_url = sb_text_join (sb_config_str (config, SB_CFG_TWILIO_API_BASE),
                                         "/2010-04-01/Accounts/", sid, "/Messages.json", NULL);
        self->twilio_user = s_strdup (*key ? key : sid);
        self->twilio_password = s_strdup (*key ? secret : token);
        if (!self->twilio_url || !self->twilio_user || !self->twilio_password)
            goto fail;
    }
    else
        sb_log (SB_LOG_INFO, S_MODULE,
                "Twilio sending off: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
                "(or TWILIO_API_KEY and TWILIO_API_SECRET)");
    if (sb_config_has (config, SB_CFG_SB_PUBLIC_URL)) {
        self->status_callback =
            sb_text_join (sb_config_str (config, SB_CFG_SB_PUBLIC_URL),
                          sb_config_str (config, SB_CFG_SB_PATH_PREFIX), "/twilio/status", NULL);
        if (!self->status_callback)
            goto fail;
    }

    //  Meta.
    const char *version = sb_config_str (config, SB_CFG_META_API_VERSION);
    if (!s_is_version (version)) {
        sb_log (SB_LOG_ERROR, S_MODULE, "META_API_VERSION=%.40s is not like v23.0", version);
        goto fail;
    }
    const char *access = sb_config_str (config, SB_CFG_META_ACCESS_TOKEN);
    if (*access) {
        for (const char *p = access; *p; p++)
            if ((unsigned char) *p <= ' ' || *p == 0x7f) {
                sb_log (SB_LOG_ERROR, S_MODULE,
                        "META_ACCESS_TOKEN holds a space or control character");
                goto fail;
            }
        self->meta_base =
            sb_text_join (sb_config_str (config, SB_CFG_META_API_BASE), "/", version, NULL);
        self->meta_auth = sb_text_join ("Authorization: Bearer ", access, NULL);
        if (!self->meta_base || !self->meta_auth)
            goto fail;
    }
    else
        sb_log (SB_LOG_INFO, S_MODULE, "Meta sending off: set META_ACCESS_TOKEN");

    self->multi = curl_multi_init ();
    if (!self->multi) {
        sb_log (SB_LOG_ERROR, S_MODULE, "curl_multi_init failed");
        goto fail;
    }
    //  Keep a warm connection per transfer slot, and at most that many to
    //  one host: past it libcurl queues a transfer for a connection that
    //  frees rather than opening more. Where the provider speaks HTTP/2
    //  (over TLS: graph.facebook.com and api.twilio.com negotiate it by
    //  ALPN) transfers share connections as streams (CURLPIPE_MULTIPLEX);
    //  over plain http (the sandbox on loopback) it stays HTTP/1.1, one
    //  request per kept-alive connection at a time.
    curl_multi_setopt (self->multi, CURLMOPT_MAXCONNECTS, (long) self->concurrency);
    curl_multi_setopt (self->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) self->concurrency);
    curl_multi_setopt (self->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETFUNCTION, s_on_socket);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETDATA, self);
    return self;
fail:
    sb_sender_destroy (&self);
    return NULL;
}

static void
s_transfer_destroy (s_transfer_t **transfer_p)
{
    s_transfer_t *transfer = *transfer_p;
    if (!transfer)
        return;
    if (transfer->easy)
        curl_easy_cleanup (transfer->easy);
    //  The Bearer token does not linger in freed memory.
    for (struct curl_slist *h = transfer->headers; h; h = h->next)
        if (strncmp (h->data, "Authorization:", 14) == 0)
            OPENSSL_cleanse (h->data, strlen (h->data));
    curl_slist_free_all (transfer->headers);
    free (transfer->post);
    free (transfer->answer);
    free (transfer);
    *transfer_p = NULL;
}

void
sb_sender_destroy (sb_sender_t **self_p)
{
    assert (self_p);
    sb_sender_t *self = *self_p;
    if (!self)
        return;
    while (self->transfers) {
        s_transfer_t *transfer = self->transfers;
        self->transfers = transfer->next;
        curl_multi_remove_handle (self->multi, transfer->easy);
        s_transfer_destroy (&transfer);
    }
    if (self->multi)
        curl_multi_cleanup (self->multi);  //  may still call s_on_socket
    free (self->sockets);
    free (self->polled);
    sb_send_result_t result;
    while (sb_sender_next_result (self, &result))
        sb_outbox_result_free (&result);
    free (self->results);
    free (self->twilio_url);
    free (self->ca_file);
    free (self->twilio_user);
    s_free_secret (&self->twilio_password);
    free (self->status_callback);
    free (self->meta_base);
    s_free_secret (&self->meta_auth);
    free (self);
    curl_global_cleanup ();
    *self_p = NULL;
}

size_t
sb_sender_room (const sb_sender_t *self)
{
    assert (self);
    return self->in_flight < self->concurrency ? self->concurrency - self->in_flight : 0;
}

size_t
sb_sender_in_flight (const sb_sender_t *self)
{
    assert (self);
    return self->in_flight;
}

size_t
sb_sender_held (const sb_sender_t *self, int64_t *ids, size_t max)
{
    assert (self);
    size_t n = 0;
    for (const s_transfer_t *t = self->transfers; t; t = t->next, n++)
        if (n < max)
            ids[n] = t->id;
    for (size_t i = 0; i < self->results_count; i++, n++)
        if (n < max)
            ids[n] = self->results[(self->results_head + i) % self->results_cap].id;
    return n;
}

//  --------------------------------------------------------------------------
//  Transfers

static size_t
s_on_body (char *data, size_t size, size_t count, void *arg)
{
    s_transfer_t *transfer = arg;
    size_t bytes = size * count;
    size_t room = S_BODY_MAX - transfer->answer_size;
    size_t keep = bytes < room ? bytes : room;
    if (keep > 0) {
        memcpy (transfer->answer + transfer->answer_size, data, keep);
        transfer->answer_size += keep;
        transfer->answer[transfer->answer_size] = 0;
    }
    transfer->answer_dropped += bytes - keep;
    return bytes;
}

static size_t
s_on_header (char *data, size_t size, size_t count, void *arg)
{
    s_transfer_t *transfer = arg;
    size_t bytes = size * count;
    static const char name[] = "retry-after:";
    if (bytes >= 5 && strncmp (data, "HTTP/", 5) == 0)
        transfer->retry_after[0] = 0;  //  a new answer (after 100 Continue, say)
    else if (bytes > sizeof name - 1 && strncasecmp (data, name, sizeof name - 1) == 0) {
        const char *value = data + sizeof name - 1;
        size_t len = bytes - (sizeof name - 1);
        while (len > 0 && (*value == ' ' || *value == '\t'))
            value++, len--;
        while (len > 0
               && (value[len - 1] == '\r' || value[len - 1] == '\n' || value[len - 1] == ' '
                   || value[len - 1] == '\t'))
            len--;
        if (len >= sizeof transfer->retry_after)
            len = 0;  //  not a value we could use
        memcpy (transfer->retry_after, value, len);
        transfer->retry_after[len] = 0;
    }
    return bytes;
}

//  Set up the parts every request shares. 0 or -1.
static int
s_transfer_setup (sb_sender_t *self, s_transfer_t *transfer, const char *url, long timeout_ms)
{
    transfer->answer = malloc (S_BODY_MAX + 1);
    transfer->easy = curl_easy_init ();
    if (!transfer->answer || !transfer->easy)
        return -1;
    transfer->answer[0] = 0;
    CURL *easy = transfer->easy;
    long connect_ms = self->connect_timeout_ms < timeout_ms ? self->connect_timeout_ms : timeout_ms;
    if (curl_easy_setopt (easy, CURLOPT_URL, url) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_USERAGENT, S_USER_AGENT) != CURLE_OK
        //  HTTP/2 where TLS offers it, else HTTP/1.1 kept alive; a new
        //  transfer waits for a connection that may multiplex it rather
        //  than opening one of its own.
        || curl_easy_setopt (easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_PIPEWAIT, 1L) != CURLE_OK
        || (self->ca_file && curl_easy_setopt (easy, CURLOPT_CAINFO, self->ca_file) != CURLE_OK)
        || curl_easy_setopt (easy, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_on_body) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_WRITEDATA, transfer) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, s_on_header) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_HEADERDATA, transfer) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, transfer->curl_error) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_PRIVATE, transfer) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_POSTFIELDS, transfer->post) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) strlen (transfer->post))
               != CURLE_OK)
        return -1;
    //  No "Expect: 100-continue" round trip for our small bodies.
    struct curl_slist *more = curl_slist_append (transfer->headers, "Expect:");
    if (!more)
        return -1;
    transfer->headers = more;
    more = curl_slist_append (transfer->headers, "Accept: application/json");
    if (!more)
        return -1;
    transfer->headers = more;
    if (curl_easy_setopt (easy, CURLOPT_HTTPHEADER, transfer->headers) != CURLE_OK)
        return -1;
    return 0;
}

static int
s_add_header (s_transfer_t *transfer, const char *line)
{
    struct curl_slist *more = curl_slist_append (transfer->headers, line);
    if (!more)
        return -1;
    transfer->headers = more;
    return 0;
}

//  "whatsapp:" + address for WhatsApp, "rcs:" + address for RCS (a reply
//  goes from the RCS sender it was addressed to, to the user's rcs:
//  address), the address as is otherwise.
static int
s_form_address (sb_form_t *form, const char *key, int channel, const char *address)
{
    const char *prefix = channel == SB_CHANNEL_WHATSAPP ? "whatsapp:"
                         : channel == SB_CHANNEL_RCS    ? "rcs:"
                                                        : NULL;
    if (!prefix)
        return sb_form_add (form, key, address);
    char *full = sb_text_join (prefix, address, NULL);
    int rc = full ? sb_form_add (form, key, full) : -1;
    free (full);
    return rc;
}

//  Prepare a Twilio send. 0, -1 out of memory, or 1 with *why set.
static int
s_prepare_twilio (sb_sender_t *self, s_transfer_t *transfer, const sb_outbox_item_t *item,
                  const char **why)
{
    if (!self->twilio_url)
        return *why = "Twilio is not configured", 1;
    if (!item->to || !*item->to || !item->from || !*item->from)
        return *why = "reply has no to or from address", 1;
    sb_form_t *form = sb_form_new ();
    int rc = -1;
    if (form && !s_form_address (form, "To", item->channel, item->to)
        && !s_form_address (form, "From", item->channel, item->from)
        && !sb_form_add (form, "Body", item->body ? item->body : "")
        && (!self->status_callback
            || !sb_form_add (form, "StatusCallback", self->status_callback))) {
        transfer->post = sb_form_encode (form);
        if (transfer->post
            && !s_add_header (transfer, "Content-Type: application/x-www-form-urlencoded")
            && !s_transfer_setup (self, transfer, self->twilio_url, self->timeout_ms)
            && curl_easy_setopt (transfer->easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC)
                   == CURLE_OK
            && curl_easy_setopt (transfer->easy, CURLOPT_USERNAME, self->twilio_user) == CURLE_OK
            && curl_easy_setopt (transfer->easy, CURLOPT_PASSWORD, self->twilio_password)
                   == CURLE_OK)
            rc = 0;
    }
    sb_form_destroy (&form);
    return rc;
}

static bool
s_is_digits (const char *text)
{
    if (!text || !*text)
        return false;
    for (; *text; text++)
        if (!isdigit ((unsigned char) *text))
            return false;
    return true;
}

//  Prepare a Meta send. 0, -1 out of memory, or 1 with *why set.
static int
s_prepare_meta (sb_sender_t *self, s_transfer_t *transfer, const sb_outbox_item_t *item,
                const char **why)
{
    if (!self->meta_base)
        return *why = "Meta is not configured", 1;
    if (!s_is_digits (item->account))
        return *why = "reply has no phone_number_id (account)", 1;
    if (!item->to || !*item->to)
        return *why = "reply has no to address", 1;
    //  A user known only by a business-scoped user id is addressed by
    //  "recipient" (Meta's Business-scoped user IDs page; "to" takes
    //  phone numbers and wins when both are given).
    json_t *message =
        json_pack ("{s:s, s:s, s:s, s:s, s:{s:s}}", "messaging_product", "whatsapp",
                   "recipient_type", "individual", sb_bsuid_like (item->to) ? "recipient" : "to",
                   item->to, "type", "text", "text", "body", item->body ? item->body : "");
    if (!message)
        return *why = "reply text is not UTF-8", 1;
    if (item->context_id && *item->context_id
        && json_object_set_new (message, "context",
                                json_pack ("{s:s}", "message_id", item->context_id))) {
        json_decref (message);
        return *why = "context id is not UTF-8", 1;
    }
    transfer->post = json_dumps (message, JSON_COMPACT);
    json_decref (message);
    char *url = sb_text_join (self->meta_base, "/", item->account, "/messages", NULL);
    int rc = -1;
    if (transfer->post && url && !s_add_header (transfer, "Content-Type: application/json")
        && !s_add_header (transfer, self->meta_auth)
        && !s_transfer_setup (self, transfer, url, self->timeout_ms))
        rc = 0;
    free (url);
    return rc;
}

//  Prepare a bot forward. 0, -1 out of memory, or 1 with *why set.
static int
s_prepare_forward (sb_sender_t *self, s_transfer_t *transfer, const sb_outbox_item_t *item,
                   const char **why)
{
    const char *url = item->forward_url;
    if (!url || !sb_text_url_host (url))
        return *why = "forward URL is not http:// or https://", 1;
    transfer->post = s_strdup (item->event_json ? item->event_json : "{}");
    long timeout_ms = item->forward_timeout_ms > 0 ? item->forward_timeout_ms : self->timeout_ms;
    if (!transfer->post || s_add_header (transfer, "Content-Type: application/json")
        || s_transfer_setup (self, transfer, url, timeout_ms))
        return -1;
    return 0;
}

int
sb_sender_submit (sb_sender_t *self, const sb_outbox_item_t *item)
{
    assert (self && item);
    if (self->in_flight >= self->concurrency)
        return -1;
    s_transfer_t *transfer = calloc (1, sizeof *transfer);
    if (!transfer)
        return -1;
    transfer->id = item->id;
    transfer->kind = item->kind;
    transfer->provider = item->provider;
    snprintf (transfer->claim_token, sizeof transfer->claim_token, "%s", item->claim_token);
    const char *why = NULL;
    int rc;
    if (item->kind == SB_OUTBOX_FORWARD)
        rc = s_prepare_forward (self, transfer, item, &why);
    else if (item->kind != SB_OUTBOX_REPLY)
        rc = 1, why = "unknown outbox kind";
    else if (item->provider == SB_PROVIDER_TWILIO)
        rc = s_prepare_twilio (self, transfer, item, &why);
    else if (item->provider == SB_PROVIDER_META)
        rc = s_prepare_meta (self, transfer, item, &why);
    else
        rc = 1, why = "unknown provider";
    if (rc == 0 && curl_multi_add_handle (self->multi, transfer->easy) != CURLM_OK)
        rc = -1;
    if (rc != 0) {
        if (rc == 1)
            s_push_final (self, item, why);
        else
            sb_log (SB_LOG_WARN, S_MODULE, "cannot start send id=%lld: out of memory",
                    (long long) item->id);
        s_transfer_destroy (&transfer);
        return -1;
    }
    transfer->next = self->transfers;
    if (self->transfers)
        self->transfers->prev = transfer;
    self->transfers = transfer;
    self->in_flight++;
    sb_debug (S_MODULE, "send started id=%lld kind=%d provider=%d", (long long) item->id,
              (int) item->kind, item->provider);
    return 0;
}

static const char *
s_outcome_name (sb_send_outcome_t outcome)
{
    return outcome == SB_SEND_SENT ? "sent" : outcome == SB_SEND_RETRY ? "retry" : "final";
}

//  A transfer finished: classify, queue the result, free the transfer.
static void
s_finish (sb_sender_t *self, s_transfer_t *transfer, CURLcode code)
{
    long status = 0;
    char *content_type = NULL;
    if (code == CURLE_OK) {
        curl_easy_getinfo (transfer->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo (transfer->easy, CURLINFO_CONTENT_TYPE, &content_type);
    }
    sb_send_result_t result = {
        .id = transfer->id, .kind = transfer->kind, .provider = transfer->provider};
    snprintf (result.claim_token, sizeof result.claim_token, "%s", transfer->claim_token);
    if (transfer->kind == SB_OUTBOX_FORWARD)
        s_classify_forward ((int) status, transfer->answer, content_type, &result);
    else
        sb_sender_classify (transfer->provider, (int) status, transfer->answer,
                            transfer->retry_after, &result);
    if (code != CURLE_OK) {
        //  Say what went wrong on the wire; a URL we cannot use never will.
        char error[CURL_ERROR_SIZE + 64];
        snprintf (error, sizeof error, "%s: %s",
                  code == CURLE_OPERATION_TIMEDOUT ? "timeout" : curl_easy_strerror (code),
                  *transfer->curl_error ? transfer->curl_error : curl_easy_strerror (code));
        free (result.error);
        result.error = s_strdup (error);
        if (code == CURLE_URL_MALFORMAT || code == CURLE_UNSUPPORTED_PROTOCOL)
            result.outcome = SB_SEND_FINAL;
    }
    if (transfer->answer_dropped)
        sb_debug (S_MODULE, "answer cut id=%lld dropped=%zu", (long long) transfer->id,
                  transfer->answer_dropped);
    const char *what = transfer->kind == SB_OUTBOX_FORWARD ? "forward" : "send";
    sb_log_level_t level = result.outcome == SB_SEND_SENT    ? SB_LOG_DEBUG
                           : result.outcome == SB_SEND_RETRY ? SB_LOG_INFO
                                                             : SB_LOG_WARN;
    if (sb_log_enabled (level))
        sb_log (level, S_MODULE, "%s %s id=%lld http=%d code=%s retry_after_ms=%lld error=\"%s\"",
                what, s_outcome_name (result.outcome), (long long) result.id, result.http_status,
                result.error_code ? result.error_code : "", (long long) result.retry_after_ms,
                result.error ? result.error : "");
    if (s_push_result (self, &result)) {
        sb_log (SB_LOG_WARN, S_MODULE, "result lost id=%lld: out of memory", (long long) result.id);
        sb_outbox_result_free (&result);
    }
}

static void
s_collect (sb_sender_t *self)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read (self->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *private = NULL;
        curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, &private);
        s_transfer_t *transfer = (s_transfer_t *) private;
        CURLcode code = msg->data.result;  //  msg is invalid after remove_handle
        curl_multi_remove_handle (self->multi, transfer->easy);
        if (transfer->prev)
            transfer->prev->next = transfer->next;
        else
            self->transfers = transfer->next;
        if (transfer->next)
            transfer->next->prev = transfer->prev;
        self->in_flight--;
        s_finish (self, transfer, code);
        s_transfer_destroy (&transfer);
    }
}

const struct pollfd *
sb_sender_sockets (const sb_sender_t *self, size_t *count)
{
    assert (self && count);
    *count = self->sockets_count;
    return self->sockets;
}

int
sb_sender_timeout (const sb_sender_t *self)
{
    assert (self);
    long timeout_ms = -1;
    if (curl_multi_timeout (self->multi, &timeout_ms) != CURLM_OK)
        return -1;
    return timeout_ms > INT32_MAX ? INT32_MAX : (int) timeout_ms;
}

int
sb_sender_drive (sb_sender_t *self, const struct pollfd *fds, size_t count)
{
    assert (self && (fds || count == 0));
    int running = 0;
    CURLMcode code = CURLM_OK;
    for (size_t i = 0; i < count && code == CURLM_OK; i++) {
        short revents = fds[i].revents;
        if (revents == 0)
            continue;
        int mask = (revents & (POLLIN | POLLHUP) ? CURL_CSELECT_IN : 0)
                   | (revents & POLLOUT ? CURL_CSELECT_OUT : 0)
                   | (revents & (POLLERR | POLLNVAL) ? CURL_CSELECT_ERR : 0);
        code = curl_multi_socket_action (self->multi, fds[i].fd, mask, &running);
    }
    //  libcurl's timer: connects, timeouts, transfers just added.
    if (code == CURLM_OK && sb_sender_timeout (self) == 0)
        code = curl_multi_socket_action (self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (code != CURLM_OK) {
        sb_log (SB_LOG_ERROR, S_MODULE, "curl_multi_socket_action failed: %s",
                curl_multi_strerror (code));
        return -1;
    }
    s_collect (self);
    return 0;
}

int
sb_sender_perform (sb_sender_t *self, int timeout_ms)
{
    assert (self);
    int64_t deadline = sb_time_mono_us () / 1000 + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        size_t count = self->sockets_count;
        if (count)
            memcpy (self->polled, self->sockets, count * sizeof *self->polled);
        int64_t wait = deadline - sb_time_mono_us () / 1000;
        int timer = sb_sender_timeout (self);
        if (wait < 0)
            wait = 0;
        if (timer >= 0 && timer < wait)
            wait = timer;
        if (poll (self->polled, count, (int) wait) < 0) {
            if (errno != EINTR) {
                char reason[128];
                sb_log (SB_LOG_ERROR, S_MODULE, "poll failed: %s",
                        sb_strerror (errno, reason, sizeof reason));
                return -1;
            }
            count = 0;  //  revents undefined: act on the timer only
        }
        if (sb_sender_drive (self, self->polled, count))
            return -1;
        if (self->results_count > 0 || sb_time_mono_us () / 1000 >= deadline)
            return 0;
    }
}
