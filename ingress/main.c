/*  switchboard-ingress: validates Twilio and Meta webhooks, makes them
    durable in the journal, acknowledges, and publishes them over ZeroMQ.

    main is thin: config, the ZeroMQ security (CURVE keys, zauth), then the
    journal writer actor, the replay server actor (it reads the writer's
    journal), then the HTTP server; it waits for SIGTERM or SIGINT and
    tears down in reverse order: stop HTTP (requests in flight finish and
    get their answer), stop the replay server, then stop the writer (its
    last batch is committed and published), then zauth, then exit 0.
*/
#include <czmq.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sb_config.h"
#include "sb_http.h"
#include "sb_json.h"
#include "sb_log.h"
#include "sb_metrics.h"
#include "sb_replay_server.h"
#include "sb_stop.h"
#include "sb_writer.h"
#include "sb_zmq.h"

static void
s_usage (FILE *out)
{
    fprintf (out, "Usage: switchboard-ingress [--help] [--help-markdown] [--version]\n\n"
                  "Receives Twilio and Meta webhooks on HTTP, checks their signatures, writes\n"
                  "them to a local journal, answers once they are durable, and publishes them\n"
                  "on ZeroMQ as [topic, switchboard.v1.Event].\n\n");
    sb_config_print_help (SB_SVC_INGRESS, out);
}

//  civetweb holds a socket per connection (SB_HTTP_THREADS of them, plus
//  SB_HTTP_QUEUE waiting): raise the descriptor limit to the hard limit.
static void
s_raise_nofile (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
}

int
main (int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0) {
            s_usage (stdout);
            return 0;
        }
        if (strcmp (argv[i], "--help-markdown") == 0) {
            sb_config_print_markdown (stdout);
            return 0;
        }
        if (strcmp (argv[i], "--version") == 0) {
            printf ("switchboard-ingress %s\n", SB_VERSION);
            return 0;
        }
        fprintf (stderr, "switchboard-ingress: unknown argument %s (try --help)\n", argv[i]);
        return 2;
    }
    //  SIGINT and SIGTERM go to this thread alone (sb_stop.h): before any
    //  other thread exists.
    sb_stop_init ();
    char err[512];
    sb_config_t *config = sb_config_load (SB_SVC_INGRESS, err, sizeof err);
    if (!config) {
        fprintf (stderr, "switchboard-ingress: configuration error: %s\n", err);
        return 2;
    }
    sb_log_level_t level = (sb_log_level_t) sb_config_int (config, SB_CFG_SB_LOG_LEVEL);
    sb_log_init ("ingress", level);
    if (sb_config_bool (config, SB_CFG_SB_INSECURE_SKIP_SIGNATURES))
        sb_warn ("main",
                 "SB_INSECURE_SKIP_SIGNATURES=1: webhook signatures are NOT checked; anyone who "
                 "can reach this port can inject messages. Use for experiments only");
    if (!sb_config_has (config, SB_CFG_TWILIO_AUTH_TOKEN))
        sb_warn ("main", "TWILIO_AUTH_TOKEN is not set: Twilio routes answer 503 until it is");
    if (!sb_config_has (config, SB_CFG_META_APP_SECRET))
        sb_warn ("main", "META_APP_SECRET is not set: POST /meta/whatsapp answers 503 until it is");
    if (!sb_config_has (config, SB_CFG_META_VERIFY_TOKEN))
        sb_warn ("main",
                 "META_VERIFY_TOKEN is not set: GET /meta/whatsapp answers 503 until it is");
    if (!sb_config_has (config, SB_CFG_SB_PUBLIC_URL))
        sb_info (
            "main",
            "SB_PUBLIC_URL is not set: Twilio signatures are checked against the Host header%s",
            sb_config_bool (config, SB_CFG_SB_TRUST_PROXY) ? " and X-Forwarded-Proto" : "");

    s_raise_nofile ();
    //  Two malloc arenas, and jansson through the request's scratch, before
    //  any thread starts (docs/internals.md, "Memory").
    mallopt (M_ARENA_MAX, 2);
    sb_json_use_scratch ();
    //  We handle signals ourselves; czmq must not install its handler.
    zsys_handler_set (NULL);
    //  A dozen ZeroMQ sockets; ZeroMQ sizes its table up front
    //  (docs/internals.md, "Memory" and "Threads").
    zsys_set_max_sockets (1024);
    zsys_set_linger (1000);
    signal (SIGPIPE, SIG_IGN);
    //  Past a file size limit, write() must fail (EFBIG: answered 503),
    //  not kill the process.
    signal (SIGXFSZ, SIG_IGN);

    //  CURVE keys and zauth before any socket is bound.
    sb_zmq_security_t *security = sb_zmq_security_new (config, err, sizeof err);
    if (!security) {
        fprintf (stderr, "switchboard-ingress: configuration error: %s\n", err);
        sb_config_destroy (&config);
        zsys_shutdown ();
        return 2;
    }
    //  From here on only sb_log writes to stderr: workers answering webhooks
    //  must not wait for it, so a log thread writes their lines (sb_log.c).
    if (sb_log_start () != 0)
        fprintf (stderr,
                 "switchboard-ingress: cannot start the log thread; logging synchronously\n");
    int status = 1;
    sb_metrics_t *metrics = sb_metrics_new ();
    sb_writer_t *writer = metrics ? sb_writer_new (config, security, metrics) : NULL;
    sb_replay_server_t *replay =
        writer ? sb_replay_server_new (config, security, writer, metrics) : NULL;
    sb_http_t *http = replay ? sb_http_new (config, writer, metrics) : NULL;
    if (http) {
        sb_info ("main", "ready ingress_id=%s listen=%s pub=%s replay=%s next_seq=%llu",
                 sb_config_str (config, SB_CFG_SB_INGRESS_ID),
                 sb_config_str (config, SB_CFG_SB_LISTEN), sb_config_str (config, SB_CFG_SB_PUB),
                 sb_config_str (config, SB_CFG_SB_REPLAY),
                 (unsigned long long) sb_writer_next_seq (writer));
        sb_stop_wait (-1);
        sb_info ("main", "stopping: finishing requests in flight");
        status = 0;
    }
    sb_http_destroy (&http);
    sb_replay_server_destroy (&replay);
    sb_writer_destroy (&writer);
    sb_zmq_security_destroy (&security);
    sb_metrics_destroy (&metrics);
    sb_config_destroy (&config);
    zsys_shutdown ();
    if (status == 0)
        sb_info ("main", "stopped");
    sb_log_stop ();
    return status;
}
