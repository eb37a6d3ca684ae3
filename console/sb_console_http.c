/*  sb_console_http: the console's HTTP side (routes: sb_console_http.h).

    DESIGN. civetweb's worker threads serve everything in begin_request.
    Each worker has a PostgreSQL connection of its own (sb_store, made on
    its first API request and closed when the thread ends: init_thread and
    exit_thread), so no lock is held across a round trip; every round trip
    has SB_PG_TIMEOUT_MS as its deadline (sb_store). A stream of
    /api/events holds its worker for as long as the page is open, waiting
    on the hub's ring (sb_console_hub) and writing outside its lock, with a
    comment line every S_KEEPALIVE_MS so a closed page frees the thread;
    at most SB_CONSOLE_HUB_STREAMS streams are open (503 past it) and the
    pool has S_API_THREADS more, so the page's own requests always find a
    thread.

    Security: what the page shows is escaped by the page (textContent
    only); every answer says Content-Security-Policy default-src 'self',
    nosniff and no framing, and Referrer-Policy same-origin (with
    no-referrer, Chromium sends "Origin: null" on the login form's POST,
    which the same-origin check must refuse). A state-changing request (POST) must come from
    the console's own origin (sb_console_same_origin), and with a token
    set, carry it (sb_console_token_ok); the token is never in the page.

    Limits: request bodies are at most S_BODY_MAX bytes (413); pages at
    most 200 rows (sb_store).
*/
#include "sb_console_http.h"

#include <assert.h>
#include <civetweb.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_console_web.h"
#include "sb_console_www.h"
#include "sb_form.h"
#include "sb_log.h"
#include "sb_store.h"
#include "sb_time.h"

#define S_MODULE "http"
#define S_BODY_MAX (32 * 1024)  //  largest request body (a reply is at most 4 KiB of text)
#define S_API_THREADS 8         //  worker threads beyond the streams' bound
#define S_KEEPALIVE_MS 5000     //  a comment line on an idle stream this often
#define S_PAGE 50               //  rows per page
#define S_WINDOW 5000           //  messages one page of the conversation list may read

struct sb_console_http_t {
    struct mg_context *ctx;     //  civetweb server
    const sb_config_t *config;  //  borrowed
    sb_console_hub_t *hub;      //  borrowed
    const char *token;          //  SB_CONSOLE_TOKEN, "" for none (borrowed from config)
    sb_metric_t *m_requests;    //  requests answered
    sb_metric_t *m_denied;      //  401 and 403 answers
    sb_metric_t *m_db_errors;   //  API requests PostgreSQL failed (503)
    sb_metrics_t *metrics;      //  borrowed, for /metrics
};

//  A worker thread's own state.
typedef struct {
    sb_store_t *store;  //  its PostgreSQL connection, made on first use
} s_thread_t;

//  Answer code with body; extra is more header lines ("Name: value\r\n").
static void
s_send (struct mg_connection *conn, int code, const char *type, const char *body, size_t size,
        const char *extra)
{
    //  Our own head: civetweb's Date header uses gmtime(), not thread-safe.
    char date[SB_HTTP_DATE_SIZE];
    sb_time_http_date (date);
    const char *reason = mg_get_response_code_text (conn, code);
    mg_printf (conn,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nDate: %s\r\n"
               "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
               "X-Frame-Options: DENY\r\nReferrer-Policy: same-origin\r\n"
               "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
               "frame-ancestors 'none'; form-action 'self'\r\n%s\r\n",
               code, reason ? reason : "Unknown", type, size, date, extra ? extra : "");
    if (size && strcmp (mg_get_request_info (conn)->request_method, "HEAD") != 0)
        mg_write (conn, body, size);
}

static int
s_text (struct mg_connection *conn, int code, const char *text)
{
    s_send (conn, code, "text/plain; charset=utf-8", text, strlen (text), NULL);
    return code;
}

//  Answer code with json (taken; NULL: 500).
static int
s_json (struct mg_connection *conn, int code, json_t *json)
{
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    if (!text)
        return s_text (conn, 500, "out of memory\n");
    s_send (conn, code, "application/json", text, strlen (text), NULL);
    free (text);
    return code;
}

static int
s_error (struct mg_connection *conn, int code, const char *error)
{
    return s_json (conn, code, json_pack ("{s:s}", "error", error));
}

//  A file of the page (sb_console_www), or NULL.
static const sb_console_www_t *
s_file (const char *name)
{
    for (const sb_console_www_t *f = sb_console_www; f->name; f++)
        if (!strcmp (f->name, name))
            return f;
    return NULL;
}

static int
s_serve_file (struct mg_connection *conn, int code, const char *name)
{
    const sb_console_www_t *f = s_file (name);
    if (!f)
        return s_text (conn, 404, "not found\n");
    s_send (conn, code, f->type, (const char *) f->data, f->size, NULL);
    return code;
}

//  The query string as a form, or NULL (a bad %-escape, out of memory).
static sb_form_t *
s_query (const struct mg_request_info *info)
{
    const char *q = info->query_string ? info->query_string : "";
    return sb_form_parse (q, strlen (q));
}

//  The request body as a form, or NULL (*code: 413 too large, 400 unread).
static sb_form_t *
s_body_form (struct mg_connection *conn, int *code)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    *code = 413;
    if (info->content_length > S_BODY_MAX)
        return NULL;
    char *body = malloc (S_BODY_MAX + 1);
    if (!body) {
        *code = 500;
        return NULL;
    }
    size_t size = 0;
    int n;
    while (size < S_BODY_MAX && (n = mg_read (conn, body + size, S_BODY_MAX - size)) > 0)
        size += (size_t) n;
    char extra;
    if (size == S_BODY_MAX && mg_read (conn, &extra, 1) > 0) {
        free (body);
        return NULL;
    }
    body[size] = 0;
    sb_form_t *form = sb_form_parse (body, size);
    free (body);
    *code = form ? 200 : 400;
    return form;
}

static int64_t
s_int64 (const char *text)
{
    if (!text || !*text)
        return 0;
    char *end = NULL;
    long long v = strtoll (text, &end, 10);
    return end && !*end && v > 0 ? (int64_t) v : -1;
}

//  This thread's store, connected; NULL when PostgreSQL fails.
static sb_store_t *
s_store (sb_console_http_t *self, struct mg_connection *conn)
{
    s_thread_t *t = (s_thread_t *) mg_get_thread_pointer (conn);
    if (!t)
        return NULL;
    if (!t->store)
        t->store = sb_store_new (sb_config_str (self->config, SB_CFG_DATABASE_URL),
                                 (int) sb_config_int (self->config, SB_CFG_SB_PG_TIMEOUT_MS));
    return t->store;
}

static int
s_db_failed (sb_console_http_t *self, struct mg_connection *conn)
{
    sb_metric_add (self->m_db_errors, 1);
    return s_error (conn, 503, "PostgreSQL is not answering");
}

static int
s_api_get (sb_console_http_t *self, struct mg_connection *conn, const char *path)
{
    sb_form_t *q = s_query (mg_get_request_info (conn));
    if (!q)
        return s_error (conn, 400, "bad query string");
    int64_t before = s_int64 (sb_form_get (q, "before"));
    const char *provider = sb_form_get (q, "provider");
    const char *channel = sb_form_get (q, "channel");
    const char *address = sb_form_get (q, "address");
    int code;
    if (before < 0)
        code = s_error (conn, 400, "before: expected a positive id");
    else if (!strcmp (path, "/api/messages") && (!provider || !channel || !address))
        code = s_error (conn, 400, "provider, channel and address are required");
    else {
        sb_store_t *store = s_store (self, conn);
        json_t *rows = NULL;
        int64_t next = -1;
        if (store && !strcmp (path, "/api/conversations"))
            rows = sb_store_console_conversations (store, before, S_PAGE, S_WINDOW, &next);
        else if (store && !strcmp (path, "/api/messages"))
            rows = sb_store_console_messages (store, provider, channel, address, before, S_PAGE,
                                              sb_console_payload_details);
        else if (store)
            rows = sb_store_console_trouble (store, before, S_PAGE);
        json_t *page = rows ? json_pack ("{s:o}", "items", rows) : NULL;
        if (page && next >= 0)
            json_object_set_new (page, "next", json_integer ((json_int_t) next));
        code = page ? s_json (conn, 200, page) : s_db_failed (self, conn);
    }
    sb_form_destroy (&q);
    return code;
}

//  Tell the open pages what the console itself did.
static void
s_notice (sb_console_http_t *self, json_t *o)
{
    json_object_set_new (o, "source", json_string ("console"));
    char *text = json_dumps (o, JSON_COMPACT);
    json_decref (o);
    if (text)
        sb_console_hub_post (self->hub, "console", text);
    free (text);
}

static int
s_api_retry (sb_console_http_t *self, struct mg_connection *conn, sb_form_t *form)
{
    int64_t id = s_int64 (sb_form_get (form, "id"));
    if (id <= 0)
        return s_error (conn, 400, "id: expected a positive outbox id");
    sb_store_t *store = s_store (self, conn);
    int rc = store ? sb_store_console_retry (store, id) : -1;
    if (rc < 0)
        return s_db_failed (self, conn);
    if (rc == 0)
        return s_error (conn, 409, "not a failed or dead outbox row");
    s_notice (self, json_pack ("{s:s, s:I}", "action", "retry", "outbox_id", (json_int_t) id));
    return s_json (conn, 200, json_pack ("{s:b}", "retried", 1));
}

static int
s_api_reply (sb_console_http_t *self, struct mg_connection *conn, sb_form_t *form)
{
    const char *provider = sb_form_get (form, "provider");
    const char *channel = sb_form_get (form, "channel");
    const char *address = sb_form_get (form, "address");
    const char *text = sb_form_get (form, "text");
    if (!provider || !channel || !address || !text || !*text)
        return s_error (conn, 400, "provider, channel, address and text are required");
    if (strlen (text) > SB_STORE_CONSOLE_TEXT_MAX)
        return s_error (conn, 400, "text: too long");
    sb_store_t *store = s_store (self, conn);
    sb_store_reply_t out;
    int rc = store ? sb_store_console_reply (store, provider, channel, address, text, 0, &out) : -1;
    if (rc < 0)
        return s_db_failed (self, conn);
    if (rc > 0)
        return s_json (conn, 400, json_pack ("{s:b, s:s}", "queued", 0, "reason", out.reason));
    s_notice (self, json_pack ("{s:s, s:s, s:s, s:s, s:b, s:s}", "action", "reply", "provider",
                               provider, "channel", channel, "address", address, "queued",
                               out.queued, "reason", out.reason));
    return s_json (conn, out.queued ? 200 : 409,
                   json_pack ("{s:b, s:s}", "queued", out.queued, "reason", out.reason));
}

static int
s_login (sb_console_http_t *self, struct mg_connection *conn, sb_form_t *form)
{
    const char *token = sb_form_get (form, "token");
    char cookie[64];
    snprintf (cookie, sizeof cookie, "%s=", SB_CONSOLE_COOKIE);
    //  The token checked as a cookie would be: one comparison, in constant time.
    char *given = token ? malloc (strlen (cookie) + strlen (token) + 1) : NULL;
    bool ok = false;
    if (given) {
        memcpy (given, cookie, strlen (cookie));
        memcpy (given + strlen (cookie), token, strlen (token) + 1);
        ok = !strpbrk (token, ";\r\n") && sb_console_token_ok (self->token, NULL, given);
        free (given);
    }
    if (!ok || !*self->token) {
        sb_metric_add (self->m_denied, 1);
        sb_info (S_MODULE, "login refused");
        return s_serve_file (conn, 401, "/login.html");
    }
    //  The cookie carries the token itself: HttpOnly (no script reads it),
    //  SameSite=Strict (no other site's request carries it).
    size_t size = strlen (self->token) + 128;
    char *header = malloc (size);
    if (!header)
        return s_text (conn, 500, "out of memory\n");
    snprintf (header, size,
              "Set-Cookie: %s=%s; HttpOnly; SameSite=Strict; Path=/\r\nLocation: /\r\n",
              SB_CONSOLE_COOKIE, self->token);
    s_send (conn, 303, "text/plain", "", 0, header);
    memset (header, 0, size);
    free (header);
    sb_info (S_MODULE, "login");
    return 303;
}

static int
s_post (sb_console_http_t *self, struct mg_connection *conn, const char *path, bool authorized)
{
    if (strcmp (path, "/login") && strcmp (path, "/api/retry") && strcmp (path, "/api/reply"))
        return s_text (conn, 404, "not found\n");
    if (!sb_console_same_origin (mg_get_header (conn, "Origin"),
                                 mg_get_header (conn, "Sec-Fetch-Site"),
                                 mg_get_header (conn, "Host"))) {
        sb_metric_add (self->m_denied, 1);
        return s_error (conn, 403, "cross-origin request refused");
    }
    if (!authorized && strcmp (path, "/login")) {
        sb_metric_add (self->m_denied, 1);
        return s_error (conn, 401, "the console token is required");
    }
    int code;
    sb_form_t *form = s_body_form (conn, &code);
    if (!form)
        return s_error (conn, code, code == 413 ? "body too large" : "bad body");
    if (!strcmp (path, "/login"))
        code = s_login (self, conn, form);
    else if (!strcmp (path, "/api/retry"))
        code = s_api_retry (self, conn, form);
    else
        code = s_api_reply (self, conn, form);
    sb_form_destroy (&form);
    return code;
}

//  Write all of text to the stream: false once the page is gone.
static bool
s_stream_write (struct mg_connection *conn, const char *text)
{
    size_t size = strlen (text);
    return mg_write (conn, text, size) == (int) size;
}

static int
s_events (sb_console_http_t *self, struct mg_connection *conn)
{
    if (!sb_console_hub_enter (self->hub))
        return s_error (conn, 503, "too many open event streams");
    bool resync = false;
    uint64_t cursor =
        sb_console_hub_start (self->hub, mg_get_header (conn, "Last-Event-ID"), &resync);
    mg_printf (conn, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     "Connection: close\r\n\r\n");
    //  Reconnect after a second; "hello" tells the page the stream is open.
    bool open = s_stream_write (conn, "retry: 1000\n\nevent: hello\ndata: {}\n\n");
    if (open && resync) {
        char *frame = sb_console_hub_resync (self->hub);
        open = frame && s_stream_write (conn, frame);
        free (frame);
    }
    bool stopped = false;
    while (open && !stopped) {
        char *frame = sb_console_hub_next (self->hub, &cursor, S_KEEPALIVE_MS, &stopped);
        if (frame)
            open = s_stream_write (conn, frame);
        else if (!stopped)
            open = s_stream_write (conn, ": keepalive\n\n");
        free (frame);
    }
    sb_console_hub_leave (self->hub);
    return 200;
}

static int
s_begin_request (struct mg_connection *conn)
{
    sb_console_http_t *self = (sb_console_http_t *) mg_get_user_data (mg_get_context (conn));
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *path = info->local_uri ? info->local_uri : "";
    const char *method = info->request_method;
    sb_metric_add (self->m_requests, 1);
    if (!strcmp (path, "/healthz"))
        return s_text (conn, 200, "ok\n");
    bool authorized = sb_console_token_ok (self->token, mg_get_header (conn, "Authorization"),
                                           mg_get_header (conn, "Cookie"));
    if (!strcmp (method, "POST"))
        return s_post (self, conn, path, authorized);
    if (strcmp (method, "GET") && strcmp (method, "HEAD")) {
        s_send (conn, 405, "text/plain", "method not allowed\n", 19, "Allow: GET, HEAD, POST\r\n");
        return 405;
    }
    //  The login page and its style need no token (and hold no secret).
    if (!authorized && !strcmp (path, "/app.css"))
        return s_serve_file (conn, 200, path);
    if (!authorized || !strcmp (path, "/login")) {
        if (!authorized)
            sb_metric_add (self->m_denied, 1);
        if (!strncmp (path, "/api/", 5) || !strcmp (path, "/metrics"))
            return s_error (conn, 401, "the console token is required");
        return s_serve_file (conn, authorized ? 200 : 401, "/login.html");
    }
    if (!strcmp (path, "/metrics")) {
        char *text = sb_metrics_render (self->metrics);
        s_send (conn, text ? 200 : 500, "text/plain; version=0.0.4; charset=utf-8",
                text ? text : "", text ? strlen (text) : 0, NULL);
        free (text);
        return 200;
    }
    if (!strcmp (path, "/api/events"))
        return s_events (self, conn);
    if (!strcmp (path, "/api/conversations") || !strcmp (path, "/api/messages")
        || !strcmp (path, "/api/dead"))
        return s_api_get (self, conn, path);
    return s_serve_file (conn, 200, !strcmp (path, "/") ? "/index.html" : path);
}

static void *
s_init_thread (const struct mg_context *ctx, int thread_type)
{
    (void) ctx;
    return thread_type == 1 ? calloc (1, sizeof (s_thread_t)) : NULL;
}

static void
s_exit_thread (const struct mg_context *ctx, int thread_type, void *pointer)
{
    (void) ctx;
    (void) thread_type;
    s_thread_t *t = (s_thread_t *) pointer;
    if (t)
        sb_store_destroy (&t->store);
    free (t);
}

static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    sb_debug ("civetweb", "%s", message);
    return 1;
}

sb_console_http_t *
sb_console_http_new (const sb_config_t *config, sb_console_hub_t *hub, sb_metrics_t *metrics)
{
    sb_console_http_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = config;
    self->hub = hub;
    self->metrics = metrics;
    self->token = sb_config_str (config, SB_CFG_SB_CONSOLE_TOKEN);
    self->m_requests =
        sb_metrics_counter (metrics, "sb_console_requests_total", "HTTP requests received", NULL);
    self->m_denied = sb_metrics_counter (metrics, "sb_console_denied_total",
                                         "requests refused 401 or 403", NULL);
    self->m_db_errors = sb_metrics_counter (metrics, "sb_console_db_errors_total",
                                            "API requests answered 503: PostgreSQL failed", NULL);
    const char *listen = sb_config_str (config, SB_CFG_SB_CONSOLE_LISTEN);
    char threads[16];
    snprintf (threads, sizeof threads, "%d", SB_CONSOLE_HUB_STREAMS + S_API_THREADS);
    const char *options[] = {"listening_ports",
                             listen,
                             "num_threads",
                             threads,
                             "request_timeout_ms",
                             "10000",
                             "enable_keep_alive",
                             "yes",
                             "keep_alive_timeout_ms",
                             "5000",
                             "tcp_nodelay",
                             "1",
                             NULL};
    struct mg_callbacks callbacks = {0};
    callbacks.begin_request = s_begin_request;
    callbacks.log_message = s_log_message;
    callbacks.init_thread = s_init_thread;
    callbacks.exit_thread = s_exit_thread;
    struct mg_init_data init = {&callbacks, self, options};
    char error_text[256] = "";
    struct mg_error_data error = {NULL, error_text, sizeof error_text};
    self->ctx = mg_start2 (&init, &error);
    if (!self->ctx) {
        sb_error (S_MODULE, "cannot start the console listen=%s error=\"%s\"", listen, error_text);
        free (self);
        return NULL;
    }
    sb_info (S_MODULE, "console listening listen=%s token=%s", listen,
             *self->token ? "required" : "none");
    return self;
}

void
sb_console_http_destroy (sb_console_http_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    if ((*self_p)->ctx)
        mg_stop ((*self_p)->ctx);
    free (*self_p);
    *self_p = NULL;
}
