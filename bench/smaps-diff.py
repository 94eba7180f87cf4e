#!/usr/bin/env python3
"""RSS growth per mapping between two copies of /proc/PID/smaps, per unit.

    bench/smaps-diff.py PREFIX N     # reads PREFIX.before and PREFIX.after

Mappings are matched by their start address (a heap or an arena that grew keeps its
start); prints each mapping whose RSS changed, in kB and in bytes per unit (N units,
e.g. the clients `client-idle --smaps PREFIX` added), and the total.
"""
import re
import sys


def parse(path):
    maps, cur = {}, None
    for line in open(path):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split()
            cur = parts[0].split("-")[0]
            maps[cur] = [parts[5] if len(parts) > 5 else "[anon]", parts[0], 0]
        elif line.startswith("Rss:") and cur is not None:
            maps[cur][2] = int(line.split()[1])
    return maps


def main():
    prefix, n = sys.argv[1], int(sys.argv[2])
    before, after = parse(prefix + ".before"), parse(prefix + ".after")
    total = 0
    for start in sorted(set(before) | set(after)):
        b = before.get(start, ["", "-", 0])
        a = after.get(start, ["", "-", 0])
        d = a[2] - b[2]
        if d:
            total += d
            name = a[0] or b[0]
            print(f"{name:28} {b[1]:>27} -> {a[1]:>27} {d:+8} kB {d * 1024 / n:+8.1f} B")
    print(f"{'total':28} {'':>58} {total:+8} kB {total * 1024 / n:+8.1f} B")


if __name__ == "__main__":
    main()
