//! Compaction of closed date partitions, over real Parquet files written by the history's own
//! writers and committed through the manifest.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimestampMillisecondType};
use arrow::util::display::array_value_to_string;
use parquet::basic::{Compression, Encoding};
use parquet::file::reader::{FileReader, SerializedFileReader};
use vigil_connectors::compact::{self, CompactOptions, CompactionLock, CrashPoint};
use vigil_connectors::history::{
    self, commit, commit_segment, read_manifest, resume_offsets, write_rows_by_date, FileEntry, HistoryRow, SourceSpan,
    StreamMark, TableWriter, WriterConfig,
};
use vigil_events::{
    AnomalyDetected, EventTime, MaintenanceCompleted, MaintenanceKind, RejectReason, RejectedReading, SensorReading, SensorType,
    Severity, SourcePos, MS_PER_DAY,
};

/// 2024-01-01.
const DAY0: i64 = 19_723;

fn date(day: i64) -> String {
    history::date_of_day(day)
}

fn cfg(dir: &Path, run: &str, max_rows: usize, sources: &[&str]) -> WriterConfig {
    WriterConfig {
        data_dir: dir.to_path_buf(),
        run: run.into(),
        worker: 0,
        max_rows_per_file: max_rows,
        row_group_rows: 1000,
        max_file_span_ms: i64::MAX,
        sources: Arc::new(sources.iter().map(|s| s.to_string()).collect()),
    }
}

fn reading(sensor: &str, ts: EventTime, source: u32, offset: u64) -> SensorReading {
    SensorReading {
        id_hash: offset * 7 + u64::from(source),
        sensor_id: Arc::from(sensor),
        sensor_key: 0,
        asset_id: Arc::from("a"),
        sensor_type: SensorType::Temperature,
        value: offset as f64,
        unit: Arc::from("C"),
        ts,
        extra: None,
        pos: SourcePos { source, offset },
    }
}

/// Readings of `days` days (from DAY0), five sensors, in a scrambled order, from `source`.
fn readings(days: i64, per_day: u64, source: u32, first_offset: u64) -> Vec<SensorReading> {
    let mut out = Vec::new();
    let mut offset = first_offset;
    for d in 0..days {
        for i in 0..per_day {
            let sensor = format!("s{}", (i * 7 + 3) % 5);
            let ts = (DAY0 + d) * MS_PER_DAY + ((i * 7919) % 86_000) as i64 * 1000;
            out.push(reading(&sensor, ts, source, offset));
            offset += 1;
        }
    }
    out
}

/// Writes `rows` with a writer rolling every `max_rows` rows, and commits them.
fn write_and_commit<R: HistoryRow + Send + 'static>(dir: &Path, run: &str, max_rows: usize, rows: Vec<R>) -> Vec<FileEntry> {
    let mut w = TableWriter::<R>::new(cfg(dir, run, max_rows, &["in.jsonl"]));
    for r in rows {
        w.push(r).unwrap();
    }
    let files = w.finish().unwrap();
    commit(dir, run, files.clone(), 0).unwrap();
    files
}

fn partition(dir: &Path, table: &str, day: i64) -> PathBuf {
    dir.join(table).join(format!("date={}", date(day)))
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn batches(path: &Path) -> Vec<RecordBatch> {
    vigil_connectors::files::read_parquet(path).unwrap()
}

/// Times as their milliseconds (displaying a "UTC" zone needs chrono-tz).
fn plain(c: &ArrayRef) -> ArrayRef {
    match c.data_type() {
        DataType::Timestamp(_, _) => arrow::compute::cast(c, &DataType::Int64).unwrap(),
        _ => c.clone(),
    }
}

/// Every row of the files of a folder as text (a multiset, sorted).
fn row_multiset(dir: &Path) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for n in names(dir).iter().filter(|n| n.ends_with(".parquet")) {
        for b in batches(&dir.join(n)) {
            for i in 0..b.num_rows() {
                out.push(b.columns().iter().map(|c| array_value_to_string(&plain(c), i).unwrap()).collect());
            }
        }
    }
    out.sort();
    out
}

/// (key, time) of every row of a file, in file order: `key` is the first of `key_cols` neither
/// null nor empty, null times are `i64::MIN` (the writers' order).
fn keys(path: &Path, key_cols: &[&str], time: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for b in batches(path) {
        let cols: Vec<_> = key_cols.iter().map(|c| b.column_by_name(c).unwrap().as_string::<i32>().clone()).collect();
        let t = b.column_by_name(time).unwrap().as_primitive::<TimestampMillisecondType>().clone();
        for i in 0..b.num_rows() {
            let k = cols.iter().find(|c| c.is_valid(i) && !c.value(i).is_empty()).map_or("", |c| c.value(i));
            out.push((k.to_string(), if t.is_valid(i) { t.value(i) } else { i64::MIN }));
        }
    }
    out
}

fn assert_sorted(k: &[(String, i64)]) {
    assert!(k.windows(2).all(|w| w[0] <= w[1]), "not sorted by (key, time)");
}

fn only_file(dir: &Path) -> PathBuf {
    let n = names(dir);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].starts_with("compacted-") && n[0].ends_with(".parquet"), "{n:?}");
    dir.join(&n[0])
}

fn manifest_bytes(dir: &Path) -> Vec<u8> {
    fs::read(history::manifest_path(dir)).unwrap_or_default()
}

/// Three days of readings from two runs, several files a day.
fn three_days(dir: &Path) {
    write_and_commit(dir, "r1", 9, readings(3, 40, 0, 1));
    write_and_commit(dir, "r2", 13, readings(3, 30, 0, 1000));
}

#[test]
fn merges_each_closed_day_into_one_sorted_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    three_days(dir);
    let before: Vec<_> = (0..3).map(|d| row_multiset(&partition(dir, "readings", DAY0 + d))).collect();
    let files_before: Vec<usize> = (0..3).map(|d| names(&partition(dir, "readings", DAY0 + d)).len()).collect();
    assert!(files_before.iter().all(|n| *n > 2), "{files_before:?}");
    let newest = names(&partition(dir, "readings", DAY0 + 2));

    let report = compact::compact_all(dir, &CompactOptions::default()).unwrap();

    assert_eq!(report.partitions.len(), 2, "{report:#?}");
    assert!(report.skipped.is_empty(), "{report:#?}");
    assert_eq!(report.files_before, files_before[0] + files_before[1]);
    assert_eq!(report.files_after, 2);
    assert_eq!(report.rows, 140);
    assert!(report.bytes_before > 0 && report.bytes_after > 0);
    for d in 0..2 {
        let part = partition(dir, "readings", DAY0 + d);
        let merged = only_file(&part);
        assert_eq!(row_multiset(&part), before[d as usize], "same rows on day {d}");
        assert_sorted(&keys(&merged, &["sensor_id"], "ts"));
    }
    assert_eq!(names(&partition(dir, "readings", DAY0 + 2)), newest, "the newest day is untouched");
    assert!(!dir.join("_compaction").join("staging").exists());
}

#[test]
fn merged_file_has_the_writers_properties() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    three_days(dir);
    let part = partition(dir, "readings", DAY0);
    let original = part.join(&names(&part)[0]);
    let original = SerializedFileReader::new(fs::File::open(original).unwrap()).unwrap();
    let opts = CompactOptions { row_group_rows: 16, ..CompactOptions::default() };
    compact::compact_partition(dir, "readings", &date(DAY0), &opts).unwrap().unwrap();
    let merged = SerializedFileReader::new(fs::File::open(only_file(&part)).unwrap()).unwrap();
    let meta = merged.metadata();
    assert!(meta.num_row_groups() > 1);
    let want_sorting = original.metadata().row_group(0).sorting_columns().cloned();
    assert!(want_sorting.is_some());
    for rg in meta.row_groups() {
        assert!(rg.num_rows() <= 16);
        assert_eq!(rg.sorting_columns().cloned(), want_sorting, "sorting columns in every row group");
        for c in rg.columns() {
            assert_eq!(c.compression(), Compression::SNAPPY);
        }
        // Unique-per-row columns are written without a dictionary, as the writers do.
        let id = rg.column(0);
        assert_eq!(id.column_path().string(), "reading_id");
        assert!(!id.encodings().any(|e| e == Encoding::RLE_DICTIONARY || e == Encoding::PLAIN_DICTIONARY));
    }
    let b = batches(&only_file(&part));
    assert_eq!(b[0].schema(), SensorReading::schema(), "same schema (dictionary source column included)");
}

fn anomaly(sensor: &str, asset: &str, ts: EventTime, n: u64) -> AnomalyDetected {
    AnomalyDetected {
        event_id: format!("e{n}"),
        correlation_id: format!("c{n}"),
        event_version: 1,
        sensor_id: Arc::from(sensor),
        asset_id: Arc::from(asset),
        detector: "zscore".into(),
        detector_version: 1,
        score: n as f64,
        severity: Severity::Low,
        ts,
        window_start: None,
        explanation: "{}".into(),
    }
}

fn rejected(sensor: Option<&str>, ts: Option<EventTime>, offset: u64) -> RejectedReading {
    RejectedReading {
        raw: vec![b'x'; 3],
        pos: SourcePos { source: 0, offset },
        reason: RejectReason::MalformedJson,
        detail: "bad".into(),
        sensor_id: sensor.map(Arc::from),
        ts,
        rejected_at: DAY0 * MS_PER_DAY + 5,
    }
}

#[test]
fn keeps_the_writers_order_for_asset_anomalies_and_unkeyed_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let t0 = DAY0 * MS_PER_DAY;
    // Asset-level anomalies (no sensor) sort first.
    let anomalies: Vec<AnomalyDetected> = (0..60u64)
        .map(|n| {
            let ts = t0 + ((n * 7919) % 5000) as i64;
            match n % 3 {
                0 => anomaly("", &format!("b{}", n % 4), ts, n),
                1 => anomaly(&format!("a{}", n % 5), "b0", ts, n),
                _ => anomaly(&format!("c{}", n % 2), "b1", ts, n),
            }
        })
        .collect();
    // Rejects without sensor or time sort first (as "" and the least time).
    let rejects: Vec<RejectedReading> = (0..40u64)
        .map(|n| match n % 4 {
            0 => rejected(None, None, n),
            1 => rejected(None, Some(t0 + n as i64), n),
            2 => rejected(Some(""), Some(t0 + 100 - n as i64), n),
            _ => rejected(Some(&format!("s{}", n % 3)), Some(t0 + (n * 31 % 50) as i64), n),
        })
        .collect();
    for (i, chunk) in anomalies.chunks(20).enumerate() {
        write_and_commit(dir, &format!("a{i}"), 7, chunk.to_vec());
    }
    for (i, chunk) in rejects.chunks(10).enumerate() {
        write_and_commit(dir, &format!("j{i}"), 4, chunk.to_vec());
    }
    // What one writer makes of all the rows at once: the order to keep.
    let single = tempfile::tempdir().unwrap();
    let a = write_and_commit(single.path(), "one", 1000, anomalies);
    let j = write_and_commit(single.path(), "one", 1000, rejects);

    let opts = CompactOptions::default();
    for (table, key, expected) in [("anomalies", &["sensor_id"][..], &a[0]), ("rejected", &["sensor_id"][..], &j[0])] {
        let part = partition(dir, table, DAY0);
        let before = row_multiset(&part);
        assert!(names(&part).len() > 3);
        let report = compact::compact_partition(dir, table, &date(DAY0), &opts).unwrap().unwrap();
        assert!(report.files_before > 3);
        let merged = only_file(&part);
        assert_eq!(row_multiset(&part), before, "{table}: same rows");
        let got = keys(&merged, key, "ts");
        assert_sorted(&got);
        assert_eq!(got, keys(&single.path().join(&expected.path), key, "ts"), "{table}: the writer's order");
    }
}

#[test]
fn crash_after_the_manifest_line_is_finished_by_recover() {
    for point in [CrashPoint::AfterRecord, CrashPoint::AfterRename] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        three_days(dir);
        let part = partition(dir, "readings", DAY0);
        let before = row_multiset(&part);
        let old = names(&part);
        let opts = CompactOptions { crash_at: Some(point), ..CompactOptions::default() };
        assert!(compact::compact_partition(dir, "readings", &date(DAY0), &opts).is_err());
        let recorded = compact::read_compactions(dir).unwrap();
        assert_eq!(recorded.len(), 1, "the line is durable");
        assert_eq!(recorded[0].replaces.len(), old.len());
        match point {
            CrashPoint::AfterRecord => {
                assert_eq!(names(&part), old, "nothing visible changed yet");
                assert!(dir.join(&recorded[0].file.staged).exists(), "the merged file is staged");
                let prefix = format!("readings/date={}/", date(DAY0));
                let mut listed: Vec<String> = compact::visible_files(dir)
                    .unwrap()
                    .into_iter()
                    .filter_map(|f| f.path.strip_prefix(&prefix).map(str::to_string))
                    .collect();
                listed.sort();
                assert_eq!(listed, old, "the manifest's view is the files on disk until the merged file is in place");
            }
            _ => assert_eq!(names(&part).len(), old.len() + 1, "merged file in place, old files not yet deleted"),
        }

        let (published, discarded) = history::recover(dir).unwrap();
        assert_eq!((published, discarded), (1, 0), "{point:?}");
        let merged = only_file(&part);
        assert_eq!(merged, dir.join(&recorded[0].file.path));
        assert_eq!(row_multiset(&part), before, "{point:?}: same rows");
        assert!(!dir.join("_compaction").join("staging").exists());
        // Finished once: a second recovery and a compaction find nothing left to do.
        assert_eq!(history::recover(dir).unwrap(), (0, 0));
        let report = compact::compact_all(dir, &CompactOptions::default()).unwrap();
        assert_eq!(report.recovered, 0);
        assert_eq!(report.partitions.len(), 1, "only day 1 was left");
        assert_eq!(only_file(&part), merged);
    }
}

#[test]
fn crash_before_the_manifest_line_leaves_the_old_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    three_days(dir);
    let part = partition(dir, "readings", DAY0);
    let old = names(&part);
    let manifest = manifest_bytes(dir);
    let opts = CompactOptions { crash_at: Some(CrashPoint::BeforeRecord), ..CompactOptions::default() };
    assert!(compact::compact_partition(dir, "readings", &date(DAY0), &opts).is_err());
    assert_eq!(manifest_bytes(dir), manifest, "no manifest line");
    assert_eq!(names(&part), old, "the old files, and no merged file, are visible");
    let staging = dir.join("_compaction").join("staging");
    assert!(staging.exists(), "the merged file was staged when the crash came");

    assert_eq!(history::recover(dir).unwrap(), (0, 0));
    assert!(!staging.exists(), "the staged merge is discarded");
    assert_eq!(names(&part), old);
    assert!(compact::read_compactions(dir).unwrap().is_empty());
    // A later compaction does the work.
    let report = compact::compact_all(dir, &CompactOptions::default()).unwrap();
    assert_eq!(report.partitions.len(), 2);
    only_file(&part);
}

fn union(files: &[FileEntry]) -> BTreeMap<String, (u64, u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for s in files.iter().flat_map(|f| &f.sources) {
        let e = out.entry(s.source.clone()).or_insert((s.first, s.last, 0));
        e.0 = e.0.min(s.first);
        e.1 = e.1.max(s.last);
        e.2 += s.records;
    }
    out
}

#[test]
fn resume_offsets_and_coverage_are_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A streaming run of two partitions: a cut every 25 records each, over three days.
    let sources = ["topic/0", "topic/1"];
    let mut next = [0u64; 2];
    let mut w = TableWriter::<SensorReading>::new(cfg(dir, "stream", 10, &sources));
    for cut in 0..6u64 {
        for p in 0..2u32 {
            for _ in 0..25 {
                let o = next[p as usize];
                let day = (cut / 2) as i64;
                let ts = (DAY0 + day) * MS_PER_DAY + (o as i64 * 977) % 80_000_000;
                w.push(reading(&format!("s{}", o % 4), ts, p, o)).unwrap();
                next[p as usize] += 1;
            }
        }
        let files = w.sync().unwrap();
        let mark = StreamMark {
            topic: "topic".into(),
            instance: "i".into(),
            cut,
            next_offsets: (0..2).map(|p| (p as i32, next[p] as i64)).collect(),
            max_event_time: BTreeMap::new(),
            checkpoint: None,
        };
        commit_segment(dir, "stream", files, mark, 0).unwrap();
    }
    let commits = read_manifest(dir).unwrap();
    let resume = resume_offsets(&commits, "topic");
    assert_eq!(resume, BTreeMap::from([(0, 150), (1, 150)]));
    let coverage = union(&compact::visible_files(dir).unwrap());
    assert_eq!(coverage["topic/0"], (0, 149, 150));

    let report = compact::compact_all(dir, &CompactOptions::default()).unwrap();
    assert_eq!(report.partitions.len(), 2);

    let after = read_manifest(dir).unwrap();
    assert_eq!(after, commits, "compaction lines are not commits");
    assert_eq!(resume_offsets(&after, "topic"), resume, "a restart resumes where it did");
    let visible = compact::visible_files(dir).unwrap();
    assert_eq!(union(&visible), coverage, "every position covered once, as before");
    // The manifest's files are the files on disk.
    let mut on_disk: Vec<String> = Vec::new();
    for d in 0..3 {
        for n in names(&partition(dir, "readings", DAY0 + d)) {
            on_disk.push(format!("readings/date={}/{n}", date(DAY0 + d)));
        }
    }
    let mut listed: Vec<String> = visible.iter().map(|f| f.path.clone()).collect();
    listed.sort();
    on_disk.sort();
    assert_eq!(listed, on_disk);
    // Each merged file covers what the files it replaced covered.
    for c in compact::read_compactions(dir).unwrap() {
        let replaced: Vec<FileEntry> =
            commits.iter().flat_map(|m| m.files.iter()).filter(|f| c.replaces.contains(&f.path)).cloned().collect();
        assert_eq!(replaced.len(), c.replaces.len());
        assert_eq!(union(std::slice::from_ref(&c.file)), union(&replaced));
        assert_eq!(c.file.rows, replaced.iter().map(|f| f.rows).sum::<u64>());
        assert_eq!(c.file.min_ts, replaced.iter().map(|f| f.min_ts).min().unwrap());
        assert_eq!(c.file.max_ts, replaced.iter().map(|f| f.max_ts).max().unwrap());
        let spans: Vec<&SourceSpan> = c.file.sources.iter().collect();
        assert_eq!(spans.len(), 2);
    }
}

#[test]
fn compacting_twice_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    three_days(dir);
    let first = compact::compact_all(dir, &CompactOptions::default()).unwrap();
    assert_eq!(first.partitions.len(), 2);
    let manifest = manifest_bytes(dir);
    let files: Vec<_> = (0..3).map(|d| names(&partition(dir, "readings", DAY0 + d))).collect();
    let second = compact::compact_all(dir, &CompactOptions::default()).unwrap();
    assert_eq!(second, compact::CompactionReport::default());
    assert_eq!(manifest_bytes(dir), manifest);
    assert_eq!((0..3).map(|d| names(&partition(dir, "readings", DAY0 + d))).collect::<Vec<_>>(), files);
}

#[test]
fn many_files_merge_in_several_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_and_commit(dir, "r1", 4, readings(2, 45, 0, 1));
    let part = partition(dir, "readings", DAY0);
    assert!(names(&part).len() >= 10);
    let before = row_multiset(&part);
    let opts = CompactOptions { max_fan_in: 3, batch_rows: 5, ..CompactOptions::default() };
    let report = compact::compact_partition(dir, "readings", &date(DAY0), &opts).unwrap().unwrap();
    assert_eq!(report.rows, 45);
    assert_eq!(row_multiset(&part), before);
    assert_sorted(&keys(&only_file(&part), &["sensor_id"], "ts"));
    assert!(!dir.join("_compaction").join("staging").exists(), "no scratch file left");
}

#[test]
fn unsorted_files_are_skipped_and_left_as_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    three_days(dir);
    // A foreign file, not sorted by sensor.
    let part = partition(dir, "readings", DAY0);
    let t = DAY0 * MS_PER_DAY;
    let (r1, r2) = (reading("z", t, 0, 1), reading("a", t, 0, 2));
    let batch = SensorReading::to_batch(&[&r1, &r2], &["x".to_string()]).unwrap();
    let file = fs::File::create(part.join("foreign.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, SensorReading::schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let old = names(&part);
    let report = compact::compact_all(dir, &CompactOptions::default()).unwrap();
    assert_eq!(report.skipped.len(), 1, "{report:#?}");
    assert_eq!(report.skipped[0].date, date(DAY0));
    assert!(report.skipped[0].reason.contains("not sorted"), "{}", report.skipped[0].reason);
    assert_eq!(report.partitions.len(), 1, "the other closed day is merged");
    assert_eq!(names(&part), old);
    assert_eq!(compact::read_compactions(dir).unwrap().len(), 1);
}

fn maintenance(asset: &str, ts: EventTime, n: u64) -> MaintenanceCompleted {
    MaintenanceCompleted {
        event_id: format!("m{n}"),
        correlation_id: format!("m{n}"),
        event_version: 1,
        proposal_id: None,
        asset_id: Arc::from(asset),
        kind: MaintenanceKind::Preventive,
        started_at: ts - 1000,
        ts,
        performed_by: "x".into(),
        notes: None,
    }
}

#[test]
fn ledger_files_are_merged_once_their_segment_is_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let t = DAY0 * MS_PER_DAY;
    write_rows_by_date(dir, "ledger-00000001.parquet", &[maintenance("b", t + 5, 1), maintenance("a", t + 9, 2)]).unwrap();
    write_rows_by_date(dir, "ledger-00000002.parquet", &[maintenance("a", t + 1, 3), maintenance("c", t + MS_PER_DAY, 4)])
        .unwrap();
    // Segment 2 is not marked compacted: the ledger may write its files again.
    let ledger = dir.join("_ledger");
    fs::create_dir_all(&ledger).unwrap();
    fs::write(ledger.join("wal-00000001.jsonl.compacted"), b"").unwrap();
    fs::write(ledger.join("wal-00000002.jsonl"), b"").unwrap();
    assert!(compact::closed_partitions(dir, "maintenance", 1).unwrap().is_empty());
    let report = compact::compact_all(dir, &CompactOptions::default()).unwrap();
    assert!(report.partitions.is_empty());
    let part = partition(dir, "maintenance", DAY0);
    assert_eq!(names(&part).len(), 2);

    fs::rename(ledger.join("wal-00000002.jsonl"), ledger.join("wal-00000002.jsonl.compacted")).unwrap();
    assert_eq!(compact::closed_partitions(dir, "maintenance", 1).unwrap(), vec![date(DAY0)]);
    let before = row_multiset(&part);
    let report = compact::compact_all(dir, &CompactOptions::default()).unwrap();
    assert_eq!(report.partitions.len(), 1);
    assert_eq!(row_multiset(&part), before);
    assert_eq!(keys(&only_file(&part), &["asset_id"], "ts"), vec![("a".into(), t + 1), ("a".into(), t + 9), ("b".into(), t + 5)]);
}

#[test]
fn one_compaction_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    three_days(dir);
    let lock = CompactionLock::acquire(dir).unwrap();
    let err = compact::compact_all(dir, &CompactOptions::default()).unwrap_err();
    assert!(err.to_string().contains("another compaction"), "{err}");
    assert_eq!(compact::recover_compactions(dir).unwrap(), 0);
    drop(lock);
    assert_eq!(compact::compact_all(dir, &CompactOptions::default()).unwrap().partitions.len(), 2);
}

#[test]
fn min_age_days_widens_the_open_window() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    three_days(dir);
    assert_eq!(compact::closed_partitions(dir, "readings", 1).unwrap(), vec![date(DAY0), date(DAY0 + 1)]);
    assert_eq!(compact::closed_partitions(dir, "readings", 2).unwrap(), vec![date(DAY0)]);
    assert_eq!(compact::closed_partitions(dir, "readings", 0).unwrap().len(), 3);
    let report = compact::compact_all(dir, &CompactOptions { min_age_days: 2, ..CompactOptions::default() }).unwrap();
    assert_eq!(report.partitions.len(), 1);
}

#[test]
fn a_torn_last_manifest_line_does_not_swallow_the_compaction_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    three_days(dir);
    let commits = read_manifest(dir).unwrap();
    // A crash in the middle of a commit's append left half a line.
    let mut f = fs::OpenOptions::new().append(true).open(history::manifest_path(dir)).unwrap();
    std::io::Write::write_all(&mut f, b"{\"run\":\"torn\",\"commit").unwrap();
    drop(f);
    let report = compact::compact_all(dir, &CompactOptions::default()).unwrap();
    assert_eq!(report.partitions.len(), 2);
    assert_eq!(compact::read_compactions(dir).unwrap().len(), 2, "both lines readable");
    assert_eq!(read_manifest(dir).unwrap(), commits);
    assert_eq!(history::recover(dir).unwrap(), (0, 0), "nothing left to finish");
}
