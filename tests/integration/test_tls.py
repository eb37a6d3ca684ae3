"""HTTPS on the ingress itself (SB_TLS_CERT, SB_TLS_KEY): a self-signed
certificate made with openssl; signed webhooks over https answered 200 (and
Twilio's signature checked against the https URL); the event published; plain
http and TLS 1.1 refused on the TLS port; bad settings refused at start,
naming the variable."""

import http.client
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import warnings

import sbtest
from sbtest import Ingress, Tap

SMS = ("MessageSid=SM%032d&AccountSid=AC%032d&From=%%2B14155550100&To=%%2B15558675310"
       "&Body=hello+over+tls&NumMedia=0")


def make_cert(directory, name="server", cn="localhost"):
    """A self-signed EC certificate for localhost and 127.0.0.1."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


def https(ingress, ctx, method, path, body=None, headers=None):
    conn = http.client.HTTPSConnection("127.0.0.1", ingress.port, timeout=10, context=ctx)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_https(ingress, ctx, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ingress.proc.poll() is not None:
            raise AssertionError("ingress exited with %s:\n%s" % (ingress.proc.returncode, ingress.log_text()))
        try:
            if https(ingress, ctx, "GET", "/healthz")[0] == 200:
                return
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise AssertionError("ingress not healthy over https:\n" + ingress.log_text())


def post_twilio(ingress, ctx, base, n):
    body = SMS % (n, 0)
    sig = sbtest.twilio_signature(sbtest.TWILIO_TOKEN, base + "/twilio/messages", sbtest.form_params(body.encode()))
    return https(ingress, ctx, "POST", "/twilio/messages", body,
                 {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig})


def test_https_webhooks():
    tmp = tempfile.mkdtemp(prefix="sb-tls-")
    cert, key = make_cert(tmp)
    # No SB_PUBLIC_URL: Twilio's URL is rebuilt from the request, with the
    # scheme of the connection.
    ingress = Ingress(env={"SB_TLS_CERT": cert, "SB_TLS_KEY": key, "SB_PUBLIC_URL": None})
    tap = None
    try:
        ingress.start(wait=False)
        ctx = client_context(cert)
        wait_https(ingress, ctx)
        base = "https://127.0.0.1:%d" % ingress.port
        tap = Tap(ingress.pub)
        deadline = time.time() + 10
        n = 0
        while not tap.events and time.time() < deadline:
            n += 1
            status, body = post_twilio(ingress, ctx, base, n)
            assert status == 200, (status, body)
            time.sleep(0.1)
        assert tap.events, "no event published for a webhook received over https"
        assert tap.events[-1]["topic"] == "sb.v1.twilio.sms.message", tap.events[-1]
        assert b"<Response" in body, body
        # signed for http://: refused, so the URL checked is really https
        status, _ = post_twilio(ingress, ctx, "http://127.0.0.1:%d" % ingress.port, 999)
        assert status == 403, status
        # Meta over https
        meta = sbtest.conformance("meta-text.json")
        status, _ = https(ingress, ctx, "POST", "/meta/whatsapp", meta,
                          {"Content-Type": "application/json",
                           "X-Hub-Signature-256": sbtest.meta_signature(sbtest.META_SECRET, meta)})
        assert status == 200, status
        # plain http to the TLS port gets no HTTP answer
        try:
            status = ingress.request("GET", "/healthz", timeout=5)[0]
        except (OSError, http.client.HTTPException):
            status = None
        assert status is None, "plain http on the TLS port answered %s" % status
        # TLS 1.1 is refused (the client allows it; the server must not)
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 itself
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(cert)
        refused = True
        try:
            old.set_ciphers("DEFAULT:@SECLEVEL=0")
            old.minimum_version = ssl.TLSVersion.TLSv1_1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            https(ingress, old, "GET", "/healthz")
            refused = False
        except (ssl.SSLError, OSError, ValueError):
            pass
        assert refused, "a TLS 1.1 handshake succeeded"
        # an untrusted client (no CA) cannot verify the server
        try:
            https(ingress, ssl.create_default_context(), "GET", "/healthz")
            assert False, "an unknown certificate was accepted"
        except ssl.SSLCertVerificationError:
            pass
        # still serving after all that
        assert https(ingress, ctx, "GET", "/healthz")[0] == 200
        log = ingress.log_text()
        assert "tls=on" in log, log
        print("  " + "\n  ".join(l for l in log.splitlines() if " tls " in l) or "  (no tls log line)")
        assert ingress.stop() == 0
        ingress.check_log()
        print("  https webhooks answered 200 after %d tries; http, TLS 1.1 and unknown CAs refused" % n)
    finally:
        if tap:
            tap.close()
        ingress.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def start_fails(env, variable, why=None):
    ingress = Ingress(env=env)
    try:
        ingress.log = open(ingress.log_path, "ab")
        ingress.proc = subprocess.Popen([sbtest.INGRESS], env=ingress.env, stdin=subprocess.DEVNULL,
                                        stdout=ingress.log, stderr=subprocess.STDOUT)
        try:
            code = ingress.proc.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError("ingress did not exit with %s" % env)
        text = ingress.log_text()
        assert code != 0, "ingress started with %s:\n%s" % (env, text)
        assert variable in text and (why is None or why in text), \
            "expected %s (%s) in the log:\n%s" % (variable, why, text)
        assert "AddressSanitizer" not in text and "runtime error:" not in text, text
    finally:
        ingress.cleanup()


def test_bad_settings_refused():
    tmp = tempfile.mkdtemp(prefix="sb-tls-")
    try:
        cert, key = make_cert(tmp)
        other_cert, other_key = make_cert(tmp, "other")
        encrypted = os.path.join(tmp, "encrypted.key")
        subprocess.run(["openssl", "pkey", "-in", key, "-out", encrypted, "-aes256", "-passout", "pass:secret"],
                       check=True, capture_output=True)
        start_fails({"SB_TLS_CERT": os.path.join(tmp, "missing.crt"), "SB_TLS_KEY": key}, "SB_TLS_CERT",
                    "No such file")
        start_fails({"SB_TLS_CERT": cert}, "SB_TLS_KEY", "is not")
        start_fails({"SB_TLS_KEY": key}, "SB_TLS_CERT", "is not")
        start_fails({"SB_TLS_CERT": key, "SB_TLS_KEY": key}, "SB_TLS_CERT", "no PEM certificate")
        start_fails({"SB_TLS_CERT": cert, "SB_TLS_KEY": other_key}, "SB_TLS_KEY", "does not belong")
        start_fails({"SB_TLS_CERT": cert, "SB_TLS_KEY": encrypted}, "SB_TLS_KEY", "unencrypted")
        start_fails({"SB_TLS_CERT": cert, "SB_TLS_KEY": other_cert}, "SB_TLS_KEY")
        print("  missing, lone, mismatched, encrypted and wrong-kind files refused at start")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sbtest.run_tests([test_https_webhooks, test_bad_settings_refused])
