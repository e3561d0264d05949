#!/usr/bin/env bash
# End-to-end harness: replay N JSON-lines readings of 2,000 sensors (1 Hz, 1-minute windows)
# through the whole graph to Parquet, and report readings/s and peak RSS.
#   benches/e2e.sh [READINGS=10000000] [WORKERS=2]
# The input is made once with `vigil simulate` and kept under target/bench-data.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
W=${2:-2}
cargo build --release -p vigil-pipeline >&2
V=target/release/vigil
D=target/bench-data
mkdir -p "$D"
# 2,000 sensors = 334 assets x 6 sensors (2,004 sensors); hours = N / 2004 / 3600.
HOURS=$(python3 -c "print($N / 2004 / 3600)")
IN="$D/replay-$N.jsonl"
if [ ! -s "$IN" ]; then
  "$V" simulate --out "$IN" --assets 334 --sensors-per-asset 6 --hours "$HOURS" --seed 1 >&2
fi
OUT=$(mktemp -d "$D/out-XXXX")
/usr/bin/time -f "peak_rss_kib=%M wall_s=%e" -o "$OUT.time" "$V" replay --input "$IN" --data-dir "$OUT" --workers "$W" --json > "$OUT.json"
python3 - "$OUT.json" "$OUT.time" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t = dict(kv.split("=") for kv in open(sys.argv[2]).read().split())
print(f"readings={s['records_in']} accepted={s['accepted']} workers={s['workers']} "
      f"elapsed_s={s['elapsed_s']:.2f} readings_per_s={s['records_per_s']:.0f} "
      f"peak_rss_mib={int(t['peak_rss_kib'])/1024:.0f} windows={s['windows']} files={s['history_files']}")
PY
rm -rf "$OUT" "$OUT.json" "$OUT.time"
