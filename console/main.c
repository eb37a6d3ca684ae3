/*  switchboard-console: the live web console (issue 14). A subscriber to
    the ingresses' and the dispatcher's PUB sockets with a page: the
    conversations, each outbound message's status, the dead letters with a
    Retry, and a reply form, read from PostgreSQL and updated live.

    main is thin: config (and the rule that a console bound elsewhere than
    loopback needs SB_CONSOLE_TOKEN), the ZeroMQ security, the hub
    (subscriber), the HTTP side; on SIGTERM or SIGINT it tears down in
    reverse order (the hub's streams end first) and exits 0. It applies no
    migration: the dispatcher owns the schema.
*/
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "sb_config.h"
#include "sb_console_http.h"
#include "sb_console_hub.h"
#include "sb_console_web.h"
#include "sb_log.h"
#include "sb_metrics.h"
#include "sb_stop.h"
#include "sb_zmq.h"

static void
s_usage (FILE *out)
{
    fprintf (out, "Usage: switchboard-console [--help] [--version]\n\n"
                  "Serves a live web console on SB_CONSOLE_LISTEN: conversations, delivery\n"
                  "statuses and dead letters from PostgreSQL (DATABASE_URL), updated from the\n"
                  "ingress and dispatcher PUB sockets. `switchboard console` runs it.\n\n");
    sb_config_print_help (SB_SVC_CONSOLE, out);
}

int
main (int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--help") || !strcmp (argv[i], "-h")) {
            s_usage (stdout);
            return 0;
        }
        if (!strcmp (argv[i], "--version")) {
            printf ("switchboard-console %s\n", SB_VERSION);
            return 0;
        }
        fprintf (stderr, "switchboard-console: unknown argument %s (try --help)\n", argv[i]);
        return 2;
    }
    sb_stop_init ();
    char err[512];
    sb_config_t *config = sb_config_load (SB_SVC_CONSOLE, err, sizeof err);
    if (!config) {
        fprintf (stderr, "switchboard-console: configuration error: %s\n", err);
        return 2;
    }
    const char *listen = sb_config_str (config, SB_CFG_SB_CONSOLE_LISTEN);
    if (!sb_console_listen_is_loopback (listen)
        && !sb_config_has (config, SB_CFG_SB_CONSOLE_TOKEN)) {
        fprintf (stderr,
                 "switchboard-console: configuration error: SB_CONSOLE_TOKEN: required when "
                 "SB_CONSOLE_LISTEN=%s is not a loopback address (127.0.0.1:PORT or [::1]:PORT)\n",
                 listen);
        sb_config_destroy (&config);
        return 2;
    }
    sb_log_init ("console", (sb_log_level_t) sb_config_int (config, SB_CFG_SB_LOG_LEVEL));
    zsys_handler_set (NULL);
    zsys_set_linger (0);
    signal (SIGPIPE, SIG_IGN);
    int status = 1;
    sb_zmq_security_t *security = sb_zmq_security_new (config, err, sizeof err);
    if (!security) {
        fprintf (stderr, "switchboard-console: configuration error: %s\n", err);
        sb_config_destroy (&config);
        return 2;
    }
    if (sb_log_start () != 0)
        fprintf (stderr,
                 "switchboard-console: cannot start the log thread; logging synchronously\n");
    sb_metrics_t *metrics = sb_metrics_new ();
    sb_console_hub_t *hub = metrics ? sb_console_hub_new (config, security, metrics) : NULL;
    sb_console_http_t *http = hub ? sb_console_http_new (config, hub, metrics) : NULL;
    if (http) {
        sb_info ("main", "ready listen=%s ingress_pub=%s dispatcher_pub=%s", listen,
                 sb_config_str (config, SB_CFG_SB_INGRESS_PUB),
                 sb_config_str (config, SB_CFG_SB_DISPATCHER_PUB));
        sb_stop_wait (-1);
        sb_info ("main", "stopping");
        status = 0;
    }
    if (hub)
        sb_console_hub_stop (hub);
    sb_console_http_destroy (&http);
    sb_console_hub_destroy (&hub);
    sb_metrics_destroy (&metrics);
    sb_zmq_security_destroy (&security);
    sb_config_destroy (&config);
    zsys_shutdown ();
    if (status == 0)
        sb_info ("main", "stopped");
    sb_log_stop ();
    return status;
}
