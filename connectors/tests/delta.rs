//! The history tables' Delta logs, over real Parquet files and real `_delta_log` commits: every
//! commit, compaction, ledger segment and crash recovery leaves each table's log naming exactly
//! the files that hold its rows, once.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use vigil_connectors::compact::{self, CompactOptions};
use vigil_connectors::delta;
use vigil_connectors::history::{self, commit, read_manifest, FileEntry, HistoryRow, TableWriter, WriterConfig};
use vigil_events::{EventTime, SensorReading, SensorType, SourcePos, MS_PER_DAY};

/// 2024-01-01.
const DAY0: i64 = 19_723;

fn cfg(dir: &Path, run: &str) -> WriterConfig {
    WriterConfig {
        data_dir: dir.to_path_buf(),
        run: run.into(),
        worker: 0,
        max_rows_per_file: 50,
        row_group_rows: 1000,
        max_file_span_ms: i64::MAX,
        sources: Arc::new(vec!["in.jsonl".into()]),
    }
}

fn reading(sensor: &str, ts: EventTime, offset: u64) -> SensorReading {
    SensorReading {
        id_hash: offset,
        sensor_id: Arc::from(sensor),
        sensor_key: 0,
        asset_id: Arc::from("a"),
        sensor_type: SensorType::Temperature,
        value: offset as f64,
        unit: Arc::from("C"),
        ts,
        extra: None,
        pos: SourcePos { source: 0, offset },
    }
}

fn stage(dir: &Path, run: &str, days: i64, per_day: u64, first: u64) -> Vec<FileEntry> {
    let mut w = TableWriter::<SensorReading>::new(cfg(dir, run));
    let mut off = first;
    for d in 0..days {
        for i in 0..per_day {
            w.push(reading(&format!("s{}", i % 3), (DAY0 + d) * MS_PER_DAY + i as i64 * 1000, off)).unwrap();
            off += 1;
        }
    }
    w.finish().unwrap()
}

/// What the Delta log says the table holds: its files and their row counts, from the files.
fn delta_rows(dir: &Path, table: &str) -> (BTreeSet<String>, u64) {
    let files: BTreeSet<String> = delta::active_files(dir, table).unwrap().into_iter().collect();
    let rows = files
        .iter()
        .map(|f| vigil_connectors::files::read_parquet(&dir.join(f)).unwrap().iter().map(|b| b.num_rows() as u64).sum::<u64>())
        .sum();
    (files, rows)
}

fn visible(dir: &Path, table: &str) -> BTreeSet<String> {
    compact::visible_files(dir).unwrap().into_iter().filter(|f| f.table == table).map(|f| f.path).collect()
}

#[test]
fn commits_and_compactions_keep_each_tables_log_equal_to_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = stage(d, "run-a", 3, 120, 0);
    commit(d, "run-a", a, 0).unwrap();
    let b = stage(d, "run-b", 3, 120, 1000);
    commit(d, "run-b", b, 0).unwrap();
    let (files, rows) = delta_rows(d, SensorReading::TABLE);
    assert_eq!(rows, 720);
    assert_eq!(files, visible(d, SensorReading::TABLE));
    assert!(files.len() > 6, "several files a day before compaction: {files:?}");

    // Compaction of the closed days: the log swaps the files in one OPTIMIZE commit.
    let report = compact::compact_all(d, &CompactOptions { min_age_days: 1, ..CompactOptions::default() }).unwrap();
    assert!(!report.partitions.is_empty());
    let (after, rows_after) = delta_rows(d, SensorReading::TABLE);
    assert_eq!(rows_after, 720, "no row lost or doubled by the compaction");
    assert_eq!(after, visible(d, SensorReading::TABLE));
    assert!(after.len() < files.len());

    // Recovery finds nothing to do: every table already holds every commit.
    history::recover(d).unwrap();
    assert_eq!(delta_rows(d, SensorReading::TABLE), (after, 720));
}

#[test]
fn a_crash_between_the_manifest_and_the_log_is_finished_once_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = stage(d, "run-a", 2, 100, 0);
    commit(d, "run-a", a, 0).unwrap();
    // A second run's commit reaches the manifest and its files are renamed into place, but the
    // process dies before the Delta commit: simulate by removing that commit from the log.
    let b = stage(d, "run-b", 2, 100, 1000);
    commit(d, "run-b", b.clone(), 0).unwrap();
    let log = d.join("readings").join("_delta_log");
    let mut versions: Vec<_> =
        fs::read_dir(&log).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    versions.sort();
    fs::remove_file(versions.last().unwrap()).unwrap();
    assert_eq!(delta_rows(d, "readings").1, 200, "the log lacks run-b");

    history::recover(d).unwrap();
    assert_eq!(delta_rows(d, "readings").1, 400, "recovery commits run-b");
    history::recover(d).unwrap();
    assert_eq!(delta_rows(d, "readings").1, 400, "and only once");
    assert_eq!(read_manifest(d).unwrap().len(), 2);
}

#[test]
fn a_history_from_before_the_logs_gets_its_tables_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = stage(d, "old-a", 2, 100, 0);
    commit(d, "old-a", a, 0).unwrap();
    let b = stage(d, "old-b", 2, 100, 1000);
    commit(d, "old-b", b, 0).unwrap();
    compact::compact_all(d, &CompactOptions { min_age_days: 0, ..CompactOptions::default() }).unwrap();
    // As an older Vigil left it: no logs at all.
    fs::remove_dir_all(d.join("readings").join("_delta_log")).unwrap();
    history::recover(d).unwrap();
    let (files, rows) = delta_rows(d, "readings");
    assert_eq!(rows, 400);
    assert_eq!(files, visible(d, "readings"));
    history::recover(d).unwrap();
    assert_eq!(delta_rows(d, "readings").1, 400);
}

#[test]
fn a_torn_manifest_line_does_not_swallow_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = stage(d, "run-a", 1, 10, 0);
    commit(d, "run-a", a, 0).unwrap();
    // A crash in the middle of an append leaves half a line.
    let manifest = history::manifest_path(d);
    let mut text = fs::read(&manifest).unwrap();
    text.extend_from_slice(b"{\"run\":\"torn\",\"files\":[{\"ta");
    fs::write(&manifest, text).unwrap();
    let b = stage(d, "run-b", 1, 10, 100);
    commit(d, "run-b", b, 0).unwrap();
    let runs: Vec<String> = read_manifest(d).unwrap().into_iter().map(|c| c.run).collect();
    assert_eq!(runs, vec!["run-a", "run-b"]);
}
