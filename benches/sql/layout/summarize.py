#!/usr/bin/env python3
"""Pools the timed runs of every repetition in the given bench output files (JSON lines) and
prints, per label, the pooled median ms of DataFusion and DuckDB and their ratio, with the
number of runs pooled and the spread of the per-repetition ratios.
Usage: summarize.py results/layouts*.txt"""
import json, statistics, sys
from collections import defaultdict
times = defaultdict(list)
reps = defaultdict(list)
order = []
for f in sys.argv[1:]:
    for line in open(f):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        k = (r["label"], r["engine"], r["query"])
        if r["label"] not in order:
            order.append(r["label"])
        times[k] += r["times"]
        reps[k].append(r["median_ms"])
qs = ["a", "b", "d"]
print(f"{'layout':34} " + "  ".join(f"{q}: DF / Duck = ratio (rep ratios)".ljust(44) for q in qs))
for label in order:
    engines = sorted({e for (l, e, q) in times if l == label and e != "duckdb"})
    for e in engines:
        cells = []
        for q in qs:
            d, k = times.get((label, e, q)), times.get((label, "duckdb", q))
            if not d or not k:
                cells.append("".ljust(44)); continue
            md, mk = statistics.median(d), statistics.median(k)
            rr = sorted(a / b for a, b in zip(reps[(label, e, q)], reps[(label, "duckdb", q)]))
            cells.append(f"{md:6.1f} / {mk:6.1f} = {md / mk:4.2f} ({rr[0]:.2f}-{rr[-1]:.2f}, n={len(d)})".ljust(44))
        name = label if e == "df" else f"{label}[{e}]"
        print(f"{name:34} " + "  ".join(cells))
