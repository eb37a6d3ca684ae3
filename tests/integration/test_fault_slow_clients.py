"""Hostile HTTP clients against the real ingress (issue 10, points 1 and 7):
- a body trickled one byte at a time is cut off once SB_HTTP_REQUEST_TIMEOUT_MS
  has passed since the request began, and so are trickled headers;
- 600 connections from one address (idle keep-alive, slow headers, trickled
  bodies) do not keep signed webhooks from another address waiting: each is
  answered within a second, the connections past SB_HTTP_MAX_CONN_PER_IP are
  closed at once and counted;
- a request whose framing is ambiguous (Content-Length with
  Transfer-Encoding, Content-Length values that differ, or one that is not a
  plain decimal) gets 400 and its connection is closed; nothing is journaled.

Each case prints what it measured ("FAULT ...").
"""

import resource
import socket
import threading
import time

import sbtest
from sbtest import Ingress


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    assert soft >= need, "RLIMIT_NOFILE %d is below the %d descriptors this test needs" % (soft, need)


def ingress_nofile(ingress):
    """The ingress's own soft descriptor limit, from /proc."""
    with open("/proc/%d/limits" % ingress.proc.pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


def meta_request(body, framing):
    """A correctly signed Meta webhook with the given framing headers (a
    list of header lines); the caller appends the body bytes."""
    head = ("POST /meta/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "X-Hub-Signature-256: %s\r\n" % sbtest.meta_signature(sbtest.META_SECRET, body))
    return (head + "".join(h + "\r\n" for h in framing) + "\r\n").encode()


def read_until_closed(s, timeout):
    """Everything the server sends until it closes; (data, closed, seconds)."""
    s.settimeout(timeout)
    start = time.time()
    data = b""
    closed = False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    return data, closed, time.time() - start


# ---------------------------------------------------------------------------

def trickle(s, data, period, stop):
    for i in range(len(data)):
        if stop.is_set():
            return
        try:
            s.sendall(data[i:i + 1])
        except OSError:
            return
        stop.wait(period)


def test_trickled_request_is_cut_off():
    deadline = 1.0
    ingress = Ingress(env={"SB_HTTP_REQUEST_TIMEOUT_MS": str(int(deadline * 1000))}).start()
    try:
        body = sbtest.conformance("meta-text.json")[:30]
        results = {}
        for what in ("body", "headers"):
            s = socket.create_connection(("127.0.0.1", ingress.port))
            stop = threading.Event()
            if what == "body":
                # headers at once, then 30 body bytes, one each 250 ms (7.5 s)
                s.sendall(meta_request(body, ["Content-Length: %d" % len(body)]))
                t = threading.Thread(target=trickle, args=(s, body, 0.25, stop), daemon=True)
            else:
                # the request line and headers, one byte each 100 ms (about 12 s)
                req = meta_request(body, ["Content-Length: %d" % len(body)])
                t = threading.Thread(target=trickle, args=(s, req, 0.1, stop), daemon=True)
            start = time.time()
            t.start()
            data, closed, _ = read_until_closed(s, 12)
            took = time.time() - start
            stop.set()
            t.join()
            s.close()
            status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "none"
            results[what] = (took, status, closed)
            print("FAULT trickled %s: cut off after %.2fs (deadline %.1fs) status=%s closed=%s"
                  % (what, took, deadline, status, closed), flush=True)
        for what, (took, status, closed) in results.items():
            assert closed, "trickled %s: the connection was not closed" % what
            assert took < deadline + 1.5, "trickled %s held its worker %.1fs, deadline %.1fs" % (what, took, deadline)
        assert results["body"][1] == "408", results["body"]
        assert ingress.request("GET", "/healthz")[0] == 200
        m = ingress.metrics()
        cut = m.get('sb_http_deadline_cuts_total', 0)
        # the body by the watchdog; the headers by civetweb's own header
        # deadline or the watchdog, whichever looks first (both at 1 s)
        print("FAULT trickled: sb_http_deadline_cuts_total=%d" % cut)
        assert cut >= 1, cut
        ingress.check_log()
    finally:
        ingress.cleanup()


# ---------------------------------------------------------------------------

FLOOD = 600


def connect_from(source, port):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def signed_webhook_from(source, port, i):
    """POST a signed Twilio webhook from a source address; (status, seconds)."""
    body = ("MessageSid=SMflood%027d&AccountSid=AC%032d&From=%%2B15550001111"
            "&To=%%2B15550002222&Body=hi" % (i, 0)).encode()
    path = "/twilio/messages"
    sig = sbtest.twilio_signature(sbtest.TWILIO_TOKEN, sbtest.PUBLIC_URL + path, sbtest.form_params(body))
    req = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           "X-Twilio-Signature: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
           % (path, sig, len(body))).encode() + body
    start = time.time()
    try:
        s = connect_from(source, port)
        s.sendall(req)
        data, _, _ = read_until_closed(s, 3)
        s.close()
    except OSError:
        data = b""
    took = time.time() - start
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    return status, took


def count_closed(socks):
    """How many of the sockets the server has closed (read without waiting)."""
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed += 1
                    break
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


def test_flood_from_one_address_does_not_starve_others():
    raise_nofile(FLOOD + 200)
    ingress = Ingress(env={"SB_HTTP_REQUEST_TIMEOUT_MS": "5000",
                           "SB_HTTP_KEEPALIVE_TIMEOUT_MS": "15000"}).start()
    socks = []
    stop = threading.Event()
    try:
        limit = ingress_nofile(ingress)
        assert limit >= FLOOD + 300, "the ingress may open only %d descriptors" % limit
        kinds = ("idle", "slow_headers", "trickled_body")
        body = sbtest.conformance("meta-text.json")
        for i in range(FLOOD):
            kind = kinds[i % 3]
            s = connect_from("127.0.0.1", ingress.port)
            if kind == "idle":
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            elif kind == "slow_headers":
                s.sendall(b"POST /twilio/messages HTTP/1.1\r\nHost: x\r\n")
            else:
                s.sendall(meta_request(body, ["Content-Length: %d" % len(body)]) + body[:1])
            socks.append((kind, s))

        def dribble():
            while not stop.is_set():
                for kind, s in socks:
                    try:
                        s.sendall(b"X-Slow: 1\r\n" if kind == "slow_headers" else b" ")
                    except OSError:
                        pass
                stop.wait(0.3)
        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        time.sleep(0.3)

        results = [signed_webhook_from("127.0.0.2", ingress.port, i) for i in range(20)]
        latencies = [took for _, took in results]
        print("FAULT flood: %d connections from 127.0.0.1; 20 signed webhooks from 127.0.0.2: "
              "statuses=%s worst=%.0f ms median=%.0f ms"
              % (FLOOD, sorted({st for st, _ in results}, key=str), max(latencies) * 1000,
                 sorted(latencies)[10] * 1000), flush=True)
        print("  latencies ms: %s" % " ".join("%.0f" % (l * 1000) for l in latencies))

        # how many of the flood's connections the server closed at once
        closed = count_closed(s for _, s in socks)
        # /metrics from the other address too: 127.0.0.1 is over its limit
        s = connect_from("127.0.0.2", ingress.port)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _, _ = read_until_closed(s, 3)
        s.close()
        refused = 0
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("sb_http_refused_connections_total "):
                refused = int(float(line.split()[1]))
        print("FAULT flood: closed by the server %d of %d, sb_http_refused_connections_total=%d"
              % (closed, FLOOD, refused), flush=True)
        assert all(st == 200 for st, _ in results), results
        assert max(latencies) < 1.0, "a webhook from another address took %.2fs" % max(latencies)
        assert refused >= FLOOD - 64 - 8, refused
        assert closed >= FLOOD - 64 - 8, closed
        ingress.check_log()
    finally:
        stop.set()
        for _, s in socks:
            s.close()
        ingress.cleanup()


# ---------------------------------------------------------------------------

def test_ambiguous_framing_is_refused():
    ingress = Ingress().start()
    try:
        body = sbtest.conformance("meta-text.json")
        n = len(body)
        chunked = b"%x\r\n" % n + body + b"\r\n0\r\n\r\n"
        smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        cases = [
            ("content-length and chunked", ["Content-Length: %d" % len(chunked), "Transfer-Encoding: chunked"],
             chunked + smuggled),
            ("chunked and content-length", ["Transfer-Encoding: chunked", "Content-Length: %d" % n],
             chunked + smuggled),
            ("two content-lengths that differ", ["Content-Length: %d" % n, "Content-Length: %d" % (n + len(smuggled))],
             body + smuggled),
            ("content-length with a sign", ["Content-Length: +%d" % n], body),
            ("content-length with trailing junk", ["Content-Length: %dabc" % n], body),
            ("content-length list", ["Content-Length: %d, %d" % (n, n)], body),
            ("transfer-encoding identity", ["Transfer-Encoding: identity", "Content-Length: %d" % n], body),
        ]
        refused = 0
        for name, framing, payload in cases:
            s = socket.create_connection(("127.0.0.1", ingress.port))
            s.sendall(meta_request(body, framing) + payload)
            data, closed, took = read_until_closed(s, 3)
            s.close()
            status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "none"
            answers = data.count(b"HTTP/1.1 ")
            print("FAULT framing %s: status=%s answers=%d closed=%s in %.2fs"
                  % (name, status, answers, closed, took), flush=True)
            if status == "400" and answers == 1 and closed:
                refused += 1
        # the control: the same webhook, plainly framed, is journaled
        s = socket.create_connection(("127.0.0.1", ingress.port))
        s.sendall(meta_request(body, ["Content-Length: %d" % n]) + body)
        data, _, _ = read_until_closed(s, 1)
        s.close()
        assert data.startswith(b"HTTP/1.1 200 "), data[:100]
        m = ingress.metrics()
        stored = m.get('sb_http_requests_total{route="meta_whatsapp",code="200"}', 0)
        bad = m.get('sb_http_requests_total{route="meta_whatsapp",code="400"}', 0)
        records = sbtest.journal_records(ingress.journal)
        print("FAULT framing: refused %d of %d; meta 200s=%d 400s=%d; journal records=%d (1 is the control)"
              % (refused, len(cases), stored, bad, len(records)), flush=True)
        assert refused == len(cases), "%d of %d ambiguous requests refused" % (refused, len(cases))
        assert stored == 1 and len(records) == 1, (stored, len(records))
        ingress.check_log()
    finally:
        ingress.cleanup()


if __name__ == "__main__":
    sbtest.run_tests([
        test_trickled_request_is_cut_off,
        test_flood_from_one_address_does_not_starve_others,
        test_ambiguous_framing_is_refused,
    ])
