#!/usr/bin/env python3
"""Ratios of one run of benches/short.sh: holdfast against nginx and the
ceiling, measured in the same run (absolute req/s depend on the machine).

    short_ratios.py KIT_OUT_DIR
"""
import glob
import json
import os
import statistics
import sys

TESTS = ["h1-1k", "h1-keys", "h2tls-1k", "h3-1k", "cold"]


def rows(out):
    for path in sorted(glob.glob(os.path.join(out, "*", "results.jsonl"))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        pass


def main():
    out = sys.argv[1]
    best = {}
    rss = {}
    for r in rows(out):
        test, target = r.get("test"), r.get("target")
        if test == "mem-after-keys" and r.get("rss_kb"):
            rss.setdefault(target, []).append(r["rss_kb"] / 1024)
            continue
        if test not in TESTS or not r.get("rps"):
            continue
        # The least disturbed attempt of each repetition (run.sh repeats noisy ones).
        key = (target, test, r.get("rep"))
        if key not in best or (r.get("other_cores") or 0) < (best[key].get("other_cores") or 0):
            best[key] = r
    rps = {}
    for (target, test, _), r in best.items():
        rps.setdefault((target, test), []).append(r["rps"])
    med = {k: statistics.median(v) for k, v in rps.items()}

    def ratio(a, b):
        return "-" if a is None or not b else "%.2f" % (a / b)

    def num(v):
        return "-" if v is None else "{:,.0f}".format(v)

    print("| test | holdfast req/s | nginx req/s | ceiling req/s | holdfast x ceiling | nginx x ceiling | holdfast / nginx |")
    print("|---|---|---|---|---|---|---|")
    for test in TESTS:
        h, n, c = (med.get((t, test)) for t in ("holdfast", "nginx", "ceiling"))
        print("| %s | %s | %s | %s | %s | %s | %s |" % (test, num(h), num(n), num(c), ratio(h, c), ratio(n, c), ratio(h, n)))
    h3, h2 = med.get(("holdfast", "h3-1k")), med.get(("holdfast", "h2tls-1k"))
    print()
    print("holdfast h3-1k / h2tls-1k: %s" % ratio(h3, h2))
    for target in ("holdfast", "nginx"):
        if target in rss:
            print("RSS after 10,000 x 4 KiB keys, %s: %.1f MiB" % (target, statistics.median(rss[target])))


if __name__ == "__main__":
    main()
