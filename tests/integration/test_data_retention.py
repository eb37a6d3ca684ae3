"""SB_RETAIN_DAYS end to end (issue 15, "Data lifecycle"): the real dispatcher
removes old events, messages and finished outbox rows, exactly, while
webhooks keep being stored without waiting for it; a provider's retry of a
recent webhook is still a duplicate; a pending outbox row keeps its event;
0 keeps everything; a bad value stops the start naming the variable.

The inbound SMS is the form of Twilio's messaging webhook (MessageSid,
AccountSid, From, To, Body, NumMedia; Twilio's "TwiML for Programmable
Messaging" request parameters), as test_dispatcher.py posts it."""

import http.client
import os
import subprocess
import time
import urllib.parse

import sbtest
from sbtest import Postgres, Stack

PG = None
BULK = 200000  # old events and old messages written straight into the tables
RECENT = "SM%032d" % 910001  # 29 days old: kept
OLD = "SM%032d" % 910002  # 31 days old: removed


def sms(sid, text, frm="+15550002222", to="+15559990000"):
    return "MessageSid=%s&AccountSid=%s&From=%s&To=%s&Body=%s&NumMedia=0" % (
        sid, sbtest.TWILIO_SID, urllib.parse.quote(frm), urllib.parse.quote(to), urllib.parse.quote_plus(text))


def test_bad_values():
    url = PG.create()
    try:
        env = dict(os.environ, DATABASE_URL=url)
        for bad in ("abc", "-1", "3", "36501", "7.5"):
            out = subprocess.run([sbtest.DISPATCHER], env=dict(env, SB_RETAIN_DAYS=bad), capture_output=True,
                                 timeout=20)
            err = out.stderr.decode()
            assert out.returncode == 2 and "SB_RETAIN_DAYS" in err, (bad, out.returncode, err)
        print("  refused: abc, -1, 3, 36501, 7.5 (exit 2, naming SB_RETAIN_DAYS)")
    finally:
        PG.drop(url)


def counts(stack):
    row = stack.query("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM messages),"
                      " (SELECT count(*) FROM outbox), (SELECT count(*) FROM contacts)")[0]
    return [int(x) for x in row]


def back_date(stack, sid, days):
    ev = "(SELECT id FROM events WHERE provider_id = '%s')" % sid
    stack.query("UPDATE events SET created_at = now() - interval '%d days' WHERE id = %s" % (days, ev))
    stack.query("UPDATE messages SET created_at = now() - interval '%d days', updated_at = now() - interval '%d days'"
                " WHERE event_id = %s" % (days, days, ev))
    stack.query("UPDATE outbox SET created_at = now() - interval '%d days', updated_at = now() - interval '%d days'"
                " WHERE event_id = %s" % (days, days, ev))


def metric(stack, name):
    conn = http.client.HTTPConnection("127.0.0.1", stack.dispatcher_port, timeout=10)
    conn.request("GET", "/metrics")
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def test_retention():
    stack = Stack(PG, dispatcher_env={"SB_RETAIN_DAYS": "0"}, callbacks=False).start()
    try:
        recent, old = sms(RECENT, "hello"), sms(OLD, "hi")
        assert stack.post_twilio("/twilio/messages", recent)[0] == 200
        assert stack.post_twilio("/twilio/messages", old)[0] == 200
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '+15550002222'", 2)
        stack.dispatcher.stop()
        back_date(stack, RECENT, 29)
        back_date(stack, OLD, 31)
        # the old bulk, in time order like real traffic: ids after the live rows
        stack.query("INSERT INTO events (ingress_id, seq, provider, channel, kind, received_at, payload, created_at)"
                    " SELECT 'bulk', g, 'twilio', 'sms', 'message', now() - interval '40 days', '\\x'::bytea,"
                    " now() - interval '40 days' FROM generate_series(1, %d) g" % BULK)
        stack.query("INSERT INTO messages (direction, provider, channel, contact_addr, body, created_at, updated_at)"
                    " SELECT 'inbound', 'twilio', 'sms', '+15550003333', 'old', now() - interval '40 days',"
                    " now() - interval '40 days' FROM generate_series(1, %d) g" % BULK)
        # a reply waiting for its retry (pending, due in a day) to an old event
        stack.query("INSERT INTO outbox (kind, state, provider, channel, to_addr, event_id, next_attempt_at,"
                    " created_at, updated_at) SELECT 'reply', 'pending', 'twilio', 'sms', '+15550003333', id,"
                    " now() + interval '1 day', now() - interval '40 days', now() - interval '40 days'"
                    " FROM events WHERE ingress_id = 'bulk' AND seq = 7")
        before = counts(stack)
        probes = "SELECT count(*) FROM events WHERE provider_id LIKE 'SMprobe%'"
        probes_before = int(stack.scalar(probes))

        # 0 keeps everything (the first pass would run 2 s after start)
        stack.start_dispatcher()
        time.sleep(3.5)
        after0 = counts(stack)
        # + the start's probes (one is waited for; those posted before the
        # dispatcher subscribed come by replay, so there may be several):
        # counted in the same statement as the rows
        row = stack.query("SELECT (SELECT count(*) FROM events), (%s)" % probes)[0]
        new_probes = int(row[1]) - probes_before
        assert new_probes >= 1, new_probes
        assert after0[1:] == before[1:], (before, after0)
        assert int(row[0]) == before[0] + new_probes, (before, row, new_probes)
        stack.dispatcher.stop()

        stack.dispatcher.env["SB_RETAIN_DAYS"] = "30"
        stack.start_dispatcher()
        # inserts while the retention runs: each webhook's time from POST to its row
        latencies = []
        n = 0
        deadline = time.time() + 240
        while time.time() < deadline:
            n += 1
            sid = "SM%032d" % (920000 + n)
            start = time.time()
            assert stack.post_twilio("/twilio/messages", sms(sid, "live", frm="+15550004444"))[0] == 200
            while stack.scalar("SELECT count(*) FROM events WHERE provider_id = '%s'" % sid) != "1":
                assert time.time() - start < 30, "webhook %s not stored in 30 s" % sid
                time.sleep(0.005)
            latencies.append(time.time() - start)
            if stack.scalar("SELECT count(*) FROM events WHERE ingress_id = 'bulk'") == "1" \
                    and stack.scalar("SELECT count(*) FROM messages WHERE body = 'old'") == "0" \
                    and stack.scalar("SELECT count(*) FROM outbox WHERE to_addr = '+15550002222'") == "1":
                break
            time.sleep(0.02)
        live = n
        time.sleep(0.5)
        final = counts(stack)
        # the start's probes (status events for no message) are new rows: they stay
        base = [before[0] + int(stack.scalar(probes)) - probes_before] + before[1:]
        # exact: events less the bulk (but seq 7) and the 31-day SMS; messages less the bulk and the
        # 31-day SMS's two (in and its reply); outbox less that reply (the live ones get replies:
        # each live SMS is a message in, a reply out and an outbox row); contacts all stay
        assert final[0] == base[0] - BULK + live, (base, final, live)
        assert final[1] == base[1] - BULK - 2 + 2 * live, (base, final, live)
        assert final[2] == base[2] - 1 + live, (base, final, live)
        assert final[3] == base[3] + 1, (base, final)  # + the live sender
        assert stack.scalar("SELECT count(*) FROM events WHERE ingress_id = 'bulk' AND seq = 7") == "1"
        assert stack.scalar("SELECT count(*) FROM outbox WHERE state = 'pending' AND to_addr = '+15550003333'") == "1"
        assert stack.scalar("SELECT count(*) FROM events WHERE provider_id = '%s'" % OLD) == "0"
        assert metric(stack, 'sb_retain_deleted_total{table="events"}') == BULK
        # the provider retries the 29-day-old webhook: still a duplicate, no second reply
        dups = metric(stack, "sb_events_duplicate_total")
        assert stack.post_twilio("/twilio/messages", recent)[0] == 200
        deadline = time.time() + 10
        while metric(stack, "sb_events_duplicate_total") != dups + 1:
            assert time.time() < deadline, "the retry was not seen as a duplicate"
            time.sleep(0.05)
        assert stack.scalar("SELECT count(*) FROM events WHERE provider_id = '%s'" % RECENT) == "1"
        assert stack.scalar("SELECT count(*) FROM outbox WHERE to_addr = '+15550002222'") == "1"
        worst = max(latencies)
        latencies.sort()
        print("  removed events=%d messages=%d outbox=1 while %d webhooks were stored: latency median %.0f ms,"
              " max %.0f ms" % (BULK, BULK + 2, live, 1000 * latencies[len(latencies) // 2], 1000 * worst))
        # A measurement more than a check: under ASan with another test
        # beside it a few webhooks took up to 1.9 s while the median stayed
        # near 40 ms, so only a gross block (a lock held through the pass)
        # fails here. One unbatched delete of the same rows gave a 660 ms
        # worst on a quiet plain build; bench/retain.sh is where to compare.
        assert worst < 5.0, latencies[-5:]
        stack.check_logs()
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_bad_values, test_retention])
    finally:
        PG.close()
