"""Twilio RCS and shared-key signatures through the real ingress, dispatcher,
PostgreSQL and the provider sandbox (issue 12): an rcs: webhook is published
on sb.v1.twilio.rcs.message and stored as channel rcs; its reply goes to the
sandbox From=rcs:<sender> To=rcs:<user>; the sandbox's rcs status callbacks
come back through the ingress (sb.v1.twilio.rcs.status) and the reply ends
delivered. A webhook signed with a shared key (HMAC-SHA256, the key named in
X-Twilio-Webhooks-Signature-Settings) is 200, one naming a key we do not
hold is 403 and counted as unknown_key, one naming an unknown algorithm as
unknown_algorithm, and one signed with a retired secret as mismatch."""

import base64
import hashlib
import hmac
import subprocess
import urllib.parse

import sbtest
from sbtest import Postgres, Stack, Tap

PG = None

AGENT = "sb_demo_agent"
USER = "+14017122661"
KEYS = "key-2026a=first-secret-for-tests,key-2026b=second-secret-for-tests"


def rcs_message(sid, text):
    # the fixture's parameters, with this test's sid and text
    params = sbtest.form_params(sbtest.conformance("twilio-rcs-inbound.form"))
    params = [(k, sid if k in ("MessageSid", "SmsSid", "SmsMessageSid") else text if k == "Body" else v)
              for k, v in params]
    return urllib.parse.urlencode(params)


def sharedkey_signature(secret, url, body):
    """twilio-node's signed string (URL + sorted key+value), HMAC-SHA256, base64."""
    params = sbtest.form_params(body.encode())
    data = url
    for k in sorted({k for k, _ in params}):
        for v in sorted({v for kk, v in params if kk == k}):
            data += k + v
    return base64.b64encode(hmac.new(secret.encode(), data.encode(), hashlib.sha256).digest()).decode()


def test_rcs_webhook_reply_and_status():
    stack = Stack(PG)
    tap = Tap(stack.ingress.pub)
    try:
        stack.start()
        # PUB/SUB joins asynchronously: status probes (no reply) until one is seen
        for n in range(100):
            if tap.wait_for(lambda events: events, timeout=0.2):
                break
            stack.post_twilio("/twilio/status", "MessageSid=SMtap%029d&MessageStatus=sent&From=%%2B15550000001"
                              "&To=%%2B15550000002&AccountSid=%s" % (n, sbtest.TWILIO_SID))
        assert tap.wait_for(lambda events: events, timeout=5), "tap never received an event"
        sid = "SM" + "7" * 32
        status, _, _ = stack.post_twilio("/twilio/messages", rcs_message(sid, "hello over rcs"))
        assert status == 200, status
        seen = tap.wait_for(lambda events: any(e.get("provider_id") == sid for e in events))
        topics = [e["topic"] for e in seen if e.get("provider_id") == sid]
        assert topics == ["sb.v1.twilio.rcs.message"], topics
        stack.wait_scalar("SELECT channel || ' ' || contact_addr || ' ' || our_addr FROM messages"
                          " WHERE direction = 'inbound' AND provider_id = '%s'" % sid,
                          "rcs %s %s" % (USER, AGENT))
        # the reply: over RCS, from the sender the user wrote to
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE channel = 'rcs' AND state = 'sent'", 1)
        sends = [r for r in stack.sandbox_sends() if r["path"].endswith("/Messages.json")]
        rcs_sends = [dict((k, v) for k, v in r["params"]) for r in sends]
        rcs_sends = [p for p in rcs_sends if p.get("To") == "rcs:" + USER]
        assert len(rcs_sends) == 1, sends
        assert rcs_sends[0]["From"] == "rcs:" + AGENT, rcs_sends
        assert rcs_sends[0]["Body"] == "Thanks for your message! We received: hello over rcs", rcs_sends
        # the sandbox's status callbacks close the loop over the rcs channel
        stack.wait_scalar("SELECT status FROM messages WHERE direction = 'outbound' AND channel = 'rcs'",
                          "delivered")
        stack.wait_scalar("SELECT count(*) FROM events WHERE channel = 'rcs' AND kind = 'status'", 2)
        seen = tap.wait_for(lambda events: any(e["topic"] == "sb.v1.twilio.rcs.status" for e in events))
        assert any(e["topic"] == "sb.v1.twilio.rcs.status" for e in seen), [e["topic"] for e in seen]
        stack.check_logs()
        stack.ingress.check_log()
    finally:
        tap.close()
        stack.close()


def test_shared_keys():
    stack = Stack(PG, callbacks=False, ingress_env={"TWILIO_WEBHOOK_SHARED_KEYS": KEYS}).start()
    try:
        url = stack.public_url + "/twilio/messages"

        def post(sid, key, secret, algorithm="HMAC_SHA256"):
            body = rcs_message(sid, "signed with " + key)
            headers = {"X-Twilio-Webhooks-Signature-Settings": "key=%s,algorithm=%s" % (key, algorithm)}
            return stack.ingress.post_twilio("/twilio/messages", body, headers=headers,
                                             signature=sharedkey_signature(secret, url, body))[0]

        before = stack.ingress.metrics()
        # both keys of a rotation are accepted
        assert post("SM" + "a" * 32, "key-2026a", "first-secret-for-tests") == 200
        assert post("SM" + "b" * 32, "key-2026b", "second-secret-for-tests") == 200
        stack.wait_scalar("SELECT count(*) FROM events WHERE provider_id IN ('SM%s', 'SM%s')"
                          % ("a" * 32, "b" * 32), 2)
        # a key we do not hold, an algorithm we do not know, a retired secret
        assert post("SM" + "c" * 32, "key-2025z", "first-secret-for-tests") == 403
        assert post("SM" + "d" * 32, "key-2026a", "first-secret-for-tests", "HMAC_SHA512") == 403
        assert post("SM" + "e" * 32, "key-2026a", "old-secret") == 403
        after = stack.ingress.metrics()

        def grew(reason):
            name = 'sb_signature_failures_total{provider="twilio",reason="%s"}' % reason
            return after.get(name, 0) - before.get(name, 0)

        assert grew("unknown_key") == 1 and grew("unknown_algorithm") == 1 and grew("mismatch") == 1, after
        # without the header, the auth token and SHA-1 as before
        assert stack.post_twilio("/twilio/messages", rcs_message("SM" + "f" * 32, "classic"))[0] == 200
        stack.wait_scalar("SELECT count(*) FROM events WHERE provider_id LIKE 'SM%%' AND channel = 'rcs'"
                          " AND provider_id IN ('SM%s', 'SM%s', 'SM%s', 'SM%s', 'SM%s')"
                          % ("b" * 32, "c" * 32, "d" * 32, "e" * 32, "f" * 32), 2)
        stack.check_logs()
    finally:
        stack.close()


def test_bad_shared_keys_exit():
    for value in ("k1=a,k1=b", "k1=", "k1"):
        env = {"TWILIO_WEBHOOK_SHARED_KEYS": value, "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sbtest.INGRESS], env=env, capture_output=True, timeout=20)
        err = out.stderr.decode()
        assert out.returncode != 0 and "TWILIO_WEBHOOK_SHARED_KEYS" in err, (value, out.returncode, err)


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_bad_shared_keys_exit,
            test_rcs_webhook_reply_and_status,
            test_shared_keys,
        ])
    finally:
        PG.close()
