"""README's nginx block for several ingresses behind a load balancer, run on
Debian's nginx as this test's child, on loopback (issue 15, "Several
ingresses"). The ```nginx block after "### Several ingresses behind a load
balancer" is read from README.md; only the listen address and port, the
certificate paths (a throwaway self-signed pair) and the two upstream server
addresses are substituted, and test_nginx_mtls's minimal nginx.conf is put
around it. Two real ingresses (each its own SB_INGRESS_ID and journal, both
with SB_PUBLIC_URL = nginx's https URL). Each webhook (a signed Twilio SMS)
is posted once, never retried by the client:

- both ingresses up: every webhook answered 200, both journals take some;
- ingress i2 killed (kill -9): every webhook still answered 200 (nginx
  passes a refused or broken connection to the other ingress), all in i1;
- i2 restarted without TWILIO_AUTH_TOKEN, so it answers 503 on Twilio's
  routes (as an ingress whose journal cannot write does), past
  fail_timeout: every webhook still answered 200 (nginx passes the 503 on),
  none journaled by i2;
- in the end every webhook is in exactly one journal, once.

Exits 77 (skipped) only when no nginx binary is installed."""

import os
import re
import shutil
import tempfile
import time

import sbload
import sbtest
from sbtest import Ingress
from test_nginx_mtls import Nginx, find_nginx, main_conf, substitute
from test_tls import client_context, https, make_cert

PHASE = 60


def _conf(runtime, port, cert, key, servers):
    block = sbtest.readme_block("### Several ingresses behind a load balancer", "nginx")
    block = substitute(block, "listen", "127.0.0.1:%d ssl" % port)
    block = substitute(block, "ssl_certificate", cert)
    block = substitute(block, "ssl_certificate_key", key)
    addresses = iter(servers)
    block, n = re.subn(r"^(\s*server\s+)[^\s;{]+", lambda m: m.group(1) + next(addresses), block, flags=re.M)
    assert n == len(servers), "README's nginx block has %d upstream servers:\n%s" % (n, block)
    return main_conf(block, runtime)


def _post_all(nginx, ctx, hooks):
    """Post each webhook once; the statuses nginx answered, by status."""
    seen = {}
    for w in hooks:
        try:
            status, _ = https(nginx, ctx, "POST", w.path, w.body, w.headers)
        except OSError as e:
            status = "error: %s" % e
        seen[status] = seen.get(status, 0) + 1
    return seen


def _journaled(ingress, tag):
    return [sbload.event_key(r) for r in sbtest.journal_records(ingress.journal)
            if (sbload.event_key(r) or "").startswith("SM" + tag)]


def test_readme_nginx_two_ingresses():
    binary = find_nginx()
    if not binary:
        raise sbtest.Skip("no nginx binary: scripts/deps.sh installs Debian's nginx")
    tag = "ngx"
    runtime = tempfile.mkdtemp(prefix="sb-nginx-lb-")
    os.chmod(runtime, 0o755)  # nginx's workers (user nobody when root) reach their temp paths
    ingresses = []
    nginx = None
    try:
        cert, key = make_cert(runtime)
        port = sbtest.free_port()
        public = "https://127.0.0.1:%d" % port
        for name in ("i1", "i2"):
            ingresses.append(Ingress(env={"SB_INGRESS_ID": name, "SB_PUBLIC_URL": public,
                                          "SB_HTTP_MAX_CONN_PER_IP": "0"}, log_name="ingress-" + name).start())
        i1, i2 = ingresses
        nginx = Nginx(binary, runtime, _conf(runtime, port, cert, key, ["127.0.0.1:%d" % i.port for i in ingresses]),
                      port)
        nginx.start()
        ctx = client_context(cert)
        hooks = [sbload.make_webhook(tag, i, public, kind="twilio-sms") for i in range(3 * PHASE)]
        phases = {}

        phases["both up"] = _post_all(nginx, ctx, hooks[:PHASE])
        split = (len(_journaled(i1, tag)), len(_journaled(i2, tag)))

        i2.kill9()
        phases["i2 killed"] = _post_all(nginx, ctx, hooks[PHASE:2 * PHASE])
        i2_after_kill = len(_journaled(i2, tag))

        i2.env.pop("TWILIO_AUTH_TOKEN")
        i2.start()
        assert i2.post_twilio("/twilio/messages", "MessageSid=SMx")[0] == 503  # what nginx will meet
        time.sleep(5.5)  # README's fail_timeout: nginx tries i2 again
        phases["i2 answers 503"] = _post_all(nginx, ctx, hooks[2 * PHASE:])
        i2_503 = i2.metrics().get('sb_http_requests_total{route="twilio_messages",code="503"}', 0)

        for ingress in ingresses:
            assert ingress.stop() == 0
            ingress.check_log(allow_errors=("TWILIO_AUTH_TOKEN is not set",) if ingress is i2 else ())
        in_i1, in_i2 = _journaled(i1, tag), _journaled(i2, tag)
        print("  nginx %s, README's block: %s" % (binary, phases))
        print("  journaled i1=%d i2=%d (both up: i1=%d i2=%d; i2 after its kill %d); 503s i2 answered nginx=%d"
              % (len(in_i1), len(in_i2), split[0], split[1], i2_after_kill, i2_503))
        for name, seen in phases.items():
            assert seen == {200: PHASE}, (name, seen)
        assert split[0] > 0 and split[1] > 0, split
        assert sum(split) == PHASE, split
        assert len(in_i2) == i2_after_kill == split[1]
        assert i2_503 > 0, "nginx never tried the restarted i2: the 503 path was not exercised"
        assert sorted(in_i1 + in_i2) == sorted(w.key for w in hooks)

        nginx.stop()
        assert nginx.proc.returncode == 0, (nginx.proc.returncode, nginx.log_text())
        errors = [line for line in nginx.log_text().splitlines() if "[emerg]" in line or "[alert]" in line]
        assert not errors, errors
    finally:
        if nginx:
            nginx.stop()
        for ingress in ingresses:
            ingress.cleanup()
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    sbtest.run_tests([test_readme_nginx_two_ingresses])
