#!/usr/bin/env bash
# Kafka harness: Vigil against the broker's own limit, in the same run.
#   benches/kafka.sh [READINGS=1000000] [WORKERS=2]
# Produces READINGS simulated readings of ~2,000 sensors to a new 8-partition topic, then times
#  1. a raw rdkafka consumer-group member reading the topic to its end (no decoding), and
#  2. `vigil run --stop-at-end` with WORKERS workers: the full graph into Parquet history
#     (output topics off, so both read the same bytes and Vigil writes only to disk).
# Both include joining the group. Uses the broker of scripts/kafka.sh (started if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
W=${2:-2}
B="${VIGIL_KAFKA_LISTEN:-127.0.0.1:9092}"
scripts/kafka.sh start >&2
cargo build --release -p vigil-pipeline -p vigil-benches --bin vigil --bin kafka_raw_consumer >&2
V=target/release/vigil
D=target/bench-data
mkdir -p "$D"
HOURS=$(python3 -c "print($N / 2004 / 3600)")
TOPIC="bench-$N-$(date +%s)"
echo "producing $N readings to $TOPIC" >&2
"$V" simulate --brokers "$B" --topic "$TOPIC" --assets 334 --sensors-per-asset 6 --hours "$HOURS" --seed 1 >&2
RAW=$(target/release/kafka_raw_consumer "$B" "$TOPIC")
echo "raw consumer: $RAW" >&2
OUT=$(mktemp -d "$D/kafka-out-XXXX")
/usr/bin/time -f "peak_rss_kib=%M wall_s=%e" -o "$OUT.time" \
  "$V" run --brokers "$B" --topic "$TOPIC" --group "vigil-$TOPIC" --data-dir "$OUT" --workers "$W" --stop-at-end --no-publish --json > "$OUT.json"
python3 - "$RAW" "$OUT.json" "$OUT.time" <<'PY'
import json, sys
raw = dict(kv.split("=") for kv in sys.argv[1].split())
s = json.load(open(sys.argv[2]))
t = dict(kv.split("=") for kv in open(sys.argv[3]).read().split())
raw_s, vig_s = float(raw["seconds"]), float(t["wall_s"])
n = int(raw["records"])
print(f"records={n} raw_consumer_s={raw_s:.2f} raw_rate={n/raw_s:.0f}/s "
      f"vigil_s={vig_s:.2f} vigil_rate={s['records_in']/vig_s:.0f}/s vigil_vs_raw={raw_s/vig_s:.2f} "
      f"accepted={s['accepted']} rejected={s['rejected']} workers={s['workers']} peak_rss_mib={int(t['peak_rss_kib'])/1024:.0f}")
PY
rm -rf "$OUT" "$OUT.json" "$OUT.time"
