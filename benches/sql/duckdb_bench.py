"""Times the same queries with DuckDB on the same Parquet files (benches/sql.sh).

Usage: duckdb_bench.py DATA_DIR QUERIES_FILE [RUNS=5] [THREADS=2]
One warm-up run, then RUNS timed runs; results fetched as Arrow; one JSON line per query.
"""
import json
import sys
import time

import duckdb

data, qfile = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute("SET TimeZone = 'UTC'")
for t in ["readings", "anomalies"]:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}/*/*.parquet', hive_partitioning = true)")
queries, name = [], None
for line in open(qfile):
    line = line.rstrip("\n")
    if line.startswith("-- "):
        name = line[3:].strip()
    elif line.strip() and name:
        queries.append((name, line))
        name = None
for name, sql in queries:
    times, rows = [], 0
    for i in range(runs + 1):
        t = time.perf_counter()
        res = con.execute(sql)
        rows = (res.to_arrow_table() if hasattr(res, "to_arrow_table") else res.fetch_arrow_table()).num_rows
        if i > 0:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(json.dumps({"engine": "duckdb", "query": name, "median_ms": round(times[len(times) // 2], 2), "min_ms": round(times[0], 2), "rows": rows}))
