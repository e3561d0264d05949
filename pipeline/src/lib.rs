//! Vigil's pipeline: the dataflow graph over the sources, the history sinks, and the commands.
//!
//! - [`config`]: the configuration (TOML + `VIGIL_*` environment overrides).
//! - [`run`]: workers, sources (files in chunks, the simulator), the graph, history sinks.
//! - [`sort`]: the external sort that puts a bounded input into event-time order when needed.
//! - [`summary`]: the summary of a run and its scores against the simulator's ground truth.
//!
//! [`replay`] and [`demo`] are what `vigil replay` and `vigil demo` run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use vigil_connectors::files::plan;
use vigil_connectors::history;
use vigil_connectors::simulator::{Fleet, FleetConfig};
use vigil_operators::sensor_stage::SensorSpec;
use vigil_operators::validate::Validator;

pub mod backtest;
pub mod config;
pub(crate) mod graph;
pub mod outputs;
pub mod progress;
pub mod run;
pub mod sort;
pub mod stream;
pub mod summary;

pub use run::{ReplayOrder, RunError, RunOptions, RunStats, Source};
pub use summary::Summary;

/// A fresh run id: UTC time, process id and the number of runs this process started before, so
/// files of different runs never collide — not even two runs one process starts within the same
/// second (golden-path runs started by concurrent requests): a history file's name is never used
/// for two different files, which is what lets readers cache a file's footer by its path.
pub fn new_run_id(now_ms: i64) -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = vigil_events::format_rfc3339_ms(now_ms);
    let compact: String = t.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}-{n}", &compact[..14.min(compact.len())], std::process::id())
}

fn registry(opts: &RunOptions) -> Vec<SensorSpec> {
    opts.cfg.registry.iter().map(config::RegistryEntry::spec).collect()
}

fn commit(opts: &RunOptions, stats: &RunStats) -> Result<(), RunError> {
    history::commit(&opts.data_dir, &opts.run_id, stats.files.clone(), (opts.now_ms)())
        .map_err(|e| RunError::History(e.to_string()))?;
    Ok(())
}

fn discard(opts: &RunOptions) {
    let _ = std::fs::remove_dir_all(opts.data_dir.join("_staging").join(&opts.run_id));
}

/// Replays files through the dataflow into the history; returns the run's statistics.
pub fn replay(inputs: &[PathBuf], order: ReplayOrder, opts: &RunOptions) -> Result<(RunStats, bool), RunError> {
    history::recover(&opts.data_dir).map_err(|e| RunError::History(e.to_string()))?;
    tracing::debug!("planning");
    let the_plan = Arc::new(plan(inputs, opts.cfg.pipeline.chunk_bytes).map_err(|e| RunError::Input(e.to_string()))?);
    check_columns(&the_plan, &opts.cfg.validate_config().columns)?;
    tracing::debug!(chunks = the_plan.chunks.len(), "planned");
    let stats = run::run(Source::Files { plan: the_plan.clone(), order, sorted: None }, opts, registry(opts))?;
    if !stats.needs_sort {
        commit(opts, &stats)?;
        return Ok((stats, false));
    }
    // Out of order beyond the lateness: drop this attempt and replay a sorted copy.
    discard(opts);
    let tmp = opts.data_dir.join("_tmp").join(&opts.run_id);
    let mut validator = Validator::new(opts.cfg.validate_config(), Box::new(opts.now_ms));
    if opts.progress {
        eprintln!("  input is not in event-time order within the lateness; sorting a copy first");
    }
    let (sorted_plan, info) = sort::sort_inputs(&the_plan, &mut validator, &tmp, 256 << 20, opts.cfg.pipeline.chunk_bytes)?;
    let result = run::run(
        Source::Files { plan: Arc::new(sorted_plan), order: ReplayOrder::File, sorted: Some(Arc::new(info)) },
        opts,
        registry(opts),
    );
    let _ = std::fs::remove_dir_all(&tmp);
    let mut stats = result?;
    commit(opts, &stats)?;
    stats.needs_sort = true;
    Ok((stats, true))
}

/// Every column a mapping names must be in each file with a header (CSV, Parquet): a misspelt
/// name would otherwise reject every row as missing a field.
fn check_columns(plan: &vigil_connectors::files::Plan, map: &vigil_operators::decode::ColumnMap) -> Result<(), RunError> {
    for file in plan.files.iter().filter(|f| !f.columns.is_empty()) {
        for (column, field) in map.pairs() {
            if file.columns.iter().any(|c| c == column) {
                continue;
            }
            let near = vigil_queries::known::closest(column, file.columns.iter().map(String::as_str), 3);
            let hint = if near.is_empty() { String::new() } else { format!("; did you mean {}?", near.join(", ")) };
            return Err(RunError::Input(format!(
                "{} has no column {column:?} (mapped to {} by --columns or [input] columns); its columns are {}{hint}",
                file.path.display(),
                field.name(),
                file.columns.join(", ")
            )));
        }
    }
    Ok(())
}

/// Runs a simulated fleet through the dataflow into the history.
pub fn demo(fleet_cfg: FleetConfig, opts: &RunOptions) -> Result<(RunStats, Fleet), RunError> {
    history::recover(&opts.data_dir).map_err(|e| RunError::History(e.to_string()))?;
    run_fleet(fleet_cfg, opts)
}

/// [`demo`] without recovering the history first: for a run beside a live pipeline that owns
/// the data dir (the golden path of `vigil serve`); its files are committed with its own run id.
pub fn run_fleet(fleet_cfg: FleetConfig, opts: &RunOptions) -> Result<(RunStats, Fleet), RunError> {
    let fleet = Fleet::new(fleet_cfg);
    let specs = fleet_registry(&opts.cfg, &fleet);
    let fleet = Arc::new(fleet);
    let stats = run::run(Source::Simulator { fleet: fleet.clone() }, opts, specs)?;
    commit(opts, &stats)?;
    Ok((stats, Arc::try_unwrap(fleet).unwrap_or_else(|f| (*f).clone())))
}

/// The configured registry plus the simulated fleet's sensors (asset and type of each).
pub fn fleet_registry(cfg: &config::VigilConfig, fleet: &Fleet) -> Vec<SensorSpec> {
    let mut specs: Vec<SensorSpec> = cfg.registry.iter().map(config::RegistryEntry::spec).collect();
    specs.extend(fleet.sensors.iter().map(|s| SensorSpec {
        sensor_id: s.sensor_id.clone(),
        asset_id: Some(s.asset_id.clone()),
        sensor_type: Some(s.sensor_type),
        ..SensorSpec::default()
    }));
    specs
}

/// Loads the models the configuration names (`[models] rul`) from the registry (`[models]
/// registry`, default `DATA/_models`) into `cfg`, so the graph runs them; a no-op when none is named.
pub fn load_models(cfg: &mut config::VigilConfig, data_dir: &std::path::Path) -> Result<(), backtest::BacktestError> {
    let Some(name) = cfg.models.rul.clone() else { return Ok(()) };
    let registry = cfg.models.registry.clone().unwrap_or_else(|| data_dir.join("_models"));
    let loaded = backtest::cmapss::load_model(&registry, &name)?;
    tracing::info!(model = %loaded.name, version = loaded.version, "RUL model loaded");
    cfg.models.loaded_rul = Some(Arc::new(loaded));
    Ok(())
}

/// Measures a closure's wall time in seconds.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

/// Paths as strings for the summary.
pub fn names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}
