#!/usr/bin/env python3
"""Turns criterion's estimates for the protocol-core suite into markdown tables.

Usage: bench-table.py TARGET_DIR/criterion

Reads every `<group>/<function>/<size>/new/{benchmark,estimates}.json` that criterion
wrote, takes the median time per iteration and the declared throughput (bytes), and
prints one table for the byte-throughput groups (GiB/s) and one for the handshake (ns).
The goal column applies the "Protocol core" goal of docs/BENCHMARKS.md (Goals) to the
decode groups: ringwire >= 1.5x the faster peer at every size, and >= 50% of memcpy for
frames of 16 KiB and more.
"""

import json
import os
import sys

GROUPS = ["decode_text", "decode_binary", "encode_server", "encode_client", "mask"]
PEERS = ["tungstenite", "fastwebsockets"]
GIB = float(1 << 30)
LARGE = 16 * 1024


def load(root):
    """{(group, function, size or None): (median ns, throughput bytes or None)}"""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        ns = est["median"]["point_estimate"]
        tp = (bench.get("throughput") or {}).get("Bytes")
        size = bench.get("value_str")
        key = (bench["group_id"], bench["function_id"], int(size) if size else None)
        out[key] = (ns, tp)
    return out


def size_label(n):
    if n >= 1 << 20:
        return f"{n >> 20} MiB"
    if n >= 1 << 10:
        return f"{n >> 10} KiB"
    return f"{n} B"


def gibs(r):
    if r is None or r[1] is None:
        return None
    ns, tp = r
    return tp / (ns * 1e-9) / GIB


def fmt(v):
    return "n/a" if v is None else f"{v:.2f}"


def byte_table(data):
    lines = [
        "| group | size | ringwire | ringwire+recv-copy | tungstenite | fastwebsockets | memcpy "
        "| ringwire / best peer | ringwire % of memcpy | goal met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for group in GROUPS:
        sizes = sorted({k[2] for k in data if k[0] == group and k[2] is not None})
        for size in sizes:
            def g(fn):
                return gibs(data.get((group, fn, size)))

            rw = g("ringwire")
            extra = g("ringwire+recv-copy")
            if group == "mask":
                # The second column holds the scalar reference in this group.
                extra = g("ringwire-scalar")
            peers = [p for p in (g(n) for n in PEERS) if p is not None]
            mc = g("memcpy")
            best = max(peers) if peers else None
            ratio = rw / best if rw and best else None
            pct = 100.0 * rw / mc if rw and mc else None
            if group.startswith("decode") and ratio is not None:
                ok = ratio >= 1.5 and (size < LARGE or (pct is not None and pct >= 50.0))
                goal = "yes" if ok else "**no**"
            else:
                goal = "(no target)"
            lines.append(
                f"| {group} | {size_label(size)} | {fmt(rw)} | {fmt(extra)} | "
                f"{fmt(g('tungstenite'))} | {fmt(g('fastwebsockets'))} | {fmt(mc)} | "
                f"{'n/a' if ratio is None else f'{ratio:.2f}x'} | "
                f"{'n/a' if pct is None else f'{pct:.0f}%'} | {goal} |"
            )
    return lines


def handshake_table(data):
    rows = sorted((k[1], v[0]) for k, v in data.items() if k[0] == "handshake")
    if not rows:
        return []
    lines = ["| handshake (parse + 101) | ns per request |", "|---|---:|"]
    order = ["ringwire", "tungstenite", "httparse", "accept_key"]
    rows.sort(key=lambda r: order.index(r[0]) if r[0] in order else len(order))
    for fn, ns in rows:
        lines.append(f"| {fn} | {ns:.0f} |")
    return lines


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    data = load(sys.argv[1])
    out = byte_table(data)
    hs = handshake_table(data)
    if hs:
        out += [""] + hs
    print("\n".join(out))


if __name__ == "__main__":
    main()
