"""switchboard console (issue 14) against the real ingress, dispatcher,
PostgreSQL and provider sandbox, driven in headless Chromium from Debian's
packages (chromium, chromium-driver, python3-selenium):

- a signed webhook with a unique text appears in the open page without a
  reload, within 1 s of its 200;
- its reply's status reaches delivered in the page;
- a reply the sandbox fails until it is dead is listed under Dead letters;
  Retry sends it (PostgreSQL says sent, the page shows it sent);
- a reply typed in the form reaches the sandbox; one to an opted-out
  contact is refused and says why;
- a `<script>` text is shown as text and never runs;
- media, a location and gathered digits are shown (the conformance
  fixtures named in tests/conformance/README.md);
- the console restarted while the page is open: the page reconnects and
  catches up from PostgreSQL with what arrived meanwhile;
- with SB_CONSOLE_TOKEN: 401 without it (page, API, stream), the login
  sets an HttpOnly cookie, POSTs need the same origin; bound to a
  non-loopback address without a token, the console refuses to start,
  naming SB_CONSOLE_TOKEN.

The page's screenshot is saved to console.png in the build directory
(SB_BUILD_DIR), and to docs/console.png, the README's, only when
SB_UPDATE_SCREENSHOT=1 asks (so a run leaves the tree clean). Without a Chromium
that starts, the browser tests are SKIPPED (exit 77) with the reason; the
others still run.
"""

import http.client
import os
import subprocess
import sys
import time
import urllib.parse


def _import_selenium():
    """selenium from Debian's python3-selenium: a pyenv python3 on PATH does
    not see /usr/lib/python3/dist-packages, so add it (or re-run under
    /usr/bin/python3 when that is another Python version)."""
    try:
        import selenium  # noqa: F401
        return None
    except ImportError:
        pass
    dist = "/usr/lib/python3/dist-packages"
    if os.path.isdir(dist) and dist not in sys.path:
        sys.path.append(dist)
        try:
            import selenium  # noqa: F401,F811
            return None
        except ImportError as e:
            err = str(e)
    else:
        err = "no %s" % dist
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != "/usr/bin/python3" \
            and not os.environ.get("SB_CONSOLE_TEST_REEXEC"):
        os.environ["SB_CONSOLE_TEST_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    return "python3-selenium cannot be imported: %s" % err


SELENIUM_PROBLEM = _import_selenium()

import sbtest  # noqa: E402
from sbtest import Postgres, Process, Stack  # noqa: E402

CONSOLE = os.path.join(sbtest.BUILD, "console", "switchboard-console")
# docs/console.png is tracked: rewritten only when asked.
SCREENSHOT = (os.path.join(sbtest.REPO, "docs", "console.png")
              if os.environ.get("SB_UPDATE_SCREENSHOT") == "1"
              else os.path.join(sbtest.BUILD, "console.png"))
PG = None

RULES = """
opt_out: [STOP]
opt_in: [START]
rules:
  - name: code
    match: { kind: gather, text: { any: true } }
    none: true
    publish: true
  - name: sms-code
    match: { kind: message, text: { regex: "G-[0-9]{6}" } }
    none: true
    publish: true
  - name: echo
    match: { text: { any: true } }
    reply: "Thanks for your message! We received: {text}"
"""


def sms(sid, text, frm, to="+15559990000"):
    # Twilio's inbound message parameters (MessageSid, AccountSid, From, To,
    # Body, NumMedia), as tests/integration/test_dispatcher.py sends them.
    return "MessageSid=%s&AccountSid=%s&From=%s&To=%s&Body=%s&NumMedia=0" % (
        sid, sbtest.TWILIO_SID, urllib.parse.quote(frm), urllib.parse.quote(to),
        urllib.parse.quote_plus(text))


class Console:
    """switchboard-console on a loopback port, wired to a Stack."""

    def __init__(self, stack, env=None, port=None):
        self.port = port or sbtest.free_port()
        base = {k: v for k, v in os.environ.items()
                if k in ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}
        base.update({
            "DATABASE_URL": stack.db,
            "SB_INGRESS_PUB": stack.ingress.pub,
            "SB_DISPATCHER_PUB": stack.dispatcher_pub,
            "SB_CONSOLE_LISTEN": "127.0.0.1:%d" % self.port,
            "SB_LOG_LEVEL": "info",
        })
        base.update(env or {})
        self.proc = Process("console", [CONSOLE], base, stack.tmp)

    def start(self):
        self.proc.start()
        sbtest.wait_http(self.port, "/healthz", proc=self.proc)
        return self

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data

    def check_log(self):
        bad = [l for l in self.proc.log_text().splitlines()
               if " error " in l or "AddressSanitizer" in l or "runtime error:" in l
               or "LeakSanitizer" in l]
        assert not bad, "console log:\n" + "\n".join(bad)

    def stop(self):
        rc = self.proc.stop()
        assert rc == 0, "console exited %s:\n%s" % (rc, self.proc.log_text()[-3000:])


def wait_until(what, predicate, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - the page may be mid-render
            last = e
        time.sleep(0.05)
    raise AssertionError("%s: not within %.0f s (last: %r)" % (what, timeout, last))


# ---------------------------------------------------------------------------
# Without a browser: the token, the same-origin rule, the config refusal.

def test_refuses_non_loopback_without_token():
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env["SB_CONSOLE_LISTEN"] = "0.0.0.0:%d" % sbtest.free_port()
    out = subprocess.run([CONSOLE], env=env, capture_output=True, text=True, timeout=20)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "SB_CONSOLE_TOKEN" in out.stderr and "SB_CONSOLE_LISTEN=0.0.0.0" in out.stderr, out.stderr
    # A bad listen value names its variable too.
    env["SB_CONSOLE_LISTEN"] = "127.0.0.1:notaport"
    out = subprocess.run([CONSOLE], env=env, capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "SB_CONSOLE_LISTEN" in out.stderr, out.stderr


def test_token_required():
    stack = Stack(PG, rules=RULES).start()
    token = "console-token-%d" % os.getpid()
    console = Console(stack, env={"SB_CONSOLE_TOKEN": token}).start()
    origin = {"Origin": "http://127.0.0.1:%d" % console.port}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        status, _, _ = console.request("GET", "/app.css")
        assert status == 200  # the login page's style
        for path in ("/", "/app.js", "/api/conversations", "/api/dead", "/api/events", "/metrics"):
            status, _, body = console.request("GET", path)
            assert status == 401, (path, status)
            assert token.encode() not in body
        assert console.request("GET", "/healthz")[0] == 200
        # A bearer header opens everything.
        bearer = {"Authorization": "Bearer " + token}
        assert console.request("GET", "/api/conversations", headers=bearer)[0] == 200
        status, _, page = console.request("GET", "/", headers=bearer)
        assert status == 200 and b"/app.js" in page and token.encode() not in page
        assert console.request("GET", "/api/conversations",
                               headers={"Authorization": "Bearer " + token + "x"})[0] == 401
        # The login: wrong token 401; right token a cookie, HttpOnly.
        status, _, _ = console.request("POST", "/login", "token=nope", dict(form, **origin))
        assert status == 401, status
        status, headers, _ = console.request("POST", "/login", "token=" + token, dict(form, **origin))
        assert status == 303, status
        cookie = headers.get("set-cookie", "")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
        jar = {"Cookie": cookie.split(";")[0]}
        assert console.request("GET", "/api/dead", headers=jar)[0] == 200
        # State-changing requests: the token and the same origin, both.
        status, _, _ = console.request("POST", "/api/retry", "id=1", dict(form, **origin))
        assert status == 401, status
        status, _, _ = console.request("POST", "/api/retry", "id=1",
                                       dict(form, Origin="http://evil.example", **jar))
        assert status == 403, status
        status, _, _ = console.request("POST", "/api/retry", "id=1", dict(form, **jar))
        assert status == 403, status
        status, _, _ = console.request("POST", "/api/retry", "id=1", dict(form, **dict(jar, **origin)))
        assert status == 409, status  # allowed, but there is no dead row 1
        # Hostile requests: a body past the bound, a bad query, bad ids.
        status, _, _ = console.request("POST", "/api/reply", "text=" + "x" * 40000,
                                       dict(form, **dict(jar, **origin)))
        assert status == 413, status
        assert console.request("GET", "/api/messages?provider=%zz", headers=jar)[0] == 400
        assert console.request("GET", "/api/dead?before=-3", headers=jar)[0] == 400
        status, _, body = console.request("POST", "/api/reply", "provider=twilio&channel=sms&address=%2B1&text=hi",
                                          dict(form, **dict(jar, **origin)))
        assert status == 400 and b"no_conversation" in body, (status, body)
        assert console.request("GET", "/healthz")[0] == 200
        console.check_log()
    finally:
        console.stop()
        stack.close()


def test_stream_bound():
    """At most 32 event streams; the 33rd is 503, and a closed one frees its slot."""
    stack = Stack(PG, rules=RULES).start()
    console = Console(stack).start()
    streams = []
    try:
        def open_stream():
            conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
            conn.request("GET", "/api/events")
            resp = conn.getresponse()
            if resp.status == 200:
                assert resp.getheader("Content-Type") == "text/event-stream"
                assert resp.fp.readline().startswith(b"retry:")
            return conn, resp
        for _ in range(32):
            conn, resp = open_stream()
            assert resp.status == 200, resp.status
            streams.append(conn)
        conn, resp = open_stream()
        assert resp.status == 503, resp.status
        conn.close()
        # The page's own requests still find a thread.
        assert console.request("GET", "/api/conversations")[0] == 200
        streams.pop().close()

        def reopened():
            conn, resp = open_stream()
            if resp.status == 200:
                streams.append(conn)
                return True
            conn.close()
            return False
        wait_until("a slot freed by a closed stream", reopened, 15)
        status, _, body = console.request("GET", "/metrics")
        assert b"sb_console_streams_refused_total" in body and status == 200
    finally:
        for conn in streams:
            conn.close()
        console.stop()
        stack.close()


# ---------------------------------------------------------------------------
# In the browser.

def start_browser():
    if SELENIUM_PROBLEM:
        raise sbtest.Skip(SELENIUM_PROBLEM)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900", "--no-first-run", "--no-default-browser-check",
              "--disable-background-networking", "--proxy-server=direct://",
              "--proxy-bypass-list=*"):
        opts.add_argument(a)
    try:
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    except Exception as e:  # noqa: BLE001 - any failure to start is the skip's reason
        print("*** SKIPPING the browser tests: Chromium cannot start: %s" % str(e).splitlines()[0],
              flush=True)
        raise sbtest.Skip("Chromium cannot start: %s" % str(e).splitlines()[0])
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    return driver


def texts(driver, css):
    from selenium.webdriver.common.by import By
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def click(driver, css, what, timeout=10):
    """Click the element css finds; the live page re-renders its lists
    (a stale element), so find it again until the click lands."""
    from selenium.common.exceptions import (NoSuchElementException,
                                            StaleElementReferenceException)
    from selenium.webdriver.common.by import By

    def once():
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return True
        except (StaleElementReferenceException, NoSuchElementException):
            return False
    wait_until(what, once, timeout)


def click_conversation(driver, address):
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import StaleElementReferenceException

    def find():
        try:
            for li in driver.find_elements(By.CSS_SELECTOR, "#conversation-list li"):
                if address in li.text:
                    li.click()
                    return True
        except StaleElementReferenceException:  # re-rendered under us: look again
            pass
        return False
    wait_until("conversation %s listed" % address, find, 10)


def outbound_status(driver, body_part):
    """data-status of the outbound message whose text holds body_part."""
    return driver.execute_script(
        "for (const li of document.querySelectorAll('#messages li.outbound'))"
        "  if (li.querySelector('.text').textContent.includes(arguments[0]))"
        "    return li.dataset.status;"
        "return null;", body_part)


def test_console_in_browser():
    driver = start_browser()
    stack = Stack(PG, rules=RULES, dispatcher_env={"SB_SEND_MAX_ATTEMPTS": "2"}).start()
    console = Console(stack).start()
    from selenium.webdriver.common.by import By
    try:
        url = "http://127.0.0.1:%d/" % console.port
        driver.get(url)
        wait_until("stream open", lambda: driver.find_element(By.ID, "live").text == "live", 10)

        # 1. A new inbound message appears without reload, within 1 s of its 200.
        driver.execute_script("window.__marker = 1")
        text = "hello console %d" % time.time_ns()
        status = stack.post_twilio("/twilio/messages", sms("SM%032x" % 1, text, "+15550001001"))[0]
        acked = time.monotonic()
        assert status == 200
        wait_until("new message in the list", lambda: any(text in t for t in texts(driver, "#conversation-list li")), 1.0)
        seen_after = time.monotonic() - acked
        assert driver.execute_script("return window.__marker") == 1, "the page reloaded"
        print("    message shown %.0f ms after its 200" % (seen_after * 1000), flush=True)

        # 2. Its reply's status reaches delivered (the sandbox's callbacks).
        click_conversation(driver, "+15550001001")
        wait_until("inbound message in the conversation",
                   lambda: any(text == t for t in texts(driver, "#messages li.inbound .text")), 10)
        # Once stored, the message is shown once: the live copy gives way to PostgreSQL's.
        wait_until("one copy of the message",
                   lambda: texts(driver, "#messages li .text").count(text) == 1
                   and not driver.find_elements(By.CSS_SELECTOR, "#messages li.live"), 10)
        wait_until("reply delivered",
                   lambda: outbound_status(driver, "We received: " + text) == "delivered", 20)
        assert "delivered" in " ".join(texts(driver, "#messages li.outbound .status"))

        # 3. A `<script>` text stays text.
        evil = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"><b>bold</b>"
        stack.post_twilio("/twilio/messages", sms("SM%032x" % 2, evil, "+15550001001"))
        wait_until("the <script> text shown as text",
                   lambda: evil in texts(driver, "#messages li.inbound .text"), 10)
        assert driver.execute_script("return window.__pwned === undefined"), "the text ran as code"
        assert not driver.find_elements(By.CSS_SELECTOR, "#messages b, #messages img, #messages script")

        # 4. Media, a location and gathered digits (tests/conformance fixtures).
        stack.post_meta(sbtest.conformance("meta-image.json"))
        stack.post_twilio("/twilio/messages", sbtest.conformance("twilio-whatsapp-inbound-location.form"))
        stack.post_twilio("/twilio/gather", sbtest.conformance("twilio-voice-gather-dtmf.form"))
        click_conversation(driver, "16505551234")
        wait_until("the image's link", lambda: any(
            "image/jpeg" in t and "Taj Mahal" in t for t in texts(driver, "#messages .details a")), 10)
        click_conversation(driver, "+14017122661")
        wait_until("the location", lambda: any(
            "The Harrow Club" in t and "51.51" in t for t in texts(driver, "#messages .details")), 10)
        click_conversation(driver, "+14158675309")
        wait_until("the digits", lambda: any("1234" in t for t in texts(driver, "#messages .digits")), 10)
        wait_until("the captured code", lambda: any("1234" in t for t in texts(driver, "#messages .code")), 10)

        # 5. A reply typed in the form reaches the sandbox.
        click_conversation(driver, "+15550001001")
        typed = "typed reply %d" % time.time_ns()
        box = driver.find_element(By.ID, "reply-text")
        box.send_keys(typed)
        driver.find_element(By.CSS_SELECTOR, "#reply button[type=submit]").click()
        wait_until("reply queued", lambda: driver.find_element(By.ID, "reply-result").text == "Queued.", 10)
        wait_until("the typed reply at the sandbox", lambda: any(
            urllib.parse.quote_plus(typed) in r["body"] for r in stack.sandbox_sends()), 15)
        wait_until("the typed reply in the page", lambda: outbound_status(driver, typed) in ("sent", "delivered"), 15)

        # ... and one to an opted-out contact is refused, saying why.
        stack.post_twilio("/twilio/messages", sms("SM%032x" % 3, "hi", "+15550001002"))
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE to_addr = '+15550001002' AND state = 'sent'", 1)
        stack.post_twilio("/twilio/messages", sms("SM%032x" % 4, "STOP", "+15550001002"))
        stack.wait_scalar("SELECT opted_out FROM contacts WHERE address = '+15550001002'", "t")
        click_conversation(driver, "+15550001002")
        driver.find_element(By.ID, "reply-text").send_keys("are you there?")
        driver.find_element(By.CSS_SELECTOR, "#reply button[type=submit]").click()
        wait_until("refusal said", lambda: driver.find_element(By.ID, "reply-result").text == "Not sent: opted out.", 10)
        assert stack.scalar("SELECT reason FROM outbox WHERE body = 'are you there?'") == "opted_out"

        # 6. Dead letters: the sandbox fails the reply until it is dead; Retry
        # fails again (dead, the retry still shown), the second Retry sends it.
        stack.sandbox_fail("count=4&mode=500")
        doomed = "doomed %d" % time.time_ns()
        stack.post_twilio("/twilio/messages", sms("SM%032x" % 5, doomed, "+15550001003"))
        stack.wait_scalar("SELECT state FROM outbox WHERE to_addr = '+15550001003'", "dead", timeout=30)
        outbox_id = stack.scalar("SELECT id FROM outbox WHERE to_addr = '+15550001003'")
        driver.find_element(By.ID, "tab-dead").click()
        row = "#dead-list tr[data-outbox-id='%s']" % outbox_id
        wait_until("dead row listed", lambda: driver.find_element(By.CSS_SELECTOR, row + " .state").text == "dead", 10)
        assert "500" in driver.find_element(By.CSS_SELECTOR, row + " .why").text
        click(driver, row + " button.retry", "Retry clicked")
        stack.wait_scalar("SELECT state || '/' || retries FROM outbox WHERE id = %s" % outbox_id,
                          "dead/1", timeout=30)
        # The next attempts rewrote last_error; the retry is kept on the row.
        wait_until("dead again, the retry shown", lambda: "retried from the console at" in
                   driver.find_element(By.CSS_SELECTOR, row + " .why .retried").text
                   and driver.find_element(By.CSS_SELECTOR, row + " button.retry").text == "Retry", 10)
        assert "500" in driver.find_element(By.CSS_SELECTOR, row + " .why").text
        click(driver, row + " button.retry", "Retry clicked")
        stack.wait_scalar("SELECT state FROM outbox WHERE id = %s" % outbox_id, "sent", timeout=20)
        wait_until("dead row gone after the retry",
                   lambda: not driver.find_elements(By.CSS_SELECTOR, row), 10)
        # Recorded on the row: attempts began again (2 when dead; the retry's send is the 1st).
        attempts = stack.scalar("SELECT attempts FROM outbox WHERE id = %s" % outbox_id)
        assert attempts == "1", "attempts after the retry's send: %s, want 1" % attempts
        assert "outbox row retried from the console outbox_id=%s" % outbox_id in console.proc.log_text()
        driver.find_element(By.ID, "tab-conversations").click()
        click_conversation(driver, "+15550001003")
        wait_until("the retried reply shown sent",
                   lambda: outbound_status(driver, doomed) in ("sent", "delivered"), 15)
        wait_until("the retries shown in the conversation", lambda: any(
            "retried from the console at" in t and "(2 times)" in t
            for t in texts(driver, "#messages li.outbound .retried")), 10)
        # The not_sent row of step 5 stays listed, with its reason and no Retry.
        driver.find_element(By.ID, "tab-dead").click()
        wait_until("not_sent listed", lambda: "opted_out" in " ".join(texts(driver, "#dead-list .why")), 10)
        driver.find_element(By.ID, "tab-conversations").click()

        # 7. The console goes away while the page is open; what arrives
        # meanwhile is read back from PostgreSQL once the stream reopens.
        console.stop()
        wait_until("page notices", lambda: driver.find_element(By.ID, "live").text == "reconnecting", 10)
        missed = "sent while the console was away %d" % time.time_ns()
        stack.post_twilio("/twilio/messages", sms("SM%032x" % 6, missed, "+15550001004"))
        stack.wait_scalar("SELECT count(*) FROM messages WHERE body = '%s'" % missed, 1)
        console = Console(stack, port=console.port).start()
        wait_until("caught up from PostgreSQL",
                   lambda: any(missed in t for t in texts(driver, "#conversation-list li")), 15)
        assert driver.execute_script("return window.__marker") == 1, "the page reloaded"

        # 8. Codes captured while no page is open are shown once one opens:
        # from PostgreSQL (captures), not from an outcome it never saw. A
        # verification SMS (the regex's match) and a gather's digits (the
        # gather fixture with other digits: another input of the call).
        driver.get("about:blank")
        code = "G-%06d" % (time.time_ns() % 1000000)
        stack.post_twilio("/twilio/messages", sms("SM%032x" % 7, "%s is your verification code" % code,
                                                  "+15550001005"))
        digits = "%04d" % (time.time_ns() % 9000 + 1235)  # not the 1234 of step 4
        gather = sbtest.conformance("twilio-voice-gather-dtmf.form").replace(
            b"Digits=1234", b"Digits=" + digits.encode())
        stack.post_twilio("/twilio/gather", gather)
        stack.wait_scalar("SELECT count(*) FROM captures k JOIN events e ON e.id = k.event_id"
                          " WHERE k.captured IN ('%s', '%s')" % (code, digits), 2)
        driver.get(url)
        wait_until("stream open again", lambda: driver.find_element(By.ID, "live").text == "live", 10)
        click_conversation(driver, "+15550001005")
        wait_until("the SMS code captured", lambda: "code captured: " + code in
                   texts(driver, "#messages li.inbound .code"), 10)
        assert not driver.find_elements(By.CSS_SELECTOR, "#messages li.outbound"), "no reply to a code"
        click_conversation(driver, "+14158675309")
        wait_until("the gather's digits captured", lambda: "code captured: " + digits in
                   texts(driver, "#messages li.inbound .code"), 10)

        # The screenshot for the README: a conversation with its ticks.
        click_conversation(driver, "+15550001001")
        wait_until("thread shown", lambda: outbound_status(driver, typed) in ("sent", "delivered"), 10)
        time.sleep(0.3)
        os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
        assert driver.save_screenshot(SCREENSHOT)
        print("    screenshot: %s" % SCREENSHOT, flush=True)

        # On a phone-sized window it is one column, and still works.
        driver.set_window_size(400, 800)
        assert driver.execute_script(
            "return getComputedStyle(document.querySelector('main')).gridTemplateColumns.split(' ').length") == 1
        console.check_log()
        stack.check_logs(allow=("500", "dead"))
    finally:
        driver.quit()
        console.stop()
        stack.close()


def test_login_in_browser():
    driver = start_browser()
    stack = Stack(PG, rules=RULES).start()
    token = "browser-token-%d" % os.getpid()
    console = Console(stack, env={"SB_CONSOLE_TOKEN": token}).start()
    from selenium.webdriver.common.by import By
    try:
        driver.get("http://127.0.0.1:%d/" % console.port)
        wait_until("login form", lambda: driver.find_element(By.ID, "token"), 10)
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_until("console after login", lambda: driver.find_element(By.ID, "live").text == "live", 10)
        # The cookie is HttpOnly: the page cannot read the token.
        assert token not in driver.execute_script("return document.cookie + document.documentElement.outerHTML")
        text = "after login %d" % time.time_ns()
        stack.post_twilio("/twilio/messages", sms("SM%032x" % 7, text, "+15550001005"))
        wait_until("message shown", lambda: any(text in t for t in texts(driver, "#conversation-list li")), 5)
        console.check_log()
    finally:
        driver.quit()
        console.stop()
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_refuses_non_loopback_without_token,
            test_token_required,
            test_stream_bound,
            test_console_in_browser,
            test_login_in_browser,
        ])
    finally:
        PG.close()
