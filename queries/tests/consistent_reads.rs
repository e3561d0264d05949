//! Queries read one consistent set of complete files while the history changes under them: runs
//! commit new files, the planning ledger appends and compacts its segments into Parquet, and
//! `vigil compact` merges a partition again and again (real files, real writers, the real
//! ledger). Readers count rows in a loop the whole time: no query fails, and no count is below
//! what was committed before it started, above what was written by its end, or below the
//! reader's previous count.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use vigil_connectors::compact::{self, CompactOptions};
use vigil_connectors::history::{self, commit, TableWriter, WriterConfig};
use vigil_connectors::ledger::{Ledger, LedgerConfig, LedgerRecord, LedgerState};
use vigil_events::{Decision, HumanDecisionSubmitted, SensorReading, SensorType, SourcePos, MS_PER_DAY};
use vigil_queries::{History, QueryConfig};

/// 2026-01-01, the partition compacted over and over.
const DAY0: i64 = 20_454;
/// Rows each commit adds to `readings`.
const PER_COMMIT: u64 = 400;

fn reading(sensor: usize, ts: i64, offset: u64) -> SensorReading {
    SensorReading {
        id_hash: offset,
        sensor_id: Arc::from(format!("s{sensor}").as_str()),
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

/// Commits one run of `n` readings on `day` (run ids unique, as the pipeline's are).
fn commit_readings(dir: &Path, run: &str, day: i64, first: u64, n: u64) {
    let mut w = TableWriter::<SensorReading>::new(WriterConfig {
        data_dir: dir.to_path_buf(),
        run: run.into(),
        worker: 0,
        max_rows_per_file: 150,
        row_group_rows: 100,
        max_file_span_ms: i64::MAX,
        sources: Arc::new(vec!["input.jsonl".into()]),
    });
    for i in first..first + n {
        w.push(reading((i % 5) as usize, day * MS_PER_DAY + (i as i64) * 1000, i)).unwrap();
    }
    let files = w.finish().unwrap();
    commit(dir, run, files, 0).unwrap();
}

#[derive(Default)]
struct NoState;

impl LedgerState for NoState {
    fn apply(&mut self, _: &LedgerRecord) {}
}

fn decision(i: u64) -> LedgerRecord {
    LedgerRecord::Decision(HumanDecisionSubmitted {
        event_id: format!("dec-{i}"),
        correlation_id: "c".into(),
        event_version: 1,
        request_id: format!("req-{i}"),
        proposal_id: "p".into(),
        asset_id: Arc::from("a"),
        decision: Decision::Approve,
        decided_by: "ann".into(),
        via_key: "planner".into(),
        comment: None,
        ts: DAY0 * MS_PER_DAY + (i as i64) * 1000,
        deferred_until: None,
    })
}

/// Rows of a table: started (written, maybe not yet visible) and done (visible before a query
/// that starts now).
#[derive(Default)]
struct Progress {
    started: AtomicU64,
    done: AtomicU64,
}

async fn count(history: &History, table: &str) -> Result<u64, String> {
    let r = history.sql(&format!("SELECT count(*) FROM {table}")).await.map_err(|e| e.to_string())?;
    let c = r.batches[0].column(0).as_primitive::<Int64Type>();
    assert_eq!(c.len(), 1);
    Ok(c.value(0) as u64)
}

#[test]
fn readers_see_every_committed_row_once_while_runs_commit_the_ledger_compacts_and_compact_merges() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    // A later day, so that DAY0 is a closed partition for `compact_all` too.
    commit_readings(&data, "seed", DAY0 + 2, 0, 10);
    let readings = Arc::new(Progress::default());
    let decisions = Arc::new(Progress::default());
    readings.started.store(10, Ordering::SeqCst);
    readings.done.store(10, Ordering::SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (data, readings, decisions, stop) = (data.clone(), readings.clone(), decisions.clone(), stop.clone());
        std::thread::spawn(move || {
            // Every append closes its segment: the ledger compacts into Parquet at every decision.
            let ledger: Ledger<NoState> = Ledger::open(&data, LedgerConfig { segment_bytes: 1 }).unwrap();
            let until = Instant::now() + Duration::from_secs(12);
            let mut round = 0u64;
            while Instant::now() < until {
                readings.started.fetch_add(PER_COMMIT, Ordering::SeqCst);
                commit_readings(&data, &format!("run{round}"), DAY0, 1_000 + round * PER_COMMIT, PER_COMMIT);
                readings.done.fetch_add(PER_COMMIT, Ordering::SeqCst);
                for i in 0..3 {
                    decisions.started.fetch_add(1, Ordering::SeqCst);
                    ledger.append_blocking(|_| Ok::<_, ()>(vec![decision(round * 3 + i)])).unwrap();
                    decisions.done.fetch_add(1, Ordering::SeqCst);
                }
                // The partition DAY0 of both tables merged again: the new files and the last
                // merged file into a new one, the replaced ones moved away.
                compact::compact_partition(&data, "readings", &history::date_of_day(DAY0), &CompactOptions::default()).unwrap();
                if round % 2 == 1 {
                    compact::compact_all(&data, &CompactOptions::default()).unwrap();
                }
                compact::compact_partition(&data, "decisions", &history::date_of_day(DAY0), &CompactOptions::default()).unwrap();
                round += 1;
            }
            ledger.close();
            stop.store(true, Ordering::SeqCst);
            round
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let history = History::open(&data, &QueryConfig::default()).unwrap();
    let failures: Vec<String> = rt.block_on(async {
        let mut tasks = Vec::new();
        for reader in 0..3 {
            let (history, readings, decisions, stop) = (history.clone(), readings.clone(), decisions.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut last = [0u64; 2];
                let mut queries = 0;
                while !stop.load(Ordering::SeqCst) {
                    for (i, (table, progress)) in [("readings", &readings), ("decisions", &decisions)].into_iter().enumerate() {
                        let before = progress.done.load(Ordering::SeqCst);
                        let result = count(&history, table).await;
                        let after = progress.started.load(Ordering::SeqCst);
                        queries += 1;
                        match result {
                            Err(e) => failures.push(format!("reader {reader}: {table}: {e}")),
                            Ok(n) if n < before || n > after || n < last[i] => failures.push(format!(
                                "reader {reader}: {table}: {n} rows, committed {before} before the query, at most {after} written, {} seen before",
                                last[i]
                            )),
                            Ok(n) => last[i] = n,
                        }
                    }
                }
                assert!(queries > 10, "reader {reader} ran {queries} queries");
                failures
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let rounds = writer.join().unwrap();
    assert!(rounds >= 3, "only {rounds} rounds of writes");
    assert!(
        failures.is_empty(),
        "{} of the reads were wrong, first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    // At the end, exactly what was written.
    let (r, d) = rt.block_on(async { (count(&history, "readings").await.unwrap(), count(&history, "decisions").await.unwrap()) });
    assert_eq!(r, readings.done.load(Ordering::SeqCst));
    assert_eq!(d, decisions.done.load(Ordering::SeqCst));
    // The replaced files left the partitions (to the trash, until the next compaction after the grace).
    let names: Vec<String> = std::fs::read_dir(data.join("readings").join(format!("date={}", history::date_of_day(DAY0))))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
