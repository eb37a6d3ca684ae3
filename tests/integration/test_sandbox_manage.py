"""The sandbox's management APIs (issue 13), against the real
switchboard-sandbox and, for Meta's callback verification, a real ingress:
Twilio IncomingPhoneNumbers (auth refusals, the exact PhoneNumber filter,
fetch, update and its refusals), Messaging Services and their numbers, Meta
app subscriptions (a right verify token subscribes, a wrong one gets 2200
and changes nothing; a new subscription replaces the old), WABA
subscribed_apps, the seeding endpoints, the bounds, /_sandbox/state, the
request log; every answer's keys against the matching example in
tests/conformance/provider-api/.

Python 3 standard library only.
"""

import base64
import http.server
import json
import os
import threading
import time
import urllib.parse

import sbtest
from test_sandbox import ACCOUNT, TOKEN, API_KEY, API_SECRET, META_TOKEN, Sandbox

APP_SECRET = "sandbox-test-app-secret"  # as test_sandbox's base_env
APP_ID = "188559381496048"
WABA_ID = "102290129340398"
NUMBER = "+14155550100"
PROVIDER_API = os.path.join(sbtest.CONFORMANCE, "provider-api")
NUMBERS_PATH = "/2010-04-01/Accounts/%s/IncomingPhoneNumbers.json" % ACCOUNT


def example(name):
    with open(os.path.join(PROVIDER_API, name)) as f:
        return json.load(f)


def same_keys(got, want, where):
    assert isinstance(got, dict), (where, got)
    assert set(got) == set(want), (where, sorted(set(got) ^ set(want)))


def call(sb, method, path, params=None, auth="twilio", headers=None, query=None):
    """A request with Twilio Basic auth ("twilio", ("user", "password"), or
    None), params form-encoded; returns (status, JSON)."""
    h = dict(headers or {})
    if auth == "twilio":
        auth = (ACCOUNT, TOKEN)
    if isinstance(auth, tuple):
        h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    body = None
    if params is not None:
        body = urllib.parse.urlencode(params)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    status, _, data = sb.request(method, path, body, h)
    return status, json.loads(data) if data else None


def twilio_error(status, body, want_status, want_code):
    assert status == want_status, (status, body)
    assert set(body) == {"code", "message", "more_info", "status"}, body
    assert body["code"] == want_code and body["status"] == want_status, body


def meta_error(status, body, want_status, want_code):
    assert status == want_status, (status, body)
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == want_code and body["error"]["type"] == "OAuthException", body
    assert body["error"]["fbtrace_id"], body


def seed_number(sb, **fields):
    fields.setdefault("PhoneNumber", NUMBER)
    status, number = call(sb, "POST", "/_sandbox/twilio/numbers", fields, auth=None)
    assert status == 200, (status, number)
    return number


def test_twilio_numbers():
    sb = Sandbox(["--twilio-number", NUMBER])
    try:
        # Auth: none, a wrong token, another account's path.
        status, body = call(sb, "GET", NUMBERS_PATH, auth=None)
        twilio_error(status, body, 401, 20003)
        status, body = call(sb, "GET", NUMBERS_PATH, auth=(ACCOUNT, "wrong"))
        twilio_error(status, body, 401, 20003)
        other = "AC" + "f" * 32
        status, body = call(sb, "GET", NUMBERS_PATH.replace(ACCOUNT, other), auth=(other, TOKEN))
        twilio_error(status, body, 401, 20003)
        # An API key and its secret are as good as the auth token.
        status, page = call(sb, "GET", NUMBERS_PATH, auth=(API_KEY, API_SECRET))
        assert status == 200, (status, page)

        # The flag's number exists, with empty URLs; the page's keys are the spec example's.
        want_page = example("twilio-incoming-phone-number-list.json")
        same_keys(page, want_page, "list page")
        assert page["next_page_uri"] is None and page["previous_page_uri"] is None, page
        assert page["page"] == 0 and page["page_size"] == 50 and page["start"] == 0, page
        assert [n["phone_number"] for n in page["incoming_phone_numbers"]] == [NUMBER], page
        number = page["incoming_phone_numbers"][0]
        same_keys(number, want_page["incoming_phone_numbers"][0], "listed number")
        assert number["sms_url"] == "" and number["status_callback"] == "", number
        assert number["account_sid"] == ACCOUNT and number["sid"].startswith("PN"), number

        # The filter is exact.
        seed_number(sb, PhoneNumber="+14155550101")
        for filt, want in ((NUMBER, [NUMBER]), ("+1415555010", []), ("+14155550101", ["+14155550101"]),
                           ("", [NUMBER, "+14155550101"])):
            status, page = call(sb, "GET", NUMBERS_PATH, query={"PhoneNumber": filt})
            assert status == 200, (status, page)
            assert [n["phone_number"] for n in page["incoming_phone_numbers"]] == want, (filt, page)
        status, page = call(sb, "GET", NUMBERS_PATH, query={"PhoneNumber": NUMBER})
        assert "PhoneNumber=%2B14155550100" in page["uri"], page

        # Fetch; unknown sid 404 20404.
        pn = number["sid"]
        path = NUMBERS_PATH[:-5] + "/%s.json" % pn
        status, fetched = call(sb, "GET", path)
        assert status == 200 and fetched == number, (status, fetched)
        same_keys(fetched, example("twilio-incoming-phone-number.json"), "fetched number")
        status, body = call(sb, "GET", NUMBERS_PATH[:-5] + "/PN%s.json" % ("0" * 32))
        twilio_error(status, body, 404, 20404)

        # Update and its refusals; unknown parameters are ignored.
        urls = {"SmsUrl": "https://hooks.example.test/twilio/messages", "SmsMethod": "POST",
                "VoiceUrl": "https://hooks.example.test/twilio/voice", "VoiceMethod": "POST",
                "StatusCallback": "https://hooks.example.test/twilio/status",
                "StatusCallbackMethod": "POST", "Whatever": "x"}
        status, body = call(sb, "POST", path, dict(urls, VoiceUrl="ftp://hooks.example.test/v"))
        twilio_error(status, body, 400, 21402)
        status, body = call(sb, "POST", path, dict(urls, SmsUrl="not a url"))
        twilio_error(status, body, 400, 21402)
        status, body = call(sb, "POST", path, dict(urls, SmsMethod="PUT"))
        twilio_error(status, body, 400, 21403)
        status, body = call(sb, "POST", path, urls, auth=(ACCOUNT, "wrong"))
        twilio_error(status, body, 401, 20003)
        status, fetched = call(sb, "GET", path)
        assert fetched["sms_url"] == "" and fetched["voice_url"] == "", fetched  # all or nothing
        status, updated = call(sb, "POST", path, urls)
        assert status == 200, (status, updated)
        same_keys(updated, example("twilio-incoming-phone-number-update.json"), "updated number")
        assert updated["sms_url"] == urls["SmsUrl"] and updated["voice_url"] == urls["VoiceUrl"]
        assert updated["status_callback"] == urls["StatusCallback"], updated
        assert "Whatever" not in updated and "whatever" not in updated, updated
        status, fetched = call(sb, "GET", path)
        assert fetched == updated, (fetched, updated)
        status, body = call(sb, "DELETE", path)
        assert status == 405, (status, body)

        # Recorded: method, path, query, params, answer (auth not kept).
        records = [r for r in sb.requests() if r["path"] == path and r["method"] == "POST"]
        last = records[-1]
        assert last["status"] == 200 and last["provider"] == "twilio", last
        assert ["SmsUrl", urls["SmsUrl"]] in last["params"], last
        assert last["answer"] == updated, last
        assert "Authorization" not in last["headers"], last
        listed = [r for r in sb.requests() if r["path"] == NUMBERS_PATH and r["query"]]
        assert listed and "PhoneNumber=%2B14155550100" in listed[-1]["query"], listed
        sb.stop()
    finally:
        if sb.proc.poll() is None:
            sb.proc.kill()


def test_twilio_services():
    sb = sandbox_with(TWILIO_PHONE_NUMBER=NUMBER)
    try:
        status, state = call(sb, "GET", "/_sandbox/state", auth=None)
        assert [n["phone_number"] for n in state["twilio"]["numbers"]] == [NUMBER], state
        number = state["twilio"]["numbers"][0]
        status, listing = call(sb, "GET", "/v1/Services", auth=None)
        twilio_error(status, listing, 401, 20003)
        status, listing = call(sb, "GET", "/v1/Services")
        assert status == 200 and listing["services"] == [], listing
        assert listing["meta"]["key"] == "services" and listing["meta"]["next_page_url"] is None

        status, service = call(sb, "POST", "/_sandbox/twilio/services",
                               [("FriendlyName", "Main"),
                                ("InboundRequestUrl", "https://svc.example.test/inbound"),
                                ("UseInboundWebhookOnNumber", "false"), ("PhoneNumber", NUMBER)],
                               auth=None)
        assert status == 200, (status, service)
        status, body = call(sb, "POST", "/_sandbox/twilio/services",
                            {"PhoneNumber": "+14155559999"}, auth=None)
        twilio_error(status, body, 404, 20404)

        status, listing = call(sb, "GET", "/v1/Services", query={"PageSize": 20})
        want = example("twilio-messaging-services-list.json")
        same_keys(listing, want, "services page")
        same_keys(listing["meta"], want["meta"], "services meta")
        assert listing["meta"]["page_size"] == 20, listing
        assert len(listing["services"]) == 1, listing
        got = listing["services"][0]
        same_keys(got, want["services"][0], "listed service")
        assert got == service, (got, service)
        assert got["inbound_request_url"] == "https://svc.example.test/inbound", got
        assert got["use_inbound_webhook_on_number"] is False, got
        status, fetched = call(sb, "GET", "/v1/Services/%s" % got["sid"])
        assert status == 200 and fetched == got, fetched
        same_keys(fetched, example("twilio-messaging-service.json"), "fetched service")

        status, members = call(sb, "GET", "/v1/Services/%s/PhoneNumbers" % got["sid"])
        want = example("twilio-messaging-service-phone-numbers.json")
        same_keys(members, want, "service numbers page")
        same_keys(members["meta"], want["meta"], "service numbers meta")
        assert members["meta"]["key"] == "phone_numbers", members
        assert len(members["phone_numbers"]) == 1, members
        member = members["phone_numbers"][0]
        same_keys(member, want["phone_numbers"][0], "service number")
        assert member["sid"] == number["sid"] and member["phone_number"] == NUMBER, member
        assert member["service_sid"] == got["sid"], member
        status, body = call(sb, "GET", "/v1/Services/MG%s/PhoneNumbers" % ("0" * 32))
        twilio_error(status, body, 404, 20404)

        status, state = call(sb, "GET", "/_sandbox/state", auth=None)
        services = state["twilio"]["services"]
        assert [m["phone_number"] for m in services[0]["phone_numbers"]] == [NUMBER], state
        sb.stop()
    finally:
        if sb.proc.poll() is None:
            sb.proc.kill()


def sandbox_with(args=(), **env):
    return Sandbox(list(args), **env)


def app_token(app=APP_ID, secret=APP_SECRET):
    return "%s|%s" % (app, secret)


def subscribe(sb, callback_url, verify_token, fields="messages", app=APP_ID, token=None,
              version="v23.0", where="form"):
    params = {"object": "whatsapp_business_account", "callback_url": callback_url,
              "verify_token": verify_token, "fields": fields,
              "access_token": token if token is not None else app_token(app)}
    path = "/%s/%s/subscriptions" % (version, app)
    if where == "query":
        return call(sb, "POST", path, auth=None, query=params)
    return call(sb, "POST", path, params, auth=None)


class _NotTheChallenge(http.server.BaseHTTPRequestHandler):
    """Answers the verification GET with 200 and the wrong body."""

    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"12345"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_meta_subscriptions():
    ingress = sbtest.Ingress(env={"SB_PATH_PREFIX": "/hooks"}).start()
    # The callback URL as connect would give it (public), reached through --callbacks.
    callbacks = "http://127.0.0.1:%d/hooks" % ingress.port
    sb = sandbox_with(["--callbacks", callbacks], SB_PUBLIC_URL=sbtest.PUBLIC_URL,
                      SB_PATH_PREFIX="/hooks")
    public_cb = sbtest.PUBLIC_URL + "/hooks/meta/whatsapp"
    try:
        path = "/v23.0/%s/subscriptions" % APP_ID
        # Empty at first; the wrong token, the access token, no token: 190.
        status, body = call(sb, "GET", path, auth=None, query={"access_token": app_token()})
        assert status == 200 and body == {"data": []}, (status, body)
        for token in (app_token(secret="wrong"), app_token(app="1"), META_TOKEN):
            status, body = call(sb, "GET", path, auth=None, query={"access_token": token})
            meta_error(status, body, 401, 190)
        status, body = call(sb, "GET", path, auth=None)
        meta_error(status, body, 401, 190)
        status, body = call(sb, "GET", "/v23.0/12ab/subscriptions", auth=None,
                            query={"access_token": app_token()})
        meta_error(status, body, 400, 100)
        status, body = call(sb, "GET", "/v23/%s/subscriptions" % APP_ID, auth=None,
                            query={"access_token": app_token()})
        meta_error(status, body, 400, 2500)

        # A wrong verify token: the ingress answers 403, the sandbox 2200, nothing changes.
        status, body = subscribe(sb, public_cb, "not-the-verify-token")
        meta_error(status, body, 400, 2200)
        assert "Callback verification failed" in body["error"]["message"], body
        assert "403" in body["error"]["message"], body
        status, body = call(sb, "GET", path, auth=None, query={"access_token": app_token()})
        assert body == {"data": []}, body
        # A callback that answers 200 but not the challenge: 2200.
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotTheChallenge)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            status, body = subscribe(sb, "http://127.0.0.1:%d/cb" % server.server_address[1],
                                     "t")
            meta_error(status, body, 400, 2200)
            assert "does not match" in body["error"]["message"], body
        finally:
            server.shutdown()
            server.server_close()
        # Nothing listening: 2200 too, within the deadline.
        status, body = subscribe(sb, "http://127.0.0.1:%d/x" % sbtest.free_port(), "t")
        meta_error(status, body, 400, 2200)
        # Missing or bad parameters: #100, before any verification.
        status, body = call(sb, "POST", path, {"object": "whatsapp_business_account",
                                               "access_token": app_token()}, auth=None)
        meta_error(status, body, 400, 100)

        # The right one (the ingress's META_VERIFY_TOKEN) subscribes; Bearer works as well.
        status, body = subscribe(sb, public_cb, sbtest.META_VERIFY, fields="messages, calls")
        assert status == 200 and body == {"success": True}, (status, body)
        deadline = time.time() + 10  # the ingress's log line may lag its answer
        while "meta subscription verified" not in ingress.log_text() and time.time() < deadline:
            time.sleep(0.05)
        assert "meta subscription verified" in ingress.log_text(), ingress.log_text()[-2000:]
        status, body = call(sb, "GET", path, auth=None,
                            headers={"Authorization": "Bearer " + app_token()})
        assert status == 200, (status, body)
        want = example("meta-app-subscriptions.json")
        same_keys(body, want, "subscriptions")
        assert len(body["data"]) == 1, body
        sub = body["data"][0]
        same_keys(sub, want["data"][0], "subscription")
        assert sub["object"] == "whatsapp_business_account" and sub["active"] is True, sub
        assert sub["callback_url"] == public_cb, sub
        assert sub["fields"] == [{"name": "messages", "version": "v23.0"},
                                 {"name": "calls", "version": "v23.0"}], sub
        for field in sub["fields"]:
            same_keys(field, want["data"][0]["fields"][0], "field")

        # A second subscription replaces the first (parameters in the query this time).
        status, body = subscribe(sb, public_cb + "?x=1", sbtest.META_VERIFY, where="query")
        assert status == 200, (status, body)
        status, body = call(sb, "GET", path, auth=None, query={"access_token": app_token()})
        assert len(body["data"]) == 1 and body["data"][0]["fields"] == [
            {"name": "messages", "version": "v23.0"}], body
        assert body["data"][0]["callback_url"] == public_cb + "?x=1", body

        # WABA subscribed_apps: Bearer META_ACCESS_TOKEN; the app is the one last subscribed.
        waba = "/v23.0/%s/subscribed_apps" % WABA_ID
        bearer = {"Authorization": "Bearer " + META_TOKEN}
        status, body = call(sb, "GET", waba, auth=None, headers={"Authorization": "Bearer x"})
        meta_error(status, body, 401, 190)
        status, body = call(sb, "GET", waba, auth=None, headers=bearer)
        assert status == 200 and body == {"data": []}, body
        status, body = call(sb, "POST", waba, auth=None, headers=bearer)
        assert status == 200 and body == {"success": True}, body
        status, body = call(sb, "GET", waba, auth=None, headers=bearer)
        want = example("meta-subscribed-apps.json")
        same_keys(body, want, "subscribed apps")
        assert len(body["data"]) == 1, body
        same_keys(body["data"][0], want["data"][0], "subscribed app")
        data = body["data"][0]["whatsapp_business_api_data"]
        same_keys(data, want["data"][0]["whatsapp_business_api_data"], "app data")
        assert data["id"] == APP_ID, data

        status, state = call(sb, "GET", "/_sandbox/state", auth=None)
        assert state["meta"]["apps"][0]["id"] == APP_ID, state
        assert state["meta"]["apps"][0]["subscriptions"][0]["callback_url"] == public_cb + "?x=1"
        assert state["meta"]["wabas"] == [{"id": WABA_ID,
                                           "subscribed_apps": [{"id": APP_ID,
                                                                "name": data["name"]}]}], state

        status, body = call(sb, "DELETE", waba, auth=None, headers=bearer)
        assert status == 200 and body == {"success": True}, body
        status, body = call(sb, "GET", waba, auth=None, headers=bearer)
        assert body == {"data": []}, body

        # Recorded, the app token not kept.
        records = [r for r in sb.requests() if r["path"] == path and r["method"] == "POST"]
        assert [r["status"] for r in records][-2:] == [200, 200], records
        assert records[0]["error_code"] == "2200", records[0]
        assert all(r["provider"] == "meta" for r in records), records
        sb.stop()
    finally:
        if sb.proc.poll() is None:
            sb.proc.kill()
        ingress.stop()
        ingress.check_log(allow_errors=())


def test_state_and_bounds():
    sb = sandbox_with(["--meta-app-id", "777"])
    try:
        for i in range(1000):
            seed_number(sb, PhoneNumber="+1555%07d" % i)
        status, body = call(sb, "POST", "/_sandbox/twilio/numbers",
                            {"PhoneNumber": "+15559999999"}, auth=None)
        twilio_error(status, body, 400, 21452)
        status, body = call(sb, "POST", "/_sandbox/twilio/numbers", {"PhoneNumber": "555"},
                            auth=None)
        twilio_error(status, body, 400, 21421)
        # Seeding an existing number changes only what it gives.
        number = seed_number(sb, PhoneNumber="+15550000000", SmsUrl="https://a.example.test/s",
                             SmsApplicationSid="AP" + "1" * 32)
        assert number["sms_url"] == "https://a.example.test/s", number
        assert number["sms_application_sid"] == "AP" + "1" * 32, number
        status, page = call(sb, "GET", NUMBERS_PATH, query={"PageSize": 1000})
        assert len(page["incoming_phone_numbers"]) == 1000 and page["next_page_uri"] is None
        status, page = call(sb, "GET", NUMBERS_PATH)
        assert len(page["incoming_phone_numbers"]) == 50 and page["next_page_uri"], page
        status, page = call(sb, "GET", page["next_page_uri"])
        assert page["page"] == 1 and page["start"] == 50 and page["end"] == 99, page
        for i in range(100):
            status, body = call(sb, "POST", "/_sandbox/twilio/services", {"FriendlyName": str(i)},
                                auth=None)
            assert status == 200, body
        status, body = call(sb, "POST", "/_sandbox/twilio/services", {"FriendlyName": "x"},
                            auth=None)
        twilio_error(status, body, 400, 21102)
        bearer = {"Authorization": "Bearer " + META_TOKEN}
        for i in range(100):
            status, body = call(sb, "POST", "/v23.0/%d/subscribed_apps" % (1000 + i), auth=None,
                                headers=bearer)
            assert status == 200, body
            status, body = call(sb, "GET", "/v23.0/%d/subscriptions" % (1000 + i), auth=None,
                                query={"access_token": app_token(str(1000 + i))})
            assert status == 200, body
        status, body = call(sb, "POST", "/v23.0/99999/subscribed_apps", auth=None, headers=bearer)
        meta_error(status, body, 400, 100)
        status, body = call(sb, "GET", "/v23.0/99999/subscriptions", auth=None,
                            query={"access_token": app_token("99999")})
        meta_error(status, body, 400, 100)

        status, state = call(sb, "GET", "/_sandbox/state", auth=None)
        assert status == 200, state
        assert set(state) == {"twilio", "meta"}, state
        assert set(state["twilio"]) == {"numbers", "services"}, state["twilio"].keys()
        assert set(state["meta"]) == {"apps", "wabas"}, state["meta"].keys()
        assert len(state["twilio"]["numbers"]) == 1000 and len(state["twilio"]["services"]) == 100
        assert len(state["meta"]["apps"]) == 100 and len(state["meta"]["wabas"]) == 100
        # --meta-app-id names the app a WABA subscription is for.
        assert state["meta"]["wabas"][0]["subscribed_apps"][0]["id"] == "777", state["meta"]["wabas"][0]
        status, body = call(sb, "PUT", "/_sandbox/state", auth=None)
        assert status == 405, body
        status, body = call(sb, "DELETE", "/_sandbox/state", auth=None)
        assert status == 200, body
        status, state = call(sb, "GET", "/_sandbox/state", auth=None)
        assert state == {"twilio": {"numbers": [], "services": []},
                         "meta": {"apps": [], "wabas": []}}, state
        sb.stop()
    finally:
        if sb.proc.poll() is None:
            sb.proc.kill()


def test_flags():
    import subprocess
    from test_sandbox import base_env
    for args, env in ((["--twilio-number", "555"], {}), (["--meta-app-id", "x1"], {}),
                      ([], {"TWILIO_PHONE_NUMBER": "nope"})):
        proc = subprocess.run([sbtest.CLI, "sandbox", "--listen", "127.0.0.1:0"] + args,
                              env=base_env(**env), capture_output=True, timeout=20)
        assert proc.returncode == 2, (args, env, proc.returncode, proc.stderr)
        err = proc.stderr.decode()
        assert ("--twilio-number" in err or "--meta-app-id" in err
                or "TWILIO_PHONE_NUMBER" in err), err


if __name__ == "__main__":
    sbtest.run_tests([test_twilio_numbers, test_twilio_services, test_meta_subscriptions,
                      test_state_and_bounds, test_flags])
