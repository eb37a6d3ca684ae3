"""`switchboard doctor` against the real ingress, dispatcher, PostgreSQL and
sandbox (sbtest.Stack): a good configuration passes every check (exit 0,
--json parses, the webhook URLs printed, the self-test stored), and each
kind of bad configuration gives a ❌ line naming the variable or component,
exit 1.

Python 3 standard library only.
"""

import json
import os
import subprocess
import tempfile

import sbtest
from sbtest import CLI, INGRESS

# Well-formed credentials (Twilio's shapes: AC/SK + 32 hex, a 32-hex token).
TOKEN = "0123456789abcdef0123456789abcdef"
OTHER_TOKEN = "fedcba9876543210fedcba9876543210"
SECRETS = {"TWILIO_AUTH_TOKEN": TOKEN, "META_APP_SECRET": "meta-app-secret-for-doctor",
           "META_VERIFY_TOKEN": "doctor-verify-token"}


def doctor_env(stack, **change):
    """The union of what the ingress and the dispatcher read, as an operator
    would export it for both, changed by change (None removes)."""
    env = dict(stack.dispatcher.env)
    env.update(stack.ingress.env)
    for k, v in change.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def doctor(stack, *args, **change):
    out = subprocess.run([CLI, "doctor", "--timeout", "3", "--dev-env", "/nonexistent"] + list(args),
                         capture_output=True, text=True, timeout=90, env=doctor_env(stack, **change))
    assert "Sanitizer" not in out.stderr and "runtime error:" not in out.stderr, out.stderr
    return out


def lines(out):
    return [line for line in out.stdout.splitlines() if line]


def failed(out, name):
    """The ❌ lines for name; asserts exit 1 and at least one such line."""
    bad = [line for line in lines(out) if line.startswith("❌ " + name)]
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert bad, "no ❌ %s in:\n%s" % (name, out.stdout)
    return bad


def test_good(stack):
    out = doctor(stack)
    assert out.returncode == 0, out.stdout + out.stderr
    checks = lines(out)
    # ✅, or ➖ for the provider API checks, not run without their settings
    assert all(line.startswith("✅ ") or line.startswith("➖ ") for line in checks), out.stdout
    assert len([line for line in checks if line.startswith("➖ ")]) == 3, out.stdout
    text = out.stdout
    for name in ("settings of switchboard-ingress", "settings of switchboard-dispatcher",
                 "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "META_APP_SECRET",
                 "PostgreSQL (DATABASE_URL)", "PostgreSQL migrations", "SB_JOURNAL_DIR",
                 "switchboard-ingress /readyz", "switchboard-dispatcher /readyz",
                 "self-test: signed webhook to the ingress", "self-test: stored by the dispatcher"):
        assert "✅ " + name + ":" in text, (name, text)
    for route in ("/twilio/messages", "/twilio/status", "/twilio/voice", "/meta/whatsapp"):
        assert "%s%s" % (stack.public_url, route) in text, (route, text)
    # the self-test's event is really in PostgreSQL
    sid = [line for line in checks if line.startswith("✅ self-test: signed")][0].split("(")[1].split(")")[0]
    assert stack.scalar("SELECT count(*) FROM events WHERE provider_id = '%s'" % sid) == "1", sid

    js = doctor(stack, "--json")
    assert js.returncode == 0, js.stdout
    results = json.loads(js.stdout)
    assert isinstance(results, list) and len(results) == len(checks) - 1, results
    for r in results:
        assert set(r) >= {"name", "ok", "detail"} and r["ok"] is True, r

    # with a path prefix, the URLs carry it (doctor alone: nothing else reads it here)
    out = doctor(stack, SB_PATH_PREFIX="/api/v1")
    assert "%s/api/v1/twilio/messages" % stack.public_url in out.stdout, out.stdout


def test_refused_setting(stack):
    env = doctor_env(stack, SB_LISTEN="127.0.0.1:99999")
    ingress = subprocess.run([INGRESS], capture_output=True, text=True, timeout=30, env=env)
    assert ingress.returncode == 2, ingress.stderr
    message = ingress.stderr.strip().splitlines()[-1]
    out = doctor(stack, SB_LISTEN="127.0.0.1:99999")
    bad = failed(out, "settings of switchboard-ingress")
    assert message in bad[0] and "SB_LISTEN" in bad[0], (message, bad)
    js = json.loads(doctor(stack, "--json", SB_LISTEN="127.0.0.1:99999").stdout)
    entry = [r for r in js if r["name"] == "settings of switchboard-ingress"][0]
    assert entry["ok"] is False and entry["fix"] and message in entry["detail"], entry


def test_bad_curve_key(stack):
    out = doctor(stack, SB_CURVE_SERVER_SECRET="not-a-z85-key", SB_CURVE_ALLOWED="*")
    bad = failed(out, "CURVE keys of switchboard-ingress")
    assert "SB_CURVE_SERVER_SECRET" in bad[0], bad


def test_bad_sid(stack):
    out = doctor(stack, TWILIO_ACCOUNT_SID="AC123")
    bad = failed(out, "TWILIO_ACCOUNT_SID")
    assert "AC and 32 hexadecimal digits" in bad[0] and "→" in bad[0], bad
    out = doctor(stack, TWILIO_API_KEY="AK0123456789abcdef0123456789abcdef", TWILIO_API_SECRET="s")
    failed(out, "TWILIO_API_KEY")


def test_placeholder_token(stack):
    for value in ("your_auth_token", "xxx", "changeme"):
        out = doctor(stack, TWILIO_AUTH_TOKEN=value)
        bad = failed(out, "TWILIO_AUTH_TOKEN")
        assert "placeholder" in bad[0], bad
        assert value not in bad[0], "a secret was printed: %s" % bad[0]
    failed(doctor(stack, META_ACCESS_TOKEN="your_access_token"), "META_ACCESS_TOKEN")


def test_dev_values_on_public_host(stack):
    with tempfile.NamedTemporaryFile("w", suffix=".env") as dev:
        dev.write("# switchboard development settings\nTWILIO_AUTH_TOKEN=%s\n" % TOKEN)
        dev.flush()
        env = doctor_env(stack, SB_PUBLIC_URL="https://hooks.example.com")
        out = subprocess.run([CLI, "doctor", "--timeout", "3", "--dev-env", dev.name],
                             capture_output=True, text=True, timeout=90, env=env)
        bad = failed(out, "TWILIO_AUTH_TOKEN")
        assert "development value" in bad[0], bad
        # the sandbox as the API of a public install
        failed(out, "TWILIO_API_BASE")
        # loopback SB_PUBLIC_URL (development): the same values are fine
        out = subprocess.run([CLI, "doctor", "--timeout", "3", "--dev-env", dev.name],
                             capture_output=True, text=True, timeout=90, env=doctor_env(stack))
        assert out.returncode == 0, out.stdout


def test_http_public_url(stack):
    out = doctor(stack, SB_PUBLIC_URL="http://hooks.example.com")
    bad = failed(out, "SB_PUBLIC_URL")
    assert "https" in bad[0], bad
    failed(doctor(stack, SB_PUBLIC_URL="http://10.1.2.3:8080"), "SB_PUBLIC_URL")
    failed(doctor(stack, SB_PUBLIC_URL=None), "SB_PUBLIC_URL")
    # https on a public host passes that check (the self-test then signs for
    # a URL the ingress does not use: 403, named)
    out = doctor(stack, SB_PUBLIC_URL="https://hooks.example.com/")
    assert [l for l in lines(out) if l.startswith("✅ SB_PUBLIC_URL")], out.stdout
    assert "https://hooks.example.com/twilio/messages" in out.stdout, out.stdout
    assert "403" in failed(out, "self-test: signed webhook")[0]


def test_unreachable_postgres(stack):
    port = sbtest.free_port()
    out = doctor(stack, DATABASE_URL="postgresql://postgres@127.0.0.1:%d/switchboard" % port)
    bad = failed(out, "PostgreSQL (DATABASE_URL)")
    assert "cannot connect" in bad[0], bad


def test_unmigrated_postgres(stack):
    db = stack.pg.create()
    try:
        out = doctor(stack, DATABASE_URL=db)
        bad = failed(out, "PostgreSQL migrations")
        assert "not migrated" in bad[0] and "--migrate-only" in bad[0], bad
    finally:
        stack.pg.drop(db)


def test_journal_dir(stack):
    with tempfile.NamedTemporaryFile() as f:
        out = doctor(stack, SB_JOURNAL_DIR=os.path.join(f.name, "journal"))
        failed(out, "SB_JOURNAL_DIR")
    ro = tempfile.mkdtemp(prefix="sb-doctor-ro-")
    try:
        # a read-only bind would need root and mounts; a file in the way is
        # refused by root too
        blocker = os.path.join(ro, "journal")
        open(blocker, "w").close()
        failed(doctor(stack, SB_JOURNAL_DIR=blocker), "SB_JOURNAL_DIR")
    finally:
        os.unlink(os.path.join(ro, "journal"))
        os.rmdir(ro)
    # free space below two segments (SB_JOURNAL_SEGMENT_BYTES=1t: 2 TiB)
    bad = failed(doctor(stack, SB_JOURNAL_SEGMENT_BYTES="1099511627776"), "SB_JOURNAL_DIR")
    assert "free" in bad[0], bad


def test_wrong_auth_token(stack):
    out = doctor(stack, TWILIO_AUTH_TOKEN=OTHER_TOKEN)
    bad = failed(out, "self-test: signed webhook to the ingress")
    assert "403" in bad[0] and "TWILIO_AUTH_TOKEN" in bad[0], bad
    assert [l for l in lines(out) if l.startswith("✅ TWILIO_AUTH_TOKEN")], out.stdout


def test_ingress_down(stack):
    stack.ingress.stop()
    out = doctor(stack)
    failed(out, "switchboard-ingress /healthz")
    failed(out, "switchboard-ingress /readyz")
    failed(out, "self-test: signed webhook to the ingress")
    # the rest still passes
    assert [l for l in lines(out) if l.startswith("✅ PostgreSQL migrations")], out.stdout
    assert [l for l in lines(out) if l.startswith("✅ switchboard-dispatcher /healthz")], out.stdout


def main():
    sbtest.run_tests_on_stack([
        test_good, test_refused_setting, test_bad_curve_key, test_bad_sid, test_placeholder_token,
        test_dev_values_on_public_host, test_http_public_url, test_unreachable_postgres,
        test_unmigrated_postgres, test_journal_dir, test_wrong_auth_token, test_ingress_down], secrets=SECRETS)


if __name__ == "__main__":
    main()
