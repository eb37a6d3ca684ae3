/*  switchboard sandbox: the Twilio Messages API and the Meta WhatsApp Cloud
    API messages endpoint, faked on loopback, so the whole loop runs with no
    account and no internet.

    It checks what the real APIs check (tests/conformance/
    twilio-messages-openapi.json and meta-messages-openapi.json): HTTP Basic
    auth with the account SID and auth token (or an API key and its secret),
    the AccountSid in the path, the form fields (To, From or
    MessagingServiceSid, Body or MediaUrl, StatusCallback, whatsapp:
    prefixes on both ends); the Bearer token, the Content-Type and the JSON
    shape of a WhatsApp text message (other message types are accepted when
    their object is present). Violations get the providers' own error
    shapes and codes. Accepted sends get realistic answers: a 201 message
    resource with an SM/MM sid, or a 200 with a wamid.

    Every provider request is recorded (GET /_sandbox/requests, DELETE to
    clear). POST /_sandbox/fail plans failures: the next N requests, or a
    random share of them, answer 500, 429 with Retry-After, slowly, or
    with Meta's 131047 (outside the 24-hour window).

    With --callbacks (or SB_SANDBOX_CALLBACKS) set to the ingress's base URL,
    each accepted send is followed by its status callbacks, "sent" then
    "delivered", signed as the providers sign them: X-Twilio-Signature
    (TWILIO_AUTH_TOKEN over the URL Twilio would call) and
    X-Hub-Signature-256 (META_APP_SECRET over the exact body).

    DESIGN
    civetweb's worker threads run the handler; everything they share (the
    request log, the failure plan, the callback queue) sits behind one
    mutex, never held across I/O. Callbacks are posted by one background
    thread with libcurl's multi interface, up to S_CALLBACK_CONCURRENCY at
    a time; a message's second callback is queued only when its first has
    been answered, so they arrive in order. A slow answer sleeps in short
    steps so SIGTERM never waits long.

    Limits: a test tool, not a provider. Request bodies over 1 MiB are
    refused; the log keeps about the last S_LOG_MAX requests (the oldest
    tenth goes when it is full), each body cut at 64 KiB. Callbacks are not retried when the ingress does not take them
    (logged). No TLS: plain HTTP on loopback.
*/
#include <civetweb.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_config.h"
#include "sb_form.h"
#include "sb_log.h"
#include "sb_sig.h"

#define S_CMD "sandbox"
#define S_MODULE "sandbox"
#define S_BODY_MAX (1024 * 1024)        //  largest request body accepted
#define S_LOG_BODY_MAX (64 * 1024)      //  bytes of a body kept in the log
#define S_DRAIN_MAX (64 * 1024 * 1024)  //  bytes of a refused body read and dropped
#define S_LOG_MAX 100000                //  requests kept in the log
#define S_CALLBACK_CONCURRENCY 16       //  callbacks in flight at once
#define S_CALLBACK_TIMEOUT_MS 10000     //  total time of one callback
#define S_DEFAULT_DELAY_MS 5000         //  slow answers, unless delay_ms says
#define S_MAX_DELAY_MS 600000           //  longest slow answer
#define S_WABA_ID "102290129340398"     //  the docs' example WhatsApp Business Account
#define S_DISPLAY_NUMBER "15550783881"  //  the docs' example display number
#define S_TWILIO_MAX_BODY 1600          //  characters in a Twilio Body
#define S_META_MAX_TEXT 4096            //  characters in a WhatsApp text body

//  The signal flag: set by SIGINT/SIGTERM, read by the main loop (one of
//  the three globals STYLE.md allows).
static volatile sig_atomic_t s_interrupted = 0;

static void
s_on_signal (int signum)
{
    (void) signum;
    s_interrupted = 1;
}

typedef enum {
    S_FAIL_NONE = 0,
    S_FAIL_500,        //  500 with the provider's error body
    S_FAIL_429,        //  429 with Retry-After and 20429 / 130429
    S_FAIL_SLOW,       //  the normal answer, after delay_ms
    S_FAIL_META131047, //  Meta 400 code 131047 (re-engagement)
    S_FAIL_MIXED,      //  random: 500 or 429 (rate plans only)
} s_fail_mode_t;

static const char *s_fail_names[] = {"none", "500", "429", "slow", "meta131047", "mixed"};

#define S_TWILIO 1
#define S_META 2

//  A failure plan, from POST /_sandbox/fail.
typedef struct {
    s_fail_mode_t mode;      //  for the next `count` requests
    long count;              //  requests left to fail that way
    s_fail_mode_t rate_mode; //  for a random share of the others
    double rate;             //  that share, 0..1
    unsigned providers;      //  S_TWILIO | S_META: which requests the plan applies to
    long retry_after_s;      //  429: Retry-After seconds
    long delay_ms;           //  slow: how long to wait
} s_plan_t;

//  One status callback to post; `then` is posted after it is answered.
typedef struct s_callback_t {
    struct s_callback_t *next;   //  queue
    struct s_callback_t *then;   //  the next status of the same message
    int64_t due;                 //  monotonic ms when it may be posted
    char *url;                   //  where to POST
    char *body;                  //  exact bytes
    struct curl_slist *headers;  //  Content-Type and signature
    char *what;                  //  for logs: "twilio sent SM..."
    char error[CURL_ERROR_SIZE]; //  libcurl's detail on failure
} s_callback_t;

typedef struct {
    //  Settings, immutable after start.
    const char *account_sid;   //  TWILIO_ACCOUNT_SID
    const char *auth_token;    //  TWILIO_AUTH_TOKEN (secret)
    const char *api_key;       //  TWILIO_API_KEY
    const char *api_secret;    //  TWILIO_API_SECRET (secret)
    const char *meta_token;    //  META_ACCESS_TOKEN (secret)
    const char *app_secret;    //  META_APP_SECRET (secret)
    const char *public_url;    //  SB_PUBLIC_URL ("" when unset)
    const char *prefix;        //  SB_PATH_PREFIX
    const char *callbacks;     //  ingress base URL for callbacks ("" = none)
    long callback_delay_ms;    //  pause before each callback
    atomic_int stopping;       //  set when shutting down: slow answers end
    //  Shared state, under lock.
    pthread_mutex_t lock;      //  guards everything below
    json_t *log;               //  array of request records
    uint64_t next_seq;         //  seq of the next record
    s_plan_t plan;             //  failures to inject
    int in_flight;             //  provider requests being answered
    //  Callback thread.
    CURLM *multi;              //  its multi handle (curl_multi_wakeup is thread-safe)
    s_callback_t *queue;       //  callbacks waiting, oldest first
    s_callback_t *queue_tail;  //  last of them
    bool thread_started;       //  thread must be joined
    pthread_t thread;          //  the callback poster
} s_sandbox_t;

//  --------------------------------------------------------------------------
//  Small helpers

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  RFC 2822 date as Twilio writes it: "Thu, 24 Aug 2023 05:01:45 +0000".
static void
s_rfc2822 (time_t when, char *out, size_t size)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r (&when, &tm);
    snprintf (out, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
              months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

//  ISO 8601 UTC with milliseconds, for the request log.
static void
s_iso8601 (int64_t ms, char *out, size_t size)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    snprintf (out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}

//  prefix + 2*bytes random hex digits (lower or upper case).
static void
s_random_id (const char *prefix, size_t bytes, bool upper, char *out, size_t size)
{
    unsigned char raw[32];
    if (bytes > sizeof raw)
        bytes = sizeof raw;
    if (RAND_bytes (raw, (int) bytes) != 1)
        for (size_t i = 0; i < bytes; i++)  //  never expected; ids only need to differ
            raw[i] = (unsigned char) (s_mono_ms () >> (i % 8)) ^ (unsigned char) i;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t at = (size_t) snprintf (out, size, "%s", prefix);
    for (size_t i = 0; i < bytes && at + 2 < size; i++) {
        out[at++] = digits[raw[i] >> 4];
        out[at++] = digits[raw[i] & 15];
    }
    out[at < size ? at : size - 1] = 0;
}

static double
s_random_unit (void)
{
    uint32_t value = 0;
    if (RAND_bytes ((unsigned char *) &value, sizeof value) != 1)
        value = (uint32_t) s_mono_ms ();
    return value / 4294967296.0;
}

static bool
s_secret_equal (const char *given, size_t given_size, const char *expected)
{
    size_t size = strlen (expected);
    return *expected && given_size == size && CRYPTO_memcmp (given, expected, size) == 0;
}

static bool
s_is_sid (const char *text, const char *prefix)
{
    if (!text || strlen (text) != 34 || strncmp (text, prefix, 2) != 0)
        return false;
    for (const char *p = text + 2; *p; p++)
        if (!isxdigit ((unsigned char) *p))
            return false;
    return true;
}

//  E.164: + and 7 to 15 digits (the shortest numbers in use), the first
//  not 0.
static bool
s_is_e164 (const char *text)
{
    if (*text++ != '+' || *text < '1' || *text > '9')
        return false;
    size_t n = strlen (text);
    if (n < 7 || n > 15)
        return false;
    for (; *text; text++)
        if (!isdigit ((unsigned char) *text))
            return false;
    return true;
}

//  A Twilio sender: E.164, a short code (5-6 digits), or an alphanumeric
//  sender id (1-11 letters, digits and spaces, at least one letter).
static bool
s_is_twilio_sender (const char *text)
{
    if (s_is_e164 (text))
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

//  An absolute http(s) URL with a host, no spaces or control bytes.
static bool
s_is_url (const char *text)
{
    const char *host;
    if (strncmp (text, "https://", 8) == 0)
        host = text + 8;
    else if (strncmp (text, "http://", 7) == 0)
        host = text + 7;
    else
        return false;
    if (!*host || *host == '/' || *host == ':' || *host == '?')
        return false;
    for (const char *p = text; *p; p++)
        if ((unsigned char) *p <= ' ' || *p == 0x7f)
            return false;
    for (const char *p = host; *p && *p != '/' && *p != '?' && *p != '#'; p++)
        if (*p == '_')
            return false;  //  "underscores are not allowed" in StatusCallback hosts
    return true;
}

//  Characters (code points) in UTF-8 text.
static size_t
s_utf8_length (const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

static char *
s_concat (const char *a, const char *b, const char *c)
{
    size_t size = strlen (a) + strlen (b) + strlen (c) + 1;
    char *out = malloc (size);
    if (out)
        snprintf (out, size, "%s%s%s", a, b, c);
    return out;
}

//  Sleep ms in short steps; returns early when the sandbox stops.
static void
s_sleep_ms (s_sandbox_t *self, long ms)
{
    int64_t until = s_mono_ms () + ms;
    while (!atomic_load (&self->stopping)) {
        int64_t left = until - s_mono_ms ();
        if (left <= 0)
            break;
        if (left > 20)
            left = 20;
        struct timespec ts = {0, (long) left * 1000000L};
        nanosleep (&ts, NULL);
    }
}

//  --------------------------------------------------------------------------
//  Answers

//  What a handler answers, and what the log records about it.
typedef struct {
    int status;                //  HTTP status
    char *body;                //  JSON text (owned)
    long retry_after_s;        //  >= 0: send a Retry-After header
    bool www_authenticate;     //  Twilio 401: add WWW-Authenticate
    char id[128];              //  SM.../wamid... when accepted
    char error_code[16];       //  provider error code ("" if none)
    const char *injected;      //  failure mode injected, or NULL
    bool close;                //  close the connection after answering
} s_answer_t;

static void
s_answer_json (s_answer_t *answer, int status, json_t *body)
{
    answer->status = status;
    free (answer->body);
    answer->body = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
}

static void
s_twilio_error (s_answer_t *answer, int status, int code, const char *message)
{
    char more_info[80];
    snprintf (more_info, sizeof more_info, "https://www.twilio.com/docs/errors/%d", code);
    snprintf (answer->error_code, sizeof answer->error_code, "%d", code);
    s_answer_json (answer, status,
                   json_pack ("{s:i, s:s, s:s, s:i}", "code", code, "message", message,
                              "more_info", more_info, "status", status));
}

static void
s_meta_error (s_answer_t *answer, int status, int code, const char *message,
              const char *details)
{
    char trace[32];
    s_random_id ("A", 11, true, trace, sizeof trace);
    snprintf (answer->error_code, sizeof answer->error_code, "%d", code);
    json_t *error = json_pack ("{s:s, s:s, s:i}", "message", message, "type", "OAuthException",
                               "code", code);
    if (error && details)
        json_object_set_new (error, "error_data",
                             json_pack ("{s:s, s:s}", "messaging_product", "whatsapp",
                                        "details", details));
    if (error && code == 190)
        json_object_set_new (error, "error_subcode", json_integer (463));
    if (error)
        json_object_set_new (error, "fbtrace_id", json_string (trace));
    s_answer_json (answer, status, error ? json_pack ("{s:o}", "error", error) : NULL);
}

//  Write the answer. Status line and headers are written here rather than
//  with mg_response_header_*: civetweb formats its Date header with
//  gmtime(), which is not thread-safe (ThreadSanitizer reports it).
static void
s_send (struct mg_connection *conn, const s_answer_t *answer)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const char *body = answer->body ? answer->body : "";
    size_t size = strlen (body);
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    char extra[160] = "";
    if (answer->retry_after_s >= 0)
        snprintf (extra, sizeof extra, "Retry-After: %ld\r\n", answer->retry_after_s);
    if (answer->www_authenticate)
        snprintf (extra + strlen (extra), sizeof extra - strlen (extra),
                  "WWW-Authenticate: Basic realm=\"Twilio API\"\r\n");
    if (answer->close)
        snprintf (extra + strlen (extra), sizeof extra - strlen (extra), "Connection: close\r\n");
    const char *reason = mg_get_response_code_text (conn, answer->status);
    mg_printf (conn,
               "HTTP/1.1 %d %s\r\n"
               "Content-Type: %s\r\n"
               "Content-Length: %zu\r\n"
               "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n"
               "%s\r\n",
               answer->status, reason ? reason : "Unknown",
               *body == '{' || *body == '[' ? "application/json; charset=utf-8"
                                            : "text/plain; charset=utf-8",
               size, days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
               tm.tm_hour, tm.tm_min, tm.tm_sec, extra);
    if (size)
        mg_write (conn, body, size);
}

static void
s_send_text (struct mg_connection *conn, int status, const char *body)
{
    s_answer_t answer = {.status = status, .retry_after_s = -1, .body = (char *) body};
    s_send (conn, &answer);
}

//  --------------------------------------------------------------------------
//  Failure injection

//  Take the failure for one provider request, under lock.
static s_fail_mode_t
s_take_failure (s_sandbox_t *self, unsigned provider, long *retry_after_s, long *delay_ms)
{
    s_fail_mode_t mode = S_FAIL_NONE;
    pthread_mutex_lock (&self->lock);
    s_plan_t *plan = &self->plan;
    if (plan->providers & provider) {
        if (plan->count > 0) {
            mode = plan->mode;
            plan->count--;
        }
        else if (plan->rate > 0 && s_random_unit () < plan->rate) {
            mode = plan->rate_mode;
            if (mode == S_FAIL_MIXED)
                mode = s_random_unit () < 0.5 ? S_FAIL_500 : S_FAIL_429;
        }
    }
    *retry_after_s = plan->retry_after_s;
    *delay_ms = plan->delay_ms;
    pthread_mutex_unlock (&self->lock);
    if (mode == S_FAIL_META131047 && provider != S_META)
        mode = S_FAIL_NONE;  //  Twilio has no such answer
    return mode;
}

//  Answer an injected failure (not slow: slow answers normally, later).
static void
s_inject (unsigned provider, s_fail_mode_t mode, long retry_after_s, s_answer_t *answer)
{
    answer->injected = s_fail_names[mode];
    if (mode == S_FAIL_500) {
        if (provider == S_TWILIO)
            s_twilio_error (answer, 500, 20500, "Internal Server Error");
        else
            s_meta_error (answer, 500, 131000, "(#131000) Something went wrong",
                          "Something went wrong");
    }
    else if (mode == S_FAIL_429) {
        answer->retry_after_s = retry_after_s;
        if (provider == S_TWILIO)
            s_twilio_error (answer, 429, 20429, "Too Many Requests");
        else
            s_meta_error (answer, 429, 130429, "(#130429) Rate limit hit",
                          "Cloud API message throughput has been reached.");
    }
    else if (mode == S_FAIL_META131047)
        s_meta_error (answer, 400, 131047, "(#131047) Re-engagement message",
                      "Message failed to send because more than 24 hours have passed since "
                      "the customer last replied to this number.");
}

//  --------------------------------------------------------------------------
//  Status callbacks

static void
s_callback_destroy (s_callback_t **callback_p)
{
    s_callback_t *callback = *callback_p;
    while (callback) {
        s_callback_t *then = callback->then;
        free (callback->url);
        free (callback->body);
        free (callback->what);
        curl_slist_free_all (callback->headers);
        free (callback);
        callback = then;
    }
    *callback_p = NULL;
}

static s_callback_t *
s_callback_new (const char *url, char *body, const char *content_type, const char *sig_name,
                const char *sig_value, const char *what)
{
    s_callback_t *callback = calloc (1, sizeof *callback);
    if (!callback) {
        free (body);
        return NULL;
    }
    callback->body = body;
    callback->url = strdup (url);
    callback->what = strdup (what);
    char line[160];
    snprintf (line, sizeof line, "Content-Type: %s", content_type);
    struct curl_slist *headers = curl_slist_append (NULL, line);
    if (headers && sig_value) {
        snprintf (line, sizeof line, "%s: %s", sig_name, sig_value);
        struct curl_slist *more = curl_slist_append (headers, line);
        if (more)
            headers = more;
        else {
            curl_slist_free_all (headers);
            headers = NULL;
        }
    }
    if (headers) {
        struct curl_slist *more = curl_slist_append (headers, "Expect:");
        if (more)
            headers = more;
    }
    callback->headers = headers;
    if (!callback->body || !callback->url || !callback->what || !callback->headers)
        s_callback_destroy (&callback);
    return callback;
}

//  Queue a chain of callbacks (takes ownership); its head is posted after
//  callback_delay_ms. The delay is the same for all, so the queue stays in
//  order of due time.
static void
s_callback_queue (s_sandbox_t *self, s_callback_t *callback)
{
    if (!callback)
        return;
    callback->due = s_mono_ms () + self->callback_delay_ms;
    pthread_mutex_lock (&self->lock);
    if (self->queue_tail)
        self->queue_tail->next = callback;
    else
        self->queue = callback;
    self->queue_tail = callback;
    pthread_mutex_unlock (&self->lock);
    curl_multi_wakeup (self->multi);
}

//  Discard answers: only the status matters.
static size_t
s_discard (char *data, size_t size, size_t count, void *arg)
{
    (void) data;
    (void) arg;
    return size * count;
}

//  Start posting a callback. Returns its easy handle, or NULL (then the
//  callback and its chain are dropped, logged).
static CURL *
s_callback_start (s_sandbox_t *self, s_callback_t *callback)
{
    CURL *easy = curl_easy_init ();
    if (!easy
        || curl_easy_setopt (easy, CURLOPT_URL, callback->url) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long) S_CALLBACK_TIMEOUT_MS) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_USERAGENT, "TwilioProxy/1.1") != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_HTTPHEADER, callback->headers) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_POSTFIELDS, callback->body) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) strlen (callback->body)) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_discard) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, callback->error) != CURLE_OK
        || curl_easy_setopt (easy, CURLOPT_PRIVATE, callback) != CURLE_OK
        || curl_multi_add_handle (self->multi, easy) != CURLM_OK) {
        sb_warn (S_MODULE, "callback not sent: cannot start a transfer what=\"%s\"",
                 callback->what);
        if (easy)
            curl_easy_cleanup (easy);
        s_callback_destroy (&callback);
        return NULL;
    }
    return easy;
}

static void *
s_callback_thread (void *arg)
{
    s_sandbox_t *self = arg;
    CURL *active[S_CALLBACK_CONCURRENCY];  //  transfers in flight
    size_t n_active = 0;

    while (!atomic_load (&self->stopping)) {
        //  Take the callbacks that are due, up to the bound, and start them.
        s_callback_t *due = NULL;
        int64_t now = s_mono_ms ();
        int64_t next_due = now + 100;
        size_t taking = n_active;
        pthread_mutex_lock (&self->lock);
        while (self->queue && self->queue->due <= now && taking < S_CALLBACK_CONCURRENCY) {
            s_callback_t *callback = self->queue;
            self->queue = callback->next;
            if (!self->queue)
                self->queue_tail = NULL;
            callback->next = due;
            due = callback;
            taking++;
        }
        if (self->queue && self->queue->due < next_due)
            next_due = self->queue->due;
        pthread_mutex_unlock (&self->lock);
        while (due) {
            s_callback_t *callback = due;
            due = callback->next;
            callback->next = NULL;
            CURL *easy = s_callback_start (self, callback);
            if (easy)
                active[n_active++] = easy;
        }
        int running = 0;
        curl_multi_perform (self->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (self->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *easy = msg->easy_handle;
            CURLcode code = msg->data.result;
            char *private = NULL;
            curl_easy_getinfo (easy, CURLINFO_PRIVATE, &private);
            s_callback_t *callback = (s_callback_t *) private;
            long status = 0;
            curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle (self->multi, easy);
            curl_easy_cleanup (easy);
            for (size_t i = 0; i < n_active; i++)
                if (active[i] == easy) {
                    active[i] = active[--n_active];
                    break;
                }
            if (code != CURLE_OK)
                sb_warn (S_MODULE, "callback failed what=\"%s\" url=%s error=\"%s\"",
                         callback->what, callback->url,
                         *callback->error ? callback->error : curl_easy_strerror (code));
            else if (status < 200 || status > 299)
                sb_warn (S_MODULE, "callback refused what=\"%s\" url=%s http=%ld",
                         callback->what, callback->url, status);
            else
                sb_debug (S_MODULE, "callback delivered what=\"%s\" http=%ld", callback->what,
                          status);
            //  The next status of the same message goes once this one is answered.
            s_callback_t *then = callback->then;
            callback->then = NULL;
            s_callback_destroy (&callback);
            s_callback_queue (self, then);
        }
        now = s_mono_ms ();
        int wait_ms = next_due > now ? (int) (next_due - now) : 0;
        if (wait_ms > 100 || n_active == S_CALLBACK_CONCURRENCY)
            wait_ms = 100;
        curl_multi_poll (self->multi, NULL, 0, wait_ms, NULL);
    }
    //  Stopping: abandon what is in flight or waiting.
    for (size_t i = 0; i < n_active; i++) {
        char *private = NULL;
        curl_easy_getinfo (active[i], CURLINFO_PRIVATE, &private);
        s_callback_t *callback = (s_callback_t *) private;
        curl_multi_remove_handle (self->multi, active[i]);
        curl_easy_cleanup (active[i]);
        s_callback_destroy (&callback);
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Twilio: POST /2010-04-01/Accounts/{AccountSid}/Messages.json

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
s_twilio_authorized (const s_sandbox_t *self, const char *header, char *user, size_t user_size)
{
    char password[512];
    *user = 0;
    if (s_basic_auth (header, user, user_size, password, sizeof password))
        return false;
    size_t size = strlen (password);
    bool ok = (strcmp (user, self->account_sid) == 0
               && s_secret_equal (password, size, self->auth_token))
              || (*self->api_key && strcmp (user, self->api_key) == 0
                  && s_secret_equal (password, size, self->api_secret));
    OPENSSL_cleanse (password, sizeof password);
    return ok && *self->account_sid;
}

//  SMS segments: GSM-7 when plain ASCII, else UCS-2 (a fair estimate).
static int
s_segments (const char *body)
{
    size_t chars = s_utf8_length (body);
    bool gsm = true;
    for (const unsigned char *p = (const unsigned char *) body; *p; p++)
        if (*p >= 0x80 || (*p < 0x20 && *p != '\n' && *p != '\r'))
            gsm = false;
    size_t single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    if (chars <= single)
        return 1;
    return (int) ((chars + part - 1) / part);
}

//  The address without its "whatsapp:" prefix; sets *whatsapp.
static const char *
s_channel_address (const char *address, bool *whatsapp)
{
    *whatsapp = strncmp (address, "whatsapp:", 9) == 0;
    return *whatsapp ? address + 9 : address;
}

//  The URL Twilio would call for a message's status, and where the sandbox
//  posts it (the same unless a public URL fronts the ingress). Both owned.
static int
s_twilio_callback_urls (const s_sandbox_t *self, const char *status_callback, char **signed_url,
                        char **post_url)
{
    *signed_url = *post_url = NULL;
    if (status_callback && *status_callback) {
        *signed_url = strdup (status_callback);
        //  Behind SB_PUBLIC_URL the ingress is reached at the callbacks URL.
        char *front = *self->public_url ? s_concat (self->public_url, self->prefix, "") : NULL;
        if (front && strncmp (status_callback, front, strlen (front)) == 0)
            *post_url = s_concat (self->callbacks, status_callback + strlen (front), "");
        else
            *post_url = strdup (status_callback);
        free (front);
    }
    else {
        *post_url = s_concat (self->callbacks, "/twilio/status", "");
        *signed_url = *self->public_url
                          ? s_concat (self->public_url, self->prefix, "/twilio/status")
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
s_twilio_callbacks (s_sandbox_t *self, const char *sid, const sb_form_t *request)
{
    char *signed_url, *post_url;
    if (s_twilio_callback_urls (self, sb_form_get (request, "StatusCallback"), &signed_url,
                                &post_url))
        return;
    const char *to = sb_form_get (request, "To");
    const char *from = sb_form_get (request, "From");
    const char *service = sb_form_get (request, "MessagingServiceSid");
    bool whatsapp;
    s_channel_address (to, &whatsapp);
    static const char *statuses[] = {"sent", "delivered"};
    s_callback_t *first = NULL, *last = NULL;
    for (size_t i = 0; i < 2; i++) {
        sb_form_t *form = sb_form_new ();
        if (!form)
            break;
        sb_form_add (form, "SmsSid", sid);
        sb_form_add (form, "SmsStatus", statuses[i]);
        sb_form_add (form, "MessageStatus", statuses[i]);
        sb_form_add (form, "To", to);
        if (service && *service)
            sb_form_add (form, "MessagingServiceSid", service);
        sb_form_add (form, "MessageSid", sid);
        sb_form_add (form, "AccountSid", self->account_sid);
        if (from && *from)
            sb_form_add (form, "From", from);
        sb_form_add (form, "ApiVersion", "2010-04-01");
        if (whatsapp)
            sb_form_add (form, "ChannelPrefix", "whatsapp");
        char signature[SB_SIG_TWILIO_SIZE];
        bool sign = *self->auth_token
                    && sb_sig_twilio_sign (self->auth_token, signed_url, form, signature) == 0;
        if (!sign && i == 0)
            sb_warn (S_MODULE, "Twilio callback unsigned: TWILIO_AUTH_TOKEN is unset sid=%s",
                     sid);
        char what[96];
        snprintf (what, sizeof what, "twilio %s %s", statuses[i], sid);
        s_callback_t *callback =
            s_callback_new (post_url, sb_form_encode (form), "application/x-www-form-urlencoded",
                            "X-Twilio-Signature", sign ? signature : NULL, what);
        sb_form_destroy (&form);
        if (!callback)
            break;
        if (last)
            last->then = callback;
        else
            first = callback;
        last = callback;
    }
    free (signed_url);
    free (post_url);
    s_callback_queue (self, first);
}

static void
s_twilio_handle (s_sandbox_t *self, struct mg_connection *conn, const char *account,
                 const char *body, size_t size, json_t *record, s_answer_t *answer)
{
    char user[256];
    bool authorized =
        s_twilio_authorized (self, mg_get_header (conn, "Authorization"), user, sizeof user);
    json_object_set_new (record, "auth_user", json_string (user));
    if (!authorized) {
        answer->www_authenticate = true;
        s_twilio_error (answer, 401, 20003, "Authenticate");
        return;
    }
    if (!s_is_sid (account, "AC")) {
        char message[200];
        snprintf (message, sizeof message,
                  "The requested resource /2010-04-01/Accounts/%.40s/Messages.json was not found",
                  account);
        s_twilio_error (answer, 404, 20404, message);
        return;
    }
    if (strcmp (account, self->account_sid) != 0) {
        answer->www_authenticate = true;
        s_twilio_error (answer, 401, 20003, "Authenticate");
        return;
    }
    //  Twilio reads only form bodies: anything else carries no parameters.
    const char *type = mg_get_header (conn, "Content-Type");
    bool is_form = type && strncasecmp (type, "application/x-www-form-urlencoded", 33) == 0;
    sb_form_t *form = is_form ? sb_form_parse (body, size) : sb_form_new ();
    if (!form) {
        s_twilio_error (answer, 400, 20001, "Invalid form body");
        return;
    }
    json_t *params = json_array ();
    for (size_t i = 0; i < sb_form_size (form); i++)
        json_array_append_new (params, json_pack ("[s,s]", sb_form_key (form, i),
                                                  sb_form_value (form, i)));
    json_object_set_new (record, "params", params);

    const char *to = sb_form_get (form, "To");
    const char *from = sb_form_get (form, "From");
    const char *service = sb_form_get (form, "MessagingServiceSid");
    const char *text = sb_form_get (form, "Body");
    const char *media = sb_form_get (form, "MediaUrl");
    const char *content = sb_form_get (form, "ContentSid");
    const char *callback = sb_form_get (form, "StatusCallback");
    bool to_whatsapp = false, from_whatsapp = false;
    char message[300];
    if (!to || !*to)
        s_twilio_error (answer, 400, 21604, "A 'To' phone number is required.");
    else if (!s_is_e164 (s_channel_address (to, &to_whatsapp))) {
        snprintf (message, sizeof message, "Invalid 'To' Phone Number: %.60s", to);
        s_twilio_error (answer, 400, 21211, message);
    }
    else if ((!from || !*from) && (!service || !*service))
        s_twilio_error (answer, 400, 21603, "A 'From' phone number is required.");
    else if (service && *service && !s_is_sid (service, "MG")) {
        snprintf (message, sizeof message, "The Messaging Service Sid %.40s is invalid.",
                  service);
        s_twilio_error (answer, 400, 21701, message);
    }
    else if (from && *from && !s_is_twilio_sender (s_channel_address (from, &from_whatsapp))) {
        snprintf (message, sizeof message, "Invalid From Number (caller ID): %.60s", from);
        s_twilio_error (answer, 400, 21212, message);
    }
    else if (from && *from && to_whatsapp != from_whatsapp)
        s_twilio_error (answer, 400, 21910,
                        "Invalid From and To pair. From and To should be of the same channel");
    else if ((!text || !*text) && (!media || !*media) && (!content || !*content))
        s_twilio_error (answer, 400, 21602, "Message body is required.");
    else if (text && s_utf8_length (text) > S_TWILIO_MAX_BODY)
        s_twilio_error (answer, 400, 21617,
                        "The concatenated message body exceeds the 1600 character limit.");
    else if (callback && !s_is_url (callback))
        s_twilio_error (answer, 400, 21609, "Invalid StatusCallback url");
    else if (content && *content && !s_is_sid (content, "HX"))
        s_twilio_error (answer, 400, 21656, "The ContentSid is Invalid.");
    else {
        size_t num_media = 0;
        bool bad_media = false;
        for (size_t i = 0; i < sb_form_size (form); i++)
            if (strcmp (sb_form_key (form, i), "MediaUrl") == 0) {
                num_media++;
                if (!s_is_url (sb_form_value (form, i)))
                    bad_media = true;
            }
        if (bad_media || num_media > 10)
            s_twilio_error (answer, 400, 21620, "Invalid media URL(s)");
        else {
            char sid[40];
            s_random_id (num_media ? "MM" : "SM", 16, false, sid, sizeof sid);
            char date[40];
            s_rfc2822 (time (NULL), date, sizeof date);
            char uri[160], media_uri[160], num_media_text[8], segments[8];
            snprintf (uri, sizeof uri, "/2010-04-01/Accounts/%s/Messages/%s.json", account, sid);
            snprintf (media_uri, sizeof media_uri, "/2010-04-01/Accounts/%s/Messages/%s/Media.json",
                      account, sid);
            snprintf (num_media_text, sizeof num_media_text, "%zu", num_media);
            snprintf (segments, sizeof segments, "%d", s_segments (text ? text : ""));
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
                s_answer_json (answer, 201, reply);
                if (*self->callbacks)
                    s_twilio_callbacks (self, sid, form);
            }
            else
                s_twilio_error (answer, 400, 21602, "Message body is not valid UTF-8.");
        }
    }
    sb_form_destroy (&form);
}

//  --------------------------------------------------------------------------
//  Meta: POST /{version}/{phone_number_id}/messages

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

//  The statuses webhook Meta posts for a sent message (meta-status-*.json).
static char *
s_meta_status_body (const char *phone_number_id, const char *wamid, const char *recipient,
                    const char *status, const char *conversation)
{
    char timestamp[24], expiration[24];
    time_t now = time (NULL);
    snprintf (timestamp, sizeof timestamp, "%lld", (long long) now);
    snprintf (expiration, sizeof expiration, "%lld", (long long) now + 86400);
    json_t *root = json_pack (
        "{s:s, s:[{s:s, s:[{s:{s:s, s:{s:s, s:s}, s:[{s:s, s:s, s:s, s:s, s:{s:s, s:s, "
        "s:{s:s}}, s:{s:b, s:s, s:s, s:s}}]}, s:s}]}]}",
        "object", "whatsapp_business_account", "entry", "id", S_WABA_ID, "changes", "value",
        "messaging_product", "whatsapp", "metadata", "display_phone_number", S_DISPLAY_NUMBER,
        "phone_number_id", phone_number_id, "statuses", "id", wamid, "status", status,
        "timestamp", timestamp, "recipient_id", recipient, "conversation", "id", conversation,
        "expiration_timestamp", expiration, "origin", "type", "service", "pricing", "billable",
        0, "pricing_model", "PMP", "type", "free_customer_service", "category", "service",
        "field", "messages");
    char *body = root ? json_dumps (root, JSON_COMPACT) : NULL;
    json_decref (root);
    return body;
}

static void
s_meta_callbacks (s_sandbox_t *self, const char *phone_number_id, const char *wamid,
                  const char *recipient)
{
    char *url = s_concat (self->callbacks, "/meta/whatsapp", "");
    if (!url)
        return;
    char conversation[40];
    s_random_id ("", 16, false, conversation, sizeof conversation);
    static const char *statuses[] = {"sent", "delivered"};
    s_callback_t *first = NULL, *last = NULL;
    for (size_t i = 0; i < 2; i++) {
        char *body = s_meta_status_body (phone_number_id, wamid, recipient, statuses[i],
                                         conversation);
        if (!body)
            break;
        char signature[SB_SIG_META_SIZE];
        bool sign = *self->app_secret
                    && sb_sig_meta_sign (self->app_secret, body, strlen (body), signature) == 0;
        if (!sign && i == 0)
            sb_warn (S_MODULE, "Meta callback unsigned: META_APP_SECRET is unset id=%s", wamid);
        char what[160];
        snprintf (what, sizeof what, "meta %s %.120s", statuses[i], wamid);
        s_callback_t *callback = s_callback_new (url, body, "application/json",
                                                 "X-Hub-Signature-256", sign ? signature : NULL,
                                                 what);
        if (!callback)
            break;
        if (last)
            last->then = callback;
        else
            first = callback;
        last = callback;
    }
    free (url);
    s_callback_queue (self, first);
}

//  A wamid like Meta's: "wamid." + base64 of a protobuf-ish blob.
static void
s_wamid (const char *digits, char *out, size_t size)
{
    unsigned char raw[96];
    size_t n = 0, len = strlen (digits);
    if (len > 20)
        len = 20;
    raw[n++] = 0x1C;
    raw[n++] = 0x18;
    raw[n++] = (unsigned char) len;
    memcpy (raw + n, digits, len);
    n += len;
    raw[n++] = 0x15;
    raw[n++] = 0x02;
    raw[n++] = 0x00;
    raw[n++] = 0x11;
    raw[n++] = 0x18;
    raw[n++] = 0x12;
    char hex[40];
    s_random_id ("", 9, true, hex, sizeof hex);
    memcpy (raw + n, hex, 18);
    n += 18;
    raw[n++] = 0x00;
    unsigned char b64[96];  //  4 * ceil(48 / 3) + 1
    EVP_EncodeBlock (b64, raw, (int) n);
    snprintf (out, size, "wamid.%s", (char *) b64);
}

static void
s_meta_handle (s_sandbox_t *self, struct mg_connection *conn, const char *version,
               const char *phone_number_id, const char *body, size_t size, json_t *record,
               s_answer_t *answer)
{
    const char *auth = mg_get_header (conn, "Authorization");
    bool bearer = auth && strncasecmp (auth, "Bearer ", 7) == 0;
    json_object_set_new (record, "auth_user", json_string (bearer ? "bearer" : ""));
    if (!bearer) {
        s_meta_error (answer, 401, 190,
                      "An active access token must be used to query information about the "
                      "current user.",
                      NULL);
        return;
    }
    const char *token = auth + 7;
    while (*token == ' ')
        token++;
    if (!*self->meta_token || !s_secret_equal (token, strlen (token), self->meta_token)) {
        s_meta_error (answer, 401, 190, "Invalid OAuth access token - Cannot parse access token",
                      NULL);
        return;
    }
    char message[400];
    bool version_ok = version[0] == 'v' && isdigit ((unsigned char) version[1]);
    const char *dot = strchr (version, '.');
    for (const char *p = version + 1; version_ok && *p; p++)
        if (!isdigit ((unsigned char) *p) && p != dot)
            version_ok = false;
    if (!version_ok || !dot || !dot[1]) {
        snprintf (message, sizeof message, "Unknown path components: /%.40s/%.40s/messages",
                  version, phone_number_id);
        s_meta_error (answer, 400, 2500, message, NULL);
        return;
    }
    char digits[32];
    bool id_ok = *phone_number_id && strlen (phone_number_id) < 30;
    for (const char *p = phone_number_id; *p; p++)
        if (!isdigit ((unsigned char) *p))
            id_ok = false;
    if (!id_ok) {
        snprintf (message, sizeof message,
                  "Unsupported post request. Object with ID '%.40s' does not exist, cannot be "
                  "loaded due to missing permissions, or does not support this operation.",
                  phone_number_id);
        s_meta_error (answer, 400, 100, message, NULL);
        return;
    }
    const char *type_header = mg_get_header (conn, "Content-Type");
    if (!type_header || strncasecmp (type_header, "application/json", 16) != 0) {
        s_meta_error (answer, 400, 100, "(#100) Invalid parameter",
                      "Content-Type must be application/json");
        return;
    }
    json_error_t error;
    json_t *root = json_loadb (body, size, JSON_REJECT_DUPLICATES, &error);
    if (root)
        json_object_set (record, "json", root);
    static const char *types[] = {"text",    "audio",       "document", "image",
                                  "location", "video",      "sticker",  "reaction",
                                  "interactive", "template", "contacts", NULL};
    static const char *base_keys[] = {"messaging_product", "recipient_type", "to", "type",
                                      "context",           "text",           NULL};
    static const char *text_keys[] = {"body", "preview_url", NULL};
    static const char *context_keys[] = {"message_id", NULL};
    const char *bad = NULL;
    const char *product = json_string_value (json_object_get (root, "messaging_product"));
    const char *recipient_type = json_string_value (json_object_get (root, "recipient_type"));
    const char *to = json_string_value (json_object_get (root, "to"));
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
    else if (!to)
        snprintf (details, sizeof details, "The parameter to is required.");
    else if (!s_is_wa_number (to, digits, sizeof digits))
        snprintf (details, sizeof details, "Param to must be a phone number - got \"%.40s\".",
                  to);
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
        else if (s_utf8_length (json_string_value (text_body)) > S_META_MAX_TEXT)
            snprintf (details, sizeof details,
                      "Param text['body'] must be at most 4096 characters long.");
        else if (preview && !json_is_boolean (preview))
            snprintf (details, sizeof details, "Param text['preview_url'] must be a boolean.");
    }
    else if (!json_is_object (json_object_get (root, type)))
        snprintf (details, sizeof details, "The parameter %s is required.", type);

    if (*details) {
        snprintf (message, sizeof message, "(#100) %s", details);
        s_meta_error (answer, 400, 100, message, details);
    }
    else {
        char wamid[sizeof answer->id];
        s_wamid (digits, wamid, sizeof wamid);
        json_t *reply = json_pack ("{s:s, s:[{s:s, s:s}], s:[{s:s}]}", "messaging_product",
                                   "whatsapp", "contacts", "input", to, "wa_id", digits,
                                   "messages", "id", wamid);
        snprintf (answer->id, sizeof answer->id, "%s", wamid);
        s_answer_json (answer, 200, reply);
        if (*self->callbacks)
            s_meta_callbacks (self, phone_number_id, wamid, digits);
    }
    json_decref (root);
}

//  --------------------------------------------------------------------------
//  The request log and the control endpoints (/_sandbox/...)

//  Append a record (takes ownership), giving it the next seq.
static void
s_log_append (s_sandbox_t *self, json_t *record)
{
    pthread_mutex_lock (&self->lock);
    json_object_set_new (record, "seq", json_integer ((json_int_t) self->next_seq++));
    json_array_append_new (self->log, record);
    if (json_array_size (self->log) > S_LOG_MAX) {
        //  Drop the oldest tenth at once: removing one at a time from the
        //  front would move the whole array on every request.
        json_t *kept = json_array ();
        size_t size = json_array_size (self->log);
        for (size_t i = S_LOG_MAX / 10; kept && i < size; i++)
            json_array_append (kept, json_array_get (self->log, i));
        if (kept) {
            json_decref (self->log);
            self->log = kept;
        }
    }
    pthread_mutex_unlock (&self->lock);
}

static json_t *
s_plan_json (const s_plan_t *plan)
{
    return json_pack ("{s:s, s:I, s:s, s:f, s:s, s:I, s:I}", "mode", s_fail_names[plan->mode],
                      "count", (json_int_t) plan->count, "rate_mode",
                      s_fail_names[plan->rate_mode], "rate", plan->rate, "providers",
                      plan->providers == (S_TWILIO | S_META) ? "all"
                      : plan->providers == S_TWILIO          ? "twilio"
                                                             : "meta",
                      "retry_after", (json_int_t) plan->retry_after_s, "delay_ms",
                      (json_int_t) plan->delay_ms);
}

static void
s_plan_reset (s_plan_t *plan)
{
    *plan = (s_plan_t){.providers = S_TWILIO | S_META,
                       .retry_after_s = 1,
                       .delay_ms = S_DEFAULT_DELAY_MS};
}

static int
s_parse_long (const char *text, long min, long max, long *out)
{
    if (!text || !*text || strlen (text) > 18)
        return -1;
    long value = 0;
    for (const char *p = text; *p; p++) {
        if (!isdigit ((unsigned char) *p))
            return -1;
        value = value * 10 + (*p - '0');
    }
    if (value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

//  POST /_sandbox/fail?count=N&mode=M[&retry_after=S][&delay_ms=D][&rate=R][&provider=P]
static void
s_fail_set (s_sandbox_t *self, const char *query, s_answer_t *answer)
{
    sb_form_t *form = sb_form_parse (query ? query : "", query ? strlen (query) : 0);
    s_plan_t plan;
    s_plan_reset (&plan);
    const char *problem = NULL;
    const char *mode_text = form ? sb_form_get (form, "mode") : NULL;
    const char *count = form ? sb_form_get (form, "count") : NULL;
    const char *rate = form ? sb_form_get (form, "rate") : NULL;
    const char *retry_after = form ? sb_form_get (form, "retry_after") : NULL;
    const char *delay = form ? sb_form_get (form, "delay_ms") : NULL;
    const char *provider = form ? sb_form_get (form, "provider") : NULL;
    s_fail_mode_t mode = S_FAIL_NONE;
    for (int m = S_FAIL_500; mode_text && m <= S_FAIL_MIXED; m++)
        if (strcmp (mode_text, s_fail_names[m]) == 0)
            mode = (s_fail_mode_t) m;
    if (!form)
        problem = "malformed query";
    else if (mode == S_FAIL_NONE)
        problem = "mode must be 500, 429, slow, meta131047 or mixed";
    else if (!count && !rate)
        problem = "give count=N or rate=R";
    else if (count && s_parse_long (count, 0, 1000000, &plan.count))
        problem = "count must be a whole number up to 1000000";
    else if (count && mode == S_FAIL_MIXED)
        problem = "mode=mixed goes with rate=R only";
    else if (retry_after && s_parse_long (retry_after, 0, 86400, &plan.retry_after_s))
        problem = "retry_after must be whole seconds up to 86400";
    else if (delay && s_parse_long (delay, 0, S_MAX_DELAY_MS, &plan.delay_ms))
        problem = "delay_ms must be whole milliseconds up to 600000";
    else if (provider && strcmp (provider, "twilio") && strcmp (provider, "meta")
             && strcmp (provider, "all"))
        problem = "provider must be twilio, meta or all";
    if (!problem && rate) {
        char *end = NULL;
        errno = 0;
        plan.rate = strtod (rate, &end);
        if (errno || end == rate || *end || !(plan.rate >= 0.0 && plan.rate <= 1.0))
            problem = "rate must be a number from 0 to 1";
    }
    if (problem) {
        s_answer_json (answer, 400, json_pack ("{s:s}", "error", problem));
        sb_form_destroy (&form);
        return;
    }
    if (count)
        plan.mode = mode;
    if (rate)
        plan.rate_mode = mode;
    if (mode == S_FAIL_META131047)
        plan.providers = S_META;
    else if (provider && strcmp (provider, "twilio") == 0)
        plan.providers = S_TWILIO;
    else if (provider && strcmp (provider, "meta") == 0)
        plan.providers = S_META;
    pthread_mutex_lock (&self->lock);
    self->plan = plan;
    pthread_mutex_unlock (&self->lock);
    sb_info (S_MODULE, "failures planned mode=%s count=%ld rate=%g retry_after=%ld delay_ms=%ld",
             s_fail_names[mode], plan.count, plan.rate, plan.retry_after_s, plan.delay_ms);
    s_answer_json (answer, 200, s_plan_json (&plan));
    sb_form_destroy (&form);
}

static void
s_admin (s_sandbox_t *self, const char *method, const char *path, const char *query,
         s_answer_t *answer)
{
    if (strcmp (path, "/_sandbox/requests") == 0 && strcmp (method, "GET") == 0) {
        long since = -1;
        sb_form_t *form = query ? sb_form_parse (query, strlen (query)) : NULL;
        const char *since_text = form ? sb_form_get (form, "since") : NULL;
        if (since_text && s_parse_long (since_text, 0, LONG_MAX / 10, &since)) {
            answer->status = 400;
            answer->body = strdup ("{\"error\":\"since must be a whole number\"}");
            sb_form_destroy (&form);
            return;
        }
        sb_form_destroy (&form);
        pthread_mutex_lock (&self->lock);
        json_t *selected = self->log;
        json_incref (selected);
        if (since >= 0) {
            json_decref (selected);
            selected = json_array ();
            size_t i;
            json_t *record;
            json_array_foreach (self->log, i, record)
                if (json_integer_value (json_object_get (record, "seq")) > since)
                    json_array_append (selected, record);
        }
        answer->status = 200;
        answer->body = json_dumps (selected, JSON_COMPACT);
        json_decref (selected);  //  under the lock: the records are shared
        pthread_mutex_unlock (&self->lock);
        if (!answer->body) {
            answer->status = 500;
            answer->body = strdup ("{\"error\":\"out of memory\"}");
        }
    }
    else if (strcmp (path, "/_sandbox/requests") == 0 && strcmp (method, "DELETE") == 0) {
        pthread_mutex_lock (&self->lock);
        size_t count = json_array_size (self->log);
        json_array_clear (self->log);
        pthread_mutex_unlock (&self->lock);
        s_answer_json (answer, 200, json_pack ("{s:I}", "cleared", (json_int_t) count));
    }
    else if (strcmp (path, "/_sandbox/fail") == 0 && strcmp (method, "POST") == 0)
        s_fail_set (self, query, answer);
    else if (strcmp (path, "/_sandbox/fail") == 0
             && (strcmp (method, "GET") == 0 || strcmp (method, "DELETE") == 0)) {
        pthread_mutex_lock (&self->lock);
        if (strcmp (method, "DELETE") == 0)
            s_plan_reset (&self->plan);
        s_plan_t plan = self->plan;
        pthread_mutex_unlock (&self->lock);
        s_answer_json (answer, 200, s_plan_json (&plan));
    }
    else if (strcmp (path, "/_sandbox/requests") == 0 || strcmp (path, "/_sandbox/fail") == 0) {
        answer->status = 405;
        answer->body = strdup ("{\"error\":\"method not allowed\"}");
    }
    else {
        answer->status = 404;
        answer->body = strdup ("{\"error\":\"not found\"}");
    }
}

//  --------------------------------------------------------------------------
//  The civetweb handler

//  Read the body, at most S_BODY_MAX bytes. NULL when larger or broken.
static char *
s_read_body (struct mg_connection *conn, size_t *size)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (info->content_length > S_BODY_MAX)
        return NULL;
    size_t cap = info->content_length >= 0 ? (size_t) info->content_length : 4096;
    char *body = malloc (cap + 1);
    size_t used = 0;
    while (body) {
        if (used == cap) {
            if (info->content_length >= 0 || cap >= S_BODY_MAX)
                break;
            cap = cap * 2 > S_BODY_MAX ? S_BODY_MAX : cap * 2;
            char *grown = realloc (body, cap + 1);
            if (!grown) {
                free (body);
                return NULL;
            }
            body = grown;
        }
        int n = mg_read (conn, body + used, cap - used);
        if (n < 0) {
            free (body);
            return NULL;
        }
        if (n == 0)
            break;
        used += (size_t) n;
    }
    if (body && info->content_length < 0 && used == S_BODY_MAX) {
        char probe;
        if (mg_read (conn, &probe, 1) > 0) {
            free (body);
            return NULL;
        }
    }
    if (body)
        body[used] = 0;
    *size = used;
    return body;
}

//  Read and drop the rest of a body too large to keep, so the client gets
//  its 413 rather than a reset. False when it goes on past S_DRAIN_MAX.
static bool
s_drain (struct mg_connection *conn)
{
    char *buf = malloc (16384);
    size_t total = 0;
    int n = 0;
    while (buf && total <= S_DRAIN_MAX && (n = mg_read (conn, buf, 16384)) > 0)
        total += (size_t) n;
    free (buf);
    return buf && n == 0;
}

//  A record of the request, without the answer yet.
static json_t *
s_record_new (const struct mg_request_info *info, const char *path, const char *body,
              size_t size)
{
    char when[96];
    s_iso8601 (s_now_ms (), when, sizeof when);
    json_t *headers = json_object ();
    for (int i = 0; i < info->num_headers; i++) {
        const char *name = info->http_headers[i].name;
        if (strcasecmp (name, "Authorization") == 0 || strcasecmp (name, "Cookie") == 0)
            continue;
        json_t *value = json_string (info->http_headers[i].value);
        if (value)
            json_object_set_new (headers, name, value);
    }
    size_t kept = size > S_LOG_BODY_MAX ? S_LOG_BODY_MAX : size;
    json_t *text = body ? json_stringn (body, kept) : json_string ("");
    json_t *record = json_pack ("{s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "time", when, "method",
                                info->request_method, "path", path, "query",
                                info->query_string ? info->query_string : "", "headers",
                                headers ? headers : json_object (), "body",
                                text ? text : json_null (), "body_size", (json_int_t) size);
    return record;
}

//  Split "/a/b/c" into exactly three non-empty segments (NUL-separated copy).
static bool
s_three_segments (const char *path, char *copy, size_t size, char **parts)
{
    if (strlen (path) >= size || path[0] != '/')
        return false;
    snprintf (copy, size, "%s", path + 1);
    char *p = copy;
    for (int i = 0; i < 3; i++) {
        parts[i] = p;
        char *slash = strchr (p, '/');
        if (i < 2) {
            if (!slash)
                return false;
            *slash = 0;
            p = slash + 1;
        }
        else if (slash)
            return false;
        if (!*parts[i])
            return false;
    }
    return true;
}

static int
s_handler (struct mg_connection *conn, void *cbdata)
{
    s_sandbox_t *self = cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *method = info->request_method;
    const char *path = info->local_uri ? info->local_uri : info->request_uri;
    s_answer_t answer = {.status = 500, .retry_after_s = -1};

    if (strcmp (path, "/healthz") == 0) {
        bool get = strcmp (method, "GET") == 0;
        s_send_text (conn, get ? 200 : 405, get ? "ok\n" : "method not allowed\n");
        return get ? 200 : 405;
    }
    if (strncmp (path, "/_sandbox/", 10) == 0) {
        s_admin (self, method, path, info->query_string, &answer);
        s_send (conn, &answer);
        free (answer.body);
        return answer.status;
    }

    //  Which API, if any.
    static const char twilio_prefix[] = "/2010-04-01/Accounts/";
    static const char twilio_suffix[] = "/Messages.json";
    unsigned provider = 0;
    char account[72] = "";
    char copy[256];
    char *parts[3] = {NULL, NULL, NULL};
    if (strncmp (path, twilio_prefix, sizeof twilio_prefix - 1) == 0) {
        const char *start = path + sizeof twilio_prefix - 1;
        const char *slash = strchr (start, '/');
        if (slash && slash > start && (size_t) (slash - start) < sizeof account
            && strcmp (slash, twilio_suffix) == 0) {
            memcpy (account, start, (size_t) (slash - start));
            account[slash - start] = 0;
            provider = S_TWILIO;
        }
    }
    else if (s_three_segments (path, copy, sizeof copy, parts)
             && strcmp (parts[2], "messages") == 0)
        provider = S_META;

    size_t size = 0;
    char *body = s_read_body (conn, &size);
    json_t *record = s_record_new (info, path, body, size);
    json_object_set_new (record, "provider",
                         json_string (provider == S_TWILIO ? "twilio"
                                      : provider == S_META ? "meta"
                                                           : ""));
    if (!body) {
        s_answer_json (&answer, 413, json_pack ("{s:s}", "error", "request body too large"));
        if (!s_drain (conn)) {
            answer.close = true;
            mg_disable_connection_keep_alive (conn);
        }
    }
    else if (provider == 0) {
        char message[300];
        if (strncmp (path, "/2010-04-01/", 12) == 0) {
            snprintf (message, sizeof message, "The requested resource %.200s was not found",
                      path);
            s_twilio_error (&answer, 404, 20404, message);
        }
        else {
            snprintf (message, sizeof message, "Unknown path components: %.200s", path);
            s_meta_error (&answer, 404, 2500, message, NULL);
        }
    }
    else if (strcmp (method, "POST") != 0) {
        s_answer_json (&answer, 405, json_pack ("{s:s}", "error", "method not allowed"));
    }
    else {
        pthread_mutex_lock (&self->lock);
        int concurrent = ++self->in_flight;
        pthread_mutex_unlock (&self->lock);
        json_object_set_new (record, "concurrent", json_integer (concurrent));
        long retry_after_s, delay_ms;
        s_fail_mode_t mode = s_take_failure (self, provider, &retry_after_s, &delay_ms);
        if (mode == S_FAIL_SLOW) {
            answer.injected = s_fail_names[mode];
            s_sleep_ms (self, delay_ms);
        }
        if (mode != S_FAIL_NONE && mode != S_FAIL_SLOW)
            s_inject (provider, mode, retry_after_s, &answer);
        else if (provider == S_TWILIO)
            s_twilio_handle (self, conn, account, body, size, record, &answer);
        else
            s_meta_handle (self, conn, parts[0], parts[1], body, size, record, &answer);
        pthread_mutex_lock (&self->lock);
        self->in_flight--;
        pthread_mutex_unlock (&self->lock);
    }
    json_object_set_new (record, "status", json_integer (answer.status));
    json_object_set_new (record, "id", json_string (answer.id));
    json_object_set_new (record, "error_code", json_string (answer.error_code));
    json_object_set_new (record, "injected",
                         answer.injected ? json_string (answer.injected) : json_null ());
    json_object_set_new (record, "answer",
                         answer.body ? json_loads (answer.body, 0, NULL) : json_null ());
    if (record)
        s_log_append (self, record);
    sb_info (S_MODULE, "%s %s status=%d id=%s code=%s%s%s", method, path, answer.status,
             *answer.id ? answer.id : "-", *answer.error_code ? answer.error_code : "-",
             answer.injected ? " injected=" : "", answer.injected ? answer.injected : "");
    //  Recorded before answered: whoever got the answer finds the record.
    s_send (conn, &answer);
    free (answer.body);
    free (body);
    return answer.status;
}

static int
s_civetweb_log (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    sb_warn (S_MODULE, "civetweb: %s", message);
    return 1;
}

//  --------------------------------------------------------------------------
//  The command

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: switchboard sandbox [--listen [HOST:]PORT] [--callbacks URL]\n"
             "                           [--callback-delay-ms MS] [--threads N]\n"
             "\n"
             "Fake Twilio Messages API and Meta WhatsApp Cloud API on loopback, for local runs\n"
             "and tests. Checks auth and request shape as the real APIs do and answers with\n"
             "realistic bodies.\n"
             "\n"
             "  --listen [HOST:]PORT     where to listen (default SB_SANDBOX_LISTEN, 127.0.0.1:8090);\n"
             "                           port 0 picks a free port\n"
             "  --callbacks URL          ingress base URL, SB_PATH_PREFIX included (default\n"
             "                           SB_SANDBOX_CALLBACKS): after each accepted send, post the\n"
             "                           signed status callbacks \"sent\" then \"delivered\" there\n"
             "  --callback-delay-ms MS   pause before each callback (default 100)\n"
             "  --threads N              HTTP worker threads (default 64)\n"
             "  -h, --help               this help\n"
             "\n"
             "Endpoints:\n"
             "  POST /2010-04-01/Accounts/{AccountSid}/Messages.json   Twilio (Basic auth)\n"
             "  POST /{version}/{phone_number_id}/messages             Meta (Bearer token)\n"
             "  GET  /_sandbox/requests[?since=SEQ]   every request recorded, as JSON\n"
             "  DELETE /_sandbox/requests             clear the record\n"
             "  POST /_sandbox/fail?count=N&mode=500|429|slow|meta131047[&retry_after=S]\n"
             "       [&delay_ms=MS][&provider=twilio|meta]   fail the next N requests\n"
             "  POST /_sandbox/fail?rate=R&mode=500|429|mixed   fail a random share R (0..1)\n"
             "  GET|DELETE /_sandbox/fail             show or clear the plan\n"
             "  GET  /healthz\n"
             "\n"
             "On start it prints \"switchboard sandbox listening on http://HOST:PORT\" on stdout.\n"
             "SIGINT or SIGTERM exits 0.\n"
             "\n");
    sb_config_print_help (SB_SVC_SANDBOX, out);
}

//  Check "[host:]port" with port 0-65535; fills civetweb's listening_ports.
static int
s_listen_spec (const char *text, char *out, size_t size)
{
    const char *colon = strrchr (text, ':');
    const char *port = colon ? colon + 1 : text;
    long value;
    if (s_parse_long (port, 0, 65535, &value) || (colon && colon == text))
        return -1;
    if (colon)
        snprintf (out, size, "%s", text);
    else
        snprintf (out, size, "127.0.0.1:%ld", value);
    return 0;
}

int
sb_cmd_sandbox (int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"callbacks", required_argument, NULL, 'c'},
        {"callback-delay-ms", required_argument, NULL, 'd'},
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = NULL, *callbacks = NULL;
    long delay_ms = 100, threads = 64;
    int c;
    optind = 0;  //  full re-initialisation of GNU getopt
    while ((c = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
            case 'l':
                listen = optarg;
                break;
            case 'c':
                callbacks = optarg;
                break;
            case 'd':
                if (s_parse_long (optarg, 0, 600000, &delay_ms))
                    return sb_cli_usage_error (S_CMD, "--callback-delay-ms %s: expected 0 to 600000",
                                               optarg);
                break;
            case 't':
                if (s_parse_long (optarg, 2, 1024, &threads))
                    return sb_cli_usage_error (S_CMD, "--threads %s: expected 2 to 1024", optarg);
                break;
            case 'h':
                s_usage (stdout);
                return SB_CLI_OK;
            default:
                return sb_cli_bad_flag (S_CMD, c, argv);
        }
    }
    if (optind < argc)
        return sb_cli_usage_error (S_CMD, "unexpected argument '%s'", argv[optind]);

    char err[512];
    sb_config_t *config = sb_config_load (SB_SVC_SANDBOX, err, sizeof err);
    if (!config) {
        fprintf (stderr, "switchboard %s: %s\n", S_CMD, err);
        return SB_CLI_USAGE;
    }
    sb_log_init ("sandbox", (sb_log_level_t) sb_config_int (config, "SB_LOG_LEVEL"));

    int rc = SB_CLI_FAILED;
    char ports[300];
    if (!listen)
        listen = sb_config_str (config, "SB_SANDBOX_LISTEN");
    if (strlen (listen) > 200 || s_listen_spec (listen, ports, sizeof ports)) {
        rc = sb_cli_usage_error (S_CMD, "--listen %s: expected [host:]port", listen);
        sb_config_destroy (&config);
        return rc;
    }
    char *callbacks_url = strdup (callbacks ? callbacks : sb_config_str (config, "SB_SANDBOX_CALLBACKS"));
    if (!callbacks_url) {
        sb_config_destroy (&config);
        return SB_CLI_FAILED;
    }
    size_t len = strlen (callbacks_url);
    while (len > 0 && callbacks_url[len - 1] == '/')
        callbacks_url[--len] = 0;
    if (*callbacks_url && (!s_is_url (callbacks_url) || strchr (callbacks_url, '?'))) {
        rc = sb_cli_usage_error (S_CMD, "--callbacks %s: expected an http:// or https:// URL",
                                 callbacks_url);
        free (callbacks_url);
        sb_config_destroy (&config);
        return rc;
    }
    s_sandbox_t *self = calloc (1, sizeof *self);
    if (!self) {
        free (callbacks_url);
        sb_config_destroy (&config);
        return SB_CLI_FAILED;
    }
    self->account_sid = sb_config_str (config, "TWILIO_ACCOUNT_SID");
    self->auth_token = sb_config_str (config, "TWILIO_AUTH_TOKEN");
    self->api_key = sb_config_str (config, "TWILIO_API_KEY");
    self->api_secret = sb_config_str (config, "TWILIO_API_SECRET");
    self->meta_token = sb_config_str (config, "META_ACCESS_TOKEN");
    self->app_secret = sb_config_str (config, "META_APP_SECRET");
    self->public_url = sb_config_str (config, "SB_PUBLIC_URL");
    self->prefix = sb_config_str (config, "SB_PATH_PREFIX");
    self->callbacks = callbacks_url;
    self->callback_delay_ms = delay_ms;
    atomic_init (&self->stopping, 0);
    s_plan_reset (&self->plan);
    pthread_mutex_init (&self->lock, NULL);
    self->log = json_array ();
    self->next_seq = 1;  //  so ?since=0 means "all"

    struct mg_context *ctx = NULL;
    if (*self->account_sid && !s_is_sid (self->account_sid, "AC")) {
        rc = sb_cli_usage_error (S_CMD, "TWILIO_ACCOUNT_SID: expected AC and 32 hex digits");
        goto done;
    }
    if (!*self->account_sid || (!*self->auth_token && !*self->api_secret))
        sb_warn (S_MODULE, "Twilio API answers 401 to everything: set TWILIO_ACCOUNT_SID and "
                           "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET)");
    if (!*self->meta_token)
        sb_warn (S_MODULE, "Meta API answers 401 to everything: set META_ACCESS_TOKEN");

    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK || !self->log
        || !(self->multi = curl_multi_init ())) {
        sb_error (S_MODULE, "cannot initialise libcurl");
        goto done;
    }
    if (pthread_create (&self->thread, NULL, s_callback_thread, self) != 0) {
        sb_error (S_MODULE, "cannot start the callback thread");
        goto done;
    }
    self->thread_started = true;

    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    mg_init_library (0);
    char threads_text[24];
    snprintf (threads_text, sizeof threads_text, "%ld", threads);
    const char *options[] = {"listening_ports",       ports,
                             "num_threads",           threads_text,
                             "request_timeout_ms",    "30000",
                             "enable_keep_alive",     "yes",
                             "keep_alive_timeout_ms", "15000",
                             //  A head and a body written apart would
                             //  otherwise wait for the client's delayed
                             //  ACK (Nagle): ~40 ms per kept-alive request.
                             "tcp_nodelay",           "1",
                             NULL};
    struct mg_callbacks mg_callbacks;
    memset (&mg_callbacks, 0, sizeof mg_callbacks);
    mg_callbacks.log_message = s_civetweb_log;
    ctx = mg_start (&mg_callbacks, self, options);
    if (!ctx) {
        sb_error (S_MODULE, "cannot listen listen=%s", ports);
        mg_exit_library ();
        goto done;
    }
    mg_set_request_handler (ctx, "/", s_handler, self);
    struct mg_server_port bound[4];
    memset (bound, 0, sizeof bound);
    int n_bound = mg_get_server_ports (ctx, 4, bound);
    char host[sizeof ports];
    snprintf (host, sizeof host, "%s", ports);
    char *colon = strrchr (host, ':');
    if (colon)
        *colon = 0;
    int port = n_bound > 0 ? bound[0].port : 0;
    printf ("switchboard sandbox listening on http://%s:%d\n", host, port);
    fflush (stdout);
    sb_info (S_MODULE, "listening addr=%s:%d callbacks=%s twilio=%s meta=%s", host, port,
             *self->callbacks ? self->callbacks : "off", *self->account_sid ? "on" : "off",
             *self->meta_token ? "on" : "off");

    while (!s_interrupted) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep (&ts, NULL);
    }
    sb_info (S_MODULE, "stopping");
    rc = SB_CLI_OK;
done:
    atomic_store (&self->stopping, 1);
    if (ctx) {
        mg_stop (ctx);
        mg_exit_library ();
    }
    if (self->thread_started) {
        curl_multi_wakeup (self->multi);
        pthread_join (self->thread, NULL);
    }
    while (self->queue) {
        s_callback_t *callback = self->queue;
        self->queue = callback->next;
        s_callback_destroy (&callback);
    }
    if (self->multi) {
        curl_multi_cleanup (self->multi);
        curl_global_cleanup ();
    }
    json_decref (self->log);
    pthread_mutex_destroy (&self->lock);
    free (callbacks_url);
    free (self);
    sb_config_destroy (&config);
    return rc;
}
