"""The verdict of one Autobahn testsuite run, for run.sh (fuzzingclient: the suite tests
our server) and run_client.sh (fuzzingserver: the suite tests our client).

    python verdict.py NAME OUT RC [AGENT]

NAME names the calling script in messages; OUT is the run's folder (wstest.log,
reports/); RC the exit status of what ran the cases (wstest, or our client); AGENT, in
fuzzingserver mode, the agent whose results count (all agents otherwise).

Prints the count of each behavior and every case that is not OK (with its close
behavior, the suite's reasons and the close code). Exit status: 0 when no case is
FAILED or NON-STRICT, 1 when some are, 2 when the run itself broke (a nonzero RC, no
results, a case started but missing from the report, or a case report file missing).
"""
import collections
import json
import os
import sys

name, out, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
agent = sys.argv[4] if len(sys.argv) > 4 else None
reports = os.path.join(out, "reports")
log = open(os.path.join(out, "wstest.log"), errors="replace").read()
started = [l.split()[4] for l in log.splitlines() if l.startswith("Running test case ID ")]
index = os.path.join(reports, "index.json")
results = {}
if os.path.exists(index):
    for a, cs in json.load(open(index)).items():
        if agent is None or a == agent:
            results.update(cs)
if "Traceback" in log:
    print("%s: wstest logged a Python traceback (see %s/wstest.log)" % (name, out), file=sys.stderr)

key = lambda c: [int(x) for x in c.split(".")]
order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
counts = collections.Counter(v["behavior"] for v in results.values())
if results:
    for b in order + sorted(set(counts) - set(order)):
        print("%-13s %d" % (b, counts.get(b, 0)))
    print("%-13s %d" % ("total", len(results)))
missing = [c for c in started if c not in results]
# Every case in the index has a report file of its own; without it the run is incomplete.
missing += [c for c in results if not os.path.exists(os.path.join(reports, results[c]["reportfile"]))]
bad = 0
for c in sorted(results, key=key):
    v = results[c]
    if v["behavior"] == "OK" and v["behaviorClose"] == "OK":
        continue
    r = json.load(open(os.path.join(reports, v["reportfile"]))) if c not in missing else {}
    print("  %-7s %-13s close %-13s %s | %s (close code %s)"
          % (c, v["behavior"], v["behaviorClose"], r.get("result"), r.get("resultClose"), v.get("remoteCloseCode")))
    if v["behavior"] in ("FAILED", "NON-STRICT") or v["behavior"] not in order:
        bad += 1
planned = [int(l.split()[3]) for l in log.splitlines() if l.startswith("Ok, will run ")]
if planned and planned[0] != len(results):
    print("%s: %d cases planned, %d in the report" % (name, planned[0], len(results)), file=sys.stderr)
    missing = missing or ["?"]
if rc != 0 or not results or missing:
    if missing:
        print("%s: cases missing from the report: %s" % (name, " ".join(missing)), file=sys.stderr)
    print("%s: the run did not complete (exit %d; see %s)" % (name, rc, out), file=sys.stderr)
    sys.exit(2)
sys.exit(1 if bad else 0)
