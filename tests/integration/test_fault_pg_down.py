"""Fault 3: PostgreSQL stops for 30 s mid-load and starts again.

A paced load of signed webhooks across providers and kinds runs from
before the stop until after the start. Runs its own PostgreSQL cluster (it
stops it), never the shared one. Checked:
- the ingress answers 200 to every webhook, all along (it never needs
  PostgreSQL);
- the dispatcher says it is not ready while PostgreSQL is away, and logs
  the change of state once each way;
- when PostgreSQL is back, the dispatcher catches up: exactly one events
  row per acknowledged webhook, each message answered exactly once.
"""

import time

import sbload
import sbtest
from sbtest import Stack

DOWN_SECONDS = 30


def test_postgres_down_30s_mid_load():
    tag = "fk3"
    pg = sbload.OwnPostgres()
    stack = None
    try:
        stack = Stack(pg, callbacks=False)
        stack.start()
        rate = max(20, int(60 * sbload.scale()))
        lead, tail = 4.0, 6.0
        n = int(rate * (lead + DOWN_SECONDS + tail))
        hooks = sbload.make_webhooks(tag, n, stack.public_url)
        load = sbload.Load(stack.ingress.port, hooks, threads=4, rate=rate).start()
        time.sleep(lead)
        pg.stop_server()
        down_at = time.time()
        acked_at_stop = load.done()
        not_ready = 0
        probes = 0
        while time.time() - down_at < DOWN_SECONDS:
            probes += 1
            if sbload.http_status(stack.dispatcher_port, "/readyz") == 503:
                not_ready += 1
            time.sleep(0.5)
        posted_while_down = load.done() - acked_at_stop
        pg.start_server()
        up_at = time.time()
        load.join()
        statuses = load.by_status()
        acked = load.acked()
        waited = sbload.settle(stack, tag, hooks, [w.key for w in acked], timeout=240)
        counts = sbload.Counts(stack, tag, hooks, acked)
        log = stack.dispatcher.log_text()
        failing = log.count("PostgreSQL write failed")
        back = log.count("PostgreSQL writes work again")
        sbload.report("PostgreSQL down %ds" % DOWN_SECONDS, counts.line(
            "posted_while_down=%d readyz_503=%d/%d caught_up_in=%.1fs rate=%d/s"
            % (posted_while_down, not_ready, probes, time.time() - up_at, rate)))
        print("  kinds: " + sbload.kinds_line(hooks) + "; settle: stored %.1fs, answered %.1fs more" % waited)
        assert statuses == {200: n}, "the ingress did not answer 200 all along: %s" % statuses
        assert posted_while_down >= rate * DOWN_SECONDS * 0.8, posted_while_down
        counts.check()
        assert counts.stored == n and counts.replies == len(counts.reply_wanted)
        # readiness flips within a moment of the stop; allow a couple of probes
        assert not_ready >= probes - 4, "dispatcher ready while PostgreSQL was down: %d of %d" % (not_ready, probes)
        assert sbload.http_status(stack.dispatcher_port, "/readyz") == 200
        assert failing == 1 and back == 1, (failing, back)
        assert sbload.outbox_bad(stack) == 0
        stack.dispatcher.stop()
        stack.check_logs(allow=("PostgreSQL", "outbox", "store", "send results not recorded"))
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        if stack is not None:
            stack.close()
        pg.close()


if __name__ == "__main__":
    sbtest.run_tests([test_postgres_down_30s_mid_load])
