"""Fault: PostgreSQL hangs (its processes stopped, or a table locked).

Runs its own PostgreSQL cluster (it freezes it with SIGSTOP), never the
shared one. The dispatcher runs with SB_PG_TIMEOUT_MS=2000. Checked:
- PostgreSQL's processes stopped (SIGSTOP on the postmaster and all its
  children, their TCP connections left open): the dispatcher's /readyz
  answers 503 within SB_PG_TIMEOUT_MS + 2 s and stays so; the ingress
  answers 200 to every webhook all along; after SIGCONT everything
  acknowledged is stored exactly once (rows counted by provider id and by
  (ingress_id, epoch, seq)) and every message is answered exactly once;
  outbox rows that came due while the server was stopped (claimed by the
  transaction the dispatcher gave up on, which the server commits when it
  wakes) are each sent exactly once too;
- another session holding LOCK TABLE events IN ACCESS EXCLUSIVE MODE:
  writes time out and are retried with backoff (a handful of failures, not
  a loop), /readyz answers 503 within SB_PG_TIMEOUT_MS + 2 s, and once the
  lock is released everything is stored and answered exactly once.
"""

import os
import signal
import time
import urllib.parse

import sbload
import sbtest
from sbtest import Stack

TIMEOUT_MS = 2000
HANG_SECONDS = 12


def _pg_pids(pg):
    """The postmaster's pid and its children's."""
    with open(os.path.join(pg.own_dir, "pg", "postmaster.pid")) as f:
        master = int(f.readline())
    pids = [master]
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == master:
            pids.append(int(name))
    return pids


def _signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_not_ready(port, since, limit):
    """Seconds from since until /readyz answered 503 (None: not within limit),
    and the probes made."""
    probes = 0
    while time.time() - since < limit:
        probes += 1
        if sbload.http_status(port, "/readyz", timeout=1) == 503:
            return time.time() - since, probes
        time.sleep(0.1)
    return None, probes


def _key_counts(stack, tag):
    """(rows, distinct (ingress_id, epoch, seq)) of the run named tag."""
    rows = stack.query("SELECT count(*), count(DISTINCT (ingress_id, epoch, seq)) FROM events "
                       "WHERE provider_id LIKE '%%%s%%' OR (provider_id = '' AND text LIKE '%s-%%')"
                       % (tag, tag))
    return int(rows[0][0]), int(rows[0][1])


ORPHANS = 5


def _queue_due_mid_hang(stack, tag):
    """Outbox rows (replies) that come due in the middle of the hang: the
    claim the dispatcher sends into the hung server and gives up on is
    executed when the server wakes, and claims them unseen."""
    stack.query("INSERT INTO outbox (kind, provider, channel, account, from_addr, to_addr, body, "
                "next_attempt_at) SELECT 'reply', 'twilio', 'sms', '%s', '%s', '+1555000' || i, "
                "'%s-due-' || i, now () + interval '%d seconds' FROM generate_series (1, %d) i"
                % (sbtest.TWILIO_SID, sbload.OUR_NUMBER, tag, HANG_SECONDS // 2, ORPHANS))


def _due_counts(stack, tag):
    """(rows sent, sends the sandbox received per body) of those rows."""
    sent = int(stack.scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND body LIKE '%s-due-%%'"
                            % tag))
    sends = {}
    for r in stack.sandbox_sends():
        body = dict(urllib.parse.parse_qsl(r.get("body") or "", keep_blank_values=True)).get("Body", "")
        if body.startswith(tag + "-due-") and r.get("status") in (200, 201):
            sends[body] = sends.get(body, 0) + 1
    return sent, sends


def _run_hang(pg, tag, name, hang, release, due=False):
    """A paced load from before the hang (hang() starts it) until after its
    end (release()); returns what was counted. due: rows come due mid-hang
    too (_queue_due_mid_hang)."""
    stack = Stack(pg, callbacks=False, dispatcher_env={"SB_PG_TIMEOUT_MS": str(TIMEOUT_MS)})
    released = True
    try:
        stack.start()
        rate = max(10, int(20 * sbload.scale()))
        lead, tail = 3.0, 4.0
        n = int(rate * (lead + HANG_SECONDS + tail))
        hooks = sbload.make_webhooks(tag, n, stack.public_url)
        load = sbload.Load(stack.ingress.port, hooks, threads=4, rate=rate).start()
        time.sleep(lead)
        failures_before = sbload.metrics(stack.dispatcher_port).get("sb_store_failures_total", 0)
        if due:
            _queue_due_mid_hang(stack, tag)
        hang_at = time.time()
        released = False
        hang()
        # readiness must drop within SB_PG_TIMEOUT_MS + 2 s; look a while longer
        # to report how late it came, if it comes at all
        limit = TIMEOUT_MS / 1000.0 + 2
        took, probes = _wait_not_ready(stack.dispatcher_port, hang_at, limit + 6)
        ready_during = 0
        later_probes = 0
        while time.time() - hang_at < HANG_SECONDS:
            later_probes += 1
            if sbload.http_status(stack.dispatcher_port, "/readyz", timeout=1) != 503:
                ready_during += 1
            time.sleep(0.25)
        failures = sbload.metrics(stack.dispatcher_port).get("sb_store_failures_total", 0) - failures_before
        release()
        released = True
        up_at = time.time()
        load.join()
        statuses = load.by_status()
        acked = load.acked()
        waited = sbload.settle(stack, tag, hooks, [w.key for w in acked], timeout=120)
        counts = sbload.Counts(stack, tag, hooks, acked)
        rows, keys = _key_counts(stack, tag)
        due_sent, due_sends = 0, {}
        if due:
            deadline = time.time() + 30
            while time.time() < deadline:
                due_sent, due_sends = _due_counts(stack, tag)
                if due_sent == ORPHANS:
                    break
                time.sleep(0.25)
        sbload.report(name, counts.line(
            "readyz_503_after=%s limit=%.1fs ready_while_hung=%d/%d store_failures=%d "
            "rows=%d distinct_journal_keys=%d caught_up_in=%.1fs%s"
            % ("%.2fs" % took if took is not None else "never", limit, ready_during, later_probes,
               failures, rows, keys, time.time() - up_at,
               " due_mid_hang=%d sent=%d sends=%d" % (ORPHANS, due_sent, sum(due_sends.values()))
               if due else "")))
        print("  kinds: " + sbload.kinds_line(hooks) + "; settle: stored %.1fs, answered %.1fs more" % waited,
              flush=True)
        assert took is not None and took <= limit, \
            "/readyz did not answer 503 within %.1fs of the hang (took %s)" % (limit, took)
        assert ready_during == 0, "/readyz answered other than 503 %d times while hung" % ready_during
        assert statuses == {200: n}, "the ingress did not answer 200 all along: %s" % statuses
        counts.check()
        assert counts.stored == n and counts.replies == len(counts.reply_wanted)
        assert rows == keys == n, (rows, keys, n)
        if due:
            states = stack.query("SELECT state, count(*) FROM outbox WHERE body LIKE '%s-due-%%' "
                                 "GROUP BY state" % tag)
            assert due_sent == ORPHANS and sorted(due_sends.values()) == [1] * ORPHANS, \
                "rows due mid-hang not sent once each: states=%s sends=%s" % (states, due_sends)
        sbload.wait_until(lambda: sbload.http_status(stack.dispatcher_port, "/readyz") == 200, 20,
                          "/readyz 200 again", stack.dispatcher.log_text)
        assert sbload.outbox_bad(stack) == 0
        return stack, failures
    except BaseException:
        if not released:
            release()
        stack.close()
        raise


def test_postgres_stopped():
    pg = sbload.OwnPostgres()
    frozen = []

    def hang():
        frozen[:] = _pg_pids(pg)
        _signal_all(frozen, signal.SIGSTOP)

    def release():
        _signal_all(frozen, signal.SIGCONT)

    stack = None
    try:
        stack, _ = _run_hang(pg, "pgh1", "PostgreSQL SIGSTOP %ds" % HANG_SECONDS, hang, release,
                             due=True)
        stack.dispatcher.stop()
        stack.check_logs(allow=("PostgreSQL", "outbox", "store", "send results not recorded"))
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        if frozen:
            _signal_all(frozen, signal.SIGCONT)
        if stack is not None:
            stack.close()
        pg.close()


def test_table_locked():
    pg = sbload.OwnPostgres()
    holder = {}

    def hang():
        # the stack's database: the last one created on this cluster
        url = stack_db[0]
        session = sbtest.PsqlSession(url)
        session.run("BEGIN;\nLOCK TABLE events IN ACCESS EXCLUSIVE MODE;")
        holder["psql"] = session

    def release():
        session = holder.pop("psql", None)
        if session is not None:
            session.run("COMMIT;")
            session.close()

    stack = None
    stack_db = []
    create = pg.create

    def create_and_remember():
        url = create()
        stack_db.append(url)
        return url

    pg.create = create_and_remember
    try:
        stack, failures = _run_hang(pg, "pgl1", "events locked %ds" % HANG_SECONDS, hang, release)
        # retried with backoff (100 ms doubling to 5 s, each try waiting out
        # the lock timeout): a handful of failures, not a loop
        assert 1 <= failures <= 15, "store failures while locked: %d" % failures
        log = stack.dispatcher.log_text()
        lines = [l for l in log.splitlines() if "lock" in l and " error " in l]
        print("  lock error lines in the log: %d" % len(lines), flush=True)
        assert len(lines) <= HANG_SECONDS + 4, "lock errors logged %d times" % len(lines)
        # each actor's change of state is logged once each way (the delivery's
        # may never change: a refused send result need not fail its settle)
        assert log.count("PostgreSQL write failed") == 1, log.count("PostgreSQL write failed")
        assert log.count("PostgreSQL unavailable") <= 1, log.count("PostgreSQL unavailable")
        stack.dispatcher.stop()
        stack.check_logs(allow=("PostgreSQL", "outbox", "store", "lock", "send results not recorded"))
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        release()
        if stack is not None:
            stack.close()
        pg.close()


if __name__ == "__main__":
    sbtest.run_tests([test_postgres_stopped, test_table_locked])
