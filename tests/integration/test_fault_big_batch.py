"""Fault: a big batched Meta POST costs its size (issue 10, "A batch costs
its size").

One signed Meta POST carrying 2,000 statuses (built from
tests/conformance/meta-status-*.json, each with its own wamid) goes through
the real ingress and dispatcher. The request's raw body must be stored once
per request, not once per event:
- the journal grows by at most 2x the body + 512 bytes per event;
- PostgreSQL (pg_total_relation_size over every table) by at most 3x the
  body + 2 KiB per event;
- every status event is stored once, and the body once (request_bodies),
  every event referring to it; the same POST again (a provider's retry)
  stores no event and no body a second time;
- subscribers still get the body: on the live PUB (`switchboard tap`) the
  request's first event carries raw_body and every other one says where it
  is (request_index, request_events: the event seq - request_index); a
  replay starting in the middle of the request finds it the same way.

BIG_BATCH_STATUSES overrides the number of statuses (default 2000).
"""

import hashlib
import json
import os
import subprocess
import time

import sbtest
from sbtest import CLI, Postgres, Stack, Tap

PG = None
N = int(os.environ.get("BIG_BATCH_STATUSES", "2000"))


def big_body(tag, n):
    """A Meta webhook with n statuses in one change, compact as Meta sends it."""
    names = ["sent", "delivered", "read", "failed"]
    templates = [json.loads(sbtest.conformance("meta-status-%s.json" % s))
                 for s in names]
    hook = templates[0]
    value = hook["entry"][0]["changes"][0]["value"]
    statuses = []
    for i in range(n):
        status = dict(templates[i % len(templates)]["entry"][0]["changes"][0]["value"]["statuses"][0])
        status["id"] = "wamid.%s%06d" % (tag, i)
        statuses.append(status)
    value["statuses"] = statuses
    return json.dumps(hook, separators=(",", ":")).encode()


def journal_bytes(directory):
    """Bytes of the journal's files. A file that goes between the listing
    and its size (CONSUMERS.tmp, renamed over CONSUMERS as the replay server
    saves the consumers' positions) counts as gone."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return total


def pg_bytes(stack):
    stack.query("CHECKPOINT")
    return int(stack.scalar(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r'"))


def replay_one(stack, seq):
    """The record seq of the ingress's journal, through `switchboard replay`."""
    out = subprocess.run([CLI, "replay", "--json", "--from", str(seq), "--count", "1",
                          stack.ingress.replay], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    lines = [line for line in out.stdout.decode().splitlines() if line.strip()]
    assert len(lines) == 1, (seq, len(lines))
    return json.loads(lines[0])


def test_big_batch_costs_its_size():
    tag = "bigbatch%d" % (int(time.time()) % 100000)
    body = big_body(tag, N)
    digest = hashlib.sha256(body).hexdigest()
    stack = Stack(PG, callbacks=False)
    tap = None
    problems = []
    try:
        stack.start()
        tap = Tap(stack.ingress.pub)
        _wait_subscribed(stack, tap)
        journal0 = journal_bytes(stack.ingress.journal)
        pg0 = pg_bytes(stack)

        started = time.time()
        status = _post_meta(stack, body)
        answered = time.time() - started
        like = "provider_id LIKE 'wamid.%s%%'" % tag
        stack.wait_scalar("SELECT count(*) FROM events WHERE %s" % like, N, timeout=300)
        journal_growth = journal_bytes(stack.ingress.journal) - journal0
        pg_growth = pg_bytes(stack) - pg0

        journal_limit = 2 * len(body) + 512 * N
        pg_limit = 3 * len(body) + 2048 * N
        print("FAULT big batch: statuses=%d body=%d answered_in=%.1fs" % (N, len(body), answered))
        print("FAULT big batch: journal_growth=%d limit=%d ratio_to_body=%.1f ratio_to_limit=%.2f"
              % (journal_growth, journal_limit, journal_growth / len(body),
                 journal_growth / journal_limit))
        print("FAULT big batch: pg_growth=%d limit=%d ratio_to_body=%.1f ratio_to_limit=%.2f"
              % (pg_growth, pg_limit, pg_growth / len(body), pg_growth / pg_limit), flush=True)
        if journal_growth > journal_limit:
            problems.append("journal grew by %d, limit %d" % (journal_growth, journal_limit))
        if pg_growth > pg_limit:
            problems.append("PostgreSQL grew by %d, limit %d" % (pg_growth, pg_limit))

        # Every status stored once, every one referring to the one stored body.
        rows = stack.query(
            "SELECT count(*), count(DISTINCT provider_id),"
            " count(*) FILTER (WHERE e.body_sha256 = decode('%s', 'hex'))"
            " FROM events e WHERE %s" % (digest, like)) if _has_bodies(stack) else None
        if rows is None:
            problems.append("no request_bodies table: bodies are stored per event")
        else:
            total, distinct, referring = map(int, rows[0])
            bodies = int(stack.scalar(
                "SELECT count(*) FROM request_bodies WHERE sha256 = decode('%s', 'hex')"
                " AND sha256(body) = sha256" % digest))
            print("FAULT big batch: stored=%d distinct=%d referring_to_body=%d bodies=%d"
                  % (total, distinct, referring, bodies), flush=True)
            if not (total == distinct == referring == N and bodies == 1):
                problems.append("stored=%d distinct=%d referring=%d bodies=%d, want %d %d %d 1"
                                % (total, distinct, referring, bodies, N, N, N))

        # The live subscriber: the body once, every other event points at it.
        events = tap.wait_for(lambda ev: sum(1 for e in ev
                                             if e.get("provider_id", "").startswith("wamid." + tag)) >= N,
                              timeout=120)
        ours = [e for e in events if e.get("provider_id", "").startswith("wamid." + tag)]
        carriers = [e for e in ours if e.get("raw_body")]
        tap_bytes = sum(len(json.dumps(e)) for e in ours)
        print("FAULT big batch: tap events=%d carrying_raw_body=%d tap_json_bytes=%d"
              % (len(ours), len(carriers), tap_bytes), flush=True)
        if len(ours) != N:
            problems.append("tap saw %d events of %d" % (len(ours), N))
        if len(carriers) != 1 or carriers[0]["raw_body"].encode() != body:
            problems.append("tap: %d events carry raw_body, want 1 with the body" % len(carriers))
        else:
            first = carriers[0]
            bad = [e for e in ours
                   if e.get("request_events") != N
                   or int(e["seq"]) - int(e.get("request_index", 0)) != int(first["seq"])]
            if bad:
                problems.append("tap: %d events do not point at seq %s" % (len(bad), first["seq"]))

        # A replay starting in the middle of the request.
        middle = next((e for e in ours if e.get("request_index") == N // 2), None)
        if middle is None:
            problems.append("no event with request_index=%d" % (N // 2))
        else:
            got = replay_one(stack, int(middle["seq"]))
            carrier = replay_one(stack, int(got["seq"]) - int(got["request_index"]))
            ok = (not got.get("raw_body") and got.get("raw_body_sha256")
                  and carrier.get("raw_body", "").encode() == body)
            print("FAULT big batch: replay from seq=%s (request_index=%s) found the body at seq=%s: %s"
                  % (got["seq"], got.get("request_index"), carrier["seq"], "yes" if ok else "no"))
            if not ok:
                problems.append("a replay from the middle of the request cannot find its body")

        # The provider retries the same POST: nothing stored twice.
        pg1 = pg_bytes(stack)
        _post_meta(stack, body)
        probe = "MessageSid=SMbigbatchprobe%d&MessageStatus=delivered&From=%%2B15550000001" \
                "&To=%%2B15550000002&AccountSid=%s" % (int(time.time()), sbtest.TWILIO_SID)
        stack.post_twilio("/twilio/status", probe)
        stack.wait_scalar("SELECT count(*) FROM events WHERE provider_id LIKE 'SMbigbatchprobe%'", 1,
                          timeout=300)
        retry_growth = pg_bytes(stack) - pg1
        stored_again = int(stack.scalar("SELECT count(*) FROM events WHERE %s" % like)) - N
        bodies = int(stack.scalar("SELECT count(*) FROM request_bodies")) if _has_bodies(stack) else -1
        print("FAULT big batch: retry pg_growth=%d events_stored_again=%d request_bodies=%d"
              % (retry_growth, stored_again, bodies), flush=True)
        if stored_again != 0 or retry_growth > len(body):
            problems.append("the retry stored again: events=%d pg_growth=%d"
                            % (stored_again, retry_growth))

        assert not problems, "; ".join(problems)
        stack.dispatcher.stop()
        stack.check_logs()
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        if tap:
            tap.close()
        stack.close()


def _post_meta(stack, body):
    """POST the signed body with a long deadline; it must be answered 200."""
    headers = {"Content-Type": "application/json",
               "X-Hub-Signature-256": sbtest.meta_signature(sbtest.META_SECRET, body)}
    try:
        status, _, _ = stack.ingress.request("POST", "/meta/whatsapp", body, headers, timeout=120)
    except OSError as e:
        raise AssertionError("the big POST was not answered: %s" % e)
    print("FAULT big batch: POST answered status=%d" % status, flush=True)
    assert status == 200, status
    return status


def _wait_subscribed(stack, tap, timeout=15):
    """PUB/SUB joins asynchronously: post status callbacks until tap shows one."""
    deadline = time.time() + timeout
    n = 0
    while time.time() < deadline:
        n += 1
        body = ("MessageSid=SMbigbatchwarm%d%06d&MessageStatus=sent&From=%%2B15550000001"
                "&To=%%2B15550000002&AccountSid=%s" % (os.getpid(), n, sbtest.TWILIO_SID))
        assert stack.post_twilio("/twilio/status", body)[0] == 200
        if tap.wait_for(lambda ev: ev, timeout=0.2):
            return
    raise AssertionError("tap never received an event")


def _has_bodies(stack):
    return stack.scalar("SELECT to_regclass('public.request_bodies') IS NOT NULL") == "t"


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_big_batch_costs_its_size])
    finally:
        PG.close()
