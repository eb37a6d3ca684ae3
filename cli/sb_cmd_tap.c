/*  switchboard tap: print live events from one or more PUB sockets.

    A SUB socket connects to every endpoint given (an ingress's SB_PUB, a
    dispatcher's outcome PUB, or both), subscribes to the topic prefixes
    asked for (all by default) and prints each two-frame message [topic,
    Event] as one line, flushed at once so a pipe reader sees it
    immediately. Messages of another shape, or payloads that do not decode,
    are reported on stderr and skipped: a monitor must not die on them.

    PUB/SUB is lossy by design: tap sees only what is published after its
    connection is up, and drops what it cannot keep up with beyond its
    receive queue. That is fine for a monitor; the dispatcher uses the
    journal replay instead.

    With SB_CURVE_SERVER_PUBLIC and SB_CURVE_CLIENT_CERT set (the
    environment, as for the services) the SUB socket is a CURVE client of
    that server (sb_zmq); a server whose SB_CURVE_ALLOWED lacks the tap's
    public key sends it nothing.
*/
#include <czmq.h>
#include <jansson.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_event.h"
#include "sb_log.h"
#include "sb_zmq.h"

#define S_CMD "tap"
#define S_DEFAULT_ENDPOINT "tcp://127.0.0.1:5556"
#define S_MAX_TOPICS 64
#define S_POLL_MS 100                       //  longest wait before checking the signal flag again
#define S_RCVHWM 100000                     //  messages queued before the SUB socket drops
#define S_MAX_PAYLOAD (256u * 1024 * 1024)  //  larger messages: libzmq drops the peer

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: switchboard tap [--json] [--count N] [--topic PREFIX]... [--timeout SECONDS]\n"
        "                       [ENDPOINT]...\n"
        "\n"
        "Print live events published by switchboard-ingress (SB_PUB) or by a dispatcher,\n"
        "one line per event, flushed after each line.\n"
        "\n"
        "  ENDPOINT          ZeroMQ PUB endpoint(s) to connect to (default %s)\n"
        "  --topic PREFIX    only topics starting with PREFIX, e.g. sb.v1.twilio or\n"
        "                    sb.v1.meta.whatsapp.status; repeatable (default: all)\n"
        "  --json            one JSON object per line: the event with \"topic\" added\n"
        "  --count N         exit 0 after N events\n"
        "  --timeout SECONDS stop after SECONDS in total (fractions allowed); exit 1 when\n"
        "                    fewer than N events (at least one without --count) arrived\n"
        "  -h, --help        this help\n"
        "\n"
        "Human lines look like:\n"
        "  seq=12 twilio.sms.message sid=SM... from=+14155550100 to=+15558675310 text=\"hello\"\n"
        "Messages that are not two frames, or whose payload is not an Event, are\n"
        "reported on stderr and skipped. SIGINT or SIGTERM exits 0.\n"
        "With CURVE (README \"Attaching a monitor\"): SB_CURVE_SERVER_PUBLIC is the\n"
        "server's public key and SB_CURVE_CLIENT_CERT this tap's key pair.\n"
        "Exit status: 0 done, 1 timed out or a socket failed, 2 bad flags or settings.\n",
        S_DEFAULT_ENDPOINT);
}

//  Options as parsed from the command line.
typedef struct {
    bool json;                         //  --json
    uint64_t count;                    //  --count, 0 = unlimited
    double timeout;                    //  --timeout in seconds, < 0 = none
    const char *topics[S_MAX_TOPICS];  //  --topic prefixes (borrowed from argv)
    size_t n_topics;                   //  how many
    char **endpoints;                  //  positional arguments (borrowed)
    int n_endpoints;                   //  how many
} s_opts_t;

//  Parse flags into opts. Returns -1 after printing help (exit 0), a usage
//  status, or SB_CLI_OK.
static int
s_parse (int argc, char **argv, s_opts_t *opts)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},        {"count", required_argument, NULL, 'n'},
        {"topic", required_argument, NULL, 't'}, {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    memset (opts, 0, sizeof *opts);
    opts->timeout = -1;
    optind = 0;  //  full re-initialisation of GNU getopt
    opterr = 0;
    int c;
    while ((c = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
            case 'j': opts->json = true; break;
            case 'n':
                if (sb_cli_parse_u64 (optarg, 1, UINT64_MAX, &opts->count))
                    return sb_cli_usage_error (S_CMD, "--count %s: expected a whole number >= 1",
                                               optarg);
                break;
            case 't':
                if (opts->n_topics == S_MAX_TOPICS)
                    return sb_cli_usage_error (S_CMD, "at most %d --topic flags", S_MAX_TOPICS);
                opts->topics[opts->n_topics++] = optarg;
                break;
            case 'T':
                if (sb_cli_parse_seconds (optarg, 31 * 24 * 3600.0, &opts->timeout)
                    || opts->timeout <= 0)
                    return sb_cli_usage_error (
                        S_CMD, "--timeout %s: expected seconds > 0, e.g. 2 or 0.5", optarg);
                break;
            case 'h': s_usage (stdout); return -1;
            default: return sb_cli_bad_flag (S_CMD, c, argv);
        }
    }
    opts->endpoints = argv + optind;
    opts->n_endpoints = argc - optind;
    for (int i = 0; i < opts->n_endpoints; i++)
        if (!strstr (opts->endpoints[i], "://"))
            return sb_cli_usage_error (S_CMD, "'%s' is not a ZeroMQ endpoint (expected e.g. %s)",
                                       opts->endpoints[i], S_DEFAULT_ENDPOINT);
    return SB_CLI_OK;
}

//  Subscribe and connect. 0, or -1 after printing why.
static int
s_connect (zsock_t *sub, const s_opts_t *opts, const sb_zmq_security_t *security)
{
    zsock_set_rcvhwm (sub, S_RCVHWM);
    zsock_set_maxmsgsize (sub, (int) S_MAX_PAYLOAD);
    if (opts->n_topics == 0)
        zsock_set_subscribe (sub, "");
    for (size_t i = 0; i < opts->n_topics; i++)
        zsock_set_subscribe (sub, opts->topics[i]);
    //  sb_zmq_connect makes the socket a CURVE client when keys are set,
    //  and says why a connection failed.
    if (opts->n_endpoints == 0)
        return sb_zmq_connect (security, sub, "SUB", NULL, S_DEFAULT_ENDPOINT);
    for (int i = 0; i < opts->n_endpoints; i++)
        if (sb_zmq_connect (security, sub, "SUB", NULL, opts->endpoints[i]))
            return -1;
    return 0;
}

//  True when the topic can be printed bare on a human line.
static bool
s_plain (const char *text)
{
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || *p == '"')
            return false;
    return *text != 0;
}

//  Print one received message. Returns 1 when it was an event, 0 when it
//  was skipped.
static int
s_handle (zmsg_t *msg, const s_opts_t *opts)
{
    size_t frames = zmsg_size (msg);
    if (frames != 2) {
        sb_warn ("tap", "message skipped: expected 2 frames [topic, Event] frames=%zu", frames);
        return 0;
    }
    zframe_t *topic_frame = zmsg_first (msg);
    zframe_t *payload = zmsg_next (msg);
    char *topic = zframe_strdup (topic_frame);
    if (!topic) {
        sb_error ("tap", "out of memory");
        return 0;
    }
    int shown = 0;
    sb_event_t *event = NULL;
    if (strncmp (topic, "sb.v1.outcome.", 14) == 0) {
        //  The dispatcher's outcomes are JSON objects (see dispatcher/sb_outcome.h).
        json_error_t error;
        json_t *outcome = zframe_size (payload) <= S_MAX_PAYLOAD
                              ? json_loadb ((const char *) zframe_data (payload),
                                            zframe_size (payload), 0, &error)
                              : NULL;
        if (!json_is_object (outcome))
            sb_warn ("tap", "message skipped: outcome is not a JSON object topic=%.100s",
                     s_plain (topic) ? topic : "(unprintable)");
        else {
            if (opts->json) {
                //  "topic" is the outcome's; the event's own topic, when
                //  the outcome names one, moves to "event_topic".
                json_t *own = json_object_get (outcome, "topic");
                if (own)
                    json_object_set (outcome, "event_topic", own);
                json_object_set_new (outcome, "topic", json_string (topic));
                char *line = json_dumps (outcome, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (line)
                    printf ("%s\n", line);
                free (line);
            }
            else {
                char *line = json_dumps (outcome, JSON_COMPACT | JSON_PRESERVE_ORDER);
                printf ("%s %s\n", s_plain (topic) ? sb_cli_short_topic (topic) : "outcome",
                        line ? line : "");
                free (line);
            }
            shown = 1;
        }
        json_decref (outcome);
        fflush (stdout);
        free (topic);
        return shown;
    }
    if (zframe_size (payload) > S_MAX_PAYLOAD)
        sb_warn ("tap", "message skipped: payload too large size=%zu", zframe_size (payload));
    else if (!(event = sb_event_decode (zframe_data (payload), zframe_size (payload))))
        sb_warn ("tap", "message skipped: payload is not an Event topic=%.100s size=%zu",
                 s_plain (topic) ? topic : "(unprintable)", zframe_size (payload));
    else if (opts->json) {
        if (sb_cli_print_json (stdout, event, topic) == 0)
            shown = 1;
        else
            sb_warn ("tap", "event skipped: cannot render JSON seq=%llu",
                     (unsigned long long) event->seq);
    }
    else {
        printf ("seq=%llu ", (unsigned long long) event->seq);
        if (s_plain (topic))
            fputs (sb_cli_short_topic (topic), stdout);
        else
            sb_cli_print_quoted (stdout, topic);
        sb_cli_print_summary (stdout, event);
        fputc ('\n', stdout);
        shown = 1;
    }
    fflush (stdout);
    sb_event_destroy (&event);
    free (topic);
    return shown;
}

int
sb_cmd_tap (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, &opts);
    if (rc != SB_CLI_OK)
        return rc < 0 ? SB_CLI_OK : rc;
    sb_config_t *config = sb_cli_setup (S_CMD);
    if (!config)
        return SB_CLI_USAGE;
    char err[512];
    sb_zmq_security_t *security = sb_zmq_security_new (config, err, sizeof err);
    if (!security) {
        fprintf (stderr, "switchboard tap: %s\n", err);
        sb_config_destroy (&config);
        return SB_CLI_USAGE;
    }

    //  czmq installs its own SIGINT/SIGTERM handlers in zsys_init; ours
    //  replace them, without SA_RESTART so a blocked poll returns EINTR.
    zsys_init ();
    zsys_set_logstream (stderr);  //  never mix czmq's log lines into our stdout
    sb_cli_catch_signals ();

    zsock_t *sub = zsock_new (ZMQ_SUB);
    if (!sub) {
        fprintf (stderr, "switchboard tap: cannot create a SUB socket: %s\n",
                 zmq_strerror (zmq_errno ()));
        rc = SB_CLI_FAILED;
        goto done;
    }
    if (s_connect (sub, &opts, security)) {
        rc = SB_CLI_USAGE;
        goto done;
    }
    uint64_t seen = 0;
    int64_t deadline = opts.timeout > 0 ? zclock_mono () + (int64_t) (opts.timeout * 1000.0) : 0;
    bool timed_out = false;
    rc = SB_CLI_OK;
    while (!sb_cli_interrupted () && (opts.count == 0 || seen < opts.count)) {
        long wait_ms = S_POLL_MS;
        if (deadline) {
            int64_t left = deadline - zclock_mono ();
            if (left <= 0) {
                timed_out = true;
                break;
            }
            if (left < wait_ms)
                wait_ms = (long) left;
        }
        zmq_pollitem_t item = {zsock_resolve (sub), 0, ZMQ_POLLIN, 0};
        int ready = zmq_poll (&item, 1, wait_ms);
        if (ready < 0) {
            if (zmq_errno () == EINTR)
                continue;
            fprintf (stderr, "switchboard tap: poll failed: %s\n", zmq_strerror (zmq_errno ()));
            rc = SB_CLI_FAILED;
            break;
        }
        if (ready == 0 || !(item.revents & ZMQ_POLLIN))
            continue;
        zmsg_t *msg = zmsg_recv (sub);
        if (!msg)
            continue;  //  interrupted
        seen += (uint64_t) s_handle (msg, &opts);
        zmsg_destroy (&msg);
    }
    if (timed_out) {
        uint64_t wanted = opts.count ? opts.count : 1;
        if (seen < wanted) {
            fprintf (stderr, "switchboard tap: timed out after %g s with %llu of %llu event(s)\n",
                     opts.timeout, (unsigned long long) seen, (unsigned long long) wanted);
            rc = SB_CLI_FAILED;
        }
    }
done:
    zsock_destroy (&sub);
    sb_zmq_security_destroy (&security);
    zsys_shutdown ();
    sb_config_destroy (&config);
    return rc;
}
