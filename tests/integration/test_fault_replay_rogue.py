"""Rogue peers on the replay socket, with real processes and real ZeroMQ
connections (ZMTP from Python where no key is needed, tests/integration/
replay_peer.c where one is):

(a) a rogue connection's ACK for consumer=dispatcher (seq 2^64-1, then the
    committed seq) while the real dispatcher is stopped (SIGSTOP): refused
    and counted; the segments the dispatcher has not stored stay; after
    SIGCONT every acknowledged webhook is stored once;
(b) the owner's own ACK beyond the committed watermark: refused and
    counted, nothing trimmed; an ACK within it still counts;
(c) 70 bogus consumer ids: the table stays bounded (registrations past it
    refused and counted, at most 8 ids per peer), the live consumer that
    came first keeps its place, and with SB_CONSUMER_TTL=3s the bogus ids
    are evicted so a late consumer gets in;
(d) 64 sessions that never read (credit 0): the registered consumer's
    replay still runs (a stalled session gives way), and the stalled ones
    time out within seconds, after which an anonymous replay runs too;
(e) with CURVE: a second key cannot act for the first key's consumer id;
    the first key, on a new connection, still can; a key's sessions are
    capped.

Each test prints what it counted ("FAULT ...: ...").
"""

import os
import signal
import subprocess
import tempfile
import time

import sbtest
from sbtest import Ingress, Postgres, Stack
from test_replay import Zmtp
from test_retention import Consumer, field, parse, post_events, retention_env, segments, wait_until

PG = None
PEER = os.path.join(sbtest.BUILD, "tests", "sb_replay_peer")
U64_MAX = 2 ** 64 - 1


def peer(ing, *commands, env=None, timeout=60):
    """Run the replay peer (one connection) through commands; its stdout lines."""
    penv = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SB_LOG_LEVEL": "warn"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            penv[k] = os.environ[k]
    penv.update(env or {})
    out = subprocess.run([PEER, ing.replay] + [str(c) for c in commands], env=penv,
                         capture_output=True, timeout=timeout)
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    return out.stdout.decode().splitlines()


def refused(metrics, reason):
    return metrics.get('sb_replay_refused_total{reason="%s"}' % reason, 0)


def acked(ing, consumer):
    return ing.metrics().get('sb_replay_consumer_acked_seq{consumer="%s"}' % consumer)


def request_bytes(replay_id, consumer_id, from_seq, credit):
    body = field(1, replay_id) + field(4, from_seq) + field(5, credit)
    if consumer_id:
        body += field(2, consumer_id)
    return field(3, body)


# ---------------------------------------------------------------------------


def test_rogue_ack_keeps_unstored_segments():
    stack = Stack(PG, callbacks=False, ingress_env=retention_env(SB_JOURNAL_MAX_BYTES="128k"),
                  rules="rules: []\n")
    try:
        stack.start()
        ing = stack.ingress
        wait_until(lambda: acked(ing, "dispatcher") is not None, 10, "the dispatcher's first ack", ing)
        stack.dispatcher.proc.send_signal(signal.SIGSTOP)
        try:
            post_events(ing, "r", 0, 300, url_base=stack.public_url)
            time.sleep(4.5)  # two trims at least
            before = segments(ing)
            assert ing.metrics()["sb_journal_retention_held_bytes"] > 0
            # The rogue: its own connection, the dispatcher's id.
            peer(ing, "hello", "dispatcher", "ack", "dispatcher", "max")
            peer(ing, "hello", "dispatcher", "ack", "dispatcher", "committed+0")
            time.sleep(4.5)
            after = segments(ing)
            metrics = ing.metrics()
        finally:
            stack.dispatcher.proc.send_signal(signal.SIGCONT)
        print("FAULT rogue ack consumer=dispatcher seq=2^64-1 and seq=committed: segments before=%d "
              "after=%d first_before=%d first_after=%d refused_not_owner=%d refused_beyond_committed=%d"
              % (len(before), len(after), before[0], after[0], refused(metrics, "not_owner"),
                 refused(metrics, "beyond_committed")))
        assert after[0] == before[0] and len(after) >= len(before), (before, after)
        assert refused(metrics, "not_owner") >= 3, metrics  # two HELLOs at least and one ACK
        assert metrics["sb_journal_dropped_unacked_events_total"] == 0
        stored = lambda: int(stack.scalar("SELECT count(*) FROM events WHERE provider_id LIKE 'SMr%'"))
        wait_until(lambda: stored() == 300, 60, "the dispatcher to store everything", ing)
        dups = stack.scalar("SELECT count(*) FROM (SELECT provider_id FROM events WHERE provider_id "
                            "LIKE 'SMr%' GROUP BY provider_id HAVING count(*) > 1) d")
        assert dups == "0", dups
        print("  acknowledged=300 stored=%d duplicates=0 lost=0" % stored())
        stack.dispatcher.stop()
        stack.check_logs()
        ing.stop()
        ing.check_log()
    finally:
        stack.close()


def test_owner_ack_beyond_committed():
    ing = Ingress(env=retention_env(SB_CONSUMER_TTL="1h")).start()
    try:
        peer(ing, "hello", "probe")  # registered, never acked: holds everything
        post_events(ing, "o", 0, 200)
        time.sleep(2.5)
        before = segments(ing)
        assert before[0] == 1, before
        # The owner (a new connection: the first one is gone) acks past
        # the watermark.
        lines = peer(ing, "hello", "probe", "ack", "probe", "committed+1000", "ack", "probe", "max",
                     "sleep", "200")
        time.sleep(4.5)
        after = segments(ing)
        metrics = ing.metrics()
        print("FAULT owner ack beyond the committed watermark (%s): segments before=%d after=%d "
              "first_after=%d refused_beyond_committed=%d acked=%s"
              % (", ".join(l for l in lines if l.startswith("ack")), len(before), len(after), after[0],
                 refused(metrics, "beyond_committed"),
                 metrics.get('sb_replay_consumer_acked_seq{consumer="probe"}')))
        assert after[0] == 1, after
        assert refused(metrics, "beyond_committed") == 2, metrics
        assert metrics['sb_replay_consumer_acked_seq{consumer="probe"}'] == 0
        peer(ing, "hello", "probe", "ack", "probe", "150", "sleep", "200")
        wait_until(lambda: acked(ing, "probe") == 150, 5, "an ack within the watermark", ing)
        wait_until(lambda: segments(ing)[0] > 1, 10, "the ack of 150 to release", ing)
        print("  an ack of 150 (committed 200) counts: first segment kept now %d" % segments(ing)[0])
        ing.stop()
        ing.check_log()
    finally:
        ing.cleanup()


def test_bogus_ids_bounded_and_evicted():
    ttl = 3
    ing = Ingress(env={"SB_CONSUMER_TTL": "%ds" % ttl}).start()
    real = None
    rogues = []
    try:
        real = Consumer(ing.replay_port, "dispatcher")
        epoch, _ = real.hello()
        real.start_heartbeat()
        post_events(ing, "b", 0, 20)
        real.ack(epoch, 10)
        # One connection tries 12 ids, nine more 7 each: 75 bogus ids.
        counts = [12] + [7] * 9
        n = 0
        for k, count in enumerate(counts):
            z = Zmtp(ing.replay_port)
            rogues.append(z)
            for _ in range(count):
                z.send(field(1, field(1, "bogus-%d" % n)))
                n += 1
                while 2 not in parse(z.recv_frame()[1]):
                    pass
        real.ack(epoch, 20)
        wait_until(lambda: acked(ing, "dispatcher") == 20, 5, "the real consumer's ack", ing)
        metrics = ing.metrics()
        full = metrics.get("sb_replay_consumers")
        refused_full, refused_peer = refused(metrics, "consumers_full"), refused(metrics, "peer_consumers")
        for z in rogues:
            z.close()
        rogues = []
        # The bogus ids go silent: evicted after the TTL; the real one stays.
        deadline = time.time() + ttl + 10
        while time.time() < deadline and ing.metrics().get("sb_replay_consumers") != 1:
            time.sleep(0.2)
        late = peer(ing, "hello", "late", "ack", "late", "5", "sleep", "200")
        wait_until(lambda: acked(ing, "late") == 5, 5, "a late consumer to get in", ing)
        metrics = ing.metrics()
        print("FAULT %d bogus consumer ids: table=%s refused_consumers_full=%d refused_peer_consumers=%d; "
              "after SB_CONSUMER_TTL=%ds: evicted=%d table=%s, real consumer acked=%d, late consumer acked=%d"
              % (n, full, refused_full, refused_peer, ttl, metrics.get("sb_replay_consumers_evicted_total", 0),
                 metrics.get("sb_replay_consumers"), acked(ing, "dispatcher"), acked(ing, "late")))
        assert full == 64, full
        assert refused_peer == 12 - 8, refused_peer
        assert refused_full >= n - (64 - 1) - (12 - 8), refused_full
        assert metrics["sb_replay_consumers_evicted_total"] == 64 - 1, metrics
        assert metrics["sb_replay_consumers"] == 2, metrics
        assert acked(ing, "dispatcher") == 20 and late[0].startswith("welcome")
        real.close()
        real = None
        ing.stop()
        ing.check_log()
    finally:
        for z in rogues:
            z.close()
        if real:
            real.close()
        ing.cleanup()


def test_sessions_that_never_read():
    ing = Ingress().start()
    rogues = []
    try:
        post_events(ing, "s", 0, 50)
        for k in range(64):
            z = Zmtp(ing.replay_port)
            z.send(request_bytes(k + 1, "", 1, 0))  # credit 0, never granted
            rogues.append(z)
        wait_until(lambda: ing.metrics()["sb_replay_sessions"] == 64, 10, "64 stalled sessions", ing)
        time.sleep(1.5)
        started = time.time()
        # The registered consumer's replay runs at once.
        lines = peer(ing, "hello", "dispatcher", "request", "dispatcher", 1, 100)
        real_end = [l for l in lines if l.startswith("end ")]
        real_s = time.time() - started
        # An anonymous replay waits for the stalled sessions to time out.
        busy = subprocess.run([sbtest.CLI, "replay", "--from", "1", ing.replay], capture_output=True,
                              timeout=30)
        wait_until(lambda: ing.metrics()["sb_replay_sessions"] == 0, 20, "stalled sessions to time out", ing)
        gone_s = time.time() - started
        out = subprocess.run([sbtest.CLI, "replay", "--from", "1", ing.replay], capture_output=True,
                             timeout=30)
        metrics = ing.metrics()
        print("FAULT 64 sessions with no credit: registered consumer %s after %.1f s; anonymous replay "
              "while full exit=%d; stalled sessions gone after %.1f s (timed_out=%d busy=%d); anonymous "
              "replay then exit=%d records=%d"
              % (real_end, real_s, busy.returncode, gone_s,
                 metrics.get("sb_replay_sessions_timed_out_total", 0), metrics["sb_replay_busy_total"],
                 out.returncode, len(out.stdout.splitlines())))
        assert real_end == ["end reason=caught_up records=50 last_seq=50"], lines
        assert metrics["sb_replay_sessions_timed_out_total"] == 64, metrics
        assert gone_s < 20, gone_s
        assert out.returncode == 0 and len(out.stdout.splitlines()) == 50, out.stderr
        for z in rogues:
            z.close()
        rogues = []
        ing.stop()
        ing.check_log()
    finally:
        for z in rogues:
            z.close()
        ing.cleanup()


def keygen(directory, name):
    subprocess.run([sbtest.CLI, "keygen", "--name", name, directory], check=True,
                   capture_output=True, timeout=30)
    return os.path.join(directory, name)


def test_curve_key_owns_consumer():
    keys = tempfile.mkdtemp(prefix="sb-keys-")
    allowed = os.path.join(keys, "allowed")
    os.mkdir(allowed)
    server = keygen(keys, "ingress")
    a, b = keygen(keys, "key-a"), keygen(keys, "key-b")
    for k in (a, b):
        with open(k + ".key") as src, open(os.path.join(allowed, os.path.basename(k) + ".key"), "w") as dst:
            dst.write(src.read())
    ing = Ingress(env={"SB_CURVE_SERVER_SECRET": server + ".key_secret", "SB_CURVE_ALLOWED": allowed})
    as_a = {"SB_CURVE_SERVER_PUBLIC": server + ".key", "SB_CURVE_CLIENT_CERT": a + ".key_secret"}
    as_b = {"SB_CURVE_SERVER_PUBLIC": server + ".key", "SB_CURVE_CLIENT_CERT": b + ".key_secret"}
    try:
        ing.start()
        post_events(ing, "c", 0, 30)
        peer(ing, "hello", "dispatcher", "ack", "dispatcher", "10", "sleep", "200", env=as_a)
        wait_until(lambda: acked(ing, "dispatcher") == 10, 5, "key A's ack", ing)
        # Key B, on its own connection, while A is gone or not.
        peer(ing, "hello", "dispatcher", "ack", "dispatcher", "30", "sleep", "200", env=as_b)
        time.sleep(0.5)
        after_b = acked(ing, "dispatcher")
        # Key A again, on a new connection: still the owner.
        peer(ing, "hello", "dispatcher", "ack", "dispatcher", "12", "sleep", "200", env=as_a)
        wait_until(lambda: acked(ing, "dispatcher") == 12, 5, "key A's second ack", ing)
        # Sessions per key: five at once with no credit, the fifth is busy.
        procs = [subprocess.Popen([PEER, ing.replay, "request", "-", "1", "0"], stdout=subprocess.PIPE,
                                  env=dict(os.environ, **as_a)) for _ in range(5)]
        ends = sorted(p.communicate(timeout=60)[0].decode().strip() for p in procs)
        metrics = ing.metrics()
        print("FAULT curve: key B acked consumer=dispatcher seq=30: acked after=%s refused_not_owner=%d; "
              "key A on a new connection acked 12: acked=%s; 5 sessions of one key: %s refused_peer_sessions=%d"
              % (after_b, refused(metrics, "not_owner"), acked(ing, "dispatcher"), ends,
                 refused(metrics, "peer_sessions")))
        assert after_b == 10, after_b
        assert refused(metrics, "not_owner") >= 2, metrics
        assert refused(metrics, "peer_sessions") == 1, metrics
        assert sum(e.startswith("end reason=busy") for e in ends) == 1, ends
        assert sum(e.startswith("end reason=timeout") for e in ends) == 4, ends
        ing.stop()
        ing.check_log()
    finally:
        ing.cleanup()
        import shutil
        shutil.rmtree(keys, ignore_errors=True)


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_owner_ack_beyond_committed,
            test_bogus_ids_bounded_and_evicted,
            test_sessions_that_never_read,
            test_curve_key_owns_consumer,
            test_rogue_ack_keeps_unstored_segments,
        ])
    finally:
        PG.close()
