#!/usr/bin/env python3
"""Turns the raw reports of bench/run-engine-matrix.sh into the markdown of the
"Engine" section of docs/BENCHMARKS.md.

    python3 bench/engine-table.py RESULTS_DIR [--doc docs/BENCHMARKS.md]

RESULTS_DIR holds per measurement `SERVER.SCENARIO.REPEAT.json` (the one JSON object of
`ringwire load --json`, the source of every figure), `.txt` (the text report, for people)
and `.cmd` (the exact commands), and `machine.*.txt`. A measurement without a readable
JSON report (the server did not start, the generator failed before reporting) is shown as
failed. With --doc the section's generated part (between the `<!-- engine-matrix:begin -->`
and `<!-- engine-matrix:end -->` markers, or the whole section body when they are absent)
is replaced; the rest of the file is left alone. Numbers of repeated runs are averaged,
and the spread of server CPU per message is shown.
"""

import json
import os
import re
import sys
from statistics import mean

SERVERS = ["ringwire", "ringwire-epoll", "ringwire-busy-poll", "fastwebsockets",
           "fastwebsockets-batch", "tokio-websockets", "tokio-tungstenite", "monoio-frame",
           "tokio-uring-frame"]
# ringwire-epoll (`serve --backend epoll`) and ringwire-busy-poll (`serve --busy-poll-us
# 50`, an opt-in trading CPU for latency, in the latency scenario only) are variants of
# ringwire, not peers.
PEERS = [s for s in SERVERS if not s.startswith("ringwire")]
# The goal's alternative to the peer ratio: within this factor of `kernel-floor --echo`.
FLOOR_FACTOR = 1.10
ECHO = {
    # scenario: (title, goal kind, CPU ratio goal)
    "c100x1x20": ("100 connections x 1 in flight x 20 B", "syscall", 1.3),
    "c1000x1x512": ("1,000 connections x 1 in flight x 512 B", "syscall", 1.3),
    "c100x16x32": ("100 connections x 16 in flight x 32 B", "batch", 1.3),
    "c100x16x4k": ("100 connections x 16 in flight x 4 KiB", "batch", 1.3),
    "c500x1x16k": ("500 connections x 1 in flight x 16 KiB", "batch", 1.3),
    "latency": ("1 connection x 1 in flight x 32 B (round-trip latency)", "latency", None),
}
BEGIN, END = "<!-- engine-matrix:begin -->", "<!-- engine-matrix:end -->"
# The text report notes run-queue wait only above this share of a core; the table too.
WAIT_NOTE_PERCENT = 5.0


def get(obj, *path):
    """obj[path[0]][path[1]]..., or None where a step is missing or null."""
    for key in path:
        if not isinstance(obj, dict) or obj.get(key) is None:
            return None
        obj = obj[key]
    return obj


def waited(cpu):
    """Run-queue wait of a CPU object in percent of a core, 0 when the report has no note."""
    w = get(cpu, "wait_percent_of_core") or 0.0
    return w if w > WAIT_NOTE_PERCENT else 0.0


def errors(report):
    return str(get(report, "errors", "total"))


def parse_echo(report):
    if get(report, "scenario") != "echo":
        return None
    srv, gen, rt = report.get("server_cpu"), report.get("generator_cpu"), report.get("round_trip")
    unanswered = report.get("unanswered") or 0
    return {
        "rate": report["msg_per_s"], "p50": get(rt, "p50_ns"), "p99": get(rt, "p99_ns"),
        "p999": get(rt, "p999_ns"), "cpu_pct": get(srv, "percent_of_core"),
        "cpu_per": get(srv, "ns_per_unit"), "srv_wait": waited(srv),
        "gen_pct": get(gen, "percent_of_threads"), "gen_wait": waited(gen),
        "errors": errors(report) + (f", {unanswered:,} unanswered" if unanswered else ""),
    }


def parse_floor(report):
    """`kernel-floor --echo --json`: the kernel's cost of the same echo, no server."""
    if get(report, "scenario") != "kernel-floor-echo":
        return None
    return {"cpu_per": report["cpu_ns_per_message"], "p50": get(report, "round_trip", "p50_ns"),
            "p99": get(report, "round_trip", "p99_ns"), "conns": report["connections"],
            "req": report["request_bytes"], "rep": report["reply_bytes"]}


def parse_idle(report):
    mem = get(report, "memory")
    if get(report, "scenario") != "idle" or get(mem, "bytes_per_connection") is None:
        return None
    return {
        "opened": report["opened"], "setup_rate": report["upgrades_per_s"],
        "rss0": mem["rss_before_bytes"], "rss1": mem["rss_after_bytes"],
        "per": mem["bytes_per_connection"],
        "per_upgrade": get(report, "server_cpu", "ns_per_unit"),
        "errors": errors(report),
    }


def parse_fanout(report):
    to_all = get(report, "to_all")
    if get(report, "scenario") != "fanout" or to_all is None:
        return None
    srv = report.get("server_cpu")
    return {
        "p50": to_all["p50_ns"], "p99": to_all["p99_ns"], "max": to_all["max_ns"],
        "delivered": report["delivered"], "expected": report["expected"],
        "publishes": report["published"], "cpu_per": get(srv, "ns_per_unit"),
        "cpu_pct": get(srv, "percent_of_core"), "errors": errors(report),
    }


def read_json(path):
    """The report object in `path`, or None when missing, empty or not a JSON object."""
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def load(results):
    runs = {}
    tags = set()
    for name in os.listdir(results):
        # Every measurement leaves a .txt (even "server did not start"); a .json when the
        # generator got as far as a report.
        m = re.fullmatch(r"((.+)\.([\w-]+)\.(\d+))\.(?:txt|json)", name)
        if m and not name.startswith("machine."):
            tags.add(m.groups())
    for tag, server, scenario, _ in sorted(tags):
        report = read_json(os.path.join(results, tag + ".json"))
        parse = (parse_floor if server == "floor" else parse_idle if scenario.startswith("idle")
                 else parse_fanout if scenario == "fanout" else parse_echo)
        runs.setdefault((server, scenario), []).append(parse(report) if report else None)
    return runs


def avg(rs, key):
    vals = [r[key] for r in rs if r and r.get(key) is not None]
    return mean(vals) if vals else None


def t(v):
    """A time in ns, human-readable."""
    if v is None:
        return "n/a"
    if v < 1e3:
        return f"{v:.0f} ns"
    if v < 1e6:
        return f"{v / 1e3:.1f} us"
    return f"{v / 1e6:.2f} ms"


def pct(v):
    return "n/a" if v is None else f"{v:.0f}%"


def k(v):
    return "n/a" if v is None else f"{v / 1e3:,.0f}k"


def spread(rs, key):
    vals = [r[key] for r in rs if r and r.get(key) is not None]
    if len(vals) < 2:
        return ""
    return f" ({t(min(vals))}-{t(max(vals))})"


def echo_section(runs, scenario, out):
    title, kind, goal = ECHO[scenario]
    rows = [(s, runs[(s, scenario)]) for s in SERVERS if (s, scenario) in runs]
    if not rows:
        return None
    out.append(f"**{title}**\n")
    out.append("| server | msg/s | server CPU per msg | server CPU | p50 | p99 | p99.9 "
               "| generator CPU | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for s, rs in rows:
        ok = [r for r in rs if r]
        if not ok:
            out.append(f"| {s} | failed | | | | | | | see raw report |")
            continue
        gen = pct(avg(ok, "gen_pct"))
        if avg(ok, "gen_wait") and avg(ok, "gen_wait") > 5:
            gen += f" (+{avg(ok, 'gen_wait'):.0f}% waiting)"
        srv = pct(avg(ok, "cpu_pct"))
        if avg(ok, "srv_wait") and avg(ok, "srv_wait") > 5:
            srv += f" (+{avg(ok, 'srv_wait'):.0f}% waiting)"
        errs = "/".join(r["errors"] for r in ok)
        out.append(f"| {s} | {k(avg(ok, 'rate'))} | {t(avg(ok, 'cpu_per'))}{spread(ok, 'cpu_per')} "
                   f"| {srv} | {t(avg(ok, 'p50'))} | {t(avg(ok, 'p99'))} | {t(avg(ok, 'p999'))} "
                   f"| {gen} | {errs} |")
    floor = [r for r in runs.get(("floor", scenario), []) if r]
    if floor:
        f0 = floor[0]
        out.append(f"| *kernel floor* ({f0['conns']:,} x {f0['req']} B in, {f0['rep']} B out: "
                   f"bare read + write, its own blocking client) | | "
                   f"{t(avg(floor, 'cpu_per'))}{spread(floor, 'cpu_per')} | | {t(avg(floor, 'p50'))} "
                   f"| {t(avg(floor, 'p99'))} | | | |")
    out.append("")
    # The verdict: ringwire against the best peer of this run.
    rw = [r for r in runs.get(("ringwire", scenario), []) if r]
    peers = {s: [r for r in runs.get((s, scenario), []) if r] for s in PEERS}
    peers = {s: rs for s, rs in peers.items() if rs}
    if not rw or not peers:
        return None

    def best(key, lowest=True):
        vals = {s: avg(rs, key) for s, rs in peers.items() if avg(rs, key) is not None}
        pick = (min if lowest else max)(vals, key=vals.get)
        return pick, vals[pick]

    verdict = []
    bp, bcpu = best("cpu_per")
    cpu_ratio = avg(rw, "cpu_per") / bcpu
    rp, brate = best("rate", lowest=False)
    rate_ratio = avg(rw, "rate") / brate
    if kind == "latency":
        lp50, b50 = best("p50")
        lp99, b99 = best("p99")
        met50, met99 = avg(rw, "p50") <= b50, avg(rw, "p99") <= b99
        verdict.append(("p50 <= best peer's", f"{t(avg(rw, 'p50'))} vs {t(b50)} ({lp50})",
                        f"{avg(rw, 'p50') / b50:.2f}x", met50))
        verdict.append(("p99 <= best peer's", f"{t(avg(rw, 'p99'))} vs {t(b99)} ({lp99})",
                        f"{avg(rw, 'p99') / b99:.2f}x", met99))
        for variant, label in (("ringwire-epoll", "on epoll"),
                               ("ringwire-busy-poll", "with `--busy-poll-us 50`")):
            v_runs = [r for r in runs.get((variant, scenario), []) if r]
            if not v_runs:
                continue
            for key, best_v, who in (("p50", b50, lp50), ("p99", b99, lp99)):
                v = avg(v_runs, key)
                verdict.append((f"{key} <= best peer's, {label}",
                                f"{t(v)} vs {t(best_v)} ({who})", f"{v / best_v:.2f}x",
                                v <= best_v))
    else:
        floor = [r for r in runs.get(("floor", scenario), []) if r]
        floor_cpu = avg(floor, "cpu_per") if floor else None
        met = cpu_ratio <= 1 / goal
        if floor_cpu:
            floor_ratio = avg(rw, "cpu_per") / floor_cpu
            verdict.append((f"server CPU per msg <= 1/{goal:g} of best peer's, or <= "
                            f"{FLOOR_FACTOR:.2f}x the kernel floor",
                            f"{t(avg(rw, 'cpu_per'))} vs {t(bcpu)} ({bp}); floor {t(floor_cpu)}",
                            f"{cpu_ratio:.2f}x; {floor_ratio:.2f}x floor",
                            met or floor_ratio <= FLOOR_FACTOR))
        else:
            verdict.append((f"server CPU per msg <= 1/{goal:g} of best peer's",
                            f"{t(avg(rw, 'cpu_per'))} vs {t(bcpu)} ({bp})", f"{cpu_ratio:.2f}x",
                            met))
    verdict.append(("msg/s >= best peer's", f"{k(avg(rw, 'rate'))} vs {k(brate)} ({rp})",
                    f"{rate_ratio:.2f}x", rate_ratio >= 1))
    return title, verdict


def idle_section(runs, out, scenario="idle"):
    rows = [(s, [r for r in runs[(s, scenario)] if r]) for s in SERVERS if (s, scenario) in runs]
    if not rows:
        return None
    if scenario == "idle":
        out.append("**Idle connections** (RSS growth of the server process from before the first "
                   "connection to 1 s after the last upgrade, divided by the connections)\n")
    else:
        out.append("**Idle connections, marginal** (`--baseline`: the RSS growth over the "
                   "connections opened after the first `IDLE_BASELINE` (1,000) were open, i.e. "
                   "without the server's fixed pools; the connections column counts all; diagnostic)\n")
    out.append("| server | connections | RSS before -> after | per connection | upgrades/s "
               "| server CPU per upgrade | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---|")
    mib = lambda b: f"{b / 1048576:.1f} MiB"  # noqa: E731
    for s, rs in rows:
        if not rs:
            out.append(f"| {s} | failed | | | | | see raw report |")
            continue
        out.append(f"| {s} | {avg(rs, 'opened'):,.0f} | {mib(avg(rs, 'rss0'))} -> {mib(avg(rs, 'rss1'))} "
                   f"| {avg(rs, 'per'):,.0f} B | {avg(rs, 'setup_rate'):,.0f} "
                   f"| {t(avg(rs, 'per_upgrade'))} | {'/'.join(r['errors'] for r in rs)} |")
    out.append("")
    rw = dict(rows).get("ringwire")
    if rw:
        per = avg(rw, "per")
        title = "Idle connections" + (" (marginal)" if scenario != "idle" else "")
        return title, [("<= 128 B userspace per idle connection", f"{per:,.0f} B",
                                     f"{per / 128:.1f}x the goal", per <= 128)]
    return None


def fanout_section(runs, out):
    rs = [r for r in runs.get(("ringwire", "fanout"), []) if r]
    if not rs:
        return None
    out.append("**Fan-out** (ringwire `serve --mode pubsub`; the peers have no pub/sub)\n")
    out.append("| server | subscribers x publishes | delivered | to all: p50 | p99 | max "
               "| server CPU per delivery | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rs:
        subs = r["expected"] // max(r["publishes"], 1)
        out.append(f"| ringwire | {subs:,} x {r['publishes']} | {r['delivered']:,} of {r['expected']:,} "
                   f"| {t(r['p50'])} | {t(r['p99'])} | {t(r['max'])} | {t(r['cpu_per'])} | {r['errors']} |")
    out.append("")
    p99 = avg(rs, "p99")
    mx = max(r["max"] for r in rs)
    complete = all(r["delivered"] == r["expected"] for r in rs)
    return "Fan-out", [("one message to all subscribers in <= 15 ms (p99 of publishes)",
                        f"p99 {t(p99)}, max {t(mx)}", f"{p99 / 15e6:.2f}x the budget",
                        p99 <= 15e6 and complete)]


def render(results):
    runs = load(results)
    machine = []
    for name in sorted(os.listdir(results)):
        if name.startswith("machine"):
            with open(os.path.join(results, name)) as f:
                machine.append("; ".join(f.read().strip().splitlines()))
    body, verdicts = [], []
    for scenario in ECHO:
        v = echo_section(runs, scenario, body)
        if v:
            verdicts.append(v)
    for fn in (idle_section, lambda r, b: idle_section(r, b, "idle-marginal"), fanout_section):
        v = fn(runs, body)
        if v:
            verdicts.append(v)
    out = [BEGIN, ""] + [f"Run: {m}." for m in machine] + [""]
    out.append("| scenario | goal | ringwire vs best peer | ratio | goal met |")
    out.append("|---|---|---|---:|---|")
    for title, vs in verdicts:
        for goal, what, ratio, met in vs:
            out.append(f"| {title} | {goal} | {what} | {ratio} | {'yes' if met else '**no**'} |")
    out.append("")
    out.extend(body)
    servers, loads = {}, {}
    for name in sorted(os.listdir(results)):
        m = re.fullmatch(r"(.+)\.([\w-]+)\.1\.cmd", name)
        if not m:
            continue
        with open(os.path.join(results, name)) as f:
            text = f.read()
        srv = re.search(r"^server: (.*)$", text, re.M).group(1)
        load_cmd = re.search(r"^load: (.*)$", text, re.M).group(1)
        srv = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", srv)
        load_cmd = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", load_cmd)
        load_cmd = re.sub(r"--server-pid \d+", "--server-pid $PID", load_cmd)
        if m.group(1) == "floor":
            servers[f"floor {m.group(2)}"] = srv
            continue
        servers.setdefault(m.group(1) + (" fanout" if m.group(2) == "fanout" else ""), srv)
        loads.setdefault(m.group(2), load_cmd)
    out.append("<details><summary>Exact commands of this run: each load command against each "
               "server, a fresh server process per measurement</summary>\n")
    out.append("```text")
    out.append("# servers (CPU 0)")
    out.extend(servers[s] for s in ["ringwire fanout"] + SERVERS if s in servers)
    out.append("# the kernel floor (measured on CPU 0, its own client on CPU 1)")
    out.extend(v for key, v in sorted(servers.items()) if key.startswith("floor "))
    out.append("# load (CPU 1); $PID is the server's pid, $PORT a fresh port")
    out.extend(loads[sc] for sc in list(ECHO) + ["idle", "idle-marginal", "fanout"] if sc in loads)
    out.append("```")
    out.append("</details>")
    out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


def write_doc(doc, table):
    with open(doc) as f:
        text = f.read()
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END) + 1
        text = text[:a] + table + text[b:]
    else:
        head = "## Engine\n"
        a = text.index(head) + len(head)
        nxt = text.find("\n## ", a)
        nxt = len(text) if nxt < 0 else nxt + 1
        text = text[:a] + "\n" + table + "\n" + text[nxt:]
    with open(doc, "w") as f:
        f.write(text)


def main():
    args = sys.argv[1:]
    doc = None
    if "--doc" in args:
        i = args.index("--doc")
        doc = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    table = render(args[0])
    if doc:
        write_doc(doc, table)
    sys.stdout.write(table)


if __name__ == "__main__":
    main()
