#!/usr/bin/env python3
"""Ratios of one run of benches/short.sh: holdfast against each peer cache
(nginx, and Varnish and Traffic Server where installed) and the ceiling,
measured in the same run (absolute req/s depend on the machine).

    short_ratios.py KIT_OUT_DIR
"""
import glob
import json
import os
import statistics
import sys

TESTS = ["h1-1k", "h1-keys", "h2tls-1k", "h3-1k", "cold"]
PEERS = ["nginx", "varnish", "trafficserver"]


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
    peers = [p for p in PEERS if any(t == p for t, _ in med)]

    def ratio(a, b):
        return "-" if a is None or not b else "%.2f" % (a / b)

    def num(v):
        return "-" if v is None else "{:,.0f}".format(v)

    head = ["test", "holdfast req/s"] + ["%s req/s" % p for p in peers] + ["ceiling req/s", "holdfast x ceiling"]
    head += ["%s x ceiling" % p for p in peers] + ["holdfast / best peer"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for test in TESTS:
        h, c = med.get(("holdfast", test)), med.get(("ceiling", test))
        measured = [med.get((p, test)) for p in peers]
        best_peer = max((v for v in measured if v is not None), default=None)
        cells = [test, num(h)] + [num(v) for v in measured] + [num(c), ratio(h, c)]
        cells += [ratio(v, c) for v in measured] + [ratio(h, best_peer)]
        print("| " + " | ".join(cells) + " |")
    h3, h2 = med.get(("holdfast", "h3-1k")), med.get(("holdfast", "h2tls-1k"))
    print()
    print("holdfast h3-1k / h2tls-1k: %s" % ratio(h3, h2))
    for target in ["holdfast"] + peers:
        if target in rss:
            print("RSS after 10,000 x 4 KiB keys, %s: %.1f MiB" % (target, statistics.median(rss[target])))


if __name__ == "__main__":
    main()
