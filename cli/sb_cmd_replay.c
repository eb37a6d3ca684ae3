/*  switchboard replay: print an ingress journal's records from a sequence
    number, asking the ingress itself over its replay socket (SB_REPLAY), so
    a monitor can catch up with what it missed on the live PUB stream.

    Speaks the replay protocol (proto/README.md) as an anonymous consumer: a
    DEALER sends one REQUEST with a credit window, prints each RECORD as one
    line in tap's format (or tap's JSON), grants more credit as it prints,
    and exits at the END marker, whose summary goes to stderr. It never
    acknowledges: it is not a durable consumer.

    With SB_CURVE_SERVER_PUBLIC and SB_CURVE_CLIENT_CERT set it connects
    as a CURVE client (sb_zmq). Limits: a silent ingress for --timeout
    seconds is a failure.
*/
#include <czmq.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "sb_cli.h"
#include "sb_cmd.h"
#include "sb_event.h"
#include "sb_log.h"
#include "sb_replay.h"
#include "sb_zmq.h"

#define S_CMD "replay"
#define S_WINDOW 1000  //  credit granted at a time
#define S_POLL_MS 100  //  longest wait before checking the signal flag again

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: switchboard replay [--from SEQ] [--json] [--count N] [--epoch EPOCH]\n"
        "                          [--timeout SECONDS] [ENDPOINT]\n"
        "\n"
        "Ask an ingress to replay its journal from sequence number SEQ and print the\n"
        "records in order, one line each (as `switchboard tap` does), until the replay\n"
        "ends: at the last durable record, or after N records.\n"
        "\n"
        "  ENDPOINT          the ingress's replay endpoint (default: SB_REPLAY,\n"
        "                    tcp://127.0.0.1:5557)\n"
        "  --from SEQ        first sequence number (default 1); when retention removed\n"
        "                    it, the replay starts at the first kept (said on stderr)\n"
        "  --count N         stop after N records\n"
        "  --json            one JSON object per line: the event with \"topic\" added\n"
        "  --epoch EPOCH     the journal epoch SEQ belongs to; if the ingress has another\n"
        "                    journal now, it replays that one from seq 1 (said on stderr)\n"
        "  --timeout SECONDS fail when the ingress says nothing for SECONDS (default 10)\n"
        "  -h, --help        this help\n"
        "\n"
        "Human lines look like:\n"
        "  seq=12 twilio.sms.message sid=SM... from=+14155550100 to=+15558675310 text=\"hello\"\n"
        "The end is reported on stderr:\n"
        "  replay end: reason=caught_up last_seq=50 committed_seq=50 epoch=... records=50\n"
        "Exit status: 0 the replay ended (caught up or N records), 1 it failed or the\n"
        "ingress did not answer, 2 bad flags or settings.\n");
}

//  Options as parsed from the command line.
typedef struct {
    bool json;             //  --json
    uint64_t from;         //  --from
    uint64_t count;        //  --count, 0 = all
    const char *epoch;     //  --epoch or NULL (borrowed)
    double timeout;        //  --timeout seconds
    const char *endpoint;  //  ENDPOINT or NULL for SB_REPLAY (borrowed)
} s_opts_t;

static int
s_parse (int argc, char **argv, s_opts_t *opts)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"from", required_argument, NULL, 'f'},
        {"count", required_argument, NULL, 'n'},
        {"epoch", required_argument, NULL, 'e'},
        {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset (opts, 0, sizeof *opts);
    opts->from = 1;
    opts->timeout = 10;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long (argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
            case 'j': opts->json = true; break;
            case 'f':
                if (sb_cli_parse_u64 (optarg, 1, UINT64_MAX, &opts->from))
                    return sb_cli_usage_error (S_CMD, "--from %s: expected a sequence number >= 1",
                                               optarg);
                break;
            case 'n':
                if (sb_cli_parse_u64 (optarg, 1, UINT64_MAX, &opts->count))
                    return sb_cli_usage_error (S_CMD, "--count %s: expected a whole number >= 1",
                                               optarg);
                break;
            case 'e':
                if (!sb_replay_epoch_valid (optarg))
                    return sb_cli_usage_error (
                        S_CMD, "--epoch %s: expected the journal's epoch (hex digits)", optarg);
                opts->epoch = optarg;
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
    if (argc - optind > 1)
        return sb_cli_usage_error (S_CMD, "expected one endpoint, got %d arguments", argc - optind);
    if (argc - optind == 1) {
        opts->endpoint = argv[optind];
        if (!strstr (opts->endpoint, "://"))
            return sb_cli_usage_error (
                S_CMD, "'%s' is not a ZeroMQ endpoint (expected e.g. tcp://127.0.0.1:5557)",
                opts->endpoint);
    }
    return SB_CLI_OK;
}

//  Encode and send; 0 or -1.
static int
s_send (zsock_t *dealer, const sb_replay_msg_t *msg)
{
    return sb_replay_send (zsock_resolve (dealer), msg, 0);
}

//  Print one record as tap does.
static void
s_print (const s_opts_t *opts, const sb_replay_msg_t *record)
{
    sb_event_t *event = sb_event_decode (record->event, record->event_size);
    if (!event) {
        sb_warn ("replay", "record is not an Event seq=%llu size=%zu",
                 (unsigned long long) record->seq, record->event_size);
        return;
    }
    char topic[256];
    if (sb_event_topic (event, topic, sizeof topic) < 0)
        snprintf (topic, sizeof topic, "sb.v1.unknown");
    if (opts->json) {
        if (sb_cli_print_json (stdout, event, topic))
            sb_warn ("replay", "cannot render record as JSON seq=%llu",
                     (unsigned long long) record->seq);
    }
    else {
        printf ("seq=%llu %s", (unsigned long long) record->seq, sb_cli_short_topic (topic));
        sb_cli_print_summary (stdout, event);
        fputc ('\n', stdout);
    }
    fflush (stdout);
    sb_event_destroy (&event);
}

int
sb_cmd_replay (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, &opts);
    if (rc != SB_CLI_OK)
        return rc < 0 ? SB_CLI_OK : rc;
    sb_config_t *config = sb_cli_setup (S_CMD);
    if (!config)
        return SB_CLI_USAGE;
    const char *endpoint = opts.endpoint ? opts.endpoint : sb_config_str (config, SB_CFG_SB_REPLAY);
    char err[512];
    sb_zmq_security_t *security = sb_zmq_security_new (config, err, sizeof err);
    if (!security) {
        fprintf (stderr, "switchboard replay: %s\n", err);
        sb_config_destroy (&config);
        return SB_CLI_USAGE;
    }

    zsys_init ();
    zsys_set_logstream (stderr);
    sb_cli_catch_signals ();

    rc = SB_CLI_FAILED;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer) {
        fprintf (stderr, "switchboard replay: cannot create a socket: %s\n",
                 zmq_strerror (zmq_errno ()));
        goto done;
    }
    zsock_set_maxmsgsize (dealer, (int64_t) SB_REPLAY_MAX_MESSAGE);
    zsock_set_rcvhwm (dealer, S_WINDOW * 2);
    zsock_set_linger (dealer, 100);
    if (sb_zmq_connect (security, dealer, "replay", opts.endpoint ? NULL : "SB_REPLAY", endpoint)) {
        rc = SB_CLI_USAGE;
        goto done;
    }
    sb_replay_msg_t request;
    memset (&request, 0, sizeof request);
    request.type = SB_REPLAY_REQUEST;
    request.replay_id = (uint64_t) zclock_time ();
    sb_replay_set (request.epoch, sizeof request.epoch, opts.epoch);
    request.from_seq = opts.from;
    request.credit = S_WINDOW;
    request.count = opts.count;
    if (s_send (dealer, &request)) {
        fprintf (stderr, "switchboard replay: cannot send the request to %s\n", endpoint);
        goto done;
    }
    uint64_t printed = 0;    //  records printed
    uint64_t ungranted = 0;  //  records taken since credit was last granted
    int64_t timeout_ms = (int64_t) (opts.timeout * 1000.0);
    int64_t deadline = zclock_mono () + timeout_ms;
    bool ended = false;
    while (!sb_cli_interrupted () && !ended) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0) {
            fprintf (stderr, "switchboard replay: no answer from %s for %g s (%llu records)\n",
                     endpoint, opts.timeout, (unsigned long long) printed);
            goto done;
        }
        zmq_pollitem_t item = {zsock_resolve (dealer), 0, ZMQ_POLLIN, 0};
        int ready = zmq_poll (&item, 1, left < S_POLL_MS ? (long) left : S_POLL_MS);
        if (ready < 0 && zmq_errno () != EINTR) {
            fprintf (stderr, "switchboard replay: poll failed: %s\n", zmq_strerror (zmq_errno ()));
            goto done;
        }
        if (ready <= 0)
            continue;
        zframe_t *frame = zframe_recv (dealer);
        if (!frame)
            continue;
        deadline = zclock_mono () + timeout_ms;
        sb_replay_msg_t msg;
        if (sb_replay_decode (zframe_data (frame), zframe_size (frame), &msg)) {
            sb_warn ("replay", "malformed message skipped size=%zu", zframe_size (frame));
            zframe_destroy (&frame);
            continue;
        }
        if (msg.type == SB_REPLAY_START && msg.replay_id == request.replay_id) {
            if (opts.epoch && strcmp (opts.epoch, msg.epoch) != 0)
                fprintf (stderr,
                         "switchboard replay: the ingress's journal has epoch %s, not %s: "
                         "replaying it from seq %llu\n",
                         msg.epoch, opts.epoch, (unsigned long long) msg.from_seq);
            else if (msg.from_seq > opts.from)
                fprintf (stderr,
                         "switchboard replay: seqs %llu to %llu are no longer in the journal "
                         "(removed by retention): replaying from seq %llu\n",
                         (unsigned long long) opts.from, (unsigned long long) msg.from_seq - 1,
                         (unsigned long long) msg.from_seq);
        }
        else if (msg.type == SB_REPLAY_RECORD && msg.replay_id == request.replay_id) {
            s_print (&opts, &msg);
            printed++;
            if (++ungranted >= S_WINDOW / 2) {
                sb_replay_msg_t credit;
                memset (&credit, 0, sizeof credit);
                credit.type = SB_REPLAY_CREDIT;
                credit.replay_id = request.replay_id;
                credit.credit = (uint32_t) ungranted;
                s_send (dealer, &credit);
                ungranted = 0;
            }
        }
        else if (msg.type == SB_REPLAY_END && msg.replay_id == request.replay_id) {
            ended = true;
            fprintf (stderr,
                     "replay end: reason=%s last_seq=%llu committed_seq=%llu epoch=%s "
                     "records=%llu\n",
                     sb_replay_reason_name (msg.reason), (unsigned long long) msg.last_seq,
                     (unsigned long long) msg.committed_seq, msg.epoch,
                     (unsigned long long) printed);
            rc = msg.reason == SB_REPLAY_END_CAUGHT_UP || msg.reason == SB_REPLAY_END_COUNT
                     ? SB_CLI_OK
                     : SB_CLI_FAILED;
        }
        sb_replay_msg_clear (&msg);
        zframe_destroy (&frame);
    }
    if (sb_cli_interrupted () && !ended) {
        sb_replay_msg_t cancel;
        memset (&cancel, 0, sizeof cancel);
        cancel.type = SB_REPLAY_CANCEL;
        cancel.replay_id = request.replay_id;
        s_send (dealer, &cancel);
        rc = SB_CLI_OK;
    }
done:
    fflush (stdout);
    zsock_destroy (&dealer);
    sb_zmq_security_destroy (&security);
    zsys_shutdown ();
    sb_config_destroy (&config);
    return rc;
}
