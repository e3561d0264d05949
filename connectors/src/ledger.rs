//! The planning ledger: human decisions, schedule changes and maintenance records, durable
//! before they are acknowledged.
//!
//! Input: [`LedgerRecord`]s from the API (a decision, the schedule change it causes, a
//! maintenance completion). Output: the records, in order, to a caller-defined state
//! ([`LedgerState`]) and to the history tables `decisions`, `schedule`, `maintenance` and
//! `incident_actions`.
//!
//! Layout under `DATA/_ledger/`: segments `wal-<n>.jsonl`, one record a line
//! (`{"table": "decisions", "row": {…}}`, the row being the table's columns with times in
//! milliseconds). [`Ledger::append_with`] checks the new records against the state, applies them,
//! and hands them to the writer thread, which appends every record waiting (group commit),
//! `fdatasync`s once, and only then answers: an acknowledged record is on disk. Once a segment
//! is closed (it reached its size, or the ledger was opened again) it is compacted into Parquet
//! files `DATA/<table>/date=D/ledger-<n>.parquet` (deterministic names: a compaction repeated
//! after a crash rewrites the same files) and renamed `wal-<n>.jsonl.compacted`, kept as the
//! audit trail the state is rebuilt from. The SQL side reads the live `*.jsonl` segments beside
//! the Parquet files, so a record is queryable as soon as it is acknowledged.
//!
//! State: the caller's state (rebuilt from every segment at open), the open segment. A failed
//! write poisons the ledger: the state may hold a record that is not on disk, so every later
//! append fails until the process restarts and rebuilds from what is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use vigil_events::{HumanDecisionSubmitted, IncidentAction, MaintenanceCompleted, MaintenanceScheduled};

use crate::history::write_rows_by_date;
use crate::{ConnectorError, Result};

/// Folder of the ledger under the data directory.
pub const LEDGER_DIR: &str = "_ledger";

/// One record of the ledger, tagged with its table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "table", content = "row")]
pub enum LedgerRecord {
    /// A person's decision (`decisions`).
    #[serde(rename = "decisions")]
    Decision(HumanDecisionSubmitted),
    /// A change of a proposal's status (`schedule`).
    #[serde(rename = "schedule")]
    Schedule(MaintenanceScheduled),
    /// Maintenance done (`maintenance`).
    #[serde(rename = "maintenance")]
    Maintenance(MaintenanceCompleted),
    /// A person's action on an incident (`incident_actions`).
    #[serde(rename = "incident_actions")]
    IncidentAction(IncidentAction),
}

/// What the ledger's owner keeps of the records (indexes for its checks and reads).
pub trait LedgerState: Default + Send + 'static {
    /// Takes one record, in ledger order.
    fn apply(&mut self, record: &LedgerRecord);
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError<E> {
    /// The caller's check refused it; nothing was written.
    #[error(transparent)]
    Refused(E),
    /// The ledger could not make it durable (nor anything after it until a restart).
    #[error("ledger: {0}")]
    Failed(String),
}

/// Settings of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// A segment is closed and compacted once it holds this many bytes.
    pub segment_bytes: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig { segment_bytes: 4 << 20 }
    }
}

struct Job {
    lines: Vec<u8>,
    done: tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
}

struct Inner<S> {
    data_dir: PathBuf,
    state: Mutex<S>,
    tx: Mutex<Option<crossbeam_channel::Sender<Job>>>,
    failed: Arc<AtomicBool>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    lock: Mutex<Option<File>>,
}

/// The ledger; cheap to clone (shared).
pub struct Ledger<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Ledger<S> {
    fn clone(&self) -> Self {
        Ledger { inner: self.inner.clone() }
    }
}

fn lock_state<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    // A panic while the state was locked leaves it as the last apply left it; the ledger is then
    // poisoned for writes anyway (see `append_with`), reads may go on.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("wal-{n:08}.jsonl"))
}

/// Segments of the ledger folder: (number, path, compacted).
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf, bool)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ConnectorError::io(dir, e)),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("wal-") else { continue };
        let (num, compacted) = if let Some(n) = rest.strip_suffix(".jsonl.compacted") {
            (n, true)
        } else if let Some(n) = rest.strip_suffix(".jsonl") {
            (n, false)
        } else {
            continue;
        };
        if let Ok(n) = num.parse::<u64>() {
            out.push((n, e.path(), compacted));
        }
    }
    out.sort_by_key(|s| s.0);
    Ok(out)
}

/// Reads a segment's records. A torn last line (a crash in the middle of a write that was never
/// acknowledged) ends the segment; with `repair` the file is cut back to its last whole record.
fn read_segment(path: &Path, repair: bool) -> Result<Vec<LedgerRecord>> {
    let file = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut good_bytes = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| ConnectorError::io(path, e))?;
        if n == 0 {
            break;
        }
        let whole = line.last() == Some(&b'\n');
        match serde_json::from_slice::<LedgerRecord>(&line) {
            Ok(r) if whole => {
                out.push(r);
                good_bytes += n as u64;
            }
            _ => {
                tracing::warn!(path = %path.display(), offset = good_bytes, "ledger segment ends in a torn record (never acknowledged): cut there");
                if repair {
                    let f = OpenOptions::new().write(true).open(path).map_err(|e| ConnectorError::io(path, e))?;
                    f.set_len(good_bytes).map_err(|e| ConnectorError::io(path, e))?;
                    f.sync_all().map_err(|e| ConnectorError::io(path, e))?;
                }
                break;
            }
        }
    }
    Ok(out)
}

/// Writes one table's rows of segment `version` as Parquet files (one a date) and commits them
/// to the table's Delta log as that transaction version of [`crate::delta::LEDGER_APP_ID`]. A
/// table whose log already holds the segment (a crash came after its commit) is left alone: a
/// committed file is never written again.
fn publish_table_rows<R: crate::history::HistoryRow>(data_dir: &Path, name: &str, version: i64, rows: &[R]) -> Result<()> {
    if rows.is_empty() || crate::delta::has_transaction(data_dir, R::TABLE, crate::delta::LEDGER_APP_ID, version)? {
        return Ok(());
    }
    let table_dir = data_dir.join(R::TABLE);
    let mut files = Vec::new();
    for path in write_rows_by_date(data_dir, name, rows)? {
        let rel = path
            .strip_prefix(&table_dir)
            .map_err(|_| ConnectorError::Invalid(format!("{}: not in its table", path.display())))?;
        files.push((rel.to_string_lossy().into_owned(), None));
    }
    crate::delta::publish_table(data_dir, R::TABLE, crate::delta::LEDGER_APP_ID, version, &files)?;
    Ok(())
}

/// Writes a closed segment's records as Parquet and marks it compacted.
fn compact(data_dir: &Path, n: u64, path: &Path, records: &[LedgerRecord]) -> Result<()> {
    let name = format!("ledger-{n:08}.parquet");
    let mut decisions = Vec::new();
    let mut schedule = Vec::new();
    let mut maintenance = Vec::new();
    let mut incident_actions = Vec::new();
    for r in records {
        match r {
            LedgerRecord::Decision(d) => decisions.push(d.clone()),
            LedgerRecord::Schedule(s) => schedule.push(s.clone()),
            LedgerRecord::Maintenance(m) => maintenance.push(m.clone()),
            LedgerRecord::IncidentAction(a) => incident_actions.push(a.clone()),
        }
    }
    let version = i64::try_from(n).unwrap_or(i64::MAX);
    publish_table_rows(data_dir, &name, version, &decisions)?;
    publish_table_rows(data_dir, &name, version, &schedule)?;
    publish_table_rows(data_dir, &name, version, &maintenance)?;
    publish_table_rows(data_dir, &name, version, &incident_actions)?;
    let done = path.with_extension("jsonl.compacted");
    fs::rename(path, &done).map_err(|e| ConnectorError::io(path, e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    tracing::debug!(segment = n, records = records.len(), "ledger segment compacted");
    Ok(())
}

impl<S: LedgerState> Ledger<S> {
    /// Opens the ledger of `data_dir`: rebuilds the state from every segment, compacts the
    /// segments a previous process left open, and starts a new segment and its writer thread.
    /// One process at a time: a second open of the same directory fails.
    pub fn open(data_dir: &Path, cfg: LedgerConfig) -> Result<Self> {
        let dir = data_dir.join(LEDGER_DIR);
        fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
        let lock_path = dir.join("ledger.lock");
        let lock = crate::open_lock_file(&lock_path)?;
        if lock.try_lock().is_err() {
            return Err(ConnectorError::io(
                &lock_path,
                std::io::Error::new(std::io::ErrorKind::WouldBlock, "the ledger is open in another process"),
            ));
        }
        let mut state = S::default();
        let mut next = 1;
        for (n, path, compacted) in segments(&dir)? {
            let records = read_segment(&path, !compacted)?;
            for r in &records {
                state.apply(r);
            }
            if !compacted {
                compact(data_dir, n, &path, &records)?;
            }
            next = n + 1;
        }
        let failed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let writer = Writer { data_dir: data_dir.to_path_buf(), dir, cfg, next, failed: failed.clone() };
        let handle = std::thread::Builder::new()
            .name("vigil-ledger".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| ConnectorError::io(data_dir, e))?;
        Ok(Ledger {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                state: Mutex::new(state),
                tx: Mutex::new(Some(tx)),
                failed,
                writer: Mutex::new(Some(handle)),
                lock: Mutex::new(Some(lock)),
            }),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Reads the state.
    pub fn read<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&lock_state(&self.inner.state))
    }

    /// Whether a write failed (appends are refused until a restart).
    pub fn is_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Relaxed)
    }

    /// Checks and appends: `check` sees the state and returns the records to append (or refuses);
    /// they are applied to the state at once — so a concurrent check sees them — and the call
    /// returns once they are on disk. Returns the records appended.
    pub async fn append_with<E>(
        &self,
        check: impl FnOnce(&S) -> std::result::Result<Vec<LedgerRecord>, E>,
    ) -> std::result::Result<Vec<LedgerRecord>, AppendError<E>> {
        let (records, done) = self.stage(check)?;
        if let Some(done) = done {
            match done.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(AppendError::Failed(e)),
                Err(_) => return Err(AppendError::Failed("the ledger writer stopped".into())),
            }
        }
        Ok(records)
    }

    /// [`Ledger::append_with`] for callers outside an async runtime.
    pub fn append_blocking<E>(
        &self,
        check: impl FnOnce(&S) -> std::result::Result<Vec<LedgerRecord>, E>,
    ) -> std::result::Result<Vec<LedgerRecord>, AppendError<E>> {
        let (records, done) = self.stage(check)?;
        if let Some(done) = done {
            match done.blocking_recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(AppendError::Failed(e)),
                Err(_) => return Err(AppendError::Failed("the ledger writer stopped".into())),
            }
        }
        Ok(records)
    }

    #[allow(clippy::type_complexity)]
    fn stage<E>(
        &self,
        check: impl FnOnce(&S) -> std::result::Result<Vec<LedgerRecord>, E>,
    ) -> std::result::Result<
        (Vec<LedgerRecord>, Option<tokio::sync::oneshot::Receiver<std::result::Result<(), String>>>),
        AppendError<E>,
    > {
        if self.is_failed() {
            return Err(AppendError::Failed("an earlier write failed; restart to recover".into()));
        }
        let mut state = lock_state(&self.inner.state);
        let records = check(&state).map_err(AppendError::Refused)?;
        if records.is_empty() {
            return Ok((records, None));
        }
        let mut lines = Vec::with_capacity(records.len() * 256);
        for r in &records {
            serde_json::to_writer(&mut lines, r).map_err(|e| AppendError::Failed(e.to_string()))?;
            lines.push(b'\n');
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        // Sent while the state is locked, so the ledger's order is the state's order.
        let sent = lock_state(&self.inner.tx).as_ref().is_some_and(|tx| tx.send(Job { lines, done }).is_ok());
        if !sent {
            return Err(AppendError::Failed("the ledger is closed".into()));
        }
        for r in &records {
            state.apply(r);
        }
        Ok((records, Some(wait)))
    }

    /// Stops the writer after everything sent is durable, compacts the open segment, and lets
    /// another process open the ledger (appends fail from now on; reads go on).
    pub fn close(&self) {
        lock_state(&self.inner.tx).take();
        if let Some(h) = lock_state(&self.inner.writer).take() {
            let _ = h.join();
        }
        lock_state(&self.inner.lock).take();
    }
}

impl<S> Drop for Inner<S> {
    fn drop(&mut self) {
        lock_state(&self.tx).take();
        if let Some(h) = lock_state(&self.writer).take() {
            let _ = h.join();
        }
    }
}

struct Writer {
    data_dir: PathBuf,
    dir: PathBuf,
    cfg: LedgerConfig,
    next: u64,
    failed: Arc<AtomicBool>,
}

impl Writer {
    fn open_segment(&mut self) -> std::io::Result<(u64, File, u64)> {
        let n = self.next;
        self.next += 1;
        let path = segment_path(&self.dir, n);
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok((n, f, 0))
    }

    fn close_segment(&self, n: u64) {
        let path = segment_path(&self.dir, n);
        let result = read_segment(&path, false).and_then(|records| {
            if records.is_empty() {
                fs::remove_file(&path).map_err(|e| ConnectorError::io(&path, e))
            } else {
                compact(&self.data_dir, n, &path, &records)
            }
        });
        if let Err(e) = result {
            // The segment stays live (still read by SQL and by the next open, which retries).
            tracing::error!(segment = n, error = %e, "ledger compaction failed");
        }
    }

    fn run(mut self, rx: crossbeam_channel::Receiver<Job>) {
        let mut current: Option<(u64, File, u64)> = None;
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while let Ok(j) = rx.try_recv() {
                jobs.push(j);
            }
            let result = self.write(&mut current, &jobs);
            if let Err(e) = &result {
                tracing::error!(error = %e, "ledger write failed: refusing appends until a restart");
                self.failed.store(true, Ordering::Relaxed);
            }
            for j in jobs {
                let _ = j.done.send(result.clone());
            }
            if let Some((n, _, bytes)) = &current {
                if *bytes >= self.cfg.segment_bytes {
                    let n = *n;
                    current = None;
                    self.close_segment(n);
                }
            }
        }
        if let Some((n, _, _)) = current {
            self.close_segment(n);
        }
    }

    fn write(&mut self, current: &mut Option<(u64, File, u64)>, jobs: &[Job]) -> std::result::Result<(), String> {
        if self.failed.load(Ordering::Relaxed) {
            return Err("an earlier write failed; restart to recover".into());
        }
        if current.is_none() {
            *current = Some(self.open_segment().map_err(|e| format!("opening a ledger segment: {e}"))?);
        }
        let Some((_, file, bytes)) = current.as_mut() else { return Err("no segment".into()) };
        let mut buf = Vec::with_capacity(jobs.iter().map(|j| j.lines.len()).sum());
        for j in jobs {
            buf.extend_from_slice(&j.lines);
        }
        file.write_all(&buf).map_err(|e| format!("writing the ledger: {e}"))?;
        file.sync_data().map_err(|e| format!("syncing the ledger: {e}"))?;
        *bytes += buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc as StdArc;
    use vigil_events::{Decision, HumanDecisionSubmitted};

    /// The live (not yet compacted) ledger rows of `table`, as JSON objects: what the SQL side
    /// reads beside the table's Parquet files.
    fn live_rows(data_dir: &Path, table: &str) -> Result<Vec<serde_json::Value>> {
        let dir = data_dir.join(LEDGER_DIR);
        let mut out = Vec::new();
        for (_, path, compacted) in segments(&dir)? {
            if compacted {
                continue;
            }
            let text = match fs::read(&path) {
                Ok(t) => t,
                // Compacted (renamed) between the listing and the read: its rows are in Parquet now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ConnectorError::io(&path, e)),
            };
            for line in text.split(|b| *b == b'\n') {
                let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
                if v.get("table").and_then(|t| t.as_str()) == Some(table) {
                    if let Some(row) = v.get_mut("row") {
                        out.push(row.take());
                    }
                }
            }
        }
        Ok(out)
    }

    #[derive(Default)]
    struct Count {
        decisions: Vec<String>,
    }

    impl LedgerState for Count {
        fn apply(&mut self, r: &LedgerRecord) {
            if let LedgerRecord::Decision(d) = r {
                self.decisions.push(d.request_id.clone());
            }
        }
    }

    fn decision(req: &str, ts: i64) -> LedgerRecord {
        LedgerRecord::Decision(HumanDecisionSubmitted {
            event_id: format!("dec-{req}"),
            correlation_id: "c".into(),
            event_version: 1,
            request_id: req.into(),
            proposal_id: "p".into(),
            asset_id: StdArc::from("a1"),
            decision: Decision::Approve,
            decided_by: "ann".into(),
            via_key: "planner".into(),
            comment: Some("ok".into()),
            ts,
            deferred_until: None,
        })
    }

    #[test]
    fn appends_survive_reopen_and_compact_to_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let ledger: Ledger<Count> = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
        for i in 0..3 {
            let ts = 1_767_225_600_000 + i * 1000;
            ledger.append_blocking(|_| Ok::<_, ()>(vec![decision(&format!("r{i}"), ts)])).unwrap();
        }
        // Durable and readable before any compaction.
        assert_eq!(live_rows(dir.path(), "decisions").unwrap().len(), 3);
        assert!(live_rows(dir.path(), "maintenance").unwrap().is_empty());
        // A refused check writes nothing.
        assert!(matches!(ledger.append_blocking(|_| Err::<Vec<LedgerRecord>, _>("no")), Err(AppendError::Refused("no"))));
        ledger.close();
        let ledger: Ledger<Count> = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
        assert_eq!(ledger.read(|s| s.decisions.clone()), vec!["r0", "r1", "r2"]);
        assert!(live_rows(dir.path(), "decisions").unwrap().is_empty());
        let parquet = dir.path().join("decisions/date=2026-01-01/ledger-00000001.parquet");
        assert!(parquet.exists(), "compacted file missing");
    }

    #[test]
    fn a_segment_left_open_by_a_crash_is_repaired_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let ledger_dir = dir.path().join(LEDGER_DIR);
        fs::create_dir_all(&ledger_dir).unwrap();
        let mut text = serde_json::to_vec(&decision("r0", 0)).unwrap();
        text.extend_from_slice(b"\n{\"table\":\"decisions\",\"row\":{\"event_");
        fs::write(segment_path(&ledger_dir, 1), &text).unwrap();
        let ledger: Ledger<Count> = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
        assert_eq!(ledger.read(|s| s.decisions.clone()), vec!["r0"]);
        assert!(dir.path().join("decisions/date=1970-01-01/ledger-00000001.parquet").exists());
        // New records go to a new segment.
        ledger.append_blocking(|_| Ok::<_, ()>(vec![decision("r1", 0)])).unwrap();
        assert!(segment_path(&ledger_dir, 2).exists());
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _a: Ledger<Count> = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
        assert!(Ledger::<Count>::open(dir.path(), LedgerConfig::default()).is_err());
    }

    #[test]
    fn small_segments_roll_and_compact_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let ledger: Ledger<Count> = Ledger::open(dir.path(), LedgerConfig { segment_bytes: 1 }).unwrap();
        for i in 0..4 {
            ledger.append_blocking(|_| Ok::<_, ()>(vec![decision(&format!("r{i}"), 0)])).unwrap();
        }
        ledger.close();
        let files = fs::read_dir(dir.path().join("decisions/date=1970-01-01")).unwrap().count();
        assert_eq!(files, 4);
        assert!(live_rows(dir.path(), "decisions").unwrap().is_empty());
    }
}
