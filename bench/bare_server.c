/*  sb-bench-bare: the baseline of the ingress benchmark. A civetweb server
    with the ingress's listen, thread, queue and timeout options that, for
    any method and path, reads the whole request body and answers 200
    text/plain "OK". No signature check, no parsing, no journal, no publish:
    what is left is the cost of civetweb itself, so the ingress's numbers
    divided by these show what switchboard's own work costs.

    Settings are the ingress's, read from the same environment variables
    with the same defaults (common/sb_config_table.h): SB_LISTEN, SB_HTTP_THREADS,
    SB_HTTP_QUEUE, SB_HTTP_REQUEST_TIMEOUT_MS, SB_HTTP_KEEPALIVE_TIMEOUT_MS,
    SB_MAX_BODY (a longer body is answered 413, as the ingress does). Read
    once at start; this tool does not link sb_common, so it parses them
    itself, strictly, and refuses bad values.

    Limits: a benchmark tool, not a service. Stops on SIGINT or SIGTERM.
*/
#include <civetweb.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  Set by the signal handler, read by main's wait loop (the one global).
static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_stop = 1;
}

//  The value of NAME, or dflt when unset or empty.
static const char *
s_setting (const char *name, const char *dflt)
{
    const char *value = getenv (name);
    return value && *value ? value : dflt;
}

//  NAME as an integer in [min, max] (k/m suffix allowed); -1 on a bad value.
static long long
s_setting_int (const char *name, const char *dflt, long long min, long long max)
{
    const char *text = s_setting (name, dflt);
    errno = 0;
    char *end;
    long long value = strtoll (text, &end, 10);
    long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    if (errno || end == text || *end || value < 0 || value > max / mult || value * mult < min) {
        fprintf (stderr, "sb-bench-bare: %s=%s: expected an integer between %lld and %lld\n", name,
                 text, min, max);
        return -1;
    }
    return value * mult;
}

//  Largest accepted body, as SB_MAX_BODY; set once before mg_start.
typedef struct {
    long long max_body;  //  bytes
} s_server_t;

static int
s_handle (struct mg_connection *conn, void *cbdata)
{
    const s_server_t *server = cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (info->content_length > server->max_body) {
        mg_send_http_error (conn, 413, "%s", "body too large\n");
        return 413;
    }
    //  Read the whole body (chunked or with a length), discarding it.
    char buf[16384];
    long long total = 0;
    int n;
    while ((n = mg_read (conn, buf, sizeof buf)) > 0) {
        total += n;
        if (total > server->max_body) {
            mg_send_http_error (conn, 413, "%s", "body too large\n");
            return 413;
        }
    }
    mg_send_http_ok (conn, "text/plain", 2);
    mg_write (conn, "OK", 2);
    return 200;
}

int
main (int argc, char **argv)
{
    if (argc > 1) {
        fprintf (stderr,
                 "usage: %s\n"
                 "  a bare civetweb server answering 200 to everything (bench/README.md);\n"
                 "  settings: SB_LISTEN SB_HTTP_THREADS SB_HTTP_QUEUE SB_HTTP_REQUEST_TIMEOUT_MS\n"
                 "            SB_HTTP_KEEPALIVE_TIMEOUT_MS SB_MAX_BODY (as the ingress)\n",
                 argv[0]);
        return 2;
    }
    s_server_t server;
    long long threads = s_setting_int ("SB_HTTP_THREADS", "256", 8, 4096);
    long long queue = s_setting_int ("SB_HTTP_QUEUE", "256", 1, 65536);
    long long request_ms = s_setting_int ("SB_HTTP_REQUEST_TIMEOUT_MS", "10000", 100, 600000);
    long long keepalive_ms = s_setting_int ("SB_HTTP_KEEPALIVE_TIMEOUT_MS", "15000", 0, 600000);
    server.max_body = s_setting_int ("SB_MAX_BODY", "1048576", 1024, 64LL * 1024 * 1024);
    if (threads < 0 || queue < 0 || request_ms < 0 || keepalive_ms < 0 || server.max_body < 0)
        return 2;

    //  The options of sb_http_new (ingress/sb_http.c), value for value.
    char listen[256], threads_s[24], queue_s[24], request_s[24], keepalive_s[24];
    snprintf (listen, sizeof listen, "%s", s_setting ("SB_LISTEN", "127.0.0.1:8080"));
    snprintf (threads_s, sizeof threads_s, "%lld", threads);
    snprintf (queue_s, sizeof queue_s, "%lld", queue);
    snprintf (request_s, sizeof request_s, "%lld", request_ms);
    snprintf (keepalive_s, sizeof keepalive_s, "%lld", keepalive_ms);
    //  civetweb options, a name and its value a line: laid out by hand, clang-format leaves it
    // clang-format off
    const char *options[] = {
        "listening_ports", listen,
        "num_threads", threads_s,
        "connection_queue", queue_s,
        "request_timeout_ms", request_s,
        "keep_alive_timeout_ms", keepalive_s,
        "enable_keep_alive", "yes",
        "listen_backlog", "1024",
        "decode_url", "no",
        "tcp_nodelay", "1",
        NULL,
    };
    // clang-format on

    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);

    mg_init_library (0);
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    struct mg_context *ctx = mg_start (&callbacks, NULL, options);
    if (!ctx) {
        fprintf (stderr, "sb-bench-bare: cannot listen on %s\n", listen);
        mg_exit_library ();
        return 1;
    }
    mg_set_request_handler (ctx, "/", s_handle, &server);
    fprintf (stderr, "sb-bench-bare: listening on %s, %s threads\n", listen, threads_s);

    while (!s_stop) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        nanosleep (&tick, NULL);
    }
    mg_stop (ctx);
    mg_exit_library ();
    return 0;
}
