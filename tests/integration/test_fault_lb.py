"""Issue 15's end-to-end test: HAProxy in front of two ingresses, three
dispatchers, one of each killed under load, a fourth dispatcher started.

README's ```haproxy block (section "Several ingresses behind a load
balancer") is read from README.md and run on Debian's haproxy, as this
test's child on loopback: only the bind address and port, the certificate's
path and the two server addresses are substituted, and a minimal `global`
section (a stats socket in a temp directory, so the test can read what the
health checks decided) is put in front. HAProxy terminates TLS with a
throwaway certificate; both ingresses have SB_PUBLIC_URL = HAProxy's https
URL, their own SB_INGRESS_ID, journal, PUB and replay endpoints, and every
dispatcher lists both (SB_INGRESS_PUB, SB_INGRESS_REPLAY).

The load (test_fault_dispatchers' Conversations): each of 300 contacts
sends three SMS in sequence through HAProxy, each posted until it is
answered 200, as a provider retries; the echo rule answers each, and a
fifth of the sends are slow at the sandbox, so some are in flight. Mid-load:
- kill -9 dispatcher d2 (never restarted): the texts of the rows it had
  "sending" are the only replies allowed to go out twice;
- kill -9 ingress i2: HAProxy's checks of /readyz take it out (seen on the
  stats socket); it is restarted on the same journal and ports, and the
  checks bring it back: it journals webhooks again;
- start dispatcher d4: it takes its share of the partitions and sends, and
  nothing is resent for it.
In the end (printed): every acknowledged webhook stored exactly once, every
message answered, replies sent twice only for d2's in-flight rows (at most
its SB_SEND_CONCURRENCY), every contact's replies in the order of its
messages, d2's partitions held by the others within the failover time, and
both ingresses (i2 before and after its restart) took webhooks.

Exits 77 (skipped) only when no haproxy binary is installed (scripts/deps.sh
installs Debian's haproxy).
"""

import csv
import io
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import sbload
import sbtest
from sbtest import Ingress, Postgres, Stack
from test_fault_dispatchers import CONCURRENCY, FAILOVER_MS, Conversations, Fleet, _close, _settle_and_check
from test_tls import make_cert

PG = None
CONTACTS = 300


def find_haproxy():
    for path in (shutil.which("haproxy"), "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _sub(pattern, repl, text, want):
    out, n = re.subn(pattern, repl, text, flags=re.M)
    assert n == want, "README's haproxy block has %d lines like %r, expected %d:\n%s" % (n, pattern, want, text)
    return out


class Haproxy:
    """README's HAProxy block on loopback, as this test's child."""

    def __init__(self, binary, runtime, port, pem, servers):
        block = sbtest.readme_block("### Several ingresses behind a load balancer", "haproxy")
        block = _sub(r"^(\s*bind\s+)\S+", lambda m: m.group(1) + "127.0.0.1:%d" % port, block, 1)
        block = _sub(r"(\scrt\s+)\S+", lambda m: m.group(1) + pem, block, 1)
        addresses = iter(servers)
        block = _sub(r"^(\s*server\s+\S+\s+)\S+", lambda m: m.group(1) + next(addresses), block, len(servers))
        self.socket = os.path.join(runtime, "admin.sock")
        self.conf = os.path.join(runtime, "haproxy.cfg")
        with open(self.conf, "w") as f:
            f.write("global\n    stats socket %s mode 600 level admin\n\n%s" % (self.socket, block))
        self.argv = [binary, "-db", "-f", self.conf]
        self.log_path = os.path.join(runtime, "haproxy.log")
        self.port = port
        self.proc = None

    def start(self, timeout=10):
        check = subprocess.run([self.argv[0], "-c", "-f", self.conf], capture_output=True, text=True)
        assert check.returncode == 0, "haproxy -c refused README's block:\n%s%s\n%s" % (
            check.stdout, check.stderr, open(self.conf).read())
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        sbload.wait_until(lambda: self.states().get("ingress1") == "UP", timeout, "haproxy up")
        return self

    def states(self):
        """Server name -> status (UP, DOWN, ...) of the backend, from the
        stats socket; {} while it does not answer."""
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited with %s:\n%s" % (self.proc.returncode, self.log_text()))
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(self.socket)
                s.sendall(b"show stat\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return {}
        rows = csv.reader(io.StringIO(data.decode().lstrip("# ")))
        header = next(rows, [])
        if "status" not in header:
            return {}
        return {r[1]: r[header.index("status")].split(" ")[0] for r in rows
                if len(r) == len(header) and r[0] == "ingresses" and r[1] != "BACKEND"}

    def wait_state(self, server, state, timeout=15):
        sbload.wait_until(lambda: self.states().get(server) == state, timeout, "%s %s at haproxy" % (server, state))

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop: finish what is under way
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


def _tagged_journal(ingress, tag):
    """(seq, key) of the run's records in an ingress's journal."""
    return [(int(r["seq"]), sbload.event_key(r)) for r in sbtest.journal_records(ingress.journal)
            if (sbload.event_key(r) or "").startswith(("SM" + tag, tag))]


class TakeOver(threading.Thread):
    """Watches, from the kill on, until live dispatchers other than `dead`
    hold every partition; `took` is how long that took."""

    def __init__(self, stack, dead):
        super().__init__(daemon=True)
        self.stack, self.dead, self.since, self.took = stack, dead, time.time(), None

    def run(self):
        while time.time() - self.since < 30:
            if self.stack.scalar("SELECT count(*) FROM dispatcher_partitions WHERE owner <> '%s'"
                                 " AND lease_until > now ()" % self.dead) == "256":
                self.took = time.time() - self.since
                return
            time.sleep(0.1)


def _readyz_checks(ingress):
    return sum(v for k, v in ingress.metrics().items()
               if k.startswith("sb_http_requests_total{") and 'route="readyz"' in k)


def test_haproxy_two_ingresses_three_dispatchers():
    binary = find_haproxy()
    if not binary:
        raise sbtest.Skip("no haproxy binary: scripts/deps.sh installs Debian's haproxy")
    tag = "lb"
    runtime = tempfile.mkdtemp(prefix="sb-haproxy-")
    stack = fleet = i2 = proxy = None
    try:
        cert, key = make_cert(runtime)
        pem = os.path.join(runtime, "hooks.pem")
        with open(pem, "w") as f:
            f.write(open(cert).read() + open(key).read())
        ctx = ssl.create_default_context(cafile=cert)
        port = sbtest.free_port()
        public = "https://127.0.0.1:%d" % port
        behind = {"SB_PUBLIC_URL": public, "SB_HTTP_MAX_CONN_PER_IP": "0"}
        stack = Stack(PG, callbacks=False, ingress_env=dict(behind, SB_INGRESS_ID="i1"), dispatcher_env={
            "SB_DISPATCHER_ID": "d1", "SB_DISPATCHER_FAILOVER_MS": str(FAILOVER_MS),
            "SB_SEND_CONCURRENCY": str(CONCURRENCY)})
        i2 = Ingress(env=dict(behind, SB_INGRESS_ID="i2"), log_name="ingress-i2")
        stack.ingress.env.update(behind)
        stack.public_url = public
        stack.dispatcher.env.update({"SB_PUBLIC_URL": public,
                                     "SB_INGRESS_PUB": "%s,%s" % (stack.ingress.pub, i2.pub),
                                     "SB_INGRESS_REPLAY": "%s,%s" % (stack.ingress.replay, i2.replay)})
        i2.start()
        stack.start()
        stack.sandbox_fail("rate=0.2&mode=slow&delay_ms=300")
        proxy = Haproxy(binary, runtime, port, pem, ["127.0.0.1:%d" % i.port for i in (stack.ingress, i2)])
        proxy.start()
        fleet = Fleet(stack)
        fleet.add("d2")
        fleet.add("d3")
        fleet.wait_spread(["d1", "d2", "d3"])

        conv = Conversations(stack, tag, CONTACTS, threads=6, port=port, context=ctx, pause=0.1).start()
        total = len(conv.hooks)
        conv.wait_acked(int(total * 0.2))
        in_flight = fleet.metric("d2", "sb_sends_in_flight")
        fleet.procs["d2"].proc.send_signal(signal.SIGKILL)
        fleet.procs["d2"].proc.wait()
        takeover = TakeOver(stack, "d2")
        takeover.start()
        d2_at = conv.acked
        time.sleep(0.3)  # the server finishes what the dead connection had sent
        sending = fleet.sending_of("d2")

        conv.wait_acked(int(total * 0.3))
        i2_at = conv.acked
        i2.kill9()
        before_kill = _tagged_journal(i2, tag)
        i2_killed = time.time()
        proxy.wait_state("ingress2", "DOWN")
        down_after = time.time() - i2_killed
        i2.start()
        proxy.wait_state("ingress2", "UP")
        up_after = time.time() - i2_killed
        resumed = int([line.rsplit("next_seq=", 1)[1] for line in i2.log_text().splitlines()
                       if " ready ingress_id=" in line][-1])

        d4_at = conv.acked
        assert d4_at < total, "the load ended before the fourth dispatcher started"
        fleet.add("d4")
        takeover.join(30)
        took = takeover.took
        assert took is not None, "d2's partitions not taken over in 30 s"
        fleet.wait_spread(["d1", "d3", "d4"])
        conv.join()

        counts = _settle_and_check(
            stack, fleet, tag, conv, sending,
            "contacts=%d d2_killed_at=%d sending_at_kill=%d in_flight_metric=%d takeover=%.1fs "
            "i2_killed_at=%d i2_down_after=%.1fs i2_up_after=%.1fs d4_started_at=%d d4_partitions=%d"
            % (CONTACTS, d2_at, len(sending), in_flight, took, i2_at, down_after, up_after, d4_at,
               fleet.held("d4")))
        assert counts.stored == total == 3 * CONTACTS
        assert took <= FAILOVER_MS / 1000 + 0.5, "d2's partitions moved after %.1fs" % took
        assert len(sending) <= CONCURRENCY, sending
        assert fleet.held("d2") == 0
        assert fleet.held("d4") >= 256 // 3, fleet.held("d4")
        sent_by_d4 = sum(v for k, v in sbload.metrics(fleet.ports["d4"]).items() if k.startswith("sb_sends_total{"))
        assert sent_by_d4 > 0, "d4 sent nothing"

        checks = (_readyz_checks(stack.ingress), _readyz_checks(i2))
        fleet.stop_all()
        for ingress in (stack.ingress, i2):
            assert ingress.stop() == 0
            ingress.check_log()
        proxy.stop()
        # Both ingresses took the run's webhooks, i2 again after its restart;
        # HAProxy's checks asked each for /readyz.
        i1_records = _tagged_journal(stack.ingress, tag)
        i2_records = _tagged_journal(i2, tag)
        after_restart = [k for seq, k in i2_records if seq >= resumed]
        journaled = {k for _, k in i1_records} | {k for _, k in i2_records}
        sbload.report("haproxy, two ingresses", "journaled i1=%d i2=%d (before its kill %d, after its restart %d) "
                      "twice_in_journals=%d readyz_checks=%s"
                      % (len(i1_records), len(i2_records), len(before_kill), len(after_restart),
                         len(i1_records) + len(i2_records) - len(journaled), checks))
        assert before_kill and after_restart and i1_records
        assert {w.key for w in conv.hooks} <= journaled
        assert min(checks) > 0, checks
    finally:
        if proxy:
            proxy.stop()
        if i2:
            i2.cleanup()
        _close(stack, fleet)
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_haproxy_two_ingresses_three_dispatchers])
    finally:
        PG.close()
