#!/usr/bin/env python3
"""fdatasync latency of a disk: append SIZE bytes to FILE and fdatasync, COUNT
times; print the p50 and p99 in ms ("0.12 0.34"). FILE is removed after.
Used by bench/run.sh and bench/dispatcher/run.sh.

    bench/fsync_probe.py FILE COUNT SIZE
"""
import os
import sys
import time


def main():
    path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lat = []
    try:
        for _ in range(count):
            os.write(fd, b"x" * size)
            t = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    print("%.2f %.2f" % (1000 * lat[len(lat) // 2], 1000 * lat[len(lat) * 99 // 100]))


if __name__ == "__main__":
    main()
