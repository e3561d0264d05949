#!/usr/bin/env python3
"""EXPLAIN ANALYZE of one query on DataFusion, configured as in bench.py.
Usage: explain.py DATA QUERY(a|b|d) [--hive ..] [--sort ..] [--cfg key=val;...]"""
import argparse, sys
from bench import df_session, QUERIES
p = argparse.ArgumentParser(); p.add_argument("data"); p.add_argument("q")
p.add_argument("--hive", default="date"); p.add_argument("--sort", default="sensor_id,ts"); p.add_argument("--cfg", default="")
p.add_argument("--plain", action="store_true")
a = p.parse_args()
opts = dict(x.split("=", 1) for x in a.cfg.split(";") if x)
ctx = df_session(a.data, [h for h in a.hive.split(",") if h], a.sort.split(","), opts)
q = QUERIES.get(a.q, a.q)
ctx.sql(q).collect()
kw = "EXPLAIN " if a.plain else "EXPLAIN ANALYZE "
for b in ctx.sql(kw + q).collect():
    for row in b.to_pylist():
        print(row["plan"] if "plan" in row else row)
