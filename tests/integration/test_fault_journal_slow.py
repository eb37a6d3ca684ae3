"""Fault: a disk slower than the HTTP worker's deadline; no duplicate after a 503.

The ingress runs with tests/fault/sb_eio_shim.c preloaded: while the test's
control file exists, fdatasync sleeps SLEEP_MS (longer than the worker's
10 s journal deadline) before it really syncs. Two Meta changes without a
provider id (account updates: they dedupe only by journal position) are
posted: A is taken by the writer and is in the slow commit; B waits in the
queue behind it. As a provider would, the test re-posts whatever is not
answered 200 until it is. Then it counts each change's records in the
journal (`switchboard journal`) and in PostgreSQL's events (the dispatcher
reads the journal): each must be there exactly once. A 503 for A while its
commit went on stored it twice: once from the slow commit, once from the
retry.
"""

import json
import subprocess
import threading
import time

import sbtest
from sbtest import Postgres, Stack

PG = None
SHIM = sbtest.os.path.join(sbtest.BUILD, "tests", "libsb_eio_shim.so")
SLEEP_MS = 12000  # under the writer's 14 s answer bound, over its 10 s queue bound


def account_update(tag):
    doc = {"object": "whatsapp_business_account",
           "entry": [{"id": "102290129340398", "changes": [{
               "field": "account_update",
               "value": {"messaging_product": "whatsapp",
                         "metadata": {"display_phone_number": "15550001111",
                                      "phone_number_id": "106540352242922"},
                         "event": "ACCOUNT_UPDATE", "ban_info": {"waba_ban_state": tag}}}]}]}
    return json.dumps(doc).encode()


def post(ingress, body, timeout):
    """(status or None, seconds)."""
    started = time.time()
    try:
        status, _, _ = ingress.request(
            "POST", "/meta/whatsapp", body,
            {"Content-Type": "application/json",
             "X-Hub-Signature-256": sbtest.meta_signature(sbtest.META_SECRET, body)}, timeout=timeout)
    except OSError:
        status = None
    return status, time.time() - started


def test_slow_disk_no_duplicate():
    stack = Stack(PG, callbacks=False)
    control = sbtest.os.path.join(stack.ingress.tmp, "slow-on")
    asan = sbtest.os.environ.get("ASAN_OPTIONS", "")
    stack.ingress.env.update({
        "LD_PRELOAD": SHIM,
        "SB_EIO_SHIM_FILE": control,
        "SB_EIO_SHIM_CALLS": "fdatasync",
        "SB_EIO_SHIM_SLEEP_MS": str(SLEEP_MS),
        "SB_EIO_SHIM_LOG": sbtest.os.path.join(stack.ingress.tmp, "shim.log"),
        "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0",
    })
    try:
        assert sbtest.os.path.exists(SHIM), "build the shim first: %s" % SHIM
        stack.start()
        tag = "slow%d" % int(time.time())
        bodies = {"A": account_update(tag + "A"), "B": account_update(tag + "B")}
        first = {}

        def send(name):
            first[name] = post(stack.ingress, bodies[name], timeout=SLEEP_MS / 1000 + 60)

        with open(control, "w") as f:
            f.write("file\n")
        ta = threading.Thread(target=send, args=("A",))
        ta.start()
        time.sleep(1.0)   # A is in the slow commit now
        tb = threading.Thread(target=send, args=("B",))
        tb.start()
        time.sleep(1.0)   # B waits behind it; later syncs are fast again
        sbtest.os.unlink(control)
        ta.join()
        tb.join()
        # the provider retries what was not answered 200
        retries = {}
        for name in ("A", "B"):
            status = first[name][0]
            retries[name] = 0
            deadline = time.time() + 60
            while status != 200 and time.time() < deadline:
                retries[name] += 1
                status, _ = post(stack.ingress, bodies[name], timeout=30)
                if status != 200:
                    time.sleep(0.5)
            assert status == 200, "%s never answered 200" % name
        # the dispatcher stores what the journal holds
        def stored_count(name):
            return int(stack.scalar("SELECT count(*) FROM events WHERE "
                                    "position(convert_to('%s%s', 'UTF8') in payload) > 0" % (tag, name)))
        deadline = time.time() + 30
        while min(stored_count("A"), stored_count("B")) < 1 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        stored = {name: stored_count(name) for name in ("A", "B")}
        stack.dispatcher.stop()
        assert stack.ingress.stop() == 0
        out = subprocess.run([sbtest.CLI, "journal", "--json", stack.ingress.journal],
                             capture_output=True, timeout=60)
        lines = out.stdout.decode().splitlines()
        journal = {name: sum(1 for line in lines if tag + name in line) for name in ("A", "B")}
        print("  FAULT slow disk (fdatasync %d ms): A first=%s after %.1fs retries=%d journal=%d stored=%d; "
              "B first=%s after %.1fs retries=%d journal=%d stored=%d"
              % (SLEEP_MS, first["A"][0], first["A"][1], retries["A"], journal["A"], stored["A"],
                 first["B"][0], first["B"][1], retries["B"], journal["B"], stored["B"]), flush=True)
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        assert journal == {"A": 1, "B": 1}, "journal: %s" % journal
        assert stored == {"A": 1, "B": 1}, "PostgreSQL: %s" % stored
        assert first["A"][0] == 200, "A answered %s while its commit went on" % first["A"][0]
        stack.check_logs()
        # B's withdrawal is the one error expected; A's wait is a warning
        stack.ingress.check_log(allow_errors=("did not take the request",))
        assert "waited for its verdict" in stack.ingress.log_text()
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_slow_disk_no_duplicate])
    finally:
        PG.close()
