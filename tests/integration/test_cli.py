"""The `switchboard` command-line tool without the ingress: help and flag
errors of every subcommand, `send` requests checked byte for byte against
the providers' signature algorithms (and against the conformance vectors),
`send` over real HTTP to a recording server, `journal` refusing what is not
a journal, and `tap` against a minimal ZMTP 3.0 publisher written here, so
the SUB side, filtering, bad frames, --count, --timeout and signals are
exercised without a running ingress.

Python 3 standard library only.
"""

import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import sbtest
from sbtest import CLI, CONFORMANCE

TOKEN = "cli-test-twilio-token"
SECRET = "cli-test-meta-secret"
VERIFY = "cli-test-verify"
PUBLIC = "https://hooks.example.test"


def env(**extra):
    """A clean environment: nothing of the caller's switchboard settings."""
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            e[k] = os.environ[k]
    for k, v in extra.items():
        if v is not None:
            e[k] = v
    return e


SIGNING = dict(TWILIO_AUTH_TOKEN=TOKEN, META_APP_SECRET=SECRET, META_VERIFY_TOKEN=VERIFY)


def check_sanitizers(out):
    err = out.stderr.decode(errors="replace")
    assert "AddressSanitizer" not in err and "LeakSanitizer" not in err \
        and "runtime error:" not in err, err


def run(args, timeout=30, **extra):
    """Run the tool; a sanitizer report on stderr fails whatever the status."""
    out = subprocess.run([CLI] + args, capture_output=True, timeout=timeout, env=env(**extra))
    check_sanitizers(out)
    return out


def parse_requests(out):
    """Split --print-only output into (method, url, headers, body) tuples."""
    requests = []
    pos = 0
    while pos < len(out):
        while out[pos:pos + 1] == b"\n":
            pos += 1
        if pos >= len(out):
            break
        end = out.index(b"\n", pos)
        method, url = out[pos:end].decode().split(" ", 1)
        pos = end + 1
        headers = {}
        while True:
            end = out.index(b"\n", pos)
            line = out[pos:end].decode()
            pos = end + 1
            if not line:
                break
            k, _, v = line.partition(": ")
            headers[k] = v
        length = int(headers.get("Content-Length", "0"))
        body = out[pos:pos + length]
        pos += length
        assert out[pos:pos + 1] == b"\n", "no newline after the body"
        pos += 1
        requests.append((method, url, headers, body))
    return requests


def print_only(args, **extra):
    settings = dict(SIGNING)
    settings.update(extra)
    out = run(["send"] + args + ["--print-only"], **settings)
    assert out.returncode == 0, (args, out.returncode, out.stderr)
    check_sanitizers(out)
    return parse_requests(out.stdout)


def check_twilio_signed(request, url):
    method, _, headers, body = request
    assert method == "POST", method
    assert headers["Content-Type"] == "application/x-www-form-urlencoded", headers
    params = sbtest.form_params(body)
    want = sbtest.twilio_signature(TOKEN, url, params)
    assert headers.get("X-Twilio-Signature") == want, (headers, url, want)
    return dict(params)


def check_meta_signed(request):
    method, _, headers, body = request
    assert method == "POST", method
    assert headers["Content-Type"] == "application/json", headers
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers.get("X-Hub-Signature-256") == want, (headers, want)
    body.decode("ascii")  # Meta escapes non-ASCII as \uXXXX
    return json.loads(body)


# --------------------------------------------------------------------------
# Help and flags


def test_help():
    out = run(["--help"])
    assert out.returncode == 0, out
    text = out.stdout.decode()
    for word in ("tap", "send", "journal", "sandbox", "TWILIO_AUTH_TOKEN", "META_APP_SECRET",
                 "SB_PUBLIC_URL", "SB_PATH_PREFIX"):
        assert word in text, (word, text)
    out = run(["--version"])
    assert out.returncode == 0 and re.match(rb"switchboard \d+\.\d+", out.stdout), out
    out = run([])
    assert out.returncode == 2 and b"Usage" in out.stderr, out
    out = run(["frobnicate"])
    assert out.returncode == 2 and b"unknown command" in out.stderr, out


def test_subcommand_help():
    for cmd in ("tap", "send", "journal"):
        for args in ([cmd, "--help"], [cmd, "-h"], ["help", cmd]):
            out = run(args)
            assert out.returncode == 0, (args, out)
            assert out.stdout.startswith(b"Usage: switchboard " + cmd.encode()), (args, out.stdout)
            assert not out.stderr, (args, out.stderr)
    text = run(["send", "--help"]).stdout.decode()
    for kind in ("twilio-sms", "twilio-whatsapp", "twilio-voice", "twilio-gather", "twilio-status",
                 "meta-text", "meta-status"):
        assert kind in text, kind
    # help works even with a bad setting in the environment
    out = run(["send", "--help"], SB_PUBLIC_URL="not a url")
    assert out.returncode == 0, out


def test_bad_flags():
    cases = [
        ["tap", "--bogus"],
        ["tap", "--count"],
        ["tap", "--count", "0"],
        ["tap", "--count", "12x"],
        ["tap", "--timeout", "-1"],
        ["tap", "--timeout", "soon"],
        ["tap", "not-an-endpoint"],
        ["send"],
        ["send", "no-such-kind"],
        ["send", "twilio-sms", "meta-text"],
        ["send", "twilio-sms", "--bogus"],
        ["send", "twilio-sms", "-x"],
        ["send", "twilio-sms", "--count"],
        ["send", "twilio-sms", "--count", "0"],
        ["send", "twilio-sms", "--count", "-3"],
        ["send", "twilio-sms", "--url", "ftp://x"],
        ["send", "twilio-sms", "--media", "not-a-url"],
        ["send", "twilio-sms", "--error-code", "abc"],
        ["send", "twilio-sms", "--path", "/twilio/messages"],
        ["send", "--file", "x.form", "twilio-sms"],
        ["send", "--file", "x.txt"],
        ["send", "--file", "x.form", "--provider", "aws"],
        ["send", "--file", "x.form", "--path", "no-slash"],
        ["journal", "--bogus"],
        ["journal", "--from", "0"],
        ["journal", "--from"],
        ["journal", "a", "b"],
    ]
    for args in cases:
        out = run(args, **SIGNING)
        assert out.returncode == 2, (args, out.returncode, out.stdout, out.stderr)
        err = out.stderr.decode()
        assert err.startswith("switchboard "), (args, err)
        assert "--help" in err, (args, err)
        assert not out.stdout, (args, out.stdout)
    # a bad setting is a usage error too, naming the variable
    out = run(["send", "twilio-sms", "--print-only"], SB_PUBLIC_URL="ftp://x", **SIGNING)
    assert out.returncode == 2 and b"SB_PUBLIC_URL" in out.stderr, out


def test_missing_secret():
    for kind, name in (("twilio-sms", b"TWILIO_AUTH_TOKEN"), ("twilio-status", b"TWILIO_AUTH_TOKEN"),
                       ("meta-text", b"META_APP_SECRET"), ("meta-status", b"META_APP_SECRET"),
                       ("meta-verify", b"META_VERIFY_TOKEN")):
        out = run(["send", kind, "--print-only"])
        assert out.returncode == 2, (kind, out)
        assert name in out.stderr and b"--no-sign" in out.stderr, (kind, out.stderr)
        assert not out.stdout, out.stdout
    out = run(["send", "--file", os.path.join(CONFORMANCE, "meta-text.json"), "--print-only"])
    assert out.returncode == 2 and b"META_APP_SECRET" in out.stderr, out
    # --no-sign needs no secret and sends no signature
    for kind, header in (("twilio-sms", "X-Twilio-Signature"), ("meta-text", "X-Hub-Signature-256")):
        out = run(["send", kind, "--print-only", "--no-sign"])
        assert out.returncode == 0, out
        (_, _, headers, _), = parse_requests(out.stdout)
        assert header not in headers, headers
    # NAME_FILE works for the secret
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write(TOKEN + "\n")
    try:
        out = run(["send", "twilio-sms", "--print-only"], TWILIO_AUTH_TOKEN_FILE=f.name)
        assert out.returncode == 0, out
        req, = parse_requests(out.stdout)
        check_twilio_signed(req, "http://127.0.0.1:8080/twilio/messages")
    finally:
        os.unlink(f.name)


# --------------------------------------------------------------------------
# send --print-only: shapes and signatures

SID = re.compile(r"^(SM|MM|CA|AC)[0-9a-f]{32}$")


def test_twilio_kinds_signed():
    routes = {"twilio-sms": "/twilio/messages", "twilio-whatsapp": "/twilio/messages",
              "twilio-voice": "/twilio/voice", "twilio-gather": "/twilio/gather",
              "twilio-status": "/twilio/status"}
    for kind, route in routes.items():
        # default: signed over --url
        req, = print_only([kind])
        assert req[1] == "http://127.0.0.1:8080" + route, req[1]
        check_twilio_signed(req, "http://127.0.0.1:8080" + route)
        # behind a proxy: posted to --url + prefix, signed over the public URL
        req, = print_only([kind, "--url", "http://127.0.0.1:9/"], SB_PUBLIC_URL=PUBLIC + "/",
                          SB_PATH_PREFIX="/api/v1")
        assert req[1] == "http://127.0.0.1:9/api/v1" + route, req[1]
        p = check_twilio_signed(req, PUBLIC + "/api/v1" + route)
        assert int(req[2]["Content-Length"]) == len(req[3])
        assert req[2].get("User-Agent", "").startswith("TwilioProxy/"), req[2]
        assert SID.match(p["AccountSid"]) and p["AccountSid"].startswith("AC"), p
        assert p["ApiVersion"] == "2010-04-01", p

    sms = dict(sbtest.form_params(print_only(["twilio-sms"])[0][3]))
    assert SID.match(sms["MessageSid"]) and sms["MessageSid"].startswith("SM"), sms
    assert sms["SmsSid"] == sms["MessageSid"] == sms["SmsMessageSid"], sms
    assert sms["From"] == "+14155550100" and sms["To"] == "+15558675310", sms
    assert sms["NumMedia"] == "0" and sms["NumSegments"] == "1" and sms["Body"], sms

    text = 'Olá & bye +1=2 "quoted" 😊\nnew line'
    req, = print_only(["twilio-whatsapp", "--from", "+447700900123", "--to", "whatsapp:+15550001111",
                       "--body", text, "--profile-name", "Zoë", "--account", "AC" + "1" * 32])
    wa = check_twilio_signed(req, "http://127.0.0.1:8080/twilio/messages")
    assert wa["From"] == "whatsapp:+447700900123" and wa["To"] == "whatsapp:+15550001111", wa
    assert wa["WaId"] == "447700900123" and wa["ProfileName"] == "Zoë", wa
    assert wa["Body"] == text and wa["MessageType"] == "text", wa
    assert wa["AccountSid"] == "AC" + "1" * 32, wa

    req, = print_only(["twilio-sms", "--media", "https://example.com/a.jpg",
                       "--media", "https://example.com/b.pdf?x=1"])
    mms = check_twilio_signed(req, "http://127.0.0.1:8080/twilio/messages")
    assert mms["MessageSid"].startswith("MM") and mms["NumMedia"] == "2", mms
    assert mms["MediaUrl0"] == "https://example.com/a.jpg" and mms["MediaContentType0"] == "image/jpeg"
    assert mms["MediaContentType1"] == "application/pdf", mms

    voice = dict(sbtest.form_params(print_only(["twilio-voice"])[0][3]))
    assert voice["CallSid"].startswith("CA") and voice["CallStatus"] == "ringing", voice
    assert voice["Direction"] == "inbound" and voice["Caller"] == voice["From"], voice

    dtmf = dict(sbtest.form_params(print_only(["twilio-gather", "--digits", "42"])[0][3]))
    assert dtmf["Digits"] == "42" and dtmf["CallSid"].startswith("CA"), dtmf
    speech = dict(sbtest.form_params(print_only(["twilio-gather", "--body", "check my order"])[0][3]))
    assert speech["SpeechResult"] == "check my order" and "Digits" not in speech, speech
    assert 0 < float(speech["Confidence"]) <= 1, speech

    st = dict(sbtest.form_params(print_only(["twilio-status"])[0][3]))
    assert st["MessageStatus"] == "delivered" and st["From"] == "+15558675310", st
    assert "ErrorCode" not in st, st
    st = dict(sbtest.form_params(print_only(["twilio-status", "--status", "undelivered",
                                             "--sid", "SM" + "a" * 32])[0][3]))
    assert st["MessageSid"] == "SM" + "a" * 32 and st["ErrorCode"] == "30003", st
    st = dict(sbtest.form_params(print_only(["twilio-status", "--status", "failed",
                                             "--to", "whatsapp:+14155550100"])[0][3]))
    assert st["ErrorCode"] == "63016" and st["ChannelPrefix"] == "whatsapp", st
    assert st["From"].startswith("whatsapp:"), st
    st = dict(sbtest.form_params(print_only(["twilio-status", "--status", "read",
                                             "--error-code", "63032"])[0][3]))
    assert st["ErrorCode"] == "63032", st
    call = dict(sbtest.form_params(print_only(["twilio-status", "--sid", "CA" + "b" * 32])[0][3]))
    assert call["CallSid"] == "CA" + "b" * 32 and call["CallStatus"] == "completed", call
    assert "MessageSid" not in call, call

    # --count gives distinct ids
    reqs = print_only(["twilio-sms", "--count", "5"])
    assert len(reqs) == 5, reqs
    sids = {dict(sbtest.form_params(r[3]))["MessageSid"] for r in reqs}
    assert len(sids) == 5, sids
    for r in reqs:
        check_twilio_signed(r, "http://127.0.0.1:8080/twilio/messages")


def test_meta_kinds_signed():
    req, = print_only(["meta-text", "--body", "Ça va? 👍 </script>", "--from", "+16505551234"],
                      SB_PATH_PREFIX="/p")
    assert req[1] == "http://127.0.0.1:8080/p/meta/whatsapp", req[1]
    doc = check_meta_signed(req)
    assert doc["object"] == "whatsapp_business_account", doc
    value = doc["entry"][0]["changes"][0]["value"]
    assert doc["entry"][0]["changes"][0]["field"] == "messages", doc
    assert value["messaging_product"] == "whatsapp", value
    assert value["metadata"]["phone_number_id"] and value["metadata"]["display_phone_number"], value
    msg, = value["messages"]
    assert msg["from"] == "16505551234" and msg["type"] == "text", msg
    assert msg["text"]["body"] == "Ça va? 👍 </script>", msg
    assert msg["id"].startswith("wamid.") and len(msg["id"]) > 30, msg
    assert value["contacts"][0]["wa_id"] == "16505551234", value
    assert abs(int(msg["timestamp"]) - time.time()) < 600, msg

    img = check_meta_signed(print_only(["meta-text", "--media", "https://x.test/p.png",
                                        "--body", "look"])[0])
    msg = img["entry"][0]["changes"][0]["value"]["messages"][0]
    assert msg["type"] == "image" and msg["image"]["mime_type"] == "image/png", msg
    assert msg["image"]["caption"] == "look" and msg["image"]["id"], msg

    st = check_meta_signed(print_only(["meta-status"])[0])
    status, = st["entry"][0]["changes"][0]["value"]["statuses"]
    assert status["status"] == "delivered" and status["id"].startswith("wamid."), status
    assert status["recipient_id"] == "14155550100", status
    failed = check_meta_signed(print_only(["meta-status", "--status", "failed",
                                           "--sid", "wamid.ABC="])[0])
    status, = failed["entry"][0]["changes"][0]["value"]["statuses"]
    assert status["id"] == "wamid.ABC=" and status["errors"][0]["code"] == 131049, status
    failed = check_meta_signed(print_only(["meta-status", "--status", "failed",
                                           "--error-code", "131047"])[0])
    status, = failed["entry"][0]["changes"][0]["value"]["statuses"]
    assert status["errors"][0]["code"] == 131047, status

    reqs = print_only(["meta-text", "--count", "3"])
    ids = {check_meta_signed(r)["entry"][0]["changes"][0]["value"]["messages"][0]["id"] for r in reqs}
    assert len(ids) == 3, ids

    req, = print_only(["meta-verify"])
    assert req[0] == "GET", req
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req[1]).query))
    assert q["hub.mode"] == "subscribe" and q["hub.verify_token"] == VERIFY, q
    assert q["hub.challenge"].isdigit(), q


def test_file_matches_conformance_vectors():
    """--file signs exactly as the conformance vectors (computed with the
    official twilio package and node crypto) say."""
    vectors = json.loads(sbtest.conformance("twilio-forms-signatures.json"))
    for form in vectors["forms"]:
        url = urllib.parse.urlsplit(form["url"])
        path = os.path.join(CONFORMANCE, form["file"])
        req, = print_only(["--file", path, "--path", url.path],
                          TWILIO_AUTH_TOKEN=vectors["auth_token"],
                          SB_PUBLIC_URL="%s://%s" % (url.scheme, url.netloc))
        assert req[2]["X-Twilio-Signature"] == form["x_twilio_signature"], (form, req[2])
        assert req[3] == sbtest.conformance(form["file"]), form["file"]
        assert req[1] == "http://127.0.0.1:8080" + url.path, req[1]
    meta = json.loads(sbtest.conformance("meta-signature-vectors.json"))
    checked = 0
    for v in meta["vectors"]:
        if not v["name"].endswith("-file-bytes"):
            continue
        req, = print_only(["--file", os.path.join(CONFORMANCE, v["body_file"])],
                          META_APP_SECRET=v["app_secret"])
        assert req[2]["X-Hub-Signature-256"] == v["header_value"], (v["name"], req[2])
        assert req[3] == sbtest.conformance(v["body_file"]), v["name"]
        assert req[2]["Content-Type"] == "application/json"
        checked += 1
    assert checked >= 4, checked
    # an unparsable form cannot be signed, but can be sent unsigned
    with tempfile.NamedTemporaryFile("wb", suffix=".form", delete=False) as f:
        f.write(b"Body=%zz")
    try:
        out = run(["send", "--file", f.name, "--print-only"], **SIGNING)
        assert out.returncode == 1 and b"not a valid form" in out.stderr, out
        out = run(["send", "--file", f.name, "--print-only", "--no-sign"])
        assert out.returncode == 0, out
        assert parse_requests(out.stdout)[0][3] == b"Body=%zz"
    finally:
        os.unlink(f.name)
    out = run(["send", "--file", "/nonexistent.json", "--print-only"], **SIGNING)
    assert out.returncode == 1 and b"/nonexistent.json" in out.stderr, out


# --------------------------------------------------------------------------
# send over HTTP


class Recorder:
    """An HTTP server that records requests and answers as told."""

    def __init__(self, answer=(200, b"<Response/>")):
        self.requests = []
        self.answer = answer
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorder.requests.append((self.command, self.path, dict(self.headers), body))
                answer = recorder.answer
                code, payload = answer(self) if callable(answer) else answer
                self.send_response(code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_send_over_http():
    rec = Recorder()
    try:
        settings = dict(SIGNING, SB_PUBLIC_URL=PUBLIC, SB_PATH_PREFIX="/hooks")
        out = run(["send", "twilio-sms", "--url", rec.url, "--body", "hi there"], **settings)
        assert out.returncode == 0, out
        check_sanitizers(out)
        lines = out.stdout.decode().splitlines()
        assert lines[0].startswith("HTTP/1.") and " 200 " in lines[0], lines
        assert lines[1] == "<Response/>", lines
        method, path, headers, body = rec.requests[-1]
        assert method == "POST" and path == "/hooks/twilio/messages", (method, path)
        assert headers["Content-Type"] == "application/x-www-form-urlencoded", headers
        assert "Expect" not in headers, headers
        params = sbtest.form_params(body)
        assert headers["X-Twilio-Signature"] == sbtest.twilio_signature(
            TOKEN, PUBLIC + "/hooks/twilio/messages", params), headers
        assert dict(params)["Body"] == "hi there"

        rec.requests.clear()
        out = run(["send", "meta-text", "--url", rec.url, "--count", "4"], **settings)
        assert out.returncode == 0, out
        lines = out.stdout.decode().splitlines()
        assert len(lines) == 4 and all(" 200 " in l and "id=wamid." in l for l in lines), lines
        assert len(rec.requests) == 4
        ids = set()
        for method, path, headers, body in rec.requests:
            assert path == "/hooks/meta/whatsapp", path
            assert headers["X-Hub-Signature-256"] == sbtest.meta_signature(SECRET, body), headers
            ids.add(json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"])
        assert len(ids) == 4, ids

        # a large body goes out in one request without Expect: 100-continue
        out = run(["send", "meta-text", "--url", rec.url, "--body", "x" * 50000], **settings)
        assert out.returncode == 0, out
        assert len(rec.requests[-1][3]) > 50000

        # the verification handshake: the challenge must come back
        def echo(handler):
            q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(handler.path).query))
            if q.get("hub.verify_token") != VERIFY:
                return 403, b"bad token"
            return 200, q["hub.challenge"].encode()
        rec.answer = echo
        out = run(["send", "meta-verify", "--url", rec.url], **settings)
        assert out.returncode == 0, out
        assert rec.requests[-1][0] == "GET" and rec.requests[-1][1].startswith("/hooks/meta/whatsapp?")
        out = run(["send", "meta-verify", "--url", rec.url, "--no-sign"], **settings)
        assert out.returncode == 1 and b" 403 " in out.stdout, out
        rec.answer = (200, b"12345")
        out = run(["send", "meta-verify", "--url", rec.url], **settings)
        assert out.returncode == 1 and b"challenge" in out.stderr, out

        # refusals exit 1 and show the status
        rec.answer = (403, b"forbidden")
        out = run(["send", "twilio-voice", "--url", rec.url], **settings)
        assert out.returncode == 1, out
        assert b" 403 " in out.stdout and b"forbidden" in out.stdout, out.stdout
        out = run(["send", "twilio-sms", "--url", rec.url, "--count", "2"], **settings)
        assert out.returncode == 1 and out.stdout.count(b" 403 ") == 2, out

        # --file posts the exact bytes
        rec.answer = (200, b"")
        path = os.path.join(CONFORMANCE, "twilio-voice-gather-speech.form")
        out = run(["send", "--file", path, "--path", "/twilio/gather", "--url", rec.url], **settings)
        assert out.returncode == 0, out
        method, got_path, headers, body = rec.requests[-1]
        assert got_path == "/hooks/twilio/gather" and body == sbtest.conformance(
            "twilio-voice-gather-speech.form")
        assert headers["X-Twilio-Signature"] == sbtest.twilio_signature(
            TOKEN, PUBLIC + "/hooks/twilio/gather", sbtest.form_params(body))
    finally:
        rec.close()

    # nobody listening: exit 1 with the URL in the message
    port = sbtest.free_port()
    out = run(["send", "twilio-sms", "--url", "http://127.0.0.1:%d" % port, "--timeout", "5"],
              **SIGNING)
    assert out.returncode == 1, out
    assert ("127.0.0.1:%d" % port).encode() in out.stderr, out.stderr


# --------------------------------------------------------------------------
# journal


def test_journal_errors():
    out = run(["journal", "/nonexistent/journal"])
    assert out.returncode == 1 and b"/nonexistent/journal" in out.stderr, out
    with tempfile.TemporaryDirectory() as d:
        out = run(["journal", d])
        assert out.returncode == 1 and b"not a switchboard journal" in out.stderr, out
        out = run(["journal"], SB_JOURNAL_DIR=d)
        assert out.returncode == 1 and d.encode() in out.stderr, out
        f = os.path.join(d, "file")
        open(f, "w").close()
        out = run(["journal", f])
        assert out.returncode == 1 and b"not a directory" in out.stderr, out
        assert not out.stdout


def test_journal_of_a_real_ingress():
    """Only when the ingress is built: send three events, read them back."""
    if not os.path.exists(sbtest.INGRESS):
        raise sbtest.Skip("no %s" % sbtest.INGRESS)
    ingress = sbtest.Ingress().start()
    try:
        settings = dict(TWILIO_AUTH_TOKEN=sbtest.TWILIO_TOKEN, META_APP_SECRET=sbtest.META_SECRET,
                        SB_PUBLIC_URL=sbtest.PUBLIC_URL)
        url = "http://127.0.0.1:%d" % ingress.port
        for args in (["twilio-sms", "--body", 'one "1"\ttab'], ["meta-text", "--body", "two"],
                     ["twilio-status", "--status", "failed"]):
            out = run(["send"] + args + ["--url", url], **settings)
            assert out.returncode == 0, (args, out)
        out = run(["journal", ingress.journal])
        assert out.returncode == 0, out
        lines = out.stdout.decode().splitlines()
        assert len(lines) == 3, lines
        assert re.match(r'^seq=1 size=\d+ twilio\.sms\.message .*text="one \\"1\\"\\ttab"$', lines[0]), lines
        assert lines[1].startswith("seq=2 ") and "meta.whatsapp.message" in lines[1], lines
        assert "status=failed" in lines[2] and "error=30003" in lines[2], lines
        out = run(["journal", "--json", "--from", "2", ingress.journal])
        assert out.returncode == 0, out
        records = [json.loads(l) for l in out.stdout.decode().splitlines()]
        assert [int(r["seq"]) for r in records] == [2, 3], records
        assert records[0]["topic"] == "sb.v1.meta.whatsapp.message" and records[0]["text"] == "two"
        out = run(["journal", "--from", "99", ingress.journal])
        assert out.returncode == 0 and not out.stdout, out
    finally:
        ingress.cleanup()


# --------------------------------------------------------------------------
# tap against a minimal ZMTP 3.0 publisher


def pb_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_message(fields):
    """Protobuf wire encoding of {field number: int | str | bytes}."""
    out = b""
    for num, value in fields.items():
        if isinstance(value, int):
            out += pb_varint(num << 3) + pb_varint(value)
        else:
            data = value.encode() if isinstance(value, str) else value
            out += pb_varint(num << 3 | 2) + pb_varint(len(data)) + data
    return out


class ZmtpPub:
    """Just enough of ZMTP 3.0 (NULL mechanism) to be a PUB that one libzmq
    SUB connects to. It sends every message; the SUB filters by topic."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.endpoint = "tcp://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.conn = None
        self.subscriptions = []

    def _recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            if not chunk:
                raise AssertionError("SUB closed the connection")
            data += chunk
        return data

    def _frame(self):
        flags = self._recv(1)[0]
        size = int.from_bytes(self._recv(8 if flags & 0x02 else 1), "big")
        return flags, self._recv(size)

    def _send(self, body, more=False, command=False):
        flags = (0x01 if more else 0) | (0x04 if command else 0)
        if len(body) > 255:
            head = bytes([flags | 0x02]) + len(body).to_bytes(8, "big")
        else:
            head = bytes([flags, len(body)])
        self.conn.sendall(head + body)

    def accept(self):
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(10)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") \
            + b"\x00" + b"\x00" * 31
        self.conn.sendall(greeting)
        peer = self._recv(64)
        assert peer[0] == 0xFF and peer[9] == 0x7F and peer[10] >= 3, peer
        ready = b"\x05READY" + bytes([11]) + b"Socket-Type" + (3).to_bytes(4, "big") + b"PUB"
        self._send(ready, command=True)
        flags, body = self._frame()
        assert flags & 0x04 and body.startswith(b"\x05READY") and b"SUB" in body, body

    def wait_subscriptions(self, count):
        while len(self.subscriptions) < count:
            flags, body = self._frame()
            if flags & 0x04 and body.startswith(b"\x09SUBSCRIBE"):
                self.subscriptions.append(body[10:])
            elif not flags & 0x04 and body[:1] == b"\x01":
                self.subscriptions.append(body[1:])

    def publish(self, *frames):
        for i, frame in enumerate(frames):
            self._send(frame, more=i < len(frames) - 1)

    def close(self):
        if self.conn:
            self.conn.close()
        self.listener.close()


SMS_EVENT = pb_message({1: "test-ingress-e1-12", 2: "test-ingress", 3: 12, 6: 1, 7: 1, 8: 1,
                        9: "text", 10: "SM" + "a" * 32, 12: "+14155550100", 13: "+15558675310",
                        16: 'hello "world"\nline2'})
META_STATUS_EVENT = pb_message({3: 13, 6: 2, 7: 2, 8: 2, 10: "wamid.XYZ=", 13: "16505551234",
                                20: pb_message({1: "delivered"})})


def test_tap_human_lines_and_bad_frames():
    pub = ZmtpPub()
    proc = subprocess.Popen([CLI, "tap", "--count", "2", "--timeout", "20", pub.endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    try:
        pub.accept()
        pub.wait_subscriptions(1)
        assert pub.subscriptions == [b""], pub.subscriptions
        pub.publish(b"sb.v1.twilio.sms.message", b"x", b"three frames")
        pub.publish(b"sb.v1.twilio.sms.message", b"\x0a\x10abc")  # truncated protobuf
        pub.publish(b"sb.v1.twilio.sms.message", SMS_EVENT)
        pub.publish(b"sb.v1.meta.whatsapp.status", META_STATUS_EVENT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pub.close()
    assert proc.returncode == 0, (proc.returncode, out, err)
    lines = out.decode().splitlines()
    assert lines == [
        'seq=12 twilio.sms.message sid=SM%s from=+14155550100 to=+15558675310 '
        'text="hello \\"world\\"\\nline2"' % ("a" * 32),
        "seq=13 meta.whatsapp.status sid=wamid.XYZ= to=16505551234 status=delivered",
    ], lines
    err = err.decode()
    assert "frames=3" in err and "not an Event" in err, err
    assert "AddressSanitizer" not in err and "LeakSanitizer" not in err, err


def test_tap_json_and_topic_filter():
    pub = ZmtpPub()
    proc = subprocess.Popen([CLI, "tap", "--json", "--count", "1", "--topic", "sb.v1.meta",
                             "--timeout", "20", pub.endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    try:
        pub.accept()
        pub.wait_subscriptions(1)
        assert pub.subscriptions == [b"sb.v1.meta"], pub.subscriptions
        pub.publish(b"sb.v1.twilio.sms.message", SMS_EVENT)  # filtered out by the SUB
        pub.publish(b"sb.v1.meta.whatsapp.status", META_STATUS_EVENT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pub.close()
    assert proc.returncode == 0, (proc.returncode, out, err)
    lines = out.decode().splitlines()
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert list(event)[0] == "topic", event
    assert event["topic"] == "sb.v1.meta.whatsapp.status", event
    assert int(event["seq"]) == 13 and event["provider_id"] == "wamid.XYZ=", event


def test_tap_timeout_and_signals():
    endpoint = "tcp://127.0.0.1:%d" % sbtest.free_port()  # nobody publishes there
    start = time.time()
    out = run(["tap", "--count", "1", "--timeout", "0.5", endpoint])
    elapsed = time.time() - start
    assert out.returncode == 1 and b"timed out" in out.stderr, out
    assert elapsed < 5, elapsed
    check_sanitizers(out)
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([CLI, "tap", endpoint], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env())
        time.sleep(0.5)
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("tap did not stop on %s" % sig)
        assert proc.returncode == 0, (sig, proc.returncode, err)
        assert b"dangling" not in err and b"Sanitizer" not in err, err


if __name__ == "__main__":
    sbtest.run_tests([
        test_help,
        test_subcommand_help,
        test_bad_flags,
        test_missing_secret,
        test_twilio_kinds_signed,
        test_meta_kinds_signed,
        test_file_matches_conformance_vectors,
        test_send_over_http,
        test_journal_errors,
        test_journal_of_a_real_ingress,
        test_tap_human_lines_and_bad_frames,
        test_tap_json_and_topic_filter,
        test_tap_timeout_and_signals,
    ])
