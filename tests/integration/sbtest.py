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
SANDBOX = os.path.join(BUILD, "sandbox", "switchboard-sandbox")

TWILIO_TOKEN = "test-twilio-token-0123456789abcdef"
META_SECRET = "test-meta-app-secret-0123456789"
META_VERIFY = "test-verify-token"
PUBLIC_URL = "https://hooks.example.test"


_given_ports = {}  # port -> the lock file held for it while this process lives
PORT_LOCKS = os.path.join(tempfile.gettempdir(), "sb-test-ports-%d" % os.getuid())


def _claim(port):
    """Hold a lock on port for this process's lifetime, so that tests ctest
    runs in parallel never pick the same port (two of them once did: one
    test's HTTP probe reached the other's ZeroMQ PUB). False when another
    live process holds it."""
    import fcntl
    os.makedirs(PORT_LOCKS, exist_ok=True)
    f = open(os.path.join(PORT_LOCKS, "%d" % port), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _given_ports[port] = f
    return True


def free_port():
    """A free loopback port below Linux's ephemeral range (32768-60999), so
    that no outgoing connection of another process takes it between now
    and the server's bind. Never the same one twice in a process (two
    ports picked for one server before it binds must differ), nor one that
    another test process running now has picked."""
    import random
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _claim(port):
            return port
    raise AssertionError("no free port found")


def readme_block(after, lang):
    """The first ```lang fenced block of README.md after the text `after`,
    as README has it (a test substitutes addresses, ports and paths only)."""
    with open(os.path.join(os.path.dirname(TESTS), "README.md")) as f:
        text = f.read()
    start = text.index("```%s\n" % lang, text.index(after)) + len("```%s\n" % lang)
    return text[start:text.index("\n```", start)] + "\n"


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

    def __init__(self, env=None, journal=None, port=None, pub_port=None, log_name="ingress",
                 replay_port=None):
        self.tmp = tempfile.mkdtemp(prefix="sb-ingress-")
        self.journal = journal or os.path.join(self.tmp, "journal")
        self.port = port or free_port()
        self.pub_port = pub_port or free_port()
        self.pub = "tcp://127.0.0.1:%d" % self.pub_port
        self.replay_port = replay_port or free_port()
        self.replay = "tcp://127.0.0.1:%d" % self.replay_port
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SB_LISTEN": "127.0.0.1:%d" % self.port,
            "SB_PUB": self.pub,
            "SB_REPLAY": self.replay,
            "SB_JOURNAL_DIR": self.journal,
            "SB_INGRESS_ID": "test-ingress",
            "SB_PUBLIC_URL": PUBLIC_URL,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "META_APP_SECRET": META_SECRET,
            "META_VERIFY_TOKEN": META_VERIFY,
            "SB_LOG_LEVEL": "info",
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"):
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


SKIP_EXIT = 77  # ctest's SKIP_RETURN_CODE for every test (tests/CMakeLists.txt)


class Skip(Exception):
    """Raised by a test that cannot run here; the message says why. The
    program then exits 77, which ctest and scripts/test.sh report as
    SKIPPED, never as passed."""


def run_tests(tests):
    """Run test functions in order; print one line each; exit 1 when one
    failed, else 77 when one was skipped (raised Skip), else 0."""
    failed = 0
    skipped = 0
    for test in tests:
        start = time.time()
        try:
            test()
            print("ok   %s (%.1fs)" % (test.__name__, time.time() - start), flush=True)
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (test.__name__, e), flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            failed += 1
            import traceback
            print("FAIL %s: %s" % (test.__name__, e), flush=True)
            traceback.print_exc()
    if failed:
        print("%d of %d failed" % (failed, len(tests)))
        sys.exit(1)
    if skipped:
        print("%d of %d skipped" % (skipped, len(tests)))
        sys.exit(SKIP_EXIT)


def run_tests_on_stack(tests, **stack_args):
    """Run test functions that each take one shared Stack (started once,
    on a PostgreSQL of their own, Stack's keyword arguments), as run_tests
    does; closes both at the end."""
    pg = Postgres()
    stack = None
    try:
        stack = Stack(pg, **stack_args).start()

        def bind(test):
            def run():
                test(stack)
            run.__name__ = test.__name__
            return run
        run_tests([bind(t) for t in tests])
    finally:
        if stack:
            stack.close()
        pg.close()


# ---------------------------------------------------------------------------
# The whole loop: PostgreSQL, sandbox, ingress, dispatcher.

DISPATCHER = os.path.join(BUILD, "dispatcher", "switchboard-dispatcher")
REPO = os.path.dirname(TESTS)
PG_SH = os.path.join(REPO, "scripts", "pg.sh")
TWILIO_SID = "AC" + "0123456789abcdef" * 2
META_TOKEN = "test-meta-access-token"


class PsqlSession:
    """A psql session of the test's own, kept open (a lock holder):
    statements one by one, each answered before the next. Its statements
    give up after 10 s (a lock wait included), and psql then ends, so no
    read waits for ever."""

    def __init__(self, url):
        self.p = subprocess.Popen(["psql", url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.run("SET statement_timeout = '10s';")

    def run(self, sql):
        """Run sql, then answer the line "done": what sql printed, as lines."""
        self.p.stdin.write(sql + "\nSELECT 'done';\n")
        self.p.stdin.flush()
        lines = []
        while True:
            line = self.p.stdout.readline()
            assert line, "psql ended: %s" % "".join(lines)
            if line.strip() == "done":
                return lines
            lines.append(line.strip())

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Postgres:
    """The tests' PostgreSQL server: the ctest fixture's (SB_TEST_DATABASE_URL)
    or, when run alone, a private cluster started here. Each test gets a
    database of its own."""

    def __init__(self):
        self.own_dir = None
        url = os.environ.get("SB_TEST_DATABASE_URL")
        if not url:
            port = free_port()
            self.own_dir = tempfile.mkdtemp(prefix="sb-pg-")
            os.chmod(self.own_dir, 0o755)
            subprocess.run([PG_SH, "start", self.own_dir + "/pg", str(port)], check=True,
                           stdout=subprocess.DEVNULL)
            url = "postgresql://postgres@127.0.0.1:%d/switchboard" % port
        self.server_url = url

    def url_for(self, database):
        base, _, _ = self.server_url.rpartition("/")
        return base + "/" + database

    def create(self):
        name = "sbt_%d_%d" % (os.getpid(), int(time.time() * 1000) % 10**9)
        self.psql(self.server_url, "CREATE DATABASE %s" % name)
        return self.url_for(name)

    def drop(self, url):
        name = url.rpartition("/")[2]
        self.psql(self.server_url, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)

    @staticmethod
    def psql(url, sql):
        out = subprocess.run(["psql", url, "-X", "-q", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError("psql failed: %s\n%s" % (sql, out.stderr))
        return [line.split("|") for line in out.stdout.splitlines() if line]

    def close(self):
        if self.own_dir:
            subprocess.run([PG_SH, "stop", self.own_dir + "/pg"], stdout=subprocess.DEVNULL)
            shutil.rmtree(self.own_dir, ignore_errors=True)


class Process:
    """A service process with its log in a file."""

    def __init__(self, name, argv, env, tmp):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = os.path.join(tmp, name + ".log")
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("%s did not stop on %s" % (self.name, sig))
        return self.proc.returncode if self.proc else None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def wait_http(port, path="/healthz", timeout=15, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError("%s exited with %s:\n%s" % (proc.name, proc.proc.returncode, proc.log_text()[-3000:]))
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("nothing healthy on port %d%s" % (port, path))


def http_json(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, (json.loads(data) if data else None)


class Stack:
    """PostgreSQL database, sandbox, ingress and dispatcher wired together,
    with matching development secrets."""

    def __init__(self, pg, rules=None, dispatcher_env=None, ingress_env=None, callbacks=True,
                 secrets=None):
        """secrets: provider secrets replacing the tests' defaults in every
        process (TWILIO_AUTH_TOKEN, META_APP_SECRET, ...)."""
        self.pg = pg
        self.secrets = dict(secrets or {})
        ingress_env = dict(ingress_env or {})
        for k in ("TWILIO_AUTH_TOKEN", "META_APP_SECRET", "META_VERIFY_TOKEN"):
            if k in self.secrets:
                ingress_env.setdefault(k, self.secrets[k])
        self.tmp = tempfile.mkdtemp(prefix="sb-stack-")
        self.db = pg.create()
        self.sandbox_port = free_port()
        self.ingress = Ingress(env=dict({"SB_PUBLIC_URL": None}, **(ingress_env or {})))
        self.ingress.env["SB_PUBLIC_URL"] = "http://127.0.0.1:%d" % self.ingress.port
        self.public_url = self.ingress.env["SB_PUBLIC_URL"]
        self.rules_path = os.path.join(self.tmp, "rules.yaml")
        with open(self.rules_path, "w") as f:
            f.write(rules or "rules:\n  - name: echo\n    match: { text: { any: true } }\n"
                              "    reply: \"Thanks for your message! We received: {text}\"\n")
        base_env = {k: v for k, v in os.environ.items()
                    if k in ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}
        secrets = {
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "META_APP_SECRET": META_SECRET,
            "META_ACCESS_TOKEN": META_TOKEN,
            "SB_PUBLIC_URL": self.public_url,
            "SB_LOG_LEVEL": "info",
        }
        secrets.update({k: v for k, v in self.secrets.items() if k != "META_VERIFY_TOKEN"})
        sandbox_argv = [SANDBOX, "--listen", "127.0.0.1:%d" % self.sandbox_port]
        if callbacks:
            sandbox_argv += ["--callbacks", self.public_url]
        self.sandbox = Process("sandbox", sandbox_argv, dict(base_env, **secrets), self.tmp)
        self.dispatcher_port = free_port()
        self.dispatcher_pub = "tcp://127.0.0.1:%d" % free_port()
        denv = dict(base_env, **secrets)
        denv.update({
            "DATABASE_URL": self.db,
            "SB_INGRESS_PUB": self.ingress.pub,
            "SB_INGRESS_REPLAY": self.ingress.replay,
            "SB_RULES": self.rules_path,
            "SB_DISPATCHER_LISTEN": "127.0.0.1:%d" % self.dispatcher_port,
            "SB_DISPATCHER_PUB": self.dispatcher_pub,
            "TWILIO_API_BASE": "http://127.0.0.1:%d" % self.sandbox_port,
            "META_API_BASE": "http://127.0.0.1:%d" % self.sandbox_port,
            "SB_SEND_BACKOFF_BASE_MS": "100",
            "SB_SEND_BACKOFF_MAX_MS": "1000",
        })
        denv.update(dispatcher_env or {})
        self.dispatcher = Process("dispatcher", [DISPATCHER], denv, self.tmp)

    def start(self):
        self.sandbox.start()
        wait_http(self.sandbox_port, proc=self.sandbox)
        self.ingress.start()
        self.start_dispatcher()
        return self

    def start_dispatcher(self):
        self.dispatcher.start()
        wait_http(self.dispatcher_port, "/readyz", proc=self.dispatcher)
        # the dispatcher's SUB joins asynchronously: wait until a probe
        # webhook (a status for an unknown message: no reply) is stored
        n = int(time.time() * 1000)
        deadline = time.time() + 15
        while time.time() < deadline:
            n += 1
            body = ("MessageSid=SMprobe%027d&MessageStatus=delivered&From=%%2B15550000001&To=%%2B15550000002"
                    "&AccountSid=%s" % (n, TWILIO_SID))
            assert self.post_twilio("/twilio/status", body)[0] == 200
            time.sleep(0.1)
            if self.query("SELECT count(*) FROM events WHERE provider_id = 'SMprobe%027d'" % n)[0][0] == "1":
                return
        raise AssertionError("dispatcher never stored a probe:\n" + self.dispatcher.log_text()[-3000:])

    def post_twilio(self, path, body):
        return self.ingress.post_twilio(path, body, url_base=self.public_url,
                                        token=self.secrets.get("TWILIO_AUTH_TOKEN", TWILIO_TOKEN))

    def post_meta(self, body):
        return self.ingress.post_meta(body)

    def query(self, sql):
        return Postgres.psql(self.db, sql)

    def scalar(self, sql):
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def wait_scalar(self, sql, want, timeout=20):
        deadline = time.time() + timeout
        got = None
        while time.time() < deadline:
            got = self.scalar(sql)
            if got == str(want):
                return got
            time.sleep(0.1)
        raise AssertionError("%s: got %s, want %s\n--- dispatcher log tail:\n%s" %
                             (sql, got, want, self.dispatcher.log_text()[-3000:]))

    def sandbox_requests(self):
        status, body = http_json(self.sandbox_port, "GET", "/_sandbox/requests")
        assert status == 200, status
        return body if isinstance(body, list) else body.get("requests", [])

    def sandbox_sends(self):
        """Provider send requests the sandbox received (not its own routes)."""
        return [r for r in self.sandbox_requests() if not r["path"].startswith("/_sandbox")]

    def sandbox_fail(self, query):
        status, _ = http_json(self.sandbox_port, "POST", "/_sandbox/fail?" + query)
        assert status == 200, status

    def check_logs(self, allow=()):
        bad = []
        for proc in (self.dispatcher, self.sandbox):
            for line in proc.log_text().splitlines():
                if (" error " in line and not any(a in line for a in allow)) or "AddressSanitizer" in line \
                        or "runtime error:" in line or "LeakSanitizer" in line:
                    bad.append(proc.name + ": " + line)
        assert not bad, "unexpected errors:\n" + "\n".join(bad)

    def close(self):
        for proc in (self.dispatcher, self.ingress, self.sandbox):
            try:
                proc.stop()
            except Exception:
                pass
        self.ingress.cleanup()
        try:
            self.pg.drop(self.db)
        except Exception:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)
