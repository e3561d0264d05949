#!/usr/bin/env python3
"""Generates a `readings` Parquet history like vigil's writer (connectors/src/history.rs).

Usage: gen.py OUT_DIR [options]   (see --help)

Data: 334 assets x 6 sensor types = 2,004 sensors, one reading every 15 s from
2026-01-01T00:00Z, N // 2004 ticks (100 M rows -> 49,900 ticks, 8.66 days). Stream order is
tick-major (like the simulator's JSON lines), source_offset = line number.

Layouts (files always inside DATA/readings/date=YYYY-MM-DD/, never crossing a day):
  brief     : 524,288 consecutive stream rows per file (~65 min of all sensors), each sorted
  pipeline  : what `vigil replay --workers 2` does: sensors hash-split over 2 workers, a file
              per worker cut at 1 h of event time (~240 k rows, 2 row groups); --span-hours
              changes the span (the 524,288-row cap is not applied here: pass spans that fit)
  day       : whole day, split into --files-per-day files by contiguous ranges of the sort key
  typepart  : date=.../sensor_type=.../ hive level (sensor_type not stored in the file)
  typefile  : one file per day and sensor_type (sensor_type stored), same folder
Writer settings mirror parquet-rs defaults used by the project: SNAPPY, data page v1, 1 MiB
pages capped at 20,000 rows, dictionary on except reading_id/value/ts/source_offset, page
index, sorting_columns metadata, ARROW:schema stored.
"""
import argparse
import os
import sys
import time
import zlib
from multiprocessing import Pool

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TYPES = ["temperature", "vibration", "pressure", "current", "rpm", "humidity"]
UNITS = {"temperature": "C", "vibration": "mm/s", "pressure": "bar", "current": "A", "rpm": "rpm", "humidity": "%"}
N_ASSETS = 334
N_SENS = N_ASSETS * len(TYPES)
START_MS = 1767225600000  # 2026-01-01T00:00:00Z
TICK_MS = 15000
TICKS_PER_DAY = 86400000 // TICK_MS
SOURCE = "target/bench-data/sql-100000000.jsonl"

# Sensors in stream (simulator) order: asset-major.
S_ASSET = np.repeat(np.arange(N_ASSETS), len(TYPES))
S_TYPE = np.tile(np.arange(len(TYPES)), N_ASSETS)
ASSET_NAMES = [f"asset-{a:04d}" for a in range(N_ASSETS)]
SENSOR_NAMES = [f"{ASSET_NAMES[a]}-{TYPES[t]}" for a, t in zip(S_ASSET, S_TYPE)]
S_RANK = np.empty(N_SENS, dtype=np.int64)  # rank of sensor_id in string order
S_RANK[np.argsort(np.array(SENSOR_NAMES), kind="stable")] = np.arange(N_SENS)
TYPE_RANK = np.empty(len(TYPES), dtype=np.int64)
TYPE_RANK[np.argsort(np.array(TYPES))] = np.arange(len(TYPES))
S_WORKER = np.array([zlib.crc32(s.encode()) % 2 for s in SENSOR_NAMES])
S_BASE = np.array([[20.0, 3.0, 5.0, 12.0, 1500.0, 45.0][t] for t in S_TYPE]) * (1 + 0.1 * np.sin(np.arange(N_SENS)))
S_PHASE = (np.arange(N_SENS) * 2.399963) % (2 * np.pi)

HEX = np.array([ord(c) for c in "0123456789abcdef"], dtype=np.uint8)

SCHEMA = pa.schema([
    pa.field("reading_id", pa.string(), False),
    pa.field("sensor_id", pa.string(), False),
    pa.field("asset_id", pa.string(), False),
    pa.field("sensor_type", pa.string(), False),
    pa.field("value", pa.float64(), False),
    pa.field("unit", pa.string(), False),
    pa.field("ts", pa.timestamp("ms", tz="UTC"), False),
    pa.field("quality", pa.float64(), True),
    pa.field("metadata", pa.string(), True),
    pa.field("source", pa.dictionary(pa.int32(), pa.string()), False),
    pa.field("source_offset", pa.uint64(), False),
])
NO_DICT = {"reading_id", "value", "ts", "source_offset"}


def splitmix(x):
    x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hex16(h):
    n = len(h)
    b = h.astype(">u8").view(np.uint8).reshape(n, 8)
    out = np.empty((n, 16), dtype=np.uint8)
    out[:, 0::2] = HEX[b >> 4]
    out[:, 1::2] = HEX[b & 15]
    offsets = np.arange(0, 16 * n + 1, 16, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.reshape(-1))])


def strings(names, idx):
    return pa.array(names, pa.string()).take(pa.array(idx))


def day_rows(day, ticks):
    """Stream-order columns of one day: (sensor index, tick, global row index)."""
    t0, t1 = day * TICKS_PER_DAY, min((day + 1) * TICKS_PER_DAY, ticks)
    n = (t1 - t0) * N_SENS
    g = np.arange(t0 * N_SENS, t1 * N_SENS, dtype=np.int64)
    return g % N_SENS, g // N_SENS, g, n


def build_table(s, tick, g, with_type=True):
    n = len(s)
    tsec = tick.astype(np.float64) * (TICK_MS / 1000.0)
    noise = (splitmix(g.astype(np.uint64) ^ np.uint64(0x5EED)) >> np.uint64(11)).astype(np.float64) / float(1 << 53) - 0.5
    value = S_BASE[s] * (1 + 0.05 * np.sin(2 * np.pi * tsec / 86400.0 + S_PHASE[s]) + 0.02 * noise)
    cols = {
        "reading_id": hex16(splitmix(g.astype(np.uint64))),
        "sensor_id": strings(SENSOR_NAMES, s),
        "asset_id": strings(ASSET_NAMES, S_ASSET[s]),
        "sensor_type": strings(TYPES, S_TYPE[s]),
        "value": pa.array(value),
        "unit": strings([UNITS[t] for t in TYPES], S_TYPE[s]),
        "ts": pa.array(START_MS + tick * TICK_MS, pa.timestamp("ms", tz="UTC")),
        "quality": pa.nulls(n, pa.float64()),
        "metadata": pa.nulls(n, pa.string()),
        "source": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([SOURCE])),
        "source_offset": pa.array((g + 1).astype(np.uint64)),
    }
    schema = SCHEMA if with_type else pa.schema([f for f in SCHEMA if f.name != "sensor_type"])
    return pa.table([cols[f.name] for f in schema], schema=schema)


def sort_index(s, tick, sort):
    if sort == "type":
        return np.lexsort((tick, S_RANK[s], TYPE_RANK[S_TYPE[s]]))
    return np.lexsort((tick, S_RANK[s]))  # (sensor_id, ts) == (asset_id, sensor_id, ts)


def write(path, table, a, sort_cols):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    names = table.schema.names
    kw = dict(
        compression="snappy",
        use_dictionary=[c for c in names if c not in NO_DICT],
        data_page_size=a.page_bytes,
        write_batch_size=1024,
        dictionary_pagesize_limit=1 << 20,
        data_page_version="1.0",
        sorting_columns=[pq.SortingColumn(names.index(c)) for c in sort_cols if c in names],
    )
    if a.page_rows:
        kw["max_rows_per_page"] = a.page_rows
    if a.stats == "none":
        kw["write_statistics"] = False
    kw["write_page_index"] = a.stats == "page"
    tmp = path + ".tmp"
    with pq.ParquetWriter(tmp, table.schema, **kw) as w:
        w.write_table(table, row_group_size=a.rg)
    os.rename(tmp, path)


def date_of(day):
    return time.strftime("%Y-%m-%d", time.gmtime((START_MS + day * 86400000) / 1000))


def gen_day(args):
    a, day, ticks = args
    s, tick, g, n = day_rows(day, ticks)
    base = os.path.join(a.out, "readings", f"date={date_of(day)}")
    sort_cols = {"sensor": ["sensor_id", "ts"], "type": ["sensor_type", "sensor_id", "ts"],
                 "asset": ["asset_id", "sensor_id", "ts"]}[a.sort]
    files = 0
    if a.layout == "brief":
        for k, lo in enumerate(range(0, n, a.file_rows)):
            sl = slice(lo, min(lo + a.file_rows, n))
            o = sort_index(s[sl], tick[sl], a.sort)
            write(f"{base}/part-run-000-{day:03d}{k:03d}.parquet",
                  build_table(s[sl][o], tick[sl][o], g[sl][o]), a, sort_cols)
            files += 1
    elif a.layout == "pipeline":
        span = int(a.span_hours * 3600000) // TICK_MS
        for w in range(2):
            m = S_WORKER[s] == w
            ws, wt, wg = s[m], tick[m], g[m]
            tk0 = day * TICKS_PER_DAY
            for k, t in enumerate(range(tk0, tk0 + TICKS_PER_DAY, span)):
                sel = (wt >= t) & (wt < t + span)
                if not sel.any():
                    break
                cs, ct, cg = ws[sel], wt[sel], wg[sel]
                o = sort_index(cs, ct, a.sort)
                write(f"{base}/part-run-{w:03d}-{day:03d}{k:03d}.parquet",
                      build_table(cs[o], ct[o], cg[o]), a, sort_cols)
                files += 1
    elif a.layout == "day":
        o = sort_index(s, tick, a.sort)
        s, tick, g = s[o], tick[o], g[o]
        # split at sensor boundaries into files_per_day nearly equal files
        bounds = [0]
        for k in range(1, a.files_per_day):
            cut = k * n // a.files_per_day
            while cut < n and s[cut] == s[cut - 1]:
                cut += 1
            bounds.append(cut)
        bounds.append(n)
        for k in range(a.files_per_day):
            sl = slice(bounds[k], bounds[k + 1])
            write(f"{base}/part-{k:03d}.parquet", build_table(s[sl], tick[sl], g[sl]), a, sort_cols)
            files += 1
    elif a.layout in ("typepart", "typefile"):
        for ti, t in enumerate(TYPES):
            m = S_TYPE[s] == ti
            cs, ct, cg = s[m], tick[m], g[m]
            o = sort_index(cs, ct, "sensor")
            if a.layout == "typepart":
                write(f"{base}/sensor_type={t}/part-000.parquet", build_table(cs[o], ct[o], cg[o], with_type=False), a,
                      ["sensor_id", "ts"])
            else:
                write(f"{base}/part-{t}.parquet", build_table(cs[o], ct[o], cg[o]), a, ["sensor_id", "ts"])
            files += 1
    return files


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--rows", type=int, default=100_000_000)
    p.add_argument("--layout", default="brief", choices=["brief", "pipeline", "day", "typepart", "typefile"])
    p.add_argument("--file-rows", type=int, default=524288)
    p.add_argument("--files-per-day", type=int, default=1)
    p.add_argument("--rg", type=int, default=131072, help="row group rows")
    p.add_argument("--sort", default="sensor", choices=["sensor", "type", "asset"])
    p.add_argument("--page-rows", type=int, default=20000, help="0: no row cap (1 MiB pages only)")
    p.add_argument("--page-bytes", type=int, default=1 << 20)
    p.add_argument("--stats", default="page", choices=["page", "chunk", "none"])
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--span-hours", type=float, default=1.0, help="pipeline: file span (max_file_span_ms)")
    a = p.parse_args()
    ticks = a.rows // N_SENS
    days = (ticks + TICKS_PER_DAY - 1) // TICKS_PER_DAY
    t = time.time()
    with Pool(a.procs) as pool:
        files = sum(pool.map(gen_day, [(a, d, ticks) for d in range(days)], chunksize=1))
    print(f"{a.out}: {ticks * N_SENS} rows, {days} days, {files} files, {time.time() - t:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
