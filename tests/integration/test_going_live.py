"""README's "Going live", step by step where the sandbox can stand in for
the providers: developing behind a tunnel whose URL changes, and the
troubleshooting table's rows (what the ingress answers, the /metrics
reason it counts, and what doctor says), against the real ingress,
dispatcher, PostgreSQL and the sandbox's management APIs.

The "tunnel" is an address of 127.0.0.0/8 in SB_PUBLIC_URL: Twilio signs
the URL it calls, so a webhook "through the tunnel" is one signed over
that URL and posted to the ingress.

Python 3 standard library only.
"""

import sbtest
from test_connect import SECRETS, doctor, lines, run, sandbox

NUMBER = "+14155550177"
STATUS = "MessageSid=SM%032d&MessageStatus=delivered&From=%%2B15550000001&To=%%2B14155550177"


def _counter(ingress, provider, reason):
    key = 'sb_signature_failures_total{provider="%s",reason="%s"}' % (provider, reason)
    return ingress.metrics().get(key, 0)


def _restart_ingress(stack, public_url):
    """Step 1 and the restart: the ingress told another SB_PUBLIC_URL."""
    stack.ingress.stop()
    stack.ingress.env["SB_PUBLIC_URL"] = public_url
    stack.ingress.start()


def _webhook_via(stack, public_url, n):
    """Twilio calling public_url: a status callback signed over it."""
    return stack.ingress.post_twilio("/twilio/status", STATUS % n, url_base=public_url,
                                     token=SECRETS["TWILIO_AUTH_TOKEN"])[0]


def test_tunnel_changes(stack):
    port = stack.ingress.port
    first = "http://127.0.0.2:%d" % port
    second = "http://127.0.0.3:%d" % port
    sandbox(stack, "DELETE", "/_sandbox/state")
    sandbox(stack, "POST", "/_sandbox/twilio/numbers", {"PhoneNumber": NUMBER})

    # the first tunnel: set SB_PUBLIC_URL, restart, connect: doctor is green for the number
    _restart_ingress(stack, first)
    out = run(stack, ["connect", "twilio", "--number", NUMBER], SB_PUBLIC_URL=first)
    assert out.returncode == 0, out.stdout + out.stderr
    out = doctor(stack, SB_PUBLIC_URL=first, TWILIO_PHONE_NUMBER=NUMBER)
    for field in ("sms_url", "voice_url", "status_callback"):
        assert lines(out, "✅", "Twilio number %s %s" % (NUMBER, field)), out.stdout
    assert lines(out, "✅", "self-test"), out.stdout
    assert _webhook_via(stack, first, 1) == 200

    # the tunnel restarts with a new URL and connect runs, but the ingress still
    # has the old one: Twilio's webhooks through the new tunnel are 403 mismatch
    out = run(stack, ["connect", "twilio", "--number", NUMBER], SB_PUBLIC_URL=second)
    assert out.returncode == 0, out.stdout + out.stderr
    before = _counter(stack.ingress, "twilio", "mismatch")
    assert _webhook_via(stack, second, 2) == 403
    assert _counter(stack.ingress, "twilio", "mismatch") == before + 1
    out = doctor(stack, SB_PUBLIC_URL=second, TWILIO_PHONE_NUMBER=NUMBER)
    assert out.returncode == 1 and lines(out, "❌", "self-test"), out.stdout
    assert "403" in lines(out, "❌", "self-test")[0], out.stdout
    print("new tunnel, old SB_PUBLIC_URL on the ingress: 403, mismatch counted, self-test ❌")

    # restarted with the new URL: 200, and doctor is green again
    _restart_ingress(stack, second)
    assert _webhook_via(stack, second, 3) == 200
    out = doctor(stack, SB_PUBLIC_URL=second, TWILIO_PHONE_NUMBER=NUMBER)
    assert lines(out, "✅", "self-test"), out.stdout
    assert lines(out, "✅", "Twilio number %s sms_url" % NUMBER), out.stdout

    # the next tunnel URL with the restart but without connect: the number
    # still points at the old tunnel, and doctor shows both URLs
    third = "http://127.0.0.4:%d" % port
    _restart_ingress(stack, third)
    out = doctor(stack, SB_PUBLIC_URL=third, TWILIO_PHONE_NUMBER=NUMBER)
    bad = lines(out, "❌", "Twilio number %s sms_url" % NUMBER)
    assert out.returncode == 1 and bad, out.stdout
    assert second + "/twilio/messages" in bad[0] and third + "/twilio/messages" in bad[0], bad
    assert "switchboard connect twilio" in bad[0], bad
    print("restart without connect: doctor ❌ with", second, "and", third)
    _restart_ingress(stack, stack.public_url)


def test_troubleshooting_rows(stack):
    ingress = stack.ingress
    # Twilio 403 "missing": no X-Twilio-Signature
    before = _counter(ingress, "twilio", "missing")
    status, _, _ = ingress.post_twilio("/twilio/status", STATUS % 10, signature=False)
    assert status == 403 and _counter(ingress, "twilio", "missing") == before + 1
    # Twilio 403 "unknown_key": a shared key the ingress does not hold
    before = _counter(ingress, "twilio", "unknown_key")
    status, _, _ = ingress.post_twilio(
        "/twilio/status", STATUS % 11, url_base=stack.public_url,
        headers={"X-Twilio-Webhooks-Signature-Settings": "key=KSunknown,algorithm=HMAC_SHA256"})
    assert status == 403 and _counter(ingress, "twilio", "unknown_key") == before + 1
    # Meta 403 "mismatch": another app's secret
    before = _counter(ingress, "meta", "mismatch")
    body = sbtest.conformance("meta-status-delivered.json")
    status, _, _ = ingress.post_meta(body, secret="another-apps-secret")
    assert status == 403 and _counter(ingress, "meta", "mismatch") == before + 1

    # 503 on one provider's routes when its secret is unset, and doctor names it
    other = sbtest.Ingress(env={"META_APP_SECRET": None, "SB_PUBLIC_URL": stack.public_url,
                                "TWILIO_AUTH_TOKEN": SECRETS["TWILIO_AUTH_TOKEN"]})
    try:
        other.start()
        status, _, _ = other.post_meta(body)
        assert status == 503, status
        status, _, _ = other.post_twilio("/twilio/status", STATUS % 12, url_base=stack.public_url,
                                         token=SECRETS["TWILIO_AUTH_TOKEN"])
        assert status == 200, status
    finally:
        other.cleanup()
    out = doctor(stack, META_APP_SECRET=None)
    named = [line for line in out.stdout.splitlines() if "META_APP_SECRET" in line]
    assert named and named[0].startswith("❌"), out.stdout
    print("troubleshooting rows: missing, unknown_key, meta mismatch counted; 503 without the"
          " secret; doctor:", named[0][:120])


def main():
    sbtest.run_tests_on_stack([test_tunnel_changes, test_troubleshooting_rows], secrets=SECRETS)


if __name__ == "__main__":
    main()
