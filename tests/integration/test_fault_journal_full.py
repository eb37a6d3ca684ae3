"""Fault 5: the journal's disk fills under load, then space returns.

The ingress runs under a file size limit (prlimit --fsize=N:unlimited), so
its journal segment cannot grow past N bytes: writes fail with EFBIG, as
they fail with ENOSPC on a full disk. Three phases, each a concurrent load
across providers and kinds:
1. filling: the journal takes webhooks until the limit; from then on the
   ingress answers 503 (a smaller group commit may still fit in what is
   left: such a 200 is durable, and is counted and printed);
2. full: the limit is lowered to the segment's size, so not one more byte
   fits: every webhook is answered 503, never 200;
3. space returns (prlimit --pid raises the limit): /readyz says 200 by
   itself and every webhook is answered 200 again.
Then: `switchboard journal` reads every record (no damage reported), the
sequence numbers are consecutive from 1, the journal holds exactly the
acknowledged webhooks once each, and the dispatcher stored exactly the
acknowledged ones (none that got a 503) and answered each message once.
"""

import glob
import json
import os
import subprocess
import time

import sbload
import sbtest
from sbtest import Postgres, Stack

PG = None
LIMIT = 400000


def set_fsize(pid, soft):
    subprocess.run(["prlimit", "--pid", str(pid), "--fsize=%s:unlimited" % soft], check=True)


def segment_size(journal):
    return os.path.getsize(sorted(glob.glob(os.path.join(journal, "*.sbj")))[-1])


def test_journal_disk_full():
    tag = "fk5"
    stack = Stack(PG, callbacks=False, ingress_env={"SB_JOURNAL_SEGMENT_BYTES": "64m"})
    try:
        stack.sandbox.start()
        sbtest.wait_http(stack.sandbox_port, proc=stack.sandbox)
        stack.ingress.start(prefix_cmd=["prlimit", "--fsize=%d:unlimited" % LIMIT, "--"])
        stack.start_dispatcher()
        pid = stack.ingress.proc.pid
        # not scaled: the first phase must reach the limit (records are ~600 bytes)
        n1, n2, n3 = 1500, 600, 600
        hooks1 = sbload.make_webhooks(tag, n1, stack.public_url)
        hooks2 = sbload.make_webhooks(tag, n2, stack.public_url, start=n1)
        hooks3 = sbload.make_webhooks(tag, n3, stack.public_url, start=n1 + n2)
        hooks = hooks1 + hooks2 + hooks3

        # 1. filling
        load1 = sbload.Load(stack.ingress.port, hooks1, threads=8).run()
        s1 = load1.by_status()
        assert set(s1) == {200, 503}, "filling: expected 200 then 503: %s" % s1
        order = [status for _, _, status in sorted(load1.answers)]
        first_503 = order.index(503)
        fit_after = order[first_503:].count(200)
        full_size = segment_size(stack.ingress.journal)
        assert full_size <= LIMIT, full_size
        readyz_full = sbload.http_status(stack.ingress.port, "/readyz")

        # 2. full: not one more byte
        set_fsize(pid, full_size)
        load2 = sbload.Load(stack.ingress.port, hooks2, threads=8).run()
        s2 = load2.by_status()
        assert s2 == {503: n2}, "full: expected only 503: %s" % s2
        assert segment_size(stack.ingress.journal) == full_size

        # 3. space returns
        set_fsize(pid, "unlimited")
        deadline = time.time() + 5
        while sbload.http_status(stack.ingress.port, "/readyz") != 200 and time.time() < deadline:
            time.sleep(0.1)
        readyz_back = sbload.http_status(stack.ingress.port, "/readyz")
        load3 = sbload.Load(stack.ingress.port, hooks3, threads=8).run()
        s3 = load3.by_status()
        assert s3 == {200: n3}, "space back: expected only 200: %s" % s3

        acked = load1.acked() + load3.acked()
        sbload.settle(stack, tag, hooks, [w.key for w in acked])
        counts = sbload.Counts(stack, tag, hooks, acked)
        stack.dispatcher.stop()
        assert stack.ingress.stop() == 0
        out = subprocess.run([sbtest.CLI, "journal", "--json", stack.ingress.journal], capture_output=True,
                             timeout=60)
        records = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
        seqs = [int(r["seq"]) for r in records]
        ours = [sbload.event_key(r) for r in records if tag in (sbload.event_key(r) or "")]
        refused = s1[503] + n2
        sbload.report("journal disk full", counts.line(
            "refused_503=%d (filling %d, full %d) fit_after_first_503=%d journal_records=%d seqs=1..%d "
            "segment_bytes_at_full=%d limit=%d readyz_full=%s readyz_back=%s"
            % (refused, s1[503], n2, fit_after, len(records), seqs[-1] if seqs else 0, full_size, LIMIT,
               readyz_full, readyz_back)))
        print("  kinds: " + sbload.kinds_line(hooks))
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        assert b"corrupt" not in out.stderr and b"damaged" not in out.stderr, out.stderr.decode()[-2000:]
        assert seqs == list(range(1, len(records) + 1)), "journal seqs not consecutive from 1"
        assert sorted(ours) == sorted(w.key for w in acked), \
            "journal holds %d of ours, %d acknowledged" % (len(ours), len(acked))
        counts.check()
        assert counts.stored == len(acked) and counts.replies == len(counts.reply_wanted)
        assert readyz_back == 200, readyz_back
        assert sbload.outbox_bad(stack) == 0
        stack.check_logs()
        stack.ingress.check_log(allow_errors=("journal",))
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_journal_disk_full])
    finally:
        PG.close()
