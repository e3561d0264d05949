#!/usr/bin/env bash
# The normal model's cost in the whole graph: replays the realistic 10 M-reading input
# (benches/realistic.py, 2,000 sensors) with the normal model off and on (every asset learning
# 30 windows, then scoring; min_roughness 0 so every sensor is scored), ROUNDS times alternating,
# and prints readings/s and peak RSS of each run.
#   benches/normal_model_cost.sh [ROUNDS=2] [WORKERS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
W=${2:-2}
cargo build --release -p vigil-pipeline >&2
V=target/release/vigil
D=target/bench-data
mkdir -p "$D"
IN="$D/realistic-10000000-2000.jsonl"
[ -s "$IN" ] || python3 benches/realistic.py "$IN" 10000000 2000 >&2
ON="$D/normal-model-on.toml"
printf '[detectors]\nnormal_model_train_windows = 30\n\n[detectors.normal_model]\nmin_roughness = 0.0\n' > "$ON"
for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    CFG=()
    [ "$mode" = on ] && CFG=(--config "$ON")
    OUT=$(mktemp -d "$D/out-XXXX")
    /usr/bin/time -f "%M" -o "$OUT.time" "$V" "${CFG[@]}" replay --input "$IN" --data-dir "$OUT" --workers "$W" --json > "$OUT.json"
    python3 - "$OUT.json" "$OUT.time" "$mode" "$round" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rss = int(open(sys.argv[2]).read().split()[-1]) / 1024
print(f"round={sys.argv[4]} normal_model={sys.argv[3]} readings={s['records_in']} elapsed_s={s['elapsed_s']:.1f} "
      f"readings_per_s={s['records_per_s']:.0f} peak_rss_mib={rss:.0f} incidents={s['incidents']}", flush=True)
PY
    rm -rf "$OUT" "$OUT.json" "$OUT.time"
  done
done
