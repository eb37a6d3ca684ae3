"""mTLS for Meta (SB_TLS_CLIENT_CA, SB_TLS_CLIENT_CN; issue 12): a throwaway
CA hierarchy made with openssl, shaped as Meta's (a root CA, an intermediate
that the client sends with its certificate, CN
client.webhooks.fbclientcerts.com). The right certificate gets 200 on a
signed Meta webhook and on the verification GET; no certificate gets 403 on
Meta's route, a certificate from another CA or with another CN fails the
handshake (TLS 1.3 and 1.2), as does one with two CNs or with Meta's name
as a subjectAltName only; each is counted in
sb_http_tls_refused_total{reason}. Twilio webhooks on the same ingress pass
without a certificate. A resumed TLS session keeps its certificate. Bad
settings are refused at start, naming the variable."""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile

import sbtest
from sbtest import Ingress
from test_tls import client_context, https, make_cert, post_twilio, start_fails, wait_https

META_CN = "client.webhooks.fbclientcerts.com"


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_ca(directory, name, issuer=None):
    """A CA certificate (self-signed, or signed by issuer=(cert, key))."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    if issuer is None:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", cert, "-days", "2", "-subj", "/O=Test/CN=" + name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    else:
        csr = os.path.join(directory, name + ".csr")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/O=Test/CN=" + name)
        openssl("x509", "-req", "-in", csr, "-CA", issuer[0], "-CAkey", issuer[1], "-CAcreateserial",
                "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


def make_client(directory, name, issuer, cn, chain=(), subject=None):
    """A client certificate for cn (subject: /O=Test/CN=cn unless given)
    signed by issuer; the file holds it, then chain (the intermediates the
    client sends, as Meta sends its own)."""
    key = os.path.join(directory, name + ".key")
    csr = os.path.join(directory, name + ".csr")
    leaf = os.path.join(directory, name + ".leaf")
    cert = os.path.join(directory, name + ".crt")
    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:%s\n" % cn)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", subject or "/O=Test/CN=" + cn)
    openssl("x509", "-req", "-in", csr, "-CA", issuer[0], "-CAkey", issuer[1], "-CAcreateserial",
            "-out", leaf, "-days", "2", "-extfile", ext)
    with open(cert, "w") as out:
        for part in (leaf,) + tuple(chain):
            with open(part) as f:
                out.write(f.read())
    return cert, key


def context(server_cert, client=None, version=None):
    ctx = client_context(server_cert)
    if client:
        ctx.load_cert_chain(*client)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def refused_counts(ingress, ctx):
    status, body = https(ingress, ctx, "GET", "/metrics")
    assert status == 200, status
    counts = {}
    for line in body.decode().splitlines():
        if line.startswith("sb_http_tls_refused_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def post_meta(ingress, ctx):
    body = sbtest.conformance("meta-text.json")
    return https(ingress, ctx, "POST", "/meta/whatsapp", body,
                 {"Content-Type": "application/json",
                  "X-Hub-Signature-256": sbtest.meta_signature(sbtest.META_SECRET, body)})


def handshake_refused(ingress, ctx):
    """True when the server refuses the client's certificate: with TLS 1.2
    the handshake fails; with TLS 1.3 the client finishes first and sees the
    server's alert (or the closed connection) when it reads the answer."""
    try:
        status, _ = post_meta(ingress, ctx)
    except (ssl.SSLError, ConnectionError, OSError) as e:
        print("    refused: %s" % e.__class__.__name__ + ": " + str(e)[:100])
        return True
    print("    answered %s" % status)
    return False


def resumed_request(ingress, ctx):
    """Two connections, the second resuming the first's TLS session; the
    second POSTs a Meta webhook. (session_reused, status)."""
    body = sbtest.conformance("meta-text.json")
    request = ("POST /meta/whatsapp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               "X-Hub-Signature-256: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
               % (sbtest.meta_signature(sbtest.META_SECRET, body), len(body))).encode() + body

    def exchange(session):
        with socket.create_connection(("127.0.0.1", ingress.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(request)
                answer = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
                return tls.session, tls.session_reused, answer

    session, _, first = exchange(None)
    assert first.startswith(b"HTTP/1.1 200"), first[:80]
    _, reused, second = exchange(session)
    return reused, int(second.split(b" ", 2)[1])


def test_mtls():
    tmp = tempfile.mkdtemp(prefix="sb-mtls-")
    try:
        server = make_cert(tmp)
        root = make_ca(tmp, "meta-test-root")
        intermediate = make_ca(tmp, "meta-test-intermediate", issuer=root)
        meta = make_client(tmp, "meta", intermediate, META_CN, chain=(intermediate[0],))
        other_ca = make_ca(tmp, "other-root")
        stranger = make_client(tmp, "stranger", other_ca, META_CN)
        wrong_cn = make_client(tmp, "wrong-cn", intermediate, "client.example.test", chain=(intermediate[0],))
        # Meta's CN and another one, and Meta's name as a SAN only: neither is "the CN equals"
        two_cns = make_client(tmp, "two-cns", intermediate, META_CN, chain=(intermediate[0],),
                              subject="/O=Test/CN=%s/CN=client.example.test" % META_CN)
        san_only = make_client(tmp, "san-only", intermediate, META_CN, chain=(intermediate[0],),
                               subject="/O=Test/CN=client.example.test")
        ingress = Ingress(env={"SB_TLS_CERT": server[0], "SB_TLS_KEY": server[1], "SB_PUBLIC_URL": None,
                               "SB_TLS_CLIENT_CA": root[0], "SB_TLS_CLIENT_CN": META_CN})
        try:
            ingress.start(wait=False)
            bare = context(server[0])
            wait_https(ingress, bare)  # /healthz without a certificate
            assert refused_counts(ingress, bare) == {"no_certificate": 0, "untrusted": 0, "expired": 0,
                                                     "cn_mismatch": 0}
            # Meta's certificate (with its intermediate): 200, POST and GET
            for version in (None, ssl.TLSVersion.TLSv1_2):
                status, body = post_meta(ingress, context(server[0], meta, version))
                assert status == 200, (version, status, body)
            status, body = https(ingress, context(server[0], meta), "GET",
                                 "/meta/whatsapp?hub.mode=subscribe&hub.challenge=4242&hub.verify_token="
                                 + sbtest.META_VERIFY)
            assert (status, body) == (200, b"4242"), (status, body)
            # no certificate: 403 on Meta's route, POST and GET
            status, body = post_meta(ingress, bare)
            assert status == 403 and b"client certificate" in body, (status, body)
            status, _ = https(ingress, bare, "GET",
                              "/meta/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token="
                              + sbtest.META_VERIFY)
            assert status == 403, status
            # Twilio on the same port: no certificate needed, one allowed
            base = "https://127.0.0.1:%d" % ingress.port
            for n, ctx in enumerate((bare, context(server[0], meta))):
                status, body = post_twilio(ingress, ctx, base, n + 1)
                assert status == 200 and b"<Response" in body, (status, body)
            # another CA, another CN: the handshake fails (TLS 1.3 and 1.2)
            for version in (None, ssl.TLSVersion.TLSv1_2):
                assert handshake_refused(ingress, context(server[0], stranger, version)), "another CA"
                assert handshake_refused(ingress, context(server[0], wrong_cn, version)), "another CN"
            assert handshake_refused(ingress, context(server[0], two_cns)), "two CNs"
            assert handshake_refused(ingress, context(server[0], san_only)), "Meta's name as a SAN only"
            counts = refused_counts(ingress, bare)
            assert counts == {"no_certificate": 2, "untrusted": 2, "expired": 0, "cn_mismatch": 4}, counts
            # a resumed session keeps its verified certificate
            reused, status = resumed_request(ingress, context(server[0], meta, ssl.TLSVersion.TLSv1_2))
            assert status == 200, status
            assert reused, "the TLS session was not resumed"
            # still serving
            assert https(ingress, bare, "GET", "/healthz")[0] == 200
            assert ingress.stop() == 0
            log = ingress.log_text()
            assert "client certificates checked" in log, log
            assert "reason=cn_mismatch" in log or "reason=untrusted" in log, log
            ingress.check_log()
            print("  " + "\n  ".join(l for l in log.splitlines() if " tls " in l))
            print("  Meta's certificate 200; none 403 on /meta; other CA and CN refused in the handshake; "
                  "Twilio without one 200; counted %s" % counts)
        finally:
            ingress.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_bad_settings_refused():
    tmp = tempfile.mkdtemp(prefix="sb-mtls-")
    try:
        cert, key = make_cert(tmp)
        ca, ca_key = make_ca(tmp, "root")
        tls = {"SB_TLS_CERT": cert, "SB_TLS_KEY": key}
        damaged = os.path.join(tmp, "damaged.pem")
        with open(ca) as f:
            text = f.read()
        with open(damaged, "w") as f:
            f.write(text + text.replace("MII", "MI*", 1))
        start_fails({"SB_TLS_CLIENT_CA": ca}, "SB_TLS_CLIENT_CA", "SB_TLS_CERT is not")
        start_fails(dict(tls, SB_TLS_CLIENT_CA=os.path.join(tmp, "missing.pem")), "SB_TLS_CLIENT_CA",
                    "No such file")
        start_fails(dict(tls, SB_TLS_CLIENT_CA=ca_key), "SB_TLS_CLIENT_CA", "no PEM certificate")
        start_fails(dict(tls, SB_TLS_CLIENT_CA=damaged), "SB_TLS_CLIENT_CA", "damaged")
        start_fails(dict(tls, SB_TLS_CLIENT_CN=META_CN), "SB_TLS_CLIENT_CN", "SB_TLS_CLIENT_CA is not")
        start_fails(dict(tls, SB_TLS_CLIENT_CA=ca, SB_TLS_CLIENT_CN="x" * 65), "SB_TLS_CLIENT_CN", "longer")
        print("  CA without a certificate, missing, empty and damaged bundles, a CN without a CA, "
              "an overlong CN: refused at start")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sbtest.run_tests([test_mtls, test_bad_settings_refused])
