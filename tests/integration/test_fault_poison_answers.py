"""Fault: providers that answer every send with the documented example.

A mock of the providers' official OpenAPI documents (tests/conformance/
twilio-messages-openapi.json and meta-messages-openapi.json) answers each
send with the example response of its success status, static ids and all:
every Twilio send gets sid SMaaaa..., every Meta send the same wamid. The
second "sent" of an id already known must not stop anything: the dispatcher
and ingress (real processes) take 40 webhooks that each call for a reply,
and the test counts, from the mock's own log, that every reply went out
exactly once, that every outbox row ended sent (the duplicate id noted in
its last_error), and that the dispatcher's log holds few error lines.

Before the fix the pipelined settle rolled back every result of its turn on
the unique index messages_provider_id_key and retried at once: hundreds of
thousands of error lines, and a few of the 40 replies recorded.
"""

import http.server
import json
import os
import threading
import time

import sbload
import sbtest
from sbtest import Postgres, Stack

PG = None
REPLIES = 40
ERROR_LINES_MAX = 10


def _example(document, path, status):
    """The first example body of path's POST answer with this status."""
    with open(os.path.join(sbtest.CONFORMANCE, document)) as f:
        spec = json.load(f)
    content = spec["paths"][path]["post"]["responses"][status]["content"]["application/json"]
    examples = content["examples"]
    name = "Send Text Message" if "Send Text Message" in examples else sorted(examples)[0]
    return json.dumps(examples[name]["value"], ensure_ascii=False).encode()


class OpenApiMock:
    """Answers Twilio's Messages.json POST with 201 and Meta's messages POST
    with 200, each with the documented example body; counts the requests."""

    def __init__(self):
        self.twilio = _example("twilio-messages-openapi.json",
                               "/2010-04-01/Accounts/{AccountSid}/Messages.json", "201")
        self.meta = _example("meta-messages-openapi.json", "/{Version}/{Phone-Number-ID}/messages", "200")
        self.lock = threading.Lock()
        self.requests = []
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the stdlib's name
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size).decode(errors="replace")
                if self.path.endswith("/Messages.json"):
                    status, answer, provider = 201, mock.twilio, "twilio"
                elif self.path.endswith("/messages"):
                    status, answer, provider = 200, mock.meta, "meta"
                else:
                    status, answer, provider = 404, b"{}", None
                with mock.lock:
                    mock.requests.append({"path": self.path, "provider": provider, "body": body,
                                          "status": status})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sends(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _error_lines(stack):
    return [line for line in stack.dispatcher.log_text().splitlines() if " error " in line]


def test_openapi_example_answers():
    tag = "poison"
    mock = OpenApiMock()
    base = "http://127.0.0.1:%d" % mock.port
    stack = Stack(PG, callbacks=False, dispatcher_env={
        "TWILIO_API_BASE": base, "META_API_BASE": base,
        "SB_SEND_BACKOFF_BASE_MS": "50", "SB_SEND_BACKOFF_MAX_MS": "500"})
    try:
        stack.start()
        kinds = ("twilio-sms", "meta-text", "twilio-whatsapp")
        hooks = [sbload.make_webhook(tag, i, stack.public_url, kind=kinds[i % len(kinds)])
                 for i in range(REPLIES)]
        sbload.post_until_acked(stack.ingress.port, hooks)
        like = "%%%s%s-%%" % (sbload.REPLY_MARKER, tag)
        outbox_sql = "SELECT count(*) FROM outbox WHERE body LIKE '%s'" % like
        open_sql = outbox_sql + " AND state IN ('pending', 'sending')"
        deadline = time.time() + 60
        decided = still_open = -1
        while time.time() < deadline:
            decided = int(stack.scalar(outbox_sql))
            still_open = int(stack.scalar(open_sql))
            if decided == REPLIES and still_open == 0:
                break
            time.sleep(0.25)
        time.sleep(1)  # anything sent twice would show up by now
        sends = [r for r in mock.sends() if r["provider"]]
        answered = {}
        for r in sends:
            text = sbload.reply_text(r)
            if text and text.startswith(tag + "-"):
                answered[text] = answered.get(text, 0) + 1
        sent_rows = int(stack.scalar(outbox_sql + " AND state = 'sent'"))
        noted = int(stack.scalar(outbox_sql + " AND state = 'sent' AND last_error LIKE '%duplicate provider id%'"))
        linked = int(stack.scalar(
            "SELECT count(*) FROM messages WHERE direction = 'outbound' AND provider_id IS NOT NULL"
            " AND body LIKE '%s'" % like))
        errors = _error_lines(stack)
        sbload.report("poison answers", "replies_decided=%d replies_sent=%d still_open=%d mock_requests=%d "
                      "texts_answered=%d answered_twice=%d duplicate_ids_noted=%d messages_with_id=%d "
                      "error_lines=%d"
                      % (decided, sent_rows, still_open, len(sends), len(answered),
                         sum(1 for n in answered.values() if n > 1), noted, linked, len(errors)))
        for line in errors[:5]:
            print("  error line: " + line[:300])
        assert decided == REPLIES, "%d replies decided, want %d" % (decided, REPLIES)
        assert sent_rows == REPLIES, "%d of %d outbox rows sent" % (sent_rows, REPLIES)
        assert len(sends) == REPLIES, "the mock saw %d sends for %d replies" % (len(sends), REPLIES)
        assert len(answered) == REPLIES and all(n == 1 for n in answered.values()), answered
        #  One Twilio and one Meta id in all: the first row of each keeps it,
        #  every other row notes the duplicate.
        assert linked == 2, "%d outbound messages hold a provider id, want 2" % linked
        assert noted == REPLIES - 2, "%d rows note a duplicate id, want %d" % (noted, REPLIES - 2)
        assert len(errors) <= ERROR_LINES_MAX, "%d error lines" % len(errors)
        stack.dispatcher.stop()
        stack.check_logs()
    finally:
        stack.close()
        mock.close()


def test_refusing_database():
    """PostgreSQL refuses every send result for a while (a check constraint
    that no sent row passes): the sends are not repeated, the dispatcher
    backs off instead of spinning (few error lines), and once the constraint
    is gone every result is recorded."""
    tag = "refuse"
    mock = OpenApiMock()
    base = "http://127.0.0.1:%d" % mock.port
    stack = Stack(PG, callbacks=False, dispatcher_env={"TWILIO_API_BASE": base, "META_API_BASE": base})
    try:
        stack.start()
        stack.query("ALTER TABLE outbox ADD CONSTRAINT test_refuse_sent CHECK (state <> 'sent')")
        hooks = [sbload.make_webhook(tag, i, stack.public_url, kind="twilio-sms") for i in range(10)]
        sbload.post_until_acked(stack.ingress.port, hooks)
        like = "%%%s%s-%%" % (sbload.REPLY_MARKER, tag)
        outbox_sql = "SELECT count(*) FROM outbox WHERE body LIKE '%s'" % like
        #  Results that cannot be recorded hold the claims back too (one
        #  transaction does both): some rows are sent, the rest wait.
        stack.wait_scalar(outbox_sql, 10)
        time.sleep(10)
        refused_errors = len(_error_lines(stack))
        refused_sends = len(mock.sends())
        stack.query("ALTER TABLE outbox DROP CONSTRAINT test_refuse_sent")
        deadline = time.time() + 30
        while time.time() < deadline and stack.scalar(outbox_sql + " AND state = 'sent'") != "10":
            time.sleep(0.25)
        sent_rows = int(stack.scalar(outbox_sql + " AND state = 'sent'"))
        sbload.report("database refuses results", "replies_decided=10 mock_requests=%d (while refused %d) "
                      "replies_sent=%d error_lines_in_10s=%d"
                      % (len(mock.sends()), refused_sends, sent_rows, refused_errors))
        assert 0 < refused_sends <= 10, "the mock saw %d sends while refused" % refused_sends
        assert refused_errors <= 60, "%d error lines in 10 s of refusals" % refused_errors
        assert sent_rows == 10, "%d of 10 rows sent after the refusals ended" % sent_rows
        assert len(mock.sends()) == 10, "the mock saw %d sends for 10 replies" % len(mock.sends())
        stack.dispatcher.stop()
    finally:
        stack.close()
        mock.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_openapi_example_answers, test_refusing_database])
    finally:
        PG.close()
