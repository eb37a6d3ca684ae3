/*  switchboard-sandbox: the Twilio Messages API and the Meta WhatsApp Cloud
    API messages endpoint, faked on loopback, so the whole loop runs with no
    account and no internet.

    This file is the server's middle: the civetweb handler that routes a
    request (/healthz, /_sandbox/..., Twilio's path, Meta's path), reads
    its body, records it, applies the failure plan and writes the answer;
    and the answers and checks the two APIs share. The APIs are
    sb_sandbox_twilio.c and sb_sandbox_meta.c, the callbacks
    sb_sandbox_callbacks.c, the log and the failure plan
    sb_sandbox_admin.c, flags and start-up main.c (sb_sandbox.h says how
    they fit).

    Limits: a test tool, not a provider. Request bodies over 1 MiB are
    refused (413; up to 64 MiB more is read and dropped so the client sees
    it); each body is cut at 64 KiB in the log. No TLS: plain HTTP on
    loopback.
*/
#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sb_fakeprov.h"
#include "sb_log.h"
#include "sb_sandbox.h"
#include "sb_text.h"
#include "sb_time.h"

#define S_BODY_MAX (1024 * 1024)        //  largest request body accepted
#define S_LOG_BODY_MAX (64 * 1024)      //  bytes of a body kept in the log
#define S_DRAIN_MAX (64 * 1024 * 1024)  //  bytes of a refused body read and dropped

//  --------------------------------------------------------------------------
//  Checks and small helpers

//  ISO 8601 UTC with milliseconds, for the request log.
static void
s_iso8601 (int64_t ms, char *out, size_t size)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    snprintf (out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
              tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}

bool
sb_sandbox_secret_equal (const char *given, size_t given_size, const char *expected)
{
    size_t size = strlen (expected);
    return *expected && given_size == size && CRYPTO_memcmp (given, expected, size) == 0;
}

char *
sb_sandbox_reach_url (const sb_sandbox_t *self, const char *url)
{
    char *front = *self->public_url && *self->callbacks
                      ? sb_text_join (self->public_url, self->prefix, NULL)
                      : NULL;
    char *reach = front && strncmp (url, front, strlen (front)) == 0
                      ? sb_text_join (self->callbacks, url + strlen (front), NULL)
                      : strdup (url);
    free (front);
    return reach;
}

size_t
sb_sandbox_utf8_length (const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

//  Sleep ms in short steps; returns early when the sandbox stops.
static void
s_sleep_ms (sb_sandbox_t *self, long ms)
{
    int64_t until = sb_time_mono_ms () + ms;
    while (!atomic_load (&self->stopping)) {
        int64_t left = until - sb_time_mono_ms ();
        if (left <= 0)
            break;
        if (left > 20)
            left = 20;
        struct timespec ts = {0, (long) left * 1000000L};
        nanosleep (&ts, NULL);
    }
}

int
sb_sandbox_parse_long (const char *text, long min, long max, long *out)
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

//  --------------------------------------------------------------------------
//  Answers

void
sb_sandbox_answer_json (sb_sandbox_answer_t *answer, int status, json_t *body)
{
    answer->status = status;
    free (answer->body);
    answer->body = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
}

void
sb_sandbox_twilio_error (sb_sandbox_answer_t *answer, int status, int code, const char *message)
{
    char more_info[80];
    snprintf (more_info, sizeof more_info, "https://www.twilio.com/docs/errors/%d", code);
    snprintf (answer->error_code, sizeof answer->error_code, "%d", code);
    sb_sandbox_answer_json (answer, status,
                            json_pack ("{s:i, s:s, s:s, s:i}", "code", code, "message", message,
                                       "more_info", more_info, "status", status));
}

void
sb_sandbox_meta_error (sb_sandbox_answer_t *answer, int status, int code, const char *message,
                       const char *details)
{
    char trace[32];
    sb_fakeprov_hex_id (trace, sizeof trace, "A", 22, true);
    snprintf (answer->error_code, sizeof answer->error_code, "%d", code);
    json_t *error =
        json_pack ("{s:s, s:s, s:i}", "message", message, "type", "OAuthException", "code", code);
    if (error && details)
        json_object_set_new (
            error, "error_data",
            json_pack ("{s:s, s:s}", "messaging_product", "whatsapp", "details", details));
    if (error && code == 190)
        json_object_set_new (error, "error_subcode", json_integer (463));
    if (error)
        json_object_set_new (error, "fbtrace_id", json_string (trace));
    sb_sandbox_answer_json (answer, status, error ? json_pack ("{s:o}", "error", error) : NULL);
}

//  Write the answer. Status line and headers are written here rather than
//  with mg_response_header_*: civetweb formats its Date header with
//  gmtime(), which is not thread-safe (ThreadSanitizer reports it).
static void
s_send (struct mg_connection *conn, const sb_sandbox_answer_t *answer)
{
    const char *body = answer->body ? answer->body : "";
    size_t size = strlen (body);
    char date[SB_HTTP_DATE_SIZE];
    sb_time_http_date (date);
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
               "Date: %s\r\n"
               "%s\r\n",
               answer->status, reason ? reason : "Unknown",
               *body == '{' || *body == '[' ? "application/json; charset=utf-8"
                                            : "text/plain; charset=utf-8",
               size, date, extra);
    if (size)
        mg_write (conn, body, size);
}

static void
s_send_text (struct mg_connection *conn, int status, const char *body)
{
    sb_sandbox_answer_t answer = {.status = status, .retry_after_s = -1, .body = (char *) body};
    s_send (conn, &answer);
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
s_record_new (const struct mg_request_info *info, const char *path, const char *body, size_t size)
{
    char when[96];
    s_iso8601 (sb_time_wall_ms (), when, sizeof when);
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

int
sb_sandbox_handler (struct mg_connection *conn, void *cbdata)
{
    sb_sandbox_t *self = cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *method = info->request_method;
    const char *path = info->local_uri ? info->local_uri : info->request_uri;
    sb_sandbox_answer_t answer = {.status = 500, .retry_after_s = -1};

    if (strcmp (path, "/healthz") == 0) {
        bool get = strcmp (method, "GET") == 0;
        s_send_text (conn, get ? 200 : 405, get ? "ok\n" : "method not allowed\n");
        return get ? 200 : 405;
    }
    bool manage = sb_sandbox_manage_match (path);
    if (!manage && strncmp (path, "/_sandbox/", 10) == 0) {
        sb_sandbox_admin (self, method, path, info->query_string, &answer);
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
            provider = SB_SANDBOX_TWILIO;
        }
    }
    else if (s_three_segments (path, copy, sizeof copy, parts)
             && strcmp (parts[2], "messages") == 0)
        provider = SB_SANDBOX_META;

    size_t size = 0;
    char *body = s_read_body (conn, &size);
    json_t *record = s_record_new (info, path, body, size);
    json_object_set_new (record, "provider",
                         json_string (provider == SB_SANDBOX_TWILIO ? "twilio"
                                      : provider == SB_SANDBOX_META ? "meta"
                                                                    : ""));
    if (!body) {
        sb_sandbox_answer_json (&answer, 413,
                                json_pack ("{s:s}", "error", "request body too large"));
        if (!s_drain (conn)) {
            answer.close = true;
            mg_disable_connection_keep_alive (conn);
        }
    }
    else if (manage)
        sb_sandbox_manage_handle (self, conn, method, path, body, size, record, &answer);
    else if (provider == 0) {
        char message[300];
        if (strncmp (path, "/2010-04-01/", 12) == 0) {
            snprintf (message, sizeof message, "The requested resource %.200s was not found", path);
            sb_sandbox_twilio_error (&answer, 404, 20404, message);
        }
        else {
            snprintf (message, sizeof message, "Unknown path components: %.200s", path);
            sb_sandbox_meta_error (&answer, 404, 2500, message, NULL);
        }
    }
    else if (strcmp (method, "POST") != 0) {
        sb_sandbox_answer_json (&answer, 405, json_pack ("{s:s}", "error", "method not allowed"));
    }
    else {
        pthread_mutex_lock (&self->lock);
        int concurrent = ++self->in_flight;
        pthread_mutex_unlock (&self->lock);
        json_object_set_new (record, "concurrent", json_integer (concurrent));
        //  --latency-ms: the provider's own time to answer. The worker
        //  sleeps, which costs no concurrency: civetweb gives each open
        //  connection a worker of its own, and an HTTP/1.1 client sends
        //  its next request on a connection only once answered (see
        //  --threads in main.c).
        if (self->latency_ms > 0)
            s_sleep_ms (self, self->latency_ms);
        long retry_after_s, delay_ms;
        sb_sandbox_fail_mode_t mode =
            sb_sandbox_take_failure (self, provider, &retry_after_s, &delay_ms);
        if (mode == SB_SANDBOX_FAIL_SLOW) {
            answer.injected = sb_sandbox_fail_name (mode);
            s_sleep_ms (self, delay_ms);
        }
        if (mode != SB_SANDBOX_FAIL_NONE && mode != SB_SANDBOX_FAIL_SLOW)
            sb_sandbox_inject (provider, mode, retry_after_s, &answer);
        else if (provider == SB_SANDBOX_TWILIO)
            sb_sandbox_twilio_handle (self, conn, account, body, size, record, &answer);
        else
            sb_sandbox_meta_handle (self, conn, parts[0], parts[1], body, size, record, &answer);
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
        sb_sandbox_log_append (self, record);
    sb_info (SB_SANDBOX_MODULE, "%s %s status=%d id=%s code=%s%s%s", method, path, answer.status,
             *answer.id ? answer.id : "-", *answer.error_code ? answer.error_code : "-",
             answer.injected ? " injected=" : "", answer.injected ? answer.injected : "");
    //  Recorded before answered: whoever got the answer finds the record.
    s_send (conn, &answer);
    free (answer.body);
    free (body);
    return answer.status;
}
