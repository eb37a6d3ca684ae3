"""Replies over HTTP/2, multiplexed (issue 15, "Replies in order, at provider
speed": HTTP/2 multiplexing where the provider offers it, connection reuse).

Loopback has no real provider, so Debian's nginx stands in for one that
speaks HTTP/2 over TLS (as api.twilio.com and graph.facebook.com do, by
ALPN): it serves a throwaway self-signed certificate with `http2` on its
listener and passes every request to the provider sandbox, which answers
each after 300 ms, so many sends are in flight at once. The dispatcher
reaches it through TWILIO_API_BASE=https://127.0.0.1:PORT and trusts its
certificate through SB_API_CA_FILE (nothing else changed). After a burst of
signed SMS webhooks:
- every message is answered once (the sandbox received every reply);
- nginx's access log says every send came as HTTP/2.0, over at most two
  TLS connections (nginx's $connection), while the sandbox saw many of them
  at once: streams multiplexed on a connection, not one connection each;
- a dispatcher given no SB_API_CA_FILE does not trust that certificate
  (its sends fail and are retried), and one given a file with no
  certificate refuses to start (exit 2, naming SB_API_CA_FILE).

Exits 77 (skipped) only when no nginx binary is installed (scripts/deps.sh
installs Debian's nginx)."""

import os
import shutil
import subprocess
import tempfile
import time

import sbload
import sbtest
from sbtest import Postgres, Stack
from test_nginx_mtls import Nginx, find_nginx, main_conf
from test_tls import make_cert

PG = None
N = 120
LOG_FORMAT = "'$server_protocol $connection $connection_requests $status $request_method $request_uri'"


def _conf(runtime, port, cert, key, sandbox_port):
    block = ("    log_format h2 %s;\n"
             "    server {\n"
             "        listen 127.0.0.1:%d ssl http2;\n"
             "        ssl_certificate %s;\n"
             "        ssl_certificate_key %s;\n"
             "        http2_max_concurrent_streams 256;\n"
             "        access_log %s h2;\n"
             "        location / { proxy_pass http://127.0.0.1:%d; }\n"
             "    }\n" % (LOG_FORMAT, port, cert, key, os.path.join(runtime, "h2.log"), sandbox_port))
    return main_conf(block, runtime)


def _sends(runtime):
    rows = []
    with open(os.path.join(runtime, "h2.log")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 6 and parts[5].endswith("/Messages.json"):
                rows.append(parts)
    return rows


def test_replies_over_http2():
    binary = find_nginx()
    if not binary:
        raise sbtest.Skip("no nginx binary: scripts/deps.sh installs Debian's nginx")
    keys = tempfile.mkdtemp(prefix="sb-h2-keys-")
    runtime = tempfile.mkdtemp(prefix="sb-h2-")
    os.chmod(runtime, 0o755)
    cert, key = make_cert(keys)
    os.chmod(keys, 0o755)
    for path in (cert, key):
        os.chmod(path, 0o644)
    port = sbtest.free_port()
    stack = nginx = None
    try:
        stack = Stack(PG, callbacks=False, dispatcher_env={
            "TWILIO_API_BASE": "https://127.0.0.1:%d" % port, "SB_API_CA_FILE": cert,
            "SB_SEND_CONCURRENCY": "24"})  # nginx: 64 worker_connections
        nginx = Nginx(binary, runtime, _conf(runtime, port, cert, key, stack.sandbox_port), port)
        nginx.start()
        stack.start()
        stack.sandbox_fail("count=%d&mode=slow&delay_ms=300" % N)
        tag = "h2"
        hooks = [sbload.make_webhook(tag, i, stack.public_url, kind="twilio-sms") for i in range(N)]
        acked = sbload.Load(stack.ingress.port, hooks, threads=8).run().acked()
        assert len(acked) == len(hooks), (len(acked), len(hooks))
        sbload.settle(stack, tag, hooks, [w.key for w in acked])
        counts = sbload.Counts(stack, tag, hooks, acked)
        counts.check()
        sends = _sends(runtime)
        protocols = sorted({r[0] for r in sends})
        connections = sorted({r[1] for r in sends})
        statuses = sorted({r[3] for r in sends})
        concurrent = max((r.get("concurrent", 0) for r in stack.sandbox_sends()), default=0)
        sbload.report(tag, counts.line("sends_through_nginx=%d protocols=%s tls_connections=%d "
                                       "most_at_once_at_the_sandbox=%d statuses=%s"
                                       % (len(sends), ",".join(protocols), len(connections),
                                          concurrent, ",".join(statuses))))
        assert len(sends) == len(acked) and statuses == ["201"], (len(sends), statuses)
        assert protocols == ["HTTP/2.0"], protocols
        assert len(connections) <= 2, connections
        assert concurrent >= 10, concurrent
        stack.dispatcher.stop()

        # Without SB_API_CA_FILE the system's CAs do not know this one.
        stack.dispatcher.env.pop("SB_API_CA_FILE")
        stack.start_dispatcher()
        assert sbtest.http_json(stack.sandbox_port, "DELETE", "/_sandbox/fail")[0] == 200
        before = len(_sends(runtime))
        late = [sbload.make_webhook(tag + "n", i, stack.public_url, kind="twilio-sms") for i in range(3)]
        sbload.post_until_acked(stack.ingress.port, late)
        sbload.wait_until(lambda: "SSL certificate problem" in stack.dispatcher.log_text(), 30,
                          "a send refused for its certificate", stack.dispatcher.log_text)
        assert len(_sends(runtime)) == before, "a send went through without trusting the certificate"
        stack.dispatcher.stop()

        # A file holding no certificate: refused at start, naming the setting.
        empty = os.path.join(keys, "empty.pem")
        with open(empty, "w") as f:
            f.write("not a certificate\n")
        env = dict(stack.dispatcher.env, SB_API_CA_FILE=empty)
        proc = subprocess.run([sbtest.DISPATCHER], env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and "SB_API_CA_FILE" in proc.stderr, (proc.returncode, proc.stderr)
        print("  without SB_API_CA_FILE: refused (certificate); with a file holding none: exit 2: %s"
              % [line for line in proc.stderr.splitlines() if "SB_API_CA_FILE" in line][0])
    finally:
        if nginx:
            nginx.stop()
        if stack:
            stack.close()
        shutil.rmtree(keys, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_replies_over_http2])
    finally:
        PG.close()
