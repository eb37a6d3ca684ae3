"""Fault 1: kill -9 the dispatcher mid-load, restart it.

A load of signed webhooks across providers and kinds (sbload.MIX) goes to
the real ingress while the dispatcher stores and answers them; a tenth of
the sends are slow at the sandbox, so some are in flight. The dispatcher is
killed with SIGKILL part-way, the load goes on for two seconds without it,
and a new dispatcher starts on the same database. In the end:
- PostgreSQL holds exactly one events row per acknowledged webhook;
- the sandbox received a successful reply for every message stored (the
  echo rule answers every inbound message);
- a reply went out twice only for outbox rows that were "sending" when the
  dispatcher died (the providers take no idempotency key): their number is
  printed; each one is a row that was "sending" in PostgreSQL right after
  the kill, and there are at most SB_SEND_CONCURRENCY of those. The
  sb_sends_in_flight gauge read just before the kill is printed beside.
"""

import signal
import time

import sbload
import sbtest
from sbtest import Postgres, Stack

PG = None
CONCURRENCY = 16


def test_kill9_dispatcher_mid_load():
    tag = "fk1"
    stack = Stack(PG, callbacks=False, dispatcher_env={"SB_SEND_CONCURRENCY": str(CONCURRENCY)})
    try:
        stack.start()
        # a tenth of the sends take 250 ms at the "provider": sends in flight
        stack.sandbox_fail("rate=0.1&mode=slow&delay_ms=250")
        n = sbload.scaled(5000, minimum=1000)
        hooks = sbload.make_webhooks(tag, n, stack.public_url)
        load = sbload.Load(stack.ingress.port, hooks, threads=8, rate=1000).start()
        load.wait_done(int(n * 0.4))
        in_flight_metric = sbload.metrics(stack.dispatcher_port).get("sb_sends_in_flight", -1)
        stack.dispatcher.proc.send_signal(signal.SIGKILL)
        stack.dispatcher.proc.wait()
        killed_at = load.done()
        time.sleep(0.3)  # the server finishes what the dead connection had sent
        sending = [row[0] for row in stack.query("SELECT body FROM outbox WHERE state = 'sending'")]
        sending_texts = {b.split(sbload.REPLY_MARKER, 1)[1] for b in sending if sbload.REPLY_MARKER in b}
        time.sleep(2.0)  # the load goes on without a dispatcher
        away = load.done() - killed_at
        stack.start_dispatcher()
        load.join()
        acked = load.acked()
        assert len(acked) == n, "the ingress did not acknowledge everything: %s" % load.by_status()
        t_load = time.time()
        waited = sbload.settle(stack, tag, hooks, [w.key for w in acked])
        print("  settled: stored after %.1fs, answered after %.1fs more; counting took %.1fs"
              % (waited[0], waited[1], time.time() - t_load - sum(waited)))
        counts = sbload.Counts(stack, tag, hooks, acked)
        m = sbload.metrics(stack.dispatcher_port)
        extra = ("kill_after=%d received_while_away=%d sending_rows_at_kill=%d sends_in_flight_metric=%d "
                 "send_concurrency=%d replayed=%d rate=%.0f/s"
                 % (killed_at, away, len(sending), in_flight_metric, CONCURRENCY,
                    m.get("sb_ingest_replayed_records_total", 0), load.rate_achieved()))
        sbload.report("dispatcher kill -9", counts.line(extra))
        print("  kinds: " + sbload.kinds_line(hooks))
        counts.check(replies_twice_allowed=len(sending))
        assert set(counts.twice_texts) <= sending_texts, \
            "replies sent twice that were not in flight at the kill: %s" % sorted(set(counts.twice_texts) - sending_texts)
        assert counts.replies_twice <= CONCURRENCY, counts.replies_twice
        assert len(sending) <= CONCURRENCY, "more rows sending than SB_SEND_CONCURRENCY: %d" % len(sending)
        assert counts.stored == n and counts.replies - counts.replies_twice == len(counts.reply_wanted)
        assert sbload.outbox_bad(stack) == 0
        stack.dispatcher.stop()
        stack.check_logs()
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_kill9_dispatcher_mid_load])
    finally:
        PG.close()
