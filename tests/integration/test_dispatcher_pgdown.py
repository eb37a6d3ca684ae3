"""PostgreSQL goes away under load and comes back: the ingress answers 200
all along, the dispatcher reports not ready, logs the change of state once,
holds what it received, and when PostgreSQL returns stores every event
exactly once and answers each message exactly once.

Runs its own PostgreSQL cluster (it stops it), never the shared one."""

import os
import subprocess
import threading
import time
import urllib.parse

import sbtest
from sbtest import Postgres, Stack


class OwnPostgres(Postgres):
    def __init__(self):
        saved = os.environ.pop("SB_TEST_DATABASE_URL", None)
        try:
            super().__init__()
        finally:
            if saved is not None:
                os.environ["SB_TEST_DATABASE_URL"] = saved

    def stop_server(self):
        subprocess.run([sbtest.PG_SH, "stop", self.own_dir + "/pg"], check=True, stdout=subprocess.DEVNULL)

    def start_server(self):
        port = self.server_url.rsplit(":", 1)[1].split("/")[0]
        subprocess.run([sbtest.PG_SH, "start", self.own_dir + "/pg", port], check=True, stdout=subprocess.DEVNULL)


def readyz(stack):
    import http.client
    try:
        conn = http.client.HTTPConnection("127.0.0.1", stack.dispatcher_port, timeout=2)
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return None


def test_postgres_down_and_back():
    pg = OwnPostgres()
    stack = Stack(pg, callbacks=False)
    try:
        stack.start()
        total = 600
        statuses = []

        def load():
            for i in range(total):
                body = "MessageSid=SMpg%030d&AccountSid=%s&From=%s&To=%s&Body=n%d" % (
                    i, sbtest.TWILIO_SID, urllib.parse.quote("+15552220000"), urllib.parse.quote("+15559990000"), i)
                statuses.append(stack.post_twilio("/twilio/messages", body)[0])
                time.sleep(0.01)

        t = threading.Thread(target=load)
        t.start()
        time.sleep(1.0)
        pg.stop_server()
        down_at = time.time()
        saw_not_ready = False
        while time.time() - down_at < 6:
            if readyz(stack) == 503:
                saw_not_ready = True
            time.sleep(0.2)
        pg.start_server()
        t.join()
        assert saw_not_ready, "the dispatcher never reported not ready while PostgreSQL was down"
        acked = statuses.count(200)
        assert acked == total, "the ingress did not answer 200 all along: %s" % {s: statuses.count(s) for s in set(statuses)}
        stack.wait_scalar("SELECT count(*) FROM events WHERE provider_id LIKE 'SMpg%'", total, timeout=60)
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '+15552220000'", total, timeout=60)
        distinct = stack.scalar("SELECT count(DISTINCT provider_id) FROM events WHERE provider_id LIKE 'SMpg%'")
        assert distinct == str(total), distinct
        sent = [r for r in stack.sandbox_sends() if r.get("status") == 201 and "To=%2B15552220000" in r["body"]]
        assert len(sent) == total, len(sent)
        assert readyz(stack) == 200
        log = stack.dispatcher.log_text()
        failing = log.count("PostgreSQL write failed")
        back = log.count("PostgreSQL writes work again")
        assert failing == 1 and back == 1, (failing, back)
        print("  acknowledged %d, stored %s, replies sent %d, duplicates 0, lost 0 (PostgreSQL down %.0f s)"
              % (acked, distinct, len(sent), 6))
    finally:
        stack.close()
        pg.close()


if __name__ == "__main__":
    sbtest.run_tests([test_postgres_down_and_back])
