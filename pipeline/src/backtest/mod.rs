//! Backtests: labelled data through the same dataflow as `vigil replay`, scored against labels.
//!
//! - [`nab`]: the Numenta Anomaly Benchmark — every series one sensor, NAB's scoring.
//! - [`labelled`]: any labelled CSV of one asset's sensors — point-wise and changepoint scores.
//! - [`cmapss`]: NASA's turbofan data — training the RUL model, and scoring it through the graph.
//!
//! A backtest turns its data set into readings, runs them through [`crate::run::run`] exactly as
//! a replay would (validation, windows, detectors, predictor, history sinks into a scratch data
//! directory that is removed afterwards), and scores what the graph emitted. Every backtest is
//! deterministic: the same data and settings give the same scores whatever the number of workers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil_connectors::files::plan;
use vigil_events::{format_rfc3339_ms, EventTime, SensorType};
use vigil_operators::sensor_stage::SensorSpec;

use crate::config::VigilConfig;
use crate::run::{self, ReplayOrder, RunOptions, RunStats, Source};

pub mod cmapss;
pub mod labelled;
pub mod nab;
pub mod normal;

/// Resolves `model` (`NAME`, `NAME@latest` or `NAME@<version>`) in `registry`, checks that it is
/// a model of `kind`, and reads its artifact. `context` ends each error message (say, the
/// config key that named the model; empty for none).
pub(crate) fn registered_model(
    registry: &Path,
    model: &str,
    kind: &str,
    context: &str,
) -> Result<(vigil_connectors::models::ModelVersion, Vec<u8>), BacktestError> {
    let reg = vigil_connectors::models::ModelRegistry::new(registry);
    let r: vigil_connectors::models::ModelRef =
        model.parse().map_err(|e: vigil_connectors::ConnectorError| BacktestError::data(registry, e.to_string()))?;
    let v = reg
        .resolve(&r)
        .map_err(|e| BacktestError::data(registry, e.to_string()))?
        .ok_or_else(|| BacktestError::data(registry, format!("no model {model:?} in the registry{context}")))?;
    if v.meta.kind != kind {
        return Err(BacktestError::data(
            registry,
            format!("{}@{} is a {:?} model, not {kind:?}{context}", v.name, v.version, v.meta.kind),
        ));
    }
    let bytes = reg.artifact(&v).map_err(|e| BacktestError::data(registry, e.to_string()))?;
    Ok((v, bytes))
}

/// Errors of a backtest.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The data set could not be read or is not in the expected layout.
    #[error("{path}: {message}")]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Scratch or output files could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The dataflow failed.
    #[error(transparent)]
    Run(#[from] run::RunError),
}

impl BacktestError {
    pub(crate) fn data(path: &Path, message: impl Into<String>) -> Self {
        BacktestError::Data { path: path.to_path_buf(), message: message.into() }
    }
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BacktestError + '_ {
        move |source| BacktestError::Io { path: path.to_path_buf(), source }
    }
}

/// One reading of a backtest series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Event time.
    pub ts: EventTime,
    /// Value.
    pub value: f64,
}

/// A sensor of a backtest: its id, asset and type, and its readings.
#[derive(Debug, Clone)]
pub struct Series {
    /// Sensor id.
    pub sensor_id: String,
    /// Asset id.
    pub asset_id: String,
    /// Type.
    pub sensor_type: SensorType,
    /// Readings.
    pub points: Vec<Point>,
}

/// Runs `series` through the dataflow (event-time order) with `cfg`; the history goes to a scratch
/// directory under `scratch` that is removed afterwards. Returns the run's statistics (anomalies
/// with their scores, drift events, counts).
pub fn run_series(series: &[Series], cfg: &VigilConfig, workers: usize, scratch: &Path) -> Result<RunStats, BacktestError> {
    std::fs::create_dir_all(scratch).map_err(BacktestError::io(scratch))?;
    let input = scratch.join("input.jsonl");
    {
        let file = std::fs::File::create(&input).map_err(BacktestError::io(&input))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        // Interleaved by time, so a multi-sensor asset arrives as it would on a stream.
        let mut all: Vec<(EventTime, usize, usize)> = Vec::new();
        for (s, ser) in series.iter().enumerate() {
            all.extend(ser.points.iter().enumerate().map(|(i, p)| (p.ts, s, i)));
        }
        all.sort_unstable();
        for (_, s, i) in all {
            let ser = &series[s];
            let p = ser.points[i];
            if !p.value.is_finite() {
                return Err(BacktestError::data(&input, format!("{}: a value is not a finite number", ser.sensor_id)));
            }
            writeln!(
                out,
                "{{\"sensor_id\":{},\"asset_id\":{},\"sensor_type\":\"{}\",\"value\":{},\"ts\":\"{}\"}}",
                json_str(&ser.sensor_id),
                json_str(&ser.asset_id),
                ser.sensor_type.as_str(),
                p.value,
                format_rfc3339_ms(p.ts)
            )
            .map_err(BacktestError::io(&input))?;
        }
        out.flush().map_err(BacktestError::io(&input))?;
    }
    let registry: Vec<SensorSpec> = series
        .iter()
        .map(|s| SensorSpec {
            sensor_id: s.sensor_id.clone(),
            asset_id: Some(s.asset_id.clone()),
            sensor_type: Some(s.sensor_type),
            ..SensorSpec::default()
        })
        .collect();
    let data_dir = scratch.join("history");
    let opts = RunOptions {
        cfg: cfg.clone(),
        data_dir: data_dir.clone(),
        workers: workers.max(1),
        progress: false,
        now_ms: run::system_now_ms,
        run_id: "backtest".into(),
        write_history: false,
    };
    let the_plan =
        plan(std::slice::from_ref(&input), cfg.pipeline.chunk_bytes).map_err(|e| BacktestError::data(&input, e.to_string()))?;
    let result = run::run(
        Source::Files { plan: Arc::new(the_plan), order: ReplayOrder::EventTime, sorted: None, derived_after: None },
        &opts,
        registry,
    );
    let _ = std::fs::remove_dir_all(scratch);
    let stats = result?;
    // Every value sent is accepted, or a duplicate of the row before it (same sensor, time and
    // value): anything else would drop data from the scores without a word.
    let sent: usize = series.iter().map(|s| s.points.len()).sum();
    let duplicates = stats.rejected.get("duplicate").copied().unwrap_or(0);
    if stats.accepted + duplicates != sent as u64 {
        return Err(BacktestError::data(
            &input,
            format!("{} of {sent} readings were accepted by the dataflow (rejected: {:?})", stats.accepted, stats.rejected),
        ));
    }
    if stats.needs_sort {
        // The input above is written in time order; this is an invariant of this function.
        return Err(BacktestError::data(&input, "backtest input out of event-time order"));
    }
    if let Some(e) = stats.errors.first() {
        return Err(BacktestError::data(&data_dir, e.clone()));
    }
    Ok(stats)
}

/// The median gap between successive times (1 s when there is none): one step of a series.
pub fn median_step_ms(ts: &[EventTime]) -> i64 {
    let mut gaps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).filter(|g| *g > 0).collect();
    if gaps.is_empty() {
        return 1000;
    }
    let mid = gaps.len() / 2;
    (*gaps.select_nth_unstable(mid).1).max(1)
}

/// The dataflow settings for a bounded series of one row per `step_ms`: tumbling windows of one
/// step (a window holds a row), hopping windows of six steps, no lateness (the rows are replayed
/// in order), duplicates within a step.
pub fn series_config(base: &VigilConfig, step_ms: i64) -> VigilConfig {
    let mut cfg = base.clone();
    // History is replayed whatever the wall clock says: no reading is "from the future".
    cfg.validation.future_margin_ms = i64::MAX;
    cfg.windows.tumbling_ms = step_ms;
    cfg.windows.hopping_step_ms = step_ms;
    cfg.windows.hopping_size_ms = step_ms * 6;
    cfg.pipeline.lateness_ms = 0;
    cfg.pipeline.dedupe_horizon_ms = step_ms;
    cfg
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A scratch directory for one backtest, unique to this process and call.
pub fn scratch_dir(label: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("vigil-backtest-{}-{label}-{n}", std::process::id()))
}
