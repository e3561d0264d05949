#!/usr/bin/env bash
# End-to-end harness: replay N readings through the whole graph to Parquet, and report
# readings/s and peak RSS.
#   benches/e2e.sh [READINGS=10000000] [WORKERS=2] [INPUT=realistic] [SENSORS=2000]
# INPUT:
#   realistic          JSON lines from benches/realistic.py (not the simulator): unique reading ids,
#                      epoch-ms times jittered within the second, neighbours swapped 2 s apart
#   realistic-rfc3339  the same with RFC 3339 times
#   realistic-csv      the same as CSV
#   sim                `vigil simulate`'s JSON lines (334 assets x 6 sensors, every sensor of a
#                      second at one timestamp, no reading ids): a flattering input, kept as one case
# Inputs are made once and kept under target/bench-data.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
W=${2:-2}
KIND=${3:-realistic}
SENSORS=${4:-2000}
cargo build --release -p vigil-pipeline >&2
V=target/release/vigil
D=target/bench-data
mkdir -p "$D"
case "$KIND" in
  sim)
    IN="$D/replay-$N.jsonl"
    # 2,000 sensors = 334 assets x 6 sensors (2,004 sensors); hours = N / 2004 / 3600.
    HOURS=$(python3 -c "print($N / 2004 / 3600)")
    [ -s "$IN" ] || "$V" simulate --out "$IN" --assets 334 --sensors-per-asset 6 --hours "$HOURS" --seed 1 >&2
    ;;
  realistic) IN="$D/realistic-$N-$SENSORS.jsonl"; [ -s "$IN" ] || python3 benches/realistic.py "$IN" "$N" "$SENSORS" >&2 ;;
  realistic-rfc3339) IN="$D/realistic-rfc3339-$N-$SENSORS.jsonl"; [ -s "$IN" ] || python3 benches/realistic.py "$IN" "$N" "$SENSORS" --ts rfc3339 >&2 ;;
  realistic-csv) IN="$D/realistic-$N-$SENSORS.csv"; [ -s "$IN" ] || python3 benches/realistic.py "$IN" "$N" "$SENSORS" >&2 ;;
  *) echo "unknown input $KIND (realistic, realistic-rfc3339, realistic-csv, sim)" >&2; exit 2 ;;
esac
OUT=$(mktemp -d "$D/out-XXXX")
/usr/bin/time -f "peak_rss_kib=%M wall_s=%e" -o "$OUT.time" "$V" replay --input "$IN" --data-dir "$OUT" --workers "$W" --json > "$OUT.json"
python3 - "$OUT.json" "$OUT.time" "$KIND" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t = dict(kv.split("=") for kv in open(sys.argv[2]).read().split())
print(f"input={sys.argv[3]} readings={s['records_in']} accepted={s['accepted']} workers={s['workers']} "
      f"elapsed_s={s['elapsed_s']:.2f} readings_per_s={s['records_per_s']:.0f} "
      f"peak_rss_mib={int(t['peak_rss_kib'])/1024:.0f} windows={s['windows']} files={s['history_files']}")
PY
rm -rf "$OUT" "$OUT.json" "$OUT.time"
