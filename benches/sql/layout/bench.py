#!/usr/bin/env python3
"""Times queries (a), (b), (d) on a generated history with DataFusion (configured like
vigil-queries' History) and DuckDB (like benches/sql/duckdb_bench.py), interleaved.

Usage: bench.py DATA [--label L] [--hive date,sensor_type] [--sort sensor_id,ts]
                [--cfg NAME:key=val;key=val ...] [--runs 5] [--queries a,b,d]
A --cfg makes one more DataFusion session with those settings on top of the project's
(several --cfg compare knobs in the same run). Special keys: schema=plain (Utf8 not Utf8View),
type=dict (sensor_type read as Dictionary(Int32, Utf8)), ts=naive (ts declared
Timestamp(ms) without tz: measures date_trunc's fast path), part=dict (partition cols as
Dictionary(UInt16, Utf8)). Prints one JSON line per (config, query) and a table.
"""
import argparse
import json
import statistics
import time

import duckdb
import pyarrow as pa
from datafusion import SessionConfig, SessionContext, col

QUERIES = {
    "a": "SELECT sensor_id, asset_id, sensor_type, value, unit, ts FROM readings WHERE sensor_id = 'asset-0017-vibration' AND ts >= TIMESTAMP '2026-01-03 00:00:00+00:00' AND ts < TIMESTAMP '2026-01-03 00:00:00+00:00' + INTERVAL '1 day' ORDER BY ts",
    "b": "SELECT sensor_id, date_trunc('hour', ts) AS hour, avg(value) AS mean FROM readings WHERE asset_id = 'asset-0017' AND ts >= TIMESTAMP '2026-01-02 00:00:00+00:00' AND ts < TIMESTAMP '2026-01-02 00:00:00+00:00' + INTERVAL '7 days' GROUP BY 1, 2 ORDER BY 1, 2",
    "d": "SELECT sensor_type, count(*) AS readings FROM readings GROUP BY sensor_type ORDER BY sensor_type",
}

FILE_SCHEMA = [
    ("reading_id", pa.string(), False), ("sensor_id", pa.string(), False), ("asset_id", pa.string(), False),
    ("sensor_type", pa.string(), False), ("value", pa.float64(), False), ("unit", pa.string(), False),
    ("ts", pa.timestamp("ms", tz="UTC"), False), ("quality", pa.float64(), True), ("metadata", pa.string(), True),
    ("source", pa.dictionary(pa.int32(), pa.string()), False), ("source_offset", pa.uint64(), False),
]


def df_session(data, hive, sort, opts):
    opts = dict(opts)
    special = {k: opts.pop(k) for k in ("schema", "type", "part", "ts") if k in opts}
    cfg = (SessionConfig().with_information_schema(True).with_target_partitions(2)
           .set("datafusion.execution.collect_statistics", "true")
           .set("datafusion.execution.parquet.pushdown_filters", "true")
           .set("datafusion.execution.parquet.reorder_filters", "true"))
    for k, v in opts.items():
        cfg = cfg.set(k if k.startswith("datafusion.") else "datafusion." + k, v)
    ctx = SessionContext(cfg)
    ctx.sql("SET datafusion.runtime.list_files_cache_limit = '0'").collect()  # project: listing not cached
    fields = []
    for name, ty, null in FILE_SCHEMA:
        if name in hive:
            continue
        if name == "ts" and special.get("ts") == "naive":
            ty = pa.timestamp("ms")  # only to measure date_trunc's tz-less fast path
        if name == "sensor_type" and special.get("type") == "dict":
            ty = pa.dictionary(pa.int32(), pa.string())
        elif ty == pa.string() and special.get("schema") != "plain":
            ty = pa.string_view()
        fields.append(pa.field(name, ty, null))
    pty = {"dict": pa.dictionary(pa.uint16(), pa.string()), "view": pa.string_view()}.get(special.get("part"), pa.string())
    ctx.register_listing_table("readings", f"{data}/readings/", table_partition_cols=[(h, pty) for h in hive],
                               file_extension=".parquet", schema=pa.schema(fields),
                               file_sort_order=[[col(c).sort(ascending=True, nulls_first=False) for c in sort]])
    return ctx


def duck_session(data, threads=2):
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    depth = "/*" * data_depth(data)
    con.execute(f"CREATE VIEW readings AS SELECT * FROM read_parquet('{data}/readings{depth}/*.parquet', hive_partitioning = true)")
    return con


def data_depth(data):
    import glob
    return 2 if glob.glob(f"{data}/readings/*/sensor_type=*") else 1


def run_df(ctx, q):
    return sum(b.num_rows for b in ctx.sql(q).collect())


def run_duck(con, q):
    r = con.sql(q)
    t = r.to_arrow_table() if hasattr(r, "to_arrow_table") else r.fetch_arrow_table()
    return t.num_rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--label", default="")
    p.add_argument("--hive", default="date")
    p.add_argument("--sort", default="sensor_id,ts")
    p.add_argument("--cfg", action="append", default=[])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--queries", default="a,b,d")
    p.add_argument("--no-duck", action="store_true")
    p.add_argument("--pause", type=float, default=0.3)
    a = p.parse_args()
    hive = [h for h in a.hive.split(",") if h]
    sort = a.sort.split(",")
    engines = []
    if not a.no_duck:
        engines.append(("duckdb", lambda q, c=duck_session(a.data): run_duck(c, q)))
    cfgs = a.cfg or ["df:"]
    for c in cfgs:
        name, _, kv = c.partition(":")
        opts = dict(x.split("=", 1) for x in kv.split(";") if x)
        engines.append((name, lambda q, c=df_session(a.data, hive, sort, opts): run_df(c, q)))
    results = {}
    for qn in a.queries.split(","):
        q = QUERIES[qn]
        rows = {}
        for name, run in engines:  # warm-up
            rows[name] = run(q)
        times = {name: [] for name, _ in engines}
        for _ in range(a.runs):
            for name, run in engines:
                time.sleep(a.pause)  # let the previous engine's threads go idle
                t = time.perf_counter()
                run(q)
                times[name].append((time.perf_counter() - t) * 1000)
        for name, _ in engines:
            med = statistics.median(times[name])
            results[(name, qn)] = med
            print(json.dumps({"label": a.label, "engine": name, "query": qn, "median_ms": round(med, 1),
                              "min_ms": round(min(times[name]), 1), "rows": rows[name],
                              "times": [round(x) for x in times[name]]}), flush=True)
        if len(set(rows.values())) > 1:
            print(f"ROW COUNTS DIFFER for {qn}: {rows}", flush=True)
    print(f"## {a.label}  {a.data}")
    for name, _ in engines:
        if name == "duckdb":
            continue
        parts = []
        for qn in a.queries.split(","):
            dfm, dk = results[(name, qn)], results.get(("duckdb", qn))
            parts.append(f"{qn}: {dfm:7.1f} / {dk:6.1f} = {dfm / dk:4.2f}" if dk else f"{qn}: {dfm:7.1f}")
        print(f"   {name:24} " + "   ".join(parts), flush=True)


if __name__ == "__main__":
    main()
