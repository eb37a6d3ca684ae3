"""Fault: an fdatasync that hangs (a dying disk) holds no HTTP worker past its bound.

The ingress runs with tests/fault/sb_eio_shim.c preloaded and a pool of
THREADS workers. First one commit is made slow (2.5 s) so that THREADS - 1
webhooks pile up in the writer's queue; they are taken as one batch, and
that batch's fdatasync hangs HANG_MS. Every worker then waits on a commit
that will not end soon. Each webhook must still be answered (503: the
events may still be stored, PostgreSQL dedupes the provider's retry)
within ANSWER_BOUND_S of being sent, /readyz must say 503 while the sync
hangs and 200 again after it, and /healthz must answer during the hang.
Before the fix a taken request waited 2 x 10 s + 120 s and /readyz stayed
200.
"""

import subprocess
import threading
import time

import sbtest
from sbtest import Ingress
from test_fault_journal_slow import account_update, post

SHIM = sbtest.os.path.join(sbtest.BUILD, "tests", "libsb_eio_shim.so")
THREADS = 16
SLOW_MS = 2500        # the first commit: long enough for the rest to queue
HANG_MS = 30000       # the batch's fdatasync
ANSWER_BOUND_S = 14 + 4   # the writer's bound from a request's start, plus slack
READY_STALL_S = 3 + 3     # /readyz turns 503 this soon after the sync started


def get(ingress, path, timeout):
    try:
        return ingress.request("GET", path, timeout=timeout)[0]
    except OSError:
        return None


def test_hung_sync_bounded():
    asan = sbtest.os.environ.get("ASAN_OPTIONS", "")
    ingress = Ingress(env={"SB_HTTP_THREADS": str(THREADS)})
    control = sbtest.os.path.join(ingress.tmp, "slow-on")
    shim_log = sbtest.os.path.join(ingress.tmp, "shim.log")
    ingress.env.update({
        "LD_PRELOAD": SHIM,
        "SB_EIO_SHIM_FILE": control,
        "SB_EIO_SHIM_CALLS": "fdatasync",
        "SB_EIO_SHIM_SLEEP_MS": str(SLOW_MS),
        "SB_EIO_SHIM_LOG": shim_log,
        "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0",
    })
    try:
        assert sbtest.os.path.exists(SHIM), "build the shim first: %s" % SHIM
        ingress.start()
        tag = "hang%d" % int(time.time())
        answers = {}

        def send(i):
            answers[i] = post(ingress, account_update("%s-%d" % (tag, i)), timeout=ANSWER_BOUND_S + 10)

        with open(control, "w") as f:
            f.write("file %d\n" % SLOW_MS)
        t0 = time.time()
        threads = [threading.Thread(target=send, args=(0,))]
        threads[0].start()
        time.sleep(0.5)   # request 0 is in the slow commit
        with open(control, "w") as f:
            f.write("file %d\n" % HANG_MS)   # the next sync hangs
        for i in range(1, THREADS):
            threads.append(threading.Thread(target=send, args=(i,)))
            threads[-1].start()
        # the hung batch's sync starts when request 0's commit ends
        deadline = time.time() + SLOW_MS / 1000 + 10
        hang_started = None
        while time.time() < deadline and hang_started is None:
            try:
                with open(shim_log) as f:
                    lines = [l for l in f.read().splitlines() if l.startswith("sleep ")]
            except OSError:
                lines = []
            if len(lines) >= 2:
                hang_started = time.time()
            time.sleep(0.05)
        assert hang_started is not None, "the hung sync never started"
        sbtest.os.unlink(control)   # later syncs are fast again
        # readiness and liveness while the sync hangs
        ready_503_at = None
        health_ok = 0
        health_tries = 0
        health_longest = 0.0
        hang_end = hang_started + HANG_MS / 1000
        while time.time() < hang_end - 2:
            if ready_503_at is None and get(ingress, "/readyz", 2) == 503:
                ready_503_at = time.time() - hang_started
            if time.time() - hang_started > ANSWER_BOUND_S:
                began = time.time()
                health_tries += 1
                if get(ingress, "/healthz", 2) == 200:
                    health_ok += 1
                health_longest = max(health_longest, time.time() - began)
            time.sleep(0.5)
        for t in threads:
            t.join()
        # after the hang: ready again, and a webhook is stored
        ready_again_at = None
        deadline = time.time() + 20
        while time.time() < deadline:
            if get(ingress, "/readyz", 2) == 200:
                ready_again_at = time.time() - hang_end
                break
            time.sleep(0.2)
        after, _ = post(ingress, account_update(tag + "-after"), timeout=10)
        times = sorted(answers[i][1] for i in range(1, THREADS))
        statuses = [answers[i][0] for i in range(1, THREADS)]
        assert ingress.stop() == 0
        out = subprocess.run([sbtest.CLI, "journal", "--json", ingress.journal],
                             capture_output=True, timeout=60)
        journal = sum(1 for line in out.stdout.decode().splitlines() if tag + "-" in line)
        print("  FAULT hung fdatasync (%d ms, %d workers): first=%s after %.1fs; batch of %d "
              "answered %s in %.1f..%.1fs (bound %ds); readyz 503 %s s after the hang began, "
              "200 again %s s after it ended; healthz %d/%d answered during the hang, "
              "longest %.1fs; after=%s; journal=%d"
              % (HANG_MS, THREADS, answers[0][0], answers[0][1], THREADS - 1,
                 {s: statuses.count(s) for s in set(statuses)}, times[0], times[-1],
                 ANSWER_BOUND_S,
                 "%.1f" % ready_503_at if ready_503_at is not None else "never",
                 "%.1f" % ready_again_at if ready_again_at is not None else "never",
                 health_ok, health_tries, health_longest, after, journal), flush=True)
        assert answers[0][0] == 200, answers[0]
        assert all(s is not None for s in statuses), "unanswered within %ds: %s" % (
            ANSWER_BOUND_S + 10, statuses)
        assert times[-1] <= ANSWER_BOUND_S, "slowest answer %.1fs" % times[-1]
        assert all(s == 503 for s in statuses), statuses
        assert ready_503_at is not None and ready_503_at <= READY_STALL_S, ready_503_at
        assert ready_again_at is not None
        assert health_tries > 0 and health_ok == health_tries, (health_ok, health_tries)
        assert after == 200, after
        # the hung batch was stored after all (the 503s said it might be)
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        assert journal == THREADS + 1, journal
        ingress.check_log(allow_errors=("may still be stored",))
    finally:
        ingress.cleanup()


if __name__ == "__main__":
    sbtest.run_tests([test_hung_sync_bounded])
