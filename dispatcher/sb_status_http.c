/*  sb_status_http: /healthz (the process answers), /readyz (the callback
    says ready: PostgreSQL reachable and the actors running) and /metrics
    (Prometheus text) on civetweb with four worker threads. Anything else
    is 404; other methods 405.
*/
#include "sb_status_http.h"

#include <assert.h>
#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_log.h"
#include "sb_time.h"

struct sb_status_http_t {
    struct mg_context *ctx;     //  civetweb server
    sb_metrics_t *metrics;      //  borrowed
    sb_status_ready_fn *ready;  //  readiness callback
    void *arg;                  //  its argument
};

static void
s_send (struct mg_connection *conn, int code, const char *type, const char *body)
{
    //  Our own head: civetweb's Date header uses gmtime(), not thread-safe.
    char date[SB_HTTP_DATE_SIZE];
    sb_time_http_date (date);
    const char *reason = mg_get_response_code_text (conn, code);
    size_t size = strlen (body);
    mg_printf (conn,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Date: %s\r\nCache-Control: no-store\r\n%s\r\n",
               code, reason ? reason : "Unknown", type, size, date,
               code == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (size && strcmp (mg_get_request_info (conn)->request_method, "HEAD") != 0)
        mg_write (conn, body, size);
}

static int
s_begin_request (struct mg_connection *conn)
{
    sb_status_http_t *self = (sb_status_http_t *) mg_get_user_data (mg_get_context (conn));
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *path = info->local_uri ? info->local_uri : "";
    bool known =
        !strcmp (path, "/healthz") || !strcmp (path, "/readyz") || !strcmp (path, "/metrics");
    if (!known) {
        s_send (conn, 404, "text/plain", "not found\n");
        return 404;
    }
    if (strcmp (info->request_method, "GET") && strcmp (info->request_method, "HEAD")) {
        s_send (conn, 405, "text/plain", "method not allowed\n");
        return 405;
    }
    if (!strcmp (path, "/healthz")) {
        s_send (conn, 200, "text/plain", "ok\n");
        return 200;
    }
    if (!strcmp (path, "/readyz")) {
        const char *why = "";
        if (self->ready (self->arg, &why)) {
            s_send (conn, 200, "text/plain", "ready\n");
            return 200;
        }
        char text[256];
        snprintf (text, sizeof text, "not ready: %s\n", why);
        s_send (conn, 503, "text/plain", text);
        return 503;
    }
    char *text = sb_metrics_render (self->metrics);
    s_send (conn, text ? 200 : 500, "text/plain; version=0.0.4; charset=utf-8",
            text ? text : "out of memory\n");
    free (text);
    return 200;
}

static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    sb_debug ("civetweb", "%s", message);
    return 1;
}

sb_status_http_t *
sb_status_http_new (const char *listen, sb_metrics_t *metrics, sb_status_ready_fn *ready, void *arg)
//  civetweb options, a name and its value a line: laid out by hand, clang-format leaves it
// clang-format off
{
    sb_status_http_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->metrics = metrics;
    self->ready = ready;
    self->arg = arg;
    const char *options[] = {"listening_ports", listen, "num_threads", "4",
                             "request_timeout_ms", "5000", "enable_keep_alive", "yes",
                             "keep_alive_timeout_ms", "5000",
                             //  no Nagle wait between a head and its body
                             "tcp_nodelay", "1", NULL};
    // clang-format on
    struct mg_callbacks callbacks = {0};
    callbacks.begin_request = s_begin_request;
    callbacks.log_message = s_log_message;
    struct mg_init_data init = {&callbacks, self, options};
    char error_text[256] = "";
    struct mg_error_data error = {NULL, error_text, sizeof error_text};
    self->ctx = mg_start2 (&init, &error);
    if (!self->ctx) {
        sb_error ("http", "cannot start the status server listen=%s error=\"%s\"", listen,
                  error_text);
        free (self);
        return NULL;
    }
    sb_info ("http", "status server listening listen=%s", listen);
    return self;
}

void
sb_status_http_destroy (sb_status_http_t **self_p)
{
    assert (self_p);
    if (!*self_p)
        return;
    if ((*self_p)->ctx)
        mg_stop ((*self_p)->ctx);
    free (*self_p);
    *self_p = NULL;
}
