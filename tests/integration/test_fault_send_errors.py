"""Fault 4: the sandbox fails 30% of sends, at random, with 500 or with
429 and Retry-After: 1 (POST /_sandbox/fail?rate=0.3&mode=mixed).

The dispatcher retries with a small backoff and enough attempts
(SB_SEND_MAX_ATTEMPTS=40: a send dies with probability 0.3^40). Checked, from
the sandbox's own record of every request:
- every stored message was answered successfully exactly once;
- about 30% of all attempts were refused, and every refused attempt was
  retried: attempts recorded by the sandbox == the outbox's attempts;
- no outbox row ended failed or dead.
"""

import sbload
import sbtest
from sbtest import Postgres, Stack

PG = None


def test_sandbox_fails_30_percent():
    tag = "fk4"
    stack = Stack(PG, callbacks=False, dispatcher_env={
        "SB_SEND_MAX_ATTEMPTS": "40", "SB_SEND_BACKOFF_BASE_MS": "20", "SB_SEND_BACKOFF_MAX_MS": "400"})
    try:
        stack.start()
        stack.sandbox_fail("rate=0.3&mode=mixed&retry_after=1")
        n = sbload.scaled(2000, minimum=500)
        hooks = sbload.make_webhooks(tag, n, stack.public_url)
        load = sbload.Load(stack.ingress.port, hooks, threads=8).run()
        acked = load.acked()
        assert len(acked) == n, load.by_status()
        waited = sbload.settle(stack, tag, hooks, [w.key for w in acked])
        counts = sbload.Counts(stack, tag, hooks, acked)
        attempts = sum(counts.reply_attempts.values())
        refused = attempts - counts.replies
        injected = {}
        for r in sbload.sandbox_records(stack):
            text = sbload.reply_text(r)
            if text and text.startswith(tag + "-") and r.get("injected"):
                injected[r["status"]] = injected.get(r["status"], 0) + 1
        outbox_attempts = int(stack.scalar(
            "SELECT coalesce(sum(attempts), 0) FROM outbox WHERE body LIKE '%%%s%s-%%'" % (sbload.REPLY_MARKER, tag)))
        most = int(stack.scalar("SELECT coalesce(max(attempts), 0) FROM outbox WHERE body LIKE '%%%s%s-%%'"
                                % (sbload.REPLY_MARKER, tag)))
        m = sbload.metrics(stack.dispatcher_port)
        sbload.report("sends fail 30%", counts.line(
            "attempts=%d refused=%d (%.1f%%: 500=%d 429=%d) outbox_attempts=%d max_attempts_of_one=%d dead=%d"
            % (attempts, refused, 100.0 * refused / max(1, attempts), injected.get(500, 0), injected.get(429, 0),
               outbox_attempts, most, m.get("sb_sends_dead_total", 0))))
        print("  kinds: " + sbload.kinds_line(hooks) + "; settle: stored %.1fs, answered %.1fs more" % waited)
        counts.check()
        exactly_once = [t for t in counts.reply_wanted if counts.replies_ok.get(t) != 1]
        assert not exactly_once, "not answered exactly once: %s" % exactly_once[:10]
        assert counts.replies == len(counts.reply_wanted) == sum(1 for w in hooks if w.replied)
        assert refused == injected.get(500, 0) + injected.get(429, 0), (refused, injected)
        assert injected.get(500, 0) > 0 and injected.get(429, 0) > 0, injected
        assert 0.2 <= refused / attempts <= 0.4, "refused share %.3f far from 0.3" % (refused / attempts)
        assert outbox_attempts == attempts, "outbox counts %d attempts, the sandbox saw %d" % (outbox_attempts, attempts)
        assert sbload.outbox_bad(stack) == 0
        assert m.get("sb_sends_dead_total", 0) == 0
        stack.dispatcher.stop()
        stack.check_logs(allow=("500", "429", "retry"))
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_sandbox_fails_30_percent])
    finally:
        PG.close()
