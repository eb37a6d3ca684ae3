"""CPU accounting of the dispatcher benchmark (bench/dispatcher/run.sh): one
snapshot of the machine's busy CPU time and of the benchmark's own
processes, so that the report can say how much of the machine other
programs used during a step.

    cpu.py PID...

prints "wall_s busy_s pid:cpu_s ...": wall clock, CPU time all CPUs spent
busy since boot (/proc/stat: everything but idle and iowait), and the CPU
time of each of the given processes and their descendants (/proc/PID/stat
utime + stime). Between two snapshots, the benchmark's share is the growth of
each process in the second (a process born in between counts whole); one
that ended in between is lost (PostgreSQL's short-lived autovacuum workers).
Python 3 standard library only.
"""

import os
import sys
import time


def main():
    tck = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    busy = sum(fields[:8]) - fields[3] - fields[4]
    stats = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                text = f.read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        # rest[1] is ppid; utime and stime are fields 14 and 15 of the line
        stats[int(name)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    ours = set(int(p) for p in sys.argv[1:] if p.isdigit() and int(p) in stats)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                grew = True
    print("%.3f %.2f %s" % (time.time(), busy / tck,
                            " ".join("%d:%.2f" % (p, stats[p][1] / tck) for p in sorted(ours))))


if __name__ == "__main__":
    main()
