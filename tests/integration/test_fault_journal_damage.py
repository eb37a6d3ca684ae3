"""Fault 6: a damaged journal: a torn write at the end of the last segment
and a flipped byte in a middle record.

The journal is small segments (SB_JOURNAL_SEGMENT_BYTES=64k) of
length-prefixed, CRC-checked records: u32 length, u32 CRC, u64 seq, payload
after a 52-byte segment header. After a load is stored and answered, the
ingress and dispatcher stop and the test damages the files:
- a flipped byte in the payload of a record in the middle of an earlier
  segment (only readers see it: the ingress scans just the last segment);
- a flipped byte in the payload of a record in the middle of the last
  segment (the ingress's start-up scan sees it);
- a torn write: the next record's header and half its payload appended to
  the last segment, as a crash during a write leaves it (never
  acknowledged).
Checked: `switchboard journal` reads everything but the two damaged
records and reports each; the ingress starts, logs that it skipped the
corrupt record and truncated the torn tail, and resumes the sequence past
every seq the cut bytes could have held (ceil(bytes / 16), logged); new
webhooks are acknowledged and stored; the running dispatcher stores each
acknowledged webhook exactly once; and a new dispatcher on an empty
database replays the journal from seq 1 and stores everything except the
two damaged records (it counts them and the skipped seqs as missing):
nothing before the damage is lost.

A second test cuts the last segment in the middle of the last record,
which had been acknowledged and stored: the ingress truncates it (the
damage) and skips its seqs; the webhooks acknowledged after the restart
get new seqs (a reused seq would be dropped by the dispatcher as a
duplicate of the record it already has) and reach PostgreSQL once each.
"""

import glob
import json
import os
import struct
import subprocess

import sbload
import sbtest
from sbtest import Postgres, Process, Stack

PG = None
HEADER = 52
RECORD_HEADER = 16


def segments(journal):
    return sorted(glob.glob(os.path.join(journal, "*.sbj")))


def records_of(path):
    """[(seq, offset, payload size)] of a segment file."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    off = HEADER
    while off + RECORD_HEADER <= len(data):
        size, _crc, seq = struct.unpack_from("<IIQ", data, off)
        if off + RECORD_HEADER + size > len(data):
            break
        out.append((seq, off, size))
        off += RECORD_HEADER + size
    return out


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def journal_cli(journal):
    out = subprocess.run([sbtest.CLI, "journal", "--json", journal], capture_output=True, timeout=60)
    records = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    return out.returncode, records, out.stderr.decode()


def fresh_dispatcher(stack, name, rules="rules: []\n"):
    """Another dispatcher on an empty database of its own, with rules that
    never reply: it shows what a replay from seq 1 delivers."""
    db = stack.pg.create()
    rules_path = os.path.join(stack.tmp, name + "-rules.yaml")
    with open(rules_path, "w") as f:
        f.write(rules)
    port = sbtest.free_port()
    env = dict(stack.dispatcher.env, DATABASE_URL=db, SB_RULES=rules_path,
               SB_DISPATCHER_LISTEN="127.0.0.1:%d" % port,
               SB_DISPATCHER_PUB="tcp://127.0.0.1:%d" % sbtest.free_port())
    proc = Process(name, [sbtest.DISPATCHER], env, stack.tmp).start()
    try:
        sbtest.wait_http(port, "/readyz", proc=proc)
    except AssertionError:
        proc.proc.kill()
        proc.proc.wait()
        stack.pg.drop(db)
        raise
    return proc, db, port


def stored_in(db, tag):
    rows = Postgres.psql(db, "SELECT CASE WHEN provider_id <> '' THEN provider_id ELSE text END AS key, "
                             "count(*) FROM events WHERE provider_id LIKE '%%%s%%' "
                             "OR (provider_id = '' AND text LIKE '%s-%%') GROUP BY key" % (tag, tag))
    return {p: int(n) for p, n in rows}


def test_torn_write_and_flipped_bytes():
    tag = "fk6"
    stack = Stack(PG, callbacks=False, ingress_env={"SB_JOURNAL_SEGMENT_BYTES": "65536"})
    other = db2 = None
    try:
        stack.start()
        n1, n2 = sbload.scaled(800, 300), sbload.scaled(300, 100)
        hooks1 = sbload.make_webhooks(tag, n1, stack.public_url)
        hooks2 = sbload.make_webhooks(tag, n2, stack.public_url, start=n1)
        load1 = sbload.Load(stack.ingress.port, hooks1, threads=8).run()
        assert load1.by_status() == {200: n1}, load1.by_status()
        sbload.settle(stack, tag, hooks1, [w.key for w in hooks1])
        stack.dispatcher.stop()
        assert stack.ingress.stop() == 0

        segs = segments(stack.ingress.journal)
        assert len(segs) >= 3, "expected several segments, got %d" % len(segs)
        _, before, _ = journal_cli(stack.ingress.journal)
        by_seq = {int(r["seq"]): r for r in before}
        last_seq = max(by_seq)
        # a flipped byte in the middle record of the first segment
        first = records_of(segs[0])
        f_seq, f_off, f_size = first[len(first) // 2]
        flip_byte(segs[0], f_off + RECORD_HEADER + f_size // 2)
        # and in the middle record of the last segment
        last = records_of(segs[-1])
        assert len(last) >= 3, "the last segment has %d records" % len(last)
        g_seq, g_off, g_size = last[len(last) // 2]
        flip_byte(segs[-1], g_off + RECORD_HEADER + g_size // 2)
        # a torn write: the next record's header and half of its payload
        t_seq = last_seq + 1
        payload = b"\x0a" * 600
        with open(segs[-1], "ab") as f:
            f.write(struct.pack("<IIQ", len(payload), 0x12345678, t_seq) + payload[:300])
        damaged = {sbload.event_key(by_seq[f_seq]), sbload.event_key(by_seq[g_seq])}

        rc, after, err = journal_cli(stack.ingress.journal)
        assert rc == 0, err
        seqs = [int(r["seq"]) for r in after]
        want = [s for s in range(1, last_seq + 1) if s not in (f_seq, g_seq)]
        assert seqs == want, "switchboard journal read %d records, want %d" % (len(seqs), len(want))
        assert "corrupt record skipped" in err and ("seq=%d" % f_seq) in err and ("seq=%d" % g_seq) in err, err

        stack.ingress.start()
        log = stack.ingress.log_text()
        assert "journal corrupt record skipped" in log and ("seq=%d" % g_seq) in log, log[-3000:]
        # the cut tail's bytes could have held ceil(bytes / 16) records: their
        # seqs are never given out again (a consumer may have stored them)
        cut = [line for line in log.splitlines() if "journal torn tail truncated" in line]
        assert len(cut) == 1, log[-3000:]
        fields = dict(kv.split("=", 1) for kv in cut[0].split() if "=" in kv)
        torn_bytes = RECORD_HEADER + 300
        skipped = -(-torn_bytes // RECORD_HEADER)
        next_seq = t_seq + skipped
        assert (fields.get("seq"), fields.get("bytes"), fields.get("seqs_skipped"), fields.get("next_seq")) == \
            (str(t_seq), str(torn_bytes), str(skipped), str(next_seq)), cut[0]
        stack.start_dispatcher()
        load2 = sbload.Load(stack.ingress.port, hooks2, threads=8).run()
        assert load2.by_status() == {200: n2}, load2.by_status()
        rc, final, err = journal_cli(stack.ingress.journal)
        assert rc == 0, err
        seqs = [int(r["seq"]) for r in final]
        # the sequence resumes past the skipped seqs, consecutive from there
        assert seqs == want + list(range(next_seq, seqs[-1] + 1)), \
            "seqs after the restart: %s" % [s for s in seqs if s > last_seq - 3][:10]
        new_ids = [sbload.event_key(r) for r in final if int(r["seq"]) >= next_seq]
        assert {w.key for w in hooks2} <= set(new_ids)
        hooks = hooks1 + hooks2
        sbload.settle(stack, tag, hooks, [w.key for w in hooks])
        counts = sbload.Counts(stack, tag, hooks, hooks)

        # a new dispatcher, an empty database: a replay from seq 1
        other, db2, other_port = fresh_dispatcher(stack, "dispatcher-replay")
        expect2 = {w.key for w in hooks} - damaged
        sbload.wait_until(lambda: set(stored_in(db2, tag)) >= expect2, 120, "the replay from seq 1",
                          other.log_text)
        replayed = stored_in(db2, tag)
        missing_metric = sbload.metrics(other_port).get("sb_ingest_journal_missing_total", -1)
        sbload.report("journal torn write + flipped bytes", counts.line(
            "damaged_records=2 (seq %d in segment 1 of %d, seq %d in the last) torn_seq=%d "
            "seqs_skipped=%d replay_from_1_stored=%d replay_lost=%d replay_duplicates=%d "
            "replay_journal_missing=%d new_after_restart=%d"
            % (f_seq, len(segs), g_seq, t_seq, skipped, len(replayed), len(expect2 - set(replayed)),
               sum(n - 1 for n in replayed.values()), missing_metric, n2)))
        counts.check()
        assert counts.stored == n1 + n2
        assert set(replayed) == expect2, "the replay stored damaged records?! %s" % (set(replayed) - expect2)
        assert all(v == 1 for v in replayed.values())
        assert missing_metric == 2 + skipped, \
            "the replaying dispatcher counted %s missing records, want %d" % (missing_metric, 2 + skipped)
        assert sbload.outbox_bad(stack) == 0
        other.stop()
        stack.dispatcher.stop()
        stack.check_logs(allow=("journal records missing",))
        stack.ingress.stop()
        stack.ingress.check_log(allow_errors=("journal corrupt record skipped",))
    finally:
        if other is not None and other.proc.poll() is None:
            other.proc.kill()
            other.proc.wait()
        if db2 is not None:
            PG.drop(db2)
        stack.close()


def test_cut_acknowledged_tail():
    tag = "fk8"
    stack = Stack(PG, callbacks=False, ingress_env={"SB_JOURNAL_SEGMENT_BYTES": "65536"})
    try:
        stack.start()
        n1, n2 = sbload.scaled(300, 100), sbload.scaled(100, 50)
        hooks1 = sbload.make_webhooks(tag, n1, stack.public_url)
        hooks2 = sbload.make_webhooks(tag, n2, stack.public_url, start=n1)
        load1 = sbload.Load(stack.ingress.port, hooks1, threads=4).run()
        assert load1.by_status() == {200: n1}, load1.by_status()
        sbload.settle(stack, tag, hooks1, [w.key for w in hooks1])
        assert stack.ingress.stop() == 0
        # the last record, acknowledged and stored, loses its second half
        seg = segments(stack.ingress.journal)[-1]
        t_seq, t_off, t_size = records_of(seg)[-1]
        with open(seg, "r+b") as f:
            f.truncate(t_off + RECORD_HEADER + t_size // 2)
        cut_bytes = RECORD_HEADER + t_size // 2
        skipped = -(-cut_bytes // RECORD_HEADER)
        stack.ingress.start()
        cut = [line for line in stack.ingress.log_text().splitlines() if "journal torn tail truncated" in line]
        assert len(cut) == 1, stack.ingress.log_text()[-3000:]
        fields = dict(kv.split("=", 1) for kv in cut[0].split() if "=" in kv)
        assert (fields.get("seq"), fields.get("seqs_skipped"), fields.get("next_seq")) == \
            (str(t_seq), str(skipped), str(t_seq + skipped)), cut[0]
        # the dispatcher ran all along; new webhooks after the restart
        load2 = sbload.Load(stack.ingress.port, hooks2, threads=4).run()
        assert load2.by_status() == {200: n2}, load2.by_status()
        rc, records, err = journal_cli(stack.ingress.journal)
        assert rc == 0, err
        ids2 = {w.key for w in hooks2}
        new_seqs = sorted(int(r["seq"]) for r in records if sbload.event_key(r) in ids2)
        reused = [s for s in new_seqs if s <= t_seq]
        hooks = hooks1 + hooks2
        try:
            sbload.settle(stack, tag, hooks, [w.key for w in hooks], timeout=30)
        except AssertionError:
            pass  # counted below
        counts = sbload.Counts(stack, tag, hooks, hooks)
        in_pg = stack.scalar("SELECT CASE WHEN provider_id <> '' THEN provider_id ELSE text END "
                             "FROM events WHERE seq = %d" % t_seq)
        sbload.report("journal cut inside the last acknowledged record", counts.line(
            "cut_seq=%d cut_bytes=%d seqs_skipped=%d new_after_restart=%d first_new_seq=%d "
            "new_with_reused_seq=%d seq_%d_in_pg=%s"
            % (t_seq, cut_bytes, skipped, n2, new_seqs[0], len(reused), t_seq, in_pg)))
        if counts.lost:
            print("  dispatcher log tail:\n" + stack.dispatcher.log_text()[-1500:])
        counts.check()
        assert not reused and len(new_seqs) == n2 and new_seqs[0] >= t_seq + skipped, new_seqs[:3]
        # the cut record itself had been stored before the damage: still there once
        assert in_pg in {w.key for w in hooks1}, in_pg
        stack.dispatcher.stop()
        stack.check_logs(allow=("journal records missing",))
        stack.ingress.stop()
        stack.ingress.check_log()
    finally:
        stack.close()


if __name__ == "__main__":
    PG = Postgres()
    try:
        sbtest.run_tests([test_torn_write_and_flipped_bytes, test_cut_acknowledged_tail])
    finally:
        PG.close()
