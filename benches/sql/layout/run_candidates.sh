#!/usr/bin/env bash
# The candidate layouts, project session (base) and with date_trunc's tz-less fast path
# (tsnaive), REPS repetitions; appends to results/candidates.txt. Then: summarize.py results/candidates.txt
cd "$(dirname "$0")"; . venv/bin/activate
for rep in $(seq ${REPS:-3}); do
for d in pipeline pipeline_6h_rg512k day1_rg128k day1_rg512k day1_rg1m; do
  ./prio.sh python bench.py data/$d --label $d --cfg 'df:' --cfg 'tsnaive:ts=naive' 2>/dev/null >> results/candidates.txt
done; done
