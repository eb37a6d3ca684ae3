"""The dispatcher with a real PostgreSQL, the real ingress and the provider
sandbox: rows for each kind of inbound event, each rule type, opt-out and
START, the bot forward, replies in the providers' shapes, retries on 500
and on 429 with Retry-After, a final failure, dead after the last attempt,
statuses out of order, provider retries, migrations, and the end-to-end
run of 1,000 messages."""

import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse

import sbtest
from sbtest import Postgres, Stack

PG = None

RULES = """
opt_out: [STOP, UNSUBSCRIBE]
opt_in: [START]
rules:
  - name: code
    match: { kind: gather, text: { regex: "^[0-9]{6}$" } }
    none: true
    publish: true
  - name: menu
    match: { text: { keyword: menu } }
    reply: "Menu for {profile_name}: 1 hours, 2 address"
  - name: hours
    match: { provider: twilio, channel: sms, text: { exact: "1" } }
    reply: "We are open 9-17."
  - name: silent
    match: { text: { prefix: "quiet" } }
    none: true
  - name: bot
    match: { text: { prefix: "bot " } }
    forward: { url: "BOT_URL", timeout_ms: 2000 }
  - name: echo
    match: { text: { any: true } }
    reply: "Thanks for your message! We received: {text}"
"""


def sms(sid, text, frm="+15550001111", to="+15559990000"):
    return "MessageSid=%s&AccountSid=%s&From=%s&To=%s&Body=%s&NumMedia=0" % (
        sid, sbtest.TWILIO_SID, urllib.parse.quote(frm), urllib.parse.quote(to), urllib.parse.quote_plus(text))


def meta_text(wamid, text, frm="16505551234"):
    doc = json.loads(sbtest.conformance("meta-text.json"))
    value = doc["entry"][0]["changes"][0]["value"]
    value["messages"][0]["id"] = wamid
    value["messages"][0]["text"]["body"] = text
    value["messages"][0]["from"] = frm
    value["contacts"][0]["wa_id"] = frm
    value["messages"][0]["timestamp"] = str(int(time.time()))
    return json.dumps(doc).encode()


class Bot(http.server.BaseHTTPRequestHandler):
    seen = []
    answer = (200, b'{"text": "bot says hi"}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Bot.seen.append(json.loads(body))
        status, payload = Bot.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def start_bot():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Bot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def replies_to(stack, address):
    out = []
    for r in stack.sandbox_sends():
        if r.get("status") not in (200, 201):
            continue
        if "params" in r:
            p = dict(r["params"])
            if p.get("To", "").endswith(address):
                out.append(p["Body"])
        elif r.get("json"):
            if r["json"].get("to") == address:
                out.append(r["json"]["text"]["body"])
    return out


def test_inbound_rows_rules_and_reply_shapes():
    bot = start_bot()
    stack = Stack(PG, rules=RULES.replace("BOT_URL", "http://127.0.0.1:%d/bot" % bot.server_port),
                  callbacks=False).start()
    try:
        # each kind of inbound event (the conformance forms share one
        # MessageSid: give each its own, or they are one message)
        sid = b"SMa1b2c3d4e5f60718293a4b5c6d7e8f90"
        for i, (name, route) in enumerate([("twilio-sms-inbound.form", "/twilio/messages"),
                                           ("twilio-whatsapp-inbound-text.form", "/twilio/messages"),
                                           ("twilio-whatsapp-inbound-location.form", "/twilio/messages"),
                                           ("twilio-voice-inbound.form", "/twilio/voice"),
                                           ("twilio-voice-gather-dtmf.form", "/twilio/gather"),
                                           ("twilio-voice-status-completed.form", "/twilio/status")]):
            body = sbtest.conformance(name).replace(sid, b"SMconf%028d" % i)
            assert stack.post_twilio(route, body)[0] == 200, name
        assert stack.post_meta(sbtest.conformance("meta-text.json"))[0] == 200
        assert stack.post_meta(sbtest.conformance("meta-status-delivered.json"))[0] == 200
        stack.wait_scalar("SELECT count(*) FROM events WHERE provider_id NOT LIKE 'SMprobe%'", 8)
        kinds = stack.query("SELECT provider, channel, kind FROM events WHERE provider_id NOT LIKE 'SMprobe%' ORDER BY id")
        assert [tuple(k) for k in kinds] == [
            ("twilio", "sms", "message"), ("twilio", "whatsapp", "message"), ("twilio", "whatsapp", "message"),
            ("twilio", "voice", "call"), ("twilio", "voice", "gather"), ("twilio", "voice", "status"),
            ("meta", "whatsapp", "message"), ("meta", "whatsapp", "status")], kinds
        contacts = stack.query("SELECT provider, channel, address, profile_name FROM contacts ORDER BY 1,2,3")
        assert ["meta", "whatsapp", "16505551234", "Sheena Nelson"] in contacts, contacts
        assert any(c[:2] == ["twilio", "whatsapp"] and c[3] == "Perspective Coffee" for c in contacts), contacts
        inbound = stack.scalar("SELECT count(*) FROM messages WHERE direction = 'inbound'")
        assert int(inbound) >= 4, inbound

        # replies reach the sandbox in the providers' shapes: SMS, WhatsApp via Twilio, Meta with context
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent'", 4)
        sends = [r for r in stack.sandbox_sends() if r.get("status") in (200, 201)]
        twilio = [r for r in sends if "params" in r]
        meta = [r for r in sends if r.get("json")]
        assert len(twilio) == 3 and len(meta) == 1, (len(twilio), len(meta))
        sms_replies = [dict(r["params"]) for r in twilio if not dict(r["params"])["To"].startswith("whatsapp:")]
        assert len(sms_replies) == 1, sms_replies
        p = sms_replies[0]
        assert p["To"] == "+14017122661" and p["From"] == "+15558675310", p
        assert p["Body"].startswith("Thanks for your message! We received: Ahoy!"), p
        assert p["StatusCallback"] == stack.public_url + "/twilio/status", p
        # the two WhatsApp replies (text and location; sent concurrently, in any order)
        wa = [dict(r["params"]) for r in twilio if dict(r["params"])["To"].startswith("whatsapp:")]
        assert len(wa) == 2 and all(w["From"].startswith("whatsapp:+") for w in wa), wa
        assert any("caf" in w["Body"] for w in wa), wa
        m = meta[0]["json"]
        assert m["messaging_product"] == "whatsapp" and m["recipient_type"] == "individual", m
        assert m["type"] == "text" and m["to"] == "16505551234" and m["text"]["body"].startswith("Thanks"), m
        assert m["context"]["message_id"].startswith("wamid."), m
        assert meta[0]["path"] == "/v23.0/106540352242922/messages", meta[0]["path"]
        assert meta[0]["headers"].get("Content-Type", "").startswith("application/json"), meta[0]["headers"]
        # the provider's id is stored on the outbox row and the outbound message
        ids = stack.query("SELECT provider_id FROM outbox WHERE state = 'sent' ORDER BY id")
        assert all(i[0].startswith(("SM", "wamid.")) for i in ids), ids
        # the gather matched the code rule: stored, nothing sent
        assert stack.scalar("SELECT count(*) FROM outbox WHERE rule = 'code'") == "0"

        # keyword (case-insensitive), exact with a filter, prefix none, bot forward, menu template
        stack.post_twilio("/twilio/messages", sms("SM%032d" % 1, "MeNu"))
        stack.post_twilio("/twilio/messages", sms("SM%032d" % 2, "1"))
        stack.post_twilio("/twilio/messages", sms("SM%032d" % 3, "quiet please"))
        stack.post_twilio("/twilio/messages", sms("SM%032d" % 4, "bot hello"))
        stack.wait_scalar("SELECT count(*) FROM events WHERE provider_id LIKE 'SM0000%'", 4)
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '+15550001111'", 3)
        got = replies_to(stack, "+15550001111")
        assert "Menu for : 1 hours, 2 address" in got, got
        assert "We are open 9-17." in got and "bot says hi" in got, got
        assert not any("quiet" in g for g in got), got
        assert Bot.seen and Bot.seen[-1]["text"] == "bot hello", Bot.seen
        # a bot that fails: no reply, a log line
        Bot.answer = (500, b"oops")
        stack.post_twilio("/twilio/messages", sms("SM%032d" % 5, "bot again"))
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE kind = 'forward' AND state = 'failed'", 1)
        assert replies_to(stack, "+15550001111").count("bot says hi") == 1
        stack.check_logs(allow=("bot",))
    finally:
        stack.close()
        bot.shutdown()


def test_opt_out_and_start():
    stack = Stack(PG, rules=RULES.replace("BOT_URL", "http://127.0.0.1:1/bot"), callbacks=False).start()
    try:
        frm = "+15550002222"
        stack.post_twilio("/twilio/messages", sms("SMa%031d" % 1, "hello", frm))
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '%s'" % frm, 1)
        stack.post_twilio("/twilio/messages", sms("SMa%031d" % 2, "  stop ", frm))
        stack.wait_scalar("SELECT opted_out FROM contacts WHERE address = '%s'" % frm, "t")
        stack.post_twilio("/twilio/messages", sms("SMa%031d" % 3, "are you there", frm))
        stack.wait_scalar("SELECT count(*) FROM events WHERE provider_id LIKE 'SMa000%'", 3)
        time.sleep(0.5)
        assert replies_to(stack, frm) == ["Thanks for your message! We received: hello"], replies_to(stack, frm)
        assert stack.scalar("SELECT count(*) FROM outbox WHERE to_addr = '%s' AND state = 'not_sent' AND reason = 'opted_out'" % frm) >= "1"
        stack.post_twilio("/twilio/messages", sms("SMa%031d" % 4, "START", frm))
        stack.wait_scalar("SELECT opted_out FROM contacts WHERE address = '%s'" % frm, "f")
        stack.post_twilio("/twilio/messages", sms("SMa%031d" % 5, "back again", frm))
        deadline = time.time() + 10
        while time.time() < deadline and "Thanks for your message! We received: back again" not in replies_to(stack, frm):
            time.sleep(0.1)
        assert "Thanks for your message! We received: back again" in replies_to(stack, frm), replies_to(stack, frm)
    finally:
        stack.close()


def test_retries_final_and_dead():
    stack = Stack(PG, dispatcher_env={"SB_SEND_MAX_ATTEMPTS": "3"}).start()
    try:
        # two 500s, then success: one reply delivered, three attempts recorded by the sandbox
        stack.sandbox_fail("count=2&mode=500")
        stack.post_twilio("/twilio/messages", sms("SMr%031d" % 1, "retry me", "+15550003333"))
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '+15550003333'", 1)
        tries = [r for r in stack.sandbox_sends() if "To=%2B15550003333" in r["body"]]
        assert [r["status"] for r in tries] == [500, 500, 201], [r["status"] for r in tries]
        assert stack.scalar("SELECT attempts FROM outbox WHERE to_addr = '+15550003333'") == "3"

        # 429 with Retry-After: 1 s: the retry waits at least that long
        stack.sandbox_fail("count=1&mode=429&retry_after=1")
        stack.post_twilio("/twilio/messages", sms("SMr%031d" % 2, "slow down", "+15550004444"))
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '+15550004444'", 1)
        tries = [r for r in stack.sandbox_sends() if "To=%2B15550004444" in r["body"]]
        assert [r["status"] for r in tries] == [429, 201], [r["status"] for r in tries]
        waited = stack.query("SELECT extract(epoch FROM updated_at - created_at) FROM outbox WHERE to_addr = '+15550004444'")
        assert float(waited[0][0]) >= 1.0, "the retry did not honour Retry-After: %s" % waited

        # Meta 131047 (outside the 24 h window): final, never retried
        stack.sandbox_fail("count=1&mode=meta131047")
        stack.post_meta(meta_text("wamid.final%020d" % 1, "late", "16505550000"))
        stack.wait_scalar("SELECT state FROM outbox WHERE to_addr = '16505550000'", "failed")
        assert stack.scalar("SELECT attempts FROM outbox WHERE to_addr = '16505550000'") == "1"
        assert "131047" in stack.scalar("SELECT last_error FROM outbox WHERE to_addr = '16505550000'")

        # always 500: dead after SB_SEND_MAX_ATTEMPTS
        stack.sandbox_fail("count=10&mode=500")
        stack.post_twilio("/twilio/messages", sms("SMr%031d" % 3, "doomed", "+15550005555"))
        stack.wait_scalar("SELECT state FROM outbox WHERE to_addr = '+15550005555'", "dead", timeout=30)
        assert stack.scalar("SELECT attempts FROM outbox WHERE to_addr = '+15550005555'") == "3"
        sbtest.http_json(stack.sandbox_port, "DELETE", "/_sandbox/fail")
        status, _, text = stack.ingress.request("GET", "/healthz")
        assert status == 200
        m = dispatcher_metrics(stack)
        assert m.get('sb_sends_dead_total', 0) == 1, m
        assert m.get('sb_sends_total{provider="twilio",outcome="retry"}', 0) >= 5, m
        assert m.get('sb_sends_total{provider="meta",outcome="final"}', 0) == 1, m
        assert m.get('sb_sends_total{provider="twilio",outcome="sent"}', 0) == 2, m
        stack.check_logs(allow=("131047", "dead", "500", "429"))
    finally:
        stack.close()


def dispatcher_metrics(stack):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", stack.dispatcher_port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_statuses_never_go_backwards_and_provider_retries():
    stack = Stack(PG, callbacks=False).start()
    try:
        body = sms("SMs%031d" % 1, "status please", "+15550006666")
        # the provider re-sends the same webhook: one event, one reply
        for _ in range(3):
            assert stack.post_twilio("/twilio/messages", body)[0] == 200
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '+15550006666'", 1)
        time.sleep(0.5)
        assert stack.scalar("SELECT count(*) FROM events WHERE provider_id = 'SMs%031d'" % 1) == "1"
        assert len(replies_to(stack, "+15550006666")) == 1
        sid = stack.scalar("SELECT provider_id FROM outbox WHERE to_addr = '+15550006666'")
        assert sid.startswith("SM"), sid

        def status(s, err=""):
            form = ("MessageSid=%s&MessageStatus=%s&From=%%2B15559990000&To=%%2B15550006666&AccountSid=%s%s"
                    % (sid, s, sbtest.TWILIO_SID, "&ErrorCode=" + err if err else ""))
            assert stack.post_twilio("/twilio/status", form)[0] == 200

        # Distinct statuses, out of order, one at a time: each is a new
        # event stored in a batch of its own, so it is the rank that keeps
        # a lower one from applying (not the batch's maximum, not dedup).
        statuses = "SELECT count(*) FROM events WHERE provider_id = '%s' AND kind = 'status'" % sid
        current = "SELECT status FROM messages WHERE provider_id = '%s'" % sid
        seen = []
        steps = (("delivered", "", "delivered"), ("sent", "", "delivered"), ("queued", "", "delivered"),
                 ("read", "", "read"), ("delivered", "", "read"),  # a provider's re-send: no event
                 ("sending", "", "read"), ("failed", "30003", "failed"),
                 ("undelivered", "30005", "failed"), ("canceled", "", "failed"))
        for n, (s, err, want) in enumerate(steps):
            before = int(stack.scalar(statuses))
            status(s, err)
            if (s, err) in seen:
                time.sleep(0.5)
                assert int(stack.scalar(statuses)) == before, "a re-sent %s became a second event" % s
            else:
                stack.wait_scalar(statuses, before + 1)
                seen.append((s, err))
            assert stack.scalar(current) == want, "after %s (step %d): %s, want %s" % (
                s, n, stack.scalar(current), want)
        print("  statuses %s: events=%s final=%s" % (" ".join(s for s, _, _ in steps), stack.scalar(statuses),
                                                    stack.scalar(current)))
    finally:
        stack.close()


def test_sandbox_status_callbacks_close_the_loop():
    """The sandbox posts signed 'sent' then 'delivered' callbacks to the
    ingress for each reply; the outbound message ends delivered."""
    stack = Stack(PG).start()
    try:
        stack.post_twilio("/twilio/messages", sms("SMc%031d" % 1, "loop", "+15550007777"))
        stack.post_meta(meta_text("wamid.loop%021d" % 1, "loop", "16505557777"))
        stack.wait_scalar("SELECT count(*) FROM messages WHERE direction = 'outbound' AND status = 'delivered'", 2)
    finally:
        stack.close()


def test_migrations():
    url = PG.create()
    try:
        env = dict(os.environ, DATABASE_URL=url)
        procs = [subprocess.Popen([sbtest.DISPATCHER, "--migrate-only"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) for _ in range(2)]
        outs = [p.communicate(60)[0].decode() for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        rows = Postgres.psql(url, "SELECT count(*) FROM schema_migrations")
        n = int(rows[0][0])
        assert n >= 1
        out = subprocess.run([sbtest.DISPATCHER, "--migrate-only"], env=env, capture_output=True)
        assert out.returncode == 0 and int(Postgres.psql(url, "SELECT count(*) FROM schema_migrations")[0][0]) == n
        # a bad rules file stops the start with the line and the problem
        bad = os.path.join(os.path.dirname(url.replace("postgresql://", "/tmp/")), "bad-rules.yaml")
        bad = "/tmp/sb-bad-rules-%d.yaml" % os.getpid()
        with open(bad, "w") as f:
            f.write("rules:\n  - name: x\n    match: { text: { regex: \"([\" } }\n    reply: hi\n")
        out = subprocess.run([sbtest.DISPATCHER], env=dict(env, SB_RULES=bad), capture_output=True, timeout=20)
        os.unlink(bad)
        assert out.returncode == 2 and ":3:" in out.stderr.decode(), out.stderr
        out = subprocess.run([sbtest.DISPATCHER], env=dict(env, SB_BATCH_MAX="0"), capture_output=True, timeout=20)
        assert out.returncode == 2 and "SB_BATCH_MAX" in out.stderr.decode(), out.stderr
    finally:
        PG.drop(url)


def test_end_to_end_1000_messages():
    stack = Stack(PG, callbacks=False).start()
    try:
        env = dict(os.environ, TWILIO_AUTH_TOKEN=sbtest.TWILIO_TOKEN, SB_PUBLIC_URL=stack.public_url)
        out = subprocess.run([sbtest.CLI, "send", "twilio-sms", "--count", "1000", "--body", "load test",
                              "--from", "+15551230000", "--url", "http://127.0.0.1:%d" % stack.ingress.port],
                             env=env, capture_output=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        acked = out.stdout.decode().count(" 200")
        assert acked == 1000, acked
        stack.wait_scalar("SELECT count(*) FROM events WHERE from_addr = '+15551230000'", 1000, timeout=120)
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '+15551230000'", 1000, timeout=120)
        assert stack.scalar("SELECT count(DISTINCT provider_id) FROM events WHERE from_addr = '+15551230000'") == "1000"
        sent = [r for r in stack.sandbox_sends() if r.get("status") == 201
                and dict(r.get("params", [])).get("To") == "+15551230000"]
        assert len(sent) == 1000, len(sent)
        print("  1000 acknowledged, 1000 stored once, 1000 replies sent once")
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_migrations,
            test_inbound_rows_rules_and_reply_shapes,
            test_opt_out_and_start,
            test_retries_final_and_dead,
            test_statuses_never_go_backwards_and_provider_retries,
            test_sandbox_status_callbacks_close_the_loop,
            test_end_to_end_1000_messages,
        ])
    finally:
        PG.close()
