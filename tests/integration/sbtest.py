"""Shared helpers of the integration tests: find the binaries, start the real
ingress on loopback ports, sign requests as Twilio and Meta do, post them
over real HTTP, and read `switchboard tap` output.

Python 3 standard library only. Each test file runs alone (ctest runs it as
a program); failures raise AssertionError with what differed.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
CONFORMANCE = os.path.join(TESTS, "conformance")
BUILD = os.environ.get("SB_BUILD_DIR") or os.path.join(os.path.dirname(TESTS), "build")

INGRESS = os.path.join(BUILD, "ingress", "switchboard-ingress")
CLI = os.path.join(BUILD, "cli", "switchboard")

TWILIO_TOKEN = "test-twilio-token-0123456789abcdef"
META_SECRET = "test-meta-app-secret-0123456789"
META_VERIFY = "test-verify-token"
PUBLIC_URL = "https://hooks.example.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conformance(name, mode="rb"):
    with open(os.path.join(CONFORMANCE, name), mode) as f:
        return f.read()


def twilio_signature(token, url, params):
    """base64(HMAC-SHA1(token, url + sorted key + sorted distinct values))."""
    data = url
    keys = sorted({k for k, _ in params})
    for k in keys:
        for v in sorted({v for kk, v in params if kk == k}):
            data += k + v
    mac = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def meta_signature(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def form_params(body):
    return urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)


class Ingress:
    """A switchboard-ingress process on loopback ports with its own journal."""

    def __init__(self, env=None, journal=None, port=None, pub_port=None, log_name="ingress"):
        self.tmp = tempfile.mkdtemp(prefix="sb-ingress-")
        self.journal = journal or os.path.join(self.tmp, "journal")
        self.port = port or free_port()
        self.pub_port = pub_port or free_port()
        self.pub = "tcp://127.0.0.1:%d" % self.pub_port
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SB_LISTEN": "127.0.0.1:%d" % self.port,
            "SB_PUB": self.pub,
            "SB_JOURNAL_DIR": self.journal,
            "SB_INGRESS_ID": "test-ingress",
            "SB_PUBLIC_URL": PUBLIC_URL,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "META_APP_SECRET": META_SECRET,
            "META_VERIFY_TOKEN": META_VERIFY,
            "SB_LOG_LEVEL": "info",
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                self.env[k] = os.environ[k]
        if env:
            for k, v in env.items():
                if v is None:
                    self.env.pop(k, None)
                else:
                    self.env[k] = v
        self.log_path = os.path.join(self.tmp, log_name + ".log")
        self.proc = None
        self.prefix_cmd = []

    def start(self, wait=True, prefix_cmd=None):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen((prefix_cmd or []) + [INGRESS], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("ingress exited with %s:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                status, _, _ = self.request("GET", "/healthz", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("ingress not healthy in %ss:\n%s" % (timeout, self.log_text()))

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def post_twilio(self, path, body, url_base=PUBLIC_URL, token=TWILIO_TOKEN, headers=None,
                    signature=None):
        if isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is None:
            signature = twilio_signature(token, url_base + path, form_params(body))
        if signature is not False:
            h["X-Twilio-Signature"] = signature
        h.update(headers or {})
        return self.request("POST", path, body, h)

    def post_meta(self, body, path="/meta/whatsapp", secret=META_SECRET, headers=None,
                  signature=None):
        if isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/json"}
        if signature is None:
            signature = meta_signature(secret, body)
        if signature is not False:
            h["X-Hub-Signature-256"] = signature
        h.update(headers or {})
        return self.request("POST", path, body, h)

    def metrics(self):
        status, _, body = self.request("GET", "/metrics")
        assert status == 200, status
        values = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("ingress did not stop on %s" % sig)
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def check_log(self, allow_errors=()):
        """Unexpected ERROR lines (or sanitizer reports) fail the test."""
        bad = []
        for line in self.log_text().splitlines():
            if " error ingress " in line and not any(a in line for a in allow_errors):
                bad.append(line)
            if "ERROR: AddressSanitizer" in line or "runtime error:" in line or "LeakSanitizer" in line:
                bad.append(line)
        assert not bad, "unexpected errors in the ingress log:\n" + "\n".join(bad)

    def cleanup(self):
        try:
            self.stop(signal.SIGKILL)
        except Exception:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


class Tap:
    """`switchboard tap --json` reading events into a list from a thread."""

    def __init__(self, endpoint, extra=()):
        env = dict(os.environ)
        self.proc = subprocess.Popen([CLI, "tap", "--json"] + list(extra) + [endpoint],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.events = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            event = json.loads(line)
            with self.lock:
                self.events.append(event)

    def wait_subscribed(self, ingress, timeout=10):
        """PUB/SUB joins asynchronously: send signed warm-up webhooks until
        one arrives. Returns the warm-up events seen."""
        deadline = time.time() + timeout
        n = 0
        while time.time() < deadline:
            n += 1
            body = "MessageSid=SMwarmup%028d&AccountSid=AC%032d&From=%%2B15550001111&To=%%2B15550002222&Body=warmup" % (n, 0)
            status, _, _ = ingress.post_twilio("/twilio/messages", body)
            assert status == 200, status
            time.sleep(0.1)
            with self.lock:
                if self.events:
                    return
        raise AssertionError("tap never received an event")

    def wait_for(self, predicate, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if predicate(self.events):
                    return list(self.events)
            time.sleep(0.05)
        with self.lock:
            return list(self.events)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.stderr.read().decode(errors="replace")


def journal_records(directory):
    """Every record of a journal, through `switchboard journal --json`."""
    out = subprocess.run([CLI, "journal", "--json", directory], capture_output=True, check=True)
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]


def run_tests(tests):
    """Run test functions in order; print one line each; exit non-zero on failure."""
    failed = 0
    for test in tests:
        start = time.time()
        try:
            test()
            print("ok   %s (%.1fs)" % (test.__name__, time.time() - start), flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            failed += 1
            import traceback
            print("FAIL %s: %s" % (test.__name__, e), flush=True)
            traceback.print_exc()
    if failed:
        print("%d of %d failed" % (failed, len(tests)))
        sys.exit(1)
