//! Vigil's pipeline: the dataflow graph over the sources, the history sinks, and the commands.
//!
//! - [`config`]: the configuration (TOML + `VIGIL_*` environment overrides).
//! - [`run`]: workers, sources (files in chunks, the simulator), the graph, history sinks.
//! - [`sort`]: the external sort that puts a bounded input into event-time order when needed.
//! - [`summary`]: the summary of a run and its scores against the simulator's ground truth.
//!
//! [`replay`] and [`demo`] are what `vigil replay` and `vigil demo` run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use vigil_connectors::files::plan_from;
use vigil_connectors::simulator::{Fleet, FleetConfig};
use vigil_connectors::{history, inputs};
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

fn commit(opts: &RunOptions, stats: &RunStats, replay: Option<inputs::ReplayMark>) -> Result<(), RunError> {
    history::commit_replay(&opts.data_dir, &opts.run_id, stats.files.clone(), (opts.now_ms)(), replay)
        .map_err(|e| RunError::History(e.to_string()))?;
    Ok(())
}

fn discard(opts: &RunOptions) {
    let _ = std::fs::remove_dir_all(opts.data_dir.join("_staging").join(&opts.run_id));
}

fn history_err(e: impl std::fmt::Display) -> RunError {
    RunError::History(e.to_string())
}

/// Readings and rejected records per source name, from the run's readings and rejected files.
fn counts_by_source(files: &[history::FileEntry]) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for f in files {
        for span in &f.sources {
            let e = out.entry(span.source.clone()).or_default();
            match f.table.as_str() {
                "readings" => e.0 += span.records,
                "rejected" => e.1 += span.records,
                _ => {}
            }
        }
    }
    out
}

/// The replay mark of a run: its inputs, the period of its readings, the decision requests it
/// raised (read back from its staged files).
fn replay_mark(opts: &RunOptions, stats: &RunStats, inputs: Vec<inputs::InputMark>) -> Result<inputs::ReplayMark, RunError> {
    let readings = stats.files.iter().filter(|f| f.table == "readings" && f.rows > 0);
    let from = readings.clone().map(|f| f.min_ts).min();
    let to = readings.map(|f| f.max_ts).max();
    let derived = stats.files.iter().filter(|f| !matches!(f.table.as_str(), "readings" | "rejected") && f.rows > 0);
    let events_to = derived.map(|f| f.max_ts).max();
    let mut requests = Vec::new();
    for f in stats.files.iter().filter(|f| f.table == "decision_requests") {
        requests.extend(inputs::event_ids(&opts.data_dir.join(&f.staged)).map_err(history_err)?);
    }
    Ok(inputs::ReplayMark { inputs, from, to, events_to, decision_requests: requests })
}

/// A file to read in this run: its name, identity, where to start, and the mark of the part
/// already in the history.
struct ToRead {
    name: String,
    identity: inputs::Identity,
    start: u64,
    prev: Option<inputs::InputMark>,
}

/// Replays files through the dataflow into the history; returns the run's statistics.
///
/// Exactly once across runs: each file is identified by its content ([`inputs::plan_file`]). A
/// file whose content the history holds already (under any name) is not read again and is listed
/// in [`RunStats::in_history`]; a file that grew is read from where the history ends; another
/// file under a known name is new input. Nothing is committed when nothing is new.
pub fn replay(inputs: &[PathBuf], order: ReplayOrder, opts: &RunOptions) -> Result<(RunStats, bool), RunError> {
    history::recover(&opts.data_dir).map_err(history_err)?;
    let commits = history::read_manifest(&opts.data_dir).map_err(history_err)?;
    let known = inputs::file_marks(&commits);
    let mut in_history = Vec::new();
    // Where the earlier runs of the grown files ended (their windows closed there).
    let mut derived_after: Option<(vigil_events::EventTime, vigil_events::EventTime)> = None;
    let mut todo: Vec<ToRead> = Vec::new();
    let mut paths: Vec<(PathBuf, u64)> = Vec::new();
    for path in inputs {
        let name = path.display().to_string();
        let (plan, identity) = inputs::plan_file(path, &known).map_err(|e| RunError::Input(e.to_string()))?;
        let note = |m: &inputs::InputMark, from_line: Option<u64>| run::InputInHistory {
            input: name.clone(),
            readings: m.readings,
            rejected: m.rejected,
            same_as: (m.name != name).then(|| m.name.clone()),
            continued_from_line: from_line,
            what: None,
        };
        if let Some(first) = todo.iter().find(|t| t.identity.sha256 == identity.sha256) {
            // The same content twice in one run: read once.
            in_history.push(run::InputInHistory {
                input: name.clone(),
                readings: 0,
                rejected: 0,
                same_as: Some(first.name.clone()),
                continued_from_line: None,
                what: None,
            });
            continue;
        }
        match plan {
            inputs::FilePlan::InHistory(m) => in_history.push(note(&m, None)),
            inputs::FilePlan::Continue { prev, start, first_line } => {
                in_history.push(note(&prev, Some(first_line)));
                let ended = commits
                    .iter()
                    .filter_map(|c| c.replay.as_ref())
                    .filter(|m| m.inputs.contains(&prev))
                    .filter_map(|m| m.to.map(|to| (to, to.max(m.events_to.unwrap_or(to)))))
                    .max();
                derived_after = derived_after.max(ended);
                paths.push((path.clone(), start));
                todo.push(ToRead { name, identity, start, prev: Some(prev) });
            }
            inputs::FilePlan::New => {
                paths.push((path.clone(), 0));
                todo.push(ToRead { name, identity, start: 0, prev: None });
            }
        }
    }
    if todo.is_empty() {
        return Ok((RunStats { in_history, ..RunStats::default() }, false));
    }
    tracing::debug!("planning");
    let the_plan = Arc::new(plan_from(&paths, opts.cfg.pipeline.chunk_bytes).map_err(|e| RunError::Input(e.to_string()))?);
    check_columns(&the_plan, &opts.cfg.validate_config().columns)?;
    tracing::debug!(chunks = the_plan.chunks.len(), "planned");
    let marks = |stats: &RunStats| -> Result<inputs::ReplayMark, RunError> {
        let counts = counts_by_source(&stats.files);
        let marks = todo
            .iter()
            .map(|t| {
                let (readings, rejected) = counts.get(&t.name).copied().unwrap_or_default();
                let (prev_readings, prev_rejected) = t.prev.as_ref().map_or((0, 0), |p| (p.readings, p.rejected));
                inputs::InputMark {
                    kind: inputs::InputKind::File,
                    name: t.name.clone(),
                    sha256: t.identity.sha256.clone(),
                    bytes: t.identity.len,
                    start_byte: t.start,
                    lines: t.identity.lines,
                    readings: prev_readings + readings,
                    rejected: prev_rejected + rejected,
                    fleet: None,
                }
            })
            .collect();
        replay_mark(opts, stats, marks)
    };
    let mut stats = run::run(Source::Files { plan: the_plan.clone(), order, sorted: None, derived_after }, opts, registry(opts))?;
    if !stats.needs_sort {
        let mark = marks(&stats)?;
        commit(opts, &stats, Some(mark))?;
        stats.in_history = in_history;
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
        Source::Files { plan: Arc::new(sorted_plan), order: ReplayOrder::File, sorted: Some(Arc::new(info)), derived_after },
        opts,
        registry(opts),
    );
    let _ = std::fs::remove_dir_all(&tmp);
    let mut stats = result?;
    let mark = marks(&stats)?;
    commit(opts, &stats, Some(mark))?;
    stats.needs_sort = true;
    stats.in_history = in_history;
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
///
/// A fleet is identified by its settings ([`inputs::plan_fleet`]): the same fleet and period
/// again adds nothing (the result lists it in [`RunStats::in_history`] and nothing is read); the
/// same fleet after the period in the history continues it; another fleet, or an overlapping
/// period, is refused ([`RunError::Input`]) — two fleets never mix in one history.
pub fn demo(fleet_cfg: FleetConfig, opts: &RunOptions) -> Result<(RunStats, Fleet), RunError> {
    history::recover(&opts.data_dir).map_err(history_err)?;
    let known = inputs::fleet_marks(&history::read_manifest(&opts.data_dir).map_err(history_err)?);
    match inputs::plan_fleet(&fleet_cfg, &known) {
        inputs::FleetPlan::InHistory(m) => {
            let note = run::InputInHistory {
                input: "simulator".into(),
                readings: m.readings,
                rejected: m.rejected,
                same_as: None,
                continued_from_line: None,
                what: Some(format!(
                    "the demo fleet ({}; to add the period after it: --start {})",
                    inputs::describe_fleet(&fleet_cfg),
                    vigil_events::format_rfc3339_ms(inputs::fleet_end(&fleet_cfg))
                )),
            };
            Ok((RunStats { in_history: vec![note], ..RunStats::default() }, Fleet::new(fleet_cfg)))
        }
        inputs::FleetPlan::Refused(why) => Err(RunError::Input(why)),
        inputs::FleetPlan::New | inputs::FleetPlan::Continue(_) => {
            let fleet = Fleet::new(fleet_cfg.clone());
            let specs = fleet_registry(&opts.cfg, &fleet);
            let fleet = Arc::new(fleet);
            let stats = run::run(Source::Simulator { fleet: fleet.clone() }, opts, specs)?;
            let counts = counts_by_source(&stats.files);
            let (readings, rejected) = counts.get("simulator").copied().unwrap_or_default();
            let mark = inputs::InputMark {
                kind: inputs::InputKind::Simulator,
                name: "simulator".into(),
                sha256: inputs::fleet_sha256(&fleet_cfg),
                bytes: 0,
                start_byte: 0,
                lines: 0,
                readings,
                rejected,
                fleet: Some(fleet_cfg),
            };
            let mark = replay_mark(opts, &stats, vec![mark])?;
            commit(opts, &stats, Some(mark))?;
            Ok((stats, Arc::try_unwrap(fleet).unwrap_or_else(|f| (*f).clone())))
        }
    }
}

/// [`demo`] without recovering the history first: for a run beside a live pipeline that owns
/// the data dir (the golden path of `vigil serve`); its files are committed with its own run id,
/// as live data (its decision requests are for people to answer now).
pub fn run_fleet(fleet_cfg: FleetConfig, opts: &RunOptions) -> Result<(RunStats, Fleet), RunError> {
    let fleet = Fleet::new(fleet_cfg);
    let specs = fleet_registry(&opts.cfg, &fleet);
    let fleet = Arc::new(fleet);
    let stats = run::run(Source::Simulator { fleet: fleet.clone() }, opts, specs)?;
    commit(opts, &stats, None)?;
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

/// Loads the models the configuration names (`[models] rul`, `[models.normal]`) from the
/// registry (`[models] registry`, default `DATA/_models`) into `cfg`, so the graph runs them; a
/// no-op when none is named.
pub fn load_models(cfg: &mut config::VigilConfig, data_dir: &std::path::Path) -> Result<(), backtest::BacktestError> {
    let registry = cfg.models.registry.clone().unwrap_or_else(|| data_dir.join("_models"));
    if let Some(name) = cfg.models.rul.clone() {
        let loaded = backtest::cmapss::load_model(&registry, &name)?;
        tracing::info!(model = %loaded.name, version = loaded.version, "RUL model loaded");
        cfg.models.loaded_rul = Some(Arc::new(loaded));
    }
    if !cfg.models.normal.is_empty() {
        let mut loaded = std::collections::HashMap::new();
        for (asset, name) in &cfg.models.normal {
            let l = backtest::normal::load_model(&registry, name, asset)?;
            tracing::info!(asset, model = %l.name, version = l.version, "normal model loaded");
            loaded.insert(Arc::from(asset.as_str()), Arc::new(l));
        }
        cfg.models.loaded_normal = Arc::new(loaded);
    }
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
