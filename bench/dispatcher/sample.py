"""Sample the counters of the dispatcher benchmark every 200 ms until a
stop file appears (bench/dispatcher/run.sh).

    sample.py DISPATCHER_PORT[,PORT...] INGRESS_PORT OUT.csv STOP_FILE

Columns: wall-clock ns; the ingress's sb_published_events_total; the
dispatcher's sb_events_stored_total, sb_replies_queued_total, sends
answered 2xx (sb_sends_total{outcome="sent"}, summed) and
sb_ingest_queue_events; with several dispatchers, each summed over
them. Python 3 standard library only.
"""

import os
import sys
import time
import urllib.request


def scrape(port):
    values = {}
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=2).read().decode()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def main():
    dport, iport, path, stop = sys.argv[1:5]
    with open(path, "w") as f:
        f.write("t_ns,published,stored,replies,sends_ok,queue\n")
        while not os.path.exists(stop):
            t = time.time_ns()
            try:
                d = {}
                for port in dport.split(","):
                    for k, v in scrape(port).items():
                        d[k] = d.get(k, 0) + v
                i = scrape(iport)
            except OSError:
                time.sleep(0.2)
                continue
            sends = sum(v for k, v in d.items()
                        if k.startswith("sb_sends_total{") and 'outcome="sent"' in k)
            f.write("%d,%d,%d,%d,%d,%d\n" % (
                t, i.get("sb_published_events_total", 0), d.get("sb_events_stored_total", 0),
                d.get("sb_replies_queued_total", 0), sends, d.get("sb_ingest_queue_events", 0)))
            f.flush()
            time.sleep(max(0.0, 0.2 - (time.time_ns() - t) / 1e9))


if __name__ == "__main__":
    main()
