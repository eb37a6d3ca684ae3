"""README's nginx configuration for Meta's mTLS, run on a real nginx
(issue 12, "mTLS for Meta"). The ```nginx block after "The same behind
nginx, which then terminates TLS" is read from README.md itself; only what
must differ here is substituted (listen on 127.0.0.1 and a free port, the
server certificate and Meta's CA from a throwaway hierarchy made with
test_tls_mtls's make_ca/make_client, proxy_pass to the test ingress), wrapped
in a minimal nginx.conf (daemon off, pid, logs and temp paths in a temp
directory), and run as a child process of this test: never the system
service, loopback only. Through nginx:

- Meta's certificate (CN client.webhooks.fbclientcerts.com, sent with its
  intermediate) gets 200 on a signed Meta webhook and on the verification
  GET;
- no certificate gets 403 on /meta/whatsapp (POST and GET);
- a certificate from another CA gets 400: with `ssl_verify_client optional`
  nginx finishes the handshake and answers "400 The SSL certificate error"
  itself, on every location (README says so);
- Meta's CA with another CN gets 403, and so do two certificates of Meta's
  CA that name Meta's CN beside another one (two CN attributes; a CN value
  holding ",CN=client.webhooks.fbclientcerts.com"), which the ingress's own
  SB_TLS_CLIENT_CN refuses too;
- a signed Twilio webhook without any certificate gets 200, its signature
  checked against SB_PUBLIC_URL = the https URL nginx serves, and again with
  SB_TRUST_PROXY=1 instead (the URL rebuilt from X-Forwarded-Proto and the
  Host header nginx passes);
- the ingress journaled exactly the accepted webhooks.

Exits 77 (skipped, with the reason) only when no nginx binary is installed
(scripts/deps.sh installs Debian's nginx)."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import sbtest
from sbtest import Ingress
from test_tls import https, make_cert, post_twilio
from test_tls_mtls import META_CN, context, make_ca, make_client, post_meta

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx():
    found = shutil.which("nginx")
    if found:
        return found
    for path in NGINX_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def readme_nginx_block():
    """The ```nginx block of README's "mTLS for Meta", as README has it."""
    return sbtest.readme_block("The same behind nginx, which then terminates TLS", "nginx")


def substitute(block, directive, value, want=1):
    """Replace the argument of every `directive ...;` line; README must have
    it exactly `want` times (a changed README fails here, loudly)."""
    pattern = re.compile(r"^(\s*%s\s+)[^;]*;" % re.escape(directive), re.M)
    out, n = pattern.subn(lambda m: m.group(1) + value + ";", block)
    assert n == want, "README's nginx block has %d `%s` lines, expected %d:\n%s" % (n, directive, want, block)
    return out


def nginx_conf(block, runtime, port, server, meta_ca, ingress_port):
    block = substitute(block, "listen", "127.0.0.1:%d ssl" % port)
    block = substitute(block, "ssl_certificate", server[0])
    block = substitute(block, "ssl_certificate_key", server[1])
    block = substitute(block, "ssl_client_certificate", meta_ca)
    upstream = "http://127.0.0.1:%d" % ingress_port
    block, n = re.subn(r"(proxy_pass\s+)http://[^;/]+", lambda m: m.group(1) + upstream, block)
    assert n >= 1, "README's nginx block proxies nowhere:\n" + block
    return main_conf(block, runtime)


def main_conf(block, runtime):
    """A minimal nginx.conf around a README block of `http` directives:
    daemon off, pid, logs and temp paths in `runtime`."""
    temp = "\n".join("    %s_temp_path %s;" % (kind, os.path.join(runtime, kind))
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As root, nginx's workers drop to `user` (the package's own is www-data;
    # nobody is everywhere); the temp paths are created for that user.
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return ("%sdaemon off;\nmaster_process on;\nworker_processes 1;\npid %s;\nerror_log %s info;\n"
            "events { worker_connections 64; }\nhttp {\n    access_log %s;\n%s\n%s}\n"
            % (user, os.path.join(runtime, "nginx.pid"), os.path.join(runtime, "error.log"),
               os.path.join(runtime, "access.log"), temp, block))


class Nginx:
    """nginx as this test's child, on its own configuration and prefix."""

    def __init__(self, binary, runtime, conf_text, port):
        self.runtime = runtime
        self.port = port
        self.conf = os.path.join(runtime, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf_text)
        self.argv = [binary, "-p", runtime, "-c", self.conf, "-e", os.path.join(runtime, "error.log")]
        self.proc = None

    def log_text(self):
        try:
            with open(os.path.join(self.runtime, "error.log")) as f:
                return f.read()
        except OSError:
            return ""

    def start(self, timeout=10):
        check = subprocess.run(self.argv + ["-t"], capture_output=True, text=True)
        assert check.returncode == 0, "nginx -t refused README's block:\n%s%s\n%s" % (
            check.stdout, check.stderr, open(self.conf).read())
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited with %s:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx not listening in %ss:\n%s" % (timeout, self.log_text()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: the master waits for its workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def verify_get(nginx, ctx, challenge):
    return https(nginx, ctx, "GET", "/meta/whatsapp?hub.mode=subscribe&hub.challenge=%d&hub.verify_token=%s"
                 % (challenge, sbtest.META_VERIFY))


def journaled(ingress):
    """(Meta message events, Twilio MessageSids) in the ingress's journal."""
    records = sbtest.journal_records(ingress.journal)
    meta = [r for r in records if r.get("provider") == "meta"]
    twilio = sorted(r.get("provider_id") for r in records if r.get("provider") == "twilio")
    assert len(meta) + len(twilio) == len(records), records
    return len(meta), twilio


def test_readme_nginx_mtls():
    binary = find_nginx()
    if not binary:
        raise sbtest.Skip("no nginx binary (PATH, %s): scripts/deps.sh installs Debian's nginx"
                          % ", ".join(NGINX_CANDIDATES))
    keys = tempfile.mkdtemp(prefix="sb-nginx-keys-")
    runtime = tempfile.mkdtemp(prefix="sb-nginx-")
    os.chmod(runtime, 0o755)  # nginx's workers (user nobody when root) reach their temp paths
    ingress = None
    nginx = None
    try:
        server = make_cert(keys)
        root = make_ca(keys, "meta-test-root")
        intermediate = make_ca(keys, "meta-test-intermediate", issuer=root)
        chain = (intermediate[0],)
        meta = make_client(keys, "meta", intermediate, META_CN, chain=chain)
        stranger = make_client(keys, "stranger", make_ca(keys, "other-root"), META_CN)
        wrong_cn = make_client(keys, "wrong-cn", intermediate, "client.example.test", chain=chain)
        # Meta's CN beside another CN; a CN value that holds ",CN=<Meta's>"
        # (RFC 2253 writes it "CN=x\,CN=client.webhooks...")
        two_cns = make_client(keys, "two-cns", intermediate, META_CN, chain=chain,
                              subject="/O=Test/CN=%s/CN=client.example.test" % META_CN)
        comma_cn = make_client(keys, "comma-cn", intermediate, META_CN, chain=chain,
                               subject="/O=Test/CN=x,CN=%s" % META_CN)

        port = sbtest.free_port()
        ingress_port = sbtest.free_port()
        public = "https://127.0.0.1:%d" % port
        ingress = Ingress(port=ingress_port, env={"SB_PUBLIC_URL": public, "SB_HTTP_MAX_CONN_PER_IP": "0"})
        ingress.start()
        nginx = Nginx(binary, runtime, nginx_conf(readme_nginx_block(), runtime, port, server, root[0],
                                                  ingress_port), port)
        nginx.start()

        bare = context(server[0])
        seen = {}  # what each client got through nginx, checked whole at the end
        # Meta's certificate with its intermediate: POST (TLS 1.3 and 1.2) and GET
        seen["Meta POST"] = post_meta(nginx, context(server[0], meta))
        seen["Meta POST TLS 1.2"] = post_meta(nginx, context(server[0], meta, ssl.TLSVersion.TLSv1_2))
        seen["Meta GET"] = verify_get(nginx, context(server[0], meta), 4242)
        # no certificate on Meta's route, POST and GET
        seen["none POST"] = post_meta(nginx, bare)
        seen["none GET"] = verify_get(nginx, bare, 1)
        # another CA: nginx itself answers (optional verification failed)
        seen["other CA"] = post_meta(nginx, context(server[0], stranger))
        # Meta's CA, not (only) Meta's CN
        for name, cert in (("another CN", wrong_cn), ("two CNs", two_cns), ("',CN=' in a CN", comma_cn)):
            seen[name] = post_meta(nginx, context(server[0], cert))
        # Twilio presents no certificate; it signs the URL it called, nginx's https one
        seen["Twilio"] = post_twilio(nginx, bare, public, 1)
        assert ingress.stop() == 0
        ingress.check_log()
        journal = {"SB_PUBLIC_URL": journaled(ingress)}
        ingress.cleanup()

        # The same nginx, an ingress without SB_PUBLIC_URL that trusts the
        # proxy: Twilio's URL rebuilt from X-Forwarded-Proto and Host.
        ingress = Ingress(port=ingress_port, env={"SB_PUBLIC_URL": None, "SB_TRUST_PROXY": "1",
                                                  "SB_HTTP_MAX_CONN_PER_IP": "0"})
        ingress.start()
        seen["Twilio, SB_TRUST_PROXY=1"] = post_twilio(nginx, bare, public, 2)
        assert ingress.stop() == 0
        ingress.check_log()
        journal["SB_TRUST_PROXY=1"] = journaled(ingress)

        statuses = {name: status for name, (status, _) in seen.items()}
        print("  nginx %s, README's block: %s" % (binary, statuses))
        print("  journaled: %s" % journal)
        assert statuses == {"Meta POST": 200, "Meta POST TLS 1.2": 200, "Meta GET": 200, "none POST": 403,
                            "none GET": 403, "other CA": 400, "another CN": 403, "two CNs": 403,
                            "',CN=' in a CN": 403, "Twilio": 200, "Twilio, SB_TRUST_PROXY=1": 200}, seen
        assert seen["Meta GET"][1] == b"4242", seen["Meta GET"]
        assert b"SSL certificate error" in seen["other CA"][1], seen["other CA"]
        assert b"<Response" in seen["Twilio"][1] and b"<Response" in seen["Twilio, SB_TRUST_PROXY=1"][1], seen
        # only the accepted webhooks reached the journal: the two Meta POSTs
        # (one message event each) and each Twilio message
        assert journal == {"SB_PUBLIC_URL": (2, ["SM%032d" % 1]), "SB_TRUST_PROXY=1": (0, ["SM%032d" % 2])}, journal

        nginx.stop()
        assert nginx.proc.returncode == 0, (nginx.proc.returncode, nginx.log_text())
        errors = [l for l in nginx.log_text().splitlines() if "[emerg]" in l or "[alert]" in l]
        assert not errors, errors
    finally:
        if nginx:
            nginx.stop()
        if ingress:
            ingress.cleanup()
        shutil.rmtree(keys, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    sbtest.run_tests([test_readme_nginx_mtls])
