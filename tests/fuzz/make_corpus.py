#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora, tests/fuzz/corpus/<target>/, from
tests/conformance/ and a few hand-made edge cases.

    python3 tests/fuzz/make_corpus.py

Deterministic: running it again rewrites the same files. It writes only
the files it names (prefixes conf-, edge-, event-, journal-, replay-), so inputs
kept by hand (regress-*: a crash a fuzzer found, kept so the replay test
fails until it is fixed) stay. Python 3 standard library only.

Input formats are the targets' own (see the note at the top of each
fuzz_<name>.c):
  fuzz_form, fuzz_twilio_normalize   a form body
  fuzz_meta                          a Meta webhook body
  fuzz_twilio_sig                    token NUL url NUL params NUL signature [NUL body]
  fuzz_event                         an encoded switchboard.v1.Event
  fuzz_journal                       5-byte prefix, then segment file bytes
  fuzz_replay                        one replay protocol frame (a ReplayMessage)
  fuzz_twilio_sharedkey              keys NUL settings header [NUL signature]
  fuzz_console_web                   authorization NUL cookie NUL origin NUL host NUL listen
"""
import hashlib
import json
import os
import struct
import sys
import urllib.parse
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CONFORMANCE = os.path.join(HERE, "..", "conformance")
CORPUS = os.path.join(HERE, "corpus")


def conformance(name, mode="rb"):
    with open(os.path.join(CONFORMANCE, name), mode) as f:
        return f.read()


def conformance_files(prefix, suffix):
    skip = {"meta-messages-openapi.json", "meta-signature-vectors.json",
            "twilio-messages-openapi.json", "twilio-signature-vectors.json",
            "twilio-forms-signatures.json"}
    return sorted(n for n in os.listdir(CONFORMANCE)
                  if n.startswith(prefix) and n.endswith(suffix) and n not in skip)


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def form_encode(pairs):
    return "&".join(urllib.parse.quote_plus(k, safe="") + "=" + urllib.parse.quote_plus(v, safe="")
                    for k, v in pairs)


# --------------------------------------------------------------------------
# Forms

FORM_EDGES = {
    "edge-empty-pairs": b"a=1&&b=2&",
    "edge-no-equals": b"flag&k=v",
    "edge-empty-key": b"=value&=",
    "edge-plus-and-escapes": b"Body=It%27s+a+%2B+b%3D%26&To=%2B1555",
    "edge-utf8": "Body=caf%C3%A9+%E2%9C%93+\u00e9&From=%2B1".encode("utf-8"),
    "edge-repeated-keys": b"MediaUrl0=a&MediaUrl0=b&x=1&x=1",
    "edge-bad-escape": b"a=%zz",
    "edge-truncated-escape": b"a=%4",
    "edge-escaped-nul": b"a=%00",
    "edge-raw-nul": b"a=1\x00&b=2",
    "edge-high-bytes": b"k\xff=\x80\xfe",
    "edge-built-pairs": b"key\x00value\x00second key\x00a&b=c\x00lone",
    "edge-many-pairs": b"&".join(b"k%d=v" % i for i in range(1001)),
}


def make_forms():
    for name in conformance_files("twilio-", ".form"):
        write("fuzz_form", "conf-" + name, conformance(name))
    verification = json.loads(conformance("meta-verification-get.json", "r"))
    for case in verification["cases"][:4]:
        write("fuzz_form", "conf-meta-verification-" + case["name"], case["query"])
    for name, data in FORM_EDGES.items():
        write("fuzz_form", name, data)


def make_twilio_normalize():
    for name in conformance_files("twilio-", ".form"):
        write("fuzz_twilio_normalize", "conf-" + name, conformance(name))
    sid = "SMa1b2c3d4e5f60718293a4b5c6d7e8f90"
    call = "CAc1b2c3d4e5f60718293a4b5c6d7e8f92"
    edges = {
        "edge-messages-minimal": [("MessageSid", sid), ("From", "+14155550100")],
        "edge-messages-no-sid": [("From", "+14155550100"), ("Body", "hi")],
        "edge-messages-empty-sid": [("MessageSid", ""), ("From", "+1")],
        "edge-messages-media-11": [("MessageSid", sid), ("From", "+1"), ("NumMedia", "11")]
        + [("MediaUrl%d" % i, "https://m.example/%d" % i) for i in range(11)],
        "edge-messages-media-bad-count": [("MessageSid", sid), ("From", "+1"), ("NumMedia", "1e3")],
        "edge-messages-location-bad": [("MessageSid", sid), ("From", "+1"), ("Latitude", "91"),
                                       ("Longitude", "nan")],
        "edge-messages-location-negative-zero": [("MessageSid", sid), ("From", "whatsapp:+1"),
                                                 ("Latitude", "-0"), ("Longitude", "-0.0")],
        "edge-messages-button": [("MessageSid", sid), ("From", "whatsapp:+1"),
                                 ("To", "WhatsApp:+2"), ("ButtonPayload", "yes"),
                                 ("ButtonText", "Yes")],
        "edge-messages-double-prefix": [("SmsSid", sid), ("From", "whatsapp:whatsapp:+1")],
        "edge-status-call": [("CallSid", call), ("CallStatus", "completed")],
        "edge-status-prefix": [("MessageSid", sid), ("MessageStatus", "read"),
                               ("ChannelPrefix", "whatsapp"), ("ErrorCode", "63016")],
        "edge-gather-confidence-bad": [("CallSid", call), ("SpeechResult", "yes"),
                                       ("Confidence", "1.5")],
        "edge-gather-digits": [("CallSid", call), ("Digits", "1234#")],
        "edge-utf8-invalid": None,
        # Business-scoped user ids (issue 12): the other name of the
        # parameter, a malformed id, a prefixed one, a BSUID From alone, an
        # empty id.
        "edge-bsuid-identifier": [("MessageSid", sid), ("From", "whatsapp:US.1349"),
                                  ("ExternalUserIdentifier", "US.1349")],
        "edge-bsuid-malformed": [("MessageSid", sid), ("From", "whatsapp:US.1349"),
                                 ("ExternalUserId", "US.13-49!")],
        "edge-bsuid-prefixed": [("MessageSid", sid), ("From", "whatsapp:+1"),
                                ("ExternalUserId", "whatsapp:US.ENT.1349")],
        "edge-bsuid-from-only": [("MessageSid", sid), ("From", "whatsapp:us.")],
        "edge-bsuid-empty": [("MessageSid", sid), ("From", "whatsapp:+1"), ("ExternalUserId", "")],
        "edge-bsuid-long": [("MessageSid", sid), ("From", "whatsapp:+1"),
                            ("ExternalUserId", "US." + "7" * 300)],
    }
    for name, pairs in edges.items():
        if pairs is None:
            data = b"MessageSid=SM1&From=%2B1&Body=%C3%28%FF%ED%A0%80"
        else:
            data = form_encode(pairs).encode()
        write("fuzz_twilio_normalize", name, data)


# --------------------------------------------------------------------------
# Meta bodies

META_EDGES = {
    "edge-not-json": "entry",
    "edge-array": "[]",
    "edge-empty-object": "{}",
    "edge-entry-empty": '{"entry":[]}',
    "edge-entry-not-array": '{"entry":{}}',
    "edge-changes-empty": '{"entry":[{"changes":[]}]}',
    "edge-value-empty": '{"entry":[{"id":"1","changes":[{"field":"messages","value":{}}]}]}',
    "edge-messages-wrong-types": '{"entry":[{"changes":[{"value":{"messages":[{"type":7,"from":[],'
                                 '"text":{"body":null},"timestamp":"x"}],"statuses":[{"errors":'
                                 '"no","status":1}]}}]}]}',
    "edge-unknown-type": '{"entry":[{"changes":[{"value":{"messages":[{"type":"hologram",'
                         '"hologram":{"x":[1,2,{"y":true}]}}]}}]}]}',
    "edge-duplicate-keys": '{"entry":[],"entry":[]}',
    "edge-escaped-nul": '{"entry":[{"changes":[{"value":{"messages":[{"type":"text","text":'
                        '{"body":"a\\u0000b"}}]}}]}]}',
    "edge-deep": '{"entry":[{"changes":[{"value":{"messages":[{"type":"x","x":' + "[" * 70
                 + "]" * 70 + "}]}}]}]}",
    "edge-big-numbers": '{"entry":[{"changes":[{"value":{"messages":[{"type":"location",'
                        '"location":{"latitude":1e999,"longitude":-0.0},"timestamp":'
                        '"99999999999999999999"}]}}]}]}',
    # Business-scoped user ids (issue 12): a message naming nobody, ids of
    # the wrong type, malformed and over-long ids, a contact-only id, a
    # status with only a parent id, a system message that is no object.
    "edge-bsuid-no-ids": '{"entry":[{"changes":[{"value":{"messages":[{"id":"w1","type":"text",'
                         '"text":{"body":"x"}}]}}]}]}',
    "edge-bsuid-wrong-types": '{"entry":[{"changes":[{"value":{"contacts":[{"user_id":5,'
                              '"profile":{"username":[]}}],"messages":[{"id":"w1",'
                              '"from_user_id":7,"from_parent_user_id":{},"type":"text",'
                              '"text":{"body":"x"}}]}}]}]}',
    "edge-bsuid-malformed": '{"entry":[{"changes":[{"value":{"messages":[{"id":"w1",'
                            '"from_user_id":"US.13-49!","type":"text","text":{"body":"x"}}]}}]}]}',
    "edge-bsuid-long": '{"entry":[{"changes":[{"value":{"messages":[{"id":"w1","from_user_id":"US.'
                       + "7" * 300 + '","type":"text","text":{"body":"x"}}]}}]}]}',
    "edge-bsuid-contact-only": '{"entry":[{"changes":[{"value":{"contacts":[{"user_id":'
                               '"US.1349","profile":{"name":"A","username":"a"}}],"messages":'
                               '[{"id":"w1","type":"text","text":{"body":"x"}}]}}]}]}',
    "edge-bsuid-status-parent-only": '{"entry":[{"changes":[{"value":{"statuses":[{"id":"w1",'
                                     '"status":"sent","parent_recipient_user_id":"US.ENT.1"}]}}]}]}',
    "edge-bsuid-system-not-object": '{"entry":[{"changes":[{"value":{"messages":[{"id":"w1",'
                                    '"from_user_id":"US.1","type":"system","system":"x"}]}}]}]}',
    # The BSUID page's shapes without a phone, and user_id_update (8x8).
    "edge-bsuid-system-previous-only": '{"entry":[{"changes":[{"value":{"messages":[{"id":"w1",'
                                       '"type":"system","system":{"previous_user_id":7,'
                                       '"previous_parent_user_id":"US.ENT.1"}}]}}]}]}',
    "edge-bsuid-user-id-update": '{"entry":[{"changes":[{"field":"user_id_update","value":'
                                 '{"user_id_update":[{"user_id":{"previous":"US.1","current":'
                                 '"US.2"}},{"user_id":"US.3","parent_user_id":[1]},7]}}]}]}',
    "edge-bsuid-preference-no-phone": '{"entry":[{"changes":[{"field":"user_preferences","value":'
                                      '{"user_preferences":[{"user_id":"US.1","value":"stop"},'
                                      '{"parent_user_id":{"a":1}}]}}]}]}',
    "edge-bsuid-echo-call-no-phone": '{"entry":[{"changes":[{"field":"smb_message_echoes","value":'
                                     '{"message_echoes":[{"to_parent_user_id":"US.ENT.1"}]}},'
                                     '{"field":"calls","value":{"calls":[{"to_user_id":"US.1"}],'
                                     '"statuses":[{"recipient_parent_user_id":"US.ENT.2"}]}}]}]}',
}


def make_meta():
    for name in conformance_files("meta-", ".json"):
        write("fuzz_meta", "conf-" + name, conformance(name))
    vectors = json.loads(conformance("meta-signature-vectors.json", "r"))["vectors"]
    for v in vectors:
        if v["name"].endswith("-compact") or v["name"].endswith("-raw-utf8"):
            write("fuzz_meta", "conf-sigvec-" + v["name"], v["body"])
    for name, text in META_EDGES.items():
        write("fuzz_meta", name, text)


# --------------------------------------------------------------------------
# Signatures

def sig_input(token, url, params, signature, body=None):
    parts = [token.encode(), url.encode(), params.encode(),
             (signature or "").encode()]
    data = b"\x00".join(parts)
    if body is not None:
        data += b"\x00" + body.encode("utf-8")
    return data


def make_sig():
    vectors = json.loads(conformance("twilio-signature-vectors.json", "r"))["vectors"]
    for v in vectors:
        params = form_encode(v["params"] or [])
        write("fuzz_twilio_sig", "conf-twilio-" + v["name"],
              sig_input(v["auth_token"], v["url"], params, v["expected_signature"], v["body"]))
    forms = json.loads(conformance("twilio-forms-signatures.json", "r"))
    for f in forms["forms"][:6]:
        body = conformance(f["file"]).decode("utf-8")
        write("fuzz_twilio_sig", "conf-form-" + f["file"],
              sig_input(forms["auth_token"], f["url"], body, f["x_twilio_signature"]))
    meta = json.loads(conformance("meta-signature-vectors.json", "r"))["vectors"]
    for v in meta:
        if v["name"].endswith("-file-bytes"):
            continue
        write("fuzz_twilio_sig", "conf-meta-" + v["name"],
              sig_input(v["app_secret"], "", "", v["header_value"], v["body"]))
    write("fuzz_twilio_sig", "edge-no-separators", b"just a token")
    write("fuzz_twilio_sig", "edge-empty-token",
          sig_input("", "https://h.example/x", "a=1", "RSOYDt4T1cUTdK1PDd93/VVr8B8="))
    write("fuzz_twilio_sig", "edge-bad-urls",
          sig_input("t", "https://[::1]x:99999/?bodySHA256=1&bodySHA256=2", "a=%zz",
                    "RSOYDt4T1cUTdK1PDd93/VVr8B8="))


# --------------------------------------------------------------------------
# Events: a minimal protobuf encoder for switchboard.v1.Event

def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return varint(field << 3 | 2) + varint(len(data)) + data


def f_double(field, x):
    return varint(field << 3 | 1) + struct.pack("<d", x)


def strings(fields):
    """Encode {field number: str or bytes} as length-delimited fields."""
    return b"".join(f_bytes(k, v) for k, v in fields.items() if v)


def twilio_event(name, body):
    form = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    channel = 3 if "voice" in name else (2 if "whatsapp" in name else 1)
    kind = 2 if "status" in name else 4 if "gather" in name else 3 if "voice" in name else 1
    strip = lambda a: a.replace("whatsapp:", "")
    ev = f_varint(6, 1) + f_varint(7, channel) + f_varint(8, kind)
    ev += strings({9: "text" if kind == 1 else "",
                   10: form.get("MessageSid") or form.get("CallSid", ""),
                   11: form.get("AccountSid", ""), 12: strip(form.get("From", "")),
                   13: strip(form.get("To", "")), 14: form.get("ProfileName", ""),
                   16: form.get("Body", ""), 21: form.get("Digits", ""),
                   22: form.get("SpeechResult", ""), 31: form.get("CallStatus", ""),
                   48: form.get("ExternalUserId", "")})
    if "Confidence" in form:
        ev += f_double(23, float(form["Confidence"]))
    if "Latitude" in form:
        ev += f_bytes(18, f_double(1, float(form["Latitude"])) + f_double(2, float(form["Longitude"]))
                      + strings({4: form.get("Address", ""), 6: form.get("Label", "")}))
    for i in range(int(form.get("NumMedia", "0"))):
        ev += f_bytes(17, strings({1: form.get("MediaUrl%d" % i, ""),
                                   2: form.get("MediaContentType%d" % i, "")}))
    if "MessageStatus" in form:
        ev += f_bytes(20, strings({1: form["MessageStatus"], 2: form.get("ErrorCode", ""),
                                   3: form.get("ErrorMessage", "")}))
    ev += f_bytes(40, body) + strings({41: "application/x-www-form-urlencoded",
                                       42: "/twilio/messages", 43: "req-1"})
    return ev


def meta_event(doc, raw):
    value = doc["entry"][0]["changes"][0]["value"]
    ev = f_varint(6, 2) + f_varint(7, 2)
    ev += strings({11: value["metadata"]["phone_number_id"],
                   32: value["metadata"]["display_phone_number"],
                   33: doc["entry"][0]["id"], 34: doc["entry"][0]["changes"][0]["field"]})
    if "statuses" in value:
        st = value["statuses"][0]
        ev += f_varint(8, 2) + strings({10: st["id"],
                                        13: st.get("recipient_id") or st.get("recipient_user_id", ""),
                                        48: st.get("recipient_user_id", ""),
                                        49: st.get("parent_recipient_user_id", "")})
        status = strings({1: st["status"], 4: st.get("recipient_id", "")})
        if "pricing" in st:
            status += f_varint(8, 1) + strings({7: st["pricing"].get("category", "")})
        ev += f_bytes(20, status)
        for err in st.get("errors", []):
            ev += f_bytes(29, f_varint(1, err["code"]) + strings({2: err.get("title", ""),
                                                                  3: err.get("message", "")}))
        detail = st
    else:
        msg = value["messages"][0]
        kind_type = msg["type"]
        contact = (value.get("contacts") or [{}])[0]
        ev += f_varint(8, 1) + strings({9: kind_type, 10: msg["id"],
                                        12: msg.get("from") or msg.get("from_user_id", ""),
                                        48: msg.get("from_user_id", ""),
                                        49: msg.get("from_parent_user_id", ""),
                                        50: contact.get("profile", {}).get("username", "")})
        ev += f_varint(30, int(msg.get("timestamp", "0")))
        body = msg.get(kind_type, {})
        if kind_type == "text":
            ev += strings({16: body["body"]})
        elif kind_type in ("image", "audio", "video", "document", "sticker"):
            ev += f_bytes(17, strings({2: body.get("mime_type", ""), 3: body.get("id", ""),
                                       4: body.get("sha256", ""), 5: body.get("caption", ""),
                                       6: body.get("filename", "")})
                          + f_varint(7, 1 if body.get("voice") else 0))
        elif kind_type == "location":
            ev += f_bytes(18, f_double(1, body["latitude"]) + f_double(2, body["longitude"])
                          + strings({3: body.get("name", ""), 4: body.get("address", "")}))
        elif kind_type == "reaction":
            ev += f_bytes(25, strings({1: body.get("message_id", ""), 2: body.get("emoji", "")}))
        elif kind_type == "order":
            items = b"".join(f_bytes(3, strings({1: i["product_retailer_id"], 3: str(i["item_price"]),
                                                  4: i["currency"]}) + f_varint(2, i["quantity"]))
                             for i in body["product_items"])
            ev += f_bytes(27, strings({1: body["catalog_id"], 2: body.get("text", "")}) + items)
        elif kind_type == "contacts":
            for c in msg["contacts"]:
                card = strings({1: c["name"]["formatted_name"]})
                for p in c.get("phones", []):
                    card += f_bytes(2, p.get("phone", "")) + f_bytes(3, p.get("wa_id", ""))
                ev += f_bytes(26, card)
        elif kind_type == "system":
            ev += f_bytes(28, strings({1: body.get("type", ""), 2: body.get("body", ""),
                                       3: body.get("wa_id", "")}))
            ev += strings({51: body.get("user_id", ""), 52: body.get("parent_user_id", ""),
                           53: body.get("previous_user_id", "")})
        elif kind_type == "interactive":
            reply = body.get(body["type"], {})
            ev += f_bytes(19, strings({1: body["type"], 2: reply.get("id", ""),
                                       3: reply.get("title", ""),
                                       4: reply.get("description", "")}))
        detail = msg
    ev += strings({44: json.dumps(detail, separators=(",", ":"), ensure_ascii=False)})
    ev += f_bytes(40, raw) + strings({41: "application/json", 42: "/meta/webhook"})
    return ev


def stamp(ev, seq, ingress="ingress-1", epoch="00112233445566778899aabbccddeeff"):
    return ev + f_varint(3, seq) + f_bytes(1, "%s-%s-%d" % (ingress, epoch, seq))


def make_events():
    events = {}
    for name in [n for n in conformance_files("twilio-", ".form") if "bsuid" not in n][:8]:
        events["event-" + name[:-5]] = twilio_event(name, conformance(name))
    for name in ("meta-text.json", "meta-image.json", "meta-audio.json", "meta-location.json",
                 "meta-contacts.json", "meta-order.json", "meta-reaction.json",
                 "meta-system.json", "meta-interactive-list_reply.json",
                 "meta-status-failed.json", "meta-status-sent.json",
                 "meta-bsuid-text-username.json", "meta-bsuid-text-phone.json",
                 "meta-bsuid-status-delivered.json", "meta-bsuid-system-changed-number.json",
                 "meta-bsuid-system-changed-user-id.json", "meta-bsuid-status-delivered-phone.json"):
        raw = conformance(name)
        events["event-" + name[:-5]] = meta_event(json.loads(raw), raw)
    events["event-empty"] = b""
    events["event-stamped-sms"] = stamp(events["event-twilio-sms-inbound"], 42)
    events["event-stamped-twice"] = stamp(stamp(events["event-meta-text"], 1), (1 << 64) - 1)
    events["event-unknown-fields"] = (f_varint(6, 1) + f_varint(99, 5) + f_bytes(100, "x")
                                      + varint(101 << 3 | 5) + b"\x01\x02\x03\x04")
    events["event-enum-out-of-range"] = f_varint(6, 77) + f_varint(7, 1 << 31) + f_varint(8, 5)
    events["event-invalid-utf8"] = (f_varint(6, 2) + f_bytes(16, b"caf\xc3(\xff\xed\xa0\x80")
                                    + f_bytes(40, b"\x00\x01\xfe\xff") + f_bytes(12, b"a\x00b"))
    events["event-nonfinite"] = f_bytes(18, f_double(1, float("nan")) + f_double(2, float("-inf"))) \
        + f_double(23, float("inf"))
    events["event-negative-zero"] = f_bytes(18, f_double(1, -0.0) + f_double(2, 0.0))
    # One request, one body (fields 45-47): its first event carries raw_body,
    # the others say where it is (seq - request_index) and its SHA-256.
    raw = conformance("meta-batch-synthetic.json")
    sha = hashlib.sha256(raw).digest()
    events["event-request-first"] = stamp(meta_event(json.loads(raw), raw) + f_varint(45, 3)
                                          + f_bytes(47, sha), 10)
    events["event-request-ref"] = stamp(f_varint(6, 2) + f_varint(7, 2) + f_varint(8, 2)
                                        + strings({10: "wamid.ref", 41: "application/json"})
                                        + f_varint(45, 3) + f_varint(46, 2) + f_bytes(47, sha), 12)
    events["event-request-index-past-seq"] = stamp(f_varint(45, 9) + f_varint(46, 8), 3)
    events["event-negative-ints"] = (f_varint(4, -1) + f_varint(30, -(1 << 63))
                                     + f_bytes(29, f_varint(1, -5)))
    events["event-merged-submessages"] = (f_bytes(18, f_double(1, 1.5)) + f_bytes(18, strings({3: "n"}))
                                          + f_bytes(20, strings({1: "sent"}))
                                          + f_bytes(20, f_varint(8, 1)))
    events["event-detail-json-odd"] = strings({44: '{"a":[1,2,{"b":null}],"c":"\\u00e9"}'}) \
        + strings({44: "not json ["})
    events["event-twilio-bsuid-whatsapp-inbound"] = twilio_event(
        "twilio-bsuid-whatsapp-inbound.form", conformance("twilio-bsuid-whatsapp-inbound.form"))
    events["event-bsuid-malformed"] = (f_varint(6, 2) + strings({12: "US.13-49!", 48: "US.13-49!",
                                                                 50: "a" * 40})
                                       + f_varint(54, 1))
    events["event-truncated"] = events["event-meta-text"][:-7]
    events["event-wrong-wire-type"] = varint(1 << 3 | 0) + varint(5)
    for name, data in events.items():
        write("fuzz_event", name, data)
    return events


# --------------------------------------------------------------------------
# Journal segments (the layout of common/sb_journal.c)

EPOCH = "0123456789abcdef0123456789abcdef"
OTHER_EPOCH = "fedcba9876543210fedcba9876543210"


def crc(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def header(first, epoch=EPOCH, version=1):
    h = b"SBJ1" + struct.pack("<I", version) + epoch.encode() + struct.pack("<Q", first)
    return h + struct.pack("<I", crc(h))


def record(seq, payload):
    body = struct.pack("<Q", seq) + payload
    return struct.pack("<I", len(payload)) + struct.pack("<I", crc(body)) + body


def segment(first, payloads, epoch=EPOCH):
    return header(first, epoch) + b"".join(record(first + i, p) for i, p in enumerate(payloads))


def journal(flags, data, first=1, gap=0, cut=0):
    return bytes([flags, first - 1, gap, cut & 0xFF, cut >> 8]) + data


def make_journal(events):
    payloads = [events["event-twilio-sms-inbound"][:120], b"", b"hello",
                events["event-stamped-sms"][:80], b"\x00" * 17]
    good = segment(1, payloads)
    first_record = len(header(1)) + len(record(1, payloads[0]))
    cases = {
        "journal-valid": journal(0x04, good),
        "journal-valid-no-epoch": journal(0x00, good),
        "journal-header-only": journal(0x04, header(1)),
        "journal-empty-file": journal(0x00, b""),
        "journal-torn-tail": journal(0x04, good[:-9]),
        "journal-torn-record-header": journal(0x04, good + record(6, b"x")[:10]),
        "journal-flipped-middle": None,
        "journal-flipped-last": None,
        "journal-bad-header-crc": journal(0x04, b"SBJ1" + good[4:48] + b"\x00\x00\x00\x00" + good[52:]),
        "journal-short-header": journal(0x04, good[:20]),
        "journal-version-2": journal(0x04, header(1, version=2) + good[52:]),
        "journal-name-mismatch": journal(0x04, good, first=9),
        "journal-seq-gap": journal(0x04, header(1) + record(1, b"a") + record(3, b"b") + record(4, b"c")),
        "journal-huge-length": journal(0x04, good + struct.pack("<I", 0xFFFFFFF0) + b"\x00" * 12),
        "journal-zero-fill-tail": journal(0x04, good + b"\x00" * 64),
        "journal-two-segments": journal(0x0C, segment(1, payloads[:2]) + segment(3, payloads[2:]),
                                         first=1, gap=1, cut=len(segment(1, payloads[:2]))),
        "journal-two-segments-overlap": journal(0x0C, segment(1, payloads) + segment(2, payloads[:2]),
                                                first=1, gap=0, cut=len(good)),
        "journal-two-segments-first-damaged": journal(0x0C, good[:40] + segment(6, payloads[:1]),
                                                      first=1, gap=4, cut=40),
        "journal-rotate": journal(0x14, good),
        "journal-read-from-middle": journal(0x24, good, first=1, gap=2),
        "journal-late-first": journal(0x04, segment(200, payloads[:3]), first=200),
        "journal-header-epoch-not-hex": journal(0x00, header(1, "Z" * 32) + good[52:]),
        "journal-epoch-from-header": journal(0x00, segment(1, payloads, OTHER_EPOCH)),
        "journal-epoch-mismatch": journal(0x0C, segment(1, payloads[:2])
                                          + segment(3, payloads[2:], OTHER_EPOCH),
                                          first=1, gap=1, cut=len(segment(1, payloads[:2]))),
        "journal-crc-template": journal(0x07, b"SBJ1\x01\x00\x00\x00" + EPOCH.encode() + struct.pack("<Q", 1)
                                        + b"\x00" * 4 + struct.pack("<I", 3) + b"\x00" * 4
                                        + struct.pack("<Q", 1) + b"abc"),
        "journal-epoch-only-valid": journal(0x40, (EPOCH + "\n").encode()),
        "journal-epoch-only-garbage": journal(0x40, b"not an epoch"),
    }
    flipped = bytearray(good)
    flipped[first_record + 20] ^= 0x40  # inside record 2's header or payload: skipped
    cases["journal-flipped-middle"] = journal(0x04, bytes(flipped))
    flipped = bytearray(good)
    flipped[-3] ^= 0x01
    cases["journal-flipped-last"] = journal(0x04, bytes(flipped))
    for name, data in cases.items():
        write("fuzz_journal", name, data)


# --------------------------------------------------------------------------
# Replay protocol frames (proto/switchboard/v1/replay.proto): one
# ReplayMessage each, whose oneof body is field 1 (hello) .. 9 (ack).

def replay_msg(body, payload):
    return f_bytes(body, payload)


def make_replay(events):
    epoch = EPOCH
    event = events["event-stamped-sms"]
    request = (f_varint(1, 7) + f_bytes(2, "dispatcher") + f_bytes(3, epoch) + f_varint(4, 1001)
               + f_varint(5, 1000))
    cases = {
        "replay-hello": replay_msg(1, f_bytes(1, "dispatcher")),
        "replay-hello-anonymous": replay_msg(1, b""),
        "replay-welcome": replay_msg(2, f_bytes(1, "ingress-1") + f_bytes(2, epoch) + f_varint(3, 1200)),
        "replay-welcome-empty-journal": replay_msg(2, f_bytes(1, "ingress-1") + f_bytes(2, epoch)),
        "replay-request": replay_msg(3, request),
        "replay-request-current-epoch": replay_msg(3, f_varint(1, 8) + f_varint(4, 1) + f_varint(5, 100)
                                                   + f_varint(6, 50)),
        "replay-start": replay_msg(4, f_varint(1, 7) + f_bytes(2, "ingress-1") + f_bytes(3, epoch)
                                   + f_varint(4, 1001) + f_varint(5, 1200)),
        "replay-record": replay_msg(5, f_varint(1, 7) + f_varint(2, 1001) + f_bytes(3, event)),
        "replay-credit": replay_msg(6, f_varint(1, 7) + f_varint(2, 500)),
        "replay-cancel": replay_msg(7, f_varint(1, 7)),
        "replay-end-caught-up": replay_msg(8, f_varint(1, 7) + f_varint(2, 1) + f_varint(3, 1200)
                                           + f_varint(4, 1210) + f_bytes(5, epoch)),
        "replay-end-busy": replay_msg(8, f_varint(1, 9) + f_varint(2, 5) + f_bytes(5, epoch)),
        "replay-end-future-reason": replay_msg(8, f_varint(1, 7) + f_varint(2, 99) + f_bytes(5, epoch)),
        "replay-ack": replay_msg(9, f_bytes(1, "dispatcher") + f_bytes(2, epoch) + f_varint(3, 1200)),
        "replay-edge-empty": b"",
        "replay-edge-unknown-body": f_varint(20, 1) + f_bytes(21, "x"),
        "replay-edge-two-bodies": replay_msg(1, f_bytes(1, "a")) + replay_msg(9, f_bytes(1, "b")
                                                                          + f_bytes(2, "ab")),
        "replay-edge-bad-id": replay_msg(9, f_bytes(1, "bad id") + f_bytes(2, epoch)),
        "replay-edge-long-id": replay_msg(1, f_bytes(1, "x" * 65)),
        "replay-edge-id-64": replay_msg(1, f_bytes(1, "x" * 64)),
        "replay-edge-id-with-nul": replay_msg(1, f_bytes(1, b"disp\x00atcher")),
        "replay-edge-epoch-not-hex": replay_msg(2, f_bytes(1, "i") + f_bytes(2, "xyz")),
        "replay-edge-epoch-too-long": replay_msg(8, f_varint(2, 1) + f_bytes(5, "a" * 65)),
        "replay-edge-from-zero": replay_msg(3, f_varint(1, 1) + f_varint(4, 0)),
        "replay-edge-credit-too-big": replay_msg(3, f_varint(4, 1) + f_varint(5, 100001)),
        "replay-edge-credit-zero": replay_msg(6, f_varint(1, 7)),
        "replay-edge-record-empty-event": replay_msg(5, f_varint(1, 7) + f_varint(2, 1)),
        "replay-edge-record-seq-zero": replay_msg(5, f_varint(1, 7) + f_bytes(3, b"x")),
        "replay-edge-end-reason-zero": replay_msg(8, f_varint(1, 7) + f_bytes(5, epoch)),
        "replay-edge-end-reason-negative": replay_msg(8, f_varint(2, -1) + f_bytes(5, epoch)),
        "replay-edge-unknown-fields-inside": replay_msg(1, f_bytes(1, "d") + f_varint(99, 5)
                                                        + varint(100 << 3 | 5) + b"\x01\x02\x03\x04"),
        "replay-edge-truncated": replay_msg(3, request)[:-3],
        "replay-edge-wrong-wire-type": f_varint(1, 5),
        "replay-edge-max-numbers": replay_msg(4, f_varint(1, (1 << 64) - 1) + f_bytes(2, "i")
                                              + f_bytes(3, "F" * 64) + f_varint(4, (1 << 64) - 1)
                                              + f_varint(5, (1 << 64) - 1)),
    }
    for name, data in cases.items():
        write("fuzz_replay", name, data)


def make_sharedkey():
    doc = json.loads(conformance("twilio-sharedkey-vectors.json", "r"))
    keys = ",".join("%s=%s" % kv for kv in doc["keys"].items())
    for v in doc["vectors"]:
        if v["settings_header"] is None:
            continue
        write("fuzz_twilio_sharedkey", "conf-" + v["name"],
              b"\x00".join([keys.encode(), v["settings_header"].encode(), v["signature"].encode()]))
    edges = {
        "edge-keys-duplicate": b"a=1,a=2\x00key=a,algorithm=HMAC_SHA256",
        "edge-keys-empty-pairs": b",,=,a=\x00key=,algorithm=",
        "edge-settings-spaces": b" a = x , b=y==\x00 KEY = b , Algorithm = hmac_sha1 , v=2\x00AAAA",
        "edge-settings-no-equals": b"a=x\x00key;algorithm",
        "edge-no-keys": b"\x00key=a,algorithm=HMAC_SHA256\x00" + b"A" * 43 + b"=",
    }
    for name, data in edges.items():
        write("fuzz_twilio_sharedkey", name, data)


def make_console_web():
    # The headers a browser and a script send the console (RFC 6265 cookies,
    # RFC 6750 bearer tokens, the Fetch standard's Origin and Sec-Fetch-Site).
    cases = {
        "bearer": ["Bearer T0k-en", "", "http://127.0.0.1:8082", "127.0.0.1:8082", "127.0.0.1:8082"],
        "bearer-spaces": ["bearer   T0k-en  ", "", "https://console.example", "console.example", "[::1]:8082"],
        "cookie": ["", "a=b; sb_console=T0k-en; c=d", "null", "127.0.0.1:8082", "8082"],
        "cookie-prefix": ["", "xsb_console=T0k-en;sb_console=T0k-en2", "http://127.0.0.1:8082.evil",
                          "127.0.0.1:8082", "0.0.0.0:8082"],
        "same-origin": ["Basic T0k-en", "same-origin", "", "127.0.0.1:8082", "127.0.0.1:8082,[::1]:8443s"],
        "breaks": ["Bearer T0k-en\r\nX: y", "sb_console=T0k-en\n", "http://a\nb", "a\rb", "127.0.0.1:80x"],
    }
    for name, parts in cases.items():
        write("fuzz_console_web", "edge-" + name, "\0".join(parts))


def main():
    make_console_web()
    make_forms()
    make_sharedkey()
    make_twilio_normalize()
    make_meta()
    make_sig()
    events = make_events()
    make_journal(events)
    make_replay(events)
    total = 0
    for root, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print("corpus: %d bytes in %s" % (total, CORPUS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
