/*  sb_replay_peer: a scripted replay consumer for the integration tests.

    One DEALER connection (one peer, a CURVE client when
    SB_CURVE_SERVER_PUBLIC and SB_CURVE_CLIENT_CERT are set, as for
    `switchboard replay`) runs the commands given on the command line, in
    order, and prints one line per answer:

      hello ID                HELLO; waits for the WELCOME:
                              "welcome epoch=E committed=N"
      ack ID SEQ              ACK of the last WELCOME's epoch; SEQ is a
                              number, "max" (2^64-1) or "committed+K"
      request ID FROM CREDIT  REQUEST ("-" as ID: anonymous); reads to the
                              END, granting credit as it goes:
                              "end reason=R records=N last_seq=L"
      sleep MS                wait

    Exit status: 0, 1 when the ingress did not answer within 10 s (30 s during a replay), 2 on bad
    arguments. Used by tests/integration/test_fault_replay_rogue.py.
*/
#include <czmq.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_config.h"
#include "sb_replay.h"
#include "sb_zmq.h"

#define S_WAIT_MS 10000
#define S_REPLAY_WAIT_MS 30000  //  a replay with no credit ends by the ingress's time-out

static int
s_send (zsock_t *dealer, const sb_replay_msg_t *msg)
{
    return sb_replay_send (zsock_resolve (dealer), msg, 0);
}

//  The next message of type want (others are skipped); 0 or -1 on time-out.
static int
s_recv (zsock_t *dealer, sb_replay_type_t want, sb_replay_msg_t *msg)
{
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    while (zclock_mono () < deadline) {
        zmq_pollitem_t item = {zsock_resolve (dealer), 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, (long) (deadline - zclock_mono ())) <= 0)
            continue;
        zframe_t *frame = zframe_recv (dealer);
        if (!frame)
            return -1;
        int rc = sb_replay_decode (zframe_data (frame), zframe_size (frame), msg);
        zframe_destroy (&frame);
        if (rc == 0 && msg->type == want)
            return 0;
        if (rc == 0)
            sb_replay_msg_clear (msg);
    }
    return -1;
}

int
main (int argc, char **argv)
{
    if (argc < 3) {
        fprintf (stderr, "usage: sb_replay_peer ENDPOINT COMMAND...\n");
        return 2;
    }
    char err[512];
    sb_config_t *config = sb_config_load (SB_SVC_CLI, err, sizeof err);
    sb_zmq_security_t *security = config ? sb_zmq_security_new (config, err, sizeof err) : NULL;
    if (!security) {
        fprintf (stderr, "sb_replay_peer: %s\n", err);
        sb_config_destroy (&config);
        return 2;
    }
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    zsock_set_linger (dealer, 1000);
    zsock_set_maxmsgsize (dealer, (int64_t) SB_REPLAY_MAX_MESSAGE);
    int rc = 0;
    if (sb_zmq_connect (security, dealer, "replay", NULL, argv[1])) {
        rc = 2;
        goto done;
    }
    char epoch[SB_REPLAY_EPOCH_MAX + 1] = "";
    uint64_t committed = 0;
    for (int i = 2; i < argc && rc == 0; i++) {
        const char *cmd = argv[i];
        sb_replay_msg_t msg;
        memset (&msg, 0, sizeof msg);
        if (streq (cmd, "hello") && i + 1 < argc) {
            msg.type = SB_REPLAY_HELLO;
            sb_replay_set (msg.consumer_id, sizeof msg.consumer_id, argv[++i]);
            sb_replay_msg_t answer;
            if (s_send (dealer, &msg) || s_recv (dealer, SB_REPLAY_WELCOME, &answer)) {
                fprintf (stderr, "sb_replay_peer: no WELCOME\n");
                rc = 1;
                break;
            }
            sb_replay_set (epoch, sizeof epoch, answer.epoch);
            committed = answer.committed_seq;
            printf ("welcome epoch=%s committed=%" PRIu64 "\n", epoch, committed);
            sb_replay_msg_clear (&answer);
        }
        else if (streq (cmd, "ack") && i + 2 < argc && *epoch) {
            msg.type = SB_REPLAY_ACK;
            sb_replay_set (msg.consumer_id, sizeof msg.consumer_id, argv[++i]);
            sb_replay_set (msg.epoch, sizeof msg.epoch, epoch);
            const char *seq = argv[++i];
            if (streq (seq, "max"))
                msg.committed_seq = UINT64_MAX;
            else if (strncmp (seq, "committed+", 10) == 0)
                msg.committed_seq = committed + strtoull (seq + 10, NULL, 10);
            else
                msg.committed_seq = strtoull (seq, NULL, 10);
            if (s_send (dealer, &msg))
                rc = 1;
            printf ("ack consumer=%s seq=%" PRIu64 "\n", msg.consumer_id, msg.committed_seq);
        }
        else if (streq (cmd, "request") && i + 3 < argc) {
            msg.type = SB_REPLAY_REQUEST;
            msg.replay_id = (uint64_t) i + 1;
            const char *id = argv[++i];
            sb_replay_set (msg.consumer_id, sizeof msg.consumer_id, streq (id, "-") ? "" : id);
            msg.from_seq = strtoull (argv[++i], NULL, 10);
            msg.credit = (uint32_t) strtoul (argv[++i], NULL, 10);
            if (s_send (dealer, &msg)) {
                rc = 1;
                break;
            }
            uint64_t records = 0, last = 0;
            while (true) {
                zmq_pollitem_t item = {zsock_resolve (dealer), 0, ZMQ_POLLIN, 0};
                if (zmq_poll (&item, 1, S_REPLAY_WAIT_MS) <= 0) {
                    fprintf (stderr, "sb_replay_peer: the replay went silent\n");
                    rc = 1;
                    break;
                }
                zframe_t *frame = zframe_recv (dealer);
                sb_replay_msg_t answer;
                if (!frame
                    || sb_replay_decode (zframe_data (frame), zframe_size (frame), &answer)) {
                    zframe_destroy (&frame);
                    continue;
                }
                zframe_destroy (&frame);
                bool end = answer.type == SB_REPLAY_END && answer.replay_id == msg.replay_id;
                if (answer.type == SB_REPLAY_RECORD && answer.replay_id == msg.replay_id) {
                    records++;
                    last = answer.seq;
                    sb_replay_msg_t credit = {
                        .type = SB_REPLAY_CREDIT, .replay_id = msg.replay_id, .credit = 1};
                    s_send (dealer, &credit);
                }
                if (end)
                    printf ("end reason=%s records=%" PRIu64 " last_seq=%" PRIu64 "\n",
                            sb_replay_reason_name (answer.reason), records, last);
                sb_replay_msg_clear (&answer);
                if (end)
                    break;
            }
        }
        else if (streq (cmd, "sleep") && i + 1 < argc)
            zclock_sleep (atoi (argv[++i]));
        else {
            fprintf (stderr, "sb_replay_peer: bad command at '%s'\n", cmd);
            rc = 2;
        }
        fflush (stdout);
    }
done:
    zsock_destroy (&dealer);
    sb_zmq_security_destroy (&security);
    sb_config_destroy (&config);
    return rc;
}
