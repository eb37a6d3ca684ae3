"""Connection pressure and a full disk, against the real ingress:
- 200 idle keep-alive connections and 50 slow-header connections held open
  do not starve signed webhooks (each answered within a second) with the
  default worker pool (SB_HTTP_THREADS unset); with a pool smaller than the
  held connections they do starve, which shows the check can fail;
- when the journal cannot write (file size limit reached: EFBIG, as on a
  full disk) the ingress answers 503, never 200; when space returns it
  answers 200 again, and the journal holds exactly the acknowledged events.
"""

import socket
import subprocess
import threading
import time

import sbtest
from sbtest import Ingress


def hold_connections(port, idle, slow):
    """Open idle keep-alive connections (one request answered, then silent)
    and slow-header connections (a header line dribbled now and then)."""
    socks = []
    for _ in range(idle):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        socks.append(s)
    for s in socks:
        data = b""
        while b"ok\n" not in data:
            chunk = s.recv(4096)
            assert chunk, "idle connection closed early"
            data += chunk
    slow_socks = []
    for _ in range(slow):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /twilio/messages HTTP/1.1\r\nHost: x\r\n")
        slow_socks.append(s)
    return socks, slow_socks


def dribble(slow_socks, stop):
    while not stop.is_set():
        for s in slow_socks:
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                pass
        stop.wait(0.3)


def webhook_latencies(ingress, count):
    latencies = []
    for i in range(count):
        body = "MessageSid=SMstarve%027d&From=%%2B15550001111&To=%%2B15550002222&Body=hi" % i
        start = time.time()
        try:
            status = ingress.post_twilio("/twilio/messages", body)[0]
        except OSError:
            status = None
        latencies.append((status, time.time() - start))
    return latencies


def run_pressure(threads, expect_ok):
    """threads None: the default pool (SB_HTTP_THREADS unset)."""
    # All from one address, as through a proxy: the per-address limit is off
    # (test_fault_slow_clients covers it); this is about the pool's size.
    env = {"SB_HTTP_REQUEST_TIMEOUT_MS": "10000", "SB_HTTP_KEEPALIVE_TIMEOUT_MS": "15000",
           "SB_HTTP_MAX_CONN_PER_IP": "0"}
    if threads is not None:
        env["SB_HTTP_THREADS"] = str(threads)
    ingress = Ingress(env=env).start()
    stop = threading.Event()
    socks = []
    try:
        idle, slow = hold_connections(ingress.port, 200 if expect_ok else min(200, threads), 50 if expect_ok else 0)
        socks = idle + slow
        t = threading.Thread(target=dribble, args=(slow, stop), daemon=True)
        t.start()
        time.sleep(0.2)
        if expect_ok:
            lat = webhook_latencies(ingress, 20)
            worst = max(l for _, l in lat)
            assert all(s == 200 for s, _ in lat), lat
            assert worst < 1.0, "a webhook took %.3fs with idle and slow connections held" % worst
            print("  threads=%s: 200 idle + 50 slow held, 20 webhooks, worst %.1f ms"
                  % (threads or "default", worst * 1000))
        else:
            # every worker busy with an idle connection: a webhook waits
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", ingress.port, timeout=1.0)
            starved = False
            try:
                conn.request("GET", "/healthz")
                conn.getresponse().read()
            except (socket.timeout, OSError):
                starved = True
            conn.close()
            assert starved, "expected starvation with threads=%d, none seen: the check could not fail" % threads
            print("  threads=%d: %d idle held, a new request starved (as expected)" % (threads, threads))
    finally:
        stop.set()
        for s in socks:
            s.close()
        ingress.cleanup()


def test_idle_and_slow_connections_do_not_starve_webhooks():
    # The default pool: SB_HTTP_THREADS's default must leave room for them.
    run_pressure(None, expect_ok=True)


def test_the_starvation_check_can_fail():
    run_pressure(16, expect_ok=False)


def test_journal_full_answers_503_then_recovers():
    ingress = Ingress(env={"SB_JOURNAL_SEGMENT_BYTES": "16m"})
    ingress.start(prefix_cmd=["prlimit", "--fsize=200000:unlimited", "--"])
    try:
        acked = []
        refused = 0
        for i in range(400):
            sid = "SMfull%026d" % i
            body = "MessageSid=%s&From=%%2B15550001111&To=%%2B15550002222&Body=%s" % (sid, "x" * 200)
            status = ingress.post_twilio("/twilio/messages", body)[0]
            if status == 200:
                assert refused == 0, "a 200 after the journal was full"
                acked.append(sid)
            else:
                assert status == 503, status
                refused += 1
        assert refused > 0 and acked, (len(acked), refused)
        status, _, body = ingress.request("GET", "/readyz")
        assert status == 503, (status, body)
        # space returns: readiness comes back by itself (the writer probes the disk)
        subprocess.run(["prlimit", "--pid", str(ingress.proc.pid), "--fsize=unlimited:unlimited"], check=True)
        deadline = time.time() + 5
        while ingress.request("GET", "/readyz")[0] != 200 and time.time() < deadline:
            time.sleep(0.1)
        assert ingress.request("GET", "/readyz")[0] == 200, "readiness did not come back without traffic"
        for i in range(5):
            sid = "SMback%026d" % i
            body = "MessageSid=%s&From=%%2B15550001111&To=%%2B15550002222&Body=back" % sid
            assert ingress.post_twilio("/twilio/messages", body)[0] == 200
            acked.append(sid)
        assert ingress.request("GET", "/readyz")[0] == 200
        assert ingress.stop() == 0
        records = sbtest.journal_records(ingress.journal)
        assert [r["provider_id"] for r in records] == acked, "journal differs from the acknowledged events"
        assert [int(r["seq"]) for r in records] == list(range(1, len(acked) + 1))
        print("  acknowledged %d, refused %d with 503, journal holds %d, no gaps" % (len(acked), refused, len(records)))
        m = None
        del m
    finally:
        ingress.cleanup()


if __name__ == "__main__":
    sbtest.run_tests([
        test_idle_and_slow_connections_do_not_starve_webhooks,
        test_the_starvation_check_can_fail,
        test_journal_full_answers_503_then_recovers,
    ])
