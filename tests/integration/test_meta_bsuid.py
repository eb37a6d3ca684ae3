"""WhatsApp business-scoped user ids (issue 12) through the real ingress,
dispatcher, PostgreSQL and the provider sandbox: a BSUID-only user gets a
reply addressed by BSUID (Meta "recipient"); a phone number and a BSUID of
one person become one contact; a change of number moves the opt-out and
the 24-hour window; a Twilio ExternalUserIdentifier message is replied
To=whatsapp:<BSUID>."""

import json
import time

import sbtest
from sbtest import Postgres, Stack

PG = None
BSUID = "US.13491208655302741918"

RULES = """
opt_out: [STOP]
opt_in: [START]
rules:
  - name: echo
    match: { text: { any: true } }
    reply: "Got: {text}"
"""


def fixture(name, wamid=None, text=None, frm=None):
    doc = json.loads(sbtest.conformance(name))
    value = doc["entry"][0]["changes"][0]["value"]
    for m in value.get("messages", []):
        if wamid:
            m["id"] = wamid
        if text is not None:
            m["text"]["body"] = text
        if frm is not None:
            m["from"] = frm
            value["contacts"][0]["wa_id"] = frm
        m["timestamp"] = str(int(time.time()))
    return json.dumps(doc).encode()


def meta_sends(stack):
    return [r["json"] for r in stack.sandbox_sends() if "/messages" in r["path"] and r.get("json")]


def wait(predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_bsuid_only_reply_by_recipient():
    stack = Stack(PG, rules=RULES).start()
    try:
        stack.post_meta(fixture("meta-bsuid-text-username.json", text="hello"))
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '%s'" % BSUID, 1)
        sends = wait(lambda: [s for s in meta_sends(stack) if s.get("recipient") == BSUID])
        assert "to" not in sends[0], sends[0]
        assert stack.scalar("SELECT count(*) FROM contacts WHERE address = '%s'" % BSUID) == "1"
        stack.check_logs()
    finally:
        stack.close()


def test_phone_and_bsuid_one_contact_and_change_of_number():
    stack = Stack(PG, rules=RULES, callbacks=False).start()
    try:
        # first seen by BSUID only, then with phone + BSUID: one contact, under the phone
        stack.post_meta(fixture("meta-bsuid-text-username.json", wamid="wamid.B1", text="first"))
        stack.wait_scalar("SELECT count(*) FROM contacts WHERE address = '%s'" % BSUID, 1)
        stack.post_meta(fixture("meta-bsuid-text-phone.json", wamid="wamid.B2", text="STOP"))
        stack.wait_scalar("SELECT count(*) FROM contacts WHERE address = '16505551234' AND opted_out", 1)
        assert stack.scalar("SELECT count(*) FROM contacts") == "1", stack.query("SELECT * FROM contacts")
        assert stack.scalar("SELECT count(*) FROM messages WHERE direction = 'inbound'"
                            " AND contact_addr = '16505551234'") == "2"
        assert stack.scalar("SELECT address FROM contact_identities WHERE identity = '%s'" % BSUID) == "16505551234"
        # the next BSUID-only message is the same (opted-out) contact: no reply
        stack.post_meta(fixture("meta-bsuid-text-username.json", wamid="wamid.B3", text="still there?"))
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE reason = 'opted_out'", 1)
        # change of number: the opt-out and the window move to 12195555358
        stack.post_meta(fixture("meta-bsuid-system-changed-number.json"))
        stack.wait_scalar("SELECT count(*) FROM contacts WHERE address = '12195555358' AND opted_out"
                          " AND last_inbound_at IS NOT NULL", 1)
        assert stack.scalar("SELECT count(*) FROM contacts WHERE address = '16505551234'") == "0"
        # three inbound and the reply to the first: the whole history moved
        assert stack.scalar("SELECT count(*) FROM messages WHERE contact_addr = '12195555358'") == "4", \
            stack.query("SELECT direction, contact_addr FROM messages")
        assert stack.scalar("SELECT count(*) FROM contact_identities WHERE identity = '16505551234'") == "0"
        # a message from the new number is from an opted-out contact: still no reply
        stack.post_meta(fixture("meta-text.json", wamid="wamid.B4", text="new phone", frm="12195555358"))
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE reason = 'opted_out'", 2)
        assert stack.scalar("SELECT count(*) FROM outbox WHERE state <> 'not_sent'") == "1"
        stack.check_logs()
    finally:
        stack.close()


def test_system_message_for_unknown_contact():
    stack = Stack(PG, rules=RULES, callbacks=False).start()
    try:
        stack.post_meta(fixture("meta-bsuid-system-changed-user-id.json"))
        stack.wait_scalar("SELECT count(*) FROM events WHERE message_type = 'system'", 1)
        time.sleep(0.5)
        assert stack.scalar("SELECT count(*) FROM outbox") == "0"
        assert stack.scalar("SELECT count(*) FROM contacts") == "0"
        stack.check_logs()
    finally:
        stack.close()


def test_bsuid_only_marketing_stop_and_user_id_update():
    """Meta's user_preferences without wa_id (BSUID page) reaches the
    BSUID-only contact; a user_id_update (the field 8x8 forwards as Meta
    sent it) gives the phone contact its new BSUID."""
    stack = Stack(PG, rules=RULES, callbacks=False).start()
    try:
        stack.post_meta(fixture("meta-bsuid-text-username.json", wamid="wamid.P1", text="hi"))
        stack.wait_scalar("SELECT count(*) FROM contacts WHERE address = '%s'" % BSUID, 1)
        stack.post_meta(sbtest.conformance("meta-bsuid-preference-stop.json"))
        stack.wait_scalar("SELECT marketing_preference FROM contacts WHERE address = '%s'" % BSUID, "stop")
        assert stack.scalar("SELECT count(*) FROM contacts") == "1", stack.query("SELECT * FROM contacts")
        # the phone and the BSUID become one contact, then the BSUID rotates
        stack.post_meta(fixture("meta-bsuid-text-phone.json", wamid="wamid.P2", text="again"))
        stack.wait_scalar("SELECT count(*) FROM contacts WHERE address = '16505551234'", 1)
        stack.post_meta(sbtest.conformance("meta-bsuid-user-id-update.json"))
        stack.wait_scalar("SELECT address FROM contact_identities WHERE identity = 'US.13491208655302741921'",
                          "16505551234")
        assert stack.scalar("SELECT count(*) FROM contacts") == "1", stack.query("SELECT * FROM contacts")
        stack.check_logs()
    finally:
        stack.close()


def test_twilio_external_user_id_reply_to_bsuid():
    stack = Stack(PG, rules=RULES).start()
    try:
        body = sbtest.conformance("twilio-bsuid-whatsapp-inbound.form").decode().strip()
        stack.post_twilio("/twilio/messages", body)
        stack.wait_scalar("SELECT count(*) FROM outbox WHERE state = 'sent' AND to_addr = '%s'" % BSUID, 1)
        sends = [r for r in stack.sandbox_sends() if "Messages.json" in r["path"]]
        assert any("To=whatsapp%3A" + BSUID in (r.get("body") or "") or
                   (r.get("form") or {}).get("To") == "whatsapp:" + BSUID for r in sends), sends
        stack.check_logs()
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([
            test_bsuid_only_reply_by_recipient,
            test_phone_and_bsuid_one_contact_and_change_of_number,
            test_system_message_for_unknown_contact,
            test_bsuid_only_marketing_stop_and_user_id_update,
            test_twilio_external_user_id_reply_to_bsuid,
        ])
    finally:
        PG.close()
