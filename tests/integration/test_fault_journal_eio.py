"""Fault: the journal's fdatasync and directory fsync fail with EIO.

The ingress runs with tests/fault/sb_eio_shim.c preloaded (LD_PRELOAD):
while the test's control file exists, fdatasync/fsync fail with EIO (on
segment files, or on the journal directory, as the file says), and the bytes
written since the last good sync are overwritten with zeros, as the kernel
may drop dirty pages after a failed writeback and clear the error. Small
segments make commits rotate often, so the directory is synced often.

Under a concurrent load the fault is switched on and off a few times per
kind. Then the ingress is killed with -9 and started again, and:
- some webhooks were answered 503 during the faults, and 200 after them;
- `switchboard journal` holds every webhook answered 200, exactly once, and
  none answered 503 (a 503 with its event kept would be stored twice after
  the provider's retry); it reads without damage, seqs consecutive from 1;
- no segment that a sync failed on was written again: every record in such
  a file (same inode) was received before the failure (the shim's log);
- the restarted ingress takes webhooks again, and they are in the journal.
"""

import glob
import json
import os
import struct
import subprocess
import threading
import time

import sbload
import sbtest

SHIM = os.path.join(sbtest.BUILD, "tests", "libsb_eio_shim.so")


def segment_seqs(path):
    """The seqs of the good records in one segment file, in file order."""
    with open(path, "rb") as f:
        data = f.read()
    seqs, off = [], 52
    while off + 16 <= len(data):
        size, _, seq = struct.unpack_from("<IIQ", data, off)
        if size > len(data) - off - 16 or seq == 0:
            break
        seqs.append(seq)
        off += 16 + size
    return seqs


def journal(dir_):
    out = subprocess.run([sbtest.CLI, "journal", "--json", dir_], capture_output=True, timeout=60)
    records = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    return out, records


def toggle(control, kinds, on_s, off_s, stop):
    """Switches the fault on and off until stop is set: returns how many times."""
    times = 0
    while not stop.is_set():
        for kind in kinds:
            with open(control, "w") as f:
                f.write(kind + "\n")
            time.sleep(on_s)
            os.unlink(control)
            times += 1
            time.sleep(off_s)
            if stop.is_set():
                break
    return times


def test_journal_eio():
    tag = "eio6"
    ingress = sbtest.Ingress()
    control = os.path.join(ingress.tmp, "eio-on")
    shim_log = os.path.join(ingress.tmp, "eio-shim.log")
    asan = os.environ.get("ASAN_OPTIONS", "")
    ingress.env.update({
        "LD_PRELOAD": SHIM,
        "SB_EIO_SHIM_FILE": control,
        "SB_EIO_SHIM_DROP": "1",
        "SB_EIO_SHIM_LOG": shim_log,
        "SB_JOURNAL_SEGMENT_BYTES": "16384",
        # the shim comes before the sanitizer's runtime in the library list
        "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0",
    })
    try:
        assert os.path.exists(SHIM), "build the shim first: %s" % SHIM
        ingress.start()
        n1, n2 = 1200, 300
        hooks1 = sbload.make_webhooks(tag, n1, sbtest.PUBLIC_URL)
        hooks2 = sbload.make_webhooks(tag, n2, sbtest.PUBLIC_URL, start=n1)

        # 1. load while the fault comes and goes (segment files, then the directory)
        load1 = sbload.Load(ingress.port, hooks1, threads=8, rate=150).start()
        stop = threading.Event()
        result = {}
        t = threading.Thread(target=lambda: result.update(
            toggles=toggle(control, ["file", "dir", "any"], 0.3, 0.7, stop)))
        t.start()
        load1.join()
        stop.set()
        t.join()
        if os.path.exists(control):
            os.unlink(control)
        s1 = load1.by_status()
        # after the faults: the journal takes webhooks again
        deadline = time.time() + 5
        while sbload.http_status(ingress.port, "/readyz") != 200 and time.time() < deadline:
            time.sleep(0.1)
        tail = sbload.Load(ingress.port, hooks2[:50], threads=4).run()

        # 2. kill -9, start again, more webhooks
        ingress.kill9()
        ingress.start()
        load2 = sbload.Load(ingress.port, hooks2[50:], threads=4).run()
        assert ingress.stop() == 0

        with open(shim_log) as f:
            injected = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in f if line.strip()]
        out, records = journal(ingress.journal)
        by_id = {}
        for r in records:
            by_id.setdefault(sbload.event_key(r), []).append(r)
        acked = load1.acked() + tail.acked() + load2.acked()
        refused = [w for w in hooks1 + hooks2 if (load1.status.get(w.index) if w.index < n1 else None) == 503]
        lost = [w.key for w in acked if w.key not in by_id]
        twice = [w.key for w in acked if len(by_id.get(w.key, [])) > 1]
        kept_503 = [w.key for w in refused if w.key in by_id]
        seqs = [int(r["seq"]) for r in records]
        received = {int(r["seq"]): int(r.get("received_at_ms", 0)) for r in records}

        # no failed segment written again: every record in it came before the failure
        rewritten = 0
        failed_files = {}
        for i in injected:
            if i["kind"] == "file" and i["path"].endswith(".sbj"):
                failed_files.setdefault((i["path"], int(i["ino"])), int(i["ms"]))
        for (path, ino), at in failed_files.items():
            # the same file still there (a fresh segment may reuse a removed one's name)
            if os.path.exists(path) and os.stat(path).st_ino == ino:
                rewritten += sum(1 for s in segment_seqs(path) if received.get(s, 0) > at)
        eio_file = sum(1 for i in injected if i["kind"] == "file")
        eio_dir = sum(1 for i in injected if i["kind"] == "dir")
        sbload.report("journal eio", (
            "acknowledged=%d refused_503=%d statuses=%s tail=%s after_restart=%s journal_records=%d "
            "lost=%d twice=%d refused_but_kept=%d records_after_failure_in_failed_segment=%d "
            "failed_segments=%d eio_file=%d eio_dir=%d toggles=%d segments=%d seqs=1..%d")
            % (len(acked), len(refused), s1, tail.by_status(), load2.by_status(), len(records),
               len(lost), len(twice), len(kept_503), rewritten, len(failed_files), eio_file, eio_dir,
               result.get("toggles", 0), len(glob.glob(os.path.join(ingress.journal, "*.sbj"))),
               seqs[-1] if seqs else 0))
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        assert b"corrupt" not in out.stderr and b"damaged" not in out.stderr, out.stderr.decode()[-2000:]
        assert eio_file > 0 and eio_dir > 0, "the shim injected no fault: %s" % injected[:3]
        assert s1.get(503, 0) > 0 and s1.get(200, 0) > 0, "expected 200s and 503s: %s" % s1
        assert tail.by_status() == {200: 50}, tail.by_status()
        assert load2.by_status() == {200: n2 - 50}, load2.by_status()
        assert not lost, "acknowledged but not in the journal: %s" % lost[:5]
        assert not twice, "in the journal twice: %s" % twice[:5]
        assert not kept_503, "answered 503 but in the journal: %s" % kept_503[:5]
        assert rewritten == 0, "a segment was written again after a failed sync"
        assert seqs == list(range(1, len(records) + 1)), "journal seqs not consecutive from 1"
        assert len(records) == len(acked), (len(records), len(acked))
        ingress.check_log(allow_errors=("journal",))
    except AssertionError:
        lines = [l for l in ingress.log_text().splitlines() if " info " not in l]
        print("---- ingress log (not info) ----\n" + "\n".join(lines[-40:]))
        raise
    finally:
        ingress.cleanup()


if __name__ == "__main__":
    sbtest.run_tests([test_journal_eio])
