#!/usr/bin/env bash
# Property-based API run: schemathesis against `vigil serve` (debug build, embedded simulator
# running), every phase (examples, coverage, fuzzing, stateful), check `not_a_server_error`:
# passes when no request answers 5xx.
#   scripts/schemathesis.sh [MAX_SECONDS=600] [extra schemathesis options...]
# Needs `pip install schemathesis` (4.x). The server's data dir and log, and schemathesis'
# report, go under target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-600}
shift || true
command -v schemathesis >/dev/null || { echo "schemathesis is not installed: pip install schemathesis" >&2; exit 2; }
# All targets: the features the tests build with, so the test build's artifacts are reused.
cargo build --workspace --all-targets >&2
V=${CARGO_TARGET_DIR:-target}/debug/vigil
D=target/schemathesis
rm -rf "$D/data"
mkdir -p "$D"
# Fuzzing sends many requests a second: lift the rate limit (its 429s are not what is tested).
export VIGIL_API_KEY=schemathesis-key VIGIL_API__RATE_PER_SECOND=1000000 VIGIL_API__RATE_BURST=1000000
# It also sends wrong keys on purpose: lift the failed-authentication limit too, or every later
# request from 127.0.0.1 would be 429 auth_throttled and test nothing.
export VIGIL_API__AUTH_FAILURE_BURST=1000000000 VIGIL_API__AUTH_FAILURES_PER_MINUTE=1000000000
PORT=${PORT:-18282}
SERVER=
stop() { [ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true; SERVER=; }
trap stop EXIT
"$V" serve --data-dir "$D/data" --listen "127.0.0.1:$PORT" --source simulator 2>"$D/serve.log" &
SERVER=$!
for _ in $(seq 1 300); do
  curl -sf "127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.2
done
curl -sf "127.0.0.1:$PORT/health" >/dev/null || { echo "the server did not start" >&2; cat "$D/serve.log" >&2; exit 1; }
set -x
schemathesis run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  -H "Authorization: Bearer $VIGIL_API_KEY" \
  --checks not_a_server_error \
  --phases examples,coverage,fuzzing,stateful \
  --max-time "$T" \
  --report junit --report-dir "$D/report" \
  "$@"
