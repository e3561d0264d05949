#!/usr/bin/env bash
# Web console benchmark: `vigil serve` (release) over real HTTP, driven by
# benches/src/bin/console_bench.rs (its top comment says what is measured and how).
#   benches/console.sh [REQUESTS=200] [LIVE=20]
# 1. Every console page, signed in, REQUESTS times each after 10 warm-up requests, one at a
#    time: p50/p99/max (target p99 < 100 ms), with 300 sensors and a day of history.
# 2. Event -> the fleet page's live stream (GET /fleet/live): LIVE readings over the temperature
#    limit, each for a new asset, posted to /api/v1/readings; the time until the stream's update
#    lists the asset (target < 1 s). With lateness 0 (the anomaly is emitted on arrival) and an
#    idle timeout of 300 ms, measured twice: commit interval 500 ms, then the default 5000 ms.
# The history: `vigil demo`, 50 assets x 6 sensors, a reading a second for 24 h (25.9 M
# readings), made once under target/bench-data/console-300. Each server runs on a fresh copy:
# the live readings, stamped now, move the history's newest time (and so the pages' default
# ranges) to today. The rate limit is lifted for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
LIVE=${2:-20}
cargo build --release -p vigil-pipeline --bin vigil -p vigil-benches --bin console_bench >&2
V=target/release/vigil
B=target/release/console_bench
D=target/bench-data
mkdir -p "$D"
HIST="$D/console-300"
if [ ! -d "$HIST/readings" ]; then
  rm -rf "$HIST.partial"
  "$V" demo --data-dir "$HIST.partial" --assets 50 --sensors-per-asset 6 --hours 24 --interval-ms 1000 --seed 5 >&2
  mv "$HIST.partial" "$HIST"
fi
KEY=console-bench-key
CFG="$D/console-bench.toml"
cat >"$CFG" <<EOF
[api]
keys = [{ name = "bench", key = "$KEY", scopes = ["admin"] }]
rate_per_second = 100000.0
rate_burst = 100000
EOF
RUN="$D/console-run"
LOG="$D/console-serve.log"
SERVER=
stop() { if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi; SERVER=; }
trap stop EXIT
# start COMMIT_MS: `vigil serve --source ingest` on a fresh copy of the history, on a free port;
# sets SERVER and ADDR.
start() {
  rm -rf "$RUN"
  cp -a "$HIST" "$RUN"
  VIGIL_PIPELINE__LATENESS_MS=0 VIGIL_KAFKA__COMMIT_INTERVAL_MS="$1" VIGIL_PIPELINE__IDLE_TIMEOUT_MS=300 \
    "$V" --config "$CFG" serve --data-dir "$RUN" --source ingest --listen 127.0.0.1:0 2>"$LOG" &
  SERVER=$!
  ADDR=
  for _ in $(seq 1 600); do
    ADDR=$(sed -n 's|^vigil serve: http://\([^/]*\)/.*|\1|p' "$LOG" | head -n 1)
    [ -n "$ADDR" ] && return 0
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not start" >&2
  cat "$LOG" >&2
  exit 1
}

for MS in 500 5000; do
  start "$MS"
  echo "== vigil serve --source ingest on $ADDR: commit interval $MS ms, lateness 0 ms, idle timeout 300 ms" >&2
  OUT="$D/console-$MS.txt"
  if ! {
    echo "== commit interval $MS ms (VIGIL_KAFKA__COMMIT_INTERVAL_MS), lateness 0 ms (VIGIL_PIPELINE__LATENESS_MS), idle timeout 300 ms"
    "$B" --url "http://$ADDR" --key "$KEY" --requests "$N" --live "$LIVE" --commit-interval-ms "$MS"
  } >"$OUT"; then
    cat "$OUT"
    echo "console_bench failed; the server's log: $LOG" >&2
    exit 1
  fi
  stop
  rm -rf "$RUN"
done
cat "$D/console-500.txt"
echo
cat "$D/console-5000.txt"
