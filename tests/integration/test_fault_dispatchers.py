"""Several dispatchers on one PostgreSQL (issue 15): kill -9 one of three,
stop one past its lease and wake it, start a new one mid-load.

Each test runs three (or two, then three) dispatchers against one database,
one ingress and the provider sandbox, each with its own SB_DISPATCHER_ID,
SB_DISPATCHER_LISTEN and SB_DISPATCHER_PUB and nothing else to configure,
with SB_DISPATCHER_FAILOVER_MS 3000. The load: every contact sends three
SMS in sequence (the next once the last was acknowledged), and the echo
rule answers each; a share of the sends are slow at the sandbox, so some
are in flight. In the end, for every test:
- PostgreSQL holds exactly one events row per acknowledged webhook;
- the sandbox received a successful reply for every message;
- each contact's replies reached the sandbox in the order of its messages
  (first arrival of each);
- a reply went out twice only for rows the failed dispatcher had "sending"
  at the fault (printed), never more than its SB_SEND_CONCURRENCY.
And, per test:
- kill -9: the dead dispatcher's partitions were held by the others within
  the failover time (printed: how long it took);
- SIGSTOP past the lease, then SIGCONT: stopped at the worst point, inside
  its lease tick with its partition rows locked, and one of its "sending"
  rows held locked by another session until the take-over, its partitions
  were still held by the others within the failover time; the stale
  holder's results for rows it lost were fenced
  (sb_send_results_fenced_total, printed), at most its in-flight sends
  went out twice, and it holds partitions again later.
  Its write transaction, if it was stopped inside one, held the others'
  inserts of the same events until PostgreSQL ended its session
  (idle_in_transaction_session_timeout): their retries are allowed in the
  logs;
- a third dispatcher started mid-load takes its share and nothing is
  resent;
- with SB_STORE_SPLIT=1 storing is split: each dispatcher stores the events of its partitions
  only (the others count them skipped); while one is stopped (SIGSTOP) the
  events of its partitions wait in the ingress's journal, stored by
  nobody; killed (-9), its partitions' new holders store them: from the
  skipped events they kept, or (one restarted meanwhile, that kept none)
  by a replay from the dead one's cursor; every webhook stored once,
  every message answered. After a kill -9 under load, the survivors store
  what the dead one had not from what they kept, without a replay.
"""

import os
import signal
import threading
import time
import urllib.parse

import sbload
import sbtest
from sbtest import Postgres, Process, Stack

PG = None
FAILOVER_MS = 3000
CONCURRENCY = 8


def _sms(tag, contact, k, public_url):
    """Message k (0, 1, 2) of contact number `contact`: a Webhook."""
    sid = "SM%s%05d%d" % (tag, contact, k)
    text = "%s-%d-%d" % (tag, contact, k)
    params = [("MessageSid", sid), ("SmsMessageSid", sid), ("AccountSid", sbtest.TWILIO_SID),
              ("From", "+1555%07d" % (2000000 + contact)), ("To", sbload.OUR_NUMBER), ("Body", text),
              ("NumMedia", "0"), ("NumSegments", "1"), ("ApiVersion", "2010-04-01")]
    body, headers = sbload._twilio(public_url, "/twilio/messages", params)
    return sbload.Webhook(contact * 3 + k, "twilio-sms", "/twilio/messages", body, headers, sid, text)


class Conversations:
    """Contacts writing three messages each, in sequence, from a few threads,
    to the stack's ingress or to `port` (over HTTPS with an ssl `context`),
    `pause` seconds between a contact's messages."""

    def __init__(self, stack, tag, contacts, threads=6, port=None, context=None, pause=0.01):
        self.stack = stack
        self.pause = pause
        self.port = port or stack.ingress.port
        self.context = context
        self.hooks = [_sms(tag, c, k, stack.public_url) for c in range(contacts) for k in range(3)]
        self.contacts = contacts
        self.threads = threads
        self.lock = threading.Lock()
        self.next = 0
        self.acked = 0
        self.workers = []

    def _run(self):
        while True:
            with self.lock:
                c = self.next
                self.next += 1
            if c >= self.contacts:
                return
            for k in range(3):
                sbload.post_until_acked(self.port, [self.hooks[c * 3 + k]], context=self.context)
                with self.lock:
                    self.acked += 1
                time.sleep(self.pause)

    def start(self):
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def wait_acked(self, n, timeout=300):
        sbload.wait_until(lambda: self.acked >= n, timeout, "%d webhooks acknowledged" % n)

    def join(self):
        for t in self.workers:
            t.join(600)
        assert self.acked == len(self.hooks), (self.acked, len(self.hooks))


class Fleet:
    """The stack's dispatcher (d1) and more, each with its own id, ports."""

    def __init__(self, stack):
        self.stack = stack
        self.procs = {"d1": stack.dispatcher}
        self.ports = {"d1": stack.dispatcher_port}
        self.pubs = {"d1": stack.dispatcher_pub}

    def add(self, name, options=None):
        """Start dispatcher `name`; `options`: PostgreSQL settings of its
        DATABASE_URL, as a user would give them."""
        env = dict(self.stack.dispatcher.env)
        port = sbtest.free_port()
        self.pubs[name] = "tcp://127.0.0.1:%d" % sbtest.free_port()
        # its sessions carry its name (pg_stat_activity.application_name)
        query = [("application_name", name)] + ([("options", options)] if options else [])
        url = env["DATABASE_URL"]
        env.update({"SB_DISPATCHER_ID": name, "SB_DISPATCHER_LISTEN": "127.0.0.1:%d" % port,
                    "SB_DISPATCHER_PUB": self.pubs[name],
                    "DATABASE_URL": url + ("&" if "?" in url else "?") + urllib.parse.urlencode(
                        query, quote_via=urllib.parse.quote)})
        proc = Process("dispatcher-" + name, [sbtest.DISPATCHER], env, self.stack.tmp).start()
        sbtest.wait_http(port, "/readyz", proc=proc)
        self.procs[name] = proc
        self.ports[name] = port
        return proc

    def metric(self, name, key):
        return sbload.metrics(self.ports[name]).get(key, 0)

    def held(self, name):
        return int(self.stack.scalar("SELECT count(*) FROM dispatcher_partitions WHERE owner = '%s'"
                                     " AND lease_until > now ()" % name))

    def wait_spread(self, names, timeout=30):
        def spread():
            counts = [self.held(n) for n in names]
            return sum(counts) == 256 and min(counts) >= 256 // len(names)
        sbload.wait_until(spread, timeout, "partitions spread over %s" % names)

    @staticmethod
    def sending_sql(name, columns):
        """A query of `columns` of the outbox rows (o) `name` has "sending"."""
        return ("SELECT %s FROM outbox o JOIN dispatchers d"
                " ON d.instance = split_part (o.claim_token, '.', 1)"
                " WHERE o.state = 'sending' AND d.id = '%s'" % (columns, name))

    def sending_of(self, name):
        """Texts answered by rows `name` has "sending" now."""
        rows = self.stack.query(self.sending_sql(name, "o.body"))
        return {r[0].split(sbload.REPLY_MARKER, 1)[1] for r in rows if sbload.REPLY_MARKER in r[0]}

    def log_text(self):
        return "\n".join(p.log_text()[-1500:] for p in self.procs.values())

    def stop_all(self, allow=()):
        for name, proc in self.procs.items():
            if proc.proc.poll() is None:
                proc.stop()
        bad = []
        for proc in self.procs.values():
            for line in proc.log_text().splitlines():
                if (" error " in line and not any(a in line for a in allow)) or "AddressSanitizer" in line \
                        or "runtime error:" in line or "LeakSanitizer" in line:
                    bad.append(proc.name + ": " + line)
        assert not bad, "unexpected errors:\n" + "\n".join(bad)


def _order_violations(stack, tag):
    """Contacts whose replies (first arrival of each) reached the sandbox
    out of the order of their messages."""
    first = {}
    for pos, r in enumerate(stack.sandbox_sends()):
        text = sbload.reply_text(r)
        if text and text.startswith(tag + "-") and r.get("status") in (200, 201):
            first.setdefault(text, pos)
    bad = []
    contacts = {t.rsplit("-", 1)[0] for t in first}
    for c in contacts:
        positions = [first.get("%s-%d" % (c, k)) for k in range(3)]
        if None in positions or positions != sorted(positions):
            bad.append((c, positions))
    return bad


def _settle_and_check(stack, fleet, tag, conv, twice_allowed_texts, extra):
    acked = conv.hooks
    waited = sbload.settle(stack, tag, conv.hooks, [w.key for w in acked])
    counts = sbload.Counts(stack, tag, conv.hooks, acked)
    order = _order_violations(stack, tag)
    sbload.report(tag, counts.line("%s settled_after=%.1fs+%.1fs order_violations=%d"
                                   % (extra, waited[0], waited[1], len(order))))
    counts.check(replies_twice_allowed=len(twice_allowed_texts))
    assert set(counts.twice_texts) <= set(twice_allowed_texts), \
        "replies sent twice that were not in flight at the fault: %s" % sorted(
            set(counts.twice_texts) - set(twice_allowed_texts))
    assert not order, "replies out of order, e.g. %s" % order[:5]
    assert counts.stored == len(conv.hooks)
    assert counts.replies - counts.replies_twice == len(conv.hooks)
    assert sbload.outbox_bad(stack) == 0
    return counts


def _stack(failover_ms=FAILOVER_MS, split="0"):
    stack = Stack(PG, callbacks=False, dispatcher_env={
        "SB_DISPATCHER_ID": "d1", "SB_DISPATCHER_FAILOVER_MS": str(failover_ms),
        "SB_SEND_CONCURRENCY": str(CONCURRENCY), "SB_STORE_SPLIT": split})
    stack.start()
    # a fifth of the sends take 300 ms at the "provider": sends in flight
    stack.sandbox_fail("rate=0.2&mode=slow&delay_ms=300")
    return stack


def _three_under_load(tag, share, split="0"):
    """Three dispatchers with their partitions spread, and the conversations
    under way until `share` of the webhooks were acknowledged."""
    stack = _stack(split=split)
    fleet = Fleet(stack)
    # d2's DATABASE_URL sets an idle-in-transaction limit of its own, past
    # the failover time: its delivery connection's (under the lease) must win
    fleet.add("d2", options="-c idle_in_transaction_session_timeout=%d" % (FAILOVER_MS + 1000))
    fleet.add("d3")
    fleet.wait_spread(["d1", "d2", "d3"])
    conv = Conversations(stack, tag, sbload.scaled(150, minimum=60)).start()
    conv.wait_acked(int(len(conv.hooks) * share))
    return stack, fleet, conv


def _close(stack, fleet):
    for p in fleet.procs.values() if fleet else ():
        if p.proc and p.proc.poll() is None:
            p.proc.send_signal(signal.SIGCONT)
            p.proc.kill()
    if stack:
        stack.close()


def _taken_over(fleet, name, since):
    """Wait until the others hold every partition; seconds since `since`."""
    others = [n for n in fleet.procs if n != name]
    sbload.wait_until(lambda: sum(fleet.held(n) for n in others) == 256, 30,
                      "%s's partitions taken over" % name, fleet.log_text)
    return time.time() - since


def test_kill9_one_of_three():
    tag = "dk"
    stack = fleet = None
    try:
        stack, fleet, conv = _three_under_load(tag, 0.4, split="1")
        in_flight = fleet.metric("d2", "sb_sends_in_flight")
        fleet.procs["d2"].proc.send_signal(signal.SIGKILL)
        fleet.procs["d2"].proc.wait()
        killed = time.time()
        time.sleep(0.3)  # the server finishes what the dead connection had sent
        sending = fleet.sending_of("d2")
        took = _taken_over(fleet, "d2", killed)
        conv.join()
        _settle_and_check(stack, fleet, tag, conv, sending,
                          "sending_at_kill=%d in_flight_metric=%d takeover=%.1fs failover=%.1fs"
                          % (len(sending), in_flight, took, FAILOVER_MS / 1000))
        kept = sum(int(fleet.metric(n, "sb_ingest_takeover_kept_total")) for n in ("d1", "d3"))
        replays = sum(int(fleet.metric(n, "sb_ingest_takeover_replays_total")) for n in ("d1", "d3"))
        sbload.report(tag, "d2's events stored by d1 and d3 from what they kept: %d, takeover "
                           "replays: %d" % (kept, replays))
        assert kept > 0 and replays == 0, (kept, replays)
        assert took <= FAILOVER_MS / 1000 + 0.5, "partitions moved after %.1fs" % took
        assert len(sending) <= CONCURRENCY
        assert fleet.held("d2") == 0
        fleet.stop_all()
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        _close(stack, fleet)


def _stop_inside_tick(stack, fleet, name, tries=10):
    """SIGSTOP `name` inside a lease tick, once its renewal has locked every
    partition row it holds, with a row of its own still "sending": a
    session of the test's locks one of those partition rows until the
    renewal waits on it (pg_stat_activity, by the dispatcher's
    application_name); its outbox worker is then blocked, so what it has
    "sending" stays so. With none, the row is let go and the next tick
    tried. Else the process is stopped and the row let go: the renewal
    completes and the tick's transaction stays open, idle, with the rows
    locked. The others' takes skip locked rows: only the end of that
    session frees them. The time of the stop."""
    sending = Fleet.sending_sql(name, "count(*)")
    for _ in range(tries):
        holder = sbtest.PsqlSession(stack.db)
        try:
            part = holder.run("BEGIN;\nSELECT part FROM dispatcher_partitions WHERE owner = '%s'"
                              " ORDER BY part LIMIT 1 FOR UPDATE;" % name)
            assert len(part) == 1, part
            waiting = ("SELECT pid FROM pg_stat_activity WHERE application_name = '%s'"
                       " AND wait_event_type = 'Lock' AND query LIKE 'UPDATE dispatcher_partitions"
                       " SET lease_until%%'" % name)
            sbload.wait_until(lambda: stack.scalar(waiting) is not None, 10,
                              "%s's lease renewal waiting on partition %s" % (name, part[0]))
            pid = stack.scalar(waiting)
            if stack.scalar(sending) == "0":
                holder.run("COMMIT;")
                time.sleep(0.2)
                continue
            fleet.procs[name].proc.send_signal(signal.SIGSTOP)
            stopped = time.time()
            holder.run("COMMIT;")
            state = None
            for _ in range(100):
                state = holder.run("SELECT state FROM pg_stat_activity WHERE pid = %s;" % pid)
                if state == ["idle in transaction"]:
                    return stopped
                time.sleep(0.01)
            raise AssertionError("%s stopped inside its tick: its session is %s" % (name, state))
        finally:
            holder.close()
    raise AssertionError("%s had no row sending in %d ticks" % (name, tries))


def test_stale_owner_sigstop():
    """The stale holder is stopped at the worst point: inside its lease
    tick, its partition rows locked (see _stop_inside_tick), and one of
    the rows it has "sending" stays locked by a session of the test's (as
    its own settle would, stopped inside it) until the takeover is done."""
    tag = "ds"
    stack = fleet = row_holder = None
    try:
        stack, fleet, conv = _three_under_load(tag, 0.3)
        d2 = fleet.procs["d2"].proc
        stopped = _stop_inside_tick(stack, fleet, "d2")
        time.sleep(0.3)
        sending = fleet.sending_of("d2")
        row_holder = sbtest.PsqlSession(stack.db)
        locked = row_holder.run("BEGIN;\n%s ORDER BY o.id LIMIT 1 FOR UPDATE OF o;"
                                % Fleet.sending_sql("d2", "o.id"))
        assert len(locked) == 1, locked
        took = _taken_over(fleet, "d2", stopped)
        row_holder.run("COMMIT;")
        row_holder.close()
        # the row locked meanwhile is put back once let go
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE id = %s AND state = 'sending'"
                          " AND split_part (claim_token, '.', 1) IN (SELECT instance FROM dispatchers"
                          " WHERE id = 'd2')" % locked[0], 0)
        time.sleep(1.0)
        d2.send_signal(signal.SIGCONT)
        conv.join()
        # d2 holds its share again, under new epochs
        fleet.wait_spread(["d1", "d2", "d3"])
        fenced = fleet.metric("d2", "sb_send_results_fenced_total")
        counts = _settle_and_check(stack, fleet, tag, conv, sending,
                                   "sending_at_stop=%d fenced=%d takeover=%.1fs (stopped inside"
                                   " its tick, a row of it locked: %s)"
                                   % (len(sending), fenced, took, locked[0]))
        assert fenced <= len(sending), (fenced, len(sending))
        assert counts.replies_twice <= len(sending)
        assert took <= FAILOVER_MS / 1000 + 0.5, "partitions moved after %.1fs" % took
        # The stopped d2 may have held a write transaction open: the others'
        # inserts of the same events waited for its locks (lock_timeout) until
        # PostgreSQL ended its session (idle_in_transaction_session_timeout),
        # and were retried; d2 itself finds its session gone when it wakes.
        fleet.stop_all(allow=("lock timeout", "PostgreSQL write failed", "terminating connection",
                              "server closed the connection", "PostgreSQL unavailable",
                              "send results not recorded", "not committed"))
    finally:
        if row_holder:
            row_holder.close()
        _close(stack, fleet)


def test_new_dispatcher_mid_load():
    tag = "dn"
    stack = fleet = None
    try:
        stack = _stack()
        fleet = Fleet(stack)
        fleet.add("d2")
        fleet.wait_spread(["d1", "d2"])
        conv = Conversations(stack, tag, sbload.scaled(150, minimum=60)).start()
        conv.wait_acked(int(len(conv.hooks) * 0.3))
        fleet.add("d3")
        # `switchboard tap` on d3's outcome PUB: its outcomes name it
        tap = sbtest.Tap(fleet.pubs["d3"])
        fleet.wait_spread(["d1", "d2", "d3"])
        conv.join()
        _settle_and_check(stack, fleet, tag, conv, set(), "d3_partitions=%d" % fleet.held("d3"))
        sent_by_d3 = sum(v for k, v in sbload.metrics(fleet.ports["d3"]).items()
                         if k.startswith("sb_sends_total{"))
        assert fleet.held("d3") >= 85
        assert sent_by_d3 > 0, "d3 sent nothing"
        seen = tap.wait_for(lambda evs: any(e.get("outcome") == "sent" for e in evs))
        tap.close()
        sent = [e for e in seen if e.get("outcome") == "sent"]
        assert sent and all(e.get("dispatcher") == "d3" for e in sent), seen[:3]
        fleet.stop_all()
    finally:
        _close(stack, fleet)


def _stored(stack, sids):
    return int(stack.scalar("SELECT count(*) FROM events WHERE provider_id IN (%s)"
                            % ",".join("'%s'" % s for s in sids)))


def _processed(fleet, name):
    """Events `name` took from the stream: stored, duplicates, skipped."""
    m = sbload.metrics(fleet.ports[name])
    return sum(int(m.get(k, 0)) for k in ("sb_events_stored_total", "sb_events_duplicate_total",
                                           "sb_events_skipped_total"))


def test_storing_split_and_takeover():
    tag = "dp"
    # time enough to look while d2 is stopped, before its leases can end: they
    # run 3/4 of it from its last renewal, at most 1/8 before the stop
    failover_ms = 12000
    stack = fleet = None
    try:
        stack = _stack(failover_ms, split="1")
        fleet = Fleet(stack)
        fleet.add("d2")
        fleet.add("d3")
        names = ["d1", "d2", "d3"]
        fleet.wait_spread(names)
        # 1. All three running: each stores its partitions' events only.
        conv = Conversations(stack, tag, sbload.scaled(60, minimum=30)).start()
        conv.join()
        sbload.settle(stack, tag, conv.hooks, [w.key for w in conv.hooks])
        stored_by = {n: int(fleet.metric(n, "sb_events_stored_total")) for n in names}
        skipped_by = {n: int(fleet.metric(n, "sb_events_skipped_total")) for n in names}
        total = int(stack.scalar("SELECT count(*) FROM events"))  # the webhooks and any probe
        # 2. d2 stopped: the events of its partitions are journaled and
        # acknowledged, the others skip them, nobody stores them.
        d2 = fleet.procs["d2"].proc
        before = {n: _processed(fleet, n) for n in ("d1", "d3")}
        d2.send_signal(signal.SIGSTOP)
        stopped = time.time()
        later = [_sms(tag + "x", c, 0, stack.public_url) for c in range(sbload.scaled(90, minimum=45))]
        sbload.post_until_acked(stack.ingress.port, later)
        sbload.wait_until(lambda: all(_processed(fleet, n) - before[n] >= len(later) for n in before),
                          30, "d1 and d3 took the new events from the stream", fleet.log_text)
        sids = [w.key for w in later]
        of_d2 = int(stack.scalar(
            "SELECT count(*) FROM unnest (ARRAY[%s]) AS f (addr) JOIN dispatcher_partitions p"
            " ON p.part = sb_conv_hash ('twilio', 'sms', '', '%s', f.addr) %% 256 WHERE p.owner = 'd2'"
            % (",".join("'+1555%07d'" % (2000000 + c) for c in range(len(later))), sbload.OUR_NUMBER)))
        waiting = len(later) - _stored(stack, sids)
        looked = time.time() - stopped
        # 3. d3 restarted: the new process kept no skipped event.
        fleet.procs["d3"].stop()
        fleet.add("d3")
        # 4. kill -9: its partitions move; d1 stores what it kept of them,
        # d3 replays from d2's cursor.
        d2.send_signal(signal.SIGKILL)
        d2.wait()
        took = _taken_over(fleet, "d2", stopped)
        sbload.settle(stack, tag + "x", later, sids)
        replays = {n: int(fleet.metric(n, "sb_ingest_takeover_replays_total")) for n in ("d1", "d3")}
        restored = {n: int(fleet.metric(n, "sb_ingest_takeover_kept_total")) for n in ("d1", "d3")}
        dup_rows = int(stack.scalar("SELECT count(*) - count(DISTINCT provider_id) FROM events"
                                    " WHERE provider_id LIKE 'SM%s%%'" % tag))
        sbload.report(tag, "webhooks=%d stored_by=%s skipped_by=%s; d2 stopped: posted=%d "
                           "in_d2_partitions=%d waiting_unstored=%d (looked after %.1fs); kill -9, "
                           "d3 restarted, taken over after %.1fs: stored=%d of %d, takeover_replays=%s, "
                           "stored_from_kept=%s duplicate_rows=%d"
                      % (len(conv.hooks), stored_by, skipped_by, len(later), of_d2, waiting, looked, took,
                         _stored(stack, sids), len(later), replays, restored, dup_rows))
        assert sum(stored_by.values()) == total, stored_by
        assert all(0 < v < total for v in stored_by.values()), stored_by
        assert all(v > 0 for v in skipped_by.values()), skipped_by
        assert looked < failover_ms / 1000 * (0.75 - 0.125), "looked too late: %.1fs" % looked
        assert of_d2 > 0 and waiting == of_d2, (of_d2, waiting)
        assert _stored(stack, sids) == len(later)
        # d3 started after the posts and took free partitions at once, so it
        # started at their (recent) cursor and kept none of d2's events
        assert replays["d3"] >= 1 and restored["d3"] == 0, (restored, replays)
        assert replays["d1"] == 0, (restored, replays)
        assert dup_rows == 0
        assert fleet.held("d2") == 0
        assert sbload.outbox_bad(stack) == 0
        fleet.stop_all(allow=("lock timeout", "PostgreSQL write failed", "terminating connection",
                              "server closed the connection", "PostgreSQL unavailable"))
    finally:
        _close(stack, fleet)


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_kill9_one_of_three, test_stale_owner_sigstop, test_new_dispatcher_mid_load,
                          test_storing_split_and_takeover])
    finally:
        PG.close()
