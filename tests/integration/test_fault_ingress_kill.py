"""Fault 2: kill -9 the ingress mid-load and restart it (same journal
directory, same ports), with the dispatcher running all along.

While the ingress is down the load client gets no answer (connection
refused or reset) and moves on; a request in flight at the kill may have
been journaled without an answer. In the end:
- every webhook that got a 200 is in PostgreSQL exactly once;
- one that got no answer is there once or not at all, never twice;
- then, as a provider does, each unanswered webhook is posted again until
  it gets its 200: now every webhook is stored exactly once (the provider
  key drops the second copy of those that were journaled the first time),
  and every message is answered exactly once.
"""

import time

import sbload
import sbtest
from sbtest import Postgres, Stack

PG = None


def test_kill9_ingress_mid_load():
    tag = "fk2"
    stack = Stack(PG, callbacks=False)
    try:
        stack.start()
        n = sbload.scaled(3000, minimum=600)
        hooks = sbload.make_webhooks(tag, n, stack.public_url)
        load = sbload.Load(stack.ingress.port, hooks, threads=8, rate=800).start()
        load.wait_done(int(n * 0.4))
        stack.ingress.kill9()
        killed_at = load.done()
        time.sleep(0.5)
        stack.ingress.start()
        restarted_at = load.done()
        load.join()
        statuses = load.by_status()
        acked = load.acked()
        unanswered = load.unanswered()
        assert set(statuses) <= {200, None}, "answers other than 200 or none: %s" % statuses
        assert unanswered, "the kill cost no request: nothing was checked (%s)" % statuses
        waited = sbload.settle(stack, tag, hooks, [w.key for w in acked])
        first = sbload.Counts(stack, tag, hooks, acked, maybe=unanswered)
        resumed = [line.rsplit("next_seq=", 1)[1] for line in stack.ingress.log_text().splitlines()
                   if " ready ingress_id=" in line][-1]
        m = sbload.metrics(stack.dispatcher_port)
        sbload.report("ingress kill -9 (before provider retries)", first.line(
            "no_answer=%d no_answer_stored=%d kill_after=%d failed_while_down=%d restart_next_seq=%s gaps=%d replayed=%d"
            % (len(unanswered), first.maybe_stored, killed_at, restarted_at - killed_at, resumed,
               m.get("sb_ingest_gaps_total", 0), m.get("sb_ingest_replayed_records_total", 0))))
        first.check()
        # the provider retries what got no answer, until it gets a 200
        sbload.post_until_acked(stack.ingress.port, unanswered)
        sbload.settle(stack, tag, hooks, [w.key for w in hooks])
        final = sbload.Counts(stack, tag, hooks, hooks)
        sbload.report("ingress kill -9 (after provider retries)", final.line(
            "retried=%d stored_in=%.1fs answered_in=%.1fs" % (len(unanswered), waited[0], waited[1])))
        print("  kinds: " + sbload.kinds_line(hooks))
        final.check()
        assert final.stored == n and final.replies == len(final.reply_wanted)
        assert sbload.outbox_bad(stack) == 0
        readies = [line for line in stack.ingress.log_text().splitlines() if " ready ingress_id=" in line]
        assert len(readies) == 2, readies
        # a replay asked while the ingress was away is asked again as soon
        # as it is back, not after the dispatcher's 10-s stall timeout
        silent = [line for line in stack.dispatcher.log_text().splitlines() if "replay silent" in line]
        assert not silent, silent
        stack.dispatcher.stop()
        stack.check_logs()
        assert stack.ingress.stop() == 0
        stack.ingress.check_log()
        # the journal the kill left behind reads whole, without a gap
        records = sbtest.journal_records(stack.ingress.journal)
        assert [int(r["seq"]) for r in records] == list(range(1, len(records) + 1))
        in_journal = {sbload.event_key(r) for r in records}
        assert {w.key for w in hooks} <= in_journal
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_kill9_ingress_mid_load])
    finally:
        PG.close()
