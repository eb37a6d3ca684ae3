"""The fault suite's load client and its exact counts.

make_webhooks() builds signed webhooks across providers and kinds, each with
an id of its own: Twilio SMS and WhatsApp messages, message statuses, voice
calls, gathers and call statuses; Meta text messages and statuses; and Meta
text messages without an id (meta-noid), which PostgreSQL can tell apart only
by their journal position (ingress, epoch, seq), so that path's duplicates
are counted too, not only what the unique index on provider ids already
prevents. Every message carries a unique text, so the echo rule's reply
names the message it answers, and a webhook's key (its provider id, or its
text when it has none) finds its event.

Load posts them from several threads over keep-alive http.client
connections (optionally paced to a rate) and records the answer to each:
the status, or None when no answer came (connection refused, reset, timed
out). A webhook that got a 200 is "acknowledged".

Counts compares PostgreSQL's events and the sandbox's request log with
what was acknowledged, and prints them in one line:
acknowledged, stored, replies sent, duplicates, lost.

Python 3 standard library only.
"""

import collections
import http.client
import json
import os
import subprocess
import threading
import time
import urllib.parse

import sbtest

REPLY_MARKER = "We received: "

#  Kinds, in the proportions of one round of 20 webhooks.
MIX = (["twilio-sms"] * 7 + ["twilio-whatsapp"] * 3 + ["meta-text"] * 2 + ["meta-noid"]
       + ["twilio-status"] * 2 + ["twilio-call", "twilio-gather", "twilio-call-status"] + ["meta-status"] * 2)
#  Kinds the echo rule answers (kind message).
REPLIED = ("twilio-sms", "twilio-whatsapp", "meta-text", "meta-noid")

META_PHONE_ID = "106540352242922"
META_DISPLAY = "15550783881"
OUR_NUMBER = "+15558675310"


def scale():
    """SB_FAULT_SCALE (default 1): multiplies the fault tests' loads."""
    try:
        value = float(os.environ.get("SB_FAULT_SCALE", "1"))
    except ValueError:
        value = 1.0
    return value if value > 0 else 1.0


def scaled(n, minimum=100):
    return max(minimum, int(n * scale()))


class Webhook:
    """One signed webhook: where it goes, its bytes, the id it is stored
    under (events.provider_id, "" for meta-noid), its key (that id, or
    its text when it has none: what finds its event, see event_key) and
    whether the echo rule answers it."""

    __slots__ = ("index", "kind", "path", "body", "headers", "provider_id", "text", "replied", "key")

    def __init__(self, index, kind, path, body, headers, provider_id, text):
        self.index = index
        self.kind = kind
        self.path = path
        self.body = body
        self.headers = headers
        self.provider_id = provider_id
        self.text = text
        self.replied = kind in REPLIED
        self.key = provider_id or text


def _twilio(public_url, path, params):
    body = urllib.parse.urlencode(params).encode()
    signature = sbtest.twilio_signature(sbtest.TWILIO_TOKEN, public_url + path, sbtest.form_params(body))
    return body, {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}


def _meta(value, padding):
    doc = {"object": "whatsapp_business_account",
           "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}
    if padding:
        doc["padding"] = "p" * padding
    body = json.dumps(doc).encode()
    return body, {"Content-Type": "application/json",
                  "X-Hub-Signature-256": sbtest.meta_signature(sbtest.META_SECRET, body)}


def make_webhook(tag, i, public_url, padding=0, kind=None):
    """Webhook number i of a run named tag (letters and digits)."""
    kind = kind or MIX[i % len(MIX)]
    uid = "%s%08d" % (tag, i)
    text = "%s-%d" % (tag, i)
    contact = "+1555%07d" % (1000 + i % 97)
    pad = [("Padding", "p" * padding)] if padding else []
    account = ("AccountSid", sbtest.TWILIO_SID)
    now = str(int(time.time()))
    if kind in ("twilio-sms", "twilio-whatsapp"):
        wa = "whatsapp:" if kind == "twilio-whatsapp" else ""
        sid = "SM" + uid
        params = [("MessageSid", sid), ("SmsMessageSid", sid), account, ("From", wa + contact),
                  ("To", wa + OUR_NUMBER), ("Body", text), ("NumMedia", "0"), ("NumSegments", "1"),
                  ("ApiVersion", "2010-04-01")]
        if wa:
            params += [("ProfileName", "Fault %d" % (i % 97)), ("WaId", contact[1:])]
        path = "/twilio/messages"
        body, headers = _twilio(public_url, path, params + pad)
        return Webhook(i, kind, path, body, headers, sid, text)
    if kind == "twilio-status":
        sid = "SM" + uid
        params = [("MessageSid", sid), ("MessageStatus", "delivered"), account, ("From", OUR_NUMBER),
                  ("To", contact), ("ApiVersion", "2010-04-01")]
        path = "/twilio/status"
        body, headers = _twilio(public_url, path, params + pad)
        return Webhook(i, kind, path, body, headers, sid, None)
    if kind in ("twilio-call", "twilio-gather", "twilio-call-status"):
        sid = "CA" + uid
        params = [("CallSid", sid), account, ("From", contact), ("To", OUR_NUMBER),
                  ("Direction", "inbound"), ("ApiVersion", "2010-04-01")]
        if kind == "twilio-call":
            path = "/twilio/voice"
            params.append(("CallStatus", "ringing"))
        elif kind == "twilio-gather":
            path = "/twilio/gather"
            params += [("CallStatus", "in-progress"), ("Digits", "%04d" % (i % 10000)),
                       ("FinishedOnKey", "#")]
        else:
            path = "/twilio/status"
            params += [("CallStatus", "completed"), ("CallDuration", "%d" % (i % 300))]
        body, headers = _twilio(public_url, path, params + pad)
        return Webhook(i, kind, path, body, headers, sid, None)
    if kind in ("meta-text", "meta-noid"):
        wamid = "wamid." + uid if kind == "meta-text" else ""
        wa_id = contact[1:]
        message = {"from": wa_id, "id": wamid, "timestamp": now, "type": "text", "text": {"body": text}}
        if not wamid:
            del message["id"]
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": META_DISPLAY, "phone_number_id": META_PHONE_ID},
                 "contacts": [{"profile": {"name": "Fault %d" % (i % 97)}, "wa_id": wa_id}],
                 "messages": [message]}
        body, headers = _meta(value, padding)
        return Webhook(i, kind, "/meta/whatsapp", body, headers, wamid, text)
    if kind == "meta-status":
        wamid = "wamid." + uid
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": META_DISPLAY, "phone_number_id": META_PHONE_ID},
                 "statuses": [{"id": wamid, "status": "delivered", "timestamp": now,
                               "recipient_id": contact[1:]}]}
        body, headers = _meta(value, padding)
        return Webhook(i, kind, "/meta/whatsapp", body, headers, wamid, None)
    raise ValueError(kind)


def make_webhooks(tag, count, public_url, padding=0, start=0):
    return [make_webhook(tag, i, public_url, padding) for i in range(start, start + count)]


class Load:
    """Posts webhooks from `threads` threads, each over its own keep-alive
    connection, in order of a shared counter; with `rate`, request k is not
    sent before start + k / rate. Records every answer."""

    def __init__(self, port, webhooks, threads=8, rate=None, timeout=15, pause_on_error=0.02):
        self.port = port
        self.webhooks = list(webhooks)
        self.threads = threads
        self.rate = rate
        self.timeout = timeout
        self.pause_on_error = pause_on_error
        self.lock = threading.Lock()
        self.next = 0
        self.status = {}          # index -> HTTP status, or None (no answer)
        self.answers = []         # (time answered, index, status), in the order answered
        self.workers = []
        self.started = None

    def _take(self):
        with self.lock:
            if self.next >= len(self.webhooks):
                return None
            k = self.next
            self.next += 1
            return k

    def _run(self):
        conn = None
        while True:
            k = self._take()
            if k is None:
                break
            if self.rate:
                delay = self.started + k / self.rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            w = self.webhooks[k]
            status = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn.request("POST", w.path, body=w.body, headers=w.headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.status[w.index] = status
                self.answers.append((time.time(), w.index, status))
            if status is None and self.pause_on_error:
                time.sleep(self.pause_on_error)
        if conn is not None:
            conn.close()

    def start(self):
        self.started = time.time()
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def done(self):
        with self.lock:
            return len(self.status)

    def wait_done(self, at_least, timeout=300):
        deadline = time.time() + timeout
        while self.done() < at_least and time.time() < deadline:
            time.sleep(0.005)
        assert self.done() >= at_least, "load stalled at %d of %d" % (self.done(), at_least)

    def join(self, timeout=600):
        deadline = time.time() + timeout
        for t in self.workers:
            t.join(max(0.1, deadline - time.time()))
        assert not any(t.is_alive() for t in self.workers), "load did not finish"
        return self

    def run(self):
        return self.start().join()

    def acked(self):
        """Webhooks answered 200."""
        with self.lock:
            return [w for w in self.webhooks if self.status.get(w.index) == 200]

    def unanswered(self):
        """Webhooks sent that got no answer at all."""
        with self.lock:
            return [w for w in self.webhooks if w.index in self.status and self.status[w.index] is None]

    def by_status(self):
        with self.lock:
            return dict(collections.Counter(self.status.values()))

    def rate_achieved(self):
        with self.lock:
            if not self.answers:
                return 0.0
            return len(self.answers) / max(1e-3, self.answers[-1][0] - self.started)


def post_until_acked(port, webhooks, timeout=60, context=None):
    """Post each webhook until it is answered 200, as a provider retries;
    over HTTPS with an ssl `context`."""
    deadline = time.time() + timeout
    for w in webhooks:
        while True:
            try:
                if context is not None:
                    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", w.path, body=w.body, headers=w.headers)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            assert time.time() < deadline, "webhook %s never acknowledged" % w.key
            time.sleep(0.05)


# ---------------------------------------------------------------------------
#  Counting


def stored_counts(stack, tag):
    """key -> rows in events, for the run named tag: the provider id, or
    for an event without one (meta-noid) its text. No unique index holds
    the latter, so a count above 1 there is a real duplicate."""
    rows = stack.query("SELECT CASE WHEN provider_id <> '' THEN provider_id ELSE text END AS key, count(*) "
                       "FROM events WHERE provider_id LIKE '%%%s%%' "
                       "OR (provider_id = '' AND text LIKE '%s-%%') GROUP BY key" % (tag, tag))
    return {key: int(n) for key, n in rows}


def event_key(record):
    """The key (see Webhook) of a journal record of `switchboard journal --json`."""
    return record.get("provider_id") or record.get("text")


def sandbox_records(stack):
    """Provider requests the sandbox recorded (its log, not its own routes)."""
    return stack.sandbox_sends()


def reply_text(record):
    """The text a send answers ("<tag>-<i>"), from its body, or None."""
    body = None
    raw = record.get("body") or ""
    if record.get("provider") == "twilio" or record.get("path", "").endswith("/Messages.json"):
        body = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True)).get("Body")
    else:
        try:
            body = json.loads(raw).get("text", {}).get("body")
        except (ValueError, AttributeError):
            body = None
    if not body or REPLY_MARKER not in body:
        return None
    return body.split(REPLY_MARKER, 1)[1]


def reply_counts(stack, tag, records=None):
    """(successful sends per text answered, every attempt per text)."""
    ok = collections.Counter()
    attempts = collections.Counter()
    for r in records if records is not None else sandbox_records(stack):
        text = reply_text(r)
        if text is None or not text.startswith(tag + "-"):
            continue
        attempts[text] += 1
        if r.get("status") in (200, 201):
            ok[text] += 1
    return ok, attempts


def wait_until(predicate, timeout, what, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError("timed out after %ss waiting for %s%s"
                         % (timeout, what, ("\n--- log tail:\n" + log()[-4000:]) if log else ""))


class Counts:
    """What one fault test checked, computed once everything settled."""

    def __init__(self, stack, tag, webhooks, acked, maybe=()):
        """webhooks: all sent; acked: those answered 200; maybe: those that
        got no answer (may be stored once, or not at all)."""
        self.tag = tag
        self.by_id = {w.key: w for w in webhooks}
        self.acked = {w.key for w in acked}
        self.maybe = {w.key for w in maybe}
        self.stored_rows = stored_counts(stack, tag)
        self.replies_ok, self.reply_attempts = reply_counts(stack, tag)
        self.stored = len(self.stored_rows)
        self.duplicates = sum(n - 1 for n in self.stored_rows.values())
        self.lost = sorted(self.acked - set(self.stored_rows))
        self.unexpected = sorted(p for p in self.stored_rows if p not in self.acked and p not in self.maybe)
        self.maybe_stored = len([p for p in self.maybe if p in self.stored_rows])
        #  Every stored message calls for one reply.
        self.reply_wanted = {self.by_id[p].text for p in self.stored_rows if p in self.by_id and self.by_id[p].replied}
        self.replies = sum(self.replies_ok.values())
        self.unanswered = sorted(t for t in self.reply_wanted if self.replies_ok.get(t, 0) == 0)
        self.replies_twice = sum(n - 1 for n in self.replies_ok.values() if n > 1)
        self.twice_texts = sorted(t for t, n in self.replies_ok.items() if n > 1)
        self.stray_replies = sorted(t for t in self.replies_ok if t not in self.reply_wanted)

    def line(self, extra=""):
        return ("acknowledged=%d stored=%d replies_sent=%d duplicates=%d lost=%d replies_twice=%d%s"
                % (len(self.acked), self.stored, self.replies, self.duplicates, len(self.lost),
                   self.replies_twice, (" " + extra) if extra else ""))

    def check(self, replies_twice_allowed=0):
        assert not self.lost, "lost %d acknowledged webhooks, e.g. %s" % (len(self.lost), self.lost[:5])
        assert self.duplicates == 0, "%d duplicate rows, e.g. %s" % (
            self.duplicates, [p for p, n in self.stored_rows.items() if n > 1][:5])
        assert not self.unexpected, "%d stored that were refused, e.g. %s" % (
            len(self.unexpected), self.unexpected[:5])
        assert not self.unanswered, "%d messages never answered, e.g. %s" % (
            len(self.unanswered), self.unanswered[:5])
        assert not self.stray_replies, "%d replies to messages not stored, e.g. %s" % (
            len(self.stray_replies), self.stray_replies[:5])
        assert self.replies_twice <= replies_twice_allowed, "%d replies sent twice (allowed %d): %s" % (
            self.replies_twice, replies_twice_allowed, self.twice_texts[:10])


def settle(stack, tag, webhooks, expect_ids, timeout=180):
    """Wait until every id in expect_ids is stored and the outbox has
    nothing left to send for the run, and every stored message is answered."""
    want = set(expect_ids)
    by_id = {w.key: w for w in webhooks}
    log = stack.dispatcher.log_text
    t0 = time.time()
    wait_until(lambda: want <= set(stored_counts(stack, tag)), timeout,
               "%d acknowledged webhooks stored" % len(want), log)

    def replies_done():
        if stack.scalar("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending') "
                        "AND body LIKE '%%%s%s-%%'" % (REPLY_MARKER, tag)) != "0":
            return False
        stored = stored_counts(stack, tag)
        wanted = {by_id[p].text for p in stored if p in by_id and by_id[p].replied}
        ok, _ = reply_counts(stack, tag)
        return wanted <= set(ok)

    t1 = time.time()
    wait_until(replies_done, timeout, "every stored message answered", log)
    return t1 - t0, time.time() - t1


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def outbox_bad(stack):
    """Outbox rows that ended failed or dead."""
    return int(stack.scalar("SELECT count(*) FROM outbox WHERE state IN ('failed', 'dead')"))


def kinds_line(webhooks):
    c = collections.Counter(w.kind for w in webhooks)
    return " ".join("%s=%d" % (k, c[k]) for k in sorted(c))


def report(name, line):
    """The one line a fault test prints for the table."""
    print("  FAULT %s: %s" % (name, line), flush=True)


class OwnPostgres(sbtest.Postgres):
    """A PostgreSQL cluster of the test's own (never the shared fixture's),
    for a test that stops it."""

    def __init__(self):
        saved = os.environ.pop("SB_TEST_DATABASE_URL", None)
        try:
            super().__init__()
        finally:
            if saved is not None:
                os.environ["SB_TEST_DATABASE_URL"] = saved

    def port(self):
        return self.server_url.rsplit(":", 1)[1].split("/")[0]

    def stop_server(self):
        subprocess.run([sbtest.PG_SH, "stop", self.own_dir + "/pg"], check=True, stdout=subprocess.DEVNULL)

    def start_server(self):
        subprocess.run([sbtest.PG_SH, "start", self.own_dir + "/pg", self.port()], check=True,
                       stdout=subprocess.DEVNULL)


def http_status(port, path, timeout=2):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except (OSError, http.client.HTTPException):
        return None
