//! Compaction of the history: each closed date partition's files merged into one sorted file.
//!
//! A streaming or replay run leaves many files per date partition (a file per worker, table and
//! cut or hour); a query over one sorted file a day runs about twice as fast. [`compact_all`]
//! merges, for every table of [`crate::history`], each *closed* partition — one older than the
//! table's newest date by at least [`CompactOptions::min_age_days`] — that holds more than one
//! file; [`compact_partition`] merges one partition named by the caller.
//!
//! **Input:** the files `DATA/<table>/date=D/*.parquet`, each sorted by the table's key and time
//! (the writer's [`HistoryRow::sort_key`]). **Output:** one file
//! `DATA/<table>/date=D/compacted-<hash of the replaced names>.parquet` with the same rows, sorted
//! by the same key (a k-way merge on Arrow's row format, stable: ties keep file order), written
//! with the writers' own properties ([`history::writer_properties`]: schema, Snappy, row-group
//! size, sorting columns, dictionary settings). The merge streams: at most
//! [`CompactOptions::max_fan_in`] files are open at once, each holding a batch or two of
//! [`CompactOptions::batch_rows`] rows, plus the row group being encoded; a partition with more
//! files is merged in several passes through scratch files. Every input is checked to be sorted
//! as it is read (a file that is not stops the partition's compaction, which then changes nothing).
//!
//! **Steps (crash safety).** 1. The merged file is written into `DATA/_compaction/staging/…`
//! (temporary name, fsync, rename, fsync): invisible to queries, which read the table folders
//! only. 2. A line `{"compaction": {table, date, replaces, file, compacted_at}}` is appended to the
//! manifest and fsynced: from here on the compaction is decided. 3. The merged file is renamed
//! into the partition (fsync of the folder). 4. The replaced files are moved out of the partition
//! into `DATA/_compaction/trash/<their path>` (fsync). 5. A line
//! `{"compaction_done": {file, finished_at}}` is appended (so that recovery never looks at a
//! finished compaction again). [`recover_compactions`] (called by [`history::recover`], and by
//! every compaction before it starts) finishes each compaction whose line 2 is durable and line 5
//! is not — renames the staged file if it is still staged, moves the replaced files that still
//! exist to the trash once the merged file is in place, appends line 5 — and deletes everything
//! else under the staging folder: a crash before line 2 leaves the old files, and no visible
//! merged file. The replaced files are only moved once the merged file holding their rows is in
//! place, so no row is ever absent from the history.
//!
//! **Readers.** A query reads a consistent set of files whatever a compaction does meanwhile
//! (`vigil_queries`' file store): it does not read files that a merged file in place replaces
//! (their names are on the compaction's line, durable before the merged file appears), so between
//! steps 3 and 4 it sees each row once; and a query that listed the old files before step 3 still
//! reads them after step 4, from the trash. The trash is emptied by a later compaction (or
//! recovery), of the files whose compaction finished at least [`CompactOptions::trash_grace_ms`]
//! before — longer than a query may run.
//!
//! **Manifest.** Compaction lines are not commits: [`history::read_manifest`] skips them (they
//! lack a commit's fields), so [`history::resume_offsets`] — computed from the commits' stream
//! marks only — is unchanged by a compaction, and a restart neither reads again nor skips any
//! source record. The merged file's entry covers the union of the replaced files' source
//! positions (computed from its rows); [`visible_files`] applies the compactions to the commits'
//! files, for whoever needs the current files and the positions each covers.
//!
//! **Locking.** One compaction at a time per data dir: `DATA/_compaction/lock` ([`CompactionLock`],
//! an exclusive file lock, never deleted; a second compactor fails at once, and a recovery leaves
//! the compactions to the process holding it). Writers need not stop: a published
//! file is never changed again and its name is never used again for another file (its name is
//! unique to its run, worker and sequence; a merged file's to the files it replaces), and a
//! compaction deletes exactly the files it merged, listed by name, so a file a writer publishes
//! into the partition meanwhile simply stays beside the merged file (and is merged by the next
//! compaction). The one kind of file that may be rewritten in place is a ledger file
//! `ledger-<n>.parquet` ([`crate::ledger`] writes it again if it finds segment `n` not marked
//! compacted); such a file is merged only once `DATA/_ledger/wal-<n>.jsonl` no longer exists.
//! The closed-partition rule keeps compaction off the days writers are still filling, so that it
//! does not run again and again on the same day, not for safety.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::{cast, interleave_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimestampMillisecondType, UInt64Type};
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use vigil_events::{
    AnomalyDetected, DriftDetected, EventTime, HumanDecisionRequested, HumanDecisionSubmitted, Incident, IncidentAction,
    MaintenanceCompleted, MaintenancePredicted, MaintenanceScheduled, RejectedReading, SensorReading, WindowFeatures,
};

use crate::history::{self, fsync_dir, FileEntry, HistoryRow, SourceSpan};
use crate::{ConnectorError, Result};

/// Folder of the compaction's lock and staging area under the data dir.
pub const COMPACTION_DIR: &str = "_compaction";

/// Settings of a compaction.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// A partition is closed when its date is at least this many days before the newest date of
    /// its table ([`compact_all`] merges closed partitions only). Default 1.
    pub min_age_days: i64,
    /// Rows per row group of the merged file (the writers' `history.row_group_rows`). Default
    /// 128 Ki.
    pub row_group_rows: usize,
    /// Rows read at a time from each file, and written at a time. Default 8192.
    pub batch_rows: usize,
    /// Files merged in one pass (open at once). Default 64.
    pub max_fan_in: usize,
    /// Wall clock (ms), for the manifest lines.
    pub now_ms: fn() -> i64,
    /// Files a compaction replaced stay in `DATA/_compaction/trash` this long (ms) after it
    /// finished, for the queries planned before it (`history.replaced_grace_ms`); a later
    /// compaction or recovery deletes them. Keep it above the query time limit. Default 10 min.
    pub trash_grace_ms: i64,
    /// Testing only: stops at that step as a crash would (nothing cleaned up), with an error.
    #[doc(hidden)]
    pub crash_at: Option<CrashPoint>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            min_age_days: 1,
            row_group_rows: 128 * 1024,
            batch_rows: 8192,
            max_fan_in: 64,
            now_ms: wall_clock_ms,
            trash_grace_ms: DEFAULT_TRASH_GRACE_MS,
            crash_at: None,
        }
    }
}

/// Default of [`CompactOptions::trash_grace_ms`]: 10 minutes.
pub const DEFAULT_TRASH_GRACE_MS: i64 = 600_000;

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Testing only: where an injected crash stops a compaction.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The merged file is staged (fsynced); no manifest line.
    BeforeRecord,
    /// The manifest line is durable; the merged file is still staged.
    AfterRecord,
    /// The merged file is in the partition; the replaced files are not deleted yet.
    AfterRename,
}

/// A compaction, as its manifest line records it (`{"compaction": {…}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    /// Table.
    pub table: String,
    /// Date partition (`YYYY-MM-DD`).
    pub date: String,
    /// The files merged (paths relative to the data dir), deleted once the merged file is in place.
    pub replaces: Vec<String>,
    /// The merged file: its path, staged path, rows, partition-time range and the source
    /// positions it covers (the union of the replaced files').
    pub file: FileEntry,
    /// When the line was written (wall clock, ms).
    pub compacted_at: i64,
}

/// The end of a compaction, as its manifest line records it (`{"compaction_done": {…}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactionDone {
    /// The merged file's path (names the compaction).
    pub file: String,
    /// When the replaced files were gone (wall clock, ms).
    pub finished_at: i64,
}

#[derive(Serialize, Deserialize)]
struct CompactionLine {
    compaction: Compaction,
}

#[derive(Serialize, Deserialize)]
struct DoneLine {
    compaction_done: CompactionDone,
}

const COMPACTION_PREFIX: &str = "{\"compaction\":";
const DONE_PREFIX: &str = "{\"compaction_done\":";

/// One merged partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    /// Table.
    pub table: String,
    /// Date partition.
    pub date: String,
    /// Files merged.
    pub files_before: usize,
    /// Rows.
    pub rows: u64,
    /// Bytes of the files merged.
    pub bytes_before: u64,
    /// Bytes of the merged file.
    pub bytes_after: u64,
    /// The merged file, relative to the data dir.
    pub file: String,
}

/// A partition left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedPartition {
    /// Table.
    pub table: String,
    /// Date partition.
    pub date: String,
    /// Why (a file not sorted by the key, of another schema, unreadable, or an I/O error before
    /// the manifest line).
    pub reason: String,
}

/// What [`compact_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactionReport {
    /// Partitions merged.
    pub partitions: Vec<PartitionReport>,
    /// Partitions that could not be merged (left unchanged).
    pub skipped: Vec<SkippedPartition>,
    /// Interrupted compactions finished first.
    pub recovered: usize,
    /// Files merged, over every partition.
    pub files_before: usize,
    /// Files they became (one per partition).
    pub files_after: usize,
    /// Rows merged.
    pub rows: u64,
    /// Bytes of the files merged.
    pub bytes_before: u64,
    /// Bytes of the merged files.
    pub bytes_after: u64,
}

/// The per-data-dir compaction lock (`DATA/_compaction/lock`), held for a whole compaction.
pub struct CompactionLock {
    _file: File,
}

impl CompactionLock {
    /// Takes the lock; fails at once (`WouldBlock`) while another compaction holds it.
    pub fn acquire(data_dir: &Path) -> Result<CompactionLock> {
        Self::try_acquire(data_dir)?.ok_or_else(|| {
            let path = lock_path(data_dir);
            ConnectorError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::WouldBlock, "another compaction is running on this data dir"),
            )
        })
    }

    /// Takes the lock, or `None` while another compaction holds it.
    pub fn try_acquire(data_dir: &Path) -> Result<Option<CompactionLock>> {
        let dir = data_dir.join(COMPACTION_DIR);
        fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
        let path = lock_path(data_dir);
        let file = crate::open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(CompactionLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(ConnectorError::io(&path, e)),
        }
    }
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join(COMPACTION_DIR).join("lock")
}

fn staging_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(COMPACTION_DIR).join("staging")
}

/// Where a replaced file waits for the queries planned before its compaction: `DATA/` +
/// [`TRASH_DIR`] + its path relative to the data dir.
pub const TRASH_DIR: &str = "_compaction/trash";

fn trash_path(data_dir: &Path, rel: &str) -> PathBuf {
    data_dir.join(TRASH_DIR).join(rel)
}

/// How the rows of a table are ordered within its files: the columns behind the first two parts
/// of the table's [`HistoryRow::sort_key`], and those behind its partition time.
struct TableSpec {
    table: &'static str,
    schema: fn() -> SchemaRef,
    props: fn(usize) -> WriterProperties,
    /// The key is the first of these columns that is neither null nor empty, else "".
    key: &'static [&'static str],
    /// The time (null sorts first, as the writers' `EventTime::MIN`).
    time: &'static str,
    /// The partition time is the first of these columns that is not null.
    partition_time: &'static [&'static str],
    /// Whether the rows carry source positions (`source`, `source_offset`).
    positions: bool,
}

const fn spec<R: HistoryRow>(
    key: &'static [&'static str],
    time: &'static str,
    partition_time: &'static [&'static str],
    positions: bool,
) -> TableSpec {
    TableSpec { table: R::TABLE, schema: R::schema, props: history::writer_properties::<R>, key, time, partition_time, positions }
}

/// Every table of the history, with its order (mirrors the `sort_key` of each `HistoryRow`).
static TABLES: [TableSpec; 12] = [
    spec::<SensorReading>(&["sensor_id"], "ts", &["ts"], true),
    spec::<RejectedReading>(&["sensor_id"], "ts", &["ts", "rejected_at"], true),
    spec::<WindowFeatures>(&["sensor_id"], "window_start", &["window_start"], false),
    // Asset-level anomalies have no sensor (""): they sort first.
    spec::<AnomalyDetected>(&["sensor_id"], "ts", &["ts"], false),
    // `ts` holds the drift's `current_end`.
    spec::<DriftDetected>(&["sensor_id"], "ts", &["ts"], false),
    spec::<MaintenancePredicted>(&["asset_id"], "ts", &["ts"], false),
    spec::<MaintenanceScheduled>(&["asset_id"], "ts", &["ts"], false),
    spec::<HumanDecisionRequested>(&["asset_id"], "ts", &["ts"], false),
    spec::<HumanDecisionSubmitted>(&["asset_id"], "ts", &["ts"], false),
    spec::<MaintenanceCompleted>(&["asset_id"], "ts", &["ts"], false),
    spec::<Incident>(&["asset_id"], "ts", &["ts"], false),
    spec::<IncidentAction>(&["asset_id"], "ts", &["ts"], false),
];

/// The tables compaction knows (every table of the history).
pub fn tables() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.table).collect()
}

/// The Arrow schema of a history table's files.
pub fn table_schema(table: &str) -> Result<SchemaRef> {
    Ok((table_spec(table)?.schema)())
}

fn table_spec(table: &str) -> Result<&'static TableSpec> {
    TABLES.iter().find(|t| t.table == table).ok_or_else(|| ConnectorError::Invalid(format!("{table}: not a history table")))
}

fn day_of(date: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok().filter(|d| d.format("%Y-%m-%d").to_string() == date)
}

/// The `.parquet` files of a folder, by name.
fn parquet_files(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConnectorError::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| ConnectorError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".parquet") && e.file_type().is_ok_and(|t| t.is_file()) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a file of a partition may be merged: any file but a ledger file whose segment the
/// ledger may still write again (see the module doc).
fn mergeable(data_dir: &Path, name: &str) -> bool {
    let Some(n) = name.strip_prefix("ledger-").and_then(|r| r.strip_suffix(".parquet")).and_then(|n| n.parse::<u64>().ok())
    else {
        return true;
    };
    !data_dir.join(crate::ledger::LEDGER_DIR).join(format!("wal-{n:08}.jsonl")).exists()
}

fn partition_dir(data_dir: &Path, table: &str, date: &str) -> PathBuf {
    data_dir.join(table).join(format!("date={date}"))
}

/// The closed partitions of `table` with more than one mergeable file: dates at least
/// `min_age_days` before the newest date of the table (a date with at least one file).
pub fn closed_partitions(data_dir: &Path, table: &str, min_age_days: i64) -> Result<Vec<String>> {
    let dir = data_dir.join(table);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConnectorError::io(&dir, e)),
    };
    let mut dates: Vec<(chrono::NaiveDate, String, Vec<String>)> = Vec::new();
    for e in entries {
        let e = e.map_err(|e| ConnectorError::io(&dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        let Some(date) = name.strip_prefix("date=") else { continue };
        let Some(day) = day_of(date) else { continue };
        let files = parquet_files(&e.path())?;
        if !files.is_empty() {
            dates.push((day, date.to_string(), files));
        }
    }
    let Some(newest) = dates.iter().map(|d| d.0).max() else { return Ok(Vec::new()) };
    let mut out: Vec<String> = dates
        .into_iter()
        .filter(|(day, _, files)| {
            (newest - *day).num_days() >= min_age_days && files.iter().filter(|f| mergeable(data_dir, f)).count() > 1
        })
        .map(|d| d.1)
        .collect();
    out.sort();
    Ok(out)
}

/// Where a compaction failed: before its manifest line (nothing changed) or after (the next
/// recovery finishes it).
enum Failure {
    Before(ConnectorError),
    After(ConnectorError),
}

impl Failure {
    fn into_inner(self) -> ConnectorError {
        match self {
            Failure::Before(e) | Failure::After(e) => e,
        }
    }
}

fn crash(point: CrashPoint) -> ConnectorError {
    ConnectorError::Invalid(format!("injected crash ({point:?})"))
}

/// Merges the mergeable files of one date partition into one file (whatever the partition's age:
/// the caller chooses). `None` when it holds fewer than two. Takes the compaction lock (fails if
/// another compaction holds it) and first finishes interrupted compactions.
pub fn compact_partition(data_dir: &Path, table: &str, date: &str, opts: &CompactOptions) -> Result<Option<PartitionReport>> {
    let spec = table_spec(table)?;
    if day_of(date).is_none() {
        return Err(ConnectorError::Invalid(format!("{date}: not a date (YYYY-MM-DD)")));
    }
    let _lock = CompactionLock::acquire(data_dir)?;
    finish_pending(data_dir, opts)?;
    let out = compact_locked(data_dir, spec, date, opts).map_err(Failure::into_inner)?;
    clear_staging(data_dir);
    Ok(out)
}

/// Merges every closed partition of every table ([`closed_partitions`] with
/// `opts.min_age_days`). Takes the compaction lock (fails if another compaction holds it) and
/// first finishes interrupted compactions. A partition that cannot be merged (an error before
/// its manifest line is written) is left as it was and listed in `skipped`; an error from the
/// writing of its line on stops the run (the next recovery finishes that partition, or drops
/// it if the line did not become durable).
pub fn compact_all(data_dir: &Path, opts: &CompactOptions) -> Result<CompactionReport> {
    let _lock = CompactionLock::acquire(data_dir)?;
    let mut report = CompactionReport { recovered: finish_pending(data_dir, opts)?, ..CompactionReport::default() };
    for spec in &TABLES {
        for date in closed_partitions(data_dir, spec.table, opts.min_age_days)? {
            match compact_locked(data_dir, spec, &date, opts) {
                Ok(Some(p)) => {
                    report.files_before += p.files_before;
                    report.files_after += 1;
                    report.rows += p.rows;
                    report.bytes_before += p.bytes_before;
                    report.bytes_after += p.bytes_after;
                    report.partitions.push(p);
                }
                Ok(None) => {}
                Err(Failure::Before(e)) => {
                    tracing::warn!(table = spec.table, date = %date, error = %e, "partition not compacted");
                    report.skipped.push(SkippedPartition { table: spec.table.into(), date, reason: e.to_string() });
                }
                Err(Failure::After(e)) => return Err(e),
            }
        }
    }
    clear_staging(data_dir);
    Ok(report)
}

fn rel(table: &str, date: &str, name: &str) -> String {
    format!("{table}/date={date}/{name}")
}

fn compact_locked(
    data_dir: &Path,
    spec: &TableSpec,
    date: &str,
    opts: &CompactOptions,
) -> std::result::Result<Option<PartitionReport>, Failure> {
    let dir = partition_dir(data_dir, spec.table, date);
    let names: Vec<String> =
        parquet_files(&dir).map_err(Failure::Before)?.into_iter().filter(|n| mergeable(data_dir, n)).collect();
    if names.len() < 2 {
        return Ok(None);
    }
    let replaces: Vec<String> = names.iter().map(|n| rel(spec.table, date, n)).collect();
    let name = format!("compacted-{:016x}.parquet", vigil_events::stable_hash_str(&replaces.join("\n")));
    let path = rel(spec.table, date, &name);
    let staged = format!("{COMPACTION_DIR}/staging/{path}");
    if replaces.contains(&path) || data_dir.join(&path).exists() {
        return Err(Failure::Before(ConnectorError::Invalid(format!("{path}: exists already"))));
    }
    let inputs: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let mut bytes_before = 0;
    for p in &inputs {
        bytes_before += fs::metadata(p).map_err(|e| Failure::Before(ConnectorError::io(p, e)))?.len();
    }
    let staged_abs = data_dir.join(&staged);
    let stats =
        merge_partition(spec, &inputs, &staged_abs, &staging_dir(data_dir).join("scratch"), opts).map_err(Failure::Before)?;
    let bytes_after = fs::metadata(&staged_abs).map_err(|e| Failure::Before(ConnectorError::io(&staged_abs, e)))?.len();
    let c = Compaction {
        table: spec.table.into(),
        date: date.into(),
        replaces,
        file: FileEntry {
            table: spec.table.into(),
            path: path.clone(),
            staged,
            rows: stats.rows,
            min_ts: stats.min_ts,
            max_ts: stats.max_ts,
            sources: stats.spans.into_values().collect(),
        },
        compacted_at: (opts.now_ms)(),
    };
    if opts.crash_at == Some(CrashPoint::BeforeRecord) {
        return Err(Failure::Before(crash(CrashPoint::BeforeRecord)));
    }
    // A failed append may still have left the line durable: the staged file stays for recovery.
    append_line(data_dir, &CompactionLine { compaction: c.clone() }).map_err(Failure::After)?;
    // The compaction is decided: what follows is what recovery does.
    if opts.crash_at == Some(CrashPoint::AfterRecord) {
        return Err(Failure::After(crash(CrashPoint::AfterRecord)));
    }
    finish(data_dir, &c, opts).map_err(Failure::After)?;
    tracing::info!(table = spec.table, date, files = names.len(), rows = c.file.rows, "partition compacted");
    Ok(Some(PartitionReport {
        table: spec.table.into(),
        date: date.into(),
        files_before: names.len(),
        rows: c.file.rows,
        bytes_before,
        bytes_after,
        file: path,
    }))
}

/// Finishes a compaction whose line is durable: the merged file into place, then the replaced
/// files moved to the trash, then the done line. Returns false (and changes nothing) when the merged file
/// is neither staged nor in place.
fn finish(data_dir: &Path, c: &Compaction, opts: &CompactOptions) -> Result<bool> {
    let staged = data_dir.join(&c.file.staged);
    let target = data_dir.join(&c.file.path);
    let dir = target.parent().map(Path::to_path_buf).unwrap_or_else(|| data_dir.to_path_buf());
    if staged.exists() {
        fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
        fs::rename(&staged, &target).map_err(|e| ConnectorError::io(&target, e))?;
        fsync_dir(&dir);
    }
    if opts.crash_at == Some(CrashPoint::AfterRename) {
        return Err(crash(CrashPoint::AfterRename));
    }
    if !target.exists() {
        // Neither staged nor in place: its rows are in the files it was to replace, which stay.
        tracing::warn!(file = %c.file.path, "a recorded compaction's merged file is missing: its files are kept");
        return Ok(false);
    }
    // The table's Delta log swaps the files (an OPTIMIZE commit) before they leave the folder,
    // so a Delta reader's latest snapshot never names a file that is gone.
    let prefix = format!("{}/", c.table);
    if let Some(merged) = c.file.path.strip_prefix(&prefix) {
        let replaces: Vec<String> = c.replaces.iter().filter_map(|r| r.strip_prefix(&prefix).map(str::to_string)).collect();
        crate::delta::publish_compaction(data_dir, &c.table, merged, c.file.rows, &replaces)?;
    }
    // Moved, not deleted: a query that listed them before the merged file appeared reads them
    // from the trash (renaming keeps their size and time, so what it planned still holds).
    let mut trash_dirs = std::collections::BTreeSet::new();
    for r in &c.replaces {
        let p = data_dir.join(r);
        if !p.exists() {
            continue;
        }
        let to = trash_path(data_dir, r);
        if let Some(d) = to.parent() {
            fs::create_dir_all(d).map_err(|e| ConnectorError::io(d, e))?;
            trash_dirs.insert(d.to_path_buf());
        }
        if let Err(e) = fs::rename(&p, &to) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(ConnectorError::io(&p, e));
            }
        }
    }
    fsync_dir(&dir);
    for d in &trash_dirs {
        fsync_dir(d);
    }
    let done = CompactionDone { file: c.file.path.clone(), finished_at: (opts.now_ms)() };
    append_line(data_dir, &DoneLine { compaction_done: done })?;
    Ok(true)
}

/// Finishes the compactions whose manifest line is durable but that did not finish (the merged
/// file renamed into place if still staged, the replaced files deleted), and deletes what is
/// left in the staging folder (merges whose line never became durable). Returns the compactions
/// finished. Does nothing while another process compacts (it finishes its own work).
pub fn recover_compactions(data_dir: &Path) -> Result<usize> {
    // The lock file is created before a compaction writes anything, and never deleted: without
    // it no compaction ever ran here (and the manifest need not be read again).
    if !lock_path(data_dir).exists() {
        return Ok(0);
    }
    let Some(_lock) = CompactionLock::try_acquire(data_dir)? else { return Ok(0) };
    finish_pending(data_dir, &CompactOptions::default())
}

/// Under the lock: finishes every recorded compaction without a done line, clears the staging,
/// and deletes the trashed files whose compaction finished at least `opts.trash_grace_ms` ago.
fn finish_pending(data_dir: &Path, opts: &CompactOptions) -> Result<usize> {
    let text = manifest_text(data_dir)?;
    let mut pending: Vec<Compaction> = Vec::new();
    // Files each finished compaction replaced, and when it finished.
    let mut done: Vec<(Vec<String>, i64)> = Vec::new();
    let trash = data_dir.join(TRASH_DIR);
    let has_trash = trash.exists();
    for line in text.lines() {
        if line.starts_with(COMPACTION_PREFIX) {
            if let Ok(c) = serde_json::from_str::<CompactionLine>(line) {
                pending.push(c.compaction);
            }
        } else if line.starts_with(DONE_PREFIX) {
            if let Ok(d) = serde_json::from_str::<DoneLine>(line) {
                if let Some(i) = pending.iter().position(|c| c.file.path == d.compaction_done.file) {
                    let c = pending.remove(i);
                    if has_trash {
                        done.push((c.replaces, d.compaction_done.finished_at));
                    }
                }
            }
        }
    }
    let mut finished = 0;
    let finish_opts = CompactOptions { crash_at: None, ..opts.clone() };
    for c in &pending {
        if finish(data_dir, c, &finish_opts)? {
            finished += 1;
            tracing::info!(file = %c.file.path, "interrupted compaction finished");
        }
    }
    clear_staging(data_dir);
    let until = (opts.now_ms)().saturating_sub(opts.trash_grace_ms.max(0));
    for (replaces, finished_at) in done.iter().filter(|(_, at)| *at <= until) {
        for r in replaces {
            let p = trash_path(data_dir, r);
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %p.display(), finished_at, error = %e, "cannot delete a replaced file");
                }
            }
        }
    }
    if has_trash {
        remove_empty_dirs(&trash);
    }
    Ok(finished)
}

/// Removes the empty folders under `dir` (and `dir` itself if it ends up empty).
fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    // Fails (and leaves it) while it holds anything.
    let _ = fs::remove_dir(dir);
}

fn clear_staging(data_dir: &Path) {
    let dir = staging_dir(data_dir);
    if let Err(e) = fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot clear the compaction staging folder");
        }
    }
}

fn manifest_text(data_dir: &Path) -> Result<String> {
    let path = history::manifest_path(data_dir);
    match fs::read_to_string(&path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ConnectorError::io(&path, e)),
    }
}

/// The compactions the manifest records, in order (finished or not).
pub fn read_compactions(data_dir: &Path) -> Result<Vec<Compaction>> {
    Ok(manifest_text(data_dir)?
        .lines()
        .filter(|l| l.starts_with(COMPACTION_PREFIX))
        .filter_map(|l| serde_json::from_str::<CompactionLine>(l).ok())
        .map(|c| c.compaction)
        .collect())
}

/// The files of the history as the manifest says they are now: every commit's files, with each
/// compaction's replaced files removed and its merged file added, by path — for a compaction
/// whose merged file is in place (one still staged, or whose merged file recovery found missing
/// and so kept the old files, leaves the old files listed). Files written outside the manifest
/// (the ledger's) are not listed.
pub fn visible_files(data_dir: &Path) -> Result<Vec<FileEntry>> {
    let mut files: BTreeMap<String, FileEntry> = BTreeMap::new();
    for line in manifest_text(data_dir)?.lines() {
        if line.starts_with(COMPACTION_PREFIX) {
            if let Ok(c) = serde_json::from_str::<CompactionLine>(line).map_err(|_| ()).and_then(|c| {
                if data_dir.join(&c.compaction.file.path).is_file() {
                    Ok(c)
                } else {
                    Err(())
                }
            }) {
                for r in &c.compaction.replaces {
                    files.remove(r);
                }
                files.insert(c.compaction.file.path.clone(), c.compaction.file);
            }
        } else if let Ok(c) = serde_json::from_str::<history::Commit>(line) {
            for f in c.files {
                files.insert(f.path.clone(), f);
            }
        }
    }
    Ok(files.into_values().collect())
}

/// Appends one line to the manifest (under its lock, as commits are), fsynced. A torn last line
/// left by a crash is ended first, so that this line stays readable.
fn append_line<T: Serialize>(data_dir: &Path, value: &T) -> Result<()> {
    let path = history::manifest_path(data_dir);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ConnectorError::io(dir, e))?;
    }
    let mut line = serde_json::to_vec(value).map_err(|e| ConnectorError::Invalid(e.to_string()))?;
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).read(true).append(true).open(&path).map_err(|e| ConnectorError::io(&path, e))?;
    f.lock().map_err(|e| ConnectorError::io(&path, e))?;
    let result = (|| {
        let len = f.metadata().map_err(|e| ConnectorError::io(&path, e))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1)).map_err(|e| ConnectorError::io(&path, e))?;
            f.read_exact(&mut last).map_err(|e| ConnectorError::io(&path, e))?;
            if last[0] != b'\n' {
                line.insert(0, b'\n');
            }
        }
        f.write_all(&line).map_err(|e| ConnectorError::io(&path, e))?;
        f.sync_all().map_err(|e| ConnectorError::io(&path, e))
    })();
    let _ = f.unlock();
    result
}

/// What the merge learned of the rows (final pass only).
struct MergeStats {
    rows: u64,
    min_ts: EventTime,
    max_ts: EventTime,
    spans: BTreeMap<String, SourceSpan>,
}

/// Merges `inputs` into `out` (temporary name, fsync, rename, fsync), in several passes through
/// scratch files when there are more than `max_fan_in`.
fn merge_partition(
    spec: &TableSpec,
    inputs: &[PathBuf],
    out: &Path,
    scratch: &Path,
    opts: &CompactOptions,
) -> Result<MergeStats> {
    let fan_in = opts.max_fan_in.max(2);
    let mut expected = 0u64;
    for p in inputs {
        expected += open_reader(spec, p, opts.batch_rows)?.1;
    }
    let mut level: Vec<PathBuf> = inputs.to_vec();
    let mut n = 0usize;
    while level.len() > fan_in {
        fs::create_dir_all(scratch).map_err(|e| ConnectorError::io(scratch, e))?;
        let mut next = Vec::new();
        // Groups of consecutive files, merged in order: ties keep the file order across passes.
        for group in level.chunks(fan_in) {
            if let [one] = group {
                next.push(one.clone());
                continue;
            }
            let p = scratch.join(format!("pass-{n:06}.parquet"));
            n += 1;
            merge_into(spec, group, &p, opts, false)?;
            next.push(p);
        }
        // Scratch files merged in this pass are done with (one carried over as it is is not).
        for p in level.iter().filter(|p| p.starts_with(scratch) && !next.contains(p)) {
            let _ = fs::remove_file(p);
        }
        level = next;
    }
    let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
    let tmp = out.with_extension("parquet.tmp");
    let stats = merge_into(spec, &level, &tmp, opts, true)?;
    for p in level.iter().filter(|p| p.starts_with(scratch)) {
        let _ = fs::remove_file(p);
    }
    if stats.rows != expected {
        return Err(ConnectorError::Invalid(format!("{}: merged {} rows of {expected}", out.display(), stats.rows)));
    }
    fs::rename(&tmp, out).map_err(|e| ConnectorError::io(out, e))?;
    fsync_dir(&dir);
    Ok(stats)
}

/// A reader of one input, checked against the table's schema, and its row count (footer).
fn open_reader(spec: &TableSpec, path: &Path, batch_rows: usize) -> Result<(ParquetRecordBatchReader, u64)> {
    let file = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ConnectorError::parquet(path, e))?;
    let want = (spec.schema)();
    let got = builder.schema();
    let same = got.fields().len() == want.fields().len()
        && got
            .fields()
            .iter()
            .zip(want.fields().iter())
            .all(|(g, w)| g.name() == w.name() && g.data_type() == w.data_type() && g.is_nullable() == w.is_nullable());
    if !same {
        return Err(ConnectorError::Invalid(format!(
            "{}: its columns are not those of the {} table",
            path.display(),
            spec.table
        )));
    }
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader = builder.with_batch_size(batch_rows.max(1)).build().map_err(|e| ConnectorError::parquet(path, e))?;
    Ok((reader, rows))
}

/// One input of a merge: its reader, the batch being merged (a slot of the merge's batches) and
/// that batch's keys in row format.
struct Cursor {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    slot: usize,
    rows: Rows,
    pos: usize,
}

/// What a merge pass shares between its cursors.
struct Pass<'a> {
    spec: &'a TableSpec,
    schema: SchemaRef,
    converter: RowConverter,
    /// Batches referenced by the output being built or by a cursor.
    batches: Vec<RecordBatch>,
    stats: Option<MergeStats>,
}

impl Pass<'_> {
    /// Reads the next non-empty batch of `reader`, checks it is sorted (and follows `after`, the
    /// previous batch's last key), and returns it in a new slot with its keys.
    fn load(
        &mut self,
        reader: &mut ParquetRecordBatchReader,
        path: &Path,
        after: Option<OwnedRow>,
    ) -> Result<Option<(usize, Rows)>> {
        let batch = loop {
            match reader.next() {
                None => return Ok(None),
                Some(Err(e)) => return Err(ConnectorError::parquet(path, e)),
                Some(Ok(b)) if b.num_rows() == 0 => {}
                Some(Ok(b)) => break b,
            }
        };
        let batch =
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(|e| ConnectorError::parquet(path, e))?;
        let rows =
            self.converter.convert_columns(&sort_columns(self.spec, &batch)?).map_err(|e| ConnectorError::parquet(path, e))?;
        let unsorted =
            after.is_some_and(|a| rows.row(0) < a.row()) || (1..rows.num_rows()).any(|i| rows.row(i) < rows.row(i - 1));
        if unsorted {
            return Err(ConnectorError::Invalid(format!(
                "{}: not sorted by the {} table's key and time",
                path.display(),
                self.spec.table
            )));
        }
        if let Some(stats) = &mut self.stats {
            observe(self.spec, &batch, stats)?;
        }
        self.batches.push(batch);
        Ok(Some((self.batches.len() - 1, rows)))
    }
}

/// The key and time columns of a batch, for the row converter.
fn sort_columns(spec: &TableSpec, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    let column = |name: &str| {
        batch.column_by_name(name).cloned().ok_or_else(|| ConnectorError::Invalid(format!("{}: no column {name}", spec.table)))
    };
    let first = column(spec.key[0])?;
    let key: ArrayRef = if spec.key.len() == 1 && first.null_count() == 0 {
        first
    } else {
        let mut cols = Vec::with_capacity(spec.key.len());
        for k in spec.key {
            let c = column(k)?;
            let strings = c
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| ConnectorError::Invalid(format!("{}: column {k} is not text", spec.table)))?;
            cols.push(strings);
        }
        let key: StringArray = (0..batch.num_rows())
            .map(|i| Some(cols.iter().find(|c| c.is_valid(i) && !c.value(i).is_empty()).map_or("", |c| c.value(i))))
            .collect();
        std::sync::Arc::new(key)
    };
    Ok(vec![key, column(spec.time)?])
}

/// Adds a batch's rows to the statistics: partition-time range, source positions.
fn observe(spec: &TableSpec, batch: &RecordBatch, stats: &mut MergeStats) -> Result<()> {
    let mut times = Vec::with_capacity(spec.partition_time.len());
    for name in spec.partition_time {
        let c = batch.column_by_name(name).ok_or_else(|| ConnectorError::Invalid(format!("{}: no column {name}", spec.table)))?;
        let t = c
            .as_primitive_opt::<TimestampMillisecondType>()
            .cloned()
            .ok_or_else(|| ConnectorError::Invalid(format!("{}: column {name} is not a time", spec.table)))?;
        times.push(t);
    }
    for i in 0..batch.num_rows() {
        if let Some(t) = times.iter().find(|c| c.is_valid(i)).map(|c| c.value(i)) {
            stats.min_ts = stats.min_ts.min(t);
            stats.max_ts = stats.max_ts.max(t);
        }
    }
    stats.rows += batch.num_rows() as u64;
    if !spec.positions {
        return Ok(());
    }
    let missing = |name: &str| ConnectorError::Invalid(format!("{}: no column {name}", spec.table));
    let source = batch.column_by_name("source").ok_or_else(|| missing("source"))?;
    let source = cast(source, &DataType::Utf8).map_err(|e| ConnectorError::Arrow(e.to_string()))?;
    let source = source.as_string::<i32>();
    let offset = batch.column_by_name("source_offset").ok_or_else(|| missing("source_offset"))?;
    let offset =
        offset.as_primitive_opt::<UInt64Type>().ok_or_else(|| ConnectorError::Invalid("source_offset is not a u64".into()))?;
    for i in 0..batch.num_rows() {
        let (name, off) = (source.value(i), offset.value(i));
        match stats.spans.get_mut(name) {
            Some(s) => {
                s.first = s.first.min(off);
                s.last = s.last.max(off);
                s.records += 1;
            }
            None => {
                stats.spans.insert(name.to_string(), SourceSpan { source: name.to_string(), first: off, last: off, records: 1 });
            }
        }
    }
    Ok(())
}

fn less(cursors: &[Cursor], a: usize, b: usize) -> bool {
    let (ra, rb) = (cursors[a].rows.row(cursors[a].pos), cursors[b].rows.row(cursors[b].pos));
    ra < rb || (ra == rb && a < b)
}

fn sift_down(heap: &mut [usize], cursors: &[Cursor], mut i: usize) {
    loop {
        let l = 2 * i + 1;
        if l >= heap.len() {
            return;
        }
        let m = if l + 1 < heap.len() && less(cursors, heap[l + 1], heap[l]) { l + 1 } else { l };
        if !less(cursors, heap[m], heap[i]) {
            return;
        }
        heap.swap(i, m);
        i = m;
    }
}

/// One merge pass: `inputs` (each sorted) into the file `out`, sorted; ties keep input order.
fn merge_into(spec: &TableSpec, inputs: &[PathBuf], out: &Path, opts: &CompactOptions, final_pass: bool) -> Result<MergeStats> {
    let schema = (spec.schema)();
    let time_type = schema
        .field_with_name(spec.time)
        .map_err(|e| ConnectorError::Invalid(format!("{}: {e}", spec.table)))?
        .data_type()
        .clone();
    let converter = RowConverter::new(vec![
        SortField::new(DataType::Utf8),
        SortField::new_with_options(time_type, arrow::compute::SortOptions { descending: false, nulls_first: true }),
    ])
    .map_err(|e| ConnectorError::Arrow(e.to_string()))?;
    let stats =
        final_pass.then(|| MergeStats { rows: 0, min_ts: EventTime::MAX, max_ts: EventTime::MIN, spans: BTreeMap::new() });
    let mut pass = Pass { spec, schema: schema.clone(), converter, batches: Vec::new(), stats };
    let mut cursors = Vec::with_capacity(inputs.len());
    for p in inputs {
        let (mut reader, _) = open_reader(spec, p, opts.batch_rows)?;
        if let Some((slot, rows)) = pass.load(&mut reader, p, None)? {
            cursors.push(Cursor { path: p.clone(), reader, slot, rows, pos: 0 });
        }
    }
    let file = File::create(out).map_err(|e| ConnectorError::io(out, e))?;
    let mut w = ArrowWriter::try_new(file, schema, Some((spec.props)(opts.row_group_rows.max(1))))
        .map_err(|e| ConnectorError::parquet(out, e))?;
    let mut heap: Vec<usize> = (0..cursors.len()).collect();
    for i in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, &cursors, i);
    }
    let chunk = opts.batch_rows.max(1);
    let mut indices: Vec<(usize, usize)> = Vec::with_capacity(chunk);
    let mut written = 0u64;
    while let Some(&top) = heap.first() {
        let c = &mut cursors[top];
        indices.push((c.slot, c.pos));
        c.pos += 1;
        if c.pos == c.rows.num_rows() {
            let last = c.rows.row(c.pos - 1).owned();
            match pass.load(&mut c.reader, &c.path, Some(last))? {
                Some((slot, rows)) => {
                    c.slot = slot;
                    c.rows = rows;
                    c.pos = 0;
                }
                None => {
                    heap.swap_remove(0);
                }
            }
        }
        sift_down(&mut heap, &cursors, 0);
        if indices.len() >= chunk || heap.is_empty() {
            written += write_chunk(&mut w, &mut pass.batches, &mut indices, &heap, &mut cursors, out)?;
        }
    }
    let file = w.into_inner().map_err(|e| ConnectorError::parquet(out, e))?;
    if final_pass {
        file.sync_all().map_err(|e| ConnectorError::io(out, e))?;
    }
    let mut stats =
        pass.stats.unwrap_or(MergeStats { rows: 0, min_ts: EventTime::MAX, max_ts: EventTime::MIN, spans: BTreeMap::new() });
    stats.rows = written;
    Ok(stats)
}

/// Writes the rows picked so far and drops the batches no cursor still reads.
fn write_chunk(
    w: &mut ArrowWriter<File>,
    batches: &mut Vec<RecordBatch>,
    indices: &mut Vec<(usize, usize)>,
    heap: &[usize],
    cursors: &mut [Cursor],
    out: &Path,
) -> Result<u64> {
    if indices.is_empty() {
        return Ok(0);
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let merged = interleave_record_batch(&refs, indices).map_err(|e| ConnectorError::parquet(out, e))?;
    w.write(&merged).map_err(|e| ConnectorError::parquet(out, e))?;
    let n = indices.len() as u64;
    indices.clear();
    let mut kept = Vec::with_capacity(heap.len());
    for &i in heap {
        kept.push(batches[cursors[i].slot].clone());
        cursors[i].slot = kept.len() - 1;
    }
    *batches = kept;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_spec_names_columns_of_its_table() {
        for t in &TABLES {
            let schema = (t.schema)();
            for k in t.key {
                assert_eq!(schema.field_with_name(k).unwrap().data_type(), &DataType::Utf8, "{}.{k}", t.table);
            }
            for c in std::iter::once(&t.time).chain(t.partition_time) {
                assert!(matches!(schema.field_with_name(c).unwrap().data_type(), DataType::Timestamp(_, _)), "{}.{c}", t.table);
            }
            // The sorting columns the writers declare are the key's first column and the time.
            let props = (t.props)(10);
            let sorting = props.sorting_columns().unwrap();
            assert_eq!(schema.field(sorting[0].column_idx as usize).name(), t.key[0], "{}", t.table);
            assert_eq!(schema.field(sorting[1].column_idx as usize).name(), t.time, "{}", t.table);
        }
        let mut names = tables();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLES.len());
    }

    #[test]
    fn dates_are_checked() {
        assert!(day_of("2024-02-29").is_some());
        assert!(day_of("2024-2-29").is_none());
        assert!(day_of("../x").is_none());
    }
}
