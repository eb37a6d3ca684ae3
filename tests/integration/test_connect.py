"""`switchboard connect` and doctor's provider checks against the real
ingress, dispatcher, PostgreSQL and the provider sandbox's management APIs
(IncomingPhoneNumbers, Messaging Services, Meta app subscriptions, WABA
subscribed_apps): a number seeded with wrong URLs is a ❌ in doctor with
both URLs, `connect twilio` sets them (before/after printed, the sandbox's
state holds them, every request valid against the OpenAPI documents of
tests/conformance/provider-api/), and doctor is then ✅; `connect meta`
subscribes the app (the sandbox runs Meta's GET handshake against the real
ingress) and the WABA; a wrong verify token makes it exit 1 quoting Meta's
error.

Python 3 standard library only.
"""

import http.client
import json
import os
import subprocess
import urllib.parse

import sb_openapi
import sbtest
from sbtest import CLI

NUMBER = "+14155550142"
APP_ID = "4242424242"
WABA_ID = "5151515151"
VERIFY = "connect-verify-token"
SECRETS = {"TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",
           "META_APP_SECRET": "meta-app-secret-for-connect", "META_VERIFY_TOKEN": VERIFY}
SPECS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conformance", "provider-api")
SPEC_FILES = {"IncomingPhoneNumbers": "twilio-oai-incoming-phone-numbers.json",
              "/v1/Services": "twilio-oai-messaging-services.json",
              "/subscriptions": "meta-graph-app-subscriptions.json",
              "/subscribed_apps": "meta-oai-subscribed-apps.json"}


def sandbox(stack, method, path, form=None):
    conn = http.client.HTTPConnection("127.0.0.1", stack.sandbox_port, timeout=10)
    body = urllib.parse.urlencode(form, doseq=True) if form is not None else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    assert resp.status == 200, (method, path, resp.status, data)
    return json.loads(data) if data else None


def env_for(stack, **change):
    """What the ingress and dispatcher read, plus the CLI's own settings
    pointed at the sandbox; change (None removes)."""
    env = dict(stack.dispatcher.env)
    env.update(stack.ingress.env)
    base = "http://127.0.0.1:%d" % stack.sandbox_port
    env.update({"TWILIO_MESSAGING_API_BASE": base, "TWILIO_API_BASE": base, "META_API_BASE": base})
    for k, v in change.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run(stack, args, **change):
    out = subprocess.run([CLI] + args, capture_output=True, text=True, timeout=120,
                         env=env_for(stack, **change))
    assert "Sanitizer" not in out.stderr and "runtime error:" not in out.stderr, out.stderr
    return out


def doctor(stack, **change):
    return run(stack, ["doctor", "--timeout", "5", "--dev-env", "/nonexistent"], **change)


def lines(out, mark, name):
    return [line for line in out.stdout.splitlines() if line.startswith(mark + " " + name)]


def url(stack, route):
    return stack.public_url + route


def spec_for(path):
    for key, name in SPEC_FILES.items():
        if key in path:
            return sb_openapi.Spec(os.path.join(SPECS, name))
    raise AssertionError("no OpenAPI document for " + path)


def provider_requests(stack, since=0):
    return [r for r in stack.sandbox_requests()[since:] if not r["path"].startswith("/_sandbox")
            and any(k in r["path"] for k in SPEC_FILES)]


def assert_valid(requests):
    assert requests, "no provider API request recorded"
    for r in requests:
        ctype = (r.get("headers") or {}).get("Content-Type") or (r.get("headers") or {}).get("content-type")
        errors = spec_for(r["path"]).validate(r["method"], r["path"], r.get("query") or "",
                                              r.get("body"), ctype)
        assert not errors, (r["method"], r["path"], r.get("query"), r.get("body"), errors)


def test_twilio(stack):
    sandbox(stack, "DELETE", "/_sandbox/state")
    sandbox(stack, "POST", "/_sandbox/twilio/numbers",
            {"PhoneNumber": NUMBER, "SmsUrl": "https://old.example.com/sms", "SmsMethod": "GET",
             "VoiceUrl": url(stack, "/twilio/voice"), "StatusCallback": ""})
    # doctor: ❌ with both URLs and the connect command as the fix
    out = doctor(stack, TWILIO_PHONE_NUMBER=NUMBER)
    assert out.returncode == 1, out.stdout
    bad = lines(out, "❌", "Twilio number %s sms_url" % NUMBER)
    assert bad, out.stdout
    assert "https://old.example.com/sms" in bad[0] and url(stack, "/twilio/messages") in bad[0], bad
    assert "switchboard connect twilio --number %s" % NUMBER in bad[0], bad
    assert lines(out, "✅", "Twilio number %s voice_url" % NUMBER), out.stdout
    assert lines(out, "❌", "Twilio number %s status_callback" % NUMBER), out.stdout
    js = json.loads(run(stack, ["doctor", "--json", "--timeout", "5", "--dev-env", "/nonexistent"],
                        TWILIO_PHONE_NUMBER=NUMBER).stdout)
    assert [r for r in js if r["name"] == "Twilio number %s sms_url" % NUMBER and not r["ok"]], js

    # connect twilio: before and after, the sandbox's state, valid requests
    since = len(stack.sandbox_requests())
    out = run(stack, ["connect", "twilio", "--number", NUMBER])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "before:" in out.stdout and "after:" in out.stdout, out.stdout
    assert out.stdout.index("https://old.example.com/sms") < out.stdout.index("after:"), out.stdout
    state = sandbox(stack, "GET", "/_sandbox/state")
    number = [n for n in state["twilio"]["numbers"] if n["phone_number"] == NUMBER][0]
    assert number["sms_url"] == url(stack, "/twilio/messages"), number
    assert number["voice_url"] == url(stack, "/twilio/voice"), number
    assert number["status_callback"] == url(stack, "/twilio/status"), number
    assert number["sms_method"] == "POST" and number["status_callback_method"] == "POST", number
    requests = provider_requests(stack, since)
    assert [r for r in requests if r["method"] == "POST"], requests
    assert_valid(requests)

    # the validator can fail: the same POST with a misspelt field or a bad enum
    post = [r for r in requests if r["method"] == "POST"][0]
    spec = spec_for(post["path"])
    ctype = "application/x-www-form-urlencoded"
    assert spec.validate("POST", post["path"], "", post["body"].replace("SmsUrl", "SmsUrI"), ctype)
    assert spec.validate("POST", post["path"], "", post["body"].replace("SmsMethod=POST", "SmsMethod=PUT"), ctype)

    # --json, then doctor passes
    out = run(stack, ["connect", "twilio", "--json"], TWILIO_PHONE_NUMBER=NUMBER)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True and report["after"]["sms_url"] == url(stack, "/twilio/messages"), report
    assert report["before"]["sms_url"] == url(stack, "/twilio/messages"), report
    out = doctor(stack, TWILIO_PHONE_NUMBER=NUMBER)
    assert out.returncode == 0, out.stdout
    for field in ("sms_url", "voice_url", "status_callback", "Messaging Service"):
        assert lines(out, "✅", "Twilio number %s %s" % (NUMBER, field)), (field, out.stdout)


def test_twilio_refusals(stack):
    out = run(stack, ["connect", "twilio", "--number", "+14155550199"])
    assert out.returncode == 1 and "not found" in out.stderr, (out.returncode, out.stderr)
    out = run(stack, ["connect", "twilio", "--number", NUMBER],
              TWILIO_AUTH_TOKEN="fedcba9876543210fedcba9876543210")
    assert out.returncode == 1 and "answered 401" in out.stderr and "code 20003" in out.stderr, out.stderr
    out = run(stack, ["connect", "twilio", "--number", NUMBER], SB_PUBLIC_URL="http://hooks.example.com")
    assert out.returncode == 2 and "SB_PUBLIC_URL" in out.stderr and "https" in out.stderr, out.stderr
    out = run(stack, ["connect", "twilio", "--number", NUMBER, "--dry-run"])
    assert out.returncode == 0 and "would send: POST" in out.stdout and "SmsUrl=" in out.stdout, out.stdout


def test_messaging_service(stack):
    sandbox(stack, "POST", "/_sandbox/twilio/services",
            {"FriendlyName": "shop", "InboundRequestUrl": "https://old.example.com/ms",
             "UseInboundWebhookOnNumber": "false", "PhoneNumber": NUMBER})
    out = doctor(stack, TWILIO_PHONE_NUMBER=NUMBER)
    bad = lines(out, "❌", "Twilio number %s Messaging Service" % NUMBER)
    assert out.returncode == 1 and bad, out.stdout
    assert "https://old.example.com/ms" in bad[0] and url(stack, "/twilio/messages") in bad[0], bad
    assert_valid([r for r in provider_requests(stack) if "/v1/Services" in r["path"]])


def test_meta(stack):
    out = doctor(stack, META_APP_ID=APP_ID, META_WABA_ID=WABA_ID)
    assert lines(out, "❌", "Meta app %s webhook" % APP_ID), out.stdout
    since = len(stack.sandbox_requests())
    out = run(stack, ["connect", "meta", "--app-id", APP_ID, "--waba-id", WABA_ID, "--json"])
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True and report["app"]["after"]["callback_url"] == url(stack, "/meta/whatsapp"), report
    state = sandbox(stack, "GET", "/_sandbox/state")
    app = [a for a in state["meta"]["apps"] if str(a["id"]) == APP_ID][0]
    sub = [s for s in app["subscriptions"] if s["object"] == "whatsapp_business_account"][0]
    assert sub["callback_url"] == url(stack, "/meta/whatsapp"), sub
    assert {"messages", "message_echoes", "calls"} <= {f["name"] for f in sub["fields"]}, sub
    waba = [w for w in state["meta"]["wabas"] if str(w["id"]) == WABA_ID][0]
    assert [a for a in waba["subscribed_apps"] if str(a["id"]) == APP_ID], waba
    assert_valid(provider_requests(stack, since))
    # (the handshake is the real ingress's: test_meta_wrong_verify_token fails it)
    out = doctor(stack, META_APP_ID=APP_ID, META_WABA_ID=WABA_ID)
    assert lines(out, "✅", "Meta app %s webhook" % APP_ID), out.stdout
    assert lines(out, "✅", "Meta WABA %s subscribed apps" % WABA_ID), out.stdout


def test_meta_wrong_verify_token(stack):
    out = run(stack, ["connect", "meta", "--app-id", APP_ID], META_VERIFY_TOKEN="not-the-ingress-token")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Meta answered 400" in out.stderr and "code 2200" in out.stderr, out.stderr
    out = run(stack, ["connect", "meta", "--app-id", APP_ID, "--json"], META_VERIFY_TOKEN="not-the-ingress-token")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["ok"] is False and "2200" in report["error"], report
    # Meta refusing the app step still leaves the WABA subscribed, and says where to click
    other_waba = "5550001112223334"
    out = run(stack, ["connect", "meta", "--app-id", APP_ID, "--waba-id", other_waba],
              META_VERIFY_TOKEN="not-the-ingress-token")
    assert out.returncode == 1 and "App Dashboard" in out.stderr, out.stdout + out.stderr
    state = sandbox(stack, "GET", "/_sandbox/state")
    waba = [w for w in state["meta"]["wabas"] if str(w["id"]) == other_waba]
    assert waba and waba[0]["subscribed_apps"], state["meta"]


def test_not_configured(stack):
    out = doctor(stack, TWILIO_PHONE_NUMBER=None, META_APP_ID=None, META_WABA_ID=None)
    skipped = [l for l in out.stdout.splitlines() if l.startswith("➖ ")]
    assert len(skipped) == 3, out.stdout
    assert out.returncode == 0, out.stdout


def test_validator():
    sb_openapi.self_test()


def main():
    test_validator()
    sbtest.run_tests_on_stack([
        test_not_configured, test_twilio, test_twilio_refusals, test_messaging_service, test_meta,
        test_meta_wrong_verify_token], secrets=SECRETS)


if __name__ == "__main__":
    main()
