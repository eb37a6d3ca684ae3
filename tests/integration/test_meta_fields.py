"""Meta's other webhook fields (issue 12) through the real ingress,
dispatcher, PostgreSQL and the provider sandbox.

- Each new field's fixture (tests/conformance/meta-*.json), posted signed,
  is 200, published as sb.v1.meta.whatsapp.<kind> and stored in events
  with its normalized fields in the stored payload (the protobuf Event,
  read here with a small wire-format reader).
- An echo (smb_message_echoes) is one outbound messages row with origin
  'echo' and is never replied to, even with a rule that answers every
  kind. The echo of our own reply arriving BEFORE the send's answer and
  AFTER it each leaves exactly one outbound row for that wamid, ours
  (outbox_id set). "Before" is made certain, not timed: a gate between the
  dispatcher and the sandbox holds the sandbox's answer until the echo
  carrying the wamid it just made is stored. (The sandbox's own slow mode
  sleeps before it makes the wamid, so no echo could carry it in time.)
- user_preferences stop, resume and a late, older stop land on the
  contact's marketing_preference in Meta's timestamp order; a preference
  item whose value is not a string changes nothing.
- A template rejection with a rule (kind template, forward and publish)
  reaches a local HTTP server and the dispatcher's PUB (rule_matched).
- A call connect keeps its SDP offer; one over 64 KiB is cut on a UTF-8
  boundary and flagged. A message's referral and a status's pricing are
  in the stored payload and the published JSON.
- Hostile: an unknown field, values of the wrong type, missing ids: 200,
  kind other (or the field's kind with empty fields), stored, never 400.
"""

import copy
import http.client
import http.server
import json
import threading
import time

import sbtest
from sbtest import Postgres, Stack, Tap

PG = None

BUSINESS = "15550783881"        # the fixtures' display_phone_number
PHONE_NUMBER_ID = "106540352242922"
USER = "16505551234"            # the fixtures' user (wa_id)


def fixture(name):
    return json.loads(sbtest.conformance(name))


def body(doc):
    return json.dumps(doc).encode()


def first_value(doc):
    return doc["entry"][0]["changes"][0]["value"]


# ---------------------------------------------------------------------------
# The stored payload: a protobuf Event (proto/switchboard/v1/event.proto).

def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def pb_fields(buf):
    """Field number -> list of raw values (int for varints, bytes for
    length-delimited) of one protobuf message."""
    out = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value = bytes(buf[i:i + size])
            i += size
        elif wire == 1:
            value, i = bytes(buf[i:i + 8]), i + 8
        elif wire == 5:
            value, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise AssertionError("wire type %d in a stored payload" % wire)
        out.setdefault(number, []).append(value)
    return out


def pb_str(fields, number):
    return fields.get(number, [b""])[-1].decode()


def pb_sub(fields, number):
    return pb_fields(fields[number][-1]) if number in fields else {}


# Event field numbers used below.
EV_KIND, EV_PROVIDER_ID, EV_FROM, EV_TO, EV_TEXT, EV_DETAIL, EV_FIELD = 8, 10, 12, 13, 16, 44, 34
EV_REFERRAL, EV_PRICING, EV_CALL, EV_TEMPLATE, EV_ACCOUNT, EV_PREFERENCE = 56, 57, 58, 59, 60, 61


def stored_events(stack, where):
    """(kind, provider_id, payload fields) of the stored events matching
    where, oldest first."""
    rows = stack.query("SELECT kind, provider_id, encode(payload, 'hex') FROM events WHERE %s ORDER BY id"
                       % where)
    return [(k, p, pb_fields(bytes.fromhex(h))) for k, p, h in rows]


def published(tap, predicate, what, timeout=15):
    seen = tap.wait_for(lambda events: any(predicate(e) for e in events), timeout)
    hits = [e for e in seen if predicate(e)]
    assert hits, "%s never published; topics seen: %s" % (what, sorted({e.get("topic") for e in seen}))
    return hits


def tap_ready(stack, tap, outcome=False):
    """PUB/SUB joins asynchronously: post status probes (no reply) until
    the tap sees something."""
    for n in range(150):
        if tap.wait_for(lambda events: events, timeout=0.2):
            return
        stack.post_twilio("/twilio/status", "MessageSid=SMtap%029d&MessageStatus=sent&From=%%2B15550000001"
                          "&To=%%2B15550000002&AccountSid=%s" % (n + (500 if outcome else 0), sbtest.TWILIO_SID))
    raise AssertionError("tap never received anything")


def post_ok(stack, doc, what):
    status, _, answer = stack.post_meta(body(doc) if isinstance(doc, dict) else doc)
    assert status == 200, "%s: %s %r" % (what, status, answer[:200])


# ---------------------------------------------------------------------------
# Each field: 200, its topic, its row, its normalized fields.

FIELDS_RULES = """
rules:
  - name: template-rejected
    match: { provider: meta, kind: template, text: { keyword: rejected } }
    forward: { url: "BOT_URL", timeout_ms: 3000 }
    publish: true
  - name: everything
    match: { kind: any, text: { any: true } }
    reply: "auto: {text}"
"""


class Notifier(http.server.BaseHTTPRequestHandler):
    """The template notifier the forward rule posts to."""
    seen = []

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Notifier.seen.append((self.path, json.loads(data)))
        answer = b'{"text": ""}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# (fixture, webhook field, kind, provider id) per new shape.
FIXTURES = [
    ("meta-echo-smb-text.json", "smb_message_echoes", "echo",
     "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="),
    ("meta-calls-connect.json", "calls", "call", "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"),
    ("meta-calls-connect-business.json", "calls", "call", "wacid.HBgLMTIxODU1NTI4MjgVAgARGCAyODRQIAFRoA"),
    ("meta-calls-status-ringing.json", "calls", "call", "wacid.HBgLMTIxODU1NTI4MjgVAgARGCAyODRQIAFRoA"),
    ("meta-calls-terminate.json", "calls", "call", "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"),
    ("meta-preference-stop.json", "user_preferences", "preference", ""),
    ("meta-preference-resume.json", "user_preferences", "preference", ""),
    ("meta-template-rejected.json", "message_template_status_update", "template", ""),
    ("meta-account-alerts.json", "account_alerts", "account", ""),
    ("meta-referral-text.json", "messages", "message",
     "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="),
    ("meta-status-sent.json", "messages", "status",
     "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="),
]


def test_each_field_published_stored_and_rules():
    notifier = serve(Notifier)
    rules = FIELDS_RULES.replace("BOT_URL", "http://127.0.0.1:%d/template" % notifier.server_port)
    stack = Stack(PG, rules=rules, callbacks=False)
    tap = outcomes = None
    try:
        stack.start()
        tap = Tap(stack.ingress.pub)
        outcomes = Tap(stack.dispatcher_pub)
        tap_ready(stack, tap)
        tap_ready(stack, outcomes, outcome=True)
        for name, field, kind, provider_id in FIXTURES:
            post_ok(stack, sbtest.conformance(name), name)
        for name, field, kind, provider_id in FIXTURES:
            topic = "sb.v1.meta.whatsapp." + kind
            published(tap, lambda e: e.get("topic") == topic and e.get("webhook_field") == field
                      and e.get("provider_id", "") == provider_id, "%s as %s" % (name, topic))
        stack.wait_scalar("SELECT count(*) FROM events WHERE provider = 'meta'", len(FIXTURES))
        rows = stored_events(stack, "provider = 'meta'")
        got = sorted((k, p, pb_str(f, EV_FIELD)) for k, p, f in rows)
        want = sorted((kind, pid, field) for _, field, kind, pid in FIXTURES)
        assert got == want, "stored events differ:\n got %s\nwant %s" % (got, want)
        print("  %d fixtures: 200, published under their kind's topic, stored once each" % len(FIXTURES))

        # normalized fields in the stored payload
        by = {}
        for k, p, f in rows:
            by.setdefault(k, []).append(f)
        calls = {(pb_str(pb_sub(f, EV_CALL), 1), pb_str(f, 31)): pb_sub(f, EV_CALL) for f in by["call"]}
        assert set(calls) == {("connect", "connect"), ("status", "RINGING"), ("terminate", "COMPLETED")}, calls
        connect = [pb_sub(f, EV_CALL) for f in by["call"]
                   if pb_str(f, EV_PROVIDER_ID) == "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"
                   and pb_str(pb_sub(f, EV_CALL), 1) == "connect"][0]
        offer = first_value(fixture("meta-calls-connect.json"))["calls"][0]["session"]
        assert pb_str(connect, 3) == "offer" and pb_str(connect, 4) == offer["sdp"], connect
        terminate = calls[("terminate", "COMPLETED")]
        assert (terminate.get(6), terminate.get(7), terminate.get(8)) == ([1671644824], [1671644944], [120]), terminate
        assert pb_str(calls[("status", "RINGING")], 9) == "TRx334DUDFTI4Mj", calls[("status", "RINGING")]
        template = pb_sub(by["template"][0], EV_TEMPLATE)
        assert [pb_str(template, n) for n in (1, 2, 3, 4, 5, 6)] == [
            "REJECTED", "1689556908129832", "order_confirmation", "en-US", "INVALID_FORMAT", "MARKETING"], template
        account = pb_sub(by["account"][0], EV_ACCOUNT)
        assert [pb_str(account, n) for n in (1, 2, 4, 5)] == [
            "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED", "BUSINESS", "WARNING", "ACTIVE"], account
        prefs = sorted(pb_str(pb_sub(f, EV_PREFERENCE), 2) for f in by["preference"])
        assert prefs == ["resume", "stop"], prefs
        echo = by["echo"][0]
        assert (pb_str(echo, EV_FROM), pb_str(echo, EV_TO)) == (BUSINESS, "16505551234"), echo
        referral = pb_sub(by["message"][0], EV_REFERRAL)
        ref = first_value(fixture("meta-referral-text.json"))["messages"][0]["referral"]
        assert [pb_str(referral, n) for n in (1, 2, 3, 4, 5, 6, 7, 10, 11)] == [
            ref["source_url"], ref["source_id"], ref["source_type"], ref["headline"], ref["body"],
            ref["media_type"], ref["image_url"], ref["ctwa_clid"], ref["welcome_message"]["text"]], referral
        pricing = pb_sub(by["status"][0], EV_PRICING)
        assert [pb_str(pricing, n) for n in (1, 2, 3)] == ["PMP", "regular", "marketing"], pricing
        # ... and in the published JSON
        ev = published(tap, lambda e: e.get("topic") == "sb.v1.meta.whatsapp.message"
                       and e.get("referral"), "the referral")[0]
        assert ev["referral"]["ctwa_clid"] == ref["ctwa_clid"], ev["referral"]
        ev = published(tap, lambda e: e.get("topic") == "sb.v1.meta.whatsapp.status"
                       and e.get("pricing"), "the pricing")[0]
        assert ev["pricing"]["pricing_model"] == "PMP" and ev["pricing"]["type"] == "regular", ev["pricing"]

        # the template rule: forwarded to the notifier and published once
        deadline = time.time() + 15
        while time.time() < deadline and not Notifier.seen:
            time.sleep(0.1)
        assert len(Notifier.seen) == 1, Notifier.seen
        path, event = Notifier.seen[0]
        assert path == "/template" and event["meta_template"]["event"] == "REJECTED", Notifier.seen
        assert event["meta_template"]["name"] == "order_confirmation", event
        matched = published(outcomes, lambda e: e.get("outcome") == "rule_matched", "rule_matched")
        assert [m.get("event_topic") for m in matched] == ["sb.v1.meta.whatsapp.template"], matched
        assert stack.scalar("SELECT kind FROM events WHERE event_uid = '%s'" % matched[0]["event_id"]) == "template"
        # one forward, settled (the notifier answers no text: nothing to send on)
        stack.wait_scalar("SELECT e.kind || ' ' || o.state || ' ' || o.reason FROM outbox o"
                          " JOIN events e ON e.id = o.event_id WHERE o.kind = 'forward'",
                          "template not_sent bot_no_reply")
        # nothing but the referral message was answered (kind any matches
        # every kind; the other fields have nobody to answer, echoes are ours)
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE kind = 'reply' AND state = 'sent'", 1)
        answered = stack.query("SELECT e.kind FROM outbox o JOIN events e ON e.id = o.event_id"
                               " WHERE o.kind = 'reply'")
        assert answered == [["message"]], answered
        print("  template rejection forwarded to the notifier and published as rule_matched")
        stack.check_logs()
        stack.ingress.check_log()
    finally:
        for t in (tap, outcomes):
            if t:
                t.close()
        stack.close()
        notifier.shutdown()


# ---------------------------------------------------------------------------
# Echoes: one outbound row per wamid, never an answer.

class Gate(http.server.BaseHTTPRequestHandler):
    """Between the dispatcher and the sandbox (META_API_BASE): passes each
    send on, and before handing the sandbox's answer back runs hold(answer)
    when set."""
    sandbox_port = 0
    hold = None

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        conn = http.client.HTTPConnection("127.0.0.1", Gate.sandbox_port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        conn.request("POST", self.path, body=data, headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
        conn.close()
        if Gate.hold and resp.status == 200:
            Gate.hold(json.loads(answer))
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def meta_text(wamid, text, user):
    doc = fixture("meta-text.json")
    value = first_value(doc)
    value["messages"][0].update({"id": wamid, "from": user, "timestamp": str(int(time.time()))})
    value["messages"][0]["text"]["body"] = text
    value["contacts"][0]["wa_id"] = user
    return doc


def echo_of(wamid, text, user):
    """The smb_message_echoes fixture as the echo of a message we sent."""
    doc = fixture("meta-echo-smb-text.json")
    echo = first_value(doc)["message_echoes"][0]
    echo.update({"id": wamid, "to": user, "timestamp": str(int(time.time()))})
    echo["text"]["body"] = text
    return doc


def test_echoes():
    gate = serve(Gate)
    stack = Stack(PG, rules=open(sbtest.REPO + "/examples/rules.yaml").read(), callbacks=False,
                  dispatcher_env={"META_API_BASE": "http://127.0.0.1:%d" % gate.server_port})
    Gate.sandbox_port = stack.sandbox_port
    try:
        stack.start()
        # An echo from the Business app: one outbound row, origin echo,
        # never answered, never inbound.
        doc = fixture("meta-echo-smb-text.json")
        app = first_value(doc)["message_echoes"][0]
        post_ok(stack, doc, "the echo fixture")
        # an inbound message after it is answered (so the loop works) ...
        user = "16505550101"
        post_ok(stack, meta_text("wamid.in%024d" % 1, "hours", user), "an inbound message")
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '%s'" % user, 1)
        time.sleep(0.5)
        # ... and the echo was not, nor taken for an inbound message
        answered = stack.query("SELECT to_addr FROM outbox")
        assert answered == [[user]], "answered: %s" % answered
        sends = [r for r in stack.sandbox_sends() if r.get("json")]
        assert [r["json"]["to"] for r in sends] == [user], [r["json"] for r in sends]
        inbound = stack.query("SELECT contact_addr, body FROM messages WHERE direction = 'inbound'")
        assert inbound == [[user, "hours"]], "inbound: %s" % inbound
        # it is one outbound row, origin echo
        stack.wait_scalar("SELECT count(*) FROM events WHERE kind = 'echo'", 1)
        rows = stack.query("SELECT direction, origin, contact_addr, our_addr, body, status FROM messages"
                           " WHERE provider_id = '%s'" % app["id"])
        # in the conversation of the user's own messages: "+16505551234" is wa_id 16505551234
        assert app["to"] == "+16505551234", app["to"]
        assert rows == [["outbound", "echo", "16505551234", BUSINESS, app["text"]["body"], "sent"]], rows
        # the provider re-sends the webhook: still one row, one event
        post_ok(stack, doc, "the echo fixture again")
        time.sleep(0.5)
        assert stack.scalar("SELECT count(*) FROM events WHERE kind = 'echo'") == "1"
        assert stack.scalar("SELECT count(*) FROM messages WHERE provider_id = '%s'" % app["id"]) == "1"

        def our_reply(user):
            """The one outbound row for the reply to user: (wamid, rows for
            it, outbox id, leftover rows of that outbox without an id)."""
            oid, wamid, state = stack.query("SELECT id, provider_id, state FROM outbox WHERE to_addr = '%s'"
                                            % user)[0]
            assert state == "sent", state
            rows = stack.query("SELECT direction, origin, outbox_id, contact_addr, body FROM messages"
                               " WHERE provider_id = '%s'" % wamid)
            leftover = stack.scalar("SELECT count(*) FROM messages WHERE outbox_id = %s AND provider_id IS NULL"
                                    % oid)
            return wamid, rows, oid, leftover

        reply = "We are open Monday to Friday, 9:00 to 17:00."

        # Our reply's echo arriving BEFORE the send's answer.
        held = []

        def echo_first(answer):
            wamid = answer["messages"][0]["id"]
            to = answer["contacts"][0]["wa_id"]
            post_ok(stack, echo_of(wamid, reply, to), "the early echo")
            stack.wait_scalar("SELECT count(*) FROM messages WHERE provider_id = '%s' AND origin = 'echo'"
                              % wamid, 1)
            held.append(wamid)

        Gate.hold = echo_first
        before = "16505550202"
        post_ok(stack, meta_text("wamid.in%024d" % 2, "hours", before), "the message answered before")
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '%s'" % before, 1)
        Gate.hold = None
        wamid, rows, oid, leftover = our_reply(before)
        assert held == [wamid], "the gate did not hold the answer for the echo: %s %s" % (held, wamid)
        assert rows == [["outbound", "echo", oid, before, reply]], rows
        assert leftover == "0", "our provisional row is still there beside the echo's"
        # a normal race, not a duplicate: nothing noted, nothing warned
        note = stack.scalar("SELECT '[' || last_error || ']' FROM outbox WHERE id = %s" % oid)
        assert note == "[]", "a note on our sent row: %s" % note
        assert "provider id already known" not in stack.dispatcher.log_text()
        print("  echo before the answer: one outbound row for %s, outbox %s's" % (wamid[:20], oid))

        # Our reply's echo arriving AFTER the send's answer.
        after = "16505550303"
        post_ok(stack, meta_text("wamid.in%024d" % 3, "hours", after), "the message answered after")
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '%s'" % after, 1)
        wamid = stack.scalar("SELECT provider_id FROM outbox WHERE to_addr = '%s'" % after)
        post_ok(stack, echo_of(wamid, reply, after), "the late echo")
        stack.wait_scalar("SELECT count(*) FROM events WHERE kind = 'echo' AND provider_id = '%s'" % wamid, 1)
        wamid, rows, oid, leftover = our_reply(after)
        assert rows == [["outbound", "", oid, after, reply]], rows
        assert leftover == "0"
        print("  echo after the answer: one outbound row for %s, outbox %s's" % (wamid[:20], oid))
        # no echo was answered: one reply per inbound message, three in all
        assert stack.scalar("SELECT count(*) FROM outbox") == "3"
        stack.check_logs()
        stack.ingress.check_log()
    finally:
        Gate.hold = None
        stack.close()
        gate.shutdown()


# ---------------------------------------------------------------------------
# Preferences in Meta's timestamp order.

def preference(value, ts, user=USER, raw_value=None):
    doc = fixture("meta-preference-%s.json" % ("stop" if value == "stop" else "resume"))
    item = first_value(doc)["user_preferences"][0]
    item.update({"wa_id": user, "timestamp": ts})
    first_value(doc)["contacts"][0]["wa_id"] = user
    if raw_value is not None:
        item["value"] = raw_value
    return doc


def test_preferences_in_timestamp_order():
    stack = Stack(PG, callbacks=False).start()
    try:
        pref = "SELECT marketing_preference || ' ' || extract(epoch FROM marketing_preference_at)::bigint" \
               " FROM contacts WHERE provider = 'meta' AND address = '%s'" % USER
        count = "SELECT count(*) FROM events WHERE kind = 'preference'"
        t = 1739321024
        post_ok(stack, preference("stop", t), "stop")
        stack.wait_scalar(pref, "stop %d" % t)
        post_ok(stack, preference("resume", t + 100), "resume")
        stack.wait_scalar(pref, "resume %d" % (t + 100))
        # a stop Meta timed before the resume, arriving after it: stored, not applied
        post_ok(stack, preference("stop", t + 50), "a late, older stop")
        stack.wait_scalar(count, 3)
        assert stack.scalar(pref) == "resume %d" % (t + 100), stack.scalar(pref)
        # the fixtures as they are (stop newer than resume), resume posted last
        post_ok(stack, sbtest.conformance("meta-preference-stop.json").replace(b"1739321024", b"1739329999"),
                "the stop fixture")
        post_ok(stack, sbtest.conformance("meta-preference-resume.json"), "the resume fixture")
        stack.wait_scalar(count, 5)
        assert stack.scalar(pref) == "stop 1739329999", stack.scalar(pref)
        # both in one body, newest first: the newest wins within a batch too
        doc = preference("resume", t + 9000)
        first_value(doc)["user_preferences"].append(
            first_value(preference("stop", t + 8000))["user_preferences"][0])
        post_ok(stack, doc, "two preferences in one body")
        stack.wait_scalar(count, 7)
        assert stack.scalar(pref) == "resume %d" % (t + 9000), stack.scalar(pref)
        # a preference whose value is not a string: a preference event with
        # an empty value, stored, and the contact's preference untouched
        post_ok(stack, preference("stop", t + 99999, raw_value=7), "a value of the wrong type")
        stack.wait_scalar(count, 8)
        time.sleep(0.3)
        assert stack.scalar(pref) == "resume %d" % (t + 9000), stack.scalar(pref)
        print("  stop, resume, a late stop, the fixtures, one body, a bad value: %s" % stack.scalar(pref))
        assert stack.scalar("SELECT count(*) FROM outbox") == "0"
        stack.check_logs()
    finally:
        stack.close()


# ---------------------------------------------------------------------------
# Calls: the SDP offer kept, a huge one cut and flagged.

SDP = ("v=0\r\no=jdoe 3724394400 3724394405 IN IP4 198.51.100.1\r\ns=Call to John Smith\r\n"
       "i=SDP Offer #1\r\nu=http://www.jdoe.example.com/home.html\r\ne=Jane Doe <jane@jdoe.example.com>\r\n"
       "p=+1 617 555-6011\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n"
       "m=audio 49180 RTP/AVP 0\r\nm=video 51372 RTP/AVP 99\r\nc=IN IP6 2001:db8::2\r\n"
       "a=rtpmap:99 h263-1998/90000\r\n")  # RFC 8866 section 5's example


def call_connect(call_id, sdp):
    doc = fixture("meta-calls-connect.json")
    item = first_value(doc)["calls"][0]
    item["id"] = call_id
    item["session"]["sdp"] = sdp
    return doc


def test_call_sdp_kept_and_capped():
    stack = Stack(PG, callbacks=False)
    tap = None
    try:
        stack.start()
        tap = Tap(stack.ingress.pub)
        tap_ready(stack, tap)
        post_ok(stack, call_connect("wacid.sdp-small", SDP), "a connect with an offer")
        # over the cap, with a two-byte character across the 64 KiB line
        cap = 64 * 1024
        big = SDP + "a=x-pad:" + "x" * (cap - len(SDP) - 9) + "é" * 4000 + "\r\n"
        assert len(big.encode()) > cap and big.encode()[cap - 1] == 0xC3
        post_ok(stack, call_connect("wacid.sdp-big", big), "a connect with a huge offer")
        stack.wait_scalar("SELECT count(*) FROM events WHERE kind = 'call' AND provider_id LIKE 'wacid.sdp-%'", 2)
        (_, _, small), = stored_events(stack, "provider_id = 'wacid.sdp-small'")
        (_, _, huge), = stored_events(stack, "provider_id = 'wacid.sdp-big'")
        call = pb_sub(small, EV_CALL)
        assert pb_str(call, 3) == "offer" and pb_str(call, 4) == SDP and 5 not in call, call
        call = pb_sub(huge, EV_CALL)
        kept = call[4][0]
        assert call.get(5) == [1], "a cut offer not flagged: %s" % call.get(5)
        assert len(kept) == cap - 1 and big.encode().startswith(kept), len(kept)
        kept.decode()  # whole characters only
        # the whole offer stays in detail_json
        assert json.loads(pb_str(huge, EV_DETAIL))["session"]["sdp"] == big
        ev = published(tap, lambda e: e.get("provider_id") == "wacid.sdp-big", "the huge offer")[0]
        assert ev["topic"] == "sb.v1.meta.whatsapp.call" and ev["meta_call"]["sdp_truncated"] is True, ev["meta_call"]
        assert ev["meta_call"]["sdp"].encode() == kept
        ev = published(tap, lambda e: e.get("provider_id") == "wacid.sdp-small", "the offer")[0]
        assert ev["meta_call"]["sdp"] == SDP and "sdp_truncated" not in ev["meta_call"], ev["meta_call"]
        print("  offer kept (%d bytes); a %d-byte one cut to %d and flagged" % (len(SDP), len(big.encode()), len(kept)))
        stack.check_logs()
    finally:
        if tap:
            tap.close()
        stack.close()


# ---------------------------------------------------------------------------
# Hostile shapes: 200, kept, never 400.

def change(field, value):
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": field, "value": value}]}]}


def test_hostile_fields():
    stack = Stack(PG, callbacks=False).start()
    try:
        metadata = first_value(fixture("meta-echo-smb-text.json"))["metadata"]
        unknown = {"messaging_product": "whatsapp", "metadata": metadata,
                   "future_things": [{"id": "x1", "n": 1}, "two", None, {"deep": {"er": [True]}}]}
        echo_no_id = copy.deepcopy(first_value(fixture("meta-echo-smb-text.json")))
        del echo_no_id["message_echoes"][0]["id"]
        call_no_id = copy.deepcopy(first_value(fixture("meta-calls-terminate.json")))
        del call_no_id["calls"][0]["id"]
        template_no_id = copy.deepcopy(first_value(fixture("meta-template-rejected.json")))
        del template_no_id["message_template_id"]
        template_no_id["event"] = ["REJECTED"]   # and a value of the wrong type
        cases = [
            # (what, body, kinds it must leave in events)
            ("an unknown field", change("some_field_meta_adds_in_2027", unknown), ["other"]),
            ("preferences not an array", change("user_preferences", {"metadata": metadata,
                                                                      "user_preferences": "stop"}), ["other"]),
            ("a call item not an object", change("calls", {"metadata": metadata, "calls": [42, "x"]}),
             ["other", "other"]),
            ("a template value not an object", change("message_template_status_update", "REJECTED"), ["other"]),
            ("an echo field with no echoes", change("message_echoes", {"metadata": metadata}), ["other"]),
            ("an echo without an id", change("smb_message_echoes", echo_no_id), ["echo"]),
            ("a call without an id", change("calls", call_no_id), ["call"]),
            ("a template without an id, its event a list", change("message_template_status_update",
                                                                  template_no_id), ["template"]),
            ("an account alert with no alert_info", change("account_alerts", {"entity_type": 7}), ["account"]),
            ("a field that is not a string", {"object": "whatsapp_business_account", "entry": [
                {"id": "1", "changes": [{"field": 12, "value": unknown}]}]}, ["other"]),
        ]
        seen = 0
        for what, doc, kinds in cases:
            before = int(stack.scalar("SELECT count(*) FROM events WHERE provider = 'meta'"))
            last = stack.scalar("SELECT coalesce(max(id), 0) FROM events")
            post_ok(stack, doc, what)
            stack.wait_scalar("SELECT count(*) FROM events WHERE provider = 'meta'", before + len(kinds))
            rows = stored_events(stack, "provider = 'meta' AND id > %s" % last)
            assert [k for k, _, _ in rows] == kinds, (what, [k for k, _, _ in rows])
            seen += len(rows)
            for kind, provider_id, f in rows:
                assert pb_str(f, EV_DETAIL), "%s: not kept (no detail_json)" % what
                if kind != "other":
                    assert provider_id == "" and pb_str(f, EV_PROVIDER_ID) == "", (what, provider_id)
        # the unknown field kept whole, under its own name
        (_, _, f), = stored_events(stack, "id = (SELECT min(id) FROM events WHERE provider = 'meta')")
        assert json.loads(pb_str(f, EV_DETAIL)) == unknown and pb_str(f, EV_FIELD) == "some_field_meta_adds_in_2027"
        # the echo without an id is still an outbound echo of the conversation
        assert stack.query("SELECT direction, origin, provider_id IS NULL FROM messages WHERE origin = 'echo'") \
            == [["outbound", "echo", "t"]]
        # the template's wrong-typed event: empty, so no rule takes it for a rejection
        (_, _, f), = stored_events(stack, "kind = 'template'")
        template = pb_sub(f, EV_TEMPLATE)
        assert pb_str(template, 1) == "" and pb_str(template, 3) == "order_confirmation", template
        print("  %d hostile bodies: 200 each, %d events kept" % (len(cases), seen))
        m = stack.ingress.metrics()
        assert m.get('sb_http_requests_total{route="meta_whatsapp",code="400"}') == 0, m
        assert m.get('sb_http_requests_total{route="meta_whatsapp",code="200"}') == len(cases), m
        stack.check_logs()
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_each_field_published_stored_and_rules,
            test_echoes,
            test_preferences_in_timestamp_order,
            test_call_sdp_kept_and_capped,
            test_hostile_fields,
        ])
    finally:
        PG.close()
