#!/usr/bin/env bash
# DataFusion session knobs on a layout, interleaved with DuckDB; appends to results/knobs_full.txt
cd "$(dirname "$0")"; . venv/bin/activate
for d in "$@"; do
./prio.sh python bench.py data/$d --label "$d" --queries a,b,d \
 --cfg 'base:' \
 --cfg 'nopush:execution.parquet.pushdown_filters=false;execution.parquet.reorder_filters=false' \
 --cfg 'bs32k:execution.batch_size=32768' --cfg 'bs64k:execution.batch_size=65536' \
 --cfg 'tp4:execution.target_partitions=4' \
 --cfg 'bin_as_str:execution.parquet.binary_as_string=true' \
 --cfg 'noforceview:execution.parquet.schema_force_view_types=false' \
 --cfg 'norepagg:optimizer.repartition_aggregations=false' \
 --cfg 'mdhint64k:execution.parquet.metadata_size_hint=65536' \
 --cfg 'nopageidx:execution.parquet.enable_page_index=false' \
 --cfg 'utf8schema:schema=plain' \
 --cfg 'tsnaive:ts=naive' 2>/dev/null | tee -a results/knobs_full.txt | grep -A14 '^##'
done
