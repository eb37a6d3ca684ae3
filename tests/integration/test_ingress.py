"""The real switchboard-ingress on loopback: every conformance request posted
signed (plain curl and `switchboard send`), the answers, the events a
`switchboard tap` subscriber receives, every bad-input case, the prefix and
proxy settings, kill -9 and restart, and SIGTERM."""

import os
import signal
import socket
import subprocess
import time

import sbtest
from sbtest import CONFORMANCE, PUBLIC_URL, Ingress, Tap

TWILIO_FILES = {
    # file: (route, expected topic)
    "twilio-sms-inbound.form": ("/twilio/messages", "sb.v1.twilio.sms.message"),
    "twilio-whatsapp-inbound-text.form": ("/twilio/messages", "sb.v1.twilio.whatsapp.message"),
    "twilio-whatsapp-inbound-media.form": ("/twilio/messages", "sb.v1.twilio.whatsapp.message"),
    "twilio-whatsapp-inbound-location.form": ("/twilio/messages", "sb.v1.twilio.whatsapp.message"),
    "twilio-whatsapp-inbound-button.form": ("/twilio/messages", "sb.v1.twilio.whatsapp.message"),
    "twilio-message-status-sent.form": ("/twilio/status", "sb.v1.twilio.sms.status"),
    "twilio-message-status-delivered.form": ("/twilio/status", "sb.v1.twilio.sms.status"),
    "twilio-message-status-undelivered.form": ("/twilio/status", "sb.v1.twilio.sms.status"),
    "twilio-whatsapp-status-read.form": ("/twilio/status", "sb.v1.twilio.whatsapp.status"),
    "twilio-whatsapp-status-failed.form": ("/twilio/status", "sb.v1.twilio.whatsapp.status"),
    "twilio-rcs-inbound.form": ("/twilio/messages", "sb.v1.twilio.rcs.message"),
    "twilio-rcs-status-delivered.form": ("/twilio/status", "sb.v1.twilio.rcs.status"),
    "twilio-voice-inbound.form": ("/twilio/voice", "sb.v1.twilio.voice.call"),
    "twilio-voice-gather-dtmf.form": ("/twilio/gather", "sb.v1.twilio.voice.gather"),
    "twilio-voice-gather-speech.form": ("/twilio/gather", "sb.v1.twilio.voice.gather"),
    "twilio-voice-status-completed.form": ("/twilio/status", "sb.v1.twilio.voice.status"),
}


def meta_files():
    skip = ("openapi", "signature", "verification")
    names = sorted(n for n in os.listdir(CONFORMANCE)
                   if n.startswith("meta-") and n.endswith(".json") and not any(s in n for s in skip))
    assert len(names) >= 20, names
    return names


def meta_expected_topics(name):
    """The topics, in order, that a Meta payload must give: one per message
    or status of each entry x change (and one for a change with neither)."""
    import json
    doc = json.loads(sbtest.conformance(name))
    topics = []
    kinds = {"message_echoes": ("message_echoes", "echo"),
             "smb_message_echoes": ("message_echoes", "echo"),
             "user_preferences": ("user_preferences", "preference"),
             "user_id_update": ("user_id_update", "message")}  # a change of BSUID, as a system message
    for entry in doc["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            field = change.get("field", "messages")
            if field in kinds:
                key, kind = kinds[field]
                topics += ["sb.v1.meta.whatsapp." + kind] * len(value[key])
                continue
            if field == "calls":
                topics += ["sb.v1.meta.whatsapp.call"] * (
                    len(value.get("calls", [])) + len(value.get("statuses", [])))
                continue
            if field.startswith("message_template") or field == "template_category_update":
                topics.append("sb.v1.meta.whatsapp.template")
                continue
            if field in ("account_alerts", "account_update"):
                topics.append("sb.v1.meta.whatsapp.account")
                continue
            msgs = value.get("messages", [])
            sts = value.get("statuses", [])
            topics += ["sb.v1.meta.whatsapp.message"] * len(msgs)
            topics += ["sb.v1.meta.whatsapp.status"] * len(sts)
            if not msgs and not sts:
                topics.append("sb.v1.meta.whatsapp.other")
    return topics


def check_answer(route, status, headers, body):
    assert status == 200, (route, status, body)
    ctype = headers.get("Content-Type", "")
    if route == "/twilio/messages":
        assert ctype.startswith("text/xml"), ctype
        assert b"<Response/>" in body, body
    elif route == "/twilio/voice":
        assert ctype.startswith("text/xml"), ctype
        assert b'<Gather numDigits="6"' in body and b"/twilio/gather" in body and b"<Say>" in body, body
    elif route == "/twilio/gather":
        assert ctype.startswith("text/xml"), ctype
        assert b"<Say>" in body, body
    assert headers.get("X-Request-Id"), headers


def curl_post(ingress, route, path, provider):
    """Post a file with plain curl, signed by this test."""
    with open(path, "rb") as f:
        body = f.read()
    if provider == "twilio":
        sig = sbtest.twilio_signature(sbtest.TWILIO_TOKEN, PUBLIC_URL + route, sbtest.form_params(body))
        headers = ["-H", "Content-Type: application/x-www-form-urlencoded", "-H", "X-Twilio-Signature: " + sig]
    else:
        sig = sbtest.meta_signature(sbtest.META_SECRET, body)
        headers = ["-H", "Content-Type: application/json", "-H", "X-Hub-Signature-256: " + sig]
    out = subprocess.run(["curl", "-sS", "-i", "--data-binary", "@" + path] + headers +
                         ["http://127.0.0.1:%d%s" % (ingress.port, route)],
                         capture_output=True, check=True)
    raw = out.stdout
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip()] = v.strip()
    return status, hdrs, payload


def send_post(ingress, route, path, provider):
    """Post a file with `switchboard send --file`, which signs it."""
    env = dict(os.environ, TWILIO_AUTH_TOKEN=sbtest.TWILIO_TOKEN, META_APP_SECRET=sbtest.META_SECRET,
               SB_PUBLIC_URL=PUBLIC_URL)
    out = subprocess.run([sbtest.CLI, "send", "--file", path, "--provider", provider, "--path", route,
                          "--url", "http://127.0.0.1:%d" % ingress.port],
                         capture_output=True, env=env)
    assert out.returncode == 0, (route, path, out.returncode, out.stdout, out.stderr)
    return out.stdout


def post_all_conformance(ingress, poster):
    """Post every conformance payload; return the expected topic sequence."""
    expected = []
    for name, (route, topic) in TWILIO_FILES.items():
        result = poster(ingress, route, os.path.join(CONFORMANCE, name), "twilio")
        if isinstance(result, tuple):
            check_answer(route, *result)
        expected.append((topic, name))
    for name in meta_files():
        result = poster(ingress, "/meta/whatsapp", os.path.join(CONFORMANCE, name), "meta")
        if isinstance(result, tuple):
            check_answer("/meta/whatsapp", *result)
        expected += [(t, name) for t in meta_expected_topics(name)]
    return expected


def check_tap(tap, warmups, expected):
    total = warmups + len(expected)
    events = tap.wait_for(lambda ev: len(ev) >= total, timeout=15)
    assert len(events) == total, "tap got %d events, expected %d" % (len(events), total)
    seqs = [int(e["seq"]) for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + total)), "sequence not consecutive: %s" % seqs
    got = [e["topic"] for e in events[warmups:]]
    want = [t for t, _ in expected]
    assert got == want, "topics differ:\n got %s\nwant %s" % (got, want)
    by_seq = {int(e["seq"]): e for e in events}
    for e, (_, name) in zip(events[warmups:], expected):
        assert e.get("ingress_id") == "test-ingress", e
        # One body per request: on its first event, seq - request_index.
        carrier = by_seq.get(int(e["seq"]) - int(e.get("request_index", 0)), {})
        assert carrier.get("raw_body"), ("event without the original bytes", name)
        assert e.get("id"), e
    return events


def test_conformance_with_curl_and_send():
    ingress = Ingress().start()
    try:
        tap = Tap(ingress.pub)
        tap.wait_subscribed(ingress)
        warm = len(tap.events)
        expected = post_all_conformance(ingress, curl_post)
        events = check_tap(tap, warm, expected)
        # spot-check normalized fields made it through the wire
        by_name = {}
        for e, (_, name) in zip(events[warm:], expected):
            by_name.setdefault(name, e)
        sms = by_name["twilio-sms-inbound.form"]
        assert sms["from"].startswith("+1") and "amazing" in sms["text"], sms
        wa = by_name["twilio-whatsapp-inbound-text.form"]
        assert wa["channel"] == "whatsapp" and not wa["from"].startswith("whatsapp:"), wa
        gather = by_name["twilio-voice-gather-dtmf.form"]
        assert gather["digits"] == "1234", gather
        text = by_name["meta-text.json"]
        assert text["provider"] == "meta" and text["provider_id"].startswith("wamid."), text
        tap.close()

        # the same through `switchboard send --file`
        tap = Tap(ingress.pub)
        tap.wait_subscribed(ingress)
        warm = len(tap.events)
        expected = post_all_conformance(ingress, send_post)
        check_tap(tap, warm, expected)
        tap.close()
        assert ingress.stop() == 0
        ingress.check_log()
    finally:
        ingress.cleanup()


def test_send_kinds():
    """Each KIND of `switchboard send` gives a 200 and the right event."""
    ingress = Ingress().start()
    try:
        tap = Tap(ingress.pub)
        tap.wait_subscribed(ingress)
        warm = len(tap.events)
        env = dict(os.environ, TWILIO_AUTH_TOKEN=sbtest.TWILIO_TOKEN, META_APP_SECRET=sbtest.META_SECRET,
                   SB_PUBLIC_URL=PUBLIC_URL)
        kinds = {
            "twilio-sms": "sb.v1.twilio.sms.message",
            "twilio-whatsapp": "sb.v1.twilio.whatsapp.message",
            "twilio-voice": "sb.v1.twilio.voice.call",
            "twilio-gather": "sb.v1.twilio.voice.gather",
            "twilio-status": "sb.v1.twilio.sms.status",
            "meta-text": "sb.v1.meta.whatsapp.message",
            "meta-status": "sb.v1.meta.whatsapp.status",
        }
        for kind in kinds:
            out = subprocess.run([sbtest.CLI, "send", kind, "--body", "hello " + kind,
                                  "--url", "http://127.0.0.1:%d" % ingress.port],
                                 capture_output=True, env=env)
            assert out.returncode == 0, (kind, out.stdout, out.stderr)
        events = tap.wait_for(lambda ev: len(ev) >= warm + len(kinds))
        got = [e["topic"] for e in events[warm:]]
        assert got == list(kinds.values()), got
        sms = events[warm]
        assert sms["text"] == "hello twilio-sms", sms
        tap.close()
    finally:
        ingress.cleanup()


def raw_http(port, data, read=True, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    if len(rest) >= length:
                        break
        except socket.timeout:
            pass
    s.close()
    return out


def test_bad_input():
    ingress = Ingress(env={"SB_MAX_BODY": "65536"}).start()
    try:
        before = len(sbtest.journal_records(ingress.journal))
        form = sbtest.conformance("twilio-sms-inbound.form")
        meta = sbtest.conformance("meta-text.json")

        # 404 unknown path, 405 wrong method (with Allow)
        assert ingress.request("GET", "/nope")[0] == 404
        assert ingress.request("POST", "/twilio/messages/extra", b"x",
                               {"Content-Type": "application/x-www-form-urlencoded"})[0] == 404
        status, headers, _ = ingress.request("GET", "/twilio/messages")
        assert status == 405 and headers.get("Allow") == "POST", (status, headers)
        status, headers, _ = ingress.request("PUT", "/meta/whatsapp", b"{}", {"Content-Type": "application/json"})
        assert status == 405 and "POST" in headers.get("Allow", ""), (status, headers)
        assert ingress.request("DELETE", "/healthz")[0] == 405

        # 415 wrong content type
        status, _, _ = ingress.post_twilio("/twilio/messages", form, headers={"Content-Type": "text/plain"})
        assert status == 415, status
        status, _, _ = ingress.post_meta(meta, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 415, status
        status, _, _ = ingress.post_twilio("/twilio/messages", form, headers={"Content-Type": ""})
        assert status == 415, status

        # 413 too large: announced, and sent chunked without a length
        big = b'{"object":"whatsapp_business_account","entry":[],"pad":"' + b"x" * 70000 + b'"}'
        status, _, _ = ingress.post_meta(big)
        assert status == 413, status
        chunked = (b"POST /meta/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\nX-Hub-Signature-256: sha256=00\r\n\r\n")
        for _ in range(20):
            chunked += b"1000\r\n" + b"y" * 4096 + b"\r\n"
        chunked += b"0\r\n\r\n"
        out = raw_http(ingress.port, chunked)
        assert out.startswith(b"HTTP/1.1 413"), out[:100]

        # 403 missing or wrong signatures, counted by provider and reason
        assert ingress.post_twilio("/twilio/messages", form, signature=False)[0] == 403
        assert ingress.post_twilio("/twilio/messages", form, signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")[0] == 403
        assert ingress.post_twilio("/twilio/messages", form, token="wrong-token")[0] == 403
        assert ingress.post_twilio("/twilio/messages", form, url_base="https://other.example")[0] == 403
        assert ingress.post_meta(meta, signature=False)[0] == 403
        assert ingress.post_meta(meta, secret="wrong")[0] == 403
        assert ingress.post_meta(meta, signature="sha256=zz")[0] == 403
        tampered = meta.replace(b"Hello", b"Hellp") if b"Hello" in meta else meta + b" "
        assert ingress.post_meta(tampered, signature=sbtest.meta_signature(sbtest.META_SECRET, meta))[0] == 403
        # a wrongly signed *malformed* form is still 403, not 400
        assert ingress.post_twilio("/twilio/messages", "From=%ZZ&Body=x", signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")[0] == 403
        m = ingress.metrics()
        assert m['sb_signature_failures_total{provider="twilio",reason="missing"}'] == 1, m
        assert m['sb_signature_failures_total{provider="twilio",reason="mismatch"}'] >= 3, m
        assert m['sb_signature_failures_total{provider="meta",reason="missing"}'] == 1, m
        assert m['sb_signature_failures_total{provider="meta",reason="mismatch"}'] == 2, m
        assert m['sb_signature_failures_total{provider="meta",reason="malformed"}'] == 1, m

        # 400: validly signed but malformed bodies
        assert ingress.post_twilio("/twilio/messages", "From=%ZZ&Body=x&MessageSid=SM1")[0] == 400
        assert ingress.post_twilio("/twilio/messages", "Body=%4")[0] == 400
        assert ingress.post_twilio("/twilio/messages", "Body=no+sid+no+from")[0] == 400
        assert ingress.post_twilio("/twilio/gather", "Digits=12")[0] == 400
        assert ingress.post_twilio("/twilio/messages", "MessageSid=SM1&From=%2B1&To=%2B2&NumMedia=abc")[0] == 400
        assert ingress.post_meta(b'{"object":')[0] == 400
        assert ingress.post_meta(b"[1,2,3]")[0] == 400
        assert ingress.post_meta(b'{"object":"whatsapp_business_account","entry":"x"}')[0] == 400
        assert ingress.post_meta(b"")[0] == 400
        assert ingress.post_meta(b"[" * 60000)[0] == 400
        m = ingress.metrics()
        assert m['sb_rejected_requests_total{reason="malformed"}'] >= 10, m
        assert m['sb_http_requests_total{route="meta_whatsapp",code="400"}'] >= 5, m

        # nothing refused reached the journal
        after = len(sbtest.journal_records(ingress.journal))
        assert after == before, (before, after)
        # the server is still fine
        assert ingress.post_twilio("/twilio/messages", form)[0] == 200
        assert ingress.stop() == 0
        ingress.check_log()
    finally:
        ingress.cleanup()


def test_meta_handshake():
    ingress = Ingress().start()
    try:
        q = "/meta/whatsapp?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" + sbtest.META_VERIFY
        status, headers, body = ingress.request("GET", q)
        assert status == 200 and body == b"1158201444", (status, body)
        assert headers["Content-Type"].startswith("text/plain"), headers
        for bad in ["/meta/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong",
                    "/meta/whatsapp?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=" + sbtest.META_VERIFY,
                    "/meta/whatsapp?hub.mode=subscribe&hub.verify_token=" + sbtest.META_VERIFY,
                    "/meta/whatsapp?hub.mode=subscribe&hub.challenge=1",
                    "/meta/whatsapp",
                    "/meta/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=" + sbtest.META_VERIFY + "x",
                    "/meta/whatsapp?%zz"]:
            assert ingress.request("GET", bad)[0] == 403, bad
        # the official sample from tests/conformance/meta-verification-get.json
        import json
        sample = json.loads(sbtest.conformance("meta-verification-get.json"))
        assert "1158201444" in json.dumps(sample)
    finally:
        ingress.cleanup()


def test_not_configured_is_503():
    ingress = Ingress(env={"TWILIO_AUTH_TOKEN": None, "META_APP_SECRET": None,
                           "META_VERIFY_TOKEN": None}).start()
    try:
        form = sbtest.conformance("twilio-sms-inbound.form")
        assert ingress.post_twilio("/twilio/messages", form)[0] == 503
        assert ingress.post_meta(sbtest.conformance("meta-text.json"))[0] == 503
        assert ingress.request("GET", "/meta/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x")[0] == 503
        ingress.stop()
        log = ingress.log_text()
        assert "TWILIO_AUTH_TOKEN is not set" in log and "META_APP_SECRET" in log, log
        assert len(sbtest.journal_records(ingress.journal)) == 0
    finally:
        ingress.cleanup()


def test_insecure_skip_signatures_warns():
    ingress = Ingress(env={"SB_INSECURE_SKIP_SIGNATURES": "1", "TWILIO_AUTH_TOKEN": None}).start()
    try:
        form = sbtest.conformance("twilio-sms-inbound.form")
        assert ingress.post_twilio("/twilio/messages", form, signature=False)[0] == 200
        ingress.stop()
        assert "SB_INSECURE_SKIP_SIGNATURES=1" in ingress.log_text() and " warn " in ingress.log_text()
    finally:
        ingress.cleanup()


def test_prefix_and_health():
    ingress = Ingress(env={"SB_PATH_PREFIX": "/api/v1"}).start()
    try:
        form = sbtest.conformance("twilio-sms-inbound.form")
        assert ingress.post_twilio("/api/v1/twilio/messages", form)[0] == 200
        # a proxy that strips the prefix: the route answers without it too
        assert ingress.post_twilio("/twilio/messages", form)[0] == 200
        # signed over the other path: refused
        sig = sbtest.twilio_signature(sbtest.TWILIO_TOKEN, PUBLIC_URL + "/twilio/messages", sbtest.form_params(form))
        assert ingress.post_twilio("/api/v1/twilio/messages", form, signature=sig)[0] == 403
        assert ingress.post_meta(sbtest.conformance("meta-text.json"), path="/api/v1/meta/whatsapp")[0] == 200
        assert ingress.request("GET", "/api/v1/healthz")[0] == 200
        assert ingress.request("GET", "/api/v2/healthz")[0] == 404
        status, _, body = ingress.request("GET", "/api/v1/readyz")
        assert status == 200 and body == b"ready\n", (status, body)
        status, headers, body = ingress.request("GET", "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
        text = body.decode()
        for name in ("sb_journal_events_total", "sb_http_requests_total", "sb_signature_failures_total",
                     "sb_journal_commit_seconds_bucket", "sb_published_events_total", "sb_journal_bytes"):
            assert name in text, name
        assert "# TYPE sb_http_requests_total counter" in text
        m = ingress.metrics()
        assert m["sb_journal_events_total"] == 3, m["sb_journal_events_total"]
        # default voice TwiML points at this ingress's gather under the prefix
        voice = sbtest.conformance("twilio-voice-inbound.form")
        status, _, body = ingress.post_twilio("/api/v1/twilio/voice", voice)
        assert status == 200 and b'action="' + PUBLIC_URL.encode() + b'/api/v1/twilio/gather"' in body, body
    finally:
        ingress.cleanup()


def test_host_and_forwarded_proto():
    """Without SB_PUBLIC_URL the URL is scheme + Host + path; the scheme
    comes from X-Forwarded-Proto only with SB_TRUST_PROXY=1."""
    form = sbtest.conformance("twilio-sms-inbound.form")
    for trust in ("0", "1"):
        ingress = Ingress(env={"SB_PUBLIC_URL": None, "SB_TRUST_PROXY": trust}).start()
        try:
            host = "127.0.0.1:%d" % ingress.port
            plain = "http://%s" % host
            assert ingress.post_twilio("/twilio/messages", form, url_base=plain)[0] == 200
            # behind a TLS-terminating proxy, Twilio signed https://Host/...
            tls = "https://" + host
            status = ingress.post_twilio("/twilio/messages", form, url_base=tls,
                                         headers={"X-Forwarded-Proto": "https"})[0]
            assert status == (200 if trust == "1" else 403), (trust, status)
            # the SDKs' port variants: https://host:443 signed, Host without port
            status = ingress.post_twilio("/twilio/messages", form, url_base="https://hooks.example.test:443",
                                         headers={"Host": "hooks.example.test", "X-Forwarded-Proto": "https"})[0]
            assert status == (200 if trust == "1" else 403), (trust, status)
        finally:
            ingress.cleanup()


def test_bad_host_is_400():
    """Without SB_PUBLIC_URL a Host that cannot make a URL is 400, also with
    a malformed body (checked leniently); nothing leaks (ASan build)."""
    ingress = Ingress(env={"SB_PUBLIC_URL": None}).start()
    try:
        for body in (sbtest.conformance("twilio-sms-inbound.form"), "Body=%zz&From=%2B1"):
            status = ingress.post_twilio("/twilio/messages", body, url_base="http://bad host",
                                         headers={"Host": "bad host/x"})[0]
            assert status == 400, (body, status)
        assert ingress.stop() == 0
        ingress.check_log(allow_errors=("missing or bad Host",))
    finally:
        ingress.cleanup()


def test_twiml_files_and_bad_config():
    tmp = __import__("tempfile").mkdtemp()
    voice = os.path.join(tmp, "voice.xml")
    with open(voice, "w") as f:
        f.write('<?xml version="1.0"?><Response><Say>Custom voice</Say></Response>')
    gather = os.path.join(tmp, "gather.xml")
    with open(gather, "w") as f:
        f.write("<Response><Say>Custom gather</Say></Response>")
    ingress = Ingress(env={"SB_TWILIO_VOICE_TWIML": voice, "SB_TWILIO_GATHER_TWIML": gather}).start()
    try:
        body = ingress.post_twilio("/twilio/voice", sbtest.conformance("twilio-voice-inbound.form"))[2]
        assert b"Custom voice" in body, body
        body = ingress.post_twilio("/twilio/gather", sbtest.conformance("twilio-voice-gather-dtmf.form"))[2]
        assert b"Custom gather" in body, body
    finally:
        ingress.cleanup()
    # a bad value stops the start with a message naming the variable
    for name, value in [("SB_MAX_BODY", "lots"), ("SB_LISTEN", "nowhere"), ("SB_PUB", "udp://x"),
                        ("SB_PUBLIC_URL", "ftp://x"), ("SB_TRUST_PROXY", "maybe"),
                        ("SB_PATH_PREFIX", "api/"), ("SB_HTTP_THREADS", "1"), ("SB_LOG_LEVEL", "loud"),
                        ("SB_TWILIO_VOICE_TWIML", "/nonexistent/voice.xml")]:
        ing = Ingress(env={name: value})
        out = subprocess.run([sbtest.INGRESS], env=ing.env, capture_output=True, timeout=10)
        assert out.returncode != 0, (name, value)
        assert name in out.stderr.decode(), (name, out.stderr)
        ing.cleanup()
    # NAME_FILE
    secret = os.path.join(tmp, "token")
    with open(secret, "w") as f:
        f.write(sbtest.TWILIO_TOKEN + "\n")
    ingress = Ingress(env={"TWILIO_AUTH_TOKEN": None, "TWILIO_AUTH_TOKEN_FILE": secret}).start()
    try:
        assert ingress.post_twilio("/twilio/messages", sbtest.conformance("twilio-sms-inbound.form"))[0] == 200
    finally:
        ingress.cleanup()
    # --help lists the settings
    out = subprocess.run([sbtest.INGRESS, "--help"], capture_output=True, check=True)
    for name in ("SB_LISTEN", "SB_JOURNAL_DIR", "TWILIO_AUTH_TOKEN", "SB_MAX_BODY", "default: 127.0.0.1:8080"):
        assert name in out.stdout.decode(), name
    # the port is taken: a clear error, non-zero exit
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    ing = Ingress(port=blocker.getsockname()[1])
    out = subprocess.run([sbtest.INGRESS], env=ing.env, capture_output=True, timeout=10)
    blocker.close()
    assert out.returncode != 0 and "cannot start the HTTP server" in out.stderr.decode(), out.stderr
    ing.cleanup()


def test_slow_client_cut_off():
    ingress = Ingress(env={"SB_HTTP_REQUEST_TIMEOUT_MS": "500"}).start()
    try:
        s = socket.create_connection(("127.0.0.1", ingress.port))
        s.sendall(b"POST /twilio/messages HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(5)
        start = time.time()
        data = s.recv(100)  # the server closes (or answers an error) without waiting forever
        assert time.time() - start < 4, "slow header client not cut off"
        s.close()
        # a body that never completes
        s = socket.create_connection(("127.0.0.1", ingress.port))
        s.sendall(b"POST /meta/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\nX-Hub-Signature-256: sha256=00\r\n\r\n{")
        s.settimeout(5)
        start = time.time()
        data = s.recv(1000)
        assert time.time() - start < 4, "slow body client not cut off"
        s.close()
        assert ingress.request("GET", "/healthz")[0] == 200
        del data
    finally:
        ingress.cleanup()


def test_kill9_and_restart_resumes():
    ingress = Ingress().start()
    try:
        acked = []
        for i in range(30):
            body = ("MessageSid=SM%032d&AccountSid=AC%032d&From=%%2B1555000%04d&To=%%2B15559990000&Body=n%d"
                    % (i, 1, i, i))
            status, _, _ = ingress.post_twilio("/twilio/messages", body)
            assert status == 200
            acked.append("SM%032d" % i)
        ingress.kill9()
        records = sbtest.journal_records(ingress.journal)
        ids = [r["provider_id"] for r in records]
        assert ids == acked, "journal lost or reordered acknowledged events"
        seqs = [int(r["seq"]) for r in records]
        assert seqs == list(range(1, 31)), seqs

        ingress.start()
        tap = Tap(ingress.pub)
        tap.wait_subscribed(ingress)
        first = tap.events[0]
        assert int(first["seq"]) > 30, first["seq"]
        records = sbtest.journal_records(ingress.journal)
        seqs = [int(r["seq"]) for r in records]
        assert seqs == list(range(1, len(records) + 1)), "sequence did not resume without gaps"
        assert [r["provider_id"] for r in records[:30]] == acked
        epochs = {r["epoch"] for r in records}
        assert len(epochs) == 1, epochs
        tap.close()
        assert ingress.stop() == 0
    finally:
        ingress.cleanup()


def test_sigterm_finishes_and_exits_zero():
    ingress = Ingress().start()
    try:
        import threading
        results = []

        def post_many():
            for i in range(50):
                body = "MessageSid=SMterm%028d&From=%%2B1&To=%%2B2&Body=x" % i
                try:
                    results.append(ingress.post_twilio("/twilio/messages", body)[0])
                except OSError:
                    results.append("closed")

        t = threading.Thread(target=post_many)
        t.start()
        time.sleep(0.05)
        ingress.proc.send_signal(signal.SIGTERM)
        t.join()
        assert ingress.proc.wait(15) == 0
        ok = results.count(200)
        records = sbtest.journal_records(ingress.journal)
        assert len(records) >= ok, (len(records), ok)
        assert "stopped" in ingress.log_text()
        ingress.check_log()
    finally:
        ingress.cleanup()


if __name__ == "__main__":
    sbtest.run_tests([
        test_conformance_with_curl_and_send,
        test_send_kinds,
        test_bad_input,
        test_meta_handshake,
        test_not_configured_is_503,
        test_insecure_skip_signatures_warns,
        test_prefix_and_health,
        test_host_and_forwarded_proto,
        test_bad_host_is_400,
        test_twiml_files_and_bad_config,
        test_slow_client_cut_off,
        test_kill9_and_restart_resumes,
        test_sigterm_finishes_and_exits_zero,
    ])
