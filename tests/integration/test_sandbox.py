"""`switchboard sandbox` (which runs switchboard-sandbox, found here on
PATH), the fake Twilio and Meta send APIs, on its own:
auth checks, request-shape checks with the providers' error shapes, the
answers against the OpenAPI documents in conformance/, the request log
(also under concurrent load), failure injection (counted and random), the
signed status callbacks it posts back (signatures recomputed here with
hmac), flags, and clean exit on SIGINT and SIGTERM.

Python 3 standard library only.
"""

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

import sbtest
from sbtest import CLI, CONFORMANCE

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "sandbox-test-twilio-token"
API_KEY = "SKfedcba9876543210fedcba9876543210"
API_SECRET = "sandbox-test-api-secret"
META_TOKEN = "EAAsandboxTestToken"
APP_SECRET = "sandbox-test-app-secret"
PHONE_ID = "106540352242922"
PUBLIC = "https://hooks.example.test"
PREFIX = "/hooks"

TWILIO_PATH = "/2010-04-01/Accounts/%s/Messages.json" % ACCOUNT
META_PATH = "/v23.0/%s/messages" % PHONE_ID


def spec(name):
    with open(os.path.join(CONFORMANCE, name)) as f:
        return json.load(f)


TWILIO_SPEC = spec("twilio-messages-openapi.json")
META_SPEC = spec("meta-messages-openapi.json")


def base_env(**extra):
    # `switchboard sandbox` finds switchboard-sandbox on PATH (in the build
    # tree the two are not side by side).
    path = os.path.dirname(sbtest.SANDBOX) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
    e = {"PATH": path,
         "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN,
         "TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET,
         "META_ACCESS_TOKEN": META_TOKEN, "META_APP_SECRET": APP_SECRET,
         "SB_LOG_LEVEL": "info"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            e[k] = os.environ[k]
    for k, v in extra.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


class Sandbox:
    """A `switchboard sandbox` process on a free loopback port."""

    def __init__(self, args=(), **env):
        self.tmp = tempfile.mkdtemp(prefix="sb-sandbox-")
        self.log_path = os.path.join(self.tmp, "sandbox.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([CLI, "sandbox", "--listen", "127.0.0.1:0"] + list(args),
                                     stdout=subprocess.PIPE, stderr=self.log, env=base_env(**env))
        line = self.proc.stdout.readline().decode()
        m = re.match(r"switchboard sandbox listening on http://127\.0\.0\.1:(\d+)\n$", line)
        if not m:
            self.proc.kill()
            raise AssertionError("unexpected first line %r:\n%s" % (line, self.log_text()))
        self.port = int(m.group(1))

    def request(self, method, path, body=None, headers=None, timeout=10):
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def twilio(self, params, user=ACCOUNT, password=TOKEN, path=TWILIO_PATH,
               content_type="application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type}
        if user is not None:
            cred = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
            headers["Authorization"] = "Basic " + cred
        body = params if isinstance(params, (str, bytes)) else urllib.parse.urlencode(params)
        status, headers, data = self.request("POST", path, body, headers)
        return status, headers, json.loads(data) if data else None

    def meta(self, message, token=META_TOKEN, path=META_PATH, content_type="application/json"):
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        body = message if isinstance(message, (str, bytes)) else json.dumps(message)
        status, headers, data = self.request("POST", path, body, headers)
        return status, headers, json.loads(data) if data else None

    def control(self, method, path):
        status, _, data = self.request(method, path)
        return status, json.loads(data) if data else None

    def requests(self, since=None):
        status, records = self.control("GET", "/_sandbox/requests" +
                                       ("?since=%d" % since if since is not None else ""))
        assert status == 200 and isinstance(records, list), (status, records)
        return records

    def last_seq(self):
        records = self.requests()
        return records[-1]["seq"] if records else 0

    def fail(self, query):
        status, plan = self.control("POST", "/_sandbox/fail?" + query)
        assert status == 200, (query, status, plan)
        return plan

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("sandbox did not stop on %s" % sig)
        self.proc.stdout.close()
        self.log.close()
        text = self.log_text()
        tail = text[-6000:]
        assert self.proc.returncode == 0, (self.proc.returncode, tail)
        for line in text.splitlines():
            assert " error sandbox " not in line, line
            assert "Sanitizer" not in line and "runtime error:" not in line, tail
        return text


def form(**kw):
    return list(kw.items())


SMS = dict(To="+15558675310", From="+15017122661", Body="Hello")


def check_twilio_error(status, body, want_status, want_code):
    """Twilio's JSON error shape: {code, message, more_info, status}."""
    schema = TWILIO_SPEC["components"]["schemas"]["twilio.error"]
    assert status == want_status, (status, body)
    assert isinstance(body, dict) and set(body) == set(schema["properties"]), body
    assert body["code"] == want_code and body["status"] == want_status, body
    assert body["more_info"] == "https://www.twilio.com/docs/errors/%d" % want_code, body
    assert isinstance(body["message"], str) and body["message"], body


def check_meta_error(status, body, want_status, want_code):
    """Graph API error shape (GraphAPIError in meta-messages-openapi.json)."""
    schema = META_SPEC["components"]["schemas"]["GraphAPIError"]
    assert status == want_status, (status, body)
    assert set(body) == set(schema["required"]), body
    error = body["error"]
    error_schema = schema["properties"]["error"]
    for key in error_schema["required"]:
        assert key in error, (key, body)
    for key in error:
        assert key in error_schema["properties"] or key == "error_data", (key, body)
    assert error["code"] == want_code and error["type"] == "OAuthException", body
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"], body


RFC2822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                     r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000$")


def check_twilio_message(body, params):
    """A 201 answer against api.v2010.account.message and its examples."""
    schemas = TWILIO_SPEC["components"]["schemas"]
    message = schemas["api.v2010.account.message"]
    example = TWILIO_SPEC["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"][
        "responses"]["201"]["content"]["application/json"]["examples"]["create"]["value"]
    assert set(body) == set(example), sorted(set(body) ^ set(example))
    for key in body:
        assert key in message["properties"], key
    assert re.match(r"^(SM|MM)[0-9a-f]{32}$", body["sid"]), body
    assert body["account_sid"] == ACCOUNT and body["api_version"] == "2010-04-01", body
    assert body["status"] in schemas["message_enum_status"]["enum"], body
    assert body["direction"] == "outbound-api", body
    assert RFC2822.match(body["date_created"]) and RFC2822.match(body["date_updated"]), body
    assert body["to"] == params["To"] and body["from"] == params.get("From"), body
    assert body["body"] == params.get("Body", ""), body
    assert body["uri"] == "/2010-04-01/Accounts/%s/Messages/%s.json" % (ACCOUNT, body["sid"]), body
    assert body["subresource_uris"]["media"].endswith("/Messages/%s/Media.json" % body["sid"])
    assert body["error_code"] is None and body["error_message"] is None, body


def test_health_and_help():
    sb = Sandbox()
    try:
        status, _, data = sb.request("GET", "/healthz")
        assert status == 200 and data == b"ok\n", (status, data)
        status, _, data = sb.request("GET", "/nowhere")
        assert status == 404, status
    finally:
        sb.stop()
    out = subprocess.run([CLI, "sandbox", "--help"], capture_output=True, env=base_env())
    assert out.returncode == 0 and out.stdout.startswith(b"Usage: switchboard sandbox"), out
    for key in (b"SB_SANDBOX_LISTEN", b"SB_SANDBOX_CALLBACKS", b"/_sandbox/fail"):
        assert key in out.stdout, key
    # The binary itself says the same; without it, `switchboard sandbox`
    # fails (1) and names what it looked for.
    direct = subprocess.run([sbtest.SANDBOX, "--help"], capture_output=True, env=base_env())
    assert direct.returncode == 0 and direct.stdout == out.stdout, direct
    out = subprocess.run([CLI, "sandbox", "--help"], capture_output=True,
                         env=base_env(PATH="/nonexistent"))
    assert out.returncode == 1 and b"switchboard-sandbox" in out.stderr, out
    assert b"on PATH" in out.stderr, out


def test_bad_flags_and_settings():
    cases = [
        (["--listen", "nope"], {}),
        (["--listen", "127.0.0.1:70000"], {}),
        (["--callbacks", "ftp://x"], {}),
        (["--callback-delay-ms", "-1"], {}),
        (["--threads", "1"], {}),
        (["--bogus"], {}),
        (["extra"], {}),
        (["--listen"], {}),
        ([], {"TWILIO_ACCOUNT_SID": "AC123"}),
        ([], {"SB_SANDBOX_LISTEN": "x:y"}),
    ]
    for args, env in cases:
        out = subprocess.run([CLI, "sandbox"] + args, capture_output=True, timeout=10,
                             env=base_env(**env))
        assert out.returncode == 2, (args, env, out)
        assert out.stderr.startswith(b"switchboard sandbox: "), (args, out.stderr)
    # A port that is taken: the operation fails (1), said on stderr.
    sb = Sandbox()
    try:
        out = subprocess.run([CLI, "sandbox", "--listen", "127.0.0.1:%d" % sb.port],
                             capture_output=True, timeout=10, env=base_env())
        assert out.returncode == 1 and b"cannot listen" in out.stderr, out
    finally:
        sb.stop()


def test_twilio_auth():
    sb = Sandbox()
    try:
        status, headers, body = sb.twilio(SMS, user=None)
        check_twilio_error(status, body, 401, 20003)
        assert headers.get("www-authenticate", "").startswith("Basic"), headers
        check_twilio_error(*sb.twilio(SMS, password="wrong")[::2], 401, 20003)
        check_twilio_error(*sb.twilio(SMS, password=TOKEN + "x")[::2], 401, 20003)
        check_twilio_error(*sb.twilio(SMS, user=API_KEY, password=TOKEN)[::2], 401, 20003)
        status, _, body = sb.request("POST", TWILIO_PATH, "To=%2B15558675310",
                                     {"Authorization": "Bearer " + TOKEN})
        check_twilio_error(status, json.loads(body), 401, 20003)
        # Right credentials: the auth token, or an API key with its secret.
        assert sb.twilio(SMS)[0] == 201
        assert sb.twilio(SMS, user=API_KEY, password=API_SECRET)[0] == 201
        # The account in the path: malformed is not a resource; another is not ours.
        check_twilio_error(*sb.twilio(SMS, path="/2010-04-01/Accounts/AC123/Messages.json")[::2],
                           404, 20404)
        other = "/2010-04-01/Accounts/AC%s/Messages.json" % ("f" * 32)
        check_twilio_error(*sb.twilio(SMS, path=other)[::2], 401, 20003)
        # Only POST.
        status, _, _ = sb.request("GET", TWILIO_PATH)
        assert status == 405, status
        # Credentials never land in the log.
        dump = json.dumps(sb.requests())
        assert TOKEN not in dump and API_SECRET not in dump, dump
        assert all("Authorization" not in r["headers"] for r in sb.requests())
    finally:
        sb.stop()
    # Without credentials configured, everything is 401.
    sb = Sandbox(TWILIO_AUTH_TOKEN=None, TWILIO_API_KEY=None, TWILIO_API_SECRET=None)
    try:
        check_twilio_error(*sb.twilio(SMS, password="")[::2], 401, 20003)
    finally:
        text = sb.stop()
        assert "Twilio API answers 401" in text, text


def test_twilio_shape():
    sb = Sandbox()
    try:
        status, _, body = sb.twilio(SMS)
        assert status == 201, body
        check_twilio_message(body, SMS)
        assert body["status"] == "queued" and body["num_segments"] == "1", body
        # WhatsApp on both ends keeps the prefix in the answer.
        wa = dict(To="whatsapp:+15558675310", From="whatsapp:+14155238886", Body="hi")
        status, _, body = sb.twilio(wa)
        assert status == 201, body
        check_twilio_message(body, wa)
        # A Messaging Service instead of From: accepted, from is null.
        service = "MG" + "a" * 32
        status, _, body = sb.twilio(dict(To="+15558675310", MessagingServiceSid=service, Body="x"))
        assert status == 201 and body["status"] == "accepted" and body["from"] is None, body
        assert body["messaging_service_sid"] == service, body
        # Media only: an MM sid and num_media.
        status, _, body = sb.twilio(form(To="+15558675310", From="+15017122661",
                                         MediaUrl="https://example.com/a.jpg"))
        assert status == 201 and body["sid"].startswith("MM") and body["num_media"] == "1", body
        # Long bodies are segmented; UCS-2 at 70.
        status, _, body = sb.twilio(dict(SMS, Body="x" * 161))
        assert status == 201 and body["num_segments"] == "2", body
        # (\u00e1 is not in GSM-7; \u00e9 is, and 71 of those fit one segment.)
        status, _, body = sb.twilio(dict(SMS, Body="\u00e1" * 71))
        assert status == 201 and body["num_segments"] == "2", body
        # A short code and an alphanumeric sender are senders too.
        assert sb.twilio(dict(SMS, From="12345"))[0] == 201
        assert sb.twilio(dict(SMS, From="Acme Shop"))[0] == 201
        # Each violation, with Twilio's code.
        violations = [
            (dict(From="+15017122661", Body="x"), 21604),
            (dict(To="", From="+15017122661", Body="x"), 21604),
            (dict(To="+1555", From="+15017122661", Body="x"), 21211),
            (dict(To="15558675310", From="+15017122661", Body="x"), 21211),
            (dict(To="+05558675310", From="+15017122661", Body="x"), 21211),
            (dict(To="+15558675310", Body="x"), 21603),
            (dict(To="+15558675310", MessagingServiceSid="MG123", Body="x"), 21701),
            (dict(To="+15558675310", From="not a number!", Body="x"), 21212),
            (dict(To="whatsapp:+15558675310", From="+15017122661", Body="x"), 21910),
            (dict(To="+15558675310", From="whatsapp:+15017122661", Body="x"), 21910),
            (dict(To="+15558675310", From="+15017122661"), 21602),
            (dict(To="+15558675310", From="+15017122661", Body=""), 21602),
            (dict(To="+15558675310", From="+15017122661", Body="x" * 1601), 21617),
            (dict(SMS, StatusCallback="not a url"), 21609),
            (dict(SMS, StatusCallback="https://bad_host.example.com/cb"), 21609),
            (dict(SMS, MediaUrl="nope"), 21620),
            (dict(SMS, ContentSid="HX1"), 21656),
        ]
        for params, code in violations:
            status, _, body = sb.twilio(params)
            check_twilio_error(status, body, 400, code)
        assert sb.twilio(dict(SMS, Body="x" * 1600))[0] == 201
        # A JSON body carries no form fields for Twilio.
        status, _, body = sb.twilio(json.dumps(SMS), content_type="application/json")
        check_twilio_error(status, body, 400, 21604)
        # A broken form.
        status, _, body = sb.twilio("To=%zz", content_type="application/x-www-form-urlencoded")
        assert status == 400 and body["status"] == 400, body
        # The log: every request, with its answer and parsed params.
        records = [r for r in sb.requests() if r["provider"] == "twilio"]
        assert len(records) == 8 + len(violations) + 1 + 2, len(records)
        first = records[0]
        assert first["method"] == "POST" and first["path"] == TWILIO_PATH, first
        assert first["params"] == [["To", "+15558675310"], ["From", "+15017122661"],
                                   ["Body", "Hello"]], first
        assert first["status"] == 201 and first["id"].startswith("SM"), first
        assert first["auth_user"] == ACCOUNT and first["answer"]["sid"] == first["id"], first
        assert first["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert first["body"] == urllib.parse.urlencode(SMS), first
    finally:
        sb.stop()


TEXT = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
        "type": "text", "text": {"preview_url": False, "body": "Hello"}}


def check_meta_answer(body, to):
    schema = META_SPEC["components"]["schemas"]["MessageResponsePayload"]
    assert set(body) == set(schema["properties"]), body
    assert body["messaging_product"] == "whatsapp", body
    assert body["contacts"] == [{"input": to, "wa_id": re.sub(r"\D", "", to)}], body
    assert len(body["messages"]) == 1 and set(body["messages"][0]) <= {"id", "message_status"}
    assert re.match(r"^wamid\.HBgL[A-Za-z0-9+/=]+$", body["messages"][0]["id"]), body


def test_meta_auth_and_shape():
    sb = Sandbox()
    try:
        status, _, body = sb.meta(TEXT, token=None)
        check_meta_error(status, body, 401, 190)
        check_meta_error(*sb.meta(TEXT, token="wrong")[::2], 401, 190)
        check_meta_error(*sb.meta(TEXT, token=META_TOKEN + "x")[::2], 401, 190)
        status, _, body = sb.meta(TEXT)
        assert status == 200, body
        check_meta_answer(body, "16505551234")
        # In context of a message; the + form of the number.
        reply = dict(TEXT, to="+16505551234", context={"message_id": "wamid.abc"})
        status, _, body = sb.meta(reply)
        assert status == 200, body
        check_meta_answer(body, "+16505551234")
        # Other message types are accepted when their object is there.
        image = {"messaging_product": "whatsapp", "recipient_type": "individual",
                 "to": "16505551234", "type": "image", "image": {"link": "https://x.test/a.png"}}
        assert sb.meta(image)[0] == 200
        template = {"messaging_product": "whatsapp", "recipient_type": "individual",
                    "to": "16505551234", "type": "template",
                    "template": {"name": "hello_world", "language": {"code": "en_US"}}}
        assert sb.meta(template)[0] == 200

        def without(key):
            m = json.loads(json.dumps(TEXT))
            del m[key]
            return m

        violations = [
            without("messaging_product"),
            dict(TEXT, messaging_product="sms"),
            without("recipient_type"),
            dict(TEXT, recipient_type="everyone"),
            without("to"),
            dict(TEXT, to="not-a-number"),
            dict(TEXT, to=16505551234),
            without("type"),
            dict(TEXT, type="hologram"),
            without("text"),
            dict(TEXT, text="Hello"),
            dict(TEXT, text={}),
            dict(TEXT, text={"body": ""}),
            dict(TEXT, text={"body": 5}),
            dict(TEXT, text={"body": "x" * 4097}),
            dict(TEXT, text={"body": "x", "preview_url": "yes"}),
            dict(TEXT, text={"body": "x", "bold": True}),
            dict(TEXT, extra=1),
            dict(TEXT, context="wamid.x"),
            dict(TEXT, context={"message_id": ""}),
            dict(TEXT, context={"message_id": "wamid.x", "other": 1}),
            dict(image, image=None),
            [TEXT],
            "{not json",
        ]
        for message in violations:
            status, _, body = sb.meta(message)
            check_meta_error(status, body, 400, 100)
            assert body["error"]["message"].startswith("(#100) "), body
            assert body["error"]["error_data"]["details"], body
        assert sb.meta(dict(TEXT, text={"body": "x" * 4096}))[0] == 200
        # Content-Type must be JSON.
        status, _, body = sb.meta(json.dumps(TEXT), content_type="text/plain")
        check_meta_error(status, body, 400, 100)
        # The path: a version like v23.0 and a numeric phone number id.
        status, _, body = sb.meta(TEXT, path="/latest/%s/messages" % PHONE_ID)
        check_meta_error(status, body, 400, 2500)
        status, _, body = sb.meta(TEXT, path="/v23.0/abc/messages")
        check_meta_error(status, body, 400, 100)
        # The log keeps the parsed JSON.
        records = [r for r in sb.requests() if r["provider"] == "meta"]
        ok = [r for r in records if r["status"] == 200]
        assert ok[0]["json"] == TEXT and ok[0]["auth_user"] == "bearer", ok[0]
        assert ok[0]["id"] == ok[0]["answer"]["messages"][0]["id"], ok[0]
        assert META_TOKEN not in json.dumps(records)
    finally:
        sb.stop()


BSUID = "US.13491208655302741918"


def test_bsuid_recipients():
    """A business-scoped user id as recipient: Meta takes it in "recipient"
    ("to" wins when both are given), Twilio as To=whatsapp:<BSUID>; a
    malformed one is refused as a bad recipient ((#100), 21211)."""
    sb = Sandbox()
    try:
        by_id = dict(TEXT, recipient=BSUID)
        del by_id["to"]
        status, _, body = sb.meta(by_id)
        assert status == 200, body
        assert body["contacts"] == [{"input": BSUID, "user_id": BSUID}], body
        parent = dict(by_id, recipient="US.ENT.11815799212886844830")
        assert sb.meta(parent)[0] == 200
        assert sb.meta(dict(by_id, recipient="US." + "a" * 128))[0] == 200
        status, _, body = sb.meta(dict(TEXT, recipient=BSUID))
        assert status == 200 and body["contacts"][0]["input"] == "16505551234", body
        for bad in ["US13491208655302741918", "us.13491208655302741918", "US.", "U.1349",
                    "US.1349-1208", "US." + "a" * 129, "US.ENT.", 13491208655302741918]:
            status, _, body = sb.meta(dict(by_id, recipient=bad))
            check_meta_error(status, body, 400, 100)
            assert body["error"]["message"].startswith("(#100) "), body
        wa = dict(To="whatsapp:" + BSUID, From="whatsapp:+14155238886", Body="hi")
        status, _, body = sb.twilio(wa)
        assert status == 201, body
        check_twilio_message(body, wa)
        for bad in ["whatsapp:US.1349-1208", "whatsapp:US.", "whatsapp:us.1349",
                    "whatsapp:US." + "7" * 129, BSUID]:
            status, _, body = sb.twilio(dict(wa, To=bad))
            check_twilio_error(status, body, 400, 21211)
    finally:
        sb.stop()


def test_request_log():
    sb = Sandbox()
    try:
        assert sb.requests() == []
        sb.twilio(SMS)
        sb.meta(TEXT)
        sb.request("POST", "/v1/unknown")
        records = sb.requests()
        assert [r["seq"] for r in records] == [1, 2, 3], records
        assert [r["provider"] for r in records] == ["twilio", "meta", ""], records
        assert records[2]["status"] == 404, records[2]
        for r in records:
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["time"]), r
            for key in ("method", "path", "query", "headers", "body", "status", "id",
                        "error_code", "injected", "seq"):
                assert key in r, (key, r)
        assert sb.requests(since=2) == records[2:]
        status, _ = sb.control("GET", "/_sandbox/requests?since=x")
        assert status == 400
        status, answer = sb.control("DELETE", "/_sandbox/requests")
        assert status == 200 and answer == {"cleared": 3}, answer
        assert sb.requests() == []
        # Sequence numbers go on after a clear.
        sb.twilio(SMS)
        assert sb.requests()[0]["seq"] == 4

        # Many clients at once: every request recorded once, ids unique.
        errors = []

        def client(n):
            try:
                for i in range(25):
                    if (n + i) % 2:
                        status, _, _ = sb.twilio(dict(SMS, Body="c%d-%d" % (n, i)))
                        assert status == 201, status
                    else:
                        status, _, _ = sb.meta(dict(TEXT, text={"body": "c%d-%d" % (n, i)}))
                        assert status == 200, status
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        sb.control("DELETE", "/_sandbox/requests")
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        records = sb.requests()
        assert len(records) == 200, len(records)
        assert len({r["seq"] for r in records}) == 200
        assert len({r["id"] for r in records}) == 200
        assert sorted(r["seq"] for r in records) == [r["seq"] for r in records]
        bodies = {r["params"][2][1] if r["provider"] == "twilio" else r["json"]["text"]["body"]
                  for r in records}
        assert bodies == {"c%d-%d" % (n, i) for n in range(8) for i in range(25)}
        # A body over the limit is refused.
        status, _, _ = sb.request("POST", META_PATH, b"x" * (2 * 1024 * 1024),
                                  {"Content-Type": "application/json",
                                   "Authorization": "Bearer " + META_TOKEN})
        assert status == 413, status
    finally:
        sb.stop()


def test_failure_injection():
    sb = Sandbox()
    try:
        # The next N fail with 500, then all is well.
        plan = sb.fail("count=2&mode=500")
        assert plan["mode"] == "500" and plan["count"] == 2, plan
        status, _, body = sb.twilio(SMS)
        check_twilio_error(status, body, 500, 20500)
        status, _, body = sb.meta(TEXT)
        assert status == 500 and body["error"]["code"] == 131000, body
        assert sb.twilio(SMS)[0] == 201
        # 429 with Retry-After and each provider's throttling code.
        sb.fail("count=2&mode=429&retry_after=9")
        status, headers, body = sb.twilio(SMS)
        check_twilio_error(status, body, 429, 20429)
        assert headers["retry-after"] == "9", headers
        status, headers, body = sb.meta(TEXT)
        check_meta_error(status, body, 429, 130429)
        assert headers["retry-after"] == "9", headers
        # Injected failures win over auth: the front door is what is failing.
        sb.fail("count=1&mode=500")
        assert sb.twilio(SMS, password="wrong")[0] == 500
        # Slow: the normal answer, late.
        sb.fail("count=1&mode=slow&delay_ms=700")
        start = time.time()
        status, _, body = sb.meta(TEXT)
        assert status == 200 and time.time() - start >= 0.65, (status, time.time() - start)
        # 131047 is Meta's: Twilio requests pass through and do not use it up.
        sb.fail("count=1&mode=meta131047")
        assert sb.twilio(SMS)[0] == 201
        status, _, body = sb.meta(TEXT)
        check_meta_error(status, body, 400, 131047)
        assert "24 hours" in body["error"]["error_data"]["details"], body
        assert sb.meta(TEXT)[0] == 200
        # Only one provider.
        sb.fail("count=1&mode=500&provider=meta")
        assert sb.twilio(SMS)[0] == 201
        assert sb.meta(TEXT)[0] == 500
        # What was injected is in the log.
        injected = [r["injected"] for r in sb.requests() if r["injected"]]
        assert injected == ["500", "500", "429", "429", "500", "slow", "meta131047", "500"], injected
        # Random share: all of them at rate 1, about 30% at 0.3.
        sb.fail("rate=1&mode=mixed")
        statuses = {sb.twilio(SMS)[0] for _ in range(40)}
        assert statuses == {500, 429}, statuses
        sb.fail("rate=0.3&mode=500")
        failed = sum(sb.meta(TEXT)[0] == 500 for _ in range(300))
        assert 45 <= failed <= 135, failed
        status, plan = sb.control("GET", "/_sandbox/fail")
        assert status == 200 and plan["rate"] == 0.3 and plan["rate_mode"] == "500", plan
        status, plan = sb.control("DELETE", "/_sandbox/fail")
        assert status == 200 and plan["rate"] == 0 and plan["count"] == 0, plan
        assert all(sb.meta(TEXT)[0] == 200 for _ in range(20))
        # Plans that make no sense.
        for query in ("mode=500", "count=1", "count=1&mode=teapot", "count=x&mode=500",
                      "count=1&mode=mixed", "rate=2&mode=500", "rate=abc&mode=500",
                      "count=1&mode=429&retry_after=-1", "count=1&mode=slow&delay_ms=9999999",
                      "count=1&mode=500&provider=sms", "count=%zz"):
            status, answer = sb.control("POST", "/_sandbox/fail?" + query)
            assert status == 400 and answer["error"], (query, status, answer)
        assert sb.control("PUT", "/_sandbox/fail")[0] == 405
    finally:
        sb.stop()


class Receiver:
    """An HTTP server recording what the sandbox posts back."""

    def __init__(self, answer=200):
        self.requests = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with receiver.cond:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    receiver.cond.notify_all()
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count, timeout=10):
        deadline = time.time() + timeout
        with self.cond:
            while len(self.requests) < count:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("got %d of %d callbacks: %r" %
                                         (len(self.requests), count, self.requests))
                self.cond.wait(left)
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def twilio_signature(url, params):
    data = url
    for key in sorted({k for k, _ in params}):
        for value in sorted({v for k, v in params if k == key}):
            data += key + value
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def key_paths(value, prefix=""):
    """Every key path of a JSON value, arrays flattened."""
    paths = set()
    if isinstance(value, dict):
        for k, v in value.items():
            paths.add(prefix + "." + k)
            paths |= key_paths(v, prefix + "." + k)
    elif isinstance(value, list):
        for v in value:
            paths |= key_paths(v, prefix + "[]")
    return paths


def test_status_callbacks():
    rx = Receiver()
    sb = Sandbox(["--callbacks", rx.url + PREFIX + "/", "--callback-delay-ms", "20"],
                 SB_PUBLIC_URL=PUBLIC, SB_PATH_PREFIX=PREFIX)
    try:
        # Twilio without StatusCallback: to the ingress's /twilio/status,
        # signed over the public URL the ingress is configured with.
        status, _, message = sb.twilio(SMS)
        assert status == 201, message
        got = rx.wait(2)
        statuses = []
        for path, headers, body in got:
            assert path == PREFIX + "/twilio/status", path
            assert headers["Content-Type"] == "application/x-www-form-urlencoded", headers
            params = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
            fields = dict(params)
            assert fields["MessageSid"] == message["sid"] == fields["SmsSid"], fields
            assert fields["AccountSid"] == ACCOUNT and fields["ApiVersion"] == "2010-04-01"
            assert fields["To"] == SMS["To"] and fields["From"] == SMS["From"], fields
            assert fields["SmsStatus"] == fields["MessageStatus"], fields
            statuses.append(fields["MessageStatus"])
            want = twilio_signature(PUBLIC + PREFIX + "/twilio/status", params)
            assert headers["X-Twilio-Signature"] == want, (headers, want)
        assert statuses == ["sent", "delivered"], statuses

        # With a StatusCallback under the public URL: posted to the ingress,
        # signed over the StatusCallback exactly (query included).
        callback = PUBLIC + PREFIX + "/twilio/status?tag=a%20b"
        status, _, message = sb.twilio(dict(SMS, StatusCallback=callback))
        assert status == 201, message
        got = rx.wait(4)[2:]
        for path, headers, body in got:
            assert path == PREFIX + "/twilio/status?tag=a%20b", path
            params = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
            assert headers["X-Twilio-Signature"] == twilio_signature(callback, params)
        # A StatusCallback elsewhere is called as given.
        elsewhere = rx.url + "/custom/cb"
        status, _, message = sb.twilio(dict(SMS, StatusCallback=elsewhere))
        got = rx.wait(6)[4:]
        for path, headers, body in got:
            assert path == "/custom/cb", path
            params = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
            assert headers["X-Twilio-Signature"] == twilio_signature(elsewhere, params)
        # WhatsApp through Twilio says so.
        status, _, message = sb.twilio(dict(To="whatsapp:+15558675310",
                                            From="whatsapp:+14155238886", Body="hi"))
        got = rx.wait(8)[6:]
        fields = dict(urllib.parse.parse_qsl(got[0][2].decode()))
        assert fields["To"] == "whatsapp:+15558675310" and fields["ChannelPrefix"] == "whatsapp"

        # Meta: the statuses webhook, shaped like meta-status-sent.json,
        # signed with the app secret over the exact bytes.
        status, _, answer = sb.meta(TEXT)
        assert status == 200, answer
        wamid = answer["messages"][0]["id"]
        got = rx.wait(10)[8:]
        with open(os.path.join(CONFORMANCE, "meta-status-sent.json")) as f:
            sample = json.load(f)
        statuses = []
        for path, headers, body in got:
            assert path == PREFIX + "/meta/whatsapp", path
            assert headers["Content-Type"] == "application/json", headers
            want = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Hub-Signature-256"] == want, headers
            hook = json.loads(body)
            assert key_paths(hook) == key_paths(sample), key_paths(hook) ^ key_paths(sample)
            value = hook["entry"][0]["changes"][0]["value"]
            assert hook["entry"][0]["changes"][0]["field"] == "messages"
            assert value["metadata"]["phone_number_id"] == PHONE_ID, value
            st = value["statuses"][0]
            assert st["id"] == wamid and st["recipient_id"] == "16505551234", st
            assert re.match(r"^\d{10}$", st["timestamp"]), st
            statuses.append(st["status"])
        assert statuses == ["sent", "delivered"], statuses

        # Refused sends have no callbacks.
        sb.twilio(dict(SMS, To="bad"))
        sb.meta(dict(TEXT, type="hologram"))
        sb.fail("count=1&mode=500")
        sb.meta(TEXT)
        time.sleep(0.5)
        assert len(rx.requests) == 10, rx.requests[10:]
    finally:
        sb.stop()
        rx.close()

    # Without --callbacks nothing is posted, even with a StatusCallback.
    rx = Receiver()
    sb = Sandbox()
    try:
        assert sb.twilio(dict(SMS, StatusCallback=rx.url + "/cb"))[0] == 201
        time.sleep(0.5)
        assert rx.requests == [], rx.requests
    finally:
        sb.stop()
        rx.close()

    # An ingress that refuses callbacks: logged as a warning, nothing breaks.
    rx = Receiver(answer=403)
    sb = Sandbox(["--callbacks", rx.url], SB_SANDBOX_CALLBACKS=None)
    try:
        assert sb.meta(TEXT)[0] == 200
        rx.wait(2)
    finally:
        text = sb.stop()
        assert "callback refused" in text, text
        rx.close()


def test_signals():
    for sig in (signal.SIGTERM, signal.SIGINT):
        sb = Sandbox()
        # Even in the middle of a long slow answer.
        sb.fail("count=1&mode=slow&delay_ms=60000")
        result = {}

        def slow():
            try:
                result["status"] = sb.meta(TEXT)[0]
            except Exception as e:  # noqa: BLE001 - the connection may just close
                result["error"] = e

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        start = time.time()
        sb.stop(sig)
        assert time.time() - start < 3, time.time() - start
        t.join(5)
        assert not t.is_alive()


if __name__ == "__main__":
    sbtest.run_tests([
        test_health_and_help,
        test_bad_flags_and_settings,
        test_twilio_auth,
        test_twilio_shape,
        test_meta_auth_and_shape,
        test_bsuid_recipients,
        test_request_log,
        test_failure_injection,
        test_status_callbacks,
        test_signals,
    ])
