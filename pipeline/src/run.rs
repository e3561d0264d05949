//! Running the dataflow: sources feeding the graph, the graph, and the history sinks.
//!
//! One timely worker per thread. Each worker reads its share of the input, validates it, and
//! sends accepted readings into the graph at an event-time watermark no later than any of them;
//! the graph ([`crate::graph`]) routes readings by sensor and assets by asset. Sinks write the
//! history files into the staging area; the coordinator commits them when every worker is done.
//!
//! Files are read in chunks, chunk `k` by worker `k mod W`. Each worker publishes the greatest
//! accepted event time of every chunk it parses; before sending chunk `k` it waits for chunks
//! `0..k` to be published, so it knows the exact greatest event time of everything before its
//! chunk in input order. That makes the watermark — and so every `too_late` decision — the same
//! whatever the number of workers. In event-time order (the default for files) a record behind
//! that watermark means the file is not in order within the lateness: the run stops and is
//! redone from a sorted copy ([`crate::sort`]), so the result never depends on the file's order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_connectors::files::{ChunkReader, Plan, Record};
use vigil_connectors::history::{FileEntry, WriterConfig};
use vigil_connectors::simulator::{write_json, Fleet, SensorSim, SimRecord};
use vigil_events::{dataflow_time, EventTime, RejectReason, RejectedReading, SensorReading, Severity, SourcePos};
use vigil_operators::decode::decode_cells_mapped;
use vigil_operators::sensor_stage::SensorSpec;
use vigil_operators::validate::{Validator, ZonelessUtc};

use crate::config::VigilConfig;

/// How a bounded file is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOrder {
    /// In event-time order, whatever the order of the rows (the default).
    EventTime,
    /// In file order, as if the rows had arrived on a stream in that order.
    File,
}

/// Where the records come from.
#[derive(Clone)]
pub enum Source {
    /// Files, planned into chunks.
    Files {
        /// The plan.
        plan: Arc<Plan>,
        /// Order.
        order: ReplayOrder,
        /// If the plan reads a sorted copy: the original sources' names and formats.
        sorted: Option<Arc<crate::sort::SortedInput>>,
        /// A run that continues grown files: (windows, events) — windows starting and events at
        /// or before these event times are not written (the earlier run's end closed and wrote
        /// them: windows up to its last reading, events up to its last event).
        derived_after: Option<(EventTime, EventTime)>,
    },
    /// The built-in fleet simulator.
    Simulator {
        /// The fleet.
        fleet: Arc<Fleet>,
    },
}

/// Settings of one run.
#[derive(Clone)]
pub struct RunOptions {
    /// Configuration.
    pub cfg: VigilConfig,
    /// History directory.
    pub data_dir: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// Show progress on stderr.
    pub progress: bool,
    /// Wall clock (ms since the epoch); injected so tests can fix it.
    pub now_ms: fn() -> i64,
    /// Run id (names the history files of this run).
    pub run_id: String,
    /// Write the history (off for backtests, which read the run's statistics instead).
    pub write_history: bool,
}

/// The wall clock.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// An anomaly, as the summary and the scoring need it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyBrief {
    /// Sensor ("" for asset-level detectors).
    pub sensor_id: String,
    /// Asset.
    pub asset_id: String,
    /// Detector.
    pub detector: String,
    /// Severity.
    pub severity: Severity,
    /// Event time.
    pub ts: EventTime,
    /// Window start, for window-based detectors.
    pub window_start: Option<EventTime>,
    /// The detector's score.
    pub score: f64,
}

/// A drift event, briefly.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftBrief {
    /// Sensor.
    pub sensor_id: String,
    /// Statistic.
    pub statistic: String,
    /// Event time.
    pub ts: EventTime,
}

/// A proposal, briefly.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalBrief {
    /// Asset.
    pub asset_id: String,
    /// Event time.
    pub ts: EventTime,
    /// Priority.
    pub priority: Severity,
}

/// A closed incident, briefly.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentBrief {
    /// Asset.
    pub asset_id: String,
    /// Time of its first evidence.
    pub opened_at: EventTime,
    /// Time of its last evidence.
    pub last_evidence_at: EventTime,
    /// Severity.
    pub severity: Severity,
    /// Raised in a maintenance window.
    pub suppressed: bool,
    /// Contributing sensors, furthest from normal first.
    pub sensors: Vec<String>,
}

/// An asset's latest prediction, briefly.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionBrief {
    /// Event time.
    pub ts: EventTime,
    /// Health in [0, 1].
    pub health: f64,
    /// Remaining useful life, hours.
    pub rul_hours: Option<f64>,
    /// Failure probability within the horizon.
    pub failure_probability: f64,
    /// Model and version.
    pub model: String,
}

/// What one worker (and then the whole run) counted.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    /// Records read from the sources.
    pub records_in: u64,
    /// Readings stored.
    pub accepted: u64,
    /// Rejected records by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Records delivered again after a seek (already read): skipped.
    pub redelivered: u64,
    /// Tumbling windows.
    pub tumbling_windows: u64,
    /// Hopping windows.
    pub hopping_windows: u64,
    /// Anomalies.
    pub anomalies: Vec<AnomalyBrief>,
    /// Drift events.
    pub drift: Vec<DriftBrief>,
    /// Predictions.
    pub predictions: u64,
    /// Each asset's latest prediction (one per asset, so bounded by the fleet).
    pub last_predictions: BTreeMap<String, PredictionBrief>,
    /// Proposals.
    pub proposals: Vec<ProposalBrief>,
    /// Decision requests.
    pub decision_requests: u64,
    /// Incidents closed (a bounded run closes every incident by its end).
    pub incidents: Vec<IncidentBrief>,
    /// Incidents opened.
    pub incidents_opened: u64,
    /// Incident revisions written (open, updated, closed).
    pub incident_revisions: u64,
    /// History files written (staged).
    pub files: Vec<FileEntry>,
    /// Bad records the simulator injected, by expected reason.
    pub injected_bad: BTreeMap<String, u64>,
    /// Errors (write failures).
    pub errors: Vec<String>,
    /// The input was out of order beyond the lateness (event-time replay must sort).
    pub needs_sort: bool,
    /// Counts of the briefs and files folded out of the lists above ([`RunStats::fold_lists`]).
    pub folded: FoldedCounts,
    /// Times written without a zone, read as UTC because no zone was given.
    pub zoneless_utc: ZonelessUtc,
    /// Inputs (or their first part) found in the history already, and so not read again.
    pub in_history: Vec<InputInHistory>,
    /// The sinks' setting from [`Source::Files`]`::derived_after`: derived rows at or before it
    /// are not written.
    pub derived_after: Option<(EventTime, EventTime)>,
}

/// An input of a bounded run that the history holds already (all of it, or the part before
/// `continued_from_line`): identified by its content, not its name.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InputInHistory {
    /// The input as given (a path, or `simulator`).
    pub input: String,
    /// Readings of it in the history.
    pub readings: u64,
    /// Records of it rejected (dead letters in the history).
    pub rejected: u64,
    /// The name it went into the history under, when not this one (a copy, or the same content
    /// given twice in this run).
    pub same_as: Option<String>,
    /// A file that grew: the line this run went on from (the lines before it were in the history).
    pub continued_from_line: Option<u64>,
    /// What it is, in a few words (a fleet's settings).
    pub what: Option<String>,
}

/// Counts that stand in for lists a long streaming run does not keep.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FoldedCounts {
    /// Anomalies by detector.
    pub anomalies_by_detector: BTreeMap<String, u64>,
    /// Anomalies by severity.
    pub anomalies_by_severity: BTreeMap<String, u64>,
    /// Drift events by statistic.
    pub drift_by_statistic: BTreeMap<String, u64>,
    /// Proposals.
    pub proposals: u64,
    /// Incidents closed.
    pub incidents_closed: u64,
    /// History rows by table.
    pub history_rows: BTreeMap<String, u64>,
    /// History files.
    pub files: u64,
}

impl FoldedCounts {
    fn merge(&mut self, o: FoldedCounts) {
        for (k, v) in o.anomalies_by_detector {
            *self.anomalies_by_detector.entry(k).or_default() += v;
        }
        for (k, v) in o.anomalies_by_severity {
            *self.anomalies_by_severity.entry(k).or_default() += v;
        }
        for (k, v) in o.drift_by_statistic {
            *self.drift_by_statistic.entry(k).or_default() += v;
        }
        self.proposals += o.proposals;
        self.incidents_closed += o.incidents_closed;
        for (k, v) in o.history_rows {
            *self.history_rows.entry(k).or_default() += v;
        }
        self.files += o.files;
    }
}

impl RunStats {
    pub(crate) fn merge(&mut self, o: RunStats) {
        self.records_in += o.records_in;
        self.accepted += o.accepted;
        self.redelivered += o.redelivered;
        for (k, v) in o.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        self.tumbling_windows += o.tumbling_windows;
        self.hopping_windows += o.hopping_windows;
        self.anomalies.extend(o.anomalies);
        self.drift.extend(o.drift);
        self.predictions += o.predictions;
        for (asset, p) in o.last_predictions {
            match self.last_predictions.get(&asset) {
                Some(q) if q.ts >= p.ts => {}
                _ => {
                    self.last_predictions.insert(asset, p);
                }
            }
        }
        self.proposals.extend(o.proposals);
        self.decision_requests += o.decision_requests;
        self.incidents.extend(o.incidents);
        self.incidents_opened += o.incidents_opened;
        self.incident_revisions += o.incident_revisions;
        self.files.extend(o.files);
        for (k, v) in o.injected_bad {
            *self.injected_bad.entry(k).or_default() += v;
        }
        self.errors.extend(o.errors);
        self.needs_sort |= o.needs_sort;
        self.folded.merge(o.folded);
        self.in_history.extend(o.in_history);
        self.zoneless_utc.count += o.zoneless_utc.count;
        if self.zoneless_utc.example.is_none() {
            self.zoneless_utc.example = o.zoneless_utc.example;
        }
    }

    /// Folds the lists of anomalies, drift events, proposals and files into counts, so that a
    /// streaming run's statistics stay the same size however long it runs.
    pub fn fold_lists(&mut self) {
        let f = &mut self.folded;
        for a in self.anomalies.drain(..) {
            *f.anomalies_by_detector.entry(a.detector).or_default() += 1;
            *f.anomalies_by_severity.entry(a.severity.as_str().to_string()).or_default() += 1;
        }
        for d in self.drift.drain(..) {
            *f.drift_by_statistic.entry(d.statistic).or_default() += 1;
        }
        f.proposals += self.proposals.len() as u64;
        self.proposals.clear();
        f.incidents_closed += self.incidents.len() as u64;
        self.incidents.clear();
        for file in self.files.drain(..) {
            *f.history_rows.entry(file.table).or_default() += file.rows;
            f.files += 1;
        }
    }

    /// Anomalies by detector, listed and folded.
    pub fn anomalies_by_detector(&self) -> BTreeMap<String, u64> {
        let mut out = self.folded.anomalies_by_detector.clone();
        for a in &self.anomalies {
            *out.entry(a.detector.clone()).or_default() += 1;
        }
        out
    }

    /// Rejected records in all.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A worker failed.
    #[error("dataflow failed: {0}")]
    Dataflow(String),
    /// History could not be written.
    #[error("history: {0}")]
    History(String),
    /// An input could not be read.
    #[error("input: {0}")]
    Input(String),
}

/// Chunk maxima shared by the workers: not yet published, or published (possibly "empty").
const NOT_READY: i64 = i64::MIN;
const EMPTY: i64 = i64::MIN + 1;

/// Runs the dataflow over `source`; returns the merged statistics (files staged, not committed).
pub fn run(source: Source, opts: &RunOptions, registry: Vec<SensorSpec>) -> Result<RunStats, RunError> {
    let workers = opts.workers.max(1);
    let chunk_max: Arc<Vec<AtomicI64>> = Arc::new(match &source {
        Source::Files { plan, .. } => (0..plan.chunks.len()).map(|_| AtomicI64::new(NOT_READY)).collect(),
        Source::Simulator { .. } => Vec::new(),
    });
    let read_counter = Arc::new(AtomicU64::new(0));
    let abort = Arc::new(AtomicBool::new(false));
    let total_hint = match &source {
        Source::Files { plan, .. } => plan.chunks.len() as u64,
        Source::Simulator { fleet } => fleet.readings(),
    };
    let source_names: Arc<Vec<String>> = Arc::new(match &source {
        Source::Files { plan, sorted: None, .. } => plan.files.iter().map(|f| f.path.display().to_string()).collect(),
        Source::Files { sorted: Some(s), .. } => s.names.clone(),
        Source::Simulator { .. } => vec!["simulator".to_string()],
    });

    let done = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.then(|| {
        let (counter, done) = (read_counter.clone(), done.clone());
        let unit = if matches!(source, Source::Files { .. }) { "chunks" } else { "readings" };
        std::thread::spawn(move || crate::progress::report(counter, total_hint, unit, done))
    });

    let opts2 = opts.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let opts = &opts2;
        let cfg = &opts.cfg;
        let wcfg = |_: &str| {
            opts.write_history.then(|| WriterConfig {
                data_dir: opts.data_dir.clone(),
                run: opts.run_id.clone(),
                worker: index,
                max_rows_per_file: cfg.history.max_rows_per_file,
                row_group_rows: cfg.history.row_group_rows,
                max_file_span_ms: cfg.history.max_file_span_ms,
                sources: source_names.clone(),
            })
        };
        let mut feed = crate::graph::build(worker, cfg, opts.now_ms, wcfg, None);
        if let Source::Files { derived_after: Some(t), .. } = &source {
            feed.stats.borrow_mut().derived_after = Some(*t);
        }
        crate::graph::load_registry(&mut feed, index, &registry);
        let stats = feed.stats.clone();
        let probe = feed.probe.clone();

        let mut validator = Validator::new(cfg.validate_config(), Box::new(opts.now_ms));
        let lateness = cfg.pipeline.lateness_ms;
        let max_lead = cfg.pipeline.max_lead_ms;
        let mut records_in = 0u64;

        match &source {
            Source::Files { plan, order, sorted, .. } => {
                let mut reader = ChunkReader::default();
                let mut prefix_max = EventTime::MIN; // greatest accepted event time of chunks before `known`
                let mut known = 0usize;
                let mut parsed: Vec<Result<SensorReading, RejectedReading>> = Vec::new();
                let mut k = index;
                let (mut waited_order, mut waited_lead, mut parsing) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
                while k < plan.chunks.len() && !abort.load(Ordering::Relaxed) {
                    let t_parse = Instant::now();
                    let chunk = plan.chunks[k];
                    let file = &plan.files[chunk.file as usize];
                    parsed.clear();
                    validator.tick();
                    let res = reader.for_each_record(file, &chunk, |line, rec| {
                        let outcome = match sorted {
                            Some(s) => s.decode(&mut validator, rec),
                            None => {
                                decode_record(&mut validator, &file.columns, SourcePos { source: chunk.file, offset: line }, rec)
                            }
                        };
                        parsed.push(outcome);
                    });
                    if let Err(e) = res {
                        stats.borrow_mut().errors.push(e.to_string());
                        abort.store(true, Ordering::Relaxed);
                        break;
                    }
                    records_in += parsed.len() as u64;
                    parsing += t_parse.elapsed();
                    let t_wait = Instant::now();
                    let local_max = parsed.iter().filter_map(|r| r.as_ref().ok().map(|r| r.ts)).max();
                    chunk_max[k].store(local_max.unwrap_or(EMPTY).max(EMPTY), Ordering::Release);
                    // Wait until every earlier chunk has published its maximum.
                    while known < k {
                        let v = chunk_max[known].load(Ordering::Acquire);
                        if v == NOT_READY {
                            if abort.load(Ordering::Relaxed) {
                                break;
                            }
                            worker.step_or_park(Some(Duration::from_micros(200)));
                            continue;
                        }
                        prefix_max = prefix_max.max(v);
                        known += 1;
                    }
                    waited_order += t_wait.elapsed();
                    if abort.load(Ordering::Relaxed) {
                        break;
                    }
                    feed.advance(prefix_max.saturating_sub(lateness));
                    let mut running = prefix_max;
                    for r in parsed.drain(..) {
                        match r {
                            Ok(r) => {
                                if r.ts < running.saturating_sub(lateness) {
                                    if *order == ReplayOrder::EventTime {
                                        stats.borrow_mut().needs_sort = true;
                                        abort.store(true, Ordering::Relaxed);
                                        break;
                                    }
                                    feed.reject(too_late(r, running, lateness, opts.now_ms));
                                } else {
                                    running = running.max(r.ts);
                                    feed.readings_in.send(r);
                                }
                            }
                            Err(rej) => feed.reject(rej),
                        }
                    }
                    read_counter.fetch_add(1, Ordering::Relaxed);
                    // Throttle: stay within `max_lead` of the graph's progress.
                    let lead_floor = dataflow_time(feed.watermark().saturating_sub(max_lead));
                    let t_lead = Instant::now();
                    while probe.less_than(&lead_floor) && !abort.load(Ordering::Relaxed) {
                        worker.step_or_park(Some(Duration::from_micros(200)));
                    }
                    waited_lead += t_lead.elapsed();
                    worker.step();
                    k += peers;
                }
                tracing::debug!(worker = index, ?parsing, ?waited_order, ?waited_lead, "source done");
            }
            Source::Simulator { fleet } => {
                let mine: Vec<usize> = (index..fleet.sensors.len()).step_by(peers).collect();
                let mut sims: Vec<SensorSim> = mine.iter().map(|&i| SensorSim::new(fleet, &fleet.sensors[i])).collect();
                let mut prev: Vec<Vec<u8>> = vec![Vec::new(); mine.len()];
                let mut recs = Vec::new();
                let mut line = Vec::with_capacity(256);
                let mut max_seen = EventTime::MIN;
                let n = fleet.sensors.len() as u64;
                let ticks = fleet.ticks();
                let mut injected: BTreeMap<String, u64> = BTreeMap::new();
                for t in 0..ticks {
                    let tick_ts = fleet.cfg.start_ms + t as i64 * fleet.cfg.interval_ms;
                    if t % 64 == 0 {
                        validator.tick();
                    }
                    for (j, &i) in mine.iter().enumerate() {
                        let s = &fleet.sensors[i];
                        recs.clear();
                        sims[j].step(fleet, s, t, &mut recs);
                        for (q, rec) in recs.iter().enumerate() {
                            line.clear();
                            write_json(s, rec, tick_ts, &mut prev[j], &mut line);
                            if let SimRecord::Bad(kind) = rec {
                                *injected.entry(kind.reason().to_string()).or_default() += 1;
                            }
                            let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
                            let pos = SourcePos { source: 0, offset: (t * n + i as u64) * 4 + q as u64 };
                            records_in += 1;
                            match validator.validate_json(bytes, pos) {
                                Ok(r) if r.ts < max_seen.saturating_sub(lateness) => {
                                    feed.reject(too_late(r, max_seen, lateness, opts.now_ms))
                                }
                                Ok(r) => {
                                    max_seen = max_seen.max(r.ts);
                                    feed.readings_in.send(r);
                                }
                                Err(rej) => feed.reject(rej),
                            }
                        }
                    }
                    read_counter.fetch_add(mine.len() as u64, Ordering::Relaxed);
                    if t % 10 == 9 {
                        feed.advance(max_seen.saturating_sub(lateness));
                        let lead_floor = dataflow_time(feed.watermark().saturating_sub(max_lead));
                        while probe.less_than(&lead_floor) {
                            worker.step_or_park(Some(Duration::from_micros(200)));
                        }
                        worker.step();
                    }
                }
                stats.borrow_mut().injected_bad = injected;
            }
        }
        stats.borrow_mut().records_in = records_in;
        stats.borrow_mut().zoneless_utc = validator.zoneless_utc().clone();

        drop(feed.close());
        while worker.step_or_park(Some(Duration::from_millis(1))) {}
        tracing::debug!(worker = index, "dataflow drained");
        let out = stats.borrow().clone();
        out
    })
    .map_err(RunError::Dataflow)?;

    let mut total = RunStats::default();
    for r in guards.join() {
        total.merge(r.map_err(RunError::Dataflow)?);
    }
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.join();
    }
    if !total.errors.is_empty() {
        return Err(RunError::History(total.errors.join("; ")));
    }
    Ok(total)
}

impl crate::graph::Graph {
    pub(crate) fn reject(&mut self, r: RejectedReading) {
        self.rejected_in.send(r);
    }
}

pub(crate) fn too_late(r: SensorReading, max_seen: EventTime, lateness: i64, now_ms: fn() -> i64) -> RejectedReading {
    let wm = max_seen.saturating_sub(lateness);
    let raw = serde_json::json!({
        "sensor_id": &*r.sensor_id, "asset_id": &*r.asset_id, "sensor_type": r.sensor_type.as_str(),
        "value": r.value, "unit": &*r.unit, "ts": vigil_events::format_rfc3339_ms(r.ts),
    })
    .to_string();
    RejectedReading {
        raw: raw.into_bytes(),
        pos: r.pos,
        reason: RejectReason::TooLate,
        detail: format!(
            "event time {} is behind the watermark {} (lateness {} s)",
            vigil_events::format_rfc3339_ms(r.ts),
            vigil_events::format_rfc3339_ms(wm),
            lateness / 1000
        ),
        sensor_id: Some(r.sensor_id.clone()),
        ts: Some(r.ts),
        rejected_at: now_ms(),
    }
}

/// Validates one record of a file.
pub fn decode_record(
    validator: &mut Validator,
    columns: &[String],
    pos: SourcePos,
    rec: Record<'_>,
) -> Result<SensorReading, RejectedReading> {
    match rec {
        Record::Json(bytes) => validator.validate_json(bytes, pos),
        Record::Row { cells, raw } => {
            if raw.len() > validator.max_record_bytes() {
                return Err(validator.oversized(raw, pos));
            }
            let fields = decode_cells_mapped(columns, cells, validator.column_map());
            validator.validate(fields, raw, pos)
        }
        Record::Unreadable { raw, detail } => Err(RejectedReading {
            raw: raw[..raw.len().min(vigil_operators::validate::MAX_RAW_KEPT)].to_vec(),
            pos,
            reason: RejectReason::MalformedJson,
            detail: format!("unreadable row: {detail}"),
            sensor_id: None,
            ts: None,
            rejected_at: validator.now(),
        }),
    }
}
