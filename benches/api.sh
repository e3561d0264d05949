#!/usr/bin/env bash
# API benchmark: `vigil serve` (release) over real HTTP, driven by benches/src/bin/api_load.rs.
#   benches/api.sh [SECONDS=20]
# 1. POST /api/v1/decisions/{id} at 500 requests/s, open loop (latency counted from each
#    request's due time), each a new durable ledger append (fsync before the 201);
# 2. GET /api/v1/readings for one sensor over one day (86,400 raw readings, downsampled to the
#    default 1,000 points), closed loop, 4 connections;
# 3. POST /api/v1/readings in NDJSON batches of 1,000 into the embedded log with the pipeline
#    consuming beside it, closed loop, 4 connections: readings/s acknowledged durable.
# 4. Isolation: decisions (100/s, open loop) and GET /health (50/s, open loop) while 4 heavy
#    queries (a self-join of the readings) run back to back: their p99 with the query threads
#    busy (the queries run on a pool of their own, away from the threads serving the rest).
# SECTIONS=4 runs only some sections; VIGIL_BIN=path runs another build of vigil (before/after).
# The history: `vigil demo`, 20 assets x 6 sensors, a reading a second for 24 h (10.4 M
# readings), kept under target/bench-data. The rate limit is lifted for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-20}
SECTIONS=${SECTIONS:-1234}
cargo build --release -p vigil-pipeline -p vigil-benches --bin vigil --bin api_load >&2
V=${VIGIL_BIN:-target/release/vigil}
L=target/release/api_load
D=target/bench-data
mkdir -p "$D"
HIST="$D/api-history"
if [ ! -d "$HIST/readings" ]; then
  "$V" demo --data-dir "$HIST" --assets 20 --hours 24 --interval-ms 1000 --seed 5 >&2
fi
export VIGIL_API_KEY=bench-key VIGIL_API__RATE_PER_SECOND=1000000 VIGIL_API__RATE_BURST=1000000
PORT=18181
SERVER=
stop() { [ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true; SERVER=; }
trap stop EXIT
start() {
  "$V" serve --data-dir "$1" --listen 127.0.0.1:$PORT "${@:2}" 2>"$D/api-serve.log" &
  SERVER=$!
  for _ in $(seq 1 200); do
    curl -sf "127.0.0.1:$PORT/health" >/dev/null && return 0
    sleep 0.1
  done
  echo "the server did not start" >&2; cat "$D/api-serve.log" >&2; exit 1
}
get() { curl -sf -H "Authorization: Bearer $VIGIL_API_KEY" "127.0.0.1:$PORT$1"; }

# 1 and 2: the demo's history, no pipeline.
start "$HIST" --no-pipeline
IDS=$(get "/api/v1/decisions/pending?include_replayed=true&include_deferred=true" | python3 -c 'import json,sys; print(",".join(r["request_id"] for r in json.load(sys.stdin)))')
[ -n "$IDS" ] || { echo "the demo asked for no decision" >&2; exit 1; }
SENSOR=asset-0001-temperature
TO=$(get "/api/v1/readings?sensor_id=$SENSOR&max_points=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["to"])')
FROM=$(python3 -c "print($TO - 86400000)")
echo "decisions: $(echo "$IDS" | tr ',' '\n' | wc -l) requests deferred in turn; readings: $SENSOR from $FROM to $TO" >&2
if [[ $SECTIONS == *1* ]]; then
  "$L" --addr 127.0.0.1:$PORT --mode decide --ids "$IDS" --rate 500 --seconds "$S" --connections 32
fi
if [[ $SECTIONS == *2* ]]; then
  "$L" --addr 127.0.0.1:$PORT --mode get-readings --query "sensor_id=$SENSOR&from=$FROM&to=$TO" --seconds "$S" --connections 4
fi
if [[ $SECTIONS == *4* ]]; then
  HEAVY="SELECT a.sensor_id, count(*) AS n FROM readings a JOIN readings b ON a.sensor_id = b.sensor_id AND a.ts = b.ts + INTERVAL '1 second' GROUP BY 1"
  "$L" --addr 127.0.0.1:$PORT --mode query --sql "$HEAVY" --seconds "$((S + 2))" --connections 4 >"$D/api-heavy.json" &
  HEAVY_PID=$!
  sleep 2
  "$L" --addr 127.0.0.1:$PORT --mode decide --ids "$IDS" --rate 100 --seconds "$S" --connections 16 &
  DECIDE_PID=$!
  "$L" --addr 127.0.0.1:$PORT --mode health --rate 50 --seconds "$S" --connections 4
  wait "$DECIDE_PID" "$HEAVY_PID"
  cat "$D/api-heavy.json"
fi
stop

# 3: ingest with the pipeline running.
if [[ $SECTIONS == *3* ]]; then
  rm -rf "$D/api-ingest"
  start "$D/api-ingest" --source ingest --workers 2
  "$L" --addr 127.0.0.1:$PORT --mode post-readings --batch 1000 --sensors 2000 --seconds "$S" --connections 4
  stop
fi
