#!/usr/bin/env bash
# Latency at a steady rate: `vigil run` on a live topic fed by `vigil simulate --rate`.
#   benches/kafka_latency.sh [RATE=600] [SECONDS=150]
# The input topic stamps messages when the broker appends them (LogAppendTime): latency is from
# "readable" to Vigil producing the event. Hard limits are set so that excursions happen.
# Prints hard-limit alert and window-event latency (p50/p99/max) and the lag Vigil saw.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-600}
SECS=${2:-150}
B="${VIGIL_KAFKA_LISTEN:-127.0.0.1:9092}"
scripts/kafka.sh start >&2
cargo build --release -p vigil-pipeline -p vigil-benches --bin vigil --bin kafka_latency >&2
V=target/release/vigil
T="latency-$(date +%s)"
D=$(mktemp -d)
cat > "$D/vigil.toml" <<TOML
[detectors.limits]
temperature = [-50.0, 66.0]
vibration = [0.0, 3.7]

[kafka.consumer]
"fetch.wait.max.ms" = "${VIGIL_FETCH_WAIT_MS:-5}"

[kafka.outputs]
anomalies = "$T.anomalies"
drift = "$T.drift"
predictions = "$T.predictions"
schedule = "$T.schedule"
decisions = "$T.decisions"
rejected = "$T.dead-letters"
TOML
target/release/kafka_latency create "$B" "$T"
VIGIL_LOG=info,librdkafka=off,rdkafka=off "$V" --config "$D/vigil.toml" run --brokers "$B" --topic "$T" --group "$T" --data-dir "$D/history" > "$D/run.log" 2>&1 &
RUN=$!
sleep 10
ASSETS=$(( (RATE + 5) / 6 ))
HOURS=$(python3 -c "print($SECS / 3600)")
"$V" simulate --brokers "$B" --topic "$T" --assets "$ASSETS" --hours "$HOURS" --rate "$RATE" --start "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >&2
sleep 35
kill -TERM "$RUN"
wait "$RUN" || true
echo "lag seen at cuts (records): $(sed 's/\x1b\[[0-9;]*m//g' "$D/run.log" | grep -o 'lag=[0-9-]*' | cut -d= -f2 | sort -n | uniq -c | sort -k2 -n | awk '{printf "%s×%s ", $2, $1}')"
target/release/kafka_latency "$B" "$T" "$T.anomalies" "$T.predictions" 30000
rm -rf "$D"
