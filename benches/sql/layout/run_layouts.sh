#!/usr/bin/env bash
# Benchmarks every layout (project session settings) against DuckDB; appends to results/layouts.jsonl
cd "$(dirname "$0")"; . venv/bin/activate
b() { d=$1; shift; ./prio.sh python bench.py data/$d --label $d "$@" 2>/dev/null | tee -a results/layouts.txt; }
for d in brief pipeline day1_rg128k day1_rg512k day1_rg1m day4_rg512k typefile_rg1m day1_rg1m_nopagecap day1_rg1m_page5k day1_rg1m_chunkstats; do b $d; done
b typepart_rg1m --hive date,sensor_type
b day1_sorttype_rg1m --sort sensor_type,sensor_id,ts
b day1_rg512k --sort asset_id,sensor_id,ts --label day1_rg512k_declared_asset_sort
