"""Fault 7: the dispatcher is away for longer than the PUB high-water mark
covers (SB_PUB_HWM=10 on the ingress), and catches up by replay.

Two ways of being away, each under a load across providers and kinds:
A. stopped (SIGSTOP): its connections stay up but it reads nothing, so the
   ingress's PUB queue (10 events) and the sockets' buffers fill and the
   PUB drops events (bodies are padded to 16 KB so that happens soon);
   after SIGCONT the dispatcher sees the jump in sequence numbers and asks
   for a replay;
B. not running (SIGTERM, the process exits): the PUB has no subscriber and
   drops every event; a new process asks for a replay from its stored
   cursor + 1.
Each phase: every acknowledged webhook stored exactly once, every message
answered exactly once, and the dispatcher's metrics show the gap or the
replay that repaired it.
"""

import signal
import time

import sbload
import sbtest
from sbtest import Postgres, Stack

PG = None


def test_dispatcher_away_longer_than_pub_hwm():
    stack = Stack(PG, callbacks=False, ingress_env={"SB_PUB_HWM": "10"},
                  dispatcher_env={"SB_QUEUE_MAX": "1000"})
    try:
        stack.start()
        # A. stopped
        tag = "fk7a"
        n = sbload.scaled(2500, minimum=1500)
        hooks = sbload.make_webhooks(tag, n, stack.public_url, padding=16000)
        before = sbload.metrics(stack.dispatcher_port)
        load = sbload.Load(stack.ingress.port, hooks, threads=6).start()
        load.wait_done(200)
        stack.dispatcher.proc.send_signal(signal.SIGSTOP)
        stopped_at = load.done()
        load.wait_done(min(n, stopped_at + 1500))
        time.sleep(1.0)
        away = load.done() - stopped_at
        stack.dispatcher.proc.send_signal(signal.SIGCONT)
        load.join()
        acked = load.acked()
        assert len(acked) == n, load.by_status()
        sbload.settle(stack, tag, hooks, [w.key for w in acked])
        counts = sbload.Counts(stack, tag, hooks, acked)
        m = sbload.metrics(stack.dispatcher_port)
        gaps = m.get("sb_ingest_gaps_total", 0) - before.get("sb_ingest_gaps_total", 0)
        replayed = m.get("sb_ingest_replayed_records_total", 0) - before.get("sb_ingest_replayed_records_total", 0)
        sbload.report("dispatcher stopped (SIGSTOP) past SB_PUB_HWM=10", counts.line(
            "posted_while_stopped=%d gaps=%d replayed=%d" % (away, gaps, replayed)))
        print("  kinds: " + sbload.kinds_line(hooks))
        counts.check()
        assert counts.stored == n and counts.replies == len(counts.reply_wanted)
        assert gaps > 0 and replayed > 0, "the PUB never dropped: no gap was repaired (gaps=%d replayed=%d)" % (gaps, replayed)

        # B. not running
        tag = "fk7b"
        n = sbload.scaled(1500, minimum=500)
        hooks = sbload.make_webhooks(tag, n, stack.public_url)
        load = sbload.Load(stack.ingress.port, hooks, threads=6, rate=500).start()
        load.wait_done(n // 5)
        assert stack.dispatcher.stop() == 0
        stopped_at = load.done()
        load.join()
        away = n - stopped_at
        acked = load.acked()
        assert len(acked) == n, load.by_status()
        stack.start_dispatcher()
        sbload.settle(stack, tag, hooks, [w.key for w in acked])
        counts = sbload.Counts(stack, tag, hooks, acked)
        m = sbload.metrics(stack.dispatcher_port)
        replayed = m.get("sb_ingest_replayed_records_total", 0)
        sbload.report("dispatcher not running past SB_PUB_HWM=10", counts.line(
            "posted_while_down=%d replayed_after_restart=%d" % (away, replayed)))
        counts.check()
        assert counts.stored == n and counts.replies == len(counts.reply_wanted)
        assert replayed >= away, "replayed %d, missed %d" % (replayed, away)
        assert sbload.outbox_bad(stack) == 0
        stack.dispatcher.stop()
        stack.check_logs()
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        if stack.dispatcher.proc and stack.dispatcher.proc.poll() is None:
            stack.dispatcher.proc.send_signal(signal.SIGCONT)
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_dispatcher_away_longer_than_pub_hwm])
    finally:
        PG.close()
