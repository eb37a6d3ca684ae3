"""One contact's messages through two ingresses are answered in the order
they were sent (issue 15, "Replies in order": several ingresses behind a
load balancer, each message may reach either).

One dispatcher subscribes to two ingresses (i1, i2; one SB_PUBLIC_URL, as
behind a load balancer). While PostgreSQL stalls its writes (another
session holds LOCK TABLE events), each of 20 contacts sends message 0 to
i1 and, once i1 acknowledged it, message 1 to i2; i1 also journals a run
of status callbacks before each message 0 (a busy ingress). The events
wait on the dispatcher's SUB socket. When the lock goes, the socket hands
them over one from each ingress in turn: message 1 (i2) before message 0
(i1), behind i1's run. The dispatcher orders a batch by the time each
webhook reached its ingress (each ingress's own order kept), so every
contact's two replies reach the sandbox in the order of its messages.
Printed: the contacts whose replies came out of order (0 wanted; before
the ordering, 20 of 20; ordered by the ingresses' milliseconds alone, 7
of 20: a contact's two webhooks often share one, hence received_at_us).

What this does not cover: events that reach the dispatcher over several
batches (a process stopped with SIGSTOP reads its TCP streams back a
chunk at a time) are ordered within each batch only."""


import sbload
import sbtest
from sbtest import Ingress, Postgres, Stack
from test_fault_dispatchers import _sms

PG = None
CONTACTS = 20
FILLER = 12


def _status(tag, contact, n, public_url):
    """A status callback for a message nobody sent: stored, no reply."""
    sid = "SM%sf%04d%03d" % (tag, contact, n)
    params = [("MessageSid", sid), ("MessageStatus", "delivered"), ("AccountSid", sbtest.TWILIO_SID),
              ("From", sbload.OUR_NUMBER), ("To", "+1555%07d" % (3000000 + contact))]
    body, headers = sbload._twilio(public_url, "/twilio/status", params)
    return sbload.Webhook(contact, "twilio-status", "/twilio/status", body, headers, sid, None)


def test_two_ingresses_in_order():
    tag = "oi"
    stack = i2 = None
    try:
        public = "http://127.0.0.1:%d" % sbtest.free_port()  # a load balancer's URL
        behind = {"SB_PUBLIC_URL": public, "SB_HTTP_MAX_CONN_PER_IP": "0"}
        stack = Stack(PG, callbacks=False, ingress_env=dict(behind, SB_INGRESS_ID="i1"))
        i2 = Ingress(env=dict(behind, SB_INGRESS_ID="i2"), log_name="ingress-i2")
        stack.ingress.env.update(behind)
        stack.public_url = public
        stack.dispatcher.env.update({"SB_PUBLIC_URL": public,
                                     "SB_INGRESS_PUB": "%s,%s" % (stack.ingress.pub, i2.pub),
                                     "SB_INGRESS_REPLAY": "%s,%s" % (stack.ingress.replay, i2.replay)})
        i2.start()
        stack.start()
        messages = []
        lock = sbtest.PsqlSession(stack.db)
        lock.run("BEGIN;\nLOCK TABLE events IN ACCESS EXCLUSIVE MODE;")
        try:
            for c in range(CONTACTS):
                sbload.post_until_acked(stack.ingress.port, [_status(tag, c, n, public) for n in range(FILLER)])
                first, second = _sms(tag, c, 0, public), _sms(tag, c, 1, public)
                sbload.post_until_acked(stack.ingress.port, [first])
                sbload.post_until_acked(i2.port, [second])
                messages += [first, second]
        finally:
            lock.run("COMMIT;")
            lock.close()
        sbload.settle(stack, tag, messages, [w.key for w in messages])
        replies_ok, _ = sbload.reply_counts(stack, tag)
        order = _order_violations_two(stack, tag)
        sbload.report(tag, "contacts=%d messages=%d (message 0 to i1 behind %d statuses, message 1 to i2) "
                           "replies=%d out_of_order=%d %s"
                      % (CONTACTS, len(messages), FILLER, len(replies_ok), len(order), order[:3]))
        assert len(replies_ok) == len(messages), (len(replies_ok), len(messages))
        assert not order, "replies out of order: %s" % order[:5]
        # the stalled writes were retried (lock timeout): their lines allowed
        stack.check_logs(allow=("lock timeout", "PostgreSQL write failed"))
        i2.stop()
        i2.check_log()
    finally:
        if i2:
            i2.cleanup()
        if stack:
            stack.close()


def _order_violations_two(stack, tag):
    """_order_violations for two messages a contact (k = 0, 1)."""
    first = {}
    for pos, r in enumerate(stack.sandbox_sends()):
        text = sbload.reply_text(r)
        if text and text.startswith(tag + "-") and r.get("status") in (200, 201):
            first.setdefault(text, pos)
    bad = []
    for c in {t.rsplit("-", 1)[0] for t in first}:
        positions = [first.get("%s-%d" % (c, k)) for k in range(2)]
        if None in positions or positions != sorted(positions):
            bad.append((c, positions))
    return bad


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_two_ingresses_in_order])
    finally:
        PG.close()
