//! Helpers shared by the pipeline's integration tests: run replays into temporary history
//! directories and read the history back as sorted text rows.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use vigil_connectors::simulator::{Fleet, FleetConfig};
use vigil_pipeline::config::VigilConfig;
use vigil_pipeline::{replay, ReplayOrder, RunOptions, RunStats};

/// A fixed wall clock: 2026-06-01T00:00:00Z.
pub fn fixed_now() -> i64 {
    1_780_272_000_000
}

pub fn options(data_dir: &Path, workers: usize, chunk_bytes: usize) -> RunOptions {
    let mut cfg = VigilConfig::default();
    cfg.pipeline.chunk_bytes = chunk_bytes;
    cfg.history.max_rows_per_file = 20_000;
    RunOptions {
        cfg,
        data_dir: data_dir.to_path_buf(),
        workers,
        progress: false,
        now_ms: fixed_now,
        run_id: format!("t{workers}"),
        write_history: true,
    }
}

/// Writes a simulated fleet as JSON lines; returns the path.
pub fn simulated_jsonl(dir: &Path, assets: usize, hours: f64, bad_rate: f64) -> PathBuf {
    let path = dir.join("fleet.jsonl");
    let fleet = Fleet::new(FleetConfig {
        assets,
        sensors_per_asset: 6,
        hours,
        bad_record_rate: bad_rate,
        seed: 7,
        anomalies_per_sensor_hour: 2.0,
        ..FleetConfig::default()
    });
    vigil_connectors::export::write_fleet(&fleet, &path, |_, _| {}).unwrap();
    path
}

pub fn run_replay(inputs: &[PathBuf], data_dir: &Path, workers: usize, chunk_bytes: usize, order: ReplayOrder) -> RunStats {
    replay(inputs, order, &options(data_dir, workers, chunk_bytes)).unwrap().0
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                parquet_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
}

/// Every row of a table, rendered as text without the named columns, sorted.
pub fn table_rows(data_dir: &Path, table: &str, skip: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    parquet_files(&data_dir.join(table), &mut files);
    let mut rows = Vec::new();
    for f in files {
        for b in vigil_connectors::files::read_parquet(&f).unwrap() {
            rows.extend(render(&b, skip));
        }
    }
    rows.sort();
    rows
}

fn render(b: &RecordBatch, skip: &[&str]) -> Vec<String> {
    let opts = FormatOptions::default();
    let schema = b.schema();
    // Timestamps render as epoch milliseconds (zone names need chrono-tz to format).
    let arrays: Vec<(String, ArrayRef)> = b
        .columns()
        .iter()
        .zip(schema.fields())
        .filter(|(_, f)| !skip.contains(&f.name().as_str()))
        .map(|(c, f)| {
            let a: ArrayRef = match c.data_type() {
                DataType::Timestamp(TimeUnit::Millisecond, _) => {
                    Arc::new(c.as_primitive::<TimestampMillisecondType>().reinterpret_cast::<Int64Type>())
                }
                _ => c.clone(),
            };
            (f.name().clone(), a)
        })
        .collect();
    let cols: Vec<(String, ArrayFormatter<'_>)> =
        arrays.iter().map(|(n, a)| (n.clone(), ArrayFormatter::try_new(a.as_ref(), &opts).unwrap())).collect();
    (0..b.num_rows()).map(|i| cols.iter().map(|(n, c)| format!("{n}={}", c.value(i))).collect::<Vec<_>>().join("|")).collect()
}

pub const TABLES: [&str; 9] =
    ["readings", "rejected", "features", "anomalies", "drift", "predictions", "schedule", "decision_requests", "incidents"];

/// The whole history as sorted rows per table.
pub fn history(data_dir: &Path, skip: &[&str]) -> Vec<(String, Vec<String>)> {
    TABLES.iter().map(|t| (t.to_string(), table_rows(data_dir, t, skip))).collect()
}
