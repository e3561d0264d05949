//! `vigil serve`: the API (and, with a source, the pipeline) in one process.
//!
//! Sources: `simulator` runs a live simulated fleet into the embedded log (`DATA/_log`), which
//! the streaming dataflow consumes exactly as it would a Kafka topic; `kafka` runs the dataflow
//! over `[kafka] topic` (as `vigil run`); `file` feeds a JSON-lines file into the embedded log
//! once; `none` (`--no-pipeline`) serves the history only.
//! `POST /api/v1/readings` appends to the source (the embedded log, or the Kafka topic). SIGTERM or Ctrl-C stops intake, lets
//! the pipeline make its last commit, stops the ledger after everything acknowledged is on disk,
//! and exits 0.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use vigil_api::{ApiConfig, AppState, KeyConfig, PlanningBook, Readiness, Scope};
use vigil_connectors::ledger::{Ledger, LedgerConfig};
use vigil_connectors::local_log::LocalLog;
use vigil_events::MaintenanceScheduled;
use vigil_pipeline::config::VigilConfig;
use vigil_pipeline::stream::{StreamControl, StreamOptions};
use vigil_queries::History;

/// Name of the embedded log (and the topic the manifest records its positions under).
const LOCAL_TOPIC: &str = "vigil.local";

/// What feeds the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ServeSource {
    /// A live simulated fleet (and `POST /readings`) through the embedded log.
    Simulator,
    /// Only `POST /readings`, through the embedded log.
    Ingest,
    /// A JSON-lines file (`--input`), fed once into the embedded log (a restart goes on after
    /// the last batch fed), then `POST /readings`.
    File,
    /// The `[kafka]` input topic, consumed exactly once into the history.
    Kafka,
    /// No pipeline: serve the history only.
    None,
}

/// Settings of `vigil serve`.
pub(crate) struct ServeArgs {
    pub(crate) data_dir: PathBuf,
    pub(crate) listen: Option<String>,
    pub(crate) source: ServeSource,
    /// The file of `--source file`.
    pub(crate) input: Option<PathBuf>,
    pub(crate) workers: Option<usize>,
    /// The simulated fleet (`simulator` source).
    pub(crate) fleet: vigil_connectors::simulator::FleetConfig,
    /// Simulated seconds a second.
    pub(crate) speed: f64,
    /// The simulator starts paused (the console's Simulator page starts it).
    pub(crate) simulator_paused: bool,
}

/// Where `POST /readings` goes.
enum IngestTarget {
    Local(Arc<LocalLog>),
    Kafka(vigil_connectors::kafka::JsonProducer, String),
}

/// The streaming run as the API sees it.
struct StreamHandle {
    control: Arc<StreamControl>,
    source: String,
    target: IngestTarget,
    cfg: VigilConfig,
    data_dir: PathBuf,
    started_ms: i64,
    simulator: Option<SimulatorHandle>,
}

/// The embedded simulator's feed, as the console controls it.
struct SimulatorHandle {
    control: Arc<vigil_connectors::export::FeedControl>,
    sensors: Vec<(String, String)>,
    interval_ms: i64,
    speed: f64,
    /// Whether the feed thread is still running (false once the fleet's hours are fed).
    alive: Arc<std::sync::atomic::AtomicBool>,
}

impl SimulatorHandle {
    fn status(&self) -> vigil_api::SimulatorStatus {
        let c = &self.control;
        let last = c.last_tick_ts.load(Ordering::Relaxed);
        vigil_api::SimulatorStatus {
            running: self.alive.load(Ordering::Relaxed) && !c.paused.load(Ordering::Relaxed),
            sensors: self.sensors.clone(),
            interval_ms: self.interval_ms,
            speed: self.speed,
            fed: c.fed.load(Ordering::Relaxed),
            last_tick_ms: (last != i64::MIN).then_some(last),
            injections: c.injections().into_iter().map(|i| (i.sensor_id, i.readings_left)).collect(),
        }
    }
}

/// Spike injected by the console: this many times the sensor's noise, on this many readings.
const INJECTED_SIGMAS: f64 = 25.0;
const INJECTED_READINGS: u32 = 12;

impl vigil_api::Pipeline for StreamHandle {
    fn readiness(&self) -> Readiness {
        let ready = self.control.ready.load(Ordering::Relaxed);
        let reason = self.control.reason.lock().ok().map(|r| r.clone()).filter(|r| !r.is_empty());
        let lag = self.control.lag.load(Ordering::Relaxed);
        Readiness {
            ready,
            reason: if ready { None } else { reason.or_else(|| Some("starting".into())) },
            lag: (lag >= 0).then_some(lag),
            source: self.source.clone(),
        }
    }

    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let c = &self.control;
        let committed = c.committed();
        let t = &committed.stats;
        let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| vec![(String::new(), v)];
        let by = |label: &str, m: &std::collections::BTreeMap<String, u64>| {
            m.iter().map(|(k, v)| (format!("{{{label}=\"{}\"}}", k.replace('"', "'")), *v)).collect::<Vec<_>>()
        };
        metric("vigil_records_in_total", "counter", "Records read from the source.", one(c.records_in.load(Ordering::Relaxed)));
        metric(
            "vigil_records_committed_total",
            "counter",
            "Records read from the source that the last commit covers (stored, dead-lettered, waiting or re-delivered).",
            one(t.records_in),
        );
        metric(
            "vigil_readings_waiting",
            "gauge",
            "Readings waiting for the watermark in the dataflow's state (as of the last commit).",
            one(committed.waiting),
        );
        metric(
            "vigil_readings_carried_over",
            "gauge",
            "Readings an earlier run left waiting for the watermark, taken over from its checkpoint at start.",
            one(committed.carried_over),
        );
        metric(
            "vigil_records_redelivered_total",
            "counter",
            "Records delivered again after a seek, already processed: skipped (as of the last commit).",
            one(t.redelivered),
        );
        metric(
            "vigil_readings_accepted_total",
            "counter",
            "Readings accepted into the history (as of the last commit).",
            one(t.accepted),
        );
        metric(
            "vigil_records_rejected_total",
            "counter",
            "Records dead-lettered, by reason (as of the last commit).",
            by("reason", &t.rejected),
        );
        let windows =
            [("tumbling".to_string(), t.tumbling_windows), ("hopping".to_string(), t.hopping_windows)].into_iter().collect();
        metric("vigil_windows_total", "counter", "Windows closed, by kind.", by("kind", &windows));
        metric("vigil_anomalies_total", "counter", "Anomalies found, by detector.", by("detector", &t.anomalies_by_detector()));
        metric(
            "vigil_drift_events_total",
            "counter",
            "Drift events, by statistic.",
            by("statistic", &t.folded.drift_by_statistic),
        );
        metric("vigil_predictions_total", "counter", "Maintenance predictions.", one(t.predictions));
        metric("vigil_proposals_total", "counter", "Maintenance proposals.", one(t.folded.proposals + t.proposals.len() as u64));
        metric("vigil_decision_requests_total", "counter", "Decisions asked of people.", one(t.decision_requests));
        metric(
            "vigil_history_rows_total",
            "counter",
            "Rows committed to the history, by table.",
            by("table", &t.folded.history_rows),
        );
        metric(
            "vigil_cuts_total",
            "counter",
            "Commits of the history (files, offsets, state).",
            one(c.cuts.load(Ordering::Relaxed)),
        );
        let lag = c.lag.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP vigil_source_lag_records Records behind the end of the source (-1: unknown).\n# TYPE vigil_source_lag_records gauge\nvigil_source_lag_records {lag}");
        let ready = u8::from(c.ready.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP vigil_pipeline_ready Whether the pipeline consumes and commits normally.\n# TYPE vigil_pipeline_ready gauge\nvigil_pipeline_ready {ready}");
        let _ = writeln!(
            out,
            "# HELP vigil_commit_delay_seconds End-to-end latency of results: from the watermark's event time to the commit that made everything before it durable.\n# TYPE vigil_commit_delay_seconds histogram"
        );
        if let Ok(h) = c.commit_delay.lock() {
            h.render(out, "vigil_commit_delay_seconds", "");
        }
    }

    fn ingest(&self, records: &[(&[u8], &[u8])]) -> Result<(), String> {
        match &self.target {
            IngestTarget::Local(log) => log.append(records).map_err(|e| e.to_string()),
            IngestTarget::Kafka(producer, topic) => {
                for (k, v) in records {
                    producer.send(topic, k, v).map_err(|e| e.to_string())?;
                }
                producer.flush(std::time::Duration::from_secs(30)).map_err(|e| e.to_string())
            }
        }
    }

    fn golden_path(&self, asset_prefix: &str) -> Result<vigil_api::golden::GoldenOutcome, String> {
        golden_path(&self.cfg, &self.data_dir, asset_prefix)
    }

    fn schedule_changed(&self, change: &MaintenanceScheduled) {
        self.control.schedule_changed(change.clone());
    }

    fn commits(&self) -> u64 {
        self.control.cuts.load(Ordering::Relaxed)
    }

    fn status(&self) -> vigil_api::PipelineStatus {
        let c = &self.control;
        // The commit first, then the records read: that count only grows, so it covers the commit's.
        let committed = c.committed();
        let t = &committed.stats;
        let records_in = c.records_in.load(Ordering::Acquire).max(t.records_in);
        let r = self.readiness();
        let watermark = c.watermark.load(Ordering::Relaxed);
        vigil_api::PipelineStatus {
            source: self.source.clone(),
            started_ms: self.started_ms,
            records_in,
            committed_in: t.records_in,
            read_since_commit: records_in - t.records_in,
            accepted: t.accepted,
            rejected: t.rejected.clone(),
            waiting: committed.waiting,
            carried_over: committed.carried_over,
            redelivered: t.redelivered,
            windows: t.tumbling_windows + t.hopping_windows,
            anomalies_by_detector: t.anomalies_by_detector(),
            drift_by_statistic: t.folded.drift_by_statistic.clone(),
            predictions: t.predictions,
            decision_requests: t.decision_requests,
            commits: c.cuts.load(Ordering::Relaxed),
            lag: r.lag,
            watermark_ms: (watermark != 0).then_some(watermark),
            ready: r.ready,
            reason: r.reason,
        }
    }

    fn simulator(&self) -> Option<vigil_api::SimulatorStatus> {
        self.simulator.as_ref().map(SimulatorHandle::status)
    }

    fn control_simulator(&self, command: vigil_api::SimulatorCommand) -> Result<vigil_api::SimulatorStatus, String> {
        let Some(sim) = &self.simulator else {
            return Err("this server runs no simulator (start it with `vigil serve --source simulator`)".into());
        };
        match command {
            vigil_api::SimulatorCommand::Start => {
                if !sim.alive.load(Ordering::Relaxed) {
                    return Err("the simulated fleet has fed all its hours; restart the server for another".into());
                }
                sim.control.paused.store(false, Ordering::Relaxed);
            }
            vigil_api::SimulatorCommand::Stop => sim.control.paused.store(true, Ordering::Relaxed),
            vigil_api::SimulatorCommand::Inject { sensor_id } => {
                if !sim.sensors.iter().any(|(s, _)| *s == sensor_id) {
                    return Err(format!("the simulated fleet has no sensor {sensor_id:?}"));
                }
                if !sim.alive.load(Ordering::Relaxed) || sim.control.paused.load(Ordering::Relaxed) {
                    return Err("the simulator is stopped: start it, then inject".into());
                }
                sim.control.inject(&sensor_id, INJECTED_SIGMAS, INJECTED_READINGS);
            }
        }
        Ok(sim.status())
    }

    fn running_model(&self) -> vigil_api::models::RunningModel {
        if let Some(m) = &self.cfg.models.loaded_rul {
            return vigil_api::models::RunningModel {
                name: m.name.clone(),
                version: m.version.to_string(),
                source: "registry".into(),
            };
        }
        let p = self.cfg.asset_stage_config().predictor;
        vigil_api::models::RunningModel { name: p.model, version: p.model_version, source: "built-in".into() }
    }
}

/// The golden path: one asset that degrades to failure within six simulated hours (ending an
/// hour ago, so that the live stream's watermark is not disturbed), six sensors every 10 s, run
/// through the same dataflow as `vigil demo` into the history beside the live pipeline's files
/// (its own run id and manifest line).
fn golden_path(
    cfg: &VigilConfig,
    data_dir: &std::path::Path,
    asset_prefix: &str,
) -> Result<vigil_api::golden::GoldenOutcome, String> {
    let now = vigil_pipeline::run::system_now_ms();
    let hours = 6.0;
    let fleet_cfg = vigil_connectors::simulator::FleetConfig {
        assets: 1,
        sensors_per_asset: 6,
        hours,
        interval_ms: 10_000,
        seed: vigil_events::stable_hash_str(asset_prefix),
        start_ms: now - 3_600_000 - (hours * 3_600_000.0) as i64,
        degrading_fraction: 1.0,
        drift_fraction: 0.0,
        anomalies_per_sensor_hour: 1.0,
        asset_prefix: asset_prefix.to_string(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let fleet = vigil_connectors::simulator::Fleet::new(fleet_cfg.clone());
    let readings = fleet.readings();
    let simulate_ms = started.elapsed().as_secs_f64() * 1000.0;
    let opts = vigil_pipeline::RunOptions {
        cfg: cfg.clone(),
        data_dir: data_dir.to_path_buf(),
        workers: 1,
        progress: false,
        now_ms: vigil_pipeline::run::system_now_ms,
        run_id: vigil_pipeline::new_run_id(now),
        write_history: true,
    };
    let flow = std::time::Instant::now();
    let (stats, _) = vigil_pipeline::run_fleet(fleet_cfg, &opts).map_err(|e| e.to_string())?;
    Ok(vigil_api::golden::GoldenOutcome {
        readings,
        simulate_ms,
        dataflow_ms: flow.elapsed().as_secs_f64() * 1000.0,
        accepted: stats.accepted,
        anomalies: stats.anomalies.len() as u64,
        predictions: stats.predictions,
        proposals: stats.proposals.len() as u64,
        decision_requests: stats.decision_requests,
    })
}

/// Where the feed of `input` records how many of its lines are in the embedded log.
fn file_marker(data_dir: &std::path::Path, input: &std::path::Path) -> PathBuf {
    let full = std::fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf());
    let name: String = input
        .file_name()
        .map(|n| n.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect())
        .unwrap_or_default();
    let hash = vigil_events::stable_hash_str(&full.to_string_lossy());
    data_dir.join("_log").join("feeds").join(format!("{name}-{hash:016x}.json"))
}

/// Feeds a JSON-lines file into the embedded log once, 10,000 lines a batch, each durable before
/// the next; after each, the marker (temp + rename) records the lines done, so a restart goes
/// on after them. A crash between a batch and its marker feeds that batch again: its readings
/// come back as `duplicate` dead letters, never twice in the history.
fn feed_file(log: &LocalLog, input: &std::path::Path, marker: &std::path::Path, stop: &std::sync::atomic::AtomicBool) {
    let skip: u64 = std::fs::read(marker)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["lines"].as_u64())
        .unwrap_or(0);
    if let Some(dir) = marker.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let path = input.display().to_string();
    let write_marker = |lines: u64| {
        let tmp = marker.with_extension("tmp");
        let body = serde_json::json!({ "file": path, "lines": lines }).to_string();
        if std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, marker)).is_err() {
            tracing::warn!(marker = %marker.display(), "cannot record the file feed's progress");
        }
    };
    let fed = vigil_connectors::export::feed_lines(input, skip, 10_000, stop, |batch| log.append(batch), write_marker);
    match fed {
        Ok(n) => tracing::info!(file = %input.display(), lines = n, from = skip, "the file is fed"),
        Err(e) => tracing::error!(file = %input.display(), error = %e, "the file feed stopped"),
    }
}

/// A key for this run when none is configured, so the API is never open by accident.
fn generated_key() -> String {
    vigil_api::observe::random_hex() + &vigil_api::observe::random_hex()
}

/// Resolves at SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Runs `vigil serve` until SIGTERM or Ctrl-C.
pub(crate) fn serve(cfg: &VigilConfig, args: ServeArgs) -> anyhow::Result<()> {
    let mut api: ApiConfig = cfg.api.clone();
    if let Some(l) = &args.listen {
        api.listen = l.clone();
    }
    if api.keys_with_env().is_empty() {
        let key = generated_key();
        eprintln!("vigil serve: no API key is configured ([api.keys] or VIGIL_API_KEY); this run's admin key is {key}");
        api.keys.push(KeyConfig { name: "generated".into(), key, scopes: vec![Scope::Admin] });
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let threads =
        if cfg.query.threads == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { cfg.query.threads };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(2))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let history = History::open(&args.data_dir, &cfg.query)?;
    let ledger = Ledger::<PlanningBook>::open(&args.data_dir, LedgerConfig::default()).context("opening the decision ledger")?;

    let notifier = vigil_connectors::webhook::Notifier::start(cfg.notifications.webhooks.clone(), &args.data_dir);
    let mut stream_thread = None;
    let mut feeder = None;
    let mut control = None;
    let stop_feed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut feed_control: Option<Arc<vigil_connectors::export::FeedControl>> = None;
    let mut simulator = None;
    let started_ms = vigil_pipeline::run::system_now_ms();
    let pipeline: Option<Arc<dyn vigil_api::Pipeline>> = match args.source {
        ServeSource::None => None,
        source => {
            let mut opts = StreamOptions::from_config(cfg, args.data_dir.clone(), args.workers);
            opts.notifier = notifier.clone();
            let mut registry: Vec<vigil_operators::sensor_stage::SensorSpec> =
                cfg.registry.iter().map(vigil_pipeline::config::RegistryEntry::spec).collect();
            let (target, label) = if source == ServeSource::Kafka {
                let producer = vigil_connectors::kafka::JsonProducer::new(&opts.brokers).context("connecting to Kafka")?;
                let label = format!("kafka {} on {}", opts.topic, opts.brokers);
                (IngestTarget::Kafka(producer, opts.topic.clone()), label)
            } else {
                let log = LocalLog::open(&args.data_dir, LOCAL_TOPIC, opts.workers).context("opening the embedded log")?;
                opts.topic = LOCAL_TOPIC.to_string();
                opts.local = Some(log.clone());
                opts.outputs = None;
                if source == ServeSource::Simulator {
                    let fleet = vigil_connectors::simulator::Fleet::new(args.fleet.clone());
                    registry = vigil_pipeline::fleet_registry(cfg, &fleet);
                    let log = log.clone();
                    let feed = Arc::new(vigil_connectors::export::FeedControl::new(args.simulator_paused));
                    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
                    simulator = Some(SimulatorHandle {
                        control: feed.clone(),
                        sensors: fleet.sensors.iter().map(|s| (s.sensor_id.clone(), s.asset_id.clone())).collect(),
                        interval_ms: fleet.cfg.interval_ms,
                        speed: args.speed,
                        alive: alive.clone(),
                    });
                    feed_control = Some(feed.clone());
                    let speed = args.speed;
                    feeder = Some(
                        std::thread::Builder::new()
                            .name("vigil-simulator".into())
                            .spawn(move || {
                                let fed =
                                    vigil_connectors::export::feed_fleet(&fleet, Some(speed), &feed, |batch| log.append(batch));
                                alive.store(false, Ordering::Relaxed);
                                match fed {
                                    Ok(n) => tracing::info!(records = n, "the simulated fleet is done"),
                                    Err(e) => tracing::error!(error = %e, "the simulator stopped"),
                                }
                            })
                            .context("starting the simulator")?,
                    );
                }
                if source == ServeSource::File {
                    let input = args.input.clone().context("--source file needs --input FILE (JSON lines)")?;
                    anyhow::ensure!(
                        matches!(
                            vigil_connectors::files::Format::from_path(&input),
                            Ok(vigil_connectors::files::Format::JsonLines)
                        ),
                        "--source file takes JSON lines ({}); replay CSV or Parquet with `vigil replay`",
                        input.display()
                    );
                    let log = log.clone();
                    let stop = stop_feed.clone();
                    let marker = file_marker(&args.data_dir, &input);
                    feeder = Some(
                        std::thread::Builder::new()
                            .name("vigil-file".into())
                            .spawn(move || feed_file(&log, &input, &marker, &stop))
                            .context("starting the file feed")?,
                    );
                }
                (IngestTarget::Local(log), format!("embedded log {}", args.data_dir.join("_log").join(LOCAL_TOPIC).display()))
            };
            let c = Arc::new(StreamControl::default());
            // What people decided before this start (perhaps not yet applied when the last run
            // stopped): the stages apply each change once, so handing them over again is safe.
            for change in ledger.read(PlanningBook::latest_closing_changes) {
                c.schedule_changed(change);
            }
            let thread_control = c.clone();
            stream_thread = Some(
                std::thread::Builder::new()
                    .name("vigil-stream".into())
                    .spawn(move || vigil_pipeline::stream::run_stream(&opts, registry, thread_control))
                    .context("starting the pipeline")?,
            );
            control = Some(c.clone());
            Some(Arc::new(StreamHandle {
                control: c,
                source: label,
                target,
                cfg: cfg.clone(),
                data_dir: args.data_dir.clone(),
                started_ms,
                simulator: simulator.take(),
            }))
        }
    };

    let mut state = AppState::new(history, ledger.clone(), api.clone(), pipeline);
    state.notifier = notifier;
    let console = state.console.clone();
    let router = vigil_api::app(state);
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(&api.listen).await.with_context(|| format!("listening on {}", api.listen))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "vigil serve: http://{addr}/ (the web console; the API under /api/v1), history in {}, pipeline: {}",
            args.data_dir.display(),
            match args.source {
                ServeSource::Simulator => "live simulator through the embedded log",
                ServeSource::Ingest => "POST /api/v1/readings through the embedded log",
                ServeSource::File => "the input file, then POST /api/v1/readings, through the embedded log",
                ServeSource::Kafka => "kafka",
                ServeSource::None => "none (history only)",
            }
        );
        // Live console streams end at the signal, so that the graceful shutdown does not wait on
        // open browser tabs.
        let stopping = async move {
            shutdown_signal().await;
            console.close();
        };
        // The peer's address is the client for the failed-authentication limit.
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service).with_graceful_shutdown(stopping).await.context("serving")?;
        Ok::<_, anyhow::Error>(())
    })?;
    eprintln!("vigil serve: stopping (last commit, then exit)");
    stop_feed.store(true, Ordering::Relaxed);
    if let Some(f) = &feed_control {
        f.stop.store(true, Ordering::Relaxed);
    }
    if let Some(f) = feeder {
        let _ = f.join();
    }
    if let Some(c) = &control {
        c.stop.store(true, Ordering::Relaxed);
    }
    if let Some(t) = stream_thread {
        match t.join() {
            Ok(Ok(stats)) => eprintln!("vigil serve: pipeline stopped after {} cuts", stats.cuts),
            Ok(Err(e)) => eprintln!("vigil serve: the pipeline ended with an error: {e}"),
            Err(_) => eprintln!("vigil serve: the pipeline thread panicked"),
        }
    }
    ledger.close();
    Ok(())
}
