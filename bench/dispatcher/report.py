"""The tables of the dispatcher benchmark (bench/dispatcher/run.sh).

    report.py OUT

reads OUT/run.txt (the run's settings, key=value lines), the steps' folders
OUT/<step>/ and the baseline's lines OUT/base-*.txt, and prints Markdown.
A step's folder holds:

  step.txt     name, rate, seconds, rules, burst [, t_cont_ns]
  load.txt     sb-bench-load's SBLOAD summary line
  load.csv     per webhook: sid, n, t_due_ns, t_sent_ns, t_ack_ns, status (wall clock)
  samples.csv  every 200 ms: published (ingress), stored, replies queued, sends ok
  metrics.txt  the dispatcher's /metrics at the end
  sandbox.json the sandbox's request log (GET /_sandbox/requests)
  db.txt       events rows, outbox rows sent, mean payload bytes, then
               (xact_commit, wal_sync) before and after the step

Python 3 standard library only.
"""

import csv
import datetime
import json
import os
import re
import sys

REPLY_PREFIX = "Thanks for your message! We received: bench "


def kv_line(path):
    """key=value pairs of the first line (after a leading tag, if any)."""
    with open(path) as f:
        line = f.read().split("\n")[0]
    return dict(p.split("=", 1) for p in line.split() if "=" in p)


def kv_lines(path):
    out = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, _, v = line.rstrip("\n").partition("=")
                out[k] = v
    return out


def pct(values, p):
    """Nearest-rank percentile of sorted values."""
    if not values:
        return float("nan")
    i = max(1, min(len(values), int(p / 100.0 * len(values) + 0.999999)))
    return values[i - 1]


def metrics(path):
    m = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rstrip().rpartition(" ")
            m[name] = float(value)
    return m


def hist_quantile(m, name, q):
    """Upper bound of the bucket holding quantile q of a Prometheus histogram."""
    buckets = []
    for k, v in m.items():
        mm = re.match(re.escape(name) + r'_bucket\{le="([^"]+)"\}', k)
        if mm:
            buckets.append((float("inf") if mm.group(1) == "+Inf" else float(mm.group(1)), v))
    buckets.sort()
    total = m.get(name + "_count", 0)
    for le, c in buckets:
        if total and c >= q * total:
            return le
    return float("nan")


def rate_while(samples, key, cond):
    """Slope of column key over the sample intervals where cond holds at both
    ends: (per second, seconds), or (None, seconds) under one second."""
    dt = dv = 0
    for a, b in zip(samples, samples[1:]):
        if cond(a) and cond(b):
            dt += b["t"] - a["t"]
            dv += b[key] - a[key]
    if dt < 1e9:
        return None, dt / 1e9
    return dv / (dt / 1e9), dt / 1e9


def step(out, name, batch_max):
    d = os.path.join(out, name)
    with open(os.path.join(d, "step.txt")) as f:
        r = dict(p.split("=", 1) for p in f.read().split() if "=" in p)
    r["rate"] = int(r["rate"])
    r["rules"] = r.get("rules") == "yes"
    r["burst"] = r.get("burst") == "1"
    r["load"] = kv_line(os.path.join(d, "load.txt"))
    ack = {}
    first_due = None
    with open(os.path.join(d, "load.csv")) as f:
        for row in csv.DictReader(f):
            if first_due is None:
                first_due = int(row["t_due_ns"])
            if row["status"] == "200":
                ack[int(row["n"])] = int(row["t_ack_ns"])
    last_ack = max(ack.values()) if ack else 0
    r["total"] = total = len(ack)

    samples = []
    with open(os.path.join(d, "samples.csv")) as f:
        for row in csv.DictReader(f):
            s = {k: int(v) for k, v in row.items()}
            s["t"] = s.pop("t_ns")
            samples.append(s)
    zero = dict(samples[0])
    for s in samples:
        for k in ("published", "stored", "replies", "sends_ok"):
            s[k] -= zero[k]
    start = int(r["t_cont_ns"]) if r["burst"] else first_due
    done = next((s["t"] for s in samples if s["stored"] >= total), None)
    r["overall"] = total / ((done - start) / 1e9) if done and total and done > start else None

    def behind(s):
        return s["published"] - s["stored"] > 2 * batch_max and s["t"] >= start
    r["capacity"], r["behind_s"] = rate_while(samples, "stored", behind)
    # Longest time the stored count did not move while events were waiting
    # (after the start: a stopped dispatcher stores nothing, by design).
    stall = best = 0
    for a, b in zip(samples, samples[1:]):
        if a["t"] >= start and b["stored"] == a["stored"] and a["published"] > a["stored"]:
            stall += b["t"] - a["t"]
            best = max(best, stall)
        else:
            stall = 0
    r["stall"] = best / 1e9
    r["sends"], r["sends_s"] = rate_while(samples, "sends_ok",
                                          lambda s: s["replies"] - s["sends_ok"] > 200)

    m = metrics(os.path.join(d, "metrics.txt"))
    r["mean_batch"] = m.get("sb_store_batch_events_sum", 0) / max(1, m.get("sb_store_batch_events_count", 0))
    r["tx_p50"] = hist_quantile(m, "sb_store_write_seconds", 0.5) * 1000
    r["tx_p99"] = hist_quantile(m, "sb_store_write_seconds", 0.99) * 1000
    db = open(os.path.join(d, "db.txt")).read().split()
    r["events_rows"] = int(db[0])
    r["commits"] = r["syncs"] = None
    if len(db) >= 7:
        r["commits"] = int(db[5]) - int(db[3])
        r["syncs"] = int(db[6]) - int(db[4])

    # CPU: the machine's busy time over the step, the benchmark's share
    # (its processes and the load tool), and what remains: other programs.
    r["cpu_ours"], r["cpu_others"] = cpu_share(os.path.join(d, "cpu.txt"),
                                               float(r["load"].get("cpu_s", 0)))

    lat = []
    with open(os.path.join(d, "sandbox.json")) as f:
        reqs = json.load(f)
    if isinstance(reqs, dict):
        reqs = reqs.get("requests", [])
    for q in reqs:
        if q.get("status") not in (200, 201) or "params" not in q:
            continue
        body = dict(q["params"]).get("Body", "")
        if not body.startswith(REPLY_PREFIX):
            continue
        n = int(body[len(REPLY_PREFIX):])
        if n not in ack:
            continue
        # "2026-11-21T21:14:03.123Z": wall clock, milliseconds
        t = datetime.datetime.strptime(q["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        t = t.replace(tzinfo=datetime.timezone.utc)
        t_ns = int(t.timestamp()) * 10**9 + t.microsecond * 1000
        lat.append((t_ns - ack[n]) / 1e6)
    lat.sort()
    r["lat"] = lat
    return r


def cpu_share(path, own_cpu_s):
    """(benchmark %, others %) of the machine between two cpu.py lines."""
    try:
        with open(path) as f:
            lines = [line.split() for line in f][:2]
        (w0, b0), (w1, b1) = [(float(l[0]), float(l[1])) for l in lines]
        procs = [dict((int(p.split(":")[0]), float(p.split(":")[1])) for p in l[2:]) for l in lines]
    except (OSError, ValueError, IndexError):
        return None, None
    cap = (w1 - w0) * os.cpu_count()
    ours = sum(v - procs[0].get(pid, 0.0) for pid, v in procs[1].items()) + own_cpu_s
    return 100 * ours / cap, 100 * max(0.0, (b1 - b0) - ours) / cap


def f0(x):
    return "–" if x is None or x != x else "%.0f" % x


def f1(x):
    return "–" if x is None or x != x else "%.1f" % x


def ms(x):
    if x is None or x != x:
        return "–"
    return "%.0f" % x if x >= 1 else "%g" % x


def label(r):
    if r["burst"]:
        return "burst of %d%s" % (r["total"], ", no rules" if not r["rules"] else "")
    return "%d%s" % (r["rate"], " no rules" if not r["rules"] else "")


def main():
    out = sys.argv[1]
    run = kv_lines(os.path.join(out, "run.txt"))
    batch_max = int(run["batch_max"])
    names = ["r%s" % x for x in run["rates"].split()]
    names += sorted(n for n in os.listdir(out) if n.endswith("-norules") and n.startswith("r"))
    names += [n for n in ("burst", "burst-norules") if os.path.isdir(os.path.join(out, n))]
    steps = [step(out, n, batch_max) for n in names]
    rated = [r for r in steps if not r["burst"]]
    bursts = {("rules" if r["rules"] else "norules"): r for r in steps if r["burst"]}
    base = {}
    for n in sorted(os.listdir(out)):
        mm = re.match(r"base-(\d+)(-noreply)?\.txt$", n)
        if mm:
            base[(int(mm.group(1)), bool(mm.group(2)))] = kv_line(os.path.join(out, n))

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print("Run of %s on %d CPUs (%s), Linux %s; load average (1, 5, 15 min) at the start /"
          " at the end: %s." % (
              run.get("date") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              os.cpu_count(), cpu, os.uname().release, run["loadavg"]))
    print("Measured: %s." % run["source"])
    print("Command: `%s`" % run["command"])
    print("All on this machine: PostgreSQL %s (fsync on), the sandbox, the ingress (journal on %s,"
          " fdatasync on), the dispatcher (SB_BATCH_MAX=%d, echo rule), sb-bench-load (%s"
          " keep-alive connections, %s senders)." % (run["pg_version"], run["fs"], batch_max,
                                                     run["connections"], run["contacts"]))
    if run.get("fsync_ms"):
        p50, p99 = run["fsync_ms"].split()
        print("fdatasync after an 8 KiB append on that disk, before the run: p50 %s ms, p99 %s ms"
              " (500 samples)." % (p50, p99))
    print()
    print("Storing (events in PostgreSQL):")
    print()
    print("| offered /s | achieved /s | acked 200 | events rows | stored /s, all | stored /s while behind (s) | longest stall s | mean batch | tx p50 / p99 ms | commits / webhook | WAL fsyncs / webhook | CPU: benchmark / others |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in steps:
        l = r["load"]
        per = lambda x: "%.2f" % (x / r["total"]) if x is not None and r["total"] else "–"
        cpu = "%.0f%% / %.0f%%" % (r["cpu_ours"], r["cpu_others"]) if r["cpu_ours"] is not None else "–"
        print("| %s | %s | %s | %d | %s | %s | %.1f | %.1f | %s / %s | %s | %s | %s |" % (
            label(r),
            f0(float(l["achieved_rate"])), l["ok"], r["events_rows"], f0(r["overall"]),
            "%s (%.1f)" % (f0(r["capacity"]), r["behind_s"]) if r["capacity"] else "kept up",
            r["stall"], r["mean_batch"], ms(r["tx_p50"]), ms(r["tx_p99"]),
            per(r["commits"]), per(r["syncs"]), cpu))
    print()
    print("CPU: the share of the machine's %d CPUs, from the start of the load to the last event"
          " stored or reply sent, used by the benchmark's processes (PostgreSQL, sandbox, ingress,"
          " dispatcher, load tool, sampler) / by every other program on the machine." % os.cpu_count())
    print()
    print("Replying (from the ingress's 200 to the reply at the sandbox):")
    print()
    print("| offered /s | replies matched | replies sent /s while behind (s) | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rated:
        if not r["rules"]:
            continue
        lat = r["lat"]
        missing = r["total"] - len(lat)
        print("| %d | %d of %d%s | %s | %s | %s | %s | %s |" % (
            r["rate"], len(lat), r["total"], " (lower bounds: the rest not sent in time)" if missing else "",
            "%s (%.1f)" % (f0(r["sends"]), r["sends_s"]) if r["sends"] else "kept up",
            f1(pct(lat, 50)), f1(pct(lat, 90)), f1(pct(lat, 99)), f1(lat[-1] if lat else None)))
    print()
    print("Baseline (sb-bench-pqbase: the same rows, plain multi-row INSERTs, one transaction per"
          " batch, alone on the machine; with replies right after the burst, without right after"
          " the burst without rules):")
    print()
    print("| batch | rows | events | seconds | events/s | CPU: benchmark / others |")
    print("|---:|---|---:|---:|---:|---:|")
    for (b, noreply), v in sorted(base.items(), key=lambda x: (x[0][1], -x[0][0])):
        ours, others = cpu_share(os.path.join(out, "base-%d%s.cpu" % (b, "-noreply" if noreply else "")), 0)
        print("| %d | %s | %s | %s | %s | %s |" % (
            b, "events only" if noreply else "with replies", v["events"], v["seconds"],
            f0(float(v["events_per_s"])), "%.0f%% / %.0f%%" % (ours, others) if ours is not None else "–"))
    print()
    print("Goals (issue 3):")
    ref = base.get((batch_max, False))
    if ref:
        ref_rate = float(ref["events_per_s"])
        b = bursts.get("rules")
        cap = b and (b["capacity"] or b["overall"])
        if cap:
            print("- the dispatcher stores at least 50%% of the baseline's rate: %.0f/s catching up"
                  " a backlog of %d (echo rule, replies sent meanwhile) = %.0f%% of %.0f/s"
                  " (baseline, batch %d) → %s" % (cap, b["total"], 100 * cap / ref_rate, ref_rate,
                                                   batch_max, "yes" if cap >= 0.5 * ref_rate else "**no**"))
        top = max(rated, key=lambda r: r["capacity"] or r["overall"] or 0)
        print("  (under load, every rate: at most %s/s stored, at %d/s offered)" % (
            f0(top["capacity"] or top["overall"]), top["rate"]))
    for r in rated:
        if r["rate"] == 1000 and r["rules"]:
            p99 = pct(r["lat"], 99)
            print("- a reply leaves within 50 ms p99 at 1000 webhooks/s: %s ms → %s" % (
                f1(p99), "yes" if p99 <= 50 else "**no**"))
    nref = base.get((batch_max, True))
    b = bursts.get("norules")
    if nref and b and (b["capacity"] or b["overall"]):
        cap = b["capacity"] or b["overall"]
        print("- without rules (events only): %.0f/s catching up a backlog of %d = %.0f%% of the"
              " baseline without replies (%.0f/s)" % (cap, b["total"], 100 * cap / float(nref["events_per_s"]),
                                                      float(nref["events_per_s"])))
    problems = []
    for r in steps:
        l = r["load"]
        tag = label(r)
        if int(l["non200"]) or int(l["unanswered"]) or int(l["conn_errors"]):
            problems.append("%s: %s non-200, %s unanswered, %s connection errors" % (
                tag, l["non200"], l["unanswered"], l["conn_errors"]))
        if r["events_rows"] < r["total"]:
            problems.append("%s: %d acknowledged, %d events in PostgreSQL" % (tag, r["total"], r["events_rows"]))
        if r["rules"] and not r["burst"] and len(r["lat"]) != r["total"]:
            problems.append("%s: %d acknowledged, %d replies matched at the sandbox" % (
                tag, r["total"], len(r["lat"])))
        if int(l.get("retries", 0)):
            problems.append("%s: %s webhooks sent again on a new connection (the server closed"
                            " the first)" % (tag, l["retries"]))
        if int(l.get("waited", 0)):
            problems.append("%s: %s webhooks waited for a free connection (at most %s ms late)" % (
                tag, l["waited"], l["max_late_ms"]))
    print()
    print("Checks: " + ("; ".join(problems) if problems else
                        "every webhook answered 200 and stored; at every rate each one answered"
                        " by one reply at the sandbox; no webhook waited for a connection."))


if __name__ == "__main__":
    main()
