#!/usr/bin/env python3
"""Pre-sign webhook requests for the wrk benchmark (bench/webhook.lua).

Each request is a real provider webhook from tests/conformance/ with its own
provider id, signed exactly as the provider signs it:

  twilio  the inbound SMS form (twilio-sms-inbound.form), MessageSid,
          SmsMessageSid and SmsSid replaced by a fresh SM + 32 hex;
          X-Twilio-Signature = base64 HMAC-SHA1(auth token, URL + the
          params sorted by key, each key + value)
  meta    the text message (meta-text.json, sent compact as Meta does) with
          a fresh wamid; X-Hub-Signature-256 = sha256= + hex
          HMAC-SHA256(app secret, body)

Output in OUT/ (what the Lua script reads):
  twilio.tmpl, meta.tmpl   the body, with @ID@ where each request's id goes
  twilio.ids, meta.ids     one request per line: "<id> <signature header value>",
                           every line of a file the same length (the Lua script
                           seeks to its slice)

Only the id and the signature vary, so a million requests take ~90 MB, not
the ~600 MB of whole requests. Python 3 standard library only.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
CONFORMANCE = os.path.join(HERE, "..", "tests", "conformance")
PLACEHOLDER = "@ID@"


def twilio(out, count, url, token, tag):
    with open(os.path.join(CONFORMANCE, "twilio-sms-inbound.form"), encoding="utf-8") as f:
        form = f.read().strip()
    params = urllib.parse.parse_qsl(form, keep_blank_values=True, strict_parsing=True)
    old_sid = dict(params)["MessageSid"]
    # The template: the same form, the sid replaced by the placeholder
    # (the sid is [A-Za-z0-9] only, so its encoded form is itself).
    with open(os.path.join(out, "twilio.tmpl"), "w", encoding="utf-8") as f:
        f.write(form.replace(old_sid, PLACEHOLDER))
    # Twilio signs URL + for each key in sorted order, each value (sorted) key+value.
    ordered = sorted(params, key=lambda kv: (kv[0], kv[1]))
    pieces = [(k, v == old_sid, v) for k, v in ordered]
    mac = hmac.new(token.encode(), url.encode(), hashlib.sha1)
    with open(os.path.join(out, "twilio.ids"), "w", encoding="ascii") as f:
        for i in range(count):
            sid = "SM%s%024x" % (tag, i)
            h = mac.copy()
            h.update("".join(k + (sid if is_sid else v) for k, is_sid, v in pieces).encode())
            line = "%s %s\n" % (sid, base64.b64encode(h.digest()).decode())
            assert len(line) == 64, line
            f.write(line)


def meta(out, count, secret, tag):
    with open(os.path.join(CONFORMANCE, "meta-text.json"), encoding="utf-8") as f:
        doc = json.load(f)
    message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] = PLACEHOLDER
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    head, tail = body.split(PLACEHOLDER)
    with open(os.path.join(out, "meta.tmpl"), "w", encoding="utf-8") as f:
        f.write(body)
    head_mac = hmac.new(secret.encode(), head.encode(), hashlib.sha256)
    tail = tail.encode()
    with open(os.path.join(out, "meta.ids"), "w", encoding="ascii") as f:
        for i in range(count):
            # wamids are base64 of an opaque id; these are unique per run (tag).
            wamid = "wamid." + base64.b64encode(b"bench-%s-%012d" % (tag.encode(), i)).decode()
            h = head_mac.copy()
            h.update(wamid.encode())
            h.update(tail)
            line = "%s sha256=%s\n" % (wamid, h.hexdigest())
            assert len(line) == 115, line
            f.write(line)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--count", type=int, required=True, help="requests of each provider")
    p.add_argument("--twilio-url", required=True,
                   help="the URL Twilio signs: SB_PUBLIC_URL + /twilio/messages")
    p.add_argument("--twilio-token", required=True, help="TWILIO_AUTH_TOKEN")
    p.add_argument("--meta-secret", required=True, help="META_APP_SECRET")
    args = p.parse_args()
    if args.count < 1:
        p.error("--count must be at least 1")
    os.makedirs(args.out, exist_ok=True)
    if args.count >= 10**12:
        p.error("--count must be below 10^12 (fixed-width ids)")
    tag = secrets.token_hex(4)  # 8 hex digits: ids differ from one generation to the next
    twilio(args.out, args.count, args.twilio_url, args.twilio_token, tag)
    meta(args.out, args.count, args.meta_secret, tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
