//! Delta Lake transaction logs of the history tables.
//!
//! Every history table folder `DATA/<table>/` is a Delta table: `DATA/<table>/_delta_log/` holds
//! its commits, so Python `deltalake`, Polars, DuckDB or Spark read exactly the rows Vigil
//! committed — each file once, never one a compaction replaced — without knowing Vigil's own
//! manifest. The table's schema is the [`crate::history`] schema plus the partition column `date`
//! (`YYYY-MM-DD`, the folder `date=…` each file lies in; it is not stored in the files).
//!
//! **Input:** the files a history commit made visible ([`FileEntry`]s, already in place), the
//! merged file and the files it replaces of a compaction, the ledger's Parquet files.
//! **Output:** one Delta commit per table touched: `add` actions (with `numRecords` statistics)
//! and an application transaction (`txn`) naming what the commit covers — the run and its
//! commit number (`vigil/run/<run>`), the ledger segment (`vigil/ledger`) — so a commit repeated
//! after a crash is recognised and skipped, table by table ([`publish_files`]). A compaction is
//! an `OPTIMIZE` commit: `remove` of the replaced files and `add` of the merged one, neither a
//! change of data ([`publish_compaction`]).
//!
//! **Crash recovery across tables.** Several tables cannot commit atomically together; the
//! manifest line of a history commit, durable before any table commits, is the intent. After a
//! crash, [`crate::history::recover`] hands every manifest commit to [`catch_up`], which commits
//! to each table exactly what its log lacks (its `txn` version for the run is behind), leaving
//! out files a later compaction replaced (their rows are in the merged file). A data dir written
//! before the Delta logs existed gets each table created from its visible files once.
//!
//! **State:** none kept between calls; each call loads the table's latest snapshot. The Delta
//! calls are async: they run on one small runtime of this module ([`block_on`]), callable from
//! any thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, DataType as DeltaType, Remove, StructField, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

use crate::history::{Commit, FileEntry};
use crate::{ConnectorError, Result};

/// The partition column of every history table.
pub const PARTITION_COLUMN: &str = "date";

/// Application id of a run's commits: its commit number is the transaction version.
pub fn run_app_id(run: &str) -> String {
    format!("vigil/run/{run}")
}

/// Application id of the ledger's commits: the segment number is the transaction version.
pub const LEDGER_APP_ID: &str = "vigil/ledger";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vigil-delta")
            .enable_all()
            .build()
            // Without a runtime no Delta commit can be made at all: a broken host, not an input.
            .expect("the Delta runtime starts")
    })
}

/// Runs `f` on this module's runtime and waits for it: callable from any thread, including a
/// thread of another tokio runtime (the future runs on this module's own threads).
pub fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    // The task sends exactly once unless it panicked; a panic in a Delta call is a bug there.
    rx.recv().expect("the Delta task answers")
}

fn delta_err(table: &str, e: DeltaTableError) -> ConnectorError {
    ConnectorError::Delta(format!("{table}: {e}"))
}

/// URL of a table folder.
pub fn table_url(data_dir: &Path, table: &str) -> Result<Url> {
    let dir = data_dir.join(table);
    std::fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
    let abs = std::fs::canonicalize(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
    Url::from_directory_path(&abs).map_err(|()| ConnectorError::Invalid(format!("{}: not a usable table path", abs.display())))
}

/// Whether `table` has a Delta log under `data_dir`.
pub fn has_log(data_dir: &Path, table: &str) -> bool {
    data_dir.join(table).join("_delta_log").is_dir()
}

/// The Delta schema of a history table: its columns, then `date`.
fn delta_schema(table: &str) -> Result<Vec<StructField>> {
    let arrow = crate::compact::table_schema(table)?;
    let kernel: StructType =
        arrow.as_ref().try_into_kernel().map_err(|e| ConnectorError::Delta(format!("{table}: schema: {e}")))?;
    let mut fields: Vec<StructField> = kernel.fields().cloned().collect();
    fields.push(StructField::new(PARTITION_COLUMN, DeltaType::STRING, false));
    Ok(fields)
}

/// Tables loaded before, by URL: the next use reads only the log's newer commits.
fn loaded() -> &'static Mutex<HashMap<String, DeltaTable>> {
    static LOADED: OnceLock<Mutex<HashMap<String, DeltaTable>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

fn remember(url: &Url, t: &DeltaTable) {
    if let Ok(mut m) = loaded().lock() {
        m.insert(url.to_string(), t.clone());
    }
}

/// Forgets every table loaded under `data_dir`, so the next use reads its log from the start
/// (recovery does, as it must not trust a state read before a crash or a repair by hand).
fn forget(data_dir: &Path) {
    if let (Ok(mut m), Ok(abs)) = (loaded().lock(), std::fs::canonicalize(data_dir)) {
        if let Ok(prefix) = Url::from_directory_path(&abs) {
            m.retain(|k, _| !k.starts_with(prefix.as_str()));
        }
    }
}

/// Opens `table`'s Delta table at its latest version, creating it (empty, with the history
/// schema) if it has no log.
async fn open_or_create(url: Url, table: String) -> Result<DeltaTable> {
    let cached = loaded().lock().ok().and_then(|m| m.get(url.as_str()).cloned());
    if let Some(mut t) = cached {
        if t.update_incremental(None).await.is_ok() {
            remember(&url, &t);
            return Ok(t);
        }
    }
    let t = load_or_create(url.clone(), table).await?;
    remember(&url, &t);
    Ok(t)
}

/// Whether the table folder's log holds a commit or a checkpoint (a local folder; other stores
/// are asked by loading).
fn log_has_commits(url: &Url) -> bool {
    let Ok(dir) = url.to_file_path() else { return true };
    std::fs::read_dir(dir.join("_delta_log")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".json") || name.ends_with(".parquet")
        })
    })
}

async fn load_or_create(url: Url, table: String) -> Result<DeltaTable> {
    // Loading a table without a log makes the delta kernel log an error of its own before it
    // answers "not a table": a new table is created without asking.
    if log_has_commits(&url) {
        let mut t = DeltaTable::try_from_url(url.clone()).await.map_err(|e| delta_err(&table, e))?;
        match t.load().await {
            Ok(()) => return Ok(t),
            Err(DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(delta_err(&table, e)),
        }
    }
    let created = deltalake::operations::create::CreateBuilder::new()
        .with_location(url.as_str())
        .with_table_name(table.clone())
        .with_columns(delta_schema(&table)?)
        .with_partition_columns([PARTITION_COLUMN])
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(t) => Ok(t),
        // Another process created it meanwhile: open what it made.
        Err(_) => {
            let mut t = DeltaTable::try_from_url(url).await.map_err(|e| delta_err(&table, e))?;
            t.load().await.map_err(|e| delta_err(&table, e))?;
            Ok(t)
        }
    }
}

/// `date=YYYY-MM-DD/name` of a file's path relative to the data dir (`<table>/date=…/name`).
fn table_relative<'a>(table: &str, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(table)?.strip_prefix('/')
}

fn partition_values(rel: &str) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    if let Some(d) = rel.split('/').find_map(|seg| seg.strip_prefix("date=")) {
        out.insert(PARTITION_COLUMN.to_string(), Some(d.to_string()));
    }
    out
}

/// The `add` action of a file in place (`rel` relative to the table folder).
fn add_action(data_dir: &Path, table: &str, rel: &str, rows: Option<u64>, data_change: bool) -> Result<Add> {
    let path = data_dir.join(table).join(rel);
    let meta = std::fs::metadata(&path).map_err(|e| ConnectorError::io(&path, e))?;
    let rows = match rows {
        Some(r) => r,
        None => parquet_rows(&path)?,
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(Add {
        path: rel.to_string(),
        partition_values: partition_values(rel),
        size: i64::try_from(meta.len()).unwrap_or(i64::MAX),
        modification_time: modified,
        data_change,
        stats: Some(format!("{{\"numRecords\":{rows}}}")),
        ..Default::default()
    })
}

fn parquet_rows(path: &Path) -> Result<u64> {
    let f = std::fs::File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let r = parquet::file::reader::SerializedFileReader::new(f).map_err(|e| ConnectorError::parquet(path, e))?;
    use parquet::file::reader::FileReader;
    Ok(u64::try_from(r.metadata().file_metadata().num_rows()).unwrap_or(0))
}

async fn txn_version(t: &DeltaTable, app_id: &str, table: &str) -> Result<Option<i64>> {
    let snap = t.snapshot().map_err(|e| delta_err(table, e))?;
    snap.transaction_version(t.log_store().as_ref(), app_id).await.map_err(|e| delta_err(table, e))
}

async fn commit_actions(
    t: &DeltaTable,
    table: &str,
    actions: Vec<Action>,
    op: DeltaOperation,
    txn: Option<Transaction>,
) -> Result<i64> {
    let mut props = CommitProperties::default();
    if let Some(txn) = txn {
        props = props.with_application_transaction(txn);
    }
    let snap = t.snapshot().map_err(|e| delta_err(table, e))?;
    let done = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(snap), t.log_store(), op)
        .await
        .map_err(|e| delta_err(table, e))?;
    Ok(i64::try_from(done.version()).unwrap_or(i64::MAX))
}

fn append_op() -> DeltaOperation {
    DeltaOperation::Write { mode: SaveMode::Append, partition_by: Some(vec![PARTITION_COLUMN.to_string()]), predicate: None }
}

/// Commits `files` (already in place; paths relative to the data dir) to their tables, one
/// commit per table, as transaction `version` of `app_id`; a table whose transaction for
/// `app_id` is already at `version` or beyond is left alone (the commit was made before a crash).
/// Returns the tables committed to.
pub fn publish_files(data_dir: &Path, app_id: &str, version: i64, files: &[FileEntry]) -> Result<usize> {
    let mut by_table: BTreeMap<String, Vec<(String, Option<u64>)>> = BTreeMap::new();
    for f in files {
        let rel = table_relative(&f.table, &f.path)
            .ok_or_else(|| ConnectorError::Invalid(format!("{}: not under its table {}", f.path, f.table)))?;
        by_table.entry(f.table.clone()).or_default().push((rel.to_string(), Some(f.rows)));
    }
    let mut n = 0;
    for (table, files) in by_table {
        if publish_table(data_dir, &table, app_id, version, &files)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Commits files of one table (relative to the table folder, with their row counts when known)
/// as transaction `version` of `app_id`, unless the table already has it. Returns whether it
/// committed.
pub fn publish_table(data_dir: &Path, table: &str, app_id: &str, version: i64, files: &[(String, Option<u64>)]) -> Result<bool> {
    let url = table_url(data_dir, table)?;
    let (dir, table, app_id, files) = (data_dir.to_path_buf(), table.to_string(), app_id.to_string(), files.to_vec());
    block_on(async move {
        let t = open_or_create(url, table.clone()).await?;
        if txn_version(&t, &app_id, &table).await?.is_some_and(|v| v >= version) {
            return Ok(false);
        }
        // Only now are the files looked at: a commit made before is not read again.
        let mut adds = Vec::with_capacity(files.len());
        for (rel, rows) in &files {
            adds.push(Action::Add(add_action(&dir, &table, rel, *rows, true)?));
        }
        let txn = Transaction::new_with_last_update(app_id, version, Some(chrono::Utc::now().timestamp_millis()));
        commit_actions(&t, &table, adds, append_op(), Some(txn)).await?;
        Ok(true)
    })
}

/// Whether `table`'s log holds transaction `version` (or a later one) of `app_id`.
pub fn has_transaction(data_dir: &Path, table: &str, app_id: &str, version: i64) -> Result<bool> {
    if !has_log(data_dir, table) {
        return Ok(false);
    }
    let url = table_url(data_dir, table)?;
    let (table, app_id) = (table.to_string(), app_id.to_string());
    block_on(async move {
        let t = open_or_create(url, table.clone()).await?;
        Ok(txn_version(&t, &app_id, &table).await?.is_some_and(|v| v >= version))
    })
}

/// Commits a compaction of `table`: `remove` of each replaced file the log holds, `add` of the
/// merged file (`merged_rel`, relative to the table folder), as one `OPTIMIZE` commit. Does
/// nothing if the merged file is already in the table. Returns whether it committed.
pub fn publish_compaction(data_dir: &Path, table: &str, merged_rel: &str, rows: u64, replaces_rel: &[String]) -> Result<bool> {
    let url = table_url(data_dir, table)?;
    let add = add_action(data_dir, table, merged_rel, Some(rows), false)?;
    let (table, merged_rel) = (table.to_string(), merged_rel.to_string());
    let replaces: BTreeSet<String> = replaces_rel.iter().cloned().collect();
    block_on(async move {
        let t = open_or_create(url, table.clone()).await?;
        let snap = t.snapshot().map_err(|e| delta_err(&table, e))?;
        let mut removes = Vec::new();
        for f in snap.log_data().iter() {
            let p = f.path().to_string();
            if p == merged_rel {
                return Ok(false);
            }
            if replaces.contains(&p) {
                removes.push(Action::Remove(Remove {
                    deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
                    ..f.remove_action(false)
                }));
            }
        }
        let mut actions = removes;
        actions.push(Action::Add(add));
        let op = DeltaOperation::Optimize { predicate: None, target_size: 0 };
        commit_actions(&t, &table, actions, op, None).await?;
        Ok(true)
    })
}

/// The files each table's Delta log holds (paths relative to the data dir), for checks.
pub fn active_files(data_dir: &Path, table: &str) -> Result<Vec<String>> {
    if !has_log(data_dir, table) {
        return Ok(Vec::new());
    }
    let url = table_url(data_dir, table)?;
    let table = table.to_string();
    block_on(async move {
        let t = open_or_create(url, table.clone()).await?;
        let snap = t.snapshot().map_err(|e| delta_err(&table, e))?;
        let mut out: Vec<String> = snap.log_data().iter().map(|f| format!("{table}/{}", f.path())).collect();
        out.sort();
        Ok(out)
    })
}

/// Brings every table's log up to the manifest: tables without a log are created from their
/// visible files (a data dir from before the logs), then each commit a table lacks is made,
/// leaving out files a compaction replaced. Returns the table commits made.
pub fn catch_up(data_dir: &Path, commits: &[Commit]) -> Result<usize> {
    forget(data_dir);
    let replaced: BTreeSet<String> =
        crate::compact::read_compactions(data_dir)?.into_iter().flat_map(|c| c.replaces.into_iter()).collect();
    let mut made = 0;
    let mut tables: BTreeSet<&str> = BTreeSet::new();
    for c in commits {
        for f in &c.files {
            tables.insert(f.table.as_str());
        }
    }
    // Tables written before the logs: one commit with every visible file and the latest
    // transaction of every run, so the loop below finds them all done.
    let legacy: Vec<&str> = tables.iter().copied().filter(|t| !has_log(data_dir, t)).collect();
    if !legacy.is_empty() {
        let visible = crate::compact::visible_files(data_dir)?;
        for table in &legacy {
            let files: Vec<(String, Option<u64>)> = visible
                .iter()
                .filter(|f| f.table == *table && data_dir.join(&f.path).exists())
                .filter_map(|f| table_relative(table, &f.path).map(|r| (r.to_string(), Some(f.rows))))
                .collect();
            if files.is_empty() {
                // Nothing published yet (a crash before the renames): the loop below commits.
                continue;
            }
            let mut runs: BTreeMap<String, i64> = BTreeMap::new();
            for c in commits.iter().filter(|c| c.files.iter().any(|f| f.table == *table)) {
                let v = runs.entry(run_app_id(&c.run)).or_insert(c.seq);
                *v = (*v).max(c.seq);
            }
            bootstrap_table(data_dir, table, &files, runs)?;
            made += 1;
        }
    }
    // Each table's transaction versions are read once; only the commits beyond them are made.
    for table in tables {
        let mut apps: BTreeSet<String> = BTreeSet::new();
        for c in commits.iter().filter(|c| c.files.iter().any(|f| f.table == table)) {
            apps.insert(run_app_id(&c.run));
        }
        let done = transaction_versions(data_dir, table, apps)?;
        for c in commits {
            let app = run_app_id(&c.run);
            if done.get(&app).copied().flatten().is_some_and(|v| v >= c.seq) {
                continue;
            }
            let files: Vec<(String, Option<u64>)> = c
                .files
                .iter()
                .filter(|f| f.table == table && !replaced.contains(&f.path))
                .filter_map(|f| table_relative(table, &f.path).map(|r| (r.to_string(), Some(f.rows))))
                .collect();
            if !files.is_empty() && publish_table(data_dir, table, &app, c.seq, &files)? {
                made += 1;
            }
        }
    }
    Ok(made)
}

/// The latest transaction version of each of `apps` in `table`'s log (`None`: never committed).
fn transaction_versions(data_dir: &Path, table: &str, apps: BTreeSet<String>) -> Result<BTreeMap<String, Option<i64>>> {
    let url = table_url(data_dir, table)?;
    let table = table.to_string();
    block_on(async move {
        let t = open_or_create(url, table.clone()).await?;
        let mut out = BTreeMap::new();
        for app in apps {
            let v = txn_version(&t, &app, &table).await?;
            out.insert(app, v);
        }
        Ok(out)
    })
}

fn bootstrap_table(data_dir: &Path, table: &str, files: &[(String, Option<u64>)], runs: BTreeMap<String, i64>) -> Result<()> {
    let url = table_url(data_dir, table)?;
    let mut actions = Vec::with_capacity(files.len());
    for (rel, rows) in files {
        actions.push(Action::Add(add_action(data_dir, table, rel, *rows, true)?));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let txns: Vec<Transaction> = runs.into_iter().map(|(app, v)| Transaction::new_with_last_update(app, v, Some(now))).collect();
    let table = table.to_string();
    block_on(async move {
        let t = open_or_create(url, table.clone()).await?;
        if t.version().unwrap_or(0) > 0 {
            // Someone else bootstrapped it meanwhile.
            return Ok(());
        }
        let snap = t.snapshot().map_err(|e| delta_err(&table, e))?;
        CommitBuilder::from(CommitProperties::default().with_application_transactions(txns))
            .with_actions(actions)
            .build(Some(snap), t.log_store(), append_op())
            .await
            .map_err(|e| delta_err(&table, e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_come_from_the_folder() {
        let p = partition_values("date=2026-01-02/part-r-0-1.parquet");
        assert_eq!(p.get("date"), Some(&Some("2026-01-02".to_string())));
        assert_eq!(table_relative("readings", "readings/date=2026-01-02/x.parquet"), Some("date=2026-01-02/x.parquet"));
        assert_eq!(table_relative("readings", "features/date=2026-01-02/x.parquet"), None);
    }
}
