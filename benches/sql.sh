#!/usr/bin/env bash
# SQL benchmark: the same four queries through vigil-queries (DataFusion) and DuckDB, in the same
# run, on the same Parquet history made with `vigil simulate` + `vigil replay`.
#   benches/sql.sh [READINGS=100000000] [THREADS=2] [RUNS=5]
# History: 2,004 sensors (334 assets x 6), one reading every 15 s, so 100 M readings span 8.7
# days; kept under target/bench-data. Needs python3 with duckdb and pyarrow (`pip install duckdb pyarrow`).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000000}
T=${2:-2}
RUNS=${3:-5}
cargo build --release -p vigil-pipeline -p vigil-benches --bin vigil --bin query_bench >&2
V=target/release/vigil
D=target/bench-data
mkdir -p "$D"
HIST="$D/sql-$N"
if [ ! -d "$HIST/readings" ]; then
  HOURS=$(python3 -c "print($N / 2004 * 15 / 3600)")
  "$V" simulate --out "$D/sql-$N.jsonl" --assets 334 --sensors-per-asset 6 --hours "$HOURS" --interval-ms 15000 --seed 7 >&2
  "$V" replay --input "$D/sql-$N.jsonl" --data-dir "$HIST" --workers 2 >&2
  rm -f "$D/sql-$N.jsonl"
fi
# One sorted file per closed day (a no-op once done).
"$V" compact --data-dir "$HIST" >&2
python3 -c "import duckdb, pyarrow" 2>/dev/null || pip install --quiet duckdb pyarrow >&2
Q=$(mktemp)
sed -e 's/\$SENSOR/asset-0017-vibration/g' -e 's/\$ASSET/asset-0017/g' -e 's/\$DAY/2026-01-03/g' -e 's/\$WEEK/2026-01-02/g' benches/sql/queries.sql > "$Q"
OUT=$(mktemp)
target/release/query_bench "$HIST" "$Q" "$RUNS" "$T" | tee -a "$OUT"
python3 benches/sql/duckdb_bench.py "$HIST" "$Q" "$RUNS" "$T" | tee -a "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["query"], {})[r["engine"]] = r
print(f"{'query':36} {'vigil (DataFusion) ms':>22} {'DuckDB ms':>10} {'ratio':>6} {'rows':>8}")
for q, e in by.items():
    v, d = e.get("datafusion"), e.get("duckdb")
    if v and d:
        same = "" if v["rows"] == d["rows"] else f"  ROW COUNTS DIFFER ({d['rows']})"
        print(f"{q:36} {v['median_ms']:>22.1f} {d['median_ms']:>10.1f} {v['median_ms'] / max(d['median_ms'], 1e-9):>6.2f} {v['rows']:>8}{same}")
PY
rm -f "$Q" "$OUT"
