"""Journal replay end to end, with real processes and exact counts:

(a) `switchboard replay --from 1` prints exactly the journal's seqs, in order,
    and the replay server drops hostile bytes and keeps answering;
(b) a dispatcher started after 300 webhooks were acknowledged catches up by
    replay: each stored once, each answered once;
(c) kill -9 of the dispatcher under load, then a restart: every acknowledged
    webhook stored exactly once; replies sent twice only for sends that were
    in flight at the kill (printed);
(d) a gap: the dispatcher is stopped (SIGSTOP) under load with a tiny PUB
    high-water mark on the ingress, so the PUB drops events; after SIGCONT it
    sees the gap and catches up by replay: exact counts.

Each test prints what it checked: acknowledged, stored, replies sent,
duplicates, lost.
"""

import collections
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse

import sbtest
from sbtest import Ingress, Postgres, Stack

PG = None


class Load:
    """Signed Twilio SMS webhooks posted from threads over keep-alive
    connections; records the MessageSid of every 200."""

    def __init__(self, ingress, public_url, prefix, count, threads=4, padding=0):
        self.ingress = ingress
        self.public_url = public_url
        self.prefix = prefix
        self.count = count
        self.threads = threads
        self.padding = "p" * padding
        self.lock = threading.Lock()
        self.acked = []          # MessageSids answered 200
        self.not_acked = 0       # answered otherwise, or no answer
        self.workers = []

    def sid(self, i):
        return "SM%s%030d" % (self.prefix, i)

    def text(self, i):
        return "%s-%d" % (self.prefix, i)

    def body(self, i):
        params = [("MessageSid", self.sid(i)), ("AccountSid", sbtest.TWILIO_SID),
                  ("From", "+1555%07d" % (i % 50)), ("To", "+15559990000"),
                  ("Body", self.text(i)), ("NumMedia", "0")]
        if self.padding:
            params.append(("Padding", self.padding))
        body = urllib.parse.urlencode(params)
        signature = sbtest.twilio_signature(sbtest.TWILIO_TOKEN, self.public_url + "/twilio/messages",
                                            sbtest.form_params(body.encode()))
        return body, signature

    def _run(self, k):
        conn = None
        for i in range(k, self.count, self.threads):
            body, signature = self.body(i)
            status = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.ingress.port, timeout=30)
                conn.request("POST", "/twilio/messages", body=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded",
                                      "X-Twilio-Signature": signature})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                if status == 200:
                    self.acked.append(self.sid(i))
                else:
                    self.not_acked += 1
        if conn is not None:
            conn.close()

    def start(self):
        for k in range(self.threads):
            t = threading.Thread(target=self._run, args=(k,), daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def done(self):
        with self.lock:
            return len(self.acked) + self.not_acked

    def wait_done(self, at_least, timeout=120):
        deadline = time.time() + timeout
        while self.done() < at_least and time.time() < deadline:
            time.sleep(0.01)
        assert self.done() >= at_least, "load stalled at %d" % self.done()

    def join(self, timeout=300):
        for t in self.workers:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.workers), "load did not finish"
        return list(self.acked)


def stored_counts(stack, prefix):
    rows = stack.query("SELECT provider_id, count(*) FROM events WHERE provider_id LIKE 'SM%s%%' "
                       "GROUP BY provider_id" % prefix)
    return {sid: int(n) for sid, n in rows}


def reply_counts(stack, prefix):
    """Replies the sandbox accepted, per text answered."""
    marker = "We received: "
    counts = collections.Counter()
    for r in stack.sandbox_sends():
        if r.get("status") not in (200, 201) or "params" not in r:
            continue
        body = dict(r["params"]).get("Body", "")
        if marker + prefix + "-" in body:
            counts[body.split(marker, 1)[1]] += 1
    return counts


def wait_until(predicate, timeout, what, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s%s" % (what, ("\n--- log tail:\n" + log()[-4000:]) if log else ""))


def dispatcher_metrics(stack):
    conn = http.client.HTTPConnection("127.0.0.1", stack.dispatcher_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def check_stored_once(stack, load, acked, reply_dups_allowed=0):
    """Wait for every acknowledged webhook to be stored and answered, then
    check the counts exactly. Returns (stored, replies, duplicates, lost,
    reply duplicates)."""
    prefix = load.prefix
    want = set(acked)
    wait_until(lambda: want <= set(stored_counts(stack, prefix)), 180, "all acknowledged stored",
               stack.dispatcher.log_text)
    wait_until(lambda: stack.scalar("SELECT count(*) FROM outbox WHERE state NOT IN ('sent', 'failed', 'dead', 'not_sent') "
                                    "AND body LIKE '%%We received: %s-%%'" % prefix) == "0"
               and len(reply_counts(stack, prefix)) >= len(want), 180, "all replies sent",
               stack.dispatcher.log_text)
    stored = stored_counts(stack, prefix)
    replies = reply_counts(stack, prefix)
    lost = [s for s in want if s not in stored]
    duplicates = sum(n - 1 for n in stored.values())
    texts = {load.text(int(s[2 + len(prefix):])) for s in want}
    unanswered = [t for t in texts if replies.get(t, 0) == 0]
    reply_dups = sum(n - 1 for t, n in replies.items() if n > 1)
    extra = [s for s in stored if s not in want]  # stored though not acknowledged (allowed: no answer seen)
    assert not lost, "lost %d acknowledged webhooks, e.g. %s" % (len(lost), lost[:5])
    assert duplicates == 0, "%d duplicate rows" % duplicates
    assert not unanswered, "%d messages never answered, e.g. %s" % (len(unanswered), unanswered[:5])
    assert reply_dups <= reply_dups_allowed, "%d replies sent twice (allowed %d)" % (reply_dups, reply_dups_allowed)
    assert stack.scalar("SELECT count(*) FROM outbox WHERE state IN ('failed', 'dead')") == "0"
    return len(stored), sum(replies.values()), duplicates, len(lost), reply_dups, len(extra)


class Zmtp:
    """A minimal ZMTP 3.0 DEALER (NULL mechanism) in the standard library,
    to send the replay server bytes no well-behaved client would."""

    def __init__(self, port):
        import socket
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
        self.sock.sendall(greeting)
        self._read(64)
        props = b"\x0bSocket-Type" + (6).to_bytes(4, "big") + b"DEALER"
        ready = b"\x05READY" + props
        self.sock.sendall(b"\x04" + bytes([len(ready)]) + ready)
        self.recv_frame()  # the server's READY

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def send(self, *frames):
        for i, frame in enumerate(frames):
            more = 1 if i < len(frames) - 1 else 0
            if len(frame) < 256:
                self.sock.sendall(bytes([more]) + bytes([len(frame)]) + frame)
            else:
                self.sock.sendall(bytes([more | 2]) + len(frame).to_bytes(8, "big") + frame)

    def recv_frame(self):
        flags = self._read(1)[0]
        size = int.from_bytes(self._read(8), "big") if flags & 2 else self._read(1)[0]
        return flags, self._read(size)

    def close(self):
        self.sock.close()


def pb_len(field, payload):
    """A protobuf length-delimited field (payloads under 128 bytes)."""
    return bytes([field << 3 | 2, len(payload)]) + payload


HELLO = pb_len(1, pb_len(1, b"prober"))


# ---------------------------------------------------------------------------


def test_replay_server_survives_hostile_bytes():
    ing = Ingress().start()
    try:
        z = Zmtp(ing.replay_port)
        garbage = [b"", b"\x00", b"\xff" * 100, pb_len(9, pb_len(1, b"bad id")),  # ack with a bad id
                   pb_len(3, b"\x20\x00"),                                       # request from seq 0
                   pb_len(2, pb_len(1, b"x") + pb_len(2, b"ab")),                  # a welcome, to the server
                   pb_len(6, b"\x08\x05\x10\x01"),                                 # credit for no replay
                   bytes(range(256)) * 10]
        for g in garbage:
            z.send(g)
        z.send(HELLO, HELLO)  # two frames: not a replay message
        z.send(HELLO)
        # The server answers what deserves it: END UNKNOWN for the credit,
        # then WELCOME for the valid HELLO.
        answers = []
        while True:
            _, frame = z.recv_frame()
            answers.append(frame)
            if frame[:1] == b"\x12":
                break
        assert answers[-1][:1] == b"\x12" and b"test-ingress" in answers[-1], answers
        assert [a[:1] for a in answers[:-1]] == [b"\x42"], answers  # one END (field 8)
        z.close()
        # Larger than the socket's cap: the connection is dropped, the
        # server lives on.
        z = Zmtp(ing.replay_port)
        z.send(b"\x0a" * 5000)
        try:
            z.recv_frame()
            raise AssertionError("an oversized message was answered")
        except (ConnectionError, OSError):
            pass
        z.close()
        z = Zmtp(ing.replay_port)
        z.send(HELLO)
        assert z.recv_frame()[1][:1] == b"\x12"
        z.close()
        bad = ing.metrics()["sb_replay_bad_messages_total"]
        assert bad >= len(garbage), bad
        print("  %d hostile messages dropped, the server still answers" % bad)
        ing.stop()
        ing.check_log()
    finally:
        ing.cleanup()


def test_cli_replay_prints_journal_in_order():
    ing = Ingress().start()
    try:
        load = Load(ing, sbtest.PUBLIC_URL, "a", 50, threads=1)
        load.start()
        acked = load.join()
        assert len(acked) == 50, len(acked)
        out = subprocess.run([sbtest.CLI, "replay", "--from", "1", ing.replay], capture_output=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.decode().splitlines()
        seqs = [int(line.split()[0][4:]) for line in lines]
        assert seqs == list(range(1, 51)), seqs
        assert all(" twilio.sms.message " in line for line in lines), lines[:3]
        assert 'text="a-0"' in lines[0] and 'text="a-49"' in lines[49], (lines[0], lines[49])
        end = out.stderr.decode()
        assert "reason=caught_up last_seq=50 committed_seq=50" in end, end
        # JSON, a window in the middle, --count
        out = subprocess.run([sbtest.CLI, "replay", "--json", "--from", "20", "--count", "5", ing.replay],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        events = [json.loads(line) for line in out.stdout.decode().splitlines()]
        assert [int(e["seq"]) for e in events] == [20, 21, 22, 23, 24], events
        assert events[0]["topic"] == "sb.v1.twilio.sms.message" and events[0]["text"] == "a-19"
        assert "reason=count last_seq=24" in out.stderr.decode(), out.stderr
        # past the end: nothing, caught up
        out = subprocess.run([sbtest.CLI, "replay", "--from", "51", ing.replay], capture_output=True, timeout=30)
        assert out.returncode == 0 and out.stdout == b"", (out.stdout, out.stderr)
        # another epoch: the current journal from seq 1, said on stderr
        out = subprocess.run([sbtest.CLI, "replay", "--from", "40", "--epoch", "0" * 32, ing.replay],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.decode().splitlines()) == 50, out.stdout
        assert "not " + "0" * 32 in out.stderr.decode(), out.stderr
        # nobody there: a clear failure
        out = subprocess.run([sbtest.CLI, "replay", "--timeout", "0.5", "tcp://127.0.0.1:%d" % sbtest.free_port()],
                             capture_output=True, timeout=30)
        assert out.returncode == 1 and b"no answer" in out.stderr, out.stderr
        metrics = ing.metrics()
        assert metrics["sb_replay_requests_total"] == 4, metrics.get("sb_replay_requests_total")
        assert metrics["sb_replay_records_total"] == 50 + 5 + 50, metrics.get("sb_replay_records_total")
        print("  acknowledged=50 replayed seqs 1..50 in order; json window 20..24; epoch change from 1")
        ing.stop()
        ing.check_log()
    finally:
        ing.cleanup()


def test_dispatcher_started_late_catches_up():
    stack = Stack(PG, callbacks=False)
    try:
        stack.sandbox.start()
        sbtest.wait_http(stack.sandbox_port, proc=stack.sandbox)
        stack.ingress.start()
        load = Load(stack.ingress, stack.public_url, "b", 300, threads=4).start()
        acked = load.join()
        assert len(acked) == 300, "only %d of 300 acknowledged" % len(acked)
        stack.start_dispatcher()
        stored, replies, dups, lost, reply_dups, extra = check_stored_once(stack, load, acked)
        assert stored == 300 and replies == 300 and reply_dups == 0, (stored, replies, reply_dups)
        metrics = dispatcher_metrics(stack)
        assert metrics["sb_ingest_replayed_records_total"] >= 300, metrics["sb_ingest_replayed_records_total"]
        ingress_metrics = stack.ingress.metrics()
        wait_until(lambda: stack.ingress.metrics().get('sb_replay_consumer_lag_events{consumer="dispatcher"}') == 0,
                   10, "the dispatcher's lag to reach 0")
        print("  acknowledged=300 stored=%d replies=%d duplicates=%d lost=%d replies_twice=%d replayed=%d "
              "consumer_acked=%d" % (stored, replies, dups, lost, reply_dups,
                                     metrics["sb_ingest_replayed_records_total"],
                                     ingress_metrics.get('sb_replay_consumer_acked_seq{consumer="dispatcher"}', -1)))
        stack.dispatcher.stop()
        stack.check_logs()
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        stack.close()


def test_kill9_dispatcher_under_load():
    stack = Stack(PG, callbacks=False).start()
    try:
        load = Load(stack.ingress, stack.public_url, "c", 2500, threads=6).start()
        load.wait_done(600)
        stack.dispatcher.proc.kill()
        stack.dispatcher.proc.wait()
        killed_at = load.done()
        in_flight = int(stack.scalar("SELECT count(*) FROM outbox WHERE state = 'sending'"))
        time.sleep(2.5)  # load goes on while the dispatcher is away: the ingress shows its lag
        metrics = stack.ingress.metrics()
        lag_events = metrics['sb_replay_consumer_lag_events{consumer="dispatcher"}']
        lag_seconds = metrics['sb_replay_consumer_lag_seconds{consumer="dispatcher"}']
        assert lag_events > 0 and lag_seconds >= 1, (lag_events, lag_seconds)
        stack.start_dispatcher()
        acked = load.join()
        assert len(acked) == 2500, "only %d of 2500 acknowledged" % len(acked)
        stored, replies, dups, lost, reply_dups, extra = check_stored_once(stack, load, acked,
                                                                           reply_dups_allowed=in_flight)
        print("  acknowledged=%d stored=%d replies=%d duplicates=%d lost=%d replies_twice=%d "
              "(sends in flight at the kill: %d; killed after %d requests; lag while away: %d events, %d s)"
              % (len(acked), stored, replies, dups, lost, reply_dups, in_flight, killed_at,
                 lag_events, lag_seconds))
        stack.dispatcher.stop()
        stack.check_logs(allow=("PostgreSQL",))
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        stack.close()


def test_gap_repaired_by_replay():
    # A tiny PUB queue and big events, so a stopped dispatcher makes the
    # PUB drop; a small SUB queue too.
    stack = Stack(PG, callbacks=False, ingress_env={"SB_PUB_HWM": "10"},
                  dispatcher_env={"SB_QUEUE_MAX": "1000"}).start()
    try:
        total = 0
        acked = []
        gaps = 0
        for attempt in range(3):
            prefix = "d%d" % attempt
            load = Load(stack.ingress, stack.public_url, prefix, 3000, threads=6, padding=16000)
            load.start()
            load.wait_done(200)
            stack.dispatcher.proc.send_signal(signal.SIGSTOP)
            paused_at = load.done()
            load.wait_done(paused_at + 1500 + 500 * attempt)
            time.sleep(1.0 + attempt)
            stack.dispatcher.proc.send_signal(signal.SIGCONT)
            part = load.join()
            assert len(part) == 3000, "only %d of 3000 acknowledged" % len(part)
            stored, replies, dups, lost, reply_dups, extra = check_stored_once(stack, load, part)
            total += len(part)
            acked += part
            metrics = dispatcher_metrics(stack)
            gaps = int(metrics["sb_ingest_gaps_total"])
            print("  round %d: acknowledged=%d stored=%d replies=%d duplicates=%d lost=%d replies_twice=%d "
                  "gaps=%d replayed=%d overlap_dropped=%d"
                  % (attempt, len(part), stored, replies, dups, lost, reply_dups, gaps,
                     metrics["sb_ingest_replayed_records_total"], metrics["sb_ingest_overlap_dropped_total"]))
            if gaps > 0:
                break
        assert gaps > 0, "the PUB never dropped: no gap to repair"
        stack.dispatcher.stop()
        stack.check_logs()
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        stack.close()


def test_replay_settings():
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}
    out = subprocess.run([sbtest.DISPATCHER, "--help"], capture_output=True, timeout=20, env=env)
    assert out.returncode == 0 and b"SB_INGRESS_REPLAY" in out.stdout, out.stdout[-500:]
    out = subprocess.run([sbtest.INGRESS, "--help"], capture_output=True, timeout=20, env=env)
    assert out.returncode == 0 and b"SB_REPLAY" in out.stdout and b"SB_PUB_HWM" in out.stdout
    # one replay endpoint per PUB endpoint
    bad = dict(env, SB_INGRESS_PUB="tcp://127.0.0.1:1,tcp://127.0.0.1:2", SB_INGRESS_REPLAY="tcp://127.0.0.1:3")
    out = subprocess.run([sbtest.DISPATCHER], capture_output=True, timeout=20, env=bad)
    assert out.returncode == 2 and b"SB_INGRESS_REPLAY" in out.stderr and b"expected 2" in out.stderr, out.stderr
    out = subprocess.run([sbtest.DISPATCHER], capture_output=True, timeout=20,
                         env=dict(env, SB_INGRESS_REPLAY="localhost:5557"))
    assert out.returncode == 2 and b"SB_INGRESS_REPLAY" in out.stderr, out.stderr
    out = subprocess.run([sbtest.INGRESS], capture_output=True, timeout=20, env=dict(env, SB_PUB_HWM="0"))
    assert out.returncode == 2 and b"SB_PUB_HWM" in out.stderr, out.stderr
    # the replay port taken: the ingress does not start
    busy = Ingress()
    taken = Ingress(env={"SB_PUB": "tcp://127.0.0.1:%d" % sbtest.free_port()}, replay_port=busy.replay_port)
    try:
        busy.start()
        taken.start(wait=False)
        assert taken.proc.wait(20) != 0
        assert "cannot bind replay endpoint" in taken.log_text(), taken.log_text()[-2000:]
    finally:
        busy.cleanup()
        taken.cleanup()
    print("  settings listed, mismatched and bad values refused, a taken replay port refused")


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_cli_replay_prints_journal_in_order,
            test_replay_server_survives_hostile_bytes,
            test_replay_settings,
            test_dispatcher_started_late_catches_up,
            test_kill9_dispatcher_under_load,
            test_gap_repaired_by_replay,
        ])
    finally:
        PG.close()
