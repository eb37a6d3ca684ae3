"""Send limits through the real ingress, dispatcher, PostgreSQL and sandbox
(issue 15, "Replies in order, at provider speed"): a Meta phone number id
held to SB_META_SEND_RATE and each Twilio From number to
SB_TWILIO_SEND_RATE, counted second by second at the sandbox; Meta's 131056
(pair rate limit) backs off its (number, recipient) pair only; and one
contact's replies keep the order of its messages through both."""

import datetime
import json
import time
import urllib.parse
import urllib.request

import sbtest
from sbtest import Postgres, Stack
from test_dispatcher import meta_text

PG = None
META_RATE = 5     # per second, per phone number id
TWILIO_RATE = 4   # per second, per From number
PHONE_NUMBER_ID = "106540352242922"  # tests/conformance/meta-text.json


def sms(sid, text, frm, to):
    return "MessageSid=%s&AccountSid=%s&From=%s&To=%s&Body=%s&NumMedia=0" % (
        sid, sbtest.TWILIO_SID, urllib.parse.quote(frm), urllib.parse.quote(to),
        urllib.parse.quote_plus(text))


def when(record):
    return datetime.datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def accepted(stack):
    """The sends the sandbox accepted, oldest first: (time, sender, to, text)."""
    out = []
    for r in stack.sandbox_sends():
        if r.get("status") not in (200, 201):
            continue
        if r.get("provider") == "meta":
            j = r["json"]
            out.append((when(r), "meta:" + r["path"].split("/")[2], j["to"], j["text"]["body"]))
        else:
            p = dict(r["params"])
            out.append((when(r), "twilio:" + p["From"], p["To"], p["Body"]))
    return sorted(out, key=lambda s: s[0])


def most_in_a_second(times):
    """The most sends in any window of one second."""
    most, first = 0, 0
    for last in range(len(times)):
        while times[last] - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def dispatcher_metrics_text(stack):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % stack.dispatcher_port, timeout=5) as r:
        return r.read().decode()


def test_rates_per_sender_and_order():
    stack = Stack(PG, callbacks=False, dispatcher_env={
        "SB_META_SEND_RATE": str(META_RATE), "SB_TWILIO_SEND_RATE": str(TWILIO_RATE)}).start()
    try:
        # Meta: 24 contacts once each, and one contact six times in a row.
        for i in range(24):
            assert stack.post_meta(meta_text("wamid.rate%022d" % i, "m%d" % i, "1650700%04d" % i))[0] == 200
        for k in range(1, 7):
            assert stack.post_meta(meta_text("wamid.order%021d" % k, "o%d" % k, "16507779999"))[0] == 200
        # Twilio: two of our numbers, 12 contacts each.
        ours = ["+15559990001", "+15559990002"]
        for n, to in enumerate(ours):
            for i in range(12):
                body = sms("SM%032d" % (n * 100 + i), "t%d" % i, "+1555700%04d" % (n * 100 + i), to)
                assert stack.post_twilio("/twilio/messages", body)[0] == 200
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent'", 24 + 6 + 24, timeout=60)
        sends = accepted(stack)
        meta = [s[0] for s in sends if s[1] == "meta:" + PHONE_NUMBER_ID]
        assert len(meta) == 30, len(meta)
        # The bucket holds a tenth of a second's worth, at least one token.
        most = most_in_a_second(meta)
        span = meta[-1] - meta[0]
        print("  meta: 30 sends in %.2f s, at most %d in a second (rate %d)" % (span, most, META_RATE))
        assert most <= META_RATE + 1, most
        assert span >= (30 - 1 - 1) / META_RATE - 0.3, span
        spans = []
        for to in ours:
            t = [s[0] for s in sends if s[1] == "twilio:" + to]
            assert len(t) == 12, (to, len(t))
            m = most_in_a_second(t)
            spans.append((t[0], t[-1]))
            print("  twilio %s: 12 sends in %.2f s, at most %d in a second (rate %d)"
                  % (to, t[-1] - t[0], m, TWILIO_RATE))
            assert m <= TWILIO_RATE + 1, m
            assert t[-1] - t[0] >= (12 - 1 - 1) / TWILIO_RATE - 0.3
        # Per number, not one bucket for both: their sends overlap in time.
        overlap = min(spans[0][1], spans[1][1]) - max(spans[0][0], spans[1][0])
        print("  the two Twilio numbers sent side by side for %.2f s" % overlap)
        assert overlap > 1.0, spans
        # One contact's replies in the order of its messages, one at a time.
        mine = [s[3] for s in sends if s[2] == "16507779999"]
        assert mine == ["Thanks for your message! We received: o%d" % k for k in range(1, 7)], mine
        text = dispatcher_metrics_text(stack)
        assert 'sb_sends_rate_waits_total{limit="sender_rate"}' in text
        stack.check_logs()
    finally:
        stack.close()


def test_pair_backoff_only_its_pair():
    stack = Stack(PG, callbacks=False, dispatcher_env={"SB_META_SEND_RATE": "80"}).start()
    try:
        stack.sandbox_fail("count=1&mode=meta131056")
        p, q = "16508880001", "16508880002"
        assert stack.post_meta(meta_text("wamid.pair%022d" % 1, "p1", p))[0] == 200
        deadline = time.time() + 20
        hit = None
        while time.time() < deadline and hit is None:
            for r in stack.sandbox_sends():
                if r.get("error_code") == "131056":
                    hit = when(r)
            time.sleep(0.05)
        assert hit is not None, "no 131056 answered"
        # The same pair's next message, and another recipient of the same number.
        assert stack.post_meta(meta_text("wamid.pair%022d" % 2, "p2", p))[0] == 200
        assert stack.post_meta(meta_text("wamid.pair%022d" % 3, "q1", q))[0] == 200
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent'", 3, timeout=60)
        sends = accepted(stack)
        to_q = [s for s in sends if s[2] == q]
        to_p = [s for s in sends if s[2] == p]
        print("  q answered %.2f s after the 131056; p's first retry %.2f s after it"
              % (to_q[0][0] - hit, to_p[0][0] - hit))
        # The other recipient is not held back ...
        assert to_q[0][0] - hit < 3.0, to_q[0][0] - hit
        # ... the pair is, for the 6 s backoff (the store's own backoff
        # here is 100 ms to 1 s: only the pair backoff explains the wait).
        assert to_p[0][0] - hit >= 5.5, to_p[0][0] - hit
        # and its order holds: p1 (retried) before p2.
        assert [s[3] for s in to_p] == ["Thanks for your message! We received: p1",
                                        "Thanks for your message! We received: p2"], to_p
        text = dispatcher_metrics_text(stack)
        assert "sb_sends_pair_backoffs_total 1" in text, [l for l in text.splitlines() if "pair" in l]
        stack.check_logs()
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_rates_per_sender_and_order,
            test_pair_backoff_only_its_pair,
        ])
    finally:
        PG.close()
