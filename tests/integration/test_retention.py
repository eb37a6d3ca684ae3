"""Journal retention end to end, with a real ingress and small segments
(SB_JOURNAL_SEGMENT_BYTES=64k) so that a few hundred webhooks make many:

(a) no consumer: the oldest segments go once the journal is over
    SB_JOURNAL_MAX_BYTES, and `switchboard replay --from 1` starts at the
    first seq kept and says so on stderr;
(b) a consumer (a replay client speaking ZMTP here) that acknowledged seq N
    holds every segment with a record above N, whatever the size limit; its
    later acks release more; the hold survives an ingress restart
    (DIR/CONSUMERS); once the consumer has been silent for SB_CONSUMER_TTL
    the segments go;
(c) past SB_JOURNAL_HARD_MAX_BYTES even unacknowledged segments go: the
    records dropped are counted exactly in
    sb_journal_dropped_unacked_events_total and logged at error;
(d) a real dispatcher away while webhooks arrive: the ingress keeps what it
    has not acknowledged, the dispatcher catches up by replay with nothing
    lost, then the journal shrinks;
(e) DIR/CONSUMERS is read back at start (expired and damaged lines skipped);
(f) the settings are listed and bad values refused at start.

Each test prints what it checked.
"""

import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse

import sbtest
from sbtest import Ingress, Postgres, Stack
from test_replay import Zmtp

PG = None
SEGMENT = 64 * 1024
PADDING = 2000  # bytes of form padding per webhook: about 26 records per segment


def retention_env(**extra):
    env = {"SB_JOURNAL_SEGMENT_BYTES": "64k", "SB_JOURNAL_MAX_BYTES": "256k",
           "SB_JOURNAL_HARD_MAX_BYTES": "64m"}
    env.update(extra)
    return env


def post_events(ing, prefix, first, count, url_base=sbtest.PUBLIC_URL):
    """count signed, padded SMS webhooks; each must be acknowledged."""
    for i in range(first, first + count):
        body = urllib.parse.urlencode([
            ("MessageSid", "SM%s%030d" % (prefix, i)), ("AccountSid", sbtest.TWILIO_SID),
            ("From", "+15550001111"), ("To", "+15559990000"), ("Body", "%s-%d" % (prefix, i)),
            ("Padding", "p" * PADDING)])
        status, _, _ = ing.post_twilio("/twilio/messages", body, url_base=url_base)
        assert status == 200, status


def segments(ing):
    """First seqs of the journal's segment files, ascending."""
    return sorted(int(name[:20]) for name in os.listdir(ing.journal)
                  if len(name) == 24 and name.endswith(".sbj"))


def holding(firsts, seq):
    """The first segment kept is the one holding seq."""
    return firsts[0] <= seq and (len(firsts) == 1 or firsts[1] > seq)


def wait_until(predicate, timeout, what, ing=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s%s" % (
        what, ("\n--- ingress log tail:\n" + ing.log_text()[-3000:]) if ing else ""))


def replay(ing, from_seq):
    """`switchboard replay --from SEQ`: (seqs printed, stderr)."""
    out = subprocess.run([sbtest.CLI, "replay", "--from", str(from_seq), ing.replay],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seqs = [int(line.split()[0][4:]) for line in out.stdout.decode().splitlines()]
    return seqs, out.stderr.decode()


# ---------------------------------------------------------------------------
# A durable replay consumer, just enough of the protocol: HELLO, ACK.

def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number, payload):
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def parse(data):
    """{field number: value} of one protobuf message (last value wins)."""
    fields, i = {}, 0
    while i < len(data):
        key, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        value, shift = 0, 0
        if key & 7 == 0:
            while True:
                b = data[i]
                i += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
        elif key & 7 == 2:
            length, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            value = data[i:i + length]
            i += length
        else:
            raise AssertionError("unexpected wire type in %r" % data)
        fields[key >> 3] = value
    return fields


class Consumer:
    """A replay consumer with an id: says HELLO (also as a heartbeat, from a
    thread) and ACKs what it pretends to have committed."""

    def __init__(self, port, consumer_id):
        self.zmtp = Zmtp(port)
        self.consumer_id = consumer_id
        self.lock = threading.Lock()
        self.stop_beat = threading.Event()
        self.thread = None

    def hello(self):
        """(epoch, committed_seq) from the WELCOME."""
        with self.lock:
            self.zmtp.send(field(1, field(1, self.consumer_id)))
            while True:
                _, frame = self.zmtp.recv_frame()
                body = parse(frame)
                if 2 in body:
                    welcome = parse(body[2])
                    return welcome[2].decode(), welcome.get(3, 0)

    def ack(self, epoch, seq):
        with self.lock:
            self.zmtp.send(field(9, field(1, self.consumer_id) + field(2, epoch) + field(3, seq)))

    def _beat(self):
        while not self.stop_beat.wait(0.5):
            self.hello()

    def start_heartbeat(self):
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def close(self):
        self.stop_beat.set()
        if self.thread:
            self.thread.join(5)
        self.zmtp.close()


# ---------------------------------------------------------------------------


def test_trim_without_consumers():
    ing = Ingress(env=retention_env()).start()
    try:
        post_events(ing, "a", 0, 400)
        total = 400
        wait_until(lambda: ing.metrics()["sb_journal_trimmed_segments_total"] > 0
                   and ing.metrics()["sb_journal_bytes"] <= 256 * 1024, 15,
                   "the journal to shrink under SB_JOURNAL_MAX_BYTES", ing)
        metrics = ing.metrics()
        firsts = segments(ing)
        kept = firsts[0]
        assert kept > 1, firsts
        assert metrics["sb_journal_segments"] == len(firsts), (metrics["sb_journal_segments"], firsts)
        assert metrics["sb_journal_dropped_unacked_events_total"] == 0
        assert metrics["sb_journal_retention_held_bytes"] == 0
        size = sum(os.path.getsize(os.path.join(ing.journal, "%020d.sbj" % f)) for f in firsts)
        assert size == metrics["sb_journal_bytes"] and size <= 256 * 1024, (size, metrics["sb_journal_bytes"])
        from_one, err = replay(ing, 1)
        assert from_one == list(range(kept, total + 1)), (from_one[:3], kept)
        assert ("seqs 1 to %d are no longer in the journal" % (kept - 1)) in err, err
        assert ("replaying from seq %d" % kept) in err, err
        assert "reason=caught_up last_seq=%d" % total in err, err
        # from a kept seq: no such note
        seqs, err = replay(ing, kept + 1)
        assert seqs[0] == kept + 1 and "no longer" not in err, err
        assert "journal segments removed by retention" in ing.log_text()
        print("  acknowledged=%d segments_removed=%d first_kept=%d bytes=%d (max %d); "
              "replay --from 1 printed %d..%d and said so"
              % (total, metrics["sb_journal_trimmed_segments_total"], kept, size, 256 * 1024,
                 from_one[0], from_one[-1]))
        ing.stop()
        ing.check_log()
    finally:
        ing.cleanup()


def test_consumer_holds_until_ttl():
    ttl = 8
    ing = Ingress(env=retention_env(SB_CONSUMER_TTL="%ds" % ttl)).start()
    consumer = None
    try:
        consumer = Consumer(ing.replay_port, "probe")
        epoch, committed = consumer.hello()
        assert committed == 0 and len(epoch) == 32, (epoch, committed)
        post_events(ing, "b", 0, 100)
        consumer.ack(epoch, 50)
        consumer.start_heartbeat()
        post_events(ing, "b", 100, 500)
        total = 600
        # Size alone would keep about 256k; the consumer's ack keeps the
        # segment holding seq 51 and all after it.
        wait_until(lambda: holding(segments(ing), 51)
                   and ing.metrics()["sb_journal_retention_held_bytes"] > 0, 15,
                   "the segments before seq 51 to go and the rest to be held", ing)
        time.sleep(2.5)  # another trim: still held
        metrics = ing.metrics()
        firsts = segments(ing)
        assert holding(firsts, 51), firsts
        assert metrics["sb_journal_bytes"] > 3 * 256 * 1024, metrics["sb_journal_bytes"]
        assert metrics['sb_replay_consumer_acked_seq{consumer="probe"}'] == 50
        assert metrics['sb_replay_consumer_lag_events{consumer="probe"}'] == total - 50
        held_50 = metrics["sb_journal_retention_held_bytes"]
        # A later ack releases what it covers.
        consumer.ack(epoch, 300)
        wait_until(lambda: holding(segments(ing), 301), 10, "the ack of 300 to release", ing)
        held_300 = ing.metrics()["sb_journal_retention_held_bytes"]
        assert 0 < held_300 < held_50, (held_300, held_50)
        # The consumer goes quiet; the ingress restarts meanwhile: the
        # hold is remembered (DIR/CONSUMERS) until the TTL has passed.
        consumer.close()
        consumer = None
        quiet_since = time.time()
        ing.stop()
        ing.start()
        assert re.search(r"replay consumers restored path=\S+ consumers=1 ", ing.log_text()), \
            ing.log_text()[-2000:]
        wait_until(lambda: ing.metrics()["sb_journal_retention_held_bytes"] > 0, 6,
                   "a trim after the restart to report the hold", ing)
        assert holding(segments(ing), 301), segments(ing)
        assert time.time() - quiet_since < ttl, "too slow to check the hold within the TTL"
        wait_until(lambda: ing.metrics()["sb_journal_retention_held_bytes"] == 0
                   and ing.metrics()["sb_journal_bytes"] <= 256 * 1024, ttl + 10,
                   "the hold to end after SB_CONSUMER_TTL", ing)
        released_after = time.time() - quiet_since
        assert released_after >= ttl - 1, released_after
        assert "no longer holds journal segments consumer=probe" in ing.log_text()
        kept = segments(ing)[0]
        assert kept > 301, kept
        seqs, err = replay(ing, 301)
        assert seqs == list(range(kept, total + 1)) and "replaying from seq %d" % kept in err, err
        metrics = ing.metrics()
        assert metrics["sb_journal_dropped_unacked_events_total"] == 0
        print("  acknowledged=%d; ack 50 held %d bytes (first kept %d), ack 300 held %d bytes; "
              "kept across a restart; released %.1f s after the consumer went quiet (TTL %d s); "
              "first kept %d" % (total, held_50, firsts[0], held_300, released_after, ttl, kept))
        ing.stop()
        ing.check_log()
    finally:
        if consumer:
            consumer.close()
        ing.cleanup()


def test_hard_cap_drops_and_counts():
    ing = Ingress(env=retention_env(SB_JOURNAL_MAX_BYTES="128k", SB_JOURNAL_HARD_MAX_BYTES="256k",
                                    SB_CONSUMER_TTL="1h")).start()
    consumer = None
    try:
        consumer = Consumer(ing.replay_port, "stuck")
        epoch, _ = consumer.hello()
        post_events(ing, "c", 0, 20)
        consumer.ack(epoch, 10)
        post_events(ing, "c", 20, 380)
        total = 400
        wait_until(lambda: ing.metrics()["sb_journal_dropped_unacked_events_total"] > 0
                   and ing.metrics()["sb_journal_bytes"] <= 256 * 1024, 15,
                   "the hard cap to drop unacknowledged segments", ing)
        time.sleep(2.5)  # settled: no further trim changes the counts
        metrics = ing.metrics()
        firsts = segments(ing)
        kept = firsts[0]
        dropped = metrics["sb_journal_dropped_unacked_events_total"]
        # Everything removed above the ack was counted: seqs 11 .. kept-1.
        assert dropped == kept - 11, (dropped, kept)
        assert metrics["sb_journal_bytes"] <= 256 * 1024
        # Over the ordinary limit, under the hard one: held for the consumer.
        assert metrics["sb_journal_bytes"] > 128 * 1024
        assert metrics["sb_journal_retention_held_bytes"] > 0
        errors = [line for line in ing.log_text().splitlines() if " error ingress " in line]
        assert errors and all("journal over its hard size cap" in line for line in errors), errors
        seqs, err = replay(ing, 11)
        assert seqs == list(range(kept, total + 1)) and "seqs 11 to %d" % (kept - 1) in err, err
        print("  acknowledged=%d consumer acked 10; hard cap 256k: first kept %d, dropped unacknowledged "
              "%d (counted %d), %d error lines, held %d bytes"
              % (total, kept, kept - 11, dropped, len(errors), metrics["sb_journal_retention_held_bytes"]))
        consumer.close()
        consumer = None
        ing.stop()
        ing.check_log(allow_errors=("journal over its hard size cap",))
    finally:
        if consumer:
            consumer.close()
        ing.cleanup()


def test_dispatcher_away_is_held():
    stack = Stack(PG, callbacks=False, ingress_env=retention_env(SB_JOURNAL_MAX_BYTES="128k"),
                  rules="rules: []\n")
    try:
        stack.start()
        stack.dispatcher.stop()
        before = segments(stack.ingress)
        post_events(stack.ingress, "d", 0, 300, url_base=stack.public_url)
        time.sleep(4.5)  # two trims at least
        metrics = stack.ingress.metrics()
        held = metrics["sb_journal_retention_held_bytes"]
        assert held > 0 and metrics["sb_journal_bytes"] > 4 * 128 * 1024, metrics
        assert segments(stack.ingress)[0] <= before[-1], (before, segments(stack.ingress))
        stack.start_dispatcher()
        stored = lambda: int(stack.scalar("SELECT count(*) FROM events WHERE provider_id LIKE 'SMd%'"))
        wait_until(lambda: stored() == 300, 60, "the dispatcher to catch up", stack.ingress)
        dups = stack.scalar("SELECT count(*) FROM (SELECT provider_id FROM events WHERE provider_id "
                            "LIKE 'SMd%' GROUP BY provider_id HAVING count(*) > 1) d")
        assert dups == "0", dups
        wait_until(lambda: stack.ingress.metrics()["sb_journal_retention_held_bytes"] == 0
                   and stack.ingress.metrics()["sb_journal_bytes"] <= 128 * 1024, 15,
                   "the journal to shrink once the dispatcher acknowledged", stack.ingress)
        metrics = stack.ingress.metrics()
        assert metrics["sb_journal_dropped_unacked_events_total"] == 0
        print("  acknowledged=300 while the dispatcher was away: held %d bytes; stored=%d duplicates=0 "
              "lost=0; then trimmed to %d bytes (%d segments removed)"
              % (held, stored(), metrics["sb_journal_bytes"], metrics["sb_journal_trimmed_segments_total"]))
        stack.dispatcher.stop()
        stack.check_logs()
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        stack.close()


def test_consumers_file():
    """DIR/CONSUMERS read at start: fresh entries hold, expired and damaged
    ones are skipped; rewritten at exit."""
    ing = Ingress(env=retention_env(SB_CONSUMER_TTL="1h"))
    try:
        ing.start()
        ing.stop()
        with open(os.path.join(ing.journal, "EPOCH")) as f:
            epoch = f.read().strip()
        now_ms = int(time.time() * 1000)
        lines = [
            "# switchboard replay consumers: id epoch acked_seq last_seen_unix_ms",
            "keep %s 123 %d" % (epoch, now_ms - 60000),             # a minute ago: holds
            "fresh - 0 %d" % (now_ms - 1000),                       # never acked: holds all
            "old %s 5 %d" % (epoch, now_ms - 2 * 3600 * 1000),      # past the TTL: dropped
            "bad id %s 1 %d" % (epoch, now_ms),                     # five fields
            "badepoch xyz 1 %d" % now_ms,
            "badnumber %s 12x %d" % (epoch, now_ms),
            "negative %s -1 %d" % (epoch, now_ms),
            "long " + "x" * 300,
            "cut %s 7" % epoch,
        ]
        with open(os.path.join(ing.journal, "CONSUMERS"), "w") as f:
            f.write("\n".join(lines))  # the last line has no newline: skipped too
        ing.start()
        log = ing.log_text()
        assert re.search(r"replay consumers restored path=\S+ consumers=2 expired=1", log), log[-2000:]
        assert re.search(r"damaged lines skipped in the replay consumers path=\S+ lines=6", log), log[-2000:]
        wait_until(lambda: ing.metrics().get('sb_replay_consumer_acked_seq{consumer="keep"}') == 123, 5,
                   "the restored consumer's gauge", ing)
        metrics = ing.metrics()
        assert 'sb_replay_consumer_acked_seq{consumer="old"}' not in metrics
        assert metrics['sb_replay_consumer_last_seen_seconds{consumer="keep"}'] >= 59
        # "fresh" never acknowledged: it holds everything
        post_events(ing, "e", 0, 300)
        wait_until(lambda: ing.metrics()["sb_journal_retention_held_bytes"] > 0, 6, "the hold", ing)
        assert segments(ing)[0] == 1, segments(ing)
        ing.stop()
        with open(os.path.join(ing.journal, "CONSUMERS")) as f:
            saved = [line.split() for line in f.read().splitlines() if not line.startswith("#")]
        assert sorted(s[0] for s in saved) == ["fresh", "keep"], saved
        assert ["keep", epoch, "123"] == [s for s in saved if s[0] == "keep"][0][:3], saved
        ing.check_log()
        print("  2 consumers restored (1 never acked holds everything), 1 expired, 6 damaged lines skipped; "
              "rewritten at exit")
    finally:
        ing.cleanup()


def test_retention_settings():
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    out = subprocess.run([sbtest.INGRESS, "--help"], capture_output=True, timeout=20, env=env)
    assert out.returncode == 0, out.stderr
    for name in (b"SB_JOURNAL_RETAIN_HOURS", b"SB_JOURNAL_MAX_BYTES", b"SB_JOURNAL_HARD_MAX_BYTES",
                 b"SB_CONSUMER_TTL"):
        assert name in out.stdout, name
    bad = [({"SB_JOURNAL_MAX_BYTES": "2g", "SB_JOURNAL_HARD_MAX_BYTES": "1g"},
            b"SB_JOURNAL_HARD_MAX_BYTES=1g: invalid value: expected at least SB_JOURNAL_MAX_BYTES"),
           ({"SB_CONSUMER_TTL": "soon"}, b"SB_CONSUMER_TTL=soon: invalid value"),
           ({"SB_CONSUMER_TTL": "0"}, b"SB_CONSUMER_TTL=0: invalid value"),
           ({"SB_CONSUMER_TTL": "5w"}, b"SB_CONSUMER_TTL=5w: invalid value"),
           ({"SB_JOURNAL_RETAIN_HOURS": "-1"}, b"SB_JOURNAL_RETAIN_HOURS=-1: invalid value")]
    for extra, message in bad:
        out = subprocess.run([sbtest.INGRESS], capture_output=True, timeout=20, env=dict(env, **extra))
        assert out.returncode == 2 and message in out.stderr, (extra, out.returncode, out.stderr)
    # good values of each form start
    ing = Ingress(env={"SB_CONSUMER_TTL": "90m", "SB_JOURNAL_RETAIN_HOURS": "0",
                       "SB_JOURNAL_MAX_BYTES": "1m", "SB_JOURNAL_HARD_MAX_BYTES": "1m"}).start()
    try:
        ing.stop()
        ing.check_log()
    finally:
        ing.cleanup()
    print("  four settings listed; %d bad values refused at start; 90m, 0 hours, equal caps accepted"
          % len(bad))


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_retention_settings,
            test_consumers_file,
            test_trim_without_consumers,
            test_consumer_holds_until_ttl,
            test_hard_cap_drops_and_counts,
            test_dispatcher_away_is_held,
        ])
    finally:
        PG.close()
