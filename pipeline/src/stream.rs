//! `vigil run`: the dataflow over a Kafka topic, continuously, with exactly-once history.
//!
//! Threads: the calling thread is the coordinator — it owns the consumer-group member, routes
//! each partition's records to one worker (`partition mod workers`), and runs cuts; the timely
//! workers decode, validate and run the graph ([`crate::graph`]).
//!
//! **Watermark.** Each partition's lateness is measured from the greatest event time read from
//! that partition: a record more than `lateness` behind it is `too_late`, whatever the other
//! partitions did, so the decision depends only on the partition's own sequence. The graph's
//! watermark is the least, over the assigned partitions, of `max event time − lateness`; a
//! partition with nothing new for `idle_timeout` stops holding it back (a record arriving behind
//! the graph's watermark after that is `too_late` too), and one not read yet holds it until then.
//!
//! **Cuts.** Every `commit_interval` (and before partitions are revoked, and at shutdown) the
//! coordinator sends a cut marker behind the records it routed. Each worker stops reading at the
//! marker; once all have, worker 0 picks a dataflow time `T` above every input (same watermark,
//! next cut number — results do not change), every worker advances to `T` and steps until its
//! sinks have seen `T`: then everything read is either in a history file or in operator state.
//! Workers sync their writers (staged files fsynced) and checkpoint their stages; the
//! coordinator flushes the output topics, writes the checkpoint (temp, fsync, rename), appends
//! the manifest line (files, next offset and greatest event time per partition, checkpoint),
//! publishes the files, lets the workers go on, and commits the offsets to the group.
//!
//! **Restart.** The manifest, not the group's committed offsets, says where each partition
//! resumes; the instance's last checkpoint restores the stages (readings waiting for the
//! watermark included) and each partition's greatest event time. A kill at any moment loses and
//! repeats nothing: what followed the last manifest line is read again from Kafka and processed
//! from the same state, to the same results.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde::{Deserialize, Serialize};

use vigil_connectors::history::{self, FileEntry, StagingLock, StreamMark, WriterConfig};
use vigil_connectors::kafka::{GroupSource, OwnedRecord, PartitionOwner, Polled};
use vigil_connectors::local_log::{LocalLog, LocalLogReader};
use vigil_events::{dataflow_time, stable_hash_str, watermark_of, DataflowTime, EventTime, MaintenanceScheduled, SourcePos};
use vigil_operators::asset_stage::AssetStageCheckpoint;
use vigil_operators::sensor_stage::{SensorSpec, SensorStageCheckpoint};
use vigil_operators::validate::Validator;

use crate::config::VigilConfig;
use crate::outputs::{OutputTopics, Outputs};
use crate::run::{too_late, RunError, RunStats};

/// Settings of a streaming run.
#[derive(Clone)]
pub struct StreamOptions {
    /// Configuration.
    pub cfg: VigilConfig,
    /// History directory.
    pub data_dir: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// Bootstrap servers.
    pub brokers: String,
    /// Input topic.
    pub topic: String,
    /// Consumer group.
    pub group: String,
    /// This instance's name (its checkpoints are its own; two instances sharing a data dir need
    /// different names).
    pub instance: String,
    /// Join the group as a static member named after the instance.
    pub static_membership: bool,
    /// Partitions of the input topic if it has to be created.
    pub input_partitions: i32,
    /// Output topics, if any.
    pub outputs: Option<OutputTopics>,
    /// Stop once every assigned partition is read to its end, closing every window (a bounded
    /// topic, like a file); otherwise run until stopped.
    pub stop_at_end: bool,
    /// Time between cuts.
    pub commit_interval: Duration,
    /// A partition with nothing new for this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// Wall clock.
    pub now_ms: fn() -> i64,
    /// Extra consumer settings.
    pub consumer: BTreeMap<String, String>,
    /// Read this embedded log instead of Kafka (`topic` is then the log's name).
    pub local: Option<Arc<LocalLog>>,
    /// Webhook notifications.
    pub notifier: Option<Arc<vigil_connectors::webhook::Notifier>>,
}

impl StreamOptions {
    /// The settings `[kafka]` and `[pipeline]` give, with the wall clock; `workers` overrides
    /// `pipeline.workers`.
    pub fn from_config(cfg: &VigilConfig, data_dir: PathBuf, workers: Option<usize>) -> Self {
        let k = &cfg.kafka;
        StreamOptions {
            workers: workers.unwrap_or(cfg.pipeline.workers).max(1),
            data_dir,
            brokers: k.brokers.clone(),
            topic: k.topic.clone(),
            group: k.group.clone(),
            instance: k.instance.clone(),
            static_membership: k.static_membership,
            input_partitions: k.partitions,
            outputs: k.publish.then(|| k.outputs.clone()),
            stop_at_end: false,
            commit_interval: Duration::from_millis(k.commit_interval_ms.max(10)),
            idle_timeout: Duration::from_millis(cfg.pipeline.idle_timeout_ms.max(0) as u64),
            now_ms: crate::run::system_now_ms,
            consumer: k.consumer.clone(),
            local: None,
            notifier: None,
            cfg: cfg.clone(),
        }
    }
}

/// What a running stream reports, and how to stop it.
#[derive(Default)]
pub struct StreamControl {
    /// Set to stop: the run makes a last cut and returns.
    pub stop: AtomicBool,
    /// Whether the run is consuming and committing normally.
    pub ready: AtomicBool,
    /// Why it is not ready.
    pub reason: Mutex<String>,
    /// Records behind the end of the assigned partitions, at the last cut (-1: unknown).
    pub lag: AtomicI64,
    /// Cuts committed.
    pub cuts: AtomicU64,
    /// The watermark of the last cut (ms; 0 before there is one).
    pub watermark: AtomicI64,
    /// Records read.
    pub records_in: AtomicU64,
    /// The counts of the last commit (all workers' at the same cut, set when it is durable).
    committed: Mutex<Committed>,
    /// Seconds from the watermark's event time to the commit that made everything before it
    /// durable, per cut (the end-to-end latency of results, lateness included).
    pub commit_delay: Mutex<vigil_api::observe::Histogram>,
    /// Status changes people recorded, waiting to enter the dataflow.
    changes: Mutex<Vec<MaintenanceScheduled>>,
}

/// What the last commit covers: every record the workers had read by then is a reading stored,
/// a record dead-lettered, a reading waiting for the watermark or a re-delivery skipped
/// (`stats.records_in + carried_over = stats.accepted + Σ stats.rejected + waiting +
/// stats.redelivered`).
#[derive(Debug, Default, Clone)]
pub struct Committed {
    /// The workers' statistics summed (lists folded into counts).
    pub stats: RunStats,
    /// Readings waiting for the watermark in the stages' state (and the commit's checkpoint).
    pub waiting: u64,
    /// Readings waiting in the checkpoint this run started from (read by an earlier run).
    pub carried_over: u64,
}

impl StreamControl {
    /// The counts of the last commit.
    pub fn committed(&self) -> Committed {
        self.committed.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl StreamControl {
    /// Hands a status change people recorded in the planning ledger (approved, rejected,
    /// completed) to the dataflow: a rejection or completion closes the asset's open proposal, a
    /// completion restarts its baselines, and every change goes to the schedule output topic.
    /// The stages apply a change idempotently, so handing one over again (after a restart, the
    /// latest of each asset) is harmless; one applied before a commit is part of its checkpoint.
    pub fn schedule_changed(&self, change: MaintenanceScheduled) {
        if let Ok(mut q) = self.changes.lock() {
            q.push(change);
        }
    }

    fn take_changes(&self) -> Vec<MaintenanceScheduled> {
        self.changes.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default()
    }

    fn not_ready(&self, why: impl Into<String>) {
        let why = why.into();
        if self.ready.swap(false, Ordering::Relaxed) {
            tracing::warn!(reason = %why, "not ready");
        }
        if let Ok(mut r) = self.reason.lock() {
            *r = why;
        }
    }
    fn is_ready(&self) {
        if !self.ready.swap(true, Ordering::Relaxed) {
            tracing::info!("ready");
        }
        if let Ok(mut r) = self.reason.lock() {
            r.clear();
        }
    }
}

/// Why a streaming run ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Kafka could not be used at all.
    #[error("kafka: {0}")]
    Kafka(String),
    /// History or checkpoint could not be written: nothing after the last commit counts; the run
    /// can be started again from it once the cause is gone.
    #[error("history: {0}")]
    History(String),
    /// The dataflow failed.
    #[error("dataflow: {0}")]
    Dataflow(String),
}

impl From<RunError> for StreamError {
    fn from(e: RunError) -> Self {
        StreamError::Dataflow(e.to_string())
    }
}

/// Operator state at a cut, with each partition's position.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    cut_time: DataflowTime,
    /// Partition → (greatest event time read, next offset).
    partitions: BTreeMap<i32, (EventTime, i64)>,
    sensor: Vec<SensorStageCheckpoint>,
    asset: Vec<AssetStageCheckpoint>,
}

/// One partition as the run sees it.
#[derive(Debug, Clone)]
struct Partition {
    owned: bool,
    max_seen: EventTime,
    /// The greatest event time of the first batch read (alignment's reference before every
    /// partition has been read).
    first_seen: EventTime,
    next_offset: i64,
    last_arrival: Instant,
    assigned_at: Instant,
    at_end: bool,
}

/// A message to a worker.
enum ToWorker {
    Records(Vec<OwnedRecord>),
    Cut(u64),
}

/// A worker's share of a cut.
struct CutPart {
    /// The worker's statistics at the cut (lists folded into counts).
    stats: RunStats,
    files: Vec<FileEntry>,
    /// The stages' state (none in the final part of a bounded topic: everything was flushed).
    state: Option<(SensorStageCheckpoint, AssetStageCheckpoint)>,
    error: Option<String>,
}

/// State shared by the coordinator and the workers.
struct Shared {
    partitions: Mutex<BTreeMap<i32, Partition>>,
    /// Cut markers reached, over all cuts and workers (cut `n` is reached by all at `n × workers`).
    arrived: AtomicU64,
    /// The cut whose time is published, and that time.
    cut_ready: AtomicU64,
    cut_time: AtomicI64,
    /// The last cut committed (workers go on when it reaches theirs).
    resumed: AtomicU64,
    /// Stop now, without flushing (after the last cut, or on failure).
    abort: AtomicBool,
    /// Partitions paused by watermark alignment (an assignment resumes everything).
    paused: Mutex<Vec<i32>>,
    lateness: i64,
    idle_timeout: Duration,
    stop_at_end: bool,
}

impl Shared {
    /// Whether a partition has had nothing new for the idle timeout (never, for a bounded topic).
    fn is_idle(&self, p: &Partition) -> bool {
        !self.stop_at_end && p.last_arrival.max(p.assigned_at).elapsed() > self.idle_timeout
    }

    /// The watermark the assigned partitions allow (`None`: hold).
    fn watermark(&self) -> Option<EventTime> {
        let parts = self.partitions.lock().ok()?;
        let mut w: Option<EventTime> = None;
        for p in parts.values().filter(|p| p.owned) {
            let idle = self.is_idle(p);
            if p.max_seen == EventTime::MIN {
                // Nothing read yet: holds until idle (or, for a bounded topic, until it is known empty).
                if idle || (self.stop_at_end && p.at_end) {
                    continue;
                }
                return None;
            }
            if idle {
                continue;
            }
            let c = p.max_seen.saturating_sub(self.lateness);
            w = Some(w.map_or(c, |w| w.min(c)));
        }
        w
    }
}

/// The partition owner handed to the consumer: assignments read the manifest, revocations cut.
struct Owner {
    data_dir: PathBuf,
    topic: String,
    shared: Arc<Shared>,
    coordinator: Mutex<Option<Arc<Coordinator>>>,
}

impl PartitionOwner for Owner {
    fn assigned(&self, partitions: &[i32]) -> BTreeMap<i32, Option<i64>> {
        let commits = history::read_manifest(&self.data_dir).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the manifest");
            Vec::new()
        });
        let resume = history::resume_offsets(&commits, &self.topic);
        let max_seen = latest_max_event_time(&commits, &self.topic);
        let mut out = BTreeMap::new();
        if let Ok(mut paused) = self.shared.paused.lock() {
            paused.clear();
        }
        if let Ok(mut parts) = self.shared.partitions.lock() {
            let now = Instant::now();
            for &p in partitions {
                let start = resume.get(&p).copied();
                let e = parts.entry(p).or_insert(Partition {
                    owned: true,
                    max_seen: EventTime::MIN,
                    first_seen: EventTime::MIN,
                    next_offset: 0,
                    last_arrival: now,
                    assigned_at: now,
                    at_end: false,
                });
                e.owned = true;
                e.assigned_at = now;
                e.at_end = false;
                if let Some(m) = max_seen.get(&p) {
                    e.max_seen = e.max_seen.max(*m);
                }
                if let Some(o) = start {
                    e.next_offset = e.next_offset.max(o);
                }
                out.insert(p, start.map(|_| e.next_offset));
            }
        }
        out
    }

    fn revoking(&self, partitions: &[i32]) {
        let coord = self.coordinator.lock().ok().and_then(|c| c.clone());
        if let Some(c) = coord {
            if let Err(e) = c.cut("revocation") {
                tracing::error!(error = %e, "the cut before a revocation failed");
                c.failed(e);
            }
        }
        if let Ok(mut parts) = self.shared.partitions.lock() {
            for p in partitions {
                if let Some(e) = parts.get_mut(p) {
                    e.owned = false;
                }
            }
        }
    }
}

fn latest_max_event_time(commits: &[history::Commit], topic: &str) -> BTreeMap<i32, EventTime> {
    let mut out = BTreeMap::new();
    for m in commits.iter().filter_map(|c| c.stream.as_ref()).filter(|m| m.topic == topic) {
        for (p, t) in &m.max_event_time {
            let e = out.entry(*p).or_insert(*t);
            *e = (*e).max(*t);
        }
    }
    out
}

/// The coordinator's side of cuts: routing, markers, and commits.
struct Coordinator {
    opts: StreamOptions,
    run_id: String,
    shared: Arc<Shared>,
    to_workers: Vec<Sender<ToWorker>>,
    pending: Mutex<Vec<Vec<OwnedRecord>>>,
    parts_rx: Mutex<Receiver<(usize, CutPart)>>,
    outputs: Option<Arc<Outputs>>,
    control: Arc<StreamControl>,
    cut_seq: AtomicU64,
    /// Records routed since the last cut.
    dirty: AtomicUsize,
    /// The first failure (the run stops on it).
    failure: Mutex<Option<StreamError>>,
    /// Offsets of the last commit, to hand to the group.
    last_offsets: Mutex<BTreeMap<i32, i64>>,
    checkpoints: Mutex<Vec<PathBuf>>,
}

impl Coordinator {
    fn route(&self, r: OwnedRecord) {
        let w = (r.partition.rem_euclid(self.to_workers.len() as i32)) as usize;
        let full = {
            let Ok(mut pending) = self.pending.lock() else { return };
            pending[w].push(r);
            pending[w].len() >= 1024
        };
        self.dirty.fetch_add(1, Ordering::Relaxed);
        if full {
            self.flush_worker(w);
        }
    }

    fn flush_worker(&self, w: usize) {
        let batch = match self.pending.lock() {
            Ok(mut p) if !p[w].is_empty() => std::mem::take(&mut p[w]),
            _ => return,
        };
        let _ = self.to_workers[w].send(ToWorker::Records(batch));
    }

    fn flush_all(&self) {
        for w in 0..self.to_workers.len() {
            self.flush_worker(w);
        }
    }

    fn failed(&self, e: StreamError) {
        self.control.not_ready(e.to_string());
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(e);
        }
        self.shared.abort.store(true, Ordering::Relaxed);
    }

    fn has_failed(&self) -> bool {
        self.failure.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    /// Makes everything routed so far durable (see the module docs). Skipped when nothing was
    /// routed since the last cut.
    fn cut(&self, why: &str) -> Result<(), StreamError> {
        if self.has_failed() {
            return Err(StreamError::History("an earlier cut failed".into()));
        }
        if self.dirty.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        self.flush_all();
        self.dirty.store(0, Ordering::Relaxed);
        let id = self.cut_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let started = Instant::now();
        for tx in &self.to_workers {
            tx.send(ToWorker::Cut(id)).map_err(|_| StreamError::Dataflow("a worker stopped".into()))?;
        }
        let (files, states, mut stats) = self.collect_parts(id)?;
        stats.files.clear();
        let (sensor, asset): (Vec<_>, Vec<_>) = states.into_iter().unzip();
        let partitions = self.positions()?;
        let cut_time = self.shared.cut_time.load(Ordering::Acquire);
        let cp = Checkpoint { cut_time, partitions, sensor, asset };
        let rel = self.write_checkpoint(id, &cp)?;
        let n_files = files.len();
        let waiting = cp.sensor.iter().map(SensorStageCheckpoint::pending).sum::<usize>() as u64;
        self.commit(id, files, &cp.partitions, Some(rel))?;
        // Durable: the status shows this commit's counts, all workers' at once.
        if let Ok(mut c) = self.control.committed.lock() {
            c.stats = stats;
            c.waiting = waiting;
        }
        self.shared.resumed.store(id, Ordering::Release);
        self.prune_checkpoints();
        tracing::info!(
            cut = id,
            why,
            files = n_files,
            waiting = cp.sensor.iter().map(SensorStageCheckpoint::pending).sum::<usize>(),
            lag = self.control.lag.load(Ordering::Relaxed),
            watermark = %vigil_events::format_rfc3339_ms(watermark_of(cut_time)),
            took_ms = started.elapsed().as_millis() as u64,
            "committed"
        );
        Ok(())
    }

    /// Every worker's part of cut `id` (`u64::MAX`: the final one): their files and stage states.
    #[allow(clippy::type_complexity)]
    fn collect_parts(
        &self,
        id: u64,
    ) -> Result<(Vec<FileEntry>, Vec<(SensorStageCheckpoint, AssetStageCheckpoint)>, RunStats), StreamError> {
        let mut files = Vec::new();
        let mut states = Vec::new();
        let mut errors = Vec::new();
        let mut stats = RunStats::default();
        let rx = self.parts_rx.lock().map_err(|_| StreamError::Dataflow("poisoned".into()))?;
        for _ in 0..self.to_workers.len() {
            let (_, part) = loop {
                match rx.recv_timeout(Duration::from_secs(30)) {
                    Ok(p) => break p,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        tracing::warn!(cut = id, "a cut is taking more than 30 s");
                    }
                    Err(_) => return Err(StreamError::Dataflow("a worker stopped during a cut".into())),
                }
            };
            files.extend(part.files);
            states.extend(part.state);
            errors.extend(part.error);
            stats.merge(part.stats);
        }
        if !errors.is_empty() {
            return Err(StreamError::History(errors.join("; ")));
        }
        Ok((files, states, stats))
    }

    /// Owned partitions: (greatest event time read, next offset).
    fn positions(&self) -> Result<BTreeMap<i32, (EventTime, i64)>, StreamError> {
        let parts = self.shared.partitions.lock().map_err(|_| StreamError::Dataflow("poisoned".into()))?;
        Ok(parts.iter().filter(|(_, s)| s.owned).map(|(p, s)| (*p, (s.max_seen, s.next_offset))).collect())
    }

    /// Waits for the output topics' acknowledgements, then appends the manifest line (files,
    /// positions, checkpoint) and publishes the files.
    fn commit(
        &self,
        id: u64,
        files: Vec<FileEntry>,
        positions: &BTreeMap<i32, (EventTime, i64)>,
        checkpoint: Option<String>,
    ) -> Result<(), StreamError> {
        if let Some(o) = &self.outputs {
            o.flush(Duration::from_secs(60)).map_err(|e| StreamError::Kafka(format!("output topics: {e}")))?;
        }
        let next_offsets: BTreeMap<i32, i64> = positions.iter().map(|(p, (_, n))| (*p, *n)).collect();
        let mark = StreamMark {
            topic: self.opts.topic.clone(),
            instance: self.opts.instance.clone(),
            cut: id,
            next_offsets: next_offsets.clone(),
            max_event_time: positions.iter().filter(|(_, (m, _))| *m > EventTime::MIN).map(|(p, (m, _))| (*p, *m)).collect(),
            checkpoint,
        };
        history::commit_segment(&self.opts.data_dir, &self.run_id, files, mark, (self.opts.now_ms)())
            .map_err(|e| StreamError::History(e.to_string()))?;
        if let Ok(mut l) = self.last_offsets.lock() {
            *l = next_offsets;
        }
        self.control.cuts.fetch_add(1, Ordering::Relaxed);
        let watermark = watermark_of(self.shared.cut_time.load(Ordering::Acquire));
        if watermark > EventTime::MIN / 2 {
            self.control.watermark.store(watermark, Ordering::Relaxed);
            let delay = ((self.opts.now_ms)() - watermark).max(0) as f64 / 1000.0;
            if let Ok(mut h) = self.control.commit_delay.lock() {
                h.observe(delay);
            }
        }
        Ok(())
    }

    fn write_checkpoint(&self, id: u64, cp: &Checkpoint) -> Result<String, StreamError> {
        let rel = format!("_checkpoints/{}/{}-{:08}.bin", self.opts.instance, self.run_id, id);
        let path = self.opts.data_dir.join(&rel);
        let io = |p: &Path, e: std::io::Error| StreamError::History(format!("{}: {e}", p.display()));
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let tmp = path.with_extension("bin.tmp");
        let bytes = bincode::serialize(cp).map_err(|e| StreamError::History(format!("checkpoint: {e}")))?;
        let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        if let Ok(mut c) = self.checkpoints.lock() {
            c.push(path);
        }
        Ok(rel)
    }

    /// Keeps the last two checkpoints of this run (the manifest points at the last).
    fn prune_checkpoints(&self) {
        if let Ok(mut c) = self.checkpoints.lock() {
            while c.len() > 2 {
                let old = c.remove(0);
                let _ = fs::remove_file(old);
            }
        }
    }
}

/// The last checkpoint of `instance` on `topic`, if its last commit has one.
fn load_checkpoint(data_dir: &Path, topic: &str, instance: &str) -> Result<Option<Checkpoint>, StreamError> {
    let commits = history::read_manifest(data_dir).map_err(|e| StreamError::History(e.to_string()))?;
    let last = commits.iter().rev().filter_map(|c| c.stream.as_ref()).find(|m| m.topic == topic && m.instance == instance);
    let Some(rel) = last.and_then(|m| m.checkpoint.clone()) else { return Ok(None) };
    let path = data_dir.join(&rel);
    let bytes = fs::read(&path).map_err(|e| StreamError::History(format!("{}: {e}", path.display())))?;
    let cp: Checkpoint = bincode::deserialize(&bytes)
        .map_err(|e| StreamError::History(format!("{}: unreadable checkpoint: {e}", path.display())))?;
    Ok(Some(cp))
}

/// What a streaming run did.
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    /// Merged worker statistics (what this run processed).
    pub run: RunStats,
    /// Cuts committed.
    pub cuts: u64,
    /// Whether it ended because the topic was read to its end.
    pub reached_end: bool,
}

/// Where the records come from: a Kafka consumer-group member or the embedded log.
enum Input {
    Kafka(GroupSource),
    Local(LocalLogReader),
}

impl Input {
    fn poll(&self, timeout: Duration) -> Polled {
        match self {
            Input::Kafka(s) => s.poll(timeout),
            Input::Local(r) => r.poll(timeout),
        }
    }
    fn pause_resume(&self, pause: &[i32], resume: &[i32]) -> Result<(), String> {
        match self {
            Input::Kafka(s) => s.pause_resume(pause, resume).map_err(|e| e.to_string()),
            Input::Local(r) => {
                r.pause_resume(pause, resume);
                Ok(())
            }
        }
    }
    fn commit(&self, next_offsets: &BTreeMap<i32, i64>, sync: bool) -> Result<(), String> {
        match self {
            Input::Kafka(s) => s.commit(next_offsets, sync).map_err(|e| e.to_string()),
            Input::Local(r) => {
                r.commit(next_offsets);
                Ok(())
            }
        }
    }
    fn lag(&self) -> Option<i64> {
        match self {
            Input::Kafka(s) => s.lag(),
            Input::Local(r) => r.lag(),
        }
    }
    fn close(self, timeout: Duration) {
        match self {
            Input::Kafka(s) => s.close(timeout),
            Input::Local(_) => {}
        }
    }
}

/// Runs the dataflow over the topic until stopped (or, with `stop_at_end`, until its end).
pub fn run_stream(
    opts: &StreamOptions,
    registry: Vec<SensorSpec>,
    control: Arc<StreamControl>,
) -> Result<StreamStats, StreamError> {
    let workers = opts.workers.max(1);
    let (published, discarded) = history::recover(&opts.data_dir).map_err(|e| StreamError::History(e.to_string()))?;
    if published + discarded > 0 {
        tracing::info!(published, discarded, "recovered the history");
    }
    let run_id = crate::new_run_id((opts.now_ms)());
    let _lock = StagingLock::acquire(&opts.data_dir, &run_id).map_err(|e| StreamError::History(e.to_string()))?;
    let checkpoint = load_checkpoint(&opts.data_dir, &opts.topic, &opts.instance)?.map(Arc::new);

    let shared = Arc::new(Shared {
        partitions: Mutex::new(BTreeMap::new()),
        arrived: AtomicU64::new(0),
        cut_ready: AtomicU64::new(0),
        cut_time: AtomicI64::new(checkpoint.as_ref().map_or(DataflowTime::MIN, |c| c.cut_time)),
        resumed: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        paused: Mutex::new(Vec::new()),
        lateness: opts.cfg.pipeline.lateness_ms,
        idle_timeout: opts.idle_timeout,
        stop_at_end: opts.stop_at_end,
    });
    if let Some(cp) = &checkpoint {
        let mut parts = shared.partitions.lock().map_err(|_| StreamError::Dataflow("poisoned".into()))?;
        let now = Instant::now();
        for (p, (max_seen, next)) in &cp.partitions {
            parts.insert(
                *p,
                Partition {
                    owned: false,
                    max_seen: *max_seen,
                    first_seen: *max_seen,
                    next_offset: *next,
                    last_arrival: now,
                    assigned_at: now,
                    at_end: false,
                },
            );
        }
        let carried_over = cp.sensor.iter().map(SensorStageCheckpoint::pending).sum::<usize>() as u64;
        if let Ok(mut c) = control.committed.lock() {
            c.carried_over = carried_over;
        }
        tracing::info!(
            watermark = %vigil_events::format_rfc3339_ms(watermark_of(cp.cut_time)),
            partitions = cp.partitions.len(),
            waiting = carried_over,
            "restoring the last checkpoint"
        );
    }

    let partitions_hint = match &opts.local {
        Some(log) => log.partitions(),
        None => vigil_connectors::kafka::partition_count(&opts.brokers, &opts.topic, Duration::from_secs(10)).unwrap_or(0),
    };
    if let Some(t) = &opts.outputs {
        // Brokers need not create topics on first use: create the output topics up front.
        vigil_connectors::kafka::ensure_topics(&opts.brokers, &t.all(), partitions_hint.max(1) as i32, Duration::from_secs(30))
            .map_err(|e| StreamError::Kafka(format!("creating output topics: {e}")))?;
    }
    let outputs = match (&opts.outputs, &opts.notifier) {
        (Some(t), n) => Some(Arc::new(
            Outputs::new(&opts.brokers, t.clone(), &opts.topic, n.clone()).map_err(|e| StreamError::Kafka(e.to_string()))?,
        )),
        (None, Some(n)) => Some(Arc::new(Outputs::notifications(n.clone()))),
        (None, None) => None,
    };
    let source_names: Arc<Vec<String>> =
        Arc::new((0..partitions_hint.max(1024)).map(|p| format!("{}/{}", opts.topic, p)).collect());

    let mut to_workers = Vec::new();
    let mut from_coord = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = crossbeam_channel::bounded::<ToWorker>(64);
        to_workers.push(tx);
        from_coord.push(Mutex::new(Some(rx)));
    }
    let from_coord = Arc::new(from_coord);
    let (parts_tx, parts_rx) = crossbeam_channel::unbounded::<(usize, CutPart)>();

    let coordinator = Arc::new(Coordinator {
        opts: opts.clone(),
        run_id: run_id.clone(),
        shared: shared.clone(),
        to_workers,
        pending: Mutex::new(vec![Vec::new(); workers]),
        parts_rx: Mutex::new(parts_rx),
        outputs: outputs.clone(),
        control: control.clone(),
        cut_seq: AtomicU64::new(0),
        dirty: AtomicUsize::new(0),
        failure: Mutex::new(None),
        last_offsets: Mutex::new(BTreeMap::new()),
        checkpoints: Mutex::new(Vec::new()),
    });

    // Workers.
    let wopts = opts.clone();
    let wshared = shared.clone();
    let wcheckpoint = checkpoint.clone();
    let wrun = run_id.clone();
    let wcontrol = control.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let rx = from_coord[index].lock().ok().and_then(|mut r| r.take());
        let Some(rx) = rx else { return RunStats::default() };
        worker_loop(WorkerArgs {
            worker,
            index,
            peers,
            rx,
            parts_tx: parts_tx.clone(),
            shared: wshared.clone(),
            opts: &wopts,
            run_id: &wrun,
            registry: &registry,
            checkpoint: wcheckpoint.as_deref(),
            outputs: outputs.clone(),
            sources: source_names.clone(),
            control: wcontrol.clone(),
        })
    })
    .map_err(StreamError::Dataflow)?;

    // The consumer.
    let owner = Arc::new(Owner {
        data_dir: opts.data_dir.clone(),
        topic: opts.topic.clone(),
        shared: shared.clone(),
        coordinator: Mutex::new(Some(coordinator.clone())),
    });
    let source = match &opts.local {
        Some(log) => Ok(Input::Local(LocalLogReader::new(log.clone(), owner.clone()))),
        None => GroupSource::new(
            &opts.brokers,
            &opts.group,
            opts.static_membership.then_some(opts.instance.as_str()),
            &opts.topic,
            owner.clone(),
            &opts.consumer,
        )
        .map(Input::Kafka),
    };
    let source = match source {
        Ok(s) => s,
        Err(e) => {
            shared.abort.store(true, Ordering::Relaxed);
            drop(coordinator);
            let _ = guards.join();
            return Err(StreamError::Kafka(e.to_string()));
        }
    };
    tracing::info!(topic = %opts.topic, group = %opts.group, instance = %opts.instance, workers, run = %run_id, "consuming");

    let mut last_cut = Instant::now();
    // Offsets committed to the group are informational (lag monitoring): every few seconds is plenty.
    let mut last_group_commit = Instant::now();
    let mut last_flush = Instant::now();
    let mut last_error_log: Option<Instant> = None;
    let mut reached_end = false;
    let mut seen_assignment = false;
    let max_lead = opts.cfg.pipeline.max_lead_ms;
    let mut ended: std::collections::HashSet<i32> = std::collections::HashSet::new();
    loop {
        if control.stop.load(Ordering::Relaxed) || coordinator.has_failed() {
            break;
        }
        match source.poll(Duration::from_millis(20)) {
            Polled::Record(r) => {
                control.records_in.fetch_add(1, Ordering::Relaxed);
                if ended.remove(&r.partition) {
                    // More data after an end (a live topic): the partition is not at its end any more.
                    if let Ok(mut parts) = shared.partitions.lock() {
                        if let Some(e) = parts.get_mut(&r.partition) {
                            e.at_end = false;
                        }
                    }
                }
                coordinator.route(r);
                control.is_ready();
            }
            Polled::PartitionEnd(p) => {
                coordinator.flush_all();
                ended.insert(p);
                if let Ok(mut parts) = shared.partitions.lock() {
                    if let Some(e) = parts.get_mut(&p) {
                        e.at_end = true;
                    }
                }
                control.is_ready();
            }
            Polled::Nothing => coordinator.flush_all(),
            Polled::Error(e) => {
                coordinator.flush_all();
                control.not_ready(format!("kafka: {e}"));
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(error = %e, "kafka client error (retrying)");
                    last_error_log = Some(Instant::now());
                }
            }
        }
        if last_flush.elapsed() > Duration::from_millis(5) {
            coordinator.flush_all();
            last_flush = Instant::now();
            align(&source, &shared, max_lead);
        }
        if last_cut.elapsed() >= opts.commit_interval {
            if let Err(e) = coordinator.cut("interval") {
                coordinator.failed(e);
                break;
            }
            if last_group_commit.elapsed() >= Duration::from_secs(5) {
                if let Ok(offsets) = coordinator.last_offsets.lock().map(|o| o.clone()) {
                    if let Err(e) = source.commit(&offsets, false) {
                        tracing::debug!(error = %e, "offset commit to the group failed (the manifest holds them)");
                    }
                    control.lag.store(source.lag().unwrap_or(-1), Ordering::Relaxed);
                }
                last_group_commit = Instant::now();
            }
            last_cut = Instant::now();
        }
        if opts.stop_at_end {
            let parts = shared.partitions.lock().map(|p| p.clone()).unwrap_or_default();
            let owned: Vec<&Partition> = parts.values().filter(|p| p.owned).collect();
            seen_assignment |= !owned.is_empty();
            if seen_assignment && !owned.is_empty() && owned.iter().all(|p| p.at_end) {
                reached_end = true;
                break;
            }
        }
    }

    // Shut down: a last cut (or, at the end of a bounded topic, flush everything and commit).
    let failure = coordinator.failure.lock().ok().and_then(|mut f| f.take());
    if let Some(e) = failure {
        shared.abort.store(true, Ordering::Relaxed);
        *owner.coordinator.lock().map_err(|_| StreamError::Dataflow("poisoned".into()))? = None;
        source.close(Duration::from_secs(3));
        drop(coordinator);
        let _ = guards.join();
        return Err(e);
    }
    let result = if reached_end { finish(&coordinator) } else { coordinator.cut("shutdown") };
    if let Ok(offsets) = coordinator.last_offsets.lock().map(|o| o.clone()) {
        let _ = source.commit(&offsets, true);
    }
    *owner.coordinator.lock().map_err(|_| StreamError::Dataflow("poisoned".into()))? = None;
    shared.abort.store(true, Ordering::Relaxed);
    source.close(Duration::from_secs(3));
    let cuts = coordinator.cut_seq.load(Ordering::Relaxed);
    drop(coordinator);
    let mut total = RunStats::default();
    for r in guards.join() {
        total.merge(r.map_err(StreamError::Dataflow)?);
    }
    result?;
    Ok(StreamStats { run: total, cuts, reached_end })
}

/// Watermark alignment: a partition whose event time runs more than `max_lead` ahead of the
/// watermark is paused until the others catch up, so the readings waiting for the watermark (and
/// so memory) stay bounded when partitions are read at different speeds (a backlog, a restart).
fn align(source: &Input, shared: &Shared, max_lead: i64) {
    let Ok(mut paused) = shared.paused.lock() else { return };
    let watermark = shared.watermark();
    let Ok(parts) = shared.partitions.lock() else { return };
    // Every partition idle (paused ones included: they get nothing new): no partition is behind,
    // so none waits. Pausing here would stall the run for good, as nothing would move the
    // watermark again.
    if watermark.is_none() && parts.values().filter(|p| p.owned).all(|p| shared.is_idle(p)) {
        drop(parts);
        if !paused.is_empty() {
            let _ = source.pause_resume(&[], &paused);
            paused.clear();
        }
        return;
    }
    // Before every partition has been read the watermark is held; the partitions already read
    // then run at most `max_lead` beyond where the earliest of them started, so one partition
    // fetched late does not make the others pile up in memory.
    let reference = watermark.or_else(|| {
        parts
            .values()
            .filter(|p| p.owned && p.first_seen > EventTime::MIN)
            .map(|p| p.first_seen.saturating_sub(shared.lateness))
            .min()
    });
    let Some(w) = reference else {
        drop(parts);
        if !paused.is_empty() {
            let _ = source.pause_resume(&[], &paused);
            paused.clear();
        }
        return;
    };
    let mut pause = Vec::new();
    let mut resume = Vec::new();
    for (p, s) in parts.iter().filter(|(_, s)| s.owned) {
        let ahead = s.max_seen.saturating_sub(shared.lateness).saturating_sub(w) > max_lead;
        let is_paused = paused.contains(p);
        if ahead && !is_paused {
            pause.push(*p);
        } else if !ahead && is_paused {
            resume.push(*p);
        }
    }
    drop(parts);
    if pause.is_empty() && resume.is_empty() {
        return;
    }
    tracing::debug!(?pause, ?resume, watermark = w, "watermark alignment");
    if source.pause_resume(&pause, &resume).is_ok() {
        paused.retain(|p| !resume.contains(p));
        paused.extend(pause);
    }
}

/// End of a bounded topic: close the inputs (every window closes), then commit the last files.
fn finish(coordinator: &Coordinator) -> Result<(), StreamError> {
    coordinator.flush_all();
    // `u64::MAX` marks the final part.
    for tx in &coordinator.to_workers {
        let _ = tx.send(ToWorker::Cut(u64::MAX));
    }
    let (files, _, _) = coordinator.collect_parts(u64::MAX)?;
    let n = files.len();
    let id = coordinator.cut_seq.fetch_add(1, Ordering::Relaxed) + 1;
    // Every window is closed: a later run starts from fresh state at these offsets.
    coordinator.commit(id, files, &coordinator.positions()?, None)?;
    tracing::info!(files = n, "end of topic: everything flushed and committed");
    Ok(())
}

struct WorkerArgs<'a, 'w> {
    worker: &'w mut timely::worker::Worker,
    index: usize,
    peers: usize,
    rx: Receiver<ToWorker>,
    parts_tx: Sender<(usize, CutPart)>,
    shared: Arc<Shared>,
    opts: &'a StreamOptions,
    run_id: &'a str,
    registry: &'a [SensorSpec],
    checkpoint: Option<&'a Checkpoint>,
    outputs: Option<Arc<Outputs>>,
    sources: Arc<Vec<String>>,
    control: Arc<StreamControl>,
}

fn worker_loop(a: WorkerArgs<'_, '_>) -> RunStats {
    let WorkerArgs { worker, index, peers, rx, parts_tx, shared, opts, run_id, registry, checkpoint, outputs, sources, control } =
        a;
    let cfg = &opts.cfg;
    let wcfg = |_: &str| {
        Some(WriterConfig {
            data_dir: opts.data_dir.clone(),
            run: run_id.to_string(),
            worker: index,
            max_rows_per_file: cfg.history.max_rows_per_file,
            row_group_rows: cfg.history.row_group_rows,
            max_file_span_ms: cfg.history.max_file_span_ms,
            sources: sources.clone(),
        })
    };
    // Hard-limit alerts go out the moment a reading arrives (the history's copy follows the watermark).
    let mut alerts =
        outputs.clone().map(|o| (vigil_operators::sensor_stage::ArrivalLimitAlerts::new(cfg.sensor_stage_config(), registry), o));
    let change_outputs = outputs.clone();
    let mut graph = crate::graph::build(worker, cfg, opts.now_ms, wcfg, outputs);
    crate::graph::load_registry(&mut graph, index, registry);
    if let Some(cp) = checkpoint {
        let mut sensor = graph.sensor.borrow_mut();
        for part in &cp.sensor {
            sensor.restore(part, |k| k % peers as u64 == index as u64);
        }
        drop(sensor);
        let mut asset = graph.asset.borrow_mut();
        for part in &cp.asset {
            asset.restore(part, |a| stable_hash_str(a) % peers as u64 == index as u64);
        }
        drop(asset);
        graph.advance_time(cp.cut_time);
    }
    let mut validator = Validator::new(cfg.validate_config(), Box::new(opts.now_ms));
    let lateness = cfg.pipeline.lateness_ms;
    let mut cut: Option<(u64, Option<DataflowTime>, bool)> = None; // (id, time once published, part sent)
    let mut last_cut_time = shared.cut_time.load(Ordering::Acquire);
    let mut batch_max: BTreeMap<i32, (EventTime, i64)> = BTreeMap::new();

    loop {
        if shared.abort.load(Ordering::Relaxed) {
            // Stop without flushing: what follows the last commit is read again after a restart.
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
            break;
        }
        let mut busy = false;
        if cut.is_none() {
            loop {
                match rx.try_recv() {
                    Ok(ToWorker::Records(batch)) => {
                        busy = true;
                        validator.tick();
                        ingest(&mut graph, &mut validator, &shared, batch, lateness, opts.now_ms, &mut batch_max, &mut alerts);
                    }
                    Ok(ToWorker::Cut(id)) => {
                        cut = Some((id, None, false));
                        if id != u64::MAX {
                            shared.arrived.fetch_add(1, Ordering::AcqRel);
                        }
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        shared.abort.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
            if index == 0 && cut.is_none() {
                for change in control.take_changes() {
                    busy = true;
                    tracing::info!(asset = %change.asset_id, proposal = %change.proposal_id, status = change.status.as_str(), "status change enters the dataflow");
                    if let Some(o) = &change_outputs {
                        o.schedule_change(&change);
                    }
                    graph.changes_in.send(change);
                }
            }
        }
        match cut {
            Some((u64::MAX, _, _)) => break,
            Some((id, time, sent)) => {
                if index == 0 && time.is_none() && shared.cut_ready.load(Ordering::Acquire) != id {
                    // Everyone stopped reading: the partitions' state is frozen; pick T.
                    if shared.arrived.load(Ordering::Acquire) >= id * peers as u64 {
                        let w = shared.watermark().map_or(DataflowTime::MIN, dataflow_time);
                        let t = w.max(last_cut_time).max(graph.time) + 1;
                        shared.cut_time.store(t, Ordering::Release);
                        shared.cut_ready.store(id, Ordering::Release);
                    }
                }
                let mut time = time;
                if time.is_none() && shared.cut_ready.load(Ordering::Acquire) == id {
                    let t = shared.cut_time.load(Ordering::Acquire);
                    graph.advance_time(t);
                    last_cut_time = t;
                    time = Some(t);
                }
                let mut sent = sent;
                if let Some(t) = time {
                    if !sent && graph.sinks_reached(t) {
                        let part = cut_part(&graph);
                        let _ = parts_tx.send((index, part));
                        sent = true;
                    }
                }
                if sent && shared.resumed.load(Ordering::Acquire) >= id {
                    cut = None;
                } else {
                    cut = Some((id, time, sent));
                }
            }
            None => {
                if let Some(w) = shared.watermark() {
                    graph.advance(w);
                }
            }
        }
        if !busy {
            worker.step_or_park(Some(Duration::from_millis(1)));
        } else {
            worker.step();
        }
    }

    if matches!(cut, Some((u64::MAX, _, _))) {
        // End of a bounded topic: close the inputs and let everything flow out.
        let stats = graph.close();
        while worker.step_or_park(Some(Duration::from_millis(1))) {}
        let out = stats.borrow().clone();
        let error = (!out.errors.is_empty()).then(|| out.errors.join("; "));
        let _ = parts_tx.send((index, CutPart { stats: RunStats::default(), files: out.files.clone(), state: None, error }));
        return out;
    }
    let out = graph.stats.borrow().clone();
    out
}

/// Folds the worker's lists into counts (memory stays flat however long the stream runs) and
/// returns its statistics for the commit's counts (files aside).
fn cut_stats(graph: &crate::graph::Graph) -> RunStats {
    let mut st = graph.stats.borrow_mut();
    st.fold_lists();
    RunStats { files: Vec::new(), ..st.clone() }
}

/// A worker's share of a cut: its files synced, its stages' state.
fn cut_part(graph: &crate::graph::Graph) -> CutPart {
    let mut files = Vec::new();
    let mut errors: Vec<String> = graph.stats.borrow_mut().errors.drain(..).collect();
    for s in &graph.sinks {
        match s.sync() {
            Ok(f) => files.extend(f),
            Err(e) => errors.push(e.to_string()),
        }
    }
    graph.stats.borrow_mut().files.extend(files.iter().cloned());
    CutPart {
        stats: cut_stats(graph),
        files,
        state: Some((graph.sensor.borrow().checkpoint(), graph.asset.borrow().checkpoint())),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// Validates a batch of records and sends them into the graph, applying each partition's lateness.
#[allow(clippy::too_many_arguments)]
fn ingest(
    graph: &mut crate::graph::Graph,
    validator: &mut Validator,
    shared: &Shared,
    batch: Vec<OwnedRecord>,
    lateness: i64,
    now_ms: fn() -> i64,
    scratch: &mut BTreeMap<i32, (EventTime, i64)>,
    alerts: &mut Option<(vigil_operators::sensor_stage::ArrivalLimitAlerts, Arc<Outputs>)>,
) {
    scratch.clear();
    {
        let Ok(parts) = shared.partitions.lock() else { return };
        for r in &batch {
            scratch
                .entry(r.partition)
                .or_insert_with(|| parts.get(&r.partition).map_or((EventTime::MIN, 0), |p| (p.max_seen, p.next_offset)));
        }
    }
    let floor = graph.watermark();
    graph.stats.borrow_mut().records_in += batch.len() as u64;
    for r in batch {
        let pos = SourcePos { source: r.partition.max(0) as u32, offset: r.offset.max(0) as u64 };
        let Some(state) = scratch.get_mut(&r.partition) else { continue };
        if r.offset < state.1 {
            // Already read (a re-delivery after a seek): it is in the history or in the state.
            graph.stats.borrow_mut().redelivered += 1;
            continue;
        }
        state.1 = r.offset + 1;
        match validator.validate_json(&r.payload, pos) {
            Ok(reading) => {
                let behind = state.0.saturating_sub(lateness);
                if reading.ts < behind || reading.ts < floor {
                    graph.reject(too_late(reading, state.0.max(floor.saturating_add(lateness)), lateness, now_ms));
                } else {
                    state.0 = state.0.max(reading.ts);
                    if let Some((a, out)) = alerts.as_mut() {
                        if let Some(alert) = a.observe(&reading) {
                            out.anomaly(&alert);
                        }
                    }
                    graph.readings_in.send(reading);
                }
            }
            Err(rej) => graph.reject(rej),
        }
    }
    if let Ok(mut parts) = shared.partitions.lock() {
        let now = Instant::now();
        for (p, (m, n)) in scratch.iter() {
            if let Some(e) = parts.get_mut(p) {
                e.max_seen = e.max_seen.max(*m);
                if e.first_seen == EventTime::MIN {
                    e.first_seen = e.max_seen;
                }
                e.next_offset = e.next_offset.max(*n);
                e.last_arrival = now;
            }
        }
    }
}
