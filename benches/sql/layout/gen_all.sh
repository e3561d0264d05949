#!/usr/bin/env bash
# Generates every layout variant measured (100 M rows each, ~3 GB each) under data/.
set -e
cd "$(dirname "$0")"; . venv/bin/activate
g() { d=$1; shift; [ -d data/$d ] || python gen.py data/$d "$@"; }
g brief    --layout brief
g pipeline --layout pipeline
g day1_rg128k --layout day --rg 131072
g day1_rg512k --layout day --rg 524288
g day1_rg1m   --layout day --rg 1048576
g day4_rg512k --layout day --files-per-day 4 --rg 524288
g typepart_rg1m --layout typepart --rg 1048576
g typefile_rg1m --layout typefile --rg 1048576
g day1_sorttype_rg1m --layout day --sort type --rg 1048576
g day1_rg1m_nopagecap --layout day --rg 1048576 --page-rows 0
g day1_rg1m_page5k --layout day --rg 1048576 --page-rows 5000
g day1_rg1m_chunkstats --layout day --rg 1048576 --stats chunk
g pipeline_6h_rg512k --layout pipeline --span-hours 6 --rg 524288
