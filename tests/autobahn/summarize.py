#!/usr/bin/env python3
"""Summarize an Autobahn fuzzingclient report (index.json) for tickrelay.

Usage: summarize.py REPORT_DIR [--expected FILE] [--json OUT] [--note TEXT]

Counting rule: a case passes only if its behavior is OK or INFORMATIONAL
*and* its closing behavior is OK or INFORMATIONAL. NON-STRICT, FAILED,
WRONG CODE, UNCLEAN, FAILED BY CLIENT, NO_CLOSE, and cases listed in
--expected but absent from the report (runner stopped early, server died)
all count as failed, except NON-STRICT cases listed with a reason in
allowed-non-strict.txt (each explained in docs/testing.md); UNIMPLEMENTED counts
as skipped. The last line printed
is the one CI reads: `conformance: N passed, N failed, N skipped`.
Exits 1 if anything failed or nothing ran.
"""
import argparse
import json
import os
import re
import sys

PASS = {"OK", "INFORMATIONAL"}
COLUMNS = ["ok", "non-strict", "informational", "unimplemented", "failed"]


def case_key(case_id):
    return [int(p) for p in case_id.split(".")]


def classify(entry):
    if entry is None:
        return "failed"
    behavior, close = entry.get("behavior"), entry.get("behaviorClose")
    if behavior == "UNIMPLEMENTED":
        return "unimplemented"
    if behavior == "NON-STRICT" and close in PASS:
        return "non-strict"
    if behavior in PASS and close in PASS:
        return "ok" if behavior == "OK" else "informational"
    return "failed"


def detail(report_dir, entry):
    """Why a case did not pass, from its per-case JSON report."""
    if entry is None:
        return "not run (runner stopped early or server unreachable)"
    text = "%s/%s" % (entry.get("behavior"), entry.get("behaviorClose"))
    try:
        with open(os.path.join(report_dir, entry["reportfile"])) as f:
            case = json.load(f)
        desc = " ".join(re.sub(r"<[^>]*>", "", case.get("description", "")).split())
        text += ": " + (desc[:90] + "..." if len(desc) > 90 else desc)
        if entry.get("behavior") != "NON-STRICT":  # its result text says nothing
            text += " -> %s | %s" % (case.get("result", ""), case.get("resultClose", ""))
    except (KeyError, OSError, ValueError):
        pass
    return " ".join(text.split())[:240]


def allowed_non_strict():
    """Case id -> reason, from allowed-non-strict.txt beside this file."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "allowed-non-strict.txt")
    allowed = {}
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                cid, _, why = line.strip().partition(" ")
                allowed[cid] = why
    return allowed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report_dir")
    ap.add_argument("--expected", help="file with one expected case id per line")
    ap.add_argument("--json", help="write a machine-readable summary here")
    ap.add_argument("--note", default="", help="free text stored in the JSON")
    args = ap.parse_args()

    results = {}
    try:
        with open(os.path.join(args.report_dir, "index.json")) as f:
            index = json.load(f)
    except (OSError, ValueError) as exc:
        print("no usable index.json in %s (%s)" % (args.report_dir, exc))
        index = {}
    agents = sorted(index)
    for agent in agents:  # one agent in practice; merged defensively
        results.update(index[agent])

    ids = set(results)
    if args.expected:
        with open(args.expected) as f:
            ids |= {line.strip() for line in f if line.strip()}

    allowed = allowed_non_strict()
    groups, failures, excused = {}, [], []
    for cid in sorted(ids, key=case_key):
        outcome = classify(results.get(cid))
        row = groups.setdefault(cid.split(".")[0], dict.fromkeys(COLUMNS, 0))
        row[outcome] += 1
        if outcome == "non-strict" and cid in allowed:
            excused.append(cid)
        elif outcome in ("failed", "non-strict"):
            failures.append(
                {"id": cid, "outcome": outcome,
                 "detail": detail(args.report_dir, results.get(cid))})

    total = dict.fromkeys(COLUMNS, 0)
    for row in groups.values():
        for col in COLUMNS:
            total[col] += row[col]
    passed = total["ok"] + total["informational"] + len(excused)
    failed = total["non-strict"] - len(excused) + total["failed"]
    skipped = total["unimplemented"]

    fmt = "%-7s %6s %6s %11s %14s %14s %7s"
    print(fmt % ("group", "cases", "ok", "non-strict", "informational",
                 "unimplemented", "failed"))
    for name in sorted(groups, key=int):
        row = groups[name]
        print(fmt % ((name, sum(row.values())) + tuple(row[c] for c in COLUMNS)))
    print(fmt % (("all", len(ids)) + tuple(total[c] for c in COLUMNS)))

    if excused:
        print("\nnon-strict, accepted (tests/autobahn/allowed-non-strict.txt, docs/testing.md):")
        for cid in excused:
            print("  %-9s %s" % (cid, allowed[cid]))

    ran = [f for f in failures if f["id"] in results]
    missing = [f["id"] for f in failures if f["id"] not in results]
    if failures:
        print("\nnot passed (%d):" % len(failures))
        for item in ran[:60]:
            print("  %-9s %s" % (item["id"], item["detail"]))
        if len(ran) > 60:
            print("  ... %d more in the JSON summary" % (len(ran) - 60))
        if missing and not results:
            print("  all %d cases not run: no report (see the error above)"
                  % len(missing))
        elif missing:
            print("  %d cases not run (runner stopped early or server gone), "
                  "%s .. %s; %s probably hung or crashed the server"
                  % (len(missing), missing[0], missing[-1], missing[0]))

    if args.json:
        summary = {
            "agents": agents,
            "note": args.note,
            "report_dir": os.path.abspath(args.report_dir),
            "totals": {"passed": passed, "failed": failed, "skipped": skipped},
            "by_outcome": total,
            "groups": groups,
            "failures": failures,
            "accepted_non_strict": excused,
        }
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")

    print("conformance: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed or not ids else 0


if __name__ == "__main__":
    sys.exit(main())
